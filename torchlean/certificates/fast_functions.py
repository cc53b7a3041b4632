"""Scalar function rows (fast, numpy float64): PLACEHOLDER written by h-table until h-fns lands.

The float64 sibling of ``functions.py``: ``FAST[name]`` has ``interval``, ``lower_intercept``,
``upper_intercept`` and ``default_slopes`` over numpy arrays (broadcastable l, u, a), every result
rounded outward: a computed f(x) - a·x is widened by 4u·(|f(x)| + |a·x|) + 2^-1000 (two roundings of
relative size u = 2^-53 each), libm values by 2^-30 relative + 2^-50 absolute (as in
``functions.py``). Same algorithms as the exact rows: kinks and endpoints for piecewise-linear
functions, the worst case over 16 sub-intervals for the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

U = 2.0**-53
TINY = 2.0**-1000
PIECES = 16


def _widen(v: np.ndarray, mag: np.ndarray, sign: float) -> np.ndarray:
    return v + sign * (4 * U * mag + TINY)


class FastPWL:
    """relu / leaky_relu / abs: g = f - a·x at l, u and 0 (when inside)."""

    def __init__(self, f: Callable[..., np.ndarray], lower_slope: Callable[..., np.ndarray],
                 exact: bool = True):
        self.f, self.lower_slope, self.exact = f, lower_slope, exact

    def interval(self, l, u, **at):
        a, b = self.f(l, **at), self.f(u, **at)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        inside = (l < 0) & (u > 0)
        f0 = self.f(np.zeros_like(l), **at)
        lo, hi = np.where(inside, np.minimum(lo, f0), lo), np.where(inside, np.maximum(hi, f0), hi)
        if not self.exact:  # (leaky_relu: slope·x is rounded; relu and abs are exact in floats)
            lo, hi = _widen(lo, np.abs(lo), -1), _widen(hi, np.abs(hi), 1)
        return lo, hi

    def _g(self, x, a, sign, **at):
        fx, ax = self.f(x, **at), a * x
        return _widen(fx - ax, np.abs(fx) + np.abs(ax), sign)

    def lower_intercept(self, l, u, a, **at):
        b = np.minimum(self._g(l, a, -1, **at), self._g(u, a, -1, **at))
        z = self._g(np.zeros_like(l), a, -1, **at)
        return np.where((l < 0) & (u > 0), np.minimum(b, z), b)

    def upper_intercept(self, l, u, a, **at):
        b = np.maximum(self._g(l, a, 1, **at), self._g(u, a, 1, **at))
        z = self._g(np.zeros_like(l), a, 1, **at)
        return np.where((l < 0) & (u > 0), np.maximum(b, z), b)

    def default_slopes(self, l, u, **at):
        with np.errstate(divide="ignore", invalid="ignore"):
            chord = (self.f(u, **at) - self.f(l, **at)) / (u - l)
        lower = self.lower_slope(l, u, **at)
        return lower, np.where(u > l, chord, lower)


class FastEnclosed:
    """A monotone function (increasing, or decreasing when ``dec``) from numpy's libm, widened."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], dec: bool = False,
                 domain: Callable[[Any, Any], Any] = lambda l, u: np.ones(np.shape(l), bool)):
        self.fn, self.dec, self.domain = fn, dec, domain

    def _enc(self, x, sign):
        with np.errstate(all="ignore"):
            v = self.fn(x)
        v = v + sign * (np.abs(v) * 2.0**-30 + 2.0**-50)
        return np.where(np.isfinite(v), v, sign * np.inf)

    def interval(self, l, u, **at):
        ok = self.domain(l, u)
        if self.dec:
            lo, hi = self._enc(u, -1), self._enc(l, 1)
        else:
            lo, hi = self._enc(l, -1), self._enc(u, 1)
        return np.where(ok, lo, -np.inf), np.where(ok, hi, np.inf)

    def _pieces(self, l, u):
        t = np.arange(PIECES + 1) / PIECES
        pts = l[..., None] + (u - l)[..., None] * t
        pts = np.clip(pts, l[..., None], u[..., None])
        pts[..., 0], pts[..., -1] = l, u
        return pts[..., :-1], pts[..., 1:]

    def lower_intercept(self, l, u, a, **at):
        l, u, a = np.broadcast_arrays(*(np.asarray(v, float) for v in (l, u, a)))
        p, q = self._pieces(l, u)
        lo, _ = self.interval(p, q)
        ap, aq = a[..., None] * p, a[..., None] * q
        m = np.maximum(ap, aq)
        return _widen(lo - m, np.abs(lo) + np.abs(m), -1).min(-1)

    def upper_intercept(self, l, u, a, **at):
        l, u, a = np.broadcast_arrays(*(np.asarray(v, float) for v in (l, u, a)))
        p, q = self._pieces(l, u)
        _, hi = self.interval(p, q)
        ap, aq = a[..., None] * p, a[..., None] * q
        m = np.minimum(ap, aq)
        return _widen(hi - m, np.abs(hi) + np.abs(m), 1).max(-1)

    def default_slopes(self, l, u, **at):
        with np.errstate(all="ignore"):
            s = (self.fn(u) - self.fn(l)) / (u - l)
        s = np.where((u > l) & np.isfinite(s), s, 0.0)
        return s, s


class FastSquare(FastEnclosed):
    """x^2: 0 inside [l, u] when l <= 0 <= u, else the smaller endpoint square; outward."""

    def __init__(self):
        super().__init__(np.square)

    def interval(self, l, u, **at):
        a, b = np.square(l), np.square(u)
        lo = np.where((l <= 0) & (u >= 0), 0.0, np.minimum(a, b) * (1 - 4 * U))
        return lo, np.maximum(a, b) * (1 + 4 * U) + TINY


def _leaky(x, slope=0.01):
    return np.where(x > 0, x, slope * x)


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(x / 2))


def _softplus(x):
    return np.logaddexp(0, x)


FAST: dict[str, Any] = {
    "relu": FastPWL(lambda x: np.maximum(x, 0.0), lambda l, u: (u >= -l).astype(float)),
    "leaky_relu": FastPWL(_leaky, lambda l, u, slope=0.01: np.where(u >= -l, 1.0, slope), exact=False),
    "abs": FastPWL(np.abs, lambda l, u: np.where(u >= -l, 1.0, -1.0)),
    "exp": FastEnclosed(np.exp),
    "log": FastEnclosed(np.log, domain=lambda l, u: l > 0),
    "sqrt": FastEnclosed(np.sqrt, domain=lambda l, u: l >= 0),
    "tanh": FastEnclosed(np.tanh),
    "sigmoid": FastEnclosed(_sigmoid),
    "softplus": FastEnclosed(_softplus),
    "reciprocal": FastEnclosed(lambda x: 1 / x, dec=True, domain=lambda l, u: (l > 0) | (u < 0)),
    "square": FastSquare(),
}
