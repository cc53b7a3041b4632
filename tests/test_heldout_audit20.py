"""Audit audit20: are the fixed-shape claims' domains (their ``dom_*`` asserts) satisfiable, and no
narrower than the spec needs?

Every obligation ``python -m torchlean.proofs check`` replays is proved under its ``dom_*`` asserts
(and its axiom instances). Those domains are derived by untrusted code (``proofs/autograd.py``,
``proofs/ibp.py``) and only bound to the claim by its hash: a derivation emitting an empty domain
would make any claim hold vacuously (audit19's hole, for ``rows``). No trusted checker tests them,
so this file does, against z3 (an independent reference) and an exact rational evaluation:

- every domain, with the script's axiom instances, is satisfiable (z3 ``sat``), and z3's point
  satisfies every ``dom_*`` atom when evaluated exactly (``Fraction``), not only in z3's model;
- for the forward and autograd claims, the points where the claim's own terms are defined (every
  non-constant divisor ≠ 0, every sqrt argument ≥ 0, every log argument > 0) but the domain is
  false are exactly those of the pinned table ``NARROWER`` (the autograd claims' kinks, since
  domains31), each with its reason; a new narrowing fails the test.

Planted (``test_planted_*``): a false domain atom and an over-narrow divisor domain monkeypatched
into the derivation are both caught.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
import sympy

from torchlean.certificates.sexpr import SExpr, read_script, show
from torchlean.proofs import autograd
from torchlean.proofs.cli import collect
from torchlean.proofs.obligation import DECIDED

z3 = pytest.importorskip("z3")
pytestmark = pytest.mark.solver

#: obligations whose domain excludes points where their claim's terms are all defined, and why
#: (domains31: the forward claims no longer exclude the kinks, sqrt's forward claim is made at x >= 0
#: and batch_norm's at running var + eps > 0, so only the autograd kinks remain; the checker's
#: ``claim`` kind now requires each of them to be a comparison of the spec side)
KINK = "kink: the derivative does not exist there (a comparison the spec side branches on)"
NARROWER = {f"autograd.{p}": KINK for p in ("abs", "relu", "leaky_relu", "max", "max_pool2d", "maximum",
                                             "minimum")}


def _parts(text: str) -> tuple[list[str], list[str], list[str], SExpr]:
    """(declarations, axiom instances, domain atoms, goal) of an obligation script, as SMT-LIB."""
    script = read_script(text)
    decls = [ln for ln in text.splitlines() if ln.startswith(("(declare-fun", "(declare-const"))]
    axioms = [show(t) for n, t in script.asserts if n.startswith("ax_")]
    domain = [show(t) for n, t in script.asserts if n.startswith("dom_")]
    return decls, axioms, domain, script.goal


def _sat(decls: list[str], asserts: list[str]) -> tuple[Any, Any]:
    # a fresh context: z3's default one keeps what earlier tests declared (test_floats_lemmas
    # declares FloatingPoint constants of the same names), and its model then mixed the sorts
    s = z3.Solver(ctx=z3.Context())
    s.set("timeout", 20000)
    s.from_string("\n".join(decls + [f"(assert {a})" for a in asserts]))
    r = s.check()
    return r, (s.model() if r == z3.sat else None)


def _exact(t: SExpr, env: dict[str, Fraction]) -> Any:
    """The value of an arithmetic/boolean term at a rational point, exactly (no transcendental)."""
    if isinstance(t, str):
        if t in ("true", "false"):
            return t == "true"
        return env[t] if t in env else Fraction(t)
    head, args = t[0], [_exact(a, env) for a in t[1:]]
    if head == "ite":
        return args[1] if args[0] else args[2]
    ops = {"+": lambda v: sum(v), "*": lambda v: _prod(v), "/": lambda v: v[0] / v[1],
           "-": lambda v: -v[0] if len(v) == 1 else v[0] - sum(v[1:]),
           ">": lambda v: v[0] > v[1], ">=": lambda v: v[0] >= v[1], "<": lambda v: v[0] < v[1],
           "<=": lambda v: v[0] <= v[1], "=": lambda v: v[0] == v[1], "and": all, "or": any,
           "not": lambda v: not v[0], "=>": lambda v: (not v[0]) or v[1]}
    return ops[head](args)


def _prod(v: list[Fraction]) -> Fraction:
    out = Fraction(1)
    for x in v:
        out *= x
    return out


def _defined(t: SExpr, out: list[str]) -> None:
    """Where the term is defined: non-constant divisors ≠ 0, sqrt arguments ≥ 0, log arguments > 0."""
    if isinstance(t, str):
        return
    for a in t[1:]:
        _defined(a, out)
    if t[0] == "/" and not _numeral(t[2]):
        out.append(f"(not (= {show(t[2])} 0))")
    elif t[0] == "tl_sqrt":
        out.append(f"(>= {show(t[1])} 0)")
    elif t[0] == "tl_log":
        out.append(f"(> {show(t[1])} 0)")


def _spec_sides(goal: SExpr) -> list[SExpr]:
    """The spec's side of each equation of ``(not CLAIM)``: the right one (``_obligation`` pairs
    (runtime, spec)); the runtime's terms never widen what counts as defined (audit19's lesson)."""
    assert goal[0] == "not"
    claim = goal[1]
    eqs = claim[1:] if claim[0] == "and" else (claim,)
    assert all(e[0] == "=" and len(e) == 3 for e in eqs), show(claim)[:200]
    return [e[2] for e in eqs]


def _numeral(t: SExpr) -> bool:
    try:
        Fraction(show(t).replace("(/ ", "").replace(")", "").replace(" ", "/"))
        return True
    except (ValueError, ZeroDivisionError):
        return False


def vacuous(ob: Any) -> str | None:
    """Why the obligation's domain is empty, or None when a rational point satisfies it exactly."""
    decls, axioms, domain, _ = _parts(ob.smtlib)
    if not domain:
        return None
    r, model = _sat(decls, axioms + domain)
    if r != z3.sat:
        return f"z3 says the domain with its axioms is {r}"
    env = {}
    for d in model.decls():
        if d.arity() == 0:
            v = model[d]
            env[d.name()] = Fraction(v.numerator_as_long(), v.denominator_as_long())
    for name in read_script(ob.smtlib).constants:
        env.setdefault(name, Fraction(0))  # unconstrained by z3: any value
    atoms = [t for n, t in read_script(ob.smtlib).asserts if n.startswith("dom_")]
    bad = [show(a) for a in atoms if not _exact(a, env)]
    return f"z3's point fails {bad[0]} exactly" if bad else None


def narrower(ob: Any, spec: Any = None) -> bool:
    """Whether some point where every term of the claim (and of ``spec``, the forward claim of the
    same case: an autograd claim's terms may drop the spec's log) is defined lies outside the
    domain."""
    decls, axioms, domain, goal = _parts(ob.smtlib)
    if not domain:
        return False
    defined: list[str] = []
    for side in _spec_sides(goal) + (_spec_sides(_parts(spec.smtlib)[3]) if spec is not None else []):
        _defined(side, defined)
    outside = f"(not (and {' '.join(domain)} true))"
    r, _ = _sat(decls, axioms + defined + [outside])
    assert r in (z3.sat, z3.unsat), (ob.name, r)
    return r == z3.sat


def _spec(ob: Any, obs: dict[str, Any]) -> Any:
    """The forward claim of an autograd claim's case (it states the spec's own terms)."""
    return obs.get("forward." + ob.name.removeprefix("autograd.")) if ob.kind == "autograd" else None


@pytest.fixture(scope="module")
def library() -> list[Any]:
    return collect(library=True)


def test_every_replayed_obligation_is_seen(library: list[Any]) -> None:
    # the 160 that `python -m torchlean.proofs check` replays (152 + session 33's 8 cast claims);
    # every one parses as a script
    assert len(library) == 160
    # 41 before domains31, which dropped the kink domains of the 7 forward claims
    assert sum(bool(_parts(o.smtlib)[2]) for o in library if o.kind not in DECIDED) == 34
    assert {o.kind for o in library if o.kind not in DECIDED} == {"forward", "autograd", "ibp", "relax"}


def test_no_domain_is_empty(library: list[Any]) -> None:
    bad = {o.name: why for o in library if o.kind not in DECIDED and (why := vacuous(o))}
    assert not bad, bad


def test_domains_no_narrower_than_the_spec_needs(library: list[Any]) -> None:
    obs = {o.name: o for o in library}
    got = {o.name for o in library if o.kind in ("forward", "autograd") and narrower(o, _spec(o, obs))}
    assert got == set(NARROWER), (sorted(got - set(NARROWER)), sorted(set(NARROWER) - got))


def test_the_definedness_read_is_not_trivial(library: list[Any]) -> None:
    # the domains that are exactly the spec's definedness are recognised as such (not narrower)
    obs = {o.name: o for o in library}
    for name in ("forward.div", "autograd.div", "forward.log", "autograd.log", "autograd.sqrt"):
        assert not narrower(obs[name], _spec(obs[name], obs)), name


def _planted(monkeypatch: pytest.MonkeyPatch, extra: Any) -> dict[str, Any]:
    real = autograd._obligation

    def plant(kind, subject, name, pairs, domain, *args, **kwargs):
        if name.endswith(".div"):
            x = sorted(sympy.Add(*[e for p in pairs for e in p]).free_symbols, key=str)[-1]
            domain = list(domain) + extra(x)
        return real(kind, subject, name, pairs, domain, *args, **kwargs)

    monkeypatch.setattr(autograd, "_obligation", plant)
    return {o.name: o for o in collect(library=True)}


def test_planted_false_domain_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    obs = _planted(monkeypatch, lambda x: [x > 1, x < 0])
    assert "(> x1_0 1)" in obs["forward.div"].smtlib and "(< x1_0 0)" in obs["autograd.div"].smtlib
    assert vacuous(obs["forward.div"]) and vacuous(obs["autograd.div"])
    assert vacuous(obs["forward.log"]) is None


def test_planted_narrow_divisor_domain_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    obs = _planted(monkeypatch, lambda x: [x > 0])  # the divisor's domain "> 0" instead of "≠ 0"
    assert vacuous(obs["forward.div"]) is None
    assert narrower(obs["forward.div"]) and narrower(obs["autograd.div"], obs["forward.div"])


def test_forward_narrowings_only_weaken(library: list[Any]) -> None:
    # every claim in NARROWER but two also holds on the whole of its spec's definedness (z3 unsat
    # without the dom_* asserts): the kink domain states a weaker claim, never hides a wrong VJP;
    # the autograd ones at abs's and max's kinks really differ (a chosen subgradient), so their
    # domains are needed
    obs = {o.name: o for o in library}
    for name in sorted(NARROWER):
        decls, axioms, _, goal = _parts(obs[name].smtlib)
        defined: list[str] = []
        spec = _spec(obs[name], obs)
        for side in _spec_sides(goal) + (_spec_sides(_parts(spec.smtlib)[3]) if spec else []):
            _defined(side, defined)
        r, _ = _sat(decls, axioms + defined + [show(goal)])
        want = z3.sat if name in ("autograd.abs", "autograd.max") else z3.unsat
        assert r == want, (name, r)


# -- the channels kind (batch_norm's VJP element by element) with hand-built statements ---------

def _channels() -> dict[str, Any]:
    from torchlean.proofs import terms

    c = [2]
    f = {"shapes": [[2, 2, 2], c, c, c, c], "attrs": {"eps": 1e-5}, "ints": {}, "column_major": []}
    return terms.channels_statement("batch_norm", f)


def _leaf(old: list[Any], new: list[Any]) -> Any:
    def edit(st: dict[str, Any]) -> None:
        assert old in st["nodes"]
        st["nodes"] = [new if n == old else n for n in st["nodes"]]
    return edit


def _g_in_spec(st: dict[str, Any]) -> None:
    n = st["nodes"]
    g = n.index(["leaf", "g", 0, 0, 0])
    n.append(["mul", g, g])
    n.append(["add", st["window"]["spec"], len(n) - 1])
    st["window"]["spec"] = len(n) - 1


CHANNEL_EDITS = {
    "shape with a bool": (lambda st: st.__setitem__("shape", [2, True, 2]), "integers"),
    "shape with a float": (lambda st: st.__setitem__("shape", [2, 2.0, 2]), "integers"),
    "params a bool": (lambda st: st.__setitem__("params", True), "params"),
    "shape of rank 1": (lambda st: st.__setitem__("shape", [4]), "shape"),
    "leaf index a bool": (_leaf(["leaf", "in0", 1, 0, 0], ["leaf", "in0", True, 0, 0]), "bad leaf"),
    "leaf index a float": (_leaf(["leaf", "in0", 1, 0, 0], ["leaf", "in0", 1.0, 0, 0]), "bad leaf"),
    "leaf index negative": (_leaf(["leaf", "in0", 1, 0, 0], ["leaf", "in0", -1, 0, 0]), "spec at"),
    "element param at channel 1": (_leaf(["leaf", "in1", 0], ["leaf", "in1", 1]), "element leaf"),
    "element input of short rank": (_leaf(["leaf", "in0", 0, 0, 0], ["leaf", "in0", 0, 0]), "element leaf"),
    "a sixth input": (_leaf(["leaf", "in4", 0], ["leaf", "in5", 0]), "outside"),
    "a stat leaf": (_leaf(["leaf", "in4", 0], ["leaf", "s", 0]), "outside"),
    "one vjp too many": (lambda st: st["window"]["vjp"].append(st["window"]["vjp"][0]), "one per input"),
    "input vjp read as a param's": (lambda st: st["plane"]["vjp"].__setitem__(0, st["plane"]["vjp"][1]),
                                    "terms"),
    "element spec reading g": (_g_in_spec, "spec at"),
}


def test_the_channels_statement_is_accepted() -> None:
    from torchlean.certificates import check

    assert check(_channels()).ok


@pytest.mark.parametrize("what", list(CHANNEL_EDITS))
def test_a_hand_built_channels_statement_is_refused(what: str) -> None:
    from torchlean.certificates import check

    edit, why = CHANNEL_EDITS[what]
    st = _channels()
    edit(st)
    v = check(st)
    assert not v.ok and why in v.reason, v.reason


def _bn_node(shape: tuple[int, ...]) -> list[Any]:
    from torchlean.proofs.compose import node_obligations

    c = [shape[1]]
    f = {"shapes": [list(shape), c, c, c, c], "attrs": {"eps": 1e-5}, "ints": {}, "column_major": []}
    return node_obligations("batch_norm", "batch_norm.audit20", f)


def _node_values(nodes: list[Any], env: dict[str, Any]) -> list[Any]:
    import mpmath

    ops = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "neg": lambda a: -a, "div": lambda a, b: a / b, "sqrt": mpmath.sqrt}
    out: list[Any] = []
    for n in nodes:
        if n[0] == "leaf":
            # the plane's leaves matter to no window term: any positive value (divisors stay real)
            out.append(env.get(n[1] + "_" + "_".join(map(str, n[2:])), mpmath.mpf(1)))
        elif n[0] == "c":
            out.append(mpmath.mpf(Fraction(n[1]).numerator) / Fraction(n[1]).denominator)
        else:
            out.append(ops[n[0]](*(out[i] for i in n[1:])))
    return out


def _window_against_element_claim(obs: list[Any]) -> list[str]:
    """Where the channels statement's element terms (run on terms) differ from the element claim
    they rest on (run on sympy), at random points: the tie ``check_windows`` does not make."""
    import random

    import mpmath

    from torchlean.proofs.counterexample import evaluate

    mpmath.mp.dps = 50
    element, _, channels = obs
    st = channels.data["statement"]
    eqs = read_script(element.smtlib).goal[1][1:]
    assert len(eqs) == len(st["window"]["vjp"]) == 5
    rng, bad = random.Random(20), []
    for _ in range(5):
        one = "_".join("0" * len(st["shape"]))
        leaf = {f"in0_{one}": rng.uniform(-3, 3), **{f"in{k}_0": rng.uniform(-3, 3) for k in (1, 3, 4)},
                "in2_0": rng.uniform(0.1, 3), f"g_{one}": rng.uniform(-3, 3)}
        leaf = {k: mpmath.mpf(v) for k, v in leaf.items()}
        smt = {("x" + k[2:] if k.startswith("in") else k): v for k, v in leaf.items()}
        vals = _node_values(st["nodes"], leaf)
        for k, eq in enumerate(eqs):
            w, rule, deriv = vals[st["window"]["vjp"][k]], evaluate(eq[1], smt), evaluate(eq[2], smt)
            if abs(w - rule) > 1e-40 * (1 + abs(w)) or abs(w - deriv) > 1e-40 * (1 + abs(w)):
                bad.append(f"in{k}: window {mpmath.nstr(w, 12)}, claim {mpmath.nstr(rule, 12)}")
    return bad


@pytest.mark.parametrize("shape", [(2, 2, 2), (1, 3, 2, 2), (2, 1, 1, 2, 2)])
def test_the_channels_window_is_the_element_claims_function(shape: tuple[int, ...]) -> None:
    from torchlean.certificates.sexpr import read_script, show
    from torchlean.proofs.terms import element_claim

    obs = _bn_node(shape)
    assert [o.kind for o in obs] == ["autograd", "terms", "channels"]
    assert not _window_against_element_claim(obs)
    # the tie `check_windows` now makes holds for the honest derivation at each rank
    st = obs[2].data["statement"]
    assert show(read_script(obs[0].smtlib).goal) == f"(not {element_claim(st)})"

def _halved_on_terms(real: Any) -> Any:
    """batch_norm's rule with running_var's gradient halved on the term namespace only (the
    planted divergence: the element claim, proved on sympy, still holds)."""
    from torchlean.proofs.windows import TXP
    from torchlean.runtime.rules import Rule

    def vjp(xp, g, out, *xs, **a):
        gs = list(real.vjp(xp, g, out, *xs, **a))
        if xp is TXP:
            gs[2] = gs[2] * 0.5
        return tuple(gs)

    return Rule("batch_norm", real.forward, vjp)



def test_planted_namespace_divergence_passes_the_checker_but_not_this_test(monkeypatch) -> None:
    # a VJP that halves running_var's gradient only when run on terms: the channels statement
    # (window and plane both from terms) replays, and the element claim (sympy) is the honest one
    # (its hash unchanged), so the checker's tie by kind/shape/attrs holds; only the values differ
    from torchlean.certificates import check
    from torchlean.runtime.rules import RULES

    honest = _bn_node((2, 2, 2))
    real = RULES["batch_norm"]

    monkeypatch.setitem(RULES, "batch_norm", _halved_on_terms(real))
    obs = _bn_node((2, 2, 2))
    assert obs[0].hash == honest[0].hash and obs[2].hash != honest[2].hash
    assert check(obs[2].data["statement"]).ok
    assert any(b.startswith("in2") for b in _window_against_element_claim(obs))


@pytest.mark.solver
def test_planted_namespace_divergence_is_checked_end_to_end(monkeypatch, tmp_path) -> None:
    # the same planted rule through `check_one`: the honest element claim discharged (cvc5) and
    # checked; the diverging channels claim was "checked" too on main (its statement replays, its
    # element claim is checked, kind/shapes/attrs/subject agree) and is now refused, its element
    # terms not the claim's (`terms.element_claim`); the honest one stays checked
    from torchlean.proofs.artifacts import check_one
    from torchlean.proofs.compose import NODES
    from torchlean.proofs.discharge import discharge
    from torchlean.runtime.rules import RULES

    real = RULES["batch_norm"]
    obs = _bn_node((2, 2, 2))
    for ob in obs:
        monkeypatch.setitem(NODES, ob.name, ob)
    reports = discharge(obs, tmp_path, solver="cvc5", timeout=60, progress=False)
    assert all(r.status == "proved" for r in reports), [(r.name, r.status) for r in reports]

    monkeypatch.setitem(RULES, "batch_norm", _halved_on_terms(real))
    bad = _bn_node((2, 2, 2))
    monkeypatch.setitem(NODES, bad[2].name, bad[2])
    (r,) = discharge([bad[2]], tmp_path, solver="cvc5", timeout=60, progress=False)
    assert all(check_one(tmp_path, ob).status == "checked" for ob in obs)
    assert r.status == "proved" and _window_against_element_claim(bad)
    out = check_one(tmp_path, bad[2])
    assert out.status == "rejected" and "element terms" in out.detail, out
