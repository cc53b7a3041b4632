"""Rigorous rational enclosures of exp, log, sqrt, tanh, sigmoid, softplus, erf at rational points
(the function rows of ``functions.py`` are built on them). Standard library only.

Soundness: exp(x) = 2^k exp(r) with r = x - k ln2 in [0, 1) and expm1 / atanh
(log(x) = k ln2 + 2 atanh((m-1)/(m+1)), log1p(y) = 2 atanh(y/(2+y))) are summed as Taylor series
of non-negative terms in fixed point, each term derived from the previous one by floor (ceil)
division, so every computed term is below (above) the true one; the sum stops once a term is at most
one unit and the upper sum adds that term again, which bounds the tail (term ratios are <= 1/2 for
exp with r <= 2 and <= 1/8 for atanh with z <= 1/3). The fixed-point precision grows with 1/|x| so
small arguments keep relative precision. Every other enclosure is monotone interval arithmetic on
these.
erf (``erf_enc``): erf(x) = (2/sqrt(pi)) e^(-x^2) S(x), S(x) = sum_n 2^n x^(2n+1) / (1·3·...·(2n+1))
(Abramowitz & Stegun 7.1.6: positive terms, so no cancellation), summed like exp's series once the
term ratio 2x^2/(2n+3) is <= 1/2 (the tail is then <= the last term), for 0 < x <= 10; beyond,
1 - e^(-x^2)/(x sqrt(pi)) < erf(x) < 1 (A&S 7.1.13); odd. 2/sqrt(pi) is enclosed by two 40-digit
decimals (TWO_OVER_SQRT_PI, tested against mpmath at 60 digits).
Each ``*_enc(x)`` returns (lo, hi) with lo <= f(x) <= hi, dyadic, relative width about 2^-90.
Large magnitudes: exp(x) is refused for x > EXP_MAX, a size guard, not a domain rule: above
it e^x is still a dyadic of about 1.44 x bits (0.03 ms per operation at x = 10^4, 0.1 ms at 10^5),
so softmax's sums exp(x_j - x_i) on wide boxes stay exact; for x < -EXP_LOW it is enclosed by
[0, exp(-EXP_LOW)] (monotonicity; short numbers for sigmoid, tanh, softplus on any interval).
"""

from __future__ import annotations

import math
from fractions import Fraction as Q
from functools import cache, lru_cache

from .core import Rejected

W = 96  # working precision (bits) of enclosures
EXP_MAX = 2**16  # exp(x) refused above (its enclosure would be a number of over 94,000 bits)
EXP_LOW = 1000  # below -EXP_LOW, exp(x) is enclosed by [0, exp(-EXP_LOW)]
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
    """Enclosure of e^x (x <= EXP_MAX; below -EXP_LOW: [0, e^-EXP_LOW])."""
    if x > EXP_MAX:
        raise DomainError(f"exp argument {float(x):.6g} above EXP_MAX = {EXP_MAX}")
    if x < -EXP_LOW:
        return ZERO, exp_enc(Q(-EXP_LOW))[1]
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


#: 2/sqrt(pi) lies strictly between these (40 significant digits; tests compare them with mpmath)
TWO_OVER_SQRT_PI = (Q("1.128379167095512573896158903121545171688"),
                    Q("1.128379167095512573896158903121545171689"))
ERF_SERIES_MAX = 10  # erf by its series up to |x| <= 10; beyond, erfc(x) < e^-100 / (10 sqrt(pi))


def _erf_series(x: Q, w: int, up: bool) -> int:
    """S(x) = sum_n t_n scaled by 2^w, t_0 = x, t_{n+1} = t_n 2x^2 / (2n + 3), x > 0; each term
    floored (ceiled) from the previous one; stops at a term <= 1 unit once the ratio is <= 1/2,
    the upper sum adding that term again for the tail (geometric, ratio <= 1/2)."""
    x2 = x * x
    num, den = 2 * x2.numerator, x2.denominator
    t, s, n = _fix(x, w, up), 0, 0
    while True:
        s += t
        if t <= 1 and 4 * x2 <= 2 * n + 3:
            return s + t if up else s
        t = _div(t * num, den * (2 * n + 3), up)
        n += 1


@lru_cache(maxsize=1 << 14)
def erf_enc(x: Q) -> Enc:
    """Enclosure of erf(x) (odd, increasing; see the module docstring)."""
    if x < 0:
        lo, hi = erf_enc(-x)
        return -hi, -lo
    if x == 0:
        return ZERO, ZERO
    klo, khi = TWO_OVER_SQRT_PI
    elo, ehi = exp_enc(-x * x)
    if x > ERF_SERIES_MAX:  # erfc(x) < e^-x^2 / (x sqrt(pi)) = (2/sqrt(pi)) e^-x^2 / (2x)
        return _out(1 - khi * ehi / (2 * x), ONE)
    w = _prec(min(x, ONE))
    slo, shi = Q(_erf_series(x, w, False), 1 << w), Q(_erf_series(x, w, True), 1 << w)
    return _out(klo * elo * slo, min(khi * ehi * shi, ONE))


def derf_enc(x: Q) -> Enc:
    """erf'(x) = (2/sqrt(pi)) e^(-x^2) (positive)."""
    elo, ehi = exp_enc(-x * x)
    return _out(TWO_OVER_SQRT_PI[0] * elo, TWO_OVER_SQRT_PI[1] * ehi)
