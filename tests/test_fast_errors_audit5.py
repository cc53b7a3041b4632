"""Audit of the fast rounding-error column's h-fastln rows (layer_norm, softmax, log_softmax read
back from the exact column's entry, ``fast_norms``; -inf mask placeholders; the exact-IBP clip):
each attack a test. Those that found a hole fail on h-fastln's code (f7cca4e) and pass on the fix;
the others assert the checker's right behaviour (ε above adversarially searched float runs, a
forged certificate rejected, a -inf refused where it has no value).

Hole 1 (``test_value_named_like_a_variance``): the fast column kept each layer_norm row's
var + eps forms under the key ``name + "#var"`` in the same dict as the IR's values, and IR names
are free strings: a node named "z#var" next to a layer_norm "z" got z's variance ranges (in
[1e-5, 1]) instead of its own (~1000), so its rounding error was charged on magnitude 1: ε 1.2e-7
accepted where a float32 run errs by 3.05e-5. The key is now the tuple (name, "var").
"""

from __future__ import annotations

import copy
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from fast_column import both_columns, covers_searched_runs, rejected

from torchlean.certificates import check
from torchlean.certificates.core import Rejected, digest
from torchlean.certificates.errorbound import model_id, propagate
from torchlean.floats.errorbound import (
    bound_certificate,
    epsilons,
    observed_error,
    run_float,
    statement,
)
from torchlean.spec.graph import Graph, Node, Value

Q = Fraction


def _covers(g: Graph, box: list, fmt: str, dtype, n: int = 300, seed: int = 0) -> list[float]:
    """A fast-column certificate is accepted and its ε covers ``n`` sampled ``dtype`` runs (plus
    the float64 reference's certified error); returns ε."""
    cert = bound_certificate(g, box, fmt, column="fast")
    assert cert["statement"]["column"] == "fast"
    v = check(cert)
    assert v.ok, v.reason
    eps = np.array([float(e) for e in epsilons(cert)])
    obs = observed_error(g, box, n=n, dtype=dtype, seed=seed)
    assert np.all(obs.max_error + obs.reference_error <= eps), (obs.max_error, eps)
    return eps.tolist()


def test_value_named_like_a_variance():
    """Hole 1: a node named "z#var" (any string is an IR name) next to layer_norm "z": before the
    fix it read z's variance ranges, ε 1.19e-7 against a float32 error of 3.05e-5."""
    c = {"lw": np.ones(2, np.float32), "lb": np.zeros(2, np.float32),
         "W": np.array([[1, 0], [0, 1], [0, 0], [0, 0]], np.float32),
         "S": np.array([[1000.0, 1000.0]], np.float32)}
    nodes = [Node("reshape", ["x"], "r", {"shape": (2, 2)}),
             Node("layer_norm", ["r", "lw", "lb"], "z", {"normalized_ndim": 1, "eps": 1e-5}),
             Node("matmul", ["x", "W"], "h", {}), Node("add", ["h", "S"], "z#var", {})]
    g = Graph([Value("x", (1, 4), "float32")], c, nodes, ["z#var"]).check()
    box = [(Q(-1), Q(1))] * 4
    # one float32 run by hand: x0 = 2^-20 is lost in 1000 + x0 (ulp(1000) = 2^-14)
    x = np.array([[2.0 ** -20, 0, 0, 0]], np.float32)
    err = abs(Q(float(run_float(g, x, np.float32).ravel()[0])) - (Q(1000) + Q(2) ** -20))
    eps = _covers(g, box, "binary32", np.float32, n=200)
    assert err <= Q(eps[0]) and err == Q(2) ** -20


def _ln_run(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """The runtime's layer_norm kernel (``rules_nn.layer_norm``) in x's dtype, over the last axis."""
    from torchlean.runtime.rules_nn import _ln_stats

    _, _, xc, rstd = _ln_stats(np, x, 1, eps)
    return xc * rstd * w + b


@pytest.mark.parametrize("column", ["fast", "exact"])
def test_layer_norm_weight_not_of_the_normalised_shape(column):
    """Hole 2 (both columns, the shared entry): a forged IR whose layer_norm weight is (2, n) on x
    (2, n): ``lower`` read it per row (w[r, i], as the runtime broadcasts it) but ``_layer_norm``
    as w[i] for every row, so row 1 (weight 1000) was certified with row 0's 1e-3: ε 2.7e-7,
    a float32 run errs by 6e-4. ``lower`` now requires the spec's shapes (both columns refuse)."""
    import base64

    n = 4
    g = Graph([Value("x", (2, n), "float32")], {"lw": np.ones(n, np.float32), "lb": np.zeros(n, np.float32)},
              [Node("layer_norm", ["x", "lw", "lb"], "y", {"normalized_ndim": 1, "eps": 1e-5})],
              ["y"]).check()
    st = statement(g, [(Q(-1), Q(1))] * (2 * n), "binary32", ranges="fast", column=column)
    W = np.array([[1e-3] * n, [1000.0] * n], np.float32)
    st["graph"]["constants"]["lw"] = {"dtype": "float32", "shape": [2, n],
                                      "data": base64.b64encode(W.astype("<f4").tobytes()).decode()}
    st["model"] = model_id(st["graph"])
    rng = np.random.default_rng(0)
    xs = rng.uniform(-1, 1, (500, 2, n)).astype(np.float32)
    b = np.zeros(n, np.float32)
    err = max(np.abs(_ln_run(x, W, b, 1e-5).astype(np.float64)
                     - _ln_run(x.astype(np.float64), W, b, 1e-5)).max() for x in xs)
    assert err > 1e-4  # (the float64 run's own error: ~1e-12 here)
    try:
        eps = propagate(st)[-1]
    except Rejected:  # (``Unsupported`` is a ValueError: a malformed statement, refused by check)
        return
    except ValueError as e:
        assert "normalized shape" in str(e)
        return
    assert min(eps) >= err, (float(min(eps)), err)


DT = {"binary16": np.float16, "bfloat16": ml_dtypes.bfloat16, "binary32": np.float32}


def _searched(g: Graph, box: list, fmt: str) -> None:
    """``fast_column.covers_searched_runs`` at this file's search size."""
    covers_searched_runs(g, box, fmt, DT[fmt], n=300, rounds=5)


@pytest.mark.parametrize("fmt", sorted(DT))
def test_layer_norm_of_one_value_three_times(fmt):
    """layer_norm(x, x, x): the same IR value as data, weight and bias (three exact-entry inputs,
    each element one source per input, substituted by the same fast form)."""
    g = Graph([Value("x", (4,), "float32")], {},
              [Node("layer_norm", ["x", "x", "x"], "y", {"normalized_ndim": 1, "eps": 1e-5})], ["y"]).check()
    _searched(g, [(Q(-1), Q(-1, 2)), (Q(0), Q(1, 2)), (Q(1), Q(2)), (Q(-2), Q(-1))], fmt)


@pytest.mark.parametrize("fmt", ["binary16", "bfloat16"])
@pytest.mark.parametrize("eps", [1e-5, 1e-3])
@pytest.mark.parametrize("shift", [1, 100])
def test_layer_norm_small_variance_short_formats(fmt, eps, shift):
    """Rows of nearly equal entries (variance near 0, eps a binary16 subnormal or 1e-3) around 1
    or 100 (the mean's cancellation), float64 weights with a cast error and a data bias
    (tanh of the input)."""
    w = np.array([1.1, -0.7, 2.3, 0.9])  # (float64: not values of binary16 / bfloat16)
    g = Graph([Value("x", (4,), "float32")], {"lw": w},
              [Node("tanh", ["x"], "t", {}),
               Node("layer_norm", ["x", "lw", "t"], "y", {"normalized_ndim": 1, "eps": eps})], ["y"]).check()
    c, d = Q(shift), Q(shift, 64)  # (wide enough to hold several values of the format)
    box = [(c - d, c + d), (c, c + 2 * d), (c - 2 * d, c), (c, c)]
    _searched(g, box, fmt)


def _masked(M1: np.ndarray, M2: np.ndarray, op: str = "softmax", fill: str = "ninf") -> Graph:
    """x (1, 4) -> tanh(x W) (2, 3) -> where(M1, -inf, .) -> where(M2, -inf, .) -> ``op``."""
    c = {"W": np.linspace(-2, 2, 24).reshape(4, 6).astype(np.float32), "M1": M1, "M2": M2,
         "ninf": np.array([-np.inf], np.float32)}
    nodes = [Node("matmul", ["x", "W"], "h", {}), Node("tanh", ["h"], "t", {}),
             Node("reshape", ["t"], "r", {"shape": (2, 3)}), Node("where", ["M1", fill, "r"], "w1", {}),
             Node("where", ["M2", "ninf", "w1"], "w2", {}), Node(op, ["w2"], "s", {"axis": -1})]
    return Graph([Value("x", (1, 4), "float32")], c, nodes, ["s"]).check()


M1 = np.array([[True, False, False], [False, True, False]])
M2 = np.array([[False, False, True], [False, False, False]])  # (row 0: one entry left; row 1: two)
BOX = [(Q(-1, 2), Q(1, 2)), (Q(0), Q(1, 4)), (Q(1, 8), Q(3, 8)), (Q(-1, 4), Q(0))]


@pytest.mark.parametrize("fmt", sorted(DT))
def test_where_of_where(fmt):
    """Two masks (where of where) leave one entry in group 0 (its float output exactly
    exp(0)/exp(0) = 1) and two in group 1: the masked outputs are exactly 0 in the float run and
    certified ~0; the fast certificate is accepted and above searched float runs. (The exact
    column fails on a where of a -inf element, AttributeError: a malformed-input refusal.)"""
    g = _masked(M1, M2)
    st = statement(g, BOX, fmt, ranges="fast", column="fast")
    steps = propagate(st)
    assert all(float(steps[-1][j]) < 1e-200 for j in np.flatnonzero((M1 | M2).ravel()))
    _searched(g, BOX, fmt)


@pytest.mark.parametrize("variant", ["reshape", "log_softmax", "layer_norm", "all_masked", "add",
                                     "const_transpose", "const_slice"])
def test_minus_inf_refused_where_lower_refuses(variant):
    """-inf reaches only where (a copy) and softmax: read through a reshape, by log_softmax, by
    layer_norm or an add, filling a whole softmax group, or the -inf constant itself transposed
    or sliced (a selection of constants the fast column would fold), both columns refuse as
    ``lower``."""
    if variant == "all_masked":
        g = _masked(M1, ~M1)
    elif variant == "log_softmax":
        g = _masked(M1, M2, "log_softmax")
    else:
        g = _masked(M1, np.zeros_like(M1))
        ir = g.to_dict()
        if variant == "reshape":
            ir["nodes"].insert(5, {"op": "reshape", "inputs": ["w2"], "output": "w3",
                                   "attrs": {"shape": [2, 3]}})
            ir["nodes"][6]["inputs"] = ["w3"]
        elif variant == "layer_norm":
            ir["constants"]["one"] = {"dtype": "float32", "shape": [3], "data": base64_f32([1, 1, 1])}
            ir["nodes"][5] = {"op": "layer_norm", "inputs": ["w2", "one", "one"], "output": "s",
                              "attrs": {"normalized_ndim": 1, "eps": 1e-5}}
        elif variant.startswith("const_"):
            op, at = (("transpose", {"axes": [0]}) if variant == "const_transpose"
                      else ("slice", {"index": [[0, 1, 1]]}))
            ir["nodes"].insert(0, {"op": op, "inputs": ["ninf"], "output": "nf", "attrs": at})
            ir["nodes"][5]["inputs"] = ["M2", "nf", "w1"]
        else:
            ir["nodes"][5] = {"op": "add", "inputs": ["w2", "w2"], "output": "s", "attrs": {}}
        g = Graph.from_dict(ir)
    st = statement(g, BOX, "binary32", ranges="fast", column="exact")
    for column in ("fast", "exact"):
        with pytest.raises((Rejected, ValueError), match="-inf"):
            propagate({**st, "column": column})


def test_minus_inf_folded_selection_refused_without_infinities():
    """A -inf folded into a selection of constants (where of two constants, then where of data)
    in float8_e4m3fn (no infinities): refused in both columns; in binary16 the fast column's
    certificate is above searched float runs."""
    g = _masked(M1, M2, fill="ninf")
    ir = g.to_dict()
    ir["constants"]["Z"] = ir["constants"]["ninf"] | {"data": base64_f32([0.5])}
    ir["nodes"].insert(3, {"op": "where", "inputs": ["M1", "ninf", "Z"], "output": "f", "attrs": {}})
    ir["nodes"][4]["inputs"] = ["M1", "f", "r"]
    g = Graph.from_dict(ir)
    st = statement(g, BOX, "float8_e4m3fn", ranges="fast", column="exact")
    for column in ("fast", "exact"):
        with pytest.raises(Rejected, match="-inf has no value"):
            propagate({**st, "column": column})
    _searched(g, BOX, "binary16")


def base64_f32(vals: list[float]) -> str:
    import base64

    return base64.b64encode(np.array(vals, "<f4").tobytes()).decode()


def _cert(g: Graph, box: list, fmt: str = "binary32") -> dict:
    cert = bound_certificate(g, box, fmt, column="fast")
    assert cert["statement"]["column"] == "fast" and check(cert).ok
    return cert


def test_forged_certificates_rejected():
    """Fast mode, a masked softmax and a layer_norm: one output's ε shrunk by 1%, two outputs'
    ε swapped, the softmax node's steps replaced by another node's, and one step of the
    normalising node's largest element shrunk by 1%: each rejected."""
    ln = Graph([Value("x", (4,), "float32")], {"lw": np.array([3.0, -1, 0.5, 2], np.float32),
                                                 "lb": np.zeros(4, np.float32)},
               [Node("layer_norm", ["x", "lw", "lb"], "y", {"normalized_ndim": 1, "eps": 1e-5})],
               ["y"]).check()
    for g, box in ((_masked(M1, M2), BOX), (ln, BOX)):
        cert = _cert(g, box)
        eps = epsilons(cert)
        j = int(np.argmax([float(e) for e in eps]))
        c = copy.deepcopy(cert)
        c["statement"]["epsilon"][j] = str(eps[j] * Q(99, 100))
        c["digest"] = digest(c["statement"])
        rejected(c, "epsilon")
        i = int(np.argmin([float(e) for e in eps]))
        c = copy.deepcopy(cert)
        c["statement"]["epsilon"][i], c["statement"]["epsilon"][j] = str(eps[j]), str(eps[i])
        c["digest"] = digest(c["statement"])
        rejected(c)
        k = len(cert["steps"]) - 1  # (the normalising node: the last)
        c = copy.deepcopy(cert)
        big = max(range(len(c["steps"][k])), key=lambda t: Q(c["steps"][k][t]))
        c["steps"][k][big] = str(Q(c["steps"][k][big]) * Q(99, 100))
        rejected(c)
        if k:
            c = copy.deepcopy(cert)
            c["steps"][k] = [c["steps"][k - 1][0]] * len(c["steps"][k])
            rejected(c)


def test_forged_var_eps_attribute_is_not_read():
    """A "var+eps" attribute forged into the IR's layer_norm (a huge variance floor: the rule
    would then take the row as far from 0) changes nothing: the fast column sets it from its own
    ranges, as the exact column does."""
    g = Graph([Value("x", (4,), "float32")], {"lw": np.ones(4, np.float32), "lb": np.zeros(4, np.float32)},
              [Node("layer_norm", ["x", "lw", "lb"], "y", {"normalized_ndim": 1, "eps": 1e-5})],
              ["y"]).check()
    box = [(Q(-1, 64), Q(1, 64))] * 4
    st = statement(g, box, "binary32", ranges="fast", column="fast")
    honest = propagate(st)
    ir = copy.deepcopy(st["graph"])
    ir["nodes"][0]["attrs"]["var+eps"] = [1000000]
    forged = propagate({**st, "graph": ir, "model": model_id(ir)})
    assert forged == honest


def test_ibp_clip_is_outward():
    """``fast_engine.ibp_clip``: every clipped argument row contains the exact IBP interval
    (rounded outward), each end on its own (h-overflow): an end past 2^1000 on the outer side
    unclipped, on the inner side 2^1000; a layer_norm and a softmax graph."""
    from torchlean.certificates import engine as exact
    from torchlean.certificates import fast_engine
    from torchlean.certificates.bound_graph import arg_rows
    from torchlean.certificates.lower import lower

    W = np.array([[1e300, 0.5], [-1e300, 2.0]])  # (float64: squares past 2^1000)
    g1 = Graph([Value("x", (1, 2), "float64")], {"W": W, "lw": np.ones(2), "lb": np.zeros(2)},
               [Node("matmul", ["x", "W"], "h", {}),
                Node("layer_norm", ["h", "lw", "lb"], "y", {"normalized_ndim": 1, "eps": 1e-5})],
               ["y"]).check()
    for g, box in ((_masked(M1, M2), BOX), (g1, [(Q(1, 2), Q(1)), (Q(-1), Q(1, 3))])):
        bg = lower(g.to_dict(), {}, wide=True)
        clip = fast_engine.ibp_clip(bg, box)
        ex = exact.forward(bg, [a for a, _ in box], [b for _, b in box], "ibp")
        far = 0
        for k, bs in ex.arg.items():
            for j, (a, b) in enumerate(arg_rows(bg.nodes[k], bs)):
                lo, hi = clip[k][0][0, j], clip[k][1][0, j]
                big = Q(2) ** 1000
                far += max(abs(a), abs(b)) > big
                assert lo == (-np.inf if a < -big else 2.0**1000 if a > big else lo)
                assert hi == (np.inf if b > big else -(2.0**1000) if b < -big else hi)
                assert Q(lo) <= min(a, big) if lo > -np.inf else a < -big
                assert Q(hi) >= max(b, -big) if hi < np.inf else b > big
        assert (far > 0) == (g is g1)


def _emulated(op: str, x: list, w: list, b: list, fmt: str, mode: str) -> list:
    """The runtime's layer_norm / softmax kernel (``rules_nn.layer_norm``, ``rules_tensor.softmax``:
    sums left to right, as numpy's for 4 terms) bit-exactly in ``fmt`` and ``mode``: every
    operation the exact result rounded, sqrt and exp correctly rounded in the mode (mpmath at 300
    bits, then rounded), eps cast to nearest as numpy casts a Python float."""
    import mpmath

    from torchlean.certificates.rounding import round_fraction

    def fl(q):
        v = round_fraction(Q(q), fmt, mode)
        assert v.kind == "finite"
        return v.value

    def fn(f, q):
        with mpmath.workprec(300):
            m, e = mpmath.frexp(f(mpmath.mpf(q.numerator) / q.denominator))
            return fl(Q(int(mpmath.ldexp(m, 280))) * Q(2) ** (int(e) - 280))

    def total(vs):
        s = vs[0]
        for v in vs[1:]:
            s = fl(s + v)
        return s

    if op == "softmax":
        m = max(x)
        e = [fn(mpmath.exp, fl(v - m)) for v in x]
        s = total(e)
        return [fl(v / s) for v in e]
    n = len(x)
    mu = fl(total(x) / n)
    xc = [fl(v - mu) for v in x]
    var = fl(total([fl(v * v) for v in xc]) / n)
    r = fl(1 / fn(mpmath.sqrt, fl(var + round_fraction(Q(1e-5), fmt, "rne").value)))
    return [fl(fl(fl(v * r) * wi) + bi) for v, wi, bi in zip(xc, w, b)]


def _real(op: str, x: list, w: list, b: list) -> list:
    import mpmath

    with mpmath.workprec(300):
        xs = [mpmath.mpf(v.numerator) / v.denominator for v in x]
        if op == "softmax":
            e = [mpmath.exp(v - max(xs)) for v in xs]
            return [v / sum(e) for v in e]
        mu = sum(xs) / len(xs)
        var = sum((v - mu) ** 2 for v in xs) / len(xs)
        return [(v - mu) / mpmath.sqrt(var + mpmath.mpf(1e-5)) * float(wi) + float(bi)
                for v, wi, bi in zip(xs, w, b)]


@pytest.mark.parametrize("mode", ["rne", "rup", "rdn", "rtz"])
@pytest.mark.parametrize("op", ["layer_norm", "softmax"])
def test_directed_modes_against_emulated_runs(op, mode):
    """binary16 in every rounding mode: the fast ε above 150 bit-exact emulated runs (the
    runtime's order) against the real value at 300 bits; rne's emulation equals numpy's float16
    runtime (the emulator's own check)."""
    import mpmath

    w, b = [1.5, -0.75, 0.5, 2.0], [0.25, 0.0, -0.5, 1.0]
    if op == "layer_norm":
        g = Graph([Value("x", (4,), "float32")], {"w": np.array(w, np.float32), "b": np.array(b, np.float32)},
                  [Node("layer_norm", ["x", "w", "b"], "y", {"normalized_ndim": 1, "eps": 1e-5})], ["y"])
    else:
        g = Graph([Value("x", (4,), "float32")], {}, [Node("softmax", ["x"], "y", {"axis": -1})], ["y"])
    g = g.check()
    box = [(Q(-1), Q(-1, 2)), (Q(0), Q(1, 2)), (Q(3, 4), Q(2)), (Q(-2), Q(1))]
    cert = bound_certificate(g, box, "binary16", mode=mode, column="fast")
    assert check(cert).ok
    eps = epsilons(cert)
    rng = np.random.default_rng(5)
    worst = [Q(0)] * 4
    for _ in range(150):
        x16 = np.array([rng.uniform(float(a), float(c)) for a, c in box], np.float16)
        x = [Q(float(v)) for v in x16]
        y = _emulated(op, x, [Q(v) for v in w], [Q(v) for v in b], "binary16", mode)
        if mode == "rne":  # (numpy's float16 sums and exp go through float32, rounded once: a few
            # ulps from the emulator's per-step roundings, both orders the column covers)
            rt = [Q(float(v)) for v in run_float(g, x16[None], np.float16).ravel()]
            assert all(abs(p - q) <= Q(1, 128) * max(1, abs(q)) for p, q in zip(y, rt))
        for j, (a, r) in enumerate(zip(y, _real(op, x, w, b))):
            with mpmath.workprec(300):
                man, ex = abs(mpmath.mpf(a.numerator) / a.denominator - r).man_exp  # (exact: 300 bits)
            worst[j] = max(worst[j], Q(man) * Q(2) ** ex + Q(1, 2**250))  # (+ the real value's error)
    assert all(e >= m for e, m in zip(eps, worst)) and max(worst) > 0, ([float(v) for v in worst], eps)


def test_layer_norm_spec_shapes_still_accepted():
    """Hole 2's fix refuses only what the spec refuses: normalized_ndim 2 with (2, 3) weight and
    bias is accepted in both columns (fast >= exact), its ε above searched binary16 runs; a
    normalized_ndim past the rank is refused."""
    w = np.array([[1, 2, -1], [3, -4, 0.5]], np.float32)
    g = Graph([Value("x", (2, 2, 3), "float32")], {"w": w, "b": w[::-1].copy()},
              [Node("layer_norm", ["x", "w", "b"], "y", {"normalized_ndim": 2, "eps": 1e-5})], ["y"]).check()
    box = [(Q(k % 5, 4) - Q(1, 2), Q(k % 5, 4) + Q(1, 3)) for k in range(12)]
    both_columns(g, box, "binary16")
    _searched(g, box, "binary16")
    st = statement(g, box, "binary16", ranges="fast", column="fast")
    ir = copy.deepcopy(st["graph"])
    ir["nodes"][0]["attrs"]["normalized_ndim"] = 4
    for column in ("fast", "exact"):
        with pytest.raises(ValueError, match="normalized shape"):
            propagate({**st, "graph": ir, "model": model_id(ir), "column": column})
