"""The float-sound input-split search (``verify.float_bab``): one branch and bound whose boxes carry
their own epsilon. What it must keep true: a property that no single box's epsilon proves is
proved by parts, the near-maximum part with its own smaller epsilon and the rest with an
ancestor's; ``check_vnn_float`` accepts the certificate in fast and exact modes and rejects it
mutated (a leaf's claimed bound raised, a leaf's errorbound swapped for its ancestor's, an
epsilon lowered); a real counterexample is reported as a checked binary32 one."""

from __future__ import annotations

import copy
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import torchlean.verify.float32 as f32
from torchlean.certificates.core import box_leaves
from torchlean.certificates.errorbound import model_id
from torchlean.certificates.float_vnn import check_vnn_float, epsilons
from torchlean.certificates.lower import lower
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.floats.errorbound import bound_certificate
from torchlean.verify import table
from torchlean.verify.float_bab import float_bab

sys.path.insert(0, str(Path(__file__).parent))
# (the 2-16-16-1 ReLU net, its float64 run and its box)
from test_float32_search import BOX2  # noqa: E402
from test_float32_search import _relu_net as _net  # noqa: E402


def _argmax(f):
    """The maximum of f on BOX2 by a zooming grid (spacing ~1e-8 at the end): (point, value)."""
    c, r = np.zeros(2), 4.0
    for _ in range(4):
        grid = c + np.stack(np.meshgrid(*[np.linspace(-r, r, 401)] * 2), -1).reshape(-1, 2)
        grid = np.clip(grid, -4, 4)
        c, r = grid[np.argmax(f(grid))], r / 100
    return c, Fraction(float(f(c[None])[0]))


def _spec(threshold: Fraction) -> Spec:
    """unsafe: y >= threshold on BOX2."""
    atom = Atom((Fraction(-1),), -threshold, False)
    return Spec(2, 1, (Region(tuple(a for a, _ in BOX2), tuple(b for _, b in BOX2), ((atom,),)),))


def _proved_by_parts():
    g, f = _net()
    c, top = _argmax(f)
    root_eb = bound_certificate(g, BOX2, "binary32", ranges="fast", input_exact=False)
    eps = epsilons(root_eb)[0]
    # the growth of the whole box's epsilon makes the property false at c: no one-box proof
    spec = _spec(top + eps / 2)
    res = f32.verify_float32(g, table.target(g), spec, timeout=120, splits=64)
    return g, c, spec, eps, res


def test_a_property_no_single_box_proves_is_proved_by_parts():
    g, c, spec, eps, res = _proved_by_parts()
    assert res.verdict == "unsat", res.stats
    cert = res.cert
    assert "split" in cert["parts"]
    assert res.stats["parts"] > 1 and res.stats["leaves"] > 1  # walks, leaves
    assert 1 <= res.stats["inherited"] < res.stats["leaves"]  # some leaves keep an ancestor's
    net = lower(g.to_dict())
    model = model_id(g.to_dict())
    assert check_vnn_float(cert, net, spec, model=model).ok
    assert check_vnn_float(cert, net, spec, model=model, mode="exact").ok
    # the leaf holding the maximum has an epsilon of its own, below half the whole box's (what
    # the property needs there: the real margin is eps/2)
    cq = [Fraction(float(v)) for v in c]
    near = [leaf for leaf, b in box_leaves(cert["parts"], f32.hull(spec))
            if all(lo <= x <= hi for (lo, hi), x in zip(b, cq))]
    assert near and all(epsilons(leaf["errorbound"])[0] < eps / 2 for leaf in near)


def test_mutated_parts_are_rejected():
    g, c, spec, eps, res = _proved_by_parts()
    assert res.verdict == "unsat", res.stats
    cert, net, model = res.cert, lower(g.to_dict()), model_id(g.to_dict())
    root = f32.hull(spec)
    cq = [Fraction(float(v)) for v in c]
    leaves = list(box_leaves(cert["parts"], root))
    k = next(i for i, (_, b) in enumerate(leaves) if all(lo <= x <= hi for (lo, hi), x in zip(b, cq)))

    def nth(cert_: dict, i: int) -> dict:
        return list(box_leaves(cert_["parts"], root))[i][0]

    # (1) a leaf proof's claimed bound raised far above what the bound gives
    bad = copy.deepcopy(cert)
    entry = next(e for e in nth(bad, k)["real"]["regions"][0] if e[0] == "leaf")
    entry[1][0][1] = str(Fraction(entry[1][0][1]) * 10**6 + 1)
    for mode in (None, "exact"):
        v = check_vnn_float(bad, net, spec, model=model, mode=mode)
        assert not v.ok and "real part rejected" in v.reason
    # (2) the near-maximum leaf's errorbound swapped for the largest-epsilon one of the
    # certificate (an ancestor's: its box covers the leaf, but its growth is too large there)
    widest = max((leaf["errorbound"] for leaf, _ in leaves), key=lambda e: epsilons(e)[0])
    assert epsilons(widest)[0] > epsilons(leaves[k][0]["errorbound"])[0]
    bad = copy.deepcopy(cert)
    nth(bad, k)["errorbound"] = copy.deepcopy(widest)
    for mode in (None, "exact"):
        assert not check_vnn_float(bad, net, spec, model=model, mode=mode).ok
    # (3) that leaf's epsilon lowered: the errorbound replay refuses it
    bad = copy.deepcopy(cert)
    st = nth(bad, k)["errorbound"]["statement"]
    st["epsilon"] = [str(Fraction(st["epsilon"][0]) / 2)]
    assert not check_vnn_float(bad, net, spec, model=model).ok


def test_a_real_counterexample_is_a_checked_binary32_one():
    g, f = _net()
    _, top = _argmax(f)
    spec = _spec(top - 1)  # unsafe: y >= max - 1, met on a whole neighbourhood of the maximum
    t = table.target(g)
    root = bound_certificate(g, BOX2, "binary32", ranges="fast", input_exact=False)
    out = float_bab(t, spec, BOX2, root, lambda b: None, deadline=time.monotonic() + 60)
    assert out.verdict == "sat" and out.x is not None
    assert f(np.array([[float(v) for v in out.x]]))[0] >= float(top - 1)
    res = f32.verify_float32(g, t, spec, timeout=60, splits=16)
    assert res.verdict == "sat"
    assert f(np.array([[float(v) for v in res.x]]))[0] >= float(top - 1) - 1e-3


def test_separating_cuts_between_regions_apart():
    def region(lo1, hi1):
        atom = Atom((Fraction(1),), Fraction(0), False)
        return Region((Fraction(0), Fraction(lo1)), (Fraction(1), Fraction(hi1)), ((atom,),))

    apart = Spec(2, 1, (region(2, 3), region(-3, -1)))
    assert f32._separating(apart) == (1, Fraction(1, 2))  # the middle of the gap (-1, 2)
    touching = Spec(2, 1, (region(0, 3), region(-3, 0)))  # the face x_1 = 0 in both: no cut
    assert f32._separating(touching) is None
    assert f32._separating(Spec(2, 1, (region(0, 1),))) is None


def test_the_walk_budget_gates_the_proof():
    """``splits`` bounds the walks below the region's own: the by-parts proof above needs its
    walks (P - 1 of them), so with one fewer in the budget it is not proved and no more walks are
    made than the budget allows; the default budget (``SPLITS``, 4,096: ACAS Xu 1_1 prop 6 needs
    ~1,800, bench/README "h-f32miss") is far above what this one needs."""
    g, _, spec, _, res = _proved_by_parts()
    walks = res.stats["parts"] - 1
    assert res.verdict == "unsat" and 1 <= walks < f32.SPLITS
    short = f32.verify_float32(g, table.target(g), spec, timeout=30, splits=walks - 1)
    assert short.verdict != "unsat" and short.stats["parts"] - 1 <= walks - 1


def test_walk_depths_of_the_bench():
    """``bench/bench_float32_walks.py``'s depth of a box: the number of halvings of the root that
    give its widths (any order of inputs), and its per-depth summary."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    from bench_float32_walks import bisections, by_depth

    root = [(Fraction(-1), Fraction(3)), (Fraction(0), Fraction(1)), (Fraction(2), Fraction(2))]
    box = list(root)
    rng = np.random.default_rng(0)
    for k in range(1, 25):
        d = int(rng.integers(2))
        a, b = box[d]
        m = (a + b) / 2
        box[d] = (a, m) if rng.integers(2) else (m, b)
        assert bisections(box, root) == k
    walks = [(3, 0.1, 1e-3), (3, 0.3, 4e-3), (9, 0.2, 1e-6), (3, 0.2, 2e-3)]
    assert by_depth(walks) == [(3, 3, pytest.approx(0.2), 1e-3, 2e-3, 4e-3), (9, 1, 0.2, 1e-6, 1e-6, 1e-6)]
