"""``python -m torchlean transformer``: the corpus is what it says, the model is causal (a logit
never depends on later characters), and training reaches exact-match accuracy on held-out sums."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean.zoo import transformer as T


def test_corpus_is_every_sum_once() -> None:
    train, test = T.corpus()
    assert len(train) == 9000 and len(test) == 1000
    seen = set()
    for row in np.concatenate([train, test]):
        line = T.decode(row)
        a, rest = line[:-1].split("+")
        b, c = rest.split("=")
        assert int(a) + int(b) == int(c) and len(line) == T.LINE
        seen.add((a, b))
    assert len(seen) == 10000


def test_logits_are_causal() -> None:
    tl.manual_seed(0)
    net = T.CharGPT()
    net.eval()
    a = T.encode("12+34=046")[None]
    b = T.encode("12+34=999")[None]  # differs only after position 5
    la, lb = net(tl.tensor(a)).numpy(), net(tl.tensor(b)).numpy()
    assert np.allclose(la[:, :6], lb[:, :6], atol=1e-6)
    assert not np.allclose(la[:, 6:], lb[:, 6:])


def test_transformer_command_runs(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torchlean", "transformer", "--steps", "60", "--log",
                          str(tmp_path / "log.json")], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "exact-match accuracy on the 1,000 held-out sums" in out.stdout
    assert out.stdout.count("  sample: ") == 3


@pytest.mark.slow  # ~1 minute of training
def test_learns_addition_it_never_saw() -> None:
    net, history, _ = T.train(1500)
    _, test = T.corpus()
    got = T.greedy(net, test[:300, :T.PROMPT])
    assert np.mean((got[:, :3] == test[:300, T.PROMPT:T.PROMPT + 3]).all(1)) > 0.9
