"""Execution: array backends, tensors with autograd, kernels and VJP rules, nn, training."""

from . import rules_elementwise, rules_nn, rules_tensor  # noqa: F401  (fill the rule table)
from .rules import RULES, SHIPPED
from .tensor import Tensor, apply, no_grad, tensor

SHIPPED.update({n: (r.forward, r.vjp) for n, r in RULES.items()})  # torchlean's own (``rules.shipped``)

__all__ = ["RULES", "Tensor", "apply", "no_grad", "tensor"]
