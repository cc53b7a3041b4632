"""The registry of primitive operations: each one's shape rule and mathematical meaning.

Every other layer keeps one table keyed by the names registered here (kernels and VJP rules in
``runtime``, interval transformers in ``verify``/``certificates``, rounding rules in ``floats``);
``torchlean.proofs show --coverage`` walks them all.

A meaning is ``meaning(m, *inputs, **attrs)`` where ``m`` is a scalar namespace from
``spec.scalar`` and the inputs are numpy object arrays. It returns an object array of the output
shape. With ``m = SYMPY`` it is the exact formula; with ``m = MPMATH`` an arbitrary-precision value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .scalar import MPMATH, SYMPY, obj
from .shapes import Shape, ShapeError

#: What a primitive is, for the layers that treat families alike.
KINDS = ("elementwise", "piecewise", "linear", "reduction", "structural", "nn")


@dataclass(frozen=True)
class Primitive:
    name: str
    kind: str
    arity: int | None  # None: variadic
    shape_rule: Callable[..., Shape]
    meaning: Callable[..., np.ndarray]
    #: inputs that carry no derivative (integer indices)
    integer_inputs: tuple[int, ...] = ()
    #: attributes and their defaults; unknown attributes are rejected
    attrs: dict[str, Any] = field(default_factory=dict)
    doc: str = ""

    def check_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The attributes with the defaults filled in; an unknown one is a ShapeError."""
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise ShapeError(f"{self.name}: unknown attribute(s) {sorted(unknown)}")
        return {**self.attrs, **attrs}

    def shape(self, *shapes: Shape, **attrs: Any) -> Shape:
        """The output shape for input ``shapes`` (a ShapeError when they do not fit)."""
        if self.arity is not None and len(shapes) != self.arity:
            raise ShapeError(f"{self.name}: expects {self.arity} inputs, got {len(shapes)}")
        return self.shape_rule(*shapes, **self.check_attrs(attrs))

    def sympy(self, *inputs: Any, **attrs: Any) -> np.ndarray:
        """The meaning on sympy object arrays: the exact formulas the proofs use."""
        return self.meaning(SYMPY, *(obj(x) for x in inputs), **self.check_attrs(attrs))

    def mpmath(self, *inputs: Any, **attrs: Any) -> np.ndarray:
        """The meaning on mpmath object arrays: evaluation at any precision."""
        return self.meaning(MPMATH, *(obj(x) for x in inputs), **self.check_attrs(attrs))


PRIMITIVES: dict[str, Primitive] = {}


def primitive(
    name: str,
    kind: str,
    arity: int | None,
    shape_rule: Callable[..., Shape],
    *,
    integer_inputs: tuple[int, ...] = (),
    attrs: dict[str, Any] | None = None,
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Register the decorated function as the meaning of primitive ``name``."""
    if kind not in KINDS:
        raise ValueError(f"unknown primitive kind {kind!r}")

    def register(meaning: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        if name in PRIMITIVES:
            raise ValueError(f"primitive {name!r} registered twice")
        PRIMITIVES[name] = Primitive(
            name, kind, arity, shape_rule, meaning, integer_inputs, dict(attrs or {}),
            (meaning.__doc__ or "").strip(),
        )
        return meaning

    return register


def get(name: str) -> Primitive:
    """The registered primitive called ``name`` (a KeyError for an unknown name)."""
    try:
        return PRIMITIVES[name]
    except KeyError:
        raise KeyError(f"unknown primitive {name!r}") from None
