"""Output-diversified starts of the counterexample search (``attack.odi``, issue 15): each step
ascends a random output direction and lands on a box corner (checked against onnxruntime's float32
evaluation of the ONNX file), and the search that uses them on a wide network finds the published
counterexample of mnistfc 256x4 prop_3_0.05, which onnxruntime and the checker both confirm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from torchlean.verify import attack, table
from torchlean.verify.table import load_instance

ort = pytest.importorskip("onnxruntime")

DATA = Path(__file__).parent / "data" / "vnncomp2021" / "mnistfc"
NET = DATA / "mnist-net_256x4.onnx"
PROP = DATA / "prop_3_0.05.vnnlib"  # published: sat (label 7)


def _ort(path: Path):
    """onnxruntime's outputs (float64 array (B, 10)) for points (B, 784): the reference."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(sess.run(None, {name: p.reshape(1, 784, 1).astype(np.float32)})[0],
                                    dtype=np.float64).ravel() for p in x])
    return run


def test_odi_ascends_each_rows_output_direction_inside_the_box():
    """From uniform points of the property's box: every ODI point lies in the box, and for the
    row's own random direction w, onnxruntime's w·y is larger there than at the start for most
    rows and on average clearly, unlike after steps of the same size in random sign directions
    (the control: the gain comes from following the gradient; a sign step of a piecewise-linear
    network need not ascend, so not every row gains)."""
    t, spec = load_instance(NET, PROP)
    region = spec.regions[0]
    lo = np.array([float(v) for v in region.lo])
    hi = np.array([float(v) for v in region.hi])
    rng = np.random.default_rng(1)
    z0 = rng.uniform(lo, hi, (24, lo.size))
    z = attack.odi(t.ex, z0, lo, hi, np.random.default_rng(5))
    w = np.random.default_rng(5).uniform(-1.0, 1.0, (24, 10))  # the directions odi drew
    assert ((lo <= z) & (z <= hi)).all() and (z != z0).any(1).all()
    ctrl = z0
    for _ in range(attack.ODI_STEPS):
        ctrl = np.clip(ctrl + (hi - lo) / 2 * rng.choice([-1.0, 1.0], z0.shape), lo, hi)
    run = _ort(NET)
    before = (run(z0) * w).sum(1)
    gain, ctrl_gain = (run(z) * w).sum(1) - before, (run(ctrl) * w).sum(1) - before
    assert (gain > 0).mean() >= 0.7
    assert gain.mean() > 0.1 and gain.mean() > ctrl_gain.mean() + 0.1


def test_search_with_diversified_starts_finds_the_published_counterexample(monkeypatch):
    """One round of ``search`` on 256x4 prop_3_0.05 (published sat) calls ``odi`` and returns a point
    that onnxruntime classifies as some class other than 7 scoring at least class 7 (the unsafe set)
    and that the checker's sat replay accepts."""
    t, spec = load_instance(NET, PROP)
    calls = []
    real = attack.odi

    def odi(*a, **k):
        calls.append(a[1].shape)
        return real(*a, **k)

    monkeypatch.setattr(attack, "odi", odi)
    x = attack.search(t.ex, spec, table.confirmer(t, spec), rounds=1)
    assert calls and calls[0][0] > 0
    assert x is not None
    y = _ort(NET)(np.array([[float(v) for v in x]]))[0]
    assert np.delete(y, 7).max() >= y[7]
    assert table.check(table.sat_cert(t, spec, x), t, spec).ok
