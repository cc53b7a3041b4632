"""``python -m torchlean.proofs emit | discharge | check | show``.

The project's own obligations live in ``[tool.torchlean] proofs``; torchlean's own (the library's)
ship in the package and are included with ``--include-library`` (or ``include-library = true``).

Every command first collects the obligations from the code as it is now: the registered sources
(the primitives' autograd and forward claims, interval rules, other layers' sources) and the
``@verified`` annotations in the modules named with ``--module`` or in ``[tool.torchlean] modules``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any

from .. import _cli
from ..pool import PoolError
from .artifacts import (
    LIBRARY_DIR,
    ConfigError,
    check_one,
    config,
    find_pyproject,
    orphan_note,
    orphaned_models,
    proofs_dir,
    up_to_date,
)
from .obligation import DECIDED, LIBRARY, SOURCES, NoProofCase, Obligation
from .shipped import SHIPPED_INTERVALS, interval_rules

UsageError = _cli.CliError  # bad input: printed as one line, exit status 2


def collect(modules: list[str] | None = None, only: list[str] | None = None, *,
            library: bool | None = None) -> list[Obligation]:
    """Every obligation, in a stable order; ``only`` filters by name prefix; ``library`` True keeps
    only torchlean's own (shipped) obligations, False only the project's, None both."""
    return [ob for ob, _ in gather(modules, only, library=library)]


def gather(modules: list[str] | None = None, only: list[str] | None = None, *,
           library: bool | None = None) -> list[tuple[Obligation, bool]]:
    """``collect``, each obligation paired with whether it is one of torchlean's own."""
    import_modules(modules)
    obs: dict[str, tuple[Obligation, bool]] = {}
    for name in sorted(SOURCES):
        is_lib = name in LIBRARY
        if library is not None and is_lib != library:
            continue
        for ob in SOURCES[name]():
            if ob.name in obs and obs[ob.name][0].hash == ob.hash:
                continue  # the same node case in two models: one obligation, proved once
            if ob.name in obs:
                raise UsageError(f"two obligations named {ob.name!r} (source {name})")
            obs[ob.name] = (ob, is_lib)
    out = sorted(obs.values(), key=lambda p: p[0].name)
    if only:
        out = [(o, b) for o, b in out
               if any(o.name.startswith(p) or o.subject.endswith(":" + p) for p in only)]
        if not out:
            hint = "" if library is not False else " among the project's obligations (torchlean's own " \
                "need --include-library)"
            raise UsageError(f"no obligation matches {' '.join(only)}{hint}")
    return out


def import_modules(modules: list[str] | None) -> None:
    """Import torchlean's own sources and the modules holding ``@verified`` annotations."""
    import torchlean  # noqa: F401  (registers primitives and rules)

    from . import adjoint, autograd, ibp  # noqa: F401  (register the sources)
    from .verified import NameClash

    for mod in modules or []:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise UsageError(f"cannot import module {mod!r}: {e}") from None
        except NameClash as e:  # (audit29) one of two claims would have gone unchecked
            raise UsageError(f"module {mod!r}: {e}") from None


def plan(cfg: dict[str, Any], modules: list[str], only: list[str] | None, *, include_library: bool,
         directory: Path | None = None) -> list[tuple[Obligation, Path]]:
    """The obligations a command works on, each with its artifact directory: the project's own in
    ``[tool.torchlean] proofs``; torchlean's own (only with ``include_library``) in the package's
    ``library/``; ``directory`` (``--dir``) overrides both."""
    modules = list(cfg["modules"]) + modules
    if not include_library:
        import_modules(modules)  # a project's module may replace a rule on import
        # torchlean's own claims are about torchlean's rules: a project that replaces one of them
        # (RULES[...] = ...) no longer runs what the shipped artifacts cover, so they are checked
        include_library = bool(patched_rules())
    pairs = gather(modules, only, library=None if include_library else False)
    user = directory or proofs_dir(cfg)
    shipped = Path(cfg["root"]) / cfg["library_proofs"] if cfg.get("library_proofs") else LIBRARY_DIR
    lib = directory or shipped
    return [(ob, lib if is_lib else user) for ob, is_lib in pairs]


#: as torchlean defines them, recorded at ``import torchlean`` (``proofs/shipped.py``): before any
#: project module runs, also under pytest, which imports this module after the test modules (audit56)
_interval_rules, _SHIPPED_RULES = interval_rules, SHIPPED_INTERVALS


def patched_rules() -> list[str]:
    """Runtime rules whose forward or VJP is not the one torchlean registered, and interval rules
    or function rows replaced since torchlean was imported (a row's ``monotone`` flipped by
    ``dataclasses.replace`` is a new object: audit17)."""
    from ..runtime.rules import RULES, shipped

    now = _interval_rules()
    # by identity with the functions torchlean registered (``rules.SHIPPED``), never by the
    # defining module's name: a project's ``torchlean_contrib`` module passed
    # ``startswith("torchlean")`` (audit29)
    return sorted([n for n in RULES if not shipped(n)]
                  + [n for n in {*now, *_SHIPPED_RULES} if now.get(n) is not _SHIPPED_RULES.get(n)])


def _setup(args: argparse.Namespace) -> list[tuple[Obligation, Path]]:
    cfg = config()
    include = bool(getattr(args, "include_library", False)) or cfg["include_library"]
    planned = plan(cfg, list(args.module or []), args.only or None, include_library=include,
                   directory=Path(args.dir) if getattr(args, "dir", None) else None)
    if not planned:  # "0 obligations, 0 failed" alone reads as a pass: say where none came from
        pp = find_pyproject()
        where = f"{pp}: [tool.torchlean] modules = {cfg['modules']}" if pp else "no pyproject.toml found"
        print(f"note: no obligations ({where}; --module {args.module or 'not given'}): name the modules "
              "holding @verified models there or with --module; torchlean's own: --include-library",
              file=sys.stderr)
    return planned


def cmd_emit(args: argparse.Namespace) -> int:
    from .._files import atomic_write_text

    out = Path(args.output)
    if out.exists() and not out.is_dir():  # (before _setup: its notes would precede the error)
        raise UsageError(f"-o {out}: not a directory")
    obs = [ob for ob, _ in _setup(args)]
    out.mkdir(parents=True, exist_ok=True)
    obs = [ob for ob in obs if ob.kind not in DECIDED]  # decided by the checker
    for ob in obs:
        atomic_write_text(out / f"{ob.name}.smt2", ob.smtlib)
    print(f"wrote {len(obs)} .smt2 files to {out}")
    return 0


def cmd_discharge(args: argparse.Namespace) -> int:
    from .discharge import discharge

    planned = _setup(args)
    todo = planned if args.force else [(ob, d) for ob, d in planned if not up_to_date(d, ob)]
    if len(todo) < len(planned):
        print(f"{len(planned) - len(todo)} obligations up to date (skipped; --force redoes them)")
    t0 = time.perf_counter()
    reports = []
    for d in sorted({d for _, d in todo}):  # one run per artifact directory
        reports += discharge([ob for ob, dd in todo if dd == d], d, solver=args.solver, jobs=args.jobs,
                             ray=args.ray, timeout=args.timeout, progress=_cli.progress_of(args))
    bad = 0
    for r in reports:
        if r.status not in ("proved", "trusted") or args.verbose:
            print(f"{r.status:8} {r.name}: {r.message}")
        bad += r.status not in ("proved", "trusted")
    n = {s: sum(r.status == s for r in reports) for s in ("proved", "trusted", "refuted")}
    print(f"{len(reports)} obligations: {n['proved']} proved with a certificate, "
          f"{n['trusted']} solver-trusted, {n['refuted']} refuted, "
          f"{bad - n['refuted']} unknown/timeout/error "
          f"({args.solver}, {time.perf_counter() - t0:.1f}s)")
    return 1 if bad else 0


def cmd_check(args: argparse.Namespace) -> int:
    from .compose import shapes_covered

    obs = _setup(args)
    generic = sum(shapes_covered(ob)[0] for ob, _ in obs)
    counts = {"checked": 0, "trusted": 0, "failed": 0}
    from ..certificates.core import time_limit

    for ob, directory in obs:
        with time_limit(time.monotonic() + args.timeout):  # per artifact: past it, not accepted
            o = check_one(directory, ob)
        if o.status in ("checked", "trusted"):
            counts[o.status] += 1
            if o.status == "trusted" and (args.verbose or args.strict):
                print(f"solver-trusted {o.name}: {o.detail}")
        else:
            counts["failed"] += 1
            print(f"{o.status} {o.name}: {o.detail}")
    orphans = [] if args.only or getattr(args, "dir", None) else \
        orphaned_models(proofs_dir(config()), [ob for ob, _ in obs])
    for name in orphans:  # a committed model claim no longer derived: nothing of it was checked
        print(orphan_note(name) if args.strict else f"note: {orphan_note(name)}",
              file=None if args.strict else sys.stderr)
    failed = counts["failed"] + ((counts["trusted"] + len(orphans)) if args.strict else 0)
    print(f"{len(obs)} obligations, {counts['checked']} checked, {counts['trusted']} solver-trusted, "
          f"{counts['failed']} failed ({generic} shape-generic)"
          + (f"; {len(orphans)} orphaned model artifacts" if orphans else ""))
    return 1 if failed else 0


def cmd_show(args: argparse.Namespace) -> int:
    if args.coverage:
        from .coverage import coverage_table

        print(coverage_table())
        return 0
    from ..certificates.core import time_limit
    from .compose import shapes_covered

    for ob, directory in _setup(args):
        with time_limit(time.monotonic() + args.timeout):  # (audit63: a replay as `check`'s, bounded)
            o = check_one(directory, ob)
        extra = f"  [{'; '.join(ob.assumptions)}]" if ob.assumptions else ""
        where = shapes_covered(ob)[1]
        where = f"  (holds for: {where})" if where else ""
        print(f"{o.status:9} {ob.name:32} {ob.statement}{extra}{where}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = _cli.Parser(prog="python -m torchlean.proofs", description=__doc__,
                    examples=["python -m torchlean.proofs discharge -j 2",
                              "python -m torchlean.proofs check",
                              "python -m torchlean.proofs show --coverage"])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--module", action="append", help="import this module for @verified annotations")
        sp.add_argument("--dir", help="artifact directory for every obligation selected (default: "
                        "[tool.torchlean] proofs; torchlean's own: the package's library/)")
        sp.add_argument("--include-library", action="store_true",
                        help="torchlean's own obligations too (artifacts shipped in the package); "
                             "on by default where [tool.torchlean] include-library = true")
        sp.add_argument("only", nargs="*", help="only obligations whose name starts with one of these")

    e = sub.add_parser("emit", help="write each obligation as an .smt2 file",
                       examples=["python -m torchlean.proofs emit -o smt2 --module mypkg.models",
                                 "python -m torchlean.proofs emit -o smt2 --include-library autograd.tanh"])
    e.add_argument("-o", "--output", default="smt2", help="folder for the .smt2 files (default smt2)")
    common(e)
    d = sub.add_parser("discharge", help="prove obligations and write artifacts",
                       examples=["python -m torchlean.proofs discharge -j 2",
                                 "python -m torchlean.proofs discharge --include-library --force matmul"])
    d.add_argument("--solver", choices=("cvc5", "z3"), default="cvc5", help="SMT solver (default cvc5)")
    d.add_argument("-j", "--jobs", type=_cli.jobs, default=1, help="obligations at a time (default 1)")
    d.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run the obligations as tasks on a Ray cluster: 'local' starts one here, "
                        "'auto' or HOST:PORT joins one (pip install 'torchlean[ray]')")
    d.add_argument("--timeout", type=_cli.timeout_s, default=60.0,
                   help="seconds per obligation (certificate search and solver together; killed past it)")
    d.add_argument("--force", action="store_true", help="redo obligations whose artifact is up to date")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress")
    _cli.add_progress(d)
    d.add_argument("-v", "--verbose", action="store_true", help="a line per obligation, proved ones too")
    common(d)
    c = sub.add_parser("check", help="replay every artifact through the trusted checker",
                       examples=["python -m torchlean.proofs check",
                                 "python -m torchlean.proofs check --include-library --strict"])
    c.add_argument("--strict", action="store_true",
                   help="solver-trusted obligations and orphaned model artifacts fail too")
    c.add_argument("--timeout", type=_cli.timeout_s, default=60.0,
                   help="seconds per artifact replay; past it the artifact fails (default 60)")
    c.add_argument("-v", "--verbose", action="store_true", help="name the solver-trusted obligations too")
    common(c)
    s = sub.add_parser("show", help="list obligations and their status",
                       examples=["python -m torchlean.proofs show --include-library matmul",
                                 "python -m torchlean.proofs show --coverage"])
    s.add_argument("--coverage", action="store_true", help="the primitive x table matrix")
    s.add_argument("--timeout", type=_cli.timeout_s, default=60.0,
                   help="seconds per artifact replay; past it the status is rejected (default 60)")
    common(s)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _cli.parse_args(parser(), argv)
    if isinstance(args, int):
        return args
    fn = {"emit": cmd_emit, "discharge": cmd_discharge, "check": cmd_check, "show": cmd_show}[args.command]
    return _cli.guard(lambda: fn(args), (ConfigError, PoolError, NoProofCase))
