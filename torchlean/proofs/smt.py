"""SMT-LIB 2.6 text for sympy formulas, and obligation scripts in the checker's fragment.

Transcendentals become uninterpreted functions ``tl_exp``/``tl_log``/``tl_sqrt``/``tl_tanh``/``tl_erf``
(the ``tl_`` prefix keeps clear of solver built-ins), constrained only by ground instances of the
schemas in ``certificates/axioms.py``. The one irrational constant a rule meets, 1/sqrt(pi) (erf's
derivative 2/sqrt(pi) e^(-x^2), exact on the symbolic backend), is one declared real constant
``tl_rsqrt_pi`` shared by both sides of a claim: an identity proved for every value of it holds
for the true one. Every assert is named: ``goal`` (the negated claim),
``dom_<n>`` (domain assumptions), ``ax_<schema>_<n>`` (axiom instances). The same text runs in
cvc5, z3 and the trusted checker.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from fractions import Fraction

import sympy

FUNCTIONS = {sympy.exp: "tl_exp", sympy.log: "tl_log", sympy.tanh: "tl_tanh", sympy.erf: "tl_erf"}
#: irrational constants as declared (uninterpreted) real constants
CONSTANTS = {sympy.pi ** sympy.Rational(-1, 2): "tl_rsqrt_pi"}
LOGIC = "QF_UFNRA"


class Unsupported(ValueError):
    """A formula uses something the SMT fragment has no word for."""


def num(q: Fraction | sympy.Rational | int) -> str:
    q = Fraction(int(q.p), int(q.q)) if isinstance(q, sympy.Rational) else Fraction(q)
    body = str(abs(q.numerator)) if q.denominator == 1 else f"(/ {abs(q.numerator)} {q.denominator})"
    return f"(- {body})" if q < 0 else body


def _prod(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(* " + " ".join(parts) + ")"


def _pow(base: sympy.Expr, e: sympy.Rational) -> str:
    """b^e for integer e, and half-integers through tl_sqrt (b^(k/2) = sqrt(b) * b^((k-1)/2),
    the meaning for b >= 0, the only place the spec uses them)."""
    b = smt(base)
    if e.q == 1:
        k = abs(int(e.p))
        body = "1" if k == 0 else _prod([b] * k)
    elif e.q == 2:
        k = abs(int(e.p))
        body = _prod([f"(tl_sqrt {b})"] + [b] * (k // 2))
    else:
        raise Unsupported(f"power {e} of {base}")
    return f"(/ 1 {body})" if e < 0 else body


def smt(e: sympy.Basic) -> str:
    """SMT-LIB text of a sympy expression or relation."""
    if e is sympy.true or e is True:
        return "true"
    if e is sympy.false or e is False:
        return "false"
    if isinstance(e, sympy.Symbol):
        return str(e.name)
    if isinstance(e, sympy.Float):
        return num(Fraction(float(e)))
    if isinstance(e, sympy.Rational):
        return num(e)
    if isinstance(e, sympy.Add):
        return "(+ " + " ".join(smt(a) for a in e.args) + ")"
    if isinstance(e, sympy.Mul):
        return _prod([smt(a) for a in e.args])
    if e in CONSTANTS:
        return CONSTANTS[e]
    if isinstance(e, sympy.Pow):
        if not isinstance(e.exp, sympy.Rational):
            raise Unsupported(f"non-constant exponent in {e}")
        return _pow(e.base, e.exp)
    if e.func in FUNCTIONS:
        return f"({FUNCTIONS[e.func]} {smt(e.args[0])})"
    if isinstance(e, sympy.Piecewise):
        out = None
        for value, cond in reversed(e.args):
            if out is None:
                if cond is not sympy.true:
                    raise Unsupported(f"Piecewise without a default branch: {e}")
                out = smt(value)
            else:
                out = f"(ite {smt(cond)} {smt(value)} {out})"
        return out  # type: ignore[return-value]
    rel = {sympy.StrictGreaterThan: ">", sympy.GreaterThan: ">=", sympy.StrictLessThan: "<",
           sympy.LessThan: "<=", sympy.Equality: "="}
    if type(e) in rel:
        return f"({rel[type(e)]} {smt(e.lhs)} {smt(e.rhs)})"
    if isinstance(e, sympy.Unequality):
        return f"(not (= {smt(e.lhs)} {smt(e.rhs)}))"
    if isinstance(e, sympy.And):
        return "(and " + " ".join(smt(a) for a in e.args) + ")"
    if isinstance(e, sympy.Or):
        return "(or " + " ".join(smt(a) for a in e.args) + ")"
    if isinstance(e, sympy.ITE):
        return "(ite " + " ".join(smt(a) for a in e.args) + ")"
    if isinstance(e, sympy.Not):
        return f"(not {smt(e.args[0])})"
    if isinstance(e, sympy.Implies):
        return f"(=> {smt(e.args[0])} {smt(e.args[1])})"
    raise Unsupported(f"no SMT-LIB form for {type(e).__name__}: {e}")


# -- axiom instances ------------------------------------------------------------------------------


def _atoms(exprs: Iterable[sympy.Basic], func: type) -> list[sympy.Expr]:
    found: set[sympy.Expr] = set()
    for e in exprs:
        found |= {a.args[0] for a in sympy.sympify(e).atoms(func)}
    return sorted(found, key=sympy.default_sort_key)


def _sqrt_args(exprs: Iterable[sympy.Basic]) -> list[sympy.Expr]:
    found: set[sympy.Expr] = set()
    for e in exprs:
        for p in sympy.sympify(e).atoms(sympy.Pow):
            if isinstance(p.exp, sympy.Rational) and p.exp.q == 2 and p not in CONSTANTS:
                found.add(p.base)
    return sorted(found, key=sympy.default_sort_key)


def _has_branch(e: sympy.Expr) -> bool:
    return bool(e.atoms(sympy.Piecewise)) or bool(e.atoms(sympy.ITE))


def axiom_instances(exprs: Sequence[sympy.Basic]) -> list[tuple[str, str]]:
    """Ground instances of the axiom schemas about the exp/log/sqrt atoms in ``exprs``.

    Deliberately few: exp > 0 for every exp atom; exp(a) = exp(b) exp(c) for atoms with a = b + c
    (exp(0) = 1 joins when two atoms are each other's negation); exp(log(a)) = a where both occur;
    sqrt(a) > 0 for a > 0."""
    out: list[tuple[str, str]] = []
    exps = _atoms(exprs, sympy.exp)
    for a in exps:
        out.append(("exp_pos", f"(> (tl_exp {smt(a)}) 0)"))
    zero_needed = False
    # a = b + c, looked up by the expanded sum (k^2 expansions, not k^3: softmax over 64 entries has
    # 129 exp atoms), listed in the order of a, then of (b, c)
    sums: dict[sympy.Expr, list[tuple[sympy.Expr, sympy.Expr]]] = {}
    for b, c in itertools.combinations_with_replacement(exps, 2):
        sums.setdefault(sympy.expand(b + c), []).append((b, c))
    for a in exps:
        for b, c in sums.get(sympy.expand(a), []):
            out.append(("exp_add", f"(= (tl_exp {smt(a)}) (* (tl_exp {smt(b)}) (tl_exp {smt(c)})))"))
    for a, b in itertools.permutations(exps, 2):
        # a stable rewrite exp(x - m) against exp(x): exp(x) = exp(x - m) * exp(m), m a max (ite)
        if _has_branch(b) and not _has_branch(a):
            out.append(("exp_add", f"(= (tl_exp {smt(a)}) (* (tl_exp {smt(b)}) (tl_exp {smt(a - b)})))"))
    for b, c in itertools.combinations(exps, 2):
        if sympy.expand(b + c) == 0:
            zero_needed = True
            out.append(("exp_add", f"(= (tl_exp 0) (* (tl_exp {smt(b)}) (tl_exp {smt(c)})))"))
    if zero_needed:
        out.append(("exp_zero", "(= (tl_exp 0) 1)"))
    logs = _atoms(exprs, sympy.log)
    for a in logs:
        for b in exps:
            if sympy.expand(b - sympy.log(a)) == 0 or b.has(sympy.log(a)):
                out.append(("exp_log", f"(=> (> {smt(a)} 0) (= (tl_exp (tl_log {smt(a)})) {smt(a)}))"))
                break
    for a in _sqrt_args(exprs):
        out.append(("sqrt_pos", f"(=> (> {smt(a)} 0) (> (tl_sqrt {smt(a)}) 0))"))
        sa = smt(a)
        out.append(("sqrt_sq", f"(=> (>= {sa} 0) (= (* (tl_sqrt {sa}) (tl_sqrt {sa})) {sa}))"))
    return out


def script(
    constants: Sequence[str],
    claim: str,
    *,
    domain: Sequence[str] = (),
    axioms: Sequence[tuple[str, str]] = (),
    comment: str = "",
) -> str:
    """A closed obligation script: declarations, axioms, domain, (assert (not CLAIM)), check-sat."""
    used = " ".join([claim, *domain, *(t for _, t in axioms)])
    lines = [f"; {line}" for line in comment.splitlines()]
    lines.append(f"(set-logic {LOGIC})")
    lines += [f"(declare-fun {c} () Real)" for c in constants]
    lines += [f"(declare-fun {c} () Real)" for c in CONSTANTS.values()
              if re.search(rf"(?<![\w.]){c}(?![\w.])", used)]
    for fn in ("tl_exp", "tl_log", "tl_sqrt", "tl_tanh", "tl_erf"):
        if f"({fn} " in used:
            lines.append(f"(declare-fun {fn} (Real) Real)")
    counts: dict[str, int] = {}
    for schema, text in axioms:
        n = counts[schema] = counts.get(schema, -1) + 1
        lines.append(f"(assert (! {text} :named ax_{schema}_{n}))")
    lines += [f"(assert (! {d} :named dom_{i}))" for i, d in enumerate(domain)]
    lines.append(f"(assert (! (not {claim}) :named goal))")
    lines.append("(check-sat)")
    return "\n".join(lines) + "\n"


def conj(parts: Sequence[str]) -> str:
    if not parts:
        return "true"
    return parts[0] if len(parts) == 1 else "(and " + " ".join(parts) + ")"
