"""Layer norm's variance floor (``engine._State.squares``, h-lnvar) on the zoo's 'sums' transformer
after its token lookup at context 4 (``bench_zoo_epsilon.build``): per layer norm, the bound
table's lower bound of the variance (min over rows) and the widest output bound, without the rule
("before", the rule switched off in this process) and with it ("after"), on the zoo's box (the token
table's rows) and on balls of radius R around the input the zoo traces.

    python bench/bench_ln_floor.py                 # boxes: zoo, 0.01, 0.05, 0.2; bounds only (~1 min)
    python bench/bench_ln_floor.py --eps zoo 0.05  # also the float32 epsilon and each layer norm's
                                                   # error bound (errorbound.propagate, ~1 min each)

bench/README.md, "The zoo's epsilons", h-lnvar.
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction as Q
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_zoo_epsilon import build  # noqa: E402

from torchlean.certificates import engine  # noqa: E402
from torchlean.certificates.errorbound import propagate  # noqa: E402
from torchlean.certificates.lower import lower  # noqa: E402
from torchlean.floats.errorbound import observed_error, statement  # noqa: E402
from torchlean.runtime.tensor import tensor  # noqa: E402
from torchlean.runtime.trace import trace  # noqa: E402


def main() -> None:
    args = sys.argv[1:]
    eps = "--eps" in args
    names = [a for a in args if a != "--eps"] or ["zoo", "0.01", "0.05", "0.2"]
    net, x, zoo = build("transformer", 4)
    net.eval()
    g = trace(net, tensor(np.asarray(x, dtype=np.float32)))
    ir = g.to_dict()
    env: dict = {}
    bg = lower(ir, env, wide=True)
    lns = [nd["output"] for nd in ir["nodes"] if nd["op"] == "layer_norm"]
    sqrt = [k for k, n in enumerate(bg.nodes) if n.kind == "fn" and n.fn == "sqrt"]
    e0 = Q(1, 10 ** 5)  # (every layer norm of the model has eps 1e-5; shown 0 below 1e-12: the
    # arguments' bounds are rounded outward to floats, so 'eps' reads 1e-5 + 8e-22)
    rule = engine._State.squares
    for name in names:
        box = zoo if name == "zoo" else [(Q(float(v)) - Q(name), Q(float(v)) + Q(name))
                                         for v in np.asarray(x, np.float64).ravel()]
        for mode in ("before", "after"):
            engine._State.squares = rule if mode == "after" else (lambda self, f, lo: lo)
            t = time.time()
            st = engine.forward(bg, [a for a, _ in box], [b for _, b in box], "ibp")
            var = [min(a for a, _ in st.arg[k]) - e0 for k in sqrt]
            floors = [f"{float(v):.3g}" if v > 1e-12 else "0" for v in var]
            width = [max(h - lo for lo, h in map(st.bounds, env[o].v)) for o in lns]
            line = (f"{name:5s} {mode:6s} variance floor per layer norm {floors}, "
                    f"widest output bound {[f'{float(w):.3g}' for w in width]} ({time.time() - t:.1f} s)")
            if eps:
                t = time.time()
                steps = propagate(statement(g, box, "binary32"))
                per = [float(max(s)) for s, nd in zip(steps, ir["nodes"]) if nd["op"] == "layer_norm"]
                line += (f"; epsilon {float(max(steps[-1])):.4g}, layer norm errors "
                         f"{[f'{p:.3g}' for p in per]} ({time.time() - t:.1f} s)")
            print(line, flush=True)
        engine._State.squares = rule
        if eps:
            print(f"{name:5s} observed {observed_error(g, box, n=200, reference=False).max_error.max():.3g}"
                  " (200 samples)", flush=True)


if __name__ == "__main__":
    main()
