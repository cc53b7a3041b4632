"""ReLU splitting on a ReLU chain with more inputs than the input-split search takes (17-64 inputs:
``star.close_region`` on the bound table, ReLU splits whose leaves carry an LP's duals as slopes α
and split multipliers β, then ``graph_relu``'s gradient β), and its certificates (graph
certificates, checked by ``graph_vnn``/``fast_vnn``).

References: exact rational evaluation of sampled points (no sampled point may be a counterexample
of a property proved), and tampered certificates (every mutation must be rejected in both replay
modes). (This file covered the ReLU-chain engine's ReLU splits, ``relu_bab``, removed in issue 14.)
"""

import copy
from fractions import Fraction

import numpy as np
import pytest
from test_bounds import exact_outputs, random_graph

from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.lower import lower
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.verify.bab import INPUT_SPLIT_MAX, verify
from torchlean.verify.network import float_chain


def _q(v: float) -> Fraction:
    return Fraction(v).limit_denominator(1000)


@pytest.fixture(scope="module")
def relu_case():
    """A 20-input network (above INPUT_SPLIT_MAX, so ReLUs are split) and a true property that
    plain CROWN cannot prove at the root."""
    rng = np.random.default_rng(0)
    net = lower(random_graph(rng, (20, 12, 12, 2)).to_dict())
    fnet = float_chain(net)
    x0 = rng.uniform(-1, 1, 20)
    lo, hi = np.round(x0 - 0.3, 3), np.round(x0 + 0.3, 3)
    pts = rng.uniform(lo, hi, (20000, 20))
    y = fnet.forward(pts)
    t = _q((y[:, 0] - y[:, 1]).min() - 0.4)
    spec = Spec(
        20,
        2,
        (
            Region(
                tuple(_q(v) for v in lo),
                tuple(_q(v) for v in hi),
                ((Atom((Fraction(1), Fraction(-1)), t, False),),),
            ),
        ),
    )
    assert net.n_in > INPUT_SPLIT_MAX
    res = verify(net, spec, timeout=60)
    assert res.verdict == "unsat"
    ys = exact_outputs(net, pts[:300])
    assert (ys[:, 0] - ys[:, 1] > t).all()  # no sampled point is a counterexample
    return net, spec, res.cert


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_relu_split_certificate_accepted(relu_case, mode):
    net, spec, cert = relu_case
    tree = _tree(cert)
    assert sum(1 for n in tree if n[0] == "relu") >= 5
    assert any(len(p) == 3 for n in tree if n[0] == "leaf" for p in n[1])  # uses slopes/β extras
    v = check_vnn(cert, net, spec, mode=mode)
    assert v.ok, v.reason


def _tree(cert):
    """The region's one tree (``star.close_region``'s), or its one disjunct's (``graph_relu``'s)."""
    entry = cert["regions"][0]
    return entry["per_disjunct"][0] if isinstance(entry, dict) else entry


def _first(tree, kind):
    return next(i for i, n in enumerate(tree) if n[0] == kind)


def _extras_leaf(tree):
    return next(i for i, n in enumerate(tree) if n[0] == "leaf" and len(n[1][0]) == 3)


def _mut_slope_on_a_linear_node(t):
    ex = t[_extras_leaf(t)][1][0][2]
    ex.setdefault("slopes", []).append([0, 0, "1/2", None])  # node 0 is the input: nothing relaxed


def _mut_mult_negative(t):
    i = next(i for i, n in enumerate(t) if n[0] == "leaf" and len(n[1][0]) == 3 and "mult" in n[1][0][2])
    t[i][1][0][2]["mult"][0][2] = "-1/10"


def _mut_mult_on_unsplit(t):
    ex = t[_extras_leaf(t)][1][0][2]
    used = {tuple(n[1:]) for n in t if n[0] == "relu"}
    free = next((k, i) for k in (1, 2) for i in range(12) if (k, i) not in used)
    ex.setdefault("mult", []).append([free[0], free[1], "1/10"])


def _mut_split_twice(t):
    i = _first(t, "relu")
    t[i + 1 : i + 1] = [list(t[i])]  # the same neuron again right below itself
    t.insert(i + 2, ["leaf", copy.deepcopy(t[_first(t, "leaf")][1])])


def _mut_bad_neuron(t):
    t[_first(t, "relu")][2] = 99


def _mut_drop_subtree(t):
    del t[len(t) - 1]


def _mut_claim_more(t):
    leaf = t[_first(t, "leaf")]
    leaf[1][0][1] = str(Fraction(leaf[1][0][1]) * 1000)


def _mut_root_leaf(t):
    t[:] = [["leaf", [[0, "1/1000"]]]]


MUTATIONS = [
    _mut_slope_on_a_linear_node,
    _mut_mult_negative,
    _mut_mult_on_unsplit,
    _mut_split_twice,
    _mut_bad_neuron,
    _mut_drop_subtree,
    _mut_claim_more,
    _mut_root_leaf,
]


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("mutate", MUTATIONS, ids=lambda f: f.__name__[5:])
def test_relu_split_mutations_rejected(relu_case, mode, mutate):
    net, spec, cert = relu_case
    bad = copy.deepcopy(cert)
    mutate(_tree(bad))
    v = check_vnn(bad, net, spec, mode=mode)
    assert not v.ok, mutate.__name__


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_per_disjunct_entry_shape_checked(relu_case, mode):
    net, spec, cert = relu_case
    one = copy.deepcopy(cert)
    one["regions"][0] = {"per_disjunct": [_tree(cert)]}  # the same tree as a per-disjunct entry
    assert check_vnn(one, net, spec, mode=mode).ok
    bad = copy.deepcopy(one)
    bad["regions"][0]["per_disjunct"].append(bad["regions"][0]["per_disjunct"][0])
    assert not check_vnn(bad, net, spec, mode=mode).ok
    bad = copy.deepcopy(cert)
    bad = copy.deepcopy(one)
    bad["regions"][0] = {"per_disjunct": bad["regions"][0]["per_disjunct"], "x": 1}
    assert not check_vnn(bad, net, spec, mode=mode).ok


def _lp_instance(b: Fraction):
    """A 20-input 10-10-1 network and "y0 <= b" on [-0.3, 0.3]^20 (the instance the ReLU-chain
    engine's LP leaves were written for): b just below the minimum (unsat) or above it (sat)."""
    rng = np.random.default_rng(4)
    bg = lower(random_graph(rng, (20, 10, 10, 1)).to_dict())
    box = tuple(Fraction(-3, 10) for _ in range(20)), tuple(Fraction(3, 10) for _ in range(20))
    return bg, Spec(20, 1, (Region(*box, ((Atom((Fraction(1),), b, False),),)),))


def test_phase_fixed_subproblems_closed_by_lp_duals():
    """Gradient β leaves a subproblem with every phase fixed open (``graph_relu`` alone gives up
    there); the LP-dual search (``star.close_region``) proves the region, replayed in both modes."""
    from torchlean.verify import lp

    if not lp.available():
        pytest.skip("highspy (the lp extra) is not installed")
    bg, spec = _lp_instance(Fraction(-124755443, 241222856))
    res = verify(bg, spec, timeout=60)
    assert res.verdict == "unsat" and res.stats.get("star_region") == 1, res.stats
    for mode in ("exact", "fast"):
        v = check_vnn(res.cert, bg, spec, mode=mode)
        assert v.ok, (mode, v.reason)
    bad = copy.deepcopy(res.cert)
    leaf = next(n for n in bad["regions"][0] if n[0] == "leaf" and len(n[1][0]) == 3)
    leaf[1][0][1] = str(Fraction(leaf[1][0][1]) * 1000)
    assert not check_vnn(bad, bg, spec, mode="fast").ok


def test_lp_instance_counterexample_confirmed_exactly():
    bg, spec = _lp_instance(Fraction(-4956807857557458, 10**16))
    res = verify(bg, spec, timeout=30, attack_first=False)
    assert res.verdict == "sat" and check_vnn(res.cert, bg, spec).ok
    y = exact_outputs(bg, np.array([[float(v) for v in res.x]]))[0, 0]
    assert Fraction(y) <= Fraction(-4956807857557458, 10**16) + Fraction(1, 10**12)
