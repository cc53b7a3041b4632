"""ACAS Xu (and other VNN-COMP 2021) instances: solved count, per-instance solve time and checker
replay time, next to the published 2021 times (nnenum_2021_s, abcrown_2021_s) and nnenum on a
2-core machine (acasxu/nnenum_this_machine.csv, wall_s).

    OPENBLAS_NUM_THREADS=1 python bench/bench_verify.py [--csv tests/data/vnncomp2021/acasxu/expected.csv]
        [--only 1_1,1_2] [--props 1,3] [--timeout 116] [--out bench/results_verify.csv]
    python bench/bench_verify.py --table bench/results_verify.csv     # the markdown table of a run

Prints one line per instance and a summary; writes the results CSV (atomically, after every
instance). A verdict is counted as solved only when the checker accepted its certificate.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torchlean._malloc import keep_freed_memory  # noqa: E402
from torchlean.verify.runner import FIELDS, _write, read_instances, run_instance  # noqa: E402


def _data_dir() -> Path:
    for p in (ROOT / "tests/data/vnncomp2021", ROOT.parent / "shared/data/vnncomp2021"):
        if (p / "acasxu/expected.csv").is_file():
            return p
    raise SystemExit("no vnncomp2021 data found")


def main() -> None:
    keep_freed_memory()
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", default=str(_data_dir() / "acasxu/expected.csv"))
    ap.add_argument("--only", default="", help="comma-separated network ids, e.g. 1_1,2_3")
    ap.add_argument("--props", default="", help="comma-separated property numbers")
    ap.add_argument("--timeout", type=float, default=116.0)
    ap.add_argument("--method", default="crown", choices=("crown", "forward"))
    ap.add_argument("--out", default=str(ROOT / "bench/results_verify.csv"))
    ap.add_argument("--table", metavar="RESULTS_CSV", help="print a results CSV as a markdown table and exit")
    a = ap.parse_args()
    if a.table:
        return _table(a.table)
    base = Path(a.csv).parent
    rows = read_instances(a.csv)
    nn_here = {}
    if (base / "nnenum_this_machine.csv").is_file():
        with open(base / "nnenum_this_machine.csv") as f:
            nn_here = {(r["onnx"], r["vnnlib"]): r["wall_s"] for r in csv.DictReader(f)}
    if a.only:
        rows = [r for r in rows if any(f"_{n}_batch" in r["onnx"] for n in a.only.split(","))]
    if a.props:
        rows = [r for r in rows if any(r["vnnlib"] == f"prop_{p}.vnnlib" for p in a.props.split(","))]
    fields = FIELDS + ["nnenum_2021_s", "abcrown_2021_s", "nnenum_here_s"]
    results = []
    for i, row in enumerate(rows):
        r = run_instance(base / row["onnx"], base / row["vnnlib"], a.timeout, a.method)
        exp = row.get("expected", "")
        r.update(
            onnx=row["onnx"],
            vnnlib=row["vnnlib"],
            expected=exp,
            nnenum_2021_s=row.get("nnenum_2021_s", ""),
            abcrown_2021_s=row.get("abcrown_2021_s", ""),
            nnenum_here_s=nn_here.get((row["onnx"], row["vnnlib"]), ""),
        )
        r["agree"] = (
            ""
            if r["result"] not in ("sat", "unsat") or exp not in ("sat", "unsat")
            else "yes"
            if r["result"] == exp
            else "WRONG"
        )
        results.append(r)
        print(
            f"[{i + 1}/{len(rows)}] {row['onnx'][12:-15]:>5} {row['vnnlib']:<13} {r['result']:<8} "
            f"solve {float(r['solve_s']):7.2f} s  check {r['check_s'] or '-':>7} s  leaves {r['leaves']:>6}  "
            f"(expected {exp}; nnenum here {r['nnenum_here_s'] or '-'} s, "
            f"2021 nnenum {r['nnenum_2021_s']} s, "
            f"abcrown {r['abcrown_2021_s']} s)",
            flush=True,
        )
        _write(a.out, results, fields)
    wrong = [r for r in results if r["agree"] == "WRONG"]
    print(_summary(results))
    if wrong:
        raise SystemExit(1)


def _summary(results: list[dict]) -> str:
    solved = [r for r in results if r["result"] in ("sat", "unsat") and r["agree"] != "WRONG"]
    wrong = [r for r in results if r["agree"] == "WRONG"]
    unsat = [r for r in solved if r["result"] == "unsat" and r["check_s"]]
    ratios = [float(r["check_s"]) / max(float(r["solve_s"]), 1e-9) for r in unsat]
    check, solve = sum(float(r["check_s"]) for r in unsat), sum(float(r["solve_s"]) for r in unsat)
    return (
        f"solved {len(solved)}/{len(results)} (wrong: {len(wrong)}); "
        f"total solve {sum(float(r['solve_s']) for r in results):.1f} s; "
        f"median solve {statistics.median(float(r['solve_s']) for r in results):.2f} s; "
        f"unsat replay/solve: median {statistics.median(ratios) if ratios else float('nan'):.2f}, "
        f"{sum(x <= 0.25 for x in ratios)}/{len(ratios)} at most 0.25, "
        f"all together {check:.1f} s / {solve:.1f} s = {check / max(solve, 1e-9):.2f}"
    )


def _table(path: str) -> None:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    head = ["instance", "expected", "ours", "solve s", "check s", "leaves", "nnenum here s", "nnenum 2021 s"]
    print("| " + " | ".join([*head, "abcrown 2021 s"]) + " |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        net = r["onnx"].removeprefix("ACASXU_run2a_").removesuffix("_batch_2000.onnx")
        name = f"{net} {r['vnnlib'].removesuffix('.vnnlib')}"
        check = f"{float(r['check_s']):.3f}" if r["check_s"] else "-"
        print(
            f"| {name} | {r['expected']} | {r['result']} | {float(r['solve_s']):.2f} | {check} "
            f"| {r['leaves']} | {r['nnenum_here_s'] or '-'} | {r['nnenum_2021_s']} | {r['abcrown_2021_s']} |"
        )
    print()
    print(_summary(rows))


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    main()
