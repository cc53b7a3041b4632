"""The VNN-COMP networks' operator patterns, rebuilt small with onnx.helper, against onnxruntime.

Each model copies one benchmark's structure and attributes (opset, IR version, dynamic batch,
initializers listed as inputs, the exact attribute values) at a size a test can afford; the
benchmark files themselves are checked by ``bench/onnx_import_check.py`` (they live in ../shared).
Also here: the other operators the issue lists (LayerNormalization, Softmax, Transpose, Concat,
GELU in its Erf-free exported form, ...), and asymmetric / automatic padding.
"""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from torchlean.bridge import load_onnx
from torchlean.runtime.execute import run_graph

ort = pytest.importorskip("onnxruntime")
F = TensorProto.FLOAT
RNG = np.random.default_rng(14)


def _w(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _model(nodes, inputs, outputs, inits=(), opset=13, ir=7, inits_as_inputs=False):
    ins = [helper.make_tensor_value_info(n, F, s) for n, s in inputs]
    if inits_as_inputs:  # IR-3 style (collins_rul_cnn): weights are graph inputs with defaults
        ins += [helper.make_tensor_value_info(k, F, np.shape(a)) for k, a in inits]
    g = helper.make_graph(nodes, "t", ins, [helper.make_tensor_value_info(n, F, None) for n in outputs],
                          [numpy_helper.from_array(np.asarray(a), k) for k, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir
    return m


def _compare(model, batch_size=1, lo=-1.0, hi=1.0, points=3):
    """Import; run torchlean and onnxruntime on random inputs in [lo, hi]; outputs agree to float32
    rounding (relative to the largest magnitude any value of the network takes)."""
    graph = load_onnx(model, batch_size=batch_size)
    every = graph.__class__(graph.inputs, graph.constants, graph.nodes, [n.output for n in graph.nodes])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for _ in range(points):
        feeds = {v.name: RNG.uniform(lo, hi, v.shape).astype(np.float32) for v in graph.inputs}
        refs = sess.run(None, feeds)
        outs = run_graph(graph, feeds)
        scale = max(1.0, max(float(np.abs(v).max()) for v in run_graph(every, feeds)))
        for out, ref in zip(outs, refs, strict=True):
            assert out.shape == ref.shape and out.dtype == ref.dtype
            np.testing.assert_allclose(out, ref, rtol=0, atol=2e-6 * scale)
    return graph


def _ops(graph):
    return [n.op for n in graph.nodes]


def test_eran_normalised_mlp():
    """eran: Constant mean/std of shape (1,1,1,1), Sub, Div, Flatten, Gemm(transB=1), Sigmoid/Relu."""
    nodes = [helper.make_node("Constant", [], ["m"], value=numpy_helper.from_array(
                 np.full((1, 1, 1, 1), 0.1307, np.float32), "m")),
             helper.make_node("Sub", ["input", "m"], ["a"]),
             helper.make_node("Constant", [], ["s"], value=numpy_helper.from_array(
                 np.full((1, 1, 1, 1), 0.3081, np.float32), "s")),
             helper.make_node("Div", ["a", "s"], ["b"]),
             helper.make_node("Flatten", ["b"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "w1", "b1"], ["g1"], alpha=1.0, beta=1.0, transB=1),
             helper.make_node("Sigmoid", ["g1"], ["h1"]),
             helper.make_node("Gemm", ["h1", "w2", "b2"], ["g2"], alpha=1.0, beta=1.0, transB=1),
             helper.make_node("Relu", ["g2"], ["output"])]
    m = _model(nodes, [("input", (1, 1, 6, 6))], ["output"],
               [("w1", _w(8, 36)), ("b1", _w(8)), ("w2", _w(4, 8)), ("b2", _w(4))], opset=9, ir=6)
    g = _compare(m, lo=0.0, hi=1.0)
    assert _ops(g) == ["sub", "div", "flatten", "matmul", "add", "sigmoid", "matmul", "add", "relu"]


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_verivital_conv_pad_pool(pool):
    """verivital: Conv(k2, p0, s1) Relu [Pad(all-zero pads, value 0)] AveragePool/MaxPool(k4, s4)."""
    conv = helper.make_node("Conv", ["input", "cw", "cb"], ["5"], dilations=[1, 1], group=1,
                            kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[1, 1])
    nodes = [conv, helper.make_node("Relu", ["5"], ["6"])]
    if pool == "avg":
        nodes += [helper.make_node("Pad", ["6"], ["7"], mode="constant", pads=[0] * 8, value=0.0),
                  helper.make_node("AveragePool", ["7"], ["8"], kernel_shape=[4, 4], pads=[0, 0, 0, 0],
                                   strides=[4, 4])]
    else:
        nodes += [helper.make_node("MaxPool", ["6"], ["8"], kernel_shape=[4, 4], pads=[0, 0, 0, 0],
                                   strides=[4, 4])]
    nodes += [helper.make_node("Flatten", ["8"], ["9"], axis=1),
              helper.make_node("Gemm", ["9", "fw", "fb"], ["output"], alpha=1.0, beta=1.0, transB=1)]
    m = _model(nodes, [("input", (1, 1, 9, 9))], ["output"],
               [("cw", _w(3, 1, 2, 2)), ("cb", _w(3)), ("fw", _w(5, 12)), ("fb", _w(5))], opset=9, ir=6)
    g = _compare(m, lo=0.0, hi=1.0)
    assert "concat" not in _ops(g)  # an all-zero Pad is the identity


def test_oval21_strided_convs():
    """oval21: Conv(k4, s2, p1) twice, Relu, Flatten, Gemm, Relu, Gemm."""
    conv = {"dilations": [1, 1], "group": 1, "kernel_shape": [4, 4], "pads": [1, 1, 1, 1], "strides": [2, 2]}
    nodes = [helper.make_node("Conv", ["input.1", "w1", "b1"], ["c1"], **conv),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], **conv),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["g"], alpha=1.0, beta=1.0, transB=1),
             helper.make_node("Relu", ["g"], ["r3"]),
             helper.make_node("Gemm", ["r3", "w4", "b4"], ["out"], alpha=1.0, beta=1.0, transB=1)]
    inits = [("w1", _w(4, 3, 4, 4)), ("b1", _w(4)), ("w2", _w(6, 4, 4, 4)), ("b2", _w(6)),
             ("w3", _w(10, 6 * 2 * 2)), ("b3", _w(10)), ("w4", _w(3, 10)), ("b4", _w(3))]
    _compare(_model(nodes, [("input.1", (1, 3, 8, 8))], ["out"], inits, opset=9, ir=6))


def test_collins_rul_cnn_dynamic_batch_ir3():
    """collins_rul_cnn: opset 8, IR 3 with weights listed as inputs, a 'BatchSize' dimension,
    (k, 1) and full-width kernels, Dropout(ratio), 1x1 Conv, Flatten."""
    conv = {"group": 1, "dilations": [1, 1], "pads": [0, 0, 0, 0], "strides": [1, 1]}
    nodes = [helper.make_node("Conv", ["imageinput", "c1w", "c1b"], ["c1"], kernel_shape=[5, 1], **conv),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "c2w", "c2b"], ["c2"], kernel_shape=[3, 1], **conv),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "fw", "fb"], ["fc1"], kernel_shape=[4, 6], **conv),
             helper.make_node("Relu", ["fc1"], ["r3"]),
             helper.make_node("Dropout", ["r3"], ["d"], ratio=0.5),
             helper.make_node("Conv", ["d", "ow", "ob"], ["fc2"], kernel_shape=[1, 1], **conv),
             helper.make_node("Flatten", ["fc2"], ["out"], axis=1)]
    inits = [("c1w", _w(3, 1, 5, 1)), ("c1b", _w(3)), ("c2w", _w(3, 3, 3, 1)), ("c2b", _w(3)),
             ("fw", _w(7, 3, 4, 6)), ("fb", _w(7)), ("ow", _w(1, 7, 1, 1)), ("ob", _w(1))]
    m = _model(nodes, [("imageinput", ("BatchSize", 1, 10, 6))], ["out"], inits, opset=8, ir=3,
               inits_as_inputs=True)
    g = _compare(m, batch_size=2, lo=0.0, hi=1.0)
    assert g.inputs[0].shape == (2, 1, 10, 6) and len(g.inputs) == 1


def test_sri_resnet_residual_block():
    """sri_resnet_a: Conv(k3, s2, p1) with a 1x1 stride-2 shortcut, residual Add, Reshape by an
    int64 initializer, Gemm."""
    k3s2 = {"dilations": [1, 1], "group": 1, "kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}
    k3s1 = dict(k3s2, strides=[1, 1])
    k1s2 = {"dilations": [1, 1], "group": 1, "kernel_shape": [1, 1], "pads": [0, 0, 0, 0], "strides": [2, 2]}
    nodes = [helper.make_node("Conv", ["input", "w0", "b0"], ["c0"], **k3s1),
             helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("Conv", ["r0", "ws", "bs"], ["short"], **k1s2),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], **k3s2),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], **k3s1),
             helper.make_node("Add", ["short", "c2"], ["sum"]),
             helper.make_node("Relu", ["sum"], ["r2"]),
             helper.make_node("Reshape", ["r2", "shape"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fw", "fb"], ["g"], alpha=1.0, beta=1.0, transB=1),
             helper.make_node("Relu", ["g"], ["rg"]),
             helper.make_node("Gemm", ["rg", "ow", "ob"], ["output"], alpha=1.0, beta=1.0, transB=1)]
    inits = [("w0", _w(4, 3, 3, 3)), ("b0", _w(4)), ("ws", _w(6, 4, 1, 1)), ("bs", _w(6)),
             ("w1", _w(6, 4, 3, 3)), ("b1", _w(6)), ("w2", _w(6, 6, 3, 3)), ("b2", _w(6)),
             ("shape", np.array([1, -1], np.int64)), ("fw", _w(8, 6 * 3 * 3)), ("fb", _w(8)),
             ("ow", _w(10, 8)), ("ob", _w(10))]
    g = _compare(_model(nodes, [("input", (1, 3, 6, 6))], ["output"], inits, opset=9, ir=7))
    assert _ops(g).count("conv2d") == 4 and "shape" not in g.constants


def test_conv_batchnorm_global_pool_softmax():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], group=2),
             helper.make_node("BatchNormalization", ["c", "g", "b", "mu", "var"], ["bn"], epsilon=1e-3),
             helper.make_node("Tanh", ["bn"], ["t"]),
             helper.make_node("GlobalAveragePool", ["t"], ["ga"]),
             helper.make_node("GlobalMaxPool", ["t"], ["gm"]),
             helper.make_node("Concat", ["ga", "gm"], ["cat"], axis=1),
             helper.make_node("Squeeze", ["cat", "axes"], ["sq"]),
             helper.make_node("Softmax", ["sq"], ["y"], axis=-1)]
    inits = [("w", _w(4, 1, 3, 3)), ("g", _w(4)), ("b", _w(4)), ("mu", _w(4)),
             ("var", np.abs(_w(4)) + 0.1), ("axes", np.array([2, 3], np.int64))]
    g = _compare(_model(nodes, [("x", (2, 2, 5, 5))], ["y"], inits))
    assert "batch_norm" in _ops(g)


@pytest.mark.parametrize("attrs", [{"pads": [0, 1, 2, 0]}, {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
                                   {"auto_pad": "SAME_LOWER", "strides": [2, 1]},
                                   {"auto_pad": "VALID", "strides": [2, 2]}])
def test_conv_asymmetric_and_automatic_pads(attrs):
    m = _model([helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)], [("x", (1, 2, 7, 6))], ["y"],
               [("w", _w(3, 2, 3, 3)), ("b", _w(3))])
    _compare(m)


@pytest.mark.parametrize("include,pads", [(0, [1, 1, 1, 1]), (1, [1, 0, 1, 0]), (1, [0, 1, 1, 0])])
def test_average_pool_padding_semantics(include, pads):
    m = _model([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 1], pads=pads,
                                 count_include_pad=include)], [("x", (1, 2, 6, 5))], ["y"])
    _compare(m)


@pytest.mark.parametrize("opset", [11, 13, 18, 19])
def test_pad_constant_value_and_crop(opset):
    if opset >= 18:
        node = helper.make_node("Pad", ["x", "p", "v", "ax"], ["y"], mode="constant")
        inits = [("p", np.array([2, -1, 1, 3], np.int64)), ("v", np.float32(-0.25)),
                 ("ax", np.array([1, 3], np.int64))]
    else:
        node = helper.make_node("Pad", ["x", "p", "v"], ["y"])
        inits = [("p", np.array([0, 2, 0, -1, 0, 1, 0, 3], np.int64)), ("v", np.float32(-0.25))]
    g = _compare(_model([node], [("x", (1, 2, 3, 4))], ["y"], inits, opset=opset))
    assert g.values["y"].shape == (1, 5, 3, 6)


def test_layer_normalization_and_transformer_pieces():
    """LayerNormalization (opset 17), MatMul with a 3-D operand, Transpose, Softmax, residual Add."""
    nodes = [helper.make_node("LayerNormalization", ["x", "ln_w", "ln_b"], ["n"], axis=-1, epsilon=1e-5),
             helper.make_node("MatMul", ["n", "wq"], ["q"]),
             helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "qt"], ["s"]),
             helper.make_node("Softmax", ["s"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "n"], ["o"]),
             helper.make_node("Add", ["o", "x"], ["y"]),
             helper.make_node("LayerNormalization", ["y", "ln2_w"], ["z"], axis=1)]
    inits = [("ln_w", _w(4) + 1), ("ln_b", _w(4)), ("wq", _w(4, 4)), ("ln2_w", _w(3, 4) + 1)]
    g = _compare(_model(nodes, [("x", (2, 3, 4))], ["z"], inits, opset=17))
    assert _ops(g).count("layer_norm") == 2


@pytest.mark.parametrize("opset", [13, 18])
def test_gelu_tanh_form_and_reduce_mean_layer_norm_as_exported(opset):
    """GELU as torch exports approximate='tanh' without a Gelu op, and LayerNorm as exporters write it
    before opset 17 (ReduceMean, Sub, Pow, Sqrt, Div); axes an attribute before opset 18."""
    def reduce(name, x, out):
        if opset >= 18:
            return helper.make_node(name, [x, "axes"], [out], keepdims=1)
        return helper.make_node(name, [x], [out], axes=[-1], keepdims=1)

    nodes = [helper.make_node("Pow", ["x", "three"], ["x3"]),
             helper.make_node("Mul", ["x3", "a"], ["ax3"]),
             helper.make_node("Add", ["x", "ax3"], ["inner"]),
             helper.make_node("Mul", ["inner", "c"], ["ci"]),
             helper.make_node("Tanh", ["ci"], ["t"]),
             helper.make_node("Add", ["t", "one"], ["t1"]),
             helper.make_node("Mul", ["x", "t1"], ["xt"]),
             helper.make_node("Mul", ["xt", "half"], ["gelu"]),
             reduce("ReduceMean", "gelu", "mu"),
             helper.make_node("Sub", ["gelu", "mu"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["d2"]),
             reduce("ReduceMean", "d2", "var"),
             helper.make_node("Add", ["var", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Div", ["d", "sd"], ["y"]),
             helper.make_node("Clip", ["y", "lo", "hi"], ["z"])]
    inits = [("three", np.float32(3)), ("a", np.float32(0.044715)), ("c", np.float32(np.sqrt(2 / np.pi))),
             ("one", np.float32(1)), ("half", np.float32(0.5)), ("two", np.float32(2)),
             ("eps", np.float32(1e-5)), ("lo", np.float32(-1.5)), ("hi", np.float32(1.5))]
    if opset >= 18:
        inits.append(("axes", np.array([-1], np.int64)))
    g = _compare(_model(nodes, [("x", (2, 3, 8))], ["z"], inits, opset=opset), lo=-3, hi=3)
    assert "gelu" not in _ops(g) and _ops(g).count("mean") == 2


def test_leaky_relu_reduce_sum_max_unsqueeze_constant_of_shape():
    nodes = [helper.make_node("LeakyRelu", ["x"], ["l"]),
             helper.make_node("ReduceSum", ["l", "ax"], ["s"], keepdims=0),
             helper.make_node("ReduceMax", ["l"], ["mx"], axes=[1], keepdims=0),
             helper.make_node("Unsqueeze", ["s", "ax"], ["su"]),
             helper.make_node("Shape", ["su"], ["shp"]),
             helper.make_node("ConstantOfShape", ["shp"], ["ones"],
                              value=numpy_helper.from_array(np.array([0.75], np.float32))),
             helper.make_node("Mul", ["su", "ones"], ["y"])]
    _compare(_model(nodes, [("x", (2, 3, 4))], ["y", "mx"], [("ax", np.array([1], np.int64))], opset=13))
