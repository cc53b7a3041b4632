"""FPBench rosa.fpcore: certified binary64 round-off bounds vs published FPTaylor/Daisy, with the
observed error over sampled points (binary64 vs exact). Run: python bench/bench_fpbench.py [N]"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from torchlean.floats.fpbound import analyse
from torchlean.floats.fpcore import to_benchmarks
from torchlean.floats.fpsample import observed

DATA = Path(__file__).resolve().parents[1] / "torchlean" / "floats" / "data" / "rosa.fpcore"
#: published binary64 bounds (SOURCE.md): FPTaylor, Daisy
PUBLISHED = {
    "doppler1": (1.36e-13, 4.19e-13), "rigidBody1": (2.95e-13, 2.95e-13),
    "verhulst": (2.50e-16, 4.94e-16), "predatorPrey": (1.59e-16, 2.15e-16),
    "carbonGas": (8.27e-09, 4.28e-08), "sineOrder3": (7.95e-16, 1.45e-15),
    "sqroot": (5.02e-16, None), "turbine1": (None, 8.65e-14),
}


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def main(n: int = 10_000) -> None:
    print("| benchmark | ours (exact inputs) | ours (rounded inputs) | FPTaylor | Daisy | "
          "rounded/FPTaylor | observed max | bound/observed | time s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b in to_benchmarks(DATA.read_text()):
        if b.unsupported:
            print(f"| {b.name} | unsupported ({b.unsupported}) | | | | | | | |")
            continue
        t = time.time()
        r = analyse(b)
        ri = analyse(b, round_inputs=True)
        obs_u, pts = observed(b, n) if r.bound != float("inf") else (float("nan"), 0)
        obs = obs_u
        near = ""
        if b.constraints and r.bound != float("inf"):  # uniform points miss the :pre boundary
            obs_b, pts_b = observed(b, n, near_boundary=True)
            near = f"; {fmt(obs_b)} near :pre boundary ({pts_b} pts)"
            obs = max(obs, obs_b)
        dt = time.time() - t
        ft, dz = PUBLISHED.get(b.name, (None, None))
        ratio = f"{ri.bound / ft:.2f}" if ft else "—"
        sound = "" if not (obs > r.bound) else " **UNSOUND**"
        ob = f"{r.bound / obs:.1f}" if obs and obs == obs and r.bound != float("inf") else "—"
        print(f"| {b.name} | {fmt(r.bound) if r.bound != float('inf') else 'none (budget)'} | "
              f"{fmt(ri.bound)} | {fmt(ft)} | {fmt(dz)} | {ratio} | {fmt(obs_u)} ({pts} pts){near}{sound} | "
              f"{ob} | {dt:.1f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
