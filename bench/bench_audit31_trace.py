"""tl.verify.bounds on the docs' CNN and one plain tl.trace, medians of 20 calls (audit31: the
cost of the faithful trace and the second-point checks). Run with each tree on PYTHONPATH."""

import time

import numpy as np

import torchlean as tl
from torchlean import nn

tl.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(64, 10)).eval()
x = np.random.default_rng(0).random((1, 1, 8, 8))
tl.verify.bounds(model, x, eps=0.01)
ts, tt = [], []
for _ in range(20):
    t0 = time.perf_counter()
    tl.verify.bounds(model, x, eps=0.01)
    ts.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    tl.trace(model, tl.tensor(x))
    tt.append(time.perf_counter() - t0)
print(f"bounds median {np.median(ts) * 1e3:.2f} ms, one trace median {np.median(tt) * 1e3:.3f} ms")
