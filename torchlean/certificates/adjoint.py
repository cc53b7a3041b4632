"""The ``adjoint`` kind: a linear primitive's VJP is the adjoint of its kernel, at symbolic sizes.

For a kernel L affine in its input x_k, V_k is the derivative of <g, L(x)> in x_k when
<g, L(x)> = <V_k(g, ...), x_k> + R for all values, V_k and R free of x_k. R is taken to be the
monomials of <g, L(x)> without an x_k atom (none may have two); the others must equal <V_k, x_k>.
Statement: ``{"arrays": {name: [size...]}, "lhs": [MONO...], "rhs": {name: [MONO...]}}``,
``MONO = {"c": "p/q", "sum": [[var, size]...], "atoms": [[name, [index...]]...], "ge": [expr...],
"eq": [expr...], "in": [[expr, name, [index...]]...]}`` (the last three optional); an expr (size,
index, guard) is a name, an int, or ``{"n1*i0": 2, "1": -3}``: integer multiples of products of
names ("1" the constant), of degree <= 1 in the bound variables. A monomial is c * sum over
0 <= var < size (empty if size <= 0) of [ge exprs >= 0] [eq exprs = 0] [in: expr = name[index],
an integer entry] * the atoms' product. Claim: the sides are equal for every integer >= 1 as each
size symbol and all entries. Each normal-form step below keeps the value, so equal normal forms
are equal values; then subscripts must be in range, and atoms are sorted by name, bound variables
renamed by first appearance (alpha), sums and guards taken as sets (Fubini), coefficients of
equal monomials added, zeros dropped.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Any

from .core import Verdict, checker, rational, require, tick
from .poly import add as _add
from .terms import _mul  # (monomials as sorted tuples of names, a power repeating its name)

Poly = dict  # a monomial (sorted tuple of names; () the constant) -> a nonzero int coefficient
ONE = {(): 1}


def _poly(e: Any) -> Poly:
    if type(e) is int or isinstance(e, str):
        e = {e if isinstance(e, str) else "1": 1 if isinstance(e, str) else e}
    require(isinstance(e, dict) and all(type(c) is int for c in e.values()), f"bad expression {e!r}")
    terms = [(() if k == "1" else tuple(sorted(str(k).split("*"))), c) for k, c in e.items()]
    require(all(n.isidentifier() for m, _ in terms for n in m), f"bad expression {e!r}")
    return _add({}, dict(terms))


def _coef(p: Poly, v: str) -> tuple[Poly, Poly]:
    """(a, b) with p = a*v + b (bound variables have degree <= 1: checked when read)."""
    a = {tuple(n for n in m if n != v): c for m, c in p.items() if v in m}
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
            terms = _add(terms, _mul(terms, {(n,): 1}))
        out = _add(out, terms)
    return all(c > 0 for c in out.values())


def _holds(e: Poly, ranges: dict[str, Poly]) -> bool:
    """e >= 0 on the box 0 <= v <= size_v - 1: each v (one per term) at the end minimising it."""
    for v, r in ranges.items():
        a, e = _coef(e, v)
        if a and not _nonneg(a):
            if not _nonneg(_add({}, a, -1)):
                return False
            e = _add(e, _mul(a, _add(r, ONE, -1)))
    return _nonneg(e)


def _key(p: Poly, rename: dict[str, str]) -> tuple[Any, ...]:
    return tuple(sorted((tuple(sorted(rename.get(n, n) for n in m)), c) for m, c in p.items()))


def _canon(mono: Any, arrays: dict[str, list[Poly]], symbols: set[str]) -> list[tuple[Any, Fraction]]:
    """The monomial's normal form: (alpha-invariant key, coefficient) terms, after checking it."""
    require(isinstance(mono, dict) and isinstance(mono.get("sum"), list)
            and isinstance(mono.get("atoms"), list), "monomial: c, sum, atoms")
    ranges: dict[str, Poly] = {}
    for entry in mono["sum"]:
        require(isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and entry[0].isidentifier() and entry[0] not in ranges and entry[0] not in symbols,
                f"bad or repeated bound variable {entry!r}")
        ranges[entry[0]] = _poly(entry[1])
    require(all(isinstance(a, list) and len(a) == 2 and a[0] in arrays and isinstance(a[1], list)
                and len(a[1]) == len(arrays[a[0]]) for a in mono["atoms"])
            and len({a[0] for a in mono["atoms"]}) == len(mono["atoms"]),
            "atoms: [name, [index per axis]] of distinct arrays")
    # a lookup [e = name[index]] (an integer array's entry, e.g. gather's indices) is kept as the
    # atom "=name" subscripted by e and the index: opaque, renamed and substituted like an atom
    looks = mono.get("in", [])
    require(isinstance(looks, list) and all(isinstance(k, list) and len(k) == 3 and k[1] in arrays
                                            and isinstance(k[2], list) and len(k[2]) == len(arrays[k[1]])
                                            for k in looks) and len({k[1] for k in looks}) == len(looks),
            "in: [expr, integer array, [index per axis]] of distinct arrays")
    atoms = sorted([(name, [_poly(i) for i in index]) for name, index in mono["atoms"]]
                   + [("=" + name, [_poly(e)] + [_poly(i) for i in index]) for e, name, index in looks])
    ge, eq = [_poly(e) for e in mono.get("ge", [])], [_poly(e) for e in mono.get("eq", [])]
    for p in [i for _, ix in atoms for i in ix] + ge + eq + list(ranges.values()):
        require(all(sum(n in ranges for n in m) <= (p not in ranges.values()) for m in p),
                "an index is not linear in the bound variables, or a size depends on one")
    return [(k, rational(mono["c"])) for k in _reduce(ranges, atoms, ge, eq, arrays)]


def _reduce(ranges: dict[str, Poly], atoms: list[Any], ge: list[Poly], eq: list[Poly],
            arrays: dict[str, list[Poly]]) -> list[Any]:
    def subst(v: str, t: Poly) -> None:
        atoms[:] = [(name, [_subst(i, v, t) for i in ix]) for name, ix in atoms]
        ge[:], eq[:] = [_subst(e, v, t) for e in ge], [_subst(e, v, t) for e in eq]
    # rule E: sum_{v<R} [v = t] f(v) = [0 <= t <= R - 1] f(t), t free of v (v's coefficient +-1)
    while eq:
        e = eq.pop()
        v = next((v for v in sorted(ranges) if _coef(e, v)[0] in (ONE, {(): -1})), None)
        if v is None:
            require(not any(e), "an eq guard determines no bound variable")
            if e:
                return []
            continue
        a, b = _coef(e, v)
        t = _add({}, b, -a[()])
        subst(v, t)
        ge += [t, _add(_add(ranges.pop(v), ONE, -1), t, -1)]
    done = False
    while not done:
        done = True
        for e in ge:
            tick()
            vs = [v for v in ranges if _coef(e, v)[0]]
            a, b = _coef(e, vs[0]) if len(vs) == 1 else ({}, {})
            if _holds(e, ranges):  # rule G: true on the whole box of the sums: a factor 1
                ge.remove(e)
            elif not vs and _nonneg(_add({(): -1}, e, -1)):  # rule F: e <= -1 at all sizes: 0
                return []
            elif a == ONE and _nonneg(_add({}, b, -1)):
                # rule S (offsets): [v >= L], L = -b >= 0: sum_{v<R} [v >= L] f(v) = sum_{v<R-L} f(v+L)
                subst(vs[0], _add({(vs[0],): 1}, b, -1))
                ranges[vs[0]] = _add(ranges[vs[0]], b)
            elif a == {(): -1} and _nonneg(_add(_add(ranges[vs[0]], ONE, -1), b, -1)):
                # rule T (a shorter range): [v <= U], U = b, U + 1 <= R: sum_{v<R} [..] = sum_{v<U+1}
                ranges[vs[0]] = _add(b, ONE)
                ge.remove(e)
            else:
                continue
            done = False
            break
    for v, r in ranges.items():  # rule U: a sum over a constant range is its terms (kernel taps)
        if not any(r):
            rest = {w: q for w, q in ranges.items() if w != v}
            return [k for j in range(r.get((), 0)) for k in _reduce(
                rest, [(n, [_subst(i, v, {(): j}) for i in ix]) for n, ix in atoms],
                [_subst(e, v, {(): j}) for e in ge], [], arrays)]
    rename: dict[str, str] = {}
    for name, index in atoms:
        for i, size in zip(index[name[0] == "=":], arrays[name.lstrip("=")]):
            tick()
            require(all(_holds(e, ranges) or e in ge for e in (i, _add(_add(size, ONE, -1), i, -1))),
                    f"atom {name}: an index may lie outside its axis")
        for i in index:
            for v in sorted((v for v in ranges if _coef(i, v)[0]), key=lambda v: (_key(_coef(i, v)[0], {}),
                                                                                 v)):
                rename.setdefault(v, str(len(rename)))
    require(set(rename) == set(ranges), "a bound variable subscripts no atom")
    return [(tuple((n, tuple(_key(i, rename) for i in ix)) for n, ix in atoms),
             tuple(sorted((rename[v], _key(r, {})) for v, r in ranges.items())),
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
    require(all(k.isidentifier() for k in cert["arrays"]), "array names are identifiers")
    arrays = {k: [_poly(s) for s in shape] for k, shape in cert["arrays"].items()}
    symbols = {n for shape in arrays.values() for p in shape for m in p for n in m}
    lhs, rhs = cert["lhs"], cert["rhs"]
    require(isinstance(lhs, list) and lhs, "the left side is 0")
    require(isinstance(rhs, dict) and rhs, "rhs: one side per differentiable input")
    require(not any(isinstance(k, list) and len(k) == 3 and k[1] in rhs for m in lhs + sum(rhs.values(), [])
                    if isinstance(m, dict) for k in m.get("in", [])), "a lookup of a differentiable input")
    for x, monos in rhs.items():
        require(x in arrays, f"rhs: no array {x!r}")
        for m in monos:
            require(sum(a[0] == x for a in m["atoms"]) == 1,
                    f"rhs {x}: a monomial is not linear in {x} (the VJP must not depend on {x})")
        # <g, L(x)> = (its monomials with one x) + (those without, free of x): L affine in x, and
        # the first part must be <V, x>
        require(all(sum(a[0] == x for a in m["atoms"]) <= 1 for m in lhs), f"<g, L(x)> is not affine in {x}")
        part = [m for m in lhs if any(a[0] == x for a in m["atoms"])]
        side, want = _normal(monos, arrays, symbols), _normal(part, arrays, symbols)
        require(side == want, f"<g, L(x)> and <V, {x}> differ: {len(set(side) ^ set(want))} monomials "
                              f"in one normal form only")
    return Verdict(True, checked=len(lhs) * len(rhs))
