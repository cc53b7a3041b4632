"""The element arithmetic of the ``errorbound`` certificate (standard library only): ``V``, one
element's real range and its error as a linear form over error sources, and ``Ctx``, the format's
constants, the sources and the operations every entry of the error column (``errorbound.py``) is
made of: one rounding, a dot product, a product or quotient of two data values, a function by the
mean value theorem, a maximum. Each operation's argument: TRUST_BOUNDARIES.md, "Floats".
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from . import errorforms
from .core import float_up as _up  # (a short rational >= q; re-exported by errorbound)
from .core import rational, require
from .enclosures import DomainError
from .errorforms import facts
from .functions import FUNCTIONS
from .intervals import EXACT, interval_mul, interval_square
from .rounding import MODES, Format, round_fraction
from .slopes import flt

Q = Fraction
ZERO, ONE = Q(0), Q(1)
F = 64  # fixed-point scale of form coefficients
G = 192  # fixed-point scale of source bounds (rounded up)
MAX_TERMS = 2048  # a longer form keeps its KEEP_TERMS largest terms; the rest join one new source
KEEP_TERMS = 1024
MAX_WORK = 250_000  # form terms read to build one element; above, inputs become shared aliases
NODE_WORK = 10_000_000  # ... or this many over a whole node (``Ctx.work``: a narrow node reads more)
MIN_KERNEL_ULPS = Q(1, 2)  # correct rounding to nearest: the least a certificate may assume


def min_kernel_ulps(mode: str) -> Fraction:
    """The least kernel accuracy a statement may assume: a correctly rounded result is within 1/2
    ulp to nearest (rne, rna), but only within 1 ulp in a directed mode (rtz, rup, rdn, rto)."""
    return MIN_KERNEL_ULPS if mode in ("rne", "rna") else ONE


class V:
    """One element: real range [lo, hi] and error sum_s c[s]/2^F d_s + r, |r| <= rem; ``g``: a
    form over the inputs with |value(x)| <= g(t(x)) on the box, or None (``errorforms``)."""

    __slots__ = ("lo", "hi", "c", "rem", "E", "g", "_k", "_r")

    def __init__(self, lo: Fraction, hi: Fraction, c: dict[int, int], rem: Fraction, E: Fraction,
                 g: Any = None):
        self.lo, self.hi, self.c, self.rem, self.E, self.g = lo, hi, c, rem, E, g
        self._k: Any = None  # (``errorforms.facts``, computed once: an element is read by many sums)
        self._r: Any = None  # (``Ctx.alias``, made once: every reader shares the one source)


def _g(rng: Any) -> Any:
    """The magnitude form a range carries (``propagate``'s ranges are (lo, hi, g)), or None."""
    return rng[2] if rng is not None and len(rng) > 2 else None


class Ctx:
    """Format constants, the error sources, and the element operations every entry is made of."""

    def __init__(self, stmt: dict[str, Any]):
        self.fmt = Format.from_dict(stmt["format"])
        self.mode = stmt["mode"]
        require(self.mode in MODES, f"unknown rounding mode {self.mode!r}")  # (not silently directed)
        self.u = self.fmt.unit_roundoff(self.mode)
        self.eta = self.fmt.underflow_eta(self.mode)
        self.un = self.fmt.unit_roundoff("rne")  # half an ulp, relative: the unit of "k ulp" claims
        self.k = rational(stmt["kernel_ulps"])
        least = min_kernel_ulps(self.mode)
        require(self.k >= least, f"kernel_ulps below {least} in {self.mode}")
        # source bounds, scale 2^G, rounded up: a constant, or a form [a_0, a_1..a_n] over the
        # inputs (a_0 + sum a_i t_i >= |d_s| at every point of the box, ``errorforms``)
        self.loc: list[Any] = []
        self.locmax: list[int] = []  # each source's maximum over the box
        self.nf = 0  # form dimensions (``errorforms.enabled``; 0: constants only)
        self.work = MAX_WORK  # form terms one element may read (``budget``, per node)

    def budget(self, n: int) -> None:
        """The form terms one element of an n-element node may read (a policy: any is sound)."""
        self.work = max(MAX_WORK, NODE_WORK // max(1, n))

    # -- forms -------------------------------------------------------------------------------
    def _acc(self, c: dict[int, int]) -> tuple[int, list[int]]:
        """sum_s |c_s| loc_s as (constant, coefficients), scale 2^(F+G)."""
        k0, vec = 0, [0] * self.nf
        for s, x in c.items():
            L, ax = self.loc[s], abs(x)
            if isinstance(L, int):
                k0 += ax * L
            else:
                k0 += ax * L[0]
                vec = [a + ax * b for a, b in zip(vec, L[1:])]
        return k0, vec

    def bound(self, c: dict[int, int], rem: Fraction) -> Fraction:
        """max over the box of sum_s |c_s| loc_s(t) + rem: ONE maximum of the sum (the sources'
        forms are bounds at the same point t), at most the sum of the sources' maxima."""
        if not self.nf:
            return _up(Q(sum(abs(x) * self.loc[s] for s, x in c.items()), 1 << (F + G)) + rem)
        k0, vec = self._acc(c)
        return _up(Q(k0 + sum(map(abs, vec)), 1 << (F + G)) + rem)

    def _store(self, f: list[Fraction]) -> Any:
        """A form as integers at scale 2^G: each a_i floored (a change < 2^-G, times |t_i| <= 1,
        added to a_0), a_0 rounded up: still >= the form at every t."""
        rest, extra = [], 0
        for a in f[1:]:
            x, r = divmod(a.numerator << G, a.denominator)
            rest.append(x)
            extra += r != 0
        a0 = -((-f[0].numerator << G) // f[0].denominator) + extra
        return [a0] + rest if any(rest) else a0

    def make(self, lo: Any, hi: Any, terms: list[tuple[Fraction, Fraction, V]], rem: Fraction,
             local: Any, g: Any = None) -> V:
        """The element sum of m*e_v (+-r*|e_v|) over ``terms`` (m, r, v), plus ``rem``, plus a new
        source of bound ``local`` (a constant, or a form over the inputs); ``g``: its magnitude
        form. |e_v| is taken as v's form sum_s |c_s| loc_s(t) + rem_v where forms are on."""
        lo, hi = Q(lo), Q(hi)
        require(lo <= hi, "empty range")
        lf = list(local) if isinstance(local, list) else None  # the new source's form part
        local = ZERO if lf is not None else local
        acc: dict[int, int] = {}
        slack = 0  # charges for rounding coefficients, scale 2^(F+G)
        work = sum(len(v.c) for m, _, v in terms if m)
        if work > self.work:  # the inputs of least |m| E_v become their one shared source
            terms = list(terms)  # (``alias``: signs kept) until the rest's forms fit the budget
            for j in sorted((j for j, (m, _, v) in enumerate(terms) if m and len(v.c) > 1),
                            key=lambda j: abs(terms[j][0]) * terms[j][2].E):
                if work <= self.work:
                    break
                m, r, v = terms[j]
                terms[j] = (m, r, self.alias(v))
                work += len(terms[j][2].c) - len(v.c)
        for m, r, v in terms:
            if v.rem:
                rem += abs(m) * v.rem
            if r and self.nf and v.c:  # r|e_v| <= r(sum |c_s| loc_s(t) + rem_v)
                k0, vec = self._acc(v.c)
                lf = lf or [ZERO] * (self.nf + 1)
                sc = r / (1 << (F + G))
                lf[0] += sc * k0
                for i, a in enumerate(vec):
                    if a:
                        lf[i + 1] += sc * a
                rem += r * v.rem
            elif r:
                rem += r * v.E
            if not m or not v.c:
                continue
            if work > self.work:  # (more inputs than that, each one source: their bounds)
                rem += abs(m) * (v.E - v.rem)
                continue
            # W = round(m 2^F) (half to even, as round() of a Fraction), in integers
            W, part = divmod(m.numerator << F, m.denominator)
            if 2 * part > m.denominator or (2 * part == m.denominator and W & 1):
                W += 1
            if part:  # |m - W/2^F| <= 2^-(F+1): charged on every source of v
                slack += (sum(abs(x) * self.locmax[s] for s, x in v.c.items()) >> (2 * F + 1)) + 1
            for s, x in v.c.items():
                acc[s] = acc.get(s, 0) + W * x
        c = {}
        for s, x in acc.items():  # floor to scale 2^F: < one unit (2^-F) per source
            if x >> F:
                c[s] = x >> F
        if acc:
            slack += (sum(self.locmax[s] for s in acc) >> F) + 1
        rem += Q(slack, 1 << G)  # (slack in units of 2^-G)
        if len(c) > MAX_TERMS:  # keep the largest terms (signs, so they cancel later): the rest's
            order = sorted(c, key=lambda s: abs(c[s]) * self.locmax[s], reverse=True)
            drop = {s: c[s] for s in order[KEEP_TERMS:]}  # (its bound joins the new source)
            c, rem = {s: c[s] for s in order[:KEEP_TERMS]}, self.bound(drop, rem)
        # the new unknowns (this step's rounding, slope radii, charges) become one new source:
        # later steps combine it with signed coefficients, so it can cancel like any rounding
        require(local >= 0, "negative local error")
        local += rem
        if lf is not None or local:
            lf = lf or [ZERO]  # (a constant bound: the form a_0 alone)
            lf[0] += local
            L = self._store(lf)
            mx = L if isinstance(L, int) else L[0] + sum(map(abs, L[1:]))
            if mx > 0:
                self.loc.append(L)
                self.locmax.append(mx)
                c[len(self.loc) - 1] = 1 << F
        return V(lo, hi, c, ZERO, self.bound(c, ZERO), g)

    def alias(self, v: V) -> V:
        """v with its error as ONE source d_v = e_v, |d_v| <= sum_s |c_s| loc_s(t) + rem_v (a form
        where forms are on), made once per element: e_v = d_v exactly, and a bound holds whatever
        the sources' dependence, so readers that combine d_v with signed weights still cancel."""
        if v._r is None:
            k0, vec = self._acc(v.c)
            sc = 1 << (F + G)
            L = self._store([Q(k0, sc) + v.rem] + [Q(a, sc) for a in vec])
            self.loc.append(L)
            self.locmax.append(L if isinstance(L, int) else L[0] + sum(map(abs, L[1:])))
            v._r = V(v.lo, v.hi, {len(self.loc) - 1: 1 << F}, ZERO, v.E, v.g)
        return v._r

    def const(self, q: Fraction, rem: Fraction = ZERO) -> V:
        return V(q, q, {}, rem, rem)

    def fl_const(self, q: Fraction) -> V:
        """A binary64 constant of a kernel (a Python float), cast to the format."""
        return self.const(q, self.cast_err(q))

    def cast_err(self, q: Fraction) -> Fraction:
        """|fl(q) - q| for a constant cast to the format (numpy casts to nearest; the mode too)."""
        fls = [round_fraction(q, self.fmt, m) for m in sorted({"rne", self.mode})]
        require(all(f.finite for f in fls), f"constant {float(q):.6g} overflows {self.fmt.name}")
        return max(abs(f.value - q) for f in fls)

    def point(self, lo: Fraction, hi: Fraction) -> V:
        return V(Q(lo), Q(hi), {}, ZERO, ZERO)

    # -- rounding ------------------------------------------------------------------------------
    def mag(self, v: V) -> Fraction:
        return max(abs(v.lo), abs(v.hi)) + v.E

    def rnd(self, m: Fraction, underflow: bool = True) -> Fraction:
        """One rounding of a value of magnitude <= m (an exact sum never underflows with subnormals)."""
        require(m * (1 + self.u) < self.fmt.max_finite, f"values up to {flt(m):.3g} may overflow "
                f"{self.fmt.name}")
        return self.u * m + (self.eta if underflow or not self.fmt.subnormals else 0)

    def gamma(self, n: int) -> Fraction:
        require(n * self.u < 1, f"gamma_{n} undefined: n*u >= 1")
        return n * self.u / (1 - n * self.u)

    def kern(self, F_: Fraction) -> Fraction:
        """A library kernel within k ulp of a result of magnitude <= F_."""
        return self.k * (2 * self.un * F_ + self.fmt.min_positive)

    # -- operations --------------------------------------------------------------------------
    def lin(self, terms: list[tuple[Fraction, V]], c: Fraction, kind: str, rng: Any = None) -> V:
        """sum w_i x_i + c computed as ``kind``: "exact" (a selection), "one" (one rounding),
        "dot" (a sum of products, any order: gamma_k), "avg" (a sum, then a division by n)."""
        # the exact sums as integer numerators over a common denominator (``ExactOps.dot``)
        c = Q(c)
        ws = [Q(w) for w, _ in terms]
        pos = [w.numerator > 0 for w in ws]
        lo = EXACT.dot(c, ws, [v.lo if p else v.hi for p, (_, v) in zip(pos, terms)])
        hi = EXACT.dot(c, ws, [v.hi if p else v.lo for p, (_, v) in zip(pos, terms)])
        if rng is not None:
            lo, hi = max(lo, rng[0]), min(hi, rng[1])
        aw = [abs(w) for w in ws]
        prop = EXACT.dot(ZERO, aw, [v.E for _, v in terms])
        out = max(abs(lo), abs(hi)) + prop
        S = EXACT.dot(abs(c), aw, [facts(v)[0] for _, v in terms]) + prop  # sum |w| mag(v) + |c|
        n = len(terms) + (c != 0)
        gy = _g(rng)
        local: Any
        if kind == "exact":
            local = ZERO
        elif kind == "one":  # a sum of floats is exact below the normal range; a scaling is not
            local = self.rnd(out, underflow=any(abs(w) != 1 for w, _ in terms))
            if gy is not None:  # u(|y(x)| + prop) + eta: |y(x)| <= gy(t) (first order in x)
                local = [self.u * a for a in gy]
                local[0] += self.rnd(out, underflow=any(abs(w) != 1 for w, _ in terms)) - self.u * max(
                    abs(lo), abs(hi))
        elif kind == "dot":
            local = errorforms.dot_error(self, terms, c, S, n)
        else:  # avg: the map's coefficients are all 1/n; y = fl(S~ / fl(n)), fl(n) >= n - dn > 0
            div = 1 / terms[0][0]
            # (avg_pool's divisor may be a count summed in the format: exact up to 2^p)
            require(div <= 2 ** self.fmt.precision, f"divisor {div} is not exact in {self.fmt.name}")
            dn = self.cast_err(div)
            fn = div - dn
            require(fn > 0, "the divisor rounds to 0")
            Smag = S * div  # the sum of the terms' magnitudes
            es = self.gamma(max(n, 1)) * Smag + 4 * n * self.eta
            # the window's float sum itself must not overflow (its partial sums are <= Smag + es):
            # the quotient's check alone missed fp16 avg_pool 3x3 of 30000s (inf / 9 = inf)
            self.rnd(Smag + es)
            local = es / fn + Smag * dn / (fn * div) + self.rnd((Smag + es) / fn)
        return self.make(lo, hi, [(w, ZERO, v) for w, v in terms], ZERO, local, gy)

    def add(self, a: V, b: V, sign: int = 1, rng: Any = None) -> V:
        return self.lin([(ONE, a), (Q(sign), b)], ZERO, "one", rng)

    def mul(self, a: V, b: V, rng: Any = None) -> V:
        """fl(a~ b~) - ab = b~ e_a + a e_b + d (a square when a is b: (a~ + a) e_a + d)."""
        lo, hi = interval_square((a.lo, a.hi)) if a is b else interval_mul((a.lo, a.hi), (b.lo, b.hi))
        if rng is not None:
            lo, hi = max(lo, rng[0]), min(hi, rng[1])
        if a is b:
            terms = [_iv(2 * a.lo - a.E, 2 * a.hi + a.E, a)]
        else:
            terms = [_iv(b.lo - b.E, b.hi + b.E, a), _iv(a.lo, a.hi, b)]
        return self.make(lo, hi, terms, ZERO, self.rnd(self.mag(a) * self.mag(b)), _g(rng))

    def div(self, a: V, b: V, rng: Any = None, floor: Any = None) -> V:
        """a~/b~ - a/b = e_a / b~ - a e_b / (b b~): interval coefficients; ``floor``: a known
        positive lower bound of both b and b~."""
        (bl, bh), (rl, rh) = (b.lo - b.E, b.hi + b.E), (b.lo, b.hi)
        if floor is not None:
            bl, rl = max(bl, floor), max(rl, floor)
        require(bl > 0 or bh < 0, "division by a value whose float range contains 0")
        ib, ir = (1 / bh, 1 / bl), (1 / rh, 1 / rl)
        ibb = interval_mul(ir, ib)
        q = interval_mul((a.lo, a.hi), ir)
        lo, hi = (max(q[0], rng[0]), min(q[1], rng[1])) if rng is not None else q
        t = interval_mul((-a.hi, -a.lo), ibb)
        out = self.mag(a) * max(abs(ib[0]), abs(ib[1]))
        return self.make(lo, hi, [_iv(*ib, a), _iv(*t, b)], ZERO, self.rnd(out), _g(rng))

    def fn(self, name: str, a: V, local: Any, rng: Any = None, floor: Any = None, ceil: Any = None,
           **attrs: Any) -> V:
        """f(x~) - f(x) = s e_x with s in f''s range over the float hull (mean value theorem), plus
        the kernel's own error ``local(hull_lo, hull_hi, max|f| on the hull)``; ``floor``/``ceil``:
        a known lower/upper bound of both x and x~ (a variance plus eps; softmax's x - max <= 0)."""
        row = FUNCTIONS[name]
        p, q = a.lo - a.E, a.hi + a.E
        if floor is not None:
            p = max(p, floor)
        if ceil is not None:
            q = min(q, ceil)
        row._check(p, q, attrs)
        lo, hi = row.interval(a.lo, a.hi, **attrs)
        if rng is not None:
            lo, hi = max(lo, rng[0]), min(hi, rng[1])
        fl, fh = row.interval(p, q, **attrs)
        self.rnd(max(abs(fl), abs(fh)) * (1 + 2 * self.k * self.un))  # (no overflow of the result)
        loc = Q(local(self, p, q, max(abs(fl), abs(fh))))
        v = self.make(lo, hi, [_iv(*slope_range(row, p, q, attrs), a)], ZERO, loc, _g(rng))
        # the range rule: whatever the errors, f~(x~) lies in [fl - loc, fh + loc] (x~ in the hull)
        # and f(x) in [lo, hi]; a saturating f (sigmoid, tanh, erf) caps a long chain's error here
        cap = max(fh + loc - lo, hi - fl + loc)
        return self.make(lo, hi, [], ZERO, cap, _g(rng)) if cap < v.E else v

    def maxlike(self, vs: list[V], rng: Any = None) -> V:
        """max is exact in floats and |max(x~) - max(x)| <= max |e_j|; the form is kept when one
        member stays the largest whatever the errors."""
        lo, hi = max(v.lo for v in vs), max(v.hi for v in vs)
        if rng is not None:
            lo, hi = max(lo, rng[0]), min(hi, rng[1])
        for v in vs:
            if all(v.lo - v.E >= w.hi + w.E for w in vs if w is not v):
                return V(lo, hi, v.c, v.rem, v.E, _g(rng))
        return V(lo, hi, {}, max(v.E for v in vs), max(v.E for v in vs), _g(rng))


def _iv(a: Fraction, b: Fraction, v: V) -> tuple[Fraction, Fraction, V]:
    """A term s*e_v with s in [a, b]: midpoint and radius."""
    return (a + b) / 2, (b - a) / 2, v


def slope_range(row: Any, p: Fraction, q: Fraction, attrs: dict[str, Any]) -> tuple[Fraction, Fraction]:
    """[min f', max f'] over [p, q]: f' is monotone on each convexity piece of the row, so its
    extremes are at p, q and the piece ends between; |f'| <= lip on an "unknown" bracket."""
    pts = [p, q]
    lip = None
    for a, b, kind in row.pieces(**attrs):
        if (a is None or a < q) and (b is None or b > p):
            pts += [x for x in (a, b) if x is not None and p < x < q]
            if kind == "unknown":
                lip = row.lip
    try:
        encs = [row.df(x, **attrs) for x in pts]
    except ZeroDivisionError:  # (sqrt, log, reciprocal at 0: no finite slope, so no bound)
        raise DomainError(f"{row.name}: no finite slope on the float range [{float(p):.6g}, {float(q):.6g}]"
                          ) from None
    lo, hi = min(e[0] for e in encs), max(e[1] for e in encs)
    return (lo, hi) if lip is None else (min(lo, -lip), max(hi, lip))
