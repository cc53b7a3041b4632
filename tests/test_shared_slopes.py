"""Shared slopes on the intermediate bounds (α-CROWN's α on every back-substitution, issue 14): a
region's ``"arg_slopes"`` in a certificate (``graph_vnn.read_shared``), used by both engines'
forward passes (``engine.forward`` / ``fast_engine.forward``'s ``slopes``), chosen by
``verify.alpha.shared_slopes``.

References: onnxruntime's outputs at sampled points of the box (every bound must hold at each),
the default CROWN bound of the same engine (the shared slopes must tighten it on a residual conv
net), and tampered certificates (each mutation rejected in both replay modes).
"""

import json
import warnings
from fractions import Fraction

import numpy as np
import pytest
from slopes_util import margin_region, root_cert

from torchlean.certificates import fast_engine as fe
from torchlean.certificates.bounds import check_vnn
from torchlean.verify import alpha
from torchlean.verify import graph_relu as gr
from torchlean.verify.table import load_target, network_id


def _net(path):
    """A small residual conv net (conv, residual add, strided conv + shortcut, linear), exported
    to ONNX by torch; onnxruntime session on it."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c0, self.c1, self.c2 = (nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1),
                                         nn.Conv2d(4, 4, 3, padding=1))
            self.down, self.short = nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.Conv2d(4, 8, 1, stride=2)
            self.fc = nn.Linear(8 * 4 * 4, 10)

        def forward(self, x):
            x = torch.relu(self.c0(x))
            x = torch.relu(self.c2(torch.relu(self.c1(x))) + x)
            x = torch.relu(self.down(x) + self.short(x))
            return self.fc(x.reshape(x.shape[0], -1))

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), torch.zeros(1, 3, 8, 8), str(path), dynamo=False,
                          input_names=["X"], output_names=["Y"])
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _q(v: float) -> Fraction:
    return Fraction(v).limit_denominator(10**6)


EPS = 0.03


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The net, a box around x0, the label, and per other class j the default CROWN and the
    shared-slope lower bounds of y_label - y_j at the root (same engine, same box)."""
    d = tmp_path_factory.mktemp("shared")
    sess = _net(d / "net.onnx")
    t = load_target(d / "net.onnx")
    x0 = np.random.default_rng(1).uniform(0.2, 0.8, 192)
    lo, hi = tuple(_q(v - EPS) for v in x0), tuple(_q(v + EPS) for v in x0)
    label = int(sess.run(None, {"X": x0.astype(np.float32).reshape(1, 3, 8, 8)})[0].argmax())
    others = [j for j in range(10) if j != label]

    def region(ts):
        return margin_region(lo, hi, label, others, ts, 10)

    reg0 = region([Fraction(0)] * 9)
    fg = fe.compiled(t.bg)
    box = fe.boxes([lo], [hi])
    st = fe.forward(fg, *box, "crown")
    djs = [gr.Disjunct(t.bg, reg0, j) for j in range(9)]
    # every disjunct counts as open here (thresholds are set below, between the two bounds)
    shared, st2 = alpha.shared_slopes(t.bg, fg, box, st, djs, djs, lambda f: f(), lambda: False, rounds=6)
    base = np.array([fe.bound_forms(st, dj.F)[0, 0] for dj in djs])
    got = np.array([fe.bound_forms(st2, dj.F)[0, 0] for dj in djs])
    return d, sess, t, x0, label, others, region, shared, st, st2, base, got


def test_shared_slopes_tighten_root_crown_and_hold_at_samples(case):
    d, sess, t, x0, label, others, region, shared, st, st2, base, got = case
    assert shared, "no shared slopes chosen"
    for k, (a, u) in shared.items():  # relu lower slopes in [0, 1], only on unstable elements
        assert t.bg.nodes[k].fn == "relu" and np.isnan(u).all()
        s = a[0][~np.isnan(a[0])]
        assert ((s >= 0) & (s <= 1)).all()
        l_, u_ = st.arg[k][0][0], st.arg[k][1][0]
        assert not (~np.isnan(a[0]) & ~((l_ < 0) & (u_ > 0))).any()
    # the optimiser's own objective: the sum of the bounds below 0 (here every disjunct is at t=0)
    assert np.minimum(got, 0).sum() > np.minimum(base, 0).sum() + 1e-3
    assert got.min() > base.min()
    # intermediate bounds: no unstable element's interval grows by much, some shrink
    widths = [(st2.arg[k][1] - st2.arg[k][0]).sum() / (st.arg[k][1] - st.arg[k][0]).sum() for k in shared]
    assert min(widths) < 1.0
    xs = np.clip(x0 + np.random.default_rng(2).uniform(-EPS, EPS, (400, 192)), x0 - EPS, x0 + EPS)
    ys = np.concatenate([sess.run(None, {"X": v.astype(np.float32).reshape(1, 3, 8, 8)})[0] for v in xs])
    m = np.array([(ys[:, label] - ys[:, j]).min() for j in others])
    assert (got <= m + 1e-4).all(), (got, m)  # (onnxruntime in float32: a little slack)


def _cert(case):
    """Root leaves for every disjunct with thresholds between the default and the shared bounds
    (where the shared one is higher): provable with the region's shared slopes only."""
    d, sess, t, x0, label, others, region, shared, st, st2, base, got = case
    ts = [Fraction(float((b + g) / 2)) if g > b + 1e-6 else Fraction(float(b - 1)) for b, g in zip(base, got)]
    return (t, *root_cert(t, region(ts), 192, 10, st2, shared))


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_certificate_with_shared_slopes_replays_and_mutations_fail(case, mode):
    t, spec, cert = _cert(case)
    v = check_vnn(cert, t.bg, spec, mode=mode)
    assert v.ok, v.reason
    entries = cert["regions"][0]["arg_slopes"]
    k0, i0 = entries[0][:2]
    nonfn = next((k for k, n in enumerate(t.bg.nodes) if k and n.kind != "fn"), 0)

    def mutated(f):
        c = json.loads(json.dumps(cert))
        f(c["regions"][0])
        return check_vnn(c, t.bg, spec, mode=mode)

    bad = [
        lambda r: r.pop("arg_slopes"),  # without the shared slopes the default CROWN bound is too low
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "3/2", None]] + entries[1:]),  # relu slope > 1
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "-1/8", None]] + entries[1:]),  # relu slope < 0
        lambda r: r.__setitem__("arg_slopes", [[k0, i0, "1/2", "1/2"]] + entries[1:]),  # a relu upper slope
        lambda r: r.__setitem__("arg_slopes", entries + [entries[0]]),  # an element twice
        lambda r: r.__setitem__("arg_slopes", [[0, 0, "1/2", None]]),  # the input node: no relaxation
        lambda r: r.__setitem__("arg_slopes", [[k0, 10**6, "1/2", None]]),  # no such element
        lambda r: r.__setitem__("arg_slopes", [[nonfn, 0, "1/2", None]]),  # not a fn node
    ]
    # a tightened claim: 3x the search's (it claims half its bound) fails
    c = json.loads(json.dumps(cert))
    leaf = c["regions"][0]["per_disjunct"][0][0][1][0]
    leaf[1] = str(3 * Fraction(leaf[1]))
    assert not check_vnn(c, t.bg, spec, mode=mode).ok
    results = [mutated(f) for f in bad]
    assert not any(r.ok for r in results), [r.reason for r in results]


def test_search_emits_shared_slopes_that_close_a_root_disjunct(case):
    """``graph_relu.bab_region`` on the property above: root CROWN leaves a disjunct open, the
    search's own shared slopes close it at the root, and its certificate replays."""
    import time

    t, spec, _ = _cert(case)
    stats = {}
    entry = gr.bab_region(t.bg, spec.regions[0], time.perf_counter() + 60, stats)
    assert isinstance(entry, dict) and entry.get("arg_slopes"), (entry, stats)
    assert stats["shared_slopes"] > 0
    cert = {"kind": "vnn-unsat", "version": 1, "network": network_id(t), "property": spec.digest(),
            "method": "crown", "regions": [entry]}
    v = check_vnn(cert, t.bg, spec, mode="fast")
    assert v.ok, v.reason


def test_shared_slopes_stop_once_no_open_disjunct_can_close(case):
    """``alpha.shared_slopes``' hopeless rounds: with every disjunct 100 below 0 (no pace can close
    one in the rounds left) the rounds stop after the second (one forward pass each, counted at
    ``until``); with the rule off, all of them run; with the thresholds between the default and the
    shared bounds (closable: ``_cert``'s), more than two run and a disjunct closes at the root."""
    d, sess, t, x0, label, others, region, shared, st, st2, base, got = case
    fg = fe.compiled(t.bg)

    def rounds_run(ts, **kw):
        reg = region(ts)
        djs = [gr.Disjunct(t.bg, reg, j) for j in range(9)]
        calls = []

        def until(f):
            calls.append(1)
            return f()

        sh, s2 = alpha.shared_slopes(t.bg, fg, fe.boxes([reg.lo], [reg.hi]), st, djs, djs, until,
                                     lambda: False, rounds=6, **kw)
        return len(calls), max(float(fe.bound_forms(s2, dj.F)[0].max()) for dj in djs)

    assert rounds_run([Fraction(100)] * 9)[0] == 2
    assert rounds_run([Fraction(100)] * 9, hopeless_after=7)[0] == 6
    ts = [Fraction(float((b + g) / 2)) if g > b + 1e-6 else Fraction(float(b - 1)) for b, g in zip(base, got)]
    n, best = rounds_run(ts)
    assert n > 2 and best > 0
