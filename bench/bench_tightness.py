"""CROWN tightness against auto_LiRPA (the reference implementation of CROWN), network by network.

For the shared VNN-COMP networks (ONNX) and for models built and trained with torchlean, on boxes
from the VNN-LIB properties and on small L-inf balls, this bounds every output with torchlean's
bound table (fast engine ``verify.engines.fast_crown``; the exact Fraction engine
``verify.engines.exact_crown`` too where the network is small) and with auto_LiRPA's
``compute_bounds(method="CROWN")`` (float64, CPU), and prints per network the mean and worst ratio
of output bound widths torchlean / auto_LiRPA (<= 1: torchlean at least as tight) and the times.

auto_LiRPA is a benchmark-only reference, never a dependency: take its source
(github.com/Verified-Intelligence/auto_LiRPA) and put it on PYTHONPATH with its small pure-Python
requirements (appdirs, graphviz; onnx2torch converts the ONNX files to torch, after
``onnx.version_converter`` lifts old opsets to 13; a stub ``torchvision`` package with an ``ops``
module satisfies onnx2torch's import where the installed torchvision does not match torch):

    PYTHONPATH=.:/path/auto_LiRPA:/path/deps OPENBLAS_NUM_THREADS=1 python bench/bench_tightness.py \
        [--data ../shared/data] [--props 2] [--only NAME] [--no-exact]

torchlean's CROWN takes the tighter of CROWN and IBP per output; its argument bounds are CROWN
bounds intersected with IBP ones. auto_LiRPA's CROWN computes CROWN intermediate bounds too. Both
read the same float64 boxes (the property's exact box rounded outward). torchlean's fast bounds are
certified (outward rounding); auto_LiRPA's are plain float64, so a ratio slightly above 1 (~1e-12)
is rounding, not looseness.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

import torchlean as tl  # noqa: E402
from torchlean import nn  # noqa: E402
from torchlean.bridge import load_onnx  # noqa: E402
from torchlean.bridge.torch_io import to_torch_state_dict  # noqa: E402
from torchlean.bridge.vnnlib import parse_vnnlib  # noqa: E402
from torchlean.certificates import fast_engine as fe  # noqa: E402
from torchlean.certificates.lower import lower  # noqa: E402
from torchlean.verify import engines  # noqa: E402

# (name, onnx relative to data, expected.csv relative to data, L-inf ball radius)
_A, _E, _R = "vnncomp2021/acasxu/", "vnncomp2021/eran/", "vnncomp2022/"
NETS = [
    ("acasxu_1_1", _A + "ACASXU_run2a_1_1_batch_2000.onnx", _A + "expected.csv", 0.01),
    ("acasxu_2_7", _A + "ACASXU_run2a_2_7_batch_2000.onnx", _A + "expected.csv", 0.01),
    ("acasxu_1_9", _A + "ACASXU_run2a_1_9_batch_2000.onnx", _A + "expected.csv", 0.01),
    ("mnist_256x2", "vnncomp2021/mnistfc/mnist-net_256x2.onnx", "vnncomp2021/mnistfc/expected.csv", 0.01),
    ("eran_sigmoid_6x200", _E + "nets/ffnnSIGMOID__Point_6x200.onnx", _E + "expected.csv", 0.005),
    ("eran_relu_9x200", _E + "nets/mnist_relu_9_200.onnx", _E + "expected.csv", 0.005),
    ("oval21_cifar_base_kw", "vnncomp2021/oval21/nets/cifar_base_kw.onnx", "vnncomp2021/oval21/expected.csv",
     0.002),
    ("verivital_maxpool", "vnncomp2021/verivital/Convnet_maxpool.onnx", "vnncomp2021/verivital/expected.csv",
     0.005),
    ("verivital_avgpool", "vnncomp2021/verivital/Convnet_avgpool.onnx", "vnncomp2021/verivital/expected.csv",
     0.005),
    ("collins_rul_small", _R + "collins_rul_cnn/onnx/NN_rul_small_window_20.onnx",
     _R + "collins_rul_cnn/expected.csv", 0.01),
    ("rl_cartpole", _R + "rl_benchmarks/onnx/cartpole.onnx", _R + "rl_benchmarks/expected.csv", 0.01),
    ("rl_lunarlander", _R + "rl_benchmarks/onnx/lunarlander.onnx", _R + "rl_benchmarks/expected.csv", 0.01),
    ("reach_vdp", _R + "reach_prob_density/onnx/vdp.onnx", _R + "reach_prob_density/expected.csv", 0.01),
    ("reach_gcas", _R + "reach_prob_density/onnx/gcas.onnx", _R + "reach_prob_density/expected.csv", 0.01),
]
EXACT_MAX_VARS = 1500  # the exact Fraction engine only where the bound graph is this small


def _torch_from_onnx(path: Path):
    import onnx
    import onnx2torch
    from onnx import version_converter

    m = onnx.load(str(path))
    for n in list(m.graph.node):  # a Pad of all-zero pads is the identity (auto_LiRPA cannot take it)
        pads = [onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == "pads"]
        if n.op_type == "Pad" and pads and not any(pads[0]):
            for k in m.graph.node:
                k.input[:] = [n.input[0] if i == n.output[0] else i for i in k.input]
            m.graph.node.remove(n)
    if m.opset_import[0].version < 13:
        m = version_converter.convert_version(m, 13)
    return onnx2torch.convert(m).double().eval()


def _boxes(data: Path, onnx_rel: str, csv_rel: str, n_props: int, eps: float, n_in: int):
    """Boxes (lo, hi) as float64 (n_in,): the first regions of up to n_props properties of this
    network, and an L-inf ball of radius eps around the first box's centre."""
    out = []
    rows = list(csv.reader((data / csv_rel).read_text().splitlines()))[1:]
    seen = set()
    for r in rows:
        if not r or str((data / csv_rel).parent / r[0]) != str(data / onnx_rel) or r[1] in seen:
            continue
        seen.add(r[1])
        prop = parse_vnnlib((data / csv_rel).parent / r[1])
        lo, hi = prop.regions[0].float_box()
        if any(np.array_equal(lo, b[1]) and np.array_equal(hi, b[2]) for b in out):
            continue
        out.append((f"prop{len(out)}", lo.astype(np.float64), hi.astype(np.float64)))
        if len(out) >= n_props:
            break
    c = (out[0][1] + out[0][2]) / 2 if out else np.zeros(n_in)
    out.append((f"ball{eps:g}", c - eps, c + eps))
    return out


def _alirpa(model, shape, boxes):
    """auto_LiRPA CROWN bounds (lower, upper) per box and the time per box."""
    import torch
    from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm

    torch.set_default_dtype(torch.float64)  # (onnx2torch keeps some constants out of .double())
    for mod in model.modules():
        for k, v in list(vars(mod).items()):
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                setattr(mod, k, v.double())
    x0 = torch.zeros(shape, dtype=torch.float64)
    bm = BoundedModule(model, x0, device="cpu", verbose=False)
    res, t = [], 0.0
    for _, lo, hi in boxes:
        xl = torch.tensor(lo.reshape(shape))
        xu = torch.tensor(hi.reshape(shape))
        x = BoundedTensor((xl + xu) / 2, PerturbationLpNorm(norm=np.inf, x_L=xl, x_U=xu))
        t0 = time.perf_counter()
        with torch.no_grad():
            lb, ub = bm.compute_bounds(x=(x,), method="CROWN")
        t += time.perf_counter() - t0
        res.append((lb.detach().numpy().ravel(), ub.detach().numpy().ravel()))
    return res, t / len(boxes)


def _ratios(tl_b, al_b):
    """width ratios torchlean / auto_LiRPA over every output (widths below 1e-9 count as 1e-9)."""
    w_t = np.maximum(tl_b[1] - tl_b[0], 1e-9)
    w_a = np.maximum(al_b[1] - al_b[0], 1e-9)
    return w_t / w_a


def run_one(name, bg, model, shape, boxes, exact: bool):
    """One network: torchlean fast (and exact) CROWN and auto_LiRPA CROWN on every box."""
    lo = np.stack([b[1] for b in boxes])
    hi = np.stack([b[2] for b in boxes])
    t0 = time.perf_counter()
    try:
        fl, fu = engines.fast_crown(fe.compiled(bg), lo, hi)
    except MemoryError as e:
        print(f"{name}: torchlean fast CROWN out of memory ({str(e)[:90]})", flush=True)
        return None
    t_fast = (time.perf_counter() - t0) / len(boxes)  # (includes the float conversion of the graph)
    try:
        al, t_al = _alirpa(model, shape, boxes)
    except (Exception, MemoryError) as e:  # a network auto_LiRPA cannot bound here: say why
        print(f"{name}: auto_LiRPA failed ({type(e).__name__}: {str(e).splitlines()[0][:80]}); "
              f"torchlean fast CROWN {t_fast:.3f}s/box", flush=True)
        return None
    rf = np.concatenate([_ratios((fl[i], fu[i]), al[i]) for i in range(len(boxes))])
    row = {"net": name, "boxes": len(boxes), "outputs": bg.n_out, "fast_mean": rf.mean(),
           "fast_worst": rf.max(),
           "t_fast": t_fast, "t_alirpa": t_al, "exact_mean": None, "exact_worst": None, "t_exact": None}
    if exact:
        t0 = time.perf_counter()
        el, eu = engines.exact_crown(bg, boxes[0][1].tolist(), boxes[0][2].tolist())
        row["t_exact"] = time.perf_counter() - t0
        re = _ratios((np.array([float(v) for v in el]), np.array([float(v) for v in eu])), al[0])
        row["exact_mean"], row["exact_worst"] = re.mean(), re.max()
    return row


# ---- models trained with torchlean (synthetic data, a few hundred Adam steps) ----

def _train(model, x, y, steps=150, lr=1e-2):
    from torchlean.optim import Adam

    model.train()
    opt = Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    X, Y = tl.tensor(x), tl.tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(X), Y)
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.numpy())


def trained_models(rng):
    """(name, torchlean model, equivalent torch model with the same weights, input shape (batch 1))."""
    import torch

    tl.set_default_dtype("float64")
    tl.manual_seed(0)
    out = []
    x = rng.normal(size=(256, 8))
    y = (x[:, :4].sum(1) > x[:, 4:].sum(1)).astype(np.int64) + 2 * (x[:, 0] > 0)
    mlps = {
        "tl_tanh_mlp": (lambda m: m.Sequential(m.Linear(8, 32), m.Tanh(), m.Linear(32, 32), m.Tanh(),
                                               m.Linear(32, 4)), {}),
        "tl_gelu_mlp": (lambda m: m.Sequential(m.Linear(8, 32), m.GELU(), m.Linear(32, 32), m.GELU(),
                                               m.Linear(32, 4)), {"approximate": "tanh"}),
    }
    for name, (build, kw) in mlps.items():
        model = build(nn)
        _train(model, x, y)
        tm = build(torch.nn)
        if kw:  # torchlean's GELU is the tanh form
            tm[1], tm[3] = torch.nn.GELU(**kw), torch.nn.GELU(**kw)
        tm.load_state_dict(to_torch_state_dict(model))
        out.append((name, model, tm.double().eval(), (1, 8)))
    xi = rng.normal(size=(128, 1, 8, 8))
    yi = (xi[:, 0, :4].sum((1, 2)) > xi[:, 0, 4:].sum((1, 2))).astype(np.int64)

    def cnn(m):
        return m.Sequential(m.Conv2d(1, 4, 3, padding=1), m.BatchNorm2d(4), m.ReLU(), m.MaxPool2d(2),
                            m.Conv2d(4, 4, 3, padding=1), m.ReLU(), m.AvgPool2d(2), m.Flatten(),
                            m.Linear(16, 2))
    model = cnn(nn)
    _train(model, xi, yi, steps=60)
    tm = cnn(torch.nn)
    tm.load_state_dict(to_torch_state_dict(model))
    out.append(("tl_cnn_bn_pool", model, tm.double().eval(), (1, 1, 8, 8)))
    return out


def _fmt(v, f="{:.4f}"):
    return "-" if v is None else f.format(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--props", type=int, default=2, help="properties per network (first region each)")
    ap.add_argument("--only", default=None, help="substring of the network names to run")
    ap.add_argument("--no-exact", action="store_true")
    ap.add_argument("--mem-gb", type=float, default=10, help="address-space limit (a failure is reported)")
    args = ap.parse_args(argv)
    import resource

    lim = int(args.mem_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    data = Path(args.data)
    rows = []
    print(f"{'network':24} {'boxes':>5} {'outs':>5} {'fast mean':>9} {'fast worst':>10} {'exact mean':>10} "
          f"{'exact worst':>11} {'t fast/box':>10} {'t exact':>8} {'t aLiRPA/box':>12}", flush=True)

    def report(r):
        if r is None:
            return
        rows.append(r)
        print(f"{r['net']:24} {r['boxes']:5d} {r['outputs']:5d} {_fmt(r['fast_mean']):>9} "
              f"{_fmt(r['fast_worst']):>10} "
              f"{_fmt(r['exact_mean']):>10} {_fmt(r['exact_worst']):>11} {_fmt(r['t_fast'], '{:.3f}s'):>10} "
              f"{_fmt(r['t_exact'], '{:.1f}s'):>8} {_fmt(r['t_alirpa'], '{:.3f}s'):>12}", flush=True)

    for name, rel, csv_rel, eps in NETS:
        if args.only and args.only not in name:
            continue
        graph = load_onnx(data / rel)
        bg = lower(graph.to_dict())
        shape = graph.inputs[0].shape
        boxes = _boxes(data, rel, csv_rel, args.props, eps, bg.n_in)
        report(run_one(name, bg, _torch_from_onnx(data / rel), shape, boxes,
                       not args.no_exact and bg.n_vars <= EXACT_MAX_VARS))
    rng = np.random.default_rng(0)
    if not args.only or "tl_" in args.only:
        for name, model, tm, shape in trained_models(rng):
            if args.only and args.only not in name:
                continue
            x0 = rng.normal(size=shape)
            bg = lower(tl.trace(model, tl.tensor(x0)).to_dict())
            boxes = [(f"ball{e:g}", (x0 - e).ravel(), (x0 + e).ravel()) for e in (0.01, 0.05, 0.2)]
            report(run_one(name, bg, tm, shape, boxes, not args.no_exact and bg.n_vars <= EXACT_MAX_VARS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
