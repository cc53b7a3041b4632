"""tl.verify.bounds with and without float32=True (audit31: the cost of widening by a checked
errorbound certificate), medians of 5 calls, alternating, on a small MLP and the docs' CNN."""

import time

import numpy as np

import torchlean as tl
from torchlean import nn

tl.manual_seed(0)
cases = {
    "mlp 2-4-3": (nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3)).eval(), (1, 2)),
    "docs cnn": (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Flatten(), nn.Linear(64, 10)).eval(), (1, 1, 8, 8)),
}
for name, (model, shape) in cases.items():
    x = np.random.default_rng(0).random(shape)
    real, f32 = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        tl.verify.bounds(model, x, eps=0.01)
        real.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tl.verify.bounds(model, x, eps=0.01, float32=True)
        f32.append(time.perf_counter() - t0)
    print(f"{name}: bounds {np.median(real) * 1e3:.1f} ms, float32=True {np.median(f32) * 1e3:.1f} ms")
