"""The CNN fast paths of the bound table: the conv2d / matmul lowering over variables read directly
(``bound_graph.plain_vars``, ``_plain_lin``) builds exactly the forms of the general path, and the
fast engine's sparse and dense matrix layouts (``fast_forms.SPARSE_BELOW``) give the same sound
bounds (performance choices only: neither may change a number the checker relies on)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from torchlean.certificates import bound_graph, fast_forms, lower_linear
from torchlean.certificates import fast_engine as fe
from torchlean.certificates.bound_graph import ONE, Aff, plain_vars
from torchlean.certificates.lower import fingerprint, lower
from torchlean.spec import Graph, Node, Value
from torchlean.spec.exact import evaluate
from torchlean.verify import engines

F = Fraction


def _cnn(rng: np.random.Generator, conv_attrs: dict, shape=(1, 2, 6, 5), repeat: bool = False) -> Graph:
    """conv -> relu -> conv (attrs) -> relu -> flatten, two constants appended -> matmul; with
    ``repeat`` the second conv reads the relu's output twice (concat along channels: the same
    variables at two places)."""
    c1 = rng.normal(0, 0.7, (4, shape[1], 3, 2))
    cin = 8 if repeat else 4
    g = conv_attrs.get("groups", 1)
    c2 = rng.normal(0, 0.7, (4, cin // g, 2, 2))
    c2[0, 0, 0, 0] = 0.0  # a zero weight: left out of the forms by both paths
    nodes = [("conv2d", ["x", "K1"], "a", {"padding": (1, 0)}), ("relu", ["a"], "r")]
    src = "r"
    if repeat:
        nodes.append(("concat", ["r", "r"], "rr", {"axis": 1}))
        src = "rr"
    nodes += [("conv2d", [src, "K2"], "b", conv_attrs), ("relu", ["b"], "s"),
              ("flatten", ["s"], "f", {"start_dim": 1})]
    consts = {"K1": c1, "K2": c2}
    probe = Graph([Value("x", shape, "float64")], consts, [Node(*n) for n in nodes], ["f"]).check()
    width = lower(probe.to_dict()).n_out
    consts["W"] = rng.normal(0, 0.5, (width + 2, 3))
    consts["k"] = np.array([[0.75, -1.5]])  # constant elements among the matmul's variables
    nodes += [("concat", ["f", "k"], "fk", {"axis": 1}), ("matmul", ["fk", "W"], "y")]
    return Graph([Value("x", shape, "float64")], consts, [Node(*n) for n in nodes], ["y"]).check()


CONVS = [{}, {"stride": (2, 1), "padding": (1, 1), "dilation": (1, 2)}, {"groups": 2, "padding": 1}]


@pytest.mark.parametrize("attrs", CONVS)
@pytest.mark.parametrize("repeat", [False, True])
def test_plain_lowering_builds_the_general_forms(monkeypatch, attrs, repeat):
    g = _cnn(np.random.default_rng(len(attrs) + 3 * repeat), attrs, repeat=repeat)
    ir = g.to_dict()
    fast = lower(ir)
    calls = []
    real = bound_graph._plain_lin
    monkeypatch.setattr(bound_graph, "_plain_lin", lambda t: calls.append(1) or real(t))
    lower(ir)
    assert calls  # (the matmul over the flattened relu takes the plain path)
    monkeypatch.setattr(lower_linear, "plain_vars", lambda xs: None)
    monkeypatch.setattr(bound_graph, "_plain_lin", lambda t: None)
    general = lower(ir)
    assert fingerprint(fast) == fingerprint(general)
    # the forms name the weights exactly (a changed weight is seen: the comparison has power)
    assert any(len(f.t) > 1 for n in fast.nodes if n.kind == "fn" for f in n.args)


def test_plain_vars_refuses_what_is_not_a_distinct_variable():
    x, y = Aff({0: ONE}), Aff({1: ONE})
    assert plain_vars([x, y]) == [0, 1]
    assert plain_vars([x, x]) is None  # repeated: a conv window would have to merge its weights
    assert plain_vars([x, F(1)]) is None
    assert plain_vars([Aff({0: F(2)})]) is None
    assert plain_vars([Aff({0: F(1)})]) is None  # 1 but not the shared ONE: not read directly
    assert plain_vars([Aff({0: ONE}, F(1, 2))]) is None
    assert plain_vars([Aff({0: ONE, 1: ONE})]) is None


def _layouts(monkeypatch, bg, lo, hi, share, conv=0.0):
    monkeypatch.setattr(fast_forms, "SPARSE_BELOW", share)
    monkeypatch.setattr(fast_forms, "CONV_BELOW", conv)  # (0: no conv path, ``test_conv_matrix``'s)
    fg = fe.FastGraph(bg)
    kinds = {(A.sparse, A.conv is not None) for f in fg.forms if isinstance(f, fast_forms._Forms)
             for _, A, _, _ in f.parents}
    return kinds, engines.fast_crown(fg, lo, hi), engines.fast_ibp(fg, lo, hi)


def test_sparse_and_dense_layouts_give_the_same_sound_bounds(monkeypatch):
    rng = np.random.default_rng(1)
    g = _cnn(rng, CONVS[1])
    bg = lower(g.to_dict())
    x0 = rng.uniform(-1, 1, (3, bg.n_in))
    lo, hi = x0 - 0.2, x0 + 0.2
    kd, (dl, du), (il, iu) = _layouts(monkeypatch, bg, lo, hi, 0.0)  # every matrix dense
    ks, (sl, su), (jl, ju) = _layouts(monkeypatch, bg, lo, hi, 2.0)  # every matrix sparse
    kc, (cl, cu), (kl, ku) = _layouts(monkeypatch, bg, lo, hi, 0.0, 2.0)  # every conv on the conv path
    assert kd == {(False, False)} and ks == {(True, False)} and kc == {(True, True)}
    for a, b in ((dl, sl), (du, su), (il, jl), (iu, ju), (dl, cl), (du, cu), (il, kl), (iu, ku)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert ((du - dl) < (iu - il)).any()
    for b in range(3):  # both contain the exact CROWN bounds and the spec's outputs at samples
        el, eu = engines.exact_crown(bg, lo[b].tolist(), hi[b].tolist())
        for lb, ub in ((dl[b], du[b]), (sl[b], su[b])):
            assert all(F(v) <= e for v, e in zip(lb, el)) and all(F(v) >= e for v, e in zip(ub, eu))
        for t in rng.uniform(0, 1, (5, bg.n_in)):
            p = (lo[b] + (hi[b] - lo[b]) * t).reshape(g.inputs[0].shape)
            y = np.asarray(evaluate(g, {"x": p})[0], dtype=object).ravel()
            for i, v in enumerate(y):
                assert sl[b, i] <= v <= su[b, i] and dl[b, i] <= v <= du[b, i]


def test_sparse_take_gives_the_dense_rows():
    """``_Mat.take`` of a sparse matrix (only the rows asked for, repeats and any order kept) is
    the dense matrix's rows."""
    rng = np.random.default_rng(4)
    R, n = 40, 30
    D = np.where(rng.uniform(size=(R, n)) < 0.02, rng.normal(size=(R, n)), 0.0)
    r, c = np.nonzero(D)
    A = fast_forms._Mat(R, n, r, c, D[r, c])
    assert A.sparse
    for rows in (np.array([3, 0, 39, 3, 17]), np.arange(R), np.array([5]), np.concatenate([r, r])):
        np.testing.assert_array_equal(A.take(rows), D[rows])
    np.testing.assert_array_equal(A.take(), D)


def test_float_conversion_once_per_object_matches_per_term():
    """``fast_forms._floats`` (one conversion per distinct coefficient object) gives every term's
    correctly rounded value and inexactness flag, as converting each term does."""
    shared = [F(1, 3), F(3, 4), F(2**60 + 1, 2), F(-5, 2**1100), F(7)]
    qs = [shared[i] for i in np.random.default_rng(2).integers(0, 5, 60)] + [F(1, 3), F(3, 8)]
    vals, inexact = fast_forms._floats(qs)
    for q, v, e in zip(qs, vals, inexact):
        n, d = q.as_integer_ratio()
        assert v == n / d and e == (F(v) != q or d.bit_length() > 1000)
    assert inexact.sum() > 0 and (~inexact).sum() > 0


def test_conversion_error_in_integers_equals_the_fraction_one():
    """``fast_forms._conv_err`` (|q - f| in integers, no gcd) is the correctly rounded float of the
    exact |q - f| (computed here with Fractions), on decimals, thirds, huge and subnormal-range
    values; and it is not 0 where f != q (a zero would drop a conversion's charge)."""
    rng = np.random.default_rng(5)
    qs = [F(1, 3), F(-2, 7), F(3, 10) ** 5, F(2**60 + 1, 2), F(-5, 2**1100), F(1, 3 * 2**1070), F(7)]
    qs += [F(int(a), int(b)) * F(2) ** int(e) for a, b, e in zip(rng.integers(-10**15, 10**15, 300),
                                                               rng.integers(1, 10**15, 300),
                                                               rng.integers(-1080, 1000, 300))]
    for q in qs:
        f = float(q)
        got = fast_forms._conv_err(q, f)
        assert got == float(abs(q - F(f)))
        assert (got > 0) == (F(f) != q) or abs(q - F(f)) < F(2) ** -1075  # (below the least subnormal)
