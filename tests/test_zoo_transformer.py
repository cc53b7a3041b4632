"""``python -m torchlean transformer``: the corpora are what they say (the bundled King James text is
the one SOURCE.md describes), the model is causal (a logit never depends on later characters),
training reaches exact-match accuracy on held-out sums and beats the unigram baseline on held-out
text, and bits per character is PyTorch's cross-entropy / ln 2."""

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
    cmd = ["transformer", "--corpus", "sums", "--steps", "60", "--log", str(tmp_path / "log.json")]
    out = subprocess.run([sys.executable, "-m", "torchlean", *cmd], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "exact-match accuracy on the 1,000 held-out sums" in out.stdout
    assert out.stdout.count("  sample: ") == 3


def test_bundled_text_is_the_documented_slice() -> None:
    import gzip
    import hashlib
    import re
    from importlib import resources

    source = (Path(T.__file__).parent / "data" / "KJV-SOURCE.md").read_text()
    raw = gzip.open(str(resources.files("torchlean.zoo") / "data" / T.TEXT)).read()
    assert hashlib.sha256(raw).hexdigest() in source
    text = raw.decode()
    assert f"{len(text):,} characters" in source and f"{text.count(chr(10)):,} lines" in source
    assert text.startswith("In the beginning God created the heaven and the earth.\n")
    assert text.endswith("throughout all their journeys.\n")  # Exodus 40:38
    assert not re.search(r"\d", text)  # the verse references were stripped
    train, test, chars = T.load_text()
    assert len(chars) == 62 and T.decode(np.concatenate([train, test]), chars) == text
    assert len(test) == len(text) - int(len(text) * 0.9)


def test_text_package_data_is_declared() -> None:
    import fnmatch

    import tomllib

    cfg = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = cfg["tool"]["setuptools"]["package-data"]["*"]
    for f in (Path(T.__file__).parent / "data").iterdir():
        if f.suffix != ".py":
            assert any(fnmatch.fnmatch(f.name, p) for p in patterns), f.name


def test_bits_per_char_is_torch_cross_entropy() -> None:
    torch = pytest.importorskip("torch")
    _, test, chars = T.load_text()
    tl.manual_seed(1)
    net = T.CharGPT(len(chars), T.BLOCK)
    ids = test[:T.BLOCK * 5 + 1]
    x, y = ids[:-1].reshape(5, T.BLOCK), ids[1:].reshape(5, T.BLOCK)
    logits = torch.tensor(net(tl.tensor(x)).numpy().astype(np.float64))
    want = float(torch.nn.functional.cross_entropy(logits.reshape(-1, len(chars)),
                                                   torch.tensor(y).reshape(-1)))
    assert abs(T.bits_per_char(net, ids) - want / np.log(2)) < 1e-6


def test_text_model_learns_beyond_unigram() -> None:
    train, test, _ = T.load_text()
    net, history, _ = T.train(80, batch_size=16, corpus="text", backend="compiled")
    assert history[-1]["loss"] < history[0]["loss"]
    assert T.bits_per_char(net, test[:8000]) < T.unigram_bits(train, test) - 0.4


@pytest.mark.slow  # ~1 minute of training
def test_learns_addition_it_never_saw() -> None:
    net, history, _ = T.train(1500)
    _, test = T.corpus()
    got = T.greedy(net, test[:300, :T.PROMPT])
    assert np.mean((got[:, :3] == test[:300, T.PROMPT:T.PROMPT + 3]).all(1)) > 0.9


def test_text_command_reports_held_out_bits_and_a_sample(capsys) -> None:
    from torchlean.__main__ import main

    assert main(["transformer", "--steps", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    bits = float(out.split(" nats = ")[1].split()[0])
    base = float(out.split("unigram baseline ")[1].split(")")[0])
    assert 0 < bits < 8 and abs(base - 4.315) < 1e-3
    sample = out.split("  sample: ")[1]
    assert sample[1:].startswith(T.PROMPT_TEXT)
