"""audit66: a float64 constant cast to float16, folded by the importers, against onnxruntime and torch.

Found: a false checked ``unsat`` (``python -m torchlean.verify``) and a false ``verified``
(``tl.verify.robustness`` on ``bridge.from_torch``). Both importers fold a Cast (ONNX) or ``.half()``
(``aten._to_copy``) of a *constant* with numpy's ``astype``: one rounding of the float64 value to
float16. onnxruntime (CPU) and torch convert a double to half through float (two roundings:
``MLFloat16(static_cast<float>(d))``, ``c10::Half(float)``), which differs next to a float16 tie:
1 + 2^-11 + 2^-40 is 1 + 2^-10 rounded once (it lies above the tie) and 1 rounded through float32
(the float32 value is the tie, to even). The real network the verifier bounds then had a threshold
2^-10 away from the file's (onnxruntime's) or the module's (torch's), and the import cross-check's
tolerance (1e-3 (1 + |y|)) does not see a gap of 2^-10 ~ 9.8e-4. onnx's reference evaluator rounds
once (numpy), so the ONNX file has two readings: now refused when they differ (a lost answer on such
constants only); ``torch_export`` folds with torch's own conversion (the module's meaning).

Held: the cast primitive on a *runtime* value (the error column charges one rounding's standard model
|fl(z) - z| <= u|z| + eta, which also covers float64 -> float32 -> float16, since u_32 << u_16;
``test_error_column_covers_double_rounding``); constants away from a tie fold as before, bit for bit
with onnxruntime and torch.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from torchlean.bridge import OnnxImportError, load_onnx  # noqa: E402
from torchlean.runtime.execute import run_graph  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIE = 1 + 2.0**-11 + 2.0**-40  # above float16's tie 1 + 2^-11; its float32 rounding is the tie
TOP = 1.0009765625  # 1 + 2^-10: numpy's float16 rounding of TIE (onnxruntime's and torch's: 1.0)


def _cast_model(values, opset=13):
    """Y = Relu(X - Cast(Cast(c: float64, float16), float)) over X of shape (1, n)."""
    c = np.asarray(values, np.float64).reshape(1, -1)
    n = c.shape[1]
    g = helper.make_graph(
        [helper.make_node("Cast", ["c"], ["h"], to=TensorProto.FLOAT16),
         helper.make_node("Cast", ["h"], ["t"], to=TensorProto.FLOAT),
         helper.make_node("Sub", ["X", "t"], ["d"]),
         helper.make_node("Relu", ["d"], ["Y"])],
        "a66",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(c, "c")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def _ort(m, x):
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    s = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return s.run(None, {"X": np.asarray(x, np.float32)})[0]


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torchlean.verify", *argv], capture_output=True, text=True, cwd=ROOT,
        timeout=300, env={"PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_onnxruntime_rounds_through_float32():
    """The reference: onnxruntime's Cast of this double to float16 gives 1, numpy's gives 1 + 2^-10
    (so at X = TOP the file's Y is 2^-10 under onnxruntime)."""
    m = _cast_model([TIE])
    assert _ort(m, [[TOP]])[0, 0] == np.float32(2.0**-10)
    assert np.float64(TIE).astype(np.float16) == np.float16(TOP)
    assert np.float64(TIE).astype(np.float32).astype(np.float16) == np.float16(1.0)


def test_cli_gives_no_false_unsat(tmp_path):
    """The end-to-end case: X_0 in [0, TOP], unsafe Y_0 >= 1e-4. onnxruntime at X_0 = TOP (a float32
    in the box) gives Y_0 = 2^-10 >= 1e-4: sat. The old import read the threshold as TOP, every Y_0
    as 0, and the CLI printed ``checked: unsat``; now the import refuses the file (exit 2)."""
    net, prop = tmp_path / "net.onnx", tmp_path / "prop.vnnlib"
    m = _cast_model([TIE])
    onnx.save(m, str(net))
    prop.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                    f"(assert (>= X_0 0.0))\n(assert (<= X_0 {TOP!r}))\n(assert (>= Y_0 0.0001))\n")
    assert _ort(m, [[TOP]])[0, 0] >= 1e-4  # the counterexample, by onnxruntime
    r = _cli(str(net), str(prop), "--timeout", "60")
    out = r.stdout + r.stderr
    assert "unsat" not in r.stdout and "checked" not in out, out
    assert r.returncode == 2 and "float16" in out, out


def test_tie_constants_refused_others_equal_onnxruntime():
    """Every float64 constant whose two readings differ is refused; those whose readings agree
    import to onnxruntime's value bit for bit (no lost answer away from a tie)."""
    rng = np.random.default_rng(66)
    h = rng.uniform(-3e4, 3e4, 300).astype(np.float16).astype(np.float64)
    ulp = np.spacing(h.astype(np.float16)).astype(np.float64)
    # a tie plus/minus a hair under float32's half ulp, exact ties, and plain random values
    near = np.concatenate([h + ulp / 2 + np.abs(h) * 2.0**-40, h + ulp / 2 - np.abs(h) * 2.0**-40,
                           h + ulp / 2, rng.standard_normal(200) * 10.0, [TIE, -TIE, 6e-6, 1e-7]])
    near = near[np.abs(near) < 6e4]
    differs = near.astype(np.float16) != near.astype(np.float32).astype(np.float16)
    assert differs.sum() > 100 and (~differs).sum() > 100
    for v in near[differs][:20]:
        with pytest.raises(OnnxImportError, match="float16"):
            load_onnx(_cast_model([v]))
    agree = near[~differs]
    m = _cast_model(agree)
    g = load_onnx(m)
    x = np.zeros((1, agree.size), np.float32) + np.float32(3e4)
    want = _ort(m, x)
    got = run_graph(g, {"X": x})[0]
    np.testing.assert_array_equal(np.asarray(got, np.float64), want.astype(np.float64))


def _module(values):
    torch = pytest.importorskip("torch")

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("c", torch.tensor(values, dtype=torch.float64))

        def forward(self, x):
            return torch.cat([torch.relu(x - self.c.half().float()), torch.full_like(x, 0.0005)], dim=1)

    return torch, M()


def test_from_torch_robustness_not_falsely_verified():
    """``tl.verify.robustness`` on ``from_torch`` of a module whose float64 buffer is cast with
    ``.half()``: on [2^-10, TOP] torch's class at X = TOP is 0 (relu(TOP - 1) = 2^-10 > 5e-4), so
    "label 1 on the whole box" is false; the old fold (numpy: threshold TOP) answered verified."""
    import torchlean as tl
    from torchlean.bridge import from_torch

    torch, m = _module([TIE])
    assert int(m(torch.tensor([[TOP]])).argmax()) == 0  # torch's own counterexample
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = from_torch(m, torch.tensor([[0.5009765625]]))
    assert g(tl.tensor(np.array([[TOP]], np.float32))).numpy()[0, 0] == np.float32(2.0**-10)
    r = tl.verify.robustness(g, tl.tensor(np.array([[0.5009765625]], np.float32)), eps=0.5, label=1,
                             timeout=30)
    assert r.verdict != "verified", r


def test_from_torch_half_fold_equals_torch():
    """The folded ``.half()`` of float64 buffers equals torch's conversion bit for bit (ties,
    near-ties and random values)."""
    from torchlean.bridge import from_torch

    rng = np.random.default_rng(7)
    h = rng.uniform(-3e4, 3e4, 200).astype(np.float16).astype(np.float64)
    ulp = np.spacing(h.astype(np.float16)).astype(np.float64)
    vals = np.concatenate([h + ulp / 2 + np.abs(h) * 2.0**-40, h + ulp / 2 - np.abs(h) * 2.0**-40,
                           rng.standard_normal(100), [TIE]])
    vals = vals[np.abs(vals) < 6e4]
    torch, m = _module(vals.tolist())
    x = torch.full((1, vals.size), 3e4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = from_torch(m, x)
    import torchlean as tl

    got = g(tl.tensor(x.numpy())).numpy()
    np.testing.assert_array_equal(got, m(x).numpy())


def test_error_column_covers_double_rounding():
    """Held: a *runtime* float64 -> float16 cast (the ``cast`` primitive) is charged one rounding's
    standard model (u_16 |z| + eta_16, ``errorbound._cast``), and onnxruntime's and torch's two
    roundings (through float32) stay inside the certified ε at tie-adjacent points, normal and
    subnormal (the certificate checked, its ε against the double-rounded value exactly)."""
    from fractions import Fraction

    import torchlean as tl
    from torchlean import nn
    from torchlean.certificates import check
    from torchlean.floats.errorbound import bound_certificate, epsilons

    class Half(nn.Module):
        def forward(self, x):
            return x.half().double()

    g = tl.trace(Half(), tl.tensor(np.zeros((1, 1)), dtype=tl.float64))
    h = np.array([1.0, 1.5, 3.0, 1000.0, 40000.0, 6.1e-5, 3e-6, 2.0**-24, -7.0, -0.0004], np.float64)
    h = h.astype(np.float16).astype(np.float64)
    ulp = np.spacing(np.abs(h).astype(np.float16)).astype(np.float64)
    z = np.concatenate([h + np.sign(h) * (ulp / 2 + np.abs(h) * 2.0**-30), h + np.sign(h) * ulp / 2])
    twice = z.astype(np.float32).astype(np.float16).astype(np.float64)
    assert np.sum(twice != z.astype(np.float16).astype(np.float64)) >= 5  # the readings differ
    for v, t in zip(z, twice):
        c = bound_certificate(g, [(float(v), float(v))], "binary64")
        assert check(c).ok
        assert abs(Fraction(float(t)) - Fraction(float(v))) <= Fraction(epsilons(c)[0]), (v, t)


# -- (2) a Python number with a float16/bfloat16 tensor: torch's kernel computes in float32 --------

_SCALAR_CASES = {
    "mul 3.3": lambda F, x: x * 3.3, "div 3.3": lambda F, x: x / 3.3, "rsub 0.1": lambda F, x: 0.1 - x,
    "add alpha 0.3": lambda F, x: x.add(x * x, alpha=0.3), "leaky 0.01": lambda F, x: F.leaky_relu(x, 0.01),
    "gelu": lambda F, x: F.gelu(x), "clamp 0.1": lambda F, x: x.clamp(-0.1, 0.1),
    # numbers whose float32 value the format holds: one reading, imported
    "mul 0.5": lambda F, x: x * 0.5, "add 2": lambda F, x: x + 2,
    "leaky 0.25": lambda F, x: F.leaky_relu(x, 0.25),
    "div 4": lambda F, x: x / 4.0, "clamp 0.75": lambda F, x: x.clamp(-0.75, 0.75),
}
_HELD = {"mul 0.5", "add 2", "leaky 0.25", "div 4", "clamp 0.75"}


@pytest.mark.parametrize("dtype", ["float16"])  # (from_torch reads no bfloat16 tensor: TypeError)
def test_from_torch_scalars_in_16_bits(dtype):
    """Every imported module with a number in a float16/bfloat16 op runs as torch does, bit for bit
    on 4,001 points (the graph's constant is the number torch's kernel computes with); the others
    are refused. On the old code ``x * 3.3`` imported as x * fl16(3.3) and differed from torch's
    fl16(x * fl32(3.3)) at about a third of the points (leaky_relu's slope, gelu's M_SQRT1_2,
    add's alpha, division likewise)."""
    import torchlean as tl
    from torchlean.bridge import from_torch
    from torchlean.bridge.torch_io import TorchInteropError

    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tdt = getattr(torch, dtype)
    xs = torch.linspace(-8, 8, 4001).to(tdt).unique().reshape(1, -1)
    imported = set()
    for name, f in _SCALAR_CASES.items():
        class M(torch.nn.Module):
            def forward(self, x, f=f):
                return f(F, x)

        m = M()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                g = from_torch(m, xs)
        except TorchInteropError as e:
            assert "float32" in str(e), (name, e)
            continue
        imported.add(name)
        got = np.asarray(g(tl.tensor(xs.numpy(), dtype=getattr(tl, dtype))).numpy(), np.float32)
        np.testing.assert_array_equal(got, m(xs).float().numpy(), err_msg=f"{name} ({dtype})")
    assert _HELD <= imported, imported


def test_from_torch_half_number_not_falsely_verified():
    """End to end: out0 = x * 3.3 - x * k with the float16 buffer k = fl16(3.3), out1 = -0.001.
    Torch's kernel computes x * fl32(3.3): out0 = -7.8e-4 x before its rounding and -0.0078 after
    it at x = 3 (class 1 at 155 of the box's 513 float16 points); the old import read out0 as 0
    everywhere and ``robustness(label=0)`` on [2.5, 3.5] answered verified. Now refused."""
    import torchlean as tl
    from torchlean.bridge import from_torch
    from torchlean.bridge.torch_io import TorchInteropError

    torch = pytest.importorskip("torch")

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("k", torch.tensor([3.30078125], dtype=torch.float16))

        def forward(self, x):
            return torch.cat([x * 3.3 - x * self.k, torch.full_like(x, -0.001)], dim=1)

    m = M()
    x = torch.tensor([[3.0]], dtype=torch.float16)
    assert int(m(x).argmax()) == 1  # torch's run at a point of the box
    assert 3.0 * float(np.float32(3.3)) - 3.0 * 3.30078125 < float(np.float16(-0.001))  # and its reals
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = from_torch(m, x)
    except TorchInteropError:
        return
    xt = tl.tensor(np.array([[3.0]], np.float16), dtype=tl.float16)
    r = tl.verify.robustness(g, xt, eps=0.5, label=0, timeout=30)
    assert r.verdict != "verified", r


def test_from_torch_full_like_half_equals_torch():
    """``full_like(x, v)`` of a float16 tensor: torch converts the double v through float (two
    roundings); the fold is torch's own fill, so x - full_like(x, v) runs as torch does, bit for bit,
    at ties and near-ties (the old fold, numpy's one rounding, gave 0 for torch's 2^-10 at TIE)."""
    import torchlean as tl
    from torchlean.bridge import from_torch

    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    h = rng.uniform(-100, 100, 40).astype(np.float16).astype(np.float64)
    ulp = np.spacing(np.abs(h).astype(np.float16)).astype(np.float64)
    vals = [TIE, -TIE, 0.1, 3.3, *(h + np.sign(h) * (ulp / 2 + np.abs(h) * 2.0**-40))]

    class M(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x - torch.full_like(x, float(v)) for v in vals], dim=1)

    m = M()
    x = torch.tensor([[1.0009765625]], dtype=torch.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = from_torch(m, x)
    got = g(tl.tensor(x.numpy(), dtype=tl.float16)).numpy()
    np.testing.assert_array_equal(got, m(x).numpy())
    assert m(x).numpy()[0, 0] == np.float16(2.0**-10)
