"""Audit 3 of the fast rounding-error column (h-audit3): the function rows, the generic linear path,
eval batch_norm, the constant folding and the lowering's well-formedness checks, attacked
independently of the sessions that wrote them. Each test names the hole it closes and failed on
main before its fix, except the last, a guard that the fix keeps the zoo CNN's 2-D fold fast.
What was tried against the rows that held is listed in the branch's report."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from fast_column import rejected, shrunk_epsilon

from torchlean.certificates import check
from torchlean.certificates import fast_errors as fe
from torchlean.certificates.bound_graph import Unsupported
from torchlean.certificates.core import digest
from torchlean.certificates.errorbound import model_id, propagate
from torchlean.floats.errorbound import bound_certificate, statement
from torchlean.runtime.execute import run_graph
from torchlean.spec.graph import Graph, Node, Value

Q = Fraction

# -- 1. an IR that names a value twice ------------------------------------------------------------

K, K2 = np.array([[0.3]], np.float32), np.array([[1000.3]], np.float32)
SSA = Graph([Value("x", (1, 1), "float32")], {"K": K, "K2": K2},
            [Node("add", ["x", "K"], "h"), Node("sub", ["h", "K2"], "g")], ["g"]).check()
BOX = [(Q(1000), Q(1001))]


def _renamed(column: str, output: str) -> dict:
    """A certificate for SSA's IR with its second node writing ``output`` (a name already taken),
    the graph's output that name, steps and epsilon the fast column of main accepted for
    ``output`` = "h" (its recomputed bounds were 5.96e-8 and 1.19e-7), re-fingerprinted and
    re-digested: only the replay can refuse it."""
    st = statement(SSA, BOX, "binary32", ranges="fast", column=column)
    ir = st["graph"]
    ir["nodes"][1]["output"] = output
    ir["outputs"] = [output]
    st["model"] = model_id(ir)
    st["epsilon"] = ["2e-7"]
    return {"kind": "errorbound", "statement": st, "digest": digest(st), "steps": [["1e-7"], ["2e-7"]]}


def _max_error(g: Graph, real) -> Fraction:
    """The largest |run - real| of the runtime (float32) over x in 999.5 + k/256 (k < 256): the
    runtime runs an IR that names a value twice by overwriting, as ``lower`` did."""
    xs = np.float32(999.5) + np.arange(0, 0.5, 1 / 256, dtype=np.float32)
    run = [Q(float(run_graph(g, {"x": np.array([[x]])}, dtype=np.float32)[0][0, 0])) for x in xs]
    return max(abs(y - real(Q(float(x)))) for x, y in zip(xs, run))


def test_an_ir_rewriting_a_name_had_an_epsilon_below_its_run():
    """The hole (both columns): ``lower`` kept a name's last value only, and both columns read a
    node's ranges by its output's name. Fast: "h = x + 0.3; h = h - 1000.3" charged the first
    add's rounding on the second value's range [0, 1] (u, not u 1001) and accepted epsilon 2e-7;
    the run errs ~1.2e-5. Exact (its meet with the node's own range kept the first IR empty, so
    refused): "h = x + 0.3; t = h - 999; g = relu(t); h = x * 0.001" met the first h with
    [-1, 1], so t looked dead and g's epsilon 0 was accepted; the run errs ~1.2e-5 there too."""
    bad = Graph(SSA.inputs, SSA.constants, [Node("add", ["x", "K"], "h"), Node("sub", ["h", "K2"], "h")],
                ["h"])  # (no .check(): it refuses this IR)
    assert _max_error(bad, lambda x: x + Q(float(K[0, 0])) - Q(float(K2[0, 0]))) > 50 * Q("2e-7")
    v = check(_renamed("fast", "h"))
    assert not v.ok and "defined twice" in v.reason, v.reason
    consts = {"K": K, "K3": np.array([[999.0]], np.float32), "S": np.array([[0.001]], np.float32)}
    nodes = [Node("add", ["x", "K"], "h"), Node("sub", ["h", "K3"], "t"), Node("relu", ["t"], "g"),
             Node("mul", ["x", "S"], "h")]
    bad = Graph(SSA.inputs, consts, nodes, ["g"])
    assert _max_error(bad, lambda x: max(Q(0), x + Q(float(K[0, 0])) - 999)) > Q(1, 10**5)
    st = statement(Graph(SSA.inputs, consts, nodes[:3] + [Node("mul", ["x", "S"], "h2")], ["g"]).check(),
                   [(Q(-1000), Q(1000))], "binary32", ranges="fast", column="exact")
    st["graph"]["nodes"][3]["output"] = "h"
    st["model"], st["epsilon"] = model_id(st["graph"]), ["0"]
    cert = {"kind": "errorbound", "statement": st, "digest": digest(st),
            "steps": [["6e-8"], ["6e-5"], ["0"], ["6e-8"]]}  # (main's own steps, rounded up)
    v = check(cert)
    assert not v.ok and "defined twice" in v.reason, v.reason


@pytest.mark.parametrize("column", ["fast", "exact"])
@pytest.mark.parametrize("output", ["K", "x"])
def test_an_ir_rewriting_a_constant_or_an_input_is_refused(column, output):
    """A node writing a constant's name (the fast column skipped such a node and kept the
    constant's value and error for every later reader, while the ranges were the node's) or an
    input's name: refused by the lowering both columns share, not walked."""
    v = check(_renamed(column, output))
    assert not v.ok and "defined twice" in v.reason, v.reason
    st = _renamed(column, output)["statement"]
    with pytest.raises(Unsupported, match="defined twice"):
        propagate(st)


# -- 2. a matmul reading a folded constant of rank 3 ------------------------------------------------

W = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
W3 = np.random.default_rng(1).standard_normal((2, 3, 2)).astype(np.float32)
FOLDS = {
    "broadcast": Graph([Value("x", (1, 3), "float32")], {"W": W},
                       [Node("broadcast_to", ["W"], "w", {"shape": (2, 3, 2)}),
                        Node("matmul", ["x", "w"], "y")], ["y"]).check(),
    "transpose": Graph([Value("x", (3, 1), "float32")], {"W3": W3},
                       [Node("transpose", ["W3"], "w", {"axes": (0, 2, 1)}), Node("matmul", ["w", "x"], "y")],
                       ["y"]).check(),
}


@pytest.mark.parametrize("name", sorted(FOLDS))
def test_matmul_on_a_rank3_fold_gets_a_certificate(name):
    """The hole: ``supported`` took every folded constant a matmul reads for 2-D, so the generator
    chose the fast column, whose ``_matmul_map`` then refused ("matmul: a scalar operand"): no
    certificate for a graph the exact column certifies (as it does the same matmul on an IR
    constant of rank 3). Now a matmul whose constant operand is not one 2-D weight takes the fast
    column's product row (``fast_prods``), and its certificate is accepted; a shrunk one is not."""
    g = FOLDS[name]
    assert fe.supported(g.to_dict()) is None
    cert = bound_certificate(g, [(Q(-1), Q(1))] * 3, "binary32", ranges="fast")
    assert cert["statement"]["column"] == "fast" and check(cert).ok
    rejected(shrunk_epsilon(cert, Q(1, 2)))


def test_a_rank2_fold_still_takes_the_fast_column():
    """A guard (passes on main too): the zoo CNN's case (a transposed 2-D weight) keeps its fast
    row after the fix, and a shrunk epsilon of its certificate is still rejected."""
    g = Graph([Value("x", (3, 1), "float32")], {"W": W},
              [Node("transpose", ["W"], "w", {"axes": (1, 0)}), Node("matmul", ["w", "x"], "y")],
              ["y"]).check()
    assert fe.supported(g.to_dict()) is None
    cert = bound_certificate(g, [(Q(-1), Q(1))] * 3, "binary32", ranges="fast")
    assert cert["statement"]["column"] == "fast" and check(cert).ok
    rejected(shrunk_epsilon(cert, Q(1, 2)))
