"""Proofs benchmark: discharge vs replay for the primitive library, cvc5 vs z3.

    python bench/bench_proofs.py [-j 2] [--timeout 20]

For each solver: discharge every obligation (solver + certificate search, in worker processes)
into a fresh directory, then replay every artifact through the trusted checker. Prints a
Markdown table (the one in bench/README.md, "Proofs").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torchlean.proofs.artifacts import check_one  # noqa: E402
from torchlean.proofs.cli import collect  # noqa: E402
from torchlean.proofs.discharge import discharge  # noqa: E402


def run(solver: str, jobs: int, timeout: float) -> dict[str, float]:
    obs = collect()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        reports = discharge(obs, Path(d), solver=solver, jobs=jobs, timeout=timeout, progress=False)
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        outcomes = [check_one(Path(d), ob) for ob in obs]
        replay = time.perf_counter() - t1
    count = {s: sum(r.status == s for r in reports) for s in ("proved", "trusted", "refuted")}
    return {
        "obligations": len(obs), "wall": wall, "solver": sum(r.solver_seconds for r in reports),
        "search": sum(r.search_seconds for r in reports), "replay": replay,
        "solver_unsat": sum(1 for r in reports if r.status in ("proved", "trusted")
                            and not r.message.startswith("certificate checked;")),
        "checked": sum(o.status == "checked" for o in outcomes),
        "trusted": sum(o.status == "trusted" for o in outcomes), **count,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--solvers", nargs="+", default=["cvc5", "z3"])
    args = ap.parse_args()
    print("| solver | obligations | solver unsat | checked | solver-trusted | refuted | solver time (s) "
          f"| certificate search (s) | discharge wall, -j {args.jobs} (s) | replay (s) "
          "| replay / discharge |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for solver in args.solvers:
        r = run(solver, args.jobs, args.timeout)
        print(f"| {solver} | {r['obligations']} | {r['solver_unsat']} | {r['checked']} | {r['trusted']} "
              f"| {r['refuted']} | {r['solver']:.1f} | {r['search']:.1f} | {r['wall']:.1f} "
              f"| {r['replay']:.1f} | {r['replay'] / r['wall']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
