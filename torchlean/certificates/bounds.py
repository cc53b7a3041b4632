"""VNN certificates (``vnn-sat`` / ``vnn-unsat``) against VNN-LIB properties: the shared parts.

Both kinds are checked against a network and a property (``property.py``) that the caller re-derives
from the ONNX and VNN-LIB files; the certificate only names them by fingerprint. Every network,
ReLU chains included, is checked on its bound graph by the bound-table engines (``graph_vnn.py``,
``fast_vnn.py``; the ReLU-chain engine was removed, issue 14). This module holds what the format
needs whatever the engine: the split-tree walker, atom combinations, leaf-proof checks, the
per-disjunct entries, the caller's replay mode, and ``check_vnn``.

``vnn-sat``: a counterexample ``x`` (exact rationals). Accepted iff x lies in some region's box
(strict input bounds strictly: ``Region.contains``) and the network's outputs at x satisfy every
atom of some disjunct of that region (strict atoms strictly).

``vnn-unsat``: per region, a split tree in preorder: ``["split", dim, "p/q"]`` is followed by the
subtree of the lower half (x_dim <= v) and then the upper half (x_dim >= v); ``["relu", node, i]``
by the subtree where that element's argument is <= 0 and then the one where it is >= 0 (the two
halfspaces cover everything, so the leaves still cover the box); ``["leaf", proofs]`` has one
``[k, "beta"(, extras)]`` per disjunct of the region, k an atom index or a list of them whose rows
are summed: the leaf proves Σ_{k} (a_k·y - b_k) >= beta > 0 on its region (box and split
halfspaces), so some atom of that disjunct fails at every point of it. The checker rebuilds every
leaf box from the region's box (so the leaves cover it by construction) and recomputes each leaf's
lower bound itself; the certificate supplies no number the soundness depends on: the splits, the
choice ``k``, the extras and the claimed ``beta`` are all re-checked (the recomputed bound must
reach beta). A region's entry may also be ``{"per_disjunct": [tree, ...]}``: one tree per
disjunct, each refuting that disjunct over the whole box (the unsafe set is their union).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

from .core import Rejected, Verdict, at_least, is_index, needs_statement, ratio, replay, require, tick
from .property import Region, Spec

MAX_LEAVES = 5_000_000


Combo = tuple[int, ...]


def proof_combo(p: Any, disj: tuple[Any, ...], where: str) -> Combo:
    """A leaf proof's atom choice: an index, or a list of indices (their rows are summed)."""
    if type(p) is int and 0 <= p < len(disj):  # (the common case, decided without the general path)
        return (p,)
    ks = [p] if isinstance(p, int) else p
    ok = isinstance(ks, list) and ks and all(is_index(k, len(disj)) for k in ks)
    require(ok, f"{where}: bad atom choice {p!r}")
    combo = tuple(sorted(set(ks)))
    require(len(combo) == len(ks), f"{where}: repeated atom in {p!r}")
    return combo


def combos_used(region: Region, proof_lists: list[Any]) -> list[list[Combo]]:
    """Every combination the leaves use, per disjunct (validated), in a fixed order."""
    used: list[set[Combo]] = [set() for _ in region.disjuncts]
    for i, proofs in enumerate(proof_lists):
        tick()  # (audit63: a 58 MB tree of 10^6 leaves is read here and in ``walk`` before any replay)
        for j, _, combo in leaf_proofs(proofs, region, f"leaf {i}"):
            used[j].add(combo)
    return [sorted(u) for u in used]


def leaf_proofs(proofs: Any, region: Region, where: str) -> Iterator[tuple[int, list[Any], Combo]]:
    """(j, proof, its atom combination) for each disjunct j of the region: ``proofs`` must hold
    one ``[k or [k, ...], beta(, extras)]`` per disjunct. (Runs once per leaf, so its conditions
    raise directly: a ``require`` message would be formatted for every leaf that passes.)"""
    if not (isinstance(proofs, list) and len(proofs) == len(region.disjuncts)):
        raise Rejected(f"{where}: needs one proof per disjunct ({len(region.disjuncts)})")
    for j, p in enumerate(proofs):
        if not (isinstance(p, list) and len(p) in (2, 3)):
            raise Rejected(f"{where}: proof {j} malformed")
        yield j, p, proof_combo(p[0], region.disjuncts[j], where)


Corners = list[Fraction | float]  # exact values (floats stand for themselves)


def walk(
    tree: Any, lo: list[Fraction], hi: list[Fraction], widths: tuple[int, ...] = ()
) -> Iterator[tuple[Corners, Corners, Any]]:
    """Walk a preorder split tree, yielding every node in tree order as (lo, hi, (proofs, parent,
    phases, key)): proofs None for a split, ``parent`` the index of its parent (-1: the root),
    ``key`` (node, i) when a ReLU split made it, else None; rejects malformed trees.
    ``["relu", node, i]`` splits on element i of node ``node`` (``widths[node]`` elements may be
    split there, ``graph_vnn.split_widths``): its inactive subtree (argument <= 0) comes first,
    then the active one (>= 0). The two halfspaces cover everything, so leaves cover the box
    whatever the splits are (and a node's region is inside its parent's); ``phases`` maps (node, i)
    to 0/1 along the path. (Runs once per node, so its conditions raise directly: a ``require``
    message would be formatted for every node that passes.)

    A leaf's corners are exact: the region's Fractions, and split values as ``split_value`` reads
    them (a float where one equals the value, which every comparison here treats exactly). Boxes
    share their unchanged lists, so callers must not modify them."""
    require(isinstance(tree, list) and tree, "split tree must be a non-empty list")
    stack: list[Any] = [(list(lo), list(hi), {}, -1, None)]
    pos = 0
    while stack:
        tick()
        require(pos < len(tree), "split tree ends early: a split is missing a subtree")
        llo, lhi, phases, parent, made = stack.pop()
        node = tree[pos]
        pos += 1
        if not (isinstance(node, list) and node):
            raise Rejected(f"tree entry {pos - 1} is malformed")
        me = pos - 1
        if node[0] == "split":
            if len(node) != 3:
                raise Rejected(f"tree entry {me}: split needs a dimension and a value")
            dim, v = node[1], split_value(node[2])
            if not is_index(dim, len(lo)):
                raise Rejected(f"tree entry {me}: bad split dimension {dim!r}")
            if not llo[dim] <= v <= lhi[dim]:
                raise Rejected(f"tree entry {me}: split value outside its box")
            stack.append((llo[:dim] + [v] + llo[dim + 1 :], lhi, phases, me, None))  # after the lower subtree
            stack.append((llo, lhi[:dim] + [v] + lhi[dim + 1 :], phases, me, None))
        elif node[0] == "relu":
            require(len(node) == 3, f"tree entry {me}: relu split needs a layer and a neuron")
            key = (node[1], node[2])
            require(
                is_index(key[0], len(widths)) and is_index(key[1], widths[key[0]]),
                f"tree entry {me}: no hidden neuron {list(key)}",
            )
            require(key not in phases, f"tree entry {me}: neuron {list(key)} split twice on a path")
            stack.append((llo, lhi, {**phases, key: 1}, me, key))  # active, after the inactive subtree
            stack.append((llo, lhi, {**phases, key: 0}, me, key))
        elif node[0] == "leaf":
            if not (len(node) == 2 and isinstance(node[1], list)):
                raise Rejected(f"tree entry {me}: malformed leaf (a leaf names no method of its own)")
            yield llo, lhi, (node[1], parent, phases, made)
            continue
        else:
            raise Rejected(f"tree entry {me}: unknown node {node[0]!r}")
        yield llo, lhi, (None, parent, phases, made)
    require(pos == len(tree), f"split tree has {len(tree) - pos} entries after its last leaf")


def split_value(x: Any) -> float | Fraction:
    """A split value, exactly: a float when p/q (the form the search writes) is one, which it
    certainly is when q = 2^k with k <= 969 and |p| <= 2^53 (p converts exactly, and scaling by
    2^-k stays in the normal range, so ldexp is exact); otherwise the Fraction. The fast replay
    then uses such a corner as it is, without rounding it outward."""
    p, q = ratio(x)
    if q & (q - 1) == 0 and q.bit_length() <= 970 and -(2**53) <= p <= 2**53:
        return math.ldexp(float(p), 1 - q.bit_length())
    return Fraction(p, q)


def check_leaf_proofs(
    proofs: Any,
    region: Region,
    index: list[dict[Combo, int]],
    lower: Callable[[int, Any], Fraction | float],
    where: str,
    read_extras: Callable[[list[Any], str], Any],
) -> None:
    """Each disjunct j: proofs[j] = [k or [k, ...], beta(, extras)] with lower(row of that
    combination, extras) >= beta > 0 (``lower`` gives an exact value, or a float that is one).
    ``read_extras(proof, where)`` reads a proof's third element (``graph_vnn.read_slopes``; a
    proof without one passes None). Its conditions raise directly, as ``leaf_proofs``'s."""
    for j, p, combo in leaf_proofs(proofs, region, where):
        beta = ratio(p[1])
        extras = read_extras(p, f"{where}: disjunct {j}") if len(p) == 3 else None
        if beta[0] <= 0:
            raise Rejected(f"{where}: disjunct {j}: claimed bound {Fraction(*beta)} is not positive")
        row = index[j].get(combo)
        if row is None:
            raise Rejected(f"{where}: disjunct {j}: combination {combo} has no row")
        got = lower(row, extras)
        if not at_least(got, beta):
            got_s, beta_s = f"{float(got):.6g}", f"{float(Fraction(*beta)):.6g}"
            raise Rejected(f"{where}: disjunct {j}: recomputed bound {got_s} < claimed {beta_s}")


def region_parts(region: Region, entry: Any) -> list[tuple[Region, Any]]:
    """A region's certificate entry: one tree whose leaves refute every disjunct, or
    ``{"per_disjunct": [tree, ...]}``, one tree per disjunct refuting it over the whole box (the
    unsafe set is the union of the disjuncts, so refuting each one separately suffices), and
    optionally the region's shared slopes ``"arg_slopes"`` (``graph_vnn.read_shared``)."""
    if not isinstance(entry, dict):
        return [(region, entry)]
    ok = "per_disjunct" in entry and set(entry) <= {"per_disjunct", "arg_slopes"}
    require(ok, "malformed region entry")
    trees = entry["per_disjunct"]
    require(isinstance(trees, list) and len(trees) == len(region.disjuncts), "needs one tree per disjunct")
    ls, hs = region.lo_strict, region.hi_strict
    return [(Region(region.lo, region.hi, (d,), ls, hs), t) for d, t in zip(region.disjuncts, trees)]


#: ``replay_mode``: exact replay only when leaves x form entries is at most this. Exact CROWN costs
#: Fractions per weight per leaf and more (quadratic in depth): one leaf on an ACAS Xu network
#: (13,000 weights) takes seconds exact against milliseconds fast, so only the small test networks
#: replay exactly by default (measured 2026-12-03: 20,000 made the ACAS Xu replay 8x slower)
EXACT_WORK = 2_000


def replay_mode(cert: Any, net: Any) -> str:
    """The caller's choice of replay mode for an unsat certificate on ``net`` (its bound graph),
    by size alone: "exact" for small trees on small networks, else "fast". Never read from the
    certificate: a certificate saying "exact" could otherwise make its own replay take hours."""
    if not isinstance(cert, dict) or not isinstance(cert.get("regions"), list):
        return "exact"  # (malformed: rejected before any replay)
    count = 0
    for entry in cert["regions"]:
        trees = entry.get("per_disjunct") if isinstance(entry, dict) else [entry]
        for tree in trees if isinstance(trees, list) else []:
            if isinstance(tree, list):
                count += sum(1 for n in tree if isinstance(n, list) and n and n[0] == "leaf")
    return "exact" if count * _form_entries(net) <= EXACT_WORK else "fast"


def _form_entries(bg: Any) -> int:
    """How many coefficients the affine forms of a bound graph hold (its replay cost per leaf)."""
    n, stack = 0, [bg.outputs] + [node.args for node in bg.nodes]
    while stack:
        x = stack.pop()
        if isinstance(x, (list, tuple)):
            stack.extend(x)
        elif hasattr(x, "t"):
            n += len(x.t)
    return n


def check_vnn(
    cert: Any, net: Any, spec: Spec, mode: str | None = None, deadline: float | None = None,
    keep: dict[str, Any] | None = None,
) -> Verdict:
    """Check a ``vnn-sat`` / ``vnn-unsat`` certificate against the re-derived network (its
    ``lower.BoundGraph``: ``lower.lower`` of the IR) and property, on the bound-table engines
    (``graph_vnn``). ``mode`` ("exact" or "fast") is the caller's; None chooses by size
    (``replay_mode``). A certificate's own "mode" field is ignored. ``deadline`` (a
    ``time.monotonic()`` value): past it the replay stops and the certificate is not accepted
    ("deadline exceeded"). ``keep``: a dict that receives, under "states", the fast replay's own
    memo of forward states (``graph_vnn.check_vnn_graph``), for the caller to read once the call
    returns; the replay writes it and never reads anything from it."""
    return replay(_check_vnn, cert, net, spec, mode, keep, deadline=deadline)


def _check_vnn(cert: Any, net: Any, spec: Spec, mode: str | None,
               keep: dict[str, Any] | None = None) -> Verdict:
    require(isinstance(cert, dict), "certificate must be a JSON object")
    require(hasattr(net, "nodes") and hasattr(net, "outputs"), "the network must be a bound graph (lower)")
    from .graph_vnn import check_vnn_graph

    return check_vnn_graph(cert, net, spec, mode or replay_mode(cert, net), keep)


needs_statement(("vnn-sat", "vnn-unsat"), "check_vnn(cert, net, spec)")
