"""Exact normal forms: polynomials over Q in atoms, and rational functions with named denominators.

An *atom* is a declared real constant (``x``), or an application of a declared function to
arguments that are themselves in normal form (``(tl_exp <normal form of the argument>)``), so
``exp(x - x + y)`` and ``exp(y)`` are the same atom. Two terms are equal as polynomials exactly when
their normal forms are equal: that is the whole of "normalisation over Q".

Division is kept apart: a rational function is a numerator polynomial over a multiset of
denominator factors. Nothing is ever cancelled silently; a checker that divides must show each
factor is nonzero (``refute.py``), which is what makes SMT-LIB's total ``/`` agree with real
division in every claim the checker accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from .core import Rejected, decimal, require, tick
from .sexpr import SExpr, show

Monomial = tuple[tuple[str, int], ...]  # sorted (atom, exponent) pairs; () is the constant term
Poly = dict[Monomial, Fraction]  # no zero coefficients


def const(c: Fraction | int) -> Poly:
    return {(): Fraction(c)} if c else {}


def atom(name: str) -> Poly:
    return {((name, 1),): Fraction(1)}


# The arithmetic below serves every polynomial of the proof checker: this module's (monomials as
# (atom, exponent) pairs, Fraction coefficients), and ``terms.py``'s and ``adjoint.py``'s (monomials
# as sorted tuples of atoms, a power repeating its atom; int coefficients where integral).

def acc(p: Poly, q: Poly, scale: Any = 1) -> None:
    """p += scale * q, in place (zero coefficients dropped)."""
    for m, c in q.items():
        tick()
        v = p.get(m, 0) + scale * c
        if v:
            p[m] = v
        else:
            p.pop(m, None)


def add(p: Poly, q: Poly, scale: Any = 1) -> Poly:
    """p + scale * q, a new polynomial."""
    out = dict(p)
    acc(out, q, scale)
    return out


def _mono_mul(a: Monomial, b: Monomial) -> Monomial:
    exps: dict[str, int] = dict(a)
    for name, e in b:
        exps[name] = exps.get(name, 0) + e
    return tuple(sorted(exps.items()))


def mul(p: Poly, q: Poly, mono: Callable[[Any, Any], Any] = _mono_mul) -> Poly:
    """p * q, ``mono`` the product of two monomials (``terms.py``'s: ``tuple(sorted(a + b))``)."""
    out: Poly = {}
    for m1, c1 in p.items():
        for m2, c2 in q.items():
            tick()  # (products of big polynomials are where a replay can take long)
            m = mono(m1, m2)
            v = out.get(m, 0) + c1 * c2
            if v:
                out[m] = v
            else:
                out.pop(m, None)
    return out


def power(p: Poly, n: int) -> Poly:
    out = const(1)
    for _ in range(n):
        out = mul(out, p)
    return out


def is_const(p: Poly) -> bool:
    return all(m == () for m in p)


def const_value(p: Poly) -> Fraction:
    return p.get((), Fraction(0))


def key(p: Poly) -> str:
    """A canonical text for a polynomial (equal polynomials, equal keys)."""
    if not p:
        return "0"
    parts = []
    for m in sorted(p):
        mono = "*".join(a if e == 1 else f"{a}^{e}" for a, e in m)
        parts.append(f"{p[m]}" + (f"*{mono}" if mono else ""))
    return "+".join(parts)


class Division(Rejected):
    """A polynomial was required where the term divides."""


class RatFun:
    """numerator / product of denominator factors (factor key -> (polynomial, multiplicity))."""

    __slots__ = ("num", "den")

    def __init__(self, num: Poly, den: dict[str, tuple[Poly, int]] | None = None):
        self.num = num
        self.den = den or {}

    def factors(self) -> list[tuple[str, Poly]]:
        """The distinct denominator factors, in a fixed order (certificates refer to them so)."""
        return [(k, self.den[k][0]) for k in sorted(self.den)]

    def poly(self, what: str) -> Poly:
        if self.den:
            raise Division(f"{what}: division is not allowed here")
        return self.num


def _widen(r: RatFun, den: dict[str, tuple[Poly, int]]) -> Poly:
    """r's numerator over the (larger) denominator ``den``."""
    num = r.num
    for k, (f, n) in den.items():
        num = mul(num, power(f, n - r.den.get(k, (f, 0))[1]))
    return num


def r_add(a: RatFun, b: RatFun, scale: Fraction = Fraction(1)) -> RatFun:
    den = dict(a.den)
    for k, (f, n) in b.den.items():
        if n > den.get(k, (f, 0))[1]:
            den[k] = (f, n)
    return RatFun(add(_widen(a, den), _widen(b, den), scale), den)


def r_mul(a: RatFun, b: RatFun) -> RatFun:
    den = dict(a.den)
    for k, (f, n) in b.den.items():
        den[k] = (f, den.get(k, (f, 0))[1] + n)
    return RatFun(mul(a.num, b.num), den)


def r_div(a: RatFun, b: RatFun) -> RatFun:
    """a / b: b's numerator becomes a factor (unless a constant); b itself may not divide."""
    # (audit13) a / (n / d) = a * d / n only where d != 0, and moving d up left no factor to show
    # nonzero: (/ 1 (/ 1 x)) read as x, a checked x = 1/(1/x) that z3 refutes at x = 0
    require(not b.den, "division by a term that itself divides")
    num = a.num
    if is_const(b.num):
        c = const_value(b.num)
        require(c != 0, "division by the constant 0")
        return RatFun(mul(num, const(1 / c)), dict(a.den))
    k = key(b.num)
    den = dict(a.den)
    den[k] = (b.num, den.get(k, (b.num, 0))[1] + 1)
    return RatFun(num, den)


# -- terms -> normal forms --------------------------------------------------------------------

#: the field operations, each folded left to right over its arguments ((- a) alone: negation)
FOLDS: dict[str, Callable[[RatFun, RatFun], RatFun]] = {
    "+": r_add, "-": lambda a, b: r_add(a, b, Fraction(-1)), "*": r_mul, "/": r_div}

#: how ``ite`` conditions are decided: returns True/False, or None when undecided
Decide = Callable[[SExpr], "bool | None"]


class Undecided(Rejected):
    """An ite condition the current path does not decide (the certificate must split on it)."""


_SMT_NUMERAL = re.compile(r"[0-9]+(\.[0-9]+)?", re.ASCII)


def numeral(tok: str) -> Fraction | None:
    """An SMT-LIB numeral or decimal (ASCII digits, within ``core.decimal``'s limits), or None."""
    if tok and tok[0].isascii() and tok[0].isdigit():
        try:  # (audit12: SMT-LIB's syntax only; ``decimal`` alone read 1e5, 1/2, 1_000, errors there)
            if not _SMT_NUMERAL.fullmatch(tok):
                raise ValueError
            return decimal(tok)
        except ValueError:
            raise Rejected(f"bad numeral {tok[:40]!r}") from None
    return None


class Normaliser:
    """Turns real-valued terms into RatFun, resolving ``ite`` with ``decide``.

    With ``decide=None`` an ``ite`` becomes an opaque atom named by its text: identities proved
    that way hold for every value of the ite, which is what axiom-schema checks need.
    """

    def __init__(self, constants: dict[str, str], functions: dict[str, tuple[tuple[str, ...], str]],
                 decide: Decide | None = None):
        self.constants = constants
        self.functions = functions
        self.decide = decide
        # memo by identity; the term is kept in the entry so that its id cannot be reused
        self._memo: dict[int, tuple[SExpr, RatFun]] = {}

    def term(self, t: SExpr) -> RatFun:
        hit = self._memo.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1]
        r = self._term(t)
        self._memo[id(t)] = (t, r)
        return r

    def _term(self, t: SExpr) -> RatFun:
        if isinstance(t, str):
            v = numeral(t)
            if v is not None:
                return RatFun(const(v))
            require(self.constants.get(t) == "Real", f"undeclared real constant {t!r}")
            return RatFun(atom(t))
        require(len(t) >= 2 and isinstance(t[0], str), f"bad term {show(t)}")
        head, args = t[0], t[1:]
        if head == "ite":
            require(len(args) == 3, f"bad ite {show(t)}")
            if self.decide is None:
                return RatFun(atom("{" + show(t) + "}"))
            c = self.decide(args[0])
            if c is None:
                raise Undecided(show(args[0]))
            return self.term(args[1] if c else args[2])
        if head in self.functions:
            sorts, out = self.functions[head]
            require(out == "Real" and len(sorts) == len(args), f"bad application {show(t)}")
            keys = [key(self.term(a).poly(f"argument of {head}")) for a in args]
            return RatFun(atom(f"({head} {' '.join(keys)})"))
        vals = [self.term(a) for a in args]
        if head not in FOLDS:
            raise Rejected(f"operator {head!r} is outside the supported fragment")
        if head == "-" and len(vals) == 1:
            return RatFun(mul(vals[0].num, const(-1)), dict(vals[0].den))
        acc = vals[0]
        for v in vals[1:]:
            acc = FOLDS[head](acc, v)
        return acc


# -- literals: p > 0, p >= 0, p = 0 ------------------------------------------------------------

RELS = {">": (">", 1), ">=": (">=", 1), "<": (">", -1), "<=": (">=", -1), "=": ("=", 1)}


def literal(t: SExpr, norm: Normaliser) -> tuple[str, Poly] | None:
    """``(rel a b)`` as (rel', a - b) with rel' in {>, >=, =}; None if ``t`` is not a comparison."""
    if not (isinstance(t, tuple) and len(t) == 3 and t[0] in RELS):
        return None
    if t[0] == "=" and _is_bool(t[1], norm):
        return None
    rel, sign = RELS[t[0]]  # type: ignore[index]
    a, b = norm.term(t[1]), norm.term(t[2])
    if a.den or b.den:  # the difference would divide too (r_add keeps every factor): no literal
        raise Division(f"comparison {show(t)[:200]}: division is not allowed here")
    diff = r_add(a, b, Fraction(-1))
    p = diff.poly(f"comparison {show(t)}")
    return rel, (p if sign > 0 else mul(p, const(-1)))


def _is_bool(t: SExpr, norm: Normaliser) -> bool:
    if isinstance(t, str):
        return t in ("true", "false") or norm.constants.get(t) == "Bool"
    return t[0] in ("and", "or", "not", "=>") or (t[0] in RELS and t[0] != "=")


def lit_key(rel: str, p: Poly) -> str:
    """Canonical key of ``p rel 0``: scaled so the leading coefficient is +-1 (positive scaling
    keeps the meaning; for '=' the sign is free too)."""
    if not p:
        return f"{rel} 0"
    lead = p[min(p)]
    scale = 1 / abs(lead) if rel != "=" else 1 / lead
    return f"{rel} {key(mul(p, const(scale)))}"


def scaled_keys(p: Poly) -> tuple[str, str]:
    """(key of p, key of -p), each scaled so its leading coefficient is +-1 (as ``lit_key``)."""
    lead = p[min(p)]
    kp = key(mul(p, const(1 / abs(lead))))
    return kp, key(mul(p, const(-1 / abs(lead))))


def negate(rel: str, p: Poly) -> tuple[str, Poly]:
    """not (p > 0) is -p >= 0; not (p >= 0) is -p > 0; not (p = 0) is p != 0."""
    if rel == "=":
        return "!=", p
    require(rel in (">", ">="), f"cannot negate relation {rel!r}")
    return (">=" if rel == ">" else ">"), mul(p, const(-1))


def const_truth(rel: str, c: Fraction) -> bool:
    return {">": c > 0, ">=": c >= 0, "=": c == 0, "!=": c != 0}[rel]
