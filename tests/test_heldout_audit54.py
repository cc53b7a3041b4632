"""Audit audit54: the rounding lemmas (``python -m torchlean.floats lemmas``: ``floats/lemmas.py``,
the checker's ``rounding-lemma-exhaustive``) and the format layer under them
(``certificates/rounding.py``, ``floats/bits.py``, ``floats/emulate.py``); TRUST_BOUNDARIES.md,
"Audit audit54".

References, independent of the code under audit: ml_dtypes and numpy arithmetic (what the runtime
computes in float8_e4m3fn, float8_e5m2, float8_e4m3/e3m4, bfloat16 and float16), exact integer
arithmetic for the lemma inequalities, and z3's FloatingPoint theory in a fresh ``z3.Context``.

Hole found (the test marked below fails on the code before the audit): ``floats run`` ("bit-exact
emulated execution in a format") accepted formats whose values do not fit in binary64, where the
emulator keeps every value, and printed wrong values with exit 0: in e11m60, (1 + 2^-60) - 1 printed
0.0 (the value is 2^-60: 1 + 2^-60 is a value of e11m60, double-rounded to binary64); in e12m3,
(1e-300)^2 printed 0.0. No lemma or certificate was affected: the lemma statements hold against
every reference here (held, real assertions).
"""

from __future__ import annotations

import random
from fractions import Fraction as Q

import numpy as np
import pytest

from torchlean.certificates import check
from torchlean.certificates.rounding import (
    Format,
    decode,
    enumerate_lemma,
    get_format,
    round_fraction,
    round_sqrt,
)
from torchlean.floats import lemmas as L
from torchlean.floats.bits import encode

ml = pytest.importorskip("ml_dtypes")

FP8 = {"float8_e4m3fn": ml.float8_e4m3fn, "float8_e5m2": ml.float8_e5m2}
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def _lemma_consts(fmt: Format) -> tuple[int, int]:
    """(p, k0): u = 2^-p, every value a multiple of 2^-k0 = the least subnormal, eta = 2^-k0 / 2."""
    k0 = fmt.mbits - fmt.emin
    assert fmt.min_positive == Q(1, 2 ** k0) and fmt.underflow_eta("rne") == Q(1, 2 ** (k0 + 1))
    assert fmt.unit_roundoff("rne") == Q(1, 2 ** fmt.precision)
    return fmt.precision, k0


def _exact(op: str, a: int, b: int, k0: int) -> Q:
    """x op y for x = a/2^k0, y = b/2^k0, exactly."""
    n = {"add": lambda: Q(a + b), "sub": lambda: Q(a - b), "mul": lambda: Q(a * b, 1 << k0),
         "div": lambda: Q(a << k0, b)}[op]()
    return n / (1 << k0)


def _holds(op: str, X: int, Y: int, R: int, p: int, k0: int) -> bool:
    """|r - z| <= 2^-p |z| + 2^-(k0+1) for x = X/2^k0, y = Y/2^k0, r = R/2^k0, z = x op y, in
    integers (each side multiplied by 2^(p+1), and by 2^k0 |Y| for div)."""
    if op in ("add", "sub"):
        Z = X + Y if op == "add" else X - Y
        return (abs(R - Z) << (p + 1)) <= 2 * abs(Z) + (1 << p)
    if op == "mul":
        Z = X * Y
        return (abs((R << k0) - Z) << (p + 1)) <= 2 * abs(Z) + (1 << (p + k0))
    return (abs(R * Y - (X << k0)) << (p + 1)) <= (abs(X) << (k0 + 1)) + (abs(Y) << p)  # div


# -- 1. the 8-bit lemmas against ml_dtypes arithmetic, exhaustively ---------------------------------

@pytest.mark.parametrize("name", list(FP8))
def test_fp8_lemmas_hold_on_ml_dtypes_arithmetic_and_the_checker_counts_its_cases(name):
    """Every pair of finite fp8 values, each op as ml_dtypes computes it: the result is the exact
    result correctly rounded (round_fraction), the lemma inequality holds in exact integers, and
    the checker's exhaustive certificate counts exactly the (distinct-value) pairs whose
    ml_dtypes result is finite, so its "fl finite" premise is ml_dtypes' overflow (NaN in e4m3fn,
    inf in e5m2), not another one."""
    dt, fmt = FP8[name], get_format(name)
    p, k0 = _lemma_consts(fmt)
    pats = np.arange(256, dtype=np.uint8).view(dt)
    f64 = pats.astype(np.float64)
    # distinct finite values (+0 once): the lemma is about values
    keep = [i for i in range(256) if np.isfinite(f64[i]) and not (f64[i] == 0 and np.signbit(f64[i]))]
    xs = pats[keep]
    X, Y = (a.ravel() for a in np.meshgrid(xs, xs, indexing="ij"))
    xi = [int(v) for v in (X.astype(np.float64) * 2.0 ** k0)]  # exact: multiples of 2^-k0
    yi = [int(v) for v in (Y.astype(np.float64) * 2.0 ** k0)]
    for op, fn in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.divide)):
        with np.errstate(all="ignore"):
            R = fn(X, Y).astype(np.float64)
        finite = 0
        for a, b, r in zip(xi, yi, R.tolist()):
            if op == "div" and b == 0:
                continue
            if not np.isfinite(r):
                # overflow: the checker's rounding says so too (NaN without infinities)
                assert not round_fraction(_exact(op, a, b, k0), fmt).finite, (op, a, b)
                assert np.isnan(r) if not fmt.has_inf else np.isinf(r)
                continue
            finite += 1
            if (a + b) % 4 == 0:  # (a quarter of the pairs, bit for bit against the exact rounding)
                assert round_fraction(_exact(op, a, b, k0), fmt).value == Q(r), (name, op, a, b)
            R_ = int(r * 2.0 ** k0)
            assert R_ == r * 2.0 ** k0
            assert _holds(op, a, b, R_, p, k0), (name, op, a, b, r)
        u, eta = fmt.unit_roundoff("rne"), fmt.underflow_eta("rne")
        cases, counterexample = enumerate_lemma(fmt, "rne", op, u, eta)
        assert counterexample is None and cases == finite
    # sqrt: every value >= 0
    for x in xs:
        xv = float(x)
        if xv < 0:
            continue
        r = Q(float(np.sqrt(x)))
        assert round_sqrt(Q(xv), fmt).value == r
        u, eta = fmt.unit_roundoff("rne"), fmt.underflow_eta("rne")
        assert r + eta >= 0 and (1 - u) ** 2 * Q(xv) <= (r + eta) ** 2
        assert r - eta <= 0 or (r - eta) ** 2 <= (1 + u) ** 2 * Q(xv)


@pytest.mark.parametrize("name", list(FP8))
def test_fp8_lemma_constants_are_needed(name):
    """The checker can fail: u halved, or eta 0, is refuted by its enumeration (and a real
    ml_dtypes pair shows each stronger claim false)."""
    fmt = get_format(name)
    u, eta = fmt.unit_roundoff("rne"), fmt.underflow_eta("rne")
    from torchlean.certificates.core import digest
    from torchlean.certificates.rounding import lemma_statement

    for uu, ee in ((u / 2, eta), (u, Q(0))):
        stmt = lemma_statement(fmt, "rne", "mul", uu, ee)
        cert = {"kind": "rounding-lemma-exhaustive", "statement": stmt, "digest": digest(stmt), "cases": 1}
        v = check(cert)
        assert not v.ok and "counterexample" in v.reason
    dt = FP8[name]
    # eta is needed: the least subnormal times 1/2 (exact 2^-(k0+1), a tie) rounds to 0
    tiny = np.array([float(fmt.min_positive)], np.float64).astype(dt)
    half = np.array([0.5], np.float64).astype(dt)
    assert float((tiny * half)[0]) == 0.0
    # u is needed: 1 + 2^-p is a tie that rounds to 1 (even), an error of 2^-p > (u/2)|z| + eta
    one, tie = (np.array([v], np.float64).astype(dt) for v in (1.0, 2.0 ** -fmt.precision))
    z = 1 + Q(1, 2 ** fmt.precision)
    assert float((one + tie)[0]) == 1.0 and z - 1 > u / 2 * z + eta


# -- 2. the 16-bit formats as numpy / ml_dtypes compute them ---------------------------------------

def _pool(fmt: Format, rng: random.Random, n: int) -> list[int]:
    out = {0, 1, 2, 3, (1 << fmt.mbits) - 1, 1 << fmt.mbits}
    for e in range((1 << fmt.ebits) - 1):
        for m in (0, 1, (1 << fmt.mbits) - 1, 1 << (fmt.mbits - 1)):
            out.add((e << fmt.mbits) | m)
    out |= {rng.randrange(1 << (fmt.bits - 1)) for _ in range(n)}
    vals = [b for b in out if decode(b, fmt).finite]
    return vals + [b | (1 << (fmt.bits - 1)) for b in vals]


@pytest.mark.parametrize("name,dt", [("binary16", np.float16), ("bfloat16", ml.bfloat16)])
def test_16_bit_lemmas_hold_on_runtime_arithmetic(name, dt):
    """Boundary and random pairs (every exponent field with extreme significands, subnormals,
    the largest finite): numpy's float16 / ml_dtypes' bfloat16 result is the correctly rounded
    exact result, and |fl(x op y) - x op y| <= u|x op y| + eta holds exactly where it is finite."""
    fmt = get_format(name)
    p, k0 = _lemma_consts(fmt)
    rng = random.Random(54)
    pool = _pool(fmt, rng, 400)
    xb = [rng.choice(pool) for _ in range(20000)]
    yb = [rng.choice(pool) for _ in range(20000)]
    xs = np.array(xb, np.uint16).view(dt)
    ys = np.array(yb, np.uint16).view(dt)
    xi = [int(v) for v in xs.astype(np.float64) * 2.0 ** k0]
    yi = [int(v) for v in ys.astype(np.float64) * 2.0 ** k0]
    for op, fn in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.divide)):
        with np.errstate(all="ignore"):
            rs = fn(xs, ys)
        bits = rs.view(np.uint16).tolist()
        for a, b, r, rb in zip(xi, yi, rs.astype(np.float64).tolist(), bits):
            if op == "div" and b == 0:
                continue
            z = _exact(op, a, b, k0)
            ref = round_fraction(z, fmt, zero_sign=int(np.signbit(r)))  # (the sign of an exact 0 aside)
            if not ref.finite:
                assert np.isinf(r)
                continue
            assert encode(ref, fmt) == rb, (name, op, a, b)
            assert _holds(op, a, b, int(r * 2.0 ** k0), p, k0)


def test_binary16_sqrt_needs_no_eta_from_the_least_normal_up():
    """The ``interval-normal`` claim (sqrt: eta = 0 for results >= 2^emin) on every positive
    binary16 value with numpy's sqrt; below, sqrt of the least subnormal is still normal."""
    fmt = get_format("binary16")
    u = fmt.unit_roundoff("rne")
    xs = np.arange(1, 0x7C00, dtype=np.uint16).view(np.float16)
    rs = np.sqrt(xs)
    assert float(rs.min()) >= 2.0 ** fmt.emin  # (sqrt(2^-24) = 2^-12)
    for x, r in zip(xs.astype(np.float64).tolist(), rs.astype(np.float64).tolist()):
        x, r = Q(x), Q(r)
        assert (1 - u) ** 2 * x <= r * r <= (1 + u) ** 2 * x


# -- 3. the format layer against z3's FloatingPoint theory ------------------------------------------

def _adversarial(fmt: Format) -> list[Q]:
    """Ties and near-ties at the bottom and top of the range, at binade ends, and past overflow."""
    mp, mn, mf = fmt.min_positive, fmt.min_normal, fmt.max_finite
    top = Q(2) ** (fmt.emax - fmt.mbits)  # the ulp of the top binade
    pts = [mp / 2, mp / 2 - mp / 64, mp / 2 + mp / 64, 3 * mp / 2, 5 * mp / 2, mn - mp / 2,
           mn - mp / 4, mn + mp / 2, mf, mf + top / 2, mf + top / 2 - top / 1024, mf + top / 2 + top / 1024,
           mf + top, 4 * mf]
    for e in (0, 1, fmt.emax - 1):  # a binade's end: 2^e - ulp/4 (below), 2^e + ulp(2^e)/2 (a tie)
        b = Q(2) ** e
        pts += [b - Q(2) ** (e - fmt.mbits) / 4, b + Q(2) ** (e - fmt.mbits) / 2,
                b + 3 * Q(2) ** (e - fmt.mbits) / 2]
    return pts


@pytest.mark.solver
@pytest.mark.parametrize("name", ["binary64", "binary32", "binary16", "bfloat16", "float8_e5m2", "e3m2",
                                  "e2m3"])
def test_rounding_agrees_with_smt_fp_on_adversarial_points(name):
    import z3

    ctx = z3.Context()
    fmt = get_format(name)
    S = z3.FPSort(fmt.ebits, fmt.precision, ctx)
    modes = {"rne": z3.RNE(ctx), "rna": z3.RNA(ctx), "rtz": z3.RTZ(ctx), "rup": z3.RTP(ctx),
             "rdn": z3.RTN(ctx)}
    u, eta = fmt.unit_roundoff("rne"), fmt.underflow_eta("rne")
    for q in _adversarial(fmt):
        for s in (1, -1):
            for mode, rm in modes.items():
                e = z3.simplify(z3.fpToFP(rm, z3.RealVal(str(s * q), ctx), S, ctx=ctx))
                mine = round_fraction(s * q, fmt, mode)
                if e.isInf():
                    assert mine.kind == "inf" and mine.sign == int(e.isNegative()), (name, mode, s * q)
                    continue
                r = z3.simplify(z3.fpToReal(e, ctx))
                val = Q(r.numerator_as_long(), r.denominator_as_long())
                assert mine.finite and mine.value == val, (name, mode, s * q, val, mine)
                if mode == "rne":  # the lemma's one-rounding claim, with z3's rounding
                    assert abs(val - s * q) <= u * q + eta


@pytest.mark.solver
@pytest.mark.parametrize("name", ["float8_e5m2", "e3m2", "binary16", "bfloat16", "binary32"])
def test_decode_agrees_with_smt_fp(name):
    import z3

    ctx = z3.Context()
    fmt = get_format(name)
    S = z3.FPSort(fmt.ebits, fmt.precision, ctx)
    pats = range(1 << fmt.bits) if fmt.bits <= 8 else sorted(
        {b | s for b in _pool(fmt, random.Random(5), 200) for s in (0,)})
    for b in pats:
        e = z3.simplify(z3.fpBVToFP(z3.BitVecVal(b, fmt.bits, ctx), S, ctx))
        v = decode(b, fmt)
        if e.isNaN():
            assert v.kind == "nan"
        elif e.isInf():
            assert v.kind == "inf" and v.sign == int(e.isNegative())
        else:
            r = z3.simplify(z3.fpToReal(e, ctx))
            assert v.finite and v.value == Q(r.numerator_as_long(), r.denominator_as_long())
            assert v.sign == int(e.isNegative())


def _solve(text: str, timeout_s: float = 60.0):
    import z3

    ctx = z3.Context()
    s = z3.Solver(ctx=ctx)
    s.set("timeout", int(timeout_s * 1000))
    s.from_string(text)
    return s, s.check(), z3


@pytest.mark.solver
def test_round_part_without_eta_is_refuted_by_a_real_subnormal_counterexample():
    """The shared ``round`` obligation covers the subnormal range: with eta dropped from the
    allowance z3 finds a z, and that z (decoded from the model, rounded by the checker's
    independent exact rounding) really violates |RN(z) - z| <= u|z|."""
    fmt = get_format("binary16")
    W = L._Wide(*L.wide(fmt))
    text = L.part_smtlib("binary16", "", "round")
    c = W.c(fmt.underflow_eta("rne"))
    assert text.count(c) == 1
    s, res, z3 = _solve(text.replace(c, f"(_ +zero {W.we} {W.wp})"))
    assert res == z3.sat
    # z's bits from the model, read by ``decode`` (checked against z3 above). Every z3py FP
    # conversion gets its context: without one it runs in z3's global context on this
    # context's terms, and the global context's next call then releases them after this
    # context is gone, writing into freed memory (the test run's crash: docs/known-issues.md)
    zc = z3.FP("z", z3.FPSort(W.we, W.wp, s.ctx), s.ctx)
    v = decode(s.model().eval(z3.fpToIEEEBV(zc, s.ctx), model_completion=True).as_long(), W.fmt)
    z = v.value
    assert 0 < abs(z) < fmt.min_normal  # (below the normal range: only eta covered it)
    got = round_fraction(z, fmt)
    assert got.finite and abs(got.value - z) > fmt.unit_roundoff("rne") * abs(z)


@pytest.mark.solver
def test_round_part_pinned_at_adversarial_points_is_unsat():
    """The ``round`` obligation restricted to one z at a time (ties at the overflow boundary, the
    subnormal tie, binade ends) is unsat; pinned past overflow it is unsat because RN(z) is inf
    (the premise fails), and with the overflow premise dropped it is sat there (the bound alone
    does not hold for an infinite result)."""
    fmt = get_format("binary16")
    W = L._Wide(*L.wide(fmt))
    base = L.part_smtlib("binary16", "", "round").replace("(check-sat)", "")
    top = Q(2) ** (fmt.emax - fmt.mbits)
    for q in [fmt.min_positive / 2, 3 * fmt.min_positive / 2, fmt.max_finite + top / 2 - top / 1024,
              fmt.min_normal - fmt.min_positive / 2, Q(1) + Q(1, 2 ** 11)]:
        for sgn in (1, -1):
            s, res, z3 = _solve(base + f"(assert (= z {W.c(sgn * q)}))\n(check-sat)\n")
            assert res == z3.unsat, q
    over = base.replace("(assert (not (fp.isInfinite r)))", "")
    s, res, z3 = _solve(over + f"(assert (= z {W.c(fmt.max_finite + top / 2)}))\n(check-sat)\n")
    assert res == z3.sat


@pytest.mark.solver
def test_round_part_allowance_is_exactly_u_z_plus_eta():
    """The allowance the ``round`` obligation compares with is u|z| + eta itself (here exact in
    W), not a larger one: a doubled u would be a weaker, still-true claim labelled u = 2^-p."""
    fmt = get_format("binary16")
    W = L._Wide(*L.wide(fmt))
    u, eta = fmt.unit_roundoff("rne"), fmt.underflow_eta("rne")
    base = L.part_smtlib("binary16", "", "round")
    base = base.replace("(assert (not (bound r)))", "").replace("(check-sat)", "")
    for q in (Q(3, 2), Q(1), -Q(2048), Q(1, 2 ** 14) + Q(1, 2 ** 20)):
        text = (base + f"(assert (= z {W.c(q)}))\n"
                f"(assert (not (fp.eq allow {W.c(u * abs(q) + eta)})))\n(check-sat)\n")
        s, res, z3 = _solve(text)
        assert res == z3.unsat, q


@pytest.mark.solver
def test_far_case_needs_its_exponent_gap():
    """far-x with the gap K lowered to 0 is refuted (x + y with close exponents is not x)."""
    fmt = get_format("binary16")
    text = L.part_smtlib("binary16", "add", "far-x")
    k = f"(_ bv{L.far_k(fmt)} {fmt.ebits + 1})"
    assert k in text
    s, res, z3 = _solve(text.replace(k, f"(_ bv0 {fmt.ebits + 1})"))
    assert res == z3.sat


# -- 4. labelling: the lemmas command's exit status ------------------------------------------------

def _run_lemmas(monkeypatch, capsys, certs, record):
    from torchlean.floats.__main__ import main

    monkeypatch.setattr(L, "exhaustive_certificates", lambda: iter(certs))
    monkeypatch.setattr(L, "discharge", lambda ob, t: {"name": ob.name, "hash": ob.hash, "timeout_s": t,
                                                       **record})
    rc = main(["lemmas", "--timeout", "1"])
    return rc, capsys.readouterr()


def test_lemmas_command_exits_nonzero_unless_every_lemma_is_checked_or_proved(monkeypatch, capsys):
    good = L.make_lemma_certificate("float8_e5m2", "rne", "sqrt")
    unsat = {"z3": {"result": "unsat", "time_s": 0}, "cvc5": {"result": "unsat", "time_s": 0},
             "agree": True, "status": "solver-trusted (both unsat)"}
    rc, out = _run_lemmas(monkeypatch, capsys, [good], unsat)
    assert rc == 0 and "exhaustive: checked" in out.out
    assert out.out.count("solver-trusted") >= 15 and "proved" not in out.out.replace("not proved", "")
    for status in ("open", "REFUTED"):  # a timeout/unknown is "open"
        rec = {**unsat, "status": status, "cvc5": {"result": "timeout/unknown", "time_s": 1}}
        rc, out = _run_lemmas(monkeypatch, capsys, [good], rec)
        assert rc == 1 and "solver-trusted (both unsat" not in out.out
    bad = {**good, "statement": {**good["statement"], "u": "1/16"}}  # stronger than e5m2's 1/8
    from torchlean.certificates.core import digest
    bad["digest"] = digest(bad["statement"])
    rc, out = _run_lemmas(monkeypatch, capsys, [bad], unsat)
    assert rc == 1 and "REJECTED" in out.out


# -- 5. the emulator's formats (the hole) -----------------------------------------------------------

def test_emulator_refuses_formats_that_do_not_fit_binary64(tmp_path, capsys):
    """Fails before the audit: ``floats run`` printed (1 + 2^-60) - 1 = 0.0 in e11m60 (the value is
    2^-60) and (1e-300)^2 = 0.0 in e12m3 (a nonzero value of e12m3), both with exit 0."""
    from torchlean.floats.__main__ import main
    from torchlean.floats.emulate import Emulator
    from torchlean.spec.graph import Graph, Node, Value

    # what the emulator would have to produce: exact in the format, not a binary64 value
    assert round_fraction(1 + Q(1, 2 ** 60), "e8m60").value - 1 == Q(1, 2 ** 60)
    assert round_fraction(Q(1e-300) ** 2, "e12m3").value > 0
    g = Graph([Value("x", (1,), "float64")], {"c": np.array([2.0 ** -60])},
              [Node("add", ["x", "c"], "s"), Node("sub", ["s", "x"], "y")], ["y"]).check()
    sq = Graph([Value("x", (1,), "float64")], {}, [Node("mul", ["x", "x"], "y")], ["y"]).check()
    (tmp_path / "g.json").write_text(g.to_json())
    (tmp_path / "sq.json").write_text(sq.to_json())
    # (e8m60: too precise only; e12m3: too wide only in range; e11m60: both)
    for model, x, f in (("g.json", "1.0", "e8m60"), ("g.json", "1.0", "e11m60"),
                        ("sq.json", "1e-300", "e12m3"), ("sq.json", "1e300", "e12m3")):
        rc = main(["run", str(tmp_path / model), "--input", x, "--format", f])
        out = capsys.readouterr()
        assert rc != 0 and "y " not in out.out, (f, out.out)
        with pytest.raises(ValueError):
            Emulator(f)
    with pytest.raises(ValueError):  # (no infinities: the top binade is 2^1024, past binary64)
        Emulator(Format("e11m3fn", 11, 3, style="fn"))
    # every format that fits still runs, bit-exactly where numpy has the type
    for f in ("binary64", "binary32", "binary16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
              "e11m52-nosub", "e2m1"):
        Emulator(f)
    assert main(["run", str(tmp_path / "g.json"), "--input", "1.0", "--format", "binary64"]) == 0
    assert capsys.readouterr().out.split() == ["y", "0.0"]  # (1 + 2^-60 rounds to 1 in binary64)
    assert main(["run", str(tmp_path / "sq.json"), "--input", "3e-4", "--format", "binary16"]) == 0
    want = float(np.float16(3e-4) * np.float16(3e-4))
    assert float(capsys.readouterr().out.split()[1]) == want
