"""The ReLU-split search's float back-substitution (verify/alpha.py: untrusted, a guide whose
bounds the checker's engine recomputes): relu's closed-form intercepts and their slope
derivatives against the table's fast row and a difference quotient, the column-band storage of
dense layer forms against the full product."""

from __future__ import annotations

import numpy as np

from tests.test_graph_relu_bab import _spec, cnn_instance
from torchlean.certificates import fast_engine as fe
from torchlean.certificates.fast_forms import _Mat
from torchlean.certificates.fast_functions import FAST
from torchlean.verify import alpha, graph_relu


def _intervals(rng):
    l = rng.normal(size=(3, 1, 60)) - 0.2
    u = l + np.abs(rng.normal(size=l.shape))
    u[0, 0, :6] = l[0, 0, :6]  # points
    l[1, 0, :6], u[1, 0, :6] = 0.0, np.abs(u[1, 0, :6])  # split elements: bounds clamped at the kink
    l[1, 0, 6:12], u[1, 0, 6:12] = -np.abs(l[1, 0, 6:12]), 0.0
    return l, u


def test_relu_intercepts_match_the_fast_row():
    """The closed forms agree with the generic row (which adds only its rounding charges)."""
    rng = np.random.default_rng(0)
    l, u = _intervals(rng)
    aL, aU = rng.uniform(-0.3, 1.3, (3, 4, 60)), rng.uniform(-0.3, 1.6, (3, 4, 60))
    bL, bU = alpha._relu_intercepts(l, u, aL, aU)
    row = FAST["relu"]
    assert np.allclose(bL, row.lower_intercept(l, u, aL), atol=1e-9)
    assert np.allclose(bU, row.upper_intercept(l, u, aU), atol=1e-9)
    assert (bL <= row.lower_intercept(l, u, aL) + 1e-9).all()  # never above the sound one (+ charge)


def test_relu_intercept_slopes_match_a_forward_difference():
    rng = np.random.default_rng(1)
    l, u = _intervals(rng)
    aL, aU = rng.uniform(-0.3, 1.3, (3, 4, 60)), rng.uniform(-0.3, 1.6, (3, 4, 60))
    aL[:, 0], aL[:, 1] = 0.0, 1.0  # the adaptive defaults, where pieces tie: the right derivative
    aU[:, 0], aU[:, 1] = 0.0, 1.0
    dL, dU = alpha._relu_intercept_grads(l, u, aL, aU)
    h = 1e-7
    bL, bU = alpha._relu_intercepts(l, u, aL, aU)
    nL = (alpha._relu_intercepts(l, u, aL + h, aU)[0] - bL) / h
    nU = (alpha._relu_intercepts(l, u, aL, aU + h)[1] - bU) / h
    assert np.allclose(dL, nL, atol=1e-5) and np.allclose(dU, nU, atol=1e-5)


def test_band_products_equal_the_dense_ones():
    rng = np.random.default_rng(2)
    D = np.zeros((7, 40))
    D[:, 12:25] = rng.normal(size=(7, 13))
    D[2, 13] = 0.0
    rows, cols = np.nonzero(D)
    m = alpha._Band(_Mat(7, 40, rows, cols, D[rows, cols]).D)
    assert m.D.shape == (7, 13)
    X, Y = rng.normal(size=(5, 40)), rng.normal(size=(5, 7))
    assert np.allclose(m.rmul(X), X @ D.T) and np.allclose(m.lmul(Y), Y @ D)
    assert np.allclose(m.take(), D) and np.allclose(m.take(np.array([4, 1])), D[[4, 1]])
    z = alpha._Band(np.zeros((3, 5)))
    assert np.allclose(z.rmul(np.ones((2, 5))), 0) and np.allclose(z.lmul(np.ones((2, 3))), 0)


def test_backsub_bound_is_unchanged_by_the_closed_forms():
    """The float bound with the relu closed forms equals the one through the generic row
    (``_node_mats`` bands included) on the small CNN, at random slopes, gradient included."""
    _, t, x0, lab = cnn_instance()
    r = _spec(x0, lab, 0.09).regions[0]
    fg = fe.compiled(t.bg)
    bs = alpha.Backsub.from_fast(t.bg, fg, fe.forward(fg, *fe.boxes([r.lo], [r.hi]), "crown"), FAST)
    dj = graph_relu.Disjunct(t.bg, r, 0)
    slopes = bs.default_slopes(1)
    rng = np.random.default_rng(3)
    for k in slopes:
        slopes[k] = (rng.uniform(0, 1, slopes[k][0].shape), slopes[k][1])
    v, g = bs.bound(dj.lam0, dj.c0, slopes, want_grad=True)

    class Generic:  # the fast row under another name: bound() takes its generic path
        name = "relu-generic"

        def __getattr__(self, a):
            return getattr(FAST["relu"], a)

    for op in bs.ops:
        if op["kind"] == "fn":
            op["row"] = Generic()
    v2, g2 = bs.bound(dj.lam0, dj.c0, slopes, want_grad=True)
    assert np.allclose(v, v2, atol=1e-8)
    for k in g:
        assert np.allclose(g[k][0], g2[k][0], atol=1e-3)


def test_wide_layers_intercepts_on_live_columns_equal_every_column():
    """On a wide layer whose elements are mostly stable at their side's slope (1 active, 0
    inactive: both intercepts 0), the intercepts and derivatives computed on the live columns only
    (``alpha._live``) are those of the formula on every column, bit for bit, and agree with the
    table's fast row; a stable element given another slope is live."""
    rng = np.random.default_rng(4)
    B, R, n = 3, 4, 500
    l = rng.normal(size=(B, 1, n)) * 2.0
    u = l + np.abs(rng.normal(size=l.shape)) * np.where(rng.uniform(size=l.shape) < 0.1, 3.0, 0.05)
    l[0, 0, :4], u[0, 0, :4] = 0.0, np.array([0.0, 1.0, 2.0, 0.5])  # split at the kink, points
    u[1, 0, 4:8] = 0.0
    l[1, 0, 4:8] = -np.abs(l[1, 0, 4:8])
    side = np.where(l >= 0, 1.0, 0.0)
    unstable = (l < 0) & (u > 0)
    aL = np.where(unstable, rng.uniform(0, 1, (B, R, n)), side)
    aU = np.where(unstable, rng.uniform(0, 1.5, (B, R, n)), side)
    aL[2, 1, 300], aU[0, 3, 301] = 0.4, 0.7  # off-side slopes of (maybe) stable elements
    cols = alpha._live(l, u, aL, aU)
    assert cols is not None and {300, 301} <= set(cols.tolist()) and cols.size < n // 2
    assert set(np.nonzero(unstable.any((0, 1)))[0].tolist()) <= set(cols.tolist())
    bL, bU = alpha._relu_intercepts(l, u, aL, aU)
    rL, rU = alpha._intercepts(l, u, aL, aU)
    assert np.array_equal(bL, rL) and np.array_equal(bU, rU)
    dL, dU = alpha._relu_intercept_grads(l, u, aL, aU)
    eL, eU = alpha._intercept_grads(l, u, aL, aU)
    assert np.array_equal(dL, np.broadcast_to(eL, dL.shape))
    assert np.array_equal(dU, np.broadcast_to(eU, dU.shape))
    row = FAST["relu"]
    assert np.allclose(bL, row.lower_intercept(l, u, aL), atol=1e-9)
    assert np.allclose(bU, row.upper_intercept(l, u, aU), atol=1e-9)
