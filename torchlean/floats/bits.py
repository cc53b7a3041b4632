"""Bit patterns of rounded values (``encode``), the inverse of the checker's ``rounding.decode``.

The checker never encodes: it reads formats, rounds and decodes (``certificates/rounding.py``), so
this lives here, outside the trusted code; ``tests/test_rounding.py`` checks it against
ml_dtypes/numpy and against ``decode`` on every pattern of the small formats.
"""

from __future__ import annotations

from fractions import Fraction

from ..certificates.rounding import FloatValue, Format, floor_log2, get_format

__all__ = ["encode"]


def encode(v: FloatValue, fmt: Format | str) -> int:
    """The bit pattern of a value representable in ``fmt`` (NaN: the canonical quiet NaN)."""
    fmt = get_format(fmt)
    s = v.sign << (fmt.ebits + fmt.mbits)
    top = (1 << fmt.ebits) - 1
    if v.kind == "nan":
        m = (1 << fmt.mbits) - 1 if fmt.style == "fn" else 1 << (fmt.mbits - 1)
        return s | (top << fmt.mbits) | m
    if v.kind == "inf":
        if not fmt.has_inf:
            raise ValueError(f"{fmt.name} has no infinities")
        return s | (top << fmt.mbits)
    a = v.mag
    if a == 0:
        return s
    if a > fmt.max_finite or a < fmt.min_positive:
        raise ValueError(f"{a} is out of range of {fmt.name}")
    e = floor_log2(a)
    if e < fmt.emin:
        m = a / Fraction(2) ** (fmt.emin - fmt.mbits)
        if m.denominator != 1 or not fmt.subnormals:
            raise ValueError(f"{a} is not representable in {fmt.name}")
        return s | int(m)
    m = a / Fraction(2) ** (e - fmt.mbits)
    if m.denominator != 1:
        raise ValueError(f"{a} is not representable in {fmt.name}")
    return s | ((e + fmt.bias) << fmt.mbits) | (int(m) - (1 << fmt.mbits))
