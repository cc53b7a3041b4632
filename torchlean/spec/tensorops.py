"""Linear-algebra, reduction and structural primitives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .primitives import primitive
from .scalar import emap
from .shapes import (
    Shape,
    ShapeError,
    broadcast_shapes,
    norm_axes,
    norm_axis,
    reduced_shape,
    size,
)


def _matmul_rule(a: Shape, b: Shape, **_: Any) -> Shape:
    if len(a) < 2 or len(b) < 2:
        raise ShapeError(f"matmul: operands must have rank >= 2, got {a} and {b}")
    if a[-1] != b[-2]:
        raise ShapeError(f"matmul: inner dimensions differ, {a} @ {b}")
    batch = broadcast_shapes(a[:-2], b[:-2], op="matmul")
    return (*batch, a[-2], b[-1])


@primitive("matmul", "linear", 2, _matmul_rule)
def matmul(m, a, b):
    """matrix product over the last two axes, batch axes broadcast"""
    return np.asarray(np.matmul(a, b), dtype=object)


def _reduce_rule(op: str):
    def rule(x: Shape, axes=None, keepdims=False) -> Shape:
        return reduced_shape(x, norm_axes(axes, len(x), op), keepdims)
    return rule


def _reduce(x, axes, keepdims, fn):
    ax = norm_axes(axes, x.ndim, "reduce")
    out = np.empty(reduced_shape(x.shape, ax, keepdims), dtype=object)
    moved = np.moveaxis(x, ax, tuple(range(x.ndim - len(ax), x.ndim)))
    flat = moved.reshape(*moved.shape[: x.ndim - len(ax)], -1)
    for idx in np.ndindex(flat.shape[:-1]):
        out.reshape(flat.shape[:-1])[idx] = fn(list(flat[idx]))
    return out


def _sum(vals):
    total = vals[0]
    for v in vals[1:]:
        total = total + v
    return total


@primitive("sum", "linear", 1, _reduce_rule("sum"), attrs={"axes": None, "keepdims": False})
def sum_(m, x, axes, keepdims):
    """sum over ``axes`` (all when None)"""
    return _reduce(x, axes, keepdims, _sum)


@primitive("mean", "linear", 1, _reduce_rule("mean"), attrs={"axes": None, "keepdims": False})
def mean(m, x, axes, keepdims):
    """arithmetic mean over ``axes``"""
    return _reduce(x, axes, keepdims, lambda v: _sum(v) / len(v))


@primitive("max", "reduction", 1, _reduce_rule("max"), attrs={"axes": None, "keepdims": False})
def max_(m, x, axes, keepdims):
    """maximum over ``axes``; the runtime splits the gradient evenly between tied maxima, as
    torch.amax (torch's max(dim).values sends it to the one index it returns)"""

    def biggest(vals):
        best = vals[0]
        for v in vals[1:]:
            best = m.select(m.ge(best, v), best, v)
        return best

    return _reduce(x, axes, keepdims, biggest)


def _reshape_rule(x: Shape, shape: Sequence[int] = ()) -> Shape:
    shape = tuple(int(d) for d in shape)
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape: more than one -1 in {shape}")
    known = size(tuple(d for d in shape if d != -1))
    if -1 in shape:
        if known == 0 or size(x) % known:
            raise ShapeError(f"reshape: cannot reshape {x} to {shape}")
        shape = tuple(size(x) // known if d == -1 else d for d in shape)
    if size(shape) != size(x):
        raise ShapeError(f"reshape: cannot reshape {x} ({size(x)} elements) to {shape}")
    return shape


@primitive("reshape", "structural", 1, _reshape_rule, attrs={"shape": ()})
def reshape(m, x, shape):
    """the same elements in row-major order with a new shape"""
    return x.reshape(_reshape_rule(x.shape, shape))


def _flatten_rule(x: Shape, start_dim: int = 1) -> Shape:
    s = norm_axis(start_dim, len(x), "flatten") if x else 0
    return (*x[:s], size(x[s:]))


@primitive("flatten", "structural", 1, _flatten_rule, attrs={"start_dim": 1})
def flatten(m, x, start_dim):
    """collapse the axes from ``start_dim`` on into one"""
    return x.reshape(_flatten_rule(x.shape, start_dim))


def _transpose_rule(x: Shape, axes: Sequence[int] | None = None) -> Shape:
    axes = tuple(reversed(range(len(x)))) if axes is None else tuple(axes)
    if sorted(a % max(len(x), 1) for a in axes) != list(range(len(x))):
        raise ShapeError(f"transpose: {axes} is not a permutation of the axes of {x}")
    return tuple(x[a] for a in axes)


@primitive("transpose", "structural", 1, _transpose_rule, attrs={"axes": None})
def transpose(m, x, axes):
    """permute the axes (reverse them when ``axes`` is None)"""
    return np.transpose(x, axes)


def _broadcast_to_rule(x: Shape, shape: Sequence[int] = ()) -> Shape:
    shape = tuple(int(d) for d in shape)
    if broadcast_shapes(x, shape, op="broadcast_to") != shape:
        raise ShapeError(f"broadcast_to: cannot broadcast {x} to {shape}")
    return shape


@primitive("broadcast_to", "structural", 1, _broadcast_to_rule, attrs={"shape": ()})
def broadcast_to(m, x, shape):
    """repeat along axes of size 1 (numpy broadcasting)"""
    return np.array(np.broadcast_to(x, tuple(shape)), dtype=object)


def _concat_rule(*shapes: Shape, axis: int = 0) -> Shape:
    if not shapes:
        raise ShapeError("concat: needs at least one input")
    ax = norm_axis(axis, len(shapes[0]), "concat")
    for s in shapes[1:]:
        if len(s) != len(shapes[0]) or any(
            d != e for i, (d, e) in enumerate(zip(s, shapes[0], strict=True)) if i != ax
        ):
            raise ShapeError(f"concat: shapes {shapes} differ off axis {axis}")
    return (*shapes[0][:ax], sum(s[ax] for s in shapes), *shapes[0][ax + 1:])


@primitive("concat", "structural", None, _concat_rule, attrs={"axis": 0})
def concat(m, *xs, axis):
    """join along ``axis``"""
    return np.concatenate(xs, axis=axis)


def _slice_rule(x: Shape, index: Sequence[Sequence[int | None]] = ()) -> Shape:
    if len(index) > len(x):
        raise ShapeError(f"slice: {len(index)} slices for rank {len(x)}")
    out = list(x)
    for i, (start, stop, step) in enumerate(index):
        if step is not None and step <= 0:
            raise ShapeError(f"slice: step must be positive, got {step}")
        out[i] = len(range(*slice(start, stop, step).indices(x[i])))
    return tuple(out)


def slices(index: Sequence[Sequence[int | None]]) -> tuple[slice, ...]:
    """The Python slices of a ``slice`` primitive's ``index`` attribute."""
    return tuple(slice(*t) for t in index)


@primitive("slice", "structural", 1, _slice_rule, attrs={"index": ()})
def slice_(m, x, index):
    """x[start:stop:step, ...] per axis; ``index`` is a tuple of (start, stop, step)"""
    return x[slices(index)]


def _gather_rule(x: Shape, idx: Shape, axis: int = -1) -> Shape:
    ax = norm_axis(axis, len(x), "gather")
    if len(idx) != len(x) or any(d > e for i, (d, e) in enumerate(zip(idx, x)) if i != ax):
        raise ShapeError(f"gather: index shape {idx} does not fit input {x} on axis {axis}")
    return idx


@primitive("gather", "structural", 2, _gather_rule, integer_inputs=(1,), attrs={"axis": -1})
def gather(m, x, idx, axis):
    """out[..i..] = x[..idx[..i..]..] along ``axis`` (torch.gather)"""
    ax = norm_axis(axis, x.ndim, "gather")  # x at idx's positions only (not broadcast over x's)
    x = x[tuple(slice(None) if i == ax else slice(0, d) for i, d in enumerate(idx.shape))]
    return np.take_along_axis(x, idx.astype(np.int64), axis=ax)


def _softmax_rule(x: Shape, axis: int = -1) -> Shape:
    norm_axis(axis, len(x), "softmax")
    return x


@primitive("softmax", "nn", 1, _softmax_rule, attrs={"axis": -1})
def softmax(m, x, axis):
    """exp(x_i) / sum_j exp(x_j) along ``axis``"""
    e = emap(m.exp, x)
    return e / _reduce(e, axis, True, _sum)


@primitive("log_softmax", "nn", 1, _softmax_rule, attrs={"axis": -1})
def log_softmax(m, x, axis):
    """x_i - log sum_j exp(x_j) along ``axis``"""
    lse = emap(m.log, _reduce(emap(m.exp, x), axis, True, _sum))
    return x - lse


#: the float formats a ``cast`` node may name (the Tensor API's float dtypes; bfloat16 through
#: ml_dtypes). Integer and bool conversions are not this primitive: they carry no gradient (as in
#: torch) and stay copies outside the tape.
CAST_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _cast_rule(x: Shape, dtype: str = "float32") -> Shape:
    if dtype not in CAST_DTYPES:
        raise ShapeError(f"cast: dtype {dtype!r} is not one of {', '.join(CAST_DTYPES)}")
    return x


@primitive("cast", "structural", 1, _cast_rule, attrs={"dtype": "float32"})
def cast(m, x, dtype):
    """x converted to the float format ``dtype``: over the reals the identity (the rounding to a
    narrower format is the floats layer's, as every kernel's rounding is)"""
    _cast_rule(x.shape, dtype)
    return x.copy()
