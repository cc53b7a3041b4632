"""Layer norm's variance floor in the bound table (``engine._State.squares``): a form's positive
terms over one ``square`` node's elements, sum q_i·d_i², are at least min q_i·(c·d)²/||c||² for
any vector c (Cauchy-Schwarz), with c the centred midpoints of the d_i's intervals and c·d bounded
by IBP; layer norm's variance is such a form (TRUST_BOUNDARIES.md, bound table, layer_norm).

Soundness against an independent reference: numpy's float64 variance of the layer norm's input
and torch's ``layer_norm`` at points sampled in the box (corners included) never fall below the
floor / outside the IBP and CROWN bounds, on random graphs whose layer-norm input mixes a linear
part with a ReLU branch (so c·d is a form over nonlinear variables), including near-constant rows
(the floor must then be ~0, and exactly 0 where the row is constant on the box). Mutations: a
floor raised above the truth is caught by the sampled points, and an ``errorbound`` certificate
generated under it is rejected by the checker (ranges "ibp" and "fast").
"""

from fractions import Fraction

import numpy as np
import pytest
import torch

from torchlean.certificates import check, engine
from torchlean.certificates import lower as lw
from torchlean.floats import bound_certificate
from torchlean.spec import Graph, Node, Value
from torchlean.verify import engines

F = Fraction
EPS = 1e-5


def _graph(rng, n, k=4, p=6, spread=1.0, dtype="float64"):
    """x (1, k) -> z = x W + relu(x U) V + s (1, n) -> layer_norm -> y. ``spread`` scales how far
    the rows' entries differ (W's columns are a common column plus spread·noise; 0: z's linear
    part is the same in every entry)."""
    base = rng.normal(0, 1, (k, 1))
    c = {"W": base + spread * rng.normal(0, 1, (k, n)), "U": rng.normal(0, 1, (k, p)),
         "V": rng.normal(0, 0.3 * max(spread, 1e-3), (p, n)), "s": spread * rng.normal(0, 1, (1, n)),
         "lw": rng.normal(1, 0.3, n), "lb": rng.normal(0, 0.3, n)}
    c = {key: v.astype(dtype) for key, v in c.items()}
    nodes = [Node("matmul", ["x", "W"], "h"), Node("matmul", ["x", "U"], "g"), Node("relu", ["g"], "r"),
             Node("matmul", ["r", "V"], "q"), Node("add", ["h", "q"], "h2"), Node("add", ["h2", "s"], "z"),
             Node("layer_norm", ["z", "lw", "lb"], "y", {"eps": EPS})]
    return Graph([Value("x", (1, k), dtype)], c, nodes, ["y"]).check(), c


def _z(c, x):
    return x @ c["W"] + np.maximum(x @ c["U"], 0) @ c["V"] + c["s"]


def _sqrt_node(bg):
    ks = [k for k, nd in enumerate(bg.nodes) if nd.kind == "fn" and nd.fn == "sqrt"]
    assert len(ks) == 1
    return ks[0]


def _points(rng, lo, hi, m=300):
    pts = [lo, hi] + [lo + (hi - lo) * rng.uniform(0, 1, lo.shape) for _ in range(m)]
    return pts + [np.where(rng.random(lo.shape) < 0.5, lo, hi) for _ in range(m // 4)]


def _forward(bg, lo, hi, method="ibp"):
    return engine.forward(bg, [F(v) for v in lo], [F(v) for v in hi], method)


def _no_floor(monkeypatch):
    monkeypatch.setattr(engine._State, "squares", lambda self, f, lo: lo)


@pytest.mark.parametrize("seed", range(12))
def test_floor_below_the_sampled_variance_and_bounds_contain_torch(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 10))
    spread = [1.0, 0.3, 1e-4, 1e-7][seed % 4]  # the last two: near-constant rows
    g, c = _graph(rng, n, spread=spread)
    bg = lw.lower(g.to_dict())
    x0 = rng.uniform(-1, 1, 4)
    r = [0.01, 0.1, 0.5][seed % 3]
    lo, hi = x0 - r, x0 + r
    st = _forward(bg, lo, hi)
    floor = float(st.arg[_sqrt_node(bg)][0][0]) - EPS
    il, iu = engines.exact_ibp(bg, lo.tolist(), hi.tolist())
    cl, cu = engines.exact_crown(bg, lo.tolist(), hi.tolist())
    least = np.inf
    for x in _points(rng, lo, hi):
        z = _z(c, x[None])
        least = min(least, float(z.var()))
        y = torch.nn.functional.layer_norm(torch.tensor(z), (n,), torch.tensor(c["lw"]),
                                           torch.tensor(c["lb"]), EPS)[0].numpy()
        for a, b in ((il, iu), (cl, cu)):
            assert all(float(a[j]) - 1e-9 <= y[j] <= float(b[j]) + 1e-9 for j in range(n))
    assert floor <= least * (1 + 1e-9) + 1e-15
    if spread >= 0.3 and r <= 0.1:  # a box small against the row's spread: the floor is near the truth
        assert floor > 0.5 * least


def test_constant_rows_get_floor_zero():
    """z's entries all equal up to the ReLU branch's zero weights: var = 0 at every point; the
    floor is 0 (c·d's interval contains 0), never above."""
    rng = np.random.default_rng(5)
    g, c = _graph(rng, 5, spread=0.0)
    g.constants["V"] = np.zeros_like(c["V"])
    g.constants["s"] = np.full_like(c["s"], 0.25)
    bg = lw.lower(g.to_dict())
    ks = [k for k, nd in enumerate(bg.nodes) if nd.kind == "fn" and nd.fn == "sqrt"]
    x0 = rng.uniform(-1, 1, 4)
    if ks:  # (the lowering may fold the constant row away entirely)
        st = _forward(bg, x0 - 0.1, x0 + 0.1)
        assert st.arg[ks[0]][0][0] - F(EPS) <= 0


def test_the_floor_binds_and_tightens_the_layer_norm_bounds(monkeypatch):
    """Where the layer norm's input is a form over a ReLU branch, its centred entries' intervals
    reach 0 and IBP's variance bound is small; the floor is well above it (2x at least here), and
    the normalised outputs' bounds are never wider (narrower on some graph: elsewhere the
    sqrt(n - 1) clamp binds both)."""
    narrower = 0
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        g, c = _graph(rng, 8, p=16, spread=0.3)
        bg = lw.lower(g.to_dict())
        x0 = rng.uniform(-1, 1, 4)
        lo, hi = x0 - 0.3, x0 + 0.3
        k = _sqrt_node(bg)
        with_floor = _forward(bg, lo, hi)
        il, iu = engines.exact_ibp(bg, lo.tolist(), hi.tolist())
        with monkeypatch.context() as m:
            m.setattr(engine._State, "squares", lambda self, f, lo: lo)
            without = _forward(bg, lo, hi)
            ol, ou = engines.exact_ibp(bg, lo.tolist(), hi.tolist())
        assert with_floor.arg[k][0][0] > 2 * without.arg[k][0][0]
        assert all(b - a <= d - e for a, b, e, d in zip(il, iu, ol, ou))
        narrower += sum(b - a for a, b in zip(il, iu)) < sum(d - e for e, d in zip(ol, ou))
    assert narrower


def _forge(monkeypatch):
    """A floor raised above the truth: the raise the rule computes, times 4."""
    true = engine._State.squares
    monkeypatch.setattr(engine._State, "squares", lambda self, f, lo: lo + 4 * (true(self, f, lo) - lo))


def test_a_floor_above_the_truth_is_caught_by_the_samples(monkeypatch):
    rng = np.random.default_rng(11)
    g, c = _graph(rng, 6, spread=1.0)
    bg = lw.lower(g.to_dict())
    x0 = rng.uniform(-1, 1, 4)
    lo, hi = x0 - 0.01, x0 + 0.01
    _forge(monkeypatch)
    forged = float(_forward(bg, lo, hi).arg[_sqrt_node(bg)][0][0]) - EPS
    assert any(float(_z(c, x[None]).var()) < forged for x in _points(rng, lo, hi, 50))


@pytest.mark.parametrize("ranges", ["ibp", "fast"])
def test_errorbound_certificate_under_a_forged_floor_is_rejected(monkeypatch, ranges):
    """The error column's layer norm entry reads the bound table's variance floor (its Lipschitz
    constant 1/sqrt(var_lo + eps)); a certificate made with a raised floor has smaller steps, and
    the checker, recomputing the floor, replays larger ones and refuses it."""
    rng = np.random.default_rng(12)
    g, _ = _graph(rng, 8, p=16, spread=0.3, dtype="float32")
    x0 = np.round(rng.uniform(-1, 1, 4) * 16) / 16
    box = [(F(v) - F(1, 8), F(v) + F(1, 8)) for v in x0]
    good = bound_certificate(g, box, "binary32", ranges=ranges)
    assert check(good).ok
    _forge(monkeypatch)
    bad = bound_certificate(g, box, "binary32", ranges=ranges)
    monkeypatch.undo()
    assert max(map(F, bad["statement"]["epsilon"])) < max(map(F, good["statement"]["epsilon"]))
    v = check(bad)
    assert not v.ok and ("replayed" in v.reason or "bound" in v.reason), v.reason


def test_a_var_floor_attribute_in_the_statement_is_not_read(monkeypatch):
    """The floor reaches the error column's layer norm entry as the attribute "var+eps", set by the
    checker from its own engine. A forger writes a raised floor into the statement's IR under that
    name (fingerprint and digest recomputed) and makes the steps with the rule reading it: the
    checker replays with its own floor and refuses the smaller steps."""
    from torchlean.certificates import errorbound as eb
    from torchlean.certificates.core import digest
    from torchlean.floats.errorbound import claims

    rng = np.random.default_rng(12)
    g, _ = _graph(rng, 8, p=16, spread=0.3, dtype="float32")
    x0 = np.round(rng.uniform(-1, 1, 4) * 16) / 16
    box = [(F(v) - F(1, 8), F(v) + F(1, 8)) for v in x0]
    good = bound_certificate(g, box, "binary32", ranges="ibp")
    stmt = good["statement"]
    ln = next(nd for nd in stmt["graph"]["nodes"] if nd["op"] == "layer_norm")
    ln["attrs"]["var+eps"] = [1]  # (an integer reads exactly; the engine's floor here is ~0.064)
    stmt["model"] = eb.model_id(stmt["graph"])
    apply = eb.apply  # the forger's rule: the statement's attribute wins over the engine's floor
    monkeypatch.setattr(eb, "apply", lambda ctx, op, ins, shapes, at, *a: apply(
        ctx, op, ins, shapes, {**at, "var+eps": [F(1)]} if op == "layer_norm" else at, *a))
    steps, stmt["epsilon"] = claims(eb.propagate(stmt))
    monkeypatch.undo()
    bad = {**good, "steps": steps, "digest": digest(stmt)}
    k = [nd["op"] for nd in stmt["graph"]["nodes"]].index("layer_norm")
    assert max(map(F, steps[k])) < max(map(F, good["steps"][k]))  # (the forged floor binds)
    v = check(bad)
    assert not v.ok and "replayed" in v.reason, v.reason


def test_the_error_column_uses_the_floor(monkeypatch):
    """On the same kind of graph the layer norm step's error bound is smaller with the floor than
    with the interval floor alone (``errornorm.var_floor`` of the input ranges), and it covers the
    observed float32 error."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_floats_column import observed

    rng = np.random.default_rng(12)
    g, _ = _graph(rng, 8, p=16, spread=0.3, dtype="float32")
    x0 = np.round(rng.uniform(-1, 1, 4) * 16) / 16
    box = [(F(v) - F(1, 8), F(v) + F(1, 8)) for v in x0]
    new = bound_certificate(g, box, "binary32", ranges="ibp")
    _no_floor(monkeypatch)
    old = bound_certificate(g, box, "binary32", ranges="ibp")
    monkeypatch.undo()
    ln = [nd["op"] for nd in new["statement"]["graph"]["nodes"]].index("layer_norm")
    assert max(map(F, new["steps"][ln])) < max(map(F, old["steps"][ln]))
    eps = np.array([float(F(e)) for e in new["statement"]["epsilon"]])
    assert np.all(observed(g, box, "binary32", n=100) <= eps)


def test_vnn_certificate_needing_a_forged_floor_is_rejected_in_both_modes(monkeypatch):
    """A one-leaf unsat certificate for "y_j <= t" with t the bound only a raised floor gives:
    the exact replay (the true floor) and the fast replay (no floor: looser) both refuse it; with
    t at the true exact bound the exact replay accepts."""
    from torchlean.certificates.bounds import check_vnn
    from torchlean.certificates.lower import fingerprint
    from torchlean.certificates.property import Atom, Region, Spec

    rng = np.random.default_rng(100)
    g, _ = _graph(rng, 8, p=16, spread=0.3)
    bg = lw.lower(g.to_dict())
    x0 = rng.uniform(-1, 1, 4)
    lo, hi = [F(v) for v in x0 - 0.3], [F(v) for v in x0 + 0.3]
    true_hi = engines.exact_crown(bg, lo, hi)[1]
    _forge(monkeypatch)
    forged_hi = engines.exact_crown(bg, lo, hi)[1]
    monkeypatch.undo()
    j = max(range(8), key=lambda i: true_hi[i] - forged_hi[i])
    assert forged_hi[j] < true_hi[j]

    def cert_for(t):
        a = tuple(F(-1) if i == j else F(0) for i in range(8))
        spec = Spec(4, 8, (Region(tuple(lo), tuple(hi), ((Atom(a, -t, False),),)),))  # unsafe: y_j >= t
        beta = F(1, 10 ** 9)
        cert = {"kind": "vnn-unsat", "version": 1, "network": fingerprint(bg), "property": spec.digest(),
                "method": "crown", "regions": [[["leaf", [[0, str(beta)]]]]]}
        return cert, spec

    cert, spec = cert_for((forged_hi[j] + true_hi[j]) / 2)
    for mode in ("exact", "fast"):
        v = check_vnn(cert, bg, spec, mode)
        assert not v.ok, (mode, v.reason)
    cert, spec = cert_for(true_hi[j] + F(1, 10 ** 6))
    assert check_vnn(cert, bg, spec, "exact").ok
