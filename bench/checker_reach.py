"""Which functions of the trusted checker (``torchlean/certificates/``) no checker entry reaches.

Issue 14 (the checker's size): code in ``certificates/`` that only the untrusted search, printing or
tests call is not trusted at all and belongs in ``verify/`` (or wherever its callers are). This pass
reads the checker's source with ``ast`` and walks, from its roots, every name a reached function
mentions (calls, attributes, imports, string constants that are identifiers, nested functions
included), to every function or class of that name anywhere in ``certificates/``. The roots are
every module-level statement (the tables: ``ROWS``, ``FUNCTIONS``, ``FNS``, ...), every
``@checker``-registered kind and ``ROOTS`` below (the entries the CLI, ``proofs check`` and the
float-sound path call). Matching by name over-approximates what is reached (a search-only
``gamma`` method is "reached" through ``Ctx.gamma``), so what it reports is certainly unreached
by name and what it does not report may still be dead: a function-level trace of the tests finds
the rest (session 33, docs/checker-size-history.md).

    python bench/checker_reach.py [ROOT]     # prints "lines module:qualname" per unreached function
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

#: entry points called from outside the checker on the trusted path (besides ``@checker`` kinds)
ROOTS = frozenset({"check", "replay", "load_checkers", "parse_json", "decimal", "check_vnn",
                   "check_vnn_float", "check_vnn_graph", "parse_property", "lower", "fingerprint"})


def _names(node: ast.AST) -> set[str]:
    """Every identifier ``node`` mentions, not looking inside the functions/classes it defines."""
    out: set[str] = set()
    stack = list(ast.iter_child_nodes(node))
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, ast.alias):
            out.add(n.name.split(".")[-1])
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier():
            out.add(n.value)
        stack.extend(ast.iter_child_nodes(n))
    return out


def _code_lines(lines: list[str], a: int, b: int) -> int:
    return sum(1 for s in lines[a - 1:b] if s.strip() and not s.strip().startswith("#"))


class _Defs:
    """Every function and class of the checker: id "module.py:Qual.name" -> node, code lines and
    the id of the definition it is nested in; the names each mentions; the roots found so far."""

    def __init__(self) -> None:
        self.defs: dict[str, tuple[ast.AST, int, str | None]] = {}
        self.by_name: dict[str, list[str]] = defaultdict(list)
        self.refs: dict[str, set[str]] = {}
        self.start: set[str] = set(ROOTS)

    def visit(self, node: ast.AST, where: tuple[str, list[str]], prefix: str, owner: str | None,
              top: bool) -> None:
        for n in ast.iter_child_nodes(node):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                i = f"{where[0]}:{prefix}{n.name}"
                first = min([n.lineno] + [d.lineno for d in n.decorator_list])
                self.defs[i] = (n, _code_lines(where[1], first, n.end_lineno or n.lineno), owner)
                self.by_name[n.name].append(i)
                self.refs[i] = _names(n)
                if any("checker" in ast.dump(d) for d in n.decorator_list):
                    self.start.add(n.name)
                if isinstance(n, ast.ClassDef):  # dunder methods run with their class
                    self.refs[i] |= {m.name for m in n.body if isinstance(m, ast.FunctionDef)
                                     and m.name.startswith("__")}
                self.visit(n, where, f"{prefix}{n.name}.", i, False)
            else:
                if top:  # a module-level statement (a table) runs on import
                    self.start |= _names(n) | ({n.id} if isinstance(n, ast.Name) else set())
                self.visit(n, where, prefix, owner, False)


def unreached(root: Path) -> list[tuple[int, str]]:
    """(code lines, "module.py:Qual.name") of each function or class in ``root``'s
    ``torchlean/certificates/`` that no root reaches by name, largest first."""
    d = _Defs()
    for path in sorted((root / "torchlean" / "certificates").glob("*.py")):
        text = path.read_text()
        d.visit(ast.parse(text), (path.name, text.splitlines()), "", None, True)
    nested: dict[str, list[str]] = defaultdict(list)
    for i, (_, _, owner) in d.defs.items():
        if owner is not None and not isinstance(d.defs[owner][0], ast.ClassDef):
            nested[owner].append(i)  # a function's own nested functions run with it
    seen: set[str] = set()
    todo = [i for name in d.start for i in d.by_name.get(name, [])]
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        todo.extend(nested[i])
        todo.extend(j for name in d.refs[i] for j in d.by_name.get(name, []))
    out = [(lines, i) for i, (_, lines, _) in d.defs.items()
           if i not in seen and not i.rsplit(".", 1)[-1].split(":")[-1].startswith("__")]
    return sorted(out, reverse=True)


if __name__ == "__main__":
    rows = unreached(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]))
    for n, i in rows:
        print(n, i)
    print("total", sum(n for n, _ in rows))
