"""Discharge, artifacts and the CLI: wrong rules refused, edited rules stale, both solvers."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import torchlean  # noqa: F401
from torchlean.proofs.artifacts import LIBRARY_DIR, check_one
from torchlean.proofs.autograd import Case, rule_obligations
from torchlean.proofs.cli import collect, main
from torchlean.proofs.discharge import discharge
from torchlean.runtime.rules import RULES
from torchlean.spec.primitives import PRIMITIVES

ROOT = Path(__file__).resolve().parents[1]
KNOWN_REFUTED: set[str] = set()


def _tanh_obligations(vjp):
    """tanh's obligations with a given VJP (a test-only rule, never registered in RULES)."""
    return [ob for ob in rule_obligations("tanh", RULES["tanh"].forward, vjp, PRIMITIVES["tanh"].sympy,
                                          Case(((1,),)), subject="primitive:tanh")
            if ob.kind == "autograd"]


def _wrong_tanh_vjp(xp, g, out, x):
    return (g * (1 - x),)  # deliberately wrong: tanh' = 1 - x


@pytest.mark.solver
def test_wrong_vjp_is_refused_with_a_counterexample(tmp_path, capsys):
    reports = discharge(_tanh_obligations(_wrong_tanh_vjp), tmp_path, solver="z3", progress=False)
    (r,) = reports
    assert r.status == "refuted"
    assert "counterexample: " in r.message and "x0_0 = " in r.message and "rule = " in r.message
    assert not list(tmp_path.glob("*.json"))  # nothing is written for a refuted claim


@pytest.mark.solver
def test_edited_rule_makes_the_artifact_stale(tmp_path):
    (good,) = _tanh_obligations(RULES["tanh"].vjp)
    (r,) = discharge([good], tmp_path, solver="cvc5", progress=False)
    assert r.status == "proved"
    assert check_one(tmp_path, good).status == "checked"

    def edited(xp, g, out, x):  # same derivative, written differently: the obligation changes
        return (g - g * out * out,)

    (changed,) = _tanh_obligations(edited)
    o = check_one(tmp_path, changed)
    assert o.status == "stale" and "primitive:tanh changed" in o.detail and "+" in o.detail
    # a tampered artifact file is rejected, a broken one is malformed, a missing one is missing
    path = tmp_path / "autograd.tanh.json"
    art = json.loads(path.read_text())
    art["certificate"]["tree"] = {"leaf": "farkas", "coeffs": []}  # 0 >= 0 contradicts nothing
    path.write_text(json.dumps(art))
    assert check_one(tmp_path, good).status == "rejected"
    art["certificate"]["tree"], art["result"] = {"leaf": "false"}, "unknown"
    path.write_text(json.dumps(art))
    assert check_one(tmp_path, good).status == "rejected"
    path.write_text("{not json")
    assert check_one(tmp_path, good).status == "malformed"
    path.unlink()
    assert check_one(tmp_path, good).status == "missing"


def test_committed_artifacts_replay():
    outcomes = [check_one(LIBRARY_DIR, ob) for ob in collect(library=True)]
    bad = [(o.name, o.status, o.detail) for o in outcomes
           if o.status not in ("checked", "trusted") and o.name not in KNOWN_REFUTED]
    assert not bad
    assert sum(o.status == "checked" for o in outcomes) >= 90


def test_cli_errors_are_one_line_exit_2(capsys):
    assert main(["discharge", "--solver", "yices"]) == 2
    assert main(["check", "--module", "no.such.module"]) == 2
    assert main(["check", "no-such-obligation"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith(("usage:", "python -m", "error:", "  ")) or "error" in line for line in err)


def test_check_prints_one_summary_line(tmp_path, capsys):
    rc = main(["check", "--dir", str(tmp_path), "autograd.relu"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 1 and out[-1] == "1 obligations, 0 checked, 0 solver-trusted, 1 failed (1 shape-generic)"


@pytest.mark.solver
def test_emitted_smt2_runs_unchanged_in_both_solvers(tmp_path):
    import cvc5
    import z3

    assert main(["emit", "-o", str(tmp_path), "autograd.relu", "forward.softmax", "ibp.log"]) == 0
    for f in sorted(tmp_path.glob("*.smt2")):
        text = f.read_text()
        z = z3.Solver()
        z.from_string(text)  # parses
        s = cvc5.Solver()
        sm = cvc5.SymbolManager(s.getTermManager())
        p = cvc5.InputParser(s, sm)
        p.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, f.name)
        while not (cmd := p.nextCommand()).isNull():
            if "check-sat" not in str(cmd):
                cmd.invoke(s, sm)


@pytest.mark.solver
@pytest.mark.slow
@pytest.mark.parametrize("solver", ["z3", "cvc5"])
def test_both_solvers_discharge_every_primitive_obligation(tmp_path, solver):
    obs = [ob for ob in collect() if ob.name not in KNOWN_REFUTED]
    reports = discharge(obs, tmp_path, solver=solver, jobs=2, timeout=20, progress=False)
    assert [(r.name, r.status, r.message) for r in reports if r.status not in ("proved", "trusted")] == []


@pytest.mark.solver
def test_verified_model_backward_pass(tmp_path):
    from torchlean import nn
    from torchlean.proofs.verified import _model_obligations

    def build():
        return nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))

    (ob,) = _model_obligations("tiny", build, (1, 2))
    (r,) = discharge([ob], tmp_path, solver="z3", timeout=5, progress=False)
    assert r.status == "proved", r.message  # the certificate is replayed whatever z3 answers
    assert check_one(tmp_path, ob).status == "checked"


def test_verified_model_misuse_is_refused_where_it_is_written():
    """A bad input_shape or a PyTorch module failed only at discharge, deep in the tracer."""
    from torchlean import nn
    from torchlean.proofs.obligation import SOURCES
    from torchlean.proofs.verified import verified

    def build():
        return nn.Sequential(nn.Linear(2, 1))

    before = set(SOURCES)
    for shape in (2, (1, 0), (1, 2.5)):
        with pytest.raises(TypeError, match="input_shape must be a tuple of positive sizes"):
            verified(build, name="misuse", input_shape=shape)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="from_torch"):
        verified(torch.nn.Linear(2, 1), name="misuse", input_shape=(1, 2))
    assert set(SOURCES) == before  # nothing half-registered


def test_verified_primitive_registers_obligations():
    from torchlean.proofs.obligation import SOURCES
    from torchlean.proofs.verified import verified

    def square_meaning(x):
        return np.asarray(x * x, dtype=object)

    @verified(name="test_square", meaning=square_meaning, shapes=[(2,)])
    def square(xp, x):
        return x * x

    square.vjp_rule = lambda xp, g, out, x: (2 * x * g,)
    try:
        names = [ob.name for ob in SOURCES["verified.primitive.test_square"]()]
        assert names == ["forward.test_square", "autograd.test_square"]
    finally:
        SOURCES.pop("verified.primitive.test_square")


def test_pytest_option_runs_the_check():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--torchlean-check",
                        "-k", "relu", str(ROOT / "tests" / "test_symbolic_backend.py")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "autograd.relu" in r.stdout or r.returncode == 0, r.stdout[-2000:]


def test_modules_named_on_the_command_line_are_scanned(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_ops.py").write_text(
        "import numpy as np\n"
        "from torchlean.proofs import verified\n"
        "def cube_meaning(x):\n"
        "    return np.asarray(x * x * x, dtype=object)\n"
        "def cube_vjp(xp, g, out, x):\n"
        "    return (3 * g * x * x,)\n"
        "@verified(name='my_cube', meaning=cube_meaning, vjp=cube_vjp, shapes=[(2,)])\n"
        "def cube(xp, x):\n"
        "    return x * x * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from torchlean.proofs.obligation import SOURCES

    try:
        assert main(["show", "--module", "my_ops", "--dir", str(tmp_path), "autograd.my_cube"]) == 0
        assert "missing   autograd.my_cube" in capsys.readouterr().out
    finally:
        SOURCES.pop("verified.primitive.my_cube", None)
        sys.modules.pop("my_ops", None)


def test_timeout_is_hard_per_obligation(tmp_path, monkeypatch):
    """--timeout bounds the certificate search and the solver together: a search that never
    returns is killed at the hard limit, nothing is written, the report says timeout."""
    import time

    from torchlean.proofs import prove
    from torchlean.proofs.discharge import hard_limit

    monkeypatch.setattr(prove, "certificate_tree", lambda *a, **k: time.sleep(600))
    (ob,) = _tanh_obligations(RULES["tanh"].vjp)
    t = time.perf_counter()
    (r,) = discharge([ob], tmp_path, solver="z3", timeout=1.0, progress=False)
    took = time.perf_counter() - t
    assert r.status == "timeout" and hard_limit(1.0) <= took < hard_limit(1.0) + 5, (r, took)
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.solver
def test_discharge_skips_what_is_up_to_date(tmp_path, capsys):
    args = ["discharge", "--dir", str(tmp_path), "--solver", "z3", "--timeout", "10", "-q", "autograd.relu"]
    assert main(args) == 0 and "1 proved" in capsys.readouterr().out
    assert main(args) == 0 and "1 obligations up to date (skipped" in capsys.readouterr().out
    assert main([*args, "--force"]) == 0 and "1 proved" in capsys.readouterr().out
