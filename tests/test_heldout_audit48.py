"""Audit48: the FPCore front end of ``floats fpcore`` (parsing and semantics) against independent
references: mpmath at 400 bits for the real value, numpy binary64 (or mpmath with the named
rounding) step by step for the float value.

Holes found (both printed a false bound before the fix):
- hex numerals were read with ``float.fromhex`` (rounded to binary64), so the real program's
  constant was the rounded one and its rounding error went uncounted: ``(- (* x
  0x1.00000000000007ffp0) x)`` over [1e300, 2e300] printed 2.96e-323 for an error of 1.1e284;
- the ``:round`` property was ignored: ``:round toPositive`` programs got round-to-nearest bounds
  (1.1e-16 where x*y rounded up errs by 2.2e-16).
"""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from torchlean.floats.fpbound import analyse
from torchlean.floats.fpcore import FPCoreError, to_benchmarks

C_HEX = "0x1.00000000000007ffp0"  # 1 + 0x7ff * 2^-64: between 1 and 1 + 2^-53, rounds to 1


def _one(text: str):
    (b,) = to_benchmarks(text)
    return b


def _c_exact():
    with mpmath.workprec(400):
        return mpmath.mpf(1) + mpmath.mpf(0x7FF) / mpmath.mpf(2) ** 64


@pytest.mark.parametrize("lo,hi", [("1", "2"), ("1e300", "2e300")])
def test_hex_constant_rounding_is_counted(lo, hi):
    b = _one(f"(FPCore (x) :pre (<= {lo} x {hi}) (- (* x {C_HEX}) x))")
    assert not b.unsupported
    bound = analyse(b).bound
    c64 = np.float64(float.fromhex(C_HEX))  # the program's constant: binary64 RNE of C_HEX
    assert c64 == 1.0
    rng = np.random.default_rng(48)
    xs = list(np.linspace(float(lo), float(hi), 7)) + list(rng.uniform(float(lo), float(hi), 50))
    worst = 0.0
    for x in xs:
        x = np.float64(x)
        f = (x * c64) - x  # numpy binary64, step by step
        with mpmath.workprec(400):
            r = mpmath.mpf(float(x)) * _c_exact() - mpmath.mpf(float(x))
            worst = max(worst, float(abs(mpmath.mpf(float(f)) - r)))
    assert worst > 0
    assert bound >= worst, (bound, worst)


def test_hex_numerals_are_exact():
    cases = {"0x1.8p1": Fraction(3), "-0x1p-3": Fraction(-1, 8), "0xAb.cP+2": Fraction(687),
             "0x1.": Fraction(1), C_HEX: 1 + Fraction(0x7FF, 2**64),
             "0x1p-1080": Fraction(1, 2**1080), "0x1.fffffffffffff8p0": 2 - Fraction(1, 2**53)}
    for text, want in cases.items():
        b = _one(f"(FPCore (x) :pre (<= 0 x 1) (+ x {text}))")
        assert b.body.args[1].value == want, text


@pytest.mark.parametrize("text", ["0x1.fffffffffffff7ffp1023", "0x1.fffffffffffff8p1023", "0x1p1024",
                                  "-0x1p5000", "0x1.fffffffffffffp1023", "0x1p-1074"])
def test_hex_range_refusal_matches_binary64_overflow(text):
    try:  # binary64 RNE overflows exactly when the value reaches 2^1024 - 2^970
        float.fromhex(text)
        overflows = False
    except OverflowError:
        overflows = True
    src = f"(FPCore (x) :pre (<= 0 x 1) (+ x {text}))"
    if overflows:
        with pytest.raises(FPCoreError):
            to_benchmarks(src)
    else:
        assert float(_one(src).body.args[1].value) == float.fromhex(text)  # (exact, then RNE)


def test_cli_prints_a_sound_bound_for_a_hex_constant(tmp_path):
    f = tmp_path / "h.fpcore"
    f.write_text(f"(FPCore hexbig (x) :pre (<= 1e300 x 2e300) (- (* x {C_HEX}) x))\n")
    out = subprocess.run([sys.executable, "-m", "torchlean.floats", "fpcore", str(f), "--samples",
                          "50"], capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("hexbig"))
    printed = float(row.split()[1])
    x = 2e300 - 2e284  # a float near the top of the box
    with mpmath.workprec(400):
        err = abs(mpmath.mpf((np.float64(x) * 1.0) - np.float64(x)) - (mpmath.mpf(x) * _c_exact()
                                                                      - mpmath.mpf(x)))
    assert printed >= float(err) > 1e284
    assert "UNSOUND" not in out


@pytest.mark.parametrize("mode,mp_mode", [("toPositive", "u"), ("toNegative", "d"), ("toZero", "f")])
def test_round_property_not_bounded_as_nearest(mode, mp_mode):
    b = _one(f"(FPCore (x y) :round {mode} :pre (and (<= 1 x 1.4) (<= 1 y 1.4)) (* x y))")
    if b.unsupported:  # refusing is sound
        assert ":round" in b.unsupported
        return
    bound = analyse(b).bound
    worst = 0.0
    for x, y in [(1 + 2**-52, 1 + 2**-52), (1 + 3 * 2**-52, 1 + 5 * 2**-52), (1.3, 1.07)]:
        with mpmath.workprec(400):
            exact = mpmath.mpf(x) * mpmath.mpf(y)
        f = mpmath.fmul(x, y, prec=53, rounding=mp_mode)  # the program's product, directed
        with mpmath.workprec(400):
            worst = max(worst, float(abs(f - exact)))
    assert bound >= worst, (bound, worst)


def test_round_nearest_even_stays_supported():
    b = _one("(FPCore (x y) :round nearestEven :pre (and (<= 1 x 1.4) (<= 1 y 1.4)) (* x y))")
    assert not b.unsupported
    with mpmath.workprec(400):
        err = abs(mpmath.mpf(float(np.float64(1 + 2**-52) * np.float64(1 + 2**-52)))
                  - mpmath.mpf(1 + 2**-52) ** 2)
    assert analyse(b).bound >= float(err) > 0


def _eval_exact(n, env):
    """The real value of a parsed DAG (Fractions; no sqrt), an independent tiny evaluator."""
    if n.op == "var":
        return env[n.name]
    if n.op == "const":
        return n.value
    a = [_eval_exact(x, env) for x in n.args]
    return {"add": lambda: a[0] + a[1], "sub": lambda: a[0] - a[1], "mul": lambda: a[0] * a[1],
            "div": lambda: a[0] / a[1], "neg": lambda: -a[0]}[n.op]()


@pytest.mark.parametrize("x", [Fraction(3, 2), Fraction(-7, 4), Fraction(5)])
def test_let_and_let_star_scoping(x):
    # let: y sees the outer x; let*: y sees the new x; the body's x is the new one in both
    let = _one("(FPCore (x) :pre (<= -2 x 5) (let ((x (* x x)) (y x)) (- x y)))")
    star = _one("(FPCore (x) :pre (<= -2 x 5) (let* ((x (* x x)) (y x)) (- x y)))")
    shadow = _one("(FPCore (x) :pre (<= -2 x 5) (let ((y (+ x 1))) (let ((x y) (y x)) (/ x y))))")
    assert _eval_exact(let.body, {"x": x}) == x * x - x
    assert _eval_exact(star.body, {"x": x}) == 0
    assert _eval_exact(shadow.body, {"x": x}) == (x + 1) / x
    # and the bound of the plain let holds against numpy binary64 step by step
    bound = analyse(let).bound
    for xf in np.linspace(-2, 5, 41):
        f = np.float64(xf) * np.float64(xf) - np.float64(xf)
        with mpmath.workprec(400):
            err = abs(mpmath.mpf(float(f)) - (mpmath.mpf(xf) ** 2 - mpmath.mpf(xf)))
        assert bound >= float(err)


@pytest.mark.parametrize("lit,exact", [("0.1", Fraction(1, 10)), ("1/3", Fraction(1, 3)),
                                       ("-2.7e-3", Fraction(-27, 10000))])
def test_inexact_literal_rounding_is_counted(lit, exact):
    b = _one(f"(FPCore (x) :pre (<= 1e10 x 1e12) (* x {lit}))")
    assert b.body.args[1].value == exact
    bound = analyse(b).bound
    c = np.float64(float(exact))
    worst = 0.0
    for xf in np.random.default_rng(48).uniform(1e10, 1e12, 200):  # (not round numbers:
        f = np.float64(xf) * c  # 3.97e10 * fl(0.1) happens to round to 3.97e9 exactly)
        with mpmath.workprec(400):
            r = mpmath.mpf(xf) * mpmath.mpf(exact.numerator) / exact.denominator
            worst = max(worst, float(abs(mpmath.mpf(float(f)) - r)))
    assert bound >= worst > 0


def test_strict_and_reversed_preconditions_box():
    b = _one("(FPCore (x y) :pre (and (> 2 x) (>= x 1/2) (< 0 y 3) (<= y 5)) (/ x y))")
    assert b.box == {"x": (Fraction(1, 2), Fraction(2)), "y": (Fraction(0), Fraction(3))}
    assert ("x", 1) in b.strict and ("y", 0) in b.strict
    # 0 is in the closed box of the divisor: no finite bound may be claimed
    assert analyse(b).bound == float("inf")


@pytest.mark.parametrize("props", [":pre (<= 0 x 1000) :pre (<= 0 x 1)",
                                   ":pre (<= 0 x 1) :pre (<= 0 x 1000)"])
def test_pre_given_twice_is_refused_or_bounds_both_readings(props):
    b = _one(f"(FPCore (x) {props} (* x 0.1))")
    if b.unsupported:
        assert "twice" in b.unsupported
        return
    bound = analyse(b).bound  # sound under either reading only if it covers x up to 1000
    worst = 0.0
    for xf in np.random.default_rng(7).uniform(500, 1000, 200):
        with mpmath.workprec(400):
            f = np.float64(xf) * np.float64(0.1)
            worst = max(worst, float(abs(mpmath.mpf(float(f)) - mpmath.mpf(xf) / 10)))
    assert bound >= worst > 0


def test_precision_given_twice_is_refused():
    for props in (":precision binary32 :precision binary64", ":precision binary64 :precision binary32"):
        b = _one(f"(FPCore (x) {props} :pre (<= 1 x 2) (* x 0.1))")
        assert b.unsupported or b.precision != "binary64"


@pytest.mark.parametrize("bad", ["(* x 2x)", "(+ x 1.5.2)", "(+ x 1-2)", "(* x 0x1p3x)", "(+ x 1/3/4)"])
def test_malformed_numerals_are_refused_not_split(bad):
    # not FPCore numerals (FPBench's tools refuse them); before, "2x" was read as the two items
    # 2 x (so (* x 2x) became x*2*x) and "1.5.2" as 1.5 .2
    with pytest.raises(FPCoreError):
        to_benchmarks(f"(FPCore (x) :pre (<= 1 x 2) {bad})")
    with pytest.raises(FPCoreError):  # also in :pre, where 1.5.2 made the box empty (bound 0)
        to_benchmarks(f"(FPCore (x) :pre (<= 1 x {bad[5:-1]}) (+ x 1))")


@pytest.mark.parametrize("good,value", [("1.5", Fraction(3, 2)), ("-.5e-3", Fraction(-1, 2000)),
                                        ("+7/4", Fraction(7, 4)), ("0x1.8p1", Fraction(3)),
                                        ("1e5", Fraction(10**5)), ("5.", Fraction(5))])
def test_well_formed_numerals_still_read(good, value):
    for text in (f"(FPCore (x) :pre (<= 1 x 2) (+ x {good}))", f"(FPCore (x) :pre (<= 1 x 2) [+ x {good}])",
                 f"(FPCore (x) :pre (<= 1 x 2) (+ x {good}); c\n)"):
        assert _one(text).body.args[1].value == value
