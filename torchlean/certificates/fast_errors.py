"""The fast sibling of the rounding-error column (``errorbound.COLUMN``, read it first): the same
claim, the same rules or coarser ones, in float64 with outward rounding (numpy), for graphs whose
IR nodes all have a row in ``ROWS``. A statement asks for it with "column": "fast" (and "ranges":
"fast"); ``errorbound.propagate``, the checker's entry, dispatches here.

Per IR value: its elements' real ranges [lo, hi] (floats, outward: the fast engine's IBP of the
value's forms met with its CROWN argument bounds, ``fast_engine.forward``) and their errors as a
form C (elements x error sources) and rem >= 0 (an error outside the form: a constant's cast, a
dead ReLU): e_j = sum_s C_js d_s + r_j, |d_s| <= loc_s, |r_j| <= rem_j, and E_j >= sum_s |C_js|
loc_s + rem_j. Each node's new unknowns (its rounding, slope radii, every charge) become one new
source per element, as ``Ctx.make``, so later signed weights cancel them. C is kept as one block
per node that made sources (``fast_blocks``: dense, or sparse under ``SPARSE_BELOW`` full), and a linear
node (matmul, conv2d, avg_pool2d) applies its exact map, a ``fast_forms._Mat``, to each block: a
conv net's forms cost their entries, not elements x sources.

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
(sound): every form term is kept (no alias/term limits). layer_norm, softmax and log_softmax are
the exact column's own entries, read back (``fast_norms``); on a graph with one, the fast engine's
argument bounds are first clipped to the exact IBP's (``fast_engine.ibp_clip``), as the exact
column's fast ranges are; -inf mask constants are placeholders 0 of error 0 (``ninf``).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from . import fast_engine
from .bound_graph import ONE, Aff, Lowerer, Tensor, arg_rows, as_aff
from .core import float_below, rational, require, tick
from .errorbound import LINEAR, bn_scale
from .errorctx import Ctx
from .errorkern import FNS, Exact
from .fast_blocks import _V, _absdot, _apply, _blk, _plus, _rows, _scale, _terms
from .fast_fns import _Fns
from .fast_forms import _charge, _dense, _float_hull, _Forms, _hi, _Mat, _midrad, _up
from .fast_norms import NORMS, exact_row
from .fast_prods import bn_data, matmul_pairs, prod, prod_range, quot, sum_map
from .fast_select import KEY, _select, copy, maxima, maxlike
from .lower import NEG_INF, _decode_const, lower
from .lower import ROWS as LOWER
from .lower_linear import _pair

Q = Fraction
#: the IR nodes with a fast row (``_node``); "dot" and "one" as ``errorbound.LINEAR``
#: the nodes read through ``_map``'s generic path by their exact-column kind (``errorbound.LINEAR``,
#: ``_lin``): selections ("exact"), sums ("dot"), means ("avg")
LIN = ("transpose", "slice", "concat", "broadcast_to", "sum", "mean", "where", "gather", "embedding")
ROWS = ("matmul", "add", "sub", "mul", "div", "neg", "flatten", "reshape", "conv2d", "avg_pool2d",
        "max_pool2d", "max", "batch_norm", "maximum", "minimum") + FNS + LIN + NORMS
FLOAT_DTYPES = ("float16", "float32", "float64")



def supported(ir: dict[str, Any]) -> str | None:
    """None when every node of the IR has a fast row and every constant is a float tensor (or
    only a where condition or indices, ``KEY``); else why not (one line)."""
    consts = ir["constants"]
    folded = set()  # (a selection of constants only is a constant: ``_compiled`` folds it)
    for node in ir["nodes"]:
        op, ins = node["op"], node["inputs"]
        if op not in ROWS:
            return f"primitive {op!r} has no fast rounding-error row"
        if LINEAR.get(op) == "exact" and all(n in consts or n in folded for n in ins):
            folded.add(node["output"])
            continue
        if op in KEY and ins[KEY[op]] not in consts and ins[KEY[op]] not in folded:
            return f"{op}: a constant {'condition' if op == 'where' else 'index'} required"
        # (a constant input is read as data, as mul's: its value, its cast error; a kernel must be
        # a constant or a selection of constants, ``_compiled``'s folded ones: its floats are W)
        if op in ("conv2d", "avg_pool2d", "max_pool2d") and not all(n in consts or n in folded
                                                                      for n in ins[1:]):
            return f"{op}: a constant kernel required"
    return None


_CACHE: dict[str, Any] = {}  # (the last graph: its lowering, per-value forms, constants, maps)


def _map(op: str, x: Tensor, ks: list[Tensor], attrs: dict[str, Any]) -> Any:
    """A linear node's exact map over its data input's elements (outputs x inputs), from the
    bound table's own row run on index variables (as ``errorbound._linear``): conv2d a ``_Mat`` of
    its float weights (exact in binary64); avg_pool2d (0/1 pattern, divisor per output); max_pool2d
    (outputs x members) input indices, -1 past a window's end, and whether it is padded."""
    n = len(x.v)
    L = Lowerer(n)
    res = LOWER[op](L, [Tensor(x.shape, [Aff({j: ONE}) for j in range(n)])] + ks, attrs)
    if op in ("sum", "mean"):  # ("dot" with unit weights as conv2d; "avg" as avg_pool2d)
        op = "conv2d" if LINEAR[op] == "dot" else "avg_pool2d"
    if op in ("max", "max_pool2d"):  # (one max node: its groups; a one-member window is that member)
        require(len(L.nodes) <= 2, "max_pool2d: more than one max node")
        groups = []
        for e in map(as_aff, res.v):
            require(not e.c and len(e.t) == 1 and next(iter(e.t.values())) == 1, "max_pool2d: not a maximum")
            v = next(iter(e.t))
            groups.append([e] if v < n else [as_aff(a) for a in L.nodes[1].args[v - L.nodes[1].offset]])
        idx = np.full((len(groups), max(map(len, groups))), -1)
        for i, g in enumerate(groups):
            require(all(not a.c and len(a.t) == 1 and next(iter(a.t.values())) == 1 for a in g),
                    "max_pool2d: a member that is not one input element")
            idx[i, :len(g)] = [next(iter(a.t)) for a in g]
        # (whether the runtime pads with -inf: with any padding the first window reads it)
        return idx, any(_pair(attrs.get("padding", 0)))
    require(len(L.nodes) == 1, f"{op}: a row with nonlinear nodes")
    forms = [as_aff(e) for e in res.v]
    require(all(not f.c for f in forms), f"{op}: a constant term")
    F = _Forms(forms, [0], [n])
    if op == "conv2d":
        require(all(E is None for *_, E in F.parents), "conv2d: a weight not exact in binary64")
        return F.parents[0][1] if F.parents else _dense(np.zeros((len(forms), n)))
    require(all(f.t for f in forms), "avg_pool2d: an empty window")
    div = [1 / next(iter(f.t.values())) for f in forms]
    require(all(d.denominator == 1 and set(f.t.values()) == {1 / d} for d, f in zip(div, forms)),
            "avg_pool2d: a row that is not a mean")
    P = F.parents[0][1].map(lambda v: (v != 0) * 1.0)
    return P, np.array([float(d) for d in div])


def _compiled(ir: dict[str, Any], model: str) -> Any:
    """(bound graph, fast graph, {value: (forms, crown node rows)}, {constant: floats}, {node
    index: ``_map``}) of the IR, cached by ``model`` (the caller has checked it is the SHA-256 of
    this very IR, and ``supported``: every constant a float tensor)."""
    if model in _CACHE:
        return _CACHE[model]
    env: dict[str, Any] = {}
    bg = lower(ir, env, wide=True)
    fg = fast_engine.compiled(bg)
    rows: dict[int, tuple[int, int]] = {}
    for k, node in enumerate(bg.nodes):  # (mul and max argument rows too, as the exact column's)
        if node.kind in ("fn", "mul", "max"):
            rows.update((id(a), (k, i)) for i, a in enumerate(arg_rows(node, node.args)))
    # -inf elements (a mask's fill: ``lower`` lets where select them and softmax read them, and
    # nothing else): a placeholder 0 with error 0 here, their places in ``ninf`` (``fast_norms``)
    ninf = {n: m for n, t in env.items() if (m := np.array([e is NEG_INF for e in t.v], bool)).any()}
    forms: dict[Any, Any] = {}
    names = [i["name"] for i in ir["inputs"]] + [n["output"] for n in ir["nodes"]]
    # (layer_norm: each row's var + eps too, keyed (name, "var"): no IR name, a string, can be it)
    for name, vs in [(n, env[n].v) for n in names] + [((n, "var"), env[n].var) for n in names
                                                     if getattr(env[n], "var", None)]:
        vs = [Fraction(0) if e is NEG_INF else e for e in vs]
        require(all(isinstance(e, (Aff, Fraction)) for e in vs), f"{name}: an element with no range")
        at = np.array([rows.get(id(e), (-1, -1)) for e in vs]).reshape(-1, 2)
        forms[name] = (_Forms([as_aff(e) for e in vs], fg.starts, fg.sizes), at,
                       env[name].shape if isinstance(name, str) else (len(vs),))
    consts = {}
    for name, a in ir["constants"].items():
        shape, vals = _decode_const(a)
        w = np.array([0.0 if q is NEG_INF else float(q) for q in vals]).reshape(shape)  # (exact)
        require(bool(np.isfinite(w).all()), f"constant {name!r}: a non-finite entry")
        # (an integer constant: its floats must be its values, so ``propagate``'s check that
        # they are values of the format (cast error 0) is about the integers themselves)
        require(str(a["dtype"]) in FLOAT_DTYPES or all(x == q for x, q in zip(w.ravel().tolist(), vals)),
                f"integer constant {name!r} holds a value that is not one of binary64")
        consts[name] = w
    maps: dict[int, Any] = {}
    for t, node in enumerate(ir["nodes"]):
        op, ins, at = node["op"], node["inputs"], dict(node.get("attrs") or {})
        if LINEAR.get(op) == "exact" and all(n in consts for n in ins):
            # a selection of constants: the constant it selects (each entry a copy: exact)
            vs = env[node["output"]].v
            require(all(isinstance(q, Fraction) or q is NEG_INF for q in vs),
                    f"{op}: a constant with no value")
            consts[node["output"]] = np.array([0.0 if q is NEG_INF else float(q) for q in vs]
                                              ).reshape(env[node["output"]].shape)
        elif op in LIN:
            # (a float condition is cast to the format in the float run: only 0 and 1 stay what
            # the exact row reads)
            require(op != "where" or bool(np.isin(consts[ins[0]], (0.0, 1.0)).all()),
                    "where: a condition entry other than 0 or 1")
            maps[t] = (_select(op, [env[n] for n in ins], at) if LINEAR[op] == "exact"
                       else _map(op, env[ins[0]], [], at))
        elif op == "matmul" and _one_weight(ins, consts):
            right = ins[1] in consts
            maps[t] = _matmul_map(consts[ins[right]], env[ins[not right]].shape, right)
        elif op in ("conv2d", "avg_pool2d", "max_pool2d", "max"):
            maps[t] = _map(op, env[ins[0]], [env[n] for n in ins[1:]], at)
        elif op == "batch_norm" or op in FNS or op in NORMS:  # (attrs; gelu and silu take none: ``lower``)
            maps[t] = {} if op in ("gelu", "silu") else at
    _CACHE.clear()
    _CACHE[model] = (bg, fg, forms, consts, maps, ninf)
    return _CACHE[model]


def _one_weight(ins: list[str], consts: dict[str, np.ndarray]) -> bool:
    """A matmul of data by one 2-D constant (``_dot`` on its map); else two data operands
    (``fast_prods``: products, then their sums)."""
    return [consts[n].ndim for n in ins if n in consts] == [2]


def _matmul_map(W: np.ndarray, xs: tuple[int, ...], right: bool) -> _Mat:
    """The map of x @ W (``right``) or W @ x on x's elements, row-major (outputs x inputs), as
    numpy's matmul: x's leading axes are a batch (W @ x with x (..., n, q) is (..., p, q))."""
    require(len(xs) >= 1 and W.ndim == 2, "matmul: a scalar operand")
    if right:  # x (r, n) @ W (n, m): output (a, j) reads x (a, i) with weight W_ij
        n, m = W.shape
        r = int(np.prod(xs[:-1]))
        require(xs[-1] == n, "matmul: shapes do not match")
        if r == 1:
            return _dense(np.ascontiguousarray(W.T))
        a, j, i = np.meshgrid(np.arange(r), np.arange(m), np.arange(n), indexing="ij")
        return _Mat(r * m, r * n, (a * m + j).ravel(), (a * n + i).ravel(), W[i, j].ravel())
    p, n = W.shape  # W (p, n) @ x (b, n, q): output (c, a, j) reads x (c, i, j) with weight W_ai
    b, q = (1, 1) if len(xs) == 1 else (int(np.prod(xs[:-2])), xs[-1])
    require(xs[-1 if len(xs) == 1 else -2] == n, "matmul: shapes do not match")
    if b * q == 1:
        return _dense(W)
    c, a, j, i = np.meshgrid(np.arange(b), np.arange(p), np.arange(q), np.arange(n), indexing="ij")
    return _Mat(b * p * q, b * n * q, ((c * p + a) * q + j).ravel(), ((c * n + i) * q + j).ravel(),
                W[a, i].ravel())


class _Walk(_Fns):
    """The format's constants (floats, outward), the sources' bounds, and the rows' operations
    (the elementwise functions' ``fn``: ``fast_fns._Fns``)."""

    def __init__(self, stmt: dict[str, Any]):
        # the exact constants, and the checks of format, mode and kernel accuracy, are the exact
        # column's (``errorctx.Ctx``): one reading of the statement for both columns
        self.q = q = Ctx(stmt)
        fmt, u = q.fmt, q.u
        self.fmt = fmt
        require(fmt.emax <= 1023 and fmt.precision <= 53, "the fast column covers formats within binary64")
        self.u, self.eta = _hi(u), _hi(q.eta)
        self.eta_sum = 0.0 if fmt.subnormals else self.eta  # (an exact sum never underflows)
        # ``errorkern.kernel``'s constants: the exact domain's, each rounded up (sig None where
        # a >= 1: sigmoid is refused, as there)
        ex = Exact(q)
        self.kern, self.T = (_hi(ex.kern[0]), _hi(ex.kern[1])), _hi(ex.T)  # k ulp of |f|: a|f| + b
        self.sig, self.sat = ex.sig and _hi(ex.sig), _hi(ex.sat) if ex.sat else 0.0
        self.maxf = -_hi(-fmt.max_finite)  # (rounded down)
        self.two_u = _hi(1 + 2 * u)  # >= 1 + 2u
        self.L = np.zeros(0)  # every source's bound, in order

    def per(self, ks: np.ndarray, f: Any) -> np.ndarray:
        """``_hi(f(k))`` for each entry k of ks (once per distinct k)."""
        u, inv = np.unique(ks, return_inverse=True)
        return np.array([_hi(f(int(k))) for k in u])[inv.ravel()]

    def fits(self, m: np.ndarray, what: str) -> None:
        """``Ctx.rnd``'s overflow rule, m(1 + u) < max_finite, for every m: fl(m(1 + 2u)) >=
        m(1 + u) (u >= 2^-53), so a computed product below max_finite proves it."""
        require(bool((m * self.two_u < self.maxf).all()), f"{what}: values up to "
                f"{float(np.max(m, initial=0.0)):.3g} may overflow {self.fmt.name}")  # (an empty
        # matmul, inner size 0, has no products: its empty m passes; np.max alone raised)

    def cast_err(self, w: np.ndarray) -> np.ndarray:
        """>= |fl(w) - w| for each float64 constant rounded to the format (rne or the mode):
        0 where w is a value of the format (w / ulp an integer), else u|w| + eta (one rounding)."""
        fmt = self.fmt
        require(bool((np.abs(w) <= self.maxf).all()), f"a constant overflows {fmt.name}")
        e = np.maximum(np.frexp(w)[1] - 1, fmt.emin)  # w's binade (or the subnormal one)
        s = np.ldexp(w, fmt.precision - 1 - e)  # w / ulp: exact (a power-of-two scaling)
        ok = (s == np.round(s)) & (fmt.subnormals | (w == 0) | (np.abs(w) >= 2.0 ** fmt.emin))
        return np.where(ok, 0.0, _up(self.u * np.abs(w) + self.eta))

    def make(self, lo, hi, C: dict, local: np.ndarray, rem: Any = None) -> _V:
        """The value with form C (blocks over the sources so far) plus one new source of bound
        ``local`` per element where it is > 0 (``Ctx.make``); ``rem``: kept outside the form."""
        require(bool(np.isfinite(local).all() and (local >= 0).all()), "a non-finite error bound")
        require(bool(np.isfinite(lo).all() and np.isfinite(hi).all()), "an unbounded real range")
        m, S0 = len(local), len(self.L)
        new = np.nonzero(local > 0)[0]
        D = dict(C)
        if len(new):  # (the new sources: one block, the identity on the elements that have one)
            D[S0] = _blk(m, len(new), new, np.arange(len(new)), np.ones(len(new)), merge=False)
        self.L = np.concatenate([self.L, local[new]])
        # (underflow in the computed products: <= S 2^-1074 each, within TINY while S sum L < 2^70)
        require(float(self.L.sum()) * (1 + len(self.L)) < 2.0 ** 70, "error bounds too large")
        rem = np.zeros(m) if rem is None else rem
        E = _up(_absdot(D, self.L, m) + rem, len(self.L) + 1)
        return _V(lo, hi, D, rem, E)

    # -- the rows ----------------------------------------------------------------------------
    def one(self, lo, hi, C, charge, rem, Ein, under) -> _V:
        """A kernel rounding once: |y~ - y| gains u (max|y| + sum |w| E) + eta (eta only where
        ``under``: a sum of two floats never underflows with subnormals)."""
        out = _up(np.maximum(np.abs(lo), np.abs(hi)) + Ein, 2)
        self.fits(out, "a sum")
        local = _up(self.u * out + np.where(under, self.eta, self.eta_sum), 2)
        return self.make(lo, hi, C, _up(local + charge, 1), rem)

    def sum2(self, a: _V, b: _V, ia: np.ndarray, ib: np.ndarray, sg: float, lo, hi) -> _V:
        """"one": fl(a~ +- b~) (``sg``), data + data or data + constant, elements ia of a, ib of b."""
        Ein = a.E[ia] + b.E[ib]
        return self.one(lo, hi, _plus(_rows(a.C, ia), _rows(b.C, ib), sg), _charge(Ein, 2),
                        _up(a.rem[ia] + b.rem[ib], 1), Ein, False)


def _bcast(shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Per operand, the index of the element each output of the broadcast reads (row-major)."""
    out = np.broadcast_shapes(*shapes)
    return [np.broadcast_to(np.arange(int(np.prod(s))).reshape(s), out).ravel() for s in shapes]


def _node(w: _Walk, op: str, ins: list[_V], shapes: list[tuple[int, ...]], lo, hi, cw: list[Any],
          mp: Any = None) -> _V:
    """One IR node's row; ``cw``: per input, its constant's floats (None for data); ``mp``: a
    linear node's map (``_map``, ``_matmul_map``). ``propagate`` has required ``supported``:
    conv2d's kernel is a constant (its input: data or a constant read as data)."""
    if op in ("flatten", "reshape"):  # (row-major order kept: the same elements, exactly)
        v = ins[0]
        return _V(lo, hi, v.C, v.rem, v.E)
    if op == "neg":  # (exact)
        v = ins[0]
        return _V(lo, hi, _scale(v.C, np.full(len(lo), -1.0)), v.rem, v.E)
    if op in FNS:  # (``mp``: the node's attrs, as the bound table's row reads them)
        return w.fn(op, ins[0], lo, hi, mp)
    if op in LIN:
        return _lin(w, op, ins, mp, lo, hi)
    if op == "batch_norm" and any(c is None for c in cw[1:]):  # (data statistics)
        return bn_data(w, ins[0], ins[1:], shapes[0], lo, hi, mp)
    if op == "batch_norm":
        return _batch_norm(w, ins[0], cw[1:], shapes[0], lo, hi, mp)  # (mp: its attributes)
    if op == "matmul" and mp is None:  # two data operands: ``Ctx.mul`` per product, then "dot"
        ia, ib, n = matmul_pairs(*shapes)
        a, b = ins
        P = prod(w, a, b, ia, ib, *prod_range(a.lo[ia], a.hi[ia], b.lo[ib], b.hi[ib]))
        return _dot(w, P, sum_map(len(lo), n), lo, hi)
    if op in ("matmul", "conv2d"):  # (conv2d: the kernel is cw[1], the input read as data)
        return _dot(w, ins[op == "matmul" and cw[0] is not None], mp, lo, hi)
    if op == "avg_pool2d":
        return _avg(w, ins[0], *mp, lo, hi)
    if op in ("max", "max_pool2d"):  # (max: a reduction, its groups as windows, no padding)
        # the runtime pads with -inf: NaN in a format without infinities (float8_e4m3fn), and
        # max(NaN, x) is NaN, so no finite error there (both columns certified ~0 before)
        require(w.fmt.has_inf or not mp[1], f"max_pool2d with padding: -inf has no value in {w.fmt.name}")
        return maxima(ins[0], mp[0], lo, hi)
    require(len(ins) == 2, f"{op}: two operands expected")
    ia, ib = _bcast(shapes)
    a, b = ins
    if op in ("maximum", "minimum"):
        return maxlike(op, a, b, ia, ib, lo, hi)
    if op in ("add", "sub"):
        return w.sum2(a, b, ia, ib, 1.0 if op == "add" else -1.0, lo, hi)
    if op == "mul" and (cw[1] is None or cw[0] is not None):  # data x data (``Ctx.mul``)
        return prod(w, a, b, ia, ib, lo, hi)
    if op == "div" and (cw[1] is None or cw[0] is not None):  # a data divisor (``Ctx.div``)
        return quot(w, a, b, ia, ib, lo, hi)
    c = cw[1].ravel()[ib]
    dc = w.cast_err(c)
    if op == "mul":  # "one", plus the constant's own cast error twice (``_linear``'s extra)
        ac = np.abs(c)
        mag = _up(np.maximum(np.abs(a.lo), np.abs(a.hi))[ia] + a.E[ia], 1)
        extra = _up(2 * dc * mag, 1)
        return w.one(lo, hi, _scale(_rows(a.C, ia), c), _up(_charge(ac * a.E[ia], 1) + extra, 1),
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
    return w.make(lo, hi, _scale(_rows(a.C, ia), c, np.divide), local, _up(a.rem[ia] * inv, 1))


def _lin(w: _Walk, op: str, ins: list[_V], mp: Any, lo, hi) -> _V:
    """A linear node by its exact-column kind (``Ctx.lin``): "exact" copies each output's one
    element (``fast_select.copy``); "dot" (sum: unit weights, exact in every format) is ``_dot``;
    "avg" (mean) is ``_avg``."""
    kind = LINEAR[op]
    if kind == "dot":
        return _dot(w, ins[0], mp, lo, hi)
    if kind == "avg":
        return _avg(w, ins[0], *mp, lo, hi)
    return copy(ins, mp, lo, hi)


def _batch_norm(w: _Walk, x: _V, cw: list[np.ndarray], shape: tuple[int, ...], lo, hi,
                attrs: dict[str, Any]) -> _V:
    """``errorbound._batch_norm``'s rule: per element of channel ch, fl(fl(fl(x~ - mean) s~) + b),
    s~ the channel's scale (``bn_scale``: the exact column's own Ctx steps, once per channel, its
    range [sl, sh] and error Es read outward). Three steps, as there: "one" (sub a constant), the
    product d~ s~ - d s = s~ e_d + d e_s + delta (``Ctx.mul``: s~'s hull mid +- rad times e_d, d's
    magnitude times Es, u |d~||s~| + eta), "one" (add a constant, on the node's range)."""
    mean, var, wt, b = (c.ravel() for c in cw)
    q = w.q
    cst = [[q.const(Q(float(t)), q.cast_err(Q(float(t)))) for t in c] for c in (var, wt)]
    sv = bn_scale(q, *cst, attrs)
    sl = np.array([float_below(v.lo) for v in sv])
    sh, Es = np.array([_hi(v.hi) for v in sv]), np.array([_hi(v.E) for v in sv])
    require(len(shape) >= 2, "batch_norm: no channel axis")
    m, inner = len(lo), int(np.prod(shape[2:]))
    ch = (np.arange(m) // inner) % shape[1]
    # d = x - mean: a real range outward (one rounding each end), then the "sub" row
    mu, dmu = mean[ch], w.cast_err(mean)[ch]
    dl, dh = x.lo - mu, x.hi - mu
    dl, dh = dl - _charge(np.abs(dl), 1), dh + _charge(np.abs(dh), 1)
    Ein = x.E + dmu
    d = w.one(dl, dh, x.C, _charge(Ein, 2), _up(x.rem + dmu, 1), Ein, False)
    # p = d s: the product's real range (four outward products), then ``Ctx.mul``'s terms
    s0, s1, es = sl[ch], sh[ch], Es[ch]
    pl, ph = prod_range(d.lo, d.hi, s0, s1)
    mid, rad = _midrad(*_float_hull(s0, s1, es))  # (s~'s hull, outward)
    magd = _up(np.maximum(np.abs(d.lo), np.abs(d.hi)) + d.E, 1)
    mags = _up(np.maximum(np.abs(s0), np.abs(s1)) + es, 1)
    prod = _up(magd * mags, 1)
    w.fits(prod, "a product")
    local = _up(rad * d.E + np.abs(mid) * d.rem + _charge(np.abs(mid) * d.E, 1)
                + np.maximum(np.abs(d.lo), np.abs(d.hi)) * es + w.u * prod + w.eta, 7)
    p = w.make(pl, ph, _scale(d.C, mid), local)
    # y = p + b on the node's own range: the "add" row
    db = w.cast_err(b)[ch]
    Ein = p.E + db
    return w.one(lo, hi, p.C, _charge(Ein, 2), _up(p.rem + db, 1), Ein, False)


def _vec(M: _Mat, v: np.ndarray) -> np.ndarray:
    """M v (a sum of <= ``_terms(M)`` products per output)."""
    return M.rmul(v[None])[0]


def _dot(w: _Walk, x: _V, M: _Mat, lo, hi) -> _V:
    """"dot" (matmul, conv2d): output j = sum_i M_ji x_i, M the node's exact map over x's elements
    (the constant's floats), summed in any order: errs by <= gamma_n S + 4 n eta, n the most terms
    of an output, S = sum |M_ji| (max|x_i| + E_i) (``dot_error``'s first bound) or the sign-split
    one (``_split``), plus the constant's cast error times 1 + max(1, the rule's factor)
    (``_linear``'s extra)."""
    nr = _terms(M)
    n = int(nr.max(initial=1))
    aM, dM = M.map(np.abs), M.map(w.cast_err)
    # the computed M C is within gamma_n |M||C| of the exact one: its sources' share gamma_n |M| E;
    # plus <= n 2^-1074 per coefficient on underflow, so <= n 2^-1074 sum L per element: < TINY
    require(n * float(w.L.sum()) < 2.0 ** 70, "error bounds too large")
    C, charge, rem = _apply(M, x.C), _charge(_vec(aM, x.E), n), _up(_vec(aM, x.rem), n)
    mag = _up(np.maximum(np.abs(x.lo), np.abs(x.hi)) + x.E, 1)
    S = _up(_vec(aM, mag), n)
    g = w.per(nr, w.q.gamma)  # (each output's own n, as the exact column's; n u < 1 required)
    # the float run's weights fl(W), |fl(W)| <= |W| + dW, raise S, M and each s_j by <= D = sum dW
    # mag: gamma_n S by gamma_n D, ``_split`` by (u + n u (1 + u))/(1 - n u) D (c1 D + c2 n D); D
    # once more for (fl(W) - W) x~. (Both factors exceed 1 where n u > 1/2: fp8 from n = 8.)
    has = bool(np.any(dM.vals if dM.sparse else dM.D))
    D = _up(_vec(dM, mag), n) if has else np.zeros_like(S)
    w.fits(_up((S + D) * (1 + g), 3), "a dot product")
    local = np.minimum(_up(g * S + 4 * nr * w.eta, 3), _split(w, M, x, mag, S, nr))
    if has:
        u = w.q.u
        local = _up(local + w.per(nr, lambda k: 1 + max(1, (u + k * u * (1 + u)) / (1 - k * u))) * D, 2)
    return w.make(lo, hi, C, _up(local + charge, 1), rem)


def _split(w: _Walk, M: _Mat, x: _V, mag: np.ndarray, S: np.ndarray, nr: np.ndarray) -> np.ndarray:
    """``dot_error``'s second bound, (u S + u (1 + u) K + u k^2 eta + 2 k eta) / (1 - k u), k = nr
    (each output's terms), K = min(M, S) + sum_j min(M, s_j), M = max(P, N), s_j = S - (the j - 1
    smallest leaf bounds |w_i| mag_i), j = 1..k-1 (its argument there): every sum rounded up, the
    leaves' lower bounds and their cumulative sums (what s_j subtracts) rounded down."""
    n = int(nr.max())
    pa = _up(np.maximum(0.0, x.hi + x.E + _charge(np.abs(x.hi) + x.E, 1)), 1)  # max(0, hi + E)
    pb = _up(np.maximum(0.0, x.E - x.lo + _charge(np.abs(x.lo) + x.E, 1)), 1)  # max(0, E - lo)
    Wp, Wn = M.map(lambda v: np.maximum(v, 0.0)), M.map(lambda v: -np.minimum(v, 0.0))
    MM = np.maximum(_up(_vec(Wp, pa) + _vec(Wn, pb), n + 1), _up(_vec(Wp, pb) + _vec(Wn, pa), n + 1))
    # the leaves per output (n, outputs): lower bounds of |w| mag of its nonzero weights, ascending
    # (inf past an output's own: sorted last, then unused), cumulative, rounded down
    if M.sparse:
        lf = np.full((n, M.shape[0]), np.inf)
        on = M.vals != 0
        r, c = M.rows[on], M.cols[on]
        lf[np.arange(len(r)) - np.searchsorted(r, r), r] = np.nextafter(np.abs(M.vals[on]) * mag[c], 0.0)
    else:
        lf = np.where(M.D != 0, np.nextafter(np.abs(M.D) * mag, 0.0), np.inf).T
    lf = np.sort(lf, axis=0)[:max(n - 2, 0)]
    cs = np.cumsum(np.where(np.isinf(lf), 0.0, lf), axis=0)
    cs = np.concatenate([np.zeros((min(1, n - 1), len(S))), np.maximum(0.0, cs - _charge(cs, n + 1))])
    D = S - cs + _charge(S, 1)  # >= s_j = S - (the j - 1 smallest leaves), j = 1..k-1
    use = np.arange(len(D))[:, None] < nr - 1
    K = _up(np.minimum(MM, S) + np.where(use, np.minimum(MM, D), 0.0).sum(axis=0), n + 1)
    u, eta = w.q.u, w.q.eta
    c1, c2 = w.per(nr, lambda k: u / (1 - k * u)), w.per(nr, lambda k: u * (1 + u) / (1 - k * u))
    c3 = w.per(nr, lambda k: (u * k * k * eta + 2 * k * eta) / (1 - k * u))
    return _up(c1 * S + c2 * K + c3, 4)


def _avg(w: _Walk, x: _V, P: _Mat, div: np.ndarray, lo, hi) -> _V:
    """"avg" (``Ctx.lin``): y~ = fl(S~ / fl(div)), S~ the float sum of the window's <= n terms
    (gamma_n Smag + 4 n eta off, Smag = sum (max|x| + E)), fl(div) >= fn = div - dn > 0 (dn its
    cast error), so |y~ - y| <= es/fn + Smag dn/(fn div) + u (Smag + es)/fn + eta besides the
    form. The form (P C)/div: a sum of <= n coefficients, then a quotient: (n + 1) roundings."""
    nr = _terms(P)  # (each window's members)
    n = int(nr.max())
    require(bool((div <= 2.0 ** w.fmt.precision).all()), f"a divisor not exact in {w.fmt.name}")
    dn = w.cast_err(div)
    fn = np.nextafter(div - dn, 0.0)
    require(bool((fn > 0).all()), "the divisor rounds to 0")
    Sm = _up(_vec(P, _up(np.maximum(np.abs(x.lo), np.abs(x.hi)) + x.E, 1)), n)
    es = _up(w.per(nr, w.q.gamma) * Sm + 4 * nr * w.eta, 2)
    # the window's float sum must fit too (its partial sums are <= Sm + es), not only the
    # quotient: fp16 avg_pool 3x3 of 30000s sums to inf, and inf / 9 = inf (``Ctx.lin`` likewise)
    w.fits(_up(Sm + es, 1), "a window's sum")
    out = _up((Sm + es) / fn, 2)
    w.fits(out, "an average")
    local = _up(es / fn + Sm * dn / (fn * div) + w.u * out + w.eta, 6)
    charge = _charge(_vec(P, x.E) / div, n + 1)
    return w.make(lo, hi, _scale(_apply(P, x.C), div, np.divide), _up(local + charge, 1),
                  _up(_vec(P, x.rem) / div, n + 1))


def propagate(stmt: dict[str, Any], trusted: dict[str, int] | None = None) -> list[list[Fraction]]:
    """``errorbound.propagate`` for a "column": "fast" statement (the caller has checked its model
    fingerprint and box): the bound of every element of every IR node, then of the outputs."""
    ir = stmt["graph"]
    why = supported(ir)
    require(why is None, f"fast column: {why}")
    require(stmt.get("ranges") == "fast", "the fast column takes the fast engine's ranges (\"fast\")")
    bg, fg, forms, consts, maps, ninf = _compiled(ir, stmt["model"])
    box = [(rational(a), rational(b)) for a, b in stmt["input_box"]]
    require(len(box) == bg.n_in, f"box has {len(box)} intervals for {bg.n_in} inputs")
    blo, bhi = fast_engine.boxes([[a for a, _ in box]], [[b for _, b in box]])
    # (a graph with a normalising node: the exact IBP's argument bounds clip this engine's, as the
    # exact column's fast ranges (``tight_args``): layer norm's facts, softmax's sums >= 1)
    clip = fast_engine.ibp_clip(bg, box) if any(n["op"] in NORMS for n in ir["nodes"]) else None
    st = fast_engine.forward(fg, blo, bhi, "crown", clip=clip)
    why = fast_engine.undefined(st)[1]
    require(why is None, f"the real network is not defined everywhere on the box: {why}")
    if trusted is not None:
        from .errorbound import FAST_TRUST
        from .graph_vnn import LIBM, LIBM_ROWS

        trusted[FAST_TRUST] = 1
        if any(n["op"] in LIBM_ROWS for n in ir["nodes"]):
            trusted[LIBM] = 1

    def ranges(name: Any) -> tuple[np.ndarray, np.ndarray]:  # IBP of the forms met with CROWN's rows
        F, at, _ = forms[name]
        lo, hi = (x[0] for x in F.bounds(st.L, st.U, st.vmax))
        for k in {int(k) for k in at[:, 0] if k >= 0}:
            sel = at[:, 0] == k
            al, au = st.arg[k]
            # (fmax / fmin: a NaN end is no information, -inf / +inf, never a bound: each side is
            # a valid bound or NaN, so the meet of the valid ones holds; the engine's own ends are
            # never NaN (``_safe``, ``_State.push``), this keeps it so should one ever be)
            lo[sel] = np.fmax(lo[sel], al[0, at[sel, 1]])
            hi[sel] = np.fmin(hi[sel], au[0, at[sel, 1]])
        require(bool(np.isfinite(lo).all() and np.isfinite(hi).all()), f"{name}: an unbounded range")
        return lo, np.maximum(lo, hi)

    w = _Walk(stmt)
    # (-inf is exact in a format with infinities; without, no value: as the exact column)
    require(w.fmt.has_inf or not any(n in ninf for n in ir["constants"]),
            f"-inf has no value in {w.fmt.name}")
    # a key read by value (``KEY``, folded selections too) must be what the float run reads: it
    # casts a float constant to the format first (fp8 rounds index 17 to 16, fp16 2049 to 2048;
    # fp16 a condition 1e-30 to 0), so a float key's entries must be values of the format (a
    # folded key reads float constants only: ``supported``); integer and bool constants are not
    # cast. (The exact column reads such a key as data, which its row refuses.)
    ints = {n for n, a in ir["constants"].items() if str(a["dtype"]) not in FLOAT_DTYPES}
    for node in ir["nodes"]:
        if node["op"] in KEY and (key := node["inputs"][KEY[node["op"]]]) not in ints:
            require(not w.cast_err(consts[key].ravel()).any(),
                    f"{node['op']}: a float key {key!r} that is not exact in {w.fmt.name}")
    # an integer constant read as data meets a float array as binary64 (numpy's promotion) and the
    # result is rounded to the format: with values of the format every such operation is the
    # format's own (53 >= 2p + 2: double rounding innocuous), as the exact column requires (audit27)
    read = {n for node in ir["nodes"] for i, n in enumerate(node["inputs"]) if KEY.get(node["op"]) != i}
    for name in ints & read:
        require(not w.cast_err(consts[name].ravel()).any(),
                f"integer constant {name!r} holds a value that is not one of {w.fmt.name}")
    vals: dict[str, _V] = {}
    last = {n: i for i, node in enumerate(ir["nodes"]) for n in node["inputs"]}
    k = 0
    for i in ir["inputs"]:
        m = int(np.prod(forms[i["name"]][2]))
        lo, hi = blo[0, k:k + m], bhi[0, k:k + m]
        k += m
        mag = np.maximum(np.abs(lo), np.abs(hi))
        local = np.zeros(m)
        if not stmt["input_exact"]:
            w.fits(mag, "an input")
            # a point input that is a value of the format (its rationals read exactly) is not rounded
            pt = np.array([float(a) if a == b and Fraction(float(a)) == a else np.nan
                           for a, b in box[k - m:k]])
            charged = w.cast_err(np.nan_to_num(pt)) + np.isnan(pt) != 0
            local = np.where(charged, _up(w.u * mag + w.eta, 2), 0.0)
        vals[i["name"]] = w.make(lo, hi, {}, local)
    for name, c in consts.items():
        e = w.cast_err(c.ravel())
        vals[name] = _V(c.ravel(), c.ravel(), {}, e, e)
    steps = []
    for t, node in enumerate(ir["nodes"]):
        tick()
        ins = [vals[n] for n in node["inputs"]]
        shapes = [tuple(forms[n][2]) if n in forms else consts[n].shape for n in node["inputs"]]
        if node["output"] in consts:  # (a selection of constants, folded by ``_compiled``)
            steps.append([Q(x) for x in vals[node["output"]].E.tolist()])
            continue
        lo, hi = ranges(node["output"])
        if node["op"] in NORMS:  # (the exact column's entry, read back: ``fast_norms``)
            at = dict(maps[t])
            if node["op"] == "layer_norm":  # each row's var + eps lower bound (``errorbound``'s)
                at["var+eps"] = [Q(x) for x in ranges((node["output"], "var"))[0].tolist()]
            v = exact_row(w, node["op"], ins, shapes, at, lo, hi, [consts.get(n) for n in node["inputs"]],
                          [ninf.get(n) for n in node["inputs"]])
        else:
            v = _node(w, node["op"], ins, shapes, lo, hi, [consts[n] if n in consts else None
                                                       for n in node["inputs"]], maps.get(t))
        require(len(v.E) == len(lo), f"{node['op']}: {len(v.E)} elements for {len(lo)}")
        require(bool(np.isfinite(v.E).all()), f"{node['op']}: a non-finite error bound")
        vals[node["output"]] = v
        steps.append([Q(x) for x in v.E.tolist()])
        for n in set(node["inputs"]):  # (a value no later node reads: its form is freed; once,
            # though a node read it twice: add(x, x) raised KeyError, a valid statement refused)
            if last.get(n) == t and n not in ir["outputs"] and n not in consts:
                del vals[n]
    steps.append([Q(x) for o in ir["outputs"] for x in vals[o].E.tolist()])
    return steps
