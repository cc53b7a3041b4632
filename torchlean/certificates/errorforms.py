"""First-order error forms over the inputs (FPTaylor-style) for ``errorbound``. Standard library.

The box is written x_i = mid_i + rad_i t_i with t in [-1, 1]^n. A *form* is a list
[a_0, a_1, ..., a_n] meaning a_0 + sum a_i t_i; its maximum over the box is a_0 + sum |a_i|.

``linear_bounds`` gives every bound-graph variable a lower and an upper form valid on the whole box:
inputs are their own form, const variables their interval, and a fn / mul / max element the
engine's own relaxation lines (``engine.relaxation``: valid on the element's argument interval,
which contains the argument's value at every x of the box) with each argument form replaced by its
lower or upper form by the sign of the coefficient. This is a forward "symbolic interval" pass with
the engine's (CROWN-tightened) argument intervals; no back-substitution, so it costs one pass.

``magnitude`` turns the two forms of a value v (and its range [L, U]) into one form g with
|v(x)| <= g(t(x)) on the box: g = upper form when L >= 0, -(lower form) when U <= 0, and the chord
of |.| over [L, U] composed with the matching form otherwise. The rounding of v then contributes
at most u*g(t) at the same point t as every other rounding, so ``errorbound`` bounds an output's
error by max_t sum_s |c_s| loc_s(t) (one maximum of a sum) instead of a sum of maxima. When g's
maximum exceeds the constant max(|L|, |U|) the constant is used, so a form never loosens a step.

``dot_error``: the column's rule for a sum of products in any order (matmul, conv2d, sum), the
smaller of Higham's gamma_n bound and a sign-split first-order bound (its docstring).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from .bound_graph import Aff, BoundGraph, arg_rows
from .core import float_down as _down
from .core import float_up as _up
from .intervals import EXACT

Q = Fraction
ZERO = Q(0)
MAX_FORM_IN = 64  # inputs: above, no forms (every source is a constant, as before)
FORM_BUDGET = 2_000_000  # variables x (inputs + 1): above, no forms
FORM_WORK = 4_000_000  # argument terms of every relaxed element x (inputs + 1): above, no forms

Form = list[Fraction]


def enabled(bg: BoundGraph) -> int:
    """The number of form dimensions for this graph: its inputs, or 0 (forms off: any source may
    be a constant instead of a form, which is also sound). Off above ``FORM_BUDGET`` stored
    coefficients or ``FORM_WORK`` coefficient operations of ``linear_bounds`` (each relaxed
    element reads its arguments' forms: a spectral layer's elements read every grid point's)."""
    n = bg.n_in
    if n > MAX_FORM_IN or bg.n_vars * (n + 1) > FORM_BUDGET:
        return 0
    work = 0
    for node in bg.nodes:
        if node.kind in ("fn", "mul", "max", "lin"):
            work += sum(len(f.t) for f in arg_rows(node, node.args) if isinstance(f, Aff))
            if 4 * work * (n + 1) > FORM_WORK:  # (two lines, each reading lower and upper forms)
                return 0
    return n


def fmax(f: Form) -> Fraction:
    """max over t in [-1, 1]^n of the form."""
    return f[0] + sum(abs(a) for a in f[1:])


def _round(f: Form, lower: bool) -> Form:
    """Short (float-valued) coefficients; the shift |a - a'| <= |a - a'| |t_i| moved into a_0
    outward, so the form stays a lower (upper) bound."""
    out, slack = [ZERO], ZERO
    for a in f[1:]:
        try:
            b = Q(float(a))
        except OverflowError:
            b = a
        slack += abs(a - b)
        out.append(b)
    out[0] = _down(f[0] - slack) if lower else _up(f[0] + slack)
    return out


def linear_bounds(bg: BoundGraph, st: Any, box: list[tuple[Fraction, Fraction]], relaxation: Any
                  ) -> list[tuple[Form, Form]]:
    """(lower form, upper form) of every variable of ``bg`` on the box (module docstring);
    ``st``: the engine's state after ``forward`` on this box, ``relaxation(st, k, i)`` its lines
    (lower terms, lower constant, upper terms, upper constant), terms over argument forms."""
    n = bg.n_in
    forms: list[Any] = [None] * bg.n_vars
    for i, (lo, hi) in enumerate(box):
        f = [(lo + hi) / 2] + [ZERO] * n
        f[1 + i] = (hi - lo) / 2
        forms[i] = (f, f)
    for k, node in enumerate(bg.nodes):
        o = node.offset
        if node.kind == "input":
            continue
        if node.kind == "const":
            for i, (a, b) in enumerate(node.args):
                forms[o + i] = ([Q(a)] + [ZERO] * n, [Q(b)] + [ZERO] * n)
            continue
        for i in range(node.size):
            lt, lc, ut, uc = relaxation(st, k, i)
            lo = _side(forms, lt, lc, n, True)
            hi = _side(forms, ut, uc, n, False)
            forms[o + i] = (_round(lo, True), _round(hi, False))
    return forms


def _side(forms: list[Any], terms: list[tuple[Aff, Fraction]], c: Fraction, n: int, lower: bool) -> Form:
    """c + sum coef * arg over the line's terms, each argument by its lower or upper form."""
    pairs = [(Q(coef), aff_side(forms, a, n, (coef > 0) == lower)) for a, coef in terms if coef]
    return lincomb(Q(c), pairs, n)


def aff_side(forms: list[Any], a: Aff, n: int, lower: bool) -> Form:
    """The lower (``lower``) or upper form of an affine form over variables: each variable's
    lower or upper form by the sign of its coefficient."""
    return lincomb(Q(a.c), [(q, forms[v][0 if (q > 0) == lower else 1]) for v, q in a.t.items()], n)


def aff_forms(forms: list[Any], a: Aff, n: int) -> tuple[Form, Form]:
    """(lower, upper) form of an affine form over variables (``aff_side``)."""
    return aff_side(forms, a, n, True), aff_side(forms, a, n, False)


def lincomb(c: Fraction, pairs: list[tuple[Fraction, Form]], n: int) -> Form:
    """c + sum q * f over the (q, f) pairs, exact: the nonzero entries gathered per coefficient in
    one pass, then each coefficient one ``ExactOps.dot`` (integer numerators over a running common
    denominator: no gcd while the denominators divide one another, as float weights and
    float-rounded forms do)."""
    qs: list[list[Fraction]] = [[] for _ in range(n + 1)]
    xs: list[list[Fraction]] = [[] for _ in range(n + 1)]
    for q, f in pairs:
        for i, a in enumerate(f):
            if a:
                qs[i].append(q)
                xs[i].append(a)
    return [EXACT.dot(c if i == 0 else ZERO, qs[i], xs[i]) for i in range(n + 1)]


def magnitude(lo: Form, hi: Form, L: Fraction, U: Fraction) -> Form | None:
    """A form g >= |v| on the box, from v's lower and upper forms and its range [L, U]; None when
    g's maximum is not below the constant max(|L|, |U|) (the caller then uses the constant)."""
    M = max(abs(L), abs(U))
    if L >= 0:
        g = list(hi)
    elif U <= 0:
        g = [-a for a in lo]
    else:  # |v| <= lam v + mu on [L, U] (the chord through (L, -L) and (U, U))
        lam, mu = (U + L) / (U - L), -2 * U * L / (U - L)
        g = [lam * a for a in (hi if lam >= 0 else lo)]
        g[0] += mu
    g = _round(g, False)
    return g if fmax(g) < M else None


def facts(v: Any) -> tuple[Fraction, Fraction, Fraction, Fraction]:
    """(max(|lo|, |hi|), max(0, hi + E), max(0, E - lo), max(|lo|, |hi|) + E) of an ``errorctx.V``,
    computed once per element (an element is read by many sums; a V is never changed once made)."""
    if v._k is None:
        a = max(abs(v.lo), abs(v.hi))
        v._k = (a, max(ZERO, v.hi + v.E), max(ZERO, v.E - v.lo), a + v.E)
    return v._k


def dot_error(ctx: Any, terms: list[tuple[Fraction, Any]], c: Fraction, S: Fraction, n: int) -> Any:
    """The rounding error of sum w_i x~_i + c in any order (FMA, wider accumulation too):
    the smaller of (a) gamma_n S, S = sum |w_i| |x~_i| + |c| (Higham 3.1), and (b) the sum of
    every operation's own error: a summation tree adds its nodes' local errors unscaled, so
    |err| <= u T + u sum_j |node_j| with T = sum |w_i x~_i| + |c| (the products' roundings)
    and every node value a subset sum of the rounded products plus its subtree's errors, in
    [-(1+u)N - n eta - B, (1+u)P + n eta + B] (P, N: the largest sums of the positive, negative
    terms over the box; B: the sum of all |local errors|, n products and at most n roundings of
    a node, the n-th the final one of a wider accumulator). Ordered by their leaves' bound sums,
    the j-th node of any binary tree excludes >= j - 1 leaves (it and the j - 1 above it form an
    ancestor-closed set; a subtree holding r of them has >= r + 1 leaves), so its subset sum is
    <= s_j = S - (the j - 1 smallest a_i), a_i = |w_i| max|x~_i| (and |c|) the leaf bounds; the
    n-th rounding's value is <= s_1 = S. With K = sum_j min(max(P, N), s_j) (<= n max(P, N)):
    B <= (u T + u ((1+u) K + n^2 eta) + 2n eta) / (1 - n u); (a) + 4n eta (underflow). Where the
    inputs have magnitude forms, S (>= T) is one form over the inputs (|x~_i| <= g_i(t) + E_i)."""
    k = max(n, 1)
    g = ctx.gamma(k)  # (requires k u < 1, so every 1 - k u below is positive)
    ctx.rnd(S * (1 + g))
    # P += max(0, w(lo - E), w(hi + E)), N += max(0, -w(lo - E), -w(hi + E)) per term: with a =
    # max(0, hi + E), b = max(0, E - lo), that is |w| a and |w| b (w > 0), |w| b and |w| a (w < 0)
    aw = [abs(Q(w)) for w, _ in terms]
    ab = [facts(v)[1:3] for _, v in terms]
    P = EXACT.dot(max(Q(c), ZERO), aw, [a if w > 0 else b for (w, _), (a, b) in zip(terms, ab)])
    N = EXACT.dot(max(-Q(c), ZERO), aw, [b if w > 0 else a for (w, _), (a, b) in zip(terms, ab)])
    M = max(P, N)
    # the j-th largest node is at most s_j = S - (the j - 1 smallest leaf bounds), j = 1..n-1
    # (the recursive sum, largest terms first); the n-th rounding (a wider accumulator's) <= S
    # (key (float, exact): float order is exact order where the floats differ)
    small = sorted([a * facts(v)[3] for a, (_, v) in zip(aw, terms)] + [abs(Q(c))] * (c != 0),
                   key=lambda q: (float(q), q))[:k - 1]
    # nodes = min(M, S) + sum_j min(M, S - drop_j), in integers over one denominator D
    D = math.lcm(M.denominator, S.denominator, *(q.denominator for q in small))
    m, s = M.numerator * (D // M.denominator), S.numerator * (D // S.denominator)
    acc = min(m, s)
    for q in small:
        acc += min(m, s)
        s -= q.numerator * (D // q.denominator)
    nodes = Q(acc, D)
    a = ctx.u / (1 - k * ctx.u)
    b = (ctx.u * ((1 + ctx.u) * nodes + k * k * ctx.eta) + 2 * k * ctx.eta) / (1 - k * ctx.u)
    Sf: list[Fraction] = [S]
    if ctx.nf and any(v.g is not None for _, v in terms):
        # S as one form over the inputs, |x~_i| <= g_i(t) + E_i
        c0 = abs(c) + sum((abs(w) * (ctx.mag(v) if v.g is None else v.E) for w, v in terms), ZERO)
        Sf = lincomb(Q(c0), [(abs(Q(w)), v.g) for w, v in terms if v.g is not None], ctx.nf)
    mS = fmax(Sf)
    if a * mS + b < g * mS + 4 * n * ctx.eta:
        out = [a * x for x in Sf]
        out[0] += b
    else:
        out = [g * x for x in Sf]
        out[0] += 4 * n * ctx.eta
    return out if len(out) > 1 else out[0]
