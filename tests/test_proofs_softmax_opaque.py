"""softmax's forward claim with the row maximum opaque (issue 18, ``proofs.autograd.OpaqueMax``).

The kernel subtracts each row's maximum for range; on the symbolic backend that maximum of n entries
was a nested Piecewise of size 2^n (no claim over 8 entries within 100 s). The claim is now proved
for any value subtracted, so for the maximum too. Checked here: the claim over a row of 10 is
proved and checked; a kernel that needs the subtracted value to be 0 (it shifts the numerator
only) is not proved, and is wrong in numpy.
"""

from __future__ import annotations

import numpy as np
import pytest

from torchlean.proofs.artifacts import check_one
from torchlean.proofs.autograd import exact_floats
from torchlean.proofs.compose import node_obligations
from torchlean.proofs.discharge import discharge
from torchlean.runtime.rules import RULES, Rule

FIELDS = {"shapes": [[1, 1, 1, 10]], "attrs": {"axis": -1}, "ints": {}, "column_major": []}


def _forward(key: str):
    with exact_floats():
        obs = node_obligations("softmax", key, FIELDS)
    return next(ob for ob in obs if ob.kind == "forward")


def _shift_numerator_only(xp, x, axis=-1):
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(xp.exp(x), axis=axis, keepdims=True)


def test_the_maximum_is_a_symbol_in_the_claim():
    ob = _forward("softmax.nopaque")
    assert "mx1_0_0_0_0" in ob.smtlib and "ite" not in ob.smtlib  # no Piecewise of the maximum
    assert len(ob.smtlib) < 20_000


@pytest.mark.solver
def test_softmax_over_ten_is_proved_and_checked(tmp_path):
    ob = _forward("softmax.nopaque")
    (rep,) = discharge([ob], tmp_path, solver="cvc5", timeout=60, progress=False)
    assert rep.status == "proved", (rep.status, rep.message)
    assert check_one(tmp_path, ob).status == "checked"


@pytest.mark.solver
def test_a_kernel_that_needs_the_maximum_to_be_zero_is_not_proved(tmp_path, monkeypatch):
    rule = RULES["softmax"]
    monkeypatch.setitem(RULES, "softmax", Rule("softmax", _shift_numerator_only, rule.vjp))
    ob = _forward("softmax.nbroken")
    (rep,) = discharge([ob], tmp_path, solver="cvc5", timeout=30, progress=False)
    assert rep.status != "proved" and not list(tmp_path.glob("*.json")), rep.status
    x = np.array([[0.5, 2.0, -1.0]])
    right = np.exp(x) / np.exp(x).sum()
    assert not np.allclose(_shift_numerator_only(np, x), right)
    np.testing.assert_allclose(rule.forward(np, x), right)
