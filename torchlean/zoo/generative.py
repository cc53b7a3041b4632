"""Generative models on the 8x8 digits: ``python -m torchlean autoencoder`` and ``vae``.

- autoencoder: 64-32-8-32-64 MLP (ReLU, sigmoid output), mean squared reconstruction error;
- vae (Kingma & Welling 2014): encoder 64-32 then two heads for the mean and log-variance of an
  8-dimensional Gaussian posterior, the reparameterisation z = mu + exp(logvar / 2) * eps with eps
  drawn from the seeded generator, decoder 8-32-64 with a sigmoid; loss = binary cross-entropy of
  the reconstruction (summed over pixels) + KL(q(z|x) || N(0, I)), averaged over the batch.

Both report the test reconstruction error next to the baseline "predict the mean training image",
and the VAE also its test ELBO bound and a few samples decoded from the prior (``--samples PNG``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..runtime.nn import Linear, Module, ReLU, Sequential, Sigmoid

__all__ = ["VAE", "autoencoder", "train"]

LATENT = 8


def autoencoder() -> Sequential:
    """The 64-32-8-32-64 autoencoder."""
    return Sequential(Linear(64, 32), ReLU(), Linear(32, LATENT), ReLU(), Linear(LATENT, 32), ReLU(),
                      Linear(32, 64), Sigmoid())


class VAE(Module):
    """A Gaussian-latent variational autoencoder (module docstring)."""

    def __init__(self, latent: int = LATENT):
        super().__init__()
        self.latent = latent
        self.encoder = Sequential(Linear(64, 32), ReLU())
        self.mu, self.logvar = Linear(32, latent), Linear(32, latent)
        self.decoder = Sequential(Linear(latent, 32), ReLU(), Linear(32, 64), Sigmoid())

    def forward(self, x: Any) -> Any:
        """The reconstruction from the posterior mean (deterministic)."""
        return self.decoder(self.mu(self.encoder(x)))

    def loss(self, x: Any, eps: np.ndarray) -> Any:
        """Negative ELBO per image: BCE(reconstruction) + KL, with noise ``eps`` (batch, latent)."""
        import torchlean as tl
        from torchlean.nn import functional as F

        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + F.exp(logvar * 0.5) * tl.tensor(eps.astype(np.float32))
        p = self.decoder(z)
        tiny = 1e-6  # keeps log away from 0 where the sigmoid saturates in float32
        bce = -(x * F.log(p + tiny) + (1 - x) * F.log(1 - p + tiny)).sum(-1)
        kl = 0.5 * (mu * mu + F.exp(logvar) - logvar - 1).sum(-1)
        return (bce + kl).mean()


def train(kind: str, steps: int = 1500, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
          progress: bool | None = None) -> tuple[Any, list[dict[str, float]], float]:
    """(trained model, history of {step, loss, time}, seconds) for ``kind`` "autoencoder" or "vae"."""
    import torchlean as tl

    from ..progress import bar
    from ..runtime.data import DataLoader, TensorDataset
    from . import digits

    data = digits.load()
    x = data.x_train.reshape(len(data.x_train), 64)
    tl.manual_seed(seed)
    net = autoencoder() if kind == "autoencoder" else VAE()
    opt = tl.optim.Adam(net.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    loader = DataLoader(TensorDataset(x), batch_size=batch_size, shuffle=True, seed=seed)
    history: list[dict[str, float]] = []
    t0, step = time.perf_counter(), 0
    with bar(total=steps, desc=kind, unit="step", enabled=progress) as p:
        while step < steps:
            for (xb,) in loader:
                if kind == "vae":
                    loss = net.loss(xb, rng.standard_normal((xb.shape[0], LATENT)))
                else:
                    loss = ((net(xb) - xb) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                p.update(1)
                if step % 50 == 0 or step == steps:
                    history.append({"step": step, "loss": float(loss), "time": time.perf_counter() - t0})
                if step == steps:
                    break
    net.eval()
    return net, history, time.perf_counter() - t0


def run(args: Any) -> int:
    """``python -m torchlean autoencoder|vae`` (flags in ``torchlean.__main__``)."""
    import torchlean as tl

    from . import digits

    data = digits.load()
    net, history, seconds = train(args.command, args.steps, seed=args.seed, progress=args.progress)
    xt = data.x_test.reshape(len(data.x_test), 64)
    mse = float(np.mean((net(tl.tensor(xt)).numpy() - xt) ** 2))
    base = float(np.mean((data.x_train.reshape(-1, 64).mean(0) - xt) ** 2))
    print(f"{args.command} on the 8x8 digits: {args.steps} Adam steps in {seconds:.1f} s; test "
          f"reconstruction MSE {mse:.4f} (mean-image baseline {base:.4f}, {base / mse:.1f}x better)")
    if args.command == "vae":
        rng = np.random.default_rng(args.seed + 1)
        elbo = float(net.loss(tl.tensor(xt), rng.standard_normal((len(xt), LATENT))))
        print(f"test negative ELBO (one sample per image): {elbo:.2f} nats per image")
        if args.samples:
            z = rng.standard_normal((16, LATENT)).astype(np.float32)
            imgs = net.decoder(tl.tensor(z)).numpy().reshape(16, 8, 8)
            from ..plot import plot_images

            print(f"wrote {plot_images(imgs, args.samples, title='VAE samples from the prior')}")
    if args.log:
        from ..runtime.trainer import write_log

        write_log(args.log, history)
        print(f"training log: {args.log}")
    return 0
