"""Two source trees (e.g. a branch against a reference worktree) on the same instance list,
interleaved per instance, so the machine's load hits both alike: one persistent worker process per
tree (``PYTHONPATH`` = that tree), each instance solved and its certificate checked by
``verify.runner.run_instance`` (each tree's own defaults) in the orders A, B and B, A; the means
are kept. Prints one line per instance and, per tree, solved / wrong / total solve time and the
unsat replay/solve ratio, then the ratio of B's total solve time to A's. ``--float32``: the
float-sound verdicts instead (``verify.float32.verify_float32`` with each tree's default splits,
``SPLITS``, 16 where a tree has none: the CLI's old default), on the published-unsat rows only;
the line's ``L`` is then error-bound walks / leaves (inherited).

    OPENBLAS_NUM_THREADS=1 python bench/bench_verify_trees.py /work/wt-s10 . \
        [--csv tests/data/vnncomp2021/acasxu/expected.csv] [--timeout 116] [--reps 1] \
        [--float32] [--only 1_1_batch_2000.onnx:prop_2,...]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = """
import json, sys
from pathlib import Path
from torchlean._malloc import keep_freed_memory
from torchlean.verify.runner import run_instance
keep_freed_memory()
for line in sys.stdin:
    onnx, prop, timeout = json.loads(line)
    print(json.dumps(run_instance(Path(onnx), Path(prop), timeout)), flush=True)
"""
FLOAT32_WORKER = """
import json, sys, time
from pathlib import Path
import torchlean.verify.float32 as f32
from torchlean.verify.table import load_instance
for line in sys.stdin:
    onnx, prop, timeout = json.loads(line)
    t, spec = load_instance(Path(onnx), Path(prop))
    t0 = time.monotonic()
    r = f32.verify_float32(t.graph, t, spec, timeout, splits=getattr(f32, "SPLITS", 16))
    s = r.stats
    print(json.dumps({"result": r.verdict, "solve_s": time.monotonic() - t0, "check_s": s.get("check_s"),
                      "leaves": f"{s.get('parts')}/{s.get('leaves')} ({s.get('inherited')})"}), flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--csv", default=str(ROOT / "tests/data/vnncomp2021/acasxu/expected.csv"))
    ap.add_argument("--timeout", type=float, default=116.0)
    ap.add_argument("--reps", type=int, default=1, help="pairs of runs (A, B, B, A) per instance")
    ap.add_argument("--float32", action="store_true", help="float-sound verdicts of the unsat rows")
    ap.add_argument("--only", default=None, help="comma-separated network:property filters")
    a = ap.parse_args()
    trees = [str(Path(a.a).resolve()), str(Path(a.b).resolve())]
    if trees[0] == trees[1]:  # (results are keyed by tree: one tree twice would merge both columns)
        sys.exit("bench_verify_trees: A and B are the same tree; compare against a copy "
                 "(git worktree add --detach DIR COMMIT)")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    # (``-c`` puts the cwd first on sys.path: each worker imports its own tree)
    code = FLOAT32_WORKER if a.float32 else WORKER
    workers = {t: subprocess.Popen([sys.executable, "-c", code], cwd=t, env={**env, "PYTHONPATH": t},
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for t in trees}

    def ask(t: str, onnx: Path, prop: Path) -> dict:
        workers[t].stdin.write(json.dumps([str(onnx), str(prop), a.timeout]) + "\n")
        workers[t].stdin.flush()
        return json.loads(workers[t].stdout.readline())

    base = Path(a.csv).parent
    rows = [r for r in csv.DictReader(open(a.csv)) if (not a.float32 or r.get("expected") == "unsat")
            and (not a.only or any(o in f"{r['onnx']}:{r['vnnlib']}" for o in a.only.split(",")))]
    tot = {t: dict(solve=0.0, solved=0, wrong=0, usolve=0.0, ucheck=0.0) for t in trees}
    for r in rows:
        got: dict[str, list[dict]] = {t: [] for t in trees}
        for order in [trees, trees[::-1]] * a.reps:
            for t in order:
                got[t].append(ask(t, base / r["onnx"], base / r["vnnlib"]))
        line = []
        for t in trees:
            xs = got[t]
            s = sum(float(x["solve_s"]) for x in xs) / len(xs)
            tot[t]["solve"] += s
            tot[t]["solved"] += all(x["result"] in ("sat", "unsat") for x in xs)
            tot[t]["wrong"] += any(x["result"] in ("sat", "unsat") and r.get("expected") in ("sat", "unsat")
                                   and x["result"] != r["expected"] for x in xs)
            if xs[0]["result"] == "unsat":
                tot[t]["usolve"] += s
                tot[t]["ucheck"] += sum(float(x["check_s"] or 0) for x in xs) / len(xs)
            line.append(f"{xs[0]['result']} {s:.2f}s L{xs[0]['leaves']}")
        print(r["onnx"], r["vnnlib"], r.get("expected", ""), " | ".join(line), flush=True)
    for t in trees:
        d = tot[t]
        ratio = d["ucheck"] / max(d["usolve"], 1e-9)
        print(f"{t}: solved {d['solved']}/{len(rows)} wrong {d['wrong']} total solve {d['solve']:.1f} s "
              f"unsat replay/solve {d['ucheck']:.1f}/{d['usolve']:.1f} = {ratio:.3f}")
    print(f"ratio B/A: {tot[trees[1]]['solve'] / tot[trees[0]]['solve']:.3f}")


if __name__ == "__main__":
    main()
