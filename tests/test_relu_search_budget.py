"""The ReLU-split search's time split (h-mnist): α/β steps stop on boxes already proved (the
others' bounds unchanged), and the attack alongside the search gives its time back once it has
stalled, while every verdict is still the checker's: certificates replay in exact and fast mode,
counterexamples are confirmed exactly."""

from __future__ import annotations

import inspect
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.certificates import fast_engine as fe
from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.fast_functions import FAST
from torchlean.certificates.fast_vnn import phase_arrays
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.verify import alpha, alpha_targets, attack, general, graph_relu, table
from torchlean.verify.table import load_instance

DATA = Path(__file__).parent / "data" / "vnncomp2021" / "mnistfc"
MNIST = DATA / "mnist-net_256x2.onnx"
N = 81


def _mlp_instance():
    """A fully connected 81-32-32-2 net and a robustness property at radius 0.06 that root CROWN
    leaves open and ReLU splits prove (17 splits when written)."""
    tl.manual_seed(2)
    model = nn.Sequential(nn.Linear(N, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    t = table.target(tl.trace(model, tl.zeros(1, N)))
    x0 = np.random.default_rng(2).uniform(0, 1, N)
    lab = int(t.ex.forward(x0[None])[0].argmax())
    lo = tuple(Fraction(float(max(0.0, v - 0.06))) for v in x0)
    hi = tuple(Fraction(float(min(1.0, v + 0.06))) for v in x0)
    a = [Fraction(0)] * 2
    a[lab], a[1 - lab] = Fraction(1), Fraction(-1)
    return t, Spec(N, 2, (Region(lo, hi, ((Atom(tuple(a), Fraction(0), False),),)),))


def _boxes(region, widths):
    """Boxes about the region's centre, each of the given fraction of its width, as float arrays."""
    lo, hi = fe.boxes([region.lo], [region.hi])
    mid = (lo + hi) / 2
    return (np.concatenate([mid - w * (mid - lo) for w in widths]),
            np.concatenate([mid + w * (hi - mid) for w in widths]))


@pytest.mark.parametrize("nodewise", [False, True])
def test_take_is_the_rows_of_its_boxes(nodewise):
    """``take(idx)`` bounds (and their gradients) are the full batch's rows idx, bit for bit up to
    the products' summation order."""
    t, spec = _mlp_instance()
    bg, fg = t.bg, fe.compiled(t.bg)
    lo, hi = _boxes(spec.regions[0], [1.0, 0.5, 0.2, 0.8])
    st = fe.forward(fg, lo, hi, "crown")
    bs = alpha_targets.NodeBacksub(fg, st) if nodewise else alpha.Backsub.from_fast(bg, fg, st, FAST)
    dj = graph_relu.Disjunct(bg, spec.regions[0], 0)
    R = dj.lam0.shape[0]
    rng = np.random.default_rng(0)
    slopes = {k: (rng.uniform(0, 1, a.shape), u) for k, (a, u) in bs.default_slopes(R).items()}
    v, g = bs.bound(dj.lam0, dj.c0, slopes, want_grad=True)
    idx = np.array([3, 1])
    sub = bs.take(idx)
    vs, gs = sub.bound(dj.lam0, dj.c0, {k: (a[idx], u[idx]) for k, (a, u) in slopes.items()}, want_grad=True)
    assert sub.B == 2 and bs.B == 4
    np.testing.assert_allclose(vs, v[idx], rtol=1e-12, atol=1e-12)
    for k in g:
        np.testing.assert_allclose(gs[k][0], g[k][0][idx], rtol=1e-12, atol=1e-12)
    v2, _ = bs.bound(dj.lam0, dj.c0, slopes)  # the original is untouched
    np.testing.assert_array_equal(v2, v)


def test_optimise_stops_stepping_proved_boxes_and_keeps_the_others():
    """Small boxes about the centre are proved in the first steps, the full box is not: the
    full box's optimised bound is the one it gets optimised alone, the proved boxes' bounds are
    positive and at least their default-slope bounds, and the bound's coefficients are kept for
    every box (the attack's minimisers read them)."""
    t, spec = _mlp_instance()
    bg, fg = t.bg, fe.compiled(t.bg)
    region = spec.regions[0]
    dj = graph_relu.Disjunct(bg, region, 0)
    relus = graph_relu.relu_nodes(bg)
    lo, hi = _boxes(region, [1.0, 0.05, 0.02])
    st = fe.forward(fg, lo, hi, "crown")
    bs = alpha.Backsub.from_fast(bg, fg, st, FAST)
    base, _ = bs.bound(dj.lam0, dj.c0, bs.default_slopes(1))
    assert base[0, 0] < 0  # the full box is open at default slopes
    taken = []
    real = alpha.Backsub.take
    alpha.Backsub.take = lambda self, idx: taken.append(list(idx)) or real(self, idx)
    try:
        val, a, _, _ = graph_relu._optimise(bs, dj, relus, st, [{}, {}, {}], 20)
    finally:
        alpha.Backsub.take = real
    assert bs.coef.shape[0] == 3
    st1 = fe.forward(fg, lo[:1], hi[:1], "crown")
    bs1 = alpha.Backsub.from_fast(bg, fg, st1, FAST)
    val1, a1, _, _ = graph_relu._optimise(bs1, dj, relus, st1, [{}], 20)
    assert val[0, 0] <= graph_relu.EPS and taken == [[0]]  # open: stepped alone after step 0
    assert val[0, 0] > base[0, 0]  # (α gained, so the steps did run on it)
    np.testing.assert_allclose(val[0], val1[0], rtol=1e-9, atol=1e-12)
    for k in relus:
        np.testing.assert_allclose(a[k][0], a1[k][0], rtol=1e-9, atol=1e-12)
    assert (val[1:].max(1) > graph_relu.EPS).all() and (val[1:] >= base[1:] - 1e-12).all()


def test_the_mlp_search_certificate_replays_exactly_and_fast():
    """The fully connected search with boxes dropped from the α/β steps: unsat with ReLU splits,
    the certificate accepted in exact and fast mode."""
    t, spec = _mlp_instance()
    res = general.verify_target(t, spec, timeout=60)
    assert res.verdict == "unsat" and res.stats["splits"] > 0
    for mode in ("exact", "fast"):
        v = check_vnn(res.cert, t.bg, spec, mode=mode)
        assert v.ok, v.reason


def test_search_records_its_margins_against_onnxruntime():
    """``attack.search(record=...)``: "centre" is the box centre's float margin (onnxruntime on the
    ONNX file gives the same to float32 precision), "best" the smallest any point reached, above
    0 on a published-unsat property and at most the centre's."""
    ort = pytest.importorskip("onnxruntime")
    t, spec = load_instance(MNIST, DATA / "prop_2_0.03.vnnlib")
    rec: dict[str, float] = {}
    x = attack.search(t.ex, spec, table.confirmer(t, spec), rounds=1, deadline=time.perf_counter() + 10,
                      record=rec)
    assert x is None
    region = spec.regions[0]
    centre = np.array([[float(a + b) / 2 for a, b in zip(region.lo, region.hi)]], dtype=np.float32)
    sess = ort.InferenceSession(str(MNIST), providers=["CPUExecutionProvider"])
    y = np.asarray(sess.run(None, {sess.get_inputs()[0].name: centre.reshape(1, 784, 1)})[0], float)
    m = min(max(float(np.dot([float(v) for v in at.a], y.ravel())) - float(at.b) for at in d)
            for d in region.disjuncts)
    assert rec["centre"] == pytest.approx(m, abs=1e-4)
    assert 0 < rec["best"] <= rec["centre"]


def test_stall_rule():
    """The share drops only after ``STALL`` calls in a row without a gain of ``IMPROVE`` of the
    centre's margin, never near 0, and comes back on a gain; the search's deadline moves to the
    held-back end only while stalled."""
    stats: dict = {}
    assert graph_relu.attack_share(stats) == graph_relu.ATTACK_SHARE  # no record: the full share
    stats.update(attack_margin={"centre": 1.0, "best": 0.5}, attack_end=20.0)
    for _ in range(graph_relu.STALL - 1):
        graph_relu._note_stall(stats, 0.5)
    assert not graph_relu.stalled(stats) and graph_relu.search_deadline(10.0, stats) == 10.0
    graph_relu._note_stall(stats, 0.5 + 0.5 * graph_relu.IMPROVE)  # a gain below IMPROVE
    assert graph_relu.stalled(stats)
    assert graph_relu.attack_share(stats) == graph_relu.ATTACK_SHARE_STALLED
    assert graph_relu.search_deadline(10.0, stats) == 20.0
    stats["attack_margin"]["best"] = 0.4  # a gain: the full share again
    graph_relu._note_stall(stats, 0.5)
    assert not graph_relu.stalled(stats) and stats["attack_stall"] == 0
    stats.update(attack_stall=100)
    stats["attack_margin"]["best"] = graph_relu.NEAR * 0.5  # near a counterexample: never stalled
    assert not graph_relu.stalled(stats)


def test_stalled_attack_leaves_its_time_to_the_proof(monkeypatch):
    """mnistfc 256x2 prop_3_0.03 (published unsat): the attack's best margin stays far from 0 and
    stops improving, so it stalls; the search proves the property, and the certificate is
    accepted by the checker (fast mode; the exact replay of its ~700 leaves takes minutes).
    ``STALL`` is lowered to 2: how many attack calls fit before the proof is done depends on the
    machine's load (4 on CI's shared 2 cores, against 8 needed by default). The timeout is the
    search's deadline, not a speed claim: generous, so a loaded machine (CI at load 5 took more
    than 100 s) still sees the search end in its proof."""
    monkeypatch.setattr(graph_relu, "STALL", 2)
    t, spec = load_instance(MNIST, DATA / "prop_3_0.03.vnnlib")
    res = general.verify_target(t, spec, timeout=400)
    assert res.verdict == "unsat"
    assert res.stats["attack_stall"] >= graph_relu.STALL
    assert res.stats["attack_margin"]["best"] > graph_relu.NEAR * res.stats["attack_margin"]["centre"]
    v = check_vnn(res.cert, t.bg, spec, mode="fast")
    assert v.ok, v.reason


@pytest.mark.parametrize("nodewise", [False, True])
def test_optimise_starts_from_the_warm_slopes_and_multipliers(nodewise):
    """``warm`` (``graph_relu.WARM``: a child's α/β start from its parent's best) is where the
    steps start: with 0 steps the bound is ``bound`` at the warm α (on the box's unstable
    elements; the others keep their default) and warm β (on its split elements), computed here
    directly, not the default-slope bound; a box without a warm start keeps its default bound."""
    t, spec = _mlp_instance()
    bg, fg = t.bg, fe.compiled(t.bg)
    region = spec.regions[0]
    dj = graph_relu.Disjunct(bg, region, 0)
    relus = graph_relu.relu_nodes(bg)
    lo, hi = _boxes(region, [1.0, 1.0])
    st0 = fe.forward(fg, lo, hi, "crown")
    k0 = relus[0]
    i = int(np.nonzero((st0.arg[k0][0][0] < 0) & (st0.arg[k0][1][0] > 0))[0][0])  # an unstable element, split
    paths = [{(k0, i): 1}, {(k0, i): 1}]
    st = fe.forward(fg, lo, hi, "crown", phase_arrays(bg, paths))
    make = (lambda s: alpha_targets.NodeBacksub(fg, s)) if nodewise else \
        (lambda s: alpha.Backsub.from_fast(bg, fg, s, FAST))
    bs = make(st)
    R = dj.lam0.shape[0]
    rng = np.random.default_rng(1)
    dflt = bs.default_slopes(R)
    wa = {k: rng.uniform(0, 1, dflt[k][0].shape[1:]) for k in relus}
    wb = {k0: np.full((R, bg.nodes[k0].size), 0.7)}
    val, _, _, _ = graph_relu._optimise(bs, dj, relus, st, paths, 0, warm=[(wa, wb), None])
    slopes = {}
    for k, (a, u) in dflt.items():
        unst = (st.arg[k][0] < 0)[:, None, :] & (st.arg[k][1] > 0)[:, None, :]
        a = a.copy()
        a[0] = np.where(unst[0], wa[k], a[0])
        slopes[k] = (a, u)
    sgn = alpha.split_signs(paths, {k0: bg.nodes[k0].size})[k0]
    mult = {k0: np.concatenate([(wb[k0] * sgn[0])[None], np.zeros((1, R, bg.nodes[k0].size))])}
    want, _ = make(st).bound(dj.lam0, dj.c0, slopes, mult=mult)
    cold, _ = make(st).bound(dj.lam0, dj.c0, dflt)
    np.testing.assert_allclose(val, want, rtol=1e-9, atol=1e-12)
    assert abs(val[0, 0] - cold[0, 0]) > 1e-6  # (the warm values moved the bound)
    np.testing.assert_allclose(val[1], cold[1], rtol=1e-9, atol=1e-12)


def _splits(tree):
    """The split entries of a preorder tree, leaves as a marker (their bounds are the checker's)."""
    return [e if e[0] != "leaf" else "leaf" for e in tree]


def test_dense_batches_regroup_the_same_tree(monkeypatch):
    """On the dense (fully connected) α/β path a batch holds ``BATCH_DENSE`` subproblems, not
    ``BATCH``, and the grouping changes nothing but the speed: 1, 3 and 64 boxes per batch give the
    same split tree (a box's bounds, steps and split do not depend on the other boxes of its
    batch), and every certificate replays."""
    t, spec = _mlp_instance()
    real = graph_relu._optimise
    trees, sizes = {}, {}
    for bd in (1, 3, 64):
        monkeypatch.setattr(graph_relu, "BATCH", 1)
        monkeypatch.setattr(graph_relu, "BATCH_DENSE", bd)
        seen: list[int] = []
        monkeypatch.setattr(graph_relu, "_optimise",
                            lambda bs, *a, seen=seen, **k: seen.append(bs.B) or real(bs, *a, **k))
        res = general.verify_target(t, spec, timeout=60)
        assert res.verdict == "unsat" and res.stats["splits"] > 0
        assert check_vnn(res.cert, t.bg, spec, mode="fast").ok
        (tree,) = res.cert["regions"][0]["per_disjunct"]
        trees[bd], sizes[bd] = _splits(tree), max(seen)
    assert trees[1] == trees[3] == trees[64]
    assert sizes[1] == 1 and sizes[3] == 3 and sizes[64] > 3  # (BATCH is 1: the dense path took BATCH_DENSE)


def test_dense_warm_start_keeps_the_cold_branching_multipliers():
    """``lam_default`` (the dense path's ``WARM``): the bound starts from the warm α/β, but the λ
    returned for the branching scores is the one met under the default slopes and β = 0, equal to
    a cold start's (and different from the λ under the warm slopes)."""
    t, spec = _mlp_instance()
    bg, fg = t.bg, fe.compiled(t.bg)
    region = spec.regions[0]
    dj = graph_relu.Disjunct(bg, region, 0)
    relus = graph_relu.relu_nodes(bg)
    lo, hi = _boxes(region, [1.0, 0.9])
    st = fe.forward(fg, lo, hi, "crown")
    make = lambda: alpha.Backsub.from_fast(bg, fg, st, FAST)  # noqa: E731
    R = dj.lam0.shape[0]
    rng = np.random.default_rng(3)
    wa = {k: rng.uniform(0, 1, (R, bg.nodes[k].size)) for k in relus}
    paths = [{}, {}]
    v_cold, _, _, lam_cold = graph_relu._optimise(make(), dj, relus, st, paths, 0)
    v_warm, _, _, lam_warm = graph_relu._optimise(make(), dj, relus, st, paths, 0, warm=[(wa, {}), None])
    v_def, _, _, lam_def = graph_relu._optimise(make(), dj, relus, st, paths, 0, warm=[(wa, {}), None],
                                                lam_default=True)
    np.testing.assert_allclose(v_def, v_warm, rtol=1e-12, atol=1e-12)  # (the bound is the warm one)
    assert abs(v_def[0, 0] - v_cold[0, 0]) > 1e-6
    early = relus[0]  # (the first layer's λ passes through the later layer's warm slopes)
    assert np.abs(lam_warm[early][0] - lam_cold[early][0]).max() > 1e-6
    for k in relus:
        np.testing.assert_allclose(lam_def[k], lam_cold[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("on", [False, True])
def test_conv_branching_multipliers_switch_reaches_the_nodewise_search(on, monkeypatch):
    """``graph_relu.LAM_DEFAULT_NODEWISE`` (off: measured worse on oval21, bench/README.md,
    "impconv") is what the node-wise (conv) path passes as ``lam_default``, with warm starts in
    play; the dense path's is always on. Either way the small CNN is proved by ReLU splits and its
    certificate replays in exact and fast mode."""
    from tests.test_graph_relu_bab import _spec, cnn_instance

    _, t, x0, lab = cnn_instance()
    spec = _spec(x0, lab, 0.1)
    monkeypatch.setattr(graph_relu, "LAM_DEFAULT_NODEWISE", on)
    real = graph_relu._optimise
    calls: list[tuple[bool, bool, bool]] = []

    sig = inspect.signature(real)

    def spy(*a, **k):
        got = sig.bind(*a, **k).arguments
        warm = got.get("warm") or ()
        calls.append((isinstance(got["bs"], alpha_targets.NodeBacksub), got.get("lam_default", False),
                      any(w is not None for w in warm)))
        return real(*a, **k)

    monkeypatch.setattr(graph_relu, "_optimise", spy)
    res = general.verify_target(t, spec, timeout=60)
    assert res.verdict == "unsat" and res.stats["splits"] > 0
    nodewise = [c for c in calls if c[0]]
    assert nodewise and all(lam is on for _, lam, _ in nodewise)
    assert any(w for *_, w in nodewise)  # (children warm-started: the switch matters there)
    assert check_vnn(res.cert, t.bg, spec, mode="fast").ok
    assert check_vnn(res.cert, t.bg, spec).ok
