"""The error column's "fast" ranges (exact IBP met per element with the fast engine's CROWN
argument bounds, ``errorbound.fast_ranges``): sound (every sampled value inside its range, every
epsilon above the observed error), re-derived by the checker (tampering with the statement's
ranges or claims is rejected, the float64 assumption is reported), at least as tight as IBP; and
layer_norm with eps 0 refused in one line where the (float) variance can reach 0."""

from __future__ import annotations

import copy
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.certificates import check, engine
from torchlean.certificates.core import Rejected, digest
from torchlean.certificates.enclosures import DomainError
from torchlean.certificates.errorbound import FAST_TRUST, fast_ranges
from torchlean.certificates.graph_vnn import LIBM
from torchlean.certificates.lower import lower
from torchlean.floats import bound_certificate, epsilons, observed_error

sys.path.insert(0, str(Path(__file__).parent))
from floats_models import mlp  # noqa: E402

Q = Fraction


def _trace(model, shape, seed=0):
    tl.manual_seed(seed)
    model.eval()
    return tl.trace(model, tl.tensor(np.random.default_rng(seed).normal(size=shape).astype(np.float32)))


class Cell(nn.Module):
    """Two unrolled LSTM-like steps: gates of products of data values (the recurrent pattern)."""

    def __init__(self):
        super().__init__()
        self.i, self.f, self.g = nn.Linear(6, 4), nn.Linear(6, 4), nn.Linear(6, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = x[:, :4] * 0
        c = h
        for t in range(2):
            z = tl.cat([x[:, 2 * t:2 * t + 2], h], -1)
            c = self.f(z).sigmoid() * c + self.i(z).sigmoid() * self.g(z).tanh()
            h = c.tanh()
        return self.out(h)


def _ranges_contain_samples(g, box, n=60):
    """Every argument row's range (IBP met with fast CROWN) contains its value at sampled points."""
    bg = lower(g.to_dict())
    st = engine.forward(bg, [a for a, _ in box], [b for _, b in box], "ibp", tight=fast_ranges(bg, box))
    rng = np.random.default_rng(0)
    for _ in range(n):
        x = [Q(float(rng.uniform(float(a), float(b)))) for a, b in box]
        L, U = engine.point(bg, x)
        for k, node in enumerate(bg.nodes):
            if node.kind == "fn":
                pairs = list(zip(node.args, st.arg[k]))
            elif node.kind == "mul":
                pairs = [p for (a, w), (ba, bw) in zip(node.args, st.arg[k]) for p in ((a, ba), (w, bw))]
            else:
                continue
            for f, (lo, hi) in pairs:
                vl, vh = engine.form_bounds(f, L, U)
                assert lo <= vl and vh <= hi, (k, node.kind, float(lo), float(vl), float(vh), float(hi))


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_fast_ranges_contain_sampled_values(act):
    _ranges_contain_samples(mlp([4, 16, 16, 2], act), [(Q(-1), Q(1))] * 4)


def test_fast_ranges_contain_sampled_values_of_a_recurrent_cell():
    _ranges_contain_samples(_trace(Cell(), (1, 6)), [(Q(-1), Q(1))] * 6, n=30)


def test_fast_ranges_are_tighter_than_ibp_and_sound():
    g = mlp([4, 64, 64, 2], "relu", seed=1)
    box = [(-1, 1)] * 4
    fast = bound_certificate(g, box, ranges="fast")
    ibp = bound_certificate(g, box, ranges="ibp")
    assert fast["statement"]["ranges"] == "fast"
    e_fast, e_ibp = np.array([float(e) for e in epsilons(fast)]), np.array([float(e) for e in epsilons(ibp)])
    assert np.all(e_fast < e_ibp), (e_fast, e_ibp)  # (CROWN ranges of the hidden layer are tighter)
    obs = observed_error(g, box, 400)
    assert np.all(obs.max_error + obs.reference_error <= e_fast)
    v = check(fast)
    assert v.ok and v.trusted == {FAST_TRUST: 1}, v  # the float64 model the ranges rest on
    assert check(ibp).trusted == {}


def test_recurrent_cell_epsilon_covers_the_observed_error():
    g = _trace(Cell(), (1, 6))
    box = [(-1, 1)] * 6
    cert = bound_certificate(g, box, ranges="fast")
    assert check(cert).ok
    eps = np.array([float(e) for e in epsilons(cert)])
    obs = observed_error(g, box, 400)
    assert np.all(obs.max_error + obs.reference_error <= eps), (obs.max_error, eps)


# -- mutations of a fast-range certificate --------------------------------------------------------

def test_fast_tanh_replay_names_the_libm_assumption(cert):
    assert check(cert).trusted == {FAST_TRUST: 1, LIBM: 1}  # (the fast tanh row's libm accuracy)


@pytest.fixture(scope="module")
def cert():
    return bound_certificate(mlp([4, 16, 16, 2], "tanh"), [(-1, 1)] * 4, ranges="fast")


def _resign(c):
    c["digest"] = digest(c["statement"])
    return c


def test_shrunk_epsilon_or_step_is_rejected(cert):
    c = copy.deepcopy(cert)
    c["statement"]["epsilon"][1] = str(Q(c["statement"]["epsilon"][1]) * Q(99, 100))
    v = check(_resign(c))
    assert not v.ok and "epsilon" in v.reason
    c = copy.deepcopy(cert)
    c["steps"][3][0] = str(Q(c["steps"][3][0]) / 2)
    v = check(c)
    assert not v.ok and "claimed error" in v.reason


def test_wrong_node_or_format_is_rejected(cert):
    c = copy.deepcopy(cert)
    c["steps"][2], c["steps"][3] = c["steps"][3], c["steps"][2]  # claims of another node
    assert not check(c).ok
    c = copy.deepcopy(cert)
    c["statement"]["format"]["mbits"] = 7  # bfloat16's precision: larger errors than claimed
    assert not check(_resign(c)).ok


def test_tampered_ranges_are_rejected_or_recomputed(cert):
    c = copy.deepcopy(cert)
    c["statement"]["ranges"] = "given"
    v = check(_resign(c))
    assert not v.ok and "unknown ranges" in v.reason
    c = copy.deepcopy(cert)
    c["statement"]["ranges"] = "ibp"  # looser ranges than the claims were computed with
    assert not check(_resign(c)).ok
    # ranges written into the statement are never read: the checker recomputes its own
    c = copy.deepcopy(cert)
    c["statement"]["range_table"] = [["0", "0"]] * 64
    assert not check(c).ok  # (the digest covers the whole statement)
    assert check(_resign(c)).ok


# -- layer_norm with eps 0 -------------------------------------------------------------------------

def _ln0():
    return _trace(nn.Sequential(nn.LayerNorm(4, eps=0.0)), (1, 4))


def test_layer_norm_eps0_where_the_real_variance_reaches_0_is_refused_in_one_line():
    with pytest.raises(DomainError, match="not defined everywhere") as e:
        bound_certificate(_ln0(), [(-1, 1)] * 4)
    assert "\n" not in str(e.value)


def test_layer_norm_eps0_where_the_float_variance_reaches_0_is_refused_in_one_line():
    tiny = Q(1, 10 ** 30)  # real variance > 0, but the float32 squares underflow to 0
    box = [(tiny, 2 * tiny), (-2 * tiny, -tiny), (0, 0), (0, 0)]
    for ranges in ("fast", "crown"):
        with pytest.raises(Rejected, match="layer_norm with eps 0") as e:
            bound_certificate(_ln0(), box, ranges=ranges)
        assert "\n" not in str(e.value)
    # a certificate for it is rejected by the checker, never an exception
    good = bound_certificate(_ln0(), [(2, 3), (-3, -2), (0, 0), (0, 0)])
    c = copy.deepcopy(good)
    c["statement"]["input_box"] = [[str(a), str(b)] for a, b in box]
    v = check(_resign(c))
    assert not v.ok and "layer_norm with eps 0" in v.reason


def test_layer_norm_eps0_away_from_0_is_bounded_soundly():
    g = _ln0()
    box = [(2, 3), (-3, -2), (0, 0), (0, 0)]
    cert = bound_certificate(g, box, ranges="fast")
    assert check(cert).ok
    eps = np.array([float(e) for e in epsilons(cert)])
    obs = observed_error(g, box, 300)
    assert np.all(obs.max_error + obs.reference_error <= eps) and np.all(eps < 1e-4), eps


def test_layer_norm_eps0_cli_is_one_line(tmp_path, capsys):
    from torchlean.floats.__main__ import main

    path = tmp_path / "ln0.json"
    path.write_text(_ln0().to_json())
    assert main(["bound", str(path), "--box=-1:1", "--samples", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not defined everywhere" in err and "Traceback" not in err


def test_default_ranges_exact_on_small_graphs_fast_on_large():
    """Up to ``CROWN_LIMIT`` nonlinear elements the default is the exact engine's CROWN (a replay
    that assumes nothing); above it the fast ranges, whose replay names the float64 model."""
    from torchlean.floats import default_ranges
    from torchlean.floats.errorbound import CROWN_LIMIT

    small = mlp([4, 16, 16, 2], "tanh")
    cert = bound_certificate(small, [(-1, 1)] * 4)
    assert default_ranges(small) == cert["statement"]["ranges"] == "crown"
    v = check(cert)
    assert v.ok and v.fully_checked, v.reason
    wide = CROWN_LIMIT // 2 + 1
    big = mlp([2, wide, wide, 1], "relu")
    assert default_ranges(big) == "fast"
    v = check(bound_certificate(big, [(-1, 1)] * 2))
    assert v.ok and FAST_TRUST in v.trusted and not v.fully_checked, v.reason
