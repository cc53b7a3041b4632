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

from torchlean.plot import PlotError, load_log, plot_logs  # noqa: E402


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
    """The documented journey: mlp --log, then plot; a bad log is one line and exit 1."""
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
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "no such file" in r.stderr
