"""Fuzz the command lines (torchlean, torchlean.verify, torchlean.floats, torchlean.proofs): every
run ends in bounded time with exit status 0, 1 or 2, and an error is one line on stderr, never a
traceback or an "internal error" (the shared error path's status 3). Runs in-process through each
``main(argv)`` (fast), plus a few real subprocesses for the end-to-end path. Also: the deadlines
(a 2,000-layer network under ``--timeout``, a certificate that asks for exact replay), and the
atomic writer's temporaries after ``kill -9``."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from fuzz_util import ROOT, TEST, tally, time_limit

NUMS = ["nan", "-nan", "-1", "0", "-0", "-inf", "inf", "1e309", "1e999999999", "99999999999999999999",
        "abc", "", "0x10", "1_0", "٣", "-1:1", "1e-300", "0.5"]
BOXES = ["-1:1", "-1e300:1e300", "1:-1", "nan:1", "-inf:inf", "a:b", "1", "1:2:3", "1e999999999:1", ",",
         "-1:1,-1:1", "١:٢"]


def _run(main, argv, capsys, limit: float = 20.0) -> tuple[int, str]:
    with time_limit(limit):
        try:
            rc = main(argv)
        except SystemExit as e:  # (--help)
            rc = e.code if isinstance(e.code, int) else 0
    out, err = capsys.readouterr()
    assert rc in (0, 1, 2, 130), (argv, rc, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if rc == 2:
        errors = [ln for ln in err.splitlines() if "error" in ln]
        assert len(errors) == 1 and "usage:" not in err, (argv, err)
    tally("CLI flags", "ok" if rc == 0 else "clean_error")
    return rc, err


def _verify_argvs(rng: random.Random, n: int, tmp) -> list[list[str]]:
    net, prop = str(TEST / "test_nano.onnx"), str(TEST / "test_nano.vnnlib")
    out = [["--timeout=" + v, net, prop, "-q"] for v in NUMS]
    out += [[net, prop, "--timeout", v, "-q"] for v in NUMS if v not in ("", "0.5")]
    out += [["bounds", net, str(TEST / "test_prop.vnnlib")], ["run", str(tmp)],
            ["check", str(tmp), net, prop],
            [net, prop, "--cert", str(tmp), "-q"], [net, prop, "--result", "/proc/nope/x", "-q"],
            ["run", str(TEST / "test_instances.csv"), "--out", str(tmp)], ["--bogus"], [], ["check"],
            ["bounds", net, prop, "--timeout", "nan"], ["check", str(TEST / "test_nano.vnnlib"), net, prop]]
    for _ in range(n):
        flag = rng.choice(["--timeout", "--method", "--cert", "-q", "--x"])
        out.append([net, prop, flag, rng.choice(NUMS), "-q"])
    return out


def test_verify_flags(capsys, tmp_path, monkeypatch):
    from torchlean.verify.__main__ import main

    monkeypatch.chdir(tmp_path)  # (a random "--cert 0.5" writes a file named 0.5)
    for argv in _verify_argvs(random.Random(0), 60, tmp_path):
        _run(main, argv, capsys)


def _floats_argvs(rng: random.Random, n: int, tmp) -> list[list[str]]:
    net = str(TEST / "test_nano.onnx")
    empty = tmp / "empty.json"
    empty.write_text(json.dumps({"format": "torchlean-ir", "version": 1, "inputs": [], "constants": {},
                                 "nodes": [], "outputs": []}))
    ident = tmp / "identity.json"  # (inputs and outputs, no operation)
    x = {"name": "x", "shape": [1], "dtype": "float32"}
    ident.write_text(json.dumps({"format": "torchlean-ir", "version": 1, "constants": {}, "nodes": [],
                                 "inputs": [x], "outputs": ["x"]}))
    out = [["bound", net, "--box", b, "--samples", "10"] for b in BOXES]
    out += [["bound", net, "--box=" + b, "--samples", "10"] for b in BOXES]
    out += [["bound", net, "--box", "-1:1", "--samples", v] for v in NUMS + ["10000001", "10**9"]]
    out += [["bound", net, "--box", "-1:1", "--splits", v, "--samples", "0"] for v in NUMS]
    out += [["run", str(empty), "--input", "1"], ["bound", str(empty), "--box", "0:1"],
            ["bound", str(ident), "--box", "0:1"], ["run", str(ident), "--input", "1"],
            ["run", net, "--input", "nan"], ["run", net, "--input", "1,2"], ["check", str(tmp)],
            ["fpcore", str(tmp)], ["bound", net, "--box", "0:1", "--cert", str(tmp), "--samples", "0"],
            ["lemmas", "--timeout", "nan"], ["bound", net, "--box", "0:1", "--format", "bogus"], []]
    for _ in range(n):
        out.append(["bound", net, "--box", rng.choice(BOXES), "--samples", rng.choice(["0", "5"] + NUMS)])
    return out


def test_floats_flags(capsys, tmp_path, monkeypatch):
    from torchlean.floats.__main__ import main

    monkeypatch.chdir(tmp_path)
    ok = 0
    for argv in _floats_argvs(random.Random(1), 60, tmp_path):
        ok += _run(main, argv, capsys)[0] == 0
    assert ok >= 5  # (the valid ones did run)


def test_proofs_and_top_level_flags(capsys, tmp_path, monkeypatch):
    """Only refused values here: an accepted discharge would run the solvers."""
    from torchlean.__main__ import main as top
    from torchlean.proofs.cli import main as proofs

    monkeypatch.chdir(tmp_path)
    bad = [v for v in NUMS if v not in ("0.5", "1e-300")]
    for v in bad:
        rc, _ = _run(proofs, ["discharge", "--timeout", v, "nonexistent.prefix"], capsys)
        assert rc == 2
        rc, _ = _run(proofs, ["discharge", "--jobs", v, "nonexistent.prefix"], capsys)
        assert rc == 2
        if v in ("nan", "-nan", "-1", "0", "-0", "-inf", "inf", "1e309", "abc", "", "0x10"):
            rc, _ = _run(top, ["mlp", "--lr", v], capsys)
            assert rc == 2
    (tmp_path / "f").write_text("x")
    for argv in (["emit", "-o", str(tmp_path / "f"), "autograd.abs"], ["bogus"], [], ["check", "--bogus"]):
        assert _run(proofs, argv, capsys, limit=60)[0] == 2


def test_subprocess_end_to_end(tmp_path):
    """The real entry points: one line on stderr, exit 2, for a few of the issue's cases."""
    net, prop = str(TEST / "test_nano.onnx"), str(TEST / "test_nano.vnnlib")
    cases = [["torchlean.verify", "--timeout=nan", net, prop], ["torchlean.verify", "bogus"],
             ["torchlean.floats", "bound", net, "--box=-1e300:1e300"],
             ["torchlean.proofs", "discharge", "--timeout", "-inf"]]
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent)}
    for argv in cases:
        r = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (argv, r.stderr)
        assert "Traceback" not in r.stderr
        tally("CLI flags", "clean_error")


# -- deadlines -----------------------------------------------------------------------------------

def _deep_onnx(path, layers: int, width: int = 2) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "X"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) * 0.7).astype(np.float32)
        b = np.zeros(width, np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"b{i}"], [f"g{i}"], transB=1))
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [f"r{i}"]))
            prev = f"r{i}"
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, width])
    y = helper.make_tensor_value_info(f"g{layers - 1}", TensorProto.FLOAT, [1, width])
    g = helper.make_graph(nodes, "deep", [x], [y], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_deep_network_honours_the_timeout(tmp_path):
    """A 600-layer network (back-substitution is quadratic in depth): the search, the bounds and
    the replay all stop at their deadline instead of running on."""
    from torchlean.certificates.bounds import check_vnn
    from torchlean.certificates.core import OutOfTime
    from torchlean.verify.bab import verify
    from torchlean.verify.bounds import bounds
    from torchlean.verify.network import load_spec
    from torchlean.verify.table import load_target

    onnx_path = tmp_path / "deep.onnx"
    _deep_onnx(onnx_path, 600)
    prop = tmp_path / "deep.vnnlib"
    prop.write_text("(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)"
                    "(declare-const Y_1 Real)(assert (<= X_0 1))(assert (>= X_0 -1))(assert (<= X_1 1))"
                    "(assert (>= X_1 -1))(assert (>= Y_0 1000))")
    net, spec = load_target(onnx_path).bg, load_spec(prop)
    t = time.monotonic()
    res = verify(net, spec, timeout=1.0)
    # (generous margins: the machine is shared; without the deadline checks this ran for minutes)
    assert time.monotonic() - t < 5.0 and res.verdict in ("timeout", "sat", "unsat")
    import numpy as np

    t = time.monotonic()
    with pytest.raises(OutOfTime):
        bounds(net, (-np.ones(2), np.ones(2)), deadline=time.monotonic() + 0.5)
    assert time.monotonic() - t < 4.0
    if res.cert is not None:
        t = time.monotonic()
        check_vnn(res.cert, net, spec, mode="exact", deadline=time.monotonic() + 0.5)
        assert time.monotonic() - t < 4.5
    for bad in (float("nan"), -1.0, 0.0, float("inf"), float("-inf")):
        with pytest.raises(ValueError):
            verify(net, spec, timeout=bad)


def test_replay_mode_is_the_callers(tmp_path):
    """A certificate that says "mode": "exact" on an ACAS Xu tree is replayed in the mode the
    caller's size rule picks (fast), not the one it asks for; an explicit exact replay stops at
    its deadline."""
    from torchlean.certificates.bounds import check_vnn, replay_mode
    from torchlean.verify.bab import verify
    from torchlean.verify.network import load_spec
    from torchlean.verify.table import load_target

    acas = ROOT / "data" / "vnncomp2021" / "acasxu"
    net, spec = load_target(acas / "ACASXU_run2a_1_1_batch_2000.onnx").bg, load_spec(acas / "prop_3.vnnlib")
    res = verify(net, spec, timeout=60)
    assert res.verdict == "unsat"
    for stated in ("exact", None, "fast", "bogus"):
        cert = dict(res.cert)
        if stated is None:
            cert.pop("mode", None)
        else:
            cert["mode"] = stated
        assert replay_mode(cert, net) == "fast"
        t = time.monotonic()
        v = check_vnn(cert, net, spec, deadline=time.monotonic() + 30)
        assert v.ok and time.monotonic() - t < 10
        assert "fast" in v.reason
    t = time.monotonic()
    v = check_vnn(res.cert, net, spec, mode="exact", deadline=time.monotonic() + 1.0)
    assert time.monotonic() - t < 5.0
    assert v.ok or "deadline" in v.reason


# -- nothing half-written ------------------------------------------------------------------------

def test_killed_writer_leaves_no_temp_behind(tmp_path):
    """A writer killed with -9 mid-write leaves its temp; the next atomic write into that folder
    removes it, and the folder's .gitignore (from ``ignore_temps``) hides it from git meanwhile."""
    from torchlean._files import atomic_write_text, ignore_temps

    folder = tmp_path / "proofs"
    folder.mkdir()
    ignore_temps(folder)
    code = (f"import sys, time; sys.path.insert(0, {str(ROOT.parent)!r})\n"
            "from torchlean._files import atomic_write\n"
            "def slow(fh):\n    fh.write(b'x'); fh.flush(); print('writing', flush=True); time.sleep(60)\n"
            f"atomic_write({str(folder / 'a.json')!r}, slow)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    left = [f for f in os.listdir(folder) if f.endswith(".tmp")]
    assert len(left) == 1 and not (folder / "a.json").exists()
    if subprocess.run(["git", "init", "-q"], cwd=tmp_path).returncode == 0:
        r = subprocess.run(["git", "check-ignore", "-q", str(folder / left[0])], cwd=tmp_path)
        assert r.returncode == 0  # ignored
    atomic_write_text(folder / "b.json", "{}")
    assert sorted(os.listdir(folder)) == [".gitignore", "b.json"]
    # a temp of a live writer (this process) is left alone
    mine = folder / f".c.json.{os.getpid()}.abcd.tmp"
    mine.write_text("")
    atomic_write_text(folder / "b.json", "{}")
    assert mine.exists()


def test_proofs_check_per_artifact_deadline(capsys):
    """`proofs check --timeout`: an artifact whose replay runs past it fails (not accepted)."""
    from torchlean.proofs.artifacts import LIBRARY_DIR
    from torchlean.proofs.cli import main

    rc = main(["check", "--dir", str(LIBRARY_DIR), "--timeout", "1e-9", "autograd.abs"])
    out = capsys.readouterr().out
    assert rc == 1 and "deadline exceeded" in out and "0 checked" in out
    rc = main(["check", "--dir", str(LIBRARY_DIR), "--timeout", "60", "autograd.abs"])
    assert rc == 0 and "1 checked" in capsys.readouterr().out


BAD_TOML = ["[tool.torchlean\n", "[tool.torchlean]\nproofs = 3\n", "[tool]\ntorchlean = 5\n", "tool = 3\n",
            '[tool.torchlean]\nmodules = "x"\n', "\xff\n"]


@pytest.mark.parametrize("toml", BAD_TOML)
def test_bad_pyproject_is_one_line(capsys, tmp_path, monkeypatch, toml):
    from torchlean.proofs.cli import main

    (tmp_path / "pyproject.toml").write_bytes(toml.encode("latin-1"))
    monkeypatch.chdir(tmp_path)
    rc, err = _run(main, ["check", "autograd.abs"], capsys, limit=60)
    assert rc == 2 and "pyproject.toml" in err


def test_floats_check_deadline(capsys, tmp_path):
    """`floats check --timeout`: a replay past its deadline is not accepted; in time it is."""
    from torchlean.floats.__main__ import main

    cert = tmp_path / "c.json"
    net = str(TEST / "test_nano.onnx")
    assert _run(main, ["bound", net, "--box", "0:1", "--samples", "0", "--splits", "3", "--cert", str(cert)],
                capsys)[0] == 0
    assert _run(main, ["check", str(cert)], capsys)[0] == 0
    rc = main(["check", str(cert), "--timeout", "1e-9"])
    assert rc == 1 and "deadline exceeded" in capsys.readouterr().out


def test_timeout_spent_on_loading_still_writes_the_result_file(tmp_path):
    """VNN-COMP reads the --result file: when loading alone uses the budget the answer is still
    written there (it was printed but the file was missing, which a harness counts as an error)."""
    onnx_path, prop, res = tmp_path / "deep.onnx", tmp_path / "p.vnnlib", tmp_path / "r.txt"
    _deep_onnx(onnx_path, 40)
    prop.write_text("(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)"
                    "(declare-const Y_1 Real)(assert (<= X_0 1))(assert (>= X_0 -1))(assert (<= X_1 1))"
                    "(assert (>= X_1 -1))(assert (>= Y_0 1000))")
    p = subprocess.run([sys.executable, "-m", "torchlean.verify", str(onnx_path), str(prop),
                        "--timeout", "0.001", "-q", "--result", str(res)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "timeout"
    assert res.read_text().strip() == "timeout"
