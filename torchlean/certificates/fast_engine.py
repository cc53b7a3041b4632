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
passes under each of ``engine.policies`` (``_best_backsub``).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from . import engine as exact
from .bound_graph import Unsupported, refine_skips
from .core import tick
from .engine import EXACT_AT_STABLE, split_nodes
from .fast_forms import TINY, U, _charge, _Forms, _safe, _View, gamma, outward
from .fast_functions import FAST, relu_lines
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
            if n.kind == "lin":  # (``lower(wide=True)``'s, for the exact engine only)
                raise Unsupported("the fast engine takes no lin nodes")
            if n.kind == "fn":
                fl = list(n.args)
            elif n.kind == "mul":
                fl = [a for a, _ in n.args] + [w for _, w in n.args]
            elif n.kind == "max":
                fl = [f for g in n.args for f in g]
                G = max(len(g) for g in n.args)
                idx = np.full((n.size, G), -1)
                pos = 0
                for i, g in enumerate(n.args):
                    idx[i, : len(g)] = np.arange(pos, pos + len(g))
                    pos += len(g)
                self.groups.append(idx)
            else:
                fl = None
            if n.kind != "max":
                self.groups.append(None)
            self.forms.append(_Forms(fl, self.starts, self.sizes) if fl is not None else None)
            if n.kind == "const":
                lo, hi = outward([a for a, _ in n.args], [b for _, b in n.args])
                self.forms[-1] = (np.array(lo), np.array(hi))  # type: ignore[assignment]
        self.out = _Forms(list(bg.outputs), self.starts, self.sizes)
        self.best = [np.array(b, dtype=bool) for b in refine_skips(bg)]
        self.split = split_nodes(bg)
        self.policies = (*POLICIES, GREEDY) if any(self.split) else POLICIES[:1]  # (engine.policies)


_CACHE: dict[int, tuple[BoundGraph, FastGraph]] = {}


def compiled(bg: BoundGraph | FastGraph) -> FastGraph:
    """The float conversion of ``bg``, cached by identity (the graph is kept alive with it)."""
    if isinstance(bg, FastGraph):
        return bg
    if id(bg) not in _CACHE:
        _CACHE[id(bg)] = (bg, FastGraph(bg))
    return _CACHE[id(bg)][1]


class _State:
    def __init__(self, fg: FastGraph, lo: np.ndarray, hi: np.ndarray):
        B = lo.shape[0]
        self.fg, self.B = fg, B
        self.L: list[np.ndarray] = [lo]
        self.U: list[np.ndarray] = [hi]
        self.vmax: list[np.ndarray] = [np.maximum(np.abs(lo), np.abs(hi))]
        self.arg: list[Any] = [None]  # per node: (B, R) lower and upper bounds of its argument forms
        self.relax: list[Any] = [{}]  # per node: default relaxations by policy
        self.memo: dict[Any, Any] = {}  # views, charge weights and sub-matrices of this state (below)

    def push(self, L: np.ndarray, Uu: np.ndarray) -> None:
        bad = ~(np.isfinite(L) & np.isfinite(Uu))
        L, Uu = np.where(bad, -np.inf, L), np.where(bad, np.inf, Uu)
        self.L.append(L)
        self.U.append(Uu)
        self.vmax.append(np.maximum(np.abs(L), np.abs(Uu)))


def select(st: _State, b: int) -> _State:
    """Box b of a forward state alone (its certified bounds; relaxations are rebuilt from them)."""
    return gather([(st, b)])


def gather(rows: list[tuple[_State, int]]) -> _State:
    """The state whose box j is box b of state s for (s, b) = rows[j]: their certified bounds
    (relaxations are rebuilt from them); e.g. each subproblem's parent, as ``forward``'s prior."""
    one = object.__new__(_State)
    one.fg, one.B, one.memo = rows[0][0].fg, len(rows), {}

    def cat(pick: Any) -> list[Any]:
        ls = [(pick(s), b) for s, b in rows]
        return [None if a is None else np.concatenate([v[k][b:b + 1] for v, b in ls])
                for k, a in enumerate(ls[0][0])]

    one.L, one.U, one.vmax = cat(lambda s: s.L), cat(lambda s: s.U), cat(lambda s: s.vmax)
    lo, hi = (cat(lambda s, i=i: [None if a is None else a[i] for a in s.arg]) for i in (0, 1))
    one.arg = [None if a is None else (a, h) for a, h in zip(lo, hi)]
    one.relax = [{} for _ in one.L]
    return one


def _mul_iv(lx, ux, lw, uw):
    ps = np.stack([lx * lw, lx * uw, ux * lw, ux * uw])
    m = np.abs(ps).max(0) * 4 * U + TINY
    return ps.min(0) - m, ps.max(0) + m


@np.errstate(invalid="ignore", over="ignore")  # non-finite entries are handled (vacuous bounds)
def forward(fg: FastGraph, lo: np.ndarray, hi: np.ndarray, method: str = "ibp",
            phases: dict[int, np.ndarray] | None = None,
            clip: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
            prior: tuple[_State, np.ndarray] | None = None) -> _State:
    """Certified bounds of every variable over each box (B, n_in), as ``engine.forward``;
    ``phases`` {fn node: (B, size) int array, 1 / 0 / -1 (no split)} as there; ``clip`` {node:
    (lo, hi) arrays (B, rows)}: other valid bounds of the node's argument rows (e.g. the exact
    engine's IBP with its layer-norm facts), intersected with these before the node is used.
    ``prior`` (P, start): P a state (``gather``) whose box b's region contains this box b's (its
    parent's before a ReLU split), start (B,) node indices, as ``engine.forward``'s: box b keeps
    P's bounds at nodes before start[b], and every other argument bound is intersected with P's
    (valid on the larger region, so on this one) before it picks the rows CROWN refines."""
    if method not in ("ibp", "crown"):
        raise ValueError(f"unknown method {method!r}")
    st = _State(fg, lo, hi)
    P = None if prior is None else prior[0]
    first = 0 if prior is None else int(prior[1].min())
    for k, node in enumerate(fg.bg.nodes[1:], start=1):
        if k < first:  # (every box keeps its parent's bounds here)
            st.arg.append(P.arg[k])
            st.relax.append({})
            st.push(P.L[k], P.U[k])
            continue
        if node.kind == "const":
            clo, chi = fg.forms[k]
            st.arg.append(None)
            st.relax.append({})
            st.push(*(np.broadcast_to(v, (st.B, node.size)).copy() for v in (clo, chi)))
            continue
        F = fg.forms[k]
        al, au = F.bounds(st.L, st.U, st.vmax)
        if P is not None:
            al, au = np.fmax(al, P.arg[k][0]), np.fmin(au, P.arg[k][1])
            al = np.minimum(al, au)  # (crossed: an empty region, kept non-empty as below)
        if method == "crown" and any(fg.bg.nodes[p].kind not in ("input", "const") for p, *_ in F.parents):
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

        if clip is not None and k in clip:  # (both valid, so is the intersection; kept non-empty)
            al, au = np.fmax(al, clip[k][0]), np.fmin(au, clip[k][1])
            al = np.minimum(al, au)
        if P is not None:
            keep = (k < prior[1])[:, None]
            al, au = np.where(keep, P.arg[k][0], al), np.where(keep, P.arg[k][1], au)
        if phases is not None and k in phases:
            ph = phases[k]
            al = np.where(ph == 1, np.maximum(al, 0.0), al)
            au = np.where(ph == 1, np.maximum(au, al), np.where(ph == 0, np.minimum(au, 0.0), au))
            al = np.where(ph == 0, np.minimum(al, au), al)
        st.arg.append((al, au))
        m = node.size
        if node.kind == "fn" and node.fn == "relu":  # (monotone, exact in floats; NaN: push's)
            L, Uu = np.maximum(al, 0.0), np.maximum(au, 0.0)
        elif node.kind == "fn":
            row = FAST[node.fn]
            ok, fl, fu = _usable(row, al, au, node.attrs)
            L, Uu = row.interval(fl, fu, **node.attrs)
            L, Uu = np.where(ok, L, -np.inf), np.where(ok, Uu, np.inf)
        elif node.kind == "mul":
            L, Uu = _mul_iv(al[:, :m], au[:, :m], al[:, m:], au[:, m:])
            if "within" in node.attrs:  # (layer norm's |y_i| <= sqrt(n - 1), as engine.forward)
                c = outward([-node.attrs["within"]], [node.attrs["within"]])[1][0]
                L = np.minimum(np.maximum(L, -c), c)
                Uu = np.maximum(np.minimum(Uu, c), L)
        else:
            idx = fg.groups[k]
            L = np.where(idx >= 0, al[:, idx], -np.inf).max(2)
            Uu = np.where(idx >= 0, au[:, idx], -np.inf).max(2)
        st.relax.append({})
        st.push(L, Uu)
    return st


def _refine_rows(node, idx, al, au) -> np.ndarray:
    """Argument rows whose relaxation tighter bounds could change (in some box)."""
    if node.kind == "fn":
        if node.fn in EXACT_AT_STABLE:
            return np.nonzero(((al < 0) & (au > 0)).any(0))[0]
        return np.arange(al.shape[1])
    if node.kind == "mul":
        return np.arange(al.shape[1])
    dom = _max_sel(idx, al, au)[1]
    need = ~dom.all(0)  # (size,)
    rows = idx[need]
    return np.unique(rows[rows >= 0])


def _max_sel(idx, al, au):
    """Per box and element: the member row with the largest midpoint, and whether it dominates."""
    ml = np.where(idx >= 0, al[:, idx], -np.inf)  # (B, m, G)
    mu = np.where(idx >= 0, au[:, idx], -np.inf)
    j = np.where(idx >= 0, al[:, idx] + au[:, idx], -np.inf).argmax(2)  # largest midpoint, as engine.py
    best = np.take_along_axis(ml, j[..., None], 2)[..., 0]
    others = np.where(np.arange(idx.shape[1]) == j[..., None], -np.inf, mu).max(2)
    sel = np.take_along_axis(np.broadcast_to(idx, ml.shape), j[..., None], 2)[..., 0]
    return sel, best >= others, mu.max(2)


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


def _relaxation(st: _State, k: int, slopes: Any = None, policy: str = POLICIES[0]):
    """Node k's lines per box: ('fn', aL, bL, aU, bU) (B, m); ('mul', αL, βL, γL, αU, βU, γU);
    ('max', row, dominated, umax); default fn slopes under ``policy``. Cached when no slopes are
    supplied."""
    policy = policy if st.fg.split[k] else POLICIES[0]  # (other nodes: the same lines)
    if slopes is None and policy in st.relax[k]:
        return st.relax[k][policy]
    node, (al, au) = st.fg.bg.nodes[k], st.arg[k]
    m = node.size
    if node.kind == "fn" and node.fn == "relu" and slopes is None and np.isfinite(al).all() \
            and np.isfinite(au).all() and (al <= au).all():
        out = ("fn", *relu_lines(al, au))
    elif node.kind == "fn":
        row = FAST[node.fn]
        ok, fl, fu = _usable(row, al, au, node.attrs)
        sl, su = row.policy_slopes(policy, fl, fu, **node.attrs)
        sl, su = (np.where(np.isfinite(s), s, 0.0) * np.ones_like(al) for s in (sl, su))
        if slopes is not None:
            sl = sl if slopes[0] is None else np.where(np.isnan(slopes[0]), sl, slopes[0])
            su = su if slopes[1] is None else np.where(np.isnan(slopes[1]), su, slopes[1])
        sl, su = (np.where(np.isfinite(s), s, 0.0) for s in (sl, su))  # (the line used is the one stated)
        out = ("fn", sl, np.where(ok, row.lower_intercept(fl, fu, sl, **node.attrs), -np.inf), su,
               np.where(ok, row.upper_intercept(fl, fu, su, **node.attrs), np.inf))
    elif node.kind == "mul":
        lx, ux, lw, uw = al[:, :m], au[:, :m], al[:, m:], au[:, m:]
        tl, tu = (np.zeros_like(lx), np.zeros_like(lx)) if slopes is None else (
            np.nan_to_num(np.clip(slopes[0], 0, 1)) if slopes[0] is not None else np.zeros_like(lx),
            np.nan_to_num(np.clip(slopes[1], 0, 1)) if slopes[1] is not None else np.zeros_like(lx))
        aL, bL = (1 - tl) * lw + tl * uw, (1 - tl) * lx + tl * ux
        aU, bU = (1 - tu) * uw + tu * lw, (1 - tu) * lx + tu * ux
        cL = _corners(lx, ux, lw, uw, aL, bL, -1)
        cU = _corners(lx, ux, lw, uw, aU, bU, 1)
        out = ("mul", aL, bL, cL, aU, bU, cU)
    else:
        sel, dom, umax = _max_sel(st.fg.groups[k], al, au)
        if slopes is not None and slopes[0] is not None:
            pick = np.asarray(slopes[0])
            idx = st.fg.groups[k]
            safe = np.clip(pick, 0, idx.shape[1] - 1)[..., None]
            chosen = np.take_along_axis(np.broadcast_to(idx, (st.B, *idx.shape)), safe, 2)[..., 0]
            sel = np.where(dom | (pick < 0) | (chosen < 0), sel, chosen)  # (invalid picks: default)
        out = ("max", sel, dom, umax)
    if slopes is None:
        st.relax[k][policy] = out
    return out


def _usable(row, al, au, attrs):
    """The rows raise on any unbounded or out-of-domain element: those get the stand-in [1, 1]
    and, by the caller, vacuous results (ok False)."""
    ok = row.usable(al, au, **attrs)
    if ok.all():
        return ok, al, au
    return ok, np.where(ok, al, 1.0), np.where(ok, au, 1.0)


def _corners(lx, ux, lw, uw, a, b, sign):
    """min (sign -1) or max (+1) of x·w - a·x - b·w over the box's corners, outward."""
    vals = []
    for x in (lx, ux):
        for w in (lw, uw):
            v = x * w - a * x - b * w
            mag = np.abs(x * w) + np.abs(a * x) + np.abs(b * w)
            vals.append(v + sign * _charge(mag, 3))
    st = np.stack(vals)
    return st.min(0) if sign < 0 else st.max(0)


COMPOSITE = True  # (False: every view node charged at its own step; the tests compare the two)


def _view(st: _State, k: int, sk: Any, policy: str, memo: dict) -> _View | None:
    """Node k's ``_View`` under ``policy`` (``sk``: supplied slopes or None), or None where the
    multipliers stay in the node's own layout (other kinds; fn nodes whose lines GREEDY picks per
    row; lines with a non-finite number)."""
    node = st.fg.bg.nodes[k]
    if node.kind != "fn" or (policy == GREEDY and st.fg.split[k]):
        return None
    pol = policy if st.fg.split[k] else POLICIES[0]
    key, memo = ("view", k, pol), (st.memo if sk is None else memo)
    if key not in memo:
        al, au = st.arg[k]
        v = _View(_relaxation(st, k, sk, pol), np.maximum(np.abs(al), np.abs(au)))
        memo[key] = v if v.ok else None
    return memo[key]


def _weights(st: _State, F: _Forms, rows: np.ndarray | None) -> np.ndarray:
    """(B, R') charges per unit of |multiplier| on the given rows of F (all when None) for
    replacing them by their forms: 4·γ_{n+3}·(Σ_j |A_rj| max|v_j| + |c_r|) for the computed
    products and constant, plus 4·(E·max|v| + E_c) for the float conversion of the exact forms."""
    key = ("w", id(F), id(rows))
    if key not in st.memo:
        g = 4 * gamma(F.R + 3)
        w = g * np.abs(F.c) + 4 * F.Ec
        for p, _, absA, E in F.parents:
            w = w + g * absA.rmul(st.vmax[p])
            if E is not None:
                w = w + 4 * E.rmul(st.vmax[p])
        # (F and rows kept alive with their ids: a state may outlive one caller's forms,
        # ``fast_vnn.check_leaves_fast``'s shared states)
        st.memo[key] = (F, rows, w if rows is None else w[:, rows])
    return st.memo[key][2]


def _sub(st: _State, A: Any, rows: np.ndarray | None, cols: np.ndarray | None) -> np.ndarray | None:
    """The dense matrix A restricted to ``rows`` and ``cols`` (None: all), cached per state; None
    for a sparse A; for forms F, the constants of the rows."""
    key = ("sub", id(A), id(rows), id(cols))
    if key in st.memo:
        return st.memo[key][3]
    if isinstance(A, _Forms):  # (the constants of the rows)
        D = A.c[rows]
    elif A.sparse:
        return None
    elif rows is None and cols is None:
        return A.D
    else:
        D = A.D if rows is None else A.D[rows]
        D = D if cols is None else D[:, cols]
    st.memo[key] = (A, rows, cols, D)  # (keeps A, rows and cols alive with their ids)
    return D


def _charges(st: _State, k: int, views: dict[int, Any], composite: bool, done: dict) -> np.ndarray:
    """V (B, L): per unit |λ| of view node k, a bound on the charges of replacing it by its lines
    and forms; with ``composite``, also on every charge of the nodes below that those multipliers
    cause: a parent's multipliers are at most (1 + γ)·|μ|·|A| (a computed dot product is at most
    1 + γ times the sum of its absolute terms; an accumulation from another consumer adds one more
    rounding, within the same γ), and |μ| at most G·|λ|. ``done``: the V already computed for
    these ``views`` (a composite V depends on the views of every node below, so it is cached per
    policy and mode, never on a view that several policies share)."""
    if k in done:
        return done[k]
    v = views[k]
    F = st.fg.forms[k]
    W = 2 * U * v.zmax + _weights(st, F, v.order)
    if composite:
        grow = 1 + gamma(F.R + 2 + len(st.fg.bg.nodes))
        for p, A, absA, _ in F.parents:
            if views.get(p) is None:
                continue
            Vp = _charges(st, p, views, composite, done)
            D = _sub(st, absA, v.order, views[p].order)
            if D is None:
                full = np.zeros((st.B, A.shape[1]))
                full[:, views[p].order] = Vp
                W = W + grow * absA.rmul(full)[:, v.order]
            else:
                W = W + grow * (Vp @ D.T)
    V = v.G * W
    V[:, : v.na] += v.w2
    done[k] = V
    return V


def _backsub(st: _State, lam: dict[int, np.ndarray], const: np.ndarray, err: np.ndarray, limit: int,
             slopes: dict[int, Any] | None = None, policy: str = POLICIES[0]) -> np.ndarray:
    """Lower bounds (B, K) of Σ_p lam[p]·v_p + const over the boxes, by back-substitution through
    the relaxations of nodes before ``limit`` (default fn slopes under ``policy``); ``err`` (B, K)
    collects the charges so far (updated in place). ``lam`` holds (B, K, size) arrays; inside, a
    fn node's multipliers are kept in its ``_View`` layout. When every nonlinear node before
    ``limit`` has a view, the charges are composite: bounded once from the starting multipliers
    (``_charges``), not step by step."""
    fg = st.fg
    memo: dict = {}
    views = {k: _view(st, k, None if slopes is None else slopes.get(k), policy, memo)
             for k in range(1, limit) if fg.bg.nodes[k].kind in ("fn", "mul", "max")}
    composite = COMPOSITE and all(v is not None for v in views.values())

    cols = {p: v.order for p, v in views.items() if v is not None}
    done = {} if slopes is not None else st.memo.setdefault(("V", policy, composite), {})

    B = const.shape[0]
    for p, lp in list(lam.items()):  # (2-D: the same rows for every box)
        o = cols.get(p)
        if lp.ndim == 2:
            lp = lp if o is None else lp[:, o]
            if composite and o is not None:
                err += _charges(st, p, views, True, done) @ np.abs(lp).T
            lam[p] = np.broadcast_to(lp, (B, *lp.shape))
            continue
        if o is not None:
            lp = lam[p] = np.take(lp, o, axis=2)
            if composite:
                err += np.einsum("bkj,bj->bk", np.abs(lp), _charges(st, p, views, True, done))
    for k in range(limit - 1, 0, -1):
        node = fg.bg.nodes[k]
        if k not in lam or node.kind == "const":
            continue
        tick()  # (a ResNet's final back-substitution takes seconds: deadlines reach inside it)
        lk = lam.pop(k)
        v = views.get(k)
        m = node.size
        if v is not None:
            if not composite:
                err += np.einsum("bkj,bj->bk", np.abs(lk), _charges(st, k, views, False, done))
            lin = lk if lk.flags.writeable else np.empty(lk.shape)  # (read-only: the starting rows)
            ln = np.minimum(lk[:, :, : v.na], 0.0)
            cs = np.einsum("bkn,bn->bk", ln, v.bU)
            cabs = -cs if v.posU else -np.einsum("bkn,bn->bk", ln, np.abs(v.bU))
            if v.hasL:
                lp = lk[:, :, : v.na] - ln
                cs += np.einsum("bkn,bn->bk", lp, v.bL)
                cabs += np.einsum("bkn,bn->bk", lp, np.abs(v.bL))
            if v.nb > v.na:
                lb = lk[:, :, v.na : v.nb]
                cs += np.einsum("bkn,bn->bk", lb, v.b)
                cabs += np.einsum("bkn,bn->bk", np.abs(lb), np.abs(v.b))
            np.multiply(lk[:, :, : v.na], v.aL, out=lin[:, :, : v.na])
            lin[:, :, : v.na] += np.multiply(ln, v.d, out=ln)
            np.multiply(lk[:, :, v.na : v.nm], v.a, out=lin[:, :, v.na : v.nm])
            if lin is not lk:
                lin[:, :, v.nm :] = lk[:, :, v.nm :]
            pre = cabs + np.abs(const) + np.abs(cs)  # (charged with _through's, at the larger γ)
            const, err = _through(st, lam, lin, const + cs, err, fg.forms[k], v.order, cols, None, pre, m)
            continue
        al, au = st.arg[k]
        pos = lk > 0
        sk = None if slopes is None else slopes.get(k)
        r = _relaxation(st, k, sk, POLICIES[0] if policy == GREEDY else policy)
        if r[0] == "fn":
            lin, cterm = _fn_terms(lk, pos, r)
            if policy == GREEDY and fg.split[k]:  # (per box, row and element: engine._term_min)
                r2 = _relaxation(st, k, sk, POLICIES[1])
                j = np.nonzero(np.any([(x != y).any(0) for x, y in zip(r[1:], r2[1:])], axis=0))[0]
                if j.size:  # (only elements whose lines differ)
                    lk_j, pos_j, al_j, au_j = lk[:, :, j], pos[:, :, j], al[:, j], au[:, j]
                    lin1, c1 = lin[:, :, j], cterm[:, :, j]
                    lin2, c2 = _fn_terms(lk_j, pos_j, (None, *(x[:, j] for x in r2[1:])))
                    use2 = _term_min(lin2, c2, al_j, au_j) > _term_min(lin1, c1, al_j, au_j)
                    lin[:, :, j], cterm[:, :, j] = np.where(use2, lin2, lin1), np.where(use2, c2, c1)
        elif r[0] == "mul":
            _, aL, bL, cL, aU, bU, cU = r
            lin = np.concatenate([lk * np.where(pos, aL[:, None], aU[:, None]),
                                  lk * np.where(pos, bL[:, None], bU[:, None])], axis=2)
            cterm = lk * np.where(pos, cL[:, None], cU[:, None])
        else:
            _, sel, dom, umax = r
            take = pos | dom[:, None]
            lin = np.zeros((*lk.shape[:2], fg.forms[k].R))
            np.put_along_axis(lin, np.broadcast_to(sel[:, None], lk.shape), np.where(take, lk, 0.0), 2)
            cterm = np.where(take, 0.0, lk * umax[:, None])
        if not np.isfinite(cterm).all():  # (0·inf terms are 0; any other non-finite: no bound)
            cterm = np.where(lk == 0, 0.0, cterm)
            cterm = np.where(np.isnan(cterm), -np.inf, cterm)
        cs = cterm.sum(2)
        err += _charge(np.abs(cterm).sum(2) + np.abs(const) + np.abs(cs), m)
        key = ("W", k)
        if key not in st.memo:  # (+ the rounding of the products lk·a, 2u·|lin|·max|z|)
            st.memo[key] = 2 * U * np.maximum(np.abs(al), np.abs(au)) + _weights(st, fg.forms[k], None)
        const, err = _through(st, lam, lin, const + cs, err, fg.forms[k], None, cols, st.memo[key])
    return _concretise(st, lam, const, err)


def _fn_terms(lk: np.ndarray, pos: np.ndarray, r: Any) -> tuple[np.ndarray, np.ndarray]:
    """(B, K, m) coefficients and constants of the lines the multipliers lk take (lower when > 0)."""
    _, aL, bL, aU, bU = r
    return lk * np.where(pos, aL[:, None], aU[:, None]), lk * np.where(pos, bL[:, None], bU[:, None])


def _term_min(lin: np.ndarray, cterm: np.ndarray, al: np.ndarray, au: np.ndarray) -> np.ndarray:
    """min of lin·z + cterm over z in [al, au] (GREEDY's score; a choice, not a bound: any is valid)."""
    return cterm + np.minimum(lin * al[:, None], lin * au[:, None])


def _best_backsub(st: _State, lam: dict[int, np.ndarray], const: np.ndarray, err: np.ndarray,
                  slopes: dict[int, Any] | None = None, limit: int | None = None) -> np.ndarray:
    """The back-substitution (through nodes before ``limit``; all when None) once per policy of
    ``fg.policies`` (supplied ``slopes`` override the defaults in each), the larger lower bound per
    box and row: each is valid, so is the max."""
    n = len(st.fg.bg.nodes) if limit is None else limit
    lows = [_backsub(st, dict(lam), const, err.copy(), n, slopes, p) for p in st.fg.policies]
    low = np.maximum.reduce([np.where(np.isnan(v), -np.inf, v) for v in lows])
    return low


def _through(st: _State, lam, lin: np.ndarray, const, err, F: _Forms, rows: np.ndarray | None = None,
             cols: dict | None = None, W: np.ndarray | None = None, pre: Any = 0.0, m: int = 0):
    """Replace argument rows by their forms: lam[p] += lin @ A_p, const += lin @ c. ``lin`` covers
    the rows ``rows`` of F (all when None); ``cols[p]`` the layout of lam[p] (absent: all
    columns, in order); ``W`` (B, R') the charges per unit |lin| (``_weights``, plus any of the
    caller); ``pre`` (B, K) the caller's sum of |terms| of a sum of m terms, charged here."""
    B, K, R = lin.shape
    n = F.R
    if W is not None:
        err += np.einsum("bkr,br->bk", np.abs(lin), W)
    flat = lin.reshape(B * K, R)
    for p, A, _, _ in F.parents:
        o = None if cols is None else cols.get(p)
        D = _sub(st, A, rows, o)
        if D is not None:
            prod = (flat @ D).reshape(B, K, -1)
        else:
            full = flat
            if rows is not None:
                full = np.zeros((B * K, n))
                full[:, rows] = flat
            prod = A.lmul(full).reshape(B, K, -1)
            prod = prod if o is None else np.take(prod, o, axis=2)
        if p in lam:
            prod = lam[p] + prod
            vm = st.vmax[p] if o is None else st.vmax[p][:, o]
            err += _charge(np.einsum("bkj,bj->bk", np.abs(prod), vm), 2)
        lam[p] = prod
    cs = (flat @ (F.c if rows is None else _sub(st, F, rows, None))).reshape(B, K)
    err += _charge(pre + np.abs(const) + np.abs(cs), max(n, m) + 1) + 4 * TINY
    return const + cs, err


def _concretise(st: _State, lam, const, err) -> np.ndarray:
    n = 1
    mag = np.abs(const)
    for p, lp in lam.items():
        const = const + np.einsum("bkj,bj->bk", np.maximum(lp, 0), st.L[p]) \
            + np.einsum("bkj,bj->bk", np.minimum(lp, 0), st.U[p])
        mag = mag + np.einsum("bkj,bj->bk", np.abs(lp), st.vmax[p])
        n += lp.shape[2]
    low = const - _charge(mag + np.abs(const), n) - 4 * err
    return np.where(np.isfinite(low), low, -np.inf)


def boxes(lo: Any, hi: Any) -> tuple[np.ndarray, np.ndarray]:
    """(B, n) float arrays from exact corners (lists of Fractions, one list per box): outward."""
    los, his = zip(*(outward([Fraction(v) for v in a], [Fraction(v) for v in b]) for a, b in zip(lo, hi)))
    return np.array(los, dtype=float), np.array(his, dtype=float)


def _objective(fg: FastGraph, st: _State, C: Any):
    """Starting multipliers over the output rows: identity or C (K, n_out) floats (taken as exact)."""
    n = fg.bg.n_out
    Cm = np.eye(n) if C is None else np.asarray(C, dtype=float)
    return np.broadcast_to(Cm[None], (st.B, *Cm.shape))


@np.errstate(invalid="ignore", over="ignore")  # non-finite entries are handled (vacuous bounds)
def ibp(bg: BoundGraph | FastGraph, lo: np.ndarray, hi: np.ndarray, C: Any = None):
    """Certified IBP bounds (B, K) of C·y over each box [lo_b, hi_b] ((B, n_in) floats)."""
    fg = compiled(bg)
    st = forward(fg, lo, hi, "ibp")
    return _ibp_out(fg, st, C)


def _ibp_out(fg: FastGraph, st: _State, C: Any):
    yl, yu = fg.out.bounds(st.L, st.U, st.vmax)
    if C is None:
        return yl, yu
    Cm = np.asarray(C, dtype=float)
    Cp, Cn = np.maximum(Cm, 0), np.minimum(Cm, 0)
    lo, hi = yl @ Cp.T + yu @ Cn.T, yu @ Cp.T + yl @ Cn.T
    ch = _charge(np.maximum(np.abs(yl), np.abs(yu)) @ np.abs(Cm).T, Cm.shape[1])
    return _safe(lo - ch, hi + ch)


@np.errstate(invalid="ignore", over="ignore")  # non-finite entries are handled (vacuous bounds)
def crown(bg: BoundGraph | FastGraph, lo: np.ndarray, hi: np.ndarray, C: Any = None,
          slopes: dict[int, Any] | None = None, method: str = "crown"):
    """Certified CROWN bounds (B, K) of C·y over each box, as ``engine.crown`` (slopes per node:
    arrays (B, size), NaN = default; max: member index arrays), the tighter of CROWN and IBP."""
    fg = compiled(bg)
    st = forward(fg, lo, hi, method)
    il, iu = _ibp_out(fg, st, C)
    Cm = _objective(fg, st, C)
    K = Cm.shape[1]
    lin = np.concatenate([Cm, -Cm], axis=1)
    const, err = np.zeros((st.B, 2 * K)), np.zeros((st.B, 2 * K))
    lam: dict[int, np.ndarray] = {}
    const, err = _through(st, lam, lin, const, err, fg.out, W=_weights(st, fg.out, None))
    low = _best_backsub(st, lam, const, err, slopes)
    return np.maximum(il, low[:, :K]), np.minimum(iu, -low[:, K:])


def tight_args(bg: BoundGraph, box: list[tuple[Fraction, Fraction]]) -> dict[int, Any]:
    """{node: (lows, highs)} of every fn/mul/max node's argument rows (mul: the x rows, then the w
    rows; max: the members in order) over one box, as Fractions (a non-finite end: None): this
    engine's CROWN forward pass, each node's rows clipped to the exact engine's IBP bounds
    (rounded outward; they carry layer norm's "ball" fact, which this engine lacks), so its CROWN
    starts from them. For ``engine.forward``'s ``tight`` (the float error column's ranges)."""
    ex = exact.forward(bg, [a for a, _ in box], [b for _, b in box], "ibp")
    big = Fraction(2) ** 1000  # (past float64: no clip)
    clip = {}
    for k, node in enumerate(bg.nodes):
        if node.kind in ("fn", "mul", "max"):
            rows = ex.arg[k] if node.kind == "fn" else \
                [b for ab in ex.arg[k] for b in ab] if node.kind == "max" else \
                [a for a, _ in ex.arg[k]] + [w for _, w in ex.arg[k]]
            far = [abs(a) > big or abs(b) > big for a, b in rows]
            cl, ch = outward([0 * a if f else a for (a, _), f in zip(rows, far)],
                             [0 * b if f else b for (_, b), f in zip(rows, far)])
            clip[k] = (np.where(far, -np.inf, [cl]), np.where(far, np.inf, [ch]))
    st = forward(compiled(bg), *boxes([[a for a, _ in box]], [[b for _, b in box]]), "crown", clip=clip)

    def side(v: np.ndarray) -> list[Fraction | None]:
        return [Fraction(x) if np.isfinite(x) else None for x in v[0].tolist()]

    return {k: (side(a[0]), side(a[1])) for k, a in enumerate(st.arg) if a is not None}


def forms_of(bg: BoundGraph | FastGraph, forms: list[Aff]) -> _Forms:
    """Exact forms over the graph's variables (e.g. a property's objective rows), as floats."""
    fg = compiled(bg)
    return _Forms(forms, fg.starts, fg.sizes)


def bound_forms(st: _State, F: _Forms, slopes: dict[int, Any] | None = None) -> np.ndarray:
    """Certified lower bounds (B, K) of the forms F over each box of the forward state ``st``:
    the best of IBP and the final CROWN back-substitution under each slope policy (``slopes`` as
    in ``crown``)."""
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
    return np.maximum(il, low)
