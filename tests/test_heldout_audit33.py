"""Audit 33: the trusted lowering (``certificates/lower*.py``) against the runtime that executes the
same graph IR (``runtime.execute.run_graph``, eager ``tl``), for IR documents and traced models.

Findings (TRUST_BOUNDARIES.md, "Audit audit33"):

1. ``gather`` with an index smaller than the input off the gather axis (allowed by the shape rule,
   as torch.gather allows it): the runtime's kernel (``take_along_axis``) broadcast a size-1 index
   axis over the input's, so ``run_graph`` of x (2, 3) gathered by idx (1, 2) returned (2, 2) where
   the shape rule, torch and the lowering say (1, 2); a sum after it ran 8.0 at a corner of a box
   that ``verify.bounds`` bounded by [2, 4], and ``python -m torchlean.floats bound`` certified an
   epsilon below the error it observed. Fixed in the runtime (and the spec's meaning): x is cut to
   the index's extent first.
2. ``layer_norm`` with eps 0: the lowering attached its "within"/"ball" facts (|y_i| <= sqrt(n-1))
   although at a constant row every run is 0/0 = NaN, so the fast engine gave finite bounds on a
   box around such a row. The facts now need eps > 0 (trusted: one condition).
4. Arithmetic on integer constants alone: numpy computes it in int64 (or bool) and wraps (2^62 +
   2^62 = -2^63) or saturates (True + True = True) where the lowering folds exactly; a sum of two
   int64 2^62 scaling data put bounds at +2^63·x while every run was -2^63·x. The lowering now
   refuses any primitive but the selecting ones (``lower.INT_ROWS``) on integer constants alone
   (trusted).
3. ``verify.bounds`` lowered an IR document without ``Graph.check``: attributes the runtime refuses
   (``ceil_mode``) were ignored (bounded as floor mode), and a conv2d with an empty output was
   "bounded". It now checks the document first (untrusted).

The rest are differential sweeps that held: each primitive's attributes (conv2d stride, padding,
dilation, groups; pooling; transpose, reshape, slice, concat, flatten, broadcast_to; reductions'
axes/keepdims; softmax axes; where masks of every dtype; embedding/gather negative indices;
batched matmul; leaky_relu slopes; pow exponents; odd constants) with ``run_graph`` at float64
inside the checker's bounds at sampled points and corners, and torch as the reference for gather.
"""

from __future__ import annotations

import importlib
import itertools
import json

import numpy as np
import pytest
from ir_util import ir_doc as _ir

from torchlean.runtime.execute import run_graph
from torchlean.spec.graph import Graph, GraphError

vb = importlib.import_module("torchlean.verify.bounds")
torch = pytest.importorskip("torch")


def _points(lo, hi, n, seed=0):
    rng = np.random.default_rng(seed)
    pts = [(lo + hi) / 2] + [lo + rng.uniform(size=lo.size) * (hi - lo) for _ in range(n)]
    return pts + [np.where(rng.uniform(size=lo.size) < 0.5, lo, hi) for _ in range(n)]


def _worst(d, lo=-1.0, hi=1.0, n=6, methods=("ibp", "crown")):
    """The largest distance of run_graph's float64 output outside the checker's bounds over the
    box [lo, hi]^d at sampled points and corners (a size mismatch fails)."""
    g = Graph.from_dict(json.loads(json.dumps(d)))
    n_in = sum(int(np.prod(v.shape)) for v in g.inputs)
    L, H = np.full(n_in, float(lo)), np.full(n_in, float(hi))
    res = [vb.bounds(d, (L, H), m) for m in methods]
    worst = 0.0
    for x in _points(L, H, n):
        feeds, off = {}, 0
        for v in g.inputs:
            s = int(np.prod(v.shape))
            feeds[v.name] = x[off:off + s].reshape(v.shape)
            off += s
        y = np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in run_graph(g, feeds)])
        for low, up in res:
            low, up = np.asarray(low).ravel(), np.asarray(up).ravel()
            assert low.size == y.size, f"run has {y.size} outputs, the bounds {low.size}"
            assert not np.isnan(y).any()
            worst = max(worst, float(np.max(np.maximum(low - y, y - up))))
    return worst


# -- finding 1: gather by a smaller index ------------------------------------------------------------

def _gather_sum():
    return _ir([("x", (2, 3))], {"i": np.array([[2, 0]], dtype=np.int64)},
               [("gather", ["x", "i"], "y", {"axis": -1}), ("sum", ["y"], "z", {})], ["z"])


def test_gather_by_a_smaller_index_runs_as_torch_gather_and_within_the_bounds():
    d = _gather_sum()
    low, up = vb.bounds(d, (np.ones(6), 2 * np.ones(6)), "crown")
    (z,) = run_graph(Graph.from_dict(d), {"x": 2 * np.ones((2, 3))})
    assert float(z) == 4.0  # x[0, 2] + x[0, 0]: the old kernel summed both rows (8.0)
    assert low[0] <= z <= up[0]
    assert _worst(d) <= 1e-9


@pytest.mark.parametrize("axis,idx", [(-1, [[2, 0]]), (0, [[2, 0], [1, 1]]), (1, [[3], [0]]),
                                      (0, [[-1, 0, 1]]), (-1, [[0, 1, 2, 3, -4]])])
def test_gather_forward_and_backward_agree_with_torch(axis, idx):
    import torchlean as tl

    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)  # (tl.tensor's dtype)
    i = np.array(idx)
    a = tl.tensor(x, requires_grad=True)
    y = a.gather(axis, tl.tensor(i))
    (y * y).sum().backward()
    b = torch.tensor(x, requires_grad=True)
    ti = torch.tensor(np.where(i < 0, i + x.shape[axis], i))  # (torch refuses negative indices)
    z = b.gather(axis, ti)
    (z * z).sum().backward()
    assert y.numpy().shape == tuple(z.shape)
    np.testing.assert_allclose(y.numpy(), z.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=0, atol=1e-12)
    # and the IR run (run_graph) of the same gather, against the same reference
    d = _ir([("x", (3, 4))], {"i": i.astype(np.int64)}, [("gather", ["x", "i"], "y", {"axis": axis})], ["y"])
    (out,) = run_graph(Graph.from_dict(d), {"x": x.astype(np.float64)})
    np.testing.assert_allclose(out, z.detach().numpy(), rtol=0, atol=0)
    assert _worst(d) <= 1e-9


def test_floats_bound_of_a_gather_graph_covers_what_it_observes(tmp_path, capsys):
    from torchlean.floats.__main__ import main

    d = _gather_sum()
    d["inputs"][0]["dtype"] = "float32"
    p = tmp_path / "gather.json"
    p.write_text(json.dumps(d))
    assert main(["bound", str(p), "--box", ",".join(["1:2"] * 6), "--samples", "50"]) == 0
    row = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("0 ")][0]
    eps, observed = float(row[1]), float(row[2])
    assert observed <= eps  # the old run summed two rows: observed 6.0e-7 above epsilon 4.8e-7


# -- finding 2: layer_norm with eps 0 ----------------------------------------------------------------

def _ln(eps, w=None):
    rng = np.random.default_rng(2)
    return _ir([("x", (2, 4))], {"w": rng.normal(size=4) if w is None else w, "b": rng.normal(size=4)},
               [("layer_norm", ["x", "w", "b"], "y", {"eps": eps})], ["y"])


@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_layer_norm_eps0_is_not_bounded_where_a_row_can_be_constant(method):
    d = _ln(0.0)
    with np.errstate(all="ignore"):
        (y,) = run_graph(Graph.from_dict(d), {"x": np.zeros((2, 4))})  # the box's centre
    assert np.isnan(y).all()  # 0 / sqrt(0 + 0): every run is NaN there (torch too)
    # (were finite: |y| <= sqrt 3 + |b|; then vacuous; since audit34 refused, as the exact engine)
    from torchlean.certificates.enclosures import DomainError

    with pytest.raises(DomainError, match="outside the domain"):
        vb.bounds(d, (-np.ones(8), np.ones(8)), method)


def test_layer_norm_eps0_away_from_constant_rows_and_eps_positive_stay_bounded():
    lo = np.array([2, -3, 0, 0, 2, -3, 0, 0], float)
    hi = np.array([3, -2, 0, 0, 3, -2, 0, 0], float)
    for eps in (0.0, 1e-5):
        low, up = vb.bounds(_ln(eps), (lo, hi), "crown")
        assert np.isfinite(low).all() and np.isfinite(up).all()
    assert _worst(_ln(1e-5)) <= 1e-9 and _worst(_ln(1e-300)) <= 1e-9


# -- finding 3: verify.bounds of an unchecked document ------------------------------------------------

@pytest.mark.parametrize("nodes,consts,shape", [
    ([("max_pool2d", ["x"], "y", {"kernel_size": 2, "stride": 2, "ceil_mode": True})], {}, (1, 1, 5, 5)),
    ([("conv2d", ["x", "w"], "y", {})], {"w": np.ones((1, 1, 3, 3))}, (1, 1, 2, 2)),
    ([("embedding", ["w", "i"], "y", {})], {"w": np.ones((3, 2, 2)), "i": np.array([1])}, (1,)),
])
def test_bounds_refuse_a_document_the_runtime_refuses(nodes, consts, shape):
    d = _ir([("x", shape)], consts, nodes, ["y"])
    with pytest.raises(GraphError):
        Graph.from_dict(d)
    n = int(np.prod(shape))
    with pytest.raises(GraphError):
        vb.bounds(d, (np.zeros(n), np.ones(n)), "ibp")


# -- what held: each primitive's attributes, run_graph within the checker's bounds -------------------

_R = np.random.default_rng(3)


def _w(*s):
    return _R.normal(size=s)


def _conv_cases():
    for (kh, kw), s, p, dil, g in itertools.product([(3, 2), (1, 1)], [1, (2, 1), (3, 2)],
                                                   [0, (1, 0), (0, 2)], [1, (2, 1)], [1, 2]):
        yield _ir([("x", (1, 2, 5, 6))], {"w": _w(4, 2 // g, kh, kw)},
                  [("conv2d", ["x", "w"], "y", {"stride": s, "padding": p, "dilation": dil, "groups": g})],
                  ["y"])


def _pool_cases():
    for op, k, s, p, cip in itertools.product(["max_pool2d", "avg_pool2d"], [2, (3, 2), (1, 3)],
                                              [1, (1, 3)], [0, (1, 0)], [True, False]):
        a = {"kernel_size": k, "stride": s, "padding": p}
        if op == "avg_pool2d":
            a["count_include_pad"] = cip
        elif not cip:
            continue
        d = _ir([("x", (1, 2, 5, 4))], {}, [(op, ["x"], "y", a)], ["y"])
        try:
            Graph.from_dict(d)
        except GraphError:
            continue  # (padding must be at most half the kernel)
        yield d


def _structural_cases():
    X = ("x", (2, 3, 4))
    for ax in [None, [2, 0, 1], [-1, 0, 1], [1, -3, 2]]:
        yield _ir([X], {}, [("transpose", ["x"], "y", {"axes": ax})], ["y"])
    for sh in [[-1, 4], [4, -1], [2, -1, 2]]:
        yield _ir([X], {}, [("reshape", ["x"], "y", {"shape": sh})], ["y"])
    for idx in [[[-1, None, None], [None, None, 2]], [[1, 100, 1], [-100, 2, 1], [3, 40, 1]],
                [[None, None, None], [2, None, 2], [-3, -1, 1]]]:
        yield _ir([X], {}, [("slice", ["x"], "y", {"index": idx})], ["y"])
    for ax in [0, 2, -1, -3]:
        yield _ir([X], {"c": _w(2, 3, 4)}, [("concat", ["x", "c", "x"], "y", {"axis": ax})], ["y"])
    for sd in [0, 2, -2]:
        yield _ir([X], {}, [("flatten", ["x"], "y", {"start_dim": sd})], ["y"])
    yield _ir([("x", (3, 1))], {}, [("broadcast_to", ["x"], "y", {"shape": [2, 3, 4]})], ["y"])
    for op in ["sum", "mean", "max"]:
        for ax in [None, [], -1, [2, -1], [-1, 0]]:
            yield _ir([X], {}, [(op, ["x"], "y", {"axes": ax, "keepdims": bool(ax)})], ["y"])
    for op in ["softmax", "log_softmax"]:
        for ax in [0, 1, -1]:
            yield _ir([X], {}, [(op, ["x"], "y", {"axis": ax})], ["y"])


def _misc_cases():
    for m in [np.array([True, False, True, False]), np.array([1, 0, -1, 0], dtype=np.int64),
              np.array([0.5, -0.0, 0.0, 2.0]), np.array([[1], [0]], dtype=np.int64)]:
        yield _ir([("x", (2, 4))], {"m": m, "b": _w(2, 4)}, [("where", ["m", "x", "b"], "y", {})], ["y"])
    for ix in [[0, 2, -1], [[1, 0], [2, -2]]]:
        yield _ir([("w", (3, 2))], {"i": np.array(ix, dtype=np.int64)},
                  [("embedding", ["w", "i"], "y", {})], ["y"])
    for a, b in [((2, 1, 3, 4), (5, 4, 2)), ((4, 3), (2, 3, 5))]:
        yield _ir([("x", a)], {"w": _w(*b)}, [("matmul", ["x", "w"], "y", {})], ["y"])
    for s in [0.01, 2.0, -0.5]:
        yield _ir([("x", (1, 4))], {"w": _w(4, 3)},
                  [("leaky_relu", ["x"], "h", {"slope": s}), ("matmul", ["h", "w"], "y", {})], ["y"])
    yield _ir([("x", (2, 3))], {"c": np.array([-0.0, 5e-324, 1e300])}, [("mul", ["x", "c"], "y", {})], ["y"])
    for shape in [(2, 3), (1, 3, 2, 2)]:
        yield _ir([("x", shape)], {"m": _w(3), "v": np.abs(_w(3)) + 0.1, "w": _w(3), "b": _w(3)},
                  [("batch_norm", ["x", "m", "v", "w", "b"], "y", {"eps": 0.5})], ["y"])
    yield _ir([("x", (2, 3, 2))], {"w": _w(3, 2), "b": _w(3, 2)},
              [("layer_norm", ["x", "w", "b"], "y", {"normalized_ndim": 2, "eps": 1e-3})], ["y"])


@pytest.mark.parametrize("d", [*_conv_cases(), *_pool_cases()],
                         ids=lambda d: json.dumps(d["nodes"][0]["attrs"]))
def test_windowed_primitives_run_within_their_bounds(d):
    assert _worst(d, n=3) <= 1e-9


@pytest.mark.parametrize("d", [*_structural_cases(), *_misc_cases()],
                         ids=lambda d: d["nodes"][0]["op"] + json.dumps(d["nodes"][0]["attrs"]))
def test_structural_and_other_primitives_run_within_their_bounds(d):
    assert _worst(d) <= 1e-9


@pytest.mark.parametrize("e", [0, 3, -1, -2, 0.5, 1.5, -2.5, 1 / 3])
def test_pow_exponents_run_within_their_bounds(e):
    assert _worst(_ir([("x", (1, 4))], {}, [("pow", ["x"], "y", {"exponent": e})], ["y"]), 0.5, 2.0) <= 1e-9


# -- finding 4: arithmetic on integer constants alone ------------------------------------------------

_INT_CASES = {
    "sum wraps": ({"c": np.array([2**62, 2**62], dtype=np.int64)}, [("sum", ["c"], "s", {})], 2**63),
    "sum after a reshape wraps": ({"c": np.array([2**62, 2**62], dtype=np.int64)},
                                  [("reshape", ["c"], "r", {"shape": [2, 1]}), ("sum", ["r"], "s", {})],
                                  2**63),
    "neg of int64 min": ({"c": np.array([-2**63], dtype=np.int64)}, [("neg", ["c"], "s", {})], 2**63),
    "product wraps": ({"c": np.array([2**40], dtype=np.int64)}, [("mul", ["c", "c"], "s", {})], 2**80),
    "pow wraps": ({"c": np.array([2**40], dtype=np.int64)}, [("pow", ["c"], "s", {"exponent": 2})], 2**80),
    "bool add saturates": ({"c": np.array([True])}, [("add", ["c", "c"], "s", {})], 2),
    "bool matmul is or-of-ands": ({"c": np.ones((2, 2), bool)},
                                  [("matmul", ["c", "c"], "m", {}), ("sum", ["m"], "s", {})], 8),
}


@pytest.mark.parametrize("name", sorted(_INT_CASES))
def test_arithmetic_on_integer_constants_alone_is_refused(name):
    from torchlean.certificates.bound_graph import Unsupported

    consts, nodes, exact = _INT_CASES[name]
    d = _ir([("x", (1, 2))], consts, [*nodes, ("mul", ["x", "s"], "y", {})], ["y"])
    with np.errstate(all="ignore"):
        (y,) = run_graph(Graph.from_dict(d), {"x": np.ones((1, 2))})
    assert float(y.ravel()[0]) != float(exact)  # the run is not the exact integer arithmetic
    with pytest.raises(Unsupported, match="integer constants"):
        vb.bounds(d, (np.ones(2), 2 * np.ones(2)), "ibp")


def test_integer_constants_that_only_select_still_lower():
    consts = {"i": np.array([[2, 0, 1], [1, 1, 0]], dtype=np.int64), "m": np.array([True, False, True]),
              "b": _w(2, 3)}
    nodes = [("slice", ["i"], "j", {"index": [[0, 1, 1], [0, 2, 1]]}), ("gather", ["x", "j"], "g", {}),
             ("reshape", ["m"], "m2", {"shape": [1, 3]}), ("broadcast_to", ["m2"], "m3", {"shape": [2, 3]}),
             ("where", ["m3", "x", "b"], "w", {}), ("concat", ["i", "i"], "ii", {"axis": 0}),
             ("max", ["ii"], "k", {}), ("mul", ["w", "k"], "y", {})]
    d = _ir([("x", (2, 3))], consts, nodes, ["g", "y"])
    assert _worst(d) <= 1e-9
