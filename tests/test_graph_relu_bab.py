"""ReLU-split branch and bound on general graphs (verify/graph_relu.py) and the split multipliers
("mult") of graph certificates (certificates/graph_vnn.py, engine.mult_form), both replay modes.

The network is a small CNN built and traced with torchlean (81 inputs: more than general.py splits
inputs for), so the only way to a verdict past root CROWN/α-CROWN is splitting hidden neurons."""

from __future__ import annotations

import copy
import functools
from fractions import Fraction

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.certificates import engine
from torchlean.certificates import fast_engine as fe
from torchlean.certificates.bounds import check_vnn, walk
from torchlean.certificates.graph_vnn import objective_forms, split_widths
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.verify import alpha, engines, general, graph_relu, table

N = 9  # input side: 81 inputs


def cnn_instance():
    """(model, target, centre, label): the small CNN whose robustness at radius 0.09 root CROWN
    cannot prove and ReLU splits can (also used by test_split_prior and test_fast_leaf_batch)."""
    tl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(64, 16), nn.ReLU(),
                          nn.Linear(16, 2))
    t = table.target(tl.trace(model, tl.zeros(1, 1, N, N)))
    x0 = np.random.default_rng(0).uniform(0, 1, N * N)
    lab = int(t.ex.forward(x0[None])[0].argmax())
    return model, t, x0, lab


@pytest.fixture(scope="module")
def net():
    return cnn_instance()


def _spec(x0, lab, eps):
    """Unsafe: y_lab - y_other <= 0 on the L-inf ball of radius eps (clipped to [0, 1])."""
    lo = tuple(Fraction(float(max(0.0, v - eps))) for v in x0)
    hi = tuple(Fraction(float(min(1.0, v + eps))) for v in x0)
    a = [Fraction(0)] * 2
    a[lab], a[1 - lab] = Fraction(1), Fraction(-1)
    return Spec(N * N, 2, (Region(lo, hi, ((Atom(tuple(a), Fraction(0), False),),)),))


@functools.cache
def proved_instance():
    """(target, spec, result): ``cnn_instance`` at radius 0.1 verified by ReLU splitting, once per
    process (test_split_prior and test_fast_leaf_batch read the same certificate; tests copy it
    before mutating it). (At 0.09 the children's α/β, warm-started from their parents'
    (``graph_relu.WARM``), prove every leaf without β: no multipliers to test.)"""
    _, t, x0, lab = cnn_instance()
    spec = _spec(x0, lab, 0.1)
    return t, spec, general.verify_target(t, spec, timeout=60)


@pytest.fixture(scope="module")
def proved():
    return proved_instance()


def test_root_crown_fails_and_relu_splits_prove_it(net, proved):
    _, t, x0, lab = net
    t, spec, res = proved
    assert t.bg.n_in > general.INPUT_SPLIT_MAX  # no input splitting on this graph
    r = spec.regions[0]
    C = np.zeros((1, 2))
    C[0, lab], C[0, 1 - lab] = 1, -1
    lo, hi = fe.boxes([r.lo], [r.hi])
    assert engines.fast_crown(fe.compiled(t.bg), lo, hi, C=C)[0][0, 0] < 0  # the root bound does not prove it
    exact_root = engines.exact_crown(t.bg, r.lo, r.hi, C=[[Fraction(int(v)) for v in C[0]]])[0][0]
    assert exact_root < 0
    assert res.verdict == "unsat" and res.stats["splits"] > 0
    tree = res.cert["regions"][0]["per_disjunct"][0]
    assert any(n[0] == "relu" for n in tree)
    assert any("mult" in p[2] for n in tree if n[0] == "leaf" for p in n[1] if len(p) == 3)
    for mode in ("exact", "fast"):
        v = check_vnn(res.cert, t.bg, spec, mode=mode)
        assert v.ok, v.reason


def _leaf_with_mult(cert):
    tree = cert["regions"][0]["per_disjunct"][0]
    for pos, n in enumerate(tree):
        if n[0] == "leaf" and len(n[1][0]) == 3 and "mult" in n[1][0][2]:
            return tree, pos
    raise AssertionError("no leaf with multipliers")


def test_multipliers_raise_the_bound(proved):
    """β is not decoration: on some leaf the exact bound with the recorded multipliers is higher
    than without them (the same slopes)."""
    t, spec, res = proved
    region = spec.regions[0]
    tree = res.cert["regions"][0]["per_disjunct"][0]
    forms, _ = objective_forms(t.bg, region, [[(0,)]])
    gains = []
    for lo, hi, (proofs, _, phases, _) in walk(tree, list(region.lo), list(region.hi), split_widths(t.bg)):
        if proofs is None:
            continue
        ex = proofs[0][2] if len(proofs[0]) == 3 else {}
        if "mult" not in ex:
            continue
        mult = {(k, i): Fraction(q) for k, i, q in ex["mult"]}
        st = engine.forward(t.bg, lo, hi, "crown", phases)
        without = engine.best_backsub(st, forms[0])
        with_m = engine.best_backsub(st, engine.mult_form(t.bg, forms[0], mult, phases))
        gains.append(with_m - without)
    assert gains and max(gains) > 0


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("mutation", ["negative", "unsplit", "too_large", "wrong_node", "input_node",
                                      "malformed", "no_extras_key"])
def test_mutated_multipliers_are_rejected(proved, mode, mutation):
    t, spec, res = proved
    cert = copy.deepcopy(res.cert)
    tree, pos = _leaf_with_mult(cert)
    ex = tree[pos][1][0][2]
    k, i, q = ex["mult"][0]
    path = _path_to(tree, pos)
    if mutation == "negative":
        ex["mult"][0][2] = "-1/1000"
    elif mutation == "unsplit":  # an element of the same node that no split on the path names
        free = next(j for j in range(t.bg.nodes[k].size) if (k, j) not in path)
        ex["mult"][0][:2] = [k, free]
    elif mutation == "too_large":  # valid, but the bound it gives misses the claim
        ex["mult"][0][2] = "1000000"
    elif mutation == "wrong_node":  # the other relu node, same element index
        other = next(kk for kk in graph_relu.relu_nodes(t.bg) if kk != k)
        ex["mult"][0][0] = other
    elif mutation == "input_node":
        ex["mult"][0][0] = 0
    elif mutation == "malformed":
        ex["mult"][0] = [k, i]
    else:
        tree[pos][1][0][2] = {"beta": ex["mult"]}
    v = check_vnn(cert, t.bg, spec, mode=mode)
    assert not v.ok, mutation


def _path_to(tree, target):
    """The split path {(node, i): phase} of the tree entry at ``target`` (preorder)."""
    stack, pos = [{}], 0
    while stack:
        path = stack.pop()
        n = tree[pos]
        if pos == target:
            return path
        pos += 1
        if n[0] == "relu":
            key = (n[1], n[2])
            stack += [{**path, key: 1}, {**path, key: 0}]
    raise AssertionError("entry not found")


def test_sat_case_is_confirmed_exactly(net):
    model, t, x0, lab = net
    spec = _spec(x0, lab, 0.3)
    res = general.verify_target(t, spec, timeout=30)
    assert res.verdict == "sat"
    assert check_vnn(res.cert, t.bg, spec, mode="exact").ok
    x = np.array([float(v) for v in res.x])
    r = spec.regions[0]
    assert all(float(a) <= v <= float(b) for a, v, b in zip(r.lo, x, r.hi))
    y = model(tl.tensor(x.reshape(1, 1, N, N))).numpy()[0]  # the runtime's own forward, independently
    assert y[lab] - y[1 - lab] <= 1e-6


def test_backsub_multipliers_match_a_modified_objective(net):
    """alpha.Backsub with ``mult`` = the objective minus mult·z (what the checker bounds), and its
    gradient in the multipliers matches a central difference."""
    _, t, x0, lab = net
    spec = _spec(x0, lab, 0.09)
    r = spec.regions[0]
    lo, hi = fe.boxes([r.lo], [r.hi])
    fg = fe.compiled(t.bg)
    from torchlean.certificates.fast_functions import FAST

    bs = alpha.Backsub.from_fast(t.bg, fg, fe.forward(fg, lo, hi, "crown"), FAST)
    forms, _ = objective_forms(t.bg, r, [[(0,)]])
    lam0, c0 = alpha._dense(forms, t.bg.n_vars)
    k = graph_relu.relu_nodes(t.bg)[0]
    rng = np.random.default_rng(1)
    s = rng.normal(size=(1, 1, t.bg.nodes[k].size)) * 0.05
    slopes = bs.default_slopes(1)
    v, g = bs.bound(lam0, c0, slopes, want_grad=True, mult={k: s})
    A, c = alpha._dense(t.bg.nodes[k].args, t.bg.n_vars)
    v2, _ = bs.bound(lam0 - s[0] @ A, c0 - s[0] @ c, slopes)
    assert np.allclose(v, v2)
    h, j = 1e-6, 3
    e = np.zeros_like(s)
    e[0, 0, j] = h
    up = bs.bound(lam0, c0, slopes, mult={k: s + e})[0][0, 0]
    dn = bs.bound(lam0, c0, slopes, mult={k: s - e})[0][0, 0]
    assert abs((up - dn) / (2 * h) - g["mult", k][0, 0, j]) < 1e-4


def test_select_keeps_a_boxs_own_bounds(net):
    """``fast_engine.select`` (the fast replay's per-leaf state): box b of a batch alone gives the
    bound a forward pass over box b alone gives (relu bounds are per box), and it is below the
    exact minimum at sampled points of the box."""
    _, t, x0, lab = net
    r = _spec(x0, lab, 0.1).regions[0]
    lo, hi = fe.boxes([r.lo], [r.hi])
    rng = np.random.default_rng(2)
    B = 5
    w = (hi - lo) * rng.uniform(0, 0.5, size=(B, lo.shape[1]))
    blo = lo + rng.uniform(0, 0.5, size=(B, 1)) * w
    bhi = np.minimum(blo + w, hi)
    fg = fe.compiled(t.bg)
    forms, _ = objective_forms(t.bg, r, [[(0,)]])
    F = fe.forms_of(t.bg, forms)
    st = fe.forward(fg, blo, bhi, "crown")
    for b in range(B):
        one = fe.bound_forms(engines.select(st, b), F)[0, 0]
        alone = fe.bound_forms(fe.forward(fg, blo[b:b + 1], bhi[b:b + 1], "crown"), F)[0, 0]
        assert abs(one - alone) <= 1e-9 * (1 + abs(alone))
        pts = rng.uniform(blo[b], bhi[b], size=(20, blo.shape[1]))
        y = t.ex.forward(pts)
        assert (y[:, lab] - y[:, 1 - lab] >= one - 1e-9).all()


def test_root_bound_suffices_without_splits(net):
    """Where root CROWN proves every disjunct, the ReLU-split search makes no split and the
    certificate is one leaf per disjunct, accepted in both modes."""
    _, t, x0, lab = net
    spec = _spec(x0, lab, 0.02)
    res = general.verify_target(t, spec, timeout=30)
    assert res.verdict == "unsat" and res.stats.get("splits", 0) == 0
    assert res.cert["regions"][0]["per_disjunct"][0][0][0] == "leaf"
    for mode in ("exact", "fast"):
        assert check_vnn(res.cert, t.bg, spec, mode=mode).ok
