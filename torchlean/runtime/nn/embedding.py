"""Embedding: a lookup table of learned vectors."""

from __future__ import annotations

from typing import Any

from .. import functional_nn as FN
from ..backends import to_numpy
from ..tensor import Tensor, as_dtype, get_default_dtype
from ..trace import validate
from . import init
from .layers import _param
from .module import Module, PartialShape


class Embedding(Module):
    """Rows of ``weight`` (num_embeddings, embedding_dim), N(0, 1) at init like torch, picked by
    integer indices of any shape; the output appends ``embedding_dim``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype: Any = None, device: str = "cpu"):
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        dt = as_dtype(dtype or get_default_dtype())
        self.weight = _param(init.normal((self.num_embeddings, self.embedding_dim), 1.0, dt), device)

    def forward(self, idx: Any) -> Tensor:
        t = FN._as_index_tensor(idx, self.weight)
        if t.numel() and t.device != "symbolic":
            # torch's range (the primitive itself wraps negative indices round, as numpy and the
            # spec do); through validate, so that a compiled plan checks every batch too
            validate(t, self._check_range)
        return FN.embedding(t, self.weight)

    def _check_range(self, data: Any) -> None:
        t = to_numpy(data)
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= self.num_embeddings:
            raise IndexError(f"Embedding({self.extra_repr()}): index {lo if lo < 0 else hi} out of "
                             f"range [0, {self.num_embeddings})")

    def input_shape(self) -> PartialShape:
        # indices may have any shape; for build-time checks assume (batch, sequence) token ids
        return (None, None)

    def output_shape(self, shape: PartialShape) -> PartialShape:
        # the layers after it see the appended embedding_dim
        return (*shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"
