"""nn.RNN / nn.LSTM / nn.GRU against torch's: outputs, final states and gradients from the same
weights (loaded through torch's state-dict names), every layout (seq-first, batch_first, unbatched),
stacked layers, given initial states; bad shapes are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.spec.shapes import ShapeError

torch = pytest.importorskip("torch")

CASES = [  # (class name, kwargs)
    ("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("RNN", {"num_layers": 2, "batch_first": True}),
    ("LSTM", {}), ("LSTM", {"num_layers": 2}), ("LSTM", {"batch_first": True, "bias": False}),
    ("GRU", {}), ("GRU", {"num_layers": 3, "batch_first": True}),
]


def _pair(name: str, kw: dict, seed: int = 0):
    tl.manual_seed(seed)
    ours = getattr(nn, name)(3, 5, **kw, dtype="float64")
    theirs = getattr(torch.nn, name)(3, 5, **kw).double()
    assert set(ours.state_dict()) == set(theirs.state_dict())  # torch's names
    theirs.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in ours.state_dict().items()})
    return ours, theirs


def _t(a):
    return tl.tensor(a, dtype="float64")


def _flat(out):
    return out if not isinstance(out, tuple) else [t for o in out for t in _flat(o)]


@pytest.mark.parametrize("name, kw", CASES)
def test_matches_torch_with_gradients(name: str, kw: dict) -> None:
    ours, theirs = _pair(name, kw)
    x = np.random.default_rng(1).normal(size=(4, 2, 3))  # (L, N, H_in) or (N, L, H_in)
    a, b = ours(tl.tensor(x, dtype="float64", requires_grad=True)), theirs(torch.tensor(x))
    fa, fb = _flat(a), _flat(b)
    assert len(fa) == len(fb)
    for u, v in zip(fa, fb):
        assert u.shape == tuple(v.shape)
        assert np.allclose(u.numpy(), v.detach().numpy(), atol=1e-12)
    w = [np.random.default_rng(2 + i).normal(size=u.shape) for i, u in enumerate(fa)]
    sum((u * tl.tensor(wi, dtype="float64")).sum() for u, wi in zip(fa, w)).backward()
    sum((v * torch.tensor(wi)).sum() for v, wi in zip(fb, w)).backward()
    got = dict(ours.named_parameters())
    for k, p in theirs.named_parameters():
        assert np.allclose(got[k].grad.numpy(), p.grad.numpy(), atol=1e-10), k


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_unbatched_and_initial_state(name: str) -> None:
    ours, theirs = _pair(name, {"num_layers": 2})
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 3))
    h = rng.normal(size=(2, 5))
    state = (h, rng.normal(size=(2, 5))) if name == "LSTM" else h
    to_ours = tuple(_t(s) for s in state) if name == "LSTM" else _t(state)
    to_torch = tuple(torch.tensor(s) for s in state) if name == "LSTM" else torch.tensor(state)
    for u, v in zip(_flat(ours(_t(x), to_ours)), _flat(theirs(torch.tensor(x), to_torch))):
        assert np.allclose(u.numpy(), v.detach().numpy(), atol=1e-12)


def test_bad_shapes_are_one_line_errors() -> None:
    m = nn.LSTM(3, 5)
    with pytest.raises(ShapeError, match="input must be"):
        m(tl.tensor(np.zeros((4, 2, 7))))
    with pytest.raises(ShapeError, match="initial state"):
        m(tl.tensor(np.zeros((4, 2, 3))), (tl.tensor(np.zeros((1, 3, 5))), tl.tensor(np.zeros((1, 3, 5)))))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 5, nonlinearity="gelu")
    assert "LSTM(3, 5, num_layers=2, batch_first=True)" in repr(nn.LSTM(3, 5, 2, batch_first=True))


def test_lstm_trains_and_traces() -> None:
    tl.manual_seed(0)
    m = nn.LSTM(1, 8, batch_first=True)
    head = nn.Linear(8, 1)
    t = np.linspace(0, 6, 40)
    xs = np.stack([np.sin(t[i:i + 10]) for i in range(30)])[..., None].astype("float32")
    ys = np.sin(t[10:40])[:, None].astype("float32")
    opt = tl.optim.Adam(list(m.parameters()) + list(head.parameters()), lr=0.02)
    losses = []
    for _ in range(60):
        out, _ = m(tl.tensor(xs))
        loss = ((head(out[:, -1]) - tl.tensor(ys)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0]
    g = tl.trace(lambda x: head(m(x)[0][:, -1]), tl.tensor(xs[:1]))
    assert {n.op for n in g.nodes} >= {"sigmoid", "tanh", "matmul"}


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_forecast_command_beats_persistence(kind: str) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torchlean", kind, "--steps", "150", "--backend", "compiled"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    line = [s for s in out.stdout.splitlines() if "after 150 steps" in s][0]
    assert float(line.split("x better than persistence")[0].split("(")[-1]) > 2.0, line


def test_series_is_the_ode() -> None:
    """The generated series solves Lotka-Volterra: its conserved quantity stays put (RK4)."""
    from torchlean.zoo import sequence

    s = sequence.lotka_volterra()
    a, b, c, d = sequence.PARAMS
    v = d * s[:, 0] - c * np.log(s[:, 0]) + b * s[:, 1] - a * np.log(s[:, 1])
    assert np.ptp(v) < 1e-6 * abs(v.mean())
    data = sequence.load()
    assert data.x_train.shape[1:] == (sequence.WINDOW, 2) and len(data.x_test) == 240
    assert np.array_equal(data.x_train[1, -1], data.y_train[0])  # windows slide by one sample
