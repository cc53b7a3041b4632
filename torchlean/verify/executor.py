"""Batched float64 execution of any graph the runtime executes, with input gradients: the executor
the counterexample search (``attack``) runs on for graphs (``network.FloatNet`` is the chain's).

``GraphExec`` runs a graph IR on a batch of flat input points with the runtime's own kernels and
VJP rules (``runtime.rules.RULES``: the code ``tl.Tensor`` and ``run_graph`` execute), in float64,
and returns the input gradient of a per-point scalar objective. Batching substitutes the batch size
for the leading dimension 1 every VNN-COMP and ``tl.trace`` graph has; when a graph touches that
axis (a reduction over it, a concat along it, ...) or the batched run disagrees with per-point runs,
it falls back to one point at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import runtime  # noqa: F401  (registers the kernels and VJP rules)
from ..runtime.rules import RULES, WANTS_VJP
from ..spec.graph import Graph
from ..spec.primitives import PRIMITIVES

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

    def value_and_grad(self, x: np.ndarray, g_y: Callable[[np.ndarray], np.ndarray], leak: float = 0.0
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Outputs (B, n_out) and the input gradient (B, n_in) of sum_j G[b, j]·y[b, j], where
        G = g_y(y) is chosen from the outputs (e.g. the active atom of a max). ``leak`` > 0: relu
        nodes pass that share of their cotangent where their argument is <= 0 (``attack.leaky``)."""
        x = np.asarray(x, dtype=np.float64)
        y, envs = self._run(x, self.batchable)
        G = g_y(y)
        if self.batchable:
            return y, self._backward(envs[0], G, x.shape[0], leak).reshape(x.shape)
        return y, np.stack([self._backward(e, G[i:i + 1], 1, leak).reshape(-1) for i, e in enumerate(envs)])

    def _backward(self, env: dict[str, Any], G: np.ndarray, b: int, leak: float = 0.0) -> np.ndarray:
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
                at = self._attrs(op, attrs, b)
                if op in WANTS_VJP:  # (constant weights: their cotangents are never read)
                    at = {**at, "want": tuple(i not in self.consts for i in ins)}
                if leak and op == "relu":
                    grads = (g * np.where(env[ins[0]] > 0, 1.0, leak),)
                else:
                    grads = RULES[op].vjp(np, g, env[out], *(env[i] for i in ins), **at)
                for i, gi in zip(ins, grads):
                    if gi is None or i in self.consts:
                        continue
                    cot[i] = cot[i] + gi if i in cot else gi
        g = cot.get(self.inp.name)
        return np.zeros_like(env[self.inp.name]) if g is None else np.asarray(g)
