"""The rounding-error walk, exact column against its fast sibling (``certificates.fast_errors``),
same statement, same run: the walk's time (fast: first call, with the lowering and the fast graph
built, then a second call, cached) and epsilon per property box.

    OPENBLAS_NUM_THREADS=1 python bench/bench_fast_errors.py NET.onnx:PROP.vnnlib [...]
"""

from __future__ import annotations

import sys
import time

from torchlean.bridge.onnx import load_onnx
from torchlean.certificates.errorbound import propagate
from torchlean.certificates.property import parse_property
from torchlean.floats.errorbound import statement
from torchlean.verify.float32 import hull


def main() -> None:
    print("| network | property | exact s | fast s (first, cached) | max eps exact | max eps fast | "
          "fast/exact (outputs) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for arg in sys.argv[1:]:
        net, prop = arg.split(":")
        g = load_onnx(net)
        st = statement(g, hull(parse_property(open(prop).read())), "binary32", ranges="fast", column="exact")
        t = time.perf_counter()
        exact = propagate(st)[-1]
        te = time.perf_counter() - t
        times = []
        for _ in range(2):
            t = time.perf_counter()
            fast = propagate({**st, "column": "fast"})[-1]
            times.append(time.perf_counter() - t)
        r = [float(a / b) for a, b in zip(fast, exact) if b]
        print(f"| {net.split('/')[-1]} | {prop.split('/')[-1]} | {te:.2f} | {times[0]:.3f}, {times[1]:.3f} | "
              f"{float(max(exact)):.4g} | {float(max(fast)):.4g} | {min(r):.3f}-{max(r):.3f} |", flush=True)


if __name__ == "__main__":
    main()
