"""Observed round-off of FPCore benchmarks: binary64 evaluation against the exact value.

Points are binary64 values drawn uniformly from the :pre box (constraints enforced by rejection
in exact arithmetic), or, for benchmarks with linear :pre constraints, moved close to one of
them. The binary64 value uses Python floats (IEEE binary64, correctly rounded + - * / sqrt),
constants rounded to binary64 as the program would; the exact value uses Fractions for + - * /
and mpmath at 300 bits for sqrt (relative error < 2^-290, far below any bound here).
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import mpmath

from .fpcore import Benchmark, Node, topo
from .fplinear import affine_forms


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


def _uniform(b: Benchmark, rng: random.Random) -> dict[str, float]:
    env = {v: rng.uniform(float(lo), float(hi)) for v, (lo, hi) in b.box.items()}
    return {v: min(max(x, float(b.box[v][0])), float(b.box[v][1])) for v, x in env.items()}


def _near_boundary(b: Benchmark, rng: random.Random) -> dict[str, float]:
    """A uniform point moved onto the slack side of a random linear :pre constraint g.x >= h,
    g.x - h in (0, 1000 max(|h|, 2^-40)) on a log scale: the round-off of expressions that
    divide by or take sqrt of such a slack is largest there, and uniform points never get close."""
    env = _uniform(b, rng)
    _, lhs, rhs = rng.choice(b.constraints)
    fl = affine_forms(topo(lhs), lambda c: c.value).get(id(lhs))
    fr = affine_forms(topo(rhs), lambda c: c.value).get(id(rhs))
    if fl is None or fr is None:
        return env
    g = dict(fr[0])
    for v, c in fl[0].items():
        g[v] = g.get(v, Fraction(0)) - c
    h = fl[1] - fr[1]
    j = rng.choice([v for v, c in g.items() if c != 0] or list(env))
    if g.get(j, 0) == 0:
        return env
    slack = max(abs(h), Fraction(2) ** -40) * Fraction(rng.random()) * Fraction(10 ** rng.uniform(-3, 3))
    rest = sum(c * Fraction(env[v]) for v, c in g.items() if v != j)
    env[j] = float((h + slack - rest) / g[j])
    return env


def _in_pre(b: Benchmark, q: dict[str, Fraction], cons: list[tuple[list[Node], list[Node]]]) -> bool:
    """Exactly: does the point meet the :pre, strict comparisons strictly (a point on an excluded
    boundary is outside the benchmark's domain, so its error is not an observed error)?"""
    for v, (lo, hi) in b.box.items():
        if not ((lo < q[v] if (v, 0) in b.strict else lo <= q[v])
                and (q[v] < hi if (v, 1) in b.strict else q[v] <= hi)):
            return False
    for (op, _, _), (ln, rn) in zip(b.constraints, cons):
        lhs, rhs = eval_exact(ln, q) or 0, eval_exact(rn, q) or 0
        if lhs > rhs or (op == "<" and lhs == rhs):
            return False
    return True


def observed(b: Benchmark, n: int = 10_000, seed: int = 0, max_tries: int = 50,
             near_boundary: bool = False) -> tuple[float, int]:
    """(max |binary64 - exact|, number of points) over ``n`` feasible sampled points: uniform in
    the box, or (``near_boundary``, benchmarks with constraints) close to a linear constraint."""
    rng = random.Random(seed)
    nodes = topo(b.body)
    cons = [(topo(lhs), topo(rhs)) for _, lhs, rhs in b.constraints]
    gen = _near_boundary if near_boundary and b.constraints else _uniform
    worst, got = 0.0, 0
    for _ in range(n * max_tries):
        if got >= n:
            break
        env = gen(b, rng)
        q = {v: Fraction(x) for v, x in env.items()}
        if not _in_pre(b, q, cons):
            continue
        exact = eval_exact(nodes, q)
        f = eval_float(nodes, env)
        if exact is None or not math.isfinite(f):
            continue
        got += 1
        worst = max(worst, float(abs(Fraction(f) - exact)))
    return worst, got
