"""Counterexamples that are no float32 point (``verify.exact_point``): ties whose only witness is an
exact box end (a decimal such as 0.1) or a ReLU kink (a rational such as 1/3) must be answered sat
with that exact point, the certificate must pass ``check``, and the CLI must say that the point is
exact (onnxruntime, fed float32, evaluates another point, where the property may hold).

References here are independent of torchlean: the networks are built in the test (float32 weights,
small integers), their exact outputs computed by hand in Fractions, and onnxruntime runs the file.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.verify.__main__ import main

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def chain(path: Path, w1: list[list[float]], b1: list[float], w2: list[list[float]], b2: list[float]) -> Path:
    """An ONNX file X (1, n) -> Gemm -> Relu -> Gemm -> Y, weights float32 (exact integers here)."""
    n, m = len(w1[0]), len(w2)
    inits = [numpy_helper.from_array(np.array(a, np.float32), name) for a, name in
             ((w1, "W1"), (b1, "B1"), (w2, "W2"), (b2, "B2"))]
    nodes = [helper.make_node("Gemm", ["X", "W1", "B1"], ["H"], transB=1),
             helper.make_node("Relu", ["H"], ["R"]),
             helper.make_node("Gemm", ["R", "W2", "B2"], ["Y"], transB=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, n])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, m])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def exact_forward(w1, b1, w2, b2, x: list[Fraction]) -> list[Fraction]:
    h = [max(Fraction(0), sum(Fraction(w) * v for w, v in zip(row, x)) + Fraction(b))
         for row, b in zip(w1, b1)]
    return [sum(Fraction(w) * v for w, v in zip(row, h)) + Fraction(b) for row, b in zip(w2, b2)]


def is_float32(q: Fraction) -> bool:
    return Fraction(float(np.float32(float(q)))) == q


def prop(lo: list[str], hi: list[str], n_out: int, atoms: list[str]) -> str:
    t = [f"(declare-const X_{i} Real)" for i in range(len(lo))]
    t += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i, (a, b) in enumerate(zip(lo, hi)):
        t += [f"(assert (>= X_{i} {a}))", f"(assert (<= X_{i} {b}))"]
    t += [f"(assert {a})" for a in atoms]
    return "\n".join(t) + "\n"


def run(tmp: Path, net: Path, text: str, name: str, capsys) -> tuple[str, str, str, Path, Path]:
    """(verdict, stdout, stderr, certificate, property file) of the CLI on (net, text)."""
    p, c = tmp / f"{name}.vnnlib", tmp / f"{name}.json"
    p.write_text(text)
    capsys.readouterr()
    main([str(net), str(p), "--timeout", "60", "--cert", str(c)])
    got = capsys.readouterr()
    return got.out.strip().split()[0], got.out, got.err, c, p


def checked(cert: Path, net: Path, p: Path, capsys) -> bool:
    """Whether ``check --expect sat`` accepts the certificate; its stderr must label a point that is
    no float32 one (the note of ``verify``'s own output) exactly when it is one."""
    capsys.readouterr()
    ok = main(["check", str(cert), str(net), str(p), "--expect", "sat"]) == 0
    x = [Fraction(q) for q in json.loads(cert.read_text())["x"]]
    assert ("exact rational point" in capsys.readouterr().err) == (ok and not all(map(is_float32, x)))
    return ok


# |3 x - 1| as relu(3x - 1) + relu(1 - 3x): 0 only at the kink x = 1/3
ABS = ([[3.0], [-3.0]], [-1.0, 1.0], [[1.0, 1.0]], [0.0])
# |3 x0 - 1| + |3 x0 + 3 x1 - 3|: 0 only where two kinks cross, (1/3, 2/3)
CROSS = ([[3.0, 0.0], [-3.0, 0.0], [3.0, 3.0], [-3.0, -3.0]], [-1.0, 1.0, -3.0, 3.0], [[1.0, 1.0, 1.0, 1.0]],
         [0.0])
# relu(x0) + relu(x1): on [0.1, 0.7] x [0.3, 0.9] its minimum 0.4 only at the corner (0.1, 0.3)
SUM = ([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0], [[1.0, 1.0]], [0.0])


@pytest.mark.parametrize("weights,lo,hi,witness", [
    (ABS, ["0.0"], ["1.0"], [Fraction(1, 3)]),
    (CROSS, ["0.0", "0.0"], ["1.0", "1.0"], [Fraction(1, 3), Fraction(2, 3)]),
])
def test_kink_tie_is_sat_at_the_exact_kink(weights, lo, hi, witness, tmp_path, capsys):
    net = chain(tmp_path / "n.onnx", *weights)
    # the reference: the output is 0 at the witness and > 0 at every other point (a sum of |.| whose
    # zero set is that point), so no float32 point violates Y_0 <= 0; the witness is no float32 point
    assert exact_forward(*weights, witness) == [0]
    assert not all(is_float32(q) for q in witness)
    for d in (Fraction(1, 2**30), -Fraction(1, 2**30)):
        assert exact_forward(*weights, [witness[0] + d, *witness[1:]])[0] > 0
    v, out, err, cert, p = run(tmp_path, net, prop(lo, hi, 1, ["(<= Y_0 0.0)"]), "tie", capsys)
    assert v == "sat"
    x = [Fraction(q) for q in json.loads(cert.read_text())["x"]]
    assert x == witness  # the only witness, exactly
    assert checked(cert, net, p, capsys)
    assert "exact rational point" in err  # labelled: no float32 number
    # 1e-12 below the tie: no witness at all, and an unsat (checked by the CLI) is the answer
    v, *_ = run(tmp_path, net, prop(lo, hi, 1, ["(<= Y_0 -0.000000000001)"]), "below", capsys)
    assert v == "unsat"


def test_box_corner_tie_and_its_honest_label(tmp_path, capsys):
    import onnxruntime as ort

    net = chain(tmp_path / "n.onnx", *SUM)
    witness = [Fraction(1, 10), Fraction(3, 10)]
    assert exact_forward(*SUM, witness) == [Fraction(2, 5)]
    v, out, err, cert, p = run(tmp_path, net, prop(["0.1", "0.3"], ["0.7", "0.9"], 1, ["(<= Y_0 0.4)"]),
                               "corner", capsys)
    assert v == "sat"
    x = [Fraction(q) for q in json.loads(cert.read_text())["x"]]
    assert x == witness
    assert checked(cert, net, p, capsys)
    # the point is printed exactly (no float32 or float64 rounding of 0.1 and 0.3)
    assert "(X_0 0.1)" in out and "(X_1 0.3)" in out
    assert "X_0, X_1 no float32 number" in err
    # why the label: onnxruntime runs the point rounded to float32, which is no counterexample
    s = ort.InferenceSession(str(net), providers=["CPUExecutionProvider"])
    y = s.run(None, {"X": np.array([[float(q) for q in x]], np.float32)})[0].reshape(-1)
    assert Fraction(float(y[0])) > Fraction(2, 5)
    assert exact_forward(*SUM, [Fraction(float(np.float32(float(q)))) for q in x])[0] > Fraction(2, 5)


def test_float32_witness_gets_no_exact_label(tmp_path, capsys):
    """A property with float32 witnesses inside the box: the point found is a float32 one, and the
    note appears exactly when a printed X_i is no float32 number."""
    net = chain(tmp_path / "n.onnx", *SUM)
    v, out, err, cert, p = run(tmp_path, net, prop(["0.1", "0.3"], ["0.7", "0.9"], 1, ["(<= Y_0 0.6)"]),
                               "easy", capsys)
    assert v == "sat"
    x = [Fraction(q) for q in json.loads(cert.read_text())["x"]]
    assert exact_forward(*SUM, x)[0] <= Fraction(3, 5)
    assert checked(cert, net, p, capsys)
    assert ("exact rational point" in err) == (not all(is_float32(q) for q in x))


# ---------------------------------------------------------------- audit52's segment ties on ACAS Xu

@pytest.mark.parametrize("case", [1, 2, 3])
def test_acas_segment_tie_is_sat(case, tmp_path, capsys):
    """audit52's segment ties that timed out before (the exact maximum of ±Y_i over a segment of
    the box, computed in the audit's own rationals by cutting at every ReLU kink; the property
    ``±Y_i >= M`` holds only at the arg-max): now sat, at an exact point the reference confirms."""
    from test_heldout_audit52 import SEGMENTS, floor40, forward, is_dec, layers, segment_max, verify, violates
    from test_heldout_audit52 import prop as prop52

    net, p, k, (a, b), i, sgn = SEGMENTS[case]
    lay = layers(net)
    p = [Fraction(v) for v in p]
    lo, hi = list(p), list(p)
    lo[k], hi[k] = Fraction(a), Fraction(b)
    m, _ = segment_max(lay, p, k, lo[k], hi[k], i, sgn)
    m_lo = m if is_dec(m) else floor40(m)
    tie = [[(">=" if sgn > 0 else "<=", i, sgn * m_lo)]]
    v, cert, pf = verify(tmp_path, net, prop52(lo, hi, tie), "tie", capsys, timeout=60)
    assert v == "sat"
    x = [Fraction(q) for q in json.loads(cert.read_text())["x"]]
    assert all(u <= q <= w for q, u, w in zip(x, lo, hi))
    assert violates(tie, forward(lay, x))
    assert checked(cert, net, pf, capsys)


def test_wide_chain_corner_tie_is_sat(tmp_path, capsys):
    """20 inputs: the ReLU-split search (``general``), not input splitting. Σ relu(x_i) on
    [0.1, 0.7]^20 reaches 2.0 only at the corner (0.1, ..., 0.1), no float32 point; the net is
    affine on the box, so no bound can separate the tie and only the exact corner answers it."""
    n = 20
    w = ([[float(i == j) for j in range(n)] for i in range(n)], [0.0] * n, [[1.0] * n], [0.0])
    net = chain(tmp_path / "n.onnx", *w)
    corner = [Fraction(1, 10)] * n
    assert exact_forward(*w, corner) == [2]
    text = prop(["0.1"] * n, ["0.7"] * n, 1, ["(<= Y_0 2.0)"])
    v, out, err, cert, p = run(tmp_path, net, text, "wide", capsys)
    assert v == "sat"
    assert [Fraction(q) for q in json.loads(cert.read_text())["x"]] == corner
    assert checked(cert, net, p, capsys)
