"""``run_graph(..., dtype=fmt)`` runs every operation in the format: each node's float output is
rounded to it once (what torch's CPU kernels do for bfloat16). ml_dtypes' matmul of two bfloat16
or float8 arrays returns float32, so before this every node after the first matmul ran in
binary32 and the "bfloat16 run" that ``observed_error`` and ``python -m torchlean.floats bound
--format bfloat16`` print was mostly a binary32 one."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

import torchlean as tl
from torchlean.certificates import check
from torchlean.floats import bound_certificate, epsilons, observed_error
from torchlean.runtime.execute import run_graph

FORMATS = [ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, np.float16]


def _model(seed: int = 0):
    tl.manual_seed(seed)
    m = tl.nn.Sequential(tl.nn.Linear(3, 5), tl.nn.Tanh(), tl.nn.Linear(5, 2))
    return m, tl.trace(m, tl.zeros(1, 3))


@pytest.mark.parametrize("dt", FORMATS)
def test_each_operation_is_rounded_to_the_format(dt):
    """Bit for bit against the same network written out in numpy: each op in binary32 on the
    format's values (exact for a product of two bfloat16s, one rounding for the rest), its result
    rounded to the format."""
    m, g = _model()
    (W1, b1), (W2, b2) = [(np.asarray(layer.weight.data), np.asarray(layer.bias.data))
                          for layer in (m[0], m[2])]
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3)).astype(np.float32)

    def r(a):  # (one rounding to the format)
        return np.asarray(a, dtype=np.float32).astype(dt)

    def f(a):  # (the format's values, in binary32, where a binary32 kernel reads them)
        return np.asarray(a).astype(np.float32)

    h = r(f(r(x)) @ f(r(W1)).T)
    h = r(f(h) + f(r(b1)))
    h = r(np.tanh(f(h)))
    y = r(f(h) @ f(r(W2)).T)
    y = r(f(y) + f(r(b2)))
    out = run_graph(g, {g.inputs[0].name: x}, dtype=dt)[0]
    assert out.dtype == np.dtype(dt)
    assert np.array_equal(out.view(np.uint8), y.view(np.uint8))


def test_binary32_and_binary64_runs_unchanged():
    """No cast where the kernels already return the format (the float32 runs of the verifier)."""
    _, g = _model()
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3))
    for dt in (np.float32, np.float64):
        out = run_graph(g, {g.inputs[0].name: x}, dtype=dt)[0]
        assert out.dtype == np.dtype(dt)
    ref = np.asarray(run_graph(g, {g.inputs[0].name: x})[0], dtype=np.float64)
    assert np.allclose(run_graph(g, {g.inputs[0].name: x}, dtype=np.float64)[0], ref, rtol=0, atol=1e-15)


def test_bfloat16_epsilon_covers_the_bfloat16_run():
    """The certified bfloat16 epsilon against the runtime now really run in bfloat16: covered,
    and the observed error is of bfloat16's size (its unit roundoff is 2^-8), not binary32's."""
    _, g = _model(3)
    box = [(Fraction(-1), Fraction(1))] * 3
    cert = bound_certificate(g, box, "bfloat16")
    assert check(cert).ok
    eps = np.array([float(e) for e in epsilons(cert)])
    obs = observed_error(g, box, 2000, dtype=ml_dtypes.bfloat16, reference=False).max_error
    assert np.all(obs <= eps), (obs, eps)
    assert obs.max() > 2.0 ** -14  # (a binary32 run's error here is ~1e-7)
