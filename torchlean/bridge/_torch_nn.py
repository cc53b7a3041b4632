"""``torch_export`` converters for masks over the reals, convolution, pooling and normalisation
(registered into ``torch_export.CONVERTERS``; same conventions)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..spec.shapes import ShapeError
from .onnx import Builder
from .torch_export import _axis, _reshape, _shape, converter, op_name
from .torch_io import _torch

# -- masks over the reals --------------------------------------------------------------------------
# torch's attention decomposes softmax into where(all scores are -inf, 0, softmax) (a "safe
# softmax"). The IR's values are real numbers, never infinite, so x == ±inf is false: such masks
# fold to constants exactly, and the where on them (torch_export._where) to softmax. Comparisons
# with finite values, which need the data, are refused.

def _const_bool(b: Builder, node: Any, value: np.ndarray) -> str:
    return b.const(np.asarray(value, dtype=bool), "mask")


@converter("aten.eq.Scalar", "aten.ne.Scalar")
def _eq_inf(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    v = args[1]
    if not (isinstance(v, float) and math.isinf(v)):
        raise ShapeError(f"comparison with {v!r} depends on the data: not supported")
    ne = "ne" in op_name(node.target)
    return _const_bool(b, node, np.full(_shape(node), ne))  # a real number is never ±inf


@converter("aten.logical_not.default")
def _logical_not(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    c = b.constant_of(args[0])
    if c is None:
        raise ShapeError("logical_not of a mask computed from the data is not supported")
    return _const_bool(b, node, ~c.astype(bool))


@converter("aten.any.dim", "aten.any.dims", "aten.any.default", "aten.all.dim", "aten.all.default")
def _any(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    c = b.constant_of(args[0])
    if c is None:
        raise ShapeError("any/all of a mask computed from the data is not supported")
    fn = np.all if ".all." in op_name(node.target) else np.any
    dims = args[1] if len(args) > 1 else None
    axis = None if dims is None else tuple(_axis(int(d), c.ndim) for d in ([dims] if isinstance(dims, int)
                                                                               else dims))
    keep = bool(kw.get("keepdim", args[2] if len(args) > 2 else False))
    return _const_bool(b, node, fn(c.astype(bool), axis=axis, keepdims=keep))


@converter("aten.full_like.default", "aten.zeros_like.default", "aten.ones_like.default")
def _full_like(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    name = op_name(node.target)
    value = 0 if "zeros" in name else 1 if "ones" in name else args[1]
    dtype = str(node.meta["val"].dtype).replace("torch.", "")
    if dtype in ("float16", "bfloat16"):
        # torch fills through float (c10::Half(float)): two roundings of a double, not numpy's
        # one, next to a tie (audit66); the fill torch makes, read through float32 (exact)
        torch = _torch()
        one = torch.full((), value, dtype=getattr(torch, dtype)).float().numpy()
        return b.const(np.full(_shape(node), one, dtype=dtype), "full")
    return b.const(np.full(_shape(node), value, dtype=dtype), "full")


# -- convolution, pooling, normalisation ---------------------------------------------------------

def _pairs(v: Any, n: int = 2) -> tuple[int, ...]:
    v = [int(a) for a in (v if isinstance(v, (list, tuple)) else [v])]
    return tuple(v * n if len(v) == 1 else v)


@converter("aten.convolution.default")
def _convolution(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    """conv2d; a 1-D convolution is a conv2d on a unit height (as torchlean's Conv1d is)."""
    x, w, bias, stride, padding, dilation, transposed, _output_padding, groups = args[:9]
    if transposed:
        raise ShapeError("transposed convolution is not supported")
    rank = len(b.shape(x))
    h = node.name
    if rank == 3:
        (n, c, L), (o, ci, k) = b.shape(x), b.shape(w)
        x, w = _reshape(b, x, (n, c, 1, L), h), _reshape(b, w, (o, ci, 1, k), h)
        stride, padding, dilation = ((1, *_pairs(v, 1)) for v in (stride, padding, dilation))
        stride, padding, dilation = (s[:1] + s[-1:] for s in (stride, padding, dilation))
        padding = (0, padding[1])
    elif rank != 4:
        raise ShapeError(f"convolution of a rank-{rank} input is not supported (1-D and 2-D only)")
    attrs = {"stride": _pairs(stride), "padding": _pairs(padding), "dilation": _pairs(dilation),
             "groups": int(groups)}
    out = b.emit("conv2d", [x, w], attrs, hint=h)
    if bias is not None:
        out = b.emit("add", [out, _reshape(b, bias, (b.shape(bias)[0], 1, 1), h)], hint=h)
    return _reshape(b, out, _shape(node), h)


@converter("aten.max_pool2d_with_indices.default")
def _max_pool(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> tuple[str, None]:
    x, kernel = args[0], _pairs(args[1])
    stride = _pairs(args[2]) if len(args) > 2 and args[2] else kernel
    padding = _pairs(args[3]) if len(args) > 3 else (0, 0)
    if (len(args) > 4 and _pairs(args[4]) != (1, 1)) or (len(args) > 5 and args[5]):
        raise ShapeError("max_pool2d with dilation or ceil_mode is not supported")
    attrs = {"kernel_size": kernel, "stride": stride, "padding": padding}
    return b.emit("max_pool2d", [x], attrs, hint=node.name), None


@converter("aten.avg_pool2d.default")
def _avg_pool(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    x, kernel = args[0], _pairs(args[1])
    stride = _pairs(args[2]) if len(args) > 2 and args[2] else kernel
    padding = _pairs(args[3]) if len(args) > 3 else (0, 0)
    ceil = args[4] if len(args) > 4 else False
    include = args[5] if len(args) > 5 else True
    divisor = args[6] if len(args) > 6 else None
    if ceil or divisor is not None:
        raise ShapeError("avg_pool2d with ceil_mode or divisor_override is not supported")
    attrs = {"kernel_size": kernel, "stride": stride, "padding": padding, "count_include_pad": bool(include)}
    return b.emit("avg_pool2d", [x], attrs, hint=node.name)


@converter("aten._adaptive_avg_pool2d.default", "aten.adaptive_avg_pool2d.default")
def _adaptive_avg_pool(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    """An average pool with kernel = stride = input / output size when the output size divides the
    input size (then torch's adaptive windows are exactly those); refused otherwise."""
    x = args[0]
    if len(b.shape(x)) != 4:
        raise ShapeError(f"adaptive_avg_pool2d of shape {b.shape(x)}: only (N, C, H, W) is supported")
    hw, out = b.shape(x)[2:], _pairs(args[1])
    if any(o < 1 or n % o for n, o in zip(hw, out)):
        raise ShapeError(f"adaptive_avg_pool2d: output size {out} does not divide the input size "
                         f"{tuple(hw)}, so its windows are uneven; only dividing sizes are supported")
    k = tuple(n // o for n, o in zip(hw, out))
    attrs = {"kernel_size": k, "stride": k, "padding": (0, 0), "count_include_pad": True}
    return b.emit("avg_pool2d", [x], attrs, hint=node.name)


def _param_or(b: Builder, v: Any, fill: float, n: int, like: str) -> str:
    return v if v is not None else b.const(np.full((n,), fill, dtype=b.dtypes[like]), "affine")


@converter("aten._native_batch_norm_legit_no_training.default")
def _batch_norm(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> tuple[str, None, None]:
    """Inference batch norm on the running statistics; eps as torch passes it (a double)."""
    x, w, bias, mean, var, _momentum, eps = args[:7]
    c = b.shape(x)[1]
    w, bias = _param_or(b, w, 1.0, c, x), _param_or(b, bias, 0.0, c, x)
    out = b.emit("batch_norm", [x, mean, var, w, bias], {"eps": float(eps)}, hint=node.name)
    return out, None, None


@converter("aten.native_layer_norm.default")
def _layer_norm(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> tuple[str, None, None]:
    x, normalized, w, bias, eps = args[:5]
    n = tuple(int(d) for d in normalized)
    params = []
    for v, fill in ((w, 1.0), (bias, 0.0)):
        params.append(v if v is not None else b.const(np.full(n, fill, dtype=b.dtypes[x]), "affine"))
    attrs = {"normalized_ndim": len(n), "eps": float(eps)}
    return b.emit("layer_norm", [x, *params], attrs, hint=node.name), None, None
