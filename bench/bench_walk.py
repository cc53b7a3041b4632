"""One rounding-error walk (``floats.errorbound.bound_certificate``, binary32, fast ranges, the
property's hull box, as ``verify.float32`` walks the root) per instance and per tree, interleaved:
the walk's wall time and max ε, old tree against new.

    OPENBLAS_NUM_THREADS=1 python bench/bench_walk.py OLD_TREE NEW_TREE NET.onnx:PROP.vnnlib ...
    python bench/bench_walk.py TREE NET:PROP --profile OUT.prof   # cProfile of one walk

Each walk runs in a fresh process with that tree on PYTHONPATH (no state shared between trees).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
from torchlean.verify.table import load_instance
from torchlean.verify.float32 import hull
from torchlean.floats.errorbound import bound_certificate, epsilons
net, prop, prof = sys.argv[1], sys.argv[2], sys.argv[3]
t, spec = load_instance(net, prop)
box = hull(spec)
t0 = time.process_time()
if prof:
    import cProfile
    pr = cProfile.Profile()
    pr.enable()
eb = bound_certificate(t.graph, box, "binary32", ranges="fast")
if prof:
    pr.disable()
    pr.dump_stats(prof)
eps = [float(e) for e in epsilons(eb)]
print(json.dumps({"cpu_s": time.process_time() - t0, "eps": eps}))
"""


def walk(tree: str, inst: str, prof: str = "") -> dict:
    """One walk of ``inst`` (NET:PROP) with ``tree`` on the path, in its own process."""
    net, prop = inst.split(":")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), OPENBLAS_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", CHILD, net, prop, prof], env=env,
                       capture_output=True, text=True, cwd=os.path.abspath(tree))
    if r.returncode:
        raise SystemExit(f"{tree} {inst}: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trees_and_instances", nargs="+")
    ap.add_argument("--profile", default="", help="one tree, one instance: write a cProfile here")
    a = ap.parse_args()
    args = [os.path.abspath(x) if ":" in x else x for x in a.trees_and_instances]
    trees = [x for x in args if ":" not in x]
    insts = [x for x in args if ":" in x]
    if a.profile:
        r = walk(trees[0], insts[0], os.path.abspath(a.profile))
        print(f"cpu {r['cpu_s']:.1f} s, max eps {max(r['eps']):.6g}")
        return 0
    cols = " | ".join(f"{os.path.basename(t)} CPU s | max ε" for t in trees)
    print(f"| instance | {cols} | speedup | ε ratio |")
    print("|---" * (2 * len(trees) + 3) + "|")
    for inst in insts:
        rs = [walk(t, inst) for t in trees]
        name = " ".join(os.path.basename(p) for p in inst.split(":"))
        cells = " | ".join(f"{r['cpu_s']:.2f} | {max(r['eps']):.6g}" for r in rs)
        sp = rs[0]["cpu_s"] / rs[-1]["cpu_s"]
        er = max(rs[-1]["eps"]) / max(rs[0]["eps"]) if max(rs[0]["eps"]) else float("nan")
        print(f"| {name} | {cells} | {sp:.2f}x | {er:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
