"""h-audit8: the path from files to a verdict on networks and properties not seen before.

1. ONNX operator and attribute variants that held-out VNN-COMP networks may use and the shared ones
   do not (Gemm transA/alpha/beta and C shapes, MatMul with 1-D or batched operands, Flatten's
   axis, Reshape's 0/-1/allowzero, Conv dilations/groups/auto_pad, pools' pads/ceil_mode/
   count_include_pad, Pad values and modes, BatchNormalization on 2-/3-/4-D inputs and old opsets,
   Sub/Div broadcast either side, Constant/Identity/Cast, Squeeze/Unsqueeze across opsets,
   several outputs, inputs without a batch axis, float64 models): each is refused with one
   ``OnnxImportError`` line or imported with onnxruntime's outputs, both by the runtime and by the
   checker's own exact evaluation of the lowered bound graph (``engine.point``), which is what a
   sat verdict is judged on. ``tests/test_onnx_fuzz.py`` mutates three base models at random;
   this file names the variants one by one.
2. VNN-LIB: the trusted reader refuses inputs or outputs declared with another sort than Real (it
   read ``(declare-const X_0 Int)`` as a real input: a non-integer "counterexample" was accepted);
   the 2022-style shapes (input bounds inside an ``or``, output-vs-output atoms, reversed
   orientation, scientific notation) read as their exact meaning, the same by both readers.
3. The import checked against onnxruntime (``verify.network.runtime_mismatch``): a network the
   importer reads differently is refused at load (``table.load_instance``), and a sat whose
   counterexample onnxruntime refutes is reported unknown (``table.runtime_refutes``).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.test_onnx_exact import _model as onnx_model
from torchlean.bridge import OnnxImportError, _onnx_ops, load_onnx
from torchlean.certificates import engine
from torchlean.certificates.lower import lower
from torchlean.certificates.property import PropertyError, parse_property
from torchlean.runtime.execute import run_graph
from torchlean.verify.network import InputError, _bridge_spec, _canon, runtime_mismatch

ort = pytest.importorskip("onnxruntime")
F, D = TensorProto.FLOAT, TensorProto.DOUBLE
N = helper.make_node


def _model(nodes, inputs, inits, opset=13, outputs=("y",), et=F):
    return onnx_model(nodes, inputs, outputs, inits, opset, et)


def _w(seed, *shape, dt=np.float32):
    return (np.random.default_rng(seed).standard_normal(shape) * 0.5).astype(dt)


def _i64(*v):
    return np.array(v, np.int64)


def _bn(c):
    return [("g", _w(1, c)), ("b", _w(2, c)), ("m", _w(3, c)), ("v", np.abs(_w(4, c)) + 0.1)]


X4 = [("x", [1, 4, 7, 6])]
BN = ["x", "g", "b", "m", "v"]
P4 = _i64(0, 0, 1, 1, 0, 0, 1, 1)


def C(name, nodes, inputs, inits=(), span=(-1, 1), must=True, **kw):
    """One variant: (name, model, input range, must import). "Must import" marks what torchlean
    reads today, so that a regression to refusing it fails too; the others may be refused
    (never misread)."""
    return name, _model(nodes, inputs, list(inits), **kw), span, must


def _const(name, v):
    return N("Constant", [], [name], value=numpy_helper.from_array(np.array([v], np.float32)))


XW, CW = ["x", "w"], ["x", "w", "c"]
CASES = [
    C("gemm_transA_runtime", [N("Gemm", CW, ["y"], transA=1)], [("x", [4, 2])],
      [("w", _w(0, 4, 3)), ("c", _w(1, 3))]),
    C("gemm_alpha_beta", [N("Gemm", CW, ["y"], alpha=0.3, beta=0.7, transB=1)], [("x", [1, 4])],
      [("w", _w(0, 3, 4)), ("c", _w(1, 1, 3))]),
    C("gemm_runtime_B", [N("Gemm", ["w", "x"], ["y"], alpha=2.0)], [("x", [4, 3])], [("w", _w(0, 2, 4))]),
    C("gemm_C_scalar", [N("Gemm", CW, ["y"], beta=0.5)], [("x", [2, 4])], [("w", _w(0, 4, 3)), ("c", _w(1))]),
    C("gemm_C_column", [N("Gemm", CW, ["y"])], [("x", [2, 4])], [("w", _w(0, 4, 3)), ("c", _w(1, 2, 1))]),
    C("gemm_C_runtime", [N("Gemm", CW, ["y"], beta=3.0)], [("x", [2, 4]), ("c", [2, 3])],
      [("w", _w(0, 4, 3))]),
    C("matmul_1d_x", [N("MatMul", XW, ["y"])], [("x", [4])], [("w", _w(0, 4, 3))]),
    C("matmul_1d_w", [N("MatMul", XW, ["y"])], [("x", [2, 4])], [("w", _w(0, 4))]),
    C("matmul_batched_x", [N("MatMul", XW, ["y"])], [("x", [2, 3, 4])], [("w", _w(0, 4, 5))]),
    C("matmul_batched_w", [N("MatMul", XW, ["y"])], [("x", [3, 4])], [("w", _w(0, 2, 4, 5))]),
    C("matmul_4d_x", [N("MatMul", XW, ["y"])], [("x", [1, 1, 1, 5])], [("w", _w(0, 5, 6))]),
    C("matmul_bcast_batch", [N("MatMul", XW, ["y"])], [("x", [2, 1, 3, 4])], [("w", _w(0, 3, 4, 2))]),
    *[C(f"flatten_axis{a}", [N("Flatten", ["x"], ["f"], axis=a), N("Relu", ["f"], ["y"])],
        [("x", [1, 2, 3, 2])]) for a in (0, 2, 3, 4, -1)],
    C("flatten_1d", [N("Flatten", ["x"], ["y"])], [("x", [5])]),
    C("reshape_0_m1", [N("Reshape", ["x", "s"], ["y"])], [("x", [1, 2, 3, 4])], [("s", _i64(0, -1))]),
    C("reshape_allowzero", [N("Reshape", ["x", "s"], ["y"], allowzero=1)], [("x", [1, 2, 3, 4])],
      [("s", _i64(2, -1))], opset=14),
    C("reshape_zero_allowzero", [N("Reshape", ["x", "s"], ["y"], allowzero=1)], [("x", [1, 2, 3, 4])],
      [("s", _i64(0, 24))], must=False, opset=14),
    C("reshape_0_past_rank", [N("Reshape", ["x", "s"], ["y"])], [("x", [2, 12])], [("s", _i64(0, 0, -1))]),
    C("conv_dilated", [N("Conv", ["x", "w", "b"], ["y"], dilations=[2, 1], pads=[1, 1, 1, 1])], X4,
      [("w", _w(0, 3, 4, 3, 2)), ("b", _w(1, 3))]),
    C("conv_groups", [N("Conv", XW, ["y"], group=2, strides=[2, 1])], X4, [("w", _w(0, 6, 2, 3, 3))]),
    C("conv_depthwise", [N("Conv", XW, ["y"], group=4)], X4, [("w", _w(0, 4, 1, 3, 3))]),
    *[C(f"conv_{ap}", [N("Conv", ["x", "w", "b"], ["y"], auto_pad=ap, strides=[2, 2])], X4,
        [("w", _w(0, 3, 4, 3, 2)), ("b", _w(1, 3))]) for ap in ("SAME_UPPER", "SAME_LOWER", "VALID")],
    C("conv_asymmetric", [N("Conv", XW, ["y"], pads=[0, 2, 1, 0], strides=[2, 3])], X4,
      [("w", _w(0, 2, 4, 3, 3))]),
    C("conv_1d", [N("Conv", XW, ["y"])], [("x", [1, 2, 9])], [("w", _w(0, 3, 2, 3))], must=False),
    *[C(f"{op}_ceil", [N(op, ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)], X4, must=False)
      for op in ("MaxPool", "AveragePool")],
    C("maxpool_pads_negative", [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], X4,
      span=(-2, -1)),
    C("maxpool_same", [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                         auto_pad="SAME_UPPER")], X4, span=(-2, -1), must=False),
    C("maxpool_dilated", [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2])], X4, must=False),
    C("maxpool_storage_order", [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], storage_order=1)], X4,
      must=False),
    *[C(f"avgpool_pads_cip{c}", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 2], pads=[1, 1, 1, 1],
                                   count_include_pad=c)], X4) for c in (0, 1)],
    *[C(f"avgpool_asymmetric_cip{c}", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 0, 2, 1],
                                         count_include_pad=c)], X4, must=c == 1) for c in (0, 1)],
    C("avgpool_opset7", [N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 1, 1])], X4,
      opset=7),
    *[C(f"pad_{m}", [N("Pad", ["x", "p"], ["y"], mode=m)], X4, [("p", P4)], must=False, opset=19)
      for m in ("reflect", "edge", "wrap")],
    C("pad_value", [N("Pad", ["x", "p", "v"], ["y"])], X4,
      [("p", _i64(0, 0, 1, 2, 0, 0, 2, 1)), ("v", np.float32(0.7))]),
    C("pad_crop", [N("Pad", ["x", "p", "v"], ["y"])], X4,
      [("p", _i64(0, -1, 1, -2, 0, 0, -2, 1)), ("v", np.float32(-0.3))]),
    C("pad_opset9_value", [N("Pad", ["x"], ["y"], pads=[0, 0, 1, 2, 0, 0, 2, 1], value=1 / 3)], X4, opset=9),
    C("pad_axes", [N("Pad", ["x", "p", "v", "a"], ["y"])], X4,
      [("p", _i64(1, 2, 3, 0)), ("v", np.float32(0.25)), ("a", _i64(-1, 2))], opset=18),
    C("bn_4d", [N("BatchNormalization", BN, ["y"], epsilon=1e-3)], X4, _bn(4)),
    C("bn_2d", [N("BatchNormalization", BN, ["y"])], [("x", [3, 4])], _bn(4)),
    C("bn_3d", [N("BatchNormalization", BN, ["y"])], [("x", [2, 4, 5])], _bn(4)),
    C("bn_opset7_spatial", [N("BatchNormalization", BN, ["y"], spatial=1)], X4, _bn(4), opset=7),
    C("bn_opset9_momentum", [N("BatchNormalization", BN, ["y"], momentum=0.5)], X4, _bn(4), opset=9),
    *[C(f"{op}_const_left_rank_up", [N(op, ["c", "x"], ["y"])], [("x", [5])],
        [("c", np.abs(_w(0, 2, 1, 5)) + 0.5)], span=(0.5, 1.5)) for op in ("Sub", "Div", "Max", "Min")],
    *[C(f"{op}_channel_const", [N(op, ["x", "c"], ["y"])], [("x", [1, 3, 2, 2])],
        [("c", np.abs(_w(0, 3, 1, 1)) + 0.5)], span=(0.5, 1.5)) for op in ("Sub", "Div")],
    C("div_two_inputs_broadcast", [N("Div", ["x", "z"], ["y"])], [("x", [2, 1, 3]), ("z", [4, 1])],
      span=(0.5, 1.5)),
    C("constant_sub_div", [_const("m", 0.1307), _const("s", 0.3081), N("Sub", ["x", "m"], ["a"]),
                           N("Div", ["a", "s"], ["b"]), N("Flatten", ["b"], ["y"])],
      [("x", [1, 1, 2, 2])], span=(0, 1), opset=9),
    C("constant_value_floats", [N("Constant", [], ["m"], value_floats=[0.1, 0.2, 0.3]),
                                N("Add", ["x", "m"], ["y"])], [("x", [1, 3])]),
    C("identity_of_initializer", [N("Identity", ["c"], ["a"]), N("Add", ["x", "a"], ["y"])], [("x", [1, 3])],
      [("c", _w(0, 3))]),
    C("cast_runtime_to_double", [N("Cast", ["x"], ["a"], to=D), N("Cast", ["a"], ["y"], to=F)],
      [("x", [1, 3])], must=False),
    C("cast_const_double", [N("Cast", ["c"], ["a"], to=F), N("Add", ["x", "a"], ["y"])], [("x", [1, 3])],
      [("c", np.array([0.1, 1 / 3, 1e-40], np.float64))]),
    C("cast_const_int", [N("Cast", ["c"], ["a"], to=F), N("Add", ["x", "a"], ["y"])], [("x", [1, 3])],
      [("c", _i64(1, 2, 16777217))]),
    C("unsqueeze_opset11", [N("Unsqueeze", ["x"], ["y"], axes=[0, 3])], [("x", [2, 3])], opset=11),
    C("unsqueeze_opset13", [N("Unsqueeze", ["x", "a"], ["y"])], [("x", [2, 3])], [("a", _i64(-1, 0))]),
    C("squeeze_opset11_all", [N("Squeeze", ["x"], ["y"])], [("x", [1, 3, 1, 2])], opset=11),
    C("squeeze_opset13", [N("Squeeze", ["x", "a"], ["y"])], [("x", [1, 3, 1, 2])], [("a", _i64(2))]),
    C("two_outputs", [N("Relu", ["x"], ["y"]), N("Neg", ["x"], ["z"])], [("x", [1, 3])], outputs=("z", "y")),
    C("output_is_input", [N("Relu", ["x"], ["z"])], [("x", [1, 3])], outputs=("z", "x")),
    C("no_batch_axis", [N("MatMul", XW, ["h"]), N("Add", ["h", "c"], ["y"])], [("x", [5])],
      [("w", _w(0, 5, 3)), ("c", _w(1, 3))]),
    C("symbolic_batch", [N("Relu", ["x"], ["y"])], [("x", ["N", 3])]),
    C("float64_model", [N("Gemm", CW, ["h"], transB=1, alpha=1 / 3), N("Sigmoid", ["h"], ["y"])],
      [("x", [1, 4])], [("w", _w(0, 3, 4, dt=np.float64)), ("c", _w(1, 3, dt=np.float64))], et=D),
    C("float64_weights_float32_input", [N("Gemm", XW, ["y"])], [("x", [1, 4])],
      [("w", _w(0, 4, 3, dt=np.float64))], must=False),
    C("softmax_opset11_axis1", [N("Softmax", ["x"], ["y"], axis=1)], [("x", [2, 3, 4])], opset=11),
    C("dropout_opset8_ratio", [N("Dropout", ["x"], ["y"], ratio=0.5)], [("x", [1, 4])], opset=8),
    C("slice_negative_step", [N("Slice", ["x", "s", "e", "a", "t"], ["y"])], [("x", [1, 6])],
      [("s", _i64(-1)), ("e", _i64(-100)), ("a", _i64(1)), ("t", _i64(-1))], must=False),
]


def _exact_outputs(graph, feeds) -> np.ndarray:
    """The outputs as the sat checker sees them: the lowered bound graph at the point, exactly
    (an enclosure where a row is transcendental: its midpoint)."""
    bg = lower(graph.to_dict())
    x = [Fraction(float(t)) for v in graph.inputs for t in np.asarray(feeds[v.name]).reshape(-1)]
    L, U = engine.point(bg, x)
    rows = [[int(i == j) for i in range(bg.n_out)] for j in range(bg.n_out)]
    out = []
    for f in engine.objective(bg, rows):
        lo, hi = engine.form_bounds(f, L, U)
        assert hi - lo < Fraction(1, 10**9)
        out.append(float((lo + hi) / 2))
    return np.array(out)


@pytest.mark.parametrize("name,model,span,must", CASES, ids=[c[0] for c in CASES])
def test_variant_is_refused_or_read_as_onnxruntime_runs_it(name, model, span, must):
    try:
        graph = load_onnx(model)
    except OnnxImportError as e:
        assert not must, f"{name} is no longer imported: {e}"
        assert "\n" not in str(e)
        return
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    kinds = {"tensor(double)": np.float64}
    feeds = {i.name: rng.uniform(*span, next(v.shape for v in graph.inputs if v.name == i.name))
             .astype(kinds.get(i.type, np.float32)) for i in sess.get_inputs()}
    refs = sess.run(None, feeds)
    outs = run_graph(graph, feeds)
    for out, ref in zip(outs, refs, strict=True):
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    ref = np.concatenate([np.ravel(r).astype(np.float64) for r in refs])
    np.testing.assert_allclose(_exact_outputs(graph, feeds), ref, rtol=1e-5, atol=1e-6)


def test_the_variants_cover_both_outcomes():
    # (the parametrised test is only informative if some variants import and some are refused)
    outcomes = set()
    for _, model, _, _ in CASES:
        try:
            load_onnx(model)
            outcomes.add("imported")
        except OnnxImportError:
            outcomes.add("refused")
    assert outcomes == {"imported", "refused"}


# -- VNN-LIB ------------------------------------------------------------------------------------

HEAD = "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)\n"
BOX = "(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= X_1 1))(assert (>= X_1 -1))\n"


@pytest.mark.parametrize("sort", ["Int", "Bool", "(_ BitVec 8)"])
@pytest.mark.parametrize("var", ["X_0", "Y_1"])
def test_a_variable_of_another_sort_than_real_is_refused_by_the_trusted_reader(sort, var):
    text = HEAD.replace(f"{var} Real", f"{var} {sort}") + BOX + "(assert (<= Y_0 0))"
    with pytest.raises(PropertyError, match="must be declared Real"):
        parse_property(text)
    with pytest.raises(InputError):  # (and by the lark reader: no reading of it is verified)
        _bridge_spec(Path("p.vnnlib"), text)
    assert parse_property(HEAD + BOX + "(assert (<= Y_0 0))").n_in == 2


def _both(text):
    spec = parse_property(text)
    assert _canon(spec) == _bridge_spec(Path("p.vnnlib"), text)
    return spec


def test_input_bounds_inside_or_clauses_with_output_vs_output_atoms():
    # the rl_benchmarks / reach_prob_density 2022 shape: each disjunct its own box and atoms
    text = HEAD + ("(assert (<= X_1 1))(assert (>= X_1 -1))(assert (or "
                   "(and (<= X_0 0.5) (>= X_0 0) (<= Y_0 Y_1)) "
                   "(and (>= 1 X_0) (<= 0.5 X_0) (>= Y_0 2.5e-1)) (and (<= X_0 0.5) (>= X_0 0))))")
    spec = _both(text)
    regions = {(r.lo, r.hi): r.disjuncts for r in spec.regions}
    half, one = Fraction(1, 2), Fraction(1)
    low = regions[((0, -one), (half, one))]
    assert {tuple((t.a, t.b, t.strict) for t in d) for d in low} == {((( 1, -1), 0, False),), ()}
    (high,) = regions[((half, -one), (one, one))]
    assert [(t.a, t.b) for t in high] == [((-1, 0), Fraction(-1, 4))]
    # the empty conjunction: any input of that box is unsafe, so a point there is a counterexample
    r = next(r for r in spec.regions if () in r.disjuncts)
    assert r.contains([Fraction(1, 4), Fraction(0)]) and all(t.holds([9, 9]) for t in ())


@pytest.mark.parametrize("text,lo,hi", [
    ("(assert (>= 1.5E-1 X_0))(assert (<= -2.5e+0 X_0))", Fraction(-5, 2), Fraction(3, 20)),
    ("(assert (<= X_0 (- 0.5)))(assert (>= X_0 (- 1)))", Fraction(-1), Fraction(-1, 2)),
    ("(assert (<= (* 2 X_0) 1))(assert (>= (* -1 X_0) -1))(assert (>= X_0 0.1234567890123456789))",
     Fraction("0.1234567890123456789"), Fraction(1, 2)),
    ("(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= X_0 0.75))(assert (>= X_0 0.25))",
     Fraction(1, 4), Fraction(3, 4)),
])
def test_bounds_in_every_orientation_and_notation_read_exactly(text, lo, hi):
    spec = _both(HEAD + text + "(assert (<= X_1 1))(assert (>= X_1 -1))(assert (<= Y_0 0))")
    (r,) = spec.regions
    assert (r.lo[0], r.hi[0]) == (lo, hi)


def test_an_input_without_both_bounds_is_refused_not_left_unbounded():
    for text in ("(assert (<= X_0 1))(assert (>= X_0 0))(assert (<= X_1 1))(assert (<= Y_0 0))",
                 "(assert (<= X_0 1))(assert (>= X_0 0))(assert (or (and (<= X_1 1) (>= X_1 0) (<= Y_0 0)) "
                 "(and (<= X_1 1) (<= Y_0 1))))"):
        with pytest.raises(PropertyError, match="lower and an upper bound"):
            parse_property(HEAD + text)
        with pytest.raises(InputError, match="no lower bound"):
            _bridge_spec(Path("p.vnnlib"), HEAD + text)


# -- the import checked against onnxruntime -----------------------------------------------------

def _write_instance(tmp_path, model, box=((0.0, 1.0), (0.0, 1.0)), atoms="(assert (<= Y_0 -0.5))"):
    net = tmp_path / "net.onnx"
    net.write_bytes(model.SerializeToString())
    prop = tmp_path / "prop.vnnlib"
    decl = "".join(f"(declare-const X_{i} Real)" for i in range(len(box))) + "(declare-const Y_0 Real)\n"
    bounds = "".join(f"(assert (>= X_{i} {lo}))(assert (<= X_{i} {hi}))" for i, (lo, hi) in enumerate(box))
    prop.write_text(decl + bounds + atoms + "\n")
    return net, prop


def _affine():
    # y = (x - m) @ w: the eran-style input normalisation followed by a layer
    return _model([N("Sub", ["x", "m"], ["s"]), N("MatMul", ["s", "w"], ["y"])], [("x", [1, 2])],
                  [("m", np.array([0.5, 0.25], np.float32)), ("w", np.array([[1.0], [2.0]], np.float32))])


def _misread_sub(monkeypatch):
    """The importer made to read Sub as Add (a wrong operator meaning, as a bug would give)."""
    monkeypatch.setitem(_onnx_ops.CONVERTERS, "Sub", _onnx_ops.CONVERTERS["Add"])


def test_a_faithful_import_agrees_with_onnxruntime(tmp_path):
    net, _ = _write_instance(tmp_path, _affine())
    graph = load_onnx(str(net))
    assert runtime_mismatch(net, graph, [[0.0, 0.0], [1.0, 0.5], [0.3, 0.7]]) is None


def test_a_misread_network_is_refused_at_load(tmp_path, monkeypatch):
    from torchlean.verify.table import load_instance

    net, prop = _write_instance(tmp_path, _affine())
    load_instance(net, prop)  # (read faithfully: accepted)
    _misread_sub(monkeypatch)
    graph = load_onnx(str(net))
    assert "differ" in runtime_mismatch(net, graph, [[0.0, 0.0]])
    (tmp_path / "b").mkdir()  # (another file: load_target keeps the first one's reading)
    net2, prop2 = _write_instance(tmp_path / "b", _affine())
    with pytest.raises(InputError, match="disagrees with onnxruntime"):
        load_instance(net2, prop2)


def test_the_cli_refuses_a_misread_network_instead_of_answering(tmp_path, monkeypatch, capsys):
    from torchlean.verify.__main__ import main

    # y = x0 + 2 x1 - 1 on [0, 1]^2 is at most 2: "Y_0 >= 2.5" is unsat; read as x + m it reaches 2.5+
    net, prop = _write_instance(tmp_path, _affine(), atoms="(assert (>= Y_0 2.5))")
    assert main([str(net), str(prop), "--timeout", "60"]) == 0
    assert capsys.readouterr().out.split()[0] == "unsat"
    _misread_sub(monkeypatch)
    (tmp_path / "c").mkdir()
    net, prop = _write_instance(tmp_path / "c", _affine(), atoms="(assert (>= Y_0 2.5))")
    assert main([str(net), str(prop), "--timeout", "60"]) == 2
    assert "disagrees with onnxruntime" in capsys.readouterr().err


def test_a_sat_that_onnxruntime_refutes_is_reported_unknown(tmp_path, monkeypatch, capsys):
    from torchlean.verify import table
    from torchlean.verify.__main__ import _runtime_guard
    from torchlean.verify.tree import Result

    net, _ = _write_instance(tmp_path, _affine())
    _misread_sub(monkeypatch)
    t = table.target(load_onnx(str(net)))
    t.path, t.runtime_checked = net, True  # (as load_instance leaves a target it checked)
    x = [Fraction(0), Fraction(0)]
    # misread: y = (x + m) @ w = 1 at 0, the file's y = -1: "Y_0 >= 0.5" holds only for the misreading
    assert "differ" in table.runtime_refutes(t, x)
    res = Result("sat", x=x, y=[1.0])
    _runtime_guard(t, res)
    assert res.verdict == "unknown" and "not one for onnxruntime" in capsys.readouterr().err
    t.runtime_checked = False  # (not checked at load: nothing to check against at the end)
    assert table.runtime_refutes(t, x) is None
    monkeypatch.undo()
    t = table.target(load_onnx(str(net)))
    t.path, t.runtime_checked = net, True
    assert table.runtime_refutes(t, x) is None
    res = Result("sat", x=x, y=[-1.0])
    _runtime_guard(t, res)
    assert res.verdict == "sat"


def test_float32_on_a_network_the_emulator_lacks_answers_unknown_not_an_internal_error(tmp_path, capsys):
    from torchlean.verify.__main__ import main

    # y = relu(conv 2x2 of ones) = x0 + x1 + x2 + x3 on [0, 1]^4: "Y_0 >= 3.5" is sat (at the
    # corner 1, 1, 1, 1); the bit-exact binary32 emulator has no conv2d, so --float32 cannot
    # confirm the point: unknown (it was "internal error: NotImplementedError", exit 1)
    m = _model([N("Conv", ["x", "w"], ["c"]), N("Relu", ["c"], ["r"]), N("Flatten", ["r"], ["y"])],
               [("x", [1, 1, 2, 2])], [("w", np.ones((1, 1, 2, 2), np.float32))])
    net, prop = _write_instance(tmp_path, m, box=((0, 1),) * 4, atoms="(assert (>= Y_0 3.5))")
    assert main([str(net), str(prop), "--timeout", "60"]) == 0
    assert capsys.readouterr().out.split()[0] == "sat"
    assert main([str(net), str(prop), "--timeout", "60", "--float32"]) == 0
    assert capsys.readouterr().out.split()[0] == "unknown"


@pytest.mark.parametrize("alpha", [2.0, -2.0])
def test_leaky_relu_slopes_outside_0_1_give_the_brute_force_verdicts(alpha, tmp_path, capsys):
    """LeakyRelu's alpha is imported as stored, whatever its value: a slope above 1 or below 0
    makes the function concave or non-monotone, where a relaxation written for [0, 1] would be
    unsound. Reference: the network on a grid of [-1, 1]^3 (step 0.1) and a Lipschitz constant."""
    from torchlean.verify.__main__ import main

    rng = np.random.default_rng(7)
    w1, w2 = rng.standard_normal((6, 3)).astype(np.float32), rng.standard_normal((1, 6)).astype(np.float32)
    m = _model([N("Gemm", ["x", "w1"], ["h"], transB=1), N("LeakyRelu", ["h"], ["a"], alpha=alpha),
                N("Gemm", ["a", "w2"], ["y"], transB=1)], [("x", [1, 3])], [("w1", w1), ("w2", w2)])
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 21)] * 3), -1).reshape(-1, 3)
    h = grid @ w1.astype(np.float64).T
    ys = np.where(h > 0, h, alpha * h) @ w2.astype(np.float64).T
    lip = np.linalg.norm(w2, 2) * max(1, abs(alpha)) * np.linalg.norm(w1, 2)
    top = float(ys.max() + lip * 0.05 * np.sqrt(3)) + 1e-6  # above the true maximum
    for thr, allowed in ((float(ys.max()) - 1e-3, {"sat"}), (top, {"unsat", "timeout"})):
        net, prop = _write_instance(tmp_path, m, box=((-1, 1),) * 3, atoms=f"(assert (>= Y_0 {thr!r}))")
        assert main([str(net), str(prop), "--timeout", "60"]) == 0
        assert capsys.readouterr().out.split()[0] in allowed, (alpha, thr)


@pytest.mark.parametrize("extra", [
    "(set-logic QF_LRA)\n", "(set-info :status unsat)\n", "(check-sat)\n(exit)\n",
])
def test_commands_that_assert_nothing_are_read_alike_by_both_readers(extra):
    """A file with SMT-LIB's bookkeeping commands (which VNN-LIB files may carry) means the same
    set as without them: both readers give the same reading as of the bare file."""
    body = HEAD + BOX + "(assert (or (<= Y_0 0) (>= Y_1 2)))\n"
    bare = _both(body)
    for text in (extra + body, body + extra):
        if "check-sat" in extra and text.startswith(extra):  # (h-audit10: declarations and
            with pytest.raises(PropertyError, match="after"):  # asserts after (check-sat) or
                parse_property(text)  # (exit) are no part of SMT-LIB's query: refused)
            continue
        assert _both(text) == bare


def test_declare_fun_of_no_arguments_is_a_constant_for_both_readers():
    body = BOX + "(assert (<= Y_0 0))\n"
    funs = HEAD.replace("declare-const X_0 Real", "declare-fun X_0 () Real")
    assert _both(funs + body) == _both(HEAD + body)
    with pytest.raises(PropertyError):  # (a function of one argument is not an input)
        parse_property(HEAD.replace("declare-const X_0 Real", "declare-fun X_0 (Real) Real") + body)
