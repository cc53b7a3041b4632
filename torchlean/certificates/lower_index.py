"""Row-major index helpers of the lowering (``lower.py``), the constant -inf, and the row type
(standard library only)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from .bound_graph import Elem, Lowerer, Tensor, _size, _strides, cap

Row = Callable[[Lowerer, list[Tensor], dict[str, Any]], Tensor]


class _NegInf:
    """The constant -inf, an attention mask's value (``where(mask, -inf, scores)``). ``where``
    may select it and ``softmax`` read it: exp(-inf - m) = 0 exactly (reals extended as IEEE does,
    and every IEEE kernel: -inf - finite = -inf, exp(-inf) = +0), so the entry drops out of its
    group. Any other use is refused by ``lower`` (nothing else ever sees it)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEG_INF"


NEG_INF = _NegInf()
#: the primitives that may take -inf elements (``_NegInf``)
TAKES_NEG_INF = frozenset({"where", "softmax"})


def _positions(shape: Sequence[int]) -> Any:
    cap(_size(shape))  # (every broadcast, transpose, gather and reduction walks its shape here)
    return itertools.product(*(range(d) for d in shape))


def _flat(idx: Sequence[int], strides: Sequence[int]) -> int:
    return sum(i * s for i, s in zip(idx, strides))


def bcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    n = max(len(s) for s in shapes)
    out = []
    for i in range(-n, 0):
        dims = {s[i] for s in shapes if len(s) >= -i} - {1}
        if len(dims) > 1:
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def broadcast(t: Tensor, shape: tuple[int, ...]) -> list[Elem]:
    """t's elements read at every position of ``shape`` (numpy broadcasting)."""
    if t.shape == shape:
        return t.v
    s = (1,) * (len(shape) - len(t.shape)) + t.shape
    st = _strides(s)
    st = [0 if d == 1 else x for d, x in zip(s, st)]
    return [t.v[_flat(p, st)] for p in _positions(shape)]


def _axes(axes: Any, nd: int) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(nd))
    if isinstance(axes, int):
        axes = (axes,)
    return tuple(sorted({a % max(nd, 1) for a in axes}))


def reduce_groups(
    shape: tuple[int, ...], axes: Any, keepdims: bool
) -> tuple[tuple[int, ...], list[list[int]]]:
    """Output shape and, per output position, the input flat indices reduced into it (in the
    row-major order of the reduced axes)."""
    ax = _axes(axes, len(shape))
    keep = [i for i in range(len(shape)) if i not in ax]
    st = _strides(shape)
    groups = []
    for p in _positions([shape[i] for i in keep]):
        base = sum(i * st[k] for i, k in zip(p, keep))
        inner = _positions([shape[k] for k in ax])
        groups.append([base + sum(i * st[k] for i, k in zip(q, ax)) for q in inner])
    if keepdims:
        return tuple(1 if i in ax else d for i, d in enumerate(shape)), groups
    out = tuple(shape[i] for i in keep)
    return out, groups
