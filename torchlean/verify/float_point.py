"""Binary32 counterexamples near a point (untrusted search for ``--float32``; the two binary32 runs
of ``float32.float_counterexample`` decide).

A ``--float32`` sat must be a binary32 input vector. The real search hands over points (a real
counterexample of the property or of the property grown by epsilon, an exact box end or ReLU-kink
vertex from ``exact_point``, a near miss the exact replay refused) whose binary32 *rounding* is
often no counterexample: at a tie ``Y_0 >= M`` (M the exact maximum, reached at 1/3 or at a decimal
box end) the nearest binary32 point lands on the wrong side, while another binary32 point a few
steps away may well have a float32 output at or past M (rounding errors are ~1e-7 relative, a
property's tie or its 1e-12 margin far smaller). So this module searches the binary32 grid around
the point:

- the starts: per input the binary32 values just below and just above the point's coordinate
  (clipped to the region's binary32 range, strict ends strictly): their whole product at or below
  ``CORNER_INPUTS`` inputs, else the nearest point and ``RANDOM_STARTS`` random mixes;
- a descent: from the best start, moves of 1, 2, 4, ..., ``MAX_STEP`` binary32 steps along one
  input at a time (at most ``MOVE_INPUTS`` inputs a round, chosen at random above that), the best
  move taken while the float margin falls, ``ROUNDS`` rounds at most;
- every point whose float margin is at most ``TOL`` (best first, ``TRIES`` of them) goes to the
  ``test`` callback (``float_counterexample``: the runtime's batch-of-one run and the bit-exact
  emulation, atoms checked exactly on both).

The ranking runs a chain's layers in float32 on the whole batch (another summation order than
the runtime's batch of one: a ranking only) or, on other graphs, ``run_float`` itself. Nothing
here decides: only a point ``test`` accepts is returned.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates.property import Region, Spec
from ..certificates.rounding import round_fraction
from .attack import margins

#: the full product of the two binary32 neighbours per input at most this many inputs (2^8 points)
CORNER_INPUTS = 8
#: above it: the nearest point and this many random mixes of the two neighbours
RANDOM_STARTS = 64
#: a descent move goes up to this many binary32 steps along an input (1, 2, 4, ...)
MAX_STEP = 64
#: inputs moved per descent round at most (random ones above it)
MOVE_INPUTS = 32
ROUNDS = 12
#: points whose float margin is at most this (relative to the outputs' size) go to ``test``
TOL = 1e-6
TRIES = 4
#: (corner inputs, random starts, inputs moved per round, rounds) where ``run_float`` ranks (no
#: chain): ~(16 + 4 x 2 x 7 x 4) = 240 graph calls at most
SLOW = (4, 8, 4, 4)

Test = Callable[[list[Fraction]], Any]


def binary32_range(region: Region) -> tuple[np.ndarray, np.ndarray] | None:
    """(lo32, hi32): per input the least and greatest binary32 values of the region's interval
    (strict ends strictly), or None when some interval holds none."""
    lo, hi = [], []
    for a, b, sa, sb in zip(region.lo, region.hi, *region.strictness()):
        up, dn = round_fraction(a, "binary32", "rup"), round_fraction(b, "binary32", "rdn")
        if not (up.finite and dn.finite):
            return None
        f, g = np.float32(float(up.value)), np.float32(float(dn.value))
        if sa and Fraction(float(f)) == a:
            f = np.nextafter(f, np.float32(np.inf))
        if sb and Fraction(float(g)) == b:
            g = np.nextafter(g, np.float32(-np.inf))
        if not (np.isfinite(f) and np.isfinite(g) and f <= g):
            return None
        lo.append(f)
        hi.append(g)
    return np.array(lo, dtype=np.float32), np.array(hi, dtype=np.float32)


def _bracket(x: list[Fraction], lo32: np.ndarray, hi32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per input the binary32 values at or below and at or above x_i, clipped to [lo32, hi32]."""
    dn, up = [], []
    for q, a, b in zip(x, lo32, hi32):
        d = round_fraction(q, "binary32", "rdn")
        u = round_fraction(q, "binary32", "rup")
        fd = np.float32(float(d.value)) if d.finite else a
        fu = np.float32(float(u.value)) if u.finite else b
        dn.append(min(max(fd, a), b))
        up.append(min(max(fu, a), b))
    return np.array(dn, dtype=np.float32), np.array(up, dtype=np.float32)


def _ulp_move(x: np.ndarray, k: int) -> np.ndarray:
    """x moved k binary32 steps (k < 0: down), elementwise, through the integer order of floats."""
    i = x.view(np.int32).astype(np.int64)
    # the monotone integer key of a float32: negatives mirrored below the positives
    key = np.where(i < 0, -(i & 0x7FFFFFFF), i) + k
    back = np.where(key < 0, (-key) | 0x80000000, key).astype(np.int64)
    return (back & 0xFFFFFFFF).astype(np.uint32).view(np.float32)


class Ranker:
    """Float margins of binary32 points against one region: a chain's float32 layers on the batch
    (``layers``: float64 (W, b) holding float32 values), else the graph's ``run_float``."""

    def __init__(self, graph: Any, layers: list[tuple[np.ndarray, np.ndarray]] | None = None):
        self.graph = graph
        self.layers = None if layers is None else [(W.astype(np.float32), b.astype(np.float32))
                                                    for W, b in layers]

    def __call__(self, region: Region, X: np.ndarray) -> np.ndarray:
        if self.layers is not None:
            h = X.astype(np.float32)
            for i, (W, b) in enumerate(self.layers):
                h = h @ W.T + b
                if i + 1 < len(self.layers):
                    h = np.maximum(h, np.float32(0))
            y = h.astype(np.float64)
        else:
            from ..floats.network import run_float

            y = run_float(self.graph, X, np.float32).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            m = margins(region, y).min(1)
        return np.where(np.isnan(m), np.inf, m)


def search(spec: Spec, x: list[Fraction], rank: Ranker, test: Test, seed: int = 0) -> Any:
    """What ``test`` returned for the first binary32 point near x it accepted (module docstring),
    in a region whose box (widened by a float32 step) holds x; None when none was accepted."""
    rng = np.random.default_rng(seed)
    for region in spec.regions:
        rr = binary32_range(region)
        if rr is None or not region.disjuncts:
            continue
        lo32, hi32 = rr
        # (np.spacing is negative below 0: its magnitude is the step)
        step = [2 * abs(float(np.spacing(a))) for a in lo32], [2 * abs(float(np.spacing(b))) for b in hi32]
        if not all(float(a) - sa <= float(v) <= float(b) + sb
                   for v, a, b, sa, sb in zip(x, lo32, hi32, *step)):
            continue
        found = _search_region(region, x, lo32, hi32, rank, test, rng)
        if found is not None:
            return found
    return None


def _search_region(region: Region, x: list[Fraction], lo32: np.ndarray, hi32: np.ndarray,
                   rank: Ranker, test: Test, rng: np.random.Generator) -> Any:
    n = len(x)
    dn, up = _bracket(x, lo32, hi32)
    # (``run_float`` is one graph call per point: a smaller search where no chain ranks the batch)
    corner_inputs, starts, move_inputs, rounds = ((CORNER_INPUTS, RANDOM_STARTS, MOVE_INPUTS, ROUNDS)
                                                  if rank.layers is not None else SLOW)
    if n <= corner_inputs:
        bits = (np.arange(1 << n)[:, None] >> np.arange(n)) & 1
    else:
        bits = np.vstack([np.zeros((1, n), dtype=int), rng.integers(0, 2, (starts, n))])
    X = np.where(bits == 1, up, dn).astype(np.float32)
    X = np.unique(X, axis=0)
    m = rank(region, X)
    pool = {tuple(p.tolist()): float(v) for p, v in zip(X, m)}
    best = X[int(np.argmin(m))]
    best_m = float(m.min())
    scale = max(1.0, float(np.median(np.abs(m[np.isfinite(m)]))) if np.isfinite(m).any() else 1.0)
    steps = [1 << j for j in range(int(np.log2(MAX_STEP)) + 1)]
    for _ in range(rounds):
        if best_m <= 0:
            break
        dims = np.arange(n) if n <= move_inputs else rng.choice(n, move_inputs, replace=False)
        cand = []
        for d in dims:
            for k in steps:
                for s in (-k, k):
                    p = best.copy()
                    p[d] = _ulp_move(p[d:d + 1], s)[0]
                    if lo32[d] <= p[d] <= hi32[d]:
                        cand.append(p)
        if not cand:
            break
        C = np.unique(np.array(cand, dtype=np.float32), axis=0)
        mc = rank(region, C)
        pool.update({tuple(p.tolist()): float(v) for p, v in zip(C, mc)})
        i = int(np.argmin(mc))
        if not mc[i] < best_m:
            break
        best, best_m = C[i], float(mc[i])
    tries = sorted((v, p) for p, v in pool.items() if v <= TOL * scale)[:TRIES]
    for _, p in tries:
        found = test([Fraction(float(v)) for v in p])
        if found is not None:
            return found
    return None
