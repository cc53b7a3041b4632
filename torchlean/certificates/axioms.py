"""The transcendental axioms: the only facts about exp, log, sqrt, tanh and erf the checker accepts.

Transcendental functions are uninterpreted (``tl_exp``, ``tl_log``, ``tl_sqrt``, ``tl_tanh``, ``tl_erf``,
declared ``(Real) Real``). An obligation may assume *ground instances* of the schemas below, named
``ax_<schema>_<n>``; this module checks that each such assert really is an instance. Every schema
is a true statement about the real function, so a claim proved from instances holds for it.

    exp_pos    exp(A) > 0
    exp_add    exp(A) = exp(B) * exp(C)              where A = B + C as polynomials
    exp_zero   exp(A) = 1                            where A = 0 as a polynomial
    exp_log    A > 0  =>  exp(log(A)) = A
    sqrt_pos   A > 0  =>  sqrt(A) > 0
    sqrt_sq    A >= 0  =>  sqrt(A) * sqrt(A) = A
    log_exp    log(exp(A)) = A
    log_mul    A > 0 and B > 0  =>  log(A * B) = log(A) + log(B)
    mono_F     A <= B  =>  F(A) <= F(B)              F in exp, tanh, erf (increasing on R)
    mono_D     A > 0 and A <= B  =>  D(A) <= D(B)    D in log, sqrt (increasing where defined)
"""

from __future__ import annotations

from .core import Rejected, require
from .poly import Normaliser, add, key
from .sexpr import Script, SExpr, show

TRANSCENDENTALS = ("tl_exp", "tl_log", "tl_sqrt", "tl_tanh", "tl_erf")

AXIOM_TEXT = {
    "exp_pos": "exp(a) > 0",
    "exp_add": "exp(a + b) = exp(a) * exp(b)",
    "exp_zero": "exp(0) = 1",
    "exp_log": "a > 0 => exp(log(a)) = a",
    "sqrt_pos": "a > 0 => sqrt(a) > 0",
    "sqrt_sq": "a >= 0 => sqrt(a) * sqrt(a) = a",
    "log_exp": "log(exp(a)) = a",
    "log_mul": "a > 0 and b > 0 => log(a * b) = log(a) + log(b)",
    "mono_exp": "a <= b => exp(a) <= exp(b)",
    "mono_tanh": "a <= b => tanh(a) <= tanh(b)",
    "mono_erf": "a <= b => erf(a) <= erf(b)",
    "mono_log": "0 < a <= b => log(a) <= log(b)",
    "mono_sqrt": "0 < a <= b => sqrt(a) <= sqrt(b)",
}


def _app(t: SExpr, fn: str) -> SExpr:
    """The argument of ``(fn ARG)``, or reject."""
    require(isinstance(t, tuple) and len(t) == 2 and t[0] == fn, f"expected ({fn} _), got {show(t)}")
    return t[1]  # type: ignore[index]


def _shape(t: SExpr, head: str, n: int) -> tuple[SExpr, ...]:
    require(
        isinstance(t, tuple) and len(t) == n + 1 and t[0] == head,
        f"expected ({head} ...) with {n} arguments, got {show(t)}",
    )
    return t[1:]  # type: ignore[return-value]


def _poly_key(t: SExpr, script: Script) -> str:
    # ite stays an opaque atom here: an identity between arguments then holds for every value
    return key(Normaliser(script.constants, script.functions).term(t).poly("axiom argument"))


def check_instance(schema: str, t: SExpr, script: Script) -> None:
    """Reject unless ``t`` is a ground instance of axiom ``schema``."""
    for fn in TRANSCENDENTALS:
        if fn in script.functions:
            require(script.functions[fn] == (("Real",), "Real"), f"{fn} must be declared (Real) Real")
    if schema == "exp_pos":
        a, zero = _shape(t, ">", 2)
        _app(a, "tl_exp")
        require(zero == "0", "exp_pos: right side must be 0")
    elif schema == "exp_add":
        lhs, rhs = _shape(t, "=", 2)
        a = _app(lhs, "tl_exp")
        eb, ec = _shape(rhs, "*", 2)
        b, c = _app(eb, "tl_exp"), _app(ec, "tl_exp")
        n = Normaliser(script.constants, script.functions)
        pa, pb, pc = (n.term(x).poly("axiom argument") for x in (a, b, c))
        require(key(pa) == key(add(pb, pc)), f"exp_add: {show(a)} is not {show(b)} + {show(c)}")
    elif schema == "exp_zero":
        lhs, one = _shape(t, "=", 2)
        require(one == "1" and _poly_key(_app(lhs, "tl_exp"), script) == "0", "exp_zero: not exp(0) = 1")
    elif schema == "exp_log":
        pre, post = _shape(t, "=>", 2)
        a, zero = _shape(pre, ">", 2)
        lhs, rhs = _shape(post, "=", 2)
        require(
            zero == "0" and _app(_app(lhs, "tl_exp"), "tl_log") == a and rhs == a,
            "exp_log: not A > 0 => exp(log(A)) = A",
        )
    elif schema == "sqrt_pos":
        pre, post = _shape(t, "=>", 2)
        a, zero = _shape(pre, ">", 2)
        s, zero2 = _shape(post, ">", 2)
        require(zero == "0" and zero2 == "0" and _app(s, "tl_sqrt") == a, "sqrt_pos: malformed")
    elif schema == "sqrt_sq":
        pre, post = _shape(t, "=>", 2)
        a, zero = _shape(pre, ">=", 2)
        sq, rhs = _shape(post, "=", 2)
        s1, s2 = _shape(sq, "*", 2)
        require(
            zero == "0" and rhs == a and _app(s1, "tl_sqrt") == a and _app(s2, "tl_sqrt") == a,
            "sqrt_sq: malformed",
        )
    elif schema == "log_exp":
        lhs, a = _shape(t, "=", 2)
        require(_app(_app(lhs, "tl_log"), "tl_exp") == a, "log_exp: not log(exp(A)) = A")
    elif schema == "log_mul":
        pre, post = _shape(t, "=>", 2)
        pa, pb = _shape(pre, "and", 2)
        a, z1 = _shape(pa, ">", 2)
        b, z2 = _shape(pb, ">", 2)
        lhs, rhs = _shape(post, "=", 2)
        la, lb = _shape(rhs, "+", 2)
        require(
            z1 == "0"
            and z2 == "0"
            and _app(lhs, "tl_log") == ("*", a, b)
            and _app(la, "tl_log") == a
            and _app(lb, "tl_log") == b,
            "log_mul: malformed",
        )
    elif schema in ("mono_exp", "mono_tanh", "mono_erf"):
        fn = "tl_" + schema[5:]
        pre, post = _shape(t, "=>", 2)
        a, b = _shape(pre, "<=", 2)
        fa, fb = _shape(post, "<=", 2)
        require(_app(fa, fn) == a and _app(fb, fn) == b, f"{schema}: malformed")
    elif schema in ("mono_log", "mono_sqrt"):
        fn = "tl_" + schema[5:]
        pre, post = _shape(t, "=>", 2)
        pos, le = _shape(pre, "and", 2)
        a, zero = _shape(pos, ">", 2)
        a2, b = _shape(le, "<=", 2)
        fa, fb = _shape(post, "<=", 2)
        require(zero == "0" and a2 == a and _app(fa, fn) == a and _app(fb, fn) == b, f"{schema}: malformed")
    else:
        raise Rejected(f"unknown axiom schema {schema!r}")


def check_hypotheses(script: Script) -> list[str]:
    """Validate every assert's role by its name; return the domain assumptions, printed."""
    domain = []
    for name, t in script.asserts:
        if name == "goal":
            continue
        if name.startswith("dom_"):
            domain.append(show(t))
        elif name.startswith("ax_"):
            schema = name[3:].rsplit("_", 1)[0]
            require(schema in AXIOM_TEXT, f"{name}: unknown axiom schema {schema!r}")
            check_instance(schema, t, script)
        else:
            raise Rejected(f"assert {name!r} is neither goal, dom_* nor ax_*")
    return domain
