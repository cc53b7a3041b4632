"""Output bounds over boxes by the bound table (``verify.box_bounds``: the checker's fast engine;
``certificates.engine``: its exact sibling) on ReLU chains, and the number handling both rely on.

Soundness: every bound contains the exact outputs (exact rational evaluation of the lowered
graph, ``engine.point``) of sampled points; CROWN is never looser than IBP; the fast engine
agrees with the exact one on the same boxes and never exceeds the exact minimum of a network that
is affine on the box. (The ReLU-chain engine these tests once covered was removed, issue 14.)
"""

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates import engine
from torchlean.certificates.fast_forms import corners, outward
from torchlean.certificates.lower import lower
from torchlean.spec import Graph, Node, Value
from torchlean.verify import engines, load_graph
from torchlean.verify.bounds import bounds
from torchlean.verify.network import float_chain

DATA = Path(__file__).parent / "data" / "vnncomp2021"
ACAS = DATA / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx"


def random_graph(rng, sizes=(3, 8, 8, 2), dtype=np.float32) -> Graph:
    """A random ReLU MLP as a spec Graph: x @ W + b, relu, ..."""
    consts, nodes, cur = {}, [], "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        consts[f"W{i}"] = rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(dtype)
        consts[f"b{i}"] = rng.normal(0, 0.3, (b,)).astype(dtype)
        nodes += [Node("matmul", [cur, f"W{i}"], f"m{i}"), Node("add", [f"m{i}", f"b{i}"], f"z{i}")]
        cur = f"z{i}"
        if i + 2 < len(sizes):
            nodes.append(Node("relu", [cur], f"h{i}"))
            cur = f"h{i}"
    return Graph([Value("x", (1, sizes[0]), str(np.dtype(dtype)))], consts, nodes, [cur]).check()


def exact_outputs(g, pts: np.ndarray) -> np.ndarray:
    """The outputs at each point in exact rationals (the lowered graph's ``engine.point``: exact on a
    ReLU chain), as floats."""
    bg = g if hasattr(g, "outputs") and hasattr(g, "in_shape") else lower(g.to_dict())
    out = []
    for p in pts:
        L, U = engine.point(bg, [Fraction(float(a)) for a in p])
        ys = [engine.form_bounds(f, L, U) for f in bg.outputs]
        assert all(a == b for a, b in ys)
        out.append([float(a) for a, _ in ys])
    return np.array(out)


def sample_boxes(rng, d, n, scale=1.0):
    c = rng.uniform(-scale, scale, (n, d))
    r = rng.uniform(0, scale / 2, (n, d))
    return c - r, c + r


@pytest.mark.parametrize("seed", range(4))
def test_bounds_contain_exact_outputs_and_crown_tighter(seed):
    rng = np.random.default_rng(seed)
    g = random_graph(rng)
    lo, hi = sample_boxes(rng, 3, 6)
    bnds = {m: bounds(g, (lo, hi), method=m) for m in ("ibp", "crown", "alpha-crown")}
    for b in range(len(lo)):
        pts = rng.uniform(lo[b], hi[b], (40, 3))
        y = exact_outputs(g, np.vstack([pts, lo[b : b + 1], hi[b : b + 1]]))
        for m, (l, u) in bnds.items():
            assert (y >= l[b]).all() and (y <= u[b]).all(), m
    li, ui = bnds["ibp"]
    for m in ("crown", "alpha-crown"):
        l, u = bnds[m]
        assert (l >= li).all() and (u <= ui).all(), m
    lc, uc = bnds["crown"]
    la, ua = bnds["alpha-crown"]
    assert (la >= lc).all() and (ua <= uc).all()
    assert (uc - lc).sum() < (ui - li).sum()


def test_acas_bounds_contain_samples():
    g = load_graph(ACAS)
    rng = np.random.default_rng(0)
    lo0, hi0 = np.array([-0.3, -0.5, -0.5, -0.5, -0.5]), np.array([0.68, 0.5, 0.5, 0.5, 0.5])
    w = (hi0 - lo0) / 8
    lo = rng.uniform(lo0, hi0 - w, (4, 5))
    hi = lo + w
    li, ui = bounds(g, (lo, hi), "ibp")
    lc, uc = bounds(g, (lo, hi), "crown")
    assert (lc >= li).all() and (uc <= ui).all()
    assert (uc - lc).sum() < (ui - li).sum()
    fn = float_chain(lower(g.to_dict()))
    for b in range(4):
        pts = rng.uniform(lo[b], hi[b], (300, 5))
        y = fn.forward(pts)
        assert (y >= lc[b] - 1e-9).all() and (y <= uc[b] + 1e-9).all()
        assert (exact_outputs(g, pts[:3]) >= lc[b]).all()


def test_bounds_api_errors_and_single_box():
    g = random_graph(np.random.default_rng(1))
    l, u = bounds(g, (np.zeros(3), np.ones(3)), "crown")
    assert l.shape == (2,) and (l <= u).all()
    with pytest.raises(ValueError, match="unknown bound method"):
        bounds(g, (np.zeros(3), np.ones(3)), "nope")
    with pytest.raises(ValueError, match="does not match"):
        bounds(g, (np.zeros(4), np.ones(4)))
    with pytest.raises(ValueError, match="lo > hi"):
        bounds(g, (np.ones(3), np.zeros(3)))


@pytest.mark.parametrize("seed", range(3))
def test_fast_table_agrees_with_exact_and_contains_samples(seed):
    rng = np.random.default_rng(10 + seed)
    g = random_graph(rng, (3, 6, 5, 2))
    bg = lower(g.to_dict())
    lo, hi = sample_boxes(rng, 3, 3, 0.8)
    for method in ("ibp", "crown"):
        f_lo, f_hi = (engines.fast_ibp if method == "ibp" else engines.fast_crown)(bg, lo, hi)
        for b in range(len(lo)):
            qlo, qhi = [Fraction(v) for v in lo[b]], [Fraction(v) for v in hi[b]]
            e_lo, e_hi = (engines.exact_ibp if method == "ibp" else engines.exact_crown)(bg, qlo, qhi)
            e_lo, e_hi = np.array([float(v) for v in e_lo]), np.array([float(v) for v in e_hi])
            assert np.allclose(f_lo[b], e_lo, rtol=1e-9, atol=1e-9)
            assert np.allclose(f_hi[b], e_hi, rtol=1e-9, atol=1e-9)
            y = exact_outputs(bg, rng.uniform(lo[b], hi[b], (50, 3)))
            assert (y.min(0) >= f_lo[b]).all() and (y.max(0) <= f_hi[b]).all()


def test_fast_bounds_never_pass_on_overflow():
    """Weights of 1e300 on a box of 1e10: float64 overflows; the bound must be vacuous (-inf), never
    a finite number the exact arithmetic does not support."""
    g = Graph([Value("x", (1, 1), "float64")], {"W0": np.array([[1e300]]), "W1": np.array([[1e300]])},
              [Node("matmul", ["x", "W0"], "m0"), Node("relu", ["m0"], "h0"),
               Node("matmul", ["h0", "W1"], "y")], ["y"]).check()
    for method in ("ibp", "crown"):
        low, up = bounds(g, (np.array([-1e10]), np.array([1e10])), method)
        assert np.isneginf(low).all() and np.isposinf(up).all()


def _stable_graph(rng, sizes, lo, hi, mats=None) -> Graph:
    """A float64 MLP (random, or with the given matrices) whose every ReLU is stable on the box
    (each unstable neuron's bias is moved until exact interval bounds prove it active or dead): on
    the box it is exactly an affine map."""
    consts, nodes, cur = {}, [], "x"
    box = [(Fraction(a), Fraction(b)) for a, b in zip(lo, hi)]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = rng.normal(0, 30, (b, a)) if mats is None else mats[i]
        M = [[Fraction(float(v)) for v in row] for row in W]
        c = [float(v) for v in rng.normal(0, 30 if mats is None else 1, b)]
        ranges = []
        for r in range(b):
            low = c[r] + sum(m * (x if m > 0 else y) for m, (x, y) in zip(M[r], box))
            up = c[r] + sum(m * (y if m > 0 else x) for m, (x, y) in zip(M[r], box))
            hidden = i + 2 < len(sizes)
            if hidden and (low <= 0 <= up or (mats is not None and low <= 0)):
                # to the nearer side; with given matrices always active, so the product is theirs
                shift = 1 - low if up > -low or mats is not None else -1 - up
                c[r] = float(c[r] + shift)
                low = c[r] + sum(m * (x if m > 0 else y) for m, (x, y) in zip(M[r], box))
                up = c[r] + sum(m * (y if m > 0 else x) for m, (x, y) in zip(M[r], box))
                assert low > 0 or up < 0
            ranges.append((max(low, Fraction(0)), max(up, Fraction(0))))
        consts[f"W{i}"] = np.array(W, dtype=np.float64).T.copy()
        consts[f"b{i}"] = np.array(c, dtype=np.float64)
        nodes += [Node("matmul", [cur, f"W{i}"], f"m{i}"), Node("add", [f"m{i}", f"b{i}"], f"z{i}")]
        cur = f"z{i}"
        if i + 2 < len(sizes):
            nodes.append(Node("relu", [cur], f"h{i}"))
            cur = f"h{i}"
            box = ranges
    return Graph([Value("x", (1, sizes[0]), "float64")], consts, nodes, [cur]).check()


def _cancelling_mats(rng):
    """Weights whose product nearly vanishes: the last layer's rows are (float-rounded) left null
    vectors of a rank-10 middle layer, so the back-substituted coefficients are mostly rounding
    error, which only the per-neuron charges of the back-substitution account for."""
    W1 = np.abs(rng.normal(0, 30, (20, 4)))  # positive weights on a positive box: all active
    W2 = np.abs(rng.normal(0, 30, (20, 10))) @ np.abs(rng.normal(0, 1, (10, 20)))
    null = np.linalg.svd(W2.T)[2][-3:]  # rows v with v @ W2 ~ 0
    return [W1, W2, null * 1e3]


@pytest.mark.parametrize("case", ["random-0", "random-1", "random-2", "cancelling-0", "cancelling-1"])
def test_fast_crown_never_above_exact_minimum_of_an_affine_net(case):
    """Every ReLU stable, so the net is affine on the box and its exact minimum is computable: the
    fast engine's CROWN bound (all of whose error is the float accounting) must not exceed it, and
    must be close to it. Large weights, a box far from 0 and cancelling products make the float
    error real."""
    kind, seed = case.split("-")
    rng = np.random.default_rng(40 + int(seed))
    mats = _cancelling_mats(rng) if kind == "cancelling" else None
    sizes = (4, 20, 20, 3) if mats else (4, 20, 20, 20, 3)
    centre = rng.uniform(-2, 2, 4) if mats is None else rng.uniform(100, 200, 4)
    lo, hi = centre - 0.01, centre + 0.01
    g = _stable_graph(rng, sizes, lo, hi, mats)
    lb = bounds(g, (lo, hi), "crown")[0]
    # the exact affine map on the box: compose the active parts of every layer
    A = [[Fraction(int(i == j)) for j in range(4)] for i in range(4)]
    b = [Fraction(0)] * 4
    qlo, qhi = [Fraction(v) for v in lo], [Fraction(v) for v in hi]
    mid = [(x + y) / 2 for x, y in zip(qlo, qhi)]
    for i in range(len(sizes) - 1):
        M = [[Fraction(float(v)) for v in col] for col in g.constants[f"W{i}"].T]
        c = [Fraction(float(v)) for v in g.constants[f"b{i}"]]
        A = [[sum(m * A[k][j] for k, m in enumerate(row)) for j in range(4)] for row in M]
        b = [sum(m * bk for m, bk in zip(row, b)) + cc for row, cc in zip(M, c)]
        if i + 2 < len(sizes):
            z = [sum(a * m for a, m in zip(row, mid)) + cc for row, cc in zip(A, b)]
            A = [row if v > 0 else [Fraction(0)] * 4 for row, v in zip(A, z)]
            b = [cc if v > 0 else Fraction(0) for cc, v in zip(b, z)]
    for r in range(3):
        exact = b[r] + sum(a * (x if a > 0 else y) for a, x, y in zip(A[r], qlo, qhi))
        assert Fraction(float(lb[r])) <= exact
        # (cancelling: the rounding error of W3·W2 is as large as its value, and is charged in full)
        assert float(exact) - lb[r] <= (1e-3 if mats else 1e-9) * max(1.0, abs(float(exact)))


def test_outward_floats_enclose_the_exact_values():
    """Leaf corners become floats lo_f <= lo and hi_f >= hi, equal when the value is a float and
    one ulp apart otherwise (checked exactly with Fractions, against a sweep of values)."""
    qs = [Fraction(1, 3), Fraction(-1, 3), Fraction(3, 8), Fraction(-5, 1024), Fraction(0)]
    qs += [Fraction(10) ** 30 + 1, Fraction(2) ** 60]
    qs += [Fraction(1, 10**320), Fraction(-1, 10**320), Fraction(0.1), Fraction(-2.5e-310)]
    qs += [Fraction(int(a), int(b)) for a, b in np.random.default_rng(3).integers(1, 10**12, (50, 2))]
    lo, hi = outward(qs, qs)
    for q, a, b in zip(qs, lo, hi):
        assert Fraction(a) <= q <= Fraction(b)
        if Fraction(float(q)) == q:
            assert a == b == float(q)
        else:
            assert math.nextafter(a, math.inf) == b


def test_split_values_read_as_floats_exactly_when_one_equals_them():
    """``split_value`` gives a float exactly when the value is one within its safe range, and the
    Fraction otherwise; the tree walk keeps such floats (the fast mode's corners, no rounding)
    and the region's own bounds as Fractions."""
    from torchlean.certificates.bounds import split_value, walk

    cases = ["-6004799506163061/18014398509481984", "3/8", "-5/1024", "0/1", "7/1", "12/16", "1/3"]
    cases += [str(Fraction(x)) for x in (0.1, -2.5e-290, 2.0**53, -(2.0**53))]
    cases += [f"{2**53 + 1}/2", f"1/{2**969}", f"1/{2**970}", f"3/{2**1074}", "1/10"]
    for text in cases:
        v, q = split_value(text), Fraction(text)
        assert Fraction(v) == q
        safe = q.denominator.bit_length() <= 970 and abs(q.numerator) <= 2**53
        assert (type(v) is float) == (q.denominator & (q.denominator - 1) == 0 and safe), text
    lo, hi = [Fraction(-1, 3), Fraction(0)], [Fraction(1, 3), Fraction(1)]
    tree = [["split", 0, "0/1"], ["leaf", []], ["split", 1, "1/3"], ["leaf", []], ["leaf", []]]
    boxes = [(a, b) for a, b, info in walk(tree, lo, hi) if info[0] is not None]
    assert boxes == [([lo[0], lo[1]], [0.0, hi[1]]), ([0.0, lo[1]], [hi[0], Fraction(1, 3)]),
                     ([0.0, Fraction(1, 3)], hi)]  # fmt: skip
    assert [type(v) for v in boxes[1][1]] == [Fraction, Fraction] and type(boxes[0][1][0]) is float
    corner = corners([b[0] for b in boxes], {}, 0)
    assert corner[1, 0] == 0.0  # (a float corner as it is; the Fractions rounded down)
    assert Fraction(corner[0, 0]) < lo[0] and Fraction(corner[2, 1]) < Fraction(1, 3)


def test_exact_number_reading_and_float_comparison():
    """The checker's fast paths decide exactly what the general ones do: "p/q" strings read to the
    same rational as Fraction's parser, and a float compares with a rational exactly (0.1 as a
    float is slightly above 1/10, and equal to its own ratio)."""
    from torchlean.certificates.core import Rejected, at_least, ratio, rational

    texts = ("3/4", "03/004", "0/7", "91733/50000", "-3/4", "-0/5", "-06/4", "7", "-7", "1.25", " 5/10 ")
    for text in (*texts, "1_000/3", "-1_000/3", " -3/4", "+3/4"):
        assert rational(text) == Fraction(text)
        p, q = ratio(text)
        assert q > 0 and Fraction(p, q) == Fraction(text)
    for bad in ("3/0", "3/00", "/4", "3/", "x/4", "3/4/5", "--3/4", "-/4", "- 3/4", "3/-4", True, 0.5, None):
        for read in (rational, ratio):
            with pytest.raises(Rejected):
                read(bad)
    assert at_least(0.75, ratio("6/8")) and not at_least(0.75, ratio("7/8")) and at_least(-1.0, (-2, 2))
    assert not at_least(math.nan, (-1, 1)) and at_least(Fraction(1, 3), (2, 6))
    tenth = Fraction(*0.1.as_integer_ratio())
    assert at_least(0.1, Fraction(1, 10)) and at_least(0.1, tenth)
    assert not at_least(0.1, tenth + Fraction(1, 10**30))
    assert not at_least(-0.0, Fraction(1, 10**300)) and at_least(0.0, Fraction(0))
    for x in (math.inf, -math.inf, math.nan):
        assert not at_least(x, Fraction(-(10**400)))
    assert at_least(Fraction(1, 3), Fraction(1, 3)) and not at_least(Fraction(1, 3), Fraction(1, 2))
