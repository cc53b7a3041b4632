"""Neural-network primitives: convolution, pooling, normalisation, embedding.

The meanings below are the textbook definitions, written directly (one output position at a time,
vectorised over batch and channels) so that they stay independent of the runtime's im2col-style
kernels that they are compared against. Padding never enters a meaning as a number: windows simply
range over the positions that exist (for conv2d and avg_pool2d with count_include_pad that is the
same as zero padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .primitives import primitive
from .scalar import emap
from .shapes import Shape, ShapeError


def pair(value: int | Sequence[int], op: str = "", name: str = "") -> tuple[int, int]:
    """An int or a length-2 sequence as a pair of ints (torch's ``_pair``)."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    t = tuple(int(v) for v in value)
    if len(t) != 2:
        raise ShapeError(f"{op}: {name} must be an int or a pair, got {value!r}")
    return t  # type: ignore[return-value]


def out_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length of a sliding window (floor mode, like torch's ceil_mode=False)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _window_geometry(op: str, x: Shape, k: tuple[int, int], s: tuple[int, int],
                     p: tuple[int, int], d: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ShapeError(f"{op}: kernel {k}, stride {s}, dilation {d} must be positive and "
                         f"padding {p} non-negative (input shape {x})")
    ho = out_size(x[2], k[0], s[0], p[0], d[0])
    wo = out_size(x[3], k[1], s[1], p[1], d[1])
    if ho < 1 or wo < 1:
        raise ShapeError(f"{op}: input {x} is too small for kernel {k} with padding {p} and "
                         f"dilation {d} (output would be {ho}x{wo})")
    return ho, wo


def _rank4(op: str, x: Shape) -> None:
    if len(x) != 4:
        raise ShapeError(f"{op}: expects input (N, C, H, W), got shape {x}")


def _window(i: int, stride: int, pad: int, kernel: int, dil: int, size: int) -> list[int]:
    """Input positions (that exist) of output position ``i``'s window along one axis."""
    start = i * stride - pad
    return [start + t * dil for t in range(kernel) if 0 <= start + t * dil < size]


def _kernel_taps(i: int, stride: int, pad: int, kernel: int, dil: int, size: int) -> list[int]:
    """Kernel offsets ``t`` whose input position exists (matching ``_window``)."""
    start = i * stride - pad
    return [t for t in range(kernel) if 0 <= start + t * dil < size]


# -- conv2d ------------------------------------------------------------------------------------

CONV_ATTRS = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}


def _conv2d_rule(x: Shape, w: Shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                 groups=1) -> Shape:
    _rank4("conv2d", x)
    if len(w) != 4:
        raise ShapeError(f"conv2d: weight must be (O, C/groups, kh, kw), got shape {w} (input {x})")
    g = int(groups)
    if g < 1 or x[1] % g or w[0] % g or w[1] * g != x[1]:
        raise ShapeError(f"conv2d: input {x} has {x[1]} channels but weight {w} with groups={g} "
                         f"expects {w[1] * g} (and O={w[0]} divisible by groups)")
    ho, wo = _window_geometry("conv2d", x, (w[2], w[3]), pair(stride, "conv2d", "stride"),
                              pair(padding, "conv2d", "padding"), pair(dilation, "conv2d", "dilation"))
    return (x[0], w[0], ho, wo)


@primitive("conv2d", "linear", 2, _conv2d_rule, attrs=CONV_ATTRS)
def conv2d(m, x, w, stride, padding, dilation, groups):
    """out[n,o,i,j] = sum_{c,a,b} x[n, g*C/G + c, i*s - p + a*d, j*s - p + b*d] * w[o,c,a,b]
    over the input positions that exist (zero padding), o in group g; no bias"""
    _conv2d_rule(x.shape, w.shape, stride, padding, dilation, groups)
    s, p, d = pair(stride), pair(padding), pair(dilation)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    ho, wo = out_size(h, kh, s[0], p[0], d[0]), out_size(wd, kw, s[1], p[1], d[1])
    out = np.empty((n, o, ho, wo), dtype=object)
    for gi in range(groups):
        xg = x[:, gi * cg:(gi + 1) * cg]
        wg = w[gi * og:(gi + 1) * og]
        for i in range(ho):
            rows = _window(i, s[0], p[0], kh, d[0], h)
            ta = _kernel_taps(i, s[0], p[0], kh, d[0], h)
            for j in range(wo):
                cols = _window(j, s[1], p[1], kw, d[1], wd)
                tb = _kernel_taps(j, s[1], p[1], kw, d[1], wd)
                patch = xg[:, :, rows][:, :, :, cols]  # (N, Cg, |rows|, |cols|)
                taps = wg[:, :, ta][:, :, :, tb]  # (Og, Cg, |rows|, |cols|)
                out[:, gi * og:(gi + 1) * og, i, j] = np.tensordot(
                    patch, taps, axes=((1, 2, 3), (1, 2, 3)))
    return out


# -- pooling -------------------------------------------------------------------------------------

POOL_ATTRS = {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)}


def _pool_rule(op: str):
    def rule(x: Shape, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), **_: Any) -> Shape:
        _rank4(op, x)
        k, p = pair(kernel_size, op, "kernel_size"), pair(padding, op, "padding")
        if p[0] > k[0] // 2 or p[1] > k[1] // 2:
            raise ShapeError(f"{op}: padding {p} must be at most half the kernel {k} (input {x})")
        ho, wo = _window_geometry(op, x, k, pair(stride, op, "stride"), p)
        return (x[0], x[1], ho, wo)
    return rule


def _pool(x: np.ndarray, kernel_size, stride, padding, reduce) -> np.ndarray:
    """Apply ``reduce(list of (N, C) arrays)`` to each window's existing positions."""
    k, s, p = pair(kernel_size), pair(stride), pair(padding)
    n, c, h, w = x.shape
    ho, wo = out_size(h, k[0], s[0], p[0]), out_size(w, k[1], s[1], p[1])
    out = np.empty((n, c, ho, wo), dtype=object)
    for i in range(ho):
        rows = _window(i, s[0], p[0], k[0], 1, h)
        for j in range(wo):
            cols = _window(j, s[1], p[1], k[1], 1, w)
            out[:, :, i, j] = reduce([x[:, :, r, q] for r in rows for q in cols])
    return out


@primitive("max_pool2d", "reduction", 1, _pool_rule("max_pool2d"), attrs=POOL_ATTRS)
def max_pool2d(m, x, kernel_size, stride, padding):
    """max over each window's existing positions (padding never wins); the runtime sends the
    gradient to the first maximal position in row-major window order, like torch"""

    def biggest(vals):
        best = vals[0]
        for v in vals[1:]:
            best = emap(lambda a, b: m.select(m.ge(a, b), a, b), best, v)
        return best

    return _pool(x, kernel_size, stride, padding, biggest)


@primitive("avg_pool2d", "linear", 1, _pool_rule("avg_pool2d"),
           attrs={**POOL_ATTRS, "count_include_pad": True})
def avg_pool2d(m, x, kernel_size, stride, padding, count_include_pad):
    """sum over each window's existing positions divided by kh*kw (count_include_pad, torch's
    default) or by the number of existing positions"""
    k = pair(kernel_size)

    def average(vals):
        total = vals[0]
        for v in vals[1:]:
            total = total + v
        return total / (k[0] * k[1] if count_include_pad else len(vals))

    return _pool(x, kernel_size, stride, padding, average)


# -- normalisation ---------------------------------------------------------------------------------


def _layer_norm_rule(x: Shape, w: Shape, b: Shape, normalized_ndim=1, eps=1e-5) -> Shape:
    k = int(normalized_ndim)
    if not 1 <= k <= len(x):
        raise ShapeError(f"layer_norm: normalized_ndim={k} out of range for input {x}")
    if tuple(w) != tuple(x[-k:]) or tuple(b) != tuple(x[-k:]):
        raise ShapeError(f"layer_norm: weight {w} and bias {b} must have the normalized shape "
                         f"{tuple(x[-k:])} of input {x}")
    return x


@primitive("layer_norm", "nn", 3, _layer_norm_rule, attrs={"normalized_ndim": 1, "eps": 1e-5})
def layer_norm(m, x, w, b, normalized_ndim, eps):
    """(x - mu) / sqrt(var + eps) * w + b, mu and the biased var over the last
    ``normalized_ndim`` axes"""
    k = int(normalized_ndim)
    lead = x.shape[: x.ndim - k]
    n = int(np.prod(x.shape[x.ndim - k:]))
    rows = x.reshape(-1, n)
    mu = rows.sum(axis=1, keepdims=True) / n
    xc = rows - mu
    var = (xc * xc).sum(axis=1, keepdims=True) / n
    inv = emap(lambda v: 1 / m.sqrt(v + m.const(eps)), var)
    return (xc * inv).reshape(*lead, *w.shape) * w + b


def _batch_norm_rule(x: Shape, mean: Shape, var: Shape, w: Shape, b: Shape, eps=1e-5) -> Shape:
    if len(x) < 2:
        raise ShapeError(f"batch_norm: expects input (N, C, ...), got shape {x}")
    c = (x[1],)
    for name, s in (("running_mean", mean), ("running_var", var), ("weight", w), ("bias", b)):
        if tuple(s) != c:
            raise ShapeError(f"batch_norm: {name} has shape {s}, expected {c} for input {x}")
    return x


@primitive("batch_norm", "nn", 5, _batch_norm_rule, attrs={"eps": 1e-5})
def batch_norm(m, x, mean, var, w, b, eps):
    """evaluation-mode batch norm over channel axis 1:
    (x - running_mean) / sqrt(running_var + eps) * w + b"""
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    inv = emap(lambda v: 1 / m.sqrt(v + m.const(eps)), var)
    scale = (inv * w).reshape(shape)
    return (x - mean.reshape(shape)) * scale + b.reshape(shape)


# -- embedding ------------------------------------------------------------------------------------


def _embedding_rule(w: Shape, idx: Shape) -> Shape:
    if len(w) != 2:
        raise ShapeError(f"embedding: weight must be (num_embeddings, dim), got shape {w} "
                         f"(indices {idx})")
    return (*idx, w[1])


@primitive("embedding", "structural", 2, _embedding_rule, integer_inputs=(1,))
def embedding(m, w, idx):
    """out[..., :] = weight[idx[...], :] (the indices carry no derivative)"""
    return np.asarray(w[idx.astype(np.int64)], dtype=object)
