"""First-order error forms over the inputs (``certificates/errorforms.py``) and the sign-split
dot-product rule (``errorbound.Ctx.dot``): checked against the runtime in binary64, against every
summation order emulated exactly, and by mutations the checker must reject."""

from __future__ import annotations

import copy
import itertools
from fractions import Fraction

import numpy as np
import pytest
from floats_models import mlp

import torchlean.certificates.errorforms as ef
from torchlean.certificates import check, engine
from torchlean.certificates.errorbound import Ctx
from torchlean.certificates.lower import lower
from torchlean.certificates.rounding import get_format, round_fraction
from torchlean.floats import bound_certificate, epsilons, observed_error, searched_error
from torchlean.floats.network import run_float

Q = Fraction
BOX = [(Q(1, 4), Q(3, 4)), (Q(-1, 2), Q(0)), (Q(0), Q(1, 2)), (Q(1, 8), Q(5, 8))]


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_output_forms_enclose_the_runtime(act):
    g = mlp([4, 8, 8, 2], act, seed=3)
    bg = lower(g.to_dict(), {})
    st = engine.forward(bg, [a for a, _ in BOX], [b for _, b in BOX], "crown")
    forms = ef.linear_bounds(bg, st, BOX, engine.relaxation)
    x = np.random.default_rng(0).uniform([float(a) for a, _ in BOX], [float(b) for _, b in BOX], (300, 4))
    y = run_float(g, x, np.float64)
    mid = np.array([float((a + b) / 2) for a, b in BOX])
    rad = np.array([float((b - a) / 2) for a, b in BOX])
    t = (x - mid) / rad
    for j, e in enumerate(bg.outputs):
        lo, hi = ef.aff_forms(forms, e, 4)
        L, U = engine.form_bounds(e, st.L, st.U)
        m = ef.magnitude(lo, hi, L, U)
        val = lambda f: float(f[0]) + t @ np.array([float(a) for a in f[1:]])  # noqa: E731
        assert np.all(val(lo) <= y[:, j] + 1e-9) and np.all(y[:, j] <= val(hi) + 1e-9)
        if m is not None:
            assert np.all(np.abs(y[:, j]) <= val(m) + 1e-9)
            assert ef.fmax(m) < max(abs(L), abs(U))  # only kept when tighter than the constant


def _fl_sum(vals, fmt, fma):
    """Left-to-right sum of exact products, each operation rounded (fma: product and add once)."""
    s = None
    for w, x in vals:
        if fma and s is not None:
            s = round_fraction(s + w * x, fmt, "rne").value
            continue
        p = round_fraction(w * x, fmt, "rne").value
        s = p if s is None else round_fraction(s + p, fmt, "rne").value
    return s


def _pairwise(vals, fmt):
    ps = [round_fraction(w * x, fmt, "rne").value for w, x in vals]
    while len(ps) > 1:
        ps = [round_fraction(ps[i] + ps[i + 1], fmt, "rne").value if i + 1 < len(ps) else ps[i]
              for i in range(0, len(ps), 2)]
    return ps[0]


def test_sign_split_dot_rule_covers_every_order_and_beats_gamma_n():
    fmt = get_format("binary16")
    ctx = Ctx({"format": fmt.to_dict(), "mode": "rne", "kernel_ulps": "4"})
    rng = np.random.default_rng(1)
    n = 12
    w = [Q(float(np.float16(v))) for v in rng.standard_normal(n)]
    xs = [ctx.point(Q(0), Q(1)) for _ in range(n)]  # relu-like inputs: x >= 0, weights mixed
    S = sum(abs(a) * ctx.mag(v) for a, v in zip(w, xs))
    bound = ef.dot_error(ctx, list(zip(w, xs)), Q(0), S, n)
    assert bound < ctx.gamma(n) * S  # the sign split is what is used here
    worst = Q(0)
    for trial in range(300):
        x = [Q(float(np.float16(v))) for v in rng.uniform(0, 1, n)]
        vals = list(zip(w, x))
        exact = sum(a * b for a, b in vals)
        orders = [vals, vals[::-1], sorted(vals, key=lambda p: p[0] * p[1]),
                  sorted(vals, key=lambda p: -p[0] * p[1])]
        for o in orders:
            for fma in (False, True):
                worst = max(worst, abs(_fl_sum(o, fmt, fma) - exact))
            worst = max(worst, abs(_pairwise(o, fmt) - exact))
    assert 0 < worst <= bound


def test_sign_split_bound_is_never_looser_than_gamma_n():
    fmt = get_format("binary32")
    ctx = Ctx({"format": fmt.to_dict(), "mode": "rne", "kernel_ulps": "4"})
    for lo, hi in itertools.product([Q(-1), Q(0), Q(1, 2)], [Q(1), Q(2)]):
        xs = [ctx.point(lo, hi) for _ in range(5)]
        w = [Q(1), Q(-2), Q(3, 4), Q(1, 8), Q(-1, 3)]
        S = sum(abs(a) * ctx.mag(v) for a, v in zip(w, xs))
        assert ef.dot_error(ctx, list(zip(w, xs)), Q(0), S, 5) <= ctx.gamma(5) * S + 20 * ctx.eta


@pytest.fixture(scope="module")
def cert():
    return bound_certificate(mlp([4, 8, 8, 2], "relu", seed=3), BOX)


def test_forms_certificate_replays_and_holds(cert):
    g = mlp([4, 8, 8, 2], "relu", seed=3)
    assert check(cert).ok
    obs = observed_error(g, BOX, 2000)
    srch = searched_error(g, BOX, 500)
    eps = np.array([float(e) for e in epsilons(cert)])
    assert np.all(obs.max_error + obs.reference_error <= eps)
    assert np.all(srch + obs.reference_error <= eps)
    # the search starts from the same points as the random sample, so it never reports less
    assert np.all(srch >= observed_error(g, BOX, 500).max_error)
    # nor does its float-neighbourhood phase, which starts from the hill climb's points
    deep = searched_error(g, BOX, 500, ulp_rounds=6, ulp_per_round=16)
    assert np.all(deep >= srch) and np.all(deep + obs.reference_error <= eps)


def test_forms_are_used_and_tighten(cert, monkeypatch):
    eps = epsilons(cert)
    monkeypatch.setattr(ef, "MAX_FORM_IN", 0)
    plain = epsilons(bound_certificate(mlp([4, 8, 8, 2], "relu", seed=3), BOX))
    assert all(a <= b for a, b in zip(eps, plain)) and any(a < b for a, b in zip(eps, plain))
    # a checker without forms computes the looser bound: the tighter certificate is rejected
    assert not check(cert).ok


def test_epsilon_just_below_the_form_bound_is_rejected(cert):
    bad = copy.deepcopy(cert)
    bad["statement"]["epsilon"][0] = str(Q(bad["statement"]["epsilon"][0]) * Q(999_999, 1_000_000))
    from torchlean.certificates.core import digest

    bad["digest"] = digest(bad["statement"])
    v = check(bad)
    assert not v.ok and "epsilon" in v.reason


def test_wrong_format_is_rejected_with_forms(cert):
    from torchlean.certificates.core import digest

    bad = copy.deepcopy(cert)
    bad["statement"]["format"] = get_format("bfloat16").to_dict()
    bad["digest"] = digest(bad["statement"])
    assert not check(bad).ok


def test_certificate_from_undercounting_forms_is_rejected(monkeypatch):
    """A producer whose magnitude forms claim |v| <= g/1000 states smaller steps and epsilons;
    the honest checker recomputes the forms and rejects them."""
    real = ef.magnitude

    def shrunk(lo, hi, L, U):
        m = real(lo, hi, L, U)
        return None if m is None else [a / 1000 for a in m]

    _undercounting_producer_is_rejected(monkeypatch, "magnitude", shrunk)


def _undercounting_producer_is_rejected(monkeypatch, name, fake):
    """``errorforms.<name>`` replaced by ``fake`` while a certificate is made: its epsilons are
    smaller than the honest ones, and the checker (with the real rule) rejects it."""
    g = mlp([4, 8, 8, 2], "relu", seed=3)
    good = epsilons(bound_certificate(g, BOX))
    monkeypatch.setattr(ef, name, fake)
    bad = bound_certificate(g, BOX)
    monkeypatch.undo()
    assert any(b < a for a, b in zip(good, epsilons(bad)))
    v = check(bad)
    assert not v.ok and "claimed error" in v.reason


def _trees(leaves):
    """Every full binary tree over the labelled ``leaves`` (as nested pairs)."""
    if len(leaves) == 1:
        yield leaves[0]
        return
    first, rest = leaves[0], leaves[1:]
    for mask in range(2 ** len(rest)):  # the subtree holding ``first`` and the other one
        left = [first] + [x for i, x in enumerate(rest) if mask >> i & 1]
        right = [x for i, x in enumerate(rest) if not mask >> i & 1]
        if right:
            for a in _trees(left):
                for b in _trees(right):
                    yield (a, b)


def _node_sums(t, a):
    """(leaf-bound sum of t, the list of every internal node's leaf-bound sum)."""
    if not isinstance(t, tuple):
        return a[t], []
    (x, xs), (y, ys) = _node_sums(t[0], a), _node_sums(t[1], a)
    return x + y, xs + ys + [x + y]


def test_node_sums_of_every_tree_are_below_the_caterpillars():
    """The lemma of ``dot_error``'s node rule: the j-th largest node sum of any summation tree is
    at most s_j = S - (the j - 1 smallest leaf bounds), so sum_j min(M, node_j) <= sum_j min(M, s_j)
    for every cap M; checked on every tree of up to 6 leaves (945 trees at 6)."""
    rng = np.random.default_rng(4)
    for n in range(2, 7):
        a = [Q(int(v)) for v in rng.integers(1, 50, n)]
        S, small = sum(a), sorted(a)
        s = [S - sum(small[:j]) for j in range(n - 1)]
        for t in _trees(list(range(n))):
            nodes = sorted(_node_sums(t, a)[1], reverse=True)
            assert len(nodes) == n - 1 and all(x <= y for x, y in zip(nodes, s))
            for M in (S, S // 2, small[-1]):
                assert sum(min(M, x) for x in nodes) <= sum(min(M, y) for y in s)


def test_node_rule_covers_every_tree_and_beats_the_sign_split():
    """Same-sign terms (where the node rule gains most): the exact float error of every summation
    tree of 6 rounded products in binary16 (and of every 7th tree accumulated in binary32 over
    the exact products, rounded once), against the bound; the bound is below the sign split's
    u T + n u max(P, N) (its form before the node rule)."""
    fmt = get_format("binary16")
    ctx = Ctx({"format": fmt.to_dict(), "mode": "rne", "kernel_ulps": "4"})
    rng = np.random.default_rng(2)
    n = 6
    w = [Q(float(np.float16(v))) for v in rng.uniform(0.1, 2, n)]
    xs = [ctx.point(Q(0), Q(1)) for _ in range(n)]
    S = sum(abs(a) * ctx.mag(v) for a, v in zip(w, xs))
    bound = ef.dot_error(ctx, list(zip(w, xs)), Q(0), S, n)
    u = ctx.u
    assert bound < u * S + n * u * S  # sign split before: max(P, N) = S for same-sign terms

    def fl_tree(t, p):
        if not isinstance(t, tuple):
            return p[t]
        return round_fraction(fl_tree(t[0], p) + fl_tree(t[1], p), fmt, "rne").value

    wide = get_format("binary32")

    def wide_tree(t, p):  # a binary32 accumulator over exact products, rounded once at the end
        if not isinstance(t, tuple):
            return p[t]
        return round_fraction(wide_tree(t[0], p) + wide_tree(t[1], p), wide, "rne").value

    worst = Q(0)
    trees = list(_trees(list(range(n))))
    for _ in range(20):
        x = [Q(float(np.float16(v))) for v in rng.uniform(0.5, 1, n)]
        p = [round_fraction(a * b, fmt, "rne").value for a, b in zip(w, x)]
        exact = sum(a * b for a, b in zip(w, x))
        worst = max(worst, max(abs(fl_tree(t, p) - exact) for t in trees))
        ex = [a * b for a, b in zip(w, x)]
        worst = max(worst, max(abs(round_fraction(wide_tree(t, ex), fmt, "rne").value - exact)
                               for t in trees[::7]))
    assert 0 < worst <= bound


def test_certificate_from_an_undercounting_node_rule_is_rejected(monkeypatch):
    """A producer whose node rule drops the largest node (n - 1 node roundings, no final one)
    states smaller epsilons; the checker recomputes the rule and rejects them."""
    real = ef.dot_error

    def fewer(ctx, terms, c, S, n):
        return real(ctx, terms, c, S, n - 1) if n > 2 else real(ctx, terms, c, S, n)

    _undercounting_producer_is_rejected(monkeypatch, "dot_error", fewer)
