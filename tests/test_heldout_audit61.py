"""Audit audit61: the ``cast`` primitive's rows in the error column (``certificates/errorbound.py``).

Found: the column modelled every node after a cast in the run's format (``run_graph(dtype=F)``,
which casts every node's output back to F), while the runtime (the eager model, ``run_graph`` of
its own graph), torch and the documented float32 claims (``tl.verify.bounds(..., float32=True)``:
"the float32 run lies within"; ``verify --float32``: "about torchlean's runtime") compute on a
value cast to float16 in float16. ``h = x.half(); ((h + 1024) - 1024).float()`` on X in [0.2, 0.3]:
bounds [0.1998, 0.3002] certified, the model (and torch) returns 0. Now the checker refuses a
non-cast node reading a value cast to a format that does not hold the run's format.

References: torch (the model's run), ml_dtypes (every binary16 / bfloat16 value, to test ``holds``),
mpmath (real values), the runtime's own native run.
"""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import mpmath
import numpy as np
import pytest

import torchlean as tl
from torchlean.certificates import check
from torchlean.certificates.bound_graph import Unsupported
from torchlean.certificates.core import Rejected, digest
from torchlean.certificates.errorbound import holds, model_id
from torchlean.certificates.rounding import get_format
from torchlean.floats import bound_certificate, emulate, epsilons
from torchlean.floats.errorbound import statement
from torchlean.runtime.execute import run_graph
from torchlean.spec import Graph, Node, Value

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")
RNG = np.random.default_rng(61)


class Half(tl.nn.Module):
    """A float32 model whose middle runs in float16 (torch's and torchlean's eager run)."""

    def forward(self, x):
        h = x.half()
        return ((h + 1024.0) - 1024.0).float()


def _torch_half(p):
    return float(((torch.tensor([[p]], dtype=torch.float32).half() + 1024.0) - 1024.0).float())


def _half_graph():
    return Graph([Value("x", (1, 1), "float32")], {"c": np.array(1024.0, np.float16)},
                 [Node("cast", ["x"], "h", {"dtype": "float16"}), Node("add", ["h", "c"], "a"),
                  Node("sub", ["a", "c"], "s"), Node("cast", ["s"], "y", {"dtype": "float32"})],
                 ["y"]).check()


# -- the hole, end to end ------------------------------------------------------------------------

def test_float32_bounds_of_a_half_section_contain_the_models_run_or_are_refused():
    """The lead case: ``bounds(float32=True)`` promises the float32 run lies within."""
    m = Half()
    x0 = np.array([[0.25]], np.float32)
    with tl.no_grad():
        runs = {p: float(m(tl.tensor(np.array([[p]], np.float32))).numpy().flat[0]) for p in (0.2, 0.25, 0.3)}
    assert all(runs[p] == _torch_half(p) == 0.0 for p in runs)  # the runtime is torch's program
    try:
        b = tl.verify.bounds(m, x0, 0.05, float32=True)
    except Unsupported as e:
        assert "cast" in str(e)
        return
    for p, y in runs.items():  # (old code: [0.1998, 0.3002], the model's 0 outside)
        assert b.contains(np.array([[y]])), (p, y, b)


def test_checker_refuses_a_hand_made_certificate_for_the_half_section():
    """A certificate whose every step is generous (1) and epsilon 0.01: the checker replayed it
    (every claim >= its recomputed bound) while the runtime's error is 0.25 at X = 0.25."""
    g = _half_graph()
    stmt = statement(g, [(Fraction(1, 5), Fraction(3, 10))], "binary32", column="exact")
    ir = stmt["graph"]
    assert stmt["model"] == model_id(ir)
    stmt["epsilon"] = ["1/100"]
    cert = {"kind": "errorbound", "statement": stmt, "digest": digest(stmt),
            "steps": [["1"]] * len(ir["nodes"])}
    got = float(run_graph(g, {"x": np.array([[0.25]], np.float32)})[0].flat[0])
    assert abs(got - 0.25) == 0.25  # the runtime's own run of this very graph
    v = check(cert)
    assert not v.ok and "cast" in v.reason


@pytest.mark.parametrize("unsafe,false", [("(<= Y_0 0.1)", "unsat"), ("(>= Y_0 0.24)", "sat")])
def test_verify_float32_gives_no_false_verdict_for_an_onnx_half_section(tmp_path, unsafe, false):
    """unsafe Y <= 0.1: met by the runtime everywhere (main said "unsat (float32-sound)");
    Y >= 0.24: met by no runtime point (main said "sat (float32, runtime and emulated)" at
    X = 0.29999998 with Y = 0.30005, the run_graph(dtype=float32) value; the runtime gives 0)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    X = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1])
    Y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])
    c = numpy_helper.from_array(np.array([1024.0], np.float16), "c")
    nodes = [helper.make_node("Cast", ["X"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Add", ["h", "c"], ["a"]), helper.make_node("Sub", ["a", "c"], ["s"]),
             helper.make_node("Cast", ["s"], ["Y"], to=TensorProto.FLOAT)]
    m = helper.make_model(helper.make_graph(nodes, "m", [X], [Y], [c]),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    net, prop = tmp_path / "net.onnx", tmp_path / "prop.vnnlib"
    onnx.save(m, net)
    prop.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0.2))\n"
                    f"(assert (<= X_0 0.3))\n(assert {unsafe})\n")
    from torchlean.bridge.onnx import load_onnx

    g = load_onnx(net)
    for p in (0.2, 0.25, np.float32(0.3) - np.float32(2 ** -25), 0.3):  # the runtime's output is 0
        x = np.array([[p]], np.float32)
        assert float(run_graph(g, {g.inputs[0].name: x})[0].flat[0]) == _torch_half(float(x.flat[0])) == 0.0
    r = subprocess.run([sys.executable, "-m", "torchlean.verify", str(net), str(prop), "--float32",
                        "--timeout", "60"], capture_output=True, text=True, timeout=300)
    assert not r.stdout.startswith(false), r.stdout + r.stderr


# -- what stays accepted, and is sound against the runtime's own run ----------------------------

@pytest.mark.parametrize("fmt,src,wide", [("binary16", "float16", "float32"),
                                          ("bfloat16", "bfloat16", "float32"),
                                          ("binary32", "float32", "float64")])
def test_a_widening_cast_then_computing_in_the_wider_format_is_bounded(fmt, src, wide):
    """Accepted: the runtime computes after the cast in the wider format, whose roundings the
    run format's charges bound (u, eta and ulps no larger, no earlier overflow)."""
    # (the IR has no bfloat16 inputs or constants: a bfloat16 run feeds bfloat16 arrays to a
    # float32-typed input, as ``run_graph(dtype=bfloat16)`` does; 3.0 is exact in every format)
    decl = "float32" if src == "bfloat16" else src
    c = {"c": np.array(3.0, decl)}
    g = Graph([Value("x", (1, 2), decl)], c,
              [Node("cast", ["x"], "w", {"dtype": wide}), Node("mul", ["w", "w"], "p"),
               Node("add", ["p", "c"], "q"), Node("tanh", ["q"], "t"),
               Node("sum", ["t"], "s", {"axes": None}), Node("exp", ["w"], "e"),
               Node("sum", ["e"], "z", {"axes": None}), Node("sub", ["s", "z"], "y")],
              ["y"]).check()
    cert = bound_certificate(g, [(-2, 2)] * 2, fmt)
    assert check(cert).ok
    eps = float(Fraction(cert["statement"]["epsilon"][0]))
    dt = ml_dtypes.bfloat16 if src == "bfloat16" else np.dtype(src)
    cv = float(g.constants["c"])
    for _ in range(80):
        x = RNG.uniform(-2, 2, (1, 2)).astype(dt)
        got = float(np.asarray(run_graph(g, {"x": x})[0], dtype=np.float64).flat[0])  # native run
        xs = [mpmath.mpf(float(v)) for v in x.astype(np.float64).flat]
        real = mpmath.fsum(mpmath.tanh(v * v + cv) for v in xs) - mpmath.fsum(mpmath.exp(v) for v in xs)
        assert abs(got - float(real)) <= eps


@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_after_a_widening_cast_stay_within_epsilon(seed):
    """test_floats_column's random DAGs behind a widening cast (binary16 run -> float32, binary32
    run -> float64), constants in the run's format, run natively (the ops in the wider format);
    reference: the same graph in binary64 with its own certified bound."""
    from test_floats_column import _random_graph

    rng = np.random.default_rng(610 + seed)
    nodes, c = _random_graph(rng)
    for fmt, dt, wide in (("binary16", np.float16, "float32"), ("binary32", np.float32, "float64")):
        cc = {k: (v.astype(dt) if v.dtype.kind == "f" else v) for k, v in c.items()}
        rest = [Node(n[0], n[1], n[2], n[3] if len(n) > 3 else {}) for n in nodes]
        g, g64 = (Graph([Value("x0", (1, 4), np.dtype(dt).name)], cc,
                        [Node("cast", ["x0"], "x", {"dtype": w})] + rest, ["y"]).check()
                  for w in (wide, "float64"))
        box = [(-1, 1)] * 4
        eps = np.array([float(e) for e in epsilons(bound_certificate(g, box, fmt))])
        e64 = np.array([float(e) for e in epsilons(bound_certificate(g64, box, "binary64"))])
        for _ in range(30):
            x = rng.uniform(-1, 1, (1, 4)).astype(dt)
            nat = np.asarray(run_graph(g, {"x0": x})[0], np.float64).ravel()
            ref = np.asarray(run_graph(g64, {"x0": x.astype(np.float64)}, dtype=np.float64)[0]).ravel()
            assert np.all(np.abs(nat - ref) - e64 <= eps)


def test_holds_agrees_with_every_value_of_binary16_and_bfloat16():
    """``holds(T, F)``: every value of F is one of T, tested on all 2^16 bit patterns of each."""
    pats = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    vals = {"float16": pats.view(np.float16).astype(np.float64),
            "bfloat16": pats.view(ml_dtypes.bfloat16).astype(np.float64)}
    types = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32,
             "float64": np.float64}
    for f, v in vals.items():
        v = v[~np.isnan(v)]
        for t, dt in types.items():
            same = bool(np.all(v.astype(dt).astype(np.float64) == v))
            assert holds(get_format(t), get_format(f)) == same, (t, f)
    assert holds(get_format("float32"), get_format("float16"))
    assert holds(get_format("float64"), get_format("float32"))
    assert not holds(get_format("float16"), get_format("float32"))


@pytest.mark.parametrize("fmt,dt,box", [
    ("binary32", "float16", (60000, 65472)),      # up to the overflow threshold: rounds to <= 65504
    ("binary32", "float16", (0, 2 ** -20)),       # float16 subnormals (far above float32's)
    ("bfloat16", "float16", (-1e-4, 1e-4)),       # bfloat16 values below float16's subnormals
    ("binary16", "bfloat16", (-200, 200)),        # float16 values that are no bfloat16 values
    ("bfloat16", "float16", (1000, 60000)),       # both roundings, neither format holds the other
])
def test_a_narrowing_cast_and_back_is_bounded_at_adversarial_points(fmt, dt, box):
    """x -> T -> the run's format, then computed on (accepted): the certified epsilon against the
    runtime's own run (native: the cast back makes it the run format's) at random and edge points."""
    run = {"binary32": np.float32, "binary16": np.float16, "bfloat16": ml_dtypes.bfloat16}[fmt]
    name = {"binary32": "float32", "binary16": "float16", "bfloat16": "bfloat16"}[fmt]
    g = Graph([Value("x", (1, 1), "float32" if name == "bfloat16" else name)], {},
              [Node("cast", ["x"], "c", {"dtype": dt}), Node("cast", ["c"], "b", {"dtype": name}),
               Node("mul", ["b", "b"], "y")], ["y"]).check()
    cert = bound_certificate(g, [box], fmt)
    assert check(cert).ok
    eps = float(Fraction(cert["statement"]["epsilon"][0]))
    lo, hi = box
    pts = list(RNG.uniform(lo, hi, 200)) + [lo, hi, (lo + hi) / 2]
    edges = (65472.0, 65488.0, 65504.0, 2.0 ** -24 * 1.5, 2.0 ** -25, 3 * 2.0 ** -26, 2.0 ** -15 * 1.25)
    pts += [v for v in edges if lo <= v <= hi]
    for p in pts:
        x = np.array([[p]]).astype(run)
        xv = float(np.asarray(x, np.float64).flat[0])
        if not lo <= xv <= hi:
            continue
        got = float(np.asarray(run_graph(g, {"x": x})[0], np.float64).flat[0])
        em = float(emulate(g, {"x": np.array([[xv]])}, fmt)[0].flat[0])
        assert got == em  # the runtime is the emulated run
        assert abs(got - xv * xv) <= eps, (p, got, eps)


def test_a_cast_that_may_reach_the_rounding_tie_to_inf_is_refused():
    """65520 rounds to inf in binary16 (the tie at max_finite + ulp/2); a box reaching past
    65504 * (1 - u) is refused."""
    assert np.isinf(np.float32(65520).astype(np.float16)) and np.float32(65519).astype(np.float16) == 65504
    g = Graph([Value("x", (1, 1), "float32")], {},
              [Node("cast", ["x"], "y", {"dtype": "float16"})], ["y"]).check()
    for hi in (65504, 65519, 65520):
        with pytest.raises((Rejected, ValueError), match="overflow"):
            bound_certificate(g, [(0, hi)], "binary32")


# -- the gradient side ---------------------------------------------------------------------------

@pytest.mark.parametrize("g0", [65520.0, 70000.0, 1e-8, 3e-8, 1.0 + 2 ** -12])
def test_the_cotangent_is_rounded_to_the_input_format_as_torch_does(g0):
    """The VJP artifact proves identity over the reals; the runtime rounds the cotangent back to
    the input's float16 (to inf past the tie, to subnormals or 0 below), bit for bit torch's."""
    x = tl.tensor(np.array([0.5], np.float16), dtype="float16")
    x.requires_grad_()
    (x.float() * g0).sum().backward()
    xt = torch.tensor([0.5], dtype=torch.float16, requires_grad=True)
    (xt.float() * g0).sum().backward()
    assert x.grad.numpy().dtype == np.float16
    assert x.grad.numpy().tobytes() == xt.grad.numpy().tobytes()
    assert x.grad.numpy()[0] == np.float16(np.float32(g0))
