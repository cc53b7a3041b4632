"""The fast rounding-error column's rows for layer_norm, softmax and log_softmax, and -inf mask
constants (h-fastln, ``certificates/fast_norms.py``: the exact column's entry run on each input
element's error as one source, its forms read back into the fast layout). Each random graph: both
columns on one statement (every fast step at least the exact one, ``fast_column.both_columns``),
the fast epsilon above sampled binary32 / binary16 / bfloat16 runs (against the float64 run, plus
its own certified error), and mutations (a shrunk epsilon, a wrong step on the normalising node, a
wrong format) rejected in fast mode. Then a causal-style -inf mask, and the zoo transformer."""

from __future__ import annotations

import copy
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from fast_column import both_columns, covers_float_runs, rejected, shrunk_epsilon, worst_ratio

from torchlean.certificates import check
from torchlean.certificates import fast_errors as fe
from torchlean.certificates.core import digest
from torchlean.certificates.rounding import get_format
from torchlean.floats.errorbound import bound_certificate, epsilons, statement
from torchlean.spec.graph import Graph, Node, Value

Q = Fraction
FLOATS = [("binary32", np.float32), ("binary16", np.float16), ("bfloat16", ml_dtypes.bfloat16)]
MASK = np.array([[True, False, False, True, False, True], [False, False, True, False, False, False]])


def _graph(rng: np.random.Generator, op: str, n: int) -> Graph:
    """x (1, 4) -> x W + S (1, 2n) -> reshape (2, n) -> ``op`` over the last axis (layer_norm:
    random float32 weight and bias) -> matmul V (n, 2). Random weights, scale per graph."""
    scale = float(rng.choice([0.5, 2.0, 6.0]))
    shift = float(rng.choice([0.0, 3.0]))
    c = {"W": rng.normal(0, scale, (4, 2 * n)), "S": rng.normal(shift, 0.3, (1, 2 * n)),
         "V": rng.normal(0, 0.8, (n, 2))}
    nodes = [Node("matmul", ["x", "W"], "h", {}), Node("add", ["h", "S"], "h2", {}),
             Node("reshape", ["h2"], "r", {"shape": (2, n)})]
    if op == "layer_norm":
        c["lw"], c["lb"] = rng.normal(1, 0.3, n), rng.normal(0, 0.3, n)
        eps = float(rng.choice([1e-5, 1e-3]))
        nodes.append(Node("layer_norm", ["r", "lw", "lb"], "z", {"normalized_ndim": 1, "eps": eps}))
    else:
        nodes.append(Node(op, ["r"], "z", {"axis": -1}))
    nodes.append(Node("matmul", ["z", "V"], "y", {}))
    c = {k: v.astype(np.float32) for k, v in c.items()}
    return Graph([Value("x", (1, 4), "float32")], c, nodes, ["y"]).check()


def _masked(rng: np.random.Generator, op: str = "softmax") -> Graph:
    """x (1, 4) -> tanh(x W) (2, 6) -> where(MASK, -inf, .) -> softmax -> matmul V: a causal-style
    mask as ``MultiheadAttention`` traces it (a bool condition, a -inf scalar fill)."""
    c = {"W": rng.normal(0, 1.5, (4, 12)).astype(np.float32),
         "V": rng.normal(0, 1, (6, 2)).astype(np.float32), "M": MASK, "ninf": np.array([-np.inf], np.float32)}
    nodes = [Node("matmul", ["x", "W"], "h", {}), Node("tanh", ["h"], "t", {}),
             Node("reshape", ["t"], "r", {"shape": (2, 6)}), Node("where", ["M", "ninf", "r"], "w", {}),
             Node(op, ["w"], "s", {"axis": -1}), Node("matmul", ["s", "V"], "y", {})]
    return Graph([Value("x", (1, 4), "float32")], c, nodes, ["y"]).check()


def _box(rng: np.random.Generator, r: Fraction) -> list[tuple[Fraction, Fraction]]:
    x0 = np.round(rng.uniform(-1, 1, 4) * 16) / 16  # (dyadic: a value of every format tested)
    return [(Q(v) - r, Q(v) + r) for v in x0]


CASES = [(op, seed) for op in ("layer_norm", "softmax", "log_softmax") for seed in range(3)]


def _case(op: str, seed: int) -> tuple[Graph, list]:
    rng = np.random.default_rng(1000 * len(op) + seed)
    return _graph(rng, op, int(rng.integers(3, 8))), _box(rng, [Q(1, 64), Q(1, 4)][seed % 2])


def test_supported():
    g, _ = _case("layer_norm", 0)
    assert fe.supported(g.to_dict()) is None
    assert fe.supported(_masked(np.random.default_rng(0)).to_dict()) is None
    assert {"layer_norm", "softmax", "log_softmax"} <= set(fe.ROWS)
    # the default column on fast ranges is now the fast one for these graphs
    assert statement(g, _case("layer_norm", 0)[1], "binary32", ranges="fast")["column"] == "fast"


@pytest.mark.parametrize("op,seed", CASES)
@pytest.mark.parametrize("fmt", ["binary32", "binary16", "bfloat16"])
def test_fast_no_tighter_than_exact(op, seed, fmt):
    """The same entry in both columns: fast >= exact on every step (the fast inputs' errors and
    ranges are the exact ones' or wider), and not much looser."""
    g, box = _case(op, seed)
    fast, exact = both_columns(g, box, fmt)
    assert worst_ratio(fast, exact) < 4
    if fmt == "binary32":  # (where the rows before it agree: the same entry, the same bound; in
        # binary16/bfloat16 the first matmul's fast "dot" row, without the magnitude forms, is
        # up to ~1.4x looser, and the normalising node follows its input)
        k = [n.op for n in g.nodes].index(op)
        assert worst_ratio([fast[k]], [exact[k]]) < 1.05


@pytest.mark.parametrize("op,seed", CASES)
@pytest.mark.parametrize("fmt,dtype", FLOATS)
def test_covers_float_runs(op, seed, fmt, dtype):
    g, box = _case(op, seed)
    covers_float_runs(g, box, fmt, dtype, n=300, seed=seed)


@pytest.mark.parametrize("op", ["layer_norm", "softmax", "log_softmax"])
def test_mutations_rejected(op):
    """Fast mode: a shrunk epsilon, a step of the normalising node below its bound, and the
    certificate's claims replayed in a wider format are each rejected."""
    g, box = _case(op, 1)
    cert = bound_certificate(g, box, "binary32", column="fast")
    assert cert["statement"]["column"] == "fast" and check(cert).ok
    rejected(shrunk_epsilon(cert, Q(9, 10)), "epsilon")
    k = [n["op"] for n in cert["statement"]["graph"]["nodes"]].index(op)
    c = copy.deepcopy(cert)
    j = max(range(len(c["steps"][k])), key=lambda i: Q(c["steps"][k][i]))
    c["steps"][k][j] = str(Q(c["steps"][k][j]) * Q(1, 2))
    rejected(c, f"node {k} element {j}")
    c = copy.deepcopy(cert)
    c["statement"]["format"] = get_format("bfloat16").to_dict()
    c["digest"] = digest(c["statement"])
    rejected(c, "claimed error")


@pytest.mark.parametrize("fmt,dtype", FLOATS)
def test_masked_softmax(fmt, dtype):
    """A -inf mask: fast >= exact, the masked outputs exactly 0 (no rounding), the fast epsilon
    above sampled float runs; a format without infinities refused in both columns."""
    rng = np.random.default_rng(11)
    g, box = _masked(rng), _box(rng, Q(1, 8))
    fast, exact = both_columns(g, box, fmt)
    assert worst_ratio(fast, exact) < 4
    k = [n.op for n in g.nodes].index("softmax")
    # (exactly 0 in the exact column; the fast one's outward sums add 2^-1000 to every bound)
    assert all(exact[k][j] == 0 and fast[k][j] < 1e-290 for j in np.flatnonzero(MASK.ravel()))
    assert all(fast[k][j] > 0 for j in np.flatnonzero(~MASK.ravel()))
    covers_float_runs(g, box, fmt, dtype, n=300, seed=2)


def test_minus_inf_needs_infinities():
    """float8_e4m3fn has no infinities: -inf has no value there, refused in both columns."""
    from torchlean.certificates.errorbound import propagate

    rng = np.random.default_rng(11)
    g, box = _masked(rng), _box(rng, Q(1, 8))
    st = statement(g, box, "float8_e4m3fn", ranges="fast", column="exact")
    for column in ("exact", "fast"):
        with pytest.raises(Exception, match="-inf has no value"):
            propagate({**st, "column": column})


def test_masked_log_softmax_refused():
    """-inf into log_softmax has no row in either column (``lower``: log(0))."""
    g = _masked(np.random.default_rng(11), "log_softmax")
    assert fe.supported(g.to_dict()) is None  # (the node has a row; its use is refused below)
    st = statement(g, _box(np.random.default_rng(1), Q(1, 8)), "binary32", ranges="fast", column="exact")
    from torchlean.certificates.errorbound import propagate

    with pytest.raises(Exception, match="-inf"):
        propagate({**st, "column": "fast"})


def _narrow_transformer(layers: int = 1):
    import torchlean as tl
    from torchlean.runtime.tensor import tensor
    from torchlean.runtime.trace import trace
    from torchlean.zoo import transformer

    tl.manual_seed(0)
    gpt = transformer.CharGPT(width=16, layers=layers, heads=2)
    gpt.eval()
    x = gpt.tok(tl.tensor(np.arange(3)[None])).numpy().astype(np.float32)
    g = trace(transformer.AfterLookup(gpt), tensor(x))
    box = [(Q(float(v)) - Q(1, 100), Q(float(v)) + Q(1, 100)) for v in x.ravel()]
    return g, box


def test_transformer_end_to_end():
    """The zoo's char GPT (narrow: width 16, one block, 2 heads, causal mask) after its lookup on
    ±0.01 around three token rows: every node has a fast row, the default column on fast ranges is
    the fast one, its certificate replays and covers sampled float32 runs, fast >= exact on every
    node, and a shrunk epsilon is rejected."""
    g, box = _narrow_transformer()
    assert fe.supported(g.to_dict()) is None
    fast, exact = both_columns(g, box, "binary32")
    assert worst_ratio(fast, exact) < 1.25  # (1.12: the data x data matmuls' fast row)
    covers_float_runs(g, box, "binary32", np.float32, n=150, seed=0)
    cert = bound_certificate(g, box, "binary32", ranges="fast")
    assert cert["statement"]["column"] == "fast"
    eps = np.array([float(e) for e in epsilons(cert)])
    assert eps.max() < 1e-3, eps.max()  # informative: the logits are O(1)
    rejected(shrunk_epsilon(cert, Q(99, 100)), "epsilon")


def test_default_falls_back_to_exact_where_fast_refuses():
    """Log-softmax scores whose differences pass binary64's exp on the box: log(1 + sum of exps)
    has no finite upper end in float64 (the exact IBP's is past 2^1000 too), so the fast
    engine's range of its output is unbounded below, an explicit fast column is refused and the
    default one falls back to the exact column, whose certificate replays. (A softmax there has
    a fast epsilon now: 1/x on [1, inf] is in [0, 1], ``test_fast_overflow.py``.)"""
    from torchlean.certificates.core import Rejected

    W = np.array([[800.0, -800.0, 0.0, 400.0]] * 4, np.float32)
    g = Graph([Value("x", (1, 4), "float32")], {"W": W, "V": np.ones((4, 2), np.float32)},
              [Node("matmul", ["x", "W"], "h", {}), Node("log_softmax", ["h"], "p", {"axis": -1}),
               Node("matmul", ["p", "V"], "y", {})], ["y"]).check()
    box = [(Q(-1), Q(1))] * 4
    with pytest.raises(Rejected):
        bound_certificate(g, box, "binary32", ranges="fast", column="fast")
    cert = bound_certificate(g, box, "binary32", ranges="fast")
    assert "column" not in cert["statement"] and cert["statement"]["ranges"] == "fast"
    assert check(cert).ok


def test_a_value_named_like_the_variance_key():
    """Layer norm's per-row var + eps ranges are keyed apart from every IR name: a value named
    "z#var" (a string key the first version used for them) keeps its own range and bound."""
    rng = np.random.default_rng(5)
    c = {"W": rng.normal(0, 1, (4, 6)).astype(np.float32), "lw": np.ones(6, np.float32),
         "lb": np.zeros(6, np.float32), "K": np.full((1, 6), 1000.0, np.float32)}
    g = Graph([Value("x", (1, 4), "float32")], c,
              [Node("matmul", ["x", "W"], "h", {}), Node("layer_norm", ["h", "lw", "lb"], "z", {"eps": 1e-5}),
               Node("add", ["z", "K"], "z#var", {}), Node("sub", ["z#var", "K"], "y", {})], ["y"]).check()
    box = _box(rng, Q(1, 8))
    fast, exact = both_columns(g, box, "binary32")
    assert worst_ratio(fast, exact) < 1.05
    covers_float_runs(g, box, "binary32", np.float32, n=200, seed=0)


def test_softmax_ranges_met_with_the_unit_interval():
    """Softmax scores whose differences pass binary64's exp (here up to 1,600): exp overflows
    float64, but each 1 + sum of exps keeps its exact lower end >= 1 (``ibp_clip``, each end on
    its own) and 1/x on [1, inf] is in [0, 1] (``FastRow._end``), so the fast column does not
    refuse (session 25 met the value's range with [0, 1] instead; h-overflow removed that, this
    test unchanged); its epsilon is then the exact column's (within 1e-9 relative), covers
    float32 runs and a shrunk one is rejected. (The trained char GPT's attention reaches such
    scores: its fast certificate is 3x cheaper than the fallback.)"""
    rng = np.random.default_rng(0)
    W = np.array([[100.0, -100.0, 0.0, 50.0]] * 4, np.float32)
    g = Graph([Value("x", (1, 4), "float32")], {"W": W, "W2": rng.normal(0, 1, (4, 4)).astype(np.float32)},
              [Node("matmul", ["x", "W"], "h", {}), Node("softmax", ["h"], "p", {"axis": -1}),
               Node("matmul", ["x", "W2"], "h2", {}), Node("mul", ["p", "h2"], "y", {})], ["y"]).check()
    box = [(Q(-1), Q(1))] * 4
    fast = bound_certificate(g, box, "binary32", ranges="fast", column="fast")
    exact = bound_certificate(g, box, "binary32", ranges="fast", column="exact")
    assert check(fast).ok and check(exact).ok
    ef, ee = (np.array([float(e) for e in epsilons(c)]) for c in (fast, exact))
    assert (ef >= ee * (1 - 1e-12)).all() and (ef <= ee * (1 + 1e-9)).all(), (ef, ee)
    covers_float_runs(g, box, "binary32", np.float32, n=200, seed=0)
    rejected(shrunk_epsilon(fast, Q(99, 100)), "epsilon")
