"""VNN-COMP benchmark files: instance lists (CSV) and loading one (network, property) pair.

Two CSV shapes occur: the competition's ``instances.csv`` (no header: onnx, vnnlib, timeout) and
result tables with a header row whose first two columns are ``onnx,vnnlib`` (``expected.csv``:
expected verdict and published tool times). Paths are resolved against the CSV's folder.
"""

from __future__ import annotations

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
    """The instances listed in a VNN-COMP CSV (either shape above), validated by the one reader
    the benchmark runner uses (``verify.runner.read_instances``: UTF-8, commas, onnx,vnnlib
    columns, finite positive timeouts, known verdicts); VnnlibError (one line) otherwise."""
    from ..verify.network import InputError
    from ..verify.runner import read_instances as read_rows

    path = Path(path)
    try:
        rows = read_rows(path)
    except InputError as e:
        raise VnnlibError(str(e)) from None
    out = []
    for row in rows:
        cells = dict(row)
        onnx, vnnlib = cells.pop("onnx"), cells.pop("vnnlib")
        timeout = cells.pop("timeout", "") or None
        expected = cells.pop("expected", "") or None
        out.append(Instance(path.parent / onnx, path.parent / vnnlib,
                            float(timeout) if timeout else None, expected, cells))
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
