"""Core layers: Linear, activations, Flatten, Dropout, Sequential, Residual, Identity."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...spec.shapes import ShapeError
from .. import functional as F
from ..backends import namespace
from ..random import random_mask
from ..tensor import Tensor, as_dtype, get_default_dtype
from . import init
from .module import Module, Parameter, PartialShape, size_arg


def _fmt(shape: PartialShape | None) -> str:
    if shape is None:
        return "(any)"
    return "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"


def _param(array: np.ndarray, device: str) -> Parameter:
    return Parameter(namespace(device).asarray(array))


class Linear(Module):
    """y = x Wᵀ + b with W of shape (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: Any = None, device: str = "cpu"):
        super().__init__()
        self.in_features = in_features = size_arg("Linear", "in_features", in_features)
        self.out_features = out_features = size_arg("Linear", "out_features", out_features)
        dt = as_dtype(dtype or get_default_dtype())
        self.weight = _param(init.kaiming_uniform((out_features, in_features), in_features, dt), device)
        self.bias = (
            _param(init.kaiming_uniform((out_features,), in_features, dt), device) if bias else None
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def input_shape(self) -> PartialShape:
        return (None, self.in_features)

    def output_shape(self, shape: PartialShape) -> PartialShape:
        if not shape or shape[-1] not in (None, self.in_features):
            raise ShapeError(f"expects input {_fmt((None, self.in_features))}")
        return (*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={bias}"


class _Activation(Module):
    fn: Any = None

    def forward(self, x: Tensor) -> Tensor:
        return type(self).fn(x)


class ReLU(_Activation):
    """max(x, 0) elementwise."""

    fn = staticmethod(F.relu)


class Tanh(_Activation):
    """tanh elementwise."""

    fn = staticmethod(F.tanh)


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)) elementwise."""

    fn = staticmethod(F.sigmoid)


class SiLU(_Activation):
    """x · sigmoid(x) elementwise."""

    fn = staticmethod(F.silu)


class Softplus(_Activation):
    """log(1 + exp(x)) elementwise, computed stably (torch's beta=1)."""

    fn = staticmethod(F.softplus)


class GELU(Module):
    """GELU. torchlean's default is the tanh form (one primitive); torch's default is the exact erf
    form, ``GELU('none')`` here too (a composition around the ``erf`` primitive, see ``F.gelu``)."""

    def __init__(self, approximate: str = "tanh"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, self.approximate)


class LeakyReLU(Module):
    """x where x >= 0, ``negative_slope * x`` elsewhere (default slope 0.01, like torch)."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Softmax(Module):
    """Softmax along ``dim`` (default the last axis)."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, self.dim)


class LogSoftmax(Softmax):
    """log(softmax) along ``dim``, computed stably."""

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(x, self.dim)


class Identity(Module):
    """Returns its input unchanged (a placeholder layer)."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class Flatten(Module):
    """Merge the axes from ``start_dim`` (default 1, keeping the batch) into one."""

    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x: Tensor) -> Tensor:
        return F.flatten(x, self.start_dim)

    def output_shape(self, shape: PartialShape) -> PartialShape:
        s = self.start_dim % len(shape) if shape else 0
        rest = shape[s:]
        n: int | None = 1
        for d in rest:
            n = None if d is None or n is None else n * d
        return (*shape[:s], n)


class Dropout(Module):
    """Zeroes entries with probability p in training mode (scaling the rest by 1/(1-p)); the
    masks come from torchlean's seeded generator, so runs are reproducible."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        return x * random_mask(x, self.p)  # traceable: the compiled plan redraws it per step

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Sequential(Module):
    """Layers applied in order. Shapes are checked when it is built: an error names the layer
    and both shapes. Like torch, ``Sequential(OrderedDict([("fc", nn.Linear(2, 3)), ...]))``
    names the layers (state_dict keys ``fc.weight``, ...); otherwise they are "0", "1", ..."""

    def __init__(self, *layers: Module):
        super().__init__()
        named = (list(layers[0].items()) if len(layers) == 1 and isinstance(layers[0], dict)
                 else [(str(i), layer) for i, layer in enumerate(layers)])
        for i, (name, layer) in enumerate(named):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: item {i} is {type(layer).__name__}, not a Module")
            setattr(self, name, layer)
        self._check_shapes()

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end (named by its position) and re-check the shapes; returns self."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: {type(module).__name__} is not a Module")
        name = str(len(self))
        setattr(self, name, module)
        try:
            self._check_shapes()
        except Exception:  # leave the model as it was
            del self._modules[name]
            self.__dict__.pop(name, None)
            raise
        return self

    def _check_shapes(self) -> None:
        shape: PartialShape | None = None
        producer = "the input"
        for i, layer in enumerate(self._modules.values()):
            need = layer.input_shape()
            if shape is None:
                shape = need
            if shape is not None:
                try:
                    shape = layer.output_shape(shape)
                except ShapeError as e:
                    raise ShapeError(
                        f"Sequential: layer {i} ({type(layer).__name__}({layer.extra_repr()})) "
                        f"{e}, but {producer} produces {_fmt(shape)}"
                    ) from None
            producer = f"layer {i} ({type(layer).__name__})"

    def input_shape(self) -> PartialShape | None:
        first = next(iter(self._modules.values()), None)
        return first.input_shape() if first is not None else None

    def output_shape(self, shape: PartialShape) -> PartialShape:
        for layer in self._modules.values():
            shape = layer.output_shape(shape)
        return shape

    def forward(self, x: Tensor) -> Tensor:
        for layer in self._modules.values():
            x = layer(x)
        return x

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)


class Residual(Module):
    """x + body(x); the body must keep the shape."""

    def __init__(self, body: Module):
        super().__init__()
        self.body = body
        need = body.input_shape()
        if need is not None:
            out = body.output_shape(need)
            if len(out) != len(need) or any(
                a is not None and b is not None and a != b for a, b in zip(out, need)
            ):
                raise ShapeError(f"Residual: body maps {_fmt(need)} to {_fmt(out)}; shapes must match")

    def input_shape(self) -> PartialShape | None:
        return self.body.input_shape()

    def output_shape(self, shape: PartialShape) -> PartialShape:
        self.body.output_shape(shape)
        return shape

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)
