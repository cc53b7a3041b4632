"""A test-only stand-in for cupy: numpy underneath, cupy's rules on top.

Never installed; ``tests/test_fake_cupy.py`` puts it on ``sys.modules`` for one test at a time so
every ``device="cuda"`` path of torchlean runs in CI. It reproduces the parts of cupy's contract
that CPU-only testing would otherwise miss:

- ``cupy.ndarray`` is its own type (not a numpy subclass), so ``isinstance(x, np.ndarray)`` is False;
- implicit conversion to numpy raises ``TypeError`` (``np.asarray(x)``, ``np.array(x)``), as
  cupy's ``__array__`` does; ``x.get()`` / ``cupy.asnumpy(x)`` are the only ways back to the host;
- a cupy function or operator given a host numpy array raises ``TypeError`` (cupy does not move
  data implicitly); Python and numpy scalars are accepted, as in cupy;
- numpy functions called on device arrays dispatch here (``__array_function__``), as with cupy.

It is not a GPU: no asynchrony, no float differences of GPU kernels, no memory limits.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as _np

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` to construct a NumPy array explicitly.")


def _unwrap(obj: Any) -> Any:
    """Device arrays to their numpy storage; a host numpy array is refused, as cupy does."""
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, _np.ndarray):
        raise TypeError(f"Unsupported type {type(obj)} (fake cupy: host array given to a device op)")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj: Any) -> Any:
    """numpy results back to device arrays (numpy scalars become 0-d arrays, as cupy returns)."""
    if isinstance(obj, _np.ndarray):
        return ndarray(obj)
    if isinstance(obj, _np.generic):
        return ndarray(_np.asarray(obj))
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


class Device:
    """``cupy.cuda.Device`` stand-in: device 0."""

    def __init__(self, id: int = 0):
        self.id = id

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"

    def __str__(self) -> str:
        return "cuda"

    def synchronize(self) -> None:
        """Nothing to wait for: the stand-in is synchronous."""


class ndarray(_np.lib.mixins.NDArrayOperatorsMixin):  # noqa: N801 - cupy's name
    """A device array: a numpy array that refuses implicit conversion to the host."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, a: Any):
        object.__setattr__(self, "_a", a)

    # -- cupy's guards -------------------------------------------------------------------
    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if "out" in kwargs:
            kwargs["out"] = _unwrap(kwargs["out"])
        return _wrap(getattr(ufunc, method)(*_unwrap(inputs), **kwargs))

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def get(self) -> _np.ndarray:
        """A host copy."""
        return self._a.copy()

    @property
    def device(self) -> Device:
        return Device(0)

    # -- numpy's array protocol, on the device ---------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # __array_interface__, __array_struct__: no host view
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return lambda *a, **k: _wrap(attr(*_unwrap(a), **_unwrap(k)))
        return _wrap(attr) if isinstance(attr, _np.ndarray) else attr

    @property
    def T(self) -> ndarray:  # noqa: N802 - numpy's name
        return ndarray(self._a.T)

    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._a[_unwrap(key)] = _unwrap(value)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        return (_wrap(v) for v in self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __index__(self) -> int:
        return self._a.__index__()

    def __repr__(self) -> str:
        return "fake_cupy." + repr(self._a)

    def __copy__(self) -> ndarray:
        return ndarray(self._a.copy())

    def __deepcopy__(self, memo: Any) -> ndarray:
        return ndarray(self._a.copy())


def asarray(a: Any, dtype: Any = None, order: Any = None) -> ndarray:
    """Host data (or a device array) onto the device."""
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype)
    return ndarray(_np.array(a, dtype=dtype, order=order or "K", copy=True))


def array(a: Any, dtype: Any = None, copy: bool = True, order: Any = "K", ndmin: int = 0) -> ndarray:
    """A device copy of ``a``."""
    src = a._a if isinstance(a, ndarray) else a
    return ndarray(_np.array(src, dtype=dtype, copy=True, order=order, ndmin=ndmin))


def asnumpy(a: Any) -> _np.ndarray:
    """A host copy of a device array (host data passes through, as in cupy)."""
    return a.get() if isinstance(a, ndarray) else _np.asarray(a)


def indices(dimensions: Any, dtype: Any = int) -> ndarray:
    """cupy's ``indices`` has no ``sparse`` keyword (found on a real GPU: the gather VJP used it)."""
    return _wrap(_np.indices(dimensions, dtype=dtype))


def get_array_module(*args: Any) -> Any:
    """This module if any argument is a device array, else numpy."""
    return _this if any(isinstance(a, ndarray) for a in args) else _np


class _Ufunc:
    """A numpy ufunc on device arrays, with its methods (``add.at``, ``maximum.reduce``, ...)."""

    def __init__(self, uf: Any):
        self._uf = uf

    def __call__(self, *a: Any, **k: Any) -> Any:
        return _wrap(self._uf(*_unwrap(a), **_unwrap(k)))

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._uf, name)
        if callable(attr):
            return lambda *a, **k: _wrap(attr(*_unwrap(a), **_unwrap(k)))
        return attr


class CUDARuntimeError(RuntimeError):
    """cupy's error for driver failures."""


cuda = types.SimpleNamespace(
    Device=Device,
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, CUDARuntimeError=CUDARuntimeError),
)

import sys as _sys  # noqa: E402

_this = _sys.modules[__name__]


def __getattr__(name: str) -> Any:
    """Everything else: numpy's function of that name, on device arrays only."""
    attr = getattr(_np, name)
    if isinstance(attr, _np.ufunc):
        return _Ufunc(attr)
    if callable(attr) and not isinstance(attr, type):
        def fn(*a: Any, **k: Any) -> Any:
            return _wrap(attr(*_unwrap(a), **_unwrap(k)))
        fn.__name__ = name
        return fn
    if isinstance(attr, types.ModuleType):
        raise AttributeError(f"fake cupy has no submodule {name!r}")
    return attr  # dtypes, constants (float32, pi, newaxis, ...)
