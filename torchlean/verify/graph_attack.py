"""Counterexample search on any graph the runtime executes (untrusted; every find is re-checked).

``GraphExec`` runs a graph IR on a batch of flat input points with the runtime's own kernels and
VJP rules (``runtime.rules.RULES``: the code ``tl.Tensor`` and ``run_graph`` execute), in float64,
and returns the input gradient of a per-point scalar objective. Batching substitutes the batch size
for the leading dimension 1 every VNN-COMP and ``tl.trace`` graph has; when a graph touches that
axis (a reduction over it, a concat along it, ...) or the batched run disagrees with per-point runs,
it falls back to one point at a time.

``search`` is projected sign-gradient descent (PGD) with restarts, per disjunct of the unsafe set:
from the best of a random sample, from random box corners, from the box centre and from any extra
starting points the caller gives (the minimisers of linear lower bounds, for instance). Candidates
are rounded to float32 inside the box and handed, most violating first, to ``confirm``: the
trusted check the verdict rests on (exact evaluation in ``certificates``). The search itself
decides nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from .. import runtime  # noqa: F401  (registers the kernels and VJP rules)
from ..certificates.property import Region, Spec
from ..runtime.rules import RULES
from ..spec.graph import Graph
from ..spec.primitives import PRIMITIVES
from .attack import to_float32_in_box

#: attributes that name axes; a graph that uses axis 0 (the batch axis) in them is run point by point
_AXIS_ATTRS = {"axes", "axis", "start_dim"}


class GraphExec:
    """Batched float64 execution and input gradients of a one-input graph over flat points."""

    def __init__(self, graph: Graph):
        self.graph = graph.check() if not graph.values else graph
        if len(self.graph.inputs) != 1:
            raise ValueError(f"the attack needs a graph with one input, this one has {len(graph.inputs)}")
        self.inp = self.graph.inputs[0]
        self.shape = tuple(self.inp.shape)
        self.n_in = int(np.prod(self.shape))
        self.out_shapes = [self.graph.values[o].shape for o in self.graph.outputs]
        self.n_out = sum(int(np.prod(s)) for s in self.out_shapes)
        # the part of the graph that depends on the input; the rest is folded once
        live = {self.inp.name}
        env: dict[str, Any] = {k: np.asarray(a) for k, a in self.graph.constants.items()}
        self.nodes: list[tuple[str, list[str], str, dict[str, Any]]] = []
        for n in self.graph.nodes:
            attrs = PRIMITIVES[n.op].check_attrs(n.attrs)
            if any(i in live for i in n.inputs):
                live.add(n.output)
                self.nodes.append((n.op, list(n.inputs), n.output, attrs))
            else:
                env[n.output] = RULES[n.op].forward(np, *(env[i] for i in n.inputs), **attrs)
        self.consts = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in env.items()}
        self.batchable = self._batchable(live)
        if self.batchable:  # trust batching only when it reproduces per-point runs
            rng = np.random.default_rng(0)
            x = rng.standard_normal((3, self.n_in))
            try:
                ok = np.allclose(self._run(x, True)[0], self._run(x, False)[0], rtol=1e-9, atol=1e-9)
            except Exception:  # a kernel refused the batched shapes
                ok = False
            self.batchable = bool(ok)

    def _batchable(self, live: set[str]) -> bool:
        """Static screen: every live value has leading dimension 1 and no attribute names axis 0
        (the per-point comparison in ``__init__`` then confirms it)."""
        if not self.shape or self.shape[0] != 1:
            return False
        for op, ins, out, attrs in self.nodes:
            shape = self.graph.values[out].shape
            rank = len(self.graph.values[ins[0]].shape)
            if not shape or shape[0] != 1 or op in ("gather", "embedding", "where"):
                return False
            for k in _AXIS_ATTRS & set(attrs):
                v = attrs[k]
                if v is None and op in ("sum", "mean", "max"):
                    return False
                vals = v if isinstance(v, (list, tuple)) else [v]
                if op == "transpose":
                    if v is not None and vals[0] != 0:
                        return False
                elif any(isinstance(a, int) and rank and a % rank == 0 for a in vals):
                    return False
            if op == "slice" and attrs.get("index"):
                start, stop, step = attrs["index"][0]
                if start not in (None, 0) or stop is not None or step not in (None, 1):
                    return False  # it cuts axis 0: leave it to per-point runs
        return True

    def _attrs(self, op: str, attrs: dict[str, Any], b: int) -> dict[str, Any]:
        if op in ("reshape", "broadcast_to") and attrs.get("shape") and attrs["shape"][0] == 1:
            return {**attrs, "shape": (b, *tuple(attrs["shape"])[1:])}
        return attrs

    def _run(self, x: np.ndarray, batched: bool) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Outputs (B, n_out) and the environments (one, or one per point) for the backward pass."""
        if not batched:
            outs, envs = [], []
            for p in x:
                y, (env,) = self._run_one(p[None].reshape(self.shape), 1)
                outs.append(y[0])
                envs.append(env)
            return np.array(outs), envs
        y, envs = self._run_one(x.reshape((x.shape[0], *self.shape[1:])), x.shape[0])
        return y, envs

    def _run_one(self, x: np.ndarray, b: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        env = dict(self.consts)
        env[self.inp.name] = x
        with np.errstate(all="ignore"):  # NaN/inf outside a function's domain: never a candidate
            for op, ins, out, attrs in self.nodes:
                env[out] = RULES[op].forward(np, *(env[i] for i in ins), **self._attrs(op, attrs, b))
        outs = [np.asarray(env[o], dtype=np.float64).reshape(b, -1) for o in self.graph.outputs]
        y = np.concatenate(outs, 1)
        return y, [env]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Outputs (B, n_out) of flat input points x (B, n_in), float64."""
        return self._run(np.asarray(x, dtype=np.float64), self.batchable)[0]

    def value_and_grad(self, x: np.ndarray, g_y: Callable[[np.ndarray], np.ndarray]
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Outputs (B, n_out) and the input gradient (B, n_in) of sum_j G[b, j]·y[b, j], where
        G = g_y(y) is chosen from the outputs (e.g. the active atom of a max)."""
        x = np.asarray(x, dtype=np.float64)
        y, envs = self._run(x, self.batchable)
        G = g_y(y)
        if self.batchable:
            return y, self._backward(envs[0], G, x.shape[0]).reshape(x.shape)
        return y, np.stack([self._backward(e, G[i:i + 1], 1).reshape(-1) for i, e in enumerate(envs)])

    def _backward(self, env: dict[str, Any], G: np.ndarray, b: int) -> np.ndarray:
        cot: dict[str, Any] = {}
        off = 0
        for o, s in zip(self.graph.outputs, self.out_shapes):
            k = int(np.prod(s))
            cot[o] = G[:, off:off + k].reshape(np.shape(env[o]))
            off += k
        with np.errstate(all="ignore"):
            for op, ins, out, attrs in reversed(self.nodes):
                g = cot.pop(out, None)
                if g is None:
                    continue
                grads = RULES[op].vjp(np, g, env[out], *(env[i] for i in ins), **self._attrs(op, attrs, b))
                for i, gi in zip(ins, grads):
                    if gi is None or i in self.consts:
                        continue
                    cot[i] = cot[i] + gi if i in cot else gi
        g = cot.get(self.inp.name)
        return np.zeros_like(env[self.inp.name]) if g is None else np.asarray(g)


def _atoms(disj: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    A = np.array([[float(a) for a in t.a] for t in disj], dtype=np.float64)
    b = np.array([float(t.b) for t in disj], dtype=np.float64)
    return A, b


@np.errstate(invalid="ignore", over="ignore")  # outside a row's domain the runtime gives nan: no candidate
def margins(region: Region, y: np.ndarray) -> np.ndarray:
    """(B, J): per point and disjunct, max_k (a_k·y - b_k); <= 0 means unsafe in float."""
    out = np.full((y.shape[0], len(region.disjuncts)), -np.inf)
    for j, disj in enumerate(region.disjuncts):
        if disj:
            A, b = _atoms(disj)
            out[:, j] = (y @ A.T - b).max(1)
    return out


@np.errstate(invalid="ignore", over="ignore")  # outside a row's domain the runtime gives nan: no candidate
def pgd(ex: GraphExec, A: np.ndarray, b: np.ndarray, z: np.ndarray, lo: np.ndarray, hi: np.ndarray,
        steps: int = 40, decay: float = 0.88) -> tuple[np.ndarray, np.ndarray]:
    """Sign-gradient descent of max_k (A_k·y - b_k) from each row of z, projected on [lo, hi]
    (per-point boxes allowed); returns the best point seen per start and its objective."""
    step = (hi - lo) / 4
    best_z, best_v = z.copy(), np.full(z.shape[0], np.inf)

    def active(y: np.ndarray) -> np.ndarray:
        return A[(y @ A.T - b).argmax(1)]

    for _ in range(steps):
        y, g = ex.value_and_grad(z, active)
        v = (y @ A.T - b).max(1)
        better = v < best_v
        best_z[better], best_v[better] = z[better], v[better]
        z = np.clip(z - step * np.sign(g), lo, hi)
        step = step * decay
    v = (ex.forward(z) @ A.T - b).max(1)
    better = v < best_v
    best_z[better], best_v[better] = z[better], v[better]
    return best_z, best_v


@np.errstate(invalid="ignore", over="ignore")  # outside a row's domain the runtime gives nan: no candidate
def search(
    ex: GraphExec,
    spec: Spec,
    confirm: Callable[[list[Fraction]], bool],
    seed: int = 0,
    samples: int = 1000,
    starts: int = 32,
    corners: int = 16,
    steps: int = 40,
    extra_starts: np.ndarray | None = None,
    rounds: int = 2,
    deadline: float | None = None,
) -> list[Fraction] | None:
    """Random sampling, then PGD with restarts per region and disjunct; returns the first candidate
    ``confirm`` accepts (float32 values in the region's box, as exact Fractions), else None."""
    import time

    rng = np.random.default_rng(seed)
    for region in spec.regions:
        lo = np.array([float(v) for v in region.lo])
        hi = np.array([float(v) for v in region.hi])
        x = rng.uniform(lo, hi, (samples, lo.size))
        x = np.concatenate([((lo + hi) / 2)[None], x])
        y = ex.forward(x)
        m = margins(region, y)
        found = try_candidates(region, x, m.min(1), confirm)
        if found is not None:
            return found
        for r in range(rounds):
            for j, disj in enumerate(region.disjuncts):
                if deadline is not None and time.perf_counter() > deadline:
                    return None
                if not disj:
                    return try_candidates(region, x[:1], np.zeros(1), confirm)
                A, b = _atoms(disj)
                picks = [x[np.argsort(m[:, j])[:starts]]]
                signs = rng.integers(0, 2, (corners, lo.size)).astype(bool)
                picks.append(np.where(signs, hi, lo))
                if extra_starts is not None and r == 0:
                    picks.append(np.clip(extra_starts, lo, hi))
                if r > 0:
                    picks = [rng.uniform(lo, hi, (starts + corners, lo.size))]
                z, v = pgd(ex, A, b, np.concatenate(picks), lo, hi, steps=steps)
                found = try_candidates(region, z, v, confirm)
                if found is not None:
                    return found
    return None


def box_point(x: np.ndarray, region: Region) -> list[Fraction]:
    """A point of the region's box near x, as exact rationals: float32 values where the box holds
    one (what an ONNX runtime can be fed), else float64, else the box's own (decimal) end; boxes
    whose sides are a single non-float32 decimal (a fixed input of a VNN-LIB property) need that."""
    q32 = to_float32_in_box(x, region)
    if q32 is not None:
        return q32
    out = []
    for v, lo, hi in zip(x, region.lo, region.hi):
        q = Fraction(float(np.float32(v)))
        if not lo <= q <= hi:
            q = Fraction(float(v))
        if not lo <= q <= hi:
            q = lo if q < lo else hi
        out.append(q)
    return out


def try_candidates(region: Region, z: np.ndarray, v: np.ndarray, confirm: Callable[[list[Fraction]], bool],
                   tries: int = 4, tol: float = 1e-6) -> list[Fraction] | None:
    """Hand the most violating candidates (objective v <= tol, float) to ``confirm``."""
    for i in np.argsort(v)[:tries]:
        if v[i] > tol:
            break
        q = box_point(z[i], region)
        if confirm(q):
            return q
    return None
