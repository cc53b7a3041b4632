"""VNN certificates on general networks (bound graphs): check_vnn replays unsat split trees with the
bound-table engines (exact and fast) and checks sat points on the exact output enclosure; mutated
certificates (inflated bound, dropped node, swapped network, missing leaf, bad relaxation choices)
are rejected in both modes. The small certificate search below is test scaffolding (the search
proper is verify/'s): it claims slightly less than the fast engine's bound on each leaf.
"""

from fractions import Fraction

import numpy as np
import pytest

from torchlean.certificates import engine
from torchlean.certificates import fast_engine as fe
from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.functions import FUNCTIONS
from torchlean.certificates.graph_vnn import LIBM, LIBM_ROWS, objective_forms
from torchlean.certificates.lower import BoundGraph, fingerprint, lower
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.spec import Graph, Node, Value
from torchlean.verify import engines

F = Fraction
MODES = ("exact", "fast")


def tanh_net(rng):
    c = {"W": rng.normal(0, 0.8, (3, 6)), "b": rng.normal(0, 0.3, (6,)), "V": rng.normal(0, 0.8, (6, 2))}
    nodes = [Node("matmul", ["x", "W"], "m"), Node("add", ["m", "b"], "z"), Node("tanh", ["z"], "t"),
             Node("mul", ["t", "z"], "p"), Node("matmul", ["p", "V"], "y")]
    return Graph([Value("x", (1, 3), "float64")], c, nodes, ["y"]).check()


def cnn_net(rng):
    c = {"K": rng.normal(0, 0.8, (2, 1, 2, 2)), "V": rng.normal(0, 0.8, (8, 2))}
    nodes = [Node("conv2d", ["x", "K"], "h", {"padding": (1, 1)}), Node("relu", ["h"], "r"),
             Node("max_pool2d", ["r"], "p"), Node("flatten", ["p"], "f"), Node("matmul", ["f", "V"], "y")]
    return Graph([Value("x", (1, 1, 3, 3), "float64")], c, nodes, ["y"]).check()


def robustness(bg: BoundGraph, x0, eps):
    """The unsafe set 'the other output wins' around x0 (whichever output is larger at x0)."""
    y = [float(v) for v in engines.exact_ibp(bg, x0, x0)[0]]
    a = (F(1), F(-1)) if y[0] > y[1] else (F(-1), F(1))  # unsafe: a·y <= 0 (the loser wins)
    lo = tuple(F(v) - F(eps) for v in x0)
    hi = tuple(F(v) + F(eps) for v in x0)
    return Spec(bg.n_in, bg.n_out, (Region(lo, hi, ((Atom(a, F(0), False),),)),))


def search(bg: BoundGraph, spec: Spec, depth: int = 10, phases=None):
    """Input-split tree whose leaves each claim 0.999x the fast engine's bound on a·y - b (on the
    region where the ReLU-like elements ``phases`` {(node, i): 0/1} have those signs)."""
    region = spec.regions[0]
    tree: list = []
    obj = fe.forms_of(bg, objective_forms(bg, region, [[(0,)]])[0])
    ph = None if not phases else {k: np.array([[phases.get((k, i), -1) for i in range(bg.nodes[k].size)]])
                                  for k in {k for k, _ in phases}}

    def rec(lo, hi, d):
        L, H = fe.boxes([lo], [hi])
        lb = fe.bound_forms(fe.forward(fe.compiled(bg), L, H, "crown", ph), obj)[0, 0]
        if lb > 0 and d >= 2:  # (split twice at least, so trees have structure to mutate)
            tree.append(["leaf", [[0, str(F(lb) * F(999, 1000))]]])
            return
        assert d < depth, "test network too hard for the scaffolding search"
        k = max(range(len(lo)), key=lambda i: hi[i] - lo[i])
        mid = F((float(lo[k]) + float(hi[k])) / 2)
        tree.append(["split", k, f"{mid.numerator}/{mid.denominator}"])
        rec(lo, hi[:k] + [mid] + hi[k + 1:], d + 1)
        rec(lo[:k] + [mid] + lo[k + 1:], hi, d + 1)

    rec(list(region.lo), list(region.hi), 0)
    return tree


def unsat_cert(bg, spec, tree, method="crown"):
    return {"kind": "vnn-unsat", "network": fingerprint(bg), "property": spec.digest(),
            "method": method, "regions": [tree]}


@pytest.fixture(scope="module", params=["tanh", "cnn"])
def case(request):
    rng = np.random.default_rng(4)
    g = tanh_net(rng) if request.param == "tanh" else cnn_net(rng)
    bg = lower(g.to_dict())
    x0 = [float(v) for v in rng.uniform(-1, 1, bg.n_in)]
    for eps in (0.4, 0.2, 0.1, 0.05, 0.025):  # the largest radius the scaffolding search proves
        spec = robustness(bg, x0, eps)
        try:
            tree = search(bg, spec, depth=6)
        except AssertionError:
            continue
        return g, bg, spec, tree
    raise AssertionError("no radius proved")


def test_every_network_is_read_as_its_bound_graph():
    rng = np.random.default_rng(0)
    c = {"W": rng.normal(size=(3, 4)).astype(np.float32), "V": rng.normal(size=(4, 2)).astype(np.float32)}
    nodes = [Node("matmul", ["x", "W"], "h"), Node("relu", ["h"], "r"), Node("matmul", ["r", "V"], "y")]
    g = Graph([Value("x", (1, 3), "float32")], c, nodes, ["y"]).check()
    assert isinstance(lower(g.to_dict()), BoundGraph)  # a ReLU chain too (issue 14)
    assert isinstance(lower(cnn_net(rng).to_dict()), BoundGraph)


@pytest.mark.parametrize("mode", MODES)
def test_unsat_tree_accepted(case, mode):
    _, bg, spec, tree = case
    assert sum(1 for e in tree if e[0] == "leaf") >= 2  # the box needed splitting
    v = check_vnn(unsat_cert(bg, spec, tree), bg, spec, mode=mode)
    assert v.ok and v.checked == sum(1 for e in tree if e[0] == "leaf")
    libm = any(n.kind == "fn" and getattr(FUNCTIONS[n.fn], "trusted", None) for n in bg.nodes)
    assert v.fully_checked == (mode == "exact" and not libm)  # (assumptions are never "checked")
    # the fast rows of transcendental functions rest on a stated libm accuracy: a fast verdict names it
    transcendental = any(n.kind == "fn" and n.fn in LIBM_ROWS for n in bg.nodes)
    assert (LIBM in v.trusted) == (mode == "fast" and transcendental)


@pytest.mark.parametrize("mode", MODES)
def test_inflated_bound_rejected(case, mode):
    _, bg, spec, tree = case
    bad = [list(e) for e in tree]
    i = next(i for i, e in enumerate(bad) if e[0] == "leaf")
    beta = F(bad[i][1][0][1])
    bad[i] = ["leaf", [[0, str(beta * 2 + 1)]]]
    v = check_vnn(unsat_cert(bg, spec, bad), bg, spec, mode=mode)
    assert not v.ok and "recomputed bound" in v.reason


@pytest.mark.parametrize("mode", MODES)
def test_missing_leaf_rejected(case, mode):
    _, bg, spec, tree = case
    v = check_vnn(unsat_cert(bg, spec, tree[:-1]), bg, spec, mode=mode)
    assert not v.ok and "ends early" in v.reason


@pytest.mark.parametrize("mode", MODES)
def test_dropped_node_and_swapped_network_rejected(case, mode):
    g, bg, spec, tree = case
    cert = unsat_cert(bg, spec, tree)
    d = g.to_dict()
    act = next(n for n in d["nodes"] if n["op"] in ("tanh", "relu"))
    d["nodes"].remove(act)  # drop the activation: rewire its consumers to its input
    for n in d["nodes"]:
        n["inputs"] = [act["inputs"][0] if i == act["output"] else i for i in n["inputs"]]
    dropped = lower(d)
    other = lower((tanh_net if "t" in g.values else cnn_net)(np.random.default_rng(99)).to_dict())
    for net in (dropped, other):
        v = check_vnn(cert, net, spec, mode=mode)
        assert not v.ok and "different network" in v.reason
    # a certificate re-labelled for the other network fails on its own bounds, not on the label
    relabelled = {**cert, "network": fingerprint(other)}
    assert not check_vnn(relabelled, other, spec, mode=mode).ok


@pytest.mark.parametrize("mode", MODES)
def test_bad_relaxation_choices_rejected_valid_ones_replayed(case, mode):
    _, bg, spec, tree = case
    i = next(i for i, e in enumerate(tree) if e[0] == "leaf")
    k = next(k for k, n in enumerate(bg.nodes) if n.kind in ("mul", "max"))
    node = bg.nodes[k]
    bad_value = ["2", None] if node.kind == "mul" else [len(node.args[0]), None]
    for entry in ([k, 0, *bad_value], [0, 0, None, None], [k, node.size, None, None]):
        bad = [list(e) for e in tree]
        bad[i] = ["leaf", [[0, bad[i][1][0][1], {"slopes": [entry]}]]]
        v = check_vnn(unsat_cert(bg, spec, bad), bg, spec, mode=mode)
        assert not v.ok, entry
    # any valid choice gives a valid bound: the claim (made without it) is re-checked with it
    fk = next(k for k, n in enumerate(bg.nodes) if n.kind == "fn")
    ok = [list(e) for e in tree]
    ok[i] = ["leaf", [[0, "1/1000000000", {"slopes": [[fk, 0, "1/3", "-7"]]}]]]
    v = check_vnn(unsat_cert(bg, spec, ok), bg, spec, mode=mode)
    assert v.ok or "recomputed bound" in v.reason


def test_sat_checked_on_the_exact_output_enclosure():
    rng = np.random.default_rng(4)
    for g in (tanh_net(rng), cnn_net(rng)):
        bg = lower(g.to_dict())
        x0 = [F(float(v)) for v in rng.uniform(-1, 1, bg.n_in)]
        L, U = engine.point(bg, x0)  # the point's enclosure, inside the (rounded) IBP one
        lo, hi = zip(*(engine.form_bounds(f, L, U) for f in bg.outputs))
        ilo, ihi = engines.exact_ibp(bg, x0, x0)
        assert all(a <= b <= c <= d for a, b, c, d in zip(ilo, lo, hi, ihi))
        if all(n.kind != "fn" or n.fn == "relu" for n in bg.nodes):
            assert lo == hi  # rational operations only: the exact value
        y0 = (lo[0] + hi[0]) / 2
        box = (tuple(v - 1 for v in x0), tuple(v + 1 for v in x0))
        for b, strict, want in ((y0 + 1, False, True), (y0 - 1, False, False), (hi[0], False, True),
                                (hi[0], True, False)):
            spec = Spec(bg.n_in, bg.n_out, (Region(*box, ((Atom((F(1), F(0)), b, strict),),)),))
            cert = {"kind": "vnn-sat", "network": fingerprint(bg), "property": spec.digest(),
                    "x": [str(v) for v in x0]}
            v = check_vnn(cert, bg, spec)
            assert v.ok == want, (b, strict, v.reason)
        outside = {**cert, "x": [str(v + 2) for v in x0]}
        assert not check_vnn(outside, bg, spec).ok


@pytest.mark.parametrize("mode", MODES)
def test_relu_split_trees(case, mode):
    """A hidden-element split ["relu", node, i]: each side's leaves are bounded on their region
    (argument clamped at 0); splits on elements without a kink at 0 are refused."""
    g, bg, spec, _ = case
    k = next((k for k, n in enumerate(bg.nodes) if n.kind == "fn" and n.fn == "relu"), None)
    if k is None:
        pytest.skip("no ReLU in this network")
    tree = ["relu", k, 0]
    sides = [search(bg, spec, depth=6, phases={(k, 0): v}) for v in (0, 1)]
    cert = unsat_cert(bg, spec, [tree] + sides[0] + sides[1])
    v = check_vnn(cert, bg, spec, mode=mode)
    assert v.ok, v.reason
    assert v.checked == sum(1 for t in sides for e in t if e[0] == "leaf")
    other = next(j for j, n in enumerate(bg.nodes) if n.kind != "fn" or n.fn != "relu")
    bad = unsat_cert(bg, spec, [["relu", other, 0]] + sides[0] + sides[1])
    v = check_vnn(bad, bg, spec, mode=mode)
    assert not v.ok and "no hidden neuron" in v.reason
    twice = unsat_cert(bg, spec, [tree, tree] + sides[0] + sides[1] + sides[1])
    v = check_vnn(twice, bg, spec, mode=mode)
    assert not v.ok and "split twice" in v.reason
