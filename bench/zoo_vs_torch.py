"""The zoo's models against the same models trained in PyTorch on the same everything.

For each model: torchlean's seeded initial weights loaded into a torch twin by torch's state-dict
names, the same batches in the same order (the command's own sampler replayed: the same text
windows, the same VAE noise, the same collocation points), the same optimiser and learning rate,
float32, one thread; printed: the command's quality measure for both, and the largest parameter
difference after training. The PINN's twin takes u'' by torch's double backward. PPO's twin runs
the same algorithm on the same environments with the same sampling generator, but the runs part
once a rounding difference flips a sampled action: compare its returns, not its weights.

    OPENBLAS_NUM_THREADS=1 python bench/zoo_vs_torch.py [--only resnet,autoencoder,vae,fno,transformer,...]
        [--seeds 0-9]    (ppo's seeds; each prints its returns, then mean, median and paired tests)

(cnn: bench/cnn_vs_torch.py; lstm/gru: bench/seq_vs_torch.py; mlp: bench/mpg_vs_torch.py.)
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


def _gpt_twin(torch, init):
    """The CharGPT's twin: same layers, torch's names, ``init``'s weights."""
    width, vocab = init.tok.weight.shape[1], init.tok.weight.shape[0]

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = torch.nn.Embedding(vocab, width), torch.nn.Embedding(init.block, width)
            self.blocks = torch.nn.ModuleList([torch.nn.TransformerEncoderLayer(
                width, 4, 2 * width, dropout=0.0, batch_first=True, norm_first=True) for _ in range(2)])
            self.norm, self.head = torch.nn.LayerNorm(width), torch.nn.Linear(width, vocab)

        def forward(self, idx):
            n, length = idx.shape
            x = self.tok(idx) + self.pos(torch.arange(length).expand(n, length))
            mask = torch.nn.Transformer.generate_square_subsequent_mask(length)
            for b in self.blocks:
                x = b(x, src_mask=mask, is_causal=True)
            return self.head(self.norm(x))

    return _load(Twin(), init)


def _torch_steps(torch, tm, sample, steps: int, lr: float, loss_fn) -> None:
    """Adam on ``loss_fn(tm, x, y)`` over ``sample(step)`` batches (numpy), as the Trainer does."""
    opt = torch.optim.Adam(tm.parameters(), lr=lr)
    tm.train()
    for step in range(steps):
        x, y = (torch.tensor(a) for a in sample(step))
        opt.zero_grad()
        loss_fn(tm, x, y).backward()
        opt.step()
    tm.eval()


def _next_char(torch):
    def loss(tm, x, y):
        logits = tm(x)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    return loss


def transformer(torch, steps: int):
    """The default ``transformer``: the King James text, held-out bits per character."""
    from torchlean.zoo import transformer as T

    tl.manual_seed(0)
    tm = _gpt_twin(torch, T.model("text"))
    net, _, _ = T.train(steps, batch_size=32, seed=0, corpus="text")
    _torch_steps(torch, tm, T.batches("text", 32, 0), steps, 3e-3, _next_char(torch))
    train_ids, test, chars = T.load_text()
    n = (len(test) - 1) // T.BLOCK
    x, y = test[:n * T.BLOCK].reshape(n, T.BLOCK), test[1:n * T.BLOCK + 1].reshape(n, T.BLOCK)
    with torch.no_grad():
        nats = torch.nn.functional.cross_entropy(tm(torch.tensor(x)).reshape(-1, len(chars)),
                                                 torch.tensor(y).reshape(-1))
    theirs = float(nats) / np.log(2)
    return "held-out bits/char", T.bits_per_char(net, test), theirs, _diff(net, tm)


def transformer_sums(torch, steps: int):
    """``transformer --corpus sums``: held-out exact match of greedy completions."""
    from torchlean.zoo import transformer as T

    tl.manual_seed(0)
    tm = _gpt_twin(torch, T.model("sums"))
    net, _, _ = T.train(steps, seed=0, corpus="sums")
    _torch_steps(torch, tm, T.batches("sums", 64, 0), steps, 3e-3, _next_char(torch))
    _, test = T.corpus(0)
    seq = torch.tensor(test[:, :T.PROMPT])
    with torch.no_grad():
        for _ in range(T.LINE - T.PROMPT):
            seq = torch.cat([seq, tm(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    theirs = float((seq[:, T.PROMPT:T.PROMPT + 3].numpy() == test[:, T.PROMPT:T.PROMPT + 3]).all(1).mean())
    got = T.greedy(net, test[:, :T.PROMPT])
    ours = float((got[:, :3] == test[:, T.PROMPT:T.PROMPT + 3]).all(1).mean())
    return "held-out exact match", ours, theirs, _diff(net, tm)


def vae(torch, steps: int):
    """The VAE: same init, the same batches and the same noise; test reconstruction MSE (and the
    negative ELBO with the same test noise, printed)."""
    from torchlean.zoo import digits
    from torchlean.zoo import generative as G

    data = digits.load()
    x = data.x_train.reshape(-1, 64)
    nn = torch.nn
    tl.manual_seed(0)
    init = G.VAE()

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(64, 32), nn.ReLU())
            self.mu, self.logvar = nn.Linear(32, G.LATENT), nn.Linear(32, G.LATENT)
            self.decoder = nn.Sequential(nn.Linear(G.LATENT, 32), nn.ReLU(), nn.Linear(32, 64), nn.Sigmoid())

        def forward(self, x):
            return self.decoder(self.mu(self.encoder(x)))

        def neg_elbo(self, x, eps):
            h = self.encoder(x)
            mu, logvar = self.mu(h), self.logvar(h)
            p = self.decoder(mu + torch.exp(logvar * 0.5) * eps)
            bce = -(x * torch.log(p + 1e-6) + (1 - x) * torch.log(1 - p + 1e-6)).sum(-1)
            return bce + 0.5 * (mu * mu + torch.exp(logvar) - logvar - 1).sum(-1)

    tm = _load(Twin(), init)
    net, _, _ = G.train("vae", steps=steps, seed=0)
    _torch_steps(torch, tm, G.batches("vae", x, 64, 0), steps, 3e-3,
                 lambda m, xe, _: m.neg_elbo(xe[:, :64].float(), xe[:, 64:].float()).mean())
    test = data.x_test.reshape(-1, 64)
    eps = np.random.default_rng(1).standard_normal((len(test), G.LATENT))
    with torch.no_grad():
        theirs = float(np.mean((tm(torch.tensor(test)).numpy() - test) ** 2))
        elbo_t = float(tm.neg_elbo(torch.tensor(test), torch.tensor(eps, dtype=torch.float32)).mean())
    ours = float(np.mean((net(tl.tensor(test)).numpy() - test) ** 2))
    print(f"  vae test negative ELBO (same noise): torchlean {G.test_elbo(net, test, 1):.3f}  "
          f"PyTorch {elbo_t:.3f}")
    return "test reconstruction MSE", ours, theirs, _diff(net, tm)


def pinn(torch, steps: int):
    """The PINN (torch's double backward for u''): max |u - u*| on 1,001 points (max |residual|
    printed)."""
    from torchlean.zoo import pinn as P

    nn = torch.nn
    tl.manual_seed(0)
    tm = _load(nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)),
               P.model())
    net, _, _ = P.train(steps, seed=0)

    def residual(m, x):
        x = x.clone().requires_grad_(True)
        u = m(x)
        (du,) = torch.autograd.grad(u, x, torch.ones_like(u), create_graph=True)
        (d2u,) = torch.autograd.grad(du, x, torch.ones_like(du), create_graph=True)
        return d2u + x * (x + 3) * torch.exp(x), u

    def loss(m, x, w):
        r, u = residual(m, x)
        return (w[:, :1] * r * r).sum() + (w[:, 1:] * u * u).sum()

    points, weights = P.collocation()
    pts32, w32 = points.astype(np.float32), weights.astype(np.float32)
    _torch_steps(torch, tm, lambda step: (pts32, w32), steps, 3e-3, loss)
    xs = np.linspace(0, 1, 1001).reshape(-1, 1).astype(np.float32)
    r_t, u_t = residual(tm, torch.tensor(xs))
    theirs = float(np.abs(u_t.detach().numpy() - P.exact_solution(xs)).max())
    ours = float(np.abs(net(tl.tensor(xs)).numpy() - P.exact_solution(xs)).max())
    r_o = float(np.abs(P.residual(net, tl.tensor(xs)).numpy()).max())
    r_t = float(r_t.detach().abs().max())
    print(f"  pinn max |u'' - f| on 1,001 points: torchlean {r_o:.3g}  PyTorch {r_t:.3g}")
    return "max |u - u*|", ours, theirs, _diff(net, tm)


def ppo(torch, updates: int, seeds: tuple[int, ...] = (0, 1, 2)):
    """PPO: the same algorithm, environment seeds, initial weights and sampling generator in torch,
    for each seed. The runs diverge once a rounding difference flips a sampled action, and one
    seed's result is luck, so this compares quality over ``seeds`` (mean greedy return over 10 new
    episodes; each seed's training and greedy returns printed), not weights."""
    results = [_ppo_seed(torch, updates, s) for s in seeds]
    ours, theirs = [r[0] for r in results], [r[1] for r in results]
    print("  ppo greedy returns by seed " + ",".join(map(str, seeds)) + ": torchlean "
          + " / ".join(f"{v:.0f}" for v in ours) + "; PyTorch " + " / ".join(f"{v:.0f}" for v in theirs))
    print(f"  ppo mean {np.mean(ours):.1f} vs {np.mean(theirs):.1f}; median {np.median(ours):.1f} vs "
          f"{np.median(theirs):.1f}; " + paired_tests(ours, theirs), flush=True)
    return ("greedy return (10 episodes, mean of seeds " + ",".join(map(str, seeds)) + ")",
            float(np.mean([r[0] for r in results])), float(np.mean([r[1] for r in results])),
            max(r[2] for r in results))


def paired_tests(ours: list[float], theirs: list[float]) -> str:
    """Two exact two-sided tests of "the per-seed differences ours - theirs are centred on 0" (the
    seeds pair the runs: the same initial weights and environments): the sign test (ties dropped)
    and the paired permutation test of the mean difference (all 2^n sign flips)."""
    from itertools import product
    from math import comb

    d = np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float)
    nz = d[d != 0]
    n, k = len(nz), int((nz > 0).sum())
    tail = min(k, n - k)
    sign_p = min(1.0, 2 * sum(comb(n, i) for i in range(tail + 1)) / 2**n) if n else 1.0
    obs = abs(d.sum())
    flips = [abs(np.dot(f, d)) for f in product((1.0, -1.0), repeat=len(d))]
    perm_p = sum(f >= obs - 1e-9 for f in flips) / len(flips)
    return (f"torchlean higher on {k}, lower on {n - k}, equal on {len(d) - n} seeds: "
            f"sign test p = {sign_p:.3g}; paired permutation test of the mean difference {d.mean():+.1f}: "
            f"p = {perm_p:.3g}")


def seed_list(text: str) -> tuple[int, ...]:
    """``"0-2,5"`` -> (0, 1, 2, 5)."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(out)


def _ppo_seed(torch, updates: int, seed: int):
    from torchlean.zoo import ppo as P

    nn = torch.nn

    def mlp(out):
        return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, out))

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.pi, self.v = mlp(2), mlp(1)

        def forward(self, s):
            return torch.cat([self.pi(s), self.v(s)], -1)

    tl.manual_seed(seed)
    tm = _load(Twin(), P.ActorCritic())
    res = P.train(updates=updates, seed=seed)
    opt = torch.optim.Adam(tm.parameters(), lr=1e-3)
    envs, horizon = 8, 128
    sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, updates * 4 * 4)  # as ppo.train
    env, rng = P.CartPole(envs, seed), np.random.default_rng(seed + 1)
    obs = env.state.copy()

    def loss(out, y, clip=0.2):
        logp = torch.log_softmax(out[:, :2], -1)
        ratio = torch.exp((logp * y[:, :2]).sum(-1) - y[:, 2])
        adv = y[:, 3]
        surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip, 1 + clip) * adv)
        entropy = -(torch.exp(logp) * logp).sum(-1)
        return -surrogate.mean() + 0.5 * ((out[:, 2] - y[:, 4]) ** 2).mean() - 0.01 * entropy.mean()

    for _ in range(updates):
        cols: list[list[np.ndarray]] = [[], [], [], [], [], []]
        for _ in range(horizon):
            with torch.no_grad():
                out = tm(torch.tensor(obs, dtype=torch.float32)).numpy().astype(np.float64)
            logp_all = out[:, :2] - np.logaddexp(out[:, :1], out[:, 1:2])
            a = (rng.random(envs) < np.exp(logp_all[:, 1])).astype(int)
            for c, v in zip(cols, (obs, a, logp_all[np.arange(envs), a], out[:, 2])):
                c.append(v)
            obs, r, d = env.step(a)
            cols[4].append(r)
            cols[5].append(d)
        states, actions, logps, values, rewards, dones = cols
        with torch.no_grad():
            last = tm(torch.tensor(obs, dtype=torch.float32))[:, 2].numpy().astype(np.float64)
        adv = P._gae(np.array(rewards), np.array(values), np.array(dones), last)
        ret = adv + np.array(values)
        batch = [np.concatenate(z) for z in (states, actions, logps, adv, ret)]
        draw, n = P._minibatches(*batch, epochs=4, minibatch=256, rng=rng)
        for step in range(n):
            s, y = (torch.tensor(v, dtype=torch.float32) for v in draw(step))
            opt.zero_grad()
            loss(tm(s), y).backward()
            opt.step()
            sched.step()
    recent = env.finished[-20:]

    def act(states):
        with torch.no_grad():
            return tm.pi(torch.tensor(states, dtype=torch.float32)).numpy().argmax(1)

    res.policy.eval()
    ours, theirs = P.evaluate(res.policy), P.evaluate(None, act=act)
    print(f"  ppo seed {seed}: mean return of the last 20 training episodes torchlean {res.mean_return:.0f}  "
          f"PyTorch {float(np.mean(recent)) if recent else 0.0:.0f}; greedy torchlean {ours:.0f}  "
          f"PyTorch {theirs:.0f}", flush=True)
    return ours, theirs, _diff(res.policy, tm.pi)


MODELS = {"resnet": (resnet, 400), "autoencoder": (autoencoder, 1500), "vae": (vae, 1500),
          "fno": (fno, 800), "transformer": (transformer, 1500), "transformer-sums": (transformer_sums, 1500),
          "pinn": (pinn, 3000), "ppo": (ppo, 150)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--seeds", type=seed_list, default=None,
                    help="ppo's seeds, e.g. 0-9 or 0,3,5 (default 0-2)")
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
        kw = {"seeds": args.seeds} if name == "ppo" and args.seeds else {}
        what, ours, theirs, diff = fn(torch, steps, **kw)
        print(f"{name:12s} {steps:5d} steps: {what} torchlean {ours:.4g}  PyTorch {theirs:.4g}; "
              f"max parameter difference {diff:.2g} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
