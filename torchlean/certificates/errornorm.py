"""Layer norm's normalisation as ONE entry of the error column (standard library only).

The runtime computes a row x~ (n floats) as v = fl(x~ - mu~) (``errorbound._layer_norm`` bounds
|v_i - c_i| by E_i, c = x - mean(x) the real centred row), then w~ = fl(fl(sum fl(v_i^2)) / n) +
eps~ rounded, s~ = sqrt~(w~), r~ = fl(1 / s~), y~_i = fl(v_i r~) (``runtime/rules_nn.layer_norm``).
The real row is y = H(c), H(z) = z / sqrt(mean(z^2) + eps) with the stored eps (binary64, exact).
Composing sub/square/sum/div/sqrt/div per element charges the variance's error times the slope of
1/sqrt at a variance near 0 (1.55e4 on the zoo transformer); bounding the whole map instead:

**Claim.** |y~_i - y_i| <= D_i = P_i + min(sqrt(n), ymax_i + L dl) T + |v_i| eta (1 + u) + eta,
with dl >= ||v - c||_2 (from the E_i), L, P_i, T below, and also <= sqrt(n) U_hi + ymax_i + (the
same eta terms) (the range rule: both y~_i and y_i are bounded, whatever the errors).

*Propagation* (v against c, in the reals). H is C^1 (eps > 0) with Jacobian J(z) = (I - h h^T)/s,
s = sqrt(mean(z^2) + eps), h = z / (sqrt(n) s), ||h||_2 < 1; so ||J(z)||_2 = 1/s and, on the
segment z = c + t (v - c), ||z||_2 >= ||c||_2 - dl >= sqrt(n var_lo) - dl with var_lo <= var(x)
(``var_floor``, or the bound table's floor, ``engine._State.squares``, where higher): s >=
sqrt(max(0, sqrt(var_lo) - dl/sqrt(n))^2 + eps) = 1/L. Mean value theorem on
t -> H(c + t(v - c))_i: H(v)_i - H(c)_i = e_i^T J(z) (v - c) = ((v - c)_i - h_i h.(v - c)) / s for
some z of the segment, so |.| <= L (E_i + |h_i| dl), |h_i| = |H(z)_i| / sqrt(n) <= min(1, (ymax_i
+ L dl)/sqrt(n)) (|H(z)_i - H(c)_i| <= ||H(z) - H(c)|| <= L dl, |H(c)_i| = |y_i| <= ymax_i) and,
where L dl < sqrt(n), <= (ymax_i + L E_i)/(sqrt(n) - L dl) (``seg_max``: the same bound at every
point of the segment, applied at its maximum of |H(z)_i|), and also |.| <= ||H(v) - H(c)||_2 <= L
dl. P_i is the smaller of the two.

*Rounding* (y~ against H(v)). With a = mean(v^2): each fl(v_i^2) = v_i^2 (1 + d) + e, the sum in
any order within gamma_n of its terms' magnitudes plus 4n eta, one division by n (exact n): fl(sum
/ n) = a (1 + r1) + alpha, |r1| <= R1 = (1 + u)^2 (1 + gamma_n) - 1, |alpha| <= A = 6 eta (1 + u)
(1 + gamma_n). Adding eps~ (in [eps - de, eps + de], de the cast error, el = eps - de > 0) and
rounding: w~ = (a + eps~)(1 + r2), |r2| <= R2 = (1 + R1 + A/el)(1 + u) - 1 + eta/el (|a r1 + alpha|
<= (R1 + A/el)(a + eps~) as a >= 0). sqrt within k ulp of sqrt(w~) >= sqrt(el (1 - R2)): s~ =
sqrt(w~)(1 + ts), |ts| <= Ts = 2 k un + k minpos / sqrt(el (1 - R2)). r~ = (1/s~)(1 + d4) + e4,
y~_i = v_i r~ (1 + d5) + e5. And v_i / sqrt(a + eps~) = H(v)_i (1 + te), sqrt((a + eps)/(a +
eps~)) lies between 1 and sqrt(eps/eps~), so |te| <= |eps/eps~ - 1| <= de/el = Te. Hence y~_i =
H(v)_i f + v_i e4 (1 + d5) + e5 with f = (1 + te)(1 + d4)(1 + d5) / (sqrt(1 + r2)(1 + ts)) in
[U_lo, U_hi], U_hi = (1 + Te)(1 + u)^2 / ((1 - R2)(1 + R2/2)(1 - Ts)) (sqrt(1 - R) >= (1 - R)(1 + R/2)
on [0, 1]), U_lo = (1 - Te)(1 - u)^2 / ((1 + R2/2)(1 + Ts)) (sqrt(1 + R) <= 1 + R/2), T = max(U_hi
- 1, 1 - U_lo); |H(v)_i| < sqrt(n) (||H(v)||_2^2 = n a/(a + eps) < n) and |H(v)_i| <= |y_i| + L dl.
*Relational form* (h-trans): f = F (1 + d5_i) with F = (1 + te)(1 + d4)/(sqrt(1 + r2)(1 + ts)) the
same for every element of the row (one variance, one sqrt, one r~ per row), F in [F_lo, F_hi] =
[U_lo/(1 - u), U_hi/(1 + u)]; so y~_i - y_i = (H(v)_i - y_i) + H(v)_i (F - 1) + H(v)_i F d5_i + (the
eta terms): the second is ONE source per row (|F - 1| <= max(F_hi - 1, 1 - F_lo)) times H(v)_i in
[lo_i - P_i, hi_i + P_i] ∩ [-sqrt(n), sqrt(n)] (midpoint kept, radius charged), the rest, P_i +
max|H(v)_i| F_hi u + the eta terms, the element's own source; the range rule's cap where smaller.
The propagation too, where that is smaller than P_i: the mean value theorem per element gives
H(v)_i - H(c)_i = sum_j M_ij e_j, e = v - c (the centred elements' error forms), M_ij = (delta_ij -
H_i H_j / n)/s at some z of the segment, where 1/s lies in [a - ra, a + ra] (1/s <= L; s^2 <=
(sqrt(n var_hi) + dl)^2/n + eps, ||z|| <= ||c|| + dl) and H(z)_j in [G_j - R_j, G_j + R_j] (the
range of H(v)_j above: the same bound holds at every z of the segment); so with S = sum_j G_j e_j
(ONE source per row), H(v)_i - H(c)_i = a e_i - (a G_i / n) S + sum_j rho_ij e_j, |rho_ij| <=
delta_ij ra + (Hm_i Hm_j ra + a (R_i Hm_j + |G_i| R_j))/n (Hm >= |H|), charged as sum_j |rho_ij| E_j.
e_i stays a form (cancelling later; a sum over the budget aliases it, ``Ctx.make``).

Every quantity is an exact rational; square roots are rounded the safe way (``sqrt_up`` above,
``sqrt_down`` below). Preconditions (else ``normalise`` returns None and the column composes the
operations one by one): eps > 0, el > 0, n exact in the format, R2, Ts, Te < 1.
"""

from __future__ import annotations

from fractions import Fraction

from .bound_graph import sqrt_up, within
from .errorctx import ONE, ZERO, Ctx, V
from .functions import FUNCTIONS

Q = Fraction


def sqrt_down(q: Fraction) -> Fraction:
    """A rational <= sqrt(q), q >= 0: q / sqrt_up(q) (exact for squares of rationals)."""
    return q / sqrt_up(q) if q > 0 else ZERO


def var_floor(ranges: list[tuple[Fraction, Fraction]]) -> Fraction:
    """A lower bound of the biased variance of x over every x with x_i in [l_i, u_i]: var(x) =
    min_m (1/n) sum (x_i - m)^2 >= min_m (1/n) sum dist(m, [l_i, u_i])^2, the minimum of a piecewise
    quadratic in m taken exactly: between consecutive interval ends the intervals above m and below
    m are fixed, so it is a m^2 - 2 b m + c there, least at b/a clamped to the piece; the answer is
    the least of the pieces' minima (a point where two ends tie is a piece of length 0, whose one
    value is right whichever of the tied ends was crossed first: their terms are 0 there)."""
    n = len(ranges)
    a, b, c = n, sum((lo for lo, _ in ranges), ZERO), sum((lo * lo for lo, _ in ranges), ZERO)
    mins: list[Fraction] = []
    left: Fraction | None = None
    for t, up in sorted([(lo, 0) for lo, _ in ranges] + [(hi, 1) for _, hi in ranges]):
        mins.append(_least(a, b, c, left, t))
        if up:  # m passes u_i: interval i is now below m
            a, b, c = a + 1, b + t, c + t * t
        else:  # m passes l_i: interval i is no longer above m
            a, b, c = a - 1, b - t, c - t * t
        left = t
    mins.append(_least(a, b, c, left, None))
    return max(ZERO, min(mins)) / n


def _least(a: int, b: Fraction, c: Fraction, lo: Fraction | None, hi: Fraction | None) -> Fraction:
    """min over m in [lo, hi] of a m^2 - 2 b m + c, a >= 0 (None: unbounded)."""
    if a == 0:
        return c
    m = b / a
    m = max(m, lo) if lo is not None else m
    m = min(m, hi) if hi is not None else m
    return (a * m - 2 * b) * m + c


def seg_max(ym: Fraction, LE: Fraction, Ldl: Fraction, rinv: Fraction) -> Fraction:
    """An upper bound of |H(z)_i| on the segment from c to v (module docstring, *Propagation*):
    ym + L dl, and, where L dl rinv < 1, the fixed point (ym + L E_i) / (1 - L dl rinv) (rinv >=
    1/sqrt(n)): M = max |H(z_t)_i| is attained at some t, and |H(z_t)_i| <= |H(c)_i| + L (E_i + (M /
    sqrt(n)) dl) there, so M (1 - L dl / sqrt(n)) <= ym + L E_i. Smaller where ym is small."""
    k = Ldl * rinv
    return min(ym + Ldl, (ym + LE) / (1 - k)) if k < 1 else ym + Ldl


def normalise(ctx: Ctx, xc: list[V], var_lo: Fraction, eps: Fraction) -> list[V] | None:
    """The normalised row y~_i = fl(v_i r~) as elements with one error source each (module
    docstring: the claim and its proof), from the centred elements ``xc`` (range of x_i - mu,
    error E_i >= |v_i - c_i|) and ``var_lo`` <= var(x); None where a precondition fails."""
    n = len(xc)
    if eps <= 0 or ctx.cast_err(Q(n)) != 0:
        return None
    de = ctx.cast_err(eps)
    el = eps - de
    u, eta, fmt = ctx.u, ctx.eta, ctx.fmt
    if el <= 0 or n * u >= 1:
        return None
    gn = ctx.gamma(n)
    M = max(ctx.mag(v) for v in xc)
    ctx.rnd(n * M * M * (1 + gn) + eps + de)  # (no overflow of the sum of squares and eps)
    R1 = (1 + u) ** 2 * (1 + gn) - 1
    A = 6 * eta * (1 + u) * (1 + gn)
    R2 = (1 + R1 + A / el) * (1 + u) - 1 + eta / el
    if R2 >= 1:
        return None
    s_lo = sqrt_down(el * (1 - R2))
    Ts, Te = 2 * ctx.k * ctx.un + ctx.k * fmt.min_positive / s_lo, de / el
    if Ts >= 1 or Te >= 1:
        return None
    ctx.rnd(1 / (s_lo * (1 - Ts)))  # (r~ is finite)
    U_hi = (1 + Te) * (1 + u) ** 2 / ((1 - R2) * (1 + R2 / 2) * (1 - Ts))
    U_lo = (1 - Te) * (1 - u) ** 2 / ((1 + R2 / 2) * (1 + Ts))
    # propagation: dl >= ||v - c||_2, L >= 1/s on the segment
    dl = sqrt_up(sum((v.E * v.E for v in xc), ZERO))
    rn, rinv = sqrt_up(n), sqrt_up(Q(1, n))  # >= sqrt(n), >= 1/sqrt(n)
    m = max(ZERO, sqrt_down(var_lo) - dl * rinv)
    L = 1 / sqrt_down(m * m + eps)
    # the real range of y_i = c_i r, r in [1/sqrt(var_hi + eps), 1/sqrt(var_lo + eps)], within +-c
    var_hi = sum((max(v.lo * v.lo, v.hi * v.hi) for v in xc), ZERO) / n
    r_lo, r_hi = 1 / sqrt_up(var_hi + eps), 1 / sqrt_down(var_lo + eps)
    cmax = sqrt_up(n - 1)
    # the row's common factor F - 1 as ONE source (relational: a later sum of the H(v)_i (F - 1)
    # cancels by sign, e.g. W H(v) (F - 1) in the next matmul), F = f / (1 + d5) in [F_lo, F_hi]
    F_hi, F_lo = U_hi / (1 + u), U_lo / (1 - u)
    d = ctx.make(ZERO, ZERO, [], ZERO, max(F_hi - 1, 1 - F_lo))
    rows = []
    for v in xc:
        lo, hi = within(v.lo * (r_hi if v.lo < 0 else r_lo), v.hi * (r_hi if v.hi > 0 else r_lo), cmax)
        P = min(L * dl, L * (v.E + min(ONE, seg_max(max(-lo, hi), L * v.E, L * dl, rinv) * rinv) * dl))
        # H(z)_i for z on the segment (H(v)_i too) lies in [lo - P, hi + P] and in (-sqrt(n), sqrt(n))
        rows.append((lo, hi, P, max(lo - P, -rn), min(hi + P, rn)))
    # the propagation as a form (relational, module docstring): 1/s on the segment in [a - ra, a + ra]
    a_lo = 1 / sqrt_up((sqrt_up(n * var_hi) + dl) ** 2 / n + eps)
    a, ra = (a_lo + L) / 2, (L - a_lo) / 2
    G = [(hl + hh) / 2 for _, _, _, hl, hh in rows]
    Hm, R = [max(-hl, hh) for *_, hl, hh in rows], [(hh - hl) / 2 for *_, hl, hh in rows]
    sHE = sum((h * v.E for h, v in zip(Hm, xc)), ZERO)
    sRE = sum((r * v.E for r, v in zip(R, xc)), ZERO)
    S = ctx.make(ZERO, ZERO, [(g, ZERO, v) for g, v in zip(G, xc)], ZERO, ZERO)  # sum_j G_j e_j, ONE source
    out = []
    for v, (lo, hi, P, hl, hh), g, hm, r in zip(xc, rows, G, Hm, R):
        tail = ctx.mag(v) * eta * (1 + u) + eta
        own = hm * F_hi * u + tail
        common = ((hl + hh) / 2, (hh - hl) / 2, d)  # H(v)_i (F - 1): midpoint kept, radius charged
        y = ctx.make(lo, hi, [common], ZERO, P + own)
        rho = ra * v.E + (hm * ra + a * r) * sHE / n + a * abs(g) * sRE / n
        y2 = ctx.make(lo, hi, [(a, ZERO, v), (-a * g / n, ZERO, S), common], ZERO, rho + own)
        cap = rn * U_hi + max(-lo, hi) + tail  # |y~_i| <= sqrt(n) U_hi + tail, |y_i| <= max(-lo, hi)
        y = min(y, y2, key=lambda w: w.E)
        out.append(y if y.E <= cap else ctx.make(lo, hi, [], ZERO, cap))
    return out


def softmax_ratio(ctx: Ctx, xs: list[V], s: list[V], m: V, his: list[Fraction]) -> list[Fraction]:
    """Error bounds of softmax's outputs y~_i = fl(e~_i / S~) over one group (masked entries
    dropped), from the inputs ``xs``, the shifted elements ``s`` (x_i - max, for |x~_i - m~|) and
    the max ``m`` and upper bounds ``his`` of the real outputs, as ratios (the max's error cancels):

    softmax is shift-invariant, so y_i = q_i / Q with q_j = exp(x_j - m~), Q = sum q_j, at the float
    max m~. s~_i = fl(x~_i - m~) = (x_i - m~) + t_i, |t_i| <= tau_i = E_i + u A_i + eta (A_i >=
    |x~_i - m~|). e~_i = exp~(s~_i) = q_i r_i + a_i, r_i in [e^-tau_i (1 - K), e^tau_i (1 + K)], K =
    2 k un, |a_i| <= a0 = k minpos (the kernel within k ulp). Every e~_j >= 0 and the max's term is
    exp~(0) >= f0 = 1 - kern(1) > 0, so sum e~_j >= f0 and sum q_j r_j >= f0 - n a0 > 0. Then e~_i /
    sum e~_j = y_i (r_i / rbar) / (1 + abar / sum q_j r_j) + a_i / sum e~_j, rbar = sum q_j r_j / Q a
    mean of the r_j (|abar| <= n a0); S~ = (sum e~_j)(1 + sigma) + beta (any order: |sigma| <=
    gamma_n, |beta| <= 4 n eta, so |beta| / sum e~_j <= b0 = 4 n eta / f0); y~_i = that (1 + d) + eta.
    So y~_i = y_i F_i + G_i with F_i in [Flo, Fhi] (below) and |G_i| <= (a0/f0)(1 + u)/(1 - gamma_n -
    b0) + eta, and |y~_i - y_i| <= hi_i max(Fhi - 1, 1 - Flo) + |G_i| (0 <= y_i <= hi_i)."""
    n = len(xs)
    u, eta, fmt = ctx.u, ctx.eta, ctx.fmt
    f0 = 1 - ctx.kern(ONE)
    a0, K, gn = ctx.k * fmt.min_positive, 2 * ctx.k * ctx.un, ctx.gamma(n)
    b0 = 4 * n * eta / f0
    c0 = n * a0 / (f0 - n * a0)
    if f0 - n * a0 <= 0 or gn + b0 >= 1 or K >= 1 or c0 >= 1:
        return [ONE] * n  # (a vacuous bound, never used: the caller takes the smaller)
    exp_hi = FUNCTIONS["exp"].value
    tau = [x.E + u * (max(-v.lo, v.hi) + x.E + m.E) + eta for x, v in zip(xs, s)]
    tmax = max(tau)
    G = (a0 / f0) * (1 + u) / (1 - gn - b0) + eta
    out = []
    for t, hi in zip(tau, his):
        if t + tmax > 64:  # (no use: 1 bounds it, both outputs lying in [0, 1])
            out.append(ONE)
            continue
        up = exp_hi(t + tmax)[1]  # >= e^(tau_i + tau_max); its inverse <= e^-(...)
        Fhi = up * (1 + K) / (1 - K) / (1 - c0) * (1 + u) / (1 - gn - b0)
        Flo = (1 - K) / ((1 + K) * up * (1 + c0)) * (1 - u) / (1 + gn + b0)
        out.append(max(Fhi - 1, 1 - Flo) * hi + G)
    return out


def softmax_relational(ctx: Ctx, xs: list[V], s: list[V], m: V, ys: list[V]) -> list[V] | None:
    """softmax's outputs over one group (masked entries dropped) as relational elements, from the
    inputs ``xs`` (error forms e_j), the shifted elements ``s`` and max ``m`` (for |x~_i - m~|) and
    the composed outputs ``ys`` (their real ranges [lo_i, hi_i] in [0, 1]); None where a
    precondition fails (TRUST_BOUNDARIES.md, "Floats", softmax, relational). Write p = softmax.

    *Propagation* (p(x~) against p(x), in the reals): the mean value theorem on t -> p(x + t e)_i,
    e = x~ - x, gives p(x~)_i - p(x)_i = sum_j J_ij(z) e_j at a point z of the segment, J_ij =
    p_i (delta_ij - p_j) (its columns sum to 0: sum_i p_i = 1). On the segment p(z)_j =
    p(x)_j e^(e'_j) / sum_k p(x)_k e^(e'_k) with |e'_k| <= E_k, so p(z)_j lies in [lo_j e^-(E_j +
    Em), hi_j e^(E_j + Em)] ∩ [0, 1] = [G_j - R_j, G_j + R_j] (Em = max E_k). Hence p(x~)_i - p(x)_i
    = G_i e_i - G_i S + sum_j rho_ij e_j, S = sum_j G_j e_j ONE source per row, |rho_ij| <= delta_ij
    R_i + R_i Pm_j + G_i R_j (Pm = G + R: p_i p_j - G_i G_j = (p_i - G_i) p_j + G_i (p_j - G_j)),
    charged with the E_j.

    *Rounding* (y~ against p(x~)): as ``softmax_ratio`` with the inputs' errors left out, e~_i =
    q~_i r_i + a_i, q~_i = exp(x~_i - m~), r_i in [e^-t_i (1 - K), e^t_i (1 + K)], t_i = u A_i +
    eta (A_i >= |x~_i - m~|), |a_i| <= a0; S~ = (sum e~_j)(1 + sigma) + beta; y~_i = (e~_i / S~)(1 +
    d_i) + eta_i. So y~_i = p(x~)_i C r_i (1 + d_i) + G', C = 1 / (rbar (1 + abar / sum q~ r)(1 +
    sigma + beta / sum e~)) the row's own factor (rbar a weighted mean of the r_j, |abar / sum q~ r|
    <= c0, |beta / sum e~| <= b0): y~_i - p(x~)_i = p(x~)_i (C - 1) [ONE source per row, coefficient
    the midpoint of p(x~)_i's range, radius charged] + p(x~)_i C (r_i (1 + d_i) - 1) + G' [the
    element's own], |G'| <= (a0 / f0)(1 + u) / (1 - gamma_n - b0) + eta."""
    n = len(xs)
    u, eta = ctx.u, ctx.eta
    f0 = 1 - ctx.kern(ONE)
    a0, K, gn = ctx.k * ctx.fmt.min_positive, 2 * ctx.k * ctx.un, ctx.gamma(n)
    b0 = 4 * n * eta / f0
    c0 = n * a0 / (f0 - n * a0) if f0 > n * a0 else ONE
    Em = max(x.E for x in xs)
    if c0 >= 1 or gn + b0 >= 1 or K >= 1 or 2 * Em > 32:
        return None
    exp_hi = FUNCTIONS["exp"].value
    tau = [u * (max(-v.lo, v.hi) + x.E + m.E) + eta for x, v in zip(xs, s)]
    if max(tau) > 32:
        return None
    G, R = [], []
    for x, y in zip(xs, ys):
        up = exp_hi(x.E + Em)[1]  # >= e^(E_j + Em); its inverse <= e^-(E_j + Em)
        lo, hi = max(ZERO, y.lo / up), min(ONE, y.hi * up)
        G.append((lo + hi) / 2)
        R.append((hi - lo) / 2)
    Pm = [g + r for g, r in zip(G, R)]
    sPE = sum((p * x.E for p, x in zip(Pm, xs)), ZERO)
    sRE = sum((r * x.E for r, x in zip(R, xs)), ZERO)
    eT = exp_hi(max(tau))[1]
    # C = 1 / (rbar D): rbar in [e^-tmax (1 - K), e^tmax (1 + K)], D in [(1 - c0)(1 - gn - b0),
    # (1 + c0)(1 + gn + b0)]
    C_lo = 1 / (eT * (1 + K) * (1 + c0) * (1 + gn + b0))
    C_hi = eT / ((1 - K) * (1 - c0) * (1 - gn - b0))
    d = ctx.make(ZERO, ZERO, [], ZERO, max(C_hi - 1, 1 - C_lo))  # the row's C - 1, ONE source
    S = ctx.make(ZERO, ZERO, [(g, ZERO, x) for g, x in zip(G, xs)], ZERO, ZERO)  # sum_j G_j e_j
    Gr = (a0 / f0) * (1 + u) / (1 - gn - b0) + eta
    out = []
    for x, y, g, r, pm, t in zip(xs, ys, G, R, Pm, tau):
        et = exp_hi(t)[1]
        dr = max(et * (1 + K) * (1 + u) - 1, 1 - (1 - K) * (1 - u) / et)
        own = r * x.E + r * sPE + g * sRE + pm * C_hi * dr + Gr
        out.append(ctx.make(y.lo, y.hi, [(g, ZERO, x), (-g, ZERO, S), (g, r, d)], ZERO, own, y.g))
    return out
