"""Printing a checked number without claiming more than was checked (audit41).

A checked lower bound lo printed by ``f"{lo:.6g}"`` rounds to nearest and can print a number above
lo, so the printed "y >= 0.123457" is false where y = 0.1234567896 (likewise an upper bound or an
epsilon printed below itself, or an input box printed wider than the one checked). Every number a
command prints or writes as a bound goes through here: rounded *outward* (``"down"`` for lower
bounds and the ends a box is shrunk from, ``"up"`` for upper bounds and epsilons), by Python's own
``decimal`` (a correctly rounded division under ``ROUND_FLOOR`` / ``ROUND_CEILING``) on the exact
value (a Fraction, int or float; a float is a binary fraction, read exactly). Untrusted: a wrong
digit here misprints a checked claim, it never changes what the checker accepts.
"""

from __future__ import annotations

import math
import numbers
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from fractions import Fraction
from typing import Any

from .certificates.core import float_below

__all__ = ["down", "up", "text", "float_out"]


def _exact(q: Any) -> Fraction | float:
    """q as a Fraction (a float exactly), or the float itself when it is inf or nan."""
    if isinstance(q, numbers.Rational):  # (Fraction, int, numpy's integers)
        return Fraction(int(q.numerator), int(q.denominator))
    f = float(q)  # (numpy scalars; a float is returned unchanged by float())
    return Fraction(f) if math.isfinite(f) else f


def text(q: Any, direction: str, digits: int = 6, style: str = "g") -> str:
    """A decimal numeral of at most ``digits`` significant digits whose exact value is <= q
    (``direction`` "down") or >= q ("up"), the nearest such; ``style`` "g" or "e" as Python's
    float formats (``f"{x:.{digits}g}"``, ``f"{x:.{digits - 1}e}"``). inf and -inf print as
    themselves; nan as "nan" (no bound)."""
    if direction not in ("down", "up"):
        raise ValueError(f"direction must be 'down' or 'up', got {direction!r}")
    if digits < 1 or style not in ("g", "e"):
        raise ValueError(f"bad digits {digits!r} or style {style!r}")
    q = _exact(q)
    if isinstance(q, float):
        return "nan" if q != q else ("inf" if q > 0 else "-inf")
    with localcontext() as ctx:
        ctx.prec, ctx.rounding = digits, ROUND_FLOOR if direction == "down" else ROUND_CEILING
        ctx.Emin, ctx.Emax = -999_999_999, 999_999_999
        d = Decimal(q.numerator) / Decimal(q.denominator)  # (one correctly rounded division)
    spec = f".{digits}g" if style == "g" else f".{digits - 1}e"
    # float's formatting gives the familiar spelling (1.5e-07, not Decimal's 1.5e-7); a decimal of
    # at most 15 digits in binary64's normal range reads back through the float exactly, and the
    # comparison below keeps it honest anywhere else (subnormal, past the range, > 15 digits)
    f = float(d)
    out = format(f, spec) if math.isfinite(f) else ""
    if not out or Decimal(out) != d:
        out = format(d, spec)
    return out


def down(q: Any, digits: int = 6, style: str = "g") -> str:
    """``text(q, "down", ...)``: a lower bound's numeral (<= q)."""
    return text(q, "down", digits, style)


def up(q: Any, digits: int = 6, style: str = "g") -> str:
    """``text(q, "up", ...)``: an upper bound's or an epsilon's numeral (>= q)."""
    return text(q, "up", digits, style)


def float_out(q: Any, direction: str) -> float:
    """A binary64 f <= q ("down") or >= q ("up") whose ``repr`` (what ``json.dumps`` writes) also
    lies on that side of q: a float written to a JSON file is read back as f by a float parser and
    as its decimal text by an exact one, and both must keep the claim. OverflowError past binary64;
    at the largest float itself (its repr lies below it) the outward float is the infinity.
    (The repr of the float just outside the nearest outward one lies beyond that one's midpoint,
    so one more step always suffices.)"""
    if direction not in ("down", "up"):
        raise ValueError(f"direction must be 'down' or 'up', got {direction!r}")
    q = _exact(q)
    if isinstance(q, float):
        if q != q:
            raise ValueError("nan is not a bound")
        return q
    s = 1 if direction == "down" else -1  # (up: mirror, -float_below(-q) >= q)
    f = s * float_below(s * q)
    if s * Fraction(Decimal(repr(f))) > s * q:
        f = math.nextafter(f, -s * math.inf)
    return f
