"""The property a bound certificate talks about, re-derived from VNN-LIB text (standard library only).

A VNN-LIB file declares inputs ``X_i`` and outputs ``Y_j`` and asserts the *unsafe* set: `unsat`
means no input in the asserted input region maps to an output satisfying the output constraints.
This module reads the subset VNN-COMP uses (``declare-const``; ``assert`` over ``and``/``or`` of
``<=``, ``>=``, ``<``, ``>``, ``=`` between linear terms with decimal constants) into disjunctive
normal form, grouped by input box:

    unsafe  =  OR over regions r:  x ∈ box_r  AND  OR over disjuncts j:  AND over k:  a_k·y <= b_k

Numbers are read as exact decimals (``Fraction('0.679857769')``). Strict atoms are kept with a
flag, on the outputs (``Atom.strict``) and on the input bounds (``Region.lo_strict``/``hi_strict``:
``X_0 > 0`` is lo = 0, strict): a bound proof may treat them as non-strict (the closure only
enlarges the unsafe set), a counterexample must satisfy them strictly (``Region.contains``,
``Atom.holds``). Repeated bounds on one input: the tightest wins, and on a tie the strict one.
Its own small parser keeps this module free of lark, so the statement a certificate is checked
against depends on nothing outside the standard library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .core import Rejected, decimal, digest
from .sexpr import lex

MAX_TERMS = 100_000
#: how deeply s-expressions may nest (VNN-COMP files nest 4 or 5 deep)
MAX_DEPTH = 200


#: commands the reader skips, as the search's lark grammar (bridge/vnnlib.lark) does: their length
_NEUTRAL = {"check-sat": 1, "exit": 1, "set-logic": 2, "set-info": 3}


class PropertyError(ValueError):
    """Malformed or unsupported VNN-LIB; the message names the line."""


@dataclass(frozen=True)
class Atom:
    a: tuple[Fraction, ...]  # coefficients over Y
    b: Fraction  # a·y <= b (or < b when strict)
    strict: bool


@dataclass(frozen=True)
class Region:
    lo: tuple[Fraction, ...]
    hi: tuple[Fraction, ...]
    disjuncts: tuple[tuple[Atom, ...], ...]
    #: per input: is the bound strict (lo < x, x < hi)? () means no bound is; a bound proof may use
    #: the closed box [lo, hi] (a superset), a counterexample must lie in the half-open one
    lo_strict: tuple[bool, ...] = ()
    hi_strict: tuple[bool, ...] = ()

    def strictness(self) -> tuple[tuple[bool, ...], tuple[bool, ...]]:
        """(lo_strict, hi_strict), one flag per input."""
        n = len(self.lo)
        return (self.lo_strict or (False,) * n, self.hi_strict or (False,) * n)

    def contains(self, x: list[Fraction]) -> bool:
        """Exactly, strict bounds strictly: is ``x`` in the region's input set?"""
        ls, hs = self.strictness()
        return len(x) == len(self.lo) and all(
            (a < v if sa else a <= v) and (v < b if sb else v <= b)
            for a, v, b, sa, sb in zip(self.lo, x, self.hi, ls, hs)
        )


@dataclass(frozen=True)
class Spec:
    n_in: int
    n_out: int
    regions: tuple[Region, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_in": self.n_in,
            "n_out": self.n_out,
            "regions": [_region_dict(r) for r in self.regions],
        }

    def digest(self) -> str:
        return digest(self.to_dict())


def _region_dict(r: Region) -> dict[str, Any]:
    out: dict[str, Any] = {
        "lo": [str(v) for v in r.lo],
        "hi": [str(v) for v in r.hi],
        "unsafe": [
            [{"a": [str(v) for v in t.a], "b": str(t.b), "strict": t.strict} for t in d]
            for d in r.disjuncts
        ],
    }
    ls, hs = r.strictness()
    if any(ls) or any(hs):  # (only then: the digest of a closed-box property stays what it was)
        out["lo_strict"], out["hi_strict"] = list(ls), list(hs)
    return out


def _parse_sexprs(text: str) -> list[Any]:
    """The top-level s-expressions of ``text``, each atom and list as (value, line), over the
    obligation reader's lexical layer (``sexpr.lex``: one reading of SMT-LIB's tokens)."""
    try:
        tokens = lex(text)
    except Rejected as e:
        raise PropertyError(str(e)) from None
    stack: list[list[Any]] = [[]]
    for tok, line in tokens:
        if tok == "(":
            if len(stack) > MAX_DEPTH:
                raise PropertyError(f"line {line}: nested deeper than the limit of {MAX_DEPTH}")
            stack.append([])
        elif tok == ")":
            if len(stack) == 1:
                raise PropertyError(f"line {line}: unbalanced ')'")
            done = stack.pop()
            stack[-1].append((done, line))
        else:
            stack[-1].append((tok, line))
    if len(stack) != 1:
        raise PropertyError("unexpected end of file: unbalanced '('")
    return stack[0]


_VAR = re.compile(r"^([XY])_([0-9]+)$", re.ASCII)
#: (audit12) VNN-LIB's numerals, the lark grammar's NUMBER: ``decimal`` alone also reads 1/2 and
#: 1_000, errors in SMT-LIB (z3 drops the assert) that this reader took as numbers
_NUMERAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)


def _term(t: Any, decl: dict[str, int], at: int) -> dict[str, Fraction]:
    """A linear term as {var: coefficient, '': constant}, in the assert that is command ``at``."""
    e, line = t
    if isinstance(e, str):
        if e in decl:
            if decl[e] > at:  # (audit12) an error in SMT-LIB (z3 drops the assert): no sure reading
                raise PropertyError(f"line {line}: {e} is used before its declaration")
            return {e: Fraction(1)}
        if _NUMERAL.fullmatch(e):
            try:  # ASCII numerals only, within the digit and exponent limits
                return {"": decimal(e)}
            except ValueError as err:
                raise PropertyError(f"line {line}: {err}") from None
        raise PropertyError(f"line {line}: unknown symbol {e!r}")
    if not e or not isinstance(e[0][0], str):
        raise PropertyError(f"line {line}: malformed term")
    op, args = e[0][0], [_term(a, decl, at) for a in e[1:]]
    if (op == "+" and args) or (op == "-" and len(args) > 1):
        out = dict(args[0])
        for a in args[1:]:
            for k, v in a.items():
                out[k] = out.get(k, Fraction(0)) + (v if op == "+" else -v)
        return out
    if op == "-" and len(args) == 1:
        return {k: -v for k, v in args[0].items()}
    if op == "*" and len(args) == 2:
        for c, x in (args, args[::-1]):
            if set(c) == {""}:
                return {k: c[""] * v for k, v in x.items()}
    raise PropertyError(f"line {line}: unsupported term operator {op!r} (linear terms only)")


def _formula(f: Any, decl: dict[str, int], at: int) -> list[list[tuple[dict[str, Fraction], bool, int]]]:
    """DNF: a list of conjunctions of atoms (expr <= 0, strict, line)."""
    e, line = f
    if isinstance(e, str) or not e or not isinstance(e[0][0], str):
        raise PropertyError(f"line {line}: expected a formula")
    op = e[0][0]
    if op in ("and", "or") and len(e) > 1:  # ((and) and (or): errors in SMT-LIB, audit12)
        parts = [_formula(a, decl, at) for a in e[1:]]
        if op == "or":
            return [c for p in parts for c in p]
        out: list[list[Any]] = [[]]
        for p in parts:
            out = [a + b for a in out for b in p]
            if len(out) > MAX_TERMS:
                raise PropertyError(f"line {line}: the property has more than {MAX_TERMS} cases")
        return out
    if op in ("<=", ">=", "<", ">", "=") and len(e) == 3:
        lhs, rhs = _term(e[1], decl, at), _term(e[2], decl, at)
        if op in (">=", ">"):
            lhs, rhs = rhs, lhs
        expr = dict(lhs)
        for k, v in rhs.items():
            expr[k] = expr.get(k, Fraction(0)) - v
        if op == "=":  # two non-strict atoms: lhs - rhs <= 0 and rhs - lhs <= 0
            return [[(expr, False, line), ({k: -v for k, v in expr.items()}, False, line)]]
        return [[(expr, op in ("<", ">"), line)]]
    raise PropertyError(f"line {line}: unsupported formula {op!r}")


def parse_property(text: str) -> Spec:
    """Read VNN-LIB text into a ``Spec``; PropertyError (one line) on anything outside the subset."""
    decl: dict[str, int] = {}
    asserts = []
    ended = False  # (after (check-sat) or (exit): SMT-LIB's query, or script, is over)
    for at, (e, line) in enumerate(_parse_sexprs(text)):
        if isinstance(e, str) or not e or not isinstance(e[0][0], str):
            raise PropertyError(f"line {line}: expected a command")
        head = e[0][0]
        if ended and head in ("declare-const", "declare-fun", "assert"):
            # (h-audit10) SMT-LIB reads nothing after (exit), and (check-sat) answers for the
            # asserts before it: a later assert is no part of that answer, so no reading is sure
            raise PropertyError(f"line {line}: {head} after (check-sat) or (exit)")
        ended = ended or head in ("check-sat", "exit")
        if head == "declare-fun" and len(e) == 4 and e[2][0] == []:
            e = [e[0], e[1], e[3]]  # (X_i () Real) is a constant: as declare-const
            head = "declare-const"
        if head == "declare-const":
            if len(e) != 3 or not isinstance(e[1][0], str) or not _VAR.match(e[1][0]):
                raise PropertyError(f"line {line}: declare X_i or Y_j constants only")
            # Real only: an Int (or Bool) input is a smaller set than the real box this module
            # reads, so a non-integer counterexample would be accepted as "sat" for it
            if not isinstance(e[2][0], str) or e[2][0] != "Real":
                raise PropertyError(f"line {line}: {e[1][0]} must be declared Real")
            if e[1][0] in decl:  # (an error in SMT-LIB, as in the lark reader)
                raise PropertyError(f"line {line}: {e[1][0]} is declared twice")
            decl[e[1][0]] = at
        elif head == "assert" and len(e) == 2:
            asserts.append((e[1], at))
        elif _NEUTRAL.get(head) == len(e) and all(isinstance(a[0], str) for a in e):
            continue  # (commands that assert nothing: the asserted set is the same without them)
        else:
            raise PropertyError(f"line {line}: unsupported command {head!r}")
    n_in = _count(decl, "X")
    n_out = _count(decl, "Y")
    # each case is kept as a list of segments (shared, never copied) and flattened once: crossing
    # the growing conjunction with every one-case assert (most of a file: the box bounds) copied
    # it per assert, quadratic in the file. The atoms keep the order of the file.
    pending: list[Any] = []
    cases: list[list[list[Any]]] = [[]]
    for a, at in asserts:
        parts = _formula(a, decl, at)
        if len(parts) == 1:
            pending.extend(parts[0])
            continue
        if len(cases) * len(parts) > MAX_TERMS:
            raise PropertyError(f"the property has more than {MAX_TERMS} cases")
        cases = [c + [pending, y] for c in cases for y in parts]
        pending = []
    dnf = [[atom for seg in c + [pending] for atom in seg] for c in cases]
    regions: dict[tuple[Any, ...], list[tuple[Atom, ...]]] = {}
    # each atom is read once (``_reading``), not once per case: an atom is one tuple object in
    # every case it occurs in (the box's bounds, most of a file, recur in each output disjunct:
    # 9x on a CIFAR property), and its reading depends on the atom alone, so the memo changes
    # no result (``dnf`` keeps the atoms alive: their ids are not reused meanwhile)
    read: dict[int, tuple[Any, ...]] = {}
    last: Any = None  # (the last case's region key, and its list of disjuncts)
    box: list[tuple[Atom, ...]] = []
    for conj in dnf:
        lo: list[Fraction | None] = [None] * n_in
        hi: list[Fraction | None] = [None] * n_in
        ls, hs = [False] * n_in, [False] * n_in  # strict flags of the bounds kept
        ys: list[Atom] = []
        for atom in conj:
            got = read.get(id(atom))
            if got is None:
                got = read[id(atom)] = _reading(atom, n_out)
            if got[0] == "x":
                _, i, bound, upper, strict = got
                # the tightest bound wins (the least upper, the greatest lower: sgn = -1 compares
                # lower bounds as upper ones); on a tie the strict one (x < b and x <= b is x < b)
                side, flags, sgn = (hi, hs, 1) if upper else (lo, ls, -1)
                if side[i] is None or sgn * bound < sgn * side[i]:
                    side[i], flags[i] = bound, strict
                elif bound == side[i]:
                    flags[i] = flags[i] or strict
            elif got[0] == "y":
                ys.append(got[1])
            elif not got[1]:
                ys = None  # a false constant atom: this case is empty
                break
        if ys is None:
            continue
        if any(v is None for v in lo + hi):
            raise PropertyError("every input X_i must have a lower and an upper bound in every case")
        if any(a > b or (a == b and (sa or sb)) for a, b, sa, sb in zip(lo, hi, ls, hs)):
            continue  # empty box (lo < x <= lo is empty too)
        flags = (tuple(ls), tuple(hs)) if any(ls) or any(hs) else ((), ())
        key = (tuple(lo), tuple(hi), *flags)
        # (the last case's box again, as in most files: compared, not hashed, as hashing a box of
        # Fractions costs a modular inverse per bound; equal keys are the same dict entry)
        if key != last:
            last, box = key, regions.setdefault(key, [])
        box.append(tuple(ys))
    return Spec(n_in, n_out, tuple(Region(lo, hi, tuple(d), a, b) for (lo, hi, a, b), d in regions.items()))


def _reading(atom: tuple[dict[str, Fraction], bool, int], n_out: int) -> tuple[Any, ...]:
    """An atom (expr <= 0, or < 0 when strict; line) read: ("x", i, bound, upper, strict) for
    x_i <= bound (upper) or x_i >= bound, ("y", Atom), or ("c", whether the constant atom holds)."""
    expr, strict, line = atom
    # the atom's dict is shared by every DNF case it occurs in: read it, never mutate it
    const = -expr.get("", Fraction(0))  # (expr without its constant) <= const
    xs = {k: v for k, v in expr.items() if v and k.startswith("X")}
    yv = {k: v for k, v in expr.items() if v and k.startswith("Y")}
    if xs and yv:
        raise PropertyError(f"line {line}: constraints mixing inputs and outputs are not supported")
    if len(xs) > 1:
        raise PropertyError(f"line {line}: only bounds on single inputs are supported")
    if xs:
        ((name, coef),) = xs.items()
        return ("x", int(name[2:]), const / coef, coef > 0, strict)
    if yv:
        a = [Fraction(0)] * n_out
        for k, v in yv.items():
            a[int(k[2:])] = v
        return ("y", Atom(tuple(a), const, strict))
    return ("c", const > 0 or (const == 0 and not strict))


def _count(decl: dict[str, int], letter: str) -> int:
    idx = sorted(int(k[2:]) for k in decl if k[0] == letter)
    if idx != list(range(len(idx))):
        raise PropertyError(f"{letter} variables must be numbered 0..n-1")
    return len(idx)
