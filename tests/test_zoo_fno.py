"""``python -m torchlean fno``: the Burgers solver against the heat equation's exact solution at small
amplitude, the spectral layer against numpy's FFT, and the operator learning the solution map."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import torchlean as tl
from torchlean.zoo import fno


def test_burgers_at_small_amplitude_is_the_heat_equation() -> None:
    """Scaled by 1e-4 the nonlinear term vanishes: each mode decays like exp(-nu (2 pi k)^2 t)."""
    u0, u1 = fno.burgers(4, seed=3, amplitude=1e-4)
    h0, h1 = np.fft.rfft(u0), np.fft.rfft(u1)
    k = np.arange(h0.shape[1])
    want = h0 * np.exp(-fno.NU * (2 * np.pi * k) ** 2 * fno.T_END)
    assert np.abs(h1 - want).max() < 1e-3 * np.abs(h0).max()  # float32 output


def test_spectral_layer_is_a_truncated_fft() -> None:
    tl.manual_seed(0)
    layer = fno.SpectralConv1d(width=3, modes=5)
    eye = np.broadcast_to(np.eye(3, dtype=np.float32), (5, 3, 3)).copy()
    layer.weight_re.data, layer.weight_im.data = eye, np.zeros_like(eye)
    v = np.random.default_rng(0).normal(size=(2, fno.GRID, 3)).astype(np.float32)
    spec = np.fft.rfft(v, axis=1)
    spec[:, 5:] = 0
    want = np.fft.irfft(spec, n=fno.GRID, axis=1)
    assert np.allclose(layer(tl.tensor(v)).numpy(), want, atol=1e-4)


def test_fno_beats_the_identity_and_the_command_runs(tmp_path: Path) -> None:
    net, history, _ = fno.train(150, seed=0)
    x, y = fno.burgers(64, 1000)
    assert fno.relative_l2(net(tl.tensor(x)).numpy(), y) < 0.5 * fno.relative_l2(x, y)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torchlean", "fno", "--steps", "20"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "relative L2 test error" in out.stdout
