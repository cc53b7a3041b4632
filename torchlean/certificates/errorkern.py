"""The kernels' own errors of the rounding-error column's elementwise rows, each written once
(``kernel``) over a number domain ``D``: ``Exact`` here (rationals, standard library only: the
exact column, ``errorbound.apply``) or the fast column's walk (float64 arrays, each result rounded
up: ``fast_fns._Fns``). Each row's argument: TRUST_BOUNDARIES.md, "Floats". gelu is each walk's own
(``errorbound._gelu`` replays its formula through ``Ctx``; ``fast_fns._Fns._gelu`` closes it by hand).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from .core import require
from .errorctx import ZERO, Ctx
from .functions import FUNCTIONS

#: the elementwise rows of both columns (``errorbound.apply``, ``fast_fns._Fns.fn``)
FNS = ("relu", "sigmoid", "tanh", "exp", "log", "sqrt", "erf", "abs", "leaky_relu", "softplus", "silu",
       "gelu", "pow")


def kernel(D: Any, name: str, p: Any, q: Any, Fm: Any, attrs: dict[str, Any]) -> Any:
    """>= the kernel's own error of row ``name`` at a float input in [p, q], |f| <= Fm there."""
    u, (k0, k1), up = D.u, D.kern, D.up
    if name in ("relu", "abs"):  # (exact in floats)
        return 0 * D.abs(p)
    if name == "leaky_relu":  # fl(fl(s) x) for x <= 0: |x| ds + u |x| (|s| + ds) + eta
        s = D.num(attrs.get("slope", 0.01))
        ds = D.cast(s)
        mx = D.max(0 * p, -p)  # (x in [min(p, 0), min(q, 0)]: |x| <= max(0, -p))
        m = up(mx * (D.abs(s) + ds), 2)
        D.fits(m, name)
        return D.where(p < 0, lambda: D.source(up(mx * ds + u * m + D.eta, 3)), lambda: 0)
    if name in ("sigmoid", "silu"):
        # 1/(1 + exp(-x)) and x/(1 + exp(-x)): exp within k ulp makes 1 + t = (1 + e^-x)(1 +
        # theta), |theta| <= a = k(2un + minpos); then y = f(x)(1 + d2)/((1 + theta)(1 + d1)) +
        # eta, so sig = (1 + u)/((1 - a)(1 - u)) - 1 (None where a >= 1). Where exp(-x) may
        # overflow (x <= T = -2 emax/3 only: e^y < 2^(3y/2)) the kernel may return 0: error <=
        # |f| there, plus sat (1 or |x|) where the overflow is max_finite (rtz, rdn, rto), not
        # inf: y~ <= 2|num|/max_finite
        require(D.sig is not None, "kernel error too large")
        # (the tail's "returns 0" needs exp to overflow to +inf: without infinities it is NaN)
        require(D.fmt.has_inf or D.all(p > D.T), f"{name}: exp(-x) may overflow {D.fmt.name}, which "
                "has no infinity (NaN in the float run)")

        def tail() -> Any:
            tl, th = D.interval(name, D.min(p, D.T), D.min(q, D.T))
            return up(D.max(D.abs(tl), D.abs(th)) + up(D.sat * (1 if name == "sigmoid" else D.abs(p)), 1), 1)
        return up(D.sig * Fm + D.eta + D.where(p <= D.T, tail, lambda: 0), 3)
    if name == "softplus":  # max(x, 0) + log1p(exp(-|x|)): t <= 1 and log1p' <= 1: A each, one sum
        A = up(k0 + k1, 1)
        err = up(A * (1 + k0) + A, 3)
        D.fits(up(Fm + err, 1), name)
        return up(err + u * up(Fm + err, 1) + D.eta_sum, 3)
    require(name in ("exp", "log", "sqrt", "tanh", "erf", "pow"), f"{name}: no kernel row")
    c = D.num(attrs.get("exponent", 2)) if name == "pow" else 0  # (other rows: no attribute read)
    d = D.cast(c) if name == "pow" else 0
    if d:
        # x~ ** c runs as x~ ** fl(c) (numpy casts a Python float exponent to the array's format;
        # audit27): the kernel's k ulp of x~^fl(c) <= M, plus |x~^fl(c) - x~^c| = |fl(c) - c|
        # x~^s |ln x~| (mean value theorem in the exponent, s between c and fl(c); x^s is monotone
        # in s, so <= M, the larger of x^(c -+ d) over the hull [p, q]; |ln x| is largest at p or
        # q; p > 0: the row's domain for a non-integer c). An integer c not in the format is
        # refused (x~^fl(c) may change sign)
        require(c % 1 != 0, f"pow: the exponent {c} is not a value of {D.fmt.name}")
        M = D.max(*(D.interval("pow", p, q, exponent=e)[1] for e in D.around(c, d)))
        D.fits(up(M * (1 + k0), 2), name)  # (x~^fl(c) does not overflow)
        lg = D.interval("log", p, q)
        return up(k0 * D.max(Fm, M) + k1 + up(d * M * D.max(D.abs(lg[0]), D.abs(lg[1])), 2), 2)
    return up(k0 * Fm + k1, 2)  # (the libm kernel within k ulp)


class Exact:
    """``kernel``'s exact domain: a statement's ``Ctx`` and its constants as rationals, on scalars."""

    # D's members. The statement's constants: u, eta, eta_sum (eta without subnormals, else 0: an
    # exact sum never underflows), kern = (a, b) with k ulp of |f| <= a|f| + b, sig, T and sat
    # (sigmoid's, in ``kernel``). up(x, n): >= x computed with n roundings (exact: x). where(c,
    # a, b) on thunks: the exact one evaluates only the branch taken, so no row is read outside its
    # domain (``FUNCTIONS`` raises DomainError there; numpy only gives NaN). num: a constant of the
    # node (exact: its rational; fast: binary64); cast(c) >= |fl(c) - c|; around(c, d): the ends of
    # [c - d, c + d], outward; fits(m, what): ``Ctx.rnd``'s overflow rule; source(x): a product's
    # error x as the walk holds it (exact: what ``Ctx.mul`` returns, x stored as one new source).
    num, max, min, abs, all = Fraction, max, min, abs, bool
    up = staticmethod(lambda x, n: x)
    where = staticmethod(lambda c, a, b: a() if c else b())
    around = staticmethod(lambda c, d: (c - d, c + d))
    interval = staticmethod(lambda row, p, q, **at: FUNCTIONS[row].interval(p, q, **at))
    fits = lambda self, m, what: self.ctx.rnd(m)  # noqa: E731
    source = lambda self, x: self.ctx.make(ZERO, ZERO, [], ZERO, x).E  # noqa: E731

    def __init__(self, ctx: Ctx):
        self.ctx, self.fmt, self.u, self.eta, self.cast = ctx, ctx.fmt, ctx.u, ctx.eta, ctx.cast_err
        self.eta_sum = ZERO if ctx.fmt.subnormals else ctx.eta
        self.kern = (2 * ctx.k * ctx.un, ctx.k * ctx.fmt.min_positive)
        a = ctx.k * (2 * ctx.un + ctx.fmt.min_positive)
        self.sig = (1 + ctx.u) / ((1 - a) * (1 - ctx.u)) - 1 if a < 1 else None
        self.T = -Fraction(2 * ctx.fmt.emax, 3)
        # (where exp(-x) overflows toward zero, rtz/rdn/rto, it is max_finite, not inf: sigmoid's
        # kernel then returns fl(1/fl(1 + max_finite)) <= (1 + u)/max_finite + eta, not 0)
        self.sat = 2 / ctx.fmt.max_finite if ctx.mode in ("rtz", "rdn", "rto") else ZERO
