"""Tracing and the compiled backend: bit-identical to eager, refusals instead of frozen values."""

from __future__ import annotations

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.optim import SGD, Adam
from torchlean.runtime import functional as F
from torchlean.runtime.compiled import CompiledStep, TraceError, compile
from torchlean.runtime.execute import run_graph
from torchlean.runtime.trace import trace
from torchlean.spec import Graph


def bits(a: np.ndarray) -> bytes:
    """Exact bits (np.array_equal would call -0.0 == 0.0 and NaN != NaN)."""
    a = np.ascontiguousarray(a)
    return a.dtype.str.encode() + str(a.shape).encode() + a.tobytes()


def mlp(act: type, dtype: str, out: int, seed: int = 0) -> nn.Module:
    tl.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(7, 32, dtype=dtype), act(),
        nn.Residual(nn.Sequential(nn.Linear(32, 32, dtype=dtype), nn.Tanh())),
        nn.Linear(32, out, dtype=dtype),
    )


def batches(dtype: str, task: str, n: int = 50, batch: int = 16):
    rng = np.random.default_rng(1)
    for _ in range(n):
        x = tl.tensor(rng.standard_normal((batch, 7)), dtype=dtype)
        if task == "mse":
            y = tl.tensor(rng.standard_normal((batch, 1)), dtype=dtype)
        else:
            y = tl.tensor(rng.integers(0, 5, size=batch))
        yield x, y


LOSSES = {"mse": (F.mse_loss, 1), "ce": (F.cross_entropy, 5)}


def _exact_gelu() -> nn.Module:  # torch's default GELU: a composition around the erf primitive
    return nn.GELU("none")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("task", ["mse", "ce"])
@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, _exact_gelu])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_fifty_steps_bit_identical(dtype, task, act, opt):
    loss_fn, out = LOSSES[task]
    eager, comp = mlp(act, dtype, out), mlp(act, dtype, out)
    make = (lambda m: SGD(m.parameters(), lr=0.05, momentum=0.9)) if opt == "sgd" else (
        lambda m: Adam(m.parameters(), lr=1e-2))
    opt_e, opt_c = make(eager), make(comp)
    step = CompiledStep(comp, loss_fn)
    for x, y in batches(dtype, task):
        eager.zero_grad()
        le = loss_fn(eager(x), y)
        le.backward()
        lc = step(x, y)
        assert bits(le.numpy()) == bits(lc.numpy())
        for pe, pc in zip(eager.parameters(), comp.parameters(), strict=True):
            assert bits(pe.grad.numpy()) == bits(pc.grad.numpy())
        opt_e.step()
        opt_c.step()
    for (name, a), b in zip(eager.state_dict().items(), comp.state_dict().values(), strict=True):
        assert bits(a) == bits(b), name
    assert step.traces == 1


def test_unreached_parameter_gets_no_grad_and_shared_parameter_accumulates():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4, dtype="float64")
            self.unused = nn.Linear(4, 4, dtype="float64")

        def forward(self, x):
            return self.a(F.tanh(self.a(x))) * 0.5

    net = Net()
    x = tl.tensor(np.random.default_rng(0).standard_normal((3, 4)), dtype="float64")
    y = tl.tensor(np.zeros((3, 4)), dtype="float64")
    net.zero_grad()
    F.mse_loss(net(x), y).backward()
    want = {n: p.grad for n, p in net.named_parameters()}
    CompiledStep(net, F.mse_loss)(x, y)
    for n, p in net.named_parameters():
        if want[n] is None:
            assert p.grad is None
        else:
            assert bits(want[n].numpy()) == bits(p.grad.numpy()), n


def test_shape_change_retraces_and_same_shape_does_not():
    m = mlp(nn.ReLU, "float32", 1)
    step = CompiledStep(m, F.mse_loss)
    data = list(batches("float32", "mse", n=3, batch=8))
    step(*data[0])
    step(*data[1])
    assert step.traces == 1
    x, y = next(batches("float32", "mse", n=1, batch=5))
    loss = step(x, y)
    assert step.traces == 2
    m.zero_grad()
    assert bits(F.mse_loss(m(x), y).numpy()) == bits(loss.numpy())
    m.to("float64")
    step(x.double(), y.double())
    assert step.traces == 3


def test_dropout_in_training_mode_redraws_masks_bit_identically():
    def build():
        tl.manual_seed(0)
        return nn.Sequential(nn.Linear(7, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 16),
                             nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 1))

    eager, comp = build(), build()
    opt_e, opt_c = SGD(eager.parameters(), lr=0.05), SGD(comp.parameters(), lr=0.05)
    step = CompiledStep(comp, F.mse_loss)
    losses = []
    for k, (x, y) in enumerate(batches("float32", "mse", n=10)):
        tl.manual_seed(100 + k)
        eager.zero_grad()
        le = F.mse_loss(eager(x), y)
        le.backward()
        tl.manual_seed(100 + k)
        lc = step(x, y)
        assert bits(le.numpy()) == bits(lc.numpy())
        losses.append(lc.item())
        opt_e.step()
        opt_c.step()
    assert len(set(losses)) == len(losses)  # masks really change from step to step
    assert step.traces == 1
    for a, b in zip(eager.state_dict().values(), comp.state_dict().values(), strict=True):
        assert bits(a) == bits(b)
    # the generator advanced exactly as in eager: the next draw agrees
    tl.manual_seed(7)
    step(x, y)
    after_compiled = tl.runtime.random.generator().random()
    tl.manual_seed(7)
    comp.zero_grad()
    F.mse_loss(comp(x), y).backward()
    assert tl.runtime.random.generator().random() == after_compiled


def test_compile_with_dropout_in_training_mode_matches_eager():
    tl.manual_seed(0)
    m = nn.Sequential(nn.Linear(7, 8), nn.Dropout(0.5))
    x = next(batches("float32", "mse", n=1))[0]
    fwd = compile(m)
    for seed in (1, 2):
        tl.manual_seed(seed)
        got = fwd(x).numpy()
        tl.manual_seed(seed)
        assert bits(got) == bits(m(x).numpy())


def test_masks_made_outside_primitives_are_refused():
    # huber_loss computes its mask from data with numpy; so does this hand-made dropout
    m = nn.Sequential(nn.Linear(7, 1))
    x, y = next(batches("float32", "mse", n=1))

    def my_dropout(o, t):
        keep = tl.Tensor((np.random.default_rng(0).random(o.shape) > 0.5).astype(np.float32))
        return F.mse_loss(o * keep, t)

    with pytest.raises(TraceError, match="outside torchlean's primitives"):
        CompiledStep(m, my_dropout)(x, y)
    with pytest.raises(TraceError, match="outside torchlean's primitives"):
        CompiledStep(m, F.huber_loss)(x, y)


def test_trace_reproduces_eager_and_survives_json():
    m = mlp(nn.ReLU, "float32", 3)
    x = next(batches("float32", "mse", n=1))[0]
    g = trace(m, x)
    assert [v.name for v in g.inputs] == ["input0"]
    assert set(g.constants) >= {"0.weight", "0.bias", "3.weight"}
    want = m(x).numpy()
    assert bits(run_graph(g, {"input0": x.numpy()})[0]) == bits(want)
    g2 = Graph.from_json(g.to_json())
    assert bits(run_graph(g2, {"input0": x.numpy()})[0]) == bits(want)
    assert g2.fingerprint() == g.fingerprint()
    text = g.summary()
    assert "matmul" in text and "relu" in text and "input0: float32[16, 7]" in text


def test_trace_integer_indices_and_boolean_mask_are_inputs():
    def fn(x, idx, mask):
        picked = F.gather(F.log_softmax(x, 1), 1, idx)
        return F.where(mask, picked, picked * 2.0)

    rng = np.random.default_rng(3)
    x = tl.tensor(rng.standard_normal((4, 5)), dtype="float64")
    idx = tl.tensor(rng.integers(0, 5, size=(4, 1)))
    mask = tl.Tensor(rng.random((4, 1)) > 0.5)
    g = trace(fn, x, idx, mask)
    assert [v.dtype for v in g.inputs] == ["float64", "int64", "bool"]
    feeds = {"input0": x.numpy(), "input1": idx.numpy(), "input2": mask.numpy()}
    assert bits(run_graph(g, feeds)[0]) == bits(fn(x, idx, mask).numpy())
    # a different index and mask flow through the graph: they are values, not frozen constants
    idx2, mask2 = tl.tensor(np.zeros((4, 1), dtype=np.int64)), tl.Tensor(~mask.numpy())
    feeds2 = {"input0": x.numpy(), "input1": idx2.numpy(), "input2": mask2.numpy()}
    assert bits(run_graph(g, feeds2)[0]) == bits(fn(x, idx2, mask2).numpy())


def test_compile_inference_follows_weight_updates():
    m = mlp(nn.Tanh, "float64", 2)
    fwd = compile(m)
    x = next(batches("float64", "mse", n=1))[0]
    assert bits(fwd(x).numpy()) == bits(m(x).numpy())
    for p in m.parameters():
        p.data *= 0.5
    assert bits(fwd(x).numpy()) == bits(m(x).numpy())
    assert fwd.traces == 1


def test_relu_vjp_rewrite_is_exact_on_special_values():
    from torchlean.runtime.rules import RULES

    special = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3.5],
                       dtype=np.float32)
    x, g = np.meshgrid(special, special)
    out = RULES["relu"].forward(np, x)
    (want,) = RULES["relu"].vjp(np, g, out, x)
    got = g * np.greater(out, 0)
    assert bits(got) == bits(want)
    buf = g.copy()
    np.multiply(buf, np.greater(out, 0), out=buf)
    assert bits(buf) == bits(want)


def test_plan_frees_and_reuses_buffers():
    m = mlp(nn.ReLU, "float32", 1)
    step = CompiledStep(m, F.mse_loss)
    step(*next(batches("float32", "mse", n=1)))
    src = step.source
    assert "del " in src and "out=" in src
    assert "Tensor" not in src


def test_buffer_side_effects_are_refused_even_in_place():
    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(7, 1)
            self.register_buffer("seen", tl.zeros(1))

        def forward(self, x):
            self.seen.data += 1  # in place: the array's identity does not change
            return self.lin(x)

    x, y = next(batches("float32", "mse", n=1))
    with pytest.raises(TraceError, match="side effect"):
        CompiledStep(Counter(), F.mse_loss)(x, y)


def test_batchnorm_running_stats_planned_in_training_and_exact_in_eval():
    def build():
        tl.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 6 * 6, 3))

    rng = np.random.default_rng(0)
    x, y = tl.tensor(rng.standard_normal((5, 3, 6, 6))), tl.tensor(rng.integers(0, 3, 5))
    # training: the plan returns the running statistics' updates (trace.assign) and the step
    # stores them, once per step, bit for bit as eager execution leaves them
    eager, comp = build(), build()
    step = CompiledStep(comp, F.cross_entropy)
    for _ in range(3):
        eager.zero_grad()
        le = F.cross_entropy(eager(x), y)
        le.backward()
        lc = step(x, y)
        assert bits(le.numpy()) == bits(lc.numpy())
        for (_, be), (_, bc) in zip(eager.named_buffers(), comp.named_buffers(), strict=True):
            assert bits(be.numpy()) == bits(bc.numpy())
        for pe, pc in zip(eager.parameters(), comp.parameters(), strict=True):
            assert bits(pe.grad.numpy()) == bits(pc.grad.numpy())
    assert step.traces == 1
    assert any(bits(b.numpy()) != bits(build()[1].running_mean.numpy())
               for n, b in comp.named_buffers() if n.endswith("running_mean"))  # they did move
    m = eager
    m.eval()
    lc = CompiledStep(m, F.cross_entropy)(x, y)
    grads = [p.grad.numpy().copy() for p in m.parameters()]
    m.zero_grad()
    le = F.cross_entropy(m(x), y)
    le.backward()
    assert bits(le.numpy()) == bits(lc.numpy())
    assert all(bits(g) == bits(p.grad.numpy()) for g, p in zip(grads, m.parameters(), strict=True))


def test_transformer_with_dropout_trains_bit_identically():
    def build():
        tl.manual_seed(0)
        return nn.Sequential(nn.Embedding(10, 8),
                             nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True),
                             nn.Flatten(), nn.Linear(4 * 8, 3))

    rng = np.random.default_rng(0)
    x, y = tl.tensor(rng.integers(0, 10, (5, 4))), tl.tensor(rng.integers(0, 3, 5))
    eager, comp = build(), build()
    step = CompiledStep(comp, lambda o, t: F.cross_entropy(F.dropout(o, 0.2), t))
    for k in range(3):
        tl.manual_seed(k)
        eager.zero_grad()
        le = F.cross_entropy(F.dropout(eager(x), 0.2), y)
        le.backward()
        tl.manual_seed(k)
        lc = step(x, y)
        assert bits(le.numpy()) == bits(lc.numpy())
        for pe, pc in zip(eager.parameters(), comp.parameters(), strict=True):
            assert bits(pe.grad.numpy()) == bits(pc.grad.numpy())
            pe.data -= 0.1 * pe.grad.data
            pc.data -= 0.1 * pc.grad.data


class _OpZoo(nn.Module):
    """Every inline template and its broadcasting/sum_to paths, in one differentiable forward."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(5)
        self.w = nn.Parameter(tl.tensor(rng.standard_normal((6, 4)), dtype="float64").data)
        self.row = nn.Parameter(tl.tensor(rng.standard_normal((1, 4)), dtype="float64").data)
        self.col = nn.Parameter(tl.tensor(rng.standard_normal((5, 1)), dtype="float64").data)
        self.s = nn.Parameter(tl.tensor(1.5, dtype="float64").data)

    def forward(self, x):
        h = F.relu(x @ self.w) - self.row          # matmul, relu, sub with a broadcast operand
        h = h * self.col + self.s                    # mul/add with column and scalar broadcasts
        m = F.mean(h, dim=1, keepdim=True) - F.sum(h, dim=0) / 7.0
        t = F.tanh(m) * F.exp(-F.amax(h, dim=1, keepdim=True))
        return F.softmax(t * h, dim=1) / (h.T.sum() + 100.0) + F.mean(h * h, dim=(0, 1))


def test_inline_templates_and_broadcast_paths_match_eager():
    x = tl.tensor(np.random.default_rng(6).standard_normal((5, 6)), dtype="float64")
    y = tl.tensor(np.zeros((5, 4)), dtype="float64")
    m = _OpZoo()
    m.zero_grad()
    le = F.mse_loss(m(x), y)
    le.backward()
    want = [p.grad.numpy().copy() for p in m.parameters()]
    lc = CompiledStep(m, F.mse_loss)(x, y)
    assert bits(le.numpy()) == bits(lc.numpy())
    for g, p in zip(want, m.parameters(), strict=True):
        assert bits(g) == bits(p.grad.numpy())


def test_switching_one_submodule_to_eval_retraces():
    tl.manual_seed(0)
    m = nn.Sequential(nn.Linear(7, 16), nn.Dropout(0.5), nn.Linear(16, 1))
    step = CompiledStep(m, F.mse_loss)
    x, y = next(batches("float32", "mse", n=1))
    step(x, y)
    m[1].eval()  # the root stays in training mode
    lc = step(x, y)
    assert step.traces == 2
    assert bits(lc.numpy()) == bits(F.mse_loss(m(x), y).numpy())


def test_declared_shape_only_constant_is_accepted():
    from torchlean.runtime.trace import constant

    class Causal(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4, dtype="float64")

        def forward(self, x):
            n = x.shape[0]
            upper = tl.Tensor(np.triu(np.ones((n, n), dtype=bool), 1))
            scores = self.lin(x) @ x.T
            return F.where(constant(upper) if self.declare else upper, -1e9, scores)

    m = Causal()
    rng = np.random.default_rng(0)
    x = tl.tensor(rng.standard_normal((3, 4)), dtype="float64")
    y = tl.tensor(np.zeros((3, 3)), dtype="float64")
    m.declare = False
    with pytest.raises(TraceError, match="constant"):
        CompiledStep(m, F.mse_loss)(x, y)
    m.declare = True
    lc = CompiledStep(m, F.mse_loss)(x, y)
    m.zero_grad()
    le = F.mse_loss(m(x), y)
    le.backward()
    assert bits(le.numpy()) == bits(lc.numpy())


def test_mixed_precision_graph_is_exact_and_keeps_backward_out_of_place():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(7, 8)  # float32

        def forward(self, x):
            h = F.relu(self.lin(x))
            return (h * tl.tensor(1.5, dtype="float64")) + F.tanh(h)  # float64 from here on

    m = Mixed()
    x, _ = next(batches("float32", "mse", n=1))
    y = tl.tensor(np.zeros((16, 8)), dtype="float64")
    m.zero_grad()
    le = F.mse_loss(m(x), y)
    le.backward()
    want = [p.grad.numpy().copy() for p in m.parameters()]
    step = CompiledStep(m, F.mse_loss)
    lc = step(x, y)
    assert le.dtype == lc.dtype == np.float64
    assert bits(le.numpy()) == bits(lc.numpy())
    assert all(bits(g) == bits(p.grad.numpy()) for g, p in zip(want, m.parameters(), strict=True))
    backward = step.source.split("ones_like")[1]
    assert "out=" not in backward


def test_batchnorm_cumulative_average_is_refused_not_frozen():
    """momentum=None reads num_batches_tracked's value into a Python float each step: a plan would
    freeze it, so the compiled step refuses (and the buffers are left as they were)."""
    tl.manual_seed(0)
    m = nn.Sequential(nn.BatchNorm1d(3, momentum=None), nn.Linear(3, 2))
    x, y = tl.tensor(np.random.default_rng(0).standard_normal((6, 3))), tl.tensor(np.arange(6) % 2)
    with pytest.raises(TraceError, match="momentum=None"):
        CompiledStep(m, F.cross_entropy)(x, y)
    assert int(m[0].num_batches_tracked.item()) == 0
    F.cross_entropy(m(x), y).backward()  # eager still trains
    assert int(m[0].num_batches_tracked.item()) == 1
