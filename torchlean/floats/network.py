"""Lower a graph to the layered form the ``errorbound`` checker replays.

The checker reads a chain of layers over a flat vector: ``linear`` (W x + b), ``add_const``,
``relu``/``tanh``/``sigmoid`` and ``max_groups`` (max pooling). This module recognises those in a
graph with one input of batch size 1: matmul(+add) and conv2d(+add) become ``linear`` (a conv is
unfolded to its dense matrix: the same products, zeros elsewhere, and the checker counts only
nonzero terms), sub/add of a constant become ``add_const``, flatten/reshape are free (row-major).
Weights are stored as the bit patterns of the format they are given in, so the checker reads the
exact values.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates.rounding import FORMATS, Format, decode
from ..runtime.execute import run_graph
from ..spec.graph import Graph
from ..spec.passes import fold_constants

_NP_FORMATS = {"float64": "binary64", "float32": "binary32", "float16": "binary16"}
_UINT = {64: ">u8", 32: ">u4", 16: ">u2"}


#: The rounding-error rule of each primitive the certified analysis covers (the floats column of
#: ``python -m torchlean.proofs show --coverage``); the checker's side is certificates/errorbound.py.
ROUNDING_RULES: dict[str, str] = {
    "matmul": "linear: gamma_k (sum |W||x~| + |b|) + 4k eta, k nonzero terms, any order, FMA or not",
    "conv2d": "linear (unfolded to its dense matrix; only nonzero taps counted)",
    "add": "bias of the preceding linear, or add_const: u (|x~| + |c|)",
    "sub": "add_const with the negated constant",
    "relu": "exact in floats, 1-Lipschitz (secant slope in [0, 1])",
    "tanh": "library kernel within kernel_ulps ulp, tanh' <= 1 - tanh(m)^2",
    "sigmoid": "1/(1+exp(-x)) as the runtime computes it: rho sigma + eta, sigma' <= 1/4",
    "max_pool2d": "exact in floats, 1-Lipschitz in the max norm",
    "flatten": "exact (row-major reshape)",
    "reshape": "exact (row-major reshape)",
}


class LoweringError(ValueError):
    """The graph has an operation the error analysis does not cover; the message names it."""


def encode_tensor(a: np.ndarray, fmt: Format | None = None) -> dict[str, Any]:
    """Exact encoding of a float array as big-endian bit patterns of its own IEEE format."""
    a = np.ascontiguousarray(a)
    name = _NP_FORMATS.get(str(a.dtype))
    if name is None:
        raise LoweringError(f"weights of dtype {a.dtype} cannot be encoded exactly")
    f = FORMATS[name]
    if fmt is not None and fmt.bits < f.bits:  # narrower target: store in it if exact
        narrow = _narrow(a, fmt)
        if narrow is not None:
            return narrow
    hexdata = a.view(np.dtype(f"u{f.bits // 8}")).astype(_UINT[f.bits]).tobytes().hex()
    return {"format": f.to_dict(), "shape": list(a.shape), "hex": hexdata}


def _narrow(a: np.ndarray, fmt: Format) -> dict[str, Any] | None:
    if str(fmt.name) not in ("binary32", "binary16"):
        return None
    dt = np.float32 if fmt.name == "binary32" else np.float16
    b = a.astype(dt)
    if not np.array_equal(b.astype(a.dtype), a):
        return None
    return encode_tensor(b)


def decode_tensor_np(t: dict[str, Any]) -> np.ndarray:
    fmt = Format.from_dict(t["format"])
    width = (fmt.bits + 3) // 4
    text = t["hex"]
    vals = [decode(int(text[k:k + width], 16), fmt).value for k in range(0, len(text), width)]
    return np.array([float(v) for v in vals]).reshape(t["shape"])


def _const_linear_map(fn, n_in: int, in_shape: tuple[int, ...]) -> np.ndarray:
    """Dense matrix of a linear map given as a float64 function of one input (exact on the basis:
    each output of a basis vector is one weight times 1, plus exact zeros)."""
    eye = np.eye(n_in).reshape((n_in, *in_shape[1:]))
    out = np.stack([np.asarray(fn(eye[i:i + 1])).reshape(-1) for i in range(n_in)])
    return out.T  # (n_out, n_in)


def lower(graph: Graph) -> list[dict[str, Any]]:
    """The layers of ``graph`` (one input, batch 1, a chain of supported operations)."""
    graph = fold_constants(graph)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise LoweringError("error bounds need a graph with one input and one output")
    cur = graph.inputs[0].name
    layers: list[dict[str, Any]] = []
    consts = graph.constants
    last_linear_out: str | None = None
    for node in graph.nodes:
        v = graph.values[node.output]
        ins = node.inputs
        if node.op in ("flatten", "reshape"):
            if ins[0] != cur:
                raise LoweringError(f"{node.output}: not a chain")
        elif not ins or ins[0] != cur or any(i not in consts for i in ins[1:]):
            raise LoweringError(f"{node.output} = {node.op}: only chains with constant operands lower")
        shape_in = graph.values[cur].shape
        if shape_in and shape_in[0] != 1:
            raise LoweringError(f"{node.output}: batch size must be 1, got {shape_in}")
        n_in = int(np.prod(shape_in))
        if node.op == "matmul":
            W = consts[ins[1]]
            if W.ndim != 2:
                raise LoweringError(f"{node.output}: matmul with a {W.ndim}-d weight")
            layers.append({"op": "linear", "in": W.shape[0], "out": W.shape[1],
                           "weight": encode_tensor(np.ascontiguousarray(W.T)), "bias": None})
            last_linear_out = node.output
        elif node.op == "conv2d":
            w = consts[ins[1]]
            attrs = dict(node.attrs)
            dense = _const_linear_map(
                lambda x, w=w, attrs=attrs: _conv_rule()(x, w.astype(np.float64), attrs), n_in, shape_in)
            if not np.all(np.isin(dense[dense != 0], w.astype(np.float64))):
                raise LoweringError(f"{node.output}: conv unfolding is not exact")
            layers.append({"op": "linear", "in": n_in, "out": dense.shape[0],
                           "weight": encode_tensor(dense.astype(w.dtype)), "bias": None})
            last_linear_out = node.output
        elif node.op in ("add", "sub"):
            c = np.broadcast_to(consts[ins[1]], v.shape).reshape(-1)
            c = -c if node.op == "sub" else c
            if last_linear_out == cur and layers[-1]["bias"] is None and node.op == "add":
                layers[-1]["bias"] = encode_tensor(np.ascontiguousarray(c))
            else:
                layers.append({"op": "add_const", "c": encode_tensor(np.ascontiguousarray(c))})
        elif node.op in ("relu", "tanh", "sigmoid"):
            layers.append({"op": node.op})
        elif node.op == "max_pool2d":
            layers.append({"op": "max_groups", "groups": _pool_groups(shape_in, node.attrs)})
        elif node.op not in ("flatten", "reshape"):
            raise LoweringError(f"{node.output}: operation {node.op!r} has no rounding-error rule")
        cur = node.output
    if cur != graph.outputs[0]:
        raise LoweringError("the output is not the end of the chain")
    return layers


def _conv_rule():
    from ..runtime.rules import RULES
    from ..spec.primitives import PRIMITIVES

    def apply(x, w, attrs):
        return RULES["conv2d"].forward(np, x, w, **PRIMITIVES["conv2d"].check_attrs(attrs))
    return apply


def _pool_groups(shape: tuple[int, ...], attrs: dict[str, Any]) -> list[list[int]]:
    """Input indices of each max-pool window, by running the pool on index-valued inputs."""
    from ..spec.primitives import PRIMITIVES

    n = int(np.prod(shape))
    idx = np.arange(n, dtype=object).reshape(shape)
    out = PRIMITIVES["max_pool2d"].meaning(_Collect, idx, **PRIMITIVES["max_pool2d"].check_attrs(attrs))
    return [sorted(set(_flat(g))) for g in out.reshape(-1)]


def _flat(g: Any) -> list[int]:
    return [int(k) for k in g] if isinstance(g, (list, tuple, frozenset, set)) else [int(g)]


class _CollectNS:
    """A scalar namespace whose max collects the indices of a window (for ``_pool_groups``)."""

    @staticmethod
    def ge(a: Any, b: Any) -> Any:
        return ("ge", a, b)

    @staticmethod
    def select(cond: Any, a: Any, b: Any) -> Any:
        return frozenset(_flat(a)) | frozenset(_flat(b))


_Collect = _CollectNS()


def run_float(graph: Graph, x: np.ndarray, dtype: Any) -> np.ndarray:
    """The runtime's own result on a batch of points (one graph call per point: batch size 1)."""
    name = graph.inputs[0].name
    shape = graph.inputs[0].shape
    return np.stack([np.asarray(run_graph(graph, {name: xi.reshape(shape)}, dtype=dtype)[0]).reshape(-1)
                     for xi in x])


def exact_values(t: dict[str, Any]) -> list[Fraction]:
    fmt = Format.from_dict(t["format"])
    width = (fmt.bits + 3) // 4
    return [decode(int(t["hex"][k:k + width], 16), fmt).value for k in range(0, len(t["hex"]), width)]
