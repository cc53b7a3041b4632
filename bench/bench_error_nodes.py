"""Where a zoo model's float32 ε grows: per IR node, the error column's largest bound (the
``errorbound`` walk's E) beside the largest float32-vs-float64 difference seen at that node on
sampled points of the box, and their ratio (bench/README.md, "h-trans").

    python bench/bench_error_nodes.py transformer 4 --ball=0.01     # any bench_zoo_epsilon.py model/flags

Shape-only nodes (reshape, transpose, slice) are not printed. Diagnostic only: nothing here is
checked (the certificate's own replay is ``bench_zoo_epsilon.py``).
"""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
from bench_zoo_epsilon import build

from torchlean.certificates import errorbound as eb
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
    steps = eb.propagate(statement(g, box, "binary32", "rne", Fraction(4), True, ranges))
    print(f"{kind}: epsilon {float(max(steps[-1])):.3g}")
    for i, (node, E, o) in enumerate(zip(g.nodes, steps, seen)):
        if node.op not in ("reshape", "transpose", "slice"):
            e, m = float(max(E)), float(o.max())
            print(f"{i:3d} {node.op:<10} bound {e:.3g}  observed {m:.3g}  ratio {e / max(m, 1e-30):.3g}")


if __name__ == "__main__":
    main()
