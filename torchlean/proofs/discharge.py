"""Discharging obligations: solver, certificate search, self-check, artifact; in parallel.

Each obligation runs in its own process (a solver that ignores its time limit or crashes is
killed and reported, never counted as proved). For ``unsat`` the certificate search builds a tree
for the trusted checker; if the search fails, the artifact says so and the claim is recorded as
solver-trusted, naming the solver and the rules of its proof.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import ignore_temps, sweep_temps
from ..certificates import check as replay
from .artifacts import FORMAT, decide, path_for, write_atomic
from .obligation import DECIDED, Obligation, refutation_kind
from .solve import SolverRun, solve


@dataclass
class Report:
    name: str
    status: str  # proved | trusted | refuted | unknown | timeout | error
    solver_seconds: float = 0.0
    search_seconds: float = 0.0
    message: str = ""


def _search(ob: Obligation, timeout: float) -> tuple[dict[str, Any] | None, str, float]:
    """(tree, why not, seconds): a refutation tree the trusted checker accepts, or None."""
    from .prove import NoProof, certificate_tree

    t0, tree, why = time.perf_counter(), None, ""
    try:
        tree = certificate_tree(ob.smtlib, timeout=timeout)
    except NoProof as e:
        why = str(e)
    except Exception as e:  # noqa: BLE001 - the search is untrusted; failing it only costs a check
        why = f"{type(e).__name__}: {e}"
    if tree is not None and not replay({"kind": refutation_kind(ob.kind), "tree": tree,
                                        "statement": ob.smtlib}).ok:
        tree, why = None, "self-check rejected the certificate found"
    return tree, why[:500], round(time.perf_counter() - t0, 6)


def artifact_for(ob: Obligation, solver: str, timeout: float, found: tuple[Any, str, float] | None,
                 run: SolverRun | None) -> dict[str, Any]:
    """The artifact from a certificate search result and a solver run (either may be missing:
    a solver killed for time leaves ``run`` None)."""
    status = run.status if run is not None else "timeout"
    out: dict[str, Any] = {
        "format": FORMAT,
        "obligation": {"name": ob.name, "kind": ob.kind, "subject": ob.subject, "hash": ob.hash,
                       "statement": ob.statement, "assumptions": list(ob.assumptions),
                       "smtlib": ob.smtlib},
        "solver": {"name": solver, "version": run.version if run else "",
                   "options": run.options if run else {}, "result": status,
                   "seconds": round(run.seconds, 6) if run else None,
                   "message": (run.message if run else "killed at the time limit")[:500]},
    }
    tree, why, secs = found if found is not None else (None, "not searched", 0.0)
    out["search_seconds"] = secs
    if status == "sat":
        from .counterexample import explain

        out["result"], out["counterexample"] = "sat", explain(ob.smtlib, run.model)  # type: ignore[union-attr]
        return out
    if run is not None and status == "unsat" and run.proof:
        out["solver_proof"] = {"format": run.proof_format, "zlib_base64": run.proof}
    cert: dict[str, Any] = {"kind": "refutation", "tree": tree, "trusted": []}
    if tree is None and status == "unsat":
        # not replayed here: name the solver's proof rules, each counted once
        cert["trusted"] = [f"{solver}:{r}" for r in sorted(run.rules)] or [f"{solver}:unsat"]  # type: ignore[union-attr]
        out["certificate_search"] = why
    # proved: by the solver (unsat) or, whatever the solver said, by a certificate the checker replays
    out["result"] = "unsat" if (status == "unsat" or tree is not None) else status
    if tree is None and status != "unsat":
        out["certificate_search"] = why
    out["certificate"] = cert
    return out


#: seconds the solver gets, for the record, on a claim whose certificate was found and replayed
#: (its answer decides nothing then; z3 took the whole --timeout on layer_norm at 4 features)
RECORD_SECONDS = 2.0
#: share of the per-obligation time the certificate search may use; the solver gets the rest
SEARCH_SHARE = 0.7


def hard_limit(timeout: float) -> float:
    """Seconds after which an obligation's process (search and solver) is killed: the time limit
    plus a short grace for sending the answer back."""
    return timeout + min(5.0, 0.25 * timeout)


def composition_artifact(ob: Obligation) -> dict[str, Any]:
    """The artifact of a model's chain-rule claim or a linear primitive's adjointness (both decided
    by the checker at check time): only its hash and text are ever read back."""
    return {"format": FORMAT,
            "obligation": {"name": ob.name, "kind": ob.kind, "subject": ob.subject, "hash": ob.hash,
                           "statement": ob.statement, "assumptions": list(ob.assumptions),
                           "smtlib": ob.smtlib},
            "result": "unsat", "certificate": {"kind": ob.kind, "checked_at_check_time": True}}


def _child(conn: Any, ob: Obligation, solver: str, timeout: float, search: bool) -> None:
    try:
        t0 = time.monotonic()
        found = _search(ob, SEARCH_SHARE * timeout) if search else None
        conn.send(("search", found))  # kept by the parent even if the solver then hangs
        left = max(0.5, timeout - (time.monotonic() - t0))
        proved = found is not None and found[0] is not None
        if proved:  # proved by a replayed certificate: the solver's answer is only a record, not
            left = min(left, RECORD_SECONDS)  # waited for, and its proof is not asked for (0.75 s of
            # z3's proof printing on a 2x8 matmul, against 0.02 s for the answer alone)
        run = solve(ob.smtlib, solver, left, proofs=not proved)
        conn.send(("final", artifact_for(ob, solver, timeout, found, run)))
    except Exception as e:  # noqa: BLE001
        conn.send(("final", {"result": "error", "message": f"{type(e).__name__}: {e}"}))
    conn.close()


def received(ob: Obligation, art: Any) -> dict[str, Any]:
    """A Ray task's artifact, as this process accepts it: made on another interpreter, perhaps one
    running another torchlean (a worker started before an edit, another node's install), so it
    must be about ``ob`` as derived here (its hash) and a certificate in it must replay through
    this process's checker on ``ob.smtlib``; else an error, never written nor reported proved
    (audit56: ``discharge --ray`` printed "proved with a certificate" for a worker's tree this
    checker rejects). A tree-less ``unsat`` stays solver-trusted (``check`` re-runs the solver)."""
    if not isinstance(art, dict) or art.get("result") != "unsat":
        return art if isinstance(art, dict) else {"result": "error", "message": "worker sent no artifact"}
    try:
        stated, tree = art["obligation"]["hash"], art["certificate"]["tree"]
        ok_shape = isinstance(art["solver"], dict)
    except (KeyError, TypeError):
        stated, tree, ok_shape = None, None, False
    if stated != ob.hash or not ok_shape:
        return {"result": "error", "message": "the worker's artifact is not about this obligation as derived "
                                              "here (does the worker run another torchlean or other code?)"}
    if tree is not None:
        v = replay({"kind": refutation_kind(ob.kind), "tree": tree, "statement": ob.smtlib})
        if not v.ok:
            why = f"{v.reason[:200]} (does the worker run another torchlean?)"
            return {"result": "error", "message": f"the worker's certificate does not replay here: {why}"}
    return art


def _report(ob: Obligation, art: dict[str, Any]) -> Report:
    res = art.get("result", "error")
    solver = art.get("solver", {})
    status = {"unsat": "proved", "sat": "refuted"}.get(res, res)
    if res == "unsat" and art["certificate"]["tree"] is None:
        status = "trusted"
    msg = art.get("counterexample") or art.get("certificate_search") or art.get("message", "")
    if res == "unsat" and solver.get("result") != "unsat":
        msg = f"certificate checked; {solver.get('name')} said {solver.get('result')}"
    return Report(ob.name, status, solver.get("seconds") or 0.0, art.get("search_seconds", 0.0), msg)


class _Job:
    """One obligation's process (search, then solver) and what it has sent so far; ``poll`` returns
    the artifact once there is one: its answer, a crash, or a kill past the hard limit."""

    def __init__(self, ob: Obligation, solver: str, timeout: float, search: bool) -> None:
        self.ob, self.solver, self.timeout = ob, solver, timeout
        parent, child = mp.get_context("fork").Pipe(duplex=False)
        self.proc = mp.get_context("fork").Process(target=_child, args=(child, ob, solver, timeout, search),
                                                   daemon=True)
        self.proc.start()
        child.close()
        self.conn, self.started, self.found = parent, time.monotonic(), None

    def poll(self) -> dict[str, Any] | None:
        ob, proc, conn = self.ob, self.proc, self.conn
        art = None
        while conn.poll():
            try:
                tag, payload = conn.recv()
            except EOFError:
                art = {"result": "error", "message": "worker died"}
                break
            if tag == "search":
                self.found = payload
            else:
                art = payload
                break
        if art is None and not proc.is_alive() and not conn.poll():
            art = {"result": "error", "message": f"solver process crashed ({proc.exitcode})"}
            if self.found is not None:
                art = artifact_for(ob, self.solver, self.timeout, self.found, None)
        limit = hard_limit(self.timeout)
        if art is None and time.monotonic() - self.started > limit:
            proc.kill()
            proc.join()
            art = artifact_for(ob, self.solver, self.timeout, self.found, None)
            art["solver"]["message"] = f"killed after {limit:.3g} s (--timeout {self.timeout:g})"
        if art is not None:
            proc.join(5)
        return art

    def kill(self) -> None:
        self.proc.kill()


def discharge_one(ob: Obligation, solver: str = "cvc5", timeout: float = 60.0, search: bool = True
                  ) -> dict[str, Any]:
    """One obligation's artifact (its own process, killed past ``hard_limit(timeout)``): the unit
    of work a Ray task runs (``discharge(..., ray=ADDRESS)``); writes nothing."""
    job = _Job(ob, solver, timeout, search)
    try:
        while (art := job.poll()) is None:
            time.sleep(0.01)
        return art
    finally:
        job.kill()


def _local(pending: list[Obligation], solver: str, jobs: int, timeout: float, search: bool,
           finish: Any, idle: Any = None) -> None:
    """At most ``jobs`` obligation processes at a time on this machine, ``finish(ob, artifact)``
    for each as it ends (a Ctrl-C kills the running ones); between polls ``idle()`` (work of its
    own, False when it has none), else a 10 ms sleep."""
    pending, running = list(pending), []
    try:
        while pending or running:
            while pending and len(running) < max(1, jobs):
                running.append(_Job(pending.pop(0), solver, timeout, search))
            still = []
            for job in running:
                art = job.poll()
                if art is None:
                    still.append(job)
                else:
                    finish(job.ob, art)
            running = still
            if running and not (idle and idle()):
                time.sleep(0.01)
    finally:
        for job in running:  # interrupted: stop what we started
            job.kill()


def discharge(
    obligations: list[Obligation], directory: Path, *, solver: str = "cvc5", jobs: int = 1,
    timeout: float = 60.0, search: bool = True, progress: bool | None = None, ray: str | None = None,
    idle: Callable[[], bool] | None = None,
) -> list[Report]:
    """Discharge every obligation (``jobs`` processes); write artifacts for ``unsat`` results.

    ``timeout`` is per obligation and hard: the certificate search and the solver run in one child
    process, killed ``hard_limit(timeout)`` seconds after it started (a certificate already found
    is kept; the claim is then checked, not solver-trusted). ``ray``: run the obligations as tasks
    on that Ray cluster (``"local"`` starts one here; ``torchlean.pool``) instead of local
    processes; artifacts are written here, as they come back. ``idle``: the caller's own work,
    one piece per call (False when none is left), done while the local solver processes run (what
    is left when they end stays the caller's)."""
    from ..pool import Pool
    from ..progress import bar as progress_bar

    reports: list[Report] = []
    directory.mkdir(parents=True, exist_ok=True)
    decided = [o for o in obligations if o.kind in DECIDED]

    def settle() -> bool:
        """Settle one claim the checker decides (no solver: a model's chain rule, the ``terms``
        kinds, ...), recorded once it passes; False when none is left. Called between polls of
        the solver processes, so that their wait and the checker's replays overlap."""
        if not decided:
            return False
        ob = decided.pop(0)
        v = decide(ob)  # the statement derived now, under the obligation's kind
        if v.ok:
            write_atomic(path_for(directory, ob), composition_artifact(ob))
        failed = "error" if ob.kind == "composition" else "refuted"
        reports.append(Report(ob.name, "proved" if v.ok else failed, message=v.reason))
        return True

    def work() -> bool:
        return settle() or (idle is not None and idle())

    if ray is not None:
        while settle():
            pass
    pending = [o for o in obligations if o.kind not in DECIDED]
    sweep_temps(directory)  # temps of a discharge killed with -9 (their writer is gone)
    ignore_temps(directory)  # and `git add proofs/` never picks one up mid-write
    bar = progress_bar(total=len(pending), desc=f"discharge ({solver})", unit="ob", enabled=progress)

    def finish(ob: Obligation, art: dict[str, Any]) -> None:
        if art.get("result") == "unsat":
            write_atomic(path_for(directory, ob), art)
        reports.append(_report(ob, art))
        bar.update(1)

    try:
        if ray is not None:
            with Pool(jobs, ray=ray) as pool:
                calls = [(ob, solver, timeout, search) for ob in pending]
                for i, art in pool.map_unordered(discharge_one, calls):
                    finish(pending[i], received(pending[i], art))
        else:
            _local(pending, solver, jobs, timeout, search, finish, work)
        while settle():
            pass
    finally:
        bar.close()
    order = {ob.name: i for i, ob in enumerate(obligations)}
    return sorted(reports, key=lambda r: order[r.name])
