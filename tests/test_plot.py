"""``python -m torchlean plot``: training logs drawn into an image (issue 19, pictures).

The picture is opened again and checked: the requested size, several colours (not blank), and
pixels of each log's line colour present, so a run that draws nothing or only one log fails.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

mpl = pytest.importorskip("matplotlib")

from torchlean.plot import PlotError, load_log, plot_bounds, plot_logs  # noqa: E402


def _log(path, losses, lr=0.01, optimizer="Adam"):
    recs = [{"step": 10 * (i + 1), "loss": v, "lr": lr, "time": 0.01 * i} for i, v in enumerate(losses)]
    path.write_text(json.dumps({"format": "torchlean-train-log/1", "records": recs, "steps": 10 * len(losses),
                                "config": {"optimizer": optimizer, "lr": lr, "seed": 0}}))
    return path


def _colours(png):
    import matplotlib.image as mpimg

    img = mpimg.imread(str(png))[..., :3]
    return img, {tuple(np.round(c, 2)) for c in img.reshape(-1, 3)[::7]}


def test_two_logs_overlaid_with_one_panel_per_metric(tmp_path):
    a = _log(tmp_path / "a.json", [1.0, 0.5, 0.25, 0.2])
    b = _log(tmp_path / "b.json", [0.9, 0.7, 0.6, 0.55], lr=0.05, optimizer="SGD")
    out = plot_logs([a, b], tmp_path / "c.png")
    img, colours = _colours(out)
    assert img.shape[0] > 400 and img.shape[1] > 600  # two panels of a 7-inch figure at 110 dpi
    assert img.std() > 0.05 and len(colours) > 20  # not blank
    # matplotlib's first two line colours (C0 blue, C1 orange) both drawn: both logs are there
    blue, orange = np.array([0.12, 0.47, 0.71]), np.array([1.0, 0.5, 0.05])
    flat = img.reshape(-1, 3)
    for c in (blue, orange):
        assert (np.abs(flat - c).max(axis=1) < 0.08).sum() > 50


def test_metric_selection_and_errors(tmp_path):
    a = _log(tmp_path / "a.json", [1.0, 0.5])
    one = plot_logs([a], tmp_path / "one.png", metrics=["loss"])
    two = plot_logs([a], tmp_path / "two.png")
    assert _colours(one)[0].shape[0] < _colours(two)[0].shape[0]  # one panel is shorter than two
    with pytest.raises(PlotError, match="no metric accuracy"):
        plot_logs([a], tmp_path / "x.png", metrics=["accuracy"])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(PlotError, match="not a torchlean training log"):
        load_log(tmp_path / "bad.json")
    with pytest.raises(PlotError, match="no such file"):
        load_log(tmp_path / "missing.json")


def test_cli_trains_logs_and_plots(tmp_path):
    """The documented journey: mlp --log, then plot; a bad log is one line and exit 2 (bad input)."""
    log = tmp_path / "run.json"
    r = subprocess.run([sys.executable, "-m", "torchlean", "mlp", "--steps", "20", "--log", str(log),
                        "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "curve.png"
    r = subprocess.run([sys.executable, "-m", "torchlean", "plot", str(log), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and out.is_file() and r.stdout.startswith("wrote"), r.stderr
    assert _colours(out)[0].std() > 0.05
    r = subprocess.run([sys.executable, "-m", "torchlean", "plot", str(tmp_path / "nope.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no such file" in r.stderr


def test_verify_bounds_plot_on_acas(tmp_path):
    """``verify bounds --plot``: the picture is written, and the same sampled outputs it draws lie
    inside the printed CROWN bounds (the runtime's float64 run against the trusted engine)."""
    from pathlib import Path

    from torchlean.floats.network import run_float
    from torchlean.verify.network import load_graph

    data = Path(__file__).parent / "data/vnncomp2021/acasxu"
    net, prop, out = data / "ACASXU_run2a_1_1_batch_2000.onnx", data / "prop_3.vnnlib", tmp_path / "b.png"
    cmd = [sys.executable, "-m", "torchlean.verify", "bounds", str(net), str(prop), "--plot", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and out.is_file(), r.stderr
    img, colours = _colours(out)
    assert img.shape[1] > 900 and img.std() > 0.05 and len(colours) > 20  # five panels, not blank
    bounds = [tuple(float(v) for v in line.split("[")[1].rstrip("]").split(","))
              for line in r.stdout.splitlines() if line.strip().startswith("Y_")]
    assert len(bounds) == 5
    from torchlean.verify.network import load_spec

    region = load_spec(prop).regions[0]
    lo, hi = np.array([float(v) for v in region.lo]), np.array([float(v) for v in region.hi])
    pts = lo + (hi - lo) * np.random.default_rng(0).uniform(size=(500, 5))
    ys = run_float(load_graph(net), pts, np.float64)
    for j, (a, b) in enumerate(bounds):
        assert a - 1e-7 <= ys[:, j].min() and ys[:, j].max() <= b + 1e-7


def test_plot_bounds_clips_a_loose_interval_and_labels_it(tmp_path):
    lo, hi = np.array([-100.0, -1.0]), np.array([100.0, 1.0])
    out = plot_bounds({"ibp": (lo, hi), "crown": (lo / 100, hi / 10)},
                      np.random.default_rng(0).uniform(-0.01, 0.01, (50, 2)), tmp_path / "p.png")
    img, _ = _colours(out)
    assert img.std() > 0.05
    with pytest.raises(PlotError, match="number of outputs"):
        plot_bounds({"ibp": (lo, hi)}, np.zeros((5, 3)), tmp_path / "q.png")
