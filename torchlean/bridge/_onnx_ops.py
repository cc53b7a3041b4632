"""One converter per ONNX operator: ``convert(builder, inputs, attrs, hint) -> [output names]``.

Inputs are IR value names ("" for an omitted optional input). Every shape is static at import
time, so operators that compute shapes fold to constants, and the attributes a primitive needs
(a reshape target, a transpose permutation) are always concrete tuples.

Every attribute keeps its exact meaning (see ``bridge.onnx``): float attributes are float32 in
ONNX and enter the graph as constants or primitive attributes holding exactly that value (defaults
too: LeakyRelu's 0.01 is float32(0.01)); scalings are folded only when exact (``Builder.scaled``);
integer shape arithmetic is done on Python integers and refused when it leaves int64. Convolution,
pooling, normalisation, Pad and Clip live in ``_onnx_nn``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..spec.shapes import ShapeError, size
from ..spec.tensorops import CAST_DTYPES
from ._onnx_exact import exact_product

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
    "GlobalMaxPool": ("max",),
    "BatchNormalization": ("batch_norm",),
    "LayerNormalization": ("layer_norm",),
}
_INT64 = (-(2**63), 2**63 - 1)


def converter(*names: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for n in names:
            CONVERTERS[n] = fn
        return fn
    return register


def const_input(b: Builder, name: str, what: str) -> np.ndarray:
    """The constant value of input ``name``; a runtime value is refused naming ``what``."""
    c = b.constant_of(name) if name else None
    if c is None:
        raise ShapeError(f"{what} must be a constant (computed from initializers), not a runtime value")
    return c


def vector(b: Builder, name: str, what: str) -> tuple[int, ...]:
    """A constant 1-D integer input (a shape, axes, starts, pads): ONNX says 1-D, and onnxruntime
    stops at run time on a 0-D or 2-D one the import would flatten (audit40)."""
    c = const_input(b, name, what)
    if c.ndim != 1:
        raise ShapeError(f"{what} must be a 1-D tensor, got shape {c.shape}")
    return ints(c)


def ints(a: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(a).reshape(-1))


def f32(v: Any) -> float:
    """An ONNX float attribute (or its default) as the exact value of the float32 it denotes."""
    return float(np.float32(v))


def axis_in(axis: int, rank: int, what: str) -> int:
    """A possibly negative axis, checked to lie in [-rank, rank), as a non-negative one."""
    if not -rank <= int(axis) < rank:
        raise ShapeError(f"{what}: axis {axis} is out of range for rank {rank}")
    return int(axis) % rank


# -- elementwise -------------------------------------------------------------------------------

_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Max": "maximum", "Min": "minimum"}
_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Erf": "erf", "Exp": "exp", "Log": "log",
          "Sqrt": "sqrt", "Neg": "neg", "Abs": "abs", "Softplus": "softplus"}


def _int_op(prim: str, x: int, y: int) -> int:
    if prim == "div":
        if y == 0:
            raise ShapeError("integer division by zero")
        q = abs(x) // abs(y)  # ONNX integer Div truncates toward zero (C++ semantics)
        return q if (x < 0) == (y < 0) else -q
    return {"add": x + y, "sub": x - y, "mul": x * y, "maximum": max(x, y), "minimum": min(x, y)}[prim]


def _fold_ints(prim: str, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Integer shape arithmetic on exact Python integers, refused if a result leaves int64."""
    bx, by = np.broadcast_arrays(cx.astype(object), cy.astype(object))
    out = np.frompyfunc(lambda x, y: _int_op(prim, int(x), int(y)), 2, 1)(bx, by)
    if any(not _INT64[0] <= int(v) <= _INT64[1] for v in np.asarray(out).flat):
        raise ShapeError("integer shape arithmetic overflows int64")
    return np.asarray(out, dtype=np.result_type(cx.dtype, cy.dtype))


def _binary(prim: str) -> Converter:
    def convert(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
        if attrs.get("broadcast") and "axis" in attrs:  # opset < 7 explicit-axis broadcasting
            raise ShapeError("legacy broadcast with an axis attribute is not supported")
        if prim in ("maximum", "minimum") and b.opset < 8 and len({b.shape(i) for i in ins}) > 1:
            # (audit40) Max-6/Min-6 do not broadcast: onnxruntime stops on such a file at run time
            raise ShapeError("Max/Min before opset 8 take inputs of one shape (no broadcasting)")
        if len(ins) != 2:  # variadic Max/Min
            out = ins[0]
            for other in ins[1:]:
                out = b.emit(prim, [out, other], hint=hint)
            return [out]
        x, y = ins
        # integer arithmetic on constants is shape arithmetic: fold it, exactly
        cx, cy = b.constant_of(x), b.constant_of(y)
        if cx is not None and cy is not None and cx.dtype.kind in "iu" and cy.dtype.kind in "iu":
            return [b.const(_fold_ints(prim, cx, cy), hint)]
        if prim == "div" and cy is not None and not np.all(cy != 0):
            raise ShapeError("Div by a constant holding 0 has no real-number meaning")
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
    return [b.emit("leaky_relu", [ins[0]], {"slope": f32(attrs.get("alpha", 0.01))}, hint=hint)]


@converter("Pow")
def _pow(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """x ** c for a constant scalar c (the exponent's exact value; integral ones as integers)."""
    c = const_input(b, ins[1], "Pow's exponent")
    if c.size != 1:
        raise ShapeError(f"Pow: the exponent must be a scalar, got shape {c.shape}")
    e = c.reshape(-1)[0]
    if not np.isfinite(e):
        raise ShapeError(f"Pow: exponent {e} is not finite")
    exponent: int | float = int(e) if c.dtype.kind in "iu" or float(e).is_integer() else float(e)
    out = b.emit("pow", [ins[0]], {"exponent": exponent}, hint=hint)
    # ONNX broadcasts the exponent's shape too (a (1, 1) exponent raises the rank)
    target = np.broadcast_shapes(b.shape(ins[0]), c.shape)
    return [b.reshape(out, target, hint)]


@converter("Identity")
def _identity(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    return [ins[0]]


@converter("Dropout")
def _dropout(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """The identity at inference; refused in training mode (its mask output is refused by the
    loader if anything reads it)."""
    if len(ins) > 2 and ins[2]:
        if bool(np.any(const_input(b, ins[2], "Dropout's training_mode"))):
            raise ShapeError("Dropout in training mode is not supported")
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
    # a constant weight is transposed here, once (exact: a rearrangement), and named after itself
    return b.emit("transpose", [x], {"axes": (1, 0)}, hint=f"{x}.T" if b.constant_of(x) is not None
                  else hint, fold=True)


@converter("Gemm")
def _gemm(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """alpha * A' @ B' + beta * C. Transposed constant weights are folded (exact); alpha goes into a
    constant operand and beta into a constant C only when every product is exact, else each is an
    explicit ``mul`` by the attribute's exact value."""
    a, w = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else ""
    alpha, beta = f32(attrs.get("alpha", 1.0)), f32(attrs.get("beta", 1.0))
    if len(b.shape(a)) != 2 or len(b.shape(w)) != 2:
        raise ShapeError(f"Gemm operands must be 2-D, got {b.shape(a)} and {b.shape(w)}")
    if attrs.get("transA", 0):
        a = _transposed(b, a, hint)
    if attrs.get("transB", 0):
        w = _transposed(b, w, hint)
    cw = b.constant_of(w)
    folded = exact_product(cw, alpha) if alpha != 1.0 and cw is not None else None
    if folded is not None:  # alpha * (A @ W) = A @ (alpha * W) over the reals
        w, alpha = b.const(folded, f"{w}.alpha"), 1.0
    out = b.scaled(b.emit("matmul", [a, w], hint=hint), alpha, hint)
    if c and np.broadcast_shapes(b.shape(c), b.shape(out)) != b.shape(out):
        raise ShapeError(f"Gemm: C of shape {b.shape(c)} does not broadcast to {b.shape(out)}")
    if c and beta != 0.0:  # beta == 0: ONNX's beta * C is zero for any (finite) C
        out = b.emit("add", [out, b.scaled(c, beta, f"{c}.beta")], hint=hint)
    return [out]


# -- structural -----------------------------------------------------------------------------------

@converter("Flatten")
def _flatten(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """ONNX Flatten always yields 2-D: (prod(dims[:axis]), prod(dims[axis:]))."""
    shape = b.shape(ins[0])
    axis = int(attrs.get("axis", 1))
    if not -len(shape) <= axis <= len(shape):
        raise ShapeError(f"Flatten: axis {axis} is out of range for rank {len(shape)}")
    axis = axis + len(shape) if axis < 0 else axis
    target = (size(shape[:axis]), size(shape[axis:]))
    if axis == 1 and b.constant_of(ins[0]) is None and len(shape) >= 2:
        return [b.emit("flatten", [ins[0]], {"start_dim": 1}, hint=hint)]
    return [b.reshape(ins[0], target, hint)]


def _reshape_target(shape: tuple[int, ...], spec: tuple[int, ...], allowzero: bool) -> tuple[int, ...]:
    """ONNX Reshape: 0 copies the input dim (unless allowzero), one -1 is inferred."""
    if any(d < -1 for d in spec) or (not allowzero and len(spec) > len(shape) and 0 in spec[len(shape):]):
        raise ShapeError(f"Reshape: invalid target shape {spec} for input {shape}")
    out = [shape[i] if d == 0 and not allowzero else d for i, d in enumerate(spec)]
    if out.count(-1) > 1:
        raise ShapeError(f"Reshape: more than one -1 in {spec}")
    if -1 in out:
        known = size(tuple(d for d in out if d != -1))
        if known == 0 or size(shape) % known:
            raise ShapeError(f"Reshape: cannot reshape {shape} to {spec}")
        out[out.index(-1)] = size(shape) // known
    if size(tuple(out)) != size(shape) or 0 in out:
        raise ShapeError(f"Reshape: cannot reshape {shape} to {spec}")
    return tuple(out)


@converter("Reshape")
def _reshape(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    spec = vector(b, ins[1], "Reshape's shape") if len(ins) > 1 else ints(attrs["shape"])
    target = _reshape_target(b.shape(ins[0]), spec, bool(attrs.get("allowzero", 0)))
    return [b.reshape(ins[0], target, hint)]


def axes_arg(b: Builder, ins: list[str], attrs: dict[str, Any], what: str) -> tuple[int, ...] | None:
    """Axes as an attribute (older opsets) or as a constant second input (newer ones)."""
    if len(ins) > 1 and ins[1]:
        return vector(b, ins[1], f"{what}'s axes")
    return ints(attrs["axes"]) if "axes" in attrs else None


def _distinct(axes: tuple[int, ...], rank: int, what: str) -> tuple[int, ...]:
    out = tuple(axis_in(a, rank, what) for a in axes)
    if len(set(out)) != len(out):
        raise ShapeError(f"{what}: repeated axes {axes}")
    return out


@converter("Squeeze")
def _squeeze(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    shape = b.shape(ins[0])
    axes = axes_arg(b, ins, attrs, "Squeeze")
    if axes == ():
        # (audit30) an empty axes list has two readings: onnx's reference and shape inference
        # squeeze nothing, onnxruntime squeezes every unit axis (as when axes is left out); a
        # Softmax after it then normalises over another axis. Refused rather than guessed
        raise ShapeError("Squeeze: an empty axes list is read two ways (onnxruntime squeezes every "
                         "unit axis, onnx's reference none); leave axes out or list them")
    if axes is None:
        axes = tuple(i for i, d in enumerate(shape) if d == 1)
    axes = _distinct(axes, len(shape), "Squeeze")
    if any(shape[a] != 1 for a in axes):
        raise ShapeError(f"Squeeze: axes {axes} of shape {shape} are not all 1")
    return [b.reshape(ins[0], tuple(d for i, d in enumerate(shape) if i not in axes), hint)]


@converter("Unsqueeze")
def _unsqueeze(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    shape = list(b.shape(ins[0]))
    axes = axes_arg(b, ins, attrs, "Unsqueeze")
    if axes is None:
        raise ShapeError("Unsqueeze needs axes")
    for a in sorted(_distinct(axes, len(shape) + len(axes), "Unsqueeze")):
        shape.insert(a, 1)
    return [b.reshape(ins[0], tuple(shape), hint)]


@converter("Transpose")
def _transpose(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    rank = len(b.shape(ins[0]))
    perm = ints(attrs["perm"]) if "perm" in attrs else tuple(reversed(range(rank)))
    if sorted(perm) != list(range(rank)):
        raise ShapeError(f"Transpose: perm {perm} is not a permutation of the {rank} axes")
    return [b.emit("transpose", [ins[0]], {"axes": perm}, hint=hint, fold=True)]


@converter("Concat")
def _concat(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    consts = [b.constant_of(i) for i in ins]
    axis = axis_in(int(attrs["axis"]), len(b.shape(ins[0])), "Concat")
    if all(c is not None for c in consts) and all(c.dtype.kind in "iu" for c in consts):
        return [b.const(np.concatenate(consts, axis=axis), hint)]  # shape arithmetic
    return [b.emit("concat", list(ins), {"axis": axis}, hint=hint, fold=True)]


def _softmax_like(prim: str) -> Converter:
    def convert(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
        shape = b.shape(ins[0])
        if b.opset >= 13:
            axis = axis_in(int(attrs.get("axis", -1)), len(shape), prim)
            return [b.emit(prim, [ins[0]], {"axis": axis}, hint=hint)]
        # before opset 13 the input is coerced to 2-D at ``axis`` and normalised over the tail
        axis = axis_in(int(attrs.get("axis", 1)), len(shape), prim)
        if axis == len(shape) - 1:
            return [b.emit(prim, [ins[0]], {"axis": -1}, hint=hint)]
        flat = b.reshape(ins[0], (size(shape[:axis]), size(shape[axis:])), hint)
        return [b.reshape(b.emit(prim, [flat], {"axis": -1}, hint=hint), shape, hint)]
    return convert


CONVERTERS["Softmax"] = _softmax_like("softmax")
CONVERTERS["LogSoftmax"] = _softmax_like("log_softmax")


def _reduce(prim: str) -> Converter:
    """ReduceSum/Mean/Max: axes as attribute or input; none (or empty) means all axes unless
    noop_with_empty_axes, which makes it the identity."""
    def convert(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
        shape = b.shape(ins[0])
        axes = axes_arg(b, ins, attrs, prim)
        if not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return [ins[0]]
            axes = tuple(range(len(shape)))
        axes = _distinct(axes, len(shape), prim)
        keep = bool(attrs.get("keepdims", 1))
        return [b.emit(prim, [ins[0]], {"axes": tuple(sorted(axes)), "keepdims": keep}, hint=hint)]
    return convert


CONVERTERS["ReduceSum"] = _reduce("sum")
CONVERTERS["ReduceMean"] = _reduce("mean")
CONVERTERS["ReduceMax"] = _reduce("max")


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


@converter("ConstantOfShape")
def _constant_of_shape(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    shape = vector(b, ins[0], "ConstantOfShape's shape")
    if any(d < 0 for d in shape) or size(shape) > 1 << 26:
        raise ShapeError(f"ConstantOfShape: invalid shape {shape}")
    value = np.asarray(attrs.get("value", np.zeros(1, dtype=np.float32)))
    if value.size != 1:
        raise ShapeError("ConstantOfShape: value must hold one element")
    return [b.const(np.full(shape, value.reshape(-1)[0], dtype=value.dtype), hint)]


@converter("Gather")
def _gather(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """Constant data and indices: folded (a selection). Rows of a 2-D table by runtime integer
    indices (axis 0): the ``embedding`` primitive (an index outside the table is an error when
    the graph runs; a negative one counts from the end, as in ONNX and numpy)."""
    if b.constant_of(ins[1]) is None and len(b.shape(ins[0])) == 2 and \
            axis_in(int(attrs.get("axis", 0)), 2, "Gather") == 0 and b.dtypes[ins[1]] in ("int64", "int32"):
        return [b.emit("embedding", [ins[0], ins[1]], hint=hint)]
    data = const_input(b, ins[0], "Gather's data")
    idx = const_input(b, ins[1], "Gather's indices")
    axis = axis_in(int(attrs.get("axis", 0)), data.ndim, "Gather")
    n = data.shape[axis]
    if idx.dtype.kind not in "iu" or np.any(idx < -n) or np.any(idx >= n):
        raise ShapeError(f"Gather: indices out of range for axis {axis} of size {n}")
    if idx.size * (data.size // max(n, 1)) > 1 << 26:  # (audit63: checked before it is built)
        raise ShapeError("Gather: the result has more than 2**26 elements")
    return [b.const(np.take(data, idx, axis=axis), hint)]  # a selection: exact


@converter("Expand")
def _expand(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """Broadcast to the shape given (ONNX's Expand broadcasts both ways: the result is the
    broadcast of the input's shape and that shape)."""
    target = vector(b, ins[1], "Expand's shape")
    try:
        shape = tuple(int(d) for d in np.broadcast_shapes(b.shape(ins[0]), target))
    except ValueError:
        raise ShapeError(f"Expand: shape {b.shape(ins[0])} does not broadcast to {target}") from None
    if shape == b.shape(ins[0]):
        return [ins[0]]
    return [b.emit("broadcast_to", [ins[0]], {"shape": shape}, hint=hint, fold=True)]


@converter("Slice")
def _slice(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    """numpy-style slicing per listed axis (starts/ends clamped as Python's slices are); starts,
    ends, axes and steps are attributes before opset 10 and constant inputs since."""
    shape = b.shape(ins[0])
    if b.opset < 10:
        starts, ends = ints(attrs["starts"]), ints(attrs["ends"])
        axes = ints(attrs["axes"]) if "axes" in attrs else tuple(range(len(starts)))
        steps = (1,) * len(starts)
    else:
        starts, ends = (vector(b, ins[k], f"Slice's {w}") for k, w in ((1, "starts"), (2, "ends")))
        axes = vector(b, ins[3], "Slice's axes") if len(ins) > 3 and ins[3] else \
            tuple(range(len(starts)))
        steps = vector(b, ins[4], "Slice's steps") if len(ins) > 4 and ins[4] else \
            (1,) * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ShapeError("Slice: starts, ends, axes and steps differ in length")
    index: list[tuple[int, int, int]] = [(0, d, 1) for d in shape]
    for a, lo, hi, st in zip(_distinct(axes, len(shape), "Slice"), starts, ends, steps):
        if st < 1:
            raise ShapeError(f"Slice: step {st} is not supported (only positive steps)")
        index[a] = slice(lo, hi, st).indices(shape[a])
    return [b.emit("slice", [ins[0]], {"index": tuple(index)}, hint=hint, fold=True)]


#: Cast targets read here (float8/float4 targets, whose opset-24 ``round_mode`` we do not model,
#: and strings are refused)
_CAST_TARGETS = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                 "uint16", "uint32", "uint64", "bool")


@converter("Cast")
def _cast(b: Builder, ins: list[str], attrs: dict[str, Any], hint: str) -> list[str]:
    import onnx

    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(attrs["to"])))
    except (KeyError, TypeError, ValueError):
        raise ShapeError(f"Cast to element type {attrs.get('to')} is not supported") from None
    c = b.constant_of(ins[0])
    if c is None and str(dtype) in CAST_DTYPES and b.dtypes[ins[0]] in CAST_DTYPES:
        if str(dtype) == b.dtypes[ins[0]]:
            return [ins[0]]  # a cast to the value's own float type is a no-op
        # a float value to another float format: the ``cast`` primitive (real meaning the
        # identity; its rounding is the error column's, as onnxruntime's round to nearest even)
        return [b.emit("cast", [ins[0]], {"dtype": str(dtype)}, hint=hint)]
    if str(dtype) not in _CAST_TARGETS:
        raise ShapeError(f"Cast to {dtype} is not supported")
    if c is not None:
        # ONNX Cast rounds to nearest even (float targets) and truncates toward zero (integer
        # targets), as numpy's astype does; out-of-range values are undefined in ONNX: refused
        if dtype.kind in "iu" and c.dtype.kind == "f":
            info = np.iinfo(dtype)
            if not np.all(np.isfinite(c)) or np.any(np.trunc(c) < info.min) or np.any(np.trunc(c) > info.max):
                raise ShapeError(f"Cast of {c.dtype} values outside the range of {dtype}")
        with np.errstate(over="ignore", invalid="ignore"):
            out = c.astype(dtype)
            # onnxruntime (and torch) convert a double to float16 through float32: two roundings,
            # which differ from numpy's one (the ONNX reference evaluator's) next to a float16 tie;
            # the file then has two readings and the cross-check's tolerance hides the gap (audit66)
            if c.dtype == np.float64 and dtype == np.float16 and not np.array_equal(
                    out, c.astype(np.float32).astype(dtype), equal_nan=True):
                raise ShapeError("Cast of a float64 constant to float16 that rounds differently "
                                 "directly (numpy, the ONNX reference) and through float32 "
                                 "(onnxruntime): not supported")
            return [b.const(out, hint)]
    raise ShapeError(f"Cast of a runtime {b.dtypes[ins[0]]} value to {dtype} is not supported")


from . import _onnx_nn  # noqa: E402,F401  (registers the convolution/pooling/normalisation converters)
