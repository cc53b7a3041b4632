"""Audit audit46: what ``tl.verify.robustness`` / ``tl.verify.bounds`` arguments mean against what is
checked (label, eps, batch, clip, ties, output shapes, the returned counterexample).

Two holes (found and fixed in ``verify/api.py``, untrusted):

- "falsified" returned a counterexample that is not one. When a box is narrower than float32's
  spacing the search's point can be an exact box end that is no float64 number (x - eps for float64
  x and eps); the checker accepted that exact point, but ``RobustnessResult.counterexample`` was it
  rounded to nearest float64: outside the box the user gave, and on the crafted model below
  strictly correctly classified (exact rationals and torch float64 both give y0 - y1 = 2^-53 > 0).
  Now the counterexample is the checked point: float64 when it is one, else a float64 point of the
  box next to it that the checker also accepted, else the exact point (an object array of
  Fractions).
- a batch of n inputs of a one-score model, output (n, 1), passed the "one vector of scores" test
  (one axis longer than 1), so ``robustness(model, x_batch, eps, label=1)`` answered "verified"
  about "input 1 scores above input 0", not about robustness; the docs promised a batch is refused.

References, independent of the checker: exact Fraction evaluation of the hand-set weights, torch
(float64 and float32) runs, numpy's binary32 rounding.
"""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.verify.api import input_box

torch = pytest.importorskip("torch")

# A box narrower than float32's spacing whose lower corner (lo1, lo2) is no float64 point, with
# lo1 + lo2 = 3 exactly, and both ends rounding *down* to nearest (so the old float64 rounding of the
# corner, (A, B), left the box and has A + B = 3 - 2^-53).
A = 0.75 - 2**-30 + 3 * 2**-53
B = 2.25 + 2**-30 - 2**-51
X = np.array([[A + 2**-53, B + 2**-51]])
EPS = np.array([[3 * 2**-55, 13 * 2**-55]])


def _set(lin: nn.Linear, w: list[list[float]], b: list[float]) -> None:
    lin.weight.data[...] = np.array(w, np.float32)
    lin.bias.data[...] = np.array(b, np.float32)


def _abs_model() -> nn.Module:
    """y0 = |(x1 - 0.75) + (x2 - 2.25)|, y1 = 0: label 0 holds strictly except where x1 + x2 = 3,
    which in the box is only its exact lower corner (a tie, so not robust)."""
    m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)).eval()
    _set(m[0], [[1, 0], [0, 1]], [-0.75, -2.25])
    _set(m[1], [[1, 1], [-1, -1]], [0, 0])
    _set(m[3], [[1, 1], [0, 0]], [0, 0])
    return m


def _torch64(m: nn.Module, x: np.ndarray) -> np.ndarray:
    """The torchlean model's weights in a torch float64 model, run at x (an independent run)."""
    layers = []
    for layer in m:
        if isinstance(layer, nn.Linear):
            t = torch.nn.Linear(layer.weight.data.shape[1], layer.weight.data.shape[0]).double()
            with torch.no_grad():
                t.weight[:] = torch.tensor(np.asarray(layer.weight.data, np.float64))
                t.bias[:] = torch.tensor(np.asarray(layer.bias.data, np.float64))
            layers.append(t)
        else:
            layers.append(torch.nn.ReLU())
    with torch.no_grad():
        return torch.nn.Sequential(*layers)(torch.tensor(np.asarray(x, np.float64))).numpy()


def test_box_construction_is_what_the_audit_claims() -> None:
    lo, hi = input_box(X, EPS)
    assert lo[0] + lo[1] == 3
    assert F(float(lo[0])) < lo[0] and F(float(lo[1])) < lo[1]  # both round down, out of the box
    assert (float(lo[0]), float(lo[1])) == (A, B)
    assert all(np.float32(v) != v for v in X.ravel())  # no float32 in the box: the fallback path
    # the old returned point is correctly classified, strictly, by torch float64 and exactly
    y = _torch64(_abs_model(), np.array([[A, B]])).ravel()
    assert y[0] > y[1]
    assert abs(F(A) - F(0.75) + F(B) - F(2.25)) == F(1, 2**53)


def test_falsified_counterexample_is_the_checked_point_in_the_box() -> None:
    m = _abs_model()
    r = tl.verify.robustness(m, X, EPS, label=0, timeout=30)
    assert r.verdict == "falsified"
    cx = [F(v) if isinstance(v, F) else F(float(v)) for v in r.counterexample.ravel()]
    assert cx == [F(s) for s in r.certificate["x"]]  # what was checked is what is returned
    lo, hi = input_box(X, EPS)
    assert all(a <= c <= b for a, b, c in zip(lo, hi, cx))
    # exact evaluation of the hand-set weights: y0 = |x1 + x2 - 3| <= y1 = 0
    assert abs(cx[0] - F(0.75) + cx[1] - F(2.25)) <= 0
    assert r.counterexample.shape == X.shape


def test_falsified_prefers_a_checked_float64_point_of_the_box() -> None:
    """Same box, y0 = x1 + x2 - 3, y1 = 2^-50: the exact corner and the float64 corner one step
    inward are both counterexamples; the float64 one is returned (a float array the user can run)."""
    m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)).eval()
    _set(m[0], [[1, 0], [0, 1]], [-0.75, -2.25])
    _set(m[1], [[1, 1], [0, 0]], [0, 2.0**-50])
    r = tl.verify.robustness(m, X, EPS, label=0, timeout=30)
    assert r.verdict == "falsified"
    assert r.counterexample.dtype == np.float64
    assert [F(float(v)) for v in r.counterexample.ravel()] == [F(s) for s in r.certificate["x"]]
    lo, hi = input_box(X, EPS)
    assert all(a <= F(float(c)) <= b for a, b, c in zip(lo, hi, r.counterexample.ravel()))
    y = _torch64(m, r.counterexample).ravel()  # misclassified in an independent float64 run
    assert y[0] <= y[1]


def _one_logit() -> nn.Module:
    tl.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).eval()


def test_batch_of_single_score_inputs_is_refused() -> None:
    m = _one_logit()
    xb = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert m(tl.tensor(xb)).numpy().shape == (2, 1)
    for label in (0, 1):
        with pytest.raises(ValueError, match="batch"):
            tl.verify.robustness(m, xb, 0.01, label=label, timeout=5)


def test_one_input_whose_scores_have_shape_k_by_1_is_answered() -> None:
    """Not a batch (x has one row): an output (2, 1) of one input is its 2 class scores."""

    class Col(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            tl.manual_seed(1)
            self.lin = nn.Linear(3, 2)

        def forward(self, x: tl.Tensor) -> tl.Tensor:
            return self.lin(x).reshape(2, 1)

    m = Col().eval()
    x = np.array([[1.0, 2.0, 3.0]])
    y = m(tl.tensor(x)).numpy().ravel()
    label = int(y.argmax())
    r = tl.verify.robustness(m, x, 1e-4, label=label, timeout=10)
    assert y[label] - y[1 - label] > 1e-2  # a clear margin, and eps tiny: robust (torch says so below)
    w = torch.tensor(np.asarray(m.lin.weight.data, np.float64))
    b = torch.tensor(np.asarray(m.lin.bias.data, np.float64))
    corners = torch.tensor([[1 + s1 * 1e-4, 2 + s2 * 1e-4, 3 + s3 * 1e-4]
                            for s1 in (-1, 1) for s2 in (-1, 1) for s3 in (-1, 1)], dtype=torch.float64)
    ys = corners @ w.T + b  # linear: the corners decide the box
    assert bool((ys[:, label] > ys[:, 1 - label]).all())
    assert r.verdict == "verified"


def _two_class() -> nn.Module:
    m = nn.Sequential(nn.Linear(2, 2)).eval()
    _set(m[0], [[1, 0], [0, 1]], [0, 0])
    return m


@pytest.mark.parametrize("label", [-1, 2, True, 0.5, np.array([0, 1])])
def test_bad_labels_are_refused(label: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        tl.verify.robustness(_two_class(), np.array([[1.0, 0.0]]), 0.1, label=label, timeout=5)


def test_label_types_mean_the_same_class() -> None:
    """y = x: label 0 is robust at (1, 0) with eps 0.1 and label 1 is not; a numpy integer, a
    whole float and a one-element tensor index the same class as the int."""
    m, x = _two_class(), np.array([[1.0, 0.0]])
    for lab in (0, np.int64(0), 0.0, tl.tensor(np.array([0], np.int64))):
        assert tl.verify.robustness(m, x, 0.1, label=lab, timeout=10).verdict == "verified"
    for lab in (1, np.int32(1), tl.tensor(np.array(1, np.int64))):
        r = tl.verify.robustness(m, x, 0.1, label=lab, timeout=10)
        assert r.verdict == "falsified"
        y = r.counterexample.ravel()  # y = x' exactly: class 1 is not the strict argmax there
        assert y[1] <= y[0]


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf"), np.array([0.1, 0.1, 0.1])])
def test_bad_eps_is_refused(eps: object) -> None:
    with pytest.raises(ValueError):
        tl.verify.robustness(_two_class(), np.array([[1.0, 0.0]]), eps, label=0, timeout=5)


def test_eps_shapes_broadcast_to_the_same_box() -> None:
    x = np.array([[1.0, 0.0]])
    want = input_box(x, np.array([[0.1, 0.3]]))
    assert input_box(x, np.array([0.1, 0.3])) == want
    assert input_box(x, [0.1, 0.3]) == want
    assert want[0] == (F(1.0) - F(0.1), F(0.0) - F(0.3))
    with pytest.raises(ValueError):
        input_box(x, np.array([[0.1], [0.3]]))  # (2, 1) does not broadcast to (1, 2)


def test_a_tie_is_not_robust() -> None:
    """y0 = y1 = x1 + x2 everywhere: label 0 is never the strict argmax (torch: equal scores)."""
    m = nn.Sequential(nn.Linear(2, 2)).eval()
    _set(m[0], [[1, 1], [1, 1]], [0, 0])
    x = np.array([[0.5, 0.25]])
    r = tl.verify.robustness(m, x, 0.0, label=0, timeout=10)
    assert r.verdict == "falsified"
    y = _torch64(m, r.counterexample).ravel()
    assert y[0] == y[1]


def test_clip_intersects_the_box_and_is_refused_when_disjoint() -> None:
    """y = x on the box [0.95, 1.05] x [0.45, 0.55]: label 0 is robust; with clip (0, 1) the box is
    [0.95, 1] x [0.45, 0.55] and still robust; a clip that misses the box is refused."""
    lo, hi = input_box(np.array([[1.0, 0.5]]), 0.05, clip=(0.0, 1.0))
    assert hi == (F(1.0), F(0.5) + F(0.05)) and lo == (F(1.0) - F(0.05), F(0.5) - F(0.05))
    with pytest.raises(ValueError):
        input_box(np.array([[1.5, 0.5]]), 0.05, clip=(0.0, 1.0))
    m = _two_class()
    # label 1 at (0.5, 0.55) with eps 0.1 and clip (0, 0.52): the box's x1 reaches 0.52 >= x0 only
    # down to 0.4, so x' = (0.52, 0.45) misclassifies; the counterexample lies in the clipped box
    r = tl.verify.robustness(m, np.array([[0.5, 0.55]]), 0.1, label=1, clip=(0.0, 0.52), timeout=10)
    assert r.verdict == "falsified"
    cx = r.counterexample.ravel()
    assert (cx <= 0.52).all() and cx[1] <= cx[0]


def test_float32_mode_does_not_verify_a_label_the_binary32_run_misses() -> None:
    """Real numbers: y0 - y1 = 2^-40 - 2^-60 > 0 on the box; the binary32 run rounds every x' of it to
    0.75 and gives y0 = 0 < y1 = 2^-60 (torch float32 agrees): not robust as run."""
    m = nn.Sequential(nn.Linear(1, 2)).eval()
    _set(m[0], [[1.0], [0.0]], [-0.75, 2.0**-60])
    x, eps = np.array([[0.75 + 2.0**-40]]), 2.0**-45
    t = torch.nn.Linear(1, 2)
    with torch.no_grad():
        t.weight[:] = torch.tensor([[1.0], [0.0]])
        t.bias[:] = torch.tensor([-0.75, 2.0**-60])
        y32 = t(torch.tensor(x, dtype=torch.float32)).numpy().ravel()
    assert y32[0] < y32[1]
    assert tl.verify.robustness(m, x, eps, label=0, timeout=10, float32=False).verdict == "verified"
    assert tl.verify.robustness(m, x, eps, label=0, timeout=10, float32=True).verdict != "verified"
    b = tl.verify.bounds(m, x, eps, float32=True)
    assert b.contains(y32)
