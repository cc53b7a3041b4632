"""The fast rounding-error column's generic linear path (h-fastlin, ``fast_errors._lin``): the
selections transpose / slice / concat / broadcast_to (exact), sum ("dot") and mean ("avg"), a
selection of constants folded into a constant (the zoo CNN's transposed weight), and eval
batch_norm (``fast_errors._batch_norm``: the exact column's three steps). Each graph is
certified in fast mode; the epsilon must lie above the error of numpy float32 runs at sampled points
and box corners, each fast step must be within a factor 2 of the exact column's (the same rules),
and a shrunk step or epsilon of a fast certificate is rejected."""

from __future__ import annotations

import copy
from fractions import Fraction

import numpy as np
import pytest
from fast_column import both_columns, rejected, shrunk_epsilon

from torchlean.certificates import check
from torchlean.certificates import fast_errors as fe
from torchlean.floats.errorbound import bound_certificate, epsilons
from torchlean.floats.network import run_float
from torchlean.spec.graph import Graph, Node, Value

Q = Fraction


def _graph(tail: list[Node], out_shape_node: str, extra: dict | None = None) -> Graph:
    """x (1, 6) -> matmul W (6, 6) -> tanh -> reshape (2, 3) as "h", then ``tail``."""
    W = np.random.default_rng(1).normal(0, 0.6, (6, 6)).astype(np.float32)
    consts = {"W": W, **(extra or {})}
    nodes = [Node("matmul", ["x", "W"], "a", {}), Node("tanh", ["a"], "t", {}),
             Node("reshape", ["t"], "h", {"shape": (2, 3)})] + tail
    return Graph([Value("x", (1, 6), "float32")], consts, nodes, [out_shape_node]).check()


B = np.array([[0.1, -0.3, 0.7]], np.float32)
GRAPHS = {
    "transpose": _graph([Node("transpose", ["h"], "y", {"axes": (1, 0)})], "y"),
    "slice": _graph([Node("slice", ["h"], "y", {"index": [(0, 2, 1), (1, 3, 1)]})], "y"),
    "concat": _graph([Node("concat", ["h", "B"], "c", {"axis": 0}),
                      Node("concat", ["c", "c"], "y", {"axis": 1})], "y", {"B": B}),
    "broadcast_to": _graph([Node("reshape", ["h"], "r", {"shape": (1, 6)}),
                            Node("broadcast_to", ["r"], "y", {"shape": (3, 6)})], "y"),
    "sum": _graph([Node("sum", ["h"], "y", {"axes": (1,), "keepdims": False})], "y"),
    "mean": _graph([Node("mean", ["h"], "y", {"axes": None, "keepdims": False})], "y"),
    # eval batch norm over 2 channels (statistics far from 0 and 1: the scale and shift matter)
    "batch_norm": _graph([Node("reshape", ["h"], "r", {"shape": (1, 2, 3)}),
                          Node("batch_norm", ["r", "M", "V", "G", "Bb"], "y", {"eps": 1e-5})], "y",
                         {"M": np.array([0.3, -0.2], np.float32), "V": np.array([0.05, 2.5], np.float32),
                          "G": np.array([1.7, -0.6], np.float32), "Bb": np.array([0.25, 3.0], np.float32)}),
    # a transposed constant (folded) read by a matmul, then a sum of everything: every new row
    "folded": _graph([Node("transpose", ["W"], "WT", {"axes": (1, 0)}),
                      Node("reshape", ["h"], "r", {"shape": (1, 6)}),
                      Node("matmul", ["r", "WT"], "m", {}),
                      Node("sum", ["m"], "y", {"axes": None, "keepdims": True})], "y"),
}
BOX = [(Q(-1), Q(1))] * 6


def _corners_and_samples(n: int = 400) -> np.ndarray:
    x = np.random.default_rng(0).uniform(-1, 1, (n, 6)).astype(np.float32)
    x[:2] = [[-1] * 6, [1] * 6]
    return x


def test_every_linear_row_is_exercised():
    keyed = {"where", "gather", "embedding"}  # (h-fasttf's keyed selections: test_fast_errors_tf.py)
    assert {n.op for g in GRAPHS.values() for n in g.nodes} >= set(fe.LIN) - keyed | {"batch_norm"}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_certified_above_float32_runs(name):
    g = GRAPHS[name]
    assert fe.supported(g.to_dict()) is None
    cert = bound_certificate(g, BOX, "binary32", ranges="fast", column="fast")
    assert cert["statement"]["column"] == "fast"
    assert check(cert).ok
    eps = np.array([float(e) for e in epsilons(cert)])
    x = _corners_and_samples()
    err = np.abs(run_float(g, x, np.float32).astype(np.float64)
                 - run_float(g, x.astype(np.float64), np.float64))
    assert err.max() > 0
    assert (err.reshape(len(x), -1) <= eps).all()


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_fast_steps_near_the_exact_column(name):
    """Same rules, floats outward: each step at least the exact column's and within a factor 2."""
    fast, exact = both_columns(GRAPHS[name], BOX, "binary32")
    for f, e in zip(fast, exact):
        assert all(a <= 2 * b + Q(1, 10**30) for a, b in zip(f, e))


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_fast_steps_above_the_exact_column_in_binary16(name):
    """In binary16 the constants have cast errors (the fast column's u|w| + eta is coarser than the
    exact |fl(w) - w|): no factor, but never below the exact column's step."""
    both_columns(GRAPHS[name], BOX, "binary16")


@pytest.mark.parametrize("name", ["concat", "mean", "batch_norm", "folded"])
def test_shrunk_fast_step_or_epsilonrejected(name):
    cert = bound_certificate(GRAPHS[name], BOX, "binary32", ranges="fast", column="fast")
    last = len(cert["steps"]) - 2  # (the node of the new row: the last IR node)
    c = copy.deepcopy(cert)
    c["steps"][last][0] = str(Q(c["steps"][last][0]) * Q(999, 1000))
    rejected(c, "claimed error")
    rejected(shrunk_epsilon(cert, Q(999, 1000)), "epsilon")


def test_a_non_selection_is_not_folded():
    """A reduction of a constant (not a selection) is not folded into a constant: since session 35
    it is read as data (its cast errors summed, the sum's rounding charged), above float32 runs."""
    g = _graph([Node("sum", ["B"], "s", {"axes": None, "keepdims": False}),
                Node("add", ["h", "s"], "y", {})], "y", {"B": B})
    assert fe.supported(g.to_dict()) is None
    cert = bound_certificate(g, BOX, "binary32", ranges="fast", column="fast")
    assert check(cert).ok and cert["steps"][-2][0] != "0"
    eps = np.array([float(e) for e in epsilons(cert)])
    x = _corners_and_samples()
    err = np.abs(run_float(g, x, np.float32).astype(np.float64)
                 - run_float(g, x.astype(np.float64), np.float64))
    assert (err.reshape(len(x), -1) <= eps).all()
