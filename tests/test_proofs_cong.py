"""The refutation checker's congruence leaf and its antisymmetry rule (forward.softplus and
forward.log_softmax checked without a solver): acceptance, rejection where the arguments are not
shown equal, tampered library trees rejected, and ``proofs check`` with cvc5 and z3 unimportable."""

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_proofs_checker import _mutations

from torchlean.certificates import check
from torchlean.certificates.poly import literal
from torchlean.certificates.refute import Leaf
from torchlean.certificates.sexpr import parse_one, read_script
from torchlean.proofs.artifacts import LIBRARY_DIR
from torchlean.proofs.cli import collect

ROOT = Path(__file__).resolve().parents[1]
LOG_SOFTPLUS = ("forward.softplus", "forward.log_softmax")


def _stmt(dom: str, goal: str) -> str:
    return ("(declare-fun x () Real)(declare-fun y () Real)(declare-fun tl_log (Real) Real)"
            "(declare-fun tl_exp (Real) Real)(declare-fun f2 (Real Real) Real)"
            f"(assert (! {dom} :named dom_0))(assert (! (not {goal}) :named goal))(check-sat)")


LOG = ["(tl_log (* x y))", "(tl_log 1)"]
CONG = {"leaf": "cong", "fact": 1, "apps": LOG, "ideal": [[0, "1"]]}  # x*y - 1 = 1 * (fact 0)


def _ok(dom: str, goal: str, tree: dict) -> bool:
    return check({"kind": "refutation", "statement": _stmt(dom, goal), "tree": tree}).ok


def test_cong_closes_equal_arguments_and_only_those():
    """x*y = 1 gives log(x*y) = log(1) (any nonzero multiple of the difference); with x*y = 2, no
    ideal steps, another function, a binary function or a fact that is not f(a) - f(b), rejected
    (each of those statements is satisfiable but the last three's claims: x*y = 2, x = y = 1)."""
    dom, goal = "(= (* x y) 1)", "(= (tl_log (* x y)) (tl_log 1))"
    assert _ok(dom, goal, CONG)
    assert _ok(dom, "(= (* 2 (tl_log 1)) (* 2 (tl_log (* x y))))", CONG)  # scaled, sides swapped
    assert not _ok("(= (* x y) 2)", goal, CONG)  # arguments not equal
    assert not _ok(dom, goal, {**CONG, "ideal": []})  # not shown equal
    assert not _ok(dom, goal, {**CONG, "ideal": [[0, "2"]]})
    assert not _ok(dom, goal, {**CONG, "fact": 0})  # an equality, not the disequality
    other = "(= (tl_log (* x y)) (tl_exp 1))"  # log(1) = 0, exp(1) != 0
    assert not _ok(dom, other, {**CONG, "apps": ["(tl_log (* x y))", "(tl_exp 1)"]})
    binary = "(= (f2 (* x y) x) (f2 1 y))"  # equal first arguments only
    assert not _ok(dom, binary, {**CONG, "apps": ["(f2 (* x y) x)", "(f2 1 y)"]})
    shifted = "(= (+ 1 (tl_log (* x y))) (tl_log 1))"
    assert not _ok(dom, shifted, CONG)
    for apps in ([LOG[0]], [*LOG, LOG[0]], ["x", "y"], "(tl_log 1)", [LOG[0], "(- 1)"]):
        assert not _ok(dom, goal, {**CONG, "apps": apps})


@pytest.mark.parametrize("path,equal", [
    ([("(>= x 0)", True), ("(<= x 0)", True)], True),
    ([("(>= x 0)", True), ("(> x 0)", False)], True),
    ([("(< x 0)", False), ("(> x 0)", False)], True),
    ([("(>= (* 2 x) 0)", True), ("(<= (* 3 x) 0)", True)], True),
    ([("(>= x y)", True), ("(>= y x)", True)], None),  # x - y = 0, not x = 0
    ([("(>= x 0)", True)], None),
    ([("(>= x 0)", True), ("(< x 0)", False)], None),  # both say x >= 0
    ([("(>= x 0)", True), ("(<= x 1)", True)], None),
    ([("(> x 0)", True)], False),
])
def test_two_opposite_inequalities_decide_an_equality(path, equal):
    """p >= 0 and p <= 0 on the path decide p = 0 (``Leaf._implied``); one of them alone does not."""
    script = read_script(_stmt("(> 1 0)", "(= x x)"))
    norm = Leaf(script, [], collect=False).norm
    decisions = [(parse_one(t), literal(parse_one(t), norm), v) for t, v in path]
    assert Leaf(script, decisions, collect=False).decide(parse_one("(= x 0)")) is equal


def _library(name: str) -> dict:
    ob = collect(None, [name])[0]
    art = json.loads((LIBRARY_DIR / f"{name}.json").read_text())
    assert art["obligation"]["hash"] == ob.hash
    return {"kind": "refutation", "statement": ob.smtlib, "tree": art["certificate"]["tree"]}


@pytest.mark.parametrize("name", LOG_SOFTPLUS)
def test_library_trees_replay_and_every_tamper_is_rejected(name):
    """Up to 3 tampers of each kind (log_softmax's tree has ~380, 0.3 s of replay each)."""
    cert = _library(name)
    assert check(cert).ok
    rng, kinds = random.Random(0), {}
    by_kind: dict[str, list] = {}
    for kind, m in _mutations(cert, rng):
        by_kind.setdefault(kind, []).append(m)
    for kind, ms in by_kind.items():
        for m in rng.sample(ms, min(3, len(ms))):
            assert not check(m).ok, f"{name}: tamper '{kind}' accepted"
            kinds[kind] = kinds.get(kind, 0) + 1
    assert {"cong fact", "cong argument", "cong step", "dropped case", "leaf kind"} <= set(kinds), kinds


NO_SOLVERS = ("import sys; sys.modules['cvc5'] = sys.modules['z3'] = None\n"  # import fails, find_spec None
              "from torchlean.proofs.cli import main; sys.exit(main(sys.argv[1:]))")


def _check_without_solvers(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", NO_SOLVERS, "check", "--include-library", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_proofs_check_needs_no_solver_for_softplus_and_log_softmax(tmp_path):
    """The user-visible point: with cvc5 and z3 unimportable both artifacts are checked; the same
    artifact without its tree is then rejected (nothing to re-run), so the solvers were really gone."""
    run = _check_without_solvers(*LOG_SOFTPLUS)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 obligations, 2 checked, 0 solver-trusted, 0 failed" in run.stdout
    art = json.loads((LIBRARY_DIR / "forward.softplus.json").read_text())
    art["certificate"]["tree"] = None
    (tmp_path / "forward.softplus.json").write_text(json.dumps(art))
    shutil.copy(LIBRARY_DIR / "forward.log_softmax.json", tmp_path)
    run = _check_without_solvers("--dir", str(tmp_path), *LOG_SOFTPLUS)
    assert run.returncode == 1
    assert "no SMT solver installed" in run.stdout and "1 checked, 0 solver-trusted, 1 failed" in run.stdout
