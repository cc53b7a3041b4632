"""Audit audit49: the zoo's claim lines other than the float32 ε (TRUST_BOUNDARIES "Audit audit49").

Each printed claim is compared with an independent reference:
- ``cnn --certify EPS``: the images counted are the test split's first N, the box is the pixel-scale
  L-inf ball clipped to [0, 1] (the digits are not normalised), an image misclassified at its centre
  (by torch) is never counted, and PGD in torch (float64) breaks no image counted verified;
- ``pinn --certify``: the residual graph (autograd's u'' traced) encloses the true u'' - f computed
  by forward-mode differentiation in mpmath, the proved bound covers the true residual at 1,001 points
  and at every piece's ends, and a bound below the true maximum is never proved;
- ``ppo --certify``: a verified safety box has no violating state among 100,000 samples and its 16
  corners (numpy float64 and the float32 policy), and a policy pushing the wrong way is never verified.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import torchlean as tl
from torchlean.zoo import cnn, digits, pinn, ppo

# --------------------------------------------------------------------------------------------- cnn


@pytest.fixture(scope="module")
def cnn_trained():
    data = digits.load()
    tl.manual_seed(0)
    net = cnn.model()
    tl.Trainer(net, task="classification", lr=0.01, seed=0).train(data.train(), steps=60, batch_size=64,
                                                                     progress=False)
    net.eval()
    return data, net


def _torch_cnn(torch, net):
    tm = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                             torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                             torch.nn.Flatten(), torch.nn.Linear(64, 10)).double()
    tm.load_state_dict({k: torch.tensor(np.asarray(v, dtype=np.float64))
                        for k, v in net.state_dict().items()})
    return tm


def _pgd_margin(torch, tm, x, y, eps, steps=40, restarts=2):
    """The smallest margin (label score - best other) PGD finds in the clipped ball (<= 0: broken)."""
    x0 = torch.tensor(x, dtype=torch.float64)
    lo, hi = torch.clamp(x0 - eps, 0, 1), torch.clamp(x0 + eps, 0, 1)
    g = torch.Generator().manual_seed(0)
    best = np.inf
    for r in range(restarts):
        xa = lo + (hi - lo) * torch.rand(x0.shape, generator=g, dtype=torch.float64) if r else x0.clone()
        for _ in range(steps):
            xa.requires_grad_(True)
            out = tm(xa)[0]
            other = out.clone()
            other[y] = -np.inf
            margin = out[y] - other.max()
            best = min(best, float(margin.detach()))
            if best <= 0:
                return best
            (grad,) = torch.autograd.grad(margin, xa)
            xa = torch.max(torch.min(xa.detach() - eps / 8 * grad.sign(), hi), lo)
    return best


def test_cnn_verified_images_survive_pgd_and_centres_are_right(cnn_trained) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)  # (a shared machine: torch's thread pool fighting the others is 100x slower)
    data, net = cnn_trained
    tm = _torch_cnn(torch, net)
    eps = 0.02
    x, y = data.x_test[:4], data.y_test[:4]
    rep = cnn.certify(net, x, y, eps, timeout=10, progress=False)
    assert rep.verdicts.count("verified") >= 2, rep.summary()
    searched = iter(rep.results)
    for xi, yi, v in zip(x, y, rep.verdicts):
        pred = int(tm(torch.tensor(xi[None], dtype=torch.float64)).argmax())
        assert (v == "misclassified") == (pred != int(yi)), (v, pred, int(yi))
        if v == "misclassified":
            continue
        r = next(searched)
        # the box checked is the pixel-scale ball clipped to [0, 1], exactly
        region = r.spec.regions[0]
        flat = xi.ravel().astype(np.float64)
        assert region.lo == tuple(max(Fraction(float(p)) - Fraction(eps), Fraction(0)) for p in flat)
        assert region.hi == tuple(min(Fraction(float(p)) + Fraction(eps), Fraction(1)) for p in flat)
        if v == "verified":
            assert _pgd_margin(torch, tm, xi[None], int(yi), eps) > 0
    assert f"{rep.verdicts.count('verified')}/4" in rep.summary()


def test_cnn_wrong_labels_are_never_counted(cnn_trained) -> None:
    data, net = cnn_trained
    x = data.x_test[:3]
    pred = net(tl.tensor(x)).numpy().argmax(1)
    wrong = (pred + 1) % 10  # every centre misclassified against these labels
    rep = cnn.certify(net, x, wrong, 0.001, timeout=5, progress=False)
    assert rep.verdicts == ["misclassified"] * 3 and rep.certified == 0 and rep.not_falsified == 0
    assert rep.summary().startswith("certified accuracy at eps 0.001: 0/3 (0.0%)")


def test_cnn_command_certifies_the_test_split_at_the_given_radius(monkeypatch, capsys) -> None:
    from torchlean.zoo import claims

    seen = []

    def spy(net, x, y, eps, timeout=10.0, progress=None):
        seen.append((np.array(x), np.array(y), eps))
        return cnn.CertifyReport(float(eps), ["unknown"] * len(y))

    monkeypatch.setattr(cnn, "certify", spy)
    monkeypatch.setattr(claims, "epsilon_line", lambda *a, **k: "eps line")
    monkeypatch.setattr(claims, "gradient_proof", lambda *a, **k: type("S", (), {"summary": lambda s: "p"})())
    from torchlean.__main__ import build_parser

    args = build_parser().parse_args(["cnn", "--steps", "2", "--certify", "0.03", "--certify-n", "5",
                                      "--no-progress"])
    assert cnn.run(args) == 0
    data = digits.load()
    assert len(seen) == 1
    xs, ys, eps = seen[0]
    assert np.array_equal(xs, data.x_test[:5]) and np.array_equal(ys, data.y_test[:5]) and eps == 0.03
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("certified accuracy"))
    printed = Fraction(line.split("eps ")[1].split(":")[0])
    # the radius printed is never above the one checked (float 0.03 is just below 0.03: 0.0299999)
    assert printed <= Fraction(0.03) and float(printed) == pytest.approx(0.03, rel=1e-5)
    assert ": 0/5 (0.0%)" in line


# -------------------------------------------------------------------------------------------- pinn


def _weights(net):
    """(weight, bias) of each Linear of a Sequential, as float64 arrays (the float32 values exactly)."""
    return [(np.asarray(m.weight.numpy(), np.float64), np.asarray(m.bias.numpy(), np.float64))
            for m in net if type(m).__name__ == "Linear"]


@pytest.fixture(scope="module")
def pinn_trained():
    net, _, _ = pinn.train(60, seed=0, progress=False)
    return net


def _true_residual(net, xs, dps=30):
    """u''(x) - f(x) of ``net``'s real function (its float32 weights exactly), forward-mode in mpmath."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = dps
    (w1, b1), (w2, b2), (w3, _) = _weights(net)
    W1 = [mp.mpf(float(v)) for v in w1[:, 0]]
    B1 = [mp.mpf(float(v)) for v in b1]
    W2 = [[mp.mpf(float(v)) for v in row] for row in w2]
    B2 = [mp.mpf(float(v)) for v in b2]
    W3 = [mp.mpf(float(v)) for v in w3[0]]
    out = []
    for x in xs:
        x = mp.mpf(x)
        h = [mp.tanh(w * x + b) for w, b in zip(W1, B1)]
        dh = [(1 - t * t) * w for t, w in zip(h, W1)]
        d2h = [-2 * t * (1 - t * t) * w * w for t, w in zip(h, W1)]
        z = [mp.fsum(a * t for a, t in zip(row, h)) + b for row, b in zip(W2, B2)]
        dz = [mp.fsum(a * t for a, t in zip(row, dh)) for row in W2]
        d2z = [mp.fsum(a * t for a, t in zip(row, d2h)) for row in W2]
        g = [mp.tanh(v) for v in z]
        d2g = [(1 - t * t) * dd - 2 * t * (1 - t * t) * d * d for t, d, dd in zip(g, dz, d2z)]
        out.append(mp.fsum(w * v for w, v in zip(W3, d2g)) + x * (x + 3) * mp.exp(x))
    return out


def test_pinn_residual_graph_is_the_true_second_derivative(pinn_trained) -> None:
    mp = pytest.importorskip("mpmath")
    net = pinn_trained
    g = pinn.residual_graph(net)
    points = [Fraction(k, 16) for k in range(17)] + [Fraction(float(v)) for v in
                                                     np.random.default_rng(3).random(8)]
    true = _true_residual(net, [mp.mpf(p.numerator) / p.denominator for p in points])
    for p, (lo, hi), t in zip(points, pinn.exact_residuals(g, points), true):
        low, up = mp.mpf(lo.numerator) / lo.denominator, mp.mpf(hi.numerator) / hi.denominator
        assert low <= t <= up, (p, lo, hi, t)
        assert hi - lo < Fraction(1, 10**9)  # an enclosure, not a loose interval


def test_pinn_proved_bound_covers_the_true_residual(pinn_trained) -> None:
    net = pinn_trained
    rb = pinn.certify_residual(net, pieces=16, timeout=60)
    assert rb.verdict == "verified", rb.reason
    region = rb.spec.regions[0]
    assert region.lo == (Fraction(0),) and region.hi == (Fraction(1),)  # the bound's domain is [0, 1]
    xs = np.linspace(0, 1, 1001).tolist() + [lo for lo, _, _, _ in rb.pieces] + [1.0]
    signed = [float(v) for v in _true_residual(net, xs, dps=20)]
    true = [abs(v) for v in signed]
    assert max(true) <= rb.bound
    line = pinn.residual_line(rb)
    assert line.startswith("certified: |u''(x) - f(x)| <= ") and "for every x in [0, 1]" in line
    printed = float(line.split("<= ")[1].split(" ")[0])
    assert printed >= rb.bound >= max(true)
    # each piece's CROWN bound (what the plot draws) encloses the true residual on its piece
    for (lo, hi, low, up) in rb.pieces:
        inside = [t for x, t in zip(xs, signed) if lo <= x <= hi]
        assert inside and all(low - 1e-12 <= t <= up + 1e-12 for t in inside), (lo, hi, low, up)


def _negative_side_net(net):
    """A copy of ``net`` (its output layer scaled) whose residual's largest |r| is on the negative
    side: a bound it breaks only through "r <= -B"."""
    import copy

    xs = np.linspace(0, 1, 101).tolist()
    for k in (4.0, -4.0, 16.0, -16.0, 64.0, -64.0):
        other = copy.deepcopy(net)
        head = [m for m in other if type(m).__name__ == "Linear"][-1]
        head.weight.data = (head.weight.data * np.float32(k)).astype(np.float32)
        r = [float(v) for v in _true_residual(other, xs, dps=20)]
        if -min(r) > 1.5 * max(max(r), 0.0):
            return other
    raise AssertionError("no negative-side variant")


@pytest.mark.parametrize("side", ["as trained", "negative side"])
def test_pinn_bound_below_the_true_maximum_is_not_proved(pinn_trained, side) -> None:
    net = pinn_trained if side == "as trained" else _negative_side_net(pinn_trained)
    xs = np.linspace(0, 1, 401).tolist()
    true_max = max(abs(float(v)) for v in _true_residual(net, xs, dps=20))
    # certify_residual chooses B = worst CROWN bound * slack: a slack that puts B under the true max
    probe = pinn.certify_residual(net, pieces=8, timeout=1e-3)
    worst = max(max(abs(lw), abs(up)) for _, _, lw, up in probe.pieces)
    rb = pinn.certify_residual(net, pieces=8, timeout=30, slack=0.9 * true_max / worst)
    assert rb.bound < true_max
    assert rb.verdict != "verified", rb.reason
    assert pinn.residual_line(rb).startswith("not certified")


# --------------------------------------------------------------------------------------------- ppo


@pytest.fixture(scope="module")
def ppo_policy():
    return ppo.train(updates=3, seed=0, progress=False).policy


def _logits64(policy, s):
    (w1, b1), (w2, b2), (w3, b3) = _weights(policy)
    h = np.tanh(s @ w1.T + b1)
    h = np.tanh(h @ w2.T + b2)
    return h @ w3.T + b3


def _box_states(lo, hi, n=100_000, seed=0):
    import itertools

    lo, hi = np.array(lo), np.array(hi)
    corners = np.array([[(lo[i], hi[i])[b[i]] for i in range(4)]
                        for b in itertools.product((0, 1), repeat=4)])
    return np.concatenate([lo + (hi - lo) * np.random.default_rng(seed).random((n, 4)), corners])


def _covers(region, lo, hi) -> bool:
    """Whether the region checked contains the box [lo, hi], its floats and their decimal texts."""
    return all(region.lo[i] <= min(Fraction(lo[i]), Fraction(repr(lo[i])))
               and region.hi[i] >= max(Fraction(hi[i]), Fraction(repr(hi[i]))) for i in range(4))


def test_ppo_checked_box_contains_the_stated_box() -> None:
    # the old centre/radius in float64 checked theta in [0.05 + 1 ulp, 0.15] for the box [0.05, 0.15]
    # (and [-0.15, -0.05 - 1 ulp] for its mirror): a face the line "verified on its whole box" claims
    tl.manual_seed(0)
    results = ppo.certify(ppo.policy_net().eval(), timeout=5)
    assert len(results) == len(ppo.SAFETY_BOXES)
    for name, r in results:
        lo, hi, _ = ppo.SAFETY_BOXES[name]
        assert _covers(r.spec.regions[0], lo, hi), (name, r.spec.regions[0].lo, r.spec.regions[0].hi)
        # and only just: no wider than the box plus a few ulps
        assert all(Fraction(hi[i]) - Fraction(lo[i]) + Fraction(1, 10**15) >=
                   r.spec.regions[0].hi[i] - r.spec.regions[0].lo[i] for i in range(4))


def _check_ppo_verdicts(policy, results) -> list[str]:
    verdicts = []
    for name, r in results:
        lo, hi, a = ppo.SAFETY_BOXES[name]
        box = r.spec.regions[0]
        assert _covers(box, lo, hi), (name, box.lo, box.hi)
        s = _box_states(lo, hi)
        z = _logits64(policy, s)
        z32 = policy(tl.tensor(s.astype(np.float32))).numpy()
        if r.verdict == "verified":
            assert (z[:, a] > z[:, 1 - a]).all() and (z32[:, a] > z32[:, 1 - a]).all(), name
        elif r.verdict == "falsified":
            c = np.asarray(r.counterexample, np.float64).reshape(1, 4)
            assert ((c >= np.array(lo) - 1e-12) & (c <= np.array(hi) + 1e-12)).all()
            zc = _logits64(policy, c)[0]
            assert zc[a] <= zc[1 - a] + 1e-9, (name, zc)
        verdicts.append(r.verdict)
    return verdicts


def test_ppo_verified_safety_holds_on_sampled_states(ppo_policy) -> None:
    verdicts = _check_ppo_verdicts(ppo_policy, ppo.certify(ppo_policy, timeout=30))
    assert "verified" in verdicts, verdicts


def test_ppo_policy_pushing_the_wrong_way_is_not_verified(ppo_policy) -> None:
    import copy

    bad = copy.deepcopy(ppo_policy)
    head = [m for m in bad if type(m).__name__ == "Linear"][-1]
    head.weight.data = head.weight.data[::-1].copy()  # the two actions' logits swapped
    head.bias.data = head.bias.data[::-1].copy()
    verdicts = _check_ppo_verdicts(bad, ppo.certify(bad, timeout=30))
    assert "verified" not in verdicts and "falsified" in verdicts, verdicts


def test_pinn_plot_says_certified_only_when_the_checker_accepted(monkeypatch, tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from torchlean import plot
    from torchlean.__main__ import build_parser
    from torchlean.verify import api
    from torchlean.zoo import claims

    shown = []
    real_save = plot._save

    def keep(plt_, fig, out, **kw):
        shown.extend(t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts())
        return real_save(plt_, fig, out, **kw)

    monkeypatch.setattr(plot, "_save", keep)
    monkeypatch.setattr(claims, "epsilon_line", lambda *a, **k: "eps line")
    monkeypatch.setattr(claims, "gradient_proof", lambda *a, **k: type("S", (), {"summary": lambda s: "p"})())
    # the search gives up (as a short --certify-timeout does): no certificate, nothing certified
    monkeypatch.setattr(api, "decide", lambda t, spec, timeout, *a, **k: api.RobustnessResult(
        "unknown", f"no verdict within {timeout} s", spec=spec))
    args = build_parser().parse_args(["pinn", "--steps", "3", "--certify", "--pieces", "4", "--plot",
                                      str(tmp_path / "r.png"), "--no-progress"])
    assert pinn.run(args) == 1
    out = capsys.readouterr().out
    assert "not certified: |residual| <= " in out and "\ncertified:" not in out
    assert shown and not any(t.startswith("certified") for t in shown), shown
    assert any(t.startswith("NOT certified") for t in shown), shown
