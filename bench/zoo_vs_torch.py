"""The zoo's models against the same models trained in PyTorch on the same everything.

For each model: torchlean's seeded initial weights loaded into a torch twin by torch's state-dict
names, the same batches in the same order (the command's own sampler replayed), the same optimiser
and learning rate, float32, one thread; printed: the command's quality measure for both, and the
largest parameter difference after training.

    OPENBLAS_NUM_THREADS=1 python bench/zoo_vs_torch.py [--only resnet,autoencoder,fno,transformer]

(cnn: bench/cnn_vs_torch.py; lstm/gru: bench/seq_vs_torch.py; mlp: bench/mpg_vs_torch.py; ppo and
pinn are not compared: PPO's sampled rollouts diverge at the first differently rounded logit, and
the PINN's torch twin needs torch's double backward, compared in tests/test_higher_order.py.)
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


def _load(tm, net):
    import torch

    tm.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in net.state_dict().items()})
    return tm


def _diff(net, tm) -> float:
    theirs = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    return max(float(np.abs(np.asarray(v) - theirs[k]).max()) for k, v in net.state_dict().items())


def resnet(torch, steps: int):
    from torchlean.zoo import cnn, digits

    data = digits.load()
    tl.manual_seed(0)
    net = cnn.model("resnet")

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.BatchNorm2d(16),
                                            torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1),
                                            torch.nn.BatchNorm2d(16))

        def forward(self, x):
            return x + self.body(x)

    tm = _load(torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16),
                                   torch.nn.ReLU(), Block(), torch.nn.ReLU(), Block(), torch.nn.ReLU(),
                                   torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(256, 10)), net)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=64, shuffle=True, seed=0)
    batches: list[np.ndarray] = []
    while len(batches) < steps:
        batches += list(loader.batch_indices())
    tr = tl.Trainer(net, task="classification", lr=0.01, seed=0)
    tr.train(data.train(), steps=steps, batch_size=64, progress=False)
    net.eval()
    ours = float((net(tl.tensor(data.x_test)).numpy().argmax(1) == data.y_test).mean())
    opt = torch.optim.Adam(tm.parameters(), lr=0.01)
    x, y = torch.tensor(data.x_train), torch.tensor(data.y_train)
    tm.train()
    for idx in batches[:steps]:
        i = torch.as_tensor(idx)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(tm(x[i]), y[i]).backward()
        opt.step()
    tm.eval()
    with torch.no_grad():
        theirs = float((tm(torch.tensor(data.x_test)).argmax(1).numpy() == data.y_test).mean())
    return "test accuracy", ours, theirs, _diff(net, tm)


def autoencoder(torch, steps: int):
    from torchlean.zoo import digits, generative

    data = digits.load()
    x = data.x_train.reshape(-1, 64)
    tl.manual_seed(0)
    init = generative.autoencoder()
    nn = torch.nn
    tm = _load(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 32),
                             nn.ReLU(), nn.Linear(32, 64), nn.Sigmoid()), init)
    net, _, _ = generative.train("autoencoder", steps=steps, seed=0)  # re-seeds: the same init
    loader = DataLoader(TensorDataset(x), batch_size=64, shuffle=True, seed=0)
    opt = torch.optim.Adam(tm.parameters(), lr=3e-3)
    xt, done = torch.tensor(x), 0
    while done < steps:
        for idx in loader.batch_indices():
            i = torch.as_tensor(idx)
            opt.zero_grad()
            torch.nn.functional.mse_loss(tm(xt[i]), xt[i]).backward()
            opt.step()
            done += 1
            if done == steps:
                break
    test = data.x_test.reshape(-1, 64)
    ours = float(np.mean((net(tl.tensor(test)).numpy() - test) ** 2))
    with torch.no_grad():
        theirs = float(np.mean((tm(torch.tensor(test)).numpy() - test) ** 2))
    return "test reconstruction MSE", ours, theirs, _diff(net, tm)


def fno(torch, steps: int):
    from torchlean.zoo import fno as F

    x, y = F.burgers(512, 0)
    xt, yt = F.burgers(128, 1000)
    tl.manual_seed(0)
    init = F.FNO1d()

    class Spectral(torch.nn.Module):
        def __init__(self, s):
            super().__init__()
            for name in ("fwd_cos", "fwd_sin", "inv_cos", "inv_sin"):
                self.register_buffer(name, torch.tensor(np.asarray(getattr(s, name).numpy())))
            self.weight_re = torch.nn.Parameter(torch.zeros(s.weight_re.shape))
            self.weight_im = torch.nn.Parameter(torch.zeros(s.weight_im.shape))

        def forward(self, v):
            re, im = (self.fwd_cos @ v).unsqueeze(-1), (self.fwd_sin @ v).unsqueeze(-1)
            out_re = (re * self.weight_re - im * self.weight_im).sum(2)
            out_im = (re * self.weight_im + im * self.weight_re).sum(2)
            return self.inv_cos @ out_re - self.inv_sin @ out_im

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lift = torch.nn.Linear(2, 24)
            self.spectral = torch.nn.ModuleList([Spectral(s) for s in init.spectral])
            self.pointwise = torch.nn.ModuleList([torch.nn.Linear(24, 24) for _ in range(3)])
            self.act = torch.nn.GELU(approximate="tanh")
            self.proj1, self.proj2 = torch.nn.Linear(24, 64), torch.nn.Linear(64, 1)
            self.register_buffer("coords", torch.tensor(np.asarray(init.coords.numpy())))

        def forward(self, u0):
            grid = self.coords.unsqueeze(0).expand(u0.shape[0], -1, -1)
            v = self.lift(torch.cat([u0.unsqueeze(-1), grid], -1))
            for k, (s, p) in enumerate(zip(self.spectral, self.pointwise)):
                v = s(v) + p(v)
                v = self.act(v) if k < 2 else v
            return self.proj2(self.act(self.proj1(v))).squeeze(-1)

    tm = _load(Twin(), init)
    net, _, _ = F.train(steps, seed=0)
    rng = np.random.default_rng(0)
    opt = torch.optim.Adam(tm.parameters(), lr=3e-3)
    X, Y = torch.tensor(x), torch.tensor(y)
    for _ in range(steps):
        i = torch.as_tensor(rng.integers(0, len(x), 32))
        opt.zero_grad()
        ((tm(X[i]) - Y[i]) ** 2).mean().backward()
        opt.step()
    with torch.no_grad():
        theirs = F.relative_l2(tm(torch.tensor(xt)).numpy(), yt)
    return "relative L2 test error", F.relative_l2(net(tl.tensor(xt)).numpy(), yt), theirs, _diff(net, tm)


def transformer(torch, steps: int):
    from torchlean.zoo import transformer as T

    tl.manual_seed(0)
    init = T.CharGPT()

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = torch.nn.Embedding(13, 64), torch.nn.Embedding(T.LINE, 64)
            self.blocks = torch.nn.ModuleList([torch.nn.TransformerEncoderLayer(
                64, 4, 128, dropout=0.0, batch_first=True, norm_first=True) for _ in range(2)])
            self.norm, self.head = torch.nn.LayerNorm(64), torch.nn.Linear(64, 13)

        def forward(self, idx):
            n, length = idx.shape
            x = self.tok(idx) + self.pos(torch.arange(length).expand(n, length))
            mask = torch.nn.Transformer.generate_square_subsequent_mask(length)
            for b in self.blocks:
                x = b(x, src_mask=mask, is_causal=True)
            return self.head(self.norm(x))

    tm = _load(Twin(), init)
    net, _, _ = T.train(steps, seed=0)
    lines, test = T.corpus(0)
    rng = np.random.default_rng(0)
    opt = torch.optim.Adam(tm.parameters(), lr=3e-3)
    for _ in range(steps):
        b = torch.tensor(lines[rng.integers(0, len(lines), 64)])
        opt.zero_grad()
        torch.nn.functional.cross_entropy(tm(b[:, :-1]).reshape(-1, 13), b[:, 1:].reshape(-1)).backward()
        opt.step()
    tm.eval()
    seq = torch.tensor(test[:, :T.PROMPT])
    with torch.no_grad():
        for _ in range(T.LINE - T.PROMPT):
            seq = torch.cat([seq, tm(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    theirs = float((seq[:, T.PROMPT:T.PROMPT + 3].numpy() == test[:, T.PROMPT:T.PROMPT + 3]).all(1).mean())
    got = T.greedy(net, test[:, :T.PROMPT])
    ours = float((got[:, :3] == test[:, T.PROMPT:T.PROMPT + 3]).all(1).mean())
    return "held-out exact match", ours, theirs, _diff(net, tm)


MODELS = {"resnet": (resnet, 400), "autoencoder": (autoencoder, 1500), "fno": (fno, 800),
          "transformer": (transformer, 1500)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench/zoo_vs_torch.py: needs PyTorch (pip install 'torchlean[torch]')", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    for name in args.only.split(","):
        if name not in MODELS:
            print(f"bench/zoo_vs_torch.py: unknown model {name!r}", file=sys.stderr)
            return 2
        fn, steps = MODELS[name]
        t0 = time.perf_counter()
        what, ours, theirs, diff = fn(torch, steps)
        print(f"{name:12s} {steps:5d} steps: {what} torchlean {ours:.4g}  PyTorch {theirs:.4g}; "
              f"max parameter difference {diff:.2g} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
