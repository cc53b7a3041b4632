"""Higher-order autograd (``grad(..., create_graph=True)``) against torch.autograd.grad on every
primitive with a second derivative (the scattering ones too: slice, concat, gather, embedding,
conv2d, max/avg pooling), on a tanh MLP's input Hessian, a small CNN's input-gradient penalty,
and through a physics-informed loss whose gradient needs third derivatives; a rule using an
operation with no recorded form is a one-line error."""

from __future__ import annotations

import numpy as np
import pytest

import torchlean as tl
from torchlean.nn import functional as F
from torchlean.runtime.rules import RULES, Rule
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


IMG = RNG.normal(size=(2, 2, 5, 6))
KER = RNG.normal(size=(4, 1, 3, 2))
TF = torch.nn.functional
IDX = np.array([[2, 0, 2], [1, 1, 3], [0, 3, 3]])
SCATTERING = {  # name: (torchlean, torch, input); every one differentiated twice through its VJP
    "slice": (lambda x: F.tanh(x[:, 1:4:2]) * x[:, 0:2], lambda x: torch.tanh(x[:, 1:4:2]) * x[:, 0:2], X),
    "concat": (lambda x: F.tanh(F.cat([x * x, F.exp(x[:, :2])], 1)),
               lambda x: torch.tanh(torch.cat([x * x, torch.exp(x[:, :2])], 1)), X),
    "gather": (lambda x: F.tanh(F.gather(x * x, 1, tl.tensor(IDX))) * 2,
               lambda x: torch.tanh(torch.gather(x * x, 1, torch.tensor(IDX))) * 2, X),
    "embedding": (lambda w: F.tanh(F.embedding(tl.tensor(IDX), w * w)),
                  lambda w: torch.tanh(TF.embedding(torch.tensor(IDX), w * w)), X.T.copy()),
    "conv2d": (lambda x: F.tanh(F.conv2d(x * x, tl.tensor(KER, dtype="float64"), stride=(2, 1), padding=1,
                                         dilation=(1, 2), groups=2)),
               lambda x: torch.tanh(TF.conv2d(x * x, torch.tensor(KER), stride=(2, 1), padding=1,
                                              dilation=(1, 2), groups=2)), IMG),
    "max_pool2d": (lambda x: F.tanh(F.max_pool2d(x * x, 3, 2, padding=1)),
                   lambda x: torch.tanh(TF.max_pool2d(x * x, 3, 2, padding=1)), IMG),
    "avg_pool2d": (lambda x: F.tanh(F.avg_pool2d(x * x, 3, 2, padding=1, count_include_pad=False)),
                   lambda x: torch.tanh(TF.avg_pool2d(x * x, 3, 2, padding=1, count_include_pad=False)), IMG),
    "avg_pool2d_pad": (lambda x: F.tanh(F.avg_pool2d(x * x, 2, 1, padding=1)),
                       lambda x: torch.tanh(TF.avg_pool2d(x * x, 2, 1, padding=1)), IMG),
}


@pytest.mark.parametrize("name", sorted(SCATTERING))
def test_second_derivative_matches_torch_scattering(name: str) -> None:
    ours, theirs, x = SCATTERING[name]
    (g1, h1), (g2, h2) = _hvp_ours(ours, x), _hvp_torch(theirs, x)
    assert np.allclose(g1[0], g2[0], atol=1e-10), name
    assert np.allclose(h1[0], h2[0], atol=1e-9), name
    assert np.abs(h2[0]).max() > 1e-3  # a second derivative that is not trivially zero


def test_conv_weight_second_derivative_matches_torch() -> None:
    """conv2d's VJP for the weight, differentiated again in both the weight and the input."""
    def run(lib, x, w):
        cf, tanh = (F.conv2d, F.tanh) if lib is tl else (TF.conv2d, torch.tanh)
        return tanh(cf(x, w * w, stride=2, padding=(1, 0), groups=2))
    (g1, h1), (g2, h2) = (_hvp_ours(lambda x, w: run(tl, x, w), IMG, KER),
                          _hvp_torch(lambda x, w: run(torch, x, w), IMG, KER))
    for a, b in zip(g1 + h1, g2 + h2):
        assert np.allclose(a, b, atol=1e-9)


def test_cnn_input_gradient_penalty_matches_torch() -> None:
    """conv -> relu -> max_pool -> linear; loss = CE + |d CE / d x|^2 (a gradient penalty), whose
    weight gradient differentiates the conv and max-pool VJPs once more."""
    tl.manual_seed(0)
    f64 = {"dtype": "float64"}
    net = tl.nn.Sequential(tl.nn.Conv2d(1, 3, 3, padding=1, **f64), tl.nn.Tanh(), tl.nn.MaxPool2d(2),
                           tl.nn.Flatten(), tl.nn.Linear(3 * 4 * 4, 5, **f64))
    tm = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.Tanh(), torch.nn.MaxPool2d(2),
                             torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5)).double()
    tm.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in net.state_dict().items()})
    xs, ys = RNG.normal(size=(3, 1, 8, 8)), np.array([0, 3, 4])

    x = tl.tensor(xs, dtype="float64", requires_grad=True)
    ce = F.cross_entropy(net(x), tl.tensor(ys))
    (gx,) = tl.autograd.grad(ce, x, create_graph=True)
    loss = ce + F.sum(gx * gx)
    loss.backward()
    xt = torch.tensor(xs, requires_grad=True)
    cet = TF.cross_entropy(tm(xt), torch.tensor(ys))
    (gxt,) = torch.autograd.grad(cet, xt, create_graph=True)
    lt = cet + (gxt * gxt).sum()
    lt.backward()
    assert abs(float(loss) - lt.item()) < 1e-12
    ours = dict(net.named_parameters())
    for k, p in tm.named_parameters():
        assert np.allclose(ours[k].grad.numpy(), p.grad.numpy(), atol=1e-10), k


def test_first_order_values_through_the_recorded_scatter() -> None:
    """create_graph=True gives the first-order gradient's values on the scattering rules too."""
    for name in ("slice", "conv2d", "max_pool2d", "gather"):
        f, _, x0 = SCATTERING[name]
        x = tl.tensor(x0, dtype="float64", requires_grad=True)
        a = tl.autograd.grad(F.sum(f(x)), x)[0].numpy()
        b = tl.autograd.grad(F.sum(f(x)), x, create_graph=True)[0].numpy()
        assert np.allclose(a, b, rtol=0, atol=1e-15), name


def test_unsupported_rule_is_one_line() -> None:
    """A rule that calls an array operation the recorded namespace lacks fails in one line."""
    saved = RULES["tanh"]
    RULES["tanh"] = Rule("tanh", saved.forward, lambda xp, g, out, x: (xp.cosh(x) ** -2 * g,))
    try:
        x = tl.tensor(X, dtype="float64", requires_grad=True)
        out = F.sum(F.tanh(x))
        with pytest.raises(HigherOrderUnsupported, match="create_graph=True: a VJP rule uses xp.cosh") as e:
            tl.autograd.grad(out, x, create_graph=True)
        assert "\n" not in str(e.value)
    finally:
        RULES["tanh"] = saved
