"""A graph IR as a torchlean ``Module``: runnable, trainable, traceable.

``GraphModule(graph, parameters=..., buffers=...)`` holds an IR graph (from ``tl.trace``, an ONNX
import or ``bridge.from_torch``'s ``torch.export`` path). Float constants named in ``parameters``
become ``Parameter``s and those in ``buffers`` buffers, under their graph names (torch's
``state_dict`` names for imported models, so ``load_state_dict`` takes torch's state dict); other
constants (scalars a converter made) stay fixed. ``forward`` applies each node's primitive through
``runtime.tensor.apply``, the single dispatch point, so eager results equal ``run_graph``'s, the
tape gives gradients, and ``tl.trace`` / ``tl.verify.bounds`` see the same primitives again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...spec.graph import Graph
from ...spec.primitives import PRIMITIVES
from ...spec.shapes import ShapeError
from ..tensor import Tensor, apply
from .module import Module, Parameter

__all__ = ["GraphModule"]


class GraphModule(Module):
    """``graph`` as a Module: ``forward(*inputs)`` returns the graph's output (a tuple if several)."""

    def __init__(self, graph: Graph, parameters: Iterable[str] = (), buffers: Iterable[str] = ()):
        super().__init__()
        graph = graph if graph.values else graph.check()
        params, bufs = set(parameters), set(buffers)
        fixed: dict[str, Tensor] = {}
        for name, arr in graph.constants.items():
            if name in params and arr.dtype.kind == "f":
                self._parameters[name] = Parameter(arr.copy())
            elif name in bufs or name in params:
                self._buffers[name] = Tensor(arr.copy())
            else:
                fixed[name] = Tensor(arr.copy())
        object.__setattr__(self, "graph", graph)
        object.__setattr__(self, "_fixed", fixed)

    def _constant(self, name: str) -> Tensor:
        for table in (self._parameters, self._buffers, self._fixed):
            if name in table:
                return table[name]
        raise KeyError(name)

    def forward(self, *inputs: Any) -> Any:
        """Apply the graph's nodes in order to ``inputs`` (tensors or arrays of the graph's shapes)."""
        g = self.graph
        if len(inputs) != len(g.inputs):
            raise ShapeError(f"GraphModule: expects {len(g.inputs)} input(s), got {len(inputs)}")
        env: dict[str, Tensor] = {}
        for v, x in zip(g.inputs, inputs):
            t = x if isinstance(x, Tensor) else Tensor(x)
            if tuple(t.shape) != tuple(v.shape):
                raise ShapeError(f"GraphModule: input {v.name!r} has shape {tuple(t.shape)}, the graph "
                                 f"was built for {tuple(v.shape)}")
            env[v.name] = t
        for node in g.nodes:
            args = [env[n] if n in env else self._constant(n) for n in node.inputs]
            env[node.output] = apply(node.op, *args, **PRIMITIVES[node.op].check_attrs(node.attrs))
        outs = [env[o] if o in env else self._constant(o) for o in g.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def to_graph(self) -> Graph:
        """The graph with the module's current parameter and buffer values as its constants."""
        consts = {k: self._constant(k).numpy().copy() for k in self.graph.constants}
        g = self.graph
        return Graph(list(g.inputs), consts, list(g.nodes), list(g.outputs)).check()

    def to(self, arg: Any = None, *, dtype: Any = None, device: str | None = None) -> Module:
        """Move parameters, buffers and the fixed constants alike (see ``Module.to``)."""
        super().to(arg, dtype=dtype, device=device)
        for t in self._fixed.values():
            moved = t.to(arg, dtype=dtype, device=device) if t.dtype.kind == "f" else t.to(
                device=device if device else (arg if arg in ("cpu", "cuda") else None))
            t.data = moved.data
        return self

    def extra_repr(self) -> str:
        return f"{len(self.graph.nodes)} nodes, inputs {[tuple(v.shape) for v in self.graph.inputs]}"
