"""Counterexamples: where a refuted claim's two sides really differ, as concrete inputs.

A solver's ``sat`` model may interpret ``tl_tanh`` as any function; this module evaluates the
claim with the *real* transcendental functions (mpmath, 50 digits) at the model's point, and if
the model only exploited the freedom of the uninterpreted functions, searches random points in
the domain for a real counterexample.
"""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any

import mpmath

from ..certificates.sexpr import SExpr, read_script, show

FUNCS = {"tl_exp": mpmath.exp, "tl_log": mpmath.log, "tl_sqrt": mpmath.sqrt, "tl_tanh": mpmath.tanh,
         "tl_erf": mpmath.erf}
#: the declared constants that stand for one real number (``smt.CONSTANTS``): their true values
#: replace whatever the solver's model chose
FIXED = {"tl_rsqrt_pi": lambda: 1 / mpmath.sqrt(mpmath.pi)}


def evaluate(t: SExpr, env: dict[str, Any]) -> Any:
    if isinstance(t, str):
        if t in ("true", "false"):
            return t == "true"
        if t in env:
            return env[t]
        return mpmath.mpf(Fraction(t).numerator) / Fraction(t).denominator
    head, args = t[0], t[1:]
    if head == "ite":
        return evaluate(args[1] if evaluate(args[0], env) else args[2], env)
    vals = [evaluate(a, env) for a in args]
    if head in FUNCS:
        return FUNCS[head](vals[0])
    ops = {
        "+": lambda v: mpmath.fsum(v), "*": lambda v: mpmath.fprod(v),
        "-": lambda v: -v[0] if len(v) == 1 else v[0] - mpmath.fsum(v[1:]),
        "/": lambda v: v[0] / v[1], ">": lambda v: v[0] > v[1], ">=": lambda v: v[0] >= v[1],
        "<": lambda v: v[0] < v[1], "<=": lambda v: v[0] <= v[1], "and": all, "or": any,
        "not": lambda v: not v[0], "=>": lambda v: (not v[0]) or v[1],
    }
    if head == "=":
        return vals[0] == vals[1] if isinstance(vals[0], bool) else abs(vals[0] - vals[1]) <= 1e-30 * (
            1 + abs(vals[0]))
    return ops[head](vals)


def _differences(claim: SExpr, env: dict[str, Any]) -> list[str]:
    parts = claim[1:] if isinstance(claim, tuple) and claim[0] == "and" else (claim,)
    out = []
    for p in parts:
        if isinstance(p, tuple) and p[0] == "=":
            lhs, rhs = evaluate(p[1], env), evaluate(p[2], env)
            if abs(lhs - rhs) > 1e-30 * (1 + abs(lhs)):
                out.append(f"rule = {mpmath.nstr(lhs, 17)} but derivative/spec = {mpmath.nstr(rhs, 17)}"
                           f"  [{show(p)[:160]}]")
        elif not evaluate(p, env):
            out.append(f"fails: {show(p)[:160]}")
    return out


def explain(statement: str, model: dict[str, str], tries: int = 300) -> str:
    """Concrete inputs where the claim fails over the reals, or why none was found."""
    mpmath.mp.dps = 50
    script = read_script(statement)
    claim = script.goal[1]  # type: ignore[index]
    fixed = {k: f() for k, f in FIXED.items() if k in script.constants}
    names = sorted(set(script.constants) - set(fixed))
    domain = [t for n, t in script.asserts if n.startswith("dom_")]

    def attempt(env: dict[str, Any]) -> str | None:
        try:
            if not all(evaluate(d, env) for d in domain):
                return None
            diffs = _differences(claim, env)
        except (ValueError, ZeroDivisionError, TypeError):
            return None
        if not diffs:
            return None
        point = ", ".join(f"{k} = {mpmath.nstr(env[k], 12)}" for k in names)
        return f"counterexample: {point}\n  " + "\n  ".join(diffs[:3])

    env = {k: mpmath.mpf(Fraction(model.get(k, "0")).numerator) / Fraction(model.get(k, "0")).denominator
           for k in names}
    found = attempt({**env, **fixed})
    if found:
        return found
    rng = random.Random(0)
    for _ in range(tries):
        found = attempt({**{k: mpmath.mpf(rng.uniform(-3, 3)) for k in names}, **fixed})
        if found:
            return found + "\n  (the solver's model only used the freedom of an uninterpreted function)"
    return ("the solver's model only exploits the uninterpreted functions; no real counterexample in "
            f"{tries} random points (the claim may need more axiom instances)")
