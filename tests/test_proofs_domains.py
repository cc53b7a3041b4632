"""The trusted ``claim`` kind: a forward/autograd claim's ``dom_*`` atoms drawn from its spec side.

Before domains31 a fixed-shape claim was replayed as a plain ``refutation``: its ``dom_*`` asserts,
derived by untrusted ``proofs/autograd.py``, were returned as printed assumptions and never tested,
so a derivation with an over-strong or empty domain made a wrong VJP "checked". Now every atom must
be a divisor's ``!= 0``, a sqrt/log argument's ``> 0`` (sqrt's ``>= 0`` too) or a kink
``(or (> a b) (< a b))`` of a comparison, each read from the spec side of the claim's equations
(``certificates/domains.py``). The end-to-end tests plant a wrong VJP with such a domain, discharge
it with cvc5 and show ``check_one`` refusing it (on the old code it printed **checked**); torch is
the reference that the VJP is wrong.
"""

from __future__ import annotations

from typing import Any

import pytest
import sympy

from torchlean.certificates import check
from torchlean.certificates.core import Rejected
from torchlean.certificates.domains import check_domain
from torchlean.proofs.autograd import Case, rule_obligations
from torchlean.proofs.cli import collect
from torchlean.proofs.obligation import refutation_kind
from torchlean.runtime.rules import RULES
from torchlean.spec.primitives import PRIMITIVES


@pytest.fixture(scope="module")
def library() -> dict[str, Any]:
    return {o.name: o for o in collect(library=True)}


def _refused(text: str) -> str:
    with pytest.raises(Rejected) as e:
        check_domain(text)
    return str(e.value)


# -- the library's statements ---------------------------------------------------------------------

def test_every_shipped_claim_domain_is_drawn_from_its_spec(library: dict[str, Any]) -> None:
    claims = [o for o in library.values() if o.kind in ("forward", "autograd")]
    counted = {o.name: check_domain(o.smtlib) for o in claims}
    # (96: session 33's cast added one forward and one autograd claim per float format)
    assert len(claims) == 96 and sum(counted.values()) > 0
    with_domain = sorted(n for n, k in counted.items() if k)
    assert with_domain == sorted(
        [f"forward.{p}" for p in ("batch_norm", "div", "log", "sqrt")]
        + [f"autograd.{p}" for p in ("abs", "batch_norm", "div", "leaky_relu", "log", "max", "max_pool2d",
                                     "maximum", "minimum", "relu", "sqrt")])


def test_claims_are_replayed_by_the_claim_kind() -> None:
    assert [refutation_kind(k) for k in ("forward", "autograd", "ibp", "relax")] == \
        ["claim", "claim", "refutation", "refutation"]


def test_the_domains_are_the_specs_definedness(library: dict[str, Any]) -> None:
    # what the derivation now states: the spec's own sqrt argument (batch_norm), the derivative's
    # divisor (log), sqrt defined at 0 (forward), no kink domain on a forward claim
    assert "(> (+ (/ 5902958103587057 590295810358705651712) x2_0) 0) :named dom_0" in \
        library["forward.batch_norm"].smtlib
    assert "(not (= x0_0 0)) :named dom_0" in library["autograd.log"].smtlib
    assert "(>= x0_0 0) :named dom_0" in library["forward.sqrt"].smtlib
    assert "(> x0_0 0) :named dom_0" in library["autograd.sqrt"].smtlib
    assert "dom_" not in library["forward.relu"].smtlib
    assert "(or (> x0_0 0) (< x0_0 0)) :named dom_0" in library["autograd.relu"].smtlib


@pytest.mark.parametrize("name, old, new, why", [
    # the kink x = 0 is the spec's; x > 0 also drops x < 0, where the claim must hold too
    ("autograd.abs", "(or (> x0_0 0) (< x0_0 0))", "(> x0_0 0)", "over-strong kink"),
    # an empty domain: neither atom is a divisor, root argument or kink of the spec
    ("autograd.div", "(not (= x1_0 0))", "(and (> x1_0 1) (< x1_0 0))", "empty"),
    ("autograd.div", "(not (= x1_0 0))", "(> x1_0 1)", "not the spec's"),
    # x0 is no divisor of div's spec (x1 is)
    ("autograd.div", "(not (= x1_0 0))", "(not (= x0_0 0))", "another input's divisor"),
    # the derivative 1/x has no log: x > 0 is narrower than where it is defined
    ("autograd.log", "(not (= x0_0 0))", "(> x0_0 0)", "narrower than the derivative"),
    # log is undefined at 0: >= is only sqrt's
    ("forward.log", "(> x0_0 0)", "(>= x0_0 0)", "log at 0"),
    # a kink whose two sides are not the same comparison
    ("autograd.relu", "(or (> x0_0 0) (< x0_0 0))", "(or (> x0_0 0) (< x0_0 1))", "kink halves differ"),
    ("autograd.relu", "(or (> x0_0 0) (< x0_0 0))", "(or (> x0_0 1) (< x0_0 1))", "kink not the spec's"),
    # constant atoms, false or true, are never a spec's definedness
    ("autograd.sqrt", "(> x0_0 0)", "(> 0 1)", "false constant"),
    ("autograd.sqrt", "(> x0_0 0)", "(not (= 0 0))", "false constant divisor"),
    ("autograd.sqrt", "(> x0_0 0)", "(> 1 0)", "true constant"),
    # another shape of atom
    ("autograd.sqrt", "(> x0_0 0)", "(< 0 x0_0)", "unaccepted shape"),
    ("autograd.sqrt", "(> x0_0 0)", "(> (tl_sqrt x0_0) 0)", "not the argument"),
])
def test_a_domain_not_drawn_from_the_spec_is_refused(library, name, old, new, why) -> None:
    text = library[name].smtlib
    assert f"(! {old} :named dom_0)" in text, why
    assert check_domain(text) >= 1
    planted = text.replace(f"(! {old} :named dom_0)", f"(! {new} :named dom_0)")
    assert "is not a divisor, sqrt/log argument or kink" in _refused(planted), why


def test_the_runtime_side_supplies_no_domain(library: dict[str, Any]) -> None:
    # sqrt's claim with the two sides swapped: the spec side is then the runtime's VJP terms
    text = library["autograd.sqrt"].smtlib
    goal = text[text.index("(assert (! (not (= "):text.index(":named goal")]
    inner = goal[len("(assert (! (not (= "):-len(")) ")]
    assert check_domain(text) == 1
    lhs, rhs = _split(inner)
    assert "tl_sqrt" in lhs and "tl_sqrt" in rhs  # both sides hold sqrt(x): swapped still accepted
    # a runtime side holding sqrt(-x^2 - 1) supplies no "-x^2 - 1 > 0" (empty) to the domain
    bad = "(* (tl_sqrt (- (* (- 1) x0_0 x0_0) 1)) g_0)"
    planted = text.replace(goal, f"(assert (! (not (= {bad} {rhs})) ").replace(
        "(! (> x0_0 0) :named dom_0)", "(! (> (- (* (- 1) x0_0 x0_0) 1) 0) :named dom_0)")
    assert "is not a divisor" in _refused(planted)
    swapped = planted.replace(f"(= {bad} {rhs})", f"(= {rhs} {bad})")
    assert check_domain(swapped) == 1  # the same atom is the spec side's when it holds that sqrt


def _split(inner: str) -> tuple[str, str]:
    """The two top-level terms of ``A B``."""
    depth = 0
    for i, c in enumerate(inner):
        depth += c == "("
        depth -= c == ")"
        if depth == 0 and c == " ":
            return inner[:i], inner[i + 1:]
    raise ValueError(inner)


@pytest.mark.parametrize("spec, atom", [
    ("(* g_0 (/ 1 0))", "(not (= 0 0))"),  # a spec dividing by the constant 0: no fact
    ("(* g_0 (tl_sqrt (- 1)))", "(> (- 1) 0)"),  # the square root of a negative constant: no fact
    ("(* g_0 (ite (> 1 0) 1 0))", "(or (> 1 0) (< 1 0))"),  # a constant comparison: no kink
    # exp(x)·exp(-x) - 1 is 0 for every real x but not a constant polynomial in its atoms: a kink
    # or divisor over function atoms gives no fact (the "kink" would be the empty domain)
    ("(* g_0 (ite (>= (* (tl_exp x) (tl_exp (- x))) 1) 1 0))",
     "(or (> (* (tl_exp x) (tl_exp (- x))) 1) (< (* (tl_exp x) (tl_exp (- x))) 1))"),
    ("(* g_0 (/ 1 (- (* (tl_exp x) (tl_exp (- x))) 1)))", "(not (= (* (tl_exp x) (tl_exp (- x))) 1))"),
])
def test_a_spec_term_that_may_vanish_identically_gives_no_domain(spec: str, atom: str) -> None:
    text = ("(set-logic QF_UFNRA)\n(declare-fun g_0 () Real)\n(declare-fun x () Real)\n"
            "(declare-fun tl_sqrt (Real) Real)\n(declare-fun tl_exp (Real) Real)\n"
            f"(assert (! {atom} :named dom_0))\n(assert (! (not (= g_0 {spec})) :named goal))\n(check-sat)\n")
    assert "is not a divisor" in _refused(text)
    assert check_domain(text.replace(f"(! {atom} :named dom_0)", "(! true :named ax_none)")
                        .replace("(assert (! true :named ax_none))\n", "")) == 0


def test_a_goal_not_made_of_equations_is_refused(library: dict[str, Any]) -> None:
    text = library["autograd.sqrt"].smtlib.replace("(assert (! (not (= ", "(assert (! (not (<= ")
    assert "claim must be (= RUNTIME SPEC)" in _refused(text)


def test_the_claim_kind_replays_and_needs_a_tree(library: dict[str, Any]) -> None:
    import json
    from pathlib import Path

    import torchlean.proofs as tp
    from torchlean.proofs.artifacts import path_for

    ob = library["autograd.abs"]
    tree = json.loads(path_for(Path(tp.__file__).parent / "library", ob).read_text())["certificate"]["tree"]
    assert check({"kind": "claim", "statement": ob.smtlib, "tree": tree}).ok
    assert not check({"kind": "claim", "statement": ob.smtlib, "tree": None}).ok
    planted = ob.smtlib.replace("(! (or (> x0_0 0) (< x0_0 0)) :named dom_0)", "(! (> x0_0 0) :named dom_0)")
    v = check({"kind": "claim", "statement": planted, "tree": tree})
    assert not v.ok and "kink of the claim's spec side" in v.reason


# -- end to end: a wrong VJP with a planted domain, discharged (cvc5) and checked -----------------

def _wrong_abs(xp: Any, g: Any, out: Any, x: Any) -> tuple[Any]:
    return (g,)  # d|x|/dx is sign(x): this is right for x > 0 only


def _wrong_div(xp: Any, g: Any, out: Any, a: Any, b: Any) -> tuple[Any, Any]:
    return (g * 0, g * 0)


def _wrong_log(xp: Any, g: Any, out: Any, x: Any) -> tuple[Any]:
    return (g * xp.sqrt(-x * x - 1),)  # wrong everywhere; its own sqrt argument is never > 0


def _planted(prim: str, vjp: Any, dom: Any, shapes: Any) -> Any:
    case = Case(shapes, grad_domain=(dom, ("planted",)))
    obs = list(rule_obligations(prim, RULES[prim].forward, vjp, PRIMITIVES[prim].sympy, case,
                                subject=f"primitive:{prim}", tag=".planted"))
    return obs[1]


PLANTS = {
    # x > 0: over-strong (the spec's kink is x != 0); the VJP g is wrong at every x < 0
    "over-strong": ("abs", _wrong_abs, lambda xs: [xs[0][0] > 0], [(1,)]),
    # x1 > 1 and x1 < 0: empty; a zero VJP for div
    "empty": ("div", _wrong_div, lambda xs: [xs[1][0] > 1, xs[1][0] < 0], [(1,), (1,)]),
    # -x^2 - 1 > 0, the runtime VJP's own sqrt argument: empty
    "runtime's": ("log", _wrong_log, lambda xs: [-xs[0][0] ** 2 - 1 > 0], [(1,)]),
}


def test_the_planted_vjps_are_wrong_against_torch() -> None:
    torch = pytest.importorskip("torch")
    for prim, x in (("abs", -1.5), ("div", 2.0), ("log", 0.5)):
        t = torch.tensor([x], dtype=torch.float64, requires_grad=True)
        y = torch.abs(t) if prim == "abs" else 3.0 / t if prim == "div" else torch.log(t)
        y.sum().backward()
        want = float(t.grad[0])
        got = {"abs": 1.0, "div": 0.0, "log": float("nan")}[prim]  # the planted VJPs at g = 1
        assert not want == got, prim  # (log: sqrt of a negative number, no real value at all)


@pytest.mark.solver
@pytest.mark.parametrize("what", sorted(PLANTS))
def test_a_planted_domain_makes_no_claim_checked(what, tmp_path) -> None:
    from torchlean.proofs.artifacts import check_one
    from torchlean.proofs.discharge import discharge

    prim, vjp, dom, shapes = PLANTS[what]
    ob = _planted(prim, vjp, dom, shapes)
    assert "dom_0" in ob.smtlib
    (r,) = discharge([ob], tmp_path, solver="cvc5", timeout=60, progress=False)
    assert r.status in ("proved", "trusted"), (r.status, r.message)  # true under the planted domain
    out = check_one(tmp_path, ob)
    # before domains31 this printed "checked" (a replayed tree) for all three
    assert out.status == "rejected" and "not a divisor, sqrt/log argument or kink" in out.detail, out


@pytest.mark.solver
def test_the_honest_claims_stay_checked(tmp_path) -> None:
    from torchlean.proofs.artifacts import check_one
    from torchlean.proofs.discharge import discharge

    obs = [_planted("abs", RULES["abs"].vjp, lambda xs: [sympy.Or(xs[0][0] > 0, xs[0][0] < 0)], [(1,)])]
    discharge(obs, tmp_path, solver="cvc5", timeout=60, progress=False)
    assert check_one(tmp_path, obs[0]).status == "checked"
