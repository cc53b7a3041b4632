"""Audit audit25 (held out): split trees that mix input splits and ReLU splits in one tree (the
walker ``bounds.walk`` hands each leaf both a narrowed box and ReLU phases; the fast engine's
shared per-node state memo replays a child from its parent), layer norm's nodes (square, sqrt,
reciprocal, mul), a batch norm folded after a Gemm (const, reciprocal, mul, relu), and max as a
reduction (ReduceMax) and ``minimum`` (Min). For a FALSE property (the sampled minimiser, confirmed
by onnxruntime and the checker's exact sat replay), no mutated unsat certificate passes in either
mode; on a TRUE property a claim above the sampled minimum never passes and honest trees do."""

from __future__ import annotations

import functools
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.graph_vnn import split_widths
from torchlean.verify import table

MODES = ("exact", "fast")
TINY = "1/" + "1" + "0" * 301
BIG = "1" + "0" * 400
F = np.float32
mk = helper.make_node


def _nets() -> dict:
    """name -> (nodes, inits, opset, lo, hi): x (1, 2) -> y (1, 2)."""
    ew = (("e0", np.array([[1], [0]], F)), ("e1", np.array([[0], [1]], F)), ("out", np.array([[1, 0]], F)))
    pick = [mk("MatMul", ["x", "e0"], ["a"]), mk("MatMul", ["x", "e1"], ["w"])]
    return {
        "negrelu": (pick + [mk("Relu", ["a"], ["r"]), mk("Neg", ["r"], ["t"]),
                             mk("MatMul", ["t", "out"], ["y"])],
                    ew, 13, [-1, -1], [1, 1]),
        "min": (pick + [mk("Min", ["a", "w"], ["t"]), mk("MatMul", ["t", "out"], ["y"])],
                ew, 13, [-1, -0.5], [1, 0.25]),
        "rmax": (pick + [mk("Concat", ["a", "w"], ["c"], axis=1),
                         mk("ReduceMax", ["c"], ["m"], axes=[1], keepdims=1), mk("Neg", ["m"], ["t"]),
                         mk("MatMul", ["t", "out"], ["y"])],
                 ew, 13, [-1, -0.5], [1, 0.25]),
        "ln": ([mk("LayerNormalization", ["x", "g", "bb"], ["l"], axis=-1, epsilon=1e-5),
                mk("MatMul", ["l", "w"], ["y"])],
               (("g", np.array([1.5, 0.5], F)), ("bb", np.array([0.1, -0.2], F)),
                ("w", np.array([[1, 0.3], [0.2, -1]], F))), 17, [-1, 0.5], [-0.5, 1]),
        "bn": ([mk("Gemm", ["x", "w1", "b1"], ["h"]), mk("Unsqueeze", ["h", "ax"], ["h3"]),
                mk("BatchNormalization", ["h3", "sc", "bi", "mu", "va"], ["hb"]),
                mk("Squeeze", ["hb", "ax"], ["h2"]), mk("Relu", ["h2"], ["r"]),
                mk("MatMul", ["r", "w2"], ["y"])],
               (("w1", np.array([[1, 2, -1], [0.5, -1, 1]], F)), ("b1", np.array([0.1, 0.2, -0.1], F)),
                ("ax", np.array([2], np.int64)), ("sc", np.array([1.2, 0.7, 2.0], F)),
                ("bi", np.array([0.1, -0.3, 0.2], F)), ("mu", np.array([0.05, 0.1, -0.2], F)),
                ("va", np.array([0.5, 2.0, 0.3], F)), ("w2", np.array([[1, 0], [-1, 1], [0.5, -2]], F))),
               13, [-1, -1], [1, 1]),
    }


KINDS = {"negrelu": ["input", "relu"], "min": ["input", "max"], "rmax": ["input", "max"],
         "ln": ["input", "square", "sqrt", "reciprocal", "mul"],
         "bn": ["input", "const", "reciprocal", "mul", "relu"]}


@functools.cache
def _model(name: str):
    from tests.test_onnx_exact import _model as build

    nodes, inits, opset, _, _ = _nets()[name]
    return build(nodes, [("x", [1, 2])], ("y",), list(inits), opset, TensorProto.FLOAT)


@functools.cache
def _samples(name: str):
    """5,000 box points and onnxruntime's margins y0 - y1 there (box corners included)."""
    import onnxruntime as ort

    _, _, _, lo, hi = _nets()[name]
    xs = np.random.default_rng(7).uniform(lo, hi, (5000, 2)).astype(F)
    xs[:4] = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]], F)
    s = ort.InferenceSession(_model(name).SerializeToString())
    y = np.concatenate([s.run(None, {"x": x[None]})[0] for x in xs]).astype(float)
    return xs, y[:, 0] - y[:, 1]


@functools.cache
def instance(name: str, false: bool, tmp: str):
    """(target, spec, b): unsafe y0 - y1 <= b, b = sampled min + 1/100 (false: confirmed by
    onnxruntime and the exact sat replay) or min - 3 (true)."""
    _, _, _, lo, hi = _nets()[name]
    xs, d = _samples(name)
    j = int(np.argmin(d))
    b = float(d[j]) + (0.01 if false else -3)
    num = lambda v: f"(- {-float(v)!r})" if v < 0 else repr(float(v))  # noqa: E731 (SMT-LIB)
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(2))
    text += "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    text += "".join(f"(assert (>= X_{i} {num(lo[i])}))\n(assert (<= X_{i} {num(hi[i])}))\n" for i in range(2))
    text += f"(assert (<= (- Y_0 Y_1) {num(b)}))\n"
    net, prop = Path(tmp) / f"{name}.onnx", Path(tmp) / f"{name}{int(false)}.vnnlib"
    net.write_bytes(_model(name).SerializeToString())
    prop.write_text(text)
    t, s = table.load_instance(net, prop)
    assert [n.fn or n.kind for n in t.bg.nodes] == KINDS[name]
    if false:
        assert d[j] < b - 0.005  # onnxruntime
        assert table.check(table.sat_cert(t, s, [Fraction(float(v)) for v in xs[j]]), t, s).ok  # exact
    return t, s, b


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return str(tmp_path_factory.mktemp("audit25"))


def leaf(claim: str = TINY, extras=None) -> list:
    return ["leaf", [[0, claim] + ([extras] if extras is not None else [])]]


def verdicts(t, s, tree):
    c = table.unsat_cert(t, s, [tree])
    return [check_vnn(c, t.bg, s, mode=m) for m in MODES]


def _relus(t) -> list[tuple[int, int]]:
    w = split_widths(t.bg)
    return [(k, i) for k, n in enumerate(w) for i in range(n)]


def _choices(t, rng: random.Random) -> list:
    """Valid-looking relaxation choices for every mul / max / fn element: McCormick weights in
    [0, 1], max members, fn slopes far outside any tangent."""
    out = []
    for k, n in enumerate(t.bg.nodes):
        size = len(n.args) if getattr(n, "args", None) is not None else 0
        for i in range(size):
            if n.kind == "mul":
                out.append([k, i, rng.choice(["0", "1", "1/3"]), rng.choice(["0", "1", None])])
            elif n.kind == "max":
                out.append([k, i, rng.choice([0, 1, None]), None])
            elif n.kind == "fn" and n.fn != "relu" and rng.random() < 0.5:
                out.append([k, i, rng.choice(["7", "-7", BIG]), rng.choice(["-7", "7", None])])
    return out


def _random_tree(t, lo: list, hi: list, rng: random.Random, depth: int, path: dict, extras: bool) -> list:
    """A preorder tree mixing input splits (random value in the current box, sometimes at its end)
    and ReLU splits (an element not on the path); leaves carry TINY claims, and with ``extras`` a
    multiplier (1 or 10^400) on every split element of the path and random relaxation choices."""
    free = [e for e in _relus(t) if e not in path]
    if depth == 0 or rng.random() < 0.2:
        if not extras:
            return [leaf()]
        ex = {"mult": [[k, i, rng.choice(["1", BIG])] for (k, i) in path]} if path else {}
        ch = _choices(t, rng)
        if ch:
            ex["slopes"] = ch
        return [leaf(TINY, ex or None)]
    if free and rng.random() < 0.5:
        k, i = rng.choice(free)
        return [["relu", k, i], *_random_tree(t, lo, hi, rng, depth - 1, {**path, (k, i): 0}, extras),
                *_random_tree(t, lo, hi, rng, depth - 1, {**path, (k, i): 1}, extras)]
    dim = rng.randrange(2)
    v = rng.choice([lo[dim], hi[dim], lo[dim] + (hi[dim] - lo[dim]) * Fraction(rng.randint(1, 7), 8)])
    l2, h2 = list(lo), list(hi)
    h2[dim], l2[dim] = v, v
    return [["split", dim, f"{v.numerator}/{v.denominator}"],
            *_random_tree(t, lo, h2, rng, depth - 1, path, extras),
            *_random_tree(t, l2, hi, rng, depth - 1, path, extras)]


def _box(name):
    _, _, _, lo, hi = _nets()[name]
    return [Fraction(float(F(v))) for v in lo], [Fraction(float(F(v))) for v in hi]


@pytest.mark.parametrize("name", sorted(KINDS))
def test_mixed_trees_with_choices_never_pass_a_false_property(name, tmp):
    t, s, _ = instance(name, True, tmp)
    lo, hi = _box(name)
    rng = random.Random(sum(map(ord, name)))
    mixed = 0
    for _ in range(12):
        tree = _random_tree(t, lo, hi, rng, 4, {}, True)
        mixed += {"relu", "split"} <= {e[0] for e in tree}
        for m, v in zip(MODES, verdicts(t, s, tree)):
            assert not v.ok, (name, m, tree)
    assert mixed >= 3 or not _relus(t), (name, mixed)  # (trees mixing both split kinds)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_honest_trees_pass_a_true_property_and_claims_above_the_minimum_do_not(name, tmp):
    """Honest mixed trees (TINY claims, no extras) pass both modes on the true property (so the
    refusals above are not refusals of everything); a claim at the sampled minimum + 1/1000 is
    refused by every tree."""
    t, s, b = instance(name, False, tmp)
    lo, hi = _box(name)
    _, d = _samples(name)
    gap = Fraction(float(d.min())) - Fraction(b) + Fraction(1, 1000)
    over = f"{gap.numerator}/{gap.denominator}"
    rng = random.Random(sum(map(ord, name)) + 1)
    passed = 0
    for _ in range(8):
        tree = _random_tree(t, lo, hi, rng, 3, {}, False)
        vs = verdicts(t, s, tree)
        passed += all(v.ok for v in vs)
        bad = [e if e[0] != "leaf" else leaf(over) for e in tree]
        assert not any(v.ok for v in verdicts(t, s, bad)), (name, bad)
    assert passed >= 4, name


NR = {  # the -relu net: y0 - y1 = -relu(x0); false: <= min + 1/100 (sat at x0 = 1)
    # input split at 0, then the relu in each half: on x0 >= 0 the neuron is provably active,
    # its inactive leaf empty; the active leaf must still be proved
    "split-then-relu": [["split", 0, "0"], ["relu", 1, 0], leaf(), leaf(),
                        ["relu", 1, 0], leaf(TINY, {"mult": [[1, 0, BIG]]}),
                        leaf(TINY, {"mult": [[1, 0, BIG]]})],
    # relu first, then input splits in both phases (the child replays from the split's parent)
    "relu-then-split": [["relu", 1, 0], ["split", 0, "0"], leaf(), leaf(),
                        ["split", 0, "0"], leaf(TINY, {"mult": [[1, 0, "1"]]}),
                        leaf(TINY, {"mult": [[1, 0, "1"]]})],
    "relu-then-split-deep": [["relu", 1, 0], leaf(), ["split", 0, "1/2"], ["split", 0, "1/4"], leaf(), leaf(),
                             ["split", 0, "3/4"], leaf(TINY, {"mult": [[1, 0, BIG]]}), leaf()],
    # the same neuron split again below an input split on one path (different phases): refused
    "relu-twice-across-split": [["relu", 1, 0], leaf(), ["split", 0, "1/2"], leaf(),
                                ["relu", 1, 0], leaf(), leaf()],
    # an input split inside a relu subtree with a value outside the narrowed box (a "gap"): refused
    "split-outside-narrowed": [["split", 0, "0"], ["split", 0, "1/2"], leaf(), leaf(), leaf()],
    "split-outside-after-relu": [["relu", 1, 0], leaf(), ["split", 0, "0"], ["split", 0, "1/2"],
                                 leaf(), leaf(), leaf()],
}


def _strip(tree: list) -> list:
    return [leaf() if e[0] == "leaf" else e for e in tree]


@pytest.mark.parametrize("case", sorted(NR))
@pytest.mark.parametrize("extras", [True, False], ids=["extras", "plain"])
def test_negrelu_mixed_trees_refused_on_the_false_property(case, extras, tmp):
    t, s, _ = instance("negrelu", True, tmp)
    for m, v in zip(MODES, verdicts(t, s, NR[case] if extras else _strip(NR[case]))):
        assert not v.ok, (case, m)


def test_negrelu_active_box_inactive_leaf_is_vacuous_but_the_active_one_is_checked(tmp):
    """On x0 in [1/2, 1] the neuron is active: the inactive leaf (empty region) may claim anything
    via a multiplier, and the tree passes only if the active leaf is proved. For the false
    property it never is; for the true one (b = min - 3) the honest tree passes."""
    tree = [["split", 0, "1/2"], leaf(), ["relu", 1, 0], leaf("1000", {"mult": [[1, 0, BIG]]}), leaf()]
    t, s, _ = instance("negrelu", True, tmp)
    assert not any(v.ok for v in verdicts(t, s, tree))
    t, s, _ = instance("negrelu", False, tmp)
    ok = [v.ok for v in verdicts(t, s, [["split", 0, "1/2"], leaf(), ["relu", 1, 0], leaf(), leaf()])]
    assert ok == [True, True]


MALFORMED = {  # (net, leaf extras): refused where the honest TINY leaf passes the true property
    "ln-mul-weight-neg": ("ln", {"slopes": [[4, 0, "-1/1000", None]]}),
    "ln-mul-weight-above-1": ("ln", {"slopes": [[4, 1, None, "1001/1000"]]}),
    "ln-mul-past-size": ("ln", {"slopes": [[4, 2, "0", None]]}),
    "ln-input-entry": ("ln", {"slopes": [[0, 0, "0", "0"]]}),
    "ln-mult-no-split": ("ln", {"mult": [[4, 0, "1"]]}),
    "bn-const-entry": ("bn", {"slopes": [[1, 0, "0", "0"]]}),
    "bn-mult-on-mul": ("bn", {"mult": [[3, 0, "1"]]}),
    "bn-mult-neg": ("bn", {"mult": [[4, 0, "-1"]]}),
    "bn-mul-weight-nan": ("bn", {"slopes": [[3, 0, "nan", None]]}),
    "min-member-past": ("min", {"slopes": [[1, 0, 2, None]]}),
    "min-member-upper": ("min", {"slopes": [[1, 0, 0, 1]]}),
    "rmax-member-neg": ("rmax", {"slopes": [[1, 0, -1, None]]}),
    "rmax-member-bool": ("rmax", {"slopes": [[1, 0, True, None]]}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_entries_on_norm_and_max_nodes_are_refused(case, tmp):
    name, ex = MALFORMED[case]
    t, s, _ = instance(name, False, tmp)
    tree = [["split", 0, "0"], leaf(), leaf()] if name == "min" else [leaf()]
    if name == "bn":  # (the bn net's true property needs its relu split)
        tree = _split_all(t)
    assert all(v.ok for v in verdicts(t, s, tree)), case
    bad = [leaf(TINY, ex) if e[0] == "leaf" else e for e in tree]
    assert not any(v.ok for v in verdicts(t, s, bad)), case


def _split_all(t) -> list:
    """Every relu element split, then the box halved on dimension 0 under each leaf."""
    elems = _relus(t)

    def rec(k: int) -> list:
        if k == len(elems):
            return [["split", 0, "0"], leaf(), leaf()]
        return [["relu", *elems[k]], *rec(k + 1), *rec(k + 1)]
    return rec(0)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_cli_refuses_a_mutated_mixed_tree_in_both_modes(name, tmp, capsys):
    """The CLI, both modes, on the false property: a mixed tree with every relu split, input
    splits and random choices (multipliers 10^400) exits 1."""
    import json

    from tests.test_heldout_audit10 import _cli

    t, s, _ = instance(name, True, tmp)
    lo, hi = _box(name)
    tree = _random_tree(t, lo, hi, random.Random(5), 4, {}, True)
    path = Path(tmp) / f"{name}-cli.json"
    path.write_text(json.dumps(table.unsat_cert(t, s, [tree])))
    net, prop = Path(tmp) / f"{name}.onnx", Path(tmp) / f"{name}1.vnnlib"
    for mode in (["--mode", "exact"], []):
        code, out, _ = _cli(capsys, "check", path, net, prop, *mode)
        assert code == 1 and "unsat" not in out.split("\n")[0].lower(), (name, mode, out)
