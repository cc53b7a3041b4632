"""``torchlean.autograd``: grad, vjp, no_grad, enable_grad."""

from .runtime.autograd import backward, enable_grad, grad, is_grad_enabled, no_grad, vjp

__all__ = ["backward", "enable_grad", "grad", "is_grad_enabled", "no_grad", "vjp"]
