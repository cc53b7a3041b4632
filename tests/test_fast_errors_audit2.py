"""A second independent audit of the fast rounding-error column (``certificates.fast_errors``), its
h-convfast rows (conv2d, avg_pool2d, max_pool2d) and its block layout (dense or sparse blocks per
source node): the windows' float sums must fit the format (a real gap, fixed here, in both
columns), the linear maps the column reads from the bound table equal the runtime's own kernels
(stride, padding, dilation, groups, odd sizes, count_include_pad), the bounds do not depend on the
layout (all dense = all sparse: no dropped or doubled term), and the certified epsilon is above
the error of actual float runs: numpy float32/float16 at sampled points, box corners and
near-ties of max windows, and bit-exact emulated runs (``floats.emulate``'s scalar rounding) in
bfloat16, float8_e5m2 and binary16's directed modes, each dot product and window sum in a random
order."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from torchlean.certificates import check, fast_forms
from torchlean.certificates import fast_errors as fe
from torchlean.certificates.core import Rejected
from torchlean.certificates.errorbound import propagate
from torchlean.floats.emulate import Emulator
from torchlean.floats.errorbound import bound_certificate, epsilons, statement
from torchlean.floats.network import run_float
from torchlean.runtime.rules import RULES
from torchlean.spec.graph import Graph, Node, Value

Q = Fraction
F32 = np.float32


# -- 1. the window's own float sum must fit (the bug this audit fixed) ----------------------------

def _pool_graph(op: str = "avg_pool2d") -> Graph:
    at = {"kernel_size": (3, 3), "stride": (3, 3)} if op == "avg_pool2d" else {"axes": None, "keepdims": False}
    return Graph([Value("x", (1, 1, 3, 3), "float32")], {}, [Node(op, ["x"], "y", at)], ["y"]).check()


@pytest.mark.parametrize("column", ["fast", "exact"])
def test_avg_pool_whose_window_sum_overflows_is_refused(column):
    """float16 avg_pool 3x3 over [20000, 30000]: the mean (<= 30000) fits, but the runtime's window
    sum (up to 270000 > 65504) overflows to inf and inf / 9 = inf. Both columns certified a finite
    epsilon (147) before: only the quotient was checked for overflow."""
    g = _pool_graph()
    with np.errstate(over="ignore"):
        assert np.isinf(run_float(g, np.full((1, 9), 30000, np.float16), np.float16)).all()
    st = statement(g, [(Q(20000), Q(30000))] * 9, "binary16", column=column,
                   ranges="fast" if column == "fast" else "ibp")
    with pytest.raises(Rejected, match="overflow"):
        propagate(st)


def test_exact_mean_whose_sum_overflows_is_refused():
    """The exact column's "mean" shares the "avg" rule: sum 9 x 30000 in float16 is inf."""
    g = _pool_graph("mean")
    with np.errstate(over="ignore"):
        assert np.isinf(run_float(g, np.full((1, 9), 30000, np.float16), np.float16)).all()
    with pytest.raises(Rejected, match="overflow"):
        propagate(statement(g, [(Q(20000), Q(30000))] * 9, "binary16", ranges="ibp"))


@pytest.mark.parametrize("column", ["fast", "exact"])
def test_avg_pool_below_the_overflow_still_certified(column):
    """The control: over [2000, 7000] the sum (<= 63000) fits: certified, and above the float16 run."""
    g = _pool_graph()
    box = [(Q(2000), Q(7000))] * 9
    cert = bound_certificate(g, box, "binary16", column=column, ranges="fast" if column == "fast" else "ibp")
    assert check(cert).ok
    eps = float(epsilons(cert)[0])
    x = np.random.default_rng(0).uniform(2000, 7000, (300, 9)).astype(np.float16)
    x[:2] = [[2000] * 9, [7000] * 9]
    err = np.abs(run_float(g, x, np.float16).astype(np.float64) - run_float(g, x.astype(np.float64), np.float64))
    assert err.max() > 0 and err.max() <= eps


# -- 2. the maps the column reads equal the runtime's kernels --------------------------------------

CONVS = [  # (input shape, kernel shape, attrs): strides, paddings, dilations, groups, odd sizes
    ((1, 2, 7, 5), (3, 2, 3, 3), {"padding": (1, 1)}),
    ((1, 4, 7, 7), (4, 1, 3, 3), {"stride": (2, 2), "padding": (2, 2), "dilation": (2, 2), "groups": 4}),
    ((1, 4, 6, 9), (6, 2, 2, 3), {"stride": (2, 3), "padding": (1, 0), "groups": 2}),
    ((2, 3, 5, 6), (2, 3, 1, 4), {"stride": (1, 2), "dilation": (1, 2), "padding": (0, 3)}),
]
POOLS = [
    ("avg_pool2d", {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1), "count_include_pad": True}),
    ("avg_pool2d", {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 1), "count_include_pad": False}),
    ("avg_pool2d", {"kernel_size": (2, 2), "stride": (2, 2)}),
    ("max_pool2d", {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1)}),
    ("max_pool2d", {"kernel_size": (2, 3), "stride": (1, 2), "padding": (1, 1)}),
]


def _tensor(shape, vals=None):
    from torchlean.certificates.bound_graph import Tensor

    return Tensor(shape, [Q(float(v)) for v in vals.ravel()] if vals is not None else [None] * int(np.prod(shape)))


@pytest.mark.parametrize("case", range(len(CONVS)))
def test_conv_map_equals_the_runtime_conv(case):
    """``_map``'s conv2d matrix (the bound table's row on index variables) times x is the runtime's
    conv2d (numpy, float64) for strides, paddings, dilations and groups; and every output's term
    count (``_terms``: what gamma_n and the sign-split bound use) is its nonzero weights in range."""
    xs, ks, at = CONVS[case]
    rng = np.random.default_rng(case)
    x, k = rng.standard_normal(xs), rng.standard_normal(ks)
    k[0, 0, 0, 0] = 0.0  # (a zero weight: not a term)
    M = fe._map("conv2d", _tensor(xs), [_tensor(ks, k)], at)
    want = RULES["conv2d"].forward(np, x, k, **at)
    got = fe._vec(M, x.ravel())
    assert got.shape == (want.size,) and np.allclose(got, want.ravel(), rtol=1e-12, atol=1e-12)
    ones = RULES["conv2d"].forward(np, np.ones(xs), (k != 0) * 1.0, **at).ravel()
    assert np.array_equal(fe._terms(M), np.maximum(ones, 1).astype(int))


@pytest.mark.parametrize("case", range(len(POOLS)))
def test_pool_maps_equal_the_runtime_pools(case):
    """avg: P x / div is the runtime's avg_pool2d (divisor k*k or the window's in-range count); max:
    the max over each row's members is the runtime's max_pool2d (whose padding is -inf)."""
    op, at = POOLS[case]
    xs = (1, 3, 7, 6)
    x = np.random.default_rng(case).standard_normal(xs)
    mp = fe._map(op, _tensor(xs), [], at)
    want = RULES[op].forward(np, x, **at).ravel()
    kh, kw = at["kernel_size"]
    inside = np.rint(RULES["avg_pool2d"].forward(np, np.ones(xs), **{k: v for k, v in at.items() if k != "count_include_pad"},
                                         count_include_pad=True).ravel() * kh * kw).astype(int)
    if op == "avg_pool2d":
        P, div = mp
        got = fe._vec(P, x.ravel()) / div
        assert np.array_equal(fe._terms(P), inside)  # (n: the window's members in range)
        assert np.array_equal(div, inside if at.get("count_include_pad") is False else np.full(len(div), kh * kw))
    else:
        assert np.array_equal((mp >= 0).sum(axis=1), inside)
        xf = np.concatenate([x.ravel(), [-np.inf]])
        got = xf[mp].max(axis=1)
    assert got.shape == want.shape and np.allclose(got, want, rtol=1e-13, atol=1e-13)
