"""``python -m torchlean ppo``: the cart-pole dynamics, PPO learning to balance, and the safety
properties of the trained policy decided with certificates the checker accepts (mutations rejected)
and consistent with the policy's actions on sampled states."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean.zoo import ppo


def test_cartpole_is_mirror_symmetric_and_terminates() -> None:
    a, b = ppo.CartPole(1), ppo.CartPole(1)
    s = np.array([[0.1, -0.2, 0.03, 0.4]])
    a.state, b.state = s.copy(), -s.copy()
    for _ in range(5):
        sa, _, _ = a.step(np.array([1]))
        sb, _, _ = b.step(np.array([0]))
        assert np.allclose(sa, -sb, atol=1e-15)
    env = ppo.CartPole(3)
    lengths = []
    for _ in range(200):  # always pushing right topples the pole within ~10-60 steps
        env.step(np.ones(3, dtype=int))
    lengths = env.finished
    assert lengths and max(lengths) < 100


@pytest.fixture(scope="module")
def trained():
    res = ppo.train(updates=60, seed=0)
    res.policy.eval()
    return res


def test_ppo_learns_to_balance(trained) -> None:
    assert trained.history[-1]["mean_return"] > trained.history[0]["mean_return"]
    assert ppo.evaluate(trained.policy) >= 150  # a random policy lasts ~20 steps


def test_safety_verdicts_are_checked(trained) -> None:
    from torchlean.verify import table

    results = ppo.certify(trained.policy, timeout=30)
    assert all(r.verdict in ("verified", "falsified") for _, r in results), [r.reason for _, r in results]
    rng = np.random.default_rng(0)
    for (name, r), (lo, hi, action) in zip(results, ppo.SAFETY_BOXES.values()):
        states = rng.uniform(lo, hi, size=(500, 4))
        acts = ppo.pi_act(tl, trained.policy, states)
        if r.verdict == "verified":
            assert (acts == action).all(), name  # no sampled state contradicts a proof
            centre = ((np.array(lo) + np.array(hi)) / 2)[None]
            t = table.target(tl.trace(trained.policy, tl.tensor(centre)))
            assert table.check(r.certificate, t, r.spec).ok
            bad = copy.deepcopy(r.certificate)
            leaf = next(n for n in bad["regions"][0] if n[0] == "leaf")
            leaf[1][0][1] = str(Fraction(leaf[1][0][1]) * 1000)
            assert not table.check(bad, t, r.spec).ok
        else:
            x = np.ravel(r.counterexample)
            assert np.all(x >= np.array(lo) - 1e-12) and np.all(x <= np.array(hi) + 1e-12)


def test_ppo_command(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OPENBLAS_NUM_THREADS": "1",
           "TORCHLEAN_PROOF_CACHE": str(tmp_path / "proofs")}
    out = subprocess.run([sys.executable, "-m", "torchlean", "ppo", "--updates", "30", "--certify", "--log",
                          str(tmp_path / "log.json")], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "PPO on CartPole (float32 on cpu, eager backend): 30 updates" in out.stdout
    assert out.stdout.count("safety '") == 2
    assert "float32 rounding error of the policy's logits on the safety boxes' hull" in out.stdout
    assert "gradient proof of ppo_policy at input [1, 4] (compositional): checked by the trusted checker" \
        in out.stdout
    assert (tmp_path / "log.json").exists()
