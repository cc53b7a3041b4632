"""device="cuda" paths run against a numpy-backed stand-in for cupy (tests/fake_cupy).

The stand-in keeps cupy's rules that CPU-only tests would miss: device arrays are their own type,
refuse implicit conversion to numpy, and refuse host arrays in device operations. Passing here
proves the cuda code paths never silently drop to the host or feed host arrays to the device; it
does not prove anything about real GPU numerics (those tests stay marked ``gpu``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from tests.device_parity import assert_same_run, mlp_steps, trainer_run
from torchlean import nn
from torchlean.optim import SGD, Adam
from torchlean.runtime import backends

FAKE = Path(__file__).parent / "fake_cupy"


@pytest.fixture
def fake_cupy(monkeypatch):
    """The stand-in as ``cupy`` for this test only, with the backend's cupy cache reset around it."""
    real = backends.cuda_available() if "cupy" not in sys.modules else None
    if real:
        pytest.skip("a real GPU is present; the gpu-marked tests cover it")
    monkeypatch.syspath_prepend(str(FAKE))
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(backends, "_cupy", None)
    import cupy

    assert Path(cupy.__file__).is_relative_to(FAKE)
    yield cupy
    monkeypatch.setattr(backends, "_cupy", None)
    sys.modules.pop("cupy", None)


def test_stand_in_keeps_cupys_rules(fake_cupy):
    cp = fake_cupy
    a = cp.asarray([1.0, 2.0])
    assert not isinstance(a, np.ndarray) and str(a.device) == "cuda"
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError):
        a + np.ones(2)  # host array in a device op
    with pytest.raises(TypeError):
        cp.exp(np.ones(2))
    np.testing.assert_array_equal(cp.asnumpy(a * 2.0), [2.0, 4.0])
    assert isinstance(np.exp(a), cp.ndarray)  # numpy functions dispatch to the device


def test_tensor_on_cuda(fake_cupy):
    t = tl.tensor([[1.0, -2.0], [3.0, 4.0]], device="cuda", requires_grad=True)
    assert t.device == "cuda" and t.cpu().device == "cpu"
    y = (t.relu() * t).sum()
    y.backward()
    assert t.grad.device == "cuda"
    np.testing.assert_allclose(t.grad.numpy(), [[2.0, 0.0], [6.0, 8.0]])
    assert "tensor(" in repr(t)
    assert float(y.item()) == pytest.approx(26.0)


def test_host_array_into_device_op_fails(fake_cupy):
    t = tl.tensor([1.0, 2.0], device="cuda")
    c = tl.tensor([1.0, 2.0], device="cpu")
    for a, b in ((t, c), (c, t)):
        with pytest.raises(tl.DeviceError, match="cpu and cuda"):
            a + b
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(t.data)  # the device array never passes for a host one


@pytest.mark.parametrize("opt_cls", [SGD, Adam])
def test_mlp_forward_backward_step_matches_cpu(fake_cupy, opt_cls):
    run = [mlp_steps(device, opt_cls, (3, 8, 2), batch=5, steps=3) for device in ("cpu", "cuda")]
    assert_same_run(*run, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", ["eager", "compiled"])
def test_trainer_on_cuda_matches_cpu(fake_cupy, backend):
    assert_same_run(*(trainer_run(device, backend, steps=10) for device in ("cpu", "cuda")),
                    rtol=1e-9, atol=1e-12)


def test_traced_graph_runs_on_cuda(fake_cupy):
    from torchlean.runtime.execute import run_graph
    from torchlean.runtime.trace import trace

    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x = np.random.default_rng(2).normal(size=(2, 4)).astype(np.float32)
    graph = trace(model, tl.tensor(x))
    name = graph.inputs[0].name
    cpu = run_graph(graph, {name: x})
    cuda = run_graph(graph, {name: fake_cupy.asarray(x)}, device="cuda")
    assert isinstance(cuda[0], fake_cupy.ndarray)
    np.testing.assert_array_equal(cpu[0], fake_cupy.asnumpy(cuda[0]))
    for host in (x, x.tolist()):  # host inputs are moved to the device, as tl.tensor(..., device) does
        out = run_graph(graph, {name: host}, device="cuda", dtype=np.float32)
        np.testing.assert_array_equal(cpu[0], fake_cupy.asnumpy(out[0]))


def test_conv_and_attention_backward_on_cuda_match_cpu(fake_cupy):
    rng = np.random.default_rng(3)
    img = rng.normal(size=(2, 1, 6, 6))
    seq = rng.normal(size=(2, 5, 8))
    grads = {}
    for device in ("cpu", "cuda"):
        tl.manual_seed(0)
        conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)).to(dtype="float64").to(device)
        att = nn.MultiheadAttention(8, 2, batch_first=True).to(dtype="float64").to(device)
        x = tl.tensor(img, dtype="float64", device=device)
        s = tl.tensor(seq, dtype="float64", device=device)
        loss = conv(x).sum() + att(s, s, s)[0].tanh().sum()
        loss.backward()
        grads[device] = [p.grad.numpy() for p in [*conv.parameters(), *att.parameters()]]
    for a, b in zip(grads["cpu"], grads["cuda"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_cli_mlp_on_cuda(fake_cupy, capsys):
    from torchlean.__main__ import main

    assert main(["mlp", "--device", "cuda", "--steps", "3"]) == 0
    assert "on cuda" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["ibp", "crown", "alpha-crown"])
def test_bounds_on_device_boxes_match_host(fake_cupy, method):
    from torchlean.runtime.trace import trace
    from torchlean.verify.bounds import bounds

    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    graph = trace(model, tl.zeros(1, 3))
    lo = np.array([[-0.5, -0.2, 0.1], [0.0, 0.0, 0.0]])
    hi = lo + 0.3
    host = bounds(graph, (lo, hi), method)
    dev = bounds(graph, (fake_cupy.asarray(lo), fake_cupy.asarray(hi)), method)
    for h, d in zip(host, dev, strict=True):
        assert isinstance(d, fake_cupy.ndarray)  # stays on the device until asked for
        np.testing.assert_allclose(h, fake_cupy.asnumpy(d), rtol=1e-12, atol=1e-12)
    assert np.all(host[0] <= host[1])


def test_checkpoint_round_trip_on_cuda_resumes_exactly(fake_cupy, tmp_path):
    from torchlean.runtime.checkpoint import load_checkpoint, save_checkpoint

    rng = np.random.default_rng(4)
    x = tl.tensor(rng.normal(size=(6, 3)), dtype="float64", device="cuda")
    y = tl.tensor(rng.normal(size=(6, 1)), dtype="float64", device="cuda")

    def make():
        tl.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).to(dtype="float64").to("cuda")
        return model, Adam(model.parameters(), lr=0.05)

    def step(model, opt):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss.item()

    model, opt = make()
    step(model, opt)
    save_checkpoint(tmp_path / "c.npz", model, opt)
    expected = [step(model, opt) for _ in range(2)]
    model2, opt2 = make()
    load_checkpoint(tmp_path / "c.npz", model2, opt2)
    assert all(p.device == "cuda" for p in model2.parameters())
    assert [step(model2, opt2) for _ in range(2)] == expected
    assert all(p.device == "cuda" for p in model2.parameters())


@pytest.mark.parametrize("command, backend", [
    (["transformer", "--steps", "3"], "compiled"),
    (["transformer", "--steps", "3", "--corpus", "sums"], "eager"),
    (["vae", "--steps", "5"], "compiled"), (["fno", "--steps", "2"], "compiled"),
    (["pinn", "--steps", "5"], "eager"), (["ppo", "--steps", "1"], "compiled"),
    (["autoencoder", "--steps", "5"], "eager")])
def test_zoo_commands_on_cuda_match_cpu(fake_cupy, capsys, tmp_path, command, backend):
    """Every zoo command trains on the device (the stand-in refuses any host array there) and logs
    the CPU run's numbers: the stand-in computes in numpy, so the losses agree to the last bits."""
    import json

    from torchlean.__main__ import main

    runs = {}
    for device in ("cpu", "cuda"):
        log = tmp_path / f"{device}.json"
        argv = [*command, "--device", device, "--backend", backend, "--log", str(log), "--no-progress"]
        assert main(argv) == 0
        assert f"on {device}" in capsys.readouterr().out
        records = json.loads(log.read_text())["records"]
        runs[device] = [{k: v for k, v in r.items() if k != "time"} for r in records]
    assert runs["cuda"] == runs["cpu"] and runs["cpu"]


def test_cast_on_cuda_keeps_the_gradient_and_the_device(fake_cupy):
    """Session 33's cast on the device: .double()/.half() stay on cuda, the gradient comes back to
    the leaf's dtype and device, equal to the CPU run."""
    vals = [[0.3, -1.7], [2.5, 1e-3]]
    out = {}
    for dev in ("cpu", "cuda"):
        t = tl.tensor(vals, device=dev, requires_grad=True)
        d = t.double()
        assert d.device == dev and d.dtype == np.float64
        ((d * d).half().float() * 3).sum().backward()
        assert t.grad.device == dev and t.grad.dtype == np.float32
        out[dev] = t.grad.numpy()
    np.testing.assert_array_equal(out["cuda"], out["cpu"])
