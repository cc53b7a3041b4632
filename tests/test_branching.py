"""Input-split branching heuristics (verify/branching.py).

The relaxation heuristic must see a dimension whose influence cancels in the output but keeps
hidden ReLUs unstable; the gradient heuristic, by construction, cannot. The trace the heuristic
reads must never change a certified bound.
"""

from fractions import Fraction

import numpy as np
import pytest

from torchlean.certificates import fast
from torchlean.certificates.fast_crown import crown_bounds
from torchlean.certificates.network import Affine, Net, Relu
from torchlean.verify.branching import relaxation_scores

F = Fraction


def _cancelling_net() -> Net:
    # y = relu(x0 + x1) + relu(x1 - x0): flat in x0 for the adaptive lower slopes, yet x0's width
    # is what keeps both ReLUs unstable
    hidden = Affine([[F(1), F(1)], [F(-1), F(1)]], [F(0), F(0)])
    return Net(2, 1, (hidden, Relu(), Affine([[F(1), F(1)]], [F(0)])))


def test_relaxation_scores_pick_the_cancelling_dimension():
    layers = fast.prepare(_cancelling_net().steps)
    lo, hi = np.array([[-1.0, -0.01]]), np.array([[1.0, 0.01]])
    trace: dict = {}
    lb, lam = crown_bounds(layers, lo, hi, want_lam=True, trace=trace)
    gradient = np.abs(lam[0, 0]) * (hi - lo)[0]
    assert gradient.argmax() == 1  # the gradient heuristic halves x1, which cannot help much
    score = relaxation_scores(trace, np.array([0]), np.array([0]), hi - lo)
    assert score[0].argmax() == 0 and score[0, 0] > 10 * score[0, 1]


def test_relaxation_scores_vanish_without_unstable_relus():
    layers = fast.prepare(_cancelling_net().steps)
    lo, hi = np.array([[0.5, 2.0]]), np.array([[0.6, 2.1]])  # both ReLUs active
    trace: dict = {}
    crown_bounds(layers, lo, hi, trace=trace)
    assert not relaxation_scores(trace, np.array([0]), np.array([0]), hi - lo).any()


@pytest.mark.parametrize("seed", range(3))
def test_trace_never_changes_the_bounds(seed):
    rng = np.random.default_rng(seed)
    sizes = (4, 12, 12, 12, 3)
    steps = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        W = rng.normal(0, 1 / np.sqrt(a), (b, a)).astype(np.float32)
        c = rng.normal(0, 0.3, b).astype(np.float32)
        steps += [Affine([[F(float(v)) for v in r] for r in W], [F(float(v)) for v in c]), Relu()]
    layers = fast.prepare(tuple(steps[:-1]))
    c = rng.uniform(-1, 1, (20, 4))
    r = rng.uniform(0, 0.5, (20, 4))
    plain = crown_bounds(layers, c - r, c + r)
    trace: dict = {}
    traced = crown_bounds(layers, c - r, c + r, trace=trace)
    assert np.array_equal(plain, traced)
    assert set(trace) == {"forms", "shift", "lam"} and len(trace["lam"]) == 3
    score = relaxation_scores(trace, np.arange(20), np.zeros(20, dtype=int), 2 * r)
    assert score.shape == (20, 4) and (score >= 0).all() and np.isfinite(score).all()
