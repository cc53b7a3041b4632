"""Exact leaves by linear programming (untrusted search, checked output): HiGHS through ``highspy``.

Where every ReLU of a subproblem has a known phase (split on the path, or stable by the sound CROWN
bounds the checker replays), the network is affine on the subproblem's region R = box ∩ {sgn_j z_j(x)
>= 0 for the split neurons j}, so min over R of a final row f is a linear program over the inputs.
Its optimal row duals q >= 0 are the multipliers of the certificate format's ``"mult"`` extras: by
LP duality min over the box of f(x) - Σ q_j sgn_j z_j(x) equals the LP minimum, and that is what
the checker's CROWN replay computes for a leaf whose relaxations are all exact (split neurons are
clamped, stable ones are the identity or zero). So an LP leaf needs no new trusted code: the search
records the (rounded, clipped) duals and re-bounds the leaf with the replay's own ``crown_bounds``
before it trusts it. An LP minimum below zero gives a point of R where the row is negative, a
counterexample candidate that ``attack`` confirms by exact evaluation.

``close_box`` decides one input box of the input-split search this way (nnenum's star sets): it
splits the box's few unstable neurons in layer order (``["relu", layer, i]`` nodes under the box),
bounds each subproblem with CROWN, and ends a branch whose phases are all fixed with LPs.
Without ``highspy`` installed, ``available()`` is False and the searches behave as before.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates.fast_crown import crown_bounds
from .tree import SplitTree, choice, threshold

_HS: list[Any] = []  # the highspy module once imported (None without it): 0.2 s, so on first use

EPS = 1e-8
DIGITS = 7  # significant digits of a recorded multiplier (any value >= 0 is sound)
#: an open box of the input-split search is handed to ``close_box`` when it has at most this many
#: unstable neurons (bench/README.md, "Exact LP leaves")
MAX_UNSTABLE = 8
#: ... once the region's input splitting has bounded this many boxes (work, not seconds, so the
#: switch does not depend on the machine's load): before that, halving boxes closes them faster
#: (bench/README.md). The largest ACAS Xu tree of expected.csv takes ~9,000.
AFTER_BOXES = 20_000
LP_SECONDS = 10.0  # HiGHS's limit per solve
MAX_NODES = 256  # ReLU-split nodes ``close_box`` may open under one box before it gives up


_BANNER = [True]


def _highs() -> Any:
    """A silent HiGHS instance. The first one prints HiGHS's banner on the process's stdout (C
    level), where the CLI prints its verdict, so fd 1 goes to /dev/null while it is made."""
    highspy = _highspy()
    if not _BANNER[0]:
        h = highspy.Highs()
    else:
        import os
        import sys

        sys.stdout.flush()
        saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        try:
            h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(null)
            _BANNER[0] = False
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", LP_SECONDS)  # (a stuck solve ends as "not optimal": no leaf)
    return h


def _highspy() -> Any:
    if not _HS:
        try:  # (an optional extra: ``pip install torchlean[lp]``)
            import highspy
        except ImportError:  # pragma: no cover - exercised only without the extra
            highspy = None
        _HS.append(highspy)
    return _HS[0]


def available() -> bool:
    """Whether the LP solver (highspy) is installed."""
    return _highspy() is not None


def _affines(layers: list[tuple]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(a[1], a[3]) for a in layers if a[0] == "affine"]


def phase_maps(
    layers: list[tuple], active: np.ndarray, widths: tuple[int, ...]
) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """The network with every ReLU's phase fixed (``active`` (H,) bool over all hidden neurons) is
    affine: per hidden layer the pre-activation map z_k = A_k x + b_k, and the final map (C, d),
    in float64 (a search heuristic: the certificate is re-bounded by the replay)."""
    affs = _affines(layers)
    offs = np.cumsum((0, *widths))
    A, b = np.eye(affs[0][0].shape[1]), np.zeros(affs[0][0].shape[1])
    pre = []
    for k, (M, c) in enumerate(affs):
        A, b = M @ A, M @ b + c
        if k == len(affs) - 1:
            return pre, (A, b)
        pre.append((A, b))
        on = active[offs[k] : offs[k + 1]].astype(np.float64)
        A, b = A * on[:, None], b * on
    raise ValueError("a network without affine steps")


class LeafLP:
    """The LP of one fully phase-fixed subproblem: inputs in [lo, hi] and, per split neuron
    (``split``: (layer, i, sgn)), sgn·z(x) >= 0; objectives are final rows, set in turn."""

    def __init__(self, layers, widths, lo, hi, active, split: list[tuple[int, int, int]]):
        highspy = _highspy()
        pre, (self.C, self.d) = phase_maps(layers, active, widths)
        self.split = split
        d = lo.size
        G = np.array([s * pre[k][0][i] for k, i, s in split]).reshape(len(split), d)
        g = np.array([s * pre[k][1][i] for k, i, s in split])
        self.h = _highs()
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = d, len(split)
        lp.col_cost_ = np.zeros(d)
        lp.col_lower_, lp.col_upper_ = np.asarray(lo, float), np.asarray(hi, float)
        lp.row_lower_ = -g
        lp.row_upper_ = np.full(len(split), highspy.kHighsInf)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = np.arange(0, d * len(split) + 1, d, dtype=np.int32)
        lp.a_matrix_.index_ = np.tile(np.arange(d, dtype=np.int32), len(split))
        lp.a_matrix_.value_ = G.ravel()
        self.h.passModel(lp)
        self.d_in = d
        self.G, self.g, self.lo, self.hi = G, g, lp.col_lower_, lp.col_upper_
        self._farkas: tuple[float, np.ndarray] | None = None

    def farkas(self) -> tuple[float, np.ndarray] | None:
        """For an empty region: (t* < 0, w) with w >= 0, Σ w = 1 and Σ w_j sgn_j z_j(x) <= t* on the
        whole box (the duals of max t s.t. sgn_j z_j(x) >= t), so the multipliers λ·w add at least
        λ·(-t*) to any row's bound; None if the LP does not say so."""
        if self._farkas is None:
            highspy = _highspy()
            n, d = len(self.split), self.d_in
            h = _highs()
            lp = highspy.HighsLp()
            lp.num_col_, lp.num_row_ = d + 1, n
            lp.col_cost_ = np.concatenate([np.zeros(d), [-1.0]])  # max t
            inf = highspy.kHighsInf
            lp.col_lower_ = np.concatenate([self.lo, [-inf]])
            lp.col_upper_ = np.concatenate([self.hi, [inf]])
            lp.row_lower_, lp.row_upper_ = -self.g, np.full(n, inf)
            lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
            lp.a_matrix_.start_ = np.arange(0, (d + 1) * n + 1, d + 1, dtype=np.int32)
            lp.a_matrix_.index_ = np.tile(np.arange(d + 1, dtype=np.int32), n)
            lp.a_matrix_.value_ = np.concatenate([self.G, -np.ones((n, 1))], 1).ravel()
            h.passModel(lp)
            h.run()
            if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                return None
            t = -h.getInfo().objective_function_value
            self._farkas = (t, np.maximum(np.array(h.getSolution().row_dual), 0.0))
        t, w = self._farkas
        return (t, w) if t < 0 and w.sum() > 0 else None

    def solve(self, row: int) -> tuple[str, float, np.ndarray | None, np.ndarray | None]:
        """("optimal", min of final row ``row`` over the region, primal x, row duals q >= 0 of the
        split constraints), or ("infeasible" | HiGHS's status, nan, None, None)."""
        highspy = _highspy()
        self.h.changeColsCost(self.d_in, np.arange(self.d_in, dtype=np.int32), self.C[row])
        self.h.run()
        st = self.h.getModelStatus()
        # (the columns are bounded, so "unbounded or infeasible" can only be infeasible)
        if st in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible):
            return "infeasible", float("nan"), None, None
        if st != highspy.HighsModelStatus.kOptimal:
            return str(st), float("nan"), None, None
        sol = self.h.getSolution()
        value = self.h.getInfo().objective_function_value + float(self.d[row])
        return "optimal", value, np.array(sol.col_value), np.array(sol.row_dual)


def _short(v: float) -> str:
    return str(Fraction(f"{v:.{DIGITS}g}"))


def clean(q: np.ndarray) -> np.ndarray:
    """Duals as a certificate records them: negatives clipped to 0, tiny ones dropped, the rest to
    ``DIGITS`` significant digits (exactly the values the checker reads back)."""
    q = np.where(q > 1e-12 * max(1.0, float(np.abs(q).max(initial=0.0))), q, 0.0)
    return np.array([float(Fraction(_short(v))) if v > 0 else 0.0 for v in q])


def mult_entries(q: np.ndarray, split: list[tuple[int, int, int]]) -> list[list]:
    """The ``"mult"`` entries [layer, i, "p/q"] of the non-zero multipliers."""
    return [[k, i, _short(v)] for v, (k, i, _) in zip(q, split) if v > 0]


def counterexample(net, fnet, spec, region, x: np.ndarray, lo: np.ndarray, hi: np.ndarray
                   ) -> list[Fraction] | None:
    """An LP minimiser as a counterexample, confirmed by exact evaluation (as float32 and as the
    float64 point itself, clipped to the box)."""
    from . import attack

    x = np.clip(x, lo, hi)
    q32 = attack.box_point(x, region)  # float32 where the box holds one (an ONNX runtime's input)
    if attack.confirm(net, spec, q32):
        return q32
    q = [Fraction(float(v)) for v in x]
    return q if attack.confirm(net, spec, q) else None


def close_box(
    layers: list[tuple],
    widths: tuple[int, ...],
    lo: np.ndarray,
    hi: np.ndarray,
    groups: list[tuple[int, int]],
    names: list[list[tuple[int, ...]]],
    deadline: float,
    stats: dict[str, Any],
    confirm: Any = None,
    max_nodes: int = MAX_NODES,
    batch: int = 16,
) -> SplitTree | list[Fraction] | None:
    """Decide one input box exactly: a ReLU-split tree (root = the box) whose leaves prove, per
    disjunct (row group ``groups[j]``, combinations ``names[j]``), some row > 0 on their region; or
    a counterexample (``confirm(x)``: an exactly confirmed point or None); or None when it needs
    more than ``max_nodes`` nodes, passes the deadline, or an LP leaf does not replay."""
    offs = np.cumsum((0, *widths))
    H = int(offs[-1])
    tree = SplitTree()
    stack: list[tuple[int, np.ndarray]] = [(0, np.full(H, -1, dtype=np.int8))]
    nodes = 0
    while stack:
        part, stack = stack[-batch:], stack[:-batch]
        nodes += len(part)
        if nodes > max_nodes or time.perf_counter() > deadline:
            return None
        ph_b = np.stack([p[1] for p in part])
        B = len(part)
        blo, bhi = np.broadcast_to(lo, (B, lo.size)), np.broadcast_to(hi, (B, hi.size))
        lbs, _, relax_b = crown_bounds(layers, blo, bhi, phases=ph_b, want_relax=True)
        for b, (node, ph) in enumerate(part):
            lb = lbs[b]
            relax = [tuple(x[:, b : b + 1] for x in r) for r in relax_b]
            best = [int(np.argmax(lb[a:e])) for a, e in groups]
            if all(lb[a + k] > EPS for (a, _), k in zip(groups, best)):
                tree.nodes[node] = ("leaf", [[choice(names[j][k]), threshold(lb[groups[j][0] + k])]
                                             for j, k in enumerate(best)])
                stats["lp_crown_leaves"] = stats.get("lp_crown_leaves", 0) + 1
                continue
            unst = np.concatenate([r[4][:, 0] for r in relax])
            free = unst & (ph < 0)
            if free.any() and (ph >= 0).any():  # an empty region (star sets' infeasible branch)?
                out = _lp_leaf(layers, widths, lo, hi, ph, relax, lb, groups, names, stats, None, unst)
                if out is not None:
                    tree.nodes[node] = out
                    continue
            if free.any():  # split the widest-relaxed unstable neuron of the first layer that has one
                t = np.concatenate([r[1][:, 0] for r in relax])
                h0 = int(np.nonzero(free)[0][0])
                k = int(np.searchsorted(offs, h0, side="right") - 1)
                cand = np.nonzero(free[offs[k] : offs[k + 1]])[0] + offs[k]
                h = int(cand[np.argmax(t[cand])])
                a, c = tree.split_relu(node, k, h - int(offs[k]))
                for child, v in ((c, 1), (a, 0)):  # the inactive child is popped first
                    p = ph.copy()
                    p[h] = v
                    stack.append((child, p))
                continue
            out = _lp_leaf(layers, widths, lo, hi, ph, relax, lb, groups, names, stats, confirm)
            if out is None or isinstance(out, list):
                return out
            tree.nodes[node] = out
    return tree


def _lp_leaf(layers, widths, lo, hi, ph, relax, lb, groups, names, stats, confirm, unst=None) -> Any:
    """The leaf of a fully phase-fixed subproblem: ("leaf", proofs) with LP multipliers where CROWN
    alone falls short, re-bounded by ``crown_bounds`` (the checker's replay); a confirmed
    counterexample; or None. With ``unst`` (the unstable neurons of a subproblem not fully fixed)
    only an empty region is closed (a Farkas combination of its split constraints, which are affine
    in x when every neuron of the layers before them has a phase)."""
    offs = np.cumsum((0, *widths))
    active = np.concatenate([r[0][:, 0] for r in relax]) > 0  # (stable: upper slope 1 or 0)
    hs = np.nonzero(ph >= 0)[0]
    layer = np.searchsorted(offs, hs, side="right") - 1
    split = [(int(k), int(h - offs[k]), 1 if ph[h] == 1 else -1) for k, h in zip(layer, hs)]
    if unst is not None and (unst & (ph < 0))[: offs[max(k for k, _, _ in split)]].any():
        return None  # a split neuron's z is not affine on the region: no exact LP
    lp = LeafLP(layers, widths, lo, hi, active, split)
    stats["lps"] = stats.get("lps", 0) + 1
    if unst is not None:
        if lp.farkas() is None:
            return None
        confirm = None
    n_rows = lb.size
    mult = np.zeros((1, n_rows, int(offs[-1])))
    idx = [offs[k] + i for k, i, _ in split]
    chosen = []
    for a, b in groups:
        k = int(np.argmax(lb[a:b]))
        if lb[a + k] > EPS:
            chosen.append((k, None))
            continue
        got = None
        for k in np.argsort(-lb[a:b]):  # rows in order of their CROWN bound
            if unst is None:
                status, value, x, q = lp.solve(a + int(k))
                stats["lp_solves"] = stats.get("lp_solves", 0) + 1
            else:  # (its emptiness is known: only the Farkas multipliers are needed)
                status = "infeasible"
            if status == "infeasible":  # an empty region: a Farkas combination of its constraints
                far = lp.farkas()
                if far is None:
                    return None
                t, w = far
                got = (int(k), clean(w * (max(0.0, -float(lb[a + k])) + 1.0) / -t))
                break
            if status != "optimal":
                return None
            if value < 0 and confirm is not None:  # a point where this row is negative
                found = confirm(x)
                if found is not None:
                    return found
            if value > EPS:
                got = (int(k), clean(q))
                break
        if got is None:
            return None  # no single row is positive on the region: not decided here
        chosen.append((got[0], got[1]))
        mult[0, a + got[0], idx] = got[1]
    # re-bound with the recorded multipliers, as the replay does, before trusting any of it
    lb2 = crown_bounds(layers, lo[None], hi[None], phases=ph[None], mult=mult)[0] if mult.any() else lb
    proofs = []
    for j, (k, q) in enumerate(chosen):
        row = groups[j][0] + k
        if not lb2[row] > EPS:
            stats["lp_rejected"] = stats.get("lp_rejected", 0) + 1
            return None
        proof: list[Any] = [choice(names[j][k]), threshold(lb2[row])]
        if q is not None and q.any():
            proof.append({"mult": mult_entries(q, split)})
        proofs.append(proof)
    stats["lp_leaves"] = stats.get("lp_leaves", 0) + 1
    return ("leaf", proofs)


def fixed_leaf(layers, widths, lo, hi, ph, relax, lb, names, stats, confirm=None) -> Any:
    """``relu_bab``'s leaf where every phase is fixed (one disjunct, rows ``names``): ("leaf",
    proofs) with the LP's duals as the split multipliers, re-bounded as the replay does; a
    counterexample that ``confirm`` confirmed; or None (no highspy, the LP's minimum is not
    positive, or the replay disagrees)."""
    if not available():
        return None
    return _lp_leaf(layers, widths, lo, hi, ph, relax, lb, [(0, len(names))], [names], stats, confirm)


def graft(tree: SplitTree, node: int, sub: SplitTree) -> None:
    """Put ``sub`` (a tree rooted at one box) in place of ``tree``'s open node ``node``."""
    base = len(tree.nodes) - 1  # sub's node s > 0 becomes base + s; its root becomes ``node``
    ids = [node] + [base + s for s in range(1, len(sub.nodes))]
    tree.nodes += [None] * (len(sub.nodes) - 1)
    for s, n in enumerate(sub.nodes):
        if n is not None and n[0] in ("split", "relu"):
            n = (*n[:3], ids[n[3]], ids[n[4]])
        tree.nodes[ids[s]] = n
