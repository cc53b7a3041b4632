"""Audit audit42: is every change to code a checked claim depends on seen by ``proofs check`` and
``pytest --torchlean-check``? (TRUST_BOUNDARIES.md, "Audit audit42".)

Holes found (each test below fails on the code before the audit):

- a project rebinding a helper or constant that torchlean's own rule reads (``rules_nn._ln_stats``,
  ``rules_elementwise.M_2_SQRTPI``) or a rule function's ``__code__`` / defaults kept ``rules.shipped``
  true, so the node was keyed and proved in its reduced form (one row, one entry) and nothing changed;
- erf's VJP reads 2/sqrt(pi) from a module constant on numpy only (the symbolic run reads the exact
  one), so a wrong constant was never part of any claim;
- a custom primitive's claim was about the ``vjp=`` and ``meaning=`` given to ``@tl.verified``, not the
  VJP registered with ``runtime.rules.rule`` nor its registered spec;
- a committed ``model.*`` artifact whose ``@verified`` is no longer derived was not mentioned.
- a rebound backward engine (``autograd.backward``, which writes ``.grad`` after ``_propagate``, the
  part a composition claim reads) was not seen.

References: torch.autograd (float64) on the same weights and inputs, mpmath for 2/sqrt(pi).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torchlean as tl  # noqa: E402
from torchlean.proofs.obligation import NoProofCase  # noqa: E402
from torchlean.runtime import backends, rules, rules_elementwise, rules_nn  # noqa: E402
from torchlean.runtime.tensor import Tensor, apply  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _ln_stats_one_mean(xp, x, normalized_ndim, eps):
    """A "simplified" layer_norm helper: the mean over the whole tensor (right for one row only)."""
    axes = tuple(range(x.ndim - int(normalized_ndim), x.ndim))
    n = 1
    for a in axes:
        n *= x.shape[a]
    xc = x - xp.sum(x) / x.size
    var = xp.sum(xc * xc, axis=axes, keepdims=True) / n
    return axes, n, xc, 1 / xp.sqrt(var + eps)


def _ln_grads(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(torchlean's, torch's) input gradient of sum(layer_norm(x) * c) over the last axis."""
    c = np.linspace(-1.0, 2.0, x.size).reshape(x.shape)
    xt = Tensor(x.copy(), requires_grad=True)
    w, b = Tensor(np.ones(x.shape[-1])), Tensor(np.zeros(x.shape[-1]))
    (apply("layer_norm", xt, w, b, normalized_ndim=1, eps=1e-5) * Tensor(c)).sum().backward()
    xr = torch.tensor(x, requires_grad=True)
    (torch.nn.functional.layer_norm(xr, (x.shape[-1],), eps=1e-5) * torch.tensor(c)).sum().backward()
    return np.asarray(xt.grad.data), xr.grad.numpy()


def _erf_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xt = Tensor(x.copy(), requires_grad=True)
    apply("erf", xt).sum().backward()
    xr = torch.tensor(x, requires_grad=True)
    torch.erf(xr).sum().backward()
    return np.asarray(xt.grad.data), xr.grad.numpy()


# -- in process: what ``shipped`` sees ----------------------------------------------------------


def test_every_rule_is_shipped_after_use():
    """No false alarm: after a training step through many primitives (and the verifier's and the
    proofs' imports) every torchlean rule still counts as its own."""
    import torchlean.proofs.cli  # noqa: F401
    import torchlean.verify  # noqa: F401

    model = tl.nn.Sequential(tl.nn.Conv2d(1, 2, 3), tl.nn.ReLU(), tl.nn.MaxPool2d(2), tl.nn.Flatten(),
                             tl.nn.LayerNorm(8), tl.nn.Linear(8, 3), tl.nn.GELU(), tl.nn.Tanh())
    x = Tensor(np.random.default_rng(0).standard_normal((2, 1, 6, 6)))
    model(x).sum().backward()
    assert [n for n in rules.RULES if not rules.shipped(n)] == []
    assert set(rules.READS) == set(rules.SHIPPED) and len(rules.SHIPPED) >= 40


@pytest.mark.parametrize("prim, holder, attr, value", [
    ("layer_norm", rules_nn, "_ln_stats", _ln_stats_one_mean),
    ("max_pool2d", rules_nn, "scatter", lambda xp, base, parts, add=True: base),
    ("max_pool2d", rules_nn, "NEG_INF", -1e300),
    ("erf", rules_elementwise, "M_2_SQRTPI", 1.0),
    ("gelu", rules_elementwise, "GELU_C", 0.8),
    ("erf", rules_elementwise, "_erf", lambda xp, x: x),
    ("erf", backends, "_ERF_UFUNC", np.frompyfunc(lambda v: v, 1, 1)),
])
def test_a_rebound_helper_or_constant_is_not_shipped(monkeypatch, prim, holder, attr, value):
    from torchlean.proofs.cli import patched_rules

    assert rules.shipped(prim)
    monkeypatch.setattr(holder, attr, value)
    assert not rules.shipped(prim)
    assert prim in patched_rules()  # so the library's claims about it are checked too


def test_swapped_code_and_defaults_are_not_shipped(monkeypatch):
    vjp = rules.RULES["tanh"].vjp
    monkeypatch.setattr(vjp, "__code__", (lambda xp, g, out, x: ((g * (1 - out * out)).T,)).__code__)
    assert not rules.shipped("tanh")
    monkeypatch.undo()
    assert rules.shipped("tanh")
    fwd = rules.RULES["layer_norm"].forward
    monkeypatch.setattr(fwd, "__defaults__", (1, 1e-3))
    assert not rules.shipped("layer_norm")


def test_rebound_layer_norm_helper_is_keyed_at_its_real_shapes(monkeypatch):
    """The reference fact (torch) and the fix: with the one-mean helper the runtime's gradient is
    torch's for one row and not for two; the node is then keyed at its two rows (it was keyed at
    one row, where the claim holds)."""
    from torchlean.proofs.compose import trace

    x1, x2 = np.array([[0.3, -0.7, 2.0]]), np.array([[0.3, -0.7, 2.0], [1.1, 0.2, -3.0]])
    for x in (x1, x2):
        ours, ref = _ln_grads(x)
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    monkeypatch.setattr(rules_nn, "_ln_stats", _ln_stats_one_mean)
    ours, ref = _ln_grads(x1)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    ours, ref = _ln_grads(x2)
    assert np.abs(ours - ref).max() > 0.05
    _, _, cases = trace(lambda: tl.nn.Sequential(tl.nn.LayerNorm(3), tl.nn.Linear(3, 1)), (2, 3))
    (ln,) = [f for k, f, _ in cases if k.startswith("layer_norm.")]
    assert ln["shapes"][0] == [2, 3]


def test_erf_numpy_constant_is_part_of_the_claim(monkeypatch):
    import mpmath

    from torchlean.proofs.autograd import primitive_obligations

    with mpmath.workprec(200):
        exact = float(2 / mpmath.sqrt(mpmath.pi))
    assert rules_elementwise.M_2_SQRTPI == exact
    ours, ref = _erf_grad(np.array([0.0, 0.4, -1.3]))
    np.testing.assert_allclose(ours, ref, rtol=1e-15)
    names = [ob.name for ob in primitive_obligations("erf")]
    assert "autograd.erf" in names
    for wrong in (1.0, float(np.nextafter(exact, 2.0))):
        monkeypatch.setattr(rules_elementwise, "M_2_SQRTPI", wrong)
        ours, ref = _erf_grad(np.array([0.0, 0.4, -1.3]))
        assert ours[0] == wrong and ours[0] != ref[0]
        with pytest.raises(NoProofCase, match="2/sqrt\\(pi\\)"):
            list(primitive_obligations("erf"))


def _halving_backward(t, grad=None):
    """A project's "gradient scaling" folded into the engine: the leaf write halves every gradient."""
    from torchlean.runtime import autograd as ag

    cot = ag._propagate([t], [ag._seed(t, grad)])
    with tl.no_grad():
        for s in ag.tape_order([t]):
            if s._node is None and id(s) in cot:
                g = 0.5 * cot[id(s)]
                s.grad = Tensor(g) if s.grad is None else Tensor(s.grad.data + g)


def test_a_rebound_backward_engine_is_refused(monkeypatch):
    """The composition claim reads ``_propagate``'s cotangents; ``backward`` writes the leaves."""
    from torchlean.proofs.compose import trace
    from torchlean.runtime import autograd as ag

    build = lambda: tl.nn.Sequential(tl.nn.Linear(2, 2), tl.nn.Tanh(), tl.nn.Linear(2, 1))  # noqa: E731
    assert rules.engine_shipped()
    trace(build, (1, 2))
    x = np.array([[0.3, -0.7]])
    ref = _erf_grad(x)[0]  # (any shipped path: the unpatched engine's gradient)
    monkeypatch.setattr(ag, "backward", _halving_backward)
    ours = _erf_grad(x)[0]
    np.testing.assert_allclose(ours, 0.5 * ref, rtol=1e-15)  # the reference fact
    assert not rules.engine_shipped()
    with pytest.raises(NoProofCase, match="backward engine"):
        trace(build, (1, 2))
    monkeypatch.undo()
    assert rules.engine_shipped()
    # _propagate and what only it reads are run by the trace itself (test_proofs_compose rejects a
    # broken _accumulate there): not part of the record; what the leaf write reads is
    monkeypatch.setattr(ag, "_accumulate", lambda table, key, g: table.__setitem__(key, g))
    assert rules.engine_shipped()
    monkeypatch.undo()
    monkeypatch.setattr(ag, "tape_order", lambda roots: list(roots))
    assert not rules.engine_shipped()
    monkeypatch.undo()
    monkeypatch.setattr(Tensor, "backward", lambda self, grad=None: None)
    assert not rules.engine_shipped()


# -- end to end: scratch projects as the README describes -----------------------------------------

MODELS = '''\
import torchlean as tl
from torchlean.runtime.tensor import apply


class ErfNet(tl.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = tl.nn.Linear(2, 2), tl.nn.Linear(2, 1)

    def forward(self, x):
        return self.b(apply("erf", self.a(x)))


class LNNet(tl.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln, self.b = tl.nn.LayerNorm(3), tl.nn.Linear(3, 1)

    def forward(self, x):
        return self.b(self.ln(x))


tl.verified(input_shape=(2, 2))(ErfNet)
tl.verified(input_shape=(2, 3))(LNNet)
'''

#: the project's package __init__ "tuning" torchlean at import time
REBIND_LN = '''\
import torchlean.runtime.rules_nn as _rn


def _ln_stats(xp, x, normalized_ndim, eps):
    axes = tuple(range(x.ndim - int(normalized_ndim), x.ndim))
    n = 1
    for a in axes:
        n *= x.shape[a]
    xc = x - xp.sum(x) / x.size
    var = xp.sum(xc * xc, axis=axes, keepdims=True) / n
    return axes, n, xc, 1 / xp.sqrt(var + eps)


_rn._ln_stats = _ln_stats
'''
REBIND_ERF = "import torchlean.runtime.rules_elementwise as _re\n_re.M_2_SQRTPI = 1.0\n"

CUBE = '''\
import numpy as np
import torchlean as tl
from torchlean.runtime.rules import rule
from torchlean.spec.primitives import primitive


@primitive("cube", "elementwise", 1, lambda s: s)
def cube_spec(m, x):
    return np.vectorize(lambda v: v * v * v, otypes=[object])(x)


def cube_vjp(xp, g, out, x):
    return (3 * g * x * x,)


@tl.verified(name="cube", meaning=lambda x: x * x * x, vjp=cube_vjp, shapes=[(2,)])
def cube_kernel(xp, x):
    return x * x * x


rule("cube")(cube_kernel).vjp(cube_vjp)
'''


def _run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(project)]),
           "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=600)


def _check(project: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run(project, "-m", "torchlean.proofs", "check", *extra)


def _pytest(project: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run(project, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--torchlean-check", *extra)


def _make(root: Path, package: str, models: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        f'[tool.torchlean]\nproofs = "proofs"\nmodules = ["{package}.models"]\n')
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    (root / package / "models.py").write_text(models)
    (root / "test_nothing.py").write_text("def test_ok():\n    pass\n")
    r = _run(root, "-m", "torchlean.proofs", "discharge", "-q")
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    r = _check(root)
    assert r.returncode == 0 and " 0 failed" in r.stdout, (r.stdout[-2000:], r.stderr[-2000:])
    return root


@pytest.fixture(scope="module")
def shipped_project(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("a42") / "base", "pkg42", MODELS)


@pytest.fixture(scope="module")
def cube_project(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("a42cube") / "base", "cube42", CUBE)


def _copy(base: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base, tmp_path / "p"))


def test_rebound_layer_norm_helper_fails_check_and_pytest(shipped_project, tmp_path):
    p = _copy(shipped_project, tmp_path)
    (p / "pkg42" / "__init__.py").write_text(REBIND_LN)
    r = _check(p)
    assert r.returncode == 1, (r.stdout[-2000:], r.stderr[-2000:])
    assert "model.LNNet" in r.stdout and "layer_norm" in r.stdout
    assert "model.ErfNet" not in r.stdout  # the other model's claim is untouched
    r = _pytest(p)
    assert r.returncode == 1 and "LNNet" in r.stdout, r.stdout[-2000:]


def test_rebound_erf_constant_fails_check_and_pytest(shipped_project, tmp_path):
    p = _copy(shipped_project, tmp_path)
    (p / "pkg42" / "__init__.py").write_text(REBIND_ERF)
    r = _check(p)
    assert r.returncode == 2 and "2/sqrt(pi)" in r.stderr, (r.stdout[-2000:], r.stderr[-2000:])
    r = _pytest(p)
    assert r.returncode == pytest.ExitCode.USAGE_ERROR and "2/sqrt(pi)" in r.stdout + r.stderr


REBIND_BACKWARD = '''\
import torchlean.runtime.autograd as _ag
from torchlean.runtime.tensor import Tensor, no_grad


def backward(t, grad=None):
    cot = _ag._propagate([t], [_ag._seed(t, grad)])
    with no_grad():
        for s in _ag.tape_order([t]):
            if s._node is None and id(s) in cot:
                g = 0.5 * cot[id(s)]
                s.grad = Tensor(g) if s.grad is None else Tensor(s.grad.data + g)


_ag.backward = backward
'''


def test_rebound_backward_engine_fails_check_and_pytest(shipped_project, tmp_path):
    p = _copy(shipped_project, tmp_path)
    (p / "pkg42" / "__init__.py").write_text(REBIND_BACKWARD)
    r = _check(p)
    assert r.returncode == 2 and "backward engine" in r.stderr, (r.stdout[-2000:], r.stderr[-2000:])
    r = _pytest(p)
    assert r.returncode == pytest.ExitCode.USAGE_ERROR and "backward engine" in r.stdout + r.stderr


def test_held_a_layer_added_or_a_node_artifact_removed(shipped_project, tmp_path):
    p = _copy(shipped_project, tmp_path)
    models = p / "pkg42" / "models.py"
    models.write_text(MODELS.replace("return self.b(self.ln(x))", "return self.b(tl.nn.Tanh()(self.ln(x)))"))
    r = _check(p)
    assert r.returncode == 1 and "stale model.LNNet" in r.stdout, r.stdout[-2000:]
    models.write_text(MODELS)
    (node,) = list((p / "proofs").glob("autograd.erf.*.json"))
    node.unlink()
    r = _check(p)
    assert r.returncode == 1 and f"missing {node.stem}" in r.stdout, r.stdout[-2000:]


def test_an_orphaned_model_artifact_is_reported(shipped_project, tmp_path):
    p = _copy(shipped_project, tmp_path)
    (p / "pkg42" / "models.py").write_text(MODELS.replace("tl.verified(input_shape=(2, 3))(LNNet)\n", ""))
    r = _check(p)
    assert r.returncode == 0 and "orphaned model.LNNet" in r.stderr, (r.stdout[-2000:], r.stderr[-2000:])
    r = _check(p, "--strict")
    assert r.returncode == 1 and "orphaned model.LNNet" in r.stdout, r.stdout[-2000:]
    r = _pytest(p, "--torchlean-strict")
    assert r.returncode == 1 and "orphaned model.LNNet" in r.stdout, r.stdout[-2000:]
    r = _pytest(p)
    assert r.returncode == 0 and "orphaned model.LNNet" in r.stdout, r.stdout[-2000:]  # (a warning)


def test_cube_reference_fact():
    """What the wrong registered VJP below computes, against torch."""
    x = np.array([0.5, -1.5])
    g2 = 2 * x * x  # cube_vjp_fast
    xr = torch.tensor(x, requires_grad=True)
    (xr ** 3).sum().backward()
    assert np.abs(g2 - xr.grad.numpy()).max() > 1.0


def test_custom_rule_registered_with_another_vjp_is_refused(cube_project, tmp_path):
    p = _copy(cube_project, tmp_path)
    (p / "cube42" / "models.py").write_text(CUBE.replace(
        'rule("cube")(cube_kernel).vjp(cube_vjp)',
        'def cube_vjp_fast(xp, g, out, x):\n    return (2 * g * x * x,)\n\n\n'
        'rule("cube")(cube_kernel).vjp(cube_vjp_fast)'))
    r = _check(p)
    assert r.returncode == 2 and "'cube'" in r.stderr and "VJP" in r.stderr, (r.stdout[-2000:], r.stderr)
    r = _pytest(p)
    assert r.returncode == pytest.ExitCode.USAGE_ERROR and "VJP" in r.stdout + r.stderr


def test_custom_spec_edited_is_refused(cube_project, tmp_path):
    p = _copy(cube_project, tmp_path)
    (p / "cube42" / "models.py").write_text(CUBE.replace("lambda v: v * v * v,", "lambda v: v * v * v + v,"))
    r = _check(p)
    assert r.returncode == 2 and "registered spec" in r.stderr, (r.stdout[-2000:], r.stderr)


def test_held_custom_kernel_edited_is_stale(cube_project, tmp_path):
    p = _copy(cube_project, tmp_path)
    edited = CUBE.replace("    return x * x * x\n", "    return x * x * x * 1.0001\n")
    (p / "cube42" / "models.py").write_text(edited)
    r = _check(p)
    assert r.returncode == 1 and "stale forward.cube" in r.stdout, r.stdout[-2000:]
