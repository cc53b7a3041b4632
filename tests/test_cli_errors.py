"""A new user's command lines: every ``--help`` ends with examples that are real (their flags exist,
their files are in the repository, torchlean's parse), and the mistakes a user makes first (a
missing or misnamed file, an unwritable output, a property for another network, a project without
obligations) are one clear line on stderr with a non-zero status, found before any long work."""

from __future__ import annotations

import csv
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from torchlean import __main__ as top
from torchlean.apidoc import main as apidoc_main
from torchlean.floats.__main__ import main as floats_main
from torchlean.proofs.cli import main as proofs_main
from torchlean.verify.__main__ import main as verify_main
from torchlean.zoo._fit import versus

ROOT = Path(__file__).resolve().parents[1]
TEST = ROOT / "tests" / "data" / "vnncomp2021" / "test"
ACAS = ROOT / "tests" / "data" / "vnncomp2021" / "acasxu"

#: module -> (its main, the subcommands whose --help is checked)
CLIS = {
    "torchlean": (top.main, ["", *top.EXAMPLES.keys() - {"torchlean"}]),
    "torchlean.verify": (verify_main, ["", "check", "bounds", "run"]),
    "torchlean.floats": (floats_main, ["", "bound", "fpcore", "run", "lemmas", "check"]),
    "torchlean.proofs": (proofs_main, ["", "emit", "discharge", "check", "show"]),
    "torchlean.apidoc": (apidoc_main, [""]),
}
CASES = [(m, s) for m, (_, subs) in CLIS.items() for s in subs]


def _help(module: str, sub: str, capsys) -> str:
    main = CLIS[module][0]
    argv = ([sub] if sub else []) + ["--help"]
    try:
        rc = main(argv)
    except SystemExit as e:  # (argparse's own exit, for a parser that does not catch it)
        rc = e.code
    assert rc == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("module", "sub"), CASES, ids=[f"{m} {s}".strip() for m, s in CASES])
def test_every_help_ends_with_real_examples(module, sub, capsys):
    text = _help(module, sub, capsys)
    assert "\nexamples:\n" in text, f"{module} {sub} --help has no examples"
    examples = [ln.strip() for ln in text.split("\nexamples:\n", 1)[1].splitlines() if ln.strip()]
    assert examples
    for ex in examples:
        words = shlex.split(ex)
        assert words[:3] == ["python", "-m", module], ex
        if sub:
            assert words[3] == sub, ex
        named = sub or next((w for w in words[3:4] if w in CLIS[module][1]), "")
        own = _help(module, named, capsys)  # the flags of the (sub)command the example runs
        for w in words[3:]:
            flag = w.split("=")[0]
            if flag.startswith("-") and not flag[1:2].isdigit():
                assert flag in own, f"{ex}: {flag} is not a flag of {module} {sub}"
            elif w.startswith(("tests/", "torchlean/")):
                assert (ROOT / w).is_file(), f"{ex}: {w} is not in the repository"
        if module == "torchlean":  # parse it as the command would
            top.build_parser().parse_args(words[3:])


def test_help_names_every_verify_command(capsys):
    """``verify --help`` showed only NET PROP: check, bounds and run were nowhere to be found."""
    text = _help("torchlean.verify", "", capsys)
    for sub in ("check", "bounds", "run"):
        assert f"python -m torchlean.verify {sub} " in text
    assert "the network (ONNX)" in text  # the positionals say what they are


# -- output paths: refused before the work, not after ----------------------------------------------


@pytest.mark.parametrize("flag", ["--save", "--log"])
def test_unwritable_output_is_refused_before_training(flag, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert top.main(["mlp", "--steps", "50", "--no-progress", flag, str(blocker / "out")]) == 2
    out, err = capsys.readouterr()
    assert out == "", "training ran before the output path was checked"
    assert err.strip().count("\n") == 0 and f"torchlean: error: {flag}" in err


def test_plot_and_demo_outputs_are_checked_first(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    assert top.main(["plot", str(tmp_path / "missing.json"), "-o", str(tmp_path / "d")]) == 2
    assert "-o" in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    assert top.main(["demo", "--out", str(tmp_path / "f")]) == 2
    assert "not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["vae", "--samples", "s.txt"], ["cnn", "--certify", "0.1", "--plot", "c"],
                                  ["plot", "log.json", "-o", "curve.xyz"]])
def test_an_image_name_matplotlib_cannot_write_is_refused_first(argv, tmp_path, monkeypatch, capsys):
    """matplotlib refused '.txt' only after the training: the run was lost."""
    monkeypatch.chdir(tmp_path)
    assert top.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "not an image name" in err


@pytest.mark.parametrize("case", ["plot-log", "demo-out", "cnn-plot", "pinn-plot"])
def test_top_level_bad_input_is_status_2_like_the_other_commands(case, tmp_path, monkeypatch, capsys):
    """``python -m torchlean`` answered a missing ``plot`` log, a demo folder it could not write
    and ``--plot`` without ``--certify`` with status 1, where verify/floats/proofs answer bad input
    with 2 (README: 2 bad input and usage, 1 a run that cannot be carried out)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "proofs").write_text("")  # the demo's artifact folder, taken by a file
    argv, named = {"plot-log": (["plot", "none.json", "-o", "c.png"], "none.json: no such file"),
                   "demo-out": (["demo", "--out", "out", "--steps", "1"], "proofs"),
                   "cnn-plot": (["cnn", "--steps", "1", "--plot", "c.png"], "--plot needs --certify EPS"),
                   "pinn-plot": (["pinn", "--steps", "1", "--plot", "c.png"], "--plot needs --certify")}[case]
    if case == "demo-out":  # (in a child: the demo's @verified model would join this process's registry)
        r = subprocess.run([sys.executable, "-m", "torchlean", *argv], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
        status, out, err = r.returncode, r.stdout, r.stderr
    else:
        status = top.main(argv)
        out, err = capsys.readouterr()
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchlean: error:") and named in lines[0], err
    assert not (tmp_path / "c.png").exists()
    if case != "demo-out":  # refused before any work
        assert out == ""


def test_a_diverging_run_ends_in_one_line_not_numpy_warnings():
    r = subprocess.run([sys.executable, "-m", "torchlean", "mlp", "--lr", "1e9", "--steps", "20",
                        "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["torchlean: error: training diverged (non-finite loss); "
                                             "try a smaller --lr"], r.stderr


def test_baseline_comparison_says_worse_when_it_is():
    """'0.0x better than persistence' for a model 100 times worse."""
    assert versus(0.7071, 0.0068, "persistence") == "104.0x worse than persistence"
    assert versus(0.00037, 0.0068, "persistence") == "18.4x better than persistence"


# -- verify ---------------------------------------------------------------------------------------


def test_a_file_is_named_once_in_its_error(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    assert verify_main([str(bad), str(TEST / "test_nano.vnnlib"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count(str(bad)) == 1 and "not a readable ONNX model" in err
    assert verify_main(["check", str(tmp_path / "none.json"), str(TEST / "test_nano.onnx"),
                        str(TEST / "test_nano.vnnlib")]) == 2
    err = capsys.readouterr().err
    assert err.count("none.json") == 1 and "no such file" in err


def test_an_input_file_is_never_the_output(tmp_path, capsys):
    """``--cert prop.vnnlib`` (a slip of the shell's completion) replaced the property with the
    certificate after a successful run; the list of ``verify run`` likewise."""
    net, prop = tmp_path / "n.onnx", tmp_path / "p.vnnlib"
    net.write_bytes((TEST / "test_nano.onnx").read_bytes())
    prop.write_bytes((TEST / "test_nano.vnnlib").read_bytes())
    for flag, victim in (("--cert", prop), ("--result", net)):
        before = victim.read_bytes()
        assert verify_main([str(net), str(prop), flag, str(victim), "-q"]) == 2
        assert "is an input of this command" in capsys.readouterr().err and victim.read_bytes() == before
    assert floats_main(["bound", str(net), "--box", "-1:1", "--cert", str(net)]) == 2
    assert "is an input" in capsys.readouterr().err
    lst = tmp_path / "list.csv"
    lst.write_text("n.onnx,p.vnnlib,10\n")
    assert verify_main(["run", str(lst), "--out", str(lst), "--force"]) == 2
    assert lst.read_text() == "n.onnx,p.vnnlib,10\n"
    log = tmp_path / "log.png"  # a training log given an image's name, then drawn onto itself
    log.write_text("{}")
    assert top.main(["plot", str(log), "-o", str(log)]) == 2 and log.read_text() == "{}"


def test_negative_float32_splits_is_a_usage_error(capsys):
    """It was refused only after the network was loaded, as an input error."""
    assert verify_main(["missing.onnx", "missing.vnnlib", "--float32", "--float32-splits", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--float32-splits" in err and "no such file" not in err


def test_an_empty_input_box_is_pointed_out(tmp_path, capsys):
    """Swapped bounds on X_0 gave a bare 'unsat': true (nothing is in the box), but vacuous."""
    prop = tmp_path / "swapped.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 0))\n"
                    "(assert (>= X_0 1))\n(assert (>= Y_0 1))\n")
    assert verify_main([str(TEST / "test_nano.onnx"), str(prop), "--timeout", "30"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "unsat" and "unsat holds vacuously" in err
    assert verify_main([str(TEST / "test_nano.onnx"), str(TEST / "test_nano.vnnlib"), "--timeout", "30"]) == 0
    assert "vacuously" not in capsys.readouterr().err


# -- floats ---------------------------------------------------------------------------------------


def test_floats_model_errors_say_what_is_wrong(tmp_path, capsys):
    """A missing .onnx read 'not a graph JSON file, an ONNX file or a known zoo model' (there are
    no zoo names); --box with --vnnlib silently took the property's box."""
    net, prop = str(TEST / "test_small.onnx"), str(TEST / "test_small.vnnlib")
    cases = [(["bound", str(tmp_path / "none.onnx"), "--box", "0:1"], "no such file"),
             (["bound", "mlp", "--box", "0:1"], "expected a graph JSON (.json) or an ONNX (.onnx) file"),
             (["bound", net, "--vnnlib", str(ACAS / "prop_1.vnnlib")], "has 5 inputs, the model has 1"),
             (["bound", net, "--box", "0:1", "--vnnlib", prop], "not both"),
             (["run", str(tmp_path / "none.json"), "--input", "1"], "no such file")]
    for argv, message in cases:
        assert floats_main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err, (argv, err)


def test_floats_vnnlib_box_is_the_exact_one(tmp_path, capsys):
    """The box was read through float64: the lower end 0.1 became 0.1000000000000000055..., so the
    certified box missed the property's own corner. Several boxes: their hull (all covered)."""
    import json
    from fractions import Fraction

    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                    "(assert (or (and (>= X_0 0.1) (<= X_0 0.3)) (and (>= X_0 0.5) (<= X_0 0.7))))\n"
                    "(assert (>= Y_0 100))\n")
    cert = tmp_path / "eps.json"
    argv = ["bound", str(TEST / "test_small.onnx"), "--vnnlib", str(prop), "--samples", "0",
            "--cert", str(cert)]
    assert floats_main(argv) == 0, capsys.readouterr().err
    box = json.loads(cert.read_text())["statement"]["input_box"]
    assert [[Fraction(a), Fraction(b)] for a, b in box] == [[Fraction(1, 10), Fraction(7, 10)]]


def test_floats_bound_samples_only_the_mode_the_runtime_runs(capsys):
    """``--mode rtz`` printed an 'observed' column sampled from numpy's float32 runs, which round
    to nearest: another program's error next to this one's epsilon. Now said not sampled; rne
    still samples."""
    net = str(TEST / "test_small.onnx")
    assert floats_main(["bound", net, "--box", "-1:1", "--mode", "rtz", "--samples", "50"]) == 0
    out = capsys.readouterr().out
    assert "observed: not sampled" in out and "round to nearest, not rtz" in out
    assert "sampled points" not in out
    assert floats_main(["bound", net, "--box", "-1:1", "--samples", "50"]) == 0
    out = capsys.readouterr().out
    assert "observed over 50 sampled points" in out and "not sampled" not in out


# -- proofs ---------------------------------------------------------------------------------------


def test_proofs_without_obligations_says_why(tmp_path, monkeypatch, capsys):
    """Outside a project ``check`` printed '0 obligations, ..., 0 failed' (exit 0) and ``show``
    printed nothing: a CI gate pointed at the wrong folder passes without a word."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.torchlean]\nmodules = []\n')
    for cmd in ("check", "show"):
        assert proofs_main([cmd]) == 0
        err = capsys.readouterr().err
        assert "no obligations" in err and "modules = []" in err and "--include-library" in err


def test_pytest_check_without_obligations_says_why(tmp_path):
    """``pytest --torchlean-check`` in a project whose modules hold no @verified model passed in
    silence (``proofs check`` says why since session 31): a CI gate on the wrong project."""
    (tmp_path / "pyproject.toml").write_text('[tool.torchlean]\nmodules = []\n')
    (tmp_path / "test_a.py").write_text("def test_ok():\n    pass\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--torchlean-check"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout[-2000:]
    assert "no obligations checked" in r.stdout and "modules = []" in r.stdout, r.stdout[-2000:]


def test_apidoc_usage_error_is_one_line(capsys):
    assert apidoc_main([]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "-o/--out" in err


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_run_reports_a_missing_file_and_runs_the_rest_of_the_list(jobs, tmp_path, capsys):
    """One missing network stopped ``verify run`` at that instance: the rest of the list was never
    run. Now it is one error line naming the file, the others run (their verdicts are VNN-COMP's),
    the results file keeps every row, the status is 2 (bad input), and a rerun tries it again."""
    for name in ("test_sat.onnx", "test_unsat.onnx", "test_prop.vnnlib"):
        (tmp_path / name).write_bytes((TEST / name).read_bytes())
    lst, out = tmp_path / "list.csv", tmp_path / "res.csv"
    lst.write_text("onnx,vnnlib,expected\ntest_unsat.onnx,test_prop.vnnlib,unsat\n"
                   "gone.onnx,test_prop.vnnlib,\ntest_sat.onnx,test_prop.vnnlib,sat\n")
    assert verify_main(["run", str(lst), "--out", str(out), "-j", jobs, "--timeout", "60"]) == 2
    res = capsys.readouterr()
    errors = [line for line in res.out.splitlines() if "error" in line]
    assert len(errors) == 1 and "gone.onnx: no such file" in errors[0], res.out
    assert len(res.out.splitlines()) == 3
    err = res.err.strip().splitlines()
    assert len(err) == 1 and "1 of 3 instances" in err[0] and "gone.onnx" in err[0], res.err
    rows = {r["onnx"]: r for r in csv.DictReader(out.open())}
    assert [rows[n]["result"] for n in ("test_unsat.onnx", "gone.onnx", "test_sat.onnx")] == \
        ["unsat", "error", "sat"]
    assert rows["test_sat.onnx"]["agree"] == rows["test_unsat.onnx"]["agree"] == "yes"
    (tmp_path / "gone.onnx").write_bytes((TEST / "test_sat.onnx").read_bytes())
    assert verify_main(["run", str(lst), "--out", str(out), "-j", jobs, "--timeout", "60"]) == 0
    res = capsys.readouterr()
    assert len(res.out.splitlines()) == 1 and "gone.onnx" in res.out and "skipped 2 of 3" in res.err
    assert [r["result"] for r in csv.DictReader(out.open())] == ["unsat", "sat", "sat"]


def test_floats_bound_fails_loudly_when_sampling_contradicts_epsilon(tmp_path, capsys, monkeypatch):
    """audit33 noticed: `floats bound` printed an observed error above the certified ε as a plain
    row. Such a row contradicts a replayed certificate (a torchlean bug): now an `error:` line on
    stderr, exit 1, no certificate file. Planted here by shrinking the ε the CLI reads."""
    from fractions import Fraction

    import torchlean.floats.errorbound as eb

    net, cert = tmp_path / "n.onnx", tmp_path / "c.json"
    net.write_bytes((TEST / "test_small.onnx").read_bytes())
    assert floats_main(["bound", str(net), "--box", "-1:1", "--samples", "200", "--cert", str(cert)]) == 0
    assert cert.exists() and "error:" not in capsys.readouterr().err
    cert.unlink()
    real = eb.epsilons
    monkeypatch.setattr(eb, "epsilons", lambda c: [Fraction(0) * e for e in real(c)])
    assert floats_main(["bound", str(net), "--box", "-1:1", "--samples", "200", "--cert", str(cert)]) == 1
    err = capsys.readouterr().err
    assert "exceeds the certified epsilon" in err and not cert.exists()


# -- every file argument of every command, given the wrong thing (session 34) ---------------------

#: (module, argv with ``F`` where the file goes, what that file should be). Each is refused in one
#: line naming the file, status 2, with nothing on stdout, whatever the wrong thing is.
FILE_SLOTS = [
    ("torchlean", ["plot", "F", "-o", "x.png"], "log"),
    ("torchlean.verify", ["F", "p.vnnlib"], "onnx"),
    ("torchlean.verify", ["n.onnx", "F"], "vnnlib"),
    ("torchlean.verify", ["check", "F", "n.onnx", "p.vnnlib"], "cert"),
    ("torchlean.verify", ["check", "c.json", "F", "p.vnnlib"], "onnx"),
    ("torchlean.verify", ["check", "c.json", "n.onnx", "F"], "vnnlib"),
    ("torchlean.verify", ["bounds", "F", "p.vnnlib"], "onnx"),
    ("torchlean.verify", ["bounds", "n.onnx", "F"], "vnnlib"),
    ("torchlean.verify", ["run", "F"], "csv"),
    ("torchlean.floats", ["bound", "F", "--box", "0:1"], "onnx"),
    ("torchlean.floats", ["bound", "n.onnx", "--vnnlib", "F"], "vnnlib"),
    ("torchlean.floats", ["fpcore", "F"], "fpcore"),
    ("torchlean.floats", ["run", "F", "--input", "0.5"], "onnx"),
    ("torchlean.floats", ["check", "F"], "cert"),
    ("torchlean.floats", ["check", "e.json", "--model", "F"], "onnx"),
]
SUFFIX = {"log": ".json", "cert": ".json", "onnx": ".onnx", "vnnlib": ".vnnlib", "csv": ".csv",
          "fpcore": ".fpcore"}


def _wrong_things(d: Path, expect: str) -> dict[str, Path]:
    """The mistakes, each under the name the slot expects (``x.onnx`` that is empty, ...)."""
    ext = SUFFIX[expect]
    things = {"missing": d / f"missing{ext}", "directory": d / f"folder{ext}", "empty": d / f"empty{ext}",
              "garbage": d / f"garbage{ext}", "json list": d / f"list{ext}",
              "another kind": d / f"other{ext}"}
    things["directory"].mkdir()
    things["empty"].write_bytes(b"")
    things["garbage"].write_bytes(bytes(range(256)) * 3)
    things["json list"].write_text("[1, 2, 3]\n")
    other = {"log": '{"kind": "errorbound", "statement": {}}',  # a certificate, not a training log
             "cert": '{"format": "torchlean-train-log/1", "records": []}',  # a log, not a certificate
             "onnx": (TEST / "test_nano.vnnlib").read_text(), "vnnlib": "(declare-const Y_0 Real)\n",
             "csv": (TEST / "test_nano.vnnlib").read_text(), "fpcore": "(FPCore (x) (+ x"}[expect]
    things["another kind"].write_text(other)
    return things


@pytest.mark.parametrize(("module", "argv", "expect"), FILE_SLOTS,
                         ids=[f"{m.split('.')[-1]} {' '.join(a)}" for m, a, _ in FILE_SLOTS])
def test_every_file_argument_refuses_the_wrong_thing_in_one_line(module, argv, expect, tmp_path,
                                                                 monkeypatch, capsys):
    """A user's first mistakes with each file argument: a missing file, a folder, an empty file,
    binary garbage, a JSON list, a file of another kind (a certificate given as a training log and
    back, a property given as a network). session 34 found ``verify check`` answering a training log
    or an errorbound certificate "rejected: certificate is for a different network", ``verify run``
    of an empty list exiting 0 in silence, and an empty .onnx read as "imports no default-domain
    opset"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "n.onnx").write_bytes((TEST / "test_nano.onnx").read_bytes())
    (tmp_path / "p.vnnlib").write_bytes((TEST / "test_nano.vnnlib").read_bytes())
    (tmp_path / "c.json").write_text('{"kind": "vnn-unsat"}')  # (refused later: its net is the point)
    (tmp_path / "e.json").write_text('{"kind": "errorbound", "statement": {}}')
    main = CLIS[module][0]
    bad = []
    for name, path in _wrong_things(tmp_path, expect).items():
        if (expect, name) in {("vnnlib", "json list"), ("fpcore", "json list"), ("csv", "json list")}:
            continue  # (text in a text format: the parser's own error, covered by "another kind")
        args = [str(path.relative_to(tmp_path)) if a == "F" else a for a in argv]
        try:
            rc = main(args)
        except SystemExit as e:  # (a parser that lets argparse exit)
            rc = e.code
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        ok = (rc == 2 and len(lines) == 1 and "error" in lines[0] and path.name in lines[0]
              and "Traceback" not in err and "internal error" not in err and out == "")
        if name == "directory":  # (not "no such file", not "expected an ONNX file")
            ok = ok and "directory" in lines[0]
        if name == "empty" and expect == "onnx":  # (not "imports no default-domain opset")
            ok = ok and "empty" in lines[0].replace(path.name, "")
        if not ok:
            bad.append(f"{name}: status {rc}, stdout {out[:80]!r}, stderr {err[:200]!r}")
        assert not (tmp_path / "x.png").exists()
    assert not bad, f"{module} {' '.join(argv)}:\n" + "\n".join(bad)
