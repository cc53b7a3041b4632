"""Input splitting for certified rounding-error bounds: the ``errorbound-split`` certificate.

The bound of an ``errorbound`` certificate grows with the real ranges of the neurons over the
box, so on a large box (ACAS Xu property boxes) it is far above what any point reaches. Here the
box is bisected adaptively: the leaf with the largest epsilon is split at the midpoint of the
input dimension of largest width x first-layer weight (``choose_dimension``), both halves get
their own ``errorbound`` steps (the checker's own ``propagate``), and the overall epsilon per
output is the max over the leaves. A split is kept only if no output of either half
is above the unsplit bound, so splitting never loosens epsilon. The tree and the leaves' steps are
replayed by ``certificates.errorbound.check_errorbound_split`` (format in that module's docstring).

Cost: generation computes 1 + 2 * splits leaf bounds, the checker replays the leaves (at most
splits + 1), each about as long as one unsplit ``errorbound`` replay.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates.core import digest
from ..certificates.errorbound import propagate
from ..certificates.lower import lower
from .errorbound import claims

Box = list[tuple[Fraction, Fraction]]


def _strs(box: Box) -> list[list[str]]:
    return [[str(lo), str(hi)] for lo, hi in box]


def influence(ir: dict[str, Any], n: int) -> np.ndarray:
    """Per input, the sum of |coefficient| with which it enters the arguments of the first
    nonlinear nodes of the bound graph (the first layer's weights): how much a unit of that
    input's width moves them; 1 where no such argument reads it."""
    w = np.zeros(n)
    for node in lower(ir).nodes[1:]:
        if node.kind == "const":
            continue
        args = node.args if node.kind == "fn" else [f for p in node.args for f in p]
        for a in args:
            for v, q in a.t.items():
                if v < n:
                    w[v] += abs(float(q))
    return np.where(w > 0, w, 1.0)


def _halves(box: Box, d: int) -> tuple[Box, Box, Fraction]:
    lo, hi = box[d]
    v = (lo + hi) / 2
    return box[:d] + [(lo, v)] + box[d + 1 :], box[:d] + [(v, hi)] + box[d + 1 :], v


def choose_dimension(weights: np.ndarray, box: Box) -> int | None:
    """The dimension of largest width x influence (ReluVal's "smear" with the first layer's
    weights). On ACAS Xu prop 1 it matches widest-first, beats choosing by a float64 estimate of
    the neuron ranges, and mostly picks the best dimension found by trying all five. None when
    the box is a point."""
    scores = [float(hi - lo) * float(w) for (lo, hi), w in zip(box, weights)]
    d = max(range(len(box)), key=lambda i: scores[i])
    return d if box[d][0] < box[d][1] else None


def split_certificate(
    stmt: dict[str, Any], splits: int, progress: Callable[[int, list[Fraction]], None] | None = None
) -> dict[str, Any]:
    """An ``errorbound-split`` certificate for ``stmt`` (an ``errorbound`` statement, epsilon
    left empty) with at most ``splits`` bisections. ``progress(leaves, epsilon)`` after each."""
    box = [(Fraction(lo), Fraction(hi)) for lo, hi in stmt["input_box"]]

    def solve(b: Box) -> list[list[Fraction]]:
        return propagate(dict(stmt, input_box=_strs(b)))

    weights = influence(stmt["graph"], len(box))
    root: dict[str, Any] = {"box": box, "errors": solve(box)}
    eps0 = root["errors"][-1]
    heap = [(-max(eps0), 0, root)]
    counter = 1
    for _ in range(splits):
        if not heap:
            break
        _, _, node = heapq.heappop(heap)
        d = choose_dimension(weights, node["box"])
        if d is None:
            continue
        lo_box, hi_box, v = _halves(node["box"], d)
        kids = [{"box": b, "errors": solve(b)} for b in (lo_box, hi_box)]
        if any(e > e0 for k in kids for e, e0 in zip(k["errors"][-1], eps0)):
            continue  # this half would loosen some output: keep the node as a leaf, final
        node.update(split=[d, str(v)], lo=kids[0], hi=kids[1])
        for k in kids:
            heapq.heappush(heap, (-max(k["errors"][-1]), counter, k))
            counter += 1
        if progress is not None:
            progress(len(leaves(root)), _max_eps(root))
    stmt = dict(stmt, epsilon=claims([_max_eps(root)])[1])
    return {"kind": "errorbound-split", "statement": stmt, "digest": digest(stmt), "tree": _tree(root)}


def _max_eps(root: dict[str, Any]) -> list[Fraction]:
    return [max(col) for col in zip(*(leaf["errors"][-1] for leaf in leaves(root)))]


def _tree(node: dict[str, Any]) -> dict[str, Any]:
    if "split" in node:
        return {"split": node["split"], "lo": _tree(node["lo"]), "hi": _tree(node["hi"])}
    return {"box": _strs(node["box"]), "steps": claims(node["errors"])[0]}


def leaves(tree: dict[str, Any]) -> list[dict[str, Any]]:
    """The leaves of a split tree, low half first (of a certificate: ``leaves(cert["tree"])``,
    each {"box", "steps"})."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        if "split" in node:
            todo += [node["hi"], node["lo"]]
        else:
            out.append(node)
    return out
