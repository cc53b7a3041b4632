"""Certified float32 error bounds vs observed error: MLPs, a small CNN and ACAS Xu over property
boxes. Prints a markdown table. Run: python bench/bench_rounding_error.py [N_POINTS] [N_ACAS] [SKIP]
(SKIP given: only the ACAS Xu cases SKIP .. SKIP + N_ACAS - 1, no small models)
or ``python bench/bench_rounding_error.py sweep [N_POINTS]``: every ACAS Xu network on props 3, 4,
or ``python bench/bench_rounding_error.py trained [N_POINTS] [CNN_STEPS]``: the demo's MLP and the
digits CNN on their data boxes, ``balls [N_POINTS]``: ACAS Xu on ±0.01 / ±0.05 balls,
``layers [N_POINTS] [acas]``: the demo's (or an ACAS Xu ball's) ε node by node and the floor of
its any-order claim,
or ``python bench/bench_rounding_error.py split [N_POINTS] [SPLITS] [N_ACAS] [SKIP]``: ACAS Xu boxes
with and without input splitting (``errorbound-split`` certificates, at most SPLITS bisections):
N_ACAS cases (default 4: the large boxes of props 1, 2, 5, 7) after the first SKIP (the small
prop 3, 4 boxes come last: ``split 10000 31 2 4``)."""

from __future__ import annotations

import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from torchlean.certificates import check
from torchlean.floats import bound_certificate, epsilons, observed_error, searched_error

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from floats_models import cnn, mlp  # noqa: E402


def acas_dir() -> Path | None:
    for p in (ROOT / "tests" / "data" / "vnncomp2021" / "acasxu",
              Path("/work/shared/data/vnncomp2021/acasxu")):
        if (p / "ACASXU_run2a_1_1_batch_2000.onnx").exists():
            return p
    return None


#: rounds of ``searched_error``'s float-neighbourhood phase (0: the Gaussian hill climb alone)
ULP_ROUNDS = 30


def measure(g, box, n: int, **kw):
    """Certificate, ε per output, observed error, soundness, checker verdict, generate/replay s."""
    t = time.time()
    cert = bound_certificate(g, box, **kw)
    t_gen = time.time() - t
    t = time.time()
    v = check(cert)
    t_chk = time.time() - t
    eps = np.array([float(e) for e in epsilons(cert)])
    obs = observed_error(g, box, n)
    # the searched maximum starts from the same n points (same seed), then hill-climbs, then
    # searches the float neighbourhoods of the worst points (``ulp_rounds``)
    obs.searched = np.maximum(searched_error(g, box, n, ulp_rounds=ULP_ROUNDS), obs.max_error)
    sound = bool(np.all(obs.searched + obs.reference_error <= eps))
    return cert, eps, obs, sound, v.ok, t_gen, t_chk


def row(name: str, g, box, n: int, **kw) -> str:
    _, eps, obs, sound, ok, t_gen, t_chk = measure(g, box, n, **kw)
    ratio, rs = eps / obs.max_error, eps / obs.searched
    return (f"| {name} | {eps.max():.3g} | {obs.max_error.max():.3g} | {obs.searched.max():.3g} | "
            f"{ratio.min():.3g} – {ratio.max():.3g} | {rs.min():.3g} – {rs.max():.3g} | "
            f"{'yes' if sound else '**NO**'} | {'replayed' if ok else 'REJECTED'} | "
            f"{t_gen:.1f} / {t_chk:.1f} |")


HEAD = ("| model (float32, RNE) | max ε (certified) | max observed (random) | max observed (searched) | "
        "ε/observed random, per output | ε/observed searched, per output | sound | checker | "
        "generate / replay s |")


def main(n: int = 10_000, n_acas: int = 4, skip: int | None = None) -> None:
    """The small models (unless ``skip`` is given), then ACAS Xu cases skip .. skip + n_acas - 1."""
    print(HEAD)
    print("|---|---|---|---|---|---|---|---|---|")
    box4 = [(-1, 1)] * 4
    for act in ("relu", "tanh", "sigmoid") if skip is None else ():
        print(row(f"MLP 4-16-16-2 {act}, box [-1,1]^4", mlp([4, 16, 16, 2], act), box4, n))
        print(row(f"MLP 4-64-64-64-2 {act}, box [-1,1]^4", mlp([4, 64, 64, 64, 2], act, seed=1), box4, n))
    if skip is None:
        print(row("CNN conv3x3(4)-relu-maxpool-linear, box [0,1]^64", cnn(), [(0, 1)] * 64, n))
    root = acas_dir()
    if root is None:
        print("| ACAS Xu | not available | | | | | |")
        return
    from torchlean.bridge.onnx import load_onnx
    from torchlean.bridge.vnnlib import parse_vnnlib

    for net, prop in ACAS_CASES[skip or 0:(skip or 0) + n_acas]:
        g = load_onnx(root / f"ACASXU_run2a_{net}_batch_2000.onnx")
        p = parse_vnnlib(root / f"prop_{prop}.vnnlib")
        box = [(Fraction(float(a)), Fraction(float(b))) for a, b in zip(p.lower, p.upper)]
        print(row(f"ACAS Xu {net}, prop {prop} box", g, box, n))


ACAS_CASES = [("1_1", 1), ("1_1", 3), ("1_1", 4), ("2_1", 2), ("1_2", 5), ("1_9", 7)]


def split_rows(n: int = 10_000, splits: int = 31, n_acas: int = 4, skip: int = 0) -> None:
    """The large boxes (props 1, 2, 5, 7) first, then the small ones (props 3, 4)."""
    from torchlean.bridge.onnx import load_onnx
    from torchlean.bridge.vnnlib import parse_vnnlib
    from torchlean.floats.splitbound import leaves

    root = acas_dir()
    if root is None:
        print("ACAS Xu networks not available")
        return
    print(f"| box (float32, RNE), --splits {splits} | max ε unsplit | max ε split | leaves | "
          "max observed random / searched | ε/observed (searched) unsplit → split | sound | checker | "
          "generate / replay s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for net, prop in sorted(ACAS_CASES, key=lambda c: c[1] in (3, 4))[skip:skip + n_acas]:
        g = load_onnx(root / f"ACASXU_run2a_{net}_batch_2000.onnx")
        p = parse_vnnlib(root / f"prop_{prop}.vnnlib")
        box = [(Fraction(float(a)), Fraction(float(b))) for a, b in zip(p.lower, p.upper)]
        eps0 = np.array([float(e) for e in epsilons(bound_certificate(g, box))])
        cert, eps, obs, sound, ok, t_gen, t_chk = measure(g, box, n, splits=splits)
        r0, r1 = eps0 / obs.searched, eps / obs.searched
        print(f"| ACAS Xu {net}, prop {prop} | {eps0.max():.3g} | {eps.max():.3g} | "
              f"{len(leaves(cert['tree']))} | {obs.max_error.max():.3g} / {obs.searched.max():.3g} | "
              f"{r0.min():.2g}–{r0.max():.2g} → {r1.min():.2g}–{r1.max():.2g} | "
              f"{'yes' if sound else '**NO**'} | {'replayed' if ok else 'REJECTED'} | "
              f"{t_gen:.0f} / {t_chk:.0f} |", flush=True)


def sweep(n: int = 10_000) -> None:
    from torchlean.bridge.onnx import load_onnx
    from torchlean.bridge.vnnlib import parse_vnnlib

    root = acas_dir()
    if root is None:
        print("ACAS Xu networks not available")
        return
    print(HEAD)
    print("|---|---|---|---|---|---|---|---|---|")
    for prop in (3, 4):
        p = parse_vnnlib(root / f"prop_{prop}.vnnlib")
        box = [(Fraction(float(a)), Fraction(float(b))) for a, b in zip(p.lower, p.upper)]
        files = root.glob("ACASXU_run2a_*_batch_2000.onnx")
        for net in sorted(f.name[len("ACASXU_run2a_"):][:3] for f in files):
            g = load_onnx(root / f"ACASXU_run2a_{net}_batch_2000.onnx")
            print(row(f"ACAS Xu {net}, prop {prop} box", g, box, n), flush=True)


def trained(n: int = 2_000, cnn_steps: int = 400) -> None:
    """Trained models on their data boxes: the demo's Auto MPG MLP 7-8-1 tanh (300 Adam steps,
    box = the held-out data's min/max per feature) and the digits CNN of ``python -m torchlean
    cnn`` (``cnn_steps`` steps, box [0, 1]^64, the default fast ranges as ``zoo.claims.float32_epsilon``)."""
    import torchlean as tl
    from torchlean.zoo import cnn as zcnn
    from torchlean.zoo import digits

    print(HEAD)
    print("|---|---|---|---|---|---|---|---|---|")
    g, box = _demo()
    print(row("demo: Auto MPG MLP 7-8-1 tanh (trained), held-out data box", g, box, n), flush=True)
    d = digits.load()
    tl.manual_seed(0)
    net = zcnn.model("cnn")
    net = tl.Trainer(net, task="classification", optimizer="adam", lr=0.01, seed=0).train(
        d.train(), steps=cnn_steps, batch_size=32, progress=False).model
    net.eval()
    g = tl.trace(net, tl.tensor(d.x_test[:1]))
    print(row("digits CNN (zoo cnn, trained), pixel box [0,1]^64, fast ranges", g,
              [(Fraction(0), Fraction(1))] * 64, n), flush=True)


def _demo():
    """The demo's trained Auto MPG MLP 7-8-1 tanh and its held-out data box (as ``trained``)."""
    import torchlean as tl
    from torchlean import nn
    from torchlean.zoo import auto_mpg

    tl.manual_seed(0)
    data = auto_mpg.load()
    model = nn.Sequential(nn.Linear(7, 8), nn.Tanh(), nn.Linear(8, 1))
    tl.Trainer(model, task="regression", optimizer="adam", lr=0.02, seed=0).train(
        data.train(), steps=300, batch_size=32, progress=False)
    g = tl.trace(model, tl.tensor(np.zeros((1, 7), dtype=np.float32)))
    x = data.x_test.astype(np.float32)
    return g, [(float(lo), float(hi)) for lo, hi in zip(x.min(0), x.max(0))]


def pointwise(g, x: np.ndarray, const_slope: bool = False) -> np.ndarray:
    """The worst case, at each point of ``x`` and to first order, of the model the checker
    certifies: every operation rounded with its own |δ| <= u (a dot product in any summation
    order: its worst tree puts the largest terms deepest, u(Σ|p_i| + Σ depth_i |p_i|)), tanh
    within 4 ulp. First order the output's error is linear in the δs, so its maximum is Σ over
    operations of |∂out/∂(operation)| x its charge, the adjoints by backpropagation (float64):
    what an analysis of this claim with exact ranges at every point, keeping every correlation,
    would certify there. ``const_slope``: tanh's slope the maximum of sech² over the sampled
    range instead of its value at the point. Graphs of sub/add/matmul by constants, flatten,
    relu, tanh; per output, (points, outputs)."""
    u = 2.0 ** -24
    C = {k: np.asarray(v, dtype=np.float64) for k, v in g.constants.items()}

    def dot(P):  # P (points, n, m): the n products of each of m outputs
        a = np.sort(np.abs(P), axis=-2)[..., ::-1, :]
        k = a.shape[-2]
        d = np.array([k - 1, *range(k - 1, 0, -1)], dtype=float)[:, None]
        return u * (a.sum(-2) + (a * d).sum(-2))

    val = {g.inputs[0].name: x.reshape(len(x), -1)}
    tape = []  # (node, input value, charge per output element)
    for node in g.nodes:
        op, ins = node.op, node.inputs
        if op == "transpose":
            C[node.output] = C[ins[0]].T
            continue
        a = val[ins[0]]
        if op in ("flatten", "reshape", "relu"):
            v, ch = (np.maximum(a, 0) if op == "relu" else a), 0.0
        elif op in ("add", "sub"):
            v = a + C[ins[1]].reshape(-1) if op == "add" else a - C[ins[1]].reshape(-1)
            ch = u * np.abs(v)
        elif op == "matmul":
            v = a @ C[ins[1]]
            ch = dot(a[:, :, None] * C[ins[1]][None])
        elif op == "tanh":
            v = np.tanh(a)
            ch = 8 * u * np.abs(v)
        else:
            raise ValueError(f"pointwise: no rule for {op}")
        val[node.output] = v
        tape.append((node, a, ch))
    m = val[g.outputs[0]].shape[1]
    out = np.zeros((len(x), m))
    for o in range(m):
        adj = np.zeros((len(x), m))
        adj[:, o] = 1
        for node, a, ch in reversed(tape):
            out[:, o] += (np.abs(adj) * ch).sum(-1)
            if node.op == "matmul":
                adj = adj @ C[node.inputs[1]].T
            elif node.op == "relu":
                adj = adj * (a > 0)
            elif node.op == "tanh":
                s = 1 - np.tanh(a) ** 2
                if const_slope:
                    lo, hi = a.min(0), a.max(0)
                    ends = np.maximum(1 - np.tanh(lo) ** 2, 1 - np.tanh(hi) ** 2)
                    s = np.where((lo < 0) & (hi > 0), 1.0, ends)
                adj = adj * s
    return out


def layers(n: int = 2_000, which: str = "demo") -> None:
    """Where an ε comes from (the demo, or ``acas``: ACAS Xu 1_1 ±0.01 around the prop 1 centre):
    per IR node, the certified bound against the float32 run's error at n sampled points
    (binary64 reference); then ``pointwise`` at 20,000 points, the floor of the claim."""
    from torchlean.certificates.errorbound import propagate
    from torchlean.floats.errorbound import sample_box, statement
    from torchlean.runtime.rules import RULES
    from torchlean.spec.primitives import PRIMITIVES

    if which == "demo":
        g, box = _demo()
    else:
        from torchlean.bridge.onnx import load_onnx
        from torchlean.bridge.vnnlib import parse_vnnlib

        g = load_onnx(acas_dir() / "ACASXU_run2a_1_1_batch_2000.onnx")
        p = parse_vnnlib(acas_dir() / "prop_1.vnnlib")
        c = [(Fraction(float(a)) + Fraction(float(b))) / 2 for a, b in zip(p.lower, p.upper)]
        box = [(x - Fraction(1, 100), x + Fraction(1, 100)) for x in c]
    steps = propagate(statement(g, box))

    def run(x, dt):
        env = {g.inputs[0].name: x.reshape(g.inputs[0].shape).astype(dt)}
        env.update({k: np.asarray(a).astype(dt) for k, a in g.constants.items()})
        for node in g.nodes:
            env[node.output] = RULES[node.op].forward(
                np, *(env[i] for i in node.inputs), **PRIMITIVES[node.op].check_attrs(node.attrs))
        return env

    x = sample_box(box, n)
    runs = [(run(p, np.float32), run(p.astype(np.float64), np.float64)) for p in x]
    print("| node | max certified bound | max observed (n points) | certified/observed per element |")
    print("|---|---|---|---|")
    for k, node in enumerate(g.nodes):
        cert = np.array([float(e) for e in steps[k]])
        if cert.max() == 0:
            continue
        obs = np.max([np.abs(a[node.output].astype(np.float64) - b[node.output]).reshape(-1)
                      for a, b in runs], axis=0)
        r = cert / np.maximum(obs, 1e-300)
        print(f"| {node.op} {node.output} | {cert.max():.3g} | {obs.max():.3g} | "
              f"{r.min():.3g} – {r.max():.3g} |")
    x = sample_box(box, 20_000).astype(np.float64)
    for const in (False, True) if which == "demo" else (False,):
        e = pointwise(g, x, const)
        print(f"pointwise first-order any-order bound{', tanh slope max over the range' if const else ''}: "
              f"max per output {', '.join(f'{v:.3g}' for v in e.max(0))} over 20,000 points")


def balls(n: int = 2_000, radii: tuple[float, ...] = (0.01, 0.05)) -> None:
    """Small balls (boxes of radius r per input) around the centres of ACAS Xu property boxes."""
    from torchlean.bridge.onnx import load_onnx
    from torchlean.bridge.vnnlib import parse_vnnlib

    root = acas_dir()
    if root is None:
        print("ACAS Xu networks not available")
        return
    print(HEAD)
    print("|---|---|---|---|---|---|---|---|---|")
    for net, prop in (("1_1", 1), ("1_1", 3)):
        g = load_onnx(root / f"ACASXU_run2a_{net}_batch_2000.onnx")
        p = parse_vnnlib(root / f"prop_{prop}.vnnlib")
        c = [(Fraction(float(a)) + Fraction(float(b))) / 2 for a, b in zip(p.lower, p.upper)]
        for r in radii:
            box = [(x - Fraction(r), x + Fraction(r)) for x in c]
            print(row(f"ACAS Xu {net}, ±{r} around the prop {prop} centre", g, box, n), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["sweep"]:
        sweep(*(int(a) for a in sys.argv[2:3]))
    elif sys.argv[1:2] == ["trained"]:
        trained(*(int(a) for a in sys.argv[2:4]))
    elif sys.argv[1:2] == ["layers"]:
        layers(*(int(a) for a in sys.argv[2:3]), *sys.argv[3:4])
    elif sys.argv[1:2] == ["balls"]:
        balls(*(int(a) for a in sys.argv[2:3]))
    elif sys.argv[1:2] == ["split"]:
        split_rows(*(int(a) for a in sys.argv[2:6]))
    else:
        main(*(int(a) for a in sys.argv[1:4]))
