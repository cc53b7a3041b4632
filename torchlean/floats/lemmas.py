"""Per-operation rounding lemmas as obligations (SMT FloatingPoint theory, bit-blasted).

For op in add, sub, mul, div, sqrt and format in binary16, bfloat16, binary32 (nearest-even):

    for all finite x, y (y != 0 for div, x >= 0 for sqrt) with fl(x op y) finite:
        |fl(x op y) - (x op y)| <= u |x op y| + eta        (sqrt: eta = 0)

stated in QF_FP over a wide sort where the real quantities are exact (x + y: every bit from the
smallest subnormal to 2^(emax+1); x*y, r*y, r*r: 2p + 1 bits), the error rounded up and the
allowance rounded down, so the float comparison implies the real one. Division is stated as
|r*y - x| <= u|x| + eta|y| (multiply through by |y| > 0), sqrt as (1-u)^2 x <= r^2 <= (1+u)^2 x.
(The same claims with fp.to_real and real arithmetic timed out in both solvers at 60 s.)
cvc5 and z3 decide these by bit-blasting: their "unsat" is *solver-trusted*, not replayed by the
checker; ``discharge`` records both solvers' answers and whether they agree. The 8-bit formats are
checked exhaustively by the checker itself (``rounding-lemma-exhaustive``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from ..certificates.rounding import Format, encode, get_format, make_lemma_certificate, round_fraction
from ..proofs.obligation import Obligation, source

FORMATS = ("binary16", "bfloat16", "binary32")
OPS = ("add", "sub", "mul", "div", "sqrt")
#: wide sorts (exponent bits, significand bits): the exact sum x + y of two finite values
#: (spanning 2^-(emin-subnormal) .. 2^(emax+1)), and the exact product of two values (2p bits + 1)
WIDE_ADD = {"binary16": (8, 48), "bfloat16": (11, 270), "binary32": (11, 285)}
WIDE_MUL = {"binary16": (8, 24), "bfloat16": (11, 17), "binary32": (11, 49)}


def _sort(fmt: Format) -> str:
    return f"(_ FloatingPoint {fmt.ebits} {fmt.precision})"


def smtlib(fmt_name: str, op: str) -> str:
    """The lemma in QF_FP. The real quantities are formed in a wide sort W where they are exact
    (z = x op y; r*y; r*r), the error side is rounded up (RTP) and the allowance rounded down
    (RTN), so the FP comparison implies the real one (with fp.to_real and real arithmetic both
    solvers timed out at 60 s even on binary16 add). Constants are written as exact bit fields."""
    fmt = get_format(fmt_name)
    u, eta = fmt.unit_roundoff("rne"), fmt.underflow_eta("rne")
    s = _sort(fmt)
    we, wp = (WIDE_ADD if op in ("add", "sub") else WIDE_MUL)[fmt_name]
    W = f"(_ FloatingPoint {we} {wp})"

    def w(t: str) -> str:
        return f"((_ to_fp {we} {wp}) RNE {t})"

    wfmt = Format(f"e{we}m{wp - 1}", we, wp - 1)

    def c(q: Fraction) -> str:  # an exact constant of W, as its bit fields
        b = encode(round_fraction(q, wfmt), wfmt)
        sign, e, m = b >> (we + wp - 1), (b >> (wp - 1)) & ((1 << we) - 1), b & ((1 << (wp - 1)) - 1)
        assert round_fraction(q, wfmt).value == q, "constant not exact in the wide sort"
        return f"(fp (_ bv{sign} 1) (_ bv{e} {we}) (_ bv{m} {wp - 1}))"

    lines = [
        "(set-logic QF_FP)",
        f"; rounding lemma: {fmt.name} {op}, round to nearest even; u = {u}, eta = {eta}",
        f"; wide sort {W}: exact for the quantities formed in it",
        f"(declare-const x {s})",
        f"(declare-const y {s})",
        "(assert (not (or (fp.isNaN x) (fp.isInfinite x) (fp.isNaN y) (fp.isInfinite y))))",
    ]
    if op in ("add", "sub", "mul"):
        fop = {"add": "fp.add", "sub": "fp.sub", "mul": "fp.mul"}[op]
        lines += [f"(define-fun r () {s} ({fop} RNE x y))",
                  "(assert (not (fp.isInfinite r)))",
                  f"(define-fun z () {W} ({fop} RNE {w('x')} {w('y')}))",  # exact in W
                  f"(define-fun d () {W} (fp.abs (fp.sub RTP {w('r')} z)))",
                  f"(define-fun allow () {W} (fp.add RTN (fp.mul RTN {c(u)} (fp.abs z)) {c(eta)}))"]
        claim = "(fp.leq d allow)"
    elif op == "div":
        lines += [f"(define-fun r () {s} (fp.div RNE x y))",
                  "(assert (not (fp.isZero y)))",
                  "(assert (not (fp.isInfinite r)))",
                  f"(define-fun ry () {W} (fp.mul RNE {w('r')} {w('y')}))",  # exact in W
                  f"(define-fun d () {W} (fp.abs (fp.sub RTP ry {w('x')})))",
                  f"(define-fun allow () {W} (fp.add RTN (fp.mul RTN {c(u)} (fp.abs {w('x')})) "
                  f"(fp.mul RTN {c(eta)} (fp.abs {w('y')}))))"]
        claim = "(fp.leq d allow)"
    elif op == "sqrt":
        lines += [f"(define-fun r () {s} (fp.sqrt RNE x))",
                  f"(assert (fp.geq x (_ +zero {fmt.ebits} {fmt.precision})))",
                  f"(define-fun rr () {W} (fp.mul RNE {w('r')} {w('r')}))",  # exact in W
                  f"(define-fun lo () {W} (fp.mul RTP {c((1 - u) ** 2)} {w('x')}))",
                  f"(define-fun hi () {W} (fp.mul RTN {c((1 + u) ** 2)} {w('x')}))"]
        claim = "(and (fp.leq lo rr) (fp.leq rr hi))"
    else:
        raise ValueError(op)
    lines += [f"(assert (not {claim}))", "(check-sat)"]
    return "\n".join(lines) + "\n"


def obligation(fmt_name: str, op: str) -> Obligation:
    fmt = get_format(fmt_name)
    u, eta = fmt.unit_roundoff("rne"), fmt.underflow_eta("rne")
    what = ("|fl(sqrt x) - sqrt x| <= u sqrt x" if op == "sqrt"
            else f"|fl(x {op} y) - (x {op} y)| <= u|x {op} y| + eta")
    return Obligation(
        kind="rounding", subject=f"format:{fmt.name}:{op}", name=f"floats.rounding.{fmt.name}.{op}",
        smtlib=smtlib(fmt_name, op), statement=f"{fmt.name}, RNE: {what}, u = {u}, eta = {eta}",
        data={"format": fmt.to_dict(), "mode": "rne", "op": op, "u": str(u), "eta": str(eta)},
        assumptions=("finite operands; the rounded result does not overflow",))


@source("floats.lemmas")
def lemma_obligations() -> Iterator[Obligation]:
    for f in FORMATS:
        for op in OPS:
            yield obligation(f, op)


def exhaustive_certificates() -> Iterator[dict[str, Any]]:
    """Certificates for the 8-bit formats, replayed by the checker by enumeration."""
    for f in ("float8_e4m3fn", "float8_e5m2"):
        for op in OPS:
            yield make_lemma_certificate(f, "rne", op)


# -- discharge (solver-trusted) -------------------------------------------------------------------

def run_z3(text: str, timeout_s: float) -> tuple[str, float]:
    import z3

    s = z3.Solver()
    s.set("timeout", int(timeout_s * 1000))
    s.from_string(text)
    t = time.time()
    r = s.check()
    return str(r), time.time() - t


def run_cvc5(text: str, timeout_s: float) -> tuple[str, float]:
    import cvc5

    solver = cvc5.Solver()
    solver.setOption("tlimit-per", str(int(timeout_s * 1000)))
    solver.setOption("fp-exp", "true")  # formats other than Float32/Float64 (binary16, bfloat16)
    parser = cvc5.InputParser(solver)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, "lemma")
    sm = parser.getSymbolManager()
    t = time.time()
    result = "unknown"
    while True:
        cmd = parser.nextCommand()
        if cmd.isNull():
            break
        out = cmd.invoke(solver, sm)
        out = (out or "").strip()
        if out in ("sat", "unsat", "unknown"):
            result = out
        elif out.startswith("(error"):
            raise RuntimeError(out[:200])
    return result, time.time() - t


def discharge(ob: Obligation, timeout_s: float = 60.0) -> dict[str, Any]:
    """Both solvers on one obligation. 'proved' needs both to answer unsat; recorded as
    solver-trusted (bit-blasting), never as checked."""
    rec: dict[str, Any] = {"name": ob.name, "hash": ob.hash, "timeout_s": timeout_s}
    for name, fn in (("z3", run_z3), ("cvc5", run_cvc5)):
        try:
            res, dt = fn(ob.smtlib, timeout_s)
        except Exception as e:  # a solver error is a result to record, not a crash
            res, dt = f"error: {type(e).__name__}: {e}", 0.0
        rec[name] = {"result": res if res != "unknown" else "timeout/unknown", "time_s": round(dt, 2)}
    answers = {rec["z3"]["result"], rec["cvc5"]["result"]}
    rec["agree"] = len(answers) == 1
    rec["status"] = "solver-trusted (both unsat)" if answers == {"unsat"} else (
        "REFUTED" if "sat" in answers else "open")
    return rec
