"""Exact rounding (certificates/rounding.py) against numpy and ml_dtypes, exhaustively for the 8- and
16-bit formats, and the exhaustive rounding-lemma certificates."""

from __future__ import annotations

import copy
from fractions import Fraction

import numpy as np
import pytest

from torchlean.certificates import check
from torchlean.certificates.rounding import (
    MODES,
    Format,
    decode,
    finite_values,
    get_format,
    round_fraction,
    round_sqrt,
)
from torchlean.floats.bits import encode
from torchlean.floats.lemmas import make_lemma_certificate

ml_dtypes = pytest.importorskip("ml_dtypes")

SMALL = {
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "float8_e5m2": ml_dtypes.float8_e5m2,
    "binary16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
}
UINT = {8: np.uint8, 16: np.uint16}


def _ref_values(name):
    fmt = get_format(name)
    bits = np.arange(1 << fmt.bits).astype(UINT[fmt.bits])
    with np.errstate(invalid="ignore"):
        return bits.view(SMALL[name]).astype(np.float64)


@pytest.mark.parametrize("name", list(SMALL))
def test_every_bit_pattern_decodes_and_reencodes(name):
    fmt = get_format(name)
    ref = _ref_values(name)
    for b in range(1 << fmt.bits):
        v, r = decode(b, fmt), ref[b]
        if np.isnan(r):
            assert v.kind == "nan", hex(b)
            continue
        if np.isinf(r):
            assert v.kind == "inf" and v.sign == int(r < 0), hex(b)
        else:
            assert v.finite and v.value == Fraction(float(r)) and v.sign == int(np.signbit(r)), hex(b)
        assert encode(v, fmt) == b


def _neighbour_points(vals):
    """Midpoints of consecutive finite values and the float32 values just either side of them
    (float32, not float64: ml_dtypes converts float64 through float32, a double rounding)."""
    vals = np.unique(vals[np.isfinite(vals)])
    mids = ((vals[:-1] + vals[1:]) / 2).astype(np.float32)  # exact: <= 12 significant bits
    assert np.array_equal(mids.astype(np.float64), (vals[:-1] + vals[1:]) / 2)
    inf = np.float32(np.inf)
    return np.concatenate([mids, np.nextafter(mids, -inf), np.nextafter(mids, inf)])


@pytest.mark.parametrize("name", list(SMALL))
def test_nearest_even_matches_reference_at_midpoints_and_neighbours(name):
    fmt = get_format(name)
    pts = _neighbour_points(_ref_values(name))
    if fmt.bits == 16:  # keep the default run fast: every 7th point (all in the slow test)
        pts = pts[::7]
    with np.errstate(over="ignore", invalid="ignore"):
        ref = pts.astype(SMALL[name]).astype(np.float64)
    for x, r in zip(pts, ref):
        v = round_fraction(Fraction(float(x)), fmt, "rne", zero_sign=int(np.signbit(x)))
        if np.isnan(r):
            assert v.kind == "nan", x
        elif np.isinf(r):
            assert v.kind == "inf" and v.sign == int(r < 0), x
        else:
            assert v.finite and v.value == Fraction(float(r)), (x, v, r)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["binary16", "bfloat16"])
def test_nearest_even_all_midpoints_16bit(name):
    fmt = get_format(name)
    pts = _neighbour_points(_ref_values(name))
    with np.errstate(over="ignore", invalid="ignore"):
        ref = pts.astype(SMALL[name]).astype(np.float64)
    for x, r in zip(pts, ref):
        v = round_fraction(Fraction(float(x)), fmt, "rne")
        assert (v.kind != "finite" and not np.isfinite(r)) or v.value == Fraction(float(r))


def _directed_reference(x: Fraction, lo: Fraction, hi: Fraction, mode: str, sign: int) -> Fraction:
    """The mode's pick between the exact neighbours lo < x < hi (same sign as x)."""
    mid = (lo + hi) / 2
    away, toward = (hi, lo) if sign == 0 else (lo, hi)  # magnitudes: |hi| > |lo| when positive
    if mode == "rtz":
        return toward
    if mode == "rup":
        return hi
    if mode == "rdn":
        return lo
    if mode == "rna":
        return away if abs(x - toward) >= abs(mid - toward) else toward
    if mode == "rto":  # the neighbour with an odd last significand bit
        return lo if _odd(lo) else hi
    raise ValueError(mode)


def _odd(v: Fraction) -> bool:
    return bool(_FMT_FOR_ODD and encode(round_fraction(v, _FMT_FOR_ODD), _FMT_FOR_ODD) & 1)


_FMT_FOR_ODD: Format | None = None


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2", "binary16"])
@pytest.mark.parametrize("mode", ["rtz", "rup", "rdn", "rna", "rto"])
def test_directed_modes_pick_the_right_neighbour(name, mode):
    global _FMT_FOR_ODD
    fmt = get_format(name)
    _FMT_FOR_ODD = fmt
    vals = finite_values(fmt)
    step = 1 if fmt.bits == 8 else 37
    for lo, hi in list(zip(vals, vals[1:]))[::step]:
        for x in (lo + (hi - lo) / 3, (lo + hi) / 2, hi - (hi - lo) / 5):
            sign = int(x < 0)
            v = round_fraction(x, fmt, mode)
            assert v.finite and v.value == _directed_reference(x, lo, hi, mode, sign), (x, mode)
        assert round_fraction(lo, fmt, mode).value == lo  # representable values are fixed points


@pytest.mark.parametrize("mode", MODES)
def test_overflow_rules(mode):
    f16, e4 = get_format("binary16"), get_format("e4m3")
    big = Fraction(70000)
    pos, neg = round_fraction(big, f16, mode), round_fraction(-big, f16, mode)
    to_inf = {"rne": (True, True), "rna": (True, True), "rtz": (False, False),
              "rup": (True, False), "rdn": (False, True), "rto": (False, False)}[mode]
    assert (pos.kind == "inf") == to_inf[0] and (neg.kind == "inf") == to_inf[1]
    if pos.finite:
        assert pos.value == f16.max_finite
    fn = round_fraction(Fraction(1000), e4, mode)
    assert fn.kind == ("nan" if mode in ("rne", "rna", "rup") else "finite")


def test_signed_zero_underflow_and_no_subnormal_formats():
    f16 = get_format("binary16")
    tiny = f16.min_positive / 4
    assert round_fraction(-tiny, f16, "rne") == (1, "finite", Fraction(0))
    assert round_fraction(-tiny, f16, "rdn").value == -f16.min_positive
    assert round_fraction(0, f16, "rne", zero_sign=1).sign == 1
    nosub = get_format("e5m10-nosub")
    assert nosub.min_positive == nosub.min_normal
    assert round_fraction(nosub.min_normal * Fraction(3, 4), nosub, "rne").value == nosub.min_normal
    assert round_fraction(nosub.min_normal / 4, nosub, "rne").value == 0
    assert decode(1, nosub).value == 0  # a subnormal pattern reads as zero without subnormals
    custom = Format("e3m2", 3, 2)
    assert finite_values(custom)[-1] == custom.max_finite == 14


@pytest.mark.parametrize("name,dtype", [("binary32", np.float32), ("binary64", np.float64)])
def test_random_and_boundary_values_against_numpy(name, dtype):
    fmt = get_format(name)
    rng = np.random.default_rng(0)
    finfo = np.finfo(dtype)
    xs = list(rng.standard_normal(3000) * np.exp(rng.uniform(-30, 30, 3000)))
    xs += [float(finfo.max), float(finfo.tiny), float(finfo.smallest_subnormal), 1.0, -0.0]
    for x in xs:
        v = round_fraction(Fraction(float(x)), fmt)
        assert v.value == Fraction(float(dtype(x))) if np.isfinite(dtype(x)) else not v.finite
    if dtype is np.float32:  # doubles near float32 midpoints: numpy's float64 -> float32 is RNE
        f = rng.standard_normal(3000).astype(np.float32)
        mids = (f.astype(np.float64) + np.nextafter(f, np.float32(np.inf)).astype(np.float64)) / 2
        for m in np.concatenate([mids, np.nextafter(mids, 0), np.nextafter(mids, np.inf)]):
            assert round_fraction(Fraction(float(m)), fmt).value == Fraction(float(np.float32(m)))
    bits = rng.integers(0, 1 << fmt.bits, 2000, dtype=np.uint64)
    for b in bits:
        v = decode(int(b), fmt)
        if v.finite:
            assert encode(v, fmt) == int(b)


@pytest.mark.parametrize("name,dtype", [("binary16", np.float16), ("binary32", np.float32)])
def test_sqrt_is_correctly_rounded(name, dtype):
    fmt = get_format(name)
    rng = np.random.default_rng(1)
    xs = np.abs(rng.standard_normal(2000) * np.exp(rng.uniform(-8, 8, 2000))).astype(dtype)
    for x in xs:
        assert round_sqrt(Fraction(float(x)), fmt).value == Fraction(float(np.sqrt(x)))


# -- exhaustive lemma certificates ------------------------------------------------------------------

@pytest.mark.parametrize("name,op", [("float8_e4m3fn", "add"), ("float8_e5m2", "div"),
                                     ("float8_e4m3fn", "sqrt"), ("float8_e5m2", "sqrt")])
def test_exhaustive_lemma_certificates_replay(name, op):
    _replay(name, op)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2"])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "sqrt"])
def test_exhaustive_lemma_certificates_replay_all(name, op):
    _replay(name, op)


def _replay(name, op):
    cert = make_lemma_certificate(name, "rne", op)
    v = check(cert)
    assert v.ok and v.checked == cert["cases"] > 0, v.reason


def test_tampered_exhaustive_certificates_are_rejected():
    from torchlean.certificates.core import digest

    cert = make_lemma_certificate("float8_e5m2", "rne", "mul")
    # a unit roundoff that is too small: the replay finds a counterexample
    bad = copy.deepcopy(cert)
    bad["statement"]["u"] = str(Fraction(bad["statement"]["u"]) / 2)
    bad["digest"] = digest(bad["statement"])
    assert not check(bad).ok and "counterexample" in check(bad).reason
    # eta dropped
    bad = copy.deepcopy(cert)
    bad["statement"]["eta"] = "0"
    bad["digest"] = digest(bad["statement"])
    assert not check(bad).ok
    # a changed case count, an edited statement without its digest, a wrong claim text
    bad = copy.deepcopy(cert)
    bad["cases"] += 1
    assert not check(bad).ok
    bad = copy.deepcopy(cert)
    bad["statement"]["op"] = "add"
    assert not check(bad).ok
    bad = copy.deepcopy(cert)
    bad["statement"]["claim"] = "anything"
    bad["digest"] = digest(bad["statement"])
    assert not check(bad).ok
