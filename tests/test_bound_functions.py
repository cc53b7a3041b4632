"""Scalar function rows of the bound table (certificates/functions.py, fast_functions.py) against
mpmath at 50 digits, with the spec's meanings (torchlean/spec/elementwise.py) as the reference."""

from __future__ import annotations

import random
from fractions import Fraction as Q

import mpmath as mp
import numpy as np
import pytest

import torchlean.spec.elementwise  # noqa: F401  (registers the primitives)
from torchlean.certificates import functions as fn
from torchlean.certificates.core import Rejected
from torchlean.certificates.fast_functions import FAST
from torchlean.certificates.functions import FUNCTIONS, DomainError
from torchlean.certificates.slopes import POLICIES
from torchlean.spec import primitives as P
from torchlean.spec.scalar import MPMATH, obj

mp.mp.dps = 50
NAMES = sorted(set(FUNCTIONS) - {"pow"})  # pow (attr exponent): test_pow_rows
# rows that are not spec primitives of their own are pow with a constant exponent
SPEC = {"square": ("pow", {"exponent": 2}), "reciprocal": ("pow", {"exponent": -1}),
        "rsqrt": ("pow", {"exponent": -0.5})}
C, A = mp.mpf(0.7978845608028654), mp.mpf(0.044715)


def M(q: Q) -> mp.mpf:
    return mp.mpf(q.numerator) / q.denominator


def spec_value(name: str, x: Q) -> mp.mpf:
    """f(x) from the spec's meaning, evaluated by mpmath."""
    prim, attrs = SPEC.get(name, (name, {}))
    p = P.PRIMITIVES[prim]
    with mp.workdps(60):
        return p.meaning(MPMATH, obj(np.array([M(x)], dtype=object)), **p.check_attrs(attrs))[0]


def _sig(v):
    return 1 / (1 + mp.exp(-v))


# direct mpmath formulas (checked against the spec above) and their derivatives, for true optima
REF = {
    "relu": (lambda x: max(x, 0), lambda x: mp.mpf(x > 0)),
    "leaky_relu": (lambda x: x if x > 0 else mp.mpf(0.01) * x, lambda x: 1 if x > 0 else mp.mpf(0.01)),
    "abs": (abs, lambda x: mp.sign(x)),
    "square": (lambda x: x * x, lambda x: 2 * x),
    "reciprocal": (lambda x: 1 / x, lambda x: -1 / x**2),
    "exp": (mp.exp, mp.exp),
    "log": (mp.log, lambda x: 1 / x),
    "sqrt": (mp.sqrt, lambda x: 1 / (2 * mp.sqrt(x))),
    "rsqrt": (lambda x: 1 / mp.sqrt(x), lambda x: -x ** mp.mpf(-1.5) / 2),
    "tanh": (mp.tanh, lambda x: mp.sech(x) ** 2),
    "erf": (mp.erf, lambda x: 2 / mp.sqrt(mp.pi) * mp.exp(-x * x)),
    "sigmoid": (_sig, lambda x: _sig(x) * _sig(-x)),
    "softplus": (lambda x: mp.log(1 + mp.exp(x)), _sig),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) + x * _sig(x) * _sig(-x)),
    "gelu": (lambda x: x * _sig(2 * C * (x + A * x**3)),
             lambda x: _sig(2 * C * (x + A * x**3)) + x * _sig(2 * C * (x + A * x**3))
             * _sig(-2 * C * (x + A * x**3)) * 2 * C * (1 + 3 * A * x * x)),
}
KINKS = {"relu": [0], "leaky_relu": [0], "abs": [0]}


def f_ref(name: str, x) -> mp.mpf:
    return REF[name][0](mp.mpf(x))


def true_min(name: str, l: Q, u: Q, a: Q, s: int = 1) -> tuple[mp.mpf, mp.mpf]:
    """(min over [l, u] of s*f(x) - a*x, argmin) by mpmath: endpoints, kinks and the roots of
    s*f'(x) = a found by sign changes on a grid and 130 bisection steps."""
    f, df = REF[name]
    lo, hi, am = M(l), M(u), M(a)
    cands = [lo, hi] + [mp.mpf(k) for k in KINKS.get(name, []) if lo < k < hi]
    grid = [lo + (hi - lo) * i / 128 for i in range(129)]
    h = [s * df(x) - am for x in grid]
    for x0, x1, h0, h1 in zip(grid, grid[1:], h, h[1:]):
        if (h0 < 0) != (h1 < 0):
            for _ in range(130):
                mid = (x0 + x1) / 2
                if (s * df(mid) - am < 0) == (h0 < 0):
                    x0 = mid
                else:
                    x1 = mid
            cands.append(x0)
    vals = [(s * f(x) - am * x, x) for x in cands]
    return min(vals)


def intervals(name: str, rng: random.Random, n: int):
    """Random intervals: tiny, moderate, wide, straddling 0 / the inflection points, far tails."""
    pos = name in ("log", "sqrt", "rsqrt", "reciprocal")
    out = []
    centres = [0.0, 1.4185, -1.4185, 2.3994, -2.3994, 7.0, -7.0, 40.0, -40.0]
    for i in range(n):
        kind = i % 5
        if kind == 0:
            c = rng.choice(centres) + rng.uniform(-0.5, 0.5)
            w = 10 ** rng.uniform(-12, -3)
        elif kind == 1:
            c, w = rng.uniform(-5, 5), rng.uniform(0.1, 6)
        elif kind == 2:
            c, w = rng.uniform(-50, 50), 10 ** rng.uniform(1, 3)
        elif kind == 3:
            c, w = rng.choice(centres), rng.uniform(0.01, 3)
        else:
            c, w = rng.choice([-1, 1]) * rng.uniform(20, 300), rng.uniform(0, 20)
        l, u = c - w / 2, c + w / 2
        if pos:
            l, u = abs(l) + 1e-3, abs(u) + 1e-3
            l, u = min(l, u), max(l, u)
        if name == "exp":
            l, u = min(l, 200.0), min(u, 200.0)
        if i % 4 == 3:  # non-dyadic rationals, as a certificate may state them
            out.append((Q(l).limit_denominator(3**9), Q(u).limit_denominator(7**8)))
            out[-1] = (min(out[-1]), max(out[-1]))
        else:
            out.append((Q(l), Q(u)))
    return out


def slopes(row, l: Q, u: Q, rng: random.Random):
    a_lo, a_up = row.policy_slopes(POLICIES[0], l, u)
    return [a_lo, a_up, Q(0), Q(rng.uniform(-2, 2)), Q(rng.uniform(-1e-3, 1e-3))]


def sample_points(l: Q, u: Q, rng: random.Random, k: int = 16):
    pts = [l, u] + [l + (u - l) * Q(rng.random()) for _ in range(k)]
    return pts + [Q(0)] * (l < 0 < u)


def tol(*xs) -> mp.mpf:
    return mp.mpf(10) ** -40 * (1 + sum(abs(x) for x in xs))


@pytest.mark.parametrize("name", NAMES)
def test_value_encloses_spec(name):
    row, rng = FUNCTIONS[name], random.Random(name)
    pos = name in ("log", "sqrt", "rsqrt", "reciprocal")
    xs = [Q(1, 3), Q(7, 5), Q(1, 10**30), Q(10**6), Q(rng.uniform(0.001, 30)), Q(2.0**-500)]
    xs += [Q(rng.uniform(-40, 40)) for _ in range(10)] + [Q(-1, 3), Q(-45), Q(-10**6), Q(0)]
    xs += [Q(2642.98), Q(40000)]  # (exp: past binary64, exact dyadics of ~3,800 and ~57,700 bits)
    xs = [abs(x) for x in xs if x != 0] if pos else xs
    for x in xs:
        if name == "exp" and x > fn.EXP_MAX:
            continue
        lo, hi = row.value(x)
        y = spec_value(name, x)
        assert M(lo) - tol(y) <= y <= M(hi) + tol(y), (name, x)
        clamped = name in ("exp", "sigmoid", "softplus", "silu", "gelu", "tanh") and abs(x) > 500
        if not clamped and y != 0:
            assert M(hi - lo) <= abs(y) * mp.mpf(2) ** -60, (name, x)


@pytest.mark.parametrize("name", NAMES)
def test_lines_are_sound_for_any_slope(name):
    row, rng = FUNCTIONS[name], random.Random("lines" + name)
    for l, u in intervals(name, rng, 20):
        for a in slopes(row, l, u, rng):
            b_lo, b_up = row.lower_intercept(l, u, a), row.upper_intercept(l, u, a)
            lo, hi = row.interval(l, u)
            for x in sample_points(l, u, rng):
                y, ax = f_ref(name, M(x)), M(a) * M(x)
                assert ax + M(b_lo) <= y + tol(y, ax), (name, l, u, a, x)
                assert y <= ax + M(b_up) + tol(y, ax), (name, l, u, a, x)
                assert M(lo) - tol(y) <= y <= M(hi) + tol(y), (name, l, u, x)


def test_exp_past_binary64_up_to_exp_max():
    """exp on intervals past binary64 (softmax's exp(x_j - x_i) on the trained char GPT's box asks
    [-1321.49, 1321.49]; EXP_MAX = 2^16 is a size guard, its enclosures exact dyadics): the interval
    and the lines at the default and other slopes hold at mpmath points."""
    row, rng = FUNCTIONS["exp"], random.Random("wide-exp")
    for l, u in [(Q(-132149, 100), Q(132149, 100)), (Q(1000), Q(3050)), (Q(-5), Q(2**16))]:
        lo, hi = row.interval(l, u)
        el, eu = mp.exp(M(l)), mp.exp(M(u))
        assert M(lo) - tol(el) <= el and eu <= M(hi) + tol(eu) and M(hi) <= eu * (1 + mp.mpf(2) ** -80)
        for a in slopes(row, l, u, rng):
            b_lo, b_up = row.lower_intercept(l, u, a), row.upper_intercept(l, u, a)
            for x in sample_points(l, u, rng):
                y, ax = f_ref("exp", M(x)), M(a) * M(x)
                assert ax + M(b_lo) <= y + tol(y, ax), (l, u, a, x)
                assert y <= ax + M(b_up) + tol(y, ax), (l, u, a, x)
                assert M(lo) - tol(y) <= y <= M(hi) + tol(y), (l, u, x)


@pytest.mark.parametrize("name", NAMES)
def test_intercepts_tight_and_inflated_claims_fail(name):
    """On moderate intervals the intercept is within 1e-9 of the true optimum, so a claimed
    intercept 1e-9 above the truth (an invalid line) is refused and one 1e-9 below is accepted."""
    row, rng = FUNCTIONS[name], random.Random("tight" + name)
    cases = [iv for i, iv in enumerate(intervals(name, rng, 15)) if i % 5 in (1, 3)]
    for l, u in cases:
        for a in slopes(row, l, u, rng)[:4]:
            for s in (1, -1):
                ours = row.lower_intercept(l, u, a) if s > 0 else -row.upper_intercept(l, u, -a)
                best, _ = true_min(name, l, u, a, s)
                assert M(ours) <= best + tol(best)
                eps = mp.mpf(10) ** -9 * (1 + abs(best))
                assert not M(ours) >= best + eps  # an inflated claim is refused
                assert M(ours) >= best - eps  # a valid claim just below the optimum passes


@pytest.mark.parametrize("name", NAMES)
def test_interval_tight(name):
    row, rng = FUNCTIONS[name], random.Random("iv" + name)
    for l, u in [iv for i, iv in enumerate(intervals(name, rng, 10)) if i % 5 in (1, 3)]:
        lo, hi = row.interval(l, u)
        mn, _ = true_min(name, l, u, Q(0), 1)
        mx, _ = true_min(name, l, u, Q(0), -1)
        assert M(lo) <= mn + tol(mn) and -mx <= M(hi) + tol(mx)
        assert mn - M(lo) < 1e-9 * (1 + abs(mn)) and M(hi) + mx < 1e-9 * (1 + abs(mx))


def test_leaky_relu_slope_attr_and_intervals_rule():
    row = FUNCTIONS["leaky_relu"]
    assert row.value(Q(-2))[0] == -2 * Q(0.01)  # the spec's binary64 0.01, not 1/100
    assert row.interval(Q(-3), Q(2), slope=Q(1, 5)) == (Q(-3, 5), Q(2))
    # a slope outside [0, 1] (not increasing, or not the proved rule) goes through the generic rule
    assert row.interval(Q(-3), Q(2), slope=-2) == (Q(0), Q(6))
    assert row.lower_intercept(Q(-3), Q(2), Q(1, 5), slope=Q(1, 5)) == 0
    assert FUNCTIONS["relu"].interval(Q(-3), Q(-1)) == (0, 0)


def test_domain_errors():
    bad = [("log", 0, 1), ("log", -1, 2), ("sqrt", Q(-1, 10**9), 1), ("rsqrt", 0, 1),
           ("reciprocal", -1, 1), ("reciprocal", 0, 1), ("exp", 0, 70000), ("tanh", 1, 0)]
    for name, l, u in bad:
        for call in (lambda: FUNCTIONS[name].interval(Q(l), Q(u)),
                     lambda: FUNCTIONS[name].lower_intercept(Q(l), Q(u), Q(1))):
            with pytest.raises(DomainError):
                call()
        with pytest.raises(DomainError):
            FAST[name].upper_intercept(float(l), float(u), 1.0)
    assert issubclass(DomainError, Rejected)


def test_inflection_signs_are_checked_in_exact_arithmetic():
    """The checker's own exact check (run once before the silu/gelu pieces are used) passes, and
    fails on brackets that miss the inflection point or on a range it cannot cover."""
    assert fn.inflections_checked() > 10
    assert fn.check_gelu_signs() == fn.inflections_checked()
    c1, c2 = fn.GELU_X0
    for wrong in ((c1 - Q(1, 10**6), c2 - Q(1, 10**6)), (c1 + Q(1, 10**6), c2 + Q(1, 10**6))):
        with pytest.raises(Rejected, match="gelu: sign"):
            fn.check_gelu_signs(wrong)
    with pytest.raises(Rejected, match="gelu: sign"):  # [0, 2] and [1.5, 3] have both signs
        fn.check_gelu_signs((Q(2), Q(3, 2)))
    s1, s2 = fn.SILU_X0
    fn.check_silu_signs()
    for wrong in ((s1 - Q(1, 10**9), s2 - Q(1, 10**9)), (s1 + Q(1, 10**9), s2 + Q(1, 10**9))):
        with pytest.raises(Rejected, match="silu"):
            fn.check_silu_signs(wrong)


def test_gelu_premise_beyond_3_is_checked(monkeypatch):
    """x v' tanh(v/2) >= 10.5 at x = 3 (the premise of the x >= 3 argument) uses the tanh
    enclosure: a looser one (tanh(3.36) >= 0.99 only) no longer shows it."""
    monkeypatch.setattr(fn, "tanh_enc", lambda x: (Q(99, 100), Q(1)))
    with pytest.raises(Rejected, match="10.5"):
        fn.check_gelu_signs()


def test_inflection_brackets():
    """silu'' and gelu'' change sign exactly once on x > 0, inside the stated float-wide bracket
    (an independent mpmath cross-check of the exact check above)."""
    with mp.workdps(60):
        hs = {"silu": lambda x: 2 - x * mp.tanh(x / 2),
              "gelu": lambda x: 2 * 2 * C * (1 + 3 * A * x * x) + x * 12 * C * A * x
              - x * (2 * C * (1 + 3 * A * x * x)) ** 2 * mp.tanh(C * (x + A * x**3))}
        for name, (c1, c2) in (("silu", fn.SILU_X0), ("gelu", fn.GELU_X0)):
            h = hs[name]
            assert h(M(c1)) > 0 > h(M(c2))
            # f'' itself has those signs there (numerical second derivative of the spec meaning)
            f = REF[name][0]
            assert mp.diff(f, M(c1) - mp.mpf(1e-6), 2) > 0 > mp.diff(f, M(c2) + mp.mpf(1e-6), 2)
            grid = [mp.mpf(i) / 2000 for i in range(0, 12001)]
            signs = [h(x) > 0 for x in grid]
            changes = [x for x, s0, s1 in zip(grid, signs, signs[1:]) if s0 != s1]
            assert len(changes) == 1 and changes[0] < M(c1) < M(c2) < changes[0] + mp.mpf(1) / 2000


def test_wide_intervals_stay_small_and_sound():
    rng = random.Random(7)
    for name in ("sigmoid", "tanh", "erf", "softplus", "silu", "gelu", "relu", "abs", "square", "leaky_relu"):
        row = FUNCTIONS[name]
        for l, u in [(Q(-10**6), Q(10**6)), (Q(-10**6), Q(-999_000)), (Q(5 * 10**5), Q(10**6))]:
            a_lo, a_up = row.policy_slopes(POLICIES[0], l, u)
            b_lo, b_up = row.lower_intercept(l, u, a_lo), row.upper_intercept(l, u, a_up)
            for b in (b_lo, b_up):
                assert b.denominator.bit_length() < 2000 and b.numerator.bit_length() < 2000
            for x in sample_points(l, u, rng, 10):
                y = f_ref(name, M(x))
                assert M(a_lo) * M(x) + M(b_lo) <= y + tol(y, M(a_lo) * M(x))
                assert y <= M(a_up) * M(x) + M(b_up) + tol(y, M(a_up) * M(x))
            flo, fhi = FAST[name].interval(float(l), float(u))
            assert np.isfinite(flo) and np.isfinite(fhi)


@pytest.mark.parametrize("name", NAMES)
def test_fast_is_sound_and_close_to_exact(name):
    row, fast, rng = FUNCTIONS[name], FAST[name], random.Random("fast" + name)
    ivs = [(float(l), float(u)) for l, u in intervals(name, rng, 20)]
    l = np.array([iv[0] for iv in ivs])
    u = np.array([max(iv) for iv in ivs])
    a = np.array([rng.uniform(-2, 2) for _ in ivs])
    a_lo, a_up = fast.policy_slopes(POLICIES[0], l, u)
    f_lo, f_up = fast.lower_intercept(l, u, a_lo), fast.upper_intercept(l, u, a_up)
    r_lo, r_up = fast.lower_intercept(l, u, a), fast.upper_intercept(l, u, a)
    i_lo, i_hi = fast.interval(l, u)
    for k in range(len(ivs)):
        lk, uk = Q(l[k]), Q(u[k])
        for slope, fb_lo, fb_up in ((a_lo[k], f_lo[k], None), (a_up[k], None, f_up[k]),
                                    (a[k], r_lo[k], r_up[k])):
            ak = Q(slope)
            for x in sample_points(lk, uk, rng, 8):
                y, ax = f_ref(name, M(x)), M(ak) * M(x)
                if fb_lo is not None:
                    assert ax + mp.mpf(fb_lo) <= y + tol(y, ax), (name, lk, uk, slope)
                if fb_up is not None:
                    assert y <= ax + mp.mpf(fb_up) + tol(y, ax), (name, lk, uk, slope)
                assert mp.mpf(i_lo[k]) <= y + tol(y) and y <= mp.mpf(i_hi[k]) + tol(y)
            # never tighter than the exact (near-optimal) intercept, and close to it
            if fb_lo is not None:
                ex = row.lower_intercept(lk, uk, ak)
                assert Q(fb_lo) <= ex  # exact <= the true minimum, so fast is sound there too
                assert float(ex) - fb_lo <= 1e-9 * (1 + abs(float(ex)) + abs(slope) * max(abs(lk), abs(uk)))
            if fb_up is not None:
                ex = row.upper_intercept(lk, uk, ak)
                assert Q(fb_up) >= ex
                assert fb_up - float(ex) <= 1e-9 * (1 + abs(float(ex)) + abs(slope) * max(abs(lk), abs(uk)))


def test_fast_value_encloses_and_broadcasts():
    x = np.array([[-3.0, -1e-20, 0.5], [2.0, 30.0, 700.0]])
    for name in ("exp", "tanh", "erf", "sigmoid", "softplus", "silu", "gelu", "square", "abs"):
        lo, hi = FAST[name].value(x)
        assert lo.shape == x.shape
        for v, a, b in zip(x.ravel(), lo.ravel(), hi.ravel()):
            y = f_ref(name, mp.mpf(v))
            assert mp.mpf(a) <= y <= mp.mpf(b)
    b = FAST["tanh"].lower_intercept(np.array([-1.0, 0.0]), np.array([[1.0], [2.0]]), 0.5)
    assert b.shape == (2, 2)


POW_EXPONENTS = [2, 3, 4, -1, -2, -3, 0, 1, 0.5, -0.5, 1.5, 2.25]


@pytest.mark.parametrize("c", POW_EXPONENTS)
def test_pow_rows(c):
    """pow with a constant exponent, against the spec's pow: soundness, tightness, fast vs exact."""
    row, fast, rng = FUNCTIONS["pow"], FAST["pow"], random.Random(f"pow{c}")
    key, cm = f"pow:{c}", mp.mpf(c)
    REF[key] = (lambda x: x**cm if cm != 0 else mp.mpf(1), lambda x: cm * x ** (cm - 1) if cm != 0 else 0)
    p = P.PRIMITIVES["pow"]
    for x in (Q(7, 5), Q(1, 3), Q(1000)):
        with mp.workdps(60):
            y = p.meaning(MPMATH, obj(np.array([M(x)], dtype=object)), **p.check_attrs({"exponent": c}))[0]
        lo, hi = row.value(x, exponent=c)
        assert M(lo) - tol(y) <= y <= M(hi) + tol(y) and M(hi - lo) <= abs(y) * mp.mpf(2) ** -60
    ivs = [(Q(0.3), Q(2.5)), (Q(1, 10**3), Q(7)), (Q(4), Q(4.5)), (Q(50), Q(60))]
    if float(c).is_integer():
        ivs += [(Q(-2.5), Q(-0.3)), (Q(-40), Q(-35))] + ([(Q(-1.5), Q(2))] if c >= 0 else [])
    for l, u in ivs:
        policy = [] if c == 2 else [*row.policy_slopes(POLICIES[0], l, u, exponent=c), Q(0.7)]
        for a in slopes(row, l, u, rng) if c == 2 else policy:
            b_lo = row.lower_intercept(l, u, a, exponent=c)
            b_up = row.upper_intercept(l, u, a, exponent=c)
            lo_true, _ = true_min(key, l, u, a, 1)
            up_true, _ = true_min(key, l, u, -a, -1)
            assert lo_true - mp.mpf(1e-9) * (1 + abs(lo_true)) <= M(b_lo) <= lo_true + tol(lo_true)
            assert -up_true - tol(up_true) <= M(b_up) <= -up_true + mp.mpf(1e-9) * (1 + abs(up_true))
            f_lo = fast.lower_intercept(float(l), float(u), float(a), exponent=c)
            f_up = fast.upper_intercept(float(l), float(u), float(a), exponent=c)
            assert Q(float(f_lo)) <= b_lo and Q(float(f_up)) >= b_up
            assert float(b_lo) - f_lo <= 1e-9 * (1 + abs(float(b_lo)) + abs(float(a) * float(u)))
        lo, hi = row.interval(l, u, exponent=c)
        flo, fhi = fast.interval(float(l), float(u), exponent=c)
        assert Q(float(flo)) <= lo and Q(float(fhi)) >= hi
        for x in sample_points(l, u, rng, 8):
            y = REF[key][0](M(x))
            assert M(lo) - tol(y) <= y <= M(hi) + tol(y)
    if c < 0 and float(c).is_integer():
        with pytest.raises(DomainError):
            row.interval(Q(-1), Q(1), exponent=c)
    if not float(c).is_integer():
        with pytest.raises(DomainError):
            fast.interval(-1.0, 1.0, exponent=c)


@pytest.mark.parametrize("name", ["silu", "gelu"])
def test_bracket_pieces_charge_their_width(name):
    """On the one-ulp bracket around an inflection point, g = f - a x moves by ~|g'| 4e-16 across
    it: the bound must still hold at both ends for steep slopes (fails without the Lipschitz term)."""
    c1, c2 = fn.SILU_X0 if name == "silu" else fn.GELU_X0
    row, fast = FUNCTIONS[name], FAST[name]
    w = (c2 - c1) / 3  # sub-intervals strictly inside the bracket: no other piece covers them
    for l, u in ((c1, c2), (-c2, -c1), (c1 + w, c2 - w), (-c2 + w, -c1 - w)):
        for a in (Q(-3), Q(3)):
            b_lo, b_up = row.lower_intercept(l, u, a), row.upper_intercept(l, u, a)
            f_lo, f_up = fast.lower_intercept(float(l), float(u), float(a)), fast.upper_intercept(
                float(l), float(u), float(a))
            for x in (l, u):
                y, ax = f_ref(name, M(x)), M(a) * M(x)
                assert ax + M(b_lo) <= y <= ax + M(b_up)
                assert ax + mp.mpf(float(f_lo)) <= y <= ax + mp.mpf(float(f_up))


def test_piecewise_linear_intervals_are_the_proved_rules(monkeypatch):
    """relu, abs, leaky_relu and the monotone rows take their interval rules from intervals.py
    (what proofs/ibp.py proves): a changed rule there changes what the rows return."""
    from torchlean.certificates import intervals

    monkeypatch.setattr(intervals, "interval_relu", lambda a, ops=None: (Q(-7), Q(7)))
    monkeypatch.setattr(intervals, "interval_abs", lambda a, ops=None: (Q(-8), Q(8)))
    monkeypatch.setattr(intervals, "interval_leaky_relu", lambda a, slope=None, ops=None: (Q(-9), Q(9)))
    assert FUNCTIONS["relu"].interval(Q(-1), Q(1)) == (-7, 7)
    assert FUNCTIONS["abs"].interval(Q(-1), Q(1)) == (-8, 8)
    assert FUNCTIONS["leaky_relu"].interval(Q(-1), Q(1)) == (-9, 9)
    fake = ((Q(-6), Q(0)), (Q(0), Q(6)))
    monkeypatch.setattr(intervals, "interval_increasing", lambda f, a, ops=None: fake)
    assert FUNCTIONS["tanh"].interval(Q(-1), Q(1)) == (-6, 6)


def test_errorbound_slopes_use_the_row():
    """The error column's slope interval of tanh (mean value theorem over the float hull) is the
    tanh row's f' enclosure at the hull's ends and 0: sech^2 is largest nearest 0."""
    from torchlean.certificates.errorbound import slope_range

    for lo, hi in ((Q(-3), Q(1, 2)), (Q(1, 10), Q(4)), (Q(-20), Q(-19))):
        a, b = slope_range(FUNCTIONS["tanh"], lo, hi, {})
        s2 = mp.sech(M(Q(0 if lo <= 0 <= hi else min(abs(lo), abs(hi))))) ** 2
        s_min = mp.sech(M(max(abs(lo), abs(hi)))) ** 2
        assert s2 <= M(b) <= s2 * (1 + mp.mpf(2) ** -80)
        assert M(a) <= s_min


def test_relu_lines_closed_form_is_valid_and_matches_the_generic_row():
    """``fast_functions.relu_lines`` (the engine's default ReLU lines) against the generic row: the
    same slopes and lower intercepts, and lines below / above relu at sampled points (exact
    comparison in Fractions), including l = u, l = 0, u = 0, wide and overflowing intervals."""
    from torchlean.certificates.fast_functions import relu_lines

    rng = np.random.default_rng(0)
    l = rng.normal(size=4000) * rng.choice([1e-3, 1, 1e3, 1e300], 4000)
    u = l + np.abs(rng.normal(size=4000)) * rng.choice([0, 1e-3, 1, 1e300], 4000)
    l[:4], u[:4] = [0, -1, 0, -1e308], [0, 0, 2, 1e308]
    ok = np.isfinite(u)
    l, u = l[ok], u[ok]
    sl, bl, su, bu = relu_lines(l, u)
    row = FAST["relu"]
    gl, gu = row.policy_slopes(POLICIES[0], l, u)
    assert (sl == gl).all() and (su == gu).all()
    assert (bl == row.lower_intercept(l, u, sl)).all()
    for t in (0.0, 0.25, 0.5, 1.0):
        with np.errstate(over="ignore", invalid="ignore"):
            x = l + (u - l) * t if t else l
        x = np.where(np.isfinite(x), x, u)
        for i in range(0, len(x), 37):
            xi, y = Q(x[i]), max(Q(x[i]), Q(0))
            assert Q(sl[i]) * xi + Q(bl[i]) <= y
            if np.isfinite(bu[i]):
                assert Q(su[i]) * xi + Q(bu[i]) >= y


def test_erf_enclosure_against_mpmath_and_its_constant(monkeypatch):
    """erf_enc (A&S 7.1.6 series, 7.1.13 tail) encloses mpmath's erf at 60 digits, 2/sqrt(pi) lies in
    its 40-digit bracket; with the bracket replaced by the binary64 2/sqrt(pi) (a float constant
    where an enclosure belongs) the enclosure misses the true value."""
    from torchlean.certificates import enclosures as en

    with mp.workdps(60):
        assert M(en.TWO_OVER_SQRT_PI[0]) < 2 / mp.sqrt(mp.pi) < M(en.TWO_OVER_SQRT_PI[1])
        rng = random.Random(19)
        xs = [Q(v) for v in (1e-12, 0.3, -1.7, 3.0, 5.5, 9.999, 10.0, 10.25, -27.0)]
        xs += [Q(rng.uniform(-11, 11)) for _ in range(60)]
        for x in xs:
            lo, hi = en.erf_enc(x)
            y = mp.erf(M(x))
            assert M(lo) <= y <= M(hi), x
            assert M(hi - lo) <= abs(y) * mp.mpf(2) ** -80, x
            dlo, dhi = en.derf_enc(x)
            assert M(dlo) <= 2 / mp.sqrt(mp.pi) * mp.exp(-M(x) ** 2) <= M(dhi)
        en.erf_enc.cache_clear()
        monkeypatch.setattr(en, "TWO_OVER_SQRT_PI", (Q(1.1283791670955126),) * 2)
        encs = {x: en.erf_enc(x) for x in xs if 0 < x <= 10}
        missed = [x for x, (lo, hi) in encs.items() if not M(lo) <= mp.erf(M(x)) <= M(hi)]
        en.erf_enc.cache_clear()
    assert missed
