"""An example for every public function (session 34): docs/api-examples.md runs as a doctest, top to
bottom in one session as a reader runs it, and every public callable of
``torchlean.apidoc.PUBLIC_MODULES`` has an example somewhere a reader finds it: a ``>>>`` line in its
docstring, or a use (``name(`` or ``.name``) in README.md, docs/*.md or examples/."""

from __future__ import annotations

import doctest
import importlib
import inspect
import re
from pathlib import Path

import pytest

from torchlean.apidoc import PUBLIC_MODULES

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "api-examples.md"


def _sections() -> list[tuple[str, str]]:
    """(title, the ``pycon`` blocks under it) in page order; the first, untitled, is the imports."""
    out, title = [], "imports"
    for part in re.split(r"^## (.*)$", PAGE.read_text(), flags=re.M):
        blocks = re.findall(r"```pycon\n(.*?)```", part, re.S)
        if blocks:
            out.append((title, "\n".join(blocks)))
        title = part.strip()
    return out


SECTIONS = _sections()
#: the page's one session, shared by the sections in order (a later block uses earlier names)
_SESSION: dict = {}
_DONE: list[str] = []


def _run_section(title: str, code: str) -> None:
    test = doctest.DocTestParser().get_doctest(code, _SESSION, title, str(PAGE), 0)
    test.globs = _SESSION  # (doctest copies globs; the session must carry over)
    failures: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=failures.append, clear_globs=False)
    assert test.examples and runner.failures == 0, "".join(failures)
    _DONE.append(title)


@pytest.mark.parametrize("index", range(len(SECTIONS)), ids=[t.split(" (")[0] for t, _ in SECTIONS])
def test_api_examples_page_runs(index, monkeypatch):
    """Each section of docs/api-examples.md, after the ones before it (run first if this one is
    selected alone), as a doctest."""
    pytest.importorskip("matplotlib")  # (the plot section)
    monkeypatch.chdir(ROOT)  # (the page names tests/data/... as a checkout has it)
    from torchlean.proofs import SOURCES

    before = dict(SOURCES)
    try:
        for title, code in SECTIONS[: index + 1]:
            if title not in _DONE:
                _run_section(title, code)
    finally:
        SOURCES.clear()
        SOURCES.update(before)  # (the page registers one proof source: not for other tests)


def _documented_text() -> str:
    parts = [(ROOT / "README.md").read_text()]
    parts += [p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))]
    parts += [p.read_text() for p in sorted((ROOT / "examples").glob("*.py"))]
    return "\n".join(parts)


def _has_example(name: str, obj: object, text: str) -> bool:
    if ">>>" in (inspect.getdoc(obj) or ""):
        return True
    return re.search(rf"(\b{re.escape(name)}\(|\.{re.escape(name)}\b)", text) is not None


def test_every_public_function_has_an_example():
    """Exceptions are exempt (they are raised, not called); everything else a reader can call or
    instantiate needs an example. 126 had none on 2026-12-07."""
    text = _documented_text()
    missing = []
    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or not callable(obj):
                continue
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                continue
            if not _has_example(name, obj, text):
                missing.append(f"{modname}.{name}")
    assert not missing, f"{len(missing)} public names without an example: {missing}"


def test_the_example_check_can_fail():
    """The rule sees a name with no example as missing (not a test that cannot fail)."""
    def quietly_undocumented():  # noqa: D401 - a stand-in
        """No example here."""

    assert not _has_example("quietly_undocumented", quietly_undocumented, _documented_text())
    assert _has_example("linspace", object(), _documented_text())
