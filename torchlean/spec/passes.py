"""Graph-to-graph passes that keep the meaning (and every bit) of a graph."""

from __future__ import annotations

import numpy as np

from .graph import Graph, Node
from .primitives import PRIMITIVES
from .shapes import norm_axis
from .tensorops import slices

# Pure data movement: evaluating these on constants with numpy is exact, whatever the dtype.
_MOVE = {
    "transpose": lambda a, axes=None: np.transpose(a, axes),
    "reshape": lambda a, shape=(): a.reshape(tuple(shape)),
    "flatten": lambda a, start_dim=1: a.reshape(*a.shape[: norm_axis(start_dim, a.ndim, "flatten")], -1),
    "broadcast_to": lambda a, shape=(): np.broadcast_to(a, tuple(shape)),
    "slice": lambda a, index=(): a[slices(index)],
    "concat": lambda *xs, axis=0: np.concatenate(xs, axis=axis),
}


def fold_constants(graph: Graph) -> Graph:
    """Replace structural nodes whose inputs are all constants by the constant they produce.

    A traced ``nn.Linear`` contributes ``transpose(weight)``; after folding, the matmul sees a
    constant operand, which is what bound propagation and error analysis expect. Only data
    movement is folded, so the new constants hold exactly the old bits.
    """
    consts = dict(graph.constants)
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.op in _MOVE and node.inputs and all(i in consts for i in node.inputs):
            attrs = PRIMITIVES[node.op].check_attrs(node.attrs)
            value = _MOVE[node.op](*(consts[i] for i in node.inputs), **attrs)
            consts[node.output] = np.ascontiguousarray(value)
        else:
            nodes.append(node)
    used = {i for n in nodes for i in n.inputs} | set(graph.outputs)
    consts = {k: v for k, v in consts.items() if k in used}
    return Graph(list(graph.inputs), consts, nodes, list(graph.outputs)).check()
