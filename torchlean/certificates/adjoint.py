"""The ``adjoint`` kind: a linear primitive's VJP is the adjoint of its kernel, at symbolic sizes.

For a kernel L that is affine in its input x_k, the VJP V_k is the derivative of <g, L(x)> with
respect to x_k when <g, L(x)> = <V_k(g, ...), x_k> + R for all values, with V_k and R free of
x_k (then <g, L(x)> is an affine function of x_k whose coefficients are V_k: the derivative).
The checker takes R to be the monomials of <g, L(x)> without an x_k atom, requires none to have
two, and compares the others with <V_k, x_k>. The statement gives both sides as *index forms*
over symbolic sizes:

``{"arrays": {name: [size...]}, "lhs": [MONO...], "rhs": {name: [MONO...]}}`` with
``MONO = {"c": "p/q", "sum": [[var, size]...], "atoms": [[name, [index...]]...],
"ge": [expr...], "eq": [expr...]}`` (``ge``/``eq`` optional). An expr (a size, an index, a guard)
is a name, an integer, or ``{"n1*i0": 2, "1": -3}`` (a sum of integer multiples of products of
names; "1" the constant): a polynomial in the size symbols, of degree at most 1 in the bound
variables. A monomial denotes c * sum over 0 <= var_k < size_k (empty when size_k <= 0) of
[every ge expr >= 0] [every eq expr = 0] times the product of the atoms (array entries). Claim: for
every integer >= 1 as each size symbol and all entries, the two sides are equal.

Normal form of a monomial, each step keeping its value (so equal normal forms are equal values):
(E) an ``eq`` guard in which a bound variable v has coefficient +-1 is solved for v = t, v
substituted and dropped from the sums, and [0 <= t <= size_v - 1] added:
sum_{v<R} [v = t] f(v) = [0 <= t < R] f(t). (G) a ``ge`` guard that holds on the whole box of
the sums (its minimum over the box, a polynomial in the symbols, has nonnegative coefficients
after n -> 1 + n, hence is >= 0 for every symbol >= 1) is dropped. (S) a guard v - L >= 0 with L
free of bound variables and L >= 0 (as in G): v := v + L, size_v := size_v - L, since
sum_{v<R} [v >= L] f(v) = sum_{v<R-L} f(v + L) for L >= 0 (concat's and padding's offsets).
(T) a guard U - v >= 0 with U + 1 <= size_v (as in G): size_v := U + 1 (a shorter range).
Then every subscript must be in range (>= 0 and <= size - 1 by G, or literally a remaining guard),
atoms of distinct names are sorted by name, bound variables renamed in order of first appearance
(alpha-equivalence), the sums and guards taken as sets (finite sums commute: Fubini), equal
monomials' coefficients added (distributivity), zeros dropped.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Any

from .core import Verdict, checker, rational, require, tick

Poly = dict  # a monomial (sorted tuple of names; () the constant) -> a nonzero int coefficient


def _poly(e: Any) -> Poly:
    if type(e) is int:
        return {(): e} if e else {}
    if isinstance(e, str):
        require(e.isidentifier(), f"bad name {e!r}")
        return {(e,): 1}
    require(isinstance(e, dict) and all(type(c) is int for c in e.values()), f"bad expression {e!r}")
    out: Poly = {}
    for k, c in e.items():
        m = () if k == "1" else tuple(sorted(str(k).split("*")))
        require(all(n.isidentifier() for n in m), f"bad term {k!r}")
        out = _add(out, {m: c})
    return out


def _add(p: Poly, q: Poly, k: int = 1) -> Poly:
    r = dict(p)
    for m, c in q.items():
        r[m] = r.get(m, 0) + k * c
    return {m: c for m, c in r.items() if c}


def _mul(p: Poly, q: Poly) -> Poly:
    out: Poly = {}
    for m, c in p.items():
        for n, d in q.items():
            out = _add(out, {tuple(sorted(m + n)): c * d})
    return out


def _coef(p: Poly, v: str) -> tuple[Poly, Poly]:
    """(the coefficient of bound variable v, the rest): p = a*v + b (degree 1 in v is checked)."""
    a: Poly = {}
    for m, c in p.items():
        if v in m:
            rest = list(m)
            rest.remove(v)
            require(v not in rest, f"an index is not linear in {v}")
            a[tuple(rest)] = c
    return a, {m: c for m, c in p.items() if v not in m}


def _subst(p: Poly, v: str, t: Poly) -> Poly:
    a, b = _coef(p, v)
    return _add(b, _mul(a, t))


def _nonneg(p: Poly) -> bool:
    """p >= 0 for every symbol >= 1: with each symbol n written 1 + n, no coefficient is negative."""
    out: Poly = {}
    for m, c in p.items():
        terms: Poly = {(): c}
        for n in m:
            terms = _add(terms, _mul(terms, {(n,): 1}))  # times (1 + n)
        out = _add(out, terms)
    return all(c > 0 for c in out.values())


def _holds(e: Poly, ranges: dict[str, Poly]) -> bool:
    """e >= 0 on the whole box 0 <= v <= size_v - 1 (rule G): its minimum, vertex by vertex."""
    low = e
    for v, r in ranges.items():
        a, b = _coef(low, v)
        if a and _nonneg(a):
            low = b
        elif a and _nonneg(_add({}, a, -1)):
            low = _add(b, _mul(a, _add(r, {(): -1})))
        elif a:
            return False
    return _nonneg(low)


def _key(p: Poly, rename: dict[str, str] | None = None) -> tuple[Any, ...]:
    if rename is not None:
        p = {tuple(sorted(rename.get(n, n) for n in m)): c for m, c in p.items()}
    return tuple(sorted(p.items()))


def _canon(mono: Any, arrays: dict[str, list[Poly]], symbols: set[str]) -> list[tuple[Any, Fraction]]:
    """The monomial in normal form, as (alpha-invariant key, coefficient) terms (several once a
    sum over a constant range is unrolled, none when a guard is false), after checking every
    index's range."""
    require(isinstance(mono, dict) and isinstance(mono.get("sum"), list)
            and isinstance(mono.get("atoms"), list), "monomial: c, sum, atoms")
    ranges: dict[str, Poly] = {}
    for entry in mono["sum"]:
        require(isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and entry[0].isidentifier() and entry[0] not in ranges and entry[0] not in symbols,
                f"bad or repeated bound variable {entry!r}")
        ranges[entry[0]] = _poly(entry[1])
    for r in ranges.values():
        require(not any(v in m for m in r for v in ranges), "a size depends on a bound variable")
    names = [a[0] for a in mono["atoms"] if isinstance(a, list) and len(a) == 2]
    require(len(names) == len(mono["atoms"]) and len(set(names)) == len(names),
            "atoms: [name, [index...]] with distinct names")
    atoms = []
    for name, index in mono["atoms"]:
        require(name in arrays and isinstance(index, list) and len(index) == len(arrays[name]),
                f"atom {name}: no such array, or wrong number of indices")
        atoms.append((name, [_poly(i) for i in index]))
    ge, eq = [_poly(e) for e in mono.get("ge", [])], [_poly(e) for e in mono.get("eq", [])]
    for p in [i for _, ix in atoms for i in ix] + ge + eq:  # no term has two bound variables
        require(all(sum(n in ranges for n in m) <= 1 for m in p), "an index is not linear")
    c = rational(mono["c"])
    return [(k, c) for k in _reduce(ranges, atoms, ge, eq, arrays)]


def _reduce(ranges: dict[str, Poly], atoms: list[Any], ge: list[Poly], eq: list[Poly],
            arrays: dict[str, list[Poly]]) -> list[Any]:
    def subst(v: str, t: Poly) -> None:
        for k, (name, ix) in enumerate(atoms):
            atoms[k] = (name, [_subst(i, v, t) for i in ix])
        ge[:] = [_subst(e, v, t) for e in ge]
        eq[:] = [_subst(e, v, t) for e in eq]
    while eq:  # rule E
        e = eq.pop()
        v = next((v for v in sorted(ranges) if _coef(e, v)[0] in ({(): 1}, {(): -1})), None)
        if v is None:
            require(not any(m for m in e), "an eq guard determines no bound variable")
            if e:
                return []
            continue
        a, b = _coef(e, v)
        t = _add({}, b, -a[()])  # v = -b / a, a = +-1
        subst(v, t)
        r = ranges.pop(v)
        ge += [t, _add(_add(r, {(): -1}), t, -1)]
    changed = True
    while changed:
        changed = False
        for e in ge:
            tick()
            vs = [v for v in ranges if _coef(e, v)[0]]
            a, b = _coef(e, vs[0]) if len(vs) == 1 else ({}, {})
            if _holds(e, ranges):  # rule G
                ge.remove(e)
            elif not vs and _nonneg(_add({(): -1}, e, -1)):  # rule F: e <= -1 for all sizes: 0
                return []
            elif a == {(): 1} and _nonneg(_add({}, b, -1)):  # rule S: v >= L := -b >= 0
                subst(vs[0], _add({(vs[0],): 1}, b, -1))
                ranges[vs[0]] = _add(ranges[vs[0]], b)
            elif a == {(): -1} and _nonneg(_add(_add(ranges[vs[0]], {(): -1}), b, -1)):  # rule T
                ranges[vs[0]] = _add(b, {(): 1})
                ge.remove(e)
            else:
                continue
            changed = True
            break
    for v, r in ranges.items():  # rule U: a sum over a constant range is its terms
        if not any(m for m in r):
            out = []
            for k in range(r.get((), 0)):
                rest = {w: q for w, q in ranges.items() if w != v}
                t = {(): k} if k else {}
                out += _reduce(rest, [(n, [_subst(i, v, t) for i in ix]) for n, ix in atoms],
                               [_subst(e, v, t) for e in ge], [], arrays)
            return out
    keys = {_key(e) for e in ge}
    rename: dict[str, str] = {}
    for name, index in sorted(atoms, key=lambda a: a[0]):
        for i, size in zip(index, arrays[name]):
            tick()
            hi = _add(_add(size, {(): -1}), i, -1)
            require((_holds(i, ranges) or _key(i) in keys) and (_holds(hi, ranges) or _key(hi) in keys),
                    f"atom {name}: an index may lie outside its axis")
            for v in sorted((v for v in ranges if _coef(i, v)[0]), key=lambda v: (_key(_coef(i, v)[0]), v)):
                rename.setdefault(v, str(len(rename)))
    require(set(rename) == set(ranges), "a bound variable subscripts no atom")
    return [(tuple((n, tuple(_key(i, rename) for i in ix)) for n, ix in sorted(atoms, key=lambda a: a[0])),
             tuple(sorted((rename[v], _key(r)) for v, r in ranges.items())),
             tuple(sorted(_key(e, rename) for e in ge)))]


def _normal(monos: Any, arrays: dict[str, list[Poly]], symbols: set[str]) -> dict[Any, Fraction]:
    require(isinstance(monos, list), "a side must be a list of monomials")
    out: Counter[Any] = Counter()
    for m in monos:
        tick()
        for k, c in _canon(m, arrays, symbols):
            out[k] += c
    return {k: c for k, c in out.items() if c}


@checker("adjoint")
def check_adjoint(cert: dict[str, Any]) -> Verdict:
    """Replay an ``adjoint`` statement (see the module): <g, L(x)> = <V_x, x> for each input x."""
    require(isinstance(cert["arrays"], dict) and all(isinstance(s, list) for s in cert["arrays"].values()),
            "arrays")
    arrays = {k: [_poly(s) for s in shape] for k, shape in cert["arrays"].items()}
    symbols = {n for shape in arrays.values() for p in shape for m in p for n in m}
    lhs = cert["lhs"]
    require(isinstance(lhs, list) and lhs, "the left side is 0")
    rhs = cert["rhs"]
    require(isinstance(rhs, dict) and rhs, "rhs: one side per differentiable input")
    for x, monos in rhs.items():
        require(x in arrays, f"rhs: no array {x!r}")
        for m in monos:
            require(sum(a[0] == x for a in m["atoms"]) == 1,
                    f"rhs {x}: a monomial is not linear in {x} (the VJP must not depend on {x})")
        # <g, L(x)> = (its monomials with one x) + (those without, free of x): L affine in x, and
        # the first part must be <V, x>
        part = []
        for m in lhs:
            k = sum(a[0] == x for a in m["atoms"])
            require(k <= 1, f"<g, L(x)> is not affine in {x}")
            if k:
                part.append(m)
        side, want = _normal(monos, arrays, symbols), _normal(part, arrays, symbols)
        require(side == want, f"<g, L(x)> and <V, {x}> differ: {len(set(side) ^ set(want))} monomials "
                              f"in one normal form only")
    return Verdict(True, checked=len(lhs) * len(rhs))
