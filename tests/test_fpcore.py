"""FPCore parsing and the FPBench round-off bounds: soundness against exact evaluation."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from torchlean.floats.fpbound import analyse
from torchlean.floats.fpcore import FPCoreError, to_benchmarks
from torchlean.floats.fpsample import observed

ROSA = Path(__file__).resolve().parents[1] / "torchlean" / "floats" / "data" / "rosa.fpcore"
FPTAYLOR = {"doppler1": 1.36e-13, "rigidBody1": 2.95e-13, "verhulst": 2.50e-16,
            "predatorPrey": 1.59e-16, "carbonGas": 8.27e-09, "sineOrder3": 7.95e-16,
            "sqroot": 5.02e-16}
DAISY = {"doppler1": 4.19e-13, "rigidBody1": 2.95e-13, "verhulst": 4.94e-16, "predatorPrey": 2.15e-16,
         "carbonGas": 4.28e-08, "sineOrder3": 1.45e-15, "turbine1": 8.65e-14}


@pytest.fixture(scope="module")
def benches():
    return {b.name: b for b in to_benchmarks(ROSA.read_text())}


def test_parses_every_rosa_benchmark(benches):
    assert len(benches) == 37
    supported = [b for b in benches.values() if not b.unsupported]
    assert len(supported) == 29
    assert benches["cav10"].unsupported.startswith("operator 'if'")
    d = benches["doppler1"]
    assert d.args == ["u", "v", "T"] and d.box["T"] == (Fraction(-30), Fraction(50))
    assert d.precision == "binary64"
    assert len(benches["triangle1"].constraints) == 3


def test_grammar_numbers_comments_and_let():
    text = """; a comment
    (FPCore (x y) :name "t" :pre (and (<= 1/2 x 0.75) (<= 1e-3 y 2.5e1))
      (let* ([a (* x 2)] [b (+ a #x1p-1)]) (/ (sqrt (* b b)) (- y))))"""
    with pytest.raises(FPCoreError):
        to_benchmarks("(FPCore (x) ")
    text = text.replace("#x1p-1", "0.5")
    (b,) = to_benchmarks(text)
    assert not b.unsupported
    assert b.box == {"x": (Fraction(1, 2), Fraction(3, 4)), "y": (Fraction(1, 1000), Fraction(25))}
    r = analyse(b)
    assert 0 < r.bound < 1e-11  # |result| <= 2000: a few ulp of 2000


@pytest.mark.parametrize("name", ["doppler1", "rigidBody1", "verhulst", "predatorPrey", "carbonGas",
                                  "sineOrder3", "sqroot", "turbine1", "triangle", "jetEngine"])
def test_bounds_are_sound_and_tight(benches, name):
    b = benches[name]
    r = analyse(b)
    obs, pts = observed(b, 2000)
    assert pts == 2000 and 0 < obs <= r.bound
    ri = analyse(b, round_inputs=True)  # the model FPTaylor and Daisy report
    if name in FPTAYLOR:
        assert ri.bound <= 2 * FPTAYLOR[name]
    if name in DAISY:
        assert ri.bound < DAISY[name]


@pytest.mark.slow
def test_all_supported_benchmarks_sound_on_10000_points(benches):
    for b in benches.values():
        if b.unsupported:
            continue
        r = analyse(b)
        if r.bound == float("inf"):
            continue
        obs, _ = observed(b, 10_000)
        assert obs <= r.bound, b.name


def test_cli_fpcore(capsys, tmp_path):
    from torchlean.floats.__main__ import main

    text = ROSA.read_text()
    small = tmp_path / "small.fpcore"  # doppler1, rigidBody1 and cav10 (unsupported)
    cut = text.index("(FPCore (x1 x2 x3)\n  :name \"rigidBody2")
    cav = text.index("(FPCore (x)\n  :name \"cav10\"")
    small.write_text(text[text.index("(FPCore (u v T)"):cut]
                     + text[cav:text.index("(FPCore (x)\n  :name \"squareRoot3\"")])
    assert main(["fpcore", str(small), "--samples", "200"]) == 0
    out = capsys.readouterr().out
    assert "doppler1" in out and "unsupported" in out and "UNSOUND" not in out
    assert main(["fpcore", "no/such/file.fpcore"]) == 2
