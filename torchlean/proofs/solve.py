"""Running cvc5 and z3 on obligation scripts (through their Python APIs, proofs on).

``solve(text, solver, timeout)`` returns a ``SolverRun``: status ``unsat`` (the claim holds),
``sat`` (it does not: the model is returned), ``unknown``, ``timeout`` or ``error``. Only ``unsat``
can ever count as proved, and even then the claim is *checked* only if the trusted checker
replays a certificate; otherwise it is solver-trusted.
"""

from __future__ import annotations

import base64
import re
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

SOLVERS = ("cvc5", "z3")


@dataclass
class SolverRun:
    solver: str
    version: str
    status: str  # unsat | sat | unknown | timeout | error
    seconds: float
    options: dict[str, str] = field(default_factory=dict)
    #: compressed solver proof text (cvc5 Alethe, else CPC; z3's proof term)
    proof: str = ""
    proof_format: str = ""
    #: proof rule name -> number of uses, for the solver-trusted record
    rules: dict[str, int] = field(default_factory=dict)
    #: for sat: constant name -> exact value
    model: dict[str, str] = field(default_factory=dict)
    message: str = ""


def pack(text: str) -> str:
    return base64.b64encode(zlib.compress(text.encode(), 9)).decode()


def unpack(blob: str) -> str:
    return zlib.decompress(base64.b64decode(blob)).decode()


def _cvc5(text: str, timeout: float, proofs: bool) -> SolverRun:
    import cvc5

    s = cvc5.Solver()
    options = {"produce-proofs": "true" if proofs else "false", "produce-models": "true",
               "tlimit-per": str(int(timeout * 1000)), "seed": "0"}  # (the seed: reproducible runs)
    for k, v in options.items():
        s.setOption(k, v)
    version = s.getVersion() if hasattr(s, "getVersion") else "cvc5"
    sm = cvc5.SymbolManager(s.getTermManager())
    parser = cvc5.InputParser(s, sm)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, "obligation")
    t0 = time.perf_counter()
    answer = ""
    while True:
        cmd = parser.nextCommand()
        if cmd.isNull():
            break
        answer += cmd.invoke(s, sm) or ""
    seconds = time.perf_counter() - t0
    status = answer.strip().splitlines()[-1] if answer.strip() else "unknown"
    run = SolverRun("cvc5", str(version), status if status in ("sat", "unsat") else "unknown",
                    seconds, options, message=answer.strip())
    if run.status == "unknown" and seconds >= timeout * 0.95:
        run.status = "timeout"
    if run.status == "unsat" and proofs:
        pf = s.getProof()
        for fmt in ("ALETHE", "CPC", "DEFAULT"):
            try:
                txt = s.proofToString(pf[0], getattr(cvc5.ProofFormat, fmt))
            except RuntimeError:
                continue
            txt = txt.decode() if isinstance(txt, bytes) else txt
            run.proof, run.proof_format = pack(txt), f"cvc5-{fmt.lower()}"
            run.rules = dict(Counter(re.findall(r":rule ([A-Za-z_0-9-]+)", txt)) or {"proof": 1})
            break
    if run.status == "sat":
        run.model = _cvc5_model(s, sm)
    return run


def _cvc5_model(s: Any, sm: Any) -> dict[str, str]:
    out = {}
    for term in sm.getDeclaredTerms():
        if term.getSort().isReal():
            try:
                v = s.getValue(term)
                out[str(term)] = str(Fraction(v.getRealValue()))
            except Exception:  # noqa: BLE001 - a value the API cannot give is just left out
                continue
    return out


def _z3(text: str, timeout: float, proofs: bool) -> SolverRun:
    import z3

    # a context of its own: proof production must be on when the context is created
    ctx = z3.Context(proof=proofs)
    s = z3.Solver(ctx=ctx)
    options = {"proof": str(proofs).lower(), "timeout": str(int(timeout * 1000)), "random_seed": "0"}
    s.set("timeout", int(timeout * 1000))
    s.set("random_seed", 0)  # (z3's default, fixed: reproducible runs)
    s.from_string(text)
    t0 = time.perf_counter()
    res = s.check()
    seconds = time.perf_counter() - t0
    status = "unsat" if res == z3.unsat else "sat" if res == z3.sat else "unknown"
    run = SolverRun("z3", z3.get_version_string(), status, seconds, options)
    if status == "unknown":
        run.message = s.reason_unknown()
        run.status = "timeout" if "timeout" in run.message or "canceled" in run.message else "unknown"
    if status == "unsat" and proofs:
        try:
            pr = s.proof()
            run.proof, run.proof_format = pack(str(pr)), "z3-proof-term"
            run.rules = _z3_rules(pr)
        except z3.Z3Exception as e:  # the answer stands; only the proof text is missing
            run.rules, run.message = {"unsat": 1}, f"no proof: {e}"
    if status == "sat":
        m = s.model()
        for d in m.decls():
            if d.arity() == 0:
                v = m[d]
                if z3.is_rational_value(v):
                    run.model[d.name()] = str(Fraction(v.numerator_as_long(), v.denominator_as_long()))
                elif z3.is_algebraic_value(v):
                    run.model[d.name()] = v.approx(20).as_decimal(20).rstrip("?")
    return run


def _z3_rules(pr: Any) -> dict[str, int]:
    seen: set[int] = set()
    rules: Counter[str] = Counter()
    stack = [pr]
    while stack and len(seen) < 200000:
        p = stack.pop()
        if p.get_id() in seen:
            continue
        seen.add(p.get_id())
        if p.decl().kind() != 0 and p.sort().name() == "Proof":
            rules[p.decl().name()] += 1
        stack.extend(c for c in p.children() if c.sort().name() == "Proof")
    return dict(rules) or {"proof": 1}


def solve(text: str, solver: str = "cvc5", timeout: float = 60.0, proofs: bool = True) -> SolverRun:
    """Run one solver on one script; never raises (a crash is status 'error')."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {', '.join(SOLVERS)}")
    t0 = time.perf_counter()
    try:
        return (_cvc5 if solver == "cvc5" else _z3)(text, timeout, proofs)
    except Exception as e:  # noqa: BLE001 - a solver failure is a result, not a crash of ours
        return SolverRun(solver, "", "error", time.perf_counter() - t0, message=f"{type(e).__name__}: {e}")
