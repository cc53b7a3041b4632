"""PGD along a homotopy of the backward pass (``attack.leaky``, issue 15): gradients let through
inactive ReLUs reach counterexamples that sit behind dead neurons, where plain PGD and
output-diversified starts stop. Checked on a network built for it (exact rational evaluation as
the reference) and on the published sat instance mnistfc 256x2 prop_0_0.05 (onnxruntime and the
checker's sat replay)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates.property import Atom, Region, Spec
from torchlean.verify import attack, table
from torchlean.verify.network import FloatNet
from torchlean.verify.table import load_instance

D = 100  # inputs (more than attack.HIGH_DIM: ``search`` runs ``leaky`` rounds)


def _pocket() -> FloatNet:
    """y = 1 - 0.2·relu(1 - 2 s/D) - 10·relu(10 s/D - 9), s = Σ x on [0, 1]^D: y <= 0 only where
    s > 0.91·D (a corner pocket). From a uniform point (s near D/2) the first neuron's gradient
    points away from the pocket or is 0, and the second neuron is dead: its gradient is 0."""
    W1 = np.stack([np.full(D, -2.0 / D), np.full(D, 10.0 / D)])
    b1 = np.array([1.0, -9.0])
    return FloatNet([(W1, b1), (np.array([[-0.2, -10.0]]), np.array([1.0]))])


def exact_outputs(net: FloatNet, x: list[Fraction]) -> list[Fraction]:
    """The ReLU network's outputs at x in exact rationals (the weights' float64 values, exactly)."""
    h = x
    for i, (W, b) in enumerate(net.layers):
        h = [sum((Fraction(float(w)) * v for w, v in zip(row, h)), Fraction(float(c)))
             for row, c in zip(W, b)]
        if i + 1 < len(net.layers):
            h = [max(v, Fraction(0)) for v in h]
    return h


def _exact_y(net: FloatNet, x: list[Fraction]) -> Fraction:
    return exact_outputs(net, x)[0]


def _spec() -> Spec:
    region = Region(tuple([Fraction(0)] * D), tuple([Fraction(1)] * D),
                    ((Atom((Fraction(1),), Fraction(0), False),),))
    return Spec(D, 1, (region,))


def test_leaky_reaches_a_pocket_behind_a_dead_relu_that_pgd_and_odi_miss():
    net, spec = _pocket(), _spec()
    region = spec.regions[0]
    lo, hi = np.zeros(D), np.ones(D)
    A, b = attack._atoms(region.disjuncts[0])
    z0 = np.random.default_rng(0).uniform(lo, hi, (16, D))
    _, v = attack.pgd(net, A, b, z0, lo, hi, steps=200)
    assert v.min() > 0.5  # plain PGD: stuck at y >= 0.8
    zo = attack.odi(net, z0, lo, hi, np.random.default_rng(1))
    _, v = attack.pgd(net, A, b, zo, lo, hi, steps=200)
    assert v.min() > 0.5  # and from output-diversified starts
    z, v = attack.leaky(net, [A], [b], z0, lo, hi)
    assert v.min() < 0
    x = attack.box_point(z[int(v.argmin())], region)
    assert all(0 <= q <= 1 for q in x) and _exact_y(net, x) <= 0  # the exact reference


def test_search_on_many_inputs_finds_the_pocket_and_confirm_decides():
    net, spec = _pocket(), _spec()

    def confirm(x: list[Fraction]) -> bool:
        return spec.regions[0].contains(x) and _exact_y(net, x) <= 0

    x = attack.search(net, spec, confirm, rounds=1)
    assert x is not None and _exact_y(net, x) <= 0
    assert attack.search(net, spec, lambda x: False, rounds=1) is None  # only confirm decides


DATA = Path(__file__).parent / "data" / "vnncomp2021" / "mnistfc"


def test_leaky_finds_the_published_mnistfc_counterexample_pgd_misses():
    """mnistfc 256x2 prop_0_0.05 (published sat): from the same 16 uniform starts, plain PGD and
    PGD after ODI stay above a margin of 0.9; ``leaky`` reaches a point that onnxruntime (float32,
    the ONNX file) puts in the unsafe set and the checker's exact sat replay accepts."""
    ort = pytest.importorskip("onnxruntime")
    net = DATA / "mnist-net_256x2.onnx"
    t, spec = load_instance(net, DATA / "prop_0_0.05.vnnlib")
    region = spec.regions[0]
    lo = np.array([float(v) for v in region.lo])
    hi = np.array([float(v) for v in region.hi])
    atoms = [attack._atoms(d) for d in region.disjuncts]
    A, b = [a for a, _ in atoms], [c for _, c in atoms]
    z0 = np.random.default_rng(0).uniform(lo, hi, (16, lo.size))
    assert attack.pgd(t.ex, A, b, z0, lo, hi)[1].min() > 0.9
    zo = attack.odi(t.ex, z0, lo, hi, np.random.default_rng(1))
    assert attack.pgd(t.ex, A, b, zo, lo, hi)[1].min() > 0.9
    z, v = attack.leaky(t.ex, A, b, z0, lo, hi)
    x = attack.try_candidates(region, z, v, table.confirmer(t, spec))
    assert x is not None
    assert table.check(table.sat_cert(t, spec, x), t, spec).ok
    sess = ort.InferenceSession(str(net), providers=["CPUExecutionProvider"])
    xin = np.array([float(q) for q in x], dtype=np.float32).reshape(1, 784, 1)
    y = np.asarray(sess.run(None, {sess.get_inputs()[0].name: xin})[0]).ravel()
    label = int(t.ex.forward(((lo + hi) / 2)[None])[0].argmax())
    assert np.delete(y, label).max() >= y[label]


class _Counting:
    """An executor that counts its gradient passes and can be made slow (``delay`` s a pass)."""

    def __init__(self, net: FloatNet, delay: float = 0.0):
        self.net, self.delay, self.grads = net, delay, 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.net.forward(x)

    def value_and_grad(self, x, g_y, **kw):
        import time

        self.grads += 1
        time.sleep(self.delay)
        return self.net.value_and_grad(x, g_y, **kw)


def test_gradient_runs_stop_stepping_at_their_deadline():
    """``until`` in the past (h-sri): ``pgd`` and ``leaky`` make one gradient pass, then evaluate
    where its step went: the best of the starts and the stepped points, the same as the first step
    of an unlimited run gives (checked against the network's own forward pass); ``odi`` takes no
    step; an unlimited run makes more passes and never ends worse. Stopping early only drops
    steps."""
    import time

    net, spec = _pocket(), _spec()
    lo, hi = np.zeros(D), np.ones(D)
    A, b = attack._atoms(spec.regions[0].disjuncts[0])
    z0 = np.random.default_rng(0).uniform(lo, hi, (8, D))
    y0 = net.forward(z0)[:, 0]  # the starts' objective: y (the atom is y <= 0)
    for run, leak in ((lambda ex, **k: attack.pgd(ex, A, b, z0, lo, hi, steps=30, **k), 0.0),
                      (lambda ex, **k: attack.leaky(ex, [A], [b], z0, lo, hi, steps=10, **k), 1.0)):
        ex = _Counting(net)
        z, v = run(ex, until=time.perf_counter() - 1.0)
        assert ex.grads == 1
        _, g = net.value_and_grad(z0, lambda y: np.ones_like(y), leak=leak) if leak else \
            net.value_and_grad(z0, lambda y: np.ones_like(y))
        z1 = np.clip(z0 - (hi - lo) / 4 * np.sign(g), lo, hi)  # the one step's points
        y1 = net.forward(z1)[:, 0]
        np.testing.assert_allclose(v, np.minimum(y0, y1), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(z, np.where((y1 < y0)[:, None], z1, z0))
        free = _Counting(net)
        _, vf = run(free)
        assert free.grads > 1 and (vf <= v + 1e-12).all()  # (more steps: never a worse best)
    ex = _Counting(net)
    zo = attack.odi(ex, z0, lo, hi, np.random.default_rng(1), until=time.perf_counter() - 1.0)
    assert ex.grads == 0 and np.array_equal(zo, z0)


def test_search_keeps_its_deadline_and_still_confirms_what_it_found():
    """``search`` with a deadline on a slow executor (0.05 s a gradient pass; a first round's
    ODI, PGD and leaky runs take ~200 of them) returns within a few passes of it; without a
    deadline the same search finds the pocket's counterexample (``leaky``), which the exact
    reference confirms; a property whose first PGD step already reaches the unsafe set is
    still answered with a confirmed point when the deadline passes during that step."""
    import time

    net, spec = _pocket(), _spec()

    def confirm(x: list[Fraction]) -> bool:
        return spec.regions[0].contains(x) and _exact_y(net, x) <= 0

    ex = _Counting(net, delay=0.05)
    t = time.perf_counter()
    assert attack.search(ex, spec, confirm, rounds=1, deadline=t + 0.3) is None
    assert time.perf_counter() - t < 0.3 + 4 * 0.05 + 0.5 and ex.grads <= 8
    x = attack.search(_Counting(net), spec, confirm, rounds=1)
    assert x is not None and _exact_y(net, x) <= 0
    # y <= 0.95: the box centre's y (1 - 0.2·0) = 1 fails it; one sign step from any start
    # lowers s or raises it into the first ReLU's slope: found by the first PGD step or the samples
    easy = Spec(D, 1, (Region(spec.regions[0].lo, spec.regions[0].hi,
                              ((Atom((Fraction(1),), Fraction(95, 100), False),),)),))

    def confirm_easy(x: list[Fraction]) -> bool:
        return easy.regions[0].contains(x) and _exact_y(net, x) <= Fraction(95, 100)

    slow = _Counting(net, delay=0.05)
    x = attack.search(slow, easy, confirm_easy, rounds=1, deadline=time.perf_counter() + 0.01)
    assert x is not None and _exact_y(net, x) <= Fraction(95, 100)
    assert slow.grads <= 2  # (at most ODI's first pass and PGD's, both started before the deadline)
