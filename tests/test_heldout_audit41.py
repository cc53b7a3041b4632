"""Audit audit41: the numbers torchlean prints or returns against the numbers its checker checked.

The hole (found and fixed): every command printed its checked bounds and epsilons rounded *to
nearest* (``f"{lo:.9g}"``, ``f"{float(eps):.6e}"``, ``.3g``, ...), so about half of them claimed more
than was checked, and on the crafted instances below the printed claim is false outright:

- ``verify bounds`` of y = relu(x) on X_0 in [0.1234567896, 0.7654321004] printed
  "Y_0 in [0.12345679, 0.7654321]": y = 0.1234567896 at X_0 = 0.1234567896 lies below it (and
  0.7654321004 above);
- ``floats bound`` of y = x + 2048 on [0, 2^-13] printed epsilon "1.220703e-04" while the binary32 run
  at x = 2^-13 rounds 2048 + 2^-13 (a tie) to 2048: an error of 2^-13 = 1.220703125e-04;
- ``verify --float32`` printed "epsilon: 0.000122" and ``verify check`` "max epsilon 0.000122" (the
  trusted checker's reason) for the same network: below the error 2^-13 again;
- ``floats fpcore`` printed the bound "2.2737e-13" for x + 2048 in binary64 on [0, 2^-42]: below the
  error 2^-42 = 2.27373675e-13 at x = 2^-42;
- the zoo's epsilon line printed "<= 0.000122" for the same model, the demo's ε and summary.json
  ``float(ε)`` rounded to nearest, the PINN residual bound ``.4g``, the certified-accuracy radius
  ``:g`` (a radius printed *larger* than the one checked), the FNO / sequence boxes ``.2f`` (a box
  printed wider than the one checked).

References, independent of the checker: numpy's binary32 / Python's binary64 run at the tie point
and exact Fractions for the real value; Fraction/integer floor and ceiling for the helper; the
checker's own exact epsilons (``epsilons(cert)``) and the bound table's float bounds for "the
printed number encloses the checked one".
"""

from __future__ import annotations

import json
import math
import random
import re
from decimal import Decimal
from fractions import Fraction as F

import numpy as np
import pytest

from torchlean import _outward

EXP13 = F(1, 2**13)  # the tie: 2048 + 2^-13 is halfway between 2048 and 2048 + 2^-12 in binary32


def val(text: str) -> F:
    """A printed decimal numeral's exact value."""
    return F(Decimal(text))


def ref_round(q: F, digits: int, direction: str) -> F:
    """The nearest number of ``digits`` significant decimal digits on the ``direction`` side of q
    (integer floor/ceil: independent of ``decimal``)."""
    if q == 0:
        return F(0)
    a = abs(q)
    e = len(str(a.numerator)) - len(str(a.denominator))
    while F(10) ** e > a:
        e -= 1
    while F(10) ** (e + 1) <= a:
        e += 1
    scale = F(10) ** (e - digits + 1)
    n = q / scale
    return (math.floor(n) if direction == "down" else math.ceil(n)) * scale


def _numbers(seed: int, count: int) -> list:
    rng = random.Random(seed)
    out: list = [F(0), F(1), F(-1), F(1, 3), F(-2, 3), F(123456789, 10**9), F(10**20), 0.1, 0.3, -0.3,
                 2.0**-1074, 1.7976931348623157e308, -5e-324, np.float32(0.1), np.float64(1 / 3), 7, -12,
                 F(2**-1100), F(3) * F(2) ** 1100, F(1234567896, 10**10), F(7654321004, 10**10),
                 np.int64(2**60 + 1)]
    for _ in range(count):
        kind = rng.randrange(4)
        if kind == 0:  # wide rationals, far outside binary64 too
            q = F(rng.randrange(1, 10**30), rng.randrange(1, 10**30)) * F(2) ** rng.randrange(-1200, 1200)
        elif kind == 1:  # floats
            q = rng.uniform(-1, 1) * 10.0 ** rng.randrange(-320, 300)
        elif kind == 2:  # decimals with a few digits (exact at enough digits)
            q = F(rng.randrange(-10**6, 10**6), 10 ** rng.randrange(0, 12))
        else:  # just off a power of ten or a float
            b = F(10) ** rng.randrange(-30, 30)
            q = b + rng.choice((1, -1)) * b / 10 ** rng.randrange(8, 25)
        out.append(q if rng.random() < 0.8 else -q if isinstance(q, F) else q)
    return out


# --- the helper against an independent floor/ceil -------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_outward_text_is_the_nearest_outward_decimal(seed):
    rng = random.Random(seed)
    for q in _numbers(seed, 400):
        exact = F(int(q)) if isinstance(q, (int, np.integer)) else F(q) if isinstance(q, F) else F(float(q))
        for direction in ("down", "up"):
            digits, style = rng.randrange(1, 18), rng.choice("ge")
            got = _outward.text(q, direction, digits, style)
            want = ref_round(exact, digits, direction)
            assert val(got) == want, (q, direction, digits, style, got)
            assert (val(got) <= exact) if direction == "down" else (val(got) >= exact)
            if style == "e":
                assert "e" in got


def test_outward_text_spelling_and_specials():
    assert _outward.up(F(1, 8192) * (1 + F(1, 2**24)), 7, "e") == "1.220704e-04"
    assert _outward.down(F(1234567896, 10**10), 9) == "0.123456789"
    assert _outward.up(F(1234567896, 10**10), 9) == "0.12345679"
    assert _outward.down(0.03) == "0.0299999" and _outward.up(0.03) == "0.03"  # (float 0.03 < 3/100)
    assert _outward.down(0.01) == "0.01" and _outward.up(0.01) == "0.0100001"  # (float 0.01 > 1/100)
    assert _outward.up(2.0**-60, 3) == "8.68e-19" and _outward.down(-2.5, 1) == "-3"
    assert _outward.up(math.inf) == "inf" and _outward.down(-math.inf) == "-inf"
    assert _outward.up(math.nan) == "nan"
    assert _outward.up(F(3) * F(2) ** 1100, 3) == "4.08e+331"  # (past binary64: Decimal's spelling)
    with pytest.raises(ValueError):
        _outward.text(1, "nearest")


def test_float_out_and_its_json_text_stay_outward():
    # the largest float <= q can have a shortest repr above q: repr(0.3's float) = "0.3" > q
    q = F(0.3) + F(1, 2**80)
    f = _outward.float_out(q, "down")
    assert F(f) <= q and val(json.dumps(f)) <= q and f < 0.3
    for q in _numbers(7, 600):
        q = F(int(q)) if isinstance(q, (int, np.integer)) else F(q) if isinstance(q, F) else F(float(q))
        if abs(q) > F(1.7976931348623157e308):
            continue
        for direction, side in (("down", -1), ("up", 1)):
            f = _outward.float_out(q, direction)
            if math.isinf(f):  # (only at the top float, whose repr lies below it: inf is its bound)
                assert side * f > 0 and abs(q) >= F(1.7976931348623157e308) - 2**970
                continue
            assert side * F(f) >= side * q and side * val(json.dumps(f)) >= side * q
            near = float(q)  # (within two steps of the nearest float: tight, not just outward)
            assert abs(F(f) - F(near)) <= 2 * F(math.ulp(near) if near else 5e-324), (q, direction, f)


# --- verify bounds: the printed interval encloses the exact one and the checked floats ------------

def _relu_onnx(path, n_in=1):
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    mk = helper.make_node
    m = _model([mk("MatMul", ["x", "w"], ["m"]), mk("Relu", ["m"], ["y"])], [("x", [1, n_in])], ("y",),
               [("w", np.eye(n_in, dtype=np.float32))], 13, TensorProto.FLOAT)
    path.write_bytes(m.SerializeToString())


def _add_onnx(path, c=2048.0):
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    m = _model([helper.make_node("Add", ["x", "c"], ["y"])], [("x", [1, 1])], ("y",),
               [("c", np.array([[c]], np.float32))], 13, TensorProto.FLOAT)
    path.write_bytes(m.SerializeToString())


def _prop(path, lo: str, hi: str, out: str = "(assert (<= Y_0 -1))"):
    path.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                    f"(assert (>= X_0 {lo}))\n(assert (<= X_0 {hi}))\n{out}\n")


BOUND_LINE = re.compile(r"Y_0 in \[(\S+), (\S+)\]")


@pytest.fixture(scope="module")
def relu_instance(tmp_path_factory):
    d = tmp_path_factory.mktemp("a41")
    _relu_onnx(d / "id.onnx")
    _prop(d / "p.vnnlib", "0.1234567896", "0.7654321004")
    _add_onnx(d / "add.onnx")
    _prop(d / "q.vnnlib", "0", "0.0001220703125", "(assert (<= Y_0 2047.999))")
    return d


@pytest.mark.parametrize("method", ["ibp", "crown", "alpha-crown"])
def test_verify_bounds_prints_an_interval_holding_every_output(relu_instance, capsys, method):
    from torchlean.verify import table
    from torchlean.verify.__main__ import main

    d = relu_instance
    assert main(["bounds", str(d / "id.onnx"), str(d / "p.vnnlib"), "--method", method]) == 0
    lo, hi = (val(t) for t in BOUND_LINE.search(capsys.readouterr().out).groups())
    # y = relu(x) = x exactly: the outputs at the box's ends (reference: exact evaluation)
    y_min, y_max = F(1234567896, 10**10), F(7654321004, 10**10)
    assert lo <= y_min and hi >= y_max  # old: 0.12345679 > y_min, 0.7654321 < y_max
    assert y_min - lo < F(1, 10**8) and hi - y_max < F(1, 10**8)  # (and still tight)
    t, spec = table.load_instance(d / "id.onnx", d / "p.vnnlib")
    r = spec.regions[0]
    low, up = (table.alpha_bounds_box(t, r.lo, r.hi) if method == "alpha-crown"
               else table.output_bounds_box(t, r.lo, r.hi, method))
    assert lo <= F(float(low[0])) and hi >= F(float(up[0]))  # (the checked floats, enclosed)


def test_verify_bounds_upper_end_above_the_float32_tie(relu_instance, capsys):
    from torchlean.verify.__main__ import main

    d = relu_instance
    assert main(["bounds", str(d / "add.onnx"), str(d / "q.vnnlib")]) == 0
    lo, hi = (val(t) for t in BOUND_LINE.search(capsys.readouterr().out).groups())
    assert lo <= 2048 and hi >= 2048 + EXP13  # old: "2048.00012" < 2048 + 2^-13


# --- epsilons: floats bound, verify --float32, verify check, fpcore -------------------------------

def _tie_error_binary32() -> F:
    """|binary32 run - real| of x + 2048 at x = 2^-13 (numpy's float32 addition, exact real)."""
    y32 = np.float32(2048.0) + np.float32(float(EXP13))
    return abs(F(float(y32)) - (2048 + EXP13))


def test_floats_bound_epsilon_column_is_at_least_the_certified_epsilon(relu_instance, capsys):
    from torchlean.bridge.onnx import load_onnx
    from torchlean.floats.__main__ import main
    from torchlean.floats.errorbound import bound_certificate, epsilons

    d = relu_instance
    assert _tie_error_binary32() == EXP13  # the reference: the tie rounds to 2048
    assert main(["bound", str(d / "add.onnx"), "--box", "0:0.0001220703125", "--samples", "0"]) == 0
    row = re.search(r"^\s+0\s+(\S+)\s*$", capsys.readouterr().out, re.M)
    printed = val(row.group(1))
    eps = epsilons(bound_certificate(load_onnx(d / "add.onnx"), [(F(0), EXP13)], "binary32"))[0]
    assert printed >= eps  # old: 1.220703e-04 < eps
    assert printed >= _tie_error_binary32()  # the printed claim holds at the tie point
    assert printed - eps < eps / 10**6  # (7 digits, rounded once)


def test_verify_float32_epsilon_and_check_line(relu_instance, capsys, tmp_path):
    from torchlean.certificates.float_vnn import epsilons
    from torchlean.verify.__main__ import main

    d = relu_instance
    cert = tmp_path / "c.json"
    assert main([str(d / "add.onnx"), str(d / "q.vnnlib"), "--float32", "--cert", str(cert)]) == 0
    got = capsys.readouterr()
    assert got.out.startswith("unsat")
    c = json.loads(cert.read_text())
    exact = max(epsilons(c["errorbound"]))
    line = re.search(r"^epsilon: (\S+)", got.err, re.M)
    assert val(line.group(1)) >= exact >= _tie_error_binary32()  # old: "epsilon: 0.000122"
    assert main(["check", str(cert), str(d / "add.onnx"), str(d / "q.vnnlib")]) == 0
    out = capsys.readouterr().out
    m = re.search(r"max epsilon (?:<= )?([0-9.e+-]+)", out)
    assert out.startswith("accepted") and m and val(m.group(1)) >= exact  # old: "max epsilon 0.000122"


def test_max_epsilons_of_a_parts_certificate():
    from torchlean.verify.float32 import max_epsilons

    def eb(*e):
        return {"errorbound": {"statement": {"epsilon": [str(x) for x in e]}}}

    cert = {"box": [["0", "1"]], "parts": {"split": [0, "1/2"], "lo": eb(F(1, 3), F(1, 5)),
                                           "hi": eb(F(1, 4), F(2, 7))}}
    assert max_epsilons(cert) == [F(1, 3), F(2, 7)]
    assert max_epsilons(eb(F(1, 9))) == [F(1, 9)]


def test_fpcore_bound_is_above_the_binary64_error(tmp_path, capsys):
    from torchlean.floats.__main__ import main

    x = 2.0**-42  # 2048 + 2^-42 is a binary64 tie: Python's float addition rounds it to 2048
    err = abs(F(2048.0 + x) - (2048 + F(x)))
    assert err == F(x)
    (tmp_path / "f.fpcore").write_text(f"(FPCore (x) :pre (<= 0 x {x!r}) (+ x 2048))\n")
    assert main(["fpcore", str(tmp_path / "f.fpcore"), "--samples", "50"]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert val(row[1]) >= err  # old: 2.2737e-13 < 2^-42


# --- the zoo's claim lines ------------------------------------------------------------------------

def test_zoo_epsilon_line_and_float32_epsilon():
    import torchlean as tl
    from torchlean.floats import bound_certificate, epsilons
    from torchlean.zoo.claims import epsilon_line, float32_epsilon

    class Add(tl.nn.Module):
        def forward(self, x):
            return x + 2048.0

    box = [(F(0), EXP13)]
    exact = epsilons(bound_certificate(tl.trace(Add().eval(), tl.zeros(1, 1)), box, "binary32"))[0]
    eps, _ = float32_epsilon(Add().eval(), np.zeros((1, 1)), box, samples=10)
    assert F(eps) >= exact and val(repr(eps)) >= exact  # (the returned float, and as JSON would write it)
    line = epsilon_line(Add().eval(), np.zeros((1, 1)), box, "x + 2048", samples=10, budget=60)
    printed = val(re.search(r"\|float32 - real\| <= (\S+) per output", line).group(1))
    assert printed >= exact >= _tie_error_binary32()  # old: "<= 0.000122"


def test_pinn_residual_line_rounds_the_proved_bound_up():
    from torchlean.zoo.pinn import ResidualBound, residual_line

    for b in (0.12345678, 0.020001, 3.14159e-5, 1.00049):
        rb = ResidualBound(b, "verified", "unsat", None, [], None, None, 1.0)
        printed = val(re.search(r"<= (\S+) for every x", residual_line(rb)).group(1))
        assert F(b) <= printed < F(b) * (1 + F(1, 10**3))  # old: 0.1235 ok, 0.02 < 0.020001


def test_certified_accuracy_radius_is_never_printed_larger():
    from torchlean.zoo.cnn import CertifyReport

    for r in (0.0123456789, 0.03, 2 / 255, 0.1 + 0.2):
        text = CertifyReport(r, ["verified"]).summary()
        printed = val(re.search(r"at eps (\S+):", text).group(1))
        assert printed <= F(r)  # old: "0.0123457" > 0.0123456789, "0.00784314" > 2/255


def test_plot_residual_label(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from torchlean import plot

    shown = []
    real_save = plot._save

    def keep(plt_, fig, out, **kw):
        shown.extend(t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts())
        return real_save(plt_, fig, out, **kw)

    plot._save = keep
    try:
        plot.plot_residual([(0.0, 1.0, -0.020001, 0.020001)], [0.0, 1.0], [0.0, 0.01], 0.020001,
                           tmp_path / "r.png")
    finally:
        plot._save = real_save
        plt.close("all")
    label = next(t for t in shown if t.startswith("certified"))
    assert val(label.split("<= ")[1]) >= F(0.020001)  # old: "<= 0.02"


# --- tl.verify.bounds: the returned float64 arrays enclose the exact interval ---------------------

@pytest.mark.parametrize("kw", [dict(method="ibp"), dict(method="crown"), dict(method="alpha-crown"),
                                dict(method="crown", exact=True), dict(method="crown", float32=True)])
def test_api_bounds_arrays_enclose_the_exact_outputs(kw):
    import torchlean as tl

    model = tl.nn.Sequential(tl.nn.Linear(1, 1)).eval()
    model[0].weight.data[...] = 1.0
    model[0].bias.data[...] = 0.0
    x, eps = np.array([[0.1234567896]]), 3e-17  # a box narrower than the float spacing at x
    b = tl.verify.bounds(model, x, eps, **kw)
    lo, hi = F(float(x[0, 0])) - F(eps), F(float(x[0, 0])) + F(eps)  # y = x: the exact output range
    assert F(float(b.lower[0, 0])) <= lo and F(float(b.upper[0, 0])) >= hi
    assert hi - F(float(b.lower[0, 0])) < F(1, 10**6) and F(float(b.upper[0, 0])) - lo < F(1, 10**6)


@pytest.mark.solver
def test_demo_epsilon_line_and_summary_at_least_the_checked_epsilon(tmp_path, capsys):
    from torchlean.__main__ import main
    from torchlean.certificates import check
    from torchlean.floats import epsilons
    from torchlean.proofs.obligation import SOURCES

    saved = dict(SOURCES)
    try:
        assert main(["demo", "--out", str(tmp_path), "--steps", "20"]) == 0
    finally:
        SOURCES.clear()
        SOURCES.update(saved)
    cert = json.loads((tmp_path / "errorbound.json").read_text())
    assert check(cert).ok
    exact = epsilons(cert)[0]
    text = (tmp_path / "summary.json").read_text()
    written = re.search(r'"epsilon": (\S+?),?\n', text).group(1)
    assert val(written) >= exact and F(json.loads(text)["epsilon"]) >= exact  # (text and float)
    printed = re.search(r"ε = (\S+)", capsys.readouterr().out).group(1)
    assert exact <= val(printed) < exact * (1 + F(1, 10**3))


def test_bounds_result_str_is_outward():
    import torchlean as tl

    model = tl.nn.Sequential(tl.nn.Linear(1, 2)).eval()
    model[0].weight.data[...] = np.array([[1.0], [-1.0]])
    model[0].bias.data[...] = 0.0
    b = tl.verify.bounds(model, np.array([[0.1234567896]]), 0.0)
    rows = re.findall(r"\[(\S+), (\S+)\]", str(b))
    assert len(rows) == 2
    for (lo, hi), a, c in zip(rows, b.lower.ravel(), b.upper.ravel()):
        assert val(lo) <= F(float(a)) <= F(float(c)) <= val(hi)
    x = F(0.1234567896)
    assert val(rows[0][0]) <= x <= val(rows[0][1]) and val(rows[1][0]) <= -x <= val(rows[1][1])
