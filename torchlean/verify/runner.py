"""Run a benchmark CSV (VNN-COMP ``instances.csv``: onnx,vnnlib,timeout; or an ``expected.csv`` with
a header naming onnx, vnnlib, expected and any comparison columns) and write a results CSV: the
verdict, solve, checker replay and wall times, the tree size, and whether it agrees with the
expected verdict. Paths are relative to the CSV's folder. Each instance's timeout bounds its wall
clock, loading and replay included (``run_instance``).

``jobs`` > 1 runs instances in that many worker processes (each instance keeps its own deadline);
the rows come out in the instance list's order either way. A worker's row (a process here, or a
Ray node) is kept only when the digests it records are this machine's files' and code's
(``_as_here``, audit43); otherwise it is an ``error``. The results file is rewritten atomically
after every finished instance, so an interrupted run keeps what it finished, and a rerun with the
same ``out`` skips the instances already there (keyed by onnx, vnnlib and timeout; ``force``
reruns them). A last row cut short (a file not written by this module) is ignored.

A row is reused only for the very files and code that made it (audit36): each row records the
sha256 of the network's and the property's bytes as read (``onnx_sha256``, ``vnnlib_sha256``: the
same before and after the run, else the row is an ``error``) and a digest of torchlean's own
sources (``torchlean``); a rerun reruns a row whose files now hash otherwise (a file replaced, the
same names listed from another folder), one made by other code (a fix to the importer or the
checker), and a sat/unsat row whose ``check`` is not the checker's "accepted" (a row this module
never writes: an edited file). A results file is the run's record, not a certificate.

An instance whose files cannot be read or are not a network and property torchlean takes (a
missing file, a malformed model) does not stop the list: its row's ``result`` is ``error`` with the
one-line reason in ``check`` (``run_one``), the other instances run, and a rerun tries it again
(``error`` is not a verdict)."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

from .._cli import CliError, check_timeout
from .._files import InputFileError, atomic_write_text, read_input
from ..certificates.bound_graph import Unsupported
from ..certificates.bounds import replay_mode
from ..certificates.property import PropertyError
from ..pool import Pool
from ..progress import LOGGER as PROGRESS
from ..progress import stdout_handler
from .network import InputError

#: one line per finished instance (``verify run``'s report), on stdout unless the application
#: configured the logger's handlers; the "skipped" note goes to ``torchlean.progress`` (stderr)
RESULTS = logging.getLogger("torchlean.verify.run")
if not RESULTS.handlers:
    RESULTS.addHandler(stdout_handler())
    RESULTS.setLevel(logging.INFO)
    RESULTS.propagate = False

FIELDS = [
    "onnx",
    "vnnlib",
    "timeout",
    "expected",
    "result",
    "solve_s",
    "check_s",
    "wall_s",
    "check",
    "mode",
    "boxes",
    "leaves",
    "agree",
    "onnx_sha256",
    "vnnlib_sha256",
    "torchlean",
]
#: the columns that bind a row to the bytes and the code that made it (``_current``)
BINDING = ("onnx_sha256", "vnnlib_sha256", "torchlean")


#: the verdicts a finished row's ``result`` holds (a row with another is run again)
VERDICTS = ("sat", "unsat", "unknown", "timeout")
#: an instance's bad input (the errors ``verify``'s single command answers with exit 2, and files
#: that cannot be read): its row is an ``error``, the list goes on (``run_one``)
BAD_INPUT = (InputError, InputFileError, PropertyError, Unsupported, OSError, UnicodeError)
#: the ``result`` of an instance that could not be run (bad input: ``run_one``); not a verdict
ERROR = "error"
#: the verdicts an ``expected`` column may hold (empty: not known)
EXPECTED = ("", "sat", "unsat", "unknown", "timeout")
#: the largest instance list read (bytes)
MAX_CSV_BYTES = 16 * 1024 * 1024


def read_instances(path: str | Path) -> list[dict[str, str]]:
    """The rows of an instance list, validated: comma-separated UTF-8 (a BOM is dropped), at least
    the columns onnx and vnnlib (a header row must start with them), a timeout that is a finite
    number of seconds > 0, an ``expected`` verdict from ``EXPECTED``. InputError naming the line
    otherwise."""
    try:
        text = read_input(path, MAX_CSV_BYTES, what="instance list")
    except ValueError as e:  # (missing, not a regular file, too big, not UTF-8)
        raise InputError(str(e)) from None
    try:
        rows = [
            (n, [c.strip() for c in r])
            for n, r in enumerate(csv.reader(io.StringIO(text)), start=1)
            if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")
        ]
    except csv.Error as e:
        raise InputError(f"{path}: not a CSV file ({e})") from None
    head = None
    if rows and [c.lower() for c in rows[0][1][:2]] == ["onnx", "vnnlib"]:
        head = [c.lower() for c in rows.pop(0)[1]]
        if len(set(head)) != len(head) or "" in head:
            raise InputError(f"{path}:1: header has empty or repeated column names")
    elif rows and not rows[0][1][0].lower().endswith((".onnx", ".onnx.gz")) and len(rows[0][1]) > 1:
        raise InputError(
            f"{path}:{rows[0][0]}: a header row must start with onnx,vnnlib "
            f"(got {','.join(rows[0][1][:3])!r})"
        )
    out = []
    for line, r in rows:
        if len(r) < 2 or not r[0] or not r[1]:
            sep = next((c for c in ";\t|" if c in ",".join(r)), None)
            hint = f" (found {sep!r}: columns must be separated by commas)" if sep else ""
            raise InputError(f"{path}:{line}: expected the columns onnx,vnnlib[,timeout]{hint}")
        if head is not None:
            if len(r) > len(head):
                raise InputError(f"{path}:{line}: {len(r)} columns, the header names {len(head)}")
            row = dict(zip(head, r))
        else:
            if len(r) > 3:
                raise InputError(f"{path}:{line}: expected onnx,vnnlib,timeout, got {len(r)} columns")
            row = {"onnx": r[0], "vnnlib": r[1], "timeout": r[2] if len(r) > 2 else ""}
        if row.get("timeout"):
            try:
                check_timeout(row["timeout"], "timeout")
            except CliError as e:
                raise InputError(f"{path}:{line}: {e}") from None
        exp = row.get("expected", "")
        if exp.lower() not in EXPECTED:
            raise InputError(
                f"{path}:{line}: expected verdict {exp!r} is not one of sat, unsat, unknown, timeout"
            )
        if "expected" in row:
            row["expected"] = exp.lower()
        out.append(row)
    return out


def run_instance(
    net_path: Path, prop_path: Path, timeout: float, method: str = "crown", progress: bool = False,
) -> dict[str, Any]:
    """One instance as the CLI runs it: ``timeout`` bounds its wall clock from the call (loading,
    search, and the checker's replay of the certificate: ``budget``); a verdict the replay could not
    confirm within it, or any answer later than it, is "timeout" (``wall_s``: the wall time)."""
    from .bab import solve
    from .budget import Budget
    from .table import RUNTIME_CHECK_S, load_instance, replay_result, runtime_refutes, runtime_unchecked

    clock = Budget(timeout, start=time.monotonic())
    target, spec = load_instance(net_path, prop_path, runtime_check=clock.left() > RUNTIME_CHECK_S)
    res = clock.search(solve, target, spec, method=method, progress=progress)
    out: dict[str, Any] = {
        "result": res.verdict,
        "solve_s": f"{res.stats.get('time', 0):.3f}",
        "boxes": res.stats.get("boxes", 0),
        "leaves": res.stats.get("leaves", 0),
        "check_s": "",
        "check": "",
        "mode": "",
    }
    if res.cert is not None:
        mode = replay_mode(res.cert, target.bg)  # the caller's choice, within the instance's clock
        v, check_s = replay_result(res, target, spec, mode, clock.end)  # (or the root check's)
        out["check_s"] = f"{check_s:.3f}"
        out["check"] = "accepted" if v.ok else f"REJECTED: {v.reason}"
        out["mode"] = mode if res.verdict == "unsat" else "exact"
        if not v.ok:
            out["result"] = "timeout" if clock.left() <= 0 else "unknown"
            if clock.left() <= 0:
                out["check"] = f"not finished: {v.reason}"
    if res.cert is None and out["result"] in ("sat", "unsat"):  # (never a verdict nothing checked)
        out["result"], out["check"] = "unknown", "no certificate to check"
    why = runtime_refutes(target, res.x) if out["result"] == "sat" and res.x is not None else None
    if why is not None:  # (judged on the import's reading of the network, which is not the file's)
        out["result"], out["check"] = "unknown", f"REFUTED by onnxruntime: {why}"
    if clock.left() < 0:  # (an answer past the timeout is no answer)
        out["result"] = "timeout"
    note = runtime_unchecked(target) if out["result"] in ("sat", "unsat") else None
    if note is not None:  # (audit30: said where the verdict is, as the CLI says it)
        out["check"] = f"{out['check']}; {note}" if out["check"] else note
    out["wall_s"] = f"{timeout - clock.left():.3f}"
    return out


def run_one(
    net_path: Path, prop_path: Path, timeout: float, method: str = "crown", progress: bool = False,
) -> dict[str, Any]:
    """``run_instance``, with bad input (``BAD_INPUT``: a missing or unreadable file, a model or
    property torchlean does not take) returned as an ``error`` row naming the file instead of
    raised, so that one instance does not stop a list. A bug still raises."""
    from .._cli import one_line

    before = (file_digest(net_path), file_digest(prop_path))
    try:
        r = run_instance(net_path, prop_path, timeout, method, progress)
    except BAD_INPUT as e:
        reason = one_line(e) or type(e).__name__
        if isinstance(e, OSError) and e.filename and str(e.filename) not in reason:
            reason = f"{e.filename}: {e.strerror or reason}"
        return {"result": ERROR, "solve_s": "", "check_s": "", "wall_s": "", "check": f"error: {reason}",
                "mode": "", "boxes": "", "leaves": ""}
    after = (file_digest(net_path), file_digest(prop_path))
    if None in before or before != after:  # (the verdict is about bytes no longer there)
        moved = [str(p) for p, a, b in zip((net_path, prop_path), before, after) if a is None or a != b]
        return {**r, "result": ERROR, "check": f"error: {', '.join(moved)} changed during the run",
                "mode": "", "agree": ""}
    return {**r, "onnx_sha256": after[0], "vnnlib_sha256": after[1], "torchlean": source_digest()}


def file_digest(path: str | Path) -> str | None:
    """The sha256 (hex) of a regular file's bytes; None for anything else or an unreadable file
    (opened without blocking: a FIFO named in a list must not hang the run)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """A digest of torchlean's own Python sources (the importer, the search, the checker): a row
    made by other code is run again (16 hex digits of a sha256 over each file's path and bytes)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _current(row: dict[str, str], paths: tuple[Path, Path]) -> bool:
    """Whether a results row still stands for the files at ``paths`` as they are now and for this
    code: its digests are theirs, and a sat/unsat in it was accepted by the checker."""
    if row.get("result") in ("sat", "unsat") and not row.get("check", "").startswith("accepted"):
        return False
    now = (file_digest(paths[0]), file_digest(paths[1]), source_digest())
    return None not in now and tuple(row.get(k, "") for k in BINDING) == now


def run_csv(
    path: str | Path,
    out: str | None = None,
    timeout: float | None = None,
    method: str = "crown",
    progress: bool | None = True,
    jobs: int = 1,
    force: bool = False,
    ray: str | None = None,
) -> list[dict[str, Any]]:
    """Run every instance of the list ``path`` (``read_instances``) and return the result rows in
    its order; with ``out``, keep them there (see the module docstring for ``jobs`` and resuming).
    An instance with bad input is a row whose ``result`` is ``ERROR`` (``run_one``), not an exception.
    ``timeout`` overrides the list's timeouts (default 116 s)."""
    base = Path(path).parent
    rows = read_instances(path)
    extra = [k for k in (rows[0] if rows else {}) if k not in FIELDS]
    limits = [timeout or check_timeout(row.get("timeout") or 116) for row in rows]
    done: dict[int, dict[str, Any]] = {}
    paths = [((base / r["onnx"]).resolve(), (base / r["vnnlib"]).resolve()) for r in rows]
    if out and not force:
        old = read_results(out)
        stale = 0
        for i, row in enumerate(rows):
            r = old.get((row["onnx"], row["vnnlib"], f"{limits[i]:g}"))
            if r is not None and not _current(r, paths[i]):
                stale += 1
            elif r is not None:
                done[i] = {**r, **{k: row.get(k, "") for k in ["expected", *extra]}}
                done[i]["agree"] = _agree(done[i]["expected"], done[i]["result"])
        if done:
            PROGRESS.info(f"skipped {len(done)} of {len(rows)} instances already in {out} "
                          "(--force reruns them)")
        if stale:
            PROGRESS.info(f"rerunning {stale} rows of {out} made from other file contents or other "
                          "torchlean code")
    todo = [i for i in range(len(rows)) if i not in done]

    def finish(i: int, r: dict[str, Any]) -> None:
        row = rows[i]
        exp = row.get("expected", "")
        r.update({"onnx": row["onnx"], "vnnlib": row["vnnlib"], "timeout": f"{limits[i]:g}", "expected": exp})
        r["agree"] = _agree(exp, r["result"])
        r.update({k: row.get(k, "") for k in extra})
        done[i] = r
        if progress is not False and r["result"] == ERROR:  # (the reason names the file)
            RESULTS.info(f"[{len(done)}/{len(rows)}] {row['onnx']} {row['vnnlib']}: {r['check']}")
        elif progress is not False:  # one line per instance, on a terminal or not
            RESULTS.info(
                f"[{len(done)}/{len(rows)}] {row['onnx']} {row['vnnlib']}: {r['result']} "
                f"({r['solve_s']} s, check {r['check_s'] or '-'} s, wall {r.get('wall_s') or '-'} s)"
                f"{' expected ' + exp if exp else ''}"
            )
        if out:
            _write(out, [done[k] for k in sorted(done)], FIELDS + extra)

    if ray is None and (jobs <= 1 or len(todo) <= 1):
        for i in todo:
            finish(i, run_one(*paths[i], limits[i], method))
    else:  # local worker processes, or Ray tasks (absolute paths: a remote node sees the same files)
        with Pool(min(jobs, len(todo)) if ray is None else jobs, ray=ray) as pool:
            calls = [(*paths[i], limits[i], method, False) for i in todo]
            for k, r in pool.map_unordered(run_one, calls):
                finish(todo[k], _as_here(r, paths[todo[k]]))
    return [done[i] for i in sorted(done)]


def _as_here(row: dict[str, Any], paths: tuple[Path, Path]) -> dict[str, Any]:
    """A worker's row (another process, or another Ray node) as this process keeps it: an ``error``
    unless the files' digests and the code digest it records are this machine's now (audit43: the
    row's verdict was checked by the worker's checker on the bytes the worker read; a node with
    other files at the same paths, or another torchlean, made a verdict about something else).
    This binds the row to this machine's files and code as ``_current`` does on a rerun; it does
    not authenticate a worker (one that lies about its digests is trusted as any worker is)."""
    if row.get("result") == ERROR:
        return row
    here = (file_digest(paths[0]), file_digest(paths[1]), source_digest())
    if tuple(row.get(k, "") for k in BINDING) == here:
        return row
    what = [w for w, k, h in zip(("network", "property", "torchlean code"), BINDING, here) if row.get(k) != h]
    return {**row, "result": ERROR, "mode": "", "agree": "",
            "check": f"error: the worker's {' and '.join(what)} do not match this machine's (its row: "
                     f"{row.get('result')}, {row.get('check') or '-'})"}


def _agree(exp: str, result: str) -> str:
    if exp not in ("sat", "unsat") or result not in ("sat", "unsat"):
        return ""
    return "yes" if result == exp else "WRONG"


def read_results(path: str | Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """The finished rows of a results file, keyed by (onnx, vnnlib, timeout): rows with a verdict
    in ``VERDICTS`` and as many fields as the header. A missing or empty file has none; a file that
    is not a results CSV is an InputError (``force`` overwrites it)."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return {}
    try:
        text = read_input(path, MAX_CSV_BYTES, what="results file")
        lines = list(csv.reader(io.StringIO(text)))
    except (ValueError, csv.Error) as e:
        raise InputError(f"--out {path}: not a results CSV ({e}); --force overwrites it") from None
    if not lines or lines[0][:2] != ["onnx", "vnnlib"]:
        raise InputError(f"--out {path}: not a results CSV (no onnx,vnnlib header); --force overwrites it")
    head = lines[0]
    out = {}
    for r in lines[1:]:
        if len(r) != len(head):  # (a row cut short)
            continue
        row = dict(zip(head, r))
        if row.get("result") in VERDICTS and row.get("timeout"):
            out[(row["onnx"], row["vnnlib"], row["timeout"])] = row
    return out
def _write(path: str, rows: list[dict[str, Any]], fields: list[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
