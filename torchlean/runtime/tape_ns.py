"""The array namespace of a *recorded* backward pass: higher-order autograd with the same rules.

``grad(..., create_graph=True)`` runs every primitive's VJP rule (``runtime/rules*.py``) with this
namespace as ``xp`` and Tensors as arguments, so each operation a rule performs is itself a
torchlean primitive on the tape; differentiating the result again (a Hessian-vector product, a
PDE residual's second derivative) runs the same rules once more. No rule is written twice: the
rules that the proofs layer checks (``autograd.<name>``: V = d/dx <g, f(x)>) are the ones composed
here, so a second derivative is the chain rule over proved first-order rules.

Comparisons (``greater``, ``equal``, ...) return plain boolean arrays: masks carry no derivative,
exactly as the first-order rules treat them. Rules that scatter into a buffer (``slice``,
``gather``, convolution and pooling windows) need operations this namespace does not provide; they
raise one line naming the primitive instead of returning a wrong second derivative.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import functional as F
from .tensor import Tensor

__all__ = ["SCATTERING", "TAPE", "HigherOrderUnsupported", "TapeNamespace", "require_recordable"]


class HigherOrderUnsupported(AttributeError):
    """A rule used an operation with no recorded (differentiable) form here; one line. (An
    AttributeError, so ``getattr(xp, name, default)`` in a rule still falls back to its default.)"""


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _axes(axis: Any) -> Any:
    return tuple(axis) if isinstance(axis, (tuple, list)) else axis


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
        return F.where(mask, a, b)

    def sum(self, x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
        return F.sum(x, _axes(axis), keepdims)

    def max(self, x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
        return F.amax(x, _axes(axis), keepdims)

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

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise HigherOrderUnsupported(
            f"create_graph=True: a VJP rule uses xp.{name}, which has no recorded form (second "
            "derivatives through slicing, gather, convolution and pooling are not supported yet)")


#: the one instance the autograd engine uses
TAPE = TapeNamespace()

#: primitives whose VJP rule scatters into a buffer (item assignment, ``add.at``) or contracts with
#: ``tensordot``: no recorded form yet
SCATTERING = frozenset({"slice", "gather", "conv2d", "max_pool2d", "avg_pool2d", "embedding"})


def require_recordable(name: str) -> None:
    """Raise ``HigherOrderUnsupported`` (one line) for a primitive in ``SCATTERING``."""
    if name in SCATTERING:
        raise HigherOrderUnsupported(
            f"create_graph=True: the VJP of {name!r} scatters into a buffer and has no recorded form yet "
            "(second derivatives through slicing, gather, embedding, convolution and pooling)")
