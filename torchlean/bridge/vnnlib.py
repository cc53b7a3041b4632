"""VNN-LIB properties: parse (with lark, grammar in vnnlib.lark) to a :class:`Property`.

VNN-COMP semantics: a file states the *unsafe* condition. The property is violated ("sat") iff
some input in the input region drives the network to an output satisfying the output condition.
Every assert is conjoined; each formula is put in disjunctive normal form, and each disjunct is a
box on the inputs together with a conjunction of linear constraints ``c . y <= d`` on the outputs.
Disjuncts sharing a box are grouped into one :class:`Region`, so the usual shapes come out as:

- one box and a single conjunction (ACAS Xu property 1: ``Y_0 >= 3.99``);
- one box and several disjuncts (MNIST robustness: some other class beats the label);
- several boxes, each with the same output disjunction (ACAS Xu property 6).

Numbers are exact rationals (``fractions.Fraction`` read from the decimal text, never via a
float); float views are provided, rounded to nearest or outward. Strict inequalities keep a flag
(``Constraint.strict``; ``Region.lower_strict``/``upper_strict`` for input bounds, the tightest
bound winning and on a tie the strict one): the float box and the matrices are the closure
(sound for ``unsat``), while ``contains``/``holds``/``is_counterexample`` test them strictly.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..certificates.core import decimal

#: conversion to DNF stops with an error beyond this many disjuncts
MAX_DISJUNCTS = 100_000
#: how deeply s-expressions may nest (VNN-COMP files nest 4 or 5 deep)
MAX_DEPTH = 200


class VnnlibError(ValueError):
    """A malformed or unsupported property; the message gives the file, line and column."""


# -- result types ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Constraint:
    """``sum_j coeffs[j] * Y_j <= rhs`` (``< rhs`` when ``strict``), exactly."""

    coeffs: tuple[Fraction, ...]
    rhs: Fraction
    strict: bool = False

    def holds(self, y: Sequence[Fraction]) -> bool:
        """Whether the outputs ``y`` satisfy this constraint, in exact arithmetic."""
        val = sum((c * v for c, v in zip(self.coeffs, y) if c), Fraction(0))
        return val < self.rhs if self.strict else val <= self.rhs

    def __str__(self) -> str:
        terms = " + ".join(f"{c}*Y_{j}" for j, c in enumerate(self.coeffs) if c) or "0"
        return f"{terms} {'<' if self.strict else '<='} {self.rhs}"


def _matrix(constraints: Sequence[Constraint], n: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.array([[float(v) for v in k.coeffs] for k in constraints], dtype=np.float64).reshape(-1, n)
    d = np.array([float(k.rhs) for k in constraints], dtype=np.float64)
    return c, d


@dataclass(frozen=True)
class Region:
    """An input box and the output condition on it: a disjunction of conjunctions.

    ``disjuncts[i]`` is a tuple of constraints that must all hold; an empty tuple means the box
    alone is unsafe (any input in it is a counterexample).
    """

    lower_exact: tuple[Fraction, ...]
    upper_exact: tuple[Fraction, ...]
    disjuncts: tuple[tuple[Constraint, ...], ...]
    n_outputs: int
    #: per input: is the bound strict (lower < x, x < upper)? () means none is
    lower_strict: tuple[bool, ...] = ()
    upper_strict: tuple[bool, ...] = ()

    @property
    def lower(self) -> np.ndarray:
        """Lower bounds as float64, rounded to nearest."""
        return np.array([float(v) for v in self.lower_exact], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        return np.array([float(v) for v in self.upper_exact], dtype=np.float64)

    def float_box(self, dtype: Any = np.float64, outward: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The box in ``dtype``; with ``outward`` it encloses the exact box (lower rounded down)."""
        lo = np.array([_round(v, dtype, -1 if outward else 0) for v in self.lower_exact], dtype=dtype)
        hi = np.array([_round(v, dtype, +1 if outward else 0) for v in self.upper_exact], dtype=dtype)
        return lo, hi

    def matrices(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each disjunct as float64 ``(C, d)``: the disjunct holds iff ``C @ y <= d``."""
        return [_matrix(conj, self.n_outputs) for conj in self.disjuncts]

    def contains(self, x: Sequence[Any]) -> bool:
        """Exactly, strict bounds strictly: is ``x`` (floats or rationals) in the input set?"""
        xs = [Fraction(v) for v in np.asarray(x, dtype=object).reshape(-1)]
        n = len(self.lower_exact)
        ls, us = self.lower_strict or (False,) * n, self.upper_strict or (False,) * n
        box = zip(xs, self.lower_exact, self.upper_exact, ls, us)
        return len(xs) == n and all((lo < v if a else lo <= v) and (v < hi if b else v <= hi)
                                    for v, lo, hi, a, b in box)

    def unsafe_output(self, y: Sequence[Any]) -> bool:
        """Exactly: does ``y`` satisfy some disjunct?"""
        ys = [Fraction(v) for v in np.asarray(y, dtype=object).reshape(-1)]
        return any(all(k.holds(ys) for k in conj) for conj in self.disjuncts)


@dataclass(frozen=True)
class Property:
    """A parsed VNN-LIB property: unsafe iff some region has an input mapped to an unsafe output."""

    n_inputs: int
    n_outputs: int
    regions: tuple[Region, ...]
    path: str = "<string>"

    @property
    def boxes(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(r.lower, r.upper) for r in self.regions]

    def _single(self) -> Region:
        if len(self.regions) != 1:
            raise VnnlibError(f"{self.path}: the property has {len(self.regions)} input boxes; use .regions")
        return self.regions[0]

    @property
    def lower(self) -> np.ndarray:
        """The input box's lower bounds (float64, nearest), when there is one box."""
        return self._single().lower

    @property
    def upper(self) -> np.ndarray:
        return self._single().upper

    @property
    def disjuncts(self) -> tuple[tuple[Constraint, ...], ...]:
        """The output condition, when there is one box."""
        return self._single().disjuncts

    def is_counterexample(self, x: Sequence[Any], y: Sequence[Any]) -> bool:
        """Exactly (floats read as their rationals): is ``x`` in a box whose condition ``y`` meets?"""
        return any(r.contains(x) and r.unsafe_output(y) for r in self.regions)


def format_counterexample(x: Sequence[float], y: Sequence[float]) -> str:
    """VNN-COMP's result text for a counterexample: ``sat`` and ``((X_0 v) ... (Y_0 v))``."""
    lines = [f"(X_{i} {float(v)!r})" for i, v in enumerate(np.ravel(x))]
    lines += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(np.ravel(y))]
    return "sat\n(" + "\n ".join(lines) + ")\n"


# -- parsing --------------------------------------------------------------------------------

@lru_cache(maxsize=2)
def _parser(positions: bool = True) -> Any:
    """The LALR parser; ``positions``: every tree node carries its line and column (``meta``),
    which only error messages read. Without them a parse takes ~40% less time (a CIFAR property,
    3,072 inputs: 1.5 -> 0.9 s), so ``parse_vnnlib_string`` parses without and again with them
    only to locate an error it found."""
    from lark import Lark

    grammar = (Path(__file__).with_name("vnnlib.lark")).read_text()
    return Lark(grammar, parser="lalr", propagate_positions=positions, maybe_placeholders=False)


def parse_vnnlib(path: str | os.PathLike[str]) -> Property:
    """Read and parse a ``.vnnlib`` file."""
    from .._files import MAX_VNNLIB_BYTES, read_input

    try:  # (regular files only: a FIFO is refused, not waited on; strict UTF-8; a size limit)
        text = read_input(path, MAX_VNNLIB_BYTES, what="VNN-LIB file")
    except ValueError as e:
        raise VnnlibError(str(e)) from None
    return parse_vnnlib_string(text, str(path))


def parse_vnnlib_string(text: str, path: str = "<string>") -> Property:
    """Parse VNN-LIB text; errors are ``VnnlibError('PATH:LINE:COL: message')``."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

    depth = _depth(text)
    if depth > MAX_DEPTH:
        raise VnnlibError(f"{path}: nested {depth} deep, over the limit of {MAX_DEPTH}")
    try:
        tree = _parser(positions=False).parse(text)  # (syntax errors: the tokens carry positions)
    except UnexpectedEOF:
        line = text.count("\n") + 1
        col = len(text) - text.rfind("\n")
        raise VnnlibError(f"{path}:{line}:{col}: unexpected end of file (unbalanced parentheses?)") from None
    except UnexpectedToken as e:
        if e.token.type == "$END":
            line = text.count("\n") + 1
            raise VnnlibError(f"{path}:{line}:{len(text) - text.rfind(chr(10))}: unexpected end of file "
                              "(unbalanced parentheses?)") from None
        expected = ", ".join(sorted(_pretty(t) for t in e.expected)[:8])
        raise VnnlibError(f"{path}:{e.line}:{e.column}: unexpected {e.token.value!r}; "
                          f"expected {expected}") from None
    except UnexpectedCharacters as e:
        word = re.match(r"[^\s()]*", text[e.pos_in_stream:]).group() or text[e.pos_in_stream]
        raise VnnlibError(f"{path}:{e.line}:{e.column}: unexpected {word!r}") from None
    except UnexpectedInput as e:  # pragma: no cover - the cases above cover lark's LALR errors
        raise VnnlibError(f"{path}:{e.line}:{e.column}: syntax error") from None
    try:
        return _Reader(path).read(tree)
    except VnnlibError:  # the same reading of the same text again, this time with the positions
        pass  # its message names (the reader is deterministic: it stops at the same error)
    return _Reader(path).read(_parser(positions=True).parse(text))


def _depth(text: str) -> int:
    """The deepest parenthesis nesting outside comments (a linear scan)."""
    if ";" in text:
        text = re.sub(r";[^\r\n]*", "", text)  # (SMT-LIB's comments, as the grammar's)
    depth = best = 0
    for m in re.finditer(r"[()]", text):
        if m.group() == "(":
            depth += 1
            if depth > best:
                best = depth
        else:
            depth -= 1
    return best


_TOKEN_NAMES = {"LPAR": "'('", "RPAR": "')'", "CMP": "a comparison", "SYMBOL": "a name",
                "NUMBER": "a number", "AND": "'and'", "OR": "'or'", "ASSERT": "'assert'"}


def _pretty(t: str) -> str:
    return _TOKEN_NAMES.get(t, t.lower().replace("_", "-"))


def _round(v: Fraction, dtype: Any, direction: int) -> Any:
    """``v`` rounded to nearest in ``dtype``, then one step down/up if it lies on the wrong side."""
    f = np.asarray(float(v)).astype(dtype)  # float64 nearest, then dtype: may double-round, fixed below
    if direction == 0:  # the neighbour nearest to v (ties: whichever numpy chose first)
        around = [np.nextafter(f, np.asarray(s, dtype=dtype)) for s in (-np.inf, np.inf)]
        return min([f, *around], key=lambda c: abs(Fraction(float(c)) - v))
    if direction < 0:
        while Fraction(float(f)) > v:
            f = np.nextafter(f, np.asarray(-np.inf, dtype=dtype))
    elif direction > 0:
        while Fraction(float(f)) < v:
            f = np.nextafter(f, np.asarray(np.inf, dtype=dtype))
    return f


# linear terms: ({variable: coefficient}, constant)
Linear = tuple[dict[str, Fraction], Fraction]


class _Reader:
    """Walks the parse tree: declarations, then each assert to DNF over normalised atoms."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.declared: dict[str, tuple[int, int]] = {}

    def err(self, meta: Any, msg: str) -> VnnlibError:
        line, col = (getattr(meta, "line", "?"), getattr(meta, "column", "?"))
        return VnnlibError(f"{self.path}:{line}:{col}: {msg}")

    def read(self, tree: Any) -> Property:
        asserts = []
        for cmd in tree.children:
            if cmd.data == "declare":
                self.declare(cmd)
            elif cmd.data == "assertion":
                asserts.append(cmd.children[0])
        n_in = self.count("X")
        n_out = self.count("Y")
        if not n_in or not n_out:
            raise VnnlibError(f"{self.path}: no {'inputs X_i' if not n_in else 'outputs Y_j'} are declared")
        # each assert's DNF; single-term ones are conjoined to everything without a product
        common: list[Any] = []
        split: list[list[list[Any]]] = []
        for f in asserts:
            terms = self.dnf(f)
            if len(terms) == 1:
                common.extend(terms[0])
            else:
                split.append(terms)
        total = 1
        for terms in split:
            total *= len(terms)
            if total > MAX_DISJUNCTS:
                raise self.err(f.meta, f"the property has more than {MAX_DISJUNCTS} disjuncts")
        base = _Term(n_in, n_out)
        self.apply(base, common)  # once: MNIST has 1568 box atoms shared by 9 disjuncts
        regions: dict[tuple[tuple[Any, ...], ...], list[tuple[Constraint, ...]]] = {}
        last: Any = None  # (the last case's box and its conjunctions)
        conjs: list[tuple[Constraint, ...]] = []
        for combo in itertools.product(*split):
            term = base.copy()
            self.apply(term, [a for t in combo for a in t])
            case = self.finish(term)
            if case is None:
                continue
            box, conj = case
            if box != last:  # (the last box again, as in most files: compared, not hashed: a
                last, conjs = box, regions.setdefault(box, [])  # Fraction's hash is a modular inverse)
            if conj not in conjs:
                conjs.append(conj)
        out = tuple(Region(lo, hi, tuple(c), n_out, ls, us) for (lo, hi, ls, us), c in regions.items())
        return Property(n_in, n_out, out, self.path)

    def declare(self, cmd: Any) -> None:
        name, sort = (str(t) for t in (cmd.children[0], cmd.children[-1]))
        if sort != "Real":
            raise self.err(cmd.meta, f"{name} is declared {sort}; only Real is supported")
        if name in self.declared:
            raise self.err(cmd.meta, f"{name} is declared twice")
        prefix, _, index = name.partition("_")
        if prefix not in ("X", "Y") or not index.isdigit():
            raise self.err(cmd.meta, f"unexpected name {name!r}: inputs are X_i and outputs Y_j")
        self.declared[name] = (getattr(cmd.meta, "line", 0), getattr(cmd.meta, "column", 0))

    def count(self, prefix: str) -> int:
        idx = sorted(int(n[2:]) for n in self.declared if n[0] == prefix)
        if idx != list(range(len(idx))):
            missing = sorted(set(range(max(idx) + 1)) - set(idx))
            raise VnnlibError(f"{self.path}: {prefix}_{missing[0]} is not declared but "
                              f"{prefix}_{max(idx)} is")
        return len(idx)

    # -- formulas ------------------------------------------------------------------------------
    def dnf(self, f: Any) -> list[list[Any]]:
        """Disjunctive normal form: a list of conjunctions of (normalised atom, strict, meta)."""
        if f.data == "atom":
            strict = str(f.children[0]) in ("<", ">")
            return [[(a, strict, f.meta) for a in self.atom(f)]]
        parts = [self.dnf(c) for c in f.children]
        if f.data == "disj":
            return [t for p in parts for t in p]
        out: list[list[Any]] = [[]]
        for p in parts:  # conj: distribute
            if len(out) * len(p) > MAX_DISJUNCTS:
                raise self.err(f.meta, f"the property has more than {MAX_DISJUNCTS} disjuncts")
            out = [t + u for t in out for u in p]
        return out

    def atom(self, f: Any) -> list[Linear]:
        """``lhs OP rhs`` as one or two ``expr <= 0``."""
        op, lhs, rhs = str(f.children[0]), self.term(f.children[1]), self.term(f.children[2])
        diff = _sub(lhs, rhs)
        if op in ("<=", "<"):
            return [diff]
        if op in (">=", ">"):
            return [_scale(diff, Fraction(-1))]
        return [diff, _scale(diff, Fraction(-1))]  # "="

    def term(self, t: Any) -> Linear:
        kind = t.data
        if kind == "var":
            name = str(t.children[0])
            if name not in self.declared:
                raise self.err(t.children[0], f"{name} is not declared")
            return {name: Fraction(1)}, Fraction(0)
        if kind == "num":
            try:  # (ASCII digits, within the digit and exponent limits: 1e999999999 is refused)
                return {}, decimal(str(t.children[0]))
            except ValueError as e:
                raise self.err(t.children[0], str(e)) from None
        args = [self.term(c) for c in t.children]
        if kind == "neg":
            return _scale(args[0], Fraction(-1))
        if kind == "plus":
            out = args[0]
            for a in args[1:]:
                out = _sub(out, _scale(a, Fraction(-1)))
            return out
        if kind == "minus":
            out = args[0]
            for a in args[1:]:
                out = _sub(out, a)
            return out
        # times: all but at most one factor must be constants
        out = ({}, Fraction(1))
        for a in args:
            if a[0] and out[0]:
                raise self.err(t.meta, "non-linear product of variables")
            out = _scale(out, a[1]) if not a[0] else _scale(a, out[1])
        return out

    # -- one disjunct ----------------------------------------------------------------------------
    def apply(self, term: _Term, atoms: list[Any]) -> None:
        """Conjoin normalised atoms ``a.v + c <= 0`` (``< 0`` when strict) to ``term``: box bounds
        (the tightest wins; on a tie the strict one) or output constraints."""
        for (coeffs, const), strict, meta in atoms:
            xs = [v for v in coeffs if v[0] == "X"]
            ys = [v for v in coeffs if v[0] == "Y"]
            if xs and ys:
                raise self.err(meta, "a constraint mixing inputs and outputs is not supported")
            if len(xs) > 1:
                raise self.err(meta, "a constraint over several inputs is not a box; not supported")
            if xs:
                i, a = int(xs[0][2:]), coeffs[xs[0]]
                bound = -const / a
                if a > 0:
                    if term.hi[i] is None or bound < term.hi[i]:
                        term.hi[i], term.hi_strict[i] = bound, strict
                    elif bound == term.hi[i]:
                        term.hi_strict[i] = term.hi_strict[i] or strict
                elif term.lo[i] is None or bound > term.lo[i]:
                    term.lo[i], term.lo_strict[i] = bound, strict
                elif bound == term.lo[i]:
                    term.lo_strict[i] = term.lo_strict[i] or strict
            elif ys:
                vec = [Fraction(0)] * term.n_out
                for v in ys:
                    vec[int(v[2:])] = coeffs[v]
                k = Constraint(tuple(vec), -const, strict)
                if k not in term.seen:  # (a set: a list scan was quadratic in the file)
                    term.seen.add(k)
                    term.conj.append(k)
            elif const > 0 or (const == 0 and strict):  # a false constant atom: the disjunct is empty
                term.empty = True

    def finish(self, term: _Term) -> Any:
        """The box and output conjunction of a term; None when it is infeasible."""
        for i, (lo, hi) in enumerate(zip(term.lo, term.hi)):
            if lo is None or hi is None:
                side = "lower" if lo is None else "upper"
                raise VnnlibError(f"{self.path}: input X_{i} has no {side} bound")
        if term.empty or any(a > b or (a == b and (sa or sb))  # type: ignore[operator]
                             for a, b, sa, sb in zip(term.lo, term.hi, term.lo_strict, term.hi_strict)):
            return None  # (lo < x <= lo is empty too)
        flags = (tuple(term.lo_strict), tuple(term.hi_strict))
        if not any(flags[0]) and not any(flags[1]):
            flags = ((), ())
        return (tuple(term.lo), tuple(term.hi), *flags), tuple(term.conj)


class _Term:
    """One DNF term being accumulated: input bounds (None: none yet) and output constraints."""

    def __init__(self, n_in: int, n_out: int) -> None:
        self.n_out = n_out
        self.lo: list[Fraction | None] = [None] * n_in
        self.hi: list[Fraction | None] = [None] * n_in
        self.lo_strict, self.hi_strict = [False] * n_in, [False] * n_in
        self.conj: list[Constraint] = []
        self.seen: set[Constraint] = set()
        self.empty = False

    def copy(self) -> _Term:
        t = _Term(0, self.n_out)
        t.lo, t.hi, t.conj, t.empty = list(self.lo), list(self.hi), list(self.conj), self.empty
        t.lo_strict, t.hi_strict = list(self.lo_strict), list(self.hi_strict)
        t.seen = set(self.seen)
        return t


def _sub(a: Linear, b: Linear) -> Linear:
    coeffs = dict(a[0])
    for v, c in b[0].items():
        coeffs[v] = coeffs.get(v, Fraction(0)) - c
    return {v: c for v, c in coeffs.items() if c}, a[1] - b[1]


def _scale(a: Linear, k: Fraction) -> Linear:
    return ({v: c * k for v, c in a[0].items() if c * k}, a[1] * k)
