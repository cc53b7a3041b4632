"""Counterexample search: random sampling and projected sign-gradient descent (untrusted), and the
exact confirmation of a candidate (the same test the checker applies)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..certificates.core import tick
from ..certificates.network import Net, evaluate
from ..certificates.property import Atom, Region, Spec
from .network import FloatNet


def margins(region: Region, y: np.ndarray) -> np.ndarray:
    """For each point (B, n_out) and disjunct: max_k (a_k·y - b_k); <= 0 means unsafe (float)."""
    out = np.empty((y.shape[0], len(region.disjuncts)))
    for j, disj in enumerate(region.disjuncts):
        if not disj:
            out[:, j] = -np.inf
            continue
        A = np.array([[float(a) for a in t.a] for t in disj])
        b = np.array([float(t.b) for t in disj])
        out[:, j] = (y @ A.T - b).max(1)
    return out


def to_float32_in_box(x: np.ndarray, region: Region) -> list[Fraction] | None:
    """Round a point to float32 values in the region's input set (exact comparison): a value on
    or outside a bound moves inward by float32 steps, past a strict bound strictly (``X_0 > 0``
    never gives 0); None when no float32 value nearby is inside."""
    out = []
    for v, lo, hi, sl, sh in zip(x, region.lo, region.hi, *region.strictness()):
        f = np.float32(v)
        for _ in range(4):
            q = Fraction(float(f))
            if q < lo or (sl and q == lo):
                f = np.nextafter(f, np.float32(np.inf))
            elif q > hi or (sh and q == hi):
                f = np.nextafter(f, np.float32(-np.inf))
        q = Fraction(float(f))
        if not ((lo < q if sl else lo <= q) and (q < hi if sh else q <= hi)):
            return None
        out.append(q)
    return out


def confirm(net: Net, spec: Spec, x: list[Fraction]) -> bool:
    """Exact check that x is a counterexample (the checker's own rule: strict atoms and strict
    input bounds strictly)."""
    y = evaluate(net, x)
    return any(
        region.contains(x) and any(all(t.holds(y) for t in disj) for disj in region.disjuncts)
        for region in spec.regions
    )


def closure(spec: Spec) -> Spec | None:
    """The property with every strict atom and strict input bound made non-strict, or None when it
    has none. A counterexample to the closure that the property itself excludes (a point on a
    strict bound) means no unsat certificate can exist: the replay bounds the closed box, and at
    that point no atom of the disjunct fails with a positive margin."""
    if not any(any(r.strictness()[0]) or any(r.strictness()[1])
               or any(t.strict for d in r.disjuncts for t in d) for r in spec.regions):
        return None
    return Spec(spec.n_in, spec.n_out, tuple(
        Region(r.lo, r.hi, tuple(tuple(Atom(t.a, t.b, False) for t in d) for d in r.disjuncts))
        for r in spec.regions))


def inward(net: Net, fnet: FloatNet, spec: Spec, x: list[Fraction]) -> list[Fraction]:
    """A counterexample of ``spec`` on the segment from ``x`` (a counterexample of its closure) to
    the centre of each region's box, at distances 2^-k (k = 1..60) from x; else ``x`` itself."""
    if confirm(net, spec, x):
        return x
    xs = np.array([float(v) for v in x])
    t = 2.0 ** -np.arange(1, 61)[:, None]
    for region in spec.regions:
        centre = np.array([float(a + b) / 2 for a, b in zip(region.lo, region.hi)])
        found = try_points(net, fnet, spec, region, xs + t * (centre - xs))
        if found is not None:
            return found
    return x


def try_points(net: Net, fnet: FloatNet, spec: Spec, region: Region, x: np.ndarray) -> list[Fraction] | None:
    """Confirm the most violating of the float candidates x (B, d), if any looks unsafe."""
    m = margins(region, fnet.forward(x)).min(1)
    for i in np.argsort(m)[:3]:
        if m[i] > 1e-9:
            break
        q = to_float32_in_box(x[i], region)
        if q is not None and confirm(net, spec, q):
            return q
    return None


def _grad(fnet: FloatNet, x: np.ndarray, A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value and input gradient of max_k (A_k·y - b_k) at each point."""
    acts, h = [], x
    for i, (W, c) in enumerate(fnet.layers):
        h = h @ W.T + c
        if i + 1 < len(fnet.layers):
            acts.append(h > 0)
            h = np.maximum(h, 0.0)
    vals = h @ A.T - b
    k = vals.argmax(1)
    g = A[k]
    for i in range(len(fnet.layers) - 1, -1, -1):
        g = g @ fnet.layers[i][0]
        if i > 0:
            g = g * acts[i - 1]
    return vals.max(1), g


def search(
    net: Net,
    fnet: FloatNet,
    spec: Spec,
    seed: int = 0,
    samples: int = 2000,
    steps: int = 40,
    starts: int = 64,
) -> list[Fraction] | None:
    """Random sampling then PGD per region and disjunct; returns an exactly confirmed point."""
    rng = np.random.default_rng(seed)
    for region in spec.regions:
        lo = np.array([float(v) for v in region.lo])
        hi = np.array([float(v) for v in region.hi])
        x = rng.uniform(lo, hi, (samples, lo.size))
        found = try_points(net, fnet, spec, region, x)
        if found is not None:
            return found
        m = margins(region, fnet.forward(x))
        for j, disj in enumerate(region.disjuncts):
            if not disj:
                return try_points(net, fnet, spec, region, (lo + hi)[None] / 2)
            A = np.array([[float(a) for a in t.a] for t in disj])
            b = np.array([float(t.b) for t in disj])
            z = x[np.argsort(m[:, j])[:starts]].copy()
            step = (hi - lo) / 4
            for _ in range(steps):
                tick()  # (the caller's deadline: a deep network makes each step slow)
                _, g = _grad(fnet, z, A, b)
                z = np.clip(z - step * np.sign(g), lo, hi)
                step = step * 0.85
            found = try_points(net, fnet, spec, region, z)
            if found is not None:
                return found
    return None


def pgd_in_boxes(
    fnet: FloatNet, region: Region, lo: np.ndarray, hi: np.ndarray, steps: int = 8
) -> np.ndarray:
    """From each box's centre, a few sign-gradient steps per disjunct towards its unsafe set,
    staying in the box; returns the candidates (B·J, d). Used on the open boxes of branch-and-bound,
    where a counterexample, if any, is most likely."""
    out = []
    for disj in region.disjuncts:
        if not disj:
            continue
        A = np.array([[float(a) for a in t.a] for t in disj])
        b = np.array([float(t.b) for t in disj])
        z = (lo + hi) / 2
        step = (hi - lo) / 4
        for _ in range(steps):
            _, g = _grad(fnet, z, A, b)
            z = np.clip(z - step * np.sign(g), lo, hi)
            step = step * 0.7
        out.append(z)
    return np.concatenate(out) if out else (lo + hi) / 2
