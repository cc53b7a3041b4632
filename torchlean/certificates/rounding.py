"""Exact rounding of rationals to floating-point formats, and the exhaustive rounding-lemma checker.

Standard library only: this module is part of the trusted checker. It is the one implementation of
"round this rational to that format in that mode"; ``torchlean.floats`` re-exports it and every
other float path (emulation, error bounds, tests against numpy/ml_dtypes) is checked against it.

A format is IEEE-754 style: sign, ``ebits`` exponent bits, ``mbits`` stored fraction bits
(precision p = mbits + 1), bias 2^(ebits-1) - 1. Variants:

- ``subnormals=False``: the representable set is {0} and the normal numbers; rounding picks among
  them in the mode (the gap (0, 2^emin) rounds like any other gap).
- ``style="fn"`` (OCP fp8 e4m3fn): no infinities, the top exponent field holds normal numbers, and
  only the all-ones pattern (per sign) is NaN. Overflow goes to NaN in the nearest modes (what
  ml_dtypes does) and to the largest finite value in the modes that never round away from zero.

A rounded value is a ``FloatValue``: a sign bit (signed zeros are kept), a kind ("finite", "inf",
"nan") and the exact magnitude as a Fraction.
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, astuple, dataclass
from fractions import Fraction
from functools import cached_property
from typing import Any, NamedTuple

from .core import Rejected, Verdict, checker, digest, rational, require

MODES = ("rne", "rtz", "rup", "rdn", "rna", "rto")
#: (audit63) the widest exponent and significand fields a format may have: 2^emax has 2^(ebits-1)
#: bits (ebits 34 built 2^(2^33) and took 3.4 GB), precision-sized numbers are the replay's unit
#: (mbits 10^7 ran past every deadline); binary256 has 19 and 236, the lemmas' wide sorts 13 and 110
MAX_EBITS, MAX_MBITS = 20, 1024


@dataclass(frozen=True)
class Format:
    name: str
    ebits: int
    mbits: int
    subnormals: bool = True
    #: "ieee": top exponent field reserved for inf/NaN; "fn": finite-only, one NaN pattern per sign
    style: str = "ieee"

    def __post_init__(self) -> None:
        fields = 2 <= self.ebits <= MAX_EBITS and 1 <= self.mbits <= MAX_MBITS
        if not fields or self.style not in ("ieee", "fn"):
            raise ValueError(f"bad format {self} (2 <= ebits <= {MAX_EBITS}, 1 <= mbits <= {MAX_MBITS})")

    @property
    def precision(self) -> int:
        return self.mbits + 1

    @property
    def bias(self) -> int:
        return (1 << (self.ebits - 1)) - 1

    @property
    def emin(self) -> int:
        return 1 - self.bias

    @property
    def emax(self) -> int:
        top = (1 << self.ebits) - 1
        return (top if self.style == "fn" else top - 1) - self.bias

    @property
    def has_inf(self) -> bool:
        return self.style == "ieee"

    @cached_property  # (read by every rounding's overflow test)
    def max_finite(self) -> Fraction:
        # fn: the all-ones mantissa at the top exponent is NaN, so the largest mantissa is one less
        m = (1 << (self.mbits + 1)) - (2 if self.style == "fn" else 1)
        return Fraction(m) * _pow2(self.emax - self.mbits)

    @property
    def min_normal(self) -> Fraction:
        return _pow2(self.emin)

    @property
    def min_positive(self) -> Fraction:
        return _pow2(self.emin - self.mbits) if self.subnormals else self.min_normal

    @property
    def bits(self) -> int:
        return 1 + self.ebits + self.mbits

    def unit_roundoff(self, mode: str = "rne") -> Fraction:
        """u with |fl(x) - x| <= u|x| for x in the normal range: 2^-p nearest, 2^(1-p) otherwise."""
        return _pow2(-self.precision if mode in ("rne", "rna") else 1 - self.precision)

    def underflow_eta(self, mode: str = "rne") -> Fraction:
        """eta with |fl(x) - x| <= eta below the normal range (the spacing there, halved if nearest)."""
        gap = self.min_positive
        return gap / 2 if mode in ("rne", "rna") else gap

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Format:
        require(isinstance(d["subnormals"], bool), "format: subnormals must be true or false")
        f = cls(str(d["name"]), int(d["ebits"]), int(d["mbits"]), d["subnormals"], str(d["style"]))
        try:  # a name the table knows names its parameters (audit27: "binary32" with binary64's
            named = get_format(f.name)  # bits was accepted as a binary32 claim)
        except ValueError:
            return f  # (any other name claims no format by name)
        require(astuple(named)[1:] == astuple(f)[1:], f"format: {f.name!r} is not these parameters")
        return f


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("binary64", 11, 52),
        Format("binary32", 8, 23),
        Format("binary16", 5, 10),
        Format("bfloat16", 8, 7),
        Format("float8_e4m3fn", 4, 3, style="fn"),
        Format("float8_e5m2", 5, 2),
    )
}
ALIASES = {
    "float64": "binary64",
    "float32": "binary32",
    "float16": "binary16",
    "half": "binary16",
    "e4m3": "float8_e4m3fn",
    "e5m2": "float8_e5m2",
    "fp8_e4m3": "float8_e4m3fn",
    "fp8_e5m2": "float8_e5m2",
}


def get_format(name: str | Format) -> Format:
    """A named format, or "e<E>m<M>" (optionally "-nosub") for any NeuralFloat."""
    if isinstance(name, Format):
        return name
    key = ALIASES.get(name, name)
    if key in FORMATS:
        return FORMATS[key]
    spec, _, flag = key.partition("-")
    if spec.startswith("e") and "m" in spec:
        e, m = spec[1:].split("m", 1)
        if e.isdigit() and m.isdigit() and flag in ("", "nosub"):
            return Format(key, int(e), int(m), subnormals=flag != "nosub")
    raise ValueError(f"unknown float format {name!r} (known: {', '.join(FORMATS)}, or eXmY[-nosub])")


class FloatValue(NamedTuple):
    sign: int  # 0 or 1; kept for zeros
    kind: str  # "finite", "inf", "nan"
    mag: Fraction  # |value| for finite values

    @property
    def value(self) -> Fraction:
        if self.kind != "finite":
            raise ValueError(f"{self.kind} has no rational value")
        return -self.mag if self.sign else self.mag

    @property
    def finite(self) -> bool:
        return self.kind == "finite"


def _pow2(e: int) -> Fraction:
    return Fraction(1 << e) if e >= 0 else Fraction(1, 1 << -e)


def floor_log2(a: Fraction) -> int:
    """floor(log2 a) for a > 0, exactly."""
    e = a.numerator.bit_length() - a.denominator.bit_length()
    return e if a >= _pow2(e) else e - 1


# Rounding decisions: the true magnitude lies in [m*Q, (m+1)*Q); ``rem`` classifies where.
_EXACT, _BELOW, _HALF, _ABOVE = 0, 1, 2, 3


def _side(x: Fraction, mid: Fraction) -> int:
    """Where x lies in its gap against the gap's midpoint ``mid``."""
    return _BELOW if x < mid else _HALF if x == mid else _ABOVE


def _choose(m: int, rem: int, sign: int, mode: str) -> int:
    """The integer significand (in units of the quantum Q) that ``mode`` picks."""
    if rem == _EXACT:
        return m
    up = {
        "rne": rem == _ABOVE or (rem == _HALF and m % 2 == 1),
        "rna": rem in (_HALF, _ABOVE),
        "rtz": False,
        "rup": sign == 0,
        "rdn": sign == 1,
        "rto": m % 2 == 0,
    }[mode]
    return m + 1 if up else m


def _finish(sign: int, mag: Fraction, fmt: Format, mode: str) -> FloatValue:
    """Apply overflow rules to a magnitude already rounded with an unbounded exponent range."""
    if mag <= fmt.max_finite:
        return FloatValue(sign, "finite", mag)
    toward_zero = mode in ("rtz", "rto") or (mode == "rup" and sign) or (mode == "rdn" and not sign)
    if toward_zero:
        return FloatValue(sign, "finite", fmt.max_finite)
    return FloatValue(sign, "inf" if fmt.has_inf else "nan", Fraction(0))


def _below_normal(sign: int, rem: int, fmt: Format, mode: str) -> FloatValue:
    """A magnitude below 2^emin without subnormals: its neighbours are 0 and 2^emin; ``rem`` its side
    of 2^(emin-1). 0 counts as the even significand, so round-to-odd goes to 2^emin."""
    return _finish(sign, _pow2(fmt.emin) if _choose(0, rem, sign, mode) else Fraction(0), fmt, mode)


def _quantum_exponent(e: int, fmt: Format) -> int | None:
    """Exponent of the quantum for a magnitude with floor(log2) = e; None below a no-subnormal
    format's normal range (there the gap is (0, 2^emin))."""
    if e >= fmt.emin:
        return e - fmt.mbits
    return fmt.emin - fmt.mbits if fmt.subnormals else None


def round_fraction(q: Fraction | int, fmt: Format | str, mode: str = "rne", zero_sign: int = 0) -> FloatValue:
    """Round the exact rational ``q`` to ``fmt`` in ``mode``. ``zero_sign`` is the sign of an exact
    zero (x - x is +0 except in rdn, which the caller decides)."""
    fmt = get_format(fmt)
    if mode not in MODES:
        raise ValueError(f"unknown rounding mode {mode!r}; one of {MODES}")
    q = Fraction(q)
    if q == 0:
        return FloatValue(zero_sign, "finite", Fraction(0))
    sign, a = (1, -q) if q < 0 else (0, q)
    e = floor_log2(a)
    qe = _quantum_exponent(e, fmt)
    if qe is None:
        return _below_normal(sign, _side(a, _pow2(fmt.emin - 1)), fmt, mode)
    num, den = (a.numerator, a.denominator << qe) if qe >= 0 else (a.numerator << -qe, a.denominator)
    m, r = divmod(num, den)  # a / 2^qe = m + r/den, in integers (no gcd)
    rem = _EXACT if r == 0 else _BELOW if 2 * r < den else _HALF if 2 * r == den else _ABOVE
    return _finish(sign, _choose(m, rem, sign, mode) * _pow2(qe), fmt, mode)


def round_sqrt(q: Fraction | int, fmt: Format | str, mode: str = "rne") -> FloatValue:
    """Correctly rounded square root of a rational q >= 0 (sqrt(-0) = -0 is the caller's case)."""
    fmt = get_format(fmt)
    q = Fraction(q)
    if q < 0:
        return FloatValue(0, "nan", Fraction(0))
    if q == 0:
        return FloatValue(0, "finite", Fraction(0))
    e = floor_log2(q) // 2  # floor(log2 sqrt(q))
    qe = _quantum_exponent(e, fmt)
    if qe is None:  # (sqrt(q) against 2^(emin-1), both sides squared)
        return _below_normal(0, _side(q, _pow2(2 * fmt.emin - 2)), fmt, mode)
    t = q / _pow2(2 * qe)  # sqrt(q)/Q = sqrt(t)
    m = math.isqrt(t.numerator // t.denominator)
    rem = _EXACT if t == m * m else _side(t, Fraction(2 * m + 1, 2) ** 2)  # (squared, as above)
    return _finish(0, _choose(m, rem, 0, mode) * _pow2(qe), fmt, mode)


# -- bit patterns ---------------------------------------------------------------------------------


def decode(bits: int, fmt: Format | str) -> FloatValue:
    """The value of a bit pattern. Without subnormals, a zero exponent field reads as zero."""
    fmt = get_format(fmt)
    if not 0 <= bits < 1 << fmt.bits:
        raise ValueError(f"bit pattern {bits:#x} does not fit {fmt.name}")
    sign = bits >> (fmt.ebits + fmt.mbits)
    ef = (bits >> fmt.mbits) & ((1 << fmt.ebits) - 1)
    mf = bits & ((1 << fmt.mbits) - 1)
    top = (1 << fmt.ebits) - 1
    if fmt.style == "ieee" and ef == top:
        return FloatValue(sign, "inf" if mf == 0 else "nan", Fraction(0))
    if fmt.style == "fn" and ef == top and mf == (1 << fmt.mbits) - 1:
        return FloatValue(sign, "nan", Fraction(0))
    if ef == 0:
        mag = mf * _pow2(fmt.emin - fmt.mbits) if fmt.subnormals else Fraction(0)
        return FloatValue(sign, "finite", mag)
    return FloatValue(sign, "finite", ((1 << fmt.mbits) | mf) * _pow2(ef - fmt.bias - fmt.mbits))


def finite_values(fmt: Format | str) -> list[Fraction]:
    """Every finite value of a (small) format, each once (+0 only), ascending."""
    fmt = get_format(fmt)
    if fmt.bits > 16:
        raise ValueError(f"{fmt.name}: too many values to enumerate")
    vals = {decode(b, fmt) for b in range(1 << fmt.bits)}
    return sorted({v.value for v in vals if v.finite})


# -- the exhaustive rounding-lemma certificate -------------------------------------------------------

#: the binary operations a lemma may be about, each's exact value (None where undefined); and sqrt
BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
          "div": lambda x, y: x / y if y else None}
OPS = (*BINARY, "sqrt")


def _sqrt_within(r: Fraction, x: Fraction, u: Fraction, eta: Fraction) -> bool:
    """|r - sqrt(x)| <= u*sqrt(x) + eta, decided exactly: with s = sqrt(x) >= 0 it is
    (1-u)s - eta <= r <= (1+u)s + eta; each side is compared by squaring nonnegative quantities."""
    # upper: r - eta <= (1+u)s  <=>  r - eta <= 0 or (r - eta)^2 <= (1+u)^2 x
    up = r - eta <= 0 or (r - eta) ** 2 <= (1 + u) ** 2 * x
    # lower: (1-u)s <= r + eta  <=>  (1-u)^2 x <= (r + eta)^2  (both sides nonnegative, u < 1)
    lo = (1 - u) ** 2 * x <= (r + eta) ** 2
    return up and lo


def lemma_statement(fmt: Format, mode: str, op: str, u: Fraction, eta: Fraction) -> dict[str, Any]:
    return {
        "format": fmt.to_dict(),
        "mode": mode,
        "op": op,
        "u": str(u),
        "eta": str(eta),
        "claim": "|fl(x op y) - (x op y)| <= u*|x op y| + eta for all finite x, y "
        "with x op y defined and fl(x op y) finite",
    }


def enumerate_lemma(fmt: Format, mode: str, op: str, u: Fraction, eta: Fraction) -> tuple[int, str | None]:
    """Every finite operand (pair) with a defined, finitely rounded result, in exact arithmetic:
    (number of cases, the first counterexample to |fl(z) - z| <= u|z| + eta, or None)."""
    vals = finite_values(fmt)
    cases = 0
    if op == "sqrt":
        for x in vals:
            r = round_sqrt(x, fmt, mode) if x >= 0 else None
            if r is None or not r.finite:
                continue
            cases += 1
            if not _sqrt_within(r.value, x, u, eta):
                return cases, f"sqrt({x}) rounds to {r.value}"
        return cases, None
    for x in vals:
        for y in vals:
            z = BINARY[op](x, y)
            if z is None:
                continue
            r = round_fraction(z, fmt, mode)
            if not r.finite:
                continue
            cases += 1
            if abs(r.value - z) > u * abs(z) + eta:
                return cases, f"{x} {op} {y} = {z} rounds to {r.value}"
    return cases, None


@checker("rounding-lemma-exhaustive")
def check_lemma(cert: dict[str, Any]) -> Verdict:
    """Re-enumerate every operand pair with exact rationals and exact rounding."""
    stmt = cert["statement"]
    require(digest(stmt) == cert["digest"], "statement digest mismatch")
    fmt = Format.from_dict(stmt["format"])
    require(fmt.bits <= 12, f"{fmt.name}: exhaustive replay is limited to formats of <= 12 bits")
    mode, op = stmt["mode"], stmt["op"]
    require(mode in MODES and op in OPS, f"unknown mode/op {mode!r}/{op!r}")
    u, eta = rational(stmt["u"]), rational(stmt["eta"])
    require(0 <= u < 1 and eta >= 0, "u must be in [0, 1) and eta >= 0")
    require(stmt == lemma_statement(fmt, mode, op, u, eta), "statement is not the lemma's")
    # the constants may be anything the enumeration supports; weaker-than-standard is fine,
    # stronger must fail the enumeration below
    cases, counterexample = enumerate_lemma(fmt, mode, op, u, eta)
    if counterexample is not None:
        raise Rejected(f"counterexample: {counterexample}")
    require(cases == cert["cases"], f"case count {cert['cases']} differs from the replay's {cases}")
    return Verdict(True, checked=cases)
