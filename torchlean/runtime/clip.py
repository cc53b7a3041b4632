"""Gradient clipping: ``clip_grad_norm_`` and ``clip_grad_value_`` (PyTorch semantics).

Gradients are replaced, not edited in place: ``backward`` may give several leaves the same
cotangent array, and scaling it in place would scale the others twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .backends import namespace_of
from .tensor import Tensor


def _with_grads(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p for p in params if p.grad is not None]


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale all gradients together so that their joint ``norm_type``-norm is at most ``max_norm``.

    Returns the norm before clipping (a 0-d Tensor), as PyTorch does.
    """
    params = _with_grads(parameters)
    if not params:
        return Tensor(np.asarray(0.0))
    grads = [p.grad.data for p in params]
    xp = namespace_of(grads[0])
    norm_type = float(norm_type)
    if math.isinf(norm_type):
        norms = [xp.max(xp.abs(g)) for g in grads]
        total = norms[0] if len(norms) == 1 else xp.max(xp.stack(norms))
    else:
        # the norm of the per-tensor norms, as torch's _get_total_norm computes it
        def vector_norm(a: Any) -> Any:
            if norm_type == 2.0:
                return xp.sqrt(xp.sum(a * a))
            return xp.sum(xp.abs(a) ** norm_type) ** (1.0 / norm_type)

        total = vector_norm(xp.stack([vector_norm(g) for g in grads]))
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} is not finite")
    coef = xp.minimum(max_norm / (total + 1e-6), 1.0)
    for p in params:
        g = p.grad.data
        p.grad = Tensor(g * coef.astype(g.dtype))
    return Tensor(xp.asarray(total))


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient entry to ``[-clip_value, clip_value]``."""
    c = float(clip_value)
    for p in _with_grads(parameters):
        g: Any = p.grad.data
        p.grad = Tensor(namespace_of(g).clip(g, -c, c))
