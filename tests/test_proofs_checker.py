"""The trusted checker's refutation certificates: acceptance, mutation rejection, import rule."""

import ast
import copy
import json
import random
import sys
from pathlib import Path

import pytest

import torchlean  # noqa: F401
from torchlean.certificates import check
from torchlean.certificates.sexpr import read_script
from torchlean.proofs.cli import collect
from torchlean.proofs.prove import certificate_tree

ROOT = Path(__file__).resolve().parents[1]


def _ob(name):
    return collect(None, [name])[0] if "." in name else None


@pytest.fixture(scope="module")
def certs():
    """One certificate per step kind: zero leaves with ideal multipliers, reduce steps and nonzero
    justifications, case splits, conjuncts, Farkas leaves with products, false leaves."""
    out = {}
    for name in ("autograd.softplus", "autograd.div", "autograd.abs", "ibp.affine", "ibp.relu",
                 "forward.maximum", "ibp.log", "ibp.reciprocal", "ibp.sigmoid", "autograd.layer_norm",
                 "autograd.erf", "ibp.erf"):
        ob = _ob(name)
        tree = certificate_tree(ob.smtlib, timeout=60)
        cert = {"kind": "refutation", "statement": ob.smtlib, "tree": tree}
        assert check(cert).ok, name
        out[name] = cert
    return out


def _nodes(tree, path=()):
    yield path, tree
    if "split" in tree:
        yield from _nodes(tree["then"], (*path, "then"))
        yield from _nodes(tree["else"], (*path, "else"))
    for i, part in enumerate(tree.get("conjuncts", [])):
        yield from _nodes(part, (*path, ("conjuncts", i)))


def _at(tree, path):
    for p in path:
        tree = tree[p[0]][p[1]] if isinstance(p, tuple) else tree[p]
    return tree


def _set(tree, path, value):
    parent, last = _at(tree, path[:-1]), path[-1]
    if isinstance(last, tuple):
        parent[last[0]][last[1]] = value
    else:
        parent[last] = value


def _mutations(cert, rng):
    """Random tampers of the certificate (each changes something the checker relies on)."""
    tree = cert["tree"]
    nodes = list(_nodes(tree))
    out = []
    for path, node in nodes:
        if "split" in node:  # drop a case: the split becomes one of its branches
            m = copy.deepcopy(cert)
            if not path:
                m["tree"] = copy.deepcopy(node["then"])
            else:
                _set(m["tree"], path, copy.deepcopy(node["then"]))
            out.append(("dropped case", m))
        if "conjuncts" in node:  # a conjunct left unproved, or one's proof given for another
            m = copy.deepcopy(cert)
            _at(m["tree"], path)["conjuncts"].pop()
            out.append(("dropped conjunct", m))
            parts = node["conjuncts"]
            k = next((i for i in range(1, len(parts)) if parts[i] != parts[0]), None)
            if k is not None:
                m = copy.deepcopy(cert)
                c = _at(m["tree"], path)["conjuncts"]
                c[0], c[k] = c[k], c[0]
                out.append(("swapped conjuncts", m))
        if node.get("leaf") == "farkas":
            for k in range(len(node["coeffs"])):
                m = copy.deepcopy(cert)
                c = _at(m["tree"], path)["coeffs"][k]
                c[1] = str(rng.choice([0, 2, -1, "1/3", 7]) if c[1] != "0" else 1)
                if c[1] != node["coeffs"][k][1]:
                    out.append(("coefficient", m))
        if node.get("leaf") == "zero":
            for k in range(len(node.get("reduce", []))):  # another fact, or no such step
                m = copy.deepcopy(cert)
                _at(m["tree"], path)["reduce"][k][0] += 1
                out.append(("reduce step", m))
                m = copy.deepcopy(cert)
                del _at(m["tree"], path)["reduce"][k]
                out.append(("reduce step", m))
            for k in range(len(node.get("ideal", []))):
                m = copy.deepcopy(cert)
                item = _at(m["tree"], path)["ideal"][k]
                item[1] = f"(* 2 {item[1]})"
                out.append(("ideal multiplier", m))
            for k, j in enumerate(node["nonzero"]):
                m = copy.deepcopy(cert)
                jj = _at(m["tree"], path)["nonzero"][k]
                if "sign" in jj:
                    jj["sign"] = -jj["sign"]
                else:
                    jj["ne"] = [i + 1 for i in jj["ne"]]  # another fact
                out.append(("nonzero justification", m))
            m = copy.deepcopy(cert)
            _at(m["tree"], path)["nonzero"] = []
            if node["nonzero"]:
                out.append(("dropped nonzero", m))
        if node.get("leaf") == "cong":  # another fact; another argument; a step doubled or dropped
            m = copy.deepcopy(cert)
            _at(m["tree"], path)["fact"] += 1
            out.append(("cong fact", m))
            m = copy.deepcopy(cert)
            apps = _at(m["tree"], path)["apps"]
            apps[1] = apps[1].replace(" ", " (+ 1 ", 1) + ")"  # (f a) -> (f (+ 1 a))
            out.append(("cong argument", m))
            for step in ("reduce", "ideal"):
                for k in range(len(node.get(step, []))):
                    m = copy.deepcopy(cert)
                    del _at(m["tree"], path)[step][k]
                    out.append(("cong step", m))
                    if step == "ideal":
                        m = copy.deepcopy(cert)
                        item = _at(m["tree"], path)["ideal"][k]
                        item[1] = f"(* 2 {item[1]})"
                        out.append(("cong step", m))
        if "leaf" in node and node["leaf"] != "false":
            m = copy.deepcopy(cert)
            _at(m["tree"], path).clear()
            _at(m["tree"], path)["leaf"] = "false"
            out.append(("leaf kind", m))
    return out


def test_every_tamper_is_rejected(certs):
    rng = random.Random(0)
    kinds = {}
    for name, cert in certs.items():
        for kind, m in _mutations(cert, rng):
            v = check(m)
            assert not v.ok, f"{name}: tamper '{kind}' accepted"
            kinds[kind] = kinds.get(kind, 0) + 1
    assert set(kinds) >= {"dropped case", "coefficient", "ideal multiplier", "nonzero justification",
                          "leaf kind", "reduce step", "dropped conjunct", "swapped conjuncts"}, kinds
    assert sum(kinds.values()) >= 40, kinds


FALSE_EDITS = [  # statement edits that make the claim false: no certificate may prove them
    ("autograd.softplus", "(* g_0 (/ 1", "(* 2 g_0 (/ 1"),
    ("autograd.div", "(= (+ (* (- 1) g_0 x0_0", "(= (+ (* (- 2) g_0 x0_0"),
    ("autograd.abs", "(ite (< x0_0 0) (* (- 1) g_0) 0)", "(ite (< x0_0 0) g_0 0)"),
    ("ibp.relu", "(<= (ite (>= l 0) l 0)", "(<= (ite (>= u 0) u 0)"),  # swapped bound
    ("ibp.log", "(> l 0)", "(> u 0)"),
    ("forward.maximum", "(ite (>= x0_0 x1_0) x0_0 x1_0)", "(ite (>= x0_0 x1_0) x1_0 x0_0)"),
    # divided inequalities (multiplied out under decided denominator signs): an interval across 0
    ("ibp.reciprocal", "(or (> l 0) (< u 0))", "(or (> l 0) (< u 1))"),
    ("ibp.reciprocal", "(<= (/ 1 u) (/ 1 x))", "(<= (/ 1 l) (/ 1 x))"),  # swapped bound
    ("ibp.sigmoid", "(<= (/ 1 (+ 1 (tl_exp (* (- 1) l))))", "(<= (/ 1 (+ 1 (tl_exp (* (- 1) u))))"),
    # erf: a wrong factor on one side of the VJP claim; the monotone rule's ends swapped
    ("autograd.erf", "(* 2 g_0 tl_rsqrt_pi", "(* 3 g_0 tl_rsqrt_pi"),
    ("ibp.erf", "(not (and (<= (tl_erf l) (tl_erf x))", "(not (and (<= (tl_erf u) (tl_erf x))"),
]


def _drop_split(tree, formula):
    """The tree with every split on ``formula`` replaced by its then-branch (also below
    ``conjuncts`` nodes, whose parts are trees of their own)."""
    if "conjuncts" in tree:
        return {**tree, "conjuncts": [_drop_split(c, formula) for c in tree["conjuncts"]]}
    if "split" not in tree:
        return tree
    if tree["split"] == formula:
        return _drop_split(tree["then"], formula)
    return {**tree, "then": _drop_split(tree["then"], formula), "else": _drop_split(tree["else"], formula)}


def test_divided_inequalities_need_the_denominator_signs_decided(certs):
    """A division is multiplied out only under a split deciding its denominator's sign: the same
    tree without those splits is rejected."""
    cert = certs["ibp.reciprocal"]
    splits = {n["split"] for _, n in _nodes(cert["tree"]) if "split" in n}
    assert "(> u 0)" in splits and "(> x 0)" in splits
    for f in ("(> u 0)", "(> x 0)"):
        assert not check({**cert, "tree": _drop_split(cert["tree"], f)}).ok, f


@pytest.mark.parametrize("name,old,new", FALSE_EDITS)
def test_edited_statement_is_rejected(certs, name, old, new):
    cert = certs[name]
    assert old in cert["statement"], (name, old)
    edited = cert["statement"].replace(old, new, 1)
    assert not check({**cert, "statement": edited}).ok


def test_axiom_instances_are_checked():
    ob = _ob("autograd.softplus")
    bad = ob.smtlib.replace("(> (tl_exp x0_0) 0)", "(> (tl_exp x0_0) 1)")
    assert bad != ob.smtlib
    tree = certificate_tree(ob.smtlib)
    v = check({"kind": "refutation", "statement": bad, "tree": tree})
    assert not v.ok and "exp_pos" in v.reason or "right side" in v.reason


def test_malformed_certificates_are_rejected_not_raised():
    ob = _ob("autograd.tanh")
    for tree in (None, [], {"leaf": "zero"}, {"split": "(> x0_0"},
                 {"leaf": "farkas", "coeffs": [[[99], "1"]]},
                 {"leaf": "zero", "fact": 0, "ideal": [[0, "(bogus)"]], "nonzero": []}):
        assert not check({"kind": "refutation", "statement": ob.smtlib, "tree": tree}).ok
    assert not check({"kind": "refutation", "statement": "(assert", "tree": {"leaf": "false"}}).ok


def test_unnamed_or_unknown_asserts_are_rejected():
    ob = _ob("autograd.tanh")
    extra = ob.smtlib.replace("(check-sat)", "(assert (! false :named lemma_0))\n(check-sat)")
    assert not check({"kind": "refutation", "statement": extra, "tree": {"leaf": "false"}}).ok
    fake = ob.smtlib.replace("(check-sat)", "(assert (! false :named ax_exp_pos_9))\n(check-sat)")
    assert not check({"kind": "refutation", "statement": fake, "tree": {"leaf": "false"}}).ok


def test_trust_is_never_read_from_the_certificate():
    """Issue 20 (S3): without a tree the checker has nothing to replay, whatever the certificate
    says it trusts; with a tree, a ``trusted`` list neither helps nor is echoed back."""
    ob = _ob("autograd.tanh")
    v = check({"kind": "refutation", "statement": ob.smtlib, "tree": None, "trusted": ["cvc5:la_generic"]})
    assert not v.ok and "no certificate tree" in v.reason and v.trusted == {}
    assert not check({"kind": "refutation", "statement": ob.smtlib, "tree": None}).ok
    tree = certificate_tree(ob.smtlib, timeout=60)
    v = check({"kind": "refutation", "statement": ob.smtlib, "tree": tree, "trusted": ["cvc5:x"]})
    assert v.ok and v.trusted == {} and v.fully_checked


def test_statements_parse_and_name_every_assert():
    for ob in collect():
        if ob.kind == "adjoint":  # index forms (JSON), decided by certificates/adjoint.py
            continue
        s = read_script(ob.smtlib)
        assert s.goal[0] == "not"


def test_coverage_has_no_gaps():
    from torchlean.proofs.coverage import coverage_table, gaps

    assert gaps() == []
    assert "autograd" in coverage_table()


def test_coverage_fails_on_a_primitive_without_a_bound_row_or_reason(monkeypatch):
    from torchlean.certificates import lower
    from torchlean.proofs.coverage import coverage, gaps

    rows = coverage()
    assert all(r["verify"] for r in rows.values())  # every primitive has a bound-table row today
    monkeypatch.delitem(lower.ROWS, "tanh")
    assert gaps() == ["tanh: no bound-table row and no reason"]
    monkeypatch.setitem(lower.NO_ROW, "tanh", "a stated reason")
    assert gaps() == []


STDLIB = set(sys.stdlib_module_names)


def test_certificates_import_only_the_standard_library():
    for path in sorted((ROOT / "torchlean" / "certificates").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module or ""]
            for m in mods:
                top = m.split(".")[0]
                if path.name.startswith("fast") and top == "numpy":
                    continue  # the vectorised replay, named so (DESIGN.md); its own trust entry
                assert top in STDLIB or top == "__future__", f"{path.name} imports {m}"


def test_certificate_json_roundtrip(certs):
    for cert in certs.values():
        assert check(json.loads(json.dumps(cert))).ok


def test_interval_rules_contain_sampled_values():
    from fractions import Fraction as F

    from torchlean.certificates import intervals as iv

    rng = random.Random(1)
    for _ in range(300):
        a, b = sorted(F(rng.randint(-40, 40), 8) for _ in range(2))
        c, d = sorted(F(rng.randint(-40, 40), 8) for _ in range(2))
        x, y = a + (b - a) * F(rng.random()), c + (d - c) * F(rng.random())
        s = F(0.01)
        for (lo, hi), v in [(iv.interval_relu((a, b)), max(x, 0)), (iv.interval_abs((a, b)), abs(x)),
                            (iv.interval_leaky_relu((a, b)), x if x > 0 else s * x),
                            (iv.interval_square((a, b)), x * x),
                            (iv.interval_mul((a, b), (c, d)), x * y),
                            (iv.interval_maximum((a, b), (c, d)), max(x, y)),
                            (iv.interval_max([(a, b), (c, d), ((a + c) / 2, (b + d) / 2)]),
                             max(x, y, (x + y) / 2)),
                            (iv.interval_affine(F(1), [(F(3), (a, b)), (F(-2), (c, d))]),
                             3 * x - 2 * y + 1)]:
            assert lo <= v <= hi


def test_mono_erf_instances_are_checked():
    """An axiom instance that is not a ground instance of mono_erf (a reversed conclusion) is
    rejected even with the certificate of the true statement."""
    ob = _ob("ibp.erf")
    bad = ob.smtlib.replace("(=> (<= l x) (<= (tl_erf l) (tl_erf x)))",
                            "(=> (<= l x) (<= (tl_erf x) (tl_erf l)))")
    assert bad != ob.smtlib
    v = check({"kind": "refutation", "statement": bad, "tree": certificate_tree(ob.smtlib)})
    assert not v.ok and "mono_erf" in v.reason


def test_every_axiom_schema_accepts_its_instances_and_only_those():
    """Each schema of ``certificates/axioms.py`` on a true instance (compound arguments, repeated
    ones equal) and on near misses: a swapped side, a wrong function, a repeated argument that
    differs, a wrong constant, a polynomial side condition that fails."""
    from torchlean.certificates.axioms import check_instance
    from torchlean.certificates.core import Rejected
    from torchlean.certificates.sexpr import parse_one, read_script

    fns = "".join(f"(declare-fun tl_{f} (Real) Real)" for f in ("exp", "log", "sqrt", "tanh", "erf"))
    script = read_script(f"(declare-const x Real)(declare-const y Real){fns}"
                         "(assert (! (> x 0) :named goal))(check-sat)")
    a, b = "(+ x 1)", "(* y y)"
    good = {
        "exp_pos": f"(> (tl_exp {a}) 0)",
        "exp_add": f"(= (tl_exp (+ {a} {b})) (* (tl_exp {b}) (tl_exp {a})))",
        "exp_zero": "(= (tl_exp (- x x)) 1)",
        "exp_log": f"(=> (> {a} 0) (= (tl_exp (tl_log {a})) {a}))",
        "sqrt_pos": f"(=> (> {a} 0) (> (tl_sqrt {a}) 0))",
        "sqrt_sq": f"(=> (>= {a} 0) (= (* (tl_sqrt {a}) (tl_sqrt {a})) {a}))",
        "log_exp": f"(= (tl_log (tl_exp {a})) {a})",
        "log_mul": f"(=> (and (> {a} 0) (> {b} 0)) (= (tl_log (* {a} {b})) (+ (tl_log {a}) (tl_log {b}))))",
        "mono_exp": f"(=> (<= {a} {b}) (<= (tl_exp {a}) (tl_exp {b})))",
        "mono_tanh": f"(=> (<= {a} {b}) (<= (tl_tanh {a}) (tl_tanh {b})))",
        "mono_erf": f"(=> (<= {a} {b}) (<= (tl_erf {a}) (tl_erf {b})))",
        "mono_log": f"(=> (and (> {a} 0) (<= {a} {b})) (<= (tl_log {a}) (tl_log {b})))",
        "mono_sqrt": f"(=> (and (> {a} 0) (<= {a} {b})) (<= (tl_sqrt {a}) (tl_sqrt {b})))",
    }
    bad = {
        "exp_pos": [f"(> (tl_exp {a}) 1)", f"(> (tl_log {a}) 0)", f"(>= (tl_exp {a}) 0)"],
        "exp_add": [f"(= (tl_exp (+ {a} {a})) (* (tl_exp {b}) (tl_exp {a})))",
                    f"(= (tl_exp (+ {a} {b})) (+ (tl_exp {b}) (tl_exp {a})))"],
        "exp_zero": ["(= (tl_exp (- x y)) 1)", "(= (tl_exp 0) 2)"],
        "exp_log": [f"(=> (> {a} 0) (= (tl_exp (tl_log {a})) {b}))",
                    f"(=> (> {b} 0) (= (tl_exp (tl_log {a})) {a}))",
                    f"(=> (>= {a} 0) (= (tl_exp (tl_log {a})) {a}))"],
        "sqrt_pos": [f"(=> (> {a} 0) (> (tl_sqrt {b}) 0))", f"(=> (>= {a} 0) (> (tl_sqrt {a}) 0))"],
        "sqrt_sq": [f"(=> (>= {a} 0) (= (* (tl_sqrt {a}) (tl_sqrt {b})) {a}))",
                    f"(=> (> {a} 1) (= (* (tl_sqrt {a}) (tl_sqrt {a})) {a}))"],
        "log_exp": [f"(= (tl_log (tl_exp {a})) {b})", f"(= (tl_exp (tl_log {a})) {a})"],
        "log_mul": [f"(=> (and (> {a} 0) (> {b} 0)) (= (tl_log (* {a} {b})) (+ (tl_log {b}) (tl_log {b}))))",
                    f"(=> (and (> {a} 0) (>= {b} 0)) (= (tl_log (* {a} {b})) "
                    f"(+ (tl_log {a}) (tl_log {b}))))"],
        "mono_exp": [f"(=> (<= {a} {b}) (<= (tl_exp {b}) (tl_exp {a})))"],
        "mono_tanh": [f"(=> (<= {a} {b}) (<= (tl_erf {a}) (tl_erf {b})))"],
        "mono_erf": [f"(=> (< {a} {b}) (<= (tl_erf {a}) (tl_erf {b})))"],
        "mono_log": [f"(=> (<= {a} {b}) (<= (tl_log {a}) (tl_log {b})))",
                     f"(=> (and (> {b} 0) (<= {a} {b})) (<= (tl_log {a}) (tl_log {b})))"],
        "mono_sqrt": [f"(=> (and (> {a} 0) (<= {a} {b})) (<= (tl_sqrt {b}) (tl_sqrt {a})))"],
    }
    for schema, text in good.items():
        check_instance(schema, parse_one(text), script)
        for wrong in bad[schema]:
            with pytest.raises(Rejected):
                check_instance(schema, parse_one(wrong), script)
    with pytest.raises(Rejected):
        check_instance("exp_neg", parse_one(good["exp_pos"]), script)
