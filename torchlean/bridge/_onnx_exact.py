"""Exactness helpers of the ONNX importer: which constant folds keep the real-number meaning.

The importer is in the trusted base, so a value computed at import time must denote exactly the
reals the ONNX model's stored floats and attributes denote. These are the only folds it makes on
float data; each says why it is exact.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from ..spec.shapes import ShapeError

#: primitives whose value on constants is computed at import time: each only moves, copies or
#: negates elements, so the folded constant holds exactly the values the node would produce
EXACT_FOLDS = frozenset({"transpose", "reshape", "flatten", "concat", "slice", "broadcast_to", "neg"})

_FLOATS = ("float16", "float32", "float64")


def exact_product(a: np.ndarray, s: float) -> np.ndarray | None:
    """``a * s`` in ``a``'s float dtype when every product is exactly representable there (so the
    folded constant denotes the same reals as the two factors), else None."""
    a = np.asarray(a)
    if a.dtype.kind != "f" or not np.isfinite(s) or not np.all(np.isfinite(a)):
        return None
    with np.errstate(over="ignore", under="ignore"):
        p64 = a.astype(np.float64) * np.float64(s)
        out = p64.astype(a.dtype)
        if not np.all(np.isfinite(out)):
            return None
        if a.dtype.itemsize <= 4 and float(np.float32(s)) == s:
            # float32 x float32 needs at most 48 significant bits and exponents in [-298, 256]:
            # the float64 product is exact, so comparing with it decides exactness
            ok = np.array_equal(out.astype(np.float64), p64)
        else:
            fs = Fraction(s)
            ok = all(Fraction(float(p)) == Fraction(float(x)) * fs for x, p in zip(a.flat, out.flat))
    return out if ok else None


def exact_array(values: Any, dtype: str) -> np.ndarray:
    """``values`` (Python/numpy floats, read exactly) as an array of ``dtype`` if that holds every
    value exactly, else of float64 (which holds any float32 attribute exactly)."""
    a64 = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(a64)):
        raise ShapeError(f"non-finite attribute value {values!r}")
    src = np.asarray(values)
    if src.dtype.kind == "f" and src.dtype.itemsize > 8:
        raise ShapeError(f"attribute of dtype {src.dtype} is not supported")
    if dtype in _FLOATS:
        with np.errstate(over="ignore", under="ignore"):
            a = a64.astype(dtype)
        if np.array_equal(a.astype(np.float64), a64):
            return a
    return a64

