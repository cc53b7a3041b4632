"""Held-out audit audit23: the trusted checker's numeric foundations.

``core.float_down`` / ``float_up`` / ``float_below`` (outward shortening of exact rationals to
binary64), ``core.decimal`` (the exact reading of a numeral), ``fast_forms.gamma`` / ``outward``
and the fast function rows (``fast_functions.FAST``: numpy's exp/log/log1p/tanh/sqrt and erf,
widened by R = 2^-36 relative plus 2^-1000) at adversarial points: subnormals, near-overflow,
negative zero, libm formula switch points, huge arguments. Every case is checked against an
independent reference: Python's Fraction, ``math.nextafter``, mpmath at 120 digits.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from torchlean.certificates import core
from torchlean.certificates.fast_forms import gamma, outward
from torchlean.certificates.fast_functions import FAST
from torchlean.certificates.functions import GELU_A, GELU_C

mpmath.mp.dps = 120


@pytest.fixture(autouse=True)
def _own_precision():
    """Every test here at this file's precision, whatever another file set mpmath.mp to (the
    module-level line only sets it at import: test_fast_overflow's mp.dps = 40, run between,
    left tanh'(37)'s 1 - tanh^2 reference 8 digits short)."""
    with mpmath.workdps(120):
        yield
MAXF = sys.float_info.max
SUB = 5e-324

# -- float_down / float_up / float_below -----------------------------------------------------

_HALF_ULP_MAX = Fraction(2) ** 970  # half an ulp of MAXF: beyond MAXF + this, float() overflows
_Q = [
    Fraction(0), Fraction(1, 3), Fraction(-1, 3), Fraction(1, 10), Fraction(-1, 10),
    Fraction(1, 2**1074), Fraction(1, 2**1075), Fraction(3, 2**1076), Fraction(-1, 2**1075),
    Fraction(1, 2**1080), Fraction(-1, 2**1080), Fraction(1, 3 * 2**1070), Fraction(-1, 3 * 2**1070),
    Fraction(2**1022 - 1, 2**2044),  # just under the smallest normal
    Fraction(MAXF), -Fraction(MAXF), Fraction(MAXF) + 1, -Fraction(MAXF) - 1,
    Fraction(MAXF) + _HALF_ULP_MAX - 1, -Fraction(MAXF) - _HALF_ULP_MAX + 1,
    Fraction(MAXF) + _HALF_ULP_MAX, -Fraction(MAXF) - _HALF_ULP_MAX,
    Fraction(2) ** 1024, -(Fraction(2) ** 1024), Fraction(10) ** 400, -(Fraction(10) ** 400),
    Fraction(2**53 + 1), Fraction(-(2**53) - 1), Fraction(2**53 + 1, 2**60), Fraction(10**300 + 7, 3),
    Fraction(1, 10**400), Fraction(-1, 10**400),
]


def _largest_float_le(q: Fraction) -> float | None:
    """Reference: the largest binary64 <= q, by bisection over the ordered floats (None: -inf)."""
    if q < -Fraction(MAXF):
        return None
    lo, hi = -MAXF, MAXF  # invariant: Fraction(lo) <= q; answer in [lo, hi]
    if q >= Fraction(MAXF):
        return MAXF
    # walk the integer encoding
    import struct

    def key(f: float) -> int:
        b = struct.unpack("<Q", struct.pack("<d", f))[0]
        return -(b & 0x7FFFFFFFFFFFFFFF) if b >> 63 else b

    def unkey(k: int) -> float:
        b = k if k >= 0 else (-k) | (1 << 63)  # sign-magnitude
        return struct.unpack("<d", struct.pack("<Q", b))[0]

    a, b = key(lo), key(hi)
    while b - a > 1:
        m = (a + b) // 2
        if Fraction(unkey(m)) <= q:
            a = m
        else:
            b = m
    return unkey(b) if Fraction(unkey(b)) <= q else unkey(a)


@pytest.mark.parametrize("q", _Q, ids=[f"q{i}" for i in range(len(_Q))])
def test_float_down_up_bracket_and_tight(q: Fraction) -> None:
    d, u = core.float_down(q), core.float_up(q)
    assert d <= q <= u
    ref = _largest_float_le(q)
    if ref is not None and math.isfinite(ref):
        # shortened to the largest float below, unless no float is that large (q itself)
        assert d == Fraction(ref) or (d == q and q > Fraction(MAXF))
    else:
        assert d == q  # nothing finite is <= q: the shortening is skipped
    try:
        fb = core.float_below(q)
    except OverflowError:  # documented: past binary64 (float(q) rounds to +-inf)
        assert abs(q) >= Fraction(MAXF) + _HALF_ULP_MAX
        fb = None
    if fb is not None:
        assert fb == -math.inf or Fraction(fb) <= q
        if ref is not None:
            assert fb == ref
        # and it is the largest: the next float up is above q
        if math.isfinite(fb) and fb < MAXF:
            assert Fraction(math.nextafter(fb, math.inf)) > q


def test_outward_near_overflow_goes_infinite_not_inward() -> None:
    q = -Fraction(MAXF) - 1  # just below -MAXF: no finite float is below it
    lo, hi = outward([q, -q], [q, -q])
    assert lo[0] == -math.inf and Fraction(lo[1]) <= -q
    assert hi[1] == math.inf and Fraction(hi[0]) >= q


def test_float_down_signed_zero_and_float_valued() -> None:
    for f in [0.0, -0.0, SUB, -SUB, 2.2250738585072014e-308, MAXF, -MAXF, 0.1, -0.1]:
        q = Fraction(f)
        assert core.float_down(q) == q == core.float_up(q)
        assert core.float_below(q) == f


# -- decimal ----------------------------------------------------------------------------------

_NUMERALS = [
    "0", "-0", "+0", "0.0", "-0.0", ".5", "5.", "-.5", "1e-320", "4.9e-324", "2.5e-324",
    "1.7976931348623157e308", "1.7976931348623159e308", "1_0.2_5e-1_0", "+1.5E+3", "00012",
    "3/4", "-3/4", "+3/4", "1_2/3_4", "0/5", "  7.25  ", "1e4000", "-1e-4000", "123456789e-30",
]


@pytest.mark.parametrize("text", _NUMERALS)
def test_decimal_matches_fraction(text: str) -> None:
    assert core.decimal(text) == Fraction(text.strip())


@pytest.mark.parametrize("text", [
    "", ".", "e5", "1e", "--1", "1/0", "1/-2", "1.5/2", "1e4001", "1e-4001", "inf", "nan",
    "0x10", "1__0", "_1", "1_", "\u0661", "1/", "/2", "1e+", "1 2", "1.2.3", "1/2/3",
    "9" * 4001, "1/" + "9" * 4001,
])
def test_decimal_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        core.decimal(text)


def test_decimal_digit_limit_counts_digits_not_underscores() -> None:
    assert core.decimal("1_" * 3999 + "1") == Fraction(int("1" * 4000))
    assert core.decimal("-" + "9" * 4000 + "/" + "7" * 4000) == Fraction(-int("9" * 4000), int("7" * 4000))
    with pytest.raises(ValueError):
        core.decimal("1_" * 4000 + "1")


@pytest.mark.parametrize("text", ["3/4", "-3/4", "+3/4", "03/004", "-0/7", "1_2/3_4", "6/4", "0.75", "-1e-3"])
def test_ratio_reads_what_decimal_reads(text: str) -> None:
    p, q = core.ratio(text)
    assert q > 0 and Fraction(p, q) == core.decimal(text) == Fraction(text)


@pytest.mark.parametrize(("x", "q", "want"), [
    (-0.0, Fraction(0), True), (0.0, Fraction(0), True), (SUB, Fraction(1, 2**1074), True),
    (SUB, Fraction(1, 2**1074) + Fraction(1, 2**2000), False), (math.inf, Fraction(0), False),
    (-math.inf, -(Fraction(10) ** 400), False), (math.nan, Fraction(-1), False),
    (MAXF, (Fraction(MAXF).numerator, 1), True), (-MAXF, (-int(MAXF) - 1, 1), True),
])
def test_at_least_exact(x: float, q: Fraction | tuple[int, int], want: bool) -> None:
    assert core.at_least(x, q) is want


# -- gamma ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 10, 1000, 10**6, 10**9, 2**40])
def test_gamma_within_an_ulp_of_exact_gamma(n: int) -> None:
    """``fast_forms.gamma`` is rounded to nearest, so it may sit one ulp BELOW the exact
    gamma_n = nu/(1 - nu) (it does at n = 2): its callers charge 4 gamma, never gamma alone
    (``_charge``, ``fast_backsub._weights``); what they rely on is that it is within a few ulp."""
    u = Fraction(1, 2**53)
    exact = n * u / (1 - n * u)
    assert abs(Fraction(gamma(n)) - exact) <= 4 * u * exact
    assert Fraction(4 * gamma(n)) >= 2 * exact


# -- fast function rows against mpmath --------------------------------------------------------

_GC = mpmath.mpf(GELU_C.numerator) / GELU_C.denominator
_GA = mpmath.mpf(GELU_A.numerator) / GELU_A.denominator


def _mp_f(name: str, x: float) -> mpmath.mpf:
    x = mpmath.mpf(x)
    return {
        "exp": mpmath.exp, "log": mpmath.log, "sqrt": mpmath.sqrt, "tanh": mpmath.tanh,
        "erf": mpmath.erf, "reciprocal": lambda t: 1 / t, "rsqrt": lambda t: 1 / mpmath.sqrt(t),
        "sigmoid": lambda t: 1 / (1 + mpmath.exp(-t)), "softplus": lambda t: mpmath.log1p(mpmath.exp(t)),
        "silu": lambda t: t / (1 + mpmath.exp(-t)), "square": lambda t: t * t,
        # the row's gelu is the tanh form x sigmoid(2c(x + a x^3)), c and a the exact rationals
        "gelu": lambda t: t / (1 + mpmath.exp(-2 * _GC * (t + _GA * t**3))),
    }[name](x)


def _mp_df(name: str, x: float) -> mpmath.mpf:
    x = mpmath.mpf(x)
    s = 1 / (1 + mpmath.exp(-x))
    e = mpmath.exp(-abs(x))
    ds = e / (1 + e) ** 2  # (s (1 - s) cancels to 0 at 120 digits for x > 280)
    return {
        "exp": lambda: mpmath.exp(x), "log": lambda: 1 / x, "sqrt": lambda: 1 / (2 * mpmath.sqrt(x)),
        "tanh": lambda: 1 - mpmath.tanh(x) ** 2,
        "erf": lambda: 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-x * x),
        "reciprocal": lambda: -1 / (x * x), "rsqrt": lambda: -mpmath.mpf(1) / 2 * x ** mpmath.mpf(-1.5),
        "sigmoid": lambda: ds, "softplus": lambda: s, "silu": lambda: s + x * ds,
        "square": lambda: 2 * x,
    }[name]()


_EDGE = [
    SUB, 2 * SUB, 1e-320, 2.2250738585072014e-308, 1e-300, 1e-160, 1e-20, 1.4901161193847656e-8,
    2**-28, 3.7252902984e-09, 0.5493061443340548, 0.55, 0.84375, 1 - 2**-53, 1.0, 1 + 2**-52,
    0.6931471805599453, 1.25, 2.857142857, 6.0, 5.9, 19.06154746539849, 22.0, 36.7368005696771,
    37.0, 354.891356446692, 708.3964185322641, 709.782712893384, 709.79, 745.1332191019411, 746.0,
    1e5 / 1.6, 6.5e4, 1e10, 1e300, MAXF,
]
_POS_ROWS = ["log", "sqrt", "rsqrt", "reciprocal"]
_ALL_ROWS = ["exp", "tanh", "erf", "sigmoid", "softplus", "silu", "square", "gelu", "reciprocal"]


def _cases() -> list[tuple[str, float]]:
    out = []
    for name in _POS_ROWS:
        out += [(name, x) for x in _EDGE]
    for name in _ALL_ROWS:
        out += [(name, s * x) for x in _EDGE for s in (1.0, -1.0)] + [(name, 0.0), (name, -0.0)]
    return out


def _usable(name: str, x: float) -> bool:
    return bool(FAST[name].usable(np.array([x]), np.array([x]))[0])


def _assert_encloses(name: str, x: float, lo: float, hi: float, ref: mpmath.mpf) -> None:
    assert not math.isnan(lo) and not math.isnan(hi)
    assert lo == -math.inf or mpmath.mpf(lo) <= ref, (name, x, lo, ref)
    assert hi == math.inf or ref <= mpmath.mpf(hi), (name, x, hi, ref)


@pytest.mark.parametrize(("name", "x"), _cases())
def test_fast_value_encloses_mpmath(name: str, x: float) -> None:
    if not _usable(name, x) or (name == "reciprocal" and x == 0):
        pytest.skip("outside the row's domain")
    lo, hi = FAST[name].value(np.array([x]))
    _assert_encloses(name, x, float(lo[0]), float(hi[0]), _mp_f(name, x))


@pytest.mark.parametrize(("name", "x"), [c for c in _cases() if c[0] != "gelu"])
def test_fast_derivative_encloses_mpmath(name: str, x: float) -> None:
    if not _usable(name, x) or x == 0 and name in ("reciprocal", "rsqrt"):
        pytest.skip("outside the row's domain")
    arr = np.array([x])
    row = FAST[name]
    lo, hi = row._f(arr, {}, False, d=True), row._f(arr, {}, True, d=True)
    lo = float(np.where(np.isfinite(lo), lo, -np.inf)[0])
    hi = float(np.where(np.isfinite(hi), hi, np.inf)[0])
    _assert_encloses(name, x, lo, hi, _mp_df(name, x))


def test_fast_value_random_sweep_against_mpmath() -> None:
    """Random points over the whole exponent range (seeded): the bound holds at every one."""
    rng = np.random.default_rng(23)
    xs = np.concatenate([rng.uniform(-1, 1, 60) * 10.0 ** rng.integers(-320, 3, 60),
                         rng.uniform(-750, 750, 40)])
    for name in ["exp", "tanh", "erf", "sigmoid", "softplus", "log", "sqrt"]:
        ok = FAST[name].usable(xs, xs)
        x = xs[ok]
        lo, hi = FAST[name].value(x)
        for xi, a, b in zip(x, lo, hi, strict=True):
            _assert_encloses(name, float(xi), float(a), float(b), _mp_f(name, float(xi)))


@pytest.mark.parametrize("name", ["exp", "tanh", "erf", "sigmoid", "log", "sqrt", "softplus"])
@pytest.mark.parametrize(("l", "u"), [(-0.0, 0.0), (SUB, SUB), (-SUB, SUB), (1e-300, 1e300),
                                      (708.0, 709.9), (-746.0, -745.0), (-1e300, -1e299),
                                      (19.0, 23.0), (0.5, 0.5), (-math.inf, 0.5), (0.5, math.inf)])
def test_fast_interval_encloses_endpoints(name: str, l: float, u: float) -> None:
    row = FAST[name]
    if not row.usable_interval(np.array([l]), np.array([u]))[0]:
        pytest.skip("outside the row's domain")
    lo, hi = (float(v[0]) for v in row.interval(np.array([l]), np.array([u])))
    assert lo <= hi
    inner = [max(l, -1e3), min(u, 1e3)]  # (points inside an infinite end: its limit is claimed)
    for x in (l, u, (l + u) / 2 if math.isfinite(l + u) else None, *inner):
        if x is not None and math.isfinite(x) and _usable(name, x):
            _assert_encloses(name, x, lo, hi, _mp_f(name, x))


# -- fast vs exact engine on one-element graphs at adversarial boxes --------------------------

_BOXES = [(0.0, 0.0), (-0.0, 0.0), (SUB, SUB), (-SUB, SUB), (-1e-300, 1e-300), (1e-300, 1e-300),
          (0.5, 0.5), (-3.0, 2.0), (19.0, 23.0), (700.0, 709.7), (-746.0, -700.0),
          (1e300, 1e300), (-1e300, -1e300), (-1e300, 1e300)]


@pytest.mark.parametrize("op", ["relu", "tanh", "sigmoid", "erf", "exp", "softplus", "abs"])
@pytest.mark.parametrize(("l", "u"), _BOXES)
def test_fast_engines_enclose_exact_on_one_element(op: str, l: float, u: float) -> None:
    """y = op(x) on x in [l, u]: the fast IBP/CROWN bounds (float64) enclose the exact engine's
    (Fractions) and the true values (mpmath) at the box's ends."""
    from torchlean.certificates.lower import lower
    from torchlean.spec import Graph, Node, Value
    from torchlean.verify import engines

    g = Graph([Value("x", (1, 1), "float64")], {}, [Node(op, ["x"], "y")], ["y"]).check()
    bg = lower(g.to_dict())
    L, H = np.array([[l]]), np.array([[u]])
    try:
        el, eu = engines.exact_ibp(bg, [l], [u])
    except Exception:  # (the exact row refuses, e.g. exp past EXP_MAX): nothing to compare
        el = eu = None
    for fast in (engines.fast_ibp, engines.fast_crown):
        fl, fu = (float(v[0, 0]) for v in fast(bg, L, H))
        assert not (math.isnan(fl) or math.isnan(fu)) and fl <= fu
        if el is not None:
            assert Fraction(fl) <= el[0] if math.isfinite(fl) else fl == -math.inf
            assert Fraction(fu) >= eu[0] if math.isfinite(fu) else fu == math.inf
        for x in (l, u):
            m = mpmath.mpf(x)
            v = max(m, 0) if op == "relu" else abs(m) if op == "abs" else _mp_f(op, x)
            _assert_encloses(op, x, fl, fu, v)


# -- the stated libm assumption, measured on this platform ------------------------------------

def test_libm_within_the_assumed_4_ulp() -> None:
    """``fast_functions``' assumption: numpy's exp/log/log1p/tanh/sqrt and ``math.erf`` are within
    4 ulp (it does not assume correct rounding). Measured near their formula switches (tanh's
    0.55, erf's 0.84375, exp's underflow to subnormals, log near 1): the worst seen here was
    about 1.1 ulp (tanh near 0.548), far inside both 4 ulp and the widening R = 2^-36."""
    rng = np.random.default_rng(2323)
    sets = {
        "exp": (np.exp, mpmath.exp, [rng.uniform(-745, 709.78, 300), rng.uniform(-1e-8, 1e-8, 50)]),
        "tanh": (np.tanh, mpmath.tanh, [rng.uniform(-25, 25, 200), rng.uniform(0.5, 0.6, 200)]),
        "log": (np.log, mpmath.log, [10.0 ** rng.uniform(-323, 308, 200), 1 + rng.uniform(-1e-3, 1e-3, 100)]),
        "log1p": (np.log1p, mpmath.log1p, [10.0 ** rng.uniform(-320, 0, 200), rng.uniform(-0.5, 0.5, 100)]),
        "erf": (lambda a: np.array([math.erf(v) for v in a]), mpmath.erf,
                [rng.uniform(-6.5, 6.5, 200), rng.uniform(0.8, 0.9, 100)]),
        "sqrt": (np.sqrt, mpmath.sqrt, [10.0 ** rng.uniform(-323, 308, 200)]),
    }
    for name, (f, ref, parts) in sets.items():
        xs = np.concatenate(parts)
        ys = f(xs)
        for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
            r = ref(mpmath.mpf(x))
            unit = math.ulp(float(r)) if abs(r) >= sys.float_info.min else SUB
            assert abs(mpmath.mpf(y) - r) <= 4 * unit, (name, x, y)


@pytest.mark.parametrize("c", [1.5, -1.0, 3.0, 0.5, -2.5, 2.0, 7.0, -3.0, 0.1, 33.3])
def test_fast_pow_encloses_mpmath(c: float) -> None:
    """pow's two formulas (repeated squaring for integer c, exp(c log x) otherwise) at the edges."""
    row = FAST["pow"]
    for x in _EDGE:
        if row.usable(np.array([x]), np.array([x]), exponent=c)[0]:
            lo, hi = row.value(np.array([x]), exponent=c)
            _assert_encloses("pow", x, float(lo[0]), float(hi[0]), mpmath.mpf(x) ** mpmath.mpf(c))


@pytest.mark.parametrize("name", ["gelu", "silu", "square"])
@pytest.mark.parametrize(("l", "u"), [(-5.0, 0.1), (-1e-300, 1e-300), (-800.0, -700.0), (-2.0, -0.5),
                                      (-0.76, -0.74), (-1e300, 1e300)])
def test_fast_nonmonotone_interval_encloses_samples(name: str, l: float, u: float) -> None:
    """The non-monotone rows' interval (``functions.min_g`` over the convexity pieces) holds at the ends
    and 100 seeded samples (at the extreme box, at 0, +-1 and gelu/silu's minimiser)."""
    lo, hi = (float(v[0]) for v in FAST[name].interval(np.array([l]), np.array([u])))
    rng = np.random.default_rng(7)
    xs = [l, u, *rng.uniform(l, u, 100).tolist()] if u - l < 1e10 else [l, u, 0.0, -0.75179, 1.0, -1e10]
    for x in xs:
        _assert_encloses(name, x, lo, hi, _mp_f(name, x))


@pytest.mark.parametrize(("name", "box"), [("exp", (-5.0, 11.0)), ("sigmoid", (-30.0, 0.0)),
                                           ("tanh", (-20.0, 0.0)), ("softplus", (-30.0, 30.0))])
def test_fast_lower_intercept_below_true_minimum(name: str, box: tuple[float, float]) -> None:
    """lower_intercept(l, u, a) <= min over [l, u] of f(x) - a x (mpmath: the ends and the root of
    f' = a), for seeded boxes and slopes up to twice the chord's (far tails included)."""
    rng = np.random.default_rng(17)
    for _ in range(30):
        l, u = sorted(rng.uniform(*box, 2).tolist())
        fl, fu = _mp_f(name, l), _mp_f(name, u)
        a = float(rng.uniform(0, 2) * (fu - fl) / (u - l))
        b = float(FAST[name].lower_intercept(np.array([l]), np.array([u]), np.array([a]))[0])
        cands = [mpmath.mpf(l), mpmath.mpf(u)]
        try:
            r = mpmath.findroot(lambda t: _mp_df(name, t) - a, (l + u) / 2)
            if l <= r <= u:
                cands.append(r)
        except (ValueError, ZeroDivisionError):
            pass
        true_min = min(_mp_f(name, x) - a * x for x in cands)
        assert b == -math.inf or mpmath.mpf(b) <= true_min, (name, l, u, a, b, true_min)
