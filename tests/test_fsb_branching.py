"""The ReLU-split search's "fsb" branching choice (verify/branching.py): its candidates, its child
estimates against a direct recomputation, and the trees it builds replayed by the checker.

The network is test_graph_relu_bab's small CNN (81 inputs, ReLU splits only)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from tests.test_graph_relu_bab import _spec, cnn_instance
from torchlean.certificates import fast_engine as fe
from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.fast_functions import FAST
from torchlean.verify import alpha, branching, general, graph_relu


@pytest.fixture(scope="module")
def parent():
    """The CNN's region at radius 0.09: its CROWN state, back-substitution, objective rows, and a
    random α in [0, 1] at every unstable element (what the search's optimiser would have chosen)."""
    _, t, x0, lab = cnn_instance()
    spec = _spec(x0, lab, 0.09)
    bg = t.bg
    fg = fe.compiled(bg)
    lo, hi = fe.boxes([spec.regions[0].lo], [spec.regions[0].hi])
    st = fe.forward(fg, lo, hi, "crown")
    bs = alpha.Backsub.from_fast(bg, fg, st, FAST)
    dj = graph_relu.Disjunct(bg, spec.regions[0], 0)
    relus = graph_relu.relu_nodes(bg)
    rng = np.random.default_rng(1)
    R = dj.lam0.shape[0]
    alphas = {}
    for k, (aL, _) in bs.default_slopes(R).items():
        unst = (st.arg[k][0] < 0) & (st.arg[k][1] > 0)
        alphas[k] = np.where(unst[:, None, :], rng.uniform(0, 1, aL.shape), aL)
    return t, spec, fg, st, bs, dj, relus, alphas


def _direct(bg, fg, st, dj, alphas, mult, k, i, side, q):
    """The child's bound recomputed from scratch: the parent's argument bounds with element (k, i)
    clamped at 0, a new ``Backsub`` built from them, the element's slopes at the exact side and
    its multiplier q (signed by the side) added to ``mult``."""
    arg = {kk: (np.array(st.arg[kk][0]), np.array(st.arg[kk][1])) for kk, n in enumerate(bg.nodes)
           if n.kind == "fn"}
    if side:
        arg[k][0][0, i] = 0.0
    else:
        arg[k][1][0, i] = 0.0
    child = alpha.Backsub.from_fast(bg, fg, types.SimpleNamespace(L=st.L, U=st.U, arg=arg), FAST)
    R = dj.lam0.shape[0]
    slopes = {kk: (a.copy(), np.broadcast_to(op["du"], a.shape).copy())
              for kk, a in alphas.items() for op in child.ops if op["k"] == kk}
    slopes[k][0][0, :, i] = slopes[k][1][0, :, i] = float(side)
    mu = {kk: m.copy() for kk, m in mult.items()}
    mu.setdefault(k, np.zeros((1, R, bg.nodes[k].size)))[0, :, i] = q if side else -q
    return child.bound(dj.lam0, dj.c0, slopes, mult=mu)[0][0]


def test_estimates_match_a_direct_recomputation(parent):
    t, spec, fg, st, bs, dj, relus, alphas = parent
    # one split already on the path, with a multiplier, to check the old splits' terms are kept
    k0 = relus[0]
    i0 = int(np.nonzero((st.arg[k0][0][0] < 0) & (st.arg[k0][1][0] > 0))[0][0])
    mult = {k0: np.zeros((1, dj.lam0.shape[0], t.bg.nodes[k0].size))}
    mult[k0][0, :, i0] = -0.3  # (inactive side: sign -1)
    unst = {k: np.nonzero((st.arg[k][0][0] < 0) & (st.arg[k][1][0] > 0))[0] for k in relus}
    cands = [(k, int(i)) for k in relus for i in unst[k][:3] if (k, int(i)) != (k0, i0)]
    assert len(cands) >= 4
    node = np.array([k for k, _ in cands])
    elem = np.array([i for _, i in cands])
    qs = np.array([[[0.0], [0.7]]] * len(cands))  # (n, Q=2, R=1)
    est = branching.fsb_estimates(bs, dj.lam0, dj.c0, alphas, mult, np.zeros(len(cands), int), node, elem,
                                  qs, alpha.MAX_DENSE)
    assert est.shape == (len(cands), 2, 2, 1)
    for c, (k, i) in enumerate(cands):
        for side in (0, 1):
            for j, q in enumerate((0.0, 0.7)):
                want = _direct(t.bg, fg, st, dj, alphas, mult, k, i, side, q)
                np.testing.assert_allclose(est[c, side, j], want, rtol=1e-9, atol=1e-9)
    # and the parent is unchanged by the estimates (its arrays are copied, not written)
    again = alpha.Backsub.from_fast(t.bg, fg, st, FAST)
    du = {op["k"]: op["du"] for op in bs.ops if op["kind"] == "fn"}
    slopes = {k: (a, np.broadcast_to(du[k], a.shape)) for k, a in alphas.items()}
    np.testing.assert_array_equal(bs.bound(dj.lam0, dj.c0, slopes, mult=mult)[0],
                                  again.bound(dj.lam0, dj.c0, slopes, mult=mult)[0])


def test_picks_are_unstable_unsplit_elements(parent):
    t, spec, fg, st, bs, dj, relus, alphas = parent
    # two boxes of the same region: one without splits, one with the top-scored element split
    B = 2
    lo, hi = fe.boxes([spec.regions[0].lo] * B, [spec.regions[0].hi] * B)
    stb = fe.forward(fg, lo, hi, "crown")
    bsb = alpha.Backsub.from_fast(t.bg, fg, stb, FAST)
    R = dj.lam0.shape[0]
    bsb.bound(dj.lam0, dj.c0, bsb.default_slopes(R), want_grad=True)
    lam = dict(bsb.lk)
    l, u = {k: stb.arg[k][0] for k in relus}, {k: stb.arg[k][1] for k in relus}
    score = {k: np.maximum(-l[k], 0) * np.maximum(u[k], 0) / np.maximum(u[k] - l[k], 1e-30)
             * np.abs(np.minimum(lam[k][:, 0], 0)) for k in relus}
    node, elem = branching.relu_candidates(score, [{}, {}], 1)
    top = (int(node[0, 0]), int(elem[0, 0]))
    paths = [{}, {top: 0}]
    alphas_b = {k: np.repeat(a, B, 0) for k, a in alphas.items()}
    par, _ = bsb.bound(dj.lam0, dj.c0, branching._slopes(bsb, alphas_b, R))  # (the parent's bound)
    picks = branching.fsb_picks(bsb, dj.lam0, dj.c0, alphas_b, {}, par, score, paths, np.arange(B),
                                alpha.MAX_DENSE, lam, k=4)
    assert set(picks) == {0, 1}
    for b, (k, i) in picks.items():
        assert k in relus
        assert stb.arg[k][0][b, i] < 0 < stb.arg[k][1][b, i]  # unstable in that box
        assert (k, i) not in paths[b]  # not split already
        node, elem = branching.relu_candidates(score, [paths[b]], 4)
        assert (k, i) in set(zip(node[0].tolist(), elem[0].tolist()))  # one of the box's candidates


@pytest.mark.parametrize("choice,linear", [("fsb", True), ("fsb", False), ("babsr", True)])
def test_trees_replay(choice, linear, monkeypatch):
    """Each choice's tree proves the CNN's region and the checker accepts its certificate."""
    monkeypatch.setattr(branching, "RELU_CHOICE", choice)
    monkeypatch.setattr(branching, "FSB_LINEAR", linear)
    _, t, x0, lab = cnn_instance()
    spec = _spec(x0, lab, 0.09)
    res = general.verify_target(t, spec, timeout=60)
    assert res.verdict == "unsat" and res.stats["splits"] > 0
    assert check_vnn(res.cert, t.bg, spec, mode="fast").ok


def test_linear_estimates_are_first_order(parent):
    """``fsb_linear``: the parent's bound plus the candidate term's change times the derivative:
    equal to the recomputed estimate wherever no other element's line changes side, which on this
    small CNN holds for half the candidates' children without a new multiplier."""
    t, spec, fg, st, bs, dj, relus, alphas = parent
    unst = {k: np.nonzero((st.arg[k][0][0] < 0) & (st.arg[k][1][0] > 0))[0] for k in relus}
    cands = [(k, int(i)) for k in relus for i in unst[k]]
    node, elem = np.array([k for k, _ in cands]), np.array([i for _, i in cands])
    boxes = np.zeros(len(cands), int)
    qs = np.array([[[0.0], [0.5]]] * len(cands))
    exact = branching.fsb_estimates(bs, dj.lam0, dj.c0, alphas, {}, boxes, node, elem, qs, alpha.MAX_DENSE)
    lin = branching.fsb_linear(bs, dj.lam0, dj.c0, alphas, {}, boxes, node, elem, qs)
    same = np.isclose(lin[:, :, 0], exact[:, :, 0], rtol=1e-7, atol=1e-9)  # (no new multiplier)
    assert same.mean() >= 0.3  # (half of them here)
    # where they differ, the first-order value is the larger one here (what the linear
    # estimate misses is the lines and input corners that change side)
    assert (lin >= exact - 1e-9).all()
