"""Cost per box of the ReLU-split search's dense α/β steps (``graph_relu._optimise`` on
``alpha.Backsub``) and of the CROWN forward pass, by batch size (bench/README.md, "impfc").

    OPENBLAS_NUM_THREADS=1 python bench/bench_dense_batch.py NET.onnx PROP.vnnlib [--batches 16,64,256]

The property's first region's box is repeated B times (every box the same, so every batch has the
same unstable elements), bounded by ``fast_engine.forward`` (CROWN) and then stepped for
``graph_relu.STEPS`` α/β steps on its first disjunct, repeatedly for about 3 s per batch size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torchlean.certificates import fast_engine as fe  # noqa: E402
from torchlean.certificates.fast_functions import FAST  # noqa: E402
from torchlean.verify import alpha, graph_relu  # noqa: E402
from torchlean.verify.table import load_instance  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("net")
    ap.add_argument("prop")
    ap.add_argument("--batches", default="16,64,256")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    t, spec = load_instance(args.net, args.prop)
    bg, region = t.bg, spec.regions[0]
    fg = fe.compiled(bg)
    dj = graph_relu.Disjunct(bg, region, 0)
    relus = graph_relu.relu_nodes(bg)
    lo, hi = fe.boxes([region.lo], [region.hi])
    print(f"n_vars {bg.n_vars}, rows {len(dj.forms)}")
    for B in (int(x) for x in args.batches.split(",")):
        t0 = time.perf_counter()
        st = fe.forward(fg, np.repeat(lo, B, 0), np.repeat(hi, B, 0), "crown")
        tf = time.perf_counter() - t0
        bs = alpha.Backsub.from_fast(bg, fg, st, FAST)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            graph_relu._optimise(bs, dj, relus, st, [{}] * B, graph_relu.STEPS)
            n += 1
        dt = (time.perf_counter() - t0) / n
        print(f"B={B}: forward {tf / B * 1e3:.2f} ms/box, "
              f"{graph_relu.STEPS} α/β steps {dt / B * 1e3:.2f} ms/box")


if __name__ == "__main__":
    main()
