"""User-level nn operations (re-exported by ``torchlean.nn.functional``): convolution, pooling,
normalisation, embedding, dropout. Torch-shaped signatures over the nn primitives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..spec.nnops import pair
from ..spec.shapes import ShapeError
from .backends import namespace_of
from .random import random_mask
from .tensor import Tensor, apply, no_grad


def _as_index_tensor(idx: Any, like: Tensor) -> Tensor:
    if isinstance(idx, Tensor):
        if idx.dtype.kind not in "iu" and idx.device != "symbolic":
            raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
        return idx
    return Tensor(namespace_of(like.data).asarray(np.asarray(idx, dtype=np.int64)))


def _channel_view(t: Tensor, ndim: int) -> Tensor:
    """(C,) as (1, C, 1, ...) to broadcast over an (N, C, ...) tensor."""
    from .functional import reshape

    return reshape(t, (1, t.shape[0]) + (1,) * (ndim - 2))


def _constant(like: Tensor, shape: tuple[int, ...], value: float) -> Tensor:
    """A constant filled tensor, made by broadcasting a scalar (a primitive), so that tracing
    records it instead of refusing a tensor created outside the primitives."""
    xp = namespace_of(like.data)
    return apply("broadcast_to", Tensor(xp.asarray(value, dtype=like.dtype)), shape=tuple(shape))


# -- convolution and pooling ------------------------------------------------------------------


def _conv_padding(padding: int | Sequence[int] | str, kernel: tuple[int, int],
                  dilation: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        if stride != (1, 1) or any(t % 2 for t in total):
            raise ValueError("conv2d: padding='same' needs stride 1 and an even dilation*(kernel-1)")
        return (total[0] // 2, total[1] // 2)
    return pair(padding, "conv2d", "padding")


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | Sequence[int] = 1,
           padding: int | Sequence[int] | str = 0, dilation: int | Sequence[int] = 1,
           groups: int = 1) -> Tensor:
    """2-D cross-correlation of x (N, C, H, W) with weight (O, C/groups, kh, kw), plus bias (O,)."""
    s, d = pair(stride, "conv2d", "stride"), pair(dilation, "conv2d", "dilation")
    p = _conv_padding(padding, tuple(weight.shape[2:4]), d, s)  # type: ignore[arg-type]
    y = apply("conv2d", x, weight, stride=s, padding=p, dilation=d, groups=int(groups))
    return y if bias is None else y + _channel_view(bias, 4)


def _single(v: Any, op: str, name: str) -> int:
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ValueError(f"{op}: {name} must be an int or a 1-tuple, got {v!r}")
        v = v[0]
    return int(v)


def conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | Sequence[int] = 1,
           padding: int | Sequence[int] | str = 0, dilation: int | Sequence[int] = 1,
           groups: int = 1) -> Tensor:
    """1-D cross-correlation of x (N, C, L) with weight (O, C/groups, k), plus bias (O,).

    Built as ``conv2d`` on a unit height ((N, C, 1, L) with an (O, C/groups, 1, k) kernel), so
    the conv2d primitive's proofs and bound rows cover it; no primitive of its own.
    """
    from .functional import reshape

    if x.ndim != 3 or weight.ndim != 3:
        raise ShapeError(f"conv1d: expects input (N, C, L) and weight (O, C/groups, k), "
                         f"got {x.shape} and {weight.shape}")
    s, d = _single(stride, "conv1d", "stride"), _single(dilation, "conv1d", "dilation")
    p: Any = padding if isinstance(padding, str) else (0, _single(padding, "conv1d", "padding"))
    x4 = reshape(x, (x.shape[0], x.shape[1], 1, x.shape[2]))
    w4 = reshape(weight, (weight.shape[0], weight.shape[1], 1, weight.shape[2]))
    y = conv2d(x4, w4, None, (1, s), p, (1, d), groups)
    y = reshape(y, (y.shape[0], y.shape[1], y.shape[3]))
    return y if bias is None else y + _channel_view(bias, 3)


def _pool_attrs(op: str, kernel_size, stride, padding) -> dict[str, tuple[int, int]]:
    k = pair(kernel_size, op, "kernel_size")
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and not stride)  # torch: [] too
    s = k if no_stride else pair(stride, op, "stride")
    return {"kernel_size": k, "stride": s, "padding": pair(padding, op, "padding")}


def max_pool2d(x: Tensor, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
               padding: int | Sequence[int] = 0) -> Tensor:
    """Max over windows (stride defaults to the kernel size); gradient to each window's first
    maximum, like torch."""
    return apply("max_pool2d", x, **_pool_attrs("max_pool2d", kernel_size, stride, padding))


def avg_pool2d(x: Tensor, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
               padding: int | Sequence[int] = 0, count_include_pad: bool = True) -> Tensor:
    """Mean over windows; with ``count_include_pad`` (torch's default) padding counts as zeros."""
    attrs = _pool_attrs("avg_pool2d", kernel_size, stride, padding)
    return apply("avg_pool2d", x, count_include_pad=bool(count_include_pad), **attrs)


# -- normalisation ---------------------------------------------------------------------------------


def layer_norm(x: Tensor, normalized_shape: int | Sequence[int], weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` axes, then scale and shift."""
    shape = (int(normalized_shape),) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(shape):]) != shape or len(shape) > x.ndim:
        raise ShapeError(f"layer_norm: input shape {x.shape} does not end with normalized_shape {shape}")
    w = weight if weight is not None else _constant(x, shape, 1.0)
    b = bias if bias is not None else _constant(x, shape, 0.0)
    return apply("layer_norm", x, w, b, normalized_ndim=len(shape), eps=float(eps))


def batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch norm over channel axis 1 (torch's signature).

    Evaluation: the ``batch_norm`` primitive with the running statistics. Training: the same
    primitive fed with the batch mean and biased variance, computed from primitives so gradients
    flow through them; the running buffers (when given) are updated in place with ``momentum``
    and the unbiased variance, like torch.
    """
    from .functional import mean, reshape

    if x.ndim < 2:
        raise ShapeError(f"batch_norm: expects input (N, C, ...), got shape {x.shape}")
    c = x.shape[1]
    w = weight if weight is not None else _constant(x, (c,), 1.0)
    b = bias if bias is not None else _constant(x, (c,), 0.0)
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation mode needs running_mean and running_var")
        return apply("batch_norm", x, running_mean, running_var, w, b, eps=float(eps))
    axes = (0, *range(2, x.ndim))
    count = x.numel() // c
    if count < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, got input {x.shape}")
    mu = mean(x, axes)
    xc = x - reshape(mu, (1, c) + (1,) * (x.ndim - 2))
    var = mean(xc * xc, axes)
    if running_mean is not None and running_var is not None:
        from .trace import assign

        with no_grad():  # primitives, so a compiled plan recomputes the update every step
            unbiased = var * (count / (count - 1))
            assign(running_mean, running_mean * (1 - momentum) + mu * momentum)
            assign(running_var, running_var * (1 - momentum) + unbiased * momentum)
    return apply("batch_norm", x, mu, var, w, b, eps=float(eps))


# -- embedding and dropout -------------------------------------------------------------------------


def embedding(input: Any, weight: Tensor) -> Tensor:  # noqa: A002 - torch's name
    """Rows of ``weight`` (V, D) picked by the integer tensor ``input`` (any shape); an index
    outside [0, V) is an IndexError, as torch raises (the primitive would wrap -1 round: audit57)."""
    from .functional import check_index_range

    idx = _as_index_tensor(input, weight)
    check_index_range(idx, weight.shape[0], "embedding")
    return apply("embedding", weight, idx)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero entries with probability ``p`` and scale the rest by 1/(1-p) (training only); masks
    come from torchlean's seeded generator."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    return x * random_mask(x, p)  # traceable: the compiled plan redraws it per step
