"""Root bounds with and without per-target slopes on the intermediate bounds, same run.

    OPENBLAS_NUM_THREADS=1 python bench/bench_target_slopes.py --data /work/shared/data \\
        --benchmark mnistfc --rows 14,20,21,28 [--steps 20]

    OPENBLAS_NUM_THREADS=1 python bench/bench_target_slopes.py --data /work/shared/data \\
        --benchmark sri_resnet_a [--steps 10 --max-rows 96]

Per instance of ``expected.csv`` (rows: 1-based data rows): the root box's default CROWN forward
pass (``fast_engine.forward``) and every disjunct's best row bound (``bound_forms``), then
``alpha_targets.target_slopes`` (slopes per (relu node, target node), no time cap; on a graph
``graph_relu.fully_connected`` rejects, ``conv_target_slopes`` with ``--steps`` and
``--max-rows``, as the search calls it) and the same bounds from its forward state. Prints the
worst disjunct bound, the open disjuncts, the total shortfall below 0 and its ratio after/before
(the search keeps the slopes when it falls), the unstable elements per relu node and the seconds
of each; every bound is the checker's fast engine's.

With ``--backsub``: per relu target, one bound with gradients of its unstable rows by the dense
``alpha.Backsub`` and by the node-wise ``alpha_targets.NodeBacksub``, seconds and differences.

With ``--bab T``: ``graph_relu.bab_region`` (no attack) for T seconds with ``--flag`` on and off
(order alternating), in this process: verdict, subproblems bounded, leaves.

With ``--search T``: per instance, ``python -m torchlean.verify NET PROP --timeout T`` twice, in
separate processes, with and without the per-target slopes (``graph_relu.PER_TARGET``; ``--flag
NODEWISE``: the subproblems' α/β by ``NodeBacksub`` or ``Backsub``), the order
alternating from instance to instance; prints each verdict (printed by the CLI only after its
checker accepted the certificate), its wall time, and WRONG for a verdict against the published one.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torchlean.certificates import fast_engine as fe  # noqa: E402
from torchlean.verify import alpha, alpha_targets  # noqa: E402
from torchlean.verify import graph_relu as gr  # noqa: E402
from torchlean.verify.table import load_instance  # noqa: E402

DIRS = {"mnistfc": "vnncomp2021/mnistfc", "oval21": "vnncomp2021/oval21",
        "collins_rul_cnn": "vnncomp2022/collins_rul_cnn",
        "sri_resnet_a": "vnncomp2022/sri_resnet_a"}


def unstable(bg, st) -> list[int]:
    """Unstable elements per relu node (argument bounds straddling 0)."""
    return [int(((st.arg[k][0][0] < 0) & (st.arg[k][1][0] > 0)).sum()) for k in gr.relu_nodes(bg)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--benchmark", default="mnistfc", choices=sorted(DIRS))
    ap.add_argument("--rows", default="", help="1-based data rows of expected.csv (default: all unsat)")
    ap.add_argument("--steps", type=int, default=0, help="Adam steps per target (default: the search's)")
    ap.add_argument("--max-rows", type=int, default=alpha_targets.CONV_ROWS, help="rows per target (conv)")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--search", type=float, default=0.0, help="run the CLI with this timeout instead")
    ap.add_argument("--flag", default="PER_TARGET", help="--search: the graph_relu flag set on / off")
    ap.add_argument("--bab", type=float, default=0.0,
                    help="graph_relu.bab_region for this many seconds, --flag on / off, in-process")
    ap.add_argument("--backsub", action="store_true", help="time the two float back-substitutions instead")
    a = ap.parse_args()
    d = Path(a.data) / DIRS[a.benchmark]
    rows = list(csv.DictReader(open(d / "expected.csv")))
    pick = [int(r) for r in a.rows.split(",")] if a.rows else [i + 1 for i, r in enumerate(rows)
                                                               if r["expected"] == "unsat"]
    if a.search:
        return search(d, rows, pick, a.search, a.flag)
    for n in pick:
        r = rows[n - 1]
        t, spec = load_instance(d / r["onnx"], d / r["vnnlib"])
        bg, region = t.bg, spec.regions[0]
        fg, box = fe.compiled(bg), fe.boxes([region.lo], [region.hi])
        t0 = time.perf_counter()
        st = fe.forward(fg, *box, "crown")
        djs = [gr.Disjunct(bg, region, j) for j in range(len(region.disjuncts))]
        m0 = np.array([fe.bound_forms(st, dj.F)[0].max() for dj in djs])
        t1 = time.perf_counter()
        if a.bab:
            for on in (True, False) if n % 2 else (False, True):
                setattr(gr, a.flag, on)
                stats: dict = {}
                t2 = time.perf_counter()
                out = gr.bab_region(bg, region, t2 + a.bab, stats)
                verdict = "proved" if isinstance(out, dict) else "open" if out is None else "cex"
                print(f"{n} {r['vnnlib']}: {a.flag} {on}: {verdict} {time.perf_counter() - t2:.1f} s, "
                      f"{stats.get('subproblems', 0)} subproblems, {stats.get('leaves', 0)} leaves",
                      flush=True)
            continue
        if a.backsub:
            backsubs(bg, fg, st, n)
            continue
        if gr.fully_connected(bg):
            sl, st2 = alpha_targets.target_slopes(bg, fg, box, st, {}, lambda f: f(), lambda: False,
                                                  a.steps or 20, a.lr)
        else:
            sl, st2 = alpha_targets.conv_target_slopes(bg, fg, box, st, {}, lambda f: f(), lambda: False,
                                                       a.steps or alpha_targets.CONV_STEPS, a.lr, a.max_rows)
        m1 = np.array([fe.bound_forms(st2, dj.F)[0].max() for dj in djs])
        t2 = time.perf_counter()
        used = sum(int((~np.isnan(s)).sum()) for s, _ in sl.values())
        s0, s1 = -np.minimum(m0, 0).sum(), -np.minimum(m1, 0).sum()
        print(f"{n} {r['onnx']} {r['vnnlib']}: default worst {m0.min():.3f} open {(m0 <= 0).sum()} "
              f"shortfall {s0:.3f} unstable {unstable(bg, st)} ({t1 - t0:.1f} s) | per-target worst "
              f"{m1.min():.3f} open {(m1 <= 0).sum()} shortfall {s1:.3f} (ratio {s1 / max(s0, 1e-300):.3f}) "
              f"unstable {unstable(bg, st2)} ({t2 - t1:.1f} s, {used} slopes, {len(sl)} pairs)", flush=True)


def backsubs(bg, fg, st, n: int) -> None:
    """Per relu target t after the first: one bound with gradients of t's unstable argument rows
    (lower and upper) at the default slopes by ``alpha.Backsub`` (dense over the graph's variables)
    and by ``alpha_targets.NodeBacksub`` (per node, the fast engine's sparse forms): seconds each
    and the largest difference of the bounds and of the gradients."""
    from torchlean.certificates.fast_functions import FAST

    for t in gr.relu_nodes(bg)[1:]:
        l, u = st.arg[t][0][0], st.arg[t][1][0]
        un = np.nonzero((l < 0) & (u > 0))[0]
        if not un.size:
            continue
        t0 = time.perf_counter()
        nb = alpha_targets.NodeBacksub(fg, st, t)
        lam0, c0 = nb.rows(t, un)
        v1, g1 = nb.bound(lam0, c0, nb.default_slopes(len(c0)), want_grad=True)
        t1 = time.perf_counter()
        A, c = alpha._node_mats(bg, t, "fn")
        db = alpha.Backsub.from_fast(bg, fg, st, FAST)
        db.ops = [op for op in db.ops if op["k"] < t]
        v2, g2 = db.bound(np.concatenate([A.take(un), -A.take(un)]), np.concatenate([c[un], -c[un]]),
                          db.default_slopes(len(c0)), want_grad=True)
        t2 = time.perf_counter()
        dg = max(float(np.abs(x - y).max()) for k in g1 for x, y in zip(g1[k], g2[k]))
        print(f"{n} target {t}: {len(c0)} rows, dense {t2 - t1:.2f} s, node-wise {t1 - t0:.2f} s "
              f"(ratio {(t1 - t0) / (t2 - t1):.3f}); max |bound diff| {np.abs(v1 - v2).max():.2e}, "
              f"|grad diff| {dg:.2e}", flush=True)


RUN = ("import runpy, sys; import torchlean.verify.graph_relu as g; g.{flag} = {on}; "
       "sys.argv = ['torchlean.verify'] + sys.argv[1:]; "
       "runpy.run_module('torchlean.verify', run_name='__main__')")


def search(d: Path, rows: list[dict[str, str]], pick: list[int], timeout: float,
           flag: str = "PER_TARGET") -> None:
    """The CLI on each instance with and without per-target slopes (order alternating), same run."""
    root = Path(__file__).resolve().parents[1]
    for m, n in enumerate(pick):
        r = rows[n - 1]
        got = {}
        for on in ((True, False) if m % 2 == 0 else (False, True)):
            t0 = time.perf_counter()
            cmd = [sys.executable, "-c", RUN.format(flag=flag, on=on), str(d / r["onnx"]),
                   str(d / r["vnnlib"]), "--timeout", str(timeout)]
            p = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=timeout + 60)
            verdict = (p.stdout.split() or ["?"])[0]
            wrong = verdict in ("sat", "unsat") and verdict != r["expected"]
            got[on] = f"{verdict}{' WRONG' if wrong else ''} {time.perf_counter() - t0:.1f} s"
        print(f"{n} {r['onnx']} {r['vnnlib']} ({r['expected']}): {flag} on {got[True]} | "
              f"off {got[False]}", flush=True)


if __name__ == "__main__":
    main()
