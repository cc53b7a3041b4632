"""The VNN-COMP result text (``sat`` then ``((X_0 v) ... (Y_0 v))``) with plain decimal numerals.

VNN-COMP's scripts, and most tools, read each value of a result file as a number (Python's
``float``): an SMT-LIB expression such as ``(/ 1 3)`` is no number to them. A counterexample found
exactly (``verify.exact_point``: a ReLU-kink vertex) may be a rational with no terminating decimal
expansion; its X_i are printed as a decimal approximation instead (``SIG`` significant digits or
more), the exact point being the certificate's (``--cert``), which the checker replayed. Every
other X_i (a float, a VNN-LIB box end: all terminating decimals) is printed exactly (audit24).

An approximated X_i is kept inside each input box of the property that holds the exact point: it
is rounded toward the box's inside where the point lies on an end, and printed with more digits
while it would fall outside (a VNN-LIB bound written with many digits). The approximated point need
not be a counterexample itself: the caller says so (audit62).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

#: significant digits of an X_i that has no terminating decimal (float64 needs 17)
SIG = 20
#: at most this many significant digits (a box end has at most ``core.MAX_DIGITS`` digits)
MAX_SIG = 20_000


def terminating(q: Fraction) -> bool:
    """Whether q has a terminating decimal expansion (its denominator is 2^a 5^b)."""
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def exact_text(v: Any) -> str:
    """A numeral whose exact decimal value is ``v`` (audit24): float64's shortest repr where that
    reads back as v exactly, else all of v's digits (a point of a box narrower than a float's
    spacing, or on a strict bound, must not be printed moved out of the box), else SMT-LIB (/ p q)
    (the certificate's form; the result text uses ``x_numerals``)."""
    q = Fraction(v)
    if q.denominator == 1 or abs(q) < 2**1023:
        f = float(q)
        if math.isfinite(f) and Fraction(repr(f)) == q:
            return repr(f)
    if not terminating(q):
        return f"(/ {q.numerator} {q.denominator})"
    k = 0  # (the least k with q * 10^k an integer)
    while (q * 10**k).denominator != 1:
        k += 1
    if k == 0:
        return str(q.numerator)
    digits = str(abs(q.numerator) * 10**k // q.denominator).rjust(k + 1, "0")
    return ("-" if q < 0 else "") + digits[:len(digits) - k] + "." + digits[len(digits) - k:]


def approx_text(q: Fraction, sig: int = SIG, direction: int = 0) -> str:
    """q rounded to ``sig`` significant digits, as a positional decimal numeral: to nearest (ties
    to even), or toward +infinity (``direction`` 1) or -infinity (-1)."""
    if q == 0:
        return "0.0"
    a = abs(q)
    e = len(str(a.numerator)) - len(str(a.denominator))  # (10^e <= a < 10^(e+1) after the fix-ups)
    while Fraction(10) ** e > a:
        e -= 1
    while Fraction(10) ** (e + 1) <= a:
        e += 1
    scale = sig - 1 - e
    m = q * Fraction(10) ** scale
    n = round(m) if direction == 0 else math.ceil(m) if direction > 0 else math.floor(m)
    if scale <= 0:
        return f"{n * 10**-scale}.0"
    digits = str(abs(n)).rjust(scale + 1, "0")
    return ("-" if n < 0 else "") + digits[:-scale] + "." + digits[-scale:]


def _inside(v: Fraction, i: int, regions: list[Any]) -> bool:
    """Whether v meets the i-th input bounds of every region (strict ones strictly)."""
    for r in regions:
        (sa, sb) = (r.strictness()[0][i], r.strictness()[1][i])
        if not ((r.lo[i] < v if sa else r.lo[i] <= v) and (v < r.hi[i] if sb else v <= r.hi[i])):
            return False
    return True


def x_numerals(x: list[Any], spec: Any = None) -> tuple[list[str], list[int]]:
    """The numerals of a counterexample's X_i for the result text, and the indices i printed as an
    approximation (no terminating decimal). ``spec``: the property, whose input boxes holding x the
    approximations are kept in (without it: to nearest, ``SIG`` digits)."""
    xs = [Fraction(v) for v in x]
    regions = [r for r in spec.regions if r.contains(xs)] if spec is not None else []
    out, approx = [], []
    for i, q in enumerate(xs):
        if terminating(q):
            out.append(exact_text(q))
            continue
        approx.append(i)
        # on an end of a box (a non-strict one: x is inside): round toward that box's inside
        up = any(r.lo[i] == q for r in regions)
        down = any(r.hi[i] == q for r in regions)
        direction = 1 if up and not down else -1 if down and not up else 0
        sig = SIG
        s = approx_text(q, sig, direction)
        while not _inside(Fraction(s), i, regions) and sig < MAX_SIG:
            sig *= 2
            s = approx_text(q, sig, direction)
        out.append(s)
    return out, approx


def vnncomp_text(result: Any, spec: Any = None) -> str:
    """The VNN-COMP result format: the verdict, and for sat the assignment of X_i and Y_j, every
    value a plain decimal numeral (``x_numerals``; the Y_j as float64's repr)."""
    if result.verdict != "sat":
        return result.verdict
    nums, _ = x_numerals(result.x, spec)
    xs = "\n".join(f"(X_{i} {s})" for i, s in enumerate(nums))
    ys = "\n".join(f"(Y_{j} {float(v)!r})" for j, v in enumerate(result.y))
    return f"sat\n({xs}\n{ys})"
