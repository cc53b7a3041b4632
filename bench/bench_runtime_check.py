"""Cost of the onnxruntime cross-check of the import (h-audit8, ``verify.network.runtime_mismatch``)
on every ONNX network under /work/shared/data: three points per network, and whether any is refused.

    OPENBLAS_NUM_THREADS=1 nice python bench/bench_runtime_check.py
"""

import glob
import time

import numpy as np


def main() -> None:
    t0 = time.perf_counter()
    import onnxruntime  # noqa: F401  (timed: the check's fixed cost in a fresh process)

    imp = time.perf_counter() - t0
    from torchlean.verify.network import load_graph, runtime_mismatch

    rows = []
    for f in sorted(glob.glob("/work/shared/data/**/*.onnx", recursive=True)):
        g = load_graph(f)
        n = sum(int(np.prod(v.shape)) for v in g.inputs)
        rng = np.random.default_rng(0)
        pts = [rng.uniform(0, 1, n) for _ in range(3)]
        t = time.perf_counter()
        why = runtime_mismatch(f, g, pts)
        rows.append((time.perf_counter() - t, f.split("data/")[1], why))
    rows.sort()
    print(f"import onnxruntime {imp:.2f} s")
    print(f"max {rows[-1][0]:.3f} s ({rows[-1][1]}), median {rows[len(rows) // 2][0]:.3f} s, "
          f"refused {sum(why is not None for *_, why in rows)} of {len(rows)}")


if __name__ == "__main__":
    main()
