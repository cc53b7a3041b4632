"""Audit audit65: the bound table's linear relaxations (``functions.min_g`` over ``EXACT`` and
``fast_functions.FAST_D``, slim34b) and the rounding-error column's kernel rows (``errorkern.kernel``
over ``errorkern.Exact`` and the fast walk, slim34a), against mpmath at high precision.

- Lines: for random and adversarial intervals (float-adjacent ends, degenerate l == u, straddling 0
  and the silu/gelu inflection brackets, subnormal and huge magnitudes, pow with odd, even, negative
  and fractional exponents, exp near binary64's overflow) and slopes (both policies' choices, 0,
  +-1, huge, tiny, random), every lower line lies below f and every upper line above it on [l, u],
  in both domains: the true extremum of f(x) - a*x is found in mpmath (the ends, the kinks and the
  roots of f' = a between inflection points, by bisection to 2^-100 of the interval).
- Enclosures: the fast rows' value / derivative enclosures and both rows' ``interval`` contain the
  mpmath value.
- Kernel rows: the certified epsilon of a one-node graph (both columns, binary16/32/64) is above
  |numpy run in the format - mpmath f(x)| at the box's float points, including exp(-x)'s overflow
  tail of sigmoid/silu, leaky_relu with slopes that are not values of the format, non-integer pow.
- End to end: ``tl.verify.bounds`` (exact and float64 engines) on small networks of these functions
  contains the mpmath value of the network at sampled points.
The heavy random sweeps are marked slow.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest

mp = pytest.importorskip("mpmath")

from torchlean.certificates import check  # noqa: E402
from torchlean.certificates.core import Rejected  # noqa: E402
from torchlean.certificates.enclosures import DomainError  # noqa: E402
from torchlean.certificates.fast_functions import FAST  # noqa: E402
from torchlean.certificates.functions import FUNCTIONS, GELU_A, GELU_C  # noqa: E402

Q = Fraction
PREC = 260


def _m(x) -> mp.mpf:
    """x (float or Fraction) exactly as an mpf (a Fraction rounded at PREC bits)."""
    x = Q(x)
    return mp.mpf(x.numerator) / x.denominator


with mp.workprec(PREC):
    _GC, _GA = _m(GELU_C), _m(GELU_A)


def _sig(x):
    return 1 / (1 + mp.exp(-x))


def _gv(x):
    return 2 * _GC * (x + _GA * x**3), 2 * _GC * (1 + 3 * _GA * x * x)


def f_ref(name: str, x, **at):
    """f(x) in mpmath (the meanings of spec/elementwise.py; gelu in its tanh form)."""
    x = _m(x) if not isinstance(x, mp.mpf) else x
    if name == "relu":
        return max(x, mp.mpf(0))
    if name == "leaky_relu":
        return x if x > 0 else _m(at.get("slope", 0.01)) * x
    if name == "abs":
        return abs(x)
    if name == "square":
        return x * x
    if name == "reciprocal":
        return 1 / x
    if name in ("exp", "log", "sqrt", "tanh", "erf"):
        return getattr(mp, name)(x)
    if name == "rsqrt":
        return 1 / mp.sqrt(x)
    if name == "sigmoid":
        return _sig(x)
    if name == "softplus":
        return mp.log1p(mp.exp(x)) if x < 0 else x + mp.log1p(mp.exp(-x))
    if name == "silu":
        return x * _sig(x)
    if name == "gelu":
        return x * _sig(_gv(x)[0])
    if name == "pow":
        c = Q(at.get("exponent", 2))
        return x ** int(c) if c.denominator == 1 else mp.power(x, _m(c))
    raise KeyError(name)


def df_ref(name: str, x, **at):
    """f'(x) in mpmath (the smooth rows)."""
    if name == "square":
        return 2 * x
    if name == "reciprocal":
        return -1 / (x * x)
    if name == "exp":
        return mp.exp(x)
    if name == "log":
        return 1 / x
    if name == "sqrt":
        return 1 / (2 * mp.sqrt(x))
    if name == "rsqrt":
        return -1 / (2 * x * mp.sqrt(x))
    if name == "tanh":
        return 1 - mp.tanh(x) ** 2
    if name == "erf":
        return 2 / mp.sqrt(mp.pi) * mp.exp(-x * x)
    if name in ("sigmoid", "softplus"):
        s = _sig(x)
        return s * (1 - s) if name == "sigmoid" else s
    if name == "silu":
        s = _sig(x)
        return s + x * s * (1 - s)
    if name == "gelu":
        v, dv = _gv(x)
        s = _sig(v)
        return s + x * s * (1 - s) * dv
    if name == "pow":
        c = Q(at.get("exponent", 2))
        if c == 0:
            return mp.mpf(0)
        return _m(c) * (x ** int(c - 1) if c.denominator == 1 else mp.power(x, _m(c - 1)))
    raise KeyError(name)


def _roots():
    with mp.workprec(PREC):
        silu = mp.findroot(lambda x: 2 - x * mp.tanh(x / 2), mp.mpf("2.4"))

        def h(x):  # gelu'' / sigmoid'(v)
            v, dv = _gv(x)
            return 2 * dv + x * 12 * _GC * _GA * x - x * dv * dv * mp.tanh(v / 2)
        gelu = mp.findroot(h, mp.mpf("1.418"))
    return silu, gelu


_SILU_X0, _GELU_X0 = _roots()
LINEAR = ("relu", "leaky_relu", "abs")


def _inflections(name: str, at: dict) -> list:
    """The points where f' changes monotonicity (or f has a kink)."""
    if name in ("tanh", "erf", "sigmoid", "reciprocal") or name in LINEAR:
        return [mp.mpf(0)]
    if name == "silu":
        return [-_SILU_X0, _SILU_X0]
    if name == "gelu":
        return [-_GELU_X0, _GELU_X0]
    if name == "pow":
        c = Q(at.get("exponent", 2))
        return [mp.mpf(0)] if c.denominator == 1 else []
    return []


def true_min(name: str, at: dict, l, u, a, s: int):
    """min over [l, u] of s*(f(x) - a*x), in mpmath: the ends, the kinks and inflection points, and
    the roots of f'(x) = a on each segment where f' is monotone (bisection)."""
    with mp.workprec(PREC):
        L, U, A = _m(l), _m(u), _m(a)
        cuts = [L] + [c for c in _inflections(name, at) if L < c < U] + [U]
        cand = list(cuts)
        if name not in LINEAR:
            for p, q in zip(cuts, cuts[1:]):
                if p == q:
                    continue
                try:
                    hp, hq = df_ref(name, p, **at) - A, df_ref(name, q, **at) - A
                except ZeroDivisionError:  # f' unbounded at an end (sqrt at 0): nudge inside
                    p2 = p + (q - p) * mp.mpf(2) ** -120
                    hp, hq = df_ref(name, p2, **at) - A, df_ref(name, q, **at) - A
                if hp * hq < 0:
                    lo, hi = p, q
                    for _ in range(110):
                        mid = (lo + hi) / 2
                        if (df_ref(name, mid, **at) - A) * hp > 0:
                            lo = mid
                        else:
                            hi = mid
                    cand += [lo, hi]
        return min(s * (f_ref(name, x, **at) - A * x) for x in cand)


def _fin(x) -> bool:
    return not isinstance(x, float) or math.isfinite(x)


def line_ok(name: str, at: dict, l, u, a, b, s: int) -> bool:
    """s = 1: f(x) >= a x + b on [l, u]; s = -1: f(x) <= a x + b (an infinite b: vacuous)."""
    if isinstance(b, float) and math.isinf(b):
        return (b < 0) == (s > 0)
    with mp.workprec(PREC):
        return true_min(name, at, l, u, a, s) >= s * _m(b)


def _lines(name, at, l, u, a, fast: bool):
    if fast:
        arr = (np.array([float(l)]), np.array([float(u)]), np.array([float(a)]))
        return (float(FAST[name].lower_intercept(*arr, **at)[0]),
                float(FAST[name].upper_intercept(*arr, **at)[0]))
    return FUNCTIONS[name].lower_intercept(l, u, a, **at), FUNCTIONS[name].upper_intercept(l, u, a, **at)


def _check_lines(name, at, l, u, slopes, fast: bool) -> list:
    """The violations (as tuples) of both lines at each slope."""
    bad = []
    for a in slopes:
        if fast and not (isinstance(a, float) or abs(a) < 1e300):
            continue
        a = float(a) if fast else a
        try:
            lo, up = _lines(name, at, l, u, a, fast)
        except (DomainError, Rejected, OverflowError, ZeroDivisionError):
            continue  # (a refusal: ``core.replay`` turns the last two into one, MALFORMED)
        if not line_ok(name, at, l, u, a, lo, 1):
            bad.append(("lower", name, at, l, u, a, lo))
        if not line_ok(name, at, l, u, a, up, -1):
            bad.append(("upper", name, at, l, u, a, up))
    return bad


def _slopes(name, at, l, u, fast: bool, rng: random.Random | None = None) -> list:
    out = [0.0, 1.0, -1.0]
    for pol in ("s-curve", "chord"):
        try:
            if fast:
                lo, up = FAST[name].policy_slopes(pol, np.array([float(l)]), np.array([float(u)]), **at)
                out += [float(lo[0]), float(up[0])]
            else:
                out += list(FUNCTIONS[name].policy_slopes(pol, l, u, **at))
        except (DomainError, Rejected, OverflowError, ZeroDivisionError):
            pass
    with mp.workprec(80):  # the tangents at the ends (where they exist)
        for x in (l, u):
            try:
                d = float(df_ref(name, _m(x), **at)) if name not in LINEAR else None
            except (ZeroDivisionError, OverflowError, ValueError):
                d = None
            if d is not None and math.isfinite(d):
                out.append(d)
    if rng is not None:
        out += [rng.gauss(0, 2), rng.choice([1e12, -1e12, 1e-300, 3e15])]
    return out


# ---- adversarial intervals -------------------------------------------------------------------

_NX = math.nextafter
_S0, _G0 = float(_SILU_X0), float(_GELU_X0)
_SILU_B = (float.fromhex("0x1.331e23ad9de11p+1"), float.fromhex("0x1.331e23ad9de12p+1"))
_GELU_B = (float.fromhex("0x1.6b23142700629p+0"), float.fromhex("0x1.6b2314270062ap+0"))
_AROUND0 = [(-1.0, 1.0), (-3.0, 1e-9), (-5e-324, 5e-324), (_NX(0.0, -1), 0.0), (0.0, 0.0),
            (-1e-300, 1e-300), (0.7, 0.7), (-1e6, 1e6), (-1e300, 1e300), (-40.0, -30.0), (35.0, 36.0)]
_INFL = [(*_SILU_B,), (_SILU_B[0], _SILU_B[0]), (_SILU_B[1], _SILU_B[1]), (-_SILU_B[1], -_SILU_B[0]),
         (2.0, 3.0), (-3.0, -2.0), (-_S0, _S0), (_NX(_S0, -1), _NX(_S0, 1)), (*_GELU_B,),
         (1.3, 1.5), (-1.5, -1.3), (_NX(_G0, -1), _NX(_G0, 1)), (-_G0, _G0), (-1e3, 3.0)]
ADV: list[tuple[str, dict, object, object]] = []
for _n in ("tanh", "erf", "sigmoid", "softplus", "silu", "gelu", "square"):
    ADV += [(_n, {}, l, u) for l, u in _AROUND0]
for _n in ("silu", "gelu", "tanh"):
    ADV += [(_n, {}, l, u) for l, u in _INFL]
for _s in (0.01, -0.5, 2.0):
    ADV += [("leaky_relu", {"slope": _s}, l, u) for l, u in ((-1.0, 1.0), (-1e300, 1e300), (-2.0, -1.0))]
ADV += [("relu", {}, l, u) for l, u in ((-1.0, 1.0), (-1e300, 1e300), (0.0, 0.0), (-5e-324, 5e-324))]
ADV += [("abs", {}, l, u) for l, u in ((-1.0, 3.0), (-1e300, 1e300), (-5e-324, 0.0))]
ADV += [("exp", {}, l, u) for l, u in ((699.0, 700.0), (709.5, 709.75), (-1000.5, -999.0), (-745.0, -744.0),
                                       (-1e6, 0.0), (-1.0, 1.0), (3.0, 3.0), (_NX(1.0, -1), _NX(1.0, 1)))]
ADV += [("log", {}, l, u) for l, u in ((5e-324, 1e-300), (1e300, 1.7e308), (_NX(1.0, -1), _NX(1.0, 1)),
                                       (0.1, 10.0), (5e-324, 5e-324))]
ADV += [("sqrt", {}, l, u) for l, u in ((0.0, 5e-324), (0.0, 1e-300), (0.0, 1e300), (0.0, 0.0), (2.0, 2.0),
                                        (1e-10, 1.0))]
ADV += [("rsqrt", {}, l, u) for l, u in ((1e-300, 1.0), (1e300, 1e308), (0.5, 2.0), (1e-100, 1e-99))]
ADV += [("reciprocal", {}, l, u) for l, u in ((1e-300, 1e-299), (-1e-3, -1e-300), (0.5, 4.0), (-3.0, -2.0))]
for _c, _ivs in ((3, [(-2.0, 1.0), (-1e-100, 1e-100), (-1e100, 1e100)]), (2, [(-1e150, 1e150), (-3.0, -1.0)]),
                 (5, [(-1e60, 1e60), (-1.0, 0.5)]), (4, [(-2.0, 3.0)]), (0, [(-1.0, 1.0)]),
                 (1, [(-5.0, 2.0)]),
                 (-1, [(-3.0, -1e-3), (1e-3, 2.0)]), (-2, [(1e-3, 2.0), (-2.0, -1e-3)]), (-3, [(-2.0, -0.5)]),
                 (0.5, [(1e-300, 4.0), (4.0, 4.0)]), (1 / 3, [(1e-6, 8.0)]), (2.5, [(0.1, 1e20)]),
                 (-0.5, [(1e-200, 1.0)]), (1e-3, [(1e-300, 1e300)]), (10.5, [(1.0, 1e29)])):
    ADV += [("pow", {"exponent": _c}, l, u) for l, u in _ivs]
# exact-only: non-dyadic ends and ends beyond binary64
ADV_EXACT = [("tanh", {}, Q(-1, 3), Q(1, 7)), ("silu", {}, Q(-5, 3), Q(7, 3)), ("gelu", {}, Q(1, 3), Q(3, 2)),
             ("exp", {}, Q(1, 3), Q(2, 3)), ("log", {}, Q(1, 10**400), Q(1, 3)),
             ("sigmoid", {}, Q(-10**400), Q(1, 3)),
             ("softplus", {}, Q(-10**400), Q(10**400)), ("sqrt", {}, Q(1, 3), Q(10**400)),
             ("pow", {"exponent": 3}, Q(-1, 3), Q(2, 3)), ("pow", {"exponent": 0.5}, Q(1, 3), Q(5, 3))]


@pytest.mark.parametrize("fast", [False, True], ids=["exact", "fast"])
def test_lines_adversarial(fast):
    """Both lines at every listed interval and slope lie on the right side of f (mpmath)."""
    bad = []
    for name, at, l, u in ADV + ([] if fast else ADV_EXACT):
        bad += _check_lines(name, at, l, u, _slopes(name, at, l, u, fast), fast)
    assert not bad, bad[:5]


def _rand_interval(rng: random.Random, name: str, at: dict) -> tuple[float, float]:
    c = rng.gauss(0, 1) * 10 ** rng.uniform(-3, 2) if rng.random() < 0.7 else rng.choice(
        [0.0, _S0, -_S0, _G0, -_G0, 1.0, -1.0])
    w = 10 ** rng.uniform(-12, 2.5) * rng.random() if rng.random() < 0.8 else 10 ** rng.uniform(-300, 300)
    l, u = c - w, c + w
    if rng.random() < 0.1:
        u = l
    elif rng.random() < 0.1:
        u = _NX(l, math.inf)
    c = Q(at.get("exponent", 2)) if name == "pow" else None
    if name in ("log", "rsqrt") or (c is not None and c.denominator != 1):
        l, u = abs(l) + 1e-300, abs(l) + abs(u - l) + 1e-300
    elif name == "sqrt":
        l, u = abs(l), abs(l) + (u - l)
    elif name == "reciprocal" or (c is not None and c < 0):
        if l <= 0 <= u:
            l, u = abs(u) + 1e-9, abs(u) + 1e-9 + (u - l)
    if name == "exp":
        u = min(u, 709.0)
        l = min(l, u)
    return float(l), float(u)


_PATTRS = [{"exponent": e} for e in (2, 3, 5, -1, -2, 0.5, 1.5, -0.5, 1 / 3)]
_ATTRS = {"leaky_relu": [{"slope": 0.01}, {"slope": -0.5}, {"slope": 2.0}], "pow": _PATTRS}


def _random_lines(seed: int, n: int, fast: bool) -> list:
    rng = random.Random(seed)
    names = sorted(FUNCTIONS)
    bad = []
    for _ in range(n):
        name = rng.choice(names)
        at = rng.choice(_ATTRS.get(name, [{}]))
        l, u = _rand_interval(rng, name, at)
        if not (math.isfinite(l) and math.isfinite(u) and l <= u):
            continue
        bad += _check_lines(name, at, l, u, _slopes(name, at, l, u, fast, rng), fast)
    return bad


@pytest.mark.parametrize("fast", [False, True], ids=["exact", "fast"])
def test_lines_random(fast):
    bad = _random_lines(6500 + fast, 40, fast)
    assert not bad, bad[:5]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fast", [False, True], ids=["exact", "fast"])
def test_lines_random_heavy(fast, seed):
    bad = _random_lines(65000 + 10 * seed + fast, 400, fast)
    assert not bad, bad[:5]


def test_fast_lines_batched_match_one_by_one():
    """The fast rows run elementwise on arrays (inactive pieces masked): a batch mixing intervals
    on different pieces gives each element the line it gets alone (so no element's piece is skipped
    or borrowed from another)."""
    for name in ("silu", "gelu", "tanh", "pow", "sqrt"):
        at = {"exponent": 3} if name == "pow" else {}
        ivs = [(l, u) for n, a, l, u in ADV if n == name and a == at and n != "sqrt"]
        ivs = ivs or [(0.0, 1.0), (0.0, 0.0), (1e-300, 4.0)]
        l, u = np.array([float(x) for x, _ in ivs]), np.array([float(y) for _, y in ivs])
        a = np.linspace(-1.5, 1.5, len(l))
        lo, up = FAST[name].lower_intercept(l, u, a, **at), FAST[name].upper_intercept(l, u, a, **at)
        for i in range(len(l)):
            one = _lines(name, at, l[i], u[i], a[i], True)
            assert (lo[i], up[i]) == one, (name, l[i], u[i], a[i])


# ---- enclosures ---------------------------------------------------------------------------

_PTS = [0.0, 5e-324, -5e-324, 1e-310, 1e-300, 1e-8, 0.5, 1.0, _NX(1.0, -1), 2.0, _S0, _G0, 10.0, 30.0, 700.0,
        709.7, 1e6, 1e300]


@pytest.mark.parametrize("name", ["tanh", "erf", "sigmoid", "softplus", "silu", "gelu", "exp", "log", "sqrt",
                                  "rsqrt", "reciprocal", "square", "pow"])
def test_fast_value_and_derivative_enclosures(name):
    """The fast row's f and f' enclosures (``FastRow._f``, which every fast line and interval rests
    on) contain mpmath's values at tiny, huge, subnormal and inflection-adjacent points."""
    ats = _PATTRS if name == "pow" else [{}]
    fr = FAST[name]
    for at in ats:
        xs = []
        for x in sorted({s * x for x in _PTS for s in (1, -1)}):
            try:
                FUNCTIONS[name]._check(x, x, at)
            except DomainError:
                continue
            if (name != "exp" or x <= 709.7) and (x != 0 or name not in ("log", "rsqrt", "reciprocal")):
                xs.append(x)
        arr = np.array(xs)
        for d in (False, True):
            lo, hi = fr._f(arr, at, False, d), fr._f(arr, at, True, d)
            for x, a, b in zip(xs, lo, hi):
                with mp.workprec(PREC):
                    try:
                        ref = df_ref(name, _m(x), **at) if d else f_ref(name, x, **at)
                    except ZeroDivisionError:
                        continue
                    assert not (a > b), (name, at, x, d)
                    assert not math.isfinite(a) or _m(a) <= ref, (name, at, x, d, a, ref)
                    assert not math.isfinite(b) or ref <= _m(b), (name, at, x, d, b, ref)


@pytest.mark.parametrize("fast", [False, True], ids=["exact", "fast"])
def test_interval_contains_true_range(fast):
    """``interval`` (monotone rules at the ends; lines at slope 0 for silu, gelu, even pow) contains
    f's true range over [l, u]: min and max from ``true_min``."""
    bad = []
    for name, at, l, u in ADV:
        try:
            if fast:
                ends = np.array([float(l)]), np.array([float(u)])
                lo, hi = (float(v[0]) for v in FAST[name].interval(*ends, **at))
            else:
                lo, hi = FUNCTIONS[name].interval(l, u, **at)
        except (DomainError, Rejected, OverflowError, ZeroDivisionError):
            continue
        with mp.workprec(PREC):
            if (_fin(lo) and _m(lo) > true_min(name, at, l, u, 0, 1)) or (
                    _fin(hi) and _m(hi) < -true_min(name, at, l, u, 0, -1)):
                bad.append((name, at, l, u, lo, hi))
    assert not bad, bad[:5]


# ---- fix65: the exact rows' float hints on intervals at and below binary64's least subnormal --------
# (audit65's completeness findings (1) and (2), and reciprocal's f' hint, found with them: each
# raised inside the hint (ZeroDivisionError, OverflowError), a refusal; now a line, checked here)

_TINY = {
    "sqrt": [(Q(0), Q(1, 10**400)), (Q(0), Q(1, 2**1075)), (Q(1, 10**401), Q(1, 10**400)),
             (Q(0), Q(1, 2**1076))],
    "rsqrt": [(5e-324, 1e-300), (1e-300, 1e-299), (2.0**-700, 2.0**-690), (1e-250, 1e-200),
              (Q(1, 10**400), Q(1, 10**399)), (2.0**-683, 2.0**-682)],
    "reciprocal": [(5e-324, 1e-300), (1e-250, 1e-200), (-1e-300, -1e-310), (Q(-1, 10**399), Q(-1, 10**400))],
}
_TINY_CASES = [(n, l, u) for n, ivs in _TINY.items() for l, u in ivs]


def _extremum(name, l, u, s):
    """min (s = 1) or max (s = -1) of f on [l, u] in mpmath (these rows are monotone)."""
    with mp.workprec(PREC):
        return s * true_min(name, {}, l, u, 0, s)


@pytest.mark.parametrize("name,l,u", _TINY_CASES, ids=[f"{n}-{i}" for i, (n, *_) in enumerate(_TINY_CASES)])
def test_tiny_interval_lines_exist_and_hold(name, l, u):
    """Both exact lines at slope 0, at both policies' slopes and at the exact tangent slopes of the
    ends are returned (no refusal) and lie on the right side of f (mpmath); at slope 0 they are
    tight (2^-40) except on [-10^-399, -10^-400]: there both ends' float is -0.0, past q, so the
    hint is q while 1/x's maximum is at p (a valid, loose upper line: only a hint is lost)."""
    row = FUNCTIONS[name]
    slopes = [Q(0)]
    for pol in ("s-curve", "chord"):
        slopes += list(row.policy_slopes(pol, l, u))
    assert all(isinstance(a, Q) for a in slopes)
    with mp.workprec(PREC):
        for x in (l, u):
            if x != 0:  # (sqrt's f' is unbounded at 0)
                slopes.append(Q(mp.nstr(df_ref(name, _m(x)), 40)))
    for a in slopes:
        lo, up = row.lower_intercept(l, u, a), row.upper_intercept(l, u, a)
        assert line_ok(name, {}, l, u, a, lo, 1), (name, l, u, a, lo)
        assert line_ok(name, {}, l, u, a, up, -1), (name, l, u, a, up)
    with mp.workprec(PREC):
        fmin, fmax = _extremum(name, l, u, 1), _extremum(name, l, u, -1)
        lo, up = _m(row.lower_intercept(l, u, 0)), _m(row.upper_intercept(l, u, 0))
        assert fmin - lo <= abs(fmin) * mp.mpf(2) ** -40, (name, l, u, lo, fmin)
        assert up - fmax <= abs(fmax) * mp.mpf(2) ** -40 or isinstance(l, Q) and l < 0, (name, l, u, up)


def test_tiny_sqrt_upper_line_is_the_tangent_at_q():
    """sqrt's upper line on [0, q], q below 2^-1075 (its float is 0 = p's): at q's own slope
    f'(q) the line is the tangent at q, so its intercept is sqrt(q)/2 (to the enclosures' width)."""
    q = Q(1, 10**400)
    with mp.workprec(PREC):
        a = Q(mp.nstr(df_ref("sqrt", _m(q)), 60))
        b = _m(FUNCTIONS["sqrt"].upper_intercept(0, q, a))
        want = mp.sqrt(_m(q)) - _m(a) * _m(q)  # the tangent's intercept at slope a (within 1e-58)
        assert b >= want * (1 - mp.mpf(10) ** -50)
        assert b <= want * (1 + mp.mpf(2) ** -40), (b, want)


# ---- the error column's kernel rows ----------------------------------------------------------

_DT = {"binary16": np.float16, "binary32": np.float32, "binary64": np.float64}
_T = {"binary16": -10.0, "binary32": -85.33, "binary64": -682.67}  # -2 emax / 3: exp(-x) may overflow


def _eps_case(fn: str, at: dict, lo: float, hi: float, fmt: str, column: str, n: int = 40):
    """(worst |run - f|, epsilon) of the one-node graph x -> fn(x) over [lo, hi] in ``fmt``, or None
    when the column refuses; the run at every float of ``fmt`` near the ends and n random ones."""
    from torchlean.floats.errorbound import bound_certificate, epsilons
    from torchlean.floats.network import run_float
    from torchlean.spec.graph import Graph, Node, Value
    dt = _DT[fmt]
    g = Graph([Value("x", (1, 1), "float32")], {}, [Node(fn, ["x"], "y", at)], ["y"]).check()
    try:
        cert = bound_certificate(g, [(Q(lo), Q(hi))], fmt, column=column)
    except (Rejected, DomainError):
        return None
    v = check(cert)
    if not v.ok:
        return None
    eps = Q(epsilons(cert)[0])
    a, b = dt(lo), dt(hi)
    a = a if float(a) >= lo else np.nextafter(a, dt(np.inf))
    b = b if float(b) <= hi else np.nextafter(b, dt(-np.inf))
    xs = set()
    for k in range(4):
        for x in (a, b):
            xs.add(x)
        a, b = np.nextafter(a, dt(np.inf)), np.nextafter(b, dt(-np.inf))
    xs |= set(np.random.default_rng(65).uniform(lo, hi, n).astype(dt))
    xs = np.array(sorted(x for x in xs if lo <= float(x) <= hi), dtype=dt).reshape(-1, 1)
    assert len(xs), (fn, lo, hi, fmt)  # (every listed box holds a float of the format)
    with np.errstate(all="ignore"):
        y = run_float(g, xs, dt).astype(np.float64).ravel()
    assert np.isfinite(y).all(), (fn, at, lo, hi, fmt)
    with mp.workprec(PREC):
        worst = max(abs(_m(float(yy)) - f_ref(fn, float(x), **at)) for x, yy in zip(xs.ravel(), y))
    return worst, eps


def _kernel_cases(fmt: str) -> list:
    t = _T[fmt]
    t1 = float(_DT[fmt](t - 1))  # (a value of the format: the degenerate box holds a float)
    cases = [(fn, {}, b) for fn in ("sigmoid", "silu") for b in ((t - 3, t + 1), (t1, t1), (-1.0, 1.0))]
    cases += [(fn, {}, b) for fn in ("tanh", "erf", "softplus", "gelu", "exp")
              for b in ((-3.0, 2.0), (0.5, 0.5))]
    cases += [("leaky_relu", {"slope": s}, b) for s in (0.01, -0.3, 1 / 3)
              for b in ((-1.0, -1.0), (-2.0, 1.0))]
    cases += [("softplus", {}, (30.0, 31.0)), ("log", {}, (0.5, 3.0)), ("sqrt", {}, (1e-3, 3.0))]
    cases += [("pow", {"exponent": c}, b) for c in (0.1, 1 / 3, 2.5, -0.5, 3, -2)
              for b in ((0.5, 2.0), (3.0, 3.0), (1e-3, 1e-2))]
    return cases


def _kernel_sweep(fmts, n: int) -> list:
    bad = []
    for fmt in fmts:
        for fn, at, (lo, hi) in _kernel_cases(fmt):
            for column in ("exact", "fast"):
                r = _eps_case(fn, at, lo, hi, fmt, column, n)
                if r is not None and r[0] > _m(r[1]):
                    bad.append((fn, at, lo, hi, fmt, column, float(r[0]), float(r[1])))
    return bad


def test_kernel_epsilons_cover_runs_binary16():
    """binary16 (u = 2^-11: a missing charge shows), both columns."""
    bad = _kernel_sweep(["binary16"], 25)
    assert not bad, bad[:5]


@pytest.mark.slow
def test_kernel_epsilons_cover_runs_heavy():
    bad = _kernel_sweep(["binary16", "binary32", "binary64"], 200)
    assert not bad, bad[:5]


@pytest.mark.parametrize("fmt", ["binary16", "binary32"])
def test_kernel_columns_agree_where_both_accept(fmt):
    """The fast column's epsilon (float64, rounded up) is never below the exact column's by more
    than the exact column's own outward rounding of the statement (both are the same kernel
    formula over two domains): fast >= exact (1 - 2^-40)."""
    for fn, at, (lo, hi) in _kernel_cases(fmt)[::3]:
        ex, fa = (_eps_case(fn, at, lo, hi, fmt, c, 0) for c in ("exact", "fast"))
        if ex is not None and fa is not None:
            assert fa[1] >= ex[1] * (1 - Q(1, 2**40)), (fn, at, lo, hi, fmt, ex[1], fa[1])


# ---- end to end ------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", ["tanh", "sigmoid", "silu", "gelu", "softplus", "erf", "exp"])
@pytest.mark.parametrize("exact", [False, True], ids=["float64", "exact"])
def test_verify_bounds_contain_mpmath(fn, exact):
    """``tl.verify.bounds`` on x -> W2 f(W1 x + b1) (boxes across the inflection points) contains
    the network's mpmath value at the box's corners and random points (weights read exactly)."""
    from torchlean.spec.graph import Graph, Node, Value
    from torchlean.verify.api import bounds
    rng = np.random.default_rng(650 + len(fn))
    W1 = (rng.standard_normal((2, 5)) * 2).astype(np.float32)
    b1 = (rng.standard_normal((1, 5)) * 1.5).astype(np.float32)
    W2 = rng.standard_normal((5, 2)).astype(np.float32)
    g = Graph([Value("x", (1, 2), "float32")], {"W1": W1, "b1": b1, "W2": W2},
              [Node("matmul", ["x", "W1"], "h0"), Node("add", ["h0", "b1"], "h"), Node(fn, ["h"], "a"),
               Node("matmul", ["a", "W2"], "y")], ["y"]).check()
    x0, eps = np.array([[0.3, -0.6]]), 0.75
    b = bounds(g, x0, eps, exact=exact)
    pts = [np.array([x0[0, 0] + sx * eps, x0[0, 1] + sy * eps]) for sx in (-1, 1) for sy in (-1, 1)]
    pts += list(x0[0] + rng.uniform(-eps, eps, (12, 2)))
    lo, hi = np.asarray(b.lower).ravel(), np.asarray(b.upper).ravel()
    with mp.workprec(PREC):
        for p in pts:
            h = [sum(_m(float(p[i])) * _m(float(W1[i, j])) for i in range(2)) + _m(float(b1[0, j]))
                 for j in range(5)]
            a = [f_ref(fn, hj) for hj in h]
            for k in range(2):
                y = sum(a[j] * _m(float(W2[j, k])) for j in range(5))
                assert _m(float(lo[k])) <= y <= _m(float(hi[k])), (fn, exact, p, k, lo[k], hi[k], y)


@pytest.mark.parametrize("column", ["exact", "fast"])
@pytest.mark.parametrize("fn,at,box", [("sigmoid", {}, (-13.0, -9.0)), ("silu", {}, (-13.0, -9.0)),
                                       ("leaky_relu", {"slope": 0.01}, (-1.0, -1.0)),
                                       ("pow", {"exponent": 1 / 3}, (0.5, 2.0))])
def test_false_epsilon_is_rejected(fn, at, box, column):
    """End to end: the certificate whose epsilon is cut below the error the binary16 run really
    makes (a false claim, by mpmath) is refused by ``check``; the true one is accepted."""
    from torchlean.certificates.core import digest
    from torchlean.floats.errorbound import bound_certificate
    from torchlean.spec.graph import Graph, Node, Value
    worst, eps = _eps_case(fn, at, *box, "binary16", column, 25)
    assert worst <= _m(eps)
    g = Graph([Value("x", (1, 1), "float32")], {}, [Node(fn, ["x"], "y", at)], ["y"]).check()
    cert = bound_certificate(g, [(Q(box[0]), Q(box[1]))], "binary16", column=column)
    assert check(cert).ok
    with mp.workprec(PREC):
        false = Q(float(worst * (1 - mp.mpf(2) ** -20)))
    for e, ok in ((false, False), (2 * Q(eps), True)):  # (a looser epsilon: the edit itself is fine)
        st = {**cert["statement"], "epsilon": [str(e)]}
        v = check({**cert, "statement": st, "digest": digest(st)})
        assert v.ok == ok, (e, v.reason)
