"""The graph IR: one typed SSA graph that models trace to and every other layer consumes.

A graph has typed inputs, named constants (weights, stored with exact bits), nodes applying a
registered primitive to earlier values, and outputs. ``Graph.check()`` infers every value's shape
and dtype; errors name the node and the shapes. ``to_json``/``from_json`` round-trip exactly (see
docs/ir-json.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import primitives as P
from .shapes import Shape, ShapeError

FORMAT = "torchlean-ir"
VERSION = 1
DTYPES = ("float16", "float32", "float64", "int64", "bool")


class GraphError(ValueError):
    """The graph is malformed; the message names the node."""


@dataclass(frozen=True)
class Value:
    name: str
    shape: Shape
    dtype: str


@dataclass
class Node:
    op: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    inputs: list[Value] = field(default_factory=list)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    #: filled by ``check()``: every value's type
    values: dict[str, Value] = field(default_factory=dict, compare=False, repr=False)

    # -- validation ------------------------------------------------------------------------
    def check(self) -> Graph:
        """Infer and check every value's shape and dtype; raise GraphError naming the node."""
        values: dict[str, Value] = {}
        for v in self.inputs:
            _fresh(values, v.name, "input")
            values[v.name] = Value(v.name, tuple(v.shape), v.dtype)
        for name, arr in self.constants.items():
            _fresh(values, name, "constant")
            values[name] = Value(name, tuple(arr.shape), str(arr.dtype))
        for i, node in enumerate(self.nodes):
            where = f"node {i} ({node.op} -> {node.output!r})"
            if node.op not in P.PRIMITIVES:
                raise GraphError(f"{where}: unknown primitive {node.op!r}")
            prim = P.PRIMITIVES[node.op]
            for name in node.inputs:
                if name not in values:
                    raise GraphError(f"{where}: input {name!r} is not defined before it")
            ins = [values[n] for n in node.inputs]
            try:
                shape = prim.shape(*(v.shape for v in ins), **node.attrs)
            except ShapeError as e:
                shapes = ", ".join(f"{v.name}: {v.shape}" for v in ins)
                raise GraphError(f"{where}: {e} (inputs {shapes})") from None
            floats = [v.dtype for j, v in enumerate(ins) if j not in prim.integer_inputs]
            dtype = _result_dtype(floats, where)
            if node.op == "cast":  # (its format is its attribute; a float input only, as the runtime's)
                if dtype not in ("float16", "bfloat16", "float32", "float64"):
                    raise GraphError(f"{where}: cast of a {dtype} value (float inputs only)")
                dtype = str(node.attrs.get("dtype", "float32"))
            _fresh(values, node.output, where)
            values[node.output] = Value(node.output, shape, dtype)
        for name in self.outputs:
            if name not in values:
                raise GraphError(f"output {name!r} is not defined")
        self.values = values
        return self

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON: graph structure, dtypes and exact weight bits."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    # -- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The graph as the documented JSON-ready IR document (docs/ir-json.md), exact values as strings."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "inputs": [{"name": v.name, "shape": list(v.shape), "dtype": v.dtype} for v in self.inputs],
            "constants": {k: encode_array(a) for k, a in self.constants.items()},
            "nodes": [
                {"op": n.op, "inputs": list(n.inputs), "output": n.output, "attrs": _jsonable(n.attrs)}
                for n in self.nodes
            ],
            "outputs": list(self.outputs),
        }

    def to_json(self, indent: int | None = None) -> str:
        """``to_dict()`` as JSON text; ``Graph.from_json`` reads it back exactly."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Graph:
        """A graph from an IR document (``to_dict``'s form), checked node by node."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise GraphError(f"not a {FORMAT} document")
        if d.get("version") != VERSION:
            raise GraphError(f"unsupported {FORMAT} version {d.get('version')!r}")
        try:
            g = cls(
                inputs=[Value(v["name"], tuple(v["shape"]), v["dtype"]) for v in d["inputs"]],
                constants={k: decode_array(a) for k, a in d["constants"].items()},
                nodes=[
                    Node(n["op"], list(n["inputs"]), n["output"], _from_json(n.get("attrs", {})))
                    for n in d["nodes"]
                ],
                outputs=list(d["outputs"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise GraphError(f"malformed {FORMAT} document: {e}") from None
        return g.check()

    @classmethod
    def from_json(cls, text: str) -> Graph:
        """A graph from IR JSON text (``to_json``'s form)."""
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise GraphError(f"not JSON: {e}") from None

    def summary(self) -> str:
        """A readable listing: one line per input, constant and node, with shapes."""
        if not self.values:
            self.check()
        lines = [f"graph {self.fingerprint()[:12]}"]
        for v in self.inputs:
            lines.append(f"  input    {v.name}: {v.dtype}{list(v.shape)}")
        for k, a in self.constants.items():
            lines.append(f"  const    {k}: {a.dtype}{list(a.shape)}")
        for n in self.nodes:
            v = self.values[n.output]
            attrs = "".join(f" {k}={val}" for k, val in n.attrs.items())
            lines.append(f"  {n.output} = {n.op}({', '.join(n.inputs)}){attrs}: {v.dtype}{list(v.shape)}")
        lines.append(f"  outputs  {', '.join(self.outputs)}")
        return "\n".join(lines)


def _fresh(values: dict[str, Value], name: str, where: str) -> None:
    if name in values:
        raise GraphError(f"{where}: value {name!r} defined twice")


def _result_dtype(dtypes: list[str], where: str) -> str:
    if not dtypes:
        return "float32"
    kinds = set(dtypes)
    for d in ("float64", "float32", "float16", "bfloat16", "int64", "bool"):
        if d in kinds:
            return d
    raise GraphError(f"{where}: unsupported dtypes {sorted(kinds)}")


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """Exact encoding: dtype, shape and the little-endian bytes in base64."""
    a = np.ascontiguousarray(a)
    if str(a.dtype) not in DTYPES:
        raise GraphError(f"unsupported constant dtype {a.dtype}")
    data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    return {"dtype": str(a.dtype), "shape": list(a.shape), "data": base64.b64encode(data).decode()}


def decode_array(d: dict[str, Any]) -> np.ndarray:
    if d["dtype"] not in DTYPES:
        raise GraphError(f"unsupported constant dtype {d['dtype']!r}")
    dt = np.dtype(d["dtype"]).newbyteorder("<")
    a = np.frombuffer(base64.b64decode(d["data"]), dtype=dt)
    return a.reshape(tuple(d["shape"])).astype(np.dtype(d["dtype"]))


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def _from_json(x: Any) -> Any:
    """Attributes come back with tuples for lists, as the shape rules expect."""
    if isinstance(x, dict):
        return {k: _from_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return tuple(_from_json(v) for v in x)
    return x
