"""The checked claims every zoo command's ``--certify`` prints, in one place.

- ``gradient_proof``: the model's ``@verified`` gradient proof at its shapes (the compositional
  path, ``proofs.compose``): its obligations derived from the code now, discharged into a cache
  directory (artifacts already there and up to date are reused), then every one replayed by the
  trusted checker. Counted as the checker says: checked, solver-trusted (a solver's ``unsat``
  re-run, no certificate replayed), or not proved (refuted, timed out, missing); never a
  solver-trusted or unfinished obligation as checked. The whole proof runs in a child process under
  a wall-clock budget: past it, the report says so and counts nothing as checked.
- ``float32_epsilon``: a certified bound on |float32 run - real network| over a box of inputs (an
  ``errorbound`` certificate the checker replays; exact CROWN ranges on small graphs, fast CROWN
  ranges on large ones), next to the largest error observed
  on samples of the box.
- ``print_claims``: the two, one line each, as the commands without a robustness question of their
  own print them (``lstm``, ``gru``, ``transformer``, ``autoencoder``, ``vae``, ``fno``): a claim that
  cannot be made (a primitive the error column does not handle, a range that may overflow, a budget
  exceeded) is one line that says NOT and why, never a number.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .. import _outward

__all__ = ["ProofStatus", "announce", "cache_dir", "epsilon_line", "float32_epsilon", "gradient_proof",
           "print_claims", "proof_budget"]


def cache_dir() -> Path:
    """Where the zoo's proof artifacts are cached: ``$TORCHLEAN_PROOF_CACHE``, else
    ``$XDG_CACHE_HOME/torchlean/proofs`` (``~/.cache/torchlean/proofs``)."""
    env = os.environ.get("TORCHLEAN_PROOF_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "torchlean" / "proofs"


def proof_budget(args: Any = None, default: float = 300.0) -> float:
    """Seconds a command's gradient proof may take: ``args.proof_budget`` when the command has
    such a flag, else ``$TORCHLEAN_PROOF_BUDGET``, else ``default``."""
    got = getattr(args, "proof_budget", None)
    if got is None:
        env = os.environ.get("TORCHLEAN_PROOF_BUDGET")
        try:
            got = float(env) if env else default
        except ValueError:
            raise ValueError(f"TORCHLEAN_PROOF_BUDGET={env!r} is not a number of seconds") from None
    return float(got)


@dataclass
class ProofStatus:
    """The outcome of ``gradient_proof``. ``claim``: the model claim's own status as the checker
    gave it ("checked", "trusted", "rejected", "missing", ... or "timed out" / "error" when the proof
    did not finish); the counts are over every obligation (the claim and its node obligations)."""

    name: str
    input_shape: tuple[int, ...]
    claim: str = "timed out"
    obligations: int = 0
    checked: int = 0
    trusted: int = 0
    not_proved: list[str] = field(default_factory=list)
    seconds: float = 0.0
    directory: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the model's gradient claim was fully checked (no solver trust, nothing missing)."""
        return self.claim == "checked"

    def summary(self) -> str:
        """One line: what was checked, what rests on a solver, what is not proved, and the time."""
        head = f"@verified gradient proof of {self.name} at input {list(self.input_shape)} (compositional)"
        if self.claim in ("timed out", "error"):
            why = f": {self.detail}" if self.detail else ""
            return f"{head}: NOT checked, {self.claim} after {self.seconds:.0f} s{why}"
        counts = f"{self.obligations} obligations: {self.checked} checked, {self.trusted} solver-trusted, " \
                 f"{len(self.not_proved)} not proved"
        verdict = {"checked": "checked by the trusted checker",
                   "trusted": "holds if the solvers are right (some obligations solver-trusted)"}.get(
            self.claim, f"NOT checked ({self.claim})")
        more = " ..." if len(self.not_proved) > 4 else ""
        missing = f" [not proved: {', '.join(self.not_proved[:4])}{more}]" if self.not_proved else ""
        return f"{head}: {verdict}; {counts}{missing}; {self.seconds:.1f} s (artifacts in {self.directory})"


def _prove(name: str, build: Callable[[], Any], input_shape: tuple[int, ...], directory: Path,
           solver: str, timeout: float) -> dict[str, Any]:
    from ..proofs.artifacts import check_one, decide, once, up_to_date
    from ..proofs.autograd import exact_floats
    from ..proofs.compose import model_obligations, node_obligations, trace
    from ..proofs.discharge import discharge
    from ..proofs.obligation import DECIDED
    from ..proofs.terms import applies_forward

    # (a forked child that exits after: the cyclic collector is off while the statements' millions of
    # acyclic term objects and node lists are made, each full collection walking them all, and what
    # exists then is frozen out of later collections, which the checker's many small dicts trigger)
    gc.disable()
    try:
        traced = trace(build, input_shape)
        # the node cases whose forward claim is a ``terms`` statement (matmul: millions of term nodes)
        # are derived while the solver works on the others' fixed-shape claims (softmax's forward at
        # 64 entries: ~40 s of certificate search), which are derived first
        derived: dict[str, list[Any]] = {}
        later = []
        for key, fields, _ in traced[2]:
            prim = key.split(".n")[0]
            if key in derived or any(k == key for k, _ in later):
                continue
            if applies_forward(prim, fields):
                later.append((key, fields))
                continue
            with exact_floats():
                derived[key] = node_obligations(prim, key, fields)

        replayed: set[str] = set()

        def derive_one() -> bool:
            """One deferred node case derived, else one derived claim the checker decides replayed
            (its verdict kept by ``once`` for the discharge and check below)."""
            if later:
                key, fields = later.pop(0)
                with exact_floats():
                    derived[key] = node_obligations(key.split(".n")[0], key, fields)
                return True
            for ob in (ob for obs in derived.values() for ob in obs):
                if ob.kind in DECIDED and ob.name not in replayed:
                    replayed.add(ob.name)
                    decide(ob)
                    return True
            return False

        first = {ob.name: ob for obs in derived.values() for ob in obs if ob.kind not in DECIDED}
        first = {n: ob for n, ob in first.items() if not up_to_date(directory, ob)}
        with once():  # each statement replayed once: by discharge, or by the model claim's own check
            if first:
                discharge(list(first.values()), directory, solver=solver, timeout=timeout, progress=False,
                          idle=derive_one)
            obs = list(model_obligations(name, build, input_shape, traced=traced, derived=derived))
            gc.enable()
            gc.freeze()
            todo = [ob for ob in obs if ob.name not in first and not up_to_date(directory, ob)]
            if todo:
                discharge(todo, directory, solver=solver, timeout=timeout, progress=False)
            outcomes = [check_one(directory, ob) for ob in obs]
    finally:
        gc.enable()
    out: dict[str, Any] = {"obligations": len(obs) - 1, "checked": 0, "trusted": 0, "not_proved": []}
    for ob, o in zip(obs, outcomes):
        if ob.kind == "composition":
            out["claim"], out["detail"] = o.status, o.detail
            continue  # the claim's own status is reported, its node obligations counted below
        if o.status == "checked":
            out["checked"] += 1
        elif o.status == "trusted":
            out["trusted"] += 1
        else:
            out["not_proved"].append(f"{ob.name} ({o.status})")
    return out


def _child(conn: Any, fn: Callable[..., Any], *args: Any) -> None:
    os.setpgrp()  # its own process group: a budget kill reaches the solver processes it starts too
    try:
        conn.send(fn(*args))
    except Exception as e:  # noqa: BLE001 - reported in one line by the parent
        conn.send({"error": f"{type(e).__name__}: {e}"})
    conn.close()


def _budgeted(fn: Callable[..., Any], args: tuple[Any, ...], budget: float) -> tuple[Any, float]:
    """(``fn(*args)``, seconds) run in a forked child that gets ``budget`` seconds (then it and its
    process group are killed and the result is None); an exception comes back as {"error": ...}."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    proc = ctx.Process(target=_child, args=(child, fn, *args))
    proc.start()
    child.close()
    got = parent.recv() if parent.poll(budget) else None
    seconds = time.perf_counter() - t0
    if got is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # killed before it made its own group
            proc.kill()
    proc.join(5)
    parent.close()
    return got, seconds


def announce(args: Any, what: str) -> None:
    """``progress.stage`` for a zoo command: ``<command>: <what>`` on stderr before a long step
    (``--no-progress`` silences it), so that a ``--certify`` run in a pipe is not a silent minute."""
    from ..progress import stage

    stage(f"{getattr(args, 'command', 'torchlean')}: {what}", getattr(args, "progress", None))


def gradient_proof(name: str, build: Callable[[], Any], input_shape: Sequence[int],
                   directory: Path | None = None, *, solver: str = "cvc5", timeout: float = 180.0,
                   budget: float = 300.0) -> ProofStatus:
    """Prove (compositionally) that the runtime's backward pass of ``build()`` at ``input_shape`` is
    the derivative of its spec forward, as ``@verified(input_shape=...)`` does: derive the
    obligations, discharge those without an up-to-date artifact in ``directory`` (default
    ``cache_dir()``; ``timeout`` seconds each), replay all of them through the checker. The whole
    run gets ``budget`` seconds (then it is killed and reported as timed out)."""
    directory = Path(directory) if directory is not None else cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    status = ProofStatus(name, tuple(int(s) for s in input_shape), directory=str(directory))
    got, status.seconds = _budgeted(_prove, (name, build, status.input_shape, directory, solver, timeout),
                                    budget)
    if got is None:
        status.detail = f"budget {budget:g} s"
        return status
    if "error" in got:
        status.claim, status.detail = "error", got["error"]
        return status
    status.claim, status.detail = got["claim"], got["detail"]
    status.obligations, status.checked, status.trusted = got["obligations"], got["checked"], got["trusted"]
    status.not_proved = got["not_proved"]
    return status


def _exact(v: Any) -> Fraction:
    return v if isinstance(v, (Fraction, int)) else Fraction(float(v))


def float32_epsilon(net: Any, x: np.ndarray, box: Sequence[tuple[Any, Any]] | None = None,
                    samples: int = 500) -> tuple[float, float]:
    """(certified ε, observed error): the largest per-output bound on |float32 run - real network|
    over ``box`` (one (lo, hi) per input entry; default the unit box [0, 1]^n, the digits' pixel
    range), from an ``errorbound`` certificate the checker replays (ranges:
    ``floats.default_ranges``: the exact engine's CROWN up to 1,000 nonlinear elements, else IBP
    met with the fast engine's CROWN), and the largest error seen on ``samples`` random points of
    the box (against the binary64 run, whose own certificate is not made here:
    ``observed_error(reference=False)``). ``x``: one input of the network's shape (traced
    faithfully, as ``tl.verify`` does: a model that reads its input in Python or has a layer in
    training mode raises ``TraceError`` / ``ValueError``, never gets one path's ε). Raises if the
    checker rejects the certificate (no bound is ever printed without it)."""
    from ..certificates import check
    from ..floats import bound_certificate, epsilons, observed_error
    from ..floats.errorbound import native_format
    from ..verify.api import _graph, _other_point

    n = int(np.prod(np.shape(x)))
    box = [(Fraction(0), Fraction(1))] * n if box is None else [
        (_exact(lo), _exact(hi)) for lo, hi in box]
    if len(box) != n:
        raise ValueError(f"float32_epsilon: box has {len(box)} intervals for an input of {n} entries")
    # the model's function, not one traced path: a faithful trace (``tl.verify``'s), compared with
    # the trace at a second point of the box and with the model run there; a model that reads its
    # input in Python (``if float(x.sum()) > 1``) is refused, never given the traced branch's ε
    # (audit32: a branch taken elsewhere in the box erred 30x the certified bound)
    xa = np.asarray(np.asarray(x, dtype=np.float32), dtype=np.float64)
    graph = _graph(net, xa, _other_point(xa, tuple(lo for lo, _ in box), tuple(hi for _, hi in box)))
    cert = bound_certificate(graph, box, "binary32")
    verdict = check(cert)
    if not verdict.ok:  # never print a bound the checker did not accept
        raise RuntimeError(f"the float32 error certificate was rejected: {verdict.reason}")
    native_format(graph, "binary32")  # (a float16 model's own run is not a binary32 run: audit64)
    observed = observed_error(graph, box, n=samples, reference=False).max_error.max()
    # ε as a float >= the checked one (float() rounds to nearest, possibly below: audit41)
    return _outward.float_out(max(epsilons(cert)), "up"), float(observed)


def epsilon_line(net: Any, x: np.ndarray, box: Sequence[tuple[Any, Any]] | None, what: str,
                 samples: int = 500, budget: float = 300.0) -> str:
    """One line: ``float32_epsilon``'s certified bound for ``what`` (e.g. "the autoencoder on the data
    box [0, 1]^64") next to the observed error, or, when no certificate can be made in ``budget``
    seconds or the checker rejects it, "NOT certified" and why (no number is printed without the
    checker's acceptance). It runs in a child process, so the budget can stop it."""
    from .._cli import one_line

    head = f"float32 rounding error of {what}"
    got, seconds = _budgeted(float32_epsilon, (net, x, box, samples), budget)
    if got is None:
        return f"{head}: NOT certified, timed out after {seconds:.0f} s (budget {budget:g} s)"
    if isinstance(got, dict):  # an unsupported primitive, an overflow, a rejection: said, not counted
        return f"{head}: NOT certified ({one_line(got['error'])})"
    eps, observed = got
    return (f"{head}: |float32 - real| <= {_outward.up(eps, 3)} per output (errorbound certificate "
            "replayed by the "
            f"checker; observed {observed:.3g} on {samples} samples; {seconds:.1f} s)")


def print_claims(args: Any, net: Any, x: np.ndarray, box: Sequence[tuple[Any, Any]] | None, what: str,
                 name: str, build: Callable[[], Any], input_shape: Sequence[int], *, samples: int = 500,
                 note: str | None = None) -> None:
    """Print a command's checked claims: the float32 ε of ``net`` (moved to float32 on the CPU, as
    the checker's float column is binary32) on ``box`` (``epsilon_line``), then ``note`` (what
    the claims do not cover, if anything), then the ``@verified`` gradient proof of ``build()`` at
    ``input_shape``; each of the two gets the command's budget (``proof_budget(args)``)."""
    if getattr(args, "device", "cpu") != "cpu" or getattr(args, "dtype", "float32") != "float32":
        net = net.to(dtype="float32", device="cpu")
    if hasattr(net, "eval"):
        net.eval()
    announce(args, f"bounding the float32 rounding error (budget {proof_budget(args):g} s)")
    print(epsilon_line(net, x, box, what, samples, proof_budget(args)))
    if note:
        print(note)
    announce(args, f"proving the @verified gradient of {name} (budget {proof_budget(args):g} s)")
    print(gradient_proof(name, build, input_shape, budget=proof_budget(args)).summary())
