"""Softmax under a -inf attention mask (``where(mask, -inf, scores)``, as ``MultiheadAttention``
traces a causal mask) in the bound table and the rounding-error column: a masked entry is exactly
0 in IEEE arithmetic and drops out of its group; -inf anywhere else is refused."""

from __future__ import annotations

import base64
import copy
import struct
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates import check, engine
from torchlean.certificates.bound_graph import Unsupported
from torchlean.certificates.core import digest
from torchlean.certificates.lower import lower
from torchlean.floats import bound_certificate, epsilons
from torchlean.runtime.execute import run_graph

sys.path.insert(0, str(Path(__file__).parent))
from test_floats_column import as32, box_of, observed  # noqa: E402

MASK = np.array([[True, False, False, True, False, True]])  # True: masked (-inf)


def _graph(tail="softmax", mask=MASK):
    """x (1, 4) -> tanh(x W) (1, 6) -> where(mask, -inf, .) -> ``tail`` -> matmul V (1, 2)."""
    rng = np.random.default_rng(5)
    c = {"W": rng.normal(0, 1.0, (4, 6)), "V": rng.normal(0, 1.0, (6, 2)), "M": mask,
         "ninf": np.array(-np.inf)}
    nodes = [("matmul", ["x", "W"], "h"), ("tanh", ["h"], "t"), ("where", ["M", "ninf", "t"], "w"),
             (tail, ["w"], "s", {"axis": -1}) if "softmax" in tail else (tail, ["w"], "s"),
             ("matmul", ["s", "V"], "y")]
    return as32(nodes, c)


def _softmax_masked(t, mask):
    """The reference: softmax over the unmasked entries only, 0 at masked ones (float64)."""
    out = np.zeros_like(t)
    keep = ~mask[0]
    e = np.exp(t[keep] - t[keep].max())
    out[keep] = e / e.sum()
    return out


def test_epsilon_covers_the_observed_error_and_masked_outputs_are_exact():
    g = _graph()
    box = box_of(np.random.default_rng(2), (1, 4), Fraction(1, 2))
    cert = bound_certificate(g, box, "binary32")
    v = check(cert)
    assert v.ok, v.reason
    eps = np.array([float(e) for e in epsilons(cert)])
    assert np.all(observed(g, box, "binary32", n=200) <= eps)
    assert eps.max() < 1e-3  # a float32-sized bound (outputs are O(1)), not a saturated one
    soft = cert["statement"]["graph"]["nodes"].index(next(n for n in cert["statement"]["graph"]["nodes"]
                                                          if n["op"] == "softmax"))
    steps = [float(Fraction(e)) for e in cert["steps"][soft]]
    assert all(steps[j] == 0 for j in np.flatnonzero(MASK[0]))  # exp(-inf) = 0: no rounding
    assert all(steps[j] > 0 for j in np.flatnonzero(~MASK[0]))


def test_bound_table_ranges_contain_the_masked_softmax():
    """IBP and CROWN output bounds of the lowered graph contain the float64 evaluation of softmax
    over the unmasked entries (an independent reference) at sampled points of the box."""
    g = _graph()
    box = box_of(np.random.default_rng(3), (1, 4), Fraction(1, 2))
    bg = lower(g.to_dict())
    W = np.asarray(g.constants["W"], dtype=np.float64)
    V = np.asarray(g.constants["V"], dtype=np.float64)
    rng = np.random.default_rng(0)
    lo = np.array([float(a) for a, _ in box])
    hi = np.array([float(b) for _, b in box])
    for bounds in (engine.ibp, engine.crown):
        L, U = bounds(bg, [a for a, _ in box], [b for _, b in box])
        for _ in range(200):
            x = lo + (hi - lo) * rng.uniform(0, 1, 4)
            y = _softmax_masked(np.tanh(x @ W), MASK) @ V
            y_rt = np.asarray(run_graph(g, {"x": x.reshape(1, 4)}, dtype=np.float64)[0]).ravel()
            assert np.allclose(y, y_rt, rtol=1e-12, atol=1e-12)  # the runtime agrees with the reference
            assert all(float(a) - 1e-12 <= yi <= float(b) + 1e-12 for a, b, yi in zip(L, U, y))


@pytest.mark.parametrize("tail", ["log_softmax", "relu"])
def test_minus_inf_anywhere_else_is_refused(tail):
    with pytest.raises(Unsupported):
        lower(_graph(tail).to_dict())


def test_a_fully_masked_group_is_refused():
    with pytest.raises(Unsupported):
        lower(_graph(mask=np.ones((1, 6), dtype=bool)).to_dict())


def test_mutations_are_rejected():
    g = _graph()
    box = box_of(np.random.default_rng(2), (1, 4), Fraction(1, 2))
    cert = bound_certificate(g, box, "binary32", ranges="ibp")
    assert check(cert).ok
    nodes = cert["statement"]["graph"]["nodes"]
    soft = [n["op"] for n in nodes].index("softmax")
    keep = int(np.flatnonzero(~MASK[0])[0])
    bad = copy.deepcopy(cert)  # an unmasked softmax output claimed exact, like a masked one
    bad["steps"][soft][keep] = "0"
    assert not check(bad).ok
    bad = copy.deepcopy(cert)  # the mask's constant replaced by a finite value: the graph changed
    ninf = bad["statement"]["graph"]["constants"]["ninf"]
    ninf["data"] = base64.b64encode(struct.pack("<f", -1e4)).decode()
    bad["digest"] = digest(bad["statement"])
    assert not check(bad).ok  # the model fingerprint no longer matches
    bad = copy.deepcopy(cert)
    bad["statement"]["epsilon"] = [str(Fraction(e) / 2) for e in bad["statement"]["epsilon"]]
    bad["digest"] = digest(bad["statement"])
    assert not check(bad).ok
