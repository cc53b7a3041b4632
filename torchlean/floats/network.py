"""Helpers of the rounding-error certificates: exact weight encoding, the runtime's own float run,
and the floats column of the coverage matrix.

The error analysis itself walks the graph IR in the trusted checker (``certificates/errorbound.py``:
one entry per runtime primitive, ranges from the bound table); nothing here lowers a graph any more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..certificates.bound_graph import Unsupported
from ..certificates.errorbound import LINEAR
from ..runtime.execute import run_graph
from ..spec.graph import Graph

_LIB = "within kernel_ulps ulp"
#: The kernel assumption of each entry of the checker's error column (``certificates/errorbound.py``
#: ``COLUMN``; the floats column of ``python -m torchlean.proofs show --coverage``).
ROUNDING_RULES: dict[str, str] = {
    **{k: {"exact": "exact in floats", "one": "one correctly rounded operation",
           "dot": "sum of products in any order, each rounded (gamma_k), FMA allowed",
           "avg": "sum in any order (gamma_k), then one rounded division by n"}[v]
       for k, v in LINEAR.items()},
    "relu": "exact in floats", "abs": "exact in floats", "leaky_relu": "x*slope correctly rounded",
    **dict.fromkeys(("exp", "log", "sqrt", "tanh", "pow"), f"library kernel {_LIB}"),
    "erf": f"C library erf (math.erf) in binary64, rounded to the format, {_LIB}",
    "sigmoid": f"1/(1+exp(-x)), exp {_LIB}", "silu": f"x/(1+exp(-x)), exp {_LIB}",
    "softplus": f"max(x,0)+log1p(exp(-|x|)), exp/log1p {_LIB}", "div": "one correctly rounded division",
    "gelu": f"0.5*x*(1+tanh(C*(x+A*x^3))), tanh {_LIB}, C and A cast to the format",
    "softmax": f"exp(x-max)/sum (sum in any order), exp {_LIB}; also bounded as ratios (errornorm)",
    "log_softmax": f"(x-max)-log(sum(exp(x-max))), {_LIB}",
    "layer_norm": f"mean, centre, mean of squares (sums in any order), 1/sqrt(var+eps), scale, shift; sqrt "
                  f"{_LIB}; the normalisation bounded as one step (errornorm)",
    "batch_norm": f"(x-mean)*(1/sqrt(var+eps)*w)+b; sqrt {_LIB}",
    "cast": "exact where the target holds the format's values; else one rounding to the target "
            "(and one back to the format unless it holds the target's)",
}

#: A graph use the error analysis does not cover (the checker's ``Unsupported``; one line).
LoweringError = Unsupported


def run_float(graph: Graph, x: np.ndarray, dtype: Any) -> np.ndarray:
    """The runtime's own result on a batch of points (one graph call per point: batch size 1), a
    row per point holding every output of the graph flattened in order (the property's Y_j, as the
    bound graph and the error bound number them; audit28: only the first output was returned, so
    ``--float32``'s candidate filter on a two-output network multiplied mismatched shapes and the
    CLI answered "no float32 error bound", exit 2, where a binary32 counterexample exists)."""
    name = graph.inputs[0].name
    shape = graph.inputs[0].shape

    def row(xi: np.ndarray) -> np.ndarray:
        outs = run_graph(graph, {name: xi.reshape(shape)}, dtype=dtype)
        return np.concatenate([np.asarray(o).reshape(-1) for o in outs])

    return np.stack([row(xi) for xi in x])
