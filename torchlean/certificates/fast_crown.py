"""Sound vectorised float64 CROWN (numpy), the "crown" method of the fast replay mode.

Every pre-activation bound is a CROWN bound: a back-substitution per layer from its neurons through
the ReLU relaxations of the earlier layers, concretised over the box, except for neurons that one
interval step from the previous layer's bounds already proves stable on that box (their relaxation
is exact anyway; the interval bounds serve for the error terms). Upper rows (-I) go first; lower
rows (+I) only for neurons whose upper bound did not prove them dead, since a dead neuron's lower
bound changes nothing but an error term (its relaxation is 0 and its output bound is 0 either way).
Neurons dead in every box of a batch are left out of the back-substitution, which is exact
(``relax_layer``). The relaxations are ``fast.relax``'s, built from the certified bounds. Same
assumption and error accounting as ``fast.py`` (IEEE-754 binary64, round-to-nearest, standard
model; every rounding error is bounded by γ·(the computation on absolute values) and moved into
the constant, inflated by 4, plus ``TINY`` per entry):

- a ReLU step μ = λ⁺·α + λ⁻·s (α is 0/1): |μ - fl(μ)| <= 8u·|fl(μ)| (see the comment there),
  charged as 8u·|μ|·max|z| with max|z| from the certified bounds of that layer;
- λ' = μ·M (dot products of length n): error <= γ_n·|μ|·|M|, charged as γ_{n+1}·|μ|·(|M|·max|h|);
- the float matrix M differs from the exact one by E: charged as |μ|·(E·max|h| + E_c);
- constants: γ_{n+1}·(|terms| + |result|); concretisation: γ_{d+2}·(|λ|·max|x| + |const|).

The per-neuron charges (the first three, a weight w_j·|μ_j| per layer j) are not summed step by
step but bounded at once from the starting rows: |fl(μ_j)| <= (1 + 8u)·g_j·|λ_j| with g = max(α, s)
<= 1 (α, s are the two slopes μ picks from), and |fl(λ_{j-1})| <= (1 + γ_{n+1})·|fl(μ_j)|·|M_j| (a
computed dot product is at most (1 + γ) times the sum of its absolute terms). So the charges of
layer j and of every layer below it are at most |λ_j|·V_j, with
V_0 = (1 + 8u)·g_0·w_0 and V_j = (1 + 8u)·g_j·(w_j + (1 + γ_{n+1})·|M_j|ᵀ-applied V_{j-1}), computed
once per layer and box (``_layer_charges``). Looser than the step-by-step sum (no cancellation), by
far less than the slack a leaf claims, and it saves two passes over every λ.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .core import tick
from .fast import TINY, U, gamma, relax


class _Relaxed(NamedTuple):
    """One hidden layer's relaxation, each (n, B) unless said: upper slope s, shift t, lower slope
    α (0/1), max|z|, the unstable mask, the layer's offset among all hidden neurons, the error
    weights w and composite charges V (B, n; module docstring); then the same restricted to the
    ``live`` neurons (not dead in every box of the batch, see ``relax_layer``), laid out for the
    back-substitution step: α (B, 1, L), the number C of them relaxed in some box (they come
    first), the number A >= C of those not active in every box (they come next; on the rest
    α = 1 in every box), s - α on the first C (B, 1, C) and t on those (C, B), and this layer's
    affine step from the previous layer's live neurons to these, (L, m') and (L,)."""

    s: np.ndarray
    t: np.ndarray
    a: np.ndarray
    zmax: np.ndarray
    unst: np.ndarray
    off: int
    w: np.ndarray
    V: np.ndarray
    live: np.ndarray
    a_l: np.ndarray
    nrel: int
    nmul: int
    ds_l: np.ndarray
    t_l: np.ndarray
    M_l: np.ndarray
    c_l: np.ndarray


def relax_layer(aff, hv, prev: _Relaxed | None, low, upp, off: int) -> tuple[_Relaxed, np.ndarray]:
    """The relaxation of the ReLU after affine step ``aff`` from its certified pre-activation bounds
    (n, B), with its error charges (``hv`` bounds |input of aff|, ``prev`` is the layer before, off
    this layer's offset among all hidden neurons), and the bound on its output (n, B).

    The live view: a neuron that is stable-dead in every box of the batch (s = α = 0 and not
    relaxed, so t = 0) has μ = 0 exactly and no shift in every back-substitution row, so its column
    adds exactly nothing to any later product or sum (adding a zero term is exact, and the error
    terms' γ_n for the full width still covers the shorter sums): the step skips it, and the
    previous step skips computing its coefficient. (Which columns are skipped depends on the
    batch; that changes the rounding of a sum, never which relaxation a box gets.)"""
    keep_u, t, keep_l, unst, post, zmax = relax(low, upp)
    keep_l = keep_l.astype(np.float64)
    w, V = _layer_charges(aff, hv, None if prev is None else prev.V, keep_u, keep_l, zmax)
    relaxed = unst.any(1)
    stable = ((keep_u != 0) | (keep_l != 0)).any(1) & ~relaxed
    active = stable & (keep_l != 0).all(1)  # (stable and α = 1 in every box: active in every box)
    # the relaxed neurons first, so the step reaches them as a slice [:C] rather than a gather, then
    # those whose α is 0 in some box [C:A]; the step leaves μ = λ on the rest, which is exact
    live = np.concatenate([np.nonzero(relaxed)[0], np.nonzero(stable & ~active)[0], np.nonzero(active)[0]])
    lc = live[: int(relaxed.sum())]
    _, M, _, c, _ = aff
    M_l = M[live] if prev is None else M[np.ix_(live, prev.live)]
    r = _Relaxed(
        keep_u, t, keep_l, zmax, unst, off, w, V, live, keep_l[live].T[:, None, :], lc.size,
        live.size - int(active.sum()), (keep_u[lc] - keep_l[lc]).T[:, None, :], t[lc], M_l, c[live],
    )  # fmt: skip
    return r, post


@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def crown_bounds(
    layers: list[tuple],
    lo: np.ndarray,
    hi: np.ndarray,
    want_lam: bool = False,
    phases: np.ndarray | None = None,
    alpha: np.ndarray | None = None,
    mult: np.ndarray | None = None,
    want_relax: bool = False,
    trace: dict | None = None,
):
    """Certified lower bounds (B, K) of the final values over each box (B, d).

    With ReLU splits (``phases`` (B, H) over all H hidden neurons: -1 free, 0 inactive, 1 active)
    the bounds hold on the leaf's region, the box intersected with z <= 0 / z >= 0 for the split
    neurons: their pre-activation bounds are clamped at 0, which is valid there. ``alpha`` (B, K, H)
    are lower slopes in [0, 1] for the final back-substitution (NaN: the adaptive 0/1) and
    ``mult`` (B, K, H) >= 0 multipliers of the split constraints: for x in the region,
    f(x) >= f(x) - Σ mult·sgn·z(x) (sgn = +1 active, -1 inactive), so subtracting mult·sgn from the
    coefficient of z keeps a lower bound (β-CROWN's Lagrangian; any value is sound).

    ``trace``, for the verifier's branching heuristic only (it never changes a bound), receives per
    hidden layer k: ``forms[k]`` (B, n, d), the magnitude of each neuron's input coefficients in its
    own back-substitution (zero where an interval step sufficed), ``shift[k]`` (B, n), each relaxed
    neuron's intercept t, and ``lam[k]`` (B, K, n), the final rows' coefficients on its output."""
    affs = [a for a in layers if a[0] == "affine"]
    B, d = lo.shape
    xm = np.maximum(np.abs(lo), np.abs(hi))
    vmaxs = [xm.T]  # bound on |input of affine k|, (m, B)
    relus: list[_Relaxed] = []
    post_lo = xm.T * 0  # (placeholder: the interval step starts at the second layer)
    bad = np.zeros(B, dtype=bool)
    off = 0
    with np.errstate(invalid="ignore", over="ignore"):
        for k in range(len(affs) - 1):
            tick()
            n = affs[k][1].shape[0]
            ph = None if phases is None else phases[:, off : off + n].T  # (n, B)
            if k == 0:  # (no relaxation to pass through: each side is one concretisation)
                lb, lam_k = _back(affs, relus, vmaxs, k, lo, hi, xm, sign=1.0)
                ub, _ = _back(affs, relus, vmaxs, k, lo, hi, xm, sign=-1.0)
                low, upp = lb.T, -ub.T
                if trace is not None:
                    trace.setdefault("forms", {})[k] = 2 * np.abs(lam_k)
            else:
                # a neuron one interval step already proves stable (for this box) keeps the interval
                # bounds: its relaxation is exact either way, and they bound |z| soundly; the others
                # get CROWN bounds. Decided per box, so no box's bounds depend on its batch.
                low, upp = _ibp_step(affs[k], post_lo, vmaxs[k])
                need = (low < 0) & (upp > 0)
                if ph is not None:
                    need &= ph < 0
                if trace is not None:
                    forms = trace.setdefault("forms", {})[k] = np.zeros((B, n, d))
                for sign in (-1.0, 1.0):  # upper rows, then lower rows for the not-dead
                    rows = np.nonzero(need.any(1))[0]
                    if not rows.size:
                        continue
                    lb, lam_k = _back(affs, relus, vmaxs, k, lo, hi, xm, rows=rows, sign=sign)
                    if trace is not None:
                        forms[:, rows] += np.abs(lam_k)
                    sub = need[rows]
                    if sign < 0:
                        upp[rows] = np.where(sub, -lb.T, upp[rows])
                        need &= upp > 0
                    else:
                        low[rows] = np.where(sub, lb.T, low[rows])
            if ph is not None:  # valid on the leaf's region only, which is all a leaf claims
                low = np.where(ph == 1, np.maximum(low, 0.0), low)
                upp = np.where(ph == 0, np.minimum(upp, 0.0), upp)
            bad |= ~(np.isfinite(low).all(0) & np.isfinite(upp).all(0))
            r, post = relax_layer(affs[k], vmaxs[k], relus[-1] if relus else None, low, upp, off)
            if trace is not None:
                trace.setdefault("shift", {})[k] = r.t.T
            relus.append(r)
            off += n
            vmaxs.append(post)
            post_lo = np.maximum(low, 0.0)
        lagr = None
        if alpha is not None or mult is not None:
            sgn = None if phases is None else np.where(phases == 1, 1.0, np.where(phases == 0, -1.0, 0.0))
            lagr = (alpha, mult, sgn)
        lb, lam = _back(affs, relus, vmaxs, len(affs) - 1, lo, hi, xm, lagr=lagr, trace=trace)
    bad |= ~np.isfinite(lb).all(1)
    lb = np.where(bad[:, None], -np.inf, lb)
    if want_relax:  # for the verifier's slope search: (upper slope, shift, lower slope, |z|, unstable)
        return lb, lam, [r[:5] for r in relus]
    return (lb, lam) if want_lam else lb


def _ibp_step(aff, hl: np.ndarray, hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds of M·h + c for h in [hl, hu] (0 <= hl <= hu, shapes (m, B)), outward:
    each entry is a dot product of length m plus c, within γ_{m+1}·(|M|·hu + |c|)."""
    _, M, EM, c, Ec = aff
    Mp, Mn = np.maximum(M, 0.0), np.minimum(M, 0.0)
    low = Mp @ hl + Mn @ hu + c[:, None]
    upp = Mp @ hu + Mn @ hl + c[:, None]
    err = 4 * gamma(2 * M.shape[1] + 2) * (np.abs(M) @ hu + np.abs(c)[:, None]) + EM @ hu + Ec[:, None] + TINY
    return low - err, upp + err


def _layer_charges(aff, hv, below, keep_u, keep_l, zmax) -> tuple[np.ndarray, np.ndarray]:
    """This layer's per-neuron error weight w (B, n) of |μ| and the composite V (B, n) bounding the
    charges of this layer and every earlier one per unit of |λ| (module docstring); ``below`` is
    the previous layer's V (None for the first), ``hv`` bounds |input of this affine step| (m, B)."""
    _, M, EM, c, Ec = aff
    n = M.shape[0]
    w = (8 * U) * zmax.T + gamma(n + 1) * ((np.abs(M) @ hv).T + np.abs(c)) + (EM @ hv).T + Ec
    inner = w if below is None else w + (1 + gamma(M.shape[1] + 1)) * (below @ np.abs(M).T)
    return w, (1 + 8 * U) * np.maximum(keep_u, keep_l).T * inner


def _back(affs, relus, vmaxs, k, lo, hi, xm, rows=None, sign=1.0, lagr=None, trace=None):
    """Lower bounds (B, K) of sign·(the rows, all or those in ``rows``, of affine step k's output)
    and their input coefficients (B, K, d); ``lagr`` = (alpha, mult, sgn) for the final rows (see
    crown_bounds); ``trace`` collects each layer's λ (see crown_bounds).

    Without ``lagr`` only the live neurons of each layer are carried (``relax_layer``); with it every
    neuron is, since a split neuron's multiplier makes its μ nonzero even where it is dead."""
    _, M, EM, c, Ec = affs[k]
    if rows is not None:
        M, EM, c, Ec = M[rows], EM[rows], c[rows], Ec[rows]
    if sign < 0:
        M, c = -M, -c
    B = lo.shape[0]
    compact = lagr is None and k > 0
    start = M[:, relus[k - 1].live] if compact else M  # (K, m): ±M, exact
    lam = np.broadcast_to(start, (B, *start.shape))
    const = np.broadcast_to(c, (B, c.size)).copy()
    err = (EM @ vmaxs[k]).T + Ec
    if lagr is None and k > 0:  # every per-neuron charge of the steps below, at once
        err += relus[k - 1].V @ np.abs(M).T
    for j in range(k - 1, -1, -1):
        tick()
        r = relus[j]
        n = r.s.shape[0]  # (the error terms use the full width: γ is increasing)
        Bk, K, _ = lam.shape
        # (with the chord variant α = s: μ = λ·s, one rounding, which the 8u below covers)
        # μ = λ⁺·α + λ⁻·s computed as λ·α + λ⁻·(s - α) (α is 0/1): exact where λ >= 0, active
        # (s = α = 1) or dead (s = α = 0); one rounding (λ⁻·s) where α = 0; where α = 1 and the
        # ReLU is unstable, s >= 1/2 so s - 1 is exact (Sterbenz) and two roundings give an error
        # <= 3u·|λ·s|(1 + u): all within 8u·|fl(μ)|, charged against max|z|. s - α and t are 0
        # off the first ``nrel`` columns (the neurons relaxed in some box), so λ⁻ is only formed
        # on those, and α is 1 past the first ``nmul`` (active in every box), so μ = λ there.
        # (λ is overwritten by μ where that saves a pass: the previous product made it.)
        if lagr is None:
            if trace is not None:
                full = np.zeros((Bk, K, n))
                full[:, :, r.live] = lam
                trace.setdefault("lam", {})[j] = full
            ln = np.minimum(lam[:, :, : r.nrel], 0.0)
            shift = np.einsum("bkn,nb->bk", ln, r.t_l)
            if lam.flags.writeable and 2 * r.nmul <= r.live.size:  # (a strided pass costs more)
                mu = lam
                mu[:, :, : r.nmul] *= r.a_l[:, :, : r.nmul]
            else:
                mu = lam * r.a_l
            mu[:, :, : r.nrel] += np.multiply(ln, r.ds_l, out=ln)
            Mj, cj = r.M_l, r.c_l
        else:  # (optimised slopes and multipliers: μ is not bounded by g·|λ|, charge it here)
            if trace is not None:
                trace.setdefault("lam", {})[j] = lam
            mu, absmu = _lagrangian(lam, r.a, r.s, r.unst, r.off, n, *lagr)
            shift = np.einsum("bkn,nb->bk", np.minimum(lam, 0.0), r.t)
            err += np.einsum("bkn,bn->bk", absmu, r.w)
            _, Mj, _, cj, _ = affs[j]
        const += shift
        err += gamma(n + 1) * (-shift + 2 * np.abs(const))
        const += (mu.reshape(Bk * K, -1) @ cj).reshape(Bk, K)
        err += gamma(n + 1) * np.abs(const)
        lam = (mu.reshape(Bk * K, -1) @ Mj).reshape(Bk, K, -1)
    # (each term one product: the coefficient times the corner coordinate that minimises it)
    val = np.einsum("bkd,bkd->bk", lam, np.where(lam > 0, lo[:, None, :], hi[:, None, :])) + const
    err += gamma(lo.shape[1] + 2) * (np.einsum("bkd,bd->bk", np.abs(lam), xm) + np.abs(const))
    return val - 4 * err - TINY, lam


def _lagrangian(lam, keep_l, s_eff, unst, off, n, alpha, mult, sgn):
    """μ with optimised lower slopes and split multipliers, and the |μ| the error charge uses.

    μ = λ·α where λ >= 0 else λ·s: one product, one rounding (<= u|μ|); then μ' = μ - mult·sgn,
    a second rounding (<= u|μ'|): charging 8u·(|μ| + |μ'|)·max|z| covers both. α is only used on
    unstable neurons (elsewhere the relaxation is exact) and is clipped into [0, 1]."""
    a = keep_l.T[:, None, :]
    if alpha is not None:
        given = np.clip(alpha[:, :, off : off + n], 0.0, 1.0)
        a = np.where(unst.T[:, None, :] & ~np.isnan(given), given, a)
    mu = np.where(lam >= 0, lam * a, lam * s_eff.T[:, None, :])
    if mult is None or sgn is None:
        return mu, np.abs(mu)
    m = np.maximum(mult[:, :, off : off + n], 0.0) * sgn[:, None, off : off + n]
    mu2 = mu - m
    return mu2, np.abs(mu) + np.abs(mu2)
