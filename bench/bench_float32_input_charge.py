"""What charging the input's rounding would cost float-sound verdicts (claim35, session 35).

    OPENBLAS_NUM_THREADS=1 python bench/bench_float32_input_charge.py [--sets test,mnistfc,...]
        [--limit 2] [--timeout 60] [--verdicts] [--data ../shared/data] [--out rows.csv]

``verify.float32`` wrote its errorbound statements with ``input_exact`` true until claim35b: the
epsilon was about the binary32 points of the region, not about real points rounded to binary32
(docs/design.md, "The input's rounding in float-sound verdicts"; since claim35b it writes false and
``check_vnn_float`` requires it, so "A" below equals "B" and the epsilon columns keep the
comparison). Per instance (``bench_float32.instances``): the
largest root-box epsilon (the property's hull, fast ranges, the default column) with
``input_exact`` true and false, and with ``--verdicts`` the float-sound verdict and time of
``verify_float32`` as is ("A") and with every statement written ``input_exact`` false ("B"), A and
B one after the other per instance (the load moves between them less than between instances).
"""

from __future__ import annotations

import argparse
import csv
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_float32  # noqa: E402


def eps_pair(t, spec) -> tuple[float, float, float, float]:
    """(max eps input_exact true, false, walk seconds true, false) on the property's hull."""
    from torchlean.floats.errorbound import bound_certificate, epsilons
    from torchlean.verify.float32 import hull

    out = []
    for exact in (True, False):
        t0 = time.monotonic()
        eb = bound_certificate(t.graph, hull(spec), "binary32", ranges="fast", input_exact=exact)
        out.append((max(float(e) for e in epsilons(eb)), time.monotonic() - t0))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def verdict(t, spec, timeout: float, charged: bool) -> tuple[str, float]:
    from torchlean.floats.errorbound import bound_certificate
    from torchlean.verify import float32

    orig = float32.bound_certificate
    if charged:
        float32.bound_certificate = functools.partial(bound_certificate, input_exact=False)
    try:
        t0 = time.monotonic()
        r = float32.verify_float32(t.graph, t, spec, timeout, splits=float32.SPLITS)
        return r.verdict, time.monotonic() - t0
    except Exception as e:  # (reported, not fatal)
        return f"error: {str(e).splitlines()[0][:60]}", float("nan")
    finally:
        float32.bound_certificate = orig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="test,mnistfc,eran,verivital,collins_rul_cnn")
    ap.add_argument("--limit", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--verdicts", action="store_true")
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.data:
        bench_float32.ROOT = Path(a.data)
    from torchlean.verify.table import load_instance

    head = ("set", "network", "property", "eps exact inputs", "eps rounded inputs", "ratio",
            "walk s (exact, rounded)", "verdict A", "A s", "verdict B (rounded)", "B s")
    rows = []
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head), flush=True)
    for s in a.sets.split(","):
        for net_p, prop_p in bench_float32.instances(s, a.limit):
            t, spec = load_instance(net_p, prop_p)
            e1, e2, w1, w2 = eps_pair(t, spec)
            row = [s, net_p.name, prop_p.name, f"{e1:.4g}", f"{e2:.4g}", f"{e2 / e1:.3f}" if e1 else "inf",
                   f"{w1:.1f}, {w2:.1f}"]
            if a.verdicts:
                va, sa = verdict(t, spec, a.timeout, False)
                vb, sb = verdict(t, spec, a.timeout, True)
                row += [va, f"{sa:.1f}", vb, f"{sb:.1f}"]
            else:
                row += ["", "", "", ""]
            rows.append(row)
            print("| " + " | ".join(row) + " |", flush=True)
    if a.out:
        with open(a.out, "w", newline="") as f:
            csv.writer(f).writerows([head, *rows])


if __name__ == "__main__":
    main()
