"""Where a zoo model's float32 ε grows: per IR node, the error column's largest bound (the
``errorbound`` walk's E) beside the largest float32-vs-float64 difference seen at that node on
sampled points of the box, and their ratio (bench/README.md, "h-trans").

    python bench/bench_error_nodes.py transformer 4 --ball=0.01     # any bench_zoo_epsilon.py model/flags
    python bench/bench_error_nodes.py transformer 4 --max-work=120000   # the walk under another form budget

``--max-work=N[,N2,...]`` / ``--node-work=N`` set ``errorctx.MAX_WORK`` / ``NODE_WORK`` (a policy:
any value is sound); one walk per MAX_WORK on the same statement (trained once), each with its
CPU seconds, and one bound column per walk.

Shape-only nodes (reshape, transpose, slice) are not printed. Diagnostic only: nothing here is
checked (the certificate's own replay is ``bench_zoo_epsilon.py``).
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction

import numpy as np
from bench_zoo_epsilon import build

from torchlean.certificates import errorbound as eb
from torchlean.certificates import errorctx
from torchlean.floats.errorbound import sample_box, statement
from torchlean.runtime.execute import run_graph
from torchlean.runtime.tensor import tensor
from torchlean.runtime.trace import trace
from torchlean.spec import Graph


def main() -> None:
    kind = sys.argv[1]
    arg = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else None
    net, x, box = build(kind, arg)
    ball = next((Fraction(a.split("=", 1)[1]) for a in sys.argv[2:] if a.startswith("--ball=")), None)
    if ball is not None:
        centre = np.asarray(x, np.float32).ravel()
        box = [(Fraction(float(v)) - ball, Fraction(float(v)) + ball) for v in centre]
    ranges = next((a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith("--ranges=")), None)
    for a in sys.argv[2:]:
        if a.startswith("--node-work="):
            errorctx.NODE_WORK = int(a.split("=", 1)[1])
    works = next(([int(w) for w in a.split("=", 1)[1].split(",")] for a in sys.argv[2:]
                  if a.startswith("--max-work=")), [errorctx.MAX_WORK])
    net.eval()
    g = trace(net, tensor(np.asarray(x, dtype=np.float32)))
    every = Graph(g.inputs, g.constants, g.nodes, [n.output for n in g.nodes]).check()
    name, shape = g.inputs[0].name, g.inputs[0].shape
    seen = None
    with np.errstate(invalid="ignore"):  # (the mask's -inf - -inf: not an error)
        for p in sample_box(box, 100):
            a = run_graph(every, {name: p.reshape(shape)}, dtype=np.float32)
            b = run_graph(every, {name: p.reshape(shape).astype(np.float64)}, dtype=np.float64)
            d = [np.nan_to_num(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64)).ravel())
                 for u, v in zip(a, b)]
            seen = d if seen is None else [np.maximum(o, e) for o, e in zip(seen, d)]
    stmt = statement(g, box, "binary32", "rne", Fraction(4), True, ranges)
    walks = []
    for w in works:  # (one walk per budget, the same statement: the model trained once)
        errorctx.MAX_WORK = w
        t0 = time.process_time()
        walks.append(eb.propagate(stmt))
        print(f"{kind}: epsilon {float(max(walks[-1][-1])):.3g} (MAX_WORK {w}, NODE_WORK "
              f"{errorctx.NODE_WORK}; walk {time.process_time() - t0:.1f} s CPU)", flush=True)
    for i, (node, o) in enumerate(zip(g.nodes, seen)):
        if node.op not in ("reshape", "transpose", "slice"):
            es, m = [float(max(steps[i])) for steps in walks], float(o.max())
            print(f"{i:3d} {node.op:<10} bound {' / '.join(f'{e:.3g}' for e in es)}  observed {m:.3g}  "
                  f"ratio {es[0] / max(m, 1e-30):.3g}")


if __name__ == "__main__":
    main()
