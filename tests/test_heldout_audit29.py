"""Audit 29: a model's backward pass against its compositional claim, and replaced rules.

Holes found (each test below fails on the code before the fix):

- a project that replaces an entrywise rule (tanh's VJP reading ``(1 - out**2).T``, right at one
  entry only) kept every claim checked: model nodes of entrywise primitives were keyed and proved
  at shape (1,) and torchlean's shipped ``autograd.tanh`` is at (1,) too, so the artifacts written
  for the old rule stayed valid while the runtime's gradient differed from torch's;
- ``patched_rules`` took any function whose module name starts with ``torchlean`` (a project's
  ``torchlean_contrib``) for torchlean's own;
- the ``adjoint`` statement left out a differentiable input whose VJP returned ``None`` (the tape
  still pulled a gradient through it: zero), and the checker accepted the rest.

Held (tests with real assertions): the chain-rule composition and the runtime's backward against
torch.autograd on a model with a shared layer, an input used twice, a broadcast bias and a
transpose; an artifact copied from another model is stale.
"""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import torchlean as tl
from torchlean import nn
from torchlean.certificates import check
from torchlean.proofs.compose import node_obligations, shapes_covered, trace
from torchlean.runtime.rules import RULES, sum_to

ROOT = Path(__file__).resolve().parents[1]


def _tanh_vjp_transposed(xp, g, out, x):
    """(1 - out^2) read transposed: the same as tanh's VJP at one entry, wrong on a square plane."""
    return (g * (1 - out * out).T,)


def _sq():
    return nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1))


def _grads_vs_torch(model, torch_model, x):
    """(torchlean's input gradient of sum(model(x)), torch's), same float64 weights."""
    for p in model.parameters():
        p.data = np.asarray(p.data, dtype=np.float64)
    with torch.no_grad():
        for tp, p in zip(torch_model.parameters(), model.parameters(), strict=True):
            tp.copy_(torch.tensor(np.asarray(p.data)))
    xt = tl.tensor(x, requires_grad=True)
    model(xt).sum().backward()
    xr = torch.tensor(x, requires_grad=True)
    torch_model(xr).sum().backward()
    return np.asarray(xt.grad.data), xr.grad.numpy()


def test_the_transposed_tanh_vjp_is_wrong_by_torch():
    """The independent reference: with the replaced rule the runtime's gradient is not torch's."""
    x = np.array([[0.3, -1.2], [0.7, 0.5]])
    tm = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1)).double()
    tl.manual_seed(0)
    ours, ref = _grads_vs_torch(_sq(), tm, x)
    assert np.allclose(ours, ref, atol=1e-12)
    saved = RULES["tanh"]
    RULES["tanh"] = dataclasses.replace(saved, vjp=_tanh_vjp_transposed)
    try:
        tl.manual_seed(0)
        ours, ref = _grads_vs_torch(_sq(), tm, x)
    finally:
        RULES["tanh"] = saved
    assert np.max(np.abs(ours - ref)) > 1e-2


def test_a_replaced_entrywise_rule_is_proved_at_the_nodes_shapes(monkeypatch):
    graph, _, cases = trace(_sq, (2, 2))
    (own,) = [f for k, f, _ in cases if k.startswith("tanh.")]
    assert own["shapes"] == [[1]]  # torchlean's own tanh: one scalar identity, every shape
    monkeypatch.setitem(RULES, "tanh", dataclasses.replace(RULES["tanh"], vjp=_tanh_vjp_transposed))
    graph, _, cases = trace(_sq, (2, 2))
    ((key, fields, _),) = [c for c in cases if c[0].startswith("tanh.")]
    assert fields["shapes"] == [[2, 2]]
    obs = {ob.kind: ob for ob in node_obligations("tanh", key, fields)}
    assert obs["autograd"].data["shapes"] == [[2, 2]]
    assert shapes_covered(obs["autograd"]) == (False, "shapes [[2, 2]] only")
    # the library's claim at (1,) no longer says "every shape" for the replaced rule
    from torchlean.proofs.cli import collect

    (lib,) = collect(None, ["autograd.tanh"], library=True)
    assert shapes_covered(lib)[0] is False


@pytest.mark.solver
def test_the_transposed_tanh_node_is_refuted(tmp_path, monkeypatch):
    from torchlean.proofs.discharge import discharge

    monkeypatch.setitem(RULES, "tanh", dataclasses.replace(RULES["tanh"], vjp=_tanh_vjp_transposed))
    _, _, cases = trace(_sq, (2, 2))
    ((key, fields, _),) = [c for c in cases if c[0].startswith("tanh.")]
    obs = [ob for ob in node_obligations("tanh", key, fields) if ob.kind == "autograd"]
    (r,) = discharge(obs, tmp_path, solver="z3", timeout=30, progress=False)
    assert r.status == "refuted" and "counterexample" in r.message, (r.status, r.message)


MODELS = """\
import os
from torchlean import nn
from torchlean.proofs import verified

if os.environ.get("PATCH"):
    import torchlean_contrib_a29  # noqa: F401


@verified(input_shape=(2, 2), name="sq")
def sq():
    return nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1))
"""

PATCH = """\
from torchlean.runtime.rules import RULES, Rule


def tanh_vjp(xp, g, out, x):
    return (g * (1 - out * out).T,)


RULES["tanh"] = Rule("tanh", RULES["tanh"].forward, tanh_vjp)
"""


def _run(proj, *args, patch=False):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(proj)]), OPENBLAS_NUM_THREADS="1")
    env.pop("PATCH", None)
    if patch:
        env["PATCH"] = "1"
    return subprocess.run([sys.executable, "-m", "torchlean.proofs", *args], cwd=proj, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.solver
def test_proofs_check_fails_after_a_project_replaces_the_rule(tmp_path):
    """End to end: artifacts discharged for the real tanh; the project then replaces tanh's VJP
    (in a module named ``torchlean_contrib_a29``). ``proofs check`` used to report every
    obligation checked; now the tanh node is a new case (missing), and discharging it is refuted."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text('[tool.torchlean]\nproofs = "proofs"\nmodules = ["mymodels"]\n')
    (proj / "mymodels.py").write_text(MODELS)
    (proj / "torchlean_contrib_a29.py").write_text(PATCH)
    r = _run(proj, "discharge", "--solver", "z3", "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    r = _run(proj, "check")
    assert r.returncode == 0 and " 0 failed" in r.stdout, r.stdout + r.stderr
    r = _run(proj, "check", patch=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "missing autograd.tanh." in r.stdout and "model.sq" in r.stdout, r.stdout
    r = _run(proj, "discharge", "--solver", "z3", "-q", patch=True)
    assert r.returncode == 1 and "refuted  autograd.tanh." in r.stdout, r.stdout + r.stderr


def test_a_contrib_module_replacing_a_rule_is_a_patched_rule(tmp_path, monkeypatch):
    from torchlean.proofs.cli import patched_rules

    assert patched_rules() == []
    (tmp_path / "torchlean_contrib_a29b.py").write_text(
        "from torchlean.runtime.rules import RULES, Rule, sum_to\n"
        "def mul_vjp(xp, g, out, a, b):\n"
        "    return sum_to(xp, g * b, a.shape), sum_to(xp, g * a, b.shape)\n"
        "RULES['mul'] = Rule('mul', RULES['mul'].forward, mul_vjp)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(RULES, "mul", RULES["mul"])  # restored after the test
    monkeypatch.delitem(sys.modules, "torchlean_contrib_a29b", raising=False)
    import torchlean_contrib_a29b  # noqa: F401

    sys.modules.pop("torchlean_contrib_a29b", None)
    assert patched_rules() == ["mul"]


def _mul_vjp_drops_b(xp, g, out, a, b):
    return sum_to(xp, g * b, a.shape), None


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(x) * x


def test_a_vjp_that_gives_a_real_input_nothing_is_not_adjoint(monkeypatch):
    from torchlean.proofs.adjoint import node_obligation, statement

    st, _ = statement("mul", [(2, 3), (2, 3)], {})
    assert set(st["rhs"]) == {"x0", "x1"} and check(st).ok
    # the reference: with b's cotangent dropped, the gated unit's input gradient is not torch's
    x = np.array([[0.3, -1.2]])
    tl.manual_seed(0)
    model = Gate()
    for p in model.parameters():
        p.data = np.asarray(p.data, dtype=np.float64)
    W, bias = (torch.tensor(np.asarray(p.data)) for p in model.parameters())
    monkeypatch.setitem(RULES, "mul", dataclasses.replace(RULES["mul"], vjp=_mul_vjp_drops_b))
    xt = tl.tensor(x, requires_grad=True)
    model(xt).sum().backward()
    xr = torch.tensor(x, requires_grad=True)
    ((xr @ W.T + bias) * xr).sum().backward()
    assert np.max(np.abs(np.asarray(xt.grad.data) - xr.grad.numpy())) > 0.1
    st, _ = statement("mul", [(2, 3), (2, 3)], {})
    assert st["rhs"]["x1"] == []
    v = check(st)
    assert not v.ok and "x1" in v.reason
    assert node_obligation("mul", [[2, 3], [2, 3]], {}, []) is None


def test_gather_indices_still_carry_no_cotangent():
    """The integer input of gather stays out of the claim (its VJP is None by design)."""
    from torchlean.proofs.adjoint import statement

    st, _ = statement("gather", [(2, 3), (2, 2)], {"axis": 1})
    assert set(st["rhs"]) == {"x0"} and check(st).ok


def _pool_vjp_flipped(xp, g, out, x, **attrs):
    (gx,) = _POOL(xp, g, out, x, **attrs)
    return (gx[:, ::-1],)


_POOL = RULES["max_pool2d"].vjp


def test_a_replaced_pooling_rule_is_proved_at_its_batch_and_channels(monkeypatch):
    def build():
        return nn.Sequential(nn.MaxPool2d(2), nn.Flatten())

    _, _, cases = trace(build, (1, 2, 4, 4))
    ((key, fields, _),) = [c for c in cases if c[0].startswith("max_pool2d.")]
    assert fields["shapes"] == [[1, 1, 4, 4]]  # torchlean's own: one plane stands for all
    kinds = {ob.kind for ob in node_obligations("max_pool2d", key, fields)}
    assert "windows" in kinds
    monkeypatch.setitem(RULES, "max_pool2d", dataclasses.replace(RULES["max_pool2d"], vjp=_pool_vjp_flipped))
    _, _, cases = trace(build, (1, 2, 4, 4))
    ((key, fields, _),) = [c for c in cases if c[0].startswith("max_pool2d.")]
    assert fields["shapes"] == [[1, 2, 4, 4]]
    obs = node_obligations("max_pool2d", key, fields)
    assert "windows" not in {ob.kind for ob in obs}
    assert [ob.data["shapes"] for ob in obs if ob.kind == "autograd"] == [[[1, 2, 4, 4]]]
    # the reference: the flipped VJP's gradient is not torch's (channels swapped)
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 4))
    xt = tl.tensor(x, requires_grad=True)
    (build()(xt) * tl.tensor(np.arange(8.0))).sum().backward()
    xr = torch.tensor(x, requires_grad=True)
    weights = torch.arange(8.0, dtype=torch.float64)
    (torch.nn.functional.max_pool2d(xr, 2).flatten(1) * weights).sum().backward()
    assert np.max(np.abs(np.asarray(xt.grad.data) - xr.grad.numpy())) > 1


def test_a_rule_swapped_during_the_forward_is_refused():
    """The node obligations are derived from ``RULES``: a node that ran another rule is refused."""
    saved = RULES["tanh"]

    class Swap(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            h = self.fc(x).tanh()
            RULES["tanh"] = dataclasses.replace(saved, vjp=_tanh_vjp_transposed)
            return h.sum()

    try:
        with pytest.raises(ValueError, match="not RULES"):
            trace(Swap, (2, 2))
    finally:
        RULES["tanh"] = saved


class Shared(nn.Module):
    """One Linear used twice, the input used twice, a broadcast bias, a transpose."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.b = nn.Parameter(tl.tensor(np.array([0.5, -0.25, 1.0])))

    def forward(self, x):
        h = self.fc(self.fc(x).tanh()) * x + self.b
        return (h.transpose(0, 1) @ x).sum()


def test_held_shared_layer_and_reuse_compose_and_match_torch():
    graph, tr, _ = trace(Shared, (2, 3))
    v = check({"kind": "composition", "graph": graph, "trace": tr})
    assert v.ok, v.reason
    # x has three uses, the shared weight and bias two each (one per application), b one
    assert sorted(len(a) for a in tr["grads"].values()) == [1, 2, 2, 3]
    x = np.array([[0.2, -0.7, 1.1], [0.4, 0.9, -0.3]])
    tl.manual_seed(3)
    m = Shared()
    for p in m.parameters():
        p.data = np.asarray(p.data, dtype=np.float64)
    mine = (m.fc.weight, m.fc.bias, m.b)
    W, b1, b = (torch.tensor(np.asarray(p.data), requires_grad=True) for p in mine)
    xt = tl.tensor(x, requires_grad=True)
    m(xt).backward()
    xr = torch.tensor(x, requires_grad=True)
    fc = lambda z: z @ W.T + b1  # noqa: E731
    ((fc(torch.tanh(fc(xr))) * xr + b).T @ xr).sum().backward()
    assert np.allclose(np.asarray(xt.grad.data), xr.grad.numpy(), atol=1e-12)
    for p, ref in zip(mine, (W, b1, b), strict=True):
        assert np.allclose(np.asarray(p.grad.data), ref.grad.numpy(), atol=1e-12)


@pytest.mark.solver
def test_held_an_artifact_copied_from_another_model_is_stale(tmp_path):
    from torchlean.proofs.artifacts import check_one
    from torchlean.proofs.compose import model_obligations
    from torchlean.proofs.discharge import discharge

    a = list(model_obligations("a29a", _sq, (2, 2)))
    b = list(model_obligations("a29b", _sq, (2, 2)))
    discharge(a, tmp_path, solver="z3", timeout=30, progress=False)
    (ma,) = [ob for ob in a if ob.kind == "composition"]
    (mb,) = [ob for ob in b if ob.kind == "composition"]
    assert check_one(tmp_path, ma).status == "checked"
    (tmp_path / f"{mb.name}.json").write_text((tmp_path / f"{ma.name}.json").read_text())
    assert check_one(tmp_path, mb).status == "stale"


class Detached(nn.Module):
    """h * stop_gradient(h): one factor carries no gradient (None in the graph)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        h = self.fc(x)
        return (h * h.detach()).sum()


def test_held_a_detached_factor_composes_and_matches_torch():
    graph, tr, _ = trace(Detached, (1, 2))
    assert check({"kind": "composition", "graph": graph, "trace": tr}).ok
    assert any(None in n["inputs"] for n in graph["nodes"] if n["prim"] == "mul")
    x = np.array([[0.4, -0.9]])
    tl.manual_seed(5)
    m = Detached()
    for p in m.parameters():
        p.data = np.asarray(p.data, dtype=np.float64)
    W, b = (torch.tensor(np.asarray(p.data)) for p in (m.fc.weight, m.fc.bias))
    xt = tl.tensor(x, requires_grad=True)
    m(xt).backward()
    xr = torch.tensor(x, requires_grad=True)
    h = xr @ W.T + b
    (h * h.detach()).sum().backward()
    assert np.allclose(np.asarray(xt.grad.data), xr.grad.numpy(), atol=1e-12)


def _mul_vjp_branchy(xp, g, out, a, b):
    """Wrong (doubled) on a's side when a has more than 8 entries: a size-dependent branch."""
    ga = g * b
    if a.shape[0] * a.shape[1] > 8:
        ga = ga * 2
    return sum_to(xp, ga, a.shape), sum_to(xp, g * a, b.shape)


def test_held_a_size_branch_in_a_vjp_is_a_recorded_decision(monkeypatch):
    from torchlean.proofs.adjoint import node_obligation

    assert node_obligation("mul", [[3, 4], [3, 4]], {}, []) is not None  # the real rule: a class
    monkeypatch.setitem(RULES, "mul", dataclasses.replace(RULES["mul"], vjp=_mul_vjp_branchy))
    small = node_obligation("mul", [[2, 4], [2, 4]], {}, [])
    assert small is not None and ["8", ">=", "n0*n1", True] in small.data["decisions"]
    assert check(small.data["statement"]).ok
    assert node_obligation("mul", [[3, 4], [3, 4]], {}, []) is None  # the other branch: no class


@pytest.fixture
def own_sources():
    """The @verified registrations of a test leave the global registry as they found it."""
    from torchlean.proofs.obligation import SOURCES

    saved = dict(SOURCES)
    yield
    SOURCES.clear()
    SOURCES.update(saved)


class Net(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1))


def test_a_second_verified_under_one_name_is_refused(own_sources):
    """``verified(input_shape=(2, 2))(Net)`` then ``(1, 2)``: the second replaced the first's source,
    so the claim at the training batch was never made (and ``proofs check`` passed)."""
    from torchlean.proofs.obligation import SOURCES
    from torchlean.proofs.verified import NameClash, verified

    verified(input_shape=(2, 2))(Net)
    verified(input_shape=(2, 2))(Net)  # the same decoration again (a module imported twice): fine
    with pytest.raises(NameClash, match="two claims named 'Net'"):
        verified(input_shape=(1, 2))(Net)
    assert "verified.model.Net" in SOURCES

    def build():
        return _sq()

    def build_elsewhere():
        return nn.Sequential(nn.Linear(2, 1))

    # two factories called build, in two modules: the label is the function's name
    build_elsewhere.__name__ = build_elsewhere.__qualname__ = "build"
    build_elsewhere.__module__ = "elsewhere"
    verified(build, input_shape=(1, 2))
    with pytest.raises(NameClash, match="elsewhere.build"):
        verified(build_elsewhere, input_shape=(1, 2))
    verified(build_elsewhere, name="build_b", input_shape=(1, 2))  # named apart: both kept
    assert {"verified.model.build", "verified.model.build_b"} <= set(SOURCES)


CLASH = """\
from torchlean import nn
from torchlean.proofs import verified


class Net(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1))


verified(input_shape=(2, 2))(Net)   # the batch the app trains with
verified(input_shape=(1, 2))(Net)   # and single samples
"""


def test_proofs_check_refuses_two_claims_under_one_name(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text('[tool.torchlean]\nproofs = "proofs"\nmodules = ["mymodels"]\n')
    (proj / "mymodels.py").write_text(CLASH)
    r = _run(proj, "check")
    assert r.returncode == 2 and "two claims named 'Net'" in r.stderr, r.stdout + r.stderr
