"""Softmax under a -inf attention mask (``where(mask, -inf, scores)``, as ``MultiheadAttention``
traces a causal mask) in the bound table and the rounding-error column: a masked entry is exactly
0 in IEEE arithmetic and drops out of its group; -inf anywhere else is refused."""

from __future__ import annotations

import base64
import copy
import struct
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates import check
from torchlean.certificates.bound_graph import Unsupported
from torchlean.certificates.core import digest
from torchlean.certificates.lower import lower
from torchlean.floats import bound_certificate, epsilons
from torchlean.runtime.execute import run_graph
from torchlean.verify import engines

sys.path.insert(0, str(Path(__file__).parent))
from test_floats_column import as32, box_of, observed  # noqa: E402

MASK = np.array([[True, False, False, True, False, True]])  # True: masked (-inf)


def _graph(tail="softmax", mask=MASK):
    """x (1, 4) -> tanh(x W) (1, 6) -> where(mask, -inf, .) -> ``tail`` -> matmul V (1, 2)."""
    rng = np.random.default_rng(5)
    c = {"W": rng.normal(0, 1.0, (4, 6)), "V": rng.normal(0, 1.0, (6, 2)), "M": mask,
         "ninf": np.array(-np.inf)}
    nodes = [("matmul", ["x", "W"], "h"), ("tanh", ["h"], "t"), ("where", ["M", "ninf", "t"], "w"),
             (tail, ["w"], "s", {"axis": -1}) if "softmax" in tail else (tail, ["w"], "s"),
             ("matmul", ["s", "V"], "y")]
    return as32(nodes, c)


def _softmax_masked(t, mask):
    """The reference: softmax over the unmasked entries only, 0 at masked ones (float64)."""
    out = np.zeros_like(t)
    keep = ~mask[0]
    e = np.exp(t[keep] - t[keep].max())
    out[keep] = e / e.sum()
    return out


def test_epsilon_covers_the_observed_error_and_masked_outputs_are_exact():
    g = _graph()
    box = box_of(np.random.default_rng(2), (1, 4), Fraction(1, 2))
    cert = bound_certificate(g, box, "binary32")
    v = check(cert)
    assert v.ok, v.reason
    eps = np.array([float(e) for e in epsilons(cert)])
    assert np.all(observed(g, box, "binary32", n=200) <= eps)
    assert eps.max() < 1e-3  # a float32-sized bound (outputs are O(1)), not a saturated one
    soft = cert["statement"]["graph"]["nodes"].index(next(n for n in cert["statement"]["graph"]["nodes"]
                                                          if n["op"] == "softmax"))
    steps = [float(Fraction(e)) for e in cert["steps"][soft]]
    assert all(steps[j] == 0 for j in np.flatnonzero(MASK[0]))  # exp(-inf) = 0: no rounding
    assert all(steps[j] > 0 for j in np.flatnonzero(~MASK[0]))


def test_bound_table_ranges_contain_the_masked_softmax():
    """IBP and CROWN output bounds of the lowered graph contain the float64 evaluation of softmax
    over the unmasked entries (an independent reference) at sampled points of the box."""
    g = _graph()
    box = box_of(np.random.default_rng(3), (1, 4), Fraction(1, 2))
    bg = lower(g.to_dict())
    W = np.asarray(g.constants["W"], dtype=np.float64)
    V = np.asarray(g.constants["V"], dtype=np.float64)
    rng = np.random.default_rng(0)
    lo = np.array([float(a) for a, _ in box])
    hi = np.array([float(b) for _, b in box])
    for bounds in (engines.exact_ibp, engines.exact_crown):
        L, U = bounds(bg, [a for a, _ in box], [b for _, b in box])
        for _ in range(200):
            x = lo + (hi - lo) * rng.uniform(0, 1, 4)
            y = _softmax_masked(np.tanh(x @ W), MASK) @ V
            y_rt = np.asarray(run_graph(g, {"x": x.reshape(1, 4)}, dtype=np.float64)[0]).ravel()
            assert np.allclose(y, y_rt, rtol=1e-12, atol=1e-12)  # the runtime agrees with the reference
            assert all(float(a) - 1e-12 <= yi <= float(b) + 1e-12 for a, b, yi in zip(L, U, y))


@pytest.mark.parametrize("tail", ["log_softmax", "relu"])
def test_minus_inf_anywhere_else_is_refused(tail):
    with pytest.raises(Unsupported):
        lower(_graph(tail).to_dict())


def test_a_fully_masked_group_is_refused():
    with pytest.raises(Unsupported):
        lower(_graph(mask=np.ones((1, 6), dtype=bool)).to_dict())


def test_mutations_are_rejected():
    g = _graph()
    box = box_of(np.random.default_rng(2), (1, 4), Fraction(1, 2))
    cert = bound_certificate(g, box, "binary32", ranges="ibp")
    assert check(cert).ok
    nodes = cert["statement"]["graph"]["nodes"]
    soft = [n["op"] for n in nodes].index("softmax")
    keep = int(np.flatnonzero(~MASK[0])[0])
    bad = copy.deepcopy(cert)  # an unmasked softmax output claimed exact, like a masked one
    bad["steps"][soft][keep] = "0"
    assert not check(bad).ok
    bad = copy.deepcopy(cert)  # the mask's constant replaced by a finite value: the graph changed
    ninf = bad["statement"]["graph"]["constants"]["ninf"]
    ninf["data"] = base64.b64encode(struct.pack("<f", -1e4)).decode()
    bad["digest"] = digest(bad["statement"])
    assert not check(bad).ok  # the model fingerprint no longer matches
    bad = copy.deepcopy(cert)
    bad["statement"]["epsilon"] = [str(Fraction(e) / 2) for e in bad["statement"]["epsilon"]]
    bad["digest"] = digest(bad["statement"])
    assert not check(bad).ok


# -- the range rule of a saturating function (sigmoid, tanh, erf) ---------------------------------

def _deep_tanh(layers=24, gain=3.0):
    """x (1, 4) -> layers x tanh(h W_k) (each W_k ~ gain/2: the error bound grows ~gain x per
    layer by the mean value theorem alone) -> matmul V (1, 2)."""
    rng = np.random.default_rng(11)
    c = {f"W{k}": rng.normal(0, gain / 2, (4, 4)) for k in range(layers)}
    c["V"] = rng.normal(0, 1.0, (4, 2))
    nodes, cur = [], "x"
    for k in range(layers):
        nodes += [("matmul", [cur, f"W{k}"], f"z{k}"), ("tanh", [f"z{k}"], f"h{k}")]
        cur = f"h{k}"
    nodes.append(("matmul", [cur, "V"], "y"))
    return as32(nodes, c)


def test_saturating_functions_cap_a_long_chain_of_errors():
    """Through 24 expanding tanh layers the mean-value bound alone overflows binary32; the range
    rule (|tanh~(x~) - tanh(x)| <= the width of the union of the float and real output ranges)
    keeps every step finite, and the certified epsilon still covers the observed error."""
    g = _deep_tanh()
    box = box_of(np.random.default_rng(4), (1, 4), Fraction(1, 4))
    cert = bound_certificate(g, box, "binary32", ranges="ibp")
    v = check(cert)
    assert v.ok, v.reason
    eps = np.array([float(e) for e in epsilons(cert)])
    assert np.all(observed(g, box, "binary32", n=100) <= eps)
    V = np.abs(np.asarray(g.constants["V"], dtype=np.float64)).sum(0)
    assert np.all(eps <= 2.01 * V + 1e-3)  # at most the tanh range's width (2) through the head
    tanh_steps = [i for i, n in enumerate(cert["statement"]["graph"]["nodes"]) if n["op"] == "tanh"]
    assert max(float(Fraction(e)) for e in cert["steps"][tanh_steps[-1]]) <= 2.01
    bad = copy.deepcopy(cert)  # a capped step claimed below the rule's bound: rejected
    bad["steps"][tanh_steps[-1]] = [str(Fraction(e) / 4) for e in bad["steps"][tanh_steps[-1]]]
    assert not check(bad).ok


def test_the_range_rule_is_what_bounds_the_chain(monkeypatch):
    """On the chain above the rule is applied (a bare new source of about the range's width, far
    above any rounding-sized bound), so the test before it exercises the rule, not the mean value
    theorem alone."""
    from torchlean.certificates import errorctx

    real_make = errorctx.Ctx.make

    def no_cap(self, lo, hi, terms, rem, local, g=None):
        if not terms and local > 1e-3:  # (the range rule's make: a bare source of the cap's size)
            raise OverflowError("capped")
        return real_make(self, lo, hi, terms, rem, local, g)

    monkeypatch.setattr(errorctx.Ctx, "make", no_cap)
    g = _deep_tanh()
    box = box_of(np.random.default_rng(4), (1, 4), Fraction(1, 4))
    with pytest.raises(OverflowError):
        bound_certificate(g, box, "binary32", ranges="ibp")


def test_a_format_without_infinities_is_refused():
    """-inf is no value of e4m3 (finite-only): the mask cannot be run there, so no epsilon."""
    from torchlean.certificates.core import Rejected

    g = _graph()
    box = box_of(np.random.default_rng(2), (1, 4), Fraction(1, 2))
    with pytest.raises(Rejected, match="-inf has no value"):
        bound_certificate(g, box, "e4m3", ranges="ibp")
