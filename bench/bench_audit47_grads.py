"""Cost of giving every leaf its own ``.grad`` array (audit47, ``autograd.own_grad``): one training
step (forward + backward + SGD) with the fix, and with ``own_grad`` replaced by the old behaviour
(the cotangent kept as it is), interleaved in the same run, eager and compiled.

    python bench/bench_audit47_grads.py [--rounds 9]

(a) MLP 7→32→1, batch 32, MSE; (b) MLP 784→512→512→10, batch 256, cross-entropy; float32.
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
from torchlean.optim import SGD  # noqa: E402
from torchlean.runtime import autograd, compiled  # noqa: E402
from torchlean.runtime import functional as F  # noqa: E402

FIXED = autograd.own_grad


def _old(g, dtype, taken):  # the pre-audit47 behaviour: the cotangent itself
    return g


def _setup(case: str):
    tl.manual_seed(0)
    rng = np.random.default_rng(0)
    if case == "a":
        model = nn.Sequential(nn.Linear(7, 32), nn.ReLU(), nn.Linear(32, 1))
        x, y = tl.tensor(rng.standard_normal((32, 7))), tl.tensor(rng.standard_normal((32, 1)))
        loss_fn = F.mse_loss
    else:
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                              nn.Linear(512, 10))
        x, y = tl.tensor(rng.standard_normal((256, 784))), tl.tensor(rng.integers(0, 10, 256))
        loss_fn = F.cross_entropy
    return model, x, y, loss_fn


def _time(step, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def _run(case: str, n: int, rounds: int) -> None:
    model, x, y, loss_fn = _setup(case)
    opt = SGD(model.parameters(), lr=0.01)
    cstep = compiled.CompiledStep(model, loss_fn)

    def eager() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    def comp() -> None:
        cstep(x, y)
        opt.step()

    labels = ("eager old", "eager fixed", "compiled old", "compiled fixed")
    times: dict[str, list[float]] = {k: [] for k in labels}
    for r in range(rounds):
        pairs = (("old", _old), ("fixed", FIXED))
        for label, fn in pairs if r % 2 else pairs[::-1]:  # alternate which goes first
            # backward looks own_grad up in its module, the compiled step in its own
            autograd.own_grad = compiled.own_grad = fn
            times[f"eager {label}"].append(_time(eager, n))
            times[f"compiled {label}"].append(_time(comp, n))
    autograd.own_grad = compiled.own_grad = FIXED
    for k, v in times.items():
        print(f"({case}) {k:15s} {statistics.median(v) * 1e3:8.3f} ms/step")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    for case, n in (("a", 200), ("b", 5)):
        _run(case, n, args.rounds)


if __name__ == "__main__":
    main()
