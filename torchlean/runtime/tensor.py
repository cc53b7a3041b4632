"""Tensors with reverse-mode autograd.

Every differentiable operation goes through ``apply(name, *tensors, **attrs)``, which runs the
kernel from ``rules.RULES``, records a tape node when gradients are wanted, and reports the call to
an active tracer (``runtime.trace``). ``backward`` walks the tape in one deterministic order, shared
with the compiled executor so that both give bit-identical gradients.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..spec.shapes import ShapeError
from .backends import DeviceError, device_of, namespace, namespace_of, to_numpy
from .rules import RULES
from .tensor_methods import TensorMethods

float32 = np.dtype("float32")
float64 = np.dtype("float64")
float16 = np.dtype("float16")
int64 = np.dtype("int64")
int32 = np.dtype("int32")
bool_ = np.dtype("bool")
DTYPES = {"float16": float16, "float32": float32, "float64": float64, "int64": int64, "int32": int32,
          "bool": bool_}


def _cast_name(dtype: np.dtype) -> str | None:
    """The ``cast`` primitive's name for a float dtype (float16/32/64, ml_dtypes' bfloat16), else None."""
    if dtype.kind == "f" and dtype.name in ("float16", "float32", "float64"):
        return dtype.name
    return "bfloat16" if dtype.name == "bfloat16" else None


class _State(threading.local):
    grad_enabled = True
    tracer: Any = None


STATE = _State()


def as_dtype(dtype: Any) -> np.dtype:
    if isinstance(dtype, str) and dtype == "bfloat16":
        import ml_dtypes  # (an optional dependency: only a bfloat16 tensor needs it)

        return np.dtype(ml_dtypes.bfloat16)
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        return DTYPES[dtype]
    return np.dtype(dtype)


class Node:
    """A tape entry: the primitive, its input tensors and attributes."""

    __slots__ = ("name", "rule", "inputs", "attrs")

    def __init__(self, name: str, inputs: tuple[Tensor, ...], attrs: dict[str, Any]):
        self.name = name
        self.rule = RULES[name]
        self.inputs = inputs
        self.attrs = attrs


class Tensor(TensorMethods):
    """An n-dimensional array on a backend (numpy, cupy or symbolic), with autograd.

    Make one with ``torchlean.tensor``, ``zeros``, ``randn``, ``from_numpy``, ...; operators and
    the torch-named methods (``sum``, ``reshape``, ``argmax``, ...) record the tape that
    ``backward`` walks.
    """

    __slots__ = ("data", "requires_grad", "grad", "_node", "__weakref__")
    __array_priority__ = 1000  # so numpy scalars on the left defer to our operators

    def __init__(self, data: Any, requires_grad: bool = False):
        self.data = data
        self.requires_grad = requires_grad
        self.grad: Any = None
        self._node: Node | None = None

    # -- facts ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """The size of each axis, a tuple of ints."""
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        """The number of axes."""
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        """The element type, a numpy dtype (``torchlean.float32``, ...)."""
        return self.data.dtype

    @property
    def device(self) -> str:
        """Where the data lives: "cpu", "cuda" or "symbolic"."""
        return device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        """True for tensors not made by a recorded operation (their ``grad`` is kept)."""
        return self._node is None

    def size(self, dim: int | None = None) -> Any:
        """The shape, or the size of axis ``dim``."""
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        """The number of axes (``ndim``), torch's method form."""
        return self.data.ndim

    def numel(self) -> int:
        """The number of elements."""
        return int(self.data.size)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(to_numpy(self.data), separator=", ", threshold=20)
        return f"tensor({body}, dtype={self.dtype}{grad})"

    # -- conversion ----------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The values as a numpy array (copied from a GPU; the same array on the CPU)."""
        note_read(self, ".numpy()")
        return to_numpy(self.data)

    def item(self) -> Any:
        """The value of a one-element tensor as a Python number (``float``, ``int`` or ``bool``)."""
        if self.numel() != 1:
            raise ValueError(f"a Tensor with {self.numel()} elements cannot be converted to Scalar")
        note_read(self, ".item()")
        return to_numpy(self.data).item()

    def _scalar_value(self, kind: str) -> Any:
        if self.numel() != 1:
            raise ValueError(f"only one element tensors can be converted to Python scalars "
                             f"(shape {self.shape} to {kind})")
        note_read(self, f"{kind}()")
        return to_numpy(self.data).item()

    def __float__(self) -> float:
        """``float(loss)`` on a one-element tensor."""
        return float(self._scalar_value("float"))

    def __int__(self) -> int:
        """``int(t)`` on a one-element tensor (truncates toward zero, like torch)."""
        return int(self._scalar_value("int"))

    def __index__(self) -> int:
        """A one-element integer tensor used as an index (``range(t)``, ``xs[t]``)."""
        if self.dtype.kind not in "iub":
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self._scalar_value("index"))

    def __bool__(self) -> bool:
        """``if t:`` on a one-element tensor; ambiguous (an error) for more elements, like torch."""
        if self.numel() != 1:
            raise RuntimeError(f"Boolean value of Tensor with more than one value is ambiguous "
                               f"(shape {self.shape})")
        note_read(self, "bool(), as in `if t:`")
        return bool(to_numpy(self.data).item())

    def tolist(self) -> Any:
        """The values as nested Python lists (a number for a 0-d tensor)."""
        note_read(self, ".tolist()")
        return to_numpy(self.data).tolist()

    def detach(self) -> Tensor:
        """The same values, cut from the tape (no gradient flows back through it)."""
        return note_derived(Tensor(self.data), [self], DETACH)

    def clone(self) -> Tensor:
        """A copy that stays on the tape (gradients flow back to ``self``)."""
        # a one of self's own dtype (`_scalar(1, b)` of a bool tensor is an int64 now, as in torch)
        one = Tensor(namespace_of(self.data).asarray(1, dtype=self.data.dtype))
        return apply("mul", self, one)

    def requires_grad_(self, flag: bool = True) -> Tensor:
        """Mark this (leaf) tensor as wanting a gradient, in place; returns ``self``."""
        if flag:
            _check_differentiable(self.data.dtype)
        self.requires_grad = flag
        return self

    def to(self, arg: Any = None, *, dtype: Any = None, device: str | None = None) -> Tensor:
        """Convert to a dtype and/or device (``t.to("float64")``, ``t.to(device="cuda")``), like
        torch: ``self`` when nothing changes; a float-to-float conversion is the ``cast`` primitive,
        so the gradient flows back (cast to this tensor's dtype); a conversion to or from an
        integer or bool dtype, or across devices, is a copy outside the tape (torch: no gradient
        through integers)."""
        if isinstance(arg, str) and arg in ("cpu", "cuda", "symbolic"):
            device = arg
        elif arg is not None:
            dtype = arg
        target = None if dtype is None else as_dtype(dtype)
        if device is None or device == self.device:
            if target is None or target == self.data.dtype:
                return self
            name = _cast_name(self.data.dtype), _cast_name(target)
            if None not in name:
                return apply("cast", self, dtype=name[1])
        data = self.data
        if device is not None and device != self.device:
            data = namespace(device).asarray(to_numpy(data))
        if target is not None:
            data = data.astype(target)
        # only floating tensors carry gradients (torch refuses requires_grad on integer tensors)
        grad = self.requires_grad and self.is_leaf and data.dtype.kind not in "iub"
        return note_derived(Tensor(data, grad), [self], ".to() to an integer dtype or a device (a copy)")

    def cpu(self) -> Tensor:
        """This tensor on the CPU (itself when already there)."""
        return self if self.device == "cpu" else self.to(device="cpu")

    def cuda(self) -> Tensor:
        """This tensor on the GPU (needs cupy; a ``DeviceError`` otherwise, never a silent fallback)."""
        return self if self.device == "cuda" else self.to(device="cuda")

    def float(self) -> Tensor:
        """A float32 copy (``t.to(torchlean.float32)``)."""
        return self.to(float32)

    def double(self) -> Tensor:
        """A float64 copy (``t.to(torchlean.float64)``)."""
        return self.to(float64)

    def half(self) -> Tensor:
        """A float16 copy (``t.to(torchlean.float16)``)."""
        return self.to(float16)

    def long(self) -> Tensor:
        """An int64 copy (floats truncated toward zero, like torch)."""
        return self.to(int64)

    def int(self) -> Tensor:
        """An int32 copy (floats truncated toward zero, like torch)."""
        return self.to(int32)

    def bool(self) -> Tensor:
        """A boolean copy (nonzero is True)."""
        return self.to(bool_)

    # -- autograd ------------------------------------------------------------------------
    def backward(self, grad: Any = None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (``grad``: the seed, 1 for a scalar)."""
        from .autograd import backward

        backward(self, grad)

    # -- arithmetic ----------------------------------------------------------------------
    def __add__(self, o: Any) -> Tensor:
        return apply("add", self, _scalar(o, self))

    def __radd__(self, o: Any) -> Tensor:
        return apply("add", _scalar(o, self), self)

    def __sub__(self, o: Any) -> Tensor:
        return apply("sub", self, _scalar(o, self))

    def __rsub__(self, o: Any) -> Tensor:
        return apply("sub", _scalar(o, self), self)

    def __mul__(self, o: Any) -> Tensor:
        return apply("mul", self, _scalar(o, self))

    def __rmul__(self, o: Any) -> Tensor:
        return apply("mul", _scalar(o, self), self)

    def __truediv__(self, o: Any) -> Tensor:
        return apply("div", self, _scalar(o, self))

    def __rtruediv__(self, o: Any) -> Tensor:
        return apply("div", _scalar(o, self), self)

    def __neg__(self) -> Tensor:
        return apply("neg", self)

    def __abs__(self) -> Tensor:  # (torch's abs(t); was "bad operand type for abs()")
        return apply("abs", self)

    def __pow__(self, c: Any) -> Tensor:
        if isinstance(c, Tensor):
            raise TypeError("pow: the exponent must be a Python number (pow by constant)")
        return apply("pow", self, exponent=c)

    def __matmul__(self, o: Tensor) -> Tensor:
        from .functional import matmul

        return matmul(self, o)

    # comparisons give boolean tensors without gradient
    def _cmp(self, o: Any, fn: str) -> Tensor:
        xp = namespace_of(self.data)
        other = o.data if isinstance(o, Tensor) else o
        return note_derived(Tensor(getattr(xp, fn)(self.data, other)), [self, o], f"a comparison ({fn})")

    def __gt__(self, o: Any) -> Tensor:
        return self._cmp(o, "greater")

    def __ge__(self, o: Any) -> Tensor:
        return self._cmp(o, "greater_equal")

    def __lt__(self, o: Any) -> Tensor:
        return self._cmp(o, "less")

    def __le__(self, o: Any) -> Tensor:
        return self._cmp(o, "less_equal")

    def eq(self, o: Any) -> Tensor:
        """Elementwise equality, a boolean tensor without gradient."""
        return self._cmp(o, "equal")

    __hash__ = object.__hash__

    def __getitem__(self, key: Any) -> Tensor:
        from .functional import index

        return index(self, key)

    # the torch-named methods (sum, reshape, argmax, ...) are defined in TensorMethods


def _scalar(value: Any, like: Tensor) -> Tensor:
    """A Python number as a tensor of ``like``'s dtype and device (no gradient)."""
    if isinstance(value, Tensor):
        return value
    xp = namespace_of(like.data)
    dtype = like.data.dtype
    # torch's promotion for a Python number: a float with an integer or bool tensor is a float
    # (`int_t * 2.5` was `int_t * 2`), an int with a bool tensor an int64 (`b * 2` was `b * True`)
    # (audit47); otherwise the tensor's dtype
    if dtype.kind in "iub" and isinstance(value, float):
        dtype = get_default_dtype()
    elif dtype.kind == "b" and isinstance(value, int) and not isinstance(value, bool):
        dtype = int64
    return Tensor(xp.asarray(value, dtype=dtype))


def _devices(datas: list[Any]) -> set[str]:
    """The devices of the arrays among ``datas`` (anything else is skipped)."""
    found = set()
    for d in datas:
        try:
            found.add(device_of(d))
        except TypeError:
            pass
    return found


def apply(name: str, *args: Tensor, **attrs: Any) -> Tensor:
    """Run primitive ``name`` on tensors: kernel, tape node, tracer record."""
    datas = [a.data for a in args]
    try:
        xp = namespace_of(datas[0])
    except TypeError:  # e.g. a numpy array or a torch tensor given to a layer: name the fix
        got = ", ".join(f"{type(a).__module__}.{type(a).__name__}" for a in args if not isinstance(a, Tensor))
        raise TypeError(f"{name}: expected torchlean Tensors, got {got or type(datas[0]).__name__}; "
                        "wrap inputs with tl.tensor(x)") from None
    try:
        out = RULES[name].forward(xp, *datas, **attrs)
    except (ValueError, IndexError) as e:
        shapes = " and ".join(str(tuple(d.shape)) for d in datas)
        text = str(e).removeprefix(f"{name}: ")  # (numpy's own messages may name the op already)
        raise ShapeError(f"{name}: {text} (input shapes {shapes})") from None
    except TypeError:
        # cupy refuses host arrays (and numpy device arrays); say which devices met, as torch does.
        # Checked only on this error path so the hot path pays nothing.
        devices = sorted(_devices(datas))
        if len(devices) > 1:
            raise DeviceError(f"{name}: expected all tensors on the same device, found "
                              f"{' and '.join(devices)}; move them with .to(device)") from None
        raise
    if type(out) is not np.ndarray and xp is np:
        out = np.asarray(out)
    t = Tensor(out)
    if STATE.grad_enabled:
        for a in args:
            if a.requires_grad:
                t.requires_grad = True
                t._node = Node(name, args, attrs)
                break
    if STATE.tracer is not None:
        STATE.tracer.record(name, args, attrs, t)
    return t


#: what ``detach`` tells ``note_derived`` (a gradient claim's tracer allows it: a stop-gradient)
DETACH = ".detach()"


def note_read(t: Any, what: str) -> None:
    """Tell the active tracer that Python reads ``t``'s values (``Tensor.__bool__``, ``item``, ...)."""
    tracer = STATE.tracer
    if tracer is not None and hasattr(tracer, "read_value"):
        tracer.read_value(t, what)


def note_derived(out: Tensor, sources: Sequence[Any], what: str) -> Tensor:
    """Tell the active tracer that ``out`` was made from ``sources``' values outside ``apply``."""
    tracer = STATE.tracer
    if tracer is not None and hasattr(tracer, "derived"):
        tracer.derived(out, sources, what)
    return out


def note_random(what: str) -> None:
    """Tell the active tracer that the traced function draws random numbers."""
    tracer = STATE.tracer
    if tracer is not None and hasattr(tracer, "random_draw"):
        tracer.random_draw(what)


@contextmanager
def no_grad() -> Iterator[None]:
    """Operations inside record no tape."""
    prev = STATE.grad_enabled
    STATE.grad_enabled = False
    try:
        yield
    finally:
        STATE.grad_enabled = prev


@contextmanager
def enable_grad() -> Iterator[None]:
    """Operations inside record the tape again (inside a ``no_grad`` block)."""
    prev = STATE.grad_enabled
    STATE.grad_enabled = True
    try:
        yield
    finally:
        STATE.grad_enabled = prev


def is_grad_enabled() -> bool:
    """Whether operations record the tape now."""
    return STATE.grad_enabled


# -- creation ------------------------------------------------------------------------------
_DEFAULT_DTYPE = [float32]


def set_default_dtype(dtype: Any) -> None:
    """The dtype of new floating tensors and layer parameters (float32 until changed)."""
    _DEFAULT_DTYPE[0] = as_dtype(dtype)


def get_default_dtype() -> np.dtype:
    """The dtype of new floating tensors and layer parameters."""
    return _DEFAULT_DTYPE[0]


def tensor(data: Any, dtype: Any = None, device: str | None = None, requires_grad: bool = False) -> Tensor:
    """A new tensor from nested lists / arrays / numbers (copied).

    Integers and booleans keep their type; floating values get the default dtype (float32), also
    from a float64 numpy array (torch would keep float64 there: ``from_numpy`` keeps the dtype).

    >>> tl.tensor([[1.0, 2.0]]).shape, tl.tensor([1, 2]).dtype
    ((1, 2), dtype('int64'))
    """
    source = data
    if isinstance(data, Tensor):
        data = to_numpy(data.data)
    device = device or "cpu"
    xp = namespace(device)
    if device == "symbolic":
        return note_derived(Tensor(xp.asarray(data), requires_grad), [source], "tl.tensor(t), a copy")
    arr = np.asarray(data)
    if dtype is None:
        dtype = arr.dtype if arr.dtype.kind in "iub" else get_default_dtype()
    if requires_grad:
        _check_differentiable(as_dtype(dtype))
    out = Tensor(xp.array(arr, dtype=as_dtype(dtype)), requires_grad)
    return note_derived(out, [source], "tl.tensor(t), a copy")


def _check_differentiable(dtype: np.dtype) -> None:
    """Refuse a gradient on an integer or bool tensor, as torch does (audit47: its float gradient
    would have been kept, or cast to the integer dtype)."""
    if dtype.kind in "iub":
        raise RuntimeError(f"only tensors of floating point dtype can require gradients, got {dtype}")


def _size(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """torch's ``*size``: ``f(2, 3)`` or ``f((2, 3))``."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], Sequence) else shape
    return tuple(int(d) for d in shape)


def zeros(*shape: Any, dtype: Any = None, device: str | None = None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros: ``zeros(2, 3)`` or ``zeros((2, 3))``, default dtype unless given."""
    shape = _size(shape)
    xp = namespace(device or "cpu")
    return Tensor(xp.zeros(shape, dtype=as_dtype(dtype or get_default_dtype())), requires_grad)


def ones(*shape: Any, dtype: Any = None, device: str | None = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones: ``ones(2, 3)`` or ``ones((2, 3))``, default dtype unless given."""
    shape = _size(shape)
    xp = namespace(device or "cpu")
    return Tensor(xp.ones(shape, dtype=as_dtype(dtype or get_default_dtype())), requires_grad)


def _T(self: Tensor) -> Tensor:
    """The tensor with its axes reversed (a matrix's transpose)."""
    from .functional import permute

    return permute(self, tuple(reversed(range(self.ndim))))


Tensor.T = property(_T)  # type: ignore[attr-defined]
