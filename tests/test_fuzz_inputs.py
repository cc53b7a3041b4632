"""Fuzz the readers every user input goes through: VNN-LIB (both readers), certificate JSON,
FPCore, instance CSVs and ONNX. Each input must be read, or refused with the reader's one
documented error, within ``fuzz_util.LIMIT`` seconds; known-invalid inputs must be refused.
The default run is small; ``-m slow`` runs a corpus ten times larger."""

from __future__ import annotations

import json
import random
from fractions import Fraction

import numpy as np
import pytest
from fuzz_util import (
    ACAS,
    EXTREME_NUMERALS,
    TALLY,
    TEST,
    Hang,
    mutate_bytes,
    mutate_text,
    tally,
    time_limit,
)

from torchlean.verify.network import InputError, load_spec
from torchlean.verify.table import load_target

N_DEFAULT, N_SLOW = 100, 3000

# -- VNN-LIB -----------------------------------------------------------------------------------

VNN_BASES = [TEST / "test_prop.vnnlib", TEST / "test_nano.vnnlib", TEST / "test_small.vnnlib",
             ACAS / "prop_6.vnnlib"]
HEAD = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
BOX = "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n"

#: inputs every reader must refuse (the issue's cases and their kin)
VNN_INVALID = {
    "deep nesting": HEAD + "(assert " + "(and " * 5000 + "(<= X_0 1)" + ")" * 5001,
    "huge exponent": HEAD + BOX + "(assert (>= Y_0 1e999999999))\n",
    "huge negative exponent": HEAD + BOX + "(assert (>= Y_0 1e-999999999))\n",
    "100k digits": HEAD + BOX + "(assert (>= Y_0 " + "7" * 100_001 + "))\n",
    "arabic-indic digits": HEAD + "(assert (>= X_0 -١))\n(assert (<= X_0 1))\n(assert (>= Y_0 0))\n",
    "arabic-indic index": HEAD + "(declare-const X_١ Real)\n" + BOX + "(assert (>= Y_0 0))\n",
    "unbalanced": HEAD + BOX + "(assert (>= Y_0 0)\n",
    "missing bound": HEAD + "(assert (<= X_0 1))\n(assert (>= Y_0 0))\n",
    "nonlinear": HEAD + BOX + "(assert (>= (* Y_0 Y_0) 0))\n",
    "mixed": HEAD + BOX + "(assert (>= Y_0 X_0))\n",
    "nan": HEAD + BOX + "(assert (>= Y_0 nan))\n",
    "empty": "",
}


def _read_vnnlib(path, text: str | None) -> str:
    """'read' or 'error'; fails on any other exception, a hang, or a disagreement of the readers
    (load_spec cross-checks them)."""
    from torchlean.bridge.vnnlib import VnnlibError, parse_vnnlib

    with time_limit():
        try:
            spec = load_spec(path)
        except InputError as e:
            assert "\n" not in str(e) and "Traceback" not in str(e)
            spec = None
        try:
            parse_vnnlib(path)
            bridge_ok = True
        except VnnlibError:
            bridge_ok = False
    if spec is not None:  # the checker's reader accepted it: so must the bridge's have
        assert bridge_ok
        for r in spec.regions:
            assert all(isinstance(v, Fraction) for v in (*r.lo, *r.hi))
    return "read" if spec is not None else "clean_error"


@pytest.mark.parametrize("name", sorted(VNN_INVALID))
def test_vnnlib_invalid_refused(tmp_path, name):
    p = tmp_path / "p.vnnlib"
    p.write_text(VNN_INVALID[name])
    outcome = _read_vnnlib(p, VNN_INVALID[name])
    tally("vnnlib", outcome)
    assert outcome == "clean_error", name


def test_vnnlib_not_utf8_fifo_directory(tmp_path):
    import os

    bad = tmp_path / "latin1.vnnlib"
    bad.write_bytes((HEAD + BOX + "; caf\xe9\n(assert (>= Y_0 0))\n").encode("latin-1"))
    fifo = tmp_path / "fifo.vnnlib"
    os.mkfifo(fifo)
    for p in (bad, fifo, tmp_path):
        assert _read_vnnlib(p, None) == "clean_error"
        tally("vnnlib", "clean_error")


def _vnnlib_corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    bases = [b.read_text() for b in VNN_BASES]
    out = []
    for _ in range(n):
        out.append(mutate_text(rng.choice(bases), rng, edits=rng.randint(1, 4)))
    return out


def _fuzz_vnnlib(tmp_path, n, seed):
    for i, text in enumerate(_vnnlib_corpus(n, seed)):
        p = tmp_path / f"m{i}.vnnlib"
        p.write_text(text, encoding="utf-8", errors="surrogateescape")
        tally("vnnlib", _read_vnnlib(p, text))


def test_vnnlib_mutations(tmp_path):
    _fuzz_vnnlib(tmp_path, N_DEFAULT, 1)


@pytest.mark.slow
def test_vnnlib_mutations_large(tmp_path):
    _fuzz_vnnlib(tmp_path, N_SLOW, 101)


def test_vnnlib_size_limit_and_linear_reading(tmp_path):
    """A file of many asserts is read in time linear in its size (no quadratic DNF), or refused above
    the size limit. Judged by the ratio of two sizes read on the same machine in the same test (not a
    wall-clock limit, which fails on a loaded machine): 10x the asserts must cost well under the ~100x
    a quadratic reader takes (it did: 200k asserts took minutes)."""
    import time

    from torchlean._files import MAX_VNNLIB_BYTES

    def best_time(n: int) -> float:
        body = "".join(f"(assert (<= Y_0 {i}.5))\n" for i in range(n))
        p = tmp_path / f"many{n}.vnnlib"
        p.write_text(HEAD + BOX + body)
        times = []
        for _ in range(2):
            t = time.perf_counter()
            assert _read_vnnlib(p, None) == "read"
            times.append(time.perf_counter() - t)
        return min(times)

    assert best_time(1_500) < 30 * best_time(150)
    big = tmp_path / "big.vnnlib"
    big.write_text(HEAD + BOX + "; " + "x" * MAX_VNNLIB_BYTES + "\n")
    with pytest.raises(InputError, match="size limit"):
        load_spec(big)


# -- certificate JSON ----------------------------------------------------------------------------

JSON_INVALID = {
    "deep list": "[" * 100_000 + "]" * 100_000,
    "deep object": '{"a":' * 5000 + "1" + "}" * 5000,
    "100001-digit int": '{"kind": "vnn-sat", "x": [' + "9" * 100_001 + "]}",
    "NaN": '{"kind": "vnn-sat", "x": [NaN]}',
    "Infinity": '{"kind": "vnn-sat", "x": [Infinity]}',
    "truncated": '{"kind": "vnn-unsat", "regions": [[["leaf"',
}


@pytest.mark.parametrize("name", sorted(JSON_INVALID))
def test_certificate_json_limits(name):
    from torchlean.certificates.core import parse_json

    with time_limit():
        with pytest.raises(ValueError):
            parse_json(JSON_INVALID[name])
    tally("certificate JSON", "clean_error")


JUNK = [None, True, -1, 2**70, 1.5, "1e999999999", "-1e999999999", "1" * 5000 + "/3", "١/٢", "nan",
        "", [], {}, [[[]]], "p/q", "1/0", "0x10", {"a": 1}, "leaf", ["split", 0], ["leaf"]]


def _replace_everywhere(obj, rng: random.Random):
    """Every JSON path of obj, one at a time, replaced by a random junk value."""
    paths = []

    def walk(o, path):
        paths.append(path)
        if isinstance(o, dict):
            for k, v in o.items():
                walk(v, path + (k,))
        elif isinstance(o, list):
            for i, v in enumerate(o[:6]):
                walk(v, path + (i,))

    walk(obj, ())
    for path in paths[1:]:
        new = json.loads(json.dumps(obj))
        cur = new
        for k in path[:-1]:
            cur = cur[k]
        cur[path[-1]] = rng.choice(JUNK)
        yield path, new


@pytest.fixture(scope="module")
def small_certs():
    """An unsat certificate (test_small) and a sat one (test_sat), from the verifier."""
    from torchlean.certificates.bounds import check_vnn
    from torchlean.verify.bab import verify

    out = {}
    for net_f, prop_f in (("test_small.onnx", "test_small.vnnlib"), ("test_sat.onnx", "test_prop.vnnlib")):
        net, spec = load_target(TEST / net_f).bg, load_spec(TEST / prop_f)
        res = verify(net, spec, timeout=60)
        assert res.cert is not None and check_vnn(res.cert, net, spec).ok
        out[res.verdict] = (res.cert, net, spec)
    assert set(out) == {"sat", "unsat"}
    return out


def test_certificate_field_junk(small_certs):
    """Every field of both certificates replaced by junk: a verdict (never an exception) in time;
    an accepted sat certificate must still hold a true counterexample."""
    from torchlean.certificates.bounds import check_vnn

    rng = random.Random(7)
    for verdict, (cert, net, spec) in small_certs.items():
        for path, bad in _replace_everywhere(cert, rng):
            with time_limit():
                v = check_vnn(bad, net, spec, deadline=None)
            tally("certificate JSON", "accepted" if v.ok else "clean_error")
            if v.ok and verdict == "sat":
                _assert_true_counterexample(bad["x"], spec)


def _fuzz_certificate_text(small_certs, n: int, seed: int) -> None:
    from torchlean.certificates.bounds import check_vnn
    from torchlean.certificates.core import parse_json

    rng = random.Random(seed)
    for verdict, (cert, net, spec) in small_certs.items():
        text = json.dumps(cert)
        for _ in range(n):
            t = mutate_text(text, rng, edits=rng.randint(1, 3))
            with time_limit():
                try:
                    c = parse_json(t)
                except ValueError:
                    tally("certificate JSON", "clean_error")
                    continue
                v = check_vnn(c, net, spec)
            tally("certificate JSON", "accepted" if v.ok else "clean_error")
            if v.ok and verdict == "sat":
                _assert_true_counterexample(c["x"], spec)


def test_certificate_text_mutations(small_certs):
    _fuzz_certificate_text(small_certs, N_DEFAULT, 11)


@pytest.mark.slow
def test_certificate_text_mutations_large(small_certs):
    _fuzz_certificate_text(small_certs, N_SLOW, 111)


def _assert_true_counterexample(x, spec):
    """Independent of the checker: the point is in a box (exact, bridge reader) and float64
    evaluation by onnxruntime-free numpy is not clearly safe."""
    from torchlean.bridge.vnnlib import parse_vnnlib

    prop = parse_vnnlib(TEST / "test_prop.vnnlib")
    xs = [Fraction(v) for v in x]
    assert any(r.contains(xs) for r in prop.regions), "accepted a point outside the box"


# -- FPCore --------------------------------------------------------------------------------------

FPCORE_BASES = [
    "(FPCore (x y) :pre (and (<= 1 x 2) (<= -1 y 1)) (/ (+ x y) (* x x)))",
    "(FPCore (a) :name \"s\" :pre (<= 0.5 a 4) (sqrt (- (* a a) 0.25)))",
    "(FPCore (x) :pre (<= -3 x 3) (let ([t (* x x)]) (+ t (* 2 t))))",
]
FPCORE_INVALID = {
    "empty box": "(FPCore (x) :pre (<= 1 x 0) (+ x 1))",
    "duplicate argument": "(FPCore (x x) :pre (<= 0 x 1) (+ x 1))",
    "huge exponent": "(FPCore (x) :pre (<= 0 x 1e999999999) (+ x 1))",
    "deep": "(FPCore (x) :pre (<= 0 x 1) " + "(+ x " * 3000 + "1" + ")" * 3001,
    # found by the slow corpus: a :pre bound on a name that is not an argument (was a TypeError)
    "bound on a non-argument": "(FPCore (x) :pre (and (<= 0 x 1) (<= 0 y)) (+ x 1))",
}


def _fpcore(text: str):
    """'error' / 'unsupported' / 'bound'; a finite bound must hold on sampled points."""
    from torchlean.floats.fpbound import analyse
    from torchlean.floats.fpcore import FPCoreError, to_benchmarks
    from torchlean.floats.fpsample import observed

    with time_limit():
        try:
            benches = to_benchmarks(text)
        except FPCoreError:
            return "clean_error"
        out = "unsupported"
        for b in benches:
            if b.unsupported or b.precision != "binary64":
                continue
            r = analyse(b, max_boxes=200)
            out = "bound"
            if r.bound != float("inf"):
                obs, _ = observed(b, 200)
                assert not obs > r.bound, (text, obs, r.bound)
    return out


@pytest.mark.parametrize("name", sorted(FPCORE_INVALID))
def test_fpcore_invalid_refused(name):
    outcome = _fpcore(FPCORE_INVALID[name])
    tally("FPCore", outcome)
    assert outcome in ("clean_error", "unsupported"), name


def test_fpcore_sqrt_of_negative_has_no_finite_bound():
    from torchlean.floats.fpbound import analyse
    from torchlean.floats.fpcore import to_benchmarks

    (b,) = to_benchmarks("(FPCore (x) :pre (<= -1 x 1) (sqrt x))")
    assert analyse(b, max_boxes=200).bound == float("inf")
    (b,) = to_benchmarks("(FPCore (x) :pre (<= 0 x 1) (sqrt x))")
    assert analyse(b, max_boxes=200).bound < 1e-15
    tally("FPCore", "bound")


def _fuzz_fpcore(n: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        tally("FPCore", _fpcore(mutate_text(rng.choice(FPCORE_BASES), rng, edits=rng.randint(1, 3))))


def test_fpcore_mutations():
    _fuzz_fpcore(N_DEFAULT // 2, 3)


@pytest.mark.slow
def test_fpcore_mutations_large():
    _fuzz_fpcore(N_SLOW, 103)


# -- instance CSVs -------------------------------------------------------------------------------

CSV_CELLS = ["test_nano.onnx", "test_nano.vnnlib", "60", "nan", "-1", "0", "inf", "-inf", "1e999",
             "abc", "", "sat", "unsat", "maybe", "SAT", "1e6", "onnx", "vnnlib", "timeout", "expected"]


def _csv(tmp_path, data: bytes, i: int):
    from torchlean._cli import MAX_TIMEOUT_S
    from torchlean.verify.runner import EXPECTED, read_instances

    p = tmp_path / f"c{i}.csv"
    p.write_bytes(data)
    with time_limit():
        try:
            rows = read_instances(p)
        except InputError as e:
            assert "\n" not in str(e)
            return "clean_error"
    for r in rows:  # what was accepted is valid
        assert r["onnx"] and r["vnnlib"]
        if r.get("timeout"):
            t = float(r["timeout"])
            assert 0 < t <= MAX_TIMEOUT_S
        assert r.get("expected", "") in EXPECTED
    return "read"


def test_csv_fuzz(tmp_path):
    _fuzz_csv(tmp_path, N_DEFAULT, 5)


@pytest.mark.slow
def test_csv_fuzz_large(tmp_path):
    _fuzz_csv(tmp_path, N_SLOW, 105)


def _fuzz_csv(tmp_path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    cases = [b"test_nano.onnx;test_nano.vnnlib;60\n", b"test_nano.onnx\n",
             b"\xef\xbb\xbfa.onnx,b.vnnlib,60\n",
             b"net,prop,t\na.onnx,b.vnnlib,1\n", b"a.onnx,b.vnnlib,nan\n", b"a.onnx,b.vnnlib,6\xe9\n",
             b"onnx,vnnlib,expected\na.onnx,b.vnnlib,maybe\n", b"a.onnx\tb.vnnlib\t60\n"]
    for _ in range(n):
        rows = [",".join(rng.choice(CSV_CELLS) for _ in range(rng.randint(1, 4)))
                for _ in range(rng.randint(1, 3))]
        sep = rng.choice([",", ",", ";", "\t"])
        cases.append(("\n".join(rows).replace(",", sep) + "\n").encode(rng.choice(["utf-8", "utf-8-sig"])))
    for i, data in enumerate(cases):
        tally("CSV", _csv(tmp_path, data, i))
    assert TALLY["CSV"]["clean_error"] >= 8  # (the fixed cases at least)


# -- ONNX ----------------------------------------------------------------------------------------

def _onnx(path) -> str:
    with time_limit():
        try:
            load_target(path).bg
        except InputError as e:
            assert "\n" not in str(e)
            return "clean_error"
    return "read"


def _fuzz_onnx(tmp_path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    bases = [(TEST / f).read_bytes() for f in ("test_nano.onnx", "test_small.onnx", "test_tiny.onnx")]
    for i in range(n):
        p = tmp_path / f"m{i}.onnx"
        p.write_bytes(mutate_bytes(rng.choice(bases), rng, edits=rng.randint(1, 3)))
        tally("ONNX", _onnx(p))


def test_onnx_byte_mutations(tmp_path):
    _fuzz_onnx(tmp_path, N_DEFAULT, 9)


@pytest.mark.slow
def test_onnx_byte_mutations_large(tmp_path):
    _fuzz_onnx(tmp_path, N_SLOW, 109)


def test_onnx_not_a_regular_file(tmp_path):
    import os

    fifo = tmp_path / "f.onnx"
    os.mkfifo(fifo)
    for p in (fifo, tmp_path, tmp_path / "missing.onnx"):
        assert _onnx(p) == "clean_error"
        tally("ONNX", "clean_error")


def test_extreme_numerals_in_every_reader():
    """The same extreme numerals through every numeral reader: refused or read, in time."""
    from torchlean.certificates.core import Rejected, decimal, rational

    for t in EXTREME_NUMERALS:
        with time_limit(2.0):
            for fn in (decimal, rational):
                try:
                    fn(t)
                except (ValueError, Rejected):
                    pass
        tally("numerals", "checked")
    assert pytest.raises(Hang, _spin).type is Hang


def _spin():  # (the time limit itself works)
    with time_limit(0.2):
        while True:
            pass


def _small_onnx(path, dims=(1, 2), opset=13, dup=False, nan=False) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.eye(2, dtype=np.float32)
    if nan:
        w[0, 0] = np.nan
    nodes = [helper.make_node("MatMul", ["X", "W"], ["Y"])]
    if dup:  # two nodes writing one name: not SSA
        nodes.append(helper.make_node("Relu", ["X"], ["Y"]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(dims))],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])],
                          [numpy_helper.from_array(w, "W")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), path)


@pytest.mark.parametrize("case", [
    pytest.param({"dims": (-5, 2)}, id="dim -5"),
    pytest.param({"dims": (0, 2)}, id="dim 0"),
    pytest.param({"opset": 999}, id="opset 999"),
    pytest.param({"dup": True}, id="non-SSA"),
    pytest.param({"nan": True}, id="NaN weight"),
])
def test_onnx_invalid_refused(tmp_path, case):
    p = tmp_path / "bad.onnx"
    _small_onnx(p, **case)
    outcome = _onnx(p)
    tally("ONNX", outcome)
    assert outcome == "clean_error"


def test_float_certificate_junk(tmp_path):
    """``floats check`` certificates (errorbound, errorbound-split): every field replaced by junk
    gives a verdict from ``certificates.check``, never an exception, in time; the honest one passes."""
    from torchlean.bridge.onnx import load_onnx
    from torchlean.certificates import check
    from torchlean.floats.errorbound import bound_certificate

    g = load_onnx(TEST / "test_nano.onnx")
    box = [(Fraction(-1), Fraction(1))] * int(np.prod(g.inputs[0].shape))
    rng = random.Random(13)
    for splits in (0, 2):
        cert = json.loads(json.dumps(bound_certificate(g, box, "binary32", "rne", splits=splits)))
        assert check(cert).ok
        if "mode" in cert.get("statement", {}):  # an unknown rounding mode is refused, not read as directed
            bogus = json.loads(json.dumps(cert))
            bogus["statement"]["mode"] = "bogus"
            assert not check(bogus).ok
        for _, bad in _replace_everywhere(cert, rng):
            with time_limit():
                v = check(bad)
            tally("float certificates", "accepted" if v.ok else "clean_error")


def test_json_depth_matches_a_token_scan():
    """``core._json_depth`` (C-level passes) against the plain token loop it replaced, on random
    texts of brackets, quotes, escapes and other characters (unterminated strings included)."""
    import re

    from torchlean.certificates.core import _json_depth

    def scan(text):
        depth = best = 0
        for tok in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', text):
            c = tok.group()[0]
            if c in "[{":
                depth += 1
                best = max(best, depth)
            elif c in "]}":
                depth -= 1
        return best

    rng = random.Random(7)
    texts = ['', '[]', '[[{"a": "[[["}]]', '"\\"[" [', ']]][[', '{"x": [1, [2, "]"]]}']
    texts += ["".join(rng.choice('[]{}"\\a,1 \n') for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    for t in texts:
        assert _json_depth(t) == scan(t), t
