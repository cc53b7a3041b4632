"""PyTorch interop: state dicts both ways, and simple ``nn.Module`` trees to torchlean modules.

torchlean layers use torch's parameter names and layouts (``Linear.weight`` is (out, in),
``Sequential`` children are "0", "1", ...), so a state dict maps one to one. torch is imported
lazily: it is an optional dependency (the ``[torch]`` extra).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

#: torch buffers with no torchlean counterpart (bookkeeping, not part of the function computed)
_TORCH_ONLY = ("num_batches_tracked",)


class TorchInteropError(ValueError):
    """torch is missing, or a module or state dict does not map onto torchlean."""


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise TorchInteropError("this needs PyTorch, an optional dependency: pip install 'torchlean[torch]'"
                                ) from None
    return torch


def _to_numpy(v: Any) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v
    if hasattr(v, "detach"):  # a torch tensor: exact copy of its bits
        return v.detach().cpu().numpy().copy()
    if hasattr(v, "data") and isinstance(getattr(v, "data", None), np.ndarray):
        return v.data
    return np.asarray(v)


def from_torch_state_dict(model: Any, state_dict: Mapping[str, Any], strict: bool = True) -> Any:
    """Load a torch ``state_dict`` (tensors or arrays) into torchlean ``model``; returns the model.

    Names map one to one; torch-only bookkeeping buffers (``num_batches_tracked``) are skipped
    when the torchlean model has no such entry. Shapes are checked by ``load_state_dict``.
    """
    own = set(model.state_dict())
    arrays = {k: _to_numpy(v) for k, v in state_dict.items()
              if k in own or not k.endswith(_TORCH_ONLY)}
    model.load_state_dict(arrays, strict=strict)
    return model


def to_torch_state_dict(model: Any) -> dict[str, Any]:
    """The torchlean ``model``'s parameters and buffers as torch tensors (exact bits, CPU)."""
    torch = _torch()
    return {k: torch.from_numpy(np.ascontiguousarray(v).copy()) for k, v in model.state_dict().items()}


# -- modules ---------------------------------------------------------------------------------

def _pair(v: Any) -> Any:
    return tuple(v) if isinstance(v, (tuple, list)) else v


def _layer_builders() -> dict[str, Callable[[Any], Any]]:
    """torch class name -> builder of the matching torchlean layer (weights loaded afterwards)."""
    from .. import nn

    def conv(cls: Any) -> Callable[[Any], Any]:
        def build(m: Any) -> Any:
            if m.padding_mode != "zeros":
                raise TorchInteropError(f"{type(m).__name__} with padding_mode={m.padding_mode!r} "
                                        "is not supported")
            return cls(m.in_channels, m.out_channels, m.kernel_size, m.stride, _pair(m.padding),
                       m.dilation, m.groups, bias=m.bias is not None, dtype=_dtype(m))
        return build

    def pool(cls: Any) -> Callable[[Any], Any]:
        def build(m: Any) -> Any:
            if getattr(m, "ceil_mode", False) or getattr(m, "dilation", 1) not in (1, (1, 1)):
                raise TorchInteropError(f"{type(m).__name__} with ceil_mode or dilation is not supported")
            if getattr(m, "divisor_override", None) is not None:  # a sum over the window / d, not a mean
                raise TorchInteropError(f"{type(m).__name__}(divisor_override={m.divisor_override}) "
                                        "is not supported")
            kw = {"count_include_pad": m.count_include_pad} if hasattr(m, "count_include_pad") else {}
            return cls(m.kernel_size, m.stride, m.padding, **kw)
        return build

    def batch_norm(cls: Any) -> Callable[[Any], Any]:
        def build(m: Any) -> Any:
            if not m.track_running_stats:
                raise TorchInteropError(f"{type(m).__name__}(track_running_stats=False) is not supported")
            return cls(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine, dtype=_dtype(m))
        return build

    table: dict[str, Callable[[Any], Any]] = {
        "Linear": lambda m: nn.Linear(m.in_features, m.out_features, bias=m.bias is not None,
                                      dtype=_dtype(m)),
        "ReLU": lambda m: nn.ReLU(),
        "Tanh": lambda m: nn.Tanh(),
        "Sigmoid": lambda m: nn.Sigmoid(),
        "SiLU": lambda m: nn.SiLU(),
        "Softplus": lambda m: _softplus(m),
        "LeakyReLU": lambda m: nn.LeakyReLU(m.negative_slope),
        "Identity": lambda m: nn.Identity(),
        "Dropout": lambda m: nn.Dropout(m.p),
        "Flatten": lambda m: _flatten(m),
        "Softmax": lambda m: nn.Softmax(_softmax_dim(m)),
        "LogSoftmax": lambda m: nn.LogSoftmax(_softmax_dim(m)),
        "GELU": lambda m: nn.GELU(m.approximate),
    }
    for name in ("Conv1d", "Conv2d"):
        if hasattr(nn, name):
            table[name] = conv(getattr(nn, name))
    for name in ("MaxPool2d", "AvgPool2d"):
        if hasattr(nn, name):
            table[name] = pool(getattr(nn, name))
    for name in ("BatchNorm1d", "BatchNorm2d"):
        if hasattr(nn, name):
            table[name] = batch_norm(getattr(nn, name))
    return table


def _flatten(m: Any) -> Any:
    from .. import nn

    if m.end_dim != -1:
        raise TorchInteropError(f"Flatten(end_dim={m.end_dim}) is not supported (only end_dim=-1)")
    return nn.Flatten(m.start_dim)


def _softplus(m: Any) -> Any:
    from .. import nn

    # torchlean's Softplus is log(1 + e^x); torch's is log(1 + e^(beta x)) / beta, and x itself
    # where beta x > threshold (the default 20 differs from log(1 + e^x) by < e^-20, documented)
    if m.beta != 1 or m.threshold != 20:
        raise TorchInteropError(f"Softplus(beta={m.beta}, threshold={m.threshold}) is not supported "
                                "(only beta=1, threshold=20)")
    return nn.Softplus()


def _softmax_dim(m: Any) -> int:
    # dim=None is torch's legacy implicit dim, which depends on the input's rank (0 for ranks 0, 1
    # and 3, else 1), unknown when the layer is built: -1 would be another function on 3-D/4-D input
    if m.dim is None:
        raise TorchInteropError(f"{type(m).__name__}(dim=None) (torch's implicit, rank-dependent dim) "
                                "is not supported: give dim")
    return int(m.dim)


def _dtype(m: Any) -> str:
    """The layer's float dtype: its first parameter's, else its first float buffer's (a float64
    BatchNorm without affine), else float32 (loading would otherwise round the weights to it)."""
    ts = [*m.parameters(), *(b for b in m.buffers() if b.is_floating_point())]
    return str(ts[0].dtype).replace("torch.", "") if ts else "float32"


def _hooked(m: Any) -> bool:
    """Whether ``m`` has forward hooks (its own or global ones): they change what calling it
    computes, and rebuilding it layer by layer would drop them."""
    from torch.nn.modules import module as tm

    return bool(m._forward_hooks or m._forward_pre_hooks or tm._global_forward_hooks
                or tm._global_forward_pre_hooks)


def _sequential_bad(module: Any, table: dict[str, Any]) -> set[str]:
    """Layer types of a (nested) nn.Sequential that ``table`` has no builder for; {"<class>"} when
    ``module`` is not a Sequential at all. Classes are matched by identity, not by name: a subclass
    (of Sequential too) or another class called "Linear" may have its own forward; a module with
    forward hooks is not the plain layer either. Those go through torch.export."""
    torch = _torch()
    if type(module) is not torch.nn.Sequential or _hooked(module):
        return {type(module).__name__}
    bad: set[str] = set()
    for c in module._modules.values():  # what forward runs: children() skips a repeated instance
        name = type(c).__name__
        if type(c) is torch.nn.Sequential:
            bad |= _sequential_bad(c, table)
        elif name not in table or type(c) is not getattr(torch.nn, name, None) or _hooked(c):
            bad.add(name)
    return bad


def from_torch(module: Any, example: Any = None) -> Any:
    """A torchlean copy of a torch ``nn.Module``, weights with their exact bits.

    An ``nn.Sequential`` (nested ones too) of torch's own supported layers, without forward hooks,
    is rebuilt layer by layer, keeping its structure and names (a layer used twice becomes two
    copies). Any other module (a subclass with its own ``forward``, residual connections,
    functional calls) goes through ``torch.export`` on ``example`` (an input tensor or array, or a
    tuple of them for several inputs; its shape, batch included, fixes the graph's) and comes back
    as a ``nn.GraphModule`` whose float weights are Parameters under torch's ``state_dict`` names
    (``bridge.torch_export``).
    Errors (``TorchInteropError``, one line): no ``example`` when one is needed; unsupported layers
    or aten ops, all named at once; something that is not a torch module (a torchlean model
    included: it needs no conversion).

    Example::

        tm = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        model = from_torch(tm)                          # a torchlean nn.Sequential, same weight bits
        model(tl.tensor([[0.5, -1.0]]))                 # runs; tl.verify.bounds(model, x, eps) bounds it
        # any other nn.Module (its own forward): from_torch(module.eval(), example=torch.zeros(1, 2))
    """
    torch = _torch()
    from .. import nn
    from ..runtime.nn.module import Module

    if isinstance(module, Module):
        raise TorchInteropError(f"from_torch: {type(module).__name__} is already a torchlean model "
                                "(no conversion needed)")
    if not isinstance(module, torch.nn.Module):
        raise TorchInteropError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")

    table = _layer_builders()
    bad = _sequential_bad(module, table)
    if not bad:
        def build(m: Any) -> Any:
            if type(m).__name__ in table:
                return table[type(m).__name__](m)
            # forward's order and torch's names (state-dict keys), a repeated instance each time
            return nn.Sequential(OrderedDict((k, build(c)) for k, c in m._modules.items()))

        out = build(module)
        from_torch_state_dict(out, module.state_dict())
        return out.train(module.training)
    if example is None:
        raise TorchInteropError(f"unsupported torch module(s): {', '.join(sorted(bad))}; pass an example "
                                f"input, from_torch(module, example=x), to import {type(module).__name__} "
                                "through torch.export")
    from .torch_export import export_graph

    graph, params, buffers = export_graph(module, example)
    return nn.GraphModule(graph, params, buffers).train(module.training)
