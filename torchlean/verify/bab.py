"""Complete verification of ReLU chains by branch-and-bound with input splitting (untrusted search,
checked output), on the bound table.

Per input region of the property, boxes are bounded in batches of up to ``batch`` by the table's
fast engine (``fast_engine``: its CROWN forward pass and its bound of the exact objective forms),
the computation the checker's fast replay makes per leaf, so a leaf the search accepts is a leaf
the checker accepts. A box is a leaf when, for every disjunct of the unsafe set, some combination
of its atoms has a positive lower bound of Σ (a_k·y - b_k) (``TABLE_EPS``); the leaf records
(combination, beta = bound/2) per disjunct. Otherwise the box is split in two at the midpoint of
the input dimension most responsible for the relaxation loss of the worst row's bound ("relax",
``branching.table_relaxation_scores``, recomputed from the pass's ReLU argument bounds), and the
falsification of ``attack.InSearch`` runs alongside.
Chains with more than ``INPUT_SPLIT_MAX`` inputs, and every other network, go to the general
search (``general.verify_target``: ReLU splits with β multipliers, ``graph_relu``, above that
size): ``solve`` picks.

The verdict is ``sat`` only for a point the checker's exact test accepts, ``unsat`` only with a
complete split tree (whose certificate the caller should still check), ``unknown`` when a point
of the closed box meets the closure of the unsafe set but only strict atoms exclude it (no
certificate over the closed box can exist then; ``attack.closure``), else ``timeout``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..certificates import fast_engine as fe
from ..certificates.core import OutOfTime, time_limit
from ..certificates.fast_forms import outward
from ..certificates.graph_vnn import objective_forms
from ..certificates.property import Region, Spec
from . import attack, exact_point, general, star, table
from .branching import table_relaxation_scores
from .tree import Result, SplitTree, choice, combos, graft, threshold

#: the leaf margin: any positive bound is a proof (the leaf claims half, the checker replays it)
TABLE_EPS = 1e-300
INPUT_SPLIT_MAX = 16  # more inputs than this: split ReLUs (graph_relu), not the input box
#: the attack before the search (``attack.search``); the rest runs alongside it (``attack.InSearch``)
CHAIN_ATTACK: dict[str, Any] = {"samples": 2000, "starts": 64, "corners": 0, "rounds": 1, "decay": 0.85}
METHODS = {"crown": "crown", "forward": "ibp"}  # certificate method -> the engines' argument bounds

__all__ = ["INPUT_SPLIT_MAX", "Result", "solve", "verify"]


def solve(t: table.Target, spec: Spec, timeout: float = 116.0, progress: bool | None = False,
          method: str = "crown", seed: int = 0, first_attack: dict[str, Any] | None = None) -> Result:
    """The search's claim for any target: ReLU chains with at most ``INPUT_SPLIT_MAX`` inputs by
    input splitting (``verify``; ``first_attack``: its up-front attack's settings), everything else
    by the general search (``general.verify_target``; chains with more inputs split ReLUs at once).
    Check ``result.cert`` against ``t.bg``. ``t`` comes from ``verify.table.load_target(path)``,
    ``spec`` from ``verify.load_spec(path)`` (docs/api-examples.md shows the three steps)."""
    if t.chain and t.bg.n_in <= INPUT_SPLIT_MAX:
        return verify(t, spec, timeout=timeout, progress=progress, method=method, seed=seed,
                      first_attack=first_attack)
    return general.verify_target(t, spec, timeout=timeout, seed=seed, progress=progress,
                                 relu_above=INPUT_SPLIT_MAX if t.chain else None)


def verify(
    model: Any,
    spec: Spec,
    timeout: float = 116.0,
    batch: int = 64,
    progress: bool | None = False,
    attack_first: bool = True,
    seed: int = 0,
    method: str = "crown",
    first_attack: dict[str, Any] | None = None,
) -> Result:
    """Decide the property on a ReLU chain (``model``: a ``table.Target`` or the chain's bound
    graph) by input splitting: unsat (with a graph certificate for the bound graph), sat (with a
    point), or timeout. More than ``INPUT_SPLIT_MAX`` inputs: ``solve``'s general search.

    The verdict is the search's claim: call ``certificates.bounds.check_vnn(result.cert, bg, spec)``
    before trusting it (the CLI and the benchmark runner do, and report "unknown" on rejection).
    ``timeout`` (seconds, finite and > 0) bounds the whole search: every long loop, the bound
    computations inside it included, stops at the deadline (``certificates.core.tick``).
    ``method``: "crown" (CROWN argument bounds) or "forward" (IBP ones, one back-substitution from
    the objective; the certificate's method). ``first_attack``: the settings of the up-front attack
    (``attack.search``'s; None: ``CHAIN_ATTACK``), run unless ``attack_first`` is False."""
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    t = model if isinstance(model, table.Target) else table.graph_target(model)
    if not t.chain:
        raise ValueError("input splitting here is for ReLU chains: use bab.solve")
    if t.bg.n_in > INPUT_SPLIT_MAX:
        return solve(t, spec, timeout=timeout, progress=progress, method=method, seed=seed)
    t0 = time.perf_counter()
    stats: dict[str, Any] = {"boxes": 0, "leaves": 0}
    try:
        with time_limit(time.monotonic() + timeout):
            first = (first_attack or CHAIN_ATTACK) if attack_first else None
            return _verify(t, spec, timeout, batch, progress, first, seed, method, t0, stats)
    except OutOfTime:
        stats["time"] = time.perf_counter() - t0
        return Result("timeout", stats=stats)


def _verify(t, spec, timeout, batch, progress, first, seed, method, t0, stats) -> Result:
    """``verify``'s body, under its deadline; ``first``: the up-front attack's settings (or None)."""
    fnet = t.fnet
    # the float search's refused candidates, from which exact (non-float32) ones are built
    probe = exact_point.Probe(spec, table.confirmer(t, spec), fnet.forward, fnet.layers)
    stats["exact"] = probe.stats
    if first:  # (``CHAIN_ATTACK`` by default: the chain search's settings, ACAS Xu and MNIST tuned on them)
        confirm = probe.inner
        x = attack.search(fnet, spec, probe.confirm, seed=seed, **first)
        if x is None:
            x = probe.propose()
        if x is not None:
            return _sat(t, spec, x, stats, t0)
        shut = attack.closure(spec)
        x = None if shut is None else attack.search(fnet, shut, table.confirmer(t, shut), seed=seed,
                                                    **first)
        if x is not None:  # a point of the closure; it, or a point moved inward from it, may be one
            x = attack.inward(fnet, spec, confirm, x)
            if confirm(x):
                return _sat(t, spec, x, stats, t0)
            stats["time"] = time.perf_counter() - t0
            stats["why"] = ("a point of the closed input box meets the closure of the unsafe set and only "
                            "strict atoms exclude it: no bound certificate can exist")
            return Result("unknown", stats=stats)
    trees = []
    for r, region in enumerate(spec.regions):
        out = _bab_region(t, spec, region, t0 + timeout, batch, progress, stats, f"region {r}", method,
                          seed, probe)
        if out is None:
            stats["time"] = time.perf_counter() - t0
            return Result("timeout", stats=stats)
        if isinstance(out, list):  # a counterexample
            return _sat(t, spec, out, stats, t0)
        trees.append(out.preorder())
    stats["split"] = "relax"
    cert = table.unsat_cert(t, spec, trees)
    cert["method"] = method
    stats["time"] = time.perf_counter() - t0
    return Result("unsat", cert=cert, stats=stats)


def _sat(t: table.Target, spec: Spec, x: list, stats: dict[str, Any], t0: float) -> Result:
    stats["time"] = time.perf_counter() - t0
    y = t.fnet.forward(np.array([[float(v) for v in x]]))[0].tolist()
    return Result("sat", cert=table.sat_cert(t, spec, x), x=x, y=y, stats=stats)


def _bab_region(t: table.Target, spec: Spec, region: Region, deadline: float, batch: int,
                progress: bool | None, stats: dict[str, Any], label: str, method: str, seed: int = 0,
                probe: exact_point.Probe | None = None) -> SplitTree | list | None:
    """The region's split tree, a confirmed counterexample (a list of Fractions), or None (deadline,
    or a disjunct no bound can refute). ``probe``: where refused candidates are kept and exact ones
    tried (after the 1st, 2nd, 4th, 8th, ... batch, and at a box shrunk to a point)."""
    if any(not d for d in region.disjuncts):
        return None  # an empty conjunction: no bound can exclude it (the attack finds the point)
    cs = [combos(len(d)) for d in region.disjuncts]
    boxes = _TableBoxes(t, region, cs, METHODS[method])
    groups = [(min(ix.values()), max(ix.values()) + 1) for ix in boxes.index]
    names = [list(c) for c in cs]  # row offset within a group -> combination
    lo0, hi0 = (np.array(v) for v in outward(list(region.lo), list(region.hi)))
    width0 = hi0 - lo0
    live = width0 > 0
    tree = SplitTree()
    if probe is None:
        probe = exact_point.Probe(spec, table.confirmer(t, spec), t.fnet.forward, t.fnet.layers)
    confirm = probe.inner
    falsify = attack.InSearch(t.fnet, region, probe.confirm, seed=seed)
    n_batches = 0
    boxes0 = stats["boxes"]  # (earlier regions': not this search's work)
    stack_lo, stack_hi, stack_id = [lo0], [hi0], [0]
    depth = {0: 0}  # input splits above each open node (the stall trigger, ``star.Stall``)
    stall = star.Stall(t.bg, region, cs, confirm, stats) if star.STALL_DEPTH is not None else None
    bar = _bar(progress, label)
    done = 0.0
    try:
        last_dt = 0.0
        while stack_id:
            start = time.perf_counter()
            if start + last_dt > deadline:  # the next batch would overrun the limit
                return None
            k = min(batch, len(stack_id))
            lo = np.array(stack_lo[-k:])
            hi = np.array(stack_hi[-k:])
            ids = stack_id[-k:]
            del stack_lo[-k:], stack_hi[-k:], stack_id[-k:]
            stats["boxes"] += k
            lb = boxes.bound(lo, hi)
            best_k = np.stack([lb[:, a:b].argmax(1) for a, b in groups], 1)  # (B, J)
            best = np.stack([lb[:, a:b].max(1) for a, b in groups], 1)
            proven = (best > TABLE_EPS).all(1)
            for i in np.nonzero(proven)[0]:
                proofs = [[choice(names[j][best_k[i, j]]), threshold(best[i, j])] for j in range(len(groups))]
                tree.nodes[ids[i]] = ("leaf", proofs)
            stats["leaves"] += int(proven.sum())
            vol = np.prod(np.where(live, (hi - lo) / np.where(live, width0, 1), 1.0), axis=1)
            done += float(vol[proven].sum())
            open_ = np.nonzero(~proven)[0]
            worst = best[open_].argmin(1)  # per open box: its worst disjunct's best row
            rows = np.array([groups[j][0] for j in worst], dtype=int) + best_k[open_, worst]
            if open_.size:
                w_open = hi[open_] - lo[open_]
                score, grad = boxes.scores(open_, rows, w_open)
                score += 1e-3 * grad * w_open  # the bound's gradient breaks ties
                # falsification alongside: the bound's minimisers, PGD (attack.InSearch)
                found = falsify.step(lo[open_], hi[open_], best[open_].min(1), boxes.coef,
                                     stats["boxes"] - boxes0)
                if found is not None:
                    return found
                n_batches += 1
                # (a doubling schedule: a search with no near miss pays nothing, one stuck at a tie
                # whose witness is no float32 point gets exact candidates within log2 of its batches)
                found = probe.propose() if n_batches & (n_batches - 1) == 0 else None
                if found is not None:
                    return found
            for n_i, i in enumerate(open_):
                out = stall.close(depth[ids[i]], lo[i], hi[i], deadline) if stall is not None else None
                if isinstance(out, list):  # deep in the input splits: LP multipliers (star)
                    return out
                if out is not None:
                    graft(tree, ids[i], out)
                    stats["leaves"] += sum(1 for n in out.nodes if n[0] == "leaf")
                    done += float(vol[i])
                    continue
                w = hi[i] - lo[i]
                dim = int(score[n_i].argmax()) if score[n_i].max() > 0 else int(w.argmax())
                if w[dim] <= 0 or not np.isfinite(score[n_i]).all():
                    dim = int(w.argmax())
                if w[dim] <= 0:  # a point box that cannot be bounded: exact points near it, else give up
                    probe.refused[tuple(float(v) for v in lo[i])] = lo[i].copy()
                    return probe.propose(tries=len(probe.refused))
                v = float(min(max(lo[i, dim] + w[dim] * 0.5, lo[i, dim]), hi[i, dim]))
                (a, _, lw_hi), (b, up_lo, _) = tree.bisect(ids[i], lo[i], hi[i], dim, v)
                stack_lo += [up_lo, lo[i]]
                stack_hi += [hi[i], lw_hi]
                stack_id += [b, a]
                depth[a] = depth[b] = depth[ids[i]] + 1
            last_dt = time.perf_counter() - start
            stats["covered"] = done  # (the region's volume proved so far, for benchmarks)
            if bar is not None:
                bar.set_postfix(
                    boxes=stats["boxes"], leaves=stats["leaves"], queue=len(stack_id), refresh=False
                )
                bar.update(round(done, 6) - bar.n)
        return tree
    finally:
        if bar is not None:
            bar.close()


class _TableBoxes:
    """A region's objective rows bounded on the bound table: ``fast_engine``'s forward pass (CROWN or
    IBP argument bounds, ``how``) and its bound of the exact objective forms
    (``graph_vnn.objective_forms``), the computation the checker's fast replay makes per leaf; and
    the "relax" branching scores recomputed from that pass's ReLU argument bounds
    (``branching.table_relaxation_scores``)."""

    def __init__(self, t: table.Target, region: Region, cs: list[list[tuple[int, ...]]], how: str):
        self.fg, self.how = fe.compiled(t.bg), how
        forms, self.index = objective_forms(t.bg, region, cs)
        self.F = fe.forms_of(self.fg, forms)
        self.relus = [k for k, n in enumerate(t.bg.nodes) if n.kind == "fn"]
        self.W = [W for W, _ in t.fnet.layers]
        # each row's coefficients over the outputs (for the branching scores only)
        self.C = np.array([np.sum([[float(v) for v in dj[k].a] for k in c], 0)
                           for dj, c_s in zip(region.disjuncts, cs) for c in c_s])
        self.st: Any = None
        self.coef: Any = None  # the last ``scores`` call's signed input coefficients (for attack)

    def bound(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Certified lower bounds (B, R) of the rows over each box."""
        self.st = fe.forward(self.fg, lo, hi, self.how)
        return fe.bound_forms(self.st, self.F)

    def scores(self, boxes: np.ndarray, rows: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """("relax" scores, |input coefficients|) (len(boxes), d) of the last batch's listed boxes."""
        pre = [(self.st.arg[k][0][boxes], self.st.arg[k][1][boxes]) for k in self.relus]
        score, self.coef = table_relaxation_scores(self.W, pre, self.C[rows], width, signed=True)
        return score, np.abs(self.coef)


def _bar(progress: bool | None, label: str, total: float | None = 1.0):
    """Progress on stderr (``torchlean.progress``): covered volume for input splitting, batches for
    ReLU splitting; None when there is nothing to show."""
    from ..progress import bar

    if total is None:
        p = bar(None, label, "batch", progress, bar_format="{desc}: {n} batches {elapsed} {postfix}")
    else:
        p = bar(total, label, "vol", progress, bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
    return None if p.mode == "off" else p
