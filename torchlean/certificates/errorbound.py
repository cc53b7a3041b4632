"""Certified floating-point error bounds on any graph: the ``errorbound`` certificate and the
rounding-error column of the per-primitive table (``COLUMN``). Standard library only.

Claim: for every input x in the box (each value of ``format`` in it where ``input_exact`` is true;
each real x, the run starting from x rounded to the format, where false: each input's error starts
at u max|x| + eta, a point input's at |fl(x) - x|), the graph run in ``format`` (every IR node one
kernel call of ``runtime/rules*.py``, each of its operations rounded) returns y~ with
|y~_j - y_j(x)| <= epsilon_j, y the real graph (the spec's meaning) on the stored weights. The
checker walks the IR the statement carries: real ranges of every element from the bound table
(``lower.lower`` forms, ``engine.forward`` bounds), then errors node by node, each entry following
the runtime kernel's own operations under fl(a op b) = (a op b)(1 + d) + e, |d| <= u, |e| <= eta
(kernel assumptions: ``floats.ROUNDING_RULES``). An error is a linear form over error sources
(|d_s| <= loc_s); each step's new unknowns (its rounding, slope radii, fixed-point charges) become
one new source, so later signed weights can cancel them; a form may always be collapsed into its
bound. Each entry's argument: TRUST_BOUNDARIES.md, "Floats". Certificate: {"kind": "errorbound",
"statement": S, "digest", "steps": [[bound per element] per IR node]}, S = {format, mode,
kernel_ulps, input_box, input_exact, ranges, graph, model, epsilon}; every step and epsilon must be
>= the recomputed bound.
``ranges`` "fast" (the generator's default above 1,000 nonlinear elements): exact IBP met per
element with the fast engine's CROWN (``fast_engine.tight_args``, numpy, imported only then),
recomputed here, never read from the certificate; the verdict names the float64 model (and libm)
those ranges rest on. ``column`` "fast" (absent: this exact column): the walk in float64 with
outward rounding (``fast_errors.py``, numpy, imported only then), same steps, same verdict marks.
``errorbound-split``: a tree {"split": [d, "v"], "lo", "hi"} | {"box", "steps"} of bisections (lo_d
< v < hi_d, so the halves cover the parent); each leaf is replayed on its box with S's epsilon.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from . import engine, errorforms
from .bound_graph import Aff, Lowerer, Tensor, Unsupported, _size, arg_rows, sqrt_up
from .core import Verdict, box_leaves, checker, digest, rational, require, tick
from .enclosures import DomainError
from .errorctx import ONE, ZERO, Ctx, V, _g, _up, slope_range
from .errorkern import FNS, Exact, kernel
from .errornorm import normalise, softmax_ratio, softmax_relational, var_floor
from .functions import FUNCTIONS, GELU_A, GELU_C  # (spec/constants.py's, read exactly)
from .lower import NEG_INF, ROWS, bcast_shape, broadcast, lower, reduce_groups
from .lower_linear import _pair
from .rounding import Format, get_format

Q = Fraction
__all__ = ["COLUMN", "LINEAR", "NO_ENTRY", "Ctx", "V", "_up", "apply", "model_id", "propagate", "slope_range"]

# -- the column: one entry per runtime primitive -------------------------------------------------

def _gelu(ctx: Ctx, p: Fraction, q: Fraction, Fm: Fraction, **_: Any) -> Fraction:
    """0.5 * x * (1 + tanh(C * (x + A * (x * x * x)))) replayed on the float input's hull."""
    x = ctx.point(p, q)
    x3 = ctx.mul(ctx.mul(x, x), x)
    v = ctx.mul(ctx.fl_const(GELU_C), ctx.add(x, ctx.mul(ctx.fl_const(GELU_A), x3)))
    t = ctx.fn("tanh", v, _KERNEL)
    return ctx.mul(ctx.mul(ctx.const(Q(1, 2)), x), ctx.add(ctx.const(ONE), t)).E


#: the selections whose input at this position is read by value (a condition, indices), never
#: as data (``fast_select.KEY``)
KEY = {"where": 0, "gather": 1, "embedding": 1}
_KERNEL = lambda c, p, q, m, **_: c.kern(m)  # noqa: E731
_EXACT = lambda c, p, q, m, **_: ZERO  # noqa: E731
#: linear primitives, by how the kernel rounds their outputs (structure from the bound table's row)
LINEAR = {
    **dict.fromkeys(("neg", "reshape", "flatten", "transpose", "concat", "slice", "gather", "embedding",
                     "where", "broadcast_to", "max", "maximum", "minimum", "max_pool2d"), "exact"),
    **dict.fromkeys(("add", "sub", "mul"), "one"),
    **dict.fromkeys(("matmul", "conv2d", "sum"), "dot"),
    **dict.fromkeys(("mean", "avg_pool2d"), "avg"),
}
#: primitives of the runtime with no entry, and why (every primitive has one today; partial uses
#: raise Unsupported as in the bound table: data-dependent gather/embedding indices or where masks)
NO_ENTRY: dict[str, str] = {}


def _linear(ctx: Ctx, op: str, ins: list[list[V]], shapes: list[tuple[int, ...]], at: dict[str, Any],
            rng: list[Any], exact_in: list[bool]) -> list[V]:
    """Run the bound table's row on index forms: its output forms are the exact linear map (and
    its mul/max nodes the products and maxima) of the primitive; a weight with a rounding error
    (matmul/conv2d/mul) is read as its exact value plus a second pass with |delta| as the weight."""
    kind = LINEAR[op]
    bilinear = op in ("matmul", "conv2d", "mul")
    data = [not (all(v.lo == v.hi for v in vs) and (exact_in[i] or bilinear or all(v.E == 0 for v in vs)))
            for i, vs in enumerate(ins)]
    if not any(data) and kind != "exact":
        data[0] = True  # (constants combined by a rounding kernel: the float work is tracked)
    flat: list[V] = []

    def tensors(vals: Any) -> list[Tensor]:
        # (a data element that is -inf, a mask's fill an earlier where selected: ``ctx.const``'s
        # NEG_INF, exact with error 0, enters as that constant, so the row copies it as the first
        # where did; as a variable it reached ``ctx.lin``'s arithmetic, an AttributeError. Only
        # where takes it here: ``lower`` lets -inf reach where and softmax only)
        return [Tensor(s, [NEG_INF if v.lo is NEG_INF else Aff({base[i] + j: ONE}) for j, v in enumerate(vs)]
                       if data[i] else [vals(v) for v in vs]) for i, (vs, s) in enumerate(zip(ins, shapes))]

    base, n = [], 0
    for i, vs in enumerate(ins):
        base.append(n)
        if data[i]:
            flat.extend(vs)
            n += len(vs)
    L = Lowerer(n)
    res = ROWS[op](L, tensors(lambda v: v.lo), at)
    var: dict[int, V] = dict(enumerate(flat))
    for node in L.nodes[1:]:
        for i, a in enumerate(node.args):
            if node.kind == "mul":
                out = ctx.mul(_pick(var, a[0]), _pick(var, a[1]))
            elif node.kind == "max":
                out = ctx.maxlike([_pick(var, m) for m in a])
            else:
                raise Unsupported(f"{op}: no rounding-error entry for this use")
            var[node.offset + i] = out
    extra = [ZERO] * len(res.v)
    if bilinear and any(v.E for i, vs in enumerate(ins) if not data[i] for v in vs):
        d = ROWS[op](Lowerer(n), tensors(lambda v: v.E), at)
        for j, e in enumerate(d.v):
            if isinstance(e, Aff):
                extra[j] = abs(e.c) + sum(abs(q) * ctx.mag(var[s]) for s, q in e.t.items())
            else:
                extra[j] = abs(e)
    out = []
    for j, e in enumerate(res.v):
        r = rng[j]
        if not isinstance(e, Aff):
            v = ctx.const(e)
        elif not e.c and len(e.t) == 1 and e.t.get(next(iter(e.t))) == 1 and next(iter(e.t)) >= n:
            w = var[next(iter(e.t))]  # a product or a maximum: already computed (and rounded)
            v = V(max(w.lo, r[0]), min(w.hi, r[1]), w.c, w.rem, w.E, _g(r))
        else:
            v = ctx.lin([(q, var[s]) for s, q in e.t.items()], e.c, kind, r)
        if extra[j]:
            # the weight's delta times x~, and its share of the sum's rounding: |fl(w)| <= |w| +
            # |delta| raises S and each of dot_error's k node bounds by <= extra, so its bounds by
            # <= gamma_k extra, (u + k u (1 + u))/(1 - k u) extra (> 1 where k u > 1/2: fp8)
            k = len(e.t) + (e.c != 0) if kind == "dot" and isinstance(e, Aff) else 1
            fac = 1 + max(ONE, (ctx.u + k * ctx.u * (1 + ctx.u)) / (1 - k * ctx.u))
            v = ctx.make(v.lo, v.hi, [(ONE, ZERO, v)], fac * extra[j], ZERO, v.g)
        out.append(v)
    return out


def _pick(var: dict[int, V], a: Aff) -> V:
    """The element a reads: one variable, or its negation (minimum's rows)."""
    require(not a.c and len(a.t) == 1, "an argument that is not a single value")
    (s, q), = a.t.items()
    w = var[s]
    if q == 1:
        return w
    require(q == -1, "an argument that is not a single value")
    return V(-w.hi, -w.lo, {t: -x for t, x in w.c.items()}, w.rem, w.E, w.g)


def _softmax(ctx: Ctx, x: list[V], shape: tuple[int, ...], at: dict[str, Any], rng: list[Any],
             log: bool) -> list[V]:
    out: list[Any] = [None] * len(x)
    for g in reduce_groups(shape, int(at.get("axis", -1)), True)[1]:
        for i in g:  # a -inf entry (a mask; ``lower`` admits it only here): exp(-inf - m~) = +0,
            if x[i].lo is NEG_INF:  # exactly, so its output 0/S~ = 0 and it adds 0 to S~ exactly
                out[i] = ctx.const(ZERO)
        g = [i for i in g if x[i].lo is not NEG_INF]
        m = ctx.maxlike([x[i] for i in g])
        s = [ctx.add(x[i], m, -1, (x[i].lo - m.hi, ZERO)) for i in g]  # x - max <= 0
        # in floats too: fl(x~ - m~) <= 0 (m~ = max x~ exactly), so exp's float hull ends at 0
        e = [ctx.fn("exp", v, _KERNEL, (ZERO, ONE), ceil=ZERO) for v in s]
        S = ctx.lin([(ONE, v) for v in e], ZERO, "dot", (ONE, Q(len(g))))  # the max's term is e^0 = 1
        # S~ >= exp~(0) >= 1 - kern(1): a float sum of terms >= 0 is >= each term (monotone rounding)
        floor = 1 - ctx.kern(ONE)
        if log:
            lg = ctx.fn("log", S, _KERNEL, floor=floor)
            ys = [ctx.add(v, lg, -1, rng[i]) for v, i in zip(s, g)]
        else:
            ys = [ctx.div(v, S, rng[i], floor=floor) for v, i in zip(e, g)]
            his = [min(ONE, y.hi) for y in ys]
            # the whole softmax as ratios (``errornorm.softmax_ratio``), and the range rule: y~ and
            # y lie in [0, 1] (e~_i <= S~, a term of the sum), so |y~ - y| <= max(1 - lo, hi)
            alt = softmax_ratio(ctx, [x[i] for i in g], s, m, his)
            # and relational (``errornorm.softmax_relational``): the inputs' errors kept as forms
            rel = softmax_relational(ctx, [x[i] for i in g], s, m, ys) or ys
            ys = [min(y if y.E <= min(a, max(1 - y.lo, y.hi)) else ctx.make(
                y.lo, y.hi, [], ZERO, min(a, max(1 - y.lo, y.hi)), y.g), r, key=lambda w: w.E)
                for y, a, r in zip(ys, alt, rel)]
        for i, y in zip(g, ys):
            out[i] = y
    return out


def _layer_norm(ctx: Ctx, ins: list[list[V]], shapes: list[tuple[int, ...]], at: dict[str, Any],
                rng: list[Any]) -> list[V]:
    x, w, b = ins
    n = _size(shapes[0][len(shapes[0]) - int(at.get("normalized_ndim", 1)):])
    nc, eps = ctx.fl_const(Q(n)), ctx.fl_const(Q(at.get("eps", 1e-5)))
    # the real normalised entry's range: |(x_i - mu)/sqrt(var + eps)| <= sqrt(n - 1) (``lower``)
    c = sqrt_up(n - 1)
    yr = (-c, c) if Q(at.get("eps", 1e-5)) >= 0 else None
    out = []
    for r in range(len(x) // n):
        xs = x[r * n:(r + 1) * n]
        mu = ctx.div(ctx.lin([(ONE, v) for v in xs], ZERO, "dot"), nc)
        xc = [ctx.add(v, mu, -1) for v in xs]
        # the normalisation as one step (``errornorm``: its claim and proof), where it applies
        # the variance's lower bound: the input ranges' (``var_floor``) or the bound table's
        lo = max(var_floor([(v.lo, v.hi) for v in xs]), at["var+eps"][r] - Q(at.get("eps", 1e-5)))
        ys = normalise(ctx, xc, lo, Q(at.get("eps", 1e-5)))
        if ys is not None:
            out += [ctx.add(ctx.mul(y, w[i]), b[i], 1, rng[r * n + i]) for i, y in enumerate(ys)]
            continue
        var = ctx.div(ctx.lin([(ONE, ctx.mul(v, v)) for v in xc], ZERO, "dot"), nc)
        # (eps 0 in the format: where var~ may be 0 the float run computes 1/sqrt(0) = inf)
        require(eps.lo - eps.E > 0 or var.lo - var.E > 0,
                f"layer_norm with eps {float(eps.lo):g} in {ctx.fmt.name}: the float variance can reach 0 "
                "on this box (1/sqrt(0) = inf in the float run), so no finite error bound")
        # var~ >= 0 (a sum of squares), so var~ + eps~ >= fl(eps), as is the real var + eps
        sd = ctx.fn("sqrt", ctx.add(var, eps), _KERNEL, floor=eps.lo - eps.E)
        s0 = FUNCTIONS["sqrt"].value(eps.lo - eps.E)[0]  # sd~, sd >= sqrt(fl(eps)) less k ulp
        rstd = ctx.div(ctx.const(ONE), sd, floor=s0 * (1 - 2 * ctx.k * ctx.un) - ctx.kern(ZERO))
        for i, v in enumerate(xc):
            j = r * n + i
            out.append(ctx.add(ctx.mul(ctx.mul(v, rstd, yr), w[i]), b[i], 1, rng[j]))
    return out


def bn_scale(ctx: Ctx, var: list[V], w: list[V], at: dict[str, Any]) -> list[V]:
    """batch_norm's per-channel scale fl(fl(1 / sqrt~(fl(var + fl(eps)))) * w), as the kernel
    computes it (both columns: the fast one runs it here, once per channel)."""
    eps = ctx.fl_const(Q(at.get("eps", 1e-5)))
    return [ctx.mul(ctx.div(ctx.const(ONE), ctx.fn("sqrt", ctx.add(v, eps), _KERNEL)), wc)
            for v, wc in zip(var, w)]


def _batch_norm(ctx: Ctx, ins: list[list[V]], shapes: list[tuple[int, ...]], at: dict[str, Any],
                rng: list[Any]) -> list[V]:
    x, mean, var, w, b = ins
    scale = bn_scale(ctx, var, w, at)
    c, inner = shapes[0][1], _size(shapes[0][2:])
    out = []
    for j, v in enumerate(x):
        ch = (j // inner) % c
        out.append(ctx.add(ctx.mul(ctx.add(v, mean[ch], -1), scale[ch]), b[ch], 1, rng[j]))
    return out


def holds(t: Format, f: Format) -> bool:
    """Every value of ``f`` is a value of ``t``: at least its precision, no coarser least
    positive value, no smaller largest finite, infinities where ``f`` has them."""
    return (t.precision >= f.precision and t.min_positive <= f.min_positive
            and t.max_finite >= f.max_finite and (t.has_inf or not f.has_inf))


def _cast(ctx: Ctx, vs: list[V], dtype: Any) -> list[V]:
    """fl(fl_T(x~)) (the run casts to T, then holds the value in its format, as ``run_graph``
    with a dtype and ``emulate``): exact where T holds every value of the format (x~ is one);
    else one rounding to T, in the run's mode or to nearest (numpy's astype), and a second one to
    the format unless it holds every value of T. The real value: the identity (``lower``)."""
    to = get_format(str(dtype))
    if holds(to, ctx.fmt):
        return list(vs)
    u, eta = to.unit_roundoff(ctx.mode), to.underflow_eta(ctx.mode)  # (>= the rne ones)
    back = not holds(ctx.fmt, to)
    out = []
    for v in vs:
        m = ctx.mag(v)
        require(m * (1 + u) < to.max_finite, f"cast: values up to {float(m):.3g} may overflow {to.name}")
        local = u * m + eta
        local += ctx.rnd(m + local) if back else ZERO
        out.append(ctx.make(v.lo, v.hi, [(ONE, ZERO, v)], ZERO, local, v.g))
    return out


def apply(ctx: Ctx, op: str, ins: list[list[V]], shapes: list[tuple[int, ...]], at: dict[str, Any],
          rng: list[Any], exact_in: list[bool]) -> list[V]:
    """The column's entry for ``op``: output elements from input elements."""
    if op == "relu":  # a neuron off in the reals: relu(x~) - 0 is in [0, max(0, hi + E)]
        return [ctx.fn(op, v, _EXACT, r) if v.hi > 0 else ctx.const(ZERO, max(ZERO, v.hi + v.E))
                for v, r in zip(ins[0], rng)]
    if op in FNS:  # (the kernel's own error at a float input: ``errorkern``, gelu's here)
        D = Exact(ctx)
        own = _gelu if op == "gelu" else lambda c, p, q, m: kernel(D, op, p, q, m, at)
        return [ctx.fn(op, v, own, r, **at) for v, r in zip(ins[0], rng)]
    if op == "max_pool2d":  # the runtime pads with -inf: NaN without infinities (max(NaN, x) = NaN)
        require(ctx.fmt.has_inf or not any(_pair(at.get("padding", 0))),
                f"max_pool2d with padding: -inf has no value in {ctx.fmt.name}")
    if op == "cast":
        return _cast(ctx, ins[0], at.get("dtype", "float32"))
    if op in LINEAR:
        return _linear(ctx, op, ins, shapes, at, rng, exact_in)
    if op == "div":
        a, b = (broadcast(Tensor(s, vs), bcast_shape(*shapes)) for s, vs in zip(shapes, ins))
        return [ctx.div(p, q, r) for p, q, r in zip(a, b, rng)]
    if op in ("softmax", "log_softmax"):
        return _softmax(ctx, ins[0], shapes[0], at, rng, op == "log_softmax")
    if op == "layer_norm":
        return _layer_norm(ctx, ins, shapes, at, rng)
    if op == "batch_norm":
        return _batch_norm(ctx, ins, shapes, at, rng)
    raise Unsupported(f"primitive {op!r} has no rounding-error entry: {NO_ENTRY.get(op, 'unknown')}")


COLUMN = sorted({*FNS, *LINEAR, "cast", "div", "softmax", "log_softmax", "layer_norm", "batch_norm"})


# -- the walk over the graph ----------------------------------------------------------------------

#: how a statement's real ranges are computed: the exact engine's CROWN argument bounds or IBP,
#: or "fast": exact IBP met per element with the fast engine's CROWN argument bounds (float64,
#: outward; trusts the IEEE binary64 standard model, recorded in the verdict)
RANGES = ("crown", "ibp", "fast")
#: the statement's "column": "exact" (absent: this module's, in rationals) or "fast" (its float64
#: sibling ``fast_errors.py``, outward rounded, no tighter; the verdict names the float64 model)
COLUMNS = ("exact", "fast")
FAST_TRUST = "float64:ieee754-standard-model"


def fast_ranges(bg: Any, box: list[tuple[Fraction, Fraction]]) -> dict[int, Any]:
    """{node: (lows, highs)} of every nonlinear node's argument rows from the fast engine's CROWN
    (``fast_engine.tight_args``), as ``engine.forward``'s ``tight``. Recomputed by the checker,
    never read from a certificate."""
    from .fast_engine import tight_args  # numpy: only for these ranges

    return tight_args(bg, box)


model_id = digest  # (a graph's id: SHA-256 of its canonical JSON, ``Graph.fingerprint``)


def propagate(stmt: dict[str, Any], trusted: dict[str, int] | None = None) -> list[list[Fraction]]:
    """Error bounds of every element of every IR node's output (in IR order), then of the
    graph's outputs (the last list). ``trusted``: filled with what the ranges rest on (fast
    ranges: the float64 model, and libm where the graph has a libm row, as fast VNN replays)."""
    ctx = Ctx(stmt)
    ir = stmt["graph"]
    require(stmt.get("model") == model_id(ir), "model fingerprint does not match the graph")
    box = [(rational(lo), rational(hi)) for lo, hi in stmt["input_box"]]
    require(all(lo <= hi for lo, hi in box), "empty input box")
    # (a JSON bool: the string "false" is truthy, and was read as exact inputs; audit27)
    require(isinstance(stmt["input_exact"], bool), "input_exact must be true or false")
    method = stmt.get("ranges", "crown")
    require(method in RANGES, f"unknown ranges {method!r}")
    column = stmt.get("column", "exact")
    require(column in COLUMNS, f"unknown column {column!r}")
    # a value cast to a format T is computed on in T by the runtime (numpy, torch), not in the
    # run's format: only a T that holds the format is bounded by its charges (audit61); another
    # cast's output may only be cast again or be a graph output
    to = {nd["output"]: get_format(str((nd.get("attrs") or {}).get("dtype", "float32")))
          for nd in ir["nodes"] if nd["op"] == "cast"}
    for nd in ir["nodes"]:
        if nd["op"] != "cast" and not all(holds(to[n], ctx.fmt) for n in nd["inputs"] if n in to):
            raise Unsupported(f"{nd['op']} reads a value cast to a format that does not hold {ctx.fmt.name}: "
                              "the runtime computes on it in that format (cast it back first)")
    if column == "fast":  # (numpy: imported only for a fast statement)
        from .fast_errors import propagate as fast_column

        return fast_column(stmt, trusted)
    env: dict[str, Tensor] = {}
    bg = lower(ir, env, wide=True)
    require(len(box) == bg.n_in, f"box has {len(box)} intervals for {bg.n_in} inputs")
    fast = method == "fast"  # (``lin`` nodes too: the fast engine passes through y = f exactly)
    if fast and trusted is not None:
        from .graph_vnn import LIBM, LIBM_ROWS

        trusted[FAST_TRUST] = 1
        if any(n.kind == "fn" and n.fn in LIBM_ROWS for n in bg.nodes):
            trusted[LIBM] = 1  # (the fast rows' stated libm accuracy, ``fast_functions``)
    try:
        lo, hi = [b[0] for b in box], [b[1] for b in box]
        st = engine.forward(bg, lo, hi, "ibp" if method == "fast" else method,
                            tight=fast_ranges(bg, box) if fast else None)
    except DomainError as e:  # (e.g. a layer_norm with eps 0 whose variance can reach 0 on the box)
        raise DomainError(f"the real network is not defined everywhere on the box: {e}") from None
    known = {}  # (fast: mul and max argument rows' CROWN bounds too; ``ranges`` meets them with IBP's)
    for k, node in enumerate(bg.nodes):
        if node.kind == "fn" or (fast and node.kind in ("mul", "max")):
            known.update((id(a), b) for a, b in zip(arg_rows(node, node.args), arg_rows(node, st.arg[k])))

    ctx.nf = nf = errorforms.enabled(bg)
    forms = errorforms.linear_bounds(bg, st, box, engine.relaxation) if nf else []

    def ranges(t: Tensor) -> list[Any]:  # (st.arg: CROWN within IBP); with forms (lo, hi, g)
        out: list[Any] = []
        for e in t.v:
            if not isinstance(e, Aff):
                out.append((e, e))
                continue
            if fast:  # the tighter of the two per end (both valid)
                (lo, hi), kb = st.bounds(e), known.get(id(e))
                if kb is not None:
                    lo, hi = max(lo, kb[0]), min(hi, kb[1])
                    lo = min(lo, hi)
            else:
                lo, hi = known.get(id(e)) or st.bounds(e)
            out.append((lo, hi, errorforms.magnitude(*errorforms.aff_forms(forms, e, nf), lo, hi))
                       if nf else (lo, hi))
        return out

    vals: dict[str, list[V]] = {}
    exact: dict[str, bool] = {}
    k = 0
    for i in ir["inputs"]:
        n = len(env[i["name"]].v)
        # (a point input's charge is its own rounding, |fl(x) - x|: 0 at a value of the format)
        vals[i["name"]] = [ctx.make(lo, hi, [], ZERO, ZERO if stmt["input_exact"] else ctx.cast_err(lo)
                                    if lo == hi else ctx.rnd(max(-lo, hi)), _g(r))
                           for (lo, hi), r in zip(box[k:k + n], ranges(env[i["name"]]))]
        exact[i["name"]] = False
        k += n
    cast: dict[Fraction, Fraction] = {}  # (a DFT matrix repeats a few values many times)
    data = {n for nd in ir["nodes"] for j, n in enumerate(nd["inputs"]) if KEY.get(nd["op"]) != j}
    for name, a in ir["constants"].items():
        is_float = str(a["dtype"]).startswith("float")
        require(all(q is not NEG_INF for q in env[name].v) or ctx.fmt.has_inf,
                f"-inf has no value in {ctx.fmt.name}")  # (-inf is exact in a format with infinities)
        for q in env[name].v if is_float else ():
            if q is not NEG_INF and q not in cast:
                cast[q] = ctx.cast_err(q)
        # an integer constant read as data meets a float array as binary64 (numpy's promotion),
        # and the node's result is rounded to the format: a selection's output is fl(fl64(q)), not
        # q (audit27). Required values of the format (so of binary64): then every operation with
        # them rounds p-bit operands twice, innocuously (53 >= 2p + 2), and a selection is exact
        require(is_float or name not in data or all(not ctx.cast_err(q) for q in env[name].v),
                f"integer constant {name!r} holds a value that is not one of {ctx.fmt.name}")
        vals[name] = [ctx.const(q, cast[q] if is_float and q is not NEG_INF else ZERO)
                      for q in env[name].v]
        exact[name] = not is_float
    steps = []
    for node in ir["nodes"]:
        tick()
        op = node["op"]
        ins = [vals[n] for n in node["inputs"]]
        shapes = [env[n].shape for n in node["inputs"]]
        out = env[node["output"]]
        at = dict(node.get("attrs") or {})
        if op == "layer_norm":  # each row's var + eps lower bound, the engine's: always set here,
            # so a "var+eps" attribute in the statement's own IR is never what the rule reads
            at["var+eps"] = [r[0] for r in ranges(Tensor((len(out.var),), out.var))]
        ctx.budget(len(out.v))
        vs = apply(ctx, op, ins, shapes, at, ranges(out),
                   [exact[n] for n in node["inputs"]])
        require(len(vs) == len(out.v), f"{op}: {len(vs)} elements for {len(out.v)}")
        vals[node["output"]] = vs
        exact[node["output"]] = False
        steps.append([v.E for v in vs])
    steps.append([v.E for o in ir["outputs"] for v in vals[o]])
    return steps


def replay_leaf(stmt: dict[str, Any], steps: Any, eps: list[Fraction], trusted: dict[str, int]) -> int:
    """Recompute the bounds on ``stmt``'s box; require every claimed step and every epsilon to be
    at least the recomputed bound. Returns the number of checked terms; ``trusted`` gets what the
    ranges rest on (``propagate``)."""
    tick()
    got = propagate(stmt, trusted)
    require(isinstance(steps, list) and len(steps) == len(got) - 1, "one step per graph node required")
    for i, (claim, real) in enumerate(zip(steps, got)):
        require(len(claim) == len(real), f"node {i}: {len(claim)} claimed terms for {len(real)} elements")
        for j, (c, r) in enumerate(zip(claim, real)):
            require(rational(c) >= r, f"node {i} element {j}: claimed error {float(rational(c)):.4g} < "
                    f"replayed {float(r):.4g}")
    require(len(eps) == len(got[-1]), "one epsilon per output required")
    for j, (e, r) in enumerate(zip(eps, got[-1])):
        require(e >= r, f"output {j}: epsilon {float(e):.4g} < bound {float(r):.4g}")
    return sum(len(s) for s in got)


@checker("errorbound")
def check_errorbound(cert: dict[str, Any]) -> Verdict:
    """The claim of ``statement`` over its box from one set of ``steps``: the split form's tree
    of one leaf, that box."""
    leaf = {"box": cert["statement"]["input_box"], "steps": cert["steps"]}
    return check_errorbound_split({**cert, "tree": leaf})


@checker("errorbound-split")
def check_errorbound_split(cert: dict[str, Any]) -> Verdict:
    """The ``errorbound`` claim of ``statement`` over its whole box, from a split tree whose
    leaves each carry ``errorbound`` steps for their own sub-box (see the module docstring)."""
    stmt = cert["statement"]
    require(digest(stmt) == cert["digest"], "statement digest mismatch")
    eps = [rational(x) for x in stmt["epsilon"]]
    box = [(rational(lo), rational(hi)) for lo, hi in stmt["input_box"]]
    checked, trusted = 0, {}
    for node, b in box_leaves(cert["tree"], box):
        require([(rational(a), rational(c)) for a, c in node["box"]] == b,
                "leaf box differs from the box its split path gives")
        leaf = dict(stmt, input_box=[[str(a), str(c)] for a, c in b])
        checked += replay_leaf(leaf, node["steps"], eps, trusted)
    return Verdict(True, checked=checked, trusted=trusted)
