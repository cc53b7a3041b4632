"""The 8x8 handwritten digits (UCI optdigits as scikit-learn serves it), bundled with the package.

``load()`` gives images of shape (N, 1, 8, 8) in [0, 1] (pixel count / 16: exact in binary, so a
box around an image is exactly the box the checker sees) and integer labels, split 80/20 with a
fixed seed. Source and licence: ``zoo/data/DIGITS-SOURCE.md``.
"""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

import numpy as np

from ..runtime.data import SplitData

__all__ = ["Digits", "data_path", "load"]

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def data_path() -> Path:
    """The bundled ``digits.csv.gz``."""
    return Path(str(resources.files("torchlean.zoo") / "data" / "digits.csv.gz"))


class Digits(SplitData):
    """Train and test images (float32, (N, 1, 8, 8), values in [0, 1]) and labels (int64)."""


def load(seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION) -> Digits:
    """The bundled digits, shuffled with ``seed`` and split (the last ``test_fraction`` is test)."""
    with gzip.open(data_path(), "rt") as f:
        rows = np.loadtxt(f, delimiter=",")
    if rows.ndim != 2 or rows.shape[1] != 65:
        raise ValueError(f"{data_path()}: expected 65 columns (64 pixels and a label), got {rows.shape}")
    x = (rows[:, :64] / 16).reshape(-1, 1, 8, 8).astype(np.float32)
    y = rows[:, 64].astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = int(round(test_fraction * len(x)))
    return Digits(x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:])
