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


def _exact_y(net: FloatNet, x: list[Fraction]) -> Fraction:
    """The network's output at x in exact rationals (the weights' float64 values, exactly)."""
    h = x
    for i, (W, b) in enumerate(net.layers):
        h = [sum((Fraction(float(w)) * v for w, v in zip(row, h)), Fraction(float(c)))
             for row, c in zip(W, b)]
        if i + 1 < len(net.layers):
            h = [max(v, Fraction(0)) for v in h]
    return h[0]


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
