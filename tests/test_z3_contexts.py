"""z3 contexts are never mixed: the cause of the test run's heap corruption (docs/known-issues.md).

z3py's constructors and FP conversions (``fpToReal``, ``fpBVToFP``, ``fpToIEEEBV``, ``RealVal``,
``Solver``, ...) take ``ctx=None`` to mean z3's global context, whatever context their arguments
belong to. Called on the terms of a context of one's own, they run in the global context, which
keeps the result in its last-result trail; once the own context is deleted (its memory freed), the
global context's next call releases that result and decrements a reference count inside freed
memory. valgrind reports it as an invalid write in ``ast_manager::delete_node`` under
``api::context::save_ast_trail``; in the full test run the freed 8 KB allocator chunks had become
Python dict tables and lists, one element of which went down by one (a segfault minutes later in
unrelated code, 92-98% through the run). So: every such call in code that makes or receives its
own context passes that context."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

z3 = pytest.importorskip("z3")

ROOT = Path(__file__).resolve().parents[1]


def global_by_default() -> dict[str, int]:
    """z3py functions whose ``ctx=None`` means the global context, with the position of their
    ``ctx`` parameter (read from z3py itself, so a new z3 release is covered)."""
    out = {}
    for name, f in vars(z3).items():
        if getattr(f, "__module__", None) != "z3.z3" or not (inspect.isfunction(f) or inspect.isclass(f)):
            continue
        try:  # (a class: its constructor, e.g. ``Solver(solver=None, ctx=None)``)
            params = list(inspect.signature(f).parameters.values())
            src = inspect.getsource(f.__init__ if inspect.isclass(f) else f)
        except (TypeError, ValueError, OSError):
            continue
        names = [p.name for p in params]
        if "ctx" in names and params[names.index("ctx")].default is None and "_get_ctx(ctx)" in src:
            out[name] = names.index("ctx")
    return out


def mixed_calls(source: str, funcs: dict[str, int]) -> list[tuple[int, str]]:
    """(line, name) of each ``z3.NAME(...)`` call without a context, for NAME in ``funcs``, inside
    a function that makes a context (``z3.Context(...)``), takes or names one (``ctx``) or reads
    an object's (``s.ctx``)."""
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        nodes = list(ast.walk(fn))
        own = (any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                   and n.func.attr == "Context" for n in nodes)
               or any(a.arg == "ctx" for a in fn.args.args + fn.args.kwonlyargs)
               or any(isinstance(n, ast.Name) and n.id == "ctx" and isinstance(n.ctx, ast.Store)
                      for n in nodes)
               or any(isinstance(n, ast.Attribute) and n.attr == "ctx" for n in nodes))
        if not own:
            continue
        for n in nodes:
            if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                    and isinstance(n.func.value, ast.Name) and n.func.value.id == "z3"
                    and n.func.attr in funcs):
                continue
            given = any(k.arg == "ctx" for k in n.keywords) or len(n.args) > funcs[n.func.attr]
            if not given:
                found.append((n.lineno, n.func.attr))
    return sorted(set(found))


def test_no_z3_call_falls_back_to_the_global_context_beside_a_context_of_its_own():
    funcs = global_by_default()
    assert {"fpToReal", "fpBVToFP", "fpToFP", "fpToIEEEBV", "RealVal", "Solver"} <= set(funcs)
    bad = []
    for path in sorted((ROOT / "torchlean").rglob("*.py")) + sorted((ROOT / "tests").rglob("*.py")):
        text = path.read_text()
        if "z3" in text:
            bad += [f"{path.relative_to(ROOT)}:{line}: z3.{name} without ctx"
                    for line, name in mixed_calls(text, funcs)]
    assert not bad, "\n".join(bad)


PLANTED = '''
def t():
    import z3
    ctx = z3.Context()
    S = z3.FPSort(8, 24, ctx)
    e = z3.simplify(z3.fpBVToFP(z3.BitVecVal(1, 32, ctx), S))
    return z3.simplify(z3.fpToReal(e)), z3.fpToIEEEBV(e, ctx), z3.RealVal(1, ctx)
'''


def test_the_check_finds_the_calls_that_corrupted_the_heap():
    """The two calls of test_heldout_audit54.py's first version (fpBVToFP and fpToReal without a
    context) are found; the calls that pass one are not."""
    funcs = global_by_default()
    assert mixed_calls(PLANTED, funcs) == [(6, "fpBVToFP"), (7, "fpToReal")]
    fixed = PLANTED.replace("S))", "S, ctx))").replace("fpToReal(e)", "fpToReal(e, ctx)")
    assert mixed_calls(fixed, funcs) == []
    # a function with no context of its own may use the global one
    assert mixed_calls("def g():\n    import z3\n    return z3.RealVal(1)\n", funcs) == []
