"""Audit audit14: the trusted checker's term and index kinds (``adjoint``, ``windows``, ``terms``)
and the interval rules, attacked with hand-made statements.

Every case asserts a refusal, or a reading, against an independent reference: brute-force
evaluation of an index form at small sizes (its own expression reader, not the checker's), sympy
on the terms' meaning, exact evaluation of the interval rules on sampled points. One gap was found
and closed (TRUST_BOUNDARIES.md, "Audit audit14"): ``windows`` took a window leaf ``v a b`` (and
a plane leaf) at any subscripts, so a window term reading ``v`` outside the kh x kw window was
accepted, and the composed plane claim (whose VJP only scatters the window's own taps) was false.
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pytest

import torchlean  # noqa: F401
from torchlean.certificates import check
from torchlean.certificates import intervals as I
from torchlean.certificates.functions import _leaky_ival
from torchlean.proofs import windows

sympy = pytest.importorskip("sympy")


# -- adjoint: an independent reader of index forms ------------------------------------------------

def _ev(e, env):
    """An expression (name, int, or {"a*b": k, "1": c}) at concrete values."""
    if isinstance(e, int):
        return e
    if isinstance(e, str):
        return env[e]
    total = 0
    for k, c in e.items():
        term = c
        if k != "1":
            for n in k.split("*"):
                term *= env[n]
        total += term
    return total


def _side(monos, sizes, arrays):
    """The exact value of a side, or None where an atom's subscript leaves its array."""
    total = Fraction(0)
    for m in monos:
        names = [v for v, _ in m["sum"]]
        for vals in itertools.product(*(range(max(0, _ev(s, sizes))) for _, s in m["sum"])):
            env = {**sizes, **dict(zip(names, vals))}
            if any(_ev(e, env) < 0 for e in m.get("ge", [])) or any(_ev(e, env) for e in m.get("eq", [])):
                continue
            term = Fraction(m["c"])
            for name, idx in m["atoms"]:
                ix = tuple(_ev(i, env) for i in idx)
                if len(ix) != 1 or not 0 <= ix[0] < len(arrays[name]):  # (arrays are vectors here)
                    return None
                term *= arrays[name][ix[0]]
            total += term
    return total


def _agree(cert, top=4, seed=0):
    """Whether both sides are defined and equal at every n, m in 1..top (random integer arrays)."""
    rng = random.Random(seed)
    for n, m in itertools.product(range(1, top + 1), repeat=2):
        sizes = {"n": n, "m": m}
        for _ in range(2):
            arrays = {k: [rng.randint(-9, 9) for _ in range(_ev(shape[0], sizes))]
                      for k, shape in cert["arrays"].items()}
            lhs = _side(cert["lhs"], sizes, arrays)
            rhs = _side(cert["rhs"]["x"], sizes, arrays)
            if lhs is None or rhs is None or lhs != rhs:
                return False
    return True


def _mono(rng, idx, ge=(), eq=(), c="1"):
    sums = [["v", rng]] if rng is not None else []
    return {"c": c, "sum": sums, "atoms": [["g", [idx]], ["x", [idx]]], "ge": list(ge), "eq": list(eq)}


def _cert(lhs, rhs, size=None):
    size = size or {"n": 2}
    return {"kind": "adjoint", "arrays": {"x": [size], "g": [size]}, "lhs": lhs, "rhs": {"x": rhs}}


def _plus(*es):
    out = {}
    for e in es:
        e = {e: 1} if isinstance(e, str) else {"1": e} if isinstance(e, int) else e
        for k, c in e.items():
            out[k] = out.get(k, 0) + c
    return {k: c for k, c in out.items() if c} or {"1": 0}


def _neg(e):
    return {k: -c for k, c in _plus(e).items()}


def test_offset_shift_needs_a_nonnegative_offset():
    """[v >= L] with L = m - n (of either sign) over v < n is not the sum over v < 2n - m shifted
    by L: at n = 2, m = 1 the guard is true for every v, the shifted sum has three terms. Rule S
    without its L >= 0 condition reads the two as one normal form (the index check passes: the
    subscripts v + n stay inside an axis of 2n)."""
    cert = _cert([_mono("n", _plus("v", "n"), ge=[_plus("v", "n", _neg("m"))])],
                 [_mono(_plus({"n": 2}, _neg("m")), _plus("v", "m"))])
    assert not _agree(cert)
    assert not check(cert).ok


L_CHOICES = [0, 1, 2, -1, "n", "m", _plus("m", -1), _plus("n", _neg("m")), _plus("m", _neg("n")),
             _plus("n", -1), _plus(2, _neg("n")), _plus("n", "m")]
R_CHOICES = ["n", _plus("n", -1), "m", _plus("n", "m")]
C_CHOICES = [0, 1, "n", "m"]


@pytest.mark.parametrize("size", [{"n": 2}, {"n": 1, "m": 1}, {"n": 2, "m": 2}])
def test_offset_and_upper_rules_accept_only_true_readings(size):
    """Statements of the shape rules S (offsets) and T (shorter ranges) rewrite, over a grid of
    offsets of every sign (constants, sizes, differences of sizes), ranges and subscript offsets:
    each accepted statement is equal by brute force at every n, m in 1..4, and the true ones of
    the grid with a provably nonnegative offset are accepted (so the grid is not vacuous)."""
    accepted = 0
    for L, R, c in itertools.product(L_CHOICES, R_CHOICES, C_CHOICES):
        # S: sum_{v<R} [v - L >= 0] f(v + c) = sum_{v<R-L} f(v + L + c)
        s = _cert([_mono(R, _plus("v", c), ge=[_plus("v", _neg(L))])],
                  [_mono(_plus(R, _neg(L)), _plus("v", L, c))], size)
        # T: sum_{v<R} [L - v >= 0] f(v + c) = sum_{v<L+1} f(v + c)
        t = _cert([_mono(R, _plus("v", c), ge=[_plus(L, _neg("v"))])],
                  [_mono(_plus(L, 1), _plus("v", c))], size)
        for cert in (s, t):
            if check(cert).ok:
                accepted += 1
                assert _agree(cert), cert
    assert accepted >= 20


@pytest.mark.parametrize("t, R, zero", [
    ("n", "n", True),                      # [v = n] over v < n: never
    (_plus("n", -1), "n", False),          # the last term
    (0, "n", False),                       # the first term (n >= 1)
    (_plus("n", 1), _plus("n", 1), True),  # one past the end
    ("m", "n", False),                     # inside only when m < n: the guards must stay
])
def test_an_eq_guard_picks_one_term_or_none(t, R, zero):
    """Rule E at range boundaries: [v = t] over v < R is 0 exactly when t is never in [0, R);
    the claim "= 0" (an empty VJP side) is accepted exactly then (brute force agrees)."""
    cert = _cert([_mono(R, "v", eq=[_plus("v", _neg(t))])], [], {"n": 2, "1": 2})
    assert _agree(cert) == zero
    assert check(cert).ok == zero


def test_eq_guard_with_coefficient_two_is_refused():
    """[2v = n] determines v only for even n: no rule may read it (refused)."""
    cert = _cert([_mono("n", "v", eq=[{"v": 2, "n": -1}])], [_mono(None, {"n": 1}, ge=[], c="0")])
    assert not check(cert).ok


@pytest.mark.parametrize("rng", [_plus("n", -1), _plus("n", -2), 0, -1, _plus("m", _neg("n"))])
def test_empty_ranges_are_empty(rng):
    """A sum over a range that is 0 or negative at some sizes: equal to a guarded single range
    only where brute force agrees; the sum over max(0, R) terms, never |R| (R < 0 is empty)."""
    lhs = [_mono(rng, "v")]
    empty = _cert(lhs, [], {"n": 1, "m": 1})
    assert check(empty).ok == _agree(empty)
    # the sum over R equals the sum over n guarded by v <= R - 1 when R <= n (rule T backwards)
    guarded = _cert(lhs, [_mono("n", "v", ge=[_plus(rng, -1, _neg("v"))])], {"n": 1, "m": 1})
    if check(guarded).ok:
        assert _agree(guarded)


# -- windows ---------------------------------------------------------------------------------------

def _one_by_one(v, plane_fwd):
    """H x W = 2 x 1, a 1 x 1 window, stride 1: the window's forward is the leaf ``v`` (given) and
    its VJP at the one tap 0, the plane's forward the leaves ``plane_fwd``, its VJP 0."""
    nodes = [["v", *v], ["c", "0"], *(["x", r, c] for r, c in plane_fwd)]
    return {"kind": "windows", "size": [2, 1], "kernel": [1, 1], "stride": [1, 1], "nodes": nodes,
            "window": {"forward": 0, "spec": 0, "vjp": [[1]]},
            "plane": {"forward": [[2], [3]], "spec": [[2], [3]], "vjp": [[1], [1]]}}


@pytest.mark.parametrize("v, plane_fwd", [((1, 0), [(1, 0), (2, 0)]), ((-1, 0), [(-1, 0), (0, 0)]),
                                          ((0, 1), [(0, 1), (1, 1)])])
def test_a_window_leaf_outside_the_window_is_refused(v, plane_fwd):
    """The hole closed here. The window's forward reads v[1, 0] of a 1 x 1 window: its VJP claim
    (derivative in v[0, 0]: 0) holds, the plane's forward at window 0 is then x[1, 0], whose
    derivative in x[1, 0] is 1, yet the plane VJP said 0 everywhere (and window 1 reads x[2, 0],
    outside the 2 x 1 plane). Accepted before; now every leaf must lie in its window or plane."""
    assert not check(_one_by_one(v, plane_fwd)).ok


def test_the_same_statement_inside_the_window_is_accepted():
    st = _one_by_one((0, 0), [(0, 0), (1, 0)])  # forward = the entry, VJP 0: a false VJP ...
    # ... but a true windows statement: the plane is that window at each position (the window's
    # VJP claim, proved separately, is what refuses 0 as the derivative of v[0, 0])
    assert check(st).ok


@pytest.mark.parametrize("leaf", [["x", 2, 0], ["x", 0, 1], ["g", 2, 0], ["g", 0, -1]])
def test_a_plane_leaf_outside_the_plane_is_refused(leaf):
    st = _one_by_one((0, 0), [(0, 0), (1, 0)])
    st["nodes"].append(leaf)
    assert not check(st).ok


def _attrs(k, s):
    return {"kernel_size": k, "stride": s, "padding": (0, 0)}


def _summands(nodes, t):
    n = nodes[t]
    if n[0] == "add":
        return _summands(nodes, n[1]) + _summands(nodes, n[2])
    return [] if n == ["c", "0"] else [t]


EDGE = [((3, 3), (2, 2), (1, 1)), ((5, 5), (1, 1), (3, 3)), ((2, 3), (2, 3), (1, 1)),
        ((5, 4), (2, 1), (3, 2)), ((1, 4), (1, 2), (1, 2))]


@pytest.mark.parametrize("plane, k, s", EDGE)
def test_edge_geometries_mean_what_max_pool_computes(plane, k, s):
    """Kernel = plane, 1 x 1 kernels with gaps between windows, stride past the kernel, overlap:
    the derived statement is accepted, and its terms (evaluated with max/where/equal, numbers for
    the leaves) give a brute-force max pool forward and a plane VJP equal to the sum over windows
    of g at each window's first maximum (the spec's tie rule is the runtime's own: ties avoided)."""
    st = windows.statement("max_pool2d", plane, _attrs(k, s))
    assert check(st).ok
    h, w = plane
    rng = random.Random(1)
    vals = rng.sample(range(1000), h * w)
    x = [[vals[r * w + c] for c in range(w)] for r in range(h)]
    ho, wo = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    g = [[rng.randint(-9, 9) for _ in range(wo)] for _ in range(ho)]
    val = _evaluate(st["nodes"], x, g)
    want = [[0] * w for _ in range(h)]
    for i in range(ho):
        for j in range(wo):
            taps = [(s[0] * i + a, s[1] * j + b) for a in range(k[0]) for b in range(k[1])]
            r, c = max(taps, key=lambda p: x[p[0]][p[1]])
            assert val[st["plane"]["forward"][i][j]] == x[r][c]
            want[r][c] += g[i][j]
    assert [[val[t] for t in row] for row in st["plane"]["vjp"]] == want


def _evaluate(nodes, x, g):
    ops = {"maximum": max, "equal": lambda a, b: a == b, "where": lambda c, a, b: a if c else b,
           "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "select": lambda c, a, b: a if c else b, "ge": lambda a, b: a >= b,
           "gt": lambda a, b: a > b}
    val = []
    for n in nodes:
        op, args = n[0], n[1:]
        if op == "x":
            val.append(x[args[0]][args[1]])
        elif op == "g":
            val.append(g[args[0]][args[1]])
        elif op == "c":
            val.append(Fraction(args[0]))
        elif op in ("v", "gv") or any(val[a] is None for a in args):
            val.append(None)
        else:
            val.append(ops[op](*(val[a] for a in args)))
    return val


@pytest.mark.parametrize("how", ["twice", "dropped", "other-window"])
def test_an_overlapping_windows_vjp_counted_wrong_is_refused(how):
    """Stride 1 < kernel 2: position (1, 1) lies in four windows; its VJP with one window's part
    counted twice, one dropped, or one replaced by a neighbouring position's part is refused."""
    st = windows.statement("max_pool2d", (3, 3), _attrs((2, 2), (1, 1)))
    nodes, t = st["nodes"], st["plane"]["vjp"][1][1]
    parts = _summands(nodes, t)
    assert len(parts) == 4
    if how == "twice":
        nodes.append(["add", t, parts[0]])
    elif how == "dropped":
        nodes.append(["add", parts[1], parts[2]])
        nodes.append(["add", len(nodes) - 1, parts[3]])
    else:
        other = _summands(nodes, st["plane"]["vjp"][0][0])[0]
        nodes.append(["add", parts[1], parts[2]])
        nodes.append(["add", len(nodes) - 1, parts[3]])
        nodes.append(["add", len(nodes) - 1, other])
    st["plane"]["vjp"][1][1] = len(nodes) - 1
    assert not check(st).ok


# -- terms: normal forms against sympy -------------------------------------------------------------

def _random_term(rng, nodes, depth):
    if depth == 0 or rng.random() < 0.25:
        pick = rng.random()
        if pick < 0.6:
            nodes.append(["leaf", "in0", rng.randint(0, 2)])
        else:
            nodes.append(["c", rng.choice(["0", "1", "-1", "2", "1/2", "-3/4"])])
        return len(nodes) - 1
    op = rng.choice(["add", "sub", "mul", "neg", "div", "exp"])
    a = _random_term(rng, nodes, depth - 1)
    if op in ("neg", "exp"):
        nodes.append([op, a])
    elif op == "div":  # divisors: constants (read exactly) or terms (an atom 1/b)
        b = _random_term(rng, nodes, depth - 1) if rng.random() < 0.3 else \
            (nodes.append(["c", rng.choice(["2", "-3", "1/5", "0"])]) or len(nodes) - 1)
        nodes.append(["div", a, b])
    else:
        nodes.append([op, a, _random_term(rng, nodes, depth - 1)])
    return len(nodes) - 1


def _sym(nodes, t, memo):
    """The term's meaning in sympy: field operations, exp and 1/b opaque functions of their
    expanded arguments (congruence), a / c exact for a nonzero constant c."""
    if t in memo:
        return memo[t]
    op, args = nodes[t][0], nodes[t][1:]
    xs = sympy.symbols("x0:3")
    if op == "leaf":
        v = xs[args[1]]
    elif op == "c":
        v = sympy.Rational(Fraction(args[0]).numerator, Fraction(args[0]).denominator)
    else:
        a = [_sym(nodes, u, memo) for u in args]
        if op == "add":
            v = a[0] + a[1]
        elif op == "sub":
            v = a[0] - a[1]
        elif op == "mul":
            v = a[0] * a[1]
        elif op == "neg":
            v = -a[0]
        elif op == "exp":
            v = sympy.Function("E")(sympy.expand(a[0]))
        else:
            b = sympy.expand(a[1])
            v = a[0] / b if b.is_number and b != 0 else a[0] * sympy.Function("Inv")(b)
    memo[t] = sympy.expand(v)
    return memo[t]


def test_terms_equal_exactly_when_sympy_says_so():
    """Random term pairs (with a twin built by a sympy-checked rewrite about half the time): the
    ``terms`` checker accepts a pair exactly when their expanded sympy meanings are equal (the
    normal form is complete and sound for polynomials over congruent opaque atoms)."""
    rng = random.Random(14)
    agree = {True: 0, False: 0}
    for _ in range(150):
        nodes = []
        a = _random_term(rng, nodes, 3)
        if rng.random() < 0.5:  # a twin: a + 0 - (b - b), commuted products, neg(neg(a))
            z = _random_term(rng, nodes, 1)
            nodes.append(["sub", z, z])
            nodes.append(["add", len(nodes) - 1, a])
            nodes.append(["neg", len(nodes) - 1])
            b = len(nodes)
            nodes.append(["neg", b - 1])
        else:
            b = _random_term(rng, nodes, 3)
        memo = {}
        same = sympy.expand(_sym(nodes, a, memo) - _sym(nodes, b, memo)) == 0
        got = check({"kind": "terms", "nodes": nodes, "equal": [[a, b]]}).ok
        assert got == same, nodes
        agree[same] += 1
    assert agree[True] >= 40 and agree[False] >= 40


@pytest.mark.parametrize("a, b, same", [
    (["div", 0, 1], ["mul", 0, 2], True),       # x / 2 = x * (1/2)
    (["div", 0, 1], ["mul", 0, 1], False),      # x / 2 != x * 2
    (["div", 0, 3], ["mul", 0, 3], False),      # x / 0 is not x * 0
    (["div", 0, 0], ["c", "1"], False),          # x / x is not 1 (x = 0)
    (["div", 4, 5], ["leaf", "in0", 0], False),  # 1 / (1 / x) is not x
])
def test_division_readings(a, b, same):
    nodes = [["leaf", "in0", 0], ["c", "2"], ["c", "1/2"], ["c", "0"], ["c", "1"], ["div", 4, 0], a, b]
    assert check({"kind": "terms", "nodes": nodes, "equal": [[6, 7]]}).ok == same


# -- interval rules at endpoints -------------------------------------------------------------------

ENDS = [Fraction(v) for v in (-3, -1, Fraction(-1, 2), 0, Fraction(1, 3), 1, 2)]


def _points(lo, hi):
    inner = {lo + (hi - lo) * Fraction(k, 7) for k in range(8)}
    return sorted({lo, hi, *inner, *([Fraction(0)] if lo <= 0 <= hi else [])})


def _encloses(rule, f, lo, hi):
    out = rule((lo, hi))
    return all(out[0] <= f(x) <= out[1] for x in _points(lo, hi)) and out[0] <= out[1]


@pytest.mark.parametrize("rule, f", [
    (I.interval_relu, lambda x: max(x, 0)),
    (I.interval_abs, abs),
    (I.interval_square, lambda x: x * x),
    (lambda a: I.interval_leaky_relu(a, Fraction(1, 10)), lambda x: x if x >= 0 else x / 10),
    (lambda a: I.interval_leaky_relu(a, Fraction(0)), lambda x: max(x, 0)),
    (lambda a: I.interval_leaky_relu(a, Fraction(1)), lambda x: x),
])
def test_unary_rules_enclose_at_every_endpoint_pair(rule, f):
    """Every interval with ends in a grid holding 0, equal ends, both signs: the rule's output
    holds f at the ends, at 0 and at interior points, and is tight (attained) at its ends."""
    for lo, hi in itertools.product(ENDS, repeat=2):
        if lo <= hi:
            assert _encloses(rule, f, lo, hi), (lo, hi)
            out, vals = rule((lo, hi)), [f(x) for x in _points(lo, hi)]
            assert out == (min(vals), max(vals)), (lo, hi)


def test_binary_rules_enclose_at_every_endpoint_pair():
    """interval_mul, interval_maximum and McCormick planes (t in {0, 1/2, 1}) on every pair of
    grid intervals: products and maxima at grid points lie inside, planes below/above x*y."""
    boxes = [(lo, hi) for lo, hi in itertools.product(ENDS[::2] + [Fraction(1)], repeat=2) if lo <= hi]
    for a, b in itertools.product(boxes, repeat=2):
        mul, mx = I.interval_mul(a, b), I.interval_maximum(a, b)
        pts = [(x, y) for x in _points(*a)[::2] + [a[1]] for y in _points(*b)[::2] + [b[1]]]
        assert all(mul[0] <= x * y <= mul[1] and mx[0] <= max(x, y) <= mx[1] for x, y in pts)
        assert mul[0] in [x * y for x in a for y in b] and mul[1] in [x * y for x in a for y in b]
        for t in (Fraction(0), Fraction(1, 2), Fraction(1)):
            (ax, aw, c0), (bx, bw, c1) = I.mccormick(a, b, t, t)
            assert all(ax * x + aw * y + c0 <= x * y <= bx * x + bw * y + c1 for x, y in pts)


def test_affine_rule_at_zero_and_equal_ends():
    """c + sum q x with q = 0, negative q, equal ends: the exact extremes over the box corners."""
    terms = [(Fraction(0), (Fraction(-5), Fraction(7))), (Fraction(-2), (Fraction(1), Fraction(1))),
             (Fraction(3, 2), (Fraction(-1), Fraction(0))), (Fraction(-1, 3), (Fraction(-3), Fraction(2)))]
    got = I.interval_affine(Fraction(1), terms)
    corners = [Fraction(1) + sum(q * x for (q, _), x in zip(terms, xs))
               for xs in itertools.product(*(b for _, b in terms))]
    assert got == (min(corners), max(corners))


@pytest.mark.parametrize("slope, ok", [(Fraction(-1, 2), False), (Fraction(2), False),
                                       (Fraction(1, 100), True), (Fraction(0), True)])
def test_leaky_relu_interval_only_where_monotone(slope, ok):
    """For a slope outside [0, 1] leaky_relu is not increasing (slope -1/2 on [-2, 1]: f(-2) = 1,
    f(1) = 1, yet f(0) = 0 is outside [1, 1]); the row then gives no interval (the caller falls
    back to its enclosure), inside it the endpoint map encloses."""
    got = _leaky_ival(Fraction(-2), Fraction(1), slope=slope)
    assert (got is not None) == ok
    if ok:
        assert _encloses(lambda a: got, lambda x: x if x >= 0 else slope * x, Fraction(-2), Fraction(1))
