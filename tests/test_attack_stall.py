"""The early attack's quick look (``attack.pgd``'s and ``attack.search``'s ``stall``; general's
``EARLY_STALL``): a PGD run that has levelled off stops, one that is still descending does not.
References: the same runs without ``stall`` (all their steps), and exact rational evaluation of the
found point."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from tests.test_attack_leaky import exact_outputs
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.verify import attack, general
from torchlean.verify.network import FloatNet

D = 80  # inputs (more than attack.HIGH_DIM: ``search`` adds ODI starts and, unless quick, leaky)


class Counting:
    """A FloatNet that counts its gradient passes, and those with a leak (``attack.leaky``)."""

    def __init__(self, net: FloatNet):
        self.net, self.calls, self.leaky = net, 0, 0
        self.n_in = net.n_in

    def forward(self, x):
        return self.net.forward(x)

    def value_and_grad(self, x, g_y, leak=0.0):
        self.calls += 1
        self.leaky += bool(leak)
        return self.net.value_and_grad(x, g_y, leak)


def _vee(c: float) -> FloatNet:
    """y0 = 1 + relu(s - c) + relu(c - s), s = Σ x / D: a V with minimum 1 at s = c (y0 > 0
    everywhere: no counterexample to y0 <= 0); y1 = s (a second output for a second disjunct)."""
    W1 = np.stack([np.full(D, 1.0 / D), np.full(D, -1.0 / D), np.full(D, 1.0 / D), np.full(D, -1.0 / D)])
    b1 = np.array([-c, c, 0.0, 0.0])
    W2 = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
    return FloatNet([(W1, b1), (W2, np.array([1.0, 0.0]))])


def _region(disjuncts) -> Region:
    return Region(tuple([Fraction(0)] * D), tuple([Fraction(1)] * D), disjuncts)


def test_pgd_stall_stops_a_levelled_run_within_its_promise():
    """On the V (minimum 1 at s = 0.3) the sign steps overshoot and oscillate around the minimum
    with a decaying step: the run levels off above 0. With ``stall`` it stops after a few steps,
    and its best is within best / stall of the best all 40 steps reach (what the test promises)."""
    net = Counting(_vee(0.3))
    A, b = attack._atoms((Atom((Fraction(1), Fraction(0)), Fraction(0), False),))
    lo, hi = np.zeros(D), np.ones(D)
    z0 = np.random.default_rng(0).uniform(lo, hi, (8, D))
    _, v_full = attack.pgd(net, A, b, z0, lo, hi, steps=40)
    full = net.calls
    net.calls = 0
    _, v = attack.pgd(net, A, b, z0, lo, hi, steps=40, stall=general.EARLY_STALL)
    assert full == 40 and net.calls < 15
    assert v_full.min() > 0.99 and v.min() - v_full.min() <= v.min() / general.EARLY_STALL


def test_pgd_stall_keeps_a_descending_run():
    """A run still gaining a good share of its margin per step is not stopped: on y1 = s with the
    atom s <= 0.05 the run reaches the same counterexample, step for step, with and without."""
    net = Counting(_vee(0.3))
    A, b = attack._atoms((Atom((Fraction(0), Fraction(1)), Fraction(1, 20), False),))
    lo, hi = np.zeros(D), np.ones(D)
    z0 = np.full((1, D), 0.9)
    z_full, v_full = attack.pgd(net, A, b, z0, lo, hi, steps=40)
    full = net.calls
    net.calls = 0
    z, v = attack.pgd(net, A, b, z0, lo, hi, steps=40, stall=general.EARLY_STALL)
    assert v_full.min() < 0 and net.calls == full
    assert np.array_equal(z, z_full) and np.array_equal(v, v_full)


def test_quick_search_one_stalling_run_and_still_finds_a_sat():
    """``search(..., stall=)`` on two disjuncts: where neither has a counterexample (y0 <= 0 or
    y1 >= 2), one PGD run over both that stops when it stalls, no leaky run, and fewer gradient
    passes than the full round; where y1 <= 0.05 is reachable, the point it returns is one (exact
    evaluation) inside the box."""
    net = Counting(_vee(0.3))
    unsat = _region(((Atom((Fraction(1), Fraction(0)), Fraction(0), False),),
                     (Atom((Fraction(0), Fraction(-1)), Fraction(-2), False),)))
    spec = Spec(D, 2, (unsat,))
    assert attack.search(net, spec, lambda x: False, rounds=1) is None
    full, full_leaky = net.calls, net.leaky
    net.calls = net.leaky = 0
    assert attack.search(net, spec, lambda x: False, rounds=1, stall=general.EARLY_STALL) is None
    assert full_leaky > 0 and net.leaky == 0
    assert net.calls < full and net.calls <= attack.ODI_STEPS + 15
    sat = _region(((Atom((Fraction(1), Fraction(0)), Fraction(0), False),),
                   (Atom((Fraction(0), Fraction(1)), Fraction(1, 20), False),)))
    spec = Spec(D, 2, (sat,))

    def confirm(x: list[Fraction]) -> bool:
        return sat.contains(x) and exact_outputs(net.net, x)[1] <= Fraction(1, 20)

    x = attack.search(net, spec, confirm, rounds=1, stall=general.EARLY_STALL)
    assert x is not None and confirm(x)


def test_quick_search_one_disjunct_stops_after_its_first_run():
    """One disjunct (y0 <= 0, no counterexample) and two rounds: the full search runs both rounds'
    ODI, PGD and leaky runs; the quick look only the first round's ODI and one stalling PGD run."""
    net = Counting(_vee(0.3))
    spec = Spec(D, 2, (_region(((Atom((Fraction(1), Fraction(0)), Fraction(0), False),),)),))
    assert attack.search(net, spec, lambda x: False, rounds=2) is None
    full, full_leaky = net.calls, net.leaky
    net.calls = net.leaky = 0
    assert attack.search(net, spec, lambda x: False, rounds=2, stall=general.EARLY_STALL) is None
    assert full_leaky > 0 and net.leaky == 0
    assert full > 2 * (attack.ODI_STEPS + 15) and net.calls <= attack.ODI_STEPS + 15
