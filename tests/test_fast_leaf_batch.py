"""The fast replay's batched bounds of leaves with slopes / split multipliers (certificates/
fast_vnn.py, ``_batch``/``_extras``, issue 15): one batched back-substitution per chunk of
leaves gives each proof the bound its own extras give alone, the verdicts equal the exact
replay's and the one-leaf-per-chunk replay's, and a mutated leaf inside a batch is still rejected
(by name). Uses test_graph_relu_bab's proved CNN (its certificate has leaves with slopes and β)."""

from __future__ import annotations

import copy
from fractions import Fraction

import numpy as np
import pytest

from tests.test_graph_relu_bab import proved_instance
from torchlean.certificates import fast_vnn
from torchlean.certificates.bounds import check_vnn


@pytest.fixture(scope="module")
def proved():
    """test_graph_relu_bab's CNN and property, proved by ReLU splitting with α and β."""
    t, spec, res = proved_instance()
    assert res.verdict == "unsat"
    return t, spec, res


def _leaves(cert):
    tree = cert["regions"][0]["per_disjunct"][0]
    return [(pos, n) for pos, n in enumerate(tree) if n[0] == "leaf"]


def test_batch_equals_each_leaf_alone(proved, monkeypatch):
    """Every batched call's bounds equal those of each request bounded alone (the per-leaf
    replay), and a batch with more than one request happens."""
    t, spec, res = proved
    real = fast_vnn._extras
    sizes = []

    def spy(bg, F, st, reqs):
        low = real(bg, F, st, reqs)
        sizes.append(len(reqs))
        for r, v in zip(reqs, low):
            alone = real(bg, F, st, [r])[0]
            assert np.isclose(v, alone, rtol=1e-9, atol=1e-12), (v, alone)
        return low

    monkeypatch.setattr(fast_vnn, "_extras", spy)
    v = check_vnn(res.cert, t.bg, spec, mode="fast")
    assert v.ok, v.reason
    assert max(sizes) > 1, sizes


def test_verdicts_match_exact_and_per_leaf_chunks(proved, monkeypatch):
    t, spec, res = proved
    assert check_vnn(res.cert, t.bg, spec, mode="exact").ok
    assert check_vnn(res.cert, t.bg, spec, mode="fast").ok
    monkeypatch.setattr(fast_vnn, "CHUNK", 1)  # every leaf in its own chunk: batches of one leaf
    assert check_vnn(res.cert, t.bg, spec, mode="fast").ok


@pytest.mark.parametrize("mutation", ["raised", "negative_mult", "huge_mult", "slope_out"])
def test_mutated_leaf_in_batch_is_rejected(proved, mutation):
    """Each leaf with extras in turn: the mutation makes the fast replay reject that leaf."""
    t, spec, res = proved
    hit = 0
    for no, (pos, _) in enumerate(_leaves(res.cert)):
        cert = copy.deepcopy(res.cert)
        proof = _leaves(cert)[no][1][1][0]
        if len(proof) != 3:
            continue
        ex = proof[2]
        if mutation == "raised":  # far above any bound of the leaf (its true minimum is below)
            proof[1] = "1000000"
        elif mutation == "negative_mult":
            if "mult" not in ex:
                continue
            ex["mult"][0][2] = "-" + str(ex["mult"][0][2]).lstrip("-")
        elif mutation == "huge_mult":  # a huge multiplier: valid, but its bound misses the claim
            if "mult" not in ex:
                continue
            ex["mult"][0][2] = "1000000"
        else:  # ReLU slopes far outside [0, 1] on the unstable elements given fractional slopes
            # (all of them: one alone may sit where the row's multiplier is negative, so that its
            # lower line is never used and the bound, rightly, still holds)
            ks = [e for e in ex.get("slopes", []) if "/" in str(e[2])]
            if not ks:
                continue
            for k in ks:
                k[2] = "1000"
        hit += 1
        v = check_vnn(cert, t.bg, spec, mode="fast")
        assert not v.ok, (mutation, no)
        assert f"leaf {no}" in v.reason or mutation == "negative_mult", v.reason
    assert hit >= 2, mutation


def test_max_choices_batched_as_exact_mode():
    """A CNN with a max node (test_bound_graph_vnn's): every leaf given each member choice of the
    max node's elements in turn, all leaves of a chunk in one batch: the fast replay's verdict is
    the exact replay's (the claims are those of the plain bound, so either may fail to reach them,
    never the one without the other by more than rounding: both bound the same relaxation)."""
    from tests.test_bound_graph_vnn import cnn_net, robustness, search, unsat_cert
    from torchlean.certificates.lower import lower

    rng = np.random.default_rng(4)
    g = cnn_net(rng)
    bg = lower(g.to_dict())
    x0 = [float(v) for v in rng.uniform(-1, 1, bg.n_in)]
    spec = robustness(bg, x0, 0.05)
    tree = search(bg, spec, depth=6)
    k = next(k for k, n in enumerate(bg.nodes) if n.kind == "max")
    accepted = 0
    for m in range(len(bg.nodes[k].args[0])):
        t2 = [list(e) for e in tree]
        for i, e in enumerate(t2):
            if e[0] == "leaf":  # half the claim: the member choice may loosen the bound a little
                claim = Fraction(e[1][0][1]) / 2
                ch = [[k, j, m, None] for j in range(bg.nodes[k].size) if m < len(bg.nodes[k].args[j])]
                t2[i] = ["leaf", [[0, str(claim), {"slopes": ch}]]]
        verdicts = [check_vnn(unsat_cert(bg, spec, t2), bg, spec, mode=mode) for mode in ("exact", "fast")]
        assert verdicts[0].ok == verdicts[1].ok, [v.reason for v in verdicts]
        accepted += verdicts[1].ok
    assert accepted
