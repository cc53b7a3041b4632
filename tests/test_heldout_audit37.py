"""Audit audit37: the compiled backend (``CompiledStep``, ``compile``) against eager execution.

The claim: ``step(x, y)`` leaves the loss and every parameter's ``.grad`` bit-identical to
``model.zero_grad(); loss_fn(model(x), y).backward()``. Each test here changes something between
two calls (the input's values, a layer, a parameter object, ``requires_grad``, a dropout rate, a
momentum, a closure) or uses something the plan cannot repeat (Python control flow on a value, a
stray random draw, a side effect on Python state), and asserts that the compiled step either
matches eager bit for bit (and PyTorch to rounding) or refuses with ``TraceError``. On the code
before audit37 all but one (the first-call cache, a guard against over-refusing) fail: a silently
different loss, gradient, output or missing error (TRUST_BOUNDARIES "Audit audit37").
"""

from __future__ import annotations

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.runtime.compiled import CompiledStep, TraceError, compile
from torchlean.runtime.tensor import Tensor

RNG = np.random.default_rng(37)
X = RNG.standard_normal((5, 3)).astype(np.float32)
Y = RNG.standard_normal((5, 2)).astype(np.float32)


def bits(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a)
    return a.dtype.str.encode() + str(a.shape).encode() + a.tobytes()


def mse(o: Tensor, y: Tensor) -> Tensor:
    d = o - y
    return (d * d).mean()


def eager(model: nn.Module, loss_fn, x, y) -> tuple[bytes, list[bytes | None]]:
    model.zero_grad()
    loss = loss_fn(model(Tensor(np.asarray(x))), Tensor(np.asarray(y)))
    loss.backward()
    return bits(loss.data), [None if p.grad is None else bits(p.grad.data) for p in model.parameters()]


def compiled(step: CompiledStep, model: nn.Module, x, y) -> tuple[bytes, list[bytes | None]]:
    loss = step(x, y)
    return bits(loss.data), [None if p.grad is None else bits(p.grad.data) for p in model.parameters()]


def mlp(seed: int = 0) -> nn.Sequential:
    tl.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def torch_grads(model: nn.Sequential, x: np.ndarray, y: np.ndarray, frozen=()) -> dict:
    """PyTorch's gradients, by torchlean's parameter name, for an MLP of Linear/ReLU layers with
    ``model``'s weights (the independent reference; ``frozen``: names with requires_grad off)."""
    torch = pytest.importorskip("torch")
    layers, params = [], {}
    for i, m in enumerate(model):
        if isinstance(m, nn.Linear):
            lin = torch.nn.Linear(m.weight.shape[1], m.weight.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.tensor(m.weight.numpy()))
                lin.bias.copy_(torch.tensor(m.bias.numpy()))
            layers.append(lin)
            params[f"{i}.weight"], params[f"{i}.bias"] = lin.weight, lin.bias
        else:
            layers.append(torch.nn.ReLU())
    for name in frozen:
        params[name].requires_grad_(False)
    out = torch.nn.Sequential(*layers)(torch.tensor(x))
    ((out - torch.tensor(y)) ** 2).mean().backward()
    return {k: None if p.grad is None else p.grad.numpy() for k, p in params.items()}


def assert_close_to_torch(model: nn.Sequential, ref: dict) -> None:
    names = dict(model.named_parameters())
    assert sorted(names) == sorted(ref)
    for k, r in ref.items():
        if r is None:
            assert names[k].grad is None, k
        else:
            np.testing.assert_allclose(names[k].grad.numpy(), r, rtol=1e-5, atol=1e-6, err_msg=k)


# -- Python control flow and reads of values that change between steps -----------------------


class Flip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        y = self.fc(x)
        return y if x.sum() > 0 else -y


class Normalise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x) / float(x.abs().max())


class Gate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x) * (x.sum() > 0)  # a 0-d comparison: strict tracing let it through


@pytest.mark.parametrize("cls", [Flip, Normalise, Gate])
def test_value_dependent_python_is_refused_or_exact(cls):
    tl.manual_seed(0)
    model = cls()
    step = CompiledStep(model, mse)
    x1, x2 = np.abs(X), -3 * np.abs(X)
    with pytest.raises(TraceError, match="input-dependent"):
        compiled(step, model, x1, Y)
        # (the old code got here and then differed from eager on x2)
        assert compiled(step, model, x2, Y) == eager(model, mse, x2, Y)


def test_compile_refuses_control_flow_on_values():
    tl.manual_seed(0)
    model = Flip()
    fast = compile(model)
    with pytest.raises(TraceError, match="input-dependent"):
        fast(np.abs(X))
        assert bits(fast(-np.abs(X)).data) == bits(model(Tensor(-np.abs(X))).data)


def test_loss_reading_its_own_value_is_refused():
    tl.manual_seed(0)
    model = nn.Linear(3, 2)

    def scaled(o: Tensor, y: Tensor) -> Tensor:  # a "normalised" loss through .item()
        return mse(o, y) * tl.tensor(o.abs().max().item())

    step = CompiledStep(model, scaled)
    with pytest.raises(TraceError):
        compiled(step, model, X, Y)
        assert compiled(step, model, 2 * X, Y) == eager(model, scaled, 2 * X, Y)


def test_stray_random_draws_are_refused_dropout_is_not():
    class Coin(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(x) * 2 if tl.rand(()) < 0.5 else self.fc(x)

    tl.manual_seed(0)
    model = Coin()
    step = CompiledStep(model, mse)
    with pytest.raises(TraceError, match="random"):
        tl.manual_seed(1)
        got = [compiled(step, model, X, Y) for _ in range(4)]
        tl.manual_seed(1)
        assert got == [eager(model, mse, X, Y) for _ in range(4)]
    # dropout's masks are redrawn by the plan, in eager's order: still exact
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    step = CompiledStep(model, mse)
    tl.manual_seed(3)
    got = [compiled(step, model, X, Y) for _ in range(3)]
    tl.manual_seed(3)
    assert got == [eager(model, mse, X, Y) for _ in range(3)]


def test_forward_changing_python_state_every_call_is_refused():
    class Counter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.calls = 0

        def forward(self, x: Tensor) -> Tensor:
            self.calls += 1
            return self.fc(x) * self.calls

    tl.manual_seed(0)
    model = Counter()
    step = CompiledStep(model, mse)
    with pytest.raises(TraceError, match="Python state"):
        compiled(step, model, X, Y)
        assert compiled(step, model, X, Y) == eager(model, mse, X, Y)


def test_state_set_once_on_first_call_is_traced_again_and_exact_with_dropout():
    class Lazy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.drop, self.out = nn.Linear(3, 8), nn.Dropout(0.3), nn.Linear(8, 2)
            self.scale = None

        def forward(self, x: Tensor) -> Tensor:
            if self.scale is None:  # a cache filled on the first call: fine for a plan
                self.scale = 2.0
            return self.out(self.drop(self.fc(x))) * self.scale

    tl.manual_seed(0)
    a = Lazy()
    state = a.state_dict()
    step = CompiledStep(a, mse)
    tl.manual_seed(9)
    got = [compiled(step, a, X, Y) for _ in range(3)]
    tl.manual_seed(0)
    b = Lazy()
    b.load_state_dict(state)
    tl.manual_seed(9)  # (the second trace rewound the generator: the masks are eager's)
    assert got == [eager(b, mse, X, Y) for _ in range(3)]


# -- the model's structure and attributes changed between calls ------------------------------


def test_requires_grad_toggled_between_calls():
    model = mlp()
    step = CompiledStep(model, mse)
    compiled(step, model, X, Y)
    model[0].weight.requires_grad = False
    got = compiled(step, model, X, Y)
    assert got[1][0] is None  # the old plan still wrote a gradient into the frozen weight
    assert got == eager(model, mse, X, Y)
    assert_close_to_torch(model, torch_grads(model, X, Y, frozen=("0.weight",)))
    model[0].weight.requires_grad = True
    assert compiled(step, model, X, Y) == eager(model, mse, X, Y)


def test_parameter_object_replaced_between_calls():
    model = mlp()
    step = CompiledStep(model, mse)
    compiled(step, model, X, Y)
    model[2].weight = nn.Parameter(Tensor(np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)))
    assert compiled(step, model, X, Y) == eager(model, mse, X, Y)
    assert_close_to_torch(model, torch_grads(model, X, Y))


def test_weights_tied_after_first_call():
    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 2))
    step = CompiledStep(model, mse)
    compiled(step, model, X, Y)
    model[1].weight = model[0].weight  # one Parameter used twice: its grad is the sum
    assert compiled(step, model, X, Y) == eager(model, mse, X, Y)


def test_layer_appended_after_first_call():
    model = mlp()
    step = CompiledStep(model, mse)
    compiled(step, model, X, Y)
    model.append(nn.Linear(2, 2))
    got = compiled(step, model, X, Y)
    assert len(got[1]) == 6 and got[1][-1] is not None
    assert got == eager(model, mse, X, Y)


def test_dropout_rate_changed_between_calls():
    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    step = CompiledStep(model, mse)
    compiled(step, model, X, Y)
    model[1].p = 0.1
    tl.manual_seed(5)
    got = compiled(step, model, X, Y)
    tl.manual_seed(5)
    assert got == eager(model, mse, X, Y)


def test_batchnorm_momentum_changed_between_calls():
    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    step = CompiledStep(model, mse)
    compiled(step, model, X, Y)
    model[1].momentum = 0.5
    state = model.state_dict()
    compiled(step, model, X, Y)
    planned = model[1].running_mean.numpy().copy()
    model.load_state_dict(state)
    eager(model, mse, X, Y)
    assert bits(planned) == bits(model[1].running_mean.numpy())


def test_loss_closure_changed_between_calls():
    model = mlp()
    scale = 1.0
    weights = {"w": 1.0}

    def loss_fn(o: Tensor, y: Tensor) -> Tensor:
        return mse(o, y) * scale * weights["w"]

    step = CompiledStep(model, loss_fn)
    compiled(step, model, X, Y)
    scale = 3.0
    assert compiled(step, model, X, Y) == eager(model, loss_fn, X, Y)
    weights["w"] = 0.25
    assert compiled(step, model, X, Y) == eager(model, loss_fn, X, Y)


def test_negative_zero_attribute_retraces():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.c = 0.0

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(x) * self.c

    tl.manual_seed(0)
    model = Scaled()
    fast = compile(model)
    fast(X)
    model.c = -0.0  # == 0.0 in Python, yet the output's zeros change sign
    assert bits(fast(X).data) == bits(model(Tensor(X)).data)


# -- inputs --------------------------------------------------------------------------------


def test_embedding_index_out_of_range_after_trace_raises_like_torch():
    torch = pytest.importorskip("torch")
    tl.manual_seed(0)
    model = nn.Embedding(5, 2)

    def loss_fn(o: Tensor, y: Tensor) -> Tensor:
        return mse(o.sum(1), y)

    step = CompiledStep(model, loss_fn)
    y = np.ones((2, 2), np.float32)
    assert compiled(step, model, np.array([[0, 1], [2, 3]]), y) == eager(
        model, loss_fn, np.array([[0, 1], [2, 3]]), y)
    bad = np.array([[0, -1], [2, 3]])  # numpy would wrap -1 around to row 4
    with pytest.raises(IndexError):
        torch.nn.Embedding(5, 2)(torch.tensor(bad))
    with pytest.raises(IndexError, match="out of range"):
        step(bad, y)
    with pytest.raises(IndexError, match="out of range"):
        model(Tensor(bad))


def test_list_input_uses_torchleans_conversion():
    model = mlp()
    step = CompiledStep(model, mse)
    got = compiled(step, model, X.tolist(), Y.tolist())
    model.zero_grad()
    loss = mse(model(tl.tensor(X.tolist())), tl.tensor(Y.tolist()))
    loss.backward()
    assert got == (bits(loss.data), [bits(p.grad.data) for p in model.parameters()])


def test_input_that_requires_grad_is_refused():
    model = mlp()
    step = CompiledStep(model, mse)
    x = Tensor(X, requires_grad=True)  # eager backward would fill x.grad (adversarial training)
    with pytest.raises(TraceError, match="requires grad"):
        step(x, Y)


# -- end to end: the Trainer's compiled backend ------------------------------------------------


def test_trainer_compiled_respects_a_layer_frozen_mid_training():
    """Fine-tuning: freeze the first layer after 5 steps. Eager (and PyTorch: a parameter without
    requires_grad gets no grad, Adam skips it) leaves it unchanged; the old compiled step kept
    writing its gradient and Adam moved the "frozen" weight by 0.04."""
    x = RNG.standard_normal((64, 3)).astype(np.float32)
    y = RNG.standard_normal((64, 2)).astype(np.float32)
    finals = {}
    for backend in ("eager", "compiled"):
        net = mlp()
        trainer = tl.Trainer(net, task="regression", optimizer="adam", lr=1e-2, seed=0, backend=backend)
        trainer.train((x, y), steps=5, batch_size=16, progress=False)
        frozen = net[0].weight.numpy().copy(), net[0].bias.numpy().copy()
        net[0].weight.requires_grad = False
        net[0].bias.requires_grad = False
        trainer.train((x, y), steps=5, batch_size=16, progress=False)
        assert bits(net[0].weight.numpy()) == bits(frozen[0])
        assert bits(net[0].bias.numpy()) == bits(frozen[1])
        finals[backend] = [bits(p.numpy()) for p in net.parameters()]
    assert finals["compiled"] == finals["eager"]


def test_compile_keeps_the_models_output_container():
    class One(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: Tensor):
            return (self.fc(x),)  # `(out,) = model(x)` must unpack the tensor, not its rows

    class Two(One):
        def forward(self, x: Tensor):
            y = self.fc(x)
            return [y, y * 2]

    tl.manual_seed(0)
    for cls in (One, Two):
        model = cls()
        want = model(Tensor(X[:1]))
        got = compile(model)(X[:1])
        assert type(got) is type(want) and len(got) == len(want)
        assert [bits(g.data) for g in got] == [bits(w.data) for w in want]


def test_cross_entropy_class_range_checked_on_every_batch():
    """``cross_entropy`` refuses a target outside [0, C) (numpy's gather would wrap -1 round to the
    last class); the check read the values in Python, so the old plan ran it once, at the trace."""
    torch = pytest.importorskip("torch")
    tl.manual_seed(0)
    model = nn.Linear(3, 4)
    loss_fn = nn.CrossEntropyLoss()
    step = CompiledStep(model, loss_fn)
    good, bad = np.array([0, 3, 1, 2, 0]), np.array([0, 3, 1, -1, 0])
    assert compiled(step, model, X, good) == eager(model, loss_fn, X, good)
    with pytest.raises(IndexError):
        torch.nn.functional.cross_entropy(torch.tensor(X[:, :3] @ np.ones((3, 4), np.float32)),
                                          torch.tensor(bad))
    with pytest.raises(IndexError, match="class index"):
        step(X, bad)
    with pytest.raises(IndexError, match="class index"):
        eager(model, loss_fn, X, bad)
    assert compiled(step, model, X, good) == eager(model, loss_fn, X, good)


def test_a_refused_step_leaves_the_generator_as_it_was():
    """Falling back to eager after a TraceError must draw eager's masks: the refused trace's
    dropout draws are rewound."""

    class DropThenRead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.drop = nn.Linear(3, 4), nn.Dropout(0.5)

        def forward(self, x: Tensor) -> Tensor:
            h = self.drop(self.fc(x))
            return h * 2 if h.sum() > 0 else h  # refused after the mask was drawn

    tl.manual_seed(0)
    model = DropThenRead()
    tl.manual_seed(4)
    with pytest.raises(TraceError):
        CompiledStep(model, lambda o, y: o.mean())(X, Y)
    after = tl.rand(5).numpy()
    tl.manual_seed(4)
    assert bits(after) == bits(tl.rand(5).numpy())


def test_bound_method_and_partial_losses_changed_between_calls():
    from functools import partial

    class Weighted:
        def __init__(self) -> None:
            self.w = 1.0

        def loss(self, o: Tensor, y: Tensor) -> Tensor:
            return mse(o, y) * self.w

    def scaled(o: Tensor, y: Tensor, opts: dict) -> Tensor:
        return mse(o, y) * opts["scale"]

    cfg = Weighted()
    opts = {"scale": 1.0}
    for loss_fn, change in ((cfg.loss, lambda: setattr(cfg, "w", 4.0)),
                            (partial(scaled, opts=opts), lambda: opts.update(scale=0.5))):
        model = mlp()
        step = CompiledStep(model, loss_fn)
        compiled(step, model, X, Y)
        change()
        assert compiled(step, model, X, Y) == eager(model, loss_fn, X, Y)


class _RebindInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        x.data = x.data * 2  # outside the primitives: the plan read input0 as given
        return self.fc(x)


class _ScaleInputInPlace(_RebindInput):
    def forward(self, x: Tensor) -> Tensor:
        x.data *= 2  # the caller's array, in place: eager doubles it on every call
        return self.fc(x)


class _NormaliseWeightInPlace(_RebindInput):
    def forward(self, x: Tensor) -> Tensor:
        self.fc.weight.data *= 0.5  # a raw in-place update of a parameter, every call
        return self.fc(x)


@pytest.mark.parametrize("cls", [_RebindInput, _ScaleInputInPlace, _NormaliseWeightInPlace])
def test_forward_writing_an_input_or_parameter_array_is_refused(cls):
    tl.manual_seed(0)
    model = cls()
    step = CompiledStep(model, mse)
    with pytest.raises(TraceError, match="changed an input's"):
        compiled(step, model, X.copy(), Y)
        got, x2 = compiled(step, model, X.copy(), Y), X.copy()
        assert got == eager(model, mse, x2, Y)  # (the old plan: even the first step differed)
