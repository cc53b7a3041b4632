"""Progress on long work: a bar on a terminal, plain lines elsewhere when asked, nothing when not.

The lines are what a CI log shows for ``--progress``; the tests run with stderr captured (not a
terminal), which is exactly that case.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean.progress import bar

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}


def test_lines_off_a_terminal_when_enabled(capsys: pytest.CaptureFixture[str]) -> None:
    with bar(total=4, desc="jobs", unit="job", enabled=True, interval=0) as p:
        p.update(1)
        p.set_postfix(open=3)
        p.update(1)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("jobs: 1/4 job (25%)")
    assert err[1].startswith("jobs: 2/4 job (50%)") and err[1].endswith("open=3")
    assert err[-1].startswith("jobs: 2/4 job (50%)")  # the closing line: where it stopped
    assert len(err) == 3


def test_interval_limits_the_lines(capsys: pytest.CaptureFixture[str]) -> None:
    p = bar(total=None, desc="batches", unit="batch", enabled=True, interval=3600)
    for _ in range(100):
        p.update(1)
    p.close()
    p.close()  # a second close adds nothing
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("batches: 100 batch")


@pytest.mark.parametrize("enabled", [None, False])
def test_silent_off_a_terminal_by_default_or_when_disabled(capsys, enabled) -> None:
    with bar(total=2, desc="x", enabled=enabled, interval=0) as p:
        p.update(2)
    assert capsys.readouterr().err == ""


def test_trainer_reports_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    tl.manual_seed(0)
    model = tl.nn.Sequential(tl.nn.Linear(3, 4), tl.nn.ReLU(), tl.nn.Linear(4, 1))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    trainer = tl.Trainer(model, task="regression", lr=0.01)
    trainer.train((x, y), steps=6, batch_size=8, progress=True)
    assert "train: 6/6 step (100%)" in capsys.readouterr().err
    trainer.train((x, y), steps=3, batch_size=8)  # default: terminal only
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("flag, shown", [("--progress", True), ("--no-progress", False), (None, False)])
def test_mlp_command_progress_flag(flag: str | None, shown: bool) -> None:
    cmd = [sys.executable, "-m", "torchlean", "mlp", "--steps", "20"] + ([flag] if flag else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert ("train: 20/20 step (100%)" in out.stderr) == shown
    assert "test MSE" in out.stdout


def test_bad_progress_flag_is_one_line() -> None:
    out = subprocess.run([sys.executable, "-m", "torchlean", "mlp", "--progress=yes"], capture_output=True,
                         text=True, env=_env(), timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_watch_reports_a_dict_filled_elsewhere(capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from torchlean.progress import watch

    stats = {"boxes": 0}
    with watch(lambda: dict(stats), "search", enabled=True, interval=0.05):
        for k in range(1, 4):
            stats["boxes"] = k
            time.sleep(0.12)
    err = capsys.readouterr().err.splitlines()
    assert len(err) >= 2 and all(line.startswith("search: ") for line in err)
    assert err[-1].endswith("boxes=3")  # the closing line: the final counts
    with watch(lambda: dict(stats), "search", enabled=None, interval=0.05):  # off a terminal: nothing
        time.sleep(0.1)
    assert capsys.readouterr().err == ""


def test_graph_search_reports_progress_when_asked(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    """verify_target(progress=True) off a terminal: the search's boxes and leaves in the last line."""
    from fractions import Fraction

    from torchlean.verify import api, general, table

    monkeypatch.setattr("torchlean.progress.Progress.refresh", lambda self: None)  # only the last line
    tl.manual_seed(0)
    net = tl.nn.Sequential(tl.nn.Linear(2, 8), tl.nn.Tanh(), tl.nn.Linear(8, 2))
    x = np.array([[0.2, -0.1]], dtype=np.float32)
    label = int(net(tl.tensor(x)).numpy().argmax())
    t = table.target(tl.trace(net, tl.tensor(x)))
    lo, hi = api.input_box(x, 0.01)
    spec = api.robustness_spec(lo, hi, 2, label)
    res = general.verify_target(t, spec, timeout=30, progress=True)
    assert res.verdict == "unsat" and isinstance(lo[0], Fraction)
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("search: ") and "boxes=" in err[-1] and "leaves=" in err[-1]


def test_stage_is_one_line_off_a_terminal_unless_disabled(capsys: pytest.CaptureFixture[str]) -> None:
    from torchlean.progress import stage

    for enabled in (None, True):  # (stderr is captured here: not a terminal)
        stage("cnn: certifying", enabled)
        assert capsys.readouterr().err == "cnn: certifying\n"
    stage("cnn: certifying", False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("flag", [None, "--no-progress"])
def test_cnn_certify_names_each_long_step_before_it_starts(flag: str | None, tmp_path: Path) -> None:
    """``cnn --certify`` piped into a file said nothing for ~50 s (its bars show on a terminal
    only): now a line on stderr names each long step as it starts, before that step's result line
    (one stream, unbuffered, gives the order), and ``--no-progress`` silences them."""
    env = {**_env(), "PYTHONUNBUFFERED": "1", "TORCHLEAN_PROOF_BUDGET": "0.5",
           "TORCHLEAN_PROOF_CACHE": str(tmp_path / "proofs")}
    cmd = [sys.executable, "-m", "torchlean", "cnn", "--steps", "1", "--certify", "0.01", "--certify-n", "2",
           "--certify-timeout", "1"] + ([flag] if flag else [])
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stdout
    lines = out.stdout.splitlines()
    steps = [("cnn: certifying 2 test images at eps 0.01 (up to 1 s each)", "certified accuracy at eps 0.01"),
             ("cnn: bounding the float32 rounding error (budget 0.5 s)", "float32 rounding error of the cnn"),
             ("cnn: proving the @verified gradient of cnn (budget 0.5 s)", "@verified gradient proof of cnn")]
    results = [next(i for i, line in enumerate(lines) if line.startswith(done)) for _, done in steps]
    if flag:
        assert not any(line.startswith("cnn: ") for line in lines), out.stdout
        return
    starts = [lines.index(say) for say, _ in steps]
    assert starts[0] < results[0] < starts[1] < results[1] < starts[2] < results[2], out.stdout
    assert starts[0] > next(i for i, line in enumerate(lines) if line.startswith("test accuracy after"))
