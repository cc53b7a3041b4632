"""Float64 sibling of ``functions.py``: the same rows; the generic algorithm is functions.py's
(``min_g``, ``slopes.choose``, through ``functions.Lines``) run over ``FAST_D``, elementwise.

``FAST[name]`` has the methods of ``functions.FUNCTIONS[name]`` (value, interval, lower_intercept,
upper_intercept, policy_slopes), taking numpy float64 arrays (any broadcastable shapes; attrs as
keyword arguments) and returning float64 arrays. Inputs are read as the float64 values they are:
a caller with other numbers rounds l down and u up first (numpy would round to nearest). The
convexity pieces, brackets, Lipschitz bounds, EXP_MAX and the domain rules are read from the exact
rows (the brackets are binary64 numbers, so they convert exactly); only the evaluation of f and f'
is re-written in numpy.

Assumption (TRUST_BOUNDARIES.md, "Exact or fast"): IEEE-754 binary64 with round-to-nearest for
+ - * / and sqrt, and np.exp, np.log, np.log1p, np.tanh and the C library's erf (``math.erf``)
within 4 ulp of the true value (subnormal
results: within 4 units of 2^-1074). Under it each row's f and f' formula returns (value, mag) with
|true - value| <= 2^-45 mag + 2^-1060: mag is the sum of the absolute values of the terms, times the
factor by which a rounded argument is amplified where there is one (gelu: see ``_gelu``; pow with
a non-integer exponent, exp(c log x): 1 + |c|(1 + |log x|); integer powers by repeated squaring:
|c| + 3). Every
bound is then pushed outward by R = 2^-36 times the magnitudes of everything that entered it plus
TINY = 2^-1000: at least 2^9 times the rounding errors it covers, including those of the few
operations that compute it (except where nothing is rounded: relu and abs, whose f is exact, at
slopes 0 and +-1, so a stable ReLU's lines are exact). A result that is not finite becomes -inf
for a lower bound and +inf for an upper bound (sound, useless), e.g. where exp overflows binary64
(709.8 < x <= EXP_MAX). ``interval`` of a monotone row also takes an interval with an infinite end
(``usable_interval``): that end's bound is f's limit there (``LIMITS``) or vacuous; the lines refuse.
Domain violations raise ``DomainError`` if any element violates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from .functions import FUNCTIONS, GELU_A, GELU_C, DomainError, Lines, _call

R = 2.0**-36
TINY = 2.0**-1000
Arr = np.ndarray
Pair = tuple[Arr, Arr]  # (value, magnitude): |true - value| <= magnitude * 2^-45 + 2^-1060
_C, _A = float(GELU_C), float(GELU_A)


def _sig(x: Arr) -> Arr:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _dsig(x: Arr) -> Arr:
    e = np.exp(-np.abs(x))
    return e / (1 + e) ** 2


def _self(v: Arr) -> Pair:
    return v, np.abs(v)


def _sum2(p: Arr, q: Arr) -> Pair:
    return p + q, np.abs(p) + np.abs(q)


def _gelu_v(x: Arr) -> tuple[Arr, Arr]:
    return 2 * _C * (x + _A * x * x * x), 2 * _C * (1 + 3 * _A * x * x)


def _gelu(x: Arr, **_: Any) -> Pair:
    """x sigmoid(v). v = 2c(x + a x^3) is rounded by dv <= 6 ulp |v|, which moves sigmoid(v) by a
    relative <= |dv| sigmoid(-v) (d log sigmoid(v)/dv = sigmoid(-v)) and sigmoid'(v) by <= |dv|
    (|d log sigmoid'(v)/dv| <= 1): mag carries 1 + |v| sigmoid(-v), and 1 + |v| on the sigmoid' term."""
    v = _gelu_v(x)[0]
    y = x * _sig(v)
    return y, np.abs(y) * (1 + np.abs(v) * _sig(-v))


def _gelu_df(x: Arr, **_: Any) -> Pair:
    v, dv = _gelu_v(x)
    s, t = _sig(v), x * _dsig(v) * dv
    return s + t, s * (1 + np.abs(v) * _sig(-v)) + np.abs(t) * (1 + np.abs(v))


_ERF = np.frompyfunc(math.erf, 1, 1)
_K = 2 / math.sqrt(math.pi)  # 2/sqrt(pi) within 1 ulp


def _erf(x: Arr, **_: Any) -> Pair:
    return _self(np.asarray(_ERF(np.asarray(x, dtype=np.float64)), dtype=np.float64))


def _erf_d(x: Arr, **_: Any) -> Pair:
    """(2/sqrt(pi)) exp(-x^2): x*x is rounded by 1 ulp, which exp amplifies by x^2 (relative): mag
    carries the factor 2 + x^2."""
    x2 = x * x
    v = _K * np.exp(-x2)
    return v, v * (2 + x2)


def _leaky(x: Arr, slope: float = 0.01) -> Pair:
    return _self(np.where(x > 0, x, float(slope) * x))  # a rounded slope: within the charge


def _softplus(x: Arr, **_: Any) -> Pair:
    return _sum2(np.maximum(x, 0.0), np.log1p(np.exp(-np.abs(x))))


def _rsqrt_d(x: Arr, **_: Any) -> Pair:
    return _self(-0.5 / (np.sqrt(x) * x))


def _pow(x: Arr, exponent: float = 2, scale: float = 1.0) -> Pair:
    """scale * x^c: integer c by repeated squaring (relative error <= (|c| + 2) ulp), otherwise
    exp(c log x), whose error exp's argument amplifies: mag carries the factor 1 + |c| (1 + |log x|)."""
    c = float(exponent)
    if c.is_integer():
        n, y, p = abs(int(c)), np.ones_like(x), x
        while n:
            y, p, n = (y * p if n & 1 else y), p * p, n >> 1
        v = scale * (y if c >= 0 else 1 / y)
        return v, np.abs(v) * (abs(c) + 3)
    lg = np.log(x)
    v = scale * np.exp(c * lg)
    return v, np.abs(v) * (1 + abs(c) * (1 + np.abs(lg)))


def _pow_d(x: Arr, exponent: float = 2) -> Pair:
    return _pow(x, float(exponent) - 1, float(exponent))


_F: dict[str, tuple[Callable[..., Pair], Callable[..., Pair]]] = {
    "relu": (lambda x: _self(np.maximum(x, 0.0)), lambda x: _self((x > 0) * 1.0)),
    "leaky_relu": (_leaky, lambda x, slope=0.01: _self(np.where(x > 0, 1.0, float(slope)))),
    "abs": (lambda x: _self(np.abs(x)), lambda x: _self(np.where(x > 0, 1.0, -1.0))),
    "square": (lambda x: _self(x * x), lambda x: _self(2 * x)),
    "reciprocal": (lambda x: _self(1 / x), lambda x: _self(-1 / (x * x))),
    "exp": (lambda x: _self(np.exp(x)), lambda x: _self(np.exp(x))),
    "log": (lambda x: _self(np.log(x)), lambda x: _self(1 / x)),
    "sqrt": (lambda x: _self(np.sqrt(x)), lambda x: _self(0.5 / np.sqrt(x))),
    "rsqrt": (lambda x: _self(1 / np.sqrt(x)), _rsqrt_d),
    "tanh": (lambda x: _self(np.tanh(x)), lambda x: _self(4 * _dsig(2 * x))),
    "erf": (_erf, _erf_d),
    "sigmoid": (lambda x: _self(_sig(x)), lambda x: _self(_dsig(x))),
    "softplus": (_softplus, lambda x: _self(_sig(x))),
    "silu": (lambda x: _self(x * _sig(x)), lambda x: _sum2(_sig(x), x * _dsig(x))),
    "gelu": (_gelu, _gelu_df),
    "pow": (_pow, _pow_d),
}

# f and f' computed exactly in binary64 (max(x, 0), |x|, 0 and +-1): no charge, so a dead ReLU's
# range is exactly [0, 0] as in the exact row (the engines' max-dominance test and ties need it)
_EXACT_F = {"relu", "abs"}


def _finite_or(x: Arr, inf: float) -> Arr:
    return np.where(np.isfinite(x), x, inf)


@dataclass(frozen=True)
class FastRow(Lines):
    name: str

    def _read(self, attrs: dict[str, Any], *xs: Any) -> list[Any]:
        xs = self._args(*xs)
        self._check(xs[0], xs[1], attrs)
        return [FAST_D, FUNCTIONS[self.name], *xs]

    def _args(self, *xs: Any, ends: bool = False) -> list[Arr]:
        """The inputs as arrays of one shape; non-finite ones refused (``ends``: only NaN, for
        ``interval`` of a monotone row, which takes an infinite end: ``_end``)."""
        arrs = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in xs))
        if not all((~np.isnan(x) if ends else np.isfinite(x)).all() for x in arrs):
            raise DomainError(f"{self.name}: non-finite input")
        return [np.array(x) for x in arrs]

    def _mono(self, attrs: dict[str, Any]) -> int:
        """+1 increasing, -1 decreasing, 0 neither (leaky_relu with a slope >= 0: increasing)."""
        if self.name == "leaky_relu" and attrs.get("slope", 0.01) >= 0:
            return 1
        return FUNCTIONS[self.name].mono(**attrs)

    def _check(self, l: Arr, u: Arr, attrs: dict[str, Any]) -> None:
        if (l > u).any():
            raise DomainError(f"{self.name}: empty interval")
        if not np.all(FUNCTIONS[self.name].domain(l, u, **attrs)):
            raise DomainError(f"{self.name}: interval outside the domain")

    def usable(self, l: Any, u: Any, **attrs: Any) -> Arr:
        """Elementwise: l, u finite, l <= u and [l, u] inside the domain. The other methods raise
        ``DomainError`` unless every element is usable; a batched caller masks with this first
        (every row accepts [1, 1] as a stand-in)."""
        l, u = np.broadcast_arrays(np.asarray(l, dtype=np.float64), np.asarray(u, dtype=np.float64))
        ok = np.isfinite(l) & np.isfinite(u) & (l <= u)
        with np.errstate(invalid="ignore"):
            return ok & FUNCTIONS[self.name].domain(l, u, **attrs)

    def usable_interval(self, l: Any, u: Any, **attrs: Any) -> Arr:
        """Elementwise: ``interval`` takes [l, u]: ``usable``, or, on a monotone row, l <= u with
        an infinite end (l = -inf or u = +inf; NaN never) and the domain rule true (it is written
        with comparisons, which read an infinite end as the extended reals do: reciprocal's
        l > 0 holds on [1, inf], exp's u <= EXP_MAX fails on [0, inf])."""
        l, u = np.broadcast_arrays(np.asarray(l, dtype=np.float64), np.asarray(u, dtype=np.float64))
        if not self._mono(attrs):
            return self.usable(l, u, **attrs)
        ok = (l <= u) & (l < np.inf) & (u > -np.inf)  # (False on NaN)
        with np.errstate(invalid="ignore"):
            return ok & FUNCTIONS[self.name].domain(l, u, **attrs)

    def _f(self, x: Arr, attrs: dict[str, Any], up: bool, d: bool = False) -> Arr:
        """a lower (upper) bound of f(x) (or f'(x) when d)."""
        with np.errstate(all="ignore"):
            v, mag = _F[self.name][d](x, **attrs)
            if self.name in _EXACT_F:
                return v
            return v + mag * R + TINY if up else v - mag * R - TINY

    def value(self, x: Any, **attrs: Any) -> Pair:
        (x,) = self._args(x)
        self._check(x, x, attrs)
        return _finite_or(self._f(x, attrs, False), -np.inf), _finite_or(self._f(x, attrs, True), np.inf)

    def interval(self, l: Any, u: Any, **attrs: Any) -> Pair:
        """Encloses f over [l, u]; a monotone row takes an infinite end (``usable_interval``)."""
        mono = self._mono(attrs)
        l, u = self._args(l, u, ends=bool(mono))
        self._check(l, u, attrs)
        if mono:
            a, b = (l, u) if mono > 0 else (u, l)
            lo, hi = self._end(a, attrs, False), self._end(b, attrs, True)
        else:
            lo, hi = self.lower_intercept(l, u, 0, **attrs), self.upper_intercept(l, u, 0, **attrs)
        return _finite_or(lo, -np.inf), _finite_or(hi, np.inf)

    def _end(self, x: Arr, attrs: dict[str, Any], up: bool) -> Arr:
        """A lower (upper when ``up``) bound of a monotone f over an interval at its end x, read
        at x = -inf or +inf as f's limit there. Sound: f monotone, so on an interval whose end is
        infinite its infimum (supremum) on that side is the limit at that end; ``LIMITS`` holds
        finite ones, exact (0 or +-1, standard limits); a row or end not in the table gets the
        vacuous -inf (+inf), sound whatever the limit. f itself is never evaluated at an infinite
        x (no libm behaviour at infinities is assumed)."""
        fin = np.isfinite(x)
        if fin.all():
            return self._f(x, attrs, up)
        v = self._f(np.where(fin, x, 1.0), attrs, up)  # (1.0: a stand-in, replaced below)
        neg, pos = LIMITS.get(self.name, (None, None))
        at = [(np.inf if up else -np.inf) if e is None else e for e in (neg, pos)]
        return np.where(fin, v, np.where(x < 0, at[0], at[1]))


def _g(row: Any, x: Arr, a: Arr, s: int, attrs: dict[str, Any]) -> Arr:
    """A lower bound of s*f(x) - a*x: the rounded difference pushed down by R·(its terms) + TINY."""
    fx = FAST[row.name]._f(x, attrs, s < 0) * s
    ax = a * x
    err = (np.abs(fx) + np.abs(ax)) * R + TINY
    if row.name in _EXACT_F:  # f(x) exact and a in {0, 1, -1}: a*x and fx - ax (0, +-x or
        # +-2x) are exact, so a stable ReLU's line is exact (the engines skip such elements)
        err = np.where((a == 0) | (np.abs(a) == 1), 0.0, err)
    return fx - ax - err


def _dg(row: Any, t: Arr, a: Arr, s: int, attrs: dict[str, Any]) -> Pair:
    """Encloses s*f'(t) - a."""
    fr = FAST[row.name]
    f_lo, f_hi = fr._f(t, attrs, s < 0, True) * s, fr._f(t, attrs, s > 0, True) * s
    return _add_down(f_lo, -a), -_add_down(-f_hi, a)


def _add_down(x: Arr, y: Arr) -> Arr:
    return x + y - (np.abs(x) + np.abs(y)) * R - TINY


def _put(sel: Arr, cur: tuple[Arr, ...], fn: Callable[..., tuple[Arr, ...]]) -> tuple[Arr, ...]:
    """``cur`` with the elements ``sel`` replaced by ``fn``'s values on them (``fn`` takes the
    selection: a function of an array)."""
    out = tuple(np.array(c, dtype=np.float64) for c in cur)
    for o, v in zip(out, fn(lambda x: x[sel])):
        o[sel] = v
    return out


def _take(best: Arr | None, act: Arr, b: Arr) -> Arr:
    """The least bound so far where the piece is active (an overflow or NaN is no bound: -inf)."""
    b = np.where(np.isfinite(b), b, -np.inf)
    return np.where(act, b if best is None else np.minimum(best, b), np.inf if best is None else best)


#: the float64 domain of ``functions.min_g``, elementwise on arrays: every rounded operation that
#: enters a bound is pushed outward by R·(its terms) + TINY (module docstring)
FAST_D = SimpleNamespace(
    maximum=np.maximum, minimum=np.minimum, num=float, active=np.any, g=_g, dg=_dg, take=_take,
    where=lambda c, a, b: np.where(c, _call(a), _call(b)), flt=lambda x: x, add_down=_add_down, clip=np.clip,
    fdf=lambda row, x, attrs: _F[row.name][1](x, **attrs)[0], finish=lambda b: _finite_or(b, -np.inf),
    ff=lambda row, x, attrs: _F[row.name][0](x, **attrs)[0], put=_put, finite=np.isfinite,
    chord=lambda row, l, u, attrs: (FAST_D.ff(row, u, attrs) - FAST_D.ff(row, l, attrs)) / (u - l),
    slope=lambda x: _finite_or(x, 0.0), quiet=lambda: np.errstate(all="ignore"))


FAST: dict[str, FastRow] = {name: FastRow(name) for name in FUNCTIONS}

#: monotone rows' finite limits (f at -inf, f at +inf; None: infinite or outside the domain), for
#: ``FastRow._end``: 1/x -> 0 at either infinity, x^(-1/2) -> 0, e^x -> 0 at -inf, tanh and erf ->
#: -+1, sigmoid -> 0 and 1, softplus log(1 + e^x) -> 0 at -inf, relu -> 0 at -inf
LIMITS: dict[str, tuple[float | None, float | None]] = {
    "reciprocal": (0.0, 0.0), "rsqrt": (None, 0.0), "exp": (0.0, None), "tanh": (-1.0, 1.0),
    "erf": (-1.0, 1.0), "sigmoid": (0.0, 1.0), "softplus": (0.0, None), "relu": (0.0, None)}


def relu_lines(l: Arr, u: Arr) -> tuple[Arr, Arr, Arr, Arr]:
    """The relu row's default lines (slope, intercept) below and above, elementwise for finite
    l <= u, in closed form (the generic ``policy_slopes`` + ``*_intercept`` cost ~10x more on a
    ReLU network's many small batches): lower slope 1 where u >= -l else 0 (adaptive; 1 / 0 on
    stable elements), upper slope the chord u / (u - l) (1 / 0 on stable ones), as ``policy_slopes``.
    Intercepts: the lower one min over [l, u] of relu(x) - a·x with a in {0, 1}: max(l, 0) or
    max(-u, 0), exact; the upper one max over [l, u] of relu(x) - a·x, a convex function, so the larger of its
    values at l and u, each computed with one rounded product and one rounded difference and
    pushed up by R·(|terms|) + TINY, as ``functions.min_g`` does (none where a is 0 or 1: exact)."""
    with np.errstate(all="ignore"):
        unst = (l < 0) & (u > 0)
        act = ((l >= 0) & (u > 0)) * 1.0  # (the chord, or the tangent where l = u, as policy_slopes)
        sl = np.where(unst, (u >= -l) * 1.0, act)
        su = np.where(unst, u / np.where(unst, u - l, 1.0), act)
        bl = np.where(sl == 1, np.maximum(-u, 0.0), np.maximum(l, 0.0))
        gl, gu = np.maximum(l, 0.0) - su * l, np.maximum(u, 0.0) - su * u
        mag = np.abs(l) + np.abs(su * l) + np.abs(u) + np.abs(su * u)
        ch = np.where((su == 0) | (su == 1), 0.0, mag * R + TINY)
        bu = np.maximum(gl, gu) + ch
    return sl, bl, su, np.where(np.isfinite(bu), bu, np.inf)
