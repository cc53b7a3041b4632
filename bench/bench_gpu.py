"""torchlean on an NVIDIA GPU (cupy) against PyTorch CUDA on the same GPU, in the same run.

Training step: the same model (torchlean's initial weights loaded into torch by state-dict names),
the same batches, MSE to a fixed target, SGD(lr 0.01), float32; torchlean eager and compiled on
``device="cuda"``, PyTorch eager on ``cuda``; interleaved rounds, median time per step (each step
ends with the loss read back to the host, which synchronises both). Float32 ε: the checker's
certified binary32 bound over a box against the largest error the GPU actually makes on sampled
points (the reference is the CPU's binary64 run). One command:

    python bench/bench_gpu.py [--rounds 5] [--steps 20] [--quick]

Needs cupy, torch with CUDA and a GPU; prints one table per part.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bench_training import torchlean_runner  # noqa: E402  (this folder: the one timed step)

import torchlean as tl  # noqa: E402
from torchlean.runtime import functional as F  # noqa: E402


def models(quick: bool) -> list[tuple[str, Any, tuple[int, ...], tuple[int, ...]]]:
    """(name, architecture, input shape, target shape); an architecture is a function of the layer
    namespace, called with ``tl.nn`` and with ``torch.nn`` (their constructors take the same
    arguments), so each model is written once for both libraries."""
    out = [
        ("MLP 784-1024-1024-10, batch 512",
         lambda nn: nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                                  nn.Linear(1024, 10)), (512, 784), (512, 10)),
        ("digits CNN (python -m torchlean cnn), batch 64",
         lambda nn: nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(64, 10)), (64, 1, 8, 8), (64, 10)),
        ("CNN 3x32x32, conv 32/64, batch 256",
         lambda nn: nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(4096, 10)), (256, 3, 32, 32), (256, 10)),
        ("TransformerEncoderLayer(64, 4, 128), batch 32x16",
         lambda nn: nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True), (32, 16, 64),
         (32, 16, 64)),
        ("TransformerEncoderLayer(256, 8, 1024), batch 64x128",
         lambda nn: nn.TransformerEncoderLayer(256, 8, 1024, dropout=0.0, batch_first=True), (64, 128, 256),
         (64, 128, 256)),
    ]
    return out[:2] + out[3:4] if quick else out


def training(args: argparse.Namespace) -> None:
    import cupy
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # float32 arithmetic in both, as torchlean does
    torch.backends.cudnn.allow_tf32 = False
    print(f"GPU: {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}, cupy {cupy.__version__}, "
          f"torch {torch.__version__}")
    print("| model | PyTorch CUDA ms/step | torchlean eager | torchlean compiled "
          "| first loss (torch / eager / compiled) |")
    print("|---|---:|---:|---:|---|")
    for name, make, xs, ys in models(args.quick):
        print(time_model(torch, args, name, make, xs, ys), flush=True)


def time_model(torch, args: argparse.Namespace, name: str, make, xs, ys) -> str:
    """One table row: median ms/step of PyTorch CUDA, torchlean eager and compiled on cuda."""
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ys).astype(np.float32))
            for _ in range(4)]

    def build():
        tl.manual_seed(0)
        return make(tl.nn)

    def ours(compiled: bool):  # .item() each step: the GPU's queue drains inside the timed block
        run, _, state = torchlean_runner(build, data, F.mse_loss, compiled, "cuda")
        return (lambda i: float(run(i).item())), state

    eager, state = ours(False)
    comp, _ = ours(True)
    tm = make(torch.nn)  # the same architecture with torchlean's initial weights
    tm.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    tm = tm.cuda()
    topt = torch.optim.SGD(tm.parameters(), lr=0.01)
    tdata = [(torch.tensor(x).cuda(), torch.tensor(y).cuda()) for x, y in data]

    def theirs(i: int) -> float:
        x, y = tdata[i % len(tdata)]
        topt.zero_grad()
        loss = torch.nn.functional.mse_loss(tm(x), y)
        loss.backward()
        topt.step()
        return loss.item()

    first = (theirs(0), eager(0), comp(0))
    runners = {"pytorch": theirs, "eager": eager, "compiled": comp}
    for run in runners.values():  # warm-up: kernels compiled, plans built, caches filled
        for i in range(3):
            run(1 + i)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(args.rounds):
        for k, run in runners.items():
            t0 = time.perf_counter()
            for i in range(args.steps):
                run(4 + r * args.steps + i)
            times[k].append((time.perf_counter() - t0) / args.steps)
    ref = statistics.median(times["pytorch"])
    cells = [f"{statistics.median(times[k]) * 1e3:.2f} ({statistics.median(times[k]) / ref:.2f}x)"
             for k in ("eager", "compiled")]
    return (f"| {name} | {ref * 1e3:.2f} | {cells[0]} | {cells[1]} | "
            f"{first[0]:.6f} / {first[1]:.6f} / {first[2]:.6f} |")


def epsilon(args: argparse.Namespace) -> None:
    import cupy

    from torchlean.certificates import check
    from torchlean.floats import bound_certificate, epsilons
    from torchlean.floats.errorbound import sample_box
    from torchlean.runtime.execute import run_graph
    from torchlean.runtime.trace import trace

    nn = tl.nn
    n = 100_000
    print("\n| model, box [-1, 1]^4 | certified ε (max) | GPU float32 observed | CPU float32 observed | "
          "ε / GPU observed | points |")
    print("|---|---:|---:|---:|---:|---:|")
    for act in (nn.ReLU, nn.Tanh, nn.Sigmoid):
        for width in (16, 64):
            tl.manual_seed(1)
            model = nn.Sequential(nn.Linear(4, width), act(), nn.Linear(width, width), act(),
                                  nn.Linear(width, 2))
            box = [(Fraction(-1), Fraction(1))] * 4
            cert = bound_certificate(trace(model, tl.zeros(1, 4)), box, "binary32")
            if not check(cert).ok:
                raise SystemExit("the ε certificate did not replay")
            eps = np.array([float(e) for e in epsilons(cert)])
            x = sample_box(box, n, np.float32, seed=0)
            g = trace(model, tl.zeros(n, 4))
            name = g.inputs[0].name
            gpu = cupy.asnumpy(run_graph(g, {name: cupy.asarray(x)}, device="cuda", dtype=np.float32)[0])
            cpu = run_graph(g, {name: x}, dtype=np.float32)[0]
            ref = run_graph(g, {name: x.astype(np.float64)}, dtype=np.float64)[0]
            eg = np.abs(gpu.astype(np.float64) - ref).max(axis=0)
            ec = np.abs(np.asarray(cpu, dtype=np.float64) - ref).max(axis=0)
            ok = "" if np.all(eg <= eps) else " **NOT COVERED**"
            ratio = f"{np.min(eps / eg):.3g} - {np.max(eps / eg):.3g}{ok}"
            print(f"| MLP 4-{width}-{width}-2 {act.__name__.lower()} | {eps.max():.3g} | {eg.max():.3g} | "
                  f"{ec.max():.3g} | {ratio} | {n:,} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block")
    ap.add_argument("--quick", action="store_true", help="three small models only")
    args = ap.parse_args(argv)
    if not tl.cuda_available():
        print("error: needs cupy and an NVIDIA GPU", file=sys.stderr)
        return 2
    training(args)
    epsilon(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
