"""Audit 34: a value outside a function's domain times an exact 0 (or not read at all).

The fast engine (``certificates/fast_engine.py``) gave an fn element whose argument bounds leave
its row's domain the vacuous bounds; ``log(x) * 0``, ``log(x) - log(x)``, ``sqrt(x) * 0``,
``(1/x) * 0`` and layer_norm with eps 0 and weight 0 drop those bounds (a 0 coefficient, a dead
node), so ``verify.bounds`` / ``tl.verify.bounds`` returned finite bounds ([-9e-302, 9e-302]) on
[-1, 1] while the runtime's run (``run_graph``, the reference here) is NaN at points of the box.
The exact engine refuses such a box (``DomainError``). The fast engine now marks a box where some
fn node's argument bounds leave its domain (``fast_engine.undefined``): its replayed bounds are
vacuous there (``bound_forms``, ``extras_lower``), the fast error column refuses, and the public
bound calls raise ``DomainError`` with the exact engine's one-line reason. A sum of terms >= 0
(layer norm's var + eps) keeps its constant as a lower bound (``_Forms.floor``), so the eps > 0
layer norms the exact engine accepts are not refused by float rounding.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from ir_util import ir_doc as _ir

import torchlean as tl
from torchlean import nn
from torchlean.certificates import engine
from torchlean.certificates import fast_engine as fe
from torchlean.certificates.enclosures import DomainError
from torchlean.certificates.fast_vnn import extras_lower
from torchlean.runtime.execute import run_graph
from torchlean.spec.graph import Graph

vb = importlib.import_module("torchlean.verify.bounds")


Z = {"z": np.zeros(2)}
CASES = {
    "log*0": (_ir([("x", (2,))], Z, [("log", ["x"], "a", {}), ("mul", ["a", "z"], "y", {})], ["y"]), -0.5),
    "sqrt*0": (_ir([("x", (2,))], Z, [("sqrt", ["x"], "a", {}), ("mul", ["a", "z"], "y", {})], ["y"]), -0.5),
    "recip*0": (_ir([("x", (2,))], {**Z, "o": np.ones(2)},
                    [("div", ["o", "x"], "a", {}), ("mul", ["a", "z"], "y", {})], ["y"]), 0.0),
    "log-log": (_ir([("x", (2,))], {}, [("log", ["x"], "a", {}), ("sub", ["a", "a"], "y", {})], ["y"]), -0.5),
    "ln eps 0 weight 0": (_ir([("x", (2, 4))], {"w": np.zeros(4), "b": np.ones(4)},
                              [("layer_norm", ["x", "w", "b"], "y", {"eps": 0.0})], ["y"]), 0.0),
}


def _run(d, v):
    g = Graph.from_dict(json.loads(json.dumps(d)))
    with np.errstate(all="ignore"):
        out = run_graph(g, {"x": np.full(g.inputs[0].shape, v)})
    return np.concatenate([np.asarray(o, dtype=float).ravel() for o in out])


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("method", ["ibp", "crown", "alpha-crown"])
def test_bounds_refuse_a_box_where_the_run_is_not_a_number(name, method):
    d, at = CASES[name]
    y = _run(d, at)  # a point of the box [-1, 1]^n
    assert not np.isfinite(y).all()  # the reference: the run is NaN (or inf) there
    n = 8 if "ln" in name else 2
    with pytest.raises(DomainError, match="outside the domain"):  # (were finite: +-9e-302, or b)
        vb.bounds(d, (-np.ones(n), np.ones(n)), method)
    with pytest.raises(DomainError):  # the exact engine's rule, which the fast engine now follows
        engine.forward(vb._bound_graph(d), [Fraction(-1)] * n, [Fraction(1)] * n, "crown")


def test_a_node_no_output_reads_is_refused_by_both_engines():
    """Agreement, not a false claim: ``log(x)`` computed and not read (the run's output relu(x) is
    a number); the exact engine refuses every fn node's domain violation, so the fast one does."""
    d = _ir([("x", (2,))], {}, [("log", ["x"], "a", {}), ("relu", ["x"], "y", {})], ["y"])
    bg = vb._bound_graph(d)
    assert any(n.kind == "fn" and n.fn == "log" for n in bg.nodes)
    with pytest.raises(DomainError):
        engine.forward(bg, [Fraction(-1)] * 2, [Fraction(1)] * 2, "ibp")
    with pytest.raises(DomainError):
        vb.bounds(d, (-np.ones(2), np.ones(2)), "ibp")


def test_traced_model_log_times_zero_is_refused():
    """``tl.verify.bounds`` of a model: the box [-0.01, 0.61] x [0.19, 0.81] passes the trace
    check (its sample points miss x0 <= 0) and the old answer was [-0.01, 0.61] for y0, "checked
    by" the fast engine, while the run at x0 = -0.005 is NaN."""
    class LogZero(nn.Module):
        def forward(self, x):
            return x + x.log() * 0.0

    m = LogZero().eval()
    g = tl.trace(m, tl.tensor(np.array([[0.5, 0.5]])))
    with np.errstate(all="ignore"):
        assert np.isnan(run_graph(g, {g.inputs[0].name: np.array([[-0.005, 0.5]])})[0][0, 0])
    with pytest.raises(DomainError, match="log: interval"):
        tl.verify.bounds(m, np.array([[0.3, 0.5]]), 0.31)
    with pytest.raises(DomainError, match="log: interval"):
        vb.bounds(g, (np.array([-0.6, -0.1]), np.array([0.6, 1.1])), "crown")
    r = tl.verify.bounds(m, np.array([[0.5, 0.5]]), 0.25)  # inside the domain: bounded
    assert np.all(r.lower >= 0.25 - 1e-9) and np.all(r.upper <= 0.75 + 1e-9)


def test_one_box_of_a_batch_replays_vacuous_the_other_keeps_its_bound():
    d, _ = CASES["log*0"]
    bg = vb._bound_graph(d)
    fg = fe.compiled(bg)
    lo, hi = np.array([[-1.0, -1.0], [0.5, 0.5]]), np.array([[1.0, 1.0], [1.0, 1.0]])
    for method in ("ibp", "crown"):
        st = fe.forward(fg, lo, hi, method)
        bad, why = fe.undefined(st)
        assert bad.tolist() == [True, False] and why.startswith("log: interval [-1, 1]")
        F = fe.forms_of(bg, list(bg.outputs))
        lb = fe.bound_forms(st, F)  # what the fast VNN replay compares claims with
        assert np.isneginf(lb[0]).all() and np.isfinite(lb[1]).all() and (lb[1] <= 0).all()
        low = extras_lower(bg, F, st, [(0, 0, {}, None), (1, 0, {}, None)], None)
        assert np.isneginf(low[0]) and np.isfinite(low[1])
    with pytest.raises(DomainError):  # the exact engine: the first box refused, the second not
        engine.forward(bg, [Fraction(-1)] * 2, [Fraction(1)] * 2, "crown")
    engine.forward(bg, [Fraction(1, 2)] * 2, [Fraction(1)] * 2, "crown")
    low, up = vb.bounds(d, (lo[1], hi[1]), "crown")
    assert np.all(low <= 0) and np.all(up >= 0) and np.all(up - low < 1e-200)


@pytest.mark.parametrize("n,eps,scale", [(768, 1e-12, 1.0), (768, 1e-12, 100.0), (64, 1e-12, 100.0),
                                         (4, 1e-5, 1.0), (768, 1e-5, 100.0)])
def test_layer_norm_eps_positive_stays_bounded_around_a_constant_row(n, eps, scale):
    """A box around a constant row: the exact engine accepts (var + eps >= eps exactly), so must
    the fast one (its float IBP put var + 1e-12 at -3e-11 on a 768-wide row before ``floor``)."""
    rng = np.random.default_rng(n)
    d = _ir([("x", (1, n))], {"w": rng.normal(size=n), "b": rng.normal(size=n)},
            [("layer_norm", ["x", "w", "b"], "y", {"eps": eps})], ["y"])
    c = np.full(n, 0.3)
    for method in ("ibp", "crown"):
        low, up = vb.bounds(d, (c - scale, c + scale), method)
        assert np.isfinite(low).all() and np.isfinite(up).all()
        g = Graph.from_dict(json.loads(json.dumps(d)))
        for x in (c, c + scale * rng.uniform(-1, 1, size=n)):
            (y,) = run_graph(g, {"x": x.reshape(1, n)})
            assert np.all(low <= y.ravel() + 1e-9) and np.all(y.ravel() <= up + 1e-9)


def test_floor_is_a_lower_bound_of_sums_of_nonnegative_terms():
    """``_Forms.floor`` against exact sums: random rows q >= 0 over variables in [L, U] (L
    slightly negative or positive), the exact minimum sum q·L + c never below the floor; a row
    with a negative coefficient has none."""
    from torchlean.certificates.bound_graph import Aff
    from torchlean.certificates.fast_forms import _Forms

    rng = np.random.default_rng(3)
    for _ in range(40):
        n = int(rng.integers(1, 30))
        qs = [Fraction(int(v), int(rng.integers(1, 1000))) for v in rng.integers(1, 50, size=n)]
        c = Fraction(int(rng.integers(-5, 5)), 3) * Fraction(1, 10 ** int(rng.integers(0, 15)))
        L = rng.choice([0.0, -1e-300, 1e-3, -1e-12]) * rng.uniform(0, 1, size=n)
        F = _Forms([Aff(dict(enumerate(qs, start=1)), c)], [0, 1], [1, n])
        fl = F.floor([np.zeros((1, 1)), L[None]])[0, 0]
        exact_min = sum(q * Fraction(v) for q, v in zip(qs, L)) + c
        assert np.isfinite(fl) and Fraction(fl) <= exact_min
    Ls = [np.zeros((1, 1)), np.zeros((1, 2))]
    for q in (Fraction(-1, 10), Fraction(-1, 10 ** 400), Fraction(1, 10 ** 400)):  # (the last two: 0.0)
        F = _Forms([Aff({1: Fraction(1), 2: q}, Fraction(1))], [0, 1], [1, 2])
        assert np.isneginf(F.floor(Ls)).all()  # (a coefficient < 0, or one whose sign floats lost)


def test_floats_bound_cli_refuses_both_columns(tmp_path):
    d, _ = CASES["log*0"]
    p = tmp_path / "net.json"
    p.write_text(json.dumps(d))
    for extra in ([], ["--ranges", "fast"], ["--ranges", "fast", "--column", "fast"]):
        cmd = [sys.executable, "-m", "torchlean.floats", "bound", str(p), "--box", "-1:1", *extra]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert r.returncode != 0 and "certified" not in r.stdout
        assert "domain" in r.stderr or "unbounded" in r.stderr


@pytest.mark.parametrize("op,attrs", [("pow", {"exponent": e}) for e in (0.5, -1.0, 2.0, -2.0, 1.5)]
                         + [("log", {}), ("sqrt", {}), ("exp", {})])
def test_the_two_engines_refuse_the_same_boxes(op, attrs):
    """Agreement sweep: for each box, the fast bounds are refused exactly where the exact engine
    raises ``DomainError`` (and where they are not, they contain the run at the box's ends)."""
    d = _ir([("x", (2,))], {}, [(op, ["x"], "y", attrs)], ["y"])
    bg = vb._bound_graph(d)
    g = Graph.from_dict(json.loads(json.dumps(d)))
    for lo, hi in ((0.5, 1.0), (-1.0, 1.0), (-2.0, -1.0), (0.0, 1.0), (1.0, 7e4)):
        try:
            engine.forward(bg, [Fraction(lo)] * 2, [Fraction(hi)] * 2, "crown")
            exact_ok = True
        except DomainError:
            exact_ok = False
        try:
            low, up = vb.bounds(d, (np.full(2, lo), np.full(2, hi)), "crown")
            fast_ok = True
        except DomainError:
            fast_ok = False
        assert fast_ok == exact_ok, (lo, hi)
        if fast_ok:
            for v in (lo, hi):
                with np.errstate(all="ignore"):
                    (y,) = run_graph(g, {"x": np.full(2, v)})
                assert np.all(low <= y) and np.all(y <= up)
