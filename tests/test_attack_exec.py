"""The counterexample search (verify/attack.py) on the graph executor (verify/executor.py), against
PyTorch and the exact checker's confirmation."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean.certificates.property import parse_property
from torchlean.verify import table
from torchlean.verify.attack import margins, search
from torchlean.verify.executor import GraphExec
from torchlean.verify.network import load_graph, load_spec
from torchlean.verify.table import load_target

torch = pytest.importorskip("torch")
DATA = Path(__file__).parent / "data/vnncomp2021"


def _cnn_pair():
    torch.manual_seed(0)
    tm = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.Tanh(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10), torch.nn.GELU(),
        torch.nn.Linear(10, 3),
    ).double()
    with torch.no_grad():  # non-trivial running statistics
        tm[1].running_mean.uniform_(-0.5, 0.5)
        tm[1].running_var.uniform_(0.5, 2.0)
    tm.eval()
    model = tl.nn.Sequential(
        tl.nn.Conv2d(1, 3, 3, padding=1), tl.nn.BatchNorm2d(3), tl.nn.Tanh(), tl.nn.MaxPool2d(2),
        tl.nn.Flatten(), tl.nn.Linear(3 * 4 * 4, 10), tl.nn.GELU(approximate="tanh"), tl.nn.Linear(10, 3),
    )
    from torchlean.bridge.torch_io import from_torch_state_dict

    from_torch_state_dict(model, tm.state_dict())
    model.eval()
    return tm, model


def test_forward_and_gradient_match_torch_on_a_cnn():
    tm, model = _cnn_pair()
    g = tl.trace(model, tl.zeros(1, 1, 8, 8, dtype=tl.float64))
    ex = GraphExec(g)
    assert ex.batchable and ex.n_in == 64 and ex.n_out == 3
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (5, 64))
    xt = torch.tensor(x.reshape(5, 1, 8, 8), requires_grad=True)
    tm[6] = torch.nn.GELU(approximate="tanh")
    yt = tm(xt)
    assert np.allclose(ex.forward(x), yt.detach().numpy(), rtol=1e-6, atol=1e-7)
    G = rng.standard_normal((5, 3))
    (yt * torch.tensor(G)).sum().backward()
    y, grad = ex.value_and_grad(x, lambda y: G)
    assert np.allclose(grad, xt.grad.numpy().reshape(5, 64), rtol=1e-5, atol=1e-7)


def test_unbatchable_graph_runs_point_by_point():
    # a reduction over axis 0 mixes the batch: the executor must notice and run per point
    def f(x):
        return (x * x).sum(0, keepdim=True) + x

    g = tl.trace(f, tl.zeros(1, 4, dtype=tl.float64))
    ex = GraphExec(g)
    assert not ex.batchable
    x = np.arange(8.0).reshape(2, 4)
    assert np.allclose(ex.forward(x), x * x + x)
    _, grad = ex.value_and_grad(x, lambda y: np.ones_like(y))
    assert np.allclose(grad, 2 * x + 1)


def test_search_finds_acas_counterexamples_the_checker_confirms():
    d = DATA / "acasxu"
    net_path, prop = d / "ACASXU_run2a_1_7_batch_2000.onnx", d / "prop_3.vnnlib"  # published: sat
    net, spec = load_target(net_path).bg, load_spec(prop)
    ex = GraphExec(load_graph(net_path))
    x = search(ex, spec, lambda q: table.confirm(net, spec, q))
    assert x is not None and table.confirm(net, spec, x)
    # and the float outputs there are unsafe too
    assert (margins(spec.regions[0], ex.forward(np.array([[float(v) for v in x]]))) <= 1e-6).any()


def test_search_returns_none_when_confirm_refuses():
    d = DATA / "acasxu"
    net_path = d / "ACASXU_run2a_1_7_batch_2000.onnx"
    spec = load_spec(d / "prop_3.vnnlib")
    seen = []
    assert search(GraphExec(load_graph(net_path)), spec, lambda q: seen.append(q) and False) is None
    assert seen and all(isinstance(v, Fraction) for v in seen[0])


def test_search_on_a_tanh_mlp_violation_is_real_in_torch():
    torch.manual_seed(3)
    tm = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    model = tl.nn.Sequential(tl.nn.Linear(2, 8), tl.nn.Tanh(), tl.nn.Linear(8, 2))
    from torchlean.bridge.torch_io import from_torch_state_dict

    from_torch_state_dict(model, tm.state_dict())
    g = tl.trace(model, tl.zeros(1, 2, dtype=tl.float64))
    # unsafe: Y_0 - Y_1 <= t, with t just above the minimum over the box found by dense sampling
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201)), -1).reshape(-1, 2)
    with torch.no_grad():
        d = (tm(torch.tensor(grid)) @ torch.tensor([1.0, -1.0], dtype=torch.float64)).numpy()
    t = float(d.min()) + 1e-3
    spec = parse_property(
        "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)"
        f"(assert (>= X_0 -1))(assert (<= X_0 1))(assert (>= X_1 -1))(assert (<= X_1 1))"
        f"(assert (<= (- Y_0 Y_1) {t!r}))"
    )

    def torch_confirm(q):
        with torch.no_grad():
            y = tm(torch.tensor([[float(v) for v in q]], dtype=torch.float64))[0]
        return float(y[0] - y[1]) <= t

    x = search(GraphExec(g), spec, torch_confirm, samples=50)
    assert x is not None and all(-1 <= v <= 1 for v in x) and torch_confirm(x)


def test_box_point_uses_exact_decimals_where_no_float32_fits():
    from torchlean.certificates.property import Region
    from torchlean.verify.attack import box_point

    region = Region((Fraction(1, 10), Fraction(0)), (Fraction(1, 10), Fraction(1)), ((),))
    q = box_point(np.array([0.1, 0.3]), region)
    assert q[0] == Fraction(1, 10)  # float32(0.1) and float64(0.1) both miss the one-point side
    assert q[1] == Fraction(float(np.float32(0.3)))
    assert all(lo <= v <= hi for v, lo, hi in zip(q, region.lo, region.hi))
