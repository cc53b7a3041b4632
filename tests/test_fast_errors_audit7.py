"""Audit 7 (h-audit7): an independent soundness audit of h-overflow (the fast engine past
float64's range: ``ibp_clip`` per end, ``fast_functions.LIMITS`` for a monotone row's infinite
end, NaN ends met by fmax/fmin, session 25's softmax [0, 1] meet removed, the exact column's
where of a -inf element). No hole found; these tests pin the boundary behaviour checked, each
against an independent reference: mpmath (reals past float64's range), the exact engine's
Fraction rows, numpy float16 / ml_dtypes bfloat16 / float32 runs of the runtime."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import mpmath
import numpy as np
import pytest
from fast_column import both_columns, covers_float_runs, rejected, shrunk_epsilon, worst_ratio
from test_fast_overflow import _scores

from torchlean.certificates import check
from torchlean.certificates import engine as exact_engine
from torchlean.certificates.bound_graph import Unsupported, arg_rows
from torchlean.certificates.core import Rejected
from torchlean.certificates.enclosures import DomainError
from torchlean.certificates.errorbound import propagate
from torchlean.certificates.fast_engine import boxes, compiled, forward, ibp_clip
from torchlean.certificates.fast_functions import FAST, LIMITS
from torchlean.certificates.functions import FUNCTIONS
from torchlean.certificates.lower import lower
from torchlean.floats.errorbound import bound_certificate, epsilons, observed_error, run_float, statement
from torchlean.spec.graph import Graph, Node, Value

Q = Fraction
INF = np.inf
BIG = Q(2) ** 1000
mpf = mpmath.mpf

MP = {"reciprocal": lambda x: 1 / x, "exp": mpmath.exp, "tanh": mpmath.tanh, "erf": mpmath.erf,
      "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)), "rsqrt": lambda x: 1 / mpmath.sqrt(x),
      "log": mpmath.log, "sqrt": mpmath.sqrt, "softplus": lambda x: mpmath.log1p(mpmath.exp(x)),
      "relu": lambda x: max(x, 0), "leaky_relu": lambda x, slope=0.01: x if x > 0 else slope * x,
      "pow": lambda x, exponent=2: x ** mpf(exponent)}


def _far(l: float, u: float) -> list:
    """Real points of [l, u] (mpmath), out to 10^1000 past an infinite end: values float64 cannot
    hold but a real argument the engine's infinite end stands for can take."""
    fin = l if np.isfinite(l) else u
    pts = [mpf(fin)] if np.isfinite(fin) else [mpf(0)]
    for e in (-3, 0, 1, 3, 30, 300, 308, 309, 400, 1000):
        for s in (-1, 1):
            pts.append(pts[0] + s * mpf(10) ** e)
    return [p for p in pts if (not np.isfinite(l) or p >= l) and (not np.isfinite(u) or p <= u)]


# (row, l, u, attrs): every monotone row's interval with an infinite end, both sides, decreasing
# rows on each branch, both ends infinite, ends at the top of float64
ENDS = [("reciprocal", 1.0, INF, {}), ("reciprocal", -INF, -1.0, {}), ("reciprocal", 1e-300, INF, {}),
        ("reciprocal", -INF, -1e300, {}), ("reciprocal", 2.0**1000, INF, {}), ("rsqrt", 1e-300, INF, {}),
        ("rsqrt", 4.0, INF, {}), ("exp", -INF, -1000.0, {}), ("exp", -INF, 709.0, {}),
        ("exp", -INF, -745.5, {}), ("tanh", -INF, INF, {}), ("tanh", -INF, -20.0, {}),
        ("tanh", 20.0, INF, {}), ("tanh", -INF, 1e308, {}),
        ("erf", -INF, INF, {}), ("erf", 6.0, INF, {}), ("erf", -INF, -6.0, {}),
        ("sigmoid", -INF, INF, {}), ("sigmoid", -INF, -800.0, {}), ("sigmoid", 40.0, INF, {}),
        ("sigmoid", -1e308, INF, {}), ("softplus", -INF, -800.0, {}), ("softplus", -INF, 30.0, {}),
        ("relu", -INF, -3.0, {}), ("relu", -INF, INF, {}), ("log", 1e-300, INF, {}), ("sqrt", 0.0, INF, {}),
        ("pow", 1.0, INF, {"exponent": -0.5}), ("pow", -INF, -1.0, {"exponent": 3}),
        ("leaky_relu", -INF, 2.0, {"slope": 0.2}), ("leaky_relu", -INF, -1.0, {"slope": 0.0})]


@pytest.mark.parametrize("name,l,u,attrs", ENDS, ids=[f"{c[0]}[{c[1]},{c[2]}]{c[3] or ''}" for c in ENDS])
def test_infinite_end_encloses_reals_past_float64(name, l, u, attrs):
    """``interval`` on [l, u] with an infinite end encloses mpmath's f at real points of it out to
    10^1000 (past float64, where the engine's infinite end comes from), and at the finite end."""
    mpmath.mp.dps = 60
    row = FAST[name]
    assert row.usable_interval(l, u, **attrs)
    lo, hi = (float(v) for v in row.interval(l, u, **attrs))
    for x in _far(l, u):
        fx = MP[name](x, **attrs)
        assert lo <= fx <= hi, (name, l, u, mpmath.nstr(x, 5), lo, mpmath.nstr(fx, 20), hi)


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_limits_table_is_each_functions_real_limit(name):
    """Each tabled limit is f's limit at that infinity (mpmath at -+10^1000: within 10^-300), on
    the side the monotone row reads it: an increasing f stays >= its limit at -inf and <= its
    limit at +inf (the reverse for the decreasing reciprocal and rsqrt), at points out to 10^1000
    and near 0. Reciprocal's two limits are both 0 (either branch); rsqrt's -inf and exp's +inf are
    not tabled (outside the domain / infinite)."""
    mpmath.mp.dps = 60
    mono = FUNCTIONS[name].mono()
    assert mono in (1, -1)
    for side, lim in zip((-1, 1), LIMITS[name]):
        if lim is None:
            continue
        far = MP[name](side * mpf(10) ** 1000)
        assert abs(far - lim) < mpf(10) ** -300, (name, side, lim, far)
        for e in (-2, 0, 2, 30, 300, 1000):
            x = side * mpf(10) ** e
            if name == "rsqrt" and x <= 0:
                continue
            fx = MP[name](x)
            # increasing: f(x) >= lim at -inf, <= lim at +inf; decreasing: the reverse; the
            # reciprocal's limit at each infinity on its own branch (x of that sign)
            assert (fx - lim) * side * mono <= 0, (name, mpmath.nstr(x, 5), lim, mpmath.nstr(fx, 10))


def test_limit_ends_reached_by_float_runs():
    """float32 / float16 runs reach the limits exactly (tanh, sigmoid, erf round to 1, exp to
    0): the rows' intervals there include the limit itself, so a range never excludes the float
    value (here only the real one matters; this pins that the ends are the closed limits)."""
    for name, x, lim in (("tanh", 20.0, 1.0), ("sigmoid", 40.0, 1.0), ("exp", -200.0, 0.0)):
        lo, hi = (float(v) for v in FAST[name].interval(*((x, INF) if lim else (-INF, x))))
        run = {"tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "exp": np.exp}[name](np.float32(x))
        assert float(run) == lim and lo <= lim <= hi


def _scaled(w: float, fn: str) -> Graph:
    """x (1, 1) -> x w (a float64 constant near 2^1000) -> fn."""
    c = {"W": np.array([[w]], np.float64)}
    return Graph([Value("x", (1, 1), "float64")], c,
                 [Node("matmul", ["x", "W"], "h", {}), Node(fn, ["h"], "y", {})], ["y"]).check()


# (w, box, the clip's expected (lo, hi) as multiples of 2^1000 or +-inf)
CLIPS = [(2.0**1000, (Q(1), Q(2)), (1, INF)),                        # a lower end exactly 2^1000: kept
         (2.0**1000, (Q(1) + Q(1, 2**50), Q(2)), (1, INF)),          # just past: 2^1000
         (2.0**1000, (Q(1, 2), Q(1)), (Q(1, 2), 1)),                 # both within, one exactly 2^1000
         (-(2.0**1000), (Q(1) + Q(1, 2**50), Q(2)), (-INF, -1)),     # the mirror: an upper end -2^1000
         (-(2.0**1000), (Q(-1), Q(1)), (-1, 1)),                     # both exactly at the edges
         (2.0**1000, (Q(-1) - Q(1, 2**50), Q(1) + Q(1, 2**50)), (-INF, INF)),  # both past, each side
         (2.0**1023, (Q(2), Q(3)), (1, INF))]                        # both past float64's top


@pytest.mark.parametrize("w,box,want", CLIPS)
@pytest.mark.parametrize("fn", ["sigmoid", "tanh", "erf", "softplus"])
def test_ibp_clip_at_two_to_the_1000(w, box, want, fn):
    """``ibp_clip`` on an argument row at, just past and far past +-2^1000: each end contains the
    exact engine's Fraction row and is the expected value (an end exactly 2^1000 kept, a lower end
    past it 2^1000, an outer one dropped); the fast engine's CROWN bounds with that clip enclose
    mpmath's fn of the exact x w at points of the box (past float64 included)."""
    mpmath.mp.dps = 60
    bg = lower(_scaled(w, fn).to_dict(), {}, wide=True)
    k = next(k for k, n in enumerate(bg.nodes) if n.kind == "fn")
    ex = exact_engine.forward(bg, [box[0]], [box[1]], "ibp")
    (a, b), = arg_rows(bg.nodes[k], ex.arg[k])
    lo, hi = (float(v[0, 0]) for v in ibp_clip(bg, [box])[k])
    assert (lo == -INF or Q(lo) <= a) and (hi == INF or b <= Q(hi))
    for got, m in ((lo, want[0]), (hi, want[1])):
        assert got == (m if m in (INF, -INF) else float(m * BIG)), (got, m)
    L, U = boxes([[box[0]]], [[box[1]]])
    fg = compiled(bg)
    st = forward(fg, L, U, "crown", clip=ibp_clip(bg, [box]))
    ylo, yhi = (float(v[0, 0]) for v in fg.out.bounds(st.L, st.U, st.vmax))
    for t in [box[0], box[1], (box[0] + box[1]) / 2]:
        fx = MP[fn](mpf(t.numerator) / t.denominator * mpf(w))
        assert ylo <= fx <= yhi, (fn, float(t), ylo, mpmath.nstr(fx, 20), yhi)


def test_nan_clip_is_no_information():
    """``forward``'s clip met by fmax/fmin: a NaN clip row leaves the engine's own bounds exactly
    (a NaN is never read as a bound), the same as no clip at all."""
    bg = lower(_scaled(3.0, "tanh").to_dict(), {}, wide=True)
    k = next(k for k, n in enumerate(bg.nodes) if n.kind == "fn")
    L, U = boxes([[Q(-1)]], [[Q(2)]])
    base = forward(compiled(bg), L, U, "crown")
    nan = forward(compiled(bg), L, U, "crown", clip={k: (np.full((1, 1), np.nan), np.full((1, 1), np.nan))})
    assert np.array_equal(base.arg[k][0], nan.arg[k][0]) and np.array_equal(base.arg[k][1], nan.arg[k][1])
    assert np.array_equal(base.L[-1], nan.L[-1]) and np.array_equal(base.U[-1], nan.U[-1])
    lo, hi = float(base.L[-1][0, 0]), float(base.U[-1][0, 0])
    assert lo <= float(mpmath.tanh(-3)) and float(mpmath.tanh(6)) <= hi


@pytest.mark.parametrize("fmt,scale", [("binary16", 1.0), ("float8_e5m2", 1.0), ("float8_e4m3fn", 0.01)])
def test_scores_past_the_format_refused(fmt, scale):
    """Scores up to 7e4 (7e2 for e4m3fn), past the format's top (binary16 65,504, e5m2 57,344,
    e4m3fn 448; their differences, < 2,000, within the real exp's range): both columns refuse
    ("may overflow"): no epsilon is certified where the float run may overflow. (binary16: the
    numpy float16 run is indeed NaN there, x W overflowing and inf - inf in softmax.)"""
    rng = np.random.default_rng(3)
    W = np.array([[700.0, 680.0, 690.0, 600.0]] * 4) * scale
    g = _scores(W, np.zeros((1, 4)), rng.normal(0, 1, (4, 2)))
    if fmt == "binary16":
        with np.errstate(all="ignore"):
            y = run_float(g, np.full((1, 4), 25.0, np.float16), np.float16)
        assert not np.isfinite(y.astype(np.float64)).all()
    box = [(Q(20), Q(25))] * 4
    for col in ("fast", "exact"):
        with pytest.raises(Rejected, match="overflow"):
            propagate(statement(g, box, fmt, ranges="fast", column=col))


def test_where_with_a_data_condition_refused():
    """A where whose condition is data (not a constant key: the selection is not continuous) is
    refused by both columns, so no -inf element can depend on the data."""
    rng = np.random.default_rng(1)
    c = {"W": rng.normal(0, 1, (4, 6)).astype(np.float32), "V": rng.normal(0, 1, (3, 2)).astype(np.float32),
         "fill": np.array([-np.inf], np.float32)}
    nodes = [Node("matmul", ["x", "W"], "h", {}), Node("reshape", ["h"], "r", {"shape": (2, 3)}),
             Node("relu", ["r"], "cond", {}), Node("where", ["cond", "fill", "r"], "w", {}),
             Node("softmax", ["w"], "s", {"axis": -1}), Node("matmul", ["s", "V"], "y", {})]
    g = Graph([Value("x", (1, 4), "float32")], c, nodes, ["y"]).check()
    st = statement(g, BOX4, "binary32", ranges="fast", column="exact")
    with pytest.raises(Unsupported, match="data-dependent condition"):
        propagate(st)
    with pytest.raises(Rejected, match="constant condition"):  # (the producer would not even state it)
        propagate({**st, "column": "fast"})


def _past_exp() -> tuple[Graph, list]:
    """``test_fast_overflow._past_exp``: scores 600 s, -600 s, 0, 300 s + 5 (s = sum x, x in
    [-1, 1]^4): differences up to 4,800, past binary64's exp, within binary16's range."""
    rng = np.random.default_rng(3)
    W = np.array([[600.0, -600.0, 0.0, 300.0]] * 4)
    return _scores(W, np.array([[0.0, 0.0, 0.0, 5.0]]), rng.normal(0, 1, (4, 2))), [(Q(-1), Q(1))] * 4


@pytest.mark.parametrize("fmt,dtype", [("binary16", np.float16), ("bfloat16", ml_dtypes.bfloat16)])
def test_softmax_past_exp_in_small_formats(fmt, dtype):
    """h-overflow's newly certified regime in binary16 / bfloat16 (exp(x - max) underflows to 0
    in the float run): the fast epsilon is at least the exact column's step by step and within 1%,
    covers sampled float runs of that format, and a shrunk one is rejected."""
    g, box = _past_exp()
    fast, exact = both_columns(g, box, fmt)
    assert worst_ratio(fast, exact) < 1.01
    covers_float_runs(g, box, fmt, dtype, n=300, seed=5)
    cert = bound_certificate(g, box, fmt, ranges="fast", column="fast")
    rejected(shrunk_epsilon(cert, Q(99, 100)), "epsilon")


def _block(scale: float, seed: int, ln: bool = True) -> tuple[Graph, np.ndarray]:
    """A char-GPT-like attention block on T = 4 tokens of width 8: (layer_norm) -> q, k, v ->
    scores / sqrt(8) -> causal mask (where of -inf) -> softmax -> p v -> W_o -> residual; q, k
    weights ``scale`` N(0, 1) (0.35: trained-looking; 3: scores past binary64's exp on the box)."""
    rng = np.random.default_rng(seed)
    d, T = 8, 4
    c = {"Wq": (rng.normal(0, 1, (d, d)) * scale).astype(np.float32),
         "Wk": (rng.normal(0, 1, (d, d)) * scale).astype(np.float32),
         "Wv": (rng.normal(0, 1, (d, d)) * 0.35).astype(np.float32),
         "Wo": (rng.normal(0, 1, (d, d)) * 0.35).astype(np.float32),
         "g": (1 + 0.1 * rng.normal(0, 1, d)).astype(np.float32),
         "b": (0.1 * rng.normal(0, 1, d)).astype(np.float32),
         "M": np.triu(np.ones((T, T), bool), 1), "ninf": np.array([-np.inf], np.float32),
         "sc": np.array([1 / np.sqrt(d)], np.float32)}
    src = "n" if ln else "x"
    nodes = [Node("layer_norm", ["x", "g", "b"], "n", {"normalized_ndim": 1, "eps": 1e-5})] if ln else []
    nodes += [Node("matmul", [src, "Wq"], "q", {}), Node("matmul", [src, "Wk"], "k", {}),
              Node("transpose", ["k"], "kt", {"axes": (1, 0)}), Node("matmul", ["q", "kt"], "s0", {}),
              Node("mul", ["s0", "sc"], "s", {}), Node("where", ["M", "ninf", "s"], "sm", {}),
              Node("softmax", ["sm"], "p", {"axis": -1}), Node("matmul", [src, "Wv"], "v", {}),
              Node("matmul", ["p", "v"], "a", {}), Node("matmul", ["a", "Wo"], "o", {}),
              Node("add", ["x", "o"], "y", {})]
    g = Graph([Value("x", (T, d), "float32")], c, nodes, ["y"]).check()
    return g, np.round(rng.normal(0, 1, T * d) * 8) / 8


@pytest.mark.parametrize("scale,r,fmt,dtype", [(0.35, Q(1, 4), "binary32", np.float32),
                                               (3.0, Q(1, 2), "binary32", np.float32),
                                               (3.0, Q(1, 2), "binary16", np.float16)])
def test_attention_block_without_the_meet(scale, r, fmt, dtype):
    """The softmax's fast range now comes from the reciprocal's infinite end and the per-end clip
    (no [0, 1] meet): on a char-GPT-like block (scale 3: scores past binary64's exp on the box,
    where the branch's epsilon differs from main's, 1.76785 vs main's 1.76785 + 3e-8 in binary32)
    the fast epsilon covers sampled runs of the format and is at least the exact column's."""
    g, x0 = _block(scale, 1)
    box = [(Q(v) - r, Q(v) + r) for v in x0]
    fast = bound_certificate(g, box, fmt, ranges="fast", column="fast")
    exact = bound_certificate(g, box, fmt, ranges="fast", column="exact")
    assert fast["statement"]["column"] == "fast" and check(fast).ok and check(exact).ok
    ef, ee = (np.array([float(e) for e in epsilons(c)]) for c in (fast, exact))
    assert (ef >= ee * (1 - 1e-9)).all(), (ef, ee)
    obs = observed_error(g, box, n=200, dtype=dtype, seed=7)
    assert (obs.max_error + obs.reference_error <= ef).all() and obs.max_error.max() > 0


def _where_graph(fill: float, log_zero: bool = False) -> Graph:
    """x (1, 4) -> x W -> tanh -> reshape (2, 3)... masked by where(M, fill, .) -> softmax -> V;
    ``log_zero``: the fill is computed, log(x 0) (-inf in every float run), not a constant."""
    rng = np.random.default_rng(1)
    c = {"W": rng.normal(0, 1, (4, 6)).astype(np.float32), "V": rng.normal(0, 1, (3, 2)).astype(np.float32),
         "M": np.array([[False, True, False], [True, False, False]]),
         "fill": np.array([fill], np.float32), "Z": np.zeros((4, 1), np.float32)}
    nodes = [Node("matmul", ["x", "W"], "h", {}), Node("tanh", ["h"], "t", {}),
             Node("reshape", ["t"], "r", {"shape": (2, 3)})]
    if log_zero:
        nodes += [Node("matmul", ["x", "Z"], "z", {}), Node("log", ["z"], "lz", {}),
                  Node("where", ["M", "lz", "r"], "w", {})]
    else:
        nodes.append(Node("where", ["M", "fill", "r"], "w", {}))
    nodes += [Node("softmax", ["w"], "s", {"axis": -1}), Node("matmul", ["s", "V"], "y", {})]
    return Graph([Value("x", (1, 4), "float32")], c, nodes, ["y"]).check()


BOX4 = [(Q(v) - Q(1, 8), Q(v) + Q(1, 8)) for v in [0.25, -0.5, 0.125, 0.75]]


@pytest.mark.parametrize("col", ["fast", "exact"])
def test_where_fills_that_are_not_the_constant_minus_inf_refused(col):
    """Only the constant -inf is a mask: a +inf fill (the float run's softmax is NaN) and a -inf
    computed as log(0) (-inf in the float run, but no real value: log is undefined at 0) are
    refused by both columns, never certified."""
    with np.errstate(all="ignore"):
        y = run_float(_where_graph(np.inf), np.array([[0.25, -0.5, 0.125, 0.75]], np.float32), np.float32)
    assert np.isnan(y).any()
    with pytest.raises(Unsupported, match=r"\+inf"):
        propagate(statement(_where_graph(np.inf), BOX4, "binary32", ranges="fast", column=col))
    with pytest.raises(DomainError, match="log"):
        propagate(statement(_where_graph(0.0, log_zero=True), BOX4, "binary32", ranges="fast", column=col))


@pytest.mark.parametrize("fmt,dtype", [("binary16", np.float16), ("bfloat16", ml_dtypes.bfloat16)])
def test_masked_twice_in_small_formats(fmt, dtype):
    """``test_fast_overflow``'s where of a where (the exact column's new -inf pass-through) in
    formats with infinities: the exact column's masked softmax steps are exactly 0, the fast
    column at least it, and float runs of the format (-inf exact there, exp(-inf) = 0) stay within
    the exact column's epsilon; float8_e4m3fn (no infinities) is refused by both columns."""
    import test_fast_overflow as fo
    g, box = fo._masked_twice()
    fast, exact = both_columns(g, box, fmt)
    k = [n.op for n in g.nodes].index("softmax")
    masked = (fo.MASK | fo.MASK2).ravel()
    assert all((exact[k][j] == 0) == bool(m) for j, m in enumerate(masked))
    cert = bound_certificate(g, box, fmt, ranges="fast", column="exact")
    assert check(cert).ok
    eps = np.array([float(e) for e in epsilons(cert)])
    obs = observed_error(g, box, n=200, dtype=dtype, seed=9)
    assert (obs.max_error + obs.reference_error <= eps).all()
    for col in ("fast", "exact"):
        with pytest.raises(Rejected, match="-inf"):
            propagate(statement(g, box, "float8_e4m3fn", ranges="fast", column=col))


def test_masked_twice_in_float8_e5m2_refused():
    """float8_e5m2 (infinities, 2 mantissa bits): the float run's softmax sum may round to a range
    containing 0 for the exact column's division, which refuses ("contains 0"), as does the fast
    column: no epsilon certified (the -inf pass-through does not bypass the division's rule)."""
    import test_fast_overflow as fo
    g, box = fo._masked_twice()
    for col in ("fast", "exact"):
        with pytest.raises(Rejected):
            propagate(statement(g, box, "float8_e5m2", ranges="fast", column=col))


@pytest.mark.parametrize("name,l,u,attrs", [
    ("reciprocal", -INF, 0.0, {}), ("reciprocal", 0.0, INF, {}), ("reciprocal", -1.0, INF, {}),
    ("reciprocal", -INF, 1.0, {}), ("rsqrt", 0.0, INF, {}), ("rsqrt", -INF, 4.0, {}), ("log", -INF, 1.0, {}),
    ("sqrt", -INF, 4.0, {}), ("exp", -INF, INF, {}), ("exp", -INF, 65537.0, {}), ("sigmoid", -INF, -INF, {}),
    ("tanh", INF, INF, {}), ("erf", np.nan, INF, {}), ("sigmoid", -INF, np.nan, {}), ("exp", 1.0, -INF, {}),
    ("pow", -INF, 4.0, {"exponent": 0.5}), ("abs", -INF, 1.0, {}),
    ("leaky_relu", -INF, 1.0, {"slope": -0.1})])
def test_infinite_ends_outside_a_rows_contract_refused(name, l, u, attrs):
    """Not taken (``usable_interval`` False, so the engine gives the element vacuous bounds): an
    interval touching reciprocal's / rsqrt's / log's pole or leaving sqrt's domain, exp past
    EXP_MAX, an empty interval at one infinity or crossed, a NaN end, non-monotone rows (abs, a
    negative leaky slope) and a fractional power below 0."""
    assert not FAST[name].usable_interval(l, u, **attrs)


def _over_exp(neg: bool) -> Graph:
    """x (1, 1) -> h = x 800 -> e = exp(h) -> 3 / e (3 / -e when ``neg``): e past binary64's top
    on the box, so the reciprocal reads [e^l, inf] ([-inf, -e^l])."""
    c = {"W": np.array([[800.0]], np.float32), "C": np.array([[3.0]], np.float32)}
    nodes = [Node("matmul", ["x", "W"], "h", {}), Node("exp", ["h"], "e0", {})]
    nodes += [Node("neg", ["e0"], "e", {})] if neg else [Node("mul", ["e0", "C"], "e", {})]
    nodes += [Node("div", ["C", "e"], "y", {})]
    return Graph([Value("x", (1, 1), "float32")], c, nodes, ["y"]).check()


@pytest.mark.parametrize("neg", [False, True])
def test_division_by_an_overflowing_exp(neg):
    """A reciprocal outside softmax with an infinite end (3 / e^(800 x), x in [1/2, 2]: e^1600 is
    past binary64): the fast engine's CROWN bounds (with ``ibp_clip``) are finite and enclose
    mpmath's value at points of the box, on either branch of 1/x."""
    mpmath.mp.dps = 60
    bg = lower(_over_exp(neg).to_dict(), {}, wide=True)
    box = [(Q(1, 2), Q(2))]
    L, U = boxes([[box[0][0]]], [[box[0][1]]])
    fg = compiled(bg)
    st = forward(fg, L, U, "crown", clip=ibp_clip(bg, box))
    lo, hi = (float(v[0, 0]) for v in fg.out.bounds(st.L, st.U, st.vmax))  # (y: 3 r, r the reciprocal)
    assert np.isfinite(lo) and np.isfinite(hi)
    for t in (0.5, 0.75, 0.8871, 1.0, 2.0):
        e = mpmath.exp(800 * mpf(t))
        y = 3 / (-e if neg else 3 * e)
        assert lo <= y <= hi, (t, lo, mpmath.nstr(y, 10), hi)


@pytest.mark.parametrize("fmt,dtype", [("binary64", np.float64), ("binary32", np.float32),
                                       ("binary16", np.float16)])
def test_past_exp_against_mpmath(fmt, dtype):
    """The softmax past exp (``_past_exp``) against real arithmetic directly (``spec.exact``,
    mpmath at 50 digits; binary64 included, which sampled runs cannot check against a float64
    reference): at the box's corners, its centre and random points of the format, the float run's
    distance to the real output is within the fast column's certified epsilon."""
    from torchlean.spec.exact import evaluate
    g, box = _past_exp()
    cert = bound_certificate(g, box, fmt, ranges="fast", column="fast")
    assert cert["statement"]["column"] == "fast" and check(cert).ok
    eps = np.array([float(e) for e in epsilons(cert)])
    rng = np.random.default_rng(11)
    pts = [np.full(4, s) for s in (-1.0, 1.0, 0.0)]
    pts += [np.where(rng.random(4) < 0.5, -1.0, 1.0) for _ in range(4)]
    pts += [rng.uniform(-1, 1, 4) for _ in range(12)]
    worst = np.zeros_like(eps)
    for p in pts:
        x = p.astype(dtype).reshape(1, 4)
        real = np.array([mpf(v) for v in np.asarray(evaluate(g, {"x": x.astype(np.float64)})[0]).ravel()])
        run = run_float(g, x, dtype).astype(np.float64).ravel()
        err = np.array([float(abs(mpf(float(a)) - b)) for a, b in zip(run, real)])
        worst = np.maximum(worst, err)
    assert (worst <= eps).all() and worst.max() > 0, (worst, eps)


@pytest.mark.parametrize("bounds_too", [False, True])
def test_nan_ends_in_the_fast_columns_ranges(monkeypatch, bounds_too):
    """``fast_errors.propagate``'s ranges meet IBP of the forms with CROWN's argument rows by
    fmax/fmin: with every argument row NaN (the engine never makes one; forced here), the steps
    are those of IBP alone, each at least the unforced step (NaN never read as a bound); with
    the node bounds NaN as well (no information on either side: IBP of NaN bounds is +-inf,
    ``_safe``, and CROWN's NaN), the column refuses ("unbounded"), never a NaN-derived number."""
    from torchlean.certificates import fast_engine
    g, box = _past_exp()
    st = statement(g, box, "binary32", ranges="fast", column="fast")
    base = propagate(st)
    real = fast_engine.forward

    def nan_state(*a, **k):
        s = real(*a, **k)
        nan = [None if x is None else tuple(np.full_like(v, np.nan) for v in x) for x in s.arg]
        s.arg = nan
        if bounds_too:
            s.L, s.U = ([np.full_like(v, np.nan) for v in vs] for vs in (s.L, s.U))
        return s

    monkeypatch.setattr(fast_engine, "forward", nan_state)
    if bounds_too:
        with pytest.raises(Rejected, match="unbounded"):
            propagate(st)
        return
    got = propagate(st)
    assert all(a >= b for sa, sb in zip(got, base) for a, b in zip(sa, sb))
