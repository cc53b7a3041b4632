"""Seeded initialisation (PyTorch's defaults), drawing from ``torchlean.manual_seed``'s generator."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..random import generator


def uniform(shape: tuple[int, ...], bound: float, dtype: Any) -> np.ndarray:
    return generator().uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_uniform(shape: tuple[int, ...], fan_in: int, dtype: Any) -> np.ndarray:
    """PyTorch's default weight init: kaiming_uniform with a = sqrt(5), i.e. U(±1/sqrt(fan_in))."""
    return uniform(shape, 1.0 / math.sqrt(fan_in) if fan_in else 0.0, dtype)


def normal(shape: tuple[int, ...], std: float, dtype: Any) -> np.ndarray:
    return (generator().standard_normal(size=shape) * std).astype(dtype)
