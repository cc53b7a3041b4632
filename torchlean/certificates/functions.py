"""Scalar function rows (exact): PLACEHOLDER written by h-table until h-fns's table lands.

Same API as the bound-table interface (``FUNCTIONS[name]`` with ``value``, ``interval``,
``lower_intercept``, ``upper_intercept``, ``default_slopes``; numbers are ``Fraction``s, attrs are
keyword arguments). relu, leaky_relu, abs and square are exact and tight. exp, log, sqrt, tanh,
sigmoid, softplus and reciprocal are crude: values come from ``math`` widened outward by a margin
(2^-30 relative + 2^-50 absolute, far above libm's error plus the rounding of the argument), and a
line's intercept is the worst case over 16 sub-intervals of [l, u] of the interval rule minus the
line. Every intercept is valid for ANY slope by construction; at merge time h-fns's file replaces
this one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from .core import Rejected
from .intervals import interval_abs, interval_leaky_relu, interval_relu

Q = Fraction
PIECES = 16


class DomainError(Rejected):
    """An argument interval leaves the function's domain (log/sqrt of <= 0, 1/x across 0)."""


def _down(q: Fraction) -> Fraction:
    """The largest float <= q, as a Fraction (keeps rationals short)."""
    f = float(q)
    if Fraction(f) > q:
        f = math.nextafter(f, -math.inf)
    return Fraction(f)


def _up(q: Fraction) -> Fraction:
    return -_down(-q)


def _slope(a: Fraction) -> Fraction:
    return Fraction(float(a))


class PiecewiseLinear:
    """A continuous piecewise-linear f with kinks: f - a·x is piecewise linear too, so its
    extremes over [l, u] are at l, u or a kink inside: the intercepts are exact."""

    def __init__(self, f: Callable[..., Fraction], kinks: tuple[Fraction, ...],
                 interval: Callable[..., tuple[Fraction, Fraction]], lower_slope: Callable[..., Fraction]):
        self.f, self.kinks, self._interval, self._lower_slope = f, kinks, interval, lower_slope

    def value(self, x: Fraction, **at: Any) -> tuple[Fraction, Fraction]:
        v = self.f(x, **at)
        return v, v

    def interval(self, l: Fraction, u: Fraction, **at: Any) -> tuple[Fraction, Fraction]:
        return self._interval(l, u, **at)

    def _points(self, l: Fraction, u: Fraction) -> list[Fraction]:
        return [l, u] + [k for k in self.kinks if l < k < u]

    def lower_intercept(self, l: Fraction, u: Fraction, a: Fraction, **at: Any) -> Fraction:
        return min(self.f(x, **at) - a * x for x in self._points(l, u))

    def upper_intercept(self, l: Fraction, u: Fraction, a: Fraction, **at: Any) -> Fraction:
        return max(self.f(x, **at) - a * x for x in self._points(l, u))

    def default_slopes(self, l: Fraction, u: Fraction, **at: Any) -> tuple[Fraction, Fraction]:
        if u <= l:
            return self._lower_slope(l, u, **at), self._lower_slope(l, u, **at)
        chord = _slope((self.f(u, **at) - self.f(l, **at)) / (u - l))
        return _slope(self._lower_slope(l, u, **at)), chord


def _relu(x: Fraction) -> Fraction:
    return x if x > 0 else Q(0)


def _leaky(x: Fraction, slope: Any = 0.01) -> Fraction:
    return x if x > 0 else Q(slope) * x


def _abs(x: Fraction) -> Fraction:
    return abs(x)


def _relu_lower(l: Fraction, u: Fraction) -> Fraction:
    return Q(1) if u >= -l else Q(0)


def _leaky_lower(l: Fraction, u: Fraction, slope: Any = 0.01) -> Fraction:
    return Q(1) if u >= -l else Q(slope)


def _abs_lower(l: Fraction, u: Fraction) -> Fraction:
    return Q(1) if l >= 0 else (Q(-1) if u <= 0 else Q(1) if u >= -l else Q(-1))


class Enclosed:
    """f known through a rigorous interval rule ``iv(l, u) -> (lo, hi)``; intercepts by the worst
    case over ``PIECES`` sub-intervals (valid for any slope: on each piece [p, q],
    f(x) - a·x >= lo(p, q) - max(a·p, a·q))."""

    def __init__(self, iv: Callable[[Fraction, Fraction], tuple[Fraction, Fraction]],
                 domain: Callable[[Fraction, Fraction], bool] = lambda l, u: True, libm: bool = True):
        self.iv, self.domain = iv, domain
        #: the assumption a verdict using this row rests on (recorded in ``Verdict.trusted``)
        self.trusted = "libm:within-2^-30-relative" if libm else None

    def _check(self, l: Fraction, u: Fraction) -> None:
        if not self.domain(l, u):
            raise DomainError(f"argument interval [{float(l):.6g}, {float(u):.6g}] leaves the domain")

    def value(self, x: Fraction, **at: Any) -> tuple[Fraction, Fraction]:
        return self.interval(x, x)

    def interval(self, l: Fraction, u: Fraction, **at: Any) -> tuple[Fraction, Fraction]:
        self._check(l, u)
        return self.iv(l, u)

    def _pieces(self, l: Fraction, u: Fraction) -> list[tuple[Fraction, Fraction]]:
        self._check(l, u)
        pts = [l] + [max(l, min(u, Q(float(l + (u - l) * j / PIECES)))) for j in range(1, PIECES)] + [u]
        return [(p, q) for p, q in zip(pts, pts[1:])]

    def lower_intercept(self, l: Fraction, u: Fraction, a: Fraction, **at: Any) -> Fraction:
        return _down(min(self.iv(p, q)[0] - max(a * p, a * q) for p, q in self._pieces(l, u)))

    def upper_intercept(self, l: Fraction, u: Fraction, a: Fraction, **at: Any) -> Fraction:
        return _up(max(self.iv(p, q)[1] - min(a * p, a * q) for p, q in self._pieces(l, u)))

    def default_slopes(self, l: Fraction, u: Fraction, **at: Any) -> tuple[Fraction, Fraction]:
        if u <= l:
            return Q(0), Q(0)
        lo_l, hi_l = self.iv(l, l)
        lo_u, hi_u = self.iv(u, u)
        s = _slope((lo_u + hi_u - lo_l - hi_l) / (2 * (u - l)))
        return s, s


def _float_fn(fn: Callable[[float], float]) -> Callable[[Fraction], tuple[Fraction, Fraction]]:
    def enclose(x: Fraction) -> tuple[Fraction, Fraction]:
        try:
            v = fn(float(x))
        except (OverflowError, ValueError):
            raise DomainError("function value out of range") from None
        if not math.isfinite(v):
            raise DomainError("function value out of range")
        m = Q(abs(v)) / 2**30 + Q(1, 2**50)
        return Q(v) - m, Q(v) + m
    return enclose


def _increasing(fn: Callable[[float], float]) -> Callable[[Fraction, Fraction], tuple[Fraction, Fraction]]:
    e = _float_fn(fn)
    return lambda l, u: (e(l)[0], e(u)[1])


def _softplus(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _recip(l: Fraction, u: Fraction) -> tuple[Fraction, Fraction]:
    return 1 / u, 1 / l  # decreasing on each side of 0, exact


def _square(l: Fraction, u: Fraction) -> tuple[Fraction, Fraction]:
    lo = Q(0) if l <= 0 <= u else min(l * l, u * u)
    return lo, max(l * l, u * u)


FUNCTIONS: dict[str, Any] = {
    "relu": PiecewiseLinear(_relu, (Q(0),), lambda l, u: interval_relu((l, u)), _relu_lower),
    "leaky_relu": PiecewiseLinear(
        _leaky, (Q(0),), lambda l, u, slope=0.01: interval_leaky_relu((l, u), Q(slope)), _leaky_lower),
    "abs": PiecewiseLinear(_abs, (Q(0),), lambda l, u: interval_abs((l, u)), _abs_lower),
    "exp": Enclosed(_increasing(math.exp)),
    "log": Enclosed(_increasing(math.log), lambda l, u: l > 0),
    "sqrt": Enclosed(_increasing(math.sqrt), lambda l, u: l >= 0),
    "tanh": Enclosed(_increasing(math.tanh)),
    "sigmoid": Enclosed(_increasing(_sigmoid)),
    "softplus": Enclosed(_increasing(_softplus)),
    "reciprocal": Enclosed(_recip, lambda l, u: l > 0 or u < 0, libm=False),
    "square": Enclosed(_square, libm=False),
}
