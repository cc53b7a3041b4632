"""The certificate search (``proofs/prove.py``, untrusted): it finds the trees the library needs,
and the same obligation gives the same tree whatever ran before it (regenerating the library
reproduces it)."""

import copy
import json
import multiprocessing as mp

import pytest
import z3

import torchlean  # noqa: F401
from torchlean.certificates import check, intervals
from torchlean.proofs import ibp
from torchlean.proofs.artifacts import LIBRARY_DIR, path_for
from torchlean.proofs.cli import collect
from torchlean.proofs.prove import NoProof, certificate_tree


def _ob(name):
    (ob,) = [o for o in collect(None, [name], library=True) if o.name == name]
    return ob


def _accepts(statement, tree):
    return check({"kind": "refutation", "statement": statement, "tree": tree})


def _canon(tree):
    return json.dumps(tree, sort_keys=True)


def _splits(tree):
    if "split" in tree:
        yield tree["split"]
        yield from _splits(tree["then"])
        yield from _splits(tree["else"])
    for part in tree.get("conjuncts", []):
        yield from _splits(part)


@pytest.mark.parametrize("side", ["lower", "upper"])
def test_mccormick_planes_get_a_checked_tree(side, monkeypatch):
    """relax.mul.*: the plane at t is below (above) x*w because the planes at t = 0 and 1 are;
    each of those is a product of two domain facts, the plane at t alone would need products of
    three. The search proves the last conjunct with the other conjuncts as lemmas (a split on
    each), and the trusted checker replays it."""
    ob = _ob(f"relax.mul.{side}")
    tree = certificate_tree(ob.smtlib, timeout=60)
    v = _accepts(ob.smtlib, tree)
    assert v.ok, v.reason
    claim_parts = tree["conjuncts"]
    assert len(claim_parts) == 4
    lemma = claim_parts[3]
    assert "split" in lemma and "split" in lemma["then"]  # the planes at t = 0 and 1, as lemmas
    # without the lemmas (the leaf under both, alone) the checker refuses it: Farkas with products
    # of two facts does not reach the plane at t
    bad = copy.deepcopy(tree)
    bad["conjuncts"][3] = lemma["then"]["then"]
    assert not _accepts(ob.smtlib, bad).ok
    # the tree proves this rule, not a wrong one: McCormick's lower plane with lx and ux swapped
    if side == "lower":
        good = intervals.mccormick

        def swapped(a, b, t_lo, t_up, ops=intervals.EXACT):
            (lx, ux), (lw, uw) = a, b
            return ((1 - t_lo) * lw + t_lo * uw, (1 - t_lo) * ux + t_lo * lx,
                    -(1 - t_lo) * ux * lw - t_lo * lx * uw), good(a, b, t_lo, t_up, ops)[1]

        monkeypatch.setattr(intervals, "mccormick", swapped)
        (wrong,) = [o for o in ibp.interval_obligations() if o.name == ob.name]
        assert wrong.smtlib != ob.smtlib
        assert not _accepts(wrong.smtlib, tree).ok
        with pytest.raises(NoProof):
            certificate_tree(wrong.smtlib, timeout=20)


_THREE = """(set-logic QF_NRA)
(declare-fun t () Real)
(declare-fun x () Real)
(declare-fun y () Real)
(assert (! (and (<= 0 t) (<= 0 x) (<= 0 y)) :named dom_0))
(assert (! (not (and (<= 0 (* x y)) (<= 0 (* t x y)))) :named goal))
(check-sat)
"""


def test_a_conjunct_is_proved_from_the_others():
    """Not McCormick's alone: t*x*y >= 0 on t, x, y >= 0 needs a product of three facts, or the
    first conjunct x*y >= 0 as a lemma times t >= 0. The search splits on the lemma; the first
    conjunct's own tree needs none."""
    tree = certificate_tree(_THREE, timeout=30)
    assert _accepts(_THREE, tree).ok
    first, second = tree["conjuncts"]
    assert "split" not in first and second["split"] == "(<= 0 (* x y))"
    # the claim's second part alone (no conjunct to use as a lemma) has no tree
    alone = _THREE.replace("(and (<= 0 (* x y)) (<= 0 (* t x y)))", "(<= 0 (* t x y))")
    with pytest.raises(NoProof):
        certificate_tree(alone, timeout=30)


#: fast obligations; ibp.rsqrt and ibp.square got other trees after other searches in the same
#: process (z3's global context: the Farkas LP's model depended on the queries run before)
SAME = ["ibp.rsqrt", "ibp.square", "forward.div", "relax.mul.lower"]


def _perturb():
    """Queries in z3's global context and other searches, as a worker that ran others first."""
    for name in ("ibp.abs", "ibp.affine", "ibp.exp"):
        certificate_tree(_ob(name).smtlib, timeout=60)
    s = z3.Solver()
    xs = [z3.Real(f"l{k}") for k in range(40)]
    s.add(z3.Sum(xs) == 3, *[x >= k for k, x in enumerate(xs[:5])])
    assert s.check() == z3.sat


def _in_child(conn, statement):
    conn.send(_canon(certificate_tree(statement, timeout=60)))
    conn.close()


def _forked(statement):
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_in_child, args=(child, statement), daemon=True)
    proc.start()
    child.close()
    assert parent.poll(90)
    out = parent.recv()
    proc.join(5)
    return out


def test_the_same_obligation_gives_the_same_tree():
    """Two searches of one obligation give identical trees: in a fresh child (as ``discharge``
    runs them), here, and here again after other searches and z3 queries."""
    obs = [_ob(n) for n in SAME]
    first = [_canon(certificate_tree(ob.smtlib, timeout=60)) for ob in obs]
    _perturb()
    assert [_canon(certificate_tree(ob.smtlib, timeout=60)) for ob in obs] == first
    assert [_forked(ob.smtlib) for ob in obs] == first


@pytest.mark.slow
def test_regenerating_reproduces_every_committed_tree():
    """Every tree in torchlean's own library is the one the search finds now (same z3 as when the
    library was regenerated: a z3 with another LP may pick other Farkas coefficients; the trees
    found then are still checked, only no longer byte-identical)."""
    if z3.get_version_string() != "5.4.1":  # the z3 the library was regenerated with
        pytest.skip(f"library trees regenerated with z3 5.4.1, this is {z3.get_version_string()}")
    differ = []
    for ob in collect(None, None, library=True):
        try:
            art = json.loads(path_for(LIBRARY_DIR, ob).read_text())
        except OSError:
            continue
        committed = (art.get("certificate") or {}).get("tree")
        if committed is not None and _canon(certificate_tree(ob.smtlib, timeout=60)) != _canon(committed):
            differ.append(ob.name)
    assert differ == []



def test_a_conjunct_no_lemma_helps_fails_after_one_attempt_per_lemma(monkeypatch):
    """A false conjunct among six true ones that could be lemmas: no tree, and the search gives up
    after one attempt per lemma (a failed case ends the search), not one per subset of them."""
    from torchlean.proofs import prove

    others = " ".join(f"(<= 0 (* {a} {b}))" for a, b in
                      (("x", "y"), ("x", "z"), ("y", "z"), ("t", "x"), ("t", "y"), ("t", "z")))
    statement = _THREE.replace("(declare-fun y () Real)", "(declare-fun y () Real)(declare-fun z () Real)") \
        .replace("(<= 0 y))", "(<= 0 y) (<= 0 z))") \
        .replace("(and (<= 0 (* x y)) (<= 0 (* t x y)))", f"(and {others} (<= 1 (* t x y z)))")
    calls = []
    real = prove.Search.with_lemmas

    def counted(self, path, lemmas):
        calls.append(len(lemmas))
        return real(self, path, lemmas)

    monkeypatch.setattr(prove.Search, "with_lemmas", counted)
    with pytest.raises(NoProof):
        certificate_tree(statement, timeout=60)
    # the six true conjuncts: one call each; the false one: its first call and one per lemma
    assert len(calls) <= 6 + 1 + 6
    assert calls[-1] < 6  # lemmas were tried (the last call had fewer left than the first)
