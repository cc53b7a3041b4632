"""Long error forms keep their largest terms (``errorctx.KEEP_TERMS``): a recurrent network's
error forms outgrow ``MAX_TERMS`` after a few steps; before, a long form was collapsed whole into
one new source (its signs lost), now its tail is. The limits are lowered here so a small LSTM
crosses them; epsilon must still cover the float32 error observed against binary64 (whose own
distance to the real value is certified), and mutated certificates must be rejected, with exact
(CROWN) and fast ranges (bench/README.md, "The zoo's epsilons", h-rnn)."""

from __future__ import annotations

import copy
from fractions import Fraction

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.certificates import check, errorctx
from torchlean.certificates.core import digest
from torchlean.floats import bound_certificate, epsilons, observed_error


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.head = nn.LSTM(2, 4, batch_first=True), nn.Linear(4, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


@pytest.fixture(scope="module")
def graph():
    tl.manual_seed(0)
    net = Net()
    net.eval()
    return tl.trace(net, tl.tensor(np.random.default_rng(0).normal(size=(1, 5, 2)).astype(np.float32)))


BOX = [(Fraction(v) - Fraction(1, 20), Fraction(v) + Fraction(1, 20)) for v in (0.5, -0.25) * 5]


def _cert(graph, ranges, keep, monkeypatch):
    monkeypatch.setattr(errorctx, "MAX_TERMS", 24)
    monkeypatch.setattr(errorctx, "KEEP_TERMS", keep)
    # (the exact column's term limit: the RNN has a fast-column row since h-fasttf, so named)
    return bound_certificate(graph, BOX, ranges=ranges, column="exact")


@pytest.mark.parametrize("ranges", ["crown", "fast"])
def test_kept_terms_cover_the_observed_error(graph, ranges, monkeypatch):
    old = _cert(graph, ranges, 0, monkeypatch)  # KEEP_TERMS 0: the former whole collapse
    new = _cert(graph, ranges, 12, monkeypatch)
    e_old, e_new = (np.array([float(e) for e in epsilons(c)]) for c in (old, new))
    assert np.any(e_new != e_old), (e_new, e_old)  # (the limit was crossed)
    assert check(new).ok
    obs = observed_error(graph, BOX, 300)
    assert np.all(obs.max_error + obs.reference_error <= e_new), (obs.max_error, e_new)


@pytest.mark.parametrize("ranges", ["crown", "fast"])
def test_kept_terms_mutations_are_rejected(graph, ranges, monkeypatch):
    cert = _cert(graph, ranges, 12, monkeypatch)
    c = copy.deepcopy(cert)
    c["statement"]["epsilon"][0] = str(Fraction(c["statement"]["epsilon"][0]) * Fraction(99, 100))
    c["digest"] = digest(c["statement"])
    v = check(c)
    assert not v.ok and "epsilon" in v.reason
    c = copy.deepcopy(cert)
    k = max(range(len(c["steps"])), key=lambda i: max(map(Fraction, c["steps"][i]), default=0))
    c["steps"][k][0] = str(Fraction(c["steps"][k][0]) / 2)
    v = check(c)
    assert not v.ok and "claimed error" in v.reason
