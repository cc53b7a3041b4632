"""The fast error column's elementwise function rows (``fast_errors.py``, read it first): a mixin
of its walk (``fast_errors._Walk``: the format's constants, ``make``, ``fits``, ``cast_err``)
with ``fn``, the exact column's ``Ctx.fn`` rule in float64 rounded up, the slope ranges
(``errorctx.slope_range``) and gelu's kernel error; the other kernels' own errors are
``errorkern.kernel``'s, with the walk as its float64 domain (rounded up). Moved out of
``fast_errors.py`` unchanged (its size); TRUST_BOUNDARIES.md, "Floats", has each row's argument."""

from __future__ import annotations

from fractions import Fraction as Q
from typing import TYPE_CHECKING, Any

import numpy as np

from .core import require
from .errorkern import kernel
from .fast_blocks import _absdot, _scale
from .fast_forms import _charge, _float_hull, _hi, _midrad, _up
from .fast_functions import FAST
from .functions import FUNCTIONS, GELU_A, GELU_C

if TYPE_CHECKING:
    from .fast_errors import _V

class _Fns:
    """The elementwise function rows of ``fast_errors._Walk`` (whose attributes they read)."""

    # ``errorkern.kernel``'s domain (``errorkern.Exact`` lists its members): float64 arrays, each
    # result rounded up
    up, num, max, min, abs = staticmethod(_up), float, np.maximum, np.minimum, np.abs
    where = staticmethod(lambda c, a, b: np.where(c, a(), b()))
    all = staticmethod(lambda x: bool(np.all(x)))
    around = staticmethod(lambda c, d: (np.nextafter(c - d, -np.inf), np.nextafter(c + d, np.inf)))
    interval = staticmethod(lambda row, p, q, **at: FAST[row].interval(p, q, **at))
    source = staticmethod(lambda x: x)
    cast = lambda self, c: float(self.cast_err(np.array([c]))[0])  # noqa: E731

    def fn(self, name: str, v: _V, lo, hi, attrs: dict[str, Any]) -> _V:
        """``Ctx.fn``: f(x~) - f(x) = s e_x, s in f''s range over the float hull [lo - E, hi + E]
        (mid +- rad), plus the kernel's own error; then the range rule's cap. relu: where its real
        argument is <= 0, the output's error is max(0, hi + E) (``errorbound.apply``)."""
        p, q = _float_hull(v.lo, v.hi, v.E)
        # (a hull past float64: refused, as before monotone rows took an infinite end; ``slopes``
        # below reads f' at the hull's ends)
        require(bool(np.isfinite(p).all() and np.isfinite(q).all()), f"{name}: an unbounded argument")
        row = FAST[name]
        fl, fh = row.interval(p, q, **attrs)  # (the domain: log, sqrt refuse as ``Ctx.fn``'s _check)
        Fm = np.maximum(np.abs(fl), np.abs(fh))
        self.fits(_up(Fm * (1 + self.kern[0]), 2), name)  # (Ctx.fn: |f|(1 + 2k un) fits)
        if name == "relu":
            kern = np.zeros_like(p)
            a = (p > 0) * 1.0  # slope 1 on [p, q] when p > 0, else in [0, 1]
            b = np.ones_like(p)
        else:
            kern = self._gelu(np.maximum(np.abs(p), np.abs(q))) if name == "gelu" else kernel(
                self, name, p, q, Fm, attrs)
            a, b = self.slopes(name, p, q, attrs)
        mid, rad = _midrad(a, b)
        local = _up(kern + rad * v.E + np.abs(mid) * v.rem + _charge(np.abs(mid) * v.E, 1), 4)  # (<= 4 each)
        if name == "relu":  # (slope 1: C copied exactly, rem carried; no new unknown)
            local = np.where(a == 1, v.rem, local)
        # the range rule: f~(x~) in [fl - kern, fh + kern] and f(x) in [lo, hi] (``Ctx.fn``): where
        # that caps the error below the form's bound, one fresh source of bound cap instead
        cap = np.maximum(fh + kern - lo + _charge(np.abs(fh) + kern + np.abs(lo), 2),
                         hi - fl + kern + _charge(np.abs(hi) + np.abs(fl) + kern, 2))
        capped = cap < _up(np.abs(mid) * _absdot(v.C, self.L, len(p)) + local, len(self.L) + 2)
        rem, off = None, capped
        if name == "relu":  # a neuron off in the reals: relu(x~) - 0 in [0, max(0, hi + E)]
            dead = v.hi <= 0
            capped &= ~dead
            rem = np.where(dead, _up(np.maximum(0.0, v.hi + v.E), 1), 0.0)
            off, local = capped | dead, np.where(dead, 0.0, local)
        local = np.where(capped, cap, local)
        # the form mid C (one rounding per coefficient: charged as U |mid| E), 0 where capped or dead
        return self.make(lo, hi, _scale(v.C, np.where(off, 0.0, mid)), local, rem)

    def _gelu(self, M: np.ndarray) -> np.ndarray:
        """``errorbound._gelu``'s replay of 0.5 x (1 + tanh(C (x + A x^3))) for |x| <= M, each
        ``Ctx`` operation's error in floats rounded up: a product's fl(ab) - ab = b~ e_a + a e_b +
        u mag(a) mag(b) + eta, a sum's u (max|s| + E) (+ eta without subnormals), tanh's slope
        <= 1 and kernel k ulp of |tanh| <= 1, the constants' cast errors dC, dA."""
        u, eta, es = self.u, self.eta, self.eta_sum
        cs = np.array([float(GELU_C), float(GELU_A)])  # (binary64 numbers: read exactly)
        (cC, cA), (dC, dA) = cs, self.cast_err(cs)
        m2 = _up(M * M, 1)
        E2 = _up(u * m2 + eta, 2)  # x * x
        mg2 = _up(m2 + E2, 1)
        self.fits(mg2, "gelu")
        m3 = _up(M * m2, 1)
        self.fits(_up(mg2 * M, 1), "gelu")  # (x^3 itself: fp16 at |x| > 40 overflows)
        E3 = _up(M * E2 + u * _up(mg2 * M, 1) + eta, 3)  # (x x) x
        mg3 = _up(m3 + E3, 1)
        self.fits(_up(mg3 * (cA + dA), 2), "gelu")
        E4 = _up(mg3 * dA + cA * E3 + u * _up(mg3 * (cA + dA), 2) + eta, 4)  # fl(A) x^3
        ms = _up(M + cA * m3, 2)  # >= |x + A x^3|
        self.fits(_up(ms + E4, 1), "gelu")
        Es = _up(E4 + u * _up(ms + E4, 1) + es, 3)  # x + A x^3
        mgs = _up(ms + Es, 1)
        self.fits(_up(mgs * (cC + dC), 2), "gelu")
        Ev = _up(mgs * dC + cC * Es + u * _up(mgs * (cC + dC), 2) + eta, 4)  # fl(C) (x + A x^3)
        # tanh: |slope| <= 1; |tanh| <= T = tanh(|C (x + A x^3)| + Ev) (the float argument's
        # magnitude: the row's outward upper end, at most 1), which bounds the real one too
        T = np.minimum(1.0, FAST["tanh"].interval(np.zeros_like(M), _up(cC * ms + Ev, 2))[1])
        Et = _up(Ev + self.kern[0] * T + self.kern[1], 3)
        E1 = _up(Et + u * _up(1 + T + Et, 2) + es, 3)  # 1 + tanh, in [0, 1 + T]
        Eh = _up(u * M / 2 + eta, 2)  # 0.5 x
        mh, m1 = _up(M / 2 + Eh, 1), _up(1 + T + E1, 2)
        self.fits(_up(mh * m1, 1), "gelu")
        return _up(m1 * Eh + M / 2 * E1 + u * _up(mh * m1, 1) + eta, 5)  # (0.5 x)(1 + tanh)

    def slopes(self, name: str, p: np.ndarray, q: np.ndarray, attrs: dict[str, Any]
               ) -> tuple[np.ndarray, np.ndarray]:
        """[min f', max f'] over [p, q], outward (``errorctx.slope_range``): f' is monotone on each
        convexity piece, so its extremes are at p, q and the piece ends between (clipped into
        [p, q]: a point of [p, q] never widens the true extremes); where [p, q] meets an "unknown"
        bracket (silu, gelu: a tiny one where f' turns), [-lip, lip] joins, as there."""
        row, ex = FAST[name], FUNCTIONS[name]
        pcs = ex.pieces(**attrs)
        pts = [p, q] + [np.clip(float(e), p, q) for a, b, _ in pcs for e in (a, b) if e is not None]
        lo = np.min([row._f(x, attrs, False, True) for x in pts], axis=0)
        hi = np.max([row._f(x, attrs, True, True) for x in pts], axis=0)
        require(bool(np.isfinite(lo).all() and np.isfinite(hi).all()), f"{name}: no finite slope")
        for a, b, kind in pcs:
            if kind == "unknown":  # (the bracket's ends are binary64 numbers: compared exactly)
                meets = np.ones(p.shape, bool)
                if a is not None:
                    meets &= float(a) < q
                if b is not None:
                    meets &= float(b) > p
                lip = _hi(Q(ex.lip))
                lo, hi = np.where(meets, np.minimum(lo, -lip), lo), np.where(meets, np.maximum(hi, lip), hi)
        return lo, hi
