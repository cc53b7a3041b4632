"""Sequence models on a generated time series (``python -m torchlean lstm`` / ``gru``).

Data: the Lotka-Volterra predator-prey system dx/dt = a·x - b·x·y, dy/dt = d·x·y - c·y with
(a, b, c, d) = (1.0, 0.4, 0.6, 0.2) from (x, y) = (6, 2), integrated with classical Runge-Kutta
(step 0.01, one sample every 10 steps) for 1,200 samples, plus Gaussian noise (std 0.5% of the
range), standardised with the training part's mean and std. Windows of ``WINDOW`` consecutive
samples predict the next sample (both populations); the first 80% of the series is for training,
the rest (later in time) for testing, so the test measures forecasting, not interpolation.

Model: ``nn.LSTM`` or ``nn.GRU`` (batch_first, hidden 32) and a Linear head on the last step.
The baseline is persistence (tomorrow = today): a model that does not beat it learnt nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _outward
from ..runtime.data import SplitData
from ..runtime.nn import GRU, LSTM, Linear, Module
from ._fit import versus

__all__ = ["Forecaster", "Series", "load", "lotka_volterra"]

WINDOW = 16
PARAMS = (1.0, 0.4, 0.6, 0.2)


def lotka_volterra(n: int = 1200, dt: float = 0.01, every: int = 10, start: tuple[float, float] = (6.0, 2.0)
                   ) -> np.ndarray:
    """(n, 2) samples of the predator-prey system (module docstring), RK4 with step ``dt``."""
    a, b, c, d = PARAMS

    def f(s: np.ndarray) -> np.ndarray:
        x, y = s
        return np.array([a * x - b * x * y, d * x * y - c * y])

    s = np.array(start, dtype=np.float64)
    out = np.empty((n, 2))
    for i in range(n * every):
        if i % every == 0:
            out[i // every] = s
        k1 = f(s)
        k2 = f(s + dt / 2 * k1)
        k3 = f(s + dt / 2 * k2)
        k4 = f(s + dt * k3)
        s = s + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return out


class Series(SplitData):
    """Windows (N, WINDOW, 2) and next samples (N, 2), float32, standardised; train then test."""

    def persistence_mse(self) -> float:
        """Test MSE of predicting the last sample of each window (the baseline to beat)."""
        return float(np.mean((self.x_test[:, -1] - self.y_test) ** 2))


def load(seed: int = 0, window: int = WINDOW, test_fraction: float = 0.2) -> Series:
    """The noisy, standardised series cut into windows (module docstring)."""
    raw = lotka_volterra()
    raw = raw + np.random.default_rng(seed).normal(scale=0.005 * np.ptp(raw, axis=0), size=raw.shape)
    cut = int(len(raw) * (1 - test_fraction))
    mean, std = raw[:cut].mean(0), raw[:cut].std(0)
    z = ((raw - mean) / std).astype(np.float32)
    xs = np.stack([z[i:i + window] for i in range(len(z) - window)])
    ys = z[window:]
    n_train = cut - window
    return Series(xs[:n_train], ys[:n_train], xs[n_train:], ys[n_train:])


class Forecaster(Module):
    """A recurrent layer (``kind`` "lstm" or "gru") and a Linear head on its last output."""

    def __init__(self, kind: str = "lstm", hidden: int = 32, features: int = 2):
        super().__init__()
        cls = {"lstm": LSTM, "gru": GRU}.get(kind)
        if cls is None:
            raise ValueError(f"Forecaster: kind must be 'lstm' or 'gru', got {kind!r}")
        self.rnn = cls(features, hidden, batch_first=True)
        self.head = Linear(hidden, features)

    def forward(self, x: Any) -> Any:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def run(args: Any) -> int:
    """``python -m torchlean lstm|gru`` (flags in ``torchlean.__main__``): train and report."""
    import torchlean as tl

    data = load()
    tl.manual_seed(args.seed)
    net = Forecaster(args.command, args.hidden)
    trainer = tl.Trainer(net, task="regression", optimizer=args.optimizer, lr=args.lr, backend=args.backend,
                         dtype=args.dtype, device=args.device, seed=args.seed)
    print(f"Lotka-Volterra series: {len(data.x_train)} train / {len(data.x_test)} test windows of {WINDOW} "
          f"steps (test later in time); {args.command.upper()} hidden {args.hidden}, "
          f"{net.num_parameters()} parameters; {args.dtype} on {args.device}, {args.backend} backend")
    print(f"test MSE (standardised) before: {trainer.eval(data.test())['loss']:.4f}; "
          f"persistence baseline: {data.persistence_mse():.4f}")
    trained = trainer.train(data.train(), steps=args.steps, batch_size=args.batch_size,
                            log_every=args.log_every, log_path=args.log, progress=args.progress)
    after = trained.eval(data.test())["loss"]
    note = " (interrupted)" if trained.interrupted else ""
    print(f"test MSE (standardised) after {trained.steps} steps{note}: {after:.4f} "
          f"({versus(after, data.persistence_mse(), 'persistence')}; {trained.time_s:.1f} s)")
    if not np.isfinite(after):
        raise ValueError("training diverged (non-finite loss); try a smaller --lr")
    if args.log:
        print(f"training log: {args.log}")
    if args.save:
        print(f"checkpoint: {trained.save(args.save)}")
    if args.certify:
        from .claims import print_claims

        series = np.concatenate([data.x_train.reshape(-1, 2), data.y_train, data.x_test.reshape(-1, 2),
                                 data.y_test])
        lo, hi = series.min(0), series.max(0)  # the standardised series' range, per population
        box = [(float(lo[j]), float(hi[j])) for _ in range(WINDOW) for j in range(2)]
        kind, hidden = args.command, args.hidden
        print_claims(args, trained.model, data.x_test[:1], box,
                     f"the {kind.upper()} forecaster on the series' range box over its {WINDOW}-step window "
                     f"([{_outward.up(lo[0], 3)}, {_outward.down(hi[0], 3)}] x "  # (inward: audit41)
                     f"[{_outward.up(lo[1], 3)}, {_outward.down(hi[1], 3)}] per step)",
                     kind, lambda: Forecaster(kind, hidden), (1, WINDOW, 2),
                     note=f"(loose by design of the analysis, not of the network: its IBP ranges wrap "
                          f"through the {WINDOW} recurrent steps, so the gates' errors are capped by their "
                          "output ranges (sigmoid, tanh) rather than rounding-sized; compare the observed "
                          "error)")
    return 0
