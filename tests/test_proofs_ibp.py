"""The interval rules the bound table runs are the ones ``proofs/ibp.py`` proves: wrong rules are
refused by the solver through the discharge path, every part of the table has an obligation or a
stated reason, and the rows and the engine call ``intervals.py`` (no second copy)."""

from fractions import Fraction as Q

import pytest
import sympy

import torchlean  # noqa: F401
from torchlean.certificates import engine, intervals
from torchlean.certificates.functions import FUNCTIONS
from torchlean.proofs import ibp
from torchlean.proofs.discharge import discharge


def _obligation(name):
    (ob,) = [o for o in ibp.interval_obligations() if o.name == name]
    return ob


def _refuted(ob, tmp_path):
    (r,) = discharge([ob], tmp_path, solver="z3", timeout=20, progress=False)
    return r


# wrong rules, each written against the same ops namespace the proved rule uses
def _square_ends(a, ops=intervals.EXACT):  # [min(l^2, u^2), max(l^2, u^2)]: wrong when l < 0 < u
    return ops.min(a[0] * a[0], a[1] * a[1]), ops.max(a[0] * a[0], a[1] * a[1])


def _mul_diagonal(a, b, ops=intervals.EXACT):  # only two corners: wrong for mixed signs
    return ops.min(a[0] * b[0], a[1] * b[1]), ops.max(a[0] * b[0], a[1] * b[1])


def _affine_unsigned(c, terms, ops=intervals.EXACT):  # ignores the sign of the coefficient
    lo = hi = c
    for q, (l, u) in terms:
        lo, hi = lo + q * l, hi + q * u
    return lo, hi


_MCCORMICK = intervals.mccormick


def _mccormick_swapped(a, b, t_lo, t_up, ops=intervals.EXACT):  # lower plane with lx, ux swapped
    (lx, ux), (lw, uw) = a, b
    good = _MCCORMICK(a, b, t_lo, t_up, ops)
    return ((1 - t_lo) * lw + t_lo * uw, (1 - t_lo) * ux + t_lo * lx,
            -(1 - t_lo) * ux * lw - t_lo * lx * uw), good[1]


def _max_first(group, ops=intervals.EXACT):  # the first member's interval only
    return group[0]


MUTANTS = [
    ("ibp.square", "interval_square", _square_ends),
    ("ibp.mul", "interval_mul", _mul_diagonal),
    ("ibp.affine", "interval_affine", _affine_unsigned),
    ("relax.mul.lower", "mccormick", _mccormick_swapped),
    ("ibp.max", "interval_max", _max_first),
    ("ibp.reciprocal", "interval_decreasing", intervals.interval_increasing),  # 1/x is decreasing
    ("ibp.sigmoid", "interval_increasing", intervals.interval_decreasing),
]


@pytest.mark.solver
@pytest.mark.parametrize("name,attr,wrong", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_wrong_interval_rule_is_refused_with_a_counterexample(tmp_path, monkeypatch, name, attr, wrong):
    """The mutated rule is what the obligation is re-derived from (the same source the library's
    artifacts come from), and the solver finds the point where it fails."""
    good = _obligation(name)
    monkeypatch.setattr(intervals, attr, wrong)
    bad = _obligation(name)
    assert bad.smtlib != good.smtlib
    r = _refuted(bad, tmp_path)
    assert r.status == "refuted", (r.status, r.message)
    assert "counterexample: " in r.message
    assert not list(tmp_path.glob("*.json"))  # nothing is written for a refuted claim


@pytest.mark.solver
def test_reciprocal_across_zero_is_refused(tmp_path):
    """The reciprocal rule without its domain (l > 0 or u < 0): l < 0 < u gives a counterexample."""
    ob = ibp._monotone("reciprocal", lambda v: 1 / v, lambda a, b: [],
                       value=1 / sympy.Symbol("x", real=True))
    assert "(or (> l 0) (< u 0))" not in ob.smtlib and "(or (> l 0) (< u 0))" in _obligation(
        "ibp.reciprocal").smtlib
    r = _refuted(ob, tmp_path)
    assert r.status == "refuted" and "l = " in r.message and "u = " in r.message


@pytest.mark.solver
def test_leaky_relu_rule_needs_its_slope_range(tmp_path):
    """With a negative slope allowed the endpoint rule is wrong (the function is not increasing)."""
    ob = _obligation("ibp.leaky_relu")
    bad = ob.__class__(**{**ob.__dict__, "smtlib": ob.smtlib.replace("(<= 0 s)", "(<= (- 1) s)")})
    r = _refuted(bad, tmp_path)
    assert r.status == "refuted"


def test_every_table_part_has_an_obligation_or_a_reason():
    from torchlean.proofs.coverage import coverage, gaps, part_status

    st = part_status()
    assert set(st) == {"affine", "mul", "max", *FUNCTIONS}
    assert {p for p, (s, _) in st.items() if s == "argued"} == {"silu", "gelu", "pow"}
    for p in ("affine", "mul", "max", "square", "reciprocal", "rsqrt", "sigmoid", "softplus", "relu",
              "leaky_relu", "abs", "exp", "log", "sqrt", "tanh", "erf"):
        assert st[p][0] == "proved", p
    assert "relax.mul.lower" in st["mul"][1] and "relax.mul.upper" in st["mul"][1]
    cov = coverage()
    assert cov["layer_norm"]["ibp_parts"] == ["affine", "mul", "reciprocal", "sqrt", "square"]
    assert cov["gelu"]["ibp"] == "argued" and cov["gelu"]["ibp_why"] == ["gelu"]
    assert all(r["ibp"] is True for n, r in cov.items() if n not in ("gelu", "silu"))
    assert gaps() == []


def test_coverage_fails_on_a_row_with_neither_obligation_nor_reason(monkeypatch):
    from torchlean.proofs.coverage import coverage, gaps

    monkeypatch.setitem(FUNCTIONS, "cube", FUNCTIONS["square"])  # a new row, nothing said about it
    assert gaps() == ["cube: interval rule neither SMT-proved nor a stated reason"]
    monkeypatch.setitem(ibp.NOT_PROVED, "cube", "a stated reason")
    assert gaps() == []
    # an obligation a part names but the source no longer yields: the part is a gap, and so is
    # every primitive whose lowering runs it
    monkeypatch.setitem(ibp.PARTS, "square", ("ibp.square_gone",))
    assert coverage()["layer_norm"]["ibp"] is False
    assert "square: interval rule neither SMT-proved nor a stated reason" in gaps()
    assert "layer_norm: the interval rules its bound row runs are unknown" in gaps()


def test_rows_and_engine_run_the_proved_rules(monkeypatch):
    """One copy: the engine's names are the functions of intervals.py, and the function rows look
    the rules up there (a changed rule changes what they return)."""
    for name in ("interval_affine", "interval_mul", "interval_max", "mccormick"):
        assert getattr(engine, name) is getattr(intervals, name)
    monkeypatch.setattr(intervals, "interval_square", lambda a, ops=None: (Q(-5), Q(5)))
    assert FUNCTIONS["square"].interval(Q(-1), Q(2)) == (-5, 5)
    fake = ((Q(-4), Q(0)), (Q(0), Q(4)))
    monkeypatch.setattr(intervals, "interval_decreasing", lambda f, a, ops=None: fake)
    assert FUNCTIONS["reciprocal"].interval(Q(1), Q(2)) == (-4, 4)
    assert FUNCTIONS["rsqrt"].interval(Q(1), Q(2)) == (-4, 4)


def test_proved_rules_are_exact_and_tight_on_fractions():
    """The rules on Fractions (what the checker computes), against direct evaluation."""
    assert intervals.interval_square((Q(-2), Q(1))) == (0, 4)
    assert intervals.interval_square((Q(-3), Q(-1))) == (1, 9)
    assert intervals.interval_mul((Q(-2), Q(3)), (Q(-5), Q(1))) == (-15, 10)
    assert intervals.interval_affine(Q(1), [(Q(2), (Q(-1), Q(1))), (Q(-3), (Q(0), Q(2)))]) == (-7, 3)
    assert intervals.interval_max([(Q(-1), Q(0)), (Q(-3), Q(2)), (Q(-2), Q(-1))]) == (-1, 2)
    (ax, aw, c), (bx, bw, d) = intervals.mccormick((Q(-1), Q(2)), (Q(0), Q(3)), Q(1, 3), Q(1, 2))
    for x in (Q(-1), Q(0), Q(2), Q(1, 2)):
        for w in (Q(0), Q(3), Q(1)):
            assert ax * x + aw * w + c <= x * w <= bx * x + bw * w + d


@pytest.mark.solver
def test_erf_vjp_with_a_rounded_constant_is_refuted(tmp_path, monkeypatch):
    """The runtime's erf VJP reads 2/sqrt(pi) from the namespace: exact on the symbolic backend. Were
    it the binary64 float there too, autograd.erf would compare a rational with 2/sqrt(pi) and be
    refuted, not proved: the obligation is not weakened to pass."""
    from torchlean.proofs.autograd import primitive_obligations
    from torchlean.runtime.symbolic import SymbolicNamespace

    (good,) = [o for o in primitive_obligations("erf") if o.name == "autograd.erf"]
    assert "tl_rsqrt_pi" in good.smtlib
    monkeypatch.delattr(SymbolicNamespace, "m_2_sqrtpi")
    (bad,) = [o for o in primitive_obligations("erf") if o.name == "autograd.erf"]
    assert bad.smtlib != good.smtlib
    r = _refuted(bad, tmp_path)
    assert r.status == "refuted" and "tl_rsqrt_pi" not in r.message.split("\n")[0]
