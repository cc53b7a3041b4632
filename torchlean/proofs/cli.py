"""``python -m torchlean.proofs emit | discharge | check | show``.

Every command first collects the obligations from the code as it is now: the registered sources
(the primitives' autograd and forward claims, interval rules, other layers' sources) and the
``@verified`` annotations in the modules named with ``--module`` or in ``[tool.torchlean] modules``.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from .. import _cli
from .artifacts import ConfigError, check_one, config, proofs_dir
from .obligation import SOURCES, Obligation

UsageError = _cli.CliError  # bad input: printed as one line, exit status 2


def collect(modules: list[str] | None = None, only: list[str] | None = None) -> list[Obligation]:
    """Every obligation, in a stable order; ``only`` filters by name prefix."""
    import torchlean  # noqa: F401  (registers primitives and rules)

    from . import autograd, ibp  # noqa: F401  (register the sources)

    for mod in modules or []:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise UsageError(f"cannot import module {mod!r}: {e}") from None
    obs: dict[str, Obligation] = {}
    for name in sorted(SOURCES):
        for ob in SOURCES[name]():
            if ob.name in obs:
                raise UsageError(f"two obligations named {ob.name!r} (source {name})")
            obs[ob.name] = ob
    out = sorted(obs.values(), key=lambda o: o.name)
    if only:
        out = [o for o in out if any(o.name.startswith(p) or o.subject.endswith(":" + p) for p in only)]
        if not out:
            raise UsageError(f"no obligation matches {' '.join(only)}")
    return out


def _setup(args: argparse.Namespace) -> tuple[list[Obligation], Path]:
    cfg = config()
    directory = Path(args.dir) if getattr(args, "dir", None) else proofs_dir(cfg)
    modules = list(cfg["modules"]) + list(args.module or [])
    return collect(modules, args.only or None), directory


def cmd_emit(args: argparse.Namespace) -> int:
    from .._files import atomic_write_text

    obs, _ = _setup(args)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: not a directory")
    out.mkdir(parents=True, exist_ok=True)
    for ob in obs:
        atomic_write_text(out / f"{ob.name}.smt2", ob.smtlib)
    print(f"wrote {len(obs)} .smt2 files to {out}")
    return 0


def cmd_discharge(args: argparse.Namespace) -> int:
    from .discharge import discharge

    obs, directory = _setup(args)
    t0 = time.perf_counter()
    reports = discharge(obs, directory, solver=args.solver, jobs=args.jobs, timeout=args.timeout,
                        progress=not args.quiet)
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
    obs, directory = _setup(args)
    counts = {"checked": 0, "trusted": 0, "failed": 0}
    from ..certificates.core import time_limit

    for ob in obs:
        with time_limit(time.monotonic() + args.timeout):  # per artifact: past it, not accepted
            o = check_one(directory, ob)
        if o.status in ("checked", "trusted"):
            counts[o.status] += 1
            if o.status == "trusted" and (args.verbose or args.strict):
                print(f"solver-trusted {o.name}: {o.detail}")
        else:
            counts["failed"] += 1
            print(f"{o.status} {o.name}: {o.detail}")
    failed = counts["failed"] + (counts["trusted"] if args.strict else 0)
    print(f"{len(obs)} obligations, {counts['checked']} checked, {counts['trusted']} solver-trusted, "
          f"{counts['failed']} failed")
    return 1 if failed else 0


def cmd_show(args: argparse.Namespace) -> int:
    if args.coverage:
        from .coverage import coverage_table

        print(coverage_table())
        return 0
    obs, directory = _setup(args)
    for ob in obs:
        o = check_one(directory, ob)
        extra = f"  [{'; '.join(ob.assumptions)}]" if ob.assumptions else ""
        print(f"{o.status:9} {ob.name:32} {ob.statement}{extra}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = _cli.Parser(prog="python -m torchlean.proofs", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--module", action="append", help="import this module for @verified annotations")
        sp.add_argument("--dir", help="artifact directory (default: [tool.torchlean] proofs)")
        sp.add_argument("only", nargs="*", help="only obligations whose name starts with one of these")

    e = sub.add_parser("emit", help="write each obligation as an .smt2 file")
    e.add_argument("-o", "--output", default="smt2")
    common(e)
    d = sub.add_parser("discharge", help="prove obligations and write artifacts")
    d.add_argument("--solver", choices=("cvc5", "z3"), default="cvc5")
    d.add_argument("-j", "--jobs", type=_cli.jobs, default=1)
    d.add_argument("--timeout", type=_cli.timeout_s, default=60.0,
                   help="seconds per obligation (solver and certificate search each; killed at 2x + 5)")
    d.add_argument("-q", "--quiet", action="store_true")
    d.add_argument("-v", "--verbose", action="store_true")
    common(d)
    c = sub.add_parser("check", help="replay every artifact through the trusted checker")
    c.add_argument("--strict", action="store_true", help="solver-trusted obligations fail too")
    c.add_argument("--timeout", type=_cli.timeout_s, default=60.0,
                   help="seconds per artifact replay; past it the artifact fails (default 60)")
    c.add_argument("-v", "--verbose", action="store_true")
    common(c)
    s = sub.add_parser("show", help="list obligations and their status")
    s.add_argument("--coverage", action="store_true", help="the primitive x table matrix")
    common(s)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _cli.parse_args(parser(), argv)
    if isinstance(args, int):
        return args
    fn = {"emit": cmd_emit, "discharge": cmd_discharge, "check": cmd_check, "show": cmd_show}[args.command]
    return _cli.guard(lambda: fn(args), (ConfigError,))
