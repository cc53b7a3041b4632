"""bench/gen_instances.py: well-formed, deterministic instance lists whose claims hold (issue 15).

Runs on tests/data (the ACAS Xu copies) and a policy network the generator trains with torchlean;
no nnenum, no ../shared. Witnesses are re-checked with onnxruntime (float32, the ONNX file), which
is independent of the generator's own exact check."""

from __future__ import annotations

import csv
import importlib.util
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.bridge.vnnlib import parse_vnnlib
from torchlean.certificates.property import parse_property
from torchlean.verify.runner import read_instances

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests/data"
ort = pytest.importorskip("onnxruntime")


def _gen():
    spec = importlib.util.spec_from_file_location("gen_instances", ROOT / "bench/gen_instances.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GEN = _gen()
ARGS = ["--count", "9", "--families", "acasxu,tl_policy", "--data", str(DATA), "--tight-steps", "60",
        "--tight-samples", "1024", "--timeout", "30"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Seed 1 twice, seed 2 once."""
    out = {}
    for key, seed in (("a", 1), ("b", 1), ("c", 2)):
        d = tmp_path_factory.mktemp(f"gen_{key}")
        assert GEN.main(["--out", str(d), "--seed", str(seed), *ARGS]) == 0
        out[key] = d
    return out


def _meta(d: Path) -> list[dict[str, str]]:
    with open(d / "meta.csv") as f:
        return list(csv.DictReader(f))


def _ort_outputs(net: Path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(net), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [s if isinstance(s, int) else 1 for s in inp.shape]
    return np.concatenate([np.asarray(sess.run(None, {inp.name: xi.astype(np.float32).reshape(shape)})[0],
                                      dtype=np.float64).ravel()[None] for xi in x])


def _violates(prop, x: np.ndarray, y: np.ndarray) -> bool:
    """The bridge reader's exact test: x in a box whose output condition y (float32 values) meets."""
    return prop.is_counterexample(list(x), list(y))


def test_instances_csv_well_formed(runs):
    d = runs["a"]
    rows = list(csv.reader(open(d / "instances.csv")))
    meta = _meta(d)
    assert len(rows) == len(meta) >= 9 and all(len(r) == 3 for r in rows)
    assert [r[:3] for r in rows] == [[m["onnx"], m["vnnlib"], m["timeout"]] for m in meta]
    assert read_instances(d / "instances.csv")  # torchlean's own reader takes it
    kinds = {m["kind"] for m in meta}
    assert {"subbox", "widen", "tight-sat", "tight-unsat"} <= kinds
    for r, m in zip(rows, meta):
        net, prop = d / r[0], d / r[1]
        assert net.is_file() and prop.is_file() and float(r[2]) == 30.0
        spec = parse_property(prop.read_text())  # the checker's reader
        lark = parse_vnnlib(prop)  # the bridge's reader agrees on the sizes and boxes
        sess = ort.InferenceSession(str(net), providers=["CPUExecutionProvider"])
        n_in = int(np.prod([s for s in sess.get_inputs()[0].shape if isinstance(s, int)]))
        n_out = int(np.prod([s for s in sess.get_outputs()[0].shape if isinstance(s, int)]))
        assert (spec.n_in, spec.n_out) == (lark.n_inputs, lark.n_outputs) == (n_in, n_out)
        assert [float(v) for v in spec.regions[0].lo] == list(lark.regions[0].lower)
        assert all(lo <= hi for lo, hi in zip(spec.regions[0].lo, spec.regions[0].hi))


def test_deterministic_by_seed(runs):
    a, b, c = runs["a"], runs["b"], runs["c"]
    assert (a / "instances.csv").read_text() == (b / "instances.csv").read_text()
    assert (a / "meta.csv").read_text() == (b / "meta.csv").read_text()
    for m in _meta(a):
        assert (a / m["vnnlib"]).read_bytes() == (b / m["vnnlib"]).read_bytes()
    assert (a / "nets/tl_policy_s1.onnx").read_bytes() == (b / "nets/tl_policy_s1.onnx").read_bytes()
    assert (a / "meta.csv").read_text() != (c / "meta.csv").read_text()


def test_widened_boxes_contain_the_original(runs):
    seen = 0
    for key in ("a", "c"):
        d = runs[key]
        for m in _meta(d):
            if m["kind"] != "widen":
                continue
            seen += 1
            onnx_name, vnnlib_name = m["source"].split(":")
            orig = parse_property((DATA / "vnncomp2021/acasxu" / vnnlib_name).read_text()).regions[0]
            new = parse_property((d / m["vnnlib"]).read_text()).regions[0]
            assert all(a <= b for a, b in zip(new.lo, orig.lo))
            assert all(a >= b for a, b in zip(new.hi, orig.hi))
            assert any(a < b for a, b in zip(new.lo, orig.lo))  # really wider
            assert new.disjuncts == orig.disjuncts  # the output condition is the original's
            with open(DATA / "vnncomp2021/acasxu/expected.csv") as f:
                pub = {(r["onnx"], r["vnnlib"]): r["expected"] for r in csv.DictReader(f)}
            if pub[(onnx_name, vnnlib_name)] == "sat":
                assert m["expected"] == "sat"
    assert seen >= 2


def test_claimed_sat_witnesses_hold_in_onnxruntime(runs):
    claimed = 0
    for key in ("a", "c"):
        d = runs[key]
        for m in _meta(d):
            if m["kind"] == "tight-sat":  # sat by construction: the search's point is a witness
                assert m["expected"] == "sat" and m["witness"], m
            if m["kind"] == "tight-unsat":
                assert m["expected"] == ""  # never claimed: the search may have missed a higher point
            if not m["witness"]:
                continue
            claimed += 1
            x = np.array([float(v) for v in m["witness"].split()])
            assert np.all(x == x.astype(np.float32))
            y = _ort_outputs(d / m["onnx"], x[None])[0]
            assert _violates(parse_vnnlib(d / m["vnnlib"]), x, y), m
    assert claimed >= 4


def test_tight_pairs_straddle_the_found_maximum(runs):
    """The unsat side's threshold is above every sampled output; the sat side's is below the
    witness's output: both thresholds lie within the relative offset of the found extreme."""
    d = runs["a"]
    meta = _meta(d)
    for s, u in zip(meta, meta[1:]):
        if s["kind"] != "tight-sat" or u["kind"] != "tight-unsat":
            continue
        ps, pu = parse_vnnlib(d / s["vnnlib"]), parse_vnnlib(d / u["vnnlib"])
        lo, hi = pu.lower, pu.upper
        x = np.random.default_rng(0).uniform(lo, hi, (400, lo.size))
        y = _ort_outputs(d / u["onnx"], x)
        assert not any(_violates(pu, xi, yi) for xi, yi in zip(x, y))
        (cs,), (cu,) = ps.disjuncts[0], pu.disjuncts[0]
        assert cs.coeffs == cu.coeffs and Fraction(cs.rhs) != Fraction(cu.rhs)


def test_bad_kind_is_one_line_error(tmp_path, capsys):
    assert GEN.main(["--out", str(tmp_path), "--kinds", "nope", "--data", str(DATA)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_vs_nnenum", ROOT / "bench/bench_vs_nnenum.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_flags_contradictions():
    """bench_vs_nnenum: a sat/unsat clash is WRONG, and the side contradicting a known verdict is named."""
    b = _bench()
    assert b.wrong("", "sat", "unsat") and b.wrong("", "unsat", "sat")
    assert b.wrong("unsat", "sat", "unsat") == "torchlean"
    assert b.wrong("sat", "sat", "unsat") == "nnenum"
    assert b.wrong("sat", "unsat", "timeout") == "torchlean"
    assert b.wrong("", "sat", "timeout") == b.wrong("unsat", "unsat", "unsat") == ""
    row = {"kind": "k", "onnx": "n.onnx", "vnnlib": "p.vnnlib", "expected": "", "torchlean": "sat",
           "torchlean_s": "1.0", "nnenum": "unsat", "nnenum_s": "2.0"}
    row["wrong"] = b.wrong("", "sat", "unsat")
    table = b.summarise([row])
    assert "| k | 1 | 0 (0/0) | 0 (0/0) | 1 |" in table  # a contradicted verdict never counts as solved


def test_bench_without_nnenum_is_one_line_error(tmp_path):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, str(ROOT / "bench/bench_vs_nnenum.py"), str(tmp_path / "x.csv"),
                        "--nnenum-python", str(tmp_path / "none")], capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "nnenum" in p.stderr
