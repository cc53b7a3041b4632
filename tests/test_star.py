"""Boxes decided by ReLU splits with LP-optimal multipliers (verify/star.py), and the table path's
leaf margin (any positive bound proves a leaf).

References: the trusted checker (exact rationals and fast float64) must accept every tree and
reject tampered ones (a changed multiplier, a dropped split, a negative multiplier, a raised
claim); the LP's optimum must equal the checker's fast back-substitution with the LP's duals as
the slopes and multipliers (LP duality: the claim star.py rests on); onnxruntime on the ONNX file
(dense sampling) must agree with every verdict, and a counterexample is confirmed by exact
evaluation (the checker's vnn-sat replay) and by onnxruntime.
"""

import copy
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates import fast_engine as fe
from torchlean.certificates import lower
from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.spec.graph import Graph, Node, Value
from torchlean.verify import bab, general, lp, star, table
from torchlean.verify.network import load_graph
from torchlean.verify.tree import combos as _combos

pytestmark = pytest.mark.skipif(not lp.available(), reason="highspy (the lp extra) is not installed")

NET = Path(__file__).parent / "data/star/mlp_3_10_10_1.onnx"
LO, HI = -1.0, 1.0


def _sampled(n: int = 8000) -> tuple[float, float, np.ndarray]:
    """(min, max, argmin) of y0 over the box, by onnxruntime on uniform samples."""
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(str(NET))
    x = np.random.default_rng(0).uniform(LO, HI, (n, 3)).astype(np.float32)
    y = _ort_batch(s, x)
    return float(y.min()), float(y.max()), x[int(y.argmin())]


def _ort_batch(s, x: np.ndarray) -> np.ndarray:
    name = s.get_inputs()[0].name
    return np.array([s.run(None, {name: x[i:i + 1]})[0][0, 0] for i in range(x.shape[0])])


def _spec(b: float) -> Spec:
    lo, hi = (tuple(Fraction(v) for v in (x,) * 3) for x in (LO, HI))
    atom = Atom((Fraction(1),), Fraction(b), False)  # unsafe: y0 <= b
    return Spec(3, 1, (Region(lo, hi, ((atom,),)),))


def _bg():
    return lower.lower(load_graph(NET).to_dict())


def _close(bg, spec, max_nodes=4000):
    region = spec.regions[0]
    obj = star.Objective.of(bg, region, [_combos(len(d)) for d in region.disjuncts])
    lo, hi = fe.boxes([region.lo], [region.hi])
    stats: dict = {}

    def confirm(x):
        q = [Fraction(float(v)) for v in np.clip(x, LO, HI)]
        cert = table.sat_cert(table.Target(None, None, bg=bg), spec, q)
        return q if check_vnn(cert, bg, spec).ok else None

    out = star.close_box(bg, obj, lo[0], hi[0], time.perf_counter() + 120, stats, confirm,
                         max_nodes=max_nodes)
    return out, stats


def _cert(bg, spec, tree) -> dict:
    return {"kind": "vnn-unsat", "version": 1, "network": lower.fingerprint(bg), "property": spec.digest(),
            "method": "crown", "regions": [tree.preorder()]}


@pytest.fixture(scope="module")
def unsat_case():
    lo_s, hi_s, _ = _sampled()
    bg = _bg()
    spec = _spec(lo_s - 0.02 * (hi_s - lo_s))  # just under the sampled minimum: root CROWN fails
    tree, stats = _close(bg, spec)
    assert isinstance(tree, star.SplitTree), stats
    return bg, spec, _cert(bg, spec, tree), stats


def _leaves(cert):
    return [e for e in cert["regions"][0] if e[0] == "leaf"]


def test_lp_leaves_replay_exact_and_fast(unsat_case):
    bg, spec, cert, stats = unsat_case
    assert stats["star_lps"] > 0  # CROWN alone did not close every node
    extras = [p[2] for e in _leaves(cert) for p in e[1] if len(p) > 2]
    assert any("slopes" in x for x in extras) and any("mult" in x for x in extras)
    assert any(e[0] == "relu" for e in cert["regions"][0])
    for mode in ("exact", "fast"):
        v = check_vnn(cert, bg, spec, mode=mode)
        assert v.ok, (mode, v.reason)


def test_lp_optimum_is_the_replayed_bound():
    """At the root box and at split subproblems: the LP's minimum equals the checker's fast
    back-substitution with the LP's α (slopes) and β (multipliers), and is at least CROWN's."""
    bg = _bg()
    spec = _spec(0.0)
    region = spec.regions[0]
    obj = star.Objective.of(bg, region, [_combos(1)])
    g = star._graph(bg)
    lo, hi = fe.boxes([region.lo], [region.hi])
    from torchlean.certificates.fast_vnn import phase_arrays

    relu = [k for k, n in enumerate(bg.nodes) if n.kind == "fn"]
    checked = 0
    for path in ({}, {(relu[0], 0): 1}, {(relu[0], 0): 0, (relu[1], 3): 1}, {(relu[1], 2): 0}):
        st = fe.forward(fe.compiled(bg), lo, hi, "crown", phase_arrays(bg, [path]))
        crown = float(fe.bound_forms(st, obj.F)[0, 0])
        sub = star.SubLP(g, st, 0, path)
        status, value, info = sub.solve(obj.A[0], float(obj.c[0]))
        if status != "optimal":
            continue
        _, alpha, beta, _ = info
        ex, fsl, mult = star._extras(g, alpha, beta)
        replay = star._replay(bg, st, 0, obj.forms[0], fsl, mult, path)
        assert value >= crown - 1e-9
        assert abs(replay - value) <= 1e-5 * (1 + abs(value)), (path, value, replay)
        checked += 1
    assert checked >= 3


def _subtree_end(pre: list, i: int) -> int:
    """Index after the subtree that starts at preorder entry i."""
    need = 1
    while need:
        need += 1 if pre[i][0] in ("split", "relu") else -1
        i += 1
    return i


def test_mutations_rejected(unsat_case):
    bg, spec, cert, _ = unsat_case
    pre = cert["regions"][0]
    # a changed multiplier (far larger than the LP's): the bound falls under the claim
    i = next(n for n, e in enumerate(pre)
             if e[0] == "leaf" and any(len(p) > 2 and "mult" in p[2] for p in e[1]))
    bad = copy.deepcopy(cert)
    proof = next(p for p in bad["regions"][0][i][1] if len(p) > 2 and "mult" in p[2])
    proof[2]["mult"][0][2] = str(Fraction(proof[2]["mult"][0][2]) * 1000 + 1000)
    # a negative multiplier (wrong sign)
    neg = copy.deepcopy(cert)
    proof = next(p for p in neg["regions"][0][i][1] if len(p) > 2 and "mult" in p[2])
    proof[2]["mult"][0][2] = str(-Fraction(proof[2]["mult"][0][2]))
    # a dropped split: a relu split replaced by its active subtree (whose leaves lose the phase)
    key = proof[2]["mult"][0][:2]
    j = max(n for n, e in enumerate(pre[:i]) if e[0] == "relu" and e[1:] == key)
    inactive_end = _subtree_end(pre, j + 1)
    drop = copy.deepcopy(cert)
    drop["regions"][0] = pre[:j] + pre[inactive_end:]
    # a raised claim
    up = copy.deepcopy(cert)
    leaf = next(e for e in up["regions"][0] if e[0] == "leaf")
    leaf[1][0][1] = str(Fraction(leaf[1][0][1]) * 4)
    for name, m in (("mult", bad), ("sign", neg), ("drop", drop), ("claim", up)):
        for mode in ("exact", "fast"):
            v = check_vnn(m, bg, spec, mode=mode)
            assert not v.ok, (name, mode)


def test_lp_point_is_a_confirmed_counterexample():
    lo_s, hi_s, _ = _sampled()
    bg = _bg()
    spec = _spec(lo_s + 0.01 * (hi_s - lo_s))  # sampled points fall under it: sat
    out, _ = _close(bg, spec)
    assert isinstance(out, list) and all(isinstance(v, Fraction) for v in out)
    cert = table.sat_cert(table.Target(None, None, bg=bg), spec, out)
    assert check_vnn(cert, bg, spec).ok  # exact evaluation
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(str(NET))
    y = float(_ort_batch(s, np.array([[float(v) for v in out]], dtype=np.float32))[0])
    assert y <= float(spec.regions[0].disjuncts[0][0].b) + 1e-5


def test_stall_trigger_grafts_star_trees(unsat_case, monkeypatch):
    """With the trigger on (every open box), the table path's input-split search grafts the
    ReLU-split trees under its boxes, and the certificate replays."""
    bg, spec, _, _ = unsat_case
    monkeypatch.setattr(star, "STALL_DEPTH", 0)
    monkeypatch.setattr(star, "RETRY", 1)
    res = bab.verify(bg, spec, timeout=60, attack_first=False)
    assert res.verdict == "unsat" and res.stats.get("star_closed", 0) >= 1, res.stats
    assert any(e[0] == "relu" for e in res.cert["regions"][0])
    for mode in ("exact", "fast"):
        assert check_vnn(res.cert, bg, spec, mode=mode).ok


def _flat_graph() -> Graph:
    """2 -> 4 -> 1 with every hidden ReLU dead on [-1, 1]^2 (biases -10): y0 = 0.25 exactly."""
    W0 = np.full((2, 4), 0.5, dtype=np.float32)
    b0 = np.full((4,), -10.0, dtype=np.float32)
    W1 = np.ones((4, 1), dtype=np.float32)
    b1 = np.array([0.25], dtype=np.float32)
    nodes = [Node("matmul", ["x", "W0"], "m0"), Node("add", ["m0", "b0"], "z0"), Node("relu", ["z0"], "h0"),
             Node("matmul", ["h0", "W1"], "m1"), Node("add", ["m1", "b1"], "y")]
    consts = {"W0": W0, "b0": b0, "W1": W1, "b1": b1}
    return Graph([Value("x", (1, 2), "float32")], consts, nodes, ["y"]).check()


def test_flat_output_margin_2e9_is_proved_on_the_table_path():
    """An output flat at its minimum over the box, threshold 2e-9 under it (what the generator's
    tight-unsat instances with a flat output are): a bound of 2e-9 proves the box. Before, the
    table path's leaf margin (1e-8) refused every box down to the float limit."""
    g = _flat_graph()
    lo, hi = (tuple(Fraction(v) for v in (x, x)) for x in (LO, HI))
    atom = Atom((Fraction(1),), Fraction(1, 4) - Fraction(2, 10**9), False)  # unsafe: y0 <= 0.25 - 2e-9
    spec = Spec(2, 1, (Region(lo, hi, ((atom,),)),))
    bg = lower.lower(g.to_dict())
    res = bab.verify(bg, spec, timeout=20)
    assert res.verdict == "unsat", res.stats
    t = table.target(g)
    res2 = general.verify_target(t, spec, timeout=20)
    assert res2.verdict == "unsat", res2.stats
    for cert, model in ((res.cert, bg), (res2.cert, t.bg)):
        for mode in ("exact", "fast"):
            assert check_vnn(cert, model, spec, mode=mode).ok
