"""Emulated execution: bit-exact against numpy float32 / ml_dtypes elementwise, fixed-order sums."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from torchlean.floats.emulate import Emulator, emulate
from torchlean.spec.graph import Graph, Node, Value

sys.path.insert(0, str(Path(__file__).parent))
from floats_models import mlp  # noqa: E402

N = 3000


def _operands(seed=0, n=N):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(n) * np.exp(rng.uniform(-12, 12, n))).astype(np.float32)
    b = (rng.standard_normal(n) * np.exp(rng.uniform(-12, 12, n))).astype(np.float32)
    # special values: signed zeros, subnormals, huge, inf, nan, overflow and underflow cases
    sp = np.array([0.0, -0.0, 1e-45, -1e-45, 3e38, -3e38, np.inf, -np.inf, np.nan, 1.0, 2.0, 1e-30],
                  dtype=np.float32)
    a = np.concatenate([a, np.repeat(sp, len(sp))])
    b = np.concatenate([b, np.tile(sp, len(sp))])
    return a, b


def _graph(op, n, arity=2):
    ins = [Value("a", (n,), "float32"), Value("b", (n,), "float32")][:arity]
    return Graph(ins, {}, [Node(op, [v.name for v in ins], "y")], ["y"]).check()


def _same_bits(x, y):
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    both_nan = np.isnan(x) & np.isnan(y)
    return bool(np.all(both_nan | (x.view(np.uint32) == y.view(np.uint32))))


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_ops_bit_exact_with_numpy_float32(op):
    a, b = _operands()
    with np.errstate(all="ignore"):
        ref = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b}[op]
    y = emulate(_graph(op, len(a)), {"a": a, "b": b}, "binary32")[0]
    assert _same_bits(y, ref)


@pytest.mark.parametrize("op", ["sqrt", "relu", "neg", "abs"])
def test_exact_and_sqrt_unary_bit_exact(op):
    a, _ = _operands(1)
    with np.errstate(all="ignore"):
        ref = {"sqrt": np.sqrt(a), "relu": np.maximum(a, np.float32(0)), "neg": -a, "abs": np.abs(a)}[op]
    y = emulate(_graph(op, len(a), 1), {"a": a}, "binary32")[0]
    assert _same_bits(y, ref)


@pytest.mark.parametrize("op", ["tanh", "erf", "exp", "sigmoid"])
def test_transcendentals_are_correctly_rounded(op):
    """Against float64 numpy rounded once to float32 (itself within 1/2 ulp + 2^-53 relative: we
    allow the rare double-rounding difference of one ulp, never more)."""
    rng = np.random.default_rng(2)
    a = rng.uniform(-20, 20, 500).astype(np.float32)
    f = {"tanh": np.tanh, "exp": np.exp, "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
         "erf": np.frompyfunc(math.erf, 1, 1)}[op]
    ref = np.asarray(f(a.astype(np.float64)), dtype=np.float64).astype(np.float32)
    y = emulate(_graph(op, len(a), 1), {"a": a}, "binary32")[0].astype(np.float32)
    diff = np.abs(y.view(np.int32).astype(np.int64) - ref.view(np.int32).astype(np.int64))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


def test_bfloat16_elementwise_matches_ml_dtypes():
    ml = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(3)
    a = rng.standard_normal(1000).astype(ml.bfloat16)
    b = rng.standard_normal(1000).astype(ml.bfloat16)
    for op, ref in [("add", a + b), ("mul", a * b), ("sub", a - b)]:
        # ml_dtypes computes in float32 and rounds once: innocuous double rounding (24 >= 2*8+2)
        y = emulate(_graph(op, 1000), {"a": a.astype(np.float32), "b": b.astype(np.float32)}, "bfloat16")[0]
        assert np.array_equal(y, ref.astype(np.float64))


def test_matmul_is_sequential_and_each_step_rounded():
    em = Emulator("binary16")
    # in binary16, 2048 + 1 + 1 = 2048 left to right (each add rounds back), but 2050 if 1 + 1 first
    x = np.array([[2048.0, 1.0, 1.0]])
    w = np.array([[1.0], [1.0], [1.0]])
    g = Graph([Value("x", (1, 3), "float32")], {"w": w.astype(np.float32)},
              [Node("matmul", ["x", "w"], "y")], ["y"]).check()
    assert emulate(g, {"x": x}, "binary16")[0][0, 0] == 2048.0
    assert em.dot(np.array([1.0, 1.0, 2048.0]), np.ones(3)) == 2050.0


def test_emulated_mlp_is_reproducible_and_close_to_runtime():
    from torchlean.runtime.execute import run_graph

    g = mlp([4, 8, 3], "tanh", seed=4)
    x = np.array([[0.5, -0.25, 0.125, 1.0]], dtype=np.float32)
    y1 = emulate(g, {"x": x}, "binary32")[0]
    y2 = emulate(g, {"x": x}, "binary32")[0]
    assert np.array_equal(y1, y2)
    rt = np.asarray(run_graph(g, {"x": x}, dtype=np.float32)[0], dtype=np.float64)
    assert np.allclose(y1, rt, rtol=1e-5, atol=1e-6)
    yb = emulate(g, {"x": x}, "bfloat16")[0]
    assert np.allclose(yb, rt, rtol=0.05, atol=0.05) and not np.array_equal(yb, y1)
    y8 = emulate(g, {"x": x}, "float8_e4m3fn", "rtz")[0]
    assert np.all(np.isfinite(y8))


def test_cli_run_and_bound(tmp_path, capsys):
    from torchlean.floats.__main__ import main

    g = mlp([2, 4, 1], "relu", seed=6)
    p = tmp_path / "m.json"
    p.write_text(g.to_json())
    assert main(["run", str(p), "--input", "0.5,-1", "--format", "bfloat16"]) == 0
    assert main(["bound", str(p), "--box=-1:1", "--samples", "500", "--cert",
                 str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "epsilon" in out and "replayed" in out
    assert main(["check", str(tmp_path / "c.json")]) == 0
    assert main(["bound", str(p), "--box", "1:0"]) == 2
    assert main(["bound", "missing.onnx", "--box", "0:1"]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "e5m2", "bfloat16"])
def test_cli_bound_prints_the_observed_error_of_fp8_formats(fmt, tmp_path, capsys):
    """``bound --format float8_e4m3fn`` printed the certified epsilon alone: the observed-error
    sample knew only bfloat16, binary32 and binary16. The runtime runs the graph in the format
    (``run_graph(dtype=...)``), so the sample now runs in ml_dtypes' fp8 types: within epsilon, and
    of the format's size (fp8's unit roundoff is 2^-4 or 2^-3; a binary32 run's error is ~1e-7)."""
    import re

    from torchlean.floats.__main__ import main

    p = tmp_path / "m.json"
    p.write_text(mlp([3, 5, 2], "tanh", seed=4).to_json())
    assert main(["bound", str(p), "--box=-1:1", "--samples", "500", "--format", fmt]) == 0
    out = capsys.readouterr().out
    rows = [m.groups() for m in re.finditer(r"^\s+(\d+)\s+(\S+)\s+(\S+) \(\+-", out, re.M)]
    assert [int(j) for j, _, _ in rows] == [0, 1], out
    eps, obs = (np.array([float(r[k]) for r in rows]) for k in (1, 2))
    assert np.all(obs <= eps), out
    assert obs.max() > (2.0 ** -8 if "8" in fmt else 2.0 ** -12), out
    assert "observed over 500 sampled points" in out


def test_observed_error_types_have_the_checker_formats_values():
    """The numpy/ml_dtypes type each format is sampled in holds exactly the checker's format (same
    exponent and fraction bits, range, subnormals; float8_e4m3fn without infinities), and a type
    that differs is refused rather than printed next to another format's bound."""
    import ml_dtypes

    from torchlean.certificates.rounding import FORMATS, get_format
    from torchlean.floats.__main__ import NUMPY_TYPES, _dtype, same_values

    for name in NUMPY_TYPES:
        dt, f = _dtype(name), FORMATS[name]
        assert dt is not None and np.dtype(dt).itemsize * 8 == f.bits, name
        assert same_values(dt, f)
        assert float(np.array(float(f.max_finite)).astype(dt)) == f.max_finite
    assert _dtype("e4m3") is ml_dtypes.float8_e4m3fn and _dtype("float32") is np.float32
    assert _dtype("binary64") is None and _dtype("e4m3m") is None and _dtype("e6m9") is None
    assert not same_values(ml_dtypes.float8_e4m3fn, get_format("float8_e5m2"))
    assert not same_values(ml_dtypes.float8_e5m2, get_format("float8_e4m3fn"))
    if hasattr(ml_dtypes, "float8_e4m3"):  # IEEE-style e4m3: infinities, max 240, not e4m3fn
        assert not same_values(ml_dtypes.float8_e4m3, get_format("float8_e4m3fn"))
    assert not same_values(ml_dtypes.float8_e4m3fnuz, get_format("float8_e4m3fn"))
