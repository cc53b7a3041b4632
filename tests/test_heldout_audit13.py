"""Audit audit13: the proof side of the trusted checker (refutation replay, normal forms, axioms,
the chain-rule tape), attacked with hand-made trees and statements.

Each case asserts the checker's refusal (or its reading) against an independent reference: z3 on
the very SMT-LIB text (a statement z3 finds ``sat`` is false, so no tree may refute it), or a
brute-force reading. Two holes were found and fixed (TRUST_BOUNDARIES.md, "Audit audit13"):

1. ``refute.Leaf.assume`` read ``not (p => q)`` as ``not p and not q`` (the branch for p and
   not q was unreachable): the three-node tree ``split (=> true false)`` refuted *every*
   statement, and a tree for a broken tanh VJP was ``checked`` by ``proofs check``.
2. ``poly.r_div`` moved a divisor's own denominators into the numerator with no factor left to
   show nonzero: ``(/ 1 (/ 1 x))`` read as x, so 1/(1/x) = x was refuted (z3: sat at x = 0).
"""

import json

import pytest

import torchlean  # noqa: F401
from torchlean.certificates import check
from torchlean.certificates.core import Rejected
from torchlean.certificates.poly import Normaliser, numeral
from torchlean.certificates.sexpr import parse_one, read_script
from torchlean.proofs.artifacts import check_one
from torchlean.proofs.autograd import Case, rule_obligations
from torchlean.proofs.cli import main
from torchlean.runtime.rules import RULES
from torchlean.spec.primitives import PRIMITIVES

z3 = pytest.importorskip("z3")

FALSE = {"leaf": "false"}


def script(*asserts: str, consts: str = "x", funs: str = "") -> str:
    decl = "".join(f"(declare-const {c} Real)\n" for c in consts.split())
    decl += "".join(f"(declare-fun {f} (Real) Real)\n" for f in funs.split())
    body = "".join(f"(assert {a})\n" for a in asserts)
    return f"(set-logic QF_UFNRA)\n{decl}{body}(check-sat)\n"


def goal(claim: str) -> str:
    return f"(! (not {claim}) :named goal)"


def z3_says(text: str) -> str:
    s = z3.Solver()
    s.from_string(text)
    return str(s.check())


def replays(text: str, tree) -> bool:
    return check({"kind": "refutation", "statement": text, "tree": tree}).ok


def _tanh(vjp):
    (ob,) = [o for o in rule_obligations("tanh", RULES["tanh"].forward, vjp, PRIMITIVES["tanh"].sympy,
                                         Case(((1,),)), subject="primitive:tanh") if o.kind == "autograd"]
    return ob


def _wrong_tanh_vjp(xp, g, out, x):
    return (g * (1 - x),)


# -- hole 1: not (p => q) ------------------------------------------------------------------------

IMPLIES_SPLIT = {"split": "(=> true false)", "then": FALSE, "else": FALSE}


@pytest.mark.parametrize("claim", ["(> x 0)", "(= x 1)", "(< (* x x) 0)", "false"])
def test_split_on_an_implication_does_not_refute_a_false_claim(claim):
    """On main this tree refuted every statement: its else-branch read not (true => false) as
    not true and not false, which closes; the real case (true and not false) is feasible."""
    text = script(goal(claim))
    assert z3_says(text) == "sat"
    assert not replays(text, IMPLIES_SPLIT)


def test_negated_implication_in_the_claim_is_p_and_not_q():
    # claim: x >= 0 => x < 0, false at x = 0; main's reading (x < 0, x >= 0) closed by Farkas
    text = script(goal("(=> (>= x 0) (< x 0))"))
    assert z3_says(text) == "sat"
    assert not replays(text, {"leaf": "farkas", "coeffs": [[[0], "1"], [[1], "1"]]})
    assert not replays(text, {"leaf": "farkas", "coeffs": [[[0], "1"]]})
    # the true claim x > 1 => x > 0 still refutes by the right reading: x - 1 > 0 and -x >= 0
    good = script(goal("(=> (> x 1) (> x 0))"))
    assert z3_says(good) == "unsat"
    assert replays(good, {"leaf": "farkas", "coeffs": [[[0], "1"], [[1], "1"]]})


def test_negated_boolean_ite_is_read_through_the_implication():
    # not (ite (> x 0) (> x 1) (< x -1)): one case must fail; at x = 1/2 it does
    text = script(goal("(ite (> x 0) (> x 1) (< x (- 1)))"))
    assert z3_says(text) == "sat"
    tree = {"split": "(> x 0)", "then": {"leaf": "farkas", "coeffs": [[[0], "1"], [[1], "1"]]},
            "else": {"leaf": "farkas", "coeffs": [[[0], "1"], [[1], "1"]]}}
    assert not replays(text, tree)
    assert not replays(text, {"split": "(> x 0)", "then": FALSE, "else": FALSE})


def test_forged_tree_for_a_wrong_vjp_is_not_checked(tmp_path):
    """End to end: a wrong tanh VJP's obligation (z3: sat) with an artifact holding the
    implication-split tree; main's ``check_one`` said ``checked``."""
    ob = _tanh(_wrong_tanh_vjp)
    assert z3_says(ob.smtlib) == "sat"
    art = {"format": 1, "obligation": {"hash": ob.hash, "smtlib": ob.smtlib, "name": ob.name},
           "result": "unsat", "certificate": {"kind": "refutation", "tree": IMPLIES_SPLIT}}
    (tmp_path / f"{ob.name}.json").write_text(json.dumps(art))
    assert check_one(tmp_path, ob).status == "rejected"


@pytest.mark.parametrize("formula", ["(=> true false false)", "(not true false)", "(ite true false)",
                                     "(=> false)"])
def test_connectives_outside_their_arity_are_refused(formula):
    """SMT-LIB's => is right-associative (=> a b c) = a => (b => c); the checker read two
    arguments. Any reading is sound for a split only if both branches share it, so the arities
    are fixed: refused even where every leaf closes (the claim true, z3: unsat)."""
    assert not replays(script(goal("(> x 0)")), {"split": formula, "then": FALSE, "else": FALSE})
    text = script(goal("true"))
    assert z3_says(text) == "unsat" and replays(text, FALSE)
    assert not replays(text, {"split": formula, "then": FALSE, "else": FALSE})


# -- hole 2: a divisor that divides ----------------------------------------------------------------

@pytest.mark.parametrize("claim", ["(= (/ 1 (/ 1 x)) x)", "(= (/ x (/ 2 x)) (/ (* x x) 2))",
                                   "(= (/ 1 (+ 1 (/ 1 x))) (/ x (+ x 1)))"])
def test_division_by_a_dividing_term_is_refused(claim):
    text = script(goal(claim), "(! (not (= (+ x 1) 0)) :named dom_x1)")
    assert z3_says(text) == "sat"  # x = 0: (/ 1 0) is any value in SMT-LIB
    for tree in (FALSE, {"split": "(= x 0)", "then": FALSE, "else": FALSE}):
        assert not replays(text, tree)


def test_plain_divisions_still_need_their_factor_shown_nonzero():
    # x * (1/x) = 1 is false at x = 0; with dom x != 0 a zero leaf proves it
    bad = script(goal("(= (* x (/ 1 x)) 1)"))
    assert z3_says(bad) == "sat"
    leaf = {"leaf": "zero", "fact": 0, "ideal": [], "nonzero": [{"ne": [0]}]}
    assert not replays(bad, leaf)
    good = script("(! (not (= x 0)) :named dom_x)", goal("(= (* x (/ 1 x)) 1)"))
    assert z3_says(good) == "unsat"
    assert replays(good, {"leaf": "zero", "fact": 1, "ideal": [], "nonzero": [{"ne": [0]}]})
    assert not replays(good, {"leaf": "zero", "fact": 1, "ideal": [], "nonzero": [{"ne": [1]}]})
    assert not replays(good, {"leaf": "zero", "fact": 1, "ideal": [], "nonzero": []})


def test_divided_inequality_needs_the_sign_and_the_right_sign():
    # 1/x > 0 for x != 0 is false for x < 0 (z3: sat)
    text = script("(! (not (= x 0)) :named dom_x)", goal("(> (/ 1 x) 0)"))
    assert z3_says(text) == "sat"
    assert not replays(text, {"leaf": "farkas", "coeffs": [[[1], "1"]]})  # no sign decided
    # x > 0: 1/x > 0 reads 1 > 0, the goal is false (closes); x < 0: it reads -1 > 0, the goal
    # true (does not close); x = 0: dom is false (closes)
    assert not replays(text, {"split": "(> x 0)", "then": FALSE,
                              "else": {"split": "(< x 0)", "then": FALSE, "else": FALSE}})
    assert not replays(text, {"split": "(> x 0)", "then": FALSE,
                              "else": {"split": "(< x 0)", "then": {"leaf": "farkas", "coeffs": [[[3], "1"]]},
                                       "else": FALSE}})
    # under x > 0 (z3: unsat) the sign split decides the goal false outright; without it, nothing
    good = script("(! (> x 0) :named dom_x)", goal("(> (/ 1 x) 0)"))
    assert z3_says(good) == "unsat"
    assert replays(good, {"split": "(> x 0)", "then": FALSE, "else": FALSE})
    assert not replays(good, FALSE)


# -- probes that found no hole -------------------------------------------------------------------

def test_axiom_premises_must_be_decided_before_their_conclusion_is_a_fact():
    # sqrt(x)^2 = x for all x is false (x = -1: a square is >= 0); the instance needs x >= 0
    ax = "(! (=> (>= x 0) (= (* (tl_sqrt x) (tl_sqrt x)) x)) :named ax_sqrt_sq_0)"
    text = script(ax, goal("(= (* (tl_sqrt x) (tl_sqrt x)) x)"), funs="tl_sqrt")
    assert z3_says(text) == "sat"
    zero = {"leaf": "zero", "fact": 0, "ideal": [], "nonzero": []}
    assert not replays(text, zero)
    assert not replays(text, {"split": "(>= x 0)", "then": {**zero, "ideal": [[1, "1"]], "fact": 1},
                              "else": zero})


@pytest.mark.parametrize("ax", [
    "(! (= (* (tl_sqrt x) (tl_sqrt x)) x) :named ax_sqrt_sq_0)",  # premise dropped
    "(! (= (tl_exp x) (* (tl_exp y) (tl_exp y))) :named ax_exp_add_0)",  # x is not y + y
    "(! (=> (<= x y) (<= (tl_log x) (tl_log y))) :named ax_mono_log_0)",  # no x > 0
    "(! (=> (<= x y) (<= (tl_sqrt y) (tl_sqrt x))) :named ax_mono_sqrt_0)",
    "(! (= (tl_exp x) 1) :named ax_exp_zero_0)",
    "(! (= (tl_exp 0) 1) :named ax_exp_zero)",  # no index: schema read as 'exp'
    "(! (= (tl_exp 0) 1) :named axexp_zero_0)",
])
def test_non_instances_of_the_axiom_schemas_are_refused(ax):
    text = script(ax, goal("(> x 0)"), consts="x y", funs="tl_sqrt tl_exp tl_log")
    assert not check({"kind": "refutation", "statement": text, "tree": FALSE}).ok


def test_an_undecided_ite_gives_no_fact_and_both_branches_must_close():
    # |x| > 0 is false at x = 0; the ite resolves only on a path that decided x > 0
    text = script(goal("(> (ite (> x 0) x (- x)) 0)"))
    assert z3_says(text) == "sat"
    assert not replays(text, {"leaf": "farkas", "coeffs": [[[0], "1"]]})
    then = {"leaf": "farkas", "coeffs": [[[0], "1"], [[1], "1"]]}
    for other in (FALSE, then, {"leaf": "farkas", "coeffs": [[[0], "1"], [[1], "1/2"]]}):
        assert not replays(text, {"split": "(> x 0)", "then": then, "else": other})


@pytest.mark.parametrize("formula", ["(or)", "(and)", "x", "(distinct x 0)", "(>= x 0 1)"])
def test_splits_on_odd_formulas_close_only_what_their_reading_closes(formula):
    text = script(goal("(> x 0)"))
    assert z3_says(text) == "sat"
    assert not replays(text, {"split": formula, "then": FALSE, "else": FALSE})


def test_negative_multipliers_products_and_squares():
    # x >= 1 does not give x >= 2 (z3: sat); -1 * (x - 1) - 1 * (2 - x) = -1 would "close" it
    two = script("(! (>= x 1) :named dom_x)", goal("(>= x 2)"))
    assert z3_says(two) == "sat"
    assert not replays(two, {"leaf": "farkas", "coeffs": [[[0], "-1"], [[1], "-1"]]})
    assert not replays(two, {"leaf": "farkas", "coeffs": [[[0, 1], "-1"]]})
    text = script(goal("(> x 0)"))  # fact 0: -x >= 0
    assert not replays(text, {"leaf": "farkas", "coeffs": [[[0], "-1"]]})
    assert not replays(text, {"leaf": "farkas", "coeffs": [[[0, 0], "-1"]]})
    assert not replays(text, {"leaf": "farkas", "coeffs": [[["sq", "x"], "-1"]]})
    assert not replays(text, {"leaf": "farkas", "coeffs": [[[0, 0, 0], "1"]]})
    # x * x < 0 is unsatisfiable: the square closes it
    sq = script(goal("(>= (* x x) 0)"))
    assert z3_says(sq) == "unsat"
    assert replays(sq, {"leaf": "farkas", "coeffs": [[[0], "1"], [["sq", "x"], "1"]]})


def test_conjuncts_need_one_refutation_per_conjunct():
    text = script(goal("(and (>= (* x x) 0) (> x 0))"))
    assert z3_says(text) == "sat"
    part = {"leaf": "farkas", "coeffs": [[[0], "1"], [["sq", "x"], "1"]]}
    assert not replays(text, {"conjuncts": [part]})
    assert not replays(text, {"conjuncts": [part, part]})
    assert not replays(text, {"conjuncts": [part, part, part]})


def test_reduce_only_by_a_fact_leading_in_the_atom():
    # y = x*x + y*y is not y^1-leading (y^2 is higher): reducing by it would read y as x^2 + y^2
    text = script("(! (= y (+ (* x x) (* y y))) :named dom_y)", goal("(= y (* x x))"), consts="x y")
    assert z3_says(text) == "sat"
    assert not replays(text, {"leaf": "zero", "fact": 1, "reduce": [[0, "y"]], "ideal": [], "nonzero": []})


def test_cong_needs_equal_arguments_by_the_facts():
    text = script("(! (= (* x y) 1) :named dom_xy)", goal("(= (f x) (f y))"), consts="x y", funs="f")
    assert z3_says(text) == "sat"
    leaf = {"leaf": "cong", "fact": 1, "apps": ["(f x)", "(f y)"], "ideal": [[0, "1"]]}
    assert not replays(text, leaf)
    assert not replays(text, {**leaf, "apps": ["(f x)", "(f x)"]})


@pytest.mark.parametrize("tok,val", [("7", 7), ("0.5", 0.5), ("007", 7), ("12.250", 12.25)])
def test_numerals_read_as_their_value(tok, val):
    assert numeral(tok) == val


@pytest.mark.parametrize("tok", ["1e5", "1/2", "1_0", "0x10", "1.", ".5", "1.5e0"])
def test_numerals_outside_smtlib_are_refused(tok):
    """Not a numeral and not a declared name: z3 refuses each as a term too."""
    s = read_script(script(goal("(> x 0)")))
    with pytest.raises(Rejected):
        Normaliser(s.constants, s.functions).term(tok)
    if tok != "1.":  # (z3 reads "1." as 1)
        with pytest.raises(z3.Z3Exception):
            z3_says(script(goal(f"(> x {tok})")))


def test_names_that_print_alike_stay_apart():
    s = read_script(script(goal("(> x 0)"), consts="x x.1 x_1 x1"))
    n = Normaliser(s.constants, s.functions)
    forms = [n.term(parse_one(t)).num for t in ("x", "x.1", "x_1", "x1", "(* x 1)")]
    assert forms[0] == forms[4] and len({str(sorted(f.items())) for f in forms[:4]}) == 4
    # x.1 is a name, not x times 0.1: the claim x.1 = x / 10 is false and is not refuted
    text = script(goal("(= x.1 (/ x 10))"), consts="x x.1")
    assert z3_says(text) == "sat" and not replays(text, FALSE)


@pytest.mark.parametrize("bad", [
    '{"leaf": "farkas", "coeffs": [[[0], NaN]]}',
    '{"leaf": "farkas", "coeffs": [[[0], Infinity]]}',
    '{"leaf": "farkas", "coeffs": [[[0], "1/0"]]}',
    '{"leaf": "farkas", "coeffs": [[[0], 1e400]]}',
    '{"leaf": "farkas", "coeffs": [[[0], "' + "9" * 5000 + '"]]}',
    '{"leaf": "farkas", "coeffs": [[[0.0], "1"]]}',
    '{"leaf": "farkas", "coeffs": [[[true], "1"]]}',
    '{"leaf": "zero", "fact": -1, "ideal": [], "nonzero": []}',
])
def test_malformed_numbers_in_an_artifact_are_refused_not_checked(tmp_path, bad):
    ob = _tanh(RULES["tanh"].vjp)
    text = ('{"format": 1, "obligation": {"hash": "HASH"}, "result": "unsat", "certificate": '
            '{"kind": "refutation", "tree": TREE}}').replace("HASH", ob.hash).replace("TREE", bad)
    (tmp_path / f"{ob.name}.json").write_text(text)
    assert check_one(tmp_path, ob).status in ("rejected", "malformed")


@pytest.mark.parametrize("wrong", [False, True])
def test_duplicate_keys_take_one_tree_which_must_replay(tmp_path, wrong):
    """JSON's last key wins; a wrong VJP (z3: sat) is refused whichever tree comes last (main
    checked it with the implication split last), the right one (z3: unsat) is checked."""
    ob = _tanh(_wrong_tanh_vjp if wrong else RULES["tanh"].vjp)
    assert z3_says(ob.smtlib) == ("sat" if wrong else "unsat")
    for first, last in ((IMPLIES_SPLIT, FALSE), (FALSE, IMPLIES_SPLIT)):
        text = ('{"format": 1, "obligation": {"hash": "HASH"}, "result": "unsat", "result": "unsat", '
                '"certificate": {"kind": "refutation", "tree": ONE, "tree": TWO}}').replace(
            "HASH", ob.hash).replace("ONE", json.dumps(first)).replace("TWO", json.dumps(last))
        (tmp_path / f"{ob.name}.json").write_text(text)
        # (the right claim's goal is false outright, so either tree closes it, split or not)
        assert check_one(tmp_path, ob).status == ("rejected" if wrong else "checked")


def test_check_fails_ci_on_missing_and_stale_artifacts(tmp_path, capsys):
    assert main(["check", "--include-library", "--dir", str(tmp_path), "autograd.tanh"]) == 1
    assert "missing autograd.tanh" in capsys.readouterr().out
    from torchlean.proofs.artifacts import LIBRARY_DIR
    art = json.loads((LIBRARY_DIR / "autograd.tanh.json").read_text())
    (tmp_path / "autograd.tanh.json").write_text(json.dumps(art))
    assert main(["check", "--include-library", "--dir", str(tmp_path), "autograd.tanh"]) == 0
    art["obligation"]["hash"] = "0" * 64
    (tmp_path / "autograd.tanh.json").write_text(json.dumps(art))
    assert main(["check", "--include-library", "--dir", str(tmp_path), "autograd.tanh"]) == 1
    assert "stale autograd.tanh" in capsys.readouterr().out


# -- the chain-rule tape ---------------------------------------------------------------------------

#: x (0), w (1) leaves; y = x * w (2); z = y + x (3), the root. True backward: node 0 gets
#: uses of y: [(1, 0)]; node 1 gets the seed; leaf 0 gets (0, 0) and (1, 1); leaf 1 gets (0, 1)
GRAPH = {"values": 4, "leaves": [0, 1], "root": 3,
         "nodes": [{"prim": "mul", "inputs": [0, 1], "output": 2, "key": "mul.a"},
                   {"prim": "add", "inputs": [2, 0], "output": 3, "key": "add.a"}]}
TRACE = {"calls": [[1, [[-1, 0]]], [0, [[1, 0]]]], "grads": {"0": [[0, 0], [1, 1]], "1": [[0, 1]]}}


def _tape(trace):
    return check({"kind": "composition", "graph": GRAPH, "trace": trace}).ok


def test_tape_accepts_the_chain_rule_and_only_it():
    assert _tape(TRACE)
    bad = [
        {**TRACE, "grads": {"0": [[0, 0]], "1": [[0, 1]]}},  # a dropped edge (x's use in add)
        {**TRACE, "grads": {"0": [[0, 0], [1, 1], [1, 1]], "1": [[0, 1]]}},  # a duplicated edge
        {**TRACE, "grads": {"0": [[0, 0], [1, 1]], "1": [[0, 1]], "01": [[0, 1]]}},  # leaf as "01"
        {**TRACE, "grads": {"0": [[0, 0], [1, 1]], "1": [[0, 1]], "3": [[1, 0]]}},  # not a leaf
        {**TRACE, "calls": [[1, [[-1, 0]]], [0, [[1, 0], [1, 0]]]]},  # y's cotangent twice
        {**TRACE, "calls": [[1, [[-1, 0]]], [0, [[1, 0]]], [0, [[1, 0]]]]},  # a VJP run twice
        {**TRACE, "calls": [[1, [[-1, 0]]], [0, [[1, 1]]]]},  # the other input's atom
        {**TRACE, "calls": [[1, [[-1, 0], [-1, 0]]], [0, [[1, 0]]]]},  # seed twice
        {**TRACE, "calls": [[1, [[-1, 0]]]]},  # mul's VJP not run
    ]
    for t in bad:
        assert not _tape(t), t


# -- linear VJPs at symbolic sizes: every accepted mutation is true by brute force -----------------

def _lin(e, env):
    if type(e) is int:
        return e
    if isinstance(e, str):
        return env[e]
    total = 0
    for k, c in e.items():
        for n in ([] if k == "1" else k.split("*")):
            c *= env[n]
        total += c
    return total


def _side(monos, env, shapes, vals):
    """The value of a list of monomials at one size assignment, by enumeration (None if an
    entry outside its array is read: the checker must never accept that)."""
    import itertools
    from fractions import Fraction

    total = Fraction(0)
    for m in monos:
        names = [v for v, _ in m["sum"]]
        for point in itertools.product(*[range(max(_lin(r, env), 0)) for _, r in m["sum"]]):
            e = {**env, **dict(zip(names, point))}
            if any(_lin(g, e) < 0 for g in m.get("ge", [])) or any(_lin(g, e) for g in m.get("eq", [])):
                continue
            prod, keep = Fraction(m["c"]), True
            for ex, name, idx in m.get("in", []):
                ix = tuple(_lin(i, e) for i in idx)
                if not all(0 <= i < n for i, n in zip(ix, shapes[name])):
                    return None
                keep = keep and _lin(ex, e) == vals[name][ix]
            for name, idx in m["atoms"]:
                ix = tuple(_lin(i, e) for i in idx)
                if not all(0 <= i < n for i, n in zip(ix, shapes[name])):
                    return None
                prod *= vals[name][ix]
            total += prod if keep else 0
    return total


def _brute_equal(st, rng, trials=3):
    import itertools

    symbols = sorted({n for shape in st["arrays"].values() for s in shape
                      for k in ([s] if isinstance(s, str) else s if isinstance(s, dict) else [])
                      for n in ([] if k == "1" else k.split("*"))})
    for _ in range(trials):
        env = {s: rng.randint(1, 3) for s in symbols}
        shapes = {a: tuple(_lin(s, env) for s in shape) for a, shape in st["arrays"].items()}
        vals = {a: {ix: rng.randint(-3, 3) for ix in itertools.product(*map(range, shp))}
                for a, shp in shapes.items()}
        for x, monos in st["rhs"].items():
            want = _side([m for m in st["lhs"] if any(a[0] == x for a in m["atoms"])], env, shapes, vals)
            got = _side(monos, env, shapes, vals)
            if want is None or got is None or want != got:
                return False
    return True


def _ints(node, path=()):
    if type(node) is int:
        yield path
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _ints(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _ints(v, (*path, i))


def _strings_in_atoms(st):
    """(path, other bound variables) for each bound-variable subscript of an rhs atom."""
    for x, monos in st["rhs"].items():
        for mi, m in enumerate(monos):
            bound = [v for v, _ in m["sum"]]
            for ai, (_, idx) in enumerate(m["atoms"]):
                for ii, i in enumerate(idx):
                    if isinstance(i, str) and i in bound and len(bound) > 1:
                        yield (x, mi, "atoms", ai, 1, ii), [v for v in bound if v != i]


def test_adjoint_mutations_accepted_only_when_true_by_brute_force():
    """Every library adjoint statement (45), with one integer of its VJP side (an index offset, a
    guard's constant or coefficient, a fixed size) moved by +-1, or one subscript renamed to
    another bound variable: whenever the checker accepts it, enumeration at random sizes 1..3
    agrees; the originals agree too. (Session 30: 39 accepted, 1,325 refused; every accepted one true.)"""
    import copy
    import random

    from torchlean.proofs.cli import collect

    rng = random.Random(13)
    obs = [o for o in collect(library=True) if o.kind == "adjoint"]
    assert len(obs) >= 40
    accepted = refused = 0
    for ob in obs:
        st = ob.data["statement"]
        assert check(st).ok and _brute_equal(st, rng, 1), ob.name
        muts = []
        sites = list(_ints(st["rhs"]))
        for path in rng.sample(sites, min(6, len(sites))):
            muts += [(path, lambda v, d=d: v + d) for d in (1, -1)]
        for path, others in _strings_in_atoms(st):
            muts.append((path, lambda v, o=others: rng.choice(o)))
        for path, change in muts:
            mut = copy.deepcopy(st)
            node = mut["rhs"]
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = change(node[path[-1]])
            if check(mut).ok:
                accepted += 1
                assert _brute_equal(mut, rng, 2), (ob.name, path)
            else:
                refused += 1
    assert refused > 2 * accepted > 0
