"""The ``terms`` and ``channels`` kinds: claims about recorded terms decided as polynomial identities
(issue 18).

A kernel and its spec meaning were run on terms (``proofs/windows.py``'s ``Term``: every value
recorded exactly as the code built it). Nodes as in ``windows.py``: ``["leaf", name, i...]`` (a leaf
named by a family and an index), ``["c", "p/q"]`` (a rational constant) or ``[op, id...]`` with ids
of earlier nodes. The checker reads ``add``, ``sub``, ``mul``, ``neg`` and constants as the field
operations of the reals and every other op as an opaque function symbol (congruence: equal
arguments, equal values), and puts each term in a normal form: a polynomial with rational
coefficients over atoms (leaves, and opaque applications whose arguments are themselves in normal
form). Two terms with equal normal forms are equal for every real value of the leaves.

``terms``: ``{"nodes": [...], "equal": [[a, b], ...]}``, accepted when every pair is equal as above
(a linear kernel against its spec: conv2d at a plane, padding taps read as the constant 0).

``channels``: a per-channel pointwise primitive (batch_norm) at input shape ``shape`` (N, C, ...),
with ``params`` per-channel inputs. One element (the primitive at (1, 1, 1...)) has leaves
``["leaf", "in0", 0...]``, ``["leaf", "in<k>", 0]`` (k = 1..params) and ``["leaf", "g", 0...]``; the plane
has ``in0`` and ``g`` at every position p and ``in<k>`` at every channel. With sigma_p (in0 -> in0[p],
g -> g[p], in<k>[0] -> in<k>[c(p)]), accepted when: plane spec[p] = sigma_p(element spec) and plane
VJP for in0 at p = sigma_p(element VJP for in0), and plane VJP for in<k> at channel c = the sum of
sigma_p(element VJP for in<k>) over the positions p of channel c (all as normal forms). With the
element's claim VJP = g . grad(spec) (proved separately), the chain rule gives the plane's
(TRUST_BOUNDARIES.md, "batch_norm and conv2d forward as term identities").
"""

from __future__ import annotations

from fractions import Fraction
from itertools import product
from typing import Any

from .core import Verdict, checker, rational, require, tick

LINEAR = {"add", "sub", "neg"}
Poly = dict  # monomial (sorted tuple of atom ids, repeated for powers) -> Fraction


def _acc(p: Poly, q: Poly, sign: int = 1) -> None:
    """p += sign * q, in place."""
    for m, c in q.items():
        tick()
        v = p.get(m, 0) + sign * c
        if v:
            p[m] = v
        else:
            p.pop(m, None)


def _mul(p: Poly, q: Poly) -> Poly:
    out: Poly = {}
    for m1, c1 in p.items():
        for m2, c2 in q.items():
            tick()
            m = tuple(sorted(m1 + m2))
            v = out.get(m, 0) + c1 * c2
            if v:
                out[m] = v
            else:
                out.pop(m)
    return out


class Normal:
    """Normal forms of a statement's nodes (parsed once; ``sub`` maps leaves to other leaves or
    constants before normalising: the ``channels`` substitution)."""

    def __init__(self, nodes: Any) -> None:
        require(isinstance(nodes, list), "nodes: a list")
        for k, n in enumerate(nodes):
            tick()
            require(isinstance(n, list) and n and isinstance(n[0], str), f"node {k}: [op, args...]")
            if n[0] == "leaf":
                require(len(n) >= 2 and isinstance(n[1], str) and all(type(a) is int for a in n[2:]),
                        f"node {k}: bad leaf")
            elif n[0] == "c":
                require(len(n) == 2, f"node {k}: bad constant")
                rational(n[1])
            else:
                require(len(n) >= 2 and all(type(a) is int and 0 <= a < k for a in n[1:]),
                        f"node {k}: an argument is not an earlier node")
                require(n[0] not in ("neg",) or len(n) == 2, f"node {k}: neg takes one argument")
                require(n[0] not in ("add", "sub", "mul") or len(n) == 3, f"node {k}: {n[0]} takes two")
        self.nodes = nodes
        self.uses = [0] * len(nodes)  # how many nodes use each: a shared sum is normalised once
        for n in nodes:
            if n[0] not in ("leaf", "c"):
                for a in n[1:]:
                    self.uses[a] += 1
        self.atoms: dict[tuple[Any, ...], int] = {}
        self.memo: dict[tuple[int, Any], Poly] = {}

    def atom(self, key: tuple[Any, ...]) -> Poly:
        i = self.atoms.setdefault(key, len(self.atoms))
        return {(i,): Fraction(1)}

    def ref(self, t: Any) -> int:
        require(type(t) is int and 0 <= t < len(self.nodes), f"term {t!r}: no such node")
        return t

    def leaves(self, t: int) -> set[str]:
        """The leaf families term ``t`` reads."""
        out: set[str] = set()
        stack, seen = [t], set()
        while stack:
            u = stack.pop()
            if u in seen:
                continue
            seen.add(u)
            n = self.nodes[u]
            if n[0] == "leaf":
                out.add(n[1])
            elif n[0] != "c":
                stack.extend(n[1:])
        return out

    def _summands(self, u: int, tag: Any) -> list[tuple[int, int]]:
        """(sign, node) pairs whose sum is the linear node ``u``: through add / sub / neg nodes used
        once and not yet normalised, down to other nodes (normalised on their own)."""
        out, stack = [], [(1, u)]
        while stack:
            sign, v = stack.pop()
            tick()
            n = self.nodes[v]
            if n[0] not in LINEAR or (v != u and ((v, tag) in self.memo or self.uses[v] > 1)):
                out.append((sign, v))
            elif n[0] == "neg":
                stack.append((-sign, n[1]))
            else:
                stack.extend([(sign, n[1]), (-sign if n[0] == "sub" else sign, n[2])])
        return out

    def form(self, t: int, sub: Any = None, tag: Any = None) -> Poly:
        """The normal form of node ``t`` with leaves renamed by ``sub`` (a function of the leaf's
        key to another leaf's; ``tag`` names the substitution in the memo)."""
        key = (t, tag)
        if key in self.memo:
            return self.memo[key]
        stack = [t]
        while stack:  # post-order without recursion (terms may be deep)
            u = stack[-1]
            if (u, tag) in self.memo:
                stack.pop()
                continue
            n = self.nodes[u]
            # a sum (add, sub, neg nodes) is accumulated from its summands in one pass: a chain of
            # n additions costs n, not n^2 (its inner partial sums are not normalised on their own)
            parts = self._summands(u, tag) if n[0] in LINEAR else None
            args_ = [a for _, a in parts] if parts is not None else n[1:] if n[0] not in ("leaf", "c") else []
            todo = [a for a in args_ if (a, tag) not in self.memo]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            tick()
            op, args = n[0], n[1:]
            if parts is not None:
                v = {}
                for sign, a in parts:
                    _acc(v, self.memo[(a, tag)], sign)
            elif op == "leaf":
                v = self.atom(("leaf", *(sub(tuple(n[1:])) if sub else tuple(n[1:]))))
            elif op == "c":
                c = rational(args[0])
                v = {(): c} if c else {}
            else:
                fs = [self.memo[(a, tag)] for a in args]
                if op == "mul":
                    v = _mul(fs[0], fs[1])
                else:  # opaque: an atom of the op and its arguments' normal forms
                    v = self.atom((op, *(tuple(sorted(f.items())) for f in fs)))
            self.memo[(u, tag)] = v
        return self.memo[key]


@checker("terms")
def check_terms(cert: dict[str, Any]) -> Verdict:
    """Replay a ``terms`` statement: every pair equal as polynomials (see the module)."""
    nf = Normal(cert["nodes"])
    pairs = cert["equal"]
    require(isinstance(pairs, list) and pairs, "equal: a non-empty list of pairs")
    for k, pair in enumerate(pairs):
        require(isinstance(pair, list) and len(pair) == 2, f"pair {k}: [a, b]")
        a, b = nf.ref(pair[0]), nf.ref(pair[1])
        require(nf.form(a) == nf.form(b), f"pair {k}: the two terms differ as polynomials")
    return Verdict(True, checked=len(pairs))


@checker("channels")
def check_channels(cert: dict[str, Any]) -> Verdict:
    """Replay a ``channels`` statement (see the module)."""
    shape, params = cert["shape"], cert["params"]
    require(isinstance(shape, list) and len(shape) >= 2 and all(type(n) is int and n >= 1 for n in shape)
            and type(params) is int and 0 <= params <= 8, "shape (N, C, ...) of integers >= 1; params 0..8")
    nf = Normal(cert["nodes"])
    names = [f"in{k}" for k in range(params + 1)]
    win, plane = cert["window"], cert["plane"]
    one = (0,) * len(shape)
    require(isinstance(win.get("vjp"), list) and len(win["vjp"]) == params + 1
            and isinstance(plane.get("vjp"), list) and len(plane["vjp"]) == params + 1, "vjp: one per input")
    for t in [win["spec"], *win["vjp"]]:  # the element's terms read only the element's leaves
        for fam in nf.leaves(nf.ref(t)):
            require(fam in {*names, "g"}, f"element term {t}: reads {fam!r}")
    positions = list(product(*(range(n) for n in shape)))
    # the element's leaves are exactly in0[0...], g[0...], in<k>[0]; anything else is refused
    element = {("in0", *one), ("g", *one), *((f"in{k}", 0) for k in range(1, params + 1))}

    def sigma(p: tuple[int, ...]):
        def sub(leaf: tuple[Any, ...]) -> Any:
            require(leaf in element, f"element leaf {leaf!r} is not one of the element's")
            return (leaf[0], *p) if leaf[0] in ("in0", "g") else (leaf[0], p[1])
        return sub

    def flat(v: Any, n: int, what: str) -> list:
        require(isinstance(v, list) and len(v) == n, f"{what}: {n} terms")
        return v

    spec = flat(plane["spec"], len(positions), "plane spec")
    vx = flat(plane["vjp"][0], len(positions), "plane vjp for in0")
    for fam_terms in (spec, vx, *plane["vjp"][1:]):
        for t in fam_terms:
            tick()
            require(nf.leaves(nf.ref(t)) <= {*names, "g"}, f"plane term {t}: a foreign leaf")
    wants: list[list[Poly]] = [[{} for _ in range(shape[1])] for _ in range(params)]
    for q, p in enumerate(positions):
        sub = sigma(p)
        require(nf.form(nf.ref(spec[q])) == nf.form(nf.ref(win["spec"]), sub, p),
                f"spec at {list(p)} is not the element's spec of its entries")
        require(nf.form(nf.ref(vx[q])) == nf.form(nf.ref(win["vjp"][0]), sub, p),
                f"vjp for in0 at {list(p)} is not the element's VJP")
        for k in range(params):
            _acc(wants[k][p[1]], nf.form(nf.ref(win["vjp"][k + 1]), sub, p))
    for k in range(params):
        got = flat(plane["vjp"][k + 1], shape[1], f"plane vjp for in{k + 1}")
        for c in range(shape[1]):
            require(nf.form(nf.ref(got[c])) == wants[k][c], f"vjp for in{k + 1} at channel {c} is not the "
                                                            "sum of its elements' VJPs")
    return Verdict(True, checked=len(positions) * 2 + params * shape[1])
