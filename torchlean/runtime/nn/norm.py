"""Normalisation layers: LayerNorm, BatchNorm1d, BatchNorm2d (torch's parameter and buffer names)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...spec.shapes import ShapeError
from .. import functional_nn as FN
from ..backends import namespace
from ..tensor import Tensor, as_dtype, get_default_dtype, no_grad
from ..trace import assign, refuse_in_plan
from .layers import _fmt, _param
from .module import Module, PartialShape


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` axes; weight ones and bias zeros at init."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, dtype: Any = None,
                 device: str = "cpu"):
        super().__init__()
        shape = (int(normalized_shape),) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps = shape, float(eps)
        dt = as_dtype(dtype or get_default_dtype())
        self.weight = _param(np.ones(shape, dtype=dt), device) if elementwise_affine else None
        self.bias = _param(np.zeros(shape, dtype=dt), device) if elementwise_affine and bias else None

    def forward(self, x: Tensor) -> Tensor:
        k = len(self.normalized_shape)
        if x.shape[x.ndim - k:] != self.normalized_shape or x.ndim < k:
            raise ShapeError(f"LayerNorm({self.extra_repr()}): expects input "
                             f"{_fmt((None, *self.normalized_shape))}, got {x.shape}")
        return FN.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def input_shape(self) -> PartialShape:
        return (None, *self.normalized_shape)

    def output_shape(self, shape: PartialShape) -> PartialShape:
        k = len(self.normalized_shape)
        tail = shape[len(shape) - k:] if len(shape) >= k else ()
        if len(tail) != k or any(d is not None and d != e for d, e in zip(tail, self.normalized_shape)):
            raise ShapeError(f"expects input {_fmt((None, *self.normalized_shape))}")
        return shape

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}"


class _BatchNorm(Module):
    """Batch norm over channel axis 1 (shared by BatchNorm1d and BatchNorm2d).

    Training: normalise with the batch mean and (biased) variance and update ``running_mean`` /
    ``running_var`` (the latter with the unbiased variance) by ``momentum`` (None: a cumulative
    average), counting ``num_batches_tracked``, like torch. Evaluation: use the running buffers.
    """

    #: the input ranks accepted (with their printed form for errors)
    ranks: tuple[int, ...] = (4,)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype: Any = None,
                 device: str = "cpu"):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        dt = as_dtype(dtype or get_default_dtype())
        c = (self.num_features,)
        self.weight = _param(np.ones(c, dtype=dt), device) if affine else None
        self.bias = _param(np.zeros(c, dtype=dt), device) if affine else None
        self.track_running_stats = track_running_stats
        if track_running_stats:
            xp = namespace(device)
            self.register_buffer("running_mean", Tensor(xp.zeros(c, dtype=dt)))
            self.register_buffer("running_var", Tensor(xp.ones(c, dtype=dt)))
            self.register_buffer("num_batches_tracked", Tensor(xp.asarray(np.array(0, dtype=np.int64))))
        else:
            self.running_mean = self.running_var = None

    def _expected(self) -> str:
        return " or ".join(_fmt((None, self.num_features) + (None,) * (r - 2)) for r in self.ranks)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in self.ranks or x.shape[1] != self.num_features:
            raise ShapeError(f"{type(self).__name__}({self.num_features}): expects input "
                             f"{self._expected()}, got {x.shape}")
        use_batch = self.training or not self.track_running_stats
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            with no_grad():
                assign(self.num_batches_tracked, self.num_batches_tracked + 1)
            if self.momentum is None:  # a factor read from a buffer: a plan would freeze it
                refuse_in_plan("BatchNorm with momentum=None (a cumulative average) in training mode")
                factor = 1.0 / float(self.num_batches_tracked.item())
        # the buffers are None without track_running_stats: batch statistics in both modes
        return FN.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                             training=use_batch, momentum=factor, eps=self.eps)

    def input_shape(self) -> PartialShape:
        return (None, self.num_features) + (None,) * (self.ranks[0] - 2)

    def output_shape(self, shape: PartialShape) -> PartialShape:
        if len(shape) not in self.ranks or shape[1] not in (None, self.num_features):
            raise ShapeError(f"expects input {self._expected()}")
        return shape

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over the features of (N, C) or the channels of (N, C, L), torch's defaults
    (eps 1e-5, momentum 0.1, affine, running statistics); the same primitive as BatchNorm2d."""

    ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over the channels of (N, C, H, W), torch's defaults (eps 1e-5, momentum 0.1,
    affine, running statistics)."""

    ranks = (4,)
