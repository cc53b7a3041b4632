"""Past one machine: ``verify run --ray`` and ``proofs discharge --ray`` on a Ray instance the test
starts (``--ray local``): the same results CSV as a serial run (verdict columns, list order, the
published VNN-COMP verdicts), the same discharge reports and artifacts as local processes, a rerun
that skips finished instances, and one-line errors for a cluster that is not there."""

from __future__ import annotations

import csv
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

# (found, not imported: Ray's C++ runtime is loaded only in the child processes below, never in the
# test run's own process; see torchlean.pool and docs/known-issues.md)
pytestmark = pytest.mark.skipif(find_spec("ray") is None, reason="ray is not installed")

ACAS = Path(__file__).parent / "data" / "vnncomp2021" / "acasxu"
ROWS = [  # two unsat and one sat instance that take seconds each (VNN-COMP 2021 expected.csv)
    ("ACASXU_run2a_1_4_batch_2000.onnx", "prop_3.vnnlib"),
    ("ACASXU_run2a_1_4_batch_2000.onnx", "prop_2.vnnlib"),
    ("ACASXU_run2a_2_1_batch_2000.onnx", "prop_2.vnnlib"),
]
VERDICT_COLUMNS = ["onnx", "vnnlib", "timeout", "expected", "result", "check", "mode", "agree"]


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _run(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torchlean.verify", "run", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_verify_run_on_ray_matches_serial_and_resumes(tmp_path: Path) -> None:
    inst = tmp_path / "instances.csv"
    inst.write_text("".join(f"{ACAS / n},{ACAS / q},30\n" for n, q in ROWS))
    serial, on_ray = tmp_path / "serial.csv", tmp_path / "ray.csv"
    assert _run(inst, "--out", serial, "-q").returncode == 0
    r = _run(inst, "--out", on_ray, "-q", "-j", "2", "--ray", "local")
    assert r.returncode == 0, r.stderr
    a, b = _read(serial), _read(on_ray)

    def verdicts(table: list[dict[str, str]]) -> list[list[str]]:
        return [[row[k] for k in VERDICT_COLUMNS] for row in table]

    assert verdicts(a) == verdicts(b)
    published = {(row["onnx"], row["vnnlib"]): row["expected"] for row in _read(ACAS / "expected.csv")}
    got = [(Path(row["onnx"]).name, Path(row["vnnlib"]).name, row["result"]) for row in b]
    assert [(n, q) for n, q, _ in got] == ROWS  # the list's order
    assert all(published[(n, q)] == v for n, q, v in got), got
    r = _run(inst, "--out", on_ray, "--ray", "local")  # everything is there: nothing reruns
    assert r.returncode == 0 and "skipped 3 of 3" in r.stderr


#: run in a child interpreter: a Ray instance started in-process stays up until that process exits
#: (``torchlean.pool``), and the test run must not host one (its threads outlive ``shutdown``)
_DISCHARGE = """
import json, sys
from pathlib import Path
import numpy as np
import torchlean as tl
from torchlean import nn
from torchlean.proofs.artifacts import check_one
from torchlean.proofs.discharge import discharge
from torchlean.proofs.obligation import SOURCES
from torchlean.proofs.verified import verified

tmp = Path(sys.argv[1])
tl.manual_seed(0)
m = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1))
m(tl.tensor(np.ones((1, 2))))
verified(m, name="ray_small", input_shape=(1, 2))
obs = list(SOURCES["verified.model.ray_small"]())
local = discharge(obs, tmp / "local", solver="z3", timeout=30, progress=False)
remote = discharge(obs, tmp / "ray", solver="z3", timeout=30, progress=False, jobs=2, ray="local")
again = discharge(obs, tmp / "again", solver="z3", timeout=30, progress=False, jobs=2, ray="local")
print(json.dumps({"local": [[r.name, r.status] for r in local],
                  "remote": [[r.name, r.status] for r in remote],
                  "again": [[r.name, r.status] for r in again],
                  "checked": [check_one(tmp / "ray", ob).status for ob in obs]}))
"""


def test_discharge_on_ray_gives_the_local_reports(tmp_path: Path) -> None:
    """The same reports as local processes, artifacts the checker accepts; a second discharge in
    the same process reuses the Ray instance the first one started."""
    import json
    import os

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    p = subprocess.run([sys.executable, "-c", _DISCHARGE, str(tmp_path)], capture_output=True, text=True,
                       timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["remote"] == got["local"] == got["again"]
    assert all(status == "proved" for _, status in got["remote"]), got
    assert all(status == "checked" for status in got["checked"]), got


def test_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    inst = tmp_path / "instances.csv"
    inst.write_text(f"{ACAS / ROWS[0][0]},{ACAS / ROWS[0][1]},30\n")
    r = _run(inst, "--ray", "127.0.0.1:1", timeout=180)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot start Ray" in lines[0], r.stderr
