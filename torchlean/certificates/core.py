"""The checker's vocabulary: verdicts, rejections, exact numbers from JSON, and the kind table.

Everything in ``torchlean.certificates`` is standard library only. A certificate is a JSON object
with a ``kind``; ``check`` dispatches on it to the one function registered for that kind, which
re-derives what the certificate claims and replays its steps in exact arithmetic. A step the
checker cannot replay is counted as solver-trusted (with the solver and rule named), never as
checked.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any


class Rejected(Exception):
    """The certificate does not establish its claim; the message says which step failed."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    #: steps replayed by this checker
    checked: int = 0
    #: steps accepted on a solver's word: "solver:rule" -> count
    trusted: dict[str, int] = field(default_factory=dict)
    reason: str = ""

    @property
    def fully_checked(self) -> bool:
        return self.ok and not self.trusted


#: kind -> checker; each checker returns a Verdict or raises Rejected
CHECKERS: dict[str, Callable[[dict[str, Any]], Verdict]] = {}


CheckFn = Callable[[dict[str, Any]], Verdict]

#: the modules whose import registers a checker (``checker``), loaded on the first ``check`` of a
#: kind not yet registered
CHECKER_MODULES = ("adjoint", "domains", "errorbound", "refute", "rounding", "tape", "terms", "windows",
                   "bounds", "float_vnn")


def load_checkers() -> None:
    """Import every module that registers a certificate kind (once; later calls are free)."""
    import importlib

    for m in CHECKER_MODULES:
        importlib.import_module(f"{__package__}.{m}")


def checker(kind: str) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        if kind in CHECKERS:
            raise ValueError(f"checker for {kind!r} registered twice")
        CHECKERS[kind] = fn
        return fn

    return register


def needs_statement(kinds: tuple[str, ...], use: str) -> None:
    """Register ``kinds`` as kinds that only a call with the network and property checks (``use``
    names it): ``check`` alone refuses them."""
    def refuse(cert: dict[str, Any]) -> Verdict:
        raise Rejected(f"a {cert['kind']} certificate is checked against its network and property: "
                       f"use {use} or `python -m torchlean.verify check`")
    for kind in kinds:
        CHECKERS.setdefault(kind, refuse)


def check(cert: Any) -> Verdict:
    """Replay one certificate. Malformed input is a rejection, never an exception."""
    if not isinstance(cert, dict) or not isinstance(cert.get("kind"), str):
        return Verdict(False, reason="malformed certificate: no 'kind'")
    fn = CHECKERS.get(cert["kind"])
    if fn is None:
        load_checkers()
        fn = CHECKERS.get(cert["kind"])
    if fn is None:
        return Verdict(False, reason=f"unknown certificate kind {cert['kind']!r}")
    return replay(fn, cert, what=f"{cert['kind']} certificate")


#: what reading a malformed certificate can raise (a wrong type, a missing key, a bad number...)
MALFORMED = (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError, AttributeError,
             RecursionError)


def replay(fn: Callable[..., Verdict], *args: Any, deadline: float | None = None,
           what: str = "certificate") -> Verdict:
    """``fn(*args)``, a checker, within ``deadline``: a rejection, malformed input or the deadline
    is a refused Verdict, never an exception (every checker entry point goes through here)."""
    try:
        with time_limit(deadline):
            return fn(*args)
    except OutOfTime:
        return Verdict(False, reason="not accepted: replay deadline exceeded (the caller's time limit)")
    except Rejected as e:
        return Verdict(False, reason=str(e))
    except MALFORMED as e:
        return Verdict(False, reason=f"malformed {what}: {type(e).__name__}: {e}")


Box = list[tuple[Fraction, Fraction]]


def box_leaves(tree: Any, box: Box) -> Iterator[tuple[dict[str, Any], Box]]:
    """The leaves of a bisection tree over ``box`` with the box each one covers:
    ``{"split": [d, v], "lo": node, "hi": node}`` halves dimension d at v (lo_d < v < hi_d, both
    halves closed), anything else is a leaf. The yielded boxes cover ``box`` (by induction on the
    splits), whatever the tree; a leaf's own meaning is the caller's."""
    todo = [(tree, box)]
    while todo:  # invariant: the boxes in ``todo`` and the leaves yielded cover ``box``
        node, b = todo.pop()
        require(isinstance(node, dict), "malformed tree node")
        if "split" not in node:
            yield node, b
            continue
        d, v = node["split"]
        require(type(d) is int and 0 <= d < len(b), f"bad split dimension {d!r}")
        lo, hi, v = b[d][0], b[d][1], rational(v)
        require(lo < v < hi, f"split value {v} outside the open interval ({lo}, {hi})")
        todo.append((node["lo"], b[:d] + [(lo, v)] + b[d + 1:]))
        todo.append((node["hi"], b[:d] + [(v, hi)] + b[d + 1:]))


def rational(x: Any) -> Fraction:
    """An exact rational from JSON: an int, or a string "p" / "p/q". Floats are refused: a
    certificate states its numbers exactly."""
    if isinstance(x, bool):
        raise Rejected(f"not a number: {x!r}")
    if isinstance(x, int):
        return Fraction(x)
    if isinstance(x, str):
        pq = _p_over_q(x)
        if pq is not None:
            return Fraction(*pq)  # (the form certificates write: no regex, same value)
        try:
            return decimal(x)
        except ValueError as e:
            raise Rejected(f"not a rational: {e}") from None
    raise Rejected(f"numbers must be ints or 'p/q' strings, got {type(x).__name__} {x!r}")


def ratio(x: Any) -> tuple[int, int]:
    """The number ``rational`` reads, as integers (p, q) with q > 0, not necessarily in lowest
    terms: what the per-leaf checks compare, without the cost of building a Fraction."""
    if isinstance(x, str):
        pq = _p_over_q(x)
        if pq is not None:
            return pq
    return rational(x).as_integer_ratio()


def _p_over_q(x: str) -> tuple[int, int] | None:
    """(p, q) for "p/q" or "-p/q" in ASCII digits with q > 0, else None (the general parser decides)."""
    p, slash, q = x.partition("/")
    digits = p[1:] if p.startswith("-") else p
    if slash and digits.isascii() and digits.isdigit() and q.isascii() and q.isdigit() and q.strip("0"):
        return int(p), int(q)
    return None


def at_least(x: Fraction | float, q: Fraction | tuple[int, int]) -> bool:
    """x >= q exactly (q a Fraction, or (p, q) with q > 0); a float that is not finite never passes.
    (A finite float is a/b exactly, b > 0, so comparing the cross products decides it without
    building a Fraction.)"""
    n, d = q if isinstance(q, tuple) else (q.numerator, q.denominator)
    if isinstance(x, float):
        if not math.isfinite(x):
            return False
        a, b = x.as_integer_ratio()
    else:
        a, b = x.numerator, x.denominator
    return a * d >= n * b


def float_below(q: Fraction) -> float:
    """The largest float <= q (float(q) rounds to nearest); OverflowError past binary64. The one
    outward rounding of exact numbers to floats (``float_down``, ``fast_forms.outward``)."""
    f = float(q)
    if f.as_integer_ratio() == (q.numerator, q.denominator):  # (exact: the common case)
        return f
    return math.nextafter(f, -math.inf) if Fraction(f) > q else f


def float_down(q: Fraction) -> Fraction:
    """A float-valued rational <= q (short numbers for the exact replay); q itself when no float
    is that large (still a valid bound: only the shortening is skipped)."""
    try:
        return Fraction(float_below(q))
    except OverflowError:
        return q


def float_up(q: Fraction) -> Fraction:
    """A float-valued rational >= q (``float_down`` mirrored)."""
    return -float_down(-q)


def require(cond: bool, message: str) -> None:
    """Reject unless ``cond``; the one way checkers state a condition."""
    if not cond:
        raise Rejected(message)


def is_index(i: Any, n: int) -> bool:
    """``i`` is an index into a sequence of length ``n``: an int, not a bool (JSON ``true`` would
    otherwise read as 1), in range."""
    return isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj`` (what statements and subjects are keyed by)."""
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


# -- limits on what an input may ask of the checker --------------------------------------------

#: digits in one numeral (mantissa, numerator or denominator); Python's int() stops at 4300
MAX_DIGITS = 4000
#: |exponent| of a decimal numeral such as 1e-320 (binary64 needs about 330)
MAX_EXPONENT = 4000
#: nesting depth of a certificate's or an artifact's JSON
MAX_JSON_DEPTH = 200

_D = r"[0-9](?:_?[0-9])*"  # ASCII digits, single underscores between them (as Fraction reads)
_DECIMAL = re.compile(rf"([+-]?)({_D})?(?:\.({_D})?)?(?:[eE]([+-]?{_D}))?", re.ASCII)
_FRACTION = re.compile(rf"([+-]?{_D})/({_D})", re.ASCII)


def decimal(text: str) -> Fraction:
    """The exact value of an ASCII numeral: ``12``, ``-0.5``, ``1.5e-3``, ``3/4``. ValueError
    (naming the limit) for anything else, for more than MAX_DIGITS digits, or an exponent beyond
    +-MAX_EXPONENT: ``1e999999999`` must not build 10**999999999. Unicode digits are not digits."""
    if not isinstance(text, str):
        raise ValueError(f"not a numeral: {text!r}")
    s = text.strip()
    m = _FRACTION.fullmatch(s)
    if m:
        p, q = (g.replace("_", "") for g in m.groups())
        if len(p) > MAX_DIGITS + 1 or len(q) > MAX_DIGITS:
            raise ValueError(f"numeral with more than {MAX_DIGITS} digits")
        if not q.strip("0"):
            raise ValueError(f"zero denominator in {s!r}")
        return Fraction(int(p), int(q))
    m = _DECIMAL.fullmatch(s)
    if not m or not (m.group(2) or m.group(3)):
        raise ValueError(f"not a numeral: {s[:40]!r}")
    sign, whole, frac, exp = (g.replace("_", "") if g else g for g in m.groups())
    whole, frac = whole or "", frac or ""
    if len(whole) + len(frac) > MAX_DIGITS:
        raise ValueError(f"numeral with more than {MAX_DIGITS} digits")
    if exp is not None and (len(exp) > 8 or abs(int(exp)) > MAX_EXPONENT):
        raise ValueError(f"numeral exponent beyond the limit of +-{MAX_EXPONENT}: {s[:40]!r}")
    e = (int(exp) if exp else 0) - len(frac)
    v = int(whole + frac or "0")
    q = Fraction(v * 10**e) if e >= 0 else Fraction(v, 10**-e)
    return -q if sign == "-" else q


def parse_json(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON for the checker: ValueError (one line, naming the limit) on nesting deeper than
    ``max_depth``, integers longer than MAX_DIGITS digits, NaN/Infinity, or bad syntax."""
    depth = _json_depth(text)
    if depth > max_depth:
        raise ValueError(f"JSON nested {depth} deep, over the limit of {max_depth}")

    def bad_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    def bounded_int(s: str) -> int:
        if len(s) > MAX_DIGITS + 1:
            raise ValueError(f"JSON integer with more than {MAX_DIGITS} digits")
        return int(s)

    try:
        return json.loads(text, parse_constant=bad_constant, parse_int=bounded_int)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e})") from None
    except RecursionError:
        raise ValueError(f"JSON nested too deeply (limit {max_depth})") from None


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # (unrolled: 30x faster on long strings)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _json_depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings (a linear scan; bad syntax is left to
    json.loads): the strings removed, then everything but brackets, then the running sum of
    +1 / -1 (C-level passes; the string pattern unrolled, [^"\\]* runs instead of one
    alternation per character: proof artifacts hold megabytes of SMT-LIB text in strings, and
    the transformer's 113 took 21.6 s in a token loop with the per-character pattern)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(0, max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0))


# -- deadlines ---------------------------------------------------------------------------------

class OutOfTime(Rejected):
    """The replay (or search) ran past the deadline its caller set: not accepted, not refuted."""


_DEADLINE: list[float] = []  # innermost last; time.monotonic() values


@contextmanager
def time_limit(deadline: float | None) -> Iterator[None]:
    """Within the block, ``tick()`` raises OutOfTime once ``time.monotonic()`` passes
    ``deadline`` (None: no limit; nested limits: the earliest wins)."""
    if deadline is None:
        yield
        return
    _DEADLINE.append(min(deadline, _DEADLINE[-1]) if _DEADLINE else deadline)
    try:
        yield
    finally:
        _DEADLINE.pop()


def tick() -> None:
    """Called inside every long loop (per leaf, per layer, per neuron row): raise OutOfTime past
    the current deadline. Costs one clock read."""
    if _DEADLINE and time.monotonic() > _DEADLINE[-1]:
        raise OutOfTime("deadline exceeded")
