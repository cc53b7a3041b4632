"""Audit audit56: how proof artifacts are produced (``proofs discharge``, its local and Ray paths)
and stored, and whether ``proofs check`` and ``pytest --torchlean-check`` agree on them
(TRUST_BOUNDARIES.md, "Audit audit56").

Holes found (the tests marked "fails on the old code" below did):

- ``pytest --torchlean-check`` recorded torchlean's interval rules as "shipped" when
  ``proofs.cli`` was first imported, which under pytest is after the test modules (and the project
  modules they import) ran: an interval rule replaced there counted as torchlean's own, the shipped
  ``ibp.*`` artifacts were not checked, and pytest passed where ``proofs check`` failed;
- ``discharge --ray`` wrote, and reported "proved with a certificate", whatever a Ray worker sent
  back: a worker running another torchlean (started before an edit, another node's install) had its
  own checker accept a tree this process's checker rejects (``proofs check`` then rejected it);
- ``pytest --torchlean-check`` passed a solver-trusted claim as a plain PASSED (``proofs check``
  counts them apart).

Held (tests with real assertions): an artifact proved under another rule (a worker's
monkeypatched or older rule) is stale for the code now, never checked; a write killed mid-way
(disk full) leaves the old artifact; a truncated artifact is malformed; concurrent writers never
leave a file that reads as anything but one writer's whole artifact; a tree-less ``unsat`` is
solver-trusted, and rejected when the solver, re-run, disagrees.

References: exact evaluation (fractions) of relu against the interval bound; torch's relu
gradient; cvc5 re-run by ``check``.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib.util
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import torchlean  # noqa: F401
from torchlean._files import atomic_write, atomic_write_json
from torchlean.proofs import artifacts
from torchlean.proofs import discharge as dis
from torchlean.proofs.artifacts import check_one
from torchlean.proofs.cli import collect
from torchlean.runtime.rules import RULES

ROOT = Path(__file__).resolve().parents[1]
LIB = artifacts.LIBRARY_DIR

#: a project module replacing torchlean's relu interval rule with one whose upper bound is u/2
HALF_RELU = (
    "from torchlean.certificates import intervals\n"
    "def interval_relu(a, ops=intervals.EXACT):\n"
    "    return ops.max(a[0], 0), ops.max(a[1], 0) / 2\n"
    "intervals.interval_relu = interval_relu\n")


def _run(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(cwd)]), OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


# --- (5) pytest --torchlean-check and proofs check agree ----------------------------------------


def test_the_replaced_interval_rule_is_false():
    """The reference fact: the replacement's bound on relu over [0, 2] is 1, and relu(2) = 2."""
    from torchlean.certificates import intervals

    own = intervals.interval_relu
    try:
        exec(HALF_RELU, {})  # noqa: S102 - our own constant; it rebinds intervals.interval_relu
        lo, hi = intervals.interval_relu((Fraction(0), Fraction(2)))
        assert hi == 1 and max(Fraction(2), 0) > hi
    finally:
        intervals.interval_relu = own
    assert own((Fraction(0), Fraction(2)))[1] == 2


def test_a_replacement_before_the_cli_import_is_seen():
    """(fails on the old code) ``patched_rules`` in a process that replaced the rule before it
    first imported ``proofs.cli`` (as pytest does: test modules first)."""
    code = ("import torchlean.certificates.intervals\n" + HALF_RELU
            + "from torchlean.proofs.cli import patched_rules\nprint(patched_rules())\n")
    r = _run(ROOT, "-c", code, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "['intervals.interval_relu']", r.stdout


def test_pytest_and_check_agree_on_a_rule_replaced_by_an_imported_module(tmp_path):
    """(fails on the old code) A project whose module (named in ``[tool.torchlean] modules`` and
    imported by its tests) replaces relu's interval rule: both commands fail on ``ibp.relu``."""
    (tmp_path / "pyproject.toml").write_text('[tool.torchlean]\nproofs = "proofs"\nmodules = ["halfrelu"]\n')
    (tmp_path / "halfrelu.py").write_text(HALF_RELU)
    (tmp_path / "test_uses.py").write_text("import halfrelu  # noqa: F401\n\ndef test_x():\n    pass\n")
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    r = _run(tmp_path, "-m", "torchlean.proofs", "check")
    assert r.returncode == 1 and "stale ibp.relu" in r.stdout, r.stdout + r.stderr
    r = _run(tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--torchlean-check")
    assert r.returncode == 1, r.stdout[-2000:]
    assert "ibp.relu: stale" in r.stdout and "1 failed" in r.stdout, r.stdout[-2000:]


def test_pytest_shows_a_solver_trusted_claim(tmp_path):
    """(fails on the old code) A library whose relu autograd artifact has no tree: ``proofs check``
    counts it solver-trusted; pytest passes it and says so (it said nothing)."""
    shutil.copytree(LIB, tmp_path / "lib")
    p = tmp_path / "lib" / "autograd.relu.json"
    art = json.loads(p.read_text())
    art["certificate"]["tree"] = None
    p.write_text(json.dumps(art))
    (tmp_path / "pyproject.toml").write_text(
        '[tool.torchlean]\nproofs = "proofs"\nlibrary-proofs = "lib"\ninclude-library = true\n')
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    r = _run(tmp_path, "-m", "torchlean.proofs", "check", "autograd.relu", "forward.relu")
    assert r.returncode == 0 and "2 obligations, 1 checked, 1 solver-trusted, 0 failed" in r.stdout, \
        r.stdout + r.stderr
    r = _run(tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--torchlean-check")
    assert r.returncode == 0, r.stdout[-2000:]
    assert "solver-trusted autograd.relu" in r.stdout, r.stdout[-3000:]
    r = _run(tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--torchlean-check",
             "--torchlean-strict")
    assert r.returncode == 1 and "1 failed" in r.stdout, r.stdout[-2000:]


# --- (1) a worker running other code -------------------------------------------------------------


class _ForeignPool:
    """Stands for a Ray cluster whose workers send back ``answers[i]`` (artifacts they made)."""

    answers: list = []

    def __init__(self, jobs: int = 1, ray: str | None = None) -> None:
        pass

    def __enter__(self) -> _ForeignPool:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map_unordered(self, fn, calls):
        for i, _ in enumerate(calls):
            yield i, self.answers[i]


def _relu_autograd():
    (ob,) = collect(None, ["autograd.relu"])
    return ob, json.loads((LIB / "autograd.relu.json").read_text())


@pytest.mark.parametrize("forge", ["bogus tree", "other hash", "no certificate"])
def test_a_ray_workers_artifact_is_replayed_here(tmp_path, monkeypatch, forge):
    """(fails on the old code) What a worker of another torchlean sends is neither reported
    proved nor written unless it is about this obligation and its tree replays here."""
    import torchlean.pool

    ob, art = _relu_autograd()
    if forge == "bogus tree":
        art["certificate"]["tree"] = {"leaf": "false"}
    elif forge == "other hash":
        art["obligation"]["hash"] = "0" * 64
    else:
        del art["certificate"]
    _ForeignPool.answers = [art]
    monkeypatch.setattr(torchlean.pool, "Pool", _ForeignPool)
    (rep,) = dis.discharge([ob], tmp_path, ray="local", progress=False)
    assert rep.status == "error", rep
    assert not (tmp_path / f"{ob.name}.json").exists()


def test_a_ray_workers_good_artifact_is_kept(tmp_path, monkeypatch):
    """The same path keeps a genuine artifact: written, reported proved, checked."""
    import torchlean.pool

    ob, art = _relu_autograd()
    _ForeignPool.answers = [art]
    monkeypatch.setattr(torchlean.pool, "Pool", _ForeignPool)
    (rep,) = dis.discharge([ob], tmp_path, ray="local", progress=False)
    assert rep.status == "proved", rep
    assert check_one(tmp_path, ob).status == "checked"
    # a tree-less unsat stays what it is: solver-trusted, then re-run by check
    art["certificate"]["tree"] = None
    _ForeignPool.answers = [art]
    (rep,) = dis.discharge([ob], tmp_path, ray="local", progress=False)
    assert rep.status == "trusted", rep
    assert check_one(tmp_path, ob).status == "trusted"


def test_real_ray_worker_of_another_torchlean(tmp_path):
    """(fails on the old code) End to end on a local Ray instance whose workers import a copy of
    torchlean whose certificate search skips its self-check and sends a bogus tree."""
    if importlib.util.find_spec("ray") is None:  # (not imported here: only the child loads Ray)
        pytest.skip("ray is not installed")
    old = tmp_path / "old"
    shutil.copytree(ROOT / "torchlean", old / "torchlean",
                    ignore=shutil.ignore_patterns("__pycache__", "library"))
    p = old / "torchlean" / "proofs" / "discharge.py"
    src = p.read_text()
    cut = src.index("    if tree is not None and not replay(")
    end = src.index("    return tree, why[:500]")
    p.write_text(src[:cut] + '    tree = {"leaf": "false"}\n' + src[end:])
    drive = (f"import os, sys\nsys.path.insert(0, {str(ROOT)!r})\n"
             f"os.environ['PYTHONPATH'] = {str(old)!r}\n"
             "from torchlean.proofs.cli import main\n"
             f"print('exit', main(['discharge', '--include-library', '--dir', {str(tmp_path / 'd')!r}, "
             "'--ray', 'local', '--timeout', '20', '-q', 'autograd.abs']))\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    env.pop("PYTHONPATH", None)
    r = subprocess.run([sys.executable, "-c", drive], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert "0 proved with a certificate" in r.stdout and "exit 1" in r.stdout, r.stdout + r.stderr[-2000:]
    assert "does not replay here" in r.stdout, r.stdout
    assert not (tmp_path / "d" / "autograd.abs.json").exists()


def test_an_artifact_proved_under_another_rule_is_stale(tmp_path, monkeypatch):
    """A worker whose relu VJP is torchlean's (correct) wrote the artifact; the coordinator's is
    ``2*g`` (wrong: torch says 1 where x > 0). ``check`` never counts the artifact for it."""
    torch = pytest.importorskip("torch")
    ob_good, _ = _relu_autograd()
    shutil.copy(LIB / "autograd.relu.json", tmp_path)
    assert check_one(tmp_path, ob_good).status == "checked"

    def vjp(xp, g, out, x):
        return (xp.where(xp.greater(x, 0), 2 * g, 0 * g),)

    monkeypatch.setitem(RULES, "relu", dataclasses.replace(RULES["relu"], vjp=vjp))
    x = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)
    torch.relu(x).sum().backward()
    ours = vjp(np, np.ones(2), None, np.array([0.5, -1.0]))[0]
    assert not np.allclose(ours, x.grad.numpy())  # the coordinator's rule is wrong
    (ob_bad,) = collect(None, ["autograd.relu"])
    assert ob_bad.hash != ob_good.hash
    assert check_one(tmp_path, ob_bad).status == "stale"
    # and the good artifact relabelled with the bad hash is replayed against the bad statement
    art = json.loads((tmp_path / "autograd.relu.json").read_text())
    art["obligation"]["hash"] = ob_bad.hash
    (tmp_path / "autograd.relu.json").write_text(json.dumps(art))
    assert check_one(tmp_path, ob_bad).status == "rejected"


# --- (3) partial and concurrent writes -----------------------------------------------------------


def test_a_write_killed_midway_leaves_the_old_artifact(tmp_path):
    """Disk full half-way through: the old artifact stays, whole, and still checks; no temp."""
    ob, art = _relu_autograd()
    path = tmp_path / "autograd.relu.json"
    atomic_write_json(path, art)
    before = path.read_bytes()

    def half(fh):
        fh.write(before[: len(before) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, half)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["autograd.relu.json"]
    assert check_one(tmp_path, ob).status == "checked"


def test_a_truncated_artifact_is_malformed(tmp_path):
    ob, art = _relu_autograd()
    text = json.dumps(art, indent=1, sort_keys=True)
    for cut in (1, len(text) // 3, len(text) - 2):
        (tmp_path / "autograd.relu.json").write_text(text[:cut])
        assert check_one(tmp_path, ob).status == "malformed"


def _writer(path: str, payload: dict, n: int) -> None:
    for _ in range(n):
        atomic_write_json(path, payload)


def test_concurrent_writers_leave_one_whole_artifact(tmp_path):
    """Two processes rewrite one artifact (the real one, and one for another statement) while
    this one reads: every read is one writer's whole file, checked or stale, never anything else."""
    ob, art = _relu_autograd()
    other = json.loads(json.dumps(art))
    other["obligation"]["hash"] = "f" * 64
    path = tmp_path / "autograd.relu.json"
    atomic_write_json(path, art)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), a, 60)) for a in (art, other)]
    for p in procs:
        p.start()
    seen = set()
    while any(p.is_alive() for p in procs):
        seen.add(check_one(tmp_path, ob).status)
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert seen <= {"checked", "stale"}, seen
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --- (4) a solver's answer is never "checked" ----------------------------------------------------


def test_a_treeless_unsat_is_solver_trusted_or_rejected(tmp_path, monkeypatch):
    """No tree: solver-trusted on the true claim (cvc5 re-run), rejected on a false one however
    the file declares itself."""
    ob, art = _relu_autograd()
    art["certificate"] = {"kind": "refutation", "tree": None, "trusted": []}
    (tmp_path / "autograd.relu.json").write_text(json.dumps(art))
    o = check_one(tmp_path, ob)
    assert o.status == "trusted" and o.trusted, o

    def vjp(xp, g, out, x):
        return (xp.where(xp.greater(x, 0), 2 * g, 0 * g),)

    monkeypatch.setitem(RULES, "relu", dataclasses.replace(RULES["relu"], vjp=vjp))
    (bad,) = collect(None, ["autograd.relu"])
    art["obligation"]["hash"] = bad.hash
    art["solver"]["result"] = "unsat"
    (tmp_path / "autograd.relu.json").write_text(json.dumps(art))
    o = check_one(tmp_path, bad)
    assert o.status == "rejected" and "says sat" in o.detail, o
