"""The fast engine's relaxation lines per node kind and its back-substitution with outward error
charges (``fast_engine.py``'s docstring states the algorithm and the float assumption): a lower
bound of a batch of forms, walked back through the graph from a forward state's bounds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .core import tick
from .engine import EXACT_AT_STABLE
from .fast_forms import TINY, U, _charge, _Forms, _View, gamma
from .fast_functions import FAST, relu_lines
from .slopes import GREEDY, POLICIES

if TYPE_CHECKING:  # (annotations only: fast_engine imports this module)
    from .fast_engine import _State


def _max_sel(idx, al, au):
    """Per box and element: the member row with the largest midpoint, and whether it dominates."""
    ml = np.where(idx >= 0, al[:, idx], -np.inf)  # (B, m, G)
    mu = np.where(idx >= 0, au[:, idx], -np.inf)
    j = np.where(idx >= 0, al[:, idx] + au[:, idx], -np.inf).argmax(2)  # largest midpoint, as engine.py
    best = np.take_along_axis(ml, j[..., None], 2)[..., 0]
    others = np.where(np.arange(idx.shape[1]) == j[..., None], -np.inf, mu).max(2)
    sel = np.take_along_axis(np.broadcast_to(idx, ml.shape), j[..., None], 2)[..., 0]
    return sel, best >= others, mu.max(2)



def _relaxation(st: _State, k: int, slopes: Any = None, policy: str = POLICIES[0]):
    """Node k's lines per box: ('fn', aL, bL, aU, bU) (B, m); ('mul', αL, βL, γL, αU, βU, γU);
    ('max', row, dominated, umax); default fn slopes under ``policy``. Cached when no slopes are
    supplied."""
    policy = policy if st.fg.split[k] else POLICIES[0]  # (other nodes: the same lines)
    if slopes is None and policy in st.relax[k]:
        return st.relax[k][policy]
    node, (al, au) = st.fg.bg.nodes[k], st.arg[k]
    m = node.size
    sh = st.shared.get(k)
    if node.kind == "fn" and node.fn == "relu" and slopes is None and np.isfinite(al).all() \
            and np.isfinite(au).all() and (al <= au).all():
        out = ("fn", *relu_lines(al, au))
        if sh is not None:  # (shared lower slope s in [0, 1] where l < 0 < u: relu(z) >= s·z + 0, the
            use = (al < 0) & (au > 0) & ~np.isnan(sh[0])  # intercept relu_lines gives there)
            out = ("fn", np.where(use, np.clip(sh[0], 0.0, 1.0), out[1]), *out[2:])
    elif node.kind == "fn":
        row = FAST[node.fn]
        ok, fl, fu = _usable(row, al, au, node.attrs)
        sl, su = row.policy_slopes(policy, fl, fu, **node.attrs)  # (finite, (B, m))
        if sh is not None:  # (shared slopes, as engine._lines: a kinked row's only where unstable)
            use = (al < 0) & (au > 0) if node.fn in EXACT_AT_STABLE else True
            sl, su = (np.where(use & ~np.isnan(t), t, s) for s, t in ((sl, sh[0]), (su, sh[1])))
        if slopes is not None:
            sl = sl if slopes[0] is None else np.where(np.isnan(slopes[0]), sl, slopes[0])
            su = su if slopes[1] is None else np.where(np.isnan(slopes[1]), su, slopes[1])
        sl, su = (np.where(np.isfinite(s), s, 0.0) for s in (sl, su))  # (the line used is the one stated)
        out = ("fn", sl, np.where(ok, row.lower_intercept(fl, fu, sl, **node.attrs), -np.inf), su,
               np.where(ok, row.upper_intercept(fl, fu, su, **node.attrs), np.inf))
    elif node.kind == "mul":
        lx, ux, lw, uw = al[:, :m], au[:, :m], al[:, m:], au[:, m:]
        tl, tu = (np.zeros_like(lx) if t is None else np.nan_to_num(np.clip(t, 0, 1))
                  for t in (slopes or (None, None)))  # (McCormick weights; NaN: the default 0)
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


def _usable(row, al, au, attrs, ends: bool = False):
    """The rows raise on any unbounded or out-of-domain element: those get the stand-in [1, 1]
    and, by the caller, vacuous results (ok False). ``ends``: for ``interval``, which takes an
    infinite end on a monotone row (``FastRow.usable_interval``); the lines never do (their
    intercepts and charges multiply the argument's ends and max|z|: inf there, no bound)."""
    ok = (row.usable_interval if ends else row.usable)(al, au, **attrs)
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
        # (B, R) even for forms with no parents (an output that does not depend on the input)
        w = np.broadcast_to(g * np.abs(F.c) + 4 * F.Ec, (st.B, F.c.shape[-1]))
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
    # (a lin node has no view: composite charges follow view-to-view paths only, so it turns them off)
    views = {k: _view(st, k, None if slopes is None else slopes.get(k), policy, memo)
             for k in range(1, limit) if fg.bg.nodes[k].kind in ("fn", "mul", "max", "lin")}
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
        if node.kind == "lin":  # y = f exactly (``lower(wide=True)``): the multipliers pass to f's rows
            W = _weights(st, fg.forms[k], None)
            const, err = _through(st, lam, lk, const, err, fg.forms[k], None, cols, W)
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
