"""The fast rounding-error column on convolutional graphs (``certificates.fast_errors``'s conv2d,
avg_pool2d and max_pool2d rows and its block-sparse forms): its bounds hold on sampled float runs,
equal the exact column's up to float noise where the exact column has no magnitude forms (over 64
inputs), the sparse block operations equal dense numpy products, and a shrunk claim is rejected."""

from __future__ import annotations

import copy
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from fast_column import both_columns, covers_float_runs, rejected, shrunk_epsilon, worst_ratio

from torchlean.certificates import check
from torchlean.certificates import fast_blocks as fb
from torchlean.certificates import fast_errors as fe
from torchlean.certificates.errorbound import FAST_TRUST, propagate
from torchlean.certificates.fast_forms import _Mat
from torchlean.floats.errorbound import bound_certificate, epsilons, observed_error
from torchlean.spec.graph import Graph, Node, Value

DATA = Path(__file__).parent / "data" / "vnncomp2021"
#: the pooling of each seed: (op, attrs); padded windows of 4, 6 and 9 members (1/6, 1/9: not
#: binary64 values) with count_include_pad False, and padded max windows of 1 to 4 members
POOLS = [("avg_pool2d", {"kernel_size": (2, 2), "stride": (2, 2)}),
         ("max_pool2d", {"kernel_size": (2, 2), "stride": (2, 2)}),
         ("avg_pool2d", {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1),
                         "count_include_pad": False}),
         ("max_pool2d", {"kernel_size": (2, 2), "stride": (2, 2), "padding": (1, 1)})]


def conv_chain(seed: int) -> Graph:
    """conv2d 2->3 (3x3, padding 1 or none) + bias, relu, a pooling (``POOLS``), conv2d 3->4
    (2x2) + bias, tanh, flatten, matmul, + bias, on a 1x2x6x6 input (72 > 64: no magnitude forms)."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    c = {"k1": (rng.standard_normal((3, 2, 3, 3)) / 4).astype(f32),
         "b1": (rng.standard_normal((1, 3, 1, 1)) * 0.2).astype(f32),
         "k2": (rng.standard_normal((4, 3, 2, 2)) / 3).astype(f32),
         "b2": (rng.standard_normal((1, 4, 1, 1)) * 0.2).astype(f32)}
    op, at = POOLS[seed % len(POOLS)]
    conv1 = {"padding": (1, 1)} if seed % 2 == 0 else {"stride": (1, 1), "dilation": (1, 1)}
    nodes = [Node("conv2d", ["x", "k1"], "c1", conv1), Node("add", ["c1", "b1"], "z1"),
             Node("relu", ["z1"], "r1"), Node(op, ["r1"], "p"), Node("conv2d", ["p", "k2"], "c2"),
             Node("add", ["c2", "b2"], "z2"), Node("tanh", ["z2"], "t"), Node("flatten", ["t"], "f")]
    g0 = Graph([Value("x", (1, 2, 6, 6), "float32")], c, nodes, ["f"]).check()
    n = int(np.prod(g0.values["f"].shape))
    c["W"] = (rng.standard_normal((n, 3)) / np.sqrt(n)).astype(f32)
    c["b"] = (rng.standard_normal(3) * 0.1).astype(f32)
    nodes += [Node("matmul", ["f", "W"], "m"), Node("add", ["m", "b"], "y")]
    return Graph([Value("x", (1, 2, 6, 6), "float32")], c, nodes, ["y"]).check()


BOX = [(Fraction(-1), Fraction(1))] * 36 + [(Fraction(0), Fraction(1, 2))] * 36


def test_every_conv_row_is_exercised():
    ops = {n.op for s in range(len(POOLS)) for n in conv_chain(s).nodes}
    assert {"conv2d", "avg_pool2d", "max_pool2d"} <= ops <= set(fe.ROWS)
    assert all(fe.supported(conv_chain(s).to_dict()) is None for s in range(len(POOLS)))


@pytest.mark.parametrize("seed", range(len(POOLS)))
@pytest.mark.parametrize("fmt,dtype", [("binary32", np.float32), ("binary16", np.float16)])
def test_conv_epsilon_holds_on_sampled_float_runs(seed, fmt, dtype):
    covers_float_runs(conv_chain(seed), BOX, fmt, dtype, n=1000, seed=seed)


@pytest.mark.parametrize("seed", range(len(POOLS)))
@pytest.mark.parametrize("fmt", ["binary32", "bfloat16"])
def test_conv_fast_equals_exact(seed, fmt):
    """The same rules on every step: fast >= exact (float noise aside) and, in binary32 (the float32
    weights exact), within 1% of it; in bfloat16 within 1.5x: a weight's cast error is u|w| + eta
    in the fast column (``_Walk.cast_err``), |fl(w) - w| in the exact one (1.07-1.17x measured)."""
    worst = worst_ratio(*both_columns(conv_chain(seed), BOX, fmt))
    assert worst < (1.01 if fmt == "binary32" else 1.5), worst


def _dense(X):
    if isinstance(X, np.ndarray):
        return X
    D = np.zeros(X.shape)
    D[X.r, X.c] = X.v
    return D


@pytest.mark.parametrize("fill", [0.002, 0.03, 0.5])
def test_block_operations_equal_dense_numpy(fill):
    """``_apply`` (every pairing of dense/sparse map and block), ``_join`` in several chunks,
    ``_plus``, ``_rows``, ``_scale`` and ``_absdot`` against the dense products."""
    rng = np.random.default_rng(int(fill * 1000))

    def sparse(m, n, p):
        D = np.where(rng.random((m, n)) < p, rng.standard_normal((m, n)), 0.0)
        r, c = np.nonzero(D)
        return D, fb._blk(m, n, r, c, D[r, c], merge=False)

    X, Xb = sparse(300, 200, fill)
    Y, Yb = sparse(300, 200, fill)
    for mp in (0.01, 0.6):
        M, _ = sparse(150, 300, mp)
        r, c = np.nonzero(M)
        Mm = _Mat(150, 300, r, c, M[r, c])
        assert Mm.sparse == (mp < 0.05)
        for chunk in (2**21, 97):
            both = Mm.sparse and isinstance(Xb, fb._Sp)
            got = fb._join(Mm, Xb, chunk) if both else fb._apply(Mm, {0: Xb})[0]
            assert np.allclose(_dense(got), M @ X, rtol=1e-12, atol=1e-12)
    got = fb._plus({0: Xb, 5: Yb}, {0: Yb}, -1.0)
    assert np.allclose(_dense(got[0]), X - Y) and np.array_equal(_dense(got[5]), Y)
    idx = rng.integers(0, 300, 400)
    s = rng.standard_normal(400)
    got = fb._scale(fb._rows({0: Xb}, idx), s)[0]
    assert np.array_equal(_dense(got), X[idx] * s[:, None])
    L = rng.random(260)
    assert np.allclose(fb._absdot({60: Xb}, L, 300), np.abs(X) @ L[60:], rtol=1e-13)


@pytest.fixture(scope="module")
def verivital():
    from torchlean.bridge.onnx import load_onnx
    from torchlean.certificates.property import parse_property
    from torchlean.verify.float32 import hull

    g = load_onnx(DATA / "verivital" / "Convnet_avgpool.onnx")
    prop = DATA / "verivital" / "specs" / "avgpool_specs" / "prop_0_0.02.vnnlib"
    box = hull(parse_property(prop.read_text()))
    return g, box, bound_certificate(g, box, "binary32", column="fast")


def test_verivital_fast_certificate_holds_and_is_sparse(verivital, monkeypatch):
    """A real conv net (23,328 conv outputs): the fast certificate replays, its epsilon is above
    the float32 error seen on sampled points, and the conv's forms are sparse blocks (a dense C
    there would be 23,328 x 70,000)."""
    g, box, cert = verivital
    v = check(cert)
    assert v.ok and FAST_TRUST in v.trusted, v.reason
    eps = np.array([float(e) for e in epsilons(cert)])
    obs = observed_error(g, box, n=200, dtype=np.float32, seed=0)
    assert np.all(obs.max_error + obs.reference_error <= eps), (obs.max_error, eps)
    kinds = []
    node = fe._node

    def spy(*a):
        out = node(*a)
        kinds.append({type(X).__name__ for X in out.C.values()})
        return out

    monkeypatch.setattr(fe, "_node", spy)
    propagate(cert["statement"])
    assert kinds[2] == {"_Sp"}  # (the relu after the conv: every block sparse)


def test_shrunk_conv_claimsrejected(verivital):
    _, _, cert = verivital
    for node, j in [(0, 100), (2, 5000), (3, 7)]:  # conv2d, relu, avg_pool2d
        c = copy.deepcopy(cert)
        c["steps"][node][j] = str(Fraction(c["steps"][node][j]) * Fraction(9, 10))
        rejected(c, "claimed error")
    rejected(shrunk_epsilon(cert, Fraction(99, 100)), "epsilon")


def test_shrunk_max_pool_claimrejected():
    g = conv_chain(1)
    cert = bound_certificate(g, BOX, "binary32", column="fast")
    k = [n.op for n in g.nodes].index("max_pool2d")
    c = copy.deepcopy(cert)
    j = int(np.argmax([Fraction(x) for x in c["steps"][k]]))
    c["steps"][k][j] = str(Fraction(c["steps"][k][j]) * Fraction(99, 100))
    rejected(c, "claimed error")
