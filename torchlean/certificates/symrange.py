"""Symbolic-interval ranges (linear lower/upper functions of the input) for the error checker.

Plain interval propagation loses a factor per layer (ACAS Xu: epsilon ~ 1 instead of ~1e-5),
and the rounding-error terms scale with the ranges. Here every neuron carries linear functions
L(x) <= z(x) <= U(x) of the network input x over the box (ReluVal-style symbolic intervals); the
concrete range is [min L, max U] intersected with the plain interval. Exact rationals throughout;
coefficients are rounded to the grid 2^-PREC to keep numbers small, and each rounding is paid
for in the constant term (|dc * x_i| <= |dc| * max|x_i| over the box), so L stays below and U above.
"""

from __future__ import annotations

from fractions import Fraction

PREC = 64
Lin = tuple[list[Fraction], Fraction]  # (coefficients over the inputs, constant)


def _fixed(q: Fraction, direction: int = 0) -> Fraction:
    """q on the grid 2^-PREC: nearest (0), floor (-1) or ceiling (+1)."""
    if q.denominator <= 1 << PREC and (1 << PREC) % q.denominator == 0:
        return q
    scaled = q.numerator * (1 << PREC)
    n = -((-scaled) // q.denominator) if direction > 0 else scaled // q.denominator
    if direction == 0 and 2 * (scaled - n * q.denominator) >= q.denominator:
        n += 1
    return Fraction(n, 1 << PREC)


class SymRanges:
    def __init__(self, box: list[tuple[Fraction, Fraction]]):
        self.box = box
        self.mag = [max(abs(a), abs(b)) for a, b in box]
        n = len(box)
        self.funcs: list[tuple[Lin, Lin]] = []
        for i in range(n):
            c = [Fraction(0)] * n
            c[i] = Fraction(1)
            self.funcs.append(((c, Fraction(0)), (list(c), Fraction(0))))

    def lo(self, f: Lin) -> Fraction:
        return f[1] + sum((c * a if c > 0 else c * b) for c, (a, b) in zip(f[0], self.box) if c)

    def hi(self, f: Lin) -> Fraction:
        return f[1] + sum((c * b if c > 0 else c * a) for c, (a, b) in zip(f[0], self.box) if c)

    def _round(self, f: Lin, down: bool) -> Lin:
        coeffs, slack = [], Fraction(0)
        for c, m in zip(f[0], self.mag):
            r = _fixed(c)
            slack += abs(c - r) * m
            coeffs.append(r)
        k = _fixed(f[1] - slack, -1) if down else _fixed(f[1] + slack, 1)
        return coeffs, k

    def concrete(self) -> list[tuple[Fraction, Fraction]]:
        return [(self.lo(L), self.hi(U)) for L, U in self.funcs]

    def linear(self, W: list[Fraction], b: list[Fraction] | None, n: int, m: int) -> None:
        d = len(self.box)
        out = []
        for j in range(m):
            bj = b[j] if b is not None else Fraction(0)
            lc, uc = [Fraction(0)] * d, [Fraction(0)] * d
            lk = uk = bj
            for w, (L, U) in zip(W[j * n : (j + 1) * n], self.funcs):
                if not w:
                    continue
                lo_f, hi_f = (L, U) if w > 0 else (U, L)
                for t in range(d):
                    if lo_f[0][t]:
                        lc[t] += w * lo_f[0][t]
                    if hi_f[0][t]:
                        uc[t] += w * hi_f[0][t]
                lk += w * lo_f[1]
                uk += w * hi_f[1]
            out.append((self._round((lc, lk), True), self._round((uc, uk), False)))
        self.funcs = out

    def add_const(self, c: list[Fraction]) -> None:
        self.funcs = [((L[0], L[1] + ci), (U[0], U[1] + ci)) for ci, (L, U) in zip(c, self.funcs)]

    def relu(self) -> None:
        d = len(self.box)
        zero: Lin = ([Fraction(0)] * d, Fraction(0))
        out = []
        for L, U in self.funcs:
            ul = self.hi(U)
            ll = self.lo(L)
            if ul <= 0:
                out.append((zero, zero))
                continue
            if ll >= 0:
                out.append((L, U))
                continue
            # upper: U >= z and U <= ul; the chord of relu over [min U, ul] lies above relu(U)
            lu = self.lo(U)
            if lu < 0:
                s = _fixed(ul / (ul - lu), 1)  # the chord's slope, rounded up: still above
                U = ([s * c for c in U[0]], s * (U[1] - lu))
            # lower: relu(z) >= relu(L) >= lam * L for any lam in [0, 1]
            lu_l = self.hi(L)
            lam = Fraction(0)
            if lu_l > 0 and lu_l >= -ll:
                lam = Fraction(1)
            L = ([lam * c for c in L[0]], lam * L[1])
            out.append((L, U))
        self.funcs = out

    def reset(self, ranges: list[tuple[Fraction, Fraction]]) -> None:
        """Forget the input dependence: constant functions at the given concrete range."""
        d = len(self.box)
        self.funcs = [(([Fraction(0)] * d, lo), ([Fraction(0)] * d, hi)) for lo, hi in ranges]
