"""One verification's wall-clock budget: the search, then the checker's replay of its certificate.

``python -m torchlean.verify NET PROP --timeout T`` answers within T seconds of its process start
(loading, search and replay together; VNN-COMP kills a tool at its timeout, and a verdict whose
replay did not finish is worth nothing). The search runs until the deadline minus a *replay
reserve*: an estimate of what the checker will need for the certificate built so far, from what
the search measured (``count_pass``: seconds and boxes of its bound passes; the replay bounds each
leaf once more on the same engine), recomputed between batches (``late``). The replay gets what is
left; when it cannot finish, the answer is "timeout", never an unchecked verdict.

The reserve is opt-in (``Budget.reserving``): a search called without one runs to its own deadline
as before (tests, the Python API, which check on their own terms).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: replay seconds per leaf over the search's measured bound-pass seconds per box: the fast replay
#: re-runs each leaf's pass (in chunks of 64, as the searches batch) and, for leaves with slopes or
#: split multipliers, one more bound of that leaf alone. Measured replay / (seconds per box x
#: (leaves + 1)): 0.26-0.88 on 12 ACAS Xu unsats, 0.50 on sri_resnet_a idx 9382 (bench/README.md,
#: "One wall clock per instance"); 1.0 covers them all. A larger factor only stops searches
#: earlier: the reserve can turn a late verdict into an early timeout, never the reverse
REPLAY_PER_BOX = 1.0
#: seconds always held back for the replay (its setup: fingerprint, objective forms, a sat point's
#: exact evaluation), whatever the search measured
REPLAY_FLOOR_S = 0.25
#: the reserve never exceeds this share of the time the search starts with. 0 by default (lead's
#: decision, session 15): a reserve can only stop a search early, and a search stopped early proves
#: nothing it would not have proved by running on, so it can turn a late verdict into an early
#: timeout but never the reverse (measured: ACAS Xu 1_9 prop_7's sat, found after ~8,500 leaves,
#: missed a 30 s limit with a reserve). The search therefore runs to T minus the floor; the
#: estimate (``replay_estimate``) stays for callers that would rather answer early (a portfolio
#: moving on to its next tool), who set a share
MAX_RESERVE_SHARE = 0.0


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


def count_pass(stats: dict[str, Any], boxes: int, seconds: float) -> None:
    """Record one bound pass of the search over ``boxes`` boxes (the replay-cost estimate's input)."""
    stats["pass_s"] = stats.get("pass_s", 0.0) + seconds
    stats["pass_boxes"] = stats.get("pass_boxes", 0) + boxes


def replay_estimate(stats: dict[str, Any]) -> float:
    """Seconds the checker's replay of the certificate built so far should take: the floor plus
    ``REPLAY_PER_BOX`` x the search's seconds per bounded box x (its leaves + the root, which every
    replay bounds at least once)."""
    per_box = stats.get("pass_s", 0.0) / max(stats.get("pass_boxes", 0), 1)
    return REPLAY_FLOOR_S + REPLAY_PER_BOX * per_box * (stats.get("leaves", 0) + 1)


#: the active reserves (innermost last): stats -> seconds to hold back beyond the search's deadline
_RESERVES: list[Callable[[dict[str, Any]], float]] = []


def late(at: float, deadline: float, stats: dict[str, Any]) -> bool:
    """Whether work ending at ``at`` (a ``time.perf_counter()`` value: now plus the last batch's
    time) would leave less than the active reserve before ``deadline``: the searches' test between
    batches (with no reserve active: ``at > deadline``, as before)."""
    return at + (_RESERVES[-1](stats) if _RESERVES else 0.0) > deadline


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
        """The search's hard limit: what is left minus the replay floor (the rest of the reserve is
        taken between batches, ``reserving``)."""
        return self.left() - REPLAY_FLOOR_S

    @contextmanager
    def reserving(self) -> Iterator[None]:
        """Within the block, the searches' ``late`` holds back the replay estimate beyond the
        floor already subtracted by ``search_time``, at most ``MAX_RESERVE_SHARE`` of the time the
        search starts with."""
        cap = MAX_RESERVE_SHARE * max(self.search_time(), 0.0)
        _RESERVES.append(lambda stats: min(max(replay_estimate(stats) - REPLAY_FLOOR_S, 0.0), cap))
        try:
            yield
        finally:
            _RESERVES.pop()

    def search(self, solve: Callable[..., Any], target: Any, spec: Any, **kw: Any) -> Any:
        """``solve(target, spec, timeout=..., **kw)`` (``bab.solve``'s signature) given what is
        left minus the replay floor, with the reserve active, and stopped at that limit wherever
        it is (``certificates.core.time_limit``): a ``tree.Result`` "timeout" then."""
        from ..certificates.core import OutOfTime, time_limit
        from .tree import Result

        left = self.search_time()
        t = time.perf_counter()
        if left <= 0:
            return Result("timeout", stats={"time": 0.0})
        try:
            with time_limit(time.monotonic() + left), self.reserving():
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
