"""Files in the IR's JSON format (see docs/ir-json.md): atomic save, checked load."""

from __future__ import annotations

import os
from pathlib import Path

from .._files import atomic_write_bytes
from ..spec.graph import Graph, GraphError


def save_graph(graph: Graph, path: str | os.PathLike[str], indent: int | None = 1) -> None:
    """Check ``graph`` and write it as IR JSON (sorted keys, so equal graphs give equal files).

    Example::

        model, x = tl.nn.Sequential(tl.nn.Linear(2, 3), tl.nn.ReLU()), tl.zeros(1, 2)
        save_graph(tl.trace(model, x), "net.json")   # a model is traced first: its graph is what is saved
        load_graph("net.json").fingerprint()         # the same graph, bit for bit
    """
    if not isinstance(graph, Graph):
        raise TypeError(f"save_graph: expected a Graph (tl.trace(model, x)), got {type(graph).__name__}")
    graph.check()
    atomic_write_bytes(path, (graph.to_json(indent=indent) + "\n").encode())


def load_graph(path: str | os.PathLike[str]) -> Graph:
    """Read and check an IR JSON file; a bad file raises GraphError naming the path."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise GraphError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise GraphError(f"{path}: not UTF-8 text") from None
    try:
        return Graph.from_json(text)
    except GraphError as e:
        raise GraphError(f"{path}: {e}") from None
