"""Audit audit38: torchlean's claims on recurrent and sequence models (nn.RNN / nn.LSTM / nn.GRU,
time-step loops, batch_first, stacked layers, initial states, state carried across calls, dropout
between layers), each judged by an independent reference: an mpmath evaluation of torch's cell
equations written here (not torchlean's), torch's own float32/float64 runs and torch.autograd.

No hole was found (TRUST_BOUNDARIES.md, "Audit audit38"); these are the checks, kept as regressions:
- ``tl.verify.bounds`` (crown, alpha-crown, ibp) contain the exact value at corners and sampled
  points; with ``float32=True`` they contain torchlean's and torch's float32 runs, and at eps = 0
  the widening covers the float32 run's distance to the exact value;
- the zoo's ``float32_epsilon`` on the sequence ``Forecaster`` (LSTM, GRU) covers the float32
  run's exact error, and its ``@verified`` gradient proof is checked while the runtime's gradient
  equals torch.autograd's;
- a model whose hidden state is carried across calls (kept, detached or copied raw) is refused by
  ``bounds``, ``robustness`` and ``float32_epsilon``: its second call is another function;
- a recurrent layer left in training mode with dropout between layers is refused;
- ``robustness`` "verified" survives torch's PGD in the box, "falsified" is a point torch agrees on.
"""

from __future__ import annotations

import itertools
from fractions import Fraction as Q

import mpmath
import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.runtime.trace import TraceError
from torchlean.zoo.claims import float32_epsilon, gradient_proof
from torchlean.zoo.sequence import Forecaster

torch = pytest.importorskip("torch")
mpmath.mp.dps = 50

# -- an independent reference: torch's documented cell equations in mpmath --------------------------


def _sig(v):
    return 1 / (1 + mpmath.exp(-v))


def _affine(w: np.ndarray, b: np.ndarray | None, v: list) -> list:
    out = []
    for i in range(w.shape[0]):
        s = mpmath.mpf(0) if b is None else mpmath.mpf(float(b[i]))
        for j in range(w.shape[1]):
            s += mpmath.mpf(float(w[i, j])) * v[j]
        out.append(s)
    return out


def _mp_rnn(kind: str, sd: dict, x: np.ndarray, hidden: int, layers: int, batch_first: bool,
            nonlinearity: str = "tanh") -> list:
    """The last time step's top-layer hidden state of torch.nn.{kind} (batch of one), exactly."""
    seq = x[0] if batch_first else x[:, 0]
    ins = [[mpmath.mpf(float(v)) for v in row] for row in seq]
    for k in range(layers):
        w_ih, w_hh = sd[f"weight_ih_l{k}"], sd[f"weight_hh_l{k}"]
        b_ih, b_hh = sd.get(f"bias_ih_l{k}"), sd.get(f"bias_hh_l{k}")
        h = [mpmath.mpf(0)] * hidden
        c = [mpmath.mpf(0)] * hidden
        outs = []
        for xt in ins:
            gi, gh = _affine(w_ih, b_ih, xt), _affine(w_hh, b_hh, h)
            H = hidden
            if kind == "RNN":
                z = [a + b for a, b in zip(gi, gh)]
                h = [mpmath.tanh(v) if nonlinearity == "tanh" else max(v, 0) for v in z]
            elif kind == "LSTM":
                z = [a + b for a, b in zip(gi, gh)]
                i, f, g, o = (z[q * H:(q + 1) * H] for q in range(4))
                c = [_sig(f[j]) * c[j] + _sig(i[j]) * mpmath.tanh(g[j]) for j in range(H)]
                h = [_sig(o[j]) * mpmath.tanh(c[j]) for j in range(H)]
            else:  # GRU
                r = [_sig(gi[j] + gh[j]) for j in range(H)]
                zz = [_sig(gi[H + j] + gh[H + j]) for j in range(H)]
                n = [mpmath.tanh(gi[2 * H + j] + r[j] * gh[2 * H + j]) for j in range(H)]
                h = [(1 - zz[j]) * n[j] + zz[j] * h[j] for j in range(H)]
            outs.append(h)
        ins = outs
    return ins[-1]


def _mp_net(kind: str, sd: dict, x: np.ndarray, hidden: int, layers: int, batch_first: bool,
            **kw) -> np.ndarray:
    rnn = {k[4:]: np.asarray(v, dtype=np.float64) for k, v in sd.items() if k.startswith("rnn.")}
    h = _mp_rnn(kind, rnn, x, hidden, layers, batch_first, **kw)
    y = _affine(np.asarray(sd["head.weight"], np.float64), np.asarray(sd["head.bias"], np.float64), h)
    return np.array([float(v) for v in y])


class Net(nn.Module):
    """A recurrent layer and a Linear head on the last step's output."""

    def __init__(self, kind: str, hidden: int = 3, n_out: int = 2, **kw):
        super().__init__()
        self.rnn = getattr(nn, kind)(2, hidden, **kw)
        self.head = nn.Linear(hidden, n_out)
        self.bf = kw.get("batch_first", False)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1] if self.bf else out[-1])


class TNet(torch.nn.Module):
    def __init__(self, kind: str, hidden: int = 3, n_out: int = 2, **kw):
        super().__init__()
        self.rnn = getattr(torch.nn, kind)(2, hidden, **kw)
        self.head = torch.nn.Linear(hidden, n_out)
        self.bf = kw.get("batch_first", False)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1] if self.bf else out[-1])


def _pair(kind: str, kw: dict, seed: int, scale: float = 1.0, n_out: int = 2):
    """A float32 torchlean model, torch's copy (same bits) and one input of its shape."""
    tl.manual_seed(seed)
    net = Net(kind, n_out=n_out, **kw)
    rng = np.random.default_rng(seed)
    for p in net.parameters():
        p.data[...] = (rng.normal(size=p.shape) * scale).astype(np.float32)
    net.eval()
    tn = TNet(kind, n_out=n_out, **kw).eval()
    tn.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in net.state_dict().items()})
    shape = (1, 3, 2) if kw.get("batch_first") else (3, 1, 2)
    return net, tn, rng.normal(size=shape).astype(np.float32), rng


def _exact(kind: str, kw: dict, net, x) -> np.ndarray:
    layers = kw.get("num_layers", 1)
    extra = {"nonlinearity": kw["nonlinearity"]} if "nonlinearity" in kw else {}
    return _mp_net(kind, net.state_dict(), np.asarray(x, np.float64), 3, layers,
                   kw.get("batch_first", False), **extra)


def _box_points(x: np.ndarray, eps: float, rng, n: int = 12) -> list[np.ndarray]:
    """float32 points of the box |x' - x| <= eps: x, some corners, uniform draws."""
    lo, hi = x.astype(np.float64) - eps, x.astype(np.float64) + eps
    pts = [x]
    for _ in range(n // 2):
        pts.append(np.where(rng.random(x.shape) < 0.5, lo, hi))
    for _ in range(n - n // 2):
        pts.append(rng.uniform(lo, hi))
    out = []
    for p in pts:  # the binary32 values inside the box
        p32 = p.astype(np.float32)
        p32 = np.where(p32.astype(np.float64) > hi, np.nextafter(p32, np.float32(-np.inf)), p32)
        p32 = np.where(p32.astype(np.float64) < lo, np.nextafter(p32, np.float32(np.inf)), p32)
        out.append(p32)
    return out


CASES = [("LSTM", {}), ("GRU", {}), ("RNN", {}), ("RNN", {"nonlinearity": "relu"}),
         ("LSTM", {"batch_first": True, "num_layers": 2}), ("GRU", {"num_layers": 2, "bias": False})]


@pytest.mark.parametrize("kind, kw", CASES)
def test_bounds_contain_the_exact_value(kind, kw):
    net, _, x, rng = _pair(kind, kw, 1)
    eps = 0.05
    pts = _box_points(x, eps, rng, 6)
    exact = [_exact(kind, kw, net, p) for p in pts]
    # (alpha-crown's slope optimisation on the stacked layers is the slow part: one layer suffices)
    for method in ("crown", "ibp") if kw.get("num_layers", 1) > 1 else ("crown", "alpha-crown", "ibp"):
        b = tl.verify.bounds(net, x, eps, method=method)
        for y in exact:
            assert np.all(b.lower.ravel() <= y) and np.all(y <= b.upper.ravel()), (method, y, b.lower)
    point = tl.verify.bounds(net, x, 0.0)  # eps 0: bounds a rounding's width around the exact value
    assert np.all(point.lower.ravel() <= exact[0]) and np.all(exact[0] <= point.upper.ravel())
    assert np.all(point.upper - point.lower <= 1e-9)


@pytest.mark.parametrize("kind, kw", CASES)
@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_float32_bounds_contain_the_float32_runs(kind, kw, eps):
    net, tn, x, rng = _pair(kind, kw, 2, scale=2.0)
    b32 = tl.verify.bounds(net, x, eps, float32=True)
    real = tl.verify.bounds(net, x, eps)
    lo, hi = b32.lower.ravel(), b32.upper.ravel()
    assert np.all(lo <= real.lower.ravel()) and np.all(real.upper.ravel() <= hi)
    for p in _box_points(x, eps, rng, 8):
        ours = net(tl.tensor(p)).numpy().astype(np.float64).ravel()
        with torch.no_grad():
            theirs = tn(torch.tensor(p)).numpy().astype(np.float64).ravel()
        for y in (ours, theirs):
            assert np.all(lo <= y) and np.all(y <= hi), (y, lo, hi)
    if eps == 0.0:  # the widening covers the float32 run's distance to the exact value
        y32 = net(tl.tensor(x)).numpy().astype(np.float64).ravel()
        err = np.abs(y32 - _exact(kind, kw, net, x))
        assert np.all(err <= np.minimum(hi - real.upper.ravel(), real.lower.ravel() - lo)), err


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_zoo_forecaster_epsilon_and_gradient_claims(kind, tmp_path, monkeypatch):
    """The zoo's two claims on its sequence model, at a short window: the certified float32 ε
    covers the float32 run's exact error on the box, and the checked gradient claim goes with a
    runtime gradient equal to torch.autograd's."""
    monkeypatch.setenv("TORCHLEAN_PROOF_CACHE", str(tmp_path))
    tl.manual_seed(3)
    net = Forecaster(kind, hidden=3).eval()
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(1, 3, 2)).astype(np.float32)
    box = [(float(v) - 0.01, float(v) + 0.01) for v in x.ravel()]
    eps, observed = float32_epsilon(net, x, box, samples=100)
    sd = net.state_dict()  # (torch's names: rnn.weight_ih_l0, ..., head.weight)
    for p in _box_points(x, 0.01, rng, 10):
        y32 = net(tl.tensor(p)).numpy().astype(np.float64).ravel()
        exact = _mp_net(kind.upper(), sd, p.astype(np.float64), 3, 1, True)
        assert np.max(np.abs(y32 - exact)) <= eps
    assert 0 <= observed <= eps

    status = gradient_proof(kind, lambda: Forecaster(kind, hidden=3), (1, 3, 2), tmp_path, budget=600)
    assert status.ok, status.summary()
    tl.manual_seed(4)
    ours = Forecaster(kind, hidden=3).to(dtype="float64")
    theirs = TNet(kind.upper(), batch_first=True).double()
    theirs.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in ours.state_dict().items()})
    xv = rng.normal(size=(1, 3, 2))
    xt, xo = torch.tensor(xv, requires_grad=True), tl.tensor(xv, dtype="float64", requires_grad=True)
    (ours(xo) * tl.tensor([[1.0, -2.0]], dtype="float64")).sum().backward()
    (theirs(xt) * torch.tensor([[1.0, -2.0]], dtype=torch.float64)).sum().backward()
    assert np.allclose(xo.grad.numpy(), xt.grad.numpy(), atol=1e-12)
    got = dict(ours.named_parameters())
    for k, p in theirs.named_parameters():
        assert np.allclose(got[k].grad.numpy(), p.grad.numpy(), atol=1e-12), k


class Stateful(nn.Module):
    """An LSTM whose state is carried from one call to the next (as a streaming model does)."""

    def __init__(self, how: str):
        super().__init__()
        self.rnn, self.head = nn.LSTM(2, 3, batch_first=True), nn.Linear(3, 2)
        self.how, self.state = how, None

    def forward(self, x):
        out, st = self.rnn(x, self.state)
        if self.how == "kept":
            self.state = st
        elif self.how == "detached":
            self.state = tuple(s.detach() for s in st)
        else:  # "raw": copied through numpy, outside torchlean's primitives
            self.state = tuple(tl.tensor(np.array(s.data)) for s in st)
        return self.head(out[:, -1])


@pytest.mark.parametrize("how", ["kept", "detached", "raw"])
def test_state_carried_across_calls_is_refused(how):
    x = np.random.default_rng(5).normal(size=(1, 4, 2)).astype(np.float32)
    tl.manual_seed(5)
    m = Stateful(how).eval()
    first, second = (m(tl.tensor(x)).numpy() for _ in range(2))
    assert np.max(np.abs(first - second)) > 1e-3  # the reference fact: a second call is another function
    box = [(float(v) - 0.01, float(v) + 0.01) for v in x.ravel()]
    attempts = [lambda m: tl.verify.bounds(m, x, 0.01), lambda m: tl.verify.bounds(m, x, 0.01, float32=True),
                lambda m: tl.verify.robustness(m, x, 0.01, label=0, timeout=5),
                lambda m: float32_epsilon(m, x, box, samples=20)]
    for attempt in attempts:
        tl.manual_seed(5)
        with pytest.raises(TraceError, match="another point"):
            attempt(Stateful(how).eval())


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_dropout_between_layers_in_training_mode_is_refused(kind):
    tl.manual_seed(6)
    net = Net(kind, num_layers=2, dropout=0.5, batch_first=True)
    x = np.zeros((1, 3, 2), np.float32)
    net.train()
    with pytest.raises(ValueError, match="training mode"):
        tl.verify.bounds(net, x, 0.1)
    net.eval()
    net.rnn.train()  # the layer's own flag counts, not only the model's
    with pytest.raises(ValueError, match="training mode"):
        tl.verify.bounds(net, x, 0.1)
    # the faithful tracer's own guard, behind require_eval: a mask drawn while tracing is refused
    with pytest.raises(TraceError, match="random"):
        tl.trace(net, tl.tensor(x), faithful=True)
    net.eval()
    tn = TNet(kind, num_layers=2, dropout=0.5, batch_first=True).eval()
    tn.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in net.state_dict().items()})
    b = tl.verify.bounds(net, x, 0.1)
    pts = np.random.default_rng(6).uniform(-0.1, 0.1, size=(50, 1, 3, 2)).astype(np.float32)
    with torch.no_grad():
        ys = np.stack([tn(torch.tensor(p)).numpy() for p in pts]).astype(np.float64)
    assert np.all(ys >= b.lower - 1e-6) and np.all(ys <= b.upper + 1e-6)


def _pgd_keeps_label(tn, x: np.ndarray, eps: float, label: int, steps: int = 40) -> bool:
    """Whether torch's PGD (float64, a few restarts) fails to change the argmax in the box."""
    gen = torch.Generator().manual_seed(0)
    xt = torch.tensor(x, dtype=torch.float64)
    for _ in range(4):
        d = ((torch.rand(xt.shape, generator=gen, dtype=torch.float64) * 2 - 1) * eps).requires_grad_(True)
        for s in range(steps):
            y = tn(xt + d).ravel()
            margin = y[label] - torch.max(torch.cat([y[:label], y[label + 1:]]))
            if margin.item() <= 0:
                return False
            g, = torch.autograd.grad(margin, d)
            with torch.no_grad():
                d -= eps * 0.2 * (1 - s / steps) * g.sign()
                d.clamp_(-eps, eps)
    return True


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_robustness_verdicts_against_torch(kind):
    net, tn, x, _ = _pair(kind, {"batch_first": True}, 7, scale=1.5, n_out=3)
    tn = tn.double()
    label = int(np.argmax(net(tl.tensor(x)).numpy()))
    small = tl.verify.robustness(net, x, 1e-3, label=label, timeout=20)
    assert small.verdict == "verified", small.reason
    assert _pgd_keeps_label(tn, x, 1e-3, label)
    big = tl.verify.robustness(net, x, 3.0, label=label, timeout=20)
    assert big.verdict == "falsified", big.reason
    cx = big.counterexample
    assert np.all(np.abs(cx - x.astype(np.float64)) <= 3.0)
    with torch.no_grad():
        y = tn(torch.tensor(cx, dtype=torch.float64)).numpy().ravel()
    assert any(y[j] >= y[label] for j in range(3) if j != label)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_float32_robustness_verdicts_against_the_float32_runs(kind):
    """``robustness(float32=True)``: "verified" (a replayed vnn-unsat-float certificate) while
    torchlean's and torch's float32 runs keep the label on points of the box; "falsified" at a
    binary32 point where both float32 runs lose it too."""
    net, tn, x, rng = _pair(kind, {"batch_first": True}, 7, scale=1.5, n_out=3)
    label = int(np.argmax(net(tl.tensor(x)).numpy()))
    small = tl.verify.robustness(net, x, 1e-3, label=label, timeout=30, float32=True)
    assert small.verdict == "verified", small.reason
    for p in _box_points(x, 1e-3, rng, 20):
        with torch.no_grad():
            runs = (net(tl.tensor(p)).numpy().ravel(), tn(torch.tensor(p)).numpy().ravel())
        for y in runs:
            assert all(y[label] > y[j] for j in range(3) if j != label), y
    big = tl.verify.robustness(net, x, 3.0, label=label, timeout=30, float32=True)
    assert big.verdict == "falsified", big.reason
    cx = big.counterexample
    assert cx.dtype == np.float32 and np.all(np.abs(cx.astype(np.float64) - x) <= 3.0)
    with torch.no_grad():
        runs = (net(tl.tensor(cx)).numpy().ravel(), tn(torch.tensor(cx)).numpy().ravel())
    for y in runs:
        assert any(y[j] >= y[label] for j in range(3) if j != label), y


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_gradients_with_initial_states_and_carried_state_match_torch(kind):
    """The runtime's backward (what a gradient claim is about) against torch.autograd with states
    passed by the user, stacked layers, batch_first, and a state carried (detached) into a second
    call: gradients with respect to the input, the weights and the initial states."""
    tl.manual_seed(8)
    ours = getattr(nn, kind)(2, 3, num_layers=2, batch_first=True, dtype="float64")
    theirs = getattr(torch.nn, kind)(2, 3, num_layers=2, batch_first=True).double()
    theirs.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(8)
    x1, x2 = rng.normal(size=(2, 4, 2)), rng.normal(size=(2, 4, 2))
    h0 = [rng.normal(size=(2, 2, 3)) for _ in range(2 if kind == "LSTM" else 1)]
    hs_o = [tl.tensor(h, dtype="float64", requires_grad=True) for h in h0]
    hs_t = [torch.tensor(h, requires_grad=True) for h in h0]
    st_o = tuple(hs_o) if kind == "LSTM" else hs_o[0]
    st_t = tuple(hs_t) if kind == "LSTM" else hs_t[0]
    _, carried_o = ours(tl.tensor(x1, dtype="float64"), st_o)
    _, carried_t = theirs(torch.tensor(x1), st_t)
    xo = tl.tensor(x2, dtype="float64", requires_grad=True)
    xt = torch.tensor(x2, requires_grad=True)
    detach_o = tuple(s.detach() for s in carried_o) if kind == "LSTM" else carried_o.detach()
    detach_t = tuple(s.detach() for s in carried_t) if kind == "LSTM" else carried_t.detach()
    out_o, _ = ours(xo, detach_o)
    out_t, _ = theirs(xt, detach_t)
    w = rng.normal(size=out_t.shape)
    (out_o * tl.tensor(w, dtype="float64")).sum().backward()
    (out_t * torch.tensor(w)).sum().backward()
    assert np.allclose(out_o.numpy(), out_t.detach().numpy(), atol=1e-12)
    assert np.allclose(xo.grad.numpy(), xt.grad.numpy(), atol=1e-12)
    got = dict(ours.named_parameters())
    for k, p in theirs.named_parameters():
        assert np.allclose(got[k].grad.numpy(), p.grad.numpy(), atol=1e-12), k
    for a, b in zip(hs_o, hs_t):  # the detach stops the gradient at the carried state
        assert b.grad is None and (a.grad is None or not np.any(a.grad.numpy()))


def test_fast_and_exact_error_columns_cover_a_searched_error():
    """The two rounding-error columns (the fast one keeps every form term, so it can be the
    tighter) both bound the largest float32 error an ulp-walking search finds on an LSTM."""
    from torchlean.certificates import check
    from torchlean.floats import bound_certificate, epsilons
    from torchlean.floats.errorbound import searched_error

    net, _, x, _ = _pair("LSTM", {}, 9, scale=4.0)
    g = tl.trace(net, tl.tensor(x))
    box = [(Q(float(v)), Q(float(v))) for v in x.ravel()]
    found = searched_error(g, [(Q(float(v)) - Q(1, 10**4), Q(float(v)) + Q(1, 10**4)) for v in x.ravel()],
                           n=200, ulp_rounds=3, ulp_starts=2, ulp_per_round=16)
    for ranges, column in itertools.product(("crown", "fast"), ("exact", "fast")):
        if column == "fast" and ranges != "fast":
            continue
        wide = [(a - Q(1, 10**4), b + Q(1, 10**4)) for a, b in box]
        cert = bound_certificate(g, wide, "binary32", ranges=ranges, column=column)
        assert check(cert).ok
        e = np.array([float(v) for v in epsilons(cert)])
        assert np.all(found <= e), (ranges, column, found, e)
        y32 = net(tl.tensor(x)).numpy().astype(np.float64).ravel()
        assert np.all(np.abs(y32 - _exact("LSTM", {}, net, x)) <= e)
