"""Audit audit53: ``@verified(..., proof="monolithic")`` and the symbolic backend it runs on
(TRUST_BOUNDARIES.md, "Audit audit53").

Hole found (the tests marked below fail on the code before the audit): the monolithic obligation
ran the model's forward with every rule's kernel replaced by its spec meaning, so the tape's VJPs
read the spec's values while the runtime's read its kernels' values; a project primitive whose
kernel is right at its ``@verified`` shapes and wrong at the model's was "checked" end to end
while the runtime gradient differed from torch.autograd. Now the kernel runs too, on the symbolic
backend at the model's real shapes, and each node's (kernel entry = spec entry) is part of the
claim.

Held (pass on both codes, real assertions): the symbolic tape gradient, the derivative of the spec
forward and the numpy runtime gradient agree with torch.autograd (float64) at random points for
broadcasting, >2-D transposes and permutes, reshapes, reductions over negative axes with keepdim,
softmax over axis 0, pow with negative and fractional exponents, slices with steps, conv2d with
stride/padding/groups/dilation, pooling, gather, embedding, batch/layer norm; at ties the runtime
takes the documented subgradients (maximum: the first argument).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy

torch = pytest.importorskip("torch")

import torchlean as tl  # noqa: E402
import torchlean.runtime.functional as F  # noqa: E402
from torchlean import nn  # noqa: E402
from torchlean.proofs.autograd import exact_floats  # noqa: E402
from torchlean.proofs.verified import spec_rules  # noqa: E402
from torchlean.runtime.symbolic import symbols  # noqa: E402
from torchlean.runtime.tensor import Tensor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TF = torch.nn.functional


# -- the hole, end to end ------------------------------------------------------------------------

MODELS = '''\
import numpy as np
import sympy
import torchlean as tl
from torchlean import nn
from torchlean.runtime.rules import rule
from torchlean.runtime.tensor import apply
from torchlean.spec.primitives import primitive


def _exp(x):
    return np.vectorize(sympy.exp, otypes=[object])(x)


@primitive("myexp53", "elementwise", 1, lambda s: s)
def myexp_spec(m, x):
    return _exp(x)


def myexp_vjp(xp, g, out, x):
    return (g * out,)  # d exp = exp: the VJP reads the forward's value


@tl.verified(name="myexp53", meaning=_exp, vjp=myexp_vjp, shapes=[(1,)])
def myexp_kernel(xp, x):
    return KERNEL


rule("myexp53")(myexp_kernel).vjp(myexp_vjp)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return apply("myexp53", self.fc(x))


tl.verified(input_shape=(1, 3), proof="monolithic")(Net)
'''
#: right at shape (1,) (the @verified case), wrong along a longer last axis (reads its neighbour)
WRONG = "xp.exp(xp.roll(x, 1, axis=-1))"
RIGHT = "xp.exp(x)"


def _run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(project)]),
           "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=600)


def _project(root: Path, kernel: str) -> Path:
    (root / "pkg53").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[tool.torchlean]\nproofs = "proofs"\nmodules = ["pkg53.models"]\n')
    (root / "pkg53" / "__init__.py").write_text("")
    (root / "pkg53" / "models.py").write_text(MODELS.replace("KERNEL", kernel))
    return root


REFERENCE = '''\
import json, sys
import numpy as np, torch
import torchlean as tl
from pkg53.models import Net
tl.manual_seed(0)
m = Net()
x = tl.tensor(np.array([[0.5, -1.0, 2.0]], np.float32), requires_grad=True)
m(x).sum().backward()
W = torch.tensor(m.fc.weight.numpy(), dtype=torch.float64, requires_grad=True)
b = torch.tensor(m.fc.bias.numpy(), dtype=torch.float64, requires_grad=True)
xt = torch.tensor(x.numpy(), dtype=torch.float64, requires_grad=True)
torch.exp(xt @ W.T + b).sum().backward()
print(json.dumps([np.abs(x.grad.numpy() - xt.grad.numpy()).max().item(),
                  np.abs(m.fc.weight.grad.numpy() - W.grad.numpy()).max().item()]))
'''


def _grad_error(project: Path) -> float:
    r = _run(project, "-c", REFERENCE)
    assert r.returncode == 0, r.stderr[-2000:]
    return max(float(v) for v in r.stdout.strip().splitlines()[-1].strip("[]").split(","))


def test_wrong_kernel_at_the_models_shape_is_not_checked(tmp_path):
    """Fails on the old code: discharge proved model.Net and check reported every claim checked."""
    p = _project(tmp_path / "wrong", WRONG)
    assert _grad_error(p) > 0.1  # the reference fact: the runtime gradient is not torch's
    r = _run(p, "-m", "torchlean.proofs", "discharge", "-q")
    assert "refuted" in r.stdout and " 1 refuted" in r.stdout, (r.stdout[-2000:], r.stderr[-2000:])
    r = _run(p, "-m", "torchlean.proofs", "check")
    assert r.returncode != 0, r.stdout[-2000:]
    assert " 0 failed" not in r.stdout and "model.Net" in r.stdout


def test_right_kernel_is_still_proved(tmp_path):
    p = _project(tmp_path / "right", RIGHT)
    assert _grad_error(p) < 1e-5
    r = _run(p, "-m", "torchlean.proofs", "discharge", "-q")
    assert r.returncode == 0 and " 0 refuted" in r.stdout, (r.stdout[-2000:], r.stderr[-2000:])
    r = _run(p, "-m", "torchlean.proofs", "check")
    assert r.returncode == 0 and " 0 failed" in r.stdout, (r.stdout[-2000:], r.stderr[-2000:])


def _obligation_text(kernel: str, tmp_path: Path) -> str:
    """model.Net's statement, derived in a subprocess (the primitive registers globally)."""
    p = _project(tmp_path / "text", kernel)
    code = ("import pkg53.models\nfrom torchlean.proofs.obligation import SOURCES\n"
            "print(next(iter(SOURCES['verified.model.Net']())).smtlib)")
    r = _run(p, "-c", code)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_statement_names_the_kernel_entries(tmp_path):
    """Fails on the old code: the statement held only gradient equations (no kernel term)."""
    text = _obligation_text(WRONG, tmp_path)
    # kernel entry 0 reads pre-activation 2 (the roll); the spec's reads pre-activation 0
    assert "(= (tl_exp (+ w1_2" in text, text[:3000]


# -- held: the symbolic backend against numpy and torch ---------------------------------------------

class _M(nn.Module):
    def __init__(self, f, shapes):
        super().__init__()
        self.f = f
        self.ws = [nn.Parameter(tl.tensor(np.zeros(s, dtype=np.float32))) for s in shapes]
        for i, w in enumerate(self.ws):
            setattr(self, f"w{i}", w)

    def forward(self, x):
        return self.f(x, *self.ws)


def _symbolic(f, shapes, xshape):
    """(tape gradients, derivatives of the spec forward, leaf symbols) as in ``_model_obligations``."""
    with exact_floats():
        model = _M(f, shapes)
        params = list(model.parameters())
        for k, p in enumerate(params):
            p.data, p.requires_grad, p.grad = symbols(f"w{k}", tuple(p.shape)), True, None
        x = Tensor(symbols("x", xshape), requires_grad=True)
        pairs: list = []  # (kernel entry, spec entry), as the monolithic claim states them
        with spec_rules(pairs):
            out = model(x)
        g = symbols("g", tuple(out.shape))
        out.backward(Tensor(g))
        loss = sum((g[i] * out.data[i] for i in np.ndindex(out.shape)), sympy.Integer(0))
        rows = []
        for t in [x, *params]:
            tape = np.asarray(t.grad.data, dtype=object)
            der = np.empty(t.shape, dtype=object)
            for idx in np.ndindex(tuple(t.shape)):
                der[idx] = sympy.diff(loss, t.data[idx])
            rows.append((t.data, tape, der))
        return rows, tuple(out.shape), pairs


def _agree(f, tf, ws, x, seed=0):
    rng = np.random.default_rng(seed)
    rows, oshape, pairs = _symbolic(f, [w.shape for w in ws], x.shape)
    gval = rng.normal(size=oshape).round(2)
    sub = {sympy.Symbol("g_" + "_".join(map(str, i)), real=True): sympy.Rational(str(gval[i]))
        for i in np.ndindex(oshape)}
    for (syms, _, _), val in zip(rows, [x, *ws]):
        sub.update({syms[i]: sympy.Rational(str(val[i])) for i in np.ndindex(syms.shape)})
    for a, b in pairs:  # the kernels ran at the real shapes and agree with the spec here
        assert abs(float(sympy.N((a - b).subs(sub)))) < 1e-12, (a, b)
    model = _M(f, [w.shape for w in ws])
    for p, v in zip(model.parameters(), ws):
        p.data = np.asarray(v, np.float32)
    xr = tl.tensor(np.asarray(x, np.float32), requires_grad=True)
    model(xr).backward(tl.tensor(np.asarray(gval, np.float32)))
    runtime = [xr.grad.numpy()] + [p.grad.numpy() for p in model.parameters()]
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in ws]
    tf(xt, *wt).backward(torch.tensor(gval, dtype=torch.float64))
    ref = [xt.grad.numpy()] + [w.grad.numpy() for w in wt]
    for (_, tape, der), r, t in zip(rows, runtime, ref):
        tv = np.array([float(sympy.N(e.subs(sub))) for e in tape.flat]).reshape(tape.shape)
        dv = np.array([float(sympy.N(e.subs(sub))) for e in der.flat]).reshape(der.shape)
        np.testing.assert_allclose(tv, t, atol=1e-9)
        np.testing.assert_allclose(dv, t, atol=1e-9)
        np.testing.assert_allclose(r, t, atol=2e-4, rtol=1e-4)


_R = np.random.default_rng(53)


def _r(*s):
    return _R.normal(size=s).round(2)


CASES = {
    "broadcast": (lambda x, w: (x + w) * w - x / (w * w + 1), lambda x, w: (x + w) * w - x / (w * w + 1),
                  [_r(1, 3)], _r(2, 1, 3)),
    "matmul_batched": (lambda x, w: F.matmul(w, x), lambda x, w: torch.matmul(w, x),
        [_r(2, 1, 2, 3)], _r(2, 3, 2)),
    "permute": (lambda x, w: F.permute(x, 2, 0, 1) * w, lambda x, w: x.permute(2, 0, 1) * w,
        [_r(4, 2, 3)], _r(2, 3, 4)),
    "transpose3": (lambda x, w: F.transpose(x, 0, 2) * w, lambda x, w: x.transpose(0, 2) * w,
        [_r(4, 3, 2)], _r(2, 3, 4)),
    "reshape_after_transpose": (lambda x, w: F.reshape(F.transpose(x, 0, 1), 3, 2) * w,
                                lambda x, w: x.transpose(0, 1).reshape(3, 2) * w, [_r(3, 2)], _r(2, 3)),
    "sum_neg_axes": (lambda x, w: F.sum(x * w, dim=(-1, 0), keepdim=True),
                     lambda x, w: (x * w).sum(dim=(-1, 0), keepdim=True), [_r(2, 3, 2)], _r(2, 3, 2)),
    "amax_axis0": (lambda x, w: F.amax(x * w, dim=0, keepdim=True),
        lambda x, w: (x * w).amax(dim=0, keepdim=True),
                   [_r(3, 2)], _r(3, 2)),
    "softmax_axis0": (lambda x, w: F.softmax(x * w, dim=0), lambda x, w: torch.softmax(x * w, dim=0),
        [_r(3, 2)], _r(3, 2)),
    "pow_negative": (lambda x, w: (x * x + w * w + 1) ** -1.5, lambda x, w: (x * x + w * w + 1) ** -1.5,
        [_r(2)], _r(2)),
    "slice_step": (lambda x, w: x[:, 1::2] * w, lambda x, w: x[:, 1::2] * w, [_r(2, 2)], _r(2, 4)),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
        lambda x, w, b: TF.conv2d(x, w, b, stride=2, padding=1),
               [_r(2, 1, 2, 2), _r(2)], _r(1, 1, 3, 3)),
    "conv2d_groups": (lambda x, w: F.conv2d(x, w, None, padding=(0, 1), groups=2),
                      lambda x, w: TF.conv2d(x, w, None, padding=(0, 1), groups=2),
                          [_r(2, 1, 2, 2)], _r(1, 2, 3, 3)),
    "max_pool_padded": (lambda x, w: F.max_pool2d(x * w, 2, stride=2, padding=1),
                        lambda x, w: TF.max_pool2d(x * w, 2, stride=2, padding=1),
                            [_r(1, 1, 3, 3)], _r(1, 1, 3, 3)),
    "gather": (lambda x, w: F.gather(x * w, 1, tl.tensor(np.array([[2, 0], [1, 1]]))),
               lambda x, w: torch.gather(x * w, 1, torch.tensor([[2, 0], [1, 1]])), [_r(2, 3)], _r(2, 3)),
    "batch_norm_train": (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                         lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True),
                             [_r(2), _r(2)], _r(3, 2)),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (2, 3), w, b),
        lambda x, w, b: TF.layer_norm(x, (2, 3), w, b),
                   [_r(2, 3), _r(2, 3)], _r(1, 2, 3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_symbolic_tape_matches_numpy_and_torch(case):
    f, tf, ws, x = CASES[case]
    _agree(f, tf, ws, x)


def test_maximum_ties_take_the_documented_subgradient():
    """At a tie the runtime (and the symbolic tape, and sympy's derivative) give the cotangent to the
    first argument (TRUST_BOUNDARIES "Domains": documented, not torch's even split)."""
    rows, _, _ = _symbolic(lambda x, w: F.maximum(x, w), [(1, 3)], (1, 3))
    sub = {s: 0 for s in rows[0][0].flat} | {s: v for s, v in zip(rows[1][0].flat, (0, 1, -1))}
    sub |= {sympy.Symbol(f"g_0_{i}", real=True): 1 for i in range(3)}
    assert [int(e.subs(sub)) for e in rows[0][1].flat] == [1, 0, 1]
    assert [int(e.subs(sub)) for e in rows[0][2].flat] == [1, 0, 1]
