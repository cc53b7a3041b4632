"""Differential fuzzing of the ONNX importer against onnxruntime.

Small valid models are mutated at random (attribute values, input dimensions, opsets, node inputs
and outputs, operator types, initializer bytes). For every mutant: ``load_onnx`` either returns a
graph or raises ``OnnxImportError`` (never another exception), and when it returns a graph that
onnxruntime also runs, the two agree on random inputs. An import that onnxruntime refuses to run
is a failure too: a model we read that its own runtime calls invalid.
"""

import copy
import random

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from torchlean.bridge import OnnxImportError, load_onnx
from torchlean.runtime.execute import run_graph

ort = pytest.importorskip("onnxruntime")
F = TensorProto.FLOAT


def _w(rng, *shape):
    return (rng.standard_normal(shape) * 0.5).astype(np.float32)


def _bases():
    rng = np.random.default_rng(3)

    def model(nodes, inputs, inits, opset):
        g = helper.make_graph(nodes, "f", [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                              [helper.make_tensor_value_info("y", F, None)],
                              [numpy_helper.from_array(np.asarray(a), k) for k, a in inits])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m

    mlp = model([helper.make_node("Gemm", ["x", "w", "c"], ["h"], alpha=0.5, beta=2.0, transB=1),
                 helper.make_node("LeakyRelu", ["h"], ["l"], alpha=0.2),
                 helper.make_node("Clip", ["l", "lo", "hi"], ["k"]),
                 helper.make_node("Sub", ["k", "m"], ["s"]),
                 helper.make_node("Div", ["s", "d"], ["y"])],
                [("x", [2, 4])], [("w", _w(rng, 3, 4)), ("c", _w(rng, 3)), ("lo", np.float32(-0.5)),
                                  ("hi", np.float32(0.8)), ("m", _w(rng, 3)), ("d", np.float32(0.3))], 13)
    cnn = model([helper.make_node("Pad", ["x", "p"], ["a"]),
                 helper.make_node("Conv", ["a", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 0, 1, 0],
                                  strides=[1, 2], group=1),
                 helper.make_node("BatchNormalization", ["c", "g", "bb", "mu", "var"], ["n"], epsilon=1e-3),
                 helper.make_node("Relu", ["n"], ["r"]),
                 helper.make_node("AveragePool", ["r"], ["q"], kernel_shape=[2, 2], strides=[2, 1],
                                  pads=[1, 1, 1, 1], count_include_pad=1),
                 helper.make_node("MaxPool", ["q"], ["z"], kernel_shape=[2, 2], strides=[1, 1]),
                 helper.make_node("Flatten", ["z"], ["y"], axis=1)],
                [("x", [1, 2, 6, 6])],
                [("p", np.array([0, 0, 1, 0, 0, 0, 0, 1], np.int64)), ("w", _w(rng, 3, 2, 3, 3)),
                 ("b", _w(rng, 3)), ("g", _w(rng, 3)), ("bb", _w(rng, 3)), ("mu", _w(rng, 3)),
                 ("var", np.abs(_w(rng, 3)) + 0.2)], 13)
    seq = model([helper.make_node("LayerNormalization", ["x", "lw", "lb"], ["n"], axis=-1, epsilon=1e-4),
                 helper.make_node("Transpose", ["n"], ["t"], perm=[0, 2, 1]),
                 helper.make_node("Reshape", ["t", "shape"], ["r"]),
                 helper.make_node("Unsqueeze", ["r", "ax"], ["u"]),
                 helper.make_node("Squeeze", ["u", "ax"], ["v"]),
                 helper.make_node("Softmax", ["v"], ["y"], axis=1)],
                [("x", [2, 3, 4])],
                [("lw", _w(rng, 4)), ("lb", _w(rng, 4)), ("shape", np.array([0, -1], np.int64)),
                 ("ax", np.array([1], np.int64))], 17)
    return [mlp, cnn, seq]


_OPS = ["Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Flatten", "Softmax", "Identity", "Transpose", "Sqrt"]


def _mutate(m, rng: random.Random):
    m = copy.deepcopy(m)
    g = m.graph
    kind = rng.randrange(8)
    node = rng.choice(list(g.node))
    if kind == 0 and node.attribute:  # an attribute value
        a = rng.choice(list(node.attribute))
        if a.type == a.INT:
            a.i = rng.choice([-3, -1, 0, 1, 2, 5, 99])
        elif a.type == a.FLOAT:
            a.f = rng.choice([0.0, -1.0, 1e-30, 3.0, float("nan"), float("inf"), 1 / 3])
        elif a.type == a.INTS:
            del a.ints[:]
            a.ints.extend(rng.choice([-2, -1, 0, 1, 2, 3, 7]) for _ in range(rng.randrange(6)))
    elif kind == 1:  # an input dimension
        d = rng.choice(list(g.input[0].type.tensor_type.shape.dim))
        if rng.random() < 0.5:
            d.dim_value = rng.choice([-5, -1, 0, 1, 2, 3, 7])
        else:
            d.dim_param = rng.choice(["N", "H", ""])
    elif kind == 2:  # the opset
        m.opset_import[0].version = rng.choice([0, 1, 6, 7, 9, 10, 11, 12, 18, 22, 28, 29, 999])
    elif kind == 3:  # a node input dropped, duplicated or renamed
        if node.input:
            i = rng.randrange(len(node.input))
            choice = rng.randrange(3)
            if choice == 0:
                del node.input[i]
            elif choice == 1:
                node.input.append(node.input[i])
            else:
                node.input[i] = rng.choice(["x", "y", "nope", ""])
    elif kind == 4:  # an output renamed (non-SSA or dangling)
        node.output[0] = rng.choice([o for n in g.node for o in n.output] + ["x", "fresh"])
    elif kind == 5:  # the operator type
        node.op_type = rng.choice(_OPS)
        del node.attribute[:]
    elif kind == 6 and g.initializer:  # initializer bytes or shape
        t = rng.choice(list(g.initializer))
        if t.raw_data and rng.random() < 0.5:
            t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data))]
        elif t.dims:
            t.dims[rng.randrange(len(t.dims))] = rng.choice([0, 1, 2, 5])
    else:  # a node duplicated or removed
        if rng.random() < 0.5:
            g.node.append(copy.deepcopy(node))
        else:
            g.node.remove(node)
    return m


def test_mutated_models_are_refused_in_one_line_or_match_onnxruntime():
    rng = random.Random(2026)
    counts = {"refused": 0, "match": 0, "ort_refused": 0}
    bases = _bases()
    for k in range(400):
        m = _mutate(bases[k % len(bases)], rng)
        for _ in range(rng.randrange(3)):
            m = _mutate(m, rng)
        try:
            graph = load_onnx(m)
        except OnnxImportError as e:
            assert "\n" not in str(e)
            counts["refused"] += 1
            continue
        try:
            sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            feeds = {v.name: np.random.default_rng(k).uniform(-1, 1, v.shape).astype(np.float32)
                     for v in graph.inputs}
            refs = sess.run(None, feeds)
        except Exception:
            counts["ort_refused"] += 1
            continue
        with np.errstate(all="ignore"):
            outs = run_graph(graph, feeds)
        for out, ref in zip(outs, refs, strict=True):
            assert out.shape == ref.shape, (k, out.shape, ref.shape)
        if not all(np.all(np.isfinite(v)) for v in [*outs, *refs]):
            continue  # e.g. Sqrt of a negative: no real meaning to compare (NaN order in pools differs)
        for out, ref in zip(outs, refs, strict=True):
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5, err_msg=str(k))
        counts["match"] += 1
    assert counts["refused"] > 100 and counts["match"] > 20, counts
    assert counts["ort_refused"] == 0, counts
