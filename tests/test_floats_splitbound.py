"""Input splitting for rounding-error bounds (``errorbound-split``): soundness on sampled points,
never looser than no split, and the checker's coverage checks under mutation."""

from __future__ import annotations

import copy
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates import check
from torchlean.certificates.core import digest
from torchlean.floats import bound_certificate, epsilons, observed_error
from torchlean.floats.__main__ import main
from torchlean.floats.splitbound import leaves

sys.path.insert(0, str(Path(__file__).parent))
from floats_models import mlp  # noqa: E402

BOX4 = [(-1, 1)] * 4


def _eps(cert):
    return np.array([float(e) for e in epsilons(cert)])


def _resign(c):
    c["digest"] = digest(c["statement"])
    return c


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_split_bound_replays_and_holds_on_10000_points(act):
    g = mlp([4, 16, 16, 2], act)
    cert = bound_certificate(g, BOX4, splits=6)
    v = check(cert)
    assert v.ok and v.fully_checked, v.reason
    assert cert["kind"] == "errorbound-split" and len(leaves(cert["tree"])) == 7
    obs = observed_error(g, BOX4, n=10_000)
    assert np.all(obs.max_error + obs.reference_error <= _eps(cert)), (obs.max_error, _eps(cert))
    # each leaf's own (smaller) bound holds on points of its sub-box
    for leaf in leaves(cert["tree"])[:3]:
        box = [(Fraction(a), Fraction(b)) for a, b in leaf["box"]]
        o = observed_error(g, box, n=2000, seed=1)
        assert np.all(o.max_error + o.reference_error <= [float(Fraction(e)) for e in leaf["steps"][-1]])


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
def test_splitting_never_loosens(act):
    g = mlp([4, 16, 16, 2], act, seed=3)
    base = _eps(bound_certificate(g, BOX4))
    prev = base
    for splits in (1, 4, 12):
        eps = _eps(bound_certificate(g, BOX4, splits=splits))
        assert np.all(eps <= base), (splits, eps, base)
        prev = eps
    assert np.all(prev < base)  # and on this model it really tightens every output


def test_zero_splits_is_the_plain_certificate():
    g = mlp([4, 8, 2], "relu", seed=1)
    assert bound_certificate(g, BOX4, splits=0) == bound_certificate(g, BOX4)
    with pytest.raises(ValueError):
        bound_certificate(g, BOX4, splits=-1)


def test_point_dimensions_are_never_split():
    g = mlp([3, 8, 2], "relu", seed=2)
    box = [(Fraction(1, 4), Fraction(1, 4)), (-1, 1), (0, 0)]
    cert = bound_certificate(g, box, splits=5)
    assert check(cert).ok
    assert {tuple(leaf["box"][0]) for leaf in leaves(cert["tree"])} == {("1/4", "1/4")}


# -- mutations ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert():
    return bound_certificate(mlp([4, 8, 8, 2], "relu", seed=5), BOX4, splits=4)


def test_untampered_split_certificate_is_accepted(cert):
    v = check(cert)
    assert v.ok, v.reason
    assert len(leaves(cert["tree"])) == 5


def test_removed_leaf_is_rejected(cert):
    c = copy.deepcopy(cert)
    c["tree"] = c["tree"]["lo"]  # drop the high half: its leaves no longer cover the box
    v = check(c)
    assert not v.ok and "leaf box" in v.reason
    c = copy.deepcopy(cert)
    del c["tree"]["hi"]
    assert not check(c).ok
    c = copy.deepcopy(cert)  # the low half twice, in place of the high half
    c["tree"]["hi"] = copy.deepcopy(c["tree"]["lo"])
    assert not check(c).ok


def test_changed_split_value_is_rejected(cert):
    c = copy.deepcopy(cert)
    d, v = c["tree"]["split"]
    c["tree"]["split"][1] = str(Fraction(v) + Fraction(1, 8))
    r = check(c)
    assert not r.ok and "leaf box" in r.reason
    for bad in ("-1", "1", "5", "x"):  # at a bound, outside, not a number
        c = copy.deepcopy(cert)
        c["tree"]["split"][1] = bad
        assert not check(c).ok
    for bad in (7, -1, True, "0"):  # dimension out of range or not an int
        c = copy.deepcopy(cert)
        c["tree"]["split"][0] = bad
        assert not check(c).ok


def test_leaf_box_that_does_not_match_is_rejected(cert):
    c = copy.deepcopy(cert)
    leaf = leaves(c["tree"])[0]
    leaf["box"][2] = ["0", "1/2"]
    r = check(c)
    assert not r.ok and "leaf box" in r.reason
    c = copy.deepcopy(cert)
    leaves(c["tree"])[-1]["box"].pop()
    assert not check(c).ok


def test_shrunk_epsilon_is_rejected(cert):
    c = copy.deepcopy(cert)
    c["statement"]["epsilon"][1] = str(Fraction(c["statement"]["epsilon"][1]) * Fraction(99, 100))
    assert not check(c).ok  # digest
    r = check(_resign(c))
    assert not r.ok and "epsilon" in r.reason


def test_lowered_leaf_step_or_widened_box_is_rejected(cert):
    c = copy.deepcopy(cert)
    leaves(c["tree"])[1]["steps"][0][0] = "0"
    assert not check(c).ok
    c = copy.deepcopy(cert)
    c["statement"]["input_box"][0] = ["-4", "4"]  # the split path no longer gives the leaves' boxes
    assert not check(_resign(c)).ok


def test_cli_bound_with_splits(tmp_path, capsys):
    g = mlp([4, 8, 2], "relu", seed=1)
    model = tmp_path / "m.json"
    model.write_text(g.to_json())
    out = tmp_path / "c.json"
    assert (
        main(["bound", str(model), "--box=-1:1", "--splits", "3", "--samples", "500", "--cert", str(out)])
        == 0
    )
    assert "4 sub-boxes" in capsys.readouterr().out
    assert main(["check", str(out)]) == 0
    assert main(["check", str(out), "--model", str(model)]) == 0
    other = tmp_path / "o.json"
    other.write_text(mlp([4, 8, 2], "relu", seed=2).to_json())
    assert main(["check", str(out), "--model", str(other)]) == 1  # a certificate about another model
    assert main(["bound", str(model), "--box=-1:1", "--splits", "-1"]) == 2


def _acas_path():
    root = Path(__file__).parent / "data" / "vnncomp2021" / "acasxu"
    return root if (root / "ACASXU_run2a_1_1_batch_2000.onnx").exists() else None


@pytest.mark.skipif(_acas_path() is None, reason="ACAS Xu networks not available")
def test_acasxu_split_tightens_the_prop1_box():
    from torchlean.bridge.onnx import load_onnx
    from torchlean.bridge.vnnlib import parse_vnnlib

    root = _acas_path()
    g = load_onnx(root / "ACASXU_run2a_1_1_batch_2000.onnx")
    prop = parse_vnnlib(root / "prop_1.vnnlib")
    box = [(Fraction(float(a)), Fraction(float(b))) for a, b in zip(prop.lower, prop.upper)]
    cert = bound_certificate(g, box, splits=2, ranges="ibp")
    assert check(cert).ok
    assert _eps(cert).max() < 0.7 * _eps(bound_certificate(g, box, ranges="ibp")).max()
