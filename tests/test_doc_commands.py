"""Every concrete command the documentation shows, run as written (session 34): the examples at the
end of each ``--help`` and the ``python -m torchlean...`` lines of README.md and docs/*.md, in a
fresh scratch folder that holds only ``tests/`` and ``torchlean/`` (the repository paths the
examples name). A command that stops running, a file it names that no longer exists, or an output
that no longer says what the README says it prints fails here; test_docs_walkthrough.py only
parses them.

The quick ones run in-process, each in its own scratch folder (a command that reads another's
output, ``verify check cert.json``, first runs the documented command that writes it); the long
ones (training runs with ``--certify``, the proof library's replay, FPBench) are marked slow and
run in a child process."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_errors import CLIS
from test_docs_walkthrough import _doc_commands

ROOT = Path(__file__).resolve().parents[1]

#: names the docs use for the reader's own files: never run, never looked for
PLACEHOLDERS = {"NET.onnx", "PROP.vnnlib", "FILE", "instances.csv", "mypkg.models"}
#: flags whose value is a file or folder the command writes
OUTPUT_FLAGS = {"--cert", "--log", "-o", "--out", "--plot", "--save", "--samples", "--result"}
#: command prefixes that take more than a few seconds (measured 2026-12-07 on the shared 2-core
#: machine): run by test_slow_documented_command_runs only
SLOW = (
    "python -m torchlean demo", "python -m torchlean cnn", "python -m torchlean resnet",
    "python -m torchlean lstm", "python -m torchlean gru", "python -m torchlean ppo",
    "python -m torchlean pinn", "python -m torchlean autoencoder", "python -m torchlean vae",
    "python -m torchlean transformer", "python -m torchlean fno",
    "python -m torchlean.proofs check", "python -m torchlean.proofs discharge",
    "python -m torchlean.proofs show --include-library", "python -m torchlean.floats fpcore",
    "python -m torchlean.floats lemmas", "python -m torchlean.verify run",
)


def _help_examples() -> list[str]:
    """The examples at the end of every (sub)command's ``--help``."""
    import contextlib
    import io

    found = []
    for module, (main, subs) in CLIS.items():
        for sub in subs:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                try:
                    main(([sub] if sub else []) + ["--help"])
                except SystemExit:
                    pass
            text = buf.getvalue().split("\nexamples:\n", 1)[-1]
            found += [ln.strip() for ln in text.splitlines() if ln.strip().startswith("python -m ")]
    return found


def _readme_prints() -> dict[str, str]:
    """README code-block commands annotated ``# prints: TEXT``: what stdout's first line says."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "README.md").read_text())
    return {re.sub(r"\s+", " ", c).strip(): p.strip()
            for c, p in re.findall(r"^\s*(python -m torchlean[^\n#]*)#\s*prints:\s*([^\n]*)", text, re.M)}


def _all_commands() -> list[str]:
    out: list[str] = []
    for c in _help_examples() + _doc_commands():
        if c not in out:
            out.append(c)
    return out


COMMANDS = _all_commands()


def _outputs(words: list[str]) -> set[str]:
    return {words[i + 1] for i, w in enumerate(words[:-1]) if w in OUTPUT_FLAGS}


#: documented commands this test never runs, and why
NOT_RUN = {
    "python -m torchlean.proofs discharge --include-library --force matmul":
        "rewrites the artifacts shipped inside the package (torchlean/proofs/library)",
}


def _file_words(words: list[str]) -> list[str]:
    """The words of a command that name input files: not flags, not an output flag's value."""
    outs = _outputs(words)
    return [w for w in words[3:] if not w.startswith("-") and w not in outs
            and re.search(r"\.(onnx|vnnlib|json|csv|fpcore|npz)$", w)]


def _placeholder(command: str) -> bool:
    return command in NOT_RUN or any(w in PLACEHOLDERS for w in shlex.split(command))


def _slow(command: str) -> bool:
    return command.startswith(SLOW)


FAST = [c for c in COMMANDS if not _placeholder(c) and not _slow(c)]
LONG = [c for c in COMMANDS if not _placeholder(c) and _slow(c)]


def _producer(name: str) -> str | None:
    """The documented command that writes ``name`` (the quickest, a non-slow one first)."""
    makers = [c for c in COMMANDS if name in _outputs(shlex.split(c)) and not _placeholder(c)]
    makers.sort(key=_slow)
    return makers[0] if makers else None


def _scratch(tmp: Path) -> Path:
    """A fresh folder as a reader has it after a checkout: the repository's data and sources
    reachable under their documented relative paths, nothing else (no pyproject.toml, no
    artifacts of an earlier run)."""
    for name in ("tests", "torchlean"):
        (tmp / name).symlink_to(ROOT / name, target_is_directory=True)
    return tmp


def _make_graph_json(path: Path) -> None:
    """``net.json`` as ``floats bound --help`` says to make it: bridge.save_graph(tl.trace(model, x))."""
    import torchlean as tl
    from torchlean import nn
    from torchlean.bridge import save_graph

    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1))
    save_graph(tl.trace(model, tl.zeros(1, 1)), str(path))


def _run_in_process(command: str, capsys) -> tuple[int, str, str]:
    words = shlex.split(command)
    main = CLIS[words[2]][0]
    try:
        rc = main(words[3:])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def _prepare(command: str, where: Path, capsys, seen: tuple[str, ...] = ()) -> None:
    """Make the input files ``command`` names that a documented command writes, by running it."""
    for w in _file_words(shlex.split(command)):
        if (where / w).exists():
            continue
        if w == "net.json":
            _make_graph_json(where / w)
            continue
        maker = _producer(w)
        assert maker is not None and maker not in seen, \
            f"{command}: {w} is neither in the repository nor written by a documented command"
        _prepare(maker, where, capsys, (*seen, command))
        rc, _, err = _run_in_process(maker, capsys)
        assert rc == 0, f"{maker} (run to make {w}): status {rc}\n{err}"


def test_the_commands_are_found_and_sorted():
    """The collection is real: the docs' commands and every help's examples, each either run here
    (quick), run by the slow test, or a reader's placeholder."""
    assert len(COMMANDS) >= 40, COMMANDS
    assert len(FAST) >= 15 and len(LONG) >= 10, (FAST, LONG)
    for c in COMMANDS:
        assert c in FAST or c in LONG or _placeholder(c)


def _id(command: str) -> str:
    return command.removeprefix("python -m ").replace("tests/data/vnncomp2021/", "")


@pytest.mark.parametrize("command", FAST, ids=_id)
def test_documented_command_runs_as_written(command, tmp_path, monkeypatch, capsys):
    where = _scratch(tmp_path)
    monkeypatch.chdir(where)
    _prepare(command, where, capsys)
    rc, out, err = _run_in_process(command, capsys)
    assert rc == 0, f"{command}: status {rc}\n{err}"
    assert "Traceback" not in err and "error:" not in err, err
    for w in _outputs(shlex.split(command)):
        assert (where / w).exists(), f"{command} did not write {w}"
    printed = _readme_prints().get(command)
    if printed is not None:  # the README says what it prints
        assert out.splitlines()[0] == printed, out


def _child(command: str, where: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=where, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("command", LONG, ids=_id)
def test_slow_documented_command_runs(command, tmp_path, capsys):
    """The long documented commands (minutes each; ``pytest -m slow``), in a child process as a
    reader runs them. ``demo``'s output is the README's sample, timings aside."""
    where = _scratch(tmp_path)
    if command.startswith(("python -m torchlean.proofs", "python -m torchlean.verify run")):
        pytest.importorskip("cvc5")
    for w in _file_words(shlex.split(command)):  # (inputs written by a quick documented command)
        if not (where / w).exists():
            maker = _producer(w)
            assert maker is not None, f"{command}: {w} is not in the repository"
            r = _child(maker, where, 600)
            assert r.returncode == 0, (maker, r.stderr)
    r = _child(command, where, 1800)
    assert r.returncode == 0, f"{command}: status {r.returncode}\n{r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr, r.stderr
    if command.startswith("python -m torchlean demo"):
        readme = (ROOT / "README.md").read_text()
        sample = re.search(r"```\n(\[1/3\].*?)```", readme, re.S).group(1).splitlines()
        got = r.stdout.splitlines()
        assert got[0] == sample[0], (got[0], sample[0])  # the training is deterministic
        eps = re.search(r"ε = (\S+) ", sample[-2]).group(1)
        assert f"ε = {eps} " in got[-2] and got[-1].startswith("all claims checked")
