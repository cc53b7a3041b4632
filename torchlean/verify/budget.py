"""One verification's wall-clock budget: the search, then the checker's replay of its certificate.

``python -m torchlean.verify NET PROP --timeout T`` answers within T seconds of its process start
(loading, search and replay together; VNN-COMP kills a tool at its timeout, and a verdict whose
replay did not finish is worth nothing). The search runs until T minus ``REPLAY_FLOOR_S`` and the
replay gets what is left; when it cannot finish, the answer is "timeout", never an unchecked
verdict. No larger reserve is held back for the replay (session 15, measured in bench/README.md
"One wall clock per instance"): a search stopped early proves nothing it would not have proved by
running on, so a reserve can only turn a late verdict into an early timeout (it cost ACAS Xu 1_9
prop_7's counterexample a 30 s limit).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

#: seconds held back for the replay (its setup: fingerprint, objective forms, a sat point's exact
#: evaluation)
REPLAY_FLOOR_S = 0.25


def process_start() -> float:
    """The ``time.monotonic()`` value at which this process started (Linux: from /proc, to the
    kernel's 10 ms tick, so interpreter start-up and imports count); elsewhere the time this module
    was imported."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        age = up - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # (field 22: starttime, in ticks)
        now = time.monotonic()
        return now - age if 0 <= age < 86400 else _IMPORTED
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED


_IMPORTED = time.monotonic()


class Budget:
    """``timeout`` seconds from ``start`` (a ``time.monotonic()`` value; default: the process's
    start): ``end``, the time left, and the split between search and replay."""

    def __init__(self, timeout: float, start: float | None = None):
        self.end = (process_start() if start is None else start) + timeout
        self.lock = threading.Lock()
        self.answered = False

    def left(self) -> float:
        """Seconds left before ``end`` (negative past it)."""
        return self.end - time.monotonic()

    def search_time(self) -> float:
        """The search's hard limit: what is left minus the replay floor."""
        return self.left() - REPLAY_FLOOR_S

    def search(self, solve: Callable[..., Any], target: Any, spec: Any, **kw: Any) -> Any:
        """``solve(target, spec, timeout=..., **kw)`` (``bab.solve``'s signature) given what is
        left minus the replay floor, and stopped at that limit wherever it is
        (``certificates.core.time_limit``): a ``tree.Result`` "timeout" then."""
        from ..certificates.core import OutOfTime, time_limit
        from .tree import Result

        left = self.search_time()
        t = time.perf_counter()
        if left <= 0:
            return Result("timeout", stats={"time": 0.0})
        try:
            with time_limit(time.monotonic() + left):
                return solve(target, spec, timeout=left, **kw)
        except OutOfTime:
            return Result("timeout", stats={"time": time.perf_counter() - t})

    def answer(self, say: Callable[[], None]) -> bool:
        """Run ``say`` (print the verdict) unless the watchdog already answered "timeout";
        whether it ran. Once it has, the watchdog stays silent."""
        with self.lock:
            if self.answered:
                return False
            say()
            self.answered = True
            return True

    def watchdog(self, on_timeout: Callable[[], None], grace: float = 0.2) -> threading.Timer:
        """A daemon timer that, ``grace`` seconds past ``end`` and unless ``answer`` ran, calls
        ``on_timeout`` (print "timeout") and ends the process at once (``os._exit(0)``): the
        searches and the replay stop at their deadlines between batches and layers, but a single
        numpy call on a large network can run on past them, and the command's caller (VNN-COMP's
        harness) stops waiting at the timeout."""
        def fire() -> None:
            with self.lock:
                if self.answered:
                    return
                self.answered = True
                on_timeout()
                os._exit(0)

        t = threading.Timer(max(self.left() + grace, 0.0), fire)
        t.daemon = True
        t.start()
        return t
