"""Run a graph IR on an array backend with the runtime's own kernels."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..spec.graph import Graph
from ..spec.primitives import PRIMITIVES
from .backends import namespace
from .rules import RULES


def run_graph(graph: Graph, inputs: dict[str, Any], device: str = "cpu", dtype: Any = None) -> list[Any]:
    """Evaluate ``graph`` on ``device``; float inputs and constants are cast to ``dtype`` if given,
    and so is every float node output: each operation's result is rounded to the format once, as
    torch's CPU kernels do for bfloat16 (ml_dtypes' matmul of two bfloat16 or float8 arrays
    returns float32: without the cast everything after the first matmul ran in binary32).

    Uses the same kernels as eager execution, so results agree with it bit for bit.
    """
    xp = namespace(device)
    env: dict[str, Any] = {}

    def floaty(a: Any) -> bool:  # (ml_dtypes' formats have kind "V", numpy's "f")
        return a.dtype.kind == "f" or a.dtype.type.__module__ == "ml_dtypes"

    def cast(a: Any) -> Any:
        # host data (arrays, lists, scalars) is moved to the device first; cupy arrays stay put
        a = xp.asarray(a) if device == "cuda" else np.asarray(a)
        if dtype is not None and floaty(a):
            a = a.astype(dtype)
        return xp.asarray(a)

    for v in graph.inputs:
        if v.name not in inputs:
            raise KeyError(f"missing graph input {v.name!r}")
        env[v.name] = cast(inputs[v.name])
    for k, a in graph.constants.items():
        env[k] = cast(a)
    for node in graph.nodes:
        attrs = PRIMITIVES[node.op].check_attrs(node.attrs)
        out = RULES[node.op].forward(xp, *(env[n] for n in node.inputs), **attrs)
        if dtype is not None and hasattr(out, "dtype") and out.dtype != dtype and floaty(out):
            out = out.astype(dtype)
        env[node.output] = out
    return [env[o] for o in graph.outputs]
