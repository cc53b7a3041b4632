"""Bound-propagation throughput (boxes per second) on an ACAS Xu network: torchlean's IBP and CROWN
(numpy; cupy when a GPU and cupy are present) against the same algorithms written in PyTorch (CPU,
float64), measured in the same run, plus the checker's sound fast replay (certificates.fast /
fast_crown, with outward rounding).

    OPENBLAS_NUM_THREADS=1 python bench/bench_bounds.py [--boxes 1024] [--repeat 3]
    OPENBLAS_NUM_THREADS=1 python bench/bench_bounds.py --engines [--nets 1_1,2_9] [--repeat 7]

``--engines`` compares the checker's two sound fast CROWN engines on ACAS Xu the way the verifier
and the replay use them: the bound table's ``fast_engine.crown`` (on the lowered graph, objective
rows C) against the ReLU-chain ``fast_crown.crown_bounds`` (C folded into the last layer), on
batches of 32 (the search) and 96 (the replay) random sub-boxes of width 1/8..1/32 of property
1-4's input region; CPU time per call, median of interleaved repeats, and the lower bounds'
differences (the table intersects intermediate bounds with IBP, so it is mostly tighter).

The PyTorch versions below follow verify/bounds.py line for line (IBP; CROWN with CROWN
intermediate bounds and the adaptive lower slope), so the comparison is algorithm for algorithm.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from torchlean._malloc import keep_freed_memory  # noqa: E402
from torchlean.certificates import fast  # noqa: E402
from torchlean.certificates.fast_crown import crown_bounds  # noqa: E402
from torchlean.verify import float_net, load_net  # noqa: E402
from torchlean.verify.bounds import crown, ibp  # noqa: E402


def torch_ibp(torch, layers, lo, hi):
    l, u = lo, hi
    for i, (W, b) in enumerate(layers):
        c, r = (l + u) / 2, (u - l) / 2
        mid, rad = c @ W.T + b, r @ W.abs().T
        l, u = mid - rad, mid + rad
        if i + 1 < len(layers):
            l, u = l.clamp(min=0), u.clamp(min=0)
    return l, u


def _torch_back(torch, layers, k, C, lo, hi, pre):
    W, b = layers[k]
    bias = C @ b
    lam = C @ W
    for j in range(k - 1, -1, -1):
        l, u = pre[j]
        unst = (l < 0) & (u > 0)
        act = (l >= 0).double()
        s = torch.where(unst, u / torch.where(unst, u - l, torch.ones_like(u)), act)
        t = torch.where(unst, -s * l, torch.zeros_like(l))
        a = torch.where(unst, (u >= -l).double(), act)
        lp, ln = lam.clamp(min=0), lam.clamp(max=0)
        lam_z = lp * a[:, None, :] + ln * s[:, None, :]
        bias = bias + (ln * t[:, None, :]).sum(-1)
        Wj, bj = layers[j]
        bias = bias + lam_z @ bj
        lam = lam_z @ Wj
    return (lam.clamp(min=0) * lo[:, None, :] + lam.clamp(max=0) * hi[:, None, :]).sum(-1) + bias


def torch_crown(torch, layers, lo, hi):
    B = lo.shape[0]
    pre = []
    for k in range(len(layers)):
        n = layers[k][0].shape[0]
        eye = torch.eye(n, dtype=torch.float64).expand(B, n, n)
        if k == 0:
            W, b = layers[0]
            c, r = (lo + hi) / 2, (hi - lo) / 2
            l, u = c @ W.T + b - r @ W.abs().T, c @ W.T + b + r @ W.abs().T
        else:
            l = _torch_back(torch, layers, k, eye, lo, hi, pre)
            u = -_torch_back(torch, layers, k, -eye, lo, hi, pre)
        if k + 1 == len(layers):
            return l, u
        pre.append((l, u))


def rate(fn, boxes: int, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return boxes / best


def engines(data: Path, nets: list[str], repeat: int) -> None:
    """fast_engine.crown vs fast_crown.crown_bounds (see the module docstring)."""
    from torchlean.certificates import fast_engine as fe
    from torchlean.certificates.lower import lower
    from torchlean.certificates.network import network_from_ir
    from torchlean.verify.network import load_graph

    C = np.array([[1, -1, 0, 0, 0], [1, 0, -1, 0, 0], [1, 0, 0, -1, 0], [1, 0, 0, 0, -1.0]])
    lo0, hi0 = np.array([-0.3, -0.5, -0.5, -0.5, -0.5]), np.array([0.68, 0.5, 0.5, 0.5, 0.5])
    print("net   width  B   table ms  chain ms  table/chain  lower table-chain: median  min  max")
    tot = np.zeros(2)
    for name in nets:
        ir = load_graph(data / f"acasxu/ACASXU_run2a_{name}_batch_2000.onnx").to_dict()
        fg = fe.compiled(lower(ir))
        layers = fast.prepare(network_from_ir(ir).steps)
        last = layers[-1]  # (C folded into the last affine step, exact products of float weights by +-1)
        chain = layers[:-1] + [("affine", C @ last[1], np.abs(C) @ last[2], C @ last[3], np.abs(C) @ last[4])]
        rng = np.random.default_rng(0)
        for div in (32, 16, 8):
            w = (hi0 - lo0) / div
            for B in (32, 96):
                lo = rng.uniform(lo0, hi0 - w, (B, 5))
                hi = lo + w
                ts = []
                for _ in range(repeat):  # (interleaved, so machine load hits both alike)
                    t = time.process_time()
                    a = fe.crown(fg, lo, hi, C=C)[0]
                    t1 = time.process_time() - t
                    t = time.process_time()
                    b = crown_bounds(chain, lo, hi)
                    ts.append((t1, time.process_time() - t))
                t1, t2 = np.median(ts, 0)
                tot += (t1, t2)
                d = a - b
                print(f"{name}  1/{div:<3} {B:3d}  {t1 * 1e3:8.1f}  {t2 * 1e3:8.1f}  {t1 / t2:11.2f}  "
                      f"{np.median(d):10.3g} {d.min():10.3g} {d.max():10.3g}")
    print(f"total: table {tot[0]:.3f} s, chain {tot[1]:.3f} s, ratio {tot[0] / tot[1]:.2f}")


def main() -> None:
    keep_freed_memory()
    ap = argparse.ArgumentParser()
    ap.add_argument("--boxes", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engines", action="store_true", help="bound table vs chain engine (fast CROWN)")
    ap.add_argument("--nets", default="1_1,2_9")
    a = ap.parse_args()
    data = next(
        p for p in (ROOT / "tests/data/vnncomp2021", ROOT.parent / "shared/data/vnncomp2021") if p.is_dir()
    )
    if a.engines:
        engines(data, a.nets.split(","), max(a.repeat, 7))
        return
    net = load_net(data / "acasxu/ACASXU_run2a_1_1_batch_2000.onnx")
    fn = float_net(net)
    rng = np.random.default_rng(0)
    lo0, hi0 = np.array([-0.3, -0.5, -0.5, -0.5, -0.5]), np.array([0.68, 0.5, 0.5, 0.5, 0.5])
    w = (hi0 - lo0) / 16
    lo = rng.uniform(lo0, hi0 - w, (a.boxes, 5))
    hi = lo + w
    rows = [
        ("numpy IBP", rate(lambda: ibp(fn, lo, hi), a.boxes, a.repeat)),
        ("numpy CROWN (+IBP intersect)", rate(lambda: crown(fn, lo, hi), a.boxes, a.repeat)),
    ]
    layers = fast.prepare(net.steps)
    rows.append(
        ("checker fast forward (sound)", rate(lambda: fast.forward_bounds(layers, lo, hi), a.boxes, a.repeat))
    )
    rows.append(("checker fast CROWN (sound)", rate(lambda: crown_bounds(layers, lo, hi), a.boxes, a.repeat)))
    try:
        import torch

        torch.set_num_threads(1)
        tl = [(torch.tensor(W), torch.tensor(b)) for W, b in fn.layers]
        tlo, thi = torch.tensor(lo), torch.tensor(hi)
        rows.append(("torch IBP (CPU)", rate(lambda: torch_ibp(torch, tl, tlo, thi), a.boxes, a.repeat)))
        rows.append(("torch CROWN (CPU)", rate(lambda: torch_crown(torch, tl, tlo, thi), a.boxes, a.repeat)))
        lc = crown(fn, lo, hi)[0]
        lt = torch_crown(torch, tl, tlo, thi)[0].numpy()
        print(
            f"lower bounds, torch CROWN - numpy CROWN: max {np.max(lt - lc):.3g}, min {np.min(lt - lc):.3g} "
            "(numpy intersects intermediate bounds with IBP; CROWN is not monotone in them)"
        )
    except ImportError:
        print("torch not installed: PyTorch rows skipped")
    try:
        import cupy

        clo, chi = cupy.asarray(lo), cupy.asarray(hi)

        def sync(f):
            def g():
                f()
                cupy.cuda.Stream.null.synchronize()

            return g

        rows.append(("cupy IBP (GPU)", rate(sync(lambda: ibp(fn, clo, chi)), a.boxes, a.repeat)))
        rows.append(("cupy CROWN (GPU)", rate(sync(lambda: crown(fn, clo, chi)), a.boxes, a.repeat)))
    except Exception as e:  # no cupy or no GPU
        print(f"cupy rows skipped ({type(e).__name__})")
    print(f"ACAS Xu 1_1 (5-50x6-5), {a.boxes} boxes of width 1/16, float64, 1 thread")
    for name, r in rows:
        print(f"  {name:<32} {r:12.0f} boxes/s")


if __name__ == "__main__":
    main()
