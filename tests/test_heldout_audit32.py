"""Audit audit32: what the zoo's claim layer (``zoo.claims``: the float32 ε line and the cached
@verified gradient proof) and ``tl.verify.bounds(..., float32=True)`` report as checked.

The hole: ``zoo.claims.float32_epsilon`` (behind every ``--certify`` ε line, ``epsilon_line`` and
``print_claims``) traced the model with the plain tracer, so a model that reads its input in Python
(``if float(x.sum()) > 1``) got the certified ε of the one branch taken at the traced point, printed
as "|float32 - real| <= ε per output (errorbound certificate replayed by the checker)", while the
model's float32 run at another point of the box (the other branch) erred 30 times more (exact
rational reference); a dropout model in training mode got the ε of one frozen mask. The fix traces
faithfully, as ``tl.verify`` does (refused, one line "NOT certified (TraceError ...)").

What held (tests kept as regressions): float32=True bounds against the model's own float32 run
and torch's float32 run (batch norm with extreme statistics, softmax near ties, conv, inputs that
round, a rounded input that hits a pole: refused); the proof cache against hand edits (a swapped
tree, a removed tree, a forged solver, a wrong rule under a warm cache), each in a temporary
TORCHLEAN_PROOF_CACHE.
"""

from __future__ import annotations

import itertools
import json
from fractions import Fraction as Q
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.floats import bound_certificate, epsilons
from torchlean.runtime import rules
from torchlean.runtime.trace import TraceError
from torchlean.zoo.claims import cache_dir, epsilon_line, float32_epsilon, gradient_proof

F = nn.functional


@pytest.fixture(autouse=True)
def _temp_cache(tmp_path, monkeypatch):
    """Never the real home cache: every test's proofs go to its own temporary folder."""
    monkeypatch.setenv("TORCHLEAN_PROOF_CACHE", str(tmp_path / "proofs"))


class Branchy(nn.Module):
    """y = x where sum(x) <= 1 (exact in float32), else y = (3x + 1) * 7 (two roundings each)."""

    def forward(self, x):
        if float(x.sum()) > 1.0:
            return (x * 3.0 + 1.0) * 7.0
        return x * 1.0


X0 = np.array([[0.1, 0.2]], np.float32)  # traced here: the exact branch
XP = np.array([[0.7, 0.9]], np.float32)  # in the box [0, 1]^2, the other branch
BOX = [(0, 1), (0, 1)]


def _branch_b_error(x: np.ndarray) -> Q:
    """|float32 run of Branchy - its exact real value| at x (the other branch), exactly."""
    y = Branchy()(tl.tensor(x)).numpy().astype(np.float64).ravel()
    return max(abs(Q(float(a)) - (Q(float(v)) * 3 + 1) * 7) for a, v in zip(y, x.ravel()))


def test_traced_branch_epsilon_is_false_for_the_model():
    """The reference fact behind the hole: the traced branch's certified ε (what the old code
    printed) is below the model's own float32 error at another point of the box."""
    g = tl.trace(Branchy(), tl.tensor(X0))  # the plain trace: one path
    eps = max(epsilons(bound_certificate(g, [(Q(0), Q(1))] * 2, "binary32")))
    assert _branch_b_error(XP) > 10 * eps


def test_float32_epsilon_refuses_input_branching():
    with pytest.raises(TraceError, match="input-dependent"):
        float32_epsilon(Branchy().eval(), X0, BOX, samples=20)
    line = epsilon_line(Branchy().eval(), X0, BOX, "Branchy on [0, 1]^2", samples=20, budget=60)
    assert "NOT certified" in line and "<=" not in line, line


def test_float32_epsilon_refuses_a_frozen_dropout_mask():
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))  # training mode
    with pytest.raises(ValueError, match="training mode"):
        float32_epsilon(net, np.zeros((1, 3)), [(0, 1)] * 3, samples=20)


def _relu_net(seed: int) -> nn.Sequential:
    r = np.random.default_rng(seed)
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2))
    for lin in (net[0], net[2]):
        lin.weight.data = (r.standard_normal(lin.weight.data.shape) * 4).astype(np.float32)
        lin.bias.data = (r.standard_normal(lin.bias.data.shape) * 4).astype(np.float32)
    return net.eval()


def _exact_relu_net(net: nn.Sequential, x: np.ndarray) -> list[Q]:
    w0, b0, w1, b1 = ([[Q(float(v)) for v in row] for row in np.atleast_2d(a)]
                      for a in (net[0].weight.data, net[0].bias.data, net[2].weight.data, net[2].bias.data))
    h = [max(Q(0), b0[0][i] + sum(w0[i][j] * Q(float(x[j])) for j in range(3))) for i in range(6)]
    return [b1[0][k] + sum(w1[k][i] * h[i] for i in range(6)) for k in range(2)]


def test_float32_epsilon_still_certifies_a_plain_model_soundly():
    """The faithful path certifies an ordinary network, and its ε bounds the float32 run against
    the exact rational network at every corner of the box and at random points."""
    net = _relu_net(3)
    box = [(-8, 8)] * 3
    eps, observed = float32_epsilon(net, np.zeros((1, 3)), box, samples=50)
    assert 0 < observed <= eps
    rng = np.random.default_rng(0)
    pts = [np.array(c, np.float32) for c in itertools.product((-8, 8), repeat=3)]
    pts += [rng.uniform(-8, 8, 3).astype(np.float32) for _ in range(200)]
    worst = max(max(abs(Q(float(a)) - e) for a, e in zip(net(tl.tensor(p[None])).numpy().ravel(),
                                                         _exact_relu_net(net, p))) for p in pts)
    assert 0 < worst <= Q(eps)


def test_zoo_models_pass_the_faithful_trace():
    """Every zoo model the ε line is printed for (untrained weights) still traces faithfully."""
    from torchlean.verify.api import _graph, _other_point
    from torchlean.zoo import cnn, fno, generative, ppo, sequence

    for net, x, lo, hi in [(cnn.model("resnet"), np.full((1, 1, 8, 8), 0.5), 0.0, 1.0),
                           (sequence.Forecaster("gru", 8), np.full((1, sequence.WINDOW, 2), 0.1), -2.0, 2.0),
                           (generative.VAE(), np.full((1, 64), 0.3), 0.0, 1.0),
                           (fno.FNO1d(), np.full((1, fno.GRID), 0.3), -1.0, 1.0),
                           (ppo.policy_net(), np.zeros((1, 4)), -1.0, 1.0)]:
        net.eval()
        n = x.size
        g = _graph(net, x, _other_point(x, (Q(lo),) * n, (Q(hi),) * n))
        assert g.nodes


# -- tl.verify.bounds(..., float32=True): the model's float32 run stays inside ----------------------

class Fn(nn.Module):
    def __init__(self, fn, *mods):
        super().__init__()
        self.fn, self.mods = fn, nn.ModuleList(list(mods))

    def forward(self, x):
        return self.fn(x, *self.mods)


def _points(x: np.ndarray, eps: float, n: int = 150) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [x, x - eps, x + eps] + [x + rng.choice([-eps, eps], x.shape) for _ in range(n // 3)] + \
        [x + rng.uniform(-eps, eps, x.shape) for _ in range(n)]


def _bn() -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(4)
    bn.running_mean.data = np.array([1e3, -2, 0.5, 3e4], np.float32)
    bn.running_var.data = np.array([1e-5, 4, 1e6, 0.3], np.float32)
    bn.weight.data = np.array([3, -1, 1e3, 0.01], np.float32)
    bn.bias.data = np.array([0.1, 1e4, -7, 2], np.float32)
    return bn


CASES = {
    "batch norm, extreme statistics": (lambda: Fn(lambda x, b: b(x), _bn()),
                                       np.array([[1e3 + 0.001, 1.0, 0.7, 3e4 + 1]]), 0.0),
    "softmax near a tie": (lambda: Fn(lambda x: F.softmax(x, dim=-1)),
                           np.array([[10.0, 10.0, -3.0, 9.9999]]), 0.0),
    "layer norm, large mean": (lambda: Fn(lambda x, m: m(x), nn.LayerNorm(4)),
                               np.array([[1e4, 1e4 + 1e-3, 1e4 - 1e-3, 1e4]]), 0.0),
    "inputs that round": (lambda: Fn(lambda x: x * 1e6 - 1e5), np.array([[0.1, 0.3, 1 / 3]]), 0.0),
    "sum with cancellation": (lambda: Fn(lambda x: x.sum(dim=-1)),
                              np.array([[1e8, 1.0, -1e8, 1.0, 3.0]]), 0.0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_float32_bounds_contain_the_float32_run(name):
    build, x, eps = CASES[name]
    m = build().eval()
    b32 = tl.verify.bounds(m, x, eps=eps, float32=True)
    real = tl.verify.bounds(m, x, eps=eps)
    outside = 0.0
    for p in _points(x, eps):
        y = m(tl.tensor(p.astype(np.float32))).numpy().astype(np.float64)
        assert b32.contains(y), (name, p, y, b32.lower, b32.upper)
        outside = max(outside, float(np.maximum(real.lower - y, y - real.upper).max()))
    if eps == 0.0:  # the widening is needed: the float32 run leaves the real bounds (at a point)
        assert outside > 0, name


def test_float32_bounds_contain_torch_float32_batch_norm():
    torch = pytest.importorskip("torch")
    bn = _bn().eval()
    tb = torch.nn.BatchNorm1d(4).eval()
    with torch.no_grad():
        for dst, src in ((tb.running_mean, bn.running_mean), (tb.running_var, bn.running_var),
                         (tb.weight, bn.weight), (tb.bias, bn.bias)):
            dst.copy_(torch.from_numpy(np.asarray(src.data, np.float32)))
    x = np.array([[1e3 + 0.001, 1.0, 0.7, 3e4 + 1]])
    b32 = tl.verify.bounds(Fn(lambda v, b: b(v), bn).eval(), x, eps=1e-4, float32=True)
    for p in _points(x, 1e-4):
        y = tb(torch.from_numpy(p.astype(np.float32))).detach().numpy().astype(np.float64)
        assert b32.contains(y), (p, y)


@pytest.mark.parametrize("fn", [lambda t: 1.0 / (t - 1.0), lambda t: (t - 1.0).log(),
                                lambda t: (t - 1.0).sqrt()])
def test_float32_bounds_refuse_a_pole_hit_by_input_rounding(fn):
    """Every real x' of the box is > 1, but x' rounded to binary32 is 1: the float32 run is inf,
    -inf or 0 where the real function is huge; no finite float32 bound may be given."""
    x = np.array([[1 + 1.5e-12]])
    m = Fn(fn).eval()
    y = m(tl.tensor(x.astype(np.float32))).numpy().astype(np.float64)
    assert not tl.verify.bounds(m, x, eps=5e-13).contains(y)  # the run leaves the real bounds
    with pytest.raises(Exception, match="contains 0|outside the domain"):
        tl.verify.bounds(m, x, eps=5e-13, float32=True)


# -- the proof cache: hand edits never reported as checked ---------------------------------------

def _tiny():
    return nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))


def _tanh_artifact(d: Path, kind: str) -> Path:
    (p,) = d.glob(f"{kind}.tanh.*.json")
    return p


def test_cache_dir_is_the_env_folder(tmp_path):
    assert cache_dir() == tmp_path / "proofs"


def test_cache_hand_edits(tmp_path):
    d = cache_dir()
    s = gradient_proof("tiny", _tiny, (1, 2), budget=300)
    assert s.claim == "checked" and s.checked == s.obligations > 0 and Path(s.directory) == d

    # a tree swapped in from another obligation: re-discharged, the file now replays again
    a, f = _tanh_artifact(d, "autograd"), _tanh_artifact(d, "forward")
    art = json.loads(a.read_text())
    good_tree = art["certificate"]["tree"]
    art["certificate"]["tree"] = json.loads(f.read_text())["certificate"]["tree"]
    a.write_text(json.dumps(art))
    s = gradient_proof("tiny", _tiny, (1, 2), budget=300)
    assert s.claim == "checked" and json.loads(a.read_text())["certificate"]["tree"] == good_tree

    # the tree removed: at best solver-trusted, never counted as checked
    art = json.loads(a.read_text())
    art["certificate"]["tree"] = None
    a.write_text(json.dumps(art))
    s = gradient_proof("tiny", _tiny, (1, 2), budget=300)
    assert s.claim == "trusted" and s.trusted == 1 and s.checked == s.obligations - 1
    assert "holds if the solvers are right" in s.summary()

    # ... and naming a solver that is not one: never counted as it stands; since custom31 such an
    # artifact is not up to date, so the cache proves the claim again (a tree the checker replays)
    art["solver"] = {"name": "mathsat"}
    a.write_text(json.dumps(art))
    s = gradient_proof("tiny", _tiny, (1, 2), budget=300)
    again = json.loads(a.read_text())
    assert s.claim == "checked" and again["solver"]["name"] != "mathsat"
    assert again["certificate"]["tree"] is not None


def test_cache_warm_for_the_right_rule_does_not_prove_a_wrong_one(monkeypatch):
    assert gradient_proof("tiny", _tiny, (1, 2), budget=300).claim == "checked"
    good = rules.RULES["tanh"]
    # d tanh = 1 - tanh^2; this VJP says 1 - tanh (the same artifact name, another statement)
    monkeypatch.setitem(rules.RULES, "tanh", rules.Rule("tanh", good.forward,
                                                          lambda xp, g, out, x: (g * (1 - out),)))
    s = gradient_proof("tiny", _tiny, (1, 2), budget=300)
    assert s.claim != "checked" and not s.ok and any("autograd.tanh" in n for n in s.not_proved)
