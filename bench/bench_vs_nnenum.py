"""torchlean against nnenum on the same instances, in the same run (issue 15).

    OPENBLAS_NUM_THREADS=1 python bench/bench_vs_nnenum.py INSTANCES.csv [INSTANCES.csv ...] --timeout 30
        [--limit N] [--out bench/results_vs_nnenum.csv] [--meta META.csv]
        [--nnenum-python /work/venv-nnenum/bin/python] [--nnenum-src /work/nnenum-src/src]
    python bench/bench_vs_nnenum.py --table bench/results_vs_nnenum.csv [--by family]    # the tables of a run

INSTANCES.csv: a VNN-COMP ``instances.csv`` (onnx,vnnlib,timeout; e.g. one made by
``bench/gen_instances.py``, whose ``meta.csv`` beside it gives each row's kind and the verdict the
generator knows) or a shared ``expected.csv`` (header onnx,vnnlib,expected,...: the published
verdict; the kind is the benchmark folder's name). Paths are relative to the CSV's folder.

Each instance runs both tools one after the other, in separate processes, with the same timeout
(the one given, not the CSV's), the order alternating from instance to instance so machine load
hits both alike: torchlean as ``python -m torchlean.verify NET PROP --timeout T`` (it prints
sat/unsat only after its checker accepted the certificate; each sat is also re-run in onnxruntime,
column ``ort``), nnenum as ``python -m nnenum.nnenum NET PROP T OUT`` in its own environment
(its VNN-COMP settings: ``auto``, processes = cores, single-threaded BLAS). Both run in their own
session, killed with every process of their group at T + ``GRACE_S`` (and the group's leftovers
when they exit: nnenum's workers would outlive it). Times are wall times including each tool's
start-up (torchlean ~2 s, nnenum ~1.5 s), and T is a strict wall clock for both, as in VNN-COMP:
an answer given after T counts as a timeout (``note``: "over T" with the late verdict).

A sat from one tool and an unsat from the other is WRONG, and so is a verdict that contradicts
the known one (published, or a generator's witness): the ``wrong`` column names the side(s).

nnenum is a benchmark reference only (never a torchlean dependency). To install it here:

    git clone <github: stanleybak/nnenum> /work/nnenum-src
    python -m venv /work/venv-nnenum
    /work/venv-nnenum/bin/pip install numpy scipy threadpoolctl onnx onnxruntime skl2onnx swiglpk termcolor
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_vnncomp import GRACE_S, pick, run_group, run_one  # noqa: E402  (one runner for torchlean's CLI)

FIELDS = ["kind", "family", "onnx", "vnnlib", "expected", "torchlean", "torchlean_s", "ort", "nnenum",
          "nnenum_s", "wrong", "note"]
NNENUM_VERDICT = {"holds": "unsat", "violated": "sat", "timeout": "timeout"}
INSTALL = ("see the install steps in bench/bench_vs_nnenum.py's docstring (a clone of stanleybak/nnenum "
           "and a venv with numpy scipy onnx onnxruntime skl2onnx swiglpk termcolor)")


def run_nnenum(py: str, src: str, onnx: Path, prop: Path, timeout: float) -> tuple[str, float, str]:
    """nnenum's verdict (sat/unsat/timeout/error), wall time, and a note (its last error line)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.txt"
        env = {**os.environ, "PYTHONPATH": src, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        cmd = [py, "-m", "nnenum.nnenum", str(onnx), str(prop), repr(float(timeout)), str(out)]
        t = time.perf_counter()
        rc, stdout, stderr = run_group(cmd, timeout + GRACE_S, env, cwd=src)  # (its workers die with it)
        if rc is None:
            return "timeout", time.perf_counter() - t, "killed"
        wall = time.perf_counter() - t
        text = out.read_text().strip() if out.is_file() else ""
        verdict = NNENUM_VERDICT.get(text, "error")
        note = ""
        if verdict == "error":
            lines = [s for s in (stderr + stdout).strip().splitlines() if not s.startswith("All entries")]
            note = (lines or [text or "?"])[-1][:120]
        elif wall > timeout and verdict != "timeout":  # the rule torchlean's run_one applies
            verdict, note = "timeout", f"over T ({text} at {wall:.2f} s)"
        return verdict, wall, note


def read_rows(path: Path, meta: Path | None, limit: int | None) -> list[dict[str, str]]:
    """The instance rows with their kind and expected verdict (``meta.csv`` of a generated list)."""
    from torchlean.verify.runner import read_instances

    rows = pick(read_instances(path), limit)
    meta = meta or (path.parent / "meta.csv")
    known: dict[tuple[str, str], dict[str, str]] = {}
    if meta.is_file() and path.name != "meta.csv":
        with open(meta) as f:
            known = {(r["onnx"], r["vnnlib"]): r for r in csv.DictReader(f)}
    for r in rows:
        m = known.get((r["onnx"], r["vnnlib"]), {})
        if m.get("sha256"):  # the generated files should be the ones the list was made with
            f1, f2 = path.parent / r["vnnlib"], path.parent / r["onnx"]
            ok = f1.is_file() and f2.is_file()
            got = hashlib.sha256(f1.read_bytes() + f2.read_bytes()).hexdigest()[:16] if ok else "missing"
            if got != m["sha256"]:
                print(f"warning: {r['vnnlib']}: {got} is not the listed file (sha256 {m['sha256']}); "
                      f"regenerate with the command in bench/instances/README.md", file=sys.stderr)
        r["kind"] = r.get("kind") or m.get("kind") or path.parent.name
        r["family"] = r.get("family") or m.get("family") or path.parent.name
        r["expected"] = r.get("expected") or m.get("expected", "")
        r["base"] = str(path.parent.resolve())
    return rows


def wrong(expected: str, tl: str, nn: str) -> str:
    """Which side(s) gave a verdict contradicting the other tool or the known one."""
    solved = {k: v for k, v in (("torchlean", tl), ("nnenum", nn)) if v in ("sat", "unsat")}
    if expected in ("sat", "unsat"):
        bad = [k for k, v in solved.items() if v != expected]
        return "+".join(bad)
    if len(set(solved.values())) == 2:
        return "torchlean|nnenum (no known verdict)"
    return ""


def summarise(rows: list[dict[str, str]], by: str = "kind") -> str:
    """Per kind or family (``by``; and in all): solved counts, sums of solve times and their ratio,
    and wins."""
    head = (f"| {by} | n | torchlean solved (sat/unsat) | nnenum solved (sat/unsat) | WRONG | torchlean s "
            "| nnenum s | ratio tl/nnenum | both solved: tl s / nnenum s | nnenum only | torchlean only |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    groups: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault(r.get(by) or r["kind"], []).append(r)
    if len(groups) > 1:
        groups["all"] = rows
    lines = []

    def ok(r: dict[str, str], tool: str) -> bool:
        return r[tool] in ("sat", "unsat") and tool not in r["wrong"]

    def cnt(rs: list[dict[str, str]], tool: str) -> str:
        s = [r for r in rs if ok(r, tool)]
        return f"{len(s)} ({sum(r[tool] == 'sat' for r in s)}/{sum(r[tool] == 'unsat' for r in s)})"

    for kind, rs in groups.items():

        ts = sum(float(r["torchlean_s"]) for r in rs if ok(r, "torchlean"))
        ns = sum(float(r["nnenum_s"]) for r in rs if ok(r, "nnenum"))
        both = [r for r in rs if ok(r, "torchlean") and ok(r, "nnenum")]
        bt, bn = sum(float(r["torchlean_s"]) for r in both), sum(float(r["nnenum_s"]) for r in both)
        lines.append(
            f"| {kind} | {len(rs)} | {cnt(rs, 'torchlean')} | {cnt(rs, 'nnenum')} "
            f"| {sum(bool(r['wrong']) for r in rs)} "
            f"| {ts:.1f} | {ns:.1f} | {ts / ns if ns else float('nan'):.2f} "
            f"| {bt:.1f} / {bn:.1f} ({bt / bn if bn else float('nan'):.2f}) "
            f"| {sum(ok(r, 'nnenum') and not ok(r, 'torchlean') for r in rs)} "
            f"| {sum(ok(r, 'torchlean') and not ok(r, 'nnenum') for r in rs)} |")
    return head + "\n".join(lines) + "\n"


def targets(rows: list[dict[str, str]]) -> str:
    """The instances to work on: nnenum solved and torchlean did not, or nnenum was over 1.5x faster;
    and a known sat (published, or the generator's witness) that torchlean did not find."""
    out = []
    for r in rows:
        tl_ok, nn_ok = r["torchlean"] in ("sat", "unsat"), r["nnenum"] in ("sat", "unsat")
        where = f"{r['kind']}: {Path(r['onnx']).name} {r['vnnlib']}"
        if nn_ok and (not tl_ok or float(r["torchlean_s"]) > 1.5 * float(r["nnenum_s"])):
            ratio = float(r["torchlean_s"]) / float(r["nnenum_s"])
            why = "unsolved by torchlean" if not tl_ok else f"{ratio:.1f}x slower"
            out.append(f"- {where}: nnenum {r['nnenum']} in {r['nnenum_s']} s, "
                       f"torchlean {r['torchlean']} in {r['torchlean_s']} s ({why})")
        elif r["expected"] == "sat" and not tl_ok:
            out.append(f"- {where}: known sat, torchlean {r['torchlean']} in {r['torchlean_s']} s "
                       f"(nnenum {r['nnenum']} in {r['nnenum_s']} s)")
    return "\n".join(out) + ("\n" if out else "")


def _write(path: str, rows: list[dict[str, str]]) -> None:
    from torchlean._files import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("instances", nargs="*", help="instances.csv or expected.csv files")
    ap.add_argument("--timeout", type=float, default=30.0, help="per tool and instance, seconds")
    ap.add_argument("--limit", type=int, default=None, help="instances per CSV, evenly spaced")
    ap.add_argument("--meta", default=None, help="meta.csv of a generated list (default: beside it)")
    ap.add_argument("--out", default=str(ROOT / "bench/results_vs_nnenum.csv"))
    ap.add_argument("--nnenum-python", default="/work/venv-nnenum/bin/python")
    ap.add_argument("--nnenum-src", default="/work/nnenum-src/src")
    ap.add_argument("--table", metavar="RESULTS_CSV", help="print the tables of a results CSV and exit")
    ap.add_argument("--by", choices=("kind", "family"), default="kind", help="the table's grouping")
    a = ap.parse_args()
    if a.table:
        with open(a.table) as f:
            rows = list(csv.DictReader(f))
        print(summarise(rows, a.by) + "\ntargets (nnenum wins; known sat missed):\n" + targets(rows), end="")
        return 0
    if not a.instances:
        print("error: give an instances CSV (or --table RESULTS_CSV)", file=sys.stderr)
        return 2
    if not Path(a.nnenum_python).is_file() or not (Path(a.nnenum_src) / "nnenum/nnenum.py").is_file():
        print(f"error: nnenum not found ({a.nnenum_python}, {a.nnenum_src}): {INSTALL}", file=sys.stderr)
        return 2
    try:
        meta = Path(a.meta) if a.meta else None
        todo = [r for p in a.instances for r in read_rows(Path(p), meta, a.limit)]
    except ValueError as e:  # (InputError: one line naming the file and line)
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows: list[dict[str, str]] = []
    for i, r in enumerate(todo):
        base = Path(r["base"])
        res: dict[str, tuple[str, float, str]] = {}
        for tool in (("torchlean", "nnenum") if i % 2 == 0 else ("nnenum", "torchlean")):
            if tool == "torchlean":
                inst = {"onnx": r["onnx"], "vnnlib": r["vnnlib"], "expected": r["expected"]}
                t = run_one(base, inst, a.timeout, ())
                res[tool] = (t["result"], float(t["wall_s"]), t["note"])
                ort = t["ort"]
            else:
                res[tool] = run_nnenum(a.nnenum_python, a.nnenum_src, base / r["onnx"], base / r["vnnlib"],
                                       a.timeout)
        tl, nn = res["torchlean"][0], res["nnenum"][0]
        row = {"kind": r["kind"], "family": r["family"], "onnx": r["onnx"], "vnnlib": r["vnnlib"],
               "expected": r["expected"],
               "torchlean": tl, "torchlean_s": f"{res['torchlean'][1]:.2f}", "ort": ort,
               "nnenum": nn, "nnenum_s": f"{res['nnenum'][1]:.2f}", "wrong": wrong(r["expected"], tl, nn),
               "note": "; ".join(f"{k}: {v[2]}" for k, v in res.items() if v[2])}
        if ort == "NO":  # a torchlean sat onnxruntime does not reproduce: flag it
            row["wrong"] = (row["wrong"] + "+" if row["wrong"] else "") + "torchlean(ort)"
        rows.append(row)
        _write(a.out, rows)
        print(f"[{i + 1}/{len(todo)}] {r['kind']} {Path(r['onnx']).name} {Path(r['vnnlib']).name}: "
              f"torchlean {tl} {row['torchlean_s']} s | nnenum {nn} {row['nnenum_s']} s"
              f"{' | expected ' + r['expected'] if r['expected'] else ''}"
              f"{' | WRONG: ' + row['wrong'] if row['wrong'] else ''}"
              f"{' | ' + row['note'] if row['note'] else ''}",
              flush=True)
    print()
    print(summarise(rows, a.by) + "\ntargets (nnenum wins; known sat missed):\n" + targets(rows), end="")
    return 1 if any(r["wrong"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
