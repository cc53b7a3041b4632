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
from torchlean.certificates.core import digest
from torchlean.floats import bound_certificate, epsilons
from torchlean.verify import engines
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
    lo, hi = engines.exact_crown(bg, [a for a, _ in box], [b for _, b in box])
    ilo, ihi = engines.exact_ibp(bg, [a for a, _ in box], [b for _, b in box])
    assert all(a >= c and b <= d for a, b, c, d in zip(lo, hi, ilo, ihi))
    rng = np.random.default_rng(5)
    for _ in range(5):
        x = [a + (b - a) * Fraction(int(rng.integers(0, 9)), 8) for a, b in box]
        L, U = engine.point(bg, x)
        for f, a, b in zip(bg.outputs, lo, hi):
            y0, y1 = engine.form_bounds(f, L, U)
            assert a <= y1 and y0 <= b


def test_fast_engine_through_lin_nodes_agrees_with_the_exact_engine(graph, always_wide):
    """The fast engine passes back-substitution through y = f exactly (h-trans): on the wide
    lowering its CROWN bounds contain the exact engine's (outward rounding only), differ from them
    by rounding alone, equal its own bounds on the composed lowering, and contain sampled values."""
    from torchlean.certificates import fast_engine

    ir = graph.to_dict()
    wide, plain = lower.lower(ir, wide=True), lower.lower(ir)
    assert any(n.kind == "lin" for n in wide.nodes)
    box = box_of(np.random.default_rng(2), (1, GRID, WIDTH), Fraction(1, 8))
    lo, hi = fast_engine.boxes([[a for a, _ in box]], [[b for _, b in box]])
    fl, fh = engines.fast_crown(wide, lo, hi)
    pl, ph = engines.fast_crown(plain, lo, hi)
    el, eh = engines.exact_crown(wide, [a for a, _ in box], [b for _, b in box])
    el, eh = np.array([float(a) for a in el]), np.array([float(b) for b in eh])
    scale = np.maximum(np.abs(el), np.abs(eh)) + 1
    assert np.all(fl[0] <= el) and np.all(fh[0] >= eh)  # fast contains exact
    assert np.all(el - fl[0] <= 1e-9 * scale) and np.all(fh[0] - eh <= 1e-9 * scale)
    assert np.allclose(fl, pl, rtol=0, atol=1e-9) and np.allclose(fh, ph, rtol=0, atol=1e-9)
    ib = engines.fast_ibp(wide, lo, hi)
    assert np.all(fh - fl < ib[1] - ib[0])  # (and CROWN is used: tighter than IBP)
    rng = np.random.default_rng(6)
    for _ in range(5):
        x = [a + (b - a) * Fraction(int(rng.integers(0, 9)), 8) for a, b in box]
        L, U = engine.point(wide, x)
        for f, a, b in zip(wide.outputs, fl[0], fh[0]):
            y0, y1 = engine.form_bounds(f, L, U)
            assert a <= y1 and y0 <= b


def test_fast_ranges_of_lin_variables_contain_sampled_values(graph, always_wide):
    """Every lin variable's range in the checker's state (exact IBP met with the fast engine's
    CROWN rows, ``errorbound.fast_ranges``) contains its value at sampled points, and the GELU
    arguments after them are tighter than IBP alone somewhere (CROWN passes through y = f)."""
    from torchlean.certificates.errorbound import fast_ranges

    bg = lower.lower(graph.to_dict(), wide=True)
    box = box_of(np.random.default_rng(3), (1, GRID, WIDTH), Fraction(1, 4))
    lo, hi = [a for a, _ in box], [b for _, b in box]
    st = engine.forward(bg, lo, hi, "ibp", tight=fast_ranges(bg, box))
    ib = engine.forward(bg, lo, hi, "ibp")
    lins = [(n.offset + i) for n in bg.nodes if n.kind == "lin" for i in range(n.size)]
    gelu = [k for k, n in enumerate(bg.nodes) if n.kind == "fn"]  # (CROWN through the lin nodes)
    assert any(b[1] - b[0] < c[1] - c[0] for k in gelu for b, c in zip(st.arg[k], ib.arg[k]))
    rng = np.random.default_rng(7)
    for _ in range(10):
        x = [a + (b - a) * Fraction(int(rng.integers(0, 17)), 16) for a, b in box]
        L, U = engine.point(bg, x)
        assert all(st.L[v] <= L[v] and U[v] <= st.U[v] for v in lins)


def test_narrowed_fast_range_is_rejected(graph, always_wide, monkeypatch):
    """A certificate made from ranges narrower than the fast engine's (one lin node's rows cut to
    their midpoints) claims less than the checker recomputes: rejected."""
    from torchlean.certificates import errorbound

    box = box_of(np.random.default_rng(3), (1, GRID, WIDTH), Fraction(1, 4))
    # (the exact column: it reads ``errorbound.fast_ranges``; the fast one recomputes its own)
    good = bound_certificate(graph, box, "binary32", ranges="fast", column="exact")
    assert check(good).ok
    honest = errorbound.fast_ranges

    def narrowed(bg, b):
        t = honest(bg, b)
        k = max(k for k, n in enumerate(bg.nodes) if n.kind == "fn")  # (the GELU's arguments)
        mid = [(a + c) / 2 for a, c in zip(*t[k])]
        return {**t, k: (mid, mid)}

    monkeypatch.setattr(errorbound, "fast_ranges", narrowed)
    bad = bound_certificate(graph, box, "binary32", ranges="fast", column="exact")
    monkeypatch.setattr(errorbound, "fast_ranges", honest)
    assert bad["steps"] != good["steps"]
    v = check(bad)
    assert not v.ok and "claimed error" in v.reason


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
