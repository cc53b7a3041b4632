"""The fast sibling of the rounding-error column (``errorbound.COLUMN``, read it first): the same
claim, the same rules or coarser ones, in float64 with outward rounding (numpy), for graphs whose
IR nodes all have a row in ``ROWS``. A statement asks for it with "column": "fast" (and "ranges":
"fast"); ``errorbound.propagate``, the checker's entry, dispatches here.

Per IR value: its elements' real ranges [lo, hi] (floats, outward: the fast engine's IBP of the
value's forms met with its CROWN argument bounds, ``fast_engine.forward``) and their errors as one
dense matrix C (elements x error sources) and rem >= 0 (an error outside the form: a constant's
cast, a dead ReLU): e_j = sum_s C_js d_s + r_j, |d_s| <= loc_s, |r_j| <= rem_j, and E_j >= sum_s
|C_js| loc_s + rem_j. Each node's new unknowns (its rounding, slope radii, every charge) become one
new source per element, as ``Ctx.make``, so later signed weights cancel them.

Float assumption (as ``fast_engine``): numpy float64 is IEEE-754 binary64, round to nearest, so one
operation's result is within U = 2^-53 relative (+ 2^-1074 on underflow) and a sum of n products in
any order (BLAS) within gamma_n sum |a_i b_i| (+ n 2^-1074). Every bound is a computed value x of a
nonnegative expression with at most n roundings on its path, pushed up by ``_up(x, n)`` = x +
``fast_forms._charge`` (4 gamma_{n+2} x + TINY >= (exact - x)); every signed end by the same charge
of its terms' magnitudes. A computed product C' = M C of forms differs from M C by <= gamma_n |M||C|
(+ n 2^-1074 per coefficient): the sources' share, gamma_n |M| E + TINY, joins the new source, as
``Ctx.make`` charges its fixed-point rounding ("slack"). TRUST_BOUNDARIES.md, "Floats", has each
row's argument. Omitted refinements of the exact column (looser, still sound): the magnitude forms
over the inputs (``errorforms``) and the exact interval meet of each linear node's range. Tighter
(sound): every form term is kept (no alias/term limits).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from . import fast_engine
from .bound_graph import Aff, arg_rows, as_aff
from .core import float_below, rational, require, tick
from .errorctx import Ctx
from .fast_forms import _charge, _Forms
from .fast_functions import FAST
from .functions import FUNCTIONS
from .lower import _decode_const, lower

Q = Fraction
#: the IR nodes with a fast row (``_node``); "dot" and "one" as ``errorbound.LINEAR``
ROWS = ("matmul", "add", "sub", "mul", "div", "neg", "flatten", "reshape", "relu", "sigmoid", "tanh")
FLOAT_DTYPES = ("float16", "float32", "float64")


def _up(x: Any, n: int = 2) -> Any:
    """>= the exact value of a nonnegative expression computed as x with <= n roundings."""
    return x + _charge(x, n)


def _hi(q: Fraction) -> float:
    """A float >= the rational q (``fast_forms.outward``'s upper end)."""
    return -float_below(-q)


def supported(ir: dict[str, Any]) -> str | None:
    """None when every node of the IR has a fast row and every constant is a float tensor; else
    why not (one line)."""
    consts = ir["constants"]
    for node in ir["nodes"]:
        op, ins = node["op"], node["inputs"]
        if op not in ROWS:
            return f"primitive {op!r} has no fast rounding-error row"
        if op in ("mul", "div") and not (ins[1] in consts and ins[0] not in consts):
            return f"{op}: only data {op} a constant has a fast row"
        if op == "matmul" and [len(consts[n]["shape"]) for n in ins if n in consts] != [2]:
            return "matmul: one data operand and one 2-D constant required"
    for name, a in ir["constants"].items():
        if str(a["dtype"]) not in FLOAT_DTYPES:
            return f"constant {name!r} of dtype {a['dtype']} has no fast rounding-error row"
    return None


class _V:
    """One IR value's elements: ranges, the form C (its sources: the first C.shape[1]), rem, E."""

    __slots__ = ("lo", "hi", "C", "rem", "E")

    def __init__(self, lo, hi, C, rem, E):
        self.lo, self.hi, self.C, self.rem, self.E = lo, hi, C, rem, E


_CACHE: dict[str, Any] = {}  # (the last graph: its lowering, per-value forms and constants)


def _compiled(ir: dict[str, Any], model: str) -> Any:
    """(bound graph, fast graph, {value: (forms, crown node rows)}, {constant: floats}) of the IR,
    cached by ``model`` (the caller has checked it is the SHA-256 of this very IR, and
    ``supported``: every constant a float tensor)."""
    if model in _CACHE:
        return _CACHE[model]
    env: dict[str, Any] = {}
    bg = lower(ir, env, wide=True)
    fg = fast_engine.compiled(bg)
    rows: dict[int, tuple[int, int]] = {}
    for k, node in enumerate(bg.nodes):
        if node.kind == "fn":
            rows.update((id(a), (k, i)) for i, a in enumerate(arg_rows(node, node.args)))
    forms = {}
    for name in [i["name"] for i in ir["inputs"]] + [n["output"] for n in ir["nodes"]]:
        vs = env[name].v
        require(all(isinstance(e, (Aff, Fraction)) for e in vs), f"{name}: an element with no range")
        at = np.array([rows.get(id(e), (-1, -1)) for e in vs]).reshape(-1, 2)
        forms[name] = (_Forms([as_aff(e) for e in vs], fg.starts, fg.sizes), at, env[name].shape)
    consts = {}
    for name, a in ir["constants"].items():
        shape, vals = _decode_const(a)
        w = np.array([float(q) for q in vals]).reshape(shape)  # (float16/32/64 bytes: exact)
        require(bool(np.isfinite(w).all()), f"constant {name!r}: a non-finite entry")
        consts[name] = w
    _CACHE.clear()
    _CACHE[model] = (bg, fg, forms, consts)
    return _CACHE[model]


class _Walk:
    """The format's constants (floats, outward), the sources' bounds, and the rows' operations."""

    def __init__(self, stmt: dict[str, Any]):
        # the exact constants, and the checks of format, mode and kernel accuracy, are the exact
        # column's (``errorctx.Ctx``): one reading of the statement for both columns
        self.q = q = Ctx(stmt)
        fmt, mode, u, un, k = q.fmt, q.mode, q.u, q.un, q.k
        self.fmt = fmt
        require(fmt.emax <= 1023 and fmt.precision <= 53, "the fast column covers formats within binary64")
        self.u, self.eta = _hi(u), _hi(q.eta)
        self.eta_sum = 0.0 if fmt.subnormals else self.eta  # (an exact sum never underflows)
        self.kern = (_hi(2 * k * un), _hi(k * fmt.min_positive))  # k ulp of |f|: a|f| + b
        a = k * (2 * un + fmt.min_positive)
        # (``errorbound._sigmoid_like``; None where a >= 1: sigmoid is refused, as there)
        self.sig = _hi((1 + u) / ((1 - a) * (1 - u)) - 1) if a < 1 else None
        self.T = _hi(-Q(2 * fmt.emax, 3))
        # (where exp(-x) overflows toward zero, rtz/rdn/rto, it is max_finite, not inf: sigmoid's
        # kernel then returns fl(1/fl(1 + max_finite)) <= (1 + u)/max_finite + eta, not 0)
        self.sat = _hi(2 / fmt.max_finite) if mode in ("rtz", "rdn", "rto") else 0.0
        self.maxf = -_hi(-fmt.max_finite)  # (rounded down)
        self.two_u = _hi(1 + 2 * u)  # >= 1 + 2u
        self.L = np.zeros(0)  # every source's bound, in order

    def gamma(self, n: int) -> float:
        return _hi(self.q.gamma(n))  # (``Ctx.gamma`` requires n u < 1)

    def fits(self, m: np.ndarray, what: str) -> None:
        """``Ctx.rnd``'s overflow rule, m(1 + u) < max_finite, for every m: fl(m(1 + 2u)) >=
        m(1 + u) (u >= 2^-53), so a computed product below max_finite proves it."""
        require(bool((m * self.two_u < self.maxf).all()), f"{what}: values up to "
                f"{float(np.max(m)):.3g} may overflow {self.fmt.name}")

    def cast_err(self, w: np.ndarray) -> np.ndarray:
        """>= |fl(w) - w| for each float64 constant rounded to the format (rne or the mode):
        0 where w is a value of the format (w / ulp an integer), else u|w| + eta (one rounding)."""
        fmt = self.fmt
        require(bool((np.abs(w) <= self.maxf).all()), f"a constant overflows {fmt.name}")
        e = np.maximum(np.frexp(w)[1] - 1, fmt.emin)  # w's binade (or the subnormal one)
        s = np.ldexp(w, fmt.precision - 1 - e)  # w / ulp: exact (a power-of-two scaling)
        ok = (s == np.round(s)) & (fmt.subnormals | (w == 0) | (np.abs(w) >= 2.0 ** fmt.emin))
        return np.where(ok, 0.0, _up(self.u * np.abs(w) + self.eta))

    def make(self, lo, hi, C: np.ndarray, local: np.ndarray, rem: Any = None) -> _V:
        """The value with form C (on the first C.shape[1] sources) plus one new source of bound
        ``local`` per element where it is > 0 (``Ctx.make``); ``rem``: kept outside the form."""
        require(bool(np.isfinite(local).all() and (local >= 0).all()), "a non-finite error bound")
        require(bool(np.isfinite(lo).all() and np.isfinite(hi).all()), "an unbounded real range")
        m, S0 = len(local), len(self.L)
        new = np.nonzero(local > 0)[0]
        D = np.zeros((m, S0 + len(new)))
        D[:, :C.shape[1]] = C
        D[new, S0 + np.arange(len(new))] = 1.0
        self.L = np.concatenate([self.L, local[new]])
        # (underflow in the computed products: <= S 2^-1074 each, within TINY while S sum L < 2^70)
        require(float(self.L.sum()) * (1 + len(self.L)) < 2.0 ** 70, "error bounds too large")
        rem = np.zeros(m) if rem is None else rem
        E = _up(np.abs(D) @ self.L + rem, len(self.L) + 1)
        return _V(lo, hi, D, rem, E)

    # -- the rows ----------------------------------------------------------------------------
    def one(self, lo, hi, C, charge, rem, Ein, under) -> _V:
        """A kernel rounding once: |y~ - y| gains u (max|y| + sum |w| E) + eta (eta only where
        ``under``: a sum of two floats never underflows with subnormals)."""
        out = _up(np.maximum(np.abs(lo), np.abs(hi)) + Ein, 2)
        self.fits(out, "a sum")
        local = _up(self.u * out + np.where(under, self.eta, self.eta_sum), 2)
        return self.make(lo, hi, C, _up(local + charge, 1), rem)

    def fn(self, name: str, v: _V, lo, hi, attrs: dict[str, Any]) -> _V:
        """``Ctx.fn``: f(x~) - f(x) = s e_x, s in f''s range over the float hull [lo - E, hi + E]
        (mid +- rad), plus the kernel's own error; then the range rule's cap. relu: where its real
        argument is <= 0, the output's error is max(0, hi + E) (``errorbound.apply``)."""
        # (each end: two roundings, each <= U (|lo| + |hi| + E + ext), well within ext)
        ext = _charge(np.abs(v.lo) + np.abs(v.hi) + v.E, 1)
        p, q = v.lo - v.E - ext, v.hi + v.E + ext
        row = FAST[name]
        fl, fh = row.interval(p, q, **attrs)
        Fm = np.maximum(np.abs(fl), np.abs(fh))
        self.fits(_up(Fm * (1 + self.kern[0]), 2), name)  # (Ctx.fn: |f|(1 + 2k un) fits)
        if name == "relu":
            kern = np.zeros_like(p)
            a = (p > 0) * 1.0  # slope 1 on [p, q] when p > 0, else in [0, 1]
            b = np.ones_like(p)
        else:
            if name == "sigmoid":  # (``errorbound._sigmoid_like``; exp(-x) may overflow past -T)
                T = self.T  # (where p > T, the interval [T, T] is a stand-in, unused)
                require(self.sig is not None, "kernel error too large")
                # (the tail's "returns 0" needs exp to overflow to +inf: without infinities it is NaN)
                require(self.fmt.has_inf or bool((p > T).all()), f"sigmoid: exp(-x) may overflow "
                        f"{self.fmt.name}, which has no infinity (NaN in the float run)")
                tail = np.where(p <= T, row.interval(np.minimum(p, T), np.minimum(q, T))[1] + self.sat, 0.0)
                kern = _up(self.sig * Fm + self.eta + tail, 3)
            else:  # (the kernel within k ulp)
                kern = _up(self.kern[0] * Fm + self.kern[1], 2)
            a, b = self.slopes(name, p, q)
        mid = (a + b) / 2
        rad = _up(np.maximum(b - mid, mid - a), 1) + _charge(np.abs(a) + np.abs(b), 2)
        C = mid[:, None] * v.C  # (one rounding per coefficient: charged as U |mid| E)
        local = _up(kern + rad * v.E + np.abs(mid) * v.rem + _charge(np.abs(mid) * v.E, 1), 4)  # (<= 4 each)
        if name == "relu":  # (slope 1: C copied exactly, rem carried; no new unknown)
            local = np.where(a == 1, v.rem, local)
        # the range rule: f~(x~) in [fl - kern, fh + kern] and f(x) in [lo, hi] (``Ctx.fn``): where
        # that caps the error below the form's bound, one fresh source of bound cap instead
        cap = np.maximum(fh + kern - lo + _charge(np.abs(fh) + kern + np.abs(lo), 2),
                         hi - fl + kern + _charge(np.abs(hi) + np.abs(fl) + kern, 2))
        S = C.shape[1]
        capped = cap < _up(np.abs(C) @ self.L[:S] + local, S + 1)
        rem = None
        if name == "relu":  # a neuron off in the reals: relu(x~) - 0 in [0, max(0, hi + E)]
            dead = v.hi <= 0
            capped &= ~dead
            rem = np.where(dead, _up(np.maximum(0.0, v.hi + v.E), 1), 0.0)
            C[dead], local = 0.0, np.where(dead, 0.0, local)
        C[capped], local = 0.0, np.where(capped, cap, local)
        return self.make(lo, hi, C, local, rem)

    def slopes(self, name: str, p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[min f', max f'] over [p, q], outward (``errorctx.slope_range``): f' is monotone on each
        convexity piece, so its extremes are at p, q and the piece ends between (clipped into
        [p, q]: a point of [p, q] never widens the true extremes)."""
        row, ex = FAST[name], FUNCTIONS[name]
        pts = [p, q] + [np.clip(float(e), p, q) for a, b, _ in ex.pieces() for e in (a, b) if e is not None]
        require(all(kind != "unknown" for *_, kind in ex.pieces()), f"{name}: no fast slope row")
        lo = np.min([row._f(x, {}, False, True) for x in pts], axis=0)
        hi = np.max([row._f(x, {}, True, True) for x in pts], axis=0)
        require(bool(np.isfinite(lo).all() and np.isfinite(hi).all()), f"{name}: no finite slope")
        return lo, hi


def _bcast(shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Per operand, the index of the element each output of the broadcast reads (row-major)."""
    out = np.broadcast_shapes(*shapes)
    return [np.broadcast_to(np.arange(int(np.prod(s))).reshape(s), out).ravel() for s in shapes]


def _node(w: _Walk, op: str, ins: list[_V], shapes: list[tuple[int, ...]], lo, hi, cw: list[Any]) -> _V:
    """One IR node's row; ``cw``: per input, its constant's floats (None for data). ``propagate``
    has required ``supported``: mul/div read data then a constant, matmul one 2-D constant."""
    if op in ("flatten", "reshape"):  # (row-major order kept: the same elements, exactly)
        v = ins[0]
        return _V(lo, hi, v.C, v.rem, v.E)
    if op == "neg":  # (exact)
        v = ins[0]
        return _V(lo, hi, -v.C, v.rem, v.E)
    if op in ("relu", "sigmoid", "tanh"):
        return w.fn(op, ins[0], lo, hi, {})
    if op == "matmul":
        return _matmul(w, ins, shapes, lo, hi, cw)
    require(len(ins) == 2, f"{op}: two operands expected")
    ia, ib = _bcast(shapes)
    a, b = ins
    if op in ("add", "sub"):  # "one": fl(a~ +- b~), data + data or data + constant
        sg = 1.0 if op == "add" else -1.0
        S = max(a.C.shape[1], b.C.shape[1])
        Ca = np.pad(a.C, ((0, 0), (0, S - a.C.shape[1])))[ia]
        Cb = np.pad(b.C, ((0, 0), (0, S - b.C.shape[1])))[ib]
        Ein = a.E[ia] + b.E[ib]
        return w.one(lo, hi, Ca + sg * Cb, _charge(Ein, 2), _up(a.rem[ia] + b.rem[ib], 1), Ein, False)
    c = cw[1].ravel()[ib]
    dc = w.cast_err(c)
    if op == "mul":  # "one", plus the constant's own cast error twice (``_linear``'s extra)
        ac = np.abs(c)
        mag = _up(np.maximum(np.abs(a.lo), np.abs(a.hi))[ia] + a.E[ia], 1)
        extra = _up(2 * dc * mag, 1)
        return w.one(lo, hi, c[:, None] * a.C[ia], _up(_charge(ac * a.E[ia], 1) + extra, 1),
                     _up(ac * a.rem[ia], 1), _up(ac * a.E[ia], 1), ac != 1)
    # div by a constant c (``Ctx.div``): coefficient 1/c; fl(c) within dc of c, 1/fl(c) within
    # dc/(|c|(|c| - dc)) of 1/c; the quotient rounds once, of magnitude mag(a)/(|c| - dc)
    ac, mx = np.abs(c), np.maximum(np.abs(a.lo), np.abs(a.hi))[ia]
    require(bool((ac > dc).all()), "division by a value whose float range contains 0")
    inv = _up(1.0 / np.nextafter(ac - dc, 0.0), 1)  # >= 1/(|c| - dc) >= 1/|fl(c)|
    out = _up((mx + a.E[ia]) * inv, 2)
    w.fits(out, "a quotient")
    dinv = _up(dc * inv / ac, 2)  # >= |1/fl(c) - 1/c|: a~/fl(c) - a/c = e_a/c + (e_a + a)(1/fl(c) - 1/c)
    local = _up(w.u * out + w.eta + dinv * (a.E[ia] + mx) + _charge(a.E[ia] / ac, 1), 5)
    return w.make(lo, hi, a.C[ia] / c[:, None], local, _up(a.rem[ia] * inv, 1))


def _matmul(w: _Walk, ins: list[_V], shapes: list[tuple[int, ...]], lo, hi, cw: list[Any]) -> _V:
    """"dot": a data operand times a constant matrix (either side): per output, the sum of n
    products in any order errs by <= gamma_n S + 4 n eta, S = sum |w| (max|x| + E) (``dot_error``'s
    first bound) or the sign-split one (``_split``), plus the constant's cast error times 1 +
    max(1, the rule's factor) (``_linear``'s extra)."""
    right = cw[1] is not None
    x, W = (ins[0], cw[1]) if right else (ins[1], cw[0])
    xs = shapes[0] if right else shapes[1]
    require(len(xs) >= 1, "matmul: a scalar operand")
    if right:  # x (..., n) @ W (n, m): rows r of x
        n = W.shape[0]
        require(xs[-1] == n, "matmul: shapes do not match")

        def f(M: np.ndarray, A: np.ndarray) -> np.ndarray:
            X = A.reshape(A.shape[0] // n, n, *A.shape[1:])
            Y = np.moveaxis(np.tensordot(X, M, axes=([1], [0])), -1, 1)
            return Y.reshape(Y.shape[0] * Y.shape[1], *A.shape[1:])

        def lf(m: np.ndarray) -> np.ndarray:  # (n, outputs): output (r, j)'s leaves |W_ij| m_ri
            return (np.abs(W)[None] * m.reshape(-1, n)[:, :, None]).transpose(1, 0, 2).reshape(n, -1)
    else:  # W (r, n) @ x (n,) or (n, m)
        n = W.shape[1]
        require(xs[0] == n and len(xs) <= 2, "matmul: shapes do not match")

        def f(M: np.ndarray, A: np.ndarray) -> np.ndarray:
            X = A.reshape(n, A.shape[0] // n, *A.shape[1:])
            Y = np.tensordot(M, X, axes=([1], [0]))
            return Y.reshape(Y.shape[0] * Y.shape[1], *A.shape[1:])

        def lf(m: np.ndarray) -> np.ndarray:  # output (r, j)'s leaves |W_ri| m_ij
            return (np.abs(W).T[:, :, None] * m.reshape(n, 1, -1)).reshape(n, -1)
    aW, dW = np.abs(W), w.cast_err(W)
    # the computed W C is within gamma_n |W||C| of the exact one: its sources' share gamma_n |W| E;
    # plus <= n 2^-1074 per coefficient on underflow, so <= n 2^-1074 sum L per element: < TINY
    require(n * float(w.L.sum()) < 2.0 ** 70, "error bounds too large")
    C, charge, rem = f(W, x.C), _charge(f(aW, x.E), n), _up(f(aW, x.rem), n)
    mag = _up(np.maximum(np.abs(x.lo), np.abs(x.hi)) + x.E, 1)
    S = _up(f(aW, mag), n)
    g = w.gamma(n)
    # the float run's weights fl(W), |fl(W)| <= |W| + dW, raise S, M and each s_j by <= D = sum dW
    # mag: gamma_n S by gamma_n D, ``_split`` by (u + n u (1 + u))/(1 - n u) D (c1 D + c2 n D); D
    # once more for (fl(W) - W) x~. (Both factors exceed 1 where n u > 1/2: fp8 from n = 8.)
    D = _up(f(dW, mag), n) if dW.any() else np.zeros_like(S)
    w.fits(_up((S + D) * (1 + g), 3), "a dot product")
    local = np.minimum(_up(g * S + 4 * n * w.eta, 3), _split(w, W, f, lf, x, mag, S, n))
    if dW.any():
        u = w.q.u
        local = _up(local + _hi(1 + max(1, (u + n * u * (1 + u)) / (1 - n * u))) * D, 2)
    return w.make(lo, hi, C, _up(local + charge, 1), rem)


def _split(w: _Walk, W: np.ndarray, f: Any, lf: Any, x: _V, mag: np.ndarray, S: np.ndarray, n: int
           ) -> np.ndarray:
    """``dot_error``'s second bound, (u S + u (1 + u) K + u n^2 eta + 2 n eta) / (1 - n u), K =
    min(M, S) + sum_j min(M, s_j), M = max(P, N), s_j = S - (the j - 1 smallest leaf bounds |w_i|
    mag_i), j = 1..n-1 (its argument there): every sum rounded up, the leaves' lower bounds and their
    cumulative sums (what s_j subtracts) rounded down."""
    k = n  # (``w.gamma(n)`` has required n u < 1)
    pa = _up(np.maximum(0.0, x.hi + x.E + _charge(np.abs(x.hi) + x.E, 1)), 1)  # max(0, hi + E)
    pb = _up(np.maximum(0.0, x.E - x.lo + _charge(np.abs(x.lo) + x.E, 1)), 1)  # max(0, E - lo)
    Wp, Wn = np.maximum(W, 0.0), -np.minimum(W, 0.0)
    M = np.maximum(_up(f(Wp, pa) + f(Wn, pb), n + 1), _up(f(Wp, pb) + f(Wn, pa), n + 1))
    # the leaves per output (n, outputs): lower bounds of |w| mag, ascending, cumulative, down
    leaf = np.nextafter(lf(mag), 0.0)
    cs = np.cumsum(np.sort(leaf, axis=0), axis=0)[:n - 2]
    cs = np.concatenate([np.zeros((min(1, n - 1), cs.shape[1])), np.maximum(0.0, cs - _charge(cs, n + 1))])
    D = S - cs + _charge(S, 1)  # >= s_j = S - (the j - 1 smallest leaves), j = 1..n-1
    K = _up(np.minimum(M, S) + np.minimum(M, D).sum(axis=0), n + 1)
    u, eta = w.q.u, w.q.eta
    c1, c2 = _hi(u / (1 - k * u)), _hi(u * (1 + u) / (1 - k * u))
    c3 = _hi((u * k * k * eta + 2 * k * eta) / (1 - k * u))
    return _up(c1 * S + c2 * K + c3, 4)


def propagate(stmt: dict[str, Any], trusted: dict[str, int] | None = None) -> list[list[Fraction]]:
    """``errorbound.propagate`` for a "column": "fast" statement (the caller has checked its model
    fingerprint and box): the bound of every element of every IR node, then of the outputs."""
    ir = stmt["graph"]
    why = supported(ir)
    require(why is None, f"fast column: {why}")
    require(stmt.get("ranges") == "fast", "the fast column takes the fast engine's ranges (\"fast\")")
    bg, fg, forms, consts = _compiled(ir, stmt["model"])
    box = [(rational(a), rational(b)) for a, b in stmt["input_box"]]
    require(len(box) == bg.n_in, f"box has {len(box)} intervals for {bg.n_in} inputs")
    blo, bhi = fast_engine.boxes([[a for a, _ in box]], [[b for _, b in box]])
    st = fast_engine.forward(fg, blo, bhi, "crown")
    if trusted is not None:
        from .errorbound import FAST_TRUST
        from .graph_vnn import LIBM, LIBM_ROWS

        trusted[FAST_TRUST] = 1
        if any(n["op"] in LIBM_ROWS for n in ir["nodes"]):
            trusted[LIBM] = 1

    def ranges(name: str) -> tuple[np.ndarray, np.ndarray]:  # IBP of the forms met with CROWN's rows
        F, at, _ = forms[name]
        lo, hi = (x[0] for x in F.bounds(st.L, st.U, st.vmax))
        for k in {int(k) for k in at[:, 0] if k >= 0}:
            sel = at[:, 0] == k
            al, au = st.arg[k]
            lo[sel] = np.maximum(lo[sel], al[0, at[sel, 1]])
            hi[sel] = np.minimum(hi[sel], au[0, at[sel, 1]])
        require(bool(np.isfinite(lo).all() and np.isfinite(hi).all()), f"{name}: an unbounded range")
        return lo, np.maximum(lo, hi)

    w = _Walk(stmt)
    vals: dict[str, _V] = {}
    last = {n: i for i, node in enumerate(ir["nodes"]) for n in node["inputs"]}
    k = 0
    for i in ir["inputs"]:
        m = int(np.prod(forms[i["name"]][2]))
        lo, hi = blo[0, k:k + m], bhi[0, k:k + m]
        k += m
        mag = np.maximum(np.abs(lo), np.abs(hi))
        if not stmt["input_exact"]:
            w.fits(mag, "an input")
        local = np.zeros(m) if stmt["input_exact"] else _up(w.u * mag + w.eta, 2)
        vals[i["name"]] = w.make(lo, hi, np.zeros((m, 0)), local)
    for name, c in consts.items():
        e = w.cast_err(c.ravel())
        vals[name] = _V(c.ravel(), c.ravel(), np.zeros((c.size, 0)), e, e)
    steps = []
    for t, node in enumerate(ir["nodes"]):
        tick()
        ins = [vals[n] for n in node["inputs"]]
        shapes = [tuple(forms[n][2]) if n in forms else consts[n].shape for n in node["inputs"]]
        lo, hi = ranges(node["output"])
        v = _node(w, node["op"], ins, shapes, lo, hi, [consts[n] if n in consts else None
                                                       for n in node["inputs"]])
        require(len(v.E) == len(lo), f"{node['op']}: {len(v.E)} elements for {len(lo)}")
        require(bool(np.isfinite(v.E).all()), f"{node['op']}: a non-finite error bound")
        vals[node["output"]] = v
        steps.append([Q(x) for x in v.E.tolist()])
        for n in node["inputs"]:  # (a value no later node reads: its form is freed)
            if last.get(n) == t and n not in ir["outputs"] and n not in consts:
                del vals[n]
    steps.append([Q(x) for o in ir["outputs"] for x in vals[o].E.tolist()])
    return steps
