"""Audit audit45: the PyTorch bridge (``bridge.from_torch``) against torch itself.

The hole: ``from_torch`` rebuilds an ``nn.Sequential`` layer by layer from a table keyed by the
class *name*, and several builders dropped attributes. Each case below was converted silently into
another function, and ``tl.verify.bounds`` / ``tl.verify.robustness`` then made claims that torch's
own outputs contradict (end to end, on the old code):

- a subclass of ``nn.Sequential`` with its own ``forward`` was rebuilt as a plain Sequential;
- a user class named like a torch layer (``class Linear(nn.Linear)`` with its own forward) was
  read as torch's layer; forward hooks and pre-hooks on a layer or the Sequential were dropped
  (robustness said "verified" for label 0 while torch's argmax is 1 at every point of the box);
- ``Softplus(beta, threshold)`` became ``Softplus()``; ``AvgPool2d(divisor_override=d)`` a mean;
- ``Softmax()`` / ``LogSoftmax()`` (dim=None, torch's implicit rank-dependent dim: 1 on 4-D,
  0 on 3-D input) became dim=-1;
- a float64 BatchNorm was built in float32, rounding its running statistics (5e-8 off torch);
- the rebuild walked ``children()`` (a shared ReLU used last was dropped) and renamed the layers
  0, 1, ... (a Sequential keyed "1", "0" swapped its layers' weights).

Fixed in ``bridge/torch_io.py`` (classes matched by identity; hooked modules and subclasses go
through ``torch.export``, which runs them as called; the attributes refused in one line or kept).
Every test states the end-to-end property: ``from_torch`` refuses, or the result is torch's function
(torch's outputs at sampled points of the box lie inside the verified bounds).
"""

from __future__ import annotations

import numpy as np
import pytest

import torchlean as tl
from torchlean.bridge import from_torch
from torchlean.bridge.torch_io import TorchInteropError

torch = pytest.importorskip("torch")
N = torch.nn


def _torch_samples(tm, x: np.ndarray, eps: float, n: int = 200, seed: int = 0) -> np.ndarray:
    """torch's outputs at the box's corners-ish and uniform points (float64 model: exact enough)."""
    rng = np.random.default_rng(seed)
    pts = x + eps * rng.choice([-1.0, 1.0], size=(n, *x.shape[1:]))
    pts = np.concatenate([pts, x + eps * rng.uniform(-1, 1, size=(n, *x.shape[1:]))])
    with torch.no_grad():
        return np.concatenate([tm(torch.from_numpy(p[None])).numpy() for p in pts])


def _refused_or_bounded(tm, x: np.ndarray, eps: float, example: bool = False) -> str:
    """'refused' when from_torch refuses; else asserts that torch's sampled outputs are inside the
    verified bounds of the converted model and returns 'bounded'."""
    tm = tm.double().eval()
    try:
        model = from_torch(tm, example=torch.from_numpy(x)) if example else from_torch(tm)
    except TorchInteropError:
        return "refused"
    b = tl.verify.bounds(model.eval(), x, eps)
    ys = _torch_samples(tm, x, eps).reshape(-1, b.lower.size)
    slack = 1e-9 * (1 + np.abs(ys))
    assert np.all(ys >= b.lower.reshape(-1) - slack), "torch below the lower bound"
    assert np.all(ys <= b.upper.reshape(-1) + slack), "torch above the upper bound"
    return "bounded"


class _ScaledSeq(N.Sequential):
    def forward(self, x):
        return super().forward(x) * 2 - 3


class Linear(N.Linear):  # a user class with torch's layer name and its own forward
    def forward(self, x):
        return super().forward(x) + 5


def _x(*shape: int) -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, size=(1, *shape))


def test_sequential_subclass_with_own_forward_is_not_a_plain_sequential():
    torch.manual_seed(0)
    tm = _ScaledSeq(N.Linear(4, 3), N.ReLU(), N.Linear(3, 2))
    assert _refused_or_bounded(tm, _x(4), 0.1) == "refused"  # no example: needs torch.export
    assert _refused_or_bounded(tm, _x(4), 0.1, example=True) == "bounded"


def test_a_layer_class_is_matched_by_identity_not_by_name():
    torch.manual_seed(0)
    tm = N.Sequential(Linear(4, 2))
    assert _refused_or_bounded(tm, _x(4), 0.1) == "refused"
    assert _refused_or_bounded(tm, _x(4), 0.1, example=True) == "bounded"


@pytest.mark.parametrize("where", ["layer", "pre", "sequential"])
def test_forward_hooks_are_not_dropped(where):
    torch.manual_seed(0)
    tm = N.Sequential(N.Linear(4, 3), N.Tanh(), N.Linear(3, 2))
    if where == "layer":
        h = tm[2].register_forward_hook(lambda m, i, o: -o)
    elif where == "pre":
        h = tm[1].register_forward_pre_hook(lambda m, i: (i[0] * 3 + 1,))
    else:
        h = tm.register_forward_hook(lambda m, i, o: o * 4)
    try:
        assert _refused_or_bounded(tm, _x(4), 0.1) == "refused"
        assert _refused_or_bounded(tm, _x(4), 0.1, example=True) == "bounded"
    finally:
        h.remove()
    assert _refused_or_bounded(tm, _x(4), 0.1) == "bounded"  # hook removed: the plain path again


def test_robustness_verdict_of_a_hooked_model_is_torchs():
    """Old code: "verified" for label 0 while torch's argmax is 1 on the whole box."""
    tm = N.Sequential(N.Linear(2, 2)).double().eval()
    with torch.no_grad():
        tm[0].weight.copy_(torch.eye(2, dtype=torch.float64))
        tm[0].bias.copy_(torch.tensor([5.0, 0.0], dtype=torch.float64))
    h = tm[0].register_forward_hook(lambda m, i, o: -o)
    try:
        x = np.zeros((1, 2))
        with torch.no_grad():
            assert int(tm(torch.from_numpy(x)).argmax()) == 1
        with pytest.raises(TorchInteropError):
            from_torch(tm)
        r = tl.verify.robustness(from_torch(tm, example=torch.from_numpy(x)).eval(), x, 0.1, label=0)
        assert r.verdict == "falsified"
    finally:
        h.remove()


@pytest.mark.parametrize("kw", [{"beta": 2.0}, {"threshold": 0.5}, {"beta": 0.5, "threshold": 5.0}])
def test_softplus_beta_and_threshold(kw):
    tm = N.Sequential(N.Linear(3, 3), N.Softplus(**kw))
    torch.manual_seed(0)
    assert _refused_or_bounded(tm, _x(3) * 2, 0.2) in ("refused", "bounded")
    assert _refused_or_bounded(N.Sequential(N.Softplus()), _x(3), 0.2) == "bounded"


def test_avg_pool_divisor_override():
    torch.manual_seed(0)
    tm = N.Sequential(N.AvgPool2d(2, divisor_override=1), N.Flatten(), N.Linear(4, 2))
    assert _refused_or_bounded(tm, _x(1, 4, 4) + 1, 0.05) in ("refused", "bounded")
    tm = N.Sequential(N.AvgPool2d(2, divisor_override=3), N.Flatten(), N.Linear(4, 2))
    assert _refused_or_bounded(tm, _x(1, 4, 4) + 1, 0.05) in ("refused", "bounded")


@pytest.mark.filterwarnings("ignore:Implicit dimension")
@pytest.mark.parametrize("cls", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape", [(3, 2, 2), (2, 3)])
def test_softmax_implicit_dim(cls, shape):
    """dim=None is dim 1 on 4-D input (channels) and 0 on 3-D input, never -1 there."""
    tm = N.Sequential(getattr(N, cls)())
    assert _refused_or_bounded(tm, _x(*shape), 0.1) in ("refused", "bounded")
    explicit = N.Sequential(getattr(N, cls)(dim=1))
    assert _refused_or_bounded(explicit, _x(3, 2, 2), 0.1) == "bounded"


def test_float64_batch_norm_keeps_its_bits():
    torch.manual_seed(0)
    for affine in (True, False):
        tm = N.Sequential(N.Linear(3, 3), N.BatchNorm1d(3, affine=affine)).double().eval()
        with torch.no_grad():
            tm[1].running_mean.copy_(torch.tensor([0.1, -0.3, 0.7], dtype=torch.float64))
            tm[1].running_var.copy_(torch.tensor([0.3, 1.1, 2.9], dtype=torch.float64))
        model = from_torch(tm)
        for k, v in tm.state_dict().items():
            got = model.state_dict()[k]
            assert got.dtype == v.numpy().dtype and np.array_equal(got, v.numpy()), k
        # at eps = 0 the bounds are the exact value; torch's float64 run is within 1e-15 of it
        assert _refused_or_bounded(tm, _x(3), 0.0) == "bounded"


@pytest.mark.parametrize("make", [
    lambda: N.Sequential(N.Conv2d(1, 2, 3, padding=2, dilation=2, groups=1), N.ReLU(), N.Flatten(),
                         N.Linear(32, 2)),
    lambda: N.Sequential(N.Conv2d(2, 4, 3, padding=(1, 2), dilation=(1, 2), groups=2, stride=(2, 1)),
                         N.Flatten(), N.Linear(32, 2)),
    lambda: N.Sequential(N.MaxPool2d(3, 2, 1), N.Flatten(), N.LeakyReLU(-1.5), N.Linear(8, 2)),
    lambda: N.Sequential(N.AvgPool2d(3, 1, 1, count_include_pad=False), N.Flatten(), N.GELU("tanh"),
                         N.Linear(32, 2), N.Softmax(dim=1)),
])
def test_supported_layers_are_torchs_function(make):
    """What the plain path keeps is torch's function (bounds contain torch's outputs)."""
    torch.manual_seed(0)
    tm = make()
    cin = tm[0].in_channels if isinstance(tm[0], N.Conv2d) else 2
    assert _refused_or_bounded(tm, _x(cin, 4, 4), 0.05) == "bounded"


def test_sequential_runs_its_modules_in_order_with_repeats_and_names():
    """forward runs ``_modules`` in insertion order, a repeated instance each time; ``children()``
    skips repeats (a shared ReLU at the end was dropped) and the rebuild renamed layers 0, 1, ...
    (keys "1", "0" in that order loaded each layer's weights into the other)."""
    from collections import OrderedDict

    torch.manual_seed(0)
    act = N.ReLU()
    for tm in (N.Sequential(N.Linear(3, 4), act, N.Linear(4, 2), act),
               N.Sequential(OrderedDict([("1", N.Linear(3, 3)), ("0", N.Linear(3, 2))])),
               N.Sequential(OrderedDict([("fc1", N.Linear(3, 3)), ("act", N.Tanh()),
                                         ("fc2", N.Linear(3, 2))]))):
        assert _refused_or_bounded(tm, _x(3) * 2, 0.5) == "bounded"
    lin = N.Linear(3, 3)
    assert _refused_or_bounded(N.Sequential(lin, N.Tanh(), lin), _x(3), 0.5) == "bounded"
