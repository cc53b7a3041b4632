"""Kernels and VJP rules of the nn primitives: conv2d, pooling, layer/batch norm, embedding.

Sliding windows are built as one strided slice per kernel tap (kh*kw slices, each covering every
output position at once), which is the im2col matrix without stride tricks: plain slicing and
``stack``/``tensordot`` exist on numpy, cupy and the symbolic backend alike, so the proofs layer can
run these very kernels on sympy objects. The VJPs scatter back with the same slices (col2im).
"""

from __future__ import annotations

from typing import Any

from ..spec.nnops import out_size, pair
from .rules import index_add, rule, scatter

NEG_INF = float("-inf")  # the padding value of max pooling (the symbolic backend reads it as -oo)


def _pad(xp: Any, x: Any, ph: int, pw: int, fill: float = 0.0) -> Any:
    """``x`` (N, C, H, W) surrounded by ``fill``; ``x`` itself when there is no padding."""
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    out = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    if fill != 0.0:
        out = out + fill
    inner = (slice(None), slice(None), slice(ph, ph + h), slice(pw, pw + w))
    return scatter(xp, out, [(inner, x)], add=False)


def _tap_slices(k: tuple[int, int], s: tuple[int, int], d: tuple[int, int],
                ho: int, wo: int) -> list[tuple[slice, slice, slice, slice]]:
    """For each kernel tap (a, b), in row-major order, the slice of the padded input that the tap
    reads at every output position."""
    out = []
    for a in range(k[0]):
        for b in range(k[1]):
            rows = slice(a * d[0], a * d[0] + s[0] * (ho - 1) + 1, s[0])
            cols = slice(b * d[1], b * d[1] + s[1] * (wo - 1) + 1, s[1])
            out.append((slice(None), slice(None), rows, cols))
    return out


def _geometry(x: Any, k, stride, padding, dilation=(1, 1)):
    k, s, p, d = pair(k), pair(stride), pair(padding), pair(dilation)
    ho = out_size(x.shape[2], k[0], s[0], p[0], d[0])
    wo = out_size(x.shape[3], k[1], s[1], p[1], d[1])
    if ho < 1 or wo < 1:
        raise ValueError(f"input {tuple(x.shape)} too small for kernel {k} with padding {p}")
    return k, s, p, d, ho, wo


def _unpad(gpad: Any, x: Any, p: tuple[int, int]) -> Any:
    h, w = x.shape[2], x.shape[3]
    return gpad[:, :, p[0]:p[0] + h, p[1]:p[1] + w]


# -- conv2d ----------------------------------------------------------------------------------


def _cols(xp: Any, xpad: Any, taps: list, kh: int, kw: int) -> Any:
    """The im2col tensor (N, C, kh, kw, Ho, Wo)."""
    stacked = xp.stack([xpad[t] for t in taps], axis=2)
    n, c, _, ho, wo = stacked.shape
    return stacked.reshape(n, c, kh, kw, ho, wo)


def _groups_of(w: Any, groups: int):
    cg, og = w.shape[1], w.shape[0] // groups
    for gi in range(groups):
        yield gi, slice(gi * cg, (gi + 1) * cg), slice(gi * og, (gi + 1) * og)


@rule("conv2d")
def conv2d(xp, x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    k, s, p, d, ho, wo = _geometry(x, w.shape[2:], stride, padding, dilation)
    if x.shape[1] != w.shape[1] * groups:
        raise ValueError(f"input has {x.shape[1]} channels, weight expects {w.shape[1] * groups}")
    cols = _cols(xp, _pad(xp, x, *p), _tap_slices(k, s, d, ho, wo), *k)
    outs = []
    for _, ci, oi in _groups_of(w, groups):
        # (Og, Cg, kh, kw) . (N, Cg, kh, kw, Ho, Wo) -> (Og, N, Ho, Wo)
        y = xp.tensordot(w[oi], cols[:, ci], axes=((1, 2, 3), (1, 2, 3)))
        outs.append(xp.transpose(y, (1, 0, 2, 3)))
    return outs[0] if groups == 1 else xp.concatenate(outs, axis=1)


@conv2d.vjp
def _(xp, g, out, x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, want=(True, True)):
    k, s, p, d, ho, wo = _geometry(x, w.shape[2:], stride, padding, dilation)
    taps = _tap_slices(k, s, d, ho, wo)
    # (``rules.WANTS_VJP``: without w's cotangent the input's columns are not needed at all)
    cols = _cols(xp, _pad(xp, x, *p), taps, *k) if want[1] else None
    gws, dcols = [], []
    for _, ci, oi in _groups_of(w, groups):
        gg = g[:, oi]  # (N, Og, Ho, Wo)
        if want[1]:
            gws.append(xp.tensordot(gg, cols[:, ci], axes=((0, 2, 3), (0, 4, 5))))  # (Og, Cg, kh, kw)
        dc = xp.tensordot(gg, w[oi], axes=((1,), (0,)))  # (N, Ho, Wo, Cg, kh, kw)
        dcols.append(xp.transpose(dc, (0, 3, 4, 5, 1, 2)))
    dcol = dcols[0] if groups == 1 else xp.concatenate(dcols, axis=1)
    gw = None if not want[1] else gws[0] if groups == 1 else xp.concatenate(gws, axis=0)
    n, c, h, wd = x.shape
    gpad = xp.zeros((n, c, h + 2 * p[0], wd + 2 * p[1]), dtype=g.dtype)
    ab = [(a, b) for a in range(k[0]) for b in range(k[1])]
    gpad = scatter(xp, gpad, [(t, dcol[:, :, a, b]) for t, (a, b) in zip(taps, ab)])
    return _unpad(gpad, x, p), gw


# -- pooling -----------------------------------------------------------------------------------


@rule("max_pool2d")
def max_pool2d(xp, x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)):
    k, s, p, d, ho, wo = _geometry(x, kernel_size, stride, padding)
    xpad = _pad(xp, x, *p, fill=NEG_INF)
    taps = _tap_slices(k, s, d, ho, wo)
    out = xpad[taps[0]]
    for t in taps[1:]:
        out = xp.maximum(out, xpad[t])
    return out


@max_pool2d.vjp
def _(xp, g, out, x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)):
    k, s, p, d, ho, wo = _geometry(x, kernel_size, stride, padding)
    xpad = _pad(xp, x, *p, fill=NEG_INF)
    gpad = xp.zeros(xpad.shape, dtype=g.dtype)
    # Walk the taps in row-major window order; each window's gradient goes to the first tap that
    # equals the maximum (torch's choice), tracked by ``taken`` (1 once a tap has claimed it).
    taken = xp.zeros_like(g)
    parts = []
    for t in _tap_slices(k, s, d, ho, wo):
        first = xp.where(xp.equal(xpad[t], out), 1 - taken, 0 * taken)
        taken = taken + first
        parts.append((t, g * first))
    return (_unpad(scatter(xp, gpad, parts), x, p),)


def _avg_divisor(xp: Any, x: Any, k, s, p, ho, wo, count_include_pad: bool) -> Any:
    """kh*kw, or per output position the number of window positions inside the input."""
    if count_include_pad:
        return k[0] * k[1]
    ones = xp.zeros(x.shape[2:], dtype=x.dtype) + 1
    counts = _pad(xp, ones.reshape(1, 1, *ones.shape), *p)
    total = None
    for t in _tap_slices(k, s, (1, 1), ho, wo):
        total = counts[t] if total is None else total + counts[t]
    return total


@rule("avg_pool2d")
def avg_pool2d(xp, x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), count_include_pad=True):
    k, s, p, d, ho, wo = _geometry(x, kernel_size, stride, padding)
    xpad = _pad(xp, x, *p)
    taps = _tap_slices(k, s, d, ho, wo)
    total = xpad[taps[0]]
    for t in taps[1:]:
        total = total + xpad[t]
    return total / _avg_divisor(xp, x, k, s, p, ho, wo, count_include_pad)


@avg_pool2d.vjp
def _(xp, g, out, x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), count_include_pad=True):
    k, s, p, d, ho, wo = _geometry(x, kernel_size, stride, padding)
    gs = g / _avg_divisor(xp, x, k, s, p, ho, wo, count_include_pad)
    n, c, h, w = x.shape
    gpad = xp.zeros((n, c, h + 2 * p[0], w + 2 * p[1]), dtype=g.dtype)
    gpad = scatter(xp, gpad, [(t, gs) for t in _tap_slices(k, s, d, ho, wo)])
    return (_unpad(gpad, x, p),)


# -- normalisation -------------------------------------------------------------------------------


def _ln_stats(xp: Any, x: Any, normalized_ndim: int, eps: float):
    """(normalized axes, count, centred x, 1/sqrt(var + eps)) over the trailing axes."""
    axes = tuple(range(x.ndim - int(normalized_ndim), x.ndim))
    n = 1
    for a in axes:
        n *= x.shape[a]
    xc = x - xp.sum(x, axis=axes, keepdims=True) / n
    var = xp.sum(xc * xc, axis=axes, keepdims=True) / n
    return axes, n, xc, 1 / xp.sqrt(var + eps)


@rule("layer_norm")
def layer_norm(xp, x, w, b, normalized_ndim=1, eps=1e-5):
    _, _, xc, rstd = _ln_stats(xp, x, normalized_ndim, eps)
    return xc * rstd * w + b


@layer_norm.vjp
def _(xp, g, out, x, w, b, normalized_ndim=1, eps=1e-5):
    axes, n, xc, rstd = _ln_stats(xp, x, normalized_ndim, eps)
    xhat = xc * rstd
    lead = tuple(range(x.ndim - len(axes)))
    gw = xp.sum(g * xhat, axis=lead) if lead else g * xhat
    gb = xp.sum(g, axis=lead) if lead else g + 0 * g
    gh = g * w
    mean_gh = xp.sum(gh, axis=axes, keepdims=True) / n
    mean_ghx = xp.sum(gh * xhat, axis=axes, keepdims=True) / n
    return rstd * (gh - mean_gh - xhat * mean_ghx), gw, gb


def _channel_shape(x: Any) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


@rule("batch_norm")
def batch_norm(xp, x, mean, var, w, b, eps=1e-5):
    cs = _channel_shape(x)
    scale = 1 / xp.sqrt(var + eps) * w
    return (x - mean.reshape(cs)) * scale.reshape(cs) + b.reshape(cs)


@batch_norm.vjp
def _(xp, g, out, x, mean, var, w, b, eps=1e-5):
    cs = _channel_shape(x)
    axes = (0,) + tuple(range(2, x.ndim))
    rstd = 1 / xp.sqrt(var + eps)
    xc = x - mean.reshape(cs)
    g_sum = xp.sum(g, axis=axes)
    gxc_sum = xp.sum(g * xc, axis=axes)
    gx = g * (rstd * w).reshape(cs)
    g_mean = -g_sum * rstd * w
    # d/dv (v + eps)^(-1/2) = -1/2 (v + eps)^(-3/2)
    g_var = gxc_sum * w * (-0.5 * rstd * rstd * rstd)
    return gx, g_mean, g_var, gxc_sum * rstd, g_sum


# -- embedding ---------------------------------------------------------------------------------


def _indices(idx: Any) -> Any:
    # the symbolic backend lifts every leaf to sympy; indices must be machine integers
    return idx if idx.dtype.kind in "iu" else idx.astype("int64")


@rule("embedding")
def embedding(xp, w, idx):
    return w[_indices(idx)]


@embedding.vjp
def _(xp, g, out, w, idx):
    # scatter-add: an index used twice collects both cotangents, like torch's embedding backward
    return index_add(xp, xp.zeros_like(w), _indices(idx), g), None
