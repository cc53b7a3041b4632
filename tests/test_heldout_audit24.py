"""Audit audit24 (held out): the sat side. A ``vnn-sat`` certificate (``graph_vnn._check_sat``)
and the CLI's printed ``sat`` point must be a counterexample of the file's property for the file's
network in exact real arithmetic (TRUST_BOUNDARIES, "Verification verdicts"): strict atoms and
strict input bounds strictly, one region's box with that region's disjuncts, one disjunct wholly.
Every accepted point is re-judged here independently (Fractions on y = relu(x W), and onnxruntime);
the refusals are of points that are not counterexamples. The CLI case failed before audit24: it
printed ``float(x)`` of a checked point whose box holds no float, a point outside the box."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from fractions import Fraction as F
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.core import decimal
from torchlean.verify import table

W = ((1, 1), (-1, 1))  # y0 = relu(x0 - x1), y1 = relu(x0 + x1): exact in float32


def ref(x: list[F]) -> list[F]:
    """The network's exact outputs (independent of the checker's engine)."""
    return [max(F(0), sum(x[i] * W[i][j] for i in range(2))) for j in range(2)]


def _onnx(n_in: int = 2):
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    mk = helper.make_node
    w = np.array(W, np.float32) if n_in == 2 else np.array([[1.0]], np.float32)
    return _model([mk("MatMul", ["x", "w"], ["m"]), mk("Relu", ["m"], ["y"])], [("x", [1, n_in])], ("y",),
                  [("w", w)], 13, TensorProto.FLOAT)


def ort_y(x: list[F]) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(_onnx().SerializeToString())
    return s.run(None, {"x": np.array([[float(v) for v in x]], np.float32)})[0][0]


HEAD = "".join(f"(declare-const {v} Real)\n" for v in ("X_0", "X_1", "Y_0", "Y_1"))
BOX = "(assert (>= X_0 0.25))(assert (<= X_0 0.75))(assert (>= X_1 0.5))(assert (<= X_1 1))\n"
PROPS = {
    "le": HEAD + BOX + "(assert (<= Y_0 0))",
    "lt": HEAD + BOX + "(assert (< Y_0 0))",  # relu >= 0: no counterexample at all
    "gt": HEAD + BOX.replace("(>= X_0", "(> X_0") + "(assert (<= Y_0 0))",  # a strict input bound
    # no disjunct holds wholly at y = (0, 0.4) although an atom of each does; y = (1, 1) is one
    "disj": HEAD + "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= X_1 1))\n"
    "(assert (or (and (<= Y_0 0) (>= Y_1 3)) (and (>= Y_0 1) (<= Y_1 1))))",
    # region A: x0 in [0.8, 1], x1 in [0, 0.1], y0 <= 0; region B: x1 in [0.5, 1], y0 >= 0.25
    "regions": HEAD + "(assert (or (and (>= X_0 0.8) (<= X_0 1) (>= X_1 0) (<= X_1 0.1) (<= Y_0 0))"
    " (and (>= X_0 0) (<= X_0 1) (>= X_1 0.5) (<= X_1 1) (>= Y_0 0.25))))",
}


def truth(name: str, x: list[F]) -> bool:
    """Independently: is x a counterexample of PROPS[name] (exact, strict strictly)?"""
    y = ref(x)
    inbox = lambda lo, hi: all(a <= v <= b for a, v, b in zip(lo, x, hi))  # noqa: E731
    if name == "gt":
        return x[0] > F(1, 4) and truth("le", x)
    if name in ("le", "lt"):
        return inbox((F(1, 4), F(1, 2)), (F(3, 4), F(1))) and (y[0] <= 0 if name == "le" else y[0] < 0)
    if name == "disj":
        return inbox((0, 0), (1, 1)) and ((y[0] <= 0 and y[1] >= 3) or (y[0] >= 1 and y[1] <= 1))
    in_a, in_b = inbox((F(4, 5), 0), (1, F(1, 10))), inbox((0, F(1, 2)), (1, 1))
    return (in_a and y[0] <= 0) or (in_b and y[0] >= F(1, 4))


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit24")
    (d / "n.onnx").write_bytes(_onnx().SerializeToString())

    @functools.cache
    def load(name: str):
        (d / f"{name}.vnnlib").write_text(PROPS[name] + "\n")
        return table.load_instance(d / "n.onnx", d / f"{name}.vnnlib")

    return load


def judge(inst, name: str, xs: list) -> bool:
    """The checker's verdict on a sat certificate with x written as ``xs``; an accepted point must
    be a counterexample by the exact reference, and onnxruntime's outputs must agree (1e-6)."""
    t, s = inst(name)
    c = table.sat_cert(t, s, [F(0)] * 2)
    c["x"] = xs
    ok = check_vnn(c, t.bg, s).ok
    if ok:
        x = [decimal(v) if isinstance(v, str) else F(v) for v in xs]
        assert truth(name, x), f"accepted a non-counterexample {xs} for {name}"
        assert np.allclose(ort_y(x), [float(v) for v in ref(x)], atol=1e-6)
    return ok


ULP_BELOW = F(float(np.nextafter(0.25, 0)))


@pytest.mark.parametrize("name, xs, want", [
    ("le", ["1/2", "1/2"], True),  # the relu tie x0 - x1 = 0: y0 = 0 exactly
    ("le", ["3/4", "3/4"], True),
    ("lt", ["1/2", "1/2"], False),  # strict atom at equality
    ("lt", ["1/4", "1"], False),
    ("le", [str(ULP_BELOW), "1/2"], False),  # one float64 ulp below the box
    ("le", ["1/4", str(F(1) + F(1, 10**40))], False),  # 1e-40 above the box
    ("le", ["0.25", "0.5"], True),
    ("gt", ["0.25", "0.5"], False),  # on the strict input bound (y0 = 0 meets the output atom)
    ("gt", [str(F(1, 4) + F(1, 10**40)), "0.5"], True),
    ("le", ["25e-2", "5E-1"], True),
    ("le", ["-0", "0.5"], False),  # -0 is 0: outside [0.25, 0.75]
    ("le", ["0.5" + "0" * 900, "0.5"], True),
    ("le", ["0.2" + "9" * 900, "0.5"], True),  # just below 0.3: inside the box, y0 = 0
    ("le", ["0.24" + "9" * 900, "0.5"], False),  # just below 0.25
    ("disj", ["0.2", "0.2"], False),  # an atom of each disjunct, no disjunct wholly
    ("disj", ["1", "0"], True),  # y = (1, 1): the second disjunct
    ("regions", ["0.9", "0"], False),  # in A's box, meets only B's output constraint
    ("regions", ["1", "0.5"], True),  # in B, y0 = 0.5 >= 0.25
    ("regions", ["0.9", "0.1"], False),
])
def test_sat_points(inst, name, xs, want):
    x = [decimal(v) for v in xs]
    assert judge(inst, name, xs) == (want and truth(name, x))


@pytest.mark.parametrize("xs", [
    [0.5, 0.5], ["nan", "0.5"], ["inf", "0.5"], ["-inf", "0.5"], [True, "0.5"], ["1e999999999", "0.5"],
    ["0x1p-1", "0.5"], ["0.5", "0.5", "0.5"], ["0.5"], [None, "0.5"], ["½", "0.5"], ["1/0", "0.5"],
])
def test_malformed_points_refused(inst, xs):
    t, s = inst("le")
    c = table.sat_cert(t, s, [F(1, 2)] * 2)
    c["x"] = xs
    assert not check_vnn(c, t.bg, s).ok


def test_fingerprints(inst, tmp_path):
    """A true counterexample's certificate for another property or network is refused."""
    t, s = inst("le")
    c = table.sat_cert(t, s, [F(1, 2)] * 2)
    assert check_vnn(c, t.bg, s).ok
    t2, s2 = inst("regions")
    assert not check_vnn(c, t2.bg, s2).ok  # same network, another property
    c2 = dict(c, property=s2.digest())
    assert not check_vnn(c2, t.bg, s).ok
    from onnx import numpy_helper
    m = _onnx()
    w = np.array(W, np.float32)
    w[1, 0] = np.nextafter(w[1, 0], np.float32(0))  # one float32 ulp
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w"))
    (tmp_path / "m.onnx").write_bytes(m.SerializeToString())
    (tmp_path / "p.vnnlib").write_text(PROPS["le"] + "\n")
    t3, s3 = table.load_instance(tmp_path / "m.onnx", tmp_path / "p.vnnlib")
    assert not check_vnn(c, t3.bg, s3).ok


NARROW = {  # boxes that hold no float32 (and in the first no float64): the point is a decimal end
    "narrow": "(assert (>= X_0 0.10000000000000000001))(assert (<= X_0 0.10000000000000000002))",
    "strict": "(assert (> X_0 0.1))(assert (<= X_0 0.1000000000000000056))",  # float64(0.1) only
}


@pytest.mark.parametrize("case", sorted(NARROW))
def test_cli_prints_the_checked_point(tmp_path, case):
    """The CLI's printed X (read as exact decimals, as the property's numbers are) lies in the box
    and is a counterexample of y = relu(x) <= 1. Failed before
    audit24 (printed 0.1: outside the box, on the strict bound)."""
    (tmp_path / "n.onnx").write_bytes(_onnx(1).SerializeToString())
    (tmp_path / "p.vnnlib").write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                                       + NARROW[case] + "\n(assert (<= Y_0 1))\n")
    out = subprocess.run([sys.executable, "-m", "torchlean.verify", str(tmp_path / "n.onnx"),
                          str(tmp_path / "p.vnnlib"), "--timeout", "30", "-q"],
                         capture_output=True, text=True, timeout=120).stdout
    assert out.startswith("sat"), out
    x = decimal(re.search(r"\(X_0 ([^)]+)\)", out).group(1))
    narrow = (F(1, 10) + F(1, 10**20), F(1, 10) + F(2, 10**20))
    lo, hi = narrow if case == "narrow" else (F(1, 10), F(1000000000000000056, 10**19))
    assert (lo <= x if case == "narrow" else lo < x) and x <= hi, out
    assert max(F(0), x) <= 1


def test_exact_text_round_trips():
    from torchlean.verify.__main__ import exact_text

    for q in (F(1, 10), F(0.1), F(-3), F(0), F(-1, 2**149), F(7, 8), F(10**30 + 1, 10**31)):
        assert decimal(exact_text(q)) == q
    assert exact_text(F(1, 3)) == "(/ 1 3)"


if __name__ == "__main__":
    sys.exit(pytest.main([str(Path(__file__)), "-q"]))
