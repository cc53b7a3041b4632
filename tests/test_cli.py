"""``python -m torchlean``: the mlp and quickstart commands, and its error paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchlean.__main__ import main
from torchlean.runtime.backends import cuda_available

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_help_lists_the_commands():
    r = _run("-m", "torchlean", "--help")
    assert r.returncode == 0 and "mlp" in r.stdout and "quickstart" in r.stdout


def test_mlp_trains_and_reports(tmp_path):
    log = tmp_path / "out.json"
    r = _run("-m", "torchlean", "mlp", "--steps", "10", "--device", "cpu", "--dtype", "float32",
             "--backend", "eager", "--log", str(log))
    assert r.returncode == 0, r.stderr
    before = float(r.stdout.split("before: ")[1].split()[0])
    after = float(r.stdout.split("after 10 steps: ")[1].split()[0])
    assert after < before
    assert "held-out car" in r.stdout and "mpg" in r.stdout
    doc = json.loads(log.read_text())
    assert doc["steps"] == 10 and doc["config"]["backend"] == "eager"


@pytest.mark.parametrize(
    "argv",
    [
        ["bogus"],
        [],
        ["mlp", "--bad-flag"],
        ["mlp", "--steps", "ten"],
        ["mlp", "--steps", "-3"],
        ["mlp", "--lr", "0"],
        ["mlp", "--lr", "nan"],
        ["mlp", "--dtype", "float16"],
        ["mlp", "--backend", "jit"],
        ["quickstart", "nothing"],
        ["quickstart"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchlean") and "error" in lines[0]
    assert "Traceback" not in out.err and out.out == ""


def test_usage_error_in_a_subprocess_has_no_traceback():
    r = _run("-m", "torchlean", "mlp", "--steps", "many")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.skipif(cuda_available(), reason="this machine has a usable GPU")
def test_cuda_without_gpu_is_a_one_line_error():
    r = _run("-m", "torchlean", "mlp", "--steps", "1", "--device", "cuda")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cuda" in lines[0] and "Traceback" not in r.stderr


def test_unwritable_log_path_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["mlp", "--steps", "1", "--no-progress", "--log", str(blocker / "log.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("torchlean: error:")


@pytest.mark.parametrize("example", ["tensors", "autograd", "mlp"])
def test_quickstart_examples_run(example, capsys):
    assert main(["quickstart", example]) == 0
    assert capsys.readouterr().out


@pytest.mark.parametrize("example", ["tensors", "autograd", "mlp"])
def test_examples_directory_matches_the_packaged_examples(example):
    packaged = ROOT / "torchlean" / "zoo" / "quickstart" / f"{example}.py"
    assert (ROOT / "examples" / f"quickstart_{example}.py").read_text() == packaged.read_text()


def test_example_file_runs_as_a_script():
    r = _run(str(ROOT / "examples" / "quickstart_autograd.py"))
    assert r.returncode == 0 and "dy/dx" in r.stdout


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "warmup"])
def test_mlp_with_a_schedule_and_clipping(schedule, capsys):
    assert main(["mlp", "--steps", "20", "--scheduler", schedule, "--clip", "1.0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert float(out.split("after 20 steps: ")[1].split()[0]) < float(out.split("before: ")[1].split()[0])


@pytest.mark.parametrize("argv", [["--help"], ["mlp", "--help"], ["--version"]])
def test_help_and_version_return_zero(argv, capsys):
    assert main(argv) == 0
    assert capsys.readouterr().out
