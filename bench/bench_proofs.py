"""Proofs benchmark: discharge vs replay for the primitive library, cvc5 vs z3; and @verified
models as they grow, compositional against monolithic.

    python bench/bench_proofs.py [-j 2] [--timeout 20]
    python bench/bench_proofs.py --models [--timeout 20]

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
from typing import Any

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


def models() -> list[tuple[str, Any, tuple[int, ...]]]:
    """@verified models as they grow: MLP width and depth, CNN channels, transformer width."""
    from torchlean import nn

    def mlp(width: int, depth: int) -> Any:
        def build() -> Any:
            layers: list[Any] = [nn.Linear(2, width), nn.Tanh()]
            for _ in range(depth - 1):
                layers += [nn.Linear(width, width), nn.Tanh()]
            return nn.Sequential(*layers, nn.Linear(width, 1))
        return build

    def cnn(ch: int) -> Any:
        return lambda: nn.Sequential(nn.Conv2d(1, ch, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                     nn.Linear(ch, 2))

    out = [(f"CNN Conv2d(1,{c},3) 4x4", cnn(c), (1, 1, 4, 4)) for c in (1, 2)]
    out += [(f"MLP 2-{w}-1 (depth 1)", mlp(w, 1), (1, 2)) for w in (2, 4, 8)]
    out += [(f"MLP width 4, depth {d}", mlp(4, d), (1, 2)) for d in (2, 3)]
    out += [(f"CNN Conv2d(1,{c},3) 4x4", cnn(c), (1, 1, 4, 4)) for c in (4,)]
    out += [(f"TransformerEncoderLayer({w},2,{2 * w}) seq 2", (lambda w=w: nn.TransformerEncoderLayer(
        w, 2, 2 * w, batch_first=True)), (1, 2, w)) for w in (2,)]
    return out


def run_model(build: Any, shape: tuple[int, ...], proof: str, timeout: float) -> dict[str, Any]:
    """Derive, discharge (z3, one process) and replay one model's obligations in a fresh folder."""
    from torchlean.proofs.compose import model_obligations
    from torchlean.proofs.verified import _model_obligations

    t0 = time.perf_counter()
    gen = model_obligations if proof == "compositional" else _model_obligations
    obs = list(gen("bench", build, shape))
    derive = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        t1 = time.perf_counter()
        discharge(obs, Path(d), solver="z3", jobs=1, timeout=timeout, progress=False)
        wall = time.perf_counter() - t1
        t2 = time.perf_counter()
        top = check_one(Path(d), obs[0])  # the model's claim (it replays its node obligations)
        replay = time.perf_counter() - t2
    return {"obligations": len(obs), "derive": derive, "discharge": wall, "replay": replay,
            "status": top.status}


def _bounded(build: Any, shape: tuple[int, ...], proof: str, timeout: float) -> dict[str, Any] | None:
    """``run_model`` in a child process, killed after ``limit`` s (the derivation of a monolithic
    obligation is sympy work in the parent of discharge, which ``--timeout`` does not bound)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def target() -> None:
        child.send(run_model(build, shape, proof, timeout))

    proc = ctx.Process(target=target)  # not a daemon: discharge starts processes of its own
    proc.start()
    got = parent.recv() if parent.poll(LIMIT) else None
    proc.kill()
    proc.join()
    return got


LIMIT = 90.0


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return f"> {LIMIT:.0f} s (killed)"
    return f"{r['obligations']}, {r['derive'] + r['discharge']:.1f}, {r['replay']:.2f}, {r['status']}"


def main_models(timeout: float) -> None:
    print("| model | compositional: obligations, derive + discharge (s), replay (s), status "
          "| monolithic: obligations, derive + discharge (s), replay (s), status "
          "| derive + discharge, mono/comp |")
    print("|---|---|---|---|")
    for label, build, shape in models():
        c = _bounded(build, shape, "compositional", timeout)
        m = _bounded(build, shape, "monolithic", timeout)
        tc = c["derive"] + c["discharge"] if c else LIMIT
        tm = m["derive"] + m["discharge"] if m else LIMIT
        ratio = f"{tm / tc:.2f}" if c and m else (f"> {tm / tc:.2f}" if c else "n/a")
        print(f"| {label} | {_cell(c)} | {_cell(m)} | {ratio} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--solvers", nargs="+", default=["cvc5", "z3"])
    ap.add_argument("--models", action="store_true", help="@verified models, compositional vs monolithic")
    args = ap.parse_args()
    if args.models:
        import torchlean  # noqa: F401

        main_models(args.timeout)
        return
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
