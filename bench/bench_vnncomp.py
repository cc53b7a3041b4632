"""Every shared VNN-COMP benchmark through the CLI: verdicts against the published ones, per benchmark.

    OPENBLAS_NUM_THREADS=1 python bench/bench_vnncomp.py [--benchmark acasxu,mnistfc] [--timeout 20]
        [--limit 8] [--data /work/shared/data] [--out bench/results_vnncomp.csv]
    python bench/bench_vnncomp.py --table bench/results_vnncomp.csv     # the tables of a run

Reads ``vnncomp20{21,22}/*/expected.csv`` (onnx, vnnlib, expected and the published nnenum and
alpha-beta-CROWN times), runs ``python -m torchlean.verify NET PROP --timeout T`` on each instance in
its own process, and prints per benchmark: instances run, solved sat/unsat, WRONG (a verdict
opposite to the published one; must be 0), timeouts/unknown, errors (the CLI refused the network or
property: unsupported), median and total wall time of the solved instances, next to
the number of the same instances nnenum and alpha-beta-CROWN solved (a published time) and their
total time. The CLI prints sat/unsat only after ``check_vnn`` accepted the certificate.

T is each instance's wall clock, as in VNN-COMP: the CLI's ``--timeout`` covers its start-up,
loading, search and replay (``torchlean.verify.budget``), column ``wall_s`` is the process's wall
time from start to exit, and an instance whose answer came later than T counts as a timeout (note
"over T", the verdict it gave after it kept in ``late``). The process is killed at T + ``GRACE_S``.

Every sat counterexample is also run through onnxruntime (float32, the network's own ONNX file) and
the property is evaluated on its outputs in float: column ``ort`` counts the counterexamples that
onnxruntime agrees violate the property.

``--limit N`` keeps N instances per benchmark, evenly spaced over its csv (so several networks are
touched), to bound the run's time.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIELDS = ["benchmark", "onnx", "vnnlib", "expected", "result", "agree", "wall_s", "ort", "note",
          "nnenum_s", "abcrown_s", "late"]
#: a process still running this long after its timeout is killed (the CLI answers by T itself)
GRACE_S = 5.0


def run_group(cmd: list[str], timeout: float, env: dict[str, str], cwd: str | None = None
              ) -> tuple[int | None, str, str]:
    """(exit status, or None when still running at ``timeout``; stdout; stderr) of ``cmd`` run in its own
    session, whose whole process group is killed at the timeout and when this returns or raises:
    a tool's worker processes (nnenum starts one per core) would otherwise outlive a killed parent
    and load the machine for the next instances (issue 15)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
                         start_new_session=True)
    end = time.monotonic() + timeout
    try:
        while True:
            try:
                out, err = p.communicate(timeout=min(1.0, max(0.0, end - time.monotonic())))
                return p.returncode, out, err
            except subprocess.TimeoutExpired:
                # the tool exited while workers it left keep its pipes open, or the time is up
                if p.poll() is not None or time.monotonic() >= end:
                    rc = p.poll()
                    _kill_group(p.pid)
                    out, err = p.communicate()  # (the group is gone: its pipes are closed)
                    return rc, out, err
    finally:
        _kill_group(p.pid)  # workers left behind by a normal exit, or an interrupted wait
        if p.poll() is None:
            p.wait()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # (the group has already exited)
        pass


def benchmarks(data: Path) -> dict[str, Path]:
    """name -> expected.csv, for every benchmark folder of the shared data."""
    out = {}
    for year in ("vnncomp2021", "vnncomp2022"):
        for p in sorted((data / year).glob("*/expected.csv")):
            out[p.parent.name] = p
    return out


def pick(rows: list[dict[str, str]], limit: int | None) -> list[dict[str, str]]:
    """``limit`` rows evenly spaced over the list (all of them without a limit)."""
    if not limit or limit >= len(rows):
        return rows
    return [rows[(i * len(rows)) // limit] for i in range(limit)]


def parse_result(text: str) -> tuple[str, list[float] | None]:
    """The verdict of a VNN-COMP result text and, for sat, the X values in order."""
    lines = text.strip().splitlines()
    if not lines:
        return "error", None
    verdict = lines[0].strip()
    if verdict != "sat":
        return verdict, None
    xs = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"\(X_(\d+)\s+([^\s)]+)\)", text)}
    return verdict, [xs[i] for i in range(len(xs))]


def ort_violates(onnx_path: Path, vnnlib_path: Path, x: list[float]) -> bool:
    """Does onnxruntime's float32 output at x (rounded to float32) satisfy the unsafe set (float
    comparison), x being in the property's box?"""
    import numpy as np
    import onnxruntime as ort

    from torchlean.certificates.property import parse_property

    spec = parse_property(vnnlib_path.read_text())
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # (initializers listed as inputs: a warning per weight otherwise)
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    xa = np.array(x, dtype=np.float32).reshape(shape)
    y = np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in sess.run(None, {inp.name: xa})])
    # box membership on the reported values (a box side that is one decimal holds no float32:
    # the point is then exact there and onnxruntime sees its float32 rounding)
    xq = np.array(x, dtype=np.float64)
    for r in spec.regions:
        if all(float(lo) <= v <= float(hi) for lo, v, hi in zip(r.lo, xq, r.hi)):
            for d in r.disjuncts:
                if all((sum(float(a) * v for a, v in zip(t.a, y)) < float(t.b)) if t.strict
                       else (sum(float(a) * v for a, v in zip(t.a, y)) <= float(t.b)) for t in d):
                    return True
    return False


def run_one(base: Path, row: dict[str, str], timeout: float, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """One instance through the CLI (``extra``: more of its options, e.g. ``("--engine", "table")``)."""
    onnx, prop = base / row["onnx"], base / row["vnnlib"]
    with tempfile.TemporaryDirectory() as tmp:
        res = Path(tmp) / "result.txt"
        cmd = [sys.executable, "-m", "torchlean.verify", str(onnx), str(prop), "--timeout", str(timeout),
               "-q", "--result", str(res), *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
        t = time.perf_counter()
        rc, _, err = run_group(cmd, timeout + GRACE_S, env)
        wall = time.perf_counter() - t
        if rc is None:
            verdict, x, note = "timeout", None, "killed"
        else:
            text = res.read_text() if res.is_file() else ""
            verdict, x = parse_result(text) if rc == 0 else ("error", None)
            note = "" if rc == 0 else (err.strip().splitlines() or ["?"])[-1][:120]
    late = ""
    if wall > timeout and verdict not in ("timeout", "error"):  # an answer after T is none
        late, verdict, x, note = verdict, "timeout", None, f"over T ({verdict} at {wall:.2f} s)"
    exp = row.get("expected", "")
    agree = ""
    if verdict in ("sat", "unsat") and exp in ("sat", "unsat"):
        agree = "yes" if verdict == exp else "WRONG"
    ort = ""
    if verdict == "sat" and x is not None:
        try:
            ort = "yes" if ort_violates(onnx, prop, x) else "NO"
        except Exception as e:  # onnxruntime refusing the file is a finding, not a crash
            ort = f"error: {type(e).__name__}"
    return {"onnx": row["onnx"], "vnnlib": row["vnnlib"], "expected": exp, "result": verdict,
            "agree": agree, "wall_s": f"{wall:.2f}", "ort": ort, "note": note, "late": late}


def _published(row: dict[str, str], tool: str) -> str:
    for k, v in row.items():
        if k.startswith(tool + "_20") and k.endswith("_s"):
            return v.strip()
    return ""


def summarise(results: list[dict[str, str]], timeout: float | None = None) -> str:
    """One markdown table: a row per benchmark."""
    head = ("| benchmark | run | sat | unsat | WRONG | timeout/unknown | error | median s | total s "
            "| ort agrees | nnenum solved (total s) | abcrown solved (total s) |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    lines = []
    by: dict[str, list[dict[str, str]]] = {}
    for r in results:
        by.setdefault(r["benchmark"], []).append(r)
    for name, rs in by.items():
        solved = [r for r in rs if r["result"] in ("sat", "unsat") and r["agree"] != "WRONG"]
        times = [float(r["wall_s"]) for r in solved]
        sats = [r for r in rs if r["result"] == "sat"]
        pub = []
        for tool in ("nnenum_s", "abcrown_s"):
            ts = [float(r[tool]) for r in rs if r.get(tool)]
            pub.append(f"{len(ts)} ({sum(ts):.1f})")
        lines.append(
            f"| {name} | {len(rs)} | {sum(r['result'] == 'sat' for r in rs)} "
            f"| {sum(r['result'] == 'unsat' for r in rs)} | {sum(r['agree'] == 'WRONG' for r in rs)} "
            f"| {sum(r['result'] in ('timeout', 'unknown') for r in rs)} "
            f"| {sum(r['result'] == 'error' for r in rs)} "
            f"| {statistics.median(times) if times else 0:.2f} | {sum(times):.1f} "
            f"| {sum(r['ort'] == 'yes' for r in sats)}/{len(sats)} | {pub[0]} | {pub[1]} |"
        )
    return head + "\n".join(lines) + "\n"


def _write(path: str, results: list[dict[str, str]]) -> None:
    from torchlean._files import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(results)
    atomic_write_text(path, buf.getvalue())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    ap.add_argument("--benchmark", default="", help="comma-separated names (default: all)")
    ap.add_argument("--timeout", type=float, default=20.0,
                    help="wall clock per instance (start-up, loading, search, replay), seconds")
    ap.add_argument("--limit", type=int, default=None, help="instances per benchmark, evenly spaced")
    ap.add_argument("--out", default=str(ROOT / "bench/results_vnncomp.csv"))
    ap.add_argument("--table", metavar="RESULTS_CSV", help="print the tables of a results CSV and exit")
    a = ap.parse_args()
    if a.table:
        with open(a.table) as f:
            print(summarise(list(csv.DictReader(f))), end="")
        return 0
    found = benchmarks(Path(a.data))
    names = [n for n in a.benchmark.split(",") if n] or list(found)
    missing = [n for n in names if n not in found]
    if missing:
        print(f"error: no benchmark {', '.join(missing)} under {a.data}", file=sys.stderr)
        return 2
    results: list[dict[str, str]] = []
    for name in names:
        path = found[name]
        with open(path) as f:
            rows = pick(list(csv.DictReader(f)), a.limit)
        for i, row in enumerate(rows):
            r = run_one(path.parent, row, a.timeout)
            r.update(benchmark=name, nnenum_s=_published(row, "nnenum"), abcrown_s=_published(row, "abcrown"))
            results.append(r)
            print(f"[{name} {i + 1}/{len(rows)}] {row['onnx']} {row['vnnlib']}: {r['result']} "
                  f"({r['wall_s']} s) expected {r['expected'] or '?'}"
                  f"{' ' + r['agree'] if r['agree'] else ''}{' ort ' + r['ort'] if r['ort'] else ''}"
                  f"{' | ' + r['note'] if r['note'] else ''}", flush=True)
            _write(a.out, results)
    print()
    print(summarise(results), end="")
    return 1 if any(r["agree"] == "WRONG" or r["ort"] == "NO" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
