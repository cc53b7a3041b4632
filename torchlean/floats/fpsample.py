"""Observed round-off of FPCore benchmarks: binary64 evaluation against the exact value.

Points are binary64 values drawn uniformly from the :pre box (constraints enforced by rejection
in exact arithmetic). The binary64 value uses Python floats (IEEE binary64, correctly rounded
+ - * / sqrt), constants rounded to binary64 as the program would; the exact value uses Fractions
for + - * / and mpmath at 300 bits for sqrt (relative error < 2^-290, far below any bound here).
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import mpmath

from .fpcore import Benchmark, Node, topo


def eval_float(nodes: list[Node], env: dict[str, float]) -> float:
    val: dict[int, float] = {}
    for n in nodes:
        a = [val[id(x)] for x in n.args]
        if n.op == "var":
            v = env[n.name]
        elif n.op == "const":
            v = float(n.value)  # correctly rounded (Fraction -> float is round-to-nearest-even)
        elif n.op == "add":
            v = a[0] + a[1]
        elif n.op == "sub":
            v = a[0] - a[1]
        elif n.op == "mul":
            v = a[0] * a[1]
        elif n.op == "div":
            v = a[0] / a[1] if a[1] != 0 else math.nan
        elif n.op == "sqrt":
            v = math.sqrt(a[0]) if a[0] >= 0 else math.nan
        else:
            v = -a[0]
        val[id(n)] = v
    return val[id(nodes[-1])]


def eval_exact(nodes: list[Node], env: dict[str, Fraction]) -> Fraction | None:
    val: dict[int, Fraction] = {}
    for n in nodes:
        a = [val[id(x)] for x in n.args]
        if n.op == "var":
            v = env[n.name]
        elif n.op == "const":
            v = n.value
        elif n.op == "add":
            v = a[0] + a[1]
        elif n.op == "sub":
            v = a[0] - a[1]
        elif n.op == "mul":
            v = a[0] * a[1]
        elif n.op == "div":
            if a[1] == 0:
                return None
            v = a[0] / a[1]
        elif n.op == "sqrt":
            if a[0] < 0:
                return None
            with mpmath.workprec(300):
                s = mpmath.sqrt(mpmath.mpf(a[0].numerator) / a[0].denominator)
                man, exp = s.man_exp if s != 0 else (0, 0)
            v = Fraction(int(man)) * Fraction(2) ** int(exp) if s != 0 else Fraction(0)
        else:
            v = -a[0]
        val[id(n)] = v
    return val[id(nodes[-1])]


def observed(b: Benchmark, n: int = 10_000, seed: int = 0, max_tries: int = 50) -> tuple[float, int]:
    """(max |binary64 - exact|, number of points) over ``n`` feasible sampled points."""
    rng = random.Random(seed)
    nodes = topo(b.body)
    cons = [(topo(lhs), topo(rhs)) for _, lhs, rhs in b.constraints]
    worst, got = 0.0, 0
    for _ in range(n * max_tries):
        if got >= n:
            break
        env = {v: rng.uniform(float(lo), float(hi)) for v, (lo, hi) in b.box.items()}
        env = {v: min(max(x, float(b.box[v][0])), float(b.box[v][1])) for v, x in env.items()}
        q = {v: Fraction(x) for v, x in env.items()}
        if any(not (lo <= q[v] <= hi) for v, (lo, hi) in b.box.items()):
            continue
        if any((eval_exact(ln, q) or 0) > (eval_exact(rn, q) or 0) for ln, rn in cons):
            continue
        exact = eval_exact(nodes, q)
        f = eval_float(nodes, env)
        if exact is None or not math.isfinite(f):
            continue
        got += 1
        worst = max(worst, float(abs(Fraction(f) - exact)))
    return worst, got
