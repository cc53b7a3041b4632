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
from .sexpr import Script, SExpr, parse_one, show

TRANSCENDENTALS = ("tl_exp", "tl_log", "tl_sqrt", "tl_tanh", "tl_erf")

#: each schema as a pattern (the module docstring's table): the symbols A, B, C stand for any
#: terms, the same term wherever one repeats; every other symbol stands for itself
AXIOMS = {name: parse_one(text) for name, text in {
    "exp_pos": "(> (tl_exp A) 0)",
    "exp_add": "(= (tl_exp A) (* (tl_exp B) (tl_exp C)))",  # and A = B + C, below
    "exp_zero": "(= (tl_exp A) 1)",  # and A = 0, below
    "exp_log": "(=> (> A 0) (= (tl_exp (tl_log A)) A))",
    "sqrt_pos": "(=> (> A 0) (> (tl_sqrt A) 0))",
    "sqrt_sq": "(=> (>= A 0) (= (* (tl_sqrt A) (tl_sqrt A)) A))",
    "log_exp": "(= (tl_log (tl_exp A)) A)",
    "log_mul": "(=> (and (> A 0) (> B 0)) (= (tl_log (* A B)) (+ (tl_log A) (tl_log B))))",
    **{f"mono_{f}": f"(=> (<= A B) (<= (tl_{f} A) (tl_{f} B)))" for f in ("exp", "tanh", "erf")},
    **{f"mono_{f}": f"(=> (and (> A 0) (<= A B)) (<= (tl_{f} A) (tl_{f} B)))" for f in ("log", "sqrt")},
}.items()}
_META = ("A", "B", "C")


def _match(pattern: SExpr, t: SExpr, env: dict[str, SExpr]) -> bool:
    """Whether ``t`` is ``pattern`` with its metavariables replaced (binding them in ``env``)."""
    if isinstance(pattern, str):
        if pattern in _META:
            return env.setdefault(pattern, t) == t
        return pattern == t
    return (isinstance(t, tuple) and len(t) == len(pattern)
            and all(_match(p, x, env) for p, x in zip(pattern, t)))


def check_instance(schema: str, t: SExpr, script: Script) -> None:
    """Reject unless ``t`` is a ground instance of axiom ``schema``."""
    for fn in TRANSCENDENTALS:
        if fn in script.functions:
            require(script.functions[fn] == (("Real",), "Real"), f"{fn} must be declared (Real) Real")
    if schema not in AXIOMS:
        raise Rejected(f"unknown axiom schema {schema!r}")
    env: dict[str, SExpr] = {}
    require(_match(AXIOMS[schema], t, env), f"{schema}: {show(t)} is not an instance of "
            f"{show(AXIOMS[schema])}")
    # the arguments' polynomials (an ite stays an opaque atom: an identity then holds for every value)
    arg = Normaliser(script.constants, script.functions).term
    if schema == "exp_add":
        pa, pb, pc = (arg(env[x]).poly("axiom argument") for x in "ABC")
        require(key(pa) == key(add(pb, pc)), f"exp_add: {show(env['A'])} is not {show(env['B'])} + "
                f"{show(env['C'])}")
    elif schema == "exp_zero":
        require(not arg(env["A"]).poly("axiom argument"), "exp_zero: not exp(0) = 1")


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
            require(schema in AXIOMS, f"{name}: unknown axiom schema {schema!r}")
            check_instance(schema, t, script)
        else:
            raise Rejected(f"assert {name!r} is neither goal, dom_* nor ax_*")
    return domain
