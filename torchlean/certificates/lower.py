"""Lowering of the graph IR to one bound graph (standard library only).

A ``BoundGraph`` is a DAG over scalar *variables* (global integer ids, one contiguous block per
node). Node kinds:

- ``input``: the graph's float inputs, flattened and concatenated (block 0);
- ``const``: a rational interval [lo, hi] per element, for constants whose exact fold is
  irrational (e.g. 1/sqrt(running_var + eps)); exact folds stay ``Fraction``s and never make nodes;
- ``fn``: y_i = f(z_i), f a row of ``functions.FUNCTIONS`` with attrs;
- ``mul``: y_i = x_i · w_i (McCormick planes);
- ``max``: y_i = max of a group of forms (max_pool2d, max, maximum, minimum);
- ``lin``: y_i = a form, exactly (a linear intermediate value), only where ``lower(wide=True)``
  asks for them: see ``wide_operand``.

Every argument z_i, x_i, w_i or group member is an ``Aff``: a sparse exact affine form over
variables of earlier nodes (one or more parents: residual adds, concat and values used twice need
nothing special). So the "Linear" nodes of the design are the forms themselves: every linear
primitive (add, matmul by a constant, conv2d, pooling by averaging, reshape, ...) composes exactly
into the forms of its consumers, and the graph's outputs are forms too.

The lowering walks the IR once with one row per primitive in ``ROWS``; a value is a ``Tensor``
(shape and a row-major list whose elements are exact ``Fraction``s for constants or ``Aff``s for
data). Each row computes exactly the spec's meaning (``torchlean/spec``) on such elements:
constants fold exactly; a nonlinearity of data allocates a node. Primitives or uses without a row
raise ``Unsupported`` naming why (``NO_ROW`` for whole primitives). The rows that read many
elements per output (matmul, conv2d, pooling) are in ``lower_linear.py``, the row-major index
helpers and the -inf constant in ``lower_index.py``.
"""

from __future__ import annotations

import base64
import itertools
import math
import struct
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from .bound_graph import (
    ONE,
    Aff,
    BoundGraph,
    Elem,
    Lowerer,
    Node,
    Tensor,
    Unsupported,
    _size,
    _strides,
    _sum,
    add,
    as_aff,
    cap,
    exact_floats,
    fingerprint,
    neg,
    scale,
    sqrt_up,
)
from .core import tick
from .lower_index import NEG_INF, TAKES_NEG_INF, Row, _flat, _positions, bcast_shape, broadcast, reduce_groups
from .lower_linear import _conv2d, _matmul, _pool, wide_operand

Q = Fraction
__all__ = ["NEG_INF", "NO_ROW", "ROWS", "Aff", "BoundGraph", "Node", "fingerprint", "lower"]

# -- rows ------------------------------------------------------------------------------------------


def _binary(fn: Callable[[Lowerer, list[Elem], list[Elem]], list[Elem]]) -> Row:
    def row(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
        a, b = ins
        shape = bcast_shape(a.shape, b.shape)
        return Tensor(shape, fn(L, broadcast(a, shape), broadcast(b, shape)))
    return row


def _unary_fn(name: str, attrs: bool = True) -> Row:
    """The row of ``name`` on every element (with the node's attrs unless ``attrs`` is False: the
    gelu and silu rows take none)."""
    def row(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
        return Tensor(ins[0].shape, L.fn(name, ins[0].v, **(at if attrs else {})))
    return row


def _recip(L: Lowerer, xs: list[Elem]) -> list[Elem]:
    """1/x per element (a constant folds exactly in ``Lowerer.fn``: the row's value is 1/x)."""
    if any(isinstance(x, Fraction) and not x for x in xs):
        raise Unsupported("division by a zero constant")
    return L.fn("reciprocal", xs)


#: the largest |integer exponent| ``_pow`` lowers (exact powers of 53-bit bounds: ~217K bits)
MAX_IPOW = 1 << 12


def _pow(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    x, e = ins[0].v, float(at.get("exponent", 2))
    if e.is_integer():
        n = int(e)
        # (a chain of log2|n| exact squarings: 2^53 + 1 made numbers of 2^53 bits, past any deadline)
        if abs(n) > MAX_IPOW:
            raise Unsupported(f"pow: integer exponent {n} beyond {MAX_IPOW} (exact powers too large)")
        out = _ipow(L, x, abs(n))
        return Tensor(ins[0].shape, _recip(L, out) if n < 0 else out)
    if e == 0.5:
        return Tensor(ins[0].shape, L.fn("sqrt", x))
    c = Q(e)  # x^c = exp(c log x) for x > 0 (the spec's domain for non-integer c)
    return Tensor(ins[0].shape, L.fn("exp", [scale(v, c) for v in L.fn("log", x)]))


def _ipow(L: Lowerer, x: list[Elem], n: int) -> list[Elem]:
    if n == 0:
        return [Q(1)] * len(x)
    if n == 1:
        return list(x)
    half = L.fn("square", _ipow(L, x, n // 2))
    return L.mul(half, x) if n % 2 else half


def _reduce(kind: str) -> Row:
    def row(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
        shape, groups = reduce_groups(ins[0].shape, at.get("axes"), bool(at.get("keepdims", False)))
        x = ins[0].v
        if kind == "max":
            return Tensor(shape, L.max([[x[i] for i in g] for g in groups]))
        vals = [_sum([x[i] for i in g]) for g in groups]
        if kind == "mean":
            vals = [scale(v, Q(1, len(g))) for v, g in zip(vals, groups)]
        return Tensor(shape, vals)
    return row


def _reshape(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    x = ins[0]
    target = [int(d) for d in at.get("shape", ())]
    if -1 in target:
        known = _size(tuple(d for d in target if d != -1))
        target = [len(x.v) // known if d == -1 else d for d in target]
    return Tensor(tuple(target), x.v)


def _flatten(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    x = ins[0]
    if not x.shape:
        return Tensor((1,), x.v)
    s = int(at.get("start_dim", 1)) % len(x.shape)
    return Tensor((*x.shape[:s], _size(x.shape[s:])), x.v)


def _transpose(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    x = ins[0]
    nd = len(x.shape)
    axes = tuple(reversed(range(nd))) if at.get("axes") is None else tuple(a % nd for a in at["axes"])
    st = _strides(x.shape)
    shape = tuple(x.shape[a] for a in axes)
    pst = [st[a] for a in axes]
    return Tensor(shape, [x.v[_flat(p, pst)] for p in _positions(shape)])


def _broadcast_to(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    shape = tuple(int(d) for d in at["shape"])
    return Tensor(shape, broadcast(ins[0], shape))


def _concat(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    ax = int(at.get("axis", 0)) % len(ins[0].shape)
    cap(sum(len(t.v) for t in ins))
    outer = _size(ins[0].shape[:ax])
    out: list[Elem] = []
    for o in range(outer):
        for t in ins:
            inner = _size(t.shape[ax:])
            out.extend(t.v[o * inner:(o + 1) * inner])
    shape = (*ins[0].shape[:ax], sum(t.shape[ax] for t in ins), *ins[0].shape[ax + 1:])
    return Tensor(shape, out)


def _slice(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    x = ins[0]
    index = list(at.get("index", ()))
    ranges = [range(*slice(*index[i]).indices(d)) if i < len(index) else range(d)
              for i, d in enumerate(x.shape)]
    st = _strides(x.shape)
    return Tensor(tuple(len(r) for r in ranges), [x.v[_flat(p, st)] for p in itertools.product(*ranges)])


def _int_consts(t: Tensor, what: str) -> list[int]:
    if not t.const():
        raise Unsupported(f"{what} must be constant")
    return [int(v) for v in t.v]


def _in_range(k: int, n: int, what: str) -> int:
    """A numpy index into a length-n axis (negative counts from the end); out of range refused,
    as numpy (and so the spec's meaning) refuses it."""
    if not -n <= k < n:
        raise Unsupported(f"{what} index {k} out of range for size {n}")
    return k % n


def _gather(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    x, idx = ins
    ix = _int_consts(idx, "gather indices")
    ax = int(at.get("axis", -1)) % len(x.shape)
    st = _strides(x.shape)
    out = []
    for p, k in zip(_positions(idx.shape), ix):
        q = list(p)
        q[ax] = _in_range(k, x.shape[ax], "gather")
        out.append(x.v[_flat(q, st)])
    return Tensor(idx.shape, out)


def _embedding(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    w, idx = ins
    d = w.shape[1]
    cap(len(idx.v) * d)
    out = []
    for k in _int_consts(idx, "embedding indices"):
        k = _in_range(k, w.shape[0], "embedding")
        out.extend(w.v[k * d:(k + 1) * d])
    return Tensor((*idx.shape, d), out)


def _where(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    c, a, b = ins
    if not c.const() or any(m is NEG_INF for m in c.v):
        raise Unsupported("where with a data-dependent condition (not continuous)")
    shape = bcast_shape(c.shape, a.shape, b.shape)
    trip = zip(broadcast(c, shape), broadcast(a, shape), broadcast(b, shape))
    return Tensor(shape, [p if m else q for m, p, q in trip])



def _softmax(log: bool) -> Row:
    """softmax_i = 1 / sum_j exp(x_j - x_i); log_softmax_i = -log sum_j exp(x_j - x_i): the same
    reals as the spec's formulas (divide numerator and denominator by exp(x_i)); the j = i term
    folds to the constant 1, so the sum is >= 1 and the reciprocal / log stay in their domains."""
    def row(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
        x = ins[0]
        _, groups = reduce_groups(x.shape, int(at.get("axis", -1)), True)
        diffs, where = [], []
        for g in groups:
            fin = [j for j in g if x.v[j] is not NEG_INF]  # a -inf entry: exp(-inf - x_i) = 0
            if len(fin) < len(g) and (log or not fin):
                raise Unsupported("-inf in a log_softmax, or a softmax group with every entry -inf")
            for i in fin:  # (a -inf entry's own output is exactly 0: out's default)
                where.append(i)
                diffs.append([add(x.v[j], neg(x.v[i])) if j != i else Q(0) for j in fin])
        exps = iter(L.fn("exp", [e for row_ in diffs for e in row_]))
        sums = [_sum([next(exps) for _ in row_]) for row_ in diffs]
        vals = [neg(v) for v in L.fn("log", sums)] if log else L.fn("reciprocal", sums)
        out: list[Elem] = [Q(0)] * len(x.v)
        for i, v in zip(where, vals):
            out[i] = v
        return Tensor(x.shape, out)
    return row


def _layer_norm(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    x, w, b = ins
    k = int(at.get("normalized_ndim", 1))
    # the spec's shape rule (``nnops._layer_norm_rule``): 1 <= k <= ndim, weight and bias of the
    # normalised shape. Without it a weight (2, n) on x (2, n) was read here per row (as the
    # runtime broadcasts it) but by both error columns as w[i] for every row: a row scaled by
    # 1000 certified with its neighbour's 1e-3 (eps 2.7e-7, a float32 run off by 6.3e-4)
    if not 1 <= k <= len(x.shape) or w.shape != x.shape[len(x.shape) - k:] or b.shape != w.shape:
        raise Unsupported(f"layer_norm: weight {w.shape} and bias {b.shape} must have the normalized "
                          f"shape of input {x.shape} (normalized_ndim {k})")
    n = _size(x.shape[len(x.shape) - k:])
    eps = Q(at.get("eps", 1e-5))
    m = len(x.v) // n
    xc: list[Elem] = []
    for r in range(m):
        mu = scale(_sum(x.v[r * n:(r + 1) * n]), Q(1, n))
        xc.extend(add(v, neg(mu)) for v in x.v[r * n:(r + 1) * n])
    sq = L.fn("square", xc)
    var = [add(scale(_sum(sq[r * n:(r + 1) * n]), Q(1, n)), eps) for r in range(m)]
    inv = L.fn("reciprocal", L.fn("sqrt", var))
    # |xc_i|/sqrt(var + eps) <= sqrt(n - 1) for every real x (Cauchy-Schwarz on sum_j xc_j = 0:
    # xc_i^2 <= (n - 1)/n sum_j xc_j^2 = (n - 1) var; eps > 0 only shrinks it): the node says so
    # and each row's norm: sum_i y_i^2 = n var/(var + eps) <= n (the engine's "ball" rule)
    # (eps = 0: the facts would bound y where var = 0 too, where every run's 0/0 is NaN: audit33's
    # bounds of a box around a constant row were finite; without them the reciprocal row decides)
    facts = {"within": sqrt_up(n - 1), "ball": (n, sqrt_up(n))} if eps > 0 else None
    if any(isinstance(v, Fraction) for v in xc) or any(isinstance(v, Fraction) for v in inv):
        facts = None  # (a constant row: no product node, or a partial one; no fact needed)
    y = L.mul(L.mul(xc, [inv[i // n] for i in range(len(xc))], facts), w.v * m)
    return Tensor(x.shape, [add(v, b.v[i % n]) for i, v in enumerate(y)], var)


def _batch_norm(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    x, mean, var, w, b = ins
    eps = Q(at.get("eps", 1e-5))
    inv = L.fn("reciprocal", L.fn("sqrt", [add(v, eps) for v in var.v]))
    scl = L.mul(inv, w.v)
    c = x.shape[1]
    inner = _size(x.shape[2:])
    chans = [(i // inner) % c for i in range(len(x.v))]
    prods = L.mul([add(v, neg(mean.v[ch])) for v, ch in zip(x.v, chans)], [scl[ch] for ch in chans])
    return Tensor(x.shape, [add(v, b.v[ch]) for v, ch in zip(prods, chans)])


def _mul_row(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    a, b = ins
    if a is b:  # x * x of one IR value is a square (tight), not a McCormick product
        return Tensor(a.shape, L.fn("square", a.v))
    if a.const() != b.const():  # a scaling; broadcasting may read each data element many times
        n = _size(bcast_shape(a.shape, b.shape))
        ins = [t if t.const() else wide_operand(L, t, n // len(t.v), n, 1) for t in ins]
    return _binary(lambda L_, p, q: L_.mul(p, q))(L, ins, at)


ROWS: dict[str, Row] = {
    "add": _binary(lambda L, a, b: [add(p, q) for p, q in zip(a, b)]),
    "sub": _binary(lambda L, a, b: [add(p, neg(q)) for p, q in zip(a, b)]),
    "mul": _mul_row,
    "div": _binary(lambda L, a, b: L.mul(a, _recip(L, b))),
    "neg": lambda L, ins, at: Tensor(ins[0].shape, [neg(v) for v in ins[0].v]),
    "pow": _pow,
    "matmul": _matmul,
    "broadcast_to": _broadcast_to,
    "sum": _reduce("sum"),
    "mean": _reduce("mean"),
    "max": _reduce("max"),
    "reshape": _reshape,
    "flatten": _flatten,
    # a cast's meaning over the reals is the identity (its rounding: the error column's entry)
    "cast": lambda L, ins, at: Tensor(ins[0].shape, ins[0].v),
    "transpose": _transpose,
    "concat": _concat,
    "slice": _slice,
    "gather": _gather,
    **{name: _unary_fn(name) for name in ("relu", "leaky_relu", "abs", "exp", "log", "sqrt", "tanh",
                                          "erf", "sigmoid", "softplus")},
    **{name: _unary_fn(name, attrs=False) for name in ("gelu", "silu")},
    "maximum": _binary(lambda L, a, b: L.max([[p, q] for p, q in zip(a, b)])),
    # min(p, q) = -max(-p, -q)
    "minimum": _binary(lambda L, a, b: [neg(v) for v in L.max([[neg(p), neg(q)] for p, q in zip(a, b)])]),
    "softmax": _softmax(False),
    "log_softmax": _softmax(True),
    "conv2d": _conv2d,
    "max_pool2d": _pool("max"),
    "avg_pool2d": _pool("avg"),
    "layer_norm": _layer_norm,
    "batch_norm": _batch_norm,
    "where": _where,
    "embedding": _embedding,
}

#: each row's number of inputs (the spec's arity; concat any): a row reads its first inputs only,
#: so a node with more or fewer would mean something the runtime refuses to run
ARITY: dict[str, int | None] = {**dict.fromkeys(ROWS, 1), "concat": None, "layer_norm": 3, "where": 3,
                                "batch_norm": 5, **dict.fromkeys(("add", "sub", "mul", "div", "matmul",
                                "gather", "maximum", "minimum", "conv2d", "embedding"), 2)}

#: the primitives that may take integer constants (int64, bool) only: they select or move elements
#: and never add or multiply them. Any other primitive of integer constants alone is refused: numpy
#: computes it in int64 (or bool), which wraps (2^62 + 2^62 = -2^63) or saturates (True + True =
#: True), while a row folds it exactly (audit33: a sum of two int64 2^62 scaled data by 2^63, the
#: run by -2^63). With one float input numpy computes in float64, whose rounding every claim allows.
INT_ROWS = frozenset({"reshape", "flatten", "transpose", "broadcast_to", "concat", "slice", "gather",
                      "embedding", "where", "max", "maximum", "minimum"})

#: primitives with no row at all, and why (every spec primitive has a row today; partial uses,
#: e.g. ``where`` on a data-dependent mask, raise ``Unsupported`` in their row)
NO_ROW: dict[str, str] = {}


#: struct code and width of each numeric constant dtype (bool masks: one byte each)
_FMT = {"float32": ("f", 4), "float64": ("d", 8), "float16": ("e", 2), "int64": ("q", 8), "bool": ("B", 1)}


def _decode_const(a: dict[str, Any]) -> tuple[tuple[int, ...], list[Any]]:
    """An IR constant (little-endian bytes) as (shape, row-major exact values): bool masks as 0/1
    (``where``), integers and floats exactly, a float's -inf entries as ``NEG_INF`` (a mask value;
    a NaN or +inf is refused)."""
    if a.get("dtype") not in _FMT:
        raise Unsupported(f"constant dtype {a.get('dtype')!r}")
    code, width = _FMT[a["dtype"]]
    raw = base64.b64decode(a["data"])
    shape = tuple(int(d) for d in a["shape"])
    n = cap(_size(shape))
    if len(raw) != n * width:
        raise ValueError("constant byte length does not match its shape")
    vals = struct.unpack(f"<{n}{code}", raw)
    if code in "qB":
        return shape, [Q(int(v != 0)) if code == "B" else Q(v) for v in vals]
    if all(-math.inf < v < math.inf for v in vals):
        return shape, exact_floats(vals)
    if any(v != v or v == math.inf for v in vals):
        raise Unsupported("non-finite weight (NaN or +inf; only -inf, a mask value, is taken)")
    return shape, [NEG_INF if v == -math.inf else Q(v) for v in vals]


def lower(ir: dict[str, Any], values: dict[str, Tensor] | None = None, wide: bool = False) -> BoundGraph:
    """The bound graph of an IR document (``Graph.to_dict()``); weights decoded exactly.
    ``values``, when given, receives every IR value's elements (the error column reads them);
    ``wide``: ``lin`` nodes where composing a linear row's operand costs too much
    (``wide_operand``; only the engines of ``engine.py`` take them)."""
    if not isinstance(ir, dict) or ir.get("format") != "torchlean-ir":
        raise ValueError("not a torchlean-ir document")
    ins = [i for i in ir["inputs"] if not str(i["dtype"]).startswith("float")]
    if ins:
        raise Unsupported(f"non-float graph input {ins[0]['name']!r}")
    # each value named once (as ``Graph.check``): ``values`` keeps a name's last value only, and
    # the error columns read a node's ranges by its output's name (a node rewriting "h" got the
    # later value's ranges: a fast-column epsilon 100x below the run's error was accepted)
    names = [i["name"] for i in ir["inputs"]] + list(ir["constants"]) + [n["output"] for n in ir["nodes"]]
    if len(set(names)) != len(names):
        raise Unsupported("a value name defined twice (an IR names each value once)")
    shapes = [tuple(int(d) for d in i["shape"]) for i in ir["inputs"]]
    n_in = cap(sum(_size(s) for s in shapes))
    L = Lowerer(n_in, wide)
    env: dict[str, Tensor] = {} if values is None else values
    off = 0
    for i, s in zip(ir["inputs"], shapes):
        env[i["name"]] = Tensor(s, [Aff({off + j: ONE}) for j in range(_size(s))])
        off += _size(s)
    ints = set()  # the IR values numpy holds as int64 or bool: integer constants and INT_ROWS of them
    for k, a in ir["constants"].items():
        env[k] = Tensor(*_decode_const(a))
        if a["dtype"] in ("int64", "bool"):
            ints.add(k)
    total = 0
    for node in ir["nodes"]:
        tick()  # (a deadline per node; the cap bounds each node's own work)
        op = node["op"]
        if node["inputs"] and all(n in ints for n in node["inputs"]):
            if op not in INT_ROWS:
                raise Unsupported(f"{op!r} of integer constants only (numpy's int64 wraps; the row is exact)")
            ints.add(node["output"])
        if op not in ROWS:
            raise Unsupported(f"primitive {op!r} has no bound row: {NO_ROW.get(op, 'unknown primitive')}")
        if ARITY[op] not in (None, len(node["inputs"])):
            raise Unsupported(f"{op!r} takes {ARITY[op]} inputs, not {len(node['inputs'])}")
        args = [env[n] for n in node["inputs"]]
        if op not in TAKES_NEG_INF and any(e is NEG_INF for t in args for e in t.v):
            raise Unsupported(f"-inf reaches {op!r} (only where may select it and softmax read it)")
        # the same IR value used twice must stay the same object (mul(x, x) is a square)
        env[node["output"]] = ROWS[op](L, args, dict(node.get("attrs") or {}))
        total = cap(total + len(env[node["output"]].v))
    outs = [env[o] for o in ir["outputs"]]
    if any(e is NEG_INF for t in outs for e in t.v):
        raise Unsupported("-inf in a graph output")
    out_shape = outs[0].shape if len(outs) == 1 else (sum(len(t.v) for t in outs),)
    in_shape = shapes[0] if len(shapes) == 1 else (n_in,)
    return BoundGraph(L.nodes, [as_aff(e) for t in outs for e in t.v], in_shape, out_shape,
                      tuple(sorted(L.conv_hints)))
