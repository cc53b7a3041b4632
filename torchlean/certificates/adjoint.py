"""The ``adjoint`` kind: a linear primitive's VJP is the adjoint of its kernel, at symbolic sizes.

For a kernel L that is affine in its input x_k, the VJP V_k is the derivative of <g, L(x)> with
respect to x_k when <g, L(x)> = <V_k(g, ...), x_k> + R for all values, with V_k and R free of
x_k (then <g, L(x)> is an affine function of x_k whose coefficients are V_k: the derivative).
The checker takes R to be the monomials of <g, L(x)> without an x_k atom, requires none to have
two, and compares the others with <V_k, x_k>. The statement gives both sides as *index forms*
over symbolic sizes:

``{"arrays": {name: [size...]}, "lhs": [MONO...], "rhs": {name: [MONO...]}}`` with
``MONO = {"c": "p/q", "sum": [[var, size]...], "atoms": [[name, [index...]]...]}``, a size a
symbol (text) or a positive integer, an index a bound variable or an integer. A monomial denotes
c * sum over var_1 < size_1, ... of the product of the atoms (array entries).

Accepted when every index is in range (a variable ranges over exactly the axis it subscripts, an
integer lies in [0, size) for an integer size or is 0, true of every size >= 1), and for every
``rhs`` entry x: each of its monomials has exactly one atom named x (V_x free of x), no lhs
monomial has two, and its normal form equals that of the lhs monomials with one. The normal
form: atoms of distinct names sorted by name, bound
variables renamed by first appearance (alpha-equivalence), the sums taken as a set (finite sums
commute: Fubini), equal monomials' coefficients added (distributivity), zeros dropped. Each step
preserves the value for every assignment of sizes and array entries, so equal normal forms mean
equal values at every size of the class.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Any

from .core import Verdict, checker, rational, require, tick


def _size(s: Any) -> str | int:
    require((isinstance(s, str) and s.isidentifier()) or (type(s) is int and s >= 1), f"bad size {s!r}")
    return s


def _canon(mono: Any, arrays: dict[str, list[Any]]) -> tuple[Any, Fraction]:
    """(alpha-invariant key, coefficient) of one monomial, after checking every index's range."""
    require(isinstance(mono, dict) and isinstance(mono.get("sum"), list)
            and isinstance(mono.get("atoms"), list), "monomial: c, sum, atoms")
    ranges: dict[str, str | int] = {}
    for entry in mono["sum"]:
        require(isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and entry[0] not in ranges, f"bad or repeated bound variable {entry!r}")
        ranges[entry[0]] = _size(entry[1])
    names = [a[0] for a in mono["atoms"] if isinstance(a, list) and len(a) == 2]
    require(len(names) == len(mono["atoms"]) and len(set(names)) == len(names),
            "atoms: [name, [index...]] with distinct names")
    rename: dict[str, int] = {}
    atoms = []
    for name, index in sorted(mono["atoms"], key=lambda a: a[0]):
        shape = arrays.get(name)
        require(shape is not None and isinstance(index, list) and len(index) == len(shape),
                f"atom {name}: no such array, or wrong number of indices")
        out = []
        for i, size in zip(index, shape):
            if isinstance(i, str):
                require(ranges.get(i) == size, f"atom {name}: {i} does not range over its axis ({size})")
                rename.setdefault(i, len(rename))
                out.append(("v", rename[i]))
            else:
                require(type(i) is int and 0 <= i and (i == 0 or (type(size) is int and i < size)),
                        f"atom {name}: index {i!r} out of range for size {size}")
                out.append(("c", i))
        atoms.append((name, tuple(out)))
    require(set(rename) == set(ranges), "a bound variable subscripts no atom")
    key = (tuple(atoms), tuple(sorted((rename[v], str(s)) for v, s in ranges.items())))
    return key, rational(mono["c"])


def _normal(monos: Any, arrays: dict[str, list[Any]]) -> dict[Any, Fraction]:
    require(isinstance(monos, list), "a side must be a list of monomials")
    out: Counter[Any] = Counter()
    for m in monos:
        tick()
        k, c = _canon(m, arrays)
        out[k] += c
    return {k: c for k, c in out.items() if c}


@checker("adjoint")
def check_adjoint(cert: dict[str, Any]) -> Verdict:
    """Replay an ``adjoint`` statement (see the module): <g, L(x)> = <V_x, x> for each input x."""
    arrays = cert["arrays"]
    require(isinstance(arrays, dict) and all(isinstance(s, list) for s in arrays.values()), "arrays")
    for shape in arrays.values():
        for s in shape:
            _size(s)
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
        side, want = _normal(monos, arrays), _normal(part, arrays)
        require(side == want, f"<g, L(x)> and <V, {x}> differ: {len(set(side) ^ set(want))} monomials "
                              f"in one normal form only")
    return Verdict(True, checked=len(lhs) * len(rhs))
