"""Float-sound verdicts (``--float32``) against real-number verdicts on shared VNN-COMP instances.

    OPENBLAS_NUM_THREADS=1 python bench/bench_float32.py [--timeout 60] [--limit 4] [--out rows.csv]
        [--sets acasxu,mnistfc,...] [--data ../shared/data] [-j N]

    OPENBLAS_NUM_THREADS=1 python bench/bench_float32.py --balls 0.001,0.01 [--sets ...] [--points 200]

``--balls R,...``: instead of verdicts, per instance and radius r (and the property's own box,
"box") the certified epsilon of a fast-column walk on the ball centre ± r around the centre of
the property's box, the largest float32 error observed on ``--points`` sampled points of that box
(float32 run against float64: a lower bound on the worst case), and the real margin at the centre
against the growth sum_j |a_j| eps_j of the atoms: where the growth reaches the margin the grown
property is false at the centre itself, so no search can prove it.

``--sets`` names any benchmark folder of the data root (acasxu's eleven instances are a fixed list;
every other set takes its expected.csv's unsat rows round robin over its networks, ``--limit`` of
them); ``-j N`` runs N instances at once, each in its own process (on a machine with N free cores).

Per instance: the real verdict and time (``bab.solve``, the checker
replaying the certificate), then the float-sound verdict and time (``verify.float32``: errorbound
certificate over the hull of the input boxes, the real search on the grown property, the combined
certificate replayed by ``check_vnn_float``), the largest epsilon, the seconds in error-bound walks,
the reason, and the certificate's leaves (those proved with an ancestor's epsilon). Reads
../shared/data.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {
    "acasxu": ("vnncomp2021/acasxu",
               [("ACASXU_run2a_1_1_batch_2000.onnx", f"prop_{p}.vnnlib") for p in (1, 2, 3, 4)]
               + [("ACASXU_run2a_2_1_batch_2000.onnx", f"prop_{p}.vnnlib") for p in (1, 3, 4)]
               + [(f"ACASXU_run2a_1_{n}_batch_2000.onnx", f"prop_{p}.vnnlib")
                  for n in (2, 3) for p in (3, 4)]),
    "rl_benchmarks": ("vnncomp2022/rl_benchmarks", None),
    "reach_prob_density": ("vnncomp2022/reach_prob_density", None),
}
for _name in ("mnistfc", "eran", "verivital", "oval21", "test"):
    SETS[_name] = (f"vnncomp2021/{_name}", None)
#: every ACAS Xu instance whose published verdict is unsat (expected.csv's order: --limit 54)
SETS["acasxu_unsat"] = ("vnncomp2021/acasxu", None)
for _name in ("collins_rul_cnn", "sri_resnet_a"):
    SETS[_name] = (f"vnncomp2022/{_name}", None)


def instances(name: str, limit: int) -> list[tuple[Path, Path]]:
    folder, fixed = SETS[name]
    d = ROOT / folder
    if fixed is not None:
        return [(d / n, d / p) for n, p in fixed][:limit]
    by_net: dict[str, list[dict[str, str]]] = {}
    for r in csv.DictReader(open(d / "expected.csv")):
        if r["expected"] == "unsat":
            by_net.setdefault(r["onnx"], []).append(r)
    out = []
    for k in range(max(map(len, by_net.values()), default=0)):  # round robin over the networks
        out += [(d / rs[k]["onnx"], d / rs[k]["vnnlib"]) for rs in by_net.values() if k < len(rs)]
    return out[:limit]


def run_one(s: str, net_p: Path, prop_p: Path, timeout: float, splits: int) -> tuple[str, ...]:
    """One table row: the real verdict (search + replay), then the float-sound one."""
    from torchlean.certificates.bounds import check_vnn
    from torchlean.verify.bab import solve
    from torchlean.verify.float32 import verify_float32
    from torchlean.verify.table import load_instance

    t, spec = load_instance(net_p, prop_p)
    graph = t.graph
    t0 = time.monotonic()
    res = solve(t, spec, timeout=timeout)
    if res.verdict == "unsat":
        ok = check_vnn(res.cert, t.bg, spec).ok
        res.verdict = "unsat" if ok else "unknown"
    real_s = time.monotonic() - t0
    t0 = time.monotonic()
    try:
        fr = verify_float32(graph, t, spec, timeout, splits=splits)
        fv, eps = fr.verdict, max(fr.stats.get("epsilon") or [float("nan")])
        chk, parts = fr.stats.get("check_s"), str(fr.stats.get("parts", ""))
        why, eps_s = str(fr.stats.get("why", "")), fr.stats.get("epsilon_s")
        leaves = f"{fr.stats.get('leaves', '')} ({fr.stats.get('inherited', '')})"
    except Exception as e:  # (a row that cannot be bounded: reported, not fatal)
        fv, eps, chk = f"error: {str(e).splitlines()[0][:60]}", float("nan"), None
        parts, why, eps_s, leaves = "", "", None, ""
    f_s = time.monotonic() - t0
    took = f"{f_s:.1f}" + (f" ({chk:.1f})" if chk is not None else "")
    return (s, net_p.name, prop_p.name, res.verdict, f"{real_s:.1f}", fv, took, parts, f"{eps:.3g}",
            "" if eps_s is None else f"{eps_s:.1f}", why, leaves)


def margin(spec: Any, y: np.ndarray, eps: np.ndarray) -> tuple[float, float]:
    """(the property's margin at outputs y: min over disjuncts of the largest a·y - b of its atoms,
    > 0 where y is safe; the largest growth sum_j |a_j| eps_j over the atoms), in float64."""
    m, g = math.inf, 0.0
    for r in spec.regions:
        for d in r.disjuncts:
            m = min(m, max(float(np.dot([float(a) for a in t.a], y)) - float(t.b) for t in d))
            g = max([g] + [float(np.abs([float(a) for a in t.a]) @ eps) for t in d])
    return m, g


def ball_rows(s: str, net_p: Path, prop_p: Path, radii: list[str], points: int) -> list[tuple[str, ...]]:
    """Per radius (and "box": the property's hull), the certified epsilon (fast-column walk) vs
    the observed float32 error and the centre's margin (module docstring)."""
    from torchlean.floats.errorbound import bound_certificate, epsilons, observed_error
    from torchlean.floats.network import run_float
    from torchlean.verify.float32 import hull
    from torchlean.verify.table import load_instance

    t, spec = load_instance(net_p, prop_p)
    g, root = t.graph, hull(spec)
    c = [(a + b) / 2 for a, b in root]
    y = run_float(g, np.array([[float(v) for v in c]]), np.float64)[0]
    rows = []
    for r in radii:
        box = root if r == "box" else [(v - Fraction(r), v + Fraction(r)) for v in c]
        t0 = time.monotonic()
        eb = bound_certificate(g, box, "binary32", ranges="fast")
        walk_s = time.monotonic() - t0
        eps = np.array([float(e) for e in epsilons(eb)])
        obs = observed_error(g, box, points, reference=False).max_error
        m, grow = margin(spec, y, eps)
        rows.append((s, net_p.name, prop_p.name, r, f"{eps.max():.3g}", f"{obs.max():.3g}",
                     f"{eps.max() / obs.max():.3g}", f"{m:.3g}", f"{grow:.3g}", f"{walk_s:.1f}"))
    return rows


def main() -> int:
    global ROOT
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="acasxu,rl_benchmarks,reach_prob_density")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--out", default=None)
    from torchlean.verify.float32 import SPLITS

    ap.add_argument("--splits", type=int, default=SPLITS, help="partition splits (default: the CLI's)")
    ap.add_argument("--only", default=None, help="comma-separated network:property filters")
    ap.add_argument("--data", default=None, help="the data root (default ../shared/data)")
    ap.add_argument("--balls", default=None, help="comma-separated radii (and 'box'): epsilon vs observed")
    ap.add_argument("--points", type=int, default=200, help="sampled points per ball (--balls)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="instances run at once, one process each")
    a = ap.parse_args()
    if a.data:
        ROOT = Path(a.data)
    todo = [(s, n, p) for s in a.sets.split(",") for n, p in instances(s, a.limit)
            if not a.only or any(f"{n.name}:{p.name}".find(o) >= 0 for o in a.only.split(","))]
    rows = []
    if a.balls:
        print("| set | network | property | radius | max eps | max observed | eps/observed | centre margin "
              "| growth | walk s |")
        print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
        for s, n, p in todo:
            for row in ball_rows(s, n, p, a.balls.split(","), a.points):
                rows.append(row)
                print("| " + " | ".join(row) + " |", flush=True)
        if a.out:
            with open(a.out, "w", newline="") as f:
                csv.writer(f).writerows(rows)
        return 0
    print("| set | network | property | real | real s | float32 | float32 s (check s) | parts | max eps "
          "| eps s | why | leaves (inherited) |")
    print("|---|---|---|---|---:|---|---:|---:|---:|---:|---|---:|")
    if a.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(a.jobs) as pool:  # rows in the order they finish
            futures = [pool.submit(run_one, s, n, p, a.timeout, a.splits) for s, n, p in todo]
            for f in as_completed(futures):
                rows.append(f.result())
                print("| " + " | ".join(rows[-1]) + " |", flush=True)
    else:
        for s, n, p in todo:
            rows.append(run_one(s, n, p, a.timeout, a.splits))
            print("| " + " | ".join(rows[-1]) + " |", flush=True)
    if a.out:
        with open(a.out, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
