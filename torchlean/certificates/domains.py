"""A claim's domain drawn from its spec: the ``claim`` kind (a refutation whose ``dom_*`` are checked).

A forward or autograd claim's goal is ``(not C)``, C one ``(= RUNTIME SPEC)`` or an ``and`` of them
(the writer's order: the runtime's term first, the spec's meaning or its derivative second). Its
domain may only exclude where the spec side is undefined or at a kink: every ``dom_*`` atom must
be, with D, Q, K read in normal form (non-constant, so never a false constant atom):

    (not (= a b))            a - b = ±D,  D a divisor (``(/ n D)``) of a spec term
    (or (> a b) (< a b))     a - b = ±K,  K = c - d of a comparison ``(op c d)`` in a spec term
                             (D and K polynomials in the declared reals: ``_plain``)
    (> a b)                  a - b = Q,   Q a ``tl_sqrt`` or ``tl_log`` argument of a spec term
    (>= a b)                 a - b = Q,   Q a ``tl_sqrt`` argument of a spec term

so the claim is made wherever the spec's terms are all defined, away from the spec's own kinks.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from .core import OutOfTime, Rejected, Verdict, checker, require
from .poly import Normaliser, Poly, const, is_const, key, lit_key, literal, mul
from .refute import replay
from .sexpr import SExpr, read_script, show

COMPARISONS = (">", ">=", "<", "<=")


def _facts(t: SExpr, norm: Normaliser, out: set[str]) -> None:
    """Add the definedness and kink facts of every subterm of spec term ``t`` to ``out``."""
    if isinstance(t, str):
        return
    head, args = t[0], t[1:]
    try:
        if head == "/" and len(args) == 2:
            d = norm.term(args[1])
            out.add(_ne(d.num if not d.den and _plain(d.num, norm) else None))
        elif head in ("tl_sqrt", "tl_log") and len(args) == 1:
            p = norm.term(args[0]).poly("argument")
            if not is_const(p):  # sqrt is defined at 0 too, log is not
                out.update([lit_key(">", p)] + ([lit_key(">=", p)] if head == "tl_sqrt" else []))
        elif head in COMPARISONS:  # a comparison the spec branches on (in an ite's condition)
            lit = literal(t, norm)
            if lit is not None and _plain(lit[1], norm):
                out.add(_ne(lit[1]))
    except OutOfTime:
        raise
    except Rejected:  # a subterm outside the polynomial fragment gives no fact (so no atom matches it)
        pass
    for a in args:
        _facts(a, norm, out)


def _plain(p: Poly, norm: Normaliser) -> bool:
    """Whether ``p`` is a polynomial in declared reals only (no function or ``ite`` atom): then,
    non-constant, it vanishes on a closed null set, so ``p != 0`` never empties a domain."""
    return all(norm.constants.get(a) == "Real" for m in p for a, _ in m)


def _ne(p: Poly | None) -> str:
    return "" if p is None or is_const(p) else "!= " + lit_key("=", p)[2:]


def _atom(t: SExpr, norm: Normaliser) -> str:
    """The key a ``dom_*`` atom must find among the spec's facts ("" when of no accepted shape)."""
    if isinstance(t, tuple) and len(t) == 2 and t[0] == "not" and isinstance(t[1], tuple) \
            and len(t[1]) == 3 and t[1][0] == "=":
        lit = literal(t[1], norm)
        return _ne(lit[1]) if lit and lit[0] == "=" else ""
    if isinstance(t, tuple) and len(t) == 3 and t[0] == "or":
        a, b = literal(t[1], norm), literal(t[2], norm)
        if a and b and a[0] == b[0] == ">" and key(a[1]) == key(mul(b[1], const(Fraction(-1)))):
            return _ne(a[1])
        return ""
    if isinstance(t, tuple) and len(t) == 3 and t[0] in (">", ">="):
        lit = literal(t, norm)
        return lit_key(lit[0], lit[1]) if lit and not is_const(lit[1]) else ""
    return ""


def spec_terms(goal: SExpr) -> list[SExpr]:
    """The spec side of each equation of a goal ``(not C)``."""
    require(isinstance(goal, tuple) and len(goal) == 2 and goal[0] == "not", "goal must be (not CLAIM)")
    claim = goal[1]
    parts = list(claim[1:]) if isinstance(claim, tuple) and claim and claim[0] == "and" else [claim]
    require(bool(parts) and all(isinstance(c, tuple) and len(c) == 3 and c[0] == "=" for c in parts),
            "claim must be (= RUNTIME SPEC) or an 'and' of them")
    return [c[2] for c in parts]


def check_domain(statement: str) -> int:
    """Reject unless every ``dom_*`` atom of ``statement`` is drawn from its spec side (module
    docstring); return the number of atoms checked."""
    script = read_script(statement)
    norm = Normaliser(script.constants, script.functions)
    facts: set[str] = set()
    for t in spec_terms(script.goal):
        _facts(t, norm, facts)
    facts.discard("")
    n = 0
    for name, t in script.asserts:
        if name.startswith("dom_"):
            try:
                k = _atom(t, norm)
            except OutOfTime:
                raise
            except Rejected:
                k = ""
            require(k in facts, f"{name}: {show(t)[:200]} is not a divisor, sqrt/log argument or kink "
                                "of the claim's spec side")
            n += 1
    return n


@checker("claim")
def check_claim(cert: dict[str, Any]) -> Verdict:
    """{"kind": "claim", "statement": SMT-LIB text, "tree": NODE}: ``refutation``'s replay, and the
    statement's domain drawn from its spec side (``check_domain``)."""
    require(cert.get("tree") is not None,
            "no certificate tree: nothing to replay (a solver's unsat counts only when re-run)")
    check_domain(cert["statement"])
    return Verdict(True, replay(cert["statement"], cert["tree"]))
