"""Seeded initialisation (PyTorch's defaults), drawing from ``torchlean.manual_seed``'s generator.

The shape-based helpers (``uniform``, ``kaiming_uniform``, ``normal``) make the layers' initial
arrays; the in-place ``*_`` functions are ``torch.nn.init``'s, public as ``torchlean.nn.init``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..random import generator


def uniform(shape: tuple[int, ...], bound: float, dtype: Any) -> np.ndarray:
    """U(±bound) samples of ``shape`` as ``dtype``."""
    return generator().uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_uniform(shape: tuple[int, ...], fan_in: int, dtype: Any) -> np.ndarray:
    """PyTorch's default weight init: kaiming_uniform with a = sqrt(5), i.e. U(±1/sqrt(fan_in))."""
    return uniform(shape, 1.0 / math.sqrt(fan_in) if fan_in else 0.0, dtype)


def normal(shape: tuple[int, ...], std: float, dtype: Any) -> np.ndarray:
    """N(0, std²) samples of ``shape`` as ``dtype``."""
    return (generator().standard_normal(size=shape) * std).astype(dtype)


# -- torch.nn.init: in place on a tensor or Parameter (no tape), torch's defaults ------------------

_GAINS = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "conv_transpose1d": 1.0,
          "conv_transpose2d": 1.0, "conv_transpose3d": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3,
          "relu": math.sqrt(2.0), "selu": 3.0 / 4}


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain torch recommends for ``nonlinearity`` (``leaky_relu``'s slope is ``param``, 0.01
    by default): ``calculate_gain("relu") == sqrt(2)``."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity not in _GAINS:
        raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")
    return _GAINS[nonlinearity]


def _calculate_fan_in_and_fan_out(t: Any) -> tuple[int, int]:
    """torch's fans: dim 1 and dim 0 times the receptive field (the product of dims 2 on)."""
    shape = t.shape
    if len(shape) < 2:
        raise ValueError("fan in and fan out can not be computed for a tensor with fewer than 2 dimensions")
    field = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * field, shape[0] * field


def _fill(t: Any, values: np.ndarray) -> Any:
    from ..backends import namespace

    t.data = namespace(t.device).asarray(np.asarray(values).astype(t.dtype))
    return t


def uniform_(tensor: Any, a: float = 0.0, b: float = 1.0) -> Any:
    """Fill ``tensor`` with U(a, b) samples from torchlean's seeded generator; returns it."""
    return _fill(tensor, generator().uniform(a, b, size=tensor.shape))


def normal_(tensor: Any, mean: float = 0.0, std: float = 1.0) -> Any:
    """Fill ``tensor`` with N(mean, std²) samples from torchlean's seeded generator; returns it."""
    return _fill(tensor, generator().standard_normal(size=tensor.shape) * std + mean)


def constant_(tensor: Any, val: float) -> Any:
    """Fill ``tensor`` with ``val``; returns it."""
    return _fill(tensor, np.full(tensor.shape, val))


def zeros_(tensor: Any) -> Any:
    """Fill ``tensor`` with zeros; returns it."""
    return constant_(tensor, 0.0)


def ones_(tensor: Any) -> Any:
    """Fill ``tensor`` with ones; returns it."""
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor: Any, gain: float = 1.0) -> Any:
    """Glorot uniform: U(±gain·sqrt(6 / (fan_in + fan_out))); returns ``tensor``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor: Any, gain: float = 1.0) -> Any:
    """Glorot normal: N(0, gain²·2 / (fan_in + fan_out)); returns ``tensor``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(tensor: Any, a: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor: Any, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu") -> Any:
    """He uniform: U(±sqrt(3)·gain/sqrt(fan)), torch's defaults (a=0, fan_in, leaky_relu).

    torch's layers use ``a=sqrt(5)``, i.e. U(±1/sqrt(fan_in)).
    """
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor: Any, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> Any:
    """He normal: N(0, (gain/sqrt(fan))²), torch's defaults (a=0, fan_in, leaky_relu)."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


__all__ = ["calculate_gain", "constant_", "kaiming_normal_", "kaiming_uniform_", "normal_", "ones_",
           "uniform_", "xavier_normal_", "xavier_uniform_", "zeros_"]
