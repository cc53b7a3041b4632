"""The general search (verify/general.py) and ``python -m torchlean.verify`` on networks that are not
ReLU chains: verdicts only with certificates the checker accepts, against the published verdict or
an independent reference."""

from __future__ import annotations

import importlib.util
import json
from fractions import Fraction

import numpy as np
import pytest

import torchlean as tl
from torchlean import bridge, nn
from torchlean.verify.__main__ import main

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torchlean.certificates.lower") is None,
                                reason="needs the bound table (certificates.lower)")


def _tanh_net(tmp_path):
    tl.manual_seed(7)
    model = nn.Sequential(nn.Linear(2, 10), nn.Tanh(), nn.Linear(10, 10), nn.Sigmoid(), nn.Linear(10, 2))
    g = tl.trace(model, tl.zeros(1, 2))
    path = tmp_path / "net.onnx"
    bridge.export_onnx(g, path)
    return model, path


def _prop(tmp_path, lo, hi, rhs):
    """Unsafe: Y_0 - Y_1 <= rhs over the box."""
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + \
        "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n" + \
        "".join(f"(assert (>= X_{i} {lo[i]!r}))\n(assert (<= X_{i} {hi[i]!r}))\n" for i in range(2)) + \
        f"(assert (<= (- Y_0 Y_1) {rhs!r}))\n"
    p = tmp_path / "prop.vnnlib"
    p.write_text(text)
    return p


def _grid_min(model, lo, hi, n=301):
    g = np.stack(np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)), -1).reshape(-1, 2)
    with tl.no_grad():
        y = np.concatenate([model(tl.tensor(g[i:i + 5000])).numpy() for i in range(0, len(g), 5000)])
    return float((y[:, 0] - y[:, 1]).min())


@pytest.mark.parametrize("margin, expected", [(-0.02, "unsat"), (0.02, "sat")])
def test_cli_decides_a_sigmoid_tanh_net_both_ways(tmp_path, capsys, margin, expected):
    model, net = _tanh_net(tmp_path)
    lo, hi = (-1.0, -1.0), (1.0, 1.0)
    m = _grid_min(model, lo, hi)  # the true minimum is at most this (a dense grid)
    prop = _prop(tmp_path, lo, hi, m + margin)
    cert = tmp_path / "cert.json"
    assert main([str(net), str(prop), "--timeout", "60", "-q", "--cert", str(cert)]) == 0
    out = capsys.readouterr().out.split()
    assert out[0] == expected
    assert main(["check", str(cert), str(net), str(prop)]) == 0
    assert capsys.readouterr().out.startswith("accepted")
    c = json.loads(cert.read_text())
    if expected == "sat":
        x = np.array([[float(Fraction(v)) for v in c["x"]]])
        with tl.no_grad():
            y = model(tl.tensor(x)).numpy().ravel()
        assert y[0] - y[1] <= m + margin + 1e-9
    else:  # the certificate is for this property only: a tighter threshold is refused
        prop2 = _prop(tmp_path, lo, hi, m + 0.01)
        assert main(["check", str(cert), str(net), str(prop2)]) == 1


def test_cli_bounds_on_a_general_graph_contain_samples(tmp_path, capsys):
    model, net = _tanh_net(tmp_path)
    prop = _prop(tmp_path, (-0.5, 0.0), (0.5, 0.25), 0.0)
    assert main(["bounds", str(net), str(prop), "--method", "alpha-crown"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "Y_" in ln]
    b = np.array([[float(v) for v in ln.split("[")[1].rstrip("]").split(",")] for ln in lines])
    x = np.random.default_rng(0).uniform((-0.5, 0.0), (0.5, 0.25), (500, 2))
    with tl.no_grad():
        y = model(tl.tensor(x)).numpy()
    assert (y >= b[:, 0] - 1e-7).all() and (y <= b[:, 1] + 1e-7).all()


def test_cli_outside_a_rows_domain_is_one_line_error(tmp_path, capsys):
    lin = nn.Linear(2, 2)
    with np.errstate(invalid="ignore"):  # (the trace runs it once; its value does not matter)
        g = tl.trace(lambda x: lin(x).log(), tl.ones(1, 2) * 2)
    net = tmp_path / "log.onnx"
    bridge.export_onnx(g, net)
    prop = _prop(tmp_path, (-1.0, -1.0), (1.0, 1.0), -100.0)
    # log's argument crosses 0 on this box: the network has no value there, so no verdict may be
    # given; either a one-line domain error (exit 2) or no verdict (elements outside the domain get
    # vacuous bounds and the search runs out of time), never a traceback or a warning
    rc = main([str(net), str(prop), "--timeout", "3", "-q"])
    out, err = capsys.readouterr()
    if rc == 2:
        err = err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and "domain" in err[0]
    else:
        assert rc == 0 and out.split()[0] in ("timeout", "unknown") and "Warning" not in err, (out, err)
