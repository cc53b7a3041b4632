"""device="cuda" on a real NVIDIA GPU (real cupy): the paths tests/test_fake_cupy.py checks against
the numpy-backed stand-in, now against the GPU's own kernels.

The stand-in proves the cuda paths never drop to the host; these tests prove what it cannot: that
the GPU's kernels (cuBLAS, cuDNN-free cupy elementwise and reduction kernels, CUDA's libm) compute
the same real function as the CPU's, to a few ulp in binary64, and that a certified binary32 ε
(which assumes any summation order, fused multiply-adds included, and library transcendentals
within a few ulp) covers the error the GPU actually makes. Marked ``gpu``: skipped without cupy and
a GPU, excluded from the default run (pyproject's addopts); run with ``pytest -m gpu``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

import torchlean as tl
from tests.device_parity import assert_same_run, mlp, mlp_steps, trainer_run
from torchlean import nn
from torchlean.optim import SGD, Adam
from torchlean.runtime.backends import cuda_available

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not cuda_available(), reason="needs cupy and an NVIDIA GPU")]

# binary64 on two machines: the same real function up to summation order and libm (a few ulp)
RTOL64, ATOL64 = 1e-10, 1e-12


@pytest.fixture
def cp():
    import cupy

    return cupy


def _mlp_step(device: str, opt_cls) -> tuple[list, dict]:
    return mlp_steps(device, opt_cls, WIDTHS, batch=32, steps=5)


WIDTHS = (5, 16, 8, 2)


def test_arrays_live_on_the_gpu(cp):
    t = tl.tensor([[1.0, -2.0], [3.0, 4.0]], device="cuda", requires_grad=True)
    y = (t.relu() * t).sum()
    y.backward()
    assert isinstance(t.data, cp.ndarray) and isinstance(t.grad.data, cp.ndarray)
    np.testing.assert_array_equal(t.grad.numpy(), [[2.0, 0.0], [6.0, 8.0]])


@pytest.mark.parametrize("opt_cls", [SGD, Adam])
def test_mlp_training_steps_match_cpu(opt_cls):
    assert_same_run(_mlp_step("cpu", opt_cls), _mlp_step("cuda", opt_cls), rtol=RTOL64, atol=ATOL64)


@pytest.mark.parametrize("backend", ["eager", "compiled"])
def test_trainer_backends_on_gpu_match_cpu(backend):
    assert_same_run(*(trainer_run(device, backend, steps=30) for device in ("cpu", "cuda")),
                    rtol=1e-9, atol=1e-12)


def test_conv_pool_attention_and_norm_gradients_match_cpu():
    rng = np.random.default_rng(3)
    img = rng.normal(size=(4, 3, 12, 12))
    seq = rng.normal(size=(3, 7, 16))
    grads = {}
    for device in ("cpu", "cuda"):
        tl.manual_seed(0)
        conv = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 4, 3, stride=2), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4, 3),
                             nn.GELU()).to(dtype="float64").to(device)
        enc = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
        enc = enc.to(dtype="float64").to(device)
        x = tl.tensor(img, dtype="float64", device=device)
        s = tl.tensor(seq, dtype="float64", device=device)
        loss = conv(x).sum() + enc(s).tanh().sum()
        loss.backward()
        grads[device] = [p.grad.numpy() for p in [*conv.parameters(), *enc.parameters()]]
    for a, b in zip(grads["cpu"], grads["cuda"], strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL64, atol=ATOL64)


def test_traced_graph_on_gpu_matches_cpu(cp):
    from torchlean.runtime.execute import run_graph
    from torchlean.runtime.trace import trace

    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.SiLU(), nn.Linear(32, 32), nn.Softplus(), nn.Linear(32, 3),
                          nn.Softmax(dim=-1))
    x = np.random.default_rng(2).normal(size=(64, 4))
    graph = trace(model, tl.tensor(x))
    name = graph.inputs[0].name
    cpu = run_graph(graph, {name: x}, dtype=np.float64)
    gpu = run_graph(graph, {name: cp.asarray(x)}, device="cuda", dtype=np.float64)
    assert isinstance(gpu[0], cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(gpu[0]), cpu[0], rtol=RTOL64, atol=ATOL64)


def test_bounds_accept_device_boxes_and_contain_gpu_outputs(cp):
    from torchlean.runtime.execute import run_graph
    from torchlean.runtime.trace import trace
    from torchlean.verify.bounds import bounds

    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 2))
    graph = trace(model, tl.zeros(1, 3))
    lo = np.array([-0.5, -0.2, 0.1])
    hi = lo + 0.3
    host = bounds(graph, (lo, hi), "crown")
    dev = bounds(graph, (cp.asarray(lo), cp.asarray(hi)), "crown")
    assert isinstance(dev[0], cp.ndarray)  # handed back on the device it came from
    for h, d in zip(host, dev, strict=True):
        np.testing.assert_array_equal(h, cp.asnumpy(d))  # computed by the same host engine
    pts = np.random.default_rng(5).uniform(lo, hi, size=(4096, 3))
    batch = trace(model, tl.zeros(4096, 3))
    out = cp.asnumpy(run_graph(batch, {batch.inputs[0].name: cp.asarray(pts)}, device="cuda",
                               dtype=np.float64)[0])
    assert np.all(out >= host[0] - 1e-12) and np.all(out <= host[1] + 1e-12)


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU, nn.Sigmoid])
def test_certified_float32_epsilon_covers_the_gpus_error(cp, act):
    """The binary32 ε (replayed by the checker) bounds |GPU float32 - real| on every sampled point:
    the ε's model (any summation order, FMA allowed, library functions within a few ulp) holds for
    cuBLAS and CUDA's libm. The real value is the CPU's binary64 result (within ~1e-15 of it)."""
    from torchlean.certificates import check
    from torchlean.floats import bound_certificate, epsilons
    from torchlean.floats.errorbound import sample_box
    from torchlean.runtime.execute import run_graph
    from torchlean.runtime.trace import trace

    tl.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 64), act(), nn.Linear(64, 64), act(), nn.Linear(64, 2))
    box = [(Fraction(-1), Fraction(1))] * 4
    cert = bound_certificate(trace(model, tl.zeros(1, 4)), box, "binary32")
    assert check(cert).ok
    eps = np.array([float(e) for e in epsilons(cert)])
    n = 20_000
    x = sample_box(box, n, np.float32, seed=0)
    batch = trace(model, tl.zeros(n, 4))
    name = batch.inputs[0].name
    y32 = cp.asnumpy(run_graph(batch, {name: cp.asarray(x)}, device="cuda", dtype=np.float32)[0])
    ref = run_graph(batch, {name: x.astype(np.float64)}, dtype=np.float64)[0]
    err = np.abs(y32.astype(np.float64) - ref).max(axis=0)
    assert np.all(err > 0)  # the GPU really ran in binary32
    assert np.all(err + 1e-12 <= eps), (err, eps)


def test_checkpoint_saved_on_gpu_resumes_on_cpu(tmp_path):
    from torchlean.runtime.checkpoint import load_checkpoint, save_checkpoint

    losses, state = _mlp_step("cuda", Adam)
    model = mlp(WIDTHS, "cuda")
    model.load_state_dict(state)
    save_checkpoint(tmp_path / "c.npz", model, Adam(model.parameters(), lr=0.05))
    cpu_model = mlp(WIDTHS, "cpu")
    load_checkpoint(tmp_path / "c.npz", cpu_model, Adam(cpu_model.parameters(), lr=0.05))
    for k, v in cpu_model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])


@pytest.mark.parametrize("command", [["mlp", "--steps", "20"], ["cnn", "--steps", "10"],
                                     ["transformer", "--steps", "5", "--corpus", "sums"],
                                     ["lstm", "--steps", "5"], ["gru", "--steps", "5"],
                                     ["resnet", "--steps", "3"], ["autoencoder", "--steps", "5"],
                                     ["vae", "--steps", "5"], ["fno", "--steps", "3"],
                                     ["pinn", "--steps", "5"],
                                     ["ppo", "--steps", "1"]])
def test_zoo_commands_on_gpu_match_cpu(tmp_path, command):
    """Each zoo command trains on the GPU from its CLI and, in float64, logs the CPU run's losses to
    ~1e-9: the GPU's kernels change the last bits only."""
    runs = {}
    for device in ("cpu", "cuda"):
        log = tmp_path / f"{device}.json"
        argv = [*command, "--device", device, "--dtype", "float64", "--log", str(log), "--no-progress"]
        r = subprocess.run([sys.executable, "-m", "torchlean", *argv], capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr
        assert f"on {device}" in r.stdout
        runs[device] = json.loads(log.read_text())["records"]
    assert len(runs["cpu"]) == len(runs["cuda"]) > 0
    for a, b in zip(runs["cpu"], runs["cuda"], strict=True):
        for k, v in a.items():
            if k != "time" and isinstance(v, float):
                assert b[k] == pytest.approx(v, rel=1e-6, abs=1e-9), (k, v, b[k])


def test_cnn_trained_on_gpu_certifies_on_the_host():
    """Training on the device and the checked claims after it (the bound table and its checker run
    on the host): the hand-over of GPU weights to the verifier."""
    r = subprocess.run([sys.executable, "-m", "torchlean", "cnn", "--steps", "30", "--device", "cuda",
                        "--certify", "0.005", "--certify-n", "2", "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "certified" in r.stdout.lower(), r.stdout
