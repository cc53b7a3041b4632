"""Exact evaluation of a graph with the spec's meanings: mpmath at a chosen precision, or sympy."""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np
import sympy

from . import primitives as P
from .graph import Graph
from .scalar import MPMATH, SYMPY, exact, obj


def _to_mpf(a: Any) -> np.ndarray:
    # mpf(float) is exact at any precision >= 53 bits; ints are exact too.
    def conv(v):
        q = exact(v)
        return mpmath.mpf(q.numerator) / q.denominator
    return obj(np.frompyfunc(conv, 1, 1)(np.asarray(a)))


def evaluate(graph: Graph, inputs: dict[str, Any], digits: int = 50) -> list[np.ndarray]:
    """Evaluate ``graph`` in real arithmetic to ``digits`` significant digits (mpmath).

    Inputs and weights are read as the exact rationals their floats denote, so the result is the
    real-number semantics of the network on those points, up to the working precision.
    """
    with mpmath.workdps(digits + 10):
        env: dict[str, np.ndarray] = {}
        for v in graph.inputs:
            if v.name not in inputs:
                raise KeyError(f"missing input {v.name!r}")
            a = np.asarray(inputs[v.name])
            if tuple(a.shape) != tuple(v.shape):
                raise ValueError(f"input {v.name!r}: expected shape {v.shape}, got {a.shape}")
            env[v.name] = _to_mpf(a) if v.dtype.startswith("float") else obj(a)
        for k, a in graph.constants.items():
            env[k] = _to_mpf(a) if a.dtype.kind == "f" else obj(a)
        for node in graph.nodes:
            prim = P.PRIMITIVES[node.op]
            env[node.output] = obj(
                prim.meaning(MPMATH, *(env[n] for n in node.inputs), **prim.check_attrs(node.attrs))
            )
        return [env[o] for o in graph.outputs]


def symbolic(graph: Graph, env: dict[str, Any]) -> list[np.ndarray]:
    """Evaluate ``graph`` to sympy expressions; ``env`` maps inputs (and any constants to keep
    symbolic) to object arrays of sympy values; other constants enter as exact rationals."""
    vals: dict[str, np.ndarray] = {k: obj(v) for k, v in env.items()}
    for k, a in graph.constants.items():
        if k not in vals:
            vals[k] = obj(np.frompyfunc(SYMPY.const, 1, 1)(a)) if a.dtype.kind == "f" else obj(a)
    for node in graph.nodes:
        prim = P.PRIMITIVES[node.op]
        vals[node.output] = obj(
            prim.meaning(SYMPY, *(vals[n] for n in node.inputs), **prim.check_attrs(node.attrs))
        )
    return [vals[o] for o in graph.outputs]


__all__ = ["evaluate", "symbolic", "sympy"]
