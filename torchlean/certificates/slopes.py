"""Default slopes of the function rows (``Row.policy_slopes``): the checker's deterministic choice.

Any slope gives a valid line (the row's intercept is computed by the generic sound algorithm), so
this module only *chooses*; it is float arithmetic and nothing here is trusted. Standard library;
``choose`` is written once over a number domain: the exact rows' (``functions.EXACT``, the chord
from enclosures) and the fast rows' (``fast_functions.FAST_D``, numpy arrays elementwise).

``choose``: the adaptive rule on ReLU-like rows (lower slope 1 if u >= -l, else the slope left of
the kink; upper the chord); on a convex (concave) interval the tangent at the midpoint for the lower
(upper) line and the chord for the other; on one convex and one concave piece the S-curve rule
below (rows with a float f, ``Row.ff``); the chord otherwise.

The S-curve rule is auto_LiRPA's CROWN default for S-shaped functions (``BoundSShaped.bound_relax_impl``,
not optimised): on [l, u] with f convex on [l, c] and concave on [c, u] (tanh, sigmoid; gelu and
silu right of their left inflection),
- lower line: the chord if f'(l) >= chord slope (then the chord lies below f); otherwise the
  tangent at the point d of [l, c] whose tangent passes through (u, f(u)), or at the midpoint m if
  m < d (auto_LiRPA's smoothness rule);
- upper line: the mirror (the chord if f'(u) >= chord; else the tangent at the e in [c, u] whose
  tangent passes through (l, f(l)), or at m if m > e).
Concave-then-convex (odd powers) is the mirror image x -> -x. Those tangent points are found by
bisection: h(t) = f(t) + f'(t)(x0 - t) - f(x0) is monotone on the convex (concave) piece.

``POLICIES``: the S-curve rule (the default, ``POLICIES[0]``) and "chord" (the chord for both lines on
such intervals). Neither dominates (measured on eran ffnnSIGMOID: chord lines are up to 14% looser on
one box and up to 12% tighter on another). ``GREEDY`` is the engines' per-use mix of the two: at each
element a back-substitution meets, it takes the policy's line whose term (coefficient times line)
has the larger minimum over the element's argument interval (as CROWN's adaptive ReLU slope). The
engines use GREEDY for argument bounds (one pass) and, for final bounds, keep per row the largest of
the back-substitutions under each of ``POLICIES`` and GREEDY, on graphs where a row's choice can
differ (``two_policies``): every line is valid, so every such bound is, and so is their maximum.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction as Q
from typing import Any

Fn = Callable[[float], float]
POLICIES = ("s-curve", "chord")
GREEDY = "greedy"


def flt(x: Q) -> float:
    """x as a float (+-inf beyond binary64)."""
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def qf(x: float) -> Q:
    """a float slope read exactly (0 where it is not finite: any slope is valid)."""
    return Q(x) if math.isfinite(x) else Q(0)


def two_policies(row: Any, attrs: dict[str, Any]) -> bool:
    """Whether the policies can choose differently on ``row``: it has a float f (``Row.ff``) and
    both a convex and a concave piece."""
    kinds = {k for _, _, k in row.pieces(**attrs)}
    return row.ff is not None and {"convex", "concave"} <= kinds


def choose(D: Any, row: Any, policy: str, l: Any, u: Any, attrs: dict[str, Any]) -> tuple[Any, Any]:
    """(lower slope, upper slope) of ``row`` on [l, u] under ``policy`` (one of ``POLICIES``: they
    differ only where the S-curve rule applies; the tangent at l where l == u), in the numbers of
    ``D`` (``functions.EXACT``, one element; ``fast_functions.FAST_D``, elementwise on arrays)."""
    f, df = (lambda x: D.ff(row, x, attrs)), (lambda x: D.fdf(row, x, attrs))
    lf, uf = D.flt(l), D.flt(u)
    tangent = df(lf + (uf - lf) / 2)
    chord = D.where(u > l, lambda: D.chord(row, l, u, attrs), tangent)
    kinds, ps = 0, []  # kinds: bit 1: [l, u] meets a convex piece, 2: a concave one, 4: another
    for p, q, k in row.pieces(**attrs):
        meets = (p is None or D.num(p) < u) & (q is None or D.num(q) > l)
        kinds |= meets * {"convex": 1, "concave": 2}.get(k, 4)
        ps += [(q, k, meets)] if k != "unknown" else []
    lo, up = D.where(kinds == 1, tangent, chord), D.where(kinds == 2, tangent, chord)
    if row.name in ("relu", "leaky_relu"):  # adaptive: 1 if u >= -l, else the slope left of 0
        left = D.num(Q(attrs.get("slope", 0.01)) if row.name == "leaky_relu" else Q(0))
        lo = D.where((l < 0) & (0 < u), D.where(u >= -l, 1, left), lo)
    if row.ff is not None and policy == POLICIES[0]:  # one convex and one concave piece, the
        count, cf = sum(m * 1 for *_, m in ps), D.flt(chord)  # float-wide brackets left out
        for (c, k, m), (_, k2, m2) in zip(ps, ps[1:]):
            sel = (count == 2) & m & m2 & D.finite(lf) & D.finite(uf) & D.finite(cf)
            if {k, k2} == {"convex", "concave"} and D.active(sel):
                lo, up = D.put(sel, (lo, up), lambda i, c=float(c), cx=k == "convex": s_curve(
                    f, df, i(lf), c, i(uf), i(cf), cx, D.where))
    return D.slope(lo), D.slope(up)


def tangent_through(f: Fn, df: Fn, p: Any, q: Any, x0: Any, where: Callable[..., Any]) -> Any:
    """A point t of [p, q] where the tangent of f at t passes through (x0, f(x0)) (h changes sign
    once on [p, q]), by bisection; the end of [p, q] nearer to a root when h does not change sign,
    p where h(p) is 0 or not finite. (Once p and q are adjacent floats the steps change nothing.)"""
    fx0 = f(x0)

    def h(t: Any) -> Any:
        return f(t) + df(t) * (x0 - t) - fx0

    hp = h(p)
    p0, sign = p, hp > 0
    for _ in range(60):
        mid = p + (q - p) / 2
        same = (h(mid) > 0) == sign
        p, q = where(same, mid, p), where(same, q, mid)
    return where((hp != 0) & (abs(hp) < math.inf), q, p0)


def s_curve(f: Fn, df: Fn, l: Any, c: Any, u: Any, chord: Any, convex_left: bool,
            where: Callable[..., Any]) -> tuple[Any, Any]:
    """(lower slope, upper slope) on [l, u] with l < c < u, f convex on [l, c] and concave on
    [c, u] (``convex_left``) or the reverse, in the numbers of a domain's ``where``."""
    if not convex_left:  # g(x) = f(-x) is convex-then-concave on [-u, -l]; slopes change sign
        lo, up = s_curve(lambda x: f(-x), lambda x: -df(-x), -u, -c, -l, -chord, True, where)
        return -lo, -up
    m = l + (u - l) / 2
    d, e = tangent_through(f, df, l, c, u, where), tangent_through(f, df, c, u, l, where)
    lower = where(df(l) >= chord, chord, df(where(d < m, d, m)))
    upper = where(df(u) >= chord, chord, df(where(e > m, e, m)))
    return lower, upper
