"""The fast bound engine past float64's range (h-overflow): ``fast_engine.ibp_clip`` keeps each
end of an argument row on its own, and the monotone fast rows take an interval with an infinite
end (``FastRow.usable_interval`` / ``_end``: the function's limit there, or no bound). So a
softmax whose scores differ by more than exp's binary64 range (1 + sum of exps: [>= 1, inf] in
float64) feeds a constant matmul with a fast epsilon (the column refused it before). Each
epsilon is checked against sampled binary32 runs; mutations are rejected in fast mode. Also the
exact column's where of an element that is already -inf (a mask applied twice), which raised
AttributeError (reported as a rejection)."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest
from fast_column import both_columns, covers_float_runs, rejected, shrunk_epsilon, worst_ratio

from torchlean.certificates import check
from torchlean.certificates import engine as exact_engine
from torchlean.certificates.bound_graph import arg_rows
from torchlean.certificates.errorbound import propagate
from torchlean.certificates.fast_engine import ibp_clip
from torchlean.certificates.fast_functions import FAST, TINY
from torchlean.certificates.lower import lower
from torchlean.floats.errorbound import bound_certificate, epsilons, statement
from torchlean.spec.graph import Graph, Node, Value

Q = Fraction
INF = np.inf


def _scores(W: np.ndarray, S: np.ndarray, V: np.ndarray) -> Graph:
    """x (1, 4) -> x W + S (1, 4) -> softmax -> matmul V (4, 2)."""
    c = {"W": W.astype(np.float32), "S": S.astype(np.float32), "V": V.astype(np.float32)}
    return Graph([Value("x", (1, 4), "float32")], c,
                 [Node("matmul", ["x", "W"], "h0", {}), Node("add", ["h0", "S"], "h", {}),
                  Node("softmax", ["h"], "p", {"axis": -1}), Node("matmul", ["p", "V"], "y", {})],
                 ["y"]).check()


def _past_exp() -> tuple[Graph, list]:
    """Scores 600 s, -600 s, 0, 300 s + 5 for s = sum x in [-4, 4]: differences up to 4,800,
    e^4800 far past binary64; V random."""
    rng = np.random.default_rng(3)
    W = np.array([[600.0, -600.0, 0.0, 300.0]] * 4)
    return _scores(W, np.array([[0.0, 0.0, 0.0, 5.0]]), rng.normal(0, 1, (4, 2))), [(Q(-1), Q(1))] * 4


def test_softmax_past_exp_into_a_matmul_gets_a_fast_epsilon():
    """The fast column certifies it (before: "p: an unbounded range", so the default fell back
    to the exact column), every step at least the exact column's and within 1% of it, its epsilon
    covers sampled float32 runs, and a shrunk epsilon / a halved softmax or output step is
    rejected in fast mode."""
    g, box = _past_exp()
    cert = bound_certificate(g, box, "binary32", ranges="fast", column="fast")
    assert cert["statement"]["column"] == "fast" and check(cert).ok
    fast, exact = both_columns(g, box, "binary32")  # (asserts fast >= exact on every step)
    assert worst_ratio(fast, exact) < 1.01
    ee = bound_certificate(g, box, "binary32", ranges="fast", column="exact")
    ef, ex = (np.array([float(e) for e in epsilons(c)]) for c in (cert, ee))
    assert (ef >= ex * (1 - 1e-12)).all() and (ef <= ex * 1.01).all(), (ef, ex)
    covers_float_runs(g, box, "binary32", np.float32, n=300, seed=1)
    rejected(shrunk_epsilon(cert, Q(99, 100)), "epsilon")
    for op in ("softmax", "matmul"):
        k = max(i for i, n in enumerate(cert["statement"]["graph"]["nodes"]) if n["op"] == op)
        c = {**cert, "steps": [list(s) for s in cert["steps"]]}
        j = max(range(len(c["steps"][k])), key=lambda i: Q(c["steps"][k][i]))
        c["steps"][k][j] = str(Q(c["steps"][k][j]) / 2)
        rejected(c, f"node {k} element {j}")


def _far_below() -> tuple[Graph, list]:
    """Scores 0.5 s - 2000, -s, 0, s + 1 (s = sum x in [-4, 4]): the first entry is 1,900+ below
    the others on the whole box (its output ~e^-1900: 0 in float32), the others mixed."""
    rng = np.random.default_rng(4)
    W = np.array([[0.5, -1.0, 0.0, 1.0]] * 4)
    return _scores(W, np.array([[-2000.0, 0.0, 0.0, 1.0]]), rng.normal(0, 1, (4, 2))), [(Q(-1), Q(1))] * 4


def test_softmax_far_below_every_other_entry():
    """An entry 1,900+ below another on the whole box: its sum's exact lower end is past 2^1000,
    clipped to 2^1000 (before: dropped, and the fast column refused); the fast epsilon matches
    the exact column's and covers float32 runs."""
    g, box = _far_below()
    fast, exact = both_columns(g, box, "binary32")
    assert worst_ratio(fast, exact) < 1.01
    covers_float_runs(g, box, "binary32", np.float32, n=200, seed=2)


def _recip_args(g: Graph, box: list) -> tuple[list, dict, list]:
    """The bound graph's reciprocal nodes, ``ibp_clip``'s rows and the exact IBP's rows of them."""
    bg = lower(g.to_dict(), {}, wide=True)
    ks = [k for k, n in enumerate(bg.nodes) if n.kind == "fn" and n.fn == "reciprocal"]
    ex = exact_engine.forward(bg, [a for a, _ in box], [b for _, b in box], "ibp")
    return ks, ibp_clip(bg, box), [arg_rows(bg.nodes[k], ex.arg[k]) for k in ks]


def test_ibp_clip_keeps_the_finite_end():
    """Softmax's 1 + sum of exps past 2^1000 above: the clip keeps its exact lower end (>= 1,
    rounded down, within 1e-15) and leaves the upper one unbounded (before: both dropped)."""
    g, box = _past_exp()
    ks, clip, exact = _recip_args(g, box)
    assert ks
    for k, ea in zip(ks, exact):
        lo, hi = clip[k]
        for j, (a, b) in enumerate(ea):
            assert b > Q(2) ** 1000 and hi[0, j] == INF
            assert 1 <= a < Q(2) ** 1000 and Q(lo[0, j]) <= a and lo[0, j] >= float(a) * (1 - 1e-15)


def test_ibp_clip_caps_an_end_past_the_top():
    """A lower end past 2^1000 (an entry 1,900+ below another: e^1900 in the sum) is clipped to
    2^1000, a valid weaker bound (before: none)."""
    g, box = _far_below()
    ks, clip, exact = _recip_args(g, box)
    far = [(k, j) for k, ea in zip(ks, exact) for j, (a, _) in enumerate(ea) if a > Q(2) ** 1000]
    assert far
    for k, j in far:
        assert clip[k][0][0, j] == 2.0**1000 and clip[k][1][0, j] == INF


# (name, l, u, attrs, the enclosure's ends in the reals): f over [l, u], an end infinite
UNBOUNDED = [
    ("reciprocal", 1.0, INF, {}, (0, 1)), ("reciprocal", -INF, -2.0, {}, (-0.5, 0)),
    ("exp", -INF, 0.0, {}, (0, 1)), ("tanh", -INF, INF, {}, (-1, 1)), ("sigmoid", -INF, 3.0, {}, (0, None)),
    ("erf", -2.0, INF, {}, (None, 1)), ("rsqrt", 4.0, INF, {}, (0, 0.5)), ("log", 1.0, INF, {}, (0, INF)),
    ("sqrt", 4.0, INF, {}, (2, INF)), ("softplus", -INF, 0.0, {}, (0, None)),
    ("pow", -INF, 2.0, {"exponent": 3}, (-INF, 8)), ("leaky_relu", -INF, 1.0, {}, (-INF, 1)),
]
MP = {"reciprocal": lambda x: 1 / x, "exp": mpmath.exp, "tanh": mpmath.tanh, "erf": mpmath.erf,
      "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)), "rsqrt": lambda x: 1 / mpmath.sqrt(x),
      "log": mpmath.log, "sqrt": mpmath.sqrt, "softplus": lambda x: mpmath.log(1 + mpmath.exp(x)),
      "pow": lambda x: x**3, "leaky_relu": lambda x: x if x > 0 else x / 100}


@pytest.mark.parametrize("name,l,u,attrs,ends", UNBOUNDED, ids=[f"{c[0]}[{c[1]},{c[2]}]" for c in UNBOUNDED])
def test_monotone_row_with_an_infinite_end(name, l, u, attrs, ends):
    """``interval`` on [l, u] with an infinite end: the limit there (or no bound, where it is
    infinite or not tabled), the finite end's value on the other side: it encloses mpmath's f at
    points out to +-1e300, and is tight (within 1e-9 of the expected ends; an expected None is
    f at the finite end). The lines still refuse such an interval (``usable``)."""
    mpmath.mp.dps = 40
    row = FAST[name]
    assert row.usable_interval(l, u, **attrs) and not row.usable(l, u, **attrs)
    lo, hi = (float(v) for v in row.interval(l, u, **attrs))
    fin = l if np.isfinite(l) else u
    pts = [fin] + [fin + s * d for d in (1e-3, 1.0, 10.0, 1e3, 1e30, 1e300) for s in (-1, 1)]
    for x in [p for p in pts if l <= p <= u and np.isfinite(p)]:
        fx = MP[name](mpmath.mpf(x))
        assert lo <= fx <= hi, (x, lo, float(fx), hi)
    exp_lo, exp_hi = (float(MP[name](mpmath.mpf(fin))) if e is None else e for e in ends)
    for got, want in ((lo, exp_lo), (hi, exp_hi)):
        assert got == want if not np.isfinite(want) else abs(got - want) <= 1e-9 * max(1, abs(want))


@pytest.mark.parametrize("name,l,u", [("exp", 0.0, INF), ("reciprocal", np.nan, 2.0), ("tanh", 0.0, np.nan),
                                      ("gelu", -INF, 1.0), ("silu", 0.0, INF), ("square", 1.0, INF),
                                      ("log", 0.0, INF), ("reciprocal", -INF, INF), ("tanh", INF, INF)])
def test_refused_intervals(name, l, u):
    """Not taken: exp's EXP_MAX guard (u = inf), a NaN end, rows that are not monotone, the
    domain (log at 0, reciprocal across 0), an empty [inf, inf]."""
    assert not FAST[name].usable_interval(l, u)


def test_reciprocal_on_one_to_inf_in_the_engine():
    """The fast engine's forward pass (CROWN, clipped by ``ibp_clip``) on softmax(x), x in
    [-800, 800]^2: each 1 + e^(x_j - x_i) is [>= 1, inf] in float64, each output's bounds within
    [-TINY, 1 + 1e-10] (before: unbounded)."""
    from torchlean.certificates.fast_engine import boxes, compiled, forward
    g = Graph([Value("x", (1, 2), "float32")], {}, [Node("softmax", ["x"], "p", {"axis": -1})], ["p"]).check()
    bg = lower(g.to_dict(), {}, wide=True)
    box = [(Q(-800), Q(800))] * 2
    lo, hi = boxes([[a for a, _ in box]], [[b for _, b in box]])
    st = forward(compiled(bg), lo, hi, "crown", clip=ibp_clip(bg, box))
    ks = [k for k, n in enumerate(bg.nodes) if n.kind == "fn" and n.fn == "reciprocal"]
    assert ks
    for k in ks:
        assert (st.arg[k][0] >= 1 - 1e-12).all() and (st.arg[k][1] == INF).all()
        assert (-TINY <= st.L[k]).all() and (st.L[k] <= 0).all()
        assert (1 <= st.U[k]).all() and (st.U[k] <= 1 + 1e-10).all()  # (R = 2^-36 outward)


def test_masked_attention_past_exp():
    """Causal attention softmax(mask(x Wq (x Wk)^T)) (x Wv) on a +-1/2 box, Wq, Wk ~ 40 N(0, 1):
    scores past binary64's exp, the softmax output read by a data x data matmul (mul nodes), the
    regime session 25's [0, 1] meet of a softmax's range was for (without it main refused here:
    "p: an unbounded range"). With the meet removed, the per-end clip and the reciprocal's
    infinite end bound it: the fast epsilon is the exact column's (within 1e-9 relative), covers
    float32 runs, and a shrunk one is rejected."""
    rng = np.random.default_rng(0)
    c = {"Wq": (rng.normal(0, 1, (4, 4)) * 40).astype(np.float32),
         "Wk": (rng.normal(0, 1, (4, 4)) * 40).astype(np.float32),
         "Wv": rng.normal(0, 1, (4, 4)).astype(np.float32),
         "M": np.triu(np.ones((3, 3), bool), 1), "ninf": np.array([-np.inf], np.float32)}
    nodes = [Node("matmul", ["x", "Wq"], "q", {}), Node("matmul", ["x", "Wk"], "k", {}),
             Node("transpose", ["k"], "kt", {"axes": (1, 0)}), Node("matmul", ["q", "kt"], "s", {}),
             Node("where", ["M", "ninf", "s"], "sm", {}), Node("softmax", ["sm"], "p", {"axis": -1}),
             Node("matmul", ["x", "Wv"], "v", {}), Node("matmul", ["p", "v"], "y", {})]
    g = Graph([Value("x", (3, 4), "float32")], c, nodes, ["y"]).check()
    x0 = np.round(rng.uniform(-1, 1, 12) * 8) / 8
    box = [(Q(v) - Q(1, 2), Q(v) + Q(1, 2)) for v in x0]
    fast = bound_certificate(g, box, "binary32", ranges="fast", column="fast")
    exact = bound_certificate(g, box, "binary32", ranges="fast", column="exact")
    assert check(fast).ok and check(exact).ok
    ef, ee = (np.array([float(e) for e in epsilons(c)]) for c in (fast, exact))
    assert (ef >= ee * (1 - 1e-12)).all() and (ef <= ee * (1 + 1e-9)).all(), (ef, ee)
    covers_float_runs(g, box, "binary32", np.float32, n=200, seed=4)
    rejected(shrunk_epsilon(fast, Q(99, 100)), "epsilon")


MASK = np.array([[True, False, False, True, False, True], [False, False, True, False, False, False]])
MASK2 = np.array([[True, True, False, False, False, True], [False, False, True, True, False, False]])


def _masked_twice() -> tuple[Graph, list]:
    """A causal-style mask applied twice: the second where reads -inf elements of the first."""
    rng = np.random.default_rng(0)
    c = {"W": rng.normal(0, 1.5, (4, 12)).astype(np.float32),
         "V": rng.normal(0, 1, (6, 2)).astype(np.float32), "M": MASK, "M2": MASK2,
         "ninf": np.array([-np.inf], np.float32)}
    nodes = [Node("matmul", ["x", "W"], "h", {}), Node("tanh", ["h"], "t", {}),
             Node("reshape", ["t"], "r", {"shape": (2, 6)}), Node("where", ["M", "ninf", "r"], "w", {}),
             Node("where", ["M2", "ninf", "w"], "w2", {}),
             Node("softmax", ["w2"], "s", {"axis": -1}), Node("matmul", ["s", "V"], "y", {})]
    box = [(Q(v) - Q(1, 8), Q(v) + Q(1, 8)) for v in [0.25, -0.5, 0.125, 0.75]]
    return Graph([Value("x", (1, 4), "float32")], c, nodes, ["y"]).check(), box


def test_exact_column_where_of_a_masked_element():
    """The exact column on a where whose input holds -inf (before: AttributeError '_NegInf' ...
    numerator, a rejection): a certificate that replays, the masked softmax outputs exactly 0, the
    fast column at least it and within 1e-6 relative, its epsilon above sampled float32 runs, and
    a shrunk exact epsilon rejected."""
    g, box = _masked_twice()
    fast, exact = both_columns(g, box, "binary32")
    assert worst_ratio(fast, exact) < 1 + 1e-6
    k = [n.op for n in g.nodes].index("softmax")
    masked = (MASK | MASK2).ravel()
    assert all((exact[k][j] == 0) == bool(m) for j, m in enumerate(masked))
    cert = bound_certificate(g, box, "binary32", ranges="fast", column="exact")
    assert check(cert).ok
    rejected(shrunk_epsilon(cert, Q(99, 100)), "epsilon")
    covers_float_runs(g, box, "binary32", np.float32, n=200, seed=3)
    assert propagate(statement(g, box, "binary32", ranges="fast", column="exact"))[-1] == exact[-1]
