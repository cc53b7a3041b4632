"""Slopes per (relu node, target node) on the intermediate bounds (issues 14 and 15): a region's
``"arg_slopes"`` entries with a fifth element ``target`` (``graph_vnn.read_shared``), used by both
engines' forward passes for that target's argument bounds only, chosen by
``verify.alpha_targets.target_slopes``.

References: PyTorch's float64 evaluation of a deep MLP at sampled points of the box (every
intermediate bound with the per-target slopes must contain the pre-activations there, every
output bound the outputs), the default CROWN bound of the same engine (the per-target slopes must
tighten it), and tampered certificates (each mutation rejected in both replay modes).
"""

import json
import warnings
from fractions import Fraction

import numpy as np
import pytest
from slopes_util import margin_region, root_cert

from torchlean.certificates import engine
from torchlean.certificates import fast_engine as fe
from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.graph_vnn import read_shared
from torchlean.certificates.property import Spec
from torchlean.verify import alpha, alpha_targets
from torchlean.verify import graph_relu as gr
from torchlean.verify.table import load_target, network_id

EPS, WIDTH, DEPTH, N_IN = 0.5, 32, 5, 6


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A 5-hidden-layer MLP (torch, exported to ONNX), a box around x0, the label, its two
    disjuncts' default and per-target root bounds, and the per-target slopes with their state."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(1)
    layers, n = [], N_IN
    for _ in range(DEPTH):
        layers += [nn.Linear(n, WIDTH), nn.ReLU()]
        n = WIDTH
    net = nn.Sequential(*layers, nn.Linear(n, 3)).eval()
    path = tmp_path_factory.mktemp("target") / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, N_IN), str(path), dynamo=False, input_names=["X"],
                          output_names=["Y"])
    t = load_target(path)
    x0 = np.random.default_rng(1).uniform(-1, 1, N_IN)
    lo = tuple(Fraction(v - EPS).limit_denominator(10**6) for v in x0)
    hi = tuple(Fraction(v + EPS).limit_denominator(10**6) for v in x0)
    label = int(net(torch.tensor(x0[None], dtype=torch.float32))[0].argmax())
    others = [j for j in range(3) if j != label]
    fg, box = fe.compiled(t.bg), fe.boxes([lo], [hi])
    st = fe.forward(fg, *box, "crown")
    reg0 = _region(lo, hi, label, others, [Fraction(0)] * 2)
    djs = [gr.Disjunct(t.bg, reg0, j) for j in range(2)]
    sl, st2 = alpha_targets.target_slopes(t.bg, fg, box, st, {}, lambda f: f(), lambda: False)
    base = np.array([fe.bound_forms(st, dj.F)[0, 0] for dj in djs])
    got = np.array([fe.bound_forms(st2, dj.F)[0, 0] for dj in djs])
    return net.double(), t, x0, lo, hi, label, others, sl, st, st2, base, got


def _region(lo, hi, label, others, ts):
    return margin_region(lo, hi, label, others, ts, 3)


def test_target_slopes_tighten_and_hold_at_samples(case):
    torch = pytest.importorskip("torch")
    net, t, x0, lo, hi, label, others, sl, st, st2, base, got = case
    relus = gr.relu_nodes(t.bg)
    assert sl and all(type(key) is tuple for key in sl), sl.keys()
    for (tg, k), (a, u) in sl.items():  # relu lower slopes in [0, 1] of an earlier node's unstable elements
        assert tg in relus and k in relus and k < tg and np.isnan(u).all()
        s = a[0][~np.isnan(a[0])]
        assert s.size and ((s >= 0) & (s <= 1)).all()
        unst = (st2.arg[k][0][0] < 0) & (st2.arg[k][1][0] > 0)
        assert not (~np.isnan(a[0]) & ~unst).any()
    assert (got > base + 1e-3).all(), (base, got)  # (the root bounds of both disjuncts go up)
    # sampled points (box corners included): PyTorch's float64 pre-activations inside every
    # relu node's argument bounds, its outputs' margins above the disjuncts' lower bounds
    rng = np.random.default_rng(2)
    xs = np.concatenate([rng.uniform(np.array(lo, float), np.array(hi, float), (2000, N_IN)),
                         np.where(rng.random((200, N_IN)) < 0.5, np.array(lo, float), np.array(hi, float))])
    h = torch.tensor(xs, dtype=torch.float64)
    pre = []
    for m in net:
        h = m(h)
        if isinstance(m, torch.nn.Linear):
            pre.append(h.detach().numpy())
    for k, z in zip(relus, pre):
        assert (st2.arg[k][0][0] <= z.min(0) + 1e-9).all() and (z.max(0) <= st2.arg[k][1][0] + 1e-9).all()
    # the exact engine with the same slopes as the certificate states them: bounds as tight as the
    # fast engine's (up to its outward charges) and holding at the samples too
    ex = engine.forward(t.bg, list(lo), list(hi), "crown",
                        slopes=read_shared(t.bg, {"arg_slopes": alpha.shared_entries(sl)}, "r"))
    for k, z in zip(relus, pre):
        el, eu = (np.array([float(b[i]) for b in ex.arg[k]]) for i in (0, 1))
        assert (el <= z.min(0) + 1e-9).all() and (z.max(0) <= eu + 1e-9).all()
        assert (el >= st2.arg[k][0][0] - 1e-6).all() and (eu <= st2.arg[k][1][0] + 1e-6).all()
    y = pre[-1]
    margins = np.array([(y[:, label] - y[:, j]).min() for j in others])
    assert (got <= margins + 1e-9).all(), (got, margins)


def _cert(case):
    """Root leaves for both disjuncts at thresholds between the default and the per-target bounds:
    provable with the per-target slopes only."""
    net, t, x0, lo, hi, label, others, sl, st, st2, base, got = case
    reg = _region(lo, hi, label, others, [Fraction(float((b + g) / 2)) for b, g in zip(base, got)])
    return (t, *root_cert(t, reg, N_IN, 3, st2, sl))


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_certificate_with_target_slopes_replays_and_mutations_fail(case, mode):
    t, spec, cert = _cert(case)
    v = check_vnn(cert, t.bg, spec, mode=mode)
    assert v.ok, v.reason
    entries = cert["regions"][0]["arg_slopes"]
    assert all(len(e) == 5 for e in entries)
    k0, i0, _, _, t0 = entries[0]
    first = gr.relu_nodes(t.bg)[0]

    def mutated(f):
        c = json.loads(json.dumps(cert))
        f(c["regions"][0])
        return check_vnn(c, t.bg, spec, mode=mode)

    def flipped(r):  # every slope s -> 1 - s: a worse relaxation, the claims no longer hold
        r["arg_slopes"] = [[k, i, str(1 - Fraction(s)), u, tg] for k, i, s, u, tg in r["arg_slopes"]]

    def as_shared(r):  # each element's last per-target slope as its shared one, for every target
        r["arg_slopes"] = list({(e[0], e[1]): e[:4] for e in entries}.values())

    # changed slopes, well-formed: the claimed bounds no longer hold
    for f in (lambda r: r.pop("arg_slopes"), as_shared, flipped):
        assert "recomputed bound" in mutated(f).reason
    bad = [
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "3/2", None, t0]] + entries[1:]),  # slope > 1
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "-1/8", None, t0]] + entries[1:]),  # slope < 0
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "1/2", "1/2", t0]] + entries[1:]),  # an upper slope
        lambda r: r.__setitem__("arg_slopes", entries + [entries[0]]),  # an element twice for one target
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "1/2", None, 0]]),  # the input node: no target
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "1/2", None, len(t.bg.nodes)]]),  # no such node
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "1/2", None, k0]]),  # a target not after the node
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "1/2", None, first]]),  # ... nor before it
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "1/2", None, True]]),  # not an int
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "1/2", None, [t0]]]),  # not an int
    ]
    results = [mutated(f) for f in bad]
    assert not any(r.ok for r in results), [r.reason for r in results]


def test_targets_fall_back_to_shared_and_leave_other_nodes_alone(case):
    """Per-target entries equal to the shared ones (per element) give the shared-only bounds; the
    same element may carry a shared slope and a per-target one; certificates without per-target
    entries read as before (int keys only)."""
    net, t, x0, lo, hi, label, others, sl, st, st2, base, got = case
    fg, box = fe.compiled(t.bg), fe.boxes([lo], [hi])
    shared = {k: a for (_, k), a in sl.items()}  # (one of each node's vectors, as shared slopes)
    s1 = fe.forward(fg, *box, "crown", slopes=shared)
    s2 = fe.forward(fg, *box, "crown", slopes={**shared, **{(tg, k): shared[k] for tg, k in sl}})
    half = {key: (np.where(np.arange(a.shape[1]) % 2 == 0, a, np.nan), u) for key, (a, u) in sl.items()}
    s3 = fe.forward(fg, *box, "crown", slopes={**shared, **{(tg, k): half[tg, k] for tg, k in sl}})
    s4 = fe.forward(fg, *box, "crown", slopes={**shared, **{(tg, k): (np.where(
        np.isnan(half[tg, k][0]), shared[k][0], half[tg, k][0]), half[tg, k][1]) for tg, k in sl}})
    for k in gr.relu_nodes(t.bg):
        for a, b, c, d in zip(s1.arg[k], s2.arg[k], s3.arg[k], s4.arg[k]):
            assert np.array_equal(a, b) and np.array_equal(c, d)
    entry = {"per_disjunct": [], "arg_slopes": alpha.shared_entries(shared)}
    assert all(type(key) is int for key in read_shared(t.bg, entry, "r"))
    mixed = read_shared(t.bg, {"arg_slopes": alpha.shared_entries({**shared, **sl})}, "r")
    assert set(mixed) == set(shared) | set(sl)


def test_search_emits_target_slopes(case, monkeypatch):
    """``graph_relu.bab_region`` where the root leaves the disjuncts open (thresholds above the
    default bounds; no time for shared slopes, which close them here too): it adds per-target
    slopes, and its certificate replays."""
    import time

    monkeypatch.setattr(gr, "SHARED_SHARE", 0.0)
    t, spec, _ = _cert(case)
    stats = {}
    entry = gr.bab_region(t.bg, spec.regions[0], time.perf_counter() + 60, stats)
    assert isinstance(entry, dict) and any(len(e) == 5 for e in entry.get("arg_slopes", [])), (entry, stats)
    assert stats["target_slopes"] > 0
    cert = {"kind": "vnn-unsat", "version": 1, "network": network_id(t), "property": spec.digest(),
            "method": "crown", "regions": [entry]}
    for mode in ("fast", "exact"):
        v = check_vnn(cert, t.bg, spec, mode=mode)
        assert v.ok, v.reason


def test_search_splits_with_target_slopes_and_replays(case, monkeypatch):
    """Thresholds just above the per-target root bounds: the search splits a relu, its children
    start from the root state with the per-target slopes, and both replays accept the tree
    (the exact engine's ``prior`` and ``_aim`` together)."""
    import time

    net, t, x0, lo, hi, label, others, sl, st, st2, base, got = case
    monkeypatch.setattr(gr, "SHARED_SHARE", 0.0)
    reg = _region(lo, hi, label, others, [Fraction(float(g + 0.02)) for g in got])
    spec = Spec(N_IN, 3, (reg,))
    stats = {}
    entry = gr.bab_region(t.bg, reg, time.perf_counter() + 60, stats)
    assert isinstance(entry, dict) and stats.get("splits", 0) > 0 and stats["target_slopes"] > 0, stats
    assert any(len(e) == 5 for e in entry["arg_slopes"])
    cert = {"kind": "vnn-unsat", "version": 1, "network": network_id(t), "property": spec.digest(),
            "method": "crown", "regions": [entry]}
    for mode in ("fast", "exact"):
        v = check_vnn(cert, t.bg, spec, mode=mode)
        assert v.ok, v.reason
