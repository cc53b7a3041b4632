"""Float64 sibling of ``functions.py``: the same rows and the same generic algorithm, vectorised.

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
from typing import Any

import numpy as np

from .functions import _FLIP, FUNCTIONS, GELU_A, GELU_C, DomainError
from .slopes import POLICIES, s_curve

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
class FastRow:
    name: str

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
            zero = np.zeros_like(l)
            lo, hi = _min_g(self, l, u, zero, 1, attrs), -_min_g(self, l, u, zero, -1, attrs)
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

    def lower_intercept(self, l: Any, u: Any, a: Any, **attrs: Any) -> Arr:
        l, u, a = self._args(l, u, a)
        self._check(l, u, attrs)
        return _min_g(self, l, u, a, 1, attrs)

    def upper_intercept(self, l: Any, u: Any, a: Any, **attrs: Any) -> Arr:
        l, u, a = self._args(l, u, a)
        self._check(l, u, attrs)
        return -_min_g(self, l, u, -a, -1, attrs)

    def policy_slopes(self, policy: str, l: Any, u: Any, **attrs: Any) -> Pair:
        """The exact row's ``policy_slopes`` in floats (the default: chord, midpoint tangents, adaptive
        relu-like, the S-curve rule where [l, u] meets one convex and one concave piece)."""
        l, u = self._args(l, u)
        self._check(l, u, attrs)
        with np.errstate(all="ignore"):
            fl, fu = (_F[self.name][0](x, **attrs)[0] for x in (l, u))
            m = l + (u - l) / 2
            tangent = _F[self.name][1](m, **attrs)[0]
            chord = np.where(u > l, (fu - fl) / (u - l), tangent)
        kinds = np.full(l.shape, 0)  # bit 1: meets a convex piece, 2: concave, 4: other
        for p, q, kind in _pieces(self.name, attrs):
            meets = (p < u) & (q > l)
            kinds |= meets * {"convex": 1, "concave": 2}.get(kind, 4)
        lo = np.where(kinds == 1, tangent, chord)
        up = np.where(kinds == 2, tangent, chord)
        if self.name in ("relu", "leaky_relu"):
            alt = attrs.get("slope", 0.01) if self.name == "leaky_relu" else 0.0
            lo = np.where((l < 0) & (0 < u), np.where(u >= -l, 1.0, alt), lo)
        if FUNCTIONS[self.name].ff is not None and policy == POLICIES[0]:
            self._s_curves(l, u, chord, lo, up, attrs)
        return _finite_or(lo, 0.0), _finite_or(up, 0.0)

    def _s_curves(self, l: Arr, u: Arr, chord: Arr, lo: Arr, up: Arr, attrs: dict[str, Any]) -> None:
        """``slopes.choose``'s S-curve rule, in place, where [l, u] meets exactly one convex and
        one concave piece (the "unknown" brackets left out, as ``slopes.two_pieces``)."""
        ps = [pc for pc in _pieces(self.name, attrs) if pc[2] != "unknown"]
        meets = [(p < u) & (q > l) for p, q, _ in ps]
        count = sum(m * 1 for m in meets)
        f = lambda x: _F[self.name][0](x, **attrs)[0]  # noqa: E731
        df = lambda x: _F[self.name][1](x, **attrs)[0]  # noqa: E731
        for j in range(len(ps) - 1):
            if {ps[j][2], ps[j + 1][2]} != {"convex", "concave"}:
                continue
            sel = (count == 2) & meets[j] & meets[j + 1] & np.isfinite(chord)
            if sel.any():
                c = np.full(int(sel.sum()), ps[j][1])
                with np.errstate(all="ignore"):
                    lo[sel], up[sel] = s_curve(f, df, l[sel], c, u[sel], chord[sel], ps[j][2] == "convex",
                                               np.where)


def _pieces(name: str, attrs: dict[str, Any]) -> list[tuple[float, float, str]]:
    return [(-np.inf if p is None else float(p), np.inf if q is None else float(q), k)
            for p, q, k in FUNCTIONS[name].pieces(**attrs)]


def _min_g(row: FastRow, l: Arr, u: Arr, a: Arr, s: int, attrs: dict[str, Any]) -> Arr:
    """Lower bound of min over [l, u] of s*f(x) - a*x, elementwise (functions._min_g in floats)."""

    def g(x: Arr) -> Arr:
        fx = row._f(x, attrs, s < 0) * s
        ax = a * x
        err = (np.abs(fx) + np.abs(ax)) * R + TINY
        if row.name in _EXACT_F:  # f(x) exact and a in {0, 1, -1}: a*x and fx - ax (0, +-x or
            # +-2x) are exact, so a stable ReLU's line is exact (the engines skip such elements)
            err = np.where((a == 0) | (np.abs(a) == 1), 0.0, err)
        return fx - ax - err

    best = np.full(l.shape, np.inf)
    with np.errstate(all="ignore"):
        for p0, q0, kind in _pieces(row.name, attrs):
            p, q = np.maximum(l, p0), np.minimum(u, q0)
            act = p <= q
            p, q = np.where(act, p, l), np.where(act, q, l)
            kind = kind if s > 0 else _FLIP[kind]
            if kind in ("linear", "concave"):
                b = np.minimum(g(p), g(q))
            elif kind == "unknown":
                w = (float(FUNCTIONS[row.name].lip) + np.abs(a)) * (q - p)
                b = g(p) - w * (1 + R) - TINY
            else:
                t = _hint(row, p, q, a, s, attrs)
                f_lo, f_hi = row._f(t, attrs, s < 0, True) * s, row._f(t, attrs, s > 0, True) * s
                dl = f_lo - a - (np.abs(f_lo) + np.abs(a)) * R - TINY
                dh = f_hi - a + (np.abs(f_hi) + np.abs(a)) * R + TINY
                c = np.minimum(np.minimum(dl * (p - t), dl * (q - t)), np.minimum(dh * (p - t), dh * (q - t)))
                gt = g(t)
                b = np.where(p == q, g(p), gt + c - (np.abs(gt) + np.abs(c)) * R - TINY)
            b = np.where(np.isfinite(b), b, -np.inf)  # an overflow or nan is no bound
            best = np.where(act, np.minimum(best, b), best)
    return _finite_or(best, -np.inf)


def _hint(row: FastRow, p: Arr, q: Arr, a: Arr, s: int, attrs: dict[str, Any]) -> Arr:
    """t in [p, q] with s*f'(t) ~ a (s*f' increasing on the piece), by 80 bisection steps."""
    lo, hi = p.copy(), q.copy()
    for _ in range(80):
        mid = lo + (hi - lo) / 2
        below = s * _F[row.name][1](mid, **attrs)[0] < a
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.clip(hi, p, q)


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
    pushed up by R·(|terms|) + TINY, as ``_min_g`` does (none where a is 0 or 1: exact)."""
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
