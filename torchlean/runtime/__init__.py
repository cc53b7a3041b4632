"""Execution: array backends, tensors with autograd, kernels and VJP rules, nn, training."""

from . import autograd as _autograd
from . import rules_elementwise, rules_nn, rules_tensor  # noqa: F401  (fill the rule table)
from .rules import RULES, record_engine, record_shipped
from .tensor import Tensor, apply, no_grad, tensor

record_shipped()  # torchlean's own rules and what they read (``rules.shipped``)
record_engine(_autograd, Tensor)  # and the backward engine (``rules.engine_shipped``)

__all__ = ["RULES", "Tensor", "apply", "no_grad", "tensor"]
