"""The real ranges the fast rounding-error column walks with (``fast_errors.propagate``'s IBP of
the forms met with the fast engine's CROWN rows) contain every IR value's real value at sampled
points of the box (201-bit emulation), on random graphs over every fast row."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates import fast_errors
from torchlean.certificates.errorbound import propagate
from torchlean.floats.emulate import emulate
from torchlean.floats.errorbound import statement
from torchlean.spec.graph import Graph

sys.path.insert(0, str(Path(__file__).parent))
from test_fast_errors_audit import REF, points, rbox, rgraph  # noqa: E402


@pytest.mark.parametrize("seed", range(4))
def test_fast_ranges_contain_every_real_value(seed, monkeypatch):
    rows = 1 + seed % 2
    g, box = rgraph(seed, rows), rbox(seed, 3 * rows)
    seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    node = fast_errors._node
    outs = iter([n.output for n in g.nodes])

    def spy(w, op, ins, shapes, lo, hi, *rest):
        seen[next(outs)] = (lo.copy(), hi.copy())
        return node(w, op, ins, shapes, lo, hi, *rest)

    monkeypatch.setattr(fast_errors, "_node", spy)
    fast_errors._CACHE.clear()
    propagate(statement(g, box, "binary32", column="fast"))
    assert len(seen) == len(g.nodes)
    every = Graph(g.inputs, g.constants, g.nodes, [n.output for n in g.nodes]).check()
    for p in points(box, "binary32", 40, seed, False):
        vals = emulate(every, {"x": p.reshape(g.inputs[0].shape)}, REF)
        for name, v in zip(every.outputs, vals):
            lo, hi = seen[name]
            v = v.ravel()
            slack = 2.0**-50 * np.abs(v)  # (the reference rounded to binary64)
            assert np.all(lo <= v + slack) and np.all(v - slack <= hi), (name, lo, v, hi)


def test_two_graph_inputs_take_their_own_intervals():
    """Two inputs of different sizes and scales: each element's interval is its own (the box is
    read in the IR's input order); a swapped reading would miss the observed error."""
    from fractions import Fraction as Q

    from torchlean.spec.graph import Node, Value

    W = np.array([[0.3, -0.2], [0.7, 0.1], [-0.4, 0.9]], np.float32)
    g = Graph([Value("x", (1, 3), "float32"), Value("z", (1, 2), "float32")],
              {"W": W, "k": np.array([0.37], np.float32)},
              [Node("matmul", ["x", "W"], "m"), Node("mul", ["z", "k"], "p"), Node("sub", ["m", "p"], "y")],
              ["y"]).check()
    box = [(Q(0), Q(1, 64))] * 3 + [(Q(1000), Q(2000))] * 2
    st = statement(g, box, "binary16", input_exact=False, column="fast")
    eps = np.array([float(e) for e in propagate(st)[-1]])
    rng = np.random.default_rng(0)
    worst = np.zeros(2)
    for _ in range(40):
        x, z = rng.uniform(0, 1 / 64, (1, 3)), rng.uniform(1000, 2000, (1, 2))
        a = emulate(g, {"x": x, "z": z}, "binary16")[0].ravel()
        r = emulate(g, {"x": x, "z": z}, REF)[0].ravel()
        worst = np.maximum(worst, np.abs(a - r))
    assert np.all(worst <= eps) and np.all(worst > 0.01), (worst, eps)
