"""Every step of the rounding-error column (exact with CROWN and IBP ranges, and fast) on small
graphs x @ W1 -> f -> @ W2 for each elementwise row f, six formats and four modes, written one
statement a line (the steps as exact rationals, or the refusal's message): an A/B of two trees.

    PYTHONPATH=/work/main python bench/errorkern_ab.py /tmp/a.txt
    PYTHONPATH=/work/wt-x python bench/errorkern_ab.py /tmp/b.txt && diff /tmp/a.txt /tmp/b.txt

Session 34 (slim34a, issue 14 step 1: ``errorkern.kernel``) found the two equal but for one message.
"""

import sys
from fractions import Fraction as Q

import numpy as np

from torchlean.certificates.errorbound import propagate
from torchlean.floats.errorbound import statement
from torchlean.spec.graph import Graph, Node, Value

#: (row, box ends, W1 positive, attrs): every row, leaky's cast slope and an exact one, sigmoid and
#: silu past -2 emax/3 (the overflow tail), pow at exponents that are and are not format values
CASES = [("exp", -1, 1, False, {}), ("log", 1, 2, True, {}), ("sqrt", 1, 2, True, {}),
         ("erf", -1, 1, False, {}), ("abs", -1, 1, False, {}), ("leaky_relu", -1, 1, False, {"slope": 0.1}),
         ("leaky_relu", -1, 1, False, {"slope": 0.25}), ("leaky_relu", 0.5, 1, True, {"slope": 0.1}),
         ("leaky_relu", -3, 3, False, {}),
         ("softplus", -2, 2, False, {}), ("silu", -2, 2, False, {}), ("gelu", -2, 2, False, {}),
         ("relu", -1, 1, False, {}), ("sigmoid", -2, 2, False, {}), ("tanh", -1, 1, False, {}),
         ("sigmoid", -30, 5, False, {}), ("silu", -30, 5, False, {}), ("sigmoid", -200, 5, False, {}),
         ("pow", 1, 2, True, {"exponent": 2}), ("pow", 1, 2, True, {"exponent": 2.5}),
         ("pow", 1, 2, True, {"exponent": 0.1}), ("pow", 1, 2, True, {"exponent": 3}),
         ("pow", 1, 2, True, {"exponent": 1.0 / 3}), ("pow", -1, 1, False, {"exponent": 3}),
         ("softplus", -40, 40, False, {}), ("exp", -5, 5, False, {})]
FMTS = ["binary32", "binary16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "binary64"]
MODES = ["rne", "rtz", "rup", "rdn"]


def graph(fn: str, lo: float, hi: float, pos: bool, at: dict, seed: int = 0, n: int = 3, h: int = 4):
    """x (1, n) @ W1 -> fn -> @ W2 on the box [lo, hi]^n; ``pos``: W1's columns positive, summing to 1."""
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((n, h)).astype(np.float32)
    if pos:
        W1 = np.abs(W1) + np.float32(0.1)
        W1 = W1 / W1.sum(axis=0)
    W2 = rng.standard_normal((h, 2)).astype(np.float32)
    g = Graph([Value("x", (1, n), "float32")], {"W1": W1, "W2": W2},
              [Node("matmul", ["x", "W1"], "h"), Node(fn, ["h"], "a", at), Node("matmul", ["a", "W2"], "y")],
              ["y"]).check()
    return g, [(Q(lo), Q(hi))] * n


def main(path: str) -> None:
    out = []
    for fn, lo, hi, pos, at in CASES:
        g, box = graph(fn, lo, hi, pos, at)
        for fmt in FMTS:
            for mode in MODES:
                for col, rg in (("exact", "crown"), ("exact", "ibp"), ("fast", "fast")):
                    key = f"{fn} {at} [{lo},{hi}] {fmt} {mode} {col}/{rg}"
                    try:
                        st = statement(g, box, fmt, mode, ranges=rg, column=col)
                        steps = propagate(st)
                        out.append(key + " " + repr([[str(e) for e in s] for s in steps]))
                    except Exception as e:  # (a refusal: its message is compared too)
                        out.append(key + f" ERR {type(e).__name__}: {e}")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"{len(out)} statements, {sum(' ERR ' in o for o in out)} refused")


if __name__ == "__main__":
    main(sys.argv[1])
