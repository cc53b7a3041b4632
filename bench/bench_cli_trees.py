"""The CLI of two source trees on the same instances, interleaved: VNN-COMP's wall clock per
instance (start-up, loading, search, the checker's replay), same run.

    OPENBLAS_NUM_THREADS=1 nice python bench/bench_cli_trees.py OLD_TREE NEW_TREE \\
        --csv /work/shared/data/vnncomp2021/mnistfc/expected.csv --timeout 30 [--rows 2,4,11] \\
        [--list bench/instances/gen_s0/mnistfc.csv] [--out FILE.csv]

Per instance (the rows of each published ``expected.csv`` (onnx,vnnlib,expected,...), or of a
generated list, instances.csv format, its ``meta.csv`` beside it giving ``expected`` where the
generator holds a witness), ``python -m torchlean.verify NET PROP --timeout T`` under each tree's
PYTHONPATH in a fresh process, the order of the two trees alternating from instance to instance.
The CLI prints unsat only after its checker accepted the certificate and sat only for a point
the checker evaluated exactly; a verdict against the expected one is counted WRONG (must be 0).
A verdict after T seconds counts as a timeout (VNN-COMP's rule). Prints each instance's verdicts
and wall seconds, then per tree: solved (sat/unsat), WRONG, total seconds over the instances
both solved.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path


def instances(csv_path: Path) -> list[tuple[Path, Path, str]]:
    """(network, property, expected) per row: a published expected.csv, or a generated list
    (instances.csv format; expected from its meta.csv, "?" where unknown)."""
    rows = list(csv.reader(open(csv_path)))
    d = csv_path.resolve().parent
    if rows and rows[0][:3] == ["onnx", "vnnlib", "expected"]:
        return [(d / r[0], d / r[1], r[2]) for r in rows[1:]]
    meta = {}
    if (d / "meta.csv").exists():
        for m in csv.DictReader(open(d / "meta.csv")):
            meta[Path(m.get("vnnlib", "")).name] = m.get("expected", "") or "?"
    return [(d / r[0], d / r[1], meta.get(Path(r[1]).name, "?")) for r in rows if r]


def run(tree: str, net: Path, prop: Path, timeout: float) -> tuple[str, float]:
    """The CLI's verdict under ``tree`` and its wall seconds ("timeout" past ``timeout``)."""
    env = dict(os.environ, PYTHONPATH=tree, OPENBLAS_NUM_THREADS="1")
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-m", "torchlean.verify", str(net), str(prop), "--timeout",
                            str(timeout)], capture_output=True, text=True, cwd=tree, env=env,
                           timeout=timeout + 30)
        verdict = (p.stdout.split() or ["error"])[0]
    except subprocess.TimeoutExpired:
        verdict = "timeout"
    wall = time.perf_counter() - t0
    return ("timeout" if wall > timeout and verdict in ("sat", "unsat") else verdict), wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--csv", action="append", default=[], help="a published expected.csv (repeatable)")
    ap.add_argument("--list", action="append", default=[], help="a generated instances.csv (repeatable)")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--rows", default="", help="1-based rows (over all lists together)")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    todo = [i for c in a.csv + a.list for i in instances(Path(c))]
    if a.rows:
        todo = [todo[int(n) - 1] for n in a.rows.split(",")]
    trees = {"old": str(Path(a.old).resolve()), "new": str(Path(a.new).resolve())}
    out = []
    for m, (net, prop, expected) in enumerate(todo):
        got = {}
        for name in (("old", "new") if m % 2 == 0 else ("new", "old")):
            verdict, wall = run(trees[name], net, prop, a.timeout)
            wrong = verdict in ("sat", "unsat") and expected in ("sat", "unsat") and verdict != expected
            got[name] = (verdict, wall, wrong)
        print(f"{m + 1} {net.name} {prop.name} ({expected}): " + " | ".join(
            f"{k} {v}{' WRONG' if w else ''} {t:.1f} s" for k, (v, t, w) in sorted(got.items(),
                                                                                   reverse=True)),
              flush=True)
        out.append((net.name, prop.name, expected, got))
    print("\n| tree | n | solved (sat/unsat) | WRONG | both solved: s |\n| --- | ---: | ---: | ---: | ---: |")
    both = [g for *_, g in out if all(g[k][0] in ("sat", "unsat") for k in g)]
    for name in ("old", "new"):
        sat = sum(g[name][0] == "sat" for *_, g in out)
        uns = sum(g[name][0] == "unsat" for *_, g in out)
        wrong = sum(g[name][2] for *_, g in out)
        tot = sum(g[name][1] for g in both)
        print(f"| {name} | {len(out)} | {sat + uns} ({sat}/{uns}) | {wrong} | {tot:.1f} |")
    if a.out:
        with open(a.out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["onnx", "vnnlib", "expected", "old", "old_s", "new", "new_s"])
            for net, prop, expected, g in out:
                w.writerow([net, prop, expected, g["old"][0], f"{g['old'][1]:.2f}", g["new"][0],
                            f"{g['new'][1]:.2f}"])


if __name__ == "__main__":
    main()
