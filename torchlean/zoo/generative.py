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

from typing import Any

import numpy as np

from ..runtime.nn import Linear, Module, ReLU, Sequential, Sigmoid
from . import _fit

__all__ = ["VAE", "NegativeELBO", "autoencoder", "batches", "test_elbo", "train"]

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

    def loss(self, x: Any, eps: Any) -> Any:
        """Negative ELBO averaged over the batch, with noise ``eps`` (batch, latent)."""
        return self.per_image_loss(x, eps).mean()

    def per_image_loss(self, x: Any, eps: Any) -> Any:
        """Negative ELBO per image: BCE(reconstruction) + KL, with noise ``eps`` (batch, latent; a
        numpy array or a tensor on the model's device)."""
        import torchlean as tl
        from torchlean.nn import functional as F

        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h)
        if not isinstance(eps, tl.Tensor):
            eps = tl.tensor(np.asarray(eps), dtype=mu.dtype, device=mu.device)
        z = mu + F.exp(logvar * 0.5) * eps
        p = self.decoder(z)
        tiny = 1e-6  # keeps log away from 0 where the sigmoid saturates in float32
        bce = -(x * F.log(p + tiny) + (1 - x) * F.log(1 - p + tiny)).sum(-1)
        kl = 0.5 * (mu * mu + F.exp(logvar) - logvar - 1).sum(-1)
        return bce + kl


class NegativeELBO(Module):
    """The VAE's training objective as a model: input ``[x | eps]`` (batch, 64 + latent), output the
    negative ELBO per image (``VAE.loss`` without the mean), so the Trainer (and the compiled
    backend) trains it like any model, with fresh noise in every batch."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, xe: Any) -> Any:
        v = self.vae
        return v.per_image_loss(xe[:, :64], xe[:, 64:])


def batches(kind: str, x: np.ndarray, batch_size: int = 64, seed: int = 0) -> Any:
    """The batch sampler ``step -> (input, target)``: shuffled epochs of the training images
    (``DataLoader`` order with ``seed``); for the VAE the input carries its noise ``eps`` (drawn from
    a generator seeded by ``seed``) after the pixels and the target is unused."""
    from ..runtime.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(x), batch_size=batch_size, shuffle=True, seed=seed)
    rng = np.random.default_rng(seed)
    order: list[np.ndarray] = []

    def draw(step: int) -> tuple[np.ndarray, np.ndarray]:
        if not order:
            order.extend(loader.batch_indices())
        xb = x[order.pop(0)]
        if kind == "autoencoder":
            return xb, xb
        eps = rng.standard_normal((len(xb), LATENT))
        return np.concatenate([xb, eps], axis=1), xb
    return draw


def train(kind: str, steps: int = 1500, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
          progress: bool | None = None, **flags: Any) -> tuple[Any, list[dict[str, float]], float]:
    """(trained model, history of {step, loss, lr, time}, seconds) for ``kind`` "autoencoder" or "vae";
    ``flags``: backend, dtype, device (``zoo._fit``)."""
    import torchlean as tl

    from . import digits

    data = digits.load()
    x = data.x_train.reshape(len(data.x_train), 64)
    tl.manual_seed(seed)
    net = autoencoder() if kind == "autoencoder" else VAE()
    sample = batches(kind, x, batch_size, seed)
    if kind == "autoencoder":
        from ..runtime.nn.loss import MSELoss

        done = _fit.fit(net, sample, steps, MSELoss(), lr, seed, progress, **flags)
    else:
        done = _fit.fit(NegativeELBO(net), sample, steps, _fit.mean_of, lr, seed, progress, **flags)
    return net, done.history, done.time_s


def test_elbo(net: VAE, x: np.ndarray, seed: int) -> float:
    """The negative ELBO (nats per image) of ``x``, one noise sample per image drawn with ``seed``."""
    eps = np.random.default_rng(seed).standard_normal((len(x), LATENT))
    return float(_fit.predict(NegativeELBO(net), np.concatenate([x, eps], axis=1)).mean())


def run(args: Any) -> int:
    """``python -m torchlean autoencoder|vae`` (flags in ``torchlean.__main__``)."""
    from . import digits

    data = digits.load()
    flags = {k: getattr(args, k) for k in _fit.DEVICE_DEFAULTS}
    net, history, seconds = train(args.command, args.steps, seed=args.seed, progress=args.progress, **flags)
    xt = data.x_test.reshape(len(data.x_test), 64)
    mse = float(np.mean((_fit.predict(net, xt) - xt) ** 2))
    base = float(np.mean((data.x_train.reshape(-1, 64).mean(0) - xt) ** 2))
    print(f"{args.command} on the 8x8 digits ({args.dtype} on {args.device}, {args.backend} backend): "
          f"{args.steps} Adam steps in {seconds:.1f} s; test reconstruction MSE {mse:.4f} (mean-image "
          f"baseline {base:.4f}, {_fit.versus(mse, base, 'the baseline')})")
    if args.command == "vae":
        elbo = test_elbo(net, xt, args.seed + 1)
        print(f"test negative ELBO (one sample per image): {elbo:.2f} nats per image")
        if args.samples:
            z = np.random.default_rng(args.seed + 2).standard_normal((16, LATENT))
            imgs = _fit.predict(net.decoder, z).reshape(16, 8, 8)
            from ..plot import plot_images

            print(f"wrote {plot_images(imgs, args.samples, title='VAE samples from the prior')}")
    _fit.report_log(args, history)
    if args.certify:
        from .claims import print_claims

        # the claims are about what each command trains: the autoencoder itself, and the VAE's
        # objective (the negative ELBO of [x | eps]) for the proof; its float32 error is that of
        # the deterministic reconstruction decoder(mu(encoder(x)))
        kind = args.command
        build = autoencoder if kind == "autoencoder" else (lambda: NegativeELBO(VAE()))
        shape = (1, 64) if kind == "autoencoder" else (1, 64 + LATENT)
        what = ("the autoencoder" if kind == "autoencoder"
                else "the VAE's reconstruction decoder(mu(encoder(x)))")
        print_claims(args, net, xt[:1], None, f"{what} on the data box [0, 1]^64", kind, build, shape)
    return 0
