"""Sound float64 IBP and CROWN over a bound graph, batched over B boxes (numpy): the fast sibling of
``engine.py``, same algorithm (read that module first), with outward error charges.

Assumption (``gamma``/``U``/``TINY``/``outward`` in ``fast_forms.py``): numpy float64 is IEEE-754
binary64, round-to-nearest: fl(a∘b) = (a∘b)(1+δ), |δ| <= u = 2^-53, plus < 2^-1074 per operation on
underflow; a dot product of n terms in any order (BLAS, FMA) is within γ_n·Σ|a_i||b_i|, γ_n = nu/(1-nu).
The *computed* multipliers are the ones a bound
is stated for; every difference between a computed coefficient and the exact one it stands for is
charged as |difference|·max|variable| (max|v| from the certified bounds of that variable) and
subtracted from the constant (moved down for a lower bound). Each charge is inflated by 4 plus
``TINY``. Exact weights that are not floats are rounded once; their error E is charged as E·max|v|.
Relaxation lines: fn rows come from ``fast_functions.FAST`` (intercepts valid for any float slope,
rounded outward); mul planes take any float coefficients (α, β) with the constant the min (max) of
x·w - α·x - β·w over the four corners of the argument box (a bilinear function's extremes over a box
are at its corners), rounded outward; max uses one member (coefficient 1, exact) and the max upper
bound. A non-finite result makes the bound -inf (lower) / +inf (upper), never a pass. Slope
policies as the exact engine: argument bounds in one GREEDY pass, final bounds the largest of the
passes under each of ``engine.policies`` (``_best_backsub``). The relaxation lines and the
back-substitution are in ``fast_backsub.py``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from . import engine as exact
from .bound_graph import arg_rows, refine_skips
from .core import tick
from .engine import EXACT_AT_STABLE, _regroup, policies, split_nodes
from .fast_backsub import _backsub, _best_backsub, _max_sel, _usable
from .fast_forms import TINY, U, _Forms, outward
from .fast_functions import FAST
from .functions import FUNCTIONS
from .lower import Aff, BoundGraph
from .slopes import GREEDY, POLICIES


class FastGraph:
    """The bound graph with every form converted to floats once (reused for every batch)."""

    def __init__(self, bg: BoundGraph):
        self.bg = bg
        self.starts = [n.offset for n in bg.nodes]
        self.sizes = [n.size for n in bg.nodes]
        self.forms: list[_Forms | None] = []
        self.groups: list[Any] = []
        for n in bg.nodes:
            self.groups.append(None)
            if n.kind == "const":
                lo, hi = outward([a for a, _ in n.args], [b for _, b in n.args])
                self.forms.append((np.array(lo), np.array(hi)))  # type: ignore[arg-type]
                continue
            rows = None if n.kind == "input" else arg_rows(n, n.args)
            self.forms.append(None if rows is None else _Forms(rows, self.starts, self.sizes, bg.conv_hints))
            if n.kind == "max":  # (per element: its members' argument rows, -1 past the group's end)
                runs = _regroup(n, list(range(sum(len(g) for g in n.args))))
                idx = np.full((n.size, max(len(r) for r in runs)), -1)
                for i, r in enumerate(runs):
                    idx[i, : len(r)] = r
                self.groups[-1] = idx
        self.out = _Forms(list(bg.outputs), self.starts, self.sizes, bg.conv_hints)
        self.best = [np.array(b, dtype=bool) for b in refine_skips(bg)]
        self.split = split_nodes(bg)
        self.policies = policies(self.split)


_CACHE: dict[int, tuple[BoundGraph, FastGraph]] = {}
#: graphs kept converted, most recently used last: a search reuses a few; a loop of
#: ``tl.verify.bounds`` over many models must not keep every one alive
CACHE_SIZE = 16


def compiled(bg: BoundGraph | FastGraph) -> FastGraph:
    """The float conversion of ``bg``, cached by identity (the graph is kept alive with it while
    cached, so an id in the cache is never another graph's)."""
    if isinstance(bg, FastGraph):
        return bg
    hit = _CACHE.pop(id(bg), None) or (bg, FastGraph(bg))
    _CACHE[id(bg)] = hit
    while len(_CACHE) > CACHE_SIZE:
        del _CACHE[next(iter(_CACHE))]
    return hit[1]


class _State:
    def __init__(self, fg: FastGraph, lo: np.ndarray, hi: np.ndarray):
        self.fg, self.B = fg, lo.shape[0]
        self.L: list[np.ndarray] = [lo]
        self.U: list[np.ndarray] = [hi]
        self.vmax: list[np.ndarray] = [np.maximum(np.abs(lo), np.abs(hi))]
        self.arg: list[Any] = [None]  # per node: (B, R) lower and upper bounds of its argument forms
        self.relax: list[Any] = [{}]  # per node: default relaxations by policy
        self.memo: dict[Any, Any] = {}  # views, charge weights and sub-matrices of this state (below)
        self.shared: dict[int, Any] = {}  # ``forward``'s shared slopes: node -> ((1, size) lower, upper)
        self.off: list[Any] = [None]  # per fn node: (B,) bool, argument bounds not inside its domain

    def push(self, arg: Any, L: np.ndarray, Uu: np.ndarray, off: Any = None) -> None:
        """The next node's argument bounds and certified bounds (non-finite: vacuous); ``off``
        (fn nodes): per box, whether some element's argument bounds leave the row's domain."""
        self.off.append(off)
        self.arg.append(arg)
        self.relax.append({})
        bad = ~(np.isfinite(L) & np.isfinite(Uu))
        L, Uu = np.where(bad, -np.inf, L), np.where(bad, np.inf, Uu)
        self.L.append(L)
        self.U.append(Uu)
        self.vmax.append(np.maximum(np.abs(L), np.abs(Uu)))


def gather(rows: list[tuple[_State, int]]) -> _State:
    """The state whose box j is box b of state s for (s, b) = rows[j]: their certified bounds
    (relaxations are rebuilt from them); e.g. each subproblem's parent, as ``forward``'s prior."""
    one = object.__new__(_State)
    one.fg, one.B, one.memo, one.shared = rows[0][0].fg, len(rows), {}, rows[0][0].shared

    def cat(pick: Any) -> list[Any]:
        ls = [(pick(s), b) for s, b in rows]
        return [None if a is None else np.concatenate([v[k][b:b + 1] for v, b in ls])
                for k, a in enumerate(ls[0][0])]

    one.L, one.U, one.vmax = cat(lambda s: s.L), cat(lambda s: s.U), cat(lambda s: s.vmax)
    one.off = cat(lambda s: s.off)
    lo, hi = (cat(lambda s, i=i: [None if a is None else a[i] for a in s.arg]) for i in (0, 1))
    one.arg = [None if a is None else (a, h) for a, h in zip(lo, hi)]
    one.relax = [{} for _ in one.L]
    return one


@np.errstate(invalid="ignore", over="ignore")  # non-finite entries are handled (vacuous bounds)
def forward(fg: FastGraph, lo: np.ndarray, hi: np.ndarray, method: str = "ibp",
            phases: dict[int, np.ndarray] | None = None,
            clip: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
            prior: tuple[_State, np.ndarray] | None = None, slopes: dict[int, Any] | None = None) -> _State:
    """Certified bounds of every variable over each box (B, n_in), as ``engine.forward``
    (``slopes`` its shared slopes, as arrays (1, size) each, NaN = default; per-target ones
    under keys (target, node), as there: ``_aim``);
    ``phases`` {fn node: (B, size) int array, 1 / 0 / -1 (no split)} as there; ``clip`` {node:
    (lo, hi) arrays (B, rows)}: other valid bounds of the node's argument rows (e.g. the exact
    engine's IBP with its layer-norm facts), intersected with these before the node is used.
    ``prior`` (P, start): P a state (``gather``) whose box b's region contains this box b's (its
    parent's before a ReLU split), start (B,) node indices, as ``engine.forward``'s: box b keeps
    P's bounds at nodes before start[b], P's argument bounds at start[b] (clamped by ``phases``),
    and every later argument bound is intersected with P's (valid on the larger region, so on
    this one) before it picks the rows CROWN refines."""
    if method not in ("ibp", "crown"):
        raise ValueError(f"unknown method {method!r}")
    st = _State(fg, lo, hi)
    st.shared = slopes or {}
    P = None if prior is None else prior[0]
    first = 0 if prior is None else int(prior[1].min())
    for k, node in enumerate(fg.bg.nodes[1:], start=1):
        if k < first:  # (every box keeps its parent's bounds here)
            st.push(P.arg[k], P.L[k], P.U[k], P.off[k])
            continue
        if node.kind == "const":
            clo, chi = fg.forms[k]
            st.push(None, *(np.broadcast_to(v, (st.B, node.size)).copy() for v in (clo, chi)))
            continue
        F = fg.forms[k]
        al, au = F.bounds(st.L, st.U, st.vmax)
        held = np.zeros((st.B, 1), bool) if P is None else (k <= prior[1])[:, None]  # (P's at start[b])
        if P is not None:
            al, au = np.fmax(al, P.arg[k][0]), np.fmin(au, P.arg[k][1])
            al = np.minimum(al, au)  # (crossed: an empty region, kept non-empty as below)
        saved = _aim(st, st.shared, k) if method == "crown" else None
        if method == "crown" and any(fg.bg.nodes[p].kind not in ("input", "const") for p, *_ in F.parents) \
                and not held.all():  # (every box keeping P's: no row to refine)
            # (forms over input and const variables only: their IBP bound is already exact)
            rows = _refine_rows(node, fg.groups[k], al, au)
            rows = rows[~fg.best[k][rows]]  # (bound_graph.refine_skips)
            if rows.size and node.kind == "fn" and node.fn == "relu":
                # a ReLU whose upper bound is <= 0 outputs 0 whatever its lower bound: upper rows
                # first, then lower rows only for the elements still unstable. Applied per box
                # only where IBP left the element unstable (as ``engine.forward``), so no box's
                # bounds depend on the other boxes of its batch: a leaf the search bounded in one
                # batch gets the same bound when the checker replays it in another
                need = (al[:, rows] < 0) & (au[:, rows] > 0)
                up = -_crown_rows(st, k, rows, -1)
                au[:, rows] = np.where(need, np.fmin(au[:, rows], up), au[:, rows])
                need &= au[:, rows] > 0
                keep = need.any(0)
                rows, need = rows[keep], need[:, keep]
                if rows.size:
                    low = _crown_rows(st, k, rows, 1)
                    al[:, rows] = np.where(need, np.fmax(al[:, rows], low), al[:, rows])
            elif rows.size:
                low = _crown_rows(st, k, np.concatenate([rows, rows]), np.repeat([1, -1], rows.size))
                # (fmax/fmin: a NaN CROWN bound, inf - inf on the way, leaves IBP's standing)
                al[:, rows] = np.fmax(al[:, rows], low[:, : rows.size])
                au[:, rows] = np.fmin(au[:, rows], -low[:, rows.size:])
            # (crossed bounds: an empty region, where any bounds hold; kept non-empty as
            # ``engine.arg_bounds``, so every row accepts them)
            al = np.minimum(al, au)
        st.shared, st.relax, st.memo = saved or (st.shared, st.relax, st.memo)
        if clip is not None and k in clip:  # (both valid, so is the intersection; kept non-empty;
            # fmax / fmin: a NaN end on either side is no information, never read as a bound)
            al, au = np.fmax(al, clip[k][0]), np.fmin(au, clip[k][1])
            al = np.minimum(al, au)
        if P is not None:
            al, au = np.where(held, P.arg[k][0], al), np.where(held, P.arg[k][1], au)
        if phases is not None and k in phases:
            ph = phases[k]
            al = np.where(ph == 1, np.maximum(al, 0.0), al)
            au = np.where(ph == 1, np.maximum(au, al), np.where(ph == 0, np.minimum(au, 0.0), au))
            al = np.where(ph == 0, np.minimum(al, au), al)
        m = node.size
        off = None
        if node.kind == "fn" and node.fn != "relu":  # (a sum of terms >= 0: at least its constant)
            al = np.minimum(np.maximum(al, F.floor(st.L)), au)
            off = _off_domain(node, al, au)
        if node.kind == "fn" and node.fn == "relu":  # (monotone, exact in floats; NaN: push's)
            L, Uu = np.maximum(al, 0.0), np.maximum(au, 0.0)
        elif node.kind == "lin":  # (y = f exactly: y's bounds are its row's)
            L, Uu = al, au
        elif node.kind == "fn":
            row = FAST[node.fn]
            ok, fl, fu = _usable(row, al, au, node.attrs, ends=True)  # (an infinite end: the limit)
            L, Uu = row.interval(fl, fu, **node.attrs)
            L, Uu = np.where(ok, L, -np.inf), np.where(ok, Uu, np.inf)
        elif node.kind == "mul":
            lx, ux, lw, uw = al[:, :m], au[:, :m], al[:, m:], au[:, m:]
            ps = np.stack([lx * lw, lx * uw, ux * lw, ux * uw])  # (the corners' products, then outward)
            e = np.abs(ps).max(0) * 4 * U + TINY
            L, Uu = ps.min(0) - e, ps.max(0) + e
            if "within" in node.attrs:  # (layer norm's |y_i| <= sqrt(n - 1), as engine.forward)
                c = outward([-node.attrs["within"]], [node.attrs["within"]])[1][0]
                L = np.minimum(np.maximum(L, -c), c)
                Uu = np.maximum(np.minimum(Uu, c), L)
        else:
            idx = fg.groups[k]
            L = np.where(idx >= 0, al[:, idx], -np.inf).max(2)
            Uu = np.where(idx >= 0, au[:, idx], -np.inf).max(2)
        st.push((al, au), L, Uu, off)
    return st


def _off_domain(node: Any, al: np.ndarray, au: np.ndarray) -> np.ndarray:
    """(B,) per box: some element's argument bounds are not inside the fn row's domain (a NaN end
    read as unbounded), where ``engine.forward`` raises ``DomainError``: the run may be NaN there."""
    lo, hi = np.where(np.isnan(al), -np.inf, al), np.where(np.isnan(au), np.inf, au)
    return ~np.broadcast_to(FUNCTIONS[node.fn].domain(lo, hi, **node.attrs), lo.shape).all(1)


def undefined(st: _State) -> tuple[np.ndarray, str | None]:
    """(B,) per box: some fn node's argument bounds leave its domain (the exact engine refuses such
    a box: the run may be NaN or infinite at a point of it, and an exact 0 factor or a dead node
    would hide the vacuous bounds there); and the first such node's reason, or None."""
    bad, why = np.zeros(st.B, bool), None
    for k, off in enumerate(st.off):
        if off is not None and off.any():
            bad |= off
            n = st.fg.bg.nodes[k]
            b = int(np.argmax(off))
            al, au = st.arg[k][0][b], st.arg[k][1][b]
            i = int(np.argmax(_off_domain(n, al[:, None], au[:, None])))
            why = why or f"{n.fn}: interval [{al[i]:.6g}, {au[i]:.6g}] outside the domain (node {k}, box {b})"
    return bad, why


def _aim(st: _State, base: dict[Any, Any], k: int) -> Any:
    """``engine._aim``: node k's per-target slopes over the shared ones (NaN: the shared one) for
    its argument bounds, with fresh caches of the slope-dependent lines, views and charges (the
    weights and sub-matrices kept); returns what to restore, or None."""
    mine = {key[1]: row for key, row in base.items() if type(key) is tuple and key[0] == k}
    if not mine:
        return None
    saved = st.shared, st.relax, st.memo
    st.shared = {**base, **{j: tuple(a if j not in base else np.where(np.isnan(a), s, a)
                                     for a, s in zip(row, base.get(j, row))) for j, row in mine.items()}}
    st.relax = [{} if j in mine else r for j, r in enumerate(st.relax)]
    st.memo = {key: v for key, v in st.memo.items() if key[0] in ("w", "sub", "W")}
    return saved


def _refine_rows(node, idx, al, au) -> np.ndarray:
    """Argument rows whose relaxation tighter bounds could change (in some box); none of a lin
    node (y = f exactly: back-substitution passes through it, so no CROWN row reads y's bounds)."""
    if node.kind == "lin":
        return np.arange(0)
    if node.kind == "fn" and node.fn in EXACT_AT_STABLE:  # (a stable element's line is exact)
        return np.nonzero(((al < 0) & (au > 0)).any(0))[0]
    if node.kind != "max":
        return np.arange(al.shape[1])
    rows = idx[~_max_sel(idx, al, au)[1].all(0)]  # (groups with no dominating member in some box)
    return np.unique(rows[rows >= 0])


def _crown_rows(st: _State, k: int, rows: np.ndarray, sign: Any) -> np.ndarray:
    """CROWN lower bounds (B, len(rows)) of sign·(argument row) for the given rows of node k
    (``sign`` +-1 per row or for all), in one pass (GREEDY slopes on graphs with two policies, as
    engine.py)."""
    tick()  # (a deep network: CROWN is quadratic in depth)
    F = st.fg.forms[k]
    sg = np.broadcast_to(np.asarray(sign, dtype=float), rows.shape)[:, None]
    lam: dict[int, np.ndarray] = {}
    err = np.zeros((st.B, len(rows)))
    for p, A, _, E in F.parents:
        lam[p] = A.take(rows) * sg
        if E is not None:
            err += 4 * np.einsum("kj,bj->bk", E.take(rows), st.vmax[p])
    const = np.broadcast_to(F.c[rows] * sg[:, 0], (st.B, len(rows))).copy()
    err += F.Ec[rows][None]
    return _backsub(st, lam, const, err, k, None, GREEDY if len(st.fg.policies) > 1 else POLICIES[0])


def boxes(lo: Any, hi: Any) -> tuple[np.ndarray, np.ndarray]:
    """(B, n) float arrays from exact corners (lists of Fractions, one list per box): outward."""
    los, his = zip(*(outward([Fraction(v) for v in a], [Fraction(v) for v in b]) for a, b in zip(lo, hi)))
    return np.array(los, dtype=float), np.array(his, dtype=float)


def tight_args(bg: BoundGraph, box: list[tuple[Fraction, Fraction]]) -> dict[int, Any]:
    """{node: (lows, highs)} of every fn/mul/max node's argument rows (mul: the x rows, then the w
    rows; max: the members in order) over one box, as Fractions (a non-finite end: None): this
    engine's CROWN forward pass, each node's rows clipped to the exact engine's IBP bounds
    (rounded outward; they carry layer norm's "ball" fact, which this engine lacks), so its CROWN
    starts from them. For ``engine.forward``'s ``tight`` (the float error column's ranges)."""
    st = forward(compiled(bg), *boxes([[a for a, _ in box]], [[b for _, b in box]]), "crown",
                 clip=ibp_clip(bg, box))

    def side(v: np.ndarray) -> list[Fraction | None]:
        return [Fraction(x) if np.isfinite(x) else None for x in v[0].tolist()]

    return {k: (side(a[0]), side(a[1])) for k, a in enumerate(st.arg) if a is not None}


def ibp_clip(bg: BoundGraph, box: list[tuple[Fraction, Fraction]]) -> dict[int, Any]:
    """``forward``'s ``clip`` from the exact engine's IBP over one box: every fn, mul and max
    node's argument rows, rounded outward, each end on its own. Valid bounds, so the
    intersection with this engine's is too; they carry layer norm's facts ("within", "ball") and
    softmax's exact sums (1 + sum of exps >= 1), which float64 loses next to a huge term. An end
    past 2^1000 (near float64's top): a lower end l < -2^1000 is none (-inf), l > 2^1000 becomes
    2^1000 (x >= l > 2^1000), the mirror for an upper end; an end within is kept whatever the
    other end is (l <= x holds alone), so a sum of exps whose upper end passes float64 keeps its
    lower end (>= 1 for softmax's, 1/x then in [0, 1])."""
    ex = exact.forward(bg, [a for a, _ in box], [b for _, b in box], "ibp")
    big = Fraction(2) ** 1000
    clip = {}
    for k, bs in ex.arg.items():  # (the fn, mul and max nodes)
        rows = arg_rows(bg.nodes[k], bs)
        lfar, hfar = [a < -big for a, _ in rows], [b > big for _, b in rows]
        cl, ch = outward([0 * a if f else min(a, big) for (a, _), f in zip(rows, lfar)],
                         [0 * b if f else max(b, -big) for (_, b), f in zip(rows, hfar)])
        clip[k] = (np.where(lfar, -np.inf, [cl]), np.where(hfar, np.inf, [ch]))
    return clip


def forms_of(bg: BoundGraph | FastGraph, forms: list[Aff]) -> _Forms:
    """Exact forms over the graph's variables (e.g. a property's objective rows), as floats."""
    fg = compiled(bg)
    return _Forms(forms, fg.starts, fg.sizes)


def bound_forms(st: _State, F: _Forms, slopes: dict[int, Any] | None = None) -> np.ndarray:
    """Certified lower bounds (B, K) of the forms F over each box of the forward state ``st``:
    the best of IBP and the final CROWN back-substitution under each slope policy (``slopes``
    per node: arrays (B, size), NaN = default; max: member index arrays)."""
    il, _ = F.bounds(st.L, st.U, st.vmax)
    lam: dict[int, np.ndarray] = {}
    err = np.zeros((st.B, F.R))
    for p, A, _, E in F.parents:
        lam[p] = A.take()
        if E is not None:
            err += 4 * E.rmul(st.vmax[p])
    const = np.broadcast_to(F.c, (st.B, F.R)).copy()
    err += F.Ec[None]
    low = _best_backsub(st, lam, const, err, slopes)
    return np.where(undefined(st)[0][:, None], -np.inf, np.maximum(il, low))  # (engine.forward refuses)
