"""PPO on CartPole (``python -m torchlean ppo``), and a checked safety property of the trained policy.

Environment: the classic cart-pole (Barto, Sutton & Anderson 1983, with the constants and Euler
step of OpenAI Gym's ``CartPole-v1``) in numpy, vectorised over ``envs`` copies: state (x, ẋ, θ, θ̇),
actions push left (0) or right (1) with 10 N, reward 1 per step, an episode ends when |x| > 2.4,
|θ| > 12° or after 500 steps. No simulator dependency.

Agent: PPO with the clipped objective (Schulman et al. 2017): a policy MLP 4-64-64-2 (tanh) giving
action logits and a value MLP 4-64-64-1, generalised advantage estimation (γ 0.99, λ 0.95),
``epochs`` passes of minibatch Adam per rollout of ``envs`` x ``horizon`` steps, its learning rate
(1e-3) decaying linearly to 0 over the run. The minibatch steps go through a ``Trainer``
(``zoo._fit``), so ``--backend``, ``--dtype`` and ``--device`` apply.

``--certify``: the policy's safety property "a pole falling right is pushed right" (and its mirror)
over a whole box of states, decided by complete verification (``tl.verify.robustness`` on the
logits: "push right" must be the strict argmax at every state of the box) and reported only with
the checker's verdict: "verified" (a vnn-unsat certificate the checker replayed) or "falsified" (a
state of the box, evaluated exactly, where the policy does not push right).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .. import _outward
from ..runtime.nn import Linear, Module, Sequential, Tanh

__all__ = ["ActorCritic", "CartPole", "SAFETY_BOXES", "policy_net", "ppo_loss", "train", "value_net"]

# CartPole-v1's constants
GRAVITY, MASS_CART, MASS_POLE, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
THETA_LIMIT, X_LIMIT, MAX_STEPS = 12 * 2 * np.pi / 360, 2.4, 500

#: name -> (low, high, action that must win): states where the pole falls fast to one side, near
#: the centre of the track; the action pushing the cart under the pole must be chosen
SAFETY_BOXES = {
    "falling right -> push right": ((-0.5, -0.5, 0.05, 0.5), (0.5, 0.5, 0.15, 1.5), 1),
    "falling left -> push left": ((-0.5, -0.5, -0.15, -1.5), (0.5, 0.5, -0.05, -0.5), 0),
}


class CartPole:
    """``n`` independent cart-poles; ``step(actions)`` returns (states, rewards, dones) and resets
    the finished ones (their returned state is the new episode's first)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.n = n
        self.state = self.rng.uniform(-0.05, 0.05, size=(n, 4))
        self.steps = np.zeros(n, dtype=int)
        self.returns = np.zeros(n)
        self.finished: list[float] = []  # returns of finished episodes

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, x_dot, theta, theta_dot = self.state.T
        force = np.where(actions == 1, FORCE, -FORCE)
        cos, sin = np.cos(theta), np.sin(theta)
        total = MASS_CART + MASS_POLE
        temp = (force + MASS_POLE * HALF_LENGTH * theta_dot**2 * sin) / total
        theta_acc = (GRAVITY * sin - cos * temp) / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos**2 / total))
        x_acc = temp - MASS_POLE * HALF_LENGTH * theta_acc * cos / total
        self.state = np.stack([x + TAU * x_dot, x_dot + TAU * x_acc, theta + TAU * theta_dot,
                               theta_dot + TAU * theta_acc], axis=1)
        self.steps += 1
        self.returns += 1.0
        done = (np.abs(self.state[:, 0]) > X_LIMIT) | (np.abs(self.state[:, 2]) > THETA_LIMIT) | \
            (self.steps >= MAX_STEPS)
        for i in np.flatnonzero(done):
            self.finished.append(float(self.returns[i]))
            self.state[i] = self.rng.uniform(-0.05, 0.05, size=4)
            self.steps[i], self.returns[i] = 0, 0.0
        return self.state.copy(), np.ones(self.n), done


def policy_net() -> Sequential:
    """Action logits from a state: 4-64-64-2 with tanh."""
    return Sequential(Linear(4, 64), Tanh(), Linear(64, 64), Tanh(), Linear(64, 2))


def value_net() -> Sequential:
    """State value: 4-64-64-1 with tanh."""
    return Sequential(Linear(4, 64), Tanh(), Linear(64, 64), Tanh(), Linear(64, 1))


class ActorCritic(Module):
    """The policy and value nets side by side: states (N, 4) -> (action logits (N, 2), values (N, 1)),
    the one model the Trainer trains (one Adam over both)."""

    def __init__(self) -> None:
        super().__init__()
        self.pi, self.v = policy_net(), value_net()

    def forward(self, s: Any) -> Any:
        return self.pi(s), self.v(s)


def ppo_loss(out: Any, y: Any, clip: float = 0.2) -> Any:
    """PPO's clipped surrogate + 0.5 value MSE - 0.01 entropy, on ``ActorCritic`` outputs (logits,
    values) and targets ``y`` (N, 5) = [one-hot action (2), old log-probability, advantage, return]."""
    from torchlean.nn import functional as F

    logits, value = out
    logp = F.log_softmax(logits, dim=-1)
    taken = (logp * y[:, :2]).sum(-1)
    ratio = F.exp(taken - y[:, 2])
    adv = y[:, 3]
    surrogate = F.minimum(ratio * adv, F.clamp(ratio, 1 - clip, 1 + clip) * adv)
    entropy = -(F.exp(logp) * logp).sum(-1)
    vloss = ((value[:, 0] - y[:, 4]) ** 2).mean()
    return -surrogate.mean() + 0.5 * vloss - 0.01 * entropy.mean()


@dataclass
class PPOResult:
    policy: Sequential
    mean_return: float  # mean return of the last 20 finished training episodes
    updates: int
    seconds: float
    history: list[dict[str, float]]


def train(updates: int = 60, envs: int = 8, horizon: int = 128, epochs: int = 4, minibatch: int = 256,
          lr: float = 1e-3, clip: float = 0.2, seed: int = 0, progress: bool | None = None,
          **flags: Any) -> PPOResult:
    """Train a PPO agent (module docstring) for ``updates`` rollouts; the minibatch steps go through
    one ``Trainer`` (``flags``: backend, dtype, device, as ``zoo._fit``)."""
    from functools import partial

    import torchlean as tl

    from ..progress import bar
    from ..runtime.lr_scheduler import LinearLR
    from . import _fit

    tl.manual_seed(seed)
    ac = ActorCritic()
    # the learning rate decays linearly to 0 over the run (as in CleanRL's and SB3's PPO): late
    # updates cannot undo a policy that balances
    total = updates * epochs * -(-envs * horizon // minibatch)
    trainer = _fit.trainer(ac, partial(ppo_loss, clip=clip), lr, seed, **flags,
                           scheduler=lambda opt: LinearLR(opt, 1.0, 0.0, total))
    env = CartPole(envs, seed)
    rng = np.random.default_rng(seed + 1)
    obs = env.state.copy()
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    with bar(total=updates, desc="ppo", unit="update", enabled=progress) as p:
        for u in range(updates):
            states, actions, logps, rewards, dones, values = [], [], [], [], [], []
            for _ in range(horizon):
                logits = _fit.predict(ac.pi, obs)
                logp_all = logits - np.logaddexp(logits[:, :1], logits[:, 1:])
                a = (rng.random(envs) < np.exp(logp_all[:, 1])).astype(int)
                states.append(obs)
                actions.append(a)
                logps.append(logp_all[np.arange(envs), a])
                values.append(_fit.predict(ac.v, obs)[:, 0])
                obs, r, d = env.step(a)
                rewards.append(r)
                dones.append(d)
            last = _fit.predict(ac.v, obs)[:, 0]
            adv = _gae(np.array(rewards), np.array(values), np.array(dones), last)
            ret = adv + np.array(values)
            batch = [np.concatenate(z) for z in (states, actions, logps, adv, ret)]
            sample, steps = _minibatches(*batch, epochs=epochs, minibatch=minibatch, rng=rng)
            trainer.train(sample, steps=steps, log_every=steps, progress=False)
            recent = env.finished[-20:]
            mean = float(np.mean(recent)) if recent else 0.0
            history.append({"step": u + 1, "mean_return": mean, "time": time.perf_counter() - t0})
            p.update(1)
            p.set_postfix(mean_return=f"{mean:.0f}", refresh=False)
    recent = env.finished[-20:]
    mean = float(np.mean(recent)) if recent else 0.0
    ac.eval()
    return PPOResult(ac.pi, mean, updates, time.perf_counter() - t0, history)


def _gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last: np.ndarray,
         gamma: float = 0.99, lam: float = 0.95) -> np.ndarray:
    """Generalised advantage estimates (T, envs); a done step does not bootstrap."""
    adv = np.zeros_like(rewards)
    running = np.zeros(rewards.shape[1])
    for t in reversed(range(len(rewards))):
        nxt = last if t == len(rewards) - 1 else values[t + 1]
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * nxt * live - values[t]
        running = delta + gamma * lam * live * running
        adv[t] = running
    return adv


def _minibatches(s: np.ndarray, a: np.ndarray, logp_old: np.ndarray, adv: np.ndarray, ret: np.ndarray,
                 epochs: int, minibatch: int, rng: np.random.Generator) -> tuple[Any, int]:
    """(sampler ``step -> (states, targets)``, step count): ``epochs`` passes over the rollout in
    minibatches of a fresh permutation each, targets as ``ppo_loss`` reads them (advantages
    normalised over the rollout)."""
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    y = np.concatenate([np.eye(2)[a], logp_old[:, None], adv[:, None], ret[:, None]], axis=1)
    chunks = [order[i:i + minibatch] for order in (rng.permutation(len(s)) for _ in range(epochs))
              for i in range(0, len(s), minibatch)]
    it = iter(chunks)

    def draw(step: int) -> tuple[np.ndarray, np.ndarray]:
        idx = next(it)
        return s[idx], y[idx]
    return draw, len(chunks)


def certify(policy: Any, timeout: float = 30.0) -> list[tuple[str, Any]]:
    """Each ``SAFETY_BOXES`` property decided for ``policy`` (module docstring): (name, result)."""
    from ..verify.api import robustness

    out = []
    for name, (lo, hi, action) in SAFETY_BOXES.items():
        centre, radius = _covering_ball(lo, hi)
        out.append((name, robustness(policy, centre[None], radius[None], action, timeout=timeout)))
    return out


def _covering_ball(lo: tuple[float, ...], hi: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(centre, radius) floats whose exact box [centre - radius, centre + radius] (what ``robustness``
    checks) contains the box [lo, hi], read as its floats and as their decimal texts alike. The
    plain (hi - lo) / 2 rounds: for theta in [0.05, 0.15] it gave [0.05 + 1 ulp, 0.15], so "verified
    on its whole box" was printed for a box whose face theta = 0.05 was never checked (audit49)."""
    centre = (np.array(lo, dtype=np.float64) + np.array(hi, dtype=np.float64)) / 2
    radius = []
    for c, a, b in zip(centre, lo, hi):
        low = min(Fraction(float(a)), Fraction(repr(float(a))))
        high = max(Fraction(float(b)), Fraction(repr(float(b))))
        radius.append(_outward.float_out(max(Fraction(float(c)) - low, high - Fraction(float(c))), "up"))
    return centre, np.array(radius, dtype=np.float64)


def evaluate(policy: Any, episodes: int = 10, seed: int = 123, act: Any = None) -> float:
    """Mean return of the greedy policy over ``episodes`` fresh episodes (at most 500 each);
    ``act``: states -> actions instead of ``policy``'s argmax (e.g. a PyTorch twin's)."""
    import torchlean as tl

    env = CartPole(episodes, seed)
    alive = np.ones(episodes, dtype=bool)
    total = np.zeros(episodes)
    for _ in range(MAX_STEPS):
        a = act(env.state) if act is not None else pi_act(tl, policy, env.state)
        _, _, done = env.step(a)
        total += alive
        alive &= ~done
        if not alive.any():
            break
    return float(total.mean())


def pi_act(tl: Any, policy: Any, states: np.ndarray) -> np.ndarray:
    """The greedy actions of ``policy`` at ``states``."""
    return policy(tl.tensor(states.astype(np.float32))).numpy().argmax(1)


def run(args: Any) -> int:
    """``python -m torchlean ppo`` (flags in ``torchlean.__main__``)."""
    from . import _fit

    flags = {k: getattr(args, k) for k in _fit.DEVICE_DEFAULTS}
    res = train(updates=args.updates, seed=args.seed, progress=args.progress, **flags)
    if args.device != "cpu" or args.dtype != "float32":  # evaluate and certify the float32 CPU policy
        res.policy.to(dtype="float32", device="cpu")
    greedy = evaluate(res.policy)
    print(f"PPO on CartPole ({args.dtype} on {args.device}, {args.backend} backend): {res.updates} updates "
          f"of 8 x 128 steps in {res.seconds:.1f} s; mean return of "
          f"the last 20 training episodes {res.mean_return:.0f}; greedy policy over 10 new episodes: "
          f"{greedy:.0f} (500 is the maximum)")
    _fit.report_log(args, res.history)
    if not args.certify:
        return 0
    res.policy.eval()
    from .claims import announce, float32_epsilon, gradient_proof, proof_budget

    announce(args, f"deciding the safety properties (up to {args.certify_timeout:g} s each)")
    for name, r in certify(res.policy, timeout=args.certify_timeout):
        where = ""
        if r.verdict == "falsified":
            where = " at state " + ", ".join(f"{v:.4g}" for v in np.ravel(r.counterexample))
        print(f"safety '{name}' on its whole box: {r.verdict}{where} ({r.reason})")
    print("'verified' = a vnn-unsat certificate replayed by the trusted checker; 'falsified' = a state "
          "of the box where exact evaluation shows the other action winning")
    lows, highs = zip(*((lo, hi) for lo, hi, _ in SAFETY_BOXES.values()))
    hull = list(zip(np.min(lows, 0).tolist(), np.max(highs, 0).tolist()))
    announce(args, "bounding the float32 rounding error")
    eps, observed = float32_epsilon(res.policy, np.zeros((1, 4)), hull)
    print(f"float32 rounding error of the policy's logits on the safety boxes' hull: |float32 - real| "
          f"<= {_outward.up(eps, 3)} (errorbound certificate replayed by the checker; observed "
          f"{observed:.3g} on 500 "
          "samples)")
    budget = proof_budget(args)
    announce(args, f"proving the @verified gradient of ppo_policy (budget {budget:g} s)")
    print(gradient_proof("ppo_policy", policy_net, (1, 4), budget=budget).summary())
    return 0
