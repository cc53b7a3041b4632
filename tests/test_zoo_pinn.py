"""``python -m torchlean pinn``: a physics-informed network trained through second derivatives, and
its residual bound over the whole domain: a certificate the checker accepts (mutations rejected),
covering the residual at sampled points evaluated exactly."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import torchlean as tl
from torchlean.zoo import pinn


@pytest.fixture(scope="module")
def trained():
    net, history, _ = pinn.train(800, seed=0)
    return net, history


def test_pinn_learns_the_solution(trained) -> None:
    net, history = trained
    assert history[-1]["loss"] < 0.01 * history[0]["loss"]
    xs = np.linspace(0, 1, 201).reshape(-1, 1).astype(np.float32)
    assert np.abs(net(tl.tensor(xs)).numpy() - pinn.exact_solution(xs)).max() < 0.02


def test_residual_graph_is_the_autograd_residual(trained) -> None:
    net, _ = trained
    g = pinn.residual_graph(net)
    from torchlean.runtime.execute import run_graph

    for x in (0.0, 0.37, 1.0):
        xs = np.array([[x]], dtype=np.float32)
        want = pinn.residual(net, tl.tensor(xs)).numpy()
        got = run_graph(g, {"input0": xs})[0]
        assert np.allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_residual_bound_is_checked_and_covers_exact_values(trained) -> None:
    from torchlean.verify import table

    net, _ = trained
    rb = pinn.certify_residual(net, pieces=16, timeout=120)
    assert rb.verdict == "verified", rb.reason
    t = table.target(rb.graph)
    assert table.check(rb.certificate, t, rb.spec).ok
    points = [Fraction(k, 37) for k in range(38)]
    for lo, hi in pinn.exact_residuals(rb.graph, points):
        assert -Fraction(rb.bound) < lo <= hi < Fraction(rb.bound)
    bad = copy.deepcopy(rb.certificate)  # a leaf claiming more than its bound gives
    for tree in bad["regions"]:
        nodes = tree["per_disjunct"][0] if isinstance(tree, dict) else tree
        leaf = next(n for n in nodes if n[0] == "leaf")
        leaf[1][0][1] = str(Fraction(leaf[1][0][1]) * 1000 + 1)
        break
    assert not table.check(bad, t, rb.spec).ok
    other, _, _ = pinn.train(50, seed=1)  # the certificate of one network does not pass for another
    assert not table.check(rb.certificate, table.target(pinn.residual_graph(other)), rb.spec).ok


def test_pinn_command(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OPENBLAS_NUM_THREADS": "1",
           "TORCHLEAN_PROOF_CACHE": str(tmp_path / "proofs")}
    png = tmp_path / "r.png"
    cmd = ["pinn", "--steps", "600", "--certify", "--pieces", "16", "--plot", str(png)]
    out = subprocess.run([sys.executable, "-m", "torchlean", *cmd], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert "certified: |u''(x) - f(x)| <=" in out.stdout
    # certified, not "NOT certified"
    assert "float32 rounding error of u on the domain [0, 1]: |float32 - real| <=" in out.stdout
    # the residual's own backward (third derivatives of u) proved compositionally, every step checked
    assert "gradient proof of pinn_residual at input [1, 1] (compositional): checked by the trusted checker" \
        in out.stdout and " 0 solver-trusted, 0 not proved" in out.stdout
    plt = pytest.importorskip("matplotlib.pyplot")
    img = plt.imread(png)
    assert img.shape[0] > 200 and img[..., :3].std() > 0.05
