"""The ``composition`` kind: a traced backward pass composes per-node VJPs by the chain rule.

A model's backward pass is correct when (a) each node's VJP is correct for that node's shapes and
attributes (separate ``autograd`` obligations, replayed by ``refute.py``) and (b) the tape composes
them by the chain rule. This module checks (b), structurally, against the traced graph:

``graph``: ``{"values": N, "leaves": [v...], "root": v, "nodes": [{"prim": str, "inputs": [v or
None...], "output": v, "key": str}...]}`` with values numbered ``0..N-1``; ``None`` marks an input
that carries no gradient (an integer index, a constant).

``trace``: what the runtime's backward did, recorded with formal cotangents: ``{"calls":
[[node, [atom...]]...], "grads": {leaf: [atom...]}}``. An *atom* ``[k, j]`` stands for "the value
the VJP of node ``k`` returned for its input ``j``", ``[-1, 0]`` for the seed cotangent of the
root. ``calls`` lists each VJP call with the cotangent it was given, as the multiset of atoms
summed into it; ``grads`` the multiset summed into each leaf.

Accepted when the graph is well formed (each value defined once, inputs defined before use, the
root defined by a node, leaves defined by none) and, with ``uses(v)`` the atoms ``[k, j]`` of the
nodes whose input ``j`` is ``v`` and whose VJP was called: each node's VJP is called exactly once
if and only if its output lies on a path to the root, with cotangent ``uses(output)`` (plus the
seed for the root); every leaf on such a path receives exactly ``uses(leaf)``, and no other leaf
receives anything. Sums are compared as multisets: over the reals the order of a sum is
immaterial (the order matters to floats only, where eager and compiled replay the same order).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .core import Rejected, Verdict, checker, require

SEED = (-1, 0)


def _atoms(x: Any, where: str, nodes: list[dict[str, Any]]) -> Counter[tuple[int, int]]:
    require(isinstance(x, list), f"{where}: a sum must be a list of atoms")
    out: Counter[tuple[int, int]] = Counter()
    for a in x:
        require(isinstance(a, list) and len(a) == 2 and all(type(i) is int for i in a),
                f"{where}: malformed atom {a!r}")
        k, j = a
        require((k, j) == SEED or (0 <= k < len(nodes) and 0 <= j < len(nodes[k]["inputs"])),
                f"{where}: atom {a!r} names no node input")
        out[(k, j)] += 1
    return out


def _well_formed(graph: dict[str, Any]) -> tuple[list[dict[str, Any]], int, list[int]]:
    n, nodes, leaves, root = graph["values"], graph["nodes"], graph["leaves"], graph["root"]
    require(type(n) is int and type(root) is int and isinstance(nodes, list) and isinstance(leaves, list),
            "graph: values, nodes, leaves, root of the wrong type")
    defined = [False] * n
    for v in leaves:
        require(type(v) is int and 0 <= v < n and not defined[v], f"graph: bad or repeated leaf {v!r}")
        defined[v] = True
    for k, node in enumerate(nodes):
        require(isinstance(node.get("prim"), str) and isinstance(node.get("key"), str),
                f"graph: node {k} has no primitive or obligation key")
        for v in node["inputs"]:
            require(v is None or (type(v) is int and 0 <= v < n and defined[v]),
                    f"graph: node {k} ({node['prim']}) uses value {v!r} before it is defined")
        out = node["output"]
        require(type(out) is int and 0 <= out < n and not defined[out],
                f"graph: node {k} defines value {out!r} twice or out of range")
        defined[out] = True
    require(root in {node["output"] for node in nodes}, "graph: the root is not the output of a node")
    return nodes, root, leaves


@checker("composition")
def check_composition(cert: dict[str, Any]) -> Verdict:
    """Replay a ``composition`` certificate: ``{"kind", "graph", "trace"}`` (see the module)."""
    graph, trace = cert["graph"], cert["trace"]
    nodes, root, leaves = _well_formed(graph)
    # on a path to the root: walk back from the root over gradient-carrying inputs
    live: set[int] = {root}
    for k in range(len(nodes) - 1, -1, -1):
        if nodes[k]["output"] in live:
            live.update(v for v in nodes[k]["inputs"] if v is not None)
    calls: dict[int, Counter[tuple[int, int]]] = {}
    raw_calls = trace["calls"]
    require(isinstance(raw_calls, list), "trace: calls must be a list")
    for entry in raw_calls:
        require(isinstance(entry, list) and len(entry) == 2 and type(entry[0]) is int
                and 0 <= entry[0] < len(nodes), f"trace: malformed call {entry!r}")
        k = entry[0]
        require(k not in calls, f"trace: the VJP of node {k} ({nodes[k]['prim']}) ran twice")
        calls[k] = _atoms(entry[1], f"call of node {k}", nodes)
    uses: dict[int, Counter[tuple[int, int]]] = {}
    for k, node in enumerate(nodes):
        if k in calls:
            for j, v in enumerate(node["inputs"]):
                if v is not None:
                    uses.setdefault(v, Counter())[(k, j)] += 1
    steps = 0
    for k, node in enumerate(nodes):
        on_path = node["output"] in live
        if on_path != (k in calls):
            raise Rejected(f"node {k} ({node['prim']}): VJP {'not ' if on_path else ''}run, but its "
                           f"output is {'' if on_path else 'not '}on a path to the root")
        if not on_path:
            continue
        want = Counter(uses.get(node["output"], Counter()))
        if node["output"] == root:
            want[SEED] += 1
        if calls[k] != want:
            raise Rejected(f"node {k} ({node['prim']}): cotangent {sorted(calls[k].elements())} is not "
                           f"the sum over the uses of its output {sorted(want.elements())}")
        steps += 1
    grads = trace["grads"]
    require(isinstance(grads, dict), "trace: grads must be a mapping")
    for key in grads:
        # (audit13) the key is a leaf's own text: "03" (or "３") passed isdigit/int, and its atoms were
        # never compared with the uses of leaf 3
        require(key in {str(v) for v in leaves}, f"trace: gradient for {key!r}, which is not a leaf")
    for v in leaves:
        got = _atoms(grads[str(v)], f"gradient of leaf {v}", nodes) if str(v) in grads else Counter()
        want = uses.get(v, Counter())
        if got != want:
            raise Rejected(f"leaf {v}: gradient {sorted(got.elements())} is not the sum over its uses "
                           f"{sorted(want.elements())}")
        steps += 1
    return Verdict(True, checked=steps)
