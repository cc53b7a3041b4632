"""An IR document (docs/ir-json.md) written by hand, as a user's JSON file would be: no
``Graph.check`` on the way (the tests that use it feed documents the checker must check itself)."""

from __future__ import annotations

from typing import Any

import numpy as np

from torchlean.spec.graph import encode_array


def ir_doc(inputs: Any, consts: dict[str, Any], nodes: Any, outputs: list[str]) -> dict[str, Any]:
    """inputs [(name, shape)] (float64), consts {name: array}, nodes [(op, inputs, output, attrs)]."""
    return {"format": "torchlean-ir", "version": 1,
            "inputs": [{"name": n, "shape": list(s), "dtype": "float64"} for n, s in inputs],
            "constants": {k: encode_array(np.asarray(v)) for k, v in consts.items()},
            "nodes": [{"op": op, "inputs": list(i), "output": o, "attrs": a} for op, i, o, a in nodes],
            "outputs": outputs}
