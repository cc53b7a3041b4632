"""Every VNN-COMP network in ../shared/data: does it import, and does the imported graph evaluate
like onnxruntime on random points inside its properties' input boxes?

    python bench/onnx_import_check.py [--data ../shared/data] [--points 8] [--props 3]

One line per network: benchmark, network, ONNX operators, loads?, max |torchlean - onnxruntime|
over the points, that difference relative to the largest magnitude any value of the network takes
at those points (float32 sums in another order differ by a few ulps of that), and whether it is
within the tolerance the tests use (1e-6 of that magnitude). Exit status 1 if any network fails.
"""

from __future__ import annotations

import argparse
import copy
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torchlean.bridge import load_onnx, onnx_operators, parse_vnnlib  # noqa: E402
from torchlean.runtime.execute import run_graph  # noqa: E402

BENCHMARKS = [
    "vnncomp2021/eran", "vnncomp2021/verivital", "vnncomp2021/oval21", "vnncomp2021/mnistfc",
    "vnncomp2021/acasxu", "vnncomp2021/test", "vnncomp2022/collins_rul_cnn",
    "vnncomp2022/sri_resnet_a", "vnncomp2022/rl_benchmarks", "vnncomp2022/reach_prob_density",
]
TOL = 1e-6


def instances(folder: Path) -> dict[Path, list[Path]]:
    """Each network of a benchmark folder with the properties its instance lists pair it with."""
    nets: dict[Path, list[Path]] = {p: [] for p in sorted(folder.rglob("*.onnx"))}
    for table in sorted(folder.glob("*.csv")):
        with open(table) as f:
            for row in csv.reader(f):
                if len(row) > 1 and row[0].endswith(".onnx") and row[1].endswith(".vnnlib"):
                    net, prop = folder / row[0], folder / row[1]
                    if net in nets and prop not in nets[net] and prop.is_file():
                        nets[net].append(prop)
    return nets


def check(net: Path, props: list[Path], points: int, rng: np.random.Generator) -> tuple[str, float, float]:
    """(status, max abs difference, difference relative to the network's largest magnitude)."""
    import onnxruntime as ort

    graph = load_onnx(net)
    (inp,) = graph.inputs
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(net), opts, providers=["CPUExecutionProvider"])
    every = copy.deepcopy(graph)
    every.outputs = [n.output for n in graph.nodes]
    boxes = [b for p in props for b in parse_vnnlib(p).boxes]
    if not boxes:
        boxes = [(np.zeros(int(np.prod(inp.shape))), np.ones(int(np.prod(inp.shape))))]
    worst = rel = 0.0
    for k in range(points):
        lo, hi = boxes[k % len(boxes)]
        x = rng.uniform(np.asarray(lo, float), np.asarray(hi, float)).astype(np.float32).reshape(inp.shape)
        refs = sess.run(None, {inp.name: x})
        outs = run_graph(graph, {inp.name: x})
        scale = max(1e-30, max(float(np.abs(v).max()) for v in run_graph(every, {inp.name: x})))
        for out, ref in zip(outs, refs, strict=True):
            if out.shape != ref.shape:
                return f"shape {out.shape} != {ref.shape}", float("nan"), float("nan")
            d = float(np.abs(out.astype(np.float64) - ref.astype(np.float64)).max())
            worst, rel = max(worst, d), max(rel, d / scale)
    return ("match" if rel <= TOL else "MISMATCH"), worst, rel


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--props", type=int, default=3, help="properties per network to draw boxes from")
    args = ap.parse_args()
    data = Path(args.data)
    rng = np.random.default_rng(0)
    bad = 0
    print("| benchmark | network | ONNX operators | loads | max abs diff | rel. diff | result |")
    print("| --- | --- | --- | :---: | ---: | ---: | --- |")
    for bench in BENCHMARKS:
        folder = data / bench
        if not folder.is_dir():
            print(f"| {bench} | (missing) | | | | | |")
            bad += 1
            continue
        for net, props in instances(folder).items():
            ops = ", ".join(onnx_operators(net))
            t = time.perf_counter()
            try:
                status, d, r = check(net, props[: args.props], args.points, rng)
                loads = "yes"
            except Exception as e:  # report, go on with the next network
                status, d, r, loads = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}", float("nan"), \
                    float("nan"), "no"
            bad += status != "match"
            print(f"| {bench.split('/')[1]} | {net.name} | {ops} | {loads} | {d:.2e} | {r:.1e} | {status} "
                  f"({time.perf_counter() - t:.1f} s) |", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
