"""Pictures: training logs (``python -m torchlean plot LOG.json ... -o curve.png``), output
bounds (``python -m torchlean.verify bounds NET PROP --plot bounds.png``) and certified accuracy
against the radius (``python -m torchlean cnn --certify EPS --plot cert.png``).

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

from . import _outward

__all__ = ["PlotError", "load_log", "plot_bounds", "plot_certified", "plot_images", "plot_logs",
           "plot_residual"]

LOG_FORMAT = "torchlean-train-log/1"
#: record keys that are coordinates or bookkeeping, not metrics to draw
_NOT_METRICS = {"step", "time"}


class PlotError(ValueError):
    """A log that cannot be drawn (missing, not a training log, no records), or no matplotlib."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed (CI, servers)
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("plotting needs matplotlib: pip install 'torchlean[plot]'") from None
    return plt


def _save(plt: Any, fig: Any, out: str | Path, rect: tuple[float, ...] | None = None) -> Path:
    """Lay the figure out (leaving ``rect`` free for a legend), write it, free it; its path."""
    fig.tight_layout(**({"rect": rect} if rect else {}))
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def load_log(path: str | Path) -> dict[str, Any]:
    """Read and validate one training log; raises ``PlotError`` with a one-line reason."""
    from ._files import InputFileError, read_input_bytes

    p = Path(path)
    try:  # (a regular file within the size limit: a directory is named as one, not "no such file")
        log = json.loads(read_input_bytes(p, what="training log"))
    except InputFileError as e:
        raise PlotError(str(e)) from None
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
    plt = _pyplot()
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
    return _save(plt, fig, out)


def plot_bounds(bounds: dict[str, tuple[Any, Any]], samples: Any, out: str | Path,
                title: str | None = None) -> Path:
    """One panel per output: each method's interval [lower, upper] (``bounds``: method name ->
    (lower array, upper array), drawn widest first) next to the outputs of sampled points
    (``samples``: array (points, outputs)); the samples must lie inside every interval, and the gap
    between an interval and the samples' range is how loose it is. The view fits the tightest
    interval and the samples; a wider interval is drawn clipped and hatched, labelled with how many
    times wider it is. Returns the image path."""
    import numpy as np

    samples = np.asarray(samples, dtype=float)
    names = sorted(bounds, key=lambda k: -float(np.sum(np.asarray(bounds[k][1]) - np.asarray(bounds[k][0]))))
    m = samples.shape[1]
    if any(len(lo) != m or len(hi) != m for lo, hi in bounds.values()):
        raise PlotError("bounds and samples disagree on the number of outputs")
    cols = min(m, 5)
    rows = -(-m // cols)
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols + 0.6, 2.8 * rows + 0.7), squeeze=False)
    colours = ["#c6dbef", "#4292c6", "#08306b", "#74c476"]
    rng = np.random.default_rng(0)
    for j in range(rows * cols):
        ax = axes[j // cols, j % cols]
        if j >= m:
            ax.axis("off")
            continue
        # the view: the tightest interval and the samples, with a margin; a looser interval is drawn
        # clipped (hatched) with its width relative to the tightest written on it, so one loose
        # method (IBP is often 100x wider) does not flatten the others into a line
        ivs = [(float(bounds[n][0][j]), float(bounds[n][1][j])) for n in names]
        t_lo, t_hi = min(ivs, key=lambda iv: iv[1] - iv[0])
        v_lo, v_hi = min(t_lo, float(samples[:, j].min())), max(t_hi, float(samples[:, j].max()))
        pad = 0.2 * (v_hi - v_lo) or 1.0
        v_lo, v_hi = v_lo - pad, v_hi + pad
        for k, (name, (lo, hi)) in enumerate(zip(names, ivs)):
            clipped = lo < v_lo or hi > v_hi
            a, b = max(lo, v_lo), min(hi, v_hi)
            ax.bar(k, b - a, bottom=a, width=0.6, color=colours[k % len(colours)],
                   hatch="//" if clipped else None, label=name if j == 0 else None)
            if clipped and t_hi > t_lo:
                ax.text(k, v_hi, f"{(hi - lo) / (t_hi - t_lo):.0f}x", ha="center", va="bottom",
                        fontsize="x-small")
        ax.set_ylim(v_lo, v_hi)
        xs = len(names) + rng.uniform(-0.25, 0.25, len(samples))
        ax.scatter(xs, samples[:, j], s=3, color="#d94801", label="sampled" if j == 0 else None)
        ax.set_xticks(range(len(names) + 1), [*names, "sampled"], fontsize="x-small", rotation=30)
        ax.set_title(f"Y_{j}", fontsize="small")
        ax.tick_params(axis="y", labelsize="x-small")
        ax.grid(True, axis="y", alpha=0.3)
    fig.legend(loc="lower center", ncol=len(names) + 1, fontsize="small")
    fig.suptitle(title or "output bounds", fontsize="medium")
    return _save(plt, fig, out, rect=(0, 0.06, 1, 1))


def plot_certified(radii: Any, certified: Any, not_falsified: Any, clean: float, out: str | Path,
                   title: str | None = None) -> Path:
    """Certified accuracy against the L-inf radius (every point a fraction of images whose
    robustness certificate the checker accepted) under the fraction not falsified (no checked
    counterexample found: an upper bound on the true robust accuracy), with the clean accuracy as a
    line; the band between the curves is what the verifier left undecided. Returns the image path."""
    import numpy as np

    r, c, u = (np.asarray(v, dtype=float) for v in (radii, certified, not_falsified))
    if not (len(r) == len(c) == len(u)) or len(r) == 0:
        raise PlotError("radii, certified and not_falsified need the same, non-zero length")
    if np.any(c > u + 1e-12):
        raise PlotError("certified accuracy above the not-falsified fraction: inconsistent results")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.axhline(clean, color="#888888", linestyle="--", linewidth=1, label=f"clean accuracy {clean:.1%}")
    ax.fill_between(r, c, u, color="#fdd0a2", alpha=0.7, label="undecided")
    ax.plot(r, u, marker="o", color="#d94801", label="not falsified (upper bound)")
    ax.plot(r, c, marker="o", color="#08519c", label="certified (checked)")
    ax.set_xlabel("L-inf radius (pixel scale [0, 1])")
    ax.set_ylabel("fraction of test images")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="lower left")
    ax.set_title(title or "certified accuracy", fontsize="medium")
    return _save(plt, fig, out)


def plot_residual(pieces: Any, xs: Any, residual: Any, bound: float, out: str | Path,
                  title: str | None = None, certified: bool = True) -> Path:
    """A PDE residual over a 1-D domain: per interval of ``pieces`` ((lo, hi, lower, upper) from the
    bound table) a shaded band that holds the residual everywhere on that interval, the residual at
    the sample points ``xs`` drawn through it, and the bound ±``bound`` over the whole domain,
    labelled "certified" only when ``certified`` (the checker accepted its proof; else "NOT
    certified": audit49, the plot said "certified" next to a "not certified" line). Returns the
    image path."""
    import numpy as np

    xs, residual = np.asarray(xs, dtype=float), np.asarray(residual, dtype=float)
    if xs.shape != residual.shape or not len(pieces):
        raise PlotError("need as many residual values as points, and at least one interval")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for k, (lo, hi, low, up) in enumerate(pieces):
        ax.fill_between([lo, hi], [low, low], [up, up], color="#c6dbef", linewidth=0,
                        label="bound table, per interval" if k == 0 else None)
    ax.plot(xs, residual, color="#d94801", linewidth=1.2, label="residual at sampled points")
    for s in (1, -1):
        ax.axhline(s * bound, color="#08519c", linestyle="--", linewidth=1,
                   label=(f"{'certified' if certified else 'NOT certified (not proved):'} |residual| <= "
                          f"{_outward.up(bound, 3)}") if s == 1 else None)
    ax.set_xlabel("x")
    ax.set_ylabel("u''(x) - f(x)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="lower left")
    ax.set_title(title or "PDE residual over the whole domain", fontsize="medium")
    return _save(plt, fig, out)


def plot_images(images: Any, out: str | Path, title: str | None = None) -> Path:
    """A grid of grey images (``images``: (n, h, w), values in [0, 1]). Returns the image path."""
    import numpy as np

    images = np.asarray(images, dtype=float)
    if images.ndim != 3 or not len(images):
        raise PlotError(f"expected images of shape (n, h, w), got {images.shape}")
    cols = min(8, len(images))
    rows = -(-len(images) // cols)
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.1 * rows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k], cmap="gray_r", vmin=0, vmax=1)
    fig.suptitle(title or "images", fontsize="medium")
    return _save(plt, fig, out)
