"""Kind ``refutation``: the script's assertions (axiom instances, domain, negated claim) are
contradictory, shown by a case-split tree whose every leaf is closed by a step replayed here.

Tree nodes (JSON):

- ``{"split": "<formula>", "then": NODE, "else": NODE}``: case split on a comparison (or any
  formula). Both branches must be closed, so the cases cover everything by construction.
- ``{"leaf": "false"}``: under the path, some assertion evaluates to false outright.
- ``{"leaf": "farkas", "coeffs": [[[i], "q"], [[i, j], "q"], [["sq", "<term>"], "q"], ...]}``: a
  combination of facts, products of two facts and squares of terms (nonnegative coefficients on
  inequalities and squares, any on equalities) is a constant that contradicts its relation
  (e.g. 0 > 0 or -1 >= 0). Exact rationals.
- ``{"leaf": "zero", "fact": i, "ideal": [[j, "<term>"], ...], "nonzero": [J, ...]}``: fact ``i``
  says ``r != 0``; the checker writes r = N / (d1 ... dk) and checks N = sum c_j * p_j as
  polynomials (each p_j = 0 a fact), and that every factor d is nonzero by its justification J.
  Before ``ideal``, ``"reduce": [[j, "<atom>"], ...]`` divides N by each fact p_j = 0 in turn
  whose polynomial is c * a^e + (terms of lower degree in the atom a), c a constant: every a^e is
  replaced by the rest over -c, which changes N by a multiple of p_j, so N is in the ideal when
  the remainder is (e.g. sqrt(S)^2 = S reduces every power of the sqrt atom; no multiplier to
  print, so the certificate stays small where the multiplier would be a large polynomial).
  ``{"ne": [j, ...]}`` (d is a constant multiple of a product of facts p_j != 0) or
  ``{"sign": s, "coeffs": ...}`` (s*d minus a nonnegative combination of facts is a constant, so
  s*d > 0).
- ``{"leaf": "cong", "fact": i, "apps": ["(f a)", "(f b)"], "reduce": ..., "ideal": ...}``: fact
  ``i`` says c * (f(a) - f(b)) != 0 for one declared unary function f, and a - b is in the ideal
  of the equality facts (``reduce`` and ``ideal`` as in ``zero``): so a = b in this case and, f
  being a function, f(a) = f(b) (congruence, a logical truth, no axiom). Normal forms already
  identify f(a) and f(b) where a - b is 0 as a polynomial; this is the case where it is 0 only
  by the facts (log(exp(m) * (1 + exp(-m))) against log(exp(m) + 1), with exp(m) * exp(-m) = 1).

``{"conjuncts": [NODE, ...]}`` splits a goal ``(not (and c1 ... ck))`` into k refutations on the
same case (path), the i-th of the script with goal ``(not ci)``: in that case each ci then holds,
so their conjunction does and the original goal is refuted. (A split tree over the conjuncts
proves the same, but every leaf would re-read every earlier conjunct: quadratic in k.)

Facts at a leaf, in order: the path's literals, then what each assertion yields under the path
(conjunctions split, a disjunction with one undecided disjunct left gives that one). An
inequality between terms that divide is a fact only where the path has split on the sign of each
denominator factor; it is then multiplied out (``Leaf.cleared``). Ites are
resolved by the path; an undecided one makes the literal unusable, never wrongly usable.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from .axioms import check_hypotheses
from .core import Rejected, Verdict, checker, is_index, rational, require, tick
from .poly import (
    RELS,
    Division,
    Normaliser,
    Poly,
    RatFun,
    Undecided,
    add,
    const,
    const_truth,
    const_value,
    is_const,
    key,
    lit_key,
    literal,
    mul,
    negate,
    power,
    r_add,
    scaled_keys,
)
from .sexpr import Script, SExpr, parse_one, read_script, show

Fact = tuple[str, Any]  # (rel, Poly) for >, >=, =; (rel, RatFun) for !=
#: one case of a split: the formula, its literal (rel, poly) if it is a comparison, its value
Decision = tuple[SExpr, "tuple[str, Poly] | None", bool]

MAX_NODES = 20000
#: the connectives whose arity SMT-LIB fixes (n-ary => is right-associative; the writers emit two)
ARITY = {"not": 1, "=>": 2, "ite": 3}


class Leaf:
    """Everything known at one leaf: the path's decisions and the facts they yield."""

    def __init__(self, script: Script, path: list[Decision], collect: bool = True):
        self.script = script
        self.decided: dict[str, bool] = {}
        self.facts: list[Fact] = []
        self.closed = False
        self._memo: dict[int, tuple[SExpr, bool | None]] = {}
        self.norm = Normaliser(script.constants, script.functions, self.decide)
        for t, lit, value in path:  # first every decision, so that facts can use all of them
            self.decided[lit_key(*lit) if lit is not None else "#" + show(t)] = value
        if not collect:  # only evaluating under the path (a split node), no facts needed
            return
        for t, lit, value in path:
            if lit is not None and not value and lit[0] == "=":
                self.facts.append(("!=", RatFun(lit[1])))
            elif lit is not None:  # a comparison
                self.facts.append(lit if value else negate(*lit))
            else:  # any other formula: assumed with its value
                self.assume(t, value)
        for _, t in script.asserts:
            self.assume(t)

    # -- evaluation under the path -------------------------------------------------------------
    def decide(self, t: SExpr) -> bool | None:
        """Truth of a boolean term under the path; None when it depends on something undecided."""
        hit = self._memo.get(id(t))
        if hit is not None and hit[0] is t:  # memo by identity (t kept alive in the entry)
            return hit[1]
        v = self._decide(t)
        self._memo[id(t)] = (t, v)
        return v

    def _decide(self, t: SExpr) -> bool | None:
        # (audit13) the connectives at SMT-LIB's arity only: a split's two branches are sound
        # only if both read the formula one way, and (not a b), (=> a b c) had readings of their own
        if isinstance(t, tuple) and t and t[0] in ARITY:
            require(len(t) - 1 == ARITY[t[0]], f"{t[0]} with {len(t) - 1} arguments: {show(t)[:80]}")
        if t == "true":
            return True
        if t == "false":
            return False
        if "#" + show(t) in self.decided:
            return self.decided["#" + show(t)]
        if isinstance(t, tuple) and t:
            head, args = t[0], t[1:]
            if head == "not":
                v = self.decide(args[0])
                return None if v is None else not v
            if head in ("and", "or"):
                vals = [self.decide(a) for a in args]
                stop = head == "or"  # the value that settles it
                if stop in vals:
                    return stop
                return None if None in vals else not stop
            if head == "=>":
                return self.decide(("or", ("not", args[0]), args[1]))
            if head == "ite" and self._is_formula(args[1]):
                c = self.decide(args[0])
                return None if c is None else self.decide(args[1] if c else args[2])
        try:
            lit = self.cleared(t)
        except (Undecided, Division):
            return None  # a divided equality is only ever closed by a "zero" leaf
        require(lit is not None, f"not a boolean term: {show(t)}")
        rel, p = lit  # type: ignore[misc]
        if is_const(p):
            return const_truth(rel, const_value(p))
        return self._implied(rel, p)

    def cleared(self, t: SExpr) -> tuple[str, Poly] | None:
        """``literal(t)``; an inequality whose sides divide is N/D rel 0 with D a product of
        factors f^n, and when the path has decided the sign of every f (a split on f > 0 or
        f < 0), N/D rel 0 holds iff sign(D)*N rel 0 (divide by |D| > 0). Otherwise Division."""
        try:
            return literal(t, self.norm)
        except Division:
            if not (isinstance(t, tuple) and len(t) == 3 and t[0] in (">", ">=", "<", "<=")):
                raise
        rel, sign = RELS[t[0]]  # type: ignore[index]
        r = r_add(self.norm.term(t[1]), self.norm.term(t[2]), Fraction(-1))
        for f, n in r.den.values():
            if self._implied(">", f) is True:
                continue
            if self._implied(">", mul(f, const(-1))) is not True:
                raise Division(f"comparison {show(t)}: a denominator's sign is not decided")
            sign *= (-1) ** n
        return rel, r.num if sign > 0 else mul(r.num, const(-1))

    def _implied(self, rel: str, p: Poly) -> bool | None:
        """Truth of ``p rel 0`` from decisions about the same polynomial (up to scaling)."""
        kp, kn = scaled_keys(p)  # keys of p and -p, scaled as lit_key does
        get = self.decided.get
        pos, nonneg, neg, nonpos = get("> " + kp), get(">= " + kp), get("> " + kn), get(">= " + kn)
        zero = get(lit_key("=", p))
        if rel == ">":  # p > 0
            if pos is not None:
                return pos
            if nonpos is not None:  # -p >= 0 is not (p > 0)
                return not nonpos
            if nonneg is False or zero is True or neg is True:
                return False
        elif rel == ">=":  # p >= 0
            if nonneg is not None:
                return nonneg
            if neg is not None:  # -p > 0 is not (p >= 0)
                return not neg
            if pos is True or zero is True:
                return True
        elif rel == "=":
            if zero is not None:
                return zero
            if pos is True or neg is True or nonneg is False or nonpos is False:
                return False
            if (nonneg is True or neg is False) and (nonpos is True or pos is False):
                return True  # p >= 0 and p <= 0
        return None

    def assume(self, t: SExpr, positive: bool = True) -> None:
        """Add what ``t`` (or its negation) yields as facts; close the leaf if it is false."""
        value = self.decide(t)
        if value is not None and value != positive:
            self.closed = True
            return
        if isinstance(t, tuple) and t and t[0] == "ite" and self._is_formula(t[2]):
            c, a, b = t[1:]  # a boolean ite is (c => a) and (not c => b)
            self.assume(("and", ("=>", c, a), ("=>", ("not", c), b)), positive)
            return
        if isinstance(t, tuple) and t and t[0] in ("not", "and", "or", "=>"):
            head, args = t[0], t[1:]
            if head == "not":
                self.assume(args[0], not positive)
            elif head == "=>" and positive:
                self._one_of([("not", args[0]), args[1]])
            elif head == "=>":  # not (p => q): p and not q (audit13: this case was unreachable
                self.assume(args[0], True)  # behind the next one, which assumed not p, not q)
                self.assume(args[1], False)
            elif (head == "and") == positive:  # a conjunction: every part holds
                for a in args:
                    self.assume(a, positive)
            else:  # a disjunction (or, or a negated and)
                self._one_of([a if positive else ("not", a) for a in args])
            return
        try:
            if not positive and isinstance(t, tuple) and t[0] == "=" and len(t) == 3:
                self.facts.append(("!=", _diff(t, self.norm)))  # may divide: see _zero
                return
            lit = self.cleared(t)
        except (Undecided, Division):
            return  # unusable here (the certificate has to split first); dropping is sound
        if lit is None:
            return
        rel, p = lit
        self.facts.append((rel, p) if positive else negate(rel, p))

    def _is_formula(self, t: SExpr) -> bool:
        if isinstance(t, str):
            return t in ("true", "false") or self.script.constants.get(t) == "Bool"
        return t[0] in ("and", "or", "not", "=>", ">", ">=", "<", "<=", "=") or (
            t[0] == "ite" and self._is_formula(t[2])
        )

    def _one_of(self, options: list[SExpr]) -> None:
        """Unit propagation: with every option but one false, the remaining one holds."""
        open_ = [o for o in options if self.decide(o) is not False]
        if not open_:
            self.closed = True
        elif len(open_) == 1:
            self.assume(open_[0], True)


def _diff(t: SExpr, norm: Normaliser) -> RatFun:
    """(= a b) as the rational function a - b (with its denominators)."""
    return r_add(norm.term(t[1]), norm.term(t[2]), Fraction(-1))  # type: ignore[index]


# -- the steps --------------------------------------------------------------------------------

def _fact(leaf: Leaf, i: Any, rels: tuple[str, ...], what: str) -> Any:
    """The leaf's fact ``i`` as (rel, poly or rational function); rejected unless ``rel`` is in ``rels``."""
    require(is_index(i, len(leaf.facts)), f"no fact {i!r}")
    rel, p = leaf.facts[i]
    require(rel in rels, f"fact {i} ({rel}) {what}")
    return rel, p


def _combination(leaf: Leaf, coeffs: list[Any]) -> tuple[Poly, bool]:
    """sum lambda * (product of one or two facts); returns (polynomial, strict?) where the sum
    is > 0 when strict and >= 0 otherwise. Inequalities need lambda >= 0; equalities any sign."""
    total: Poly = {}
    strict = False
    require(isinstance(coeffs, list), "coeffs must be a list")
    for refs, q in coeffs:
        lam = rational(q)
        if isinstance(refs, list) and len(refs) == 2 and refs[0] == "sq":  # lambda * t^2 >= 0
            require(isinstance(refs[1], str) and lam >= 0, "a square needs a term and lambda >= 0")
            t = leaf.norm.term(parse_one(refs[1])).poly("squared term")
            total = add(total, power(t, 2), lam)
            continue
        require(isinstance(refs, list) and 1 <= len(refs) <= 2, "a term multiplies one or two facts")
        rels, polys = [], []
        for i in refs:
            rel, p = _fact(leaf, i, (">", ">=", "="), "cannot be combined")
            rels.append(rel)
            polys.append(p)
        prod = polys[0] if len(polys) == 1 else mul(polys[0], polys[1])
        if "=" not in rels:
            require(lam >= 0, f"negative coefficient {lam} on an inequality")
            strict = strict or (lam > 0 and all(r == ">" for r in rels))
        total = add(total, prod, lam)
    return total, strict


def _farkas(leaf: Leaf, node: dict[str, Any]) -> None:
    total, strict = _combination(leaf, node["coeffs"])
    require(is_const(total), f"Farkas combination is not constant: {key(total)}")
    c = const_value(total)
    require(c < 0 or (c == 0 and strict), f"Farkas combination {c} {'>' if strict else '>='} 0 holds")


def _nonzero(leaf: Leaf, d: Poly, j: Any) -> None:
    """Factor ``d`` is nonzero by justification ``j``."""
    if "ne" in j:  # d is a constant multiple of a product of facts p != 0 (repeats allowed)
        refs = j["ne"]
        require(isinstance(refs, list) and refs, "ne must list fact indices")
        prod: Poly = {(): Fraction(1)}
        for i in refs:
            prod = mul(prod, _fact(leaf, i, ("!=",), "is not a disequality")[1].poly("disequality fact"))
        require(bool(prod) and lit_key("=", prod) == lit_key("=", d),
                f"factor {key(d)} is not the product of facts {refs}")
        return
    s = j["sign"]
    require(s in (1, -1), "sign must be 1 or -1")
    total, strict = _combination(leaf, j["coeffs"])
    rest = add(mul(d, {(): Fraction(s)}), total, Fraction(-1))
    require(is_const(rest), f"factor {key(d)} minus the combination is not constant")
    c = const_value(rest)
    require(c > 0 or (c == 0 and strict), f"factor {key(d)} not shown positive (constant {c})")


def reduce_by(num: Poly, p: Poly, a: str) -> Poly:
    """The remainder of ``num`` on division by ``p`` = c * a^e + rest, rest of degree < e in the
    atom a and c a nonzero constant (a^e * m is replaced by -rest/c * m: num changes by a
    multiple of p)."""
    e = max((dict(m).get(a, 0) for m in p), default=0)
    lead = ((a, e),)
    require(p.get(lead) is not None and all(m == lead or dict(m).get(a, 0) < e for m in p),
            f"fact {key(p)[:80]} is not c * {a}^{e} + terms of lower degree in {a}")
    tail = add({}, {m: -c / p[lead] for m, c in p.items() if m != lead})
    while True:
        tick()
        high = {m: c for m, c in num.items() if dict(m).get(a, 0) >= e}
        if not high:
            return num
        num = add(num, high, Fraction(-1))
        for m, c in high.items():  # m = a^e * rest_m:  a^e -> tail
            rest = tuple((b, k - e) if b == a else (b, k) for b, k in m if not (b == a and k == e))
            num = add(num, mul({rest: c}, tail))


def _remainder(leaf: Leaf, num: Poly, node: dict[str, Any]) -> Poly:
    """``num`` less the multiples of equality facts named by the node's ``reduce`` and ``ideal``
    steps (0 exactly when they show ``num`` is in the ideal the facts generate)."""
    for j, text in node.get("reduce", []):
        pj = _fact(leaf, j, ("=",), "is not an equality (reducing)")[1]
        at = leaf.norm.term(parse_one(text)).poly("reduced atom")
        require(len(at) == 1 and list(at.values()) == [1] and len(min(at)) == 1 and min(at)[0][1] == 1,
                f"{text[:80]} is not an atom")
        num = reduce_by(num, pj, min(at)[0][0])
    for j, text in node.get("ideal", []):
        pj = _fact(leaf, j, ("=",), "is not an equality (ideal generator)")[1]
        c = leaf.norm.term(parse_one(text)).poly("ideal multiplier")
        num = add(num, mul(c, pj), Fraction(-1))
    return num


def _zero(leaf: Leaf, node: dict[str, Any]) -> None:
    r = _fact(leaf, node["fact"], ("!=",), "is not a disequality")[1]
    num = _remainder(leaf, r.num, node)
    require(not num, f"numerator is not in the ideal: remainder {key(num)[:200]}")
    factors = r.factors()
    just = node["nonzero"]
    require(isinstance(just, list) and len(just) == len(factors),
            f"{len(factors)} denominator factor(s) need a nonzero justification each")
    for (_, d), j in zip(factors, just):
        _nonzero(leaf, d, j)


def _cong(leaf: Leaf, node: dict[str, Any]) -> None:
    """Congruence: fact ``i`` says c * (f(a) - f(b)) != 0, but a - b is in the ideal of the
    equality facts (``reduce``/``ideal`` as in ``_zero``), so a = b here and f(a) = f(b)."""
    apps = [parse_one(t) for t in node["apps"]] if isinstance(node.get("apps"), list) else []
    require(len(apps) == 2 and all(isinstance(t, tuple) and len(t) == 2 and t[0] == apps[0][0]
                                   and t[0] in leaf.script.functions for t in apps),
            "cong: apps must be two applications of one unary function")
    fa, fb = (leaf.norm.term(t).poly("application") for t in apps)
    r = _fact(leaf, node["fact"], ("!=",), "is not a disequality")[1]
    require(lit_key("=", r.poly("congruence fact")) == lit_key("=", add(fa, fb, Fraction(-1))),
            f"fact {node['fact']} is not c * ({node['apps'][0][:60]} - {node['apps'][1][:60]}) != 0")
    diff = add(*(leaf.norm.term(t[1]).poly("argument") for t in apps), Fraction(-1))
    num = _remainder(leaf, diff, node)
    require(not num, f"the arguments are not shown equal: remainder {key(num)[:200]}")


def _replay(script: Script, node: Any, path: list[Decision], count: list[int]) -> None:
    require(isinstance(node, dict), "tree node must be an object")
    tick()  # (the caller's deadline, e.g. `proofs check --timeout`)
    count[0] += 1
    require(count[0] <= MAX_NODES, "certificate tree too large")
    if "split" in node:
        # splitting on any formula t is sound: t or not t; both branches must close
        t = parse_one(node["split"])
        try:
            lit = literal(t, Leaf(script, path, collect=False).norm)
        except (Undecided, Division):
            lit = None  # not a usable comparison: split on the formula itself
        _replay(script, node["then"], [*path, (t, lit, True)], count)
        _replay(script, node["else"], [*path, (t, lit, False)], count)
        return
    if "conjuncts" in node:  # the claim, one conjunct at a time, on the same case
        claim, parts = script.goal[1], node["conjuncts"]
        require(isinstance(claim, tuple) and claim[0] == "and" and isinstance(parts, list)
                and len(parts) == len(claim) - 1, "conjuncts: one tree per conjunct of the claim")
        for c, part in zip(claim[1:], parts):
            sub = Script(script.constants, script.functions,
                         [(n, ("not", c) if n == "goal" else t) for n, t in script.asserts])
            _replay(sub, part, path, count)
        return
    leaf = Leaf(script, path)
    kind = node.get("leaf")
    if kind == "false":
        require(leaf.closed, "leaf claims an assertion is false, but none is")
    elif kind == "farkas":
        _farkas(leaf, node)
    elif kind == "zero":
        _zero(leaf, node)
    elif kind == "cong":
        _cong(leaf, node)
    else:
        raise Rejected(f"unknown leaf {kind!r}")


def replay(statement: str, tree: Any) -> int:
    """Check that ``tree`` refutes ``statement``; return the number of steps replayed."""
    script = read_script(statement)
    require(isinstance(script.goal, tuple) and script.goal[0] == "not", "goal must be (not CLAIM)")
    check_hypotheses(script)
    count = [0]
    _replay(script, tree, [], count)
    return count[0]


@checker("refutation")
def check_refutation(cert: dict[str, Any]) -> Verdict:
    """{"kind": "refutation", "statement": SMT-LIB text, "tree": NODE}.

    Only the tree is evidence. Without one there is nothing to replay and the certificate is
    rejected: a claim that rests on a solver's ``unsat`` is counted solver-trusted by the caller
    that re-runs the solver on the re-derived statement (``proofs.artifacts.reproduce``), never
    because a certificate says so (any ``trusted`` list in it is ignored)."""
    require(cert.get("tree") is not None,
            "no certificate tree: nothing to replay (a solver's unsat counts only when re-run)")
    return Verdict(True, replay(cert["statement"], cert["tree"]))
