"""torch's tensor constructors beyond ``tensor``/``zeros``/``ones``: ``randn``, ``rand``, ``full``,
``arange``, ``linspace``, ``from_numpy``, ``zeros_like``, ``ones_like``.

Random ones draw from torchlean's seeded generator (``torchlean.manual_seed``), so runs repeat;
the numbers differ from torch's (another generator), their distributions do not.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .backends import namespace
from .random import generator
from .tensor import Tensor, _size, as_dtype, get_default_dtype


def _make(array: np.ndarray, device: str | None, requires_grad: bool) -> Tensor:
    return Tensor(namespace(device or "cpu").asarray(array), requires_grad)


def randn(*size: Any, dtype: Any = None, device: str | None = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples of shape ``size`` (``randn(2, 3)`` or ``randn((2, 3))``)."""
    dt = as_dtype(dtype or get_default_dtype())
    return _make(generator().standard_normal(size=_size(size)).astype(dt), device, requires_grad)


def rand(*size: Any, dtype: Any = None, device: str | None = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) of shape ``size``."""
    dt = as_dtype(dtype or get_default_dtype())
    return _make(generator().random(size=_size(size)).astype(dt), device, requires_grad)


def full(size: Any, fill_value: Any, dtype: Any = None, device: str | None = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of shape ``size`` filled with ``fill_value``; the dtype follows the value like
    torch's: bool, int64 for ints, the default dtype for floats."""
    if dtype is None:
        dtype = (np.bool_ if isinstance(fill_value, (bool, np.bool_)) else
                 np.int64 if isinstance(fill_value, (int, np.integer)) else get_default_dtype())
    shape = _size(size if isinstance(size, tuple) else (size,))
    return _make(np.full(shape, fill_value, dtype=as_dtype(dtype)), device, requires_grad)


def arange(start: float, end: float | None = None, step: float = 1, dtype: Any = None,
           device: str | None = None, requires_grad: bool = False) -> Tensor:
    """``[start, end)`` in steps of ``step`` (``arange(5)`` is 0..4); int64 when every argument is
    an int, otherwise the default dtype, like torch.

    >>> tl.arange(0, 1, 0.25).tolist()
    [0.0, 0.25, 0.5, 0.75]
    """
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise ValueError(f"arange: end {end} lies on the wrong side of start {start} for step {step}")
    ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, end, step))
    if dtype is None:
        dtype = np.int64 if ints else get_default_dtype()
    # torch: the length is ceil((end - start) / step) computed in double; values start + i*step
    n = max(0, math.ceil((float(end) - float(start)) / float(step)))
    values = (np.arange(n, dtype=np.int64) * step + start) if ints else (
        np.float64(start) + np.arange(n, dtype=np.float64) * np.float64(step))
    return _make(values.astype(as_dtype(dtype)), device, requires_grad)


def linspace(start: float, end: float, steps: int, dtype: Any = None, device: str | None = None,
             requires_grad: bool = False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive (default dtype).

    Computed the way torch's CPU kernel does (the first half counted up from ``start``, the second
    half down from ``end``), so float32 results match torch's bit for bit.
    """
    if steps < 0:
        raise ValueError(f"linspace: steps must be non-negative, got {steps}")
    dt = as_dtype(dtype or get_default_dtype())
    if steps == 0:
        return _make(np.zeros((0,), dtype=dt), device, requires_grad)
    if steps == 1:
        return _make(np.full((1,), start, dtype=dt), device, requires_grad)
    a, b = dt.type(start), dt.type(end)
    # the step is rounded to the dtype; each value is then formed in double and rounded once (as
    # torch's vectorised fused multiply-add does; checked bit for bit against torch in the tests)
    step = np.float64((b - a) / dt.type(steps - 1))
    i = np.arange(steps)
    half = steps // 2
    out = np.where(i < half, np.float64(a) + step * i, np.float64(b) - step * (steps - 1 - i))
    return _make(out.astype(dt), device, requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A CPU tensor on ``array`` itself (no copy: writes to one show in the other), dtype kept."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)


def zeros_like(t: Tensor, dtype: Any = None, device: str | None = None,
               requires_grad: bool = False) -> Tensor:
    """Zeros with ``t``'s shape, dtype and device (unless given)."""
    arr = np.zeros(t.shape, dtype=as_dtype(dtype) if dtype is not None else t.dtype)
    return _make(arr, device or t.device, requires_grad)


def ones_like(t: Tensor, dtype: Any = None, device: str | None = None,
              requires_grad: bool = False) -> Tensor:
    """Ones with ``t``'s shape, dtype and device (unless given)."""
    arr = np.ones(t.shape, dtype=as_dtype(dtype) if dtype is not None else t.dtype)
    return _make(arr, device or t.device, requires_grad)
