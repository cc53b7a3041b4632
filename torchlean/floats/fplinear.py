"""Linear structure for the FPCore bounds: affine sub-terms and linear :pre constraints.

Interval arithmetic forgets correlations: on a box, ``s - c`` with ``s = (a + b + c) / 2`` gets
the width of all three inputs, and a :pre constraint like ``a + b > c + eps`` (which makes
``s - c >= eps / 2``) is invisible to it. Near such a boundary the enclosure of a factor then
contains 0 and a ``sqrt`` or ``/`` downstream has no finite bound however far one bisects.

Here every node that is affine in the inputs gets its exact linear part ``L(x)`` (rational
coefficients); its range over ``box ∩ {linear constraints}`` is bounded below by LP weak duality:
for any lambda >= 0 and a constraint ``g.x >= h``,

    L.x = lambda g.x + (L - lambda g).x >= lambda h + sum_j min_{x_j in box} (L_j - lambda g_j) x_j

for every feasible x. Any lambda gives a sound bound; the candidates tried (0 and the kinks
``L_j / g_j``) make it the exact LP minimum when one constraint is active. The bound is evaluated
with outward-rounded interval arithmetic, so float rounding only loosens it. Constraints also
contract the box (HC4-style revise on each variable), which drops no feasible point.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

from .fpcore import Node
from .interval import I, _dn, _upr

Lin = dict[str, Fraction]
#: one dual candidate: (coefficient interval per variable, a float <= lambda * h)
Plan = list[tuple[list[tuple[str, I]], float]]


def frac_interval(q: Fraction) -> I:
    """The tightest float interval containing the rational q."""
    f = float(q)  # int / int: correctly rounded
    lo = f if Fraction(f) <= q else _dn(f)
    hi = f if Fraction(f) >= q else _upr(f)
    return I(lo, hi)


def affine_forms(nodes: list[Node], point: Callable[[Node], Fraction | None]
                 ) -> dict[int, tuple[Lin, Fraction]]:
    """node id -> (linear part, constant) for the nodes affine in the input variables.

    ``point(c)`` is the exact value a constant node takes when it scales (``*``, ``/``), or None
    when it is not a single point (a constant the program rounds): then that product is not
    treated as affine. A constant added or subtracted contributes its real value; callers that
    model rounded constants separately use only the linear part."""
    out: dict[int, tuple[Lin, Fraction]] = {}
    for n in nodes:
        if n.op == "var":
            out[id(n)] = ({n.name: Fraction(1)}, Fraction(0))
        elif n.op == "const":
            out[id(n)] = ({}, n.value)
        elif n.op in ("add", "sub"):
            fa, fb = out.get(id(n.args[0])), out.get(id(n.args[1]))
            if fa is not None and fb is not None:
                s = 1 if n.op == "add" else -1
                lin = dict(fa[0])
                for v, c in fb[0].items():
                    lin[v] = lin.get(v, Fraction(0)) + s * c
                out[id(n)] = (lin, fa[1] + s * fb[1])
        elif n.op == "neg":
            fa = out.get(id(n.args[0]))
            if fa is not None:
                out[id(n)] = ({v: -c for v, c in fa[0].items()}, -fa[1])
        elif n.op in ("mul", "div"):
            x, k = n.args
            if n.op == "mul" and x.op == "const":
                x, k = k, x
            c = point(k) if k.op == "const" else None
            fx = out.get(id(x))
            if fx is not None and c is not None and c != 0:
                f = c if n.op == "mul" else 1 / c
                out[id(n)] = ({v: q * f for v, q in fx[0].items()}, fx[1] * f)
    return out


class LinearConstraints:
    """Constraints ``g.x >= h`` (from :pre comparisons whose two sides are affine)."""

    def __init__(self, cons: list[tuple[Lin, Fraction]]):
        self.cons = [({v: c for v, c in g.items() if c != 0}, h) for g, h in cons]
        self.cons = [(g, h) for g, h in self.cons if g]
        self.icons = [({v: frac_interval(c) for v, c in g.items()}, frac_interval(h))
                      for g, h in self.cons]

    @classmethod
    def from_pre(cls, pre: list[tuple[Node, Node]], topo: Callable[[Node], list[Node]]
                 ) -> LinearConstraints:
        """lhs <= rhs  ->  (rhs - lhs).x >= -(constant of rhs - lhs); nonlinear ones skipped."""
        out = []
        for lhs, rhs in pre:
            fl = affine_forms(topo(lhs), lambda c: c.value).get(id(lhs))
            fr = affine_forms(topo(rhs), lambda c: c.value).get(id(rhs))
            if fl is None or fr is None:
                continue
            g = dict(fr[0])
            for v, c in fl[0].items():
                g[v] = g.get(v, Fraction(0)) - c
            out.append((g, fl[1] - fr[1]))
        return cls(out)

    def plan(self, lin: Lin) -> Plan:
        """Dual candidates for a lower bound of lin.x (precomputed: they do not depend on the
        box). lambda = 0 is the plain box range; the others are the kinks of the dual function."""
        plans: Plan = [([(v, frac_interval(c)) for v, c in lin.items() if c != 0], 0.0)]
        for g, h in self.cons:
            lams = {lin.get(v, Fraction(0)) / c for v, c in g.items()}
            for lam in sorted(x for x in lams if x > 0):
                coef = {v: lin.get(v, Fraction(0)) - lam * g.get(v, Fraction(0))
                        for v in set(lin) | set(g)}
                lh = lam * h
                lh_lo = float(lh) if Fraction(float(lh)) <= lh else _dn(float(lh))
                plans.append(([(v, frac_interval(c)) for v, c in coef.items() if c != 0], lh_lo))
        return plans

    @staticmethod
    def lower(plan: Plan, box: dict[str, I]) -> float:
        """max over the candidates of the dual bound: <= min of lin.x over box ∩ constraints."""
        best = -float("inf")
        for coefs, lh in plan:
            s = lh
            for v, c in coefs:
                s = _dn(s + (c * box[v]).lo)
            best = max(best, s)
        return best

    def contract(self, box: dict[str, I], rounds: int = 2) -> dict[str, I] | None:
        """Shrink the box to a box holding all its points that satisfy the constraints; None when
        it holds none. For g_j > 0: x_j >= (h - sum_{k != j} g_k x_k) / g_j, the right side
        enclosed by interval arithmetic (so its .lo is below every value it takes)."""
        box = dict(box)
        for _ in range(rounds):
            for g, h in self.icons:
                for j, gj in g.items():
                    t = h
                    for k, gk in g.items():
                        if k != j:
                            t = t - gk * box[k]
                    q = t / gj
                    x = box[j]
                    if gj.lo > 0:
                        x = I(max(x.lo, q.lo), x.hi)
                    elif gj.hi < 0:
                        x = I(x.lo, min(x.hi, q.hi))
                    if x.lo > x.hi:
                        return None
                    box[j] = x
        return box
