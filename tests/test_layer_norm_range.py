"""Layer norm's range rule in the bound table: every normalised entry (x_i - mu)/sqrt(var + eps)
lies in [-sqrt(n - 1), sqrt(n - 1)] (TRUST_BOUNDARIES.md "Floats"), so the lowering marks that
product node ``within`` and the engines intersect its bounds with the interval.

Soundness against an independent reference: torch's own ``layer_norm`` (float64) at points sampled
in wide boxes, for several n and eps, lies inside the bounds; the clamp binds (IBP alone is wider
than sqrt(n - 1)); an ``errorbound`` certificate generated under a forged, tighter clamp is
rejected by the checker.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from torchlean.certificates import check, engine, errorbound
from torchlean.certificates import lower as lw
from torchlean.certificates.bound_graph import sqrt_up
from torchlean.floats import bound_certificate
from torchlean.spec import Graph, Node, Value
from torchlean.verify import engines

F = Fraction


def _graph(n, eps, rng, affine=True):
    """x (1, n) -> x W -> layer_norm(eps) [-> gamma, beta]: the output is the normalised entries
    (gamma = 1, beta = 0) or their affine image."""
    W = rng.normal(0, 1.0, (n, n))
    w = rng.normal(1, 0.5, n) if affine else np.ones(n)
    b = rng.normal(0, 0.5, n) if affine else np.zeros(n)
    g = Graph([Value("x", (1, n), "float64")], {"W": W, "lw": w, "lb": b},
              [Node("matmul", ["x", "W"], "h"),
               Node("layer_norm", ["h", "lw", "lb"], "y", {"eps": eps})], ["y"]).check()
    return g, W, w, b


def _torch_ln(p, W, w, b, eps):
    h = torch.tensor(p, dtype=torch.float64) @ torch.tensor(W)
    return torch.nn.functional.layer_norm(h, (W.shape[1],), torch.tensor(w), torch.tensor(b), eps)[0].numpy()


def _ln_node(bg):
    nodes = [k for k, nd in enumerate(bg.nodes) if nd.kind == "mul" and "within" in nd.attrs]
    assert len(nodes) == 1
    return nodes[0]


@pytest.mark.parametrize("m", [0, 1, 2, 3, 4, 5, 7, 63, 64, 1023, 10**12 + 39])
def test_sqrt_up_is_the_least_dyadic_above(m):
    c = sqrt_up(m)
    assert c * c >= m
    r = math.isqrt(m)
    if r * r != m:  # within 2^-52 above, and exactly so (one unit less is below)
        assert (c * (1 << 52)).denominator == 1 and (c - F(1, 1 << 52)) ** 2 < m


@pytest.mark.parametrize("n,eps", [(2, 1e-5), (3, 0.1), (5, 1e-5), (8, 1.0), (16, 1e-3)])
def test_clamp_binds_and_contains_torch(n, eps):
    rng = np.random.default_rng(n)
    g, W, w, b = _graph(n, eps, rng, affine=False)
    bg = lw.lower(g.to_dict())
    k = _ln_node(bg)
    c = bg.nodes[k].attrs["within"]
    assert c == sqrt_up(n - 1)
    x0 = rng.uniform(-1, 1, (1, n))
    lo, hi = (x0 - 2).ravel().tolist(), (x0 + 2).ravel().tolist()
    st = engine.forward(bg, [F(v) for v in lo], [F(v) for v in hi], "ibp")
    o = bg.nodes[k].offset
    for i, ((bx, bw)) in enumerate(st.arg[k]):  # the product alone is wider: the clamp binds
        a, z = engine.interval_mul(bx, bw)
        assert z - a > 2 * c
        assert (st.L[o + i], st.U[o + i]) == (-c, c)
    il, iu = engines.exact_ibp(bg, lo, hi)
    cl, cu = engines.exact_crown(bg, lo, hi)
    assert all(u - a <= 2 * c for a, u in zip(il, iu))
    gl, gu = engines.fast_ibp(bg, np.array([lo]), np.array([hi]))
    assert (gu[0] - gl[0] <= 2 * float(c) * (1 + 1e-12)).all()
    # torch's layer_norm at sampled points (corners included) lies inside every bound
    pts = [np.array([lo]), np.array([hi])] + [x0 + rng.uniform(-2, 2, (1, n)) for _ in range(200)]
    pts += [x0 + 2 * np.sign(rng.normal(size=(1, n))) for _ in range(50)]
    worst = 0.0
    for p in pts:
        y = _torch_ln(p, W, w, b, eps)
        worst = max(worst, float(np.abs(y).max()))
        for a, u in ((il, iu), (cl, cu)):
            assert all(float(a[j]) - 1e-9 <= y[j] <= float(u[j]) + 1e-9 for j in range(n))
        assert (gl[0] - 1e-9 <= y).all() and (y <= gu[0] + 1e-9).all()
    assert worst <= math.sqrt(n - 1) + 1e-9


@pytest.mark.parametrize("n,eps", [(4, 1e-5), (6, 0.5)])
def test_affine_layer_norm_bounds_contain_torch(n, eps):
    rng = np.random.default_rng(10 + n)
    g, W, w, b = _graph(n, eps, rng)
    bg = lw.lower(g.to_dict())
    x0 = rng.uniform(-1, 1, (1, n))
    lo, hi = (x0 - 3).ravel().tolist(), (x0 + 3).ravel().tolist()
    il, iu = engines.exact_ibp(bg, lo, hi)
    c = float(sqrt_up(n - 1))
    for j in range(n):  # gamma·[-c, c] + beta, no wider
        assert float(iu[j] - il[j]) <= 2 * c * abs(w[j]) * (1 + 1e-12)
    for _ in range(200):
        y = _torch_ln(x0 + rng.uniform(-3, 3, (1, n)), W, w, b, eps)
        assert all(float(il[j]) - 1e-9 <= y[j] <= float(iu[j]) + 1e-9 for j in range(n))


@pytest.mark.parametrize("forge", ["within", "ball"])
def test_certificate_under_a_forged_tighter_clamp_rejected(monkeypatch, forge):
    """A generator that claims |y_i| <= sqrt(n - 1)/4 (or a row norm <= sqrt(n)/4) gets smaller
    step errors; the checker, with the true facts, replays larger ones and refuses the
    certificate."""
    rng = np.random.default_rng(3)
    n = 8
    W, V = rng.normal(0, 1.0, (n, n)), rng.normal(0, 0.3, (n, 2))
    g = Graph([Value("x", (1, n), "float32")],
              {"W": W.astype(np.float32), "V": V.astype(np.float32),
               "lw": np.ones(n, np.float32), "lb": np.zeros(n, np.float32)},
              [Node("matmul", ["x", "W"], "h"), Node("layer_norm", ["h", "lw", "lb"], "z", {"eps": 1e-5}),
               Node("matmul", ["z", "V"], "s"), Node("tanh", ["s"], "y")], ["y"]).check()
    box = [(F(-2), F(2))] * n
    good = bound_certificate(g, box, "binary32", ranges="ibp")
    assert check(good).ok
    if forge == "within":
        forged = lambda m: sqrt_up(m) / 4  # noqa: E731
        monkeypatch.setattr(lw, "sqrt_up", forged)
        monkeypatch.setattr(errorbound, "sqrt_up", forged)
    else:
        monkeypatch.setattr(engine, "sqrt_up", lambda q: sqrt_up(q) / 4)
    bad = bound_certificate(g, box, "binary32", ranges="ibp")
    monkeypatch.undo()
    assert [F(e) for e in bad["statement"]["epsilon"]] < [F(e) for e in good["statement"]["epsilon"]]
    v = check(bad)
    assert not v.ok and ("replayed" in v.reason or "bound" in v.reason), v.reason


@pytest.mark.parametrize("n,eps", [(4, 1e-5), (9, 0.1), (16, 1e-5)])
def test_ball_rule_binds_and_contains_torch(n, eps):
    """A linear map of the normalised row, sum_i a_i y_i, is bounded by sqrt(n)·||a||_2 (the
    row's norm is <= sqrt(n)): tighter than the per-entry clamp's sqrt(n - 1)·||a||_1, and still
    around torch's values."""
    rng = np.random.default_rng(20 + n)
    W, V = rng.normal(0, 1.0, (n, n)), rng.normal(0, 1.0, (n, 3))
    g = Graph([Value("x", (1, n), "float64")], {"W": W, "V": V, "lw": np.ones(n), "lb": np.zeros(n)},
              [Node("matmul", ["x", "W"], "h"), Node("layer_norm", ["h", "lw", "lb"], "z", {"eps": eps}),
               Node("matmul", ["z", "V"], "y")], ["y"]).check()
    bg = lw.lower(g.to_dict())
    assert bg.nodes[_ln_node(bg)].attrs["ball"] == (n, sqrt_up(n))
    q = F(7, 3)
    assert sqrt_up(q) ** 2 >= q and (sqrt_up(q) - F(1, 3 << 52)) ** 2 < q
    x0 = rng.uniform(-1, 1, (1, n))
    lo, hi = (x0 - 2).ravel().tolist(), (x0 + 2).ravel().tolist()
    il, iu = engines.exact_ibp(bg, lo, hi)
    cl, cu = engines.exact_crown(bg, lo, hi)
    for j in range(3):
        col = V[:, j]
        assert float(iu[j]) <= math.sqrt(n) * np.linalg.norm(col) * (1 + 1e-12)
        assert float(iu[j]) < math.sqrt(n - 1) * np.abs(col).sum()  # the ball binds
    gate = torch.nn.functional.layer_norm
    for _ in range(300):
        p = x0 + rng.uniform(-2, 2, (1, n))
        y = (gate(torch.tensor(p) @ torch.tensor(W), (n,), eps=eps) @ torch.tensor(V))[0].numpy()
        for a, u in ((il, iu), (cl, cu)):
            assert all(float(a[j]) - 1e-9 <= y[j] <= float(u[j]) + 1e-9 for j in range(3))
