"""The array namespace of a *recorded* backward pass: higher-order autograd with the same rules.

``grad(..., create_graph=True)`` runs every primitive's VJP rule (``runtime/rules*.py``) with this
namespace as ``xp`` and Tensors as arguments, so each operation a rule performs is itself a
torchlean primitive on the tape; differentiating the result again (a Hessian-vector product, a
PDE residual's second derivative) runs the same rules once more. No rule is written twice: the
rules that the proofs layer checks (``autograd.<name>``: V = d/dx <g, f(x)>) are the ones composed
here, so a second derivative is the chain rule over proved first-order rules.

Comparisons (``greater``, ``equal``, ...) return plain boolean arrays: masks carry no derivative,
exactly as the first-order rules treat them. Rules that scatter into a buffer (the VJPs of
``slice``, ``concat``, ``gather``, ``embedding``, ``conv2d``, the poolings, and the padding
inside them) do so through ``rules.scatter`` / ``rules.index_add``; here those are recorded as
products with constant 0/1 selection matrices (``matmul``, whose VJP is again a ``matmul``), so
they can be differentiated any number of times. The selection products are exact for finite
values (each output entry is one ``v * 1`` plus zeros), so a recorded gradient has the values
of the first-order one (the order of summation of overlapping windows aside). A rule that uses an
operation with no recorded form raises one line instead of returning a wrong derivative.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from . import functional as F
from .tensor import Tensor, apply

__all__ = ["TAPE", "HigherOrderUnsupported", "TapeNamespace", "recorded_mask"]

#: id -> the boolean mask Tensors a recorded backward made from the point's values (relu's
#: ``x > 0``, maximum's ``a >= b``): a node reading one has a case that differs from point to point,
#: so a gradient claim must hold for every mask there (``proofs.compose``, audit44). Weak: a mask
#: dies with its tape.
_MASKS: weakref.WeakValueDictionary[int, Tensor] = weakref.WeakValueDictionary()


def recorded_mask(t: Any) -> bool:
    """Whether ``t`` is a mask a recorded backward (``create_graph=True``) computed from values."""
    return _MASKS.get(id(t)) is t


def note_recorded(results: Any, seen: set[int]) -> None:
    """Mark as recorded masks the integer inputs of every node a recorded VJP just made: those
    reached from its ``results`` without entering ``seen`` (the forward tape's tensors and the nodes
    walked before, to which this walk adds). A rule may make a mask or an index itself (raw numpy,
    then ``F.where``/``F.gather``) instead of through this namespace; it is the point's as well. Run
    while a trace is active only (a gradient claim's, ``proofs.compose``): a cost of one walk over
    the recorded nodes."""
    stack = [r for r in results if isinstance(r, Tensor)]
    while stack:
        t = stack.pop()
        if id(t) in seen or t._node is None:
            continue
        seen.add(id(t))
        for i in t._node.inputs:
            if getattr(getattr(i, "data", None), "dtype", np.dtype(float)).kind in "iub":
                _MASKS[id(i)] = i
            else:
                stack.append(i)


class HigherOrderUnsupported(AttributeError):
    """A rule used an operation with no recorded (differentiable) form here; one line. (An
    AttributeError, so ``getattr(xp, name, default)`` in a rule still falls back to its default.)"""


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _axes(axis: Any) -> Any:
    if isinstance(axis, (int, np.integer)):
        return (int(axis),)
    return tuple(axis) if isinstance(axis, (tuple, list)) else axis


def _tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


def _place(v: Any, index: tuple[Any, ...], shape: tuple[int, ...]) -> Tensor:
    """``v`` laid into zeros of ``shape`` at the basic index ``index`` (a tuple of slices), as
    recorded primitives: along each sliced axis, a product with the 0/1 matrix S (n_sel, n_full)
    whose row k picks the k-th position the slice covers."""
    out = _tensor(v)
    index = tuple(index) + (slice(None),) * (len(shape) - len(index))
    last = len(shape) - 1
    for ax, (sl, n) in enumerate(zip(index, shape, strict=True)):
        pos = range(*sl.indices(n))
        if pos == range(n):
            continue
        sel = np.zeros((len(pos), n), dtype=out.dtype)
        sel[np.arange(len(pos)), list(pos)] = 1
        moved = out if ax == last else F.transpose(out, ax, last)
        moved = F.matmul(moved, Tensor(sel))
        out = moved if ax == last else F.transpose(moved, ax, last)
    return out


class TapeNamespace:
    """numpy's names for what the VJP rules use, as recorded torchlean operations."""

    # -- masks: values only, no derivative ---------------------------------------------------
    def greater(self, a: Any, b: Any) -> np.ndarray:
        return np.greater(_raw(a), _raw(b))

    def greater_equal(self, a: Any, b: Any) -> np.ndarray:
        return np.greater_equal(_raw(a), _raw(b))

    def equal(self, a: Any, b: Any) -> np.ndarray:
        return np.equal(_raw(a), _raw(b))

    # -- recorded operations -------------------------------------------------------------------
    def where(self, c: Any, a: Any, b: Any) -> Tensor:
        mask = Tensor(np.asarray(_raw(c), dtype=bool))
        if not isinstance(a, Tensor) and not isinstance(b, Tensor):
            return Tensor(np.where(mask.data, a, b))
        _MASKS[id(mask)] = mask
        return F.where(mask, a, b)

    # numpy's reading of ``axis``: () reduces no axis (the primitive's ``axes=()``), not torch's
    # every axis, which ``F.sum``/``F.amax`` give an empty ``dim`` since audit57
    def sum(self, x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
        return apply("sum", x, axes=_axes(axis), keepdims=keepdims)

    def max(self, x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
        return apply("max", x, axes=_axes(axis), keepdims=keepdims)

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """numpy's asarray; a recorded ``cast`` for a tensor whose dtype changes (cast's VJP)."""
        if not isinstance(x, Tensor):
            return np.asarray(x, dtype=dtype)
        if dtype is None or x.dtype == np.dtype(dtype):
            return x
        return apply("cast", x, dtype=str(np.dtype(dtype)))

    def zeros_like(self, x: Any) -> Tensor:
        return Tensor(np.zeros_like(_raw(x)))

    def ones_like(self, x: Any) -> Tensor:
        return Tensor(np.ones_like(_raw(x)))

    def broadcast_to(self, x: Tensor, shape: Any) -> Tensor:
        return x if tuple(x.shape) == tuple(shape) else F.broadcast_to(x, tuple(shape))

    def matmul(self, a: Tensor, b: Tensor) -> Tensor:
        return F.matmul(a, b)

    def swapaxes(self, x: Tensor, a: int, b: int) -> Tensor:
        return F.transpose(x, a, b)

    def transpose(self, x: Tensor, axes: Any = None) -> Tensor:
        axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(axes)
        return F.permute(x, *axes)

    def concatenate(self, xs: Any, axis: int = 0) -> Tensor:
        return F.cat(list(xs), axis)

    def stack(self, xs: Any, axis: int = 0) -> Tensor:
        return F.stack(list(xs), axis)

    def maximum(self, a: Any, b: Any) -> Tensor:
        return F.maximum(a, b) if isinstance(a, Tensor) else F.maximum(b, a)

    def minimum(self, a: Any, b: Any) -> Tensor:
        return F.minimum(a, b) if isinstance(a, Tensor) else F.minimum(b, a)

    def exp(self, x: Tensor) -> Tensor:
        return F.exp(x)

    def log(self, x: Tensor) -> Tensor:
        return F.log(x)

    def log1p(self, x: Tensor) -> Tensor:
        return F.log(1 + x)

    def sqrt(self, x: Tensor) -> Tensor:
        return F.sqrt(x)

    def tanh(self, x: Tensor) -> Tensor:
        return F.tanh(x)

    def erf(self, x: Tensor) -> Tensor:
        return F.erf(x)

    def abs(self, x: Tensor) -> Tensor:
        return F.abs(x)

    # -- buffers and contractions (convolution, pooling, slicing, gather) -----------------------
    def zeros(self, shape: Any, dtype: Any = None) -> Tensor:
        return Tensor(np.zeros(tuple(shape), dtype=np.float64 if dtype is None else np.dtype(dtype)))

    def indices(self, shape: Any, sparse: bool = False) -> Any:
        return np.indices(tuple(shape), sparse=sparse)

    def tensordot(self, a: Tensor, b: Tensor, axes: Any) -> Tensor:
        """numpy's tensordot with explicit axis lists, as transpose, reshape and one matmul."""
        a, b = _tensor(a), _tensor(b)
        ca, cb = [x % a.ndim for x in axes[0]], [x % b.ndim for x in axes[1]]
        fa = [i for i in range(a.ndim) if i not in ca]
        fb = [i for i in range(b.ndim) if i not in cb]
        k = int(np.prod([a.shape[i] for i in ca]))
        a2 = F.reshape(F.permute(a, *fa, *ca), (-1, k))
        b2 = F.reshape(F.permute(b, *cb, *fb), (k, -1))
        return F.reshape(F.matmul(a2, b2), tuple(a.shape[i] for i in fa) + tuple(b.shape[i] for i in fb))

    def recorded_scatter(self, base: Any, parts: list[tuple[Any, Any]], add: bool) -> Tensor:
        """``rules.scatter`` recorded: the sum of the placed parts, on top of ``base`` (a constant
        buffer: zeros or a fill). With ``add=False`` the parts overwrite (they do not overlap)."""
        base = _tensor(base)
        placed = None
        for index, v in parts:
            p = _place(v, index, tuple(base.shape))
            placed = p if placed is None else placed + p
        if placed is None:
            return base
        if not np.any(base.data):
            return placed
        if add:
            return base + placed
        covered = np.zeros(base.shape, dtype=bool)
        for index, _ in parts:
            covered[index] = True
        return F.where(Tensor(covered), placed, base)

    def recorded_index_add(self, base: Any, index: Any, v: Any) -> Tensor:
        """``rules.index_add`` recorded: ``v`` (index shape + trailing axes of ``base``) summed into
        the rows its integer ``index`` names, as one product with a constant one-hot matrix."""
        base, v = _tensor(base), _tensor(v)
        index = index if isinstance(index, tuple) else (index,)
        idx = np.broadcast_arrays(*[np.asarray(_raw(i)) for i in index])
        lead, tail = tuple(base.shape[:len(idx)]), tuple(base.shape[len(idx):])
        flat = np.ravel_multi_index(tuple(idx), lead, mode="wrap").reshape(-1)
        onehot = np.zeros((int(np.prod(lead)), flat.size), dtype=v.dtype)
        onehot[flat, np.arange(flat.size)] = 1
        rows = F.matmul(Tensor(onehot), F.reshape(v, (flat.size, int(np.prod(tail, dtype=int)))))
        out = F.reshape(rows, tuple(base.shape))
        return out + base if np.any(base.data) else out

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise HigherOrderUnsupported(
            f"create_graph=True: a VJP rule uses xp.{name}, which has no recorded (differentiable) form")


#: the one instance the autograd engine uses
TAPE = TapeNamespace()
