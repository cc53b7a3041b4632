"""Rigorous round-off bounds for FPCore expressions (FPTaylor-style, first order made exact).

Model: every rounded operation computes w_i = r_i (1 + d_i) + e_i with r_i the exact operation on
its (already rounded) arguments, |d_i| <= u, |e_i| <= eta; a constant c enters as fl(c); inputs are
exact floats (``round_inputs=True`` also rounds them, as FPTaylor/Daisy assume). By the mean value
theorem along the segment from (d, e) = 0,

    |f~(x) - f(x)| <= sum_i u * sup|A_i r_i| + eta * sup|A_i| + sum_c |fl(c) - c| * sup|A_c|,

A_i the derivative of the output with respect to w_i, the sups taken over x in the box *and* all
perturbations (so there is no separate second-order remainder: the O(u^2) effects are inside the
interval enclosures). The enclosures come from interval arithmetic (outward-rounded binary64) in a
forward pass (values with the d-intervals) and a reverse pass (adjoints); a branch-and-bound over
sub-boxes drives the overestimation down. Sub-boxes that violate the :pre constraints are dropped.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from fractions import Fraction

from ..certificates.rounding import get_format, round_fraction
from .fpcore import Benchmark, Node, topo

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


def _up_float(q: Fraction) -> float:
    f = float(q)
    return f if Fraction(f) >= q else _upr(f)


@dataclass
class Bound:
    name: str
    bound: float  # sound upper bound on |f~ - f| (inf: none found in budget)
    lower: float  # largest first-order error seen at a point (an estimate, not a bound)
    boxes: int


class Analysis:
    def __init__(self, b: Benchmark, fmt: str = "binary64", round_inputs: bool = False):
        self.b = b
        f = get_format(fmt)
        self.u = float(f.unit_roundoff("rne"))
        self.eta = float(f.underflow_eta("rne"))
        self.round_inputs = round_inputs
        self.nodes = topo(b.body)
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        # constants: the float the program uses, and |fl(c) - c|
        self.cval: dict[int, tuple[float, float]] = {}
        for n in self.nodes:
            if n.op == "const":
                r = round_fraction(n.value, f)
                self.cval[id(n)] = (float(r.value), _up_float(abs(r.value - n.value)))
        self.cons = [(topo(lhs), lhs, topo(rhs), rhs) for _, lhs, rhs in b.constraints]

    def _exact_op(self, n: Node) -> bool:
        """Operations that never round: negation, and products by powers of two (no overflow;
        binary64 products by 2^k of |k| < 8 stay exact unless subnormal, covered by eta)."""
        if n.op == "neg":
            return True
        if n.op == "mul":
            for a in n.args:
                if a.op == "const":
                    v = a.value
                    if v > 0 and (v.numerator & (v.numerator - 1)) == 0 and v.denominator == 1:
                        return True
        return False

    def _real(self, nodes: list[Node], box: dict[str, I]) -> dict[int, I]:
        """Interval value of the *real* expression (for :pre constraints)."""
        val: dict[int, I] = {}
        for n in nodes:
            val[id(n)] = self._apply(n, val, box, exact_consts=True)
        return val

    def _apply(self, n: Node, val: dict[int, I], box: dict[str, I], exact_consts: bool) -> I:
        if n.op == "var":
            return box[n.name]
        if n.op == "const":
            if exact_consts:
                lo = float(n.value)
                return I(_dn(lo), _upr(lo))
            c = self.cval[id(n)][0]
            return I(c)
        a = [val[id(x)] for x in n.args]
        if n.op == "add":
            return a[0] + a[1]
        if n.op == "sub":
            return a[0] - a[1]
        if n.op == "mul":
            return a[0] * a[1]
        if n.op == "div":
            return a[0] / a[1]
        if n.op == "sqrt":
            return a[0].sqrt()
        if n.op == "neg":
            return -a[0]
        raise ValueError(n.op)

    def feasible(self, box: dict[str, I]) -> bool:
        for lnodes, lhs, rnodes, rhs in self.cons:
            lv = self._real(lnodes, box)[id(lhs)]
            rv = self._real(rnodes, box)[id(rhs)]
            if lv.lo > rv.hi:  # lhs <= rhs is false everywhere on the box
                return False
        return True

    def box_bound(self, box: dict[str, I]) -> float:
        u, eta = self.u, self.eta
        widen = I(1 - u, 1 + u)
        tiny = I(-eta, eta)
        r: dict[int, I] = {}
        w: dict[int, I] = {}
        for n in self.nodes:
            if n.op == "var" and self.round_inputs:
                r[id(n)] = box[n.name]
                w[id(n)] = box[n.name] * widen + tiny
                continue
            if n.op == "const":  # the program's float constant; the error is added below
                c = self.cval[id(n)][0]
                lo, hi = min(c, float(n.value)), max(c, float(n.value))
                w[id(n)] = r[id(n)] = I(_dn(lo), _upr(hi))
                continue
            v = self._apply(n, w, box, exact_consts=False)
            r[id(n)] = v
            w[id(n)] = v if n.op == "var" or self._exact_op(n) else v * widen + tiny
        if any(math.isinf(x.lo) or math.isinf(x.hi) for x in w.values()):
            return INF
        adj: dict[int, I] = {id(n): I(0.0) for n in self.nodes}
        adj[id(self.nodes[-1])] = I(1.0)
        total = 0.0
        for n in reversed(self.nodes):
            A = adj[id(n)]
            rounded = (n.op == "var" and self.round_inputs) or not (
                n.op in ("var", "const") or self._exact_op(n))
            if rounded:
                total = _upr(total + _upr(u * (A * r[id(n)]).mag()))
                total = _upr(total + _upr(eta * A.mag()))
            elif n.op == "const":
                total = _upr(total + _upr(self.cval[id(n)][1] * A.mag()))
            if n.op in ("var", "const"):
                continue
            g = A * widen if rounded else A  # d w / d r = 1 + d
            a = [w[id(x)] for x in n.args]
            if n.op == "add":
                parts = [g, g]
            elif n.op == "sub":
                parts = [g, -g]
            elif n.op == "mul":
                parts = [g * a[1], g * a[0]]
            elif n.op == "div":
                inv = a[1].recip()
                parts = [g * inv, -(g * a[0] * inv * inv)]
            elif n.op == "sqrt":
                parts = [g * (I(2.0) * a[0].sqrt()).recip()]
            else:  # neg
                parts = [-g]
            for x, p in zip(n.args, parts):
                adj[id(x)] = adj[id(x)] + p
        return total if math.isfinite(total) else INF

    def point_estimate(self, box: dict[str, I]) -> float:
        mid = {k: I((v.lo + v.hi) / 2) for k, v in box.items()}
        try:
            return self.box_bound(mid)
        except (ZeroDivisionError, OverflowError, ValueError):
            return 0.0


def _split(box: dict[str, I], widths: dict[str, float]) -> list[dict[str, I]]:
    k = max(box, key=lambda n: (box[n].hi - box[n].lo) / widths[n] if widths[n] else 0.0)
    v = box[k]
    mid = (v.lo + v.hi) / 2
    return [{**box, k: I(v.lo, mid)}, {**box, k: I(mid, v.hi)}]


def analyse(b: Benchmark, fmt: str = "binary64", round_inputs: bool = False, tol: float = 0.02,
            max_boxes: int = 4000) -> Bound:
    """Branch and bound: split the box with the largest bound until the bound is within ``tol``
    of the best point estimate or ``max_boxes`` boxes were evaluated. The result is the max of the
    bounds of the final cover of the (feasible part of the) box: always sound."""
    an = Analysis(b, fmt, round_inputs)
    root = {v: I(float(lo), float(hi)) for v, (lo, hi) in b.box.items()}
    # float(lo) may round inward: widen by one ulp so the cover contains the real box
    root = {v: I(_dn(x.lo), _upr(x.hi)) for v, x in root.items()}
    widths = {v: x.hi - x.lo for v, x in root.items()}
    heap: list[tuple[float, int, dict[str, I]]] = []
    count, best = 0, 0.0

    def push(box: dict[str, I]) -> None:
        nonlocal count, best
        count += 1
        if b.constraints and not an.feasible(box):
            return
        ub = an.box_bound(box)
        est = an.point_estimate(box)
        if math.isfinite(est) and an.feasible({k: I((v.lo + v.hi) / 2) for k, v in box.items()}):
            best = max(best, est)
        heapq.heappush(heap, (-ub, count, box))

    push(root)
    while heap and count < max_boxes:
        ub = -heap[0][0]
        if best > 0 and ub <= best * (1 + tol):
            break
        _, _, box = heapq.heappop(heap)
        for part in _split(box, widths):
            push(part)
    bound = -heap[0][0] if heap else 0.0
    return Bound(b.name, bound, best, count)
