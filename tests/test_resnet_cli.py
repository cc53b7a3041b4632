"""A small ResNet with sri_resnet_a's ONNX op set (Conv, Add, Relu, Reshape, Gemm; batch norm folded
by the exporter) through the CLI: robustness properties in VNN-COMP's CIFAR form (nine disjuncts
"some other class wins"), verdicts checked against onnxruntime, the per-disjunct certificate
replayed in fast mode (whose forward states the disjuncts share, ``fast_vnn.check_leaves_fast``)
and its mutations rejected. Also the sparse product ``fast_forms._Mat.lmul`` against a dense one.

The network is built with torch and exported here (sri's network is 11 MB: too large for
tests/data); 192 inputs, so the search is the general one (root CROWN, ReLU splits, attack)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates.fast_forms import _Mat

ROOT = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.c2(torch.relu(self.c1(x))) + x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c0, self.bn, self.block = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), Block()
            self.down, self.short = nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.Conv2d(4, 8, 1, stride=2)
            self.fc = nn.Linear(8 * 4 * 4, 10)

        def forward(self, x):
            x = self.block(torch.relu(self.bn(self.c0(x))))
            x = torch.relu(self.down(x) + self.short(x))
            return self.fc(x.reshape(x.shape[0], -1))

    torch.manual_seed(0)
    model = Net().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics (folded into the conv on export)
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
    d = tmp_path_factory.mktemp("resnet")
    path = d / "resnet.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, 8, 8), str(path), dynamo=False, input_names=["X"],
                          output_names=["Y"])
    import onnx

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Conv", "Add", "Relu", "Gemm", "Reshape"} <= ops <= {"Conv", "Add", "Relu", "Gemm", "Reshape",
                                                                   "Constant"}
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x0 = np.random.default_rng(1).uniform(0.2, 0.8, 192)
    return d, path, sess, x0


def _run(sess, x):
    """onnxruntime's outputs (B, 10) for points (B, 192) (the export's batch size is 1)."""
    xs = np.asarray(x, np.float32).reshape(-1, 1, 3, 8, 8)
    return np.concatenate([sess.run(None, {"X": v})[0] for v in xs])


def _prop(d: Path, x0: np.ndarray, label: int, eps: float) -> Path:
    """VNN-COMP's CIFAR robustness property: unsafe when some other class scores >= the label."""
    lines = [f"(declare-const X_{i} Real)" for i in range(192)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(10)]
    for i, v in enumerate(x0):
        lo, hi = float(max(0.0, v - eps)), float(min(1.0, v + eps))
        lines += [f"(assert (>= X_{i} {lo!r}))", f"(assert (<= X_{i} {hi!r}))"]
    lines += ["(assert (or"] + [f"\t(and (>= Y_{j} Y_{label}))" for j in range(10) if j != label] + ["))"]
    p = d / f"prop_{eps}.vnnlib"
    p.write_text("\n".join(lines) + "\n")
    return p


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torchlean.verify", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=ENV)


def test_small_box_unsat_with_checked_per_disjunct_certificate(resnet, monkeypatch):
    d, net, sess, x0 = resnet
    label = int(_run(sess, x0)[0].argmax())
    prop = _prop(d, x0, label, 0.002)
    # onnxruntime agrees on samples of the box (a counterexample there would make unsat wrong)
    xs = np.clip(x0 + np.random.default_rng(2).uniform(-0.002, 0.002, (500, 192)), 0, 1)
    assert (_run(sess, xs).argmax(1) == label).all()
    cert = d / "cert.json"
    r = _cli(str(net), str(prop), "--timeout", "100", "--cert", str(cert))
    assert r.returncode == 0 and r.stdout.split()[0] == "unsat", (r.stdout, r.stderr)
    c = json.loads(cert.read_text())
    trees = c["regions"][0]["per_disjunct"]
    assert len(trees) == 9
    for mode in ("fast", "exact"):
        ok = _cli("check", str(cert), str(net), str(prop), "--mode", mode)
        assert ok.returncode == 0, (mode, ok.stdout, ok.stderr)
    # mutations: each disjunct's tree is replayed on its own (the forward state the fast mode shares
    # between them must not let one disjunct's proof stand for another's): a claim of 3x the
    # threshold the search without the root check writes (half its bound) fails on the first and
    # on the last disjunct (the CLI's certificate, from the root check, claims ``ROOT_CLAIM``)
    from fractions import Fraction

    from torchlean.certificates.bounds import check_vnn
    from torchlean.verify import general
    from torchlean.verify.table import load_instance

    t, spec = load_instance(net, prop)
    for mode in ("fast", "exact"):
        assert check_vnn(c, t.bg, spec, mode=mode).ok
    monkeypatch.setattr(general, "ROOT_CHECK", False)
    ref = general.verify_target(t, spec, timeout=60).cert["regions"][0]["per_disjunct"]
    for j in (0, len(trees) - 1):
        assert trees[j][0][0] == "leaf"  # (root CROWN refutes every disjunct of this small box)
        bad = json.loads(json.dumps(c))
        proof = bad["regions"][0]["per_disjunct"][j][0][1][0]
        proof[1] = str(3 * Fraction(ref[j][0][1][0][1]))
        for mode in ("fast", "exact"):
            v = check_vnn(bad, t.bg, spec, mode=mode)
            assert not v.ok, (j, mode, v.reason)


def test_large_box_sat_confirmed_by_onnxruntime(resnet):
    d, net, sess, x0 = resnet
    label = int(_run(sess, x0)[0].argmax())
    prop = _prop(d, x0, label, 0.3)
    r = _cli(str(net), str(prop), "--timeout", "100")
    assert r.returncode == 0 and r.stdout.split()[0] == "sat", (r.stdout, r.stderr)
    vals = dict(line.strip("()").split() for line in r.stdout.split("\n")[1:] if line.strip("()"))
    x = np.array([float(vals[f"X_{i}"]) for i in range(192)])
    assert (x >= np.maximum(0.0, x0 - 0.3) - 1e-12).all() and (x <= np.minimum(1.0, x0 + 0.3) + 1e-12).all()
    y = _run(sess, x)[0]
    assert np.delete(y, label).max() >= y[label] - 1e-5  # (float32 runtime vs exact reals)


@pytest.mark.parametrize("seed", range(4))
def test_sparse_lmul_matches_dense(seed):
    """The slot layout of ``_Mat.lmul`` (columns of very different entry counts, empty columns and
    rows, Y's rows in several chunks) gives Y @ A, and ``map`` (|A|) shares it correctly."""
    rng = np.random.default_rng(seed)
    R, n = int(rng.integers(1, 300)), int(rng.integers(1, 300))
    nnz = int(rng.integers(0, max(1, R * n // 40)))
    flat = rng.choice(R * n, size=nnz, replace=False)
    cols = np.where(rng.random(nnz) < 0.3, flat % min(n, 3), flat % n)  # a few crowded columns
    key = np.unique(np.stack([flat // n, cols], 1), axis=0)
    rows, cols = key[:, 0], key[:, 1]
    vals = rng.normal(size=len(rows))
    A = _Mat(R, n, rows, cols, vals)
    assert A.sparse
    D = np.zeros((R, n))
    D[rows, cols] = vals
    for M in (1, 3, 5000):
        Y = rng.normal(size=(M, R))
        np.testing.assert_allclose(A.lmul(Y), Y @ D, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(A.map(np.abs).lmul(Y), Y @ np.abs(D), rtol=1e-12, atol=1e-12)


def test_relu_split_search_stops_at_its_deadline(resnet):
    """A batch's forward pass stops at the search's deadline (``graph_relu._forward``: a ResNet
    batch can take minutes, far longer than the previous batch the loop's estimate is from)."""
    import time

    from torchlean.certificates import fast_engine as fe
    from torchlean.verify import graph_relu
    from torchlean.verify.table import load_target

    _, net, _, x0 = resnet
    fg = fe.compiled(load_target(net).bg)
    lo, hi = np.maximum(x0 - 0.01, 0)[None], np.minimum(x0 + 0.01, 1)[None]
    assert graph_relu._forward(fg, lo, hi, None, time.perf_counter() - 1.0) is None
    st = graph_relu._forward(fg, lo, hi, None, time.perf_counter() + 60.0)
    ref = fe.forward(fg, lo, hi, "crown")
    for a, b in zip(st.L, ref.L):
        np.testing.assert_array_equal(a, b)


def test_early_attack_only_above_the_root_work_gate(resnet, monkeypatch):
    """The attack before the root bounds (``general.EARLY_ATTACK_WORK``) runs only on graphs whose
    root CROWN pass is expensive: not on this small ResNet (its 896 ReLU elements: 3 x 4x8x8 + 8x4x4,
    counted from the torch model), whose sat instance is then found after the root pass as before;
    with the gate lowered below it, the early attack finds it and the checker accepts it."""
    from torchlean.verify import general, graph_relu, table
    from torchlean.verify.table import load_instance

    d, net, sess, x0 = resnet
    label = int(_run(sess, x0)[0].argmax())
    t, spec = load_instance(net, _prop(d, x0, label, 0.3))
    assert sum(t.bg.nodes[k].size for k in graph_relu.relu_nodes(t.bg)) == 3 * 4 * 8 * 8 + 8 * 4 * 4
    assert general.root_work(t.bg) < general.EARLY_ATTACK_WORK
    res = general.verify_target(t, spec, timeout=60)
    assert res.verdict == "sat" and "early_attack_s" not in res.stats
    monkeypatch.setattr(general, "EARLY_ATTACK_WORK", general.root_work(t.bg) - 1)
    res = general.verify_target(t, spec, timeout=60)
    assert res.verdict == "sat" and res.stats["early_attack_s"] <= 60
    assert table.check(res.cert, t, spec).ok
    y = _run(sess, np.array([float(v) for v in res.x]))[0]
    assert np.delete(y, label).max() >= y[label] - 1e-5


def _claims_out(cert: dict) -> dict:
    """The certificate with every leaf proof's claimed bound blanked (the root check's root leaves
    claim ``table.ROOT_CLAIM``, the search's own half their bound)."""
    c = json.loads(json.dumps(cert))
    for tree in c["regions"][0]["per_disjunct"]:
        for node in tree:
            if node[0] == "leaf":
                for proof in node[1]:
                    proof[1] = None
    return c


def _cli_replays(monkeypatch, net: Path, prop: Path, out: Path) -> tuple[list[str], list[str]]:
    """Run the CLI in-process (``--timeout 60 --cert out``, exit 0 asserted), counting every
    ``check_vnn`` call of the search (``table``) and of the CLI: (the texts of the certificates
    replayed, in order; what it wrote on stderr)."""
    from torchlean.certificates.bounds import check_vnn
    from torchlean.verify import __main__ as cli
    from torchlean.verify import table

    replayed: list[str] = []
    err: list[str] = []

    def counting(cert, *a, **k):
        replayed.append(table.cert_text(cert))
        return check_vnn(cert, *a, **k)

    monkeypatch.setattr(table, "check_vnn", counting)
    monkeypatch.setattr(cli, "check_vnn", counting)
    monkeypatch.setattr(sys, "stderr", type("E", (), {"write": lambda self, s: err.append(s),
                                                      "flush": lambda self: None})())
    assert cli.main([str(net), str(prop), "--timeout", "60", "--cert", str(out)]) == 0
    return replayed, err


def test_root_check_accepted_is_the_searchs_certificate_checked_once(resnet, monkeypatch):
    """Where root CROWN proves every disjunct, the search's root check (``general.ROOT_CHECK``) has
    the checker replay the root-only certificate, and that is the answer: the same verdict and the
    same trees (leaf by leaf the same row) as the search without it, claims aside; the claim is
    below each bound (a claim of 3x the search's half-bound is rejected above); the checker
    accepts it in both modes; and the CLI replays the certificate it writes exactly once."""
    from torchlean.certificates.bounds import check_vnn
    from torchlean.verify import general, table
    from torchlean.verify.table import load_instance

    d, net, sess, x0 = resnet
    label = int(_run(sess, x0)[0].argmax())
    prop = _prop(d, x0, label, 0.01)
    t, spec = load_instance(net, prop)
    on = general.verify_target(t, spec, timeout=60)
    monkeypatch.setattr(general, "ROOT_CHECK", False)
    off = general.verify_target(t, spec, timeout=60)
    monkeypatch.setattr(general, "ROOT_CHECK", True)
    assert on.verdict == off.verdict == "unsat"
    assert table.checked_by_search(on) is not None and table.checked_by_search(off) is None
    assert "root_s" not in on.stats and "root_s" in off.stats  # (the search's own pass: not run)
    assert _claims_out(on.cert) == _claims_out(off.cert)
    for tree in on.cert["regions"][0]["per_disjunct"]:
        assert tree == [["leaf", [[0, table.ROOT_CLAIM]]]]
    for mode in ("fast", "exact"):
        assert check_vnn(on.cert, t.bg, spec, mode=mode).ok and check_vnn(off.cert, t.bg, spec, mode=mode).ok
    # a certificate that differs from the one the search replayed is not taken as checked
    other = json.loads(json.dumps(on.cert))
    other["regions"][0]["per_disjunct"][0][0][1][0][1] = "1/2"
    assert table.checked_by_search(type(on)("unsat", cert=other, checked=on.checked)) is None

    out = d / "root_cert.json"
    replayed, err = _cli_replays(monkeypatch, net, prop, out)
    written = out.read_text()
    assert json.loads(written) == json.loads(table.cert_text(on.cert))
    assert replayed.count(written) == 1 and len(replayed) == 1
    assert any(s.startswith("checked: unsat: 9 leaves replayed") for s in "".join(err).splitlines())


def test_root_check_rejected_search_goes_on_from_the_checkers_root_state(resnet, monkeypatch):
    """Where root CROWN leaves a disjunct open, the root check is rejected, the search runs from
    the replay's own root state (bit for bit the state its own pass computes), splits ReLUs, and
    ends with the same verdict and certificate as without the root check; the CLI then replays
    that certificate (once: the root check replayed another one)."""
    from torchlean.certificates import fast_engine as fe
    from torchlean.verify import general, table
    from torchlean.verify.table import load_instance

    d, net, sess, x0 = resnet
    label = int(_run(sess, x0)[0].argmax())
    prop = _prop(d, x0, label, 0.025)
    t, spec = load_instance(net, prop)
    box = fe.boxes([spec.regions[0].lo], [spec.regions[0].hi])
    got = table.root_check(t, spec, __import__("time").perf_counter() + 60)
    assert got is not None and not got[1][1].ok
    st, ref = table.root_state(got[2], *box), fe.forward(fe.compiled(t.bg), *box, "crown")
    for a, b in zip(st.L + st.U, ref.L + ref.U):
        np.testing.assert_array_equal(a, b)
    on = general.verify_target(t, spec, timeout=60)
    monkeypatch.setattr(general, "ROOT_CHECK", False)
    off = general.verify_target(t, spec, timeout=60)
    monkeypatch.setattr(general, "ROOT_CHECK", True)
    assert on.verdict == off.verdict == "unsat" and on.stats["root_from_check"]
    assert on.stats["subproblems"] == off.stats["subproblems"] > 0
    assert on.cert == off.cert and table.checked_by_search(on) is None

    out = d / "split_cert.json"
    replayed, _ = _cli_replays(monkeypatch, net, prop, out)
    assert replayed.count(out.read_text()) == 1 and len(replayed) == 2  # (root check, then the replay)


def test_root_check_plumbing_takes_nothing_in(resnet, monkeypatch):
    """``check_vnn``'s ``keep`` is out-only: a caller's states put there are neither read nor kept
    (the replay hands back a dict of its own, holding its root state); ``checked_by_search`` takes
    only an accepted verdict on the very text; ``verify run`` (``runner.run_instance``) also
    replays the root check's accepted certificate no second time."""
    from torchlean.certificates.bounds import check_vnn
    from torchlean.verify import general, runner, table
    from torchlean.verify.table import load_instance
    from torchlean.verify.tree import Result

    d, net, sess, x0 = resnet
    label = int(_run(sess, x0)[0].argmax())
    prop = _prop(d, x0, label, 0.01)
    t, spec = load_instance(net, prop)
    res = general.verify_target(t, spec, timeout=60)
    text, v = res.checked
    assert v.ok and text == table.cert_text(res.cert)

    class Poison(dict):
        def __contains__(self, key):
            raise AssertionError("the replay read the caller's states")

        __getitem__ = get = __contains__

    poison = Poison()
    keep = {"states": poison}
    assert check_vnn(res.cert, t.bg, spec, mode="fast", keep=keep).ok
    assert keep["states"] is not poison and len(keep["states"]) == 1
    from torchlean.certificates.core import Verdict

    refused = Result("unsat", cert=res.cert, checked=(text, Verdict(False, reason="x")))
    assert table.checked_by_search(refused) is None
    assert table.checked_by_search(Result("unsat", cert=res.cert, checked=(text, v))) is v

    calls: list[str] = []
    monkeypatch.setattr(table, "check_vnn", lambda *a, **k: calls.append("replay") or check_vnn(*a, **k))
    row = runner.run_instance(net, prop, 60)  # (one replay in all: the root check's, no second one)
    assert row["result"] == "unsat" and row["check"] == "accepted" and calls == ["replay"], row
    assert row["mode"] == table.replay_mode(res.cert, t.bg) and float(row["check_s"]) > 0
