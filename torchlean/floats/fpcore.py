"""FPCore (FPBench's benchmark format): a lark grammar, and expressions as shared DAGs.

The grammar reads FPCore's s-expressions (numbers: decimals, rationals, hex; symbols; strings;
``;`` comments; ``[ ]`` as brackets); ``to_benchmarks`` interprets them: ``(FPCore name? (args)
:prop value ... body)``, with +, -, *, /, sqrt, neg, let/let* (bound values are shared nodes: one
rounding each), ``:pre`` (box bounds ``(<= a x b)``/``(< a x b)`` and other comparisons kept as
constraints) and ``:precision``. Numerals are exact (hex ones too: the program's rounding of a
constant is charged by the bounds). Anything else (if, while, sin, pow, ..., a ``:round`` other
than nearestEven, ``:pre``/``:precision``/``:round`` given twice) makes the benchmark
``unsupported`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from lark import Lark, Token, Transformer

from ..certificates.core import decimal

#: how deeply FPCore expressions may nest
MAX_DEPTH = 200
#: limits on hex numerals (so ``0x1p99999999`` is refused, not built)
MAX_HEX_DIGITS, MAX_HEX_EXPONENT = 1000, 20000

GRAMMAR = r"""
start: item*
?item: list | atom
list: "(" item* ")" | "[" item* "]"
?atom: RATIONAL -> rational
     | HEXNUM -> hexnum
     | DECNUM -> decnum
     | STRING -> string
     | SYMBOL -> symbol
RATIONAL.3: /[+-]?[0-9]+\/[0-9]*[1-9][0-9]*(?![^\s()\[\];"])/
HEXNUM.3: /[+-]?0x[0-9a-f]+(\.[0-9a-f]*)?(p[+-]?[0-9]+)?(?![^\s()\[\];"])/i
DECNUM.2: /[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(e[+-]?[0-9]+)?(?![^\s()\[\];"])/i
STRING: /"([^"\\]|\\.)*"/
SYMBOL: /[a-zA-Z~!@$%^&*_\-+=<>.?\/:][a-zA-Z0-9~!@$%^&*_\-+=<>.?\/:]*/
COMMENT: /;[^\n]*/
// (a numeral ends at a delimiter: "2x", "1.5.2" and "1-2" are errors, not 2 x / 1.5 .2 / 1 -2)
%import common.WS
%ignore WS
%ignore COMMENT
"""

_PARSER = Lark(GRAMMAR, parser="lalr")


class FPCoreError(ValueError):
    """Malformed FPCore; the message says where."""


@dataclass(frozen=True)
class Num:
    value: Fraction


@dataclass(frozen=True)
class Sym:
    name: str


class _ToPy(Transformer):
    def start(self, items):
        return list(items)

    def list(self, items):
        return list(items)

    def rational(self, items: list[Token]):
        return Num(_numeral(str(items[0])))

    def decnum(self, items: list[Token]):
        return Num(_numeral(str(items[0])))

    def hexnum(self, items: list[Token]):
        return Num(_hexnumeral(str(items[0])))

    def string(self, items: list[Token]):
        t = items[0]
        return str(t)[1:-1]

    def symbol(self, items: list[Token]):
        t = items[0]
        return Sym(str(t))


def _numeral(text: str) -> Fraction:
    try:
        return decimal(text)  # (limits on digits and exponent: 1e999999999 is refused, not built)
    except ValueError as e:
        raise FPCoreError(str(e)) from None


def _hexnumeral(text: str) -> Fraction:
    """The exact value of a hex numeral (``0x1.8p-3``). Not float.fromhex: that rounds to binary64,
    and the program's rounding of the constant would then go uncounted (audit48)."""
    import re

    m = re.fullmatch(r"([+-]?)0x([0-9a-f]+)(?:\.([0-9a-f]*))?(?:p([+-]?[0-9]+))?", text, re.I | re.A)
    if m is None:
        raise FPCoreError(f"not a hex numeral: {text[:40]!r}")
    sign, whole, frac, exp = m.group(1), m.group(2), m.group(3) or "", m.group(4) or "0"
    if len(whole) + len(frac) > MAX_HEX_DIGITS or len(exp) > 8 or abs(int(exp)) > MAX_HEX_EXPONENT:
        raise FPCoreError(f"hex numeral beyond the limits on digits or exponent: {text[:40]!r}")
    e = int(exp) - 4 * len(frac)
    q = Fraction(int(whole + frac, 16)) * (Fraction(2) ** e)
    if q >= 2**1024 - 2**970:  # rounds to inf in binary64: refused as float.fromhex did
        raise FPCoreError(f"hex numeral beyond binary64's range: {text[:40]!r}")
    return -q if sign == "-" else q


def _depth(text: str) -> int:
    """The deepest bracket nesting outside strings and comments."""
    import re

    depth = best = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|;[^\n]*|[()\[\]]', text):
        c = m.group()[0]
        if c in "([":
            depth += 1
            best = max(best, depth)
        elif c in ")]":
            depth -= 1
    return best


def parse_sexprs(text: str) -> list[Any]:
    if _depth(text) > MAX_DEPTH:
        raise FPCoreError(f"expressions nested deeper than the limit of {MAX_DEPTH}")
    try:
        return _ToPy().transform(_PARSER.parse(text))
    except Exception as e:  # lark's errors carry line/column
        inner = getattr(e, "orig_exc", None)  # (a numeral refused inside the transformer)
        if isinstance(inner, FPCoreError):
            raise inner from None
        raise FPCoreError(f"FPCore syntax error: {str(e).splitlines()[0]}") from None


# -- expression DAG --------------------------------------------------------------------------------

OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "sqrt": "sqrt", "neg": "neg"}


@dataclass(eq=False)
class Node:
    op: str  # "var", "const", "add", "sub", "mul", "div", "sqrt", "neg"
    args: tuple[Node, ...] = ()
    name: str = ""
    value: Fraction = Fraction(0)


@dataclass
class Benchmark:
    name: str
    args: list[str]
    body: Node | None
    box: dict[str, tuple[Fraction, Fraction]] = field(default_factory=dict)
    constraints: list[tuple[str, Node, Node]] = field(default_factory=list)  # ("<=" or "<", lhs, rhs)
    #: strict box bounds from ``(< a x b)``: (variable, 0) for the lower, (variable, 1) for the upper;
    #: bounds use the closed box (a superset), sampled points must respect them
    strict: set[tuple[str, int]] = field(default_factory=set)
    precision: str = "binary64"
    unsupported: str = ""
    props: dict[str, Any] = field(default_factory=dict)


class Unsupported(Exception):
    pass


def _expr(s: Any, env: dict[str, Node]) -> Node:
    if isinstance(s, Num):
        return Node("const", value=s.value)
    if isinstance(s, Sym):
        if s.name not in env:
            raise Unsupported(f"unknown symbol {s.name!r}")
        return env[s.name]
    if not isinstance(s, list) or not s or not isinstance(s[0], Sym):
        raise Unsupported(f"unsupported expression {s!r}")
    head, rest = s[0].name, s[1:]
    if head in ("let", "let*"):
        if len(rest) != 2:
            raise Unsupported("let needs bindings and a body")
        inner = dict(env)
        for b in rest[0]:
            if not (isinstance(b, list) and len(b) == 2 and isinstance(b[0], Sym)):
                raise Unsupported(f"bad let binding {b!r}")
            inner[b[0].name] = _expr(b[1], inner if head == "let*" else env)
        return _expr(rest[1], inner)
    if head not in OPS:
        raise Unsupported(f"operator {head!r}")
    args = tuple(_expr(a, env) for a in rest)
    if head == "-" and len(args) == 1:
        return Node("neg", args)
    if head in ("+", "-", "*", "/") and len(args) > 2:  # left-associative chains
        node = Node(OPS[head], args[:2])
        for a in args[2:]:
            node = Node(OPS[head], (node, a))
        return node
    want = 1 if head in ("sqrt", "neg") else 2
    if len(args) != want:
        raise Unsupported(f"{head} with {len(args)} arguments")
    return Node(OPS[head], args)


def _pre(b: Benchmark, s: Any, env: dict[str, Node]) -> None:
    if not isinstance(s, list) or not s or not isinstance(s[0], Sym):
        raise Unsupported(f"unsupported :pre {s!r}")
    head = s[0].name
    if head == "and":
        for c in s[1:]:
            _pre(b, c, env)
        return
    if head not in ("<", "<=", ">", ">="):
        raise Unsupported(f":pre operator {head!r}")
    terms = s[1:]
    if head in (">", ">="):  # normalise to increasing chains
        terms = terms[::-1]
    strict = head in ("<", ">")
    for lo, hi in zip(terms, terms[1:]):
        if isinstance(lo, Num) and isinstance(hi, Sym):
            _tighten(b, hi.name, 0, lo.value, strict)
        elif isinstance(lo, Sym) and isinstance(hi, Num):
            _tighten(b, lo.name, 1, hi.value, strict)
        else:  # a general constraint lhs <= rhs (< when strict; bounds may use the closure)
            b.constraints.append(("<" if strict else "<=", _expr(lo, env), _expr(hi, env)))


def _tighten(b: Benchmark, name: str, side: int, value: Fraction, strict: bool) -> None:
    """Conjoin a box bound (side 0: value <= x, 1: x <= value; strict: < ): the tightest wins,
    and on a tie the strict one."""
    box = list(b.box.get(name, (None, None)))
    cur = box[side]
    if cur is None or (value > cur if side == 0 else value < cur):
        box[side] = value
        b.strict.discard((name, side))
    if strict and value == box[side]:
        b.strict.add((name, side))
    b.box[name] = (box[0], box[1])


def to_benchmarks(text: str) -> list[Benchmark]:
    out = []
    for i, top in enumerate(parse_sexprs(text)):
        if not (isinstance(top, list) and top and top[0] == Sym("FPCore")):
            raise FPCoreError(f"top-level form {i + 1} is not (FPCore ...)")
        rest = top[1:]
        name = f"#{i + 1}"
        if rest and isinstance(rest[0], Sym):
            name, rest = rest[0].name, rest[1:]
        if not rest or not isinstance(rest[0], list):
            raise FPCoreError(f"{name}: missing argument list")
        args = [a.name if isinstance(a, Sym) else "?" for a in rest[0]]
        rest = rest[1:]
        props: dict[str, Any] = {}
        twice: list[str] = []  # a semantic property given twice: which one holds is not defined
        while len(rest) >= 2 and isinstance(rest[0], Sym) and rest[0].name.startswith(":"):
            key = rest[0].name[1:]
            if key in props and key in ("pre", "precision", "round"):
                twice.append(key)
            props[key] = rest[1]
            rest = rest[2:]
        if len(rest) != 1:
            raise FPCoreError(f"{name}: expected one body expression")
        name = props.get("name", name)
        prec = props.get("precision", Sym("binary64"))
        b = Benchmark(str(name), args, None, precision=prec.name if isinstance(prec, Sym) else "?",
                      props=props)
        env = {a: Node("var", name=a) for a in args}
        try:
            if "?" in args:
                raise Unsupported("annotated arguments")
            if twice:
                raise Unsupported(f":{twice[0]} given twice")
            rnd = props.get("round", Sym("nearestEven"))
            if rnd != Sym("nearestEven"):  # the bounds model round-to-nearest-even only (audit48)
                raise Unsupported(f":round {rnd.name if isinstance(rnd, Sym) else '?'}")
            dup = sorted({a for a in args if args.count(a) > 1})
            if dup:
                raise Unsupported(f"argument {dup[0]!r} named twice")
            b.body = _expr(rest[0], env)
            if "pre" in props:
                _pre(b, props["pre"], env)
            missing = [a for a in args if None in b.box.get(a, (None, None))]
            if missing:
                raise Unsupported(f"no bounds for {', '.join(missing)} in :pre")
            extra = sorted(set(b.box) - set(args))
            if extra:  # (a :pre bound on a name that is not an argument)
                raise Unsupported(f":pre bounds {extra[0]!r}, which is not an argument")
            empty = [a for a in args if b.box[a][0] > b.box[a][1]]
            if empty:  # a bound over no points at all says nothing
                raise Unsupported(f"empty :pre box for {', '.join(empty)}")
        except Unsupported as e:
            b.unsupported = str(e)
        out.append(b)
    return out


def topo(root: Node) -> list[Node]:
    """Nodes in evaluation order, each shared node once."""
    seen: set[int] = set()
    order: list[Node] = []
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        n, done = stack.pop()
        if done:
            order.append(n)
            continue
        if id(n) in seen:
            continue
        seen.add(id(n))
        stack.append((n, True))
        stack.extend((a, False) for a in reversed(n.args) if id(a) not in seen)
    return order
