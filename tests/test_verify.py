"""Verification certificates: the checker accepts what the verifier proves, in exact and fast mode,
and rejects tampered certificates (removed leaf, raised bound, changed split, changed atom choice,
edited box or property, other network, the removed ReLU-chain format); the statement is
re-derived from the files; the CLI. Every network, ReLU chains included, is checked on its bound
graph (``certificates.lower``; the chain engine was removed, issue 14)."""

import copy
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from test_bounds import random_graph

from torchlean.certificates import check
from torchlean.certificates.bounds import check_vnn, walk
from torchlean.certificates.lower import fingerprint, lower
from torchlean.certificates.property import parse_property
from torchlean.spec import Graph, Node, Value
from torchlean.verify import load_spec, table, verify

DATA = Path(__file__).parent / "data" / "vnncomp2021"
TEST = DATA / "test"


def _prop(lo, hi, atoms):
    """VNN-LIB text: box lo..hi on X, unsafe iff all atoms ("(<= Y_0 3)" ...) hold."""
    d = len(lo)
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(d))
    text += "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    text += "".join(
        f"(assert (>= X_{i} {a}))\n(assert (<= X_{i} {b}))\n" for i, (a, b) in enumerate(zip(lo, hi))
    )
    return text + "".join(f"(assert {a})\n" for a in atoms)


@pytest.fixture(scope="module")
def split_case():
    """A random network and a property that needs a split tree (found by search, not hand-made)."""
    rng = np.random.default_rng(3)
    g = random_graph(rng, (2, 8, 8, 2))
    net = lower(g.to_dict())
    from torchlean.verify import float_chain

    fn = float_chain(net)
    x = rng.uniform(-1, 1, (20000, 2))
    y = fn.forward(x)
    thr = float(y[:, 0].max()) + 0.02  # unsafe: Y_0 >= thr, just above the true max: unsat
    spec = parse_property(_prop(["-1", "-1"], ["1", "1"], [f"(>= Y_0 {thr:.6f})"]))
    res = verify(net, spec, timeout=60, method="forward", attack_first=False)
    assert res.verdict == "unsat"
    n = sum(1 for *_, (proofs, *_) in walk(res.cert["regions"][0], list(spec.regions[0].lo),
                                                  list(spec.regions[0].hi)) if proofs is not None)
    assert n >= 4, "the case should need a real split tree"
    return net, spec, res.cert


def test_exact_and_fast_modes_accept(split_case):
    net, spec, cert = split_case
    ve, vf = check_vnn(cert, net, spec, mode="exact"), check_vnn(cert, net, spec, mode="fast")
    assert ve.ok and ve.fully_checked, ve.reason
    assert vf.ok and vf.trusted, vf.reason  # the fast mode names its float assumption
    assert ve.checked == vf.checked >= 4


def _tree(cert):
    return cert["regions"][0]


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_mutations_rejected(split_case, mode):
    net, spec, cert = split_case
    tree = _tree(cert)
    first_split = next(i for i, n in enumerate(tree) if n[0] == "split")
    leaf_ids = [i for i, n in enumerate(tree) if n[0] == "leaf"]

    def mutated(fn):
        c = copy.deepcopy(cert)
        fn(c, _tree(c))
        return check_vnn(c, net, spec, mode=mode)

    # removed leaf: the tree no longer covers the box
    assert not mutated(lambda c, t: t.pop(leaf_ids[-1])).ok
    # a leaf's claimed bound raised far above what its box allows
    assert not mutated(lambda c, t: t[leaf_ids[0]][1][0].__setitem__(1, "1000")).ok
    # non-positive claimed bound
    assert not mutated(lambda c, t: t[leaf_ids[0]][1][0].__setitem__(1, "0")).ok
    # changed split: value moved to the box's edge, so one child is the whole box
    assert not mutated(lambda c, t: t[first_split].__setitem__(2, "-1")).ok
    # changed split value outside the box; bad dimension
    assert not mutated(lambda c, t: t[first_split].__setitem__(2, "5")).ok
    assert not mutated(lambda c, t: t[first_split].__setitem__(1, 7)).ok
    # changed multiplier: the atom index points nowhere
    assert not mutated(lambda c, t: t[leaf_ids[0]][1][0].__setitem__(0, 3)).ok
    # extra trailing entry, float numbers, missing subtree
    assert not mutated(lambda c, t: t.append(["leaf", [[0, "1/2"]]])).ok
    assert not mutated(lambda c, t: t[leaf_ids[0]][1][0].__setitem__(1, 0.5)).ok
    assert not mutated(lambda c, t: t.insert(0, ["split", 0, "0"])).ok
    # statement: other property digest, other network fingerprint
    assert not mutated(lambda c, t: c.__setitem__("property", "0" * 64)).ok
    assert not mutated(lambda c, t: c.__setitem__("network", "0" * 64)).ok
    assert check_vnn(cert, net, spec, mode=mode).ok  # the original still passes


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_leaves_name_no_method(split_case, mode):
    """The removed chain format let a leaf name its own replay method; a leaf that does is refused
    (the certificate's "method" holds for every leaf), as is an unknown certificate method."""
    net, spec, cert = split_case
    assert cert["method"] == "forward"
    c = copy.deepcopy(cert)
    next(n for n in _tree(c) if n[0] == "leaf").append("crown")
    v = check_vnn(c, net, spec, mode=mode)
    assert not v.ok and "names no method" in v.reason
    c = copy.deepcopy(cert)
    c["method"] = "simplex"
    assert not check_vnn(c, net, spec, mode=mode).ok
    c["method"] = "crown"  # CROWN argument bounds prove what IBP ones did here
    assert check_vnn(c, net, spec, mode=mode).ok


def test_edited_box_and_other_network_rejected(split_case):
    net, spec, cert = split_case
    region = spec.regions[0]
    wider = parse_property(_prop(["-1", "-1"], ["1.5", "1"], ["(>= Y_0 0)"]))
    assert not check_vnn(cert, net, wider).ok
    other = lower(random_graph(np.random.default_rng(99), (2, 8, 8, 2)).to_dict())
    assert "different network" in check_vnn(cert, other, spec).reason
    assert region.lo == (Fraction(-1), Fraction(-1))


def _one_layer(W, b=None, relu=False):
    W = np.asarray(W, dtype=np.float64)
    consts = {"W": W, "b": np.zeros(W.shape[1]) if b is None else np.asarray(b, dtype=np.float64)}
    nodes = [Node("matmul", ["x", "W"], "m"), Node("add", ["m", "b"], "y")]
    if relu:
        nodes.append(Node("relu", ["y"], "r"))
    return Graph([Value("x", (1, W.shape[0]), "float64")], consts, nodes, ["r" if relu else "y"]).check()


def test_network_fingerprint_names_exact_weights():
    """The same IR read twice gives equal fingerprints; a one-ulp weight change, a dropped ReLU, a
    transposed shape and weights no float64 holds exactly all change it."""
    g = random_graph(np.random.default_rng(5), (3, 4, 2))
    assert fingerprint(lower(g.to_dict())) == fingerprint(lower(g.to_dict()))
    W = np.random.default_rng(6).normal(size=(3, 2))
    bumped = W.copy()
    bumped[1, 1] = np.nextafter(W[1, 1], np.inf)
    graphs = [_one_layer(W), _one_layer(bumped), _one_layer(W, relu=True), _one_layer(W.T.copy()),
              _one_layer([[1.0, 0.0]]), _one_layer([[1.0], [0.0]])]
    prints = {fingerprint(lower(x.to_dict())) for x in graphs}
    assert len(prints) == len(graphs)
    a, b = lower(_one_layer([[1.0]]).to_dict()), lower(_one_layer([[1.0]]).to_dict())
    b.outputs[0].t[0] = Fraction(2**70 + 1, 3)
    a.outputs[0].t[0] = Fraction(2**70, 3)
    assert fingerprint(a) != fingerprint(b)


def test_registry_refuses_without_statement(split_case):
    v = check(split_case[2])
    assert not v.ok and "check_vnn" in v.reason


def test_sat_certificate_exact_and_tampered():
    t, spec = table.load_instance(TEST / "test_sat.onnx", TEST / "test_prop.vnnlib")
    net = t.bg
    res = verify(t, spec, timeout=30)
    assert res.verdict == "sat"
    assert check_vnn(res.cert, net, spec).ok
    assert table.confirmer(t, spec)(res.x)
    bad = copy.deepcopy(res.cert)
    bad["x"] = ["0"] * 5  # outside the box
    assert not check_vnn(bad, net, spec).ok


def test_sat_counterexample_accepted_by_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    t, spec = table.load_instance(TEST / "test_sat.onnx", TEST / "test_prop.vnnlib")
    res = verify(t, spec, timeout=30)
    sess = ort.InferenceSession(str(TEST / "test_sat.onnx"), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.array([float(v) for v in res.x], dtype=np.float32).reshape(inp.shape)
    y = sess.run(None, {inp.name: x})[0].reshape(-1).astype(np.float64)
    from torchlean.bridge.vnnlib import parse_vnnlib

    assert parse_vnnlib(TEST / "test_prop.vnnlib").is_counterexample(x.reshape(-1), y)


def test_property_parser_matches_bridge_on_all_files():
    from torchlean.verify.network import _bridge_spec, _canon

    for f in sorted(DATA.glob("*/*.vnnlib")):
        spec = load_spec(f, cross_check=False)
        assert _bridge_spec(f) == _canon(spec), f.name


def test_property_parser_shares_no_state():
    # the DNF product reuses atom objects in many cases: the box must be the same in each
    spec = load_spec(DATA / "acasxu" / "prop_5.vnnlib")
    assert len(spec.regions) == 1 and len(spec.regions[0].disjuncts) == 4
    assert spec.regions[0].lo[0] == Fraction("-0.324274257")


def _cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "torchlean.verify", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_verify_check_bounds(tmp_path):
    cert = tmp_path / "c.json"
    r = _cli(TEST / "test_small.onnx", TEST / "test_small.vnnlib", "--cert", cert, "-q")
    assert r.returncode == 0 and r.stdout.strip() == "unsat"
    r = _cli("check", cert, TEST / "test_small.onnx", TEST / "test_small.vnnlib")
    assert r.returncode == 0 and r.stdout.startswith("accepted") and "leaves" in r.stdout
    c = json.loads(cert.read_text())
    c["regions"][0][0][1][0][1] = "1000000"
    cert.write_text(json.dumps(c))
    r = _cli("check", cert, TEST / "test_small.onnx", TEST / "test_small.vnnlib")
    assert r.returncode == 1 and r.stdout.startswith("rejected")
    r = _cli("bounds", TEST / "test_small.onnx", TEST / "test_small.vnnlib", "--method", "ibp")
    assert r.returncode == 0 and "Y_0 in [" in r.stdout
    r = _cli(TEST / "test_sat.onnx", TEST / "test_prop.vnnlib", "-q")
    assert r.stdout.startswith("sat\n((X_0 ") and "(Y_4 " in r.stdout


def test_cli_bad_input_one_line(tmp_path):
    r = _cli(tmp_path / "nope.onnx", TEST / "test_prop.vnnlib")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 (exp 1)))\n")
    r = _cli(TEST / "test_nano.onnx", bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    old = Path(__file__).parent / "data" / "chain_cert" / "test_small.chain.json"  # the removed format
    r = _cli("check", old, TEST / "test_small.onnx", TEST / "test_small.vnnlib")
    assert r.returncode == 1 and r.stdout.count("\n") == 1 and "Traceback" not in r.stdout + r.stderr
    assert r.stdout.startswith("rejected: certificate is for a different network (or made in the removed "
                               "ReLU-chain")
    junk = tmp_path / "junk.json"
    junk.write_text("{")
    r = _cli("check", junk, TEST / "test_nano.onnx", TEST / "test_nano.vnnlib")
    assert r.returncode == 2 and "not JSON" in r.stderr


def test_cli_run_instances(tmp_path):
    out = tmp_path / "res.csv"
    r = _cli("run", TEST / "test_instances.csv", "--out", out, "-q", timeout=300)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "WRONG" not in text and "REJECTED" not in text
    assert text.count("unsat") >= 4 and ",sat," in text
