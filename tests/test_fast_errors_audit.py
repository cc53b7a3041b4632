"""An independent audit of the fast rounding-error column (``certificates.fast_errors``): its
bounds against bit-exact float runs (``floats.emulate``, every format and rounding mode the column
accepts; ml_dtypes/numpy for the runtime's own sigmoid formula), at the edges of each format
(overflow, subnormals, constants that are not values of the format, dead and exactly-zero ReLUs,
sigmoid's overflow tail, long dot products), against the exact column on the same statements, and
the checker's rejection of mutated fast certificates."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np

from torchlean.certificates.core import Rejected
from torchlean.certificates.errorbound import propagate
from torchlean.floats.errorbound import statement
from torchlean.spec.graph import Graph, Node, Value

Q = Fraction


def _sigmoid_graph() -> Graph:
    one = np.ones((1, 1), np.float32)
    return Graph([Value("x", (1, 1), "float32")], {"one": one},
                 [Node("matmul", ["x", "one"], "m"), Node("sigmoid", ["m"], "y")], ["y"]).check()


def test_sigmoid_overflow_in_a_format_without_infinities_is_refused():
    """float8_e4m3fn has no infinity: the runtime's 1/(1 + exp(-x)) gets exp(7) -> NaN (round to
    nearest overflows to NaN there), so no finite epsilon may be certified where exp(-x~) can
    overflow; the tail rule (the kernel may return 0) only holds where exp overflows to +inf."""
    f8 = ml_dtypes.float8_e4m3fn
    x = np.array([-8.0, -7.0], f8)
    assert np.isnan(np.asarray(1 / (1 + np.exp(-x)), np.float64)).all()  # (the float run: NaN)
    st = statement(_sigmoid_graph(), [(Q(-8), Q(-7))], "float8_e4m3fn", column="fast", kernel_ulps=Q(1, 2))
    try:
        eps = propagate(st)[-1]
    except Rejected:
        return
    raise AssertionError(f"a finite epsilon {[float(e) for e in eps]} for a NaN float run")


def test_exact_column_sigmoid_and_silu_overflow_without_infinities_refused():
    """The same gap in the exact column's ``_sigmoid_like`` (sigmoid and silu share it)."""
    for op in ("sigmoid", "silu"):
        g = Graph([Value("x", (1,), "float32")], {}, [Node(op, ["x"], "y")], ["y"]).check()
        st = statement(g, [(Q(-8), Q(-7))], "float8_e4m3fn", column="exact", ranges="ibp",
                       kernel_ulps=Q(1, 2))
        try:
            eps = propagate(st)[-1]
        except Rejected:
            continue
        raise AssertionError(f"{op}: a finite epsilon {[float(e) for e in eps]} for a NaN float run")


def _dot_graph(W: np.ndarray) -> Graph:
    return Graph([Value("x", (1, W.shape[0]), "float32")], {"W": W},
                 [Node("matmul", ["x", "W"], "y")], ["y"]).check()


def test_dot_with_cast_weights_covers_the_float_weights_rule():
    """The float run multiplies by fl(W), not W: its dot product errs by the sum rule on |fl(W)|
    (<= |W| + dW), plus (fl(W) - W) x~. The column adds 2 sum dW max|x~| to the rule on |W|, which
    covers the rule's growth only while its factor (gamma_n, or the sign-split bound's
    (u + n u (1 + u))/(1 - n u)) is <= 1; in float8_e4m3fn (u = 1/16) that is n <= 7. Here n = 15:
    the bound with W = 1.09375 (fl(W) = 1.125) must be at least the bound with the float weights
    themselves (the same float run; its real value differs by the cast term only)."""
    n = 15
    box = [(Q(1, 2), Q(1))] * n
    W = np.full((n, 1), 1.09375, np.float32)  # (between 1 and 1.125 in e4m3: rounds to 1.125)
    Wf = np.full((n, 1), 1.125, np.float32)
    for col, rg in (("fast", "fast"), ("exact", "ibp")):  # (the exact column had the same rule)
        e = [propagate(statement(_dot_graph(w), box, "float8_e4m3fn", column=col, ranges=rg,
                                 kernel_ulps=Q(1, 2)))[-1][0] for w in (W, Wf)]
        assert e[0] >= e[1], (col, float(e[0]), float(e[1]))
