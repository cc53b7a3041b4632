"""VNN-LIB parsing: every property in tests/data, exact numbers, DNF semantics, error positions."""

import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.bridge import (
    Constraint,
    VnnlibError,
    format_counterexample,
    parse_vnnlib,
    parse_vnnlib_string,
)

DATA = Path(__file__).parent / "data" / "vnncomp2021"
PROPS = sorted(DATA.glob("*/*.vnnlib"))
HEAD = "".join(f"(declare-const {v} Real)\n" for v in ("X_0", "X_1", "Y_0", "Y_1"))
BOX = "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 -1))\n(assert (<= X_1 1))\n"
BOUND = re.compile(r"\((<=|>=) X_(\d+) ([-+0-9.eE]+)\)")


def test_all_properties_are_here():
    # (at least the ten ACAS Xu / test properties and the mnistfc ones the tests copy; more are
    # added as tests need them, so the count is a floor, not an exact number)
    assert {f"prop_{i}.vnnlib" for i in range(1, 9)} <= {p.name for p in PROPS if p.parent.name == "acasxu"}
    assert {p.parent.name for p in PROPS} >= {"acasxu", "mnistfc", "test"} and len(PROPS) >= 18


@pytest.mark.parametrize("path", PROPS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_bounds_are_the_exact_numbers_of_the_file(path):
    prop = parse_vnnlib(path)
    text = path.read_text()
    declared = len(re.findall(r"declare-const X_", text)), len(re.findall(r"declare-const Y_", text))
    assert (prop.n_inputs, prop.n_outputs) == declared
    bounds = BOUND.findall(text)
    assert bounds
    for op, i, num in bounds:
        side = [r.upper_exact if op == "<=" else r.lower_exact for r in prop.regions]
        assert Fraction(num) in {s[int(i)] for s in side}  # each written bound is some box's bound
    for r in prop.regions:
        assert all(lo <= hi for lo, hi in zip(r.lower_exact, r.upper_exact))
        assert r.disjuncts and all(r.disjuncts)
        assert np.array_equal(r.lower, [float(v) for v in r.lower_exact])


def test_acas_property_1_and_its_decimal_text():
    prop = parse_vnnlib(DATA / "acasxu/prop_1.vnnlib")
    assert prop.regions[0].upper_exact[0] == Fraction(679857769, 10**9)
    assert prop.lower[4] == -0.5 and prop.upper[4] == -0.45
    (conj,) = prop.disjuncts
    assert conj == (Constraint((Fraction(-1), 0, 0, 0, 0), -Fraction("3.991125645861615")),)
    (c, d), = prop.regions[0].matrices()
    assert c.tolist() == [[-1.0, 0, 0, 0, 0]] and d.tolist() == [-3.991125645861615]


def test_acas_property_6_is_two_boxes_with_the_same_disjunction():
    prop = parse_vnnlib(DATA / "acasxu/prop_6.vnnlib")
    assert len(prop.regions) == 2
    a, b = prop.regions
    assert a.disjuncts == b.disjuncts and len(a.disjuncts) == 4
    assert a.lower_exact[1] == Fraction("0.11140846") and b.upper_exact[1] == Fraction("-0.11140846")
    # "Y_0 is not minimal": Y_j <= Y_0 for some j
    assert a.disjuncts[2] == (Constraint((Fraction(-1), 0, 0, 1, 0), Fraction(0)),)
    with pytest.raises(VnnlibError, match="2 input boxes"):
        prop.lower


def test_mnist_robustness_property():
    prop = parse_vnnlib(DATA / "mnistfc/prop_0_0.03.vnnlib")
    assert (prop.n_inputs, prop.n_outputs, len(prop.disjuncts)) == (784, 10, 9)
    assert all(len(c) == 1 and c[0].coeffs[8] == 1 for c in prop.disjuncts)  # Y_j >= Y_8


def test_inputs_inside_an_or_clause():
    prop = parse_vnnlib(DATA / "test/test_small.vnnlib")
    assert prop.lower.tolist() == [-1.0] and prop.upper.tolist() == [1.0]
    assert prop.disjuncts == ((Constraint((Fraction(-1),), Fraction(-100)),),)


def test_number_formats_and_linear_terms():
    text = HEAD + BOX.replace("(<= X_0 1)", "(<= X_0 1.5e-3)").replace("-1))", "-.25E+1))") + (
        "(assert (or (<= (+ Y_0 (* 2 Y_1)) 3) (>= (- Y_0 Y_1 1) (- 0.5)) (= Y_0 (* Y_1 -2.0))))")
    prop = parse_vnnlib_string(text)
    assert prop.upper[0] == 0.0015 and prop.regions[0].upper_exact[0] == Fraction(3, 2000)
    assert prop.regions[0].lower_exact[1] == Fraction(-5, 2)
    assert prop.disjuncts == (
        (Constraint((1, 2), 3),),
        (Constraint((-1, 1), Fraction(-1, 2)),),
        (Constraint((1, 2), 0), Constraint((-1, -2), 0)),
    )


def test_dnf_of_several_ors_and_exact_counterexample_check():
    text = HEAD + (
        "(assert (or (and (>= X_0 0) (<= X_0 1)) (and (>= X_0 2) (<= X_0 3))))\n"
        "(assert (and (>= X_1 0) (<= X_1 1)))\n"
        "(assert (or (<= Y_0 0) (<= Y_1 0)))\n(assert (or (>= Y_0 -1) (>= Y_1 5)))\n")
    prop = parse_vnnlib_string(text)
    assert len(prop.regions) == 2 and all(len(r.disjuncts) == 4 for r in prop.regions)
    assert prop.is_counterexample([2.5, 0.5], [-0.5, 7])  # second box, Y_0 <= 0 and Y_0 >= -1
    assert not prop.is_counterexample([1.5, 0.5], [-0.5, 7])  # between the boxes
    assert not prop.is_counterexample([0.5, 0.5], [1, 1])
    assert prop.is_counterexample([0.5, 1.0], [3, 0])  # Y_1 <= 0 and Y_0 >= -1
    assert "(X_1 0.5)" in format_counterexample([2.5, 0.5], [-0.5, 7]).splitlines()[2]


def test_infeasible_disjuncts_are_dropped():
    text = HEAD + BOX + "(assert (or (and (<= X_0 -1) (<= Y_0 0)) (<= Y_1 2)))"
    prop = parse_vnnlib_string(text)
    assert prop.disjuncts == ((Constraint((0, 1), 2),),)


def test_float32_box_encloses_the_exact_box():
    prop = parse_vnnlib(DATA / "acasxu/prop_1.vnnlib")
    lo, hi = prop.regions[0].float_box(np.float32, outward=True)
    assert lo.dtype == np.float32
    for a, b, ea, eb in zip(lo, hi, prop.regions[0].lower_exact, prop.regions[0].upper_exact):
        assert Fraction(float(a)) <= ea and Fraction(float(b)) >= eb
        assert Fraction(float(np.nextafter(a, np.float32(np.inf)))) > ea  # and tightly


@pytest.mark.parametrize("text,where,what", [
    (HEAD + "(assert (<= X_0 1)", "5:19", "unexpected end of file"),
    (HEAD + "(assert (<== X_0 1))", "5:10", "unexpected '<=='"),
    (HEAD + "(assert (<= X_0 1 2))", "5:19", "unexpected '2'"),
    (HEAD + "(assert (<= X_7 1))", "5:13", "X_7 is not declared"),
    (HEAD + BOX + "(assert (<= (* Y_0 Y_1) 1))", "9:13", "non-linear"),
    (HEAD + BOX + "\n  (assert (<= Y_0 X_1))", "10:11", "mixing inputs and outputs"),
    (HEAD + "(assert (<= (+ X_0 X_1) 1))", "5:9", "several inputs"),
    ("(declare-const X_0 Int)", "1:1", "only Real"),
    ("(declare-const Z_0 Real)", "1:1", "inputs are X_i"),
    ("(declare-const X_0 Real)\n(declare-const X_0 Real)", "2:1", "declared twice"),
    ("(declare-const X_0 Real)\n(frobnicate)", "2:2", "unexpected"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 1 #))", "2:19", "unexpected '#'"),
])
def test_errors_give_line_and_column(text, where, what):
    with pytest.raises(VnnlibError) as e:
        parse_vnnlib_string(text, "p.vnnlib")
    msg = str(e.value)
    assert msg.startswith(f"p.vnnlib:{where}: ") and what in msg and "\n" not in msg


def test_semantic_errors_without_a_position():
    with pytest.raises(VnnlibError, match="X_1 has no upper bound"):
        parse_vnnlib_string(HEAD + BOX.replace("(assert (<= X_1 1))", "") + "(assert (<= Y_0 1))")
    with pytest.raises(VnnlibError, match="no such file"):
        parse_vnnlib("/nonexistent.vnnlib")


def test_float_box_nearest_is_correctly_rounded():
    prop = parse_vnnlib(DATA / "mnistfc/prop_3_0.03.vnnlib")
    lo, _ = prop.regions[0].float_box(np.float32, outward=False)
    for a, exact in zip(lo[:200], prop.regions[0].lower_exact[:200]):
        err = abs(Fraction(float(a)) - exact)
        for n in (np.nextafter(a, np.float32(-1)), np.nextafter(a, np.float32(2))):
            assert err <= abs(Fraction(float(n)) - exact)


def test_disjunct_explosion_is_refused():
    ors = "".join(f"(assert (or (<= Y_0 {i}) (<= Y_1 {i})))\n" for i in range(20))
    with pytest.raises(VnnlibError, match="more than 100000 disjuncts"):
        parse_vnnlib_string(HEAD + BOX + ors)


def test_instance_lists_and_loading():
    from torchlean.bridge import load_instance, read_instances

    tests = read_instances(DATA / "test/test_instances.csv")
    assert len(tests) == 5 and tests[0].timeout == 60.0 and tests[0].expected is None
    acas = read_instances(DATA / "acasxu/expected.csv")
    assert len(acas) == 76 and {i.expected for i in acas} == {"sat", "unsat"}
    assert set(acas[0].extra) == {"nnenum_2021_s", "abcrown_2021_s"}
    for inst in tests + read_instances(DATA / "mnistfc/expected.csv") + acas[:1]:
        graph, prop = load_instance(inst.onnx, inst.vnnlib)
        assert prop.n_inputs == int(np.prod(graph.inputs[0].shape))
    with pytest.raises(VnnlibError, match="declares 5 inputs and 5 outputs but test_nano.onnx has 1 and 1"):
        load_instance(DATA / "test/test_nano.onnx", DATA / "test/test_prop.vnnlib")
