"""A project's own primitive in a ``@verified`` model, end to end in a scratch project
(``[tool.torchlean] modules``): without a proof case ``proofs check`` / ``discharge`` /
``pytest --torchlean-check`` stop with one line naming it (bad input, never a pass); with
``@tl.verified(meaning=..., vjp=...)`` on its kernel it is discharged into the project's own
artifacts and checked. And a tree-less artifact naming a solver ``check`` cannot re-run is
re-proved by ``discharge`` (it used to count as up to date, rejected until deleted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SPEC = '''\
import numpy as np
import torchlean as tl
from torchlean.runtime.rules import rule
from torchlean.runtime.tensor import apply
from torchlean.spec.primitives import primitive


@primitive("cube", "elementwise", 1, lambda s: s)
def cube_spec(m, x):
    return np.vectorize(lambda v: v * v * v, otypes=[object])(x)


def cube_vjp(xp, g, out, x):
    return (3 * g * x * x,)


class Cube(tl.nn.Module):
    def forward(self, x):
        return apply("cube", x)


@tl.verified(input_shape=(1, 2))
def cube_mlp():
    return tl.nn.Sequential(tl.nn.Linear(2, 2), Cube())
'''

#: the rule registered with no proof case (the old code: KeyError, "internal error", exit 3)
BARE = SPEC + '''
def cube_kernel(xp, x):
    return x * x * x


rule("cube")(cube_kernel).vjp(cube_vjp)
'''

#: the documented way: ``@tl.verified`` on the kernel the rule registers
PROVED = SPEC + '''
@tl.verified(name="cube", meaning=lambda x: x * x * x, vjp=cube_vjp, shapes=[(2,)])
def cube_kernel(xp, x):
    return x * x * x


rule("cube")(cube_kernel).vjp(cube_vjp)
'''

#: a proof case about another function than the one registered: proves nothing of the rule
ELSEWHERE = SPEC + '''
@tl.verified(name="cube", meaning=lambda x: x * x * x, vjp=cube_vjp, shapes=[(2,)])
def cube_kernel(xp, x):
    return x * x * x


rule("cube")(lambda xp, x: x * x * x).vjp(cube_vjp)
'''


def _project(tmp_path: Path, models: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.torchlean]\nproofs = "proofs"\nmodules = ["mypkg.models"]\n')
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "models.py").write_text(models)
    return tmp_path


def _run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(project)]),
           "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("command", ["check", "discharge"])
def test_a_rule_without_proof_case_is_one_line_of_bad_input(tmp_path, command):
    project = _project(tmp_path, BARE)
    extra = ["--solver", "z3", "--timeout", "10", "-q"] if command == "discharge" else []
    r = _run(project, "-m", "torchlean.proofs", command, *extra)
    assert r.returncode == 2, (r.returncode, r.stdout[-1000:], r.stderr[-1000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "'cube'" in lines[0] and "@tl.verified(meaning=" in lines[0], lines
    assert "internal error" not in r.stderr and "checked" not in r.stdout and "proved" not in r.stdout
    assert not (project / "proofs").exists()  # nothing written for an input refused


def test_pytest_check_refuses_it_too(tmp_path):
    project = _project(tmp_path, BARE)
    (project / "test_nothing.py").write_text("def test_ok():\n    pass\n")
    r = _run(project, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--torchlean-check")
    out = r.stdout + r.stderr
    assert r.returncode == pytest.ExitCode.USAGE_ERROR, (r.returncode, out[-2000:])
    assert "custom primitive 'cube' has no proof case" in out and "INTERNALERROR" not in out, out[-2000:]


def test_a_proof_case_about_another_function_is_refused(tmp_path):
    r = _run(_project(tmp_path, ELSEWHERE), "-m", "torchlean.proofs", "check")
    assert r.returncode == 2 and "is not the forward registered" in r.stderr, (r.returncode, r.stderr)


def test_a_proof_case_under_another_name_says_which_name(tmp_path):
    r = _run(_project(tmp_path, PROVED.replace('name="cube", ', '')), "-m", "torchlean.proofs", "check")
    assert r.returncode == 2 and "pass name='cube'" in r.stderr, (r.returncode, r.stderr)


@pytest.mark.solver
def test_verified_kernel_is_discharged_into_the_project_and_checked(tmp_path):
    project = _project(tmp_path, PROVED)
    r = _run(project, "-m", "torchlean.proofs", "discharge", "--solver", "z3", "--timeout", "30", "-q")
    assert r.returncode == 0, (r.stdout[-1000:], r.stderr[-1000:])
    made = {p.name for p in (project / "proofs").glob("*.json")}
    # the primitive's own claims (its @verified source) and the model's node claims, in the project
    assert {"forward.cube.json", "autograd.cube.json", "model.cube_mlp.json"} <= made, made
    r = _run(project, "-m", "torchlean.proofs", "check")
    assert r.returncode == 0 and " 0 failed" in r.stdout, (r.stdout[-1000:], r.stderr[-1000:])
    # a wrong VJP on the registered rule is not a pass
    (project / "mypkg" / "models.py").write_text(PROVED.replace("(3 * g * x * x,)", "(2 * g * x * x,)"))
    r = _run(project, "-m", "torchlean.proofs", "check")
    assert r.returncode == 1 and "autograd.cube" in r.stdout, (r.stdout[-1000:], r.stderr[-1000:])


@pytest.mark.solver
def test_discharge_reproves_an_artifact_naming_an_unknown_solver(tmp_path, capsys):
    import torchlean  # noqa: F401
    from torchlean.proofs.artifacts import check_one, path_for, up_to_date
    from torchlean.proofs.autograd import primitive_obligations
    from torchlean.proofs.cli import main

    (ob,) = [o for o in primitive_obligations("relu") if o.kind == "autograd"]
    args = ["discharge", "--dir", str(tmp_path), "--solver", "z3", "--timeout", "10", "-q", "autograd.relu"]
    assert main(args) == 0
    p = path_for(tmp_path, ob)
    art = json.loads(p.read_text())
    art["certificate"].pop("tree")
    art["solver"]["name"] = "vampire"
    p.write_text(json.dumps(art))
    o = check_one(tmp_path, ob)
    assert o.status == "rejected" and "discharge autograd.relu" in o.detail, o
    assert not up_to_date(tmp_path, ob)
    capsys.readouterr()
    assert main(args) == 0 and "1 proved" in capsys.readouterr().out
    assert check_one(tmp_path, ob).status == "checked"
