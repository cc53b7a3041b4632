"""Independent tasks in parallel: local worker processes, or tasks on a Ray cluster, one interface.

``verify run -j N [--ray ADDRESS]`` and ``proofs discharge -j N [--ray ADDRESS]`` hand their
instances / obligations to a ``Pool`` and consume results as they finish, writing them on this
machine (atomically, resumable: see ``verify.runner`` and ``proofs.discharge``):

- without ``ray``: ``jobs`` spawned worker processes on this machine (a fresh interpreter each:
  forking a process with BLAS threads can hang), which exit when this process is gone;
- ``ray="local"``: a Ray instance started here (``jobs`` CPUs) on first use and kept until this
  process exits (a later ``Pool`` reuses it): Ray's ``shutdown`` leaves its C++ threads (gRPC
  pollers, the metrics harvester) running over freed state (ray-project/ray#31145, #36885), so
  this process never shuts down an instance it goes on running next to;
- ``ray="auto"`` or ``"HOST:PORT"`` / ``"ray://HOST:PORT"``: an existing cluster
  (``ray start --head`` on one machine, ``ray start --address=HOST:PORT`` on the others). Every
  node must import the same torchlean and see the input files at the same absolute paths (the
  callers pass absolute paths); results come back to this process, which alone writes files.

Ray is an optional extra (``pip install 'torchlean[ray]'``); it is imported only when asked for.

Example::

    from torchlean.pool import Pool
    with Pool(jobs=4) as pool:            # or Pool(jobs=4, ray="local")
        for i, value in pool.map_unordered(pow, [(2, 10), (3, 3)]):
            print(i, value)               # 1 27, then 0 1024 (in finishing order)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

__all__ = ["Pool", "PoolError"]


class PoolError(RuntimeError):
    """The pool cannot start (Ray missing, a cluster that cannot be reached); one line."""


def _watch_parent(parent: int) -> None:
    """In a local worker: exit when the parent run is gone (killed), not finish its queue alone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class Pool:
    """``jobs`` workers here, or a Ray cluster at ``ray``; a context manager (leaving it cancels
    what has not finished: a Ctrl-C leaves no worker behind)."""

    def __init__(self, jobs: int = 1, ray: str | None = None) -> None:
        self.jobs, self.address = max(1, jobs), ray
        self._refs: list[Any] = []
        if ray is None:
            import multiprocessing

            self._exec = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_watch_parent, initargs=(os.getpid(),))
            return
        self._ray = _import_ray()
        self._exec = None
        if not self._ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            try:
                if ray == "local":
                    self._ray.init(num_cpus=self.jobs, **kw)
                else:
                    _reachable(ray)
                    self._ray.init(address=ray, **kw)
            except Exception as e:  # noqa: BLE001 - Ray raises many kinds; the user needs one line
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise PoolError(f"cannot start Ray at {ray!r}: {why}") from None
        self._remote: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run ``fn(*args)`` on a worker; ``fn`` must be importable there (a module-level function)."""
        if self._exec is not None:
            return self._exec.submit(fn, *args)
        return self._task(fn, *args).future()

    def _task(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A Ray task running ``fn(*args)``: its object ref, kept for ``close`` to cancel."""
        if fn not in self._remote:
            self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=0)(fn)
        ref = self._remote[fn].remote(*args)
        self._refs.append(ref)
        return ref

    def map_unordered(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]
                      ) -> Iterator[tuple[int, Any]]:
        """``(i, fn(*calls[i]))`` for every call, in the order they finish (an error in one is
        raised here, when it is reached)."""
        if self._exec is None:  # Ray: waited on here (no completion callbacks from Ray's threads)
            refs = {self._task(fn, *c): i for i, c in enumerate(calls)}
            while refs:
                done, _ = self._ray.wait(list(refs), num_returns=1)
                for r in done:
                    yield refs.pop(r), self._ray.get(r)
            return
        running = {self._exec.submit(fn, *c): i for i, c in enumerate(calls)}
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                yield running.pop(f), f.result()

    def close(self) -> None:
        """Cancel what has not finished (a Ray instance started here stays up: module docstring)."""
        if self._exec is not None:
            self._exec.shutdown(wait=False, cancel_futures=True)
            return
        refs = self._refs
        done = self._ray.wait(refs, num_returns=len(refs), timeout=0)[0] if refs else []
        for ref in set(refs) - set(done):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - finished meanwhile, or gone
                pass
        self._refs.clear()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _reachable(address: str, seconds: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nobody listens at (Ray itself retries for minutes); "auto" and
    addresses without a port are left to Ray."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as e:
        raise OSError(f"nothing answers at {host}:{port} ({e.strerror or e})") from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PoolError("--ray needs Ray: pip install 'torchlean[ray]'") from None
    return ray
