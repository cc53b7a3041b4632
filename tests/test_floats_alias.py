"""An input whose error form is too long to merge becomes ONE shared source (``errorctx.Ctx.alias``):
before, a reader over ``MAX_WORK`` form terms charged every input's bound into its own new source
(signs lost); now each such input's error is one source d_v = e_v of bound |e_v|, made once and
shared by every reader, so later signed sums still cancel. The limits are lowered here so a small
residual CNN (conv, batch norm, ReLU, residual add, linear) crosses them. ε must cover the float32
error observed against binary64 (whose own distance to the real value is certified), must be at
most the former collapse's, and mutated certificates must be rejected, with exact (CROWN) and fast
ranges (bench/README.md, "h-zooeps")."""

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


def _bn(c: int, rng: np.random.Generator) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)  # eval-mode statistics that are not the identity
    bn.running_mean = tl.tensor(rng.normal(scale=0.3, size=c).astype(np.float32))
    bn.running_var = tl.tensor(rng.uniform(0.2, 2.0, size=c).astype(np.float32))
    bn.weight = nn.Parameter(tl.tensor(rng.uniform(0.5, 1.5, size=c).astype(np.float32)))
    return bn


@pytest.fixture(scope="module")
def graph():
    tl.manual_seed(0)
    rng = np.random.default_rng(0)
    body = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), _bn(3, rng), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1),
                         _bn(3, rng))
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), _bn(3, rng), nn.ReLU(), nn.Residual(body), nn.ReLU(),
                        nn.Flatten(), nn.Linear(48, 3))
    net.eval()
    return tl.trace(net, tl.tensor(np.zeros((1, 1, 4, 4), np.float32)))


BOX = [(Fraction(k, 16) - Fraction(1, 10), Fraction(k, 16) + Fraction(1, 10)) for k in range(16)]


def _cert(graph, ranges, monkeypatch, alias=True):
    monkeypatch.setattr(errorctx, "MAX_WORK", 40)
    monkeypatch.setattr(errorctx, "NODE_WORK", 0)
    if not alias:  # the former rule: an over-budget reader charges each input's bound itself
        monkeypatch.setattr(errorctx.Ctx, "alias", lambda self, v: v)
    # (the exact column's aliasing: with fast ranges this graph would now take the fast column,
    # which keeps every term and has no alias, since h-fastlin's batch_norm row)
    return bound_certificate(graph, BOX, ranges=ranges, column="exact")


@pytest.mark.parametrize("ranges", ["crown", "fast"])
def test_alias_covers_the_observed_error_and_is_tighter(graph, ranges, monkeypatch):
    new = _cert(graph, ranges, monkeypatch)
    assert check(new).ok
    old = _cert(graph, ranges, monkeypatch, alias=False)
    e_old, e_new = (np.array([float(e) for e in epsilons(c)]) for c in (old, new))
    assert np.all(e_new <= e_old) and np.any(e_new < e_old), (e_new, e_old)  # (the limit was crossed)
    obs = observed_error(graph, BOX, 300)
    assert np.all(obs.max_error + obs.reference_error <= e_new), (obs.max_error, e_new)


@pytest.mark.parametrize("ranges", ["crown", "fast"])
def test_alias_mutations_are_rejected(graph, ranges, monkeypatch):
    cert = _cert(graph, ranges, monkeypatch)
    c = copy.deepcopy(cert)
    c["statement"]["epsilon"][0] = str(Fraction(c["statement"]["epsilon"][0]) * Fraction(99, 100))
    c["digest"] = digest(c["statement"])
    v = check(c)
    assert not v.ok and "epsilon" in v.reason
    # the largest step (after the aliased sums), halved: the replay recomputes it
    c = copy.deepcopy(cert)
    k = max(range(len(c["steps"])), key=lambda i: max(map(Fraction, c["steps"][i]), default=0))
    c["steps"][k][0] = str(Fraction(c["steps"][k][0]) / 2)
    v = check(c)
    assert not v.ok and "claimed error" in v.reason
    # a rule input tampered: a wider box than the one the steps were made for (digest updated)
    c = copy.deepcopy(cert)
    lo, hi = map(Fraction, c["statement"]["input_box"][5])
    c["statement"]["input_box"][5] = [str(lo - 1), str(hi + 1)]
    c["digest"] = digest(c["statement"])
    assert not check(c).ok
