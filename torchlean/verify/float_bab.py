"""Float-sound input splitting: one branch and bound whose boxes carry their own epsilon (untrusted
search; ``certificates.float_vnn.check_vnn_float`` replays what it returns).

The float loop (``float32.verify_float32``) used to bisect the box and run a whole real search of
the grown property per part: a part whose search ran out of its time share was bisected and its
halves searched again from scratch, the search's own split tree thrown away (ACAS Xu 1_1 prop 5:
the real proof of the original property takes ~8 s and 4,400 leaves, the grown one with a 1e-4
epsilon ~10 s, yet the loop timed out at 60 s: 48 of its 58 s of searches ran out of their share).
Here the two partitions are one: a box of the input-split search (``bab``'s batches, bound on the
table's fast engine) is proved when, for every disjunct, some combination of its atoms has a
positive lower bound after the atoms are grown by the epsilon of the box's *owner*, the nearest
ancestor whose own ``errorbound`` certificate was made (an epsilon certified on a box holds on every
sub-box). The lower bound of a grown row is the real row's bound less its growth, so one forward
pass per box serves every epsilon. A box whose real bound is positive but whose grown bound is not
(epsilon, not the relaxation, is what fails) gets its own walk, at least ``WALK_GAP`` bisections
below its owner's; every other open box is bisected as ``bab`` does ("relax" scores of its worst
row) and only those are falsified (``attack.InSearch``, on the original property: a real
counterexample is then tried in binary32 by the caller).

The result is the partitioned ``vnn-unsat-float`` form: each maximal subtree whose leaves share an
owner is one leaf {owner's errorbound, a ``vnn-unsat`` proof of the property restricted to the
subtree's box and grown by the owner's epsilon, the subtree's splits and leaf proofs}; the splits
above those are the certificate's splits. Nothing here is trusted: a leaf's claimed bound is half
the search's (``tree.threshold``), and the caller replays the whole certificate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates.core import OutOfTime, time_limit
from ..certificates.fast_forms import outward
from ..certificates.float_vnn import epsilons, grow, restrict
from ..certificates.property import Spec
from . import attack, exact_point, table
from .bab import METHODS, _TableBoxes
from .tree import SplitTree, choice, combos, threshold

Box = list[tuple[Fraction, Fraction]]

#: a box whose epsilon blocks the proof gets its own walk only this many bisections below its
#: owner's walk (``PENALTY`` times more under an owner below which a walk did not help): a walk is
#: ~45-70 ms on ACAS Xu against ~1 ms per box bounded in a batch. 3 against 2 and 4 (1_1 prop 5 /
#: 1_1 prop 2 / 1_7 prop 2, no replay, load ~2): 17.6 / 11.1 / 17.4 s against 22.5 / 28 / timeout
#: (at load 4) and 19.5 / 16.6 / 27.2 s
WALK_GAP = 3
#: a box walks when its growth takes more than this share of its best row's value at its centre,
#: divided by how many of its owner's gaps it lies below it (``_blocked``: deeper, readier)
WALK_RATIO = 0.5
#: a walk that leaves the largest epsilon above this fraction of its owner's did not help
USEFUL = 0.7
#: a walk that did not help multiplies its owner's gap (and the new owner's) by this
PENALTY = 4
#: a grown row proves a box only above this share of its magnitude (the float estimate
#: lb - growth against the checker's replay of the grown form: half of it is claimed anyway)
GUARD = 1e-9


@dataclass
class Outcome:
    """``float_bab``'s answer: "unsat" with ``part`` (a partitioned-form tree over the box it was
    given), "sat" with ``x`` (a real counterexample of the original property, or a binary32
    point ``try_point`` accepted: not yet a checked binary32 one), "give-up" (a box that no
    bisection can split is not proved), or "timeout"."""

    verdict: str
    part: dict[str, Any] | None = None
    x: list[Fraction] | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def _binary32_point(lo: np.ndarray, hi: np.ndarray) -> list[Fraction] | None:
    """The one binary32 point of the float64 box [lo, hi] when it holds exactly one (along every
    input at most one binary32 value, and one), else None."""
    f32, out = np.float32, []
    for a, b in zip(lo, hi):
        f = f32(a)
        if float(f) < a:
            f = np.nextafter(f, f32(np.inf))
        if float(f) > b or float(np.nextafter(f, f32(np.inf))) <= b:
            return None
        out.append(Fraction(float(f)))
    return out


@dataclass
class _Owner:
    eb: dict[str, Any]
    eps: np.ndarray  # per output, float64 rounded up
    growth: np.ndarray  # per row: sum over its atoms of sum_j |a_j| eps_j (float, a little high)
    gap: int  # the bisections below this walk before a box of it may walk again
    node: int  # the search node it was made for (-1: an ancestor's, given)


def float_bab(t: table.Target, spec: Spec, box: Box, eb: dict[str, Any],
              walk: Callable[[Box], dict[str, Any] | None], deadline: float, method: str = "crown",
              batch: int = 64, seed: int = 0, made_here: bool = False,
              try_point: Callable[[list[Fraction]], Any] | None = None,
              try_near: Callable[[list[Fraction]], Any] | None = None) -> Outcome:
    """Prove ``spec`` (the whole property) on ``box`` (``restrict(spec, box)`` has one region) for
    the binary32 run, starting from ``eb`` (an errorbound certificate whose box covers the region);
    ``walk(box)``: a new errorbound certificate for a sub-box (None: out of time or budget);
    ``made_here``: ``eb`` was made for this box's region (else an ancestor's: stats "inherited"
    counts the leaves proved with an ancestor's certificate); ``try_point(x)``: not None when the
    binary32 point x is a counterexample of the binary32 run (tried on open boxes holding one);
    ``try_near(x)``: not None when a binary32 point near the point x is one (``exact_point.Probe``'s
    ``also``: tried at the exact candidates and near misses the real replay refused, on the same
    doubling schedule as ``bab``'s, and at a box no bisection can split)."""
    part = restrict(spec, box)
    assert len(part.regions) == 1, "float_bab takes a box meeting one input region"
    region = part.regions[0]
    stats: dict[str, Any] = {"boxes": 0, "walks": 0}
    cs = [combos(len(d)) for d in region.disjuncts]
    if any(not d for d in region.disjuncts):
        return Outcome("timeout", stats=stats)
    boxes = _TableBoxes(t, region, cs, METHODS[method])
    groups = [(min(ix.values()), max(ix.values()) + 1) for ix in boxes.index]
    names = [list(c) for c in cs]
    # per row (combination), per output: the sum of |a_j| over its atoms (the row's growth per eps)
    G = np.array([np.sum([[abs(float(v)) for v in dj[k].a] for k in c], 0)
                  for dj, c_s in zip(region.disjuncts, cs) for c in c_s], dtype=np.float64)
    bsum = np.array([float(sum((dj[k].b for k in c), Fraction(0)))
                     for dj, c_s in zip(region.disjuncts, cs) for c in c_s], dtype=np.float64)
    owners: list[_Owner] = []

    def own(e: dict[str, Any], gap: int, node: int) -> int:
        eps = np.array([float(x) for x in epsilons(e)]) * (1 + 1e-12)
        owners.append(_Owner(e, eps, G @ eps * (1 + 1e-12), gap, node))
        return len(owners) - 1

    own(eb, WALK_GAP, 0 if made_here else -1)
    lo0, hi0 = (np.array(v) for v in outward(list(region.lo), list(region.hi)))
    tree = SplitTree()
    leaf_owner: dict[int, int] = {}
    # (the real falsification's refused near misses and the exact points built from them: a real
    # tie such as Y_0 >= M at a kink 1/3 has binary32 points a few steps away whose float32
    # outputs reach M; ``try_near`` searches those)
    probe = exact_point.Probe(spec, table.confirmer(t, spec), t.fnet.forward, t.fnet.layers, also=try_near)
    falsify = attack.InSearch(t.fnet, region, probe.confirm, seed=seed)
    n_batches = 0
    tried: set[tuple[Fraction, ...]] = set()  # (binary32 points given to ``try_point``)
    st_lo, st_hi, st_id, st_own, st_gap = [lo0], [hi0], [0], [0], [0]
    try:
        with time_limit(deadline):
            while st_id:
                if time.monotonic() > deadline:
                    return Outcome("timeout", stats=stats)
                k = min(batch, len(st_id))
                lo, hi = np.array(st_lo[-k:]), np.array(st_hi[-k:])
                ids, ows, gaps = st_id[-k:], st_own[-k:], st_gap[-k:]
                del st_lo[-k:], st_hi[-k:], st_id[-k:], st_own[-k:], st_gap[-k:]
                stats["boxes"] += k
                lb = boxes.bound(lo, hi)  # (B, R): the real rows' certified lower bounds
                real = np.stack([lb[:, a:b].max(1) for a, b in groups], 1)
                real_ok = (real > 0).all(1)
                ows = list(ows)
                # the rows at the boxes' centres: what splitting alone could reach (``_blocked``)
                mid = t.fnet.forward((lo + hi) / 2) @ boxes.C.T - bsum
                for i in range(k):  # epsilon is the larger obstacle: walk this box if far enough down
                    o = owners[ows[i]]
                    ratio = WALK_RATIO * o.gap / max(gaps[i], 1)  # (further below its walk: readier)
                    if gaps[i] >= o.gap and _blocked(lb[i], mid[i], o.growth, groups, ratio):
                        e = walk([(Fraction(float(a)), Fraction(float(b))) for a, b in zip(lo[i], hi[i])])
                        if e is not None:
                            stats["walks"] += 1
                            new = own(e, WALK_GAP, ids[i])
                            helped = owners[new].eps.max() <= USEFUL * o.eps.max()
                            if not helped:  # (near the bottom under o: its other boxes wait deeper)
                                o.gap = owners[new].gap = PENALTY * o.gap
                            ows[i], gaps[i] = new, 0
                open_ = []
                for i in range(k):
                    proofs = _proved(lb[i], owners[ows[i]].growth, groups)
                    if proofs is None:
                        open_.append(i)
                        continue
                    tree.nodes[ids[i]] = ("leaf", [[choice(names[j][r]), threshold(v)] for j, (r, v) in
                                                   enumerate(proofs)])
                    leaf_owner[ids[i]] = ows[i]
                if not open_:
                    continue
                oi = np.array(open_)
                grown = np.stack([lb[i] - owners[ows[i]].growth for i in open_])
                gbest_k = np.stack([grown[:, a:b].argmax(1) for a, b in groups], 1)
                gbest = np.stack([grown[:, a:b].max(1) for a, b in groups], 1)
                worst = gbest.argmin(1)
                rows = np.array([groups[j][0] for j in worst], dtype=int) + gbest_k[np.arange(len(oi)), worst]
                w_open = hi[oi] - lo[oi]
                score, grad = boxes.scores(oi, rows, w_open)
                score += 1e-3 * grad * w_open
                bad = ~real_ok[oi]  # the real bound fails too: falsify the original property there
                if bad.any():
                    found = falsify.step(lo[oi][bad], hi[oi][bad], real[oi][bad].min(1), boxes.coef[bad],
                                          stats["boxes"])
                    if found is not None:
                        return Outcome("sat", x=found, stats=stats)
                n_batches += 1
                found = probe.propose() if n_batches & (n_batches - 1) == 0 else None
                if found is None and try_near is not None and n_batches & (n_batches - 1) == 0:
                    found = _epsilon_blocked(t, region, lo[oi], hi[oi], real_ok[oi], boxes.coef, try_near)
                if found is not None:
                    return Outcome("sat", x=found, stats=stats)
                for n_i, i in enumerate(open_):
                    w = hi[i] - lo[i]
                    dim = int(score[n_i].argmax()) if score[n_i].max() > 0 else int(w.argmax())
                    if w[dim] <= 0 or not np.isfinite(score[n_i]).all():
                        dim = int(w.argmax())
                    x32 = _binary32_point(lo[i], hi[i])
                    if x32 is not None and try_point is not None and tuple(x32) not in tried:
                        # a box holding one binary32 point, still open: that point is tried
                        # (audit28: where the original property holds in the reals but not in
                        # binary32, e.g. a float output landing on the bound, no real
                        # counterexample is falsified; the box was bisected to float64 width and
                        # the search ended "timeout" at once, the float counterexample never tried)
                        tried.add(tuple(x32))
                        if try_point(x32) is not None:
                            return Outcome("sat", x=x32, stats=stats)
                    if w[dim] <= 0:
                        found = probe.propose()  # (a last look at the refused points)
                        if found is not None:
                            return Outcome("sat", x=found, stats=stats)
                        return Outcome("give-up", stats=stats)  # a point box the bounds cannot prove
                    v = float(min(max(lo[i, dim] + w[dim] * 0.5, lo[i, dim]), hi[i, dim]))
                    if not lo[i, dim] < v < hi[i, dim]:
                        found = probe.propose()
                        if found is not None:
                            return Outcome("sat", x=found, stats=stats)
                        return Outcome("give-up", stats=stats)  # no float strictly inside: give up
                    (a, _, lw_hi), (b, up_lo, _) = tree.bisect(ids[i], lo[i], hi[i], dim, v)
                    st_lo += [up_lo, lo[i]]
                    st_hi += [hi[i], lw_hi]
                    st_id += [b, a]
                    st_own += [ows[i], ows[i]]
                    st_gap += [gaps[i] + 1, gaps[i] + 1]
    except OutOfTime:
        return Outcome("timeout", stats=stats)
    stats["owners"] = len(owners)
    return Outcome("unsat", part=_parts(t, spec, box, tree, leaf_owner, owners, method, stats), stats=stats)


def _epsilon_blocked(t: table.Target, region: Any, lo: np.ndarray, hi: np.ndarray, real_ok: np.ndarray,
                     coef: Any, try_near: Callable[[list[Fraction]], Any]) -> list[Fraction] | None:
    """A binary32 counterexample near the most violating leaf minimiser of the open boxes whose
    real bound holds (epsilon, not the relaxation, keeps them open: the real property may hold
    there by less than the float32 run's rounding error, e.g. 25 x - 1 >= 0 just below x = 1/25,
    where float32's 25 x rounds to 1; no real falsification runs on them), or None."""
    if not real_ok.any() or coef is None:
        return None
    pts = attack.leaf_minimisers(lo[real_ok], hi[real_ok], np.nan_to_num(np.asarray(coef)[real_ok]))
    with np.errstate(invalid="ignore", over="ignore"):
        m = attack.margins(region, t.fnet.forward(pts)).min(1)
    if not np.isfinite(m).any():
        return None
    x = pts[int(np.nanargmin(np.where(np.isfinite(m), m, np.inf)))]
    found = try_near([Fraction(float(v)) for v in x])
    return None if found is None else list(found[0])


def _blocked(lb: np.ndarray, mid: np.ndarray, growth: np.ndarray, groups: list[tuple[int, int]],
             ratio: float) -> bool:
    """Whether the box is open and its epsilon, not its relaxation, is what splitting cannot
    mend: in some disjunct the growth takes more than ``WALK_RATIO`` of the best row's value at
    the box's centre (an upper bound on what any bound of the box can reach; where the growth is
    smaller, bisecting alone gets there, ~1 ms per box against ~50 ms per walk on ACAS Xu)."""
    if _proved(lb, growth, groups) is not None:
        return False
    for a, b in groups:
        top = float(mid[a:b].max())
        if float((mid[a:b] - growth[a:b]).max()) < (1.0 - ratio) * top:
            return True
    return False


def _proved(lb: np.ndarray, growth: np.ndarray, groups: list[tuple[int, int]]
            ) -> list[tuple[int, float]] | None:
    """Per disjunct (row group), the best grown row and its bound, when every one is positive."""
    g = lb - growth
    out = []
    for a, b in groups:
        r = int(g[a:b].argmax())
        if not g[a + r] > GUARD * (1.0 + abs(float(lb[a + r])) + float(growth[a + r])):
            return None
        out.append((r, float(g[a + r])))
    return out


def _parts(t: table.Target, spec: Spec, box: Box, tree: SplitTree, leaf_owner: dict[int, int],
           owners: list[_Owner], method: str, stats: dict[str, Any]) -> dict[str, Any]:
    """The partitioned-form tree over ``box``: one leaf per maximal subtree whose leaves share an
    owner (its real proof: the subtree, against the property restricted to its box and grown by
    the owner's epsilon, as ``check_vnn_float`` rebuilds it), splits above; counts them in
    ``stats`` ("leaves", and "inherited": those whose certificate was made for a larger box)."""
    same: dict[int, int | None] = {}  # node -> its leaves' common owner (None: several)
    order, stack = [], [0]
    while stack:
        n = stack.pop()
        order.append(n)
        if tree.nodes[n][0] == "split":
            stack += [tree.nodes[n][3], tree.nodes[n][4]]
    for n in reversed(order):  # children before parents
        node = tree.nodes[n]
        if node[0] == "leaf":
            same[n] = leaf_owner[n]
        else:
            a, b = same[node[3]], same[node[4]]
            same[n] = a if a is not None and a == b else None

    def build(n: int, b: Box) -> dict[str, Any]:
        node = tree.nodes[n]
        if same[n] is not None:
            o = owners[same[n]]
            stats["leaves"] = stats.get("leaves", 0) + 1
            stats["inherited"] = stats.get("inherited", 0) + (o.node != n)
            gspec = grow(restrict(spec, b), epsilons(o.eb))
            cert = table.unsat_cert(t, gspec, [_preorder(tree, n)])
            cert["method"] = method
            return {"errorbound": o.eb, "real": cert}
        _, d, v, lo_id, hi_id = node
        q = Fraction(v)
        return {"split": [d, str(q)], "lo": build(lo_id, b[:d] + [(b[d][0], q)] + b[d + 1:]),
                "hi": build(hi_id, b[:d] + [(q, b[d][1])] + b[d + 1:])}

    return build(0, box)


def _preorder(tree: SplitTree, root: int) -> list[Any]:
    """``SplitTree.preorder`` of the subtree at ``root`` (input splits only)."""
    out, stack = [], [root]
    while stack:
        node = tree.nodes[stack.pop()]
        if node[0] == "split":
            out.append(["split", node[1], str(Fraction(node[2]))])
            stack += [node[4], node[3]]
        else:
            out.append(["leaf", *node[1:]])
    return out
