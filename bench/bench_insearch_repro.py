"""Run-to-run reproducibility of the input-split search (``bab.solve``) on one instance: per seed
and run, the verdict, boxes bounded, CPU and wall seconds, and the in-search attack's batches and
PGD rounds (``attack.InSearch.stats``). The seed goes to the up-front attack and, injected here, to
``InSearch`` (so a tree whose ``bab`` does not pass it on is measured the same way).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=TREE nice python bench/bench_insearch_repro.py NET.onnx PROP.vnnlib \
        [--seeds 0 1 2] [--runs 3] [--timeout 116]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from torchlean.verify import attack, bab
from torchlean.verify.table import load_instance


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("net")
    ap.add_argument("prop")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=116.0)
    a = ap.parse_args()
    made: list[attack.InSearch] = []
    init = attack.InSearch.__init__
    seed = 0

    def seeded(self, *args, **kw) -> None:  # (the seed this run asks for, whatever the caller passes)
        kw["seed"] = seed
        init(self, *args, **kw)
        made.append(self)

    attack.InSearch.__init__ = seeded  # type: ignore[method-assign]
    for seed in a.seeds:
        for run in range(a.runs):
            made.clear()
            t, spec = load_instance(Path(a.net), Path(a.prop))
            c0, w0 = time.process_time(), time.perf_counter()
            r = bab.solve(t, spec, timeout=a.timeout, seed=seed)
            print(json.dumps({"seed": seed, "run": run, "verdict": r.verdict, "boxes": r.stats.get("boxes"),
                              "cpu_s": round(time.process_time() - c0, 2),
                              "wall_s": round(time.perf_counter() - w0, 2),
                              "insearch": [m.stats for m in made]}), flush=True)


if __name__ == "__main__":
    main()
