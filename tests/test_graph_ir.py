"""The graph IR: shape inference errors, exact JSON round trip, exact evaluation."""

import mpmath
import numpy as np
import pytest

from torchlean.runtime.execute import run_graph
from torchlean.spec import Graph, GraphError, Node, Value
from torchlean.spec.exact import evaluate


def _mlp(rng):
    return Graph(
        inputs=[Value("x", (1, 3), "float32")],
        constants={
            "w1": rng.standard_normal((3, 4)).astype(np.float32),
            "b1": rng.standard_normal((4,)).astype(np.float32),
            "w2": rng.standard_normal((4, 2)).astype(np.float32),
        },
        nodes=[
            Node("matmul", ["x", "w1"], "h0"),
            Node("add", ["h0", "b1"], "h1"),
            Node("tanh", ["h1"], "h2"),
            Node("matmul", ["h2", "w2"], "y"),
        ],
        outputs=["y"],
    ).check()


def test_shape_error_names_the_node_and_shapes():
    g = _mlp(np.random.default_rng(0))
    g.nodes[3] = Node("matmul", ["h2", "w1"], "y")
    with pytest.raises(GraphError, match=r"node 3 \(matmul -> 'y'\).*\(1, 4\) @ \(3, 4\)"):
        g.check()


def test_undefined_input_is_named():
    g = _mlp(np.random.default_rng(0))
    g.nodes[0] = Node("matmul", ["x", "nope"], "h0")
    with pytest.raises(GraphError, match="'nope' is not defined"):
        g.check()


def test_json_round_trip_is_exact():
    g = _mlp(np.random.default_rng(1))
    h = Graph.from_json(g.to_json())
    assert h.fingerprint() == g.fingerprint()
    for k in g.constants:
        assert g.constants[k].tobytes() == h.constants[k].tobytes()
    x = {"x": np.random.default_rng(2).standard_normal((1, 3)).astype(np.float32)}
    assert run_graph(g, x)[0].tobytes() == run_graph(h, x)[0].tobytes()


def test_malformed_json_is_a_graph_error():
    with pytest.raises(GraphError):
        Graph.from_json('{"format": "torchlean-ir", "version": 1}')
    with pytest.raises(GraphError):
        Graph.from_json("not json")


def test_exact_evaluation_matches_direct_mpmath():
    rng = np.random.default_rng(3)
    g = _mlp(rng)
    x = rng.standard_normal((1, 3)).astype(np.float32)
    (y,) = evaluate(g, {"x": x}, digits=50)
    with mpmath.workdps(60):
        c = {k: [[mpmath.mpf(float(v)) for v in row] for row in np.atleast_2d(a)]
             for k, a in g.constants.items()}
        xs = [mpmath.mpf(float(v)) for v in x[0]]
        h = [mpmath.tanh(sum(xs[i] * c["w1"][i][j] for i in range(3)) + c["b1"][0][j]) for j in range(4)]
        want = [sum(h[j] * c["w2"][j][k] for j in range(4)) for k in range(2)]
        for k in range(2):
            assert abs(y[0, k] - want[k]) < mpmath.mpf(10) ** -45
    # and the float32 runtime is close to the exact value
    got = run_graph(g, {"x": x})[0]
    np.testing.assert_allclose(got[0], [float(v) for v in y[0]], rtol=1e-5)
