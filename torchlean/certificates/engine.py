"""Exact IBP and CROWN over a bound graph (``lower.BoundGraph``), in ``Fraction``s. Standard library.

IBP: every variable gets [L, U] in graph order: an input from the box, a const node from its
interval, a fn node from its row's ``interval`` over its argument's bounds, a mul node from
``intervals.interval_mul``, a max node from ``intervals.interval_max``; a form's bounds come from
``intervals.interval_affine`` (each term at the corner that minimises (maximises) it). Those are
the rules ``proofs/ibp.py`` proves (``ibp.mul``, ``ibp.max``, ``ibp.affine``), the only copies.
A mul node with layer norm's facts (``bound_graph.Lowerer.mul``) has its interval intersected with
[-c, c] ("within"), and a form's terms over one of its rows with [-R·||a||_2, R·||a||_2] ("ball",
``_State.bounds``): both hold for every real input (TRUST_BOUNDARIES.md, bound table, layer_norm).
A form's positive terms over the elements of one ``square`` node (layer norm's variance) are at
least q_min·(c·d)²/||c||² for any vector c (Cauchy-Schwarz: (c·d)² <= ||c||²·sum d_i², d the
squared arguments), c the centred midpoints of the d_i's intervals, c·d bounded by IBP
(``_State.squares``).

CROWN: a linear objective (a form over variables) is bounded below by back-substitution: the
variables of the latest nonlinear node are replaced by a relaxation line in terms of that node's
argument forms (a positive coefficient takes the lower line, a negative one the upper line), down to
input and const variables, whose remaining form is minimised over their box exactly. Lines:

- fn: a·z + b with any slope a (the row's ``policy_slopes``, or one supplied) and b from the row's
  ``lower_intercept`` / ``upper_intercept``: valid on [l, u] for every slope by the row's contract;
- mul x·w with x in [lx, ux], w in [lw, uw] (McCormick): (x - lx)(w - lw) >= 0 and
  (ux - x)(uw - w) >= 0 give the two lower planes, (x - lx)(uw - w) >= 0 and (ux - x)(w - lw) >= 0
  the two upper planes; a weight t in [0, 1] picks the convex combination (1 - t)·P0 + t·P1
  (``intervals.mccormick``, proved by ``relax.mul.lower`` / ``relax.mul.upper``);
- max of members z_j: lower z_k for one member k (by default the one with the largest midpoint),
  upper the constant max_j U_j (or z_k itself when L_k >= U_j for all j != k: exact).

With method "crown", the argument bounds of every nonlinear node whose relaxation is not already
exact are computed by this back-substitution as well and intersected with IBP's (both are valid).
Bounds that feed relaxations are rounded outward to floats first (wider, so still valid) so that
lines keep short rationals. Final bounds: the better of IBP and CROWN per row.

Slope policies (``slopes.POLICIES``: default fn slopes under auto_LiRPA's S-curve rule or the chord
rule; neither dominates) on graphs with a row where they can differ (``policies``): argument bounds
take, at every fn element a back-substitution meets, the policy line whose term has the larger
minimum over the element's argument interval (``slopes.GREEDY``, one pass); final bounds keep per
row the largest of the back-substitutions under each policy and GREEDY (``best_backsub``). Every
line is valid, so every bound is, and so is the max. With this, CROWN is at least as tight as
auto_LiRPA's on the tightness benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from .bound_graph import _dyadic_lin, _lin, arg_rows, as_aff, neg, refine_skips, sqrt_up, within
from .core import Rejected, is_index, tick
from .core import float_down as _down
from .core import float_up as _up
from .functions import FUNCTIONS
from .intervals import EXACT, interval_affine, interval_max, interval_mul, mccormick
from .lower import Aff, BoundGraph, Node
from .slopes import GREEDY, POLICIES, two_policies

Q = Fraction
ZERO = Q(0)
EXACT_AT_STABLE = {"relu", "leaky_relu", "abs"}  # piecewise linear with one kink at 0


def form_bounds(f: Aff, L: Sequence[Fraction], U: Sequence[Fraction]) -> tuple[Fraction, Fraction]:
    return interval_affine(f.c, ((q, (L[v], U[v])) for v, q in f.t.items()))


class _State:
    """Variable bounds and per-node relaxations, built in graph order."""

    def __init__(self, bg: BoundGraph, lo: Sequence[Fraction], hi: Sequence[Fraction]):
        if len(lo) != bg.n_in or len(hi) != bg.n_in:
            raise ValueError(f"box has {len(lo)} coordinates, the graph {bg.n_in} inputs")
        self.bg = bg
        self.L: list[Fraction] = [Q(v) for v in lo] + [ZERO] * (bg.n_vars - bg.n_in)
        self.U: list[Fraction] = [Q(v) for v in hi] + [ZERO] * (bg.n_vars - bg.n_in)
        self.arg: dict[int, list[Any]] = {}  # node index -> per element argument bounds
        self.lines: dict[tuple[int, int, str], Any] = {}  # default relaxations per policy, built once
        self.kind = [n.kind for n in bg.nodes for _ in range(n.size)]  # per variable
        self.split = split_nodes(bg)
        self.shared: dict[int, list[Any]] = {}  # ``forward``'s shared slopes (node -> per element)
        # variable -> (first variable of its run of m, R) for mul nodes with a "ball" fact (m, R)
        self.ball = {n.offset + i: (n.offset + i - i % n.attrs["ball"][0], n.attrs["ball"][1])
                     for n in bg.nodes if n.kind == "mul" and "ball" in n.attrs for i in range(n.size)}
        # variable -> (node, element) of ``square`` nodes; (node, elements) -> sum d_i² floor
        self.sq = {n.offset + i: (k, i) for k, n in enumerate(bg.nodes) if n.fn == "square"
                   for i in range(n.size)}
        self.floors: dict[tuple[int, tuple[int, ...]], Fraction] = {}

    def bounds(self, f: Aff) -> tuple[Fraction, Fraction]:
        """IBP bounds of the form f, where f reads two or more products of one "ball" run (layer
        norm's normalised row y, ||y||_2 <= R) each such group's sum sum_i a_i y_i intersected
        with [-R·||a||_2, R·||a||_2] (Cauchy-Schwarz): a valid bound per group, so of the sum."""
        lo, hi = form_bounds(f, self.L, self.U)
        if self.sq:
            lo = self.squares(f, lo)
        if not self.ball:
            return lo, hi
        groups: dict[tuple[int, Fraction], list[tuple[int, Fraction]]] = {}
        for v, q in f.t.items():
            g = self.ball.get(v)
            if g is not None:
                groups.setdefault(g, []).append((v, q))
        for (_, R), terms in groups.items():
            if len(terms) < 2:
                continue
            gl, gh = interval_affine(ZERO, ((q, (self.L[v], self.U[v])) for v, q in terms))
            b = R * sqrt_up(sum((q * q for _, q in terms), ZERO))
            lo += max(gl, -b) - gl
            hi += min(gh, b) - gh
        return lo, hi

    def squares(self, f: Aff, lo: Fraction) -> Fraction:
        """``lo`` (f's IBP lower bound) raised where f has two or more positive terms q_i·d_i² over
        one square node: that group's part q_i·L(d_i²) of lo becomes at least min q_i·F, F =
        (c·d)²/||c||² <= sum d_i² (Cauchy-Schwarz, any c != 0) where IBP bounds c·d away from 0."""
        groups: dict[int, list[tuple[int, Fraction]]] = {}
        for v, q in f.t.items():
            s = self.sq.get(v)
            if s is not None and q > 0 and s[0] in self.arg:
                groups.setdefault(s[0], []).append((s[1], q))
        for k, terms in groups.items():
            idx = tuple(i for i, _ in terms)
            if len(idx) < 2:
                continue
            if (k, idx) not in self.floors:
                node = self.bg.nodes[k]
                c = [_short((self.arg[k][i][0] + self.arg[k][i][1]) / 2) for i in idx]
                m = sum(c) / len(c)  # (centred: a layer norm row's mean cancels in c·d)
                c = [x - m for x in c]
                cd = as_aff(_lin([(x, node.args[i]) for x, i in zip(c, idx)]))
                a, b = self.bounds(cd)
                n2 = sum((x * x for x in c), ZERO)
                self.floors[k, idx] = ZERO if a <= 0 <= b else min(a * a, b * b) / n2
            gl = sum((q * self.L[self.bg.nodes[k].offset + i] for i, q in terms), ZERO)
            lo += max(gl, min(q for _, q in terms) * self.floors[k, idx]) - gl
        return lo

    def arg_bounds(self, k: int, f: Aff, crown: bool) -> tuple[Fraction, Fraction]:
        lo, hi = self.bounds(f)
        if crown and any(v >= self.bg.n_in and self.kind[v] != "const" for v in f.t):
            # (a form over input and const variables only: its IBP bound is already exact)
            pol = GREEDY if any(self.split) else POLICIES[0]
            lo = max(lo, backsub(self, f, k, None, pol))
            hi = min(hi, -backsub(self, neg(f), k, None, pol))
            # lo > hi: two valid bounds cross, so the region (box and split constraints) is empty
            # and any bounds hold on it; kept non-empty, as ``clamp``, so every row accepts them
            lo = min(lo, hi)
        return _down(lo), _up(hi)


def forward(bg: BoundGraph, lo: Sequence[Fraction], hi: Sequence[Fraction], method: str = "ibp",
            phases: dict[tuple[int, int], int] | None = None, tight: dict[int, Any] | None = None,
            prior: tuple[_State, int] | None = None, slopes: dict[int, list[Any]] | None = None) -> _State:
    """Bounds of every variable (IBP, with CROWN argument bounds when ``method == "crown"``).
    ``phases`` {(fn node, i): 1 or 0} restricts to the region where that element's argument is
    >= 0 (1) or <= 0 (0): its argument bounds are clamped at 0, valid on the region (on an empty
    region any bound is, and the clamp keeps lo <= hi). ``tight`` {node: (lows, highs)}: bounds of
    the node's argument rows (fn: one per element; mul: the x rows then the w rows; max: the
    members in order; None: no bound) from another sound method (the fast engine's CROWN),
    intersected with this method's: both hold, so their intersection does. ``prior`` (P, start):
    P the state of a region containing this one (the parent's before a ReLU split on node
    start): nodes before start keep P's bounds, start P's argument bounds (clamped by ``phases``;
    they read only earlier nodes, P's), and every later argument bound is intersected with P's
    before it decides on CROWN (P's bounds hold on the larger region, so on this one).
    ``slopes`` {fn node: per element (lower, upper) or None}: shared slopes that replace the
    default ones in every back-substitution through the node, intermediate and final (a
    certificate's ``arg_slopes``; on relu-like rows only where the element is unstable); a key
    (t, node) holds per-target slopes, laid over the shared ones in the back-substitutions of
    node t's argument bounds alone (``_aim``)."""
    if method not in ("ibp", "crown"):
        raise ValueError(f"unknown method {method!r}")
    st = _State(bg, lo, hi)
    st.shared = slopes or {}
    P, start = prior if prior is not None else (None, 0)

    def meet(k: int, bs: list[tuple[Fraction, Fraction]]) -> list[tuple[Fraction, Fraction]]:
        """Bounds of node k's argument rows intersected with ``tight``'s and P's (in the same
        layout; None: no bound), kept non-empty where they cross (an empty region, as ``arg_bounds``)."""
        for t in (tight.get(k) if tight else None, P and list(zip(*arg_rows(bg.nodes[k], P.arg[k])))):
            if t:
                bs = [(a if lo is None else max(a, lo), c if hi is None else min(c, hi))
                      for (a, c), lo, hi in zip(bs, *t)]
        return [(min(a, c), c) for a, c in bs]

    if P is not None:  # (nodes before ``start``: the parent's bounds and lines)
        e = bg.nodes[start].offset
        st.L[:e], st.U[:e] = P.L[:e], P.U[:e]
        st.arg.update((k, a) for k, a in P.arg.items() if k < start)
        st.lines.update((key, v) for key, v in P.lines.items() if key[0] < start)
    best = refine_skips(bg) if method == "crown" else None
    for k, node in enumerate(bg.nodes):
        if k < start or node.kind == "input":
            continue
        if node.kind == "const":
            bs = node.args
        else:  # per argument row (``arg_rows``' layout): IBP, then CROWN where ``_refine`` says
            forms = arg_rows(node, node.args)
            bs = list(P.arg[k]) if k == start else meet(k, [st.arg_bounds(k, f, False) for f in forms])
            if best is not None and not all(best[k]) and k != start:  # (else none refined: refine_skips)
                redo = _refine(node, bs, best[k])  # (meet again: a met bound is unchanged by it)
                saved = _aim(st, st.shared, k)
                bs = meet(k, [st.arg_bounds(k, f, True) if r else b for f, b, r in zip(forms, bs, redo)])
                st.shared, st.lines = saved or (st.shared, st.lines)
            if phases:
                bs = [clamp(*b, phases[k, r]) if (k, r) in phases else b for r, b in enumerate(bs)]
            bs = st.arg[k] = _regroup(node, bs)
        for i, b in enumerate(bs):
            st.L[node.offset + i], st.U[node.offset + i] = _image(node, b)
    return st


def _aim(st: _State, base: dict[Any, Any], k: int) -> tuple[dict[Any, Any], dict[Any, Any]] | None:
    """Lay node k's per-target slopes (keys (k, j) of ``base``) over the shared ones, per element,
    for the back-substitutions of k's argument bounds; the cached lines of those nodes j are set
    aside. Returns the (shared, lines) to restore after them, or None where k has none."""
    mine = {key[1]: row for key, row in base.items() if type(key) is tuple and key[0] == k}
    if not mine:
        return None
    saved = st.shared, st.lines
    st.shared = {**base, **{j: [s if t is None else t for t, s in zip(row, base.get(j) or [None] * len(row))]
                            for j, row in mine.items()}}
    st.lines = {key: v for key, v in saved[1].items() if key[0] not in mine}
    return saved


def _regroup(node: Node, rows: list[Any]) -> list[Any]:
    """Per-row values (``arg_rows``' layout) laid out like ``node.args``: mul (x, w) pairs, max
    one list per group, fn, lin and const one per element (``arg_rows``' inverse)."""
    if node.kind == "mul":
        return list(zip(rows[: node.size], rows[node.size:]))
    if node.kind == "max":
        it = iter(rows)
        return [[next(it) for _ in g] for g in node.args]
    return rows


def _refine(node: Node, bs: list[tuple[Fraction, Fraction]], skip: list[bool]) -> list[bool]:
    """Per argument row with IBP bounds ``bs``: whether CROWN refines it. Not where tighter bounds
    cannot change the node's relaxation (a kinked row's stable element, a max group with a
    dominating member: both exact), nor ``refine_skips`` rows (fn, mul, lin; a max group's
    members are refined together)."""
    if node.kind == "max":
        return [_max_choice(g)[1] is None for g in _regroup(node, bs) for _ in g]
    stable = node.fn in EXACT_AT_STABLE
    return [not s and not (stable and (lo >= 0 or hi <= 0)) for (lo, hi), s in zip(bs, skip)]


def _image(node: Node, b: Any) -> tuple[Fraction, Fraction]:
    """Bounds of one element of ``node`` from bounds ``b`` of its arguments (laid out like the
    element's ``node.args`` entry): the row's interval (fn), the product's (mul, intersected with
    layer norm's "within" fact: ``bound_graph.Lowerer.mul``), the max's, the form's own (lin),
    the interval itself (const)."""
    if node.kind == "fn":
        return FUNCTIONS[node.fn].interval(*b, **node.attrs)
    if node.kind == "mul":
        lo, hi = interval_mul(*b)
        return within(lo, hi, node.attrs["within"]) if "within" in node.attrs else (lo, hi)
    return interval_max(b) if node.kind == "max" else b


def point(bg: BoundGraph, x: Sequence[Fraction]) -> tuple[list[Fraction], list[Fraction]]:
    """Enclosures (L, U) of every variable at the input point x: the exact value (L = U) where
    every operation on the way is rational (affine forms, relu-like rows, products, max), the
    rows' and the interval rules' enclosures elsewhere; never rounded outward to floats (unlike
    ``forward``'s argument bounds), so a counterexample is judged on its exact outputs where
    they are rational, as the chain checker's exact evaluation does."""
    if len(x) != bg.n_in:
        raise ValueError(f"point has {len(x)} coordinates, the graph {bg.n_in} inputs")
    L: list[Fraction] = [Q(v) for v in x] + [ZERO] * (bg.n_vars - bg.n_in)
    U = list(L)
    exact = [True] * bg.n_in + [False] * (bg.n_vars - bg.n_in)  # L[v] == U[v] is the value

    def value(f: Aff) -> tuple[Fraction, Fraction]:
        if all(exact[v] for v in f.t):
            y = EXACT.dot(f.c, f.t.values(), [L[v] for v in f.t])  # (exact: integers, one lcm)
            return y, y
        return form_bounds(f, L, U)

    for node in bg.nodes[1:]:
        bs = node.args if node.kind == "const" else [value(f) for f in arg_rows(node, node.args)]
        bs = _regroup(node, bs)
        for i, b in enumerate(bs):
            if node.kind == "fn" and b[0] == b[1]:  # (an exact argument: the row's value)
                lo, hi = FUNCTIONS[node.fn].value(b[0], **node.attrs)
            else:
                lo, hi = _image(node, b)
            L[node.offset + i], U[node.offset + i], exact[node.offset + i] = lo, hi, lo == hi
    return L, U


def clamp(a: Any, b: Any, phase: int) -> tuple[Any, Any]:
    """[a, b] intersected with [0, inf) (phase 1) or (-inf, 0] (phase 0), kept non-empty."""
    if phase:
        a = max(a, 0 * a)
        return a, max(a, b)
    b = min(b, 0 * b)
    return min(a, b), b


def _max_choice(bs: list[tuple[Fraction, Fraction]]) -> tuple[int, int | None]:
    """The member with the largest midpoint (lower bounds tie often, e.g. at 0 after a ReLU, and
    the fast engine's outward rounding would break such ties differently), and whether it
    dominates every other member (then max = it, exactly)."""
    k = max(range(len(bs)), key=lambda j: bs[j][0] + bs[j][1])
    dom = all(bs[k][0] >= b[1] for j, b in enumerate(bs) if j != k)
    return k, (k if dom else None)


def split_nodes(bg: BoundGraph) -> list[bool]:
    """Per node: whether it is a fn node whose row can choose different default slopes under the
    policies of ``slopes.POLICIES``."""
    return [n.kind == "fn" and two_policies(FUNCTIONS[n.fn], n.attrs) for n in bg.nodes]


def policies(split: list[bool]) -> tuple[str, ...]:
    """The slope policies the final back-substitution runs, given ``split_nodes``: ``slopes.POLICIES``
    and GREEDY when some node's default lines depend on the policy, else the default alone."""
    return (*POLICIES, GREEDY) if any(split) else POLICIES[:1]


def _short(q: Fraction) -> Fraction:
    """A default slope rounded to a float (any slope is valid: this only keeps numbers short);
    itself when no float is that large."""
    try:
        return Q(float(q))
    except OverflowError:
        return Q(q)


def _lines(st: _State, k: int, i: int, slopes: Any, policy: str = POLICIES[0]
           ) -> tuple[list[tuple[Aff, Fraction]], Fraction, list[tuple[Aff, Fraction]], Fraction]:
    """Lower and upper relaxation of element i of node k: (terms over argument forms, constant);
    default fn slopes under ``policy``."""
    node, b = st.bg.nodes[k], st.arg[k][i]
    if node.kind == "lin":  # y = f: both lines exact
        return [(node.args[i], Q(1))], ZERO, [(node.args[i], Q(1))], ZERO
    if node.kind == "fn":
        row, (l, u), f = FUNCTIONS[node.fn], b, node.args[i]
        al, au = row.policy_slopes(policy, l, u, **node.attrs)
        al, au = _short(al), _short(au)
        sh = st.shared.get(k)
        sh = sh[i] if sh else None  # (any slope gives a valid line; a kinked row's stable one is exact)
        for t in (sh if not (node.fn in EXACT_AT_STABLE and (l >= 0 or u <= 0)) else None, slopes):
            if t is not None:  # (supplied slopes override shared ones, which override defaults)
                al, au = (a if q is None else Q(q) for a, q in ((al, t[0]), (au, t[1])))
        return ([(f, al)], row.lower_intercept(l, u, al, **node.attrs),
                [(f, au)], row.upper_intercept(l, u, au, **node.attrs))
    if node.kind == "mul":
        (x, w), ((lx, ux), (lw, uw)) = node.args[i], b
        tl, tu = (Q(0), Q(0)) if slopes is None else (Q(slopes[0] or 0), Q(slopes[1] or 0))
        if not (0 <= tl <= 1 and 0 <= tu <= 1):
            raise Rejected(f"McCormick weight outside [0, 1] at node {k} element {i}")
        (ax, aw, c_lo), (bx, bw, c_up) = mccormick((lx, ux), (lw, uw), tl, tu)  # relax.mul.*
        return [(x, ax), (w, aw)], c_lo, [(x, bx), (w, bw)], c_up
    g, bs = node.args[i], b
    j, dom = _max_choice(bs)
    if slopes is not None and slopes[0] is not None:
        j = slopes[0]
        if not is_index(j, len(g)):
            raise Rejected(f"bad max member {j!r} at node {k} element {i}")
    if dom is not None:
        return [(g[dom], Q(1))], ZERO, [(g[dom], Q(1))], ZERO
    return [(g[j], Q(1))], ZERO, [], max(x[1] for x in bs)


def backsub(st: _State, f: Aff, limit: int | None = None, slopes: dict[int, Any] | None = None,
            policy: str = POLICIES[0]) -> Fraction:
    """A lower bound of the form f over the box by back-substitution through the relaxations of
    nodes before node ``limit`` (all when None). ``slopes``: node index -> per element choice
    (fn: (a_lower, a_upper); mul: (t_lower, t_upper); max: (member, None); None entries: default
    under ``policy``: one of ``slopes.POLICIES`` or GREEDY)."""
    bg = st.bg
    lam, const = dict(f.t), f.c
    stop = len(bg.nodes) if limit is None else limit
    for k in range(stop - 1, 0, -1):
        node = bg.nodes[k]
        if node.kind in ("input", "const"):
            continue
        tick()  # (a deep network: back-substitution is quadratic in depth)
        o, e = node.offset, node.offset + node.size
        mine = [(v, lam.pop(v)) for v in [v for v in lam if o <= v < e]]
        sl = slopes.get(k) if slopes else None
        pk = policy if st.split[k] else POLICIES[0]  # (other nodes: the same lines, cached once)
        for v, q in mine:
            if not q:
                continue
            i = v - o
            if pk == GREEDY:
                terms, c = max((_side(_line(st, k, i, sl, p), q) for p in POLICIES),
                               key=lambda tc: _term_min(st, k, i, q, tc))  # (first on ties)
            else:
                terms, c = _side(_line(st, k, i, sl, pk), q)
            const += q * c
            for a, coef in terms:
                m = q * coef
                if not m:
                    continue
                const += m * a.c
                for w, r in a.t.items():
                    lam[w] = lam.get(w, ZERO) + m * r
    for v, q in lam.items():
        const += q * (st.L[v] if q > 0 else st.U[v])
    return const


def relaxation(st: _State, k: int, i: int) -> Any:
    """Element i of node k's default relaxation (lower terms, lower constant, upper terms, upper
    constant), terms over the node's argument forms: valid wherever the arguments lie in the
    bounds ``forward`` gave them (``errorforms`` composes them into forms over the inputs)."""
    return _line(st, k, i, None, POLICIES[0])


def _line(st: _State, k: int, i: int, sl: Any, policy: str) -> Any:
    """Element i of node k's relaxation under ``policy`` (cached when no slopes are supplied)."""
    if sl is not None:
        return _lines(st, k, i, sl[i], policy)
    if (k, i, policy) not in st.lines:
        st.lines[k, i, policy] = _lines(st, k, i, None, policy)
    return st.lines[k, i, policy]


def _side(lines: Any, q: Fraction) -> tuple[list[tuple[Aff, Fraction]], Fraction]:
    """The line a coefficient q takes: the lower one when q > 0, else the upper one."""
    lt, lc, ut, uc = lines
    return (lt, lc) if q > 0 else (ut, uc)


def _term_min(st: _State, k: int, i: int, q: Fraction,
              tc: tuple[list[tuple[Aff, Fraction]], Fraction]) -> Fraction:
    """min of q·(a·z + b) over z in the fn element's argument interval (GREEDY's score)."""
    (terms, c), (l, u) = tc, st.arg[k][i]
    m = q * terms[0][1]
    return q * c + min(m * l, m * u)


def best_backsub(st: _State, f: Aff, slopes: dict[int, Any] | None = None,
                 limit: int | None = None) -> Fraction:
    """The largest of the back-substitutions of f (through nodes before ``limit``, all when None)
    under each slope policy of ``policies`` and GREEDY (the ``slopes`` supplied override the
    defaults in each): each is a lower bound, so is their max."""
    return max(backsub(st, f, limit, slopes, p) for p in policies(st.split))


def mult_form(bg: BoundGraph, f: Aff, mult: dict[tuple[int, int], Fraction],
              phases: dict[tuple[int, int], int]) -> Aff:
    """f - Σ q·sgn·z over the split elements (k, i) with multiplier q (z: the element's argument
    form, sgn = +1 where the path says z >= 0, -1 where z <= 0): at most f on the leaf's region,
    exactly composed (``graph_vnn``'s ``"mult"``: β-CROWN's split multipliers)."""
    return as_aff(_lin([(Q(1), f)] + [(-q if phases[k, i] else q, bg.nodes[k].args[i])
                                      for (k, i), q in mult.items()]))


def objective(bg: BoundGraph, C: Sequence[Sequence[Any]] | None) -> list[Aff]:
    """The exact forms of the rows of C·y over the graph's variables (y's forms when C is None)."""
    if C is None:
        return list(bg.outputs)
    if any(len(row) != bg.n_out for row in C):
        raise ValueError(f"an objective row has not {bg.n_out} entries, one per output of the graph")
    return [_row_form(bg, tuple(Q(q) for q in row)) for row in C]


#: rows ``objective`` keeps per graph (``BoundGraph.objectives``); more are composed, not kept
OBJECTIVE_MEMO = 256


def _row_form(bg: BoundGraph, row: tuple[Fraction, ...]) -> Aff:
    """The exact form of row·y. Only the outputs with a nonzero coefficient enter (a zero term
    adds nothing: a property's atom names 1-2 of the outputs, each a form over up to a whole
    layer), a lone unit coefficient is the output's own form (forms are read-only), and dyadic
    sums are merged in integers (``_dyadic_lin``) whatever their count. Kept per graph and row
    (``bg.objectives``): the search's bounds, the root check and the replay compose it once."""
    f = bg.objectives.get(row)
    if f is not None:
        return f
    terms = [(q, a) for q, a in zip(row, bg.outputs) if q]
    if len(terms) == 1 and terms[0][0] == 1 and all(as_aff(terms[0][1]).t.values()):
        f = as_aff(terms[0][1])  # (no zero coefficient to drop, as a composition drops them)
    else:
        got = _dyadic_lin(terms) if terms else None
        f = as_aff(_lin(terms) if got is None else got)
    if len(bg.objectives) < OBJECTIVE_MEMO:
        bg.objectives[row] = f
    return f
