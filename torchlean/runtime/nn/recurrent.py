"""Recurrent layers: RNN, LSTM and GRU, built from existing primitives (linear, sigmoid, tanh, relu,
mul, add, slicing and stack), so autograd, tracing, proofs and bounds need no new rule.

Torch's conventions throughout, so code and state dicts move across unchanged: inputs (L, N, H_in),
or (N, L, H_in) with ``batch_first=True``, or unbatched (L, H_in); parameters ``weight_ih_l{k}``
(G·H, H_in for layer 0, else H), ``weight_hh_l{k}`` (G·H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}``
(G·H), all initialised uniform in ±1/√H; gate order i, f, g, o (LSTM) and r, z, n (GRU); ``forward``
returns ``(output, h_n)``, for LSTM ``(output, (h_n, c_n))``, with h_n of shape (num_layers, N, H).

Cells (H the hidden size, x the input, h and c the state, σ the logistic sigmoid):
- RNN:  h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), act tanh (default) or relu;
- LSTM: i, f, g, o = chunks of x W_ihᵀ + b_ih + h W_hhᵀ + b_hh; c' = σ(f)·c + σ(i)·tanh(g);
  h' = σ(o)·tanh(c');
- GRU:  r = σ(x W_irᵀ + b_ir + h W_hrᵀ + b_hr), z likewise; n = tanh(x W_inᵀ + b_in + r·(h W_hnᵀ + b_hn));
  h' = (1 − z)·n + z·h.
"""

from __future__ import annotations

import math
from typing import Any

from ...spec.shapes import ShapeError
from .. import functional as F
from ..functional_nn import dropout
from ..tensor import Tensor, as_dtype, get_default_dtype
from . import init
from .layers import _param
from .module import Module

__all__ = ["GRU", "LSTM", "RNN"]


class _Recurrent(Module):
    gates = 1  # G: how many H-sized blocks the weight matrices stack

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, dtype: Any = None, device: str = "cpu"):
        super().__init__()
        if input_size < 1 or hidden_size < 1 or num_layers < 1:
            raise ValueError(f"{type(self).__name__}: input_size, hidden_size and num_layers must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{type(self).__name__}: dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        dt = as_dtype(dtype or get_default_dtype())
        bound = 1.0 / math.sqrt(self.hidden_size)
        g = self.gates * self.hidden_size
        for k in range(self.num_layers):
            fan = self.input_size if k == 0 else self.hidden_size
            setattr(self, f"weight_ih_l{k}", _param(init.uniform((g, fan), bound, dt), device))
            setattr(self, f"weight_hh_l{k}", _param(init.uniform((g, self.hidden_size), bound, dt), device))
            setattr(self, f"bias_ih_l{k}", _param(init.uniform((g,), bound, dt), device) if bias else None)
            setattr(self, f"bias_hh_l{k}", _param(init.uniform((g,), bound, dt), device) if bias else None)

    def _weights(self, k: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        return (getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"),
                getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}"))

    def _chunk(self, t: Tensor, i: int) -> Tensor:
        h = self.hidden_size
        return t[..., i * h:(i + 1) * h]

    def cell(self, x: Tensor, state: Any, k: int) -> Any:
        """One step of layer ``k``: the new state from input x (N, H_in) and state (N, H)."""
        raise NotImplementedError

    def _zero_state(self, n: int, like: Tensor) -> Any:
        from ..tensor import zeros
        from ..trace import constant

        # zeros of a shape-determined size: a compiled plan may keep them
        return constant(zeros(self.num_layers, n, self.hidden_size, dtype=like.dtype, device=like.device))

    def forward(self, input: Tensor, hx: Any = None) -> tuple[Tensor, Any]:
        name = type(self).__name__
        if input.ndim not in (2, 3) or input.shape[-1] != self.input_size:
            raise ShapeError(f"{name}({self.extra_repr()}): input must be (L, N, {self.input_size})"
                             f"{' with batch_first' if self.batch_first else ''} or (L, {self.input_size}), "
                             f"got {input.shape}")
        unbatched = input.ndim == 2
        x = F.unsqueeze(input, 1) if unbatched else (F.transpose(input, 0, 1) if self.batch_first else input)
        n = x.shape[1]
        states = self._initial(hx, n, x, unbatched)
        layer_in = [x[t] for t in range(x.shape[0])]
        finals = []
        for k in range(self.num_layers):
            state = states[k]
            outs = []
            for xt in layer_in:
                state = self.cell(xt, state, k)
                outs.append(self._hidden(state))
            finals.append(state)
            layer_in = outs
            if self.dropout and self.training and k + 1 < self.num_layers:
                layer_in = [dropout(o, self.dropout, True) for o in layer_in]
        out = F.stack(layer_in, 0)  # (L, N, H)
        out = F.squeeze(out, 1) if unbatched else (F.transpose(out, 0, 1) if self.batch_first else out)
        return out, self._final(finals, unbatched)

    # state handling: a tensor h (RNN, GRU); LSTM overrides with (h, c)
    def _initial(self, hx: Any, n: int, like: Tensor, unbatched: bool) -> list[Any]:
        h = self._zero_state(n, like) if hx is None else (F.unsqueeze(hx, 1) if unbatched else hx)
        self._check_state(h, n)
        return [h[k] for k in range(self.num_layers)]

    def _check_state(self, h: Tensor, n: int) -> None:
        if tuple(h.shape) != (self.num_layers, n, self.hidden_size):
            raise ShapeError(f"{type(self).__name__}: initial state must be "
                             f"({self.num_layers}, {n}, {self.hidden_size}), got {h.shape}")

    def _hidden(self, state: Any) -> Tensor:
        return state

    def _final(self, finals: list[Any], unbatched: bool) -> Any:
        h = F.stack(finals, 0)
        return F.squeeze(h, 1) if unbatched else h

    def extra_repr(self) -> str:
        extra = "" if self.num_layers == 1 else f", num_layers={self.num_layers}"
        extra += "" if self.bias else ", bias=False"
        extra += ", batch_first=True" if self.batch_first else ""
        extra += f", dropout={self.dropout:g}" if self.dropout else ""
        return f"{self.input_size}, {self.hidden_size}{extra}"


class RNN(_Recurrent):
    """Elman RNN, ``nonlinearity`` "tanh" (default) or "relu" (see the module docstring)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, dtype: Any = None,
                 device: str = "cpu"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, dtype, device)
        self.nonlinearity = nonlinearity

    def cell(self, x: Tensor, h: Tensor, k: int) -> Tensor:
        w_ih, w_hh, b_ih, b_hh = self._weights(k)
        z = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
        return F.tanh(z) if self.nonlinearity == "tanh" else F.relu(z)


class LSTM(_Recurrent):
    """Long short-term memory (see the module docstring); state ``(h, c)``."""

    gates = 4

    def cell(self, x: Tensor, state: tuple[Tensor, Tensor], k: int) -> tuple[Tensor, Tensor]:
        h, c = state
        w_ih, w_hh, b_ih, b_hh = self._weights(k)
        z = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
        i, f, g, o = (self._chunk(z, j) for j in range(4))
        c = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
        return F.sigmoid(o) * F.tanh(c), c

    def _initial(self, hx: Any, n: int, like: Tensor, unbatched: bool) -> list[Any]:
        if hx is None:
            h = c = self._zero_state(n, like)
        else:
            h, c = (F.unsqueeze(t, 1) if unbatched else t for t in hx)
        self._check_state(h, n)
        self._check_state(c, n)
        return [(h[k], c[k]) for k in range(self.num_layers)]

    def _hidden(self, state: Any) -> Tensor:
        return state[0]

    def _final(self, finals: list[Any], unbatched: bool) -> Any:
        h, c = F.stack([s[0] for s in finals], 0), F.stack([s[1] for s in finals], 0)
        return (F.squeeze(h, 1), F.squeeze(c, 1)) if unbatched else (h, c)


class GRU(_Recurrent):
    """Gated recurrent unit (see the module docstring)."""

    gates = 3

    def cell(self, x: Tensor, h: Tensor, k: int) -> Tensor:
        w_ih, w_hh, b_ih, b_hh = self._weights(k)
        gi, gh = F.linear(x, w_ih, b_ih), F.linear(h, w_hh, b_hh)
        r = F.sigmoid(self._chunk(gi, 0) + self._chunk(gh, 0))
        z = F.sigmoid(self._chunk(gi, 1) + self._chunk(gh, 1))
        n = F.tanh(self._chunk(gi, 2) + r * self._chunk(gh, 2))
        return (1 - z) * n + z * h
