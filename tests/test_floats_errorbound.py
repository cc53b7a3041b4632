"""Certified rounding-error bounds: replay, soundness against sampled points, and mutations."""

from __future__ import annotations

import copy
import sys
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest

from torchlean.certificates import check
from torchlean.certificates.core import digest
from torchlean.certificates.errorbound import model_id
from torchlean.floats import bound_certificate, epsilons, float_sound_bounds, observed_error, widen
from torchlean.floats.errorbound import sample_box
from torchlean.floats.network import LoweringError, run_float
from torchlean.spec.exact import evaluate

sys.path.insert(0, str(Path(__file__).parent))
from floats_models import cnn, mlp  # noqa: E402

BOX4 = [(-1, 1)] * 4
MODELS = {
    "mlp-relu": (lambda: mlp([4, 16, 16, 2], "relu"), BOX4),
    "mlp-tanh": (lambda: mlp([4, 16, 16, 2], "tanh"), BOX4),
    "mlp-sigmoid": (lambda: mlp([4, 16, 16, 2], "sigmoid"), BOX4),
    "cnn": (cnn, [(0, 1)] * 64),
}


def _eps(cert):
    return np.array([float(e) for e in epsilons(cert)])


@pytest.mark.parametrize("name", list(MODELS))
def test_bound_replays_and_holds_on_10000_points(name):
    make, box = MODELS[name]
    g = make()
    cert = bound_certificate(g, box, "binary32")
    v = check(cert)
    assert v.ok and v.fully_checked, v.reason
    eps = _eps(cert)
    obs = observed_error(g, box, n=10_000)
    # true error <= |f32 - f64| + |f64 - real| <= observed + certified binary64 bound
    assert np.all(obs.max_error + obs.reference_error <= eps), (obs.max_error, eps)
    assert np.all(obs.max_error > 0)
    ratio = eps / obs.max_error
    assert np.all(ratio < 1e4), ratio  # tight enough to be useful on small models


@pytest.mark.parametrize("name", ["mlp-tanh", "cnn"])
def test_binary64_reference_agrees_with_mpmath(name):
    make, box = MODELS[name]
    g = make()
    x = sample_box(box, 20, np.float32, seed=3)
    ref64 = run_float(g, x.astype(np.float64), np.float64)
    f32 = run_float(g, x, np.float32)
    eps = _eps(bound_certificate(g, box, "binary32"))
    for xi, r64, r32 in zip(x, ref64, f32):
        exact = evaluate(g, {"x": xi.reshape(g.inputs[0].shape)}, digits=40)[0].ravel()
        for j, e in enumerate(exact):
            assert abs(mpmath.mpf(float(r64[j])) - e) < 1e-12
            assert abs(mpmath.mpf(float(r32[j])) - e) <= eps[j]


def test_other_formats_and_modes_replay():
    g = mlp([3, 8, 2], "relu", seed=2)
    for fmt, mode in [("bfloat16", "rne"), ("binary16", "rtz"), ("binary64", "rne")]:
        # weights are float32: bfloat16/binary16 need weights representable in the format
        if fmt != "binary64":
            g2 = copy.deepcopy(g)
            dt = np.float16
            g2.constants = {k: v.astype(dt).astype(np.float32) for k, v in g.constants.items()}
            g2.check()
        else:
            g2 = g
        cert = bound_certificate(g2, [(-1, 1)] * 3, fmt, mode)
        assert check(cert).ok
    e32 = _eps(bound_certificate(g, [(-1, 1)] * 3, "binary32"))
    e64 = _eps(bound_certificate(g, [(-1, 1)] * 3, "binary64"))
    assert np.all(e64 < e32 * 1e-8)


def _acas_path():
    for root in (Path(__file__).parent / "data" / "vnncomp2021" / "acasxu",
                 Path("/work/shared/data/vnncomp2021/acasxu")):
        if (root / "ACASXU_run2a_1_1_batch_2000.onnx").exists():
            return root
    return None


@pytest.mark.skipif(_acas_path() is None, reason="ACAS Xu networks not available")
def test_acasxu_bound_is_sound_on_property_box():
    from torchlean.bridge.onnx import load_onnx
    from torchlean.bridge.vnnlib import parse_vnnlib

    root = _acas_path()
    g = load_onnx(root / "ACASXU_run2a_1_1_batch_2000.onnx")
    prop = parse_vnnlib(root / "prop_3.vnnlib")
    box = [(Fraction(float(a)), Fraction(float(b))) for a, b in zip(prop.lower, prop.upper)]
    cert = bound_certificate(g, box, ranges="ibp")  # (CROWN ranges: tighter, ~6x the time)
    assert check(cert).ok
    obs = observed_error(g, box, n=10_000)
    assert np.all(obs.max_error + obs.reference_error <= _eps(cert))


# -- mutations ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cert():
    return bound_certificate(mlp([4, 8, 8, 2], "relu", seed=5), BOX4)


def _resign(c):
    c["digest"] = digest(c["statement"])
    return c


def test_untampered_certificate_is_accepted(cert):
    assert check(cert).ok


def test_smaller_epsilon_is_rejected(cert):
    c = copy.deepcopy(cert)
    c["statement"]["epsilon"][0] = str(Fraction(c["statement"]["epsilon"][0]) * Fraction(99, 100))
    assert not check(c).ok  # digest
    v = check(_resign(c))
    assert not v.ok and "epsilon" in v.reason


def test_changed_weight_is_rejected(cert):
    g = mlp([4, 8, 8, 2], "relu", seed=5)
    g.constants["W0"] = g.constants["W0"] * 4
    c = copy.deepcopy(cert)
    c["statement"]["graph"] = g.to_dict()
    assert not check(c).ok
    assert not check(_resign(c)).ok  # the fingerprint
    c["statement"]["model"] = model_id(c["statement"]["graph"])
    assert not check(_resign(c)).ok  # the replayed bounds exceed the claimed steps


def test_dropped_or_lowered_term_is_rejected(cert):
    c = copy.deepcopy(cert)
    c["steps"][1] = c["steps"][1][:-1]
    assert not check(c).ok
    c = copy.deepcopy(cert)
    c["steps"][0][0] = "0"
    assert not check(c).ok
    c = copy.deepcopy(cert)
    del c["steps"][-1]
    assert not check(c).ok


def test_widened_box_is_rejected(cert):
    c = copy.deepcopy(cert)
    c["statement"]["input_box"][0] = ["-4", "4"]
    assert not check(c).ok
    assert not check(_resign(c)).ok


def test_weakened_assumptions_are_rejected(cert):
    c = copy.deepcopy(cert)
    c["statement"]["kernel_ulps"] = "0"
    assert not check(_resign(c)).ok
    c = copy.deepcopy(cert)
    c["statement"]["format"]["mbits"] = 10  # a coarser format than the bounds were computed for
    assert not check(_resign(c)).ok
    c = copy.deepcopy(cert)
    c["statement"]["mode"] = "rtz"  # directed rounding: twice the unit roundoff
    assert not check(_resign(c)).ok


def test_switching_to_looser_ranges_is_rejected():
    g = mlp([4, 32, 32, 32, 2], "relu", seed=7)
    c = bound_certificate(g, BOX4)  # CROWN ranges: smaller claimed steps
    forward = bound_certificate(g, BOX4, ranges="ibp")
    assert _eps(c).max() < _eps(forward).max()
    c["statement"]["ranges"] = "ibp"
    assert not check(_resign(c)).ok


def test_malformed_certificates_are_rejected_not_raised(cert):
    c = copy.deepcopy(cert)
    c["statement"]["graph"]["constants"]["W0"]["data"] = "zz"
    c["statement"]["model"] = model_id(c["statement"]["graph"])
    assert not check(_resign(c)).ok
    c = copy.deepcopy(cert)
    c["statement"]["epsilon"] = [0.5, 0.5]  # floats are refused
    assert not check(_resign(c)).ok


# -- float-sound verdict API ---------------------------------------------------------------------

def test_widen_and_float_sound_bounds():
    lo, hi = widen([0.0, 1.0], [1.0, 2.0], [Fraction(1, 10), Fraction(1, 3)])
    assert lo[0] <= -0.1 and hi[1] >= 2 + 1 / 3 and Fraction(float(hi[1])) >= Fraction(7, 3)
    g = mlp([4, 8, 2], "relu", seed=1)
    flo, fhi, cert = float_sound_bounds(g, BOX4, [-10, -10], [10, 10])
    assert check(cert).ok and np.all(flo < -10) and np.all(fhi > 10)


def test_float_sound_bounds_refuses_real_bounds_that_cannot_be_right():
    """Swapped real bounds came back widened but still swapped (lower > upper), and bounds of the
    wrong size were broadcast or cut: silently wrong output bounds."""
    g = mlp([4, 8, 2], "relu", seed=1)
    with pytest.raises(ValueError, match="swapped"):
        float_sound_bounds(g, BOX4, [10, 10], [-10, -10])
    with pytest.raises(ValueError, match="one value per output"):
        float_sound_bounds(g, BOX4, [-10, -10], [10, 10, 10])
    with pytest.raises(ValueError, match="one value per output"):
        float_sound_bounds(g, BOX4, [-10], [10])


def test_bound_certificate_refuses_a_model_or_a_bad_box():
    import torchlean as tl

    g = mlp([4, 8, 2], "relu", seed=1)
    with pytest.raises(TypeError, match="tl.trace"):
        bound_certificate(tl.nn.Sequential(tl.nn.Linear(4, 2)), BOX4)
    for bad in ([(float("nan"), 1)] + BOX4[1:], [(float("-inf"), 1)] + BOX4[1:], [(1, 0)] + BOX4[1:],
                [(0, 1, 2)] + BOX4[1:]):
        with pytest.raises(ValueError, match=r"box\[0\]"):
            bound_certificate(g, bad)


def test_unsupported_graph_is_a_clear_error():
    from torchlean.spec.graph import Graph, Node, Value

    g = Graph([Value("x", (1, 3), "float32"), Value("i", (1, 3), "float32")], {},
              [Node("where", ["x", "x", "i"], "y")], ["y"]).check()
    with pytest.raises(LoweringError, match="where"):
        bound_certificate(g, [(0, 1)] * 6)


def test_step_claims_are_short_and_rounded_up():
    """``short_up``: the least 4-significant-digit decimal >= q, read back exactly by the checker's
    ``rational`` (the per-node steps of a certificate; epsilon keeps a float's precision)."""
    import random

    from torchlean.certificates.core import rational
    from torchlean.floats.errorbound import short_up

    rnd = random.Random(0)
    for _ in range(20_000):
        q = Fraction(rnd.randint(1, 10**12), rnd.randint(1, 10**12)) * Fraction(10) ** rnd.randint(-60, 60)
        s = short_up(q)
        r = rational(s)
        assert q <= r <= q * (1 + Fraction(1, 999)) and len(s) <= 12, (q, s)
    assert short_up(Fraction(0)) == "0" and rational(short_up(Fraction(1, 3))) == Fraction(3334, 10**4)


def test_a_deadline_in_the_fast_column_is_not_retried_on_the_exact_one(monkeypatch):
    """The generator's fallback (a box the fast column refuses gets an exact-column walk) is for
    refusals, not for ``OutOfTime`` (a ``Rejected``): past the caller's deadline it raises at once
    instead of starting the exact walk (whose engine pass ran ~30 s past ``verify --float32``'s
    deadline on eran's 784-input nets). A genuine refusal still falls back."""
    import time

    import torchlean.floats.errorbound as gen
    from torchlean.certificates.core import OutOfTime, Rejected, time_limit

    real, calls = gen.propagate, []

    def spy(stmt, *a, refuse=False):
        calls.append(stmt.get("column", "exact"))
        if refuse and stmt.get("column") == "fast":
            raise Rejected("refused by the fast column")
        return real(stmt, *a)

    g = mlp([4, 16, 16, 2], "relu")
    monkeypatch.setattr(gen, "propagate", spy)
    with time_limit(time.monotonic() - 1), pytest.raises(OutOfTime):
        bound_certificate(g, BOX4, "binary32", ranges="fast")
    assert calls == ["fast"]
    calls.clear()
    monkeypatch.setattr(gen, "propagate", lambda stmt, *a: spy(stmt, *a, refuse=True))
    cert = bound_certificate(g, BOX4, "binary32", ranges="fast")
    assert calls == ["fast", "exact"] and "column" not in cert["statement"]
    assert check(cert).ok
