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


def test_paired_tests_exact_p_values() -> None:
    """The PPO seeds' tests against p-values counted by hand: the sign test's is 2 * P(Bin(n, 1/2)
    <= min(k, n - k)); the permutation test's is the share of the 2^n sign flips of the differences
    whose |sum| reaches the observed one."""
    path = Path(__file__).resolve().parents[1] / "bench" / "zoo_vs_torch.py"
    spec = importlib.util.spec_from_file_location("zoo_vs_torch_stats", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.seed_list("3-9") == (3, 4, 5, 6, 7, 8, 9)
    assert module.seed_list("0,2-3") == (0, 2, 3)
    # 10 of 10 higher: both p = 2/1024
    assert "sign test p = 0.00195" in module.paired_tests([2.0] * 10, [1.0] * 10)
    assert "p = 0.00195" in module.paired_tests([2.0] * 10, [1.0] * 10).split("difference")[1]
    # 9 higher, 1 lower: sign p = 2 * (1 + 10) / 1024 = 0.0215
    text = module.paired_tests([1.0] * 9 + [0.0], [0.0] * 9 + [1.0])
    assert "higher on 9, lower on 1, equal on 0" in text and "sign test p = 0.0215" in text
    # differences (+1, +1, -3): |sum| 1; the 8 flips' sums are -5, -3, -1, 1, -1, 1, 3, 5, all
    # with |s| >= 1 -> p = 1
    assert module.paired_tests([1.0, 1.0, 0.0], [0.0, 0.0, 3.0]).endswith("p = 1")
    # differences (+4, +1, +1): |sum| 6; flips reaching 6: (+,+,+), (-,-,-) -> p = 2/8
    assert module.paired_tests([4.0, 1.0, 1.0], [0.0, 0.0, 0.0]).endswith("p = 0.25")
    # ties are dropped from the sign test
    assert "equal on 1 seeds" in module.paired_tests([1.0, 2.0], [1.0, 1.0])
