"""audit62: the exact counterexamples (impcex) and float32 sat answers (audit59) against the
VNN-COMP result format.

Soundness (no hole found): a sat answer's X_i printed are the certificate's point (exactly where
they have a terminating decimal), the checker replays that point, and independent exact
evaluation (Fractions, by hand) confirms it violates the property in a box that holds it: many-digit,
scientific and negative-zero VNN-LIB bounds, several input boxes, strict bounds. ``--float32`` never
reports the real (non-binary32) point; its point is a binary32 one where a float32 run computed here
step by step (numpy, no fused multiply-add) meets the unsafe set.

Format (fixed): a ``--result`` file held SMT-LIB ``(/ p q)`` for a ReLU-kink counterexample, which
VNN-COMP's scripts read as numbers (``float``) and fail on. It now holds decimal numerals only: an
X_i with no terminating decimal is rounded (20 significant digits or more, kept inside the box),
checked here against Python's ``decimal`` module, and stderr says where the exact point is.
"""

from __future__ import annotations

import decimal as dec
import json
import re
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.verify.__main__ import main
from torchlean.verify.result_text import approx_text, exact_text, x_numerals

onnx = pytest.importorskip("onnx")
sys.path.insert(0, str(Path(__file__).parent))
from test_exact_counterexample import ABS, CROSS, SUM, chain, exact_forward, prop  # noqa: E402

# |3 x - 2| as relu(3x - 2) + relu(2 - 3x): 0 only at x = 2/3 (whose 20-digit rounding, ...67, is above it)
ABS2 = ([[3.0], [-3.0]], [-2.0, 2.0], [[1.0, 1.0]], [0.0])
NUMBER = re.compile(r"\((X|Y)_(\d+) ([^()\s]+)\)")


def cli(tmp: Path, net: Path, text: str, name: str, capsys, *extra: str) -> tuple[str, str, str, Path, Path]:
    """(stdout, stderr, result file text, certificate path, property path) of ``verify``."""
    p, c, r = tmp / f"{name}.vnnlib", tmp / f"{name}.json", tmp / f"{name}.res"
    p.write_text(text)
    capsys.readouterr()
    assert main([str(net), str(p), "--timeout", "60", "--cert", str(c), "--result", str(r), *extra]) == 0
    got = capsys.readouterr()
    return got.out, got.err, r.read_text(), c, p


def numbers(text: str) -> tuple[list[str], list[str]]:
    """The X and Y numerals of a sat result text, in order, each a plain numeral (no expression):
    every parenthesised pair of the body is one (X_i v) or (Y_j v) with v read by ``float``."""
    lines = text.strip().splitlines()
    assert lines[0] == "sat"
    body = "\n".join(lines[1:])
    assert "/" not in body  # (no SMT-LIB rational)
    pairs = NUMBER.findall(body)
    assert len(pairs) == body.count("(") - 1  # (the outer parenthesis, then only pairs)
    xs = [v for k, _, v in pairs if k == "X"]
    ys = [v for k, _, v in pairs if k == "Y"]
    assert [int(i) for k, i, _ in pairs if k == "X"] == list(range(len(xs)))
    for v in xs + ys:
        float(v)  # (VNN-COMP's reading)
    return xs, ys


def bench_reader(text: str) -> list[float]:
    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    from bench_vnncomp import parse_result

    verdict, xs = parse_result(text)
    assert verdict == "sat"
    return xs


def accepted(cert: Path, net: Path, p: Path, capsys) -> bool:
    capsys.readouterr()
    ok = main(["check", str(cert), str(net), str(p), "--expect", "sat"]) == 0
    capsys.readouterr()
    return ok


# ------------------------------------------------------------------------- the result format

@pytest.mark.parametrize("weights,n,witness", [
    (ABS, 1, [Fraction(1, 3)]),
    (CROSS, 2, [Fraction(1, 3), Fraction(2, 3)]),
])
def test_kink_result_file_holds_decimal_numbers(weights, n, witness, tmp_path, capsys):
    net = chain(tmp_path / "n.onnx", *weights)
    assert exact_forward(*weights, witness) == [0]
    text = prop(["0.0"] * n, ["1.0"] * n, 1, ["(<= Y_0 0.0)"])
    out, err, res, cert, p = cli(tmp_path, net, text, "k", capsys)
    assert out.strip() == res.strip()  # (stdout prints what the file holds)
    xs, ys = numbers(res)
    assert len(xs) == n and len(ys) == 1
    assert [float(v) for v in xs] == bench_reader(res)  # (torchlean's own result reader)
    # each X_i is the witness rounded to 20 significant digits (reference: Python's decimal module)
    ctx = dec.Context(prec=20, rounding=dec.ROUND_HALF_EVEN)
    for v, w in zip(xs, witness):
        assert dec.Decimal(v) == ctx.divide(dec.Decimal(w.numerator), dec.Decimal(w.denominator))
        assert abs(Fraction(v) - w) <= w / 10**19
    # the certificate keeps the exact point, and the checker accepts it
    assert [Fraction(q) for q in json.loads(cert.read_text())["x"]] == witness
    assert accepted(cert, net, p, capsys)
    assert "no terminating decimal" in err and str(cert) in err
    # without --cert the note says how to get the exact point
    capsys.readouterr()
    assert main([str(net), str(p), "--timeout", "60", "-q"]) == 0
    got = capsys.readouterr()
    assert got.out.strip() == res.strip() and "--cert FILE" in got.err


def test_rounded_x_stays_inside_a_box_end_written_with_many_digits(tmp_path, capsys):
    """Box [0.5, 0.666666666666666666667] (hi 1/3 * 10^-21 above 2/3): the 20-digit rounding of 2/3,
    0.66666666666666666667, lies above hi; the printed X_0 must lie inside the box."""
    net = chain(tmp_path / "n.onnx", *ABS2)
    hi = Fraction("0.666666666666666666667")
    assert Fraction("0.66666666666666666667") > hi > Fraction(2, 3)  # (the naive rounding leaves the box)
    text = prop(["0.5"], ["0.666666666666666666667"], 1, ["(<= Y_0 0.0)"])
    out, err, res, cert, p = cli(tmp_path, net, text, "hi", capsys)
    (x,), _ = numbers(res)
    assert Fraction(1, 2) <= Fraction(x) <= hi
    assert abs(Fraction(x) - Fraction(2, 3)) <= Fraction(1, 10**20)
    assert [Fraction(q) for q in json.loads(cert.read_text())["x"]] == [Fraction(2, 3)]
    assert accepted(cert, net, p, capsys)


def test_numerals_against_pythons_decimal():
    """``approx_text`` equals the decimal module's rounding (nearest-even, ceiling, floor) at several
    precisions; ``exact_text`` of a terminating decimal reads back as itself; ``x_numerals`` prints
    every terminating X_i exactly and approximates only the others."""
    rng = np.random.default_rng(62)
    modes = {0: dec.ROUND_HALF_EVEN, 1: dec.ROUND_CEILING, -1: dec.ROUND_FLOOR}
    for _ in range(300):
        q = Fraction(int(rng.integers(-10**12, 10**12)), int(rng.integers(1, 10**9))) * \
            Fraction(10) ** int(rng.integers(-30, 30))
        if q == 0:
            continue
        for sig in (1, 5, 20, 41):
            for d, mode in modes.items():
                ref = dec.Context(prec=sig, rounding=mode, Emax=999, Emin=-999).divide(
                    dec.Decimal(q.numerator), dec.Decimal(q.denominator))
                s = approx_text(q, sig, d)
                assert dec.Decimal(s) == ref, (q, sig, d, s, ref)
                assert re.fullmatch(r"-?\d+\.\d+", s)  # (positional: no exponent, no expression)
    for s in ("0.1", "-0.0", "1e-1", "3E-30", "0.1000000000000000000000000001", "-12345678901234567890.5",
              "1e30", "0"):
        q = Fraction(s)
        assert Fraction(exact_text(q)) == q
        nums, off = x_numerals([q, Fraction(1, 7)])
        assert Fraction(nums[0]) == q and off == [1]
        assert abs(Fraction(nums[1]) - Fraction(1, 7)) < Fraction(1, 10**20)
    assert exact_text(Fraction(-0.0)) == "0.0"


def test_x_on_a_rational_box_end_is_rounded_into_the_box():
    """(No VNN-LIB bound reads as 1/3, but a ``Spec`` may hold one.) x on a closed end rounds toward
    the box's inside; x inside several boxes stays inside each; a strict end is kept strict."""
    from torchlean.certificates.property import Region, Spec

    third, two = Fraction(1, 3), Fraction(2, 3)
    lo_end = Region((third,), (Fraction(1),), ((),))
    hi_end = Region((Fraction(0),), (two,), ((),))
    for region, x, ok in ((lo_end, third, lambda v: v >= third), (hi_end, two, lambda v: v <= two)):
        (s,), off = x_numerals([x], Spec(1, 1, (region,)))
        assert off == [0] and ok(Fraction(s)) and abs(Fraction(s) - x) < Fraction(1, 10**19)
    # two boxes whose ends lie within 10^-25 of 1/3 on either side: 20 digits are not enough
    a, b = third - Fraction(1, 10**25), third + Fraction(1, 10**25)
    spec = Spec(1, 1, (Region((a,), (Fraction(1),), ((),), (True,), (False,)),
                       Region((Fraction(0),), (b,), ((),), (False,), (True,))))
    (s,), _ = x_numerals([third], spec)
    assert a < Fraction(s) < b and len(s) > 22


# ------------------------------------------------ soundness: the point printed is the point checked

SOUND = {  # name: (input bounds / several boxes, atoms) on SUM = relu(x0) + relu(x1)
    "many-digit": (prop(["0.1000000000000000000000000001", "3e-1"], ["0.7", "0.9"], 1,
                        ["(<= Y_0 0.4000000000000000000000000001)"])),
    "negative-zero": (prop(["-0.0", "-0.0"], ["0.7", "0.9"], 1, ["(<= Y_0 -0.0)"])),
    "two-boxes": ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                  "(assert (or (and (>= X_0 0.1) (<= X_0 0.7) (>= X_1 0.3) (<= X_1 0.9) (<= Y_0 0.3))"
                  " (and (>= X_0 0.2) (<= X_0 0.7) (>= X_1 0.2) (<= X_1 0.9) (<= Y_0 0.4))))\n"),
}
BOXES = {  # the same, as (lo, hi, bound on Y_0) per box: the reference's reading
    "many-digit": [((Fraction("0.1000000000000000000000000001"), Fraction("0.3")),
                    (Fraction("0.7"), Fraction("0.9")), Fraction("0.4000000000000000000000000001"))],
    "negative-zero": [((Fraction(0), Fraction(0)), (Fraction("0.7"), Fraction("0.9")), Fraction(0))],
    "two-boxes": [((Fraction("0.1"), Fraction("0.3")), (Fraction("0.7"), Fraction("0.9")), Fraction("0.3")),
                  ((Fraction("0.2"), Fraction("0.2")), (Fraction("0.7"), Fraction("0.9")), Fraction("0.4"))],
}


@pytest.mark.parametrize("name", sorted(SOUND))
def test_sat_point_printed_is_the_point_checked(name, tmp_path, capsys):
    """Every witness is a tie at a box corner (no float32 point): the exact search's snapped ends."""
    net = chain(tmp_path / "n.onnx", *SUM)
    out, err, res, cert, p = cli(tmp_path, net, SOUND[name], name, capsys)
    xs, _ = numbers(res)
    x = [Fraction(q) for q in json.loads(cert.read_text())["x"]]
    assert [Fraction(v) for v in xs] == x  # exactly (terminating decimals)
    assert accepted(cert, net, p, capsys)
    y = exact_forward(*SUM, x)[0]
    assert any(all(a <= v <= b for v, a, b in zip(x, lo, hi)) and y <= bound
               for lo, hi, bound in BOXES[name])


def test_strict_bound_at_the_only_witness_is_never_sat(tmp_path, capsys):
    """X_0 > 0.1 with the tie Y_0 <= 0.4 reached only at X_0 = 0.1: no counterexample exists
    (x0 + x1 > 0.4 on the box); a snap onto the strict end must not be reported."""
    net = chain(tmp_path / "n.onnx", *SUM)
    text = prop(["0.1", "0.3"], ["0.7", "0.9"], 1, ["(<= Y_0 0.4)"]).replace("(>= X_0 0.1)", "(> X_0 0.1)")
    assert "(> X_0 0.1)" in text
    p = tmp_path / "s.vnnlib"
    p.write_text(text)
    capsys.readouterr()
    main([str(net), str(p), "--timeout", "5", "-q"])
    assert capsys.readouterr().out.split()[0] in ("unsat", "timeout", "unknown")


def test_float32_sat_is_a_binary32_point_of_a_float32_run(tmp_path, capsys):
    """|3x - 1| <= 0 on [0, 1]: the real witness 1/3 is no binary32 number; --float32 must print a
    binary32 point (never 1/3 or its decimal) where float32 arithmetic, computed here step by step
    (each product and sum rounded to binary32, no fused multiply-add), gives Y_0 <= 0."""
    net = chain(tmp_path / "n.onnx", *ABS)
    out, err, res, cert, p = cli(tmp_path, net, prop(["0.0"], ["1.0"], 1, ["(<= Y_0 0.0)"]), "f", capsys,
                                 "--float32")
    assert res.startswith("sat") and out.startswith("sat (float32")
    (x,), (y,) = numbers(res)
    q = Fraction(x)
    f = np.float32(float(q))
    assert Fraction(float(f)) == q and q != Fraction(1, 3) and 0 <= q <= 1
    h = [max(np.float32(0), np.float32(np.float32(w) * f) + np.float32(b))
         for (w,), b in zip(ABS[0], ABS[1])]
    assert np.float32(h[0] + h[1]) <= 0 and float(y) <= 0
    assert not cert.exists()  # (no certificate for a float32 sat)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
