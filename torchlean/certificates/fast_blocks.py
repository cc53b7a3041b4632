"""The error forms' layout for the fast error column (``fast_errors.py``, read it first): a form
C is {first source: block}, one block per ``make`` that gave a value's sources, dense or sparse.
Pure numpy algebra on those blocks (row selection, scaling, sums, a linear map applied, |C| L);
each operation does, per coefficient, the roundings the dense one did, so the column's charges
hold for either layout (``tests/test_fast_errors_audit2.py`` compares the two layouts).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .fast_forms import SPARSE_BELOW, _Mat

# A form C is {first source: block}, one block per ``make`` that gave this value's sources: an
# (elements x that make's sources) matrix, a dense array or a sparse ``_Sp`` (``_blk``: under
# ``SPARSE_BELOW`` full). A convolution's or pooling's form reads few sources per element, so a
# conv net's forms cost their entries, not elements x sources (verivital's conv: 23,328 elements
# over 70,000 sources). Every operation below does, per coefficient, the roundings the dense one
# did (a product, a sum of <= k products, one sum of two), so the rows' charges are unchanged.

class _V:
    """One IR value's elements: ranges, the form C ({first source: block}), rem, E."""

    __slots__ = ("lo", "hi", "C", "rem", "E")

    def __init__(self, lo, hi, C, rem, E):
        self.lo, self.hi, self.C, self.rem, self.E = lo, hi, C, rem, E


class _Sp:
    """A sparse block: entries (r, c, v) sorted by row then column, no two alike, shape (m, w)."""

    __slots__ = ("r", "c", "v", "shape")

    def __init__(self, r, c, v, shape):
        self.r, self.c, self.v, self.shape = r, c, v, shape


def _merge(key: np.ndarray, v: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The entries of equal key (< size) summed (each a sum in some order), keys ascending."""
    if size <= 8 * len(key) + 4096:  # (a dense accumulator no larger than the entries' arrays)
        acc = np.bincount(key, v, minlength=size)
        key = np.flatnonzero(acc)
        return key, acc[key]
    if not len(key):
        return key, v
    o = np.argsort(key, kind="stable")
    key, start = np.unique(key[o], return_index=True)
    return key, np.add.reduceat(v[o], start)


def _blk(m: int, w: int, r, c, v, merge: bool = True) -> Any:
    """The block of entries (r, c, v) (repeated places summed when ``merge``), dense when at least
    ``SPARSE_BELOW`` full."""
    if merge and len(v):
        key, v = _merge(r * w + c, v, m * w)
        r, c = key // w, key % w
    if len(v) >= SPARSE_BELOW * m * w:
        D = np.zeros((m, w))
        D[r, c] = v
        return D
    return _Sp(r, c, v, (m, w))


def _expand(start: np.ndarray, cnt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each i, the indices start[i] .. start[i] + cnt[i] - 1, concatenated, and each one's i."""
    i = np.repeat(np.arange(len(cnt)), cnt)
    return i, start[i] + np.arange(len(i)) - np.repeat(np.cumsum(cnt) - cnt, cnt)


def _ptr(X: _Sp) -> np.ndarray:
    return np.searchsorted(X.r, np.arange(X.shape[0] + 1))


def _rows(C: dict, idx: np.ndarray) -> dict:
    """The form of the elements idx (a broadcast's reads; exact)."""
    out = {}
    for s, X in C.items():
        if len(idx) == X.shape[0] and (idx == np.arange(len(idx))).all():
            out[s] = X  # (no broadcast: the same rows)
        elif isinstance(X, np.ndarray):
            out[s] = X[idx]
        else:
            p = _ptr(X)
            i, e = _expand(p[idx], p[idx + 1] - p[idx])
            out[s] = _Sp(i, X.c[e], X.v[e], (len(idx), X.shape[1]))
    return out


def _scale(C: dict, s: np.ndarray, op: Any = np.multiply) -> dict:
    """Each element's row op(row, s_j) (one rounding per coefficient; by 0 or 1: exact)."""
    out = {}
    for k, X in C.items():
        if isinstance(X, np.ndarray):
            out[k] = op(X, s[:, None])
        else:  # (the zeros a relu or a cap leaves are dropped)
            v = op(X.v, s[X.r])
            nz = v != 0
            out[k] = _Sp(X.r[nz], X.c[nz], v[nz], X.shape)
    return out


def _plus(A: dict, B: dict, sg: float) -> dict:
    """A + sg B (one rounding per coefficient that both have)."""
    out = dict(A)
    for k, Y in B.items():
        X = out.get(k)
        if X is None:
            out[k] = _scale({0: Y}, np.full(Y.shape[0], sg))[0]
        elif isinstance(X, np.ndarray) and isinstance(Y, np.ndarray):
            out[k] = X + sg * Y
        else:
            r, c, v = zip(*[(Z.r, Z.c, Z.v * f) if isinstance(Z, _Sp) else (*np.nonzero(Z), Z[Z != 0] * f)
                            for Z, f in ((X, 1.0), (Y, sg))])
            out[k] = _blk(*X.shape, np.concatenate(r), np.concatenate(c), np.concatenate(v))
    return out


def _absdot(C: dict, L: np.ndarray, m: int) -> np.ndarray:
    """sum_s |C_js| L_s per element (a sum of products, any order)."""
    out = np.zeros(m)
    for s, X in C.items():
        w = X.shape[1]
        out += (np.abs(X) @ L[s:s + w] if isinstance(X, np.ndarray)
                else np.bincount(X.r, np.abs(X.v) * L[s + X.c], minlength=m))
    return out


def _apply(M: _Mat, C: dict) -> dict:
    """M C for a linear node's map M (``_Mat``, (outputs x inputs)): each coefficient a sum of
    <= ``_terms(M)`` products, in some order."""
    out = {}
    for s, X in C.items():
        if isinstance(X, np.ndarray):
            out[s] = M.D @ X if not M.sparse else M.rmul(np.ascontiguousarray(X.T)).T
        elif not M.sparse:  # (Y @ X with X sparse: ``_Mat.lmul``; a dense result)
            out[s] = _Mat(*X.shape, X.r, X.c, X.v).lmul(M.D)
        else:
            out[s] = _join(M, X)
    return out


def _join(M: _Mat, X: _Sp, chunk: int = 2**21) -> Any:
    """Sparse M times sparse X: each entry of M meets its column's row of X; the products summed
    per place (``_merge``), M's rows in runs of about ``chunk`` products (bounded memory)."""
    p, w = _ptr(X), X.shape[1]
    cnt = p[M.cols + 1] - p[M.cols]
    cum = np.cumsum(np.bincount(M.rows, cnt, minlength=M.shape[0]))
    cuts = np.unique(np.concatenate([[0], np.searchsorted(cum, np.arange(chunk, cum[-1], chunk)) + 1,
                                     [M.shape[0]]])) if len(cum) else np.array([0])
    parts = []
    for r0, r1 in zip(cuts[:-1], cuts[1:]):
        a, b = np.searchsorted(M.rows, [r0, r1])
        i, e = _expand(p[M.cols[a:b]], cnt[a:b])
        key, v = _merge((M.rows[a:b][i] - r0) * w + X.c[e], M.vals[a:b][i] * X.v[e], int(r1 - r0) * w)
        parts.append((key // w + r0, key % w, v))
    r, c, v = (np.concatenate(x) for x in zip(*parts)) if parts else (np.zeros(0, int),) * 2 + (np.zeros(0),)
    return _blk(M.shape[0], w, r, c, v, merge=False)


def _terms(M: _Mat) -> np.ndarray:
    """The products each output of M sums that are not exactly 0 (an exact 0 product added is
    exact: the sum is one of the others alone, in some order), at least 1."""
    if not M.sparse:
        return np.maximum(np.count_nonzero(M.D, axis=1), 1)
    return np.maximum(np.bincount(M.rows[M.vals != 0], minlength=M.shape[0]), 1)
