"""PyTorch in and out: any nn.Module through torch.export (bridge.torch_export), and to_torch.

References: torch 2.13's own outputs and gradients; bounds are checked by sampling points of the
box through torch (a sound bound must contain every one of them).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tnn = torch.nn

import torchlean as tl  # noqa: E402
from torchlean.bridge import TorchInteropError, from_torch, to_torch  # noqa: E402
from torchlean.bridge.torch_export import CONVERTERS, export_graph  # noqa: E402
from torchlean.runtime.execute import run_graph  # noqa: E402

pytestmark = pytest.mark.torch


class ResNetish(tnn.Module):
    """The issue's model: a subclass with a residual connection in forward, BatchNorm1d (eval),
    AdaptiveAvgPool2d (8x8 -> 2x2: kernel 4) and exact GELU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = tnn.Conv2d(1, 3, 3, padding=1)
        self.pool = tnn.AdaptiveAvgPool2d((2, 2))
        self.fc = tnn.Linear(12, 6)
        self.bn = tnn.BatchNorm1d(6)
        self.inner = tnn.Linear(6, 6)
        self.act = tnn.GELU()  # torch's default: approximate='none', the erf form
        self.out = tnn.Linear(6, 3)

    def forward(self, x):
        h = self.pool(torch.relu(self.conv(x))).flatten(1)
        h = self.bn(self.fc(h))
        h = h + self.act(self.inner(h))  # residual
        return self.out(h)


def _model(seed: int = 0) -> ResNetish:
    torch.manual_seed(seed)
    m = ResNetish()
    with torch.no_grad():  # non-trivial running statistics
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.uniform_(0.5, 1.5)
        m.bn.bias.uniform_(-0.3, 0.3)
    return m.eval()


def _x(seed: int = 1, batch: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 1, 8, 8)).astype(np.float32)


def test_the_issue_model_imports_and_matches_torch():
    m, x = _model(), _x(batch=4)
    tm = from_torch(m, example=x)
    assert isinstance(tm, tl.nn.GraphModule)
    ops = {n.op for n in tm.graph.nodes}
    assert {"erf", "avg_pool2d", "batch_norm", "conv2d"} <= ops and "gelu" not in ops
    ref = m(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(tm(x).numpy(), ref, rtol=1e-5, atol=1e-6)
    # the graph runs alike through run_graph, and weights kept their exact bits
    np.testing.assert_allclose(run_graph(tm.graph, {"input0": x})[0], ref, rtol=1e-5, atol=1e-6)
    for k, v in m.state_dict().items():
        if k in tm.graph.constants:
            assert tm.graph.constants[k].tobytes() == v.numpy().tobytes(), k
    # parameters under torch's names; buffers stay buffers
    assert {k for k, _ in tm.named_parameters()} == {k for k, _ in m.named_parameters()}
    assert "bn.running_var" in dict(tm.named_buffers())


@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_bounds_contain_torch_outputs_at_sampled_points(method):
    m, x, eps = _model(2), _x(3), 0.05
    tm = from_torch(m, example=x)
    b = tl.verify.bounds(tm, x, eps, method=method)
    assert b.lower.shape == (1, 3) and np.all(b.lower <= b.upper)
    rng = np.random.default_rng(4)
    pts = x + rng.uniform(-eps, eps, (200, *x.shape[1:])).astype(np.float32)
    pts = np.concatenate([pts, x + eps * np.sign(rng.standard_normal((20, *x.shape[1:])))]).astype(np.float32)
    with torch.no_grad():
        ys = np.concatenate([m(torch.from_numpy(p[None])).numpy() for p in pts])
    assert b.contains(ys)
    # the bounds are informative, not [-inf, inf]
    assert np.all(b.upper - b.lower < 10)
    # and the same bounds come from the graph itself
    bg = tl.verify.bounds(tm.graph, x, eps, method=method)
    np.testing.assert_allclose(bg.lower, b.lower)


def test_crown_is_at_least_as_tight_as_ibp():
    m, x = _model(5), _x(6)
    tm = from_torch(m, example=x)
    ibp, crown = (tl.verify.bounds(tm, x, 0.02, method=k) for k in ("ibp", "crown"))
    assert np.all(crown.lower >= ibp.lower - 1e-12) and np.all(crown.upper <= ibp.upper + 1e-12)


def test_imported_module_trains_like_torch():
    """Gradients of the imported module equal torch's (the graph's float weights are Parameters)."""
    m, x = _model(7), _x(8, batch=2)
    tm = from_torch(m, example=x)
    target = np.random.default_rng(9).standard_normal((2, 3)).astype(np.float32)
    loss = ((tm(x) - tl.tensor(target)) ** 2).sum()
    loss.backward()
    tloss = ((m(torch.from_numpy(x)) - torch.from_numpy(target)) ** 2).sum()
    tloss.backward()
    grads = dict(tm.named_parameters())
    for k, p in m.named_parameters():
        np.testing.assert_allclose(grads[k].grad.numpy(), p.grad.numpy(), rtol=1e-4, atol=1e-5)
    opt = tl.optim.SGD(tm.parameters(), lr=0.1)
    opt.step()
    assert not np.array_equal(dict(tm.named_parameters())["fc.weight"].numpy(), m.fc.weight.detach().numpy())


def test_uneven_adaptive_pool_is_refused():
    class Uneven(tnn.Module):
        def __init__(self):
            super().__init__()
            self.pool = tnn.AdaptiveAvgPool2d(3)

        def forward(self, x):
            return self.pool(x).flatten(1)

    with pytest.raises(TorchInteropError, match=r"output size \(3, 3\) does not divide the input size "
                                                r"\(8, 8\)"):
        from_torch(Uneven().eval(), example=_x())


def test_every_unsupported_aten_op_is_named_at_once():
    class Odd(tnn.Module):
        def forward(self, x):
            return torch.sin(x) + torch.cos(x) + torch.floor(x)

    with pytest.raises(TorchInteropError) as e:
        from_torch(Odd(), example=np.zeros((1, 3), np.float32))
    msg = str(e.value)
    assert "\n" not in msg
    for op in ("aten.sin.default", "aten.cos.default", "aten.floor.default"):
        assert op in msg
    assert not ({"aten.sin.default", "aten.cos.default"} & set(CONVERTERS))


def test_training_mode_batch_norm_is_refused_with_a_hint():
    m = _model()
    m.train()
    with pytest.raises(TorchInteropError, match=r"training mode: call \.eval\(\)"):
        from_torch(m, example=_x(batch=2))


def test_a_subclass_without_example_is_a_one_line_error():
    with pytest.raises(TorchInteropError, match="pass an example input") as e:
        from_torch(_model())
    assert "ResNetish" in str(e.value) and "\n" not in str(e.value)


def test_sequential_keeps_its_layers():
    seq = tnn.Sequential(tnn.Linear(3, 4), tnn.ReLU(), tnn.Linear(4, 2))
    out = from_torch(seq)
    assert isinstance(out, tl.nn.Sequential)
    # a Sequential with a layer the builder table lacks falls back to export when given an example
    seq2 = tnn.Sequential(tnn.Linear(3, 4), tnn.Hardtanh(), tnn.Linear(4, 2)).eval()
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    g = from_torch(seq2, example=x)
    assert isinstance(g, tl.nn.GraphModule)
    np.testing.assert_allclose(g(x).numpy(), seq2(torch.from_numpy(x)).detach().numpy(), rtol=1e-6, atol=1e-6)


class Mixed(tnn.Module):
    """More aten ops: Conv1d, LayerNorm, softmax, slicing, cat, mean, scalars, tanh-GELU, clamp."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = tnn.Conv1d(2, 4, 3, padding=1)
        self.ln = tnn.LayerNorm(8)
        self.fc = tnn.Linear(8, 5)

    def forward(self, x):
        h = torch.nn.functional.gelu(self.conv(x), approximate="tanh")  # (N, 4, 6)
        h = torch.cat([h[:, :2, :4], 2.0 * h[:, 2:, 2:] - 1.0], dim=2)  # (N, 2, 8)
        h = self.ln(h).mean(dim=1)  # (N, 8)
        h = torch.clamp(self.fc(h), min=-1.0, max=1.5) / 3
        return torch.softmax(h, dim=-1) + torch.sigmoid(h).sum(dim=1, keepdim=True)


def test_more_ops_match_torch_and_round_trip_through_to_torch():
    torch.manual_seed(3)
    m = Mixed().eval()
    x = np.random.default_rng(5).standard_normal((3, 2, 6)).astype(np.float32)
    tm = from_torch(m, example=x)
    ref = m(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(tm(x).numpy(), ref, rtol=1e-5, atol=1e-6)
    back = to_torch(tm)
    assert isinstance(back, torch.nn.Module)
    np.testing.assert_allclose(back(torch.from_numpy(x)).detach().numpy(), ref, rtol=1e-5, atol=1e-6)


def test_to_torch_round_trip_of_the_issue_model():
    """torch -> from_torch -> to_torch gives torch's outputs and gradients back."""
    m, x = _model(11), _x(12, batch=3)
    back = to_torch(from_torch(m, example=x))
    xt = torch.from_numpy(x)
    np.testing.assert_allclose(back(xt).detach().numpy(), m(xt).detach().numpy(), rtol=1e-5, atol=1e-6)
    back(xt).sum().backward()
    m(xt).sum().backward()
    grads = {k.replace(".", "_"): p.grad for k, p in m.named_parameters()}
    for k, p in back.params.items():
        np.testing.assert_allclose(p.grad.numpy(), grads[k].numpy(), rtol=1e-4, atol=1e-5)


def test_to_torch_of_a_torchlean_model_and_of_a_graph():
    tl.manual_seed(0)
    model = tl.nn.Sequential(tl.nn.Linear(4, 5), tl.nn.GELU("none"), tl.nn.Linear(5, 2), tl.nn.Softmax(-1))
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    ref = model(tl.tensor(x)).numpy()
    with pytest.raises(TorchInteropError, match="pass an example input"):
        to_torch(model)
    tmod = to_torch(model, example=x)
    np.testing.assert_allclose(tmod(torch.from_numpy(x)).detach().numpy(), ref, rtol=1e-5, atol=1e-6)
    g = tl.trace(model, tl.tensor(x))
    np.testing.assert_allclose(to_torch(g)(torch.from_numpy(x)).detach().numpy(), ref, rtol=1e-5, atol=1e-6)


def test_to_torch_refuses_a_model_in_training_mode_with_dropout():
    """Traced in training mode, one drawn dropout mask became a constant of the torch module."""
    model = tl.nn.Sequential(tl.nn.Linear(4, 5), tl.nn.Dropout(0.5), tl.nn.Linear(5, 2))
    x = np.ones((1, 4), np.float32)
    with pytest.raises(ValueError, match=r"training mode and Dropout.*eval\(\)"):
        to_torch(model, example=x)
    tmod = to_torch(model.eval(), example=x)
    ref = model(tl.tensor(x)).numpy()
    np.testing.assert_allclose(tmod(torch.from_numpy(x)).detach().numpy(), ref, rtol=1e-6)


def test_gelu_none_is_torchs_default_composition():
    x = np.random.default_rng(2).standard_normal(2000).astype(np.float32) * 4
    ours = tl.nn.functional.gelu(tl.tensor(x), approximate="none").numpy()
    ref = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    # 1 + erf(x/sqrt2) cancels for x << 0, where float32 kernels of erf differ by an ulp of 1
    np.testing.assert_allclose(ours, ref, rtol=2e-6, atol=2e-6)
    exact = torch.nn.functional.gelu(torch.from_numpy(x.astype(np.float64))).numpy()
    assert np.abs(ours - exact).max() <= np.abs(ref - exact).max() * 2 + 1e-7
    with pytest.raises(ValueError, match="approximate"):
        tl.nn.functional.gelu(tl.tensor(x), approximate="exact")


def test_export_graph_names_inputs_and_weights():
    m, x = _model(), _x()
    g, params, buffers = export_graph(m, x)
    assert [v.name for v in g.inputs] == ["input0"] and g.inputs[0].shape == (1, 1, 8, 8)
    assert "conv.weight" in params and "bn.running_mean" in buffers
    assert "bn.num_batches_tracked" not in g.constants  # unused bookkeeping never enters the graph


class TorchTransformer(tnn.Module):
    """torch's own Embedding + TransformerEncoderLayer (its attention's "safe softmax" included)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = tnn.Embedding(10, 8)
        self.enc = tnn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.out = tnn.Linear(8, 3)

    def forward(self, idx):
        return self.out(self.enc(self.emb(idx)).mean(1))


def test_torch_transformer_imports_exports_to_onnx_and_goes_back():
    """torch -> from_torch (matches torch) -> export_onnx (onnxruntime matches torch) -> load_onnx,
    and -> to_torch (matches torch)."""
    ort = pytest.importorskip("onnxruntime")
    from torchlean.bridge import export_onnx, load_onnx

    torch.manual_seed(4)
    m = TorchTransformer().eval()
    idx = np.array([[1, 7, 3, 9], [0, 2, 2, 5]], dtype=np.int64)
    with torch.no_grad():
        ref = m(torch.from_numpy(idx)).numpy()
    tm = from_torch(m, example=idx)
    ops = {n.op for n in tm.graph.nodes}
    assert {"embedding", "layer_norm", "softmax"} <= ops and "where" not in ops
    np.testing.assert_allclose(tm(idx).numpy(), ref, rtol=1e-5, atol=1e-5)
    proto = export_onnx(tm.graph)
    out = ort.InferenceSession(proto.SerializeToString()).run(None, {"input0": idx})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    again = load_onnx(proto, batch_size=2)
    np.testing.assert_allclose(run_graph(again, {"input0": idx})[0], ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(to_torch(tm)(torch.from_numpy(idx)).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_comparisons_with_data_are_refused():
    class Masked(tnn.Module):
        def forward(self, x):
            return torch.where(x > 0.5, x, 2 * x)

    with pytest.raises(TorchInteropError, match="aten.gt.Scalar"):
        from_torch(Masked(), example=np.zeros((1, 3), np.float32))

    class EqFinite(tnn.Module):
        def forward(self, x):
            return torch.where(x == 1.0, x, 2 * x)

    with pytest.raises(TorchInteropError, match="depends on the data"):
        from_torch(EqFinite(), example=np.zeros((1, 3), np.float32))


def test_several_inputs():
    class Two(tnn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = tnn.Linear(3, 2), tnn.Linear(4, 2)

        def forward(self, x, y):
            return torch.tanh(self.a(x)) * self.b(y)

    torch.manual_seed(1)
    m = Two().eval()
    x, y = np.ones((2, 3), np.float32), np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    tm = from_torch(m, example=(x, y))
    assert [v.name for v in tm.graph.inputs] == ["input0", "input1"]
    with torch.no_grad():
        ref = m(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(tm(x, y).numpy(), ref, rtol=1e-6, atol=1e-6)


def test_numbers_take_torchs_compute_dtype():
    """A Python number meets a tensor in the dtype torch computes in (float32(0.1) for a float32
    tensor); an integer tensor that a float number promotes (i * 0.5) is refused, not cast to 0."""
    class Scale(tnn.Module):
        def forward(self, x):
            return x * 0.1 - 3

    x = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)
    with torch.no_grad():
        ref = Scale()(torch.from_numpy(x)).numpy()
    tm = from_torch(Scale(), example=x)
    np.testing.assert_array_equal(tm(x).numpy(), ref)
    consts = [a for a in tm.graph.constants.values() if a.shape == ()]
    assert all(a.dtype == np.float32 for a in consts) and any(a == np.float32(0.1) for a in consts)

    class Promote(tnn.Module):
        def forward(self, x, i):
            return x + (i * 0.5).sum(dim=1, keepdim=True)

    with pytest.raises(TorchInteropError, match="promoted to float32 by the number 0.5"):
        from_torch(Promote(), example=(x, np.array([[1, 2], [3, 5]], np.int64)))


def test_state_updated_in_forward_is_refused():
    class Counter(tnn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("seen", torch.zeros(()))

        def forward(self, x):
            self.seen.add_(1)
            return x * 2

    with pytest.raises(TorchInteropError, match="updates state in forward"):
        from_torch(Counter().eval(), example=np.ones((1, 2), np.float32))
