"""The rounding-error certificate of an 8-64-64-1 MLP with one activation (an IR graph built
directly, x @ W + b, so that any elementwise primitive can be the activation, erf and exp too,
not only the runtime's activation modules: ``bench_zoo_epsilon.py mlp --act=`` takes those),
random float32 weights (seed 0), box [-1, 1]^8, binary32, "fast" ranges: which column the
statement takes (``default_column``), epsilon, the observed float32 error (500 samples) and the
seconds to generate and replay (bench/README.md, "h-fastfns").

    python bench/bench_fastfns.py gelu          # or silu, softplus, erf, exp, tanh, sigmoid, ...
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction

import numpy as np

from torchlean.certificates import check
from torchlean.floats import bound_certificate, epsilons, observed_error
from torchlean.spec.graph import Graph, Node, Value


def mlp(act: str, sizes: tuple[int, ...] = (8, 64, 64, 1), seed: int = 0) -> Graph:
    """x -> (@ W_i + b_i, act) per hidden layer -> @ W + b, Kaiming-like float32 weights."""
    rng = np.random.default_rng(seed)
    consts, nodes, h = {}, [], "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        consts[f"W{i}"] = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        consts[f"b{i}"] = (0.1 * rng.standard_normal(b)).astype(np.float32)
        nodes += [Node("matmul", [h, f"W{i}"], f"m{i}"), Node("add", [f"m{i}", f"b{i}"], f"z{i}")]
        h = f"z{i}"
        if i < len(sizes) - 2:
            nodes.append(Node(act, [h], f"a{i}"))
            h = f"a{i}"
    return Graph([Value("x", (1, sizes[0]), "float32")], consts, nodes, [h]).check()


def main() -> None:
    act = sys.argv[1] if len(sys.argv) > 1 else "gelu"
    g = mlp(act)
    box = [(Fraction(-1), Fraction(1))] * 8
    t0 = time.perf_counter()
    cert = bound_certificate(g, box, "binary32", ranges="fast")
    t1 = time.perf_counter()
    v = check(cert)
    t2 = time.perf_counter()
    obs = float(observed_error(g, box, n=500, reference=False).max_error.max())
    eps = float(max(epsilons(cert)))
    column = cert["statement"].get("column", "exact")
    print(f"{act}: column {column}, eps {eps:.3g} ({'replayed' if v.ok else v.reason}), "
          f"observed {obs:.3g}, ratio {eps / obs:.3g}; generate {t1 - t0:.2f} s, replay {t2 - t1:.2f} s")


if __name__ == "__main__":
    main()
