"""Outward-rounded binary64 intervals (each end moved one ulp outward after every operation, so
the exact result of the real operation on any points of the operands lies inside)."""

from __future__ import annotations

import math

INF = math.inf


def _dn(x: float) -> float:
    return math.nextafter(x, -INF)


def _upr(x: float) -> float:
    return math.nextafter(x, INF)


class I:  # noqa: E742  (interval)
    __slots__ = ("lo", "hi")

    def __init__(self, lo: float, hi: float | None = None):
        self.lo, self.hi = lo, lo if hi is None else hi

    def __add__(self, o: I) -> I:
        return I(_dn(self.lo + o.lo), _upr(self.hi + o.hi))

    def __sub__(self, o: I) -> I:
        return I(_dn(self.lo - o.hi), _upr(self.hi - o.lo))

    def __neg__(self) -> I:
        return I(-self.hi, -self.lo)

    def __mul__(self, o: I) -> I:
        ps = (self.lo * o.lo, self.lo * o.hi, self.hi * o.lo, self.hi * o.hi)
        if any(math.isnan(p) for p in ps):
            return I(-INF, INF)
        return I(_dn(min(ps)), _upr(max(ps)))

    def recip(self) -> I:
        if self.lo <= 0 <= self.hi:
            return I(-INF, INF)
        return I(_dn(1 / self.hi), _upr(1 / self.lo))

    def __truediv__(self, o: I) -> I:
        return self * o.recip()

    def sqrt(self) -> I:
        if self.lo < 0:
            return I(-INF, INF) if self.hi < 0 else I(0.0, _upr(math.sqrt(self.hi)))
        return I(max(0.0, _dn(math.sqrt(self.lo))), _upr(math.sqrt(self.hi)))

    def mag(self) -> float:
        return max(abs(self.lo), abs(self.hi))
