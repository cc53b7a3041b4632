"""Float-sound verdicts on regions without binary32 inputs (vac32): ``float_vnn.snap`` shrinks each
input interval to the binary32 grid, and a property none of whose regions holds a binary32 point is
a ``vacuous`` unsat. References: numpy's float32 (``np.nextafter`` from the nearest float32, compared
with the bound as exact Fractions) and the runtime's own float32 run of the network."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates.errorbound import model_id
from torchlean.certificates.float_vnn import KIND, check_vnn_float, snap
from torchlean.certificates.lower import lower
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.certificates.rounding import get_format
from torchlean.floats.network import run_float
from torchlean.verify import table
from torchlean.verify.float32 import verify_float32

sys.path.insert(0, str(Path(__file__).parent))
from floats_models import mlp  # noqa: E402

B32 = get_format("binary32")
F = Fraction
TINY = F(2) ** -149  # binary32's least subnormal
MAXF = F(float(np.finfo(np.float32).max))
VACUOUS = {"kind": KIND, "version": 2, "format": "binary32", "vacuous": True}
ALWAYS = ((Atom((F(0),), F(0), False),),)  # 0·y <= 0: every output is unsafe (one output)


def ref_up(q: Fraction) -> Fraction | None:
    """The least binary32 >= q by numpy's float32 steps (None past the largest finite)."""
    if q > MAXF:
        return None
    top = float(np.finfo(np.float32).max)
    f = np.float32(min(max(float(q), -top), top))  # near q; the steps below make it exact
    while F(float(f)) < q:
        f = np.nextafter(f, np.float32(np.inf))
    while True:
        if f == -np.finfo(np.float32).max:
            return F(float(f))
        g = np.nextafter(f, np.float32(-np.inf))
        if not np.isfinite(g) or F(float(g)) < q:
            return F(float(f))
        f = g


def ref_down(q: Fraction) -> Fraction | None:
    r = ref_up(-q)
    return None if r is None else -r


def holds_binary32(lo: Fraction, hi: Fraction) -> bool:
    a, b = ref_up(lo), ref_down(hi)
    return a is not None and b is not None and a <= b


BOUNDS = [F("-0.305544"), F("0.1"), F(1, 3), F(3, 4), F(0), TINY * 3, TINY * 3 + TINY / 7, -TINY / 2,
          TINY / 2, MAXF, MAXF * 2, -MAXF * 2, F(10) ** 39, -F(10) ** 39, F("1e-50"), -F("1e-50")]


@pytest.mark.parametrize("q", BOUNDS, ids=str)
def test_snap_bounds_against_numpy(q):
    s = snap(Spec(1, 1, (Region((q,), (MAXF,), ALWAYS),)), B32)
    up = ref_up(q)
    assert (s.regions[0].lo[0] if s.regions else None) == up
    s = snap(Spec(1, 1, (Region((-MAXF,), (q,), ALWAYS),)), B32)
    down = ref_down(q)
    assert (s.regions[0].hi[0] if s.regions else None) == down


# boxes that DO hold a binary32 point: never vacuous (lo exactly binary32, subnormals, zero of
# either sign, bounds beyond the largest finite value holding it)
HOLDING = [(F(3, 4), F(3, 4)), (TINY * 3, TINY * 3), (-TINY, -TINY / 2), (F(-0.0), F(-0.0)),
           (-F("1e-50"), F("1e-50")), (MAXF, F(10) ** 39), (-F(10) ** 39, -MAXF), (-F(10) ** 39, F(10) ** 39),
           (F("-0.305544") - F(1, 10**7), F("-0.305544"))]
EMPTY = [(F("-0.305544"), F("-0.305544")), (F("0.1"), F("0.1")), (TINY * 3 + TINY / 7, TINY * 4 - TINY / 7),
         (TINY / 3, TINY / 2), (-TINY / 2, -TINY / 3), (MAXF * 2, MAXF * 3), (-MAXF * 3, -MAXF * 2),
         (F("0.1"), F("0.1") + F(1, 10**12))]


@pytest.fixture(scope="module")
def net1():
    g = mlp([1, 1], "relu", 0)
    return g, lower(g.to_dict())


@pytest.mark.parametrize("box", HOLDING, ids=str)
def test_box_with_a_binary32_point_is_not_vacuous(box, net1):
    g, net = net1
    assert holds_binary32(*box)
    spec = Spec(1, 1, (Region((box[0],), (box[1],), ALWAYS),))
    v = check_vnn_float(VACUOUS, net, spec, model=model_id(g.to_dict()))
    assert not v.ok and "not vacuous" in v.reason


@pytest.mark.parametrize("box", EMPTY, ids=str)
def test_box_without_binary32_point_is_vacuous(box, net1):
    g, net = net1
    assert not holds_binary32(*box)
    spec = Spec(1, 1, (Region((box[0],), (box[1],), ALWAYS),))
    assert check_vnn_float(VACUOUS, net, spec, model=model_id(g.to_dict())).ok
    # one region with a binary32 point among them: not vacuous
    two = Spec(1, 1, spec.regions + (Region((F(0),), (F(0),), ALWAYS),))
    assert not check_vnn_float(VACUOUS, net, two, model=model_id(g.to_dict())).ok


def test_search_answers_vacuous_unsat_with_a_replayed_certificate(net1):
    g, net = net1
    x = F("-0.305544")  # no binary32 value: the float32 run has no input here
    spec = Spec(1, 1, (Region((x,), (x,), ALWAYS),))
    res = verify_float32(g, table.target(g), spec, timeout=20)
    assert res.verdict == "unsat", res.stats
    assert res.cert.get("vacuous") is True
    assert check_vnn_float(res.cert, net, spec, model=model_id(g.to_dict())).ok


def test_search_point_on_binary32_value_is_sat(net1):
    """The same always-unsafe property at a binary32 value: the float32 run meets it (numpy run)."""
    g, net = net1
    x = F(float(np.float32(-0.305544)))
    y = run_float(g, np.array([[float(x)]], dtype=np.float32), np.float32)
    assert np.all(np.isfinite(y))  # a finite output: 0·y <= 0 holds, the float32 run is unsafe
    spec = Spec(1, 1, (Region((x,), (x,), ALWAYS),))
    res = verify_float32(g, table.target(g), spec, timeout=20)
    assert res.verdict == "sat", res.stats
    assert res.x is not None and F(res.x[0]) == x


def test_mixed_regions_prove_only_the_binary32_ones(net1):
    """A vacuous point region beside one whose real margin proves it: unsat, and the certificate is
    not the vacuous form (that one is rejected)."""
    g, net = net1
    W, b = (F(float(g.constants[k].reshape(-1)[0])) for k in ("W0", "b0"))
    top = abs(W) + b + 1  # y <= |W| + b on [-1, 1]: unsafe y >= top cannot hold
    safe = ((Atom((F(-1),), -top, False),),)
    x = F("0.1")
    spec = Spec(1, 1, (Region((x,), (x,), ALWAYS), Region((F(-1),), (F(1),), safe)))
    res = verify_float32(g, table.target(g), spec, timeout=30)
    assert res.verdict == "unsat", res.stats
    assert not res.cert.get("vacuous")
    assert check_vnn_float(res.cert, net, spec, model=model_id(g.to_dict())).ok
    assert not check_vnn_float(VACUOUS, net, spec, model=model_id(g.to_dict())).ok


@pytest.mark.parametrize("empty_at", [0, 1, None])
def test_two_inputs_one_empty_interval_is_enough(empty_at):
    g = mlp([2, 1], "relu", 1)
    net = lower(g.to_dict())
    box = [(F(-1), F(1)), (F(1, 4), F(1, 4))]  # X_1 = 1/4 exactly: a binary32 value
    if empty_at is not None:
        box[empty_at] = (F("0.1"), F("0.1"))
    assert all(holds_binary32(*b) for b in box) == (empty_at is None)
    spec = Spec(2, 1, (Region(tuple(a for a, _ in box), tuple(b for _, b in box), ALWAYS),))
    assert check_vnn_float(VACUOUS, net, spec, model=model_id(g.to_dict())).ok == (empty_at is not None)


def test_partitioned_leaves_are_the_shrunk_property_restricted(net1):
    """A split at a point that is no binary32 value: each leaf proves the shrunk property restricted
    to its box (what ``verify_float32`` proves), and the checker must read the leaf the same way (a
    second shrink of the leaf would change the property the real part names)."""
    from torchlean.certificates.float_vnn import grow, restrict
    from torchlean.floats.errorbound import bound_certificate, epsilons
    from torchlean.verify.bab import verify

    g, net = net1
    W, b = (F(float(g.constants[k].reshape(-1)[0])) for k in ("W0", "b0"))
    lo, hi, v = F("0.1"), F("0.7"), F(2, 5) + F(1, 10**9)
    top = abs(W) + abs(b) + 1
    spec = Spec(1, 1, (Region((lo,), (hi,), ((Atom((F(-1),), -top, False),),)),))
    shrunk = snap(spec, B32)
    assert shrunk.regions[0].lo[0] > lo and shrunk.regions[0].hi[0] < hi  # decimals, not binary32
    leaves = []
    for box in ([(lo, v)], [(v, hi)]):
        eb = bound_certificate(g, box, "binary32")
        res = verify(net, grow(restrict(shrunk, box), epsilons(eb)), timeout=20)
        assert res.verdict == "unsat"
        leaves.append({"errorbound": eb, "real": res.cert})
    cert = {"kind": KIND, "version": 2, "format": "binary32", "box": [[str(lo), str(hi)]],
            "parts": {"split": [0, str(v)], "lo": leaves[0], "hi": leaves[1]}}
    v_ok = check_vnn_float(cert, net, spec, model=model_id(g.to_dict()))
    assert v_ok.ok, v_ok.reason
    # version 1 (older certificates) reads the regions as given: these leaves are not about them
    assert not check_vnn_float({**cert, "version": 1}, net, spec, model=model_id(g.to_dict())).ok


def test_version_1_is_never_vacuous(net1):
    g, net = net1
    x = F("-0.305544")
    spec = Spec(1, 1, (Region((x,), (x,), ALWAYS),))
    assert not check_vnn_float({**VACUOUS, "version": 1}, net, spec, model=model_id(g.to_dict())).ok


@pytest.mark.parametrize("x, vacuous", [("-0.305544", True), ("-0.3055439889430999755859375", False)])
def test_cli_answers_and_replays_the_vacuous_certificate(tmp_path, x, vacuous):
    """End to end on a published test network: a point region at a decimal that is no binary32
    value is unsat with the vacuous certificate, which ``verify check`` accepts; at the nearest
    binary32 value (every output is unsafe: Y_0 >= -1e30) it is sat, never unsat."""
    import subprocess

    net = Path(__file__).parent / "data" / "vnncomp2021" / "test" / "test_small.onnx"
    assert holds_binary32(F(x), F(x)) == (not vacuous)
    prop = tmp_path / "p.vnnlib"
    prop.write_text(f"(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 {x}))\n"
                    f"(assert (<= X_0 {x}))\n(assert (>= Y_0 -1e30))\n")
    cert = tmp_path / "c.json"
    run = [sys.executable, "-m", "torchlean.verify"]
    r = subprocess.run(run + [str(net), str(prop), "--float32", "--timeout", "30", "--cert", str(cert)],
                       capture_output=True, text=True)
    assert r.stdout.startswith("unsat (float32-sound, checked)" if vacuous else "sat"), r.stdout + r.stderr
    if vacuous:
        c = subprocess.run(run + ["check", str(cert), str(net), str(prop), "--float32"], capture_output=True,
                           text=True)
        assert c.returncode == 0 and c.stdout.startswith("accepted: unsat"), c.stdout + c.stderr
