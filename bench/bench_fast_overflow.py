"""Generate + check time of a binary32 error certificate on session 25's softmax-into-matmul graph
whose scores pass binary64's exp (x (1, 4) [-1, 1]^4 -> x W, W rows (800, -800, 0, 400) ->
softmax -> matmul ones (4, 2)), per column: "fast", the default (fast, falling back to exact
where fast refuses) and "exact". Median of 7 runs each (h-overflow, bench/README.md).

    python bench/bench_fast_overflow.py
"""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from torchlean.certificates import check
from torchlean.floats.errorbound import bound_certificate
from torchlean.spec.graph import Graph, Node, Value


def main() -> None:
    W = np.array([[800.0, -800.0, 0.0, 400.0]] * 4, np.float32)
    g = Graph([Value("x", (1, 4), "float32")], {"W": W, "V": np.ones((4, 2), np.float32)},
              [Node("matmul", ["x", "W"], "h", {}), Node("softmax", ["h"], "p", {"axis": -1}),
               Node("matmul", ["p", "V"], "y", {})], ["y"]).check()
    box = [(Fraction(-1), Fraction(1))] * 4
    for col in ("fast", None, "exact"):
        ts, res = [], None
        for _ in range(7):
            t = time.perf_counter()
            try:
                kw = {} if col is None else {"column": col}
                cert = bound_certificate(g, box, "binary32", ranges="fast", **kw)
                eps = float(max(Fraction(e) for e in cert["statement"]["epsilon"]))
                used = cert['statement'].get('column', 'exact')
                res = f"{used} column, eps {eps:.10g}, ok {check(cert).ok}"
            except Exception as e:  # (a refusal: the time to refuse)
                res = f"refused: {type(e).__name__}: {str(e)[:60]}"
            ts.append(time.perf_counter() - t)
        print(f"{col or 'default'}: {res}; median {sorted(ts)[3]:.3f} s, min {min(ts):.3f} s")


if __name__ == "__main__":
    main()
