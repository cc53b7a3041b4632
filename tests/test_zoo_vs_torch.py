"""bench/zoo_vs_torch.py's twins are the same models trained on the same batches: a few steps of each
leave torchlean's and PyTorch's weights within float32 rounding of each other, so the quality
figures the bench prints compare like with like."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def bench():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    path = Path(__file__).resolve().parents[1] / "bench" / "zoo_vs_torch.py"
    spec = importlib.util.spec_from_file_location("zoo_vs_torch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, torch


@pytest.mark.parametrize("name, steps, tol", [
    ("vae", 30, 1e-4), ("pinn", 30, 1e-4), ("transformer", 4, 1e-4), ("ppo", 3, 1e-5)])
def test_twin_tracks_torchlean(bench, name: str, steps: int, tol: float, capsys) -> None:
    module, torch = bench
    what, ours, theirs, diff = module.MODELS[name][0](torch, steps)
    assert diff < tol, (name, diff)
    assert np.isfinite(ours) and np.isfinite(theirs)
    if name != "ppo":  # a greedy return is a count of steps: one flipped action changes it
        assert abs(ours - theirs) <= 1e-3 * max(abs(ours), abs(theirs), 1e-3), (what, ours, theirs)
