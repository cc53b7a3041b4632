"""Progress on long work (training, proof discharge, branch and bound, benchmark runs), one rule for all.

``bar(total, desc, unit, enabled)`` returns a ``Progress`` with tqdm's ``update``/``set_postfix``/
``close``. What it shows depends on ``enabled`` and on where stderr goes:

- ``None`` (the default everywhere): a live tqdm bar when stderr is a terminal, nothing otherwise;
- ``True``: the live bar on a terminal; otherwise (a CI log, ``nohup``, a pipe) a plain line such as
  ``train: 120/300 step (40%) 3.1 s loss=0.52`` at most every ``interval`` seconds and once at the
  end, logged at INFO on the ``torchlean.progress`` logger, which writes to stderr unless the
  application configured its handlers (``logging.getLogger("torchlean.progress").handlers``);
- ``False``: nothing.

The command-line tools expose it as ``--progress`` / ``--no-progress`` (default: terminal only).
``stage(text, enabled)`` names a long step as it starts, in one line on the same logger, on a
terminal or not (only ``enabled=False`` silences it): the zoo commands' ``--certify`` steps.

Example::

    from torchlean.progress import bar
    with bar(total=len(jobs), desc="jobs", unit="job", enabled=True) as p:
        for job in jobs:
            run(job)
            p.update(1)
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Progress", "bar", "watch", "stage", "stdout_handler", "LOGGER"]

#: the logger of the plain progress lines (off a terminal)
LOGGER = logging.getLogger("torchlean.progress")


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged (a test or an application may
    have replaced it since import; ``StreamHandler()`` would keep the first one)."""

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _Stdout(_Stderr):
    """The same for ``sys.stdout``: a command's report lines, as log records."""

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def stdout_handler() -> logging.Handler:
    """A handler writing bare messages to the current ``sys.stdout`` (for report loggers)."""
    h = _Stdout()
    h.setFormatter(logging.Formatter("%(message)s"))
    return h


if not LOGGER.handlers:  # visible by default like tqdm's bar; an application may replace it
    _handler = _Stderr()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    LOGGER.addHandler(_handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class Progress:
    """A progress reporter: a tqdm bar, periodic log lines, or nothing (see the module docstring)."""

    def __init__(self, total: float | None, desc: str, unit: str, mode: str, interval: float = 10.0,
                 bar_format: str | None = None) -> None:
        self.total, self.desc, self.unit, self.mode, self.interval = total, desc, unit, mode, interval
        self.n: float = 0
        self.postfix: dict[str, Any] = {}
        self._start = self._last = time.monotonic()
        self._tqdm = None
        if mode == "bar":
            from tqdm import tqdm

            kw = {"bar_format": bar_format} if bar_format else {}
            self._tqdm = tqdm(total=total, desc=desc, unit=unit, leave=False, **kw)

    def update(self, n: float = 1) -> None:
        """Add ``n`` to the count (a line is logged when ``interval`` seconds have passed)."""
        self.n += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        elif self.mode == "log" and time.monotonic() - self._last >= self.interval:
            self._log()

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        """Values shown after the count (``loss=0.52``, ``open=12``)."""
        self.postfix = values
        if self._tqdm is not None:
            self._tqdm.set_postfix(refresh=refresh, **values)

    def line(self) -> str:
        """The plain progress line: ``desc: n/total unit (p%) elapsed s key=value ...`` (no count
        when nothing is counted, e.g. under ``watch``)."""
        n = f"{self.n:g}"
        if self.total:
            n += f"/{self.total:g} {self.unit} ({100 * self.n / self.total:.0f}%) "
        else:
            n = f"{n} {self.unit} " if self.n else ""
        extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        return f"{self.desc}: {n}{time.monotonic() - self._start:.1f} s" + (f" {extra}" if extra else "")

    def refresh(self) -> None:
        """Redraw the bar, or log a line off a terminal when ``interval`` seconds have passed."""
        if self._tqdm is not None:
            self._tqdm.refresh()
        elif self.mode == "log" and time.monotonic() - self._last >= self.interval:
            self._log()

    def _log(self) -> None:
        self._last = time.monotonic()
        LOGGER.info(self.line())

    def close(self) -> None:
        """Finish: the bar disappears; off a terminal a last line is logged."""
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
        elif self.mode == "log":
            self._log()
            self.mode = "off"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def bar(total: float | None = None, desc: str = "", unit: str = "it", enabled: bool | None = None,
        interval: float = 10.0, bar_format: str | None = None) -> Progress:
    """A ``Progress`` for ``total`` units of work (``None``: unknown); ``enabled`` as in the module
    docstring; ``interval``: seconds between plain lines off a terminal; ``bar_format``: tqdm's."""
    if enabled is False:
        mode = "off"
    elif _is_terminal():
        mode = "bar"
    else:
        mode = "log" if enabled else "off"
    return Progress(total, desc, unit, mode, interval, bar_format)


def stage(text: str, enabled: bool | None = None) -> None:
    """One line naming a long step as it starts (``cnn: certifying 10 test images at eps 0.1``),
    logged on ``LOGGER`` (stderr) on a terminal or not, unless ``enabled`` is False
    (``--no-progress``, ``--quiet``): a step's bar shows only on a terminal by default, and a
    command silent for a minute in a CI log or a pipe looks hung. Lines, not a count: no interval."""
    if enabled is not False:
        LOGGER.info(text)


@contextmanager
def watch(read: Callable[[], dict[str, Any]], desc: str, enabled: bool | None = None,
          interval: float = 10.0) -> Iterator[Progress]:
    """Progress for work whose loop is not ours to instrument (a search filling a statistics dict):
    a daemon thread shows ``read()`` (e.g. ``{"boxes": 120, "leaves": 80}``) as the postfix every
    half second on a terminal, or as a plain line every ``interval`` seconds elsewhere."""
    p = bar(None, desc, "", enabled, interval, bar_format="{desc}: {elapsed} {postfix}")
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(min(0.5, interval)):
            try:
                p.set_postfix(refresh=False, **read())
            except RuntimeError:  # the dict changed size while read: skip this tick
                continue
            p.refresh()

    t = threading.Thread(target=loop, daemon=True) if p.mode != "off" else None
    if t is not None:
        t.start()
    try:
        yield p
    finally:
        stop.set()
        if t is not None:
            t.join()
        try:
            p.set_postfix(refresh=False, **read())  # the last line shows the final counts
        except RuntimeError:
            pass
        p.close()
