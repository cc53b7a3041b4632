"""User-level operations (``torchlean.nn.functional``), all built from primitives via ``apply``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..spec.constants import SQRT1_2
from ..spec.shapes import ShapeError, norm_axis
from .backends import namespace_of
from .functional_nn import (  # noqa: F401  (re-exported: the nn section of the functional API)
    avg_pool2d,
    batch_norm,
    conv1d,
    conv2d,
    dropout,
    embedding,
    layer_norm,
    max_pool2d,
)
from .tensor import Tensor, _scalar, apply, note_derived

# -- elementwise ------------------------------------------------------------------------


def relu(x: Tensor) -> Tensor:
    """max(x, 0) elementwise."""
    return apply("relu", x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x where x >= 0, ``negative_slope * x`` elsewhere (torch's default slope 0.01)."""
    return apply("leaky_relu", x, slope=negative_slope)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent elementwise."""
    return apply("tanh", x)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)) elementwise."""
    return apply("sigmoid", x)


def erf(x: Tensor) -> Tensor:
    """The error function elementwise (``torch.erf``)."""
    return apply("erf", x)


def gelu(x: Tensor, approximate: str = "tanh") -> Tensor:
    """GELU. ``approximate='tanh'`` (torchlean's default; one primitive):
    0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))). ``approximate='none'`` (torch's default, the exact
    form): x·0.5·(1 + erf(x·M_SQRT1_2)), composed of primitives in torch's own order and with its
    binary64 constant 1/√2 cast to x's dtype, as torch's kernel computes it.
    """
    if approximate == "tanh":
        return apply("gelu", x)
    if approximate == "none":
        return x * 0.5 * (1 + erf(x * SQRT1_2))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def silu(x: Tensor) -> Tensor:
    """x · sigmoid(x) elementwise (also called swish)."""
    return apply("silu", x)


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)) elementwise, computed stably."""
    return apply("softplus", x)


def exp(x: Tensor) -> Tensor:
    """exp elementwise."""
    return apply("exp", x)


def log(x: Tensor) -> Tensor:
    """Natural logarithm elementwise."""
    return apply("log", x)


def sqrt(x: Tensor) -> Tensor:
    """Square root elementwise."""
    return apply("sqrt", x)


def abs(x: Tensor) -> Tensor:  # noqa: A001 - mirrors torch.abs
    """|x| elementwise."""
    return apply("abs", x)


def maximum(a: Tensor, b: Any) -> Tensor:
    """Elementwise maximum of ``a`` and ``b`` (a tensor or a number), broadcasting."""
    return apply("maximum", a, _scalar(b, a))


def minimum(a: Tensor, b: Any) -> Tensor:
    """Elementwise minimum of ``a`` and ``b`` (a tensor or a number), broadcasting."""
    return apply("minimum", a, _scalar(b, a))


def where(cond: Tensor, a: Any, b: Any) -> Tensor:
    """``a`` where the boolean tensor ``cond`` holds, else ``b`` (tensors or numbers)."""
    like = a if isinstance(a, Tensor) else b
    return apply("where", cond, _scalar(a, like), _scalar(b, like))


def clamp(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """Clip ``x`` into [min, max]; either bound may be None (``clamp(x, min=0)`` is relu)."""
    if min is not None:
        x = maximum(x, min)
    if max is not None:
        x = minimum(x, max)
    return x


# -- linear algebra ----------------------------------------------------------------------


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """numpy/torch matmul: 1-D operands are promoted and the added axis removed again."""
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: scalar operand (shapes {a.shape} and {b.shape})")
    a2 = reshape(a, (1, a.shape[0])) if a.ndim == 1 else a
    b2 = reshape(b, (b.shape[0], 1)) if b.ndim == 1 else b
    out = apply("matmul", a2, b2)
    if a.ndim == 1 and b.ndim == 1:
        return reshape(out, ())
    if a.ndim == 1:
        return reshape(out, (*out.shape[:-2], out.shape[-1]))
    if b.ndim == 1:
        return reshape(out, out.shape[:-1])
    return out


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weightᵀ + bias, weight of shape (out_features, in_features)."""
    if x.shape[-1] != weight.shape[1]:
        raise ShapeError(
            f"linear: input has {x.shape[-1]} features (shape {x.shape}) but weight expects "
            f"{weight.shape[1]} (shape {weight.shape})"
        )
    y = matmul(x, transpose(weight, 0, 1))
    return y + bias if bias is not None else y


# -- reductions ----------------------------------------------------------------------------


def _dims(dim: int | Sequence[int] | None) -> tuple[int, ...] | None:
    """A reduction's ``dim`` as axes; an empty sequence is every axis, as torch reads it
    (``x.sum(dim=())``, ``torch.var(x, [])``): the primitives' ``axes=()`` reduces none, so the old
    reading returned x itself from sum/mean/amax and zeros from var/std (audit57)."""
    if dim is None:
        return None
    if isinstance(dim, int):
        return (dim,)
    dims = tuple(dim)
    return dims or None


def sum(x: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """Sum over ``dim`` (an int, a tuple of ints, or None for every axis)."""
    return apply("sum", x, axes=_dims(dim), keepdims=keepdim)


def mean(x: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
    """Mean over ``dim`` (an int, a tuple of ints, or None for every axis)."""
    return apply("mean", x, axes=_dims(dim), keepdims=keepdim)


def amax(x: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
    """Maximum values (ties share the gradient evenly, like torch.amax)."""
    return apply("max", x, axes=_dims(dim), keepdims=keepdim)


def amin(x: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
    """Minimum values, as ``-amax(-x)`` (two primitives, so proofs and bound rows cover it)."""
    return -amax(-x, dim, keepdim)


def _arg_extreme(x: Tensor, dim: int | None, keepdim: bool, fn: str) -> Tensor:
    """Indices (int64, no gradient) of the first maximum/minimum, like torch.argmax/argmin."""
    xp = namespace_of(x.data)
    if dim is None:
        out = getattr(xp, fn)(x.data.reshape(-1))
        if keepdim:  # torch: every axis kept with size 1
            out = out.reshape((1,) * x.ndim)
        return note_derived(Tensor(xp.asarray(out, dtype=np.int64)), [x], fn)
    d = norm_axis(dim, x.ndim, fn)
    return note_derived(Tensor(xp.asarray(getattr(xp, fn)(x.data, axis=d, keepdims=keepdim), dtype=np.int64)),
                        [x], fn)


def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the first maximum over ``dim`` (over the flattened tensor when None), int64.

    >>> argmax(tl.tensor([[1., 5., 2.], [7., 0., 7.]]), dim=1).tolist()
    [1, 0]
    """
    return _arg_extreme(x, dim, keepdim, "argmax")


def argmin(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the first minimum over ``dim`` (over the flattened tensor when None), int64."""
    return _arg_extreme(x, dim, keepdim, "argmin")


class MaxMin(tuple):
    """``(values, indices)`` returned by ``Tensor.max(dim)`` / ``Tensor.min(dim)``, like torch's
    ``torch.return_types.max``."""

    __slots__ = ()

    def __new__(cls, values: Tensor, indices: Tensor) -> MaxMin:
        return super().__new__(cls, (values, indices))

    @property
    def values(self) -> Tensor:
        """The maximum (minimum) values."""
        return self[0]

    @property
    def indices(self) -> Tensor:
        """The index of each value along the reduced dimension (int64)."""
        return self[1]


def max(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor | MaxMin:  # noqa: A001
    """torch.max: the maximum value (no ``dim``), or ``(values, indices)`` over ``dim``."""
    if dim is None:
        return amax(x)
    return MaxMin(amax(x, dim, keepdim), argmax(x, dim, keepdim))


def min(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor | MaxMin:  # noqa: A001
    """torch.min: the minimum value (no ``dim``), or ``(values, indices)`` over ``dim``."""
    if dim is None:
        return amin(x)
    return MaxMin(amin(x, dim, keepdim), argmin(x, dim, keepdim))


def var(x: Tensor, dim: int | Sequence[int] | None = None, unbiased: bool = True, keepdim: bool = False,
        *, correction: int | None = None) -> Tensor:
    """Variance over ``dim``, torch's signature and default: divides by n − 1 (``unbiased=False``
    or ``correction=0``: by n). Built from mean, sub, mul and sum."""
    corr = (1 if unbiased else 0) if correction is None else int(correction)
    mu = mean(x, dim, keepdim=True)
    d = x - mu
    n = x.numel() if dim is None else _count(x.shape, _dims(dim))
    s = sum(d * d, dim, keepdim=keepdim)
    return s / (n - corr)


def std(x: Tensor, dim: int | Sequence[int] | None = None, unbiased: bool = True, keepdim: bool = False,
        *, correction: int | None = None) -> Tensor:
    """Standard deviation, ``sqrt(var(...))`` with torch's signature and default (n − 1)."""
    return sqrt(var(x, dim, unbiased, keepdim, correction=correction))


def _count(shape: tuple[int, ...], dims: tuple[int, ...] | None) -> int:
    n = 1
    for d in dims or range(len(shape)):
        n *= shape[d]
    return n


# -- structure -----------------------------------------------------------------------------


def reshape(x: Tensor, *shape: Any) -> Tensor:
    """The same values in a new shape: ``reshape(x, 2, 3)`` or ``reshape(x, (2, -1))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if tuple(shape) == x.shape:
        return x
    return apply("reshape", x, shape=tuple(int(s) for s in shape))


def flatten(x: Tensor, start_dim: int = 0) -> Tensor:
    """Merge the axes from ``start_dim`` on into one (``flatten(x, 1)``: (N, C, H, W) to (N, C·H·W))."""
    return apply("flatten", x, start_dim=start_dim)


def permute(x: Tensor, *dims: Any) -> Tensor:
    """Reorder the axes: ``permute(x, 0, 2, 1)`` or ``permute(x, (0, 2, 1))``."""
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    return apply("transpose", x, axes=tuple(d % x.ndim for d in dims))


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap axes ``dim0`` and ``dim1``."""
    axes = list(range(x.ndim))
    d0, d1 = norm_axis(dim0, x.ndim, "transpose"), norm_axis(dim1, x.ndim, "transpose")
    axes[d0], axes[d1] = axes[d1], axes[d0]
    return apply("transpose", x, axes=tuple(axes))


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    """Insert an axis of size 1 at position ``dim``."""
    d = dim % (x.ndim + 1)
    return reshape(x, (*x.shape[:d], 1, *x.shape[d:]))


def squeeze(x: Tensor, dim: int | None = None) -> Tensor:
    """Drop axes of size 1 (only ``dim`` when given, and only if its size is 1)."""
    if dim is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    d = norm_axis(dim, x.ndim, "squeeze")
    if x.shape[d] != 1:
        return x
    return reshape(x, (*x.shape[:d], *x.shape[d + 1:]))


def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Broadcast ``x`` to ``shape`` (numpy's rules); the gradient sums back."""
    return apply("broadcast_to", x, shape=tuple(shape))


def cat(xs: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along the existing axis ``dim`` (torch.cat)."""
    return apply("concat", *xs, axis=dim)


def stack(xs: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join equally shaped tensors along a new axis ``dim`` (an unsqueeze of each, then cat)."""
    xs = list(xs)
    if not xs:
        raise ValueError("stack expects a non-empty sequence of tensors")
    shapes = {t.shape for t in xs}
    if len(shapes) > 1:
        raise ShapeError(f"stack expects tensors of equal shape, got {sorted(shapes)}")
    d = dim % (xs[0].ndim + 1)
    return cat([unsqueeze(t, d) for t in xs], d)


def gather(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """Values of ``x`` picked along ``dim`` by the integer tensor ``index`` (torch.gather). A
    negative index in [-size, 0) counts from the end (numpy's and ONNX GatherElements' reading,
    kept since audit33; torch raises there); one outside [-size, size) is an error."""
    return apply("gather", x, index, axis=dim)


class IndexRange:
    """A check (``trace.validate``) that integer indices lie in [0, n), as torch's embedding
    requires; an object so that a compiled plan can hold it and rerun it every batch."""

    def __init__(self, n: int, op: str):
        self.n, self.op = int(n), op

    def __call__(self, data: Any) -> None:
        from .backends import to_numpy

        t = to_numpy(data)
        if t.size and (int(t.min()) < 0 or int(t.max()) >= self.n):
            bad = int(t.min()) if int(t.min()) < 0 else int(t.max())
            raise IndexError(f"{self.op}: index {bad} out of range [0, {self.n})")


def check_index_range(index: Any, n: int, op: str) -> None:
    """Refuse indices outside [0, n) (numeric tensors only: a symbolic backend's are formulas)."""
    from .trace import validate

    if isinstance(index, Tensor) and getattr(getattr(index.data, "dtype", None), "kind", "O") in "iu":
        validate(index, IndexRange(n, op))


def index(x: Tensor, key: Any) -> Tensor:
    """Basic indexing (ints, slices, None, Ellipsis) as a ``slice`` plus a ``reshape``."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(isinstance(k, (Tensor, list)) for k in key):
        raise TypeError("indexing with tensors: use gather() or nn.functional.embedding()")
    if key.count(Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis")
    n_real = len([k for k in key if k is not None and k is not Ellipsis])
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (x.ndim - n_real) + key[i + 1:]
    if n_real > x.ndim:
        raise IndexError(f"too many indices for tensor of rank {x.ndim}")
    spans, out_shape, axis = [], [], 0
    for k in key:
        if k is None:
            out_shape.append(1)
            continue
        n = x.shape[axis]
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step <= 0:
                raise IndexError("negative slice steps are not supported")
            spans.append((start, stop, step))
            out_shape.append(len(range(start, stop, step)))
        else:
            i = int(k)
            if not -n <= i < n:
                raise IndexError(f"index {i} out of range for axis {axis} of size {n}")
            i %= n
            spans.append((i, i + 1, 1))
        axis += 1
    out_shape.extend(x.shape[axis:])
    spans.extend((0, d, 1) for d in x.shape[axis:])
    y = x
    if any(s != (0, d, 1) for s, d in zip(spans, x.shape)):
        y = apply("slice", x, index=tuple(spans))
    return reshape(y, tuple(out_shape))


# -- softmax family ----------------------------------------------------------------------


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``, computed stably."""
    return apply("softmax", x, axis=dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(x)) along ``dim``, computed stably."""
    return apply("log_softmax", x, axis=dim)


# -- losses ----------------------------------------------------------------------------------


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}; expected 'mean', 'sum' or 'none'")


def _same_shape(op: str, a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ShapeError(f"{op}: input shape {a.shape} differs from target shape {b.shape}")


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Mean squared error of ``input`` and ``target`` (equal shapes); ``reduction`` 'mean', 'sum', 'none'."""
    _same_shape("mse_loss", input, target)
    d = input - target
    return _reduce(d * d, reduction)


def huber_loss(input: Tensor, target: Tensor, delta: float = 1.0,  # noqa: A002
               reduction: str = "mean") -> Tensor:
    """Huber loss: 0.5·d² where |d| <= delta, delta·(|d| − 0.5·delta) elsewhere, d = input − target."""
    _same_shape("huber_loss", input, target)
    d = input - target
    a = abs(d)
    quad = d * d * 0.5
    lin = (a - 0.5 * delta) * delta
    return _reduce(where(a <= delta, quad, lin), reduction)


def _check_classes(target: Tensor, n_classes: int) -> None:
    """IndexError for a target that is no class index in [0, n_classes) (as torch raises): gather
    would wrap -1 round to the last class and truncate 1.5 to class 1, a silently wrong loss. Only
    numeric targets are looked at (a symbolic backend's are formulas)."""
    from .trace import validate

    if getattr(getattr(target.data, "dtype", None), "kind", "O") not in "iuf":
        return
    # through validate: a compiled plan repeats the check on every batch (it reads the values)
    validate(target, _ClassRange(n_classes))


class _ClassRange:
    """The check of ``_check_classes`` for ``n`` classes (an object, so a plan can hold it)."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, data: Any) -> None:
        from .backends import to_numpy

        t = to_numpy(data)
        bad = (t < 0) | (t >= self.n)
        if t.dtype.kind == "f":
            bad |= t != np.floor(t)
        if t.size and bad.any():
            raise IndexError(f"cross_entropy: target {t.ravel()[bad.ravel()][0]} is not a class index in "
                             f"[0, {self.n})")


def cross_entropy(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Logits (N, C) against class indices (N,)."""
    if input.ndim != 2 or target.shape != (input.shape[0],):
        raise ShapeError(
            f"cross_entropy: expects logits (N, C) and targets (N,), got {input.shape} and {target.shape}"
        )
    _check_classes(target, input.shape[1])
    logp = log_softmax(input, dim=1)
    picked = gather(logp, 1, reshape(target, (target.shape[0], 1)))
    return _reduce(-reshape(picked, (input.shape[0],)), reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,  # noqa: A002
                                     reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of ``sigmoid(input)`` against ``target`` in [0, 1], stably from logits."""
    _same_shape("binary_cross_entropy_with_logits", input, target)
    return _reduce(softplus(input) - input * target, reduction)


#: the ``torch.Tensor`` methods torchlean has, by name; ``Tensor`` defines each one explicitly
#: (runtime/tensor_methods.py) as a call of the function here, and a test keeps both in step
TENSOR_METHODS: dict[str, Any] = {
    "relu": relu, "tanh": tanh, "erf": erf, "sigmoid": sigmoid, "exp": exp, "log": log, "sqrt": sqrt,
    "abs": abs, "sum": sum, "mean": mean, "amax": amax, "amin": amin, "max": max, "min": min,
    "argmax": argmax, "argmin": argmin, "var": var, "std": std,
    "reshape": reshape, "view": reshape, "flatten": flatten, "permute": permute,
    "transpose": transpose, "unsqueeze": unsqueeze, "squeeze": squeeze,
    "expand": lambda x, *s: broadcast_to(x, s[0] if len(s) == 1 and isinstance(s[0], (tuple, list)) else s),
    "broadcast_to": broadcast_to, "gather": gather, "softmax": softmax,
    "log_softmax": log_softmax, "matmul": matmul, "clamp": clamp,
    "maximum": maximum, "minimum": minimum, "where": lambda x, condition, y: where(condition, x, y),
}

__all__ = [
    "abs", "amax", "amin", "argmax", "argmin", "avg_pool2d", "batch_norm",
    "binary_cross_entropy_with_logits", "broadcast_to", "cat", "clamp", "conv1d", "conv2d",
    "cross_entropy", "dropout", "embedding", "erf", "exp", "flatten", "gather", "gelu", "huber_loss", "index",
    "layer_norm", "leaky_relu", "linear", "log", "log_softmax", "matmul", "max", "max_pool2d", "maximum",
    "mean", "min", "minimum", "mse_loss", "permute", "relu", "reshape", "sigmoid", "silu", "softmax",
    "softplus", "sqrt", "squeeze", "stack", "std", "sum", "tanh", "transpose", "unsqueeze", "var", "where",
]
