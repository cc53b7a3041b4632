"""ONNX converters for convolution, pooling, normalisation, Pad and Clip.

Each keeps the operator's exact meaning: padding becomes ``concat`` with constants holding exactly
the pad value (or the primitive's own zero padding, when that is the same thing), epsilons are the
float32 the attribute stores, BatchNormalization keeps sqrt(var + eps) inside the ``batch_norm``
primitive (never folded into a scale), and Clip's bounds are constants holding the stored values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..spec.shapes import ShapeError, size
from ._onnx_exact import exact_array
from ._onnx_ops import axes_arg, axis_in, const_input, converter, f32, ints, vector

if TYPE_CHECKING:
    from .onnx import Builder


def pad_constant(b: Builder, x: str, begins: list[int], ends: list[int], value: float, hint: str) -> str:
    """``x`` with ``begins[i]``/``ends[i]`` entries of ``value`` added before/after axis i (negative
    counts crop): a ``slice`` for the crops, then one ``concat`` with constants per padded axis."""
    shape = list(b.shape(x))
    if len(begins) != len(shape) or len(ends) != len(shape):
        raise ShapeError(f"pads for {len(begins)} axes given for a rank-{len(shape)} input")
    if any(d + lo + hi <= 0 for d, lo, hi in zip(shape, begins, ends)):
        raise ShapeError(f"pads {begins + ends} leave an empty tensor from shape {tuple(shape)}")
    if size(tuple(d + max(lo, 0) + max(hi, 0) for d, lo, hi in zip(shape, begins, ends))) > 1 << 26:
        raise ShapeError(f"pads {begins + ends} make a tensor of more than 2**26 elements")
    if any(lo < 0 or hi < 0 for lo, hi in zip(begins, ends)):
        index = tuple((max(-lo, 0), d - max(-hi, 0), None) for d, lo, hi in zip(shape, begins, ends))
        x = b.emit("slice", [x], {"index": index}, hint=hint, fold=True)
        shape = list(b.shape(x))
    fill = exact_array(value, b.dtypes[x])
    for axis, (lo, hi) in enumerate(zip(begins, ends)):
        parts = []
        for n, where in ((lo, "before"), (None, ""), (hi, "after")):
            if n is None:
                parts.append(x)
            elif n > 0:
                side = shape[:axis] + [n] + shape[axis + 1:]
                parts.append(b.const(np.full(side, fill, dtype=fill.dtype), f"{hint}.pad_{where}"))
        if len(parts) > 1:
            x = b.emit("concat", parts, {"axis": axis}, hint=hint, fold=True)
            shape = list(b.shape(x))
    return x


@converter("Pad")
def _pad(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """Constant-mode Pad (pads and value as attributes before opset 11, as constant inputs since;
    an ``axes`` input since opset 18)."""
    mode = attrs.get("mode", "constant")
    if mode != "constant":
        raise ShapeError(f"Pad: mode {mode!r} is not supported (only 'constant')")
    rank = len(b.shape(ins[0]))
    if b.opset < 11:
        pads, value = ints(attrs.get("pads", ())), f32(attrs.get("value", 0.0))
    else:
        pads = vector(b, ins[1], "Pad's pads")
        value = 0.0
        if len(ins) > 2 and ins[2]:
            v = const_input(b, ins[2], "Pad's constant_value")
            if v.size != 1:
                raise ShapeError("Pad: constant_value must hold one element")
            value = v.reshape(-1)[0]
    axes = axes_arg(b, ins[2:], {}, "Pad") if len(ins) > 3 else None
    axes = tuple(range(rank)) if axes is None else tuple(axis_in(a, rank, "Pad") for a in axes)
    if len(set(axes)) != len(axes) or len(pads) != 2 * len(axes):
        raise ShapeError(f"Pad: {len(pads)} pads for axes {axes} of a rank-{rank} input")
    begins, ends = [0] * rank, [0] * rank
    for k, a in enumerate(axes):
        begins[a], ends[a] = pads[k], pads[k + len(axes)]
    return [pad_constant(b, ins[0], begins, ends, value, hint)]


@converter("Clip")
def _clip(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """min(max(x, lo), hi), bounds holding the stored values (attributes before opset 11, optional
    inputs since). A missing bound is ONNX's default, not "no bound" (audit30): Clip-6's attribute
    defaults are -+float32's largest finite value whatever x's type, Clip-11's omitted inputs are the
    lowest and largest finite values of x's type; x beyond them (a real number over 3.4e38 in a
    float32 model) is clipped. lo > hi gives hi everywhere, as ONNX says."""
    x = ins[0]
    if b.opset < 11:
        big = float(np.finfo(np.float32).max)
        lo = b.scalar(f32(attrs.get("min", -big)), "clip_min", like=x)
        hi = b.scalar(f32(attrs.get("max", big)), "clip_max", like=x)
    else:
        big = float(np.finfo(b.dtypes[x]).max)
        lo = ins[1] if len(ins) > 1 and ins[1] else b.scalar(-big, "clip_min", like=x)
        hi = ins[2] if len(ins) > 2 and ins[2] else b.scalar(big, "clip_max", like=x)
    for bound in (lo, hi):
        if b.shape(bound) not in ((), (1,)):
            raise ShapeError(f"Clip: bounds must be scalars, got shape {b.shape(bound)}")
    x = b.emit("maximum", [x, b.reshape(lo, (), hint)], hint=hint)
    return [b.emit("minimum", [x, b.reshape(hi, (), hint)], hint=hint)]


# -- convolution and pooling ------------------------------------------------------------------------

def _check_2d(b: Builder, x: str, op: str) -> None:
    if len(b.shape(x)) != 4:
        raise ShapeError(f"{op}: only 2-D (N, C, H, W) inputs are supported, got {b.shape(x)}")


def _pair(attrs: dict[str, Any], key: str, op: str, default: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    v = ints(attrs.get(key, default))
    if len(v) != 2 or any(d < 1 for d in v):
        raise ShapeError(f"{op}: {key} {v} must be two positive integers")
    return v[0], v[1]


def _pads(b: Builder, x: str, attrs: dict[str, Any], op: str, kernel: tuple[int, int],
          strides: tuple[int, int], dilations: tuple[int, int]) -> tuple[list[int], list[int]]:
    """(begins, ends) of the two spatial axes, from ``pads`` or ``auto_pad``."""
    auto = attrs.get("auto_pad", "NOTSET")
    if auto == "VALID":
        return [0, 0], [0, 0]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        if dilations != (1, 1):  # onnxruntime refuses it too: no reference to test against
            raise ShapeError(f"{op}: auto_pad={auto} with dilations {dilations} is not supported")
        begins, ends = [], []
        for n, k, s, d in zip(b.shape(x)[2:], kernel, strides, dilations):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small, big = total // 2, total - total // 2
            begins.append(small if auto == "SAME_UPPER" else big)
            ends.append(big if auto == "SAME_UPPER" else small)
        return begins, ends
    if auto != "NOTSET":
        raise ShapeError(f"{op}: auto_pad={auto!r} is not supported")
    pads = ints(attrs.get("pads", (0, 0, 0, 0)))
    if len(pads) != 4 or any(p < 0 for p in pads):
        raise ShapeError(f"{op}: pads {pads} must be four non-negative integers")
    return list(pads[:2]), list(pads[2:])


@converter("Conv")
def _conv(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """conv2d; asymmetric pads become an explicit zero pad (concat) plus the primitive's symmetric
    zero padding, which is the same function."""
    x, w = ins[0], ins[1]
    _check_2d(b, x, "Conv")
    if len(b.shape(w)) != 4:
        raise ShapeError(f"Conv: weight must be 4-D, got {b.shape(w)}")
    k = b.shape(w)[2:]
    if "kernel_shape" in attrs and ints(attrs["kernel_shape"]) != tuple(k):
        raise ShapeError(f"Conv: kernel_shape {attrs['kernel_shape']} differs from weight {b.shape(w)}")
    strides, dilations = _pair(attrs, "strides", "Conv"), _pair(attrs, "dilations", "Conv")
    begins, ends = _pads(b, x, attrs, "Conv", k, strides, dilations)
    common = [min(p, q) for p, q in zip(begins, ends)]
    if begins != ends:
        x = pad_constant(b, x, [0, 0] + [p - c for p, c in zip(begins, common)],
                         [0, 0] + [q - c for q, c in zip(ends, common)], 0.0, hint)
    conv_attrs = {"stride": strides, "padding": tuple(common), "dilation": dilations,
                  "groups": int(attrs.get("group", 1))}
    out = b.emit("conv2d", [x, w], conv_attrs, hint=hint)
    if len(ins) > 2 and ins[2]:
        if b.shape(ins[2]) != (b.shape(w)[0],):
            raise ShapeError(f"Conv: bias of shape {b.shape(ins[2])} for {b.shape(w)[0]} output channels")
        bias = b.reshape(ins[2], (b.shape(ins[2])[0], 1, 1), hint)
        out = b.emit("add", [out, bias], hint=hint)
    return [out]


def _pool(b: Builder, ins: list[str], attrs: dict[str, Any], op: str, hint: str,
          zero_pad_ok: bool) -> tuple[str, dict[str, Any]]:
    """(input, attributes) of a 2-D pool; asymmetric pads only where zero padding is exact."""
    x = ins[0]
    _check_2d(b, x, op)
    if attrs.get("ceil_mode", 0):
        raise ShapeError(f"{op}: ceil_mode=1 is not supported")
    if _pair(attrs, "dilations", op) != (1, 1):
        raise ShapeError(f"{op}: dilations {attrs['dilations']} are not supported")
    k, strides = _pair(attrs, "kernel_shape", op, (0, 0)), _pair(attrs, "strides", op)
    begins, ends = _pads(b, x, attrs, op, k, strides, (1, 1))
    if any(p >= kk for p, kk in zip(begins + ends, k + k)):
        raise ShapeError(f"{op}: pads {begins + ends} must be smaller than the kernel {k}")
    if begins != ends:
        if not zero_pad_ok:
            raise ShapeError(f"{op}: asymmetric pads {begins + ends} are not supported")
        x = pad_constant(b, x, [0, 0] + begins, [0, 0] + ends, 0.0, hint)
        begins = [0, 0]
    return x, {"kernel_size": k, "stride": strides, "padding": tuple(begins)}


@converter("MaxPool")
def _max_pool(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    if attrs.get("storage_order", 0):
        raise ShapeError("MaxPool: storage_order=1 is not supported")
    x, pool = _pool(b, ins, attrs, "MaxPool", hint, zero_pad_ok=False)
    return [b.emit("max_pool2d", [x], pool, hint=hint)]


@converter("AveragePool")
def _avg_pool(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    # ONNX's default excludes padding from the count (torch's default includes it); with it
    # included, explicit zeros are the same as padding, so asymmetric pads can be lowered
    include = bool(attrs.get("count_include_pad", 0))
    x, pool = _pool(b, ins, attrs, "AveragePool", hint, zero_pad_ok=include)
    pool["count_include_pad"] = include
    return [b.emit("avg_pool2d", [x], pool, hint=hint)]


def _global(prim: str, op: str):
    def convert(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
        rank = len(b.shape(ins[0]))
        if rank < 3:
            raise ShapeError(f"{op}: expects (N, C, ...) input, got {b.shape(ins[0])}")
        return [b.emit(prim, [ins[0]], {"axes": tuple(range(2, rank)), "keepdims": True}, hint=hint)]
    return convert


converter("GlobalAveragePool")(_global("mean", "GlobalAveragePool"))
converter("GlobalMaxPool")(_global("max", "GlobalMaxPool"))


# -- normalisation ------------------------------------------------------------------------------------

@converter("BatchNormalization")
def _batch_norm(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """Inference mode: the ``batch_norm`` primitive on the stored scale, bias, mean and variance,
    with eps the float32 the attribute stores (its sqrt(var + eps) is never folded)."""
    if attrs.get("training_mode", 0):
        raise ShapeError("BatchNormalization: training_mode=1 is not supported")
    if not attrs.get("spatial", 1):
        raise ShapeError("BatchNormalization: spatial=0 is not supported")
    if len(ins) < 5 or not all(ins[:5]):
        raise ShapeError("BatchNormalization needs X, scale, B, mean and var")
    x, scale, bias, mean, var = ins[:5]
    eps = f32(attrs.get("epsilon", 1e-5))
    return [b.emit("batch_norm", [x, mean, var, scale, bias], {"eps": eps}, hint=hint)]


@converter("LayerNormalization")
def _layer_norm(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """``layer_norm`` over the axes from ``axis`` on; a scale or bias of a broadcastable shape is
    broadcast to the normalised shape (a copy), a missing bias is zeros."""
    x = ins[0]
    shape = b.shape(x)
    axis = axis_in(int(attrs.get("axis", -1)), len(shape), "LayerNormalization")
    normalized = shape[axis:]
    params = []
    for name in (ins[1], ins[2] if len(ins) > 2 else ""):
        if not name:
            name = b.const(np.zeros(normalized, dtype=b.dtypes[x]), f"{hint}.bias")
        if len(b.shape(name)) > len(normalized):
            raise ShapeError(f"LayerNormalization: parameter of shape {b.shape(name)} for "
                             f"normalized shape {normalized}")
        if b.shape(name) != normalized:
            name = b.emit("broadcast_to", [name], {"shape": normalized}, hint=hint, fold=True)
        params.append(name)
    eps = f32(attrs.get("epsilon", 1e-5))
    return [b.emit("layer_norm", [x, *params], {"normalized_ndim": len(normalized), "eps": eps}, hint=hint)]
