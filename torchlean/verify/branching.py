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

ReLU splits (``graph_relu``'s search over general graphs) choose an element by ``RELU_CHOICE``:

- "babsr": the unstable, unsplit element with the largest intercept score |λ⁻|·(-l·u/(u - l))
  of the box's best row (what that row pays for the element's upper line);
- "fsb" (filtered smart branching, after alpha-beta-CROWN's): the ``FSB_K`` elements of largest
  intercept score are candidates, and each is scored by its two children's bounds estimated by
  float back-substitutions (``fsb_estimates``: the parent's argument bounds, α and β, with the
  candidate's relaxation replaced by the exact side, identity or zero, and a few multipliers of
  the new split's constraint); the candidate with the largest sum of its children's estimates
  (each at least the parent's bound and at most 0) is split (``fsb_picks``). By default
  (``FSB_LINEAR``) the estimates are first order (``fsb_linear``: one gradient pass of the
  parent's back-substitution for every candidate of a batch, against 2·Q·``FSB_K`` passes per box
  recomputed, which made each subproblem ~1.35x dearer on mnistfc for about the same trees). The
  worse child's estimate (alpha-beta-CROWN's criterion) made larger trees here (bench/README.md,
  "FSB branching").
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .alpha import _relu_intercepts, split_signs


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
    if not pre:  # no ReLU (an affine chain): nothing is relaxed, every score 0 (the caller splits the
        # widest input); reached by a search without the up-front attack (``verify.float32``)
        return np.zeros(width.shape), (coef if signed else np.abs(coef)).astype(float)
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


#: the ReLU-split search's branching choice (``graph_relu``): "fsb" or "babsr" (module docstring)
RELU_CHOICE = "fsb"
#: candidates per box of "fsb" (by the intercept score)
FSB_K = 4
#: the new split's multiplier magnitudes tried by the estimate, in units of |λ| at the element
FSB_Q = (0.0, 1.0)
#: first-order estimates (``fsb_linear``) instead of recomputed ones
FSB_LINEAR = True
#: per fn node kind, the per-box arrays of an ``alpha.Backsub`` op (leading axis: the box)
_PER_BOX = {"fn": ("l", "u", "dl", "du"), "mul": ("lx", "ux", "lw", "uw"),
            "max": ("Alo", "clo", "Aup", "cup")}


def relu_candidates(score: dict[int, np.ndarray], paths: list[dict], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per box, the ``k`` unsplit elements of largest positive score (``score[node]``: (B, size)):
    (node, element) index arrays (B, k), node -1 where a box has fewer such elements. Ties go to
    the earlier node and element (as ``graph_relu``'s "babsr" argmax)."""
    nodes = list(score)
    sizes = [score[n].shape[1] for n in nodes]
    offs = np.concatenate([[0], np.cumsum(sizes)])
    flat = np.concatenate([score[n] for n in nodes], 1).astype(float)
    where = {n: j for j, n in enumerate(nodes)}
    for b, path in enumerate(paths):
        for (n, i) in path:
            if n in where:
                flat[b, offs[where[n]] + i] = -1.0
    k = min(k, flat.shape[1])
    top = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    ok = np.take_along_axis(flat, top, 1) > 0
    which = np.searchsorted(offs, top, side="right") - 1
    node = np.where(ok, np.array(nodes)[which], -1)
    return node, np.where(ok, top - offs[which], 0)


def _gather(bs: Any, idx: np.ndarray) -> Any:
    """A copy of the back-substitution ``bs`` over the boxes ``idx`` (their per-box arrays copied;
    the argument forms shared)."""
    out = copy.copy(bs)
    out.B, out.L, out.U = len(idx), bs.L[idx], bs.U[idx]
    out.ops = []
    for op in bs.ops:
        o = dict(op)
        for key in _PER_BOX[op["kind"]]:
            o[key] = np.array(op[key][idx])
        out.ops.append(o)
    return out


def _slopes(bs: Any, alphas: dict[int, np.ndarray], R: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Every fn node's (lower, upper) slopes (B, R, size) for ``bs.bound``: ``alphas`` the relu
    nodes' lower ones (copied), the defaults elsewhere (other functions' nodes too)."""
    base = bs.default_slopes(R)
    return {k: (np.array(alphas[k]) if k in alphas else lo, up) for k, (lo, up) in base.items()}


def fsb_estimates(bs: Any, lam0: np.ndarray, c0: np.ndarray, alphas: dict[int, np.ndarray],
                  mult: dict[int, np.ndarray], boxes: np.ndarray, node: np.ndarray, elem: np.ndarray,
                  qs: np.ndarray, max_dense: int) -> np.ndarray:
    """The float lower bounds (n, 2, Q, R) of the rows lam0·v + c0 in the two children of each
    candidate split (box ``boxes[c]``, relu node ``node[c]``, element ``elem[c]``; child 0 the
    inactive side, 1 the active one), each by ``bs.bound`` with the parent's argument bounds, lower
    slopes ``alphas`` ((B, R, size) per relu node) and split multipliers ``mult`` ((B, R, size),
    signed), except the candidate's relaxation: argument bounds (l, 0) and slopes 0 (inactive),
    (0, u) and slopes 1 (active), and the new split's multiplier magnitude ``qs[c, q]`` (R,) per
    row (β >= 0 of its constraint; any value gives a bound). A heuristic's estimate (the child's
    own forward pass also tightens the later nodes' bounds). In chunks of at most ``max_dense``
    multiplier entries."""
    R = lam0.shape[-2]
    n, Q = qs.shape[:2]
    out = np.empty((n, 2 * Q, R))
    step = max(1, max_dense // (2 * Q * R * bs.n))
    side = np.repeat([0.0, 1.0], Q)
    for s in range(0, n, step):
        c = np.arange(s, min(n, s + step))
        idx = np.repeat(boxes[c], 2 * Q)
        sd = np.tile(side, len(c))
        q = np.concatenate([qs[c], qs[c]], 1).reshape(-1, R) * (2 * sd - 1)[:, None]  # signed
        sub = _gather(bs, idx)
        sops = {op["k"]: op for op in sub.ops}
        rows = np.arange(len(idx))
        slopes = _slopes(sub, {k: a[idx] for k, a in alphas.items()}, R)
        mu = {k: m[idx] for k, m in mult.items()}
        for k in np.unique(node[c]):
            k = int(k)
            j = rows[np.repeat(node[c] == k, 2 * Q)]
            i = np.repeat(elem[c], 2 * Q)[j]
            o = sops[k]
            o["l"][j, 0, i] = np.where(sd[j] > 0, 0.0, o["l"][j, 0, i])
            o["u"][j, 0, i] = np.where(sd[j] > 0, o["u"][j, 0, i], 0.0)
            for a in slopes[k]:
                a[j, :, i] = sd[j][:, None]
            if k not in mu:
                mu[k] = np.zeros((len(idx), R, o["l"].shape[-1]))
            mu[k][j, :, i] = q[j]
        v, _ = sub.bound(lam0, c0, slopes, mult=mu)
        out[c] = v.reshape(len(c), 2 * Q, R)
    return out.reshape(n, 2, Q, R)


def fsb_linear(bs: Any, lam0: np.ndarray, c0: np.ndarray, alphas: dict[int, np.ndarray],
               mult: dict[int, np.ndarray], boxes: np.ndarray, node: np.ndarray, elem: np.ndarray,
               qs: np.ndarray) -> np.ndarray:
    """``fsb_estimates``' children bounds (n, 2, Q, R) to first order: the parent's bound plus the
    change of the candidate's term (its multiplier λ on the element's output times the line, and
    the new split's multiplier on its argument) times the bound's derivative in the multipliers
    of the element's argument, all from one back-substitution of the parent with its gradient.
    Exact while no other element's line and no input coefficient changes side; otherwise an
    approximation (above the recomputed value in every case of tests/test_fsb_branching.py)."""
    R = lam0.shape[-2]
    slopes = _slopes(bs, alphas, R)
    full = {k: mult.get(k, np.zeros(a.shape)) for k, a in alphas.items()}
    par, g = bs.bound(lam0, c0, slopes, want_grad=True, mult=full)
    ops = {op["k"]: op for op in bs.ops}
    out = np.empty((len(boxes), 2, qs.shape[1], R))
    for k in np.unique(node):
        k = int(k)
        c = np.nonzero(node == k)[0]
        b, i = boxes[c], elem[c]
        lk = bs.lk[k][b, :, i]  # (m, R)
        gm = -g["mult", k][b, :, i]  # d bound / d (multiplier of the element's argument)
        op = ops[k]
        l, u = op["l"][b, 0, i][:, None], op["u"][b, 0, i][:, None]
        aL, aU = slopes[k][0][b, :, i], slopes[k][1][b, :, i]
        bL, bU = _relu_intercepts(l, u, aL, aU)
        coef, icpt = np.where(lk > 0, aL, aU), np.where(lk > 0, bL, bU)
        p = par[b][:, None, :]
        q = qs[c]  # (m, Q, R)
        out[c, 0] = p + (-lk * coef * gm - lk * icpt)[:, None, :] + gm[:, None, :] * q
        out[c, 1] = p + (lk * (1 - coef) * gm - lk * icpt)[:, None, :] - gm[:, None, :] * q
    return out


def fsb_picks(bs: Any, lam0: np.ndarray, c0: np.ndarray, alphas: dict[int, np.ndarray],
              beta: dict[int, np.ndarray], par: np.ndarray, score: dict[int, np.ndarray], paths: list[dict],
              boxes: np.ndarray, max_dense: int, lams: dict[int, np.ndarray], k: int | None = None
              ) -> dict[int, tuple[int, int]]:
    """"fsb"'s split per box of ``boxes`` (module docstring): of its ``k`` candidates by ``score``
    (``relu_candidates``; default ``FSB_K``), the one whose two children have the largest sum of
    estimated bounds (``fsb_estimates`` with the new split's multiplier at ``FSB_Q`` times |λ| of
    the element, ``lams`` (B, R, size) per node; the best multiplier and the best row of each
    child), each estimate taken at least the parent's bound (the child's own β search can always
    fall back to it) and at most 0 (a child proved is proved); the first candidate on ties.
    ``alphas``: the parent's lower slopes, ``beta``: its split multipliers (>= 0, (B, R, size) per
    node), signed here by each box's ``paths``, ``par``: the parent's float bound (B, R) with
    them (``graph_relu._optimise``'s best). Boxes without a candidate are left out."""
    k = FSB_K if k is None else k
    node, elem = relu_candidates({n: v[boxes] for n, v in score.items()}, [paths[b] for b in boxes], k)
    has = node >= 0
    if not has.any():
        return {}
    sgn = split_signs(paths, {kk: bt.shape[2] for kk, bt in beta.items()})
    mult = {kk: bt * sgn[kk] for kk, bt in beta.items()}
    cb, cj = np.nonzero(has)
    lam = np.stack([np.abs(lams[int(n)][boxes[r], :, e]) if n >= 0 else np.zeros(lam0.shape[0])
                    for r, jj in zip(cb, cj) for n, e in [(node[r, jj], elem[r, jj])]])  # (n, R)
    qs = lam[:, None, :] * np.asarray(FSB_Q)[None, :, None]
    if FSB_LINEAR:
        est = fsb_linear(bs, lam0, c0, alphas, mult, boxes[cb], node[cb, cj], elem[cb, cj], qs).max(2)
    else:
        est = fsb_estimates(bs, lam0, c0, alphas, mult, boxes[cb], node[cb, cj], elem[cb, cj], qs,
                            max_dense).max(2)
    ch = np.clip(est.max(2), par.max(1)[boxes[cb]][:, None], None)
    worse = np.full(node.shape, -np.inf)
    worse[cb, cj] = np.minimum(ch, 0.0).sum(1)
    best = worse.argmax(1)
    return {int(boxes[r]): (int(node[r, best[r]]), int(elem[r, best[r]]))
            for r in range(len(boxes)) if has[r, best[r]]}
