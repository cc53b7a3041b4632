"""The float-sound loop's search policies (``verify.float32``): its real searches without the
up-front PGD, the split on a timed-out search, and the weighted choice of the bisected input.
Policies only: every verdict below is still replayed by ``check_vnn_float``, and a mutated
certificate of the split path is rejected."""

from __future__ import annotations

import copy
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

import torchlean.verify.float32 as f32
from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.errorbound import model_id
from torchlean.certificates.float_vnn import check_vnn_float
from torchlean.certificates.lower import lower
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.verify import bab, table
from torchlean.verify.branching import table_relaxation_scores
from torchlean.verify.tree import Result

sys.path.insert(0, str(Path(__file__).parent))
from floats_models import mlp  # noqa: E402
from test_verify_float32 import linear_instance  # noqa: E402

BOX2 = [(Fraction(-4), Fraction(4))] * 2


def _relu_net():
    g = mlp([2, 16, 16, 1], "relu", seed=3)
    C = {k: v.astype(np.float64) for k, v in g.constants.items()}

    def f(x):  # the real network in float64 (mlp: matmul + bias, relu between)
        h = np.maximum(np.maximum(x @ C["W0"] + C["b0"], 0) @ C["W1"] + C["b1"], 0)
        return (h @ C["W2"] + C["b2"])[:, 0]

    return g, f


def _spec(threshold: float) -> Spec:
    """unsafe: y >= threshold on BOX2."""
    atom = Atom((Fraction(-1),), -Fraction(threshold), False)
    return Spec(2, 1, (Region(tuple(a for a, _ in BOX2), tuple(b for _, b in BOX2), ((atom,),)),))


def test_input_weights_are_the_first_layers_column_norms():
    g, _ = _relu_net()
    w = f32._input_weights(table.target(g), 2)
    ref = np.abs(g.constants["W0"].astype(np.float64)).sum(axis=1)  # W0: (inputs, units)
    assert np.allclose(w, ref, rtol=1e-6)
    assert f32._input_weights(object(), 3) == [1.0, 1.0, 1.0]  # no chain: plain widths


def test_split_dim_is_the_widest_after_weighting():
    box = [(Fraction(0), Fraction(1)), (Fraction(0), Fraction(3)), (Fraction(0), Fraction(2))]
    assert f32.split_dim(box, [1.0, 1.0, 1.0]) == 1
    assert f32.split_dim(box, [10.0, 1.0, 1.0]) == 0  # 10 > 3, 2
    assert f32.split_dim(box, [1.0, 0.5, 1.0]) == 2  # 2 > 1.5, 1


def test_quick_search_agrees_with_the_chain_search():
    """unsat with a certificate ``check_vnn`` accepts, sat with a point whose float64 run meets
    the unsafe set, on either side of the maximum over a fine grid."""
    g, f = _relu_net()
    t = table.target(g)
    grid = np.stack(np.meshgrid(*[np.linspace(-4, 4, 201)] * 2), -1).reshape(-1, 2)
    top = float(f(grid).max())
    high = _spec(top + 1.0 + abs(top))  # above anything the box reaches (IBP-provable margin)
    res = f32._quick_search(t, high, 60, False, "crown")
    assert res.verdict == "unsat" == bab.solve(t, high, timeout=60).verdict
    assert check_vnn(res.cert, t.bg, high).ok
    low = _spec(top - 0.5 * abs(top) - 0.1)  # met on a good part of the grid
    res = f32._quick_search(t, low, 60, False, "crown")
    assert res.verdict == "sat" == bab.solve(t, low, timeout=60).verdict
    x = np.array([[float(v) for v in res.x]])
    threshold = -float(low.regions[0].disjuncts[0][0].b)  # (the atom: -y <= -threshold)
    assert np.all(np.abs(x) <= 4) and f(x)[0] >= threshold


def test_no_relu_chain_searched_without_the_attack():
    """An affine chain (no ReLU) through the branch and bound alone: the branching scores are 0
    (was a crash), and the verdicts are the exact ones (sat where grown past the maximum)."""
    g, net, spec, eps = linear_instance(Fraction(2))
    t = table.target(g)
    assert bab.verify(t, spec, timeout=30, attack_first=False).verdict == "unsat"
    from torchlean.certificates.float_vnn import grow

    assert bab.verify(t, grow(spec, [4 * eps]), timeout=30, attack_first=False).verdict == "sat"
    W = [np.eye(3, 2)]
    s, coef = table_relaxation_scores(W, [], np.ones((4, 3)), np.ones((4, 2)), signed=True)
    assert s.shape == (4, 2) and not s.any()
    assert np.allclose(coef, np.ones((4, 3)) @ W[0])


def test_timed_out_search_splits_and_the_certificate_replays(monkeypatch):
    """A search of the root box that runs out of time (forced here) bisects it instead of ending
    the proof: the partitioned certificate replays, and a mutated one is rejected. (The loop's
    path for searches other than input splitting: input-split chains take ``float_bab``, turned
    off here by ``INPUT_SPLIT_MAX``.)"""
    monkeypatch.setattr(f32, "INPUT_SPLIT_MAX", 0)
    g, net, spec, _ = linear_instance(Fraction(2))
    root = f32.hull(spec)
    real = f32._quick_search
    forced = []

    def quick(target, s, timeout, progress, method):
        if [(r.lo, r.hi) for r in s.regions] == [(tuple(a for a, _ in root), tuple(b for _, b in root))]:
            forced.append(timeout)
            return Result("timeout")
        return real(target, s, timeout, progress, method)

    monkeypatch.setattr(f32, "_quick_search", quick)
    res = f32.verify_float32(g, table.target(g), spec, timeout=60, splits=8)
    assert forced and res.verdict == "unsat", res.stats
    cert = res.cert
    assert "split" in cert["parts"]
    model = model_id(g.to_dict())
    assert check_vnn_float(cert, net, spec, model=model).ok
    assert check_vnn_float(cert, net, spec, model=model, mode="exact").ok
    lo = cert["parts"]["lo"]
    for mode in (None, "exact"):  # the lower half's leaf put in the upper half's place too
        bad = copy.deepcopy(cert)
        bad["parts"]["hi"] = copy.deepcopy(lo)
        v = check_vnn_float(bad, net, spec, model=model, mode=mode)
        assert not v.ok and "real part rejected" in v.reason
    bad = copy.deepcopy(cert)  # the split moved outside the box
    bad["parts"]["split"][1] = "5"
    assert not check_vnn_float(bad, lower(g.to_dict()), spec, model=model).ok
