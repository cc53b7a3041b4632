"""``torch.Tensor``'s methods on ``Tensor``, written out so that editors and ``help(Tensor)`` see
them. Each is one call of the function of the same name in ``functional.TENSOR_METHODS`` (one
implementation; ``tests/test_tensor_api.py`` keeps this list and that table in step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for the annotations only (tensor.py imports this module)
    from .functional import MaxMin
    from .tensor import Tensor


def _f(name: str) -> Any:
    from .functional import TENSOR_METHODS  # imported late: functional imports tensor

    return TENSOR_METHODS[name]


class TensorMethods:
    """The mixin ``Tensor`` inherits its torch-named methods from (no state of its own)."""

    __slots__ = ()

    # -- elementwise ---------------------------------------------------------------------
    def relu(self) -> Tensor:
        """max(x, 0) elementwise (``F.relu``)."""
        return _f("relu")(self)

    def tanh(self) -> Tensor:
        """tanh elementwise (``F.tanh``)."""
        return _f("tanh")(self)

    def erf(self) -> Tensor:
        """The error function elementwise (``F.erf``)."""
        return _f("erf")(self)

    def sigmoid(self) -> Tensor:
        """1 / (1 + exp(-x)) elementwise (``F.sigmoid``)."""
        return _f("sigmoid")(self)

    def exp(self) -> Tensor:
        """exp elementwise (``F.exp``)."""
        return _f("exp")(self)

    def log(self) -> Tensor:
        """Natural logarithm elementwise (``F.log``)."""
        return _f("log")(self)

    def sqrt(self) -> Tensor:
        """Square root elementwise (``F.sqrt``)."""
        return _f("sqrt")(self)

    def abs(self) -> Tensor:
        """|x| elementwise (``F.abs``)."""
        return _f("abs")(self)

    def clamp(self, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
        """Clip into [min, max] (either may be None), like ``torch.clamp``."""
        return _f("clamp")(self, min, max)

    def maximum(self, other: Any) -> Tensor:
        """Elementwise maximum with ``other`` (a tensor or a number)."""
        return _f("maximum")(self, other)

    def minimum(self, other: Any) -> Tensor:
        """Elementwise minimum with ``other`` (a tensor or a number)."""
        return _f("minimum")(self, other)

    def where(self, condition: Any, y: Any) -> Tensor:
        """``self`` where ``condition`` holds, else ``y`` (torch's ``x.where(cond, y)``)."""
        return _f("where")(self, condition, y)

    # -- arithmetic by name (the operators' primitives) ------------------------------------
    def add(self, other: Any) -> Tensor:
        """self + other."""
        return self + other  # type: ignore[operator]

    def sub(self, other: Any) -> Tensor:
        """self - other."""
        return self - other  # type: ignore[operator]

    def mul(self, other: Any) -> Tensor:
        """self * other."""
        return self * other  # type: ignore[operator]

    def div(self, other: Any) -> Tensor:
        """self / other."""
        return self / other  # type: ignore[operator]

    def neg(self) -> Tensor:
        """-self."""
        return -self  # type: ignore[operator]

    def pow(self, exponent: float) -> Tensor:
        """self ** exponent, the exponent a Python number."""
        return self ** exponent  # type: ignore[operator]

    def matmul(self, other: Any) -> Tensor:
        """Matrix product (``self @ other``, torch's broadcasting and 1-D rules)."""
        return _f("matmul")(self, other)

    # -- reductions ----------------------------------------------------------------------
    def sum(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        """Sum over ``dim`` (an int, a tuple, or None for all)."""
        return _f("sum")(self, dim, keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        """Mean over ``dim`` (an int, a tuple, or None for all)."""
        return _f("mean")(self, dim, keepdim)

    def var(self, dim: Any = None, unbiased: bool = True, keepdim: bool = False, *,
            correction: int | None = None) -> Tensor:
        """Variance over ``dim``, dividing by n − 1 unless ``unbiased=False`` (torch's default)."""
        return _f("var")(self, dim, unbiased, keepdim, correction=correction)

    def std(self, dim: Any = None, unbiased: bool = True, keepdim: bool = False, *,
            correction: int | None = None) -> Tensor:
        """Standard deviation over ``dim``, dividing by n − 1 unless ``unbiased=False`` (torch's default)."""
        return _f("std")(self, dim, unbiased, keepdim, correction=correction)

    def amax(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        """Maximum values over ``dim`` (ties share the gradient, like torch.amax)."""
        return _f("amax")(self, dim, keepdim)

    def amin(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        """Minimum values over ``dim``."""
        return _f("amin")(self, dim, keepdim)

    def max(self, dim: int | None = None, keepdim: bool = False) -> Tensor | MaxMin:
        """The maximum (no ``dim``) or ``(values, indices)`` over ``dim``, like ``torch.max``."""
        return _f("max")(self, dim, keepdim)

    def min(self, dim: int | None = None, keepdim: bool = False) -> Tensor | MaxMin:
        """The minimum (no ``dim``) or ``(values, indices)`` over ``dim``, like ``torch.min``."""
        return _f("min")(self, dim, keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """Index (int64) of the first maximum over ``dim``, or of the flattened tensor."""
        return _f("argmax")(self, dim, keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """Index (int64) of the first minimum over ``dim``, or of the flattened tensor."""
        return _f("argmin")(self, dim, keepdim)

    def softmax(self, dim: int = -1) -> Tensor:
        """Softmax along ``dim``."""
        return _f("softmax")(self, dim)

    def log_softmax(self, dim: int = -1) -> Tensor:
        """log(softmax) along ``dim``, computed stably."""
        return _f("log_softmax")(self, dim)

    # -- structure -----------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Tensor:
        """The same values in ``shape`` (``t.reshape(2, 3)`` or ``t.reshape((2, 3))``)."""
        return _f("reshape")(self, *shape)

    def view(self, *shape: Any) -> Tensor:
        """Same as ``reshape`` (torchlean tensors have no views: values are never shared)."""
        return _f("view")(self, *shape)

    def flatten(self, start_dim: int = 0) -> Tensor:
        """Merge the axes from ``start_dim`` on into one."""
        return _f("flatten")(self, start_dim)

    def permute(self, *dims: Any) -> Tensor:
        """Reorder the axes (``t.permute(1, 0)`` or ``t.permute((1, 0))``)."""
        return _f("permute")(self, *dims)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        """Swap two axes."""
        return _f("transpose")(self, dim0, dim1)

    def unsqueeze(self, dim: int) -> Tensor:
        """Insert an axis of size 1 at ``dim``."""
        return _f("unsqueeze")(self, dim)

    def squeeze(self, dim: int | None = None) -> Tensor:
        """Drop axes of size 1 (only ``dim`` when given)."""
        return _f("squeeze")(self, dim)

    def expand(self, *sizes: Any) -> Tensor:
        """Broadcast to ``sizes`` (``t.expand(4, 3)`` or ``t.expand((4, 3))``)."""
        return _f("expand")(self, *sizes)

    def broadcast_to(self, shape: Any) -> Tensor:
        """Broadcast to ``shape`` (numpy rules)."""
        return _f("broadcast_to")(self, shape)

    def gather(self, dim: int, index: Any) -> Tensor:
        """Values picked along ``dim`` by the integer tensor ``index``, like ``torch.gather``."""
        return _f("gather")(self, dim, index)
