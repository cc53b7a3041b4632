"""Per-operation rounding lemmas as obligations (SMT FloatingPoint theory, bit-blasted).

For op in add, sub, mul, div, sqrt and format F in binary16, bfloat16, binary32 (nearest-even):

    for all finite x, y (y != 0 for div, x >= 0 for sqrt) with fl(x op y) finite:
        |fl(x op y) - (x op y)| <= u |x op y| + eta        (sqrt: eta = 0)

Comparisons are made in a wider sort W with *directed* rounding: an upper bound of the error
(rounded up) against a lower bound of the allowance (rounded down), so each float comparison
implies the real one; u|z| (u = 2^-p) is formed exactly by lowering the exponent field of |z| by
p (0 when that would leave W's normal range: still a lower bound). cvc5 and z3 decide the
obligations by bit-blasting: "unsat" is *solver-trusted*, not replayed by the checker; ``discharge``
records both answers and whether they agree. The 8-bit formats are checked exhaustively by the
checker itself (``rounding-lemma-exhaustive``).

**Why split.** The direct statement (fl(x op y) from the format's own fp.add/fp.mul/fp.div/fp.sqrt
beside the exact result in a wide sort) makes the solver prove two different adders or
multipliers equivalent, or a divider/square root against a multiplier: at least one solver timed
out at 60 s on every lemma but sqrt in binary16 and bfloat16 (kept as ``direct`` for div and sqrt,
run by ``lemmas --direct``). W = (_ FloatingPoint eb+2 2p+5); K = p + 2; dx, dy = the biased exponent
fields of x, y with 0 read as 1 (the subnormals' scale), compared as (eb+1)-bit vectors.

- ``round`` (one per format; add, sub, mul): for every finite z in W with RN_F(z) finite,
  |RN_F(z) - z| <= u|z| + eta, where RN_F(z) = ((_ to_fp eb p) RNE z).
- add/sub ``far-x``: if dx > dy + K then fl(x op y) = x, and |x - (x op y)| <= u|x op y| + eta.
- add/sub ``far-y``: if dy > dx + K then fl(x op y) = +-y, and the same bound for +-y.
- add/sub ``close-exact``: otherwise (|dx - dy| <= K) x op y is a value of W (its RTN and RTP
  roundings in W are equal: p + K + 1 bits suffice).
- mul ``exact``: x*y is a value of W for all finite x, y (2p bits; W's range holds every product).
- ``interval`` (one per format; div): for every finite a >= 0 of F, the bound
  |a - m| <= u|m| + eta holds at both ends m of the interval of reals that round to a (the
  midpoints with a's neighbours, built exactly from a's encoding; see ``_interval_smtlib``).
- ``interval-normal`` (one per format; sqrt): the same with eta = 0 for a >= 2^emin, the interval
  cut at 2^emin.

Coverage. The add/sub cases are the trichotomy far-x / far-y / neither, stated as such, so every
finite pair falls in exactly one (far-x and far-y exclude each other as K >= 0; dy + K < 2^(eb+1)
does not wrap). In the close and mul cases fl(x op y) = RN_F(x op y) (the definition of fl, and
SMT-LIB's of fp.add/fp.mul) = RN_F(z) with z = x op y in W, so ``round`` instantiated at z gives
the bound: the one step outside the solvers is this instantiation.

Div and sqrt rest on a **meta-argument** (written here, not checked): fl(t) = RN_F(t) for the
exact t = x/y or sqrt x, and RN_F(t) = a (finite) puts t in [m-, m+], the interval between a's
midpoints with its neighbours (m+ = 2^emax(2 - 2^-p) for the largest finite a, where t < m+).
By the sign symmetry of RN and of the bound, take a >= 0. For a > 0, m- >= 0 and
g(t) = u t + eta - |a - t| is concave on [m-, m+], so g >= min(g(m-), g(m+)) >= 0 by
``interval``. For a = 0, [m-, m+] = [-eta, eta] and |0 - t| <= eta. So every real t, in
particular x/y, satisfies |RN_F(t) - t| <= u|t| + eta. For sqrt (eta = 0): t = sqrt x is 0 (exact)
or >= 2^emin (sqrt(2^(emin-p+1)) >= 2^emin in these formats), so a >= 2^emin and t lies in
[max(m-, 2^emin), m+], whose ends ``interval-normal`` checks with eta = 0; concavity as above.
(The fp.to_real/real-arithmetic form of the claims timed out in both solvers at 60 s.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from ..certificates.core import digest
from ..certificates.rounding import Format, enumerate_lemma, get_format, lemma_statement, round_fraction
from ..proofs.obligation import Obligation
from .bits import encode

FORMATS = ("binary16", "bfloat16", "binary32")
OPS = ("add", "sub", "mul", "div", "sqrt")
#: the obligations that together make each op's lemma (see the module docstring)
PARTS = {"add": ("far-x", "far-y", "close-exact", "round"), "sub": ("far-x", "far-y", "close-exact", "round"),
         "mul": ("exact", "round"), "div": ("interval",), "sqrt": ("interval-normal",)}
#: parts shared by every op that uses them: one obligation per format
SHARED = ("round", "interval", "interval-normal")
#: wide sort (exponent bits, significand bits) of the div and sqrt statements: r*y and r*r are exact
WIDE_MUL = {"binary16": (8, 24), "bfloat16": (11, 17), "binary32": (11, 49)}


def make_lemma_certificate(fmt: Format | str, mode: str, op: str) -> dict[str, Any]:
    """A ``rounding-lemma-exhaustive`` certificate for the rounding lemma of ``op`` in an 8-bit (or
    smaller) format (built here, replayed by the checker: ``certificates.rounding.check_lemma``)."""
    fmt = get_format(fmt)
    u, eta = fmt.unit_roundoff(mode), fmt.underflow_eta(mode)
    stmt = lemma_statement(fmt, mode, op, u, eta)
    cases, counterexample = enumerate_lemma(fmt, mode, op, u, eta)
    if counterexample is not None:
        raise ValueError(f"the {fmt.name} {op} lemma is false: {counterexample}")
    return {"kind": "rounding-lemma-exhaustive", "statement": stmt, "digest": digest(stmt), "cases": cases}


def wide(fmt: Format) -> tuple[int, int]:
    """W of the add/sub/mul parts: x op y exact when |dx - dy| <= K (p + K + 1 bits) and x*y (2p)."""
    return fmt.ebits + 2, 2 * fmt.precision + 5


def far_k(fmt: Format) -> int:
    return fmt.precision + 2


def _sort(fmt: Format) -> str:
    return f"(_ FloatingPoint {fmt.ebits} {fmt.precision})"


class _Wide:
    """SMT-LIB text for a wide sort (we, wp): the sort, conversions and exact constants."""

    def __init__(self, we: int, wp: int):
        self.we, self.wp = we, wp
        self.sort = f"(_ FloatingPoint {we} {wp})"
        self.fmt = Format(f"e{we}m{wp - 1}", we, wp - 1)

    def of(self, t: str) -> str:
        return f"((_ to_fp {self.we} {self.wp}) RNE {t})"

    def c(self, q: Fraction) -> str:  # an exact constant, as its bit fields
        v = round_fraction(q, self.fmt)
        assert v.value == q, "constant not exact in the wide sort"
        b, we, m = encode(v, self.fmt), self.we, self.wp - 1
        sign, e, frac = b >> (we + m), (b >> m) & ((1 << we) - 1), b & ((1 << m) - 1)
        return f"(fp (_ bv{sign} 1) (_ bv{e} {we}) (_ bv{frac} {m}))"


def _bound_defs(fmt: Format, W: _Wide, zlo: str, zhi: str, tag: str = "",
                eta: Fraction | None = None) -> list[str]:
    """``(bound<tag> r)``: |r - z| <= u|z| + eta for every real z in [zlo, zhi] (both values of
    W): the error is bounded above with RTP (r - zlo, zhi - r), |z| below by
    lz = max(zlo, -zhi, 0) (abs: a +0, never -0, so that its fields below exist), and u|z| below
    by lz with its exponent field lowered by p (exact: 2^-p times a normal value of W; 0 when that
    would leave W's normal range). eta: F's by default."""
    u, p, we, wp = fmt.unit_roundoff("rne"), fmt.precision, W.we, W.wp
    eta = fmt.underflow_eta("rne") if eta is None else eta
    assert u == Fraction(1, 2 ** p)
    lz, e, m, al, wr = f"lz{tag}", f"lz{tag}_e", f"lz{tag}_m", f"allow{tag}", W.of("r")
    return [f"(define-fun {lz} () {W.sort} "
            f"(fp.abs (fp.max (fp.max {zlo} (fp.neg {zhi})) (_ +zero {we} {wp}))))",
            f"(declare-const {e} (_ BitVec {we}))",
            f"(declare-const {m} (_ BitVec {wp - 1}))",
            f"(assert (= (fp #b0 {e} {m}) {lz}))",  # the fields of lz, which is never NaN
            f"(define-fun {al} () {W.sort} (fp.add RTN (ite (bvugt {e} (_ bv{p} {we})) "
            f"(fp #b0 (bvsub {e} (_ bv{p} {we})) {m}) (_ +zero {we} {wp})) {W.c(eta)}))",
            f"(define-fun bound{tag} ((r {_sort(fmt)})) Bool (and (fp.leq (fp.sub RTP {wr} {zlo}) {al}) "
            f"(fp.leq (fp.sub RTP {zhi} {wr}) {al})))"]


def _interval_smtlib(fmt: Format, W: _Wide, normal: bool = False) -> list[str]:
    """For every finite a >= 0 of F, the bound holds for r = a at both ends of the interval of
    reals that round to a: the midpoints with its neighbours. In F' (p + 1 bits) the encoding
    E1 of a finite magnitude E of F (E followed by a 0 bit) is the same value and E1 + 1 (E
    followed by a 1 bit) the midpoint of E and E + 1 (one ulp of F' above, which is half an ulp
    of F, across binade boundaries too; for the largest finite E + 1 is the overflow boundary
    2^(emax+1)). Below a: the same for E - 1, and -eta below a = 0. ``normal``: eta = 0 and
    a >= 2^emin, the interval cut at 2^emin (for a = 2^emin its lower end is a itself)."""
    eb, p, n = fmt.ebits, fmt.precision, fmt.ebits + fmt.precision - 1

    def mid(bits: str) -> str:  # bits followed by a 1 bit, as a value of F' and then of W (exact)
        return W.of(f"((_ to_fp {eb} {p + 1}) (concat #b0 {bits} #b1))")

    e, bottom = f"((_ extract {n - 1} {p - 1}) a_bits)", f"(_ bv{1 << (p - 1)} {n})"  # 2^emin
    eta = Fraction(0) if normal else None
    lo = (f"(ite (= a_bits {bottom}) {W.of('a')} {mid(f'(bvsub a_bits (_ bv1 {n}))')})" if normal else
          f"(ite (= a_bits (_ bv0 {n})) (fp.neg {mid(f'(_ bv0 {n})')}) {mid(f'(bvsub a_bits (_ bv1 {n}))')})")
    return [f"(declare-const a_bits (_ BitVec {n}))",
            f"(assert (not (= {e} #b{'1' * eb})))",  # finite
            *([f"(assert (not (= {e} (_ bv0 {eb}))))"] if normal else []),  # a >= 2^emin
            f"(define-fun a () {_sort(fmt)} ((_ to_fp {eb} {p}) (concat #b0 a_bits)))",
            f"(define-fun mhi () {W.sort} {mid('a_bits')})", f"(define-fun mlo () {W.sort} {lo})",
            *_bound_defs(fmt, W, "mhi", "mhi", "hi", eta), *_bound_defs(fmt, W, "mlo", "mlo", "lo", eta),
            "(assert (not (and (boundhi a) (boundlo a))))"]


def _operands(fmt: Format) -> list[str]:
    """x, y by their bit fields (finite), and dx, dy: the exponent fields with 0 read as 1."""
    eb, p = fmt.ebits, fmt.precision
    out = []
    for v in "xy":
        out += [f"(declare-const {v}_s (_ BitVec 1))", f"(declare-const {v}_e (_ BitVec {eb}))",
                f"(declare-const {v}_m (_ BitVec {p - 1}))",
                f"(define-fun {v} () {_sort(fmt)} (fp {v}_s {v}_e {v}_m))",
                f"(assert (not (= {v}_e #b{'1' * eb})))",  # finite
                f"(define-fun d{v} () (_ BitVec {eb + 1}) (ite (= {v}_e (_ bv0 {eb})) (_ bv1 {eb + 1}) "
                f"((_ zero_extend 1) {v}_e)))"]
    return out


def case_conditions(fmt: Format) -> dict[str, str]:
    """The add/sub cases as SMT-LIB conditions on dx, dy; close is the negation of the other two."""
    k = f"(_ bv{far_k(fmt)} {fmt.ebits + 1})"
    far_x, far_y = f"(bvugt dx (bvadd dy {k}))", f"(bvugt dy (bvadd dx {k}))"
    return {"far-x": far_x, "far-y": far_y, "close-exact": f"(not (or {far_x} {far_y}))"}


def case_of(fmt: Format, xbits: int, ybits: int) -> list[str]:
    """The cases whose condition holds for two encodings (the Python reading of case_conditions)."""
    def d(b: int) -> int:
        return max((b >> fmt.mbits) & ((1 << fmt.ebits) - 1), 1)

    dx, dy, k = d(xbits), d(ybits), far_k(fmt)
    far_x, far_y = dx > dy + k, dy > dx + k
    return [c for c, h in (("far-x", far_x), ("far-y", far_y), ("close-exact", not (far_x or far_y))) if h]


def part_smtlib(fmt_name: str, op: str, part: str) -> str:
    """One part of the add/sub/mul lemma, or a shared part (``round``, ``interval``,
    ``interval-normal``; op ignored)."""
    fmt = get_format(fmt_name)
    W = _Wide(*wide(fmt))
    head = ["(set-logic QF_BVFP)", f"; rounding lemma part: {fmt.name} {op} {part}, nearest even",
            f"; wide sort {W.sort}"]
    if part in ("interval", "interval-normal"):
        return "\n".join(head + _interval_smtlib(fmt, W, part == "interval-normal") + ["(check-sat)"]) + "\n"
    if part == "round":
        lines = [f"(declare-const z {W.sort})", "(assert (not (or (fp.isNaN z) (fp.isInfinite z))))",
                 *_bound_defs(fmt, W, "z", "z"),
                 f"(define-fun r () {_sort(fmt)} ((_ to_fp {fmt.ebits} {fmt.precision}) RNE z))",
                 "(assert (not (fp.isInfinite r)))", "(assert (not (bound r)))"]
        return "\n".join(head + lines + ["(check-sat)"]) + "\n"
    fop = {"add": "fp.add", "sub": "fp.sub", "mul": "fp.mul"}[op]
    lines = _operands(fmt)
    zlo, zhi = f"({fop} RTN {W.of('x')} {W.of('y')})", f"({fop} RTP {W.of('x')} {W.of('y')})"
    if part in ("exact", "close-exact"):
        if part == "close-exact":
            lines.append(f"(assert {case_conditions(fmt)['close-exact']})")
        lines.append(f"(assert (not (fp.eq {zlo} {zhi})))")
    elif part in ("far-x", "far-y"):
        big = "x" if part == "far-x" else ("y" if op == "add" else "(fp.neg y)")
        lines += [f"(assert {case_conditions(fmt)[part]})",
                  f"(define-fun r () {_sort(fmt)} ({fop} RNE x y))", "(assert (not (fp.isInfinite r)))",
                  f"(define-fun zlo () {W.sort} {zlo})", f"(define-fun zhi () {W.sort} {zhi})",
                  *_bound_defs(fmt, W, "zlo", "zhi"), f"(assert (not (and (= r {big}) (bound {big}))))"]
    else:
        raise ValueError(f"{op} has no part {part!r}")
    return "\n".join(head + lines + ["(check-sat)"]) + "\n"


def smtlib(fmt_name: str, op: str) -> str:
    """The undivided lemma for div and sqrt in QF_FP. r*y and r*r are formed in W = WIDE_MUL where
    they are exact, the error side rounded up (RTP) and the allowance rounded down (RTN)."""
    fmt = get_format(fmt_name)
    u, eta = fmt.unit_roundoff("rne"), fmt.underflow_eta("rne")
    s, W = _sort(fmt), _Wide(*WIDE_MUL[fmt_name])
    w, c = W.of, W.c
    lines = [
        "(set-logic QF_FP)",
        f"; rounding lemma: {fmt.name} {op}, round to nearest even; u = {u}, eta = {eta}",
        f"; wide sort {W.sort}: exact for the quantities formed in it",
        f"(declare-const x {s})",
        f"(declare-const y {s})",
        "(assert (not (or (fp.isNaN x) (fp.isInfinite x) (fp.isNaN y) (fp.isInfinite y))))",
    ]
    if op == "div":
        lines += [f"(define-fun r () {s} (fp.div RNE x y))",
                  "(assert (not (fp.isZero y)))",
                  "(assert (not (fp.isInfinite r)))",
                  f"(define-fun ry () {W.sort} (fp.mul RNE {w('r')} {w('y')}))",  # exact in W
                  f"(define-fun d () {W.sort} (fp.abs (fp.sub RTP ry {w('x')})))",
                  f"(define-fun allow () {W.sort} (fp.add RTN (fp.mul RTN {c(u)} (fp.abs {w('x')})) "
                  f"(fp.mul RTN {c(eta)} (fp.abs {w('y')}))))"]
        claim = "(fp.leq d allow)"
    elif op == "sqrt":
        lines += [f"(define-fun r () {s} (fp.sqrt RNE x))",
                  f"(assert (fp.geq x (_ +zero {fmt.ebits} {fmt.precision})))",
                  f"(define-fun rr () {W.sort} (fp.mul RNE {w('r')} {w('r')}))",  # exact in W
                  f"(define-fun lo () {W.sort} (fp.mul RTP {c((1 - u) ** 2)} {w('x')}))",
                  f"(define-fun hi () {W.sort} (fp.mul RTN {c((1 + u) ** 2)} {w('x')}))"]
        claim = "(and (fp.leq lo rr) (fp.leq rr hi))"
    else:
        raise ValueError(op)
    lines += [f"(assert (not {claim}))", "(check-sat)"]
    return "\n".join(lines) + "\n"


def _statement(fmt: Format, op: str) -> str:
    u, eta = fmt.unit_roundoff("rne"), fmt.underflow_eta("rne")
    what = ("|fl(sqrt x) - sqrt x| <= u sqrt x" if op == "sqrt"
            else f"|fl(x {op} y) - (x {op} y)| <= u|x {op} y| + eta")
    return f"{fmt.name}, RNE: {what}, u = {u}, eta = {eta}"


_PART_TEXT = {
    "round": "for all finite z in the wide sort W with RN(z) finite: |RN(z) - z| <= u|z| + eta",
    "far-x": "if dx > dy + p + 2: fl(x {op} y) = x and |x - (x {op} y)| <= u|x {op} y| + eta",
    "far-y": "if dy > dx + p + 2: fl(x {op} y) = {sy}y and |{sy}y - (x {op} y)| <= u|x {op} y| + eta",
    "close-exact": "if |dx - dy| <= p + 2: x {op} y is a value of the wide sort W (exact)",
    "exact": "x {op} y is a value of the wide sort W (exact)",
    "interval": "for every finite a >= 0: |a - m| <= u|m| + eta at both midpoints m with a's neighbours",
    "interval-normal": "for every finite a >= 2^emin: |a - m| <= u|m| at both ends m of the reals >= 2^emin "
                       "that round to a",
}


def obligation(fmt_name: str, op: str, part: str = "direct") -> Obligation:
    """One obligation: a part of op's lemma (the shared parts have op ''), or ``direct``: the
    undivided statement of div or sqrt (kept for comparison; ``lemmas --direct``)."""
    fmt = get_format(fmt_name)
    u, eta = fmt.unit_roundoff("rne"), fmt.underflow_eta("rne")
    data = {"format": fmt.to_dict(), "mode": "rne", "op": op, "u": str(u), "eta": str(eta), "part": part}
    if part == "direct":
        if op not in ("div", "sqrt"):
            raise ValueError(f"{op} is split into parts {PARTS[op]}")
        return Obligation(kind="rounding", subject=f"format:{fmt.name}:{op}",
                          name=f"floats.rounding.{fmt.name}.{op}", smtlib=smtlib(fmt_name, op),
                          statement=_statement(fmt, op), data=data,
                          assumptions=("finite operands; the rounded result does not overflow",))
    if part in SHARED:
        op = data["op"] = ""
    elif op not in PARTS or part not in PARTS[op]:
        raise ValueError(f"{op} has no part {part!r}")
    data["wide"] = list(wide(fmt))
    text = _PART_TEXT[part].format(op={"add": "+", "sub": "-", "mul": "*"}.get(op, op),
                                   sy="-" if op == "sub" else "")
    tag = f"{op}.{part}" if op else part
    return Obligation(kind="rounding", subject=f"format:{fmt.name}:{tag.replace('.', ':')}",
                      name=f"floats.rounding.{fmt.name}.{tag}", smtlib=part_smtlib(fmt_name, op, part),
                      statement=f"{fmt.name}, RNE, u = {u}, eta = {eta}: {text}", data=data,
                      assumptions=("finite operands; the rounded result does not overflow",))


def lemma_parts(fmt_name: str, op: str) -> list[Obligation]:
    """The obligations that together prove op's lemma in the format."""
    return [obligation(fmt_name, "" if p in SHARED else op, p) for p in PARTS[op]]


def lemma_obligations() -> Iterator[Obligation]:
    """Every distinct obligation (the shared parts once per format). Not a ``proofs`` source on
    purpose: they are bit-blasted by ``python -m torchlean.floats lemmas`` (solver-trusted), not
    replayed by ``python -m torchlean.proofs check``, whose artifacts would otherwise depend on
    whether this module happened to be imported."""
    for f in FORMATS:
        seen: set[str] = set()
        for op in OPS:
            for ob in lemma_parts(f, op):
                if ob.name not in seen:
                    seen.add(ob.name)
                    yield ob


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


def lemma_status(fmt_name: str, op: str, records: dict[str, dict[str, Any]]) -> str:
    """The status of op's lemma from the discharge records of its parts (by obligation name)."""
    recs = [records.get(ob.name) for ob in lemma_parts(fmt_name, op)]
    if any(r is None for r in recs):
        return "open (parts not run)"
    if any(r["status"] == "REFUTED" for r in recs if r):
        return "REFUTED (a part)"
    if all(r["status"].startswith("solver-trusted") for r in recs if r):
        if op in ("div", "sqrt"):
            return "solver-trusted (both unsat) + meta-argument (RN interval, concavity)"
        return "solver-trusted (both unsat, all parts)"
    return "open (not every part proved by both)"
