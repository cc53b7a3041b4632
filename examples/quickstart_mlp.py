"""Quickstart: a small MLP. Build it, train it with ``Trainer`` on a toy regression, predict."""

import numpy as np

import torchlean as tl
from torchlean import nn


def main() -> None:
    tl.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(256, 2))
    y = np.sin(x[:, :1]) + 0.5 * x[:, 1:] ** 2  # a smooth target of 2 inputs

    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
    trainer = tl.Trainer(model, task="regression", optimizer="adam", lr=0.02)
    print("MSE before:", round(trainer.eval((x, y))["loss"], 4))
    trained = trainer.train((x, y), steps=300, batch_size=32, log_every=100, progress=False)
    print("MSE after: ", round(trained.eval((x, y))["loss"], 4))
    print("f(1, 1) ≈", trained.predict([[1.0, 1.0]])[0, 0].round(3), " true:", round(np.sin(1) + 0.5, 3))
    trained.print_summary()


if __name__ == "__main__":
    main()
