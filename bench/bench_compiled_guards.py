"""Per-step cost of the compiled step's guards (audit37): A/B in one run, interleaved.

    nice python bench/bench_compiled_guards.py [--rounds 15] [--steps 50]

A: ``CompiledStep`` as it is (every call reads the model's modules, attributes, parameter objects,
``requires_grad`` flags and the loss closure, and compares them with the trace's). B: the same
step with the key of before audit37 (shapes, dtypes and the training flags of the modules listed
once at construction). The trace is the same in both (faithful), so the difference is the guard.
Models: (a) MLP 7→32→1, batch 32, MSE (the smallest step: the largest relative cost);
(b) the zoo's CharGPT on the "sums" corpus, batch 64, next-character cross-entropy (many modules).
Reports the median per-step time of each and the guard's own time (``_guards`` alone).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torchlean as tl  # noqa: E402
from torchlean import nn  # noqa: E402
from torchlean.runtime import compiled as C  # noqa: E402
from torchlean.runtime.compiled import CompiledStep  # noqa: E402


class OldKey(CompiledStep):
    """The pre-audit37 key: shapes/dtypes plus the training flags of modules listed once."""

    def __init__(self, model, loss_fn):
        super().__init__(model, loss_fn)
        self._mods = [m for o in (model, loss_fn) if hasattr(o, "modules") for m in o.modules()]

    def _state_key(self):
        return tuple(m.training for m in self._mods)


def cases():
    rng = np.random.default_rng(0)
    tl.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(7, 32), nn.ReLU(), nn.Linear(32, 1))
    x, y = rng.standard_normal((32, 7)).astype(np.float32), rng.standard_normal((32, 1)).astype(np.float32)
    yield "a MLP 7-32-1", mlp, lambda o, t: ((o - t) * (o - t)).mean(), x, y
    from torchlean.zoo import transformer as T
    tl.manual_seed(0)
    net = T.model("sums")
    xs, ys = T.batches("sums", 64, 0)(0)
    yield "b CharGPT sums", net, T.next_char_loss, xs, ys


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    for name, model, loss_fn, x, y in cases():
        new, old = CompiledStep(model, loss_fn), OldKey(model, loss_fn)
        assert new(x, y).item() == old(x, y).item()
        times = {"A guarded": [], "B old key": [], "guard alone": []}
        for _ in range(args.rounds):
            for label, step in (("A guarded", new), ("B old key", old)):
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step(x, y)
                times[label].append((time.perf_counter() - t0) / args.steps)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                C._guards(model, loss_fn)
            times["guard alone"].append((time.perf_counter() - t0) / args.steps)
        assert new.traces == 1 and old.traces == 1
        med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
        print(f"{name}: " + ", ".join(f"{k} {v:.1f} us" for k, v in med.items())
              + f"; A/B {med['A guarded'] / med['B old key']:.3f}")


if __name__ == "__main__":
    main()
