"""Higher-order autograd (``grad(..., create_graph=True)``) against torch.autograd.grad on every
primitive with a second derivative, on a tanh MLP's input Hessian, and through a physics-informed
loss whose gradient needs third derivatives; unsupported rules are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

import torchlean as tl
from torchlean.nn import functional as F
from torchlean.runtime.tape_ns import HigherOrderUnsupported

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)
X = RNG.uniform(0.2, 1.5, size=(3, 4))  # positive: log, sqrt, pow are smooth there
Y = RNG.uniform(0.2, 1.5, size=(3, 4))
W = RNG.normal(size=(4, 2))

UNARY = {  # name: (torchlean, torch)
    "tanh": (F.tanh, torch.tanh), "sigmoid": (F.sigmoid, torch.sigmoid), "exp": (F.exp, torch.exp),
    "log": (F.log, torch.log), "sqrt": (F.sqrt, torch.sqrt), "erf": (F.erf, torch.erf),
    "softplus": (F.softplus, torch.nn.functional.softplus), "silu": (F.silu, torch.nn.functional.silu),
    "gelu": (F.gelu, lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
    "neg": (lambda x: -x, lambda x: -x), "pow3": (lambda x: x ** 3, lambda x: x ** 3),
    "relu": (F.relu, torch.relu), "abs": (F.abs, torch.abs),
    "softmax": (lambda x: F.softmax(x, -1), lambda x: torch.softmax(x, -1)),
    "log_softmax": (lambda x: F.log_softmax(x, -1), lambda x: torch.log_softmax(x, -1)),
    "sum_sq": (lambda x: F.sum(x * x, 1), lambda x: (x * x).sum(1)),
    "mean_exp": (lambda x: F.mean(F.exp(x), 0, keepdim=True),
                 lambda x: torch.exp(x).mean(0, keepdim=True)),
    "amax": (lambda x: F.amax(x * x, 1), lambda x: (x * x).amax(1)),
    "matmul": (lambda x: F.tanh(x @ tl.tensor(W)), lambda x: torch.tanh(x @ torch.tensor(W))),
    "reshape_t": (lambda x: F.tanh(F.transpose(F.reshape(x, (4, 3)), 0, 1)),
                  lambda x: torch.tanh(x.reshape(4, 3).transpose(0, 1))),
    "bcast": (lambda x: F.exp(F.broadcast_to(F.sum(x, 0, keepdim=True), (3, 4)) * x),
              lambda x: torch.exp(x.sum(0, keepdim=True).broadcast_to(3, 4) * x)),
    "max_min": (lambda x: F.maximum(x * x, 1.0) + F.minimum(F.exp(x), 2.0),
                lambda x: torch.maximum(x * x, torch.tensor(1.0, dtype=x.dtype))
                + torch.minimum(torch.exp(x), torch.tensor(2.0, dtype=x.dtype))),
}
BINARY = {
    "mul": (lambda a, b: a * b * a, lambda a, b: a * b * a), "div": (lambda a, b: a / b, lambda a, b: a / b),
    "sub": (lambda a, b: (a - b) ** 2, lambda a, b: (a - b) ** 2),
    "add": (lambda a, b: F.tanh(a + b), lambda a, b: torch.tanh(a + b)),
}


def _hvp_ours(f, *xs):
    ins = [tl.tensor(x, dtype="float64", requires_grad=True) for x in xs]
    out = f(*ins)
    v = tl.tensor(np.cos(np.arange(np.prod(out.shape))).reshape(out.shape), dtype="float64")
    gs = tl.autograd.grad(out, ins, grad_outputs=v, create_graph=True)
    s = sum(F.sum(g * F.tanh(i)) for g, i in zip(gs, ins))  # a scalar of the first derivatives
    return [g.numpy() for g in gs], [g.numpy() for g in tl.autograd.grad(s, ins, allow_unused=True)]


def _hvp_torch(f, *xs):
    ins = [torch.tensor(x, requires_grad=True) for x in xs]
    out = f(*ins)
    v = torch.tensor(np.cos(np.arange(out.numel())).reshape(out.shape))
    gs = torch.autograd.grad(out, ins, grad_outputs=v, create_graph=True)
    s = sum((g * torch.tanh(i)).sum() for g, i in zip(gs, ins))
    return [g.detach().numpy() for g in gs], [g.numpy() for g in torch.autograd.grad(s, ins)]


@pytest.mark.parametrize("name", sorted(UNARY))
def test_second_derivative_matches_torch_unary(name: str) -> None:
    ours, theirs = UNARY[name]
    (g1, h1), (g2, h2) = _hvp_ours(ours, X), _hvp_torch(theirs, X)
    assert np.allclose(g1[0], g2[0], atol=1e-10)
    assert np.allclose(h1[0], h2[0], atol=1e-9), name


@pytest.mark.parametrize("name", sorted(BINARY))
def test_second_derivative_matches_torch_binary(name: str) -> None:
    ours, theirs = BINARY[name]
    (g1, h1), (g2, h2) = _hvp_ours(ours, X, Y), _hvp_torch(theirs, X, Y)
    for a, b in zip(g1 + h1, g2 + h2):
        assert np.allclose(a, b, atol=1e-9), name


def test_mlp_input_laplacian_and_pinn_loss_gradient() -> None:
    """u(x) = MLP(x); residual u''(x) - f(x); d(mean residual^2)/d(weights) needs third derivatives."""
    tl.manual_seed(0)
    f64 = {"dtype": "float64"}
    net = tl.nn.Sequential(tl.nn.Linear(1, 8, **f64), tl.nn.Tanh(), tl.nn.Linear(8, 8, **f64), tl.nn.Tanh(),
                           tl.nn.Linear(8, 1, **f64))
    tm = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8), torch.nn.Tanh(),
                             torch.nn.Linear(8, 1)).double()
    tm.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in net.state_dict().items()})
    xs = np.linspace(0, 1, 7).reshape(-1, 1)

    x = tl.tensor(xs, dtype="float64", requires_grad=True)
    u = net(x)
    ones = tl.tensor(np.ones_like(xs), dtype="float64")
    (du,) = tl.autograd.grad(u, x, grad_outputs=ones, create_graph=True)
    (d2u,) = tl.autograd.grad(du, x, grad_outputs=ones, create_graph=True)
    loss = F.mean((d2u - F.exp(x)) ** 2)
    loss.backward()

    xt = torch.tensor(xs, requires_grad=True)
    ut = tm(xt)
    (dut,) = torch.autograd.grad(ut, xt, torch.ones_like(ut), create_graph=True)
    (d2ut,) = torch.autograd.grad(dut, xt, torch.ones_like(dut), create_graph=True)
    lt = ((d2ut - torch.exp(xt)) ** 2).mean()
    lt.backward()
    assert np.allclose(d2u.numpy(), d2ut.detach().numpy(), atol=1e-12)
    assert abs(float(loss) - lt.item()) < 1e-12
    ours = dict(net.named_parameters())
    for k, p in tm.named_parameters():
        if p.grad is None:  # the last bias: u'' does not depend on it
            assert ours[k].grad is None or not ours[k].grad.numpy().any(), k
            continue
        assert np.allclose(ours[k].grad.numpy(), p.grad.numpy(), atol=1e-10), k


def test_first_order_results_are_unchanged_by_the_flag() -> None:
    x = tl.tensor(X, dtype="float64", requires_grad=True)
    a = tl.autograd.grad(F.sum(F.tanh(x) * x), x)[0].numpy()
    b = tl.autograd.grad(F.sum(F.tanh(x) * x), x, create_graph=True)[0].numpy()
    assert np.array_equal(a, b)


def test_unsupported_rule_is_one_line() -> None:
    x = tl.tensor(X, dtype="float64", requires_grad=True)
    out = F.sum(x[:, 1:3] ** 2)
    with pytest.raises(HigherOrderUnsupported, match="create_graph=True: the VJP of 'slice'"):
        tl.autograd.grad(out, x, create_graph=True)
