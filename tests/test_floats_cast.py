"""The error column's constant cast (``errorctx.Ctx.cast_err``): its shortcut for values of the
format (error 0 without rounding) agrees with ``rounding.round_fraction`` (the reference: the
rounding table's own, enumerated against the bit patterns in test_rounding) on every finite value
of small formats, their neighbours and midpoints, and random rationals, in every mode."""

from __future__ import annotations

import functools
import random
from fractions import Fraction

import pytest

from torchlean.certificates.core import Rejected
from torchlean.certificates.errorctx import Ctx
from torchlean.certificates.rounding import MODES, finite_values, get_format, round_fraction


@functools.cache
def _values(name: str) -> list[Fraction]:
    """The format's finite values (binary16: 300 of them and its edges)."""
    fmt = get_format(name)
    vals = sorted(set(finite_values(fmt)))
    if len(vals) > 300:
        vals = sorted(set(random.Random(0).sample(vals, 300)) | {vals[0], vals[-1], Fraction(0)}
                      | {fmt.min_positive, fmt.min_normal, -fmt.min_positive})
    return vals


def reference(q: Fraction, fmt, mode: str) -> Fraction | None:
    """max |fl(q) - q| over the modes the cast may use, None where a rounding overflows."""
    fls = [round_fraction(q, fmt, m) for m in sorted({"rne", mode})]
    return max(abs(f.value - q) for f in fls) if all(f.finite for f in fls) else None


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2", "e4m3-nosub", "binary16"])
@pytest.mark.parametrize("mode", MODES)
def test_cast_err_agrees_with_rounding(name, mode):
    fmt = get_format(name)
    ctx = Ctx({"format": fmt.to_dict(), "mode": mode, "kernel_ulps": "4"})
    vals = _values(name)
    qs = set(vals)
    for a, b in zip(vals, vals[1:]):  # midpoints and near-midpoints: never values of the format
        m = (a + b) / 2
        qs |= {m, m + (b - a) / 7, a + (b - a) / 1000}
    rng = random.Random(1)
    qs |= {Fraction(rng.randint(-10**6, 10**6), rng.randint(1, 10**6)) for _ in range(100)}
    qs |= {fmt.max_finite * 2, fmt.min_positive / 2, fmt.min_positive * 3 / 2}
    for q in qs:
        ref = reference(q, fmt, mode)
        if ref is None:
            with pytest.raises(Rejected):
                ctx.cast_err(q)
        else:
            assert ctx.cast_err(q) == ref, (name, mode, q)
