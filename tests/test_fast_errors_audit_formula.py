"""The fast column against float runs whose sigmoid is the runtime's own formula 1/(1 + exp(-x))
(``runtime/rules_elementwise.py``), every operation rounded in the mode (exp correctly rounded; on
overflow inf, or max_finite in the modes toward zero/down), on random graphs over wide boxes so
sigmoid's arguments reach exp's overflow: the kernel that found the tail's gaps in the audit."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates.core import Rejected
from torchlean.certificates.errorbound import propagate
from torchlean.floats.emulate import Emulator
from torchlean.floats.errorbound import statement

sys.path.insert(0, str(Path(__file__).parent))
from test_fast_errors_audit import REF, _graph, rbox, rgraph, sound  # noqa: E402

Q = Fraction
_PLAIN = Emulator.transcendental


def _formula(self: Emulator, op: str, a: float, attrs: dict) -> float:
    if op != "sigmoid" or not np.isfinite(a) or self.fmt.name == REF:  # (the reference: the real sigmoid)
        return _PLAIN(self, op, a, attrs)
    t = _PLAIN(self, "exp", self.binary("sub", 0.0, a), {})
    return self.binary("div", 1.0, self.binary("add", 1.0, t))


@pytest.mark.parametrize("fmt,scale", [("binary16", 40), ("float8_e5m2", 40), ("bfloat16", 300)])
@pytest.mark.parametrize("mode", ["rne", "rtz", "rup", "rdn"])
def test_random_graphs_with_the_sigmoid_formula_on_wide_boxes(fmt, scale, mode, monkeypatch):
    monkeypatch.setattr(Emulator, "transcendental", _formula)
    done = 0
    for seed in (1, 4):  # (seeds whose first activation is a sigmoid)
        g = rgraph(seed, 1, width=3, depth=1)
        box = [(Q(-scale), Q(-scale, 2)), (Q(-scale), Q(scale)), (Q(scale, 4), Q(scale))]
        k = Q(1, 2) if mode == "rne" else Q(1)
        done += sound(g, box, fmt, mode, True, 24, seed, k=k) is not None
    assert done or fmt == "float8_e5m2"  # (e5m2 directed: refused where n u >= 1)


@pytest.mark.parametrize("fmt,scale", [("binary16", 20), ("bfloat16", 120), ("binary32", 120)])
@pytest.mark.parametrize("mode", ["rne", "rtz", "rup", "rdn"])
def test_sigmoid_layer_wholly_in_exps_overflow(fmt, scale, mode, monkeypatch):
    """x @ W + b with W > 0 on a negative box: every sigmoid argument (and its float hull) lies
    below -2 emax/3, then * k and a matmul (the tail's error carried through the layers)."""
    monkeypatch.setattr(Emulator, "transcendental", _formula)
    rng = np.random.default_rng(scale)
    g = _graph([("matmul", rng.uniform(0.5, 1, (3, 2)).astype(np.float32)),
                ("add", np.array([0.1, -0.3], np.float32)), ("sigmoid", None),
                ("mul", np.array([3.0, -0.7], np.float32)),
                ("matmul", np.array([[1.0], [0.5]], np.float32))], 3)
    box = [(Q(-2 * scale), Q(-scale))] * 3
    k = Q(1, 2) if mode == "rne" else Q(1)
    eps, obs = sound(g, box, fmt, mode, True, 12, k=k)
    assert np.all(obs > 0)


def test_e5m2_with_four_ulp_kernels_refuses_only_sigmoid():
    """a = k(2 u_n + minpos) >= 1 in float8_e5m2 with k = 4: only a sigmoid's bound needs a < 1."""
    for seed in (2, 5, 1):  # (tanh and relu only; then one with a sigmoid)
        g = rgraph(seed)
        st = statement(g, rbox(seed, 3), "float8_e5m2", kernel_ulps=Q(4), column="fast")
        if any(n.op == "sigmoid" for n in g.nodes):
            with pytest.raises(Rejected, match="kernel error too large"):
                propagate(st)
        else:
            assert sound(g, rbox(seed, 3), "float8_e5m2", "rne", True, 12, seed, k=Q(4)) is not None
