"""Export a spec Graph to ONNX, for the primitives that map back to one ONNX operator (or a few).

Used for round-trip tests and to hand torchlean models to other tools. Primitives without an ONNX
counterpart are reported all at once, in one line.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..spec import Graph
from ..spec.constants import GELU_A, GELU_C
from ..spec.primitives import PRIMITIVES
from ..spec.shapes import norm_axes

_SIMPLE = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "matmul": "MatMul",
           "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "erf": "Erf", "exp": "Exp", "log": "Log",
           "sqrt": "Sqrt", "neg": "Neg", "abs": "Abs", "maximum": "Max", "minimum": "Min",
           "softplus": "Softplus"}
_EXPORTABLE = {*_SIMPLE, "reshape", "flatten", "transpose", "concat", "softmax", "log_softmax",
               "leaky_relu", "conv2d", "max_pool2d", "avg_pool2d", "batch_norm", "slice", "mean", "sum",
               "embedding", "layer_norm", "broadcast_to", "pow", "where", "gather", "max", "silu", "gelu",
               "cast"}
#: the opset a primitive needs at least (LayerNormalization exists from opset 17)
_MIN_OPSET = {"layer_norm": 17}


class OnnxExportError(ValueError):
    """The graph uses primitives without an ONNX counterpart (named in the message)."""


def export_onnx(graph: Graph, path: str | os.PathLike[str] | None = None, opset: int | None = None) -> Any:
    """Write ``graph`` as an ONNX model and return the ``ModelProto``. The opset is 13 by default,
    17 when the graph has a ``layer_norm`` (ONNX's LayerNormalization); a given one below what a
    primitive needs is refused in one line.

    gelu and silu are written as their spec formulas (gelu's binary64 constants cast to the input's
    dtype), so a float32 file computes gelu with float32(C) and float32(A).
    A pow exponent is written in the input's dtype (a float32 file holds float32(1/3)); div, mean
    and a fractional or negative pow on integers are refused (ONNX's integer results are rounded).
    ONNX float attributes are float32: a leaky_relu slope or a batch_norm/layer_norm eps that float32 does not
    hold (a binary64 1e-5) is written rounded, so the file's meaning can differ from the graph's by
    that rounding. Import (``load_onnx``) is the direction that keeps meanings exactly.
    The file holds the graph's meaning (torchlean's primitives), not whatever kernels ran when it was
    traced: a model that runs a project's kernel under a shipped name (``RULES["relu"] = ...``)
    traces to a graph whose meaning is torchlean's relu, and that is what is written (audit55;
    ``tl.verify`` and ``to_torch(model)`` refuse such a model)."""
    import onnx
    from onnx import helper, numpy_helper

    graph.check()
    bad = sorted({n.op for n in graph.nodes if n.op not in _EXPORTABLE})
    if bad:
        raise OnnxExportError("no ONNX export for primitive(s): " + ", ".join(bad))
    for n in graph.nodes:  # on integers ONNX's Div, ReduceMean and Pow give integers, the IR's do not
        e = float(n.attrs.get("exponent", 2)) if n.op == "pow" else 0.0
        if (n.op in ("div", "mean") or not (e.is_integer() and e >= 0)) and \
                np.dtype(graph.values[n.inputs[0]].dtype).kind in "iub":
            raise OnnxExportError(f"{n.op} node {n.output!r} on integers has no ONNX export "
                                  "(ONNX rounds the result to an integer)")
    need = max([13] + [_MIN_OPSET.get(n.op, 13) for n in graph.nodes])
    if opset is None:
        opset = need
    elif opset < need:
        raise OnnxExportError(f"opset {opset} is too old for this graph: it needs opset {need} "
                              "(LayerNormalization)")
    elem = {str(np.dtype(t)): helper.np_dtype_to_tensor_dtype(np.dtype(t))
            for t in ("float16", "float32", "float64", "int64", "bool")}
    elem["bfloat16"] = onnx.TensorProto.BFLOAT16
    inits = [numpy_helper.from_array(np.asarray(a), k) for k, a in graph.constants.items()]
    nodes: list[Any] = []
    taken = set(graph.values)

    def fresh(hint: str) -> str:  # a name no graph value or earlier helper has
        name = hint
        k = 0
        while name in taken:
            k += 1
            name = f"{hint}.{k}"
        taken.add(name)
        return name

    def extra(array: np.ndarray, hint: str) -> str:
        name = fresh(hint)
        inits.append(numpy_helper.from_array(array, name))
        return name

    for n in graph.nodes:
        a = PRIMITIVES[n.op].check_attrs(n.attrs)  # the IR's defaults (a pool's stride is (2, 2))
        x = n.inputs
        if n.op in ("sum", "mean", "max") and not norm_axes(a["axes"], len(graph.values[x[0]].shape), n.op):
            # over no axes: x itself (ONNX reads empty axes as all of them)
            nodes.append(helper.make_node("Identity", x, [n.output]))
        elif n.op in _SIMPLE:
            nodes.append(helper.make_node(_SIMPLE[n.op], x, [n.output]))
        elif n.op in ("reshape", "flatten"):
            shape = np.asarray(graph.values[n.output].shape, dtype=np.int64)
            nodes.append(helper.make_node("Reshape", [x[0], extra(shape, n.output + ".shape")], [n.output]))
        elif n.op == "transpose":
            rank = len(graph.values[x[0]].shape)
            perm = a.get("axes") or tuple(reversed(range(rank)))
            nodes.append(helper.make_node("Transpose", x, [n.output], perm=[int(p) % rank for p in perm]))
        elif n.op == "concat":
            nodes.append(helper.make_node("Concat", x, [n.output], axis=int(a.get("axis", 0))))
        elif n.op in ("softmax", "log_softmax"):
            op = "Softmax" if n.op == "softmax" else "LogSoftmax"
            nodes.append(helper.make_node(op, x, [n.output], axis=int(a.get("axis", -1))))
        elif n.op == "leaky_relu":
            nodes.append(helper.make_node("LeakyRelu", x, [n.output], alpha=float(a.get("slope", 0.01))))
        elif n.op in ("sum", "mean"):
            axes = list(norm_axes(a["axes"], len(graph.values[x[0]].shape), n.op))  # once each, >= 0
            op = "ReduceSum" if n.op == "sum" else "ReduceMean"
            keep = int(bool(a.get("keepdims", False)))
            if op == "ReduceSum" or opset >= 18:  # axes an input: ReduceSum from 13, ReduceMean from 18
                ax = extra(np.asarray(axes, dtype=np.int64), n.output + ".axes")
                nodes.append(helper.make_node(op, [x[0], ax], [n.output], keepdims=keep))
            else:
                nodes.append(helper.make_node(op, x, [n.output], axes=axes, keepdims=keep))
        elif n.op == "slice":
            idx = a.get("index", ())
            shape = graph.values[x[0]].shape
            starts, ends, steps = [], [], []
            for i, (s0, s1, st) in enumerate(idx):
                start, stop, step = slice(s0, s1, st).indices(shape[i])
                starts.append(start)
                ends.append(stop)
                steps.append(step)
            ins = [x[0]] + [extra(np.asarray(v, dtype=np.int64), f"{n.output}.{k}") for k, v in
                            (("starts", starts), ("ends", ends), ("axes", list(range(len(idx)))),
                             ("steps", steps))]
            nodes.append(helper.make_node("Slice", ins, [n.output]))
        elif n.op == "conv2d":
            p = _pair(a.get("padding", 0))
            nodes.append(helper.make_node("Conv", x, [n.output], strides=list(_pair(a.get("stride", 1))),
                                          pads=[*p, *p], dilations=list(_pair(a.get("dilation", 1))),
                                          group=int(a.get("groups", 1))))
        elif n.op in ("max_pool2d", "avg_pool2d"):
            p = _pair(a.get("padding", 0))
            k = _pair(a.get("kernel_size", 2))
            kw: dict[str, Any] = {"kernel_shape": list(k), "strides": list(_pair(a.get("stride", k))),
                                  "pads": [*p, *p]}
            if n.op == "avg_pool2d":
                kw["count_include_pad"] = int(bool(a.get("count_include_pad", True)))
            nodes.append(helper.make_node("MaxPool" if n.op == "max_pool2d" else "AveragePool",
                                          x, [n.output], **kw))
        elif n.op == "pow":  # the exponent as a constant of the input's dtype (integers exactly)
            e = np.asarray(a.get("exponent", 2), dtype=graph.values[x[0]].dtype)
            nodes.append(helper.make_node("Pow", [x[0], extra(e, n.output + ".exponent")], [n.output]))
        elif n.op == "where":  # the mask as bool (the IR takes any nonzero as true)
            mask = fresh(n.output + ".mask")
            nodes.append(helper.make_node("Cast", [x[0]], [mask], to=onnx.TensorProto.BOOL))
            nodes.append(helper.make_node("Where", [mask, x[1], x[2]], [n.output]))
        elif n.op == "gather":
            idx = fresh(n.output + ".idx")
            nodes.append(helper.make_node("Cast", [x[1]], [idx], to=onnx.TensorProto.INT64))
            nodes.append(helper.make_node("GatherElements", [x[0], idx], [n.output],
                                          axis=int(a.get("axis", -1))))
        elif n.op == "max":  # ReduceMax takes axes as an attribute up to opset 17
            axes = list(norm_axes(a["axes"], len(graph.values[x[0]].shape), n.op))  # once each, >= 0
            keep = int(bool(a.get("keepdims", False)))
            if opset >= 18:
                ax = extra(np.asarray(axes, dtype=np.int64), n.output + ".axes")
                nodes.append(helper.make_node("ReduceMax", [x[0], ax], [n.output], keepdims=keep))
            else:
                nodes.append(helper.make_node("ReduceMax", x, [n.output], axes=axes, keepdims=keep))
        elif n.op in ("silu", "gelu"):  # x * sigmoid(x); x/2 * (1 + tanh(C (x + A x^3))), the spec's form
            dt = graph.values[x[0]].dtype
            t = n.output
            if n.op == "silu":
                sig = fresh(t + ".s")
                nodes.append(helper.make_node("Sigmoid", x, [sig]))
                nodes.append(helper.make_node("Mul", [x[0], sig], [t]))
            else:
                c = {k: extra(np.asarray(v, dtype=dt), f"{t}.{k}") for k, v in
                     (("A", GELU_A), ("C", GELU_C), ("one", 1.0), ("half", 0.5))}
                # the runtime's order: 0.5 * x * (1 + tanh(C * (x + A * (x * x * x)))); an int names
                # an earlier step's output (a fresh name: a graph value may be called "y.p" or "p")
                xi = x[0]
                steps = [("Mul", [xi, xi], "x2"), ("Mul", [0, xi], "x3"), ("Mul", [c["A"], 1], "ax3"),
                         ("Add", [xi, 2], "in"), ("Mul", [c["C"], 3], "arg"), ("Tanh", [4], "th"),
                         ("Add", [c["one"], 5], "p"), ("Mul", [c["half"], xi], "hx"), ("Mul", [7, 6], "")]
                outs = [fresh(f"{t}.{hint}") if hint else t for _, _, hint in steps]
                for k, (op, ins, _) in enumerate(steps):
                    ins = [outs[i] if isinstance(i, int) else i for i in ins]
                    nodes.append(helper.make_node(op, ins, [outs[k]]))
        elif n.op == "cast":  # ONNX Cast of a float to a float type: round to nearest even
            nodes.append(helper.make_node("Cast", x, [n.output], to=elem[a["dtype"]]))
        elif n.op == "broadcast_to":
            shape = np.asarray(graph.values[n.output].shape, dtype=np.int64)
            nodes.append(helper.make_node("Expand", [x[0], extra(shape, n.output + ".shape")], [n.output]))
        elif n.op == "embedding":  # Gather of rows; ONNX wants int64 (or int32) indices
            nodes.append(helper.make_node("Gather", x, [n.output], axis=0))
        elif n.op == "layer_norm":
            k = int(a.get("normalized_ndim", 1))
            nodes.append(helper.make_node("LayerNormalization", x, [n.output], axis=-k,
                                          epsilon=float(a.get("eps", 1e-5))))
        elif n.op == "batch_norm":
            xin, mean, var, w, bias = x
            nodes.append(helper.make_node("BatchNormalization", [xin, w, bias, mean, var], [n.output],
                                          epsilon=float(a.get("eps", 1e-5))))
    inputs = [helper.make_tensor_value_info(v.name, elem[v.dtype], list(v.shape)) for v in graph.inputs]
    outputs = [helper.make_tensor_value_info(o, elem[graph.values[o].dtype], list(graph.values[o].shape))
               for o in graph.outputs]
    model = helper.make_model(helper.make_graph(nodes, "torchlean", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", opset)], producer_name="torchlean")
    model.ir_version = min(model.ir_version, 8)  # readable by older onnxruntime releases
    onnx.checker.check_model(model)
    if path is not None:
        from .ir_json import atomic_write_bytes

        atomic_write_bytes(path, model.SerializeToString())
    return model


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(i) for i in v)
    return (t[0], t[1])
