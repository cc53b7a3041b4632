"""The SMT rounding lemmas (torchlean.floats.lemmas): the add/sub case split is total, each case's
claim holds on exact samples, the midpoint construction of ``interval`` is right, the obligations
are well-formed, and (marked solver) both solvers prove the binary16 parts and refute weakened
ones."""

import random
import re
from fractions import Fraction

import pytest

from torchlean.certificates.rounding import Format, decode, get_format, round_fraction
from torchlean.floats import lemmas as L

CASES = ("far-x", "far-y", "close-exact")


def _finite(fmt, bits):
    return decode(bits, fmt).finite


def _boundary_bits(fmt):
    """Encodings at every exponent field with the extreme significands, and near-zero ones."""
    out = {0, 1, 2}
    for e in range((1 << fmt.ebits) - 1):
        for m in (0, 1, (1 << fmt.mbits) - 1):
            for s in (0, 1):
                out.add((s << (fmt.ebits + fmt.mbits)) | (e << fmt.mbits) | m)
    return sorted(out)


@pytest.mark.parametrize("name", L.FORMATS)
def test_case_split_is_total_on_every_exponent_pair(name):
    fmt = get_format(name)
    # the cases depend only on the exponent fields: every pair of finite fields, exactly one case
    for ex in range((1 << fmt.ebits) - 1):
        for ey in range((1 << fmt.ebits) - 1):
            got = L.case_of(fmt, ex << fmt.mbits, ey << fmt.mbits)
            assert len(got) == 1, (ex, ey, got)


def test_case_split_is_total_on_random_and_boundary_binary16():
    fmt = get_format("binary16")
    rng = random.Random(0)
    pool = _boundary_bits(fmt) + [rng.randrange(1 << 16) for _ in range(3000)]
    pool = [b for b in pool if _finite(fmt, b)]
    seen = set()
    for x in pool:
        for y in rng.sample(pool, 40):
            got = L.case_of(fmt, x, y)
            assert len(got) == 1
            seen.add(got[0])
    assert seen == set(CASES)


def test_each_case_claim_holds_exactly_on_binary16_samples():
    """far-x: fl(x+y) = x; close: x+y is a value of W; mul: x*y is a value of W; and the lemma."""
    fmt = get_format("binary16")
    we, wp = L.wide(fmt)
    wfmt = Format("w", we, wp - 1)
    u, eta = fmt.unit_roundoff("rne"), fmt.underflow_eta("rne")
    rng = random.Random(1)
    pool = [b for b in _boundary_bits(fmt) + [rng.randrange(1 << 16) for _ in range(1500)] if _finite(fmt, b)]
    for _ in range(20000):
        xb, yb = rng.choice(pool), rng.choice(pool)
        x, y = decode(xb, fmt).value, decode(yb, fmt).value
        for op, z, fl_y in (("add", x + y, y), ("sub", x - y, -y), ("mul", x * y, None)):
            r = round_fraction(z, fmt)
            if not r.finite:
                continue
            assert abs(r.value - z) <= u * abs(z) + eta
            if op == "mul":
                assert round_fraction(z, wfmt).value == z
                continue
            (case,) = L.case_of(fmt, xb, yb)
            if case == "close-exact":
                assert round_fraction(z, wfmt).value == z
            else:
                assert r.value == (x if case == "far-x" else fl_y)


@pytest.mark.parametrize("name", ["binary16", "bfloat16"])
def test_interval_midpoints_from_encodings(name):
    """E followed by a 1 bit, read in the format with p + 1 bits, is the midpoint of E and E + 1."""
    fmt = get_format(name)
    ext = Format("ext", fmt.ebits, fmt.mbits + 1)
    inf = ((1 << fmt.ebits) - 1) << fmt.mbits
    for e in range(inf):
        a = decode(e, fmt).value
        # above the largest finite value: 2^(emax+1), the overflow boundary's other end
        nxt = decode(e + 1, fmt).value if e + 1 < inf else Fraction(2) ** (fmt.emax + 1)
        assert decode(e << 1, ext).value == a
        assert decode((e << 1) | 1, ext).value == (a + nxt) / 2


def test_obligations_are_well_formed():
    obs = list(L.lemma_obligations())
    names = [o.name for o in obs]
    assert len(names) == len(set(names)) == 10 * len(L.FORMATS)
    for f in L.FORMATS:
        for op in L.OPS:
            parts = L.lemma_parts(f, op)
            assert [p.data["part"] for p in parts] == list(L.PARTS[op])
            assert all(p.name in names for p in parts)
    for o in obs:
        assert o.smtlib.startswith("(set-logic QF_BVFP)") and o.smtlib.rstrip().endswith("(check-sat)")
        assert o.kind == "rounding" and o.statement
    with pytest.raises(ValueError):
        L.obligation("binary16", "add", "interval-typo")
    with pytest.raises(ValueError):
        L.obligation("binary16", "add", "direct")
    assert "fp.div" in L.obligation("binary32", "div", "direct").smtlib


def test_lemma_status_needs_every_part():
    ok = {"status": "solver-trusted (both unsat)"}
    recs = {ob.name: ok for ob in L.lemma_obligations()}
    assert L.lemma_status("binary32", "add", recs) == "solver-trusted (both unsat, all parts)"
    assert "meta-argument" in L.lemma_status("binary32", "div", recs)
    recs["floats.rounding.binary32.add.far-y"] = {"status": "open"}
    assert L.lemma_status("binary32", "add", recs).startswith("open")
    assert L.lemma_status("binary32", "sub", recs).startswith("solver-trusted")
    recs["floats.rounding.binary32.round"] = {"status": "REFUTED"}
    assert L.lemma_status("binary32", "mul", recs).startswith("REFUTED")
    assert L.lemma_status("binary16", "add", {}).startswith("open")


# -- solvers ---------------------------------------------------------------------------------------

@pytest.mark.solver
def test_smt_case_conditions_agree_with_python():
    import z3

    fmt = get_format("binary16")
    rng = random.Random(2)
    decls = "(set-logic QF_BVFP)\n" + "\n".join(L._operands(fmt)) + "\n"
    pairs = [(30 << 10, 1 << 10), (1 << 10, 0), (14 << 10, 0), (15 << 10, 1 << 10), (1, 16 << 10),
             (0, 15 << 10)] + [(rng.randrange(0x7C00), rng.randrange(0x7C00)) for _ in range(30)]
    for xb, yb in pairs:
        fix = "".join(f"(assert (= {v}_e (_ bv{(b >> 10) & 31} 5)))" for v, b in (("x", xb), ("y", yb)))
        holds = []
        for case, cond in L.case_conditions(fmt).items():
            s = z3.Solver()
            s.from_string(decls + fix + f"(assert {cond})")
            if s.check() == z3.sat:
                holds.append(case)
        assert holds == L.case_of(fmt, xb, yb), (xb, yb)


def _weakened(text, fmt):
    """u halved: the exponent shift p of the allowance becomes p + 1."""
    we = L.wide(fmt)[0]
    out = re.sub(rf"\(_ bv{fmt.precision} {we}\)", f"(_ bv{fmt.precision + 1} {we})", text)
    assert out != text
    return out


@pytest.mark.solver
@pytest.mark.parametrize("part", ["round", "interval", "interval-normal"])
def test_weakened_shared_parts_are_refuted_by_both(part):
    fmt = get_format("binary16")
    text = _weakened(L.part_smtlib("binary16", "", part), fmt)
    assert L.run_z3(text, 30)[0] == "sat"
    assert L.run_cvc5(text, 30)[0] == "sat"


@pytest.mark.solver
def test_close_case_needs_the_wide_sort():
    # a threshold K far above p + 2: x + y no longer fits in W, and the solvers find such a pair
    text = L.part_smtlib("binary16", "add", "close-exact").replace("(_ bv13 6)", "(_ bv20 6)")
    assert "(_ bv20 6)" in text
    assert L.run_z3(text, 30)[0] == "sat"


@pytest.mark.solver
@pytest.mark.slow
def test_both_solvers_prove_every_binary16_part():
    recs = {ob.name: L.discharge(ob, 60) for ob in L.lemma_obligations() if ".binary16." in ob.name}
    assert all(r["status"] == "solver-trusted (both unsat)" and r["agree"] for r in recs.values()), recs
    for op in L.OPS:
        assert L.lemma_status("binary16", op, recs).startswith("solver-trusted")
