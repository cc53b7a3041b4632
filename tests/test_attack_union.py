"""The attack's joint objective over disjuncts, the graph confirmer's float pre-filter, and the
exact dot product of the interval rule (session 11 speed-ups for deep image networks)."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest

from torchlean.certificates.intervals import EXACT, interval_affine
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.verify import attack, table
from torchlean.verify.api import robustness_spec

torch = pytest.importorskip("torch")


def test_exact_dot_equals_fraction_arithmetic_on_dyadic_and_other_denominators():
    rng = random.Random(0)
    for trial in range(300):
        n = rng.randint(0, 12)
        den = (lambda: 2 ** rng.randint(0, 60)) if trial % 2 else (lambda: rng.randint(1, 10**6))
        c = Fraction(rng.randint(-10**9, 10**9), den())
        qs = [Fraction(rng.randint(-10**9, 10**9), den()) for _ in range(n)]
        xs = [Fraction(rng.randint(-10**9, 10**9), den()) for _ in range(n)]
        want = c + sum((q * x for q, x in zip(qs, xs)), Fraction(0))
        got = EXACT.dot(c, qs, xs)
        assert got == want and isinstance(got, Fraction)


def test_interval_affine_takes_each_terms_minimising_corner_exactly():
    rng = random.Random(1)
    for _ in range(100):
        terms = []
        for _ in range(rng.randint(1, 8)):
            a, b = sorted(Fraction(rng.randint(-99, 99), rng.randint(1, 64)) for _ in range(2))
            terms.append((Fraction(rng.randint(-50, 50), rng.randint(1, 9)), (a, b)))
        lo, hi = interval_affine(Fraction(3, 7), terms)
        corners = [Fraction(3, 7) + sum(q * (u if bit >> j & 1 else l) for j, (q, (l, u)) in enumerate(terms))
                   for bit in range(2 ** len(terms))]
        assert lo == min(corners) and hi == max(corners)


class _Linear:
    """y = x @ W (an executor for ``attack``)."""

    def __init__(self, W: np.ndarray):
        self.W, self.n_in, self.n_out = W, W.shape[0], W.shape[1]

    def forward(self, x):
        return x @ self.W

    def value_and_grad(self, x, g_y):
        y = x @ self.W
        return y, g_y(y) @ self.W.T


def test_pgd_over_disjuncts_descends_the_min_over_disjuncts_of_the_max_over_atoms():
    """Lists (A_j, b_j): every start moves towards whichever disjunct is nearest; the values it
    returns are that objective at the points it returns (brute force)."""
    rng = np.random.default_rng(0)
    disj = [(rng.normal(size=(k, 5)), rng.normal(size=k)) for k in (1, 3, 2)]
    ex = _Linear(np.eye(5))
    z0 = rng.uniform(-1, 1, (30, 5))
    lo, hi = -np.ones(5), np.ones(5)
    z, v = attack.pgd(ex, [a for a, _ in disj], [c for _, c in disj], z0, lo, hi, steps=10)
    per = np.stack([(z @ a.T - c).max(1) for a, c in disj], 1)
    assert np.allclose(v, per.min(1))
    start = np.stack([(z0 @ a.T - c).max(1) for a, c in disj], 1).min(1)
    assert (v <= start + 1e-12).all() and (v < start).any()


def _classifier_spec(n_in: int, n_out: int, label: int, r: float) -> Spec:
    """'some class j beats label' on the box [-r, r]^n: one disjunct y_label - y_j <= 0 per j."""
    q = Fraction(r)
    return robustness_spec((-q,) * n_in, (q,) * n_in, n_out, label)


def test_search_finds_the_one_reachable_class_among_many_in_one_round(monkeypatch):
    # ten classes, label 0 wins by 1 at the centre; only class 9 can overtake it inside the box:
    # the joint PGD moves every start towards whichever class is nearest
    n, m = 200, 10
    rng = np.random.default_rng(3)
    W = rng.normal(scale=1e-3, size=(n, m))
    W[:, 9] += 0.02 * np.sign(rng.normal(size=n))
    bias = np.zeros(m)
    bias[0] = 1.0

    class Ex(_Linear):
        def forward(self, x):
            return x @ self.W + bias

        def value_and_grad(self, x, g_y):
            y = self.forward(x)
            return y, g_y(y) @ self.W.T

    ex = Ex(W)
    spec = _classifier_spec(n, m, 0, 0.5)
    calls = []

    def confirm(x):
        calls.append(x)
        y = ex.forward(np.array([[float(v) for v in x]]))[0]
        return bool(y[9] >= y[0])

    real, dims = attack.pgd, []

    def pgd(ex, A, *args, **kw):
        dims.append(len(A) if isinstance(A, list) else 1)
        return real(ex, A, *args, **kw)

    monkeypatch.setattr(attack, "pgd", pgd)
    x = attack.search(ex, spec, confirm, rounds=1, samples=0)
    assert x is not None and confirm(x)
    assert dims == [9]  # one joint PGD over the nine disjuncts, not one PGD per class


def test_float_sat_decides_only_with_a_margin():
    spec = _classifier_spec(2, 3, 0, 1.0)
    x = [Fraction(0), Fraction(0)]
    # y1 > y0 surely on the enclosure: sat
    assert table.float_sat(spec, x, np.array([0.0, 2.0, -5.0]), np.array([0.1, 2.1, -4.0])) is True
    # y0 beats both surely: no disjunct can hold
    assert table.float_sat(spec, x, np.array([3.0, 0.0, 0.0]), np.array([3.1, 1.0, 1.0])) is False
    # a tie inside the enclosure: undecided, the exact test decides
    assert table.float_sat(spec, x, np.array([1.0, 0.9, -5.0]), np.array([1.2, 1.1, -4.0])) is None
    # x outside the region: nothing holds there
    far = [Fraction(5), Fraction(0)]
    assert table.float_sat(spec, far, np.array([0.0, 2.0, -5.0]), np.array([0.1, 2.1, -4.0])) is False


def test_graph_confirmer_agrees_with_the_exact_check_on_random_points(tmp_path):
    import torchlean as tl
    from torchlean import bridge
    from torchlean.bridge.torch_io import from_torch_state_dict
    from torchlean.verify.network import load_graph

    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    model = tl.nn.Sequential(tl.nn.Linear(3, 16), tl.nn.Tanh(), tl.nn.Linear(16, 3))
    from_torch_state_dict(model, tm.state_dict())
    path = tmp_path / "m.onnx"
    bridge.export_onnx(tl.trace(model, tl.zeros(1, 3)), path)
    tgt = table.target(load_graph(path))
    rng = np.random.default_rng(1)
    pts = rng.uniform(-1, 1, (40, 3))
    wins = np.bincount(tm(torch.tensor(pts, dtype=torch.float32)).argmax(1).numpy(), minlength=3)
    spec = _classifier_spec(3, 3, int(wins.argmax()), 1.0)  # the label that wins most points
    conf = table.confirmer(tgt, spec)
    answers = set()
    for z in pts:
        x = attack.box_point(z, spec.regions[0])
        want = table.check(table.sat_cert(tgt, spec, x), tgt, spec).ok
        assert conf(x) == want
        answers.add(want)
    assert answers == {True, False}  # both kinds of point were exercised


def test_root_corners_reach_a_counterexample_where_the_gradient_is_zero(tmp_path):
    """y = relu(w·x - b) with b so large that every ReLU is dead around the box centre (gradient 0:
    PGD cannot move), yet positive near one corner: the CROWN bound's minimiser is that corner."""
    import torchlean as tl
    from torchlean import bridge
    from torchlean.certificates import fast_engine as fe
    from torchlean.verify import graph_relu
    from torchlean.verify.network import load_graph

    n = 80
    rng = np.random.default_rng(0)
    w = np.sign(rng.normal(size=(1, n))).astype(np.float32)
    model = tl.nn.Sequential(tl.nn.Linear(n, 1), tl.nn.ReLU(), tl.nn.Linear(1, 1))
    model[0].weight.data[...] = w
    model[0].bias.data[...] = -0.9 * n  # active only where w·x > 0.9 n: a corner region of [-1, 1]^n
    model[2].weight.data[...] = 1.0
    model[2].bias.data[...] = 0.0
    path = tmp_path / "m.onnx"
    bridge.export_onnx(tl.trace(model, tl.zeros(1, n)), path)
    tgt = table.target(load_graph(path))
    one = Fraction(1)
    atom = Atom((Fraction(-1),), Fraction(-1, 2), False)  # unsafe: y >= 1/2
    spec = Spec(n, 1, (Region((-one,) * n, (one,) * n, ((atom,),)),))
    region = spec.regions[0]
    centre = np.zeros((1, n))
    _, g = tgt.ex.value_and_grad(centre, lambda y: -np.ones_like(y))
    assert not g.any()  # no gradient to follow from the centre
    box = fe.boxes([region.lo], [region.hi])
    st = fe.forward(fe.compiled(tgt.bg), *box, "crown")
    pts = graph_relu.root_corners(tgt.bg, st, [graph_relu.Disjunct(tgt.bg, region, 0)], box)
    assert pts is not None
    y = tgt.ex.forward(pts)
    assert (y[:, 0] >= 0.5).any()  # the bound's own minimiser is a counterexample
    x = attack.box_point(pts[int(y[:, 0].argmax())], region)
    assert table.check(table.sat_cert(tgt, spec, x), tgt, spec).ok
