"""Audit audit31: is what `tl.verify.bounds` / `tl.verify.robustness` answer true of the MODEL the
user passes (not of one traced path)?

Before the fix, `tl.trace` froze every value a model read from its input in Python: `if x.sum() >
0:` kept one branch, `x * (x > 0)` kept the mask of the traced point (comparisons are made outside
the primitives), `x.detach()` / `x.float()` / `tl.tensor(x)` became constants, `tl.randn` noise and
`F.dropout(training=True)` kept one draw. `tl.verify` then returned checked bounds, and even a
checked "verified", that the model itself contradicts. The references here are the model run
eagerly (and the same model in PyTorch) at points of the box; the fix (a faithful trace,
`trace(..., faithful=True)`) must refuse such a model with one `TraceError` line.
"""

from __future__ import annotations

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.runtime.execute import run_graph
from torchlean.runtime.tensor import Tensor
from torchlean.runtime.trace import TraceError

F = tl.nn.functional


def _linear(w, b) -> nn.Linear:
    lin = nn.Linear(len(w[0]), len(w))
    lin.weight.data = np.asarray(w, dtype=np.float32)
    lin.bias.data = np.asarray(b, dtype=np.float32)
    return lin


class Flip(nn.Module):
    """Class 0 wins where x0 + x1 > 0, class 1 elsewhere (Python control flow on the input)."""

    def __init__(self):
        super().__init__()
        self.lin = _linear([[1.0, 1.0], [0.0, 0.0]], [1.0, 0.0])

    def forward(self, x):
        y = self.lin(x)
        if x.sum() > 0:
            return y
        return -y


class Wrapped(nn.Module):
    """``self.lin(body(x))``: one way of reading the input per test."""

    def __init__(self, body):
        super().__init__()
        self.lin = _linear([[1.0, 2.0], [-1.0, 0.5]], [0.1, -0.2])
        self.body = body

    def forward(self, x):
        return self.lin(self.body(x))


X = np.array([[0.05, 0.0]])
EPS = 0.1
P = np.array([[-0.05, -0.1]])  # a point of the box where x0 + x1 < 0 and both inputs are negative


def _run(model, p):
    with tl.no_grad():
        return model(tl.tensor(p)).numpy().astype(np.float64)


def _plain_trace_misses(model, x, p) -> bool:
    """The independent demonstration that the case is real: the one-path trace at x, evaluated at
    p, differs from the model run at p (so any bound of that graph is about something else)."""
    g = tl.trace(model, tl.tensor(x))
    (y,) = run_graph(g, {"input0": np.asarray(p, dtype=np.float32)})
    return not np.allclose(np.asarray(y, dtype=np.float64), _run(model, p), atol=1e-6)


def test_control_flow_robustness_is_refused_not_verified():
    m = Flip().eval()
    assert int(np.argmax(_run(m, X))) == 0 and int(np.argmax(_run(m, P))) == 1  # not robust at P
    assert _plain_trace_misses(m, X, P)
    with pytest.raises(TraceError, match="reads the value of an input-dependent tensor"):
        tl.verify.robustness(m, X, EPS, label=0, timeout=10)  # (the old code said "verified")


def test_control_flow_matches_torch_and_bounds_are_refused():
    torch = pytest.importorskip("torch")

    class TorchFlip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            with torch.no_grad():
                self.lin.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
                self.lin.bias.copy_(torch.tensor([1.0, 0.0]))

        def forward(self, x):
            y = self.lin(x)
            return y if x.sum() > 0 else -y

    m = Flip().eval()
    with torch.no_grad():
        ref = TorchFlip()(torch.tensor(P, dtype=torch.float32)).numpy()
    assert np.allclose(ref, _run(m, P), atol=1e-6)  # torchlean's model is torch's model
    g = tl.trace(m, tl.tensor(X))  # the old answer: bounds of this graph over the box
    lo = run_graph(g, {"input0": X.astype(np.float32)})[0] - 2.5 * EPS  # (|W|_1 eps = 0.2 for output 0)
    assert (ref[0, 0] < lo[0, 0])  # torch's output at P lies below anything that graph allows
    with pytest.raises(TraceError):
        tl.verify.bounds(m, X, EPS)


@pytest.mark.parametrize("body, why", [
    (lambda x: x * (x > 0), "comparison"),                       # a hand-written ReLU
    (lambda x: x + x.detach(), "detach"),
    # (a float-to-float .to()/.float()/.double() is the traced ``cast`` primitive since session 33:
    # tests/test_cast.py; an integer conversion is still a copy outside the tape)
    (lambda x: x + (x * 10).long(), r"\.to\(\)"),
    (lambda x: x + tl.tensor(x), "tl.tensor"),
    (lambda x: x * float(x[0, 0] > 0), r"float\(\)"),
    (lambda x: x * (2.0 if x.numpy().sum() > 0 else 1.0), r"\.numpy\(\)"),
    (lambda x: x * x.abs().max().item(), r"\.item\(\)"),
    (lambda x: F.gather(x, 1, (x * tl.tensor([[1.0, -1.0]])).argmax(dim=1, keepdim=True)) + x, "argmax"),
])
def test_values_read_or_copied_from_the_input_are_refused(body, why):
    m = Wrapped(body).eval()
    assert _plain_trace_misses(m, X, P)
    with pytest.raises(TraceError, match=why):
        tl.verify.bounds(m, X, EPS)


@pytest.mark.parametrize("body", [
    lambda x: x + 0.5 * tl.randn(*x.shape),
    lambda x: F.dropout(x, 0.5, training=True),  # dropout by hand in a model put in eval()
])
def test_random_draws_in_forward_are_refused(body):
    tl.manual_seed(3)
    m = Wrapped(body).eval()
    a, b = _run(m, X), _run(m, X)
    assert not np.allclose(a, b)  # the model itself is not one function: two runs differ
    with pytest.raises(TraceError, match="draws random numbers"):
        tl.verify.bounds(m, X, EPS)


def test_a_submodule_left_in_training_mode_is_refused():
    m = nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.5), nn.Linear(4, 3)).eval()
    m[1].train()
    with pytest.raises(ValueError, match="Dropout"):
        tl.verify.bounds(m, X, EPS)


def test_raw_data_read_is_caught_by_the_second_trace():
    # x.data escapes every hook; the trace at a second point of the box differs, so it is refused
    m = Wrapped(lambda x: x * Tensor((x.data > 0).astype(x.data.dtype))).eval()
    assert _plain_trace_misses(m, X, P)
    with pytest.raises(TraceError, match="another point of the box"):
        tl.verify.bounds(m, X, EPS)


def test_state_changed_by_forward_is_refused():
    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.calls = nn.Linear(2, 2), 0

        def forward(self, x):
            self.calls += 1
            return self.lin(x) + float(self.calls)

    m = Counter().eval()
    assert not np.allclose(_run(m, X), _run(m, X))
    with pytest.raises(TraceError):
        tl.verify.bounds(m, X, EPS)


def test_faithful_models_are_still_answered_and_sound():
    """Reading shapes, a parameter's value, Python numbers, constants made in forward: all
    input-independent, so answered; the bounds contain the model's outputs (and torch's)."""

    class Fine(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 6), nn.Linear(6, 3)

        def forward(self, x):
            scale = float(self.a.weight.abs().max().item())  # a parameter: not the input
            h = F.relu(self.a(x)) * (1.0 / scale) + tl.zeros(1, 6)
            if x.shape[0] == 1 and h.shape[1] > 2:  # shapes are static: fine
                h = h - 0.5
            return self.b(h)

    tl.manual_seed(0)
    m = Fine().eval()
    b = tl.verify.bounds(m, X, EPS)
    rng = np.random.default_rng(0)
    pts = X + rng.uniform(-EPS, EPS, (200, 2))
    ys = np.stack([_run(m, p[None])[0] for p in pts])
    assert b.contains(ys)
    r = tl.verify.robustness(m, X, 1e-4, label=int(np.argmax(_run(m, X))), timeout=10)
    assert r.verdict == "verified"


def test_raw_data_write_is_caught_by_running_the_graph():
    # writing x.data in place: the graph never sees the +1, and both traces agree with each other;
    # the graph run at the second point differs from the model run there, so it is refused
    def bump(x):
        x.data = x.data + 1.0
        return x

    m = Wrapped(bump).eval()
    with pytest.raises(TraceError, match="model run there"):
        tl.verify.bounds(m, X, EPS)


class _Head(nn.Module):
    def __init__(self, layer, n):
        super().__init__()
        self.layer, self.head = layer, nn.Linear(n, 2)

    def forward(self, x):
        y = self.layer(x)
        y = y[0] if isinstance(y, tuple) else y
        return self.head(y.reshape(1, -1))


@pytest.mark.parametrize("make, shape", [
    (lambda: _Head(nn.LSTM(3, 4, batch_first=True), 8), (1, 2, 3)),
    (lambda: _Head(nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True), 12), (1, 3, 4)),
])
def test_library_layers_are_not_refused_by_the_faithful_trace(make, shape):
    # the library's own layers read no input value in Python (a causal or padding mask is a
    # constant of the shapes); a false refusal here would make tl.verify useless on them
    tl.manual_seed(1)
    m = make().eval()
    x = np.random.default_rng(1).uniform(-1, 1, shape)
    b = tl.verify.bounds(m, x, 0.01)
    rng = np.random.default_rng(2)
    ys = np.stack([_run(m, x + rng.uniform(-0.01, 0.01, shape))[0] for _ in range(50)])
    assert b.contains(ys)


def _exact_mlp(m, x):
    """The real-number meaning of Linear-ReLU-Linear at x, in exact rationals (independent of
    every engine): the parameters' float32 values, x's float64 values."""
    from fractions import Fraction as Q

    def lin(layer, v):
        w, b = layer.weight.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)
        return [sum((Q(float(w[i, k])) * v[k] for k in range(len(v))), Q(float(b[i]))) for i in range(len(b))]

    h = [max(q, Q(0)) for q in lin(m[0], [Q(float(c)) for c in np.ravel(x)])]
    return lin(m[2], h)


def test_real_bounds_hold_exactly_and_float32_bounds_hold_for_the_run():
    """The documented claim of `bounds` is the real-number meaning: at eps = 0 it is the exact
    value (not the float32 run, which leaves it by its rounding). `float32=True` bounds the run
    itself (inputs rounded to binary32 as tl.tensor does): torchlean's and torch's float32 outputs
    lie within, and the widening stays small."""
    from fractions import Fraction as Q

    torch = pytest.importorskip("torch")
    tl.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    tm = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        for i in (0, 2):
            tm[i].weight.copy_(torch.tensor(m[i].weight.numpy()))
            tm[i].bias.copy_(torch.tensor(m[i].bias.numpy()))
    rng = np.random.default_rng(0)
    run_missed = 0
    for _ in range(10):
        x = rng.uniform(-1, 1, (1, 2))
        exact = _exact_mlp(m, x)
        b = tl.verify.bounds(m, x, 0.0)
        lows, highs = b.lower.ravel(), b.upper.ravel()
        assert all(Q(float(lo)) <= q <= Q(float(hi)) for lo, q, hi in zip(lows, exact, highs))
        ours = _run(m, x)
        run_missed += not b.contains(ours)
        for eps in (0.0, 1e-9):
            bf = tl.verify.bounds(m, x, eps, float32=True)
            with torch.no_grad():
                theirs = tm(torch.tensor(x, dtype=torch.float32)).numpy()
            assert bf.contains(ours) and bf.contains(theirs)
            assert (bf.upper - bf.lower).max() < 1e-4
            assert (bf.lower <= b.lower).all() and (bf.upper >= b.upper).all()
    assert run_missed > 0  # the reason float32=True exists: the real bounds are not the run's


def test_float32_bounds_cover_the_rounding_of_the_input_itself():
    # ReLU of positive inputs computes nothing inexact: all the run's error is tl.tensor rounding
    # x (float64) to binary32, which the bounds must cover (0.1 and 0.3 are not binary32 values)
    m = nn.Sequential(nn.ReLU()).eval()
    x = np.array([[0.1, 0.3, 1e-3]])
    y = _run(m, x)
    assert (y != x).all()  # the run's outputs are the rounded inputs, not x
    assert not tl.verify.bounds(m, x, 0.0).contains(y)
    assert tl.verify.bounds(m, x, 0.0, float32=True).contains(y)


class Constant(nn.Module):
    """An output that does not depend on the input (the box is irrelevant)."""

    def __init__(self):
        super().__init__()
        self.lin = _linear([[0.5, -1.0], [2.0, 0.25]], [0.125, -3.0])

    def forward(self, x):
        return self.lin(tl.ones(1, 2))


def test_an_output_that_does_not_depend_on_the_input_is_bounded_by_its_value():
    """Found by audit31: the fast back-substitution's charge weights of a node with no parent
    forms came out (R,) instead of (B, R) and numpy's einsum raised; now the bounds are the
    value itself, up to the fast engine's outward rounding."""
    b = tl.verify.bounds(Constant().eval(), np.zeros((1, 2)), 0.1)
    want = np.array([[0.5 - 1.0 + 0.125, 2.0 + 0.25 - 3.0]])
    assert (b.lower <= want).all() and (want <= b.upper).all(), (b.lower, b.upper)
    assert (b.upper - b.lower).max() < 1e-12


def test_the_bound_engines_caches_stay_bounded_over_many_models():
    """Found by audit31: ``fast_engine.compiled`` kept every lowered graph alive (30 calls, 30
    entries); a loop over models or data must not grow without end."""
    from torchlean.certificates import fast_engine
    from torchlean.verify import alpha

    for i in range(3 * fast_engine.CACHE_SIZE):
        lin = _linear([[1.0, float(i)], [0.0, 1.0]], [0.0, 0.0])
        b = tl.verify.bounds(lin.eval(), np.array([[0.5, -0.5]]), 0.25)
        assert b.lower[0, 0] <= 0.5 - 0.5 * i <= b.upper[0, 0]
    assert len(fast_engine._CACHE) <= fast_engine.CACHE_SIZE
    assert len(alpha._NODE_CACHE) <= alpha.NODE_CACHE_SIZE
