"""Float forms for the fast engine (``fast_engine.py``, whose docstring states the assumption and
the accounting): exact affine forms converted to float matrices once, with their conversion
errors, their outward interval bounds, and a fn node's lines laid out for the back-substitution.
numpy."""

from __future__ import annotations

from fractions import Fraction
from itertools import chain
from typing import Any

import numpy as np

from .core import float_below
from .lower import Aff
from .lower_linear import out_size

U = 2.0**-53
TINY = 2.0**-1000  # far above any accumulated underflow error (ops * 2^-1074)


def gamma(n: int) -> float:
    return n * U / (1 - n * U)


def outward(lo: list[Fraction], hi: list[Fraction]) -> tuple[list[float], list[float]]:
    """Floats lo_f <= lo and hi_f >= hi (``core.float_below``)."""
    return [float_below(q) for q in lo], [-float_below(-q) for q in hi]


def corners(boxes: list[list[Fraction | float]], cache: dict[Any, Any], side: int) -> np.ndarray:
    """Outward floats (B, d) of the leaves' lower (side 0, rounded down) or upper (1, up) corners.
    A float corner is exact (``bounds.split_value``) and is its own rounding. The others (the
    region's bounds, split values no float equals) are rounded once: leaves share them as objects,
    so the cache is keyed by identity; it holds each value, so no id is reused (and each whole
    corner list by (identity, side): ReLU-split leaves share their region's lists)."""
    rows = []
    for box in boxes:
        if (id(box), side) in cache:
            rows.append(cache[id(box), side][1])
            continue
        row = []
        for q in box:
            if type(q) is not float:
                if id(q) not in cache:
                    lo, hi = outward([q], [q])
                    cache[id(q)] = (q, lo[0], hi[0])
                q = cache[id(q)][1 + side]
            row.append(q)
        rows.append(row)
        cache[id(box), side] = (box, row)
    return np.array(rows)


def _charge(x: np.ndarray, n: int) -> np.ndarray:
    """4·γ_n·x + TINY: the charge for a computed sum of n terms whose absolute terms sum to x."""
    return 4 * gamma(n + 2) * x + TINY


def _up(x: Any, n: int = 2) -> Any:
    """>= the exact value of a nonnegative expression computed as x with <= n roundings."""
    return x + _charge(x, n)


def _float_hull(lo: np.ndarray, hi: np.ndarray, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[lo - E, hi + E] outward: every float value x~ of a real x in [lo, hi] with |x~ - x| <= E
    (each end two roundings, each <= U (|lo| + |hi| + E + ext): well within ext)."""
    ext = _charge(np.abs(lo) + np.abs(hi) + E, 1)
    return lo - E - ext, hi + E + ext


def _midrad(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A float mid and a float rad with [lo, hi] inside [mid - rad, mid + rad] (any computed mid,
    the radius to the farther end rounded up)."""
    mid = (lo + hi) / 2
    return mid, _up(np.maximum(hi - mid, mid - lo), 1) + _charge(np.abs(lo) + np.abs(hi), 2)


def _hi(q: Fraction) -> float:
    """A float >= the rational q (``fast_forms.outward``'s upper end)."""
    return -float_below(-q)


def _safe(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NaN (from inf - inf on unbounded values) becomes the vacuous bound, never a pass."""
    return np.where(np.isnan(lo), -np.inf, lo), np.where(np.isnan(hi), np.inf, hi)


#: a matrix under this share of nonzeros is kept sparse. A gather costs ~10-20x a BLAS product
#: per entry, but a dense copy of a convolution's form costs its R·n zeros in memory and page
#: faults, four times (A, |A| and the positive and negative parts): at 1% the 1.6%-full layers of
#: collins_rul_cnn's full-window CNN were dense (1.1 GB, a third of each run in the kernel);
#: at 5% the search and replay there, on verivital's, oval21's and a ResNet's took 25-60% less
#: (bench/README.md). Fully connected layers (~100% full) stay dense.
SPARSE_BELOW = 0.05


#: ``_Conv.lmul`` works on chunks of Y's rows of about this many floats per buffer (cache-sized:
#: 2^18 took 1/3-2/3 of 2^22's time on sri_resnet_a's convolutions, bench/README.md h-convbsub)
CONV_CHUNK = 2**18
#: a matrix under this share of nonzeros that is a hinted convolution's is multiplied as one
#: (``_Conv``), dense or not; above, dense BLAS products over all R·n entries cost less
CONV_BELOW = 0.25


def conv_kernel(R: int, n: int, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                geom: tuple[int, ...]) -> np.ndarray | None:
    """The kernel K (O, C/g, kh, kw) when the (R, n) matrix of the entries (rows, cols, vals) is
    exactly the matrix of the convolution by K under ``geom`` = (C, H, W, O, kh, kw, sh, sw, ph,
    pw, dh, dw, g) (row (o, i, j) of the output, column (c, h, w) of the input, both row-major,
    batch 1), else None. ``geom`` is an untrusted hint; the test is exact: (1) no two entries share
    a position; (2) every entry lies on the pattern: its input position is i·s - p + t·d for a
    kernel offset t in range, in o's channel group; (3) entries of one kernel element (o, c, ta,
    tb) hold the identical float; (4) an element with K != 0 has as many entries as pattern
    positions (so by (1), (2) every one of them: a missing position holds K = 0). Then A = conv(K)
    entry by entry."""
    C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
    if min(geom) < 0 or min(*geom[:8], *geom[10:]) < 1 or O % g or C % g:
        return None
    Ho, Wo = out_size(H, kh, sh, ph, dh), out_size(W, kw, sw, pw, dw)
    if min(Ho, Wo) < 1 or (R, n) != (O * Ho * Wo, C * H * W):
        return None
    og, cg = O // g, C // g
    o, i, j = rows // (Ho * Wo), rows // Wo % Ho, rows % Wo
    c, h, w = cols // (H * W), cols // W % H, cols % W
    ta, ra = np.divmod(h - i * sh + ph, dh)
    tb, rb = np.divmod(w - j * sw + pw, dw)
    ci = c - o // og * cg
    if not ((ra == 0) & (rb == 0) & (ta >= 0) & (ta < kh) & (tb >= 0) & (tb < kw) & (ci >= 0)
            & (ci < cg)).all():
        return None
    pos = np.sort(rows * n + cols)  # (1): sorted, a repeat is two equal neighbours (np.unique's
    if (pos[1:] == pos[:-1]).any():  # hash table took 0.44 of 0.77 s compiling sri_resnet_a)
        return None
    kap = ((o * cg + ci) * kh + ta) * kw + tb
    K = np.zeros(O * cg * kh * kw)
    K[kap] = vals
    if not (K[kap] == vals).all():  # (NaN: unequal)
        return None
    # pattern positions per kernel offset: output positions whose tap lands inside the input
    nh = [sum(0 <= x * sh - ph + t * dh < H for x in range(Ho)) for t in range(kh)]
    nw = [sum(0 <= x * sw - pw + t * dw < W for x in range(Wo)) for t in range(kw)]
    need = np.tile(np.outer(nh, nw).ravel(), O * cg)
    if ((K != 0) & (np.bincount(kap, minlength=K.size) != need)).any():
        return None
    return K.reshape(O, cg, kh, kw)


class _Conv:
    """A matrix checked by ``conv_kernel``: its products as dense BLAS products per kernel offset.
    Each output is then a sum, in some order, of the products the sparse layout sums plus exact
    zeros (kernel elements 0, padding): at most R terms (``lmul``, one per row: an offset fixes the
    output position) or n (``rmul``), as the dense layout's, so the γ_n charges hold unchanged."""

    def __init__(self, geom: tuple[int, ...], K: np.ndarray):
        self.geom, self.K = geom, K
        C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
        self.Ho, self.Wo = out_size(H, kh, sh, ph, dh), out_size(W, kw, sw, pw, dw)
        self.og, self.cg = O // g, C // g

    def _taps(self):  # (offset index, the strided window of the padded input it reads)
        C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = self.geom
        for ta in range(kh):
            for tb in range(kw):
                yield ta * kw + tb, (slice(ta * dh, ta * dh + (self.Ho - 1) * sh + 1, sh),
                                     slice(tb * dw, tb * dw + (self.Wo - 1) * sw + 1, sw))

    def lmul(self, Y: np.ndarray) -> np.ndarray:
        """Y @ A (the transposed convolution), in chunks of Y's rows (``CONV_CHUNK``): per group
        one batched product K_g^T (cg·kh·kw, og) @ Y (og, Ho·Wo), each offset's slice added into
        the padded input's strided window (channels first: no transposed copy of Y)."""
        C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = self.geom
        M, og, cg, nk, Ho, Wo = Y.shape[0], self.og, self.cg, kh * kw, self.Ho, self.Wo
        out = np.empty((M, C, H, W))
        step = max(1, CONV_CHUNK // max(Ho * Wo * nk * cg, (H + 2 * ph) * (W + 2 * pw) * cg))
        for a in range(0, M, step):
            m = min(step, M - a)
            Y4 = Y[a:a + m].reshape(m, g, og, Ho * Wo)
            for gi in range(g):
                Z = np.zeros((m, cg, H + 2 * ph, W + 2 * pw))
                Kt = self.K[gi * og:(gi + 1) * og].transpose(1, 2, 3, 0).reshape(cg * nk, og)
                P = np.matmul(Kt, Y4[:, gi]).reshape(m, cg, nk, Ho, Wo)
                for t, (hs, ws) in self._taps():
                    Z[:, :, hs, ws] += P[:, :, t]
                out[a:a + m, gi * cg:(gi + 1) * cg] = Z[:, :, ph:ph + H, pw:pw + W]
        return out.reshape(M, -1)

    def rmul(self, X: np.ndarray) -> np.ndarray:
        """X @ A.T (the convolution): per group the patches (cg·kh·kw, Ho·Wo) of each row of X,
        K_g (og, cg·kh·kw) @ them; in chunks of X's rows, as ``lmul``."""
        C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g = self.geom
        B, og, cg, nk, Ho, Wo = X.shape[0], self.og, self.cg, kh * kw, self.Ho, self.Wo
        out = np.empty((B, O, Ho * Wo))
        step = max(1, CONV_CHUNK // max(Ho * Wo * nk * cg, (H + 2 * ph) * (W + 2 * pw) * C))
        for a in range(0, B, step):
            m = min(step, B - a)
            Xp = np.zeros((m, C, H + 2 * ph, W + 2 * pw))
            Xp[:, :, ph:ph + H, pw:pw + W] = X[a:a + m].reshape(m, C, H, W)
            for gi in range(g):
                Xg = Xp[:, gi * cg:(gi + 1) * cg]
                patches = np.stack([Xg[:, :, hs, ws] for _, (hs, ws) in self._taps()], axis=2)
                Kg = self.K[gi * og:(gi + 1) * og].reshape(og, cg * nk)
                out[a:a + m, gi * og:(gi + 1) * og] = np.matmul(Kg, patches.reshape(m, cg * nk, -1))
        return out.reshape(B, -1)


class _Mat:
    """An (R, n) float matrix, dense, or sparse when under ``SPARSE_BELOW`` full (coordinates
    sorted by row, and a column-sorted view): pooling and convolution forms have few entries per
    row, and the products below then cost their entries, not R·n. Sums of products are the same
    sums (any order), so the engine's γ_n error bounds hold for both layouts."""

    def __init__(self, R: int, n: int, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                 hints: tuple[tuple[int, ...], ...] = ()):
        self.shape = (R, n)
        self.conv: _Conv | None = None  # (a hint's convolution that is this matrix: ``conv_kernel``)
        for geom in hints if len(vals) < CONV_BELOW * R * n else ():
            K = conv_kernel(R, n, rows, cols, vals, geom)
            if K is not None:
                self.conv = _Conv(geom, K)
                break
        self.sparse = self.conv is not None or len(vals) < SPARSE_BELOW * R * n
        if not self.sparse:
            self.D = np.zeros((R, n))
            self.D[rows, cols] = vals
            return
        self.rows, self.cols, self.vals = rows, cols, vals
        if self.conv is not None:  # (its products are ``_Conv``'s; ``take`` reads the entries)
            return
        self.urows, self.rstart = np.unique(rows, return_index=True)
        # ``lmul``'s layout: columns by decreasing number of entries (``ccols``: the nonempty
        # ones), every entry sorted by its slot (rank within its column), then by that order:
        # slot s is then one block of entries ``eperm[slots[s]:slots[s + 1]]`` of the first
        # ``slots[s + 1] - slots[s]`` columns (only structure: ``_like`` shares it)
        cnt = np.bincount(cols, minlength=n)
        order = np.argsort(-cnt, kind="stable")
        pos = np.empty(n, dtype=np.int64)
        pos[order] = np.arange(n)
        byc = np.lexsort((rows, pos[cols]))
        first = np.concatenate([[0], np.cumsum(cnt[order])[:-1]])
        slot = np.arange(len(vals)) - first[pos[cols[byc]]]
        by_slot = np.argsort(slot, kind="stable")
        self.eperm = byc[by_slot]
        self.slots = np.searchsorted(slot[by_slot], np.arange(int(cnt.max(initial=0)) + 1))
        self.ccols = order[: int((cnt > 0).sum())]

    def _like(self, f: Any) -> _Mat:
        m = object.__new__(_Mat)
        m.__dict__.update(self.__dict__)
        m.vals = f(self.vals)
        if self.conv is not None:  # (f(0) = 0: f(conv(K)) = conv(f(K)), entry by entry)
            m.conv = _Conv(self.conv.geom, f(self.conv.K))
        return m

    def map(self, f: Any) -> _Mat:
        """The matrix with f applied to every entry (f(0) = 0: abs, positive/negative part)."""
        return self._like(f) if self.sparse else _dense(f(self.D))

    def rmul(self, X: np.ndarray) -> np.ndarray:
        """X @ A.T for X (B, n): (B, R)."""
        if not self.sparse:
            return X @ self.D.T
        if self.conv is not None:
            return self.conv.rmul(X)
        out = np.zeros((X.shape[0], self.shape[0]))
        out[:, self.urows] = np.add.reduceat(X[:, self.cols] * self.vals, self.rstart, axis=1)
        return out

    def lmul(self, Y: np.ndarray) -> np.ndarray:
        """Y @ A for Y (M, R): (M, n)."""
        if not self.sparse:
            return Y @ self.D
        if self.conv is not None:
            return self.conv.lmul(Y)
        # out[:, j] = Σ_s v[s, j]·Y[:, r[s, j]], one slot s at a time over all columns at once:
        # Y transposed, each term a gather of whole rows (contiguous) and one vector multiply-add
        # (a sum in some order, as any dot product); 2-10x the speed of one gather of every entry
        # per row of Y and a reduceat (a ResNet's CROWN pass: bench/README.md). In chunks of
        # Y's rows so the products stay ~2^17 entries (cache-sized) and Y's copy ~2^22, gathered
        # into one reused buffer (no temporaries: 3-4x faster on oval21's first conv, issue 15)
        M, n = Y.shape[0], len(self.ccols)
        r, v = self.rows[self.eperm], self.vals[self.eperm][:, None]
        out = np.zeros((M, self.shape[1]))
        step = max(1, min(2**17 // max(n, 1), 2**22 // max(self.shape[0], 1)))
        for a in range(0, M, step):
            YT = np.ascontiguousarray(Y[a:a + step].T)
            acc, buf = np.zeros((n, YT.shape[1])), np.empty((n, YT.shape[1]))
            for s in range(len(self.slots) - 1):
                lo, hi = self.slots[s], self.slots[s + 1]
                b = np.take(YT, r[lo:hi], axis=0, out=buf[: hi - lo])
                acc[: hi - lo] += np.multiply(b, v[lo:hi], out=b)
            out[a:a + step, self.ccols] = acc.T
        return out

    def take(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The given rows (all when None), dense."""
        if not self.sparse:
            return self.D if rows is None else self.D[rows]
        if rows is not None:  # only the rows asked for (a conv's full dense copy is ~100 MB)
            u, inv = np.unique(np.asarray(rows), return_inverse=True)
            pos = np.full(self.shape[0], -1)
            pos[u] = np.arange(len(u))
            out = np.zeros((len(u), self.shape[1]))
            m = pos[self.rows] >= 0
            out[pos[self.rows[m]], self.cols[m]] = self.vals[m]
            return out[inv.ravel()]
        full = np.zeros(self.shape)
        full[self.rows, self.cols] = self.vals
        return full


def _dense(D: np.ndarray) -> _Mat:
    m = object.__new__(_Mat)
    m.shape, m.sparse, m.D = D.shape, False, D
    return m


def _float_of(q: Fraction) -> tuple[float, bool]:
    """q rounded to nearest (int / int: correctly rounded), and whether that is inexact: exact
    as a float means a power-of-two denominator (not too small) and a 53-bit numerator."""
    n, d = q.as_integer_ratio()
    return n / d, bool(d & (d - 1)) or d.bit_length() > 1000 or not -2**53 < n < 2**53


def _conv_err(q: Fraction | int, f: float) -> float:
    """float(|q - f|) (correctly rounded) for a float f: as ``float(abs(q - Fraction(f)))`` but in
    integers, |n fd - fn d| / (d fd) with f = fn/fd, without Fraction's gcd normalisation (the
    same exact value, so the same correctly rounded quotient: Python's int / int is correctly
    rounded, as is ``Fraction.__float__``; compiling eran's 784-input nets spent ~1/3 of its time
    in the Fraction version)."""
    fn, fd = f.as_integer_ratio()
    n, d = q.numerator, q.denominator
    return abs(n * fd - fn * d) / (d * fd)


def _floats(qs: list[Fraction]) -> tuple[np.ndarray, np.ndarray]:
    """``_float_of`` of every coefficient, as arrays; converted once per distinct object (a conv
    weight is one Fraction shared by every output position; ``qs`` keeps each alive, so object
    ids are distinct for the call)."""
    if not qs:
        return np.zeros(0), np.zeros(0, dtype=bool)
    ids = np.fromiter(map(id, qs), dtype=np.uint64, count=len(qs))
    _, first, inv = np.unique(ids, return_index=True, return_inverse=True)
    conv = [_float_of(qs[i]) for i in first.tolist()]
    uv = np.array([v for v, _ in conv])
    ui = np.array([e for _, e in conv], dtype=bool)
    inv = inv.ravel()
    return uv[inv], ui[inv]


class _Forms:
    """A list of R exact forms as float matrices per parent node: (node index, A, |A|, E or None)
    as ``_Mat``s, constants c and their rounding error Ec. ``hints``: convolution geometries
    (``BoundGraph.conv_hints``) each matrix is checked against (``conv_kernel``)."""

    def __init__(self, forms: list[Aff], starts: list[int], sizes: list[int],
                 hints: tuple[tuple[int, ...], ...] = ()):
        R = len(forms)
        rows = np.repeat(np.arange(R, dtype=np.int64), [len(f.t) for f in forms])
        cols = np.fromiter(chain.from_iterable(f.t for f in forms), dtype=np.int64, count=len(rows))
        qs = list(chain.from_iterable(f.t.values() for f in forms))
        vals, inexact = _floats(qs)
        par = np.searchsorted(np.array(starts), cols, side="right") - 1 if len(cols) else cols
        # (rows with an exact coefficient < 0, or one whose float is 0: its sign unknown; ``floor``)
        self.neg = np.bincount(rows[vals <= 0], minlength=R) > 0
        self.parents = []
        self.pn: dict[int, tuple[_Mat, _Mat]] = {}
        for p in np.unique(par):
            m = par == p
            A = _Mat(R, sizes[p], rows[m], cols[m] - starts[p], vals[m], hints)
            E = None
            if (m & inexact).any():
                err = np.zeros(len(vals))
                for t in np.nonzero(m & inexact)[0]:
                    err[t] = _conv_err(qs[t], float(vals[t])) * (1 + 2**-50) + 5e-324
                E = _Mat(R, sizes[p], rows[m], cols[m] - starts[p], err[m], hints)
            self.parents.append((int(p), A, A.map(np.abs), E))
        cs = [f.c for f in forms]
        self.c, inexact = _floats(cs)  # (the exact ones' error 0: only 5e-324, no Fraction made)
        self.Ec = np.full(R, 5e-324)
        for t in np.nonzero(inexact)[0]:
            self.Ec[t] = _conv_err(cs[t], float(self.c[t])) * (1 + 2**-50) + 5e-324
        self.R = R
        # rows that are one variable with coefficient +-1 and no constant are computed exactly (no
        # charge): keeps e.g. a dead ReLU's 0 exact for the max node's dominance test
        self.plain = np.array([len(f.t) == 1 and abs(next(iter(f.t.values()))) == 1 and not f.c
                               for f in forms], dtype=bool)

    def bounds(self, L: list[np.ndarray], Uu: list[np.ndarray], vmax: list[np.ndarray]):
        """Outward (B, R) bounds of the forms over the variable bounds."""
        lo = np.broadcast_to(self.c, (L[0].shape[0], self.R)).copy()
        hi = lo.copy()
        mag = np.abs(lo)
        exact_err = np.broadcast_to(self.Ec, lo.shape)
        n = 1
        for p, A, absA, E in self.parents:
            if p not in self.pn:  # (positive and negative parts, kept for the next batches)
                self.pn[p] = (A.map(lambda v: np.maximum(v, 0)), A.map(lambda v: np.minimum(v, 0)))
            Ap, An = self.pn[p]
            lo += Ap.rmul(L[p]) + An.rmul(Uu[p])
            hi += Ap.rmul(Uu[p]) + An.rmul(L[p])
            mag = mag + absA.rmul(vmax[p])
            if E is not None:
                exact_err = exact_err + E.rmul(vmax[p])
            n += A.shape[1]
        ch = np.where(self.plain, 0.0, _charge(mag, n) + 4 * exact_err)
        return _safe(lo - ch, hi + ch)

    def floor(self, L: list[np.ndarray]) -> np.ndarray:
        """(B, R) lower bounds of the rows whose exact coefficients are all > 0 (-inf elsewhere),
        e.g. layer norm's variance + eps: q > 0 and v >= L give q·v >= -q·max(-L, 0), so the row
        is at least c - Ec - Σ (|q̃| + E)·max(-L, 0), rounded down: charged for the terms' negative
        parts only, never for their size as float IBP is (which put var + 1e-12 below 0 on a wide
        row, where the exact engine's bound is >= 1e-12 and the domain rules need it)."""
        dip, n = np.zeros((L[0].shape[0], self.R)), 1
        for p, _, absA, E in self.parents:
            d = np.maximum(-L[p], 0.0)  # (NaN where L is: no bound)
            dip = dip + absA.rmul(d) + (0 if E is None else E.rmul(d))
            n += 2 * absA.shape[1]
        dip = dip + _charge(dip, n)
        v = self.c - self.Ec - dip
        v = v - (np.abs(self.c) + self.Ec + dip) * 4 * U - TINY
        return np.where(self.neg | np.isnan(v), -np.inf, v)


class _View:
    """A fn node's lines (one relaxation: slopes aL, aU and intercepts bL, bU, (B, m) each) laid
    out for the back-substitution. The node's multipliers λ are kept in the order ``order``:
    [:na] the elements whose two lines differ in some box, [na:nb] the others (one line a·z + b)
    with b != 0 in some box, [nb:nm] the others with a != 1 in some box, [nm:] those with the line
    1·z + 0 in every box (μ = λ, exact). Elements whose line is 0·z + 0 in every box (a ReLU dead
    in every box) are left out: their output is exactly 0 on every box, so their term adds nothing
    (and every γ_n below is taken for the node's full width).

    On [:na] the coefficient μ = λ·aL where λ > 0, λ·aU elsewhere, is computed as
    λ·aL + λ⁻·d with λ⁻ = min(λ, 0) and d = fl(aU - aL), whose exact error e comes from TwoSum: for
    λ > 0 that is one rounding, else |fl(μ) - λ·aU| <= (u(|aL| + |d|)(1 + u) + |e|)·|λ| + u·|fl(μ)|.
    The first part is charged per unit |λ| (``w2``, times max|z|), the second with every rounded
    product (2u·|μ|·max|z|). ``G`` bounds |fl(μ)| / |λ| per element."""

    def __init__(self, r: Any, zmax: np.ndarray):
        _, aL, bL, aU, bU = r
        two = ((aL != aU) | (bL != bU)).any(0)
        hasb = (bU != 0).any(0) & ~two
        live = (aU != 0).any(0) & ~two & ~hasb
        nonunit = live & (aU != 1).any(0)
        unit = live & ~nonunit
        parts = [np.nonzero(x)[0] for x in (two, hasb, nonunit, unit)]
        self.order = o = np.concatenate(parts)
        self.na, self.nb, self.nm = np.cumsum([len(x) for x in parts[:3]]).tolist()
        na, nb, nm = self.na, self.nb, self.nm
        r2 = [x[:, o] for x in (aL, bL, aU, bU)]
        aL, bL, aU, bU = r2
        d = aU[:, :na] - aL[:, :na]
        bp = d - aU[:, :na]  # TwoSum(aU, -aL): e is exactly aU - aL - d
        e = (aU[:, :na] - (d - bp)) + (-aL[:, :na] - bp)
        # (one sum: a non-finite entry, or an overflow of the sum, makes it non-finite: no view)
        self.ok = bool(np.isfinite(sum(float(x.sum()) for x in (*r2, d, e))))
        self.zmax = zmax[:, o]
        self.aL, self.d, self.a = aL[:, None, :na], d[:, None], aU[:, None, na:nm]
        self.bL, self.bU, self.b = bL[:, :na], bU[:, :na], bU[:, na:nb]
        self.hasL = bool(self.bL.any())
        self.posU = bool((self.bU >= 0).all())  # (then Σ|terms| of the upper intercepts is -Σ terms)
        G = np.ones_like(self.zmax)
        G[:, :nm] = np.abs(aU[:, :nm]) * (1 + 2 * U)
        G[:, :na] = (np.maximum(np.abs(aL[:, :na]), np.abs(aU[:, :na])) + 2 * U * (np.abs(aL[:, :na])
                     + np.abs(d)) + np.abs(e)) * (1 + 2 * U)
        self.G = G
        self.w2 = (2 * U * (np.abs(aL[:, :na]) + np.abs(d)) + 2 * np.abs(e)) * self.zmax[:, :na]
