"""The fast engine's convolution path (``fast_forms.conv_kernel`` and ``_Conv``): a sparse matrix
that is exactly a convolution's (checked against an untrusted geometry hint) is multiplied as dense
BLAS products per kernel offset.

References: the convolution's matrix is built by torch (``conv2d`` of the identity basis), never by
the code under test; the products are compared with numpy's dense ones and with the sparse path;
the structure check must refuse every mutated matrix or wrong hint; a bound pass over a small
conv net with batch-norm-like scales and a residual must contain the spec's exact (mpmath)
evaluation at sampled points with and without the conv path, and the two agree closely.
"""

import dataclasses

import numpy as np
import pytest
import torch

from torchlean.certificates import fast_engine as fe
from torchlean.certificates import fast_forms
from torchlean.certificates.fast_forms import _Mat, conv_kernel
from torchlean.certificates.lower import lower
from torchlean.spec import Graph, Node, Value
from torchlean.spec.exact import evaluate
from torchlean.verify import engines


def _geometry(rng):
    """(C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g) with a nonempty output."""
    while True:
        g = int(rng.integers(1, 3))
        C, O = g * int(rng.integers(1, 4)), g * int(rng.integers(1, 4))
        H, W = (int(v) for v in rng.integers(3, 9, 2))
        kh, kw = (int(v) for v in rng.integers(1, 4, 2))
        sh, sw, dh, dw = (int(v) for v in rng.integers(1, 3, 4))
        ph, pw = (int(v) for v in rng.integers(0, 3, 2))
        if H + 2 * ph > dh * (kh - 1) and W + 2 * pw > dw * (kw - 1):
            return C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g


def _conv_matrix(rng, geom):
    """The (R, n) matrix of a random kernel (some elements 0, a BN-like scale per output channel),
    by torch from the identity basis, and its sparse entries."""
    C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
    K = rng.normal(size=(O, C // g, kh, kw)) * rng.uniform(0.3, 3, (O, 1, 1, 1))
    K[rng.random(K.shape) < 0.25] = 0.0
    n = C * H * W
    basis = torch.eye(n, dtype=torch.float64).reshape(n, C, H, W)
    D = torch.nn.functional.conv2d(basis, torch.tensor(K), stride=(sh, sw), padding=(ph, pw),
                                   dilation=(dh, dw), groups=g).reshape(n, -1).T.numpy().copy()
    rows, cols = np.nonzero(D)
    return D, rows, cols, D[rows, cols]


@pytest.fixture
def all_sparse(monkeypatch):
    monkeypatch.setattr(fast_forms, "SPARSE_BELOW", 1.01)  # (small matrices: sparse, as real convs)
    monkeypatch.setattr(fast_forms, "CONV_BELOW", 1.01)


@pytest.mark.parametrize("seed", range(16))
def test_conv_path_products_equal_sparse_and_dense(seed, all_sparse, monkeypatch):
    rng = np.random.default_rng(seed)
    geom = _geometry(rng)
    D, rows, cols, vals = _conv_matrix(rng, geom)
    R, n = D.shape
    A, S = _Mat(R, n, rows, cols, vals, (geom,)), _Mat(R, n, rows, cols, vals)
    assert A.conv is not None and S.conv is None
    monkeypatch.setattr(fast_forms, "CONV_CHUNK", 64)  # (several chunks of Y's rows)
    pos = lambda v: np.maximum(v, 0)  # noqa: E731
    for f, Df in ((None, D), (np.abs, np.abs(D)), (pos, pos(D))):
        Af, Sf = (A, S) if f is None else (A.map(f), S.map(f))
        assert Af.conv is not None
        for M in (1, 7):
            Y, X = rng.normal(size=(M, R)), rng.normal(size=(M, n))
            for got, ref, dense in ((Af.lmul(Y), Sf.lmul(Y), Y @ Df), (Af.rmul(X), Sf.rmul(X), X @ Df.T)):
                scale = np.abs(dense).max() + 1e-300
                assert np.abs(got - ref).max() <= 1e-12 * scale
                assert np.abs(got - dense).max() <= 1e-12 * scale


@pytest.mark.parametrize("seed", range(8))
def test_structure_check_refuses_mutations_and_wrong_hints(seed):
    rng = np.random.default_rng(100 + seed)
    geom = _geometry(rng)
    D, rows, cols, vals = _conv_matrix(rng, geom)
    R, n = D.shape
    K = conv_kernel(R, n, rows, cols, vals, geom)
    assert K is not None
    C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = geom  # the kernel found is the one torch used
    x = rng.normal(size=n)
    t = torch.nn.functional.conv2d(torch.tensor(x.reshape(1, C, H, W)), torch.tensor(K), stride=(sh, sw),
                                   padding=(ph, pw), dilation=(dh, dw), groups=g)
    np.testing.assert_allclose(t.numpy().ravel(), D @ x, rtol=1e-12, atol=1e-12)
    if len(vals) < 2:
        return
    i = int(rng.integers(len(vals)))
    changed = vals.copy()
    changed[i] = np.nextafter(vals[i], np.inf)  # one ulp
    assert conv_kernel(R, n, rows, cols, changed, geom) is None
    assert conv_kernel(R, n, np.delete(rows, i), np.delete(cols, i), np.delete(vals, i), geom) is None
    dup = (np.append(rows, rows[i]), np.append(cols, cols[i]), np.append(vals, vals[i]))
    assert conv_kernel(R, n, *dup, geom) is None  # (the same position twice: counted twice)
    same = np.nonzero((vals == vals[i]) & (np.arange(len(vals)) != i))[0]  # (one kernel element)
    if len(same):  # a position of it moved onto another of its positions: every count and value
        j = int(same[0])  # holds, only the repeat (and the hole at i) tells
        moved = rows.copy(), cols.copy()
        moved[0][i], moved[1][i] = rows[j], cols[j]
        assert conv_kernel(R, n, *moved, vals, geom) is None
    zeros = np.argwhere(D == 0)  # one extra entry: off the pattern, or on it where K is 0
    if len(zeros):
        r, c = zeros[rng.integers(len(zeros))]
        extra = (np.append(rows, r), np.append(cols, c), np.append(vals, 0.5))
        assert conv_kernel(R, n, *extra, geom) is None
    NaN = vals.copy()
    NaN[i] = np.nan
    assert conv_kernel(R, n, rows, cols, NaN, geom) is None
    # wrong hints: each field changed where the shapes still fit, or the shapes themselves
    for k in range(len(geom)):
        for delta in (-1, 1):
            bad = list(geom)
            bad[k] += delta
            if tuple(bad) == geom:
                continue
            Kb = conv_kernel(R, n, rows, cols, vals, tuple(bad))
            if Kb is not None:  # (a geometry that happens to describe the same matrix: equal)
                fast = _Mat(R, n, rows, cols, vals, (tuple(bad),))
                Y = rng.normal(size=(3, R))
                np.testing.assert_allclose(fast.lmul(Y), Y @ D, rtol=1e-12, atol=1e-12)
    swapped = (H, W, C, O, kh, kw, sh, sw, ph, pw, dh, dw, g)
    if swapped != geom and conv_kernel(R, n, rows, cols, vals, swapped) is not None:
        Y = rng.normal(size=(3, R))
        np.testing.assert_allclose(_Mat(R, n, rows, cols, vals, (swapped,)).lmul(Y), Y @ D, rtol=1e-12)


def test_wrong_hint_on_a_real_mutation_falls_back_to_the_sparse_products(all_sparse):
    rng = np.random.default_rng(7)
    geom = (2, 6, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1)
    D, rows, cols, vals = _conv_matrix(rng, geom)
    vals = vals.copy()
    vals[0] *= 2
    D2 = np.zeros_like(D)
    D2[rows, cols] = vals
    A = _Mat(*D.shape, rows, cols, vals, (geom,))
    assert A.conv is None
    Y = rng.normal(size=(4, D.shape[0]))
    np.testing.assert_allclose(A.lmul(Y), Y @ D2, rtol=1e-12, atol=1e-12)


def _net(rng):
    """x (1, 2, 6, 5) -> conv 3x3 pad 1 -> BN-like scale and shift -> relu -> conv 3x3 pad 1 (+ the
    relu's output: a residual) -> relu -> grouped conv (2, 2) stride 2 dilation (1, 2) pad (1, 0)
    -> scale -> relu -> flatten -> linear 3."""
    c = {"K1": rng.normal(0, 0.5, (4, 2, 3, 3)), "s1": rng.uniform(0.5, 2, (1, 4, 1, 1)),
         "b1": rng.normal(0, 0.3, (1, 4, 1, 1)), "K2": rng.normal(0, 0.4, (4, 4, 3, 3)),
         "K3": rng.normal(0, 0.5, (4, 2, 2, 2)), "s3": rng.uniform(0.5, 2, (1, 4, 1, 1))}
    nodes = [("conv2d", ["x", "K1"], "a", {"padding": 1}), ("mul", ["a", "s1"], "a1"),
             ("add", ["a1", "b1"], "a2"), ("relu", ["a2"], "h"),
             ("conv2d", ["h", "K2"], "c", {"padding": 1}), ("add", ["c", "h"], "c1"), ("relu", ["c1"], "k"),
             ("conv2d", ["k", "K3"], "e", {"groups": 2, "stride": 2, "dilation": (1, 2), "padding": (1, 0)}),
             ("mul", ["e", "s3"], "e1"), ("relu", ["e1"], "r"), ("flatten", ["r"], "f")]
    shape = (1, 4, 4, 2)  # (6 + 2 - 1 - 1) // 2 + 1, (5 - 2 - 1) // 2 + 1
    c["Wl"] = rng.normal(0, 0.5, (int(np.prod(shape)), 3))
    nodes.append(("matmul", ["f", "Wl"], "y"))
    return Graph([Value("x", (1, 2, 6, 5), "float64")], c, [Node(*t) for t in nodes], ["y"]).check()


def test_bound_pass_with_and_without_conv_path_contains_exact_values(all_sparse):
    rng = np.random.default_rng(11)
    g = _net(rng)
    bg = lower(g.to_dict())
    assert len(bg.conv_hints) == 3
    plain = dataclasses.replace(bg, conv_hints=())
    fg, fp = fe.FastGraph(bg), fe.FastGraph(plain)
    def convs(fg):
        return sum(A.conv is not None for F in fg.forms if isinstance(F, fast_forms._Forms)
                   for _, A, _, _ in F.parents)

    assert convs(fg) == 3 and convs(fp) == 0  # (the residual's identity joins the second kernel)
    x0 = rng.uniform(-1, 1, (1, 60))
    for eps in (0.01, 0.1):
        lo, hi = x0 - eps, x0 + eps
        cl, cu = engines.fast_crown(fg, lo, hi)
        pl, pu = engines.fast_crown(fp, lo, hi)
        width = np.abs(cu - cl).max()
        assert np.isfinite(width) and width > 0
        assert np.abs(cl - pl).max() <= 1e-9 * (1 + width) and np.abs(cu - pu).max() <= 1e-9 * (1 + width)
        for _ in range(12):
            p = lo + (hi - lo) * rng.choice([0.0, 1.0, rng.uniform()], lo.shape)
            y = np.asarray(evaluate(g, {"x": p.reshape(1, 2, 6, 5)})[0], dtype=object).ravel()
            for i, v in enumerate(y):  # (mpmath numbers compare exactly with floats)
                assert cl[0, i] <= v <= cu[0, i] and pl[0, i] <= v <= pu[0, i]


def test_conversion_errors_share_the_conv_path(all_sparse):
    """Forms whose exact coefficients are not floats (a conv kernel divided by 3): A, |A| and the
    conversion errors E all pass the structure check (one Fraction per kernel element: one float
    and one error), and E's products equal the sparse ones."""
    from fractions import Fraction

    from torchlean.certificates.lower import Aff

    rng = np.random.default_rng(21)
    geom = (2, 5, 4, 3, 3, 2, 1, 2, 1, 0, 1, 1, 1)
    D, rows, cols, vals = _conv_matrix(rng, geom)
    R, n = D.shape
    forms = [Aff({int(c): Fraction(float(D[r, c])) / 3 for c in np.nonzero(D[r])[0]}) for r in range(R)]
    (_, A, absA, E), = fast_forms._Forms(forms, [0], [n], (geom,)).parents
    (_, S, _, Es), = fast_forms._Forms(forms, [0], [n]).parents
    assert A.conv is not None and absA.conv is not None and E is not None and E.conv is not None
    assert Es.conv is None and (Es.vals > 0).any()
    X = rng.uniform(0, 2, (3, n))
    np.testing.assert_allclose(E.rmul(X), Es.rmul(X), rtol=1e-12, atol=0)
    np.testing.assert_allclose(A.rmul(X), S.rmul(X), rtol=1e-12, atol=1e-300)
