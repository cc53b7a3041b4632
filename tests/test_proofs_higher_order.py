"""Higher-order autograd proved like the first-order rules, checked: a function that calls
``grad(..., create_graph=True)`` traces to an ordinary graph of primitives (the VJP rules' own
operations, recorded), so ``@verified`` proves *its* backward pass (a second or third derivative of
the inner network) compositionally: per-node obligations plus the chain-rule certificate, each
replayed by the trusted checker. A broken VJP rule is refuted; the zoo's claims helper counts
honestly (a proof past its budget is never reported checked)."""

import copy
import dataclasses

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.certificates import check
from torchlean.nn import functional as F
from torchlean.proofs.artifacts import check_one
from torchlean.proofs.compose import trace
from torchlean.proofs.discharge import discharge
from torchlean.proofs.obligation import SOURCES
from torchlean.proofs.verified import verified
from torchlean.runtime.rules import RULES
from torchlean.zoo import pinn
from torchlean.zoo.claims import float32_epsilon, gradient_proof


def _small_residual() -> nn.Module:
    """The PINN residual x -> u''(x) - f(x) of a 1-3-1 tanh MLP (two recorded grad calls)."""
    tl.manual_seed(0)
    return pinn.Residual(nn.Sequential(nn.Linear(1, 3), nn.Tanh(), nn.Linear(3, 1)))


class GradNorm(nn.Module):
    """x -> |d/dx sum(net(x)^2)|^2 for a conv - relu - max_pool - linear net: its graph holds the
    recorded conv2d and max_pool2d VJPs (slices, selection matmuls, masks)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                 nn.Linear(2, 2))

    def forward(self, x):
        (gx,) = tl.autograd.grad(F.sum(self.net(x) ** 2), x, create_graph=True)
        return F.sum(gx * gx)


@pytest.fixture(autouse=True)
def _own_sources():
    """Each test's @verified registrations leave the global registry as they found it (other
    tests count the obligations a name matches)."""
    saved = dict(SOURCES)
    yield
    SOURCES.clear()
    SOURCES.update(saved)


def _prove(name, build, shape, tmp_path):
    verified(build, name=name, input_shape=shape)
    obs = list(SOURCES[f"verified.model.{name}"]())
    reports = discharge(obs, tmp_path, solver="z3", timeout=30, progress=False)
    return obs, reports


def test_gradient_function_traces_to_the_recorded_vjp_operations():
    """The residual's graph is more than the network's forward: the tanh VJP's operations
    (1 - t*t, products with the cotangent) are nodes, and the runtime's backward over it composes
    by the chain rule (certificate accepted; a dropped use rejected)."""
    graph, tr, _ = trace(_small_residual, (1, 1))
    prims = [n["prim"] for n in graph["nodes"]]
    assert prims.count("tanh") == 1 and prims.count("mul") >= 3 and "sub" in prims, prims
    cert = {"kind": "composition", "graph": graph, "trace": tr}
    assert check(cert).ok
    tr["calls"][-1][1].pop()
    assert not check(cert).ok


@pytest.mark.solver
@pytest.mark.parametrize("name, build, shape", [
    ("hoad_pinn_residual", _small_residual, (1, 1)),
    ("hoad_cnn_gradnorm", GradNorm, (1, 1, 4, 4)),
])
def test_gradient_function_is_fully_checked(tmp_path, name, build, shape):
    """Every obligation checked by the checker (none solver-trusted), the claim's chain rule too."""
    obs, reports = _prove(name, build, shape, tmp_path)
    assert all(r.status == "proved" for r in reports), [(r.name, r.status, r.message) for r in reports]
    outcomes = [check_one(tmp_path, ob) for ob in obs]
    assert all(o.status == "checked" for o in outcomes), [(o.name, o.status, o.detail) for o in outcomes]
    assert obs[0].kind == "composition" and "chain rule over" in outcomes[0].detail
    if name == "hoad_cnn_gradnorm":  # the recorded scatter: products with constant selection matrices
        assert any(n["prim"] == "matmul" and None in n["inputs"] for n in obs[0].data["graph"]["nodes"])


@pytest.mark.solver
def test_mutated_vjp_rule_is_refuted_in_the_gradient_function(tmp_path, monkeypatch):
    """tanh's VJP with the derivative 1 - t instead of 1 - t^2: the residual (which *runs* that rule
    to compute u'') rests on the broken rule's node obligation, which the solver refutes; the
    claim is not checked."""
    monkeypatch.setitem(RULES, "tanh", dataclasses.replace(RULES["tanh"],
                                                           vjp=lambda xp, g, out, x: (g * (1 - out),)))
    obs, reports = _prove("hoad_pinn_broken", _small_residual, (1, 1), tmp_path)
    bad = [r for r in reports if r.status != "proved"]
    assert [r.name.split(".")[:2] for r in bad] == [["autograd", "tanh"]], [(r.name, r.status) for r in bad]
    assert bad[0].status == "refuted" and "counterexample" in bad[0].message
    o = check_one(tmp_path, obs[0])
    assert o.status == "rejected" and "autograd.tanh" in o.detail, o.detail


@pytest.mark.solver
def test_claims_gradient_proof_counts_and_budget(tmp_path):
    """The zoo helper: a small model's claim checked and counted; the same claim with no time to
    finish is reported as timed out, never as checked."""
    st = gradient_proof("hoad_residual_claim", _small_residual, (1, 1), tmp_path, solver="z3", budget=120)
    assert st.ok and st.claim == "checked", st.summary()
    assert st.obligations == st.checked > 0 and st.trusted == 0 and not st.not_proved
    assert "checked by the trusted checker" in st.summary()
    late = gradient_proof("hoad_residual_late", _small_residual, (1, 1), tmp_path / "late", budget=0.05)
    assert not late.ok and late.claim == "timed out" and late.checked == 0
    assert "NOT checked, timed out" in late.summary()


def test_claims_float32_epsilon_covers_float32_runs():
    """The shared float32 ε helper: the bound holds at sampled points (float32 run vs float64)."""
    tl.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    box = [(-1, 1), (0, 2)]
    eps, observed = float32_epsilon(net, np.zeros((1, 2)), box, samples=200)
    assert 0 < observed <= eps < 1e-4
    pts = np.random.default_rng(0).uniform([-1, 0], [1, 2], size=(300, 2))
    f32 = net(tl.tensor(pts.astype(np.float32))).numpy().astype(np.float64)
    net64 = copy.deepcopy(net).to(dtype="float64")
    f64 = net64(tl.tensor(pts.astype(np.float32).astype(np.float64), dtype="float64")).numpy()
    assert np.abs(f32 - f64).max() <= eps
    with pytest.raises(ValueError, match="box has 1 intervals"):
        float32_epsilon(net, np.zeros((1, 2)), [(0, 1)])


@pytest.mark.solver
def test_max_pool_windows_are_refuted_one_conjunct_at_a_time(monkeypatch):
    """The certificate search separates a claim whose conjuncts have branches of their own (one
    per pooling window) before splitting: a two-window plane's obligations get certificates the
    checker replays (before, the search split every window's branches first and timed out); the
    domain states distinctness only within a window. (A plane without padding is now proved
    window by window, ``proofs/windows.py``; its fixed-shape obligation is what padded planes get.)"""
    from torchlean.proofs import windows
    from torchlean.proofs.compose import node_obligations
    from torchlean.proofs.discharge import _search

    monkeypatch.setattr(windows, "applies", lambda *a: False)

    obs = node_obligations("max_pool2d", "max_pool2d.nhoad", {
        "shapes": [[1, 1, 2, 4]], "attrs": {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)},
        "ints": {}, "column_major": []})
    for ob in obs:
        # 2 windows x 6 pairs, not 8 * 7 / 2 = 28; the autograd claim's only (domains31: kernel and
        # spec agree at ties, so the forward claim excludes none)
        assert ob.smtlib.count(":named dom_") == (12 if ob.kind == "autograd" else 0)
        tree, why, _ = _search(ob, 90.0)
        assert tree is not None, (ob.name, why)
        assert check({"kind": "claim", "statement": ob.smtlib, "tree": tree}).ok
        assert "conjuncts" in str(tree)
