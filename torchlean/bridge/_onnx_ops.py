"""One converter per ONNX operator: ``convert(builder, inputs, attrs, hint) -> [output names]``.

Inputs are IR value names ("" for an omitted optional input). Every shape is static at import
time, so operators that compute shapes fold to constants, and the attributes a primitive needs
(a reshape target, a transpose permutation) are always concrete tuples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..spec.shapes import ShapeError, size

if TYPE_CHECKING:
    from .onnx import Builder

Converter = Callable[..., list[str]]
CONVERTERS: dict[str, Converter] = {}
#: primitives an operator lowers to, beyond the core ones always registered (checked up front
#: so that a build without them reports the operator as unsupported instead of failing midway)
NEEDS: dict[str, tuple[str, ...]] = {
    "Conv": ("conv2d",),
    "MaxPool": ("max_pool2d",),
    "AveragePool": ("avg_pool2d",),
    "GlobalAveragePool": ("mean",),
    "BatchNormalization": ("batch_norm",),
}


def converter(*names: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for n in names:
            CONVERTERS[n] = fn
        return fn
    return register


def _const_input(b: Builder, name: str, what: str) -> np.ndarray:
    c = b.constant_of(name) if name else None
    if c is None:
        raise ShapeError(f"{what} must be a constant (computed from initializers), not a runtime value")
    return c


def _ints(a: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(a).reshape(-1))


# -- elementwise -------------------------------------------------------------------------------

_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Max": "maximum", "Min": "minimum"}
_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log",
          "Sqrt": "sqrt", "Neg": "neg", "Abs": "abs", "Softplus": "softplus"}


def _binary(prim: str) -> Converter:
    def convert(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
        if attrs.get("broadcast") and "axis" in attrs:  # opset < 7 explicit-axis broadcasting
            raise ShapeError("legacy broadcast with an axis attribute is not supported")
        if len(ins) != 2:  # variadic Max/Min
            out = ins[0]
            for other in ins[1:]:
                out = b.emit(prim, [out, other], hint=hint)
            return [out]
        x, y = ins
        # integer arithmetic on constants is shape arithmetic: fold it
        cx, cy = b.constant_of(x), b.constant_of(y)
        if cx is not None and cy is not None and cx.dtype.kind in "iu" and cy.dtype.kind in "iu":
            fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.floor_divide,
                  "maximum": np.maximum, "minimum": np.minimum}[prim]
            return [b.const(fn(cx, cy), hint)]
        return [b.emit(prim, [x, y], hint=hint)]
    return convert


for _op, _prim in _BINARY.items():
    CONVERTERS[_op] = _binary(_prim)


def _unary(prim: str) -> Converter:
    def convert(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
        return [b.emit(prim, [ins[0]], hint=hint)]
    return convert


for _op, _prim in _UNARY.items():
    CONVERTERS[_op] = _unary(_prim)


@converter("LeakyRelu")
def _leaky_relu(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    return [b.emit("leaky_relu", [ins[0]], {"slope": float(attrs.get("alpha", 0.01))}, hint=hint)]


@converter("Identity", "Dropout")
def _identity(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    # Dropout is the identity at inference; its optional mask output is not supported
    return [ins[0]]


# -- linear algebra ------------------------------------------------------------------------------

@converter("MatMul")
def _matmul(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """numpy.matmul semantics: a 1-D operand gets a unit axis that is removed afterwards."""
    x, y = ins
    sx, sy = b.shape(x), b.shape(y)
    if len(sx) == 1:
        x = b.reshape(x, (1, sx[0]), hint)
    if len(sy) == 1:
        y = b.reshape(y, (sy[0], 1), hint)
    out = b.emit("matmul", [x, y], hint=hint)
    if len(sx) == 1 or len(sy) == 1:
        shape = b.shape(out)
        keep = shape[:-2] + ((shape[-2],) if len(sx) > 1 else ()) + ((shape[-1],) if len(sy) > 1 else ())
        out = b.reshape(out, keep, hint)
    return [out]


def _transposed(b: Builder, x: str, hint: str) -> str:
    # a constant weight is transposed here, once, and named after itself
    return b.emit("transpose", [x], {"axes": (1, 0)}, hint=f"{x}.T" if b.constant_of(x) is not None
                  else hint, fold=True)


@converter("Gemm")
def _gemm(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """alpha * A' @ B' + beta * C; transposed constant weights are folded into the constant."""
    a, w = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else ""
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    if len(b.shape(a)) != 2 or len(b.shape(w)) != 2:
        raise ShapeError(f"Gemm operands must be 2-D, got {b.shape(a)} and {b.shape(w)}")
    if attrs.get("transA", 0):
        a = _transposed(b, a, hint)
    if attrs.get("transB", 0):
        w = _transposed(b, w, hint)
    out = b.emit("matmul", [a, w], hint=hint)
    if alpha != 1.0:
        out = b.emit("mul", [out, b.scalar(alpha, "alpha")], hint=hint)
    if c and beta != 0.0:
        if beta != 1.0:
            cc = b.constant_of(c)
            c = (b.const((cc * np.asarray(beta, dtype=cc.dtype)).astype(cc.dtype), "beta_c")
                 if cc is not None else b.emit("mul", [c, b.scalar(beta, "beta")], hint=hint))
        out = b.emit("add", [out, c], hint=hint)
    return [out]


# -- structural -----------------------------------------------------------------------------------

@converter("Flatten")
def _flatten(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """ONNX Flatten always yields 2-D: (prod(dims[:axis]), prod(dims[axis:]))."""
    shape = b.shape(ins[0])
    axis = int(attrs.get("axis", 1))
    axis = axis + len(shape) if axis < 0 else axis
    target = (size(shape[:axis]), size(shape[axis:]))
    if axis == 1 and b.constant_of(ins[0]) is None and len(shape) >= 2:
        return [b.emit("flatten", [ins[0]], {"start_dim": 1}, hint=hint)]
    return [b.reshape(ins[0], target, hint)]


def _reshape_target(shape: tuple[int, ...], spec: tuple[int, ...], allowzero: bool) -> tuple[int, ...]:
    """ONNX Reshape: 0 copies the input dim (unless allowzero), one -1 is inferred."""
    out = [shape[i] if d == 0 and not allowzero else d for i, d in enumerate(spec)]
    if out.count(-1) > 1:
        raise ShapeError(f"Reshape: more than one -1 in {spec}")
    if -1 in out:
        known = size(tuple(d for d in out if d != -1))
        if known == 0 or size(shape) % known:
            raise ShapeError(f"Reshape: cannot reshape {shape} to {spec}")
        out[out.index(-1)] = size(shape) // known
    if size(tuple(out)) != size(shape):
        raise ShapeError(f"Reshape: cannot reshape {shape} to {spec}")
    return tuple(out)


@converter("Reshape")
def _reshape(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    spec = _ints(_const_input(b, ins[1], "Reshape's shape")) if len(ins) > 1 else _ints(attrs["shape"])
    target = _reshape_target(b.shape(ins[0]), spec, bool(attrs.get("allowzero", 0)))
    return [b.reshape(ins[0], target, hint)]


def _axes(b: Builder, ins: list[str], attrs: dict[str, Any], what: str) -> tuple[int, ...] | None:
    """Axes as an attribute (opset < 13) or as a constant second input (opset >= 13)."""
    if len(ins) > 1 and ins[1]:
        return _ints(_const_input(b, ins[1], f"{what}'s axes"))
    return _ints(attrs["axes"]) if "axes" in attrs else None


@converter("Squeeze")
def _squeeze(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    shape = b.shape(ins[0])
    axes = _axes(b, ins, attrs, "Squeeze")
    if axes is None:
        axes = tuple(i for i, d in enumerate(shape) if d == 1)
    axes = tuple(a % len(shape) for a in axes)
    if any(shape[a] != 1 for a in axes):
        raise ShapeError(f"Squeeze: axes {axes} of shape {shape} are not all 1")
    return [b.reshape(ins[0], tuple(d for i, d in enumerate(shape) if i not in axes), hint)]


@converter("Unsqueeze")
def _unsqueeze(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    shape = list(b.shape(ins[0]))
    axes = _axes(b, ins, attrs, "Unsqueeze")
    if axes is None:
        raise ShapeError("Unsqueeze needs axes")
    rank = len(shape) + len(axes)
    for a in sorted(a % rank for a in axes):
        shape.insert(a, 1)
    return [b.reshape(ins[0], tuple(shape), hint)]


@converter("Transpose")
def _transpose(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    rank = len(b.shape(ins[0]))
    perm = _ints(attrs["perm"]) if "perm" in attrs else tuple(reversed(range(rank)))
    return [b.emit("transpose", [ins[0]], {"axes": perm}, hint=hint, fold=True)]


@converter("Concat")
def _concat(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    consts = [b.constant_of(i) for i in ins]
    if all(c is not None for c in consts) and all(c.dtype.kind in "iu" for c in consts):
        return [b.const(np.concatenate(consts, axis=int(attrs["axis"])), hint)]  # shape arithmetic
    return [b.emit("concat", list(ins), {"axis": int(attrs["axis"])}, hint=hint, fold=True)]


def _softmax_like(prim: str) -> Converter:
    def convert(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
        shape = b.shape(ins[0])
        if b.opset >= 13:
            return [b.emit(prim, [ins[0]], {"axis": int(attrs.get("axis", -1))}, hint=hint)]
        # before opset 13 the input is coerced to 2-D at ``axis`` and normalised over the tail
        axis = int(attrs.get("axis", 1)) % max(len(shape), 1)
        if axis == len(shape) - 1:
            return [b.emit(prim, [ins[0]], {"axis": -1}, hint=hint)]
        flat = b.reshape(ins[0], (size(shape[:axis]), size(shape[axis:])), hint)
        return [b.reshape(b.emit(prim, [flat], {"axis": -1}, hint=hint), shape, hint)]
    return convert


CONVERTERS["Softmax"] = _softmax_like("softmax")
CONVERTERS["LogSoftmax"] = _softmax_like("log_softmax")


@converter("Constant")
def _constant(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    if "value" in attrs:
        return [b.const(np.asarray(attrs["value"]), hint)]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return [b.const(np.asarray(attrs[key], dtype=dtype), hint)]
    raise ShapeError(f"Constant with attributes {sorted(attrs)} is not supported")


# -- shape arithmetic (folded; never reaches the graph) -------------------------------------------

@converter("Shape")
def _shape(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    shape = b.shape(ins[0])
    start, end = int(attrs.get("start", 0)), attrs.get("end")
    return [b.const(np.asarray(shape[start:None if end is None else int(end)], dtype=np.int64), hint)]


@converter("Gather")
def _gather(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    data = _const_input(b, ins[0], "Gather's data")
    idx = _const_input(b, ins[1], "Gather's indices")
    return [b.const(np.take(data, idx, axis=int(attrs.get("axis", 0))), hint)]


@converter("Cast")
def _cast(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    import onnx

    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(attrs["to"])))
    c = b.constant_of(ins[0])
    if c is not None:
        return [b.const(c.astype(dtype), hint)]
    if dtype.kind == "f" and str(dtype) == b.dtype:
        return [ins[0]]  # a cast to the model's own float type is a no-op
    raise ShapeError(f"Cast of a runtime value to {dtype} is not supported")


# -- convolution, pooling, normalisation ------------------------------------------------------------

def _symmetric_pads(attrs: dict[str, Any], op: str, rank: int = 2) -> tuple[int, ...]:
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise ShapeError(f"{op}: auto_pad={attrs['auto_pad']} is not supported (give explicit pads)")
    pads = _ints(attrs.get("pads", (0,) * 2 * rank))
    if pads[:rank] != pads[rank:]:
        raise ShapeError(f"{op}: asymmetric pads {pads} are not supported")
    return pads[:rank]


def _check_2d(b: Builder, x: str, op: str) -> None:
    if len(b.shape(x)) != 4:
        raise ShapeError(f"{op}: only 2-D (N, C, H, W) inputs are supported, got {b.shape(x)}")


@converter("Conv")
def _conv(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    x, w = ins[0], ins[1]
    _check_2d(b, x, "Conv")
    k = b.shape(w)[2:]
    if "kernel_shape" in attrs and _ints(attrs["kernel_shape"]) != tuple(k):
        raise ShapeError(f"Conv: kernel_shape {attrs['kernel_shape']} differs from weight {b.shape(w)}")
    conv_attrs = {"stride": _ints(attrs.get("strides", (1, 1))),
                  "padding": _symmetric_pads(attrs, "Conv"),
                  "dilation": _ints(attrs.get("dilations", (1, 1))),
                  "groups": int(attrs.get("group", 1))}
    out = b.emit("conv2d", [x, w], conv_attrs, hint=hint)
    if len(ins) > 2 and ins[2]:
        bias = b.reshape(ins[2], (b.shape(ins[2])[0], 1, 1), hint)
        out = b.emit("add", [out, bias], hint=hint)
    return [out]


def _pool_attrs(b: Builder, x: str, attrs: dict[str, Any], op: str) -> dict[str, Any]:
    _check_2d(b, x, op)
    if attrs.get("ceil_mode", 0):
        raise ShapeError(f"{op}: ceil_mode=1 is not supported")
    if any(d != 1 for d in _ints(attrs.get("dilations", (1, 1)))):
        raise ShapeError(f"{op}: dilations {attrs['dilations']} are not supported")
    k = _ints(attrs["kernel_shape"])
    return {"kernel_size": k, "stride": _ints(attrs.get("strides", (1, 1))),
            "padding": _symmetric_pads(attrs, op)}


@converter("MaxPool")
def _max_pool(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    if attrs.get("storage_order", 0):
        raise ShapeError("MaxPool: storage_order=1 is not supported")
    return [b.emit("max_pool2d", [ins[0]], _pool_attrs(b, ins[0], attrs, "MaxPool"), hint=hint)]


@converter("AveragePool")
def _avg_pool(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    pool = _pool_attrs(b, ins[0], attrs, "AveragePool")
    # ONNX's default excludes padding from the count (torch's default includes it)
    pool["count_include_pad"] = bool(attrs.get("count_include_pad", 0))
    return [b.emit("avg_pool2d", [ins[0]], pool, hint=hint)]


@converter("GlobalAveragePool")
def _global_avg_pool(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    _check_2d(b, ins[0], "GlobalAveragePool")
    return [b.emit("mean", [ins[0]], {"axes": (2, 3), "keepdims": True}, hint=hint)]


@converter("BatchNormalization")
def _batch_norm(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    if attrs.get("training_mode", 0):
        raise ShapeError("BatchNormalization: training_mode=1 is not supported")
    x, scale, bias, mean, var = ins[:5]
    eps = float(np.float32(attrs.get("epsilon", 1e-5)))  # ONNX stores epsilon as float32
    return [b.emit("batch_norm", [x, mean, var, scale, bias], {"eps": eps}, hint=hint)]
