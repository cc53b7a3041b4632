"""Issue 14: every function of the trusted checker is reached from a checker entry (by name), so no
search-only helper sits in ``torchlean/certificates/`` (``bench/checker_reach.py``; session 33
moved the four it found: ``Row``/``FastRow.default_slopes``, ``Atom.holds``)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: unreached by any checker entry and kept on purpose: a public property of every verdict
ALLOWED = {"core.py:Verdict.fully_checked"}


def _reach():
    spec = importlib.util.spec_from_file_location("checker_reach", ROOT / "bench/checker_reach.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_search_only_code_in_the_checker():
    found = {name for _, name in _reach().unreached(ROOT)}
    assert found == ALLOWED, f"not reached from any checker entry: {sorted(found - ALLOWED)}"


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "torchlean" / "certificates"
    shutil.copytree(ROOT / "torchlean" / "certificates", dst, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_pass_finds_a_planted_helper_and_follows_calls(tmp_path):
    root = _copy(tmp_path)
    path = root / "torchlean" / "certificates" / "property.py"
    text = path.read_text()
    # a method only the search would call, and a helper called from a function the checker runs
    text = text.replace("    strict: bool\n", "    strict: bool\n\n    def only_search(self) -> int:\n"
                        "        return 1\n", 1)
    text += "\n\ndef _planted_used() -> int:\n    return 2\n\n\ndef _planted_dead() -> int:\n    return 3\n"
    text = text.replace("def parse_property(text: str) -> Spec:\n",
                        "def parse_property(text: str) -> Spec:\n    _planted_used()\n", 1)
    path.write_text(text)
    found = {name for _, name in _reach().unreached(root)}
    assert found == ALLOWED | {"property.py:Atom.only_search", "property.py:_planted_dead"}


def test_nested_functions_in_loops_are_followed(tmp_path):
    # graph_vnn's per-leaf ``lower_bound`` (defined inside a loop) is what calls
    # engine.best_backsub and engine.mult_form: dropping it leaves both unreached
    root = _copy(tmp_path)
    path = root / "torchlean" / "certificates" / "graph_vnn.py"
    text = path.read_text()
    assert "engine.mult_form(" in text and "engine.best_backsub(" in text
    text = text.replace("engine.mult_form(", "engine.MULT(").replace("engine.best_backsub(", "engine.BEST(")
    path.write_text(text)
    found = {name for _, name in _reach().unreached(root)}
    assert {"engine.py:mult_form", "engine.py:best_backsub"} <= found
