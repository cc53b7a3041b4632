"""A reader for the SMT-LIB 2.6 fragment obligations are written in.

An obligation's script is the *statement*: the checker reads it here, never a separately stored
claim. Supported commands: ``set-logic``, ``set-info``, ``set-option``, ``declare-fun``,
``declare-const``, ``assert``, ``check-sat``, ``exit``. Every ``assert`` must be named with
``(! TERM :named NAME)``: ``goal`` is the negated claim, ``dom_*`` are domain assumptions (part of
the statement, shown by ``show``), ``ax_<schema>_*`` are axiom instances that ``axioms.py`` checks
against the fixed schema list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .core import Rejected, require

#: an s-expression: an atom (symbol or numeral, as text) or a list of s-expressions
SExpr = str | tuple["SExpr", ...]

MAX_DEPTH = 400


#: SMT-LIB's lexical layer as both trusted readers take it (this module's obligations and
#: ``property.py``'s VNN-LIB): white space (space, tab, CR, LF), a comment (``;`` to the end of the
#: line), a parenthesis, or an atom (up to white space or a parenthesis)
TOKEN = re.compile(r"([ \t\r\n]+)|(;[^\n]*)|([()])|([^ \t\r\n()]+)")


def lex(text: str) -> list[tuple[str, int]]:
    """Every parenthesis and atom of ``text`` with its line, comments dropped; ``Rejected`` where
    SMT-LIB could split it otherwise (h-audit10: each once hid an assert or made one of a string):
    a CR inside a comment (it ends there), an atom holding '"' or '|' (a string or quoted symbol
    there) or ';' (a comment), or a character other than printable ASCII (an error there)."""
    out: list[tuple[str, int]] = []
    line = 1
    for m in TOKEN.finditer(text):
        space, comment, paren, atom = m.groups()
        if space:
            line += space.count("\n")
        elif comment is not None:
            if "\r" in comment[:-1]:
                raise Rejected(f"line {line}: a carriage return inside a comment")
        else:
            tok = paren or atom
            if '"' in tok or "|" in tok or ";" in tok:
                raise Rejected(f"line {line}: quoted symbols, strings and ';' inside an atom are "
                               f"outside the supported fragment: {tok[:20]!r}")
            # (audit12) SMT-LIB's symbols, numerals and keywords are printable ASCII: any other
            # character (form feed, NBSP, a control) is an error there (z3 drops the command), while
            # ``decimal``'s strip() read "5\f" as 5
            if not (tok.isascii() and tok.isprintable()):
                raise Rejected(f"line {line}: a character outside SMT-LIB's printable ASCII in an "
                               f"atom: {tok[:20]!r}")
            out.append((tok, line))
    return out


def tokenize(text: str) -> list[str]:
    """Split SMT-LIB text into parentheses and atoms (``lex``, without the lines)."""
    return [tok for tok, _ in lex(text)]


def parse_all(text: str) -> list[SExpr]:
    """Every top-level s-expression in ``text``."""
    tokens = tokenize(text)
    out: list[SExpr] = []
    stack: list[list[SExpr]] = []
    # hash-consing: equal subterms become one object, so per-term memos (by id) see repeats
    shared: dict[tuple[object, ...], SExpr] = {}
    for tok in tokens:
        if tok == "(":
            stack.append([])
            require(len(stack) <= MAX_DEPTH, "s-expression nested too deeply")
        elif tok == ")":
            require(bool(stack), "unbalanced ')'")
            items = stack.pop()
            done = shared.setdefault(tuple(id(x) if isinstance(x, tuple) else x for x in items), tuple(items))
            (stack[-1] if stack else out).append(done)
        else:
            (stack[-1] if stack else out).append(tok)
    require(not stack, "unbalanced '('")
    return out


def parse_one(text: str) -> SExpr:
    items = parse_all(text)
    require(len(items) == 1, f"expected one s-expression, got {len(items)}")
    return items[0]


_SHOWN: dict[tuple[SExpr, ...], str] = {}


def show(e: SExpr) -> str:
    """Print an s-expression back (canonical spacing). Memoised: checkers key their per-term
    tables by this text, and without the memo a large statement is printed again at every use
    (a pure function of the term, so the memo cannot change an answer)."""
    if isinstance(e, str):
        return e
    text = _SHOWN.get(e)
    if text is None:
        text = "(" + " ".join(show(x) for x in e) + ")"
        if len(_SHOWN) >= 1 << 18:  # bounded: a long-running process checks many statements
            _SHOWN.clear()
        _SHOWN[e] = text
    return text


@dataclass
class Script:
    """A parsed obligation: declared symbols and the named assertions, in order."""

    constants: dict[str, str] = field(default_factory=dict)  # name -> sort
    functions: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    asserts: list[tuple[str, SExpr]] = field(default_factory=list)  # (name, term)

    @property
    def goal(self) -> SExpr:
        goals = [t for n, t in self.asserts if n == "goal"]
        require(len(goals) == 1, f"script must assert exactly one 'goal', found {len(goals)}")
        return goals[0]


SORTS = ("Real", "Bool")


def read_script(text: str) -> Script:
    """Parse and validate an obligation script; anything outside the fragment is rejected."""
    s = Script()
    saw_check = False
    for cmd in parse_all(text):
        require(isinstance(cmd, tuple) and cmd and isinstance(cmd[0], str), f"bad command {show(cmd)}")
        head = cmd[0]
        if head in ("set-logic", "set-info", "set-option", "exit"):
            continue
        if head == "check-sat":
            saw_check = True
        elif head == "declare-const":
            require(len(cmd) == 3 and cmd[2] in SORTS, f"bad declaration {show(cmd)}")
            _declare(s, cmd[1], (), cmd[2])
        elif head == "declare-fun":
            require(len(cmd) == 4 and isinstance(cmd[2], tuple), f"bad declaration {show(cmd)}")
            args = cmd[2]
            require(all(a in SORTS for a in args) and cmd[3] in SORTS, f"bad sort in {show(cmd)}")
            _declare(s, cmd[1], tuple(args), cmd[3])  # type: ignore[arg-type]
        elif head == "assert":
            require(len(cmd) == 2, f"bad assert {show(cmd)}")
            body = cmd[1]
            require(isinstance(body, tuple) and len(body) == 4 and body[0] == "!" and body[2] == ":named",
                    "every assert must be (! TERM :named NAME)")
            name = body[3]
            require(isinstance(name, str) and name not in {n for n, _ in s.asserts},
                    f"assert name {name!r} missing or repeated")
            s.asserts.append((name, body[1]))  # type: ignore[arg-type]
        else:
            raise Rejected(f"command {head!r} is outside the supported fragment")
    require(saw_check, "script has no (check-sat)")
    return s


def _plain(name: object) -> bool:
    """Declared names are plain identifiers (so no name can pose as a numeral or an opaque atom)."""
    return (isinstance(name, str) and bool(name) and (name[0].isalpha() or name[0] == "_")
            and all(c.isalnum() or c in "_." for c in name) and name not in RESERVED)


RESERVED = {"true", "false", "ite", "and", "or", "not", "let", "distinct", "xor", "forall", "exists"}


def _declare(s: Script, name: object, args: tuple[str, ...], sort: object) -> None:
    require(_plain(name) and name not in s.constants and name not in s.functions,
            f"symbol {name!r} declared twice or malformed")
    if args:
        s.functions[name] = (args, sort)  # type: ignore[index,assignment]
    else:
        s.constants[name] = sort  # type: ignore[index,assignment]
