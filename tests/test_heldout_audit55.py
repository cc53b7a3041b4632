"""Audit audit55: project (custom) primitives and project kernels in the claim layers other than
gradients: ``tl.verify.bounds`` / ``robustness`` (real and float32), the rounding-error ε
(``floats.bound_certificate``, ``python -m torchlean.floats bound``) and ``export_onnx``.

The hole: the trusted checker bounds torchlean's meaning of each primitive with its own rows, while
``tl.verify`` traced a model whose runtime ran a project's kernel under a shipped name
(``RULES["relu"] = ...``) or a project's primitive for which the project had written a row into the
checker's tables (``lower.ROWS["cube"] = ...``): bounds, ε and "verified" were about other
functions than the model as run. References: the model run by the runtime at points of the box,
numpy formulas of the same weights, and the spec's mpmath meaning.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import torchlean as tl
from torchlean.certificates import lower
from torchlean.certificates.bound_graph import Unsupported
from torchlean.floats import bound_certificate
from torchlean.runtime.rules import RULES, Rule
from torchlean.runtime.tensor import apply
from torchlean.spec.primitives import PRIMITIVES, Primitive


def _leaky(xp, x):  # a project's kernel registered under "relu": not relu's meaning
    return xp.maximum(x, 0.5 * x)


def _leaky_vjp(xp, g, out, x):
    return (g * xp.where(x > 0, 1.0, 0.5),)


def _net() -> tl.nn.Module:
    """y = (relu(x), -0.01): robust for label 0 under relu's meaning (0 > -0.01) near x = -1."""
    m = tl.nn.Sequential(tl.nn.Linear(1, 1), tl.nn.ReLU(), tl.nn.Linear(1, 2)).eval()
    m[0].weight.data[:] = 1.0
    m[0].bias.data[:] = 0.0
    m[2].weight.data[:] = np.array([[1.0], [0.0]])
    m[2].bias.data[:] = np.array([0.0, -0.01])
    return m


X = np.array([[-1.0]])


def _run(m, x):
    return np.asarray(m(tl.tensor(np.asarray(x, dtype=np.float64))).numpy(), dtype=np.float64)


def test_replaced_relu_kernel_robustness_refused(monkeypatch):
    monkeypatch.setitem(RULES, "relu", Rule("relu", _leaky, _leaky_vjp))
    m = _net()
    y = _run(m, X)
    # the model as run (reference: numpy of the same weights and the kernel that runs) is not robust
    want = np.array([[max(-1.0, -0.5), -0.01]])
    assert np.allclose(y, want) and int(y.argmax()) == 1
    with pytest.raises(Unsupported, match="relu: the model ran a kernel other than torchlean's"):
        tl.verify.robustness(m, X, eps=0.1, label=0)  # main: "verified"


def test_replaced_relu_kernel_bounds_and_epsilon_refused(monkeypatch):
    monkeypatch.setitem(RULES, "relu", Rule("relu", _leaky, _leaky_vjp))
    m = _net()
    for f32 in (False, True):
        with pytest.raises(Unsupported, match="relu"):
            tl.verify.bounds(m, X, eps=0.1, float32=f32)  # main: [0, 0] for output 0, the run -0.5
    g = tl.trace(m, tl.tensor(X))
    with pytest.raises(Unsupported, match="relu"):
        bound_certificate(g, [(-2, 0)], "binary32")  # main: ε 2.4e-7 for a run that is off by 1
    with pytest.raises(Unsupported, match="relu"):  # a Graph given with float32: the run's kernels
        tl.verify.bounds(g, X, eps=0.1, float32=True)


def test_graph_real_bounds_do_not_depend_on_kernels(monkeypatch):
    """A Graph's real bounds are about its spec meaning, whatever the process's kernels: answered."""
    g = tl.trace(_net(), tl.tensor(X))
    monkeypatch.setitem(RULES, "relu", Rule("relu", _leaky, _leaky_vjp))
    b = tl.verify.bounds(g, X, eps=0.1)
    assert b.lower[0, 0] == 0 and b.upper[0, 0] == 0  # relu of [-1.1, -0.9]


def test_kernel_ignoring_an_attribute_refused(monkeypatch):
    good = RULES["leaky_relu"]
    # a project's kernel that ignores the slope attribute (always 0.01)
    monkeypatch.setitem(RULES, "leaky_relu", Rule("leaky_relu", lambda xp, x, slope=0.01:
                                                  xp.where(x > 0, x, 0.01 * x), good.vjp))
    m = tl.nn.Sequential(tl.nn.LeakyReLU(0.5)).eval()
    x = np.array([[-1.0, 2.0]])
    spec = np.array(PRIMITIVES["leaky_relu"].mpmath(x, slope=0.5), dtype=float)
    assert not np.allclose(_run(m, x), spec)  # the run is not the spec's meaning
    with pytest.raises(Unsupported, match="leaky_relu"):
        tl.verify.bounds(m, x, eps=0.0)  # main: the spec's (-0.5, 2) while the run gives (-0.01, 2)


def test_rebound_constant_of_a_shipped_kernel_refused(monkeypatch):
    fwd = RULES["gelu"].forward
    monkeypatch.setitem(fwd.__globals__, "GELU_C", fwd.__globals__["GELU_C"] * 2)
    m = tl.nn.Sequential(tl.nn.GELU()).eval()
    x = np.array([[0.7, -0.3]])
    spec = np.array(PRIMITIVES["gelu"].mpmath(x), dtype=float)
    assert not np.allclose(_run(m, x), spec, atol=1e-6)
    with pytest.raises(Unsupported, match="gelu"):
        tl.verify.bounds(m, x, eps=0.01)


def test_kernel_swapped_during_forward_refused(monkeypatch):
    """A forward that swaps relu's kernel for its own call and restores it: the second trace's
    graph, run with the restored kernels, is not the model run there (the backstop)."""
    class Swap(tl.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, x):
            saved = RULES["relu"]
            RULES["relu"] = Rule("relu", _leaky, _leaky_vjp)
            try:
                return self.net(x)
            finally:
                RULES["relu"] = saved

    with pytest.raises((Unsupported, tl.runtime.trace.TraceError)):
        tl.verify.robustness(Swap().eval(), X, eps=0.1, label=0)


def test_project_vjp_only_still_answered(monkeypatch):
    """A straight-through VJP under relu (the forward is torchlean's): bounds and verdicts are about
    the forward only, so they are answered, and they hold for the model as run."""
    good = RULES["relu"]
    monkeypatch.setitem(RULES, "relu", Rule("relu", good.forward, lambda xp, g, out, x: (g,)))
    m = tl.nn.Sequential(tl.nn.Linear(2, 6), tl.nn.ReLU(), tl.nn.Linear(6, 3)).eval()
    x = np.array([[0.3, -0.2]])
    b = tl.verify.bounds(m, x, eps=0.05)
    pts = x + np.random.default_rng(0).uniform(-0.05, 0.05, (200, 2))
    assert all(b.contains(_run(m, p[None])) for p in pts)
    r = tl.verify.robustness(m, x, eps=1e-4, label=int(_run(m, x).argmax()), timeout=20)
    assert r.verdict == "verified"


def _cube_primitive(monkeypatch, name="cube_a55"):
    """A project's primitive (spec, runtime rule), registered for the test only."""
    def meaning(m, x):
        return np.vectorize(lambda v: v * v * v, otypes=[object])(x)
    monkeypatch.setitem(PRIMITIVES, name, Primitive(name, "elementwise", 1, lambda s: s, meaning))
    monkeypatch.setitem(RULES, name, Rule(name, lambda xp, x: x * x * x,
                                          lambda xp, g, out, x: (3 * g * x * x,)))

    class Cube(tl.nn.Module):
        def forward(self, x):
            return apply(name, x)
    return Cube


def test_project_row_in_the_checkers_table_not_used(monkeypatch):
    """A project that writes a bound row for its primitive into the checker's table (here a wrong
    one, x², so the row's bounds leave the run): refused, never labelled as the checker's."""
    Cube = _cube_primitive(monkeypatch)
    square = lower.ROWS["pow"]
    monkeypatch.setitem(lower.ROWS, "cube_a55", lambda L, args, at: square(L, args, {"exponent": 2}))
    monkeypatch.setitem(lower.ARITY, "cube_a55", 1)
    m = tl.nn.Sequential(Cube()).eval()
    x = np.array([[-1.0, 0.5]])
    assert np.allclose(_run(m, x), x ** 3)
    with pytest.raises(Unsupported, match="cube_a55: not torchlean's primitive"):
        tl.verify.bounds(m, x, eps=0.1)  # main: [0.81, 1.21] x [0.16, 0.36], the run -1 and 0.125
    with pytest.raises(Unsupported, match="cube_a55"):
        tl.verify.robustness(m, x, eps=0.1, label=1)
    g = tl.trace(m, tl.tensor(x))
    with pytest.raises(Unsupported, match="cube_a55"):
        tl.verify.bounds(g, x, eps=0.1)
    with pytest.raises(Unsupported, match="cube_a55"):
        bound_certificate(g, [(-1, 1)] * 2, "binary32")


def test_project_primitive_without_row_refused_everywhere(monkeypatch):
    Cube = _cube_primitive(monkeypatch)
    m = tl.nn.Sequential(tl.nn.Linear(2, 2), Cube()).eval()
    x = np.array([[0.1, 0.2]])
    for call in (lambda: tl.verify.bounds(m, x, eps=0.1),
                 lambda: tl.verify.bounds(m, x, eps=0.1, float32=True),
                 lambda: tl.verify.robustness(m, x, eps=0.1, label=0)):
        with pytest.raises(Unsupported, match="cube_a55"):
            call()
    pytest.importorskip("onnx")
    from torchlean.bridge._onnx_export import OnnxExportError
    from torchlean.bridge.onnx import export_onnx
    with pytest.raises(OnnxExportError, match="cube_a55"):
        export_onnx(tl.trace(m, tl.tensor(x)))


def test_shipped_model_still_answered_and_sound():
    m = tl.nn.Sequential(tl.nn.Linear(2, 5), tl.nn.Tanh(), tl.nn.Linear(5, 2)).eval()
    x = np.array([[0.2, -0.4]])
    b = tl.verify.bounds(m, x, eps=0.1, float32=True)
    pts = x + np.random.default_rng(1).uniform(-0.1, 0.1, (200, 2))
    assert all(b.contains(np.asarray(m(tl.tensor(p[None].astype(np.float32))).numpy())) for p in pts)


def test_floats_cli_refuses_an_unknown_primitive_in_one_line(tmp_path):
    """The CLI reads files only (no project code runs): a graph JSON naming a project's primitive is
    one line on stderr and a non-zero exit, never an ε."""
    g = tl.trace(tl.nn.Sequential(tl.nn.Linear(2, 2), tl.nn.ReLU()).eval(), tl.zeros(1, 2))
    d = json.loads(g.to_json())
    for n in d["nodes"]:
        if n["op"] == "relu":
            n["op"] = "cube_a55"
    p = tmp_path / "g.json"
    p.write_text(json.dumps(d))
    r = subprocess.run([sys.executable, "-m", "torchlean.floats", "bound", str(p), "--box", "0:1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cube_a55" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "epsilon" not in r.stdout and "replayed" not in r.stdout


def test_to_torch_of_a_model_with_a_project_kernel_refused(monkeypatch):
    torch = pytest.importorskip("torch")
    from torchlean.bridge import to_torch
    from torchlean.bridge.torch_io import TorchInteropError

    m = _net()
    x32 = X.astype(np.float32)
    tm = to_torch(m, example=tl.tensor(x32))  # torchlean's relu: torch's module is the model
    assert np.allclose(tm(torch.from_numpy(x32)).detach().numpy(), _run(m, x32))
    monkeypatch.setitem(RULES, "relu", Rule("relu", _leaky, _leaky_vjp))
    # main: a torch module computing (0, -0.01) for a model that runs (-0.5, -0.01)
    with pytest.raises(TorchInteropError, match="relu"):
        to_torch(m, example=tl.tensor(X))


def test_export_writes_the_graphs_meaning(monkeypatch):
    """export_onnx takes a Graph and writes its meaning (torchlean's relu) whatever kernel ran at
    trace time: onnxruntime gives the spec's value; the model with a project kernel does not, which
    is why tl.verify refuses that model rather than the export (documented in export_onnx)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from torchlean.bridge.onnx import export_onnx

    monkeypatch.setitem(RULES, "relu", Rule("relu", _leaky, _leaky_vjp))
    m = _net()
    g = tl.trace(m, tl.tensor(X))
    proto = export_onnx(g)
    s = ort.InferenceSession(proto.SerializeToString())
    got = s.run(None, {s.get_inputs()[0].name: X.astype(np.float32)})[0]
    assert np.allclose(got, [[0.0, -0.01]]) and np.allclose(_run(m, X), [[-0.5, -0.01]])
