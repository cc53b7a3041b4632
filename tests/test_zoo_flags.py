"""--device, --dtype and --backend on every zoo command (``zoo._fit``: one Trainer for the commands
with drawn batches), and ``Trainer.train`` with a batch sampler.

The compiled backend must reproduce eager training bit for bit (the same loss at every logged step),
``--dtype float64`` must really train in float64 (its losses differ from float32's and the
parameters are float64), and ``--device cuda`` without cupy is one line on stderr, exit 1. The cuda
paths themselves run against the fake cupy in tests/test_fake_cupy.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean.__main__ import main
from torchlean.runtime.backends import cuda_available

#: each command with a tiny run (a few steps: seconds in all)
TINY = {
    "transformer": ["--steps", "4"],
    "transformer-sums": ["--steps", "4", "--corpus", "sums"],
    "autoencoder": ["--steps", "6"],
    "vae": ["--steps", "6"],
    "fno": ["--steps", "3"],
    "pinn": ["--steps", "6"],
    "ppo": ["--steps", "1"],
    "cnn": ["--steps", "4"],
    "resnet": ["--steps", "2"],
    "lstm": ["--steps", "4"],
    "gru": ["--steps", "4"],
    "mlp": ["--steps", "4"],
}


def _argv(name: str) -> list[str]:
    return [name.split("-")[0], *TINY[name], "--no-progress"]


def _records(path: Path) -> list[dict]:
    """The log's records without their wall-clock times."""
    return [{k: v for k, v in r.items() if k != "time"} for r in json.loads(path.read_text())["records"]]


def _train(tmp_path: Path, name: str, *flags: str, capsys=None) -> list[dict]:
    log = tmp_path / f"{name}{'-'.join(flags)}.json"
    assert main([*_argv(name), "--log", str(log), *flags]) == 0
    return _records(log)


@pytest.mark.parametrize("name", [n for n in TINY if n != "pinn"])
def test_compiled_float64_is_eager_float64_bit_for_bit(tmp_path: Path, name: str, capsys) -> None:
    eager = _train(tmp_path, name, "--dtype", "float64")
    out = capsys.readouterr().out
    assert "float64 on cpu" in out
    compiled = _train(tmp_path, name, "--dtype", "float64", "--backend", "compiled")
    assert "compiled backend" in capsys.readouterr().out
    assert compiled == eager and len(eager) >= 1
    float32 = _train(tmp_path, name)
    key = "mean_return" if name == "ppo" else "loss"
    if name != "ppo":  # PPO's returns are counts of steps: the same in both precisions this early
        assert [r[key] for r in float32] != [r[key] for r in eager]  # the dtype really changed


def test_pinn_runs_in_float64(tmp_path: Path, capsys) -> None:
    a = _train(tmp_path, "pinn", "--dtype", "float64")
    assert "trained in float64 on cpu" in capsys.readouterr().out
    assert a != _train(tmp_path, "pinn")


def test_pinn_compiled_is_eager(tmp_path: Path) -> None:
    """The plan records the second derivative's backward too (its seed is the caller's constant)."""
    assert _train(tmp_path, "pinn", "--backend", "compiled") == _train(tmp_path, "pinn")


@pytest.mark.skipif(cuda_available(), reason="this machine has a usable GPU")
@pytest.mark.parametrize("name", ["transformer", "vae", "autoencoder", "fno", "pinn", "ppo", "lstm"])
def test_cuda_without_cupy_is_one_line(name: str, capsys) -> None:
    assert main([*_argv(name), "--device", "cuda"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda" in err[0] and "Traceback" not in err[0]


def test_trainer_trains_from_a_batch_sampler() -> None:
    """``Trainer.train(sample)`` = the same steps taken by hand with ``Trainer.step``."""
    rng = np.random.default_rng(0)
    xs, ys = rng.standard_normal((5, 8, 3)), rng.standard_normal((5, 8, 1))
    seen: list[int] = []

    def sample(step: int):
        seen.append(step)
        return xs[step], ys[step]

    def net():
        tl.manual_seed(3)
        return tl.nn.Sequential(tl.nn.Linear(3, 4), tl.nn.Tanh(), tl.nn.Linear(4, 1))

    a = tl.Trainer(net(), lr=0.05, dtype="float64")
    done = a.train(sample, steps=3, log_every=1, progress=False)
    done = a.train(sample, steps=2, log_every=1, progress=False)  # continues at step 3
    assert seen == [0, 1, 2, 3, 4] and done.steps == 2
    b = tl.Trainer(net(), lr=0.05, dtype="float64")
    losses = [float(b.step(*b.dataset((xs[i], ys[i])).tensors)) for i in range(5)]
    assert [r["loss"] for r in done.history] == losses[3:]
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
