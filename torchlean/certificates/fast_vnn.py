"""Fast (float64, batched) replay of bound-graph VNN certificates (``graph_vnn``'s fast mode).

Leaves are replayed in batches by ``fast_engine`` (its error accounting and assumption); a proof
that supplies slopes or split multipliers is bounded from its own box's certified variable bounds
in the batch's forward state (``fast_engine.select``) with those slopes (as floats: any slope
gives a valid line, the intercept is recomputed for the float actually used) and, with
multipliers, of the exact form ``engine.mult_form`` builds (the exact mode's form, converted
with its conversion error charged like any objective's). The claimed bounds are then compared
exactly by ``bounds.check_leaf_proofs``, as in every other mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import fast_engine as fe
from .bounds import check_leaf_proofs
from .engine import mult_form
from .fast_forms import corners
from .lower import Aff, BoundGraph

CHUNK = 64


def _float_slopes(bg: BoundGraph, slopes: dict[int, list[Any]]) -> dict[int, Any]:
    """A proof's slopes as the fast engine's (1, size) arrays, NaN (or -1 for max) = default."""
    out = {}
    for k, row in slopes.items():
        node = bg.nodes[k]
        if node.kind == "max":
            pick = np.array([[-1 if v is None or v[0] is None else v[0] for v in row]])
            out[k] = (pick, None)
            continue
        lo = np.array([[np.nan if v is None or v[0] is None else float(v[0]) for v in row]])
        hi = np.array([[np.nan if v is None or v[1] is None else float(v[1]) for v in row]])
        out[k] = (lo, hi)
    return out


def check_leaves_fast(bg: BoundGraph, region: Any, items: list[Any], forms: list[Aff], index: Any,
                      method: str, read: Any, where: str, states: dict[Any, Any] | None = None,
                      cache: dict[Any, Any] | None = None) -> None:
    """Replay every leaf of one tree (``items``: ``bounds.walk``'s nodes); raises ``Rejected`` on
    failure. Nodes are bounded in chunks, level by level: a ReLU split's children start from their
    parent's state (``fast_engine.forward``'s prior, as ``engine.forward``'s), one level below it,
    so the splits whose children are ReLU splits are bounded too; every other node is on level 0
    (leaves in tree order, as before priors). ``states``: the caller's memo of forward states
    without a prior by (method, boxes, phases), so the trees of one region's disjuncts
    (``per_disjunct``) that bound the same boxes share one forward pass (a state is a function of
    those alone; a ResNet's costs seconds); ``cache``: the caller's ``fast_forms.corners`` cache
    (the trees of one region share its corners)."""
    fg = fe.compiled(bg)
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
            levels.setdefault((depth[i], proofs is not None, key is not None), []).append(i)
    kept: dict[int, Any] = {}  # needed node -> (its chunk's state, row)
    for d, leaf, has_prior in sorted(levels):
        todo = levels[d, leaf, has_prior]
        for start in range(0, len(todo), CHUNK):
            part = [items[i] for i in todo[start:start + CHUNK]]
            lo, hi = (corners([it[side] for it in part], cache, side) for side in (0, 1))
            ph = phase_arrays(bg, [it[2][2] for it in part])
            prior = None
            if has_prior:
                prior = (fe.gather([kept[it[2][1]] for it in part]), np.array([it[2][3][0] for it in part]))
            st = _forward(fg, lo, hi, method, ph, prior, states)
            for b, i in enumerate(todo[start:start + CHUNK]):
                if i in needed:
                    kept[i] = (st, b)
            if not leaf:
                continue
            lb = fe.bound_forms(st, F)
            for b, (_, _, (proofs, _, path, _)) in enumerate(part):
                lower = _leaf_lower(bg, forms, F, lb[b], st, b, path)
                check_leaf_proofs(proofs, region, index, lower, f"{where} leaf {leaf_no[todo[start + b]]}",
                                  lambda p, w, path=path: read(p, w, path))
        for i in [i for i in kept if depth[i] < d - 1]:  # (this level's parents are at d - 1)
            del kept[i]


def _forward(fg: Any, lo: np.ndarray, hi: np.ndarray, method: str, ph: Any, prior: Any,
             states: dict[Any, Any] | None) -> Any:
    """``fast_engine.forward``, from ``states`` where a chunk without a prior was bounded before."""
    if prior is not None or states is None:
        return fe.forward(fg, lo, hi, method, ph, prior=prior)
    key = (method, lo.tobytes(), hi.tobytes(), lo.shape,
           None if ph is None else tuple((k, v.tobytes()) for k, v in sorted(ph.items())))
    if key not in states:
        if len(states) >= 4:  # (the same boxes come in a row: keep a few)
            states.pop(next(iter(states)))
        states[key] = fe.forward(fg, lo, hi, method, ph)
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


def _leaf_lower(bg: BoundGraph, forms: list[Aff], F: Any, lb: np.ndarray, st: Any, b: int,
                path: dict[tuple[int, int], int]) -> Any:
    """lower(row, (slopes, mult)) for leaf b of the batch state ``st``: the batch's bound, or (with
    extras) the bound from that leaf's own bounds (``fast_engine.select``; any certified variable
    bounds give valid lines) with those slopes and, with multipliers, the larger of IBP on the row
    and the bound of its ``mult_form``."""
    own: dict[str, Any] = {}

    def lower(row: int, ex: Any) -> float:
        slopes, mult = ex or ({}, {})
        if not slopes and not mult:
            return float(lb[row])
        if "st" not in own:
            own["st"] = fe.select(st, b)
        one = own["st"]
        sl = _float_slopes(bg, slopes) if slopes else None
        if not mult:
            return float(fe.bound_forms(one, F, sl)[0, row])
        Fm = fe.forms_of(bg, [mult_form(bg, forms[row], mult, path)])
        return float(max(lb[row], fe.bound_forms(one, Fm, sl)[0, 0]))

    return lower
