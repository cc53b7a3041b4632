"""The runtime's table of kernels and VJP rules, one row per primitive.

``forward(xp, *inputs, **attrs)`` computes the output; ``vjp(xp, g, out, *inputs, **attrs)``
returns one cotangent per input (``None`` for integer inputs), at the input's own shape. Both are
written against an array namespace ``xp`` (numpy, cupy or the symbolic backend) so the proofs layer
can run them symbolically: proofs talk about this code, not a copy of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..spec.primitives import PRIMITIVES


@dataclass(frozen=True)
class Rule:
    name: str
    forward: Callable[..., Any]
    vjp: Callable[..., tuple[Any, ...]]


RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the forward kernel of ``name``; its VJP via ``.vjp``."""
    if name not in PRIMITIVES:
        raise ValueError(f"rule for unknown primitive {name!r}")

    def deco(forward: Callable[..., Any]) -> Any:
        class _Pending:
            def vjp(self, fn: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
                if name in RULES:
                    raise ValueError(f"rule {name!r} registered twice")
                RULES[name] = Rule(name, forward, fn)
                return fn

        return _Pending()

    return deco


def sum_to(xp: Any, g: Any, shape: tuple[int, ...]) -> Any:
    """Sum a broadcast cotangent back to ``shape`` (the VJP of numpy broadcasting)."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1
    )
    g = xp.sum(g, axis=axes, keepdims=True) if axes else g
    return g.reshape(shape)
