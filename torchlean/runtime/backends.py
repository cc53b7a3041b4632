"""Array namespaces ("xp") the kernels and VJP rules are written against.

- ``numpy``: the default CPU backend.
- ``cupy``: when a CUDA GPU and cupy are present; asked for and absent is an error, never a
  silent fallback to the CPU.
- ``symbolic``: numpy object arrays of sympy expressions, so that the proofs layer can run the very
  kernel and VJP code the runtime executes and read off the formula it computes.

Kernel authors: use ``xp.greater``/``xp.greater_equal``/``xp.equal``/``xp.where`` rather than
comparison operators, and ``xp.exp``/``xp.log``/... rather than methods, so the same code runs on
all three namespaces.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEVICES = ("cpu", "cuda", "symbolic")


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot provide."""


_cupy: Any = None


def cupy_module() -> Any:
    """The cupy module, or DeviceError saying why it cannot be used."""
    global _cupy
    if _cupy is None:
        try:
            import cupy  # type: ignore[import-not-found]
        except ImportError:
            raise DeviceError(
                "device 'cuda' needs cupy: pip install 'torchlean[gpu]' on a machine with an NVIDIA GPU"
            ) from None
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise DeviceError("device 'cuda': cupy is installed but no CUDA GPU is visible")
        except cupy.cuda.runtime.CUDARuntimeError as e:  # pragma: no cover - needs a broken driver
            raise DeviceError(f"device 'cuda': CUDA is not usable ({e})") from None
        _cupy = cupy
    return _cupy


def cuda_available() -> bool:
    """True when cupy imports and sees an NVIDIA GPU (``device='cuda'`` will work)."""
    try:
        cupy_module()
    except DeviceError:
        return False
    return True


def namespace(device: str) -> Any:
    """The array namespace of ``device``."""
    if device == "cpu":
        return np
    if device == "cuda":
        return cupy_module()
    if device == "symbolic":
        from .symbolic import SYMBOLIC

        return SYMBOLIC
    raise DeviceError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")


def device_of(array: Any) -> str:
    if isinstance(array, np.ndarray):
        return "symbolic" if array.dtype == object else "cpu"
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return "cuda"
    raise TypeError(f"not an array of a torchlean backend: {type(array).__name__}")


def namespace_of(array: Any) -> Any:
    if type(array) is np.ndarray:  # the hot path: one type check
        if array.dtype != object:
            return np
    return namespace(device_of(array))


def to_numpy(array: Any) -> np.ndarray:
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy.asnumpy(array)
    return np.asarray(array)


def erf(xp: Any, x: Any) -> Any:
    """The error function on namespace ``xp``: numpy has none, so on the CPU it is the C library's
    ``erf`` (CPython's ``math.erf``, glibc: within 1 ulp of the true value in binary64, the
    assumption TRUST_BOUNDARIES.md states) applied per element in float64 and rounded to the input's
    dtype; on cupy ``cupyx.scipy.special.erf`` (CUDA's erf, within 2 ulp); the symbolic backend has
    its own (sympy's exact ``erf``)."""
    own = getattr(xp, "erf", None)
    if own is not None:
        return own(x)
    if xp is np:
        a = np.asarray(x)
        out = _ERF_UFUNC(a.astype(np.float64, copy=False))
        return np.asarray(out, dtype=np.float64).astype(a.dtype if a.dtype.kind == "f" else np.float64,
                                                        copy=False)
    from cupyx.scipy.special import erf as cupy_erf  # type: ignore[import-not-found]

    return cupy_erf(x)


def _math_erf() -> Any:
    import math

    return np.frompyfunc(math.erf, 1, 1)


_ERF_UFUNC = _math_erf()
