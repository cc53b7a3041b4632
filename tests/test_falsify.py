"""The one counterexample search (verify/attack.py) on chain and graph executors, and the
falsification alongside branch and bound (``attack.InSearch``): found points are confirmed exactly
and by onnxruntime; ``confirm`` is the only gate; a needle the pre-search misses is found in-search.

Networks are built with torchlean (weights from a seeded torch model), exported to ONNX and read
back, with VNN-LIB properties written here."""

from __future__ import annotations

import importlib.util
import time
from fractions import Fraction

import numpy as np
import pytest

import torchlean as tl
from torchlean import bridge
from torchlean.certificates.bounds import check_vnn
from torchlean.verify import attack, table
from torchlean.verify.bab import verify
from torchlean.verify.network import float_chain, load_graph, load_spec
from torchlean.verify.table import load_target

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
needs_table = pytest.mark.skipif(importlib.util.find_spec("torchlean.certificates.lower") is None,
                                 reason="needs the bound table (certificates.lower)")


def _export(tm: torch.nn.Sequential, layers: list, n_in: int, path) -> None:
    """The torch model's weights in a torchlean model of the same layers, traced and exported."""
    from torchlean.bridge.torch_io import from_torch_state_dict

    model = tl.nn.Sequential(*layers)
    from_torch_state_dict(model, tm.state_dict())
    bridge.export_onnx(tl.trace(model, tl.zeros(1, n_in)), path)


def _prop(path, lo, hi, n_out: int, atoms: list[str]):
    n = len(lo)
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(n))
    text += "".join(f"(declare-const Y_{i} Real)\n" for i in range(n_out))
    text += "".join(f"(assert (>= X_{i} {lo[i]!r}))\n(assert (<= X_{i} {hi[i]!r}))\n" for i in range(n))
    text += "".join(f"(assert {a})\n" for a in atoms)
    path.write_text(text)
    return path


def _ort_y(path, x: list[Fraction]) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    return s.run(None, {inp.name: np.array([[float(v) for v in x]], np.float32)})[0].ravel()


def _relu_mlp(tmp_path, seed: int = 0):
    torch.manual_seed(seed)
    tm = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16),
                             torch.nn.ReLU(), torch.nn.Linear(16, 2))
    path = tmp_path / "mlp.onnx"
    _export(tm, [tl.nn.Linear(3, 16), tl.nn.ReLU(), tl.nn.Linear(16, 16), tl.nn.ReLU(), tl.nn.Linear(16, 2)],
            3, path)
    return tm, path


def _min_diff(tm, lo, hi, n=200_000) -> float:
    """A dense-sampling estimate (torch, independent of the search) of min Y_0 - Y_1 over the box."""
    x = torch.tensor(np.random.default_rng(1).uniform(lo, hi, (n, len(lo))), dtype=torch.float32)
    with torch.no_grad():
        y = tm(x)
    return float((y[:, 0] - y[:, 1]).min())


def test_search_on_a_chain_finds_a_point_exact_and_onnxruntime_agree(tmp_path):
    tm, path = _relu_mlp(tmp_path)
    lo, hi = [-1.0] * 3, [1.0] * 3
    t = _min_diff(tm, lo, hi) + 0.05  # some point of the sample is unsafe: the set is not empty
    spec = load_spec(_prop(tmp_path / "p.vnnlib", lo, hi, 2, [f"(<= (- Y_0 Y_1) {t!r})"]))
    net = load_target(path).bg
    x = attack.search(float_chain(net), spec, lambda q: table.confirm(net, spec, q))
    assert x is not None and table.confirm(net, spec, x)
    y = _ort_y(path, x)
    assert y[0] - y[1] <= t + 1e-5 and all(-1 <= v <= 1 for v in x)


@needs_table
def test_search_on_a_graph_executor_finds_a_point_the_checker_confirms(tmp_path):
    from torchlean.verify import table

    torch.manual_seed(2)
    tm = torch.nn.Sequential(torch.nn.Linear(2, 12), torch.nn.Tanh(), torch.nn.Linear(12, 2))
    path = tmp_path / "tanh.onnx"
    _export(tm, [tl.nn.Linear(2, 12), tl.nn.Tanh(), tl.nn.Linear(12, 2)], 2, path)
    lo, hi = [-1.0, -1.0], [1.0, 1.0]
    t = _min_diff(tm, lo, hi) + 0.02
    spec = load_spec(_prop(tmp_path / "p.vnnlib", lo, hi, 2, [f"(<= (- Y_0 Y_1) {t!r})"]))
    tgt = table.target(load_graph(path))
    assert not tgt.chain
    conf = table.confirmer(tgt, spec)
    x = attack.search(tgt.ex, spec, conf)
    assert x is not None and table.check(table.sat_cert(tgt, spec, x), tgt, spec).ok
    y = _ort_y(path, x)
    assert y[0] - y[1] <= t + 1e-5


def test_leaf_minimisers_are_box_corners_minimising_the_linear_function():
    rng = np.random.default_rng(0)
    lo = rng.uniform(-2, 0, (50, 4))
    hi = lo + rng.uniform(0, 1, (50, 4))
    c = rng.standard_normal((50, 4))
    x = attack.leaf_minimisers(lo, hi, c)
    assert ((lo <= x) & (x <= hi)).all() and ((x == lo) | (x == hi)).all()
    samples = lo[:, None] + rng.random((50, 1000, 4)) * (hi - lo)[:, None]
    assert ((c * x).sum(1)[:, None] <= np.einsum("bd,bsd->bs", c, samples) + 1e-12).all()


def test_in_search_candidates_are_in_the_region_and_refused_points_not_retried(tmp_path):
    tm, path = _relu_mlp(tmp_path)
    lo, hi = [-1.0, -0.5, 0.0], [1.0, 0.5, 0.25]
    t = _min_diff(tm, lo, hi) + 0.05
    spec = load_spec(_prop(tmp_path / "p.vnnlib", lo, hi, 2, [f"(<= (- Y_0 Y_1) {t!r})"]))
    net = load_target(path).bg
    seen = []
    fals = attack.InSearch(float_chain(net), spec.regions[0], lambda q: seen.append(q) or False)
    rng = np.random.default_rng(3)
    for _ in range(5):  # sub-boxes of the region, as branch and bound hands them over
        a = rng.uniform(lo, hi, (8, 3))
        b = rng.uniform(lo, hi, (8, 3))
        assert fals.step(np.minimum(a, b), np.maximum(a, b), -np.ones(8), rng.standard_normal((8, 3))) is None
    # the region as the only leaf (ReLU splitting): the root's corners, then boxless steps
    assert fals.root(-np.ones(4), rng.standard_normal((4, 3)), np.zeros(4, dtype=int)) is None
    assert fals.anchors is not None and fals.anchors.shape == (4, 3)
    assert fals.step(fals.lo[None], fals.hi[None], np.array([-np.inf]), None) is None
    r = spec.regions[0]
    assert seen and all(r.contains(q) for q in seen)
    assert len({tuple(q) for q in seen}) == len(seen)  # a refused point is never confirmed again


def test_confirm_is_the_gate_a_lying_float_margin_never_gives_sat(tmp_path, monkeypatch):
    tm, path = _relu_mlp(tmp_path)
    lo, hi = [-1.0] * 3, [1.0] * 3
    net = load_target(path).bg
    spec = load_spec(_prop(tmp_path / "p.vnnlib", lo, hi, 2, ["(<= (- Y_0 Y_1) -1000)"]))  # unsat
    calls = []
    real = table.confirmer

    def counting(t, s):
        gate = real(t, s)
        return lambda x: calls.append(1) or gate(x)

    # every float margin and PGD objective claims a violation
    monkeypatch.setattr(attack, "margins", lambda region, y: -np.ones((y.shape[0], len(region.disjuncts))))
    real_pgd = attack.pgd
    monkeypatch.setattr(attack, "pgd", lambda *a, **k: (real_pgd(*a, **k)[0], -np.ones(a[3].shape[0])))
    monkeypatch.setattr(table, "confirmer", counting)
    res = verify(net, spec, timeout=10)
    assert calls, "the lying margins must reach confirm"
    assert res.verdict != "sat"
    if res.verdict == "unsat":
        assert check_vnn(res.cert, net, spec).ok


def _needle(tmp_path, c=(0.3137, -0.2719), k=200.0):
    """y = 1 - relu(1 - k·|x - c|_1): below 0.9 only within L1 distance 0.1/k of c; elsewhere its
    gradient is 0, so sampling and PGD see a flat function."""
    tm = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1), torch.nn.ReLU(),
                             torch.nn.Linear(1, 1))
    with torch.no_grad():
        tm[0].weight.copy_(torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]]))
        tm[0].bias.copy_(torch.tensor([-c[0], c[0], -c[1], c[1]]))
        tm[2].weight.copy_(torch.full((1, 4), -k))
        tm[2].bias.fill_(1.0)
        tm[4].weight.fill_(-1.0)
        tm[4].bias.fill_(1.0)
    path = tmp_path / "needle.onnx"
    _export(tm, [tl.nn.Linear(2, 4), tl.nn.ReLU(), tl.nn.Linear(4, 1), tl.nn.ReLU(), tl.nn.Linear(1, 1)], 2,
            path)
    spec = load_spec(_prop(tmp_path / "needle.vnnlib", [-1.0, -1.0], [1.0, 1.0], 1, ["(<= Y_0 0.9)"]))
    return path, spec


def test_in_search_falsification_finds_the_needle_the_pre_search_misses(tmp_path):
    path, spec = _needle(tmp_path)
    net = load_target(path).bg
    conf = lambda q: table.confirm(net, spec, q)  # noqa: E731
    assert attack.search(float_chain(net), spec, conf) is None  # sampling and PGD: flat everywhere
    res = verify(net, spec, timeout=20)
    assert res.verdict == "sat" and res.stats["boxes"] > 0  # found during branch and bound
    assert check_vnn(res.cert, net, spec).ok
    assert _ort_y(path, res.x)[0] <= 0.9 + 1e-6


@needs_table
def test_in_search_falsification_on_the_graph_search(tmp_path):
    from torchlean.verify import general, table

    path, spec = _needle(tmp_path)
    tgt = table.target(load_graph(path))
    conf = table.confirmer(tgt, spec)
    assert attack.search(tgt.ex, spec, conf) is None
    verdict, x, stats = general.solve(table.bounder(tgt), tgt.ex, spec, conf, timeout=30)
    assert verdict == "sat" and stats["boxes"] > 0
    assert table.check(table.sat_cert(tgt, spec, x), tgt, spec).ok


def _burn(seconds: float) -> None:
    """Spend CPU time (a slower machine or a loaded core, as this process's clock sees it)."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def _in_search_schedule(net, region, per_call: float, per_batch: float) -> list:
    """``InSearch`` over 40 batches of random sub-boxes of the region (as branch and bound hands
    them over, 16 bounded per batch), ``confirm`` refusing every point: per batch, the PGD rounds
    so far and the best float margin seen, and every point handed to ``confirm``. ``per_call``,
    ``per_batch``: CPU seconds burnt in each executor call, in each batch's (stand-in) bounding."""
    ex = float_chain(net)
    if per_call:
        fwd, vg = ex.forward, ex.value_and_grad
        ex.forward = lambda x: _burn(per_call) or fwd(x)
        ex.value_and_grad = lambda *a, **k: _burn(per_call) or vg(*a, **k)
    log: list = []
    fals = attack.InSearch(ex, region, lambda q: log.append(tuple(q)) or False, seed=3)
    lo, hi = np.array([float(v) for v in region.lo]), np.array([float(v) for v in region.hi])
    rng = np.random.default_rng(7)
    for i in range(40):
        _burn(per_batch)
        a, b = rng.uniform(lo, hi, (2, 8, lo.size))
        coef = rng.standard_normal((8, lo.size))
        assert fals.step(np.minimum(a, b), np.maximum(a, b), -rng.random(8), coef, 16 * (i + 1)) is None
        log.append((fals.stats["pgd_rounds"], fals.best))
    return log


def test_in_search_schedule_is_the_same_on_a_slow_or_loaded_machine(tmp_path):
    """The PGD rounds' schedule counts work, not time: a run whose executor calls are slow and one
    whose bounding is slow give PGD rounds at the same batches, from the same random starts (the
    same best margins), and hand ``confirm`` the same points (under the CPU-second schedule, the
    first run got 5 rounds where the second got 15 and an undisturbed one 9)."""
    tm, path = _relu_mlp(tmp_path)
    lo, hi = [-1.0, -0.5, 0.0], [1.0, 0.5, 0.25]
    t = _min_diff(tm, lo, hi) - 0.02  # float margins small, > 0: the share gate decides each round
    spec = load_spec(_prop(tmp_path / "p.vnnlib", lo, hi, 2, [f"(<= (- Y_0 Y_1) {t!r})"]))
    net = load_target(path).bg
    a = _in_search_schedule(net, spec.regions[0], per_call=0.0005, per_batch=0.0)
    b = _in_search_schedule(net, spec.regions[0], per_call=0.0, per_batch=0.02)
    rounds = [v[0] for v in a if isinstance(v[0], int)]
    assert 0 < rounds[-1] < 40, "the share gate must both grant and refuse rounds here"
    assert a == b
