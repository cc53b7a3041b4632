"""Per time step of the zoo's LSTM (trained as ``bench_zoo_epsilon.py lstm``), on the ball ±R
around test window 0 in float32: the widths of the value ranges the error column uses (IBP, and
the fast CROWN ranges of statement ``"ranges": "fast"``) of the gate pre-activations z, the cell c
and the output h, next to the widths sampled from 300 points (binary64 run), and the certified
error bound of c and h next to the largest error observed (float32 against binary64).

    python bench/bench_rnn_steps.py 0.05        # R; bench/README.md, "The zoo's epsilons" (h-rnn)

Widths and bounds: the maximum over the elements of the node.
"""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
from bench_zoo_epsilon import build

from torchlean.certificates import errorbound
from torchlean.floats.errorbound import sample_box, statement
from torchlean.runtime.rules import RULES
from torchlean.runtime.tensor import tensor
from torchlean.runtime.trace import trace
from torchlean.spec.primitives import PRIMITIVES

#: offsets of z (the gates' pre-activations), c and h from a step's first node (W_ih's transpose)
NODES = {"z": 6, "c": 16, "h": 19}


def column(g, box, ranges: str) -> list[tuple[list, list]]:
    """(ranges used, error bounds) per IR node of the error column's walk."""
    log, apply = [], errorbound.apply

    def spy(ctx, op, ins, shapes, at, rng, exact_in):
        out = apply(ctx, op, ins, shapes, at, rng, exact_in)
        log.append(([float(r[1] - r[0]) for r in rng], [float(v.E) for v in out]))
        return out

    errorbound.apply = spy
    try:
        errorbound.propagate(statement(g, box, "binary32", ranges=ranges))
    finally:
        errorbound.apply = apply
    return log


def run(g, x: np.ndarray, dtype) -> list[np.ndarray]:
    """Every node's value at one point (the runtime's kernels, as ``run_graph``)."""
    env = {g.inputs[0].name: x.reshape(g.inputs[0].shape).astype(dtype)}
    for k, a in g.constants.items():
        a = np.asarray(a)
        env[k] = a.astype(dtype) if a.dtype.kind == "f" else a
    for node in g.nodes:
        env[node.output] = RULES[node.op].forward(np, *(env[n] for n in node.inputs),
                                                  **PRIMITIVES[node.op].check_attrs(node.attrs))
    return [np.asarray(env[n.output], np.float64).ravel() for n in g.nodes]


def main() -> None:
    rad = Fraction(sys.argv[1] if len(sys.argv) > 1 else "0.05")
    net, x, _ = build("lstm", None)
    net.eval()
    g = trace(net, tensor(np.asarray(x, dtype=np.float32)))
    box = [(Fraction(float(v)) - rad, Fraction(float(v)) + rad) for v in np.asarray(x, np.float32).ravel()]
    cols = {m: column(g, box, m) for m in ("ibp", "fast")}
    pts = sample_box(box, 300, np.float32, 0)
    v64 = np.array([run(g, p, np.float64) for p in pts], dtype=object)
    v32 = np.array([run(g, p, np.float32) for p in pts], dtype=object)
    starts = [k for k, n in enumerate(g.nodes) if n.op == "transpose" and "weight_ih" in n.inputs[0]]
    print(f"ball ±{float(rad):g}; width z, c, h: IBP / fast / sampled; bound c, h: IBP / fast / observed")
    for t, s in enumerate(starts):
        cells = []
        for off in NODES.values():
            k = s + off
            w = np.ptp(np.stack(v64[:, k]), 0).max()
            cells.append(" / ".join(f"{max(cols[m][k][0]):.3g}" for m in cols) + f" / {w:.3g}")
        for name in ("c", "h"):
            k = s + NODES[name]
            obs = np.abs(np.stack(v64[:, k]) - np.stack(v32[:, k])).max()
            cells.append(" / ".join(f"{max(cols[m][k][1]):.2g}" for m in cols) + f" / {obs:.2g}")
        print(f"| {t + 1} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
