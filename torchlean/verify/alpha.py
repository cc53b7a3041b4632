"""α-CROWN on the bound table: optimise the free slopes of every function row (not only ReLU) of the
final back-substitution by projected gradient ascent on the bound (untrusted heuristic).

What is sound is not computed here. This module only *chooses* slopes: per objective row r and
per element i of every ``fn`` node, a lower slope aL and an upper slope aU. Any slope gives a valid
line once the table's row supplies its intercept (``row.lower_intercept(l, u, a)``: valid for every
a by the row's contract), so the bound is then recomputed by the checker's own engine
(``engine.crown(bg, lo, hi, C=[row], slopes=...)``, through ``verify.table``) and the better of
that and the default CROWN bound is kept.

To get a gradient, the back-substitution is run here in float64 on dense matrices, with the
intercepts from the table's fast rows (``fast_functions.FAST``) and the argument bounds the
engine's forward pass computed; McCormick products and max nodes take their default lines (their
weights are not optimised yet). The gradient of the bound in the slopes is taken in reverse mode
through that computation (the intercept's derivative in its slope by a central difference of the
fast row). Its numbers are a guide only: an error there costs tightness, never soundness.
"""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import numpy as np

#: dense (relaxed elements x variables) matrices above this many entries are not built (default
#: slopes kept): the float back-substitution here is dense
MAX_DENSE = 6_000_000


def dense_size(bg: Any) -> int:
    """Entries of the matrices ``Backsub`` would build for this graph, the budget ``MAX_DENSE``
    gates: fn nodes' argument forms are kept sparse where under ``fast_forms.SPARSE_BELOW`` full
    (``_sparse``: a few arrays of its nonzeros, ``SPARSE_COST`` entries each), else dense; mul and
    max nodes' are dense."""
    from ..certificates.fast_forms import SPARSE_BELOW

    per = sum(n.size * (2 if n.kind == "mul" else 1) for n in bg.nodes if n.kind in ("mul", "max"))
    fn = 0
    for n in bg.nodes:
        if n.kind == "fn":
            nnz = sum(len(f.t) for f in n.args)
            fn += SPARSE_COST * nnz if nnz < SPARSE_BELOW * n.size * bg.n_vars else n.size * bg.n_vars
    return (per + len(bg.outputs)) * bg.n_vars + fn


#: entries a sparse nonzero counts in ``dense_size`` (its row, column, value and ``lmul``'s order;
#: it was 100, which kept every conv net, oval21's included, from α and β: bench/README.md)
SPARSE_COST = 4


def _dense(forms: list[Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    A = np.zeros((len(forms), n))
    c = np.zeros(len(forms))
    for i, f in enumerate(forms):
        for v, q in f.t.items():
            A[i, v] = float(q)
        c[i] = float(f.c)
    return A, c


def _sparse(forms: list[Any], n: int) -> tuple[Any, np.ndarray]:
    """The forms as a ``fast_forms._Mat`` (sparse when under ``SPARSE_BELOW`` full; ``lmul``:
    Y @ A, ``rmul``: X @ A.T) and their constants (floats: a guide, the engine recomputes every bound)."""
    from ..certificates.fast_forms import _Mat

    rows = np.array([i for i, f in enumerate(forms) for _ in f.t], dtype=np.int64)
    cols = np.array([v for f in forms for v in f.t], dtype=np.int64)
    vals = np.array([float(q) for f in forms for q in f.t.values()])
    order = np.lexsort((cols, rows))
    m = _Mat(len(forms), n, rows[order], cols[order], vals[order])
    return (m if m.sparse else _Band(m.D)), np.array([float(f.c) for f in forms])


class _Band:
    """A dense (R, n) matrix stored as its nonzero columns' span only: a layer's forms read the
    previous layer's variables, a few hundred of the graph's n (an MLP of six 256-wide layers: 256
    of 2,320), and the dense products of every α/β step then cost that span, not n (``_Mat``'s
    ``lmul``/``rmul``/``take`` interface)."""

    def __init__(self, D: np.ndarray):
        nz = np.nonzero(np.abs(D).sum(0))[0]
        a, b = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
        self.shape, self.cols, self.D = D.shape, slice(a, b), np.ascontiguousarray(D[:, a:b])

    def lmul(self, Y: np.ndarray) -> np.ndarray:
        out = np.zeros((Y.shape[0], self.shape[1]))
        out[:, self.cols] = Y @ self.D
        return out

    def rmul(self, X: np.ndarray) -> np.ndarray:
        return X[:, self.cols] @ self.D.T

    def take(self, rows: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros((self.shape[0] if rows is None else len(rows), self.shape[1]))
        out[:, self.cols] = self.D if rows is None else self.D[rows]
        return out


#: per bound graph (kept alive with its entry, as ``fast_engine.compiled``): node k's argument
#: matrices, converted from exact forms once; a search builds a ``Backsub`` every batch, and the
#: conversion of a 784x256 layer's Fractions cost 0.1-0.2 s each time (mnistfc)
_NODE_CACHE: dict[int, tuple[Any, dict[Any, Any]]] = {}
NODE_CACHE_SIZE = 16  # graphs kept (a loop of ``tl.verify`` calls over many models keeps no more)


def _node_mats(bg: Any, k: int, what: str) -> Any:
    """Node k's argument forms as float matrices (``what``: "fn" sparse, "mul" the x and w
    forms dense, "max" every member dense), cached per graph object; read-only."""
    if id(bg) not in _NODE_CACHE or _NODE_CACHE[id(bg)][0] is not bg:
        while len(_NODE_CACHE) >= NODE_CACHE_SIZE:  # (the oldest graph goes first)
            del _NODE_CACHE[next(iter(_NODE_CACHE))]
        _NODE_CACHE[id(bg)] = (bg, {})
    memo = _NODE_CACHE[id(bg)][1]
    if (k, what) not in memo:
        node = bg.nodes[k]
        if what == "fn":
            memo[k, what] = _sparse(node.args, bg.n_vars)
        elif what == "mul":
            memo[k, what] = (_dense([x for x, _ in node.args], bg.n_vars),
                             _dense([w for _, w in node.args], bg.n_vars))
        else:
            memo[k, what] = _dense([f for g in node.args for f in g], bg.n_vars)
    return memo[k, what]


def _lmul(A: Any, Y: np.ndarray) -> np.ndarray:
    """Y (..., R) @ A (R, n) -> (..., n)."""
    return A.lmul(Y.reshape(-1, Y.shape[-1])).reshape(*Y.shape[:-1], A.shape[1])


def _rmul(A: Any, X: np.ndarray) -> np.ndarray:
    """X (..., n) @ A.T -> (..., R)."""
    return A.rmul(X.reshape(-1, X.shape[-1])).reshape(*X.shape[:-1], A.shape[0])


#: ``Backsub`` op fields indexed by box first (``take`` slices them)
_PER_BOX = frozenset(("l", "u", "dl", "du", "lx", "ux", "lw", "uw", "Alo", "clo", "Aup", "cup"))


class Backsub:
    """The float back-substitution of a bound graph over B boxes at fixed argument bounds.

    ``L``, ``U``: (B, n_vars) variable bounds; ``args[k]``: (lower, upper) arrays (B, R_k) of node
    k's argument rows (fn: one per element; mul: the x rows then the w rows; max: every member, in
    the order of ``groups[k]``, an index array (size, G) padded with -1). Build it with
    ``from_exact`` or ``from_fast``. Multipliers are (B, R, n_vars) for R objective rows."""

    def __init__(self, bg: Any, L: np.ndarray, U: np.ndarray, args: dict[int, Any],
                 groups: dict[int, np.ndarray], fast_rows: dict[str, Any]):
        from ..certificates.slopes import POLICIES  # (the rows' default policy: POLICIES[0])

        self.bg, self.n = bg, bg.n_vars
        self.B = L.shape[0]
        self.L, self.U = L[:, None, :], U[:, None, :]
        self.terminal = np.zeros(self.n, bool)
        self.ops: list[dict[str, Any]] = []  # in back-substitution order (latest node first)
        for k in range(len(bg.nodes) - 1, -1, -1):
            node = bg.nodes[k]
            blk = slice(node.offset, node.offset + node.size)
            if node.kind in ("input", "const"):
                self.terminal[blk] = True
                continue
            op: dict[str, Any] = {"k": k, "kind": node.kind, "blk": blk}
            al, au = (np.asarray(v, float)[:, None, :] for v in args[k])  # (B, 1, R_k)
            if node.kind == "fn":
                op["A"], op["c"] = _node_mats(bg, k, "fn")
                op["l"], op["u"] = al, au
                op["row"], op["attrs"] = fast_rows[node.fn], dict(node.attrs)
                dl, du = op["row"].policy_slopes(POLICIES[0], al, au, **op["attrs"])
                op["dl"], op["du"] = (np.broadcast_to(np.asarray(v, float), al.shape) for v in (dl, du))
            elif node.kind == "mul":
                m = node.size
                (op["Ax"], op["cx"]), (op["Aw"], op["cw"]) = _node_mats(bg, k, "mul")
                op["lx"], op["ux"], op["lw"], op["uw"] = al[..., :m], au[..., :m], al[..., m:], au[..., m:]
            else:  # max: lower = the member with the largest lower bound; upper = the constant max
                idx = groups[k]  # (size, G)
                Am, cm = _node_mats(bg, k, "max")
                ml = np.where(idx >= 0, al[:, 0][:, idx], -np.inf)  # (B, size, G)
                mu = np.where(idx >= 0, au[:, 0][:, idx], -np.inf)
                j = ml.argmax(2)
                sel = np.take_along_axis(np.broadcast_to(idx, ml.shape), j[..., None], 2)[..., 0]
                best = np.take_along_axis(ml, j[..., None], 2)[..., 0]
                others = np.where(np.arange(idx.shape[1]) == j[..., None], -np.inf, mu).max(2)
                dom = best >= others  # (B, size)
                op["Alo"], op["clo"] = Am[sel], cm[sel]  # (B, size, n), (B, size)
                op["Aup"] = np.where(dom[..., None], Am[sel], 0.0)
                op["cup"] = np.where(dom, cm[sel], mu.max(2))
            self.ops.append(op)

    @classmethod
    def from_exact(cls, bg: Any, st: Any, fast_rows: dict[str, Any]) -> Backsub:
        """From the exact engine's forward state of one box (``engine.forward``)."""
        L = np.array([[float(v) for v in st.L]])
        U = np.array([[float(v) for v in st.U]])
        args, groups = {}, {}
        for k, node in enumerate(bg.nodes):
            if node.kind == "fn":
                pairs = st.arg[k]
            elif node.kind == "mul":
                pairs = [bx for bx, _ in st.arg[k]] + [bw for _, bw in st.arg[k]]
            elif node.kind == "max":
                pairs = [b for bs in st.arg[k] for b in bs]
                G = max(len(bs) for bs in st.arg[k])
                idx = np.full((node.size, G), -1)
                pos = 0
                for i, bs in enumerate(st.arg[k]):
                    idx[i, :len(bs)] = np.arange(pos, pos + len(bs))
                    pos += len(bs)
                groups[k] = idx
            else:
                continue
            args[k] = (np.array([[float(a) for a, _ in pairs]]), np.array([[float(b) for _, b in pairs]]))
        return cls(bg, L, U, args, groups, fast_rows)

    @classmethod
    def from_fast(cls, bg: Any, fg: Any, st: Any, fast_rows: dict[str, Any]) -> Backsub:
        """From the fast engine's forward state over B boxes (``fast_engine.forward``)."""
        L = np.concatenate([np.asarray(v, float) for v in st.L], 1)
        U = np.concatenate([np.asarray(v, float) for v in st.U], 1)
        args = {k: st.arg[k] for k, n in enumerate(bg.nodes) if n.kind in ("fn", "mul", "max")}
        groups = {k: fg.groups[k] for k, n in enumerate(bg.nodes) if n.kind == "max"}
        return cls(bg, L, U, args, groups, fast_rows)

    def take(self, idx: np.ndarray) -> Backsub:
        """The same back-substitution over the boxes ``idx`` only (a shallow copy: the arrays of
        every box-indexed field sliced, the matrices shared)."""
        out = copy.copy(self)
        out.B, out.L, out.U = len(idx), self.L[idx], self.U[idx]
        out.ops = [{key: v[idx] if key in _PER_BOX else v for key, v in op.items()} for op in self.ops]
        return out

    def default_slopes(self, R: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The rows' defaults, (B, R, size) each."""
        return {op["k"]: tuple(np.broadcast_to(v, (self.B, R, v.shape[-1])).copy()
                               for v in (op["dl"], op["du"]))
                for op in self.ops if op["kind"] == "fn"}

    def bound(self, lam0: np.ndarray, c0: np.ndarray, slopes: dict[int, tuple[np.ndarray, np.ndarray]],
              want_grad: bool = False, mult: dict[int, np.ndarray] | None = None
              ) -> tuple[np.ndarray, dict[Any, Any]]:
        """Lower bounds (B, R) of the rows lam0·v + c0 (lam0 (R, n) or (B, R, n), c0 (R,) or
        (B, R)) minus Σ_k mult[k]·z_k (z_k: fn node k's argument forms, mult[k] (B, R, size_k):
        signed split multipliers q·sgn, ``engine.mult_form``) in every box and, if asked, their
        gradients in the slopes (by node) and in the multipliers (key ("mult", k)); ``self.lk``
        then (with or without gradients) holds each fn node's multipliers (B, R, size) met in the
        back-substitution."""
        R = lam0.shape[-2]
        lam = np.broadcast_to(lam0, (self.B, R, self.n)).copy()
        const = np.broadcast_to(np.asarray(c0, float), (self.B, R)).copy()
        ops = {op["k"]: op for op in self.ops}
        for k, s in (mult or {}).items():
            lam -= _lmul(ops[k]["A"], s)
            const -= s @ ops[k]["c"]
        tape = []
        for op in self.ops:
            blk = op["blk"]
            lk = lam[..., blk].copy()
            lam[..., blk] = 0.0
            pos = lk > 0
            if op["kind"] == "fn":
                aL, aU = slopes[op["k"]]
                row, at = op["row"], op["attrs"]
                if row.name == "relu":  # (closed form: the generic rows' piecewise search was a
                    cols = _live(op["l"], op["u"], aL, aU)  # third of a ReLU net's α/β time)
                    bL, bU = _relu_intercepts(op["l"], op["u"], aL, aU, cols)
                else:
                    cols = None
                    bL = row.lower_intercept(op["l"], op["u"], aL, **at)
                    bU = row.upper_intercept(op["l"], op["u"], aU, **at)
                coef = np.where(pos, aL, aU)
                m = lk * coef
                const += (lk * np.where(pos, bL, bU)).sum(-1) + m @ op["c"]
                lam += _lmul(op["A"], m)
                tape.append((op, lk, pos, coef, (bL, bU, cols)))
            elif op["kind"] == "mul":  # default McCormick planes (t = 0)
                cx = np.where(pos, op["lw"], op["uw"])
                cw = np.broadcast_to(op["lx"], lk.shape)
                cc = np.where(pos, -op["lx"] * op["lw"], -op["lx"] * op["uw"])
                mx, mw = lk * cx, lk * cw
                lam += mx @ op["Ax"] + mw @ op["Aw"]
                const += mx @ op["cx"] + mw @ op["cw"] + (lk * cc).sum(-1)
                tape.append((op, lk, pos, (cx, cw), cc))
            else:
                mlo, mup = np.where(pos, lk, 0.0), np.where(pos, 0.0, lk)
                lam += np.einsum("brs,bsn->brn", mlo, op["Alo"]) + np.einsum("brs,bsn->brn", mup, op["Aup"])
                const += (mlo * op["clo"][:, None]).sum(-1) + (mup * op["cup"][:, None]).sum(-1)
                tape.append((op, lk, pos, None, None))
        t = self.terminal
        self.coef = lam[..., t]  # (B, R, terminals): the bound's coefficients on inputs and consts
        corner = np.where(lam[..., t] > 0, self.L[..., t], self.U[..., t])
        out = const + (lam[..., t] * corner).sum(-1)
        self.lk = {op["k"]: lk for op, lk, *_ in tape if op["kind"] == "fn"}
        if not want_grad:
            return out, {}
        g_lam = np.zeros_like(lam)
        g_lam[..., t] = corner
        grads: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for op, lk, pos, coef, bsel in reversed(tape):
            if op["kind"] == "fn":
                g_m = _rmul(op["A"], g_lam) + op["c"]
                bL, bU, cols = bsel
                g_lk = g_m * coef + np.where(pos, bL, bU)
                g_coef = g_m * lk
                aL, aU = slopes[op["k"]]
                if op["row"].name == "relu":
                    dbL, dbU = _relu_intercept_grads(op["l"], op["u"], aL, aU, cols)
                else:
                    dbL = _slope_diff(op, "lower_intercept", aL, bL)
                    dbU = _slope_diff(op, "upper_intercept", aU, bU)
                grads[op["k"]] = (np.where(pos, g_coef + lk * dbL, 0.0),
                                  np.where(pos, 0.0, g_coef + lk * dbU))
            elif op["kind"] == "mul":
                cx, cw = coef
                g_lk = (g_lam @ op["Ax"].T + op["cx"]) * cx + (g_lam @ op["Aw"].T + op["cw"]) * cw + bsel
            else:
                g_lo = np.einsum("brn,bsn->brs", g_lam, op["Alo"]) + op["clo"][:, None]
                g_up = np.einsum("brn,bsn->brs", g_lam, op["Aup"]) + op["cup"][:, None]
                g_lk = np.where(pos, g_lo, g_up)
            g_lam[..., op["blk"]] = g_lk
        for k in mult or {}:  # (g_lam now holds d out / d lam at the start, every variable)
            grads["mult", k] = -(_rmul(ops[k]["A"], g_lam) + ops[k]["c"])
        return out, grads


def _live(l: np.ndarray, u: np.ndarray, aL: np.ndarray, aU: np.ndarray) -> np.ndarray | None:
    """The columns (last axis) where relu's intercepts need the general formula: some box has
    the element unstable, or a slope other than its side's own (1 where l >= 0, else 0), with
    which both intercepts are 0 and their derivatives -u (lower) and -l (upper). None: all
    columns (no saving worth the gathers). A one-layer conv net (verivital's avgpool, 23,328
    relu elements, 4,489 unstable at the root) spent 15 of its 27 s of α/β passes on the
    intercepts, mostly the stable columns' (bench/README.md, "eran30")."""
    if aL.ndim < 3 or aL.shape[-1] < 64:
        return None
    side = np.where(l >= 0, 1.0, 0.0)
    hot = ((l < 0) & (u > 0)).any(tuple(range(l.ndim - 1)))
    hot |= ((aL != side) | (aU != side)).any(tuple(range(aL.ndim - 1)))
    cols = np.nonzero(hot)[0]
    return cols if cols.size * 2 < hot.size else None


def _relu_intercepts(l: np.ndarray, u: np.ndarray, aL: np.ndarray, aU: np.ndarray, cols: Any = False
                     ) -> tuple[np.ndarray, np.ndarray]:
    """relu's intercepts in floats (a guide: the engine recomputes every bound with its own row):
    min (lower line) and max (upper line) over [l, u] of relu(x) - a·x, piecewise linear, so
    reached at l, u or the kink 0 (the max, of a convex function, at l or u); computed on the
    ``_live`` columns only (0 elsewhere; ``cols``: ``_live``'s answer, if known)."""
    cols = _live(l, u, aL, aU) if cols is False else cols
    if cols is None:
        return _intercepts(l, u, aL, aU)
    shape = np.broadcast_shapes(l.shape, aL.shape)
    bL, bU = np.zeros(shape), np.zeros(shape)
    bL[..., cols], bU[..., cols] = _intercepts(l[..., cols], u[..., cols], aL[..., cols], aU[..., cols])
    return bL, bU


def _intercepts(l: np.ndarray, u: np.ndarray, aL: np.ndarray, aU: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    gl, gu = np.maximum(l, 0.0), np.maximum(u, 0.0)
    kink = np.where((l < 0) & (u > 0), 0.0, np.inf)
    return (np.minimum(np.minimum(gl - aL * l, gu - aL * u), kink),
            np.maximum(gl - aU * l, gu - aU * u))


def _relu_intercept_grads(l: np.ndarray, u: np.ndarray, aL: np.ndarray, aU: np.ndarray, cols: Any = False
                          ) -> tuple[np.ndarray, np.ndarray]:
    """d intercept / d slope of ``_relu_intercepts`` from the right (as the generic rows' forward
    difference): the smallest (lower line's min) or largest (upper line's max) derivative, -x, of
    the pieces x in {l, u, kink 0} reaching the extremum; inside [0, 1] an unstable element's lower
    intercept is the kink's 0, flat. Off the ``_live`` columns -u and -l (``cols`` as there)."""
    cols = _live(l, u, aL, aU) if cols is False else cols
    if cols is None:
        dL, dU = _intercept_grads(l, u, aL, aU)
        return np.broadcast_to(dL, aL.shape), np.broadcast_to(dU, aU.shape)
    shape = np.broadcast_shapes(l.shape, aL.shape)
    dL, dU = np.broadcast_to(-u, shape).copy(), np.broadcast_to(-l, shape).copy()
    dL[..., cols], dU[..., cols] = _intercept_grads(l[..., cols], u[..., cols], aL[..., cols], aU[..., cols])
    return dL, dU


def _intercept_grads(l: np.ndarray, u: np.ndarray, aL: np.ndarray, aU: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    gl, gu = np.maximum(l, 0.0), np.maximum(u, 0.0)
    vl, vu = gl - aL * l, gu - aL * u
    kink = (l < 0) & (u > 0)
    m = np.minimum(np.minimum(vl, vu), np.where(kink, 0.0, np.inf))
    dL = np.minimum(np.minimum(np.where(vl == m, -l, np.inf), np.where(vu == m, -u, np.inf)),
                    np.where(kink & (m == 0), 0.0, np.inf))
    wl, wu = gl - aU * l, gu - aU * u
    M = np.maximum(wl, wu)
    dU = np.maximum(np.where(wl == M, -l, -np.inf), np.where(wu == M, -u, -np.inf))
    return dL, dU


def _slope_diff(op: dict[str, Any], which: str, a: np.ndarray, b0: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d intercept / d slope (minus the touching point) by a forward difference of the fast row,
    ``b0`` being the intercept at a."""
    fn = getattr(op["row"], which)
    return (fn(op["l"], op["u"], a + h, **op["attrs"]) - b0) / h


def optimise(bs: Backsub, lam0: np.ndarray, c0: np.ndarray, steps: int = 30, lr: float = 0.5
             ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per-row slopes that (heuristically) maximise the float bound: projected sign-gradient ascent
    from the defaults, the step relative to each slope's natural range |f'| over [l, u]."""
    R = lam0.shape[0]
    slopes = bs.default_slopes(R)  # (B, R, size) per fn node
    best_v, _ = bs.bound(lam0, c0, slopes)
    best = {k: (a.copy(), b.copy()) for k, (a, b) in slopes.items()}
    scale = {op["k"]: np.maximum(np.abs(op["dl"]), np.abs(op["du"])) + 1e-3
             for op in bs.ops if op["kind"] == "fn"}
    for it in range(steps):
        v, g = bs.bound(lam0, c0, slopes, want_grad=True)
        better = v > best_v
        for k in slopes:
            best[k][0][better], best[k][1][better] = slopes[k][0][better], slopes[k][1][better]
        best_v = np.maximum(best_v, v)
        step = lr * (0.9 ** it)
        for k, (gl, gu) in g.items():
            aL, aU = slopes[k]
            s = scale[k] * step
            slopes[k] = (np.clip(aL + s * np.sign(gl), -4 * scale[k], 4 * scale[k]),
                         np.clip(aU + s * np.sign(gu), -4 * scale[k], 4 * scale[k]))
    v, _ = bs.bound(lam0, c0, slopes)
    better = v > best_v
    for k in slopes:
        best[k][0][better], best[k][1][better] = slopes[k][0][better], slopes[k][1][better]
    return best


def objective_rows(bg: Any, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense rows over the graph's variables of C·y (y = the graph's output forms)."""
    A, c = _dense(bg.outputs, bg.n_vars)
    return C @ A, C @ c


def slope_entries(bs: Backsub, best: dict[int, tuple[np.ndarray, np.ndarray]], r: int, b: int = 0
                  ) -> list[list[Any]]:
    """Row r's slopes as a leaf proof's ``{"slopes": [[node, i, lower, upper], ...]}`` entries
    (rationals as "p/q" strings of float32 values; an element whose slope is the default is left
    out, so the checker uses its own default there)."""
    out = []
    for op in bs.ops:
        if op["kind"] != "fn":
            continue
        k = op["k"]
        aL, aU = best[k][0][b, r], best[k][1][b, r]
        dl, du = op["dl"][b, 0], op["du"][b, 0]
        for i in range(aL.size):
            lo = None if aL[i] == dl[i] else str(Fraction(float(np.float32(aL[i]))))
            up = None if aU[i] == du[i] else str(Fraction(float(np.float32(aU[i]))))
            if lo is not None or up is not None:
                out.append([k, i, lo, up])
    return out


def slopes_for_row(best: dict[int, tuple[np.ndarray, np.ndarray]], r: int) -> dict[int, list[Any]]:
    """The engine's ``slopes`` argument for row r: exact short rationals (any value is valid)."""
    def q(v: float) -> Fraction:
        return Fraction(float(np.float32(v)))  # 24-bit slopes keep the exact engine's numbers short

    return {k: [(q(a), q(b)) for a, b in zip(aL[0, r], aU[0, r])] for k, (aL, aU) in best.items()}


def shared_slopes(bg: Any, fg: Any, box: Any, st: Any, djs: list[Any], alls: list[Any], until: Any, stop: Any,
                  rounds: int = 8, lr: float = 0.2, max_rows: int = 256, hopeless_after: int = 2
                  ) -> tuple[dict[int, Any], Any]:
    """Shared relu lower slopes (one per unstable element, in [0, 1]) for every back-substitution
    of a region (a certificate's ``arg_slopes``; ``fast_engine.forward(slopes=)``), chosen to raise
    the worst of the disjuncts ``djs``' root bounds: projected sign-gradient steps, each from one
    forward pass (``until``: ``graph_relu._until``-style runner, None past the deadline) and one
    float back-substitution (``Backsub``) of the ``max_rows`` unstable argument rows of most weight
    at those bounds (``stop()``: whether to stop before the next round). The
    objective's gradient is first order: the final rows' own gradient in the slopes plus each
    unstable element's bounds' gradients weighted by what the final rows pay for its upper line
    (|λ⁻|·u²/(u - l)² for its lower bound, |λ⁻|·l²/(u - l)² for its upper one, the derivatives of
    the triangle's intercept -l·u/(u - l)). Untrusted: the engine recomputes every bound with the
    slopes chosen, which are kept only when the worst root bound improved. Returns ({} and ``st``
    when nothing improved) the slopes as ``forward``'s arrays (float32 values) and their state.

    The caller keeps them only where they close one of ``djs`` at the root, so from round
    ``hopeless_after`` on the rounds stop once none of them can close at its pace so far: each
    disjunct's best gain per round, carried on over the rounds left (an overestimate, the steps
    shrink by 0.8 a round), stays short of its bound's distance below 0 (oval21: 2-8 s a round
    for a tenth of the shortfall in 8 rounds, h-conv; the ResNet's idx 3803 gained nothing in
    its first round and closed in its third, so never after the first)."""
    from ..certificates import fast_engine as fe
    from ..certificates.fast_functions import FAST

    relus = [k for k, n in enumerate(bg.nodes) if n.kind == "fn" and n.fn == "relu"]
    lam0 = np.concatenate([d.lam0 for d in djs])
    c0 = np.concatenate([d.c0 for d in djs])

    def worst(s: Any) -> float:  # (the disjuncts' total shortfall below 0: closed ones must stay closed)
        return sum(min(float(fe.bound_forms(s, d.F)[0].max()), 0.0) for d in alls)

    best_v, best, best_st = worst(st), {}, st
    first = [float(fe.bound_forms(st, d.F)[0].max()) for d in djs]  # (the open ones' root bounds)
    top = list(first)
    cur: dict[int, np.ndarray] = {}  # the slopes so far (nan: the element's default)

    def slopes(bs: Any, n: int) -> Any:  # ``n`` rows' default slopes, the current ones written in
        sl = bs.default_slopes(n)
        for k, s in cur.items():
            sl[k][0][:] = np.where(np.isnan(s), sl[k][0], s)
        return sl

    for t in range(rounds):
        if stop():
            break
        bs = Backsub.from_fast(bg, fg, st, FAST)
        _, g = bs.bound(lam0, c0, slopes(bs, lam0.shape[0]), want_grad=True)
        grad = {k: g[k][0].sum((0, 1)) for k in relus}
        lam = {k: np.minimum(bs.lk[k], 0).sum((0, 1)) for k in relus}  # (what the rows pay)
        rows, wts = [], []
        for k in relus[1:]:  # (the first relu node's bounds do not depend on any slope)
            l, u = st.arg[k][0][0], st.arg[k][1][0]
            un = np.nonzero((l < 0) & (u > 0))[0]
            if not un.size:
                continue
            A = _node_mats(bg, k, "fn")[0].take(un)  # (dense rows)
            d2 = (u[un] - l[un]) ** 2
            rows += [A, -A]
            wts += [-lam[k][un] * u[un] ** 2 / d2, -lam[k][un] * l[un] ** 2 / d2]
        if rows and max_rows:
            Ar, w = np.concatenate(rows), np.concatenate(wts)
            keep = w >= max(np.sort(w)[-max_rows:][0], 1e-300)  # (the rows that weigh most)
            if keep.any():
                Ar, w = Ar[keep], w[keep]
                _, g2 = bs.bound(Ar, np.zeros(Ar.shape[0]), slopes(bs, Ar.shape[0]), want_grad=True)
                for k in relus:
                    grad[k] = grad[k] + (g2[k][0][0] * w[:, None]).sum(0)
        step = lr * 0.8 ** t
        nxt = {}
        for k in relus:
            l, u = st.arg[k][0][0], st.arg[k][1][0]
            un = (l < 0) & (u > 0)
            default = np.where(u > -l, 1.0, 0.0)  # (CROWN's adaptive lower slope)
            base = np.where(np.isnan(cur[k]), default, cur[k]) if k in cur else default
            s = np.clip(base + step * np.sign(grad[k]), 0.0, 1.0).astype(np.float32).astype(float)
            nxt[k] = np.where(un, s, np.nan)
        cur = nxt
        arrays = {k: (s[None], np.full((1, s.size), np.nan)) for k, s in cur.items()}
        got = until(lambda arrays=arrays: fe.forward(fg, *box, "crown", slopes=arrays))
        if got is None:
            break
        st = got
        v = worst(st)
        if v > best_v:
            best_v, best, best_st = v, arrays, st
        top = [max(a, float(fe.bound_forms(st, d.F)[0].max())) for a, d in zip(top, djs)]
        if t + 1 >= hopeless_after and all(b + (b - b0) / (t + 1) * (rounds - t - 1) <= 0
                                           for b, b0 in zip(top, first)):
            break
    return best, best_st


def shared_entries(shared: dict[int, Any]) -> list[list[Any]]:
    """``shared_slopes``'s (and ``target_slopes``') arrays as a region's ``"arg_slopes"`` entries
    (exact float32 values; a (target, node) key's with the target as a fifth element)."""
    def order(e: Any) -> tuple[int, ...]:  # (shared ones first, then by target and node)
        return (0, e[0], 0) if type(e[0]) is int else (1, *e[0])

    return [[k, int(i), str(Fraction(float(a[0, i]))), None] if type(k) is int else
            [k[1], int(i), str(Fraction(float(a[0, i]))), None, k[0]]
            for k, (a, _) in sorted(shared.items(), key=order)
            for i in np.nonzero(~np.isnan(a[0]))[0]]


def adam_step(moments: dict[Any, list[Any]], key: Any, x: np.ndarray, g: np.ndarray, lr: float,
              it: int) -> np.ndarray:
    """One Adam ascent step of ``x`` along the gradient ``g`` (betas 0.9 / 0.999, bias-corrected;
    ``it`` counts from 1); ``moments`` keeps each ``key``'s running moments between steps."""
    m, v = moments.setdefault(key, [0.0, 0.0])
    m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
    moments[key] = [m, v]
    return x + lr * (m / (1 - 0.9 ** it)) / (np.sqrt(v / (1 - 0.999 ** it)) + 1e-12)


def split_signs(paths: list[dict[tuple[int, int], Any]], sizes: dict[int, int]) -> dict[int, np.ndarray]:
    """Per node of ``sizes`` (node -> element count), each box's split signs (B, 1, size): +1 where
    ``paths[b]`` fixes the element active, -1 inactive, 0 unsplit (β's sign in the multipliers)."""
    sgn = {k: np.zeros((len(paths), 1, n)) for k, n in sizes.items()}
    for b, path in enumerate(paths):
        for (k, i), v in path.items():
            if k in sgn:
                sgn[k][b, 0, i] = 1.0 if v else -1.0
    return sgn
