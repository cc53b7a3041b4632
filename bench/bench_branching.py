"""ReLU-split branching choices compared on the same instances, interleaved (issues 14/15).

    OPENBLAS_NUM_THREADS=1 python bench/bench_branching.py NET.onnx:PROP.vnnlib ... --timeout 120
        [--choices babsr,fsb] [--csv EXPECTED.csv --only unsat] [--limit N]

(a choice "fsb:K" or "fsb:K:Q1/Q2/..." sets ``FSB_K`` and ``FSB_Q``; "fsbexact" / "fsblin" the
recomputed / first-order estimates, ``FSB_LINEAR``)

Each instance runs every choice (``verify.branching.RELU_CHOICE``) one after the other, each in a
fresh process (``bab.solve`` with the timeout, then the checker's replay of its certificate,
``check_vnn``: a verdict counts only if accepted), the order of the choices alternating from
instance to instance so machine load hits them alike. Prints one line per run: verdict, whether the
checker accepted, solve seconds, leaves, subproblems (bounded boxes), check seconds.
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

CHILD = r"""
import json, sys, time
from torchlean.verify import branching
ch = sys.argv[3].split(":")
if ch[0] in ('fsblin', 'fsbexact'):
    branching.FSB_LINEAR = ch[0] == 'fsblin'
    ch[0] = 'fsb'
branching.RELU_CHOICE = ch[0]
if len(ch) > 1: branching.FSB_K = int(ch[1])
if len(ch) > 2: branching.FSB_Q = tuple(float(x) for x in ch[2].split('/'))
from torchlean.verify.table import load_instance
from torchlean.verify.bab import solve
from torchlean.certificates.bounds import check_vnn, replay_mode
t, spec = load_instance(sys.argv[1], sys.argv[2])
res = solve(t, spec, timeout=float(sys.argv[4]))
ok, cs = None, 0.0
if res.cert is not None:
    c0 = time.perf_counter()
    v = check_vnn(res.cert, t.bg, spec, mode=replay_mode(res.cert, t.bg))
    ok, cs = v.ok, time.perf_counter() - c0
s = res.stats
print(json.dumps({"verdict": res.verdict, "ok": ok, "solve_s": round(s.get("time", 0.0), 2),
                  "leaves": s.get("leaves", 0), "subproblems": s.get("subproblems", 0),
                  "check_s": round(cs, 2)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("instances", nargs="*", help="NET.onnx:PROP.vnnlib")
    ap.add_argument("--csv", help="an expected.csv (paths relative to its folder)")
    ap.add_argument("--only", help="keep the CSV rows with this expected verdict")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--choices", default="babsr,fsb")
    a = ap.parse_args()
    pairs = [tuple(s.split(":")) for s in a.instances]
    if a.csv:
        base = Path(a.csv).parent
        for row in csv.DictReader(open(a.csv)):
            if a.only is None or row["expected"] == a.only:
                pairs.append((str(base / row["onnx"]), str(base / row["vnnlib"])))
    pairs = pairs[: a.limit] if a.limit else pairs
    choices = a.choices.split(",")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    for n, (net, prop) in enumerate(pairs):
        order = choices if n % 2 == 0 else choices[::-1]
        for ch in order:
            p = subprocess.run([sys.executable, "-c", CHILD, net, prop, ch, str(a.timeout)],
                               capture_output=True, text=True, env=env)
            last = p.stdout.strip().splitlines()[-1:] or [json.dumps({"error": p.stderr[-300:]})]
            print(f"{Path(net).stem} {Path(prop).stem} {ch}: {last[0]}", flush=True)


if __name__ == "__main__":
    main()
