"""The branch-and-bound tree both searches build (input splits and ReLU splits), and the leaf
proof entries they record, in the preorder format ``certificates/bounds.py`` checks."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any


@dataclass
class Result:
    """A search's claim: "unsat" (with a certificate), "sat" (with a point), "unknown" or
    "timeout". Not a verdict until the checker accepted ``cert`` (the CLI and runner check it)."""

    verdict: str  # "unsat" | "sat" | "unknown" | "timeout"
    cert: dict[str, Any] | None = None
    x: list[Fraction] | None = None
    y: list[float] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    #: (the certificate's JSON text, the checker's Verdict) when the search itself replayed this
    #: certificate with the checker (``general.verify_target``'s root check): the caller may take
    #: that accepted replay instead of its own if the text is ``cert``'s (``table.checked_by_search``)
    checked: tuple[str, Any] | None = None


def combos(n: int) -> list[tuple[int, ...]]:
    """Atom combinations tried per disjunct of n atoms: all subsets up to 4 atoms, else the
    singles and all of them together (a leaf proof may sum the rows of any combination)."""
    if n <= 4:
        return [c for r in range(1, n + 1) for c in itertools.combinations(range(n), r)]
    return [(k,) for k in range(n)] + [tuple(range(n))]


class SplitTree:
    """Nodes by id: ("split", dim, value, lower_id, upper_id) | ("relu", layer, i, inactive_id,
    active_id) | ("leaf", proofs[, method]) | None (open)."""

    def __init__(self) -> None:
        self.nodes: list[Any] = [None]

    def _branch(self, node: int, head: tuple) -> tuple[int, int]:
        a, b = len(self.nodes), len(self.nodes) + 1
        self.nodes += [None, None]
        self.nodes[node] = (*head, a, b)
        return a, b

    def split(self, node: int, dim: int, v: float) -> tuple[int, int]:
        """Halve the input box at x_dim = v: (lower, upper) child ids."""
        return self._branch(node, ("split", dim, v))

    def bisect(self, node: int, lo: Any, hi: Any, dim: int, v: float) -> tuple[tuple[int, Any, Any], ...]:
        """``split`` of the box [lo, hi] (float arrays): ((lower id, lo, its hi), (upper id, its lo,
        hi)), the changed corners copies."""
        a, b = self.split(node, dim, v)
        lw_hi, up_lo = hi.copy(), lo.copy()
        lw_hi[dim] = up_lo[dim] = v
        return (a, lo, lw_hi), (b, up_lo, hi)

    def split_relu(self, node: int, layer: int, i: int) -> tuple[int, int]:
        """Fix hidden neuron i of ReLU layer ``layer``: (inactive, active) child ids."""
        return self._branch(node, ("relu", layer, i))

    def preorder(self) -> list[Any]:
        out, stack = [], [0]
        while stack:
            node = self.nodes[stack.pop()]
            if node[0] == "split":
                out.append(["split", node[1], str(Fraction(node[2]))])
            elif node[0] == "relu":
                out.append(["relu", node[1], node[2]])
            else:
                out.append(["leaf", *node[1:]])
                continue
            stack += [node[4], node[3]]  # the first child's subtree comes first
        return out


def choice(c: tuple[int, ...]) -> int | list[int]:
    """A leaf proof's atom choice: one index, or the list of the atoms whose rows are summed."""
    return c[0] if len(c) == 1 else list(c)


def threshold(lb: float) -> str:
    """The bound a leaf claims: a short rational in (0, lb), half the bound to 6 digits."""
    return str(Fraction(f"{lb * 0.5:.6g}"))


def proof_extras(slopes: list[list[Any]], mult: dict[tuple[int, int], Fraction]) -> dict[str, list]:
    """A graph leaf proof's optional entries: ``"slopes"`` (relaxation slopes chosen by the search)
    and ``"mult"`` (split multipliers > 0 as [node, i, q]), each only when non-empty."""
    ex: dict[str, list] = {}
    if slopes:
        ex["slopes"] = slopes
    if mult:
        ex["mult"] = [[k, i, str(q)] for (k, i), q in mult.items()]
    return ex


def graft(tree: SplitTree, node: int, sub: SplitTree) -> None:
    """Put ``sub`` (a tree rooted at one box) in place of ``tree``'s open node ``node``."""
    base = len(tree.nodes) - 1  # sub's node s > 0 becomes base + s; its root becomes ``node``
    ids = [node] + [base + s for s in range(1, len(sub.nodes))]
    tree.nodes += [None] * (len(sub.nodes) - 1)
    for s, n in enumerate(sub.nodes):
        if n is not None and n[0] in ("split", "relu"):
            n = (*n[:3], ids[n[3]], ids[n[4]])
        tree.nodes[ids[s]] = n
