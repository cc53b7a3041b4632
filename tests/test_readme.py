"""The README's claims that can be run, run: its two first commands name real entry points, and
the tour snippet executes as written."""

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_tour_snippet_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the snippet writes log.json
    code = re.search(r"## A tour\n\n```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md (tour)", "exec"), namespace)  # noqa: S102 - our own README
    assert (tmp_path / "log.json").exists()
    assert namespace["trained"].eval(namespace["data"])["loss"] < 0.1


def test_bounds_and_rounding_snippets_run_after_the_tour(tmp_path, monkeypatch):
    """A reader runs the README top to bottom: the 'Bounds and verdicts' and 'Rounding error'
    snippets continue the tour's session (they used an undefined ``box`` and ``real_lo``, and asked
    for label 3 of a one-output model)."""
    monkeypatch.chdir(tmp_path)
    sections = ("A tour", "Bounds and verdicts for any network", "Rounding error of any network")
    blocks = [re.search(rf"## {title}\n.*?```python\n(.*?)```", README, re.S).group(1) for title in sections]
    ns: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md (block {i})", "exec"), ns)  # noqa: S102 - our own README
    assert ns["r"].verdict in ("verified", "falsified") and ns["check"](ns["cert"]).ok
    assert (ns["lo"] <= ns["b"].lower).all() and (ns["hi"] >= ns["b"].upper).all()
    y = ns["model"](ns["tl"].tensor([[0.49, -1.01]])).numpy()  # a corner of the box: inside
    assert (ns["lo"] <= y).all() and (y <= ns["hi"]).all()


def test_first_two_commands_match_ci():
    blocks = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line for line in blocks.splitlines() if line and not line.startswith("#")]
    assert commands[0] == "pip install -e . && python -m torchlean demo"
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert f'bash -c "{commands[1]}"' in ci


def test_test_command_installs_the_cpu_torch_build_first():
    """A fresh venv must not resolve the ``[torch]`` extra to the CUDA build (about 20 nvidia
    packages): the command installs torch from PyTorch's CPU index before the extras."""
    blocks = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    test_cmd = [line for line in blocks.splitlines() if line and not line.startswith("#")][1]
    steps = test_cmd.split(" && ")
    assert steps[0].startswith("pip install torch==")
    assert "--index-url https://download.pytorch.org/whl/cpu" in steps[0]
    assert steps[1] == "pip install -e '.[test,torch]'"


def test_custom_primitive_snippet_runs_in_a_fresh_process(tmp_path):
    """The README's custom-primitive block (session 34: the only README code block no test ran;
    tests/test_custom_primitive_ux.py keeps its own copy). In a child process: it registers a
    primitive, which must not join this process's registry. Its module computes x³ and its
    gradient 3x²."""
    import os
    import subprocess
    import sys

    code = re.search(r"needs a proof\ncase:.*?```python\n(.*?)```", README, re.S).group(1)
    code += ("x = tl.tensor([1.0, -2.0], requires_grad=True)\ny = Cube()(x)\ny.sum().backward()\n"
             "print(y.tolist(), x.grad.tolist())\n")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[1.0, -8.0] [3.0, 12.0]", r.stdout
