"""Audit audit35: gradient claims traced faithfully (inputs and weights as values nothing may
branch on).

The hole: ``proofs.compose.trace`` (behind ``@tl.verified`` models, ``python -m torchlean.proofs
check``, ``zoo.claims.gradient_proof`` and the zoo's ``--certify`` proof lines) ran the model once at
one seeded input and proved the nodes of that one tape. A model choosing its primitives in Python
on its input (``if float(x.sum()) > 0``) or on a weight got the traced path's nodes proved while the
claim printed ("the tape's backward pass of M at input [1, 2] composes its nodes' VJPs") is about
the model: end to end, a custom primitive whose VJP was wrong at a one-element input, applied at
that shape only on the untraced branch, was reported ``checked`` by ``proofs check`` (exit 0) while
the runtime gradient there was 2/3 of torch.autograd's. Fixed: ``compose.trace`` runs the forward
under ``runtime.trace.gradient_tracer`` (audit31's faithful tracer, with parameters and buffers
dependent too, and ``detach()`` allowed as a stop-gradient); a refusal is bad input (exit 2).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.proofs.compose import trace
from torchlean.proofs.obligation import NoProofCase

ROOT = Path(__file__).resolve().parents[1]


def _x0() -> np.ndarray:
    """The point ``compose.trace`` runs a (1, 2)-input model at (its seeded input)."""
    return np.random.default_rng(0).standard_normal((1, 2))


class Fn(nn.Module):
    """A Linear(2, 2) then ``fn(self, h)``: the models below differ only in ``fn``."""

    def __init__(self, fn):
        super().__init__()
        self.lin, self.fn = nn.Linear(2, 2), fn

    def forward(self, x):
        return self.fn(self, self.lin(x))


def _input_branch(m, h):
    return h.tanh() if float(h.sum()) > 1e9 else h.sigmoid()


REFUSED = {
    "float() of a dependent value": _input_branch,
    "if t: on a dependent value": lambda m, h: h.tanh() if (h.sum() > 0) else h.sigmoid(),
    ".item() of a weight": lambda m, h: h * 2 if m.lin.weight.sum().item() > 0 else h * 3,
    "bool() of a raw parameter, before any use": lambda m, h: h * 2 if bool(m.lin.bias[0] > 9) else h,
    "a comparison mask": lambda m, h: h * (h > 0),
    "a weight-dependent mask": lambda m, h: h * (m.lin.bias > 0),
    "a tl.tensor copy": lambda m, h: h * tl.tensor(h),
    "a .to() copy": lambda m, h: h * h.long(),  # (a float .to() is the cast primitive: traced)
    "argmax indices": lambda m, h: h * h.argmax(dim=1, keepdim=True),
    "a random draw": lambda m, h: h + tl.randn(1, 2),
    "a branch on a detached value": lambda m, h: h.tanh() if float(h.detach().sum()) > 0 else h,
}


@pytest.mark.parametrize("what", list(REFUSED))
def test_data_dependent_python_is_refused(what):
    """Each construct that makes the tape one path's (or freezes a dependent value into a node's
    case) is refused with a NoProofCase naming the model; the old code traced it silently."""
    with pytest.raises(NoProofCase, match="@verified model Fn"):
        trace(lambda: Fn(REFUSED[what]), (1, 2))


def _stop_grad(m, h):
    return (h * h.detach()).sum(dim=1, keepdim=True)


def test_detach_is_a_stop_gradient_and_still_traces():
    """``detach()`` is allowed: the tape holds it as a constant leaf, and the runtime gradient is
    torch's (``h * h.detach()`` has gradient ``h`` per unit of h, not ``2h``)."""
    torch = pytest.importorskip("torch")
    graph, tr, cases = trace(lambda: Fn(_stop_grad), (1, 2))
    prims = [n["prim"] for n in graph["nodes"]]
    muls = [n for n in graph["nodes"] if n["prim"] == "mul"]
    assert "mul" in prims and any(v is None for n in muls for v in n["inputs"])  # the constant leaf
    m = Fn(_stop_grad)
    x = tl.tensor(_x0(), requires_grad=True)
    m(x).sum().backward()
    w = torch.tensor(m.lin.weight.data, requires_grad=True)
    b = torch.tensor(m.lin.bias.data, requires_grad=True)
    xt = torch.tensor(_x0().astype(np.float32), requires_grad=True)
    h = xt @ w.T + b
    (h * h.detach()).sum().backward()
    assert np.allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert np.allclose(m.lin.weight.grad.numpy(), w.grad.numpy(), rtol=1e-5, atol=1e-6)
    h2 = xt.detach() @ w.detach().T + b.detach()  # the reference is not the derivative of h * h
    assert not np.allclose(w.grad.numpy(), 2 * (h2.T @ xt.detach()).numpy(), rtol=1e-3)


def test_input_independent_python_still_traces():
    """Python on shapes, on constants and on a tensor that depends on neither input nor weights
    (a lifted number, a shape-only mask) is not data: still traced."""
    def fn(m, h):
        mask = tl.tensor(np.array([[1.0, 0.0]]))
        scale = 2.0 if h.shape[-1] == 2 and float(mask.sum()) == 1.0 else 3.0
        return (h * mask * scale).tanh()

    graph, _, _ = trace(lambda: Fn(fn), (1, 2))
    assert [n["prim"] for n in graph["nodes"]][-1] == "tanh"


def _zoo_builds():
    from torchlean.zoo import cnn, fno, generative, pinn, ppo, sequence

    return {
        "cnn": (lambda: cnn.model("cnn"), (1, 1, 8, 8)),
        "resnet": (lambda: cnn.model("resnet"), (1, 1, 8, 8)),
        "lstm": (lambda: sequence.Forecaster("lstm", 32), (1, sequence.WINDOW, 2)),
        "gru": (lambda: sequence.Forecaster("gru", 32), (1, sequence.WINDOW, 2)),
        "autoencoder": (generative.autoencoder, (1, 64)),
        "vae": (lambda: generative.NegativeELBO(generative.VAE()), (1, 64 + generative.LATENT)),
        "fno": (fno.FNO1d, (1, fno.GRID)),
        "pinn": (lambda: pinn.Residual(pinn.model()), (1, 1)),
        "ppo": (ppo.policy_net, (1, 4)),
        "transformer": (None, None),
    }


@pytest.mark.parametrize("name", list(_zoo_builds()))
def test_zoo_gradient_claims_still_trace(name):
    """Every model the zoo's ``--certify`` proves the gradient of is not refused (none branches
    on data); its tape has nodes."""
    build, shape = _zoo_builds()[name]
    if name == "transformer":
        from torchlean.zoo import transformer

        net = transformer.model("sums")
        build = lambda: transformer.AfterLookup(transformer.model("sums"))  # noqa: E731
        shape = (1, net.block, net.tok.weight.shape[1])
    graph, tr, cases = trace(build, shape)
    assert graph["nodes"] and tr["grads"]


def _project(tmp_path: Path) -> Path:
    """A project whose @verified model branches on its input in Python; the traced branch applies
    a custom primitive at (1, 2), the other at (1, 1), where its VJP is wrong."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.torchlean]\nproofs = "proofs"\nmodules = ["branchy35"]\n')
    (tmp_path / "branchy35.py").write_text(textwrap.dedent('''
        import numpy as np
        import torchlean as tl
        from torchlean.runtime.rules import rule
        from torchlean.runtime.tensor import apply
        from torchlean.spec.primitives import primitive

        @primitive("cube35", "elementwise", 1, lambda s: s)
        def cube_spec(m, x):
            return np.vectorize(lambda v: v * v * v, otypes=[object])(x)

        def cube_vjp(xp, g, out, x):
            return (3 * g * x * x if x.size > 1 else 2 * g * x * x,)  # wrong at one element

        @tl.verified(name="cube35", meaning=lambda x: x * x * x, vjp=cube_vjp, shapes=[(2,)])
        def cube_kernel(xp, x):
            return x * x * x

        rule("cube35")(cube_kernel).vjp(cube_vjp)

        @tl.verified(input_shape=(1, 2))
        class Branchy(tl.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = tl.nn.Linear(2, 2)

            def forward(self, x):
                h = self.lin(x)
                if float(x.sum()) > 0:          # the seeded trace point has sum < 0
                    return apply("cube35", h[:, :1])
                return apply("cube35", h).sum(dim=1, keepdim=True)
    '''))
    return tmp_path


def _proofs(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f"{cwd}{os.pathsep}{ROOT}", OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torchlean.proofs", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_untraced_branch_is_wrong_against_torch(tmp_path):
    """The reference fact behind the hole: at an input on the other branch the runtime gradient
    of Branchy is not torch.autograd's (the traced point is on the right branch)."""
    torch = pytest.importorskip("torch")
    assert _x0().sum() < 0
    code = textwrap.dedent('''
        import numpy as np, torch, torchlean as tl, branchy35
        m = branchy35.Branchy()
        x = tl.tensor(np.array([[0.5, 0.5]]), requires_grad=True)
        m(x).sum().backward()
        w = torch.tensor(m.lin.weight.data, requires_grad=True)
        b = torch.tensor(m.lin.bias.data, requires_grad=True)
        xt = torch.tensor([[0.5, 0.5]], requires_grad=True)
        ((xt @ w.T + b)[:, :1] ** 3).sum().backward()
        print(float(np.abs(x.grad.numpy() - xt.grad.numpy()).max() / np.abs(xt.grad.numpy()).max()))
    ''')
    env = dict(os.environ, PYTHONPATH=f"{_project(tmp_path)}{os.pathsep}{ROOT}")
    got = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert abs(float(got.stdout) - 1 / 3) < 1e-5  # 2 g x^2 instead of 3 g x^2
    del torch


def test_proofs_discharge_and_check_refuse_the_branching_model(tmp_path):
    """End to end: ``discharge`` and ``check`` stop with one line naming the model (exit 2), never
    ``checked`` (the old code: discharge proved 13 obligations, check said 0 failed, exit 0)."""
    proj = _project(tmp_path)
    for cmd in ("discharge", "check"):
        got = _proofs(proj, cmd)
        assert got.returncode == 2, (cmd, got.stdout, got.stderr)
        assert "@verified model Branchy" in got.stderr and "float()" in got.stderr
        assert "0 failed" not in got.stdout


class RawBranch(nn.Module):
    """Chooses its primitive by Python on raw ``.data`` (of the input, or of a weight)."""

    def __init__(self, on: str):
        super().__init__()
        self.lin, self.on = nn.Linear(2, 2), on
        self.w00 = float(self.lin.weight.data[0, 0])

    def forward(self, x):
        h = self.lin(x)
        if self.on == "input":
            return h.tanh() if float(x.data.sum()) < 0 else h.sigmoid()
        return h.tanh() if float(self.lin.weight.data[0, 0]) == self.w00 else h.sigmoid()


@pytest.mark.parametrize("on", ["input", "weight"])
def test_a_branch_on_raw_data_is_caught_at_a_second_point(on):
    """Python reading ``.data`` (no tracer sees it) to choose a primitive: the second seeded point
    (another input, other weights) takes the other branch, and the two paths differ."""
    assert _x0().sum() < 0 < np.random.default_rng(1).standard_normal((1, 2)).sum()
    with pytest.raises(NoProofCase, match="another path"):
        trace(lambda: RawBranch(on), (1, 2))
