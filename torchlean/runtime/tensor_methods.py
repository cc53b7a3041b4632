"""``torch.Tensor``'s methods on ``Tensor``, written out so that editors and ``help(Tensor)`` see
them. Each is one call of the function of the same name in ``functional.TENSOR_METHODS`` (one
implementation; ``tests/test_tensor_api.py`` keeps this list and that table in step).
"""

from __future__ import annotations

from typing import Any


def _f(name: str) -> Any:
    from .functional import TENSOR_METHODS  # imported late: functional imports tensor

    return TENSOR_METHODS[name]


class TensorMethods:
    """The mixin ``Tensor`` inherits its torch-named methods from (no state of its own)."""

    __slots__ = ()

    # -- elementwise ---------------------------------------------------------------------
    def relu(self) -> Any:
        """max(x, 0) elementwise (``F.relu``)."""
        return _f("relu")(self)

    def tanh(self) -> Any:
        """tanh elementwise (``F.tanh``)."""
        return _f("tanh")(self)

    def sigmoid(self) -> Any:
        """1 / (1 + exp(-x)) elementwise (``F.sigmoid``)."""
        return _f("sigmoid")(self)

    def exp(self) -> Any:
        """exp elementwise (``F.exp``)."""
        return _f("exp")(self)

    def log(self) -> Any:
        """Natural logarithm elementwise (``F.log``)."""
        return _f("log")(self)

    def sqrt(self) -> Any:
        """Square root elementwise (``F.sqrt``)."""
        return _f("sqrt")(self)

    def abs(self) -> Any:
        """|x| elementwise (``F.abs``)."""
        return _f("abs")(self)

    def clamp(self, min: float | None = None, max: float | None = None) -> Any:  # noqa: A002
        """Clip into [min, max] (either may be None), like ``torch.clamp``."""
        return _f("clamp")(self, min, max)

    def maximum(self, other: Any) -> Any:
        """Elementwise maximum with ``other`` (a tensor or a number)."""
        return _f("maximum")(self, other)

    def minimum(self, other: Any) -> Any:
        """Elementwise minimum with ``other`` (a tensor or a number)."""
        return _f("minimum")(self, other)

    def where(self, condition: Any, y: Any) -> Any:
        """``self`` where ``condition`` holds, else ``y`` (torch's ``x.where(cond, y)``)."""
        return _f("where")(self, condition, y)

    # -- arithmetic by name (the operators' primitives) ------------------------------------
    def add(self, other: Any) -> Any:
        """self + other."""
        return self + other  # type: ignore[operator]

    def sub(self, other: Any) -> Any:
        """self - other."""
        return self - other  # type: ignore[operator]

    def mul(self, other: Any) -> Any:
        """self * other."""
        return self * other  # type: ignore[operator]

    def div(self, other: Any) -> Any:
        """self / other."""
        return self / other  # type: ignore[operator]

    def neg(self) -> Any:
        """-self."""
        return -self  # type: ignore[operator]

    def pow(self, exponent: float) -> Any:
        """self ** exponent, the exponent a Python number."""
        return self ** exponent  # type: ignore[operator]

    def matmul(self, other: Any) -> Any:
        """Matrix product (``self @ other``, torch's broadcasting and 1-D rules)."""
        return _f("matmul")(self, other)

    # -- reductions ----------------------------------------------------------------------
    def sum(self, dim: Any = None, keepdim: bool = False) -> Any:
        """Sum over ``dim`` (an int, a tuple, or None for all)."""
        return _f("sum")(self, dim, keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False) -> Any:
        """Mean over ``dim`` (an int, a tuple, or None for all)."""
        return _f("mean")(self, dim, keepdim)

    def var(self, dim: Any = None, unbiased: bool = True, keepdim: bool = False, *,
            correction: int | None = None) -> Any:
        """Variance over ``dim``, dividing by n − 1 unless ``unbiased=False`` (torch's default)."""
        return _f("var")(self, dim, unbiased, keepdim, correction=correction)

    def amax(self, dim: Any = None, keepdim: bool = False) -> Any:
        """Maximum values over ``dim`` (ties share the gradient, like torch.amax)."""
        return _f("amax")(self, dim, keepdim)

    def amin(self, dim: Any = None, keepdim: bool = False) -> Any:
        """Minimum values over ``dim``."""
        return _f("amin")(self, dim, keepdim)

    def max(self, dim: int | None = None, keepdim: bool = False) -> Any:
        """The maximum (no ``dim``) or ``(values, indices)`` over ``dim``, like ``torch.max``."""
        return _f("max")(self, dim, keepdim)

    def min(self, dim: int | None = None, keepdim: bool = False) -> Any:
        """The minimum (no ``dim``) or ``(values, indices)`` over ``dim``, like ``torch.min``."""
        return _f("min")(self, dim, keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Any:
        """Index (int64) of the first maximum over ``dim``, or of the flattened tensor."""
        return _f("argmax")(self, dim, keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Any:
        """Index (int64) of the first minimum over ``dim``, or of the flattened tensor."""
        return _f("argmin")(self, dim, keepdim)

    def softmax(self, dim: int = -1) -> Any:
        """Softmax along ``dim``."""
        return _f("softmax")(self, dim)

    def log_softmax(self, dim: int = -1) -> Any:
        """log(softmax) along ``dim``, computed stably."""
        return _f("log_softmax")(self, dim)

    # -- structure -----------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Any:
        """The same values in ``shape`` (``t.reshape(2, 3)`` or ``t.reshape((2, 3))``)."""
        return _f("reshape")(self, *shape)

    def view(self, *shape: Any) -> Any:
        """Same as ``reshape`` (torchlean tensors have no views: values are never shared)."""
        return _f("view")(self, *shape)

    def flatten(self, start_dim: int = 0) -> Any:
        """Merge the axes from ``start_dim`` on into one."""
        return _f("flatten")(self, start_dim)

    def permute(self, *dims: Any) -> Any:
        """Reorder the axes (``t.permute(1, 0)`` or ``t.permute((1, 0))``)."""
        return _f("permute")(self, *dims)

    def transpose(self, dim0: int, dim1: int) -> Any:
        """Swap two axes."""
        return _f("transpose")(self, dim0, dim1)

    def unsqueeze(self, dim: int) -> Any:
        """Insert an axis of size 1 at ``dim``."""
        return _f("unsqueeze")(self, dim)

    def squeeze(self, dim: int | None = None) -> Any:
        """Drop axes of size 1 (only ``dim`` when given)."""
        return _f("squeeze")(self, dim)

    def expand(self, *sizes: Any) -> Any:
        """Broadcast to ``sizes`` (``t.expand(4, 3)`` or ``t.expand((4, 3))``)."""
        return _f("expand")(self, *sizes)

    def broadcast_to(self, shape: Any) -> Any:
        """Broadcast to ``shape`` (numpy rules)."""
        return _f("broadcast_to")(self, shape)

    def gather(self, dim: int, index: Any) -> Any:
        """Values picked along ``dim`` by the integer tensor ``index``, like ``torch.gather``."""
        return _f("gather")(self, dim, index)
