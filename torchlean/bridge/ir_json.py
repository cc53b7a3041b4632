"""Files in the IR's JSON format (see docs/ir-json.md): atomic save, checked load."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..spec.graph import Graph, GraphError


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_graph(graph: Graph, path: str | os.PathLike[str], indent: int | None = 1) -> None:
    """Check ``graph`` and write it as IR JSON (sorted keys, so equal graphs give equal files)."""
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
