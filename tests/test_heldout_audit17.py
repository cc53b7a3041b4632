"""Held-out audit audit17: is the interval rule that ``proofs check`` accepts the rule the bound
table runs? (TRUST_BOUNDARIES.md, "Audit audit17".)

On main fd6535c the ``ibp.*`` statements restated, in ``proofs/ibp.py``, which rule each row of
``certificates/functions.py`` runs (increasing or decreasing; ``interval_relu`` / ``_abs`` /
``_square``): a row switched to another rule (exp's ``monotone`` flipped to -1, relu's interval
changed to ``interval_abs``) left every artifact "checked" while the row returned intervals that do
not contain f(x). References: ``math`` / ``mpmath``-free closed forms evaluated in binary64 with a
margin, exact Fractions and brute force.
"""

from __future__ import annotations

import dataclasses
import math
import random
from fractions import Fraction

import pytest

import torchlean  # noqa: F401
from torchlean.certificates import functions as F
from torchlean.certificates import intervals as I
from torchlean.proofs import ibp
from torchlean.proofs.artifacts import LIBRARY_DIR, check_one

MONOTONE = ("reciprocal", "exp", "tanh", "erf", "log", "sqrt", "rsqrt", "sigmoid", "softplus")
REF = {"reciprocal": lambda x: 1 / x, "exp": math.exp, "tanh": math.tanh, "erf": math.erf,
       "log": math.log, "sqrt": math.sqrt, "rsqrt": lambda x: 1 / math.sqrt(x),
       "sigmoid": lambda x: 1 / (1 + math.exp(-x)), "softplus": lambda x: math.log1p(math.exp(x)),
       "relu": lambda x: max(x, 0.0), "abs": abs, "square": lambda x: x * x}


def _outcomes() -> dict[str, str]:
    """Every ibp/relax obligation derived from the code now, checked against the shipped artifacts;
    a derivation that raises is a failure too ("error")."""
    try:
        obs = list(ibp.interval_obligations())
    except Exception:  # noqa: BLE001 - a rule the proofs layer cannot state is not checked
        return {"*": "error"}
    return {ob.name: check_one(LIBRARY_DIR, ob).status for ob in obs}


def test_every_interval_obligation_is_checked_as_shipped():
    out = _outcomes()
    assert len(out) == 19 and set(out.values()) == {"checked"}, out


@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid", "log", "reciprocal", "rsqrt"])
def test_a_row_switched_to_the_other_monotone_rule_is_not_checked(name, monkeypatch):
    row = F.FUNCTIONS[name]
    monkeypatch.setitem(F.FUNCTIONS, name, dataclasses.replace(row, monotone=-row.mono()))
    # the switched row really is wrong (lo above the true value somewhere): the reference says so
    pos = name in ("log", "rsqrt", "reciprocal")
    l, u = (Fraction(1, 2), Fraction(2)) if pos else (Fraction(-1), Fraction(1))
    lo, hi = F.FUNCTIONS[name].interval(l, u)
    x = (float(l) + float(u)) / 2
    assert not (lo <= REF[name](x) <= hi)
    out = _outcomes()
    assert out.get(f"ibp.{name}", "error") != "checked", out


@pytest.mark.parametrize("name,other", [("relu", "interval_abs"), ("abs", "interval_relu"),
                                        ("square", "interval_relu")])
@pytest.mark.parametrize("tagged", [False, True])
def test_a_row_running_another_rule_is_not_checked(name, other, tagged, monkeypatch):
    """The row's interval replaced by another intervals.py rule: a bare function (main's rows were
    such lambdas) or one tagged as that rule (``functions._rule``)."""
    row = F.FUNCTIONS[name]
    ival = F._rule(other) if tagged and hasattr(F, "_rule") else \
        (lambda l, u, **_: getattr(I, other)((l, u)))
    monkeypatch.setitem(F.FUNCTIONS, name, dataclasses.replace(row, ival=ival))
    box = (Fraction(-2), Fraction(1))
    assert F.FUNCTIONS[name].interval(*box) == getattr(I, other)(box)  # the row runs the other rule
    out = _outcomes()
    assert out.get(f"ibp.{name}", out.get("*")) != "checked", out


def test_a_rule_tag_must_name_an_intervals_rule(monkeypatch):
    """A tag naming no rule of intervals.py is refused at derivation (never stated as some rule)."""
    if not hasattr(F, "_rule"):
        pytest.fail("main: the rows name no rule")
    monkeypatch.setitem(F.FUNCTIONS, "relu", dataclasses.replace(F.FUNCTIONS["relu"], ival=F._rule("EXACT")))
    assert _outcomes() == {"*": "error"}


def _grid(name):
    pts = [Fraction(n, 4) for n in range(-12, 13)]
    if name in ("log", "sqrt", "rsqrt"):
        pts = [p for p in pts if p > 0]
    return pts


@pytest.mark.parametrize("name", [*MONOTONE, "relu", "abs", "square"])
def test_each_row_interval_contains_f_at_every_grid_point(name):
    """Correct reading against an independent reference: on every [l, u] of the grid (reciprocal:
    not containing 0) the row's interval holds f at l, u and 5 points between (binary64 reference,
    compared with a relative margin 1e-12, far below the rows' widths yet above the reference's error)."""
    pts = _grid(name)
    for i, l in enumerate(pts):
        for u in pts[i:i + 6]:
            if name == "reciprocal" and l <= 0 <= u:
                continue
            lo, hi = F.FUNCTIONS[name].interval(l, u)
            assert lo <= hi
            for k in range(7):
                x = float(l + (u - l) * k / 6)
                y = REF[name](x)
                eps = 1e-12 * max(1.0, abs(y))
                assert float(lo) - eps <= y <= float(hi) + eps, (name, l, u, x)


def test_sqrt_row_at_zero_is_sound_though_ibp_sqrt_assumes_l_positive():
    """The sqrt row's domain is l >= 0, ``ibp.sqrt``'s l > 0 (mono_sqrt needs a > 0): the l = 0 case
    is argued, not SMT-proved (TRUST_BOUNDARIES.md, audit17). Its reading is right: sqrt(0) = 0."""
    lo, hi = F.FUNCTIONS["sqrt"].interval(0, 4)
    assert lo <= 0 and 2 <= hi
    ob = next(o for o in ibp.interval_obligations() if o.name == "ibp.sqrt")
    assert "(> l 0)" in ob.smtlib


def test_interval_affine_exact_matches_brute_force():
    """``ExactOps.dot`` (the checker's exact sum; ``ibp.affine`` is stated over sympy's) against the
    corners enumerated: the affine rule's ends are the min and max over the box's corners."""
    rng = random.Random(17)
    for _ in range(300):
        n = rng.randint(1, 4)
        c = Fraction(rng.randint(-9, 9), 2 ** rng.randint(0, 5))
        terms = []
        for _ in range(n):
            q = Fraction(rng.randint(-9, 9), rng.choice([1, 2, 3, 8, 1024]))
            a, b = sorted(Fraction(rng.randint(-20, 20), rng.choice([1, 4, 5, 64])) for _ in range(2))
            terms.append((q, (a, b)))
        vals = [c]
        for q, (a, b) in terms:
            vals = [v + q * e for v in vals for e in (a, b)]
        assert I.interval_affine(c, terms) == (min(vals), max(vals))


@pytest.mark.parametrize("patch", [
    "FUNCTIONS['exp'] = dataclasses.replace(FUNCTIONS['exp'], monotone=-1)",
    "FUNCTIONS['relu'] = dataclasses.replace(FUNCTIONS['relu'], ival=lambda l, u, **_: (l, u))",
    "intervals.interval_relu = lambda a, ops=None: (a[0], a[0])",
])
def test_a_project_replacing_an_interval_rule_gets_the_library_checked(tmp_path, patch):
    """``proofs check`` in a project (torchlean's own artifacts not asked for) whose module replaces
    a row or rule of the bound table: the shipped ``ibp.*`` claims are then checked and fail, as for
    a replaced runtime rule (main: "0 obligations", exit 0, though the rows now run an unproved rule)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "pyproject.toml").write_text('[tool.torchlean]\nmodules = ["swap_rule"]\n')
    (tmp_path / "swap_rule.py").write_text(
        "import dataclasses\nfrom torchlean.certificates import intervals\n"
        f"from torchlean.certificates.functions import FUNCTIONS\n{patch}\n")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(tmp_path)]))
    r = subprocess.run([sys.executable, "-m", "torchlean.proofs", "check"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "ibp." in r.stdout + r.stderr or "internal error" in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
