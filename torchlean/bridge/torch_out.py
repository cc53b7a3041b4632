"""A torchlean model or graph IR as a runnable ``torch.nn.Module``: one torch function per primitive.

``to_torch(model_or_graph, example=None)`` takes a ``Graph``, an ``nn.GraphModule`` (its graph with
its current weights) or any torchlean model (traced with ``tl.trace`` at ``example``) and returns a
``torch.nn.Module`` whose ``forward`` applies, node by node, the torch function the table
``torch_ops()`` maps the node's primitive to. Float constants become ``nn.Parameter``s (exact
bits; ``.`` in a name becomes ``_``, torch's rule), integer ones buffers, so the result trains in
torch as well.

Where torch's function and the primitive differ, it is said here: ``softplus`` is torch's (which
returns x above 20: |log(1 + e^x) - x| < e^-20 there); everything else computes the primitive's
meaning in torch's float arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec.graph import Graph
from ..spec.nnops import pair
from ..spec.primitives import PRIMITIVES
from ..spec.shapes import norm_axes
from ..spec.tensorops import slices
from .torch_io import TorchInteropError, _to_numpy, _torch


def _axes(x: Any, axes: Any) -> tuple[int, ...]:
    return norm_axes(axes, x.dim(), "reduce")  # each once; () stays () (torch reads dim=() as all)


def _ops() -> dict[str, Callable[..., Any]]:
    """IR primitive -> function of torch tensors (inputs in the primitive's order, its attrs)."""
    torch = _torch()
    F = torch.nn.functional

    def reduce(fn: Callable[..., Any]) -> Callable[..., Any]:
        return lambda x, axes, keepdims: fn(x, dim=_axes(x, axes), keepdim=keepdims) if _axes(x, axes) else x

    return {
        "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "neg": torch.neg,
        "pow": lambda x, exponent: torch.pow(x, exponent),
        "maximum": torch.maximum, "minimum": torch.minimum,
        "relu": torch.relu, "leaky_relu": lambda x, slope: F.leaky_relu(x, slope), "abs": torch.abs,
        "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "tanh": torch.tanh, "erf": torch.erf,
        "sigmoid": torch.sigmoid, "softplus": F.softplus,
        "gelu": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu,
        "where": lambda c, a, b: torch.where(c.bool(), a, b),
        "conv2d": lambda x, w, stride, padding, dilation, groups: F.conv2d(
            x, w, None, pair(stride), pair(padding), pair(dilation), groups),
        "max_pool2d": lambda x, kernel_size, stride, padding: F.max_pool2d(
            x, pair(kernel_size), pair(stride), pair(padding)),
        "avg_pool2d": lambda x, kernel_size, stride, padding, count_include_pad: F.avg_pool2d(
            x, pair(kernel_size), pair(stride), pair(padding), count_include_pad=count_include_pad),
        "layer_norm": lambda x, w, b, normalized_ndim, eps: F.layer_norm(
            x, tuple(x.shape[x.dim() - normalized_ndim:]), w, b, eps),
        "batch_norm": lambda x, mean, var, w, b, eps: F.batch_norm(  # running stats take no gradient
            x, mean.detach(), var.detach(), w, b, False, 0.0, eps),
        "embedding": lambda w, idx: F.embedding(idx.long(), w),
        "matmul": torch.matmul,
        "sum": reduce(torch.sum), "mean": reduce(torch.mean), "max": reduce(torch.amax),
        "reshape": lambda x, shape: x.reshape(tuple(shape)),
        "flatten": lambda x, start_dim: torch.flatten(x, start_dim),
        "transpose": lambda x, axes: x.permute(*(axes if axes is not None else reversed(range(x.dim())))),
        "broadcast_to": lambda x, shape: x.expand(*shape),
        "concat": lambda *xs, axis: torch.cat(xs, dim=axis),
        "slice": lambda x, index: x[slices(index)],
        "gather": lambda x, idx, axis: torch.gather(x, axis, idx.long()),
        "softmax": lambda x, axis: torch.softmax(x, axis),
        "log_softmax": lambda x, axis: torch.log_softmax(x, axis),
        "cast": lambda x, dtype: x.to(getattr(torch, dtype)),
    }


def _graph_of(model_or_graph: Any, example: Any) -> tuple[Graph, set[str]]:
    """The graph, and the names of its constants that are trained parameters (all float ones for
    a bare graph)."""
    from ..runtime.nn.graph_module import GraphModule

    if isinstance(model_or_graph, Graph):
        g = model_or_graph if model_or_graph.values else model_or_graph.check()
        return g, {k for k, a in g.constants.items() if a.dtype.kind == "f"}
    if isinstance(model_or_graph, GraphModule):
        return model_or_graph.to_graph(), {k for k, _ in model_or_graph.named_parameters()}
    from ..runtime.trace import is_torch_module

    if is_torch_module(model_or_graph):
        raise TorchInteropError(f"to_torch: {type(model_or_graph).__name__} is already a PyTorch module")
    if example is None:
        raise TorchInteropError(f"to_torch({type(model_or_graph).__name__}): pass an example input "
                                "(to_torch(model, example=x)) to trace it, or a Graph")
    from ..runtime.tensor import tensor
    from ..runtime.trace import require_eval, trace

    require_eval(model_or_graph, "to_torch")
    g = trace(model_or_graph, tensor(_to_numpy(example)))
    from ..runtime.rules import SHIPPED, foreign

    own = [op for op in foreign({n.op for n in g.nodes}) if op in SHIPPED]
    if own:  # (audit55) torch's function would be torchlean's meaning, not the kernel the model ran
        raise TorchInteropError(f"to_torch: the model runs a project's kernel for {', '.join(own)}, not "
                                "torchlean's; the torch module would compute torchlean's meaning instead")
    names = {k for k, _ in model_or_graph.named_parameters()} if hasattr(model_or_graph,
                                                                        "named_parameters") else set()
    return g, names


def to_torch(model_or_graph: Any, example: Any = None) -> Any:
    """A ``torch.nn.Module`` computing ``model_or_graph`` (see the module docstring); unsupported
    uses (a negative slice step) are refused in one line (``TorchInteropError``).

    Example::

        model, x = tl.nn.Sequential(tl.nn.Linear(2, 3), tl.nn.Tanh()), tl.zeros(1, 2)
        tm = to_torch(model, example=x)                # a torchlean model: traced at x's shape
        tm = to_torch(tl.trace(model, x))              # or its Graph: no example needed
        tm(torch.from_numpy(x.numpy()))                # the same outputs, computed by torch
    """
    torch = _torch()
    graph, trained = _graph_of(model_or_graph, example)
    ops = _ops()
    missing = sorted({n.op for n in graph.nodes if n.op not in ops})
    if missing:
        raise TorchInteropError("no torch function for primitive(s): " + ", ".join(missing))
    for n in graph.nodes:
        if n.op == "slice" and any(t[2] is not None and t[2] < 0 for t in n.attrs.get("index", ())):
            raise TorchInteropError(f"{n.output}: a slice with a negative step has no torch view")

    class TorchGraph(torch.nn.Module):
        """The torchlean graph, run with torch functions (``bridge.torch_out.torch_ops()``)."""

        def __init__(self) -> None:
            super().__init__()
            self.graph = graph
            self.names: dict[str, str] = {}
            self.params = torch.nn.ParameterDict()
            for k, a in graph.constants.items():
                key = k.replace(".", "_")
                while key in self.names.values():
                    key += "_"
                self.names[k] = key
                t = torch.from_numpy(np.ascontiguousarray(a).copy())
                if k in trained and a.dtype.kind == "f":
                    self.params[key] = torch.nn.Parameter(t)
                else:
                    self.register_buffer("const_" + key, t)

        def _const(self, k: str) -> Any:
            key = self.names[k]
            return self.params[key] if key in self.params else getattr(self, "const_" + key)

        def forward(self, *inputs: Any) -> Any:
            env = {v.name: torch.as_tensor(x) for v, x in zip(self.graph.inputs, inputs)}
            for node in self.graph.nodes:
                args = [env[i] if i in env else self._const(i) for i in node.inputs]
                env[node.output] = ops[node.op](*args, **PRIMITIVES[node.op].check_attrs(node.attrs))
            outs = [env[o] if o in env else self._const(o) for o in self.graph.outputs]
            return outs[0] if len(outs) == 1 else tuple(outs)

    return TorchGraph()


def torch_ops() -> dict[str, Callable[..., Any]]:
    """IR primitive -> the torch function ``to_torch`` runs it with."""
    return _ops()
