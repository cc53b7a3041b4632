"""Fast (float64, batched) replay of bound-graph VNN certificates (``graph_vnn``'s fast mode).

Leaves are replayed in batches by ``fast_engine`` (its error accounting and assumption); the
proofs that supply slopes or split multipliers are bounded in one batch per chunk of leaves
(``extras_lower``), each box its own leaf's certified variable bounds in the chunk's forward
state (``fast_engine.gather``) with that proof's own slopes (as floats: any slope gives a valid
line, the intercept is recomputed for the float actually used) and multipliers: the form
f - Σ q̃·sgn·z (``engine.mult_form``'s, q̃ = float(q) >= 0: any multiplier >= 0 gives a form at
most f on the leaf's region) starts the back-substitution as f's rows plus -q̃·sgn on the split
node's argument rows, replaced by their forms with the charges of any such step
(``fast_engine._through``). The claimed bounds are then compared exactly by
``bounds.check_leaf_proofs``, as in every other mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import fast_engine as fe
from .bounds import check_leaf_proofs, proof_combo
from .core import Rejected
from .fast_backsub import _best_backsub, _through, _weights
from .fast_forms import corners
from .lower import Aff, BoundGraph

CHUNK = 64


def _float_slopes(bg: BoundGraph, slopes: list[dict[int, list[Any]]]) -> dict[int, Any] | None:
    """Proofs' slopes as the fast engine's (B, size) arrays, box b proof b's, NaN (or -1 for
    max) = default."""
    out = {}
    for k in sorted({k for sl in slopes for k in sl}):
        node = bg.nodes[k]
        mx = node.kind == "max"
        lo, hi = (np.full((len(slopes), node.size), -1 if mx else np.nan, dtype=int if mx else float)
                  for _ in "lh")
        for b, sl in enumerate(slopes):
            for i, v in enumerate(sl.get(k, ())):
                if v is not None and v[0] is not None:
                    lo[b, i] = v[0] if mx else float(v[0])
                if v is not None and not mx and v[1] is not None:
                    hi[b, i] = float(v[1])
        out[k] = (lo, None) if mx else (lo, hi)
    return out or None


def _mult(q: Any) -> float:
    """The float multiplier used for q >= 0 (any q' >= 0 gives a valid form; past float64: 0)."""
    try:
        return float(q)
    except OverflowError:
        return 0.0


@np.errstate(invalid="ignore", over="ignore")  # non-finite entries are handled (vacuous bounds)
def extras_lower(bg: BoundGraph, F: Any, st: Any, reqs: list[tuple[int, int, Any, Any]],
                 slopes: dict[int, Any] | None) -> np.ndarray:
    """Lower bounds (len(reqs),) of F's row ``row`` on box b of the forward state ``st`` for each
    request (b, row, mult, path) (mult: {(node, i): q >= 0} on elements of the split path), in one
    batch (see the module docstring); ``slopes``: the fast engine's, box j request j's (or None).
    Also the search's leaf bounds (``verify/graph_relu.py``): it claims what this computes."""
    fg = fe.compiled(bg)
    one = fe.gather([(st, b) for b, _, _, _ in reqs])
    rows = np.array([row for _, row, _, _ in reqs])
    lam: dict[int, np.ndarray] = {}
    err = np.zeros((len(reqs), 1))
    for p, A, _, E in F.parents:
        lam[p] = A.take(rows)[:, None, :]
        if E is not None:
            err[:, 0] += 4 * np.einsum("bj,bj->b", E.take(rows), one.vmax[p])
    const = F.c[rows][:, None].copy()
    err += F.Ec[rows][:, None]
    lins: dict[int, np.ndarray] = {}
    for b, (_, _, mult, path) in enumerate(reqs):
        for (k, i), q in mult.items():  # (f - Σ q·sgn·z: -q·sgn on z's row, sgn = +1 where z >= 0)
            lin = lins.setdefault(k, np.zeros((len(reqs), 1, bg.nodes[k].size)))
            lin[b, 0, i] = -_mult(q) if path[k, i] else _mult(q)
    for k, lin in sorted(lins.items(), reverse=True):
        W = _weights(one, fg.forms[k], None)
        const, err = _through(one, lam, lin, const, err, fg.forms[k], W=W)
    low = _best_backsub(one, lam, const, err, slopes)[:, 0]
    return np.where(fe.undefined(one)[0], -np.inf, low)  # (engine.forward refuses such a box)


def check_leaves_fast(bg: BoundGraph, region: Any, items: list[Any], forms: list[Aff], index: Any,
                      method: str, read: Any, where: str, states: dict[Any, Any] | None = None,
                      cache: dict[Any, Any] | None = None, shared: dict[int, Any] | None = None) -> None:
    """Replay every leaf of one tree (``items``: ``bounds.walk``'s nodes); raises ``Rejected`` on
    failure. Nodes are bounded in chunks, per level and split node: a ReLU split's children start
    from their parent's state (``fast_engine.forward``'s prior, as ``engine.forward``'s), one level
    below it, so the splits whose children are ReLU splits are bounded too; every other node is
    on level 0 (leaves in tree order, as before priors). ``states``: the caller's memo of forward states
    without a prior by (method, boxes, phases), so the trees of one region's disjuncts
    (``per_disjunct``) that bound the same boxes share one forward pass (a state is a function of
    those alone; a ResNet's costs seconds); ``cache``: the caller's ``fast_forms.corners`` cache
    (the trees of one region share its corners); ``shared``: the region's shared slopes
    (``graph_vnn.read_shared``, per-target ones included), used by every forward pass."""
    fg = fe.compiled(bg)
    sh = {}
    for key, row in (shared or {}).items():  # (per-target ones under (target, node) keys)
        j = key if type(key) is int else key[1]
        sh[key] = _float_slopes(bg, [{j: row}])[j]
    F = fe.forms_of(fg, forms)
    cache = {} if cache is None else cache
    needed = {it[2][1] for it in items if it[2][3] is not None}  # parents of ReLU splits' children
    levels: dict[tuple[int, bool, bool], list[int]] = {}
    depth, leaf_no = [0] * len(items), {}
    for i, (_, _, (proofs, parent, _, key)) in enumerate(items):
        depth[i] = depth[parent] + 1 if key is not None else 0
        if proofs is not None:
            leaf_no[i] = len(leaf_no)
        if proofs is not None or i in needed:
            levels.setdefault((depth[i], proofs is not None, -1 if key is None else key[0]), []).append(i)
    kept: dict[int, Any] = {}  # needed node -> (its chunk's state, row)
    for d, leaf, node in sorted(levels):  # (one split node a chunk: forward's rows are its union)
        todo = levels[d, leaf, node]
        for start in range(0, len(todo), CHUNK):
            part = [items[i] for i in todo[start:start + CHUNK]]
            lo, hi = (corners([it[side] for it in part], cache, side) for side in (0, 1))
            ph = phase_arrays(bg, [it[2][2] for it in part])
            prior = None
            if node >= 0:
                prior = (fe.gather([kept[it[2][1]] for it in part]), np.array([it[2][3][0] for it in part]))
            st = _forward(fg, lo, hi, method, ph, prior, states, sh)
            for b, i in enumerate(todo[start:start + CHUNK]):
                if i in needed:
                    kept[i] = (st, b)
            if not leaf:
                continue
            lb = fe.bound_forms(st, F)
            got = _batch(bg, F, st, part, region, index, read)
            for b, (_, _, (proofs, _, path, _)) in enumerate(part):
                check_leaf_proofs(proofs, region, index, _leaf_lower(lb, got, b),
                                  f"{where} leaf {leaf_no[todo[start + b]]}",
                                  lambda p, w, path=path, got=got: got.get(id(p)) or read(p, w, path))
        for i in [i for i in kept if depth[i] < d - 1]:  # (this level's parents are at d - 1)
            del kept[i]


def _forward(fg: Any, lo: np.ndarray, hi: np.ndarray, method: str, ph: Any, prior: Any,
             states: dict[Any, Any] | None, sh: dict[int, Any]) -> Any:
    """``fast_engine.forward``, from ``states`` where a chunk without a prior was bounded before."""
    if prior is not None or states is None:
        return fe.forward(fg, lo, hi, method, ph, prior=prior, slopes=sh)
    key = (method, lo.tobytes(), hi.tobytes(), lo.shape,
           tuple((k, a.tobytes(), b.tobytes()) for k, (a, b) in sh.items()),
           None if ph is None else tuple((k, v.tobytes()) for k, v in sorted(ph.items())))
    if key not in states:
        if len(states) >= 4:  # (the same boxes come in a row: keep a few)
            states.pop(next(iter(states)))
        states[key] = fe.forward(fg, lo, hi, method, ph, slopes=sh)
    return states[key]


def phase_arrays(bg: BoundGraph, paths: list[dict[tuple[int, int], int]]) -> dict[int, np.ndarray] | None:
    """The leaves' split phases as the fast engine's arrays {node: (B, size)}, -1 where unsplit."""
    if not any(paths):
        return None
    out: dict[int, np.ndarray] = {}
    for b, path in enumerate(paths):
        for (k, i), v in path.items():
            out.setdefault(k, np.full((len(paths), bg.nodes[k].size), -1, dtype=np.int8))[b, i] = v
    return out


def _extras(bg: BoundGraph, F: Any, st: Any, reqs: list[tuple[int, int, Any, Any]]) -> np.ndarray:
    """``extras_lower`` of requests (b, row, (exact slopes, mult), path)."""
    slopes = _float_slopes(bg, [ex[0] for _, _, ex, _ in reqs])
    return extras_lower(bg, F, st, [(b, row, ex[1], path) for b, row, ex, path in reqs], slopes)


def _leaf_lower(lb: np.ndarray, got: dict[Any, Any], b: int) -> Any:
    """lower(row, (slopes, mult)) for leaf b of the chunk: the chunk's bound ``lb``, or with
    extras the larger of it and the extras' bound from ``_batch`` (which bounded every proof
    that ``check_leaf_proofs`` can reach with extras: the same proof objects, read once)."""

    def lower(row: int, ex: Any) -> float:
        if not ex or not (ex[0] or ex[1]):
            return float(lb[b, row])
        return float(max(lb[b, row], got[b, row, id(ex)]))

    return lower


def _batch(bg: BoundGraph, F: Any, st: Any, part: list[Any], region: Any, index: Any,
           read: Any) -> dict[Any, Any]:
    """The chunk's proofs with extras, read and bounded in one batch (``extras_lower``): {id(proof):
    its extras, (box, row, id(extras)): its bound}. A proof that does not read here is left to
    ``check_leaf_proofs``, which reads (and rejects) it again."""
    got: dict[Any, Any] = {}
    reqs = []
    for b, (_, _, (proofs, _, path, _)) in enumerate(part):
        for j, p in enumerate(proofs if isinstance(proofs, list) else ()):
            try:
                if not (isinstance(p, list) and len(p) == 3 and j < len(region.disjuncts)):
                    continue
                row = index[j].get(proof_combo(p[0], region.disjuncts[j], "batch"))
                ex = got[id(p)] = read(p, "batch", path)
            except Rejected:
                continue
            if row is not None and (ex[0] or ex[1]):
                reqs.append((b, row, ex, path))
    if reqs:
        low = _extras(bg, F, st, reqs)
        got.update({(b, row, id(ex)): v for (b, row, ex, _), v in zip(reqs, low)})
    return got
