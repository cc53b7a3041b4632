"""ReLU splitting: bounds on a region (box ∩ phase constraints) with optimised lower slopes α and
split multipliers β, the branch-and-bound over phases (verify/relu_bab.py), and its certificates.

References: exact rational evaluation of sampled points that satisfy the phase constraints (the
bounds must hold there), the exact-mode checker against the fast one, and tampered certificates
(every mutation must be rejected in both replay modes).
"""

import copy
from fractions import Fraction

import numpy as np
import pytest
from test_bounds import exact_outputs, random_graph

from torchlean.certificates import fast
from torchlean.certificates.bounds import check_vnn, crown_lower_exact, hidden_widths, objective_steps
from torchlean.certificates.fast_crown import crown_bounds
from torchlean.certificates.network import network_from_ir
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.verify.bab import INPUT_SPLIT_MAX, verify
from torchlean.verify.network import float_net
from torchlean.verify.relu_bab import optimise


def _q(v: float) -> Fraction:
    return Fraction(v).limit_denominator(1000)


def _pre_activations(fnet, x):
    out, h = [], x
    for W, c in fnet.layers[:-1]:
        h = h @ W.T + c
        out.append(h)
        h = np.maximum(h, 0.0)
    return np.concatenate(out, 1)


@pytest.mark.parametrize("seed", range(3))
def test_region_bounds_sound_and_fast_matches_exact(seed):
    rng = np.random.default_rng(100 + seed)
    g = random_graph(rng, (4, 8, 8, 2))
    net = network_from_ir(g.to_dict())
    fnet = float_net(net)
    widths = hidden_widths(net)
    H = sum(widths)
    lo, hi = np.array([[-1.0] * 4]), np.array([[1.0] * 4])
    region = Region(tuple(Fraction(-1) for _ in range(4)), tuple(Fraction(1) for _ in range(4)), ())
    atoms = tuple(Atom(tuple(Fraction(int(i == j)) for i in range(2)), Fraction(0), False) for j in range(2))
    steps, _ = objective_steps(net, Region(region.lo, region.hi, (tuple(atoms),)))
    layers = fast.prepare(steps)
    # split a few neurons with the phase of a random point (so the region is not empty)
    z0 = _pre_activations(fnet, rng.uniform(-1, 1, (1, 4)))[0]
    split = rng.choice(H, 4, replace=False)
    phases = np.full((1, H), -1, dtype=np.int8)
    phases[0, split] = (z0[split] >= 0).astype(np.int8)
    alpha = rng.uniform(0, 1, (1, 2, H))
    mult = np.where(phases[:, None, :] >= 0, rng.uniform(0, 0.5, (1, 2, H)), 0.0)
    f_lb = crown_bounds(layers, lo, hi, phases=phases, alpha=alpha, mult=mult)[0]
    offs = np.cumsum((0, *widths))
    key = {h: (int(np.searchsorted(offs, h, side="right") - 1), 0) for h in range(H)}
    key = {h: (lay, h - int(offs[lay])) for h, (lay, _) in key.items()}
    ph = {key[h]: int(phases[0, h]) for h in split}
    lower = crown_lower_exact(steps, [Fraction(-1)] * 4, [Fraction(1)] * 4, ph)
    for k in range(2):
        extras = (
            {key[h]: Fraction(float(alpha[0, k, h])) for h in range(H)},
            {key[h]: Fraction(float(mult[0, k, h])) for h in split},
        )
        e = float(lower(k, extras))
        assert f_lb[k] <= e + 1e-12 and abs(f_lb[k] - e) < 1e-9  # fast: sound and close
        pts = rng.uniform(-1, 1, (4000, 4))
        z = _pre_activations(fnet, pts)[:, split]
        inside = ((z >= 1e-9) == (phases[0, split] == 1)).all(1) & (np.abs(z) > 1e-9).all(1)
        assert inside.sum() > 0
        y = exact_outputs(net, pts[inside][:200])
        assert (y[:, k] >= e - 1e-12).all()


def test_optimised_slopes_never_worse_than_crown():
    rng = np.random.default_rng(7)
    net = network_from_ir(random_graph(rng, (6, 16, 16, 3)).to_dict())
    atoms = tuple(Atom(tuple(Fraction(int(i == j)) for i in range(3)), Fraction(0), False) for j in range(3))
    steps, _ = objective_steps(net, Region((Fraction(-1),) * 6, (Fraction(1),) * 6, (atoms,)))
    layers = fast.prepare(steps)
    lo, hi = -np.ones((3, 6)), np.ones((3, 6))
    phases = np.full((3, 32), -1, dtype=np.int8)
    plain = crown_bounds(layers, lo, hi)
    a, b, _, _, _ = optimise(layers, lo, hi, phases, hidden_widths(net))
    opt = crown_bounds(layers, lo, hi, phases=phases, alpha=a, mult=b)
    assert (opt >= plain - 1e-9).all() and (opt > plain + 1e-6).any()


@pytest.fixture(scope="module")
def relu_case():
    """A 20-input network (above INPUT_SPLIT_MAX, so ReLUs are split) and a true property that
    plain CROWN cannot prove at the root."""
    rng = np.random.default_rng(0)
    net = network_from_ir(random_graph(rng, (20, 12, 12, 2)).to_dict())
    fnet = float_net(net)
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
    tree = cert["regions"][0]["per_disjunct"][0]
    assert sum(1 for n in tree if n[0] == "relu") >= 5
    assert any(len(p) == 3 for n in tree if n[0] == "leaf" for p in n[1])  # uses α/β extras
    v = check_vnn(cert, net, spec, mode=mode)
    assert v.ok, v.reason


def _first(tree, kind):
    return next(i for i, n in enumerate(tree) if n[0] == kind)


def _extras_leaf(tree):
    return next(i for i, n in enumerate(tree) if n[0] == "leaf" and len(n[1][0]) == 3)


def _mut_alpha_above_one(t):
    ex = t[_extras_leaf(t)][1][0][2]
    ex["alpha"][0][2] = "3/2"


def _mut_mult_negative(t):
    i = next(i for i, n in enumerate(t) if n[0] == "leaf" and len(n[1][0]) == 3 and "mult" in n[1][0][2])
    t[i][1][0][2]["mult"][0][2] = "-1/10"


def _mut_mult_on_unsplit(t):
    ex = t[_extras_leaf(t)][1][0][2]
    used = {tuple(n[1:]) for n in t if n[0] == "relu"}
    free = next((lay, i) for lay in range(2) for i in range(12) if (lay, i) not in used)
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
    _mut_alpha_above_one,
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
    mutate(bad["regions"][0]["per_disjunct"][0])
    v = check_vnn(bad, net, spec, mode=mode)
    assert not v.ok, mutate.__name__


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_per_disjunct_entry_shape_checked(relu_case, mode):
    net, spec, cert = relu_case
    bad = copy.deepcopy(cert)
    bad["regions"][0]["per_disjunct"].append(bad["regions"][0]["per_disjunct"][0])
    assert not check_vnn(bad, net, spec, mode=mode).ok
    bad = copy.deepcopy(cert)
    bad["regions"][0] = {"per_disjunct": bad["regions"][0]["per_disjunct"], "x": 1}
    assert not check_vnn(bad, net, spec, mode=mode).ok
