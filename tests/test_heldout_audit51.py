"""audit51: float claims where the float run overflows, reaches inf or NaN, underflows to
subnormals or zero, or runs in a low-precision format (binary16, bfloat16, float8_e4m3fn,
float8_e5m2): ``floats.bound_certificate`` (both error columns), ``python -m torchlean.floats
bound`` and ``python -m torchlean.verify NET PROP --float32``.

References, independent of the checker: the runtime's own run in the format (numpy float16 /
float32, ml_dtypes bfloat16 and float8: what the claims are about), onnxruntime on ONNX files
(float16 and float32 models), and the real value by mpmath at 200 bits at the same (rounded) input.

Found: no hole (TRUST_BOUNDARIES.md, "Audit audit51"). Planted in a scratch copy, each caught: the
e4m3fn sigmoid/silu no-infinity ``require`` removed (exact column: 2 failing; fast: 2), the exact
column's overflow ``require`` in ``Ctx.rnd`` (7) and the fast column's ``fits`` (5) removed, the
sigmoid/silu overflow tail (error |f| where exp(-x) is inf) dropped in the exact column (1) and
in the fast column (2, one a false ``unsat (binary32-sound)`` from ``verify --float32``).

Every box on which the run overflows, gives
NaN (e4m3fn has no infinity: exp(-x) inside sigmoid/silu, a sum past 448, a square inside layer
norm's variance, batch norm's 1/sqrt of a variance that rounds to 0) or gives -inf (log of an
underflowed softmax/exp/sigmoid) is refused by both columns, and each such refusal is pinned here
with the run's inf/NaN (or gross error) at a point of the box. Where the run saturates harmlessly
(binary16 exp(-x) -> inf so sigmoid -> 0, silu -> -0) the accepted epsilon covers it, checked at
every value of the format in the box.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates import check
from torchlean.floats import bound_certificate, epsilons
from torchlean.floats.network import run_float
from torchlean.spec.graph import Graph, Node, Value

mpmath = pytest.importorskip("mpmath")
ml_dtypes = pytest.importorskip("ml_dtypes")

DT = {"binary16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
      "float8_e5m2": ml_dtypes.float8_e5m2, "binary32": np.float32}
COLUMNS = [("exact", "ibp"), ("fast", "fast")]


@pytest.fixture(autouse=True)
def _prec():
    with mpmath.workprec(200):
        yield


def _g(nodes, consts=None, n=1) -> Graph:
    cs = {k: np.array(v, dtype=np.float64) for k, v in (consts or {}).items()}
    return Graph([Value("x", (1, n), "float32")], cs, nodes, [nodes[-1].output]).check()


def _run(g, x, fmt) -> np.ndarray:
    with np.errstate(all="ignore"):
        return run_float(g, np.array([x], dtype=np.float64), DT[fmt])[0].astype(np.float64)


def _mp(v):
    return mpmath.mpf(float(v))


def _refused(g, box, fmt, **kw) -> list[str]:
    """Each column's refusal message (asserting that it refuses)."""
    why = []
    for col, rg in COLUMNS:
        try:
            c = bound_certificate(g, box, fmt, "rne", ranges=rg, column=col, **kw)
        except Exception as e:  # noqa: BLE001 (Unsupported / Rejected / ValueError: a refusal)
            why.append(str(e))
            continue
        assert not check(c).ok, f"{col}: accepted epsilon {epsilons(c)} on {box} in {fmt}"
    return why


def _grid(fmt, lo, hi):
    """Every value of the format in [lo, hi] (<= 70,000 of them: the 8- and 16-bit formats)."""
    if fmt in ("binary16", "bfloat16"):
        bits = np.arange(1 << 16, dtype=np.uint16)
    else:
        bits = np.arange(1 << 8, dtype=np.uint8)
    with np.errstate(all="ignore"):
        v = bits.view(DT[fmt]).astype(np.float64)
    v = np.unique(v[np.isfinite(v)])
    return v[(v >= lo) & (v <= hi)]


def _worst(g, box, fmt, real, points) -> float:
    """max over the points of |run - real| / epsilon, per column (asserting a finite run)."""
    worst = 0.0
    for col, rg in COLUMNS:
        c = bound_certificate(g, box, fmt, "rne", ranges=rg, column=col)
        assert check(c).ok
        eps = [float(e) for e in epsilons(c)]
        for p in points:
            f = _run(g, p, fmt)
            assert np.isfinite(f).all(), f"{col}: the run is {f} at {p}, epsilon {eps} accepted"
            r = real(p)
            for fj, rj, e in zip(f, r, eps):
                worst = max(worst, float(abs(mpmath.mpf(fj) - rj)) / e)
    return worst


# -- (1) the run overflows or gives NaN somewhere in the box: refused ------------------------------

SIG = _g([Node("sigmoid", ["x"], "y")])
SILU = _g([Node("silu", ["x"], "y")])


@pytest.mark.parametrize("g", [SIG, SILU], ids=["sigmoid", "silu"])
def test_e4m3fn_sigmoid_whose_exp_overflows_to_nan_is_refused(g):
    # e4m3fn has no infinity: exp(10) = 22026 > 448 is NaN, and 1 / (1 + NaN) is NaN
    assert np.isnan(_run(g, [-10.0], "float8_e4m3fn")).all()
    assert all("overflow" in w or "NaN" in w for w in _refused(g, [(-12, -4)], "float8_e4m3fn"))


def test_binary16_exp_past_65504_is_refused():
    g = _g([Node("exp", ["x"], "y")])
    assert np.isinf(_run(g, [11.2], "binary16")).all()  # e^11.2 = 73130
    assert all("overflow" in w for w in _refused(g, [(9, 11.2)], "binary16"))
    assert all("overflow" in w for w in _refused(g, [(9, 11.2)], "float8_e5m2"))


def test_a_bias_that_takes_a_sum_past_448_is_refused_in_e4m3fn():
    g = Graph([Value("x", (1, 2), "float32")], {"W": np.ones((2, 1)), "b": np.array([416.0])},
              [Node("matmul", ["x", "W"], "h"), Node("add", ["h", "b"], "y")], ["y"]).check()
    assert _run(g, [24.0, 24.0], "float8_e4m3fn")[0] == 448  # 464, the tie, rounds to the even 448
    assert np.isnan(_run(g, [40.0, 40.0], "float8_e4m3fn")).all()  # 496: NaN, no infinity
    assert len(_refused(g, [(-40, 40)] * 2, "float8_e4m3fn")) == 2


@pytest.mark.parametrize("fmt,lo,hi", [("binary16", -180, 180), ("float8_e4m3fn", -12, 12)])
def test_layer_norm_whose_squares_overflow_is_refused(fmt, lo, hi):
    g = Graph([Value("x", (1, 4), "float32")], {"w": np.ones(4), "b": np.zeros(4)},
              [Node("layer_norm", ["x", "w", "b"], "y", {"eps": 1e-5})], ["y"]).check()
    x = [lo, hi, lo, hi]
    f = _run(g, x, fmt)
    # the real output is (-1, 1, -1, 1); the run's variance overflows (inf: output 0; NaN in e4m3fn)
    assert not (np.isfinite(f) & (np.abs(f - np.array([-1, 1, -1, 1])) < 0.5)).all(), f
    assert len(_refused(g, [(lo, hi)] * 4, fmt)) == 2


def test_batch_norm_whose_variance_rounds_to_zero_is_refused():
    g = Graph([Value("x", (1, 2), "float32")],
              {"m": np.zeros(2), "v": np.full(2, 1e-9), "w": np.ones(2), "b": np.zeros(2)},
              [Node("batch_norm", ["x", "m", "v", "w", "b"], "y", {"eps": 0.0})], ["y"]).check()
    assert np.isnan(_run(g, [0.0, 0.0], "binary16")).all()  # 0 * (1 / sqrt(fl16(1e-9) = 0))
    assert len(_refused(g, [(-1, 1)] * 2, "binary16")) == 2


@pytest.mark.parametrize("first", ["softmax", "exp", "sigmoid"])
def test_log_of_a_value_that_underflows_to_zero_is_refused(first):
    n = 2 if first == "softmax" else 1
    at = {"axis": -1} if first == "softmax" else {}
    g = _g([Node(first, ["x"], "s", at), Node("log", ["s"], "y")], n=n)
    box = [(-120, -100), (0, 1)][:n]
    f = _run(g, [-120.0, 1.0][:n], "binary32")
    assert np.isneginf(f[0])  # the reals: about -120, finite
    assert len(_refused(g, box, "binary32")) == 2


@pytest.mark.parametrize("c", [1e39, float("inf"), float("nan")])
def test_a_constant_that_is_no_finite_value_is_refused(c):
    g = _g([Node("mul", ["x", "c"], "h"), Node("mul", ["h", "z"], "y")], {"c": [c], "z": [0.0]})
    assert np.isnan(_run(g, [1.0], "binary32")).all()  # inf * 0 (reals: 0)
    assert len(_refused(g, [(1, 2)], "binary32")) == 2


@pytest.mark.parametrize("hi", [463, 464, 470])
def test_e4m3fn_inputs_rounded_past_448_are_refused(hi):
    g = _g([Node("relu", ["x"], "y")])
    with np.errstate(all="ignore"):
        assert np.isnan(ml_dtypes.float8_e4m3fn(465.0).astype(np.float32))  # past the 464 tie: NaN
    assert len(_refused(g, [(440, hi)], "float8_e4m3fn", input_exact=False)) == 2


# -- (2) near overflow and underflow, accepted: every value of the format in the box ---------------


@pytest.mark.parametrize("lo,hi", [(-12, -4), (-16, -11)])
def test_binary16_sigmoid_and_silu_where_exp_overflows_to_inf(lo, hi):
    """exp(-x) is inf for x <= -11.09 (e^11.09 > 65520): the run's sigmoid is 0 and silu -0 there,
    an error of |f(x)| that the certificate's tail term must carry ([-16, -11]: the whole box)."""
    xs = _grid("binary16", lo, hi)
    assert _run(SIG, [-12.0], "binary16")[0] == 0 and _run(SILU, [-12.0], "binary16")[0] == 0
    pts = [[v] for v in xs]
    assert _worst(SIG, [(lo, hi)], "binary16", lambda p: [1 / (1 + mpmath.exp(-_mp(p[0])))], pts) <= 1
    assert _worst(SILU, [(lo, hi)], "binary16",
                  lambda p: [_mp(p[0]) / (1 + mpmath.exp(-_mp(p[0])))], pts) <= 1


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2", "binary16", "bfloat16"])
def test_exp_and_softplus_up_to_near_the_top(fmt):
    xs = [[v] for v in _grid(fmt, -3, 5)][::max(1, len(_grid(fmt, -3, 5)) // 400)]
    g = _g([Node("exp", ["x"], "y")])
    assert _worst(g, [(-3, 5)], fmt, lambda p: [mpmath.exp(_mp(p[0]))], xs) <= 1
    g = _g([Node("softplus", ["x"], "y")])
    ys = [[v] for v in _grid(fmt, -14, 14)][::max(1, len(_grid(fmt, -14, 14)) // 400)]
    assert _worst(g, [(-14, 14)], fmt, lambda p: [mpmath.log(1 + mpmath.exp(_mp(p[0])))], ys) <= 1


def test_reciprocal_sqrt_of_binary16_subnormals():
    g = _g([Node("sqrt", ["x"], "s"), Node("div", ["one", "s"], "y")], {"one": [1.0]})
    xs = _grid("binary16", 1e-7, 1e-6)
    assert len(xs) == 15 and xs[0] < 2.0**-14  # subnormals k * 2^-24
    c = bound_certificate(g, [(1e-7, 1e-6)], "binary16", "rne", ranges="ibp", column="exact")
    assert check(c).ok
    e = float(epsilons(c)[0])
    assert max(abs(_run(g, [v], "binary16")[0] - float(1 / mpmath.sqrt(_mp(v)))) for v in xs) <= e


def test_bfloat16_batch_norm_with_a_subnormal_variance():
    g = Graph([Value("x", (1, 2), "float32")],
              {"m": np.zeros(2), "v": np.full(2, 1e-40), "w": np.ones(2), "b": np.zeros(2)},
              [Node("batch_norm", ["x", "m", "v", "w", "b"], "y", {"eps": 0.0})], ["y"]).check()
    xs = _grid("bfloat16", -1e-30, 1e-30)[::50]
    pts = [[v, -v] for v in xs]
    real = lambda p: [_mp(t) / mpmath.sqrt(_mp(1e-40)) for t in p]  # noqa: E731
    assert _worst(g, [(-1e-30, 1e-30)] * 2, "bfloat16", real, pts) <= 1


def test_e4m3fn_softmax_of_large_logits():
    g = _g([Node("softmax", ["x"], "y", {"axis": -1})], n=3)
    rng = np.random.default_rng(51)
    xs = _grid("float8_e4m3fn", 4, 14)
    pts = [list(rng.choice(xs, 3)) for _ in range(300)] + [[4, 14, 14], [14, 4, 4], [4, 4, 4]]

    def real(p):
        e = [mpmath.exp(_mp(t)) for t in p]
        return [v / sum(e) for v in e]

    assert _worst(g, [(4, 14)] * 3, "float8_e4m3fn", real, pts) <= 1


# -- (3) end to end: ONNX files, the CLIs, onnxruntime -------------------------------------------


def _onnx(path: Path, nodes, inits, n_in=1, n_out=1, f16=False) -> Path:
    from onnx import TensorProto as T
    from onnx import helper as h

    dt = T.FLOAT16 if f16 else T.FLOAT
    gr = h.make_graph(nodes, "g", [h.make_tensor_value_info("X", dt, [1, n_in])],
                      [h.make_tensor_value_info("Y", dt, [1, n_out])], inits)
    m = h.make_model(gr, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    path.write_bytes(m.SerializeToString())
    return path


def _vnnlib(path: Path, lo: str, hi: str, out: str) -> Path:
    path.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                    f"(assert (>= X_0 {lo}))\n(assert (<= X_0 {hi}))\n(assert {out})\n")
    return path


def _verify32(net, prop) -> str:
    r = subprocess.run([sys.executable, "-m", "torchlean.verify", str(net), str(prop), "--float32",
                        "--timeout", "5"], capture_output=True, text=True, timeout=300)
    return r.stdout + r.stderr


def _ort(net, x, dt=np.float32):
    """onnxruntime's output on the batch x (rows of inputs; the file's batch axis is 1: row by row)."""
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(str(net), providers=["CPUExecutionProvider"])
    rows = [s.run(None, {"X": np.array([r], dt)})[0][0] for r in np.atleast_2d(np.array(x, np.float64))]
    return np.array(rows, np.float64)


def test_float32_silu_that_is_minus_zero_is_never_unsat(tmp_path):
    """x * sigmoid(x) on [-100, -95]: real < 0 everywhere, the binary32 run -0.0 (exp(100) = inf),
    so the unsafe set Y_0 >= 0 is met by every binary32 run: no float-sound unsat (real: unsat)."""
    from onnx import helper as h

    net = _onnx(tmp_path / "silu.onnx", [h.make_node("Sigmoid", ["X"], ["s"]),
                                         h.make_node("Mul", ["X", "s"], ["Y"])], [])
    prop = _vnnlib(tmp_path / "p.vnnlib", "-100.0", "-95.0", "(>= Y_0 0.0)")
    for x in (-100.0, -97.5, -95.0):
        assert _ort(net, [[x]])[0, 0] == 0.0  # onnxruntime: -0.0, in the unsafe set
    out = _verify32(net, prop)
    assert not any(line.startswith("unsat") for line in out.splitlines()), out
    real = subprocess.run([sys.executable, "-m", "torchlean.verify", str(net), str(prop), "--timeout", "10"],
                          capture_output=True, text=True, timeout=300).stdout
    assert real.startswith("unsat"), real  # the reals: y < 0 on the box


def test_float32_inf_minus_inf_and_log_of_zero_are_refused(tmp_path):
    from onnx import helper as h
    from onnx import numpy_helper as nh

    net = _onnx(tmp_path / "d.onnx", [h.make_node("Exp", ["X"], ["e"]),
                                      h.make_node("Sub", ["e", "e"], ["Y"])], [])
    assert np.isnan(_ort(net, [[100.0]])[0, 0])  # inf - inf
    out = _verify32(net, _vnnlib(tmp_path / "d.vnnlib", "80.0", "100.0", "(>= Y_0 1.0)"))
    assert "overflow" in out and "unsat" not in out, out
    net = _onnx(tmp_path / "l.onnx", [h.make_node("Sub", ["X", "c"], ["h"]),
                                      h.make_node("Log", ["h"], ["Y"])],
                [nh.from_array(np.array([[0.1]], np.float32), "c")])
    assert np.isneginf(_ort(net, [[np.float32(0.1)]])[0, 0])  # log(0) at the box's first binary32
    out = _verify32(net, _vnnlib(tmp_path / "l.vnnlib", "0.1", "1.0", "(<= Y_0 -50.0)"))
    assert "outside the domain" in out and "unsat" not in out, out


def test_binary16_onnx_model_against_onnxruntime(tmp_path, capsys):
    """A float16 ONNX file: ``floats bound --format binary16`` refuses a box whose products near
    65504 may overflow, and on a smaller box its epsilon covers onnxruntime's and the runtime's
    float16 runs at every binary16 point of a grid."""
    from onnx import helper as h
    from onnx import numpy_helper as nh

    from torchlean.floats.__main__ import load_model, main

    W = np.array([[300.0, -200.0], [250.0, 280.0]], np.float16)
    b = np.array([[1000.0, -900.0]], np.float16)
    net = _onnx(tmp_path / "h.onnx", [h.make_node("MatMul", ["X", "W"], ["m"]),
                                      h.make_node("Add", ["m", "b"], ["Y"])],
                [nh.from_array(W, "W"), nh.from_array(b, "b")], 2, 2, f16=True)
    main(["bound", str(net), "--box", "200:210,-250:-240", "--format", "binary16", "--samples", "0"])
    assert "overflow" in capsys.readouterr().err
    g = load_model(str(net))
    c = bound_certificate(g, [(-3, 3), (-4, 4)], "binary16", "rne")
    assert check(c).ok
    eps = [float(e) for e in epsilons(c)]
    xs0, xs1 = _grid("binary16", -3, 3), _grid("binary16", -4, 4)
    xs0, xs1 = xs0[::len(xs0) // 23], xs1[::len(xs1) // 19]
    x = np.array([[a, d] for a in xs0 for d in xs1] + [[-3, -4], [3, 4], [-3, 4], [3, -4]])
    real = x @ W.astype(np.float64) + b.astype(np.float64)  # exact: 11-bit significands, small sums
    for f in (_ort(net, x, np.float16), np.array([_run(g, r, "binary16") for r in x])):
        assert (np.abs(f - real) <= eps).all(), (np.abs(f - real).max(axis=0), eps)
