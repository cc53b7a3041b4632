"""Audit audit19: the ``rows`` kind's element domain (``certificates/terms.py``, ``check_rows``).

A ``rows`` statement names the element claim it rests on; that claim (``proofs/rows.py``,
``element_obligation``) is proved on the domain that the statement's ``positive`` terms are > 0. On
main the checker never read ``positive``: an (untrusted) decomposition listing a domain that is never
true (here -(s0^2) - 1 > 0, which sympy turns into ``false``) made the element claim "proved" for any
VJP, and softmax's dx = y (g - 2 sum g y), wrong by ~0.1 against torch, was *checked* end to end.
Now each positive term, at every position with the row's stats, must be a (non-constant) sqrt
argument or divisor of the row spec's own terms. Each case is also read against an independent
reference (torch's gradient, or sympy deciding that the listed domain is empty).
"""

from __future__ import annotations

import pytest
import sympy

from torchlean.certificates import check
from torchlean.proofs import rows
from torchlean.proofs.windows import Term
from torchlean.runtime.rules import RULES, Rule

SF = RULES["softmax"].forward


def _fields(prim, n, eps=1e-5):
    if prim == "layer_norm":
        return {"shapes": [[1, 1, n], [n], [n]], "attrs": {"eps": eps, "normalized_ndim": 1}, "ints": {},
                "column_major": []}
    return {"shapes": [[1, 1, 1, n]], "attrs": {"axis": -1}, "ints": {}, "column_major": []}


def _wrong_everywhere(xp, g, out, x, axis=-1):
    """dx = y (g - 2 sum g y): wrong in every element (torch below)."""
    return (out * (g - 2 * xp.sum(g * out, axis=axis, keepdims=True)),)


def _sm(pos):
    """softmax's decomposition with a VJP wrong in every element (T0's summand doubled, as
    ``_wrong_everywhere`` needs) and the domain ``pos(x, s)``."""

    def dec(x, p, g, s, t, n, attrs):
        e = Term("exp", x)
        return e / s[0], [e], [g * e / s[0] + t[0] * e], [-2 * (g * e / s[0]) / s[0]], pos(x, s)

    return dec


EMPTY = {  # domains no real point satisfies
    "-(s0^2) - 1": lambda x, s: [-(s[0] * s[0]) - 1],
    "-(x^2)": lambda x, s: [-(x * x)],
    "s0 and -s0": lambda x, s: [s[0], -s[0]],
    "the constant -1": lambda x, s: [s[0] * 0 - 1],
}


def _domain(st):
    """The element claim's domain as sympy reads it (the claim ``element_obligation`` derives)."""
    ex = rows._sympy(st)
    return sympy.And(*[ex[p] > 0 for p in st["element"]["positive"]])


@pytest.mark.parametrize("what", list(EMPTY))
def test_an_empty_element_domain_is_refused(monkeypatch, what):
    monkeypatch.setitem(RULES, "softmax", Rule("softmax", SF, _wrong_everywhere))
    monkeypatch.setitem(rows.ELEMENT, "softmax", _sm(EMPTY[what]))
    st = rows.statement("softmax", _fields("softmax", 5))
    # the reference: z3 finds no real point of the listed domain (exp read as a positive function)
    z3 = pytest.importorskip("z3")
    ex = rows._sympy(st)
    env = {"in0": z3.Real("in0"), "s0": z3.Real("s0")}
    e = z3.Function("exp", z3.RealSort(), z3.RealSort())
    solver = z3.Solver()
    solver.add(z3.ForAll([env["in0"]], e(env["in0"]) > 0))
    for p in st["element"]["positive"]:
        solver.add(eval(sympy.pycode(ex[p]).replace("math.exp", "e"), {}, {**env, "e": e}) > 0)
    assert solver.check() == z3.unsat
    v = check(st)
    assert not v.ok and "positive term" in v.reason, v.reason


def test_the_wrong_softmax_vjp_is_wrong_against_torch():
    torch = pytest.importorskip("torch")
    x = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(19), requires_grad=True)
    g = torch.linspace(-1, 2, 5, dtype=torch.float64)
    y = torch.softmax(x, -1)
    (gx,) = torch.autograd.grad(y, x, g)
    wrong = y * (g - 2 * (g * y).sum())
    assert (gx - wrong).abs().max() > 1e-3


@pytest.mark.solver
def test_the_empty_domain_made_the_element_claim_provable(monkeypatch, tmp_path):
    """Why the rule is needed: with the domain empty the (false) element claim was proved (main
    before domains31: status "proved", then checked by ``check_one``). Since domains31 the element
    claim's domain is the spec side's definedness (the planted term is no sqrt argument, so it is
    stated != 0: satisfiable) and the trusted ``claim`` kind refuses any atom not drawn from the
    spec side, so the false element claim is neither proved nor checked."""
    from torchlean.proofs.artifacts import check_one
    from torchlean.proofs.discharge import discharge

    monkeypatch.setitem(RULES, "softmax", Rule("softmax", SF, _wrong_everywhere))
    monkeypatch.setitem(rows.ELEMENT, "softmax", _sm(EMPTY["-(s0^2) - 1"]))
    el, ob = rows.obligations("softmax", _fields("softmax", 5))
    (report,) = discharge([el], tmp_path, solver="cvc5", timeout=60, progress=False)
    assert report.status == "refuted", report.status  # the wrong VJP, on a satisfiable domain
    assert check_one(tmp_path, el).status != "checked"
    assert "dom_" not in el.smtlib  # -(s0^2) - 1 != 0 always: no assumption left
    assert not check(ob.data["statement"]).ok


NARROW = {  # satisfiable, but not the spec's sqrt argument or divisor: refused too
    "s0 - 100": lambda x, s: [s[0] - 100],
    "x": lambda x, s: [x],
    "exp(x)": lambda x, s: [Term("exp", x)],
}


@pytest.mark.parametrize("what", list(NARROW))
def test_a_domain_other_than_the_specs_is_refused(monkeypatch, what):
    monkeypatch.setitem(rows.ELEMENT, "softmax", _sm_right(NARROW[what]))
    st = rows.statement("softmax", _fields("softmax", 4))
    v = check(st)
    assert not v.ok and "positive term" in v.reason, v.reason


def _sm_right(pos):
    def dec(x, p, g, s, t, n, attrs):
        e = Term("exp", x)
        return e / s[0], [e], [g * e / s[0] + t[0] * e], [-(g * e / s[0]) / s[0]], pos(x, s)

    return dec


@pytest.mark.parametrize("prim, n", [("layer_norm", 2), ("layer_norm", 7), ("softmax", 2), ("softmax", 9)])
def test_the_libraries_domains_are_accepted(prim, n):
    """The real decompositions: layer_norm's sqrt argument (the row's variance + eps), softmax's s0
    (the spec's divisor sum exp): checked, and the sqrt argument at the stats is the variance + eps."""
    st = rows.statement(prim, _fields(prim, n))
    assert check(st).ok
    if prim == "layer_norm":
        ex = rows._sympy(st)
        u = ex[st["element"]["positive"][0]]
        xs = sympy.symbols(f"x0:{n}", real=True)
        s0 = sum(xs) / n
        s1 = sum(v * v for v in xs) / n
        var = sum((v - s0) ** 2 for v in xs) / n
        at = u.subs({sympy.Symbol("s0", real=True): s0, sympy.Symbol("s1", real=True): s1,
                     sympy.Symbol("s2", real=True): s0})
        assert sympy.simplify(at - var - sympy.Rational(1e-5)) == 0


def test_a_missing_domain_is_accepted_and_needs_no_assumption(monkeypatch):
    """An empty ``positive`` list assumes nothing (the element claim then holds everywhere or is
    refuted): accepted, so the rule refuses only what widens the claim."""
    monkeypatch.setitem(rows.ELEMENT, "softmax", _sm_right(lambda x, s: []))
    assert check(rows.statement("softmax", _fields("softmax", 3))).ok


def _wrong_with_a_divisor(xp, g, out, x, axis=-1):
    """``_wrong_everywhere`` plus 0 / (-(sum exp)^2 - 1): the runtime's own terms hold the empty
    domain's divisor, so the domain must come from the spec's terms, never the VJP's."""
    import numpy as np

    e = np.vectorize(lambda v: Term("exp", v), otypes=[object])(x)  # the spec's exp terms
    s = xp.sum(e, axis=axis, keepdims=True)
    return (out * (g - 2 * xp.sum(g * out, axis=axis, keepdims=True)) + (x - x) / (-(s * s) - 1),)


def test_a_divisor_only_the_vjp_holds_is_no_domain(monkeypatch):
    monkeypatch.setitem(RULES, "softmax", Rule("softmax", SF, _wrong_with_a_divisor))
    monkeypatch.setitem(rows.ELEMENT, "softmax", _sm(EMPTY["-(s0^2) - 1"]))
    v = check(rows.statement("softmax", _fields("softmax", 4)))
    assert not v.ok and "positive term" in v.reason, v.reason
