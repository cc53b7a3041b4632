"""The outside world: ONNX, VNN-LIB, PyTorch state dicts, the IR's JSON files.

API (stable; the verifier builds on it):

``load_onnx(path, batch_size=1, dims=None) -> spec.Graph``
    A checked Graph with the exact real-number meaning of the model's stored weights and
    attributes (nothing folded in float arithmetic; see TRUST_BOUNDARIES.md). Inputs/outputs keep
    their ONNX names (``graph.inputs[0].name``, ``graph.outputs[0]``); weights are
    ``graph.constants`` with exact bits; a symbolic dim takes its size from ``dims[name]``, or on
    axis 0 from ``batch_size``; others are refused. Lowered to primitives: matmul, add, sub, mul,
    div, relu, sigmoid, tanh, flatten, reshape, transpose, concat, slice (Pad), softmax, conv2d,
    max_pool2d, avg_pool2d, batch_norm, layer_norm, ... Gemm's transposed constant weights are
    folded (``W.T`` becomes one constant; alpha/beta only when the product is exact, else a
    ``mul`` node), so the ACAS Xu and MNIST nets are ``[sub,] flatten, (matmul, add, relu)*,
    matmul, add``. Evaluate with
    ``torchlean.runtime.execute.run_graph(graph, {name: array})``. Errors: ``OnnxImportError``
    (one line; unsupported operators all listed). ``export_onnx(graph, path)`` writes one back
    (opset 13, or 17 for a graph with layer_norm; embedding, layer_norm and broadcast_to included,
    so transformers export).

``parse_vnnlib(path) -> Property`` (``parse_vnnlib_string(text)`` too)
    ``prop.n_inputs``, ``prop.n_outputs``, ``prop.regions``: each ``Region`` has an input box
    (``lower``/``upper`` float64 nearest; ``lower_exact``/``upper_exact`` Fractions;
    ``float_box(dtype, outward=True)``; ``lower_strict``/``upper_strict``: which bounds are strict,
    () when none) and ``disjuncts``: a tuple of conjunctions of ``Constraint(coeffs, rhs, strict)``
    meaning ``sum_j coeffs[j]*Y_j <= rhs`` (``<`` when strict; Fractions); ``region.matrices()``
    gives them as float64 ``(C, d)`` with ``C @ y <= d`` (the closure). Unsafe ("sat") iff
    some region has an x in its box whose output satisfies some disjunct. With one box,
    ``prop.lower``/``prop.upper``/``prop.disjuncts`` are shortcuts. ``prop.is_counterexample(x, y)``
    checks exactly (strict atoms strictly); ``format_counterexample(x, y)`` gives VNN-COMP's result
    text. Errors: ``VnnlibError('path:line:col: message')``.

``read_instances(csv) -> [Instance(onnx, vnnlib, timeout, expected, extra)]`` and
``load_instance(onnx, vnnlib) -> (graph, prop)`` (checks X_i/Y_j against the network's sizes).

``from_torch(module, example=None)``: a torch ``nn.Sequential`` rebuilt layer by layer, any other
``nn.Module`` through ``torch.export`` on ``example`` as an ``nn.GraphModule`` (``torch_export``:
one converter per aten op; unsupported ops all named in one ``TorchInteropError``).
``to_torch(model_or_graph, example=None)``: a runnable ``torch.nn.Module`` (``torch_out``: one torch
function per primitive).
``from_torch_state_dict(model, sd)`` / ``to_torch_state_dict(model)`` (torch optional),
``save_graph(graph, path)`` / ``load_graph(path)`` (IR JSON, docs/ir-json.md; atomic writes).
"""

from .ir_json import atomic_write_bytes, load_graph, save_graph
from .onnx import OnnxImportError, export_onnx, load_onnx, onnx_operators, supported_operators
from .torch_io import TorchInteropError, from_torch, from_torch_state_dict, to_torch_state_dict
from .torch_out import to_torch
from .vnncomp import Instance, load_instance, read_instances
from .vnnlib import (
    Constraint,
    Property,
    Region,
    VnnlibError,
    format_counterexample,
    parse_vnnlib,
    parse_vnnlib_string,
)

__all__ = [
    "Constraint", "Instance", "OnnxImportError", "Property", "Region", "VnnlibError",
    "atomic_write_bytes", "export_onnx", "format_counterexample", "from_torch", "from_torch_state_dict",
    "load_graph", "load_instance", "load_onnx", "onnx_operators", "parse_vnnlib", "parse_vnnlib_string",
    "read_instances", "save_graph", "supported_operators", "to_torch", "to_torch_state_dict",
    "TorchInteropError",
]
