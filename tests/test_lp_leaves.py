"""Exact LP leaves (verify/lp.py): a box decided by ReLU-phase splits whose fully phase-fixed leaves
are closed by HiGHS, the duals recorded as the certificate's split multipliers ("mult").

References: the checker (exact rationals and fast float64) must accept the proofs and reject every
tampered one; each LP minimum is compared with an independent exact minimum (vertex enumeration
over the leaf's polygon in Fractions, on a 2-input network, with the network evaluated exactly);
LP counterexamples are confirmed by exact evaluation and by onnxruntime on the exported network.
"""

import copy
import itertools
from fractions import Fraction

import numpy as np
import pytest
from test_bounds import random_graph

from torchlean.certificates import fast
from torchlean.certificates.bounds import check_vnn, hidden_widths, leaves, objective_steps
from torchlean.certificates.fast_crown import crown_bounds
from torchlean.certificates.network import Affine, evaluate, fingerprint, network_from_ir
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.verify import bab, lp
from torchlean.verify.network import float_net

pytestmark = pytest.mark.skipif(not lp.available(), reason="highspy (the lp extra) is not installed")

SEED = 7
BOX = (-1.0, 1.0)


def _setup(b: Fraction, seed: int = SEED):
    """A 2-input, 8-8-1 ReLU network and the property "y0 <= b" on the box [-1, 1]^2."""
    rng = np.random.default_rng(seed)
    g = random_graph(rng, (2, 8, 8, 1))
    net = network_from_ir(g.to_dict())
    lo, hi = (tuple(Fraction(v) for v in (x, x)) for x in BOX)
    atom = Atom((Fraction(1),), b, False)  # y0 <= b (the unsafe set)
    spec = Spec(2, 1, (Region(lo, hi, ((atom,),)),))
    return g, net, spec


def _close(net, spec, deadline=60.0):
    region = spec.regions[0]
    combos = [bab._combos(len(d)) for d in region.disjuncts]
    steps, index = objective_steps(net, region, combos)
    layers = fast.prepare(steps)
    groups = [(min(ix.values()), max(ix.values()) + 1) for ix in index]
    names = [list(cs) for cs in combos]
    lo, hi = np.array([BOX[0]] * 2), np.array([BOX[1]] * 2)
    fnet = float_net(net)
    stats: dict = {}

    def confirm(x):
        return lp.counterexample(net, fnet, spec, region, x, lo, hi)

    import time

    out = lp.close_box(layers, hidden_widths(net), lo, hi, groups, names, time.perf_counter() + deadline,
                       stats, confirm, max_nodes=4096)
    return out, stats, layers


def _grid_min(net) -> float:
    xs = np.linspace(*BOX, 201)
    fnet = float_net(net)
    pts = np.array(list(itertools.product(xs, xs)))
    return float(fnet.forward(pts)[:, 0].min())


def _cert(net, spec, tree):
    return {"kind": "vnn-unsat", "version": 1, "network": fingerprint(net), "property": spec.digest(),
            "method": "crown", "regions": [tree.preorder()]}


@pytest.fixture(scope="module")
def proved():
    g, net, spec0 = _setup(Fraction(0))
    b = Fraction(_grid_min(net) - 0.02).limit_denominator(1000)
    g, net, spec = _setup(b)
    out, stats, layers = _close(net, spec)
    assert isinstance(out, lp.SplitTree), out
    return net, spec, _cert(net, spec, out), stats, layers


def test_lp_leaves_accepted_exact_and_fast(proved):
    net, spec, cert, stats, _ = proved
    assert stats.get("lp_leaves", 0) >= 1  # some leaf needed the LP's multipliers
    assert any(n[0] == "relu" for n in cert["regions"][0])
    with_mult = [n for n in cert["regions"][0] if n[0] == "leaf" and len(n[1][0]) == 3]
    assert with_mult and all("mult" in n[1][0][2] for n in with_mult)
    for mode in ("exact", "fast"):
        v = check_vnn(cert, net, spec, mode=mode)
        assert v.ok, (mode, v.reason)
    # CROWN alone on the whole box does not prove it (so the test exercises the LP leaves)
    assert crown_bounds(proved[4], np.array([[BOX[0]] * 2]), np.array([[BOX[1]] * 2]))[0, 0] < 0


def _mult_leaf(tree):
    return next(i for i, n in enumerate(tree)
                if n[0] == "leaf" and len(n[1][0]) == 3 and n[1][0][2].get("mult"))


def _subtree_end(tree, i):
    """Index after the subtree starting at entry i (preorder)."""
    need = 1
    while need:
        need += 1 if tree[i][0] in ("split", "relu") else -1
        i += 1
    return i


def _mutations(cert, net):
    tree = cert["regions"][0]
    i = _mult_leaf(tree)
    widths = hidden_widths(net)
    lo, hi = [Fraction(-1)] * 2, [Fraction(1)] * 2
    phases = [ph for _, _, (_, _, ph) in leaves(tree, lo, hi, widths)]
    leaf_no = sum(1 for n in tree[:i] if n[0] == "leaf")
    unsplit = next([k, j] for k, w in enumerate(widths) for j in range(w) if (k, j) not in phases[leaf_no])
    out = {}

    def mutate(name, fn):
        c = copy.deepcopy(cert)
        fn(c["regions"][0][i][1][0][2]["mult"], c["regions"][0])
        out[name] = c

    mutate("zero multiplier", lambda m, t: [e.__setitem__(2, "0") for e in m])
    mutate("negative multiplier", lambda m, t: m[0].__setitem__(2, "-" + m[0][2]))
    mutate("unsplit neuron", lambda m, t: m.append([*unsplit, "1/2"]))
    mutate("dropped multiplier", lambda m, t: m.clear())

    # the ReLU split just above the leaf with its two subtrees swapped (every phase below flips)
    def swap(m, t):
        p = max(k for k in range(i) if t[k][0] == "relu" and _subtree_end(t, k) > i)
        a0 = p + 1
        a1 = _subtree_end(t, a0)
        b1 = _subtree_end(t, a1)
        t[a0:b1] = t[a1:b1] + t[a0:a1]

    mutate("flipped branch order", swap)
    return out


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_lp_leaf_mutations_rejected(proved, mode):
    net, spec, cert, _, _ = proved
    for name, bad in _mutations(cert, net).items():
        v = check_vnn(bad, net, spec, mode=mode)
        assert not v.ok, (mode, name)


def _exact_min_on_region(net, phases_all, C_row):
    """Exact min of the network's output over {x in box, every neuron in its given phase}: the
    minimum over the vertices of that polygon (intersections of pairs of its lines, in Fractions),
    the network evaluated exactly there; None for an empty polygon."""
    # exact pre-activation maps with all phases fixed
    A = [[Fraction(1), Fraction(0)], [Fraction(0), Fraction(1)]]
    b = [Fraction(0), Fraction(0)]
    lines = []  # (a, c): a·x + c >= 0
    for k, s in enumerate(x for x in net.steps if isinstance(x, Affine)):
        A2 = [[sum(m * A[j][col] for j, m in enumerate(row)) for col in range(2)] for row in s.M]
        b2 = [sum(m * b[j] for j, m in enumerate(row)) + c for row, c in zip(s.M, s.c)]
        if k == len(hidden_widths(net)):
            break
        on = [phases_all[k][i] for i in range(len(s.c))]
        for i in range(len(s.c)):
            sg = 1 if on[i] else -1
            lines.append(([sg * v for v in A2[i]], sg * b2[i]))
        A = [r if o else [Fraction(0)] * 2 for r, o in zip(A2, on)]
        b = [v if o else Fraction(0) for v, o in zip(b2, on)]
    for d in range(2):
        lines.append(([Fraction(int(d == 0)), Fraction(int(d == 1))], Fraction(1)))  # x_d >= -1
        lines.append(([-Fraction(int(d == 0)), -Fraction(int(d == 1))], Fraction(1)))  # x_d <= 1
    best = None
    for (a1, c1), (a2, c2) in itertools.combinations(lines, 2):
        det = a1[0] * a2[1] - a1[1] * a2[0]
        if det == 0:
            continue
        x = [(-c1 * a2[1] + c2 * a1[1]) / det, (-a1[0] * c2 + a2[0] * c1) / det]
        if all(a[0] * x[0] + a[1] * x[1] + c >= 0 for a, c in lines):
            y = evaluate(net, x)[0]
            best = y if best is None or y < best else best
    return best


def test_lp_value_equals_exact_vertex_minimum():
    rng = np.random.default_rng(3)
    g, net, spec = _setup(Fraction(0))
    steps, _ = objective_steps(net, spec.regions[0])
    layers = fast.prepare(steps)
    widths = hidden_widths(net)
    fnet = float_net(net)
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    checked = 0
    for _ in range(6):
        x0 = rng.uniform(-1, 1, 2)
        h, acts = x0, []
        for W, c in fnet.layers[:-1]:
            z = W @ h + c
            acts.append(z > 0)
            h = np.maximum(z, 0)
        active = np.concatenate(acts)
        offs = np.cumsum((0, *widths))
        split = [(k, i, 1 if active[offs[k] + i] else -1)
                 for k in range(len(widths)) for i in range(widths[k])]
        leaf = lp.LeafLP(layers, widths, lo, hi, active, split)
        status, value, x, q = leaf.solve(0)
        exact = _exact_min_on_region(net, [acts[k].tolist() for k in range(len(widths))], None)
        assert exact is not None and status == "optimal"
        assert abs(value - (float(exact) - float(spec.regions[0].disjuncts[0][0].b))) < 1e-7
        # the duals certify it: min over the box of f - Σ q·sgn·z is the LP value (strong duality)
        mult = np.zeros((1, 1, int(offs[-1])))
        mult[0, 0, [offs[k] + i for k, i, _ in split]] = np.maximum(q, 0)
        ph = np.where(active, 1, 0).astype(np.int8)[None]
        got = crown_bounds(layers, lo[None], hi[None], phases=ph, mult=mult)[0, 0]
        assert abs(got - value) < 1e-6
        checked += 1
    assert checked == 6


def test_lp_counterexample_confirmed_by_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    from torchlean.bridge._onnx_export import export_onnx

    g, net, _ = _setup(Fraction(0))
    b = Fraction(_grid_min(net) + 1e-3).limit_denominator(10**6)  # just above the minimum: sat
    g, net, spec = _setup(b)
    out, stats, _ = _close(net, spec)
    assert isinstance(out, list), out
    y = evaluate(net, out)[0]
    assert y <= b and all(Fraction(-1) <= v <= Fraction(1) for v in out)
    sess = ort.InferenceSession(export_onnx(g).SerializeToString())
    name = sess.get_inputs()[0].name
    y_ort = sess.run(None, {name: np.array([[float(v) for v in out]], dtype=np.float32)})[0]
    assert abs(float(y_ort.ravel()[0]) - float(y)) < 1e-5 and float(y_ort.ravel()[0]) <= float(b) + 1e-5


def _relu_instance(b: Fraction):
    """A 20-input 10-10-1 network (so ``bab`` splits ReLUs: ``relu_bab``) and "y0 <= b" on
    [-0.3, 0.3]^20; b just below the minimum (unsat) or above it (sat), found by the search."""
    rng = np.random.default_rng(4)
    g = random_graph(rng, (20, 10, 10, 1))
    net = network_from_ir(g.to_dict())
    box = tuple(Fraction(-3, 10) for _ in range(20)), tuple(Fraction(3, 10) for _ in range(20))
    return g, net, Spec(20, 1, (Region(*box, ((Atom((Fraction(1),), b, False),),)),))


def test_relu_bab_lp_leaves_prove_what_gradient_beta_cannot(monkeypatch):
    assert bab.INPUT_SPLIT_MAX < 20
    g, net, spec = _relu_instance(Fraction(-124755443, 241222856))
    res = bab.verify(net, spec, timeout=30)
    assert res.verdict == "unsat" and res.stats.get("lp_leaves", 0) >= 1
    for mode in ("exact", "fast"):
        v = check_vnn(res.cert, net, spec, mode=mode)
        assert v.ok, (mode, v.reason)
    monkeypatch.setattr(lp, "available", lambda: False)  # the search before LP leaves: it gives up
    assert bab.verify(net, spec, timeout=30, attack_first=False).verdict == "timeout"


def test_relu_bab_lp_counterexample(monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    from torchlean.bridge._onnx_export import export_onnx
    from torchlean.verify import attack

    b = Fraction(-4956807857557458, 10**16)
    g, net, spec = _relu_instance(b)
    # the falsification alongside the search finds this point too: switched off, the LP leaf must
    monkeypatch.setattr(attack.InSearch, "root", lambda self, *a, **k: None)
    monkeypatch.setattr(attack.InSearch, "step", lambda self, *a, **k: None)
    res = bab.verify(net, spec, timeout=30, attack_first=False)
    assert res.verdict == "sat" and res.stats.get("lps", 0) >= 1  # found by an LP leaf
    assert check_vnn(res.cert, net, spec).ok
    y = evaluate(net, res.x)[0]
    assert y <= b
    sess = ort.InferenceSession(export_onnx(g).SerializeToString())
    name = sess.get_inputs()[0].name
    y_ort = sess.run(None, {name: np.array([[float(v) for v in res.x]], dtype=np.float32)})[0]
    assert abs(float(y_ort.ravel()[0]) - float(y)) < 1e-5
    monkeypatch.setattr(lp, "available", lambda: False)
    assert bab.verify(net, spec, timeout=30, attack_first=False).verdict == "timeout"


def test_input_split_search_grafts_lp_boxes(monkeypatch):
    """The input-split search hands boxes with few unstable ReLUs to ``lp.close_box`` (here from
    the start): ReLU splits under input splits, replayed in both modes."""
    g, net, spec0 = _setup(Fraction(0))
    g, net, spec = _setup(Fraction(_grid_min(net) - 0.002).limit_denominator(10**6))
    monkeypatch.setattr(lp, "AFTER_BOXES", 0)
    monkeypatch.setattr(lp, "MAX_UNSTABLE", 6)
    res = bab.verify(net, spec, timeout=60)
    assert res.verdict == "unsat" and res.stats.get("lp_closed", 0) >= 1
    tree = res.cert["regions"][0]
    first = next(i for i, n in enumerate(tree) if n[0] == "relu")
    assert any(n[0] == "split" for n in tree[:first])  # below an input split
    assert any(n[0] == "leaf" and len(n[1][0]) == 3 for n in tree)  # with LP multipliers
    for mode in ("exact", "fast"):
        v = check_vnn(res.cert, net, spec, mode=mode)
        assert v.ok, (mode, v.reason)


def test_highs_banner_kept_off_stdout():
    """HiGHS prints a banner on the process's stdout when its first instance is made; the CLI
    prints its verdict there, so ``lp`` keeps it off."""
    import subprocess
    import sys

    code = "from torchlean.verify import lp; lp._highs(); lp._highs(); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stdout


def test_without_highspy_the_search_is_unchanged(monkeypatch):
    """highspy is an optional extra: without it the searches are the ones before LP leaves."""
    g, net, spec0 = _setup(Fraction(0))
    g, net, spec = _setup(Fraction(_grid_min(net) - 0.002).limit_denominator(10**6))
    monkeypatch.setattr(lp, "AFTER_BOXES", 0)
    monkeypatch.setattr(lp, "MAX_UNSTABLE", -1)
    before = bab.verify(net, spec, timeout=60)
    monkeypatch.setattr(lp, "MAX_UNSTABLE", 6)
    monkeypatch.setattr(lp, "_HS", [None])  # as if the import had failed
    assert not lp.available()
    after = bab.verify(net, spec, timeout=60)
    assert before.verdict == after.verdict == "unsat"
    assert after.cert["regions"] == before.cert["regions"]
    assert not any(n[0] == "relu" for n in after.cert["regions"][0])
