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
from fast_column import both_columns, worst_ratio

from torchlean.certificates import check, fast_blocks, fast_forms
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


def _err(g: Graph, x: np.ndarray, dtype) -> np.ndarray:
    """|runtime(dtype) - runtime(float64)| per point and output."""
    return np.abs(run_float(g, x, dtype).astype(np.float64) - run_float(g, x.astype(np.float64), np.float64))


# -- 1. the window's own float sum must fit (the bug this audit fixed) ----------------------------

def _pool_graph(op: str = "avg_pool2d") -> Graph:
    at = ({"kernel_size": (3, 3), "stride": (3, 3)} if op == "avg_pool2d"
          else {"axes": None, "keepdims": False})
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
    err = _err(g, x, np.float16)
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

    n = int(np.prod(shape))
    return Tensor(shape, [Q(float(v)) for v in vals.ravel()] if vals is not None else [None] * n)


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
    plain = {k: v for k, v in at.items() if k != "count_include_pad"}
    inside = np.rint(RULES["avg_pool2d"].forward(np, np.ones(xs), **plain,
                                         count_include_pad=True).ravel() * kh * kw).astype(int)
    if op == "avg_pool2d":
        P, div = mp
        got = fe._vec(P, x.ravel()) / div
        assert np.array_equal(fe._terms(P), inside)  # (n: the window's members in range)
        full = at.get("count_include_pad") is not False
        assert np.array_equal(div, np.full(len(div), kh * kw) if full else inside)
    else:
        idx, padded = mp
        assert padded == any(at.get("padding", (0, 0)))
        assert np.array_equal((idx >= 0).sum(axis=1), inside)
        xf = np.concatenate([x.ravel(), [-np.inf]])
        got = xf[idx].max(axis=1)
    assert got.shape == want.shape and np.allclose(got, want, rtol=1e-13, atol=1e-13)


# -- 3. adversarial graphs: residuals, a value read twice, grouped/dilated/strided convs, odd pools --

def _c(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(F32)


def graph_residual(seed: int = 0) -> Graph:
    """x (98 elements) -> conv 3x3 pad 1, + x (x read twice: conv input and residual), relu, a grouped
    strided dilated padded conv, + itself (one value twice), max_pool 3x3 s2 p1, flatten, matmul."""
    rng = np.random.default_rng(seed)
    c = {"k1": _c(rng, 2, 2, 3, 3, scale=0.3), "k2": _c(rng, 4, 1, 3, 3, scale=0.4),
         "W": _c(rng, 16, 3, scale=0.3)}
    nodes = [Node("conv2d", ["x", "k1"], "c1", {"padding": (1, 1)}), Node("add", ["c1", "x"], "r"),
             Node("relu", ["r"], "h"),
             Node("conv2d", ["h", "k2"], "c2", {"stride": (2, 2), "padding": (2, 2), "dilation": (2, 2),
                                                "groups": 2}),
             Node("add", ["c2", "c2"], "d"),
             Node("max_pool2d", ["d"], "m", {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1)}),
             Node("flatten", ["m"], "f"), Node("matmul", ["f", "W"], "y")]
    return Graph([Value("x", (1, 2, 7, 7), "float32")], c, nodes, ["y"]).check()


def graph_pools(seed: int = 0) -> Graph:
    """x (75) -> 1x1 conv, two avg_pools of one value (count_include_pad both ways: divisors 9 and
    4/6/9), their sum, a 2x3 max_pool stride (1, 2), a subtraction of the conv's own mean-like
    value (cancellation), tanh, flatten, matmul."""
    rng = np.random.default_rng(seed)
    c = {"k": _c(rng, 3, 3, 1, 1, scale=0.5), "W": _c(rng, 6, 2, scale=0.5),
         "b": _c(rng, 1, 3, 1, 1, scale=0.1)}
    avg = {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1)}
    nodes = [Node("conv2d", ["x", "k"], "c"),
             Node("avg_pool2d", ["c"], "a1", {**avg, "count_include_pad": True}),
             Node("avg_pool2d", ["c"], "a2", {**avg, "count_include_pad": False}),
             Node("add", ["a1", "a2"], "s"), Node("sub", ["s", "a1"], "t"), Node("add", ["t", "b"], "u"),
             Node("max_pool2d", ["u"], "m", {"kernel_size": (2, 3), "stride": (1, 2)}),
             Node("tanh", ["m"], "th"), Node("flatten", ["th"], "f"), Node("matmul", ["f", "W"], "y")]
    return Graph([Value("x", (1, 3, 5, 5), "float32")], c, nodes, ["y"]).check()


def graph_ties(seed: int = 0) -> Graph:
    """x (72) scaled elementwise by constants near 1/10 (not float values), max_pool 2x2 (windows
    whose members' ranges overlap: no member dominates, the max switches), minus a constant."""
    rng = np.random.default_rng(seed)
    c = {"s": (0.1 + 0.01 * rng.random((1, 2, 6, 6))).astype(F32), "b": np.full((1,), 0.0625, F32)}
    nodes = [Node("mul", ["x", "s"], "z"),
             Node("max_pool2d", ["z"], "m", {"kernel_size": (2, 2), "stride": (2, 2)}),
             Node("sub", ["m", "b"], "y")]
    return Graph([Value("x", (1, 2, 6, 6), "float32")], c, nodes, ["y"]).check()


GRAPHS = {"residual": graph_residual, "pools": graph_pools, "ties": graph_ties}
BOXES = {"residual": [(Q(-1), Q(1))] * 49 + [(Q(0), Q(1, 2))] * 49,
         "pools": [(Q(-1), Q(1))] * 75, "ties": [(Q(1, 2), Q(1))] * 72}


def _points(name: str, g: Graph, box, dtype, n: int, seed: int) -> np.ndarray:
    """Corners (all low, all high, alternating), uniform points, and for "ties" points where two or
    all members of a max window are equal in the reals (x_b = s_a x_a / s_b) or one ulp apart."""
    rng = np.random.default_rng(seed)
    lo = np.array([float(a) for a, _ in box])
    hi = np.array([float(b) for _, b in box])
    pts = [lo, hi, np.where(np.arange(len(lo)) % 2 == 0, lo, hi), np.where(np.arange(len(lo)) % 2, lo, hi)]
    pts += list(rng.uniform(lo, hi, (n, len(lo))))
    if name == "ties":
        s = g.constants["s"].astype(np.float64).ravel()
        base = rng.uniform(lo, hi, (n, len(lo)))
        for x in base:
            for w in range(18):  # each 2x2 window of the 2 x 6 x 6 input: members in row-major order
                ch, i, j = w // 9, (w % 9) // 3, w % 3
                mem = [ch * 36 + (2 * i + a) * 6 + 2 * j + b for a in (0, 1) for b in (0, 1)]
                for m in mem[1:]:  # every member's real value equal to the first's
                    x[m] = np.clip(s[mem[0]] * x[mem[0]] / s[m], lo[m], hi[m])
            pts.append(x)
            y = x.astype(dtype)
            y[1::2] = np.nextafter(y[1::2], np.array(np.inf, dtype))  # (one ulp apart)
            pts.append(np.clip(y.astype(np.float64), lo, hi))
    x = np.array(pts).astype(dtype)
    return np.clip(x, lo.astype(dtype), hi.astype(dtype))


def _reference(g: Graph, box) -> np.ndarray:
    """The binary64 run's own certified distance to the real network (exact column, IBP ranges)."""
    cert = bound_certificate(g, box, "binary64", ranges="ibp", column="exact")
    assert check(cert).ok
    return np.array([float(e) for e in epsilons(cert)])


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("fmt,dtype", [("binary32", np.float32), ("binary16", np.float16)])
def test_fast_epsilon_holds_at_adversarial_float_runs(name, fmt, dtype):
    """The runtime (numpy float32/float16) at corners, uniform points and max-window ties never errs
    by more than the replayed fast epsilon (plus the float64 reference's own certified error)."""
    g, box = GRAPHS[name](), BOXES[name]
    cert = bound_certificate(g, box, fmt, column="fast")
    v = check(cert)
    assert v.ok, v.reason
    eps = np.array([float(e) for e in epsilons(cert)])
    x = _points(name, g, box, dtype, 150, 1)
    with np.errstate(over="raise", invalid="raise"):
        err = _err(g, x, dtype)
    assert np.all(err.max(axis=0) + _reference(g, box) <= eps), (err.max(axis=0), eps)
    assert np.all(err.max(axis=0) > 0)


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("fmt,cast", [("binary32", False), ("binary16", True), ("binary16", False)])
def test_fast_agrees_with_exact_on_adversarial_graphs(name, fmt, cast):
    """Same statement, both columns, every step: fast >= exact (float noise aside) and, over > 64
    inputs (no magnitude forms in the exact column), within 1% of it where the constants are values
    of the format (``cast``: rounded to float16 first); with float32 constants in binary16 the fast
    column's cast error u|w| + eta exceeds the exact |fl(w) - w| (1.5x to 3x here): >= only."""
    g, box = GRAPHS[name](), BOXES[name]
    if cast:
        g = Graph(g.inputs, {k: v.astype(np.float16).astype(F32) for k, v in g.constants.items()},
                  g.nodes, g.outputs).check()
    fast, exact = both_columns(g, box, fmt)
    if fmt == "binary32" or cast:  # (else the cast errors' ratio, unbounded: 3x in "ties")
        assert worst_ratio(fast, exact) < 1.01


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_bounds_do_not_depend_on_the_block_layout(name, monkeypatch):
    """Every block and map dense (SPARSE_BELOW 0) or every one sparse (above 1): ``_join``,
    ``_merge``, ``_rows``, ``_plus``, ``_scale``, ``_absdot`` and ``_Mat.lmul``/``rmul`` give the
    dense products' bounds (to float noise): no term dropped, misplaced or counted twice."""
    st = statement(GRAPHS[name](), BOXES[name], "binary16", column="fast")
    got = []
    for level in (0.0, 1.5):
        monkeypatch.setattr(fast_blocks, "SPARSE_BELOW", level)
        monkeypatch.setattr(fast_forms, "SPARSE_BELOW", level)
        fe._CACHE.clear()
        got.append(propagate(st))
    fe._CACHE.clear()
    for a, b in zip(*got):
        a, b = np.array([float(q) for q in a]), np.array([float(q) for q in b])
        assert np.allclose(a, b, rtol=1e-9, atol=0), np.max(np.abs(a / b - 1))


def test_dominated_max_window_keeps_its_member_form():
    """5x5 input, even-even elements in [3, 4], the rest in [0, 1]: every 2x2 window of max_pool
    (stride 2, padding 1) has one dominating member, at any position in the window (alone, first,
    last). max_pool 1x1 stride 2 reads those same elements, so y = m - a is exactly 0 in floats
    and in the reals: the column must keep the dominating member's own form (wrong member, or
    the form dropped, bounds y by ~2 E(z) instead of ~u)."""
    s = np.full((1, 1, 5, 5), 0.1, F32)
    nodes = [Node("mul", ["x", "s"], "z"),
             Node("max_pool2d", ["z"], "m", {"kernel_size": (2, 2), "stride": (2, 2), "padding": (1, 1)}),
             Node("max_pool2d", ["z"], "a", {"kernel_size": (1, 1), "stride": (2, 2)}),
             Node("sub", ["m", "a"], "y")]
    g = Graph([Value("x", (1, 1, 5, 5), "float32")], {"s": s}, nodes, ["y"]).check()
    even = [(r % 2 == 0 and c % 2 == 0) for r in range(5) for c in range(5)]
    box = [(Q(3), Q(4)) if e else (Q(0), Q(1)) for e in even]
    x = _points("box", g, box, np.float32, 200, 3)
    y = run_float(g, x, np.float32)
    assert not y.any()  # (the float run: exactly 0)
    for column in ("fast", "exact"):
        st = statement(g, box, "binary32", column=column, ranges="fast")
        steps = propagate(st)
        Ez = min(float(e) for e, d in zip(steps[0], even) if d)
        assert max(float(e) for e in steps[-1]) < 0.5 * Ez, (column, steps[-1], Ez)


# -- 4. bit-exact emulated runs: other formats, directed modes, random summation orders ------------

def _emulate(g: Graph, x: np.ndarray, em: Emulator, rng) -> np.ndarray:
    """The graph run with every product, sum and quotient rounded by ``em`` (bfloat16, fp8, directed
    modes), each dot product and window sum in a random order or positives first (any order is a
    float run the claim covers); conv2d, pooling and matmul from their definitions, not the column's maps."""
    rnd = np.vectorize(em.from_float, otypes=[np.float64])
    env = {k: rnd(v.astype(np.float64)) for k, v in g.constants.items()}
    env[g.inputs[0].name] = rnd(x.reshape(g.inputs[0].shape).astype(np.float64))

    def dot(pairs):
        if rng.random() < 0.5:  # a random order, or the positive products first, largest first:
            pairs = [pairs[i] for i in rng.permutation(len(pairs))]  # (the largest partial sums,
        else:  # what the sign-split bound's node sums M = max(P, N) cover)
            pairs = sorted(pairs, key=lambda ab: -float(ab[0]) * float(ab[1]))
        acc = None
        for a, b in pairs:
            p = em.binary("mul", float(a), float(b))
            acc = p if acc is None else em.binary("add", acc, p)
        return 0.0 if acc is None else acc

    def windows(h, w, k, s, p, d=(1, 1)):
        ho = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
        wo = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
        return ho, wo, lambda i, j: [(a, b, i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + b * d[1])
                                     for a in range(k[0]) for b in range(k[1])
                                     if 0 <= i * s[0] - p[0] + a * d[0] < h
                                     and 0 <= j * s[1] - p[1] + b * d[1] < w]

    for node in g.nodes:
        ins, at = [env[n] for n in node.inputs], dict(node.attrs or {})
        op = node.op
        if op == "conv2d":
            X, K = ins
            n, c, h, w = X.shape
            o, cg, kh, kw = K.shape
            gr = int(at.get("groups", 1))
            ho, wo, win = windows(h, w, (kh, kw), at.get("stride", (1, 1)), at.get("padding", (0, 0)),
                                  at.get("dilation", (1, 1)))
            out = np.zeros((n, o, ho, wo))
            for b, oc, i, j in np.ndindex(n, o, ho, wo):
                gi = oc // (o // gr)
                out[b, oc, i, j] = dot([(K[oc, ci, a, e], X[b, gi * cg + ci, r, q])
                                        for ci in range(cg) for a, e, r, q in win(i, j)])
        elif op in ("avg_pool2d", "max_pool2d"):
            X = ins[0]
            n, c, h, w = X.shape
            k, s, p = at["kernel_size"], at.get("stride", at["kernel_size"]), at.get("padding", (0, 0))
            ho, wo, win = windows(h, w, k, s, p)
            out = np.zeros((n, c, ho, wo))
            for b, ch, i, j in np.ndindex(n, c, ho, wo):
                vals = [X[b, ch, r, q] for _, _, r, q in win(i, j)]
                if op == "max_pool2d":
                    out[b, ch, i, j] = max(vals)
                else:
                    div = k[0] * k[1] if at.get("count_include_pad", True) else len(vals)
                    out[b, ch, i, j] = em.binary("div", dot([(v, 1.0) for v in vals]), em.from_float(div))
        elif op == "matmul":
            A, B = ins
            out = np.array([[dot(list(zip(A[i], B[:, j]))) for j in range(B.shape[1])]
                            for i in range(A.shape[0])])
        elif op in ("add", "sub", "mul"):
            f = np.vectorize(lambda a, b: em.binary(op, a, b), otypes=[np.float64])
            out = f(*np.broadcast_arrays(*ins))
        elif op == "relu":
            out = np.maximum(ins[0], 0.0)
        elif op == "tanh":
            out = np.vectorize(lambda a: em.transcendental("tanh", a, {}), otypes=[np.float64])(ins[0])
        elif op == "flatten":
            out = ins[0].reshape(ins[0].shape[0], -1)
        else:
            raise NotImplementedError(op)
        env[node.output] = out
    return np.concatenate([env[o].ravel() for o in g.outputs])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("fmt,mode,scale", [
    ("bfloat16", "rne", 1), ("binary16", "rtz", 1), ("binary16", "rup", 1), ("binary16", "rdn", 1),
    ("float8_e5m2", "rne", Q(1, 4)),  # (e5m2's range: the sums fit)
    # underflow: values near binary16's least normal 2^-14, subnormals or none (flushed to 0)
    ("binary16", "rne", Q(1, 2**14)), ("e5m10-nosub", "rne", Q(1, 2**12)),
    ("e5m10-nosub", "rtz", Q(1, 2**13))])
def test_fast_epsilon_holds_at_emulated_runs(name, fmt, mode, scale):
    """The fast epsilon (kernel_ulps 1: what a directed mode's correctly rounded tanh needs) is above
    the error of bit-exact runs in the format and mode, random summation orders, at corners,
    uniform points and max-window ties (the points are values of the format), the box scaled."""
    g, box = GRAPHS[name](), [(a * scale, b * scale) for a, b in BOXES[name]]
    try:
        cert = bound_certificate(g, box, fmt, mode=mode, kernel_ulps=Q(1), column="fast")
    except Rejected as e:  # (a refusal is sound; say which)
        pytest.skip(f"refused: {e}")
    assert check(cert).ok
    eps = np.array([float(e) for e in epsilons(cert)])
    em, rng = Emulator(fmt, mode), np.random.default_rng(7)
    x = _points(name, g, box, np.float64, 12, 5)
    x = np.vectorize(em.from_float, otypes=[np.float64])(x)
    lo = np.array([float(a) for a, _ in box])
    hi = np.array([float(b) for _, b in box])
    x = x[np.all((x >= lo) & (x <= hi), axis=1)]  # (rounded into the box only)
    assert len(x) >= 8
    got = np.array([_emulate(g, xi, em, rng) for xi in x])
    err = np.abs(got - run_float(g, x, np.float64)).max(axis=0)
    assert np.all(np.isfinite(err)) and np.all(err > 0)
    assert np.all(err + _reference(g, box) <= eps), (err / eps)


# -- 5. a padded max window in a format without infinities (the second gap this audit fixed) ------

def test_padded_max_pool_without_infinities_is_refused():
    """The runtime pads max_pool2d with -inf; float8_e4m3fn has no infinity (ml_dtypes casts -inf
    to NaN) and max(NaN, x) is NaN, so the float run is NaN everywhere: both columns certified ~0.
    Without padding (no -inf read) the same format is still certified, above the float run."""
    import ml_dtypes

    f8 = ml_dtypes.float8_e4m3fn
    box = [(Q(1), Q(2))] * 4
    for pad, ok in (((1, 1), False), ((0, 0), True)):
        at = {"kernel_size": (2, 2), "stride": (2, 2), "padding": pad}
        g = Graph([Value("x", (1, 1, 2, 2), "float32")], {}, [Node("max_pool2d", ["x"], "y", at)],
                  ["y"]).check()
        x = np.array([[1, 1.5, 2, 1.25]], f8)
        assert np.isnan(run_float(g, x, f8).astype(np.float64)).any() == (not ok)
        for column in ("fast", "exact"):
            st = statement(g, box, "float8_e4m3fn", column=column, ranges="fast", kernel_ulps=Q(1, 2))
            if ok:
                assert all(e < 1e-290 for e in propagate(st)[-1])  # (max is exact: ~0, TINY aside)
            else:
                with pytest.raises(Rejected, match="-inf has no value"):
                    propagate(st)


@pytest.mark.parametrize("column", ["fast", "exact"])
def test_forged_certificates_over_the_gaps_are_rejected(column):
    """A certificate made where the claim holds, its box (or format) then moved to where the float
    run is inf/NaN with the epsilon kept (re-digested): the checker rejects both."""
    from torchlean.certificates.core import digest

    rng = "fast" if column == "fast" else "ibp"
    cert = bound_certificate(_pool_graph(), [(Q(2000), Q(7000))] * 9, "binary16", column=column, ranges=rng)
    assert check(cert).ok
    cert["statement"]["input_box"] = [["20000", "30000"]] * 9
    cert["statement"]["epsilon"] = ["1000"]
    cert["digest"] = digest(cert["statement"])
    v = check(cert)
    assert not v.ok and "overflow" in v.reason, v.reason
    at = {"kernel_size": (2, 2), "stride": (2, 2), "padding": (1, 1)}
    g = Graph([Value("x", (1, 1, 2, 2), "float32")], {}, [Node("max_pool2d", ["x"], "y", at)], ["y"]).check()
    cert = bound_certificate(g, [(Q(1), Q(2))] * 4, "bfloat16", column=column, ranges="fast")
    assert check(cert).ok
    cert["statement"]["format"] = statement(g, [(Q(1), Q(2))] * 4, "float8_e4m3fn")["format"]
    cert["statement"]["kernel_ulps"] = "1/2"
    cert["digest"] = digest(cert["statement"])
    v = check(cert)
    assert not v.ok and "-inf has no value" in v.reason, v.reason


@pytest.mark.parametrize("right,xs", [(True, (5,)), (True, (3, 5)), (True, (2, 3, 5)), (False, (5,)),
                                      (False, (5, 4)), (False, (2, 5, 4)), (False, (2, 3, 5, 1))])
def test_matmul_map_equals_numpy(right, xs):
    """``_matmul_map`` (x @ W or W @ x, batch dims, 1-D x) on x's row-major elements is numpy's
    product, and each output's term count is its column's (row's) nonzero weights."""
    rng = np.random.default_rng(len(xs) + 10 * right)
    W = rng.standard_normal((5, 3) if right else (3, 5))
    W[1, 2] = 0.0
    x = rng.standard_normal(xs)
    M = fe._matmul_map(W, xs, right)
    want = (x @ W) if right else (W @ x)
    assert np.allclose(fe._vec(M, x.ravel()), want.ravel(), rtol=1e-13, atol=1e-13)
    nz = (np.ones(xs) @ (W != 0)) if right else ((W != 0) @ np.ones(xs))
    assert np.array_equal(fe._terms(M), np.rint(nz).astype(int).ravel())
