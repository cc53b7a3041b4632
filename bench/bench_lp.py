"""Exact LP leaves on and off, interleaved, on a list of instances (issue 15; bench/README.md,
"Exact LP leaves"). For each instance: the input-split search without LP leaves
(``lp.MAX_UNSTABLE = -1``, the search before this change) and with them, each certificate replayed
by the checker (a verdict counts only when accepted).

    OPENBLAS_NUM_THREADS=1 python bench/bench_lp.py NET.onnx:PROP.vnnlib ... [--timeout 60] [--k 6]
"""

from __future__ import annotations

import argparse

from torchlean.certificates.bounds import check_vnn
from torchlean.verify import bab, lp
from torchlean.verify.network import load_pair


def run(net, spec, k: int, timeout: float) -> tuple[str, float, int, dict]:
    """(verdict accepted by the checker or 'rejected'/'timeout' with the fraction of the last
    region's volume proved, solve s, leaves, stats)."""
    old = lp.MAX_UNSTABLE
    lp.MAX_UNSTABLE = k
    try:
        r = bab.verify(net, spec, timeout=timeout)
    finally:
        lp.MAX_UNSTABLE = old
    verdict = r.verdict
    if r.cert is not None and not check_vnn(r.cert, net, spec).ok:
        verdict = "rejected"
    if verdict == "timeout" and "covered" in r.stats:
        verdict += f" ({100 * r.stats['covered']:.1f}% proved)"
    return verdict, r.stats.get("time", 0.0), r.stats.get("leaves", 0), r.stats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("instances", nargs="+", help="NET.onnx:PROP.vnnlib")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--k", type=int, default=lp.MAX_UNSTABLE)
    ap.add_argument("--after", type=int, default=lp.AFTER_BOXES, help="lp.AFTER_BOXES")
    a = ap.parse_args()
    lp.AFTER_BOXES = a.after
    head = f"with LP (K={a.k}, after {a.after} boxes)"
    print(f"| instance | without LP | s | {head} | s | LP boxes closed/tried |")
    print("| --- | --- | ---: | --- | ---: | ---: |")
    for inst in a.instances:
        net_p, prop_p = inst.split(":")
        net, spec = load_pair(net_p, prop_p)
        v0, t0, _, _ = run(net, spec, -1, a.timeout)
        v1, t1, _, st = run(net, spec, a.k, a.timeout)
        name = f"{net_p.rsplit('/', 1)[-1].replace('ACASXU_run2a_', '').replace('_batch_2000', '')} " \
               f"{prop_p.rsplit('/', 1)[-1]}"
        lps = f"{st.get('lp_closed', 0)}/{st.get('lp_boxes', 0)}"
        print(f"| {name} | {v0} | {t0:.1f} | {v1} | {t1:.1f} | {lps} |", flush=True)


if __name__ == "__main__":
    main()
