"""The fast error column's products of two data operands (``fast_errors.py``, read it first):
elementwise mul and matmul where both inputs carry errors (attention's Q K^T, an LSTM's gates),
the exact column's ``Ctx.mul`` rule in float64 rounded up. A constant operand is read as data
(range its value, error its cast error), so these rows also cover constant-only products.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from .core import float_below, require
from .fast_blocks import _V, _plus, _rows, _scale
from .fast_forms import _charge, _float_hull, _hi, _Mat, _midrad, _up

if TYPE_CHECKING:
    from .fast_errors import _Walk


def prod_range(al: np.ndarray, ah: np.ndarray, bl: np.ndarray, bh: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """The real range of x y, x in [al, ah], y in [bl, bh], outward: the four end products, each
    rounded once."""
    pr = [x * y for x in (al, ah) for y in (bl, bh)]
    big = _charge(np.max(np.abs(pr), axis=0), 1)
    return np.min(pr, axis=0) - big, np.max(pr, axis=0) + big


def prod(w: _Walk, a: _V, b: _V, ia: np.ndarray, ib: np.ndarray, lo, hi) -> _V:
    """``Ctx.mul`` per element: fl(x~ y~) - xy = y~ e_x + x e_y + d, y~ in b's float hull [lo - E,
    hi + E] (mid +- rad), x in a's real range (mid +- rad), |d| <= u mag(a) mag(b) + eta. The
    form mid_b C_a + mid_a C_b (two products and a sum per coefficient: charged 4 gamma_4 of
    |mid_b| E_a + |mid_a| E_b); rad_b E_a + rad_a E_b and the rems times the mids join the new
    source. x = y (a square) is this identity too (looser than ``Ctx.mul``'s (x~ + x) e_x)."""
    mb, rb = _midrad(*_float_hull(b.lo, b.hi, b.E))
    ma, ra = _midrad(a.lo, a.hi)
    mb, rb, ma, ra = mb[ib], rb[ib], ma[ia], ra[ia]
    Ea, Eb = a.E[ia], b.E[ib]
    mag_a = _up(np.maximum(np.abs(a.lo), np.abs(a.hi))[ia] + Ea, 1)
    mag_b = _up(np.maximum(np.abs(b.lo), np.abs(b.hi))[ib] + Eb, 1)
    out = _up(mag_a * mag_b, 1)
    w.fits(out, "a product")
    local = _up(w.u * out + w.eta + rb * Ea + ra * Eb + np.abs(mb) * a.rem[ia] + np.abs(ma) * b.rem[ib]
                + _charge(np.abs(mb) * Ea + np.abs(ma) * Eb, 2), 8)
    C = _plus(_scale(_rows(a.C, ia), mb), _scale(_rows(b.C, ib), ma), 1.0)
    return w.make(lo, hi, C, local)


def _recip(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1/[p, q] outward, for p <= q of one sign: [1/q, 1/p], each end one rounding moved out."""
    return np.nextafter(1.0 / q, -np.inf), np.nextafter(1.0 / p, np.inf)


def quot(w: _Walk, a: _V, b: _V, ia: np.ndarray, ib: np.ndarray, lo, hi) -> _V:
    """``Ctx.div`` per element, b data: a~/b~ - a/b = R e_a + T e_b, R = 1/b~ in 1/(b's float hull),
    T = -a/(b b~) in -[a] (1/[b]) R; the quotient rounds once, |a~/b~| <= mag(a) max|R|. As
    ``prod``: the form mid_R C_a + mid_T C_b, the radii times E and the rems times |mid| join the
    new source (a constant operand read as data: its value, its cast error)."""
    fl, fh = _float_hull(b.lo, b.hi, b.E)
    fl, fh, rl, rh = fl[ib], fh[ib], b.lo[ib], b.hi[ib]
    require(bool(((fl > 0) | (fh < 0)).all()), "division by a value whose float range contains 0")
    R = _recip(fl, fh)
    T = prod_range(-a.hi[ia], -a.lo[ia], *prod_range(*_recip(rl, rh), *R))
    mR, rR = _midrad(*R)
    mT, rT = _midrad(*T)
    Ea, Eb = a.E[ia], b.E[ib]
    out = _up(_up(np.maximum(np.abs(a.lo), np.abs(a.hi))[ia] + Ea, 1) * np.maximum(-R[0], R[1]), 1)
    w.fits(out, "a quotient")
    local = _up(w.u * out + w.eta + rR * Ea + rT * Eb + np.abs(mR) * a.rem[ia] + np.abs(mT) * b.rem[ib]
                + _charge(np.abs(mR) * Ea + np.abs(mT) * Eb, 2), 8)
    C = _plus(_scale(_rows(a.C, ia), mR), _scale(_rows(b.C, ib), mT), 1.0)
    return w.make(lo, hi, C, local)


def matmul_pairs(sa: tuple[int, ...], sb: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, int]:
    """numpy's matmul of a (..., p, n) by b (..., n, q), batch axes broadcast: per output (row-major)
    its n products' element indices (ia, ib), consecutive, and n."""
    require(len(sa) >= 2 and len(sb) >= 2, "matmul of two data operands: a 1-D operand")
    require(sa[-1] == sb[-2], "matmul: shapes do not match")
    bt = np.broadcast_shapes(sa[:-2], sb[:-2])
    A = np.broadcast_to(np.arange(int(np.prod(sa))).reshape(sa), bt + sa[-2:])
    B = np.broadcast_to(np.arange(int(np.prod(sb))).reshape(sb), bt + sb[-2:])
    shp = bt + (sa[-2], sb[-1], sa[-1])  # (batch, p, q, n)
    ia = np.broadcast_to(A[..., :, None, :], shp).ravel()
    ib = np.broadcast_to(np.swapaxes(B, -1, -2)[..., None, :, :], shp).ravel()
    return ia, ib, sa[-1]


def sum_map(m: int, n: int) -> _Mat:
    """The 0/1 map summing each output's n consecutive products (unit weights: exact)."""
    return _Mat(m, m * n, np.repeat(np.arange(m), n), np.arange(m * n), np.ones(m * n))


def _out(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi] computed with one rounding per end, moved out by that rounding's charge."""
    return lo - _charge(np.abs(lo), 1), hi + _charge(np.abs(hi), 1)


def bn_data(w: _Walk, x: _V, st: list[_V], shape: tuple[int, ...], lo, hi, attrs: dict) -> _V:
    """batch_norm with data statistics (mean, var, weight, bias: values, constants read as data):
    ``errorbound._batch_norm``'s steps by the fast rows, s = fl(fl(1 / sqrt~(fl(var + fl(eps))))
    w) per channel, then fl(fl(fl(x~ - mean) s~) + b) per element, each step on an outward real
    range of its inputs' ranges (the last on the node's own range)."""
    mean, var, wt, b = st
    require(len(shape) >= 2, "batch_norm: no channel axis")
    m, c = len(lo), len(var.E)
    ch = (np.arange(m) // int(np.prod(shape[2:]))) % shape[1]
    e = Fraction(attrs.get("eps", 1e-5))
    de = np.array([_hi(w.q.cast_err(e))])
    eps = _V(np.array([float_below(e)]), np.array([_hi(e)]), {}, de, de)
    ic, z = np.arange(c), np.zeros(c, int)
    v = w.sum2(var, eps, ic, z, 1.0, *_out(var.lo + eps.lo[0], var.hi + eps.hi[0]))
    r = w.fn("sqrt", v, *_out(np.sqrt(np.maximum(v.lo, 0.0)), np.sqrt(v.hi)), {})
    one = _V(np.ones(1), np.ones(1), {}, np.zeros(1), np.zeros(1))
    r = quot(w, one, r, z, ic, *_recip(r.lo, r.hi))  # (quot refuses a hull not above 0)
    s = prod(w, r, wt, ic, ic, *prod_range(r.lo, r.hi, wt.lo, wt.hi))
    ix = np.arange(m)
    d = w.sum2(x, mean, ix, ch, -1.0, *_out(x.lo - mean.hi[ch], x.hi - mean.lo[ch]))
    p = prod(w, d, s, ix, ch, *prod_range(d.lo, d.hi, s.lo[ch], s.hi[ch]))
    return w.sum2(p, b, ix, ch, 1.0, lo, hi)
