"""An independent audit of the fast rounding-error column (``certificates.fast_errors``): its
bounds against bit-exact float runs (``floats.emulate``, every format and rounding mode the column
accepts; ml_dtypes/numpy for the runtime's own sigmoid formula), at the edges of each format
(overflow, subnormals, constants that are not values of the format, dead and exactly-zero ReLUs,
sigmoid's overflow tail, long dot products), against the exact column on the same statements, and
the checker's rejection of mutated fast certificates."""

from __future__ import annotations

import copy
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import ml_dtypes
import mpmath
import numpy as np
import pytest

from torchlean.certificates import check
from torchlean.certificates.core import Rejected, digest
from torchlean.certificates.errorbound import FAST_TRUST, model_id, propagate
from torchlean.floats.emulate import Emulator, emulate
from torchlean.floats.errorbound import bound_certificate, statement
from torchlean.spec.graph import Graph, Node, Value

sys.path.insert(0, str(Path(__file__).parent))
from test_fast_errors import _ratio_ok, layers  # noqa: E402

Q = Fraction


def _sigmoid_graph() -> Graph:
    one = np.ones((1, 1), np.float32)
    return Graph([Value("x", (1, 1), "float32")], {"one": one},
                 [Node("matmul", ["x", "one"], "m"), Node("sigmoid", ["m"], "y")], ["y"]).check()


def test_sigmoid_overflow_in_a_format_without_infinities_is_refused():
    """float8_e4m3fn has no infinity: the runtime's 1/(1 + exp(-x)) gets exp(7) -> NaN (round to
    nearest overflows to NaN there), so no finite epsilon may be certified where exp(-x~) can
    overflow; the tail rule (the kernel may return 0) only holds where exp overflows to +inf."""
    f8 = ml_dtypes.float8_e4m3fn
    x = np.array([-8.0, -7.0], f8)
    assert np.isnan(np.asarray(1 / (1 + np.exp(-x)), np.float64)).all()  # (the float run: NaN)
    st = statement(_sigmoid_graph(), [(Q(-8), Q(-7))], "float8_e4m3fn", column="fast", kernel_ulps=Q(1, 2))
    try:
        eps = propagate(st)[-1]
    except Rejected:
        return
    raise AssertionError(f"a finite epsilon {[float(e) for e in eps]} for a NaN float run")


def test_exact_column_sigmoid_and_silu_overflow_without_infinities_refused():
    """The same gap in the exact column's sigmoid row (``errorkern.kernel``: sigmoid and silu
    share it; and the fast column's silu row, h-fastfns)."""
    for op, col, rg in (("sigmoid", "exact", "ibp"), ("silu", "exact", "ibp"), ("silu", "fast", "fast")):
        g = Graph([Value("x", (1,), "float32")], {}, [Node(op, ["x"], "y")], ["y"]).check()
        st = statement(g, [(Q(-8), Q(-7))], "float8_e4m3fn", column=col, ranges=rg,
                       kernel_ulps=Q(1, 2))
        try:
            eps = propagate(st)[-1]
        except Rejected:
            continue
        raise AssertionError(f"{op}: a finite epsilon {[float(e) for e in eps]} for a NaN float run")


def _dot_graph(W: np.ndarray) -> Graph:
    return Graph([Value("x", (1, W.shape[0]), "float32")], {"W": W},
                 [Node("matmul", ["x", "W"], "y")], ["y"]).check()


def test_dot_with_cast_weights_covers_the_float_weights_rule():
    """The float run multiplies by fl(W), not W: its dot product errs by the sum rule on |fl(W)|
    (<= |W| + dW), plus (fl(W) - W) x~. The column adds 2 sum dW max|x~| to the rule on |W|, which
    covers the rule's growth only while its factor (gamma_n, or the sign-split bound's
    (u + n u (1 + u))/(1 - n u)) is <= 1; in float8_e4m3fn (u = 1/16) that is n <= 7. Here n = 15:
    the bound with W = 1.09375 (fl(W) = 1.125) must be at least the bound with the float weights
    themselves (the same float run; its real value differs by the cast term only)."""
    n = 15
    box = [(Q(1, 2), Q(1))] * n
    W = np.full((n, 1), 1.09375, np.float32)  # (between 1 and 1.125 in e4m3: rounds to 1.125)
    Wf = np.full((n, 1), 1.125, np.float32)
    for col, rg in (("fast", "fast"), ("exact", "ibp")):  # (the exact column had the same rule)
        e = [propagate(statement(_dot_graph(w), box, "float8_e4m3fn", column=col, ranges=rg,
                                 kernel_ulps=Q(1, 2)))[-1][0] for w in (W, Wf)]
        assert e[0] >= e[1], (col, float(e[0]), float(e[1]))


# -- bit-exact float runs against the certified bounds ---------------------------------------------

#: every format the fast column covers (within binary64): the named ones, one without subnormals
FMTS = ["binary32", "binary16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "e4m3-nosub", "e5m10-nosub"]
DIRECTED = ["rtz", "rup", "rdn", "rto"]
#: the reference run: binary64, each operation correctly rounded (sigmoid/tanh through mpmath).
#: It was "e20m200", read as 201-bit rounding, but the emulator holds values in binary64, so
#: that was binary64 after a double rounding; the emulator refuses such formats since audit54.
REF = "binary64"


def _k(mode: str) -> Fraction:
    """The emulator's transcendental kernels are correctly rounded in the mode: half an ulp when
    nearest, one ulp when directed (the least kernel_ulps the statement may then claim)."""
    return Q(1, 2) if mode in ("rne", "rna") else Q(1)


def rgraph(seed: int, rows: int = 1, width: int = 3, depth: int = 2) -> Graph:
    """A random graph over every fast row: (x - mean)/std (std a constant near the formats'
    resolution or not a value of them), layers of matmul (a batch dimension when rows = 2), + bias,
    an activation, neg, * constant, a data +- data sum; a constant matmul on the left at the end."""
    rng = np.random.default_rng(seed)
    f32, n0 = np.float32, 3
    c: dict[str, np.ndarray] = {
        "mean": rng.uniform(-0.3, 0.3, (n0,)).astype(f32),
        "std": np.array([rng.choice([0.7, 3.0001, 1 + 2.0**-9, 0.1])], f32),
    }
    nodes = [Node("sub", ["x", "mean"], "s"), Node("div", ["s", "std"], "d")]
    cur = "d"
    if rows == 2:
        nodes.append(Node("reshape", ["d"], "d3", {"shape": (1, 2, n0)}))
        cur = "d3"
    cur = layers(rng, c, nodes, cur, n0, depth, width, seed, seed)
    c["V"] = (rng.standard_normal((2, width)) / np.sqrt(width)).astype(f32)
    nodes += [Node("reshape", [cur], "col", {"shape": (width, rows)}), Node("matmul", ["V", "col"], "y")]
    if rows == 1:
        nodes.append(Node("flatten", ["y"], "yf"))
    return Graph([Value("x", (rows, n0), "float32")], c, nodes, ["yf" if rows == 1 else "y"]).check()


def rbox(seed: int, m: int) -> list[tuple[Fraction, Fraction]]:
    """Intervals in [-1, 1] with ends multiples of 1/4 (values of every format tested)."""
    rng = np.random.default_rng(seed + 100)
    ends = np.sort(rng.integers(-4, 5, (m, 2)), axis=1)
    return [(Q(int(a), 4), Q(int(b), 4)) for a, b in ends]


def points(box, fmt: str, n: int, seed: int, exact: bool) -> np.ndarray:
    """The box's corners (up to 16) and uniform points; rounded to ``fmt`` when ``exact`` (the
    ends are values of the format, so rounding to nearest keeps a point inside)."""
    rng = np.random.default_rng(seed)
    lo = np.array([float(a) for a, _ in box])
    hi = np.array([float(b) for _, b in box])
    pts = rng.uniform(lo, hi, (n, len(box)))
    for j in range(min(n, 16, 2 ** len(box))):  # (corner j: bit i of j picks input i's end)
        pts[j] = np.where((j >> np.arange(len(box))) & 1, hi, lo)
    if exact:
        em = Emulator(fmt, "rne")
        pts = np.vectorize(lambda v: em.round(Q(v)), otypes=[np.float64])(pts)
    return pts


def observed(g: Graph, pts: np.ndarray, fmt: str, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(max |run in fmt/mode - real| per output, max |real| per output) over the points."""
    shape = g.inputs[0].shape
    errs, mags = [], []
    for p in pts:
        x = {"x": p.reshape(shape)}
        a = emulate(g, x, fmt, mode)[0].ravel()
        r = emulate(g, x, REF)[0].ravel()
        errs.append(np.abs(a - r))
        mags.append(np.abs(r))
    return np.max(errs, axis=0), np.max(mags, axis=0)


def sound(g: Graph, box, fmt: str, mode: str, exact: bool, n: int, seed: int = 0, k: Fraction | None = None,
          ranges: str = "fast") -> tuple[np.ndarray, np.ndarray] | None:
    """Assert the fast epsilon >= the observed error at the points; (eps, observed), or None where
    the column refuses the statement (an overflow it cannot rule out, n u >= 1, ...)."""
    st = statement(g, box, fmt, mode, kernel_ulps=_k(mode) if k is None else k, input_exact=exact,
                   column="fast")
    try:
        eps = np.array([float(e) for e in propagate(st)[-1]])
    except Rejected:
        return None
    obs, mag = observed(g, points(box, fmt, n, seed, exact), fmt, mode)
    slack = 2.0**-50 * mag  # (the reference's own rounding to binary64)
    assert np.all(obs <= eps + slack), (fmt, mode, exact, obs, eps)
    return eps, obs


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("fmt", FMTS)
def test_random_graphs_every_format(fmt, exact):
    """Every fast row, batch dimensions and both matmul sides, nearest and one directed mode."""
    done = 0
    for i, mode in enumerate(["rne", DIRECTED[FMTS.index(fmt) % 4]]):
        for rows in (1, 2):
            seed = 7 * i + rows + FMTS.index(fmt)
            done += sound(rgraph(seed, rows), rbox(seed, 3 * rows), fmt, mode, exact, 12, seed) is not None
    assert done >= 2  # (fp8's sigmoid hulls may reach exp's overflow: those graphs are refused)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rne", "rna", *DIRECTED])
@pytest.mark.parametrize("fmt", FMTS)
def test_random_graphs_every_format_and_mode_sweep(fmt, mode):
    for seed in range(4):
        for rows in (1, 2):
            for exact in (True, False):
                sound(rgraph(seed, rows), rbox(seed, 3 * rows), fmt, mode, exact, 40, seed)


@pytest.mark.parametrize("fmt", FMTS)
def test_fast_no_tighter_than_exact_every_format(fmt):
    """The same statement in both columns: every fast step >= the exact one."""
    done = 0
    for i, mode in enumerate(["rne", DIRECTED[FMTS.index(fmt) % 4]]):
        for rows in (1, 2):
            seed = 7 * i + rows + FMTS.index(fmt)
            st = statement(rgraph(seed, rows), rbox(seed, 3 * rows), fmt, mode, kernel_ulps=_k(mode),
                           input_exact=bool(rows % 2), column="fast")
            try:
                fast = propagate(st)
            except Rejected:
                continue
            exact = propagate({k: v for k, v in st.items() if k != "column"})
            _ratio_ok(fast, exact)
            done += 1
    assert done >= 2


# -- the edges of each format --------------------------------------------------------------------

def _graph(ops: list[tuple[str, Any]], n: int, consts: dict[str, np.ndarray] | None = None) -> Graph:
    """x (1, n) through ``ops``: (op, constant or None) in turn (a constant: the second operand)."""
    c, nodes, cur = dict(consts or {}), [], "x"
    for i, (op, k) in enumerate(ops):
        ins = [cur]
        if k is not None:
            c[f"c{i}"] = np.asarray(k)
            ins.append(f"c{i}")
        nodes.append(Node(op, ins, f"v{i}"))
        cur = f"v{i}"
    return Graph([Value("x", (1, n), "float32")], c, nodes, [cur]).check()


def test_near_overflow_accepted_below_and_refused_where_the_run_overflows():
    f32 = np.float32
    g = _graph([("matmul", np.ones((2, 1), f32)), ("mul", np.array([2.0], f32))], 2)
    # (bfloat16 and binary32 near their overflow: the fast column refuses bounds above ~2^70,
    # "error bounds too large", before its overflow rule is reached; 2^60 is accepted)
    edges = [("binary16", 15000, 16380), ("float8_e4m3fn", 40, 120), ("bfloat16", 2.0**60, 2.0**126)]
    for fmt, ok, bad in edges:
        r = sound(g, [(Q(ok) / 2, Q(ok))] * 2, fmt, "rne", True, 8)
        assert r is not None and np.all(r[1] > 0), fmt
        top = emulate(g, {"x": np.full((1, 2), float(bad))}, fmt)[0]
        assert not np.isfinite(top).all(), (fmt, top)  # (inf, or NaN in e4m3fn)
        with pytest.raises(Rejected, match="overflow|too large"):
            propagate(statement(g, [(Q(bad) / 2, Q(bad))] * 2, fmt, column="fast"))


@pytest.mark.parametrize("fmt,lo,hi", [("binary16", -22, -18), ("float8_e5m2", -15, -12),
                                       ("binary32", -140, -130), ("e5m10-nosub", -14, -12),
                                       ("bfloat16", -130, -126)])
def test_tiny_values_in_the_subnormal_range(fmt, lo, hi):
    """Products and quotients that underflow (subnormal or flushed), sums that cancel there."""
    f32 = np.float32
    W = np.array([[0.3, -0.7], [0.45, 0.6]], f32)
    g = Graph([Value("x", (1, 2), "float32")], {"W": W, "k": np.array([0.1], f32), "c": np.array([3.0], f32)},
              [Node("matmul", ["x", "W"], "m"), Node("mul", ["m", "k"], "p"), Node("div", ["p", "c"], "q"),
               Node("sub", ["q", "m"], "s"), Node("relu", ["s"], "r"), Node("add", ["r", "q"], "y")],
              ["y"]).check()
    box = [(Q(2) ** lo, Q(2) ** hi), (Q(2) ** lo, Q(3, 2) * Q(2) ** lo)]
    for mode in ("rne", "rtz"):
        for exact in (True, False):
            r = sound(g, box, fmt, mode, exact, 24)
            assert r is not None and np.all(r[1] > 0), (fmt, mode)


@pytest.mark.parametrize("fmt", ["bfloat16", "binary16", "float8_e4m3fn", "binary32"])
def test_constants_not_in_the_format_and_division_near_its_resolution(fmt):
    """Divisors 1 + 2^-9 (bf16, fp8: fl(c) = 1), 3.0001, 0.1 and 1.5 2^-24 (half-way between two
    binary16 subnormals), float64 constants that no format here holds; a divisor that rounds to 0
    is refused (the float run divides by 0)."""
    f64 = np.float64
    for c in (1 + 2.0**-9, 3.0001, 0.1, 1.5 * 2.0**-24, 1 / 3):
        if fmt == "float8_e4m3fn" and c < 2.0**-9:
            continue
        g = _graph([("mul", np.array([0.1, -1 / 3], f64)), ("div", np.array([c], f64)),
                    ("add", np.array([1e-5, 2.0**-7], f64)), ("sub", np.array([[1 / 7, 0.2]], f64))], 2)
        hi = Q(1, 4) if c > 1e-3 else Q(1, 2**14)
        for mode in ("rne", "rup"):
            r = sound(g, [(-hi, hi), (hi / 2, hi)], fmt, mode, False, 16)
            assert r is not None, (fmt, c)
    g = _graph([("div", np.array([2.0**-30], f64))], 1)
    with pytest.raises(Rejected, match="contains 0"):
        propagate(statement(g, [(Q(0), Q(1, 2**40))], "binary16", column="fast"))


@pytest.mark.parametrize("fmt", ["binary32", "binary16", "bfloat16", "float8_e5m2"])
def test_relu_exactly_at_zero_dead_and_live(fmt):
    """relu(x - c) with x = c exactly (0 in the reals; the float run's 0 or fl(x) - fl(c) where c
    is not a value of the format), inputs on [-1, 0] (dead: hi = 0) and [0, 1] (lo = 0)."""
    c = np.array([[0.1, 0.75, 0.0, 0.0]], np.float32)
    g = _graph([("sub", c), ("relu", None), ("matmul", np.array([[1.0], [-1.0], [0.5], [0.25]], np.float32)),
                ("relu", None)], 4)
    box = [(Q(float(c[0, 0])),) * 2, (Q(3, 4), Q(3, 4)), (Q(-1), Q(0)), (Q(0), Q(1))]
    for exact in (True, False):
        for mode in ("rne", "rna" if fmt == "float8_e5m2" else "rdn"):  # (e5m2 directed: 4 u = 1)
            b = box if not exact else [(Q(1, 8), Q(1, 8))] + box[1:]
            assert sound(g, b, fmt, mode, exact, 16) is not None


def _values(dt: Any, lo: float, hi: float) -> np.ndarray:
    """Every finite value of a 8- or 16-bit float type in [lo, hi] (as that type)."""
    bits = {1: np.uint8, 2: np.uint16}[np.dtype(dt).itemsize]
    v = np.arange(2 ** (8 * np.dtype(dt).itemsize), dtype=np.int64).astype(bits).view(dt)
    with np.errstate(invalid="ignore"):  # (NaN patterns)
        f = v.astype(np.float64)
    return v[np.isfinite(f) & (f >= lo) & (f <= hi)]


@pytest.mark.parametrize("fmt,dt,lo,hi,k", [("binary16", np.float16, -14, -9, 4),
                                            ("float8_e5m2", ml_dtypes.float8_e5m2, -14, -9, 1),
                                            ("bfloat16", ml_dtypes.bfloat16, -100, -80, 4),
                                            ("binary32", np.float32, -110, -80, 4)])
def test_sigmoid_overflow_tail_with_the_runtime_formula(fmt, dt, lo, hi, k):
    """The runtime's own kernel 1/(1 + exp(-x)) in the format (numpy / ml_dtypes: exp overflows
    to inf below about -emax ln 2, the result is 0) on every value of the box (binary32: a sample),
    against mpmath's sigmoid: within the fast epsilon, and the tail is reached (zeros)."""
    from torchlean.runtime.rules import RULES

    g = Graph([Value("x", (1, 1), "float32")], {}, [Node("sigmoid", ["x"], "y")], ["y"]).check()
    eps = float(propagate(statement(g, [(Q(lo), Q(hi))], fmt, kernel_ulps=Q(k), column="fast"))[-1][0])
    if dt is np.float32:
        x = np.concatenate([np.float32([lo, hi]), np.random.default_rng(0).uniform(lo, hi, 3000).astype(dt)])
    else:
        x = _values(dt, lo, hi)
    with np.errstate(over="ignore"):
        y = np.asarray(RULES["sigmoid"].forward(np, x), np.float64)
    with mpmath.workdps(60):
        ref = np.array([float(1 / (1 + mpmath.exp(-mpmath.mpf(float(v))))) for v in x.astype(np.float64)])
    assert (y == 0).any() and np.all(np.isfinite(y))
    assert np.max(np.abs(y - ref)) <= eps, (np.max(np.abs(y - ref)), eps)


@pytest.mark.parametrize("fmt,n", [("binary16", 2000), ("bfloat16", 200), ("binary32", 1000),
                                   ("float8_e4m3fn", 14),
                                   pytest.param("binary32", 4000, marks=pytest.mark.slow)])
def test_long_dot_products(fmt, n):
    """x (1, n) @ W (n, 2): one column positive (no cancellation: the accumulator stagnates where
    its ulp passes the terms), one of mixed signs; W float32 (not values of the format); the
    emulator's sequential sum and, in binary16/32, numpy's own matmul (another order)."""
    rng = np.random.default_rng(n)
    W = np.stack([rng.uniform(0.5, 1, n), rng.uniform(-1, 1, n)], axis=1).astype(np.float32)
    g = _dot_graph(W)
    box = [(Q(7, 8), Q(1))] * n
    eps, obs = sound(g, box, fmt, "rne", True, 3, k=Q(1, 2))
    assert np.all(obs > 0)
    dt = {"binary16": np.float16, "binary32": np.float32}.get(fmt)
    if dt is not None:
        x = points(box, fmt, 3, 0, True)
        got = x.astype(dt) @ W.astype(dt)
        ref = np.stack([emulate(g, {"x": p[None]}, REF)[0].ravel() for p in x])
        assert np.all(np.abs(got.astype(np.float64) - ref) <= eps)


# -- the checker rejects mutated fast certificates ---------------------------------------------------

def _forge(cert: dict[str, Any], edit: Any) -> dict[str, Any]:
    """A copy with ``edit`` applied to it and the statement's digest recomputed (a forger's)."""
    c = copy.deepcopy(cert)
    edit(c)
    c["digest"] = digest(c["statement"])
    return c


def _rejected(c: dict[str, Any], word: str = "") -> None:
    v = check(c)
    assert not v.ok and word in v.reason, v.reason


@pytest.fixture(scope="module")
def fp16_cert():
    """A binary16 certificate over every row, rounded inputs, tight kernels (half an ulp)."""
    return bound_certificate(rgraph(5, 2), rbox(5, 6), "binary16", kernel_ulps=Q(1, 2), input_exact=False,
                             column="fast")


def test_fp16_certificate_replays_and_its_claim_holds(fp16_cert):
    v = check(fp16_cert)
    assert v.ok and FAST_TRUST in v.trusted, v.reason
    eps = np.array([float(Q(e)) for e in fp16_cert["statement"]["epsilon"]])
    obs, _ = observed(rgraph(5, 2), points(rbox(5, 6), "binary16", 24, 1, False), "binary16", "rne")
    assert np.all(obs <= eps)


def test_weaker_assumptions_rejected(fp16_cert):
    """Each statement field that makes errors larger, re-signed: the claimed steps no longer hold."""
    st = fp16_cert["statement"]
    for edit in (
        lambda c: c["statement"].update(mode="rtz"),  # (u doubles)
        lambda c: c["statement"].update(kernel_ulps="8"),
        lambda c: c["statement"].update(format={**st["format"], "mbits": 7, "ebits": 8, "name": "bfloat16"}),
        lambda c: c["statement"].update(format={**st["format"], "mbits": 3, "ebits": 4, "name": "e4m3"}),
        lambda c: c["statement"].update(input_box=[[str(Q(a) - 1), str(Q(b) + 1)]
                                                   for a, b in st["input_box"]]),
    ):
        _rejected(_forge(fp16_cert, edit))


def test_exact_inputs_claim_rejected_as_rounded_inputs():
    g, box = rgraph(6, 1), rbox(6, 3)
    cert = bound_certificate(g, box, "binary16", kernel_ulps=Q(1, 2), input_exact=True, column="fast")
    assert check(cert).ok
    _rejected(_forge(cert, lambda c: c["statement"].update(input_exact=False)), "claimed error")
    tiny = [(Q(2) ** -22, Q(2) ** -18)] * 3  # (subnormal inputs: a format without them errs more)
    cert = bound_certificate(g, tiny, "binary16", kernel_ulps=Q(1, 2), input_exact=False, column="fast")
    # (named for what it is: a known name must name its parameters, audit27)
    _rejected(_forge(cert, lambda c: c["statement"]["format"].update(subnormals=False, name="e5m10-nosub")),
              "claimed error")


def test_shrunk_steps_truncated_steps_and_epsilon_rejected(fp16_cert):
    for i in (0, 3, len(fp16_cert["steps"]) - 1):
        c = copy.deepcopy(fp16_cert)
        c["steps"][i][0] = str(Q(c["steps"][i][0]) * Q(999, 1000))
        _rejected(c, "claimed error")
    c = copy.deepcopy(fp16_cert)
    c["steps"].pop()
    _rejected(c, "one step per graph node")
    c = copy.deepcopy(fp16_cert)
    c["steps"][2].pop()
    _rejected(c, "claimed terms")
    _rejected(_forge(fp16_cert, lambda c: c["statement"]["epsilon"].__setitem__(1, "0")), "epsilon")


def test_swapped_graph_rejected(fp16_cert):
    """A weight scaled (the model re-fingerprinted), an activation swapped, another graph."""
    g = rgraph(5, 2)
    for edit in (lambda g: g.constants.__setitem__("W1", g.constants["W1"] * 4),
                 lambda g: setattr(g.nodes[5], "op", "relu" if g.nodes[5].op != "relu" else "tanh")):
        h = copy.deepcopy(g)
        edit(h)
        ir = h.to_dict()
        c = _forge(fp16_cert, lambda c, ir=ir: c["statement"].update(graph=ir, model=model_id(ir)))
        _rejected(c)
        _rejected(_forge(fp16_cert, lambda c, ir=ir: c["statement"].update(graph=ir)), "fingerprint")


def test_column_field_mutations(fp16_cert):
    c = copy.deepcopy(fp16_cert)
    del c["statement"]["column"]
    _rejected(c, "digest")
    _rejected(_forge(fp16_cert, lambda c: c["statement"].update(column="FAST")), "unknown column")
    _rejected(_forge(fp16_cert, lambda c: c["statement"].update(ranges="crown")), "ranges")
    _rejected(_forge(fp16_cert, lambda c: c["statement"].update(ranges="ibp")), "ranges")
    # the exact column on the same re-signed statement: a replay of its own (no tighter claims
    # pass where its bounds exceed the fast ones; where they do not, the claim still holds)
    c = _forge(fp16_cert, lambda c: c["statement"].pop("column"))
    v = check(c)
    assert v.ok or "claimed error" in v.reason, v.reason


def test_split_certificate_leaf_mutation():
    g = rgraph(8, 1)
    cert = bound_certificate(g, rbox(8, 3), "bfloat16", kernel_ulps=Q(1, 2), column="fast", splits=2)
    assert cert["kind"] == "errorbound-split" and check(cert).ok

    def leaves(t):
        return [t] if "steps" in t else leaves(t["lo"]) + leaves(t["hi"])
    c = copy.deepcopy(cert)
    leaf = leaves(c["tree"])[-1]
    leaf["steps"][-1] = [str(Q(x) / 2) for x in leaf["steps"][-1]]
    _rejected(c, "claimed error")


@pytest.mark.parametrize("fmt", ["binary16", "bfloat16", "float8_e4m3fn"])
def test_two_way_broadcast_and_weights_that_cast_to_zero(fmt):
    """a (2, 1) + b (1, 3) of data (``_bcast`` both ways), a constant of shape (3,) times it, and a
    float64 weight matrix with entries that round to 0 (1e-200) or to subnormals in the format."""
    f64 = np.float64
    W = np.array([[0.7, -1e-200, 0.3], [2.0**-20, 0.5, -0.25]], f64)
    g = Graph([Value("x", (1, 2), "float32")], {"W": W, "k": np.array([0.3, -1.7, 1.1], f64)},
              [Node("reshape", ["x"], "a", {"shape": (2, 1)}), Node("matmul", ["x", "W"], "b"),
               Node("add", ["a", "b"], "s"), Node("mul", ["s", "k"], "p"), Node("sub", ["b", "p"], "y")],
              ["y"]).check()
    for exact in (True, False):
        assert sound(g, [(Q(-1), Q(1, 2)), (Q(1, 4), Q(3, 4))], fmt, "rne", exact, 16) is not None


def _grid(lo: Fraction, hi: Fraction, fmt: str, cap: int) -> np.ndarray:
    """The values of ``fmt`` a fine grid of [lo, hi] rounds to (every value where the format's
    spacing exceeds the grid's), at most ``cap`` of them (evenly picked)."""
    em = Emulator(fmt, "rne")
    v = np.unique([em.round(Q(x)) for x in np.linspace(float(lo), float(hi), 2000)])
    v = v[(v >= float(lo)) & (v <= float(hi))]
    return v[np.linspace(0, len(v) - 1, min(cap, len(v))).round().astype(int)]


@pytest.mark.parametrize("fmt,cap", [("float8_e4m3fn", 4), ("float8_e5m2", 4),
                                     *(pytest.param(f, 9, marks=pytest.mark.slow)
                                       for f in ("float8_e4m3fn", "float8_e5m2", "e4m3-nosub"))])
def test_fp8_exhaustive_over_input_values(fmt, cap):
    """In 8-bit formats the box's float inputs are few: every combination (up to cap^3 of them)
    is run, so the observed error is the true worst case over those inputs, not a sample."""
    for seed in (1, 2, 3):
        g, box = rgraph(seed), rbox(seed, 3)
        st = statement(g, box, fmt, kernel_ulps=Q(1, 2), column="fast")
        try:
            eps = np.array([float(e) for e in propagate(st)[-1]])
        except Rejected:
            continue
        axes = [_grid(a, b, fmt, cap) for a, b in box]
        pts = np.array(np.meshgrid(*axes)).reshape(3, -1).T
        obs, mag = observed(g, pts, fmt, "rne")
        assert np.all(obs <= eps + 2.0**-50 * mag), (seed, obs, eps)


ONE_OP = {
    "mul": [("mul", np.array([0.3]))], "div": [("div", np.array([0.3]))],
    "div near 1": [("div", np.array([1 + 2.0**-9]))], "add": [("add", np.array([0.3]))],
    "sub relu": [("sub", np.array([0.3])), ("relu", None)], "tanh": [("tanh", None)],
    "sigmoid": [("sigmoid", None)], "dot": [("matmul", np.array([[0.3], [-0.7]]))],
}


def _one_op_sweep(fmt: str, mode: str, n: int) -> None:
    """Each row alone on positive, negative and near-0 boxes, over the box's format values."""
    for name, ops in ONE_OP.items():
        m = 2 if name == "dot" else 1
        g = _graph(ops, m)
        for lo, hi in [(Q(1, 4), Q(4)), (Q(-4), Q(-1, 4)), (Q(-1, 64), Q(1, 64))]:
            for exact in (True, False):
                st = statement(g, [(lo, hi)] * m, fmt, mode, kernel_ulps=_k(mode), input_exact=exact,
                               column="fast")
                try:
                    eps = float(propagate(st)[-1][0])
                except Rejected:
                    continue
                v = _grid(lo, hi, fmt, n) if exact else np.linspace(float(lo), float(hi), n)
                pts = np.stack([v, v[::-1]], axis=1)[:, :m]
                obs, mag = observed(g, pts, fmt, mode)
                assert obs[0] <= eps + 2.0**-50 * mag[0], (name, float(lo), exact, obs[0], eps)


@pytest.mark.parametrize("fmt,mode", [("float8_e4m3fn", "rne"), ("e4m3-nosub", "rup")])
def test_one_row_at_a_time(fmt, mode):
    _one_op_sweep(fmt, mode, 16)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("mode", ["rne", "rna", *DIRECTED])
def test_one_row_at_a_time_sweep(fmt, mode):
    _one_op_sweep(fmt, mode, 80)


def _formula_run(op: str, x: float, fmt: str, mode: str) -> float:
    """The runtime's sigmoid 1/(1 + exp(-x)) or silu x/(1 + exp(-x)), each operation rounded in
    the mode (exp correctly rounded; on overflow IEEE rounding gives inf, or max_finite in the
    modes toward zero / down)."""
    em = Emulator(fmt, mode)
    den = em.binary("add", 1.0, em.transcendental("exp", -x, {}))
    return em.binary("div", 1.0 if op == "sigmoid" else x, den)


@pytest.mark.parametrize("fmt,lo,hi", [("binary16", -14, -13), ("bfloat16", -100, -95),
                                       ("binary32", -110, -100)])
@pytest.mark.parametrize("mode", ["rtz", "rdn", "rup", "rne"])
def test_sigmoid_tail_when_exp_saturates_at_max_finite(fmt, lo, hi, mode):
    """Round toward zero (or down), exp's overflow is max_finite, not inf: the kernel returns
    about 1/max_finite (x/max_finite for silu), far above sigmoid on a hull below -2 emax/3 (the
    tail rule's bound there). binary16 rtz on [-14, -13]: the run errs by 1.4e-5."""
    for op in ("sigmoid", "silu"):
        g = Graph([Value("x", (1, 1), "float32")], {}, [Node(op, ["x"], "y")], ["y"]).check()
        em = Emulator(fmt, "rne")
        xs = [em.round(Q(v)) for v in np.linspace(lo, hi, 9)]
        with mpmath.workdps(60):
            ref = [float((1 if op == "sigmoid" else mpmath.mpf(x)) / (1 + mpmath.exp(-mpmath.mpf(x))))
                   for x in xs]
        err = max(abs(_formula_run(op, x, fmt, mode) - r) for x, r in zip(xs, ref))
        for col, rg in (("fast", "fast"), ("exact", "ibp")):
            st = statement(g, [(Q(lo), Q(hi))], fmt, mode, kernel_ulps=Q(1), column=col, ranges=rg)
            eps = float(propagate(st)[-1][0])
            assert err <= eps, (op, col, err, eps)


def test_graphs_without_a_fast_row_fall_back_to_the_exact_column():
    """A cast has no fast row: the default column is the exact one (the
    fast walk would refuse it), and the certificate is made and replays. (const * data and data *
    data have one since h-fasttf, const / data since session 35: the default column is then the
    fast one, and it replays.)"""
    k = {"k": np.array([0.3], np.float32)}
    for nodes, c, col in [([Node("mul", ["k", "x"], "y")], k, "fast"),
                          ([Node("mul", ["x", "x"], "y")], {}, "fast"),
                          ([Node("div", ["k", "x"], "y")], k, "fast"),
                          ([Node("cast", ["x"], "y", {"dtype": "float64"})], {}, None)]:
        g = Graph([Value("x", (1, 2), "float32")], c, nodes, ["y"]).check()
        box = [(Q(1), Q(2))] * 2
        assert statement(g, box, ranges="fast").get("column") == col
        assert check(bound_certificate(g, box, ranges="fast")).ok
