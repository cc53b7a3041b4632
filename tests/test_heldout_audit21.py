"""Audit audit21 (held out): the bound graph's other nonlinear nodes as a VNN unsat certificate's
leaf proofs choose their relaxations (``graph_vnn._slope_entries``: ``mul`` McCormick weights,
``max`` member choices; ``engine._lines``, ``fast_backsub._relaxation``), ``const`` nodes (sqrt of
a constant), and the split-tree walker (``bounds.walk``), on an ONNX net with Mul of two data
tensors, Max, Sqrt of a constant, Exp and Div by data. For a FALSE property (a counterexample that
onnxruntime and the checker's exact sat replay confirm), no mutated unsat certificate passes in
either mode; malformed entries are refused where the honest claim passes; accepted extreme choices
give bounds below the sampled margins; a certificate does not pass for a property or a network one
ulp away."""

from __future__ import annotations

import functools
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates.bounds import check_vnn
from torchlean.verify import table

MODES = ("exact", "fast")
LO, HI = np.array([0.1, -0.2, 0.3]), np.array([0.3, 0.0, 0.5])
TINY = "1/" + "1" + "0" * 301  # a positive claim far below any float margin


def _net(tweak: bool = False):
    """x (1, 3) -> p, q = affine (1, 4) each; y = (p·q) W3 + (max(p, q)·sqrt(2)) W4 + (p / exp(q)) W5
    + b3 (1, 2): bound-graph nodes input, mul, max, const, mul, exp, reciprocal, mul. ``tweak``: one
    weight moved by one float32 ulp."""
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    rng = np.random.default_rng(11)
    wa, wb = (rng.normal(size=(3, 4)).astype(np.float32) for _ in range(2))
    ba, bb = (rng.normal(size=(4,)).astype(np.float32) * 0.5 for _ in range(2))
    w3, w4, w5 = (rng.normal(size=(4, 2)).astype(np.float32) for _ in range(3))
    if tweak:
        wa[0, 0] = np.nextafter(wa[0, 0], np.float32(10))
    mk = helper.make_node
    nodes = [mk("MatMul", ["x", "wa"], ["pa"]), mk("Add", ["pa", "ba"], ["p"]),
             mk("MatMul", ["x", "wb"], ["qa"]), mk("Add", ["qa", "bb"], ["q"]),
             mk("Mul", ["p", "q"], ["m"]), mk("Max", ["p", "q"], ["mx"]),
             mk("Sqrt", ["c"], ["sc"]), mk("Mul", ["mx", "sc"], ["mxs"]),
             mk("Exp", ["q"], ["eq"]), mk("Div", ["p", "eq"], ["d"]),
             mk("MatMul", ["m", "w3"], ["y1"]), mk("MatMul", ["mxs", "w4"], ["y2"]),
             mk("MatMul", ["d", "w5"], ["y3"]), mk("Add", ["y1", "y2"], ["y12"]),
             mk("Add", ["y12", "y3"], ["y123"]), mk("Add", ["y123", "b3"], ["y"])]
    inits = [("wa", wa), ("ba", ba), ("wb", wb), ("bb", bb), ("w3", w3), ("w4", w4), ("w5", w5),
             ("c", np.array([2.0], np.float32)), ("b3", np.array([0, 0], np.float32))]
    return _model(nodes, [("x", [1, 3])], ("y",), inits, 13, TensorProto.FLOAT)


def _prop(b: float) -> str:
    """Unsafe set y0 - y1 <= b on the box [LO, HI] (VNN-LIB)."""
    num = lambda v: f"(- {-float(v)!r})" if v < 0 else repr(float(v))  # noqa: E731 (SMT-LIB)
    t = "".join(f"(declare-const X_{i} Real)\n" for i in range(3))
    t += "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    t += "".join(f"(assert (>= X_{i} {num(LO[i])}))\n(assert (<= X_{i} {num(HI[i])}))\n" for i in range(3))
    return t + f"(assert (<= (- Y_0 Y_1) {num(b)}))\n"


@functools.cache
def _samples():
    """4,000 box points (float32) and onnxruntime's margins y0 - y1 there."""
    import onnxruntime as ort

    m = _net()
    xs = np.random.default_rng(1).uniform(LO, HI, (4000, 3)).astype(np.float32)
    s = ort.InferenceSession(m.SerializeToString())
    y = np.concatenate([s.run(None, {"x": x[None]})[0] for x in xs])
    return xs, y[:, 0].astype(float) - y[:, 1].astype(float)


@functools.cache
def instance(kind: str, tmp: str):
    """(target, spec, paths, x*) for the true (b = min margin - 3) or false (b = min margin + 1/100)
    property; the false one's counterexample x* is confirmed by onnxruntime and the exact sat replay."""
    from pathlib import Path

    xs, d = _samples()
    j = int(np.argmin(d))
    b = float(d[j]) + (0.01 if kind == "false" else -3)
    net, prop = Path(tmp) / "n.onnx", Path(tmp) / f"{kind}.vnnlib"
    net.write_bytes(_net().SerializeToString())
    prop.write_text(_prop(b))
    t, s = table.load_instance(net, prop)
    assert [n.kind for n in t.bg.nodes] == ["input", "mul", "max", "const", "mul", "fn", "fn", "mul"]
    x = [Fraction(float(v)) for v in xs[j]]
    if kind == "false":
        assert d[j] < b - 0.005  # onnxruntime: far beyond float32's error
        assert table.check(table.sat_cert(t, s, x), t, s).ok  # exact: a real counterexample
    return t, s, (net, prop), x


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return str(tmp_path_factory.mktemp("audit21"))


def leaf(claim: str = TINY, extras=None) -> list:
    return ["leaf", [[0, claim] + ([extras] if extras is not None else [])]]


def verdicts(t, s, tree):
    """Both modes' verdicts on an unsat certificate whose one region entry is ``tree``."""
    c = table.unsat_cert(t, s, [tree])
    return [check_vnn(c, t.bg, s, mode=m) for m in MODES]


MUL = [(k, i) for k in (1, 4, 7) for i in range(4)]
BIG = "1" + "0" * 400
# valid choices: McCormick weights in [0, 1] (any gives valid planes), max members of each group
EXTREME = {
    "mul-0": [[k, i, "0", "0"] for k, i in MUL],
    "mul-1": [[k, i, "1", "1"] for k, i in MUL],
    "mul-mixed": [[k, i, "1", "0"] for k, i in MUL],
    "mul-tiny": [[k, i, "1/" + BIG, "-0"] for k, i in MUL],
    "mul-1-minus-tiny": [[k, i, f"{BIG}/1{'0' * 399}1", None] for k, i in MUL],
    "mul-third": [[k, i, "1/3", "2/3"] for k, i in MUL],
    "max-0": [[2, i, 0, None] for i in range(4)],
    "max-1": [[2, i, 1, None] for i in range(4)],
    "max-null": [[2, i, None, None] for i in range(4)],
    "fn-huge": [[k, i, BIG, "-" + BIG] for k in (5, 6) for i in range(4)],
    "all": [[k, i, "1", "0"] for k, i in MUL] + [[2, i, 1, None] for i in range(4)]
    + [[k, i, "-7", "7"] for k in (5, 6) for i in range(4)],
}


@pytest.mark.parametrize("name", sorted(EXTREME))
def test_no_relaxation_choice_makes_a_false_property_pass(name, tmp):
    t, s, _, _ = instance("false", tmp)
    for m, v in zip(MODES, verdicts(t, s, [leaf(extras={"slopes": EXTREME[name]})])):
        assert not v.ok and (m == "fast" or "recomputed bound" in v.reason), (name, v.reason)
    # (the same under input splits: 8 leaves, each with the choices)
    tree = [["split", 0, "1/5"], ["split", 1, "-1/10"], leaf(extras={"slopes": EXTREME[name]}),
            leaf(extras={"slopes": EXTREME[name]}), leaf(extras={"slopes": EXTREME[name]})]
    for m, v in zip(MODES, verdicts(t, s, tree)):
        assert not v.ok and (m == "fast" or "recomputed bound" in v.reason), (name, v.reason)


@pytest.mark.parametrize("name", sorted(EXTREME))
def test_accepted_choices_give_bounds_below_the_sampled_margins(name, tmp):
    """True property: a claim at the sampled minimum of the objective (margin - b) is refused
    whatever the choices; the honest tiny claim with them is either accepted or refused, never
    an error."""
    t, s, _, _ = instance("true", tmp)
    _, d = _samples()
    b = float(d.min()) - 3
    gap = Fraction(float(d.min())) - Fraction(b)
    claim = f"{gap.numerator}/{gap.denominator}"
    for m, v in zip(MODES, verdicts(t, s, [leaf(claim, {"slopes": EXTREME[name]})])):
        assert not v.ok and (m == "fast" or "recomputed bound" in v.reason), name
    for m, v in zip(MODES, verdicts(t, s, [leaf("1/1000", {"slopes": EXTREME[name]})])):
        assert v.ok or "recomputed bound" in v.reason or (m == "fast" and name == "fn-huge"), (name, v.reason)


MALFORMED = {  # leaf extras
    "mul-neg": [[1, 0, "-1/1000", None]], "mul-above-1": [[1, 0, "1001/1000", None]],
    "mul-up-above-1": [[4, 0, None, "2"]], "mul-huge": [[7, 0, BIG, None]],
    "mul-nan": [[1, 0, "nan", None]], "mul-inf": [[1, 0, "inf", None]], "mul-bool": [[1, 0, True, None]],
    "mul-float": [[1, 0, 0.5, None]], "mul-i-past": [[1, 4, "0", None]],
    "max-past": [[2, 0, 2, None]], "max-neg": [[2, 0, -1, None]], "max-bool": [[2, 0, True, None]],
    "max-str": [[2, 0, "1", None]], "max-float": [[2, 0, 1.0, None]], "max-upper": [[2, 0, 0, 0]],
    "max-upper-str": [[2, 0, 0, "1"]],
    "const-node": [[3, 0, "0", "0"]], "input-node": [[0, 0, "0", "0"]], "past-end": [[8, 0, "0", "0"]],
"dup": [[1, 0, "0", None], [1, 0, "1", None]],
    "dup-max": [[2, 0, 0, None], [2, 0, 1, None]], "five": [[1, 0, "0", None, 2]],
    "three": [[1, 0, "0"]], "not-list": {"a": 1}, "mult-off-path": "mult",
    "extra-key": "key", "empty-extras": "empty",
}


def _extras(name: str):
    e = MALFORMED[name]
    if e == "mult":
        return {"mult": [[6, 0, "1"]]}  # (no split on this path; node 6 is not splittable either)
    if e == "key":
        return {"slopes": [], "alpha": []}
    if e == "empty":
        return {}
    return {"slopes": e}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_choices_are_refused_where_the_honest_claim_passes(name, tmp):
    t, s, _, _ = instance("true", tmp)
    assert all(v.ok for v in verdicts(t, s, [leaf("1/1000")]))
    for v in verdicts(t, s, [leaf("1/1000", _extras(name))]):
        assert not v.ok, name


TREES = {  # mutated split trees (true property, honest claim at every leaf)
    "relu-on-mul": [["relu", 1, 0], leaf("1/1000"), leaf("1/1000")],
    "relu-on-max": [["relu", 2, 0], leaf("1/1000"), leaf("1/1000")],
    "relu-on-const": [["relu", 3, 0], leaf("1/1000"), leaf("1/1000")],
    "relu-on-exp": [["relu", 5, 0], leaf("1/1000"), leaf("1/1000")],
    "relu-on-input": [["relu", 0, 0], leaf("1/1000"), leaf("1/1000")],
    "split-outside": [["split", 0, "1/2"], leaf("1/1000"), leaf("1/1000")],
    "split-dim-past": [["split", 3, "1/5"], leaf("1/1000"), leaf("1/1000")],
    "split-dim-bool": [["split", True, "1/5"], leaf("1/1000"), leaf("1/1000")],
    "split-nan": [["split", 0, "nan"], leaf("1/1000"), leaf("1/1000")],
    "missing-subtree": [["split", 0, "1/5"], leaf("1/1000")],
    "trailing": [leaf("1/1000"), leaf("1/1000")],
    "empty": [],
    "leaf-two-proofs": [["leaf", [[0, "1/1000"], [0, "1/1000"]]]],
    "leaf-no-proof": [["leaf", []]],
    "leaf-wrong-atom": [["leaf", [[1, "1/1000"]]]],
    "leaf-zero-claim": [leaf("0")],
    "leaf-neg-claim": [leaf("-1")],
}


@pytest.mark.parametrize("name", sorted(TREES))
def test_mutated_trees_are_refused(name, tmp):
    t, s, _, _ = instance("true", tmp)
    for v in verdicts(t, s, TREES[name]):
        assert not v.ok, name


def test_a_bool_node_is_refused(tmp):
    """``isinstance(True, int)``: ``[true, 0, ...]`` once read as node 1's element 0 (a wart, not a
    hole: any McCormick weight in [0, 1] is valid there). Now a bool index is refused in both
    modes, on the true property as on the false one (``core.is_index``)."""
    for kind in ("true", "false"):
        t, s, _, _ = instance(kind, tmp)
        claim = "1/1000" if kind == "true" else TINY
        got = [v.ok for v in verdicts(t, s, [leaf(claim, {"slopes": [[True, 0, "1", "0"]]})])]
        assert got == [False, False], kind
        # the same entry with the int index passes on the true property: the refusal is the bool's
        if kind == "true":
            assert all(v.ok for v in verdicts(t, s, [leaf(claim, {"slopes": [[1, 0, "1", "0"]]})]))


@pytest.mark.parametrize("v", ["1/10", "3/10", "1/5"], ids=["at-lo", "at-hi", "inside"])
def test_degenerate_splits_only_refine(v, tmp):
    """A split at a box end leaves one child a face: both children still cover the box, so a
    false property stays refused, a true one keeps passing."""
    for kind, want in (("false", False), ("true", True)):
        t, s, _, _ = instance(kind, tmp)
        tree = [["split", 0, v], ["split", 0, v], leaf(), leaf(), leaf()]
        for r in verdicts(t, s, tree):
            assert r.ok == want, (kind, v, r.reason)


def test_per_disjunct_entries_must_match_the_disjuncts(tmp):
    t, s, _, _ = instance("false", tmp)
    for pd in ([[leaf()], [leaf()]], [], [[leaf()], [leaf()], [leaf()]]):
        for r in verdicts(t, s, {"per_disjunct": pd}):
            assert not r.ok


def test_one_ulp_away_is_another_property_or_network(tmp):
    """The honest certificate of the true property does not pass for the property whose bound is
    one ulp higher, nor for the net with one weight one float32 ulp larger."""
    from pathlib import Path

    from torchlean.certificates.property import Atom, Region, Spec

    t, s, _, _ = instance("true", tmp)
    good = table.unsat_cert(t, s, [[leaf("1/1000")]])
    assert all(check_vnn(good, t.bg, s, mode=m).ok for m in MODES)
    (reg,) = s.regions
    ((atom,),) = reg.disjuncts
    up = Fraction(float(np.nextafter(float(atom.b), np.inf)))
    s2 = Spec(3, 2, (Region(reg.lo, reg.hi, ((Atom(atom.a, up, atom.strict),),)),))
    lo2 = (Fraction(float(np.nextafter(float(reg.lo[0]), -np.inf))), *reg.lo[1:])
    s3 = Spec(3, 2, (Region(lo2, reg.hi, reg.disjuncts),))
    net2 = Path(tmp) / "n2.onnx"
    net2.write_bytes(_net(tweak=True).SerializeToString())
    t2 = table.load_target(net2)
    for m in MODES:
        assert not check_vnn(good, t.bg, s2, mode=m).ok
        assert not check_vnn(good, t.bg, s3, mode=m).ok
        assert not check_vnn(good, t2.bg, s, mode=m).ok


def test_cli_refuses_mutated_certificates_for_the_false_property(tmp, capsys, tmp_path):
    """End to end: the CLI answers sat on the false property, and ``check`` (exact and default)
    refuses an unsat certificate with every extreme choice set and an honest certificate of the
    true property relabelled for it."""
    from tests.test_heldout_audit10 import _cli

    t, s, (net, prop), _ = instance("false", tmp)
    code, out, err = _cli(capsys, net, prop, "--timeout", "60")
    assert code == 0 and out.split()[0] == "sat", (code, out, err)
    _, _, (_, tprop), _ = instance("true", tmp)
    honest = tmp_path / "h.json"
    code, out, _ = _cli(capsys, net, tprop, "--timeout", "60", "--cert", honest)
    assert code == 0 and out.split()[0] == "unsat", out
    c = json.loads(honest.read_text())
    c["property"] = s.digest()
    certs = [c] + [table.unsat_cert(t, s, [[leaf(extras={"slopes": sl})]]) for sl in EXTREME.values()]
    for k, cert in enumerate(certs):
        path = tmp_path / f"c{k}.json"
        path.write_text(json.dumps(cert))
        for mode in (["--mode", "exact"], []):
            code, out, _ = _cli(capsys, "check", path, net, prop, *mode)
            assert code == 1 and "recomputed bound" in out, (k, mode, out)


# --- ReLU splits, split multipliers and per-disjunct trees (a relu -> mul / max net) ---------------


def _relu_net():
    """x (1, 3) -> p = relu(affine) (1, 4), q = affine (1, 4); y = (p·q) W3 + max(p, q) W4 (1, 2):
    nodes input, relu, mul, max."""
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    rng = np.random.default_rng(5)
    wa, wb = (rng.normal(size=(3, 4)).astype(np.float32) * 2 for _ in range(2))
    ba, bb = (rng.normal(size=(4,)).astype(np.float32) * 0.1 for _ in range(2))
    w3, w4 = (rng.normal(size=(4, 2)).astype(np.float32) for _ in range(2))
    mk = helper.make_node
    nodes = [mk("MatMul", ["x", "wa"], ["pa"]), mk("Add", ["pa", "ba"], ["pb"]), mk("Relu", ["pb"], ["p"]),
             mk("MatMul", ["x", "wb"], ["qa"]), mk("Add", ["qa", "bb"], ["q"]),
             mk("Mul", ["p", "q"], ["m"]), mk("Max", ["p", "q"], ["mx"]),
             mk("MatMul", ["m", "w3"], ["y1"]), mk("MatMul", ["mx", "w4"], ["y2"]),
             mk("Add", ["y1", "y2"], ["y"])]
    inits = [("wa", wa), ("ba", ba), ("wb", wb), ("bb", bb), ("w3", w3), ("w4", w4)]
    return _model(nodes, [("x", [1, 3])], ("y",), inits, 13, TensorProto.FLOAT)


RLO, RHI = np.array([-0.3, -0.3, -0.3]), np.array([0.3, 0.3, 0.3])


@functools.cache
def relu_instance(false: bool, tmp: str):
    """Unsafe set (y0 <= b0) or (y1 <= b1) on [RLO, RHI]: b0 = min y0 - 10 (true); b1 = min y1 - 10
    (true) or min y1 + 1/100 (false: the sampled minimiser, confirmed by onnxruntime and the exact
    sat replay)."""
    from pathlib import Path

    import onnxruntime as ort

    m = _relu_net()
    xs = np.random.default_rng(2).uniform(RLO, RHI, (3000, 3)).astype(np.float32)
    sess = ort.InferenceSession(m.SerializeToString())
    y = np.concatenate([sess.run(None, {"x": x[None]})[0] for x in xs]).astype(float)
    b0, b1 = y[:, 0].min() - 10, y[:, 1].min() + (0.01 if false else -10)
    num = lambda v: f"(- {-float(v)!r})" if v < 0 else repr(float(v))  # noqa: E731 (SMT-LIB)
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(3))
    text += "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    text += "".join(f"(assert (>= X_{i} {num(RLO[i])}))\n(assert (<= X_{i} {num(RHI[i])}))\n"
                    for i in range(3))
    text += f"(assert (or (<= Y_0 {num(b0)}) (<= Y_1 {num(b1)})))\n"
    net, prop = Path(tmp) / "r.onnx", Path(tmp) / f"r{int(false)}.vnnlib"
    net.write_bytes(m.SerializeToString())
    prop.write_text(text)
    t, s = table.load_instance(net, prop)
    assert [n.fn or n.kind for n in t.bg.nodes] == ["input", "relu", "mul", "max"]
    assert len(s.regions[0].disjuncts) == 2
    if false:
        j = int(np.argmin(y[:, 1]))
        assert y[j, 1] < b1 - 0.005
        x = [Fraction(float(v)) for v in xs[j]]
        assert table.check(table.sat_cert(t, s, x), t, s).ok
    return t, s


def _unstable(t) -> list[int]:
    """The relu elements whose argument takes both signs at the box's corners / samples."""
    xs = np.random.default_rng(3).uniform(RLO, RHI, (2000, 3))
    (f,) = [n for n in t.bg.nodes if n.fn == "relu"]
    out = []
    for i, a in enumerate(f.args):
        z = np.array([float(a.c) + sum(float(q) * xs[:, v] for v, q in a.t.items())]).ravel()
        if z.min() < 0 < z.max():
            out.append(i)
    return out


def _split_tree(elems: list[int], extras_of) -> list:
    """Every unstable element split, a leaf with ``extras_of(path)`` under each of 2^n paths."""
    def rec(k: int, path: dict) -> list:
        if k == len(elems):
            return [leaf(TINY, extras_of(path))]
        return [["relu", 1, elems[k]], *rec(k + 1, {**path, elems[k]: 0}), *rec(k + 1, {**path, elems[k]: 1})]
    return rec(0, {})


SPLIT_EXTRAS = {
    "mult-1": lambda path: {"mult": [[1, i, "1"] for i in path]},
    "mult-huge": lambda path: {"mult": [[1, i, BIG] for i in path]},
    "mult-tiny": lambda path: {"mult": [[1, i, "1/" + BIG] for i in path]},
    "mult+mul+max": lambda path: {"mult": [[1, i, "1000"] for i in path],
                                  "slopes": [[2, i, "1", "1"] for i in range(4)]
                                  + [[3, i, 0, None] for i in range(4)]},
    "relu-slopes": lambda path: {"slopes": [[1, i, "1", "0"] for i in range(4)]},
}


@pytest.mark.parametrize("name", sorted(SPLIT_EXTRAS))
def test_relu_split_trees_with_multipliers_do_not_pass_a_false_disjunct(name, tmp):
    t, s = relu_instance(True, tmp)
    elems = _unstable(t)
    assert elems
    tree = _split_tree(elems, SPLIT_EXTRAS[name])
    honest = _split_tree(elems, lambda path: None)
    for pd in ([honest, tree], [tree, tree], [tree, honest]):
        for v in verdicts(t, s, {"per_disjunct": pd}):
            assert not v.ok, (name, v.reason)
    # (one tree for both disjuncts: each leaf's second proof is the false disjunct's)
    both = [["leaf", [[0, TINY], [0, TINY, SPLIT_EXTRAS[name]({})]]]]
    for v in verdicts(t, s, both):
        assert not v.ok, (name, v.reason)


def test_honest_split_trees_pass_and_mutations_are_refused(tmp):
    """True property: the honest per-disjunct trees (every unstable element split, a multiplier
    on each split) pass in both modes; a multiplier < 0, one on an element not split on the path,
    one on a non-relu node, the same element split twice on a path, a leaf's proofs in the wrong
    number, trees in the wrong number are refused."""
    t, s = relu_instance(False, tmp)
    elems = _unstable(t)
    good = _split_tree(elems, SPLIT_EXTRAS["mult-1"])
    assert all(v.ok for v in verdicts(t, s, {"per_disjunct": [good, good]}))
    e = elems[0]
    bad = {
        "mult-neg": _split_tree(elems, lambda path: {"mult": [[1, i, "-1/1000"] for i in path]}),
        "mult-off-path": [["relu", 1, e], leaf(TINY, {"mult": [[1, (e + 1) % 4, "1"]]}), leaf(TINY)],
        "mult-not-relu": [["relu", 1, e], leaf(TINY, {"mult": [[2, e, "1"]]}), leaf(TINY)],
        "mult-bool": [["relu", 1, e], leaf(TINY, {"mult": [[1, e, True]]}), leaf(TINY)],
        "mult-dup": [["relu", 1, e], leaf(TINY, {"mult": [[1, e, "1"], [1, e, "2"]]}), leaf(TINY)],
        "split-twice": [["relu", 1, e], ["relu", 1, e], leaf(TINY), leaf(TINY), leaf(TINY)],
        "split-mul": [["relu", 2, e], leaf(TINY), leaf(TINY)],
        "split-max": [["relu", 3, e], leaf(TINY), leaf(TINY)],
        "split-past": [["relu", 1, 4], leaf(TINY), leaf(TINY)],
        "split-bool": [["relu", True, e], leaf(TINY), leaf(TINY)],
    }
    for name, tree in bad.items():
        for v in verdicts(t, s, {"per_disjunct": [good, tree]}):
            assert not v.ok, name
    for pd in ([good], [good, good, good]):
        for v in verdicts(t, s, {"per_disjunct": pd}):
            assert not v.ok


# --- const nodes: rational intervals for irrational constant folds ---------------------------------


@pytest.mark.parametrize("op", ["Sqrt", "Exp", "Log", "Tanh", "Sigmoid", "Erf"])
def test_const_folds_enclose_the_real_value(op):
    """y = x · f(c) with c a float32 constant: the const node's interval contains f(c) (mpmath, 60
    digits) and is narrow (not a point: f(c) is irrational)."""
    import mpmath
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    c = np.float32(0.7)
    m = _model([helper.make_node(op, ["c"], ["fc"]), helper.make_node("Mul", ["x", "fc"], ["y"])],
               [("x", [1, 1])], ("y",), [("c", np.array([c], np.float32))], 13, TensorProto.FLOAT)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "c.onnx").write_bytes(m.SerializeToString())
        t = table.load_target(Path(d) / "c.onnx")
    (node,) = [n for n in t.bg.nodes if n.kind == "const"]
    (lo, hi), = node.args
    with mpmath.workdps(60):
        x = mpmath.mpf(float(c))
        f = {"Sqrt": mpmath.sqrt, "Exp": mpmath.exp, "Log": mpmath.log, "Tanh": mpmath.tanh,
             "Sigmoid": lambda v: 1 / (1 + mpmath.exp(-v)), "Erf": mpmath.erf}[op](x)
        assert mpmath.mpf(lo.numerator) / lo.denominator <= f <= mpmath.mpf(hi.numerator) / hi.denominator
        w = hi - lo
        assert 0 < mpmath.mpf(w.numerator) / w.denominator < 1e-12 * abs(f)


# --- the planes and split multipliers themselves, where a wrong one would decide ------------------


def _tiny(tmp: str, name: str, body: list, lo: list, hi: list, b: float, inits: tuple = ()):
    """x (1, 2) -> a = x0, w = x1 (MatMul by unit columns) -> ``body`` (ONNX nodes from a, w and
    ``inits`` to t (1, 1)) -> y = t·[1, 0] (1, 2); the property: unsafe y0 - y1 <= b on [lo, hi]."""
    from pathlib import Path

    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    mk = helper.make_node
    nodes = [mk("MatMul", ["x", "e0"], ["a"]), mk("MatMul", ["x", "e1"], ["w"]), *body,
             mk("MatMul", ["t", "out"], ["y"])]
    inits = [("e0", np.array([[1], [0]], np.float32)), ("e1", np.array([[0], [1]], np.float32)),
             ("out", np.array([[1, 0]], np.float32)), *inits]
    m = _model(nodes, [("x", [1, 2])], ("y",), inits, 13, TensorProto.FLOAT)
    num = lambda v: f"(- {-float(v)!r})" if v < 0 else repr(float(v))  # noqa: E731 (SMT-LIB)
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(2))
    text += "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    text += "".join(f"(assert (>= X_{i} {num(lo[i])}))\n(assert (<= X_{i} {num(hi[i])}))\n" for i in range(2))
    text += f"(assert (<= (- Y_0 Y_1) {num(b)}))\n"
    net, prop = Path(tmp) / f"{name}.onnx", Path(tmp) / f"{name}.vnnlib"
    net.write_bytes(m.SerializeToString())
    prop.write_text(text)
    return m, (net, prop), *table.load_instance(net, prop)


def _confirm_sat(m, t, s, x):
    import onnxruntime as ort

    y = ort.InferenceSession(m.SerializeToString()).run(None, {"x": np.array([x], np.float32)})[0][0]
    assert y[0] - y[1] <= float(s.regions[0].disjuncts[0][0].b)  # onnxruntime
    assert table.check(table.sat_cert(t, s, [Fraction(v) for v in x]), t, s).ok  # exact


def test_mccormick_planes_are_the_valid_ones(tmp, capsys):
    """x0·x1 on [1, 2]^2 (min 1 at (1, 1)), unsafe x0·x1 <= 1.01: sat. The weight-1 plane
    2x0 + 2x1 - 4 (from (2 - x0)(2 - x1) >= 0) has min 0; a plane that left out its constant (or
    any weight's plane that were off) would claim more. No weight, in either mode or the CLI,
    passes; on the true property (b = 0.99) weight 0 passes."""
    from tests.test_heldout_audit10 import _cli

    body = [helper_node("Mul", ["a", "w"], ["t"])]
    m, (net, prop), t, s = _tiny(tmp, "mc", body, [1, 1], [2, 2], 1.01)
    assert [n.kind for n in t.bg.nodes] == ["input", "mul"]
    _confirm_sat(m, t, s, [1.0, 1.0])
    for tl in ("0", "1", "1/2", "1/3", None):
        c = table.unsat_cert(t, s, [[leaf(TINY, {"slopes": [[1, 0, tl, None]]})]])
        assert not any(check_vnn(c, t.bg, s, mode=mo).ok for mo in MODES), tl
        path = Path(tmp) / "mc.json"
        path.write_text(json.dumps(c))
        for mode in (["--mode", "exact"], []):
            code, out, _ = _cli(capsys, "check", path, net, prop, *mode)
            assert code == 1 and "recomputed bound" in out, (tl, mode, out)
    _, _, t2, s2 = _tiny(tmp, "mc-true", body, [1, 1], [2, 2], 0.99)
    c = table.unsat_cert(t2, s2, [[leaf("1/200", {"slopes": [[1, 0, "0", None]]})]])
    assert all(check_vnn(c, t2.bg, s2, mode=mo).ok for mo in MODES)


def test_split_multipliers_enter_with_the_valid_sign(tmp):
    """y0 = -relu(x0) on x0 in [-1, 1], unsafe y0 <= -1/2: sat at x0 = 1. Split on the relu: its
    active leaf has f = -z + 1/2 (z = x0 >= 0 there), min -1/2. The valid multiplier form is
    f - q·z (<= f where z >= 0); f + q·z with q = 1 would be 1/2 everywhere and pass. Neither
    mode accepts any q on either leaf; the honest inactive leaf alone passes."""
    body = [helper_node("Relu", ["a"], ["r"]), helper_node("Neg", ["r"], ["t"])]
    m, _, t, s = _tiny(tmp, "beta", body, [-1, -1], [1, 1], -0.5)
    assert [n.fn or n.kind for n in t.bg.nodes] == ["input", "relu"]
    _confirm_sat(m, t, s, [1.0, 0.0])
    for q in ("1", "1/2", "2", "1000"):
        for mult0, mult1 in (([], [[1, 0, q]]), ([[1, 0, q]], []), ([[1, 0, q]], [[1, 0, q]])):
            tree = [["relu", 1, 0], leaf(TINY, {"mult": mult0} if mult0 else None),
                    leaf(TINY, {"mult": mult1} if mult1 else None)]
            for mo, v in zip(MODES, verdicts(t, s, tree)):
                assert not v.ok and "leaf 1" in v.reason, (q, mo, v.reason)  # (leaf 0 passed)


def helper_node(op: str, ins: list, outs: list):
    from onnx import helper

    return helper.make_node(op, ins, outs)


def test_max_pool_windows_of_different_sizes(tmp):
    """MaxPool 2x2 stride 2 with pads 1 on a 3x3 input: windows of 4, 2, 2 and 1 existing
    positions (one max node with groups of 4, 2 and 2: a window of one is no max). On a false
    property (sat at the sampled minimiser, onnxruntime and exact replay) no member choice
    passes, in either mode; a member
    index past an element's own window is refused where the honest claim passes."""
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    w = np.random.default_rng(9).normal(size=(4, 2)).astype(np.float32)
    mk = helper.make_node
    nodes = [mk("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1]),
             mk("Flatten", ["p"], ["f"]), mk("MatMul", ["f", "w"], ["y"])]
    m = _model(nodes, [("x", [1, 1, 3, 3])], ("y",), [("w", w)], 13, TensorProto.FLOAT)
    import onnxruntime as ort

    sess = ort.InferenceSession(m.SerializeToString())
    xs = np.random.default_rng(4).uniform(-1, 1, (3000, 9)).astype(np.float32)
    y = np.concatenate([sess.run(None, {"x": x.reshape(1, 1, 3, 3)})[0] for x in xs]).astype(float)
    d = y[:, 0] - y[:, 1]
    j = int(np.argmin(d))
    num = lambda v: f"(- {-float(v)!r})" if v < 0 else repr(float(v))  # noqa: E731 (SMT-LIB)
    out = {}
    for kind, b in (("false", d[j] + 0.01), ("true", d[j] - 20)):
        text = "".join(f"(declare-const X_{i} Real)\n" for i in range(9))
        text += "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
        text += "".join(f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))\n" for i in range(9))
        text += f"(assert (<= (- Y_0 Y_1) {num(b)}))\n"
        net, prop = Path(tmp) / "mp.onnx", Path(tmp) / f"mp-{kind}.vnnlib"
        net.write_bytes(m.SerializeToString())
        prop.write_text(text)
        out[kind] = table.load_instance(net, prop)
    t, s = out["false"]
    (node,) = [n for n in t.bg.nodes if n.kind == "max"]
    assert sorted(len(g) for g in node.args) == [2, 2, 4]  # (a window of one is its element)
    assert table.check(table.sat_cert(t, s, [Fraction(float(v)) for v in xs[j]]), t, s).ok
    sizes = [len(g) for g in node.args]
    for c in range(4):
        sl = [[node_k(t), i, min(c, n - 1), None] for i, n in enumerate(sizes)]
        for v in verdicts(t, s, [leaf(TINY, {"slopes": sl})]):
            assert not v.ok, (c, v.reason)
    t, s = out["true"]
    assert all(v.ok for v in verdicts(t, s, [leaf("1/1000")]))
    for i, n in enumerate(sizes):
        for v in verdicts(t, s, [leaf("1/1000", {"slopes": [[node_k(t), i, n, None]]})]):
            assert not v.ok, (i, n)


def node_k(t) -> int:
    """The index of the graph's max node."""
    return [n.kind for n in t.bg.nodes].index("max")


def test_max_upper_line_is_the_largest_member_bound(tmp):
    """y0 = -max(x0, x1) on [0, 1] x [0, 2], unsafe y0 <= -3/2: sat at (1, 2). The upper line of
    a max with no dominating member is the constant max_j U_j = 2 (y0 >= -2); a member as upper
    line (x0: y0 >= -1) or the smallest U_j (1) would pass the false property. No member choice
    does, in either mode; on the true property b = -2.01 each choice passes."""
    body = [helper_node("Max", ["a", "w"], ["mx"]), helper_node("Neg", ["mx"], ["t"])]
    m, _, t, s = _tiny(tmp, "mx", body, [0, 0], [1, 2], -1.5)
    assert [n.kind for n in t.bg.nodes] == ["input", "max"]
    _confirm_sat(m, t, s, [1.0, 2.0])
    _, _, t2, s2 = _tiny(tmp, "mx-true", body, [0, 0], [1, 2], -2.01)
    for c in (0, 1, None):
        for v in verdicts(t, s, [leaf(TINY, {"slopes": [[1, 0, c, None]]})]):
            assert not v.ok and "recomputed bound" in v.reason, (c, v.reason)
        assert all(v.ok for v in verdicts(t2, s2, [leaf("1/200", {"slopes": [[1, 0, c, None]]})])), c


@pytest.mark.parametrize("shift", [0.0, 800.0], ids=["signed", "positive"])
def test_products_past_float64_are_refused(tmp, shift):
    """t = (x0 + shift)·exp(800·x1) on [-1, 1]^2: exp(800) is past float64 (the fast engine's +inf),
    below the exact engine's EXP_MAX. Unsafe t <= 0 (signed: sat at (-1, 1), t = -e^800) and
    t <= 1e-300 (positive: sat at (0, -1), t = 800·e^-800 < 1e-300): no weight passes either
    in either mode. (Exact mode refuses the signed case as "malformed certificate: OverflowError":
    the rejection message formats the recomputed bound, about -e^800, as a float; a wart only.)"""
    k = ("k", np.array([800.0], np.float32))
    body = [helper_node("Mul", ["w", "k"], ["wk"]), helper_node("Exp", ["wk"], ["e"]),
            helper_node("Add" if shift else "Sub", ["a", "k"] if shift else ["a", "z"], ["a2"]),
            helper_node("Mul", ["a2", "e"], ["t"])]
    inits = (k,) if shift else (k, ("z", np.array([0.0], np.float32)))
    b, x = (1e-300, [0.0, -1.0]) if shift else (0.0, [-1.0, 1.0])
    _, _, t, s = _tiny(tmp, f"big{int(shift)}", body, [-1, -1], [1, 1], b, inits)
    assert [n.fn or n.kind for n in t.bg.nodes] == ["input", "exp", "mul"]
    # (float32 has neither e^800 nor e^-800, nor does onnxruntime's y1 = t·0: the exact replay
    # alone confirms the counterexample)
    assert table.check(table.sat_cert(t, s, [Fraction(v) for v in x]), t, s).ok
    for w in (None, "0", "1", "1/2"):
        ex = None if w is None else {"slopes": [[2, 0, w, w]]}
        for claim in (TINY, "1"):
            for v in verdicts(t, s, [leaf(claim, ex)]):
                assert not v.ok, (w, claim, v.reason)
