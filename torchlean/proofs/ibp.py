"""``ibp.*`` obligations: every interval rule in ``certificates/intervals.py`` is sound.

For a rule T and a primitive f (its spec meaning): for all inputs x with l <= x <= u,
T(l, u).lo <= f(x) <= T(l, u).hi. The rule is run on symbols through ``SympyOps``, so the
statement is about the code the bound checkers import. Monotone transcendentals use the
``mono_*`` axiom instances at (l, x) and (x, u).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sympy

from ..certificates import intervals as iv
from ..spec.primitives import PRIMITIVES
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


OPS = SympyOps()
R = sympy.Symbol


def _spec(name: str, *xs: Any, **attrs: Any) -> Any:
    import numpy as np

    return PRIMITIVES[name].sympy(*(np.array([x], dtype=object) for x in xs), **attrs)[0]


def _ob(name: str, boxes: list[tuple[Any, Any, Any]], value: Any, bound: tuple[Any, Any],
        extra_domain: list[Any] = (), axioms: list[tuple[str, str]] = ()) -> Obligation:
    lo, hi = bound
    claim = smt.conj([smt.smt(sympy.LessThan(lo, value)), smt.smt(sympy.LessThan(value, hi))])
    dom = [smt.smt(sympy.And(sympy.LessThan(lv, x), sympy.LessThan(x, uv))) for x, lv, uv in boxes]
    dom += [smt.smt(d) for d in extra_domain]
    names = sorted({s.name for e in (value, lo, hi, *extra_domain) for s in sympy.sympify(e).free_symbols}
                   | {str(s) for b in boxes for s in b})
    text = smt.script(names, claim, domain=dom, axioms=list(axioms),
                      comment=f"ibp.{name}: the interval rule contains f(x) for x in the box")
    return Obligation("ibp", f"interval:{name}", f"ibp.{name}", text,
                      f"for x in [l, u], the interval rule of {name} contains {name}(x)",
                      {}, ("l <= x <= u",))


def _unary(name: str, rule: Callable[..., Any], **attrs: Any) -> Obligation:
    x, l, u = R("x", real=True), R("l", real=True), R("u", real=True)
    return _ob(name, [(x, l, u)], _spec(name, x, **attrs), rule((l, u), ops=OPS))


def _binary(name: str, rule: Callable[..., Any]) -> Obligation:
    x, l, u = R("x", real=True), R("l", real=True), R("u", real=True)
    y, m, v = R("y", real=True), R("m", real=True), R("v", real=True)
    return _ob(name, [(x, l, u), (y, m, v)], _spec(name, x, y), rule((l, u), (m, v), ops=OPS))


def _monotone(name: str, fn: str, positive: bool) -> Obligation:
    x, l, u = R("x", real=True), R("l", real=True), R("u", real=True)
    f = {"exp": sympy.exp, "tanh": sympy.tanh, "log": sympy.log, "sqrt": sympy.sqrt}[fn]
    tl = f"tl_{fn}"
    pre = "(and (> {a} 0) (<= {a} {b}))" if positive else "(<= {a} {b})"
    ax = [(f"mono_{fn}", f"(=> {pre.format(a=a, b=b)} (<= ({tl} {a}) ({tl} {b})))")
          for a, b in (("l", "x"), ("x", "u"))]
    # sqrt's value is printed through tl_sqrt by smt.smt, the others by their function names
    return _ob(name, [(x, l, u)], f(x), iv.interval_increasing(f, (l, u), ops=OPS),
               [sympy.StrictGreaterThan(l, 0)] if positive else [], ax)


def _affine() -> Obligation:
    w = [[R(f"w{i}{j}", real=True) for j in range(2)] for i in range(2)]
    b = [R(f"b{i}", real=True) for i in range(2)]
    xs = [R(f"x{j}", real=True) for j in range(2)]
    box = [(R(f"l{j}", real=True), R(f"u{j}", real=True)) for j in range(2)]
    out = iv.interval_matvec(w, b, box, ops=OPS)
    # one obligation for the first output row (the rows are independent and identical in form)
    value = w[0][0] * xs[0] + w[0][1] * xs[1] + b[0]
    return _ob("matvec", [(xs[j], *box[j]) for j in range(2)], value, out[0])


@source("intervals.ibp", library=True)
def interval_obligations() -> Iterator[Obligation]:
    yield _binary("add", iv.interval_add)
    yield _binary("sub", iv.interval_sub)
    yield _unary("neg", iv.interval_neg)
    yield _unary("relu", iv.interval_relu)
    slope = sympy.Rational(*(0.01).as_integer_ratio())  # the binary64 slope the spec means
    yield _unary("leaky_relu", lambda a, ops: iv.interval_leaky_relu(a, slope, ops), slope=0.01)
    yield _unary("abs", iv.interval_abs)
    yield _binary("maximum", iv.interval_maximum)
    yield _binary("minimum", iv.interval_minimum)
    yield _monotone("exp", "exp", False)
    yield _monotone("tanh", "tanh", False)
    yield _monotone("log", "log", True)
    yield _monotone("sqrt", "sqrt", True)
    yield _affine()


#: primitives with a proved interval rule (for `show --coverage`)
IBP_RULES = ("add", "sub", "neg", "relu", "leaky_relu", "abs", "maximum", "minimum", "exp", "tanh",
             "log", "sqrt", "matmul")
