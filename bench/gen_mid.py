"""ReLU chains with 17-64 inputs (issue 14: the inputs where the search stops splitting the input box
and splits ReLUs instead), deterministic by seed. None of the shared VNN-COMP networks has that many
inputs and is a chain (collins_rul_cnn's 25/50 inputs are CNNs), so these are random float32 MLPs
(weights N(0, 1/fan_in), biases N(0, 0.3)) with the property "Y_0 <= b" on [-r, r]^n: ``b`` below
the smallest output found by random sampling (box points and corners) by 2% or 10% of the sampled
range (``unsat`` unless a lower point exists, which the searches often find: ``expected`` left
empty) or just above it (``sat``: the sampled point, checked by exact rational evaluation of the
network, is a witness).

    python bench/gen_mid.py --out bench/instances/mid_s0 [--seed 0]

Writes ``DIR/expected.csv`` (onnx,vnnlib,expected,note), ``DIR/nets/*.onnx``, ``DIR/props/*.vnnlib``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (inputs, hidden widths, box radius)
SHAPES = ((20, (10, 10), 0.3), (24, (16, 16), 0.3), (32, (16, 16), 0.25), (48, (20, 20), 0.2),
          (64, (24, 24), 0.2))


def mlp(rng: np.random.Generator, sizes: tuple[int, ...]):
    """A float32 ReLU MLP as a spec Graph (x @ W + b, relu, ...)."""
    from torchlean.spec.graph import Graph, Node, Value

    consts, nodes, cur = {}, [], "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        consts[f"W{i}"] = rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32)
        consts[f"b{i}"] = rng.normal(0, 0.3, (b,)).astype(np.float32)
        nodes += [Node("matmul", [cur, f"W{i}"], f"m{i}"), Node("add", [f"m{i}", f"b{i}"], f"z{i}")]
        cur = f"z{i}"
        if i + 2 < len(sizes):
            nodes.append(Node("relu", [cur], f"h{i}"))
            cur = f"h{i}"
    return Graph([Value("x", (1, sizes[0]), "float32")], consts, nodes, [cur]).check()


def exact_y0(g, x: np.ndarray) -> Fraction:
    """Y_0 at x in exact rationals (the bound table's exact point evaluation)."""
    from torchlean.certificates import engine
    from torchlean.certificates.lower import lower

    bg = lower(g.to_dict())
    L, U = engine.point(bg, [Fraction(float(v)) for v in x])
    lo, hi = engine.form_bounds(bg.outputs[0], L, U)
    assert lo == hi
    return lo


def vnnlib(n: int, r: float, b: Fraction) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(n)] + ["(declare-const Y_0 Real)"]
    for i in range(n):
        lines += [f"(assert (>= X_{i} {-r!r}))", f"(assert (<= X_{i} {r!r}))"]
    lines.append(f"(assert (<= Y_0 {float(b)!r}))")
    return "\n".join(lines) + "\n"


def main() -> None:
    from torchlean.bridge._onnx_export import export_onnx
    from torchlean.floats.network import run_float

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=20000)
    a = ap.parse_args()
    out = Path(a.out)
    (out / "nets").mkdir(parents=True, exist_ok=True)
    (out / "props").mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (n, hidden, r) in enumerate(SHAPES):
        rng = np.random.default_rng(a.seed * 100 + k)
        g = mlp(rng, (n, *hidden, 1))
        name = f"mlp_{n}_{'_'.join(map(str, hidden))}_1"
        (out / "nets" / f"{name}.onnx").write_bytes(export_onnx(g).SerializeToString())
        pts = rng.uniform(-r, r, (a.samples, n))
        pts = np.concatenate([pts, np.sign(rng.normal(size=(a.samples, n))) * r])  # corners too
        ys = run_float(g, pts.reshape(-1, 1, n), np.float64).reshape(len(pts), -1)[:, 0]
        i = int(ys.argmin())
        x = pts[i].astype(np.float32).astype(np.float64)
        m = exact_y0(g, x)
        span = float(ys.max() - ys.min())
        for kind, off in (("tight-unsat", -0.02), ("margin-unsat", -0.1), ("tight-sat", 1e-3)):
            b = Fraction(float(m) + off * span).limit_denominator(10**9)
            expected = "sat" if kind == "tight-sat" and m <= b else ""
            prop = f"{name}_{kind}.vnnlib"
            (out / "props" / prop).write_text(vnnlib(n, r, b))
            rows.append({"onnx": f"nets/{name}.onnx", "vnnlib": f"props/{prop}", "expected": expected,
                         "note": f"{kind}: sampled min {float(m):.6g}, b {float(b):.6g}"})
    with open(out / "expected.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["onnx", "vnnlib", "expected", "note"])
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} instances in {out}/expected.csv")


if __name__ == "__main__":
    main()
