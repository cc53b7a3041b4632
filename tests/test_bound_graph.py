"""The bound table: lowering of the graph IR to a bound graph (certificates/lower.py) and the exact
(engine.py) and fast (fast_engine.py) IBP/CROWN engines over it.

Soundness against an independent reference: points sampled in the box (and its corners) evaluated in
real arithmetic by the mpmath spec (``torchlean.spec.exact.evaluate``) lie inside every bound; the
fast engine encloses the exact engine's bounds within a small tolerance; CROWN is never looser than
IBP; on ReLU chains the new exact CROWN is at least as tight as the old chain engine's.
"""

from fractions import Fraction

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.certificates import fast_backsub, fast_forms
from torchlean.certificates import fast_engine as fe
from torchlean.certificates.bound_graph import Unsupported
from torchlean.certificates.enclosures import DomainError
from torchlean.certificates.lower import ARITY, NO_ROW, ROWS, fingerprint, lower
from torchlean.spec import PRIMITIVES, Graph, Node, Value
from torchlean.spec.exact import evaluate
from torchlean.verify import engines

F = Fraction


def G(nodes, consts, shape=(1, 4), out=None):
    """A float64 spec graph with input x of ``shape`` (nodes: (op, inputs, output[, attrs]))."""
    return Graph([Value("x", shape, "float64")], consts, [Node(*n) for n in nodes],
                 [out or nodes[-1][2]]).check()


def _w(rng, *shape, scale=0.7):
    return rng.normal(0, scale, shape)


# one small graph per primitive (several per primitive where attrs change the meaning); each puts
# the primitive between random linear maps so its argument and result are data
def builders(rng):
    W, V = _w(rng, 4, 4), _w(rng, 4, 4)
    lin = [("matmul", ["x", "W"], "h")]
    c = {"W": W, "V": V}
    out = [("matmul", ["a", "V"], "y")]
    unary = {op: (lin + [(op, ["h"], "a")] + out, c) for op in (
        "relu", "abs", "exp", "tanh", "erf", "sigmoid", "softplus", "gelu", "silu", "neg")}
    unary["leaky_relu"] = (lin + [("leaky_relu", ["h"], "a", {"slope": 0.2})] + out, c)
    pos = [("matmul", ["x", "W"], "h0"), ("mul", ["h0", "h0"], "h1"), ("add", ["h1", "half"], "h")]
    cp = {**c, "half": np.array(0.5)}
    g = {**unary}
    g["log"] = (pos + [("log", ["h"], "a")] + out, cp)
    g["sqrt"] = (pos + [("sqrt", ["h"], "a")] + out, cp)
    g["pow"] = (pos + [("pow", ["h"], "a", {"exponent": 3})] + out, cp)
    g["pow-1"] = (pos + [("pow", ["h"], "a", {"exponent": -1})] + out, cp)
    g["pow1.5"] = (pos + [("pow", ["h"], "a", {"exponent": 1.5})] + out, cp)
    g["add"] = (lin + [("relu", ["h"], "r"), ("add", ["r", "x"], "a")] + out, c)  # residual
    g["sub"] = (lin + [("tanh", ["h"], "r"), ("sub", ["x", "r"], "a")] + out, c)
    g["mul"] = (lin + [("matmul", ["x", "V"], "k"), ("tanh", ["k"], "t"), ("mul", ["h", "t"], "a")] + out, c)
    g["div"] = (lin + [("matmul", ["x", "V"], "k"), ("exp", ["k"], "e"), ("add", ["e", "half"], "d"),
                       ("div", ["h", "d"], "a")] + out, cp)
    g["div-const"] = (lin + [("div", ["h", "three"], "a")] + out, {**c, "three": np.array([3.0, -2, 5, 7])})
    g["maximum"] = (lin + [("matmul", ["x", "V"], "k"), ("maximum", ["h", "k"], "a")] + out, c)
    g["minimum"] = (lin + [("matmul", ["x", "V"], "k"), ("minimum", ["h", "k"], "a")] + out, c)
    g["where"] = (lin + [("tanh", ["h"], "t"), ("where", ["m", "h", "t"], "a")] + out,
                  {**c, "m": np.array([True, False, True, False])})
    # (session 33's cast: the identity over the reals; wider exact, narrower one rounding of it)
    # (the runtime computes on a cast value in its format: the checker takes only a format that
    # holds the run's, here float64 for every run format, the binary64 reference included; audit61)
    g["cast"] = (lin + [("cast", ["h"], "c", {"dtype": "float64"}), ("tanh", ["c"], "a")] + out, c)
    g["cast-narrow"] = (lin + [("cast", ["h"], "c", {"dtype": "float16"}),
                               ("cast", ["c"], "b", {"dtype": "float64"}), ("tanh", ["b"], "a")] + out, c)
    r24 = lin + [("reshape", ["h"], "h2", {"shape": (2, 2)})]
    g["matmul-data"] = (r24 + [("tanh", ["h2"], "t"), ("matmul", ["h2", "t"], "m"),
                               ("reshape", ["m"], "a", {"shape": (1, 4)})] + out, c)
    g["transpose"] = (r24 + [("relu", ["h2"], "t"), ("transpose", ["t"], "m"),
                             ("reshape", ["m"], "a", {"shape": (1, 4)})] + out, c)
    g["broadcast_to"] = (lin + [("broadcast_to", ["h"], "b", {"shape": (3, 4)}), ("add", ["b", "B3"], "s"),
                                ("relu", ["s"], "r"), ("flatten", ["r"], "f", {"start_dim": 0})],
                         {**c, "B3": _w(rng, 3, 4)})
    for op in ("sum", "mean", "max"):
        g[op] = (r24 + [("relu", ["h2"], "t"), (op, ["t"], "a", {"axes": (1,), "keepdims": True}),
                        ("tanh", ["a"], "y")], c)
        g[op + "-all"] = (lin + [(op, ["h"], "y")], c)
    g["concat"] = (lin + [("relu", ["h"], "r"), ("concat", ["r", "x", "h"], "a", {"axis": 1}),
                          ("matmul", ["a", "V3"], "y")], {**c, "V3": _w(rng, 12, 3)})
    g["slice"] = (r24 + [("slice", ["h2"], "s", {"index": ((0, 2, 1), (1, 2, 1))}), ("relu", ["s"], "y")], c)
    g["gather"] = (r24 + [("gather", ["h2", "ix"], "s", {"axis": 1}), ("abs", ["s"], "y")],
                   {**c, "ix": np.array([[1, 1], [0, 1]])})
    g["embedding"] = (r24 + [("embedding", ["h2", "ix"], "s"), ("relu", ["s"], "y")],
                      {**c, "ix": np.array([1, 0, 1])})
    for op in ("softmax", "log_softmax"):
        g[op] = (r24 + [(op, ["h2"], "y", {"axis": -1})], c)
    g["layer_norm"] = (r24 + [("layer_norm", ["h2", "lw", "lb"], "y")],
                       {**c, "lw": _w(rng, 2), "lb": _w(rng, 2)})
    cnn = {"K": _w(rng, 4, 2, 3, 3), "K2": _w(rng, 2, 1, 2, 2)}
    g["conv2d"] = ([("conv2d", ["x", "K"], "y", {"stride": (2, 1), "padding": (1, 1), "dilation": (1, 2)})],
                   cnn, (1, 2, 5, 5))
    g["conv2d-groups"] = ([("relu", ["x"], "r"), ("conv2d", ["r", "K2"], "y", {"groups": 2, "padding": 1})],
                          cnn, (1, 2, 4, 4))
    g["max_pool2d"] = ([("conv2d", ["x", "K"], "h", {"padding": (1, 1)}),
                        ("max_pool2d", ["h"], "y", {"kernel_size": 3, "stride": 2, "padding": 1})],
                       cnn, (1, 2, 4, 4))
    g["avg_pool2d"] = ([("relu", ["x"], "h"), ("avg_pool2d", ["h"], "y", {"kernel_size": 3, "stride": 2,
                        "padding": 1, "count_include_pad": False})], cnn, (1, 2, 4, 4))
    g["batch_norm"] = ([("batch_norm", ["x", "bm", "bv", "bw", "bb"], "h"), ("relu", ["h"], "y")],
                       {"bm": _w(rng, 2), "bv": np.abs(_w(rng, 2)) + 0.1, "bw": _w(rng, 2), "bb": _w(rng, 2)},
                       (1, 2, 2, 2))
    return g


def _box(rng, shape, eps, lo_min=None):
    x0 = rng.uniform(-1, 1, shape)
    lo, hi = x0 - eps, x0 + eps  # floats: the box corners are exactly these
    return lo, hi


def _exact_outputs(g, p):
    """The spec's real outputs at p (mpmath, 40 digits) as exact rationals, and a tolerance that
    covers the working precision."""
    vals = evaluate(g, {"x": p}, digits=40)[0].ravel()
    qs = [(-1) ** v._mpf_[0] * F(v._mpf_[1]) * F(2) ** v._mpf_[2] for v in vals]  # (sign, man, exp)
    return [(q, F(1, 10**30) * (1 + abs(q))) for q in qs]


def _samples(rng, lo, hi, n):
    pts = [lo, hi]
    for _ in range(n):
        pts.append(np.clip(lo + (hi - lo) * rng.uniform(0, 1, lo.shape), lo, hi))
    return pts


def _check(g, lo, hi, rng, n=6, tol=1e-7):
    """Every bound of both engines holds at sampled points (mpmath spec); fast encloses exact."""
    bg = lower(g.to_dict())
    ball = any("ball" in nd.attrs for nd in bg.nodes)
    flo, fhi = lo.ravel().tolist(), hi.ravel().tolist()
    il, iu = engines.exact_ibp(bg, flo, fhi)
    cl, cu = engines.exact_crown(bg, flo, fhi)
    bl, bu = engines.exact_crown(bg, flo, fhi, method="ibp")
    L, H = lo.reshape(1, -1), hi.reshape(1, -1)
    gl, gu = engines.fast_ibp(bg, L, H)
    dl, du = engines.fast_crown(bg, L, H)
    for a, b in ((il, iu), (cl, cu), (bl, bu)):
        assert all(x <= y for x, y in zip(a, b))
    assert all(c >= i for c, i in zip(cl, il)) and all(c <= i for c, i in zip(cu, iu))
    assert all(c >= i for c, i in zip(bl, il)) and all(c <= i for c, i in zip(bu, iu))
    for (el, eu), (fl, fu) in (((il, iu), (gl, gu)), ((cl, cu), (dl, du))):
        el, eu = np.array([float(v) for v in el]), np.array([float(v) for v in eu])
        scale = 1 + np.abs(el) + np.abs(eu)
        assert (fl[0] <= el + 1e-12 * scale).all() and (fu[0] >= eu - 1e-12 * scale).all()
        if not ball:  # (the fast sibling has layer norm's "within" clamp but not its "ball" rule)
            assert (fl[0] >= el - tol * scale).all() and (fu[0] <= eu + tol * scale).all()
    for p in _samples(rng, lo, hi, n):
        for j, (v, t) in enumerate(_exact_outputs(g, p)):
            for a, b in ((il, iu), (cl, cu), (bl, bu)):
                assert a[j] - t <= v <= b[j] + t, (j, float(a[j]), float(v), float(b[j]))
            assert F(dl[0, j]) - t <= v <= F(du[0, j]) + t
    return bg, (il, iu), (cl, cu)


CASES = sorted(builders(np.random.default_rng(0)))


@pytest.mark.parametrize("case", CASES)
def test_every_row_is_sound(case):
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    for seed in range(2):
        spec = builders(np.random.default_rng(seed))[case]
        nodes, consts, shape = (*spec, (1, 4))[:3]
        g = G(nodes, consts, shape)
        lo, hi = _box(rng, shape, 0.25)
        _check(g, lo, hi, rng)


# scores x·W on [-1, 1]^4 whose differences x_j - x_i reach +-3,050: past the exact exp's old cap
# (EXP_MAX was 1,000; the trained char GPT's attention reaches +-1,321 on its --certify box)
WIDE_SCORES = np.array([[900.0, -700, 300, 0], [-800, 650, 0, 500], [0, 0, 0, 1], [0, 0, 0, 0]])


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_with_scores_past_binary64_exp(op):
    """softmax_i = 1/sum_j exp(x_j - x_i) with exp's argument up to 3,050 (e^3050 is an exact dyadic
    of ~4,400 bits in the exact engine): the exact IBP and CROWN bounds hold at mpmath points (the
    spec's formula), log_softmax's lower bound is finite, and the fast engine's (vacuous where
    exp leaves binary64, past 709.78) hold too; an argument past EXP_MAX = 2^16 is refused."""
    g = G([("matmul", ["x", "W"], "h"), (op, ["h"], "y", {"axis": -1})], {"W": WIDE_SCORES})
    bg = lower(g.to_dict())
    lo, hi = -np.ones((1, 4)), np.ones((1, 4))
    il, iu = engines.exact_ibp(bg, lo.ravel().tolist(), hi.ravel().tolist())
    cl, cu = engines.exact_crown(bg, lo.ravel().tolist(), hi.ravel().tolist())
    fl, fu = engines.fast_crown(bg, lo, hi)
    if op == "log_softmax":  # -log(1 + sum_j e^(x_j - x_i)) >= -(3,050 + log 4)
        assert all(-3052 <= v < 0 for v in il)
    else:
        assert all(0 < v < F(1, 10**700) for v in il) and all(v == 1 for v in iu)  # (1/(1 + e^~1,650..3,050))
    pts = _samples(np.random.default_rng(3), lo, hi, 40) + [np.array([[1.0, -1, 0, 0]]),
                                                            np.array([[-1.0, 1, 1, 0]])]
    for p in pts:
        for j, (v, t) in enumerate(_exact_outputs(g, p)):
            for a, b in ((il, iu), (cl, cu)):
                assert a[j] - t <= v <= b[j] + t, (j, float(a[j]), float(v), float(b[j]))
            assert fl[0, j] <= float(v) + 1e-12 and float(v) - 1e-12 <= fu[0, j]
    wide = G([("matmul", ["x", "W"], "h"), (op, ["h"], "y", {"axis": -1})], {"W": WIDE_SCORES * 30})
    with pytest.raises(DomainError, match="exp"):  # (x_j - x_i up to 91,500 > 2^16)
        engines.exact_ibp(lower(wide.to_dict()), lo.ravel().tolist(), hi.ravel().tolist())


def test_every_primitive_has_a_row_or_a_reason():
    assert set(PRIMITIVES) <= set(ROWS) | set(NO_ROW)
    covered = {n[0] for spec in builders(np.random.default_rng(0)).values() for n in spec[0]}
    assert set(ROWS) <= covered  # and each row is exercised above


def test_a_node_with_the_wrong_number_of_inputs_is_refused():
    # the rows read their first inputs only: the checker's arity is the spec's, and a document
    # whose relu has two inputs (which the runtime refuses) is not lowered as relu of the first
    assert ARITY == {n: PRIMITIVES[n].arity for n in ROWS}
    doc = G([("matmul", ["x", "W"], "h"), ("relu", ["h"], "y")], {"W": np.eye(4)}).to_dict()
    lower(doc)
    doc["nodes"][1]["inputs"] = ["h", "x"]
    with pytest.raises(Unsupported, match="'relu' takes 1 inputs, not 2"):
        lower(doc)
    doc["nodes"][0]["inputs"] = ["x"]
    with pytest.raises(Unsupported, match="'matmul' takes 2 inputs, not 1"):
        lower(doc)


def test_crown_tighter_than_ibp_on_deep_nets():
    rng = np.random.default_rng(5)
    nodes, c, cur = [], {}, "x"
    for i, act in enumerate(("relu", "tanh", "relu", "sigmoid")):
        c[f"W{i}"] = _w(rng, 4, 4)
        nodes += [("matmul", [cur, f"W{i}"], f"m{i}"), (act, [f"m{i}"], f"a{i}")]
        cur = f"a{i}"
    g = G(nodes, c)
    lo, hi = _box(rng, (1, 4), 0.3)
    _, (il, iu), (cl, cu) = _check(g, lo, hi, rng)
    assert sum(u - a for a, u in zip(cl, cu)) < sum(u - a for a, u in zip(il, iu))


def test_traced_models_bound_soundly():
    rng = np.random.default_rng(11)
    tl.manual_seed(0)
    models = [
        (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(2, 2, 2, stride=2), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(2, 3)),
         (1, 1, 8, 8), 0.05),
        (nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6), nn.GELU(), nn.Linear(6, 2)), (2, 4), 0.1),
        (nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, dropout=0.0, batch_first=True), (1, 3, 4), 0.02),
    ]
    for model, shape, eps in models:
        model.eval()
        x0 = rng.normal(size=shape)
        g = tl.trace(model, tl.tensor(x0))
        lo, hi = x0 - eps, x0 + eps
        name = g.inputs[0].name
        nodes = [Node(n.op, ["x" if i == name else i for i in n.inputs], n.output, n.attrs) for n in g.nodes]
        g = Graph([Value("x", g.inputs[0].shape, g.inputs[0].dtype)], g.constants, nodes, g.outputs).check()
        _check(g, lo, hi, rng, n=3)


def test_batched_fast_boxes_match_single_boxes():
    rng = np.random.default_rng(3)
    spec = builders(rng)["max_pool2d"]
    bg = lower(G(*spec).to_dict())
    lo = rng.uniform(-1, 1, (5, 32))
    hi = lo + rng.uniform(0, 0.5, (5, 32))
    bl, bu = engines.fast_crown(bg, lo, hi)
    for b in range(5):
        sl, su = engines.fast_crown(bg, lo[b:b + 1], hi[b:b + 1])
        np.testing.assert_allclose(sl[0], bl[b], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(su[0], bu[b], rtol=1e-9, atol=1e-9)


def test_supplied_slopes_stay_sound():
    """Any slope gives a valid bound: random slopes and McCormick weights, exact and fast."""
    rng = np.random.default_rng(9)
    spec = builders(rng)["mul"]
    g = G(*spec)
    bg = lower(g.to_dict())
    lo, hi = _box(rng, (1, 4), 0.3)
    flo, fhi = lo.ravel().tolist(), hi.ravel().tolist()
    slopes = {}
    for k, n in enumerate(bg.nodes):
        if n.kind in ("fn", "mul"):
            vals = rng.uniform(-1, 2, (n.size, 2)) if n.kind == "fn" else rng.uniform(0, 1, (n.size, 2))
            slopes[k] = [tuple(F(float(v)) for v in row) for row in vals]
    el, eu = engines.exact_crown(bg, flo, fhi, slopes=slopes)
    fs = {k: tuple(np.array([[float(r[j]) for r in v]]) for j in (0, 1)) for k, v in slopes.items()}
    fl, fu = engines.fast_crown(bg, lo, hi, slopes=fs)
    for p in _samples(rng, lo, hi, 10):
        for j, (v, t) in enumerate(_exact_outputs(g, p)):
            assert el[j] - t <= v <= eu[j] + t
            assert F(fl[0, j]) - t <= v <= F(fu[0, j]) + t
    with pytest.raises(Exception, match="McCormick"):
        k = next(k for k, n in enumerate(bg.nodes) if n.kind == "mul")
        engines.exact_crown(bg, flo, fhi, slopes={k: [(F(2), None)] * bg.nodes[k].size})


def test_fingerprint_binds_the_weights():
    rng = np.random.default_rng(1)
    nodes, c = builders(rng)["tanh"]
    fp = fingerprint(lower(G(nodes, c).to_dict()))
    c2 = {k: v.copy() for k, v in c.items()}
    c2["W"][1, 2] = np.nextafter(c2["W"][1, 2], 10)
    assert fingerprint(lower(G(nodes, c2).to_dict())) != fp
    assert fingerprint(lower(G(nodes, c).to_dict())) == fp


def test_unsupported_uses_are_refused():
    rng = np.random.default_rng(1)
    W = _w(rng, 4, 4)
    g = G([("matmul", ["x", "W"], "h"), ("where", ["h", "x", "h"], "y")], {"W": W})
    with pytest.raises(Unsupported, match="data-dependent"):
        lower(g.to_dict())
    g = G([("matmul", ["x", "W"], "h"), ("log", ["h"], "y")], {"W": W})
    bg = lower(g.to_dict())
    with pytest.raises(Exception, match="domain"):
        engines.exact_ibp(bg, [-1] * 4, [1] * 4)
    lo, hi = engines.fast_ibp(bg, -np.ones((1, 4)), np.ones((1, 4)))
    assert np.isneginf(lo).all() and np.isposinf(hi).all()  # never a finite bound outside the domain


def test_oval21_cifar_net_bounds_contain_onnxruntime():
    """The oval21 CIFAR base net (conv, conv, fc, fc): lowered, CROWN-bounded in fast mode over an
    eps = 2/255 box (its speed is bench/'s business, not asserted here), every sampled point's
    onnxruntime output inside (float32 runtime: 1e-4 slack), and far tighter than IBP."""
    from pathlib import Path

    import onnxruntime as ort

    from torchlean.bridge import load_onnx

    path = Path(__file__).parent / "data" / "vnncomp2021" / "oval21" / "cifar_base_kw.onnx"
    bg = lower(load_onnx(path).to_dict())
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (1, 3072))
    eps = 2 / 255
    cl, cu = engines.fast_crown(bg, x - eps, x + eps)
    il, iu = engines.fast_ibp(bg, x - eps, x + eps)
    assert ((cu - cl) < (iu - il) / 5).all()
    sess = ort.InferenceSession(str(path))
    name = sess.get_inputs()[0].name
    for _ in range(30):
        p = x + eps * rng.choice([-1.0, 1.0], x.shape) * rng.uniform(0.8, 1, x.shape)
        y = sess.run(None, {name: p.reshape(1, 3, 32, 32).astype(np.float32)})[0].ravel()
        assert (y >= cl[0] - 1e-4).all() and (y <= cu[0] + 1e-4).all()


def _cancelling_violations():
    """Fast bounds that cross the exact ones on affine maps with large cancelling terms."""
    bad = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        W = rng.normal(size=(8, 3))
        W[1] = -W[0] * (1 + rng.normal() * 1e-9)
        g = G([("matmul", ["x", "W"], "y")], {"W": W}, (1, 8))
        bg = lower(g.to_dict())
        lo = rng.uniform(-1, 1, 8) * 1e8
        hi = lo + rng.uniform(0, 1, 8)
        el, eu = engines.exact_ibp(bg, lo.tolist(), hi.tolist())  # exact: the true extremes of an affine map
        for fl, fu in (engines.fast_crown(bg, lo[None], hi[None]), engines.fast_ibp(bg, lo[None], hi[None])):
            bad += sum(F(a) > b for a, b in zip(fl[0], el)) + sum(F(a) < b for a, b in zip(fu[0], eu))
    return bad


def test_fast_rounding_charges_are_needed_and_sufficient(monkeypatch):
    assert _cancelling_violations() == 0
    for mod in (engines, fast_forms):  # (engines: the C·y and CROWN output charges)
        monkeypatch.setattr(mod, "_charge", lambda x, n: 0 * x)
    assert _cancelling_violations() > 0  # the test has the power to see a missing charge


def test_skipped_refinements_lose_nothing():
    """Rows ``refine_skips`` leaves at IBP (exact ranges; a batch norm's scaled operand) give the
    same CROWN bounds as refining every row, and the skips do happen."""
    from torchlean.certificates.bound_graph import refine_skips

    rng = np.random.default_rng(2)
    tl.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 3),
                          nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(), nn.Linear(32, 3))
    model.eval()
    x0 = rng.normal(size=(1, 1, 6, 6))
    bg = lower(tl.trace(model, tl.tensor(x0)).to_dict())
    skips = refine_skips(bg)
    assert sum(map(sum, skips)) > 0
    lo, hi = (x0 - 0.1).reshape(1, -1), (x0 + 0.1).reshape(1, -1)
    fg = fe.FastGraph(bg)
    sl, su = engines.fast_crown(fg, lo, hi)
    fg.best = [np.zeros_like(b) for b in fg.best]  # refine every row
    al, au = engines.fast_crown(fg, lo, hi)
    np.testing.assert_allclose(sl, al, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(su, au, rtol=1e-9, atol=1e-9)


def _no_weights(st, F, rows):
    return np.zeros((st.B, F.R if rows is None else len(rows)))


def _relu_chain_violations(monkeypatch=None, zero=()):
    """Fast CROWN bounds crossing the exact ones on ReLU chains whose neurons are active on the
    whole box (positive inputs near 1e8 and weights, so exact CROWN is the exact range), with
    multipliers that cancel in the back-substitution (W2's first column ~ 0.7 and 0.3 of the
    others, the output k0 - 0.7 k1 - 0.3 k2): the charges of the compact back-substitution
    (``_charges``, composite over both hidden layers) and the others keep them sound."""
    if zero:  # every charge of the fast engine
        monkeypatch.setattr(fast_backsub, "_charges", lambda st, k, views, c, d: np.zeros_like(views[k].zmax))
        for mod in (engines, fast_backsub):  # (the compact weights: fast_backsub's, and fast_crown's)
            monkeypatch.setattr(mod, "_weights", _no_weights)
        for mod in (engines, fast_backsub, fast_forms):
            monkeypatch.setattr(mod, "_charge", lambda x, n: 0 * x)
    bad = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        W1, W2 = rng.uniform(0.5, 1.5, (3, 3)), rng.uniform(0.5, 1.5, (3, 3))
        W2[:, 0] = 0.7 * W2[:, 1] + 0.3 * W2[:, 2]
        W3 = np.array([[1.0], [-0.7], [-0.3]])
        g = G([("matmul", ["x", "W1"], "a"), ("relu", ["a"], "h"), ("matmul", ["h", "W2"], "c"),
               ("relu", ["c"], "k"), ("matmul", ["k", "W3"], "y")], {"W1": W1, "W2": W2, "W3": W3}, (1, 3))
        bg = lower(g.to_dict())
        lo = 1e8 + rng.uniform(0, 1e6, 3)
        hi = lo + rng.uniform(0, 1, 3)
        el, eu = engines.exact_crown(bg, lo.tolist(), hi.tolist())  # all neurons stable: the exact range
        fl, fu = engines.fast_crown(bg, lo[None], hi[None])
        bad += sum(F(a) > b for a, b in zip(fl[0], el)) + sum(F(a) < b for a, b in zip(fu[0], eu))
    return bad


def test_compact_backsub_charges_are_needed_and_sufficient(monkeypatch):
    assert _relu_chain_violations() == 0
    assert _relu_chain_violations(monkeypatch, zero=True) > 0  # (the test can see a missing charge)


def test_composite_charges_cover_the_step_by_step_ones(monkeypatch):
    """The composite charges (bounded once from the starting multipliers) are at least the
    step-by-step ones they replace: bounds with them are never tighter, on chains with unstable
    neurons, in batches; also with a tanh layer below ReLU layers (two slope policies: the
    composite charges of a ReLU node depend on the tanh node's lines under each policy)."""
    rng = np.random.default_rng(5)
    for t in range(8):
        sizes = (4, 10, 10, 10, 3)
        nodes, c, cur = [], {}, "x"
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            c[f"W{i}"] = _w(rng, a, b)
            nodes.append(("matmul", [cur, f"W{i}"], f"m{i}"))
            cur = f"m{i}"
            if i + 2 < len(sizes):
                nodes.append(("tanh" if t % 2 and i == 0 else "relu", [cur], f"h{i}"))
                cur = f"h{i}"
        bg = lower(G(nodes, c).to_dict())
        lo = rng.uniform(-1, 1, (8, 4))
        hi = lo + rng.uniform(0.05, 0.5, (8, 4))
        comp = engines.fast_crown(bg, lo, hi)
        monkeypatch.setattr(fast_backsub, "COMPOSITE", False)
        step = engines.fast_crown(bg, lo, hi)
        monkeypatch.setattr(fast_backsub, "COMPOSITE", True)
        assert (comp[0] <= step[0]).all() and (comp[1] >= step[1]).all()
        assert (comp[0] < step[0]).any()  # (they differ: the test compares two computations)


def test_relu_chain_bounds_hold_on_sampled_points_with_unstable_neurons():
    """Neurons that straddle 0 on the box (relaxed columns, μ = λ·aL + λ⁻·d): exact evaluation at
    sampled points and corners stays inside the fast bounds, in batches and alone."""
    rng = np.random.default_rng(3)
    for _ in range(4):
        W1, W2, W3 = rng.normal(size=(3, 8)), rng.normal(size=(8, 8)), rng.normal(size=(8, 2))
        W3[:, 1] = -W3[:, 0] * (1 + 1e-7)
        g = G([("matmul", ["x", "W1"], "a"), ("relu", ["a"], "h"), ("matmul", ["h", "W2"], "c"),
               ("relu", ["c"], "k"), ("matmul", ["k", "W3"], "y")], {"W1": W1, "W2": W2, "W3": W3}, (1, 3))
        bg = lower(g.to_dict())
        lo = rng.uniform(-1, 0, (6, 3))
        hi = lo + rng.uniform(0.1, 1, (6, 3))
        fl, fu = engines.fast_crown(bg, lo, hi)
        for b in range(6):
            one = engines.fast_crown(bg, lo[b:b + 1], hi[b:b + 1])
            pts = [lo[b] + (hi[b] - lo[b]) * t for t in rng.uniform(0, 1, (20, 3))]
            pts += [np.where(np.array(c) == 1, hi[b], lo[b]) for c in np.ndindex(2, 2, 2)]
            for x in pts:
                y = np.asarray(evaluate(g, {"x": x[None]})[0], dtype=object).ravel()
                for i, v in enumerate(y):  # (mpmath numbers compare exactly with floats)
                    for lb, ub in ((fl[b], fu[b]), (one[0][0], one[1][0])):
                        assert lb[i] <= v <= ub[i]
