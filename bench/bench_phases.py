"""Where one ``python -m torchlean.verify NET PROP [--timeout T]`` run goes, per phase.

    OPENBLAS_NUM_THREADS=1 python bench/bench_phases.py NET.onnx PROP.vnnlib --timeout 60

Runs the CLI in process (``main(command=True)``: its own budget, watchdog and replay) with
wall-clock timers around the named functions below (inclusive, the outermost call only, summed
over calls), and prints on stderr, after the CLI's own output, one line ``PHASES {json}`` of
seconds: the import of the CLI, each phase, and the total from this script's start. No profiler:
the timers cost microseconds per call (fixed31, bench/README.md).
"""

from __future__ import annotations

import time

T0, TM = time.perf_counter(), time.monotonic()

import functools  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

t_imp0 = time.perf_counter()
import torchlean.verify.__main__ as M  # noqa: E402

T_IMPORT = time.perf_counter() - t_imp0

#: (name, module, function): every module holding the function under its name gets the timer
PHASES = [
    ("load_spec", "torchlean.verify.network", "load_spec"),
    ("parse_property", "torchlean.certificates.property", "parse_property"),
    ("bridge", "torchlean.verify.network", "_bridge_spec"),
    ("load_graph", "torchlean.verify.network", "load_graph"),
    ("import_onnx", "torchlean.bridge.onnx", "_onnx"),
    ("lower", "torchlean.certificates.lower", "lower"),
    ("compiled", "torchlean.certificates.fast_engine", "compiled"),
    ("ort", "torchlean.verify.network", "runtime_mismatch"),
    ("load_instance", "torchlean.verify.table", "load_instance"),
    ("solve", "torchlean.verify.bab", "solve"),
    ("attack", "torchlean.verify.attack", "search"),
    ("check_vnn", "torchlean.certificates.bounds", "check_vnn"),
    ("objective", "torchlean.certificates.engine", "objective"),
    ("fingerprint", "torchlean.certificates.bound_graph", "fingerprint"),
]
ACC = {name: 0.0 for name, _, _ in PHASES}


def _timed(orig, name: str):
    depth = [0]

    @functools.wraps(orig)
    def run(*a, **k):
        depth[0] += 1
        t = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                ACC[name] += time.perf_counter() - t

    return run


def main() -> None:
    for name, mod, fn in PHASES:
        orig = getattr(importlib.import_module(mod), fn)
        wrapped = _timed(orig, name)
        for m in list(sys.modules.values()):
            if m is not None and getattr(m, "__name__", "").startswith("torchlean"):
                for attr, v in list(vars(m).items()):
                    if v is orig:
                        setattr(m, attr, wrapped)

    def finish(status: int) -> None:
        out = {k: round(v, 3) for k, v in ACC.items()}
        out.update(import_cli=round(T_IMPORT, 3), total=round(time.perf_counter() - T0, 3))
        sys.stdout.flush()
        print("PHASES " + json.dumps(out), file=sys.stderr, flush=True)
        os._exit(status)

    M._exit_now = finish
    M.START[0] = TM  # (the CLI's --timeout counts from this script's start)
    sys.argv = ["torchlean.verify"] + sys.argv[1:]
    M.main(command=True)


if __name__ == "__main__":
    main()
