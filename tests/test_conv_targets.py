"""Per-target α on convolutional graphs (issue 14): ``verify.alpha_targets.NodeBacksub`` (the
float back-substitution with multipliers per node, moved through the fast engine's sparse conv
forms) and ``conv_target_slopes`` (the per-target slopes it chooses).

References: the dense ``alpha.Backsub`` on a net small enough for both (same bounds, same
gradients), finite differences of the bound in a slope, PyTorch's float64 evaluation of a small
residual conv net at sampled points (every intermediate bound with the per-target slopes must
contain the pre-activations there, every disjunct's bound the output margins), and tampered
certificates (each mutation rejected in both replay modes).
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
from torchlean.certificates.fast_functions import FAST
from torchlean.certificates.graph_vnn import read_shared
from torchlean.certificates.property import Spec
from torchlean.verify import alpha, alpha_targets
from torchlean.verify import graph_relu as gr
from torchlean.verify.table import load_target, network_id

EPS, SHAPE = 0.15, (1, 2, 5, 5)


def _net(torch):
    nn = torch.nn

    class Res(nn.Module):
        """conv -> relu -> conv + skip -> relu -> strided conv -> relu -> linear."""

        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(2, 4, 3, padding=1)
            self.c2 = nn.Conv2d(4, 4, 3, padding=1)
            self.c3 = nn.Conv2d(4, 4, 3, stride=2)
            self.fc = nn.Linear(16, 3)

        def pre(self, x):  # (every relu node's argument, then the outputs)
            z1 = self.c1(x)
            h1 = torch.relu(z1)
            z2 = self.c2(h1) + h1
            z3 = self.c3(torch.relu(z2))
            return [z1, z2, z3, self.fc(torch.relu(z3).flatten(1))]

        def forward(self, x):
            return self.pre(x)[-1]

    return Res()


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The net (exported to ONNX), a box around x0, the label, the root state, the per-target
    slopes ``conv_target_slopes`` chooses with their state, and both disjuncts' root bounds."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    net = _net(torch).eval()
    path = tmp_path_factory.mktemp("convt") / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(SHAPE), str(path), dynamo=False, input_names=["X"],
                          output_names=["Y"])
    t = load_target(path)
    n_in = int(np.prod(SHAPE))
    x0 = np.random.default_rng(3).uniform(-1, 1, n_in)
    lo = tuple(Fraction(v - EPS).limit_denominator(10**6) for v in x0)
    hi = tuple(Fraction(v + EPS).limit_denominator(10**6) for v in x0)
    label = int(net(torch.tensor(x0.reshape(SHAPE), dtype=torch.float32))[0].argmax())
    others = [j for j in range(3) if j != label]
    fg, box = fe.compiled(t.bg), fe.boxes([lo], [hi])
    st = fe.forward(fg, *box, "crown")
    djs = [gr.Disjunct(t.bg, _region(lo, hi, label, others, [Fraction(0)] * 2), j) for j in range(2)]
    sl, st2 = alpha_targets.conv_target_slopes(t.bg, fg, box, st, {}, lambda f: f(), lambda: False,
                                               steps=20, max_rows=1000)
    base = np.array([fe.bound_forms(st, dj.F)[0, 0] for dj in djs])
    got = np.array([fe.bound_forms(st2, dj.F)[0, 0] for dj in djs])
    return net.double(), t, lo, hi, label, others, sl, st, st2, base, got


def _region(lo, hi, label, others, ts):
    return margin_region(lo, hi, label, others, ts, 3)


def test_graph_is_conv_and_gated(case):
    net, t, *_ = case
    assert gr.relu_only(t.bg) and not gr.fully_connected(t.bg) and len(gr.relu_nodes(t.bg)) == 3
    assert gr.conv_targets(t.bg, False) == (gr.CONV_TARGET_SHARE > 0)


def _sparse_graph(bg, layout="sparse"):
    """The fast engine's float forms with every relu node's matrix sparse (the slot products: this
    net's convolutions are denser than ``fast_forms.SPARSE_BELOW``; a ResNet's are not), dense, or
    its convolutions on the checked conv path (``fast_forms._Conv``)."""
    from torchlean.certificates import fast_forms

    share, conv = {"sparse": (1.01, 0.0), "dense": (0.0, 0.0), "conv": (0.0, 1.01)}[layout]
    old = fast_forms.SPARSE_BELOW, fast_forms.CONV_BELOW
    fast_forms.SPARSE_BELOW, fast_forms.CONV_BELOW = share, conv
    try:
        fg = fe.FastGraph(bg)
    finally:
        fast_forms.SPARSE_BELOW, fast_forms.CONV_BELOW = old
    kinds = [(A.sparse, A.conv is not None) for k in gr.relu_nodes(bg) for _, A, _, _ in fg.forms[k].parents]
    assert set(kinds) == {{"sparse": (True, False), "dense": (False, False)}.get(layout, (True, True))}
    return fg


@pytest.mark.parametrize("layout", ["dense", "sparse", "conv"])
def test_node_backsub_equals_dense_backsub(case, layout):
    """Bounds and gradients in the slopes of every relu node's rows and of the outputs, at random
    slopes, equal the dense ``alpha.Backsub``'s (the node-wise one through dense and through
    sparse conv matrices, and the checked conv path); a central difference of the bound agrees."""
    net, t, lo, hi, label, others, sl, st, *_ = case
    bg = t.bg
    fg = _sparse_graph(bg, layout)
    rng = np.random.default_rng(5)
    relus = gr.relu_nodes(bg)
    for tg in relus[1:] + [None]:
        nb = alpha_targets.NodeBacksub(fg, st, tg)
        db = alpha.Backsub.from_fast(bg, fe.compiled(bg), st, FAST)
        if tg is None:  # (the outputs' rows: C·y as forms over the graph's variables)
            F = fg.out
            lam0 = {p: A.take() for p, A, _, _ in F.parents}
            c0 = F.c.copy()
            dl0, dc0 = alpha.objective_rows(bg, np.eye(3))
        else:
            un = np.arange(bg.nodes[tg].size)
            lam0, c0 = nb.rows(tg, un)
            A, c = alpha._node_mats(bg, tg, "fn")
            dl0, dc0 = np.concatenate([A.take(un), -A.take(un)]), np.concatenate([c[un], -c[un]])
            db.ops = [op for op in db.ops if op["k"] < tg]
        R = len(c0)
        slopes = nb.default_slopes(R)
        for k, (a, b) in slopes.items():
            a[:] = rng.uniform(0, 1, a.shape)
            b[:] = np.where(rng.random(b.shape) < 0.5, b, rng.uniform(0, 1.5, b.shape))
        # signed split multipliers (β·sgn) on half the elements of every node the rows read
        mult = {k: rng.normal(size=a.shape) * (rng.random(a.shape) < 0.5) for k, (a, _) in slopes.items()}
        v1, g1 = nb.bound(lam0, c0, slopes, want_grad=True, mult=mult)
        v2, g2 = db.bound(dl0, dc0, {k: (a.copy(), b.copy()) for k, (a, b) in slopes.items()}, want_grad=True,
                          mult=mult)
        assert np.allclose(v1, v2, rtol=1e-10, atol=1e-10), np.abs(v1 - v2).max()
        assert set(g1) == set(g2)
        assert {k for k in g1 if type(k) is int} == {k for k in relus if tg is None or k < tg}
        if tg is None:  # (dense rows as Backsub takes them: the same bound)
            assert np.allclose(nb.bound(dl0, dc0, slopes, mult=mult)[0], v1, rtol=1e-12, atol=1e-12)
        for k in g1:
            for x, y in zip(g1[k], g2[k]):
                assert np.allclose(x, y, rtol=1e-9, atol=1e-9), (k, np.abs(x - y).max())
        assert np.allclose(nb.coef, db.coef[..., :nb.coef.shape[-1]])
        # a central difference in one unstable lower slope of the first relu node, summed over rows
        k0 = relus[0]
        unst = np.nonzero((st.arg[k0][0][0] < 0) & (st.arg[k0][1][0] > 0))[0]
        if tg is None or not unst.size:
            continue
        i, h = int(unst[0]), 1e-6
        pert = {k: (a.copy(), b.copy()) for k, (a, b) in slopes.items()}
        pert[k0][0][..., i] += h
        up = nb.bound(lam0, c0, pert, mult=mult)[0].sum()
        pert[k0][0][..., i] -= 2 * h
        down = nb.bound(lam0, c0, pert, mult=mult)[0].sum()
        gi = g1[k0][0][..., i].sum()
        assert abs((up - down) / (2 * h) - gi) < 1e-4 * (1 + abs(gi))


def test_sparse_transpose_product(case):
    """``alpha_targets._rmul`` (the cached transpose's ``lmul``) equals ``_Mat.rmul``."""
    net, t, *_ = case
    fg = _sparse_graph(t.bg)
    rng = np.random.default_rng(7)
    for k in gr.relu_nodes(t.bg):
        for _, A, _, _ in fg.forms[k].parents:
            X = rng.normal(size=(7, A.shape[1]))
            assert np.allclose(alpha_targets._rmul(A, X), A.rmul(X), rtol=1e-12, atol=1e-12)


def test_conv_target_slopes_tighten_and_hold_at_samples(case):
    torch = pytest.importorskip("torch")
    net, t, lo, hi, label, others, sl, st, st2, base, got = case
    relus = gr.relu_nodes(t.bg)
    assert sl and all(type(key) is tuple for key in sl), sl.keys()
    for (tg, k), (a, u) in sl.items():
        assert tg in relus and k in relus and k < tg and np.isnan(u).all()
        s = a[0][~np.isnan(a[0])]
        assert s.size and ((s >= 0) & (s <= 1)).all()
    assert (got > base + 1e-3).all(), (base, got)
    rng = np.random.default_rng(2)
    n_in = len(lo)
    lo_f, hi_f = np.array(lo, float), np.array(hi, float)
    xs = np.concatenate([rng.uniform(lo_f, hi_f, (2000, n_in)),
                         np.where(rng.random((200, n_in)) < 0.5, lo_f, hi_f)])
    with torch.no_grad():
        pre = [z.reshape(len(xs), -1).numpy() for z in net.pre(torch.tensor(xs.reshape(-1, *SHAPE[1:])))]
    ex = engine.forward(t.bg, list(lo), list(hi), "crown",
                        slopes=read_shared(t.bg, {"arg_slopes": alpha.shared_entries(sl)}, "r"))
    for k, z in zip(relus, pre):
        assert (st2.arg[k][0][0] <= z.min(0) + 1e-9).all() and (z.max(0) <= st2.arg[k][1][0] + 1e-9).all()
        el, eu = (np.array([float(b[i]) for b in ex.arg[k]]) for i in (0, 1))
        assert (el <= z.min(0) + 1e-9).all() and (z.max(0) <= eu + 1e-9).all()
    y = pre[-1]
    margins = np.array([(y[:, label] - y[:, j]).min() for j in others])
    assert (got <= margins + 1e-9).all(), (got, margins)


def _cert(case):
    """Root leaves for both disjuncts at thresholds between the default and the per-target bounds:
    provable with the per-target slopes only."""
    net, t, lo, hi, label, others, sl, st, st2, base, got = case
    reg = _region(lo, hi, label, others, [Fraction(float((b + g) / 2)) for b, g in zip(base, got)])
    return (t, *root_cert(t, reg, len(lo), 3, st2, sl))


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_conv_certificate_replays_and_mutations_fail(case, mode):
    t, spec, cert = _cert(case)
    v = check_vnn(cert, t.bg, spec, mode=mode)
    assert v.ok, v.reason
    entries = cert["regions"][0]["arg_slopes"]
    assert entries and all(len(e) == 5 for e in entries)
    k0, i0, _, _, t0 = entries[0]

    def mutated(f):
        c = json.loads(json.dumps(cert))
        f(c["regions"][0])
        return check_vnn(c, t.bg, spec, mode=mode)

    def flipped(r):  # every slope s -> 1 - s on its target: a worse relaxation
        r["arg_slopes"] = [[k, i, str(1 - Fraction(s)), u, tg] for k, i, s, u, tg in r["arg_slopes"]]

    for f in (lambda r: r.pop("arg_slopes"), flipped):
        assert "recomputed bound" in mutated(f).reason
    bad = [
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "3/2", None, t0]] + entries[1:]),  # slope > 1
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "-1/8", None, t0]] + entries[1:]),  # slope < 0
        lambda r: r.__setitem__("arg_slopes", [[k0, 10**6, "1/2", None, t0]] + entries[1:]),  # no element
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "1/2", None, k0]]),  # a target not after the node
    ]
    results = [mutated(f) for f in bad]
    assert not any(r.ok for r in results), [r.reason for r in results]


def test_search_emits_conv_target_slopes(case, monkeypatch):
    """``graph_relu.bab_region`` with a share for the conv per-target slopes: its certificate
    carries them and replays in both modes."""
    import time

    monkeypatch.setattr(gr, "CONV_TARGET_SHARE", 0.5)
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


def test_search_splits_with_nodewise_alpha_beta_and_replays(case, monkeypatch):
    """Thresholds above the root bounds: the ReLU-split search runs its subproblems' α/β on
    ``NodeBacksub`` (this graph is conv, relu-only), proves leaves with the slopes it chose
    (α leaves: the engine's bound with them), and both replays accept the tree."""
    import time

    net, t, lo, hi, label, others, sl, st, st2, base, got = case
    monkeypatch.setattr(gr, "SHARED_SHARE", 0.0)
    seen = []
    real = alpha_targets.NodeBacksub.bound

    def spy(self, *a, **k):
        seen.append(k.get("mult") is not None)
        return real(self, *a, **k)

    monkeypatch.setattr(alpha_targets.NodeBacksub, "bound", spy)
    reg = _region(lo, hi, label, others, [Fraction(float(b + 0.3 * (g - b))) for b, g in zip(base, got)])
    spec = Spec(len(lo), 3, (reg,))
    stats = {}
    entry = gr.bab_region(t.bg, reg, time.perf_counter() + 120, stats)
    assert isinstance(entry, dict) and stats.get("beta_leaves", 0) > 0, (entry, stats)
    assert any(seen), "the subproblems' α/β did not run node-wise"
    cert = {"kind": "vnn-unsat", "version": 1, "network": network_id(t), "property": spec.digest(),
            "method": "crown", "regions": [entry]}
    for mode in ("fast", "exact"):
        v = check_vnn(cert, t.bg, spec, mode=mode)
        assert v.ok, v.reason


def test_nodewise_size_counts_the_forms_terms(case):
    """``alpha_targets.nodewise_size``: per row, every relu node's argument forms' terms (as the
    exact graph's forms list them, where every fast matrix is sparse) plus one per variable."""
    t = case[1]
    fg = _sparse_graph(t.bg)
    terms = sum(len(f.t) for k in gr.relu_nodes(t.bg) for f in t.bg.nodes[k].args)
    assert alpha_targets.nodewise_size(fg) == t.bg.n_vars + terms


def test_nodewise_alpha_beta_over_the_dense_budget_and_replays(case, monkeypatch):
    """A graph over the dense back-substitution's budget (``alpha.MAX_DENSE`` set below its
    ``dense_size``, as sri_resnet_a's ResNet is): its subproblems still get α/β, node-wise, within
    ``alpha_targets.MAX_NODEWISE``; every bound the engine recomputes with the chosen slopes and
    multipliers is at least plain CROWN's on the same subproblem and row; the certificate replays
    in both modes. Below the node-wise budget too (or with the dense path), the batches get no α/β."""
    import time

    net, t, lo, hi, label, others, sl, st, st2, base, got = case
    monkeypatch.setattr(gr, "SHARED_SHARE", 0.0)
    monkeypatch.setattr(alpha, "MAX_DENSE", alpha.dense_size(t.bg) - 1)
    reg = _region(lo, hi, label, others, [Fraction(float(b + 0.3 * (g - b))) for b, g in zip(base, got)])
    spec = Spec(len(lo), 3, (reg,))
    seen, pairs = [], []
    real_bound, real_engine = alpha_targets.NodeBacksub.bound, gr._engine_bounds

    def spy_bound(self, *a, **k):
        seen.append(k.get("mult") is not None)
        return real_bound(self, *a, **k)

    def spy_engine(bg, st, dj, cands):
        out = real_engine(bg, st, dj, cands)
        crown = fe.bound_forms(st, dj.F)
        pairs.extend((g, float(crown[b, r])) for (b, r, *_), g in zip(cands, out))
        return out

    monkeypatch.setattr(alpha_targets.NodeBacksub, "bound", spy_bound)
    monkeypatch.setattr(gr, "_engine_bounds", spy_engine)
    stats = {}
    entry = gr.bab_region(t.bg, reg, time.perf_counter() + 120, stats)
    assert isinstance(entry, dict) and stats.get("beta_leaves", 0) > 0, (entry, stats)
    assert any(seen), "the subproblems' α/β did not run node-wise"
    assert pairs and all(g >= c - 1e-9 for g, c in pairs), pairs
    assert any(g > 0 >= c for g, c in pairs), "no subproblem proved by α/β that CROWN left open"
    cert = {"kind": "vnn-unsat", "version": 1, "network": network_id(t), "property": spec.digest(),
            "method": "crown", "regions": [entry]}
    for mode in ("fast", "exact"):
        v = check_vnn(cert, t.bg, spec, mode=mode)
        assert v.ok, v.reason
    for setting in (("MAX_NODEWISE", 0), ("NODEWISE", False)):  # no budget left: CROWN-only batches
        mod = alpha_targets if setting[0] == "MAX_NODEWISE" else gr
        with monkeypatch.context() as m:
            m.setattr(mod, *setting)
            seen.clear()
            stats = {}
            entry = gr.bab_region(t.bg, reg, time.perf_counter() + 120, stats)
            assert not stats.get("beta_leaves") and not any(seen), (setting, stats)


def test_root_corners_nodewise_equal_dense(case, monkeypatch):
    """``graph_relu.root_corners`` on a relu-only conv graph takes the node-wise back-substitution
    (h-sri: the dense one cost seconds on the ResNet); its corners are the dense one's, and each is
    a corner of the box that minimises its row's CROWN bound's linear part (the sign of the row's
    input coefficients, recomputed here from the dense ``Backsub``)."""
    net, t, lo, hi, label, others, sl, st, *_ = case
    bg = t.bg
    box = fe.boxes([lo], [hi])
    djs = [gr.Disjunct(bg, _region(lo, hi, label, others, [Fraction(0)] * 2), j) for j in range(2)]
    calls = []
    real = alpha_targets.NodeBacksub.__init__

    def spy(self, *a, **k):
        calls.append(1)
        real(self, *a, **k)

    monkeypatch.setattr(alpha_targets.NodeBacksub, "__init__", spy)
    node = gr.root_corners(bg, st, djs, box)
    assert calls  # (the node-wise path ran)
    monkeypatch.setattr(gr, "NODEWISE", False)
    dense = gr.root_corners(bg, st, djs, box)
    assert len(calls) == 1 and node is not None and dense is not None
    assert node.shape == dense.shape == (sum(d.lam0.shape[0] for d in djs), bg.n_in)
    np.testing.assert_array_equal(node, dense)
    bs = alpha.Backsub.from_fast(bg, fe.compiled(bg), st, FAST)
    coef = np.concatenate([(bs.bound(d.lam0, d.c0, bs.default_slopes(d.lam0.shape[0])),
                            bs.coef[0][:, :bg.n_in])[1] for d in djs])
    blo, bhi = box
    want = np.where(coef > 0, blo, np.where(coef < 0, bhi, node))  # (a zero coefficient: any side)
    np.testing.assert_array_equal(node, want)
