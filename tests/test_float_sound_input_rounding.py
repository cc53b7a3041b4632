"""Which float-sound epsilons charge the rounding of a REAL input to the format (session 35, claim35).

The stronger reading of a float-sound claim, "for every real point x of the region, the network run
in the format on fl(x) (x rounded to nearest) satisfies it", needs |f_fmt(fl(x)) - f(x)| <= eps at
every real x of the box, not only at the format's values. The checker makes that charge where a
graph input's error is initialised: ``errorbound.propagate`` gives it the bound
``ctx.rnd(max(-lo, hi))`` (u|x| + eta) and ``fast_errors.propagate`` ``_up(u * mag + eta)``,
both only when the statement's ``input_exact`` is false; with ``input_exact`` true the input's
error is 0 (the points are taken to be values of the format already).

What these tests establish, against independent references (exact Fractions for the real network
and for round-to-nearest-even, numpy / ml_dtypes rounding and the runtime's own numpy / ml_dtypes
runs for the format, torch and onnxruntime at the rounded points):

- ``errorbound`` statements with ``input_exact`` false charge it, in both columns and every named
  format (binary64, binary32, binary16, bfloat16, float8_e4m3fn, float8_e5m2; on the identity also
  e3m4 and e3m2 with and without subnormals, 0.1 below their normal range): eps covers
  |f_fmt(fl(x)) - f(x)| at the box ends and at sampled real points (the format's values and the
  midpoints between them, where the rounding jumps, included) of a box around 0.1 narrower than an
  ulp, on an identity (ReLU of a positive box: eps is then the input's charge alone) and on a
  linear layer with a large weight and a cancelling bias;
- with ``input_exact`` true neither column charges it (identity: eps 0 or 1e-301 where fl(x) - x is
  a good part of an ulp), and a first layer's own rounding charge does not cover it either (a
  one-term product);
- ``tl.verify.bounds(..., float32=True)`` writes ``input_exact`` false: its bounds hold at fl(x);
- the float-sound VNN verdict (``verify.float32.verify_float32``: ``--float32``,
  ``robustness(float32=True)``, ``float_bab``'s walks) writes ``input_exact`` false and
  ``float_vnn.check_vnn_float`` refuses a statement with it true (claim35b: the stronger reading).
  End to end: no "unsat" / "verified" on a region whose real points round, in part, to a binary32
  input the float32 run (runtime, torch, onnxruntime) maps into the unsafe set (claim35 measured
  both while the statements were input_exact true); with a margin of 4 ulp the verdict is reached
  and its certificate replays; an old-style certificate (input_exact true) and one whose epsilon is
  below the input's charge are refused.
"""

from __future__ import annotations

import json
import math
import random
from decimal import Decimal
from fractions import Fraction as Q

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.certificates import check
from torchlean.floats.errorbound import bound_certificate, epsilons
from torchlean.floats.network import run_float

ml_dtypes = pytest.importorskip("ml_dtypes")

#: format -> (precision with the hidden bit, least normal exponent, the numpy / ml_dtypes type)
FORMATS = {
    "binary64": (53, -1022, np.float64),
    "binary32": (24, -126, np.float32),
    "binary16": (11, -14, np.float16),
    "bfloat16": (8, -126, ml_dtypes.bfloat16),
    "float8_e4m3fn": (4, -6, ml_dtypes.float8_e4m3fn),
    "float8_e5m2": (3, -14, ml_dtypes.float8_e5m2),
}
COLUMNS = ("exact", "fast")
C = Q(1, 10)  # the box's centre: no value of any binary format


#: eXmY formats (IEEE-style: bias 2^(X-1) - 1, so emin = 2 - 2^(X-1), precision Y + 1), with and
#: without subnormals: (precision, emin, subnormals)
GENERIC = {"e3m4": (5, -2, True), "e3m4-nosub": (5, -2, False), "e3m2": (3, -2, True),
           "e3m2-nosub": (3, -2, False)}


def rne(q: Q, fmt: str) -> Q:
    """q rounded to nearest, ties to even, in ``fmt`` (exact; no overflow at these magnitudes)."""
    p, emin, sub = GENERIC[fmt] if fmt in GENERIC else (*FORMATS[fmt][:2], True)
    if q == 0:
        return q
    a = abs(q)
    if not sub and a < Q(2) ** emin:  # (no subnormals: 0 or the least normal, whichever is nearer;
        # at the tie either: only |fl(x) - x| is used, the same for both)
        return Q(0) if 2 * a <= Q(2) ** emin else Q(2) ** emin * (1 if q > 0 else -1)
    e = a.numerator.bit_length() - a.denominator.bit_length()  # floor(log2 a) is e or e - 1
    if Q(2) ** e > a:
        e -= 1
    quantum = Q(2) ** (max(e, emin) - p + 1)
    k, rest = divmod(a, quantum)
    if rest * 2 > quantum or (rest * 2 == quantum and k % 2):
        k += 1
    return k * quantum if q > 0 else -k * quantum


def ulp(q: Q, fmt: str) -> Q:
    """The format's spacing at q (subnormal spacing below 2^emin, also without subnormals)."""
    p, emin = GENERIC[fmt][:2] if fmt in GENERIC else FORMATS[fmt][:2]
    e = math.floor(math.log2(q))
    return Q(2) ** (max(e, emin) - p + 1)


def test_reference_rounding_agrees_with_numpy_and_ml_dtypes() -> None:
    """The Fraction rounding above against numpy's / ml_dtypes' conversion from binary64 (one
    correct rounding; checked here at points next to ties, where a double rounding would differ)."""
    for fmt, (_, _, dt) in FORMATS.items():
        u = ulp(C, fmt)
        base = rne(C, fmt)
        pts = [base + k * u / 2 + d for k in range(-4, 5) for d in (Q(0), u / 2**20, -u / 2**20)]
        for x in pts:
            if fmt == "binary64":
                got = Q(float(x))  # (CPython's Fraction -> float: correctly rounded)
            else:
                assert Q(float(x)) == x  # a binary64 point: numpy / ml_dtypes round it once
                got = Q(float(np.asarray(float(x)).astype(dt)))
            assert got == rne(x, fmt), (fmt, x)


def _box(fmt: str) -> tuple[Q, Q]:
    """0.1 -+ 3/7 ulp: radius below one ulp, ends that are values of no binary format (a 7 in
    every denominator; 2/5 ulp made 0.1 - r a value of binary16)."""
    r = ulp(C, fmt) * 3 / 7
    return C - r, C + r


def _points(fmt: str, lo: Q, hi: Q, n: int = 40) -> list[Q]:
    """The box's ends, every value of ``fmt`` and every midpoint between two of them in the box
    (and just either side of it: where the rounding jumps), and ``n`` random rationals."""
    u = ulp(C, fmt)
    pts = [lo, hi]
    k = math.floor((lo - rne(C, fmt)) / (u / 2)) - 1
    while True:
        m = rne(C, fmt) + k * u / 2
        if m > hi:
            break
        pts += [x for x in (m, m - Q(1, 2**200), m + Q(1, 2**200)) if lo <= x <= hi]
        k += 1
    rng = random.Random(35)
    pts += [lo + (hi - lo) * Q(rng.randrange(10**12), 10**12) for _ in range(n)]
    return pts


def _certificate(graph, lo: Q, hi: Q, fmt: str, column: str, input_exact: bool) -> Q:
    """The checked epsilon of the graph's one output over [lo, hi] (the checker replays it)."""
    kw = {"ranges": "fast", "column": "fast"} if column == "fast" else {"column": "exact"}
    cert = bound_certificate(graph, [(lo, hi)], fmt, input_exact=input_exact, **kw)
    assert cert["statement"]["input_exact"] is input_exact
    assert cert["statement"].get("column", "exact") == column
    v = check(cert)
    assert v.ok, v.reason
    (eps,) = epsilons(cert)
    return eps


def _runtime(graph, xf: Q, fmt: str) -> Q:
    """The runtime's own run in the format (numpy / ml_dtypes kernels) at the format value xf."""
    dt = FORMATS[fmt][2]
    y = run_float(graph, np.array([[float(xf)]]), dt)
    return Q(float(y.ravel()[0]))


def _identity():
    m = nn.Sequential(nn.ReLU()).eval()
    return tl.trace(m, tl.zeros(1, 1))


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_identity_epsilon_is_the_input_rounding(fmt: str, column: str) -> None:
    """y = relu(x) = x on a positive box: the run in the format returns fl(x) exactly, so its error
    at a real x is fl(x) - x. With input_exact false eps covers it at every point; with input_exact
    true eps is (about) 0 and the rounding at those same real points exceeds it."""
    g = _identity()
    lo, hi = _box(fmt)
    assert rne(lo, fmt) != lo and rne(hi, fmt) != hi
    eps = _certificate(g, lo, hi, fmt, column, input_exact=False)
    worst = Q(0)
    for x in _points(fmt, lo, hi):
        xf = rne(x, fmt)
        assert _runtime(g, xf, fmt) == xf  # the run's output is fl(x) itself
        worst = max(worst, abs(xf - x))
    assert worst > ulp(C, fmt) / 4  # rounding matters in this box
    assert worst <= eps, (fmt, column, float(worst), float(eps))
    assert eps <= ulp(C, fmt)  # (and it is the input's charge, not a blanket bound)
    eps_exact_inputs = _certificate(g, lo, hi, fmt, column, input_exact=True)
    assert eps_exact_inputs < worst  # not charged: the weaker claim's epsilon misses fl(x) - x


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("fmt", list(GENERIC))
def test_identity_epsilon_covers_the_input_rounding_in_small_formats(fmt: str, column: str) -> None:
    """The same identity in eXmY formats where 0.1 is below the normal range: rounded on the
    subnormal grid, or (without subnormals) to 0, an error of 0.1 that only eta covers. No numpy
    type runs these formats; relu is exact, so the run's output is fl(x) itself."""
    g = _identity()
    lo, hi = _box(fmt)
    assert lo > 0  # (relu is the identity on the box)
    eps = _certificate(g, lo, hi, fmt, column, input_exact=False)
    worst = max(abs(rne(x, fmt) - x) for x in _points(fmt, lo, hi))
    assert worst > ulp(C, fmt) / 8
    assert worst <= eps, (fmt, column, float(worst), float(eps))
    assert _certificate(g, lo, hi, fmt, column, input_exact=True) < worst


#: a large weight per format (a value of the format: 3 * 2^k) and the box's inputs' image y ~ w x
WEIGHT = {"float8_e4m3fn": 48.0}


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_linear_epsilon_covers_the_run_at_rounded_real_inputs(fmt: str, column: str) -> None:
    """y = w x + b, w large and b ~ -w fl(0.1) (the output near 0, so the input's rounding, times
    w, is most of the error): eps (input_exact false) is at least |f_fmt(fl(x)) - f(x)| for the
    runtime's run and for two correctly rounded emulations (product then sum; fused), at the box
    ends and sampled real points; f exact in Fractions on the stored float32 weights."""
    w = WEIGHT.get(fmt, 768.0)
    b = float(np.float32(-float(Q(w) * rne(C, fmt))))
    m = nn.Sequential(nn.Linear(1, 1)).eval()
    m[0].weight.data[...] = np.array([[w]], np.float32)
    m[0].bias.data[...] = np.array([b], np.float32)
    g = tl.trace(m, tl.zeros(1, 1))
    lo, hi = _box(fmt)
    eps = _certificate(g, lo, hi, fmt, column, input_exact=False)
    W, B = Q(w), Q(b)
    wf, bf = rne(W, fmt), rne(B, fmt)  # the weights as the format holds them
    worst = Q(0)
    for x in _points(fmt, lo, hi):
        real = W * x + B
        xf = rne(x, fmt)
        runs = [_runtime(g, xf, fmt), rne(rne(wf * xf, fmt) + bf, fmt), rne(wf * xf + bf, fmt)]
        worst = max([worst] + [abs(y - real) for y in runs])
    assert worst > 0
    assert worst <= eps, (fmt, column, float(worst), float(eps))


@pytest.mark.parametrize("column", COLUMNS)
def test_a_first_layer_rounding_charge_does_not_cover_the_input_rounding(column: str) -> None:
    """y = 3x (no bias): with input_exact true eps is the product's charge, about u|3x|; at a real
    x whose rounding and the product's (a tie, to even) point the same way the binary32 run is off
    by 3.5 ulp(0.1), about 1.5 times that. So audit46's data point (a linear layer's charge
    happening to cover the input's rounding) is no rule; input_exact false covers it."""
    m = nn.Sequential(nn.Linear(1, 1, bias=False)).eval()
    m[0].weight.data[...] = np.array([[3.0]], np.float32)
    g = tl.trace(m, tl.zeros(1, 1))
    u = ulp(C, "binary32")
    # a binary32 value xf next to 0.1 with 3 xf a tie of binary32 (3 m = 2 mod 4, m = xf / u), the
    # real point x half an ulp from it on the side the tie rounds to, the box xf -+ 4/7 ulp
    xf = next(v for v in (rne(C, "binary32") + k * u for k in range(4)) if (3 * (v / u)) % 4 == 2)
    lo, hi = xf - u * 4 / 7, xf + u * 4 / 7
    d = rne(3 * xf, "binary32") - 3 * xf
    assert abs(d) == 2 * u  # (the tie: half of 3 xf's ulp, 4u)
    x = xf + (u / 2 - Q(1, 2**200)) * (-1 if d > 0 else 1)
    assert lo <= x <= hi and rne(x, "binary32") == xf
    err = abs(_runtime(g, xf, "binary32") - 3 * x)
    assert err == abs(rne(3 * xf, "binary32") - 3 * x)  # the runtime is the correctly rounded product
    assert err > _certificate(g, lo, hi, "binary32", column, input_exact=True)
    assert err <= _certificate(g, lo, hi, "binary32", column, input_exact=False)


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_point_input_is_charged_its_own_rounding(fmt: str, column: str) -> None:
    """claim35b: a point input [x, x] (input_exact false) is charged |fl(x) - x| (exact column) or
    u|x| + eta (fast column) when x is no value of the format, and nothing when it is one: fl(x) = x.
    At x = 0.1 the identity's eps covers the run's error fl(0.1) - 0.1; at x = fl(0.1) the run is
    exact and eps is (about) 0; on y = w x + b at that point eps covers the runtime's and the
    correctly rounded emulations' errors (f exact in Fractions)."""
    g = _identity()
    xf = rne(C, fmt)
    assert xf != C
    eps = _certificate(g, C, C, fmt, column, input_exact=False)
    assert _runtime(g, xf, fmt) == xf
    assert abs(xf - C) <= eps <= ulp(C, fmt)
    if column == "exact":
        assert eps <= abs(xf - C) * Q(1001, 1000)  # (the point's own rounding, rounded up)
    assert _certificate(g, xf, xf, fmt, column, input_exact=False) < ulp(C, fmt) / 2**20
    x64 = Q(float(C))  # binary64's 0.1: a float the fast column reads exactly, no value of fmt
    if fmt != "binary64":
        assert rne(x64, fmt) != x64
        assert abs(rne(x64, fmt) - x64) <= _certificate(g, x64, x64, fmt, column, input_exact=False)
    w = WEIGHT.get(fmt, 768.0)
    b = float(np.float32(-float(Q(w) * xf)))
    m = nn.Sequential(nn.Linear(1, 1)).eval()
    m[0].weight.data[...] = np.array([[w]], np.float32)
    m[0].bias.data[...] = np.array([b], np.float32)
    lin = tl.trace(m, tl.zeros(1, 1))
    wf, bf = rne(Q(w), fmt), rne(Q(b), fmt)
    for x in (xf, C):
        e = _certificate(lin, x, x, fmt, column, input_exact=False)
        real = Q(w) * x + Q(b)
        xr = rne(x, fmt)
        runs = [_runtime(lin, xr, fmt), rne(rne(wf * xr, fmt) + bf, fmt), rne(wf * xr + bf, fmt)]
        assert max(abs(y - real) for y in runs) <= e, (fmt, column, float(x))


# -- the public paths ----------------------------------------------------------------------------

F0 = float(np.float32(0.1))  # binary32 0.1 (below the real 0.1)
F1 = float(np.nextafter(np.float32(0.1), np.float32(1)))  # the next binary32 value
LOW = F0 + (F1 - F0) / 4  # a binary64 point that rounds to F0 in binary32


def _relu2():
    return nn.Sequential(nn.ReLU()).eval()


def test_bounds_float32_hold_at_the_rounded_real_inputs() -> None:
    """``tl.verify.bounds(float32=True)`` (input_exact false): on y = relu(x), x in [LOW, F1], the
    float32 run at the real point LOW is relu(F0) = F0, below every real output; the real bounds miss
    it, the float32 ones contain it."""
    m = _relu2()
    x, eps = np.array([[(LOW + F1) / 2]]), (F1 - LOW) / 2
    assert Q(x[0, 0]) - Q(eps) == Q(LOW) and Q(x[0, 0]) + Q(eps) == Q(F1)  # (the box, exactly)
    y32 = m(tl.tensor(np.array([[LOW]]))).numpy()
    assert float(y32[0, 0]) == F0
    assert not tl.verify.bounds(m, x, eps).contains(y32)
    assert tl.verify.bounds(m, x, eps, float32=True).contains(y32)


def _walk(cert):
    """The errorbound statements of a vnn-unsat-float certificate (either form)."""
    if "errorbound" in cert:
        yield cert["errorbound"]["statement"]
    for k in ("parts", "lo", "hi"):
        if isinstance(cert.get(k), dict):
            yield from _walk(cert[k])


def _robust_box():
    """Two inputs, y = relu(x): X_0 in [LOW, F1], X_1 = F0. Real: y0 - y1 = X_0 - F0 >= LOW - F0 > 0
    (robust for label 0). The one binary32 point of the box, (F1, F0), is robust too; every real
    X_0 in [LOW, F0 + half an ulp) rounds to F0: a tie in binary32, not robust."""
    x = np.array([[(LOW + F1) / 2, F0]])
    eps = np.array([[(F1 - LOW) / 2, 0.0]])
    return x, eps


def test_float32_robustness_covers_the_rounded_real_points() -> None:
    """``robustness(float32=True)`` is about every real point of the box rounded to binary32
    (claim35b): on the quarter-ulp box the float32 run at the real box point (LOW, F0), as
    ``tl.tensor`` and torch round it, is a tie, so the answer is not "verified" (claim35 measured
    "verified" while the statements were written input_exact true). The one binary32 point of the
    box, (F1, F0), is robust, so it is no "falsified" either."""
    torch = pytest.importorskip("torch")
    m = _relu2()
    x, eps = _robust_box()
    assert Q(x[0, 0]) - Q(eps[0, 0]) == Q(LOW)
    pt = np.array([[LOW, F0]])
    y = m(tl.tensor(pt)).numpy().ravel()
    yt = torch.relu(torch.tensor(pt, dtype=torch.float32)).numpy().ravel()
    assert y[0] == y[1] and yt[0] == yt[1]  # the stronger reading is false here
    assert float(np.float32(LOW)) == F0 and [F1] == [v for v in (F0, F1) if LOW <= v <= F1]
    y = m(tl.tensor(np.array([[F1, F0]]))).numpy().ravel()
    assert y[0] > y[1]  # (the weaker one, about binary32 points only, is true)
    r = tl.verify.robustness(m, x, eps, label=0, timeout=20, float32=True)
    assert r.verdict in ("unknown", "timeout"), (r.verdict, r.reason)


def _margin_case():
    """X_0 in [0.1f + 4 ulp, 0.1f + 5 ulp], X_1 = 0.1f: a real margin of 4 ulp, above the input's
    rounding (half an ulp per input): "verified" with every statement input_exact false."""
    lo, hi = F0 + 4 * (F1 - F0), F0 + 5 * (F1 - F0)
    x, eps = np.array([[(lo + hi) / 2, F0]]), np.array([[(hi - lo) / 2, 0.0]])
    r = tl.verify.robustness(_relu2(), x, eps, label=0, timeout=20, float32=True)
    assert r.verdict == "verified", r.reason
    stmts = list(_walk(r.certificate))
    assert stmts and all(s["input_exact"] is False for s in stmts)
    # eps covers the input's rounding: at least |fl(x) - x| for a real x of the box (relu is exact
    # on it, so the run's error at x is fl(x) - x, up to half an ulp of 0.1f)
    worst = max(abs(rne(Q(v), "binary32") - Q(v)) for v in np.linspace(lo, hi, 101))
    assert worst > (Q(F1) - Q(F0)) / 4
    assert all(epsilons({"statement": s})[0] >= worst for s in stmts)  # (output 0 reads X_0)
    return r


def _ebs(cert):
    """The errorbound certificates of a vnn-unsat-float certificate (either form)."""
    if "errorbound" in cert:
        yield cert["errorbound"]
    for k in ("parts", "lo", "hi"):
        if isinstance(cert.get(k), dict):
            yield from _ebs(cert[k])


def _forge(cert, change):
    """A copy with ``change(statement)`` applied to every errorbound statement, each digest
    recomputed as the generator computes it (on the statement completed with the shared IR)."""
    from torchlean.certificates.core import digest

    c = json.loads(json.dumps(cert))
    for eb in _ebs(c):
        change(eb["statement"])
        full = {**eb["statement"], "graph": c["graph"]} if "graph" in c else eb["statement"]
        eb["digest"] = digest(full)
    return c


def test_check_vnn_float_refuses_input_exact_true_and_a_shrunk_charge() -> None:
    """Mutations of an accepted certificate (the 4 ulp case), digests recomputed: (1) every
    statement's input_exact set true, epsilons kept (so each errorbound part alone still replays:
    a larger epsilon than the input-exact walk needs) -- an old-style certificate: refused with a
    one-line reason naming input_exact; the errorbound checker alone accepts the part, so the
    refusal is the new rule's; (2) epsilon shrunk below the input's charge (to a quarter of |fl(x) -
    x| at the box's end), input_exact kept false: refused by the errorbound replay."""
    from torchlean.certificates.float_vnn import check_vnn_float
    from torchlean.certificates.lower import lower

    r = _margin_case()
    cert = r.certificate
    ir = cert.get("graph") or next(_ebs(cert))["statement"]["graph"]
    net = lower(ir)
    assert check_vnn_float(cert, net, r.spec).ok

    old = _forge(cert, lambda s: s.update(input_exact=True))
    for eb in _ebs(old):
        alone = {**eb, "statement": {**eb["statement"], "graph": ir}} if "graph" in old else eb
        assert check(alone).ok  # (the part is a valid errorbound certificate of the weaker claim)
    v = check_vnn_float(old, net, r.spec)
    assert not v.ok and "input_exact" in v.reason and "\n" not in v.reason, v.reason

    lo = Q(F0 + 4 * (F1 - F0))
    charge = abs(rne(lo + (Q(F1) - Q(F0)) / 2 - Q(1, 2**200), "binary32") - (lo + (Q(F1) - Q(F0)) / 2))
    small = str(charge / 4)
    shrunk = _forge(cert, lambda s: s.update(epsilon=[small] * len(s["epsilon"])))
    v = check_vnn_float(shrunk, net, r.spec)
    assert not v.ok and "epsilon" in v.reason and "< bound" in v.reason, v.reason


def test_cli_float32_no_unsat_where_a_real_region_point_rounds_unsafe(tmp_path, capsys) -> None:
    """End to end: an ONNX Relu and a VNN-LIB region X_0 in [0.1000000035, 0.1000000090], X_1 the
    binary32 0.1, unsafe Y_0 <= Y_1. onnxruntime's float32 run at the region's real point
    X_0 = 0.1000000035 (rounded to binary32 0.1) gives Y_0 = Y_1: unsafe, so ``verify --float32``
    must not print unsat (claim35 measured "unsat (float32-sound, checked)" with input_exact true
    statements). Real: Y_0 - Y_1 >= 2e-9 (the real verdict is unsat). A certificate of that old
    kind (its statement set input_exact true, digest recomputed) is refused by ``verify check``."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper

    from tests.test_onnx_exact import _model
    from torchlean.verify.__main__ import main

    net, prop = tmp_path / "relu.onnx", tmp_path / "p.vnnlib"
    relu = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 2])], ["y"])
    net.write_bytes(relu.SerializeToString())
    f0 = format(Decimal(F0), "f")  # (the exact decimal of binary32 0.1)
    lo, hi = "0.1000000035", "0.1000000090"
    assert Q(F0) < Q(lo) < (Q(F0) + Q(F1)) / 2 and Q(F1) <= Q(hi)

    def write(x0_lo: str, x0_hi: str) -> None:
        prop.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                        f"(declare-const Y_1 Real)\n(assert (>= X_0 {x0_lo}))\n(assert (<= X_0 {x0_hi}))\n"
                        f"(assert (>= X_1 {f0}))\n(assert (<= X_1 {f0}))\n(assert (<= Y_0 Y_1))\n")

    write(lo, hi)
    sess = ort.InferenceSession(str(net))
    y = sess.run(None, {"x": np.array([[float(lo), F0]], dtype=np.float32)})[0].ravel()
    assert y[0] <= y[1]  # onnxruntime's float32 run at the rounded real point: in the unsafe set
    assert main([str(net), str(prop), "--timeout", "20", "-q"]) == 0
    assert capsys.readouterr().out.strip().startswith("unsat")  # (the real network is safe)
    main([str(net), str(prop), "--float32", "-q", "--timeout", "20"])
    out = capsys.readouterr().out.strip()
    assert not out.startswith("unsat"), out

    # 4 ulp of margin: unsat, its certificate (input_exact false) accepted; the same with the
    # statements made input_exact true (the old kind) refused in one line
    cert = tmp_path / "c.json"
    write(format(Decimal(F0 + 4 * (F1 - F0)), "f"), format(Decimal(F0 + 5 * (F1 - F0)), "f"))
    assert main([str(net), str(prop), "--float32", "-q", "--timeout", "20", "--cert", str(cert)]) == 0
    assert capsys.readouterr().out.strip() == "unsat (float32-sound, checked)"
    good = json.loads(cert.read_text())
    assert all(s["input_exact"] is False for s in _walk(good))
    assert main(["check", str(cert), str(net), str(prop)]) == 0
    assert "binary32-sound" in capsys.readouterr().out
    cert.write_text(json.dumps(_forge(good, lambda s: s.update(input_exact=True))))
    assert main(["check", str(cert), str(net), str(prop)]) != 0
    text = capsys.readouterr()
    msg = (text.out + text.err).strip()
    assert "input_exact" in msg and "binary32-sound" not in msg, msg
