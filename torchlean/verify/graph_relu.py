"""Branch and bound over ReLU phases on general graphs (untrusted search; checked output), for
graphs with too many inputs to split (CNNs, ResNets, MNIST MLPs; the ReLU-chain ``relu_bab.py`` it
was the bound-table sibling of went with the chain engine, issue 14).

A subproblem is the region's box with some elements of relu nodes fixed to one side of their kink
(``["relu", node, i]`` splits of ``certificates/graph_vnn.py``). Subproblems are bounded in
batches by the checker's fast engine (``fast_engine.forward`` with the split phases: a split
element's argument bounds are clamped at 0, so its relaxation is exact, and every later node's
CROWN bounds see it). Where that default CROWN bound does not prove the disjunct, two sets of free
parameters are chosen here by projected gradient ascent (Adam) on the float back-substitution of
``alpha.Backsub`` (on relu-only conv graphs ``alpha_targets.NodeBacksub``, the same one per node,
``NODEWISE``):

- the lower slopes α in [0, 1] of the unstable ReLU elements (α-CROWN), and
- multipliers β >= 0 of the split constraints (β-CROWN: f >= f - β·sgn·z on the subproblem's
  region; ``engine.mult_form``),

and the bound with those values is then recomputed by the checker's fast replay's own function
(``fast_vnn.extras_lower``: the same multipliers, the same slopes), so a leaf claims half of a bound the
engine computed. Branching (``branching.RELU_CHOICE``): by default filtered smart branching
(``branching.fsb_picks``) among the few unstable, unsplit elements with the largest BaBSR intercept
score |λ⁻|·(-l·u/(u - l)) of the best row (λ the multiplier the back-substitution meets at the
element's output); where α/β did not run (a batch over its back-substitution's budget: the dense
one's ``alpha.MAX_DENSE`` entries, or ``alpha_targets.MAX_NODEWISE`` multiply-adds node-wise, which
is what sri_resnet_a's ResNet, 1.5x over the dense budget, takes), that score's best.
Each disjunct of a region gets its own tree (``{"per_disjunct": [...]}``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates import fast_engine as fe
from ..certificates.core import OutOfTime, time_limit
from ..certificates.fast_functions import FAST
from ..certificates.fast_vnn import extras_lower, phase_arrays
from ..certificates.graph_vnn import objective_forms
from ..certificates.property import Region
from . import alpha, alpha_targets, branching
from .attack import NEAR, leaf_minimisers
from .tree import SplitTree, choice, combos, proof_extras, threshold

EPS = 1e-300  # any positive bound proves a leaf (general.EPS)
#: counterexample search between batches: at most this share of the search's time (a property the
#: bounds cannot prove may be false; the attack is the caller's, ``general.solve``)
ATTACK_SHARE = 0.3
STEPS = 20  # gradient steps per batch
#: subproblems bounded together. On the dense (fully connected) α/β path, ``BATCH_DENSE`` where
#: the batch's back-substitution stays within ``alpha.MAX_DENSE``: its steps are small products
#: ((B, n) by a layer's matrix) that cost ~1.5x less per box at 64 boxes than at 16 (mnistfc 256x2:
#: 5.5 against 3.5 ms per box for 20 steps; eran 9x200: 15.5 against 9.0), and a batch is only a
#: grouping of the same breadth-first queue (a box's bounds, α/β steps and split do not depend on
#: the other boxes of its batch, up to the products' float rounding, which can tip Adam's steps and
#: so a near-tied split), so the tree is the same or nearly, made faster (bench/README.md, "impfc").
#: Not on the node-wise (conv) path, whose passes are larger and budgeted per batch
#: (``alpha_targets.MAX_NODEWISE``)
BATCH = 16
BATCH_DENSE = 64
#: a box's α/β steps stop early once its bound cannot reach 0 in the steps left: from step
#: ``HOPELESS_FROM`` on, when its best bound (over rows) plus ``HOPE`` times its mean gain per step
#: over the last ``HOPELESS_FROM`` steps, carried over every step left, is still <= 0 (Adam's gains
#: shrink step by step, so that is optimistic). Such a box is split anyway and its steps went to
#: nothing. Only on the node-wise (conv) path, where it was measured: oval21 img6638 at equal CPU
#: 727 subproblems against 679, img5303 the same tree (bench/README.md, "conv30"); from step 5 with
#: HOPE 2 it cut boxes β would have closed (img5303: 287 subproblems, open, against 90, proved).
#: None: every box steps on
HOPELESS_FROM: int | None = 10
HOPE = 4.0
#: a subproblem's α/β start from its parent's best α and β (β-CROWN's warm start: the children of a
#: box share most of its unstable elements and splits), not from the default slopes and β = 0.
#: Measured better on the node-wise (conv) path (oval21 img6638: 415 leaves against 662;
#: sri_resnet_a idx 5594 unsat in 57.5 s against 82.3 s; bench/README.md, "impoval"). On the dense
#: (fully connected) path the warm α gives better bounds too (mnistfc 256x4 prop_0_0.03: higher on
#: 86 % of the boxes, 49 % proved against 34 %), but the branching scores (BaBSR's λ, FSB's) read
#: at the warm slopes chose worse splits there (2,250 subproblems in 60 s, open, against 547 and
#: proved cold; warm β alone: the same tree as cold), so on that path the scores' λ is taken at
#: the default slopes and β = 0, as cold (``_optimise``'s ``lam_default``): 517 subproblems
#: against 547 (batches of 16), and 2,087 against 2,271 on 256x2 prop_1_0.03 (bench/README.md, "impfc")
WARM = True
#: the branching scores' λ at the default slopes (``lam_default``) on the node-wise (conv) path
#: too (the dense path: always). Off: there it was worse, the opposite of the dense path (oval21
#: img6638: 1,247 subproblems against 827 with λ at the warm slopes; sri_resnet_a 5594: 98 against
#: 94; img5303, img4720 the same trees; img4631, img19 open at 100 s on both), and the loss is
#: BaBSR's score (which picks FSB's candidates) read at the default slopes: 1,269 subproblems,
#: against 843 with FSB's estimates alone at them (bench/README.md, "impconv")
LAM_DEFAULT_NODEWISE = False
DIGITS = 5  # significant digits of a recorded β (any value >= 0 is sound)

Phases = dict[tuple[int, int], int]


def relu_nodes(bg: Any) -> list[int]:
    """The relu nodes of the graph (the splittable elements this search branches on)."""
    return [k for k, n in enumerate(bg.nodes) if n.kind == "fn" and n.fn == "relu"]


class Disjunct:
    """One disjunct of a region: its objective rows (every combination of its atoms), exact and as
    floats, as the checker builds them (``graph_vnn.objective_forms``)."""

    def __init__(self, bg: Any, region: Region, j: int):
        self.region = Region(region.lo, region.hi, (region.disjuncts[j],), region.lo_strict, region.hi_strict)
        self.names = combos(len(region.disjuncts[j]))
        forms, index = objective_forms(bg, self.region, [self.names])
        self.forms = [forms[index[0][c]] for c in self.names]
        self.F = fe.forms_of(bg, self.forms)
        self.lam0, self.c0 = alpha._dense(self.forms, bg.n_vars)


Arrays = dict[int, np.ndarray]


def _optimise(bs: alpha.Backsub, dj: Disjunct, relus: list[int], st: Any, paths: list[Phases],
              steps: int, deadline: float = float("inf"), hopeless: int | None = None,
              stats: dict[str, Any] | None = None, warm: list[Any] | None = None,
              lam_default: bool = False) -> tuple[np.ndarray, Arrays, Arrays, Arrays]:
    """α (lower slopes) and β (split multipliers) per box and row by Adam on the float bound.
    Returns the best float bound (B, R), the best α and β per relu node (B, R, size), and the
    multipliers λ (B, R, size) met at each relu node's output under the starting slopes (with
    ``lam_default``, under the default slopes and β = 0 whatever the warm start: ``WARM``).
    ``hopeless``: from that step on, a box whose bound cannot reach 0 at its pace (``HOPE``) stops
    stepping (``HOPELESS_FROM``); ``stats["hopeless"]`` counts them. ``warm``: per box, None or
    its parent's best (α, β) (``WARM``: the start of its α on the elements unstable in the box,
    and of its β on the parent's split elements; any α in [0, 1] and β >= 0 is valid, and the
    bound claimed is recomputed by the checker's function anyway)."""
    B, R = bs.B, dj.lam0.shape[0]
    slopes = bs.default_slopes(R)
    sgn = alpha.split_signs(paths, {k: _size(bs, k) for k in relus})
    split = [k for k in relus if (sgn[k] != 0).any()]
    unstable = {k: (st.arg[k][0] < 0)[:, None, :] & (st.arg[k][1] > 0)[:, None, :] for k in relus}
    beta = {k: np.zeros((B, R, _size(bs, k))) for k in split}
    for b, w in enumerate(warm or ()):
        if w is None:
            continue
        wa, wb = w
        for k in relus:
            if k in wa:
                slopes[k][0][b] = np.where(unstable[k][b], np.clip(wa[k], 0.0, 1.0), slopes[k][0][b])
        for k in split:
            if k in wb:
                beta[k][b] = np.where(sgn[k][b] != 0, np.maximum(wb[k], 0.0), 0.0)
    # the columns Adam steps: of verivital's one-layer conv net's 23,328 relu elements 4,489 are
    # unstable at the root (fewer below), and full-width steps were a fifth of its α/β time
    # (bench/README.md, "eran30"); the other columns' slopes and β never move
    ucols = {k: np.nonzero(unstable[k].any((0, 1)))[0] for k in relus}
    scols = {k: np.nonzero((sgn[k] != 0).any((0, 1)))[0] for k in split}
    best_v = np.full((B, R), -np.inf)
    best_a = {k: slopes[k][0].copy() for k in relus}
    best_b = {k: v.copy() for k, v in beta.items()}
    moments: dict[Any, list[Any]] = {}
    lam: dict[int, np.ndarray] = {}
    # the boxes still stepped: one proved (some row's bound > EPS) keeps its best α and β, and
    # the steps go on over the others only (a third of a batch's box-steps on mnistfc were
    # spent on boxes already proved); ``bs.coef`` gets the last bound's rows of every box
    act, sub, coef = np.arange(B), bs, None
    trail = []  # per step, every box's best bound over its rows (the pace of ``hopeless``)
    if lam_default and any(w is not None for w in warm or ()):  # (the cold start's λ: ``WARM``)
        bs.bound(dj.lam0, dj.c0, bs.default_slopes(R))
        lam = dict(bs.lk)

    for it in range(steps + 1):
        mult = {k: (beta[k] * sgn[k])[act] for k in split}
        sl = slopes if sub is bs else {k: (a[act], u[act]) for k, (a, u) in slopes.items()}
        v, g = sub.bound(dj.lam0, dj.c0, sl, want_grad=True, mult=mult)
        if it == 0 and not lam:
            lam = dict(bs.lk)
        better = np.zeros((B, R), bool)
        better[act] = v > best_v[act]
        best_v[act] = np.where(better[act], v, best_v[act])
        for k in relus:
            best_a[k] = np.where(better[..., None], slopes[k][0], best_a[k])
        for k in split:
            best_b[k] = np.where(better[..., None], beta[k], best_b[k])
        if coef is not None and sub.coef is not None:
            coef[act] = sub.coef
        if it == steps or (best_v > EPS).any(1).all() or time.perf_counter() > deadline:
            break
        for k in relus:
            if k in g:  # (Adam on the columns unstable in some box only: the others keep their slope)
                c = ucols[k]
                old = slopes[k][0][act][..., c]
                a = alpha.adam_step(moments, ("a", k), old, g[k][0][..., c], 0.1, it + 1)
                a = np.where(unstable[k][act][..., c], np.clip(a, 0.0, 1.0), old)
                slopes[k] = (_put_cols(slopes[k][0], act, c, a), slopes[k][1])
        for k in split:  # (and β on the columns split in some box)
            c = scols[k]
            gb = g["mult", k][..., c] * sgn[k][act][..., c]
            b = alpha.adam_step(moments, ("b", k), beta[k][act][..., c], gb, 0.05, it + 1)
            beta[k] = _put_cols(beta[k], act, c, np.where(sgn[k][act][..., c] != 0, np.maximum(b, 0.0), 0.0))
        keep = ~(best_v[act] > EPS).any(1)
        trail.append(best_v.max(1))
        if hopeless is not None and it >= hopeless:
            gain = (trail[-1] - trail[-1 - hopeless]) / hopeless
            cut = (trail[-1] + HOPE * np.maximum(gain, 0.0) * (steps - it) <= EPS)[act] & keep
            keep &= ~cut
            if stats is not None:
                stats["hopeless"] = stats.get("hopeless", 0) + int(cut.sum())
        if not keep.any():
            break
        if not keep.all():
            act = act[keep]
            sub = bs.take(act)
            moments = {key: [m if np.ndim(m) == 0 else m[keep] for m in mv] for key, mv in moments.items()}
            if coef is None and bs.coef is not None:
                coef = bs.coef.copy()
    if coef is not None:
        bs.coef = coef
    return best_v, best_a, best_b, lam


def _put_cols(x: np.ndarray, idx: np.ndarray, cols: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A copy of x with rows ``idx`` set to v on the columns ``cols`` (last axis)."""
    out = np.array(x)
    out[np.ix_(idx, np.arange(x.shape[1]), cols)] = v
    return out


def _size(bs: alpha.Backsub, k: int) -> int:
    return bs.bg.nodes[k].size


def _q(v: float) -> Fraction:
    return Fraction(f"{v:.{DIGITS}g}")


def _extras(bs: alpha.Backsub, relus: list[int], st: Any, b: int, r: int, a: dict[int, np.ndarray],
            beta: dict[int, np.ndarray], path: Phases) -> tuple[dict[str, list], dict[int, Any], dict]:
    """Row r of box b's proof extras (α of unstable elements where not the default, β > 0 on
    split elements), the engine's float slopes for it ((1, size), NaN = default) and the exact
    multipliers."""
    slopes, fslopes = [], {}
    dflt = {op["k"]: op["dl"] for op in bs.ops if op["kind"] == "fn"}
    for k in relus:
        al, au = st.arg[k][0][b], st.arg[k][1][b]
        unst = np.nonzero((al < 0) & (au > 0) & (a[k][b, r] != dflt[k][b, 0]))[0]
        row = np.full(bs.bg.nodes[k].size, np.nan)
        for i in unst:
            q = float(np.float32(a[k][b, r, i]))
            row[i] = q
            slopes.append([k, int(i), str(Fraction(q)), None])
        if unst.size:
            fslopes[k] = (row[None], None)
    mult = {}
    for (k, i), _ in path.items():
        if k in beta and beta[k][b, r, i] > 0:
            q = _q(float(beta[k][b, r, i]))
            if q > 0:
                mult[k, i] = q
    return proof_extras(slopes, mult), fslopes, mult


def _engine_bounds(bg: Any, st: Any, dj: Disjunct, cands: list[tuple[int, int, dict, dict]]) -> list[float]:
    """Per candidate (box b, row r, float slopes, exact multipliers, path): the bound the checker's
    fast replay computes for that proof (``fast_vnn.extras_lower``, the same function), all in one
    batch over the batch's forward state (a box's bounds do not depend on its batch:
    ``fast_engine.forward``; the claim is half the bound, which absorbs a different summation
    order)."""
    slopes: dict[int, Any] = {}
    for c, (_, _, fsl, _, _) in enumerate(cands):
        for k, (row, _) in fsl.items():
            slopes.setdefault(k, (np.full((len(cands), row.shape[1]), np.nan), None))[0][c] = row[0]
    low = extras_lower(bg, dj.F, st, [(b, r, mult, path) for b, r, _, mult, path in cands], slopes or None)
    return [float(v) for v in low]


#: (until, starts, sub, pre) -> a confirmed counterexample or None; starts: points (P, n_in) to
#: start PGD from (only those), or None; sub: the sub-region to attack (the disjuncts the root
#: bounds leave open), or None for the whole property; pre: the attack before the proof search
#: (``general.solve``'s hunt)
Attack = Callable[..., "list[Fraction] | None"]


def bab_disjunct(bg: Any, region: Region, j: int, deadline: float, stats: dict[str, Any],
                 batch: int | None = None, steps: int = STEPS, box: Any = None, attack: Attack | None = None,
                 root: Any = None, shared: dict[int, Any] | None = None) -> list[Any] | None:
    """A preorder ReLU-split tree whose leaves each prove some combination of disjunct j's atoms
    violated on their region, a counterexample ``attack`` found and confirmed between batches (a
    list of Fractions), or None (deadline, or a subproblem with every unstable element split that
    is still not proved). ``box``: the region's float box (``fast_engine.boxes``), if known;
    ``root``: its forward state without splits, if known (the first batch is that box alone: a
    ResNet's pass costs seconds)."""
    fg = fe.compiled(bg)
    dj = Disjunct(bg, region, j)
    relus = relu_nodes(bg)
    lo, hi = box if box is not None else fe.boxes([region.lo], [region.hi])
    # (relu-only conv graphs: the same float back-substitution per node, 2.5-12x faster there,
    # under its own budget: it builds no dense matrix, so ``alpha.MAX_DENSE`` does not gate it;
    # not under "fsb" with recomputed estimates, whose ``branching._gather`` copies a Backsub)
    nodewise = NODEWISE and relu_only(bg) and not fully_connected(bg) and (
        branching.FSB_LINEAR or branching.RELU_CHOICE != "fsb")
    use_alpha = (nodewise or alpha.dense_size(bg) <= alpha.MAX_DENSE) and all(
        n.kind != "fn" or n.fn in FAST for n in bg.nodes)
    # a batch's α/β runs within its back-substitution's budget: entries of the dense multipliers,
    # or multiply-adds of a node-wise pass
    per_row, cap = (alpha_targets.nodewise_size(fg), alpha_targets.MAX_NODEWISE) if nodewise else \
        (bg.n_vars, alpha.MAX_DENSE)
    if batch is None:  # (``BATCH``; ``BATCH_DENSE`` on the dense α/β path, within its budget)
        dense = use_alpha and not nodewise
        batch = max(BATCH, min(BATCH_DENSE, cap // (len(dj.forms) * per_row))) if dense else BATCH
    tree = SplitTree()
    # (tree node, split path, parent: (its batch's state, row, the split node) or None for the root)
    queue: list[tuple[int, Phases, Any]] = [(0, {}, None)]
    warm: dict[int, Any] = {}  # tree node -> its parent's best (α, β) of the box's row (``WARM``)
    last_dt, began = 0.0, time.perf_counter()
    minimisers: np.ndarray | None = None  # the last batch's open subproblems' bound minimisers
    base = deadline
    while queue:
        start = time.perf_counter()
        deadline = search_deadline(base, stats)
        if start + last_dt > deadline:
            return None
        # (the call gets what is left of the share, at most 1 s: a 1-s call after a first batch
        # of 0.1 s once cost as much as the whole proof of an easy disjunct)
        allowed = attack_share(stats) * (start - began) - stats.get("attack_s", 0.0)
        if attack is not None and allowed > 0.05:
            before = stats.get("attack_margin", {}).get("best")
            if minimisers is not None:  # PGD on this disjunct from where the open bounds point
                x, minimisers = attack(min(deadline, start + min(1.0, allowed)), minimisers, dj.region), None
            else:  # and every other call restarts from random points of the whole property
                x = attack(min(deadline, start + min(1.0, allowed)), None)
            stats["attack_s"] = stats.get("attack_s", 0.0) + time.perf_counter() - start
            if x is not None:
                return x
            _note_stall(stats, before)
            start = time.perf_counter()
        part, queue = queue[:batch], queue[batch:]
        B = len(part)
        paths = [p for _, p, _ in part]
        blo, bhi = np.repeat(lo, B, 0), np.repeat(hi, B, 0)
        if root is not None and B == 1 and not paths[0]:
            st = root
        else:
            def fwd(f: Any, lo: Any, hi: Any, ph: Any, prior: Any, dl: float = deadline) -> Any:
                return _forward(f, lo, hi, ph, dl, prior, shared)

            st = children(fg, blo, bhi, phase_arrays(bg, paths), [p for *_, p in part], fwd)
            if st is None:
                return None
        lb = _until(deadline, lambda st=st: fe.bound_forms(st, dj.F))
        if lb is None:
            return None
        stats["subproblems"] = stats.get("subproblems", 0) + B
        done = lb.max(1) > EPS
        score = {k: np.maximum(-st.arg[k][0], 0) * np.maximum(st.arg[k][1], 0)
                 / np.maximum(st.arg[k][1] - st.arg[k][0], 1e-30) for k in relus}  # triangle heights
        proofs: dict[int, list[Any]] = {}
        a: Arrays | None = None  # (the batch's best α and β, where α/β ran)
        fsb: dict[int, tuple[int, int]] = {}  # the "fsb" branching's picks (``branching``)
        for b in np.nonzero(done)[0]:
            r = int(lb[b].argmax())
            proofs[b] = [choice(dj.names[r]), threshold(lb[b, r])]
        if use_alpha and not done.all() and B * len(dj.forms) * per_row <= cap:
            bs = alpha_targets.NodeBacksub(fg, st) if nodewise else alpha.Backsub.from_fast(bg, fg, st, FAST)
            val, a, beta, lam = _optimise(bs, dj, relus, st, paths, steps, deadline,
                                          HOPELESS_FROM if nodewise else None, stats,
                                          [warm.pop(node, None) for node, _, _ in part] if WARM else None,
                                          lam_default=LAM_DEFAULT_NODEWISE or not nodewise)
            best_r = val.argmax(1)
            if attack is not None and (~done).any():  # (bs.coef: the last bound's input coefficients)
                coef = bs.coef[np.arange(B), best_r, :bg.n_in][~done]
                minimisers = leaf_minimisers(blo[~done], bhi[~done], coef)
            for k in relus:  # BaBSR: what the best row pays for the element's upper line
                score[k] = score[k] * np.abs(np.minimum(lam[k][np.arange(B), best_r], 0.0))
            cands = []
            for b in np.nonzero(~done & (val.max(1) > EPS))[0]:
                r = int(best_r[b])
                ex, fsl, mult = _extras(bs, relus, st, b, r, a, beta, paths[b])
                cands.append((int(b), r, fsl, mult, paths[b], ex))
            if cands:
                got = _engine_bounds(bg, st, dj, [c[:5] for c in cands])
                for (b, r, _, _, _, ex), g in zip(cands, got):
                    if g > EPS:
                        proof = [choice(dj.names[r]), threshold(g)]
                        proofs[b] = proof + [ex] if ex else proof
                        stats["beta_leaves"] = stats.get("beta_leaves", 0) + 1
            open_b = np.array([b for b in range(B) if b not in proofs], dtype=int)
            if branching.RELU_CHOICE == "fsb" and open_b.size:
                fsb = branching.fsb_picks(bs, dj.lam0, dj.c0, a, beta, val, score, paths, open_b,
                                          alpha.MAX_DENSE, lam)
        for b, (node, path, _) in enumerate(part):
            if b in proofs:
                tree.nodes[node] = ("leaf", [proofs[b]])
                stats["leaves"] = stats.get("leaves", 0) + 1
                continue
            best, pick = 0.0, fsb.get(b)
            for k in relus if pick is None else ():
                s = score[k][b].copy()
                s[[i for (kk, i) in path if kk == k]] = -1.0
                i = int(s.argmax())
                if s[i] > best:
                    best, pick = float(s[i]), (k, i)
            if pick is None:  # every unstable element split, or none: no split can help
                unst = [(k, int(i)) for k in relus
                        for i in np.nonzero((st.arg[k][0][b] < 0) & (st.arg[k][1][b] > 0))[0]
                        if (k, int(i)) not in path]
                if not unst:
                    return None
                pick = unst[0]
            ia, ib = tree.split_relu(node, *pick)
            if WARM and a is not None:  # (both children start from the box's best α, β)
                warm[ia] = warm[ib] = ({k: v[b] for k, v in a.items()}, {k: v[b] for k, v in beta.items()})
            queue += [(ia, {**path, pick: 0}, (st, b, pick[0])), (ib, {**path, pick: 1}, (st, b, pick[0]))]
            stats["splits"] = stats.get("splits", 0) + 1
        slim(st)
        last_dt = time.perf_counter() - start
    return tree.preorder()


#: the attack's share once it has stalled: ``STALL`` calls in a row that did not lower the best
#: float margin any attack reached (``stats["attack_margin"]``, kept by the caller's attack) by
#: ``IMPROVE`` of the box centre's margin, unless that best margin is within ``attack.NEAR`` of the
#: centre's. PGD from the open subproblems' bound minimisers then keeps ending
#: in the minima it found before (mnistfc: every unsolved instance's best margin is nearly reached
#: in the pre-search and hardly lowered after; h-phase, h-mnist3: thousands of restarts end in the
#: same few minima), and the time goes to the proof search; an improvement restores ``ATTACK_SHARE``.
ATTACK_SHARE_STALLED = 0.1
STALL = 8
IMPROVE = 0.01


def stalled(stats: dict[str, Any]) -> bool:
    """Whether the attack alongside the search has stalled (``ATTACK_SHARE_STALLED``'s rule)."""
    rec = stats.get("attack_margin") or {}
    best, centre = rec.get("best"), rec.get("centre")
    if best is None or centre is None or not centre > 0 or best <= NEAR * centre:
        return False
    return stats.get("attack_stall", 0) >= STALL


def attack_share(stats: dict[str, Any]) -> float:
    """The share of the search's time the attack between batches may use."""
    return ATTACK_SHARE_STALLED if stalled(stats) else ATTACK_SHARE


def search_deadline(deadline: float, stats: dict[str, Any]) -> float:
    """The proof search's deadline: ``deadline``, or, once the attack has stalled, the caller's
    ``stats["attack_end"]`` if later (the end of the time it held back for a last attack,
    ``general.solve``'s ``RELU_ATTACK_SHARE``, which the stalled attack would not use better)."""
    return max(deadline, stats.get("attack_end", deadline)) if stalled(stats) else deadline


def _note_stall(stats: dict[str, Any], before: float | None) -> None:
    """Count the attack calls in a row that did not lower the best float margin (``STALL``)."""
    rec = stats.get("attack_margin") or {}
    after, centre = rec.get("best"), rec.get("centre")
    if after is None or centre is None:
        return
    gained = before is None or after < before - IMPROVE * abs(centre)
    stats["attack_stall"] = 0 if gained else stats.get("attack_stall", 0) + 1


def _forward(fg: Any, lo: np.ndarray, hi: np.ndarray, phases: Any, deadline: float,
             prior: Any = None, shared: dict[int, Any] | None = None) -> Any:
    """``fast_engine.forward`` (CROWN, from ``prior``) stopped at ``deadline`` (a
    ``time.perf_counter`` time), or None past it: one batch of a ResNet's subproblems can take
    minutes on a loaded machine, and the previous batch's time (the estimate the loop checks) can
    be far shorter."""
    return _until(deadline, lambda: fe.forward(fg, lo, hi, "crown", phases, prior=prior, slopes=shared))


def _until(deadline: float, f: Callable[[], Any]) -> Any:
    """f() stopped at ``deadline`` (a ``time.perf_counter`` time; the engines' loops ``tick``), or
    None past it (a batch's bound of the objective rows takes seconds on a ResNet too)."""
    try:
        with time_limit(time.monotonic() + (deadline - time.perf_counter())):
            return f()
    except OutOfTime:
        return None


def prior_of(parents: list[Any]) -> Any:
    """``fast_engine.forward``'s prior for subproblems made by ReLU splits, from their parents
    ((state, row, split node) each; None: a root, bounded from scratch). The checker's replay
    starts each such child from its parent's state the same way (``fast_vnn``, ``graph_vnn``):
    nodes before the split node keep the parent's bounds, the split node its parent's argument
    bounds (clamped by the split: recomputing them would give the parent's back, 3.3 s of a 3.7 s
    batch of 16 oval21 children split in the second conv layer), later ones are intersected."""
    if parents[0] is None:
        return None
    return fe.gather([(s, b) for s, b, _ in parents]), np.array([k for *_, k in parents])


def children(fg: Any, lo: np.ndarray, hi: np.ndarray, phases: Any, parents: list[Any],
             forward: Callable[..., Any] | None = None) -> Any:
    """The forward state of a batch of subproblems (``parents`` as ``prior_of``'s; all None: root
    boxes): one ``forward(fg, lo, hi, phases, prior)`` (default: ``fast_engine.forward``'s CROWN)
    per split node, its boxes from that node on (``prior_of``), gathered back in the batch's
    order (None if a call returned None). One call for a batch whose children were split at
    different nodes would recompute every node from the earliest split node on for every box (the
    engine's rows are the union over its boxes) and then drop what a box keeps from its parent
    (the checker's replay groups its chunks by split node the same way); a box's bounds do not
    depend on the other boxes of its call (``fast_engine.forward``), so the groups' states are the
    batch's."""
    if forward is None:
        def forward(fg: Any, lo: Any, hi: Any, ph: Any, prior: Any) -> Any:
            return fe.forward(fg, lo, hi, "crown", ph, prior=prior)
    if parents[0] is None:
        return forward(fg, lo, hi, phases, None)
    start = np.array([k for *_, k in parents])
    groups = [np.nonzero(start == k)[0] for k in np.unique(start)]
    if len(groups) == 1:
        return forward(fg, lo, hi, phases, prior_of(parents))
    where: list[tuple[Any, int]] = [(None, 0)] * len(parents)
    for g in groups:
        ph = None if phases is None else {k: a[g] for k, a in phases.items()}
        st = forward(fg, lo[g], hi[g], ph, prior_of([parents[b] for b in g]))
        if st is None:
            return None
        for j, b in enumerate(g):
            where[b] = (st, j)
    return fe.gather(where)


def slim(st: Any) -> None:
    """Drop a forward state's caches (views, charges, lines; rebuilt on use) once its batch is
    done: the queued children keep their parents' states for their bounds alone."""
    st.memo.clear()
    st.relax = [{} for _ in st.relax]


#: (deadline) -> None, or (the region's root-only entry, whether the checker accepted it, the
#: forward states its replay computed): ``general.verify_target``'s ``table.root_check``
RootCheck = Callable[[float], Any]


def bab_region(bg: Any, region: Region, deadline: float, stats: dict[str, Any],
               attack: Attack | None = None, root_check: RootCheck | None = None) -> Any:
    """The region's certificate entry ``{"per_disjunct": [tree, ...]}``, a confirmed counterexample
    (a list of Fractions, from ``attack``), or None. The root box is bounded once for every
    disjunct; only the disjuncts it leaves open are searched. ``root_check``: first let the
    checker replay the root-only certificate; accepted, its entry is the answer (the caller holds
    the checker's verdict), rejected, the replay's own root state is this search's root bounds
    (where it ran in fast mode: one root pass instead of two, bench/README.md "h-rootcheck")."""
    if any(not d for d in region.disjuncts):
        return None
    box = fe.boxes([region.lo], [region.hi])
    t0 = time.perf_counter()
    st = None
    got = root_check(deadline) if root_check is not None else None
    if got is not None:
        entry, ok, states = got
        stats["root_check_s"] = time.perf_counter() - t0
        if ok:  # (the root leaves are not counted in stats["leaves"], as below)
            return entry
        from .table import root_state

        st = root_state(states, *box)
        stats["root_from_check"] = st is not None
    if st is None:
        st = _forward(fe.compiled(bg), *box, None, deadline)
    if st is None:
        return None
    stats["root_s"] = time.perf_counter() - t0
    djs = [Disjunct(bg, region, j) for j in range(len(region.disjuncts))]
    lbs = [fe.bound_forms(st, d.F)[0] for d in djs]  # (the root's lower bounds, per disjunct row)
    opens = [d for d, lb in zip(djs, lbs) if lb.max() <= EPS]
    shared: dict[int, Any] = {}
    if use_shared(bg) and opens:
        # α on the intermediate bounds: shared slopes for every back-substitution of the region,
        # carried in the certificate (``"arg_slopes"``); at most SHARED_SHARE of what is left
        stop_at = time.perf_counter() + SHARED_SHARE * (deadline - time.perf_counter())
        shared, st2 = alpha.shared_slopes(bg, fe.compiled(bg), box, st, opens, djs,
                                          lambda f: _until(min(deadline, stop_at), f),
                                          lambda: time.perf_counter() > stop_at)
        lbs2 = [fe.bound_forms(st2, d.F)[0] for d in djs] if shared else []
        # kept only where they close a disjunct at the root: fixed at the root's optimum, they
        # are no better than the default (adaptive) slopes in the ReLU splits' subproblems, and
        # made oval21's img5303 search slower (bench/README.md, "α on intermediate bounds")
        if shared and sum(lb.max() <= EPS for lb in lbs2) < len(opens):
            st, lbs = st2, lbs2
            stats["shared_slopes"] = sum(int((~np.isnan(a)).sum()) for a, _ in shared.values())
        else:
            shared = {}
    trees: list[Any] = [_root_leaf(dj, lb) for dj, lb in zip(djs, lbs)]
    root = [float(lb.max()) for lb in lbs]
    # the open disjuncts, loosest root bound first: an unsat region needs every one proved (the
    # order changes only when the time is spent), while a counterexample is likelier where the
    # bound is furthest below 0, and a search that proves the others first may never get there
    open_ = sorted((j for j, tr in enumerate(trees) if tr is None), key=lambda j: root[j])
    if attack is not None and open_:  # a disjunct the root bound refutes has no counterexample
        sub = Region(region.lo, region.hi, tuple(region.disjuncts[j] for j in open_), region.lo_strict,
                     region.hi_strict)
        x = attack(min(deadline, time.perf_counter() + 1.0), None, sub, True)
        if x is not None:
            return x
        # then PGD from the root bound's own minimisers of every open disjunct at once (a point
        # that minimises one disjunct's bound is often a start towards another's counterexample)
        starts = root_corners(bg, st, [Disjunct(bg, region, j) for j in open_], box)
        if starts is not None:
            x = attack(min(deadline, time.perf_counter() + 1.0), starts, sub)
            if x is not None:
                return x
    fc = fully_connected(bg)
    if PER_TARGET and open_ and (use_shared(bg) and fc or conv_targets(bg, fc)):  # (after the
        st, lbs, shared = _per_target(bg, box, st, djs, lbs, shared, deadline, stats, not fc)  # attacks)
        trees = [tr or _root_leaf(dj, lb) for tr, dj, lb in zip(trees, djs, lbs)]
        open_ = [j for j in open_ if trees[j] is None]
    for j in open_:
        trees[j] = bab_disjunct(bg, region, j, deadline, stats, box=box, attack=attack, root=st,
                                shared=shared)
        if trees[j] is None or (trees[j] and isinstance(trees[j][0], Fraction)):
            return trees[j]
    return {"per_disjunct": trees, "arg_slopes": alpha.shared_entries(shared)} if shared else \
        {"per_disjunct": trees}


def _root_leaf(dj: Disjunct, lb: np.ndarray) -> list[Any] | None:
    """A one-leaf tree proving the disjunct by its best root row's bound ``lb``, or None (open)."""
    r = int(lb.argmax())
    return [["leaf", [[choice(dj.names[r]), threshold(lb[r])]]]] if lb[r] > EPS else None


#: the subproblems' α/β on relu-only conv graphs by ``alpha_targets.NodeBacksub`` (False:
#: ``alpha.Backsub``, as on every other graph)
NODEWISE = True
#: share of the search's remaining time the root's shared slopes may take (``alpha.shared_slopes``)
SHARED_SHARE = 0.1
#: and the per-target ones (``alpha_targets.target_slopes``)
TARGET_SHARE = 0.15
#: and on convolutional graphs (``alpha_targets.conv_target_slopes``; 0: none there). Off: at 0.1
#: oval21's root shortfall fell 2-6%, closing no disjunct, and the subproblems that inherit the
#: slopes were slower (img5303 unsat in 59.9 s against 47.9 s without, same run; bench/README.md)
CONV_TARGET_SHARE = 0.0
PER_TARGET = True  # (False: no per-target slopes; bench/bench_target_slopes.py --search compares the two)


def _per_target(bg: Any, box: Any, st: Any, djs: list[Disjunct], lbs: list[Any], shared: dict[Any, Any],
                deadline: float, stats: dict[str, Any], conv: bool = False
                ) -> tuple[Any, list[Any], dict[Any, Any]]:
    """α per (relu node, target node) on the root's intermediate bounds (``alpha_targets``'s
    ``target_slopes``, at most TARGET_SHARE of what is left; ``conv``: ``conv_target_slopes``, at
    most CONV_TARGET_SHARE, its optimiser stopping in time for its one forward pass, which costs
    about what the root's did: ``stats["root_s"]``), added to ``shared`` (the certificate's
    ``arg_slopes`` with a target) where the disjuncts' total shortfall below 0 at the root went
    down; the subproblems' forward passes reuse them (valid anywhere; a child's bounds are also
    intersected with its parent's). Returns the root state, its bounds and the slopes kept."""
    now = time.perf_counter()
    stop_at = now + (CONV_TARGET_SHARE if conv else TARGET_SHARE) * (deadline - now)
    fg = fe.compiled(bg)

    def run(f: Callable[[], Any]) -> Any:
        return _until(min(deadline, stop_at), f)

    if conv:
        opt_stop = stop_at - 1.5 * stats.get("root_s", 0.0)
        if opt_stop <= now:
            return st, lbs, shared
        got, st2 = alpha_targets.conv_target_slopes(bg, fg, box, st, shared, run,
                                                    lambda: time.perf_counter() > opt_stop)
    else:
        got, st2 = alpha_targets.target_slopes(bg, fg, box, st, shared, run,
                                               lambda: time.perf_counter() > stop_at)
    if len(got) == len(shared):
        return st, lbs, shared
    lbs2 = [fe.bound_forms(st2, d.F)[0] for d in djs]
    if sum(min(lb.max(), 0.0) for lb in lbs2) <= sum(min(lb.max(), 0.0) for lb in lbs):
        return st, lbs, shared
    stats["target_slopes"] = sum(int((~np.isnan(a)).sum()) for key, (a, _) in got.items()
                                 if type(key) is tuple)
    return st2, lbs2, got


def use_shared(bg: Any) -> bool:
    """Whether the root's shared slopes are optimised: relu-only graphs within the dense float
    back-substitution's budget (``alpha.MAX_DENSE``: ``shared_slopes`` runs ``Backsub``). (The ResNet of
    sri_resnet_a, 1.5x over it, gains at the root, but a round of the optimiser costs 10-60 s
    there: with half the time it delayed a proof the ReLU splits find in 20 s, bench/README.md.)"""
    return relu_only(bg) and alpha.dense_size(bg) <= alpha.MAX_DENSE


def conv_targets(bg: Any, fc: bool) -> bool:
    """Whether the root's per-target slopes are optimised node-wise (``alpha_targets``'s
    ``NodeBacksub``): relu-only graphs with two or more relu nodes that are not fully connected
    (``fc``), when CONV_TARGET_SHARE gives them time, within ``use_shared``'s budget. (The ResNet of
    sri_resnet_a, over it: 1-2% of the root shortfall for 50-350 s, bench/README.md.)"""
    return CONV_TARGET_SHARE > 0 and not fc and use_shared(bg) and len(relu_nodes(bg)) > 1


def fully_connected(bg: Any) -> bool:
    """Whether there are two or more relu nodes and each one's argument forms read at least half
    of the variables in their span (fully connected layers, as mnistfc's): where CROWN's
    intermediate bounds blow up with depth and the per-target slopes paid; on conv nets (oval21)
    they cost 3-100 s for a few per cent of the root bound (bench/README.md)."""
    relus = relu_nodes(bg)
    for k in relus:
        vs = [v for f in bg.nodes[k].args for v in f.t]
        if vs and len(vs) < 0.5 * bg.nodes[k].size * (max(vs) - min(vs) + 1):
            return False
    return len(relus) > 1


def root_corners(bg: Any, st: Any, djs: list[Disjunct], box: Any) -> np.ndarray | None:
    """Per row of each disjunct (stacked), the corner of the
    region's box that minimises the row's CROWN lower bound (by the sign of its input
    coefficients, from the float back-substitution at the root state ``st``): where the bound
    says a counterexample is likeliest. Such a corner can sit where the float gradient is 0
    (every ReLU dead around the box centre), which PGD cannot leave. None when the graph is too
    large for the back-substitution's matrices (one box and a few rows: ten times the batched
    optimisers' cap) or a row has no fast sibling. On relu-only conv graphs the back-substitution
    is ``alpha_targets.NodeBacksub`` (``bab_disjunct``'s, the same coefficients): the dense one
    builds (R, n_vars) multipliers per node, 2.8-4.6 s on the sri_resnet_a ResNet's root against
    ~0.2 s node-wise (bench/README.md, "h-sri")."""
    if NODEWISE and relu_only(bg) and not fully_connected(bg):
        bs = alpha_targets.NodeBacksub(fe.compiled(bg), st)
    elif alpha.dense_size(bg) > 10 * alpha.MAX_DENSE or any(
            n.kind == "fn" and n.fn not in FAST for n in bg.nodes):
        return None
    else:
        bs = alpha.Backsub.from_fast(bg, fe.compiled(bg), st, FAST)
    lo, hi = box
    out = []
    for d in djs:
        R = d.lam0.shape[0]
        bs.bound(d.lam0, d.c0, bs.default_slopes(R))
        out.append(leaf_minimisers(np.repeat(lo, R, 0), np.repeat(hi, R, 0), bs.coef[0][:, :bg.n_in]))
    return np.concatenate(out) if out else None


def relu_only(bg: Any) -> bool:
    """Whether every nonlinear node is a relu node (this search then covers what root CROWN and
    α-CROWN would: it starts from the root box with both)."""
    return all(n.kind in ("input", "const") or (n.kind == "fn" and n.fn == "relu") for n in bg.nodes)
