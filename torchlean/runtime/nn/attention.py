"""Attention layers: MultiheadAttention and TransformerEncoderLayer (torch's parameter layout, so
torch state_dicts load 1:1)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...spec.shapes import ShapeError
from .. import functional as F
from .. import functional_nn as FN
from ..backends import namespace_of
from ..tensor import Tensor, as_dtype, get_default_dtype
from ..trace import constant
from . import init
from .layers import Dropout, Linear, _fmt, _param
from .module import Module, PartialShape
from .norm import LayerNorm


def _mask_scores(scores: Tensor, mask: Tensor | Any) -> Tensor:
    """Apply a torch-style attention mask: boolean True = not allowed (-inf), float = additive."""
    m = mask if isinstance(mask, Tensor) else Tensor(namespace_of(scores.data).asarray(mask))
    if m.dtype.kind == "b":
        return F.where(m, float("-inf"), scores)
    return scores + m


class MultiheadAttention(Module):
    """Multi-head scaled dot-product attention; inputs (L, N, E), or (N, L, E) with
    ``batch_first=True``, like torch (the default was True before 0.2: pass it explicitly).

    Parameters as in torch: ``in_proj_weight`` (3E, E, xavier-uniform), ``in_proj_bias`` (3E,
    zeros), ``out_proj`` (a Linear E -> E, bias zeros). ``forward`` returns ``(output, weights)``;
    weights are averaged over heads unless ``average_attn_weights=False``, None unless
    ``need_weights``.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, dtype: Any = None, device: str = "cpu"):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim={embed_dim} must be divisible by "
                             f"num_heads={num_heads}")
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout, self.batch_first = float(dropout), batch_first
        dt = as_dtype(dtype or get_default_dtype())
        e = self.embed_dim
        self.in_proj_weight = _param(init.uniform((3 * e, e), math.sqrt(6.0 / (4 * e)), dt), device)
        self.in_proj_bias = _param(np.zeros((3 * e,), dtype=dt), device) if bias else None
        self.out_proj = Linear(e, e, bias=bias, dtype=dt, device=device)
        if bias:
            self.out_proj.bias.data = self.out_proj.bias.data * 0

    def _project(self, x: Tensor, i: int) -> Tensor:
        e = self.embed_dim
        w = self.in_proj_weight[i * e:(i + 1) * e]
        b = self.in_proj_bias[i * e:(i + 1) * e] if self.in_proj_bias is not None else None
        y = F.linear(x, w, b)  # (N, L, E) -> (N, H, L, hd)
        n, length = y.shape[0], y.shape[1]
        return F.permute(F.reshape(y, (n, length, self.num_heads, self.head_dim)), (0, 2, 1, 3))

    def _check(self, name: str, t: Tensor) -> None:
        if t.ndim != 3 or t.shape[-1] != self.embed_dim:
            raise ShapeError(f"MultiheadAttention({self.extra_repr()}): {name} must be "
                             f"{_fmt((None, None, self.embed_dim))}, got {t.shape}")

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Any = None,
                need_weights: bool = True, attn_mask: Any = None,
                average_attn_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        for name, t in (("query", query), ("key", key), ("value", value)):
            self._check(name, t)  # before the layout swap, so errors show the shapes given
        if not self.batch_first:
            query, key, value = (F.transpose(t, 0, 1) for t in (query, key, value))
        n, length, s = query.shape[0], query.shape[1], key.shape[1]
        q = self._project(query, 0) * (1.0 / math.sqrt(self.head_dim))
        k, v = self._project(key, 1), self._project(value, 2)
        scores = F.matmul(q, F.transpose(k, -1, -2))  # (N, H, L, S)
        if attn_mask is not None:
            m = attn_mask if isinstance(attn_mask, Tensor) else Tensor(
                namespace_of(scores.data).asarray(attn_mask))
            if m.ndim == 3:  # torch's (N*H, L, S)
                m = F.reshape(m, (n, self.num_heads, length, s))
            scores = _mask_scores(scores, m)
        if key_padding_mask is not None:
            m = key_padding_mask if isinstance(key_padding_mask, Tensor) else Tensor(
                namespace_of(scores.data).asarray(key_padding_mask))
            scores = _mask_scores(scores, F.reshape(m, (n, 1, 1, s)))
        attn = F.softmax(scores, dim=-1)
        attn_used = FN.dropout(attn, self.dropout, self.training)
        out = F.reshape(F.permute(F.matmul(attn_used, v), (0, 2, 1, 3)), (n, length, self.embed_dim))
        out = self.out_proj(out)
        if not self.batch_first:
            out = F.transpose(out, 0, 1)
        if not need_weights:
            return out, None
        return out, (F.mean(attn, 1) if average_attn_weights else attn)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"


_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward block, each with a residual connection and LayerNorm:
    post-norm (torch's default) or ``norm_first``. ``activation`` is "relu", "gelu" (the tanh
    form, torchlean's GELU primitive) or a callable.

    torch's defaults: dim_feedforward 2048, dropout 0.1, relu, layer_norm_eps 1e-5, post-norm and
    inputs (S, N, E) (``batch_first=False``; it was True before 0.2: pass it explicitly).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Any = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, dtype: Any = None, device: str = "cpu"):
        super().__init__()
        if isinstance(activation, str) and activation not in _ACTIVATIONS:
            raise ValueError(
                f"TransformerEncoderLayer: activation must be 'relu' or 'gelu', got {activation!r}")
        self.d_model, self.batch_first, self.norm_first = int(d_model), batch_first, norm_first
        kw = {"dtype": dtype, "device": device}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias=bias, batch_first=True, **kw)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **kw)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **kw)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.dropout1, self.dropout2 = Dropout(dropout), Dropout(dropout)
        self.activation = _ACTIVATIONS[activation] if isinstance(activation, str) else activation

    def _sa(self, x: Tensor, mask: Any, padding_mask: Any) -> Tensor:
        y, _ = self.self_attn(x, x, x, key_padding_mask=padding_mask, need_weights=False, attn_mask=mask)
        return self.dropout1(y)

    def _ff(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, src: Tensor, src_mask: Any = None, src_key_padding_mask: Any = None,
                is_causal: bool = False) -> Tensor:
        x = src if self.batch_first else F.transpose(src, 0, 1)
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ShapeError(f"TransformerEncoderLayer(d_model={self.d_model}): expects input "
                             f"{_fmt((None, None, self.d_model))}, got {src.shape}")
        if is_causal and src_mask is None:
            xp = namespace_of(x.data)
            length = x.shape[1]
            # depends on the length only: a compiled plan may keep it (runtime.trace.constant)
            src_mask = constant(Tensor(xp.greater(xp.arange(length)[None, :], xp.arange(length)[:, None])))
        if self.norm_first:
            x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask)
            x = x + self._ff(self.norm2(x))
        else:
            x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask))
            x = self.norm2(x + self._ff(x))
        return x if self.batch_first else F.transpose(x, 0, 1)

    def input_shape(self) -> PartialShape:
        return (None, None, self.d_model)

    def output_shape(self, shape: PartialShape) -> PartialShape:
        if len(shape) != 3 or shape[-1] not in (None, self.d_model):
            raise ShapeError(f"expects input {_fmt(self.input_shape())}")
        return shape

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, norm_first={self.norm_first}"
