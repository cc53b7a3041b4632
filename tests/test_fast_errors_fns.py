"""The fast rounding-error column's elementwise function rows (``fast_errors._Walk.fn`` and
``errorkern.kernel``, h-fastfns): exp, log, sqrt, erf, abs, leaky_relu, softplus, silu, gelu (and the older
relu, sigmoid, tanh), each between two random linear maps. The certified epsilon is above the error
of actual numpy float32 and float16 runs at box corners and sampled points; fast >= exact at every
step and within a stated factor of it; both columns refuse the same out-of-domain and overflowing
statements; a certificate with a shrunk step or epsilon is rejected in fast mode."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from fast_column import both_columns, worst_ratio

from torchlean.certificates import check
from torchlean.certificates import fast_errors as fe
from torchlean.certificates.core import Rejected, digest
from torchlean.certificates.enclosures import DomainError
from torchlean.certificates.errorbound import propagate
from torchlean.floats.errorbound import bound_certificate, epsilons, statement
from torchlean.floats.network import run_float
from torchlean.spec.graph import Graph, Node, Value

Q = Fraction
NEW = ("exp", "log", "sqrt", "erf", "abs", "leaky_relu", "softplus", "silu", "gelu")
#: per function: the input box's ends, whether the first map's weights are made positive (log and
#: sqrt need a positive argument), and the node's attrs
CASES = {"exp": (-1, 1, False, {}), "log": (1, 2, True, {}), "sqrt": (1, 2, True, {}),
         "erf": (-1, 1, False, {}), "abs": (-1, 1, False, {}), "leaky_relu": (-1, 1, False, {"slope": 0.1}),
         "softplus": (-2, 2, False, {}), "silu": (-2, 2, False, {}), "gelu": (-2, 2, False, {}),
         "relu": (-1, 1, False, {}), "sigmoid": (-2, 2, False, {}), "tanh": (-1, 1, False, {})}


def _graph(fn: str, seed: int = 0, n: int = 4, h: int = 6) -> tuple[Graph, list[tuple[Q, Q]]]:
    lo, hi, pos, at = CASES[fn]
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((n, h)).astype(np.float32)
    if pos:
        W1 = np.abs(W1) + np.float32(0.1)
    W2 = rng.standard_normal((h, 3)).astype(np.float32)
    g = Graph([Value("x", (1, n), "float32")], {"W1": W1, "W2": W2},
              [Node("matmul", ["x", "W1"], "h"), Node(fn, ["h"], "a", at), Node("matmul", ["a", "W2"], "y")],
              ["y"]).check()
    return g, [(Q(lo), Q(hi))] * n


def _points(box, dtype, n: int, seed: int) -> np.ndarray:
    """Every corner of the box and n uniform points, as values of dtype inside the box."""
    lo = np.array([float(a) for a, _ in box])
    hi = np.array([float(b) for _, b in box])
    k = len(lo)
    corners = np.array([[hi[i] if (c >> i) & 1 else lo[i] for i in range(k)] for c in range(2 ** k)])
    x = np.concatenate([corners, np.random.default_rng(seed).uniform(lo, hi, (n, k))]).astype(dtype)
    return np.clip(x, lo.astype(dtype), hi.astype(dtype))


@pytest.mark.parametrize("fn", sorted(CASES))
@pytest.mark.parametrize("fmt,dtype", [("binary32", np.float32), ("binary16", np.float16)])
def test_fast_epsilon_holds_at_float_runs(fn, fmt, dtype):
    """The fast column takes the graph (no fallback) and its epsilon is above |run(dtype) -
    run(float64)| plus the float64 run's own certified distance to the reals (exact column)."""
    g, box = _graph(fn, seed=3)
    assert fe.supported(statement(g, box)["graph"]) is None
    cert = bound_certificate(g, box, fmt, column="fast")
    v = check(cert)
    assert v.ok, v.reason
    eps = np.array([float(e) for e in epsilons(cert)])
    ref = bound_certificate(g, box, "binary64", ranges="ibp", column="exact")
    assert check(ref).ok
    x = _points(box, dtype, 300, 1)
    with np.errstate(over="ignore", invalid="raise"):  # (sigmoid's exp(-x) may overflow to inf: 1/inf = 0)
        y = run_float(g, x, dtype).astype(np.float64)
    assert np.isfinite(y).all()
    err = np.abs(y - run_float(g, x.astype(np.float64), np.float64))
    assert np.all(err.max(axis=0) > 0)
    own = np.array([float(e) for e in epsilons(ref)])
    assert np.all(err.max(axis=0) + own <= eps), (err.max(axis=0), eps)


#: fast / exact at any step stays below this (fast's looser gelu replay: |x| <= M for each
#: product where the exact column reads the argument's interval; float noise elsewhere)
#: leaky_relu: the fast cast error of its slope 0.1 is u|s| + eta, the exact one |fl(s) - s|)
FACTOR = {"gelu": 1.3, "leaky_relu": 1.05}


@pytest.mark.parametrize("fn", sorted(CASES))
@pytest.mark.parametrize("fmt", ["binary32", "binary16"])
def test_fast_bounds_the_exact_column_per_step(fn, fmt):
    """Same statement (fast ranges) in both columns: at every step and element fast >= exact (to
    float noise, 1e-9) and fast <= FACTOR (default 1.01) x exact."""
    g, box = _graph(fn, seed=5)
    # (constants that are values of the format: else the fast cast error u|w| + eta exceeds the
    # exact |fl(w) - w| of float32 weights in binary16, 1.5x to 3x, as in test_fast_errors_audit2)
    g = Graph(g.inputs, {k: v.astype(np.float16).astype(np.float32) for k, v in g.constants.items()},
              g.nodes, g.outputs).check()
    worst = worst_ratio(*both_columns(g, box, fmt))
    assert worst < FACTOR.get(fn, 1.01), worst


def _refused(g: Graph, box, fmt: str, match: str) -> None:
    """Both columns refuse the statement, with a reason matching ``match``."""
    for column in ("exact", "fast"):
        with pytest.raises((Rejected, DomainError), match=match):
            propagate(statement(g, box, fmt, column=column, ranges="fast"))


def _one(fn: str, at: dict | None = None) -> Graph:
    return Graph([Value("x", (1, 2), "float32")], {"W": np.ones((2, 2), np.float32)},
                 [Node("matmul", ["x", "W"], "h"), Node(fn, ["h"], "y", at or {})], ["y"]).check()


def test_log_and_sqrt_domains_are_refused_as_the_exact_column():
    """log over an argument reaching 0 (or below), sqrt below 0 and at 0 (infinite slope): both
    refuse; just inside (log over [0.5, 2], sqrt over [0.5, 2]) both certify."""
    _refused(_one("log"), [(Q(0), Q(1))] * 2, "binary32", "domain|slope|unbounded")
    _refused(_one("log"), [(Q(-1), Q(1))] * 2, "binary32", "domain|slope|unbounded")
    _refused(_one("sqrt"), [(Q(-1), Q(1))] * 2, "binary32", "domain|slope|unbounded")
    _refused(_one("sqrt"), [(Q(0), Q(1))] * 2, "binary32", "domain|slope|unbounded")
    for fn in ("log", "sqrt"):
        st = statement(_one(fn), [(Q(1, 4), Q(1))] * 2, "binary32", column="fast", ranges="fast")
        assert all(0 < e < 1e-5 for e in propagate(st)[-1])
        assert all(0 < e < 1e-5 for e in propagate({**st, "column": "exact"})[-1])


@pytest.mark.parametrize("fn,lo,hi", [("exp", 10, 12), ("gelu", 40, 60), ("softplus", 65000, 65400),
                                       ("silu", 65000, 65400)])
def test_overflow_is_refused_as_the_exact_column(fn, lo, hi):
    """float16 (max 65504): exp(12) and gelu's x * x * x at 60 overflow; softplus and silu of 65400
    are finite but |f| (1 + 2k un) (the kernel's error allowance) is not: both columns refuse; a
    little lower both certify."""
    g = Graph([Value("x", (1, 2), "float32")], {}, [Node(fn, ["x"], "y")], ["y"]).check()
    with np.errstate(over="ignore"):
        big = np.float16(hi) ** 3 if fn == "gelu" else np.exp(np.float16(hi))
    assert fn not in ("exp", "gelu") or np.isinf(big)
    _refused(g, [(Q(lo), Q(hi))] * 2, "binary16", "overflow")
    for column in ("exact", "fast"):
        st = statement(g, [(Q(lo) / 2, Q(hi) / 2)] * 2, "binary16", column=column, ranges="fast")
        assert all(e > 0 for e in propagate(st)[-1])


@pytest.mark.parametrize("fn", NEW)
def test_shrunk_step_or_epsilon_is_rejected_in_fast_mode(fn):
    """A valid fast certificate with one element of the function's step (or an epsilon) cut to 99%
    of its value is rejected: the checker recomputes the steps, never reads them."""
    g, box = _graph(fn, seed=7)
    cert = bound_certificate(g, box, "binary32", column="fast")
    assert check(cert).ok
    bad = {**cert, "steps": [list(s) for s in cert["steps"]]}
    bad["steps"][1][0] = str(Q(bad["steps"][1][0]) * Q(99, 100))
    assert not check(bad).ok
    st = dict(cert["statement"])
    st["epsilon"] = [str(Q(st["epsilon"][0]) * Q(99, 100))] + list(st["epsilon"][1:])
    bad = {**cert, "statement": st, "digest": digest(st)}
    v = check(bad)
    assert not v.ok, v.reason


@pytest.mark.parametrize("fn", sorted(set(CASES) - {"relu"}))
def test_slope_ranges_enclose_the_exact_ones(fn):
    """``_Walk.slopes`` over random hulls (and hulls across silu/gelu's "unknown" brackets, where
    +-lip joins) encloses ``errorctx.slope_range``'s exact [min f', max f'] on the same hull."""
    from torchlean.certificates.errorctx import slope_range
    from torchlean.certificates.functions import FUNCTIONS

    lo, hi, _, at = CASES[fn]
    rng = np.random.default_rng(11)
    p = np.sort(rng.uniform(lo - 1 if lo > 0 else 2 * lo, 2 * hi, (40, 2)), axis=1)
    if lo > 0:  # (log, sqrt: inside the domain)
        p = np.abs(p) + 0.01
    if lo <= 0:  # (hulls across silu's and gelu's brackets, near -+2.4 and -+1.42)
        p = np.concatenate([p, [[-2.5, -2.3], [-1.5, -1.3], [1.3, 1.5], [2.3, 2.5], [-3.0, 3.0]]])
    ps = p
    ps = np.sort(ps, axis=1)
    w = fe._Walk(statement(_graph(fn)[0], [(Q(-1), Q(1))] * 4, "binary32", column="fast", ranges="fast"))
    a, b = w.slopes(fn, ps[:, 0].copy(), ps[:, 1].copy(), at)
    for (x, y), sa, sb in zip(ps, a, b):
        ea, eb = slope_range(FUNCTIONS[fn], Q(float(x)), Q(float(y)), at)
        assert Q(float(sa)) <= ea and Q(float(sb)) >= eb, (fn, x, y, sa, float(ea), sb, float(eb))
