"""Interval transfer rules (IBP), proved sound by the ``ibp.*`` obligations.

Each rule maps input intervals [l, u] to an output interval that contains f(x) for every x in
[l, u]. The rules are written against a tiny ``ops`` namespace (``max``, ``min``, ``select``,
``ge``, ``dot``) so that the proofs layer runs *these very functions* on symbols to state their soundness;
by default they compute in exact ``Fraction`` arithmetic. They are the ONLY copy the exact bound
table runs: ``engine.py`` bounds every affine form with ``interval_affine``, every mul node with
``interval_mul`` (and its CROWN planes with ``mccormick``), every max node with ``interval_max``;
``functions.py``'s rows call ``interval_relu``/``_leaky_relu``/``_abs``/``_square`` and, on their
rational enclosures at the endpoints, ``interval_increasing``/``_decreasing``.
Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any


class ExactOps:
    """Exact rational arithmetic (the checker's default); ``max``/``min`` Python's own (of two
    equal values they return the first)."""

    max = staticmethod(max)
    min = staticmethod(min)

    @staticmethod
    def ge(a: Any, b: Any) -> Any:
        if b == 0 and type(a) is Fraction:  # a sign test (Fraction's comparison is slow)
            return a.numerator >= 0  # (a Fraction's denominator is positive)
        return a >= b

    @staticmethod
    def select(cond: Any, a: Any, b: Any) -> Any:
        return a if cond else b

    @staticmethod
    def dot(c: Any, qs: Sequence[Any], xs: Sequence[Any]) -> Fraction:
        """c + Σ q·x, exactly: integer numerators over a running common denominator (the lcm so
        far), normalised once at the end. Fraction arithmetic pays two gcds per term; a bound
        graph's values are dyadic (binary weights and inputs), so here the denominators divide
        one another and no gcd is taken at all."""
        n, d = c.numerator, c.denominator
        for q, x in zip(qs, xs):
            a, b = q.numerator * x.numerator, q.denominator * x.denominator
            if b == d:
                n += a
            elif d % b == 0:
                n += a * (d // b)
            else:
                g = math.gcd(d, b)
                n, d = n * (b // g) + a * (d // g), d // g * b
        return Fraction(n, d)


EXACT = ExactOps()
Interval = tuple[Any, Any]


def interval_affine(c: Any, terms: Iterable[tuple[Any, Interval]], ops: Any = EXACT) -> Interval:
    """c + sum q * x over x in [l, u] per term (q, (l, u)): each term takes the endpoint that
    minimises (maximises) it by the sign of q. Every linear primitive of the bound table (add,
    matmul by constants, conv2d, pooling by averaging, reshape, ...) is such a form
    (``engine.form_bounds``)."""
    qs, los, his = [], [], []
    for q, (l, u) in terms:
        pos = ops.ge(q, 0)
        qs.append(q)
        los.append(ops.select(pos, l, u))
        his.append(ops.select(pos, u, l))
    return ops.dot(c, qs, los), ops.dot(c, qs, his)


def interval_mul(a: Interval, b: Interval, ops: Any = EXACT) -> Interval:
    """x * y for x in a, y in b: the least and largest of the four corner products (a bilinear
    function's extremes over a box are at corners)."""
    c = (a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1])
    return (ops.min(ops.min(c[0], c[1]), ops.min(c[2], c[3])),
            ops.max(ops.max(c[0], c[1]), ops.max(c[2], c[3])))


def mccormick(a: Interval, b: Interval, t_lo: Any, t_up: Any, ops: Any = EXACT
              ) -> tuple[tuple[Any, Any, Any], tuple[Any, Any, Any]]:
    """Linear bounds of x * y for x in a = [lx, ux], y in b = [lw, uw], as (coefficient of x,
    coefficient of y, constant) for the lower and the upper plane. Lower: (1 - t) P0 + t P1 with
    P0 from (x - lx)(y - lw) >= 0 and P1 from (ux - x)(uw - y) >= 0; upper: (1 - t) Q0 + t Q1 with
    Q0 from (x - lx)(uw - y) >= 0 and Q1 from (ux - x)(y - lw) >= 0; valid for t in [0, 1]."""
    (lx, ux), (lw, uw) = a, b
    lower = ((1 - t_lo) * lw + t_lo * uw, (1 - t_lo) * lx + t_lo * ux,
             -(1 - t_lo) * lx * lw - t_lo * ux * uw)
    upper = ((1 - t_up) * uw + t_up * lw, (1 - t_up) * lx + t_up * ux,
             -(1 - t_up) * lx * uw - t_up * ux * lw)
    return lower, upper


def interval_relu(a: Interval, ops: Any = EXACT) -> Interval:
    return ops.max(a[0], 0), ops.max(a[1], 0)


def interval_leaky_relu(a: Interval, slope: Any = Fraction(0.01), ops: Any = EXACT) -> Interval:
    """for 0 <= slope <= 1 the function is increasing: map the endpoints. The default slope is the
    spec's: the binary64 value of 0.01 (not 1/100, which would be unsound by ~1e-19 * |l|)."""

    def f(v: Any) -> Any:
        return ops.select(ops.ge(v, 0), v, slope * v)

    return f(a[0]), f(a[1])


def interval_abs(a: Interval, ops: Any = EXACT) -> Interval:
    return ops.max(ops.max(a[0], -a[1]), 0), ops.max(-a[0], a[1])


def interval_maximum(a: Interval, b: Interval, ops: Any = EXACT) -> Interval:
    return ops.max(a[0], b[0]), ops.max(a[1], b[1])


def interval_max(group: Sequence[Interval], ops: Any = EXACT) -> Interval:
    """max over a group of members (max node: max, max_pool2d, maximum, minimum as -max(-a, -b)):
    ``interval_maximum`` folded left to right."""
    out = group[0]
    for b in group[1:]:
        out = interval_maximum(out, b, ops)
    return out


def interval_square(a: Interval, ops: Any = EXACT) -> Interval:
    """x * x: l^2 (l >= 0), u^2 (u <= 0) or 0 (0 inside) below; the larger of l^2, u^2 above."""
    l2, u2 = a[0] * a[0], a[1] * a[1]
    return ops.select(ops.ge(a[0], 0), l2, ops.select(ops.ge(0, a[1]), u2, 0 * l2)), ops.max(l2, u2)


def interval_increasing(f: Callable[[Any], Any], a: Interval, ops: Any = EXACT) -> Interval:
    """[f(l), f(u)] for an increasing f (exp, tanh, log, sqrt, sigmoid, softplus on their domains).
    Over Fractions the caller (``functions.Row.interval``) passes its rigorous enclosures of f at
    the endpoints and keeps the outer ends."""
    return f(a[0]), f(a[1])


def interval_decreasing(f: Callable[[Any], Any], a: Interval, ops: Any = EXACT) -> Interval:
    """[f(u), f(l)] for a decreasing f (reciprocal on l > 0 or on u < 0, rsqrt on l > 0)."""
    return f(a[1]), f(a[0])
