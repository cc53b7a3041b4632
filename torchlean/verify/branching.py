"""Input-split branching heuristics: which dimension of an open box to halve.

- "relax" (the default): attribute the relaxation loss to input dimensions. Each unstable ReLU n of
  hidden layer k costs the final bound about |λ_n|·t_n (its coefficient in the back-substitution
  times its relaxation's intercept); its pre-activation range is spread over the inputs in
  proportion to |a_n,i|·w_i (its own back-substitution's input coefficients times the box widths),
  and halving dimension i shrinks that part. The score of i sums those shares (a BaBSR-style
  estimate for inputs). Unlike the gradient of the bound, it sees dimensions whose influence
  cancels in the output but not inside the network: on ACAS Xu 1_1 property 6 the gradient
  heuristic halved four dimensions to 2^-29 of their width while the fifth, flat in the output,
  kept the ReLUs unstable (bench/README.md).

The scores are recomputed from a bound-table forward pass's ReLU argument bounds
(``table_relaxation_scores``); the chain engine's trace they were first read from, and the
"single" and "smart" heuristics that used it, went with that engine (issue 14).
"""

from __future__ import annotations

import numpy as np


def _per_box(rows: np.ndarray, box: np.ndarray, M: np.ndarray) -> np.ndarray:
    """out[p] = M[box[p]] @ rows[p]: one product per box over its rows, instead of gathering a
    (P, d, C) copy of M (the scores' largest cost on ACAS batches of 64 boxes)."""
    out = np.empty((len(box), M.shape[1]), dtype=rows.dtype)
    order = np.argsort(box, kind="stable")
    sb = box[order]
    cut = np.flatnonzero(sb[1:] != sb[:-1]) + 1
    for idx in np.split(order, cut):
        out[idx] = rows[idx] @ M[box[idx[0]]].T
    return out


def table_relaxation_scores(
    weights: list[np.ndarray], pre: list[tuple[np.ndarray, np.ndarray]], rows: np.ndarray, width: np.ndarray,
    signed: bool = False, back: int | None = 2, prune: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """"relax" scores (B, d) recomputed from the bound table's pre-activation bounds, without any
    trace from the engine: ``weights`` are the chain's float matrices W_0..W_L, ``pre`` the certified
    bounds (l, u) (B, n_k) of every hidden ReLU's argument (``fast_engine.forward``'s ``st.arg``),
    ``rows`` (B, n_out) each box's objective row over the outputs, ``width`` (B, d) the box widths.
    Also returns |the relaxed bound's input coefficients| (B, d), the tie-break's gradient (with
    ``signed``, the coefficients themselves: their signs name the corner minimising the bound).

    A heuristic only (it never changes a bound): λ_k is the row's back-substitution through the
    relaxations (μ = λ⁺·α + λ⁻·s), t_k the upper relaxation's intercept, and a neuron's dependence
    on the inputs the coefficients of its own upper and lower back-substitutions, computed for the
    (box, neuron) pairs that are relaxed only (one row each, every box's pairs in one product per
    layer: a neuron relaxed in one box of the batch costs nothing in the others), and only
    ``back`` layers deep (None: all the way): below that, the layer's *forward* linear forms over
    the inputs (DeepPoly's, one (n, n) x (n, d) product per layer) stand in for the rest, which is
    exact while a neuron's layer is at most ``back`` + 1 and looser below (that only moves weight
    between inputs). On ACAS Xu's ReLU-heavy boxes, where most neurons of the deep layers are
    relaxed, the full depth cost about a second CROWN pass; ``back=2`` costs about half of that
    and needed ~5 % fewer leaves on the 31 instances with more than 0.1 s (bench/README.md).
    Neurons whose loss |λ|·t is at most ``prune`` times the largest in their box are left out (each
    score moves by at most the losses left out): 1 % keeps 99.5 % of the split choices on 1_1
    prop_6's batches and a third of the pairs' cost."""
    # (float32: a heuristic needs no more, and it halves the memory traffic of the products)
    back = len(pre) if back is None else back
    weights = [w.astype(np.float32) for w in weights]
    s, a, t = [], [], []
    for lo, up in pre:
        lo, up = lo.astype(np.float32), up.astype(np.float32)
        act, dead = lo >= 0, up <= 0
        unst = ~act & ~dead
        with np.errstate(divide="ignore", invalid="ignore"):
            sk = np.where(unst, np.clip(up / (up - lo), 0.0, 1.0), act.astype(np.float32))
        s.append(np.nan_to_num(sk))
        a.append((act | (unst & (up >= -lo))).astype(np.float32))
        t.append(np.where(unst, np.nan_to_num(-sk * lo), 0.0))
    # the row's multipliers on each layer's outputs first: each relaxed neuron's loss |λ|·t says
    # which neurons' own back-substitutions matter (a neuron whose loss is under ``prune`` times
    # its box's largest adds at most that to any score, and is left out)
    loss, lam = [None] * len(pre), rows.astype(np.float32) @ weights[-1]  # (B, n_last)
    for k in range(len(pre) - 1, -1, -1):
        loss[k] = np.abs(lam) * t[k]
        lam = (np.maximum(lam, 0.0) * a[k] + np.minimum(lam, 0.0) * s[k]) @ weights[k]
    coef = lam
    top = np.max([lk.max(1) for lk in loss], axis=0)[:, None]  # (B, 1)
    B, d = width.shape
    cols = [np.nonzero((sk > 0).any(0) | (ak > 0).any(0))[0] for sk, ak in zip(s, a)]
    forms = [np.broadcast_to(2 * np.abs(weights[0]), (B, *weights[0].shape))]
    # forward lower / upper forms (B, d, n_j) of layer j's ReLU outputs over the inputs
    low = [weights[0].T[None] * a[0][:, None, :]]
    upp = [weights[0].T[None] * s[0][:, None, :]]
    # per layer j, restricted once to its live columns c_j = cols[j] (the pairs' loop below runs
    # over layer j's outputs in exactly those columns): relaxation slopes, the weights into
    # layer j from c_{j-1}, and the forward forms [low | upp] side by side (one gather per pair)
    a_c = [ak[:, c] for ak, c in zip(a, cols)]
    s_c = [sk[:, c] for sk, c in zip(s, cols)]
    w_c = [weights[0][cols[0]]] + [weights[j][np.ix_(cols[j], cols[j - 1])] for j in range(1, len(pre))]
    fwd: dict[int, np.ndarray] = {}
    for k in range(1, len(pre)):
        Wk = weights[k]
        F = np.zeros((B, Wk.shape[0], d), dtype=np.float32)
        bi, ni = np.nonzero(loss[k] > prune * top)  # the (box, neuron) pairs that matter
        if bi.size:  # every pair's upper (-W) and lower (+W) row at once, one product per layer
            box = np.concatenate([bi, bi])
            lam = Wk[np.ix_(ni, cols[k - 1])]
            lam = np.concatenate([-lam, lam])
            for j in range(k - 1, -1, -1):  # lam: over layer j's outputs (columns cols[j])
                pos = lam > 0
                if k - 1 - j == back:  # far enough: that layer's forward forms
                    if j not in fwd:
                        fwd[j] = np.concatenate([low[j][:, :, cols[j]], upp[j][:, :, cols[j]]], 2)
                    both = np.concatenate([np.where(pos, lam, 0.0), np.where(pos, 0.0, lam)], 1)
                    lam = _per_box(both, box, fwd[j])
                    break
                lam = (lam * np.where(pos, a_c[j][box], s_c[j][box])) @ w_c[j]
            lam = np.abs(lam)
            F[bi, ni] = lam[: bi.size] + lam[bi.size:]
        forms.append(F)
        if k >= len(pre) - 1 - back:
            continue  # (no later layer reads these forms)
        WpT, WnT = np.maximum(Wk, 0.0).T, np.minimum(Wk, 0.0).T
        lo2, up2 = low[-1].reshape(B * d, -1), upp[-1].reshape(B * d, -1)
        zl = (lo2 @ WpT + up2 @ WnT).reshape(B, d, -1)
        zu = (up2 @ WpT + lo2 @ WnT).reshape(B, d, -1)
        low.append(zl * a[k][:, None, :])
        upp.append(zu * s[k][:, None, :])
    width = width.astype(np.float32)
    score = np.zeros_like(width)
    for k in range(len(pre) - 1, -1, -1):
        spread = np.abs(forms[k]) * width[:, None, :]
        total = spread.sum(-1, keepdims=True)
        share = np.divide(spread, total, out=np.zeros_like(spread), where=total > 0)
        score += np.einsum("bn,bnd->bd", loss[k], share)
    return score.astype(float), (coef if signed else np.abs(coef)).astype(float)
