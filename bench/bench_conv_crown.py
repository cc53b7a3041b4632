"""One fast CROWN pass (``fast_engine.forward(..., "crown")``, every intermediate bound) over a box
around a random point of a conv net's input, timed alone (lowering and float conversion excluded),
with the profile's top entries (h-convbsub: the products with convolution matrices).

    OPENBLAS_NUM_THREADS=1 nice python bench/bench_conv_crown.py NET.onnx [--eps 0.0035] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import numpy as np

from torchlean.bridge import load_onnx
from torchlean.certificates import fast_engine as fe
from torchlean.certificates.lower import lower


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("net")
    ap.add_argument("--eps", type=float, default=0.0035)
    ap.add_argument("--profile", action="store_true", help="under cProfile, its top 14 by own time")
    args = ap.parse_args()
    bg = lower(load_onnx(args.net).to_dict())
    fg = fe.FastGraph(bg)
    x = np.random.default_rng(0).uniform(0, 1, (1, bg.n_in))
    pr = cProfile.Profile()
    if args.profile:
        pr.enable()
    t = time.perf_counter()
    fe.forward(fg, x - args.eps, x + args.eps, "crown")
    print(f"crown {time.perf_counter() - t:.2f} s")
    if args.profile:
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(14)


if __name__ == "__main__":
    main()
