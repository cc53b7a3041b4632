"""FPBench bounds with linear :pre constraints (triangle1-12) and the half-ulp rounding model.

The observed errors here are computed independently of torchlean's evaluators: Heron's formula
written out in Python floats against Fractions + mpmath at 200 bits, at points sampled near the
constraint boundary (where the error is largest and uniform sampling never goes)."""

from __future__ import annotations

import math
import random
from fractions import Fraction
from pathlib import Path

import mpmath
import pytest

from torchlean.floats.fpbound import analyse
from torchlean.floats.fpcore import to_benchmarks, topo
from torchlean.floats.fplinear import LinearConstraints, affine_forms
from torchlean.floats.interval import I

ROSA = Path(__file__).resolve().parents[1] / "torchlean" / "floats" / "data" / "rosa.fpcore"


@pytest.fixture(scope="module")
def benches():
    return {b.name: b for b in to_benchmarks(ROSA.read_text())}


def heron_float(a: float, b: float, c: float) -> float:
    s = ((a + b) + c) / 2  # the FPCore's evaluation order
    return math.sqrt(((s * (s - a)) * (s - b)) * (s - c))


def heron_error(a: Fraction, b: Fraction, c: Fraction) -> float:
    """|binary64 Heron on fl(a), fl(b), fl(c) - exact Heron on a, b, c|."""
    f = heron_float(float(a), float(b), float(c))
    s = (a + b + c) / 2
    p = s * (s - a) * (s - b) * (s - c)
    with mpmath.workprec(200):
        exact = mpmath.sqrt(mpmath.mpf(p.numerator) / p.denominator)
        return float(abs(mpmath.mpf(f) - exact))


def near_boundary(eps: Fraction, n: int, rng: random.Random, floats: bool) -> list[tuple]:
    """Points of [1, 9]^3 with each side sum > other + eps, one of them within ~1000 eps of tight.
    ``floats``: binary64 inputs; otherwise real inputs (the rounded-inputs model)."""
    out: list[tuple] = []
    while len(out) < n:
        x = Fraction(rng.uniform(1, 9))
        y = Fraction(rng.uniform(1, 9))
        if not floats:
            x += Fraction(rng.getrandbits(40), 2**95)
            y -= Fraction(rng.getrandbits(40), 2**95)
        z = x + y - eps - eps * Fraction(rng.random()) * rng.choice([0, 1, 10, 1000])
        z = Fraction(float(z)) if floats else z
        v = [x, y, z]
        rng.shuffle(v)
        a, b, c = v
        if all(1 <= t <= 9 for t in v) and a + b > c + eps and a + c > b + eps and b + c > a + eps:
            out.append((a, b, c))
    return out


def _eps(b) -> Fraction:
    (_, lhs, _), *_ = b.constraints  # (<= (+ c eps) (+ a b))
    return lhs.args[1].value


@pytest.mark.parametrize("name,boxes", [("triangle1", 1000), ("triangle6", 1000),
                                        ("triangle12", 4000)])
def test_triangle_bounds_finite_and_sound(benches, name, boxes):
    b = benches[name]
    eps = _eps(b)
    r = analyse(b, max_boxes=boxes)
    assert math.isfinite(r.bound)
    rng = random.Random(7)
    obs = max(heron_error(*p) for p in near_boundary(eps, 600, rng, floats=True))
    assert 0 < obs <= r.bound
    # not vacuous: near the boundary the error really is of the bound's size
    assert r.bound <= (4 if boxes == 4000 else 20) * obs
    ri = analyse(b, round_inputs=True, max_boxes=boxes)
    obs_r = max(heron_error(*p) for p in near_boundary(eps, 600, rng, floats=False))
    assert math.isfinite(ri.bound) and 0 < obs_r <= ri.bound


def test_half_ulp_model_is_tight_and_sound():
    (b,) = to_benchmarks("(FPCore (x) :pre (<= 1 x 1.5) (+ x 1))")
    r = analyse(b)
    # x + 1 lies in [2, 2.5]: half an ulp there is 2^-52 (the relative model would give 2.5 u)
    worst = abs(Fraction(1 + (1 + 2.0**-52)) - (2 + Fraction(2) ** -52))
    assert worst == Fraction(2) ** -52
    assert worst <= r.bound <= 1.01 * 2.0**-52


def test_rigidbody1_at_fptaylor_and_daisy(benches):
    ri = analyse(benches["rigidBody1"], round_inputs=True)
    assert ri.bound <= 2.95e-13  # published FPTaylor and Daisy bound
    rng = random.Random(3)
    b = benches["rigidBody1"]
    for _ in range(300):  # real inputs, rounded by the program
        x1, x2, x3 = (Fraction(rng.getrandbits(64), 2**64) * 30 - 15 for _ in range(3))
        f1, f2, f3 = float(x1), float(x2), float(x3)
        got = ((-(f1 * f2) - (2 * f2) * f3) - f1) - f3
        exact = ((-(x1 * x2) - (2 * x2) * x3) - x1) - x3
        assert abs(Fraction(got) - exact) <= ri.bound, b.name


def test_affine_forms_and_dual_bound():
    (b,) = to_benchmarks("""(FPCore (a b c) :pre (and (<= 1 a 9) (<= 1 b 9) (<= 1 c 9)
        (> (+ a b) (+ c 0.1))) (let ([s (/ (+ (+ a b) c) 2)]) (- s c)))""")
    forms = affine_forms(topo(b.body), lambda k: k.value)
    lin, const = forms[id(b.body)]
    assert lin == {"a": Fraction(1, 2), "b": Fraction(1, 2), "c": Fraction(-1, 2)} and const == 0
    lc = LinearConstraints.from_pre([(lhs, rhs) for _, lhs, rhs in b.constraints], topo)
    box = {v: I(1.0, 9.0) for v in "abc"}
    lo = lc.lower(lc.plan(lin), box)
    assert 0.05 - 1e-15 <= lo <= 0.05  # the exact LP minimum (a + b - c) / 2 >= 1/20
    assert lc.contract({"a": I(1.0, 2.0), "b": I(1.0, 2.0), "c": I(8.0, 9.0)}) is None


def test_dual_bound_and_contraction_sound_on_random_lps():
    rng = random.Random(11)
    for _ in range(40):
        vs = ["x", "y", "z"]
        cons = [({v: Fraction(rng.randint(-4, 4), rng.randint(1, 3)) for v in vs},
                 Fraction(rng.randint(-20, 20), rng.randint(1, 7))) for _ in range(2)]
        lc = LinearConstraints(cons)
        lin = {v: Fraction(rng.randint(-5, 5), rng.randint(1, 4)) for v in vs}
        box = {v: I(float(rng.randint(-5, 0)), float(rng.randint(1, 5))) for v in vs}
        lo = lc.lower(lc.plan(lin), box)
        hi = -lc.lower(lc.plan({v: -c for v, c in lin.items()}), box)
        small = lc.contract(box)
        for _ in range(300):
            p = {v: Fraction(rng.randint(int(box[v].lo) * 8, int(box[v].hi) * 8), 8) for v in vs}
            if all(sum(g[v] * p[v] for v in vs) >= h for g, h in cons):
                val = sum(lin[v] * p[v] for v in vs)
                assert lo <= val <= hi
                assert small is not None
                assert all(small[v].lo <= p[v] <= small[v].hi for v in vs)
