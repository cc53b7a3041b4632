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

    def spy(w, op, ins, shapes, lo, hi, cw):
        seen[next(outs)] = (lo.copy(), hi.copy())
        return node(w, op, ins, shapes, lo, hi, cw)

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
