"""Audit audit26 (held out): how a property's output constraints become the objective the checker
bounds (``property._reading`` -> ``graph_vnn.objective_forms`` -> ``engine.objective``). Every
accepted unsat certificate here is of a property that is false by an independent reference (the
networks' outputs are written out by hand, in Fractions; onnxruntime agrees on the points used),
and every refused one is of a property with a counterexample (checked the same way) or of a claim
above the exact minimum. Nets: ``two`` (ONNX outputs b = 2x first, a = x + 10 second), ``dup`` (the
one tensor y = x + 0 listed twice), ``ident`` (y = x), ``relu`` (y = relu(x W))."""

from __future__ import annotations

import functools
from fractions import Fraction as F

import numpy as np
import pytest

from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.engine import objective
from torchlean.certificates.property import PropertyError, parse_property
from torchlean.verify import table

W = ((1, 1), (-1, 1))


def _nets():
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    mk, c = helper.make_node, (lambda v: np.array([[v]], np.float32))
    f = TensorProto.FLOAT
    return {
        # (node order differs from the graph's output order: Y follows the outputs, b then a)
        "two": _model([mk("Add", ["x", "ten"], ["a"]), mk("Mul", ["x", "two"], ["b"])], [("x", [1, 1])],
                      ("b", "a"), [("two", c(2.0)), ("ten", c(10.0))], 13, f),
        "dup": _model([mk("Add", ["x", "z"], ["y"])], [("x", [1, 1])], ("y", "y"), [("z", c(0.0))], 13, f),
        "ident": _model([mk("Add", ["x", "z"], ["y"])], [("x", [1, 1])], ("y",), [("z", c(0.0))], 13, f),
        "relu": _model([mk("MatMul", ["x", "w"], ["m"]), mk("Relu", ["m"], ["y"])], [("x", [1, 2])], ("y",),
                       [("w", np.array(W, np.float32))], 13, f),
    }


def ref(net: str, x: list[F]) -> list[F]:
    """Exact outputs, written from the nets' definitions (not from the checker's graph)."""
    if net == "two":
        return [2 * x[0], x[0] + 10]
    if net == "dup":
        return [x[0], x[0]]
    if net == "ident":
        return [x[0]]
    return [max(F(0), sum(x[i] * W[i][j] for i in range(2))) for j in range(2)]


def ort(net: str, x: list[F]) -> list[float]:
    import onnxruntime as rt

    s = rt.InferenceSession(_nets()[net].SerializeToString())
    outs = s.run(None, {"x": np.array([[float(v) for v in x]], np.float32)})
    return [float(v) for o in outs for v in np.ravel(o)]  # VNN-LIB's Y: the outputs in order, flattened


def head(net: str, n_out: int | None = None) -> str:
    n_in, box = (2, "(assert (>= X_0 0.25))(assert (<= X_0 0.75))(assert (>= X_1 0.5))(assert (<= X_1 1))") \
        if net == "relu" else (1, "(assert (>= X_0 (- 1)))(assert (<= X_0 (- 0.5)))")
    n_out = n_out or {"two": 2, "dup": 2, "ident": 1, "relu": 2}[net]
    return "".join(f"(declare-const X_{i} Real)" for i in range(n_in)) + \
        "".join(f"(declare-const Y_{j} Real)" for j in range(n_out)) + box


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit26")
    for k, m in _nets().items():
        (d / f"{k}.onnx").write_bytes(m.SerializeToString())

    @functools.cache
    def load(net: str, prop: str):
        p = d / f"p{abs(hash((net, prop)))}.vnnlib"
        p.write_text(head(net) + prop + "\n")
        return table.load_instance(d / f"{net}.onnx", p)

    return load


def unsat(inst, net: str, prop: str, proofs: list, mode: str) -> bool:
    t, s = inst(net, prop)
    return check_vnn(table.unsat_cert(t, s, [[["leaf", proofs]]]), t.bg, s, mode).ok


def counterexample(net: str, prop: str, x: list[F]) -> bool:
    """Independently: do the exact outputs at x satisfy ``prop``'s single disjunct (Python's own
    reading of the few atom shapes used below), with onnxruntime agreeing on the outputs?"""
    y = ref(net, x)
    assert np.allclose(ort(net, x), [float(v) for v in y], atol=1e-6)
    return CEX[prop](y)


CEX = {  # the unsafe sets of the properties below, as predicates on exact y
    "(assert (<= Y_0 1))": lambda y: y[0] <= 1,
    "(assert (<= (- Y_0 Y_1) 0))": lambda y: y[0] - y[1] <= 0,
    "(assert (<= Y_0 0))": lambda y: y[0] <= 0,
    "(assert (= Y_0 (- 0.75)))": lambda y: y[0] == F(-3, 4),
    "(assert (<= (* 1e400 Y_0) 0))": lambda y: 10**400 * y[0] <= 0,
    "(assert (<= 0 1))": lambda y: True,
}


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("net, prop, x, proofs", [
    ("two", "(assert (<= Y_0 1))", [F(-3, 4)], [[0, "1e-300"]]),  # Y_0 is b = 2x (sat); a = x + 10 is not
    ("dup", "(assert (<= (- Y_0 Y_1) 0))", [F(-3, 4)], [[0, "1e-300"]]),  # the same tensor twice: 0
    ("relu", "(assert (<= Y_0 0))", [F(1, 2), F(1, 2)], [[0, "1e-4000"]]),  # min exactly 0: not > 0
    ("ident", "(assert (= Y_0 (- 0.75)))", [F(-3, 4)], [[[0, 1], "1e-300"]]),  # the two atoms sum to 0
    ("ident", "(assert (= Y_0 (- 0.75)))", [F(-3, 4)], [[1, "1e-300"]]),
    ("relu", "(assert (<= (* 1e400 Y_0) 0))", [F(1, 2), F(1, 2)], [[0, "1e-4000"]]),
])
def test_unsat_of_sat_property_refused(inst, net, prop, x, proofs, mode):
    assert counterexample(net, prop, x)  # the reference's counterexample
    assert not unsat(inst, net, prop, proofs, mode)


def test_outputs_follow_onnx_output_order(inst):
    """Y_1 is the second ONNX output (a = x + 10 >= 9), not the first node's result: unsat of
    Y_1 <= 8.5 is true and accepted up to its exact margin; Y_0 <= 8.5 has the counterexample
    x = -1 (b = -2)."""
    prop = "(assert (<= Y_1 8.5))"
    assert unsat(inst, "two", prop, [[0, "1/2"]], "exact")  # min a - 8.5 = 1/2 at x = -1
    assert not unsat(inst, "two", prop, [[0, "0.5" + "0" * 20 + "1"]], "exact")
    assert ref("two", [F(-1)])[0] <= F(17, 2) and ort("two", [F(-1)])[:2] == [-2.0, 9.0]
    assert not unsat(inst, "two", "(assert (<= Y_0 8.5))", [[0, "1e-300"]], "exact")


def test_objective_of_a_tensor_listed_twice(inst):
    """The output y listed as Y_0 and Y_1: the row (1, -1) composes to the zero form, (1, 1) to 2y."""
    t, _ = inst("dup", "(assert (<= Y_0 1))")
    zero, twice = objective(t.bg, [[1, -1], [1, 1]])
    assert not {v: q for v, q in zero.t.items() if q} and zero.c == 0
    (q,) = [q for q in twice.t.values() if q]
    assert q == 2 and twice.c == 0


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_same_atom_twice_bound_exact(inst, mode):
    """(y <= -2) twice, y = x >= -1: the combination [0, 1] is 2(y + 2) >= 2 exactly (at x = -1).
    A claim of 2 is true (accepted exactly; the fast replay may be short of it); above 2 refused."""
    prop = "(assert (and (<= Y_0 (- 2)) (<= Y_0 (- 2))))"
    assert unsat(inst, "ident", prop, [[[0, 1], "1.9999"]], mode)
    assert unsat(inst, "ident", prop, [[[0, 1], "2"]], "exact")
    assert not unsat(inst, "ident", prop, [[[0, 1], "2.000000000000000000000000001"]], mode)
    assert not unsat(inst, "ident", prop, [[[0, 0], "1"]], mode)  # (a repeated index: malformed)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_constant_atoms(inst, mode):
    """(<= 0 1) alone leaves a disjunct of no atoms: the unsafe set is the whole box, so no unsat
    certificate may be accepted; (< 0 0) makes its case empty: nothing is unsafe."""
    t, s = inst("ident", "(assert (<= 0 1))")
    assert s.regions[0].disjuncts == ((),) and counterexample("ident", "(assert (<= 0 1))", [F(-1)])
    for p in ([0, "1"], [[0], "1"], [[], "1"], [-1, "1"]):
        assert not unsat(inst, "ident", "(assert (<= 0 1))", [p], mode)
    _, s = inst("ident", "(assert (or (< 0 0) (and (<= 1 0) (<= Y_0 0))))")
    assert all(not r.disjuncts for r in s.regions)  # the unsafe set is empty: unsat is true
    # a cancelled output term is a constant atom: 1 <= 0 is false, 0 <= 0 true (the whole box)
    assert parse_property(head("ident") + "(assert (<= (- Y_0 Y_0) (- 1)))").regions == ()
    assert parse_property(head("ident") + "(assert (<= (- Y_0 Y_0) 0))").regions[0].disjuncts == ((),)


@pytest.mark.parametrize("prop", [
    "(assert (<= X_0 Y_0))",  # mixing an input with an output: its x part would be lost
    "(assert (<= (+ Y_0 (* 2 X_0)) 0))",
    "(assert (<= Y_3 0))",  # undeclared output
    "(assert (<= (* Y_0 Y_0) 0))",
])
def test_unsupported_atoms_refused(prop):
    with pytest.raises(PropertyError):
        parse_property(head("ident") + prop)


def test_zero_input_coefficient_is_an_output_atom():
    """(* 0 X_0) adds nothing: the atom is y <= 0 exactly."""
    (r,) = parse_property(head("ident") + "(assert (<= (+ Y_0 (* 0 X_0)) 0))").regions
    assert [(t.a, t.b, t.strict) for t in r.disjuncts[0]] == [((1,), 0, False)]


def test_more_outputs_declared_than_the_net_has(inst, tmp_path):
    """Y_0..Y_2 on a 2-output net: refused (sizes differ), never bounded on a prefix."""
    from torchlean.verify.network import InputError

    (tmp_path / "n.onnx").write_bytes(_nets()["two"].SerializeToString())
    (tmp_path / "p.vnnlib").write_text(head("two", 3) + "(assert (<= Y_2 0))")
    with pytest.raises(InputError):
        table.load_instance(tmp_path / "n.onnx", tmp_path / "p.vnnlib")
    t, _ = inst("two", "(assert (<= Y_1 8.5))")
    s3 = parse_property(head("two", 3) + "(assert (<= Y_2 0))")
    assert not check_vnn(table.unsat_cert(t, s3, [[["leaf", [[0, "1"]]]]]), t.bg, s3).ok


def test_tiny_coefficients_exact(inst):
    """y0 <= -1e-400 on y0 = relu(.) >= 0: unsat is true, min of y0 + 1e-400 is 1e-400 (at x0 <= x1)."""
    prop = "(assert (<= Y_0 (- 1e-400)))"
    assert unsat(inst, "relu", prop, [[0, "1e-400"]], "exact")
    assert not unsat(inst, "relu", prop, [[0, "1.0000000001e-400"]], "exact")


def test_multi_dim_output_flattened_row_major(tmp_path):
    """y = relu(transpose(x)) on x of shape (1, 2, 2): Y = (x0, x2, x1, x3) row-major, as
    onnxruntime's output raveled. Boxes x_i in [i + 0.9, i + 1.1]: Y_1 = x2 >= 2.9, so Y_1 <= 2.5 is
    unsat with margin exactly 0.4; Y_2 = x1 <= 2.1 makes Y_2 <= 2.5 sat."""
    import onnxruntime as rt
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    mk = helper.make_node
    m = _model([mk("Transpose", ["x"], ["t"], perm=[0, 2, 1]), mk("Relu", ["t"], ["y"])], [("x", [1, 2, 2])],
               ("y",), [], 13, TensorProto.FLOAT)
    (tmp_path / "n.onnx").write_bytes(m.SerializeToString())
    x = [F(1), F(2), F(3), F(4)]
    feed = {"x": np.array([[[1, 2], [3, 4]]], np.float32)}
    y = rt.InferenceSession(m.SerializeToString()).run(None, feed)[0]
    assert [float(v) for v in np.ravel(y)] == [float(v) for v in (x[0], x[2], x[1], x[3])]
    decl = "".join(f"(declare-const X_{i} Real)(declare-const Y_{i} Real)" for i in range(4))
    box = "".join(f"(assert (>= X_{i} {i + 0.9}))(assert (<= X_{i} {i + 1.1}))" for i in range(4))

    def ok(atom: str, beta: str) -> bool:
        (tmp_path / "p.vnnlib").write_text(decl + box + atom)
        t, s = table.load_instance(tmp_path / "n.onnx", tmp_path / "p.vnnlib")
        return check_vnn(table.unsat_cert(t, s, [[["leaf", [[0, beta]]]]]), t.bg, s, "exact").ok

    assert ok("(assert (<= Y_1 2.5))", "0.4") and not ok("(assert (<= Y_1 2.5))", "0.40000000001")
    assert x[1] + F(1, 10) <= F(5, 2) and not ok("(assert (<= Y_2 2.5))", "1e-300")  # x1 = 2.1: sat
