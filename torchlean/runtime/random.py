"""The seeded random source behind initialisation, dropout and data shuffling."""

from __future__ import annotations

import numpy as np

_GEN = [np.random.default_rng(0)]


def manual_seed(seed: int) -> None:
    """Reset torchlean's global generator (initialisation, dropout, shuffling)."""
    _GEN[0] = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    return _GEN[0]
