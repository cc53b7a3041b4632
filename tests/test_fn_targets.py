"""Per-target α on sigmoid nets (verify/fn_targets.py: untrusted; its certificates are replayed by
the checker): on a deep sigmoid MLP with too many inputs to split, a robustness region that the
root box's CROWN and final-layer α leave open is proved with per-target slopes on the
intermediate bounds, the checker accepts the certificate and refuses it with a claim above
the bound, and the certified margin is below the network's margin at sampled points."""

from __future__ import annotations

import copy
import functools
import time
from fractions import Fraction

import numpy as np

import torchlean as tl
from torchlean import nn
from torchlean.certificates import fast_engine as fe
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.verify import fn_targets, general, table

N, W, DEPTH, EPS = 80, 40, 5, 0.165


@functools.cache
def instance():
    """(target, spec, centre, label): a 80-40x5-2 sigmoid MLP (weights N(0, 9/fan_in), biases
    N(0, 0.25)) and the L-inf ball of radius 0.165 around a random point, where the final-layer
    α bound of the margin is -0.024 and the per-target one +0.027 (measured when written)."""
    tl.manual_seed(0)
    layers = [nn.Linear(N, W), nn.Sigmoid()]
    for _ in range(DEPTH - 1):
        layers += [nn.Linear(W, W), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(W, 2))
    rng = np.random.default_rng(100)
    for layer in model:
        if hasattr(layer, "weight"):
            w = layer.weight.data
            w[...] = rng.normal(size=w.shape) * 3.0 / np.sqrt(w.shape[1])
            layer.bias.data[...] = rng.normal(size=layer.bias.data.shape) * 0.5
    t = table.target(tl.trace(model, tl.zeros(1, N)))
    x0 = np.random.default_rng(0).uniform(0, 1, N)
    lab = int(t.ex.forward(x0[None])[0].argmax())
    lo = tuple(Fraction(float(max(0.0, v - EPS))) for v in x0)
    hi = tuple(Fraction(float(min(1.0, v + EPS))) for v in x0)
    a = [Fraction(0)] * 2
    a[lab], a[1 - lab] = Fraction(1), Fraction(-1)
    return t, Spec(N, 2, (Region(lo, hi, ((Atom(tuple(a), Fraction(0), False),),)),)), x0, lab


def test_per_target_slopes_tighten_every_later_node_and_close_the_region():
    t, spec, x0, lab = instance()
    assert fn_targets.applies(t.bg) and t.bg.n_in > general.INPUT_SPLIT_MAX
    region = spec.regions[0]
    box = fe.boxes([region.lo], [region.hi])
    C, d, _, _ = general.objective(region)
    assert table.alpha_leaf(t, *box, C, d)[0].max() < 0  # (the root's final α alone: open)
    slopes, st = fn_targets.target_slopes(t.bg, box, time.perf_counter() + 120)
    base = fe.forward(fe.compiled(t.bg), *box, "crown")
    fns = [k for k, n in enumerate(t.bg.nodes) if n.kind == "fn"]
    assert slopes and all(k in fns[1:] and j < k for k, j in slopes)
    assert all(fn_targets._width(st, k) <= fn_targets._width(base, k) for k in fns)
    assert sum(fn_targets._width(st, k) for k in fns) < sum(fn_targets._width(base, k) for k in fns)

    entry = fn_targets.root_entry(t, region, time.perf_counter() + 120)
    assert entry is not None and entry["arg_slopes"]
    cert = table.unsat_cert(t, spec, [entry])
    assert table.check(cert, t, spec).ok
    # the claim is a bound on the margin y_lab - y_other over the box: below the sampled margins
    claim = Fraction(entry["per_disjunct"][0][0][1][0][1])
    lo, hi = (np.array([float(v) for v in b]) for b in (region.lo, region.hi))
    xs = np.random.default_rng(1).uniform(lo, hi, (4000, N))
    y = t.ex.forward(np.concatenate([xs, x0[None]]))
    assert 0 < claim < (y[:, lab] - y[:, 1 - lab]).min()
    # a claim above what the bound gives is refused
    bad = copy.deepcopy(entry)
    bad["per_disjunct"][0][0][1][0][1] = "1000"
    assert not table.check(table.unsat_cert(t, spec, [bad]), t, spec).ok


def test_the_search_uses_them_where_the_root_bound_leaves_a_region_open():
    t, spec, _, _ = instance()
    res = general.verify_target(t, spec, timeout=120)
    assert res.verdict == "unsat" and res.stats.get("fn_root") == 1
    assert table.check(res.cert, t, spec).ok
