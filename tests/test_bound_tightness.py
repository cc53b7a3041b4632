"""Tightness and agreement properties of the bound table on random graphs (issue 14).

- Random DAGs built from blocks that use every primitive with a row (unary rows, residual add/sub,
  data-by-data mul/div/matmul, maximum/minimum, reductions, softmax, layer_norm, ...), between
  random linear maps, on boxes from narrow to wide: CROWN is never looser than IBP (the engines keep
  the tighter per output), fast and exact agree within 1e-7 relative and the fast bounds enclose the
  exact ones, and points sampled in the box and evaluated in real arithmetic (the mpmath spec,
  ``torchlean.spec.exact.evaluate``) lie inside every bound (``test_bound_graph._check`` does the
  checks: one implementation).
- Default slopes: the exact rows and their fast siblings make the same choice (up to rounding) on
  random intervals, mixed-curvature ones included; on S-shaped rows (tanh, sigmoid) the default lower
  line on a mixed interval is auto_LiRPA's tangent through (u, f(u)) (checked with mpmath).
- Slope policies: over one forward state the final back-substitution is the max of the ones under
  the S-curve, chord and greedy-mix slopes, never below either policy, in both engines.
auto_LiRPA itself is benchmark-only (bench/bench_tightness.py): nothing here imports it.
"""

from fractions import Fraction

import mpmath
import numpy as np
import pytest
from test_bound_graph import G, _check

from torchlean.certificates import engine
from torchlean.certificates import fast_engine as fe
from torchlean.certificates.fast_functions import FAST
from torchlean.certificates.functions import FUNCTIONS
from torchlean.certificates.lower import ROWS, lower
from torchlean.certificates.slopes import POLICIES
from torchlean.verify import engines

UNARY = ["relu", "abs", "exp", "tanh", "erf", "sigmoid", "softplus", "gelu", "silu", "neg"]


def _block(rng, k, cur, prev):
    """One random block on a (1, 4) value ``cur`` (``prev``: an earlier (1, 4) value): nodes,
    constants, the new value's name and the primitives it uses."""
    n = f"b{k}"
    c = {f"{n}W": rng.normal(0, 0.7, (4, 4)), f"{n}V": rng.normal(0, 0.7, (4, 4))}
    nodes = [("matmul", [cur, f"{n}W"], f"{n}h")]
    h = f"{n}h"
    kind = rng.choice(["unary", "leaky", "positive", "residual", "mul", "div", "maxmin", "square",
                       "reduce", "softmax", "layer_norm", "matmul", "transpose", "concat", "cast"])
    if kind == "cast":  # (its real meaning is the identity; the rounding is the error column's)
        nodes += [("cast", [h], f"{n}c", {"dtype": str(rng.choice(["float32", "float16"]))}),
                  ("tanh", [f"{n}c"], f"{n}y")]
    elif kind == "unary":
        nodes.append((str(rng.choice(UNARY)), [h], f"{n}y"))
    elif kind == "leaky":
        nodes.append(("leaky_relu", [h], f"{n}y", {"slope": float(rng.uniform(0, 0.5))}))
    elif kind == "positive":  # log / sqrt / pow on h^2 + 0.5 > 0
        c[f"{n}c"] = np.array(0.5)
        op, attrs = [("log", {}), ("sqrt", {}), ("pow", {"exponent": 3}), ("pow", {"exponent": -1}),
                     ("pow", {"exponent": 1.5})][rng.integers(5)]
        nodes += [("mul", [h, h], f"{n}s"), ("add", [f"{n}s", f"{n}c"], f"{n}p"),
                  (op, [f"{n}p"], f"{n}y", attrs)]
    elif kind == "square":
        nodes.append(("pow", [h], f"{n}y", {"exponent": int(rng.choice([2, 3]))}))
    elif kind == "residual":
        nodes += [("tanh", [h], f"{n}t"), (str(rng.choice(["add", "sub"])), [f"{n}t", prev], f"{n}y")]
    elif kind == "mul":
        nodes += [("matmul", [cur, f"{n}V"], f"{n}k"), ("sigmoid", [f"{n}k"], f"{n}t"),
                  ("mul", [h, f"{n}t"], f"{n}y")]
    elif kind == "div":
        c[f"{n}c"] = np.array(0.5)
        nodes += [("matmul", [cur, f"{n}V"], f"{n}k"), ("exp", [f"{n}k"], f"{n}e"),
                  ("add", [f"{n}e", f"{n}c"], f"{n}d"), ("div", [h, f"{n}d"], f"{n}y")]
    elif kind == "maxmin":
        op = str(rng.choice(["maximum", "minimum"]))
        nodes += [("matmul", [cur, f"{n}V"], f"{n}k"), (op, [h, f"{n}k"], f"{n}y")]
    else:  # (2, 2) views
        nodes.append(("reshape", [h], f"{n}r", {"shape": (2, 2)}))
        r = f"{n}r"
        if kind == "reduce":
            op = str(rng.choice(["sum", "mean", "max"]))
            nodes += [(op, [r], f"{n}m", {"axes": (1,), "keepdims": True}),
                      ("broadcast_to", [f"{n}m"], f"{n}b", {"shape": (2, 2)}), ("add", [f"{n}b", r], f"{n}o")]
        elif kind == "softmax":
            nodes.append((str(rng.choice(["softmax", "log_softmax"])), [r], f"{n}o", {"axis": -1}))
        elif kind == "layer_norm":
            c[f"{n}lw"], c[f"{n}lb"] = rng.normal(0, 1, 2), rng.normal(0, 1, 2)
            nodes.append(("layer_norm", [r, f"{n}lw", f"{n}lb"], f"{n}o"))
        elif kind == "matmul":
            nodes += [("tanh", [r], f"{n}t"), ("matmul", [r, f"{n}t"], f"{n}o")]
        elif kind == "transpose":
            nodes += [("relu", [r], f"{n}t"), ("transpose", [f"{n}t"], f"{n}o")]
        else:
            nodes += [("slice", [r], f"{n}s", {"index": ((0, 2, 1), (0, 1, 1))}), ("abs", [f"{n}s"], f"{n}a"),
                      ("concat", [f"{n}a", f"{n}s"], f"{n}o", {"axis": 1})]
        nodes.append(("reshape", [f"{n}o"], f"{n}y", {"shape": (1, 4)}))
    return nodes, c, f"{n}y"


def random_graph(rng, blocks):
    nodes, consts, cur, prev = [], {}, "x", "x"
    for k in range(blocks):
        nd, c, y = _block(rng, k, cur, prev)
        nodes, consts, prev, cur = nodes + nd, {**consts, **c}, cur, y
    consts["out"] = rng.normal(0, 0.7, (4, 3))
    nodes.append(("matmul", [cur, "out"], "y"))
    return G(nodes, consts)


@pytest.mark.parametrize("seed", range(30))
def test_random_graphs_crown_within_ibp_fast_matches_exact_points_inside(seed):
    rng = np.random.default_rng(100 + seed)
    g = random_graph(rng, int(rng.integers(2, 4)))
    eps = float(rng.choice([0.02, 0.2, 0.8]))
    x0 = rng.uniform(-1, 1, (1, 4))
    bg, (il, iu), (cl, cu) = _check(g, x0 - eps, x0 + eps, rng, n=4)
    # (_check asserts CROWN within IBP per output, fast vs exact, sampled exact points inside)
    assert bg.n_out == 3


def test_random_graphs_cover_every_row():
    """The generator above draws every primitive that has a row, except the ones whose meaning
    needs other shapes (conv/pool/batch norm/gather/...: test_bound_graph covers them)."""
    used = set()
    for seed in range(300):
        used |= {n.op for n in random_graph(np.random.default_rng(seed), 3).nodes}
    rest = {"conv2d", "max_pool2d", "avg_pool2d", "batch_norm", "gather", "embedding", "where", "flatten"}
    assert set(ROWS) - rest <= used, set(ROWS) - rest - used


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_default_slopes_exact_and_fast_same_choice(name):
    rng = np.random.default_rng(len(name))
    kw = {"exponent": 3} if name == "pow" else {"slope": 0.2} if name == "leaky_relu" else {}
    lo = rng.uniform(-4, 3, 60)
    hi = lo + rng.exponential(1.5, 60)
    if name in ("log", "sqrt", "rsqrt", "reciprocal"):
        lo = np.abs(lo) + 1e-2
        hi = lo + rng.exponential(1.5, 60)
    hi[:5] = lo[:5]  # degenerate intervals
    fl, fu = FAST[name].policy_slopes(POLICIES[0], lo, hi, **kw)
    for i in range(len(lo)):
        a, b = FUNCTIONS[name].policy_slopes(POLICIES[0], lo[i], hi[i], **kw)
        assert float(a) == pytest.approx(fl[i], rel=1e-9, abs=1e-12), (lo[i], hi[i])
        assert float(b) == pytest.approx(fu[i], rel=1e-9, abs=1e-12), (lo[i], hi[i])


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_s_curve_lower_line_is_tangent_through_the_upper_endpoint(name):
    """On [l, u] around the inflection point 0 where the chord is not below f, the default lower
    line (default slope, the row's sound intercept) passes through (u, f(u)) and touches f at a
    point d <= 0 (auto_LiRPA's CROWN line), unless the midpoint rule applies; the upper line mirrors
    it. Reference values: mpmath at 40 digits."""
    mpmath.mp.dps = 40
    f = mpmath.tanh if name == "tanh" else (lambda x: 1 / (1 + mpmath.exp(-x)))
    row, checked = FUNCTIONS[name], 0
    for l, u in ((-2.0, 1.0), (-3.0, 0.5), (-1.0, 3.0), (-0.5, 4.0), (-4.0, 4.5), (-6.0, 6.0), (-8.0, 3.0)):
        a, b = row.policy_slopes(POLICIES[0], l, u)
        bl, bu = row.lower_intercept(l, u, a), row.upper_intercept(l, u, b)
        chord = (f(u) - f(l)) / (u - l)
        m = (l + u) / 2
        # lower line: chord when f'(l) >= chord; else tangent through (u, f(u)) (or at m)
        if mpmath.diff(f, l) < chord:
            t = float(mpmath.findroot(lambda t: f(t) + mpmath.diff(f, t) * (u - t) - f(u), (l, 0),
                                      solver="anderson"))
            if t <= m:
                assert abs(float(a) * u + float(bl) - float(f(u))) < 1e-9
                checked += 1
        if mpmath.diff(f, u) < chord:
            t = float(mpmath.findroot(lambda t: f(t) + mpmath.diff(f, t) * (l - t) - f(l), (0, u),
                                      solver="anderson"))
            if t >= m:
                assert abs(float(b) * l + float(bu) - float(f(l))) < 1e-9
                checked += 1
        # both lines valid: the sound intercepts, checked at points
        for x in np.linspace(l, u, 41):
            v = f(mpmath.mpf(x))
            assert float(a) * x + float(bl) <= v + 1e-15 and v <= float(b) * x + float(bu) + 1e-15
    assert checked >= 4


def test_s_curve_lines_tighter_than_chord_lines_on_mixed_intervals():
    """The relaxation area (integral of upper - lower over [l, u]) with the default slopes is at
    most the one with chord slopes for both lines (the rule before auto_LiRPA's) on mixed-curvature
    intervals of tanh and sigmoid, and strictly smaller on most of them."""
    rng = np.random.default_rng(4)
    better = 0
    for name in ("tanh", "sigmoid"):
        row = FUNCTIONS[name]
        for _ in range(20):
            l, u = -float(rng.exponential(2)) - 0.05, float(rng.exponential(2)) + 0.05
            a, b = row.policy_slopes(POLICIES[0], l, u)
            ch = (sum(row.value(u)) - sum(row.value(l))) / 2 / (Fraction(u) - Fraction(l))

            def area(sa, sb):
                bl, bu = row.lower_intercept(l, u, sa), row.upper_intercept(l, u, sb)
                mid = (Fraction(l) + Fraction(u)) / 2
                return ((sb - sa) * mid + bu - bl) * (Fraction(u) - Fraction(l))

            new, old = area(a, b), area(ch, ch)
            assert new <= old * (1 + Fraction(1, 10**9))
            better += new < old * (1 - Fraction(1, 10**6))
    assert better >= 20


def test_exact_and_fast_crown_agree_on_wide_tanh_boxes():
    """Wide boxes (mixed-curvature intervals everywhere): fast CROWN encloses exact CROWN and is
    within 1e-9 relative of it."""
    rng = np.random.default_rng(8)
    nodes = [("matmul", ["x", "W0"], "h"), ("tanh", ["h"], "t"), ("matmul", ["t", "W1"], "k"),
             ("sigmoid", ["k"], "s"), ("matmul", ["s", "W2"], "y")]
    g = G(nodes, {"W0": rng.normal(0, 1, (4, 6)), "W1": rng.normal(0, 1, (6, 6)),
                  "W2": rng.normal(0, 1, (6, 2))})
    bg = lower(g.to_dict())
    lo, hi = -np.ones((1, 4)), np.ones((1, 4))
    el, eu = engines.exact_crown(bg, lo[0].tolist(), hi[0].tolist())
    fl, fu = engines.fast_crown(bg, lo, hi)
    for j in range(2):
        assert fl[0, j] <= float(el[j]) <= fl[0, j] + 1e-9 * (1 + abs(fl[0, j]))
        assert fu[0, j] - 1e-9 * (1 + abs(fu[0, j])) <= float(eu[j]) <= fu[0, j]


def test_fast_rows_batched_with_out_of_domain_boxes():
    """A batch where one box leaves log's domain: that box gets vacuous bounds, the other box the
    same bounds as alone (rows raise on any bad element; the engine masks per element). A dead
    ReLU's fast range is exactly [0, 0], as the exact row's."""
    g = G([("add", ["x", "c"], "h"), ("log", ["h"], "a"), ("relu", ["a"], "y")], {"c": np.array(0.5)})
    bg = lower(g.to_dict())
    lo = np.array([[0.2, 0.1, -0.45, 0.0], [-1.0, 0.1, 0.2, 0.3]])
    hi = lo + 0.05
    for f in (engines.fast_ibp, engines.fast_crown):
        bl, bu = f(bg, lo, hi)
        sl, su = f(bg, lo[:1], hi[:1])
        assert np.array_equal(bl[0], sl[0]) and np.array_equal(bu[0], su[0])
        assert np.isfinite(bl[0]).all() and np.isneginf(bl[1]).any() and np.isposinf(bu[1]).any()
    assert FAST["relu"].interval(np.array([-2.0]), np.array([-1.0])) == (0.0, 0.0)
    el, eu = engines.exact_ibp(bg, lo[0].tolist(), hi[0].tolist())
    assert el[2] == eu[2] == 0 and bl[0, 2] == bu[0, 2] == 0  # log(x + 0.5) < 0 there: a dead ReLU


def _s_mlp(rng, acts):
    """A random MLP 4 -> 6 -> ... -> 3 with the given S-curve activations (mixed intervals on wide
    boxes), and its bound graph."""
    nodes, consts, cur = [], {}, "x"
    for k, act in enumerate(acts):
        consts[f"W{k}"] = rng.normal(0, 1.2, (4 if k == 0 else 6, 6))
        nodes += [("matmul", [cur, f"W{k}"], f"h{k}"), (act, [f"h{k}"], f"a{k}")]
        cur = f"a{k}"
    consts["Wo"] = rng.normal(0, 1, (6, 3))
    nodes.append(("matmul", [cur, "Wo"], "y"))
    return lower(G(nodes, consts).to_dict())


def test_two_slope_policies_never_looser_than_either():
    """Random S-curve graphs (tanh, sigmoid, gelu, silu), boxes narrow to wide: over the same
    forward state, the engines' final back-substitution (exact ``best_backsub``, fast
    ``bound_forms``) is per row the largest of the ones under the S-curve default slopes, under
    chord slopes and under the greedy mix of both, never below either policy; each policy alone is
    strictly looser on some rows (neither dominates, so dropping either would fail here). Fast
    encloses exact. ``crown``'s rows are the best of IBP and this bound."""
    from torchlean.certificates.slopes import GREEDY, POLICIES

    rng = np.random.default_rng(14)
    gain = {p: 0 for p in POLICIES}
    for trial in range(8):
        acts = [str(a) for a in rng.choice(["tanh", "sigmoid", "gelu", "silu"], int(rng.integers(2, 4)))]
        bg = _s_mlp(rng, acts)
        assert engine.policies(engine.split_nodes(bg)) == (*POLICIES, GREEDY)
        x0 = rng.uniform(-1, 1, (1, 4))
        eps = float(rng.choice([0.05, 0.3, 1.0]))
        lo, hi = x0 - eps, x0 + eps
        st = engine.forward(bg, lo[0].tolist(), hi[0].tolist(), "crown")
        forms = engine.objective(bg, None)
        fg = fe.compiled(bg)
        fst = fe.forward(fg, lo, hi, "crown")
        F = fe.forms_of(bg, forms)
        both_fast = fe.bound_forms(fst, F)[0]
        il = [engine.form_bounds(f, st.L, st.U)[0] for f in forms]
        single_fast = {}
        for p in POLICIES:
            fg.policies = (p,)  # (one policy: the same code path)
            try:
                single_fast[p] = fe.bound_forms(fst, F)[0]
            finally:
                fg.policies = (*POLICIES, GREEDY)
        cl, _ = engines.exact_crown(bg, lo[0].tolist(), hi[0].tolist())
        for j, f in enumerate(forms):
            best = engine.best_backsub(st, f)
            each = {p: engine.backsub(st, f, None, None, p) for p in (*POLICIES, GREEDY)}
            assert best == max(each.values())
            assert cl[j] == max(il[j], best)
            for p in POLICIES:
                gain[p] += best > each[p] + Fraction(1, 10**6) * (1 + abs(each[p]))
                assert both_fast[j] >= single_fast[p][j]
            bf = max(il[j], best)
            assert both_fast[j] <= float(bf) <= both_fast[j] + 1e-7 * (1 + abs(both_fast[j]))
    assert all(v >= 3 for v in gain.values()), gain


def test_bounds_beyond_the_float_range_stay_exact():
    """Rounding to floats only shortens numbers: past the float range the exact value is kept (a
    wide pow-3 graph once raised OverflowError in the exact engine's default slopes)."""
    from fractions import Fraction

    from torchlean.certificates.core import float_down as _down
    from torchlean.certificates.core import float_up as _up
    from torchlean.certificates.engine import _short

    big = Fraction(10) ** 400 + Fraction(1, 3)
    assert _down(big) == big and _up(-big) == -big and _short(big) == big
    third = Fraction(1, 3)
    assert _down(third) <= third <= _up(third) and _short(third) == Fraction(float(third))
    # the graph that raised it: exact CROWN now runs and stays within its IBP bounds
    rng = np.random.default_rng(203)
    g = random_graph(rng, int(rng.integers(2, 4)))
    eps = float(rng.choice([0.02, 0.2, 0.8]))
    x0 = rng.uniform(-1, 1, (1, 4))
    bg = lower(g.to_dict())
    lo = [Fraction(float(v)) for v in (x0 - eps).ravel()]
    hi = [Fraction(float(v)) for v in (x0 + eps).ravel()]
    (il, iu), (cl, cu) = engines.exact_ibp(bg, lo, hi), engines.exact_crown(bg, lo, hi)
    assert all(a >= b for a, b in zip(cl, il)) and all(a <= b for a, b in zip(cu, iu))
