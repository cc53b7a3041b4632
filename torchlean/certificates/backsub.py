"""Error back-substitution: a tighter bound on a neuron's accumulated rounding error.

The plain rule E' = |W| E + local loses all cancellation in W: through six 50-wide layers of
ACAS Xu it multiplies the error by prod ||W||_inf ~ 1e10. Here the error of every layer is kept
as a linear image of the local errors before it:

    e_t = J_t e_(t-1) + d_t,   |d_t| <= loc_t,
    J_t = W (linear), I (add_const), diag(s), s in [a, b] (relu: 1, 0 or [0, 1] by the sign of
          the real and float pre-activations; tanh/sigmoid: [0, max slope]),

so the error of neuron k of layer l is sum_t lambda_t . d_t (+ lambda_r . e_r at the last restart,
the input or a max-pool), lambda_t = e_k^T J_l ... J_(t+1). The lambdas are interval vectors
(unknown slopes), computed backwards in fixed point (scale 2^F, Python ints) with outward
rounding, as midpoint and radius. |e_k| <= sum_t |lambda_t| loc_t + |lambda_r| E_r. The checker
takes the minimum of this and the plain rule; both are sound.
"""

from __future__ import annotations

from fractions import Fraction

F = 96
ONE = 1 << F


def _ceil_fixed(q: Fraction) -> int:
    return -((-q.numerator * ONE) // q.denominator)


def _floor_fixed(q: Fraction) -> int:
    return (q.numerator * ONE) // q.denominator


class Chain:
    def __init__(self, sources: list[Fraction]):
        self.restart(sources)

    def restart(self, sources: list[Fraction]) -> None:
        self.sources = [_ceil_fixed(s) for s in sources]
        self.steps: list[tuple[str, object, list[int] | None]] = []

    def push_linear(self, W: list[Fraction], n: int, m: int, loc: list[Fraction]) -> None:
        rows, arows, inexact = [], [], []
        for j in range(m):
            row, bad = [], []
            for i, w in enumerate(W[j * n : (j + 1) * n]):
                wi = _floor_fixed(w)
                if Fraction(wi, ONE) != w:
                    bad.append(i)
                row.append(wi)
            rows.append(row)
            arows.append([abs(x) for x in row])
            inexact.append(bad)
        self.steps.append(("linear", (rows, arows, inexact, n), [_ceil_fixed(x) for x in loc]))

    def push_identity(self, loc: list[Fraction]) -> None:
        self.steps.append(("identity", None, [_ceil_fixed(x) for x in loc]))

    def push_diag(self, slopes: list[tuple[Fraction, Fraction]], loc: list[Fraction] | None) -> None:
        fixed = [(_floor_fixed(a), _ceil_fixed(a), _floor_fixed(b), _ceil_fixed(b)) for a, b in slopes]
        exact = [(a == b and a in (0, 1)) for a, b in slopes]
        self.steps.append(
            (
                "diag",
                (fixed, exact, [a for a, _ in slopes]),
                None if loc is None else [_ceil_fixed(x) for x in loc],
            )
        )

    def bound(self, k: int, size: int) -> Fraction:
        """Upper bound on |error| of neuron k of the last pushed layer."""
        mid = [0] * size
        rad = [0] * size
        mid[k] = ONE
        total = 0  # scale 2^(2F)
        for kind, data, loc in reversed(self.steps):
            if loc is not None:
                total += sum((abs(a) + r) * c for a, r, c in zip(mid, rad, loc) if c)
            if kind == "linear":
                mid, rad = _back_linear(data, mid, rad)
            elif kind == "diag":
                mid, rad = _back_diag(data, mid, rad)
        total += sum((abs(a) + r) * c for a, r, c in zip(mid, rad, self.sources) if c)
        return Fraction(total, ONE * ONE)


def _back_linear(data, mid: list[int], rad: list[int]) -> tuple[list[int], list[int]]:
    rows, arows, inexact, n = data
    nm = [0] * n
    nr = [0] * n
    for j, (mj, rj) in enumerate(zip(mid, rad)):
        if mj:
            nm = [x + mj * w for x, w in zip(nm, rows[j])]
        if rj:
            nr = [x + rj * w for x, w in zip(nr, arows[j])]
        if inexact[j] and (mj or rj):  # weights off the fixed-point grid: |w - wi| < 2^-F
            amj = abs(mj) + rj
            for i in inexact[j]:
                nr[i] += amj
    # floor shifts: mid loses < 1 unit, rad < 1 unit; pay both in the radius
    return [x >> F for x in nm], [(x >> F) + 2 for x in nr]


def _back_diag(data, mid: list[int], rad: list[int]) -> tuple[list[int], list[int]]:
    fixed, exact, lows = data
    om, orad = [], []
    for (a_dn, _, _, b_up), ex, a, m, r in zip(fixed, exact, lows, mid, rad):
        if ex:
            om.append(m if a == 1 else 0)
            orad.append(r if a == 1 else 0)
            continue
        lo_v, hi_v = m - r, m + r
        lo = (a_dn * lo_v if lo_v >= 0 else b_up * lo_v) >> F  # floor
        hi = -((-(b_up * hi_v if hi_v >= 0 else a_dn * hi_v)) >> F)  # ceil
        c = (lo + hi) >> 1
        om.append(c)
        orad.append(hi - c)
    return om, orad
