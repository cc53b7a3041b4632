"""Does the fast replay accept every unsat certificate the exact replay accepts? (issue 14, step 3
of docs/design.md's plan "Shrinking the checker": one replay mode for the bound table.)

Per instance: solve (``verify.bab.solve``), then replay the unsat certificate in both modes
(``certificates.bounds.check_vnn(..., mode="exact" | "fast")``, each under ``--deadline`` seconds:
the exact mode on a large tree can take far longer than the fast one, which is why
``bounds.replay_mode`` sends it only tiny jobs). Prints one line per instance (verdicts and times,
``replay_mode``'s own choice) and the disagreements: a certificate one mode accepts and the other
refuses for a reason other than its deadline.

    OPENBLAS_NUM_THREADS=1 python bench/bench_replay_modes.py [--data tests/data/vnncomp2021/acasxu]
        [--csv expected.csv] [--limit 20] [--timeout 60] [--deadline 120]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "tests/data/vnncomp2021/acasxu"))
    ap.add_argument("--csv", default=None, help="expected.csv (default: DATA/expected.csv)")
    ap.add_argument("--limit", type=int, default=20, help="published-unsat rows, in file order")
    ap.add_argument("--timeout", type=float, default=60.0, help="solve time limit per instance (s)")
    ap.add_argument("--deadline", type=float, default=120.0, help="replay time limit per mode (s)")
    args = ap.parse_args()

    from torchlean.certificates.bounds import check_vnn, replay_mode
    from torchlean.verify.bab import solve
    from torchlean.verify.table import load_instance

    data = Path(args.data)
    with open(args.csv or data / "expected.csv") as fh:
        rows = [r for r in csv.reader(fh) if len(r) >= 3 and r[2].strip() in ("unsat", "holds")]
    disagree, n = [], 0
    for row in rows[:args.limit]:
        onnx, prop = data / Path(row[0]).name, data / Path(row[1]).name
        t, spec = load_instance(onnx, prop)
        res = solve(t, spec, timeout=args.timeout)
        if res.verdict != "unsat" or res.cert is None:
            print(f"{onnx.name} {prop.name} {res.verdict} (no unsat certificate)", flush=True)
            continue
        n += 1
        got = {}
        for mode in ("exact", "fast"):
            t0 = time.perf_counter()
            v = check_vnn(res.cert, t.bg, spec, mode=mode, deadline=time.monotonic() + args.deadline)
            got[mode] = (v.ok, time.perf_counter() - t0, v.reason)
        late = any("deadline" in r for _, _, r in got.values())
        if got["exact"][0] != got["fast"][0] and not late:
            disagree.append((onnx.name, prop.name, got))
        print(f"{onnx.name} {prop.name} default={replay_mode(res.cert, t.bg)} "
              + " ".join(f"{m}={'ok' if ok else 'NO'} {s:.2f}s" + ("" if ok else f" ({r[:60]})")
                         for m, (ok, s, r) in got.items()), flush=True)
    print(f"{n} unsat certificates, {len(disagree)} disagreements")
    for d in disagree:
        print("DISAGREE", *d)


if __name__ == "__main__":
    main()
