"""The checker's vocabulary: verdicts, rejections, exact numbers from JSON, and the kind table.

Everything in ``torchlean.certificates`` is standard library only. A certificate is a JSON object
with a ``kind``; ``check`` dispatches on it to the one function registered for that kind, which
re-derives what the certificate claims and replays its steps in exact arithmetic. A step the
checker cannot replay is counted as solver-trusted (with the solver and rule named), never as
checked.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
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


def checker(kind: str) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        if kind in CHECKERS:
            raise ValueError(f"checker for {kind!r} registered twice")
        CHECKERS[kind] = fn
        return fn

    return register


def check(cert: Any) -> Verdict:
    """Replay one certificate. Malformed input is a rejection, never an exception."""
    if not isinstance(cert, dict) or not isinstance(cert.get("kind"), str):
        return Verdict(False, reason="malformed certificate: no 'kind'")
    fn = CHECKERS.get(cert["kind"])
    if fn is None:
        return Verdict(False, reason=f"unknown certificate kind {cert['kind']!r}")
    try:
        return fn(cert)
    except Rejected as e:
        return Verdict(False, reason=str(e))
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, RecursionError) as e:
        return Verdict(False, reason=f"malformed {cert['kind']} certificate: {type(e).__name__}: {e}")


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
            return Fraction(x)
        except (ValueError, ZeroDivisionError):
            raise Rejected(f"not a rational: {x!r}") from None
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


def require(cond: bool, message: str) -> None:
    """Reject unless ``cond``; the one way checkers state a condition."""
    if not cond:
        raise Rejected(message)


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj`` (what statements and subjects are keyed by)."""
    return hashlib.sha256(canonical(obj).encode()).hexdigest()
