"""``python -m torchlean.verify``: verify, check, bound, and run benchmarks.

    python -m torchlean.verify NET.onnx PROP.vnnlib [--timeout 116] [--cert OUT.json] [--float32]
        (--timeout: the whole command's wall clock from process start, replay included)
    python -m torchlean.verify check CERT.json NET.onnx PROP.vnnlib [--mode exact|fast]
        [--expect unsat|sat]
    python -m torchlean.verify bounds NET.onnx PROP.vnnlib [--method ibp|crown|alpha-crown]
    python -m torchlean.verify run instances.csv [--out results.csv] [--timeout S] [-j N]
        [--ray ADDRESS] [--force]

Exit status: 0 on success (a verdict, an accepted certificate), 1 when a certificate is rejected,
2 on bad input (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

from .. import _cli, _outward
from .._files import InputFileError, atomic_write_text, read_input
from .._malloc import keep_freed_memory, loading
from ..certificates.bound_graph import Unsupported
from ..certificates.bounds import check_vnn, replay_mode
from ..certificates.core import OutOfTime, Rejected, parse_json
from ..certificates.property import PropertyError
from ..pool import PoolError
from .budget import Budget
from .network import InputError
from .result_text import exact_text, vnncomp_text, x_numerals  # noqa: F401 (exact_text: audit24's)
from .table import RUNTIME_CHECK_S, load_instance, replay_result, runtime_refutes, runtime_unchecked


def cmd_verify(args: argparse.Namespace) -> int:
    for flag in ("float32_splits", "float32_column"):  # (silently ignored without it, before)
        if getattr(args, flag, None) is not None and not args.float32:
            raise _cli.CliError(f"--{flag.replace('_', '-')} needs --float32")
    _cli.check_writable(args.cert, "--cert")
    _cli.check_writable(args.result, "--result")
    _cli.check_not_input(args.cert, "--cert", args.net, args.prop)
    _cli.check_not_input(args.result, "--result", args.net, args.prop)
    # --timeout is the whole command's wall clock from the process's start: loading, search and
    # the checker's replay (``budget``); a watchdog answers "timeout" should a step overrun it. Called
    # in a process of its own only: ``main(argv)`` in a program counts from the call, no watchdog
    clock = Budget(args.timeout, start=None if args.command else START[0])

    def out_of_time() -> None:
        print("timeout", flush=True)
        if args.result:
            atomic_write_text(args.result, "timeout\n")
        _drop_stale_cert(args)

    if not args.command:
        return _verify(args, clock, out_of_time)
    dog = clock.watchdog(out_of_time)
    try:
        status = _verify(args, clock, out_of_time)
    finally:
        dog.cancel()  # (an error exit must keep its status)
    _exit_now(status)  # (the answer counts when the process ends)
    return status


def _verify(args: argparse.Namespace, clock: Budget, out_of_time: Any) -> int:
    """``cmd_verify`` within ``clock``."""
    from .bab import solve

    with loading():
        target, spec = load_instance(args.net, args.prop, runtime_check=clock.left() > RUNTIME_CHECK_S)
    _drop_stale_cert(args)
    if not args.quiet:
        _warn_empty_boxes(spec, args.prop)
    left = clock.search_time()
    if left <= 0:  # loading used the whole budget: still a VNN-COMP answer, in --result too
        clock.answer(out_of_time)
        return 0
    if args.float32:
        return _verify_float32(args, target, spec, left, clock)
    try:
        res = clock.search(solve, target, spec, progress=_cli.progress_of(args), method=args.method)
    except (ArithmeticError, ValueError, Rejected) as e:  # e.g. a row's domain (log of <= 0)
        raise InputError(f"the bound table cannot bound this network on this box: {e}") from None
    check_s = 0.0
    if res.cert is not None:
        # the replay gets what the search left (a verdict it cannot confirm in time is "timeout");
        # none when the search's root check already had the checker accept this very certificate
        v, check_s = replay_result(res, target, spec, replay_mode(res.cert, target.bg), clock.end)
        if not v.ok:  # never report a verdict the checker does not accept
            if clock.left() <= 0:
                res.verdict = "timeout"
                if not args.quiet:
                    print(f"timeout: the checker's replay did not finish ({v.reason})", file=sys.stderr)
            else:
                print(f"error: own certificate rejected ({v.reason}); reporting unknown", file=sys.stderr)
                res.verdict = "unknown"
        elif not args.quiet:
            print(f"checked: {v.reason} in {check_s:.2f} s", file=sys.stderr)
    _runtime_guard(target, res)
    text = vnncomp_text(res, spec)

    def say() -> None:
        print(text, flush=True)
        if args.result:
            atomic_write_text(args.result, text + "\n")

    if not clock.answer(say):
        return 0
    _note_unchecked(target, res.verdict)
    _note_exact_point(res, spec, args.cert)
    if res.stats.get("why") and not args.quiet:
        print(f"{res.verdict}: {res.stats['why']}", file=sys.stderr)
    if args.cert and res.cert is not None and res.verdict in ("sat", "unsat"):
        atomic_write_text(args.cert, json.dumps(_with_note(res.cert, target), separators=(",", ":")))
    if not args.quiet:
        print(
            f"time: {res.stats.get('time', 0):.2f} s solve, {check_s:.2f} s check, "
            f"{time.monotonic() - clock.end + args.timeout:.2f} s wall; "
            f"boxes {res.stats.get('boxes', 0)}, leaves {res.stats.get('leaves', 0)}",
            file=sys.stderr,
        )
    return 0


def _note_unchecked(target: Any, verdict: str) -> None:
    """One line on stderr, even with --quiet, when a verdict (sat or unsat) stands on an import that
    was not compared with onnxruntime (``table.runtime_unchecked``: not installed, a file it cannot
    run, too little time): the verdict is then about torchlean's reading of the file alone."""
    line = runtime_unchecked(target) if verdict in ("sat", "unsat") else None
    if line is not None:
        print(f"note: {line}", file=sys.stderr, flush=True)


def exact_note(x: Any) -> str | None:
    """The caveat for a counterexample that is no float32 point (``verify.exact_point``: an exact box
    end or ReLU-kink vertex), or None: the X_i printed are that exact point (those with a
    terminating decimal; ``approx_note`` for the others), which the checker evaluated exactly; the
    Y_j are float64 values near its outputs, and a float32 run (onnxruntime) can only be fed the
    point rounded to float32, where the property may hold."""
    if x is None:
        return None
    off = [i for i, v in enumerate(x) if not _is_float32(Fraction(v))]
    if not off:
        return None
    which = ", ".join(f"X_{i}" for i in off[:4]) + (", ..." if len(off) > 4 else "")
    return (f"the counterexample is an exact rational point ({which} no float32 number): the checker "
            "evaluated the network exactly at that point (the certificate's x); the Y_j are float64 "
            "values near its exact outputs, and a float32 run (onnxruntime) of the point rounded to "
            "float32 need not violate the property")


def _is_float32(q: Fraction) -> bool:
    """Whether q is a (finite) float32 number."""
    import numpy as np

    try:
        f = np.float32(float(q))
    except OverflowError:
        return False
    with np.errstate(over="ignore"):
        return bool(np.isfinite(f)) and Fraction(float(f)) == q


def approx_note(x: Any, spec: Any, cert: str | None) -> str | None:
    """The caveat for a counterexample printed approximately (``result_text.x_numerals``: an X_i
    with no terminating decimal, e.g. a ReLU kink at 1/3), or None: the result holds decimals (the
    VNN-COMP format's numbers), the exact point the checker accepted is the certificate's."""
    if x is None:
        return None
    _, off = x_numerals(x, spec)
    if not off:
        return None
    which = ", ".join(f"X_{i}" for i in off[:4]) + (", ..." if len(off) > 4 else "")
    where = f"in the certificate {cert}" if cert else "in the certificate that --cert FILE writes"
    return (f"{which} of the counterexample {'has' if len(off) == 1 else 'have'} no terminating "
            f"decimal: printed rounded (at least 20 significant digits, inside the input box); the "
            f"exact point the checker accepted is {where}; the decimal point printed need not "
            "violate the property")


def _note_exact_point(res: Any, spec: Any = None, cert: str | None = None) -> None:
    """``exact_note``'s line on stderr (even with --quiet) for a sat whose point is no float32 one,
    and ``approx_note``'s where an X_i is printed rounded."""
    if res.verdict != "sat":
        return
    for line in (exact_note(res.x), approx_note(res.x, spec, cert)):
        if line is not None:
            print(f"note: {line}", file=sys.stderr, flush=True)


def _with_note(cert: dict[str, Any], target: Any) -> dict[str, Any]:
    """The certificate as written by --cert: with ``"unchecked_import"`` (the reason) when the
    run's import was not cross-checked against onnxruntime. The checker ignores the key: it is the
    run's record for whoever reads the file, not part of what is checked."""
    line = runtime_unchecked(target)
    return cert if line is None else {**cert, "unchecked_import": line}

def _drop_stale_cert(args: argparse.Namespace) -> None:
    """``--cert FILE`` holds this run's certificate or nothing: a file left there by an earlier run
    is removed once the inputs have loaded, so that a run ending in timeout / unknown does not leave
    an old certificate beside its verdict (``--result`` is likewise rewritten on every answer)."""
    if args.cert and os.path.isfile(args.cert):
        os.unlink(args.cert)


def _runtime_guard(target: Any, res: Any) -> None:
    """A sat whose counterexample onnxruntime's run of the file refutes becomes unknown: the
    checker judged it on the import's reading of the network, which is then not the file's."""
    why = runtime_refutes(target, res.x) if res.verdict == "sat" and res.x is not None else None
    if why is not None:
        print(f"error: the counterexample is not one for onnxruntime ({why}); reporting unknown",
              file=sys.stderr)
        res.verdict = "unknown"


def _warn_empty_boxes(spec: Any, prop: str) -> None:
    """A note on stderr when the property has no input point at all (every case's box is empty, e.g.
    an X_i's bounds swapped by a typo; the reader drops such cases): "unsat" is then true but vacuous."""
    if not spec.regions:
        print(f"note: {prop}: no input satisfies the property's input constraints (an X_i with lower "
              "bound > upper bound?): unsat holds vacuously", file=sys.stderr)


def _verify_float32(args: argparse.Namespace, target, spec, left: float, clock: Budget) -> int:
    """``--float32``: the verdict for the network run in binary32 (``verify.float32``)."""
    from .float32 import SPLITS, binary32_empty, onnxruntime_meets_at, runtime_meets, verify_float32

    try:
        res = verify_float32(target.graph, target, spec, left, progress=_cli.progress_of(args),
                             method=args.method,
                             splits=SPLITS if args.float32_splits is None else args.float32_splits,
                             column=getattr(args, "float32_column", None))
    except (ArithmeticError, ValueError, Rejected) as e:  # e.g. a value that may overflow binary32
        raise InputError(f"no float32 error bound for this network on this box: {e}") from None
    _runtime_guard(target, res)
    text = vnncomp_text(res, spec)  # (binary32 X_i: exact decimals)
    label = {"unsat": "unsat (float32-sound, checked)", "sat": "sat (float32, runtime and emulated)"}

    def say() -> None:
        print(label.get(res.verdict, res.verdict) + text[len(res.verdict):], flush=True)
        if args.result:
            atomic_write_text(args.result, text + "\n")

    if not clock.answer(say):
        return 0
    _note_unchecked(target, res.verdict)
    if res.verdict == "sat":
        try:
            ort_met = onnxruntime_meets_at(target, spec, res.x)
        except Exception:  # (a note only)
            ort_met = None
        if ort_met is False:  # (audit59: onnxruntime's float32 program is neither of the two runs)
            print("note: onnxruntime's float32 run of the file does not meet the unsafe set at this "
                  "point: the float32 sat is about torchlean's runtime and the emulation, not "
                  "onnxruntime's", file=sys.stderr, flush=True)
    if res.verdict == "unsat":
        for k, i in binary32_empty(spec):
            print(f"note: region {k}'s X_{i} interval holds no binary32 value: the float32 verdict "
                  "covers its real points rounded to binary32 (outside the region)", file=sys.stderr,
                  flush=True)
        try:
            met = runtime_meets(target, spec)
        except Exception:  # (a note only: never lose the answer's certificate to it)
            met = None
        if met is not None:  # (audit39: onnxruntime's float32 program is not the runtime's)
            print(f"note: onnxruntime's float32 run of the file meets the unsafe set at a point of "
                  f"region {met[0]} ({', '.join(f'{v:.9g}' for v in met[1][:4])}"
                  f"{', ...' if len(met[1]) > 4 else ''}): the float32 verdict is about torchlean's "
                  "runtime (numpy kernels), not onnxruntime's", file=sys.stderr, flush=True)
    if not args.quiet:
        if res.stats.get("epsilon") is not None:
            which = "" if res.stats.get("epsilon_checked") else " (largest made by the search, not checked)"
            print(f"epsilon{which}: " + " ".join(_outward.up(e, 3) for e in res.stats["epsilon"])
                  + f" ({res.stats.get('epsilon_s', 0):.2f} s)", file=sys.stderr)
        if res.stats.get("why"):
            print(f"{res.verdict}: {res.stats['why']}", file=sys.stderr)
        print(f"time: {res.stats.get('time', 0):.2f} s", file=sys.stderr)
    if args.cert and res.cert is not None and res.verdict == "unsat":
        atomic_write_text(args.cert, json.dumps(_with_note(res.cert, target), separators=(",", ":")))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ..certificates.float_vnn import KIND, check_vnn_float

    try:
        cert = parse_json(read_input(args.cert, what="certificate"))
    except ValueError as e:
        raise InputError(_cli.about(args.cert, e)) from None
    _require_verification_kind(args.cert, cert, KIND)
    with loading():
        target, spec = load_instance(args.net, args.prop)
    net = target.bg  # (a certificate for another network, or of the removed ReLU-chain format, is
    # refused by the checker's fingerprint test, with one line)
    t = time.perf_counter()
    # the caller, never the certificate, picks the replay mode and bounds its time
    if isinstance(cert, dict) and cert.get("kind") == KIND:  # float-sound: both parts replayed
        from ..certificates.errorbound import model_id

        mode = args.mode  # None: check_vnn picks each real part's mode by its size (never the cert)
        model = model_id(target.graph.to_dict())
        v = check_vnn_float(cert, net, spec, model=model, mode=mode, deadline=time.monotonic() + args.timeout)
    elif args.float32:
        print(f"rejected: --float32 needs a {KIND} certificate, got {cert.get('kind')!r}"
              if isinstance(cert, dict) else "rejected: certificate must be a JSON object")
        return 1
    else:
        mode = args.mode or replay_mode(cert, net)
        v = check_vnn(cert, net, spec, mode=mode, deadline=time.monotonic() + args.timeout)
    dt = time.perf_counter() - t
    proves = "sat" if isinstance(cert, dict) and cert.get("kind") == "vnn-sat" else "unsat"
    if v.ok and args.expect is not None and proves != args.expect:  # (a CI gate on the verdict)
        print(f"rejected: --expect {args.expect}, but the certificate proves {proves} ({v.reason})")
        return 1
    if v.ok:
        extra = f"; assumes {', '.join(v.trusted)}" if v.trusted else ""
        if isinstance(cert, dict) and cert.get("kind") == KIND:  # its epsilon, never printed below itself
            from .float32 import max_epsilons

            extra = f"; max epsilon <= {_outward.up(max(max_epsilons(cert), default=0), 3)}" + extra
        print(f"accepted: {v.reason} ({dt:.2f} s){extra}")
        _note_unchecked(target, "unsat")  # (the same caveat: the network checked is the import's)
        line = exact_note(cert.get("x")) if proves == "sat" else None  # (accepted: x is a list of numerals)
        if line is not None:
            print(f"note: {line}", file=sys.stderr, flush=True)
        return 0
    print(f"rejected: {v.reason}")
    return 1


#: the certificate kinds ``verify check`` replays (``check_vnn``, ``check_vnn_float``)
VERIFY_KINDS = ("vnn-unsat", "vnn-sat")


def _require_verification_kind(path: str, cert: Any, float_kind: str) -> None:
    """InputError (status 2, one line) for a JSON file that is no verification certificate: a
    training log, an ``errorbound`` certificate or a list was answered "rejected: certificate is for
    a different network", which sends a reader looking for the wrong network. Untrusted: it only
    refuses, before the checker (which refuses these too) runs."""
    try:
        kind = _cli.require_certificate(path, cert)
    except _cli.CliError as e:
        raise InputError(str(e)) from None
    if kind in (*VERIFY_KINDS, float_kind):
        return
    hint = f": replay it with python -m torchlean.floats check {path}" if kind.startswith("errorbound") \
        else ""
    raise InputError(f"{path}: a certificate of kind {kind!r}, not a verification certificate "
                     f"({', '.join([*VERIFY_KINDS, float_kind])}){hint}")


def cmd_bounds(args: argparse.Namespace) -> int:
    from ..certificates.core import time_limit
    from . import table

    _cli.check_writable(args.plot, "--plot")
    _cli.check_image(args.plot, "--plot")
    target, spec = load_instance(args.net, args.prop)
    _note_unchecked(target, "sat")  # (bounds of the import's network)
    for r, region in enumerate(spec.regions):
        try:
            with time_limit(time.monotonic() + args.timeout):
                if args.method == "alpha-crown":
                    low, up = table.alpha_bounds_box(target, region.lo, region.hi)
                else:
                    low, up = table.output_bounds_box(target, region.lo, region.hi, args.method)
        except OutOfTime:
            print(f"error: bounds not computed within --timeout {args.timeout:g} s", file=sys.stderr)
            return 1
        print(f"region {r} ({args.method}):")
        for j, (a, b) in enumerate(zip(low, up)):  # (printed outward: audit41)
            print(f"  Y_{j} in [{_outward.down(a, 9)}, {_outward.up(b, 9)}]")
        if args.plot and r == 0:
            _plot_bounds(args, target, region, (low, up))
    return 0


def _plot_bounds(args: argparse.Namespace, target: Any, region: Any, main: tuple) -> None:
    """``--plot``: region 0's bounds by IBP and by the asked method next to the outputs of 500 points
    sampled in the box (the runtime's float64 run of the network file)."""
    import numpy as np

    from ..floats.network import run_float
    from ..plot import plot_bounds
    from . import table
    from .network import load_graph

    lo = np.array([float(v) for v in region.lo])
    hi = np.array([float(v) for v in region.hi])
    ibp = table.output_bounds_box(target, region.lo, region.hi, "ibp")
    pts = lo + (hi - lo) * np.random.default_rng(0).uniform(size=(500, len(lo)))
    ys = run_float(load_graph(args.net), pts, np.float64)
    shown = {"ibp": ibp} if args.method == "ibp" else {"ibp": ibp, args.method: main}
    out = plot_bounds(shown, ys, args.plot, title=f"{Path(args.net).name}: region 0, 500 sampled points")
    print(f"plot: {out}")


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import ERROR, run_csv

    _cli.check_writable(args.out, "--out")
    _cli.check_not_input(args.out, "--out", args.csv)
    if args.out and os.path.exists(args.out):  # (--force would write the table over a listed file)
        from .runner import read_instances

        base = Path(args.csv).parent
        listed = {str(base / r[k]) for r in read_instances(args.csv) for k in ("onnx", "vnnlib")}
        _cli.check_not_input(args.out, "--out", *sorted(listed))
    from .runner import read_instances

    if not read_instances(args.csv):  # (an empty list "ran" silently with status 0)
        raise InputError(f"{args.csv}: no instances (expected lines onnx,vnnlib[,timeout])")
    rows = run_csv(args.csv, out=args.out, timeout=args.timeout, method=args.method,
                   progress=_cli.progress_of(args), jobs=args.jobs, force=args.force, ray=args.ray)
    failed = [r for r in rows if r["result"] == ERROR]
    if failed:  # the others ran and are kept; bad input is status 2, as for the single command
        why = failed[0]["check"].removeprefix("error: ")
        more = f" (first: {why})" if len(failed) > 1 else f": {why}"
        print(f"error: {len(failed)} of {len(rows)} instances could not be run{more}", file=sys.stderr)
        return 2
    return 0


START = [time.monotonic()]

#: the subcommands' --help descriptions (verify's own is the module docstring)
DESCRIPTIONS = {
    "check": "Replay a certificate (from --cert) with the trusted checker against the network and the "
             "property; prints accepted or rejected (exit 1).",
    "bounds": "Sound bounds of every output over each input box of the property, computed by the "
              "checker's own engine (checked by construction).",
    "run": "Run a benchmark list, one result row per instance in --out (rewritten after every "
           "instance; a rerun skips the instances already there). An instance whose files cannot be "
           "read is an error row and line, the others run, and the exit status is 2.",
}

#: command -> the example command lines its --help ends with
_NET = "tests/data/vnncomp2021/acasxu/ACASXU_run2a_1_1_batch_2000.onnx"
_PROP = "tests/data/vnncomp2021/acasxu/prop_1.vnnlib"
EXAMPLES = {
    "verify": [f"python -m torchlean.verify {_NET} {_PROP} --timeout 60 --cert cert.json",
               f"python -m torchlean.verify {_NET} {_PROP} --float32"],
    "check": [f"python -m torchlean.verify check cert.json {_NET} {_PROP} --expect unsat"],
    "bounds": [f"python -m torchlean.verify bounds {_NET} {_PROP} --method alpha-crown --plot bounds.png"],
    "run": ["python -m torchlean.verify run tests/data/vnncomp2021/acasxu/expected.csv --out res.csv -j 2"],
}


def main(argv: list[str] | None = None, command: bool = False) -> int:
    """The command line ``argv`` (default ``sys.argv[1:]``). ``command``: this process is the
    command (``python -m torchlean.verify``): verify's ``--timeout`` then counts from the process's
    start and a watchdog ends the process at it (``budget.Budget.watchdog``); otherwise from this
    call, and nothing ends the caller's process."""
    START[0] = time.monotonic()
    argv = list(sys.argv[1:] if argv is None else argv)
    sub = {"check", "bounds", "run"}
    if argv and argv[0] in sub:
        cmd = argv.pop(0)
    else:
        cmd = "verify"
    # verify's own --help shows the module docstring: the four command forms, not only its own
    p = _cli.Parser(prog="python -m torchlean.verify" + ("" if cmd == "verify" else f" {cmd}"),
                    description=__doc__ if cmd == "verify" else DESCRIPTIONS[cmd],
                    formatter_class=argparse.RawDescriptionHelpFormatter if cmd == "verify"
                    else argparse.HelpFormatter, examples=EXAMPLES[cmd])
    if cmd == "verify":
        p.add_argument("net", help="the network (ONNX)")
        p.add_argument("prop", help="the property (VNN-LIB)")
        p.add_argument("--timeout", type=_cli.timeout_s, default=116.0, metavar="T",
                       help="wall clock of the whole command in seconds, from its process start: "
                            "loading, search and the checker's replay (the search runs to T - 0.25 s, "
                            "the replay gets what is left); a verdict not checked by T is 'timeout' "
                            "(default 116)")
        p.add_argument("--cert", help="write the verdict's certificate (JSON) here; an answer without "
                       "one removes a file left there by an earlier run")
        p.add_argument("--result", help="also write the VNN-COMP result text here")
        p.add_argument("--method", choices=("crown", "forward"), default="crown",
                       help="argument bounds of the input-split search on ReLU chains: CROWN, or "
                            "IBP with one back-substitution (forward)")
        p.add_argument("--float32", action="store_true",
                       help="verify the network as run in binary32: unsat (checked) holds for "
                            "torchlean's float32 runtime at every real input of the region rounded "
                            "to binary32, kernels within 4 ulp, any summation order; "
                            "sat is a binary32 point where the runtime's run (this machine) and the "
                            "bit-exact emulation (correctly rounded, sums left to right) both meet "
                            "the unsafe set")
        p.add_argument("--float32-splits", type=_cli.splits, default=None, metavar="N",
                       help="with --float32: bisect the box up to N times (default 4096: float32.SPLITS), "
                            "each part proved with its nearest ancestor's epsilon or its own")
        p.add_argument("--float32-column", choices=("fast", "exact"), default=None,
                       help="with --float32: the rounding-error column of each part (default fast "
                            "where every node has a fast row: float64, outward rounded)")
        p.add_argument("-q", "--quiet", action="store_true", help="print only the verdict (no progress)")
        _cli.add_progress(p)
        fn = cmd_verify
    elif cmd == "check":
        p.add_argument("cert", help="the certificate (JSON, from --cert)")
        p.add_argument("net", help="the network (ONNX) it is about")
        p.add_argument("prop", help="the property (VNN-LIB) it is about")
        p.add_argument("--mode", choices=("exact", "fast"), default=None,
                       help="replay mode (default: exact for small trees, fast for large ones)")
        p.add_argument("--timeout", type=_cli.timeout_s, default=600.0, help="replay deadline (s)")
        p.add_argument("--float32", action="store_true",
                       help="accept only a float-sound (vnn-unsat-float) certificate")
        p.add_argument("--expect", choices=("sat", "unsat"), default=None,
                       help="exit 1 unless the certificate proves this verdict (an accepted sat "
                            "certificate, a counterexample, otherwise exits 0 like an unsat one)")
        fn = cmd_check
    elif cmd == "bounds":
        p.add_argument("net", help="the network (ONNX)")
        p.add_argument("prop", help="the property (VNN-LIB): its input box(es)")
        p.add_argument("--plot", metavar="PNG", help="draw region 0's IBP and --method bounds with sampled "
                       "outputs into this image (needs matplotlib: pip install 'torchlean[plot]')")
        p.add_argument("--method", choices=("ibp", "crown", "alpha-crown"), default="crown",
                       help="bounding method (default crown)")
        p.add_argument("--timeout", type=_cli.timeout_s, default=600.0,
                       help="seconds per region (default 600)")
        fn = cmd_bounds
    else:
        p.add_argument("csv", help="instances: VNN-COMP onnx,vnnlib,timeout rows or an expected.csv "
                       "(paths relative to the list's folder)")
        p.add_argument("--out", default=None,
                       help="results CSV; a rerun skips the instances already in it")
        p.add_argument("--ray", metavar="ADDRESS", default=None,
                       help="run the instances as tasks on a Ray cluster: 'local' starts one here, "
                            "'auto' or HOST:PORT joins one (pip install 'torchlean[ray]')")
        p.add_argument("-j", "--jobs", type=_cli.jobs, default=1, metavar="N",
                       help="run N instances at a time in worker processes (default 1)")
        p.add_argument("--force", action="store_true",
                       help="rerun the instances already in --out")
        p.add_argument("--timeout", type=_cli.timeout_s, default=None,
                       help="override the list's timeouts: each instance's wall clock from its "
                            "start (loading, search and replay), as the single command's --timeout")
        p.add_argument("--method", choices=("crown", "forward"), default="crown")
        p.add_argument("-q", "--quiet", action="store_true", help="no line per instance")
        _cli.add_progress(p)
        fn = cmd_run
    args = _cli.parse_args(p, argv)
    if isinstance(args, int):
        return args
    args.command = command
    keep_freed_memory()
    return _cli.guard(lambda: fn(args), (InputError, InputFileError, PropertyError, Unsupported, PoolError))


def _exit_now(status: int) -> None:
    """End the command at once: the harness counts an answer when the process ends, and the
    interpreter's teardown of a loaded network takes ~0.2 s (measured on mnistfc 256x4) that
    decided instances at the timeout's edge. Output is flushed and the exit handlers run first
    (``_files``' temporary-file sweep, logging's flush)."""
    import atexit
    import os

    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):  # (a closed or broken pipe: nothing more to say)
            pass
    atexit._run_exitfuncs()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main(command=True))
