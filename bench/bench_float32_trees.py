"""Float-sound verdicts (``--float32``) of two source trees on the same instances, interleaved per
instance so the machine's load hits both alike: one persistent worker per tree (``PYTHONPATH`` =
that tree) runs ``verify.float32.verify_float32`` with that tree's default splits (``SPLITS``,
16 where the tree has none: the CLI's old default), A first on even rows and B first on odd ones.
Prints one row per instance (verdict, seconds, replay seconds, error-bound walks, leaves) and per
tree the float-sound unsats and their total seconds.

    OPENBLAS_NUM_THREADS=1 python bench/bench_float32_trees.py /tmp/f32-main . \\
        [--csv ../shared/data/vnncomp2021/acasxu/expected.csv] [--only 1_1_batch_2000.onnx:prop_2,...]
        [--timeout 60]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = """
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
    print(json.dumps([r.verdict, time.monotonic() - t0, s.get("check_s"), s.get("parts"),
                      s.get("leaves"), s.get("inherited")]), flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--csv", default=str(Path(__file__).resolve().parents[2]
                                         / "shared/data/vnncomp2021/acasxu/expected.csv"))
    ap.add_argument("--only", default=None, help="comma-separated network:property filters")
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()
    d = Path(a.csv).parent
    rows = [r for r in csv.DictReader(open(a.csv)) if r["expected"] == "unsat"
            and (not a.only or any(f"{r['onnx']}:{r['vnnlib']}".find(o) >= 0 for o in a.only.split(",")))]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    workers = [subprocess.Popen([sys.executable, "-c", WORKER], text=True, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env={**env, "PYTHONPATH": str(Path(t).resolve())},
                                cwd=str(Path(t).resolve()))  # (``-c`` puts the cwd first on sys.path)
               for t in (a.a, a.b)]
    total = [[0, 0.0], [0, 0.0]]
    print("| network | property | A | A s (check s) | A walks/leaves (inherited) "
          "| B | B s (check s) | B walks/leaves (inherited) |")
    print("|---|---|---|---:|---:|---|---:|---:|")
    for k, r in enumerate(rows):
        out = [None, None]
        for w in ((0, 1) if k % 2 == 0 else (1, 0)):
            workers[w].stdin.write(json.dumps([str(d / r["onnx"]), str(d / r["vnnlib"]), a.timeout]) + "\n")
            workers[w].stdin.flush()
            out[w] = json.loads(workers[w].stdout.readline())
        cells = []
        for w, (v, s, chk, walks, leaves, inh) in enumerate(out):
            if v == "unsat":
                total[w][0] += 1
                total[w][1] += s
            more = "" if leaves is None else f"/{leaves} ({inh})"  # (a tree without the counts)
            cells += [v, f"{s:.1f}" + (f" ({chk:.1f})" if chk is not None else ""), f"{walks}{more}"]
        print(f"| {r['onnx'].replace('_batch_2000.onnx', '')} | {r['vnnlib']} | " + " | ".join(cells) + " |",
              flush=True)
    for w in workers:
        w.stdin.close()
        w.wait()
    for name, (n, s) in zip("AB", total):
        print(f"{name}: {n}/{len(rows)} float-sound unsat, {s:.1f} s over them")


if __name__ == "__main__":
    main()
