"""Rigorous round-off bounds for FPCore expressions (FPTaylor-style, first order made exact).

Model: every rounded operation computes w_i = fl(r_i) = r_i + delta_i with r_i the exact operation
on its (already rounded) arguments; a constant c enters as fl(c); inputs are exact floats
(``round_inputs=True`` also rounds them, as FPTaylor/Daisy assume). For r_i in an enclosure R_i
two bounds hold: |delta_i| <= u|r_i| + eta (relative) and |delta_i| <= u 2^floor(log2 max|R_i|)
+ eta (half an ulp of the largest binade R_i reaches). By the mean value theorem along a path
from the exact to the computed evaluation,

    |f~(x) - f(x)| <= sum_i min(u sup|A_i r_i| + eta sup|A_i|, sup|A_i| (u 2^floor(..) + eta))
                      + sum_c |fl(c) - c| * sup|A_c|,

A_i the derivative of the output with respect to w_i, the sups taken over x in the box *and* all
perturbations (so there is no separate second-order remainder: the O(u^2) effects are inside the
interval enclosures). The enclosures come from interval arithmetic (outward-rounded binary64) in a
forward pass (values with the perturbations) and a reverse pass (adjoints); a branch-and-bound
over sub-boxes drives the overestimation down. Linear :pre constraints contract the sub-boxes and
bound every affine sub-term over the feasible part (fplinear); sub-boxes that violate the :pre
constraints are dropped.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from fractions import Fraction

from ..certificates.rounding import get_format, round_fraction
from .fpcore import Benchmark, Node, topo
from .fplinear import LinearConstraints, affine_forms
from .interval import INF, I, _dn, _upr


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
        self.maxf = float(f.max_finite)
        # affine nodes of the program (a constant scales only when it is a float: a single
        # point); their range over box ∩ linear :pre comes from LP duality (fplinear)
        self.lin = LinearConstraints.from_pre([(lhs, rhs) for _, lhs, rhs in b.constraints], topo)
        forms = affine_forms(self.nodes, lambda c: c.value if self.cval[id(c)][1] == 0 else None)
        self.plans = {k: (self.lin.plan(lin), self.lin.plan({v: -q for v, q in lin.items()}))
                      for k, (lin, _) in forms.items()}

    def _exact_op(self, n: Node) -> bool:
        """Operations that never round: negation, and products by 2^k, k >= 0 (scaling up loses
        no bits, subnormals included; overflow is excluded by the max_finite check)."""
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

    def _rho(self, v: I) -> float:
        """|fl(r) - r| for every r in v, both models: u|r| + eta and the half-ulp bound
        u * 2^floor(log2 max|r|) + eta (the rounding error of r in [2^k, 2^(k+1)) is at most
        half an ulp, 2^k u; subnormal results at most eta)."""
        return _upr(_upr(self.u * v.mag()) + self.eta)

    def _terms(self, A: I, v: I) -> float:
        """The error contribution of one rounding with adjoint A and exact value in v: the smaller
        of the relative model u sup|A r| + eta sup|A| and the absolute (half-ulp) model
        sup|A| (u 2^floor(log2 max|r|) + eta). Either is sound for this node on its own (the
        mean-value path below may treat each node by a different model; both stay inside w)."""
        if math.isinf(A.mag()):
            return INF
        rel = _upr(_upr(self.u * (A * v).mag()) + _upr(self.eta * A.mag()))
        m = v.mag()
        p2 = 0.0 if m == 0 else math.ldexp(1.0, math.frexp(m)[1] - 1)  # 2^floor(log2 m)
        ab = _upr(A.mag() * _upr(_upr(self.u * p2) + self.eta))
        return min(rel, ab)

    def box_bound(self, box: dict[str, I]) -> float:
        """Sound bound on |f~ - f| over box ∩ :pre (0.0 when the box holds no feasible point).

        Mean-value path: w_i(t) = r_i(w(t)) + t delta_i for each rounding (delta_i the actual
        rounding error), or w_i(t) = r_i(w(t))(1 + t d_i) + t e_i; every path point has
        w_i in W_i = R_i + [-rho_i, rho_i], so the adjoint enclosures hold along it. Affine
        nodes also carry err = w - L(x) so their enclosure can use L's range over the feasible
        part of the box (the linear :pre constraints), not just interval arithmetic."""
        r: dict[int, I] = {}
        w: dict[int, I] = {}
        err: dict[int, I] = {}  # affine nodes: enclosure of w - L(x)
        for n in self.nodes:
            k = id(n)
            if n.op == "var":
                x = box[n.name]
                rho = self._rho(x) if self.round_inputs else 0.0
                r[k], err[k] = x, I(-rho, rho)
                w[k] = x + err[k] if self.round_inputs else x
                continue
            if n.op == "const":  # the program's float constant; the error is added below
                c = self.cval[k][0]
                lo, hi = min(c, float(n.value)), max(c, float(n.value))
                w[k] = r[k] = err[k] = I(_dn(lo), _upr(hi))
                continue
            if n.op == "sqrt" and w[id(n.args[0])].lo < 0:
                return INF  # the program may take sqrt of a negative (NaN): no finite bound
            v = self._apply(n, w, box, exact_consts=False)
            e = self._affine_err(n, err) if k in self.plans else None
            if e is not None:
                lo = self.lin.lower(self.plans[k][0], box)
                hi = -self.lin.lower(self.plans[k][1], box)
                v = I(max(v.lo, _dn(lo + e.lo)), min(v.hi, _upr(hi + e.hi)))
                if v.lo > v.hi:  # two enclosures of a nonempty set always meet
                    return 0.0
            if math.isinf(v.lo) or math.isinf(v.hi) or v.mag() > self.maxf:
                return INF
            r[k] = v
            if n.op == "var" or self._exact_op(n):
                w[k] = v
            else:
                rho = self._rho(v)
                w[k] = v + I(-rho, rho)
                e = None if e is None else e + I(-rho, rho)
            if e is not None:
                err[k] = e
        adj: dict[int, I] = {id(n): I(0.0) for n in self.nodes}
        adj[id(self.nodes[-1])] = I(1.0)
        total = 0.0
        for n in reversed(self.nodes):
            A = adj[id(n)]
            rounded = (n.op == "var" and self.round_inputs) or not (
                n.op in ("var", "const") or self._exact_op(n))
            if rounded:
                total = _upr(total + self._terms(A, r[id(n)]))
            elif n.op == "const":
                total = _upr(total + _upr(self.cval[id(n)][1] * A.mag()))
            if n.op in ("var", "const"):
                continue
            g = A * I(1 - self.u, 1 + self.u) if rounded else A  # d w / d r = 1 + t d
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

    def _affine_err(self, n: Node, err: dict[int, I]) -> I | None:
        """w - L(x) before rounding, from the arguments' (None if an argument has none)."""
        es = [err.get(id(x)) for x in n.args]
        if n.op in ("mul", "div"):  # by a float constant (affine_forms checked): scale the other
            # the same choice of scaling constant as affine_forms: a leading constant factor
            x, c = (1, 0) if n.op == "mul" and n.args[0].op == "const" else (0, 1)
            ex, kc = es[x], I(self.cval[id(n.args[c])][0])
            if ex is None:
                return None
            return ex * kc if n.op == "mul" else ex / kc
        if any(x is None for x in es):
            return None
        if n.op == "add":
            return es[0] + es[1]
        if n.op == "sub":
            return es[0] - es[1]
        return -es[0]  # neg

    def point_estimate(self, box: dict[str, I]) -> float:
        mid = {k: I((v.lo + v.hi) / 2) for k, v in box.items()}
        try:
            return self.box_bound(mid)
        except (ZeroDivisionError, OverflowError, ValueError):
            return 0.0


def _outward(q: Fraction, step, side: int = 1) -> float:
    """float(q), moved one step outward (``step``) when it lies inside q's side of the box."""
    f = float(q)
    return step(f) if (Fraction(f) > q if side > 0 else Fraction(f) < q) else f


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
    # float(lo) may round inward: widen by one ulp then (only then: sqrt's argument bounded at 0
    # must stay at 0, see box_bound) so the cover contains the real box
    root = {v: I(_outward(lo, _dn), _outward(hi, _upr, -1)) for v, (lo, hi) in b.box.items()}
    widths = {v: x.hi - x.lo for v, x in root.items()}
    heap: list[tuple[float, int, dict[str, I]]] = []
    count, best = 0, 0.0

    def push(box: dict[str, I]) -> None:
        nonlocal count, best
        count += 1
        if b.constraints:
            # contraction keeps every feasible point of the box, so the cover stays a cover
            box = an.lin.contract(box)
            if box is None or not an.feasible(box):
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
