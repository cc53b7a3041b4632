"""``python -m torchlean cnn``: the bundled digits, the CNN's training quality against PyTorch on the
same weights, and ``--certify``: every counted verdict a certificate the checker accepts (mutations
rejected), counterexamples that really change torch's prediction, and the certified-accuracy picture."""

from __future__ import annotations

import copy
import gzip
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean.zoo import cnn, digits

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained():
    data = digits.load()
    tl.manual_seed(0)
    net = cnn.model()
    tr = tl.Trainer(net, task="classification", lr=0.01, seed=0)
    tr.train(data.train(), steps=150, batch_size=64)
    net.eval()
    return data, net, tr.eval(data.test())


def test_digits_are_the_bundled_uci_set() -> None:
    with gzip.open(digits.data_path(), "rt") as f:
        rows = np.loadtxt(f, delimiter=",")
    d = digits.load()
    assert len(d.x_train) + len(d.x_test) == len(rows) == 1797 and len(d.x_test) == 359
    assert d.x_train.shape[1:] == (1, 8, 8) and d.x_train.dtype == np.float32
    both = np.concatenate([d.x_train, d.x_test]).reshape(-1, 64)
    assert np.all((both * 16) == np.round(both * 16)) and both.min() == 0 and both.max() == 1
    assert sorted(set(d.y_test.tolist())) == list(range(10))
    # the split is a permutation of the file's rows, fixed by the seed
    assert sorted(map(tuple, both * 16)) == sorted(map(tuple, rows[:, :64]))
    assert np.array_equal(digits.load().y_test, d.y_test) and not np.array_equal(digits.load(seed=1).y_test,
                                                                                  d.y_test)


def test_cnn_learns_and_matches_torch(trained) -> None:
    torch = pytest.importorskip("torch")
    data, net, metrics = trained
    assert metrics["accuracy"] >= 0.9, metrics
    tm = _torch_cnn(torch, net)
    x = data.x_test[:64]
    ours = net(tl.tensor(x)).numpy()
    theirs = tm(torch.tensor(x)).detach().numpy()
    assert np.allclose(ours, theirs, atol=1e-5)
    assert (ours.argmax(1) == theirs.argmax(1)).all()


def _torch_cnn(torch, net, dtype=np.float32):
    """torch's twin of ``cnn.model()`` holding ``net``'s weights."""
    tm = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                             torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                             torch.nn.Flatten(), torch.nn.Linear(64, 10))
    tm = tm.double() if dtype == np.float64 else tm
    tm.load_state_dict({k: torch.tensor(np.asarray(v, dtype=dtype)) for k, v in net.state_dict().items()})
    return tm


def _leaf(tree):
    for node in tree:
        if node[0] == "leaf":
            return node
    raise AssertionError("no leaf")


def test_certified_images_have_checked_certificates(trained) -> None:
    from torchlean.verify import table

    data, net, _ = trained
    rep = cnn.certify(net, data.x_test[:3], data.y_test[:3], 0.01, timeout=20)
    assert rep.verdicts.count("verified") >= 2, rep.summary()
    for r in rep.results:
        if r.verdict != "verified":
            continue
        t = table.target(tl.trace(net, tl.tensor(data.x_test[:1])))
        assert table.check(r.certificate, t, r.spec).ok
        bad = copy.deepcopy(r.certificate)  # a claimed bound the engine does not reach
        proof = _leaf(bad["regions"][0])[1][0]
        proof[1] = str(Fraction(proof[1]) * 1000)
        assert not table.check(bad, t, r.spec).ok
        other = copy.deepcopy(r.certificate)  # a certificate for another network
        other["network"] = "0" * 64
        assert not table.check(other, t, r.spec).ok


def test_falsified_images_fool_torch_too(trained) -> None:
    torch = pytest.importorskip("torch")
    data, net, _ = trained
    eps = 0.5  # half the pixel range: every image has a counterexample
    rep = cnn.certify(net, data.x_test[:2], data.y_test[:2], eps, timeout=20)
    assert rep.verdicts.count("falsified") >= 1 and "verified" not in rep.verdicts, rep.summary()
    tm = _torch_cnn(torch, net, np.float64)
    for x, y, r in zip(data.x_test, data.y_test, rep.results):
        if r.verdict != "falsified":
            continue
        cex = np.asarray(r.counterexample, dtype=np.float64).reshape(1, 1, 8, 8)
        assert np.all(cex >= np.maximum(x - eps, 0) - 1e-12) and np.all(cex <= np.minimum(x + eps, 1) + 1e-12)
        out = tm(torch.tensor(cex)).detach().numpy()[0]
        assert np.delete(out, int(y)).max() >= out[int(y)] - 1e-9  # another class is at least as high


def test_cnn_command_certifies_and_draws(tmp_path: Path) -> None:
    png = tmp_path / "cert.png"
    # a 0.5 s budget for the gradient proof (~5-10 s with a fresh cache since h-tfproof; minutes before):
    # reported as not checked
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1",
           "TORCHLEAN_PROOF_BUDGET": "0.5", "TORCHLEAN_PROOF_CACHE": str(tmp_path / "proofs")}
    out = subprocess.run([sys.executable, "-m", "torchlean", "cnn", "--steps", "150", "--certify", "0.02",
                          "--certify-n", "3", "--plot", str(png)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert "test accuracy after 150 steps" in out.stdout
    assert out.stdout.count("certified accuracy at eps") == 4  # EPS/4 ... EPS
    # (the ε gets the same 0.5 s budget: certified or "NOT certified, timed out", never a silent wait)
    assert "float32 rounding error of the cnn on the whole data box [0, 1]^64: " in out.stdout
    assert "@verified gradient proof of cnn at input [1, 1, 8, 8] (compositional): NOT checked, timed out" \
        in out.stdout
    plt = pytest.importorskip("matplotlib.pyplot")
    img = plt.imread(png)
    assert img.shape[0] > 200 and img.shape[1] > 300 and img[..., :3].std() > 0.05
    bad = subprocess.run([sys.executable, "-m", "torchlean", "cnn", "--steps", "1", "--plot", str(png)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--certify" in bad.stderr


def test_float32_epsilon_covers_the_float32_runs(trained) -> None:
    data, net, _ = trained
    eps, observed = cnn.float32_epsilon(net, data.x_test[:1], samples=200)
    assert 0 < observed <= eps
    x = data.x_test[:50]  # the runtime's float32 logits against float64 ones on real images
    with_64 = net.to(dtype="float64")(tl.tensor(x.astype(np.float64))).numpy()
    net.to(dtype="float32")
    assert np.abs(net(tl.tensor(x)).numpy() - with_64).max() <= eps


@pytest.mark.slow  # ~40-80 s: the residual graph's verification at 16 channels
def test_resnet_matches_torch_and_certifies_an_image() -> None:
    torch = pytest.importorskip("torch")
    from torchlean.verify import table

    data = digits.load()
    tl.manual_seed(0)
    net = cnn.model("resnet")
    tl.Trainer(net, task="classification", lr=0.01, seed=0).train(data.train(), steps=60, batch_size=64)
    net.eval()

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.BatchNorm2d(16),
                                            torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1),
                                            torch.nn.BatchNorm2d(16))

        def forward(self, x):
            return x + self.body(x)

    tm = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                             Block(), torch.nn.ReLU(), Block(), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
                             torch.nn.Flatten(), torch.nn.Linear(256, 10)).eval()
    tm.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in net.state_dict().items()})
    x = data.x_test[:32]
    assert np.allclose(net(tl.tensor(x)).numpy(), tm(torch.tensor(x)).detach().numpy(), atol=1e-4)
    i = next(k for k in range(20) if net(tl.tensor(x[k:k + 1])).numpy().argmax() == data.y_test[k])
    r = tl.verify.robustness(net, x[i:i + 1], 0.002, int(data.y_test[i]), timeout=60, clip=(0, 1))
    assert r.verdict == "verified", r.reason
    t = table.target(tl.trace(net, tl.tensor(x[i:i + 1])))
    assert table.check(r.certificate, t, r.spec).ok
