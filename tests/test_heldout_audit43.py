"""audit43: verification split, interrupted or resumed (worker processes, Ray, deadlines, signals).

Found (each fails on the old code):

- ``table.load_target`` kept imports keyed by (real path, size, mtime): a network file replaced by
  another of the same size and modification time (``cp -p`` of a network from the same archive,
  a coarse-timestamp file system) was verified as the old network by a later instance in the same
  process (``verify run``'s list, a worker process reused by ``-j``, a program calling ``run_csv``).
  End to end: ``net.onnx`` a copy of VNN-COMP 2021 ``test_unsat.onnx``, verified; then replaced by
  ``test_sat.onnx`` (the same 55,889 bytes), its time restored: the table said ``unsat ...
  accepted`` with the sha256 of test_sat's bytes (published verdict sat; a fresh
  ``python -m torchlean.verify`` prints sat), and every rerun reused that row (its digests match).
  onnxruntime's session (the import's cross-check) was cached the same way. Now both are keyed by
  the sha256 of the bytes read once, the import and the session made from those very bytes.
- A model whose weights live in an external data file (``onnx.save_model(...,
  save_as_external_data=True)``) was verified, but the results table's digest covers the .onnx file
  only: the weights file swapped for test_sat's, the rerun reused ``unsat ... accepted``. Now
  refused in one line by the verifier's loader.
- ``verify run -j N --ray ADDRESS`` kept a worker's row as sent: a node running other torchlean
  code or seeing other files at the same paths made a verdict about something else, written as
  this machine's (end to end with a Ray head started on other code: ``unsat ... accepted`` for
  test_sat). Now a worker's row whose digests are not this machine's is an ``error``.

Held (tests below): an interrupted ``verify --cert`` (SIGINT, SIGTERM) leaves no certificate and
prints no verdict; a stale certificate is removed; ``check`` rejects every truncation of a
certificate, a tree with a split outside its box or with a subtree left out, a certificate whose
region list is not the property's, and a replay stopped by ``--timeout``.

References: the published VNN-COMP 2021 verdicts of ``test_sat``/``test_unsat`` on ``test_prop``
(tests/data/vnncomp2021/test/expected.csv, see its SOURCE.md), a fresh import of the file
(fingerprint of its bound graph), hashlib's sha256, onnxruntime.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from torchlean.verify import network, runner, table

DATA = Path(__file__).parent / "data" / "vnncomp2021" / "test"
ACAS = Path(__file__).parent / "data" / "vnncomp2021" / "acasxu"
ROOT = Path(__file__).resolve().parents[1]


def published() -> dict[str, str]:
    """The published verdicts (network file -> verdict) on test_prop.vnnlib."""
    with open(DATA / "expected.csv") as f:
        return {r["onnx"]: r["expected"] for r in csv.DictReader(f) if r["vnnlib"] == "test_prop.vnnlib"}


def swap(path: Path, src: Path) -> None:
    """Replace ``path``'s bytes by ``src``'s, keeping ``path``'s size (the same here) and times."""
    st = os.stat(path)
    shutil.copyfile(src, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


def cli(*args: object, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torchlean.verify", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_published_references() -> None:
    """The attack's precondition: two networks of one size with opposite published verdicts."""
    assert published() == {"test_sat.onnx": "sat", "test_unsat.onnx": "unsat"}
    assert (DATA / "test_sat.onnx").stat().st_size == (DATA / "test_unsat.onnx").stat().st_size
    assert (DATA / "test_sat.onnx").read_bytes() != (DATA / "test_unsat.onnx").read_bytes()


# -- the import cache ---------------------------------------------------------------------------

def test_load_target_is_of_the_bytes_now(tmp_path: Path) -> None:
    """A cached import is returned only for the same bytes: after a same-size, same-time swap the
    target is the fresh import of the new file (fingerprint), not the old one."""
    net = tmp_path / "net.onnx"
    shutil.copy(DATA / "test_unsat.onnx", net)
    first = table.load_target(net)
    assert table.load_target(net) is first  # (the cache still works for unchanged bytes)
    swap(net, DATA / "test_sat.onnx")
    second = table.load_target(net)
    fresh = table.target(network.load_graph(DATA / "test_sat.onnx"))
    assert table.network_id(second) == table.network_id(fresh) != table.network_id(first)


def test_runtime_session_is_of_the_imported_bytes(tmp_path: Path) -> None:
    """onnxruntime's cross-check runs the bytes that were imported: a file swapped after the import
    (same size and time) is a disagreement, never a session of other bytes agreeing with a stale
    import (here both would be the old network)."""
    pytest.importorskip("onnxruntime")
    net = tmp_path / "net.onnx"
    shutil.copy(DATA / "test_unsat.onnx", net)
    t, spec = table.load_instance(net, DATA / "test_prop.vnnlib")
    assert t.runtime_checked
    x = [(a + b) / 2 for a, b in zip(spec.regions[0].lo, spec.regions[0].hi)]
    assert table.runtime_refutes(t, x) is None
    swap(net, DATA / "test_sat.onnx")
    assert "changed since it was imported" in (table.runtime_refutes(t, x) or "")


def test_run_csv_twice_in_one_process(tmp_path: Path) -> None:
    """A program calling ``run_csv`` for two lists naming one network file, replaced between them
    (same size and time): the second row is the new network's published verdict."""
    d = tmp_path / "w"
    d.mkdir()
    shutil.copy(DATA / "test_unsat.onnx", d / "net.onnx")
    for name in ("prop.vnnlib", "prop2.vnnlib"):
        shutil.copy(DATA / "test_prop.vnnlib", d / name)
    (d / "one.csv").write_text("net.onnx,prop.vnnlib,60\n")
    (d / "two.csv").write_text("net.onnx,prop2.vnnlib,60\n")
    r1 = runner.run_csv(d / "one.csv", out=str(d / "one_res.csv"), progress=False)
    assert (r1[0]["result"], r1[0]["check"]) == (published()["test_unsat.onnx"], "accepted")
    swap(d / "net.onnx", DATA / "test_sat.onnx")
    r2 = runner.run_csv(d / "two.csv", out=str(d / "two_res.csv"), progress=False)
    assert r2[0]["result"] == published()["test_sat.onnx"]
    assert r2[0]["onnx_sha256"] == runner.file_digest(DATA / "test_sat.onnx")


def test_cli_run_network_replaced_between_instances(tmp_path: Path) -> None:
    """``verify run`` over a list naming net.onnx twice, the file swapped (same size and time) while
    another instance runs: each row has its network's published verdict, and a rerun reuses only
    rows that are right (row 1 is rerun: its digest is no longer the file's)."""
    shutil.copy(DATA / "test_unsat.onnx", tmp_path / "net.onnx")
    for name in ("prop.vnnlib", "prop2.vnnlib"):
        shutil.copy(DATA / "test_prop.vnnlib", tmp_path / name)
    shutil.copy(ACAS / "ACASXU_run2a_1_9_batch_2000.onnx", tmp_path / "mid.onnx")
    shutil.copy(ACAS / "prop_7.vnnlib", tmp_path / "mid.vnnlib")
    (tmp_path / "list.csv").write_text("onnx,vnnlib,timeout,expected\nnet.onnx,prop.vnnlib,60,unsat\n"
                                       "mid.onnx,mid.vnnlib,20,\nnet.onnx,prop2.vnnlib,60,sat\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "torchlean.verify", "run", "list.csv", "--out", "res.csv"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    seen = []
    for line in p.stdout:  # type: ignore[union-attr]
        seen.append(line)
        if line.startswith("[1/3]"):  # (the mid instance loads for about a second: time to swap)
            swap(tmp_path / "net.onnx", DATA / "test_sat.onnx")
    assert p.wait(timeout=240) == 0, seen
    res = rows(tmp_path / "res.csv")
    assert [r["result"] for r in res[::2]] == ["unsat", "sat"], seen
    assert [r["agree"] for r in res[::2]] == ["yes", "yes"]
    again = cli("run", tmp_path / "list.csv", "--out", tmp_path / "res.csv", "-q")
    assert again.returncode == 0 and "rerunning 1 rows" in again.stderr
    assert [r["result"] for r in rows(tmp_path / "res.csv")[::2]] == ["sat", "sat"]


# -- weights in an external file ----------------------------------------------------------------

def _external(src: Path, dst: Path) -> None:
    onnx = pytest.importorskip("onnx")
    onnx.save_model(onnx.load(str(src)), str(dst), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)


def test_external_weights_are_refused(tmp_path: Path) -> None:
    """A network whose weights are in another file: refused in one line by verify, check and run
    (the table's digest, and a certificate's file name, would cover the .onnx file alone). The
    attack it stops: the weights file swapped for test_sat's, a rerun reused ``unsat``."""
    a, b, w = (tmp_path / n for n in "abw")
    for d in (a, b, w):
        d.mkdir()
    _external(DATA / "test_unsat.onnx", a / "net.onnx")
    _external(DATA / "test_sat.onnx", b / "net.onnx")
    assert (a / "net.onnx").read_bytes() == (b / "net.onnx").read_bytes()  # (only the weights differ)
    shutil.copy(a / "net.onnx", w / "net.onnx")
    shutil.copy(a / "weights.bin", w / "weights.bin")
    shutil.copy(DATA / "test_prop.vnnlib", w / "prop.vnnlib")
    (w / "list.csv").write_text("net.onnx,prop.vnnlib,60\n")
    r = cli(w / "net.onnx", w / "prop.vnnlib", "--timeout", 60)
    assert r.returncode == 2 and r.stdout == "" and "external file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli("run", w / "list.csv", "--out", w / "res.csv", "-q")
    assert r.returncode == 2 and rows(w / "res.csv")[0]["result"] == "error"
    shutil.copy(b / "weights.bin", w / "weights.bin")
    cli("run", w / "list.csv", "--out", w / "res.csv", "-q")
    assert rows(w / "res.csv")[0]["result"] not in ("unsat", "sat")


# -- rows made elsewhere (worker processes, Ray nodes) ------------------------------------------

def _row(paths: tuple[Path, Path], **kw: str) -> dict[str, str]:
    r = {"result": "unsat", "check": "accepted", "mode": "fast", "onnx_sha256": runner.file_digest(paths[0]),
         "vnnlib_sha256": runner.file_digest(paths[1]), "torchlean": runner.source_digest()}
    return {**r, **kw}


def test_worker_row_bound_to_this_machine() -> None:
    """``_as_here``: a worker's row stands only with this machine's file and code digests."""
    paths = (DATA / "test_unsat.onnx", DATA / "test_prop.vnnlib")
    assert runner._as_here(_row(paths), paths) == _row(paths)
    for key, other in [("torchlean", "0" * 16), ("onnx_sha256", runner.file_digest(DATA / "test_sat.onnx")),
                       ("vnnlib_sha256", "0" * 64)]:
        got = runner._as_here(_row(paths, **{key: other}), paths)
        assert got["result"] == runner.ERROR and "do not match this machine's" in got["check"]
    err = {"result": runner.ERROR, "check": "error: x"}
    assert runner._as_here(err, paths) is err


class _OtherNode:
    """A pool whose 'node' sees other files at the listed paths: test_sat where this machine has
    test_unsat (a Ray node with another checkout of the benchmark)."""

    def __init__(self, jobs: int = 1, ray: str | None = None) -> None:
        pass

    def __enter__(self) -> _OtherNode:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map_unordered(self, fn, calls):  # noqa: ANN001, ANN201
        for i, (net, prop, *rest) in enumerate(calls):
            there = Path(str(net).replace("/here/", "/there/"))
            yield i, fn(there, prop, *rest)


def test_row_from_a_node_with_other_files_is_an_error(tmp_path: Path, monkeypatch) -> None:
    for side, net in (("here", "test_unsat.onnx"), ("there", "test_sat.onnx")):
        (tmp_path / side).mkdir()
        shutil.copy(DATA / net, tmp_path / side / "net.onnx")
    shutil.copy(DATA / "test_prop.vnnlib", tmp_path / "here" / "prop.vnnlib")
    (tmp_path / "here" / "list.csv").write_text("net.onnx,prop.vnnlib,60\n")
    monkeypatch.setattr(runner, "Pool", _OtherNode)
    got = runner.run_csv(tmp_path / "here" / "list.csv", progress=False, jobs=2, ray="fake")
    assert got[0]["result"] == runner.ERROR and "network" in got[0]["check"]
    assert published()["test_unsat.onnx"] == "unsat"  # (the worker's sat was about the other file)


def test_worker_processes_with_other_code_give_errors(tmp_path: Path, monkeypatch) -> None:
    """``-j 2``: real worker processes (fresh interpreters of this code) whose code digest is not
    the parent's (the parent's patched): every row is an error; unpatched, the published verdicts."""
    for net in ("test_sat.onnx", "test_unsat.onnx"):
        shutil.copy(DATA / net, tmp_path / net)
    shutil.copy(DATA / "test_prop.vnnlib", tmp_path / "prop.vnnlib")
    (tmp_path / "list.csv").write_text("test_sat.onnx,prop.vnnlib,60\ntest_unsat.onnx,prop.vnnlib,60\n")
    good = runner.run_csv(tmp_path / "list.csv", progress=False, jobs=2)
    assert [r["result"] for r in good] == [published()["test_sat.onnx"], published()["test_unsat.onnx"]]
    monkeypatch.setattr(runner, "source_digest", lambda: "0" * 16)
    bad = runner.run_csv(tmp_path / "list.csv", progress=False, jobs=2)
    assert [r["result"] for r in bad] == [runner.ERROR] * 2
    assert all("torchlean code" in r["check"] for r in bad)


# -- interrupted and timed-out commands (held) --------------------------------------------------

@pytest.mark.parametrize("sig", ["INT", "TERM"])
def test_interrupted_verify_leaves_no_certificate(tmp_path: Path, sig: str) -> None:
    """A signal during the search of an instance that takes seconds (ACAS Xu 1_1 prop_6, unsat,
    ~5000 boxes): no verdict on stdout, no certificate, the stale one removed (the inputs loaded
    first), no temporary file left."""
    cert = tmp_path / "c.json"
    cert.write_text('{"kind": "vnn-unsat"}')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    net, prop = ACAS / "ACASXU_run2a_1_1_batch_2000.onnx", ACAS / "prop_6.vnnlib"
    p = subprocess.Popen([sys.executable, "-m", "torchlean.verify", str(net), str(prop), "--timeout", "100",
                          "--cert", str(cert), "--progress"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         # (a job started in the background by a non-interactive shell, as a CI
                         # runner may start pytest, inherits SIGINT ignored, and Python then keeps
                         # it ignored: the child is given the default a terminal's Ctrl-C meets)
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.monotonic()
    while cert.exists() and time.monotonic() - t0 < 60:  # (dropped once the inputs have loaded)
        time.sleep(0.02)
    time.sleep(0.3)
    p.send_signal(getattr(signal, f"SIG{sig}"))
    out, err = p.communicate(timeout=60)
    assert out == "" and not cert.exists(), (out, err)
    assert p.returncode == (130 if sig == "INT" else -signal.SIGTERM)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> dict:
    """test_unsat's own certificate (a split tree), accepted by ``check``."""
    d = tmp_path_factory.mktemp("cert")
    r = cli(DATA / "test_unsat.onnx", DATA / "test_prop.vnnlib", "--timeout", 100, "--cert", d / "c.json",
            "-q")
    assert r.stdout.strip() == published()["test_unsat.onnx"]
    c = json.loads((d / "c.json").read_text())
    assert c["kind"] == "vnn-unsat"
    return c


def _check(tmp: Path, text: str, *extra: object) -> subprocess.CompletedProcess:
    f = tmp / "c.json"
    f.write_text(text)
    return cli("check", f, DATA / "test_unsat.onnx", DATA / "test_prop.vnnlib", *extra)


def test_check_rejects_every_truncation(cert: dict, tmp_path: Path) -> None:
    text = json.dumps(cert, separators=(",", ":"))
    assert _check(tmp_path, text).returncode == 0
    for n in sorted({1, len(text) // 3, len(text) // 2, len(text) - 2, len(text) - 1}):
        r = _check(tmp_path, text[:n])
        assert r.returncode != 0 and not r.stdout.startswith("accepted")


def test_check_requires_coverage(cert: dict, tmp_path: Path) -> None:
    """A tree of one split (X_3 at 2/5, inside its box [0.3, 0.5]) with the root's proof (a
    weaker claim) in both halves is accepted; the same tree with the upper half left out, or with
    the split moved outside the box, is rejected."""
    (tree,) = cert["regions"]
    assert len(tree) == 1 and tree[0][0] == "leaf"  # (test_unsat closes at the root)

    def with_tree(t: list) -> str:
        return json.dumps({**cert, "regions": [t]})

    leaf = ["leaf", [[tree[0][1][0][0], "1/10000000"]]]  # (a weaker claim: CROWN is not monotone)
    split = [["split", 3, "2/5"], leaf, leaf]
    assert _check(tmp_path, with_tree(split)).returncode == 0
    for bad in (split[:2], [["split", 3, "1000"], leaf, leaf]):
        r = _check(tmp_path, with_tree(bad))
        assert r.returncode == 1 and r.stdout.startswith("rejected"), (bad, r.stdout)


def test_check_needs_one_tree_per_region(cert: dict, tmp_path: Path) -> None:
    """A certificate whose region list is not the property's (one tree too many, none) is refused."""
    for regions in (cert["regions"] * 2, []):
        r = _check(tmp_path, json.dumps({**cert, "regions": regions}))
        assert r.returncode == 1 and "one split tree per input region" in r.stdout


def test_check_stopped_by_its_timeout_is_not_accepted(cert: dict, tmp_path: Path) -> None:
    r = _check(tmp_path, json.dumps(cert), "--timeout", "1e-9", "--mode", "exact")
    assert r.returncode == 1 and r.stdout.startswith("rejected") and "deadline" in r.stdout


@pytest.mark.parametrize("ext", [".onnx", ".json", ".textproto"])
def test_import_from_the_bytes_read_is_onnx_load(tmp_path: Path, ext: str) -> None:
    """The loader parses the bytes it read and hashed (``network_bytes``) as ``onnx.load(path)``
    would (the serialization its extension names): the same graph as ``load_onnx(path)``."""
    onnx = pytest.importorskip("onnx")
    from torchlean.bridge.onnx import load_onnx

    for src in (DATA / "test_sat.onnx", ACAS / "ACASXU_run2a_1_1_batch_2000.onnx"):
        f = tmp_path / f"m{ext}"
        onnx.save_model(onnx.load(str(src)), str(f))
        assert network.load_graph(f).fingerprint() == load_onnx(str(f)).fingerprint()
        data, digest = network.network_bytes(f)
        assert data == f.read_bytes() and digest == runner.file_digest(f)
