"""Where a float-sound search's walks go: per depth, how many boxes got their own errorbound and
their epsilons (``verify --float32`` on one instance, the walks recorded on the way).

    OPENBLAS_NUM_THREADS=1 python bench/bench_float32_walks.py NET.onnx PROP.vnnlib [--timeout 60]
        [--splits 4096]

A walk's depth is the number of bisections between the property's hull and its box
(``bisections``). On an input-split chain (ACAS Xu) the walks are ``float_bab``'s; elsewhere the
float loop's. The last lines: the verdict, its time, walks, boxes and certificate parts. Used for
bench/README.md, "h-f32miss" (why ACAS Xu 1_1 prop 6 misses at 60 s).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from fractions import Fraction
from typing import Any

import numpy as np

Box = list[tuple[Fraction, Fraction]]


def bisections(box: Box, root: Box) -> int:
    """How many halvings of ``root`` give a box of ``box``'s widths (sum over the inputs of
    log2(root width / width), rounded; inputs of zero width in ``root`` are skipped)."""
    k = 0.0
    for (a, b), (r0, r1) in zip(box, root):
        if r1 > r0:
            k += math.log2(float(r1 - r0) / float(b - a))
    return round(k)


def by_depth(walks: list[tuple[int, float, float]]) -> list[tuple[int, int, float, float, float, float]]:
    """Per depth (ascending): (depth, walks, their mean seconds, min, median and max epsilon) of
    ``walks``: (depth, seconds, largest epsilon) each."""
    out = []
    for d in sorted({w[0] for w in walks}):
        s = np.array([w[1] for w in walks if w[0] == d])
        e = np.array([w[2] for w in walks if w[0] == d])
        out.append((d, len(e), float(s.mean()), float(e.min()), float(np.median(e)), float(e.max())))
    return out


def main() -> int:
    from torchlean.certificates.float_vnn import epsilons
    from torchlean.floats import errorbound
    from torchlean.verify import float32
    from torchlean.verify.table import load_instance

    ap = argparse.ArgumentParser()
    ap.add_argument("net")
    ap.add_argument("prop")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--splits", type=int, default=float32.SPLITS)
    a = ap.parse_args()
    t, spec = load_instance(a.net, a.prop)
    root = float32.hull(spec)
    walks: list[tuple[int, float, float]] = []
    made = errorbound.bound_certificate

    def recorded(graph: Any, box: Box, *args: Any, **kw: Any) -> dict[str, Any]:
        t0 = time.monotonic()
        eb = made(graph, box, *args, **kw)
        walks.append((bisections(box, root), time.monotonic() - t0, max(float(e) for e in epsilons(eb))))
        return eb

    float32.bound_certificate = recorded  # (the name verify_float32 calls)
    t0 = time.monotonic()
    r = float32.verify_float32(t.graph, t, spec, a.timeout, splits=a.splits)
    took = time.monotonic() - t0
    print("| depth | walks | mean s | min eps | median eps | max eps |")
    print("|---:|---:|---:|---:|---:|---:|")
    for d, n, s, lo, med, hi in by_depth(walks):
        print(f"| {d} | {n} | {s:.3f} | {lo:.3g} | {med:.3g} | {hi:.3g} |")
    st = r.stats
    print(f"verdict {r.verdict} in {took:.1f} s (check {st.get('check_s', 0.0):.1f} s); walks {len(walks)}, "
          f"{sum(w[1] for w in walks):.1f} s; boxes {st.get('boxes')}; parts {st.get('leaves')} "
          f"({st.get('inherited')} inherited); {st.get('why', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
