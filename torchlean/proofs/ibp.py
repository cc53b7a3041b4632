"""``ibp.*`` and ``relax.*`` obligations: the interval rules the bound table runs are sound.

For a rule T of ``certificates/intervals.py`` and a primitive f (its spec meaning): for all inputs x
with l <= x <= u, T(l, u).lo <= f(x) <= T(l, u).hi. The rule is run on symbols through
``SympyOps``, so the statement is about the very function the exact engine and the function rows
call (``intervals.py`` is their only copy). ``relax.mul.*``: McCormick's planes (``mccormick``)
bound x*w on the box for every weight t in [0, 1] (the engine's CROWN lines for a mul node).

Which rule a row runs is read from the row, never restated here: relu/abs/square's ``ival`` is
``functions._rule(rule)`` (its ``.rule`` is stated), a monotone row's direction is its ``mono()``
sign (audit17: a row switched to another rule makes its artifact stale).

Monotone rows: the rule is [f(l), f(u)] (``interval_increasing``) or [f(u), f(l)]
(``interval_decreasing``), and the obligation proves that it contains f(x), from ground instances
of the checked axiom schemas (``mono_exp``, ``mono_log``, ``mono_sqrt``, ``mono_tanh``, ``mono_erf``,
``exp_pos``, ``sqrt_pos``) at (l, x) and (x, u): for exp, tanh, erf, log, sqrt the monotonicity of f *is* the
axiom; sigmoid = 1/(1 + exp(-x)), softplus = log(1 + exp(x)) and rsqrt = 1/sqrt(x) are *derived*
from those of exp, log and sqrt (their spec meanings, not new axioms). What is not proved here: the
row applies the rule to its rational enclosures of f at l and u (``functions.py``), whose soundness
is argued (directed-rounding series, TRUST_BOUNDARIES.md) and tested against mpmath.

``PARTS`` maps every part of the bound table's IBP (each function row of ``functions.FUNCTIONS`` and
the engine's affine forms, mul and max nodes) to the obligations that prove its rule;
``NOT_PROVED`` gives the reason for a row whose rule SMT cannot state. ``proofs.coverage`` reads
both, and a row with neither is a gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import sympy

from ..certificates import intervals as iv
from ..certificates.functions import FUNCTIONS
from ..spec.primitives import PRIMITIVES
from ..spec.scalar import SympyMath
from . import smt
from .obligation import Obligation, source


class SympyOps:
    @staticmethod
    def max(a: Any, b: Any) -> Any:
        return sympy.Piecewise((a, sympy.GreaterThan(a, b)), (b, True))

    @staticmethod
    def min(a: Any, b: Any) -> Any:
        return sympy.Piecewise((a, sympy.LessThan(a, b)), (b, True))

    @staticmethod
    def ge(a: Any, b: Any) -> Any:
        return sympy.GreaterThan(a, b)

    @staticmethod
    def select(cond: Any, a: Any, b: Any) -> Any:
        return sympy.Piecewise((a, cond), (b, True))

    @staticmethod
    def dot(c: Any, qs: Any, xs: Any) -> Any:
        return c + sum(q * x for q, x in zip(qs, xs))


class _SymbolicAttrs(SympyMath):
    """The spec's sympy namespace, with symbolic attributes (leaky_relu's slope) kept as symbols."""

    @staticmethod
    def const(value: Any) -> Any:
        return value if isinstance(value, sympy.Basic) else SympyMath.const(value)


OPS = SympyOps()
R = sympy.Symbol


def _spec(name: str, *xs: Any, **attrs: Any) -> Any:
    return PRIMITIVES[name].sympy(*(np.array([x], dtype=object) for x in xs), **attrs)[0]


def _ob(name: str, boxes: list[tuple[Any, Any, Any]], value: Any, bound: tuple[Any, Any],
        extra_domain: list[Any] = (), axioms: list[tuple[str, str]] = (), kind: str = "ibp",
        statement: str = "", claims: list[Any] = ()) -> Obligation:
    lo, hi = bound  # None: that side is not claimed (``claims``: the claim's parts instead)
    claims = list(claims) or [sympy.LessThan(lo, value), sympy.LessThan(value, hi)]
    claim = smt.conj([smt.smt(c) for c in claims])
    dom = [smt.smt(sympy.And(sympy.LessThan(lv, x), sympy.LessThan(x, uv))) for x, lv, uv in boxes]
    dom += [d if isinstance(d, str) else smt.smt(d) for d in extra_domain]
    names = sorted({s.name for e in (value, *claims) for s in sympy.sympify(e).free_symbols}
                   | {s.name for b in boxes for s in b if isinstance(s, sympy.Symbol)})
    statement = statement or f"for x in [l, u], the interval rule of {name} contains {name}(x)"
    text = smt.script(names, claim, domain=dom, axioms=list(axioms),
                      comment=f"{kind}.{name}: {statement}")
    return Obligation(kind, f"interval:{name}", f"{kind}.{name}", text, statement, {},
                      ("l <= x <= u",))


def _xlu() -> tuple[Any, Any, Any]:
    return R("x", real=True), R("l", real=True), R("u", real=True)


def _row_rule(name: str) -> Callable[..., Any]:
    """The ``intervals.py`` rule the bound table's row ``name`` runs (``functions._rule``): the
    obligation states that one, so a row switched to another rule makes its artifact stale."""
    rule = getattr(FUNCTIONS[name].ival, "rule", None)
    if not isinstance(rule, str) or not callable(getattr(iv, rule, None)):
        raise RuntimeError(f"the {name} row's interval is not an intervals.py rule (functions._rule)")
    return getattr(iv, rule)


def _row_decreasing(name: str) -> bool:
    """Whether the row ``name`` runs ``interval_decreasing`` (else ``_increasing``), read from the
    row itself (``Row.interval`` picks the rule by ``mono()``'s sign), never restated here."""
    mono = FUNCTIONS[name].mono()
    if FUNCTIONS[name].ival is not None or not mono:
        raise RuntimeError(f"the {name} row runs no monotone intervals.py rule")
    return mono < 0


def _unary(name: str, **attrs: Any) -> Obligation:
    x, l, u = _xlu()
    return _ob(name, [(x, l, u)], _spec(name, x, **attrs), _row_rule(name)((l, u), ops=OPS))


def _binary(name: str, rule: Callable[..., Any]) -> Obligation:
    x, l, u = _xlu()
    y, m, v = R("y", real=True), R("m", real=True), R("v", real=True)
    return _ob(name, [(x, l, u), (y, m, v)], _spec(name, x, y), rule((l, u), (m, v), ops=OPS))


def _mono(fn: str, a: Any, b: Any) -> tuple[str, str]:
    """The checked axiom instance a <= b => f(a) <= f(b) (log, sqrt: with a > 0)."""
    t, sa, sb = f"tl_{fn}", smt.smt(a), smt.smt(b)
    pre = f"(and (> {sa} 0) (<= {sa} {sb}))" if fn in ("log", "sqrt") else f"(<= {sa} {sb})"
    return f"mono_{fn}", f"(=> {pre} (<= ({t} {sa}) ({t} {sb})))"


def _monotone(name: str, f: Callable[[Any], Any], axioms: Callable[[Any, Any], list[tuple[str, str]]],
              domain: list[Any] = (), value: Any = None) -> Obligation:
    """[f(l), f(u)] (or [f(u), f(l)]) contains f(x) for l <= x <= u, from the axiom instances
    ``axioms(a, b)`` at (l, x) and (x, u) (each meaning: a <= b gives f(a) <= f(b), or >=)."""
    x, l, u = _xlu()
    rule = iv.interval_decreasing if _row_decreasing(name) else iv.interval_increasing
    ax = list(dict.fromkeys([*axioms(l, x), *axioms(x, u)]))  # each instance once
    return _ob(name, [(x, l, u)], f(x) if value is None else value, rule(f, (l, u), ops=OPS),
               list(domain), ax)


def _exp_pos(*args: Any) -> list[tuple[str, str]]:
    return [("exp_pos", f"(> (tl_exp {smt.smt(a)}) 0)") for a in args]


def _sqrt_pos(*args: Any) -> list[tuple[str, str]]:
    return [("sqrt_pos", f"(=> (> {smt.smt(a)} 0) (> (tl_sqrt {smt.smt(a)}) 0))") for a in args]


def _sigmoid(x: Any) -> Any:
    return _spec("sigmoid", x)


def _softplus(x: Any) -> Any:
    return _spec("softplus", x)


def _rsqrt(x: Any) -> Any:
    return 1 / sympy.sqrt(x)


def _affine() -> Obligation:
    """Two terms and a constant: the rule is a left fold over the terms, so two terms cover every
    length (each further term adds its own bound to both sides: induction on the fold)."""
    c = R("c", real=True)
    q = [R(f"q{j}", real=True) for j in range(2)]
    xs = [R(f"x{j}", real=True) for j in range(2)]
    box = [(R(f"l{j}", real=True), R(f"u{j}", real=True)) for j in range(2)]
    bound = iv.interval_affine(c, list(zip(q, box)), ops=OPS)
    return _ob("affine", [(xs[j], *box[j]) for j in range(2)], c + q[0] * xs[0] + q[1] * xs[1], bound,
               statement="c + q0 x0 + q1 x1 lies in interval_affine(c, [(q0, [l0, u0]), (q1, [l1, u1])])")


def _max_group() -> Obligation:
    """A max node (the spec's ``max`` reduction) of two members through ``interval_max``, the
    fold of ``interval_maximum``. Longer groups by induction on the fold: interval_max(g + [b]) is
    interval_maximum(interval_max(g), b), max(g + [b]) = max(max(g), b), and the step is
    ``ibp.maximum`` (any interval containing max(g) as its first argument)."""
    xs = [R(f"x{j}", real=True) for j in range(2)]
    box = [(R(f"l{j}", real=True), R(f"u{j}", real=True)) for j in range(2)]
    value = PRIMITIVES["max"].sympy(np.array(xs, dtype=object))
    value = value.flat[0] if isinstance(value, np.ndarray) else value
    return _ob("max", [(xs[j], *box[j]) for j in range(2)], value, iv.interval_max(box, ops=OPS),
               statement="max(x0, x1) (the spec's max reduction) lies in interval_max of the members' "
                         "intervals")


def _mccormick(side: str) -> Obligation:
    """The plane at weight t is the convex combination of the planes at t = 0 and t = 1 (an
    identity of the code), each of those bounds x*w on the box, and so does the plane at t. The
    first three parts are what makes the fourth checkable: with them, x*w - plane(t) =
    (1 - t)(x*w - plane(0)) + t (x*w - plane(1)) is a sum of products of two facts."""
    x, lx, ux = R("x", real=True), R("lx", real=True), R("ux", real=True)
    w, lw, uw = R("w", real=True), R("lw", real=True), R("uw", real=True)
    t = R("t", real=True)
    k = 0 if side == "lower" else 1

    def plane(weight: Any) -> Any:
        a, b, c = iv.mccormick((lx, ux), (lw, uw), weight, weight, ops=OPS)[k]
        return a * x + b * w + c

    pt, p0, p1 = plane(t), plane(sympy.Integer(0)), plane(sympy.Integer(1))
    xw = _spec("mul", x, w)
    below = (lambda p: sympy.LessThan(p, xw)) if side == "lower" else (lambda p: sympy.LessThan(xw, p))
    parts = [sympy.Eq(pt, (1 - t) * p0 + t * p1, evaluate=False), below(p0), below(p1), below(pt)]
    statement = (f"for x in [lx, ux], w in [lw, uw], t in [0, 1], the McCormick {side} plane of "
                 f"intervals.mccormick is {'below' if side == 'lower' else 'above'} x * w")
    return _ob(f"mul.{side}", [(x, lx, ux), (w, lw, uw), (t, 0, 1)], xw, (None, None), kind="relax",
               statement=statement, claims=parts)


@source("intervals.ibp", library=True)
def interval_obligations() -> Iterator[Obligation]:
    x = R("x", real=True)
    yield _affine()
    yield _binary("mul", iv.interval_mul)
    yield _mccormick("lower")
    yield _mccormick("upper")
    yield _binary("maximum", iv.interval_maximum)
    yield _max_group()
    yield _unary("relu")
    s = R("s", real=True)  # every slope in [0, 1] the row applies the rule to (the spec's 0.01 too)
    xs, ls, us = _xlu()
    leaky = PRIMITIVES["leaky_relu"].meaning(_SymbolicAttrs(), np.array([xs], dtype=object), slope=s)[0]
    yield _ob("leaky_relu", [(xs, ls, us), (s, 0, 1)], leaky, iv.interval_leaky_relu((ls, us), s, ops=OPS))
    yield _unary("abs")
    yield _ob("square", [(xs, ls, us)], _spec("pow", xs, exponent=2), _row_rule("square")((ls, us), ops=OPS))
    yield _monotone("reciprocal", lambda v: 1 / v, lambda a, b: [],
                    value=_spec("pow", x, exponent=-1),
                    domain=[sympy.Or(sympy.StrictGreaterThan(R("l", real=True), 0),
                                     sympy.StrictLessThan(R("u", real=True), 0))])
    yield _monotone("exp", sympy.exp, lambda a, b: [_mono("exp", a, b)])
    yield _monotone("tanh", sympy.tanh, lambda a, b: [_mono("tanh", a, b)])
    yield _monotone("erf", sympy.erf, lambda a, b: [_mono("erf", a, b)])
    pos = [sympy.StrictGreaterThan(R("l", real=True), 0)]
    yield _monotone("log", sympy.log, lambda a, b: [_mono("log", a, b)], pos)
    # sqrt's value is printed through tl_sqrt by smt.smt, the others by their function names
    yield _monotone("sqrt", sympy.sqrt, lambda a, b: [_mono("sqrt", a, b)], pos)
    yield _monotone("rsqrt", _rsqrt, lambda a, b: [_mono("sqrt", a, b), *_sqrt_pos(a, b)], pos)
    # sigmoid(a) <= sigmoid(b) from exp(-b) <= exp(-a) and exp > 0: derived, not assumed
    yield _monotone("sigmoid", _sigmoid, lambda a, b: [_mono("exp", -b, -a), *_exp_pos(-a, -b)])
    # softplus: exp(a) <= exp(b), then log(1 + exp(a)) <= log(1 + exp(b)) (1 + exp(a) > 0)
    yield _monotone("softplus", _softplus, lambda a, b: [
        _mono("exp", a, b), *_exp_pos(a, b), _mono("log", 1 + sympy.exp(a), 1 + sympy.exp(b))])


#: each part of the bound table's IBP -> the obligations proving its rule (names as yielded above)
PARTS: dict[str, tuple[str, ...]] = {
    "affine": ("ibp.affine",), "mul": ("ibp.mul", "relax.mul.lower", "relax.mul.upper"),
    "max": ("ibp.maximum", "ibp.max"),
    **{n: (f"ibp.{n}",) for n in ("relu", "leaky_relu", "abs", "square", "reciprocal", "exp", "tanh", "erf",
                                  "log", "sqrt", "rsqrt", "sigmoid", "softplus")},
}

#: function rows whose interval rule SMT cannot state, and why (their argument: TRUST_BOUNDARIES.md)
NOT_PROVED: dict[str, str] = {
    "silu": "not monotone: its interval is the generic linear-bound algorithm with slope 0 over its "
            "convexity pieces (tangent inequality on convex pieces, endpoints on concave ones, a "
            "Lipschitz bound on the one-ulp inflection brackets); the bracket's ends are checked in "
            "exact arithmetic (functions.check_silu_signs), one sign change argued (x tanh(x/2) "
            "increases in |x|); SMT has no statement of convexity pieces",
    "gelu": "not monotone: the generic algorithm with slope 0 as silu; the single sign change of "
            "gelu'' on [0, 3] is checked in exact arithmetic (functions.check_gelu_signs: 110 "
            "sub-intervals with one-signed enclosures), beyond 3 argued from a checked premise",
    "pow": "the lowering never calls this row (pow lowers to square, mul, reciprocal, sqrt or "
           "exp(c log x), each proved); the row's own interval, kept for direct use: odd positive "
           "integers map the endpoints (x^n increasing, argued), the rest the generic algorithm",
}
