"""Autograd engine: values against PyTorch, the API's contracts, and the tape's order."""

import numpy as np
import pytest

import torchlean as tl
import torchlean.nn.functional as F
from torchlean.autograd import grad, no_grad, vjp

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _pair(shape, seed):
    a = np.random.default_rng(seed).standard_normal(shape)
    return tl.tensor(a, dtype="float64", requires_grad=True), torch.tensor(a, requires_grad=True)


def test_shared_subexpressions_and_reuse_match_torch():
    x, xt = _pair((4, 3), 0)
    w, wt = _pair((3, 5), 1)

    def f(lib, x, w):
        h = lib.tanh(x @ w)
        return (h * h + h * x.sum() - lib.exp(-h)).mean()

    y = f(F, x, w)
    yt = f(torch, xt, wt)
    y.backward()
    yt.backward()
    assert abs(y.item() - yt.item()) < 1e-13
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_backward_accumulates_into_leaves():
    x, _ = _pair((3,), 2)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 5.0))


def test_grad_returns_without_accumulating():
    x, xt = _pair((5,), 3)
    y = (F.sigmoid(x) * x).sum()
    (g,) = grad(y, x)
    (gt,) = torch.autograd.grad((torch.sigmoid(xt) * xt).sum(), xt)
    np.testing.assert_allclose(g.numpy(), gt.numpy(), rtol=1e-13)
    assert x.grad is None


def test_vjp_with_cotangent():
    a = np.random.default_rng(4).standard_normal((2, 3))
    v = np.random.default_rng(5).standard_normal((2, 3))
    primal, cot = tl.tensor(a, dtype="float64"), tl.tensor(v, dtype="float64")
    out, (g,) = vjp(lambda t: F.softplus(t) * t, primal, v=cot)
    at = torch.tensor(a, requires_grad=True)
    _, gt = torch.autograd.functional.vjp(lambda t: torch.nn.functional.softplus(t) * t, at, torch.tensor(v))
    np.testing.assert_allclose(g.numpy(), gt.numpy(), rtol=1e-12)


def test_no_grad_and_detach_cut_the_tape():
    x, _ = _pair((3,), 6)
    with no_grad():
        y = x * 2
    assert not y.requires_grad
    z = (x.detach() * x).sum()
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), x.numpy())


def test_nonscalar_backward_needs_a_gradient():
    x, _ = _pair((3,), 7)
    with pytest.raises(RuntimeError, match="single-element"):
        (x * 2).backward()


def test_unused_input_is_an_error_unless_allowed():
    x, _ = _pair((3,), 8)
    u, _ = _pair((3,), 9)
    y = (x * x).sum()
    with pytest.raises(RuntimeError, match="allow_unused"):
        grad(y, [x, u])
    assert grad(y, [x, u], allow_unused=True)[1] is None


def test_float32_stays_float32():
    x = tl.tensor(np.ones((2, 3)), requires_grad=True)
    y = F.gelu(x * 0.5 + 1) / 3 - F.log_softmax(x, 1)
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


def test_cuda_without_gpu_is_a_clear_error():
    if tl.cuda_available():
        pytest.skip("a GPU is present")
    with pytest.raises(tl.DeviceError, match="cuda"):
        tl.tensor([1.0], device="cuda")
