"""ReLU-split subproblems start from their parent's intermediate bounds (the engines' ``prior``):
in the search (verify/graph_relu.py, star.py) and in both replays (certificates/graph_vnn.py,
fast_vnn.py), which recompute the parent's state themselves from the tree (``bounds.walk``).

The reference for soundness is exact evaluation (``engine.point``: exact rationals on a ReLU net)
at points sampled in the child's region (the box, and the split element's argument on its side)."""

from __future__ import annotations

import copy
from fractions import Fraction

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.certificates import engine
from torchlean.certificates import fast_engine as fe
from torchlean.certificates.bounds import check_vnn, walk
from torchlean.verify import engines, table

N = 9  # 81 inputs: the general search splits ReLUs, not inputs


@pytest.fixture(scope="module")
def net():
    tl.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(64, 12), nn.ReLU(),
                          nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 2))
    t = table.target(tl.trace(model, tl.zeros(1, 1, N, N)))
    x0 = np.random.default_rng(3).uniform(0, 1, N * N)
    return t, x0


def _box(x0, eps):
    return np.clip(x0 - eps, 0, 1)[None], np.clip(x0 + eps, 0, 1)[None]


def _relus(bg):
    return [k for k, n in enumerate(bg.nodes) if n.kind == "fn" and n.fn == "relu"]


def _samples(bg, lo, hi, k, i, phase, n=300, seed=0):
    """Exact argument values {node: [(value per element)]} at points of the child region: random
    points and random corners of the box, kept where element i of node k's argument is on the
    phase's side (exactly evaluated)."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(lo[0], hi[0], (n, lo.shape[1]))
    pts[: n // 3] = np.where(rng.random((n // 3, lo.shape[1])) < 0.5, lo[0], hi[0])
    out = []
    for x in pts:
        L, U = engine.point(bg, [Fraction(float(v)) for v in x])
        vals = {j: [engine.form_bounds(f, L, U)[0] for f in bg.nodes[j].args] for j in _relus(bg)}
        z = vals[k][i]
        if (z >= 0) if phase else (z <= 0):
            out.append(vals)
    return out


def _cases(bg, st):
    """(node, element) pairs unstable at the root, a few per relu node."""
    out = []
    for k in _relus(bg):
        al, au = st.arg[k]
        unst = np.nonzero((al[0] < 0) & (au[0] > 0))[0]
        out += [(k, int(i)) for i in unst[:3]]
    return out


def test_prior_bounds_fast_engine(net):
    """Fast engine: a child's bounds with the parent's prior contain every exactly evaluated
    point of the child's region; they equal the bounds without it up to the split node included
    (a root's child: the parent's reused there equal the ones a from-scratch pass recomputes, then
    clamps) and are no looser than the parent's anywhere."""
    t, x0 = net
    bg, fg = t.bg, fe.compiled(t.bg)
    lo, hi = _box(x0, 0.08)
    par = fe.forward(fg, lo, hi, "crown")
    cases = _cases(bg, par)
    assert len({k for k, _ in cases}) >= 2  # splits on more than one relu node
    seen = 0
    for k, i in cases:
        for phase in (0, 1):
            ph = {k: np.full((1, bg.nodes[k].size), -1, dtype=np.int8)}
            ph[k][0, i] = phase
            w = fe.forward(fg, lo, hi, "crown", ph, prior=(fe.gather([(par, 0)]), np.array([k])))
            wo = fe.forward(fg, lo, hi, "crown", ph)
            for j in _relus(bg):
                (a1, b1), (a0, b0), (ap, bp) = w.arg[j], wo.arg[j], par.arg[j]
                if j <= k:
                    assert (a1 == a0).all() and (b1 == b0).all()
                assert (a1 >= ap).all() and (b1 <= bp).all()
            for vals in _samples(bg, lo, hi, k, i, phase, n=60, seed=k * 100 + i):
                seen += 1
                for j, vs in vals.items():
                    a, b = w.arg[j]
                    assert all(a[0, r] <= v <= b[0, r] for r, v in enumerate(vs)), (k, i, phase, j)
    assert seen > 50


def test_prior_bounds_batched_parents(net):
    """Boxes of one batch from different parents and split nodes (``fast_engine.gather``, a
    start per box): each box's bounds contain its own region's exact points and are no looser
    than its parent's."""
    t, x0 = net
    bg, fg = t.bg, fe.compiled(t.bg)
    lo0, hi0 = _box(x0, 0.08)
    lo1, hi1 = _box(x0, 0.05)
    par = fe.forward(fg, np.concatenate([lo0, lo1]), np.concatenate([hi0, hi1]), "crown")
    kids = []
    for b, (lo, hi) in enumerate(((lo0, hi0), (lo1, hi1))):
        one = engines.select(par, b)
        kids += [(b, lo, hi, k, i, p) for k, i in _cases(bg, one)[::2] for p in (0, 1)]
    relus = _relus(bg)
    ph = {k: np.full((len(kids), bg.nodes[k].size), -1, dtype=np.int8) for k in relus}
    for r, (_, _, _, k, i, p) in enumerate(kids):
        ph[k][r, i] = p
    prior = (fe.gather([(par, b) for b, *_ in kids]), np.array([k for *_, k, _, _ in kids]))
    los, his = (np.concatenate([kid[1 + s] for kid in kids]) for s in (0, 1))
    st = fe.forward(fg, los, his, "crown", ph, prior=prior)
    for r, (b, lo, hi, k, i, p) in enumerate(kids):
        for j in relus:
            assert (st.arg[j][0][r] >= par.arg[j][0][b]).all() and (st.arg[j][1][r] <= par.arg[j][1][b]).all()
        for vals in _samples(bg, lo, hi, k, i, p, n=20, seed=r):
            for j, vs in vals.items():
                assert all(st.arg[j][0][r, e] <= v <= st.arg[j][1][r, e] for e, v in enumerate(vs))


def test_prior_bounds_exact_engine(net):
    """Exact engine: the same properties with ``engine.forward``'s prior (equal bounds up to the
    split node included, exactly)."""
    t, x0 = net
    bg = t.bg
    lo, hi = _box(x0, 0.08)
    elo, ehi = [Fraction(float(v)) for v in lo[0]], [Fraction(float(v)) for v in hi[0]]
    par = engine.forward(bg, elo, ehi, "crown")
    fpar = fe.forward(fe.compiled(bg), lo, hi, "crown")
    for k, i in _cases(bg, fpar)[1::3]:
        for phase in (0, 1):
            w = engine.forward(bg, elo, ehi, "crown", {(k, i): phase}, prior=(par, k))
            wo = engine.forward(bg, elo, ehi, "crown", {(k, i): phase})
            for j in _relus(bg):
                for r, ((a1, b1), (a0, b0), (ap, bp)) in enumerate(zip(w.arg[j], wo.arg[j], par.arg[j])):
                    if j <= k:
                        assert a1 == a0 and b1 == b0
                    if (j, r) != (k, i):
                        assert a1 >= ap and b1 <= bp
            for vals in _samples(bg, lo, hi, k, i, phase, n=40, seed=k + i):
                for j, vs in vals.items():
                    assert all(a <= v <= b for (a, b), v in zip(w.arg[j], vs))


def test_walk_names_parents_and_splits():
    """``bounds.walk`` yields every node in tree order with its parent and the ReLU split that
    made it (the replay's prior), and the leaves' boxes and phases."""
    tree = [["split", 0, "1/2"], ["relu", 1, 0], ["leaf", []], ["leaf", [1]], ["leaf", [2]]]
    lo, hi = [Fraction(0), Fraction(0)], [Fraction(1), Fraction(1)]
    items = list(walk(tree, lo, hi, (0, 1)))
    assert [it[2][1] for it in items] == [-1, 0, 1, 1, 0]
    assert [it[2][3] for it in items] == [None, None, (1, 0), (1, 0), None]
    assert [it[2][0] for it in items] == [None, None, [], [1], [2]]
    assert [it[2][2] for it in items] == [{}, {}, {(1, 0): 0}, {(1, 0): 1}, {}]
    assert items[4][0][0] == 0.5 and items[2][1][0] == 0.5


@pytest.fixture(scope="module")
def proved():
    """tests/test_graph_relu_bab.py's instance: root CROWN fails, ReLU splits prove it."""
    from tests.test_graph_relu_bab import proved_instance

    t, spec, res = proved_instance()
    assert res.verdict == "unsat"
    return t, spec, res


def _deep_leaf(tree, t, spec):
    """Position of a leaf under at least two ReLU splits."""
    r = spec.regions[0]
    widths = (10**6,) * len(t.bg.nodes)
    for pos, (_, _, (proofs, _, phases, _)) in enumerate(walk(tree, list(r.lo), list(r.hi), widths)):
        if proofs is not None and len(phases) >= 2:
            return pos
    raise AssertionError("no leaf under two ReLU splits")


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_split_certificates_replay_and_mutations_fail(proved, mode):
    """The search's ReLU-split certificate (children bounded from their parents) replays in both
    modes; a raised claim on a deep leaf, a dropped subtree and a split moved to another element
    of a node are rejected."""
    t, spec, res = proved
    v = check_vnn(res.cert, t.bg, spec, mode=mode)
    assert v.ok, v.reason
    tree = res.cert["regions"][0]["per_disjunct"][0]
    pos = _deep_leaf(tree, t, spec)
    bad = copy.deepcopy(res.cert)
    leaf = bad["regions"][0]["per_disjunct"][0][pos]
    leaf[1][0][1] = str(Fraction(leaf[1][0][1]) * 1000 + 1)
    v = check_vnn(bad, t.bg, spec, mode=mode)
    assert not v.ok and "recomputed bound" in v.reason
    bad = copy.deepcopy(res.cert)
    del bad["regions"][0]["per_disjunct"][0][pos]
    assert not check_vnn(bad, t.bg, spec, mode=mode).ok
    # every ReLU split moved to an element no search split: the leaves' regions change
    bad = copy.deepcopy(res.cert)
    nodes = bad["regions"][0]["per_disjunct"][0]
    used = {(n[1], n[2]) for n in nodes if n[0] == "relu"}
    for n in nodes:
        if n[0] == "relu":
            n[2] = next(i for i in range(t.bg.nodes[n[1]].size) if (n[1], i) not in used)
    assert not check_vnn(bad, t.bg, spec, mode=mode).ok


def test_children_one_pass_per_split_node_from_the_split_node(net):
    """``graph_relu.children`` (the search's batch state): one ``forward`` per split node, each
    starting at its split node, whose argument bounds are the parent's with the split element's
    clamped at 0 (not recomputed), and every node's bounds equal, to float noise, the engine's
    single pass from the parents in one mixed batch (what the checker's replay computes),
    for children of a root and grandchildren split at other nodes in the same batch; each box's
    bounds contain its region's exactly evaluated points."""
    from torchlean.certificates.fast_vnn import phase_arrays
    from torchlean.verify import graph_relu as gr

    t, x0 = net
    bg, fg = t.bg, fe.compiled(t.bg)
    lo, hi = _box(x0, 0.08)
    par = fe.forward(fg, lo, hi, "crown")
    cases = _cases(bg, par)
    paths = [{(k, i): p} for k, i in cases for p in (0, 1)]
    parents = [(par, 0, k) for k, _ in cases for _ in (0, 1)]
    B = len(paths)
    kids = gr.children(fg, np.repeat(lo, B, 0), np.repeat(hi, B, 0), phase_arrays(bg, paths), parents)
    # grandchildren: a second split on a node other than the first one's, in one mixed batch
    relus = _relus(bg)
    paths2, parents2 = [], []
    for b, (path, (_, _, k)) in enumerate(zip(paths, parents)):
        k2 = relus[(relus.index(k) + 1 + b % 2) % len(relus)]
        al, au = kids.arg[k2][0][b], kids.arg[k2][1][b]
        unst = [int(i) for i in np.nonzero((al < 0) & (au > 0))[0] if (k2, int(i)) not in path]
        if unst:
            for p in (0, 1):
                paths2.append({**path, (k2, unst[0]): p})
                parents2.append((kids, b, k2))
    assert len({k for *_, k in parents2}) >= 2
    seen = 0
    for ps, pars in ((paths, parents), (paths2, parents2)):
        n = len(ps)
        ph = phase_arrays(bg, ps)
        los, his = np.repeat(lo, n, 0), np.repeat(hi, n, 0)
        calls = []

        def forward(f, a, b, phases, prior, calls=calls):
            calls.append((prior[1].copy(), len(a)))
            return fe.forward(f, a, b, "crown", phases, prior=prior)

        got = gr.children(fg, los, his, ph, pars, forward)
        starts = sorted({k for *_, k in pars})
        want = [(k, sum(k == kk for *_, kk in pars)) for k in starts]
        assert [(int(s[0]), len(s)) for s, _ in calls] == want
        ref = fe.forward(fg, los, his, "crown", ph, prior=gr.prior_of(pars))
        for j in range(1, len(bg.nodes)):
            for x, y in ((got.L[j], ref.L[j]), (got.U[j], ref.U[j])) + (
                    () if ref.arg[j] is None else tuple(zip(got.arg[j], ref.arg[j]))):
                assert np.allclose(x, y, rtol=1e-12, atol=1e-12), j
        for r, ((s, b, k), path) in enumerate(zip(pars, ps)):
            al, au = s.arg[k][0][b].copy(), s.arg[k][1][b].copy()  # (the parent's, clamped by hand)
            for i in [i for kq, i in path if kq == k]:  # (an element the parent split: already clamped)
                if path[k, i]:
                    al[i] = max(al[i], 0.0)
                    au[i] = max(au[i], al[i])
                else:
                    au[i] = min(au[i], 0.0)
                    al[i] = min(al[i], au[i])
            assert (got.arg[k][0][r] == al).all() and (got.arg[k][1][r] == au).all()
            if r % 3 == 0:  # (points of the box on the first split's side, kept on every split's)
                (k0, i0), p0 = next(iter(path.items()))
                for vals in _samples(bg, lo, hi, k0, i0, p0, n=30, seed=r):
                    if all(_side(vals, path, kq, iq) for kq, iq in path):
                        seen += 1
                        for j, vs in vals.items():
                            a, b = got.arg[j][0][r], got.arg[j][1][r]
                            assert all(a[e] <= v <= b[e] for e, v in enumerate(vs))
    assert seen > 40


def _side(vals, path, k, i):
    """Whether exactly evaluated argument values lie on the split's side for element i of node k."""
    z = vals[k][i]
    return z >= 0 if path[k, i] else z <= 0


def _end(tree, pos):
    """One past the last entry of the preorder subtree that starts at ``pos``."""
    need = 1
    while need:
        need += 1 if tree[pos][0] in ("split", "relu") else -1
        pos += 1
    return pos


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_split_sign_and_split_node_mutations_fail(proved, mode):
    """The replay keeps the parent's argument bounds at the split node, clamped by the split
    (h-replay): swapping the two subtrees of every ReLU split (each claim now stands on the other
    side of its split) is rejected in both modes, and so is every split of the deepest split node
    moved to the same element of another relu node (the children's reused bounds are those of
    the node they name, not of the one the search split)."""
    t, spec, res = proved
    tree = res.cert["regions"][0]["per_disjunct"][0]
    bad = copy.deepcopy(res.cert)
    t2 = bad["regions"][0]["per_disjunct"][0]
    for pos in range(len(t2)):  # (preorder: swapping at pos keeps the later positions' subtrees whole)
        if t2[pos][0] == "relu":
            a = _end(t2, pos + 1)
            b = _end(t2, a)
            t2[pos + 1:b] = t2[a:b] + t2[pos + 1:a]
    assert t2 != tree
    assert not check_vnn(bad, t.bg, spec, mode=mode).ok
    relus = _relus(t.bg)
    deep = max(n[1] for n in tree if n[0] == "relu")
    other = next(k for k in relus if k != deep and t.bg.nodes[k].size >= t.bg.nodes[deep].size)
    bad = copy.deepcopy(res.cert)
    t3 = bad["regions"][0]["per_disjunct"][0]
    for n in t3:
        if n[0] == "relu" and n[1] == deep:
            n[1] = other
        for p in n[1] if n[0] == "leaf" else []:  # (the split multipliers move with their splits)
            for m in p[2].get("mult", []) if len(p) == 3 else []:
                m[0] = other if m[0] == deep else m[0]
    v = check_vnn(bad, t.bg, spec, mode=mode)
    assert not v.ok and "recomputed bound" in v.reason, v.reason
