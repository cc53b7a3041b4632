"""tl.verify.bounds / tl.verify.robustness on torchlean models through tl.trace (no ONNX round trip),
against sampled outputs, PyTorch, onnxruntime and the checker."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import torchlean as tl
from torchlean import bridge, nn
from torchlean.certificates.bounds import check_vnn
from torchlean.certificates.lower import lower
from torchlean.verify import engines

HAS_TABLE = importlib.util.find_spec("torchlean.certificates.lower") is not None
table_only = pytest.mark.skipif(not HAS_TABLE, reason="needs the bound table (certificates.lower)")


def _samples(model, x, eps, n=300, seed=0):
    rng = np.random.default_rng(seed)
    pts = x + rng.uniform(-eps, eps, (n, *x.shape[1:]))
    corners = x + eps * rng.choice([-1.0, 1.0], (n // 3, *x.shape[1:]))
    with tl.no_grad():
        return np.stack([model(tl.tensor(p[None])).numpy()[0] for p in np.concatenate([pts, corners])])


def _trained_cnn():
    tl.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, 1, 8, 8))
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).astype(np.int64)  # top vs bottom half
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, stride=2), nn.ReLU(), nn.AvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
    )
    trained = tl.Trainer(model, task="classification", optimizer="adam", lr=0.02).train(
        (x, y), steps=40, batch_size=16, progress=False)
    model.eval()
    return trained, model, x


@table_only
def test_trained_cnn_bounds_contain_samples_and_crown_is_tighter_than_ibp():
    _, model, data = _trained_cnn()
    bn = model[1]
    assert not np.allclose(bn.running_mean.numpy(), 0)  # training moved the batch-norm statistics
    x, eps = data[:1], 0.02
    ys = _samples(model, x, eps)
    b_ibp = tl.verify.bounds(model, x, eps, method="ibp")
    b = tl.verify.bounds(model, x, eps)
    assert "certificates" in b.checked_by
    assert b.contains(ys) and b_ibp.contains(ys)
    assert (b.lower >= b_ibp.lower - 1e-12).all() and (b.upper <= b_ibp.upper + 1e-12).all()
    assert (b.upper - b.lower).sum() < (b_ibp.upper - b_ibp.lower).sum()


@table_only
def test_tanh_gelu_mlp_bounds_alpha_no_looser_and_sound():
    tl.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 12), nn.Tanh(), nn.Linear(12, 12), nn.GELU(approximate="tanh"),
                          nn.Linear(12, 3))
    x, eps = np.array([[0.2, -0.4, 0.7]]), 0.25
    ys = _samples(model, x, eps)
    b = tl.verify.bounds(model, x, eps)
    a = tl.verify.bounds(model, x, eps, method="alpha-crown")
    assert b.contains(ys) and a.contains(ys)
    assert (a.lower >= b.lower).all() and (a.upper <= b.upper).all()
    # a traced graph gives the same bounds as the model
    g = tl.trace(model, tl.tensor(x))
    bg = tl.verify.bounds(g, x, eps)
    assert np.array_equal(bg.lower, b.lower) and bg.network == b.network


@table_only
def test_transformer_encoder_layer_bounds_contain_samples():
    tl.manual_seed(2)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    layer.eval()
    x, eps = np.random.default_rng(3).uniform(-1, 1, (1, 3, 8)), 0.005
    ys = _samples(layer, x, eps, n=90)
    b = tl.verify.bounds(layer, x, eps)
    assert b.lower.shape == (1, 3, 8) and b.contains(ys)
    assert np.isfinite(b.lower).all() and (b.upper - b.lower).max() < 5


def test_bounds_on_a_relu_chain_match_torch_samples():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).double()
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    bridge.from_torch_state_dict(model, tm.state_dict())
    x, eps = np.array([[0.1, 0.5, -0.3, 0.9]]), 0.1
    b = tl.verify.bounds(model, x, eps)
    pts = x + np.random.default_rng(0).uniform(-eps, eps, (2000, 4))
    with torch.no_grad():
        ys = tm(torch.tensor(pts)).numpy()
    assert b.contains(ys)
    assert (ys.min(0) - b.lower.ravel()).max() < 0.5  # and not vacuous


def test_bounds_rejects_bad_input():
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError):
        tl.verify.bounds(model, np.zeros((1, 2)), -1.0)
    with pytest.raises(ValueError):
        tl.verify.bounds(model, np.zeros((1, 2)), 0.1, method="nope")
    with pytest.raises(ValueError, match="broadcast"):  # (was numpy's remapped-shapes message)
        tl.verify.bounds(model, np.zeros((1, 2)), np.full(3, 0.1))
    with pytest.raises(ValueError, match="clip"):
        tl.verify.bounds(model, np.zeros((1, 2)), 0.1, clip=(1.0, 0.0))
    with pytest.raises(TypeError, match="torchlean model"):
        tl.verify.bounds("net.onnx", np.zeros((1, 2)), 0.1)
    graph = tl.trace(model, tl.zeros(1, 2))  # (numpy's gufunc message, deep in the engine)
    with pytest.raises(ValueError, match=r"x has shape \(1, 3\), the graph's input\(s\) \(1, 2\)"):
        tl.verify.bounds(graph, np.zeros((1, 3)), 0.1)


@pytest.mark.torch
def test_a_torch_model_is_refused_with_the_way_to_convert_it():
    """A torch module met torchlean tensors deep inside: 'must be Tensor, not Tensor'."""
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(torch.nn.Linear(2, 3))
    for call in (lambda: tl.verify.bounds(tm, np.zeros((1, 2)), 0.1),
                 lambda: tl.verify.robustness(tm, np.zeros((1, 2)), 0.1, label=0),
                 lambda: tl.trace(tm, tl.zeros(1, 2))):
        with pytest.raises(TypeError, match="from_torch"):
            call()
    converted = bridge.from_torch(tm)
    b = tl.verify.bounds(converted, np.zeros((1, 2)), 0.1)
    assert b.contains(tm(torch.zeros(1, 2)).detach().numpy())
    with pytest.raises(ValueError, match="already a torchlean model"):
        bridge.from_torch(converted)
    with pytest.raises(ValueError, match="already a PyTorch module"):
        bridge.to_torch(tm)


def test_a_model_left_in_training_mode_is_refused():
    """With Dropout in training mode the trace kept one random mask as a constant: 'sound' bounds of
    a random sub-network that did not contain the eval model's own output at x."""
    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 3))
    x = np.array([[0.5, -1.0]])
    for call in (lambda: tl.verify.bounds(model, x, 0.01),
                 lambda: tl.verify.robustness(model, x, 0.01, label=0, timeout=5)):
        with pytest.raises(ValueError, match=r"training mode and Dropout.*model.eval\(\)"):
            call()
    model.eval()
    assert tl.verify.bounds(model, x, 0.01).contains(model(tl.tensor(x)).numpy())
    plain = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.0))  # nothing differs in training: allowed
    assert tl.verify.bounds(plain, x, 0.01).contains(plain(tl.tensor(x)).numpy())


def test_robustness_refuses_a_label_it_would_have_to_guess():
    """int(1.5) was 1: a fractional label got a verdict about class 1. A batch of two inputs made
    ``label`` index all six scores together; one output made numpy's reduction fail."""
    model, x = _relu_mlp(), np.array([[0.5, -1.0]])
    label = int(model(tl.tensor(x)).numpy().argmax())
    ref = tl.verify.robustness(model, x, eps=0.001, label=label, timeout=10)
    for same in (np.int64(label), float(label), tl.tensor(label)):
        assert tl.verify.robustness(model, x, eps=0.001, label=same, timeout=10).verdict == ref.verdict
    for bad in (label + 0.5, float("nan"), "1", [label, label]):
        with pytest.raises(TypeError, match="whole class index"):
            tl.verify.robustness(model, x, eps=0.001, label=bad, timeout=10)
    with pytest.raises(ValueError, match="one vector of class scores"):
        tl.verify.robustness(model, np.zeros((2, 2)), eps=0.001, label=0, timeout=10)
    with pytest.raises(ValueError, match="at least 2 class scores"):
        tl.verify.robustness(nn.Sequential(nn.Linear(2, 1)), x, eps=0.001, label=0, timeout=10)
    for t in (0, -1.0, float("inf"), "10"):
        with pytest.raises(ValueError, match="timeout"):
            tl.verify.robustness(model, x, eps=0.001, label=label, timeout=t)


def _relu_mlp():
    tl.manual_seed(4)
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))


def test_robustness_verified_has_a_certificate_the_checker_accepts():
    model = _relu_mlp()
    x = np.array([[0.3, -0.2]])
    label = int(model(tl.tensor(x)).numpy().argmax())
    r = tl.verify.robustness(model, x, 1e-3, label)
    assert r.verdict == "verified" and r
    net = lower(tl.trace(model, tl.tensor(x)).to_dict())  # the checker's own lowering of the IR
    assert check_vnn(r.certificate, net, r.spec).ok  # an independent replay
    wrong = dict(r.certificate, property=check_vnn.__name__)
    assert not check_vnn(wrong, net, r.spec).ok


def test_robustness_falsified_counterexample_is_real_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    model = _relu_mlp()
    x = np.array([[0.3, -0.2]])
    label = int(model(tl.tensor(x)).numpy().argmax())
    r = tl.verify.robustness(model, x, 3.0, label)
    assert r.verdict == "falsified" and not r
    cx = r.counterexample
    assert np.abs(cx - x).max() <= 3.0
    g = tl.trace(model, tl.tensor(x))
    proto = bridge.export_onnx(g)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: cx.astype(np.float32)})[0].ravel()
    assert y.argmax() != label or np.sum(y == y[label]) > 1


@table_only
def test_robustness_on_a_tanh_mlp_is_checked_both_ways():
    torch = pytest.importorskip("torch")
    tl.manual_seed(5)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3))
    x = np.array([[0.5, 0.1]])
    y0 = model(tl.tensor(x)).numpy().ravel()
    label = int(y0.argmax())
    r = tl.verify.robustness(model, x, 1e-3, label, timeout=60)
    assert r.verdict == "verified", r.reason
    r = tl.verify.robustness(model, x, 4.0, label, timeout=60)
    assert r.verdict == "falsified", r.reason
    tm = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    state = bridge.to_torch_state_dict(model)
    tm.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})
    with torch.no_grad():
        y = tm(torch.tensor(r.counterexample)).numpy().ravel()
    assert y.argmax() != label or y[label] == np.delete(y, label).max()


@table_only
def test_alpha_float_backsub_agrees_with_the_engine_at_default_slopes():
    from fractions import Fraction

    from torchlean.certificates import engine, lower
    from torchlean.certificates.fast_functions import FAST
    from torchlean.verify import alpha

    tl.manual_seed(6)
    model = nn.Sequential(nn.Linear(3, 6), nn.Sigmoid(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 2))
    x = np.array([[0.1, 0.2, 0.3]])
    bg = lower.lower(tl.trace(model, tl.tensor(x)).to_dict())
    lo = [Fraction(v) - Fraction(1, 4) for v in x.ravel()]
    hi = [Fraction(v) + Fraction(1, 4) for v in x.ravel()]
    st = engine.forward(bg, lo, hi, "crown")
    bs = alpha.Backsub.from_exact(bg, st, FAST)
    C = np.array([[1.0, -1.0], [-1.0, 2.0]])
    lam0, c0 = alpha.objective_rows(bg, C)
    ours = bs.bound(lam0, c0, bs.default_slopes(2))[0][0]
    rows = [[Fraction(int(v)) for v in r] for r in C]
    objs = engine.objective(bg, rows)
    ref = [float(engine.backsub(st, f)) for f in objs]
    assert np.allclose(ours, ref, rtol=1e-6, atol=1e-9)
    # and the optimised slopes give an engine bound no worse than CROWN's (rows kept when better)
    best = alpha.optimise(bs, lam0, c0, steps=10)
    for r in range(2):
        v = engines.exact_crown(bg, lo, hi, C=[rows[r]], slopes=alpha.slopes_for_row(best, r))[0][0]
        assert float(v) >= ref[r] - 1e-6


@table_only
def test_alpha_root_leaf_verifies_where_crown_alone_does_not():
    import copy
    from fractions import Fraction

    from torchlean.certificates import lower
    from torchlean.certificates.property import Atom, Region, Spec
    from torchlean.verify import api, table

    tl.manual_seed(1)
    model = nn.Sequential(nn.Linear(80, 32), nn.Tanh(), nn.Linear(32, 32), nn.Sigmoid(), nn.Linear(32, 4))
    x = np.random.default_rng(0).uniform(-1, 1, (1, 80))
    eps = 0.56
    crown = tl.verify.bounds(model, x, eps, method="crown").lower[0]
    alpha = tl.verify.bounds(model, x, eps, method="alpha-crown").lower[0]
    # the property "y_k <= b" with b between CROWN's and alpha-CROWN's lower bound of y_k: only the
    # optimised slopes refute it (how wide that gap is depends on the default slopes, so take the widest)
    k = int(np.argmax(alpha - crown))
    assert alpha[k] > crown[k]
    b = Fraction((crown[k] + alpha[k]) / 2)
    lo, hi = api.input_box(x, eps)
    a = [Fraction(0)] * 4
    a[k] = Fraction(1)
    spec = Spec(80, 4, (Region(lo, hi, ((Atom(tuple(a), b, False),),)),))
    t = table.target(api._graph(model, x))
    r = api.decide(t, spec, timeout=20, shape=x.shape)
    assert r.verdict == "verified" and r.stats.get("alpha"), (r.reason, r.stats)
    bg = lower.lower(tl.trace(model, tl.tensor(x)).to_dict())
    assert check_vnn(r.certificate, bg, r.spec).ok
    assert check_vnn(r.certificate, bg, r.spec, mode="exact").ok
    # without its slopes (the checker's defaults) the same claims do not hold: they were needed
    bare = copy.deepcopy(r.certificate)
    leaf = bare["regions"][0][0]
    for proof in leaf[1]:
        del proof[2:]
    assert not check_vnn(bare, bg, r.spec).ok
    # a wrong slope (zero everywhere) is refused too
    bad = copy.deepcopy(r.certificate)
    for proof in bad["regions"][0][0][1]:
        proof[2]["slopes"] = [[k, i, "0", "0"] for k, i, _, _ in proof[2]["slopes"]]
    assert not check_vnn(bad, bg, r.spec).ok


def test_the_example_script_runs(capsys):
    """examples/verify_api.py (named by the README and docs/verify-api.md) runs as written, on its
    model in eval mode (it once verified the training-mode BatchNorm graph: Trainer.eval had put
    the model back into training mode)."""
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "verify_api.py"
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "eps=0.001: verified" in out and "computed by: certificates." in out


class _Std(nn.Module):
    def forward(self, x):
        return tl.nn.functional.std(x, dim=1)


def test_fast_domain_refusal_retried_exactly_on_a_small_graph():
    """A box where the variance's real lower end is 0: the float64 engine's outward charge puts it
    at about -7e-301 under sqrt (a refusal), the exact engine bounds it; torch's std of sampled and
    corner points lies inside, and the result names the exact engine."""
    torch = pytest.importorskip("torch")
    x = np.full((1, 3), 0.1)
    b = tl.verify.bounds(_Std(), x, 0.1)
    assert "exact" in b.checked_by
    assert b.lower[0] <= 0.0
    rng = np.random.default_rng(1)
    pts = np.concatenate([x + rng.uniform(-0.1, 0.1, (500, 3)),
                          x + 0.1 * rng.choice([-1.0, 1.0], (64, 3))])
    ref = torch.std(torch.tensor(pts), dim=1).numpy()
    assert (ref >= b.lower[0]).all() and (ref <= b.upper[0]).all()
    assert ref.max() > 0.5 * b.upper[0]  # not vacuous: the corners reach 0.115 of 0.163


def test_fast_domain_refusal_on_a_large_graph_names_exact():
    from torchlean.certificates.enclosures import DomainError

    with pytest.raises(DomainError, match="exact=True"):
        tl.verify.bounds(_Std(), np.full((1, 200), 0.1), 0.1)
