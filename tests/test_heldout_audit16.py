"""audit16: the EXACT rounding-error column (``certificates/errorbound.py``, ``errorctx.py``,
``errorforms.py``) and the formats (``certificates/rounding.py``) attacked where the standard model
|delta| <= u breaks: subnormal results (fp16/fp8 products, quotients and kernels near 0), overflow
(fp16 65504, e4m3fn 448 with no infinity, e5m2), constants and box bounds that are not values of
the format, and a certificate moved to another format or box.

Reference, independent of the checker: every value of the format enumerated from its bit fields
(``_values``, agreeing with numpy's float16 below) and rounding to nearest, ties to the even
significand, by search in that list; products, sums and quotients taken exactly in Fractions and
rounded once per operation (a matmul left to right: one order of "any order"); exp/tanh by mpmath
at 200 bits, correctly rounded (a kernel within 1/2 ulp, inside the certificate's 4-ulp
assumption). The real output: the same graph in Fractions at the unrounded point (mpmath for exp).
Every point of the box that is a value of the format is tried (input_exact), or a grid of the box
whose points are rounded first (input_exact False).

Found: no hole (TRUST_BOUNDARIES.md, "Audit audit16"). The tightest case, e4m3fn x*x on [0, 2^-5]
(subnormal products), reaches 0.94 of its epsilon.

Planted bugs this file catches (each in a scratch copy, this file run; tests failing): the underflow
term eta dropped from ``Ctx.rnd`` (22), its overflow ``require`` removed (6), ``cast_err`` = 0 (6),
input_exact false's input rounding dropped (3), the kernel's k*minpos term dropped (1), directed
modes given u = 2^-p (2), the no-subnormal exact-sum exemption (1), ``Ctx.mode`` fixed to rne (17),
``Ctx.fmt`` fixed to binary16 (87), ``rounding._choose``'s rto picking the even
neighbour (5), its rne tie picking the odd one (4), layer norm's variance ``require`` removed (1).
"""

from __future__ import annotations

import bisect
import copy
import itertools
from fractions import Fraction as Q

import numpy as np
import pytest

from torchlean.certificates import check
from torchlean.certificates.core import Rejected, digest
from torchlean.floats import bound_certificate, epsilons
from torchlean.spec.graph import Graph, Node, Value

mpmath = pytest.importorskip("mpmath")
mpmath.mp.prec = 200


@pytest.fixture(autouse=True)
def _own_precision():
    """Every test here at this file's precision, whatever another file set mpmath.mp to (the
    module-level line only sets it at import: test_fast_overflow's mp.dps = 40, run between,
    left tanh'(37)'s 1 - tanh^2 reference 8 digits short)."""
    with mpmath.workprec(200):
        yield

#: (exponent bits, stored mantissa bits, finite-only "fn" style); "-nosub": no subnormals
FMTS = {"float8_e4m3fn": (4, 3, True), "float8_e5m2": (5, 2, False), "binary16": (5, 10, False),
        "e4m3-nosub": (4, 3, False), "e3m2": (3, 2, False), "bfloat16": (8, 7, False)}
_TABLES: dict[str, list[Q]] = {}


def _values(fmt: str) -> list[Q]:
    """Every finite value of ``fmt``, sorted, from its bit fields."""
    if fmt not in _TABLES:
        e, m, fn = FMTS[fmt]
        bias, top, vals = 2 ** (e - 1) - 1, 2**e - 1, set()
        for ef, mf in itertools.product(range(2**e), range(2**m)):
            if (fn and ef == top and mf == 2**m - 1) or (not fn and ef == top):
                continue  # NaN (fn), inf/NaN (ieee)
            if ef == 0 and mf and fmt.endswith("-nosub"):
                continue
            v = Q(mf, 2**m) * Q(2) ** (1 - bias) if ef == 0 else (1 + Q(mf, 2**m)) * Q(2) ** (ef - bias)
            vals |= {v, -v}
        _TABLES[fmt] = sorted(vals)
    return _TABLES[fmt]


def _odd(v: Q, fmt: str) -> bool:
    """Whether v's integer significand (in units of its binade's quantum) is odd."""
    e, m, _ = FMTS[fmt]
    av, k = abs(v), 2 - 2 ** (e - 1)  # emin
    if av == 0:
        return False
    while Q(2) ** (k + 1) <= av:
        k += 1
    return (av / Q(2) ** (k - m)).numerator % 2 == 1


def rnd(x: Q, fmt: str, mode: str = "rne") -> Q | None:
    """x rounded in ``mode`` by search among the format's values; None where it is inf or NaN."""
    if x < 0 and mode in ("rne", "rna", "rtz", "rto"):  # (symmetric modes: by magnitude)
        r = rnd(-x, fmt, mode)
        return None if r is None else -r
    T = _values(fmt)
    e, m, fn = FMTS[fmt]
    mx, ulp_top = T[-1], Q(2) ** (2**e - 1 - (0 if fn else 1) - (2 ** (e - 1) - 1) - m)
    i = bisect.bisect_left(T, x)
    if i < len(T) and T[i] == x:
        return x
    if i in (0, len(T)):  # past the largest finite value
        s = -1 if x < 0 else 1
        if mode in ("rne", "rna"):  # (a tie at mx + ulp/2: e4m3fn's largest significand is even)
            tie_down = abs(x) == mx + ulp_top / 2 and mode == "rne" and not _odd(mx, fmt)
            return None if abs(x) >= mx + ulp_top / 2 and not tie_down else s * mx
        toward_zero = mode in ("rtz", "rto") or (mode == "rup") == (s < 0)
        return s * mx if toward_zero else None
    a, b = T[i - 1], T[i]
    if mode in ("rtz", "rup", "rdn", "rto"):
        return {"rtz": a if x > 0 else b, "rup": b, "rdn": a, "rto": a if _odd(a, fmt) else b}[mode]
    if abs(x - a) != abs(b - x):
        return a if abs(x - a) < abs(b - x) else b
    if mode == "rna":
        return b if x > 0 else a
    return b if _odd(a, fmt) else a


def _mq(v) -> Q:
    man, ex = mpmath.mpf(v).man_exp
    return Q(int(man)) * Q(2) ** int(ex)


def _fn(op: str, x: Q):
    return {"exp": mpmath.exp, "tanh": mpmath.tanh}[op](mpmath.mpf(x.numerator) / x.denominator)


def run(g: Graph, xs, fmt: str | None, mode: str = "rne"):
    """The graph's output at the point ``xs``: in ``fmt`` (rounded after every operation; None on
    overflow), or in the reals (fmt None)."""
    R = (lambda v: v) if fmt is None else (lambda v: rnd(v, fmt, mode))

    def ok(v):
        if v is None:
            raise OverflowError
        return v

    env = {}
    try:
        env["x"] = np.array([ok(R(Q(x))) for x in xs], dtype=object).reshape(g.inputs[0].shape)
        for k, c in g.constants.items():
            c = np.asarray(c)
            env[k] = np.array([ok(R(Q(float(t)))) for t in c.ravel()], dtype=object).reshape(c.shape)
        for n in g.nodes:
            a = [env[i] for i in n.inputs]
            if n.op == "matmul":
                A, B = a
                out = np.empty((A.shape[0], B.shape[1]), dtype=object)
                for i, j in itertools.product(range(A.shape[0]), range(B.shape[1])):
                    s = None
                    for k in range(A.shape[1]):
                        p = ok(R(A[i, k] * B[k, j]))
                        s = p if s is None else ok(R(s + p))
                    out[i, j] = s
            elif n.op in ("add", "mul", "div"):
                f = {"add": lambda p, q: p + q, "mul": lambda p, q: p * q, "div": lambda p, q: p / q}[n.op]
                A, B = np.broadcast_arrays(*a)
                out = np.vectorize(lambda p, q: ok(R(f(p, q))), otypes=[object])(A, B)
            elif fmt is None:
                out = np.vectorize(lambda p: _fn(n.op, p), otypes=[object])(a[0])
            else:
                out = np.vectorize(lambda p: ok(R(_mq(_fn(n.op, p)))), otypes=[object])(a[0])
            env[n.output] = out
    except OverflowError:
        return None
    return [v if isinstance(v, Q) else _mq(v) for v in env[g.outputs[0]].ravel()]


def _graph(nodes, consts=None) -> Graph:
    cs = {k: np.array(v, dtype=np.float64) for k, v in (consts or {}).items()}
    n = cs["W"].shape[0] if "W" in cs else 1
    return Graph([Value("x", (1, n), "float32")], cs, nodes, [nodes[-1].output]).check()


SQ = _graph([Node("mul", ["x", "x"], "y")])
REC = _graph([Node("div", ["c", "x"], "y")], {"c": [1.0]})
EXP = _graph([Node("exp", ["x"], "y")])
TANH = _graph([Node("tanh", ["x"], "y")])
SCALE_OFF = _graph([Node("mul", ["x", "c"], "y")], {"c": [0.2968]})  # just below a tie of e4m3's grid
LIN = _graph([Node("matmul", ["x", "W"], "h"), Node("add", ["h", "b"], "y")],
             {"W": [[0.1, 0.3], [0.7, -0.9]], "b": [0.05, 0.02]})


def _cert(g, box, fmt, input_exact=True, mode="rne"):
    return bound_certificate(g, box, fmt, mode, input_exact=input_exact, ranges="ibp", column="exact")


def _worst(g, cert, fmt, points, mode="rne") -> float:
    """max over the points of |float - real| / epsilon; asserts no overflow."""
    assert check(cert).ok
    eps = epsilons(cert)
    worst = 0.0
    for x in points:
        f, r = run(g, x, fmt, mode), run(g, x, None)
        assert f is not None, f"the float run overflows at {x} where epsilon {eps} was accepted"
        for fi, ri, e in zip(f, r, eps):
            worst = max(worst, float(abs(fi - ri) / e) if e else (0.0 if fi == ri else float("inf")))
    return worst


def _box_values(lo, hi, fmt, stride=1):
    return [(v,) for v in _values(fmt)[::1] if Q(lo) <= v <= Q(hi)][::stride]


def test_reference_rounding_agrees_with_numpy_float16():
    rng = np.random.default_rng(0)
    xs = rng.standard_normal(3000) * np.exp(rng.uniform(-25, 12, 3000))
    xs = np.concatenate([xs, [65504.0, 65519.0, 65520.0, 65535.0, 2.0**-25, 3 * 2.0**-26, 2.0**-24 * 1.5]])
    with np.errstate(over="ignore"):
        for x in xs:
            a, b = rnd(Q(float(x)), "binary16"), np.float16(x)
            assert (a is None and np.isinf(b)) or (a is not None and Q(float(b)) == a), x
    assert _values("float8_e4m3fn")[-1] == 448 and _values("float8_e5m2")[-1] == 57344
    assert min(v for v in _values("float8_e4m3fn") if v > 0) == Q(1, 512)


# (graph, box, formats): the subnormal and near-underflow cases first
CASES = {
    "square-subnormal": (SQ, (0, 2**-5)),
    "square-straddling-1": (SQ, (0.3, 1.7)),
    "square-signed": (SQ, (-3, 3)),
    "reciprocal-small": (REC, (2**-3, 2**-2)),
    "reciprocal": (REC, (1.5, 3.5)),
    "exp-underflow": (EXP, (-20, -9)),
    "tanh-tiny": (TANH, (0, 2**-8)),
    "scale-by-unrepresentable": (SCALE_OFF, (0.5, 4)),
}


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2", "binary16", "bfloat16"])
@pytest.mark.parametrize("case", list(CASES))
def test_epsilon_covers_every_format_point(case, fmt):
    g, (lo, hi) = CASES[case]
    if fmt == "bfloat16" and case == "square-subnormal":
        lo, hi = 0, 2**-63  # (products below bfloat16's 2^-126)
    pts = _box_values(lo, hi, fmt)
    pts = pts[:: max(1, len(pts) // 300)]  # (binary16, bfloat16: ~300 of them, the ends kept)
    pts = sorted(set(pts) | set(_box_values(lo, hi, fmt)[-1:]))
    assert len(pts) >= 3
    assert _worst(g, _cert(g, [(lo, hi)], fmt), fmt, pts) <= 1


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2"])
def test_unrepresentable_weights_and_rounded_box(fmt):
    """0.1, 0.3, ... are no fp8 values (the run casts them) and the box's points are rounded."""
    box = [(Q(-9, 10), Q(7, 10)), (Q(1, 30), Q(29, 30))]
    grid = [[lo + (hi - lo) * i / 12 for i in range(13)] for lo, hi in box]
    w = _worst(LIN, _cert(LIN, box, fmt, input_exact=False), fmt, list(itertools.product(*grid)))
    assert 0.1 < w <= 1


@pytest.mark.parametrize("fmt,box", [("float8_e4m3fn", (0.3, 1.7)), ("float8_e5m2", (0.01, 0.02)),
                                     ("binary16", (0.1, 0.3))])
def test_input_rounding_is_charged(fmt, box):
    """x*x at points that are no values of the format: the run squares fl(x), an error 2|x| |fl(x) - x|
    before the product's own rounding (for x*1 the dot product's gamma_1 S covered it anyway)."""
    cert = _cert(SQ, [box], fmt, input_exact=False)
    pts = [(Q(box[0]) + (Q(box[1]) - Q(box[0])) * i / 300,) for i in range(301)]
    assert 0.3 < _worst(SQ, cert, fmt, pts) <= 1


# overflow: each float run below reaches inf/NaN somewhere on its box (checked), so no epsilon
OVERFLOWS = {
    "fp16-exp": (EXP, [(10, 11.2)], "binary16"),
    "e4m3fn-scale-past-448": (_graph([Node("matmul", ["x", "W"], "y")], {"W": [[2.0]]}), [(200, 240)],
                              "float8_e4m3fn"),
    "e4m3fn-sum-past-448": (_graph([Node("matmul", ["x", "W"], "y")], {"W": [[1.0], [1.0]]}),
                            [(0, 240)] * 2, "float8_e4m3fn"),
    "e5m2-partial-sum": (_graph([Node("matmul", ["x", "W"], "y")], {"W": [[1.0], [1.0], [-1.0]]}),
                         [(40960, 57344)] * 3, "float8_e5m2"),
    "fp16-square": (SQ, [(200, 300)], "binary16"),
}


@pytest.mark.parametrize("case", list(OVERFLOWS))
def test_overflow_is_refused(case):
    g, box, fmt = OVERFLOWS[case]
    corner = [hi for _, hi in box] if "partial" not in case else [box[0][1], box[1][1], box[2][0]]
    assert run(g, [rnd(Q(c), fmt) for c in corner], fmt) is None  # the float run overflows
    with pytest.raises(Rejected, match="overflow"):
        _cert(g, box, fmt)


def _restated(cert, **changes):
    c = copy.deepcopy(cert)
    c["statement"].update(changes)
    c["digest"] = digest(c["statement"])
    return c


def test_certificate_moved_to_an_overflowing_box_is_refused():
    cert = _cert(SQ, [(200, 250)], "binary16")
    assert check(cert).ok
    assert run(SQ, [Q(256)], "binary16") is None  # 256^2 = 65536 > 65504: inf
    v = check(_restated(cert, input_box=[["200", "256"]]))
    assert not v.ok and "overflow" in v.reason


def test_certificate_moved_to_a_coarser_format_is_refused():
    from torchlean.certificates.rounding import get_format

    cert = _cert(SQ, [(0.3, 1.7)], "binary16")
    assert check(cert).ok
    v = check(_restated(cert, format=get_format("float8_e4m3fn").to_dict()))
    assert not v.ok
    # and the fp16 epsilon is indeed exceeded by the e4m3fn run
    eps = epsilons(cert)[0]
    pts = _box_values(0.3, 1.7, "float8_e4m3fn")
    assert any(abs(run(SQ, x, "float8_e4m3fn")[0] - x[0] ** 2) > eps for x in pts)


def test_sqrt_at_zero_is_refused():
    with pytest.raises(Exception, match="no finite slope"):
        _cert(_graph([Node("sqrt", ["x"], "y")]), [(0, 2**-7)], "float8_e4m3fn")


SCALE = _graph([Node("mul", ["x", "c"], "y")], {"c": [0.3]})
ADD_TINY = _graph([Node("add", ["x", "c"], "y")], {"c": [2.0**-9]})


@pytest.mark.parametrize("mode", ["rtz", "rup", "rdn", "rna", "rto"])
@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "e4m3-nosub", "e3m2"])
@pytest.mark.parametrize("case", ["square-subnormal", "reciprocal", "scale", "add-tiny"])
def test_directed_modes_and_no_subnormals(case, fmt, mode):
    """Directed modes (u = 2^(1-p), the spacing below the normal range) and formats without
    subnormals (a sum of two floats below 2^emin is no longer exact there): the tightest case,
    e4m3-nosub x*x rounded up on [0, 2^-4], reaches 0.955 of its epsilon."""
    tiny = 2**-1 if fmt == "e3m2" else 2**-4  # (e3m2's subnormals lie below 2^-2)
    g, (lo, hi) = {"square-subnormal": (SQ, (0, tiny)), "reciprocal": (REC, (0.125, 2)),
                   "scale": (SCALE, (0, 2**-3)), "add-tiny": (ADD_TINY, (-(2**-4), 2**-4))}[case]
    pts = _box_values(lo, hi, fmt)
    assert len(pts) >= 3
    assert _worst(g, _cert(g, [(lo, hi)], fmt, mode=mode), fmt, pts, mode) <= 1


def test_certificate_moved_to_a_directed_mode_is_refused():
    """A round-to-nearest epsilon restated as round-up: the checker recomputes with u = 2^(1-p)."""
    cert = _cert(SQ, [(0, 2**-5)], "float8_e4m3fn")
    eps = epsilons(cert)[0]
    v = check(_restated(cert, mode="rup"))
    assert not v.ok
    pts = _box_values(0, 2**-5, "float8_e4m3fn")
    assert any(abs(run(SQ, x, "float8_e4m3fn", "rup")[0] - x[0] ** 2) > eps for x in pts)


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2", "e4m3-nosub", "e3m2"])
def test_trusted_rounding_agrees_with_enumeration_in_every_mode(fmt):
    """``rounding.round_fraction`` (trusted) against the search above: every value, the midpoint,
    a third and just below the next value of every gap, and 40 points around the largest finite
    value of each sign (NaN in e4m3fn's nearest modes, its largest value toward zero)."""
    from torchlean.certificates.rounding import get_format, round_fraction

    T, f = _values(fmt), get_format(fmt)
    xs = {q for a, b in zip(T, T[1:]) for q in (a, (a + b) / 2, a + (b - a) / 3, b - (b - a) / 1000)}
    xs |= {s * T[-1] * Q(k, 64) for k in range(60, 80) for s in (1, -1)}
    top = T[-1] - T[-2]  # the last gap; the overflow tie T[-1] + top/2 (e4m3fn: 464 -> 448 in rne)
    xs |= {s * (T[-1] + top * Q(k, 4)) for k in range(1, 5) for s in (1, -1)}
    for x in sorted(xs):
        for mode in ("rne", "rtz", "rup", "rdn", "rna", "rto"):
            r = round_fraction(x, f, mode)
            assert (r.value if r.finite else None) == rnd(x, fmt, mode), (x, mode, r)


def test_layer_norm_whose_float_variance_underflows_is_refused():
    """x = (0, 2^-6, 0, 2^-6): the real variance is 2^-14 > 0, but in e4m3fn each (x_i - mu)^2 =
    2^-14 rounds to 0 (below half of 2^-9) and eps 1e-5 rounds to 0: the run computes 1/sqrt(0)."""
    assert rnd(Q(2) ** -14, "float8_e4m3fn") == 0 and rnd(Q(1e-5), "float8_e4m3fn") == 0
    g = Graph([Value("x", (1, 4), "float32")], {"lw": np.ones(4), "lb": np.zeros(4)},
              [Node("layer_norm", ["x", "lw", "lb"], "y", {"eps": 1e-5})], ["y"]).check()
    with pytest.raises(Rejected, match="1/sqrt"):
        _cert(g, [(0, 0), (2**-6, 2**-6)] * 2, "float8_e4m3fn")


def test_split_certificate_covers_and_refuses_moved_leaves():
    """``errorbound-split`` in e4m3fn: the epsilon covers every format point of the box; a leaf box
    moved off its split path (a gap), or a split moved alone, is refused."""
    fmt = "float8_e4m3fn"
    cert = bound_certificate(SQ, [(-1.5, 1.7)], fmt, ranges="ibp", column="exact", splits=4)
    assert cert["kind"] == "errorbound-split"
    assert 0.3 < _worst(SQ, cert, fmt, _box_values(-1.5, 1.7, fmt)) <= 1
    for move in (lambda t: t["lo"].__setitem__("box", [["-3/2", "0"]]),
                 lambda t: t.__setitem__("split", [0, "0"])):
        c = copy.deepcopy(cert)
        move(c["tree"])
        assert not check(c).ok
