"""The ``terms``, ``channels`` and ``rows`` kinds: claims about recorded terms decided as polynomial
identities (issue 18).

A kernel and its spec meaning were run on terms (``proofs/windows.py``'s ``Term``: every value
recorded exactly as the code built it). Nodes as in ``windows.py``: ``["leaf", name, i...]`` (a leaf
named by a family and an index), ``["c", "p/q"]`` (a rational constant) or ``[op, id...]`` with ids
of earlier nodes. The checker reads ``add``, ``sub``, ``mul``, ``neg`` and constants as the field
operations of the reals and every other op as an opaque function symbol (congruence: equal
arguments, equal values), and puts each term in a normal form: a polynomial with rational
coefficients over atoms (leaves, and opaque applications whose arguments are themselves in normal
form). Two terms with equal normal forms are equal for every real value of the leaves.

``terms``: ``{"nodes": [...], "equal": [[a, b], ...]}``, accepted when every pair is equal as above
(a pair of one node by reflexivity, without its normal form; every node is validated either way)
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

``div(a, b)`` is read as a * inv(b), inv(c) = 1/c for a nonzero constant c and otherwise an atom
of b's normal form (a/b = a * (1/b) wherever b is nonzero; where it is 0 neither side is a real).

``rows``: a row primitive (layer_norm, softmax) at width ``n``, ``params`` per-position inputs
besides in0, ``stats`` row statistics. Element leaves: ``in<k>`` and ``g`` at index 0...,
``["leaf", "s", k]`` (statistic k) and ``["leaf", "T", k]`` (its cotangent). ``element``: ``spec``
(F, reading in/s), ``stats`` (summands phi_k, reading only in), ``vjp`` (one per input, reading
in/g/s/T), ``vjp_stats`` (one per stat, reading in/g/s). ``row``: ``spec`` and ``vjp`` (n terms per
input, reading in/g) and ``cut`` (per stat, row nodes equal to it). With sigma_j (leaves at index
(0..., 0) -> (0..., j)) the checker computes S_k = sum_j sigma_j(phi_k) and requires every cut
node of stat k to have normal form S_k; then at the top level stat k is an atom A_k keyed by S_k
(cut nodes read as it), inside opaque arguments it is S_k (or A_k when it has cut nodes), and
T_k = sum_j sigma_j(vjp_stats[k]); accepted when row spec[j] = sigma_j(F) and row vjp[k][j] =
sigma_j(vjp[k]) with T substituted, for every j and k, and every term of ``element.positive`` (the
element claim's domain: each > 0) is, at every j, the normal form of a non-constant sqrt argument
or divisor of the row spec (audit19). With the element claim (vjp = the VJP of (F, phi) at
cotangent (g, T), stats free, on that domain; proved separately) the chain rule through the sums
gives the row's (TRUST_BOUNDARIES.md, "layer_norm and softmax VJPs row by row").
"""

from __future__ import annotations

from fractions import Fraction
from itertools import product
from typing import Any

from .core import Verdict, checker, rational, require, tick
from .poly import acc as _acc
from .poly import mul

LINEAR = {"add", "sub", "neg"}
SAME, PLAIN = object(), None  # ``Normal.mode``'s inner mode: the mode itself; the plain one (no renaming)
Poly = dict  # monomial (sorted tuple of atom ids, repeated for powers) -> Fraction


def _small(c: Fraction) -> Any:
    """An integral coefficient as an int (exact, and int arithmetic is many times Fraction's)."""
    return c.numerator if c.denominator == 1 else c


def _mul(p: Poly, q: Poly) -> Poly:
    return mul(p, q, lambda a, b: tuple(sorted(a + b)))


class Normal:
    """Normal forms of a statement's nodes (parsed once; ``sub`` maps leaves to other leaves or
    constants before normalising: the ``channels`` substitution)."""

    def __init__(self, nodes: Any) -> None:
        require(isinstance(nodes, list), "nodes: a list")
        # every node is validated here, reached by a pair or not (a pair of one node is decided
        # without its normal form, so nothing about a node may be left to ``form``). The messages
        # are formatted only on failure, and the clock read once per 4096 nodes: a transformer's
        # statements have millions of nodes, and per-node overhead was most of this loop's time
        for k, n in enumerate(nodes):
            if not k & 4095:
                tick()
            if not (type(n) is list and n and type(n[0]) is str):
                require(False, f"node {k}: [op, args...]")
            op = n[0]
            if op == "leaf":
                if not (len(n) >= 2 and type(n[1]) is str and all(type(a) is int for a in n[2:])):
                    require(False, f"node {k}: bad leaf")
            elif op == "c":
                if len(n) != 2:
                    require(False, f"node {k}: bad constant")
                rational(n[1])
            elif len(n) == 3:  # the common case (add, sub, mul, div) without a generator
                a, b = n[1], n[2]
                if not (type(a) is int and type(b) is int and 0 <= a < k and 0 <= b < k):
                    require(False, f"node {k}: an argument is not an earlier node")
                if op == "neg":
                    require(False, f"node {k}: neg takes one argument")
            else:
                if not (len(n) >= 2 and all(type(a) is int and 0 <= a < k for a in n[1:])):
                    require(False, f"node {k}: an argument is not an earlier node")
                if op in ("add", "sub", "mul", "div"):
                    require(False, f"node {k}: {op} takes two")
                if op == "neg" and len(n) != 2:
                    require(False, f"node {k}: neg takes one argument")
        self.nodes = nodes
        self.uses = [0] * len(nodes)  # how many nodes use each: a shared sum is normalised once
        for n in nodes:
            if n[0] not in ("leaf", "c"):
                for a in n[1:]:
                    self.uses[a] += 1
        self.atoms: dict[tuple[Any, ...], int] = {}
        self.memo: dict[tuple[int, Any], Poly] = {}
        self.modes: dict[Any, tuple[Any, dict[int, Poly], Any]] = {None: (None, {}, None)}
        self.local: list[bool] | None = None  # ``rows``: which nodes read a per-position leaf
        self._fams: list[frozenset[str]] | None = None

    def atom(self, key: tuple[Any, ...]) -> Poly:
        i = self.atoms.setdefault(key, len(self.atoms))
        return {(i,): 1}

    def ref(self, t: Any) -> int:
        require(type(t) is int and 0 <= t < len(self.nodes), f"term {t!r}: no such node")
        return t

    def families(self) -> list[frozenset[str]]:
        """Per node, the leaf families its term reads: one pass over the nodes, when first asked
        (``channels``, ``rows``); the few distinct sets are shared."""
        if self._fams is None:
            sets: dict[frozenset[str], frozenset[str]] = {}
            self._fams = []
            for n in self.nodes:
                if n[0] == "leaf":
                    f = frozenset((n[1],))
                elif n[0] == "c":
                    f = frozenset()
                else:
                    f = frozenset().union(*(self._fams[a] for a in n[1:]))
                self._fams.append(sets.setdefault(f, f))
        return self._fams

    def mode(self, tag: Any, sub: Any = None, cut: Any = None, inner: Any = SAME) -> None:
        """Register the substitution ``tag``: leaves renamed by ``sub`` (a leaf's key to another
        leaf's key or to a normal form), nodes of ``cut`` read as the normal forms given there (at the
        top level only), and the arguments of opaque functions and divisors normalised under mode
        ``inner`` (default: ``tag`` itself)."""
        self.modes[tag] = (sub, cut or {}, tag if inner is SAME else inner)

    def _key(self, u: int, tag: Any) -> tuple[int, Any]:
        # a node reading no per-position leaf has one normal form for every position (``rows``)
        if self.local is not None and isinstance(tag, tuple) and not self.local[u]:
            return (u, (tag[0], None))
        return (u, tag)

    def _inv(self, p: Poly) -> Poly:
        """1/p: a rational for a nonzero constant, else an atom (reserved key: node ops are strings)."""
        if len(p) == 1 and () in p:
            return {(): _small(1 / Fraction(p[()]))}
        return self.atom((0, "inv", tuple(sorted(p.items()))))

    def _summands(self, u: int, tag: Any) -> list[tuple[int, int]]:
        """(sign, node) pairs whose sum is the linear node ``u``: through add / sub / neg nodes used
        once and not yet normalised, down to other nodes (normalised on their own)."""
        out, stack = [], [(1, u)]
        cut = self.modes[tag][1]
        while stack:
            sign, v = stack.pop()
            tick()
            n = self.nodes[v]
            if n[0] not in LINEAR or v in cut or (v != u and (self._key(v, tag) in self.memo
                                                              or self.uses[v] > 1)):
                out.append((sign, v))
            elif n[0] == "neg":
                stack.append((-sign, n[1]))
            else:
                stack.extend([(sign, n[1]), (-sign if n[0] == "sub" else sign, n[2])])
        return out

    def form(self, t: int, sub: Any = None, tag: Any = None) -> Poly:
        """The normal form of node ``t`` under mode ``tag`` (``sub`` given: registered as a mode
        renaming leaves everywhere, the ``channels`` substitution). ``div(a, b)`` is a * inv(b)."""
        if tag not in self.modes or sub is not None:
            self.mode(tag, sub)
        key = self._key(t, tag)
        if key in self.memo:
            return self.memo[key]
        stack = [key]
        while stack:  # post-order without recursion (terms may be deep)
            u, tg = stack[-1]
            if (u, tg) in self.memo:
                stack.pop()
                continue
            sub_, cut, inner = self.modes[tg]
            n = self.nodes[u]
            op, args = n[0], n[1:]
            if u in cut:
                self.memo[(u, tg)] = cut[u]
                stack.pop()
                continue
            # a sum (add, sub, neg nodes) is accumulated from its summands in one pass: a chain of
            # n additions costs n, not n^2 (its inner partial sums are not normalised on their own)
            parts = self._summands(u, tg) if op in LINEAR else None
            if parts is not None:
                deps = [self._key(a, tg) for _, a in parts]
            elif op in ("leaf", "c"):
                deps = []
            elif op == "mul":
                deps = [self._key(a, tg) for a in args]
            elif op == "div":  # (two arguments: ``__init__``)
                deps = [self._key(args[0], tg), self._key(args[1], inner)]
            else:
                deps = [self._key(a, inner) for a in args]
            todo = [d for d in deps if d not in self.memo]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            tick()
            if parts is not None:
                v = {}
                for (sign, _), d in zip(parts, deps):
                    _acc(v, self.memo[d], sign)
            elif op == "leaf":
                r = sub_(tuple(args)) if sub_ else tuple(args)
                v = r if isinstance(r, dict) else self.atom(("leaf", *r))
            elif op == "c":
                c = _small(rational(args[0]))
                v = {(): c} if c else {}
            else:
                fs = [self.memo[d] for d in deps]
                if op == "mul":
                    v = _mul(fs[0], fs[1])
                elif op == "div":  # a / b = a * (1/b) where b is nonzero (where it is 0, no real value)
                    v = _mul(fs[0], self._inv(fs[1]))
                else:  # opaque: an atom of the op and its arguments' normal forms
                    v = self.atom((op, *(tuple(sorted(f.items())) for f in fs)))
            self.memo[(u, tg)] = v
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
        # a term equals itself: a pair of one node needs no normal form (matmul's and layer_norm's
        # kernels build exactly their spec's terms, which the encoder stores once)
        require(a == b or nf.form(a) == nf.form(b), f"pair {k}: the two terms differ as polynomials")
    return Verdict(True, checked=len(pairs))


def _terms(nf: Normal, v: Any, k: int, what: str, may: set[str]) -> list[int]:
    """``v``: a list of ``k`` node ids whose terms read only leaves of the families ``may``."""
    require(isinstance(v, list) and len(v) == k, f"{what}: {k} terms")
    for t in v:
        tick()
        require(nf.families()[nf.ref(t)] <= may, f"{what}: term {t} reads a leaf outside {sorted(may)}")
    return v


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
    _terms(nf, [win["spec"], *win["vjp"]], params + 2, "element", {*names, "g"})
    positions = list(product(*(range(n) for n in shape)))
    # the element's leaves are exactly in0[0...], g[0...], in<k>[0]; anything else is refused
    element = {("in0", *one), ("g", *one), *((f"in{k}", 0) for k in range(1, params + 1))}

    def sigma(p: tuple[int, ...]):
        def sub(leaf: tuple[Any, ...]) -> Any:
            require(leaf in element, f"element leaf {leaf!r} is not one of the element's")
            return (leaf[0], *p) if leaf[0] in ("in0", "g") else (leaf[0], p[1])
        return sub

    spec = _terms(nf, plane["spec"], len(positions), "plane spec", {*names, "g"})
    vx = _terms(nf, plane["vjp"][0], len(positions), "plane vjp for in0", {*names, "g"})
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
        got = _terms(nf, plane["vjp"][k + 1], shape[1], f"plane vjp for in{k + 1}", {*names, "g"})
        for c in range(shape[1]):
            require(nf.form(nf.ref(got[c])) == wants[k][c], f"vjp for in{k + 1} at channel {c} is not the "
                                                            "sum of its elements' VJPs")
    return Verdict(True, checked=len(positions) * 2 + params * shape[1])


@checker("rows")
def check_rows(cert: dict[str, Any]) -> Verdict:
    """Replay a ``rows`` statement (see the module)."""
    n, params, stats = cert["n"], cert["params"], cert["stats"]
    require(all(type(v) is int for v in (n, params, stats)) and n >= 1 and 0 <= params <= 8
            and 0 <= stats <= 8, "n >= 1, params 0..8, stats 0..8: integers")
    nf = Normal(cert["nodes"])
    el, row = cert["element"], cert["row"]
    fams = {f"in{k}" for k in range(params + 1)}
    nf.local = [not f.isdisjoint({*fams, "g"}) for f in nf.families()]  # reads a per-position leaf

    spec = _terms(nf, [el["spec"]], 1, "element spec", {*fams, "s"})[0]
    phi = _terms(nf, el["stats"], stats, "stats", fams)
    vjp, vjp_s = _terms(nf, el["vjp"], params + 1, "element vjp", {*fams, "g", "s", "T"}), \
        _terms(nf, el["vjp_stats"], stats, "element stat vjp", {*fams, "g", "s"})
    rspec = _terms(nf, row["spec"], n, "row spec", fams)
    require(isinstance(row["vjp"], list) and len(row["vjp"]) == params + 1, "row vjp: one list per input")
    rvjp = [_terms(nf, v, n, f"row vjp for in{k}", {*fams, "g"}) for k, v in enumerate(row["vjp"])]
    big_s: list[Poly] = []  # the row's statistics, sums of their summands at every position
    big_t: list[Poly] = []  # the adjoint sums: the stats' VJPs summed over the row
    atom: list[Poly] = []  # per stat, an atom keyed by its sum (stats with equal sums share one)
    require(isinstance(row["cut"], list) and len(row["cut"]) == stats
            and all(isinstance(us, list) for us in row["cut"]), "cut: one list of nodes per stat")

    def sigma(j: Any, inner: bool) -> Any:
        def sub(leaf: tuple[Any, ...]) -> Any:
            fam, idx = leaf[0], leaf[1:]
            if fam in ("s", "T"):
                require(len(idx) == 1 and type(idx[0]) is int and 0 <= idx[0] < stats, f"bad leaf {leaf!r}")
                k = idx[0]
                if fam == "s":  # a stat with cut nodes is its atom everywhere, else only at the top
                    return big_s[k] if inner and not row["cut"][k] else atom[k]
                require(not inner and len(big_t) == stats, "an adjoint read in a function or a stat's VJP")
                return big_t[k]
            require(j is not None and fam in (*fams, "g") and idx and not any(idx),
                    f"element leaf {leaf!r} is not one of the element's")
            return (fam, *idx[:-1], j)
        return sub

    for j in (*range(n), None):  # top: s_k an atom, T_k its sum; inner (opaque arguments): s_k its sum
        nf.mode(("i", j), sigma(j, True))
        nf.mode(("t", j), sigma(j, False), inner=("i", j))
    for k in range(stats):
        big_s.append({})
        for j in range(n):
            _acc(big_s[k], nf.form(nf.ref(phi[k]), tag=("i", j)))
        atom.append(nf.atom((1, tuple(sorted(big_s[k].items())))))
    cut: dict[int, Poly] = {}
    for k, us in enumerate(row["cut"]):
        for u in _terms(nf, us, len(us), f"cut {k}", fams):
            require(nf.form(u) == big_s[k], f"cut node {u} is not stat {k}")
            cut[u] = atom[k]
    nf.mode("row", cut=cut, inner="in")  # the row's terms: cut nodes are their stats' atoms
    nf.mode("in", cut=cut)
    for k in range(stats):
        big_t.append({})
        for j in range(n):
            _acc(big_t[k], nf.form(nf.ref(vjp_s[k]), tag=("t", j)))
    for j in range(n):
        require(nf.form(rspec[j], tag="row") == nf.form(spec, tag=("t", j)),
                f"spec at {j} is not the element's spec of its entries and the row's stats")
        for k in range(params + 1):
            require(nf.form(rvjp[k][j], tag="row") == nf.form(vjp[k], tag=("t", j)),
                    f"vjp for in{k} at {j} is not the element's VJP with the row's adjoint sums")
    # the element claim's domain (its ``positive`` terms > 0) must hold wherever the row's spec is
    # defined: each positive term, at every position with the row's stats, is a sqrt argument or a
    # divisor of the spec's own terms (not a constant), so no listed domain can be empty or narrower
    # than the spec's (audit19: a domain that is never true made any element VJP "proved")
    dom, seen, todo = set(), set(), list(rspec)
    while todo:
        u = todo.pop()
        if u in seen:
            continue
        seen.add(u)
        tick()
        node = nf.nodes[u]
        if node[0] in ("leaf", "c"):
            continue
        if node[0] == "div" or (node[0] == "sqrt" and len(node) == 2):
            f = nf.form(node[-1], tag="in")
            if any(f):  # a monomial other than the constant one
                dom.add(tuple(sorted(f.items())))
        todo.extend(node[1:])
    pos = _terms(nf, el["positive"], len(el["positive"]), "positive", {*fams, "s"})
    for j in range(n):
        for p in pos:
            require(tuple(sorted(nf.form(p, tag=("i", j)).items())) in dom,
                    f"positive term {p} at {j} is not a sqrt argument or divisor of the row's spec")
    return Verdict(True, checked=n * (params + 2) + stats)
