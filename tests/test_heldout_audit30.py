"""audit30: the ONNX file against what the checker bounds, and the onnxruntime cross-check's silence.

Found (1): Clip with a bound left out was read as "no bound". ONNX defines the missing bound:
Clip-6's attribute defaults are -+float32's largest finite value (3.4028234663852886e38, whatever
x's type), Clip-11's omitted ``min``/``max`` inputs the lowest/largest finite value of x's type. So
``Clip(x * 1e30 * 1e10, min=0)`` on a float32 x in [1, 2] is 3.4028235e38 everywhere (onnxruntime
says so too), while the import read x·1e40 and ``python -m torchlean.verify`` printed a checked
``unsat`` for "Y_0 <= 3.5e38". The onnxruntime cross-check let it pass: the import's own float32 run
overflows there, and a point without finite outputs on every side is skipped. Now the defaults are
explicit ``maximum``/``minimum`` nodes (``bridge._onnx_nn._clip``).

Found (2), the brief's part 2: when onnxruntime is not installed (or cannot load or run the file, or
no point has finite outputs, or less than ``table.RUNTIME_CHECK_S`` is left) the cross-check compared
nothing and nothing said so. Now one ``note:`` line on stderr next to a sat/unsat verdict (even with
``-q``; stdout keeps the VNN-COMP text), an ``unchecked_import`` key in the ``--cert`` JSON, a note in
``verify run``'s ``check`` column, and the same line after ``check``'s ``accepted``.

Found (3): Squeeze-13 with an empty axes tensor squeezes nothing for onnx's reference evaluator and
shape inference (the import's reading) and every unit axis for onnxruntime; a Softmax after it then
normalises over another axis. A checked unsat onnxruntime contradicts (with ``--timeout 4``, or past
the cross-check with (4)). Now refused in one line (``bridge._onnx_ops._squeeze``).

Found (4): the cross-check's float32 slack was 100 times the largest float32-vs-float64 gap over all
outputs, so a cancelling output ``(x + 1e8) - 1e8`` let a misread of every other output through
(a planted LeakyRelu slope: a checked unsat onnxruntime contradicts). Now per output element
(``verify.network.runtime_compare``).

Held (checked by ``test_mapping_matches_onnxruntime``): X_i as the row-major flatten of an NCHW
input, a static batch of 2 in and out, a symbolic batch with a rank-3 output, an initializer
listed as a graph input (read as the constant onnxruntime uses when nothing is fed), a Constant
node, Squeeze/Unsqueeze axes as input and as attribute, Pad's opset 7/11/18 forms, an unused node
and an output that is the graph input, Softmax before and after opset 13. Two graph inputs are
refused, a value_info that contradicts the graph is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from torchlean.bridge import load_onnx
from torchlean.verify import engines, table
from torchlean.verify.__main__ import main

ort = pytest.importorskip("onnxruntime")
N = helper.make_node
F = TensorProto.FLOAT
ROOT = Path(__file__).resolve().parents[1]
NOTE = "note: the import was not cross-checked against onnxruntime"
FLT_MAX = float(np.finfo(np.float32).max)
DBL_MAX = float(np.finfo(np.float64).max)


def _save(path: Path, nodes, inputs, outputs, inits=(), opset: int = 13, ir: int = 8) -> Path:
    g = helper.make_graph(nodes, "t", inputs, outputs, [numpy_helper.from_array(a, k) for k, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir
    path.write_bytes(m.SerializeToString())
    return path


def _vi(name: str, et: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, et, shape)


def _prop(path: Path, lo, hi, y_atom: str, n_out: int = 1) -> Path:
    lines = [f"(declare-const X_{i} Real)" for i in range(len(lo))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i, (a, b) in enumerate(zip(lo, hi)):
        lines += [f"(assert (>= X_{i} {a!r}))", f"(assert (<= X_{i} {b!r}))"]
    path.write_text("\n".join(lines + [f"(assert {y_atom})"]) + "\n")
    return path


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


# -- (1) Clip's missing bounds ----------------------------------------------------------------------

def _overflowing_clip(tmp_path: Path, opset: int = 13, et: int = TensorProto.FLOAT) -> Path:
    """Y = Clip(X * 1e30 * 1e10, min=0): X (1, 1) in [1, 2] makes the real product ~1e40, past
    float32's largest value, so ONNX's default max clips it."""
    dt = onnx.helper.tensor_dtype_to_np_dtype(et)
    inits = [("a", np.array([[1e30]], dt)), ("b", np.array([[1e10]], dt))]
    clip = N("Clip", ["z"], ["Y"], min=0.0) if opset < 11 else N("Clip", ["z", "lo"], ["Y"])
    if opset >= 11:
        inits.append(("lo", np.array(0, dt)))
    nodes = [N("Mul", ["X", "a"], ["z1"]), N("Mul", ["z1", "b"], ["z"]), clip]
    return _save(tmp_path / f"clip{opset}_{et}.onnx", nodes, [_vi("X", et, [1, 1])], [_vi("Y", et, [1, 1])],
                 inits, opset=opset)


def test_clip_default_max_end_to_end(tmp_path, capsys):
    """The crafted pair: onnxruntime's Y_0 is 3.4028235e38 <= 3.5e38 at every point of the box (the
    unsafe set is reached); main printed "unsat" with "checked: unsat". Now sat, at onnxruntime's value."""
    net = _overflowing_clip(tmp_path)
    prop = _prop(tmp_path / "p.vnnlib", [1.0], [2.0], "(<= Y_0 350000000000000000000000000000000000000.0)")
    sess = ort.InferenceSession(str(net), providers=["CPUExecutionProvider"])
    for x in (1.0, 1.25, 1.5, 2.0):  # the reference: the property's unsafe set holds there
        y = float(sess.run(None, {"X": np.array([[x]], np.float32)})[0][0, 0])
        assert y == FLT_MAX and y <= 3.5e38
    rc, out, err = _cli(capsys, net, prop, "--timeout", "30")
    assert rc == 0 and "unsat" not in out.split() and "checked: unsat" not in err
    assert out.split()[0] == "sat"
    y0 = float(out.split("(Y_0 ")[1].split(")")[0])
    assert y0 == FLT_MAX  # the counterexample's output is onnxruntime's
    assert NOTE not in err  # (onnxruntime is installed and agreed: nothing to note)


@pytest.mark.parametrize("opset,et,side,limit", [
    (13, TensorProto.FLOAT, 1, FLT_MAX),    # Clip-13: the largest float32 for a float32 x
    (13, TensorProto.FLOAT, -1, 0.0),       # (below: the given min)
    (13, TensorProto.DOUBLE, 1, None),      # float64 x: the largest float64 (not reached: unclipped)
    (10, TensorProto.FLOAT, 1, FLT_MAX),    # Clip-6: the attribute's default
    (10, TensorProto.DOUBLE, 1, FLT_MAX),   # Clip-6 on a float64 x: still float32's (onnxruntime has
                                            # no kernel; the reference is the schema's default)
])
def test_clip_defaults_are_onnx_defaults_on_the_checkers_graph(tmp_path, opset, et, side, limit):
    """The checker's reading (the lowered bound graph's exact enclosure at the point) against the
    ONNX definition written independently: the schema's attribute default (Clip-6), numpy's
    finfo of x's type (Clip-11+)."""
    net = _overflowing_clip(tmp_path, opset, et)
    if opset < 11:
        assert onnx.defs.get_schema("Clip", opset, "").attributes["max"].default_value.f == FLT_MAX
    t = table.load_target(net)
    x = Fraction(3, 2) * side
    low, up = engines.exact_ibp(t.bg, [x], [x])
    a = Fraction(float(np.array(1e30, onnx.helper.tensor_dtype_to_np_dtype(et))))
    b = Fraction(float(np.array(1e10, onnx.helper.tensor_dtype_to_np_dtype(et))))
    z = x * a * b
    want = max(z, Fraction(0)) if limit is None else min(max(z, Fraction(0)), Fraction(limit))
    # (an enclosure of the point's output: exact IBP rounds large values outward a little)
    assert low[0] <= want <= up[0] and up[0] - low[0] <= abs(want) * Fraction(1, 10**12)


@pytest.mark.parametrize("given", ["none", "min", "max"])
def test_clip_with_bounds_left_out_matches_onnxruntime_on_large_values(tmp_path, given):
    """Clip-13 on float32 with one or no bound given, on values whose real products pass 3.4e38 (either
    sign): the import's float64 run equals onnxruntime's (which clips the overflow to the default)."""
    from torchlean.runtime.execute import run_graph

    ins = {"none": ["z"], "min": ["z", "lo"], "max": ["z", "", "hi"]}[given]
    inits = [("a", np.array([[1e30, -1e30, 1.0]], np.float32)), ("b", np.array([[1e10]], np.float32)),
             ("lo", np.array(-0.5, np.float32)), ("hi", np.array(0.5, np.float32))]
    net = _save(tmp_path / "c.onnx", [N("Mul", ["X", "a"], ["z1"]), N("Mul", ["z1", "b"], ["z"]),
                                      N("Clip", ins, ["Y"])],
                [_vi("X", TensorProto.FLOAT, [1, 3])], [_vi("Y", TensorProto.FLOAT, [1, 3])], inits)
    sess = ort.InferenceSession(str(net), providers=["CPUExecutionProvider"])
    g = load_onnx(str(net))
    for x in ([1.5, 2.0, 0.25], [-1.5, -2.0, -0.25], [1e-3, 4.0, 3.0]):
        feeds = {"X": np.array([x], np.float32)}
        ref = sess.run(None, feeds)[0].astype(np.float64)
        got = run_graph(g, feeds, dtype=np.float64)
        got = np.asarray(got[0] if isinstance(got, (list, tuple)) else got, np.float64)
        np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_squeeze_with_an_empty_axes_list_is_refused(tmp_path, capsys):
    """Squeeze-13 with axes = [] then Softmax(axis=-2), X (1, 2, 1, 2) in [-1, 1]^4, "Y_0 <= 0.99":
    onnx's reference evaluator and shape inference squeeze nothing (the softmax runs over a unit
    axis: Y = 1, and main printed a checked unsat when the cross-check was skipped, --timeout 4);
    onnxruntime squeezes every unit axis (Y_0 = 0.5 at X = 0, inside the box). Now refused."""
    from onnx.reference import ReferenceEvaluator

    from torchlean.bridge import OnnxImportError

    net = _save(tmp_path / "sq.onnx", [N("Squeeze", ["X", "ax"], ["s"]), N("Softmax", ["s"], ["Y"], axis=-2)],
                [_vi("X", F, [1, 2, 1, 2])], [_vi("Y", F, None)], [("ax", np.zeros(0, np.int64))])
    x = np.zeros((1, 2, 1, 2), np.float32)
    ours = ort.InferenceSession(str(net), providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    theirs = ReferenceEvaluator(str(net)).run(None, {"X": x})[0]
    assert ours.shape == (2, 2) and float(ours.ravel()[0]) == 0.5 and theirs.shape == (1, 2, 1, 2)
    with pytest.raises(OnnxImportError, match="empty axes") as e:
        load_onnx(str(net))
    assert "\n" not in str(e.value)
    prop = _prop(tmp_path / "p.vnnlib", [-1.0] * 4, [1.0] * 4, "(<= Y_0 0.99)", 4)
    rc, out, err = _cli(capsys, net, prop, "--timeout", "4")
    assert rc == 2 and "unsat" not in out.split() and "empty axes" in err


def test_a_cancelling_output_does_not_widen_the_others_tolerance(tmp_path, capsys, monkeypatch):
    """A planted misread (LeakyRelu's default slope read as 1e-4: Y_0 off by ~7e-3 at the box's
    centre, over the 1.7e-3 allowed) beside an output Z = (x + 1e8) - 1e8, whose float32 run
    is off by ~0.7 there: the slack was 100 times the largest float32 error over all outputs, so
    main accepted the network and printed a checked unsat that onnxruntime contradicts (Y_0 =
    -0.017 <= -0.005 at X_0 = -1.7). Now each element gets the slack of its own error."""
    from torchlean.bridge import _onnx_ops

    real = _onnx_ops.CONVERTERS["LeakyRelu"]
    monkeypatch.setitem(_onnx_ops.CONVERTERS, "LeakyRelu",
                        lambda b, ins, attrs, hint: real(b, ins, {**attrs, "alpha": 1e-4}, hint))
    table._CACHE.clear()
    net = _save(tmp_path / "z.onnx", [N("LeakyRelu", ["X"], ["Y"]), N("Gemm", ["X", "one", "big"], ["a"]),
                                      N("Sub", ["a", "big2"], ["Z"])],
                [_vi("X", F, [1, 1])], [_vi("Y", F, [1, 1]), _vi("Z", F, [1, 1])],
                [("one", np.ones((1, 1), np.float32)), ("big", np.array([1e8], np.float32)),
                 ("big2", np.array([[1e8]], np.float32))])
    y = ort.InferenceSession(str(net), providers=["CPUExecutionProvider"]).run(
        None, {"X": np.array([[-1.7]], np.float32)})[0]
    assert float(y[0, 0]) <= -0.005  # (the unsafe set is reached in the box)
    prop = _prop(tmp_path / "p.vnnlib", [-1.7], [0.3], "(<= Y_0 -0.005)", 2)
    rc, out, err = _cli(capsys, net, prop, "--timeout", "30")
    assert "unsat" not in out.split() and "disagrees with onnxruntime" in err


# -- the mapping between X_i / Y_j and the file (held) ---------------------------------------------

def _i64(*v):
    return np.array(v, np.int64)


def _w(seed, *shape):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def M(nodes, inputs, outputs, inits=(), opset=13, ir=8):
    return nodes, inputs, outputs, list(inits), opset, ir


MAPPING = {
    "nchw_conv": M([N("Conv", ["X", "w"], ["c"], pads=[1, 0, 0, 1]), N("Relu", ["c"], ["r"]),
                    N("Flatten", ["r"], ["f"]), N("Gemm", ["f", "g"], ["Y"], transB=1)],
                   [_vi("X", F, [1, 2, 3, 3])], [_vi("Y", F, [1, 3])],
                   [("w", _w(1, 2, 2, 2, 2)), ("g", _w(2, 3, 18))]),
    "batch2": M([N("MatMul", ["X", "w"], ["Y"])], [_vi("X", F, [2, 3])], [_vi("Y", F, [2, 2])],
                [("w", _w(3, 3, 2))]),
    "symbolic_batch_rank3": M([N("Reshape", ["X", "s"], ["r"]), N("Transpose", ["r"], ["Y"], perm=[0, 2, 1])],
                              [_vi("X", F, ["N", 6])], [_vi("Y", F, ["N", 3, 2])], [("s", _i64(-1, 2, 3))]),
    "initializer_as_input": M([N("MatMul", ["X", "w"], ["Y"])], [_vi("w", F, [3, 2]), _vi("X", F, [1, 3])],
                              [_vi("Y", F, [1, 2])], [("w", _w(4, 3, 2))], ir=3),
    "pad7_crop": M([N("Pad", ["X"], ["Y"], pads=[0, 0, 1, 0, -1, 1], value=0.5)], [_vi("X", F, [1, 2, 2])],
                   [_vi("Y", F, [1, 1, 4])], opset=7),
    "pad18_axes": M([N("Pad", ["X", "p", "v", "ax"], ["Y"])], [_vi("X", F, [1, 2, 2])],
                    [_vi("Y", F, [1, 2, 5])],
                    [("p", _i64(1, 2)), ("v", np.array(0.25, np.float32)), ("ax", _i64(-1))], opset=18),
    "unused_and_passthrough": M([N("Exp", ["X"], ["unused"]), N("Neg", ["X"], ["n"])], [_vi("X", F, [1, 2])],
                                [_vi("n", F, [1, 2]), _vi("X", F, [1, 2])]),
    "softmax11_axis1": M([N("Softmax", ["X"], ["Y"], axis=1)], [_vi("X", F, [1, 2, 3])],
                         [_vi("Y", F, [1, 2, 3])], opset=11),
    "softmax13_axis1": M([N("Softmax", ["X"], ["Y"], axis=1)], [_vi("X", F, [1, 2, 3])],
                         [_vi("Y", F, [1, 2, 3])]),
    "constant_node_squeeze13": M([N("Constant", [], ["c"], value=numpy_helper.from_array(
                                      np.array([[0.5, -2.0, 3.0]], np.float32))),
                                  N("Mul", ["X", "c"], ["m"]), N("Unsqueeze", ["m", "ax"], ["u"]),
                                  N("Squeeze", ["u", "ax"], ["Y"])],
                                 [_vi("X", F, [1, 3])], [_vi("Y", F, [1, 3])], [("ax", _i64(0))]),
    "squeeze11_negative": M([N("Unsqueeze", ["X"], ["u"], axes=[-1]), N("Squeeze", ["u"], ["s"], axes=[2]),
                             N("Neg", ["s"], ["Y"])], [_vi("X", F, [1, 3])], [_vi("Y", F, [1, 3])], opset=11),
    "pad11_value": M([N("Pad", ["X", "p", "v"], ["Y"])], [_vi("X", F, [1, 2, 2])], [_vi("Y", F, [1, 3, 4])],
                     [("p", _i64(0, 1, 0, 0, 0, 2)), ("v", np.array(0.25, np.float32))], opset=11),
    "flatten_reshape0": M([N("Flatten", ["X"], ["f"], axis=2), N("Reshape", ["f", "s"], ["r"]),
                           N("Flatten", ["r"], ["Y"], axis=0)],
                          [_vi("X", F, [1, 2, 3])], [_vi("Y", F, [1, 6])], [("s", _i64(0, 3, -1))]),
    "slice_step2_clip": M([N("Slice", ["X", "st", "en", "ax", "sp"], ["s"]),
                           N("Clip", ["s", "lo", "hi"], ["Y"])],
                          [_vi("X", F, [1, 2, 5])], [_vi("Y", F, [1, 2, 2])],
                          [("st", _i64(1)), ("en", _i64(100)), ("ax", _i64(-1)), ("sp", _i64(2)),
                           ("lo", np.array(-0.3, np.float32)), ("hi", np.array(0.4, np.float32))]),
    "expand_reduce": M([N("Expand", ["X", "s"], ["e"]), N("ReduceSum", ["e", "ax"], ["Y"], keepdims=0)],
                       [_vi("X", F, [1, 3])], [_vi("Y", F, [3])], [("s", _i64(2, 1, 3)), ("ax", _i64(0, 1))]),
    "gemm_transA_batch": M([N("Gemm", ["X", "w", "c"], ["Y"], transA=1, alpha=0.5, beta=2.0)],
                           [_vi("X", F, [3, 2])], [_vi("Y", F, [2, 4])],
                           [("w", _w(6, 3, 4)), ("c", _w(7, 4))]),
}


@pytest.mark.parametrize("name", sorted(MAPPING))
def test_mapping_matches_onnxruntime(tmp_path, capsys, name):
    """A random point x0 (the inputs in graph order, each flattened row-major: VNN-LIB's X_i), a
    box [x0, x0], onnxruntime's outputs y0 (flattened, outputs in order: Y_j); per checked output
    "Y_j <= y0_j - 0.01" must be unsat and "Y_j <= y0_j + 0.01" sat."""
    nodes, inputs, outputs, inits, opset, ir = MAPPING[name]
    net = _save(tmp_path / f"{name}.onnx", nodes, inputs, outputs, inits, opset, ir)
    sess = ort.InferenceSession(str(net), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    feeds = {i.name: rng.uniform(-1, 1, [d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
             for i in sess.get_inputs()}
    x0 = [float(v) for i in sess.get_inputs() for v in feeds[i.name].ravel()]
    y0 = np.concatenate([np.ravel(o).astype(np.float64) for o in sess.run(None, feeds)])
    for j in sorted({0, len(y0) // 2, len(y0) - 1}):
        for d, want in ((-0.01, "unsat"), (0.01, "sat")):
            prop = _prop(tmp_path / f"p{j}{want}.vnnlib", x0, x0, f"(<= Y_{j} {float(y0[j] + d)!r})", len(y0))
            rc, out, err = _cli(capsys, net, prop, "--timeout", "30", "-q")
            assert rc == 0 and out.split()[0] == want, (name, j, want, out, err)


# -- (2) a cross-check that compared nothing is said ------------------------------------------------

def _small(tmp_path: Path) -> tuple[Path, Path]:
    """y = relu(x W1) W2 with a robustness-style property that is unsat."""
    rng = np.random.default_rng(0)
    net = _save(tmp_path / "n.onnx", [N("MatMul", ["X", "w1"], ["a"]), N("Relu", ["a"], ["r"]),
                                      N("MatMul", ["r", "w2"], ["Y"])],
                [_vi("X", F, [1, 2])], [_vi("Y", F, [1, 2])],
                [("w1", rng.uniform(-1, 1, (2, 6)).astype(np.float32)),
                 ("w2", rng.uniform(-1, 1, (6, 2)).astype(np.float32))])
    sess = ort.InferenceSession(str(net), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"X": np.full((1, 2), 0.5, np.float32)})[0][0]
    k = int(np.argmax(y))
    prop = _prop(tmp_path / "p.vnnlib", [0.49, 0.49], [0.51, 0.51], f"(>= Y_{1 - k} Y_{k})", 2)
    return net, prop


@pytest.fixture
def no_onnxruntime(monkeypatch):
    """``import onnxruntime`` raises ImportError (as when it is not installed)."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    table._CACHE.clear()


def test_missing_onnxruntime_is_said_by_verify_cert_and_check(tmp_path, capsys, no_onnxruntime):
    net, prop = _small(tmp_path)
    cert = tmp_path / "c.json"
    rc, out, err = _cli(capsys, net, prop, "--timeout", "30", "--cert", cert)
    assert rc == 0 and out.strip() == "unsat"  # (the verdict text itself is VNN-COMP's, unchanged)
    notes = [ln for ln in err.splitlines() if ln.startswith(NOTE)]
    assert notes == [f"{NOTE} (onnxruntime is not installed)"]
    assert "not installed" in json.loads(cert.read_text())["unchecked_import"]
    rc, out, err = _cli(capsys, "check", cert, net, prop)
    assert rc == 0 and out.startswith("accepted") and f"{NOTE} (onnxruntime is not installed)" in err
    rc, out, err = _cli(capsys, net, prop, "--timeout", "30", "-q")  # (said with -q too)
    assert out.strip() == "unsat" and NOTE in err
    fcert = tmp_path / "f.json"  # --float32: the same line, the same key in its certificate
    rc, out, err = _cli(capsys, net, prop, "--timeout", "30", "--float32", "--cert", fcert)
    assert out.startswith("unsat (float32-sound, checked)")
    assert f"{NOTE} (onnxruntime is not installed)" in err
    assert "not installed" in json.loads(fcert.read_text())["unchecked_import"]
    rc, out, err = _cli(capsys, "check", fcert, net, prop, "--float32")
    assert rc == 0 and out.startswith("accepted") and NOTE in err


def test_with_onnxruntime_nothing_is_noted(tmp_path, capsys):
    net, prop = _small(tmp_path)
    cert = tmp_path / "c.json"
    rc, out, err = _cli(capsys, net, prop, "--timeout", "30", "--cert", cert)
    assert rc == 0 and out.strip() == "unsat" and NOTE not in err
    assert "unchecked_import" not in json.loads(cert.read_text())


def test_missing_onnxruntime_is_said_by_verify_run(tmp_path, capsys, no_onnxruntime):
    net, prop = _small(tmp_path)
    csv = tmp_path / "i.csv"
    csv.write_text(f"{net.name},{prop.name},30\n")
    out = tmp_path / "r.csv"
    assert main(["run", str(csv), "--out", str(out), "-q"]) == 0
    import csv as csvmod

    row = next(csvmod.DictReader(out.open()))
    assert row["result"] == "unsat"
    assert row["check"] == ("accepted; the import was not cross-checked against onnxruntime "
                            "(onnxruntime is not installed)")


def test_missing_onnxruntime_in_a_real_process(tmp_path):
    """A process where ``import onnxruntime`` fails (a module of that name raising ImportError
    first on the path): the note is on stderr even with -q, stdout is the verdict alone."""
    net, prop = _small(tmp_path)
    block = tmp_path / "block"
    block.mkdir()
    (block / "onnxruntime.py").write_text("raise ImportError('blocked for the test')\n")
    env = {**os.environ, "PYTHONPATH": f"{block}{os.pathsep}{ROOT}", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torchlean.verify", str(net), str(prop), "--timeout", "60", "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout == "unsat\n"
    assert r.stderr.strip() == f"{NOTE} (onnxruntime is not installed)"


def test_a_run_onnxruntime_refuses_is_no_agreement(tmp_path, monkeypatch):
    """A session whose run raises (a feed it does not take): compared nothing, and said so."""
    from torchlean.verify import network

    net, _ = _small(tmp_path)
    real = network._session(net)

    class Refusing:
        def get_inputs(self):
            return real.get_inputs()

        def run(self, *a, **k):
            raise RuntimeError("refused")

    monkeypatch.setattr(network, "_session", lambda path, sha256=None: Refusing())
    g = load_onnx(str(net))
    assert network.runtime_compare(net, g, [[0.5, 0.5]]) == (None, "onnxruntime could not run the file")


def test_other_ways_the_cross_check_compares_nothing_are_said(tmp_path, capsys):
    """onnxruntime cannot load the file (an IR version it does not know: the importer reads it), a
    time limit under RUNTIME_CHECK_S, and no point with finite outputs (a float32 overflow)."""
    from torchlean.verify.network import runtime_compare

    net, prop = _small(tmp_path)
    m = onnx.load(str(net))
    m.ir_version = 99
    late = tmp_path / "late.onnx"
    late.write_bytes(m.SerializeToString())
    rc, out, err = _cli(capsys, late, prop, "--timeout", "30")
    assert out.strip() == "unsat" and f"{NOTE} (onnxruntime cannot load the file)" in err
    rc, out, err = _cli(capsys, net, prop, "--timeout", "4")
    assert out.strip() == "unsat" and f"{NOTE} (skipped: less than 5 s of the time limit left)" in err
    # y = x * 1e30 * 1e30 * 1e-30 * 1e-30: exactly x, inf in float32 on both sides
    big = _save(tmp_path / "big.onnx", [N("Mul", ["X", "a"], ["t1"]), N("Mul", ["t1", "a"], ["t2"]),
                                        N("Mul", ["t2", "b"], ["t3"]), N("Mul", ["t3", "b"], ["Y"])],
                [_vi("X", F, [1, 1])], [_vi("Y", F, [1, 1])],
                [("a", np.array([[1e30]], np.float32)), ("b", np.array([[1e-30]], np.float32))])
    p1 = _prop(tmp_path / "p1.vnnlib", [1.0], [2.0], "(<= Y_0 0.5)")
    g = load_onnx(str(big))
    assert runtime_compare(big, g, [[1.5]]) == (None, "no point had finite outputs on both sides")
    rc, out, err = _cli(capsys, big, p1, "--timeout", "30")
    assert out.strip() == "unsat" and f"{NOTE} (no point had finite outputs on both sides)" in err
