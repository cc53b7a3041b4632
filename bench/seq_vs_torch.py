"""LSTM and GRU forecasters (``python -m torchlean lstm|gru``) against PyTorch on the same everything.

Same windows of the generated Lotka-Volterra series, same initial weights (torchlean's seeded init
copied into torch through torch's state-dict names), same batch order, Adam, float32, one thread.

    OPENBLAS_NUM_THREADS=1 python bench/seq_vs_torch.py [--steps 300]

prints, per kind, the test MSE of both, the persistence baseline, the largest parameter difference
after training and the time per step of torchlean (eager, compiled) as ratios to PyTorch's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torchlean as tl  # noqa: E402
from torchlean.runtime.data import DataLoader, TensorDataset  # noqa: E402
from torchlean.zoo import sequence  # noqa: E402


def torch_run(torch, kind, state, data, batches, lr, hidden):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](2, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    m = Net()
    m.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    x, y = torch.tensor(data.x_train), torch.tensor(data.y_train)
    t0 = time.perf_counter()
    for idx in batches:
        i = torch.as_tensor(idx)
        opt.zero_grad()
        torch.nn.functional.mse_loss(m(x[i]), y[i]).backward()
        opt.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(m(torch.tensor(data.x_test)), torch.tensor(data.y_test)).item()
    return mse, {k: v.detach().numpy() for k, v in m.state_dict().items()}, seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench/seq_vs_torch.py: needs PyTorch (pip install 'torchlean[torch]')", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    data = sequence.load()
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=args.batch_size, shuffle=True,
                        seed=args.seed)
    batches: list[np.ndarray] = []
    while len(batches) < args.steps:
        batches += list(loader.batch_indices())
    batches = batches[:args.steps]
    print(f"Lotka-Volterra windows, hidden {args.hidden}, Adam lr={args.lr}, batch {args.batch_size}, "
          f"{args.steps} steps, float32, one thread; persistence baseline MSE {data.persistence_mse():.4f}")
    for kind in ("lstm", "gru"):
        tl.manual_seed(args.seed)
        init = {k: np.asarray(v, dtype=np.float32) for k, v in sequence.Forecaster(kind, args.hidden)
                .state_dict().items()}
        t_mse, t_state, t_s = torch_run(torch, kind, init, data, batches, args.lr, args.hidden)
        row = {}
        for backend in ("eager", "compiled"):
            net = sequence.Forecaster(kind, args.hidden)
            net.load_state_dict(init)
            tr = tl.Trainer(net, task="regression", lr=args.lr, seed=args.seed, backend=backend)
            trained = tr.train(data.train(), steps=args.steps, batch_size=args.batch_size, progress=False)
            row[backend] = (trained.eval(data.test())["loss"], net.state_dict(), trained.time_s)
        mse, state, _ = row["eager"]
        diff = max(float(np.abs(np.asarray(v) - t_state[k]).max()) for k, v in state.items())
        ratios = "  ".join(f"{b} {row[b][2] / t_s:.2f}x" for b in row)
        print(f"{kind.upper()}: test MSE torchlean {mse:.5f}  PyTorch {t_mse:.5f}; max parameter difference "
              f"{diff:.2g}; time/step PyTorch {t_s / args.steps * 1e3:.2f} ms, torchlean {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
