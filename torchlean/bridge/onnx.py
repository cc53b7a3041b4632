"""ONNX import to the graph IR (and export back for the primitives that map one to one).

``load_onnx(path)`` reads a model with the ``onnx`` package, resolves symbolic (batch) dimensions
to a concrete size, and lowers each ONNX operator to spec primitives. The importer is part of the
trusted base: the imported graph's real-number meaning (``spec.exact``) must be the meaning of the
ONNX model's stored weights and attributes, read as the exact rationals their floats denote.

So nothing is folded in float arithmetic. Weights become graph constants with their exact bits.
Constant subexpressions are evaluated at import time only when the result is exact by
construction: rearrangements of bits (Transpose, Reshape, Concat, Gather, ... of constants: the
``EXACT_FOLDS`` primitives), integer shape arithmetic (Shape, Gather, Concat, Unsqueeze on int64
tensors, with overflow checked), and a scaling by an attribute (Gemm's alpha and beta) only when
every product is checked to be representable in the weight's dtype (``exact_product``). Anything
else stays an explicit node on constants (e.g. ``mul(C, beta)``), which keeps the exact meaning.
Identity/Dropout vanish.

Malformed models are refused with one line naming the problem: unsupported operators (all listed
at once, before anything is lowered), an opset outside the supported range, operators from other
domains, a value written twice (not SSA), input dimensions that are not positive sizes, a node that
does not fit its operator's schema (input/output counts, empty required inputs, unknown or missing
attributes), and last whatever the onnx package's strict type and shape inference refuses.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec import PRIMITIVES, Graph, Node, Value
from ..spec.graph import DTYPES, _result_dtype
from ..spec.shapes import ShapeError, size
from . import _onnx_ops as ops
from ._onnx_exact import EXACT_FOLDS, exact_array, exact_product

#: the oldest default-domain opset read (older ones broadcast with explicit axes, etc.); the newest
#: is the installed onnx package's, up to ``MAX_OPSET``: the operators imported here changed only
#: their type lists after opset 21 (checked by comparing their schemas' attributes and inputs, and
#: by tests/test_heldout_audit40.py), and Cast's new ``round_mode`` matters only for float8
#: targets, which are refused
MIN_OPSET = 7
#: the newest opset whose operator versions were read against their schemas (onnx 1.23): a later
#: onnx may bring a new version of an operator here with the same signature and a new meaning
#: (as Softmax-13 did), which the converters would read the old way (audit40)
MAX_OPSET = 28

_FLOATS = ("float16", "float32", "float64")


class OnnxImportError(ValueError):
    """The model cannot be imported; the message says why in one line."""


#: (audit63) the most elements one imported value, and all of them together, may hold (one
#: value: as ConstantOfShape and Pad already required): a 178-byte model expanding its input to
#: 2^28 elements took 10.6 GB under `verify`; a chain of such values multiplies it
MAX_ELEMENTS = 1 << 26


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a core dependency
        raise OnnxImportError("ONNX import needs the 'onnx' package (pip install onnx)") from None
    return onnx


class Builder:
    """Accumulates a Graph while tracking every value's static shape, dtype and known constants.

    Constants are materialised into the graph lazily, only when a node consumes them, so folded
    shape tensors and unused initializers never appear in the IR.
    """

    def __init__(self, opset: int, dtype: str) -> None:
        self.opset = opset
        self.dtype = dtype  # the model's float dtype, for constants made from attributes
        self.graph = Graph()
        self.env: dict[str, str] = {}  # ONNX name -> IR value name
        self.shapes: dict[str, tuple[int, ...]] = {}  # IR value name -> shape
        self.dtypes: dict[str, str] = {}  # IR value name -> dtype
        self.consts: dict[str, np.ndarray] = {}  # IR value name -> known constant
        self.used: set[str] = set()  # every IR name taken
        self.reserved: set[str] = set()  # every ONNX value name (temporaries avoid them)
        self.made: set[str] = set()  # temporaries made since the current ONNX node began
        self._counter = 0
        self.elements = 0  # every value's elements so far (``bounded``)

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
        self.dtypes[onnx_name] = self.dtypes.pop(ir)
        self.used.add(onnx_name)
        self.made.discard(ir)
        return onnx_name

    def bounded(self, shape: tuple[int, ...], what: str) -> tuple[int, ...]:
        """``shape``, unless its value or all values so far with it hold more than MAX_ELEMENTS
        elements (ShapeError): checked before the value is built or its node emitted."""
        n = size(tuple(int(d) for d in shape))
        if n > MAX_ELEMENTS or self.elements + n > MAX_ELEMENTS:
            raise ShapeError(f"{what}: a value of shape {tuple(shape)} takes the model past 2**26 elements")
        self.elements += n
        return shape

    # -- values ----------------------------------------------------------------------------------
    def add_input(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
        self.used.add(name)
        self.graph.inputs.append(Value(name, shape, dtype))
        self.env[name] = name
        self.shapes[name] = shape
        self.dtypes[name] = dtype

    def add_initializer(self, name: str, array: np.ndarray) -> None:
        self.used.add(name)
        self.consts[name] = array
        self.shapes[name] = tuple(array.shape)
        self.dtypes[name] = str(array.dtype)
        self.env[name] = name

    def const(self, array: np.ndarray, hint: str = "const") -> str:
        """A known constant value (not yet in the graph)."""
        self.bounded(np.shape(array), "constant")
        ir = self.fresh(hint)
        self.made.add(ir)
        self.consts[ir] = np.asarray(array)
        self.shapes[ir] = tuple(np.shape(array))
        self.dtypes[ir] = str(self.consts[ir].dtype)
        return ir

    def scalar(self, x: float, hint: str = "scalar", like: str | None = None) -> str:
        """A scalar constant holding exactly ``x``: in the dtype of ``like`` (or the model's) when
        that represents it, else in float64."""
        return self.const(exact_array(x, self.dtypes[like] if like else self.dtype), hint)

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
        """Append a primitive node; with ``fold`` and all inputs constant, evaluate it instead
        (only for the exact rearrangements in ``EXACT_FOLDS``)."""
        attrs = dict(attrs or {})
        if op not in PRIMITIVES:
            raise OnnxImportError(f"primitive {op!r} is not available in this torchlean build")
        prim = PRIMITIVES[op]
        shape = self.bounded(prim.shape(*(self.shapes[i] for i in inputs), **attrs), op)
        if fold and all(i in self.consts for i in inputs):
            if op not in EXACT_FOLDS:
                raise AssertionError(f"folding {op} at import time is not exact")
            from ..runtime.rules import RULES

            full = prim.check_attrs(attrs)
            value = RULES[op].forward(np, *(self.consts[i] for i in inputs), **full)
            return self.const(np.asarray(value), hint)
        for i in inputs:
            if i in self.consts and i not in self.graph.constants:
                self.graph.constants[i] = self.consts[i]
        out = self.fresh(hint)
        self.made.add(out)
        self.graph.nodes.append(Node(op, list(inputs), out, attrs))
        self.shapes[out] = tuple(shape)
        floats = [self.dtypes[i] for j, i in enumerate(inputs) if j not in prim.integer_inputs]
        self.dtypes[out] = str(attrs["dtype"]) if op == "cast" else _result_dtype(floats, op)
        return out

    def reshape(self, x: str, shape: tuple[int, ...], hint: str = "t") -> str:
        if self.shapes[x] == tuple(shape):
            return x
        c = self.constant_of(x)
        if c is not None:
            return self.const(c.reshape(shape), hint)
        return self.emit("reshape", [x], {"shape": tuple(int(d) for d in shape)}, hint)

    def scaled(self, x: str, s: float, hint: str = "t") -> str:
        """``x * s`` for an attribute ``s``, with its exact meaning: nothing when s == 1, a folded
        constant when ``x`` is one and every product is exact, else an explicit ``mul`` node."""
        if s == 1.0:
            return x
        c = self.constant_of(x)
        if c is not None:
            folded = exact_product(c, s)
            if folded is not None:
                return self.const(folded, hint)
        return self.emit("mul", [x, self.scalar(s, "scale", like=x)], hint=hint)


def _attrs(node: Any) -> dict[str, Any]:
    onnx = _onnx()
    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise ShapeError(f"attribute {a.name!r} holds a subgraph, which is not supported")
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif a.type == onnx.AttributeProto.TENSOR:
            v = onnx.numpy_helper.to_array(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        out[a.name] = v
    return out


def _dims(type_proto: Any, batch_size: int, name: str, dims: dict[str, int]) -> tuple[int, ...]:
    """Static dims of a graph input. A dimension must be a positive size, or symbolic (or
    unknown) and then resolved: by ``dims[its name]``, else on axis 0 (the batch) by
    ``batch_size``; anything else is refused rather than guessed."""
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        raise OnnxImportError(f"graph input {name!r} has no shape; give the model static input shapes")
    out = []
    for axis, d in enumerate(type_proto.tensor_type.shape.dim):
        if d.HasField("dim_value"):
            if d.dim_value <= 0:
                raise OnnxImportError(f"graph input {name!r} has dimension {d.dim_value} at axis {axis}; "
                                      "sizes must be positive")
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param in dims:
            out.append(int(dims[d.dim_param]))
        elif axis == 0:
            out.append(batch_size)
        else:
            what = (f"symbolic dimension {d.dim_param!r}" if d.HasField("dim_param")
                    else "an unknown dimension")
            raise OnnxImportError(f"graph input {name!r} has {what} at axis {axis}; give its size "
                                  "(load_onnx(..., dims={name: size}))")
    return tuple(out)


def _dtype_name(elem_type: int) -> str:
    onnx = _onnx()
    try:
        return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):
        raise OnnxImportError(f"tensor element type {elem_type} is not supported") from None


def _opset(model: Any) -> int:
    """The default-domain opset, checked against the supported range; other domains refused."""
    onnx = _onnx()
    newest = min(onnx.defs.onnx_opset_version(), MAX_OPSET)
    versions = {}
    for o in model.opset_import:
        domain = o.domain or "ai.onnx"
        if domain not in ("ai.onnx", "ai.onnx.ml"):
            raise OnnxImportError(f"operator domain {o.domain!r} (opset {o.version}) is not supported")
        if domain in versions and versions[domain] != o.version:
            raise OnnxImportError(f"domain {domain!r} is imported twice "
                                  f"(opsets {versions[domain]}, {o.version})")
        versions[domain] = o.version
    if "ai.onnx" not in versions:
        raise OnnxImportError("the model imports no default-domain (ai.onnx) opset")
    v = versions["ai.onnx"]
    if not MIN_OPSET <= v <= newest:
        raise OnnxImportError(f"opset {v} is outside the supported range {MIN_OPSET}..{newest}")
    return v


def _check_graph(g: Any, opset: int) -> None:
    """SSA (every value written once), default-domain operators that exist in the model's opset,
    every unsupported operator named at once."""
    onnx = _onnx()
    defined: set[str] = set()
    inits = {t.name for t in g.initializer}
    if len(inits) != len(g.initializer):
        raise OnnxImportError("an initializer name is used twice")
    for name in [v.name for v in g.input if v.name not in inits] + list(inits):
        if name in defined:
            raise OnnxImportError(f"graph input {name!r} is declared twice")
        defined.add(name)
    supported = set(supported_operators())
    unsupported = set()
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version, ctx.opset_imports = onnx.IR_VERSION, {"": opset}
    for n in g.node:
        where = f"{n.op_type} node {n.name or (n.output[0] if n.output else '?')!r}"
        if not n.output or not n.output[0]:
            raise OnnxImportError(f"{where} has no (first) output")
        if n.domain not in ("", "ai.onnx"):
            raise OnnxImportError(f"{where} is from operator domain {n.domain!r}, which is not supported")
        for out in n.output:
            if out and out in defined:
                raise OnnxImportError(f"{where} writes {out!r}, which is already defined (not SSA)")
            defined.add(out)
        if n.op_type not in supported:
            unsupported.add(n.op_type)
            continue
        try:
            schema = onnx.defs.get_schema(n.op_type, opset, "")
        except Exception:  # onnx raises SchemaError
            raise OnnxImportError(f"{where}: {n.op_type} does not exist in opset {opset}") from None
        _check_signature(n, schema, where)
        try:  # (audit40) and onnx's own node check: a repeated attribute, a data field of another type
            probe = n  # than the attribute's (onnxruntime refuses both files); "ai.onnx" is "" there
            if n.domain:
                probe = onnx.NodeProto()
                probe.CopyFrom(n)
                probe.domain = ""
            onnx.checker.check_node(probe, ctx)
        except Exception as e:  # ValidationError
            raise OnnxImportError(f"{where}: {' '.join(str(e).split('==>')[0].split())[:200]}") from None
    if unsupported:
        raise OnnxImportError("unsupported ONNX operator(s): " + ", ".join(sorted(unsupported)))


def _check_signature(n: Any, schema: Any, where: str) -> None:
    """Input and output counts within the operator's schema, required attributes present, no
    attribute the schema does not define (a misspelt ``transb`` would otherwise be ignored)."""
    if not schema.min_input <= len(n.input) <= schema.max_input:
        raise OnnxImportError(f"{where} has {len(n.input)} inputs; {n.op_type}-{schema.since_version} "
                              f"takes {schema.min_input}..{schema.max_input}")
    optional = _onnx().defs.OpSchema.FormalParameterOption.Optional
    for i, name in enumerate(n.input):
        formal = schema.inputs[min(i, len(schema.inputs) - 1)]
        if not name and formal.option != optional:
            raise OnnxImportError(f"{where}: input {i} ({formal.name}) is required but empty")
    if len(n.output) > schema.max_output:
        raise OnnxImportError(f"{where} has {len(n.output)} outputs; at most {schema.max_output}")
    names = {a.name for a in n.attribute}
    unknown = sorted(names - set(schema.attributes))
    if unknown:
        raise OnnxImportError(f"{where}: attribute(s) {', '.join(unknown)} not defined by "
                              f"{n.op_type}-{schema.since_version}")
    # an attribute of another type than the schema's (LeakyRelu's alpha written as an INT) is an
    # invalid model that onnxruntime refuses to load, so its cross-check cannot run: refuse it too
    for a in n.attribute:
        want = int(schema.attributes[a.name].type.value)
        if want and a.type != want:
            kind = _onnx().AttributeProto.AttributeType.Name
            raise OnnxImportError(f"{where}: attribute {a.name} is {kind(a.type)}, "
                                  f"{n.op_type}-{schema.since_version} defines it as {kind(want)}")
    missing = sorted(k for k, a in schema.attributes.items() if a.required and k not in names)
    if missing:
        raise OnnxImportError(f"{where}: required attribute(s) {', '.join(missing)} missing")
    # (audit40) before BatchNormalization-14 the outputs choose the mode: five (even unnamed) is
    # training, normalising by the batch's own statistics (onnxruntime does; onnx's reference
    # blends them by momentum), not by the stored mean and var the import reads
    if n.op_type == "BatchNormalization" and schema.since_version < 14 and len(n.output) > 1:
        raise OnnxImportError(f"{where}: BatchNormalization-{schema.since_version} with {len(n.output)} "
                              "outputs is in training mode (batch statistics), which is not supported")


def load_onnx(path: str | os.PathLike[str] | Any, batch_size: int = 1,
              dims: dict[str, int] | None = None) -> Graph:
    """Import an ONNX model (a path or a loaded ``ModelProto``) as a checked spec Graph.

    Symbolic dimensions are resolved by ``dims`` (name -> size), and on axis 0 otherwise by
    ``batch_size``. Graph inputs and outputs keep their ONNX names (initializers listed as inputs,
    as IR-3 models do, are not inputs).

    Example::

        g = load_onnx("tests/data/vnncomp2021/acasxu/ACASXU_run2a_1_1_batch_2000.onnx")
        [v.shape for v in g.inputs]          # [(1, 5)]: bound it with tl.verify.bounds(g, x, eps)
    """
    onnx = _onnx()
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise OnnxImportError(f"batch_size must be a positive integer, got {batch_size!r}")
    dims = dict(dims or {})
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in dims.values()):
        raise OnnxImportError(f"dims must map names to positive integers, got {dims!r}")
    if isinstance(path, (str, os.PathLike)):
        try:
            model = onnx.load(str(path))
        except FileNotFoundError:
            raise OnnxImportError(f"{path}: no such file") from None
        except Exception as e:  # onnx raises DecodeError and friends
            raise OnnxImportError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    else:
        model = path
    opset = _opset(model)
    g = model.graph
    _check_graph(g, opset)

    if not g.output:
        raise OnnxImportError("the model's graph has no outputs")
    inits = {}
    for t in g.initializer:
        try:
            inits[t.name] = onnx.numpy_helper.to_array(t)
        except Exception as e:  # bad raw_data length, external data missing, unknown type...
            raise OnnxImportError(f"initializer {t.name!r} cannot be read ({type(e).__name__})") from None
    float_types = [_dtype_name(i.type.tensor_type.elem_type) for i in g.input if i.name not in inits]
    float_types += [str(a.dtype) for a in inits.values() if a.dtype.kind == "f"]
    dtype = next((d for d in float_types if d in _FLOATS), "float32")
    b = Builder(opset, dtype)

    for vi in g.input:
        if vi.name in inits:
            continue
        dt = _dtype_name(vi.type.tensor_type.elem_type)
        if dt not in DTYPES:
            raise OnnxImportError(f"graph input {vi.name!r} has element type {dt}, not held by the IR")
        try:
            b.add_input(vi.name, b.bounded(_dims(vi.type, batch_size, vi.name, dims), "graph input"), dt)
        except ShapeError as e:
            raise OnnxImportError(f"{vi.name!r}: {e}") from None
    for name, arr in inits.items():
        b.add_initializer(name, arr)
    b.reserved = {v for n in g.node for v in n.output} | {v.name for v in g.output}
    consumed = {i for n in g.node for i in n.input} | {v.name for v in g.output}

    for node in g.node:
        convert: Callable[..., list[str]] = ops.CONVERTERS[node.op_type]
        ins = [b.value(i) if i else "" for i in node.input]
        where = f"{node.op_type} node {node.name or node.output[0]!r}"
        b.made = set()
        try:
            outs = convert(b, ins, _attrs(node), hint=node.output[0])
        except (ShapeError, ValueError, IndexError, KeyError, TypeError) as e:  # incl. OnnxImportError
            raise OnnxImportError(f"{where}: {type(e).__name__ + ' ' if isinstance(e, KeyError) else ''}"
                                  f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        for k, onnx_name in enumerate(node.output):
            if k >= len(outs):
                if onnx_name in consumed:
                    raise OnnxImportError(f"{where}: output {k} ({onnx_name!r}) is not supported")
                continue
            if onnx_name:
                b.env[onnx_name] = b.claim(outs[k], onnx_name)

    outputs = []
    for vo in g.output:
        ir = b.value(vo.name)
        if ir in b.consts or ir in {v.name for v in b.graph.inputs} or ir in outputs:
            # an output must be a node of its own: copy it through a no-op reshape
            b.made = set()
            ir = b.claim(b.emit("reshape", [ir], {"shape": b.shape(ir)}, hint=vo.name), vo.name)
        outputs.append(ir)
    b.graph.outputs = outputs
    try:
        graph = b.graph.check()
    except ValueError as e:  # GraphError: e.g. a dtype the IR does not hold
        raise OnnxImportError(str(e).splitlines()[0]) from None
    try:  # last, the onnx package's strict type and shape inference: what the converters let by
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:  # InferenceError
        text = " ".join(str(e).split())
        raise OnnxImportError(f"invalid ONNX model: {text[:300] or type(e).__name__}") from None
    return graph


def onnx_operators(path: str | os.PathLike[str]) -> list[str]:
    """The operator types a model uses, sorted: handy to see what an import would need."""
    model = _onnx().load(str(path))
    return sorted({n.op_type for n in model.graph.node})


def supported_operators() -> list[str]:
    """ONNX operators this build imports (those whose primitives are all registered)."""
    return sorted(op for op in ops.CONVERTERS if all(p in PRIMITIVES for p in ops.NEEDS.get(op, ())))


# export lives in its own module; re-exported here so `bridge.onnx` is the one place to look
from ._onnx_export import export_onnx  # noqa: E402

__all__ = ["OnnxImportError", "exact_array", "exact_product", "export_onnx", "load_onnx",
           "onnx_operators", "supported_operators"]
