"""Helpers of the rounding-error certificates: exact weight encoding, the runtime's own float run,
and the floats column of the coverage matrix.

The error analysis itself walks the graph IR in the trusted checker (``certificates/errorbound.py``:
one entry per runtime primitive, ranges from the bound table); nothing here lowers a graph any more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..certificates.bound_graph import Unsupported
from ..certificates.errorbound import ASSUMES
from ..runtime.execute import run_graph
from ..spec.graph import Graph

#: The rounding-error entry of each primitive (the floats column of
#: ``python -m torchlean.proofs show --coverage``): the kernel assumption it rests on.
ROUNDING_RULES: dict[str, str] = dict(ASSUMES)

#: A graph use the error analysis does not cover (the checker's ``Unsupported``; one line).
LoweringError = Unsupported


def run_float(graph: Graph, x: np.ndarray, dtype: Any) -> np.ndarray:
    """The runtime's own result on a batch of points (one graph call per point: batch size 1)."""
    name = graph.inputs[0].name
    shape = graph.inputs[0].shape
    return np.stack([np.asarray(run_graph(graph, {name: xi.reshape(shape)}, dtype=dtype)[0]).reshape(-1)
                     for xi in x])
