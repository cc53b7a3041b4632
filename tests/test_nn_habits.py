"""PyTorch habits in ``nn``, each against torch (CPU) as the reference: ModuleList/ModuleDict
(torch's state_dict names), nn.init (torch's gains, fans and defaults; seeded), BatchNorm1d
(train/eval, running statistics), Conv1d (stride/padding/dilation/groups, gradients) and
TransformerEncoderLayer's defaults."""

import inspect
import math

import numpy as np
import pytest

import torchlean as tl
import torchlean.nn as nn
import torchlean.nn.functional as F
from torchlean.spec import ShapeError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _load(ours, theirs):
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# -- containers --------------------------------------------------------------------------------------


def test_module_list_registers_like_torch():
    ours = nn.ModuleList([nn.Linear(3, 4), nn.ReLU()])
    ours.append(nn.Linear(4, 2))
    ours.insert(1, nn.Tanh())
    theirs = torch.nn.ModuleList([torch.nn.Linear(3, 4), torch.nn.ReLU()])
    theirs.append(torch.nn.Linear(4, 2))
    theirs.insert(1, torch.nn.Tanh())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs]
    assert len(ours) == 4 and isinstance(ours[-1], nn.Linear) and len(ours[1:3]) == 2
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    _load(ours, theirs)  # the names match torch's 1:1
    del ours[1]
    assert list(ours.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    ours.eval()
    assert not any(m.training for m in ours.modules())
    with pytest.raises(TypeError):
        ours.append(lambda x: x)


def test_module_list_inside_a_custom_module_trains():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(2, 8), nn.Linear(8, 1)])

        def forward(self, x):
            for i, layer in enumerate(self.layers):
                x = layer(x) if i == len(self.layers) - 1 else F.tanh(layer(x))
            return x

    tl.manual_seed(0)
    net = Net()
    assert sorted(net.state_dict()) == [f"layers.{i}.{p}" for i in (0, 1) for p in ("bias", "weight")]
    opt = tl.optim.SGD(net.parameters(), lr=0.1)
    x, y = tl.tensor(_rand(16, 2, seed=1)), tl.tensor(_rand(16, 1, seed=2))
    first = float(F.mse_loss(net(x), y))
    for _ in range(50):
        opt.zero_grad()
        loss = F.mse_loss(net(x), y)
        loss.backward()
        opt.step()
    assert float(loss) < first


def test_module_dict_like_torch():
    ours = nn.ModuleDict({"enc": nn.Linear(3, 4), "dec": nn.Linear(4, 2)})
    theirs = torch.nn.ModuleDict({"enc": torch.nn.Linear(3, 4), "dec": torch.nn.Linear(4, 2)})
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours.keys() == list(theirs.keys()) and "enc" in ours and len(ours) == 2
    assert isinstance(ours["dec"], nn.Linear)
    _load(ours, theirs)
    ours.pop("enc")
    assert list(ours) == ["dec"]
    with pytest.raises(KeyError):
        ours["a.b"] = nn.ReLU()


# -- nn.init -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,param", [("linear", None), ("conv1d", None), ("sigmoid", None),
                                        ("tanh", None), ("relu", None), ("leaky_relu", None),
                                        ("leaky_relu", 0.2), ("selu", None)])
def test_calculate_gain_like_torch(name, param):
    assert nn.init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))


SHAPES = [(300, 200), (64, 16, 3, 3), (128, 8, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fn,kw,kind", [
    ("xavier_uniform_", {}, "uniform"), ("xavier_uniform_", {"gain": 2.0}, "uniform"),
    ("xavier_normal_", {}, "normal"), ("kaiming_uniform_", {}, "uniform"),
    ("kaiming_uniform_", {"a": math.sqrt(5)}, "uniform"),
    ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}, "uniform"),
    ("kaiming_normal_", {}, "normal"), ("kaiming_normal_", {"mode": "fan_out"}, "normal"),
    ("uniform_", {"a": -0.5, "b": 2.0}, "uniform"), ("normal_", {"mean": 1.0, "std": 0.1}, "normal"),
])
def test_init_distributions_match_torch(shape, fn, kw, kind):
    """Same defaults, fans and gains as torch: the samples' range, mean and spread agree (the
    numbers themselves come from another generator)."""
    tl.manual_seed(0)
    torch.manual_seed(0)
    ours = getattr(nn.init, fn)(nn.Parameter(tl.zeros(*shape, dtype="float64").data), **kw).numpy()
    theirs = getattr(torch.nn.init, fn)(torch.empty(*shape, dtype=torch.float64), **kw).numpy()
    assert ours.shape == theirs.shape
    spread = theirs.std()
    assert abs(ours.std() - spread) < 0.03 * spread
    assert abs(ours.mean() - theirs.mean()) < 0.05 * spread + 1e-12
    if kind == "uniform":  # the bounds themselves, to within the sampling gap
        assert ours.min() >= theirs.min() - 0.01 * spread and ours.max() <= theirs.max() + 0.01 * spread
        assert abs(ours.max() - theirs.max()) < 0.01 * spread


def test_init_constants_seeding_and_dtype():
    lin = nn.Linear(4, 3)
    assert nn.init.zeros_(lin.bias) is lin.bias and not lin.bias.numpy().any()
    nn.init.ones_(lin.weight)
    assert (lin.weight.numpy() == 1).all() and lin.weight.dtype == np.float32
    nn.init.constant_(lin.weight, 0.25)
    assert (lin.weight.numpy() == 0.25).all()
    tl.manual_seed(3)
    a = nn.init.xavier_uniform_(nn.Linear(8, 8).weight).numpy().copy()
    b = nn.init.xavier_uniform_(nn.Linear(8, 8).weight).numpy()
    assert not np.array_equal(a, b)  # the generator moved on
    tl.manual_seed(3)
    assert np.array_equal(a, nn.init.xavier_uniform_(nn.Linear(8, 8).weight).numpy())  # seeded
    assert a.dtype == b.dtype == np.float32
    with pytest.raises(ValueError):
        nn.init.xavier_uniform_(tl.zeros(5))  # torch: fans need two dimensions
    with pytest.raises(ValueError):
        nn.init.kaiming_normal_(tl.zeros(2, 2), mode="fan")


# -- BatchNorm1d ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 4), (6, 4, 5)])
@pytest.mark.parametrize("kw", [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False},
                                {"eps": 1e-3, "momentum": 0.3}])
def test_batchnorm1d_train_and_eval_like_torch(shape, kw):
    tl.manual_seed(0)
    ours = nn.BatchNorm1d(4, dtype="float64", **kw)
    theirs = torch.nn.BatchNorm1d(4, dtype=torch.float64, **kw)
    if kw.get("affine", True):
        ours.weight.data = _rand(4, seed=9) + 1
        ours.bias.data = _rand(4, seed=10)
    _load(ours, theirs)
    for step in range(3):  # training steps update the running statistics
        x = _rand(*shape, seed=step) * 3 + 1
        xt = torch.tensor(x, requires_grad=True)
        t = tl.tensor(x, dtype="float64", requires_grad=True)
        y, yt = ours(t), theirs(xt)
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        w = _rand(*shape, seed=50 + step)
        (y * tl.tensor(w, dtype="float64")).sum().backward()
        (yt * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(t.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-12, err_msg=k)
    ours.eval()
    theirs.eval()
    x = _rand(*shape, seed=99)
    np.testing.assert_allclose(ours(tl.tensor(x, dtype="float64")).numpy(),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_batchnorm1d_defaults_and_shape_errors():
    ours, theirs = nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    assert (ours.eps, ours.momentum) == (theirs.eps, theirs.momentum)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    with pytest.raises(ShapeError, match=r"BatchNorm1d\(3\).*\(\*, 3\) or \(\*, 3, \*\).*\(2, 4\)"):
        ours(tl.zeros(2, 4))
    with pytest.raises(ShapeError):
        nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(3))
    nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.ReLU())  # builds


@pytest.mark.parametrize(("layer", "args"), [("Linear", (2.5, 3)), ("Linear", (-1, 3)),
                                             ("Conv2d", (1.5, 2, 3)), ("Conv1d", (2, -4, 3)),
                                             ("Conv2d", (2, 4, 3, 1, 0, 1, 0))])
def test_bad_layer_sizes_are_refused_like_torch(layer, args):
    """int(2.5) built a smaller layer than asked without a word; a negative size read 'math domain
    error'; groups=0 divided by zero. torch refuses each of them."""
    with pytest.raises((TypeError, ValueError, RuntimeError, ZeroDivisionError)):
        getattr(torch.nn, layer)(*args)
    with pytest.raises((TypeError, ValueError), match=rf"{layer}: "):
        getattr(nn, layer)(*args)
    # 0 and numpy ints pass, as in torch
    assert nn.Linear(np.int64(2), 0).weight.shape == tuple(torch.nn.Linear(2, 0).weight.shape)


# -- Conv1d ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw", [{}, {"stride": 2}, {"padding": 2}, {"dilation": 2}, {"groups": 2},
                                {"stride": 3, "padding": 1, "dilation": 2, "groups": 2},
                                {"padding": "same"}, {"padding": "valid"}, {"bias": False}])
def test_conv1d_like_torch_with_gradients(kw):
    tl.manual_seed(0)
    ours = nn.Conv1d(4, 6, 3, dtype="float64", **kw)
    theirs = torch.nn.Conv1d(4, 6, 3, dtype=torch.float64, **kw)
    assert ours.weight.shape == tuple(theirs.weight.shape)
    _load(ours, theirs)
    x = _rand(2, 4, 11, seed=1)
    t, xt = tl.tensor(x, dtype="float64", requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = ours(t), theirs(xt)
    assert y.shape == tuple(yt.shape) == ours.output_shape((2, 4, 11))
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = _rand(*y.shape, seed=2)
    (y * tl.tensor(w, dtype="float64")).sum().backward()
    (yt * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_conv1d_init_and_functional_like_torch():
    tl.manual_seed(0)
    w = nn.Conv1d(8, 16, 5).weight.numpy()
    bound = 1 / math.sqrt(8 * 5)  # torch: kaiming_uniform(a=sqrt(5)) = U(±1/sqrt(fan_in))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    x, wt, b = _rand(1, 2, 7), _rand(4, 1, 3, seed=3), _rand(4, seed=4)
    ours = F.conv1d(*(tl.tensor(a, dtype="float64") for a in (x, wt, b)), stride=2, padding=1, groups=2)
    theirs = torch.nn.functional.conv1d(*(torch.tensor(a) for a in (x, wt, b)), stride=2, padding=1, groups=2)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ShapeError, match=r"Conv1d.*\(\*, 8, \*\).*\(1, 3, 10\)"):
        nn.Conv1d(8, 16, 5)(tl.zeros(1, 3, 10))


def test_conv1d_model_traces_to_existing_primitives():
    tl.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4, 1))
    graph = tl.trace(model, tl.zeros(1, 1, 6))
    ops = {n.op for n in graph.nodes}
    assert "conv2d" in ops and "conv1d" not in ops


# -- TransformerEncoderLayer / MultiheadAttention defaults ------------------------------------------


@pytest.mark.parametrize("ours,theirs", [(nn.TransformerEncoderLayer, torch.nn.TransformerEncoderLayer),
                                         (nn.MultiheadAttention, torch.nn.MultiheadAttention),
                                         (nn.BatchNorm1d, torch.nn.BatchNorm1d),
                                         (nn.Conv1d, torch.nn.Conv1d), (nn.LayerNorm, torch.nn.LayerNorm)])
def test_defaults_equal_torch(ours, theirs):
    """Every parameter both signatures have defaults to the same value."""
    a, b = inspect.signature(ours.__init__).parameters, inspect.signature(theirs.__init__).parameters
    shared = [k for k in a if k in b and k not in ("self", "device", "dtype")]
    assert len(shared) >= 3
    for k in shared:
        da, db = a[k].default, b[k].default
        if db is inspect.Parameter.empty:
            assert da is inspect.Parameter.empty, k
        elif isinstance(db, str):
            assert da == db, k
        elif not callable(db):
            assert da == db, (k, da, db)


def test_transformer_default_layout_is_sequence_first_like_torch():
    tl.manual_seed(0)
    ours = nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, dropout=0.0, dtype="float64")
    theirs = torch.nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, dropout=0.0).double()
    _load(ours, theirs)
    theirs.eval()
    x = _rand(5, 2, 4)  # (sequence, batch, feature)
    np.testing.assert_allclose(ours(tl.tensor(x, dtype="float64")).numpy(),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-9, atol=1e-12)


def test_conv1d_batchnorm1d_model_gets_sound_bounds_from_the_existing_table():
    """The new layers lower to existing primitives, so the bound table covers them: CROWN bounds
    enclose every sampled output."""
    tl.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.BatchNorm1d(2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(12, 2))
    model(tl.randn(4, 1, 6))  # one training step moves the running statistics off their defaults
    model.eval()
    x = tl.randn(1, 1, 6)
    b = tl.verify.bounds(model, x, eps=0.01, method="crown")
    xs = x.numpy() + np.random.default_rng(0).uniform(-0.01, 0.01, (300, 1, 6)).astype(np.float32)
    with tl.no_grad():
        ys = np.concatenate([model(tl.tensor(v[None])).numpy() for v in xs])
    assert (ys >= np.asarray(b.lower) - 1e-6).all() and (ys <= np.asarray(b.upper) + 1e-6).all()


def test_sequential_from_an_ordered_dict_and_append_like_torch():
    from collections import OrderedDict

    ours = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 3)), ("act", nn.Tanh()), ("out", nn.Linear(3, 1))]))
    theirs = torch.nn.Sequential(OrderedDict([("fc", torch.nn.Linear(2, 3)), ("act", torch.nn.Tanh()),
                                              ("out", torch.nn.Linear(3, 1))]))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _load(ours, theirs)
    x = _rand(4, 2).astype(np.float32)
    np.testing.assert_allclose(ours(tl.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(),
                               rtol=1e-6)
    seq, tseq = nn.Sequential(nn.Linear(2, 3)), torch.nn.Sequential(torch.nn.Linear(2, 3))
    seq.append(nn.ReLU()).append(nn.Linear(3, 1))
    tseq.append(torch.nn.ReLU()).append(torch.nn.Linear(3, 1))
    assert list(seq.state_dict()) == list(tseq.state_dict()) and len(seq) == 3
    with pytest.raises(ShapeError):
        seq.append(nn.Linear(5, 1))  # checked like the constructor; the model is left as it was
    assert len(seq) == 3 and "3" not in vars(seq)


def test_std_dim_cpu_like_torch():
    x = _rand(4, 5, seed=7)
    t, tt = tl.tensor(x, dtype="float64"), torch.tensor(x)
    for kw in ({}, {"dim": 1}, {"dim": 0, "unbiased": False, "keepdim": True}):
        np.testing.assert_allclose(t.std(**kw).numpy(), tt.std(**kw).numpy(), rtol=1e-12)
    np.testing.assert_allclose(F.std(t, 1).numpy(), torch.std(tt, 1).numpy(), rtol=1e-12)
    assert t.dim() == tt.dim() == 2 and t.cpu() is t
