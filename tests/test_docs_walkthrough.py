"""A new user's walk through the documentation (session 31): the docs' code blocks that run in
seconds run as tests, and the error paths the walk found wrong (an internal error after the work, a
directory called "no such file", an empty input read as success) are one line and status 2."""

from __future__ import annotations

import ast
import base64
import json
import re
from pathlib import Path

import numpy as np

from torchlean import __main__ as top
from torchlean.apidoc import main as apidoc_main
from torchlean.floats.__main__ import main as floats_main
from torchlean.verify.__main__ import main as verify_main

ROOT = Path(__file__).resolve().parents[1]
ACAS = ROOT / "tests" / "data" / "vnncomp2021" / "acasxu"
NET = str(ACAS / "ACASXU_run2a_1_1_batch_2000.onnx")
PROP = str(ACAS / "prop_3.vnnlib")


def _block(doc: str, lang: str) -> str:
    return re.search(rf"```{lang}\n(.*?)```", (ROOT / "docs" / doc).read_text(), re.S).group(1)


def _one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_verify_api_doc_block_runs_and_its_comments_hold(tmp_path, monkeypatch):
    """docs/verify-api.md's block, statement by statement: each bare expression's comment says what
    it is (arrays of the output's shape, a float32 bound that contains the float32 model's output)."""
    monkeypatch.chdir(tmp_path)
    code = _block("verify-api.md", "python")
    ns: dict = {}
    values = {}
    for node in ast.parse(code).body:
        if isinstance(node, ast.Expr):
            values[ast.get_source_segment(code, node)] = eval(  # noqa: S307 - our own docs
                compile(ast.Expression(node.value), "verify-api.md", "eval"), ns)
        else:
            exec(compile(ast.Module([node], []), "verify-api.md", "exec"), ns)  # noqa: S102
    lower, upper = values["b.lower, b.upper"]
    y = ns["model"](ns["tl"].tensor(ns["x"])).numpy()
    assert lower.shape == upper.shape == y.shape == (1, 10)
    assert (lower <= y).all() and (y <= upper).all()  # the centre of the box is inside
    assert values["b32.contains(model(tl.tensor(x)).numpy())"] is True
    r = ns["r"]
    assert r.verdict in ("verified", "falsified", "unknown") and isinstance(r.reason, str)
    if r.verdict == "falsified":  # the counterexample has x's shape, within eps, and beats label 3
        cx = np.asarray(r.counterexample)
        assert cx.shape == ns["x"].shape and np.abs(cx - ns["x"]).max() <= 0.01 + 1e-12
        out = ns["model"](ns["tl"].tensor(cx)).numpy()[0]
        assert out.argmax() != 3 or np.isclose(out.max(), np.delete(out, 3).max())


def test_ir_json_doc_example_is_a_graph_the_reader_reads(tmp_path):
    """docs/ir-json.md's example, with its elided weight bytes filled in, loads as the graph it
    describes and evaluates to relu(x @ w)."""
    from torchlean.spec.graph import Graph

    doc = json.loads(_block("ir-json.md", "json"))
    w = np.arange(-5, 5, dtype=np.float32).reshape(5, 2)
    assert doc["constants"]["w"]["data"].endswith("...")  # elided in the doc, and says so
    doc["constants"]["w"]["data"] = base64.b64encode(w.tobytes()).decode()
    g = Graph.from_json(json.dumps(doc))
    x = np.array([[1.0, -2.0, 0.5, 3.0, 0.25]], dtype=np.float32)
    from torchlean.spec.exact import evaluate

    (y,) = evaluate(g, {"x": x}, digits=30)
    assert np.allclose(np.asarray(y, dtype=float), np.maximum(x.astype(float) @ w, 0))
    assert json.loads(g.to_json())["nodes"] == doc["nodes"]  # the key names are the writer's


def test_bounds_plot_name_matplotlib_cannot_write_is_refused_first(tmp_path, capsys):
    """``verify bounds --plot b.xyz`` bounded the network, then died as an "internal error" (exit 3)
    when matplotlib refused the suffix."""
    assert verify_main(["bounds", NET, PROP, "--plot", str(tmp_path / "b.xyz")]) == 2
    assert "not an image name" in _one_error_line(capsys)
    assert not (tmp_path / "b.xyz").exists()


def test_plot_of_a_directory_says_directory(tmp_path, capsys):
    """``plot DIR -o x.png`` said "DIR: no such file" of a folder that exists."""
    (tmp_path / "logs").mkdir()
    assert top.main(["plot", str(tmp_path / "logs"), "-o", str(tmp_path / "x.png")]) == 2
    line = _one_error_line(capsys)
    assert "directory" in line and "no such file" not in line
    assert not (tmp_path / "x.png").exists()


def test_apidoc_onto_a_file_is_a_usage_error(tmp_path, capsys):
    """``apidoc -o FILE`` answered status 1 with "[Errno 17] File exists"."""
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    assert apidoc_main(["-o", str(f)]) == 2
    assert "not a directory" in _one_error_line(capsys)
    assert f.read_text() == "keep me"


def test_fpcore_file_without_benchmarks_is_an_error(tmp_path, capsys):
    """An empty FPCore file printed a table header and exited 0, as if every benchmark were fine."""
    for text in ("", ";; only a comment\n"):
        f = tmp_path / "empty.fpcore"
        f.write_text(text)
        assert floats_main(["fpcore", str(f)]) == 2
        assert "no FPCore benchmarks" in _one_error_line(capsys)


def test_top_level_usage_error_names_torchlean_once(capsys):
    assert top.main([]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("torchlean: error: ") and line.count("torchlean:") == 1, line


class _Parsed(BaseException):
    """Raised by the patched parser once a command line parsed: nothing runs."""


def _doc_commands() -> list[str]:
    """Every concrete ``python -m torchlean...`` command line in README.md and docs/*.md: code
    spans and code-block lines without metasyntax (``[...]``, ``a|b``, ``...``)."""
    texts = [(ROOT / "README.md").read_text()] + [p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))]
    found: list[str] = []
    for text in texts:
        text = re.sub(r"\\\n\s*", " ", text)  # (shell line continuations)
        spans = re.findall(r"`(python -m torchlean[^`]*)`", text)
        spans += re.findall(r"^\s*(python -m torchlean[^\n#]*)", text, re.M)
        for c in spans:
            c = re.sub(r"\s+", " ", c).strip()
            c = re.sub(r"(?<= )N\b", "2", c)  # (a count the reader picks)
            if len(c.split()) < 4 or c.endswith("--help"):  # (the module named in prose; its help)
                continue
            if not any(m in c for m in ("[", "|", "...", "…")) and c not in found:
                found.append(c)
    return found


def test_every_documented_command_line_parses(monkeypatch):
    """A flag renamed in the code but not in the docs is a reader's first error: each concrete
    command the docs show must get past its command's argument parser."""
    import argparse
    import shlex

    from torchlean.proofs.cli import main as proofs_main

    mains = {"torchlean": top.main, "torchlean.verify": verify_main, "torchlean.floats": floats_main,
             "torchlean.proofs": proofs_main, "torchlean.apidoc": apidoc_main}
    original = argparse.ArgumentParser.parse_args

    def parse(self, args=None, namespace=None):
        ns = original(self, args, namespace)
        raise _Parsed(ns)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)
    commands = _doc_commands()
    assert len(commands) >= 20, commands
    bad = []
    for c in commands:
        words = shlex.split(c)
        try:
            rc = mains[words[2]](words[3:])
        except _Parsed:
            continue
        bad.append(f"{c}  (status {rc})")
    assert not bad, "\n".join(bad)


def test_lemmas_exit_status_says_whether_every_lemma_holds(monkeypatch, capsys):
    """``floats lemmas`` exited 0 with a lemma REFUTED, REJECTED or open (README: a z3 timeout
    under load left binary32 add open, status 0): now 1 and one line on stderr, 0 only when all hold."""
    from torchlean.floats import lemmas as L

    monkeypatch.setattr(L, "exhaustive_certificates", lambda: [])
    verdict = {"status": "REFUTED"}

    def discharge(ob, timeout_s=60.0):
        r = {"result": "unsat", "time_s": 0.0}
        return {"name": ob.name, "z3": r, "cvc5": r, "status": verdict["status"]}

    monkeypatch.setattr(L, "discharge", discharge)
    assert floats_main(["lemmas", "--timeout", "1"]) == 1
    assert "REFUTED" in capsys.readouterr().out
    for status, rc in (("open", 1), ("solver-trusted (both unsat)", 0)):
        verdict["status"] = status
        assert floats_main(["lemmas", "--timeout", "1"]) == rc
        out, err = capsys.readouterr()
        assert (err.strip().count("\n"), bool(err.strip())) == (0, rc == 1), err
def test_a_timeout_leaves_no_earlier_certificate_beside_its_verdict(tmp_path, capsys):
    """``--cert c.json`` on a rerun that timed out kept the earlier run's certificate: the result
    file said "timeout" while c.json still held an unsat proof. Now --cert holds this run's
    certificate or nothing; a run that does finish writes it again."""
    prop1 = str(ACAS / "prop_1.vnnlib")
    cert, result = tmp_path / "c.json", tmp_path / "r.txt"
    assert verify_main([NET, prop1, "--cert", str(cert), "--result", str(result)]) == 0
    assert result.read_text() == "unsat\n" and json.loads(cert.read_text())["kind"].startswith("vnn-unsat")
    capsys.readouterr()
    assert verify_main([NET, prop1, "--cert", str(cert), "--result", str(result), "--timeout", "0.001"]) == 0
    assert capsys.readouterr().out == "timeout\n" and result.read_text() == "timeout\n"
    assert not cert.exists()


def test_float32_only_flags_without_float32_are_refused(capsys):
    """``--float32-splits N`` without ``--float32`` was silently ignored (a real-number verdict)."""
    for extra in (["--float32-splits", "5"], ["--float32-column", "exact"]):
        assert verify_main([NET, PROP, *extra]) == 2
        assert "needs --float32" in _one_error_line(capsys)


def test_emit_onto_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    """``proofs emit -o FILE`` printed the no-obligations note before its error: two lines."""
    from torchlean.proofs.cli import main as proofs_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("")
    assert proofs_main(["emit", "-o", "f"]) == 2
    assert "not a directory" in _one_error_line(capsys)
