"""Training step of a TransformerEncoderLayer: torchlean eager and compiled against PyTorch CPU.

Same layer (d_model 64, 4 heads, feed-forward 128, batch_first, no dropout, post-norm as torch's
default), same initial weights (torchlean's, loaded into torch by torch's state-dict names), same
batches (32 sequences of 16 tokens), MSE to a fixed target, SGD(lr 0.01), float32, one thread;
interleaved rounds, median time per step:

    OPENBLAS_NUM_THREADS=1 python bench/transformer_vs_torch.py [--rounds 7] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bench_training import torchlean_runner  # noqa: E402  (this folder: the one timed step)

import torchlean as tl  # noqa: E402
from torchlean.runtime import functional as F  # noqa: E402

D, HEADS, FF, BATCH, LENGTH = 64, 4, 128, 32, 16


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal((BATCH, LENGTH, D)).astype(np.float32),
             rng.standard_normal((BATCH, LENGTH, D)).astype(np.float32)) for _ in range(4)]

    def build():
        tl.manual_seed(0)
        return tl.nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True)

    def ours(compiled: bool):
        run, _, state = torchlean_runner(build, data, F.mse_loss, compiled, "cpu")
        return (lambda i: float(run(i))), state

    eager, state = ours(False)
    comp, _ = ours(True)
    tm = torch.nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True)
    tm.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    topt = torch.optim.SGD(tm.parameters(), lr=0.01)
    tdata = [(torch.tensor(x), torch.tensor(y)) for x, y in data]

    def theirs(i: int) -> float:
        x, y = tdata[i % len(tdata)]
        topt.zero_grad()
        loss = torch.nn.functional.mse_loss(tm(x), y)
        loss.backward()
        topt.step()
        return loss.item()

    first = (eager(0), comp(0), theirs(0))  # same weights and batch: the same first loss
    runners = {"pytorch": theirs, "eager": eager, "compiled": comp}
    times: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(args.rounds):
        for name, run in runners.items():
            t0 = time.perf_counter()
            for i in range(args.steps):
                run(1 + r * args.steps + i)
            times[name].append((time.perf_counter() - t0) / args.steps)
    ref = statistics.median(times["pytorch"])
    print(f"TransformerEncoderLayer({D}, {HEADS}, {FF}), batch {BATCH}x{LENGTH}, SGD, float32, one thread; "
          f"first loss eager {first[0]:.6f} compiled {first[1]:.6f} PyTorch {first[2]:.6f}")
    print(f"ms/step  PyTorch {ref * 1e3:.2f}   " + "   ".join(
        f"torchlean {k} {statistics.median(times[k]) * 1e3:.2f} ({statistics.median(times[k]) / ref:.2f}x)"
        for k in ("eager", "compiled")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
