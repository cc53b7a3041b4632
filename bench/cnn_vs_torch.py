"""Digits CNN (``python -m torchlean cnn``): torchlean against PyTorch CPU on the same everything.

Same data split, same initial weights (torchlean's seeded init copied into torch), same batch order,
Adam with the same hyper-parameters, float32, one thread each. One command:

    OPENBLAS_NUM_THREADS=1 python bench/cnn_vs_torch.py [--steps 400] [--batch-size 64] [--rounds 3]

prints the test accuracy of both, the largest parameter difference after training, and the median
time per training step of torchlean eager and compiled over the rounds, with ratios to PyTorch's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torchlean as tl  # noqa: E402
from torchlean.runtime.data import DataLoader, TensorDataset  # noqa: E402
from torchlean.zoo import cnn, digits  # noqa: E402


def torch_model(torch, state: dict[str, np.ndarray]):
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                            torch.nn.Flatten(), torch.nn.Linear(64, 10))
    m.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    return m


def torch_run(state, data, batches, lr):
    """(test accuracy, final state, seconds of the training loop) in PyTorch."""
    import torch

    model = torch_model(torch, state)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.tensor(data.x_train), torch.tensor(data.y_train)
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for idx in batches:
        i = torch.as_tensor(idx)
        opt.zero_grad()
        loss_fn(model(x[i]), y[i]).backward()
        opt.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        acc = (model(torch.tensor(data.x_test)).argmax(1).numpy() == data.y_test).mean()
    return float(acc), {k: v.detach().numpy() for k, v in model.state_dict().items()}, seconds


def ours(init, data, steps, batch_size, lr, seed, backend):
    """(test accuracy, final state, seconds of the training loop) in torchlean."""
    model = cnn.model()
    model.load_state_dict(init)
    trainer = tl.Trainer(model, task="classification", optimizer="adam", lr=lr, dtype="float32", seed=seed,
                         backend=backend)
    trained = trainer.train(data.train(), steps=steps, batch_size=batch_size, progress=False)
    return trained.eval(data.test())["accuracy"], model.state_dict(), trained.time_s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3, help="timed repetitions (median reported)")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench/cnn_vs_torch.py: needs PyTorch (pip install 'torchlean[torch]')", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    data = digits.load()
    tl.manual_seed(args.seed)
    init = {k: np.asarray(v, dtype=np.float32) for k, v in cnn.model().state_dict().items()}
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=args.batch_size, shuffle=True,
                        seed=args.seed)
    batches: list[np.ndarray] = []
    while len(batches) < args.steps:
        batches += list(loader.batch_indices())
    batches = batches[:args.steps]
    times: dict[str, list[float]] = {"torch": [], "eager": [], "compiled": []}
    for _ in range(args.rounds):  # interleaved, so load on the machine hits all three alike
        t_acc, t_state, s = torch_run(init, data, batches, args.lr)
        times["torch"].append(s)
        for backend in ("eager", "compiled"):
            acc, state, s = ours(init, data, args.steps, args.batch_size, args.lr, args.seed, backend)
            times[backend].append(s)
            if backend == "eager":
                e_acc, e_state = acc, state
    diff = max(float(np.abs(np.asarray(v) - t_state[k]).max()) for k, v in e_state.items())
    print(f"digits CNN, Adam lr={args.lr}, batch {args.batch_size}, {args.steps} steps, float32, one thread")
    print(f"test accuracy  torchlean: {e_acc:.4f}   PyTorch: {t_acc:.4f}")
    print(f"largest parameter difference after training: {diff:.3g}")
    ref = statistics.median(times["torch"]) / args.steps * 1e3
    print(f"ms/step (median of {args.rounds})  PyTorch: {ref:.3f}", end="")
    for backend in ("eager", "compiled"):
        ms = statistics.median(times[backend]) / args.steps * 1e3
        print(f"   torchlean {backend}: {ms:.3f} ({ms / ref:.2f}x)", end="")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
