"""Issue 17: proofs in a user's own CI, the way the README describes it.

A scratch downstream project (its own pyproject.toml with ``[tool.torchlean]`` and a module with
``@verified`` models: a small MLP, a CNN, a LayerNorm + Linear + GELU block and a
TransformerEncoderLayer(8, 2, 16), the issue's three targets) uses torchlean *installed* from this
checkout (a real ``pip install --target``, so the ``pytest11`` entry point and the shipped
artifacts are what a user gets): discharge writes only the project's artifacts, ``proofs check``
and ``pytest --torchlean-check`` pass, a second discharge skips what is up to date, and an edited
model fails as stale naming what changed.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.solver

MODEL = """\
from torchlean import nn
from torchlean.proofs import verified


@verified(input_shape=(1, 2), name="tiny")
def tiny():
    return nn.Sequential(nn.Linear(2, 2), nn.{act}(), nn.Linear(2, 1))


@verified(input_shape=(1, 1, 4, 4), name="cnn")
def cnn():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2))


@verified(input_shape=(1, 4), name="ln_block")
def ln_block():
    return nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 2), nn.GELU())


@verified(input_shape=(1, 2, 8), name="encoder")
def encoder():
    return nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """torchlean installed from this checkout into a folder of its own (no dependencies)."""
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (target / "torchlean" / "proofs" / "library" / "autograd.relu.json").exists()  # package data
    return target


def _run(proj: Path, site: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(proj)]), OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=proj, env=env, capture_output=True, text=True,
                          timeout=300)


def test_downstream_project_journey(tmp_path, site):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "downstream"\nversion = "0"\n\n'
        '[tool.torchlean]\nproofs = "proofs"\nmodules = ["mymodels"]\n')
    (proj / "mymodels.py").write_text(MODEL.format(act="ReLU"))
    (proj / "test_app.py").write_text("def test_app():\n    assert 1 + 1 == 2\n")
    r = _run(proj, site, "-c", "import torchlean; print(torchlean.__file__)")
    assert r.stdout.startswith(str(site)), r.stdout + r.stderr  # the installed copy, not the checkout

    r = _run(proj, site, "-m", "torchlean.proofs", "discharge", "--solver", "z3", "--timeout", "120", "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 solver-trusted, 0 refuted, 0 unknown/timeout/error" in r.stdout, r.stdout
    names = sorted(p.name for p in (proj / "proofs").iterdir() if p.name != ".gitignore")
    assert (proj / "proofs" / ".gitignore").read_text().strip().endswith(".*.tmp")  # temps never committed
    n = len(names)  # only the user's: the two models' claims and their node cases
    assert {"model.tiny.json", "model.cnn.json", "model.ln_block.json", "model.encoder.json"} <= set(names)
    assert n > 4, names
    # node cases (.n), class-generic VJPs (.g), claims decided on terms (.t, .e), by windows (.w) or
    # row by row (.r, resting on an element claim .el)
    assert all(x.startswith(("model.", "forward.", "autograd.")) and any(f".{c}" in x for c in "ngtewr")
               or x.startswith("model.") for x in names), names
    assert any(x.startswith("autograd.matmul.g") for x in names), names  # the class's generic proof
    assert not any(x == "autograd.relu.json" for x in names)  # the library's stay in the package

    r = _run(proj, site, "-m", "torchlean.proofs", "check", "--strict")
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1].startswith(
        f"{n} obligations, {n} checked, 0 solver-trusted, 0 failed"), r.stdout + r.stderr

    # the plugin comes from the entry point alone (no conftest.py in the project)
    r = _run(proj, site, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--torchlean-check")
    assert r.returncode == 0 and f"{n + 1} passed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]

    r = _run(proj, site, "-m", "torchlean.proofs", "discharge", "--solver", "z3", "--timeout", "30", "-q")
    assert r.returncode == 0 and f"{n} obligations up to date (skipped" in r.stdout, r.stdout + r.stderr

    # torchlean's own obligations (sigmoid: none of the models uses it) are checked from the package
    # only when asked
    r = _run(proj, site, "-m", "torchlean.proofs", "check", "forward.sigmoid")
    assert r.returncode == 2 and "--include-library" in r.stderr, r.stdout + r.stderr
    r = _run(proj, site, "-m", "torchlean.proofs", "check", "--include-library", "forward.sigmoid", "model.")
    assert r.returncode == 0 and "5 obligations, 5 checked" in r.stdout, r.stdout + r.stderr

    (proj / "mymodels.py").write_text(MODEL.format(act="Tanh"))  # the user edits the model
    r = _run(proj, site, "-m", "torchlean.proofs", "check")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "stale model.tiny: model:tiny changed since it was proved" in r.stdout, r.stdout
    assert "-v8 = relu(v7)" in r.stdout and "+v8 = tanh(v7)" in r.stdout, r.stdout  # what changed
    assert "missing autograd.tanh.n" in r.stdout, r.stdout  # the new node case is not proved yet
    r = _run(proj, site, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--torchlean-check")
    assert r.returncode == 1 and "3 failed" in r.stdout, r.stdout[-2000:]
    assert "model.tiny: stale: model:tiny changed" in r.stdout, r.stdout[-2000:]
