"""``python -m torchlean autoencoder`` / ``vae``: they learn (reconstruction beats the mean image),
the VAE's loss is the negative ELBO (checked against a direct numpy computation), and its prior
samples are drawn to a PNG."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean.zoo import digits, generative


@pytest.mark.parametrize("kind", ["autoencoder", "vae"])
def test_reconstruction_beats_the_mean_image(kind: str) -> None:
    net, history, _ = generative.train(kind, steps=600, seed=0)
    assert history[-1]["loss"] < history[0]["loss"]
    d = digits.load()
    xt = d.x_test.reshape(-1, 64)
    mse = float(np.mean((net(tl.tensor(xt)).numpy() - xt) ** 2))
    assert mse < 0.7 * float(np.mean((d.x_train.reshape(-1, 64).mean(0) - xt) ** 2))


def test_vae_loss_is_the_negative_elbo() -> None:
    tl.manual_seed(0)
    vae = generative.VAE()
    x = digits.load().x_test[:5].reshape(5, 64)
    eps = np.random.default_rng(0).standard_normal((5, generative.LATENT))
    got = float(vae.loss(tl.tensor(x), eps))
    sd = {k: np.asarray(v, dtype=np.float64) for k, v in vae.state_dict().items()}

    def lin(h, name):
        return h @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]

    h = np.maximum(lin(x, "encoder.0"), 0)
    mu, logvar = lin(h, "mu"), lin(h, "logvar")
    z = mu + np.exp(logvar / 2) * eps
    p = 1 / (1 + np.exp(-lin(np.maximum(lin(z, "decoder.0"), 0), "decoder.2")))
    bce = -(x * np.log(p + 1e-6) + (1 - x) * np.log(1 - p + 1e-6)).sum(1)
    kl = 0.5 * (mu**2 + np.exp(logvar) - logvar - 1).sum(1)
    assert abs(got - float((bce + kl).mean())) < 1e-3 * abs(got)


def test_vae_command_draws_samples(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OPENBLAS_NUM_THREADS": "1"}
    png = tmp_path / "s.png"
    out = subprocess.run([sys.executable, "-m", "torchlean", "vae", "--steps", "300", "--samples", str(png)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "negative ELBO" in out.stdout
    plt = pytest.importorskip("matplotlib.pyplot")
    assert plt.imread(png)[..., :3].std() > 0.05
