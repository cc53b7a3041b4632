"""The checker's VNN-LIB reader (``certificates.property``) on properties whose cases share atoms:
each atom is read once and its reading reused in every case it occurs in, and consecutive cases
with the same box share one region. The reference is the reading by hand of each case."""

from __future__ import annotations

from fractions import Fraction as F

import pytest

from torchlean.certificates.property import Atom, PropertyError, parse_property

HEAD = "".join(f"(declare-const {v} Real)\n" for v in ("X_0", "X_1", "Y_0", "Y_1"))
BOX = "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 -1))\n(assert (< X_1 1))\n"


def _atom(a0: int, a1: int, b: F, strict: bool = False) -> Atom:
    return Atom((F(a0), F(a1)), b, strict)


def test_shared_box_one_region_and_per_case_tightening():
    """Three output cases after a shared box: the first two keep the box (one region, two
    disjuncts, in the file's order); the third tightens X_0 <= 1/2 and X_1 < 1 to X_1 <= 1/4,
    its own region; the shared strict X_1 < 1 stays strict in the first region only."""
    text = HEAD + BOX + """(assert (or
        (and (>= Y_0 Y_1))
        (and (<= Y_0 0.5) (> Y_1 2))
        (and (<= X_0 0.5) (<= X_1 0.25) (>= Y_1 -3))))"""
    spec = parse_property(text)
    assert (spec.n_in, spec.n_out, len(spec.regions)) == (2, 2, 2)
    r0, r1 = spec.regions
    assert (r0.lo, r0.hi) == ((F(0), F(-1)), (F(1), F(1)))
    assert r0.strictness() == ((False, False), (False, True))
    assert r0.disjuncts == ((_atom(-1, 1, F(0)),), (_atom(1, 0, F(1, 2)), _atom(0, -1, F(-2), True)))
    assert (r1.lo, r1.hi) == ((F(0), F(-1)), (F(1, 2), F(1, 4)))
    assert r1.strictness() == ((False, False), (False, False))
    assert r1.disjuncts == ((_atom(0, -1, F(3)),),)


def test_a_case_back_on_an_earlier_box_joins_its_region():
    """Cases A (box 1), B (box 2), C (box 1 again): C's disjunct joins A's region, not a third one."""
    text = HEAD + BOX + """(assert (or
        (and (>= Y_0 1))
        (and (<= X_0 0.5) (>= Y_0 2))
        (and (>= Y_0 3))))"""
    spec = parse_property(text)
    assert [len(r.disjuncts) for r in spec.regions] == [2, 1]
    assert spec.regions[0].disjuncts == ((_atom(-1, 0, F(-1)),), (_atom(-1, 0, F(-3)),))
    assert spec.regions[1].hi == (F(1, 2), F(1))


def test_an_error_in_a_shared_atom_is_still_raised():
    """A malformed shared atom (inputs and outputs mixed) is refused, naming its line, although
    its reading is memoised after the first case."""
    text = HEAD + BOX + "(assert (<= X_0 Y_0))\n(assert (or (and (>= Y_0 1)) (and (>= Y_1 1))))"
    with pytest.raises(PropertyError, match="line 9: constraints mixing inputs and outputs"):
        parse_property(text)
