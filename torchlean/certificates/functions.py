"""Scalar function rows of the bound table: rigorous enclosures and sound linear bounds.

``FUNCTIONS[name]`` is one ``Row`` per elementwise nonlinearity (relu, leaky_relu, abs, exp, log,
sqrt, rsqrt, reciprocal, square, pow (attr ``exponent``), tanh, erf, sigmoid, softplus, gelu, silu),
with the meanings of
``torchlean/spec/elementwise.py`` (gelu in its tanh form, written x * sigmoid(2c(x + a x^3)) since
1 + tanh(y) = 2 sigmoid(2y); c and a are the binary64 constants of ``spec/constants.py`` read
exactly). Every number is a ``Fraction``; standard library only.

API (all methods take ``**attrs``, e.g. ``slope`` for leaky_relu):
- ``value(x) -> (lo, hi)``: lo <= f(x) <= hi; dyadic, relative width about 2^-90 (except where an
  argument of exp is clamped, see EXP_LOW).
- ``interval(l, u)``: encloses f over [l, u]; monotone rows apply ``intervals.interval_increasing``
  / ``interval_decreasing`` to their enclosures at the endpoints, relu, leaky_relu, abs and square
  their own rules, all from ``intervals.py`` (the rules ``proofs/ibp.py`` proves: ``ibp.<row>``);
  silu, gelu and non-monotone pow take slope 0 in the algorithm below (``ibp.NOT_PROVED``).
- ``lower_intercept(l, u, a) -> b`` with a*x + b <= f(x) on [l, u] for ANY rational a;
  ``upper_intercept`` the mirror (f(x) <= a*x + b).
- ``policy_slopes(policy, l, u) -> (a_lower, a_upper)``: the checker's deterministic choice.
- Domain violations (l > u, log/rsqrt with l <= 0, sqrt with l < 0, reciprocal over 0, exp above
  EXP_MAX) raise ``DomainError``.

Soundness. Enclosures: ``enclosures.py`` (series with directed rounding); every other enclosure
is monotone interval arithmetic on these. Linear bounds use ONE generic algorithm over the row's
convexity pieces (``min_g``, written once over a number domain: ``EXACT`` here, the fast rows'
``fast_functions.FAST_D``): for g = f - a*x,
 - convex piece [p, q], any t in it: g(x) >= g(t) + g'(t)(x - t), so min g >= g_lo(t) + the least
   corner of [g'_lo(t), g'_hi(t)] x [p - t, q - t]; t solves f'(t) = a in floats (any t is sound,
   this one makes the bound tight to ~1e-15);
 - concave or linear piece: the minimum is at an endpoint;
 - an "unknown" piece (a float-wide bracket around an irrational inflection point):
   g(x) >= g_lo(p) - (Lip + |a|)(q - p), Lip a bound of |f'| (silu: 1 + 1/e < 2, since
   |x sigmoid'(x)| <= |x| e^-|x| <= 1/e; gelu: 1 + 3/e < 3, since |x v'| <= 3|v| for
   v = 2c(x + a x^3) and sigmoid'(v) <= e^-|v|).
The upper intercept is the same algorithm on -f (convex and concave swap). Inflection points:
tanh, erf and sigmoid change curvature at 0 (f'' = -2 tanh sech^2, erf'' = -2x erf',
sigmoid'' = sigmoid' (1 - 2 sigmoid));
silu'' = sigmoid'(x) (2 - x tanh(x/2)), and x tanh(x/2) is even and increasing in |x|, so silu is
convex exactly on [-x0, x0] with x0 = 2.39935728... in (SILU_X0); gelu'' = sigmoid'(v) H(x) with
H = 2v' + x v'' - x v'^2 tanh(v/2) even, H > 0 on [0, x0) and H < 0 beyond, x0 = 1.41850400... in
(GELU_X0): for x >= 3, x v' tanh(v/2) >= 10.5 so H <= -8.5 v' + 12 c a x^2 < 0, and on [0, 3] the
sign pattern is checked in exact arithmetic (``check_gelu_signs``: a cover of [0, 3] minus the
bracket by sub-intervals on which an enclosure of H has one sign; likewise the silu bracket's ends
and the 10.5 at x = 3), once per process before the pieces are first used.

Design notes: the series run on Python integers in fixed point (one floor or ceil per operation)
rather than on Fraction intervals: ~10x faster, and the directed-rounding argument is one line.
The inflection brackets are two adjacent binary64 numbers, so the fast sibling reads the very same
pieces with no rounding of its own. Degenerate pieces (p = q) are evaluated directly.

Large magnitudes: exp(x) is refused for x > EXP_MAX = 2^16 (a size guard: below it e^x is an exact
dyadic of ~1.44 x bits, cheap; softmax's exp(x_j - x_i) on a trained attention's box reaches
x ~ 1,300); for x < -EXP_LOW = -1000 it is enclosed by [0, exp(-EXP_LOW)] (monotonicity), so
sigmoid, tanh, softplus, silu and gelu work on any interval, e.g. [-1e6, 1e6], with short numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from fractions import Fraction as Q
from functools import cache
from types import SimpleNamespace
from typing import Any

from . import intervals, slopes
from .core import Rejected
from .enclosures import (  # noqa: F401  (DomainError: re-exported for the fast rows)
    EXP_MAX,
    ONE,
    ZERO,
    DomainError,
    Enc,
    _out,
    _round,
    _smul,
    derf_enc,
    dsigmoid_enc,
    erf_enc,
    exp_enc,
    log_enc,
    sigmoid_enc,
    softplus_enc,
    sqrt_enc,
    tanh_enc,
)
from .slopes import flt as _flt
from .slopes import qf as _qf

GELU_C, GELU_A = Q(0.7978845608028654), Q(0.044715)  # spec/constants.py, exactly
SILU_X0 = (Q(float.fromhex("0x1.331e23ad9de11p+1")), Q(float.fromhex("0x1.331e23ad9de12p+1")))
GELU_X0 = (Q(float.fromhex("0x1.6b23142700629p+0")), Q(float.fromhex("0x1.6b2314270062ap+0")))

def _gelu_v(x: Q) -> tuple[Q, Q]:
    """v = 2c(x + a x^3) and v' = 2c(1 + 3a x^2): gelu(x) = x sigmoid(v)."""
    return 2 * GELU_C * (x + GELU_A * x**3), 2 * GELU_C * (1 + 3 * GELU_A * x * x)


def _sum(*es: Enc) -> Enc:
    return _out(sum(e[0] for e in es), sum(e[1] for e in es))


# ---- the generic linear-bound algorithm ----

Piece = tuple[Q | None, Q | None, str]  # [p, q] (None: unbounded), kind: convex/concave/linear/unknown
_FLIP = {"convex": "concave", "concave": "convex", "linear": "linear", "unknown": "unknown"}


class Lines:
    """The line methods of ``Row`` and ``fast_functions.FastRow``: the generic algorithm below, in
    the number domain and on the row and inputs that the class's ``_read`` returns (checked)."""

    def lower_intercept(self, l: Any, u: Any, a: Any, **attrs: Any) -> Any:
        return self._run(lambda D, row, l, u, a: min_g(D, row, l, u, a, 1, attrs), attrs, l, u, a)

    def upper_intercept(self, l: Any, u: Any, a: Any, **attrs: Any) -> Any:
        return -self._run(lambda D, row, l, u, a: min_g(D, row, l, u, -a, -1, attrs), attrs, l, u, a)

    def policy_slopes(self, policy: str, l: Any, u: Any, **attrs: Any) -> tuple[Any, Any]:
        """``slopes.choose`` under one of ``slopes.POLICIES`` (the first the default: chord, midpoint
        tangents, adaptive ReLU, auto_LiRPA's S-curve lines); the tangent at l when l == u."""
        return self._run(lambda D, row, l, u: slopes.choose(D, row, policy, l, u, attrs), attrs, l, u)

    def _run(self, fn: Callable[..., Any], attrs: dict[str, Any], *xs: Any) -> Any:
        D, row, *xs = self._read(attrs, *xs)  # type: ignore[attr-defined]
        with D.quiet():
            return fn(D, row, *xs)


@dataclass(frozen=True)
class Row(Lines):
    """One scalar function: exact enclosures of f and f', convexity pieces, a float f' (hints)."""

    name: str
    f: Callable[..., Enc]
    df: Callable[..., Enc]
    fdf: Callable[..., float]  # float f', only to pick hint points (never trusted)
    pieces: Callable[..., list[Piece]]
    monotone: int | Callable[..., int] = 0  # +1 increasing, -1 decreasing, 0 neither (or f(**attrs))
    lip: Q = ZERO  # bound of |f'| on the "unknown" pieces
    #: [l, u] inside the domain; written with | and comparisons only, so that the fast rows apply
    #: the same rule to numpy arrays elementwise
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

    def _read(self, attrs: dict[str, Any], l: Any, u: Any, *a: Any) -> tuple[Any, ...]:
        return EXACT, self, *self._check(l, u, attrs), *map(Q, a)

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
        return self.lower_intercept(l, u, 0, **attrs), self.upper_intercept(l, u, 0, **attrs)


def min_g(D: Any, row: Any, l: Any, u: Any, a: Any, s: int, attrs: dict[str, Any]) -> Any:
    """A lower bound of min over [l, u] of s*f(x) - a*x (s = 1: lower intercept; s = -1: minus the
    upper intercept of slope -a) in the numbers of ``D`` (``EXACT``; ``fast_functions.FAST_D``,
    elementwise), piece by piece; a piece that misses [l, u] in some elements is not taken there."""
    def g(x: Any) -> Any:
        return D.g(row, x, a, s, attrs)

    best = None
    for p0, q0, kind in row.pieces(**attrs):
        p = l if p0 is None else D.maximum(l, D.num(p0))
        q = u if q0 is None else D.minimum(u, D.num(q0))
        act = p <= q
        if not D.active(act):
            continue
        p, q = D.where(act, p, l), D.where(act, q, l)
        kind = kind if s > 0 else _FLIP[kind]
        if kind in ("linear", "concave"):
            b = D.minimum(g(p), g(q))
        elif kind == "unknown":
            b = D.add_down(g(p), -(D.num(row.lip) + abs(a)) * (q - p))
        else:  # convex; a point piece directly (f' may be unbounded there: sqrt's at 0)
            b = D.where(p == q, lambda: g(p), lambda: _tangent(D, row, p, q, a, s, attrs))  # noqa: B023
        best = D.take(best, act, b)
    assert best is not None  # the pieces cover the whole line
    return D.finish(best)


def _tangent(D: Any, row: Any, p: Any, q: Any, a: Any, s: int, attrs: dict[str, Any]) -> Any:
    """min over a convex piece [p, q] of g = s*f - a*x >= g(t) + the least corner of g'(t) x
    [p - t, q - t], at the hint t (``_hint``; the bound holds for any t in [p, q])."""
    t = _hint(D, row, p, q, a, s, attrs)
    dl, dh = D.dg(row, t, a, s, attrs)
    c = D.minimum(D.minimum(dl * (p - t), dl * (q - t)), D.minimum(dh * (p - t), dh * (q - t)))
    return D.add_down(D.g(row, t, a, s, attrs), c)


def _hint(D: Any, row: Any, p: Any, q: Any, a: Any, s: int, attrs: dict[str, Any]) -> Any:
    """A point of [p, q] where s*f'(t) ~ a (s*f' increases there) on the float f' (``D.fdf``, never
    trusted): an end where s*f' - a has one sign on [p, q], else float bisection, for 80 steps or
    until every bracket is two adjacent floats; clipped into [p, q] (q at q's float or beyond binary64)."""

    def d(x: Any) -> Any:
        return s * D.fdf(row, x, attrs)

    lo, hi, af = D.flt(p), D.flt(q), D.flt(a)
    lo, hi = D.where(d(hi) <= af, hi, lo), D.where(d(lo) >= af, lo, hi)
    for _ in range(80):
        mid = lo + (hi - lo) / 2
        if not D.active((lo < mid) & (mid < hi)):
            break
        below = d(mid) < af
        lo, hi = D.where(below, mid, lo), D.where(below, hi, mid)
    return D.clip(hi, p, q)


def _g(row: Row, x: Q, a: Q, s: int, attrs: dict[str, Any]) -> Q:
    e = row.f(x, **attrs)  # lower enclosure of s*f(x) - a*x
    return (e[0] if s > 0 else -e[1]) - a * x


def _dg(row: Row, t: Q, a: Q, s: int, attrs: dict[str, Any]) -> Enc:
    d = row.df(t, **attrs)  # encloses s*f'(t) - a
    return (d[0] - a, d[1] - a) if s > 0 else (-d[1] - a, -d[0] - a)


def _call(v: Any) -> Any:
    return v() if callable(v) else v


def _chord(row: Row, l: Q, u: Q, attrs: dict[str, Any]) -> Q:
    fl, fu = (sum(row.f(v, **attrs)) / 2 for v in (l, u))
    chord = (fu - fl) / (u - l)
    return Q(float(chord)) if abs(chord) < 2**1000 else _round(chord, False)  # short numbers


#: the exact domain of ``min_g`` and ``slopes.choose``: Fractions, exact arithmetic, one element (a
#: mask is a bool); the slope choice's floats (``ff``, ``fdf``) are read exactly at the end
EXACT = SimpleNamespace(
    maximum=max, minimum=min, num=lambda x: x, active=bool, where=lambda c, a, b: _call(a if c else b),
    g=_g, dg=_dg, add_down=lambda x, y: x + y, flt=_flt, fdf=lambda row, x, attrs: row.fdf(x, **attrs),
    # (q at q's float: where p and q share one, e.g. [0, 10^-400], a hint clipped to p meets sqrt's f' = inf)
    clip=lambda x, p, q: min(max(Q(x), p), q) if math.isfinite(x) and x != _flt(q) else q,
    take=lambda best, act, b: b if best is None else min(best, b), finish=lambda b: _round(b, False),
    ff=lambda row, x, attrs: row.ff(x, **attrs), chord=_chord, finite=math.isfinite,
    put=lambda sel, cur, fn: fn(lambda x: x), slope=lambda x: _qf(x) if isinstance(x, float) else Q(x),
    quiet=nullcontext)


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


def _rule(name: str) -> Callable[..., Enc]:
    """A row's interval that is exactly the ``intervals.py`` rule ``name`` on exact values (looked up
    there when run); ``.rule`` names it, so ``proofs/ibp.py`` states the rule the row runs."""
    ival: Any = lambda l, u, **_: getattr(intervals, name)((l, u))  # noqa: E731
    ival.rule = name
    return ival


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
    pieces = _pieces(outer, -c2, "unknown", -c1, inner, c1, "unknown", c2, outer)
    return lambda **_: (inflections_checked(), pieces())[1]  # the signs are checked once first


def _gelu_h(p: Q, q: Q) -> Enc:
    """H(x) = 2v' + x v'' - x v'^2 tanh(v/2) over 0 <= p <= x <= q (gelu'' = sigmoid'(v) H): there
    2v' + x v'' = 2v' + 12ca x^2 and x, v', tanh(v/2) >= 0 all increase, so ends bound each term."""
    (vp, dp), (vq, dq), k = _gelu_v(p), _gelu_v(q), 12 * GELU_C * GELU_A
    tp, tq = max(tanh_enc(vp / 2)[0], ZERO), tanh_enc(vq / 2)[1]
    return 2 * dp + k * p * p - q * dq * dq * tq, 2 * dq + k * q * q - p * dp * dp * tp


def check_gelu_signs(x0: tuple[Q, Q] = GELU_X0, end: Q = Q(3), finest: Q = Q(1, 1 << 200)) -> int:
    """H > 0 on [0, x0[0]] and H < 0 on [x0[1], end], by bisection into sub-intervals whose exact
    enclosure (``_gelu_h``) has that sign; and 3 v'(3) tanh(v(3)/2) >= 10.5, the premise of the
    argument for x >= 3 (module docstring; the product increases with x). Returns the number of
    sub-intervals; raises Rejected when a sign cannot be shown."""
    v3, d3 = _gelu_v(Q(3))
    if 3 * d3 * tanh_enc(v3 / 2)[0] < Q(21, 2):
        raise Rejected("gelu: x v' tanh(v/2) >= 10.5 at x = 3 not shown")
    todo, n = [(ZERO, x0[0], 1), (x0[1], end, -1)], 0
    while todo:
        p, q, s = todo.pop()
        lo, hi = _gelu_h(p, q)
        if lo > 0 if s > 0 else hi < 0:
            n += 1
        elif q - p < finest:
            raise Rejected(f"gelu: sign of gelu'' near {float(p):.17g} not shown")
        else:
            todo += [(p, (p + q) / 2, s), ((p + q) / 2, q, s)]
    return n


def check_silu_signs(x0: tuple[Q, Q] = SILU_X0) -> None:
    """silu'' = sigmoid'(x) (2 - x tanh(x/2)), and x tanh(x/2) increases in |x|: one sign change at
    +-x0, shown by 2 - x tanh(x/2) > 0 at x0[0] and < 0 at x0[1] (exact enclosures)."""
    if not (2 - x0[0] * tanh_enc(x0[0] / 2)[1] > 0 > 2 - x0[1] * tanh_enc(x0[1] / 2)[0]):
        raise Rejected("silu: inflection bracket not shown")


@cache
def inflections_checked() -> int:
    """The sign facts the silu and gelu pieces rest on, checked once per process (~0.1 s)."""
    check_silu_signs()
    return check_gelu_signs()


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


def _rsqrt(x: Q, **_: Any) -> Enc:
    lo, hi = sqrt_enc(x)
    return _out(1 / hi, 1 / lo)


def _rsqrt_d(x: Q, **_: Any) -> Enc:
    lo, hi = _rsqrt(x)
    return -hi / (2 * x), -lo / (2 * x)


def _sqrt_d(x: Q, **_: Any) -> Enc:
    lo, hi = sqrt_enc(x)
    return 1 / (2 * hi), 1 / (2 * lo)


#: the largest exact power ``_pow`` computes, in bits of numerator or denominator (~1 MB)
POW_BITS = 1 << 23


def _pow_c(attrs: dict[str, Any]) -> Q:
    return Q(attrs.get("exponent", 2))  # the spec's default; a float exponent is read exactly


def _pow(x: Q, **attrs: Any) -> Enc:
    """x^c: exact for integer c; x^c = exp(c log x) for x > 0 otherwise (exp monotone)."""
    c = _pow_c(attrs)
    if c.denominator == 1:
        # (a result past POW_BITS bits is refused, not computed: exponent 2^53 + 1 near -1 made the
        # exact column run for ever, past any deadline, audit27)
        n = int(c)
        bits = abs(n) * max(x.numerator.bit_length(), x.denominator.bit_length())
        if bits > POW_BITS and x not in (-1, 0, 1):
            raise Rejected(f"pow: x^{n} at x = {float(x):.6g} is too large to compute exactly")
        y = x ** n
        return y, y
    lo, hi = _smul(c, log_enc(x))
    return exp_enc(lo)[0], exp_enc(hi)[1]


def _pow_df(x: Q, **attrs: Any) -> Enc:
    c = _pow_c(attrs)
    return _smul(c, _pow(x, exponent=c - 1))


def _fpow(x: float, **attrs: Any) -> float:
    try:
        return x ** float(_pow_c(attrs))
    except (OverflowError, ZeroDivisionError):
        return math.inf  # only guides the slope choice and the hint point


def _fpow_d(x: float, **attrs: Any) -> float:
    c = float(_pow_c(attrs))
    return c * _fpow(x, exponent=c - 1)


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
    return l > 0 if c.denominator != 1 else (c >= 0) | (l > 0) | (u < 0)


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
        lambda x: float(x > 0), _LIN, 1, ival=_rule("interval_relu")),
    Row("leaky_relu", _leaky, _leaky_df, lambda x, **k: 1.0 if x > 0 else float(k.get("slope", 0.01)),
        _LIN, 0, ival=_leaky_ival),
    Row("abs", _exact(abs), _exact(lambda x: ONE if x > 0 else -ONE), lambda x: 1.0 if x > 0 else -1.0,
        _LIN, ival=_rule("interval_abs")),
    Row("square", _exact(lambda x: x * x), _exact(lambda x: 2 * x), lambda x: 2 * x, _ALL,
        ival=_rule("interval_square")),
    Row("reciprocal", _exact(lambda x: 1 / x), _exact(lambda x: -1 / (x * x)),
        lambda x: -1 / (x * x) if x * x else -math.inf, _pieces("concave", ZERO, "convex"), -1,
        domain=lambda l, u, **_: (l > 0) | (u < 0)),
    Row("exp", lambda x, **_: exp_enc(x), lambda x, **_: exp_enc(x), lambda x: math.exp(min(x, 700.0)),
        _ALL, 1, domain=lambda l, u, **_: u <= EXP_MAX),
    Row("log", lambda x, **_: log_enc(x), _exact(lambda x: 1 / x), lambda x: 1 / x if x > 0 else math.inf,
        _pieces("concave"), 1, domain=_pos),
    Row("sqrt", lambda x, **_: sqrt_enc(x), _sqrt_d, lambda x: 0.5 / math.sqrt(x) if x > 0 else math.inf,
        _pieces("concave"), 1, domain=lambda l, u, **_: l >= 0),
    Row("rsqrt", _rsqrt, _rsqrt_d, lambda x: -0.5 * x**-1.5 if x > 2**-682 else -math.inf, _ALL, -1,
        domain=_pos),  # (x^-1.5 overflows below 2^-682: a float OverflowError, i.e. a refusal)
    Row("tanh", lambda x, **_: tanh_enc(x), lambda x, **_: _smul(Q(4), dsigmoid_enc(2 * x)),
        lambda x: 4 * _fdsig(2 * x), _S, 1, ff=math.tanh),
    Row("erf", lambda x, **_: erf_enc(x), lambda x, **_: derf_enc(x),
        lambda x: 2 / math.sqrt(math.pi) * math.exp(-min(x * x, 745.0)), _S, 1, ff=math.erf),
    Row("sigmoid", lambda x, **_: sigmoid_enc(x), lambda x, **_: dsigmoid_enc(x), _fdsig, _S, 1, ff=_fsig),
    Row("softplus", lambda x, **_: softplus_enc(x), lambda x, **_: sigmoid_enc(x), _fsig, _ALL, 1),
    Row("silu", lambda x, **_: _smul(x, sigmoid_enc(x)),
        lambda x, **_: _sum(sigmoid_enc(x), _smul(x, dsigmoid_enc(x))),
        lambda x: _fsig(x) + x * _fdsig(x), _inflect(SILU_X0, "convex", "concave"), lip=Q(2),
        ff=lambda x: x * _fsig(x)),
    Row("gelu", _gelu, _gelu_df, _fgelu_d, _inflect(GELU_X0, "convex", "concave"), lip=Q(3), ff=_fgelu),
    Row("pow", _pow, _pow_df, _fpow_d, _pow_pieces, _pow_mono, domain=_pow_domain, ff=_fpow),
]}
