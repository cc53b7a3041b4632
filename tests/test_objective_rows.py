"""``engine.objective``: a property's rows composed sparsely, dyadically and once per graph (issue 14,
fixed31) still give the exact form of row·y.

Reference: the network y = relu(x W1 + b1) W2 + b2 evaluated by hand in exact rationals at random
dyadic points (independent of the lowering and of every engine), against the composed form's value
at the same point (``engine.point``: exact for ReLU nets); and the old dense composition (every
output entered, zero coefficients included) form for form.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from torchlean.certificates import engine
from torchlean.certificates.bound_graph import _lin, as_aff
from torchlean.certificates.lower import lower
from torchlean.spec import Graph, Node, Value

F = Fraction


def _net(rng: np.random.Generator, n_in: int = 3, hidden: int = 7, n_out: int = 6):
    W1, b1 = rng.normal(size=(n_in, hidden)), rng.normal(size=hidden)
    W2, b2 = rng.normal(size=(hidden, n_out)), rng.normal(size=n_out)
    g = Graph([Value("x", (1, n_in), "float64")], {"W1": W1, "b1": b1, "W2": W2, "b2": b2},
              [Node("matmul", ["x", "W1"], "h0"), Node("add", ["h0", "b1"], "h"),
               Node("relu", ["h"], "r"), Node("matmul", ["r", "W2"], "y0"),
               Node("add", ["y0", "b2"], "y")], ["y"]).check()
    return lower(g.to_dict()), (W1, b1, W2, b2)


def _exact_y(weights, x: list[Fraction]) -> list[Fraction]:
    """The network's outputs at x in exact rationals (float weights read exactly)."""
    W1, b1, W2, b2 = ([[F(float(v)) for v in row] for row in np.atleast_2d(w)] for w in weights)
    h = [sum((x[i] * W1[i][j] for i in range(len(x))), F(0)) + b1[0][j] for j in range(len(b1[0]))]
    r = [max(v, F(0)) for v in h]
    return [sum((r[j] * W2[j][k] for j in range(len(r))), F(0)) + b2[0][k] for k in range(len(b2[0]))]


def _value(f, L) -> Fraction:
    return f.c + sum((q * L[v] for v, q in f.t.items()), F(0))


def _rows(n: int) -> list[list]:
    rows: list[list] = [[0] * n]  # the zero row
    for j in range(n):
        for q in (1, -1, F(1, 3)):  # a lone unit (the output's own form), its negation, non-dyadic
            r = [0] * n
            r[j] = q
            rows.append(r)
    rows.append([F(1), F(-1)] + [0] * (n - 2))  # a robustness atom y0 - y1
    rows.append([0.5, 0, -2.25] + [F(0)] * (n - 3))  # floats, Fraction zeros
    rows.append([F(k + 1, 2 ** k) * (-1) ** k for k in range(n)])  # dense dyadic
    rows.append([F(k + 1, 3 + k) for k in range(n)])  # dense, non-dyadic
    return rows


@pytest.mark.parametrize("seed", [0, 1])
def test_rows_are_exactly_row_dot_y(seed):
    """Every row's form, at random points, is exactly row·y of the network evaluated by hand."""
    rng = np.random.default_rng(seed)
    bg, weights = _net(rng)
    rows = _rows(bg.n_out)
    forms = engine.objective(bg, rows)
    for _ in range(4):
        x = [F(int(v), 256) for v in rng.integers(-512, 512, size=bg.n_in)]
        y = _exact_y(weights, x)
        L, U = engine.point(bg, x)
        assert L == U  # (a ReLU net: the point's values are exact)
        for row, f in zip(rows, forms):
            assert _value(f, L) == sum((F(q) * yk for q, yk in zip(row, y)), F(0))


def test_rows_equal_the_dense_composition():
    """Form for form the old composition (all outputs, zero coefficients entered), no zero
    coefficient kept, constants exact Fractions; the same again from the per-graph memo."""
    bg, _ = _net(np.random.default_rng(3), n_out=9)
    rows = _rows(bg.n_out)
    old = [as_aff(_lin([(F(q), a) for q, a in zip(row, bg.outputs)])) for row in rows]
    for _ in range(2):  # composed, then kept
        new = engine.objective(bg, rows)
        for a, b in zip(old, new):
            assert a.t == b.t and a.c == b.c and type(b.c) is F
            assert all(b.t.values())


def test_memo_keys_on_the_exact_row():
    """Rows one coefficient apart get different forms, the same row written as ints, floats or
    Fractions the same one, and past ``OBJECTIVE_MEMO`` rows are still composed exactly."""
    bg, _ = _net(np.random.default_rng(4))
    n = bg.n_out
    a = engine.objective(bg, [[1, -1] + [0] * (n - 2)])[0]
    b = engine.objective(bg, [[1, F(-1) + F(1, 2**60)] + [0] * (n - 2)])[0]
    assert a.t != b.t
    c = engine.objective(bg, [[1.0, F(-1)] + [0.0] * (n - 2)])[0]
    assert c is a
    rows = [[F(k, 7), -1] + [0] * (n - 2) for k in range(1, engine.OBJECTIVE_MEMO + 20)]
    forms = engine.objective(bg, rows)
    assert len(bg.objectives) == engine.OBJECTIVE_MEMO
    for row, f in zip(rows[-5:], forms[-5:]):
        ref = as_aff(_lin([(F(q), o) for q, o in zip(row, bg.outputs)]))
        assert f.t == ref.t and f.c == ref.c


def test_wrong_row_length_is_refused():
    bg, _ = _net(np.random.default_rng(5))
    with pytest.raises(ValueError, match="entries"):
        engine.objective(bg, [[1] * (bg.n_out + 1)])
