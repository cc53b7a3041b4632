"""Certificate search: build the case-split tree that ``certificates/refute.py`` replays.

Untrusted by design: it may use sympy (ideal membership) and z3 (as an exact LP solver for Farkas
coefficients); whatever it returns is only believed after the checker replays it. It reuses the
checker's own ``Leaf`` so that fact numbering agrees with the replay by construction.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import sympy
import z3

from ..certificates.core import Rejected
from ..certificates.poly import Division, Poly, Undecided, add, lit_key, literal, mul
from ..certificates.refute import Decision, Leaf, reduce_by
from ..certificates.sexpr import Script, SExpr, read_script, show

MAX_DEPTH = 40
#: z3's options for the Farkas LPs: the seed fixed (z3's default today, written down so that a
#: changed default cannot change the trees), 10 s per LP
Z3_OPTIONS = {"random_seed": 0, "timeout": 10000}


class NoProof(Exception):
    """The search gave up; the message says where."""


def _walk(t: SExpr) -> Iterator[SExpr]:
    yield t
    if isinstance(t, tuple):
        for a in t[1:]:
            yield from _walk(a)


def _subterms(terms: list[SExpr]) -> list[SExpr]:
    """Every subterm in pre-order, each shared one (the reader hash-conses) visited once: a tree
    walk of layer_norm's claim at 8 features took seconds."""
    seen: set[int] = set()
    out: list[SExpr] = []
    stack = list(reversed(terms))
    while stack:
        t = stack.pop()
        if not isinstance(t, tuple) or id(t) in seen:
            continue
        seen.add(id(t))
        out.append(t)
        stack.extend(reversed(t[1:]))
    return out


def _ratio(p: Poly, d: Poly, sign: int) -> Fraction | None:
    """lam > 0 with sign * d = lam * p, or None."""
    if not p or p.keys() != d.keys():
        return None
    m = next(iter(p))
    lam = sign * d[m] / p[m]
    return lam if lam > 0 and all(sign * d[k] == lam * p[k] for k in p) else None


class Search:
    def __init__(self, statement: str, deadline: float, script: Script | None = None):
        self.script: Script = script or read_script(statement)
        self.deadline = deadline
        # syntactic squares (* t t) in the statement: candidates for sums of squares
        self._parsed: dict[str, SExpr] = {}
        terms = _subterms([t for _, t in self.script.asserts])
        for sub in terms:
            if len(sub) == 3 and sub[0] == "*" and sub[1] == sub[2]:
                self._parsed.setdefault(show(sub[1]), sub[1])
        self.squares = sorted(self._parsed)
        # the function applications of the statement, printed once (not at every leaf)
        self._apps: list[tuple[SExpr, str]] = []
        seen: set[str] = set()
        for sub in terms:
            if sub[0] in self.script.functions:
                text = show(sub)
                if text not in seen:
                    seen.add(text)
                    self._apps.append((sub, text))

    # -- helpers --------------------------------------------------------------------------------
    def _atom_text(self, leaf: Leaf) -> dict[str, str]:
        """atom key -> an SMT term with that normal form (to print ideal multipliers)."""
        out = {c: c for c in self.script.constants}
        for sub, text in self._apps:
            try:
                r = leaf.norm.term(sub)
            except (Undecided, Division):
                continue
            if len(r.num) == 1 and not r.den:
                ((mono, c),) = r.num.items()
                if c == 1 and len(mono) == 1 and mono[0][1] == 1:
                    out.setdefault(mono[0][0], text)
        return out

    def _to_sympy(self, p: Poly, syms: dict[str, sympy.Symbol]) -> sympy.Expr:
        terms = []
        for mono, c in p.items():
            t = sympy.Rational(c.numerator, c.denominator)
            for a, e in mono:
                if a not in syms:
                    syms[a] = sympy.Symbol(f"a{len(syms)}")
                t = t * syms[a] ** e
            terms.append(t)
        return sympy.Add(*terms)

    @staticmethod
    def _smt_of(e: sympy.Expr, names: dict[sympy.Symbol, str]) -> str:
        poly = sympy.Poly(sympy.expand(e), *names) if names else None
        if poly is None or poly.is_zero:
            return "0"
        terms = []
        for monom, c in poly.terms():
            q = Fraction(int(c.p), int(c.q))
            cs = str(abs(q.numerator)) if q.denominator == 1 else f"(/ {abs(q.numerator)} {q.denominator})"
            cs = f"(- {cs})" if q < 0 else cs
            factors = [cs] + [n for s, k in zip(names, monom) for n in [names[s]] * k]
            terms.append(factors[0] if len(factors) == 1 else "(* " + " ".join(factors) + ")")
        return terms[0] if len(terms) == 1 else "(+ " + " ".join(terms) + ")"

    # -- linear combinations (z3 as an exact LP solver) -------------------------------------------
    def _combine(self, leaf: Leaf, target: Poly | None, products: bool) -> list[Any] | None:
        """Coefficients for a Farkas refutation (target None) or a positivity proof of target."""
        cands: list[tuple[list[int], str, Poly]] = []
        usable = [(i, r, p) for i, (r, p) in enumerate(leaf.facts) if r in (">", ">=", "=")]
        for i, r, p in usable:
            cands.append(([i], r, p))
        if products:
            for (i, r, p), (j, s, q) in itertools.combinations_with_replacement(usable, 2):
                rel = "=" if "=" in (r, s) else (">" if r == s == ">" else ">=")
                cands.append(([i, j], rel, mul(p, q)))
        for text in self.squares:
            try:
                t = leaf.norm.term(self._parsed[text]).poly("square")
            except (Undecided, Division):
                continue
            cands.append((["sq", text], ">=", mul(t, t)))  # type: ignore[list-item]
        if not cands or len(cands) > 3000:
            return None
        # a context of its own and fixed seeds: in z3's global context the model (which of many
        # Farkas combinations comes back) depended on every query run before in the process, so
        # the same obligation got other trees after other obligations (one worker searching
        # several, a test after another); now the coefficients depend on this leaf alone
        ctx = z3.Context()
        lam = [z3.Real(f"l{k}", ctx) for k in range(len(cands))]
        sol = z3.Solver(ctx=ctx)
        for opt, v in Z3_OPTIONS.items():
            sol.set(opt, v)
        monos: dict[Any, Any] = {}
        for k, (_, rel, p) in enumerate(cands):
            if rel != "=":
                sol.add(lam[k] >= 0)
            for m, c in p.items():
                monos[m] = monos.get(m, 0) + lam[k] * z3.Q(c.numerator, c.denominator, ctx)
        if target is not None:
            for m, c in target.items():
                monos[m] = monos.get(m, 0) - z3.Q(c.numerator, c.denominator, ctx)
        const = monos.pop((), z3.RealVal(0, ctx))
        for e in monos.values():
            sol.add(e == 0)
        strict = z3.Sum([lam[k] for k, (_, rel, _) in enumerate(cands) if rel == ">"] or [z3.RealVal(0, ctx)])
        if target is None:  # sum = const; need const < 0, or const = 0 with a strict part
            sol.add(z3.Or(const < 0, z3.And(const <= 0, strict > 0)))
        else:  # target - sum = -const  =>  need -const > 0, or >= 0 with a strict part
            sol.add(z3.Or(-const > 0, z3.And(-const >= 0, strict > 0)))
        if sol.check() != z3.sat:
            return None
        model = sol.model()
        out = []
        for k, (refs, _, _) in enumerate(cands):
            v = model.eval(lam[k], model_completion=True).as_fraction()
            if v:
                out.append([refs, str(Fraction(v.numerator, v.denominator))])
        return out

    def farkas(self, leaf: Leaf) -> dict[str, Any] | None:
        if not any(r in (">", ">=", "=") for r, _ in leaf.facts):
            return None
        for products in (False, True):
            coeffs = self._combine(leaf, None, products)
            if coeffs is not None:
                return {"leaf": "farkas", "coeffs": coeffs}
        return None

    def nonzero(self, leaf: Leaf, d: Poly) -> dict[str, Any] | None:
        nes = [(i, r.num) for i, (rel, r) in enumerate(leaf.facts) if rel == "!=" and not r.den and r.num]
        for size in (1, 2, 3):
            for combo in itertools.combinations_with_replacement(nes, size):
                prod: Poly = {(): Fraction(1)}
                for _, p in combo:
                    prod = mul(prod, p)
                if lit_key("=", prod) == lit_key("=", d):
                    return {"ne": [i for i, _ in combo]}
        # d a positive multiple of one fact p > 0, or of a product of two (no LP needed)
        pos = [(i, p) for i, (rel, p) in enumerate(leaf.facts) if rel == ">"]
        for refs in [[i] for i, _ in pos] + [[i, j] for (i, _), (j, _) in
                                             itertools.combinations_with_replacement(pos, 2)]:
            prod = mul(leaf.facts[refs[0]][1], leaf.facts[refs[-1]][1]) if len(refs) == 2 \
                else leaf.facts[refs[0]][1]
            for sign in (1, -1):
                ratio = _ratio(prod, d, sign)
                if ratio is not None:
                    return {"sign": sign, "coeffs": [[refs, str(ratio)]]}
        for sign in (1, -1):
            target = {m: c * sign for m, c in d.items()}
            for products in (False, True):
                coeffs = self._combine(leaf, target, products)
                if coeffs is not None:
                    return {"sign": sign, "coeffs": coeffs}
        return None

    def zero(self, leaf: Leaf, i: int) -> dict[str, Any] | None:
        r = leaf.facts[i][1]
        just = []
        for _, d in r.factors():
            j = self.nonzero(leaf, d)
            if j is None:
                return None
            just.append(j)
        steps = self.in_ideal(leaf, r.num)
        return None if steps is None else {"leaf": "zero", "fact": i, **steps, "nonzero": just}

    def in_ideal(self, leaf: Leaf, num: Poly) -> dict[str, Any] | None:
        """``reduce`` or ``ideal`` steps (``refute._remainder``) showing ``num`` is in the ideal
        of the leaf's equality facts, or None."""
        reduce = self._reduce(leaf, num) if num else None
        if reduce is not None:
            return {"reduce": reduce}
        ideal: list[list[Any]] = []
        if num:
            eqs = [(j, p) for j, (rel, p) in enumerate(leaf.facts) if rel == "=" and p]
            if not eqs:
                return None
            syms: dict[str, sympy.Symbol] = {}
            f = self._to_sympy(num, syms)
            gens = [self._to_sympy(p, syms) for _, p in eqs]
            order = list(syms.values())
            texts = self._atom_text(leaf)
            names = {s: texts.get(a) for a, s in syms.items()}
            if any(v is None for v in names.values()):
                return None
            found = None
            for gen_order in (order, order[::-1]):
                try:
                    quots, rem = sympy.reduced(f, gens, *gen_order, order="lex")
                except (sympy.PolynomialError, sympy.CoercionFailed):
                    continue
                if sympy.expand(rem) == 0:
                    found = quots
                    break
            if found is None:
                return None
            for (j, _), q in zip(eqs, found):
                if sympy.expand(q) != 0:
                    ideal.append([j, self._smt_of(q, names)])  # type: ignore[arg-type]
        return {"ideal": ideal}

    def congruence(self, leaf: Leaf, path: list[Decision]) -> dict[str, Any] | None:
        """A split on ``(= f(a) f(b))``, two applications in the leaf's facts (distinct atoms)
        whose arguments the equality facts show equal: where it is false a ``cong`` leaf closes
        the case, where true it is one more fact (log(P) = log(Q) with P - Q in the ideal)."""
        in_facts = {a for _, p in leaf.facts for m in (p if isinstance(p, dict) else p.num) for a, _ in m}
        apps: dict[str, SExpr] = {}
        for sub, _ in self._apps:
            if len(sub) != 2:  # unary functions only (as the cong leaf)
                continue
            try:  # (an argument with a denominator is no polynomial for the ideal steps)
                r = leaf.norm.term(sub).num
                leaf.norm.term(sub[1]).poly("argument")
            except (Undecided, Division):
                continue
            name = next(iter(r))[0][0] if len(r) == 1 and len(next(iter(r))) == 1 else None
            if name in in_facts:
                apps.setdefault(name, sub)
        for sa, sb in itertools.combinations(apps.values(), 2):
            eq: SExpr = ("=", sa, sb)
            if sa[0] != sb[0] or leaf.decide(eq) is not None:
                continue
            lit = literal(eq, leaf.norm)
            # (the steps on the else-case's leaf: the same equality facts, numbered anew there)
            other = Leaf(self.script, [*path, (eq, lit, False)])
            steps = self.in_ideal(other, add(*(other.norm.term(t[1]).poly("argument") for t in (sa, sb)), -1))
            fact = next((i for i, (rel, r) in enumerate(other.facts) if rel == "!=" and not r.den
                         and lit_key("=", r.num) == lit_key("=", lit[1])), None)  # type: ignore[index]
            if steps is not None and fact is not None:
                return {"split": show(eq), "then": self.build([*path, (eq, lit, True)]),
                        "else": {"leaf": "cong", "fact": fact, "apps": [show(sa), show(sb)], **steps}}
        return None

    def _reduce(self, leaf: Leaf, num: Poly) -> list[list[Any]] | None:
        """``reduce`` steps (see ``refute.py``) taking ``num`` to 0: division by the equalities
        c * a^e + (lower in a), a a function application (sqrt(S)^2 = S), or None."""
        texts = {k: t for k, t in self._atom_text(leaf).items() if k.startswith("(")}
        steps: list[list[Any]] = []
        for j, (rel, p) in enumerate(leaf.facts):
            if rel != "=" or not num:
                continue
            for a, text in texts.items():
                try:
                    reduced = reduce_by(num, p, a)
                except Rejected:  # not of that form: try the next one
                    continue
                if reduced != num:
                    num = reduced
                    steps.append([j, text])
                    break
        return steps if steps and not num else None

    # -- splitting ------------------------------------------------------------------------------
    def _ite_conditions(self) -> list[SExpr]:
        """The statement's ite conditions in walk order (each shared subterm once)."""
        if getattr(self, "_ites", None) is None:
            self._ites = [t[1] for t in _subterms([t for _, t in self.script.asserts]) if t[0] == "ite"]
        return self._ites

    def ite_candidate(self, leaf: Leaf) -> SExpr | None:
        """An undecided branch condition to split on (branches are resolved first)."""
        for cond in self._ite_conditions():
            if leaf.decide(cond) is None:
                found = self._open_atom(leaf, cond)
                if found is not None:
                    return found
        return None

    def split_candidate(self, leaf: Leaf) -> SExpr | None:
        # first the branch conditions (every ite resolved), then one output component at a time
        found = self.ite_candidate(leaf)
        if found is not None:
            return found
        goal = self.script.goal
        inner = goal[1] if isinstance(goal, tuple) else goal
        # one claim at a time, and only while the negated claim is open: once a conjunct is
        # false the goal holds and the others are irrelevant (splitting on them too made the
        # tree exponential in the number of conjuncts, e.g. layer_norm's 3n equations)
        if isinstance(inner, tuple) and inner[0] == "and" and leaf.decide(goal) is None:
            open_parts = [a for a in inner[1:] if leaf.decide(a) is None]
            if len(open_parts) > 1:
                return open_parts[0]
        for _, t in self.script.asserts:
            if isinstance(t, tuple) and t[0] in ("or", "=>") and leaf.decide(t) is None:
                for sub in t[1:]:
                    if leaf.decide(sub) is None:
                        cand = self._open_atom(leaf, sub)
                        if cand is not None:
                            return cand
        return None

    def denominator_split(self, leaf: Leaf) -> SExpr | None:
        """The sign of a divisor (b > 0, then b < 0; b = 0 is left to the facts): with every
        factor's sign decided the checker multiplies a divided inequality out (``Leaf.cleared``)."""
        for _, t in self.script.asserts:
            for sub in _walk(t):
                if not (isinstance(sub, tuple) and sub[0] == "/" and len(sub) == 3):
                    continue
                for cand in ((">", sub[2], "0"), ("<", sub[2], "0")):
                    try:
                        if literal(cand, leaf.norm) is None:
                            continue
                    except (Undecided, Division):
                        continue
                    v = leaf.decide(cand)
                    if v is None:
                        return cand
                    if v:
                        break
        return None

    def sign_split(self, leaf: Leaf, path: list[Decision]) -> SExpr | None:
        """Last resort where products of two facts do not suffice (x^2 <= l^2 on [l, u] with
        u <= -l needs the sign of x): the sign of a variable not yet split on."""
        done = {show(t) for t, _, _ in path}
        for c in self.script.constants:
            t: SExpr = (">=", c, "0")
            if show(t) not in done and leaf.decide(t) is None:
                return t
        return None

    def _open_atom(self, leaf: Leaf, t: SExpr) -> SExpr | None:
        """An undecided comparison inside the undecided formula ``t`` that can be split on."""
        for sub in _walk(t):
            if isinstance(sub, tuple) and sub[0] in (">", ">=", "<", "<=", "=") and leaf.decide(sub) is None:
                try:
                    if literal(sub, leaf.norm) is not None:
                        return sub
                except (Undecided, Division):
                    continue
        return None

    def _conjuncts(self, leaf: Leaf, path: list[Decision], shared_first: bool = True
                   ) -> dict[str, Any] | None:
        """A claim of several conjuncts, still open: refute each alone (``conjuncts``), with
        ``shared_first`` on the case the first one's refutation splits first, if any (sqrt(S) > 0
        wants S > 0 in every one: split once for all; not for conjuncts with branches of their
        own, where it would rebuild every other conjunct at each leaf of the first one's tree)."""
        claim = self.script.goal[1] if isinstance(self.script.goal, tuple) else None
        if not (isinstance(claim, tuple) and claim[0] == "and" and len(claim) > 2) \
                or leaf.decide(self.script.goal) is not None:
            return None
        subs = []
        for c in claim[1:]:
            sub = copy.copy(self)  # the statement's squares and applications cover the part's
            sub._ites = sub._sep = None  # (its branch conditions are its own)
            sub.script = Script(self.script.constants, self.script.functions,
                                [(n, ("not", c) if n == "goal" else t) for n, t in self.script.asserts])
            subs.append(sub)
        t = subs[0].first_split(path) if shared_first else None
        if t is not None:
            return case_split(t, leaf, path, self.build)
        return {"conjuncts": [s.with_lemmas(path, [c for c in claim[1:] if c is not part])
                              for s, part in zip(subs, claim[1:])]}

    def with_lemmas(self, path: list[Decision], lemmas: list[SExpr]) -> dict[str, Any]:
        """``build(path)``, and where that finds no tree, the other conjuncts of the claim used as
        lemmas: a split on the first one still open, which is a fact in the then-case and, in the
        else-case, refuted from the domain as its own conjunct is (McCormick's plane at t, below
        x*w because the planes at t = 0 and 1 are: each of those needs a product of two domain
        facts, the plane at t would need products of three, which Farkas leaves do not take).
        A case that fails with every lemma decided fails the whole search at once, so a conjunct
        no lemma helps costs one attempt per lemma, not one per subset of the conjuncts."""
        try:
            return self.build(path)
        except NoProof:
            if time.monotonic() > self.deadline or not lemmas:
                raise
            leaf = Leaf(self.script, path)
            for k, lemma in enumerate(lemmas):
                if leaf.decide(lemma) is not None:
                    continue
                return case_split(lemma, leaf, path, lambda p, rest=lemmas[k + 1:]: self.with_lemmas(p, rest))
            raise

    def _separable(self) -> bool:
        """A conjunction whose first conjunct has fewer branch conditions than the whole claim
        (the conjuncts do not all share one set of branches), worth refuting part by part first."""
        if getattr(self, "_sep", None) is None:
            claim = self.script.goal[1] if isinstance(self.script.goal, tuple) else None
            self._sep = False
            if isinstance(claim, tuple) and claim[0] == "and" and len(claim) > 2:
                mine = {show(t) for t in _subterms([claim[1]]) if t[0] == "ite"}
                every = {show(t) for t in _subterms([claim]) if t[0] == "ite"}
                self._sep = len(mine) < len(every)
        return self._sep

    def first_split(self, path: list[Decision]) -> SExpr | None:
        """What ``build(path)`` would split on first, or None when it closes the case at once."""
        leaf = Leaf(self.script, path)
        if leaf.closed or any(rel == "!=" and self.zero(leaf, i) is not None
                              for i, (rel, _) in enumerate(leaf.facts)):
            return None
        return self.split_candidate(leaf)

    def build(self, path: list[Decision]) -> dict[str, Any]:
        if time.monotonic() > self.deadline:
            raise NoProof("certificate search timed out")
        if len(path) > MAX_DEPTH:
            raise NoProof("case split too deep")
        leaf = Leaf(self.script, path)
        if leaf.closed:
            return {"leaf": "false"}
        if path and path[-1][1] is not None and path[-1][1][0] != "=" or (path and not path[-1][2]):
            # a new comparison may make the case infeasible: prune it now (linear facts only)
            coeffs = self._combine(leaf, None, products=False)
            if coeffs is not None:
                return {"leaf": "farkas", "coeffs": coeffs}
        for i, (rel, _) in enumerate(leaf.facts):
            if rel == "!=":
                node = self.zero(leaf, i)
                if node is not None:
                    return node
        cand = self.ite_candidate(leaf)  # branches first, then the conjuncts one at a time
        if cand is not None and self._separable():
            # ... unless the conjuncts have branches of their own (pooling windows): splitting every
            # window's branches before separating the conjuncts made the tree exponential in the
            # number of windows; separated, each conjunct splits on its own window's only
            conj = self._conjuncts(leaf, path, shared_first=False)
            if conj is not None:
                return conj
        if cand is None:
            conj = self._conjuncts(leaf, path)
            if conj is not None:
                return conj
            cand = self.split_candidate(leaf)
        if cand is None:
            node = self.farkas(leaf)
            if node is not None:
                return node
            node = self.congruence(leaf, path)
            if node is not None:
                return node
            cand = self.denominator_split(leaf) or self.sign_split(leaf, path)
        if cand is None:
            raise NoProof("no leaf step closes the case " + " & ".join(
                f"{show(t)}={'T' if v else 'F'}" for t, _, v in path)[:300])
        return case_split(cand, leaf, path, self.build)


def case_split(t: SExpr, leaf: Leaf, path: list[Decision], build: Any) -> dict[str, Any]:
    """A split node on t: t's literal where it has one (else None, the checker decides t itself),
    the then-case built before the else-case by ``build(path)``."""
    try:
        lit = literal(t, leaf.norm)
    except (Undecided, Division):
        lit = None
    return {"split": show(t), "then": build([*path, (t, lit, True)]), "else": build([*path, (t, lit, False)])}


def certificate_tree(statement: str, timeout: float = 60.0) -> dict[str, Any]:
    """The refutation tree for ``statement``, or NoProof. A claim that is a conjunction is
    refuted one conjunct at a time (``{"conjuncts": [...]}``, linear in their number)."""
    search = Search(statement, time.monotonic() + timeout)
    return search.build([])

