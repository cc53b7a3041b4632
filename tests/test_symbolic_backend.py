"""The symbolic backend runs the runtime's own rules and yields their exact formulas."""

import numpy as np
import sympy

from torchlean.runtime.rules import RULES
from torchlean.runtime.symbolic import SYMBOLIC, symbols


def test_tanh_rule_is_the_textbook_derivative():
    x, g = symbols("x", (1,)), symbols("g", (1,))
    out = RULES["tanh"].forward(SYMBOLIC, x)
    (gx,) = RULES["tanh"].vjp(SYMBOLIC, g, out, x)
    expected = g[0] * sympy.diff(sympy.tanh(x[0]), x[0])
    assert sympy.simplify(gx[0] - expected) == 0


def test_relu_rule_is_piecewise():
    x, g = symbols("x", (1,)), symbols("g", (1,))
    out = RULES["relu"].forward(SYMBOLIC, x)
    (gx,) = RULES["relu"].vjp(SYMBOLIC, g, out, x)
    assert isinstance(gx[0], sympy.Piecewise)
    assert gx[0].subs(x[0], 2) == g[0] and gx[0].subs(x[0], -2) == 0


def test_matmul_rule_with_broadcast_batch():
    a, b, g = symbols("a", (2, 1, 2)), symbols("b", (2, 3)), symbols("g", (2, 1, 3))
    out = RULES["matmul"].forward(SYMBOLIC, a, b)
    ga, gb = RULES["matmul"].vjp(SYMBOLIC, g, out, a, b)
    assert gb.shape == (2, 3)
    loss = sum(g[idx] * out[idx] for idx in np.ndindex(out.shape))
    for idx in np.ndindex(b.shape):
        assert sympy.expand(gb[idx] - sympy.diff(loss, b[idx])) == 0
