"""Elementwise primitives: arithmetic, activations, transcendentals."""

from __future__ import annotations

from typing import Any

import numpy as np

from .constants import GELU_A, GELU_C
from .primitives import primitive
from .scalar import emap
from .shapes import Shape, broadcast_shapes


def _same(x: Shape, **_: Any) -> Shape:
    return x


def _binary(name: str):
    def rule(a: Shape, b: Shape, **_: Any) -> Shape:
        return broadcast_shapes(a, b, op=name)
    return rule


@primitive("add", "linear", 2, _binary("add"))
def add(m, a, b):
    """a + b (numpy broadcasting)"""
    return a + b


@primitive("sub", "linear", 2, _binary("sub"))
def sub(m, a, b):
    """a - b"""
    return a - b


@primitive("mul", "elementwise", 2, _binary("mul"))
def mul(m, a, b):
    """a * b"""
    return a * b


@primitive("div", "elementwise", 2, _binary("div"))
def div(m, a, b):
    """a / b, for b != 0"""
    return a / b


@primitive("neg", "linear", 1, _same)
def neg(m, x):
    """-x"""
    return -x


@primitive("pow", "elementwise", 1, _same, attrs={"exponent": 2})
def pow_(m, x, exponent):
    """x ** c for a constant c (integer c: all x; otherwise x > 0)"""
    c = int(exponent) if float(exponent).is_integer() else m.const(exponent)
    return emap(lambda v: v**c, x)


@primitive("maximum", "piecewise", 2, _binary("maximum"))
def maximum(m, a, b):
    """max(a, b); the runtime sends the gradient to a where a >= b (torch.maximum splits a tie's
    in halves; outside every claim, whose domain is a != b)"""
    return emap(lambda p, q: m.select(m.ge(p, q), p, q), a, b)


@primitive("minimum", "piecewise", 2, _binary("minimum"))
def minimum(m, a, b):
    """min(a, b); the runtime sends the gradient to a where a <= b (torch.minimum splits a tie's
    in halves; outside every claim, whose domain is a != b)"""
    return emap(lambda p, q: m.select(m.ge(q, p), p, q), a, b)


@primitive("relu", "piecewise", 1, _same)
def relu(m, x):
    """max(x, 0); derivative 1 for x > 0, 0 for x < 0, subgradient 0 at x = 0"""
    return emap(lambda v: m.select(m.gt(v, 0), v, 0 * v), x)


@primitive("leaky_relu", "piecewise", 1, _same, attrs={"slope": 0.01})
def leaky_relu(m, x, slope):
    """x for x > 0, slope * x otherwise; subgradient slope at 0"""
    s = m.const(slope)
    return emap(lambda v: m.select(m.gt(v, 0), v, s * v), x)


@primitive("abs", "piecewise", 1, _same)
def abs_(m, x):
    """|x|; subgradient 0 at x = 0"""
    return emap(lambda v: m.select(m.gt(v, 0), v, -v), x)


@primitive("exp", "elementwise", 1, _same)
def exp(m, x):
    """e ** x"""
    return emap(m.exp, x)


@primitive("log", "elementwise", 1, _same)
def log(m, x):
    """natural logarithm, for x > 0"""
    return emap(m.log, x)


@primitive("sqrt", "elementwise", 1, _same)
def sqrt(m, x):
    """square root, for x >= 0 (derivative for x > 0)"""
    return emap(m.sqrt, x)


@primitive("tanh", "elementwise", 1, _same)
def tanh(m, x):
    """hyperbolic tangent"""
    return emap(m.tanh, x)


@primitive("erf", "elementwise", 1, _same)
def erf(m, x):
    """the error function 2/sqrt(pi) * integral of e^(-t^2) from 0 to x"""
    return emap(m.erf, x)


@primitive("sigmoid", "elementwise", 1, _same)
def sigmoid(m, x):
    """1 / (1 + e ** -x)"""
    return emap(lambda v: 1 / (1 + m.exp(-v)), x)


@primitive("softplus", "elementwise", 1, _same)
def softplus(m, x):
    """log(1 + e ** x) for every x; torch's Softplus returns x itself where x > 20 (its threshold),
    less than this by under e^-20 there, with gradient 1 where this has sigmoid(x) (audit57)"""
    return emap(lambda v: m.log(1 + m.exp(v)), x)


@primitive("gelu", "elementwise", 1, _same)
def gelu(m, x):
    """x/2 * (1 + tanh(c (x + a x^3))), c = sqrt(2/pi) in binary64, a = 0.044715 (tanh form)"""
    c, a = m.const(GELU_C), m.const(GELU_A)
    return emap(lambda v: v / 2 * (1 + m.tanh(c * (v + a * v**3))), x)


@primitive("silu", "elementwise", 1, _same)
def silu(m, x):
    """x * sigmoid(x)"""
    return emap(lambda v: v / (1 + m.exp(-v)), x)


def _where_rule(c: Shape, a: Shape, b: Shape, **_: Any) -> Shape:
    return broadcast_shapes(c, a, b, op="where")


@primitive("where", "piecewise", 3, _where_rule, integer_inputs=(0,))
def where(m, c, a, b):
    """a where the mask c is nonzero, else b (the mask carries no derivative)"""
    return np.asarray(np.where(c.astype(bool), a, b), dtype=object)
