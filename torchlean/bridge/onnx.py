"""ONNX import to the graph IR (and export back for the primitives that map one to one).

``load_onnx(path)`` reads a model with the ``onnx`` package, resolves symbolic (batch) dimensions
to a concrete size, and lowers each ONNX operator to spec primitives. Weights become graph
constants with their exact bits. Shapes are static after import, so ONNX's shape arithmetic
(Shape, Gather, Concat, Unsqueeze on constant int64 tensors...) is folded away here and never
reaches the graph; so are Identity/Dropout and every operator whose inputs are all constants and
whose result is a mere rearrangement of bits (Transpose, Reshape, ...), which keeps weights in one
constant the verifier can read directly.

Unsupported operators are reported all at once, in one line, before anything is lowered.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec import PRIMITIVES, Graph, Node, Value
from ..spec.shapes import ShapeError
from . import _onnx_ops as ops


class OnnxImportError(ValueError):
    """The model cannot be imported; the message says why in one line."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a core dependency
        raise OnnxImportError("ONNX import needs the 'onnx' package (pip install onnx)") from None
    return onnx


class Builder:
    """Accumulates a Graph while tracking every value's static shape and known constants.

    Constants are materialised into the graph lazily, only when a node consumes them, so folded
    shape tensors and unused initializers never appear in the IR.
    """

    def __init__(self, opset: int, dtype: str) -> None:
        self.opset = opset
        self.dtype = dtype  # the model's float dtype, for constants made from attributes
        self.graph = Graph()
        self.env: dict[str, str] = {}  # ONNX name -> IR value name
        self.shapes: dict[str, tuple[int, ...]] = {}  # IR value name -> shape
        self.consts: dict[str, np.ndarray] = {}  # IR value name -> known constant
        self.used: set[str] = set()  # every IR name taken
        self.reserved: set[str] = set()  # every ONNX value name (temporaries avoid them)
        self.made: set[str] = set()  # temporaries made since the current ONNX node began
        self._counter = 0

    # -- names ---------------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A new temporary name ``hint.N``; ONNX's own names are reserved for the values they name."""
        while True:
            self._counter += 1
            name = f"{hint}.{self._counter}"
            if name not in self.used and name not in self.reserved:
                self.used.add(name)
                return name

    def claim(self, ir: str, onnx_name: str) -> str:
        """Rename the value ``ir`` made by the current ONNX node to that node's output name."""
        if onnx_name in self.used or ir not in self.made:
            return ir
        if ir in self.consts:
            self.consts[onnx_name] = self.consts.pop(ir)
        else:
            node = self.graph.nodes[-1] if self.graph.nodes else None
            if node is None or node.output != ir:
                return ir
            node.output = onnx_name
        self.shapes[onnx_name] = self.shapes.pop(ir)
        self.used.add(onnx_name)
        self.made.discard(ir)
        return onnx_name

    # -- values ----------------------------------------------------------------------------------
    def add_input(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
        self.used.add(name)
        self.graph.inputs.append(Value(name, shape, dtype))
        self.env[name] = name
        self.shapes[name] = shape

    def add_initializer(self, name: str, array: np.ndarray) -> None:
        self.used.add(name)
        self.consts[name] = array
        self.shapes[name] = tuple(array.shape)
        self.env[name] = name

    def const(self, array: np.ndarray, hint: str = "const") -> str:
        """A known constant value (not yet in the graph)."""
        ir = self.fresh(hint)
        self.made.add(ir)
        self.consts[ir] = np.asarray(array)
        self.shapes[ir] = tuple(np.shape(array))
        return ir

    def scalar(self, x: float, hint: str = "scalar") -> str:
        return self.const(np.asarray(x, dtype=self.dtype), hint)

    def value(self, onnx_name: str) -> str:
        if onnx_name not in self.env:
            raise OnnxImportError(f"value {onnx_name!r} is used before it is defined")
        return self.env[onnx_name]

    def constant_of(self, ir: str) -> np.ndarray | None:
        return self.consts.get(ir)

    def shape(self, ir: str) -> tuple[int, ...]:
        return self.shapes[ir]

    # -- nodes -------------------------------------------------------------------------------------
    def emit(self, op: str, inputs: list[str], attrs: dict[str, Any] | None = None,
             hint: str = "t", fold: bool = False) -> str:
        """Append a primitive node; with ``fold`` and all inputs constant, evaluate it instead."""
        attrs = dict(attrs or {})
        if op not in PRIMITIVES:
            raise OnnxImportError(f"primitive {op!r} is not available in this torchlean build")
        shape = PRIMITIVES[op].shape(*(self.shapes[i] for i in inputs), **attrs)
        if fold and all(i in self.consts for i in inputs):
            from ..runtime.rules import RULES

            full = PRIMITIVES[op].check_attrs(attrs)
            value = RULES[op].forward(np, *(self.consts[i] for i in inputs), **full)
            return self.const(np.asarray(value), hint)
        for i in inputs:
            if i in self.consts and i not in self.graph.constants:
                self.graph.constants[i] = self.consts[i]
        out = self.fresh(hint)
        self.made.add(out)
        self.graph.nodes.append(Node(op, list(inputs), out, attrs))
        self.shapes[out] = tuple(shape)
        return out

    def reshape(self, x: str, shape: tuple[int, ...], hint: str = "t") -> str:
        if self.shapes[x] == tuple(shape):
            return x
        c = self.constant_of(x)
        if c is not None:
            return self.const(c.reshape(shape), hint)
        return self.emit("reshape", [x], {"shape": tuple(int(d) for d in shape)}, hint)


def _attrs(node: Any) -> dict[str, Any]:
    onnx = _onnx()
    out: dict[str, Any] = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif a.type == onnx.AttributeProto.TENSOR:
            v = onnx.numpy_helper.to_array(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        out[a.name] = v
    return out


def _dims(type_proto: Any, batch_size: int, name: str) -> tuple[int, ...]:
    """Static dims of a value type; symbolic or unknown dims become ``batch_size``."""
    if not type_proto.tensor_type.HasField("shape"):
        raise OnnxImportError(f"graph input {name!r} has no shape; give the model static input shapes")
    dims = []
    for d in type_proto.tensor_type.shape.dim:
        has_value = d.HasField("dim_value") and d.dim_value > 0
        dims.append(int(d.dim_value) if has_value else batch_size)
    return tuple(dims)


def _dtype_name(elem_type: int) -> str:
    onnx = _onnx()
    return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))


def load_onnx(path: str | os.PathLike[str] | Any, batch_size: int = 1) -> Graph:
    """Import an ONNX model (a path or a loaded ``ModelProto``) as a checked spec Graph.

    Symbolic dimensions (dynamic batch) are resolved to ``batch_size``. Graph inputs and outputs
    keep their ONNX names (initializers listed as inputs, as IR-3 models do, are not inputs).
    """
    onnx = _onnx()
    if isinstance(path, (str, os.PathLike)):
        try:
            model = onnx.load(str(path))
        except FileNotFoundError:
            raise OnnxImportError(f"{path}: no such file") from None
        except Exception as e:  # onnx raises DecodeError and friends
            raise OnnxImportError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    else:
        model = path
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    g = model.graph

    supported = set(supported_operators())
    unsupported = {n.op_type for n in g.node if n.domain not in ("", "ai.onnx") or n.op_type not in supported}
    if unsupported:
        raise OnnxImportError("unsupported ONNX operator(s): " + ", ".join(sorted(unsupported)))

    inits = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
    float_types = [_dtype_name(i.type.tensor_type.elem_type) for i in g.input if i.name not in inits]
    float_types += [str(a.dtype) for a in inits.values() if a.dtype.kind == "f"]
    dtype = next((d for d in float_types if d.startswith("float")), "float32")
    b = Builder(opset, dtype)

    for vi in g.input:
        if vi.name in inits:
            continue
        b.add_input(vi.name, _dims(vi.type, batch_size, vi.name), _dtype_name(vi.type.tensor_type.elem_type))
    for name, arr in inits.items():
        b.add_initializer(name, arr)
    b.reserved = {v for n in g.node for v in n.output} | {v.name for v in g.output}

    for node in g.node:
        convert: Callable[..., list[str]] = ops.CONVERTERS[node.op_type]
        ins = [b.value(i) if i else "" for i in node.input]
        where = f"{node.op_type} node {node.name or node.output[0]!r}"
        b.made = set()
        try:
            outs = convert(b, ins, _attrs(node), hint=node.output[0])
        except (ShapeError, ValueError) as e:  # includes OnnxImportError from the builder
            raise OnnxImportError(f"{where}: {e}") from None
        for onnx_name, ir in zip(node.output, outs):
            if onnx_name:
                b.env[onnx_name] = b.claim(ir, onnx_name)

    outputs = []
    for vo in g.output:
        ir = b.value(vo.name)
        if ir in b.consts or ir in {v.name for v in b.graph.inputs} or ir in outputs:
            # an output must be a node of its own: copy it through a no-op reshape
            b.made = set()
            ir = b.claim(b.emit("reshape", [ir], {"shape": b.shape(ir)}, hint=vo.name), vo.name)
        outputs.append(ir)
    b.graph.outputs = outputs
    return b.graph.check()


def onnx_operators(path: str | os.PathLike[str]) -> list[str]:
    """The operator types a model uses, sorted: handy to see what an import would need."""
    model = _onnx().load(str(path))
    return sorted({n.op_type for n in model.graph.node})


def supported_operators() -> list[str]:
    """ONNX operators this build imports (those whose primitives are all registered)."""
    return sorted(op for op in ops.CONVERTERS if all(p in PRIMITIVES for p in ops.NEEDS.get(op, ())))


# export lives in its own module; re-exported here so `bridge.onnx` is the one place to look
from ._onnx_export import export_onnx  # noqa: E402

__all__ = ["OnnxImportError", "export_onnx", "load_onnx", "onnx_operators", "supported_operators"]
