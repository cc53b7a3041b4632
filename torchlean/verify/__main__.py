"""``python -m torchlean.verify``: verify, check, bound, and run benchmarks.

    python -m torchlean.verify NET.onnx PROP.vnnlib [--timeout 116] [--cert OUT.json]
    python -m torchlean.verify check CERT.json NET.onnx PROP.vnnlib [--mode exact|fast]
    python -m torchlean.verify bounds NET.onnx PROP.vnnlib [--method ibp|crown|alpha-crown]
    python -m torchlean.verify run instances.csv [--out results.csv] [--timeout S]

Exit status: 0 on success (a verdict, an accepted certificate), 1 when a certificate is rejected,
2 on bad input (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .._files import atomic_write_text
from .._malloc import keep_freed_memory
from ..certificates.bounds import check_vnn
from ..certificates.core import Rejected
from ..certificates.network import Unsupported
from ..certificates.property import PropertyError
from .network import InputError, load_net, load_spec
from .table import load_target


def vnncomp_text(result) -> str:
    """The VNN-COMP result format: the verdict, and for sat the assignment of X_i and Y_j."""
    if result.verdict != "sat":
        return result.verdict
    xs = "\n".join(f"(X_{i} {float(v)!r})" for i, v in enumerate(result.x))
    ys = "\n".join(f"(Y_{j} {v!r})" for j, v in enumerate(result.y))
    return f"sat\n({xs}\n{ys})"


def cmd_verify(args: argparse.Namespace) -> int:
    from .bab import verify

    spec = load_spec(args.prop)
    try:
        net, target = load_net(args.net), None
    except InputError as e:  # not a ReLU chain: the general search on the bound table
        net, target = None, load_target(args.net, e)
    n_in, n_out = (net.n_in, net.n_out) if net is not None else (target.ex.n_in, target.ex.n_out)
    if spec.n_in != n_in or spec.n_out != n_out:
        raise InputError(f"property has {spec.n_in} inputs/{spec.n_out} outputs, network {n_in}/{n_out}")
    if net is not None:
        res = verify(net, spec, timeout=args.timeout, progress=not args.quiet, method=args.method)
    else:
        from .general import verify_target

        try:
            res = verify_target(target, spec, timeout=args.timeout)
        except (ArithmeticError, ValueError, Rejected) as e:  # e.g. a row's domain (log of <= 0)
            raise InputError(f"the bound table cannot bound this network on this box: {e}") from None
    check_s = 0.0
    if res.cert is not None:
        t = time.perf_counter()
        if net is not None:
            v = check_vnn(res.cert, net, spec)
        else:
            from .table import check

            v = check(res.cert, target, spec)
        check_s = time.perf_counter() - t
        if not v.ok:  # never report a verdict the checker does not accept
            print(f"error: own certificate rejected ({v.reason}); reporting unknown", file=sys.stderr)
            res.verdict = "unknown"
        elif not args.quiet:
            print(f"checked: {v.reason} in {check_s:.2f} s", file=sys.stderr)
    text = vnncomp_text(res)
    if res.stats.get("why") and not args.quiet:
        print(f"{res.verdict}: {res.stats['why']}", file=sys.stderr)
    print(text)
    if args.result:
        atomic_write_text(args.result, text + "\n")
    if args.cert and res.cert is not None and res.verdict in ("sat", "unsat"):
        atomic_write_text(args.cert, json.dumps(res.cert, separators=(",", ":")))
    if not args.quiet:
        print(
            f"time: {res.stats.get('time', 0):.2f} s solve, {check_s:.2f} s check; "
            f"boxes {res.stats.get('boxes', 0)}, leaves {res.stats.get('leaves', 0)}",
            file=sys.stderr,
        )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    try:
        cert = json.loads(Path(args.cert).read_text())
    except OSError as e:
        raise InputError(f"{args.cert}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{args.cert}: not JSON ({e})") from None
    spec = load_spec(args.prop)
    try:
        net = load_net(args.net)
    except InputError as e:  # not a ReLU chain: the checker reads the bound table's graph
        net = load_target(args.net, e).bg
    t = time.perf_counter()
    v = check_vnn(cert, net, spec, mode=args.mode)
    dt = time.perf_counter() - t
    if v.ok:
        extra = f"; assumes {', '.join(v.trusted)}" if v.trusted else ""
        print(f"accepted: {v.reason} ({dt:.2f} s){extra}")
        return 0
    print(f"rejected: {v.reason}")
    return 1


def cmd_bounds(args: argparse.Namespace) -> int:
    import numpy as np

    from . import table
    from .bounds import bounds

    spec = load_spec(args.prop)
    try:
        net, target = load_net(args.net), None
    except InputError as e:  # not a ReLU chain: the bound table's engine bounds it
        net, target = None, load_target(args.net, e)
    for r, region in enumerate(spec.regions):
        if target is not None:
            if args.method == "alpha-crown":
                low, up = table.alpha_bounds_box(target, region.lo, region.hi)
            else:
                low, up = table.output_bounds_box(target, region.lo, region.hi, args.method)
        else:
            lo = np.array([float(v) for v in region.lo])
            hi = np.array([float(v) for v in region.hi])
            low, up = bounds(net, (lo, hi), method=args.method)
        print(f"region {r} ({args.method}):")
        for j, (a, b) in enumerate(zip(low, up)):
            print(f"  Y_{j} in [{a:.9g}, {b:.9g}]")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_csv

    run_csv(args.csv, out=args.out, timeout=args.timeout, method=args.method, progress=not args.quiet)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m torchlean.verify", description=__doc__.split("\n")[0])
    sub = {"check", "bounds", "run"}
    if argv and argv[0] in sub:
        cmd = argv.pop(0)
    else:
        cmd = "verify"
    if cmd == "verify":
        p.add_argument("net")
        p.add_argument("prop")
        p.add_argument("--timeout", type=float, default=116.0)
        p.add_argument("--cert", help="write the certificate (JSON) here")
        p.add_argument("--result", help="also write the VNN-COMP result text here")
        p.add_argument("--method", choices=("crown", "forward"), default="crown")
        p.add_argument("-q", "--quiet", action="store_true")
        fn = cmd_verify
    elif cmd == "check":
        p.add_argument("cert")
        p.add_argument("net")
        p.add_argument("prop")
        p.add_argument("--mode", choices=("exact", "fast"), default=None)
        fn = cmd_check
    elif cmd == "bounds":
        p.add_argument("net")
        p.add_argument("prop")
        p.add_argument("--method", choices=("ibp", "crown", "alpha-crown"), default="crown")
        fn = cmd_bounds
    else:
        p.add_argument("csv")
        p.add_argument("--out", default=None)
        p.add_argument("--timeout", type=float, default=None)
        p.add_argument("--method", choices=("crown", "forward"), default="crown")
        p.add_argument("-q", "--quiet", action="store_true")
        fn = cmd_run
    args = p.parse_args(argv)
    keep_freed_memory()
    try:
        return fn(args)
    except (InputError, PropertyError, Unsupported) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
