"""Audit of the fast rounding-error column's h-fastln rows (layer_norm, softmax, log_softmax read
back from the exact column's entry, ``fast_norms``; -inf mask placeholders; the exact-IBP clip):
each attack a test. Those that found a hole fail on h-fastln's code (f7cca4e) and pass on the fix;
the others assert the checker's right behaviour (ε above adversarially searched float runs, a
forged certificate rejected, a -inf refused where it has no value).

Hole 1 (``test_value_named_like_a_variance``): the fast column kept each layer_norm row's
var + eps forms under the key ``name + "#var"`` in the same dict as the IR's values, and IR names
are free strings: a node named "z#var" next to a layer_norm "z" got z's variance ranges (in
[1e-5, 1]) instead of its own (~1000), so its rounding error was charged on magnitude 1: ε 1.2e-7
accepted where a float32 run errs by 3.05e-5. The key is now the tuple (name, "var").
"""

from __future__ import annotations

import copy
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from fast_column import both_columns, covers_float_runs, rejected, shrunk_epsilon, worst_ratio

from torchlean.certificates import check
from torchlean.certificates.core import Rejected, digest
from torchlean.certificates.errorbound import model_id, propagate
from torchlean.floats.errorbound import bound_certificate, epsilons, observed_error, run_float, searched_error, statement
from torchlean.spec.graph import Graph, Node, Value

Q = Fraction


def _covers(g: Graph, box: list, fmt: str, dtype, n: int = 300, seed: int = 0) -> list[float]:
    """A fast-column certificate is accepted and its ε covers ``n`` sampled ``dtype`` runs (plus
    the float64 reference's certified error); returns ε."""
    cert = bound_certificate(g, box, fmt, column="fast")
    assert cert["statement"]["column"] == "fast"
    v = check(cert)
    assert v.ok, v.reason
    eps = np.array([float(e) for e in epsilons(cert)])
    obs = observed_error(g, box, n=n, dtype=dtype, seed=seed)
    assert np.all(obs.max_error + obs.reference_error <= eps), (obs.max_error, eps)
    return eps.tolist()


def test_value_named_like_a_variance():
    """Hole 1: a node named "z#var" (any string is an IR name) next to layer_norm "z": before the
    fix it read z's variance ranges, ε 1.19e-7 against a float32 error of 3.05e-5."""
    c = {"lw": np.ones(2, np.float32), "lb": np.zeros(2, np.float32),
         "W": np.array([[1, 0], [0, 1], [0, 0], [0, 0]], np.float32),
         "S": np.array([[1000.0, 1000.0]], np.float32)}
    nodes = [Node("reshape", ["x"], "r", {"shape": (2, 2)}),
             Node("layer_norm", ["r", "lw", "lb"], "z", {"normalized_ndim": 1, "eps": 1e-5}),
             Node("matmul", ["x", "W"], "h", {}), Node("add", ["h", "S"], "z#var", {})]
    g = Graph([Value("x", (1, 4), "float32")], c, nodes, ["z#var"]).check()
    box = [(Q(-1), Q(1))] * 4
    # one float32 run by hand: x0 = 2^-20 is lost in 1000 + x0 (ulp(1000) = 2^-14)
    x = np.array([[2.0 ** -20, 0, 0, 0]], np.float32)
    err = abs(Q(float(run_float(g, x, np.float32).ravel()[0])) - (Q(1000) + Q(2) ** -20))
    eps = _covers(g, box, "binary32", np.float32, n=200)
    assert err <= Q(eps[0]) and err == Q(2) ** -20


def _ln_run(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """The runtime's layer_norm kernel (``rules_nn.layer_norm``) in x's dtype, over the last axis."""
    from torchlean.runtime.rules_nn import _ln_stats

    _, _, xc, rstd = _ln_stats(np, x, 1, eps)
    return xc * rstd * w + b


@pytest.mark.parametrize("column", ["fast", "exact"])
def test_layer_norm_weight_not_of_the_normalised_shape(column):
    """Hole 2 (both columns, the shared entry): a forged IR whose layer_norm weight is (2, n) on x
    (2, n): ``lower`` read it per row (w[r, i], as the runtime broadcasts it) but ``_layer_norm``
    as w[i] for every row, so row 1 (weight 1000) was certified with row 0's 1e-3: ε 2.7e-7,
    a float32 run errs by 6e-4. ``lower`` now requires the spec's shapes (both columns refuse)."""
    import base64

    n = 4
    g = Graph([Value("x", (2, n), "float32")], {"lw": np.ones(n, np.float32), "lb": np.zeros(n, np.float32)},
              [Node("layer_norm", ["x", "lw", "lb"], "y", {"normalized_ndim": 1, "eps": 1e-5})],
              ["y"]).check()
    st = statement(g, [(Q(-1), Q(1))] * (2 * n), "binary32", ranges="fast", column=column)
    W = np.array([[1e-3] * n, [1000.0] * n], np.float32)
    st["graph"]["constants"]["lw"] = {"dtype": "float32", "shape": [2, n],
                                      "data": base64.b64encode(W.astype("<f4").tobytes()).decode()}
    st["model"] = model_id(st["graph"])
    rng = np.random.default_rng(0)
    xs = rng.uniform(-1, 1, (500, 2, n)).astype(np.float32)
    b = np.zeros(n, np.float32)
    err = max(np.abs(_ln_run(x, W, b, 1e-5).astype(np.float64) - _ln_run(x.astype(np.float64), W, b, 1e-5)).max()
              for x in xs)
    assert err > 1e-4  # (the float64 run's own error: ~1e-12 here)
    try:
        eps = propagate(st)[-1]
    except Rejected:  # (``Unsupported`` is a ValueError: a malformed statement, refused by check)
        return
    except ValueError as e:
        assert "normalized shape" in str(e)
        return
    assert min(eps) >= err, (float(min(eps)), err)
