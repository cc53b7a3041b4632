"""Issue 20, S3: solver trust comes from a solver run the check reproduces, never from the artifact.

The forgery from the issue: relu's VJP broken to ``2*g`` (discharge refutes it), and an artifact
carrying the new obligation's hash, ``"tree": null`` and ``"trusted": ["cvc5:resolution"]``. The
default ``python -m torchlean.proofs check`` (and ``pytest --torchlean-check``) used to pass it as
solver-trusted; now the named solver is re-run on the obligation derived from the code and says sat.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import torchlean  # noqa: F401
from torchlean.proofs import artifacts
from torchlean.proofs.artifacts import check_one, reproduce
from torchlean.proofs.cli import collect, main
from torchlean.proofs.obligation import Obligation
from torchlean.proofs.pytest_plugin import ProofItem
from torchlean.runtime.rules import RULES

ROOT = Path(__file__).resolve().parents[1]
_RELU = {"relu": RULES["relu"]}  # the real rule, restored after a test that patches it in place
pytestmark = pytest.mark.solver


def _forge(directory: Path, ob: Obligation, solver: str = "cvc5") -> Path:
    """The issue's forged artifact for ``ob``: its hash and text, no tree, trust declared."""
    art = json.loads((artifacts.LIBRARY_DIR / "autograd.relu.json").read_text())
    art["obligation"].update(name=ob.name, hash=ob.hash, smtlib=ob.smtlib)
    art["solver"]["name"] = solver
    art["result"] = "unsat"
    art["certificate"] = {"kind": "refutation", "tree": None, "trusted": [f"{solver}:resolution"]}
    path = directory / f"{ob.name}.json"
    path.write_text(json.dumps(art))
    return path


@pytest.fixture
def broken_relu(monkeypatch):
    """relu's VJP as ``2*g`` where x > 0 (wrong: the derivative there is 1), in this process."""
    def vjp(xp, g, out, x):
        return (xp.where(xp.greater(x, 0), 2 * g, 0 * g),)

    (good,) = collect(None, ["autograd.relu"])
    monkeypatch.setitem(RULES, "relu", dataclasses.replace(RULES["relu"], vjp=vjp))
    (ob,) = collect(None, ["autograd.relu"])
    assert ob.hash != good.hash  # the obligation really is derived from the patched rule
    return ob


def test_forged_solver_trust_fails_the_default_check(tmp_path, broken_relu, capsys):
    _forge(tmp_path, broken_relu)
    o = check_one(tmp_path, broken_relu)
    assert o.status == "rejected" and "says sat" in o.detail and o.trusted is None
    rc = main(["check", "--dir", str(tmp_path), "autograd.relu"])
    out = capsys.readouterr().out.strip().splitlines()
    # (a replaced relu's claim at shape (1,) is no longer counted as every shape's: audit29)
    assert rc == 1 and out[-1] == "1 obligations, 0 checked, 0 solver-trusted, 1 failed (0 shape-generic)"
    assert out[0].startswith("rejected autograd.relu: no certificate tree and cvc5")


def test_forged_solver_trust_fails_the_pytest_plugin(tmp_path, broken_relu):
    _forge(tmp_path, broken_relu, solver="z3")
    for strict in (False, True):
        item = SimpleNamespace(directory=tmp_path, obligation=broken_relu, strict=strict)
        with pytest.raises(AssertionError, match="rejected: no certificate tree and z3"):
            ProofItem.runtest(item)


def test_trust_needs_a_solver_the_check_can_run(tmp_path, broken_relu):
    path = _forge(tmp_path, broken_relu)
    for name in ("cvc5:resolution", "trusted", None, ["z3"]):
        art = json.loads(path.read_text())
        art["solver"]["name"] = name
        path.write_text(json.dumps(art))
        o = check_one(tmp_path, broken_relu)
        assert o.status == "rejected" and "no solver to re-run" in o.detail


def test_true_claim_without_tree_is_solver_trusted_after_rerun(tmp_path):
    """The legitimate case: the real relu rule, its artifact stripped of the tree. Both solvers
    reproduce unsat; the labels come from the re-run, not from the file's list."""
    (ob,) = collect(None, ["autograd.relu"])
    for solver in ("cvc5", "z3"):
        _forge(tmp_path, ob, solver)
        o = check_one(tmp_path, ob)
        assert o.status == "trusted", o.detail
        assert o.trusted and all(k.startswith(f"{solver}:") for k in o.trusted)
        assert f"{solver} re-run: unsat" in o.detail
    rc = main(["check", "--dir", str(tmp_path), "--strict", "autograd.relu"])
    assert rc == 1  # --strict still fails on solver-trusted


def test_a_missing_solver_is_replaced_by_the_other_or_rejected(tmp_path, monkeypatch):
    """The claim is reproduced by whichever solver is installed; with none, it is not trusted."""
    import importlib.util

    (ob,) = collect(None, ["autograd.relu"])
    _forge(tmp_path, ob, "cvc5")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "cvc5" else real(n, *a))
    o = check_one(tmp_path, ob)
    assert o.status == "trusted" and "z3 re-run: unsat" in o.detail, o.detail
    gone = ("cvc5", "z3")
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in gone else real(n, *a))
    o = check_one(tmp_path, ob)
    assert o.status == "rejected" and "no SMT solver installed" in o.detail


def test_a_synthetic_false_claim_and_a_timeout_are_rejected(tmp_path, monkeypatch):
    false = Obligation("autograd", "test:false", "test.false",
                       "(set-logic QF_NRA)\n(declare-const x Real)\n"
                       "(assert (! (not (= (* x x) (* 2 x))) :named goal))\n(check-sat)\n")
    _forge(tmp_path, false, "z3")
    o = check_one(tmp_path, false)
    assert o.status == "rejected" and "says sat" in o.detail
    # a solver that cannot finish in time is not trusted either (killed or timed out: one line)
    hard = Obligation("autograd", "test:hard", "test.hard",
                      "(set-logic QF_NIA)\n(declare-const x Int)\n(declare-const y Int)\n"
                      "(declare-const z Int)\n"
                      "(assert (and (> x 0) (> y 0) (> z 0) (= (+ (* x x x) (* y y y)) (* z z z))))\n"
                      "(check-sat)\n")
    o = reproduce(hard, "z3", timeout=0.5)
    assert o.status == "rejected" and "\n" not in o.detail, o.detail
    assert artifacts.RERUN_TIMEOUT > 0


def test_a_hanging_or_crashing_solver_is_not_trusted(monkeypatch):
    """The re-run is a child process: one that ignores its limit is killed, one that dies is
    reported; neither counts (``solve`` patched here is what the forked child calls)."""
    import time

    import torchlean.proofs.solve as solve_mod

    (ob,) = collect(None, ["autograd.relu"])
    monkeypatch.setattr(solve_mod, "solve", lambda *a, **k: time.sleep(60))
    t = time.perf_counter()
    o = reproduce(ob, "cvc5", timeout=0.5)
    assert o.status == "rejected" and "gave no answer within 1 s (killed)" in o.detail, o.detail
    assert time.perf_counter() - t < 10
    monkeypatch.setattr(solve_mod, "solve", lambda *a, **k: os._exit(3))
    o = reproduce(ob, "z3", timeout=5)
    assert o.status == "rejected" and "died without an answer (exit 3)" in o.detail, o.detail


def test_tree_less_artifacts_reproduce(tmp_path):
    """The last two solver-trusted library obligations (softplus's and log_softmax's forward
    claims) are checked since the refutation checker's ``cong`` leaf; without their trees they
    still pass the default check as solver-trusted, the solver re-run saying unsat again."""
    obs = collect(None, ["forward.softplus", "forward.log_softmax"])
    assert [check_one(artifacts.LIBRARY_DIR, ob).status for ob in obs] == ["checked", "checked"]
    for ob in obs:
        art = json.loads((artifacts.LIBRARY_DIR / f"{ob.name}.json").read_text())
        art["certificate"]["tree"] = None
        (tmp_path / f"{ob.name}.json").write_text(json.dumps(art))
    outs = [check_one(tmp_path, ob) for ob in obs]
    assert [o.status for o in outs] == ["trusted", "trusted"], [o.detail for o in outs]


def test_file_kind_is_not_used(tmp_path):
    """The artifact cannot pick another checker kind for an obligation."""
    (ob,) = collect(None, ["autograd.relu"])
    shutil.copy(artifacts.LIBRARY_DIR / "autograd.relu.json", tmp_path)
    assert check_one(tmp_path, ob).status == "checked"
    path = tmp_path / "autograd.relu.json"
    art = json.loads(path.read_text())
    art["certificate"]["kind"] = "errorbound"
    path.write_text(json.dumps(art))
    assert check_one(tmp_path, ob).status == "checked"  # replayed as a refutation all the same
    art["certificate"]["tree"] = {"leaf": "false"}
    path.write_text(json.dumps(art))
    assert check_one(tmp_path, ob).status == "rejected"


def test_pytest_plugin_end_to_end_refuses_the_forgery(tmp_path):
    """``pytest --torchlean-check`` in a project whose relu VJP is broken (by a module named in
    ``[tool.torchlean] modules``) and whose artifact for it is the issue's forgery."""
    shutil.copytree(artifacts.LIBRARY_DIR, tmp_path / "proofs")
    # the project replaces one of torchlean's rules: torchlean's own obligations are then checked
    # (without being asked), here against a copy of the shipped artifacts holding the forgery
    (tmp_path / "pyproject.toml").write_text(
        '[tool.torchlean]\nproofs = "user-proofs"\nlibrary-proofs = "proofs"\nmodules = ["break_relu"]\n')
    (tmp_path / "break_relu.py").write_text(
        "import dataclasses\nfrom torchlean.runtime.rules import RULES\n"
        "def vjp(xp, g, out, x):\n    return (xp.where(xp.greater(x, 0), 2 * g, 0 * g),)\n"
        "RULES['relu'] = dataclasses.replace(RULES['relu'], vjp=vjp)\n")
    # the plugin comes from the installed entry point; an installed copy older than it gets it here
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import break_relu  # noqa: F401  (the same patch, here, to derive the forged obligation)

        (ob,) = collect(["break_relu"], ["autograd.relu"])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("break_relu", None)
        RULES.update(_RELU)
    _forge(tmp_path / "proofs", ob)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--torchlean-check"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout[-2000:]
    assert "1 failed" in r.stdout and "autograd.relu" in r.stdout, r.stdout[-2000:]
    assert "rejected: no certificate tree and cvc5" in r.stdout, r.stdout[-2000:]
