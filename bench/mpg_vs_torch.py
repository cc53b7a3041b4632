"""Auto MPG MLP (7→32→1): torchlean's test MSE against PyTorch's on the same everything.

Same data split and normalisation, same initial weights (torchlean's seeded init copied into
torch), same batch order, same optimizer (Adam) and hyper-parameters, float32. One command:

    python bench/mpg_vs_torch.py [--steps 200] [--lr 0.01] [--batch-size 32] [--seed 0]

prints the test MSE on the normalised target of both, and the largest parameter difference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torchlean as tl  # noqa: E402
from torchlean.runtime.data import DataLoader, TensorDataset  # noqa: E402
from torchlean.zoo import auto_mpg  # noqa: E402


def torch_run(state: dict[str, np.ndarray], data, batches: list[np.ndarray], lr: float):
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(7, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x = torch.tensor(data.x_train, dtype=torch.float32)
    y = torch.tensor(data.y_train, dtype=torch.float32)
    loss_fn = torch.nn.MSELoss()
    for idx in batches:
        i = torch.as_tensor(idx)
        opt.zero_grad()
        loss_fn(model(x[i]), y[i]).backward()
        opt.step()
    with torch.no_grad():
        xt = torch.tensor(data.x_test, dtype=torch.float32)
        yt = torch.tensor(data.y_test, dtype=torch.float32)
        mse = loss_fn(model(xt), yt).item()
    return mse, {k: v.detach().numpy() for k, v in model.state_dict().items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("bench/mpg_vs_torch.py: needs PyTorch (pip install 'torchlean[torch]')", file=sys.stderr)
        return 1

    data = auto_mpg.load()
    tl.manual_seed(args.seed)
    model = auto_mpg.mlp()
    init = {k: v.astype(np.float32) for k, v in model.state_dict().items()}
    trainer = tl.Trainer(model, optimizer="adam", lr=args.lr, dtype="float32", seed=args.seed)
    trained = trainer.train(data.train(), steps=args.steps, batch_size=args.batch_size, progress=False)
    ours = trained.eval(data.test())["loss"]

    # the Trainer's batch order: a DataLoader with the same seed, epochs repeated
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=args.batch_size, shuffle=True,
                        seed=args.seed)
    batches: list[np.ndarray] = []
    while len(batches) < args.steps:
        batches += list(loader.batch_indices())
    theirs, their_state = torch_run(init, data, batches[:args.steps], args.lr)
    diff = max(float(np.abs(v - their_state[k]).max()) for k, v in model.state_dict().items())

    print(f"Auto MPG MLP 7→32→1, Adam lr={args.lr}, batch {args.batch_size}, {args.steps} steps, float32")
    print(f"test MSE (normalised target)  torchlean: {ours:.6f}   PyTorch: {theirs:.6f}")
    print(f"largest parameter difference after training: {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
