"""python -m torchlean.floats {bound,fpcore,run,lemmas,check}

  bound MODEL --box LO:HI[,LO:HI...] | --vnnlib FILE  [--format float32] [--samples N] [--cert OUT]
        [--splits N] [--ranges fast|crown|ibp]
      certified |float - real| bound per output (errorbound certificate, replayed here) and the
      observed max error over sampled points (float32, float16, bfloat16). MODEL: a graph JSON file
      (bridge.save_graph(tl.trace(model, x), "net.json")) or an ONNX file; any graph the runtime or
      the ONNX importer builds (one entry per primitive).
      --splits N: bisect the box adaptively up to N times (errorbound-split certificate: one
      bound per sub-box, epsilon = their max; much tighter on large boxes; costs about 2N + 1
      unsplit bounds to generate and N + 1 to replay).
  fpcore FILE [--samples N] [--round-inputs]   binary64 round-off bounds of FPCore benchmarks
  run MODEL --input X1,X2,... [--format bfloat16] [--mode rne]   bit-exact emulated execution
  lemmas [--timeout S] [--direct]   rounding lemmas: 8-bit exhaustive (checker), SMT parts (cvc5 + z3,
      solver-trusted) and each lemma's status; --direct also runs the undivided div/sqrt statements
  check CERT.json [--model MODEL]   replay a certificate with the trusted checker; --model: and
      require an errorbound certificate's graph to be MODEL's (its fingerprint)
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .. import _cli, _outward
from .._cli import CliError
from .._files import InputFileError, atomic_write_text, read_input

#: the largest FPCore file read (bytes)
MAX_FPCORE_BYTES = 4 * 1024 * 1024


def _inputs(g: Any) -> int:
    """The size of the model's one input; CliError for a graph without inputs or outputs."""
    if not getattr(g, "inputs", None) or not getattr(g, "outputs", None):
        raise CliError("the model has no inputs or no outputs (an empty graph)")
    return int(np.prod(g.inputs[0].shape))


def load_model(spec: str) -> Any:
    """The graph of ``spec``: a graph JSON file (``.json``, docs/ir-json.md) or an ONNX file
    (``.onnx``); CliError (one line) for anything else."""
    from ..spec.graph import Graph, GraphError

    p = Path(spec)
    if p.is_dir():  # (said "expected a graph JSON or an ONNX file" of a folder)
        raise CliError(f"{spec}: a directory; give a graph JSON (.json) or an ONNX (.onnx) file")
    if p.suffix not in (".json", ".onnx"):
        raise CliError(f"{spec}: expected a graph JSON (.json) or an ONNX (.onnx) file")
    if not p.exists():
        raise CliError(f"{spec}: no such file")
    if not p.is_file():
        raise CliError(f"{spec}: not a regular file")
    if p.stat().st_size == 0:  # (an empty .onnx read as "imports no default-domain opset")
        raise CliError(f"{spec}: an empty file (0 bytes)")
    if p.suffix == ".json":
        try:
            return Graph.from_json(read_input(p, what="graph JSON file"))
        except (GraphError, InputFileError) as e:
            raise CliError(_cli.about(spec, e)) from None
    try:
        from ..bridge.onnx import load_onnx
    except ImportError as e:
        raise CliError(f"ONNX import unavailable: {e}") from None
    try:
        return load_onnx(p)
    except Exception as e:  # the loader's own errors, shown in one line
        raise CliError(_cli.about(spec, e)) from None


def parse_box(text: str, n: int) -> list[tuple[Fraction, Fraction]]:
    from ..certificates.core import decimal

    try:
        parts = [tuple(decimal(v) for v in item.split(":")) for item in text.split(",")]
    except (ValueError, ZeroDivisionError):
        raise CliError(f"bad --box {text!r}: expected LO:HI[,LO:HI...]") from None
    if any(len(p) != 2 or p[0] > p[1] for p in parts):
        raise CliError(f"bad --box {text!r}: each item is LO:HI with LO <= HI")
    if len(parts) == 1:
        parts = parts * n
    if len(parts) != n:
        raise CliError(f"--box has {len(parts)} intervals, the model has {n} inputs")
    return parts  # type: ignore[return-value]


def vnnlib_box(path: str) -> list[tuple[Fraction, Fraction]]:
    """The property's input box with its exact decimal ends (the float64 nearest to 0.1 lies above
    it: a lower bound of 0.1 read as a float left the point 0.1 itself outside the certified box);
    for a property with several boxes, their hull, so that the bound covers every one."""
    from ..bridge.vnnlib import parse_vnnlib

    regions = parse_vnnlib(path).regions
    if not regions:
        raise CliError(f"{path}: no input satisfies the property's input constraints")
    n = len(regions[0].lower_exact)
    return [(min(r.lower_exact[i] for r in regions), max(r.upper_exact[i] for r in regions))
            for i in range(n)]


def cmd_bound(a: argparse.Namespace) -> int:
    from ..certificates import check
    from .errorbound import bound_certificate, epsilons, observed_error

    _cli.check_writable(a.cert, "--cert")
    _cli.check_not_input(a.cert, "--cert", a.model, a.vnnlib)
    g = load_model(a.model)
    n = _inputs(g)
    if not getattr(g, "nodes", None):
        raise CliError("the model has no operations (an empty graph): nothing to bound")
    if a.box and a.vnnlib:
        raise CliError("give --box or --vnnlib, not both")
    box = vnnlib_box(a.vnnlib) if a.vnnlib else parse_box(a.box or "", n) if a.box else None
    if box is None:
        raise CliError("give --box or --vnnlib")
    if len(box) != n:
        raise CliError(f"--vnnlib {a.vnnlib} has {len(box)} inputs, the model has {n}")
    from ..certificates.bound_graph import Unsupported
    from ..progress import watch
    from .errorbound import native_format

    try:
        native_format(g, a.format)
    except Unsupported as e:  # (audit64: a bound of the graph run in --format, not of its own run)
        print(f"note: {e}; this bound is of the graph run in {a.format} (run_graph(dtype=...)), not of "
              "the network's own run", file=sys.stderr, flush=True)
    stage = {"stage": "error bound"}  # long work (minutes on a large box) shows where it is
    with watch(lambda: dict(stage), "floats bound", enabled=_cli.progress_of(a)):
        cert = bound_certificate(g, box, a.format, a.mode, splits=a.splits, ranges=a.ranges, column=a.column)
        stage["stage"] = "checker replay"
        v = check(cert)
        if not v.ok:
            raise CliError(f"certificate did not replay: {v.reason}")
        eps = epsilons(cert)
        dtype = _dtype(a.format)
        stage["stage"] = f"sampling {a.samples} points"
        # numpy's and ml_dtypes' kernels round to nearest: a sample in another mode would be a run
        # of a different program, printed as if it were this one's (``floats run --mode`` emulates)
        sampled = a.samples and dtype is not None and a.mode == "rne"
        obs = observed_error(g, box, a.samples, dtype=dtype) if sampled else None
        stage["stage"] = "done"
    split = ""
    if cert["kind"] == "errorbound-split":
        from .splitbound import leaves

        split = f", {len(leaves(cert['tree']))} sub-boxes"
    print(f"format {a.format} ({a.mode}); certificate replayed by the checker ({v.checked} steps{split})")
    print(f"output  epsilon (certified)   observed max ({a.format} vs real)   epsilon/observed")
    for j, e in enumerate(eps):
        if obs is None:
            print(f"{j:6d}  {_outward.up(e, 7, 'e')}")
        else:
            o = obs.max_error[j]
            ratio = f"{float(e) / o:.3g}" if o > 0 else "inf"
            print(f"{j:6d}  {_outward.up(e, 7, 'e')}          {o:.6e} (+-{obs.reference_error[j]:.1e})"
                  f"       {ratio}")
    if obs is not None:
        print(f"observed over {obs.points} sampled points; reference: binary64 runtime with its own "
              "certified bound (+-)")
    elif a.samples and dtype is not None:
        print(f"observed: not sampled (the runtime's {a.format} kernels round to nearest, not {a.mode}; "
              f"`python -m torchlean.floats run MODEL --input ... --mode {a.mode}` emulates one point)")
    # a sampled error above ε (beyond the binary64 reference's own certified error) contradicts a
    # replayed certificate: a bug in the checker or in what it was told the run computes. Said
    # loudly, exit 1, and no certificate file written.
    over = [] if obs is None else [j for j, e in enumerate(eps)
                                   if obs.max_error[j] - obs.reference_error[j] > float(e)]
    for j in over:
        print(f"error: output {j}: the observed error {obs.max_error[j]:.6e} exceeds the certified epsilon "
              f"{_outward.up(eps[j], 7, 'e')}: the claim is contradicted (a torchlean bug: please report it)",
              file=sys.stderr)
    if over:
        return 1
    if a.cert:
        atomic_write_text(a.cert, json.dumps(cert))
        print(f"certificate written to {a.cert}")
    return 0


#: the numpy (or ml_dtypes) type the runtime runs each named format of the checker's table in
NUMPY_TYPES = {"binary32": "float32", "binary16": "float16", "bfloat16": "bfloat16",
               "float8_e4m3fn": "float8_e4m3fn", "float8_e5m2": "float8_e5m2"}


def _dtype(fmt: str) -> Any:
    """The numpy dtype the runtime runs format ``fmt`` (a name or alias of the checker's table:
    ``float32``, ``e4m3``, ...) in, for the observed error; None (not sampled) for binary64, an
    eXmY format, or a type without ml_dtypes or whose values are not exactly the format's."""
    from ..certificates.rounding import get_format

    try:
        f = get_format(fmt)
    except ValueError:
        return None
    name = NUMPY_TYPES.get(f.name)
    if name is None:
        return None
    try:
        import ml_dtypes
    except ImportError:
        return getattr(np, name, None) if name in ("float32", "float16") else None
    dt = getattr(np, name, None) or getattr(ml_dtypes, name)
    return dt if same_values(dt, f) else None


def same_values(dt: Any, f: Any) -> bool:
    """Whether numpy type ``dt`` has exactly the values of checker format ``f``: exponent and
    fraction bits, largest finite and smallest positive value, and infinities or none (OCP
    float8_e4m3fn has none: its top exponent holds normal numbers). An observed error sampled in
    another type would be printed next to a bound it does not belong to."""
    import ml_dtypes

    fi = ml_dtypes.finfo(dt)
    has_inf = bool(np.isinf(np.array(np.inf, np.float32).astype(dt)))
    return ((fi.nexp, fi.nmant) == (f.ebits, f.mbits) and float(fi.max) == f.max_finite
            and float(fi.smallest_subnormal) == f.min_positive and f.subnormals and has_inf == f.has_inf)


def cmd_fpcore(a: argparse.Namespace) -> int:
    from .fpbound import analyse
    from .fpcore import FPCoreError, to_benchmarks
    from .fpsample import observed

    try:
        benches = to_benchmarks(read_input(a.file, MAX_FPCORE_BYTES, what="FPCore file"))
    except InputFileError as e:
        raise CliError(str(e)) from None
    except FPCoreError as e:
        raise CliError(f"{a.file}: {e}") from None
    if not benches:  # (an empty or comment-only file: a header and status 0 would read as "all fine")
        raise CliError(f"{a.file}: no FPCore benchmarks in the file")
    print(f"{'benchmark':20s} {'bound (binary64)':>18s} {'observed':>12s} {'points':>7s}")
    for b in benches:
        if b.unsupported:
            print(f"{b.name:20s} unsupported: {b.unsupported}")
            continue
        if b.precision != "binary64":
            print(f"{b.name:20s} unsupported: precision {b.precision}")
            continue
        r = analyse(b, round_inputs=a.round_inputs)
        bound = "none in budget" if r.bound == float("inf") else _outward.up(r.bound, 5, "e")
        obs, pts = observed(b, a.samples) if a.samples and r.bound != float("inf") else (float("nan"), 0)
        flag = "  UNSOUND" if obs > r.bound else ""
        print(f"{b.name:20s} {bound:>18s} {obs:12.4e} {pts:7d}{flag}")
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from .emulate import emulate

    g = load_model(a.model)
    n = _inputs(g)
    try:
        x = np.array([float(v) for v in a.input.split(",")])
    except ValueError:
        raise CliError(f"bad --input {a.input!r}") from None
    if x.size != n:
        raise CliError(f"--input has {x.size} values, the model has {n}")
    out = emulate(g, {g.inputs[0].name: x.reshape(g.inputs[0].shape)}, a.format, a.mode)
    for name, y in zip(g.outputs, out):
        print(name, " ".join(repr(float(v)) for v in np.ravel(y)))
    return 0


def cmd_lemmas(a: argparse.Namespace) -> int:
    from ..certificates import check
    from . import lemmas as L

    failed = 0  # (a rejected, refuted or unproved lemma: exit 1, like proofs check; it was 0)
    for cert in L.exhaustive_certificates():
        st = cert["statement"]
        v = check(cert)
        state = f"checked ({v.checked} cases)" if v.ok else f"REJECTED: {v.reason}"
        failed += not v.ok
        print(f"{st['format']['name']:15s} {st['op']:5s} exhaustive: {state}")
    if a.timeout > 0:
        records = {}
        ops = ("div", "sqrt") if a.direct else ()
        direct = [L.obligation(f, op, "direct") for f in L.FORMATS for op in ops]
        for ob in [*L.lemma_obligations(), *direct]:
            rec = records[ob.name] = L.discharge(ob, a.timeout)
            print(f"{ob.subject:36s} z3: {rec['z3']['result']} ({rec['z3']['time_s']} s)  "
                  f"cvc5: {rec['cvc5']['result']} ({rec['cvc5']['time_s']} s)  -> {rec['status']}")
        for f in L.FORMATS:
            for op in L.OPS:
                status = L.lemma_status(f, op, records)
                failed += not status.startswith("solver-trusted")
                print(f"lemma {f:9s} {op:5s}: {status}")
    if failed:
        print(f"error: {failed} lemma(s) rejected, refuted or not proved by both solvers "
              "(see the lines above)", file=sys.stderr)
        return 1
    return 0


def cmd_check(a: argparse.Namespace) -> int:
    from ..certificates import check
    from ..certificates.core import parse_json

    try:
        cert = parse_json(read_input(a.cert, what="certificate"))
    except InputFileError as e:
        raise CliError(str(e)) from None
    except ValueError as e:
        raise CliError(_cli.about(a.cert, e)) from None
    _cli.require_certificate(a.cert, cert)  # (a list or a training log: bad input, not "REJECTED")
    import time

    from ..certificates.core import time_limit

    if a.model:  # the certificate carries its graph: say whether it is this model's
        stmt = cert.get("statement") if isinstance(cert, dict) else None
        if not isinstance(stmt, dict) or stmt.get("model") != load_model(a.model).fingerprint():
            print(f"REJECTED: the certificate is not about {a.model} (model fingerprint differs)")
            return 1
    with time_limit(time.monotonic() + a.timeout):  # past it: not accepted
        v = check(cert)
    print(f"{'accepted' if v.ok else 'REJECTED'}: checked {v.checked}, solver-trusted "
          f"{sum(v.trusted.values())}{'; ' + v.reason if v.reason else ''}")
    return 0 if v.ok else 1


_NET = "tests/data/vnncomp2021/test/test_small.onnx"  # (seconds; ACAS Xu's prop_1 box: minutes)
_PROP = "tests/data/vnncomp2021/test/test_small.vnnlib"


def main(argv: list[str] | None = None) -> int:
    from ..certificates.rounding import MODES

    ap = _cli.Parser(prog="python -m torchlean.floats", description=__doc__,
                     examples=[f"python -m torchlean.floats bound {_NET} --vnnlib {_PROP}",
                               "python -m torchlean.floats check eps.json"],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    fmt_help = ("binary32 (default), binary16, bfloat16, float8_e4m3fn, float8_e5m2, binary64 (or "
                "float32, float16, ...) or eXmY")
    b = sub.add_parser("bound", help="certified |float - real| bound per output over a box",
                       description="Certified |float - real| bound per output over an input box (an "
                                   "errorbound certificate, replayed here by the checker) and the error "
                                   "observed on sampled points.",
                       examples=[f"python -m torchlean.floats bound {_NET} --vnnlib {_PROP} --cert eps.json",
                                 "python -m torchlean.floats bound net.json --box -1:1 --format bfloat16"])
    b.add_argument("model", help="a graph JSON (.json) or ONNX (.onnx) file")
    b.add_argument("--box", help="LO:HI for every input, or one LO:HI per input, comma-separated")
    b.add_argument("--vnnlib", metavar="FILE", help="take the input box from this VNN-LIB property")
    b.add_argument("--format", default="binary32", help=fmt_help)
    b.add_argument("--mode", default="rne", choices=MODES, help="rounding mode (default rne)")
    b.add_argument("--samples", type=_cli.samples, default=10_000,
                   help="points sampled for the observed error (default 10000; 0: none)")
    b.add_argument("--cert", metavar="OUT", help="write the certificate (JSON) here")
    _cli.add_progress(b)
    b.add_argument("--splits", type=_cli.splits, default=0, metavar="N",
                   help="bisect the box adaptively up to N times (errorbound-split certificate; default 0)")
    b.add_argument("--ranges", choices=("fast", "crown", "ibp"), default=None,
                   help="real ranges: the exact engine's CROWN (default up to 1,000 nonlinear elements: "
                        "nothing assumed), fast (IBP met with the fast engine's CROWN; the default above "
                        "that, replay assumes IEEE float64 and libm), or IBP")
    b.add_argument("--column", choices=("fast", "exact"), default=None,
                   help="the rounding-error column: fast (float64, outward rounded: milliseconds per "
                        "walk; default with fast ranges where every node has a fast row) or exact")
    f = sub.add_parser("fpcore", help="binary64 round-off bounds of FPCore benchmarks",
                       description="Binary64 round-off bound of each FPCore benchmark in FILE, next to "
                                   "the error observed on sampled points.",
                       examples=["python -m torchlean.floats fpcore torchlean/floats/data/rosa.fpcore "
                                 "--samples 10000"])
    f.add_argument("file", help="FPCore benchmarks (.fpcore)")
    f.add_argument("--samples", type=_cli.samples, default=2000,
                   help="points sampled for the observed error (default 2000)")
    f.add_argument("--round-inputs", action="store_true", help="the inputs are rounded to binary64 too")
    r = sub.add_parser("run", help="bit-exact emulated execution in a format",
                       description="Run MODEL at one input, every operation rounded as FORMAT would "
                                   "(bit-exact emulation); prints each output.",
                       examples=[f"python -m torchlean.floats run {_NET} --input 0.5 --format bfloat16"])
    r.add_argument("model", help="a graph JSON (.json) or ONNX (.onnx) file")
    r.add_argument("--input", required=True, help="the input's values, comma-separated (row-major)")
    r.add_argument("--format", default="binary32", help=fmt_help)
    r.add_argument("--mode", default="rne", choices=MODES, help="rounding mode (default rne)")
    lm = sub.add_parser("lemmas", help="the rounding lemmas and their status",
                        description="The rounding lemmas |fl(x op y) - x op y| <= u|x op y| + eta: the 8-bit "
                                    "formats checked exhaustively, the others' SMT parts with cvc5 and z3. "
                                    "Exit 1 unless every lemma is checked or proved by both solvers.",
                        examples=["python -m torchlean.floats lemmas --timeout 60"])
    lm.add_argument("--timeout", type=_cli.number(float, 0.0, _cli.MAX_TIMEOUT_S, low_open=False,
                                                  what="number of seconds"),
                    default=0.0, help="SMT seconds per solver (0: skip SMT)")
    lm.add_argument("--direct", action="store_true", help="also the undivided div and sqrt statements")
    c = sub.add_parser("check", help="replay a certificate with the trusted checker",
                       description="Replay a floats certificate (errorbound, errorbound-split, ...) "
                                   "with the trusted checker; exit 1 when it is rejected.",
                       examples=[f"python -m torchlean.floats check eps.json --model {_NET}"])
    c.add_argument("cert", help="the certificate (JSON)")
    c.add_argument("--timeout", type=_cli.timeout_s, default=600.0, help="replay deadline (s)")
    c.add_argument("--model", help="also require the certificate to be about this model (errorbound)")
    a = _cli.parse_args(ap, argv)
    if isinstance(a, int):
        return a

    def run() -> int:
        from ..certificates.rounding import get_format

        if getattr(a, "format", None):
            a.format = get_format(a.format).name
        return {"bound": cmd_bound, "fpcore": cmd_fpcore, "run": cmd_run, "lemmas": cmd_lemmas,
                "check": cmd_check}[a.cmd](a)

    from ..certificates.core import Rejected

    return _cli.guard(run, (ValueError, KeyError, Rejected, RecursionError))


if __name__ == "__main__":
    sys.exit(main())
