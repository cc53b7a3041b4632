"""The symbolic array namespace: numpy object arrays of sympy expressions.

It offers the subset of the numpy API that kernels and VJP rules use, with comparisons returning
sympy relations and ``where`` returning ``Piecewise``, so running a rule here yields the exact
formula the numpy backend evaluates in floating point.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from ..spec.scalar import SYMPY, emap, obj


def _lift(x: Any) -> np.ndarray:
    """Object array with exact sympy numbers for any numeric leaves."""
    a = obj(x)

    def conv(v):
        if isinstance(v, sympy.Basic):
            return v
        return SYMPY.const(v)

    return obj(np.frompyfunc(conv, 1, 1)(a)) if a.size else a


def _unary(fn):
    return lambda x: emap(fn, _lift(x))


def _sym_max(a, b):
    return SYMPY.select(sympy.GreaterThan(a, b), a, b)


def _sym_min(a, b):
    return SYMPY.select(sympy.GreaterThan(b, a), a, b)


class SymbolicNamespace:
    """Enough of numpy's API, over sympy objects."""

    name = "symbolic"
    float32 = float64 = object
    pi = sympy.pi
    newaxis = None
    add = np.add  # for add.at (scatter-add) on object arrays

    exp = staticmethod(_unary(sympy.exp))
    log = staticmethod(_unary(sympy.log))
    sqrt = staticmethod(_unary(sympy.sqrt))
    tanh = staticmethod(_unary(sympy.tanh))
    erf = staticmethod(_unary(sympy.erf))
    #: erf's derivative factor, exact (numpy and cupy use its binary64 rounding, spec.constants)
    m_2_sqrtpi = 2 / sympy.sqrt(sympy.pi)
    abs = staticmethod(_unary(lambda v: SYMPY.select(sympy.StrictGreaterThan(v, 0), v, -v)))
    log1p = staticmethod(_unary(lambda v: sympy.log(1 + v)))

    @staticmethod
    def asarray(x: Any, dtype: Any = None) -> np.ndarray:
        return _lift(x)

    @staticmethod
    def maximum(a: Any, b: Any) -> np.ndarray:
        return emap(_sym_max, _lift(a), _lift(b))

    @staticmethod
    def minimum(a: Any, b: Any) -> np.ndarray:
        return emap(_sym_min, _lift(a), _lift(b))

    @staticmethod
    def greater(a: Any, b: Any) -> np.ndarray:
        return emap(sympy.StrictGreaterThan, _lift(a), _lift(b))

    @staticmethod
    def greater_equal(a: Any, b: Any) -> np.ndarray:
        return emap(sympy.GreaterThan, _lift(a), _lift(b))

    @staticmethod
    def equal(a: Any, b: Any) -> np.ndarray:
        return emap(sympy.Eq, _lift(a), _lift(b))

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> np.ndarray:
        return emap(SYMPY.select, obj(cond), _lift(a), _lift(b))

    @staticmethod
    def max(x: Any, axis: Any = None, keepdims: bool = False) -> np.ndarray:
        a = _lift(x)
        axes = tuple(range(a.ndim)) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
        axes = tuple(ax % a.ndim for ax in axes)
        moved = np.moveaxis(a, axes, tuple(range(a.ndim - len(axes), a.ndim)))
        flat = moved.reshape(*moved.shape[: a.ndim - len(axes)], -1)
        out = np.empty(flat.shape[:-1], dtype=object)
        for idx in np.ndindex(out.shape):
            vals = list(flat[idx])
            best = vals[0]
            for v in vals[1:]:
                best = _sym_max(best, v)
            out[idx] = best
        if keepdims:
            out = out.reshape(tuple(1 if i in axes else d for i, d in enumerate(a.shape)))
        return out

    @staticmethod
    def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        a = _lift(x)
        shape = np.sum(np.zeros(a.shape), axis=axis, keepdims=keepdims).shape
        if not a.size:
            return obj(np.zeros(shape, dtype=object) + sympy.Integer(0))
        # sympy.Add of each group at once: the expression numpy's running ``+`` builds (sympy's sums
        # are canonical), in one flatten instead of one per summand (quadratic on 4,096 terms)
        axes = tuple(range(a.ndim)) if axis is None else tuple(
            k % a.ndim for k in (axis if isinstance(axis, (tuple, list)) else (axis,)))
        flat = np.moveaxis(a, axes, tuple(range(a.ndim - len(axes), a.ndim)))
        flat = flat.reshape(*flat.shape[: a.ndim - len(axes)], -1)
        out = np.empty(flat.shape[:-1], dtype=object)
        for idx in np.ndindex(out.shape):
            out[idx] = sympy.Add(*flat[idx])
        return obj(out.reshape(shape))

    @staticmethod
    def zeros(shape: Any, dtype: Any = None) -> np.ndarray:
        return _lift(np.zeros(shape, dtype=np.int64))

    @staticmethod
    def zeros_like(x: Any, dtype: Any = None) -> np.ndarray:
        return _lift(np.zeros(np.shape(x), dtype=np.int64))

    @staticmethod
    def ones_like(x: Any, dtype: Any = None) -> np.ndarray:
        return _lift(np.ones(np.shape(x), dtype=np.int64))

    def __getattr__(self, name: str) -> Any:
        # Structural numpy functions (reshape, transpose, matmul, concatenate, take_along_axis,
        # broadcast_to, expand_dims, swapaxes, moveaxis, pad, einsum, ...) work on object arrays.
        fn = getattr(np, name)
        if not callable(fn):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            return obj(out) if isinstance(out, np.ndarray) else out

        return call


SYMBOLIC = SymbolicNamespace()


def symbols(prefix: str, shape: tuple[int, ...], **assumptions: Any) -> np.ndarray:
    """An object array of fresh real sympy symbols ``prefix_i_j``."""
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(shape):
        out[idx] = sympy.Symbol("_".join([prefix, *map(str, idx)]), real=True, **assumptions)
    return out
