"""nn layers: each against torch with the same weights (loaded through the state_dict, so the
parameter layout must map 1:1), state_dict round trips, build-time shape errors, seeded dropout."""

from __future__ import annotations

import math

import numpy as np
import pytest

import torchlean as tl
import torchlean.nn as nn
import torchlean.nn.functional as F
from torchlean.spec import ShapeError

RTOL, ATOL = 1e-11, 1e-11


def _torch():
    return pytest.importorskip("torch")


def _load_into_torch(ours: nn.Module, theirs) -> None:
    torch = _torch()
    state = {k: torch.tensor(v) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state, strict=True)  # same names, same shapes: the layouts map 1:1


def _compare(ours: nn.Module, theirs, inputs: list[np.ndarray], call=None, tcall=None,
             seed: int = 7) -> None:
    """Forward values, input gradients and parameter gradients (by name) in float64."""
    torch = _torch()
    call = call or (lambda m, *xs: m(*xs))
    tcall = tcall or call
    xs = [tl.tensor(a, dtype="float64", requires_grad=True) if a.dtype.kind == "f" else tl.tensor(a)
          for a in inputs]
    ts = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    y, yt = call(ours, *xs), tcall(theirs, *ts)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=RTOL, atol=ATOL)
    g = np.random.default_rng(seed).standard_normal(y.shape)
    y.backward(g)
    yt.backward(torch.tensor(g))
    for x, t in zip(xs, ts):
        if t.grad is not None:
            np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=RTOL, atol=ATOL)
    theirs_params = dict(theirs.named_parameters())
    ours_params = dict(ours.named_parameters())
    assert set(ours_params) == set(theirs_params)
    for name, p in ours_params.items():
        if theirs_params[name].grad is None:  # a parameter the output does not depend on
            assert p.grad is None, name
            continue
        np.testing.assert_allclose(p.grad.numpy(), theirs_params[name].grad.numpy(), rtol=RTOL,
                                   atol=ATOL, err_msg=f"gradient of {name}")


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# -- each layer against torch ----------------------------------------------------------------------

pytorch = pytest.mark.torch


@pytorch
@pytest.mark.parametrize("kwargs", [
    {"kernel_size": 3},
    {"kernel_size": (3, 2), "stride": 2, "padding": 1, "dilation": (1, 2)},
    {"kernel_size": 3, "padding": "same", "groups": 2, "bias": False},
])
def test_conv2d_matches_torch(kwargs):
    torch = _torch()
    ours = nn.Conv2d(4, 6, dtype="float64", **kwargs)
    theirs = torch.nn.Conv2d(4, 6, **kwargs).double()
    _load_into_torch(ours, theirs)
    _compare(ours, theirs, [_x(2, 4, 7, 6)])


@pytorch
@pytest.mark.parametrize("layer", ["MaxPool2d", "AvgPool2d"])
@pytest.mark.parametrize("kwargs", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}])
def test_pooling_matches_torch(layer, kwargs):
    torch = _torch()
    _compare(getattr(nn, layer)(**kwargs), getattr(torch.nn, layer)(**kwargs), [_x(2, 3, 7, 6)])


@pytorch
def test_avg_pool_excluding_padding_matches_torch():
    torch = _torch()
    kw = {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}
    _compare(nn.AvgPool2d(**kw), torch.nn.AvgPool2d(**kw), [_x(1, 2, 5, 5)])


@pytorch
@pytest.mark.parametrize("shape", [5, (4, 5)])
def test_layer_norm_matches_torch(shape):
    torch = _torch()
    ours = nn.LayerNorm(shape, eps=1e-4, dtype="float64")
    ours.weight.data = _x(*ours.weight.shape, seed=1)  # non-trivial affine parameters
    ours.bias.data = _x(*ours.bias.shape, seed=2)
    theirs = torch.nn.LayerNorm(shape, eps=1e-4).double()
    _load_into_torch(ours, theirs)
    _compare(ours, theirs, [_x(3, 4, 5)])


@pytorch
def test_layer_norm_without_affine_matches_torch_and_traces():
    torch = _torch()
    ours = nn.LayerNorm(5, elementwise_affine=False, dtype="float64")
    _compare(ours, torch.nn.LayerNorm(5, elementwise_affine=False).double(), [_x(3, 5)])
    trace = pytest.importorskip("torchlean.runtime.trace").trace
    graph = trace(ours, tl.tensor(_x(3, 5), dtype="float64"))
    assert [n.op for n in graph.nodes][-1] == "layer_norm"


@pytorch
def test_batch_norm_training_updates_running_stats_like_torch():
    torch = _torch()
    ours = nn.BatchNorm2d(3, dtype="float64")
    ours.weight.data, ours.bias.data = _x(3, seed=1), _x(3, seed=2)
    theirs = torch.nn.BatchNorm2d(3).double()
    _load_into_torch(ours, theirs)
    _compare(ours, theirs, [_x(4, 3, 5, 2)])
    for step in range(2):  # two more training batches, then compare the buffers
        with tl.no_grad(), torch.no_grad():
            x = _x(4, 3, 5, 2, seed=10 + step) * 3 + 1
            np.testing.assert_allclose(ours(tl.tensor(x, dtype="float64")).numpy(),
                                       theirs(torch.tensor(x)).numpy(), rtol=RTOL, atol=ATOL)
    theirs_state = theirs.state_dict()
    for name, value in ours.state_dict().items():
        np.testing.assert_allclose(value, theirs_state[name].numpy(), rtol=1e-13, atol=1e-15,
                                   err_msg=name)
    assert int(ours.num_batches_tracked.item()) == 3
    ours.eval()
    theirs.eval()
    for p in theirs.parameters():
        p.grad = None
    ours.zero_grad()
    _compare(ours, theirs, [_x(2, 3, 4, 4, seed=20)])


@pytorch
@pytest.mark.parametrize("kwargs", [{"affine": False}, {"track_running_stats": False}])
def test_batch_norm_options_match_torch(kwargs):
    torch = _torch()
    ours, theirs = nn.BatchNorm2d(3, dtype="float64", **kwargs), torch.nn.BatchNorm2d(3, **kwargs).double()
    _load_into_torch(ours, theirs)
    _compare(ours, theirs, [_x(4, 3, 2, 2)])
    ours.eval()
    theirs.eval()
    with tl.no_grad(), torch.no_grad():
        x = _x(2, 3, 2, 2, seed=1)
        y = ours(tl.tensor(x, dtype="float64")).numpy()
        np.testing.assert_allclose(y, theirs(torch.tensor(x)).numpy(), rtol=RTOL, atol=ATOL)


@pytorch
def test_batch_norm_cumulative_average_momentum_none():
    torch = _torch()
    ours, theirs = nn.BatchNorm2d(2, momentum=None, dtype="float64"), torch.nn.BatchNorm2d(2, momentum=None)
    theirs = theirs.double()
    with tl.no_grad(), torch.no_grad():
        for step in range(3):
            x = _x(3, 2, 2, 2, seed=step) + step
            ours(tl.tensor(x, dtype="float64"))
            theirs(torch.tensor(x))
    np.testing.assert_allclose(ours.running_var.numpy(), theirs.running_var.numpy(), rtol=1e-13)
    np.testing.assert_allclose(ours.running_mean.numpy(), theirs.running_mean.numpy(), rtol=1e-13)


@pytorch
def test_embedding_matches_torch():
    torch = _torch()
    ours = nn.Embedding(7, 4, dtype="float64")
    theirs = torch.nn.Embedding(7, 4).double()
    _load_into_torch(ours, theirs)
    _compare(ours, theirs, [np.array([[0, 3, 3], [6, 1, 0]])])
    with pytest.raises(IndexError, match="Embedding"):
        ours(np.array([7]))


def _mha_pair(embed=8, heads=2, bias=True):
    torch = _torch()
    tl.manual_seed(1)
    ours = nn.MultiheadAttention(embed, heads, bias=bias, batch_first=True, dtype="float64")
    theirs = torch.nn.MultiheadAttention(embed, heads, bias=bias, batch_first=True).double()
    if bias:  # non-zero biases so their gradients and values are exercised
        ours.in_proj_bias.data = _x(3 * embed, seed=3) * 0.1
        ours.out_proj.bias.data = _x(embed, seed=4) * 0.1
    _load_into_torch(ours, theirs)
    return ours, theirs


@pytorch
@pytest.mark.parametrize("bias", [True, False])
def test_multihead_attention_matches_torch(bias):
    ours, theirs = _mha_pair(bias=bias)
    q, k = _x(2, 3, 8, seed=1), _x(2, 5, 8, seed=2)

    def out(m, q, k, v):
        return m(q, k, v, need_weights=False)[0]

    _compare(ours, theirs, [q, k, _x(2, 5, 8, seed=3)], call=out)


@pytorch
def test_multihead_attention_weights_and_masks_match_torch():
    torch = _torch()
    ours, theirs = _mha_pair()
    causal = np.triu(np.ones((4, 4), dtype=bool), 1)
    padding = np.array([[False, False, False, True], [False, False, False, False]])
    x = _x(2, 4, 8, seed=5)

    def weights(m, x):
        mask = causal if isinstance(x, tl.Tensor) else torch.tensor(causal)
        pad = padding if isinstance(x, tl.Tensor) else torch.tensor(padding)
        return m(x, x, x, attn_mask=mask, key_padding_mask=pad, need_weights=True)[1]

    _compare(ours, theirs, [x], call=weights)
    per_head = ours(tl.tensor(x, dtype="float64"), tl.tensor(x, dtype="float64"),
                    tl.tensor(x, dtype="float64"), average_attn_weights=False)[1]
    assert per_head.shape == (2, 2, 4, 4)


@pytorch
@pytest.mark.parametrize("norm_first,activation", [(False, "relu"), (True, "gelu")])
def test_transformer_encoder_layer_matches_torch(norm_first, activation):
    torch = _torch()
    tl.manual_seed(2)
    kw = {"dim_feedforward": 16, "dropout": 0.0, "batch_first": True, "norm_first": norm_first}
    ours = nn.TransformerEncoderLayer(8, 2, activation=activation, dtype="float64", **kw)
    # torchlean's gelu is the tanh form: give torch the same function
    act = "relu" if activation == "relu" else (lambda t: torch.nn.functional.gelu(t, approximate="tanh"))
    theirs = torch.nn.TransformerEncoderLayer(8, 2, activation=act, **kw).double()
    _load_into_torch(ours, theirs)
    _compare(ours, theirs, [_x(2, 5, 8, seed=6)])


@pytorch
def test_transformer_encoder_layer_causal_mask_matches_torch():
    torch = _torch()
    kw = {"dim_feedforward": 12, "dropout": 0.0, "batch_first": True}
    ours = nn.TransformerEncoderLayer(4, 1, dtype="float64", **kw)
    theirs = torch.nn.TransformerEncoderLayer(4, 1, **kw).double()
    _load_into_torch(ours, theirs)
    mask = np.triu(np.ones((3, 3), dtype=bool), 1)
    _compare(ours, theirs, [_x(2, 3, 4)], call=lambda m, x: m(x, is_causal=True),
             tcall=lambda m, x: m(x, src_mask=torch.tensor(mask), is_causal=True))


@pytorch
def test_sequence_first_layout_matches_torch():
    torch = _torch()
    kw = {"dim_feedforward": 8, "dropout": 0.0, "batch_first": False}
    ours = nn.TransformerEncoderLayer(4, 2, dtype="float64", **kw)
    theirs = torch.nn.TransformerEncoderLayer(4, 2, **kw).double()
    _load_into_torch(ours, theirs)
    _compare(ours, theirs, [_x(5, 2, 4)])  # (sequence, batch, feature)


def test_transformer_dropout_is_seeded():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.5, batch_first=True)
    x = tl.tensor(_x(2, 3, 8))
    tl.manual_seed(4)
    a = layer(x).numpy()
    tl.manual_seed(4)
    assert layer(x).numpy().tobytes() == a.tobytes()
    layer.eval()
    assert layer(x).numpy().tobytes() != a.tobytes()  # evaluation mode drops nothing


@pytorch
def test_small_cnn_matches_torch():
    torch = _torch()
    tl.manual_seed(0)
    ours = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, dtype="float64"), nn.BatchNorm2d(4, dtype="float64"),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 3, dtype="float64"))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                                 torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(36, 3)).double()
    _load_into_torch(ours, theirs)
    _compare(ours, theirs, [_x(5, 1, 6, 6)])


# -- state, initialisation, dropout -----------------------------------------------------------------


def _cnn(seed: int) -> nn.Module:
    tl.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.LayerNorm(16), nn.Linear(16, 3))


def test_state_dict_round_trip_keeps_exact_bits():
    a, b = _cnn(0), _cnn(1)
    a(tl.tensor(_x(3, 2, 6, 6)))  # a training step changes the BatchNorm buffers
    state = a.state_dict()
    assert "1.running_var" in state and "1.num_batches_tracked" in state
    assert not np.array_equal(state["0.weight"], b.state_dict()["0.weight"])
    b.load_state_dict(state)
    for name, value in b.state_dict().items():
        assert value.dtype == state[name].dtype
        assert value.tobytes() == state[name].tobytes(), name
    a.eval()
    b.eval()
    x = tl.tensor(_x(2, 2, 6, 6, seed=3))
    assert a(x).numpy().tobytes() == b(x).numpy().tobytes()


def test_attention_state_dict_names_are_torchs():
    names = set(nn.TransformerEncoderLayer(8, 2, dim_feedforward=16).state_dict())
    assert names == {
        "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
        "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
        "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
    }


def test_seeded_init_follows_torch_distributions():
    tl.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, dtype="float64")
    bound = 1 / math.sqrt(8 * 9)
    w = conv.weight.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound  # uniform's standard deviation
    emb = nn.Embedding(200, 50, dtype="float64").weight.numpy()
    assert abs(emb.mean()) < 0.05 and abs(emb.std() - 1) < 0.05
    mha = nn.MultiheadAttention(16, 4, dtype="float64")
    xavier = math.sqrt(6 / (16 + 48))
    assert np.abs(mha.in_proj_weight.numpy()).max() <= xavier
    assert not mha.in_proj_bias.numpy().any() and not mha.out_proj.bias.numpy().any()
    ln, bn = nn.LayerNorm(4), nn.BatchNorm2d(4)
    assert (ln.weight.numpy() == 1).all() and (bn.running_var.numpy() == 1).all()
    tl.manual_seed(0)
    again = nn.Conv2d(8, 16, 3, dtype="float64")
    assert again.weight.numpy().tobytes() == w.tobytes()


def test_dropout_is_reproducible_under_manual_seed():
    x = tl.ones(200, 50)
    layer = nn.Dropout(0.3)
    tl.manual_seed(5)
    a = layer(x).numpy()
    tl.manual_seed(5)
    b = layer(x).numpy()
    assert a.tobytes() == b.tobytes()
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.7)}
    assert abs((a == 0).mean() - 0.3) < 0.02
    tl.manual_seed(5)
    assert F.dropout(x, 0.3).numpy().tobytes() == a.tobytes()  # the same masks from the same seed
    assert layer(x).numpy().tobytes() != a.tobytes()  # the generator moves on
    layer.eval()
    assert layer(x) is x


def test_functional_dropout_gradient_is_the_mask():
    x = tl.tensor(np.ones((4, 5)), dtype="float64", requires_grad=True)
    tl.manual_seed(1)
    y = F.dropout(x, 0.5)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())


# -- build-time shape errors --------------------------------------------------------------------------


@pytest.mark.parametrize("layers,pattern", [
    (lambda: [nn.Conv2d(3, 8, 3), nn.Conv2d(4, 8, 3)],
     r"layer 1 \(Conv2d\(4, 8.*\(\*, 4, \*, \*\).*layer 0 \(Conv2d\) produces \(\*, 8, \*, \*\)"),
    (lambda: [nn.Linear(3, 5), nn.LayerNorm(4)],
     r"layer 1 \(LayerNorm.*\(\*, 4\).*layer 0 \(Linear\) produces \(\*, 5\)"),
    (lambda: [nn.Conv2d(1, 4, 3), nn.BatchNorm2d(3)],
     r"layer 1 \(BatchNorm2d.*\(\*, 3, \*, \*\).*produces \(\*, 4, \*, \*\)"),
    (lambda: [nn.Embedding(10, 6), nn.Linear(5, 2)],
     r"layer 1 \(Linear.*\(\*, 5\).*layer 0 \(Embedding\) produces \(\*, \*, 6\)"),
    (lambda: [nn.Linear(4, 6), nn.TransformerEncoderLayer(8, 2)],
     r"layer 1 \(TransformerEncoderLayer.*\(\*, \*, 8\).*produces \(\*, 6\)"),
    (lambda: [nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(10, 2)],
     None),  # fine: the spatial size is unknown until the first call
])
def test_sequential_reports_shape_errors_at_build_time(layers, pattern):
    if pattern is None:
        nn.Sequential(*layers())
        return
    with pytest.raises(ShapeError, match=pattern):
        nn.Sequential(*layers())


def test_conv_spatial_sizes_are_checked_when_known():
    seq = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2))
    assert seq.output_shape((None, 1, 8, 6)) == (None, 2, 4, 3)
    with pytest.raises(ShapeError, match="MaxPool2d|at least"):
        nn.MaxPool2d(3).output_shape((None, 2, 2, 2))


def test_runtime_shape_errors_name_the_layer_and_both_shapes():
    with pytest.raises(ShapeError, match=r"Conv2d\(3, 8.*\(\*, 3, \*, \*\).*\(1, 4, 5, 5\)"):
        nn.Conv2d(3, 8, 3)(tl.zeros(1, 4, 5, 5))
    with pytest.raises(ShapeError, match=r"LayerNorm.*\(\*, 6\).*\(2, 5\)"):
        nn.LayerNorm(6)(tl.zeros(2, 5))
    with pytest.raises(ShapeError, match=r"MultiheadAttention.*query.*\(\*, \*, 8\).*\(2, 3, 4\)"):
        m = nn.MultiheadAttention(8, 2)
        x = tl.zeros(2, 3, 4)
        m(x, x, x)


def test_small_cnn_traces_and_evaluates_exactly_at_50_digits():
    """The traced graph of a CNN with every nn primitive, evaluated with the spec's meanings in
    mpmath, agrees with the float64 runtime (the runtime's rounding is far below 1e-12 here)."""
    trace = pytest.importorskip("torchlean.runtime.trace").trace
    from torchlean.spec import Graph
    from torchlean.spec.exact import evaluate

    tl.manual_seed(0)
    f64 = {"dtype": "float64"}
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, **f64), nn.BatchNorm2d(4, **f64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, **f64), nn.AvgPool2d(2), nn.Flatten(), nn.LayerNorm(4, **f64),
        nn.Linear(4, 3, **f64),
    ).eval()
    x = tl.tensor(_x(2, 1, 8, 8), dtype="float64")
    graph = Graph.from_json(trace(model, x).to_json())
    ops = {n.op for n in graph.nodes}
    assert {"conv2d", "batch_norm", "max_pool2d", "avg_pool2d", "layer_norm"} <= ops
    (exact,) = evaluate(graph, {graph.inputs[0].name: x.numpy()}, digits=50)
    np.testing.assert_allclose(exact.astype(float), model(x).numpy(), rtol=1e-12, atol=1e-12)
