"""ACAS Xu input-split search on the chain engine against the bound table, interleaved per instance
(on a loaded machine two back-to-back runs of bench_verify.py drift apart by more than the
difference being measured): each instance is solved and its certificate replayed by each engine
twice, in the orders chain, table and table, chain, and the means are kept.

    OPENBLAS_NUM_THREADS=1 python bench/bench_verify_engines.py [--out /tmp/engines.csv]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torchlean.certificates.bounds import check_vnn, replay_mode  # noqa: E402
from torchlean.verify import bab, table  # noqa: E402

COLS = ["onnx", "vnnlib", "expected", "chain", "table", "chain_s", "table_s", "chain_check_s",
        "table_check_s", "chain_leaves", "table_leaves"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", default=str(ROOT / "tests/data/vnncomp2021/acasxu/expected.csv"))
    ap.add_argument("--out", default="/tmp/bench_verify_engines.csv")
    ap.add_argument("--timeout", type=float, default=116.0)
    a = ap.parse_args()
    base = Path(a.csv).parent
    tot = dict.fromkeys(("c", "t", "c_unsat", "t_unsat", "c_check", "t_check"), 0.0)
    with open(a.csv) as f, open(a.out, "w", newline="") as g:
        out = csv.writer(g)
        out.writerow(COLS)
        for i, r in enumerate(csv.DictReader(f)):
            net, _, spec = table.load_instance(base / r["onnx"], base / r["vnnlib"])
            bg = table.chain_graph(base / r["onnx"])
            res: dict[str, list] = {}
            for order in (("c", "t"), ("t", "c")):
                for eng in order:
                    t0 = time.perf_counter()
                    v = bab.verify(net, spec, timeout=a.timeout, bg=bg if eng == "t" else None)
                    solve = time.perf_counter() - t0
                    model = bab.checked_model(net, bg if eng == "t" else None)
                    t0 = time.perf_counter()
                    ok = v.cert is not None and check_vnn(v.cert, model, spec,
                                                          mode=replay_mode(v.cert, model)).ok
                    check = time.perf_counter() - t0
                    verdict = v.verdict if ok else "unknown"
                    d = res.setdefault(eng, [verdict, 0.0, 0.0, v.stats.get("leaves", 0)])
                    d[1] += solve / 2
                    d[2] += check / 2
            for e in ("c", "t"):
                tot[e] += res[e][1]
                if res[e][0] == "unsat":
                    tot[e + "_unsat"] += res[e][1]
                    tot[e + "_check"] += res[e][2]
            out.writerow([r["onnx"], r["vnnlib"], r.get("expected", ""), res["c"][0], res["t"][0],
                          f"{res['c'][1]:.3f}", f"{res['t'][1]:.3f}", f"{res['c'][2]:.3f}",
                          f"{res['t'][2]:.3f}", res["c"][3], res["t"][3]])
            print(f"[{i + 1}] {r['onnx'][12:-15]:>5} {r['vnnlib']:<13} expected {r.get('expected', ''):<5} "
                  f"chain {res['c'][0]:<7} {res['c'][1]:6.2f} s  table {res['t'][0]:<7} {res['t'][1]:6.2f} s",
                  flush=True)
    print(f"total solve: chain {tot['c']:.1f} s, table {tot['t']:.1f} s, ratio {tot['t'] / tot['c']:.3f}; "
          f"unsat replay/solve: chain {tot['c_check'] / max(tot['c_unsat'], 1e-9):.3f}, "
          f"table {tot['t_check'] / max(tot['t_unsat'], 1e-9):.3f}")


if __name__ == "__main__":
    main()
