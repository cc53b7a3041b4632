"""Scalar math namespaces the spec's meanings are written against.

A primitive's meaning is written once, as a function of a namespace ``m`` and numpy object arrays
of scalars. ``SYMPY`` makes it a sympy expression (for proofs); ``MPMATH`` evaluates it at the
working precision of ``mpmath.mp`` (for exact evaluation). Writing the meaning once keeps the two
in step by construction.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import mpmath
import numpy as np


def exact(value: Any) -> Fraction:
    """The exact rational value of a Python/numpy number (floats are exact binary fractions)."""
    if isinstance(value, (bool, np.bool_)):
        return Fraction(int(value))
    if isinstance(value, (int, np.integer)):
        return Fraction(int(value))
    return Fraction(float(value))


def _sympy() -> Any:
    """sympy, imported on first use: the proofs need it, running and verifying a network do not
    (its import is ~0.15 s of every ``python -m torchlean.verify``)."""
    import sympy

    return sympy


class SympyMath:
    """Scalar operations producing sympy expressions."""

    name = "sympy"

    @property
    def pi(self) -> Any:
        return _sympy().pi

    @staticmethod
    def const(value: Any) -> Any:
        if isinstance(value, str):
            return _sympy().Rational(value)
        q = exact(value)
        return _sympy().Rational(q.numerator, q.denominator)

    def __getattr__(self, name: str) -> Any:
        # (exp, log, sqrt, tanh, erf: sympy's own functions, looked up once sympy is imported)
        if name in ("exp", "log", "sqrt", "tanh", "erf"):
            return getattr(_sympy(), name)
        raise AttributeError(name)

    @staticmethod
    def select(cond: Any, a: Any, b: Any) -> Any:
        sympy = _sympy()
        if cond is sympy.true or cond is True:
            return a
        if cond is sympy.false or cond is False:
            return b
        return sympy.Piecewise((a, cond), (b, True))

    @staticmethod
    def gt(a: Any, b: Any) -> Any:
        return _sympy().StrictGreaterThan(a, b)

    @staticmethod
    def ge(a: Any, b: Any) -> Any:
        return _sympy().GreaterThan(a, b)


class MpMath:
    """Scalar operations on mpmath numbers at the current ``mpmath.mp`` precision."""

    name = "mpmath"

    @property
    def pi(self) -> mpmath.mpf:  # a property: pi depends on the working precision
        return +mpmath.pi

    @staticmethod
    def const(value: Any) -> mpmath.mpf:
        if isinstance(value, str):
            return mpmath.mpf(value)
        q = exact(value)
        return mpmath.mpf(q.numerator) / q.denominator

    exp = staticmethod(mpmath.exp)
    log = staticmethod(mpmath.log)
    sqrt = staticmethod(mpmath.sqrt)
    tanh = staticmethod(mpmath.tanh)
    erf = staticmethod(mpmath.erf)

    @staticmethod
    def select(cond: Any, a: Any, b: Any) -> Any:
        return a if cond else b

    @staticmethod
    def gt(a: Any, b: Any) -> bool:
        return a > b

    @staticmethod
    def ge(a: Any, b: Any) -> bool:
        return a >= b


SYMPY = SympyMath()
MPMATH = MpMath()


def emap(fn: Any, *arrays: Any) -> np.ndarray:
    """Apply a scalar function elementwise over object arrays, with numpy broadcasting."""
    out = np.frompyfunc(fn, len(arrays), 1)(*arrays)
    return np.asarray(out, dtype=object)


def obj(array: Any) -> np.ndarray:
    """View any array-like as a numpy object array."""
    return np.asarray(array, dtype=object)
