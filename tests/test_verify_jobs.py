"""``python -m torchlean.verify run -j N``: worker processes give the serial run's results CSV (row
order and verdicts; against the published VNN-COMP 2021 verdicts too), a killed run resumes without
redoing finished instances, ``--force`` reruns them, bad ``-j`` and inputs are one-line errors."""

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest

ACAS = Path(__file__).parent / "data" / "vnncomp2021" / "acasxu"
ROWS = [  # (network, property): fast instances, two sat and two unsat, in VNN-COMP's expected.csv
    ("ACASXU_run2a_1_4_batch_2000.onnx", "prop_3.vnnlib"),
    ("ACASXU_run2a_1_4_batch_2000.onnx", "prop_2.vnnlib"),
    ("ACASXU_run2a_2_1_batch_2000.onnx", "prop_2.vnnlib"),
    ("ACASXU_run2a_1_4_batch_2000.onnx", "prop_4.vnnlib"),
]
#: a sat found after seconds of search: first in the list, it finishes after the others under -j 2
SLOW = ("ACASXU_run2a_1_9_batch_2000.onnx", "prop_7.vnnlib")
VERDICT_COLUMNS = ["onnx", "vnnlib", "timeout", "expected", "result", "check", "mode", "agree"]


def _instances(tmp_path: Path, rows=ROWS, timeout: int = 30) -> Path:
    """An instance list in tmp_path naming the shared test networks by absolute path."""
    p = tmp_path / "instances.csv"
    p.write_text("".join(f"{ACAS / n},{ACAS / q},{timeout}\n" for n, q in rows))
    return p


def _cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torchlean.verify", "run", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _published() -> dict[tuple[str, str], str]:
    return {(r["onnx"], r["vnnlib"]): r["expected"] for r in _read(ACAS / "expected.csv")}


def test_jobs_match_serial_run(tmp_path):
    rows = [SLOW, *ROWS[:3]]
    # (60 s: the timeout is each instance's whole wall clock, loading and replay included, and SLOW
    # searches ~2 s on a quiet machine, 15-25 s on a loaded 2-core one under -j 2)
    inst = _instances(tmp_path, rows, timeout=60)
    serial, par = tmp_path / "serial.csv", tmp_path / "par.csv"
    r = _cli(inst, "--out", serial, "-q")
    assert r.returncode == 0, r.stderr
    r = _cli(inst, "--out", par, "-q", "-j", "2")
    assert r.returncode == 0, r.stderr
    a, b = _read(serial), _read(par)
    assert list(a[0]) == list(b[0])  # same columns
    def verdicts(table):
        return [[row[k] for k in VERDICT_COLUMNS] for row in table]

    assert verdicts(a) == verdicts(b)
    assert [(Path(r["onnx"]).name, Path(r["vnnlib"]).name) for r in b] == rows  # the list's order
    pub = _published()
    assert [r["result"] for r in b] == [pub[k] for k in rows]  # not only equal: right
    assert all(r["check"] == "accepted" for r in b)


def test_killed_run_resumes_and_force_reruns(tmp_path):
    # a first instance that finishes at once, then one that takes seconds (a sat found after a long search)
    slow = SLOW
    inst = _instances(tmp_path, [ROWS[0], slow, slow], timeout=60)
    out = tmp_path / "res.csv"
    proc = subprocess.Popen([sys.executable, "-m", "torchlean.verify", "run", str(inst), "--out", str(out),
                             "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 120
        while not (out.exists() and len(_read(out)) >= 1) and time.monotonic() < end:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    first = _read(out)
    assert len(first) == 1 and first[0]["result"] == "unsat"
    # a half-written last row (as from a writer killed mid-line) is ignored, not an error
    with open(out, "a") as f:
        f.write(f"{ACAS / slow[0]},{ACAS / slow[1]},60,,uns")
    # resume with a list of the finished instance and a fast new one: only the new one runs
    inst = _instances(tmp_path, [ROWS[0], ROWS[1]], timeout=60)
    r = _cli(inst, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "skipped 1 of 2 instances" in r.stderr
    assert r.stdout.count("\n") == 1 and "prop_2.vnnlib: sat" in r.stdout  # one instance run
    rows = _read(out)
    assert rows[0] == first[0]  # kept as it was (same solve time)
    assert [x["result"] for x in rows] == ["unsat", "sat"]
    # all done: a rerun runs nothing; --force reruns both
    r = _cli(inst, "--out", out)
    assert r.returncode == 0 and "skipped 2 of 2" in r.stderr and r.stdout == ""
    r = _cli(inst, "--out", out, "--force", "-j", "2")
    assert r.returncode == 0, r.stderr
    assert "skipped" not in r.stderr and r.stdout.count("\n") == 2
    assert [x["result"] for x in _read(out)] == ["unsat", "sat"]
    # another timeout is another instance
    r = _cli(inst, "--out", out, "--timeout", "30")
    assert "skipped" not in r.stderr and r.stdout.count("\n") == 2


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_bad_jobs_refused_in_one_line(tmp_path, bad):
    r = _cli(_instances(tmp_path), "-j", bad, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "job count" in r.stderr


def test_unreadable_inputs_refused_in_one_line(tmp_path):
    r = _cli(tmp_path / "missing.csv", timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such file" in r.stderr
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    r = _cli(binary, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "UTF-8" in r.stderr
    out = tmp_path / "notes.txt"  # --out an existing file that is not a results CSV: not clobbered
    out.write_text("my notes\n")
    r = _cli(_instances(tmp_path), "--out", out, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a results CSV" in r.stderr
    assert out.read_text() == "my notes\n"
