"""Float-sound verdicts (``--float32``, ``vnn-unsat-float``): verdicts on either side of epsilon,
the checker's rejections of mutated certificates, and binary32 counterexamples against onnxruntime."""

from __future__ import annotations

import copy
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates.core import digest
from torchlean.certificates.errorbound import FAST_TRUST, model_id
from torchlean.certificates.float_vnn import check_vnn_float, grow
from torchlean.certificates.lower import lower
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.floats.errorbound import bound_certificate, epsilons
from torchlean.verify import table
from torchlean.verify.__main__ import main
from torchlean.verify.bab import verify
from torchlean.verify.float32 import verify_float32

sys.path.insert(0, str(Path(__file__).parent))
from floats_models import mlp  # noqa: E402

TEST = Path(__file__).parent / "data" / "vnncomp2021" / "test"
BOX = [(Fraction(-1), Fraction(1))] * 4


def linear_instance(margin_in_eps: Fraction, seed: int = 0):
    """A one-layer network y = x·W + b on [-1, 1]^4 (real max m = sum |W| + b, exactly) and the
    unsafe set y >= m + margin_in_eps * eps, eps the certified binary32 epsilon of that box."""
    g = mlp([4, 1], "relu", seed)
    W, b = g.constants["W0"].astype(np.float64), g.constants["b0"].astype(np.float64)
    m = sum(abs(Fraction(float(w))) for w in W[:, 0]) + Fraction(float(b[0]))
    eps = epsilons(bound_certificate(g, BOX, "binary32", input_exact=False))[0]
    assert 0 < eps < Fraction(1, 1000)
    atom = Atom((Fraction(-1),), -(m + margin_in_eps * eps), False)  # -y <= -(m + margin)
    spec = Spec(4, 1, (Region(tuple(lo for lo, _ in BOX), tuple(hi for _, hi in BOX), ((atom,),)),))
    return g, lower(g.to_dict()), spec, eps


def test_margin_above_epsilon_is_float_sound_unsat():
    g, net, spec, eps = linear_instance(Fraction(2))
    res = verify_float32(g, table.target(g), spec, timeout=60)
    assert res.verdict == "unsat", res.stats
    v = check_vnn_float(res.cert, net, spec, model=model_id(g.to_dict()))
    assert v.ok, v.reason
    assert res.stats["epsilon"][0] >= float(eps) * 0.999  # the certificate's own epsilon
    # the errorbound part's fast ranges rest on the float64 model: the verdict says so
    assert res.cert["errorbound"]["statement"]["ranges"] == "fast"
    assert FAST_TRUST in v.trusted and not v.fully_checked


def test_margin_below_epsilon_is_not_reported_unsat():
    g, net, spec, eps = linear_instance(Fraction(1, 2))
    real = verify(net, spec, timeout=30)
    assert real.verdict == "unsat"  # the real network is safe, by half an epsilon
    res = verify_float32(g, table.target(g), spec, timeout=60)
    assert res.verdict != "unsat"
    # and the grown property is indeed false for the real network (sat at the corner)
    assert verify(net, grow(spec, [eps]), timeout=30).verdict == "sat"


@pytest.fixture(scope="module")
def accepted():
    g, net, spec, eps = linear_instance(Fraction(2))
    res = verify_float32(g, table.target(g), spec, timeout=60)
    assert res.verdict == "unsat"
    return g, net, spec, res.cert


def _reason(cert, g, net, spec):
    v = check_vnn_float(cert, net, spec, model=model_id(g.to_dict()))
    assert not v.ok
    return v.reason


def test_lowered_epsilon_rejected(accepted):
    g, net, spec, cert = accepted
    c = copy.deepcopy(cert)
    st = c["errorbound"]["statement"]
    st["epsilon"] = [str(Fraction(st["epsilon"][0]) / 4)]
    assert "digest" in _reason(c, g, net, spec)
    c["errorbound"]["digest"] = digest(st)  # a consistent forgery: the replay still refuses it
    assert "epsilon" in _reason(c, g, net, spec)


def test_errorbound_of_another_network_rejected(accepted):
    g, net, spec, cert = accepted
    other = mlp([4, 1], "relu", seed=1)
    c = copy.deepcopy(cert)
    c["errorbound"] = bound_certificate(other, BOX, "binary32", input_exact=False)
    assert "different" in _reason(c, g, net, spec)
    # even without the file's model id, the real network of the other IR differs
    v = check_vnn_float(c, net, spec)
    assert not v.ok and "different network" in v.reason


def test_box_not_covering_region_rejected(accepted):
    g, net, spec, cert = accepted
    c = copy.deepcopy(cert)
    c["errorbound"] = bound_certificate(g, [(-1, 1)] * 3 + [(-1, Fraction(1, 2))], "binary32",
                                        input_exact=False)
    assert "does not cover" in _reason(c, g, net, spec)


def test_real_certificate_for_ungrown_spec_rejected(accepted):
    g, net, spec, cert = accepted
    real = verify(net, spec, timeout=30)
    assert real.verdict == "unsat"
    c = copy.deepcopy(cert)
    c["real"] = real.cert
    assert "different property" in _reason(c, g, net, spec)


def test_wrong_format_rejected(accepted):
    g, net, spec, cert = accepted
    c = copy.deepcopy(cert)
    # a smaller epsilon, another format
    c["errorbound"] = bound_certificate(g, BOX, "binary64", input_exact=False)
    assert "binary32" in _reason(c, g, net, spec)
    c = copy.deepcopy(cert)
    c["real"] = {**c["real"], "kind": "vnn-unsat-float"}
    assert "vnn-unsat" in _reason(c, g, net, spec)


def test_cli_float32_verify_and_check(tmp_path, capsys):
    net, prop = TEST / "test_small.onnx", TEST / "test_small.vnnlib"
    out = tmp_path / "c.json"
    assert main([str(net), str(prop), "--float32", "-q", "--cert", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "unsat (float32-sound, checked)"
    cert = json.loads(out.read_text())
    assert cert["kind"] == "vnn-unsat-float"
    # a ReLU chain's real part is searched and certified on its bound graph (the default engine)
    from torchlean.certificates.lower import fingerprint
    from torchlean.verify.network import load_graph

    assert cert["real"]["network"] == fingerprint(lower(load_graph(net).to_dict()))
    assert main(["check", str(out), str(net), str(prop)]) == 0
    assert "binary32-sound" in capsys.readouterr().out
    # the same certificate against another network file: rejected, one line, exit 1
    assert main(["check", str(out), str(TEST / "test_tiny.onnx"), str(TEST / "test_tiny.vnnlib")]) == 1
    assert capsys.readouterr().out.startswith("rejected:")


def test_float32_counterexample_agrees_with_onnxruntime(capsys):
    ort = pytest.importorskip("onnxruntime")
    net, prop = TEST / "test_sat.onnx", TEST / "test_prop.vnnlib"
    assert main([str(net), str(prop), "--float32", "-q", "--timeout", "100"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("sat (float32, runtime and emulated)")
    vals = dict(line.strip("()").split() for line in text.splitlines()[1:])
    x = np.array([float(vals[f"X_{i}"]) for i in range(5)], dtype=np.float32)
    y_emu = np.array([float(vals[f"Y_{j}"]) for j in range(5)])
    sess = ort.InferenceSession(str(net))
    name = sess.get_inputs()[0].name
    shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape]
    y_ort = np.asarray(sess.run(None, {name: x.reshape(shape)})[0], dtype=np.float64).reshape(-1)
    assert np.max(np.abs(y_ort - y_emu)) <= 1e-6
    # test_prop's unsafe set: Y_0 is the minimum output; onnxruntime's run is in it too
    assert np.all(y_ort[0] <= y_ort[1:]), y_ort


def test_robustness_api_float32():
    import torchlean as tl

    g = mlp([4, 8, 3], "tanh", seed=2)  # a tanh network: the bound table's graph, not a chain
    x = np.array([[0.3, -0.2, 0.5, 0.1]])
    from torchlean.runtime.execute import run_graph

    label = int(np.argmax(run_graph(g, {"x": x.astype(np.float32)}, dtype=np.float32)[0]))
    r = tl.verify.robustness(g, x, 1e-3, label, float32=True, timeout=60)
    assert r.verdict == "verified", r.reason
    assert r.certificate["kind"] == "vnn-unsat-float" and "binary32-sound" in r.reason
    from torchlean.verify import table

    t = table.target(g)
    assert check_vnn_float(r.certificate, t.bg, r.spec, model=model_id(g.to_dict())).ok
    # far too large a ball: not verified in either mode (the real verdict is the reference)
    real = tl.verify.robustness(g, x, 4.0, label, timeout=30)
    f = tl.verify.robustness(g, x, 4.0, label, float32=True, timeout=30)
    assert real.verdict != "verified" and f.verdict != "verified"


def test_split_epsilon_accepted(accepted):
    g, net, spec, cert = accepted
    c = copy.deepcopy(cert)
    # errorbound-split: accepted
    c["errorbound"] = bound_certificate(g, BOX, "binary32", splits=2, input_exact=False)
    assert c["errorbound"]["kind"] == "errorbound-split"
    eps = [Fraction(e) for e in c["errorbound"]["statement"]["epsilon"]]
    c["real"] = verify(net, grow(spec, eps), timeout=30).cert
    assert check_vnn_float(c, net, spec, model=model_id(g.to_dict())).ok


def _part(g, net, spec, box):
    from torchlean.certificates.float_vnn import restrict

    eb = bound_certificate(g, box, "binary32", input_exact=False)
    res = verify(net, grow(restrict(spec, box), epsilons(eb)), timeout=30)
    assert res.verdict == "unsat"
    return {"errorbound": eb, "real": res.cert}


def test_partitioned_certificate_and_mutations(accepted):
    g, net, spec, _ = accepted
    lo_box, hi_box = [(Fraction(-1), Fraction(0))] + BOX[1:], [(Fraction(0), Fraction(1))] + BOX[1:]
    lo, hi = _part(g, net, spec, lo_box), _part(g, net, spec, hi_box)
    cert = {"kind": "vnn-unsat-float", "version": 1, "format": "binary32",
            "box": [["-1", "1"]] * 4, "parts": {"split": [0, "0"], "lo": lo, "hi": hi}}
    v = check_vnn_float(cert, net, spec, model=model_id(g.to_dict()))
    assert v.ok and "2 parts" in v.reason, v.reason
    bad = copy.deepcopy(cert)  # the halves swapped: each errorbound box misses its part
    bad["parts"]["lo"], bad["parts"]["hi"] = hi, lo
    assert "does not cover" in _reason(bad, g, net, spec)
    bad = copy.deepcopy(cert)
    bad["parts"]["split"] = [0, "1"]  # a split at the edge: not strictly inside
    assert "outside" in _reason(bad, g, net, spec)
    bad = copy.deepcopy(cert)
    bad["box"] = [["-1", "1"]] * 3 + [["-1", "0"]]  # root box misses part of the region
    assert "does not cover" in _reason(bad, g, net, spec)
    bad = copy.deepcopy(cert)
    bad["parts"]["hi"] = {"split": [1, "0"], "lo": hi, "hi": {}}  # a leaf without its proof
    assert not check_vnn_float(bad, net, spec).ok


def test_partitioning_proves_what_one_box_cannot():
    """ACAS-like: a ReLU network whose whole-box epsilon is above the margin; parts get smaller
    epsilons. The verdict with splits must be checked; without, it must not be unsat."""
    g = mlp([2, 16, 16, 1], "relu", seed=3)
    net = lower(g.to_dict())
    box = [(Fraction(-4), Fraction(4))] * 2
    eps = epsilons(bound_certificate(g, box, "binary32", input_exact=False))[0]
    C = {k: v.astype(np.float64) for k, v in g.constants.items()}

    def f(x):  # the real network in float64 (mlp: matmul + bias, relu between)
        h = np.maximum(x @ C["W0"] + C["b0"], 0)
        return (np.maximum(h @ C["W1"] + C["b1"], 0) @ C["W2"] + C["b2"])[:, 0]

    c, r = np.zeros(2), 4.0
    for _ in range(4):  # zoom in on the maximum: spacing 8/400 -> ~1e-8
        grid = c + np.stack(np.meshgrid(*[np.linspace(-r, r, 401)] * 2), -1).reshape(-1, 2)
        grid = np.clip(grid, -4, 4)
        c, r = grid[np.argmax(f(grid))], r / 100
    top = Fraction(float(f(c[None])[0]))
    # unsafe: y >= (max over a fine grid) + eps/2: the real search proves it (checked below), the
    # property grown by the whole box's eps is false at the grid's best point
    atom = Atom((Fraction(-1),), -(top + eps / 2), False)
    spec = Spec(2, 1, (Region(tuple(a for a, _ in box), tuple(b for _, b in box), ((atom,),)),))
    assert verify(net, spec, timeout=30).verdict == "unsat"
    one = verify_float32(g, table.target(g), spec, timeout=60)
    many = verify_float32(g, table.target(g), spec, timeout=120, splits=16)
    assert one.verdict != "unsat"
    if many.verdict == "unsat":  # (reported only after the checker accepted it)
        assert "parts" in many.cert and check_vnn_float(many.cert, net, spec).ok
    assert many.stats["parts"] > 1
    if many.verdict == "unsat":  # the half away from the maximum keeps the root's epsilon
        assert many.stats["inherited"] >= 1 and many.stats["leaves"] > many.stats["inherited"]


def test_plain_check_points_to_the_statement(accepted):
    from torchlean.certificates import check

    v = check(accepted[3])
    assert not v.ok and "check_vnn_float" in v.reason


def _shared(g, net, spec, eb):
    """A partitioned certificate (split x_0 at 0) whose two leaves carry the same errorbound."""
    from torchlean.certificates.float_vnn import restrict

    zero, one = Fraction(0), Fraction(1)
    leaves, halves = {}, (("lo", [(-one, zero)] + BOX[1:]), ("hi", [(zero, one)] + BOX[1:]))
    for side, box in halves:
        res = verify(net, grow(restrict(spec, box), epsilons(eb)), timeout=30)
        assert res.verdict == "unsat"
        leaves[side] = {"errorbound": copy.deepcopy(eb), "real": res.cert}
    return {"kind": "vnn-unsat-float", "version": 1, "format": "binary32",
            "box": [["-1", "1"]] * 4, "parts": {"split": [0, "0"], **leaves}}


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_shared_errorbound_replayed_once_and_mutations(accepted, mode, monkeypatch):
    """Leaves carrying an ancestor's errorbound (``verify_float32``'s inherited epsilon): each
    distinct errorbound is replayed once, by content; a leaf whose copy differs (shrunk epsilon,
    another box, another format) is replayed on its own and rejected."""
    import torchlean.certificates.float_vnn as fv

    g, net, spec, cert = accepted
    eb = cert["errorbound"]
    shared = _shared(g, net, spec, eb)
    calls = []
    check_eb = fv.EPS_KINDS["errorbound"]
    monkeypatch.setitem(fv.EPS_KINDS, "errorbound", lambda c: calls.append(1) or check_eb(c))
    v = check_vnn_float(shared, net, spec, model=model_id(g.to_dict()), mode=mode)
    assert v.ok and "2 parts" in v.reason, v.reason
    assert len(calls) == 1  # the two leaves' copies are equal: one replay
    json_copy = json.loads(json.dumps(shared))  # (as read from a file: distinct but equal objects)
    assert check_vnn_float(json_copy, net, spec, model=model_id(g.to_dict()), mode=mode).ok
    assert len(calls) == 2

    bad = copy.deepcopy(shared)  # shrunk epsilon in one leaf's copy, digest recomputed
    st = bad["parts"]["hi"]["errorbound"]["statement"]
    st["epsilon"] = [str(Fraction(st["epsilon"][0]) / 4)]
    bad["parts"]["hi"]["errorbound"]["digest"] = digest(st)
    v = check_vnn_float(bad, net, spec, model=model_id(g.to_dict()), mode=mode)
    assert not v.ok and "epsilon" in v.reason, v.reason
    bad = copy.deepcopy(shared)  # the hi leaf's errorbound is the lo half's: wrong node
    lo_box = [(Fraction(-1), Fraction(0))] + BOX[1:]
    bad["parts"]["hi"]["errorbound"] = bound_certificate(g, lo_box, "binary32", input_exact=False)
    v = check_vnn_float(bad, net, spec, model=model_id(g.to_dict()), mode=mode)
    assert not v.ok and "does not cover" in v.reason, v.reason
    bad = copy.deepcopy(shared)  # one copy about binary64
    bad["parts"]["lo"]["errorbound"] = bound_certificate(g, BOX, "binary64", input_exact=False)
    v = check_vnn_float(bad, net, spec, model=model_id(g.to_dict()), mode=mode)
    assert not v.ok and "binary32" in v.reason, v.reason
    bad = copy.deepcopy(shared)  # one copy of another network's errorbound
    bad["parts"]["lo"]["errorbound"] = bound_certificate(mlp([4, 1], "relu", seed=1), BOX, "binary32",
                                                         input_exact=False)
    v = check_vnn_float(bad, net, spec, mode=mode)
    assert not v.ok and "different network" in v.reason, v.reason


def test_candidates_emulated_only_where_the_runtime_meets(monkeypatch):
    """``float_counterexample`` emulates only candidates whose runtime binary32 run meets the unsafe
    set (audit59: a sat needs both runs; was: near it): a far one and one eps/2 short (the real
    maximum) are refused without the emulator; with the bound at the runtime's own output there,
    the emulator is run and decides (sat where its output meets it too)."""
    import torchlean.verify.float32 as f32

    g, net, spec, eps = linear_instance(Fraction(2))
    calls, emulate = [], f32.emulate
    monkeypatch.setattr(f32, "emulate", lambda *a: calls.append(1) or emulate(*a))
    assert f32.float_counterexample(g, spec, [Fraction(0)] * 4) is None and not calls
    W = g.constants["W0"].astype(np.float64)[:, 0]
    corner = [Fraction(1) if w > 0 else Fraction(-1) for w in W]  # the real maximum, eps/2 short
    assert f32.float_counterexample(g, spec, corner) is None and not calls
    y = float(f32.run_float(g, np.array([[float(c) for c in corner]], np.float32), np.float32)[0, 0])
    (r,) = spec.regions
    at = Spec(4, 1, (Region(r.lo, r.hi, ((Atom((Fraction(-1),), -Fraction(y), False),),)),))
    found = f32.float_counterexample(g, at, corner)
    assert calls
    ye = float(emulate(g, {g.inputs[0].name: np.array([[float(c) for c in corner]])})[0][0, 0])
    assert (found is not None) == (ye >= y)
    if found is not None:
        assert found[1] == [ye]


def _half_eps_above_max(g, box):
    """The property "output <= its maximum over the box + eps/2" (eps: the whole box's certified
    binary32 epsilon), the maximum found by zooming a fine grid over the box's first two inputs
    (the others fixed at their box value, which must be a point): true in the reals and in
    float32, but the whole box's epsilon is above its margin, so a proof bisects."""
    eps = epsilons(bound_certificate(g, box, "binary32", input_exact=False))[0]
    C = {k: v.astype(np.float64) for k, v in g.constants.items()}
    rest = np.array([float(a) for a, _ in box[2:]])
    assert all(a == b for a, b in box[2:])

    def f(x2):  # the real network in float64 (mlp: matmul + bias, relu between) on (x0, x1, rest)
        x = np.concatenate([x2, np.broadcast_to(rest, (len(x2), len(rest)))], axis=1)
        h = np.maximum(np.maximum(x @ C["W0"] + C["b0"], 0) @ C["W1"] + C["b1"], 0)
        return (h @ C["W2"] + C["b2"])[:, 0]

    (lo, hi), c = (float(box[0][0]), float(box[0][1])), np.zeros(2)
    r = hi
    for _ in range(4):  # zoom in on the maximum
        grid = np.clip(c + np.stack(np.meshgrid(*[np.linspace(-r, r, 401)] * 2), -1).reshape(-1, 2), lo, hi)
        c, r = grid[np.argmax(f(grid))], r / 100
    atom = Atom((Fraction(-1),), -(Fraction(float(f(c[None])[0])) + eps / 2), False)
    return Spec(len(box), 1, (Region(tuple(a for a, _ in box), tuple(b for _, b in box), ((atom,),)),))


@pytest.fixture(scope="module")
def partitioned():
    """A partitioned float-sound certificate from ``verify_float32``: a ReLU network whose
    whole-box epsilon is above the margin (eps/2 over a fine grid's maximum), so it bisects."""
    g = mlp([2, 16, 16, 1], "relu", seed=3)
    box = [(Fraction(-4), Fraction(4))] * 2
    spec = _half_eps_above_max(g, box)
    res = verify_float32(g, table.target(g), spec, timeout=120, splits=16)
    if res.verdict != "unsat" or "parts" not in res.cert:
        pytest.skip(f"no partitioned verdict on this machine: {res.verdict} {res.stats}")
    return g, lower(g.to_dict()), spec, res.cert


def _leaves(tree):
    todo = [tree]
    while todo:
        node = todo.pop()
        if "split" in node:
            todo += [node["lo"], node["hi"]]
        else:
            yield node


def test_partitioned_certificate_carries_the_ir_once(partitioned):
    """The IR is at the top, no errorbound statement carries one; the older form (every leaf's
    statement with its own IR) is accepted too, and is larger by a copy per leaf."""
    g, net, spec, cert = partitioned
    model = model_id(g.to_dict())
    assert cert["graph"] == g.to_dict()
    leaves = list(_leaves(cert["parts"]))
    assert len(leaves) >= 2
    assert all("graph" not in leaf["errorbound"]["statement"] for leaf in leaves)
    assert all(leaf["errorbound"]["statement"]["model"] == model for leaf in leaves)
    assert check_vnn_float(cert, net, spec, model=model).ok
    old = copy.deepcopy(cert)
    for leaf in _leaves(old["parts"]):
        leaf["errorbound"]["statement"]["graph"] = old["graph"]
    del old["graph"]
    v = check_vnn_float(old, net, spec, model=model)
    assert v.ok, v.reason
    size, old_size, ir = (len(json.dumps(c)) for c in (cert, old, cert["graph"]))
    assert old_size - size >= (len(leaves) - 1) * ir


def test_partitioned_shared_ir_mutations(partitioned):
    g, net, spec, cert = partitioned
    model = model_id(g.to_dict())
    other = mlp([2, 16, 16, 1], "relu", seed=4).to_dict()  # same shapes, other weights

    def reason(c, **kw):
        v = check_vnn_float(c, net, spec, **kw)
        assert not v.ok
        return v.reason

    bad = copy.deepcopy(cert)  # the shared IR swapped for another network's
    bad["graph"] = other
    assert "different network" in reason(bad, model=model)
    assert "different network" in reason(bad)
    bad = copy.deepcopy(cert)  # the shared IR removed: the leaves have none
    del bad["graph"]
    assert "graph" in reason(bad, model=model)
    bad = copy.deepcopy(cert)  # a leaf carrying its own, different, IR
    next(_leaves(bad["parts"]))["errorbound"]["statement"]["graph"] = other
    assert "beside the shared one" in reason(bad, model=model)
    bad = copy.deepcopy(cert)  # ... even the same one (one IR per certificate)
    next(_leaves(bad["parts"]))["errorbound"]["statement"]["graph"] = cert["graph"]
    assert "beside the shared one" in reason(bad)
    bad = copy.deepcopy(cert)  # a leaf's "model" changed to the other network's
    eb = next(_leaves(bad["parts"]))["errorbound"]
    eb["statement"]["model"] = model_id(other)
    assert "different model" in reason(bad, model=model)
    assert "digest" in reason(bad)  # its digest is the completed statement's
    eb["digest"] = digest({**eb["statement"], "graph": cert["graph"]})  # a consistent forgery
    assert "model fingerprint" in reason(bad)
    eb["digest"] = digest(eb["statement"])  # a digest of the stored form is not the statement's
    assert "digest" in reason(bad)
    bad = copy.deepcopy(cert)  # a leaf of another network's certificate, its IR left out
    other_eb = bound_certificate(mlp([2, 16, 16, 1], "relu", seed=4), [(-4, 4)] * 2, "binary32",
                                 input_exact=False)
    other_eb["statement"].pop("graph")
    next(_leaves(bad["parts"]))["errorbound"] = other_eb
    assert "different model" in reason(bad, model=model)
    assert "digest" in reason(bad)  # its digest is of its statement with its own IR


def test_input_sensitivity_is_the_jacobian_and_split_dim_follows_it():
    """``float32.input_sensitivity`` (above ``SCORED_INPUTS`` inputs) is sum_j |dy_j/dx_i|: on a
    linear 80-input network, |W| summed over the outputs (independent: the weights); ``split_dim``
    halves the largest width x sensitivity, and the widest input where there is no score (few
    inputs: ACAS Xu's rule, unchanged)."""
    from torchlean.verify.float32 import SCORED_INPUTS, input_sensitivity, split_dim

    g = mlp([80, 3], "relu", seed=4)
    W = g.constants["W0"].astype(np.float64)
    box = [(Fraction(-1), Fraction(1))] * 80
    s = input_sensitivity(g, box)
    np.testing.assert_allclose(s, np.abs(W).sum(axis=1), rtol=1e-4)
    assert split_dim(box, s) == int(np.argmax(np.abs(W).sum(axis=1)))
    narrow = list(box)
    top = int(np.argmax(s))
    narrow[top] = (Fraction(0), Fraction(1, 1000))  # (now barely worth splitting)
    assert split_dim(narrow, s) != top
    small = mlp([SCORED_INPUTS, 2], "relu", seed=4)
    assert input_sensitivity(small, [(Fraction(-1), Fraction(1))] * SCORED_INPUTS) is None
    assert split_dim([(Fraction(0), Fraction(1)), (Fraction(0), Fraction(3))], None) == 1


def _counting_sensitivity(monkeypatch) -> list[int]:
    """``float32.input_sensitivity`` wrapped to count its calls (the list's length)."""
    from torchlean.verify import float32

    calls, real = [], float32.input_sensitivity

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(float32, "input_sensitivity", counted)
    return calls


def test_partitioned_certificate_with_scored_splits_replays(monkeypatch):
    """The partitioned proof with the scored split (80 inputs, two of them free, the others fixed
    at 0, so the bisection is the sensitivity's choice among the two): the whole box's epsilon is
    above the margin (eps/2 over a fine grid's maximum), the partitioned verdict is unsat and its
    certificate replays, the split inputs are the free ones, and the scores were computed once
    (the root's, reused by every bisection)."""
    from torchlean.verify.float32 import input_sensitivity

    g = mlp([80, 16, 16, 1], "relu", seed=3)
    box = [(Fraction(-4), Fraction(4))] * 2 + [(Fraction(0), Fraction(0))] * 78
    assert input_sensitivity(g, box) is not None
    spec = _half_eps_above_max(g, box)
    calls = _counting_sensitivity(monkeypatch)
    res = verify_float32(g, table.target(g), spec, timeout=120, splits=16)
    assert res.verdict == "unsat", res.stats
    assert "parts" in res.cert and check_vnn_float(res.cert, lower(g.to_dict()), spec).ok
    dims = {n["split"][0] for n in _leaves_and_nodes(res.cert["parts"])}
    assert dims and dims <= {0, 1}
    assert len(calls) == 1 and res.stats["weights_s"] >= 0


def test_no_bisection_no_input_scores(monkeypatch):
    """A property proved on the whole box (80 inputs, a margin of twice the certified epsilon
    above the real maximum sum |W| + b of a linear network) never reads the bisection's input
    scores: ``input_sensitivity`` (one network run per input: 36 s on sri_resnet_a's 3,072 inputs)
    is not called, though splits are allowed (it was, up front, before any walk)."""
    g = mlp([80, 1], "relu", seed=5)
    W, b = g.constants["W0"].astype(np.float64), g.constants["b0"].astype(np.float64)
    box = [(Fraction(-1), Fraction(1))] * 80
    m = sum(abs(Fraction(float(w))) for w in W[:, 0]) + Fraction(float(b[0]))
    eps = epsilons(bound_certificate(g, box, "binary32", ranges="fast", input_exact=False))[0]
    atom = Atom((Fraction(-1),), -(m + 2 * eps), False)  # -y <= -(m + 2 eps): unsafe y >= m + 2 eps
    spec = Spec(80, 1, (Region(tuple(a for a, _ in box), tuple(c for _, c in box), ((atom,),)),))
    calls = _counting_sensitivity(monkeypatch)
    res = verify_float32(g, table.target(g), spec, timeout=60, splits=16)
    assert res.verdict == "unsat", res.stats
    assert "parts" not in res.cert and check_vnn_float(res.cert, lower(g.to_dict()), spec).ok
    assert calls == [] and "weights_s" not in res.stats


def _leaves_and_nodes(tree):
    """The split nodes of a partitioned certificate's tree."""
    if "split" not in tree:
        return []
    return [tree] + _leaves_and_nodes(tree["lo"]) + _leaves_and_nodes(tree["hi"])
