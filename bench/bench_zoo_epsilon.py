"""The zoo's float32 epsilons on their data boxes, without training or the gradient proof: the
``errorbound`` certificate of ``zoo.claims.float32_epsilon``'s box for one model at its
initialisation (seed 0) or after a short training, with generate / replay / observe seconds.

    python bench/bench_zoo_epsilon.py lstm [STEPS]       # lstm / gru: trained STEPS (default 300)
    python bench/bench_zoo_epsilon.py demo               # ``python -m torchlean demo``'s ε (its model, box)
    python bench/bench_zoo_epsilon.py pinn               # pinn / ppo: untrained (seed 0), their --certify box
    python bench/bench_zoo_epsilon.py autoencoder        # untrained, the box [0, 1]^64
    python bench/bench_zoo_epsilon.py fno                # untrained, the training inputs' range
    python bench/bench_zoo_epsilon.py transformer [L]    # 'sums' model after its lookup, context L
    python bench/bench_zoo_epsilon.py resnet [STEPS]     # cnn / resnet: trained STEPS (default 0), [0, 1]^64
    python bench/bench_zoo_epsilon.py mlp --act=GELU     # untrained 8-64-64-1 (GELU, SiLU, ...), [-1, 1]^8

``--ranges=ibp|crown|fast`` (last argument) picks the statement's ranges (default: fast);
``--column=exact|fast``: the rounding-error column (default: ``floats.errorbound.default_column``);
``--ball=R``: the box ±R around the model's own input (lstm/gru: test window 0) instead;
transformer ``--width=W [--layers=N]``: an untrained narrower 'sums' model (2 heads, N blocks, default 2).
Prints one line: epsilon (and the error column that made it), observed (500 samples against the
binary64 run), the seconds of each part, or the one-line reason no certificate was made
(bench/README.md, "The zoo's epsilons").
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction

import numpy as np

import torchlean as tl
from torchlean.certificates import check
from torchlean.floats import bound_certificate, epsilons, observed_error
from torchlean.runtime.tensor import tensor
from torchlean.runtime.trace import trace


def build(kind: str, arg: int | None) -> tuple[object, np.ndarray, list[tuple[Fraction, Fraction]]]:
    """(model, one input, box) as the command's ``--certify`` uses them."""
    tl.manual_seed(0)
    if kind in ("lstm", "gru"):
        from torchlean.zoo.sequence import WINDOW, Forecaster, load

        data = load(0)
        net = Forecaster(kind, 32)
        tr = tl.Trainer(net, task="regression", optimizer="adam", lr=1e-2, seed=0)
        net = tr.train(data.train(), steps=arg or 300, batch_size=32).model
        series = np.concatenate([data.x_train.reshape(-1, 2), data.y_train, data.x_test.reshape(-1, 2),
                                 data.y_test])
        lo, hi = series.min(0), series.max(0)
        return net, data.x_test[:1], [(Fraction(float(lo[j])), Fraction(float(hi[j])))
                                      for _ in range(WINDOW) for j in range(2)]
    if kind == "demo":  # ``python -m torchlean demo``'s model and box (its ε; 300 Adam steps, seed 0)
        from torchlean import nn
        from torchlean.zoo import auto_mpg

        data = auto_mpg.load()
        net = nn.Sequential(nn.Linear(7, 8), nn.Tanh(), nn.Linear(8, 1))
        tr = tl.Trainer(net, task="regression", optimizer="adam", lr=0.02, seed=0)
        net = tr.train(data.train(), steps=arg or 300, batch_size=32, progress=False).model
        x = data.x_test.astype(np.float32)
        return net, x[:1], [(Fraction(float(a)), Fraction(float(b))) for a, b in zip(x.min(0), x.max(0))]
    if kind == "mlp":  # untrained 8-64-64-1, ``--act=`` one of the runtime's activations
        from torchlean.runtime import nn

        act = getattr(nn, next((a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith("--act=")), "GELU"))
        net = nn.Sequential(nn.Linear(8, 64), act(), nn.Linear(64, 64), act(), nn.Linear(64, 1))
        return net, np.zeros((1, 8), np.float32), [(Fraction(-1), Fraction(1))] * 8
    if kind == "pinn":  # untrained, x in [0, 1]
        from torchlean.zoo.pinn import model as pinn_model

        return pinn_model(), np.array([[0.5]], np.float32), [(Fraction(0), Fraction(1))]
    if kind == "ppo":  # the untrained policy on the safety boxes' hull
        from torchlean.zoo.ppo import SAFETY_BOXES, policy_net

        lows, highs = zip(*((lo, hi) for lo, hi, _ in SAFETY_BOXES.values()))
        return policy_net(), np.zeros((1, 4), np.float32), [
            (Fraction(float(a)), Fraction(float(b))) for a, b in zip(np.min(lows, 0), np.max(highs, 0))]
    if kind == "autoencoder":
        from torchlean.zoo.generative import autoencoder

        return autoencoder(), np.zeros((1, 64), np.float32), [(Fraction(0), Fraction(1))] * 64
    if kind == "fno":
        from torchlean.zoo.fno import GRID, FNO1d, burgers

        u0, _ = burgers(512, 0)
        return FNO1d(), u0[:1], [(Fraction(float(u0.min())), Fraction(float(u0.max())))] * GRID
    if kind in ("cnn", "resnet"):  # STEPS Adam steps (lr 0.01, batch 64, seed 0; default 0: untrained)
        from torchlean.zoo import digits
        from torchlean.zoo.cnn import model

        data = digits.load()
        net = model(kind)
        if arg:
            tr = tl.Trainer(net, task="classification", optimizer="adam", lr=0.01, seed=0)
            net = tr.train(data.train(), steps=arg, batch_size=64).model
        return net, data.x_test[:1], [(Fraction(0), Fraction(1))] * 64
    if kind == "transformer":
        from torchlean.zoo.transformer import AfterLookup, CharGPT, lookup_box, model

        width = next((int(a.split("=", 1)[1]) for a in sys.argv[2:] if a.startswith("--width=")), None)
        gpt = model("sums") if width is None else CharGPT(width=width, heads=2, layers=next(
            (int(a.split("=", 1)[1]) for a in sys.argv[2:] if a.startswith("--layers=")), 2))
        n = arg or gpt.block
        x = gpt.tok(tl.tensor(np.arange(n)[None] % gpt.head.out_features)).numpy()
        return AfterLookup(gpt), x, [(Fraction(a), Fraction(b)) for a, b in lookup_box(gpt, n)]
    raise SystemExit(f"unknown model {kind!r}")


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "autoencoder"
    arg = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else None
    ranges = next((a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith("--ranges=")), None)
    column = next((a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith("--column=")), None)
    net, x, box = build(kind, arg)
    ball = next((Fraction(a.split("=", 1)[1]) for a in sys.argv[2:] if a.startswith("--ball=")), None)
    if ball is not None:
        centre = np.asarray(x, np.float32).ravel()
        box = [(Fraction(float(v)) - ball, Fraction(float(v)) + ball) for v in centre]
    net.eval()
    g = trace(net, tensor(np.asarray(x, dtype=np.float32)))
    t0 = time.perf_counter()
    try:
        cert = bound_certificate(g, box, "binary32", ranges=ranges, column=column)
    except Exception as e:  # noqa: BLE001 - the reason is the result
        print(f"{kind}: NOT certified ({type(e).__name__}: {e}) after {time.perf_counter() - t0:.1f} s")
        return
    t1 = time.perf_counter()
    v = check(cert)
    t2 = time.perf_counter()
    obs = float(observed_error(g, box, n=500, reference=False).max_error.max())
    t3 = time.perf_counter()
    eps = float(max(epsilons(cert)))
    ratio = eps / obs if obs else float("inf")
    col = cert["statement"].get("column", "exact")
    print(f"{kind}: eps {eps:.6g} ({'replayed' if v.ok else 'REJECTED ' + v.reason}; {col} column), "
          f"observed {obs:.3g}, "
          f"ratio {ratio:.3g}; generate {t1 - t0:.1f} s, replay {t2 - t1:.1f} s, observe {t3 - t2:.1f} s")


if __name__ == "__main__":
    main()
