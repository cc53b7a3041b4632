"""Time per training step (forward + backward + SGD update): torchlean eager, torchlean compiled and
PyTorch CPU, on the same model, initial weights, data and batch, float32, measured in the same run.

    python bench/bench_training.py [--rounds 15] [--threads N] [--only a|b] [--device cpu|cuda]

(a) MLP 7→32→1, batch 32, MSE;  (b) MLP 784→512→512→10, batch 256, cross-entropy.
The three contenders run interleaved (one block of steps each, per round) so machine noise hits
them alike; the table shows the median per-step time over rounds and the ratios to PyTorch. Torch's
intra-op threads are set to numpy's BLAS threads (both printed). The compiled and eager runs are also
checked to give bit-identical losses, and each is compared with torch's loss (same init, same data).
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torchlean as tl  # noqa: E402
from torchlean import nn  # noqa: E402
from torchlean.optim import SGD  # noqa: E402
from torchlean.runtime import functional as F  # noqa: E402
from torchlean.runtime.compiled import CompiledStep  # noqa: E402

LR = 0.01


# -- BLAS threads (numpy's OpenBLAS has no Python API for them; threadpoolctl is not a dependency)
def _openblas() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    try:
        paths = {ln.split()[-1] for ln in open("/proc/self/maps") if "openblas" in ln.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for get, put in (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                         ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                         ("openblas_get_num_threads", "openblas_set_num_threads")):
            if hasattr(lib, get) and hasattr(lib, put):
                g, s = getattr(lib, get), getattr(lib, put)
                return (lambda g=g: int(g())), (lambda n, s=s: s(ctypes.c_int(n)))
    return None


# -- the contenders ------------------------------------------------------------------------
def make_case(case: str, device: str):
    rng = np.random.default_rng(0)
    if case == "a":
        sizes, batch, classes = [7, 32, 1], 32, 0
    else:
        sizes, batch, classes = [784, 512, 512, 10], 256, 10

    def build() -> nn.Module:  # the same seeded initial weights on every call
        tl.manual_seed(0)
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1], dtype="float32"))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)
    data = []
    for _ in range(8):
        x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
        if classes:
            y = rng.integers(0, classes, size=batch).astype(np.int64)
        else:
            y = rng.standard_normal((batch, 1)).astype(np.float32)
        data.append((x, y))
    loss = F.cross_entropy if classes else F.mse_loss
    return build, data, loss, bool(classes)


def torchlean_runner(build, data, loss_fn, compiled: bool, device: str, fortran: bool = False):
    """One SGD training step of ``build()`` on ``device``, eager or compiled, as ``run(i)`` (batch
    ``i`` mod len(data); returns the step's detached loss, also appended to ``losses``), with the
    model's initial state (host arrays). bench_gpu.py and transformer_vs_torch.py time the same step."""
    model = build()
    if fortran:  # experiment: Linear weights stored column-major (same values; see bench/README.md)
        for p in model.parameters():
            if p.data.ndim == 2:
                p.data = np.asfortranarray(p.data)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    if device != "cpu":
        model.to(device=device)
    opt = SGD(model.parameters(), lr=LR)
    batches = [(tl.tensor(x, device=device), tl.tensor(y, device=device)) for x, y in data]
    step = CompiledStep(model, loss_fn) if compiled else None
    losses: list[float] = []

    def run(i: int):
        x, y = batches[i % len(batches)]
        if step is not None:
            loss = step(x, y)
        else:
            model.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
        opt.step()
        losses.append(loss.detach())  # not the Tensor itself: its tape would keep every step alive
        return losses[-1]

    return run, losses, state


def torch_runner(state, data, classes: bool, device: str):
    import torch

    dev = torch.device(device)
    names = sorted({k.split(".")[0] for k in state}, key=int)
    mods: list[torch.nn.Module] = []
    for j, n in enumerate(names):
        w = torch.from_numpy(state[f"{n}.weight"])
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(torch.from_numpy(state[f"{n}.bias"]))
        mods.append(lin)
        if j < len(names) - 1:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.functional.cross_entropy if classes else torch.nn.functional.mse_loss
    batches = [(torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)) for x, y in data]
    losses: list = []

    def run(i: int) -> None:
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.detach())

    return run, losses


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        tl.runtime.backends.cupy_module().cuda.Device().synchronize()


def bench_case(case: str, rounds: int, device: str, fortran: bool = False) -> dict[str, float]:
    build, data, loss_fn, classes = make_case(case, device)
    eager, eager_losses, state = torchlean_runner(build, data, loss_fn, False, device, fortran)
    comp, comp_losses, _ = torchlean_runner(build, data, loss_fn, True, device, fortran)
    tor, torch_losses = torch_runner(state, data, classes, device)
    runners = {"torchlean eager": eager, "torchlean compiled": comp, "pytorch": tor}
    # steps per block: about 20 ms of work each, so timer overhead is noise
    block = 200 if case == "a" else 3
    for run in runners.values():  # warm-up (traces the compiled step, fills caches)
        for i in range(max(3, block // 4)):
            run(i)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(rounds):
        for name, run in runners.items():
            _sync(device)
            t0 = time.perf_counter()
            for i in range(block):
                run(r * block + i)
            _sync(device)
            times[name].append((time.perf_counter() - t0) / block)
    same = all(
        a.numpy().tobytes() == b.numpy().tobytes() for a, b in zip(eager_losses, comp_losses, strict=True)
    )
    first_gap = abs(float(comp_losses[0].item()) - float(torch_losses[0].item()))
    out = {k: statistics.median(v) for k, v in times.items()}
    out["bit_identical"] = float(same)
    out["loss_gap_vs_torch"] = first_gap
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None, help="BLAS and torch threads (default: numpy's)")
    ap.add_argument("--only", choices=["a", "b"], default=None)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--fortran-weights", action="store_true",
                    help="experiment: store torchlean's 2-D weights column-major (see bench/README.md)")
    args = ap.parse_args(argv)
    import torch

    blas = _openblas()
    if args.threads is not None and blas is not None:
        blas[1](args.threads)
    np_threads = blas[0]() if blas is not None else -1
    torch.set_num_threads(args.threads or (np_threads if np_threads > 0 else torch.get_num_threads()))
    print(f"numpy {np.__version__} BLAS threads: {np_threads if np_threads > 0 else 'unknown'}; "
          f"torch {torch.__version__} threads: {torch.get_num_threads()}; device {args.device}; "
          f"median of {args.rounds} rounds"
          + ("; torchlean weights column-major" if args.fortran_weights else ""))
    cases = {"a": "(a) MLP 7-32-1, batch 32, MSE", "b": "(b) MLP 784-512-512-10, batch 256, CE"}
    header = f"{'case':40s} {'eager':>10s} {'compiled':>10s} {'pytorch':>10s} {'comp/torch':>11s} " \
             f"{'eager/torch':>11s} {'bit-identical':>14s}"
    print(header)
    for key, title in cases.items():
        if args.only and key != args.only:
            continue
        r = bench_case(key, args.rounds, args.device, args.fortran_weights)
        e, c, t = r["torchlean eager"], r["torchlean compiled"], r["pytorch"]
        print(f"{title:40s} {e * 1e6:8.1f}us {c * 1e6:8.1f}us {t * 1e6:8.1f}us {c / t:11.2f} "
              f"{e / t:11.2f} {'yes' if r['bit_identical'] else 'NO':>14s}")
        print(f"{'':40s} first-step loss |torchlean - torch| = {r['loss_gap_vs_torch']:.2e} "
              "(same init and data)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
