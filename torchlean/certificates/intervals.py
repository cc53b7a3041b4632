"""Interval transfer rules (IBP), proved sound by the ``ibp.*`` obligations.

Each rule maps input intervals [l, u] to an output interval that contains f(x) for every x in
[l, u]. The rules are written against a tiny ``ops`` namespace (``max``, ``min``, ``select``,
``ge``) so that the proofs layer runs *these very functions* on symbols to state their soundness;
by default they compute in exact ``Fraction`` arithmetic, for the bound checkers to import.
Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any


class ExactOps:
    """Exact rational arithmetic (the checker's default)."""

    @staticmethod
    def max(a: Any, b: Any) -> Any:
        return a if a >= b else b

    @staticmethod
    def min(a: Any, b: Any) -> Any:
        return a if a <= b else b

    @staticmethod
    def ge(a: Any, b: Any) -> Any:
        return a >= b

    @staticmethod
    def select(cond: Any, a: Any, b: Any) -> Any:
        return a if cond else b


EXACT = ExactOps()
Interval = tuple[Any, Any]


def interval_add(a: Interval, b: Interval, ops: Any = EXACT) -> Interval:
    return a[0] + b[0], a[1] + b[1]


def interval_sub(a: Interval, b: Interval, ops: Any = EXACT) -> Interval:
    return a[0] - b[1], a[1] - b[0]


def interval_neg(a: Interval, ops: Any = EXACT) -> Interval:
    return -a[1], -a[0]


def interval_scale(c: Any, a: Interval, ops: Any = EXACT) -> Interval:
    """c * x for a constant (or symbolic) c: the endpoints swap when c < 0."""
    pos = ops.ge(c, 0)
    return ops.select(pos, c * a[0], c * a[1]), ops.select(pos, c * a[1], c * a[0])


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


def interval_minimum(a: Interval, b: Interval, ops: Any = EXACT) -> Interval:
    return ops.min(a[0], b[0]), ops.min(a[1], b[1])


def interval_increasing(f: Callable[[Any], Any], a: Interval, ops: Any = EXACT) -> Interval:
    """[f(l), f(u)] for an increasing f (exp, tanh, log and sqrt on their domains). Over Fractions
    the caller passes rigorous outward-rounded lower/upper evaluations."""
    return f(a[0]), f(a[1])


def interval_matvec(
    w: Sequence[Sequence[Any]], b: Sequence[Any], box: Sequence[Interval], ops: Any = EXACT
) -> list[Interval]:
    """W x + b over a box: each term w * x_j contributes its interval by the sign of w."""
    out = []
    for row, bias in zip(w, b):
        lo, hi = bias, bias
        for wij, xj in zip(row, box):
            t = interval_scale(wij, xj, ops)
            lo, hi = lo + t[0], hi + t[1]
        out.append((lo, hi))
    return out
