"""The float error column on spectral (FNO) layers: linear intermediate variables (``lin`` nodes of
``lower(wide=True)``) instead of forms composed over every grid point's channels (issues 16/18).

References: exact rational evaluation of the composed bound graph (the lowering without ``lin``
nodes) for the lowering, the float64 run plus its own binary64 certificate for the observed float32
error (``test_floats_column.observed``)."""

from __future__ import annotations

import copy
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.certificates import check, engine, lower, lower_linear
from torchlean.certificates.bound_graph import Unsupported
from torchlean.certificates.core import digest
from torchlean.floats import bound_certificate, epsilons
from torchlean.zoo.fno import SpectralConv1d

sys.path.insert(0, str(Path(__file__).parent))
from test_floats_column import _traced, box_of, observed  # noqa: E402

GRID, WIDTH, MODES = 8, 3, 3


class Layer(nn.Module):
    """One Fourier layer as ``zoo.fno.FNO1d`` has it (spectral + pointwise, GELU), then a head."""

    def __init__(self):
        super().__init__()
        self.spec, self.point = SpectralConv1d(WIDTH, MODES, GRID), nn.Linear(WIDTH, WIDTH)
        self.act, self.head = nn.GELU(), nn.Linear(WIDTH, 1)

    def forward(self, v):
        return self.head(self.act(self.spec(v) + self.point(v)))


@pytest.fixture
def always_wide(monkeypatch):
    """Every linear row by constants lowers its data operand as ``lin`` variables (the thresholds
    are for the zoo's sizes; these graphs are small)."""
    monkeypatch.setattr(lower_linear, "WIDE_WORK", 0)
    monkeypatch.setattr(lower_linear, "WIDE_GAIN", 0)


@pytest.fixture(scope="module")
def graph():
    tl.manual_seed(0)
    layer = Layer()
    for p in layer.spec.parameters():  # weights of the trained model's size (init is 1/width^2)
        p.data = np.random.default_rng(1).uniform(-0.5, 0.5, p.shape).astype(np.float32)
    return _traced(layer, (1, GRID, WIDTH))


def test_lin_nodes_keep_the_exact_function(graph, always_wide):
    ir = graph.to_dict()
    wide, plain = lower.lower(ir, wide=True), lower.lower(ir)
    assert sum(n.kind == "lin" for n in wide.nodes) >= 3 and not any(n.kind == "lin" for n in plain.nodes)
    def gelu_width(bg):  # terms of the GELU arguments: composed, every grid point's channels
        return max(len(a.t) for n in bg.nodes if n.kind == "fn" for a in n.args)

    assert gelu_width(plain) == GRID * WIDTH and gelu_width(wide) < gelu_width(plain)
    rng = np.random.default_rng(4)
    for _ in range(3):  # exact rational values at points (no fn on the way: relu-free, gelu enclosed)
        x = [Fraction(int(v), 64) for v in rng.integers(-64, 64, wide.n_in)]
        lw, uw = engine.point(wide, x)
        lp, up = engine.point(plain, x)
        ow = [engine.form_bounds(a, lw, uw) for a in wide.outputs]
        op = [engine.form_bounds(a, lp, up) for a in plain.outputs]
        for (a, b), (c, d) in zip(ow, op):
            assert a <= d and c <= b  # the enclosures of one real value meet
            assert b - a < Fraction(1, 10**12) and d - c < Fraction(1, 10**12)


def test_crown_through_lin_nodes_contains_the_values(graph, always_wide):
    bg = lower.lower(graph.to_dict(), wide=True)
    box = box_of(np.random.default_rng(2), (1, GRID, WIDTH), Fraction(1, 8))
    lo, hi = engine.crown(bg, [a for a, _ in box], [b for _, b in box])
    ilo, ihi = engine.ibp(bg, [a for a, _ in box], [b for _, b in box])
    assert all(a >= c and b <= d for a, b, c, d in zip(lo, hi, ilo, ihi))
    rng = np.random.default_rng(5)
    for _ in range(5):
        x = [a + (b - a) * Fraction(int(rng.integers(0, 9)), 8) for a, b in box]
        L, U = engine.point(bg, x)
        for f, a, b in zip(bg.outputs, lo, hi):
            y0, y1 = engine.form_bounds(f, L, U)
            assert a <= y1 and y0 <= b


def test_fast_engine_refuses_lin_nodes(graph, always_wide):
    from torchlean.certificates.fast_engine import FastGraph

    with pytest.raises(Unsupported):
        FastGraph(lower.lower(graph.to_dict(), wide=True))


@pytest.mark.parametrize("ranges", ["ibp", "crown", "fast"])
def test_epsilon_covers_the_observed_error(graph, always_wide, ranges):
    box = box_of(np.random.default_rng(3), (1, GRID, WIDTH), Fraction(1, 4))
    cert = bound_certificate(graph, box, "binary32", ranges=ranges)
    v = check(cert)
    assert v.ok, v.reason
    eps = np.array([float(e) for e in epsilons(cert)])
    obs = observed(graph, box, "binary32", n=150)
    assert np.all(obs <= eps), (obs, eps)
    assert np.all(eps < 1e-4), eps  # and says something: float32 on values of size ~1


@pytest.fixture(scope="module")
def cert(graph):
    mp = pytest.MonkeyPatch()
    mp.setattr(lower_linear, "WIDE_WORK", 0)
    mp.setattr(lower_linear, "WIDE_GAIN", 0)
    box = box_of(np.random.default_rng(3), (1, GRID, WIDTH), Fraction(1, 4))
    yield mp, bound_certificate(graph, box, "binary32", ranges="ibp")
    mp.undo()


def _resign(c):
    c["digest"] = digest(c["statement"])
    return c


def test_shrunk_epsilon_is_rejected(cert):
    assert check(cert[1]).ok
    c = copy.deepcopy(cert[1])
    c["statement"]["epsilon"][0] = str(Fraction(c["statement"]["epsilon"][0]) * Fraction(9, 10))
    assert not check(c).ok  # the digest
    v = check(_resign(c))
    assert not v.ok and "epsilon" in v.reason


def test_wrong_node_step_is_rejected(cert):
    ir = cert[1]["statement"]["graph"]
    k = next(i for i, n in enumerate(ir["nodes"]) if n["op"] == "sum")  # a channel mix of the modes
    c = copy.deepcopy(cert[1])
    c["steps"][k] = [str(Fraction(s) / 2) for s in c["steps"][k]]
    v = check(c)
    assert not v.ok and "claimed error" in v.reason
    c = copy.deepcopy(cert[1])  # the steps of another node (same length, smaller bounds)
    j = next(i for i, n in enumerate(ir["nodes"]) if len(c["steps"][i]) == len(c["steps"][k]) and i != k
             and max(map(Fraction, c["steps"][i])) < max(map(Fraction, c["steps"][k])))
    c["steps"][k] = c["steps"][j]
    assert not check(c).ok


def test_changed_dft_weight_is_rejected(cert):
    import base64

    c = copy.deepcopy(cert[1])
    ir = c["statement"]["graph"]
    name = next(k for k in ir["constants"] if k.endswith("inv_cos"))
    w = np.frombuffer(base64.b64decode(ir["constants"][name]["data"]), np.float32).copy()
    w *= 4  # an inverse DFT four times as large: its errors are larger
    ir["constants"][name]["data"] = base64.b64encode(w.tobytes()).decode()
    assert not check(_resign(c)).ok  # the model fingerprint
    from torchlean.certificates.errorbound import model_id

    c["statement"]["model"] = model_id(ir)
    assert not check(_resign(c)).ok  # the steps no longer cover the bounds


def test_the_zoo_fno_lowers_with_short_forms():
    """The zoo's FNO (64 grid points, width 24, 12 modes): composed, every pre-GELU element of the
    second and third layers is a form over all 1,536 (grid point, channel) variables (lowering
    past 10 minutes); with ``lin`` variables no form has more than 64 terms."""
    from torchlean.zoo.fno import FNO1d, burgers

    tl.manual_seed(0)
    net = FNO1d()
    net.eval()
    u0, _ = burgers(1, 0)
    bg = lower.lower(tl.trace(net, tl.tensor(u0)).to_dict(), wide=True)
    assert sum(n.kind == "lin" for n in bg.nodes) >= 12
    widths = [len(a.t) for n in bg.nodes if n.kind in ("lin", "fn") for a in n.args]
    assert max(widths) <= 64 and max(len(a.t) for a in bg.outputs) <= 64
