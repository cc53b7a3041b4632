"""VNN-COMP benchmark files: instance lists (CSV) and loading one (network, property) pair.

Two CSV shapes occur: the competition's ``instances.csv`` (no header: onnx, vnnlib, timeout) and
result tables with a header row whose first two columns are ``onnx,vnnlib`` (``expected.csv``:
expected verdict and published tool times). Paths are resolved against the CSV's folder.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..spec import Graph
from ..spec.shapes import size
from .onnx import load_onnx
from .vnnlib import Property, VnnlibError, parse_vnnlib


@dataclass(frozen=True)
class Instance:
    onnx: Path
    vnnlib: Path
    timeout: float | None = None
    expected: str | None = None  # "sat" / "unsat" where the table says
    #: every other column by header name (e.g. published run times), as text
    extra: dict[str, str] = field(default_factory=dict)


def read_instances(path: str | os.PathLike[str]) -> list[Instance]:
    """The instances listed in a VNN-COMP CSV (either shape above)."""
    path = Path(path)
    try:
        rows = [r for r in csv.reader(path.read_text().splitlines()) if r and any(c.strip() for c in r)]
    except OSError as e:
        raise VnnlibError(f"{path}: cannot read ({e.strerror})") from None
    header = [c.strip() for c in rows[0]] if rows and rows[0][:2] == ["onnx", "vnnlib"] else None
    out = []
    for line, row in enumerate(rows[1:] if header else rows, start=2 if header else 1):
        if len(row) < 2:
            raise VnnlibError(f"{path}:{line}: expected at least the columns onnx,vnnlib")
        cells = {h: c.strip() for h, c in zip(header, row)} if header else {}
        timeout = cells.pop("timeout", None) if header else (row[2].strip() if len(row) > 2 else None)
        expected = cells.pop("expected", None)
        for k in ("onnx", "vnnlib"):
            cells.pop(k, None)
        try:
            t = float(timeout) if timeout else None
        except ValueError:
            raise VnnlibError(f"{path}:{line}: timeout {timeout!r} is not a number") from None
        out.append(Instance(path.parent / row[0].strip(), path.parent / row[1].strip(), t, expected, cells))
    return out


def load_instance(onnx_path: str | os.PathLike[str], vnnlib_path: str | os.PathLike[str],
                  batch_size: int = 1) -> tuple[Graph, Property]:
    """Load a network and its property, checking that X_i and Y_j match its input and output sizes.

    VNN-COMP numbers X_i over the network's input flattened in row-major order (per batch item),
    and Y_j over the flattened output.
    """
    graph = load_onnx(onnx_path, batch_size=batch_size)
    prop = parse_vnnlib(vnnlib_path)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise VnnlibError(f"{onnx_path}: a VNN-COMP network has one input and one output, this one has "
                          f"{len(graph.inputs)} and {len(graph.outputs)}")
    n_in = size(graph.inputs[0].shape) // batch_size
    n_out = size(graph.values[graph.outputs[0]].shape) // batch_size
    if (n_in, n_out) != (prop.n_inputs, prop.n_outputs):
        raise VnnlibError(f"{vnnlib_path}: declares {prop.n_inputs} inputs and {prop.n_outputs} outputs "
                          f"but {Path(onnx_path).name} has {n_in} and {n_out}")
    return graph, prop
