"""The verify command's fixed costs, cut without weakening what they check (issue 15's time
criterion): the network fingerprint is hashed once per bound graph and still binds a certificate
to its network, the weights decode to exactly the rationals ``Fraction(v)`` gives, a ReLU chain's
float layers are the per-coefficient ones (made only when read), and ``torchlean.verify`` starts
without sympy or the non-VNN checkers while every certificate kind stays checkable."""

import dataclasses
import gc
import json
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from test_bounds import random_graph

from torchlean.certificates import bound_graph, check
from torchlean.certificates import lower as lower_mod
from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.lower import fingerprint, lower
from torchlean.certificates.property import parse_property
from torchlean.verify import float_chain, verify

ROOT = Path(__file__).resolve().parents[1]
TEST = Path(__file__).parent / "data" / "vnncomp2021" / "test"
#: a fresh interpreter on this tree (no bytecode written into it)
ENV = {"PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "PATH": "", "PYTHONDONTWRITEBYTECODE": "1"}


def _prop(thr: float) -> str:
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(2))
    text += "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    text += "".join(f"(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))\n" for i in range(2))
    return text + f"(assert (>= Y_0 {thr:.6f}))\n"


@pytest.fixture(scope="module")
def proved():
    """A network, a property proved unsat on it (so the certificate's fingerprint was taken and
    kept on the graph), and a second network differing from it in one weight by one ulp."""
    g = random_graph(np.random.default_rng(7), (2, 8, 8, 2))
    net = lower(g.to_dict())
    y = float_chain(net).forward(np.random.default_rng(8).uniform(-1, 1, (20000, 2)))
    spec = parse_property(_prop(float(y[:, 0].max()) + 0.05))
    res = verify(net, spec, timeout=60)
    assert res.verdict == "unsat"
    d = g.to_dict()
    W = np.array(g.constants["W1"])
    W[3, 0] = np.nextafter(W[3, 0], np.float32(np.inf), dtype=np.float32)
    g2 = dataclasses.replace(g, constants={**g.constants, "W1": W})
    assert g2.to_dict() != d
    return net, spec, res.cert, lower(g2.to_dict())


def test_fingerprint_kept_equals_a_fresh_one(proved):
    net, _, cert, _ = proved
    assert net.fp is not None and cert["network"] == net.fp
    again = lower(random_graph(np.random.default_rng(7), (2, 8, 8, 2)).to_dict())
    assert again.fp is None  # a new lowering starts without one, and hashes its own weights
    assert fingerprint(again) == net.fp


def test_kept_fingerprint_still_binds_the_network(proved):
    """A certificate accepted on its network (whose fingerprint is kept) is refused on a network
    one ulp away, in both modes, and so is one relabelled with that network's fingerprint."""
    net, spec, cert, other = proved
    for mode in ("exact", "fast"):
        assert check_vnn(cert, net, spec, mode=mode).ok
        v = check_vnn(cert, other, spec, mode=mode)
        assert not v.ok and "different network" in v.reason
    assert fingerprint(other) != fingerprint(net)
    relabelled = {**cert, "network": fingerprint(other)}
    assert not check_vnn(relabelled, net, spec).ok


def test_copies_do_not_inherit_the_fingerprint(proved):
    net = proved[0]
    copy = dataclasses.replace(net, outputs=net.outputs[:1])
    assert copy.fp is None and fingerprint(copy) != fingerprint(net)


def test_exact_floats_are_the_constructors_rationals():
    rng = np.random.default_rng(0)
    vals = [0.0, -0.0, 1.0, -1.5, 5e-324, -2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 2.0**-1074]
    f32 = rng.normal(0, 1, 64).astype("<f4").tobytes()
    vals += rng.normal(0, 1e3, 200).tolist() + list(struct.unpack("<64f", f32))
    got = bound_graph.exact_floats(vals)
    for v, q in zip(vals, got, strict=True):
        ref = Fraction(v)
        assert type(q) is Fraction and q == ref and hash(q) == hash(ref)
        assert (q.numerator, q.denominator) == (ref.numerator, ref.denominator)
        assert q + 1 == ref + 1 and q * 3 == ref * 3 and str(q) == str(ref)
    assert bound_graph._SLOTS  # (this Python's Fraction keeps its two fields in those slots)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_still_refused(bad):
    g = random_graph(np.random.default_rng(1), (2, 3, 2), dtype=np.float64)
    W = np.array(g.constants["W0"])
    W[0, 0] = bad
    g2 = dataclasses.replace(g, constants={**g.constants, "W0": W})
    const = g2.to_dict()["constants"]["W0"]
    if bad == float("-inf"):  # a mask value: decoded as such, refused in every use but where/softmax
        assert lower_mod._decode_const(const)[1][0] is lower_mod.NEG_INF
        with pytest.raises(bound_graph.Unsupported, match="-inf"):
            lower(g2.to_dict())
    else:
        with pytest.raises(bound_graph.Unsupported, match="non-finite"):
            lower_mod._decode_const(const)


def _chain_by_coefficient(bg):
    """The float layers read one coefficient at a time (the reference float_chain replaced)."""
    layers, prev = [], bg.nodes[0]
    for node in [*bg.nodes[1:], None]:
        forms = node.args if node is not None else bg.outputs
        W, b = np.zeros((len(forms), prev.size)), np.zeros(len(forms))
        for i, f in enumerate(forms):
            for v, q in f.t.items():
                W[i, v - prev.offset] = float(q)
            b[i] = float(f.c)
        layers.append((W, b))
        prev = node
    return layers


@pytest.mark.parametrize("sizes", [(2, 8, 8, 2), (5, 16, 3), (3, 4)])
def test_float_chain_matches_the_coefficients(sizes):
    bg = lower(random_graph(np.random.default_rng(len(sizes)), sizes).to_dict())
    fn = float_chain(bg)
    ref = _chain_by_coefficient(bg)
    assert len(fn.layers) == len(ref)
    for (W, b), (W2, b2) in zip(fn.layers, ref):
        assert W.shape == W2.shape and np.array_equal(W, W2) and np.array_equal(b, b2)


def test_float_chain_refuses_a_skip_connection():
    from torchlean.spec import Graph, Node, Value

    rng = np.random.default_rng(2)
    consts = {"W0": rng.normal(size=(3, 3)), "W1": rng.normal(size=(3, 3))}
    nodes = [Node("matmul", ["x", "W0"], "m0"), Node("relu", ["m0"], "h0"),
             Node("matmul", ["h0", "W1"], "m1"), Node("add", ["m1", "x"], "y")]
    g = Graph([Value("x", (1, 3), "float64")], consts, nodes, ["y"]).check()
    assert float_chain(lower(g.to_dict())) is None


def _fresh(code: str) -> str:
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_verify_imports_neither_sympy_nor_the_other_checkers():
    out = _fresh("import sys, torchlean, torchlean.verify.__main__, torchlean.verify.bab\n"
                 "from torchlean.certificates import core\n"
                 "print(sorted(m for m in ('sympy', 'onnx', 'torchlean.certificates.errorbound') "
                 "if m in sys.modules), 'errorbound' in core.CHECKERS)")
    assert out == "[] False", out


def test_every_kind_is_registered_on_first_check():
    """``check`` of a kind not yet registered imports the checkers: a malformed certificate of
    each kind is refused by that kind's checker, not as an unknown kind."""
    kinds = ["errorbound", "refutation", "composition", "terms", "windows", "adjoint",
             "rounding-lemma-exhaustive", "vnn-unsat", "vnn-sat", "vnn-unsat-float"]
    out = _fresh("import json\nfrom torchlean.certificates import check\n"
                 f"print(json.dumps([check({{'kind': k}}).reason for k in {kinds!r}]))")
    for k, reason in zip(kinds, json.loads(out), strict=True):
        assert "unknown certificate kind" not in reason, (k, reason)
    assert "unknown certificate kind" in check({"kind": "no-such-kind"}).reason


def test_verify_cli_after_the_loading_freeze(tmp_path):
    """The CLI loads under ``_malloc.loading`` (no cyclic GC, then ``gc.freeze``): its verdict
    and certificate are the library's, and the collector is back on afterwards."""
    cert = tmp_path / "c.json"
    p = subprocess.run([sys.executable, "-m", "torchlean.verify", str(TEST / "test_unsat.onnx"),
                        str(TEST / "test_prop.vnnlib"), "--cert", str(cert), "-q"],
                       capture_output=True, text=True, timeout=120,
                       env=ENV)
    assert p.returncode == 0 and p.stdout.strip() == "unsat", p.stderr
    c = subprocess.run([sys.executable, "-m", "torchlean.verify", "check", str(cert),
                        str(TEST / "test_unsat.onnx"), str(TEST / "test_prop.vnnlib")],
                       capture_output=True, text=True, timeout=120,
                       env=ENV)
    assert c.returncode == 0 and c.stdout.startswith("accepted"), c.stdout + c.stderr
    other = subprocess.run([sys.executable, "-m", "torchlean.verify", "check", str(cert),
                            str(TEST / "test_sat.onnx"), str(TEST / "test_prop.vnnlib")],
                           capture_output=True, text=True, timeout=120,
                           env=ENV)
    assert other.returncode == 1 and "different network" in other.stdout
    from torchlean._malloc import loading

    was = gc.isenabled()
    with loading():
        assert not gc.isenabled()
    assert gc.isenabled() == was
    gc.unfreeze()
