"""The fast rounding-error column's rows for a transformer's and a recurrent net's nodes
(h-fasttf): products of two data operands (``fast_prods``: elementwise mul, numpy matmul with
broadcast batch axes, constant-only products). Each graph: both columns on one statement (every
fast step at least the exact one, ``fast_column.both_columns``), the fast epsilon above sampled
float32 / float16 / bfloat16 runs, and a shrunk epsilon rejected."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from fast_column import both_columns, covers_float_runs, rejected, shrunk_epsilon, worst_ratio

from torchlean.certificates import fast_errors as fe
from torchlean.floats.errorbound import bound_certificate
from torchlean.spec.graph import Graph, Node, Value

Q = Fraction
RNG = np.random.default_rng(3)
W = RNG.normal(0, 0.6, (6, 8)).astype(np.float32)


def _graph(tail: list[Node], out: str, extra: dict | None = None) -> Graph:
    """x (1, 6) -> matmul W (6, 8) as "a", tanh "t", sigmoid "s" (two data values with errors),
    then ``tail``."""
    nodes = [Node("matmul", ["x", "W"], "a", {}), Node("tanh", ["a"], "t", {}),
             Node("sigmoid", ["a"], "s", {})] + tail
    return Graph([Value("x", (1, 6), "float32")], {"W": W, **(extra or {})}, nodes, [out]).check()


GRAPHS = {
    # an LSTM cell's c = f c + i g: gate times gate, a square, and a constant times data (left)
    "mul": _graph([Node("mul", ["t", "s"], "p", {}), Node("mul", ["p", "p"], "q", {}),
                   Node("mul", ["K", "q"], "y", {})], "y",
                  {"K": RNG.normal(0, 2, (1, 8)).astype(np.float32)}),
    # attention's scores q k^T: (2, 4) @ (4, 2), both operands from the input
    "matmul": _graph([Node("reshape", ["t"], "r", {"shape": (2, 4)}),
                      Node("reshape", ["s"], "u", {"shape": (2, 4)}),
                      Node("transpose", ["u"], "v", {"axes": (1, 0)}),
                      Node("matmul", ["r", "v"], "y", {})], "y"),
    # batched heads (1, 2, 2, 2) @ (1, 2, 2, 2), and a batch axis broadcast (2, 2) @ (1, 2, 2, 2)
    "batched": _graph([Node("reshape", ["t"], "r", {"shape": (1, 2, 2, 2)}),
                       Node("reshape", ["s"], "u", {"shape": (1, 2, 2, 2)}),
                       Node("matmul", ["r", "u"], "m", {}),
                       Node("slice", ["t"], "h", {"index": [(0, 1, 1), (0, 4, 1)]}),
                       Node("reshape", ["h"], "hh", {"shape": (2, 2)}),
                       Node("matmul", ["hh", "m"], "y", {})], "y"),
    # a recurrent net's h0 @ W_hh: constants only (the float work is tracked), then data added
    "const": _graph([Node("matmul", ["H", "V"], "c", {}), Node("add", ["c", "t"], "y", {})], "y",
                    {"H": RNG.normal(0, 1, (1, 3)).astype(np.float32),
                     "V": RNG.normal(0, 1, (3, 8)).astype(np.float32)}),
    # the selections by a constant key: a causal-style mask (bool, broadcast), gather and an
    # embedding lookup of a data table (int64 indices, repeated)
    "where": _graph([Node("reshape", ["t"], "r", {"shape": (2, 4)}),
                     Node("where", ["M", "r", "F"], "c", {}), Node("add", ["c", "r"], "y", {})], "y",
                    {"M": np.array([[True, False, True, True], [False, False, True, False]]),
                     "F": np.array(-0.3, np.float32)}),
    "gather": _graph([Node("reshape", ["t"], "r", {"shape": (2, 4)}),
                      Node("gather", ["r", "I"], "g", {"axis": 1}),
                      Node("reshape", ["s"], "u", {"shape": (4, 2)}),
                      Node("embedding", ["u", "J"], "e", {}),
                      Node("reshape", ["e"], "y", {"shape": (2, 3)}),
                      Node("concat", ["g", "y"], "z", {"axis": 1})], "z",
                     {"I": np.array([[3, 0, 0], [1, 2, 3]]), "J": np.array([[2, 0, 2]])}),
    # maximum / minimum, one operand broadcast (the exact column's row takes data operands only)
    "maximum": _graph([Node("maximum", ["t", "s"], "m", {}),
                       Node("reshape", ["s"], "r", {"shape": (2, 4)}),
                       Node("slice", ["t"], "h", {"index": [(0, 1, 1), (2, 6, 1)]}),
                       Node("minimum", ["r", "h"], "k", {}),
                       Node("reshape", ["k"], "kk", {"shape": (1, 8)}),
                       Node("add", ["m", "kk"], "y", {})], "y"),
    # pow with integer exponents (a square, a cube), a negative one and 1/2 on a positive range
    "pow": _graph([Node("pow", ["t"], "p", {"exponent": 2}), Node("pow", ["t"], "q", {"exponent": 3}),
                   Node("add", ["s", "One"], "s1", {}), Node("pow", ["s1"], "r", {"exponent": -1}),
                   Node("pow", ["s1"], "h", {"exponent": 0.5}), Node("add", ["p", "q"], "pq", {}),
                   Node("add", ["pq", "r"], "pqr", {}), Node("add", ["pqr", "h"], "y", {})], "y",
                  {"One": np.array(1.5, np.float32)}),
}
BOX = [(Q(-1), Q(1))] * 6
FLOATS = [("binary32", np.float32), ("binary16", np.float16), ("bfloat16", ml_dtypes.bfloat16)]


def test_supported():
    for g in GRAPHS.values():
        assert fe.supported(g.to_dict()) is None
    new = {"mul", "matmul", "where", "gather", "embedding", "maximum", "minimum", "pow"}
    assert new <= {n.op for g in GRAPHS.values() for n in g.nodes} and new <= set(fe.ROWS)


def test_refused():
    """A data condition or index stays refused; an integer constant read as data is a row since
    session 35 (its values must be the format's: ``test_fast_errors_step4.py``)."""
    g = _graph([Node("reshape", ["t"], "r", {"shape": (2, 4)}),
                Node("where", ["r", "r", "F"], "y", {})], "y", {"F": np.array(0.0, np.float32)})
    assert "where: a constant condition" in fe.supported(g.to_dict())
    g = _graph([Node("add", ["t", "I"], "y", {})], "y", {"I": np.arange(8)})
    assert fe.supported(g.to_dict()) is None


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("fmt", ["binary32", "binary16", "bfloat16"])
def test_fast_no_tighter_than_exact(name, fmt):
    """The same rule in both columns: fast >= exact everywhere, and not much looser."""
    worst = worst_ratio(*both_columns(GRAPHS[name], BOX, fmt))
    assert worst < 4, worst


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("fmt,dtype", FLOATS)
def test_covers_float_runs(name, fmt, dtype):
    covers_float_runs(GRAPHS[name], BOX, fmt, dtype, n=400, seed=1)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_shrunk_epsilon_rejected(name):
    cert = bound_certificate(GRAPHS[name], BOX, "binary32", column="fast")
    rejected(shrunk_epsilon(cert, Q(9, 10)), "epsilon")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_cells(kind):
    """The zoo's forecaster (hidden 4, 3 steps, a ±0.05 box): every node now has a fast row. LSTM:
    fast >= exact on every step. GRU: its first step's gate times h1 reads an operand with a point
    range (computed from the constant h0 alone) that the exact column treats as a weight and
    charges twice (``_linear``'s extra), so there the fast product is up to ~8% tighter (sound:
    ``Ctx.mul``'s identity); both: the fast epsilon above sampled float32 runs."""
    import torchlean as tl
    from torchlean.runtime.tensor import tensor
    from torchlean.runtime.trace import trace
    from torchlean.zoo.sequence import Forecaster

    tl.manual_seed(0)
    net = Forecaster(kind, 4)
    net.eval()
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 2)).astype(np.float32)
    g = trace(net, tensor(x))
    box = [(Q(float(v)) - Q(1, 20), Q(float(v)) + Q(1, 20)) for v in x.ravel()]
    assert fe.supported(g.to_dict()) is None
    if kind == "lstm":
        assert worst_ratio(*both_columns(g, box, "binary32")) < 4
    covers_float_runs(g, box, "binary32", np.float32, n=400, seed=1)
