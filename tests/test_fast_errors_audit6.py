"""Audit of the fast column's read-back of the normalising rows (``fast_norms._forms`` and
``exact_row``, h-fastln's second version: the exact entry runs on the fast forms themselves, not
one source per input element as audit5 read). Each attack a test asserting the right behaviour:

- the layout: every block the read-back writes (old keys at ``width[key]``, its new sources at
  S0) is one ``_Walk.make``'s whole run of sources, whatever mix of makes the inputs carry (two
  branches concatenated, data next to a float64 constant, a conv + avg_pool (dense and sparse
  blocks), max_pool / maximum (inputs with rem), a gather / where selection, a residual add, the
  same value twice, an entry whose sums pass MAX_TERMS), checked on the walk itself (``_layout``);
- the coefficients read back are the exact entry's, to the charged 2U|k| (``_readback``);
- the fast ε at least the exact column's, node by node, and above an error-maximising search's
  binary16 / bfloat16 / binary32 runs plus the float64 reference's certified error;
- directed modes: fast >= exact per node; coefficients past 2^960 (W = k 2^F not finite) and an
  all -inf softmax row refused, never accepted.

No hole found: see TRUST_BOUNDARIES.md (h-audit6)."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from fast_column import NOISE, both_columns, covers_searched_runs

from torchlean.certificates import errorctx
from torchlean.certificates import fast_errors as fe
from torchlean.certificates import fast_norms as fn
from torchlean.certificates.core import Rejected
from torchlean.certificates.errorbound import propagate
from torchlean.floats.errorbound import statement
from torchlean.spec.graph import Graph, Node, Value

Q = Fraction
DT = {"binary16": np.float16, "bfloat16": ml_dtypes.bfloat16, "binary32": np.float32}


def _f32(**c):
    return {k: np.asarray(v, np.float32) for k, v in c.items()}


def concat_branches() -> tuple[Graph, list]:
    """softmax of concat(tanh(x W1), x W2 + relu(x)) and of concat(x, x): rows over sources of
    several makes, made at different times (the input's, tanh's, matmul's, add's)."""
    rng = np.random.default_rng(1)
    c = _f32(W1=rng.normal(0, 1.5, (4, 4)), W2=rng.normal(0, 1.0, (4, 4)), V=rng.normal(0, 1, (20, 2)))
    nodes = [Node("matmul", ["x", "W1"], "a", {}), Node("tanh", ["a"], "t", {}),
             Node("matmul", ["x", "W2"], "b", {}), Node("relu", ["x"], "rx", {}),
             Node("add", ["b", "rx"], "b2", {}), Node("concat", ["t", "b2", "x"], "k", {"axis": 1}),
             Node("softmax", ["k"], "s", {"axis": -1}), Node("concat", ["x", "x"], "xx", {"axis": 1}),
             Node("log_softmax", ["xx"], "ls", {"axis": -1}),
             Node("concat", ["s", "ls"], "sl", {"axis": 1}), Node("matmul", ["sl", "V"], "y", {})]
    g = Graph([Value("x", (1, 4), "float32")], c, nodes, ["y"]).check()
    return g, [(Q(-1), Q(-1, 2)), (Q(0), Q(1, 4)), (Q(1, 2), Q(1)), (Q(-1, 4), Q(1, 4))]


def conv_softmax() -> tuple[Graph, list]:
    """conv2d (sparse blocks) -> relu -> avg_pool2d -> reshape -> softmax -> a matmul reading the
    read-back's blocks (old keys and S0) together with the conv's own form via a residual add."""
    rng = np.random.default_rng(2)
    c = _f32(K=rng.normal(0, 0.7, (2, 1, 3, 3)), V=rng.normal(0, 1, (4, 4)))
    avg = {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)}
    nodes = [Node("conv2d", ["x", "K"], "h", {"padding": (1, 1)}), Node("relu", ["h"], "r", {}),
             Node("avg_pool2d", ["r"], "p", avg), Node("reshape", ["p"], "q", {"shape": (2, 4)}),
             Node("softmax", ["q"], "s", {"axis": -1}), Node("add", ["s", "q"], "sq", {}),
             Node("matmul", ["sq", "V"], "y", {})]
    g = Graph([Value("x", (1, 1, 4, 4), "float32")], c, nodes, ["y"]).check()
    rng = np.random.default_rng(3)
    x0 = np.round(rng.uniform(-1, 1, 16) * 8) / 8
    return g, [(Q(v), Q(v) + Q(1, 16)) for v in x0]


def selections() -> tuple[Graph, list]:
    """gather and where pick elements of two differently made values; layer_norm of the mix with
    a data weight (the gather, reshaped) and a constant bias."""
    c = {"I": np.array([[3, 0, 5, 1, 6, 2]], np.int64),
         "M": np.array([[True, False, True, False, True, False]]),
         "W": np.array([[0.5, -1.25, 2.0, 0.75, 1.5, -0.5]], np.float32),
         "lb": np.array([0.1, -0.2, 0.3, 0.0, 0.5, -0.7])}
    nodes = [Node("tanh", ["x"], "t", {}), Node("matmul", ["x", "W"], "h", {}),
             Node("concat", ["t", "h"], "k", {"axis": 1}), Node("gather", ["k", "I"], "g", {"axis": 1}),
             Node("mul", ["h", "h"], "hh", {}), Node("where", ["M", "g", "hh"], "wh", {}),
             Node("reshape", ["g"], "gw", {"shape": (6,)}),
             Node("layer_norm", ["wh", "gw", "lb"], "z", {"normalized_ndim": 1, "eps": 1e-3}),
             Node("add", ["z", "h"], "y", {})]
    g = Graph([Value("x", (1, 1), "float32")], c, nodes, ["y"]).check()
    return g, [(Q(1, 4), Q(3, 4))]


def residual_attention() -> tuple[Graph, list]:
    """x + softmax(x Wq (x Wk)^T / 2) x Wv, then layer_norm, then a matmul: the transformer block's
    residual, the read-back's forms flowing into a matmul of two data operands and an add."""
    rng = np.random.default_rng(4)
    c = _f32(Wq=rng.normal(0, 0.8, (3, 3)), Wk=rng.normal(0, 0.8, (3, 3)), Wv=rng.normal(0, 0.8, (3, 3)),
             h=[0.5], lw=rng.normal(1, 0.2, 3), lb=rng.normal(0, 0.2, 3), O=rng.normal(0, 1, (3, 2)))
    nodes = [Node("matmul", ["x", "Wq"], "q", {}), Node("matmul", ["x", "Wk"], "k", {}),
             Node("matmul", ["x", "Wv"], "v", {}), Node("transpose", ["k"], "kt", {}),
             Node("matmul", ["q", "kt"], "a", {}), Node("mul", ["a", "h"], "a2", {}),
             Node("softmax", ["a2"], "p", {"axis": -1}), Node("matmul", ["p", "v"], "o", {}),
             Node("add", ["x", "o"], "r", {}),
             Node("layer_norm", ["r", "lw", "lb"], "z", {"normalized_ndim": 1, "eps": 1e-5}),
             Node("softmax", ["z"], "z2", {"axis": -1}), Node("matmul", ["z2", "O"], "y", {})]
    g = Graph([Value("x", (2, 3), "float32")], c, nodes, ["y"]).check()
    x0 = [0.5, -0.25, 1.0, -0.75, 0.25, 0.0]
    return g, [(Q(v) - Q(1, 32), Q(v) + Q(1, 32)) for v in x0]


def pooled_max() -> tuple[Graph, list]:
    """conv2d -> max_pool2d (windows with no dominant member: their error kept as rem, outside
    the form) and maximum(x, tanh x) concatenated -> log_softmax and layer_norm of the same
    value: inputs whose rem and forms the read-back both carry."""
    rng = np.random.default_rng(5)
    c = _f32(K=rng.normal(0, 0.7, (1, 1, 3, 3)), lw=rng.normal(1, 0.2, 8), lb=rng.normal(0, 0.2, 8))
    nodes = [Node("conv2d", ["x", "K"], "h", {"padding": (1, 1)}),
             Node("max_pool2d", ["h"], "p", {"kernel_size": (2, 2), "stride": (2, 2)}),
             Node("reshape", ["p"], "q", {"shape": (1, 4)}), Node("reshape", ["x"], "xr", {"shape": (4, 4)}),
             Node("slice", ["xr"], "x4", {"index": [(0, 1, 1), (0, 4, 1)]}), Node("tanh", ["x4"], "t", {}),
             Node("maximum", ["x4", "t"], "mx", {}), Node("concat", ["q", "mx"], "k", {"axis": 1}),
             Node("log_softmax", ["k"], "ls", {"axis": -1}),
             Node("layer_norm", ["k", "lw", "lb"], "z", {"normalized_ndim": 1, "eps": 1e-5}),
             Node("add", ["ls", "z"], "y", {})]
    g = Graph([Value("x", (1, 1, 4, 4), "float32")], c, nodes, ["y"]).check()
    rng = np.random.default_rng(6)
    x0 = np.round(rng.uniform(-1, 1, 16) * 8) / 8
    return g, [(Q(v), Q(v) + Q(1, 4)) for v in x0]


def mixed_constants() -> tuple[Graph, list]:
    """softmax of concat(tanh x, C) (C float64, not values of the formats: cast errors as rem, no
    form) and layer_norm of x with weight C: an input part data, part constant."""
    c = {"C": np.array([[0.3, -1.7, 2.1]]), "w": np.array([0.3, -1.7, 2.1]), "b": np.zeros(3),
         "V": np.arange(18.0).reshape(9, 2) / 7}
    nodes = [Node("tanh", ["x"], "t", {}), Node("concat", ["t", "C"], "k", {"axis": 1}),
             Node("softmax", ["k"], "s", {"axis": -1}),
             Node("layer_norm", ["x", "w", "b"], "z", {"normalized_ndim": 1, "eps": 1e-5}),
             Node("concat", ["s", "z"], "sz", {"axis": 1}), Node("matmul", ["sz", "V"], "y", {})]
    g = Graph([Value("x", (1, 3), "float32")], c, nodes, ["y"]).check()
    return g, [(Q(-1), Q(-3, 4)), (Q(1, 4), Q(1, 2)), (Q(1), Q(5, 4))]


GRAPHS = {"concat": concat_branches, "mixed": mixed_constants, "conv": conv_softmax, "select": selections,
          "residual": residual_attention, "maxpool": pooled_max}


def wide(n: int = 2200) -> tuple[Graph, list]:
    """softmax of tanh(x) W over n = 2200 inputs: each element's form reads n + 1 sources, past
    the entry's MAX_TERMS (2048), so its sums keep their KEEP_TERMS largest terms and the rest
    join a new source (the read-back then carries a subset of the old ones and that source)."""
    rng = np.random.default_rng(7)
    c = _f32(W=rng.normal(0, 1 / np.sqrt(n), (n, 4)), V=rng.normal(0, 1, (4, 2)))
    nodes = [Node("tanh", ["x"], "tx", {}), Node("matmul", ["tx", "W"], "h", {}),
             Node("softmax", ["h"], "s", {"axis": -1}), Node("matmul", ["s", "V"], "y", {})]
    g = Graph([Value("x", (1, n), "float32")], c, nodes, ["y"]).check()
    x0 = np.round(rng.uniform(-1, 1, n) * 16) / 16
    return g, [(Q(v), Q(v) + Q(1, 8)) for v in x0]


def sparse_conv() -> tuple[Graph, list]:
    """conv2d on 12 x 12 -> relu -> avg_pool2d -> reshape (2, 36) -> softmax: the inputs' forms
    are sparse blocks (``_Sp``: each element reads 9 x 4 of 288 relu sources), not dense."""
    rng = np.random.default_rng(8)
    c = _f32(K=rng.normal(0, 0.5, (2, 1, 3, 3)), V=rng.normal(0, 1, (36, 2)))
    avg = {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)}
    nodes = [Node("conv2d", ["x", "K"], "h", {"padding": (1, 1)}), Node("relu", ["h"], "r", {}),
             Node("avg_pool2d", ["r"], "p", avg), Node("reshape", ["p"], "q", {"shape": (2, 36)}),
             Node("softmax", ["q"], "s", {"axis": -1}), Node("matmul", ["s", "V"], "y", {})]
    g = Graph([Value("x", (1, 1, 12, 12), "float32")], c, nodes, ["y"]).check()
    x0 = np.round(rng.uniform(-1, 1, 144) * 8) / 8
    return g, [(Q(v), Q(v) + Q(1, 16)) for v in x0]


READ = {**GRAPHS, "wide": wide, "sparse": sparse_conv}


def _layout(monkeypatch) -> list:
    """Record every make's run of sources [S0, S0 + width) (a read-back's own new sources: the
    run at the S0 it appends) and assert every block any row passes to ``make`` or reads into
    ``exact_row`` is one whole earlier run; returns the read-back outputs seen."""
    runs: dict[int, int] = {}
    pending: dict[int, int] = {}  # (a read-back's S0, before its make)
    seen: list = []
    make0, row0 = fe._Walk.make, fe.exact_row

    def make(self, lo, hi, C, local, rem=None):
        S0 = len(self.L)
        runs.update(pending)
        pending.clear()
        for k, X in C.items():
            assert runs.get(k) == X.shape[1], (k, X.shape, runs.get(k))
        v = make0(self, lo, hi, C, local, rem)
        if len(self.L) > S0:
            runs[S0] = len(self.L) - S0
        return v

    def row(w, op, ins, *a):
        for x in ins:
            for k, X in x.C.items():
                assert runs.get(k) == X.shape[1], (k, X.shape, runs.get(k))
        v = row0(w, op, ins, *a)
        seen.append(v)
        return v

    def row_hook(w, op, ins, *a):
        S0 = len(w.L)
        mk = fe._Walk.make

        def make_in(self, lo, hi, C, local, rem=None):
            if S0 in C:
                pending[S0] = len(self.L) - S0  # (the entry's new sources, appended at S0)
            return mk(self, lo, hi, C, local, rem)

        monkeypatch.setattr(fe._Walk, "make", make_in)
        try:
            return row(w, op, ins, *a)
        finally:
            monkeypatch.setattr(fe._Walk, "make", mk)

    monkeypatch.setattr(fe._Walk, "make", make)
    monkeypatch.setattr(fe, "exact_row", row_hook)
    return seen


@pytest.mark.parametrize("name", sorted(READ))
def test_readback_blocks_are_whole_runs(name, monkeypatch):
    """Every block of every form (the read-back's inputs and outputs, and every later row's) is
    one make's whole run of sources: ``searchsorted`` on the inputs' keys finds each source's own
    block, ``width[key]`` is that run's width whichever input carried it."""
    g, box = READ[name]()
    seen = _layout(monkeypatch)
    fe._CACHE.clear()
    propagate(statement(g, box, "binary32", ranges="fast", column="fast"))
    assert seen


def test_layout_check_can_fail(monkeypatch):
    """The layout check catches a read-back that writes a block one column wider than its run
    (``width[key] + 1``): the check is not vacuous."""
    g, box = concat_branches()
    blk = fn._blk
    monkeypatch.setattr(fn, "_blk", lambda m, w, *a: blk(m, w + 1, *a))
    _layout(monkeypatch)
    fe._CACHE.clear()
    with pytest.raises(AssertionError):
        propagate(statement(g, box, "binary32", ranges="fast", column="fast"))


def _readback(monkeypatch) -> list:
    """Capture each exact entry's outputs (``apply`` as ``fast_norms`` calls it) with the fast
    output and the fast sources ``ref``, to compare coefficient by coefficient."""
    got: list = []
    apply0, forms0, row0 = fn.apply, fn._forms, fn.exact_row
    cur: dict = {}

    def forms(w, ctx, *a):
        xs, ref, width = forms0(w, ctx, *a)
        cur["ref"], cur["ctx"] = ref, ctx
        return xs, ref, width

    def apply(ctx, *a):
        ys = apply0(ctx, *a)
        cur["ys"] = ys
        return ys

    def row(w, *a):
        S0 = len(w.L)
        v = row0(w, *a)
        got.append((cur["ys"], cur["ref"], len(cur["ctx"].loc), S0, v, w))
        return v

    monkeypatch.setattr(fn, "_forms", forms)
    monkeypatch.setattr(fn, "apply", apply)
    monkeypatch.setattr(fe, "exact_row", row)
    return got


def _dense(C: dict, m: int, n: int) -> np.ndarray:
    D = np.zeros((m, n))
    for k, X in C.items():
        if isinstance(X, np.ndarray):
            D[:, k:k + X.shape[1]] += X
        else:
            np.add.at(D, (X.r, k + X.c), X.v)
    return D


@pytest.mark.parametrize("name", sorted(READ))
def test_readback_coefficients_are_the_entrys(name, monkeypatch):
    """The read-back form, over the fast sources, is the exact entry's: coefficient c / 2^F of
    exact source s at fast source ref[s] (s < N) or S0 + s - N (its new ones), within 2^-52 |c|
    (the float reading, charged 2U|k|L), and nothing else but the make's identity block."""
    g, box = READ[name]()
    got = _readback(monkeypatch)
    fe._CACHE.clear()
    propagate(statement(g, box, "binary32", ranges="fast", column="fast"))
    assert got
    for ys, ref, nloc, S0, v, w in got:
        N = len(ref)
        m = len(ys)
        want = np.zeros((m, S0 + nloc - N))
        for i, y in enumerate(ys):
            for s, c in y.c.items():
                want[i, ref[s] if s < N else S0 + s - N] = float(Q(c, 1 << errorctx.F))
        D = _dense(v.C, m, len(w.L) if len(w.L) >= want.shape[1] else want.shape[1])
        assert np.all(np.abs(D[:, :want.shape[1]] - want) <= 2.0 ** -52 * np.abs(want))
        rest = D[:, want.shape[1]:]  # (the make's new sources: each element's charge, weight 1)
        assert set(np.unique(rest)) <= {0.0, 1.0}


@pytest.mark.parametrize("name", sorted(GRAPHS) + ["sparse"])
def test_fast_at_least_exact_node_by_node(name):
    """Both columns on one statement: every fast step at least the exact one (``both_columns``),
    and not absurdly above it (the read-back loses only its charges)."""
    g, box = READ[name]()
    fast, exact = both_columns(g, box, "binary32")
    ratios = [float(a / b) for sf, se in zip(fast, exact) for a, b in zip(sf, se) if b]
    assert max(ratios) < 1e3


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(DT))
@pytest.mark.parametrize("name", sorted(GRAPHS) + ["sparse"])
def test_epsilon_above_searched_runs(name, fmt):
    """The fast certificate is accepted and its ε is above an error-maximising search's float
    runs plus the float64 reference's certified error (its binary64 fast certificate)."""
    g, box = READ[name]()
    covers_searched_runs(g, box, fmt, DT[fmt], n=200, rounds=4)


def test_huge_coefficient_refused_not_accepted():
    """A form coefficient of 1e300 (a tiny input scaled up, binary64): W = k 2^F is past float64,
    so the read-back refuses (a crash or ``Rejected``); the checker never accepts."""
    c = {"B": np.array([1e300]), "V": np.ones((2, 1))}
    g = Graph([Value("x", (1, 2), "float64")], c,
              [Node("mul", ["x", "B"], "h", {}), Node("softmax", ["h"], "s", {"axis": -1}),
               Node("matmul", ["s", "V"], "y", {})], ["y"]).check()
    box = [(Q(1, 10**300), Q(2, 10**300))] * 2
    st = statement(g, box, "binary64", input_exact=False, ranges="fast", column="fast")
    with pytest.raises(Rejected, match="2\\^960"):
        propagate(st)


@pytest.mark.parametrize("mode", ["rup", "rdn", "rtz"])
@pytest.mark.parametrize("name", ["conv", "residual", "maxpool"])
def test_directed_modes_fast_at_least_exact(name, mode):
    """In a directed rounding mode (u = 2^-p, the kernels' own ulps) the read-back still makes
    every fast step at least the exact column's on the same statement."""
    g, box = GRAPHS[name]()
    st = statement(g, box, "binary16", mode=mode, ranges="fast", column="exact")
    exact = propagate(st)
    fast = propagate({**st, "column": "fast"})
    for sf, se in zip(fast, exact):
        assert all(a >= b * (1 - NOISE) for a, b in zip(sf, se))


def test_softmax_row_all_masked_refused():
    """A softmax row every entry of which is -inf (the float run's 0/0 = NaN) is refused by both
    columns, not read back."""
    c = {"M": np.array([[True, True, True], [False, True, False]]), "ninf": np.array([-np.inf], np.float32)}
    g = Graph([Value("x", (2, 3), "float32")], c,
              [Node("where", ["M", "ninf", "x"], "w", {}), Node("softmax", ["w"], "y", {"axis": -1})],
              ["y"]).check()
    for column in ("fast", "exact"):
        with pytest.raises(ValueError, match="every entry -inf"):
            propagate(statement(g, [(Q(-1), Q(1))] * 6, "binary32", ranges="fast", column=column))
