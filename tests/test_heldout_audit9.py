"""h-audit9: adversarial split trees against the replay's parent bounds (h-replay).

A child of a ``["relu", node, i]`` split takes its parent's argument bounds at ``node`` (clamped
by the split) instead of recomputing them, and the fast replay bounds one chunk per (depth, split
node). Both are sound only if the "parent" state the replay uses is the state of a region that
contains the child's. These tests forge trees whose shapes stress that bookkeeping (ReLU splits
under input splits under ReLU splits, splits on the first nonlinear node below splits on later
ones, two elements of one node on a path, splits on a relu that is the network's output, stable
elements whose one child is empty, leaky_relu splits, more than ``CHUNK`` leaves per level and
split node, several disjuncts ``per_disjunct`` sharing the fast replay's ``states`` memo, shared
``arg_slopes``, split multipliers) and check, in both replay modes:

1. every leaf bound the checker computes is at most the objective's exact value at every sampled
   point of the leaf's region (box and split halfspaces; ``engine.point``: exact rationals on a
   ReLU net), the reference being independent of the bound engines;
2. a false property (a sampled point violates it) is rejected whatever tree proves it;
3. certificates the search writes for true properties are accepted.
"""

from __future__ import annotations

import copy
from fractions import Fraction

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.certificates import engine, fast_vnn, graph_vnn
from torchlean.certificates.bounds import check_vnn, leaf_proofs, walk
from torchlean.certificates.graph_vnn import split_widths
from torchlean.certificates.lower import fingerprint
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.verify import general, table

LO, HI = (Fraction(-1), Fraction(-1)), (Fraction(1), Fraction(1))
MODES = ("exact", "fast")


def _target(seed: int, tail_relu: bool = False):
    """A 2-input net with relu, leaky_relu and relu nodes (and a relu output when ``tail_relu``)."""
    tl.manual_seed(seed)
    layers = [nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 6), nn.LeakyReLU(0.1), nn.Linear(6, 5), nn.ReLU(),
              nn.Linear(5, 2)]
    return table.target(tl.trace(nn.Sequential(*layers, *([nn.ReLU()] if tail_relu else [])), tl.zeros(1, 2)))


@pytest.fixture(scope="module", params=[(5, False), (11, True)], ids=["mixed", "relu_output"])
def net(request):
    """(target, samples): 1141 points of the box (random and a grid), with {"x": points, "y": exact
    outputs, "d": y0 - y1 as floats, "z": {fn node: argument values as floats (B, size)}}; the
    floats have the exact values' signs, which is all the region tests read from them."""
    t = _target(*request.param)
    bg = t.bg
    rng = np.random.default_rng(request.param[0])
    g = np.linspace(-1, 1, 21)
    pts = np.concatenate([rng.uniform(-1, 1, (700, 2)), np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)])
    out = []
    for x in pts:
        L, U = engine.point(bg, [Fraction(float(v)) for v in x])
        args = {k: [engine.form_bounds(f, L, U)[0] for f in n.args]
                for k, n in enumerate(bg.nodes) if n.kind == "fn"}
        ys = [engine.form_bounds(f, L, U)[0] for f in bg.outputs]
        assert all(engine.form_bounds(f, L, U)[0] == engine.form_bounds(f, L, U)[1] for f in bg.outputs)
        out.append((x, args, ys))
    S = {"x": pts, "y": [ys for *_, ys in out], "d": np.array([float(ys[0] - ys[1]) for *_, ys in out]),
         "z": {k: np.array([[float(v) for v in a[k]] for _, a, _ in out]) for k in out[0][1]}}
    return t, S


A = (Fraction(1), Fraction(-1))  # objective y0 - y1 - b (unsafe: y0 - y1 <= b)


def _spec(b: Fraction, n_disj: int = 1, flip: bool = True) -> Spec:
    """Unsafe: y0 - y1 <= b (and, for more disjuncts, y1 - y0 <= -b - 1/2^k, k = 1, 2, ..., or
    where not ``flip`` y0 - y1 <= b - 1/2^k)."""
    s = -1 if flip else 1
    ds = [(Atom(A, b, False),)] + [(Atom((s * A[0], s * A[1]), s * b - Fraction(1, 2 ** k), False),)
                                    for k in range(1, n_disj)]
    return Spec(2, 2, (Region(LO, HI, tuple(ds)),))


def _obj(atom: Atom, ys: list[Fraction]) -> Fraction:
    return sum((a * y for a, y in zip(atom.a, ys)), Fraction(0)) - atom.b


def _tree(rng, bg, depth: int, p_input: float, p_leaf: float, n_proofs: int, mult: bool = True,
          box: tuple = (LO, HI), path: tuple = ()) -> list:
    """A random preorder split tree over ``box`` (``path``: the ReLU splits above it): input
    splits at dyadic points inside the box, ReLU splits on any splittable element not yet on the
    path (stable ones too: an empty child), leaves claiming 1/10^6 (random split multipliers
    where ``mult``)."""
    widths = split_widths(bg)
    nodes = [k for k, w in enumerate(widths) if w]
    out: list = []

    def go(lo, hi, path, d):
        if d == 0 or (d < depth and rng.random() < p_leaf):
            proofs = []
            for _ in range(n_proofs):
                p = [0, "1/1000000"]
                if mult and path and rng.random() < 0.5:
                    p.append({"mult": [[k, i, f"{int(rng.integers(0, 9))}/8"] for k, i in path]})
                proofs.append(p)
            out.append(["leaf", proofs])
            return
        if rng.random() < p_input:
            dim = int(rng.integers(0, len(lo)))
            v = Fraction(int(rng.integers(1, 16)), 16) * (hi[dim] - lo[dim]) + lo[dim]
            out.append(["split", dim, f"{v.numerator}/{v.denominator}"])
            go(lo, hi[:dim] + (v,) + hi[dim + 1:], path, d - 1)
            go(lo[:dim] + (v,) + lo[dim + 1:], hi, path, d - 1)
            return
        free = [(k, i) for k in nodes for i in range(widths[k]) if (k, i) not in path]
        k, i = free[int(rng.integers(0, len(free)))]
        out.append(["relu", k, i])
        go(lo, hi, path + [(k, i)], d - 1)
        go(lo, hi, path + [(k, i)], d - 1)

    go(*box, list(path), depth)
    return out


def _cert(bg, spec: Spec, entry, method: str = "crown") -> dict:
    return {"kind": "vnn-unsat", "network": fingerprint(bg), "property": spec.digest(), "method": method,
            "regions": [entry]}


def _leaf_bounds(monkeypatch, cert, bg, spec, mode):
    """The replay's bound per (leaf, disjunct), in tree order per disjunct tree (the fast replay
    visits leaves by level: sorted by the leaf number its message names): ``check_leaf_proofs``
    replaced by one that records what the engine computed and never rejects."""
    got: dict = {}

    def record(proofs, region, index, lower, where, read_extras):
        for j, p, combo in leaf_proofs(proofs, region, where):
            ex = read_extras(p, where) if len(p) == 3 else None
            tree = [d[0] for d in spec.regions[0].disjuncts].index(region.disjuncts[0][0])
            key = (tree if len(region.disjuncts) == 1 else 0, int(where.split(" leaf ")[1]), j)
            assert key not in got
            got[key] = (region.disjuncts[j][0], Fraction(lower(index[j][combo], ex)))

    monkeypatch.setattr(graph_vnn, "check_leaf_proofs", record)
    monkeypatch.setattr(fast_vnn, "check_leaf_proofs", record)
    v = check_vnn(cert, bg, spec, mode=mode)
    assert v.ok, v.reason
    return [got[k] for k in sorted(got)]


def _regions(tree, bg):
    """(lo, hi, phases) of every leaf of ``tree`` over (LO, HI), in tree order."""
    return [(lo, hi, ph) for lo, hi, (p, _, ph, _) in walk(tree, list(LO), list(HI), split_widths(bg))
            if p is not None]


def _inside(S, lo, hi, ph) -> np.ndarray:
    """Which samples lie in the region (box ``lo``/``hi``, split phases ``ph``): exact, as the
    box corners here are dyadic (floats) and a Fraction's float has its sign."""
    x = S["x"]
    m = np.ones(len(x), bool)
    for d in range(2):
        m &= (float(lo[d]) <= x[:, d]) & (x[:, d] <= float(hi[d]))
    for (k, i), p in ph.items():
        z = S["z"][k][:, i]
        m &= (z >= 0) if p else (z <= 0)
    return m


def _assert_sound(bounds, trees, bg, S) -> int:
    """Every recorded leaf bound <= the objective at every sample of its leaf's region (exactly,
    at the samples whose float objective is within 1e-9 of the region's least); returns how many
    (leaf, sample) pairs were compared."""
    regs = [r for t in trees for r in _regions(t, bg)]
    per = len(bounds) // len(regs)
    assert per * len(regs) == len(bounds)
    seen = 0
    for n, (lo, hi, ph) in enumerate(regs):
        m = np.nonzero(_inside(S, lo, hi, ph))[0]
        seen += len(m) * per
        for atom, lb in bounds[n * per:(n + 1) * per]:
            if not len(m):
                continue
            f = S["d"][m] * float(atom.a[0]) - float(atom.b)  # (a = ±(1, -1))
            for s in m[f <= f.min() + 1e-9]:
                assert lb <= _obj(atom, S["y"][s]), (n, ph, float(lb), float(_obj(atom, S["y"][s])))
    return seen


def _tight_b(samples) -> Fraction:
    """The sampled minimum of y0 - y1, less 1/100: a property that holds on the samples and
    that tight leaf bounds nearly prove."""
    return min(y[0] - y[1] for y in samples["y"]) - Fraction(1, 100)


HAND = {  # hand-made shapes (node indices of ``_target``: 1 relu, 2 leaky_relu, 3 relu)
    # a split on the first nonlinear node below a split on the last one, below an input split
    "first_below_last": [["split", 0, "0"], ["relu", 3, 0], ["relu", 1, 2], ["leaf", 0], ["leaf", 0],
                         ["leaf", 0], ["relu", 1, 2], ["leaf", 0], ["leaf", 0]],
    # two elements of one node on a path, then an input split, then a relu split again
    "same_node_twice": [["relu", 2, 1], ["relu", 2, 4], ["leaf", 0], ["split", 1, "1/4"],
                        ["relu", 2, 0], ["leaf", 0], ["leaf", 0], ["leaf", 0], ["leaf", 0]],
    # a leaf's sibling is a split; a split's child splits the same node's other element then an earlier node
    "zigzag": [["relu", 3, 1], ["relu", 2, 2], ["relu", 3, 4], ["leaf", 0], ["relu", 1, 0], ["leaf", 0],
               ["leaf", 0], ["leaf", 0], ["relu", 1, 5], ["leaf", 0], ["split", 0, "-1/2"], ["leaf", 0],
               ["relu", 2, 2], ["leaf", 0], ["leaf", 0]],
}


def _last_first(last: int) -> list:
    """Splits of the last relu node (the network's output on the relu-output net) above splits of
    the first, and an input split between."""
    return [["relu", last, 0], ["relu", 1, 0], ["leaf", 0], ["split", 1, "0"], ["leaf", 0], ["leaf", 0],
            ["relu", last, 1], ["relu", 1, 4], ["leaf", 0], ["leaf", 0], ["leaf", 0]]


def _hand(tree, n_proofs):
    return [["leaf", [[0, "1/1000000"]] * n_proofs] if n == ["leaf", 0] else n for n in tree]


@pytest.mark.parametrize("mode", MODES)
def test_leaf_bounds_sound_on_adversarial_trees(net, mode, monkeypatch):
    """Random and hand-made trees (both splitting kinds mixed at every depth, stable elements,
    leaky_relu and output-relu splits, split multipliers): every leaf bound either replay computes
    is at most the exact objective at each sampled point of the leaf's region."""
    t, samples = net
    bg = t.bg
    spec = _spec(_tight_b(samples))
    rng = np.random.default_rng(1)
    trees = [_hand(t, 1) for t in HAND.values()] + [_hand(_last_first(len(bg.nodes) - 1), 1)]
    trees += [_tree(rng, bg, 6, p, 0.25, 1) for p in (0.1, 0.4, 0.7)]
    if bg.nodes[-1].size == 2:  # (the relu output net: its output node is split somewhere)
        assert any(n[:2] == ["relu", 4] for tr in trees for n in tr)
    seen = 0
    for method in ("crown", "ibp"):
        for tree in trees:
            bounds = _leaf_bounds(monkeypatch, _cert(bg, spec, tree, method), bg, spec, mode)
            seen += _assert_sound(bounds, [tree], bg, samples)
        # two disjuncts' trees with different boxes and splits (one ``states`` memo)
        spec2 = _spec(_tight_b(samples), n_disj=2)
        pair = trees[-2:]
        bounds = _leaf_bounds(monkeypatch, _cert(bg, spec2, {"per_disjunct": pair}, method), bg, spec2, mode)
        seen += _assert_sound(bounds, pair, bg, samples)
    assert seen > 5000


@pytest.mark.parametrize("mode", MODES)
def test_chunks_and_disjuncts_share_no_wrong_parent(net, mode, monkeypatch):
    """More than ``CHUNK`` leaves at one (depth, split node) level, mixed with leaves split at other
    nodes and depths, in two ``per_disjunct`` trees that start alike (the fast replay's ``states``
    memo shares their unsplit states) and differ below, with shared ``arg_slopes``: each leaf's
    bound is sound on its own region."""
    t, samples = net
    bg = t.bg
    spec = _spec(_tight_b(samples), n_disj=2)
    rng = np.random.default_rng(2)
    trees = []  # 2^6 input boxes, then ReLU splits: > CHUNK leaves at (depth 1, node 2)
    for seed in (3, 4):
        r = np.random.default_rng(seed)
        tr: list = []

        def grid(lo, hi, d, t=tr, r=r):
            if d == 0:
                i = int(r.integers(0, 6))  # (an inactive leaf, then a leaf or a random subtree)
                t.extend([["relu", 2, i], ["leaf", [[0, "1/1000000"]]],
                          *_tree(r, bg, 3 * int(r.random() < 0.5), 0.3, 0.2, 1, box=(lo, hi),
                                 path=((2, i),))])
                return
            dim = d % 2
            v = (lo[dim] + hi[dim]) / 2
            t.append(["split", dim, f"{v.numerator}/{v.denominator}"])
            grid(lo, hi[:dim] + (v,) + hi[dim + 1:], d - 1)
            grid(lo[:dim] + (v,) + lo[dim + 1:], hi, d - 1)

        grid(LO, HI, 6)
        trees.append(tr)
    for tr in trees:  # (leaves right below a split of node 2 under 6 input splits: depth 1)
        at = [i for i, (_, _, (p, _, ph, key)) in enumerate(walk(tr, list(LO), list(HI), split_widths(bg)))
              if p is not None and key == (2, next(iter(ph))[1]) and len(ph) == 1]
        assert len(at) > fast_vnn.CHUNK
    slopes = [[1, i, f"{int(rng.integers(0, 5))}/4", None] for i in range(6)]
    entry = {"per_disjunct": trees, "arg_slopes": slopes}
    bounds = _leaf_bounds(monkeypatch, _cert(bg, spec, entry), bg, spec, mode)
    assert _assert_sound(bounds, trees, bg, samples) > 1000


def _same_boxes(k: int, i: int) -> list:
    """A ReLU split, then the same input split under both children: leaves bounded from scratch
    (no prior) whose boxes do not say which side of the split they are on."""
    leaf = ["leaf", [[0, "1/1000000"]]]
    return [["relu", k, i], ["split", 0, "0"], leaf, leaf, ["split", 1, "1/2"], leaf, ["split", 0, "0"],
            leaf, leaf]


@pytest.mark.parametrize("mode", MODES)
def test_disjuncts_with_the_same_boxes_and_other_phases(net, mode, monkeypatch):
    """Two ``per_disjunct`` trees whose unsplit-state chunks have the same boxes but different
    phases (a split on another element above the same input splits): the fast replay's
    ``states`` memo must not hand one tree's states to the other (a memo keyed without the phases
    fails here); every leaf bound is sound."""
    t, samples = net
    bg = t.bg
    seen = 0
    # (3, 1) and (3, 4) are stably active on both nets' boxes: their inactive children's regions
    # are empty, where the clamp pins the element at 0 (the other tree's same boxes are not empty)
    for (k, i), (k2, i2) in (((3, 1), (1, 0)), ((3, 4), (2, 2)), ((1, 0), (1, 3)), ((2, 1), (3, 0))):
        for trees in ([_same_boxes(k, i), _same_boxes(k2, i2)], [_same_boxes(k2, i2), _same_boxes(k, i)]):
            for flip in (False, True):
                spec = _spec(_tight_b(samples), n_disj=2, flip=flip)
                bounds = _leaf_bounds(monkeypatch, _cert(bg, spec, {"per_disjunct": trees}), bg, spec, mode)
                seen += _assert_sound(bounds, trees, bg, samples)
    assert seen > 1000


def _false_spec(samples) -> Spec:
    """Unsafe y0 - y1 <= b with b 1/1000 above the sampled minimum: a sampled point is unsafe."""
    return _spec(_tight_b(samples) + Fraction(1, 100) + Fraction(1, 1000))


@pytest.mark.parametrize("mode", MODES)
def test_false_property_rejected_whatever_the_tree(net, mode):
    """A property a sampled point violates, claimed unsat by hand-made and random trees (deep
    ReLU splits under input splits, multipliers, shared slopes): rejected, on a leaf's bound."""
    t, samples = net
    bg = t.bg
    spec = _false_spec(samples)
    rng = np.random.default_rng(7)
    trees = [_hand(t, 1) for t in HAND.values()] + [_tree(rng, bg, 8, p, 0.1, 1) for p in (0.2, 0.5, 0.8)]
    slopes = [[3, 0, "1/2", None], [1, 1, "1", None, 3]]
    entries = trees + [{"per_disjunct": [trees[-1]], "arg_slopes": slopes}]
    for entry in entries:
        v = check_vnn(_cert(bg, spec, entry), bg, spec, mode=mode)
        assert not v.ok and "recomputed bound" in v.reason, v.reason


@pytest.mark.parametrize("mode", MODES)
def test_claims_raised_above_a_leaf_sample_rejected(net, mode, monkeypatch):
    """Per leaf: a tree whose leaves claim what the replay computes (so it is accepted), with one
    leaf's claim raised just above the objective's minimum over that leaf's samples: rejected.
    A sound replay computes at most that minimum on every leaf, whatever the parent it uses."""
    t, samples = net
    bg = t.bg
    b = _tight_b(samples) - 1  # (every leaf bound positive: a true property the tree proves)
    spec = _spec(b)
    tried = 0
    for tree in [_hand(t, 1) for t in HAND.values()]:
        tried += _raise_each(monkeypatch, tree, bg, spec, samples, mode)
    assert tried >= 8


def _raise_each(monkeypatch, tree, bg, spec, samples, mode) -> int:
    """``test_claims_raised_above_a_leaf_sample_rejected`` on one tree; returns how many leaves."""
    with monkeypatch.context() as m:
        bounds = _leaf_bounds(m, _cert(bg, spec, tree), bg, spec, mode)
    assert all(lb > 0 for _, lb in bounds)
    pos = [p for p, n in enumerate(tree) if n[0] == "leaf"]
    honest = copy.deepcopy(tree)
    for p, (_, lb) in zip(pos, bounds):
        honest[p][1][0][1] = str(lb)
    assert check_vnn(_cert(bg, spec, honest), bg, spec, mode=mode).ok
    tried = 0
    for p, (lo, hi, ph) in zip(pos, _regions(tree, bg)):
        m = np.nonzero(_inside(samples, lo, hi, ph))[0]
        vals = [_obj(spec.regions[0].disjuncts[0][0], samples["y"][s]) for s in m]
        if not vals:
            continue
        tried += 1
        bad = copy.deepcopy(honest)
        bad[p][1][0][1] = str(min(vals) + Fraction(1, 10 ** 9))
        v = check_vnn(_cert(bg, spec, bad), bg, spec, mode=mode)
        assert not v.ok and "recomputed bound" in v.reason, v.reason
    return tried


@pytest.mark.parametrize("mode", MODES)
def test_search_certificates_accepted(net, mode):
    """The search's certificate for a true property a little inside the sampled minimum (ReLU or
    input splits needed) replays in both modes; the same claim with b raised past a sample is
    refused."""
    t, samples = net
    bg = t.bg
    spec = _spec(_tight_b(samples) - Fraction(1, 20))
    res = general.verify_target(t, spec, timeout=60)
    assert res.verdict == "unsat"
    assert check_vnn(res.cert, bg, spec, mode=mode).ok


@pytest.fixture(scope="module")
def cnn_cert():
    """``tests/test_graph_relu_bab``'s CNN at radius 0.1: the search's ReLU-split certificate
    (children bounded from their parents), and the radius-0.105 property, which the search
    refutes with a counterexample (so it is false)."""
    from tests.test_graph_relu_bab import _spec as cnn_spec
    from tests.test_graph_relu_bab import cnn_instance

    _, t, x0, lab = cnn_instance()
    spec = cnn_spec(x0, lab, 0.1)
    res = general.verify_target(t, spec, timeout=60)
    assert res.verdict == "unsat"
    false = cnn_spec(x0, lab, 0.105)
    sat = general.verify_target(t, false, timeout=60)
    assert sat.verdict == "sat" and check_vnn(sat.cert, t.bg, false).ok  # (the checker's own point test)
    return t, spec, res.cert, false


@pytest.mark.parametrize("mode", MODES)
def test_search_relu_split_certificate_accepted_and_transplant_rejected(cnn_cert, mode):
    """The search's certificate with ReLU splits (several levels) replays in both modes; its trees
    and claims moved onto the false radius-0.105 property (the same ReLU splits, a larger box) are
    rejected: the children's parent states are those of the larger box."""
    t, spec, cert, false = cnn_cert
    trees = cert["regions"][0]["per_disjunct"]
    # (22 splits when written; 7 since the children's α/β start from their parents', impoval)
    assert sum(n[0] == "relu" for tr in trees for n in tr) >= 5
    depth = max(len(ph) for tr in trees for _, _, (p, _, ph, _) in walk(tr, list(spec.regions[0].lo),
                list(spec.regions[0].hi), split_widths(t.bg)) if p is not None)
    assert depth >= 3
    assert check_vnn(cert, t.bg, spec, mode=mode).ok
    bad = {**copy.deepcopy(cert), "property": false.digest()}
    v = check_vnn(bad, t.bg, false, mode=mode)
    assert not v.ok and "recomputed bound" in v.reason, v.reason


@pytest.mark.parametrize("mode", MODES)
def test_malformed_split_bookkeeping_refused(net, mode):
    """Splits the walker must refuse whatever the claims: one element twice on a path (its
    parent's state would already be clamped the other way), a node that is not splittable (the
    input, a node index past the graph), an element past the node, a leaf with children."""
    t, samples = net
    bg = t.bg
    spec = _spec(_tight_b(samples) - 1)  # (a true property: only the tree's form is at fault)
    leaf = ["leaf", [[0, "1/1000000"]]]
    good = [["relu", 2, 1], leaf, leaf]
    assert check_vnn(_cert(bg, spec, good), bg, spec, mode=mode).ok
    bads = [[["relu", 2, 1], ["relu", 2, 1], leaf, leaf, leaf],
            [["relu", 2, 1], leaf, ["split", 0, "0"], ["relu", 2, 1], leaf, leaf, leaf],
            [["relu", 0, 0], leaf, leaf], [["relu", len(bg.nodes), 0], leaf, leaf],
            [["relu", 2, bg.nodes[2].size], leaf, leaf], [["relu", 2, 1], leaf, leaf, leaf],
            [["relu", 2, 1], leaf]]
    for bad in bads:
        v = check_vnn(_cert(bg, spec, bad), bg, spec, mode=mode)
        assert not v.ok, bad
