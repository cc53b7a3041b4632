"""h-audit11: adversarial audit of the fast engine's convolution path (h-convbsub).

``fast_forms.conv_kernel`` accepts a sparse matrix as the matrix of the convolution by a kernel K
under an untrusted geometry hint, and ``_Conv`` then computes its products as dense BLAS products
per kernel offset. Soundness needs: (1) accepted => the matrix (the sparse path's meaning: entries
at one position summed) equals conv(K) entry by entry, whatever the hint; (2) the products are
sums of the same products plus exact zeros, so the γ charges hold; (3) |A|, A⁺, A⁻ and the
conversion-error matrix E keep that correspondence; (4) certificates the fast replay accepts on
conv nets are ones the exact replay (main's trusted engine) accepts.

References, none from the code under test: a dense matrix from torch's conv2d of the identity basis
or from the entries themselves (``np.add.at``: the sparse path's sum of duplicates), Fraction sums
of the products, mpmath/Fraction evaluation of a conv net (``spec.exact.evaluate``), the exact
engine's bounds and verdicts (``mode="exact"``).

Planted bugs (each made by hand in torchlean/certificates/fast_forms.py, this file run, reverted;
the tests that then failed):
  P1 the duplicate-position test dropped from ``conv_kernel`` (``len(np.unique(...))``):
     ``test_duplicate_plus_missing_keeps_the_count`` and the fuzz cases (a duplicated entry
     and a missing one of one kernel element keep its count).
  P2 the count test (4) dropped: ``test_missing_entry_of_a_nonzero_element`` and the fuzz.
  P3 the equal-values test (3) dropped: ``test_two_values_of_one_kernel_element`` and the fuzz.
  P4 ``_Conv.lmul`` overwrites instead of accumulating the offsets (``Z[..] = P[..]``): the
     edge geometries, the 3 cancellation nets and the replay comparison.
  P5 ``_like`` keeps the old kernel (no ``f(K)``): ``test_abs_and_parts_follow_the_kernel``, the
     E-matrix test and the 3 cancellation nets.
  P6 ``_Conv.rmul`` with a float32 kernel: ``test_products_error_within_gamma_of_the_terms_counted``
     and ``test_fast_bounds_below_exact_engine_bounds`` (the cancellation nets' charges, dominated
     by their 2^40 terms, still cover it).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from tests.test_heldout_audit9 import _tree
from torchlean.certificates import fast_engine as fe
from torchlean.certificates import fast_forms, fast_vnn, graph_vnn
from torchlean.certificates.bound_graph import Aff
from torchlean.certificates.bounds import check_vnn, leaf_proofs
from torchlean.certificates.fast_forms import _Forms, _Mat, conv_kernel, gamma
from torchlean.certificates.lower import fingerprint, lower
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.spec import Graph, Node, Value
from torchlean.spec.exact import evaluate
from torchlean.verify import engines


@pytest.fixture
def all_sparse(monkeypatch):
    """Small matrices sparse and tried as convolutions, as real convs' are."""
    monkeypatch.setattr(fast_forms, "SPARSE_BELOW", 1.01)
    monkeypatch.setattr(fast_forms, "CONV_BELOW", 1.01)


def _out(h, k, s, p, d):
    return (h + 2 * p - d * (k - 1) - 1) // s + 1


def _torch_conv(K, geom):
    """The (R, n) dense matrix of the convolution by K under geom, by torch (identity basis)."""
    C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
    n = C * H * W
    basis = torch.eye(n, dtype=torch.float64).reshape(n, C, H, W)
    y = torch.nn.functional.conv2d(basis, torch.tensor(K, dtype=torch.float64), stride=(sh, sw),
                                   padding=(ph, pw), dilation=(dh, dw), groups=g)
    return y.reshape(n, -1).T.numpy().copy()


def _entries(D):
    rows, cols = np.nonzero(D)
    return rows.astype(np.int64), cols.astype(np.int64), D[rows, cols].copy()


def _meaning(R, n, rows, cols, vals):
    """The matrix the sparse path multiplies by: entries at one position summed."""
    D = np.zeros((R, n))
    np.add.at(D, (rows, cols), vals)
    return D


def _mat(R, n, rows, cols, vals, hints=()):
    """``_Mat`` of the entries sorted by row (as ``_Forms`` gives them: its sparse layout needs it)."""
    o = np.argsort(rows, kind="stable")
    return _Mat(R, n, rows[o], cols[o], vals[o], hints)


def _materialise(A: _Mat):
    """(I @ A, (I @ A.T).T) through A's products: with one nonzero per row of I every output is
    one product k·1 plus exact zeros, so exact."""
    R, n = A.shape
    return A.lmul(np.eye(R)), A.rmul(np.eye(n)).T


def _accepts_only_itself(R, n, rows, cols, vals, geom) -> bool:
    """Whether geom is accepted; if so, assert its convolution is the entries' matrix exactly."""
    K = conv_kernel(R, n, rows, cols, vals, geom)
    if K is None:
        return False
    ref = _meaning(R, n, rows, cols, vals)
    assert np.array_equal(_torch_conv(K, geom), ref), geom
    A = _mat(R, n, rows, cols, vals, (geom,))
    assert (A.conv is not None) == (len(vals) < fast_forms.CONV_BELOW * R * n)
    for got in _materialise(A):
        assert np.array_equal(got, ref), geom
    return True


def _divisors(m):
    return [d for d in range(1, m + 1) if m % d == 0]


def _geometries(R, n, kmax=3, smax=2, pmax=2, dmax=2):
    """Every geometry (kernels up to kmax, strides and dilations up to smax/dmax, pads up to pmax)
    whose shapes give an (R, n) matrix: the hints an attacker could pair with the entries."""
    def per_side(h):  # {output size: [(k, s, p, d)]}
        out: dict = {}
        for k, s, p, d in itertools.product(range(1, kmax + 1), range(1, smax + 1), range(pmax + 1),
                                            range(1, dmax + 1)):
            if _out(h, k, s, p, d) >= 1:
                out.setdefault(_out(h, k, s, p, d), []).append((k, s, p, d))
        return out

    for C in _divisors(n):
        for H in _divisors(n // C):
            W = n // (C * H)
            sh_, sw_ = per_side(H), per_side(W)
            for O in _divisors(R):
                for Ho, hs in sh_.items():
                    if (R // O) % Ho or R % O or R // O // Ho not in sw_:
                        continue
                    for g in _divisors(math.gcd(C, O)):
                        for (kh, sh, ph, dh), (kw, sw, pw, dw) in itertools.product(hs, sw_[R // O // Ho]):
                            yield (C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g)


# -- (1) the structure check: every accepted hint is exactly the matrix -----------------------------

EDGE = {  # (C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g)
    "non_square": (2, 3, 5, 2, 2, 3, 1, 2, 0, 1, 1, 1, 1),
    "kernel_larger_than_input": (1, 2, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1),
    "output_size_1": (2, 3, 3, 3, 3, 3, 1, 1, 0, 0, 1, 1, 1),
    "pad_beyond_kernel_empty_rows": (1, 3, 2, 2, 1, 1, 1, 1, 2, 1, 1, 1, 1),
    "depthwise": (3, 4, 3, 3, 2, 2, 1, 1, 1, 0, 1, 1, 3),
    "groups_dilation_stride": (4, 5, 6, 2, 2, 2, 2, 3, 1, 2, 2, 1, 2),
    "stride_past_input": (1, 4, 4, 1, 1, 1, 5, 5, 0, 0, 1, 1, 1),
    "dilated_kernel_spans_padding": (1, 3, 3, 1, 2, 2, 1, 1, 2, 2, 3, 3, 1),
}


@pytest.mark.parametrize("name", [pytest.param(k, marks=pytest.mark.slow) if k == "depthwise" else k
                                  for k in sorted(EDGE)])
def test_edge_geometries_exact_and_every_other_hint_exact(name, all_sparse):
    """Each edge geometry's true matrix is accepted and its products are exactly it; every other
    geometry with the same (R, n) is refused or, where accepted, is exactly the same matrix."""
    geom = EDGE[name]
    rng = np.random.default_rng(len(name))
    C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
    K = rng.integers(-3, 4, (O, C // g, kh, kw)).astype(float)
    K[0, 0, 0, 0] = 0.0 if K.size > 1 else 2.0  # (a zero element: its entries absent)
    D = _torch_conv(K, geom)
    R, n = D.shape
    rows, cols, vals = _entries(D)
    assert _accepts_only_itself(R, n, rows, cols, vals, geom)
    for G in _geometries(R, n, pmax=1):
        _accepts_only_itself(R, n, rows, cols, vals, G)


def _mutants(rng, rows, cols, vals, R, n):
    """Random small corruptions of a conv matrix's entries."""
    k = len(vals)
    i, j = int(rng.integers(k)), int(rng.integers(k))
    yield "drop", np.delete(rows, i), np.delete(cols, i), np.delete(vals, i)
    v = vals.copy()
    v[i] = v[j] if v[i] != v[j] else v[i] + 1
    yield "value", rows, cols, v
    yield "dup", np.append(rows, rows[i]), np.append(cols, cols[i]), np.append(vals, vals[i])
    yield "dup_half", np.append(rows, rows[i]), np.append(cols, cols[i]), np.append(vals / 1, 0.0)
    r, c = int(rng.integers(R)), int(rng.integers(n))
    yield "extra", np.append(rows, r), np.append(cols, c), np.append(vals, vals[j])
    # move one entry to another column of its row (keeps counts per row)
    c2 = cols.copy()
    c2[i] = (c2[i] + 1) % n
    yield "move", rows, c2, vals
    # a duplicate of one entry replacing another entry of the same value
    same = np.nonzero(vals == vals[i])[0]
    if len(same) > 1:
        s = int(same[same != i][0])
        keep = np.arange(k) != s
        yield "dup_for_missing", np.append(rows[keep], rows[i]), np.append(cols[keep], cols[i]), \
            np.append(vals[keep], vals[i])


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow),
                                  pytest.param(2, marks=pytest.mark.slow), 3])
def test_fuzz_mutated_conv_matrices_against_every_hint(seed, all_sparse):
    """Conv matrices with few distinct values (so wrong structures often satisfy the value test),
    corrupted at random: under every geometry of their size, an acceptance is exact."""
    rng = np.random.default_rng(seed)
    geoms = [(1, 3, 3, 2, 2, 2, 1, 1, 0, 0, 1, 1, 1), (2, 2, 3, 2, 1, 2, 1, 1, 1, 0, 1, 1, 2),
             (2, 3, 2, 2, 2, 2, 1, 1, 1, 1, 2, 1, 1), (1, 3, 3, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1)]
    geom = geoms[seed]
    C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
    accepted = 0
    for _ in range(2):
        K = rng.choice([0.0, 1.0, -1.0, 2.0], (O, C // g, kh, kw))
        D = _torch_conv(K, geom)
        R, n = D.shape
        rows, cols, vals = _entries(D)
        if len(vals) < 2:
            continue
        for _, r, c, v in _mutants(rng, rows, cols, vals, R, n):
            for G in _geometries(R, n, kmax=3, smax=2, pmax=1, dmax=2):
                accepted += _accepts_only_itself(R, n, r, c, v, G)
    assert accepted > 0  # (some mutants are still convolutions: a zero element's entry dropped)


def _one_conv(rng, geom=(2, 4, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1)):
    C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
    K = rng.normal(size=(O, C // g, kh, kw))
    D = _torch_conv(K, geom)
    return geom, K, D, *_entries(D)


def test_duplicate_plus_missing_keeps_the_count(all_sparse):
    """One position of a kernel element twice and another of the same element absent: the
    element's count equals its pattern count, so only the duplicate test refuses it (the sparse
    path would sum the duplicate: 2k at one position, 0 at the other)."""
    geom, K, D, rows, cols, vals = _one_conv(np.random.default_rng(1))
    R, n = D.shape
    i = 0
    s = [t for t in np.nonzero(vals == vals[i])[0] if t != i][0]
    r = np.append(np.delete(rows, s), rows[i])
    c = np.append(np.delete(cols, s), cols[i])
    v = np.append(np.delete(vals, s), vals[i])
    assert conv_kernel(R, n, r, c, v, geom) is None
    A = _mat(R, n, r, c, v, (geom,))
    assert A.conv is None
    if A.sparse:
        for got in _materialise(A):
            assert np.array_equal(got, _meaning(R, n, r, c, v))


def test_duplicate_halves_of_one_entry():
    """k/2 twice at one position (the sparse path's k there): refused (two values in one element)."""
    geom, K, D, rows, cols, vals = _one_conv(np.random.default_rng(2))
    R, n = D.shape
    v = vals.copy()
    v[0] /= 2
    r, c, v = np.append(rows, rows[0]), np.append(cols, cols[0]), np.append(v, v[0])
    assert conv_kernel(R, n, r, c, v, geom) is None


def test_missing_entry_of_a_nonzero_element(all_sparse):
    """A nonzero kernel element with one of its positions absent: refused; the products are the
    sparse matrix's (the missing entry 0)."""
    geom, K, D, rows, cols, vals = _one_conv(np.random.default_rng(3))
    R, n = D.shape
    for i in (0, len(vals) // 2, len(vals) - 1):
        r, c, v = np.delete(rows, i), np.delete(cols, i), np.delete(vals, i)
        assert conv_kernel(R, n, r, c, v, geom) is None
        A = _mat(R, n, r, c, v, (geom,))
        assert A.conv is None
        for got in _materialise(A):
            assert np.array_equal(got, _meaning(R, n, r, c, v))


def test_two_values_of_one_kernel_element(all_sparse):
    """One entry of a kernel element changed (by one ulp, or to -k, or to -0.0 where k != 0):
    refused."""
    geom, K, D, rows, cols, vals = _one_conv(np.random.default_rng(4))
    R, n = D.shape
    for new in (np.nextafter(vals[5], np.inf), -vals[5], -0.0, np.inf):
        v = vals.copy()
        v[5] = new
        assert conv_kernel(R, n, rows, cols, v, geom) is None
        A = _mat(R, n, rows, cols, v, (geom,))
        assert A.conv is None


def test_default_thresholds_mid_density_conv_and_its_mutant():
    """At the default thresholds a conv matrix between ``SPARSE_BELOW`` and ``CONV_BELOW`` full
    takes the conv path (no sparse layout built) and is exact; one entry changed, it is refused
    and multiplied densely, exactly as its entries say."""
    geom = (2, 6, 6, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1)  # (<= 18 of 72: 5% < density < 25%)
    rng = np.random.default_rng(15)
    D = _torch_conv(rng.normal(size=(2, 2, 3, 3)), geom)
    R, n = D.shape
    rows, cols, vals = _entries(D)
    assert fast_forms.SPARSE_BELOW * R * n < len(vals) < fast_forms.CONV_BELOW * R * n
    A = _mat(R, n, rows, cols, vals, (geom,))
    assert A.conv is not None
    for M, ref in ((A, D), (A.map(np.abs), np.abs(D))):
        for got in _materialise(M):
            assert np.array_equal(got, ref)
        assert np.array_equal(M.take(), ref) and np.array_equal(M.take(np.array([3, 0, 3])), ref[[3, 0, 3]])
    v = vals.copy()
    v[7] = -v[7]
    B = _mat(R, n, rows, cols, v, (geom,))
    assert B.conv is None and not B.sparse
    for got in _materialise(B):
        assert np.array_equal(got, _meaning(R, n, rows, cols, v))


def test_zero_elements_signed_zeros_and_explicit_zeros(all_sparse):
    """A zero kernel element may be absent, present as +0.0 or -0.0 at some positions, or mixed:
    accepted, and the products equal the matrix exactly (values; signs of zero aside)."""
    rng = np.random.default_rng(5)
    geom = (2, 4, 4, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1)
    C, H, W, O, kh, kw, *_ = geom
    K = rng.normal(size=(O, C, kh, kw))
    K[1, 0] = 0.0  # (a whole 3x3 slice zero)
    K[0, 1, 1, 1] = 0.0
    D = _torch_conv(K, geom)
    R, n = D.shape
    ones = _torch_conv(np.where(K == 0, 1.0, 0.0), geom) != 0  # the zero elements' positions
    zr, zc = np.nonzero(ones)
    rows, cols, vals = _entries(D)
    pick = rng.random(len(zr)) < 0.5
    signs = np.where(rng.random(len(zr)) < 0.5, 0.0, -0.0)
    r = np.concatenate([rows, zr[pick]])
    c = np.concatenate([cols, zc[pick]])
    v = np.concatenate([vals, signs[pick]])
    Kc = conv_kernel(R, n, r, c, v, geom)
    assert Kc is not None and np.array_equal(Kc, K)
    A = _mat(R, n, r, c, v, (geom,))
    for got in _materialise(A):
        assert np.array_equal(got, D)


def test_infinite_kernel_never_gives_a_wrong_finite_product(all_sparse):
    """An inf kernel element with every pattern position present passes the check; wherever the
    conv path's product is finite it must equal the dense product (padding's inf·0 is NaN, which
    the engine reads as the vacuous bound)."""
    geom, K, D, rows, cols, vals = _one_conv(np.random.default_rng(6))
    R, n = D.shape
    v = np.where(vals == vals[3], np.inf, vals)
    A = _mat(R, n, rows, cols, v, (geom,))
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(3, n)), rng.normal(size=(3, R))
    S = _mat(R, n, rows, cols, v)
    for got, ref in ((A.rmul(X), S.rmul(X)), (A.lmul(Y), S.lmul(Y))):
        fin = np.isfinite(got)  # (the orders differ: equal up to rounding)
        assert np.isfinite(ref[fin]).all()
        np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-12, atol=1e-12)
    Z = fast_forms._safe(A.rmul(X), A.rmul(X))
    assert not np.isnan(Z[0]).any() and not np.isnan(Z[1]).any()


def test_batch_two_is_a_doubled_grouped_conv(all_sparse):
    """Batch 2 (the lowering gives no hint): its block-diagonal matrix is refused under the batch-1
    geometry (sizes) and, under the hint of twice the channels and groups, accepted and exact: a
    batch of convolutions is that grouped convolution, so an acceptance is still the matrix."""
    rng = np.random.default_rng(7)
    geom = (2, 3, 4, 2, 2, 2, 1, 1, 1, 0, 1, 1, 1)
    C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
    K = rng.normal(size=(O, C, kh, kw))
    D1 = _torch_conv(K, geom)
    D = np.block([[D1, np.zeros_like(D1)], [np.zeros_like(D1), D1]])
    R, n = D.shape
    rows, cols, vals = _entries(D)
    assert conv_kernel(R, n, rows, cols, vals, geom) is None
    twice = (2 * C, H, W, 2 * O, kh, kw, sh, sw, ph, pw, dh, dw, 2)
    assert _accepts_only_itself(R, n, rows, cols, vals, twice)
    # a batch-2 matrix whose two images use different kernels: refused under the doubled hint?
    # no -- it is a grouped conv with two kernels, accepted and exact either way
    D2 = np.block([[D1, np.zeros_like(D1)], [np.zeros_like(D1), _torch_conv(2 * K, geom)]])
    assert _accepts_only_itself(R, n, *_entries(D2), twice)
    # the two images' blocks crossed (image 1's outputs read image 0): not a grouped conv
    D3 = np.block([[D1, np.zeros_like(D1)], [D1, np.zeros_like(D1)]])
    assert conv_kernel(R, n, *_entries(D3), twice) is None


def test_channels_split_across_parents(all_sparse):
    """A parent that is one channel of a conv's input (its matrix: the columns of that channel)
    and a hint of that one-channel shape: accepted only as exactly those columns; the other
    channel's slice of a grouped conv (rows of the other group empty) likewise."""
    rng = np.random.default_rng(8)
    for g in (1, 2):
        geom = (2, 4, 3, 2, 3, 2, 1, 1, 1, 1, 1, 1, g)
        C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, _ = geom
        D = _torch_conv(rng.normal(size=(O, C // g, kh, kw)), geom)
        R = D.shape[0]
        for ch in range(C):
            part = D[:, ch * H * W:(ch + 1) * H * W]
            rows, cols, vals = _entries(part)
            hint = (1, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, 1)
            assert _accepts_only_itself(R, H * W, rows, cols, vals, hint)
            # a hint splitting the wrong way (2 channels of half the rows): refused or exact
            for G in _geometries(R, H * W, pmax=1):
                _accepts_only_itself(R, H * W, rows, cols, vals, G)


def test_form_rows_permuted(all_sparse):
    """The same entries with the output rows permuted (a transposed or reshaped consumer's forms):
    under the true geometry refused unless the permutation happens to fix the matrix."""
    rng = np.random.default_rng(9)
    geom, K, D, rows, cols, vals = _one_conv(rng)
    R, n = D.shape
    for _ in range(5):
        perm = rng.permutation(R)
        r = perm[rows]
        fixed = np.array_equal(D[np.argsort(perm)], D)
        assert (conv_kernel(R, n, r, cols, vals, geom) is None) == (not fixed)
        _accepts_only_itself(R, n, r, cols, vals, geom)


def test_hint_wrong_shape_fields(all_sparse):
    """Hints with a nonpositive size, stride, dilation or groups, negative padding, groups not
    dividing the channels, or sizes that do not give (R, n): refused, never an error."""
    geom, K, D, rows, cols, vals = _one_conv(np.random.default_rng(10))
    R, n = D.shape
    for k in range(13):
        for bad in (0, -1, 3, 10**6):
            G = list(geom)
            G[k] = bad
            try:
                _accepts_only_itself(R, n, rows, cols, vals, tuple(G))
            except (MemoryError, ValueError) as e:  # (a huge hint must not pass; an error is a refusal)
                assert "memory" in str(e).lower() or isinstance(e, MemoryError)


# -- (2) the rounding argument ------------------------------------------------------------------


def _frac_products(D, X):
    return [[sum((Fraction(float(a)) * Fraction(float(b)) for a, b in zip(row, x)), Fraction(0))
             for row in D] for x in X]


@pytest.mark.parametrize("name", ["cancel", *sorted(EDGE)])
def test_products_error_within_gamma_of_the_terms_counted(name, all_sparse):
    """Cancellation-heavy kernels and inputs: each output of the conv path's lmul and rmul is
    within γ_T·Σ|terms| of the exact (Fraction) sum, T the number of nonzero terms of that output
    (the charges use γ of the row or column count, T's upper bound), on every edge geometry."""
    rng = np.random.default_rng(11 + len(name))
    geom = EDGE.get(name, (2, 3, 3, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1))
    C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
    K = rng.choice([1e16, -1e16, 1.0, 3.0, -7.0, 0.1], (O, C // g, kh, kw))
    D = _torch_conv(K, geom)
    R, n = D.shape
    A = _mat(R, n, *_entries(D), (geom,))
    assert A.conv is not None
    X = rng.choice([1.0, -1.0, 1 / 3, 1e-3], (3, n))
    Y = rng.choice([1.0, -1.0, 1 / 3, 1e-3], (3, R))
    for got, Dm, V in ((A.rmul(X), D, X), (A.lmul(Y), D.T, Y)):
        exact = _frac_products(Dm, V)
        for b in range(V.shape[0]):
            for i in range(Dm.shape[0]):
                T = int(np.count_nonzero(Dm[i]))
                mag = sum(abs(Fraction(float(a)) * Fraction(float(x))) for a, x in zip(Dm[i], V[b]))
                err = abs(Fraction(float(got[b, i])) - exact[b][i])
                assert err <= Fraction(gamma(max(T, 1))) * mag, (b, i, float(err), float(mag))


def _cancel_net(rng):
    """x (1, 2, 4, 3) -> conv 3x3 pad 1 with kernels of mixed magnitudes (±2^40, 1, 1/3) -> relu
    -> conv 2x2 stride 2 pad 1 groups 2 -> relu -> flatten -> matmul 2."""
    K1 = rng.choice([2.0**40, -(2.0**40), 1.0, -1.0, 1 / 3, 0.0], (4, 2, 3, 3))
    K2 = rng.choice([2.0**20, -(2.0**20), 1.0, 0.5], (4, 2, 2, 2))
    Wl = rng.normal(size=(4 * 3 * 2, 2))  # (conv 2: 4 x 3 x 2)
    c = {"K1": K1, "K2": K2, "Wl": Wl}
    nodes = [Node("conv2d", ["x", "K1"], "a", {"padding": 1}), Node("relu", ["a"], "h"),
             Node("conv2d", ["h", "K2"], "e", {"groups": 2, "stride": 2, "padding": (1, 1)}),
             Node("relu", ["e"], "r"), Node("flatten", ["r"], "f"), Node("matmul", ["f", "Wl"], "y")]
    return Graph([Value("x", (1, 2, 4, 3), "float64")], c, nodes, ["y"]).check()


@pytest.mark.parametrize("seed", range(3))
def test_point_boxes_through_cancelling_convs_contain_the_exact_value(seed, all_sparse):
    """Degenerate boxes (lo = hi): the certified IBP and CROWN bounds must contain the exact
    (Fraction/mpmath) output though the conv path sums in another order than the sparse path; at
    2^40-scale cancellation an under-counted charge would exclude it."""
    rng = np.random.default_rng(20 + seed)
    g = _cancel_net(rng)
    bg = lower(g.to_dict())
    fg = fe.FastGraph(bg)
    assert sum(A.conv is not None for F in fg.forms if isinstance(F, _Forms) for _, A, _, _ in F.parents) == 2
    for _ in range(4):
        x = rng.choice([1.0, -1.0, 1 / 3, 0.1, 3.0], (1, 24))
        y = np.asarray(evaluate(g, {"x": x.reshape(1, 2, 4, 3)})[0], dtype=object).ravel()
        for lo_, hi_ in (engines.fast_ibp(fg, x, x), engines.fast_crown(fg, x, x)):
            for i, v in enumerate(y):
                assert lo_[0, i] <= v <= hi_[0, i], (i, lo_[0, i], v, hi_[0, i])
                assert np.isfinite(lo_[0, i])
        eps = 2.0**-30
        for lo_, hi_ in (engines.fast_ibp(fg, x - eps, x + eps), engines.fast_crown(fg, x - eps, x + eps)):
            for i, v in enumerate(y):
                assert lo_[0, i] <= v <= hi_[0, i]


# -- (3) |A|, A⁺, A⁻ and E on the conv path ------------------------------------------------------


def test_abs_and_parts_follow_the_kernel(all_sparse):
    """map(abs / positive part / negative part / indicator) of a conv matrix: its kernel is f(K),
    and its products are exactly those of f applied to the matrix's entries."""
    geom, K, D, rows, cols, vals = _one_conv(np.random.default_rng(12))
    R, n = D.shape
    A = _mat(R, n, rows, cols, vals, (geom,))
    for f in (np.abs, lambda v: np.maximum(v, 0), lambda v: np.minimum(v, 0), lambda v: (v != 0) * 1.0):
        Af = A.map(f)
        assert Af.conv is not None and np.array_equal(Af.conv.K, f(A.conv.K))
        for got in _materialise(Af):
            assert np.array_equal(got, f(D))
    for got in _materialise(A):  # (the original untouched by its maps)
        assert np.array_equal(got, D)


def test_forms_E_matrix_with_inexact_and_colliding_weights(all_sparse):
    """Forms of a conv whose weights are not binary64 (1/3, 1/10) and one kernel element whose
    positions hold two Fractions with the same nearest float: A is the conv of the floats, E
    (conversion errors) differs within that element so it must not be taken as a conv, and every
    parent's products equal the per-entry reference (|q - fl(q)| from Fractions)."""
    geom = (1, 3, 4, 2, 2, 2, 1, 1, 1, 0, 1, 1, 1)
    C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
    Kq = [[[[Fraction(1, 3), Fraction(-1, 10)], [Fraction(2), Fraction(5, 7)]]],
          [[[Fraction(1, 2**60) + 1, Fraction(0)], [Fraction(-3, 11), Fraction(1, 9)]]]]
    Ho, Wo = _out(H, kh, sh, ph, dh), _out(W, kw, sw, pw, dw)
    forms, twin = [], Fraction(1) + Fraction(1, 2**61)  # (fl(twin) = fl(1 + 2^-60) = 1)
    for o in range(O):
        for i in range(Ho):
            for j in range(Wo):
                t = {}
                for a in range(kh):
                    for b in range(kw):
                        h, w = i * sh - ph + a * dh, j * sw - pw + b * dw
                        if 0 <= h < H and 0 <= w < W and Kq[o][0][a][b]:
                            q = Kq[o][0][a][b]
                            t[h * W + w] = twin if (o, a, b, i) == (1, 0, 0, 1) else q
                forms.append(Aff(t))
    F = _Forms(forms, [0], [C * H * W], (geom,))
    (p, A, absA, E), = F.parents
    R, n = A.shape
    Dq = [[Fraction(0)] * n for _ in range(R)]
    for r, f in enumerate(forms):
        for col, q in f.t.items():
            Dq[r][col] = q
    Df = np.array([[float(q) for q in row] for row in Dq])
    Derr = np.array([[float(abs(q - Fraction(float(q)))) for q in row] for row in Dq])
    assert A.conv is not None and absA.conv is not None
    assert E is not None and E.conv is None  # (two conversion errors in one kernel element)
    for M, ref in ((A, Df), (absA, np.abs(Df))):
        for got in _materialise(M):
            assert np.array_equal(got, ref)
    for got in _materialise(E):  # (E >= the exact error, within its (1 + 2^-50) + 5e-324)
        assert (got >= Derr).all() and (got <= Derr * (1 + 2**-49) + 1e-323).all()


# -- (4) the fast engine's bounds and the replay on conv nets -------------------------------------


def _relu_conv_net(rng):
    """x (1, 1, 4, 4) -> conv 3x3 pad 1 (3 ch) -> relu -> conv 2x2 stride 2 groups 1 dilation 1
    (2 ch) -> relu -> flatten -> matmul 2."""
    c = {"K1": rng.normal(0, 0.7, (3, 1, 3, 3)), "K2": rng.normal(0, 0.6, (2, 3, 2, 2)),
         "Wl": rng.normal(0, 0.8, (8, 2))}
    nodes = [Node("conv2d", ["x", "K1"], "a", {"padding": 1}), Node("relu", ["a"], "h"),
             Node("conv2d", ["h", "K2"], "e", {"stride": 2}), Node("relu", ["e"], "r"),
             Node("flatten", ["r"], "f"), Node("matmul", ["f", "Wl"], "y")]
    return Graph([Value("x", (1, 1, 4, 4), "float64")], c, nodes, ["y"]).check()


def test_fast_bounds_below_exact_engine_bounds(all_sparse):
    """The fast CROWN/IBP bounds with the conv path vs the exact engine's (main's trusted exact
    arithmetic, same algorithm): the fast lower bound is at most the exact one plus a float-level
    slack, the upper at least the exact minus it; both contain sampled exact outputs."""
    rng = np.random.default_rng(13)
    g = _relu_conv_net(rng)
    bg = lower(g.to_dict())
    fg = fe.FastGraph(bg)
    assert sum(A.conv is not None for F in fg.forms if isinstance(F, _Forms) for _, A, _, _ in F.parents) == 2
    x0 = rng.uniform(-1, 1, (1, 16))
    for eps in (0.05, 0.3):
        lo, hi = x0 - eps, x0 + eps
        fl, fu = engines.fast_crown(fg, lo, hi)
        el, eu = engines.exact_crown(bg, [Fraction(float(v)) for v in lo[0]],
                                     [Fraction(float(v)) for v in hi[0]])
        for i, (a, b) in enumerate(zip(el, eu)):
            slack = 1e-9 * (1 + abs(float(a)) + abs(float(b)))
            assert fl[0, i] <= float(a) + slack and fu[0, i] >= float(b) - slack
        for _ in range(10):
            p = lo + (hi - lo) * rng.choice([0.0, 1.0, rng.uniform()], lo.shape)
            y = np.asarray(evaluate(g, {"x": p.reshape(1, 1, 4, 4)})[0], dtype=object).ravel()
            for i, v in enumerate(y):
                assert fl[0, i] <= v <= fu[0, i]


def _leaf_bounds(monkeypatch, bg, spec, tree, mode, method):
    """The replay's bound per leaf (by leaf number), recorded instead of judged."""
    got: dict = {}

    def record(proofs, region, index, lower, where, read_extras):
        for j, p, combo in leaf_proofs(proofs, region, where):
            got[int(where.split(" leaf ")[1])] = Fraction(lower(index[j][combo], None))

    monkeypatch.setattr(graph_vnn, "check_leaf_proofs", record)
    monkeypatch.setattr(fast_vnn, "check_leaf_proofs", record)
    cert = {"kind": "vnn-unsat", "network": fingerprint(bg), "property": spec.digest(), "method": method,
            "regions": [tree]}
    v = check_vnn(cert, bg, spec, mode=mode)
    assert v.ok, v.reason
    return got


def test_replay_fast_leaf_bounds_never_above_exact(all_sparse, monkeypatch):
    """Split trees (ReLU splits on both conv layers' outputs, input splits) over a conv net: every
    leaf bound the fast replay computes (conv path on: checked) is at most the exact replay's
    (main's trusted exact engine) plus a float-level slack; then a property claimed at each tree's
    weakest exact leaf bound + 10^-6 (false for the exact replay) is rejected by the fast one."""
    rng = np.random.default_rng(14)
    g = _relu_conv_net(rng)
    bg = lower(g.to_dict())
    fg = fe.compiled(bg)
    assert sum(A.conv is not None for F in fg.forms if isinstance(F, _Forms) for _, A, _, _ in F.parents) == 2
    x0 = rng.uniform(-1, 1, 16)
    lo = tuple(Fraction(float(v) - 0.25).limit_denominator(1000) for v in x0)
    hi = tuple(Fraction(float(v) + 0.25).limit_denominator(1000) for v in x0)
    a = (Fraction(1), Fraction(-1))

    def spec(b):
        return Spec(16, 2, (Region(lo, hi, ((Atom(a, b, False),),)),))

    compared = 0
    for depth, p_input, method in ((0, 0.0, "crown"), (3, 0.0, "crown"), (4, 0.5, "crown"), (3, 0.5, "ibp")):
        tree = _tree(rng, bg, depth, p_input, 0.2, 1, mult=False, box=(lo, hi))
        ex = _leaf_bounds(monkeypatch, bg, spec(Fraction(0)), tree, "exact", method)
        fa = _leaf_bounds(monkeypatch, bg, spec(Fraction(0)), tree, "fast", method)
        assert ex.keys() == fa.keys()
        for k in ex:
            assert fa[k] <= ex[k] + Fraction(1, 10**9) * (1 + abs(ex[k])), (k, float(fa[k]), float(ex[k]))
            compared += 1
        monkeypatch.undo()
        monkeypatch.setattr(fast_forms, "SPARSE_BELOW", 1.01)
        worst = min(ex.values())
        for b, ok in ((worst + Fraction(1, 10**6), False), (worst - Fraction(1, 10**6), True)):
            tiny = f"1/{10**30}"  # (a positive claim: a rejection is the recomputed bound's)
            proofs = [n if n[0] != "leaf" else ["leaf", [[0, tiny]]] for n in tree]
            cert = {"kind": "vnn-unsat", "network": fingerprint(bg), "property": spec(b).digest(),
                    "method": method, "regions": [proofs]}
            ve, vf = check_vnn(cert, bg, spec(b), mode="exact"), check_vnn(cert, bg, spec(b), mode="fast")
            assert ve.ok == ok and vf.ok == ok, (ve.reason, vf.reason)  # (fast within 10^-6 of exact)
            if not ok:
                assert "recomputed bound" in vf.reason
    assert compared >= 10


def test_channels_of_a_concat_take_the_conv_path_per_parent(all_sparse):
    """Two single-channel convs of x, each relu'd, concatenated on channels, then a 2-channel conv:
    the last conv's forms have one parent per relu, each slice the matrix of a 1-channel conv with
    the first convs' geometry (their hint). The slices take the conv path; the bounds equal the
    sparse path's up to rounding and contain the exact outputs at sampled points."""
    import dataclasses

    rng = np.random.default_rng(16)
    c = {"Ka": rng.normal(0, 0.6, (1, 1, 3, 3)), "Kb": rng.normal(0, 0.6, (1, 1, 3, 3)),
         "Kc": rng.normal(0, 0.6, (1, 2, 3, 3)), "Wl": rng.normal(0, 0.5, (25, 2))}
    nodes = [Node("conv2d", ["x", "Ka"], "a", {"padding": 1}), Node("relu", ["a"], "ra"),
             Node("conv2d", ["x", "Kb"], "b", {"padding": 1}), Node("relu", ["b"], "rb"),
             Node("concat", ["ra", "rb"], "cat", {"axis": 1}),
             Node("conv2d", ["cat", "Kc"], "e", {"padding": 1}), Node("relu", ["e"], "r"),
             Node("flatten", ["r"], "f"), Node("matmul", ["f", "Wl"], "y")]
    g = Graph([Value("x", (1, 1, 5, 5), "float64")], c, nodes, ["y"]).check()
    bg = lower(g.to_dict())
    fg, fp = fe.FastGraph(bg), fe.FastGraph(dataclasses.replace(bg, conv_hints=()))
    per = [(len(F.parents), sum(A.conv is not None for _, A, _, _ in F.parents)) for F in fg.forms
           if isinstance(F, _Forms)]
    assert (2, 2) in per  # (the last conv: both parents' slices on the conv path)
    x0 = rng.uniform(-1, 1, (1, 25))
    for eps in (0.02, 0.2):
        lo, hi = x0 - eps, x0 + eps
        for run in (engines.fast_ibp, engines.fast_crown):
            cl, cu = run(fg, lo, hi)
            pl, pu = run(fp, lo, hi)
            w = np.abs(cu - cl).max()
            assert np.abs(cl - pl).max() <= 1e-9 * (1 + w) and np.abs(cu - pu).max() <= 1e-9 * (1 + w)
            for _ in range(8):
                p = lo + (hi - lo) * rng.choice([0.0, 1.0, rng.uniform()], lo.shape)
                y = np.asarray(evaluate(g, {"x": p.reshape(1, 1, 5, 5)})[0], dtype=object).ravel()
                for i, v in enumerate(y):
                    assert cl[0, i] <= v <= cu[0, i]
