"""Pictures of training logs: ``python -m torchlean plot LOG.json [LOG2.json ...] -o curve.png``.

A training log is the JSON that ``Trainer.train(log_path=...)`` and ``python -m torchlean mlp --log``
write (format ``torchlean-train-log/1``: ``records`` of ``{"step", "loss", "lr", ...}``). Each metric
found in the records gets its own panel with steps on the x axis; several logs are overlaid, each
labelled by its file name and its optimizer/lr/seed, so runs can be compared at a glance. The loss
panel uses a log scale when every value is positive.

matplotlib is an optional extra (``pip install 'torchlean[plot]'``); without it the command fails in
one line saying so. Example::

    python -m torchlean mlp --steps 300 --log adam.json
    python -m torchlean mlp --steps 300 --optimizer sgd --lr 0.05 --log sgd.json
    python -m torchlean plot adam.json sgd.json -o curves.png
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["PlotError", "load_log", "plot_logs"]

LOG_FORMAT = "torchlean-train-log/1"
#: record keys that are coordinates or bookkeeping, not metrics to draw
_NOT_METRICS = {"step", "time"}


class PlotError(ValueError):
    """A log that cannot be drawn (missing, not a training log, no records), or no matplotlib."""


def load_log(path: str | Path) -> dict[str, Any]:
    """Read and validate one training log; raises ``PlotError`` with a one-line reason."""
    p = Path(path)
    if not p.is_file():
        raise PlotError(f"{p}: no such file")
    try:
        log = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PlotError(f"{p}: not JSON ({e.__class__.__name__})") from None
    if not isinstance(log, dict) or log.get("format") != LOG_FORMAT:
        raise PlotError(f"{p}: not a torchlean training log (expected format {LOG_FORMAT!r})")
    recs = log.get("records")
    if not isinstance(recs, list) or not recs or not all(
            isinstance(r, dict) and isinstance(r.get("step"), int) for r in recs):
        raise PlotError(f"{p}: the log has no records with a step (train with log_every <= steps)")
    return log


def _label(path: Path, log: dict[str, Any]) -> str:
    c = log.get("config") or {}
    bits = [str(c[k]) if k == "optimizer" else f"{k} {c[k]}" for k in ("optimizer", "lr", "seed")
            if c.get(k) is not None]
    return f"{path.stem} ({', '.join(bits)})" if bits else path.stem


def plot_logs(paths: list[str | Path], out: str | Path, metrics: list[str] | None = None,
              title: str | None = None) -> Path:
    """Draw the metrics of one or more training logs over steps into the image ``out`` (PNG, SVG or
    PDF by its suffix) and return its path. ``metrics``: which record keys to draw (default: every
    numeric key but step/time found in any log, loss first)."""
    if not paths:
        raise PlotError("give at least one training log")
    logs = [(Path(p), load_log(p)) for p in paths]
    found: list[str] = []
    for _, log in logs:
        for r in log["records"]:
            for k, v in r.items():
                if k not in _NOT_METRICS and isinstance(v, (int, float)) and k not in found:
                    found.append(k)
    found = [k for k in found if k == "loss"] + [k for k in found if k != "loss"]
    keys = metrics or found
    missing = [k for k in keys if k not in found]
    if missing or not keys:
        raise PlotError(f"no metric {', '.join(missing) or '(none)'} in the logs (they have: "
                        f"{', '.join(found) or 'nothing'})")
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed (CI, servers)
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("plotting needs matplotlib: pip install 'torchlean[plot]'") from None

    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.6 * len(keys) + 0.6), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        positive = True
        for path, log in logs:
            pts = [(r["step"], r[key]) for r in log["records"] if isinstance(r.get(key), (int, float))]
            if not pts:
                continue
            xs, ys = zip(*pts)
            positive = positive and min(ys) > 0
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=_label(path, log))
        if key == "loss" and positive:
            ax.set_yscale("log")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
    axes[0, 0].legend(fontsize="small")
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(title or "training", fontsize="medium")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
