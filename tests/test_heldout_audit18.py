"""Audit audit18 (held out): the per-target / shared fn slopes of a VNN unsat certificate's region
entry (``"arg_slopes"``, ``graph_vnn.read_shared``), replayed by both engines (``engine._aim``,
``fast_engine._aim``). A small sigmoid -> tanh net; for a FALSE property (a counterexample the
checker's exact sat replay confirms), no slope entry, however extreme, makes either mode accept an
unsat certificate; malformed entries are refused even where the honest bound would pass."""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.verify import table

MODES = ("exact", "fast")
BIG = "1" + "0" * 400  # past float64
X0 = (Fraction(1, 7), Fraction(-2, 9), Fraction(3, 11))


ACTS = {"sigmoid-tanh": (nn.Sigmoid, nn.Tanh), "silu-gelu": (nn.SiLU, nn.GELU),
        "softplus-leaky": (nn.Softplus, nn.LeakyReLU)}


@functools.cache
def target(acts: str = "sigmoid-tanh"):
    """3-6 f-6 g-2 (nodes: 0 input, 1 f, 2 g)."""
    tl.manual_seed(0)
    f, g = ACTS[acts]
    model = nn.Sequential(nn.Linear(3, 6), f(), nn.Linear(6, 6), g(), nn.Linear(6, 2))
    rng = np.random.default_rng(3)
    for layer in model:
        if hasattr(layer, "weight"):
            layer.weight.data[...] = rng.normal(size=layer.weight.data.shape) * 2
            layer.bias.data[...] = rng.normal(size=layer.bias.data.shape) * 0.5
    t = table.target(tl.trace(model, tl.zeros(1, 3)))
    assert [n.kind for n in t.bg.nodes] == ["input", "fn", "fn"]
    return t


def spec(eps: Fraction, b: Fraction) -> Spec:
    """Counterexample region: y0 - y1 <= b on the box X0 +- eps."""
    lo, hi = tuple(v - eps for v in X0), tuple(v + eps for v in X0)
    return Spec(3, 2, (Region(lo, hi, ((Atom((Fraction(1), Fraction(-1)), b, False),),)),))


def sat_instance(eps: Fraction, acts: str = "sigmoid-tanh") -> tuple[Spec, list[Fraction]]:
    """A false (sat) property on the box of radius eps: b just above the smallest sampled margin,
    with the minimiser confirmed as a counterexample by the checker's exact sat replay."""
    t = target(acts)
    rng = np.random.default_rng(1)
    u = rng.uniform(-1, 1, (3000, 3))
    u = np.concatenate([u, np.array(np.meshgrid(*[[-1.0, 1.0]] * 3)).reshape(3, -1).T])
    xs = [[v + eps * Fraction(float(w)) for v, w in zip(X0, row)] for row in u]
    m = t.ex.forward(np.array([[float(v) for v in x] for x in xs]))
    j = int(np.argmin(m[:, 0] - m[:, 1]))
    s = spec(eps, Fraction(float(m[j, 0] - m[j, 1])) + eps / 1000)
    assert table.check(table.sat_cert(t, s, xs[j]), t, s).ok  # exact: a real counterexample
    return s, xs[j]


def unsat(s: Spec, arg_slopes, claim: str = "1/" + "1" + "0" * 301, pd=None, acts="sigmoid-tanh") -> dict:
    return table.unsat_cert(target(acts), s, [{"per_disjunct": pd or [[["leaf", [[0, claim]]]]],
                                          "arg_slopes": arg_slopes}])


def verdicts(cert, s, acts: str = "sigmoid-tanh"):
    return [check_vnn(cert, target(acts).bg, s, mode=m) for m in MODES]


ELEMS = [(k, i) for k in (1, 2) for i in range(6)]
EXTREME = {  # valid entries (rationals, in range): any slope gives a valid line
    "1e308": [[k, i, "1e308", "1e308"] for k, i in ELEMS],
    "-1e308": [[k, i, "-1e308", "-1e308"] for k, i in ELEMS],
    "past-float": [[k, i, BIG, "-" + BIG] for k, i in ELEMS],
    "negzero": [[k, i, "-0", "-0.0"] for k, i in ELEMS],
    "tiny": [[k, i, "1/" + BIG, "-1/" + BIG] for k, i in ELEMS],
    "1e15-cancel": [[k, i, "1000000000000000", "-1000000000000000"] for k, i in ELEMS],
    "near-1-ulp": [[k, i, "4503599627370497/4503599627370496", "1/3"] for k, i in ELEMS],
    "swapped": [[k, i, "5", "-5"] for k, i in ELEMS],
    "per-target": [[1, i, "-7", "1000000000", 2] for i in range(6)],
    "per-target-huge": [[1, i, BIG, "-" + BIG, 2] for i in range(6)],
    "shared+target": [[1, i, "1/3", "5"] for i in range(6)] + [[1, i, "-1e12", "1e12", 2] for i in range(6)],
}


@pytest.mark.parametrize("acts", sorted(ACTS))
@pytest.mark.parametrize("eps", [Fraction(1, 20), Fraction(1, 10**12)], ids=["wide", "1e-12"])
@pytest.mark.parametrize("name", sorted(EXTREME))
def test_no_slope_makes_a_false_property_pass(name, eps, acts):
    s, _ = sat_instance(eps, acts)
    for v in verdicts(unsat(s, EXTREME[name], acts=acts), s, acts):
        assert not v.ok, (name, v.reason)


MALFORMED = {
    "nan": [[1, 0, "nan", None]], "inf": [[1, 0, "inf", None]], "Infinity": [[1, 0, "Infinity", None]],
    "bool": [[1, 0, True, None]], "float": [[1, 0, 0.5, None]], "str": [[1, 0, "abc", None]],
    "input-node": [[0, 0, "1", None]], "node-past-end": [[3, 0, "1", None]], "node-neg": [[-1, 0, "1", None]],
    "i-past-size": [[1, 6, "1", None]], "i-neg": [[1, -1, "1", None]],
    "dup": [[1, 0, "1", None], [1, 0, "0", None]], "dup-target": [[1, 0, "1", None, 2], [1, 0, "0", None, 2]],
    "target-self": [[1, 0, "1", None, 1]], "target-backward": [[2, 0, "1", None, 1]],
    "target-input": [[1, 0, "1", None, 0]], "target-past-end": [[1, 0, "1", None, 3]],
    "target-bool": [[1, 0, "1", None, True]], "target-str": [[1, 0, "1", None, "2"]],
    "target-null": [[1, 0, "1", None, None]], "short": [[1, 0, "1"]], "long": [[1, 0, "1", None, 2, 2]],
    "not-list": {"a": 1}, "entry-dict": [{"0": 1}],
    # JSON true/false are ints to Python: a node or element index must not read them as 1 / 0
    "node-bool": [[True, 0, "1", None]], "i-bool": [[1, False, "1", None]],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_entries_are_refused_where_the_honest_bound_passes(name):
    s = spec(Fraction(1, 20), Fraction(0))  # true: the margin is ~9 on the box
    assert all(v.ok for v in verdicts(unsat(s, [], claim="1"), s))
    for v in verdicts(unsat(s, MALFORMED[name], claim="1"), s):
        assert not v.ok, name


def test_a_tree_for_a_missing_disjunct_is_refused():
    s = spec(Fraction(1, 20), Fraction(0))
    pd = [[["leaf", [[0, "1"]]]], [["leaf", [[0, "1"]]]]]
    assert not any(v.ok for v in verdicts(unsat(s, [], pd=pd), s))


@pytest.mark.parametrize("name", sorted(EXTREME))
def test_accepted_extreme_slopes_give_bounds_below_sampled_values(name):
    """On a true property, whatever bound an extreme slope set lets through is below every sampled
    margin (exact checker claims at the sampled minimum are refused; a loose claim decides)."""
    t = target()
    s = spec(Fraction(1, 20), Fraction(0))
    xs = np.array(X0, dtype=float) + np.random.default_rng(2).uniform(-0.05, 0.05, (3000, 3))
    y = t.ex.forward(xs)
    mmin = Fraction(float((y[:, 0] - y[:, 1]).min()))
    assert mmin > 0
    for v in verdicts(unsat(s, EXTREME[name], claim=f"{mmin.numerator}/{mmin.denominator}"), s):
        assert not v.ok, name


@functools.cache
def relu_target():
    """3-6 relu-6 sigmoid-2 (nodes: 0 input, 1 relu, 2 sigmoid)."""
    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 6), nn.Sigmoid(), nn.Linear(6, 2))
    rng = np.random.default_rng(5)
    for layer in model:
        if hasattr(layer, "weight"):
            layer.weight.data[...] = rng.normal(size=layer.weight.data.shape) * 2
            layer.bias.data[...] = rng.normal(size=layer.bias.data.shape) * 0.1
    t = table.target(tl.trace(model, tl.zeros(1, 3)))
    assert [n.fn or n.kind for n in t.bg.nodes] == ["input", "relu", "sigmoid"]
    return t


def test_relu_slopes_outside_0_1_or_with_an_upper_slope_are_refused():
    """A relu's shared / per-target slope is its lower slope in [0, 1], no upper one."""
    t = relu_target()
    eps = Fraction(1, 2)
    lo, hi = tuple(v - eps for v in X0), tuple(v + eps for v in X0)
    xs = np.random.default_rng(2).uniform([float(v) for v in lo], [float(v) for v in hi], (3000, 3))
    y = t.ex.forward(xs)
    d = float((y[:, 0] - y[:, 1]).min())
    s = Spec(3, 2, (Region(lo, hi, ((Atom((Fraction(1), Fraction(-1)), Fraction(d) - 100, False),),)),))

    def ok(sl, claim="1"):
        c = table.unsat_cert(t, s, [{"per_disjunct": [[["leaf", [[0, claim]]]]], "arg_slopes": sl}])
        return [check_vnn(c, t.bg, s, mode=m).ok for m in MODES]

    half = [[1, i, "1/2", None] for i in range(6)]
    assert ok(half) == [True, True]  # (the honest bound passes with valid relu slopes)
    assert ok(half, claim="101") == [False, False]  # (above the sampled margin - b: false)
    for bad in (
        [[1, 0, "2", None]], [[1, 0, "-1/2", None]], [[1, 0, "1/2", "1"]], [[1, 0, None, None]],
        [[1, 0, "11/10", None, 2]], [[1, 0, "1/2", "1/2", 2]],
    ):
        assert ok(half[1:] + bad) == [False, False], bad


def _accepted_bound(s: Spec, sl, mode: str, lo: Fraction, hi: Fraction, acts: str, steps: int = 60
                    ) -> Fraction:
    """The checker's recomputed bound to within (hi - lo) / 2^steps, by bisection on the claim."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        c = unsat(s, sl, claim=f"{mid.numerator}/{mid.denominator}", acts=acts)
        lo, hi = (mid, hi) if check_vnn(c, target(acts).bg, s, mode=mode).ok else (lo, mid)
    return lo


@pytest.mark.parametrize("acts", sorted(ACTS))
@pytest.mark.parametrize("name", ["none", "per-target", "1e3"])
def test_the_replayed_bound_is_below_the_exact_counterexample_margin_on_a_tiny_box(name, acts):
    """Box radius 1e-12, where the exact engine is within ~1e-14 of the sampled minimum: the bound
    either mode accepts is at most the margin at the sampled minimiser (its exact sat replay for
    b just below the bound is refused) and not vacuous (within 1e-8 of it)."""
    sl = {"none": [], "per-target": [[1, i, "3", "-3", 2] for i in range(6)],
          "1e3": [[k, i, "1000", "-1000"] for k, i in ELEMS]}[name]
    eps = Fraction(1, 10**12)
    s0, x = sat_instance(eps, acts)
    b0 = s0.regions[0].disjuncts[0][0].b  # (sampled min + eps/1000)
    s, t = spec(eps, Fraction(0)), target(acts)
    for mode in MODES:
        got = _accepted_bound(s, sl, mode, b0 - 1, b0 + 1, acts)
        assert got > b0 - Fraction(1, 10**8), mode
        below = spec(eps, got - Fraction(1, 10**30))
        assert not table.check(table.sat_cert(t, below, x), t, below).ok, mode


def test_cli_refuses_mutated_slope_certificates_for_a_false_onnx_property(tmp_path, capsys):
    """End to end: an ONNX 3-6 sigmoid-6 tanh-2 net (float32) whose output bias puts the smallest
    sampled margin y0 - y1 at -0.01 on the box, and the unsafe set Y_0 <= Y_1: sat (onnxruntime
    confirms the counterexample, the CLI's search answers sat). Unsat certificates carrying every
    extreme slope set are rejected by ``check``, in exact and in the default mode."""
    import json

    import onnxruntime as ort
    from onnx import TensorProto, helper

    from tests.test_heldout_audit10 import _cli
    from tests.test_onnx_exact import _model

    rng = np.random.default_rng(7)
    shapes = ((3, 6), (6,), (6, 6), (6,), (6, 2))
    w1, b1, w2, b2, w3 = (rng.normal(size=sh).astype(np.float32) * 2 for sh in shapes)

    def fwd(x, b3):
        return np.tanh(1 / (1 + np.exp(-(x @ w1 + b1))) @ w2 + b2) @ w3 + b3

    lo, hi = np.array([0.1, -0.2, 0.3]), np.array([0.2, -0.1, 0.4])
    xs = rng.uniform(lo, hi, (4000, 3))
    m = fwd(xs, 0).astype(np.float64) @ np.array([1.0, -1.0])
    b3 = np.array([-m.min() - 0.01, 0], np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"]), helper.make_node("Add", ["h1", "b1"], ["a1"]),
             helper.make_node("Sigmoid", ["a1"], ["s1"]), helper.make_node("MatMul", ["s1", "w2"], ["h2"]),
             helper.make_node("Add", ["h2", "b2"], ["a2"]), helper.make_node("Tanh", ["a2"], ["s2"]),
             helper.make_node("MatMul", ["s2", "w3"], ["h3"]), helper.make_node("Add", ["h3", "b3"], ["y"])]
    inits = [("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2), ("w3", w3), ("b3", b3)]
    model = _model(nodes, [("x", [1, 3])], ("y",), inits, 13, TensorProto.FLOAT)
    net, prop = tmp_path / "n.onnx", tmp_path / "p.vnnlib"
    net.write_bytes(model.SerializeToString())
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(3))
    text += "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    num = lambda v: f"(- {-float(v)!r})" if v < 0 else repr(float(v))  # noqa: E731 (SMT-LIB)
    text += "".join(f"(assert (>= X_{i} {num(lo[i])}))\n(assert (<= X_{i} {num(hi[i])}))\n" for i in range(3))
    prop.write_text(text + "(assert (<= Y_0 Y_1))\n")
    x = xs[int(np.argmin(m))].astype(np.float32)[None]
    y = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0][0]
    assert y[0] - y[1] < -0.005  # (a real counterexample, far beyond float32's error)
    code, out, err = _cli(capsys, net, prop, "--timeout", "60")
    assert code == 0 and out.split()[0] == "sat", (code, out, err)

    t, s = table.load_instance(net, prop)
    assert [n.kind for n in t.bg.nodes] == ["input", "fn", "fn"]
    claim = "1/" + "1" + "0" * 301
    for name, sl in EXTREME.items():
        c = table.unsat_cert(t, s, [{"per_disjunct": [[["leaf", [[0, claim]]]]], "arg_slopes": sl}])
        path = tmp_path / "c.json"
        path.write_text(json.dumps(c))
        for mode in (["--mode", "exact"], []):
            code, out, _ = _cli(capsys, "check", path, net, prop, *mode)
            assert code == 1 and "recomputed bound" in out, (name, mode, out)  # (judged, not mismatched)
