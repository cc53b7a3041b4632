"""audit32: cost of the faithful trace (plus the second point) against the plain trace, on two zoo
models (untrained), interleaved, 5 rounds each, medians.

Run: PYTHONPATH=. nice python bench/bench_audit32_trace.py
"""

import time
import warnings
from fractions import Fraction as Q

import numpy as np

import torchlean as tl
from torchlean.runtime.tensor import tensor
from torchlean.runtime.trace import trace
from torchlean.verify.api import _graph, _other_point
from torchlean.zoo import sequence, transformer

warnings.simplefilter("ignore")
gpt = transformer.model("text")
short = min(gpt.block, transformer.EPS_CONTEXT)
xt = gpt.tok(tl.tensor(np.arange(short)[None] % gpt.head.out_features)).numpy()
CASES = [("lstm", sequence.Forecaster("lstm", 32).eval(), np.full((1, sequence.WINDOW, 2), 0.1),
          [(-2, 2)] * (2 * sequence.WINDOW)),
         ("chargpt", transformer.AfterLookup(gpt).eval(), xt, transformer.lookup_box(gpt, short))]
for name, net, x, box in CASES:
    xa = np.asarray(np.asarray(x, np.float32), np.float64)
    lo, hi = tuple(Q(a) for a, _ in box), tuple(Q(b) for _, b in box)
    old, new = [], []
    for _ in range(5):
        t = time.perf_counter()
        trace(net, tensor(np.asarray(x, np.float32)))
        old.append(time.perf_counter() - t)
        t = time.perf_counter()
        _graph(net, xa, _other_point(xa, lo, hi))
        new.append(time.perf_counter() - t)
    print(f"{name}: plain trace median {np.median(old) * 1e3:.1f} ms, faithful + second point median "
          f"{np.median(new) * 1e3:.1f} ms")
