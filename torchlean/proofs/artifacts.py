"""Proof artifacts: one JSON file per obligation, written atomically, keyed by content hash.

An artifact records what was discharged (the obligation's hash and SMT-LIB text), how (solver,
version, options, result, time, the solver's own proof compressed) and the certificate the
trusted checker replays. ``check_one`` never believes the stored text: it replays the certificate
against the obligation re-derived from the code *now*, after comparing hashes. Nothing in the file
decides how much a claim is trusted: an artifact without a certificate tree counts as
solver-trusted only when the solver it names, re-run here on the re-derived obligation, says
``unsat`` again (the file's ``trusted`` list, ``result`` and solver record are never evidence).
"""

from __future__ import annotations

import difflib
import multiprocessing as mp
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import atomic_write_json, read_input
from ..certificates import check as replay
from ..certificates.core import parse_json
from .obligation import CLAIMS, DECIDED, Obligation, refutation_kind

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

FORMAT = 1
#: torchlean's own artifacts (the primitives' autograd/forward claims, interval rules), shipped as
#: package data so that a user's proofs/ holds only the user's obligations
LIBRARY_DIR = Path(__file__).resolve().parent / "library"
#: seconds a solver gets to reproduce a solver-trusted claim during ``check`` (then it is killed)
RERUN_TIMEOUT = 60.0


def find_pyproject(start: Path | None = None) -> Path | None:
    p = (start or Path.cwd()).resolve()
    for d in (p, *p.parents):
        if (d / "pyproject.toml").is_file():
            return d / "pyproject.toml"
    return None


def config(start: Path | None = None) -> dict[str, Any]:
    """``[tool.torchlean]`` of the nearest pyproject.toml, plus its directory as ``root``."""
    pp = find_pyproject(start)
    if pp is None:
        return {"root": str(Path.cwd()), "proofs": "proofs", "modules": [], "include_library": False,
                "library_proofs": None}
    try:
        with open(pp, "rb") as f:
            tool = tomllib.load(f).get("tool", {})
    except (OSError, ValueError) as e:  # (TOMLDecodeError is a ValueError)
        raise ConfigError(f"{pp}: {e}") from None
    data = tool.get("torchlean", {}) if isinstance(tool, dict) else None
    if not isinstance(data, dict):
        raise ConfigError(f"{pp}: [tool.torchlean] is not a table")
    proofs, modules = data.get("proofs", "proofs"), data.get("modules", [])
    library_proofs = data.get("library-proofs")
    if not isinstance(proofs, str) or not (
        isinstance(modules, list) and all(isinstance(m, str) for m in modules)
    ) or not (library_proofs is None or isinstance(library_proofs, str)):
        raise ConfigError(f"{pp}: [tool.torchlean] wants proofs = \"DIR\" and modules = [\"name\", ...]")
    return {"root": str(pp.parent), "proofs": proofs, "modules": list(modules),
            # torchlean's own checkout says true: its CI checks the shipped library artifacts too
            "include_library": bool(data.get("include-library", False)),
            # where torchlean's own artifacts are read (default: the package's library/)
            "library_proofs": library_proofs}


class ConfigError(ValueError):
    """A pyproject.toml that cannot be read, or a [tool.torchlean] table of the wrong shape."""


def proofs_dir(cfg: dict[str, Any] | None = None) -> Path:
    cfg = cfg or config()
    return Path(cfg["root"]) / cfg["proofs"]


def path_for(directory: Path, ob: Obligation) -> Path:
    return directory / f"{ob.name}.json"


write_atomic = atomic_write_json  # the name the proofs layer uses


@dataclass
class Outcome:
    name: str
    status: str  # checked | trusted | missing | stale | malformed | rejected
    detail: str = ""
    trusted: dict[str, int] | None = None


def _what_changed(old: str, new: str) -> str:
    diff = [ln for ln in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    return "; ".join(d[:120] for d in diff[:2]) or "metadata changed"


#: the memo of the innermost ``once()`` block (none outside one: every call replays)
_ONCE: list[dict[tuple[str, ...], Any]] = []


@contextmanager
def once() -> Iterator[None]:
    """Within the block, each obligation (by name and content hash: its statement derived from the
    code, so the same hash is the same claim) is replayed once: a decided statement's verdict is
    shared by ``discharge`` and ``check_one``, and ``check_one``'s outcome in a directory by a model's
    claim (which checks every node obligation it rests on) and the caller's count of those node
    obligations. For one run over obligations derived once (``zoo.claims``); nothing is kept after."""
    _ONCE.append({})
    try:
        yield
    finally:
        _ONCE.pop()


def decide(ob: Obligation) -> Any:
    """The checker's verdict on a decided obligation (kind in ``DECIDED``): its statement derived from
    the code now, under the obligation's own kind (never the statement's)."""
    memo = _ONCE[-1] if _ONCE else None
    if memo is not None and ("decide", ob.name, ob.hash) in memo:
        return memo[("decide", ob.name, ob.hash)]
    if ob.kind == "composition":
        verdict = replay({"kind": "composition", "graph": ob.data["graph"], "trace": ob.data["trace"]})
    else:
        verdict = replay({**ob.data["statement"], "kind": ob.kind})
    if memo is not None:
        memo[("decide", ob.name, ob.hash)] = verdict
    return verdict


def check_one(directory: Path, ob: Obligation) -> Outcome:
    """Replay the artifact of ``ob`` (re-derived from the code) through the trusted checker."""
    memo = _ONCE[-1] if _ONCE else None
    key = ("check", str(directory), ob.name, ob.hash)
    if memo is not None and key in memo:
        return memo[key]
    out = _check_one(directory, ob)
    if memo is not None:
        memo[key] = out
    return out


def _check_one(directory: Path, ob: Obligation) -> Outcome:
    path = path_for(directory, ob)
    if not path.exists():
        return Outcome(ob.name, "missing", f"no artifact {path.name}; run discharge")
    try:  # a regular file only (a FIFO is refused, never waited on); JSON within the checker's limits
        art = parse_json(read_input(path, what="artifact"))
        stored_hash, cert = art["obligation"]["hash"], art["certificate"]
        if not isinstance(cert, dict) or not isinstance(stored_hash, str):
            raise TypeError("certificate/hash of the wrong type")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return Outcome(ob.name, "malformed", f"{path.name}: {type(e).__name__}: {e}")
    if stored_hash != ob.hash:
        what = _what_changed(str(art["obligation"].get("smtlib", "")), ob.smtlib)
        return Outcome(ob.name, "stale", f"{ob.subject} changed since it was proved: {what}")
    if art.get("result") != "unsat":
        return Outcome(ob.name, "rejected", f"recorded result is {art.get('result')!r}, not unsat")
    if ob.kind == "composition":
        return check_composition(directory, ob)
    if ob.kind in ("windows", "terms", "channels", "rows"):
        return check_windows(directory, ob)
    if ob.kind == "adjoint":  # decided by the checker on the statement derived from the code now
        verdict = decide(ob)
        if not verdict.ok:
            return Outcome(ob.name, "rejected", f"adjointness: {verdict.reason}")
        return Outcome(ob.name, "checked", f"adjointness at every size of the class ({verdict.checked} "
                                           "sides)")
    tree = cert.get("tree")
    if tree is None:  # no certificate: the claim rests on a solver, so the solver must say it again
        solver = art.get("solver", {}).get("name") if isinstance(art.get("solver"), dict) else None
        return reproduce(ob, solver)
    # the statement replayed is the one derived from the code now, never the stored copy; the kind
    # is the one obligations have, never the file's (another kind's checker would ignore it)
    verdict = replay({"kind": refutation_kind(ob.kind), "statement": ob.smtlib, "tree": tree})
    if not verdict.ok:
        return Outcome(ob.name, "rejected", verdict.reason)
    return Outcome(ob.name, "checked", f"{verdict.checked} steps replayed")


def check_composition(directory: Path, ob: Obligation) -> Outcome:
    """A model's compositional claim: the chain-rule certificate derived from the code now
    (``certificates/tape.py``), and every node obligation it rests on checked in ``directory``.
    Nothing but the hash is read from the model's own artifact."""
    from .compose import NODES

    verdict = decide(ob)
    if not verdict.ok:
        return Outcome(ob.name, "rejected", f"chain rule: {verdict.reason}")
    requires = set(ob.data["requires"])
    for node in ob.data["graph"]["nodes"]:  # every node rests on both of its obligations
        tag = node["key"][len(node["prim"]):]
        for kind in ("forward", "autograd"):
            name = node.get(kind, f"{kind}.{node['prim']}{tag}")
            if name not in requires or not name.startswith(f"{kind}.{node['prim']}."):
                return Outcome(ob.name, "rejected", f"node {node['key']}: no {kind} obligation")
    for name in ob.data["requires"]:
        if NODES.get(name) is None:
            return Outcome(ob.name, "rejected", f"node obligation {name} was not derived")
    n = len(ob.data["graph"]["nodes"])
    return _resting_on(directory, ob, "node obligation",
                       f"chain rule over {n} nodes ({verdict.checked} steps); "
                       f"{len(ob.data['requires'])} node obligations", " checked")


def _resting_on(directory: Path, ob: Obligation, label: str, what: str, done: str = "") -> Outcome:
    """``ob``'s outcome once its own statement was replayed: rejected unless every obligation it
    ``requires`` is checked or solver-trusted in ``directory``; trusted if any of them is (their
    solver-trusted names summed), else checked. ``done`` is appended to ``what`` when checked."""
    from .compose import NODES

    trusted: dict[str, int] = {}
    for name in ob.data["requires"]:
        o = check_one(directory, NODES[name])
        lib = path_for(LIBRARY_DIR, NODES[name])
        if o.status == "missing" and directory.resolve() != LIBRARY_DIR and lib.exists():
            # a node case that is one of torchlean's own obligations (same name and hash: a
            # generic matmul class) is planned, and written, in the package's library when the
            # project's plan includes the library (a replaced rule); replayed from there alike
            o = check_one(LIBRARY_DIR, NODES[name])
        if o.status not in ("checked", "trusted"):
            return Outcome(ob.name, "rejected", f"{label} {name} is {o.status}: {o.detail}")
        for k, v in (o.trusted or {}).items():
            trusted[k] = trusted.get(k, 0) + v
    if trusted:
        return Outcome(ob.name, "trusted", f"{what}, solver-trusted: {', '.join(sorted(trusted))}", trusted)
    return Outcome(ob.name, "checked", what + done)


def check_windows(directory: Path, ob: Obligation) -> Outcome:
    """A claim the checker decides on terms: a pooling plane's (``proofs/windows.py``), window by
    window, or a ``terms`` / ``channels`` one (``proofs/terms.py``): the statement derived from the
    code now, and the one window's (one element's) obligations it names checked in ``directory``
    (each at input (1, 1, kh, kw), or (1, 1, 1...), and the plane's attributes)."""
    from .compose import NODES

    st = ob.data["statement"]
    verdict = decide(ob)  # the obligation's kind, never the statement's
    if not verdict.ok:
        return Outcome(ob.name, "rejected", f"{ob.kind}: {verdict.reason}")
    if ob.kind == "rows":  # the element claim re-derived from the statement now, by name and hash
        from .rows import element_obligation

        want = element_obligation(ob.subject.split(":", 1)[1], st)
        got = NODES.get(want.name)
        if ob.data["requires"] != [want.name] or got is None or got.hash != want.hash:
            return Outcome(ob.name, "rejected", "a rows claim rests on exactly its element's claim")
        return _resting_on(directory, ob, "element claim",
                           f"rows: {verdict.checked} positions from {want.name}")
    # the claim each required obligation must be: one window at (1, 1, kh, kw), or (``channels``)
    # one element at (1, 1, 1...) with per-channel parameters (1,); the plane's attributes
    one = [[1, 1, *st["kernel"]]] if ob.kind == "windows" else \
        [[1] * len(st["shape"])] + [[1]] * st["params"] if ob.kind == "channels" else None
    kinds = [getattr(NODES.get(n), "kind", None) for n in ob.data["requires"]]
    if ob.kind == "channels" and kinds != ["autograd"]:
        return Outcome(ob.name, "rejected", "a channels claim rests on exactly one element autograd claim")
    if ob.kind == "channels":  # the element terms replayed are the ones the element claim is about
        from ..certificates.core import Rejected
        from ..certificates.sexpr import read_script, show
        from .terms import element_claim

        try:
            same = show(read_script(NODES[ob.data["requires"][0]].smtlib).goal) == \
                f"(not {element_claim(st)})"
        except (Rejected, KeyError, IndexError, TypeError, ValueError, ZeroDivisionError):
            same = False
        if not same:
            return Outcome(ob.name, "rejected", "a channels statement's element terms are not its "
                                                "element claim's")
    for name in ob.data["requires"]:
        dep = NODES.get(name)
        if dep is None or dep.data.get("shapes") != one or dep.data.get("attrs") != ob.data["attrs"] \
                or dep.kind not in ("forward", "autograd") or dep.subject != ob.subject:
            return Outcome(ob.name, "rejected", f"{name} is not this plane's one-window claim")
    what = f"{ob.kind}: {verdict.checked} positions" + (f" from {', '.join(ob.data['requires'])}"
                                                      if ob.data["requires"] else "")
    return _resting_on(directory, ob, "one-window claim", what)


def orphaned_models(directory: Path, obligations: list[Obligation]) -> list[str]:
    """The ``model.*`` artifacts in ``directory`` that no obligation derived now names: a model claim
    that was committed and is no longer made (its ``@verified`` deleted, renamed, or in a module no
    longer imported), so nothing of it is checked (audit42). Sorted names."""
    names = {ob.name for ob in obligations}
    try:
        files = sorted(p.stem for p in directory.glob("model.*.json"))
    except OSError:
        return []
    return [n for n in files if n not in names]


def orphan_note(name: str) -> str:
    """What ``proofs check`` and the pytest plugin say of an orphaned model artifact ``name``."""
    return (f"orphaned {name}: no @verified model of that name is derived now (deleted, renamed, or its "
            f"module no longer imported?): not checked; delete {name}.json if the claim was dropped on "
            "purpose")


def up_to_date(directory: Path, ob: Obligation) -> bool:
    """Whether ``discharge`` may skip ``ob``: its artifact exists for the obligation as derived now
    (same hash), records unsat, and its certificate tree (if any) replays. A tree-less artifact
    is left alone too: ``check`` re-runs its solver, and discharging again would only redo that;
    unless it names no solver ``check`` can re-run (cvc5, z3): ``check`` would reject it forever."""
    from .solve import SOLVERS

    try:
        art = parse_json(read_input(path_for(directory, ob), what="artifact"))
        if art["obligation"]["hash"] != ob.hash or art.get("result") != "unsat":
            return False
        tree = art["certificate"].get("tree")
        solver = art["solver"].get("name") if isinstance(art.get("solver"), dict) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    if ob.kind in DECIDED:
        return True  # decided at check time from the code; the hash is all the artifact holds
    if tree is None:
        return solver in SOLVERS
    return replay({"kind": refutation_kind(ob.kind), "statement": ob.smtlib, "tree": tree}).ok


def _rerun(conn: Any, text: str, solver: str, timeout: float) -> None:
    from .solve import solve

    run = solve(text, solver, timeout)
    conn.send((run.status, run.rules, run.seconds, run.message[:300], run.model))
    conn.close()


def reproduce(ob: Obligation, solver: Any, timeout: float = RERUN_TIMEOUT) -> Outcome:
    """Re-run ``solver`` (named by the artifact; cvc5 or z3) on ``ob.smtlib`` as derived from the
    code now, in a child process killed after ``timeout`` plus a grace of up to 5 s (the solver's
    own limit is ``timeout``). Solver-trusted only on ``unsat``; sat, unknown, timeout, a crash or
    a missing solver is a rejection, with one line."""
    from importlib.util import find_spec

    from .solve import SOLVERS

    if solver not in SOLVERS:
        return Outcome(ob.name, "rejected", f"no certificate tree and no solver to re-run "
                                            f"(artifact names {solver!r}; expected cvc5 or z3): re-prove it "
                                            f"with `python -m torchlean.proofs discharge {ob.name}`")
    # any solver's unsat on the obligation derived now reproduces the claim: when the one the
    # artifact names is not installed, the other one re-runs it
    installed = [s for s in (solver, *SOLVERS) if find_spec(s) is not None]
    if not installed:
        return Outcome(ob.name, "rejected", "no certificate tree and no SMT solver installed to re-run it "
                                            "(pip install cvc5 z3-solver: both are torchlean dependencies)")
    solver = installed[0]
    if ob.kind in CLAIMS:  # the domain rule first: a solver's unsat under a domain not the spec's is no claim
        from ..certificates.core import Verdict
        from ..certificates.core import replay as guarded
        from ..certificates.domains import check_domain

        verdict = guarded(lambda text: Verdict(True, check_domain(text)), ob.smtlib, what="statement")
        if not verdict.ok:
            return Outcome(ob.name, "rejected", f"domain: {verdict.reason}")
    limit = timeout + min(5.0, timeout)
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_rerun, args=(child, ob.smtlib, solver, timeout), daemon=True)
    proc.start()
    child.close()
    late = not parent.poll(limit)
    try:
        got = None if late else parent.recv()
    except EOFError:  # the child died without an answer
        got = None
    if got is None:
        proc.kill()
    proc.join(5)
    parent.close()
    if got is None:
        why = f"gave no answer within {limit:.3g} s (killed)" if late else \
            f"died without an answer (exit {proc.exitcode})"
        return Outcome(ob.name, "rejected", f"no certificate tree; {solver}, re-run, {why}")
    status, rules, seconds, message, model = got
    if status != "unsat":
        extra = ""
        if status == "sat":
            from .counterexample import explain

            try:
                extra = f": {' '.join(str(explain(ob.smtlib, model)).split())[:300]}"
            except Exception:  # noqa: BLE001 - the explanation is a courtesy; the verdict stands
                extra = ""
        elif message:
            extra = f": {' '.join(message.split())[:200]}"
        return Outcome(ob.name, "rejected", f"no certificate tree and {solver}, re-run on the "
                                            f"obligation derived from the code now, says {status}{extra}")
    trusted = {f"{solver}:{r}": 1 for r in sorted(rules)} or {f"{solver}:unsat": 1}
    return Outcome(ob.name, "trusted", f"{solver} re-run: unsat in {seconds:.2f} s; proof rules "
                                       f"not replayed: {', '.join(sorted(trusted))}", trusted)
