"""Audit audit64: float claims on networks whose own format is narrower than the claim's (a float16
model: ``.to(dtype="float16")``, a float16 ONNX file), and the attention / recurrent blocks' float32
claims. References: mpmath (200 bits) on the stored weights, the runtime's own run of the model or
of the imported graph (its declared dtypes), torch's float16 arithmetic. TRUST_BOUNDARIES.md, "Audit
audit64".

The claim broken on the old code: ``tl.verify.bounds(model, x, eps, float32=True)`` ("the float32
run lies within"), ``zoo.claims.float32_epsilon``, ``tl.verify.robustness(..., float32=True)``
("verified", a checked ``vnn-unsat-float``) and ``python -m torchlean.verify NET --float32``
("unsat (float32-sound, checked)") charged binary32 roundings to a network that computes in float16
where float16 values meet: batch norm's scale ``1 / sqrt(var + eps) * w`` of float16 parameters, a
sum of two float16 weights, a float16 input. Each test accepts either answer the brief allows: a
one-line refusal, or a bound that holds for the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mpmath as mp
import numpy as np
import pytest

import torchlean as tl
import torchlean.nn.functional as F
from torchlean.certificates.bound_graph import Unsupported

mp.mp.prec = 200
X_BN = np.array([[1000.0]])


def _half_bn(channels_var=(3.0,)):
    bn = tl.nn.BatchNorm1d(len(channels_var))
    bn.running_var.data = np.array(channels_var, np.float32)
    return tl.nn.Sequential(bn).eval().to(dtype="float16")


def _bn_real(m, x):
    """The real network on the stored (float16) weights, at the real input x, in mpmath."""
    sd = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v, np.float64)
          for k, v in m.state_dict().items()}
    out = []
    for c, xc in enumerate(np.ravel(x)):
        w, b, mu, var = (mp.mpf(float(sd[f"0.{k}"][c]))
                         for k in ("weight", "bias", "running_mean", "running_var"))
        out.append((mp.mpf(float(xc)) - mu) / mp.sqrt(var + mp.mpf(1e-5)) * w + b)
    return out


class _Adapter(tl.nn.Module):
    """y = x (W + A B)^T, the low-rank adapter merged at run time (parameters moved to float16)."""

    def __init__(self):
        super().__init__()
        self.W = tl.nn.Parameter(tl.tensor([[1.0]]))
        self.A = tl.nn.Parameter(tl.tensor([[0.02]]))
        self.B = tl.nn.Parameter(tl.tensor([[0.02]]))

    def forward(self, x):
        return F.linear(x, self.W + self.A @ self.B)


def _one_line(e: BaseException) -> str:
    text = str(e)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


# -- the reference facts (hold on any code) --------------------------------------------------------

def test_reference_the_half_models_run_errs_by_far_more_than_binary32():
    """The float16 model's own run (on a float32 input) against mpmath: batch norm's scale and the
    merged adapter are rounded to float16 (torch's float16 arithmetic agrees on the latter)."""
    torch = pytest.importorskip("torch")
    m = _half_bn()
    y = float(m(tl.tensor(X_BN)).numpy().ravel()[0])
    assert abs(y - _bn_real(m, X_BN)[0]) > 0.1  # (a binary32 run errs by ~3e-5 here)
    a = _Adapter().eval().to(dtype="float16")
    y = float(a(tl.tensor([[100.0]])).numpy().ravel()[0])
    W, A, B = (mp.mpf(float(p.data[0, 0])) for p in (a.W, a.A, a.B))
    assert abs(y - 100 * (W + A * B)) > 0.03
    tw, ta, tb = (torch.tensor(p.data.astype(np.float32)).half() for p in (a.W, a.A, a.B))
    assert float(tw + ta @ tb) == 1.0 and y == 100.0  # torch rounds W + AB to float16 the same way


# -- the claims: refused, or true of the run --------------------------------------------------------

def test_bounds_float32_of_a_half_batch_norm_is_refused_or_holds():
    m = _half_bn()
    y = m(tl.tensor(X_BN)).numpy()
    try:
        b = tl.verify.bounds(m, X_BN, 0.0, float32=True)
    except Unsupported as e:
        assert "float16" in _one_line(e)
        return
    assert b.contains(y), (b, y)  # old code: [577.348, 577.35] around the real 577.349, run 577.148


def test_bounds_and_epsilon_of_a_half_adapter_are_refused_or_hold():
    from torchlean.zoo.claims import epsilon_line, float32_epsilon

    a = _Adapter().eval().to(dtype="float16")
    x = np.array([[100.0]])
    y = a(tl.tensor(x)).numpy()
    try:
        b = tl.verify.bounds(a, x, 0.0, float32=True)
    except Unsupported as e:
        assert "float16" in _one_line(e)
    else:
        assert b.contains(y), (b, y)
    W, A, B = (mp.mpf(float(p.data[0, 0])) for p in (a.W, a.A, a.B))
    err = float(abs(mp.mpf(float(y.ravel()[0])) - 100 * (W + A * B)))
    try:
        eps, _ = float32_epsilon(a, x, [(99, 101)])
    except Unsupported as e:
        assert "float16" in _one_line(e)
    else:
        assert eps >= err, (eps, err)  # old code: 1.8e-5 for an error of 0.04
    line = epsilon_line(a, x, [(99, 101)], "the adapter", samples=50, budget=120)
    assert "NOT certified" in line and "float16" in line, line


def test_bounds_float32_under_a_float16_default_dtype_is_refused_or_holds():
    """``tl.set_default_dtype("float16")``: ``tl.tensor(x')`` rounds to binary16, not binary32 as the
    docstring's claim reads; old code bounded y = x at 0.1 by [0.0999999, 0.100001], the run 0.09998."""
    before = tl.get_default_dtype()
    tl.set_default_dtype("float16")
    try:
        m = tl.nn.Sequential(tl.nn.Linear(1, 1)).eval()
        m[0].weight.data[...] = 1
        m[0].bias.data[...] = 0
        y = m(tl.tensor([[0.1]])).numpy()
        assert abs(float(y.ravel()[0]) - 0.1) > 1e-5  # (binary16's rounding of 0.1)
        try:
            b = tl.verify.bounds(m, [[0.1]], 0.0, float32=True)
        except Unsupported as e:
            assert "float16" in _one_line(e)
        else:
            assert b.contains(y), (b, y)
    finally:
        tl.set_default_dtype(before)


def test_robustness_float32_of_a_half_batch_norm_is_not_verified_while_its_run_flips():
    """Channel 0 wins over the reals (577.349 > 577.247), channel 1 in the model's own run (577.148
    < 577.25): old code answered "verified" with a checked vnn-unsat-float certificate."""
    m = _half_bn((3.0, 1.0))
    x = np.array([[1000.0, 577.25]])
    run = m(tl.tensor(x)).numpy().ravel()
    real = _bn_real(m, x)
    assert real[0] > real[1] and run[0] < run[1]
    try:
        r = tl.verify.robustness(m, x, 0.01, 0, float32=True)
    except Unsupported as e:
        assert "float16" in _one_line(e)
        return
    assert r.verdict != "verified", r.reason


def test_the_checker_rejects_a_binary32_verdict_for_a_float16_network(monkeypatch):
    """The trusted side (``float_vnn``): a certificate made with the generator's refusal switched
    off is rejected, not only refused by the search."""
    import torchlean.verify.float32 as vf
    from torchlean.certificates import float_vnn
    from torchlean.certificates.errorbound import model_id
    from torchlean.certificates.lower import lower

    keep = getattr(float_vnn, "_native", None)
    monkeypatch.setattr(vf, "native_format", lambda *a, **k: None, raising=False)
    monkeypatch.setattr(float_vnn, "_native", lambda *a, **k: None, raising=False)
    m = _half_bn((3.0, 1.0))
    r = tl.verify.robustness(m, np.array([[1000.0, 577.25]]), 0.01, 0, float32=True)
    assert r.verdict == "verified" and r.certificate is not None
    if keep is not None:
        monkeypatch.setattr(float_vnn, "_native", keep)
    ir = r.certificate["errorbound"]["statement"]["graph"]
    v = float_vnn.check_vnn_float(r.certificate, lower(ir), r.spec, model=model_id(ir))
    assert not v.ok and "float16" in v.reason, v


# -- ONNX float16 files through the CLI ----------------------------------------------------------

def _onnx(path: Path, kind: str, f16: bool = True) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    dt, npdt = (TensorProto.FLOAT16, np.float16) if f16 else (TensorProto.FLOAT, np.float32)
    X = helper.make_tensor_value_info("X", dt, [1, 1])
    Y = helper.make_tensor_value_info("Y", dt, [1, 1])
    if kind == "bn":
        inits = [numpy_helper.from_array(np.array([v], dtype=npdt), n)
                 for n, v in (("s", 1.0), ("b", 0.0), ("m", 0.0), ("v", 3.0))]
        nodes = [helper.make_node("BatchNormalization", ["X", "s", "b", "m", "v"], ["Y"], epsilon=1e-5)]
    else:  # (x + 1024) - 1024: float16's ulp at 1024 is 1
        inits = [numpy_helper.from_array(np.array([[1024.0]], dtype=npdt), "c")]
        nodes = [helper.make_node("Add", ["X", "c"], ["t"]), helper.make_node("Sub", ["t", "c"], ["Y"])]
    m = helper.make_model(helper.make_graph(nodes, "g", [X], [Y], inits),
                          opset_imports=[helper.make_opsetid("", 15)])
    m.ir_version = 8
    onnx.save(m, str(path))


def _prop(path: Path, lo: str, hi: str, y_le: str) -> None:
    path.write_text(f"(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 {lo}))\n"
                    f"(assert (<= X_0 {hi}))\n(assert (<= Y_0 {y_le}))\n")


@pytest.mark.parametrize("kind,lo,hi,y_le,x", [("bn", "1000", "1000.25", "577.3", 1000.0),
                                               ("shift", "0.2", "0.3", "0.1", 0.25)])
def test_verify_float32_on_a_float16_onnx_file(kind, lo, hi, y_le, x, tmp_path, capsys):
    """The runtime's run of the imported graph (its declared float16 input; for batch norm a float32
    feed too) lies in the unsafe set at x, the real network nowhere in the region; the old CLI
    printed "unsat (float32-sound, checked)"."""
    from torchlean.bridge.onnx import load_onnx
    from torchlean.runtime.execute import run_graph
    from torchlean.verify.__main__ import main

    net, prop = tmp_path / "n.onnx", tmp_path / "p.vnnlib"
    _onnx(net, kind)
    _prop(prop, lo, hi, y_le)
    g = load_onnx(net)
    feeds = [np.float16] + ([np.float32] if kind == "bn" else [])
    for dt in feeds:
        y = float(np.ravel(run_graph(g, {"X": np.array([[x]], dt)})[0])[0])
        assert y <= float(y_le), (dt, y)
    real_min = (mp.mpf(lo) / mp.sqrt(mp.mpf(3) + mp.mpf(1e-5))) if kind == "bn" else mp.mpf(lo)
    assert real_min > mp.mpf(y_le)
    rc = main([str(net), str(prop), "--float32", "--timeout", "60"])
    out = capsys.readouterr()
    assert "unsat" not in out.out, out.out
    assert rc == 2 and "float16" in out.err and "Traceback" not in out.err, out


def test_floats_bound_certifies_the_float16_files_own_format(tmp_path, capsys):
    """``--format binary16`` on the float16 batch norm: epsilon covers the runtime's own float16 run
    (declared dtype) at every float16 value of the box against mpmath; the default binary32 bound
    (of the graph run in binary32) now says that it is not the network's own run."""
    from torchlean.bridge.onnx import load_onnx
    from torchlean.floats.__main__ import main as floats_main
    from torchlean.runtime.execute import run_graph

    net = tmp_path / "n.onnx"
    _onnx(net, "bn")
    args = ["bound", str(net), "--box", "999:1001", "--samples", "50"]
    assert floats_main(args + ["--format", "binary16"]) == 0
    out = capsys.readouterr()
    eps = float(out.out.splitlines()[2].split()[1])
    g = load_onnx(net)
    xs = np.arange(np.float16(999), np.float16(1001.5), np.float16(0.5), dtype=np.float16)
    errs = [abs(mp.mpf(float(np.ravel(run_graph(g, {"X": np.array([[v]], np.float16)})[0])[0]))
                - mp.mpf(float(v)) / mp.sqrt(mp.mpf(3) + mp.mpf(1e-5))) for v in xs]
    assert len(xs) == 5 and max(errs) > 0.3 and max(errs) <= eps, (errs, eps)
    assert "note:" not in out.err
    assert floats_main(args) == 0
    err = capsys.readouterr().err
    assert "note:" in err and "float16" in err and "not of the network's own run" in err, err


# -- what stays certified (controls: pass before and after) ------------------------------------------

def test_float32_and_float64_models_stay_certified_and_hold():
    for dt in ("float32", "float64"):
        bn = tl.nn.BatchNorm1d(1)
        bn.running_var.data = np.array([3.0], np.float32)
        m = tl.nn.Sequential(bn).eval().to(dtype=dt)
        b = tl.verify.bounds(m, X_BN, 0.5, float32=True)
        for x in np.linspace(999.5, 1000.5, 41):
            assert b.contains(m(tl.tensor([[x]])).numpy()), (dt, x)
        real = _bn_real(m, X_BN)[0]
        assert b.lower.ravel()[0] <= real <= b.upper.ravel()[0]


def test_a_float16_weight_cast_up_before_use_stays_certified():
    class CastUp(tl.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = tl.nn.Parameter(tl.tensor([[0.1, -0.3], [0.7, 0.2]]))

        def forward(self, x):
            return F.tanh(F.linear(x, self.w.float()))

    m = CastUp().eval()
    m.w.data = m.w.data.astype(np.float16)
    x = np.array([[0.5, -0.25]])
    b = tl.verify.bounds(m, x, 0.01, float32=True)
    pts = x + np.random.default_rng(0).uniform(-0.01, 0.01, size=(100, 1, 2))
    assert all(b.contains(m(tl.tensor(p)).numpy()) for p in pts)


def test_bn32_onnx_float32_verdict_unchanged(tmp_path, capsys):
    from torchlean.verify.__main__ import main

    net, prop = tmp_path / "n.onnx", tmp_path / "p.vnnlib"
    _onnx(net, "bn", f16=False)
    _prop(prop, "1000", "1000.25", "577.3")
    assert main([str(net), str(prop), "--float32", "--timeout", "60"]) == 0
    assert capsys.readouterr().out.startswith("unsat (float32-sound, checked)")


# -- attention and recurrent blocks in float32 (held), and in float16 (refused) ----------------------

class _Attn(tl.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = tl.nn.MultiheadAttention(4, 2, batch_first=True)
        self.ln = tl.nn.LayerNorm(4)

    def forward(self, x):
        y, _ = self.a(x, x, x, need_weights=False)
        return self.ln(x + y)


class _Gru(tl.nn.Module):
    def __init__(self):
        super().__init__()
        self.g = tl.nn.GRU(2, 3, batch_first=True)

    def forward(self, x):
        return self.g(x)[0]


def _torch_twin(make):
    """The same block in torch (parameter names as torchlean's), or None without torch."""
    try:
        import torch
    except ImportError:
        return None

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.MultiheadAttention(4, 2, batch_first=True)
            self.ln = torch.nn.LayerNorm(4)

        def forward(self, x):
            return self.ln(x + self.a(x, x, x, need_weights=False)[0])

    class Gru(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.g = torch.nn.GRU(2, 3, batch_first=True)

        def forward(self, x):
            return self.g(x)[0]

    return (Attn if make is _Attn else Gru)().eval()


@pytest.mark.parametrize("make,width", [(_Attn, 4), (_Gru, 2)])
def test_attention_and_gru_float32_bounds_hold_and_half_is_refused(make, width):
    """Self-attention (two data operands in Q K^T and attn V, softmax, layer norm) and a GRU: the
    float32 bounds contain the runtime's and torch's float32 runs at 150 points; at eps 0 they
    contain the mpmath value (``spec.exact``) and the run; the float16 model is refused in one line."""
    from torchlean.spec.exact import evaluate

    tl.manual_seed(3)
    m = make().eval()
    x = np.random.default_rng(0).normal(size=(1, 3, width))
    b = tl.verify.bounds(m, x, 1e-3, float32=True)
    pts = x + np.random.default_rng(1).uniform(-1e-3, 1e-3, size=(150,) + x.shape)
    assert all(b.contains(m(tl.tensor(p)).numpy()) for p in pts)
    twin = _torch_twin(make)
    if twin is not None:
        import torch

        twin.load_state_dict({k: torch.tensor(np.asarray(v.numpy() if hasattr(v, "numpy") else v))
                              for k, v in m.state_dict().items()})
        with torch.no_grad():
            ys = [twin(torch.tensor(p, dtype=torch.float32)).numpy() for p in pts]
        assert np.allclose(ys[0], m(tl.tensor(pts[0])).numpy(), atol=1e-5)  # the same network
        assert all(b.contains(y) for y in ys)
    b0 = tl.verify.bounds(m, x, 0.0, float32=True)  # eps 0: the run is within the float32 widening
    x32 = np.asarray(x, np.float32)
    g = tl.trace(m, tl.tensor(x32))
    real = np.array(evaluate(g, {g.inputs[0].name: x32})[0], dtype=np.float64)
    assert b0.contains(m(tl.tensor(x)).numpy()) and b0.contains(real)
    assert float((b0.upper - b0.lower).max()) < 1e-3
    m.to(dtype="float16")
    with pytest.raises(Unsupported) as e:
        tl.verify.bounds(m, x, 1e-3, float32=True)
    assert "float16" in _one_line(e.value)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
