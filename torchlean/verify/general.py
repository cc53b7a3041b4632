"""Complete verification of any graph the bound table lowers: input-split branch and bound (untrusted
search; its certificate is replayed by ``certificates`` before any verdict is reported).

The bounds come from the table's batched fast engine through ``verify.table`` (``Bounder``): this
module adds only heuristics, namely which box to split, along which input, and where to look for
counterexamples. Per region of the property, boxes are bounded in batches; a box is a leaf when, for
every disjunct of the unsafe set, some combination c of its atoms has lower bound of
Σ_{k in c} (a_k·y - b_k) > EPS (so an atom fails at every point of the box); the leaf records
(c, beta = half the bound) per disjunct, the split tree is written in the preorder format of
``certificates/bounds.py`` (``tree.SplitTree``). Open boxes are split at the midpoint of the input
with the largest |gradient of the worst row at the box centre| x width (the runtime's own gradient,
``executor.GraphExec``); every batch the falsification of ``attack.InSearch`` runs alongside (the
open boxes' corners by that gradient's sign, PGD on an adaptive share of the work); a point is
reported only when ``confirm`` (the checker's exact test) accepts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates.property import Region, Spec
from . import attack
from .tree import Result, SplitTree, choice, combos, threshold

#: a box is a leaf when its bound is above this: any positive bound proves the disjunct (the leaf
#: claims half of it, which the checker replays; only a claim that rounds to 0 would fail). The
#: 1e-8 of before left unprovable every box of an output that is flat at the threshold's side:
#: generated ACAS Xu instances with a margin of 2e-9 (bench/README.md, "Flat outputs")
EPS = 1e-300
#: more inputs than this: no input splitting (root CROWN, root α-CROWN, then counterexample search)
INPUT_SPLIT_MAX = 64

#: root CROWN work (nonlinear elements x nonzeros of their argument forms, about the pass's
#: multiply-adds) above which a short attack runs before the root bounds of a ReLU-split search: the
#: sri_resnet_a ResNet (2.4e10; its root pass 3.6 s alone, 27-60 s under load) has sat instances
#: PGD finds in under a second; oval21 (1e9-5e9, 0.1-0.5 s), mnistfc and eran (< 1e9) keep the root
#: bounds first (bench/README.md, "sri_resnet_a and oval21")
EARLY_ATTACK_WORK = 1e10
#: the early attack's time cap: this share of the budget (at least 1 s, at most the pre-search's).
#: Until h-sri the attack looked at its deadline only between disjuncts, so a first round ran
#: whole (18 s on sri_resnet_a at load 2.5, against a cap of 1.2 s); now every PGD step checks it.
#: Its sat instances' counterexamples come after 1-7 PGD steps, 1.2-2.7 s of attack at load 3
#: (bench/README.md, "h-sri"): 0.02 (1.2 s) cut half of them off, to be found after the root pass
EARLY_ATTACK_SHARE = 0.1
#: the early attack is a quick look (``attack.search``'s ``stall``): one PGD run per region that
#: stops once its best margin is over this many times what its recent rate would still gain. On
#: sri_resnet_a the unsat instances' runs level off within 4-8 steps and ran on to the cap (4-5 s
#: of the 60 at load 1, paid on every unsat instance); the sat ones gain 30-100% a step and still
#: reach 0 (bench/README.md, "h-fixed"). What it misses, the attack after the root bounds runs on
EARLY_STALL = 4.0

#: share of the time left after the root bounds that the ReLU-split search leaves to the attack
#: at its end (it also runs the attack between batches: ``graph_relu.ATTACK_SHARE``)
RELU_ATTACK_SHARE = 0.1

#: (region, deadline, stats, attack) -> the region's certificate entry by ReLU splits, a confirmed
#: counterexample the attack ((until, extra starts, sub-region) -> point or None) found, or None
#: (``graph_relu.bab_region``)
ReluSplit = Callable[[Region, float, dict[str, Any], Callable[..., Any]], Any]

#: (lo (1, n), hi (1, n), C, d) -> (lower bounds (R,) of C·y - d with optimised slopes, per row the
#: leaf-proof slope entries) or None; ``table.alpha_leaf`` bound to a target
AlphaLeaf = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any]

#: (region, C (R, n_out), d (R,)) -> a function (lo (B, n), hi (B, n)) -> lower bounds (B, R) of
#: C·y - d over each box, from a sound engine (the table's, through ``verify.table``)
Bounder = Callable[[Region, np.ndarray, np.ndarray], Callable[[np.ndarray, np.ndarray], np.ndarray]]


def root_work(bg: Any) -> int:
    """About the multiply-adds of one root CROWN pass over the lowered graph ``bg``: its nonlinear
    elements (each back-substitutes through the graph before it) times the nonzeros of every
    nonlinear node's argument forms (the measure ``EARLY_ATTACK_WORK`` gates)."""
    fns = [n for n in bg.nodes if n.kind == "fn"]
    return sum(n.size for n in fns) * sum(len(f.t) for n in fns for f in n.args)


def objective(region: Region) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]], list[Any]]:
    """Rows Σ_{k in c} a_k (C) and offsets Σ b_k (d) for every combination c of every disjunct's
    atoms; ``groups[j]`` is disjunct j's row range and ``names[j][o]`` its o-th combination."""
    C, d, groups, names = [], [], [], []
    for disj in region.disjuncts:
        cs = combos(len(disj))
        start = len(C)
        for c in cs:
            C.append(np.sum([[float(v) for v in disj[k].a] for k in c], 0))
            d.append(float(sum(disj[k].b for k in c)))
        groups.append((start, len(C)))
        names.append(cs)
    return np.array(C), np.array(d), groups, names


def _leaf_proofs(lb: np.ndarray, groups: list[tuple[int, int]], names: list[list[tuple[int, ...]]]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    best_k = np.stack([lb[:, a:b].argmax(1) for a, b in groups], 1)
    best = np.stack([lb[:, a:b].max(1) for a, b in groups], 1)
    return best_k, best, (best > EPS).all(1)


def bab_region(
    bounder: Bounder,
    ex: attack.Executor,
    region: Region,
    confirm: Callable[[list[Fraction]], bool],
    deadline: float,
    stats: dict[str, Any],
    batch: int = 64,
    max_splits: int | None = None,
    alpha_leaf: AlphaLeaf | None = None,
    exact: Any = None,
) -> list[Any] | list[Fraction] | None:
    """The region's split tree in preorder, a confirmed counterexample (list of Fractions), or None
    (deadline, a disjunct no bound can refute, or ``max_splits`` reached). ``exact``: an
    ``exact_point.Probe`` whose ``confirm`` is ``confirm``, asked for exact candidates on its
    doubling schedule, once per batch with open boxes."""
    if any(not d for d in region.disjuncts):
        return None
    C, d, groups, names = objective(region)
    bound = bounder(region, C, d)
    lo0 = np.array([float(v) for v in region.lo])
    hi0 = np.array([float(v) for v in region.hi])
    # float(Fraction) rounds to nearest: widen by one ulp so the search's boxes cover the region's
    lo0, hi0 = np.nextafter(lo0, -np.inf), np.nextafter(hi0, np.inf)
    tree = SplitTree()
    falsify = attack.InSearch(ex, region, confirm, local=(4, 10, 0.75))
    boxes0 = stats.get("boxes", 0)  # (earlier regions': not this search's work)
    stack_lo, stack_hi, stack_id = [lo0], [hi0], [0]
    splits, last_dt = 0, 0.0
    while stack_id:
        start = time.perf_counter()
        if start + last_dt > deadline:
            return None
        k = min(batch, len(stack_id))
        lo, hi = np.array(stack_lo[-k:]), np.array(stack_hi[-k:])
        ids = stack_id[-k:]
        del stack_lo[-k:], stack_hi[-k:], stack_id[-k:]
        stats["boxes"] = stats.get("boxes", 0) + k
        lb = bound(lo, hi)
        best_k, best, proven = _leaf_proofs(lb, groups, names)
        for i in np.nonzero(proven)[0]:
            proofs = [[choice(names[j][best_k[i, j]]), threshold(best[i, j])] for j in range(len(groups))]
            tree.nodes[ids[i]] = ("leaf", proofs)
        if alpha_leaf is not None and not proven.all():  # α-CROWN on the boxes CROWN left open
            todo = np.nonzero(~proven)[0]
            for i, leaf in zip(todo, _alpha_leaves(alpha_leaf, lo[todo], hi[todo], C, d, groups, names)):
                if leaf is not None:
                    tree.nodes[ids[i]] = ("leaf", leaf)
                    proven[i] = True
                    stats["alpha"] = stats.get("alpha", 0) + 1
        stats["leaves"] = stats.get("leaves", 0) + int(proven.sum())
        open_ = np.nonzero(~proven)[0]
        if not open_.size:
            last_dt = time.perf_counter() - start
            continue
        olo, ohi = lo[open_], hi[open_]
        worst = best[open_].argmin(1)
        rows = np.array([groups[j][0] for j in worst], dtype=int) + best_k[open_, worst]
        centre = (olo + ohi) / 2
        G = C[rows]
        _, g = ex.value_and_grad(centre, lambda y, G=G: G)
        # falsification alongside; the worst row's gradient at the centre stands in for its bound's
        # input coefficients (the table's doorway returns bounds only)
        found = falsify.step(olo, ohi, best[open_].min(1), g, stats["boxes"] - boxes0)
        if found is None and exact is not None:
            found = exact.scheduled()
        if found is not None:
            return found
        w = ohi - olo
        score = np.abs(g) * w
        score = np.where(np.isfinite(score), score, 0.0)
        for n_i, i in enumerate(open_):
            dim = int(score[n_i].argmax()) if score[n_i].max() > 0 else int(w[n_i].argmax())
            if w[n_i, dim] <= 0:
                return None  # a point box the bounds cannot settle
            v = float(lo[i, dim] + w[n_i, dim] * 0.5)
            if not lo[i, dim] < v < hi[i, dim]:
                return None  # the box is as narrow as floats allow
            (a, _, lw_hi), (b, up_lo, _) = tree.bisect(ids[i], lo[i], hi[i], dim, v)
            stack_lo += [up_lo, lo[i]]
            stack_hi += [hi[i], lw_hi]
            stack_id += [b, a]
            splits += 1
        if max_splits is not None and splits > max_splits:
            return None
        last_dt = time.perf_counter() - start
    return tree.preorder()


def _alpha_leaves(alpha_leaf: AlphaLeaf, lo: np.ndarray, hi: np.ndarray, C: np.ndarray, d: np.ndarray,
                  groups: list[tuple[int, int]], names: list[Any]) -> list[list[Any] | None]:
    """Per box: leaf proofs with optimised slopes, or None if some disjunct stays open there."""
    out = alpha_leaf(lo, hi, C, d)
    if out is None:
        return [None] * lo.shape[0]
    lb, entries = out
    leaves: list[list[Any] | None] = []
    for b in range(lo.shape[0]):
        proofs: list[Any] | None = []
        for j, (a, e) in enumerate(groups):
            r = a + int(np.argmax(lb[b, a:e]))
            if not lb[b, r] > EPS:
                proofs = None
                break
            proofs.append([choice(names[j][r - a]), threshold(lb[b, r]), {"slopes": entries(b, r)}])
        leaves.append(proofs)
    return leaves


def solve(
    bounder: Bounder,
    ex: attack.Executor,
    spec: Spec,
    confirm: Callable[[list[Fraction]], bool],
    timeout: float,
    seed: int = 0,
    max_splits: int | None = None,
    extra_starts: np.ndarray | None = None,
    alpha_leaf: AlphaLeaf | None = None,
    relu_split: ReluSplit | None = None,
    relu_only: bool = False,
    stats: dict[str, Any] | None = None,
    relu_above: int | None = None,
    early: bool = False,
    fn_root: Callable[[Region, float], Any] | None = None,
    exact: Any = None,
) -> tuple[str, Any, dict[str, Any]]:
    """("sat", x), ("unsat", [tree per region]) or ("timeout", None), with search statistics.
    Neither verdict is final until the caller's checker accepted the certificate built from it.
    ``relu_split`` (graphs with more than INPUT_SPLIT_MAX inputs, once root CROWN and α-CROWN
    leave a region open, or at once when ``relu_only``: every nonlinear node is a relu, and that
    search starts with root CROWN and α itself): the region's entry from ReLU-split branch and
    bound, or None. ``stats``: the dict the statistics go into (a caller may watch it for progress).
    ``early``: the root pass is expensive (``root_work``): a relu-first search runs a short attack
    (``EARLY_ATTACK_SHARE`` of the budget) before it, where it would otherwise run only after it.
    ``fn_root`` (region, deadline) -> the region's entry or None: where the root box's CROWN and
    α leave a region of a wide graph open, a second root bound (``fn_targets.root_entry``: α on
    the intermediate bounds too; the caller takes its share of the time left to ``deadline``).
    ``exact``: an ``exact_point.Probe`` whose ``confirm`` is ``confirm``: exact (non-float32)
    candidates from the refused ones after the first attack, between ReLU-search batches (its
    doubling schedule) and before a timeout."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    stats = {} if stats is None else stats
    stats.update(boxes=0, leaves=0)
    wide = ex.n_in > (INPUT_SPLIT_MAX if relu_above is None else relu_above)
    relu_first = relu_split is not None and wide and relu_only
    pre_s = max(1.0, 0.1 * timeout)  # the attack before the proof search
    early = early and relu_first
    if not relu_first or early:  # (else the ReLU-split search runs it once the root bounds are known)
        cap = min(pre_s, max(1.0, EARLY_ATTACK_SHARE * timeout)) if early else pre_s
        # a quick look too on any wide graph that is not searched relu-first (max pooling,
        # sigmoid): the ReLU-split search's attacks (between batches, at its end) or the root-only
        # search's final one still run after the root bounds, while a full look cost every unsat
        # instance the whole cap (verivital maxpool: 5.7 s of 9; bench/README.md, "fixed31")
        quick = early or wide and not relu_first
        x = attack.search(ex, spec, confirm, seed=seed, extra_starts=extra_starts, rounds=1,
                          deadline=t0 + cap, stall=EARLY_STALL if quick else None)
        if x is None and exact is not None:
            x = exact.propose()
        if early:
            stats["early_attack_s"] = round(time.perf_counter() - t0, 3)
        if x is not None:
            stats["time"] = time.perf_counter() - t0
            return "sat", x, stats
    trees = []
    if ex.n_in > INPUT_SPLIT_MAX:  # splitting thousands of inputs is hopeless: bound the root only
        max_splits = 0
    else:  # α-CROWN costs tens of CROWN passes: on few inputs splitting is cheaper (bench/README.md)
        alpha_leaf = None
    for region in spec.regions:
        out = None if relu_first else bab_region(bounder, ex, region, confirm, deadline, stats,
                                                 max_splits=max_splits, alpha_leaf=alpha_leaf, exact=exact)
        if out is None and relu_split is not None and wide:
            # hidden-neuron splits (graph_relu), leaving a share of the time to the attack
            left = deadline - time.perf_counter()
            seeds = iter(range(seed + 2, seed + 10**4))
            # the attacks' float margins (``attack.search``'s record): a stalled attack leaves
            # its time to the proof search (``graph_relu.stalled``), up to the end held back here
            record: dict[str, float] = {}
            stats.update(attack_margin=record, attack_stall=0, attack_end=deadline)

            def hunt(until: float, starts: np.ndarray | None = None, sub: Region | None = None,
                     pre: bool = False, seeds: Any = seeds, record: dict[str, float] = record
                     ) -> list[Fraction] | None:
                """The attack until ``until`` on the sub-region ``sub`` (the disjuncts the root
                bounds leave open: a disjunct they refute has no counterexample) if given. With
                ``starts``: PGD from those points only (the root bound's minimisers), a short
                call. ``pre``: the attack before the proof search, on the disjuncts left open;
                it runs here only for a relu-first search (with the seed, extra starts and budget
                of the pre-search above); the other searches ran that on the whole property."""
                where = spec if sub is None else Spec(spec.n_in, spec.n_out, (sub,))
                if pre:
                    if not relu_first:
                        return None
                    # (after an early attack from ``seed``: other random starts)
                    return attack.search(ex, where, confirm, seed=seed + 10**5 if early else seed,
                                         extra_starts=extra_starts, rounds=1, deadline=max(until, t0 + pre_s),
                                         record=record)
                # (the restarts between ReLU-search batches, each at most 1 s: plain PGD only; a
                # ``leaky`` run costs ~4x a PGD run per start, and there its time came out of these
                # restarts: generated mnistfc 022 found at 28.5-28.8 s against main's 17-29 s,
                # bench/README.md "Leaky homotopy"; the pre-search above runs it once)
                if starts is not None:
                    x = attack.search(ex, where, confirm, seed=next(seeds), rounds=1, deadline=until,
                                      samples=0, starts=0, corners=0, extra_starts=starts,
                                      leaky_starts=None, record=record)
                else:
                    x = attack.search(ex, where, confirm, seed=next(seeds), rounds=1, deadline=until,
                                      leaky_starts=None, record=record)
                return x if x is not None or exact is None else exact.scheduled()

            out = relu_split(region, time.perf_counter() + (1 - RELU_ATTACK_SHARE) * left, stats, hunt)
        if out is None and fn_root is not None and max_splits == 0:
            out = fn_root(region, deadline)
            stats["fn_root"] = stats.get("fn_root", 0) + (out is not None)
        if out is None:
            # spend the rest on the attack (none is left where a stalled one gave it to the search)
            if max_splits == 0 and ex.n_in > INPUT_SPLIT_MAX and time.perf_counter() < deadline:
                x = attack.search(ex, spec, confirm, seed=seed + 1, rounds=50, deadline=deadline)
                if x is not None:
                    stats["time"] = time.perf_counter() - t0
                    return "sat", x, stats
            x = None if exact is None else exact.propose(tries=8)
            if x is not None:  # (a tie whose witness is no float32 point: no bound can close it)
                stats["time"] = time.perf_counter() - t0
                return "sat", x, stats
            stats["time"] = time.perf_counter() - t0
            return "timeout", None, stats
        if isinstance(out, list) and out and isinstance(out[0], Fraction):
            stats["time"] = time.perf_counter() - t0
            return "sat", out, stats
        trees.append(out)
    stats["time"] = time.perf_counter() - t0
    return "unsat", trees, stats


#: whether a relu-first search (``verify_target``) starts with the checker's replay of the
#: root-only certificate (``table.root_check``), where the property has one region of one-atom
#: disjuncts: accepted, the search is done and its caller need not replay the certificate again
#: (``table.checked_by_search``); rejected, the replay's root state is the search's root bounds.
#: The root pass is then paid once instead of twice (bench/README.md, "h-rootcheck")
ROOT_CHECK = True


def verify_target(t: Any, spec: Spec, timeout: float = 116.0, seed: int = 0, progress: bool | None = False,
                  relu_above: int | None = None) -> Result:
    """``tree.Result`` for a ``table.Target``: the search's claim with its certificate (the caller
    runs ``table.check`` on it before reporting, as the CLI does, unless ``table.checked_by_search``
    gives the checker's accepted replay of that very certificate: ``ROOT_CHECK``). ``progress``:
    report the boxes and leaves so far (``torchlean.progress.watch``); ``relu_above``: as
    ``solve``'s."""
    from ..progress import watch
    from . import exact_point, fn_targets, graph_relu, table

    # the float search's refused candidates, from which exact (non-float32) ones are built; the
    # chain's dense layers only when a vertex is built (``exact_point.VERTEX_MAX_IN``)
    probe = exact_point.Probe(spec, table.confirmer(t, spec), t.ex.forward,
                              (lambda: t.fnet.layers) if t.chain else None)

    relu_split = None
    checked: list[Any] = []  # (the root check's (certificate text, Verdict))

    def root_check(deadline: float) -> Any:
        got = table.root_check(t, spec, deadline)
        if got is None:
            return None
        entries, verdict, states = got
        checked.append(verdict)
        return entries[0], verdict[1].ok, states

    if t.bg is not None and graph_relu.relu_nodes(t.bg):
        def relu_split(region: Region, deadline: float, stats: dict[str, Any], attack: Any) -> Any:
            if relu_above is None or t.bg.n_in > INPUT_SPLIT_MAX:
                return graph_relu.bab_region(t.bg, region, deadline, stats, attack,
                                             root_check=root_check if relu_first and not checked else None)
            # ReLU chains of 17-64 inputs: ReLU splits with LP duals as α and β first (faster on
            # every instance measured, and they close the phase-fixed subproblems where gradient
            # β stops: bench/README.md, "ReLU chains of 17-64 inputs"), gradient β when they stop
            from . import star
            from .tree import combos

            cs = [combos(len(d)) for d in region.disjuncts]
            # the attack first: star finds a counterexample only as an LP minimiser, which on a
            # wide box with many disjuncts comes late or never (audit60: a 64-input chain's
            # 9-disjunct robustness property, violated by 1 in 50 random points, timed out), and a
            # relu-first search ran no attack before this (``solve``'s pre-attack is left to it)
            x = attack(min(deadline, time.perf_counter() + 1.0), None, None, True)
            if x is not None:
                return x
            stats["star_region"] = stats.get("star_region", 0) + 1
            out = star.close_region(t.bg, region, cs, probe.confirm, deadline, stats)
            if isinstance(out, list) and out and not isinstance(out[0], Fraction):
                stats["leaves"] = stats.get("leaves", 0) + sum(1 for n in out if n[0] == "leaf")
            if out is None and time.perf_counter() < deadline:
                out = graph_relu.bab_region(t.bg, region, deadline, stats, attack)
            return out

    fn_root = None
    if t.bg is not None and relu_split is None and fn_targets.applies(t.bg):
        def fn_root(region: Region, deadline: float) -> Any:
            now = time.perf_counter()
            return fn_targets.root_entry(t, region, now + fn_targets.SHARE * (deadline - now))

    relu_first = ROOT_CHECK and relu_split is not None and graph_relu.relu_only(t.bg) and (
        t.bg.n_in > (INPUT_SPLIT_MAX if relu_above is None else relu_above))  # (``solve``'s relu_first)
    stats: dict[str, Any] = {}
    with watch(lambda: {k: stats[k] for k in ("boxes", "leaves") if k in stats}, "search", progress):
        verdict, out, stats = solve(table.bounder(t), t.ex, spec, probe.confirm, timeout, seed,
                                    alpha_leaf=table.alpha_leaf_fn(t), relu_split=relu_split,
                                    relu_only=relu_split is not None and graph_relu.relu_only(t.bg),
                                    stats=stats, relu_above=relu_above,
                                    early=t.bg is not None and root_work(t.bg) > EARLY_ATTACK_WORK,
                                    fn_root=fn_root, exact=probe)
    stats["exact"] = probe.stats
    if verdict == "sat":
        y = t.ex.forward(np.array([[float(v) for v in out]]))[0].tolist()
        return Result("sat", cert=table.sat_cert(t, spec, out), x=out, y=y, stats=stats)
    if verdict == "unsat":
        return Result("unsat", cert=table.unsat_cert(t, spec, out), stats=stats,
                      checked=checked[0] if checked else None)
    return Result("timeout", stats=stats)
