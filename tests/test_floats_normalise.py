"""Layer norm's normalisation and softmax as whole entries of the rounding-error column
(``certificates/errornorm.py``): the variance floor against brute force, epsilon against the
observed float32 / bfloat16 error on random layer_norm and softmax graphs (property style), the new
entries against the per-operation composition they replace, and mutations of the certificates."""

from __future__ import annotations

import copy
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates import check, errorbound, errornorm
from torchlean.certificates.core import digest
from torchlean.floats import bound_certificate, epsilons

sys.path.insert(0, str(Path(__file__).parent))
from test_floats_column import as32, box_of, observed  # noqa: E402

# -- the variance floor ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(20))
def test_var_floor_is_the_least_variance_of_the_box(seed):
    """var_floor <= var(x) at sampled points of the box (including the corners nearest a common
    value), and it is the minimum: a dense grid over m of (1/n) sum dist(m, I_i)^2 (each value an
    upper bound of the least variance: the x_i nearest m) never goes below it, and comes within
    the grid's resolution of it."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    mid = rng.normal(0, 1, n)
    rad = rng.uniform(0, 1.2, n) * (rng.random(n) < 0.8)  # some points (zero-width intervals)
    ranges = [(Fraction(float(m - r)), Fraction(float(m + r))) for m, r in zip(mid, rad)]
    lo = np.array([float(a) for a, _ in ranges])
    hi = np.array([float(b) for _, b in ranges])
    floor = float(errornorm.var_floor(ranges))
    x = lo + (hi - lo) * rng.uniform(0, 1, (4000, n))
    assert np.all(x.var(axis=1) >= floor - 1e-12)
    ms = np.linspace(lo.min() - 1, hi.max() + 1, 40001)
    d = np.maximum(0, np.maximum(lo[None] - ms[:, None], ms[:, None] - hi[None]))
    grid = (d ** 2).sum(1) / n
    assert grid.min() >= floor - 1e-12
    assert grid.min() <= floor + 1e-6 * (1 + floor)
    # the grid's best x (each x_i nearest m*) is a point of the box with at most that variance
    v = np.clip(ms[grid.argmin()], lo, hi).var()
    assert floor - 1e-12 <= v <= grid.min() + 1e-12


def test_var_floor_is_zero_when_the_intervals_share_a_point():
    assert errornorm.var_floor([(Fraction(-1), Fraction(1)), (Fraction(0), Fraction(3))]) == 0
    # two points: var of {0, 2} is 1, exactly
    assert errornorm.var_floor([(Fraction(0), Fraction(0)), (Fraction(2), Fraction(2))]) == 1


# -- random layer_norm and softmax graphs ----------------------------------------------------------

def _ln_graph(rng, n=6, mean_shift=0.0, eps=1e-5):
    """x (1, 4) -> x W + shift (1, n) -> layer_norm (w, b random) -> matmul V (1, 2)."""
    c = {"W": rng.normal(0, 0.8, (4, n)), "S": rng.normal(mean_shift, 0.3, (1, n)),
         "lw": rng.normal(1, 0.3, n), "lb": rng.normal(0, 0.3, n), "V": rng.normal(0, 0.6, (n, 2))}
    nodes = [("matmul", ["x", "W"], "h"), ("add", ["h", "S"], "h2"),
             ("layer_norm", ["h2", "lw", "lb"], "z", {"normalized_ndim": 1, "eps": eps}),
             ("matmul", ["z", "V"], "y")]
    return as32(nodes, c)


def _softmax_graph(rng, n=6, scale=2.0):
    """x (1, 4) -> tanh-free scores x W (1, n), scaled wide -> softmax -> matmul V (1, 2)."""
    c = {"W": rng.normal(0, scale, (4, n)), "V": rng.normal(0, 1.0, (n, 2))}
    nodes = [("matmul", ["x", "W"], "h"), ("softmax", ["h"], "p", {"axis": -1}), ("matmul", ["p", "V"], "y")]
    return as32(nodes, c)


def _certify(g, box, fmt):
    cert = bound_certificate(g, box, fmt, ranges="ibp")
    v = check(cert)
    assert v.ok, v.reason
    return cert, np.array([float(e) for e in epsilons(cert)])


@pytest.mark.parametrize("seed", range(10))
def test_layer_norm_epsilon_covers_the_observed_error(seed):
    rng = np.random.default_rng(300 + seed)
    fmt = ["binary32", "bfloat16"][seed % 2]
    g = _ln_graph(rng, n=int(rng.integers(3, 9)), mean_shift=[0.0, 4.0][seed % 3 == 0],
                  eps=[1e-5, 1e-3][seed % 4 == 1])
    box = box_of(rng, (1, 4), Fraction(1, 4) if seed % 2 else Fraction(1, 64))
    _, eps = _certify(g, box, fmt)
    assert np.all(observed(g, box, fmt, n=120) <= eps)


@pytest.mark.parametrize("seed", range(8))
def test_softmax_epsilon_covers_the_observed_error(seed):
    rng = np.random.default_rng(400 + seed)
    fmt = ["binary32", "bfloat16"][seed % 2]
    g = _softmax_graph(rng, n=int(rng.integers(2, 9)), scale=[0.5, 4.0, 30.0][seed % 3])
    box = box_of(rng, (1, 4), Fraction(1, 8))
    _, eps = _certify(g, box, fmt)
    assert np.all(observed(g, box, fmt, n=120) <= eps)


def _without(monkeypatch, what):
    """The column with the whole entry ``what`` switched off (the per-operation composition)."""
    if what == "layer_norm":
        monkeypatch.setattr(errorbound, "normalise", lambda *a, **k: None)
    else:
        monkeypatch.setattr(errorbound, "softmax_ratio", lambda ctx, xs, *a: [Fraction(10 ** 9)] * len(xs))
        monkeypatch.setattr(errorbound, "softmax_relational", lambda *a: None)  # (h-tfeps' entry too)


def test_the_layer_norm_entry_is_used_and_tighter(monkeypatch):
    """On a row whose variance's range reaches 0 (IBP) the composed entry charges the variance's
    error times the slope of 1/sqrt near 0; the one-step entry is far below it (and on a graph
    with an input box away from constant rows it uses the variance floor)."""
    rng = np.random.default_rng(7)
    g = _ln_graph(rng, n=8, mean_shift=3.0)
    box = box_of(rng, (1, 4), Fraction(1, 4))
    cert, new = _certify(g, box, "binary32")
    ln = [n["op"] for n in cert["statement"]["graph"]["nodes"]].index("layer_norm")
    _without(monkeypatch, "layer_norm")
    old_cert, old = _certify(g, box, "binary32")
    assert new.max() * 10 < old.max()
    assert max(map(Fraction, cert["steps"][ln])) * 10 < max(map(Fraction, old_cert["steps"][ln]))


def test_the_layer_norm_rows_common_factor_is_one_source(monkeypatch):
    """The normalised row's common factor F - 1 (the variance's, sqrt's and 1/s~'s roundings, one
    per row) is ONE source shared by the row's outputs, with coefficient the midpoint of H(v)_i: a
    later matmul sums it by sign. Against the same bound with that term collapsed per element
    (each output's own constant, as before h-trans): never looser, tighter here, and both cover the
    observed float32 error; a narrow wide row (n = 32) on a small box, where the factor dominates."""
    rng = np.random.default_rng(11)
    g = _ln_graph(rng, n=32)
    box = box_of(rng, (1, 4), Fraction(1, 256))
    cert, new = _certify(g, box, "binary32")
    ln = [n["op"] for n in cert["statement"]["graph"]["nodes"]].index("layer_norm")
    honest = errornorm.normalise

    def collapsed(ctx, *a):
        ys = honest(ctx, *a)
        return None if ys is None else [ctx.make(y.lo, y.hi, [], Fraction(0), y.E) for y in ys]

    monkeypatch.setattr(errorbound, "normalise", collapsed)
    old_cert, old = _certify(g, box, "binary32")
    monkeypatch.setattr(errorbound, "normalise", honest)
    same = [float(Fraction(a) / Fraction(b)) for a, b in zip(cert["steps"][ln], old_cert["steps"][ln])]
    assert np.allclose(same, 1, rtol=1e-9)  # (the same per-element bounds, up to their last bit)
    assert np.all(new <= old) and new.max() * 1.2 < old.max(), (new, old)
    assert np.all(observed(g, box, "binary32", n=120) <= new)


def test_the_softmax_ratio_rule_is_used_and_tighter(monkeypatch):
    """Wide scores (error ~ u * 100s): x - max's error carries the max's error in the composed
    entry; in ratios it cancels (the relational entry, h-tfeps, off in both runs)."""
    monkeypatch.setattr(errorbound, "softmax_relational", lambda *a: None)
    rng = np.random.default_rng(8)
    g = _softmax_graph(rng, n=6, scale=30.0)
    box = box_of(rng, (1, 4), Fraction(1, 8))
    _, new = _certify(g, box, "binary32")
    _without(monkeypatch, "softmax")
    _, old = _certify(g, box, "binary32")
    assert np.all(new <= old) and new.max() * 1.5 < old.max()


# -- mutations ------------------------------------------------------------------------------------

def _mutants(cert, op):
    nodes = cert["statement"]["graph"]["nodes"]
    k = [n["op"] for n in nodes].index(op)
    bad = copy.deepcopy(cert)  # the entry's steps shrunk
    bad["steps"][k] = [str(Fraction(e) / 2) for e in bad["steps"][k]]
    yield bad
    bad = copy.deepcopy(cert)  # the entry's steps claimed for the node before it (a wrong node)
    bad["steps"][k - 1], bad["steps"][k] = bad["steps"][k], bad["steps"][k - 1]
    yield bad
    bad = copy.deepcopy(cert)  # one element's bound of the entry claimed for another (reversed)
    bad["steps"][k] = bad["steps"][k][::-1]
    if bad["steps"][k] != cert["steps"][k]:
        yield bad
    bad = copy.deepcopy(cert)  # a shrunk epsilon
    bad["statement"]["epsilon"] = [str(Fraction(e) * 9 / 10) for e in bad["statement"]["epsilon"]]
    bad["digest"] = digest(bad["statement"])
    yield bad
    if op == "layer_norm":
        bad = copy.deepcopy(cert)  # the graph changed under the claim (the statement's eps attribute)
        bad["statement"]["graph"]["nodes"][k]["attrs"]["eps"] = 1.0
        bad["digest"] = digest(bad["statement"])
        yield bad


@pytest.mark.parametrize("op", ["layer_norm", "softmax"])
def test_mutations_are_rejected(op):
    rng = np.random.default_rng(11)
    g = _ln_graph(rng, n=6, mean_shift=3.0) if op == "layer_norm" else _softmax_graph(rng, n=5, scale=4.0)
    cert, _ = _certify(g, box_of(rng, (1, 4), Fraction(1, 4)), "binary32")
    count = 0
    for bad in _mutants(cert, op):
        assert not check(bad).ok
        count += 1
    assert count >= 4


def test_the_bound_needs_its_propagation_term(monkeypatch):
    """The layer norm node's bound covers its observed error; without the propagation term (the
    input's error through the normalisation: the centred elements passed in error-free) it falls
    below the observed error on rows with a large mean (x W + 1000: the input's rounding, ~u 1000,
    is large against the row's spread), so the term is needed and the comparison can fail."""
    rng = np.random.default_rng(12)
    g = _ln_graph(rng, n=6, mean_shift=1000.0)
    box = box_of(rng, (1, 4), Fraction(1, 4))

    def node_steps():
        cert = bound_certificate(g, box, "binary32", ranges="ibp")
        ln = [n["op"] for n in cert["statement"]["graph"]["nodes"]].index("layer_norm")
        return np.array([float(Fraction(e)) for e in cert["steps"][ln]])

    lo = np.array([float(a) for a, _ in box])
    hi = np.array([float(b) for _, b in box])
    worst = np.zeros(6)
    for _ in range(200):
        p = np.clip((lo + (hi - lo) * rng.uniform(0, 1, 4)).astype(np.float32), lo, hi)
        z32 = _node_out(g, p, np.float32, "z")
        z64 = _node_out(g, p.astype(np.float64), np.float64, "z")
        worst = np.maximum(worst, np.abs(z32 - z64))
    assert np.all(worst <= node_steps())
    real = errornorm.normalise

    def no_input_error(ctx, xc, var_lo, eps):
        return real(ctx, [errornorm.V(v.lo, v.hi, {}, Fraction(0), Fraction(0)) for v in xc], var_lo, eps)

    monkeypatch.setattr(errorbound, "normalise", no_input_error)
    assert np.any(worst > node_steps())


def _node_out(g, p, dtype, name):
    """The value ``name`` of graph ``g`` at point p in ``dtype`` (the graph cut after it)."""
    from torchlean.runtime.execute import run_graph
    from torchlean.spec import Graph

    k = [n.output for n in g.nodes].index(name)
    cut = Graph(g.inputs, g.constants, g.nodes[:k + 1], [name]).check()
    return np.asarray(run_graph(cut, {"x": p.reshape(1, 4)}, dtype=dtype)[0], dtype=np.float64).ravel()


# -- the zoo transformer, trained briefly ---------------------------------------------------------

def test_zoo_transformer_trained_briefly_is_certified_and_covered(monkeypatch):
    """The zoo's char GPT (a narrow one: width 16, one block, 2 heads, so the exact column runs in
    seconds) after 30 Adam steps on the sums, after its token lookup at context 3 on the token
    table's box: the certificate replays, its epsilon covers the float32 error against the binary64
    run on sampled points of the box and on real token sequences, and without the two whole entries
    the column gives a looser epsilon or none."""
    import torchlean as tl
    from torchlean.certificates.core import Rejected
    from torchlean.runtime.tensor import tensor
    from torchlean.runtime.trace import trace
    from torchlean.zoo import _fit, transformer

    tl.manual_seed(0)
    gpt = transformer.CharGPT(width=16, layers=1, heads=2)
    _fit.fit(gpt, transformer.batches("sums", 32, 0), 30, transformer.next_char_loss, 3e-3, 0, False,
             task="classification")
    gpt.eval()
    body = transformer.AfterLookup(gpt)
    L = 3
    x = gpt.tok(tl.tensor(np.arange(L)[None])).numpy()
    g = trace(body, tensor(x.astype(np.float32)))
    box = [(Fraction(a), Fraction(b)) for a, b in transformer.lookup_box(gpt, L)]
    cert, eps = _certify(g, box, "binary32")
    assert np.all(np.isfinite(eps))
    from torchlean.floats import observed_error

    assert np.all(observed_error(g, box, n=100, reference=False).max_error <= eps)
    rows = gpt.tok.weight.numpy()
    for idx in np.random.default_rng(0).integers(0, rows.shape[0], (20, L)):
        p = rows[idx][None].astype(np.float32)
        y32 = np.asarray(body(tl.tensor(p)).numpy(), dtype=np.float64).ravel()
        y64 = np.asarray(body.to(dtype="float64")(tl.tensor(p.astype(np.float64))).numpy()).ravel()
        body.to(dtype="float32")
        assert np.all(np.abs(y32 - y64) <= eps)
    _without(monkeypatch, "layer_norm")
    _without(monkeypatch, "softmax")
    try:
        old = np.array([float(e) for e in epsilons(bound_certificate(g, box, "binary32", ranges="ibp"))])
    except Rejected:  # (values that may overflow binary32: no epsilon at all)
        return
    assert eps.max() < old.max()


def test_narrow_transformer_on_a_ball_is_informative_and_covered(monkeypatch):
    """h-trans: the zoo's char GPT, narrow (width 16, two blocks, 2 heads, untrained), after its
    token lookup at context 3 on the box ±0.01 around three token rows, fast ranges (CROWN through
    the attention's ``lin`` nodes where lowered wide): the certificate replays, its epsilon covers
    the float32 error against the binary64 run on sampled points, it is informative (far below the
    logits' size ~1: before h-trans 2.5e-3), layer norm's relational entries are what make it so
    (collapsed per element: looser), and a shrunk epsilon is rejected."""
    import torchlean as tl
    from torchlean.floats import observed_error
    from torchlean.runtime.tensor import tensor
    from torchlean.runtime.trace import trace
    from torchlean.zoo import transformer

    tl.manual_seed(0)
    gpt = transformer.CharGPT(width=16, layers=2, heads=2)
    gpt.eval()
    body = transformer.AfterLookup(gpt)
    x = gpt.tok(tl.tensor(np.arange(3)[None])).numpy().astype(np.float32)
    g = trace(body, tensor(x))
    box = [(Fraction(float(v)) - Fraction(1, 100), Fraction(float(v)) + Fraction(1, 100)) for v in x.ravel()]
    cert = bound_certificate(g, box, "binary32", ranges="fast")
    v = check(cert)
    assert v.ok, v.reason
    eps = np.array([float(e) for e in epsilons(cert)])
    assert np.all(observed_error(g, box, n=150, reference=False).max_error <= eps)
    assert eps.max() < 1e-3, eps.max()
    c = copy.deepcopy(cert)
    c["statement"]["epsilon"][0] = str(Fraction(c["statement"]["epsilon"][0]) * Fraction(99, 100))
    c["digest"] = digest(c["statement"])
    bad = check(c)
    assert not bad.ok and "epsilon" in bad.reason
    honest = errornorm.normalise

    def collapsed(ctx, *a):
        ys = honest(ctx, *a)
        return None if ys is None else [ctx.make(y.lo, y.hi, [], Fraction(0), y.E) for y in ys]

    monkeypatch.setattr(errorbound, "normalise", collapsed)
    old = np.array([float(e) for e in epsilons(bound_certificate(g, box, "binary32", ranges="fast"))])
    assert eps.max() * 2 < old.max(), (eps.max(), old.max())


# -- the segment's fixed point (``errornorm.seg_max``, h-zoo2) -------------------------------------

@pytest.mark.parametrize("seed", range(8))
def test_seg_max_bounds_the_normalised_row_on_the_segment(seed):
    """``seg_max`` against brute force (float64, a fine grid of t): for a centred row c and an
    error e with |e_i| <= E_i as large as ~0.2-0.9 of the row's spread, max_t |H(c + t e)_i| <=
    seg_max, and |H(c + e)_i - H(c)_i| <= L (E_i + seg_max dl / sqrt(n)) (the entry's P_i); the
    fixed point is below the former ym + L dl for some element where L dl < sqrt(n) / 2."""
    rng = np.random.default_rng(900 + seed)
    n, eps = int(rng.integers(3, 12)), 1e-5
    c = rng.normal(0, 1, n) * rng.uniform(0.2, 3, n)
    c -= c.mean()
    H = lambda z: z / np.sqrt(np.mean(z * z, -1, keepdims=True) + eps)  # noqa: E731
    sd = np.sqrt(np.mean(c * c))
    E = sd * rng.uniform(0.02, [0.2, 0.5, 0.9][seed % 3], n)
    dl = np.sqrt(np.sum(E * E))
    L = 1 / np.sqrt(max(0.0, sd - dl / np.sqrt(n)) ** 2 + eps)
    y = H(c)
    fired = False
    for e in [E * rng.choice([-1, 1], n) for _ in range(20)] + [E * rng.uniform(-1, 1, n) for _ in range(20)]:
        seg = H(c + np.linspace(0, 1, 2001)[:, None] * e)
        for i in range(n):
            m = errornorm.seg_max(abs(y[i]), L * E[i], L * dl, 1 / np.sqrt(n))
            fired |= m < abs(y[i]) + L * dl - 1e-9
            assert np.abs(seg[:, i]).max() <= m * (1 + 1e-9) + 1e-12
            assert abs(seg[-1, i] - y[i]) <= L * (E[i] + min(1, m / np.sqrt(n)) * dl) * (1 + 1e-9) + 1e-12
    assert fired or L * dl >= np.sqrt(n) / 2


def test_layer_norm_with_a_large_input_error_is_covered_tighter_and_checked(monkeypatch):
    """A row whose input rounding is large against its spread (x W + 1e5 in binary32): epsilon
    covers the observed error with ``seg_max``; its layer norm bounds are <= the former rule's
    (|h_i| <= (ym + L dl)/sqrt(n) alone) at every element and < at some; tampered certificates
    (the node's steps halved, swapped, reversed; a shrunk epsilon; the graph's eps) are rejected."""
    rng = np.random.default_rng(500)
    g = _ln_graph(rng, n=8, mean_shift=1e5)
    box = box_of(rng, (1, 4), Fraction(1, 64))
    cert, eps = _certify(g, box, "binary32")
    assert np.all(observed(g, box, "binary32", n=200) <= eps)
    k = [n["op"] for n in cert["statement"]["graph"]["nodes"]].index("layer_norm")
    new = np.array([Fraction(e) for e in cert["steps"][k]])
    monkeypatch.setattr(errornorm, "seg_max", lambda ym, LE, Ldl, rinv: ym + Ldl)
    old = np.array([Fraction(e) for e in _certify(g, box, "binary32")[0]["steps"][k]])
    assert np.all(new <= old) and np.any(new < old)
    monkeypatch.undo()
    assert sum(1 for bad in _mutants(cert, "layer_norm") if not check(bad).ok) >= 4
    assert all(not check(bad).ok for bad in _mutants(cert, "layer_norm"))
