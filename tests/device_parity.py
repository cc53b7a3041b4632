"""The CPU-against-cuda runs shared by tests/test_fake_cupy.py (the numpy-backed stand-in, in CI)
and tests/test_gpu.py (real cupy): the same training, once per device, compared by the caller's
tolerance (bit-level for the stand-in, a few ulp in binary64 for a real GPU)."""

from __future__ import annotations

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn


def mlp(widths: tuple[int, ...], device: str) -> nn.Sequential:
    """A float64 tanh MLP (ReLU between later hidden layers) on ``device``, seeded."""
    tl.manual_seed(0)
    layers: list = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.Tanh() if i == 0 else nn.ReLU())
    return nn.Sequential(*layers).to(dtype="float64").to(device)


def mlp_steps(device: str, opt_cls, widths: tuple[int, ...], batch: int, steps: int) -> tuple[list, dict]:
    """The losses of ``steps`` optimiser steps on a fixed random regression batch, and the state."""
    model = mlp(widths, device)
    opt = opt_cls(model.parameters(), lr=0.05)
    rng = np.random.default_rng(1)
    x = tl.tensor(rng.normal(size=(batch, widths[0])), dtype="float64", device=device)
    y = tl.tensor(rng.normal(size=(batch, widths[-1])), dtype="float64", device=device)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert model[0].weight.device == device
    return losses, model.state_dict()


def trainer_run(device: str, backend: str, steps: int) -> tuple[float, dict]:
    """The Auto MPG MLP trained by ``tl.Trainer`` (Adam, float64): its test loss and state."""
    from torchlean.zoo import auto_mpg

    data = auto_mpg.load()
    tl.manual_seed(0)
    trainer = tl.Trainer(auto_mpg.mlp(), optimizer="adam", lr=0.01, dtype="float64", device=device,
                         backend=backend)
    trained = trainer.train(data.train(), steps=steps, batch_size=32, progress=False)
    assert trained.model[0].weight.device == device
    return trained.eval(data.test())["loss"], trained.model.state_dict()


def assert_same_run(cpu: tuple, cuda: tuple, rtol: float, atol: float) -> None:
    """Losses within ``rtol`` and every state entry, back on the host, within ``rtol``/``atol``."""
    if isinstance(cpu[0], float):
        assert cpu[0] == pytest.approx(cuda[0], rel=rtol)
    else:
        np.testing.assert_allclose(cpu[0], cuda[0], rtol=rtol)
    for k, v in cpu[1].items():
        assert isinstance(cuda[1][k], np.ndarray)  # state_dict comes back to the host
        np.testing.assert_allclose(v, cuda[1][k], rtol=rtol, atol=atol)
