"""Back-substitution ranges (DeepPoly-style) for the error checker, in fixed point.

The forward symbolic intervals of ``symrange`` loosen with depth (ACAS Xu: a range of 499 where
samples reach 23), and the rounding-error terms grow with the ranges. Here the upper bound of a
neuron is found by carrying a linear function lambda . z + c backwards from it to the last restart
point (the input box, or the output of a tanh/sigmoid/max-pool), replacing each relu by its
relaxation (upper: the chord s (z - l) when lambda_j >= 0, else alpha z with alpha in {0, 1}), and
maximising over the boxes at the restart point. Lower bounds: the same for -z.

Coefficients are Python ints at scale 2^F, rounded down; every rounding changes the function by
at most one unit times max|z| of that coordinate, which is added to ``slack`` (a Fraction), and
weights off the 2^-F grid are charged the same way. Constants are exact Fractions.
"""

from __future__ import annotations

from fractions import Fraction

F = 96
ONE = 1 << F
Interval = tuple[Fraction, Fraction]


def _floor_fixed(q: Fraction) -> int:
    return (q.numerator * ONE) // q.denominator


def _down(q: Fraction) -> Fraction:
    """q rounded down to the grid 2^-F (keeps the numbers small; still a lower bound)."""
    return Fraction(_floor_fixed(q), ONE)


def _up(q: Fraction) -> Fraction:
    return -_down(-q)


def _mag(iv: Interval) -> Fraction:
    return max(abs(iv[0]), abs(iv[1]))


class DeepPoly:
    def __init__(self, box: list[Interval]):
        self.restart(box)

    def restart(self, bounds: list[Interval]) -> None:
        self.base = list(bounds)
        self.steps: list[tuple] = []
        self.cur = list(bounds)  # bounds of the current layer's output

    # -- forward construction --------------------------------------------------------------------
    def linear(self, W: list[Fraction], b: list[Fraction] | None, n: int, m: int) -> list[Interval]:
        rows, inexact = [], []
        for j in range(m):
            row, bad = [], False
            for w in W[j * n : (j + 1) * n]:
                wi = _floor_fixed(w)
                bad = bad or Fraction(wi, ONE) != w
                row.append(wi)
            rows.append(row)
            inexact.append(bad)
        bias = b if b is not None else [Fraction(0)] * m
        self.steps.append(("linear", rows, inexact, bias, [_mag(r) for r in self.cur], n))
        self.cur = [self._bounds(k, m) for k in range(m)]
        return self.cur

    def add_const(self, c: list[Fraction]) -> None:
        self.steps.append(("add", c))
        self.cur = [(lo + ci, hi + ci) for ci, (lo, hi) in zip(c, self.cur)]

    def relu(self, pre: list[Interval]) -> None:
        """``pre``: the best known bounds of the relu's input (intersection of all methods)."""
        relax = []
        for lo, hi in pre:
            if lo >= 0:
                relax.append(("on", None, None, None))
            elif hi <= 0:
                relax.append(("off", None, None, None))
            else:
                # chord slope rounded up and its foot rounded down: still above relu on [lo, hi]
                relax.append(("cut", _up(hi / (hi - lo)), _down(lo), 1 if hi >= -lo else 0))
        self.steps.append(("relu", relax, [_mag(r) for r in pre]))
        self.cur = [(max(lo, Fraction(0)), max(hi, Fraction(0))) for lo, hi in pre]

    # -- back-substitution -----------------------------------------------------------------------
    def _bounds(self, k: int, m: int) -> Interval:
        lam = [0] * m
        lam[k] = ONE
        hi = self._upper(lam)
        lam[k] = -ONE
        lo = -self._upper(lam)
        return _down(lo), _up(hi)

    def _upper(self, lam: list[int]) -> Fraction:
        const = Fraction(0)
        slack_units = Fraction(0)  # sum of (units of 2^-F) * max|z|
        for step in reversed(self.steps):
            kind = step[0]
            if kind == "linear":
                _, rows, inexact, bias, in_mag, n = step
                const += sum((Fraction(l_) * bj for l_, bj in zip(lam, bias) if l_ and bj), Fraction(0)) / ONE
                acc = [0] * n
                off = 0
                for lj, row, bad in zip(lam, rows, inexact):
                    if lj:
                        acc = [a + lj * w for a, w in zip(acc, row)]
                        if bad:
                            off += abs(lj)
                # floor loses < 1 unit per coordinate; off-grid weights lose < |lambda_j| / 2^F each
                unit = 1 + Fraction(off, ONE)
                slack_units += unit * sum(in_mag, Fraction(0))
                lam = [a >> F for a in acc]
            elif kind == "add":
                const += sum((Fraction(l_) * c for l_, c in zip(lam, step[1]) if l_), Fraction(0)) / ONE
            else:  # relu
                _, relax, in_mag = step
                new = []
                for lj, (how, s, lo, alpha), mg in zip(lam, relax, in_mag):
                    if how == "on" or lj == 0:
                        new.append(lj)
                    elif how == "off":
                        new.append(0)
                    elif lj > 0:  # lj relu(z) <= lj s (z - lo)
                        exact = lj * s
                        new.append(exact.numerator // exact.denominator)
                        slack_units += mg  # floor: < 1 unit times |z|
                        const -= exact * lo / ONE
                    else:
                        new.append(lj * alpha)
                lam = new
        top = (
            sum(
                (Fraction(l_) * (b if l_ > 0 else a) for l_, (a, b) in zip(lam, self.base) if l_), Fraction(0)
            )
            / ONE
        )
        return const + top + slack_units / ONE
