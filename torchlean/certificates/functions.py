"""Scalar function rows of the bound table: rigorous enclosures and sound linear bounds.

``FUNCTIONS[name]`` is one ``Row`` per elementwise nonlinearity (relu, leaky_relu, abs, exp, log,
sqrt, rsqrt, reciprocal, square, pow (attr ``exponent``), tanh, sigmoid, softplus, gelu, silu),
with the meanings of
``torchlean/spec/elementwise.py`` (gelu in its tanh form, written x * sigmoid(2c(x + a x^3)) since
1 + tanh(y) = 2 sigmoid(2y); c and a are the binary64 constants of ``spec/constants.py`` read
exactly). Every number is a ``Fraction``; standard library only.

API (all methods take ``**attrs``, e.g. ``slope`` for leaky_relu):
- ``value(x) -> (lo, hi)``: lo <= f(x) <= hi; dyadic, relative width about 2^-90 (except where an
  argument of exp is clamped, see EXP_MAX).
- ``interval(l, u)``: encloses f over [l, u]; monotone rows apply ``intervals.interval_increasing``
  / ``interval_decreasing`` to their enclosures at the endpoints, relu, leaky_relu, abs and square
  their own rules, all from ``intervals.py`` (the rules ``proofs/ibp.py`` proves: ``ibp.<row>``);
  silu, gelu and non-monotone pow take slope 0 in the algorithm below (``ibp.NOT_PROVED``).
- ``lower_intercept(l, u, a) -> b`` with a*x + b <= f(x) on [l, u] for ANY rational a;
  ``upper_intercept`` the mirror (f(x) <= a*x + b).
- ``default_slopes(l, u) -> (a_lower, a_upper)``: the checker's deterministic choice.
- Domain violations (l > u, log/rsqrt with l <= 0, sqrt with l < 0, reciprocal over 0, exp above
  EXP_MAX) raise ``DomainError``.

Soundness. Enclosures: exp(x) = 2^k exp(r) with r = x - k ln2 in [0, 1) and expm1 / atanh
(log(x) = k ln2 + 2 atanh((m-1)/(m+1)), log1p(y) = 2 atanh(y/(2+y))) are summed as Taylor series
of non-negative terms in fixed point, each term derived from the previous one by floor (ceil)
division, so every computed term is below (above) the true one; the sum stops once a term is at most
one unit and the upper sum adds that term again, which bounds the tail (term ratios are <= 1/2 for
exp with r <= 2 and <= 1/8 for atanh with z <= 1/3). The fixed-point precision grows with 1/|x| so
small arguments keep relative precision. Every other enclosure is monotone interval arithmetic on
these. Linear bounds use ONE generic algorithm over the row's convexity pieces: for g = f - a*x,
 - convex piece [p, q], any t in it: g(x) >= g(t) + g'(t)(x - t), so min g >= g_lo(t) + the least
   corner of [g'_lo(t), g'_hi(t)] x [p - t, q - t]; t solves f'(t) = a in floats (any t is sound,
   this one makes the bound tight to ~1e-15);
 - concave or linear piece: the minimum is at an endpoint;
 - an "unknown" piece (a float-wide bracket around an irrational inflection point):
   g(x) >= g_lo(p) - (Lip + |a|)(q - p), Lip a bound of |f'| (silu: 1 + 1/e < 2, since
   |x sigmoid'(x)| <= |x| e^-|x| <= 1/e; gelu: 1 + 3/e < 3, since |x v'| <= 3|v| for
   v = 2c(x + a x^3) and sigmoid'(v) <= e^-|v|).
The upper intercept is the same algorithm on -f (convex and concave swap). Inflection points:
tanh and sigmoid change curvature at 0 (f'' = -2 tanh sech^2, sigmoid'' = sigmoid' (1 - 2 sigmoid));
silu'' = sigmoid'(x) (2 - x tanh(x/2)), and x tanh(x/2) is even and increasing in |x|, so silu is
convex exactly on [-x0, x0] with x0 = 2.39935728... in (SILU_X0); gelu'' = sigmoid'(v) H(x) with
H = 2v' + x v'' - x v'^2 tanh(v/2) even, H > 0 on [0, x0) and H < 0 beyond, x0 = 1.41850400... in
(GELU_X0): for x >= 3, x v' tanh(v/2) >= 10.5 so H <= -8.5 v' + 12 c a x^2 < 0, and on [0, 3] the
sign pattern is checked in tests against mpmath at 60 digits on a fine grid (tests check the
bracket signs too).

Design notes: the series run on Python integers in fixed point (one floor or ceil per operation)
rather than on Fraction intervals: ~10x faster, and the directed-rounding argument is one line.
The inflection brackets are two adjacent binary64 numbers, so the fast sibling reads the very same
pieces with no rounding of its own. Degenerate pieces (p = q) are evaluated directly.

Large magnitudes: exp(x) is refused for x > EXP_MAX (the bound would not be a usable number); for
x < -EXP_MAX it is enclosed by [0, exp(-EXP_MAX)] (monotonicity), so sigmoid, tanh, softplus, silu
and gelu work on any interval, e.g. [-1e6, 1e6], with short numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction as Q
from functools import cache, lru_cache
from typing import Any

from . import intervals, slopes
from .core import Rejected
from .slopes import flt as _flt
from .slopes import qf as _qf

W = 96  # working precision (bits) of enclosures
EXP_MAX = 1000  # exp(x) refused above, enclosed by [0, exp(-EXP_MAX)] below -EXP_MAX
GELU_C, GELU_A = Q(0.7978845608028654), Q(0.044715)  # spec/constants.py, exactly
SILU_X0 = (Q(float.fromhex("0x1.331e23ad9de11p+1")), Q(float.fromhex("0x1.331e23ad9de12p+1")))
GELU_X0 = (Q(float.fromhex("0x1.6b23142700629p+0")), Q(float.fromhex("0x1.6b2314270062ap+0")))
Enc = tuple[Q, Q]
ZERO, ONE = Q(0), Q(1)


class DomainError(Rejected):
    """The function is not defined (or not boundable) on the given argument or interval."""


# ---- fixed-point series (integers scaled by 2^w; `up` selects the rounding direction) ----

def _div(n: int, d: int, up: bool) -> int:
    return -((-n) // d) if up else n // d


def _fix(x: Q, w: int, up: bool) -> int:
    """floor (ceil) of x * 2^w."""
    return _div(x.numerator << w, x.denominator, up)


def _exp_series(r: int, w: int, up: bool, start: int) -> int:
    """sum_{n >= start} x^n / n! scaled by 2^w, x = r / 2^w in [0, 2]; rounded down, or up with
    the tail bound (after term n >= 3 the ratio x/(n+1) <= 1/2, so the tail is <= term n)."""
    t, s, n = 1 << w, 0, 0
    while True:
        if n >= start:
            s += t
        if n >= 3 and t <= 1:
            return s + t if up else s
        n += 1
        t = _div(t * r, n << w, up)


def _atanh_series(z: int, w: int, up: bool) -> int:
    """atanh(x) scaled by 2^w, x = z / 2^w in [0, 1/3]; the tail after a term is <= term / 8."""
    z2 = _div(z * z, 1 << w, up)
    p, s, k = z, 0, 1
    while True:
        t = _div(p, k, up)
        s += t
        if t <= 1:
            return s + t if up else s
        p, k = _div(p * z2, 1 << w, up), k + 2


def _prec(x: Q) -> int:
    """working precision giving ~W relative bits for 0 < x <= 2."""
    return W + max(0, x.denominator.bit_length() - x.numerator.bit_length() + 2)


def _round(x: Q, up: bool) -> Q:
    """x rounded down (up) to a dyadic with about W + 8 significant bits: keeps numbers short."""
    n, d = x.numerator, x.denominator
    if n == 0 or (d & (d - 1) == 0 and abs(n).bit_length() <= W + 16):
        return x
    s = W + 8 - (abs(n).bit_length() - d.bit_length())
    if s >= 0:
        return Q(_div(n << s, d, up), 1 << s)
    return Q(_div(n, d << -s, up) << -s)


def _out(lo: Q, hi: Q) -> Enc:
    return _round(lo, False), _round(hi, True)


@cache
def _ln2(w: int) -> tuple[int, int]:
    """ln 2 = 2 atanh(1/3), as integers scaled by 2^w (lower, upper)."""
    return (2 * _atanh_series(_fix(Q(1, 3), w, False), w, False),
            2 * _atanh_series(_fix(Q(1, 3), w, True), w, True))


def _dyadic(n: int, e: int) -> Q:
    return Q(n << e) if e >= 0 else Q(n, 1 << -e)


@lru_cache(maxsize=1 << 14)
def exp_enc(x: Q) -> Enc:
    """Enclosure of e^x (x <= EXP_MAX; below -EXP_MAX: [0, e^-EXP_MAX])."""
    if x > EXP_MAX:
        raise DomainError(f"exp argument {float(x):.6g} above EXP_MAX = {EXP_MAX}")
    if x < -EXP_MAX:
        return ZERO, exp_enc(Q(-EXP_MAX))[1]
    if x == 0:
        return ONE, ONE
    lw = 2 * W
    l2lo, l2hi = _ln2(lw)
    xlo, xhi = _fix(x, lw, False), _fix(x, lw, True)
    k = math.floor(float(x) / math.log(2))
    while True:  # r = x - k ln2 in [rlo, rhi] / 2^lw, made to lie in [0, 1]
        rlo = xlo - k * (l2hi if k >= 0 else l2lo)
        rhi = xhi - k * (l2lo if k >= 0 else l2hi)
        if rlo < 0:
            k -= 1
        elif rhi > 1 << lw:
            k += 1
        else:
            break
    lo = _exp_series(rlo >> (lw - W), W, False, 0)
    hi = _exp_series(-((-rhi) >> (lw - W)), W, True, 0)
    return _dyadic(lo, k - W), _dyadic(hi, k - W)


def expm1_pos(x: Q) -> Enc:
    """Enclosure of e^x - 1 for 0 <= x <= 2, with relative precision for small x."""
    if x == 0:
        return ZERO, ZERO
    w = _prec(x)
    return (Q(_exp_series(_fix(x, w, False), w, False, 1), 1 << w),
            Q(_exp_series(_fix(x, w, True), w, True, 1), 1 << w))


def atanh_enc(z: Q) -> Enc:
    """Enclosure of atanh(z) for |z| <= 1/3 (odd, increasing)."""
    if z < 0:
        lo, hi = atanh_enc(-z)
        return -hi, -lo
    if z == 0:
        return ZERO, ZERO
    w = _prec(z)
    return (Q(_atanh_series(_fix(z, w, False), w, False), 1 << w),
            Q(_atanh_series(_fix(z, w, True), w, True), 1 << w))


def log1p_enc(q: Enc) -> Enc:
    """Enclosure of log(1 + y) over y in [q0, q1] subset of [0, 1] (increasing)."""
    return 2 * atanh_enc(q[0] / (2 + q[0]))[0], 2 * atanh_enc(q[1] / (2 + q[1]))[1]


@lru_cache(maxsize=1 << 14)
def log_enc(x: Q) -> Enc:
    """Enclosure of log x, x > 0: x = 2^k m with m in [2/3, 4/3], log m = 2 atanh((m-1)/(m+1))."""
    if x <= 0:
        raise DomainError(f"log of {float(x):.6g} <= 0")
    k = x.numerator.bit_length() - x.denominator.bit_length()
    m = x / _dyadic(1, k)
    while m > Q(4, 3):
        k, m = k + 1, m / 2
    while m < Q(2, 3):
        k, m = k - 1, m * 2
    alo, ahi = atanh_enc((m - 1) / (m + 1))
    l2lo, l2hi = (_dyadic(v, -2 * W) for v in _ln2(2 * W))
    klo, khi = (k * l2lo, k * l2hi) if k >= 0 else (k * l2hi, k * l2lo)
    return _out(klo + 2 * alo, khi + 2 * ahi)


def sqrt_enc(x: Q) -> Enc:
    """Enclosure of sqrt x, x >= 0 (integer square roots at W + |log2 x| bits)."""
    if x < 0:
        raise DomainError(f"sqrt of {float(x):.6g} < 0")
    if x == 0:
        return ZERO, ZERO
    s = W + abs(x.numerator.bit_length() - x.denominator.bit_length()) // 2
    lo = math.isqrt(_fix(x, 2 * s, False))
    hi = math.isqrt(_fix(x, 2 * s, True))
    hi += hi * hi < _fix(x, 2 * s, True)
    return _out(Q(lo, 1 << s), Q(hi, 1 << s))


# ---- interval helpers ----

def _smul(x: Q, e: Enc) -> Enc:
    return (x * e[0], x * e[1]) if x >= 0 else (x * e[1], x * e[0])


@lru_cache(maxsize=1 << 14)
def sigmoid_enc(x: Q) -> Enc:
    """1 / (1 + e^-x) for x >= 0; e^x / (1 + e^x) for x < 0 (both monotone in e^-|x|)."""
    if x >= 0:
        q = exp_enc(-x)
        return _out(1 / (1 + q[1]), 1 / (1 + q[0]))
    q = exp_enc(x)
    return _out(q[0] / (1 + q[0]), q[1] / (1 + q[1]))


def dsigmoid_enc(x: Q) -> Enc:
    """sigmoid'(x) = sigmoid(x) sigmoid(-x) (both factors positive)."""
    a, b = sigmoid_enc(x), sigmoid_enc(-x)
    return _out(a[0] * b[0], a[1] * b[1])


def tanh_enc(x: Q) -> Enc:
    """tanh, odd; for 0 <= x <= 1: m/(m+2) with m = expm1(2x) (relative precision near 0);
    for x > 1: (1-q)/(1+q) with q = e^-2x (both monotone in m, q)."""
    if x < 0:
        lo, hi = tanh_enc(-x)
        return -hi, -lo
    if x <= 1:
        m = expm1_pos(2 * x)
        return _out(m[0] / (m[0] + 2), m[1] / (m[1] + 2))
    q = exp_enc(-2 * x)
    return _out((1 - q[1]) / (1 + q[1]), (1 - q[0]) / (1 + q[0]))


def softplus_enc(x: Q) -> Enc:
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|)."""
    lo, hi = log1p_enc(exp_enc(-abs(x)))
    return _out(max(x, ZERO) + lo, max(x, ZERO) + hi)


def _gelu_v(x: Q) -> tuple[Q, Q]:
    """v = 2c(x + a x^3) and v' = 2c(1 + 3a x^2): gelu(x) = x sigmoid(v)."""
    return 2 * GELU_C * (x + GELU_A * x**3), 2 * GELU_C * (1 + 3 * GELU_A * x * x)


def _sum(*es: Enc) -> Enc:
    return _out(sum(e[0] for e in es), sum(e[1] for e in es))


# ---- the generic linear-bound algorithm ----

Piece = tuple[Q | None, Q | None, str]  # [p, q] (None: unbounded), kind: convex/concave/linear/unknown
_FLIP = {"convex": "concave", "concave": "convex", "linear": "linear", "unknown": "unknown"}


@dataclass(frozen=True)
class Row:
    """One scalar function: exact enclosures of f and f', convexity pieces, a float f' (hints)."""

    name: str
    f: Callable[..., Enc]
    df: Callable[..., Enc]
    fdf: Callable[..., float]  # float f', only to pick hint points (never trusted)
    pieces: Callable[..., list[Piece]]
    monotone: int | Callable[..., int] = 0  # +1 increasing, -1 decreasing, 0 neither (or f(**attrs))
    lip: Q = ZERO  # bound of |f'| on the "unknown" pieces
    domain: Callable[..., bool] = field(default=lambda l, u, **_: True)
    ival: Callable[..., Enc] | None = None  # intervals.py rule (piecewise-linear rows, square)
    ff: Callable[..., float] | None = None  # float f, only to choose slopes (never trusted)

    def mono(self, **attrs: Any) -> int:
        return self.monotone(**attrs) if callable(self.monotone) else self.monotone

    def _check(self, l: Any, u: Any, attrs: dict[str, Any]) -> tuple[Q, Q]:
        l, u = Q(l), Q(u)
        if l > u:
            raise DomainError(f"{self.name}: empty interval [{float(l):.6g}, {float(u):.6g}]")
        if not self.domain(l, u, **attrs):
            raise DomainError(f"{self.name}: interval [{float(l):.6g}, {float(u):.6g}] outside the domain")
        return l, u

    def value(self, x: Any, **attrs: Any) -> Enc:
        x, _ = self._check(x, x, attrs)
        return self.f(x, **attrs)

    def interval(self, l: Any, u: Any, **attrs: Any) -> Enc:
        l, u = self._check(l, u, attrs)
        if self.ival is not None and (r := self.ival(l, u, **attrs)) is not None:
            return Q(r[0]), Q(r[1])
        if mono := self.mono(**attrs):  # intervals.py's monotone rules (proved) on enclosures
            rule = intervals.interval_increasing if mono > 0 else intervals.interval_decreasing
            e_a, e_b = rule(lambda v: self.f(v, **attrs), (l, u))
            return e_a[0], e_b[1]
        return _min_g(self, l, u, ZERO, 1, attrs), -_min_g(self, l, u, ZERO, -1, attrs)

    def lower_intercept(self, l: Any, u: Any, a: Any, **attrs: Any) -> Q:
        l, u = self._check(l, u, attrs)
        return _min_g(self, l, u, Q(a), 1, attrs)

    def upper_intercept(self, l: Any, u: Any, a: Any, **attrs: Any) -> Q:
        l, u = self._check(l, u, attrs)
        return -_min_g(self, l, u, -Q(a), -1, attrs)

    def default_slopes(self, l: Any, u: Any, **attrs: Any) -> tuple[Q, Q]:
        """The deterministic choice of ``slopes.choose`` (chord, midpoint tangents, adaptive ReLU,
        auto_LiRPA's S-curve lines); the tangent at l when l == u."""
        return self.policy_slopes(slopes.POLICIES[0], l, u, **attrs)

    def policy_slopes(self, policy: str, l: Any, u: Any, **attrs: Any) -> tuple[Q, Q]:
        """``default_slopes`` under one of ``slopes.POLICIES`` (the first is the default)."""
        l, u = self._check(l, u, attrs)
        if l == u:
            d = _qf(self.fdf(_flt(l), **attrs))
            return d, d
        fl, fu = (sum(self.f(v, **attrs)) / 2 for v in (l, u))
        chord = (fu - fl) / (u - l)
        chord = Q(float(chord)) if abs(chord) < 2**1000 else _round(chord, False)  # short numbers
        return slopes.choose(self, l, u, chord, attrs, policy)


def _hint(row: Row, p: Q, q: Q, a: Q, s: int, attrs: dict[str, Any]) -> Q:
    """A point of [p, q] where s*f'(t) ~ a (s*f' is increasing there), by float bisection."""
    af, lo, hi = _flt(a), _flt(p), _flt(q)
    d = lambda x: s * row.fdf(x, **attrs)  # noqa: E731
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return q  # beyond binary64: any point is sound
    if d(lo) >= af:
        return p
    if d(hi) <= af:
        return q
    for _ in range(200):
        mid = (lo + hi) / 2
        if not lo < mid < hi:
            break
        lo, hi = (mid, hi) if d(mid) < af else (lo, mid)
    return min(max(Q(hi), p), q)


def _min_g(row: Row, l: Q, u: Q, a: Q, s: int, attrs: dict[str, Any]) -> Q:
    """A lower bound of min over [l, u] of s*f(x) - a*x (s = 1: lower intercept; s = -1: minus
    the upper intercept of slope -a)."""

    def g(x: Q) -> Q:  # lower enclosure of s*f(x) - a*x
        e = row.f(x, **attrs)
        return (e[0] if s > 0 else -e[1]) - a * x

    best: Q | None = None
    for p, q, kind in row.pieces(**attrs):
        p, q = l if p is None or p < l else p, u if q is None or q > u else q
        if p > q:
            continue
        kind = kind if s > 0 else _FLIP[kind]
        if kind in ("linear", "concave") or p == q:
            b = min(g(p), g(q))
        elif kind == "unknown":
            b = g(p) - (row.lip + abs(a)) * (q - p)
        else:
            t = _hint(row, p, q, a, s, attrs)
            d = row.df(t, **attrs)
            dlo, dhi = (d[0] - a, d[1] - a) if s > 0 else (-d[1] - a, -d[0] - a)
            b = g(t) + min(dlo * (p - t), dlo * (q - t), dhi * (p - t), dhi * (q - t))
        best = b if best is None or b < best else best
    assert best is not None  # the pieces cover the whole line
    return _round(best, False)


# ---- the rows ----

def _exact(v: Callable[[Q], Q]) -> Callable[..., Enc]:
    def enc(x: Q, **_: Any) -> Enc:
        y = v(x)
        return y, y
    return enc


def _slope(attrs: dict[str, Any]) -> Q:
    return Q(attrs.get("slope", 0.01))  # the spec's default: binary64 0.01, read exactly


def _leaky(x: Q, **attrs: Any) -> Enc:
    y = x if x > 0 else _slope(attrs) * x
    return y, y


def _leaky_df(x: Q, **attrs: Any) -> Enc:
    d = ONE if x > 0 else _slope(attrs)
    return d, d


def _leaky_ival(l: Q, u: Q, **attrs: Any) -> Enc | None:
    s = _slope(attrs)
    return intervals.interval_leaky_relu((l, u), s) if 0 <= s <= 1 else None


def _pieces(*spec: Any) -> Callable[..., list[Piece]]:
    """pieces from (kind, break, kind, break, ..., kind)."""
    kinds, breaks = spec[0::2], spec[1::2]
    bounds = [None, *breaks, None]
    out = [(bounds[i], bounds[i + 1], k) for i, k in enumerate(kinds)]
    return lambda **_: out


def _inflect(x0: tuple[Q, Q], inner: str, outer: str) -> Callable[..., list[Piece]]:
    c1, c2 = x0
    return _pieces(outer, -c2, "unknown", -c1, inner, c1, "unknown", c2, outer)


def _fsig(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _fdsig(x: float) -> float:
    e = math.exp(-abs(x))
    return e / (1 + e) ** 2


def _fgelu_d(x: float) -> float:
    c, a = float(GELU_C), float(GELU_A)
    v, dv = 2 * c * (x + a * x * x * x), 2 * c * (1 + 3 * a * x * x)
    return _fsig(v) + x * _fdsig(v) * dv if abs(v) < 700 else float(v > 0)


def _fgelu(x: float) -> float:
    c, a = float(GELU_C), float(GELU_A)
    return x * _fsig(2 * c * (x + a * x * x * x)) if abs(x) < 1e100 else max(x, 0.0)


def _gelu(x: Q, **_: Any) -> Enc:
    return _smul(x, sigmoid_enc(_gelu_v(x)[0]))


def _gelu_df(x: Q, **_: Any) -> Enc:
    v, dv = _gelu_v(x)
    return _sum(sigmoid_enc(v), _smul(x * dv, dsigmoid_enc(v)))


def _recip_d(x: Q, **_: Any) -> Enc:
    y = -1 / (x * x)
    return y, y


def _rsqrt(x: Q, **_: Any) -> Enc:
    lo, hi = sqrt_enc(x)
    return _out(1 / hi, 1 / lo)


def _rsqrt_d(x: Q, **_: Any) -> Enc:
    lo, hi = _rsqrt(x)
    return -hi / (2 * x), -lo / (2 * x)


def _sqrt_d(x: Q, **_: Any) -> Enc:
    lo, hi = sqrt_enc(x)
    return 1 / (2 * hi), 1 / (2 * lo)


def _fexp(x: float) -> float:
    return math.exp(min(x, 700.0))


def _pow_c(attrs: dict[str, Any]) -> Q:
    return Q(attrs.get("exponent", 2))  # the spec's default; a float exponent is read exactly


def _pow(x: Q, **attrs: Any) -> Enc:
    """x^c: exact for integer c; x^c = exp(c log x) for x > 0 otherwise (exp monotone)."""
    c = _pow_c(attrs)
    if c.denominator == 1:
        y = x ** int(c)
        return y, y
    lo, hi = _smul(c, log_enc(x))
    return exp_enc(lo)[0], exp_enc(hi)[1]


def _pow_df(x: Q, **attrs: Any) -> Enc:
    c = _pow_c(attrs)
    return _smul(c, _pow(x, exponent=c - 1))


def _fpow_d(x: float, **attrs: Any) -> float:
    c = float(_pow_c(attrs))
    try:
        return c * x ** (c - 1)
    except (OverflowError, ZeroDivisionError):
        return math.inf  # only guides the hint point


def _fpow(x: float, **attrs: Any) -> float:
    try:
        return x ** float(_pow_c(attrs))
    except (OverflowError, ZeroDivisionError):
        return math.inf  # only guides the slope choice


def _pow_pieces(**attrs: Any) -> list[Piece]:
    """integer n: x^n is linear for n in {0, 1}, convex for even n, concave then convex for odd
    n >= 3; for n < 0 (x != 0) convex on x > 0 and on x < 0 convex (n even) or concave (n odd).
    Other c (x > 0): convex for c > 1 or c < 0, concave for 0 < c < 1."""
    c = _pow_c(attrs)
    if c.denominator != 1:
        return _pieces("convex" if c > 1 or c < 0 else "concave")()
    if c in (0, 1):
        return _LIN()
    odd = c % 2 == 1
    if c > 0:
        return (_S_INV if odd else _ALL)()
    return _pieces("concave" if odd else "convex", ZERO, "convex")()


def _pow_domain(l: Q, u: Q, **attrs: Any) -> bool:
    c = _pow_c(attrs)
    if c.denominator != 1:
        return l > 0
    return c >= 0 or l > 0 or u < 0


def _pow_mono(**attrs: Any) -> int:
    c = _pow_c(attrs)
    if c.denominator != 1:
        return 1 if c > 0 else -1
    return 1 if c % 2 == 1 and c > 0 else 0


_pos = lambda l, u, **_: l > 0  # noqa: E731
_ALL = _pieces("convex")
_LIN = _pieces("linear", ZERO, "linear")
_S = _pieces("convex", ZERO, "concave")
_S_INV = _pieces("concave", ZERO, "convex")

FUNCTIONS: dict[str, Row] = {r.name: r for r in [
    Row("relu", _exact(lambda x: max(x, ZERO)), _exact(lambda x: ONE if x > 0 else ZERO),
        lambda x: float(x > 0), _LIN, 1, ival=lambda l, u: intervals.interval_relu((l, u))),
    Row("leaky_relu", _leaky, _leaky_df, lambda x, **k: 1.0 if x > 0 else float(k.get("slope", 0.01)),
        _LIN, 0, ival=_leaky_ival),
    Row("abs", _exact(abs), _exact(lambda x: ONE if x > 0 else -ONE), lambda x: 1.0 if x > 0 else -1.0,
        _LIN, ival=lambda l, u: intervals.interval_abs((l, u))),
    Row("square", _exact(lambda x: x * x), _exact(lambda x: 2 * x), lambda x: 2 * x, _ALL,
        ival=lambda l, u: intervals.interval_square((l, u))),
    Row("reciprocal", _exact(lambda x: 1 / x), _recip_d, lambda x: -1 / (x * x) if x else -math.inf,
        _pieces("concave", ZERO, "convex"), -1, domain=lambda l, u, **_: l > 0 or u < 0),
    Row("exp", lambda x, **_: exp_enc(x), lambda x, **_: exp_enc(x), _fexp, _ALL, 1,
        domain=lambda l, u, **_: u <= EXP_MAX),
    Row("log", lambda x, **_: log_enc(x), _exact(lambda x: 1 / x), lambda x: 1 / x if x > 0 else math.inf,
        _pieces("concave"), 1, domain=_pos),
    Row("sqrt", lambda x, **_: sqrt_enc(x), _sqrt_d, lambda x: 0.5 / math.sqrt(x) if x > 0 else math.inf,
        _pieces("concave"), 1, domain=lambda l, u, **_: l >= 0),
    Row("rsqrt", _rsqrt, _rsqrt_d, lambda x: -0.5 * x**-1.5 if x > 0 else -math.inf, _ALL, -1, domain=_pos),
    Row("tanh", lambda x, **_: tanh_enc(x), lambda x, **_: _smul(Q(4), dsigmoid_enc(2 * x)),
        lambda x: 4 * _fdsig(2 * x), _S, 1, ff=math.tanh),
    Row("sigmoid", lambda x, **_: sigmoid_enc(x), lambda x, **_: dsigmoid_enc(x), _fdsig, _S, 1, ff=_fsig),
    Row("softplus", lambda x, **_: softplus_enc(x), lambda x, **_: sigmoid_enc(x), _fsig, _ALL, 1),
    Row("silu", lambda x, **_: _smul(x, sigmoid_enc(x)),
        lambda x, **_: _sum(sigmoid_enc(x), _smul(x, dsigmoid_enc(x))),
        lambda x: _fsig(x) + x * _fdsig(x), _inflect(SILU_X0, "convex", "concave"), lip=Q(2),
        ff=lambda x: x * _fsig(x)),
    Row("gelu", _gelu, _gelu_df, _fgelu_d, _inflect(GELU_X0, "convex", "concave"), lip=Q(3), ff=_fgelu),
    Row("pow", _pow, _pow_df, _fpow_d, _pow_pieces, _pow_mono, domain=_pow_domain, ff=_fpow),
]}
