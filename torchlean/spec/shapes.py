"""Shapes and the shape rules shared by several primitives."""

from __future__ import annotations

from collections.abc import Sequence

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """A shape rule was violated; the message names the operation and the shapes."""


def as_shape(shape: Sequence[int]) -> Shape:
    return tuple(int(d) for d in shape)


def broadcast_shapes(*shapes: Shape, op: str = "broadcast") -> Shape:
    """Numpy broadcasting of shapes, with an error naming ``op`` and every shape."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(-ndim, 0):
        dims = {s[i] for s in shapes if len(s) >= -i} - {1}
        if len(dims) > 1:
            listed = " and ".join(str(tuple(s)) for s in shapes)
            raise ShapeError(f"{op}: shapes {listed} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def norm_axis(axis: int, ndim: int, op: str) -> int:
    if not -ndim <= axis < max(ndim, 1):
        raise ShapeError(f"{op}: axis {axis} out of range for rank {ndim}")
    return axis % max(ndim, 1)


def norm_axes(axes: int | Sequence[int] | None, ndim: int, op: str) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, int):
        axes = (axes,)
    out = tuple(sorted({norm_axis(a, ndim, op) for a in axes}))
    return out


def reduced_shape(shape: Shape, axes: tuple[int, ...], keepdims: bool) -> Shape:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def size(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
