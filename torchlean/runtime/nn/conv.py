"""Convolution and pooling layers: Conv1d, Conv2d, MaxPool2d, AvgPool2d."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ...spec.nnops import out_size, pair
from ...spec.shapes import ShapeError
from .. import functional_nn as FN
from ..tensor import Tensor, as_dtype, get_default_dtype
from . import init
from .layers import _fmt, _param
from .module import Module, PartialShape, size_arg


def _spatial_out(shape: PartialShape, k: tuple[int, int], s: tuple[int, int],
                 p: tuple[int, int], d: tuple[int, int] = (1, 1)) -> tuple[int | None, int | None]:
    out = []
    for size, kk, ss, pp, dd in zip(shape[2:4], k, s, p, d):
        if size is None:
            out.append(None)
            continue
        o = out_size(size, kk, ss, pp, dd)
        if o < 1:
            raise ShapeError(f"expects input height/width of at least {dd * (kk - 1) + 1 - 2 * pp} "
                             f"for kernel {k}, padding {p}, dilation {d}")
        out.append(o)
    return out[0], out[1]


def _check_rank4(shape: PartialShape, channels: int | None) -> None:
    if len(shape) != 4 or (channels is not None and shape[1] not in (None, channels)):
        raise ShapeError(f"expects input {_fmt((None, channels, None, None))}")


class _ConvNd(Module):
    """What Conv1d and Conv2d share: the groups check, torch's initialisation and the repr."""

    def _init_params(self, name: str, in_channels: int, out_channels: int, groups: int,
                     kernel: tuple[int, ...], bias: bool, dtype: Any, device: str) -> None:
        in_channels, out_channels, groups = (
            size_arg(name, n, v)
            for n, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)))
        if groups == 0 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels={in_channels} and out_channels={out_channels} "
                             f"must be divisible by groups={groups}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        dt = as_dtype(dtype or get_default_dtype())
        fan_in = in_channels // groups * math.prod(kernel)
        # torch: kaiming_uniform(a=sqrt(5)) weight and U(+-1/sqrt(fan_in)) bias
        self.weight = _param(init.kaiming_uniform((out_channels, in_channels // groups, *kernel), fan_in, dt),
                             device)
        self.bias = _param(init.kaiming_uniform((out_channels,), fan_in, dt), device) if bias else None

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if any(self.padding):
            s += f", padding={self.padding}"
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W) inputs with torch's parameter layout: weight
    (out_channels, in_channels/groups, kh, kw) and bias (out_channels,)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True,
                 dtype: Any = None, device: str = "cpu"):
        super().__init__()
        self.kernel_size = pair(kernel_size, "Conv2d", "kernel_size")
        self.stride, self.dilation = pair(stride, "Conv2d", "stride"), pair(dilation, "Conv2d", "dilation")
        self.padding = FN._conv_padding(padding, self.kernel_size, self.dilation, self.stride)
        self._init_params("Conv2d", in_channels, out_channels, groups, self.kernel_size, bias, dtype, device)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"Conv2d({self.extra_repr()}): expects input "
                             f"{_fmt((None, self.in_channels, None, None))}, got {x.shape}")
        return FN.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def input_shape(self) -> PartialShape:
        return (None, self.in_channels, None, None)

    def output_shape(self, shape: PartialShape) -> PartialShape:
        _check_rank4(shape, self.in_channels)
        h, w = _spatial_out(shape, self.kernel_size, self.stride, self.padding, self.dilation)
        return (shape[0], self.out_channels, h, w)



class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L) inputs with torch's parameter layout: weight
    (out_channels, in_channels/groups, k) and bias (out_channels,), torch's initialisation.

    Runs as ``conv2d`` on a unit height (``F.conv1d``), so the conv2d primitive's proofs and bound
    rows cover it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True,
                 dtype: Any = None, device: str = "cpu"):
        super().__init__()
        self.kernel_size = (FN._single(kernel_size, "Conv1d", "kernel_size"),)
        self.stride = (FN._single(stride, "Conv1d", "stride"),)
        self.dilation = (FN._single(dilation, "Conv1d", "dilation"),)
        pad2 = FN._conv_padding(padding if isinstance(padding, str) else (0, FN._single(padding, "Conv1d",
                                "padding")), (1, self.kernel_size[0]), (1, self.dilation[0]),
                                (1, self.stride[0]))
        self.padding = (pad2[1],)
        self._init_params("Conv1d", in_channels, out_channels, groups, self.kernel_size, bias, dtype, device)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ShapeError(f"Conv1d({self.extra_repr()}): expects input "
                             f"{_fmt((None, self.in_channels, None))}, got {x.shape}")
        return FN.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def input_shape(self) -> PartialShape:
        return (None, self.in_channels, None)

    def output_shape(self, shape: PartialShape) -> PartialShape:
        if len(shape) != 3 or shape[1] not in (None, self.in_channels):
            raise ShapeError(f"expects input {_fmt((None, self.in_channels, None))}")
        (_, length) = _spatial_out((None, None, 1, shape[2]), (1, self.kernel_size[0]),
                                   (1, self.stride[0]), (0, self.padding[0]), (1, self.dilation[0]))
        return (shape[0], self.out_channels, length)


class _Pool2d(Module):
    op = ""

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0):
        super().__init__()
        attrs = FN._pool_attrs(self.op, kernel_size, stride, padding)
        self.kernel_size, self.stride, self.padding = attrs["kernel_size"], attrs["stride"], attrs["padding"]
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{type(self).__name__}: padding {self.padding} must be at most half "
                             f"the kernel size {self.kernel_size}")

    def output_shape(self, shape: PartialShape) -> PartialShape:
        _check_rank4(shape, None)
        h, w = _spatial_out(shape, self.kernel_size, self.stride, self.padding)
        return (shape[0], shape[1], h, w)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max pooling (floor mode); the gradient goes to each window's first maximum, like torch."""

    op = "max_pool2d"

    def forward(self, x: Tensor) -> Tensor:
        return FN.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Average pooling (floor mode); padding counts as zeros unless ``count_include_pad=False``."""

    op = "avg_pool2d"

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
                 padding: int | Sequence[int] = 0, count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x: Tensor) -> Tensor:
        return FN.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)
