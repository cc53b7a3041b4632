"""Complete verification by branch-and-bound with input splitting (untrusted search, checked output).

Per input region of the property, boxes are bounded in batches of up to ``batch`` with the same
sound forward linear relaxation the checker's fast mode replays (``certificates.fast``), so a leaf
the search accepts is a leaf the checker accepts. A box is a leaf when, for every disjunct of the
unsafe set, some atom a_k·y <= b_k is violated with margin (lower bound of a_k·y - b_k > eps); the
leaf records (k, beta = bound/2) per disjunct. Otherwise the box's centre is tried as a
counterexample and the box is split in two at the midpoint of an input dimension, chosen by the
heuristics of ``PORTFOLIO`` (``branching``): by default the dimension most responsible for the
relaxation loss of the worst atom's bound ("relax"; with the "forward" method, which records no
relaxation trace, the gradient heuristic "single").
Networks with more than ``INPUT_SPLIT_MAX`` inputs split hidden ReLUs instead (``relu_bab``).

The verdict is ``sat`` only for a point confirmed by exact rational evaluation, ``unsat`` only with
a complete split tree (whose certificate the caller should still check), ``unknown`` when a point
of the closed box meets the closure of the unsafe set but only strict atoms exclude it (no
certificate over the closed box can exist then; ``attack.closure``), else ``timeout``.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates import fast, lower
from ..certificates import fast_engine as fe
from ..certificates.bounds import hidden_widths, objective_steps
from ..certificates.core import OutOfTime, time_limit
from ..certificates.fast_crown import crown_bounds
from ..certificates.graph_vnn import objective_forms
from ..certificates.network import Net, fingerprint
from ..certificates.property import Region, Spec
from . import attack, lp, star
from .branching import relaxation_scores, smart_dims, table_relaxation_scores
from .network import float_net
from .relu_bab import relu_bab
from .tree import SplitTree, choice, threshold

EPS = 1e-8
#: the table path's leaf margin (``general.EPS``: any positive bound; the chain engine keeps EPS)
TABLE_EPS = 1e-300
INPUT_SPLIT_MAX = 16  # more inputs than this: split ReLUs (relu_bab), not the input box
#: input-split heuristics tried in turn, from scratch, each with its time budget (None: the rest);
#: see ``branching``. "relax" alone solves all 76 ACAS Xu instances of expected.csv (bench/README.md).
PORTFOLIO: tuple[tuple[str, float | None], ...] = (("relax", None),)
#: the attack before the search (``attack.search``); the rest runs alongside it (``attack.InSearch``)
CHAIN_ATTACK: dict[str, Any] = {"samples": 2000, "starts": 64, "corners": 0, "rounds": 1, "decay": 0.85}


@dataclass
class Result:
    verdict: str  # "unsat" | "sat" | "unknown" | "timeout"
    cert: dict[str, Any] | None = None
    x: list[Fraction] | None = None
    y: list[float] | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def _combos(n: int) -> list[tuple[int, ...]]:
    """Atom combinations tried per disjunct: all subsets up to 4 atoms, else singles and all."""
    if n <= 4:
        return [c for r in range(1, n + 1) for c in itertools.combinations(range(n), r)]
    return [(k,) for k in range(n)] + [tuple(range(n))]


def verify(
    net: Net,
    spec: Spec,
    timeout: float = 116.0,
    batch: int | None = None,
    progress: bool = False,
    attack_first: bool = True,
    seed: int = 0,
    method: str = "crown",
    bg: Any = None,
) -> Result:
    """Decide the property on the network: unsat (with a certificate), sat (with a point), or timeout.

    The verdict is the search's claim: call ``certificates.bounds.check_vnn(result.cert, net, spec)``
    before trusting it (the CLI and the benchmark runner do, and report "unknown" on rejection).
    ``timeout`` (seconds, finite and > 0) bounds the whole search: every long loop, the bound
    computations inside it included, stops at the deadline (``certificates.core.tick``).

    With ``bg`` (the chain's bound graph, ``lower.lower`` of the same IR) and the "crown" method,
    input splitting bounds its boxes on the bound table (``fast_engine``) and the certificate is a
    graph certificate for ``bg``: check it against ``checked_model(net, bg, method)``. ``batch``:
    boxes bounded at once (default 32 on the chain engine, 64 on the table, whose per-call cost
    is higher: bench/README.md)."""
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
    t0 = time.perf_counter()
    stats: dict[str, Any] = {"boxes": 0, "leaves": 0}
    try:
        with time_limit(time.monotonic() + timeout):
            g = table_graph(net, bg, method)
            batch = batch or (32 if g is None else 64)
            return _verify(net, spec, timeout, batch, progress, attack_first, seed, method, t0, stats, g)
    except OutOfTime:
        stats["time"] = time.perf_counter() - t0
        return Result("timeout", stats=stats)


_FINGERPRINTS: dict[int, tuple[Any, str]] = {}


def graph_fingerprint(bg: Any) -> str:
    """``lower.fingerprint(bg)``, computed once per graph object the search certifies for (40 ms
    on an ACAS Xu net, per instance otherwise). The search's copy only: the checker recomputes its
    own from the graph it is given, so a stale entry could only make a certificate be rejected."""
    hit = _FINGERPRINTS.get(id(bg))
    if hit is None or hit[0] is not bg:
        if len(_FINGERPRINTS) >= 16:
            _FINGERPRINTS.clear()
        hit = _FINGERPRINTS[id(bg)] = (bg, lower.fingerprint(bg))
    return hit[1]


def table_graph(net: Net, bg: Any, method: str) -> Any:
    """The bound graph the input-split search bounds on and certifies for, or None (the chain
    engine): ``bg`` when given, the "crown" method and few enough inputs to split."""
    return bg if bg is not None and method == "crown" and net.n_in <= INPUT_SPLIT_MAX else None


def checked_model(net: Net, bg: Any, method: str = "crown") -> Any:
    """What ``verify(net, spec, method=method, bg=bg)``'s certificates are for (check_vnn's model)."""
    g = table_graph(net, bg, method)
    return net if g is None else g


def _verify(net, spec, timeout, batch, progress, attack_first, seed, method, t0, stats, bg) -> Result:
    """``verify``'s body, under its deadline."""
    fnet = float_net(net)
    if attack_first:  # (the chain search's settings of old: ACAS Xu and MNIST were tuned on them)
        x = attack.search(fnet, spec, lambda q: attack.confirm(net, spec, q), seed=seed, **CHAIN_ATTACK)
        if x is not None:
            return _sat(net, spec, fnet, x, stats, t0, bg)
        shut = attack.closure(spec)
        x = None if shut is None else attack.search(fnet, shut, lambda q: attack.confirm(net, shut, q),
                                                    seed=seed, **CHAIN_ATTACK)
        if x is not None:  # a point of the closure; it, or a point moved inward from it, may be one
            x = attack.inward(fnet, spec, lambda q: attack.confirm(net, spec, q), x)
            if attack.confirm(net, spec, x):
                return _sat(net, spec, fnet, x, stats, t0, bg)
            stats["time"] = time.perf_counter() - t0
            stats["why"] = ("a point of the closed input box meets the closure of the unsafe set and only "
                            "strict atoms exclude it: no bound certificate can exist")
            return Result("unknown", stats=stats)
    if net.n_in > INPUT_SPLIT_MAX:
        trees = []
        for region in spec.regions:
            out = _relu_region(net, region, t0 + timeout, stats, progress, spec, fnet,
                               attack.InSearch(fnet, region, lambda q: attack.confirm(net, spec, q), seed))
            if isinstance(out, list):  # a counterexample the falsification found alongside
                return _sat(net, spec, fnet, out, stats, t0, bg)
            if stats.get("counterexample") is not None:  # an LP leaf's minimiser, confirmed
                return _sat(net, spec, fnet, stats.pop("counterexample"), stats, t0, bg)
            if out is None:
                stats["time"] = time.perf_counter() - t0
                return Result("timeout", stats=stats)
            trees.append(out)
    else:
        # a portfolio of split heuristics (PORTFOLIO), each from scratch within its budget
        for split, budget in PORTFOLIO:
            stats["leaves"] = 0
            end = t0 + timeout if budget is None else min(t0 + timeout, time.perf_counter() + budget)
            out = _input_split(net, spec, fnet, end, batch, progress, stats, method, split, bg)
            if isinstance(out, list):  # a counterexample
                return _sat(net, spec, fnet, out, stats, t0, bg)
            if out is not None:
                stats["split"] = split
                trees = out[1]
                break
        else:
            stats["time"] = time.perf_counter() - t0
            return Result("timeout", stats=stats)
    weights = sum(len(s.M) * len(s.M[0]) for s in net.steps if hasattr(s, "M"))
    width = max(len(s.M) for s in net.steps if hasattr(s, "M"))
    per_leaf = weights * (net.n_in + 1) if method == "forward" else weights * 2 * width * len(net.steps)
    cost = stats["leaves"] * per_leaf
    if net.n_in > INPUT_SPLIT_MAX:
        method, cost = "crown", float("inf")  # ReLU splits: CROWN leaves, fast replay
    if bg is not None:  # a graph certificate (no "mode": the caller's choice, bounds.replay_mode)
        cert = {"kind": "vnn-unsat", "version": 1, "network": graph_fingerprint(bg),
                "property": spec.digest(), "method": "crown", "regions": trees}
        stats["time"] = time.perf_counter() - t0
        return Result("unsat", cert=cert, stats=stats)
    cert = {
        "kind": "vnn-unsat",
        "version": 1,
        "network": fingerprint(net),
        "property": spec.digest(),
        "mode": "exact" if cost <= 2_000_000 else "fast",
        "method": method,
        "regions": trees,
    }
    stats["time"] = time.perf_counter() - t0
    return Result("unsat", cert=cert, stats=stats)


def _input_split(net, spec, fnet, deadline, batch, progress, stats, method, split, bg=None) -> Any:
    """Every region's input-split tree: ("trees", [...]), a counterexample, or None at the deadline."""
    trees = []
    for r, region in enumerate(spec.regions):
        out = _bab_region(
            net, spec, fnet, region, deadline, batch, progress, stats, f"region {r}", method, split, bg
        )
        if out is None or isinstance(out, list):
            return out
        trees.append(out.preorder())
    return ("trees", trees)


def _relu_region(
    net: Net, region: Region, deadline: float, stats: dict[str, Any], progress: bool = False,
    spec: Spec | None = None, fnet: Any = None, falsify: attack.InSearch | None = None,
) -> dict | list[Fraction] | None:
    """One ReLU-split tree per disjunct (``relu_bab``), a counterexample ``falsify`` found between
    its batches (PGD restarts over the region), or None at the deadline (or when an LP leaf found a
    counterexample, left in ``stats["counterexample"]``; needs ``spec`` and ``fnet``)."""
    if any(not d for d in region.disjuncts):
        return None
    widths = hidden_widths(net)
    lo, hi = (np.array(v) for v in fast.outward(list(region.lo), list(region.hi)))
    if falsify is not None:  # the root leaf's bound minimisers, every row in one CROWN pass
        combos = [_combos(len(d)) for d in region.disjuncts]
        steps, _ = objective_steps(net, region, combos)
        lb, lam = crown_bounds(fast.prepare(steps), lo[None], hi[None], want_lam=True)
        x = falsify.root(lb[0], lam[0], np.repeat(np.arange(len(combos)), [len(c) for c in combos]))
        if x is not None:
            return x
    hidden = None
    trees = []
    for disj in region.disjuncts:
        combos = [_combos(len(disj))]
        steps, _ = objective_steps(net, Region(region.lo, region.hi, (disj,)), combos)
        if hidden is None:  # the hidden layers are shared: round them to float once
            hidden = fast.prepare(steps[:-1])
        layers = hidden + fast.prepare(steps[-1:])
        bar = _bar(progress, f"disjunct {len(trees) + 1}/{len(region.disjuncts)}", total=None)

        def show(queue: int, bar=bar) -> None:
            if falsify is not None:  # (relu_bab's boxes are the region: PGD over it)
                x = falsify.step(falsify.lo[None], falsify.hi[None], np.array([-np.inf]), None)
                if x is not None:
                    raise _Found(x)
            if bar is not None:
                bar.set_postfix(boxes=stats["boxes"], leaves=stats["leaves"], open=queue, refresh=False)
                bar.update(1)

        def confirm(x: np.ndarray) -> list[Fraction] | None:
            return None if spec is None else lp.counterexample(net, fnet, spec, region, x, lo, hi)

        try:
            tree = relu_bab(layers, widths, lo, hi, combos[0], deadline, stats, on_batch=show,
                            confirm=confirm)
        except _Found as e:
            return e.x
        finally:
            if bar is not None:
                bar.close()
        if tree is None:
            return None
        trees.append(tree)
    return {"per_disjunct": trees}


class _Found(Exception):
    """A confirmed counterexample, out of ``relu_bab``'s batch callback."""

    def __init__(self, x: list[Fraction]):
        super().__init__("counterexample")
        self.x = x


def _sat(net, spec, fnet, x, stats, t0, bg=None) -> Result:
    stats["time"] = time.perf_counter() - t0
    y = fnet.forward(np.array([[float(v) for v in x]]))[0].tolist()
    cert = {
        "kind": "vnn-sat",
        "version": 1,
        "network": fingerprint(net) if bg is None else graph_fingerprint(bg),
        "property": spec.digest(),
        "x": [str(v) for v in x],
    }
    return Result("sat", cert=cert, x=x, y=y, stats=stats)


def _bab_region(
    net,
    spec,
    fnet,
    region: Region,
    deadline: float,
    batch: int,
    progress: bool,
    stats: dict[str, Any],
    label: str,
    method: str,
    split: str = "relax",
    bg: Any = None,
) -> SplitTree | list[Fraction] | None:
    if any(not d for d in region.disjuncts):
        return None  # an empty conjunction: no bound can exclude it (the attack finds the point)
    combos = [_combos(len(d)) for d in region.disjuncts]
    if bg is None:
        steps, index = objective_steps(net, region, combos)
        layers = fast.prepare(steps)
    else:
        table = _TableBoxes(bg, fnet, region, combos)
        index = table.index
    groups = [(min(ix.values()), max(ix.values()) + 1) for ix in index]
    names = [list(cs) for cs in combos]  # row offset within a group -> combination
    lo0, hi0 = fast.outward(list(region.lo), list(region.hi))
    lo0, hi0 = np.array(lo0), np.array(hi0)
    width0 = hi0 - lo0
    live = width0 > 0
    tree = SplitTree()
    falsify = attack.InSearch(fnet, region, lambda q: attack.confirm(net, spec, q))
    stack_lo, stack_hi, stack_id = [lo0], [hi0], [0]
    depth = {0: 0}  # input splits above each open node (the stall trigger, ``star.Stall``)
    stall = star.Stall(bg, region, combos, lambda q: attack.confirm(net, spec, q), stats) \
        if bg is not None and star.STALL_DEPTH is not None else None
    bar = _bar(progress, label)
    done = 0.0
    boxes0 = stats["boxes"]
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
            trace: dict | None = {} if split == "relax" and method == "crown" else None
            if bg is not None:
                lb = table.bound(lo, hi)
            elif method == "crown":
                lb, forms = crown_bounds(layers, lo, hi, want_lam=True, trace=trace)
            else:
                lb, _, forms = fast.forward_bounds(layers, lo, hi, want_forms=True)
            best_k = np.stack([lb[:, a:b].argmax(1) for a, b in groups], 1)  # (B, J)
            best = np.stack([lb[:, a:b].max(1) for a, b in groups], 1)
            proven = (best > (EPS if bg is None else TABLE_EPS)).all(1)
            idx = np.nonzero(proven)[0]
            # (every leaf replays with the certificate's method: marking the leaves the forward
            # relaxation also proves cost the search more than it saved the replay; bench/README)
            for i in idx:
                proofs = [[choice(names[j][best_k[i, j]]), threshold(best[i, j])] for j in range(len(groups))]
                tree.nodes[ids[i]] = ("leaf", proofs)
            stats["leaves"] += int(proven.sum())
            vol = np.prod(np.where(live, (hi - lo) / np.where(live, width0, 1), 1.0), axis=1)
            done += float(vol[proven].sum())
            open_ = np.nonzero(~proven)[0]
            smart = (
                None if bg is not None else smart_dims(
                    layers,
                    groups,
                    lo[open_],
                    hi[open_],
                    live,
                    crown_bounds if method == "crown" else fast.forward_bounds,
                )
                if split == "smart"
                else None
            )
            worst = best[open_].argmin(1)  # per open box: its worst disjunct's best row
            rows = np.array([groups[j][0] for j in worst], dtype=int) + best_k[open_, worst]
            if bg is not None and open_.size:
                w_open = hi[open_] - lo[open_]
                relax_score, grad = table.scores(open_, rows, w_open)
                relax_score += 1e-3 * grad * w_open
                forms = np.zeros((*lb.shape, lo.shape[1]))
                forms[open_, rows] = grad
                if split == "relax":
                    trace = {}  # (use relax_score below)
            elif trace is not None and open_.size:
                w_open = hi[open_] - lo[open_]
                # the bound's gradient breaks ties where no ReLU is relaxed any more
                relax_score = relaxation_scores(trace, open_, rows, w_open)
                relax_score += 1e-3 * np.abs(forms[open_, rows]) * w_open
            if open_.size:  # falsification alongside: the bound's minimisers, PGD (attack.InSearch)
                coef = table.coef if bg is not None else forms[open_, rows]
                found = falsify.step(lo[open_], hi[open_], best[open_].min(1), coef)
                if found is not None:
                    return found
            stalled = stats["boxes"] - boxes0 >= lp.AFTER_BOXES
            exact = _lp_candidates(trace, open_) if stalled and bg is None and method == "crown" else set()
            for n_i, i in enumerate(open_):
                out = None  # a subtree closing the box, or a counterexample (a list)
                if int(i) in exact:  # few unstable ReLUs: decide the box by ReLU splits and LPs
                    out = _lp_close(net, spec, fnet, region, layers, lo[i], hi[i], groups, names,
                                    deadline, stats)
                if out is None and stall is not None:  # deep in the input splits: LP multipliers
                    out = stall.close(depth[ids[i]], lo[i], hi[i], deadline)
                if isinstance(out, list):
                    return out
                if out is not None:
                    lp.graft(tree, ids[i], out)
                    stats["leaves"] += sum(1 for n in out.nodes if n[0] == "leaf")
                    done += float(vol[i])
                    continue
                j, row = int(worst[n_i]), int(rows[n_i])
                if split == "single":  # the best single atom's gradient, not a combination's
                    singles = [groups[j][0] + o for o, c in enumerate(names[j]) if len(c) == 1]
                    row = singles[int(np.argmax(lb[i, singles]))]
                w = hi[i] - lo[i]
                score = np.abs(forms[i, row]) * w
                dim = int(score.argmax()) if score.max() > 0 else int(w.argmax())
                if smart is not None:
                    dim = int(smart[n_i])
                elif trace is not None and relax_score[n_i].max() > 0:
                    dim = int(relax_score[n_i].argmax())
                if w[dim] <= 0 or not np.isfinite(score).all():
                    dim = int(w.argmax())
                if w[dim] <= 0:
                    return None  # a point box that cannot be bounded: give up (timeout)
                v = float(min(max(lo[i, dim] + w[dim] * 0.5, lo[i, dim]), hi[i, dim]))
                a, b = tree.split(ids[i], dim, v)
                up_lo = lo[i].copy()
                up_lo[dim] = v
                lw_hi = hi[i].copy()
                lw_hi[dim] = v
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


def _lp_candidates(trace: dict | None, open_: np.ndarray) -> set[int]:
    """The open boxes (batch indices) with at most ``lp.MAX_UNSTABLE`` unstable ReLUs, which
    ``lp.close_box`` decides; none without highspy or without the CROWN trace."""
    if trace is None or not lp.available() or not open_.size or "shift" not in trace:
        return set()
    n = sum((t[open_] > 0).sum(1) for t in trace["shift"].values())
    return {int(i) for i in open_[n <= lp.MAX_UNSTABLE]}


def _lp_close(net, spec, fnet, region, layers, lo, hi, groups, names, deadline, stats) -> Any:
    """``lp.close_box`` on one open box, its counterexamples confirmed exactly: a ReLU-split tree,
    a counterexample, or None (the box goes on with input splitting)."""
    stats["lp_boxes"] = stats.get("lp_boxes", 0) + 1

    def confirm(x: np.ndarray) -> list[Fraction] | None:
        return lp.counterexample(net, fnet, spec, region, x, lo, hi)

    out = lp.close_box(layers, hidden_widths(net), lo, hi, groups, names, deadline, stats, confirm)
    if isinstance(out, lp.SplitTree):
        stats["lp_closed"] = stats.get("lp_closed", 0) + 1
    return out


class _TableBoxes:
    """A region's objective rows bounded on the bound table: ``fast_engine``'s CROWN forward pass and
    its bound of the exact objective forms (``graph_vnn.objective_forms``), the computation the
    checker's fast replay makes per leaf; and the "relax" branching scores recomputed from that
    pass's ReLU argument bounds (``branching.table_relaxation_scores``)."""

    def __init__(self, bg: Any, fnet: Any, region: Region, combos: list[list[tuple[int, ...]]]):
        self.fg = fe.compiled(bg)
        forms, self.index = objective_forms(bg, region, combos)
        self.F = fe.forms_of(self.fg, forms)
        self.relus = [k for k, n in enumerate(bg.nodes) if n.kind == "fn"]
        self.W = [W for W, _ in fnet.layers]
        # each row's coefficients over the outputs (for the branching scores only)
        self.C = np.array([np.sum([[float(v) for v in dj[k].a] for k in c], 0)
                           for dj, cs in zip(region.disjuncts, combos) for c in cs])
        sizes = [bg.nodes[k].size for k in self.relus]
        self.chain = (len(self.relus) == len(self.W) - 1
                      and all(n.fn == "relu" for n in bg.nodes[1:])
                      and sizes == [W.shape[0] for W in self.W[:-1]])
        self.st: Any = None
        self.coef: Any = None  # the last ``scores`` call's signed input coefficients (for attack)

    def bound(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Certified lower bounds (B, R) of the rows over each box."""
        self.st = fe.forward(self.fg, lo, hi, "crown")
        return fe.bound_forms(self.st, self.F)

    def scores(self, boxes: np.ndarray, rows: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """("relax" scores, |input coefficients|) (len(boxes), d) of the last batch's listed boxes."""
        if not self.chain:  # (not the chain's layout: split the widest dimension)
            return np.zeros_like(width), np.zeros_like(width)
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
