"""Execution: array backends, tensors with autograd, kernels and VJP rules, nn, training."""

from . import rules_elementwise, rules_nn, rules_tensor  # noqa: F401  (fill the rule table)
from .rules import RULES
from .tensor import Tensor, apply, no_grad, tensor

__all__ = ["RULES", "Tensor", "apply", "no_grad", "tensor"]
