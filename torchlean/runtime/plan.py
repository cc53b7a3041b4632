"""Forward and backward schedules of a traced graph, emitted as a ``codegen.Program``.

Bit-identity with eager execution rests on three rules, each kept here:

1. Every kernel is the runtime's own (``rules.RULES``), called with the attributes ``apply`` saw; a
   few trivial ones are written inline with the *same expression* as their rule (``a + b``,
   ``xp.matmul(a, b)``, ...), which saves a Python call per node.
2. The backward schedule is ``autograd._propagate`` unrolled: the VJPs run in ``tape_order`` and
   cotangents are summed in the same order with the same ``prev + g``.
3. Rewrites are allowed only when they are exact: skipping a cotangent nobody needs (matmul's
   gradient for the data input), ``g * (out > 0)`` for relu's ``where(x > 0, g, 0 * g)`` (an IEEE
   product by 1 or 0 is exact, signs included), and in-place forms of + - * / max (correctly
   rounded operations give the same bits whatever buffer they write to).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec.graph import Graph, Node
from ..spec.shapes import norm_axes
from .codegen import Program
from .rules import RULES

# op -> (expression, ufunc for the in-place form or None); operands are {0}, {1}
_INLINE_FORWARD: dict[str, tuple[str, str | None]] = {
    "add": ("{0} + {1}", "add"),
    "sub": ("{0} - {1}", "subtract"),
    "mul": ("{0} * {1}", "multiply"),
    "div": ("{0} / {1}", "divide"),
    "neg": ("-{0}", "negative"),
    "relu": ("xp.maximum({0}, 0)", "maximum"),
    "matmul": ("xp.matmul({0}, {1})", None),
    "tanh": ("xp.tanh({0})", None),
    "exp": ("xp.exp({0})", None),
}


@dataclass
class Emitter:
    """Emits one graph's schedules into ``prog``; ``var`` maps IR value names to variables."""

    prog: Program
    graph: Graph
    var: dict[str, str]
    numpy: bool  # apply() turns numpy scalars into 0-d arrays on numpy only; so do we
    #: value name -> (shape, dtype) the traced run actually produced; overrides the inferred types
    observed: dict[str, tuple[tuple[int, ...], str]] | None = None
    #: in-place forms in the backward pass; the caller turns them off unless every cotangent was
    #: seen to have its value's shape and dtype (else ``out=`` could cast where eager promotes)
    inplace_backward: bool = True

    def __post_init__(self) -> None:
        self._tmp = 0
        self.producer: dict[str, Node] = {n.output: n for n in self.graph.nodes}
        if self.numpy:
            self.prog.env["_asarray"] = np.asarray

    def tmp(self, prefix: str = "t") -> str:
        self._tmp += 1
        return f"{prefix}{self._tmp}"

    def _meta(self, name: str) -> tuple[tuple[int, ...], str]:
        if self.observed is not None and name in self.observed:
            return self.observed[name]
        v = self.graph.values[name]
        return tuple(v.shape), v.dtype

    def _scalar_fix(self, var: str, shape: tuple[int, ...]) -> None:
        if self.numpy and shape == ():
            self.prog.emit(f"{var} = _asarray({var})", (var,), (var,))

    # -- forward ---------------------------------------------------------------------------
    def forward(self) -> None:
        for i, node in enumerate(self.graph.nodes):
            ins = [self.var[n] for n in node.inputs]
            out = f"a{i}"
            self.var[node.output] = out
            shape, dtype = self._meta(node.output)
            inline = _INLINE_FORWARD.get(node.op)
            if inline is not None and not node.attrs:
                expr, ufunc = inline
                alts: list[tuple[str, str]] = []
                if ufunc is not None and shape != ():
                    extra = ", 0" if node.op == "relu" else ""
                    for name, v in zip(node.inputs, ins, strict=True):
                        if self._meta(name) == (shape, dtype):
                            alts.append((v, f"{out} = xp.{ufunc}({', '.join(ins)}{extra}, out={v})"))
                self.prog.emit(f"{out} = {expr.format(*ins)}", tuple(ins), (out,), fresh=True,
                               inplace=tuple(alts))
            elif not self._forward_special(node, ins, out):
                k = self.prog.const(RULES[node.op].forward, "F")
                call = f"{k}(xp, {', '.join(ins)}"
                if node.attrs:
                    call += f", **{self.prog.const(dict(node.attrs), 'A')}"
                self.prog.emit(f"{out} = {call})", tuple(ins), (out,))
            self._scalar_fix(out, shape)

    def _reduction(self, node: Node) -> tuple[tuple[int, ...], bool, int]:
        """The rule's own normalised axes, keepdims and element count (``rules_tensor``)."""
        shape = self._meta(node.inputs[0])[0]
        axes = norm_axes(node.attrs.get("axes"), len(shape), "reduce")
        n = 1
        for a in axes:
            n *= shape[a]
        return axes, bool(node.attrs.get("keepdims", False)), n

    def _forward_special(self, node: Node, ins: list[str], out: str) -> bool:
        """Kernels with attributes, written inline with the rule's expression and the
        attribute processing done once here."""
        c = self.prog.const
        if node.op == "transpose":
            self.prog.emit(f"{out} = xp.transpose({ins[0]}, {c(node.attrs.get('axes'), 'S')})",
                           (ins[0],), (out,))
            return True
        if node.op in ("sum", "mean"):
            axes, keep, n = self._reduction(node)
            expr = f"xp.sum({ins[0]}, axis={c(axes, 'S')}, keepdims={c(keep, 'B')})"
            if node.op == "mean":
                expr += f" / {c(n, 'N')}"
            self.prog.emit(f"{out} = {expr}", (ins[0],), (out,), fresh=True)
            return True
        return False

    # -- backward --------------------------------------------------------------------------
    def backward(self, loss: str, tape: Sequence[str], requires_grad: set[str]) -> dict[str, str]:
        """Emit ``_propagate`` unrolled; return value name -> cotangent variable."""
        seed = self.tmp("g")
        self.prog.emit(f"{seed} = xp.ones_like({self.var[loss]})", (self.var[loss],), (seed,),
                       fresh=True)
        cot: dict[str, str] = {loss: seed}
        for name in tape:
            node = self.producer.get(name)
            if node is None or name not in cot:
                continue
            needs = [n in requires_grad for n in node.inputs]
            grads = self._vjp(node, cot[name], needs)
            for inp, need, gi in zip(node.inputs, needs, grads, strict=True):
                if not need:
                    continue
                self._scalar_fix(gi, self._meta(inp)[0])
                prev = cot.get(inp)
                if prev is None:
                    cot[inp] = gi
                    continue
                acc = self.tmp("g")
                shape, _ = self._meta(inp)
                alts = () if shape == () or not self.inplace_backward else tuple(
                    (v, f"{acc} = xp.add({prev}, {gi}, out={v})") for v in (prev, gi))
                self.prog.emit(f"{acc} = {prev} + {gi}", (prev, gi), (acc,), fresh=True, inplace=alts)
                cot[inp] = acc
        return cot

    def _sum_to(self, g: str, from_shape: tuple[int, ...], to_shape: tuple[int, ...]) -> str:
        """``sum_to(xp, g, shape)``: the identity when the shapes agree (as in the rule)."""
        if from_shape == to_shape:
            return g
        lead = len(from_shape) - len(to_shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, d in enumerate(to_shape) if d == 1 and from_shape[lead + i] != 1)
        out, c = self.tmp(), self.prog.const
        if axes:
            self.prog.emit(f"{out} = xp.sum({g}, axis={c(axes, 'S')}, keepdims=True).reshape("
                           f"{c(to_shape, 'S')})", (g,), (out,), fresh=True)
        else:
            self.prog.emit(f"{out} = {g}.reshape({c(to_shape, 'S')})", (g,), (out,))
        return out

    def _emit_fresh(self, expr: str, reads: tuple[str, ...], inplace_on: str | None = None,
                    ufunc_form: str = "") -> str:
        out = self.tmp()
        alts = ((inplace_on, f"{out} = {ufunc_form}"),) if inplace_on else ()
        self.prog.emit(f"{out} = {expr}", reads, (out,), fresh=True, inplace=alts)
        return out

    def _vjp(self, node: Node, g: str, needs: list[bool]) -> list[str]:
        op, attrs = node.op, node.attrs
        ins = [self.var[n] for n in node.inputs]
        shapes = [self._meta(n)[0] for n in node.inputs]
        oshape, odtype = self._meta(node.output)
        out = self.var[node.output]
        same = [self._meta(n) == (oshape, odtype) for n in node.inputs]
        # the cotangent's buffer may be reused only for a real array (a 0-d result can be a numpy
        # scalar) and when cotangent types are known to match their values
        ip = g if oshape != () and self.inplace_backward else None
        res: list[str] = [""] * len(ins)
        if op in ("add", "sub") and not attrs:
            if needs[0]:
                res[0] = self._sum_to(g, oshape, shapes[0])
            if needs[1]:
                gb = g
                if op == "sub":
                    gb = self._emit_fresh(f"-{g}", (g,), ip, f"xp.negative({g}, out={g})")
                res[1] = self._sum_to(gb, oshape, shapes[1])
            return res
        if op == "mul" and not attrs:
            for j, other in ((0, ins[1]), (1, ins[0])):
                if needs[j]:
                    t = self._emit_fresh(f"{g} * {other}", (g, other), ip,
                                         f"xp.multiply({g}, {other}, out={g})")
                    res[j] = self._sum_to(t, oshape, shapes[j])
            return res
        if op == "matmul" and not attrs and len(shapes[0]) == 2 and len(shapes[1]) == 2:
            if needs[0]:
                res[0] = self._emit_fresh(f"xp.matmul({g}, xp.swapaxes({ins[1]}, -1, -2))", (g, ins[1]))
            if needs[1]:  # the rule's layout choice (rules_tensor.column_major), made per step
                a_, b_ = ins[0], ins[1]
                res[1] = self._emit_fresh(
                    f"(xp.swapaxes(xp.matmul(xp.swapaxes({g}, -1, -2), {a_}), -1, -2) "
                    f"if {b_}.flags.f_contiguous and not {b_}.flags.c_contiguous "
                    f"else xp.matmul(xp.swapaxes({a_}, -1, -2), {g}))", (g, a_, b_))
            return res
        if op == "neg" and not attrs:
            return [self._emit_fresh(f"-{g}", (g,), ip, f"xp.negative({g}, out={g})")]
        if op == "relu" and not attrs:
            # where(x > 0, g, 0 * g) == g * (out > 0) bit for bit: out > 0 exactly when x > 0
            # (NaN included), and g * 1 = g, g * 0 = 0 * g with the same sign
            inplace = ip if same[0] else None
            return [self._emit_fresh(f"{g} * xp.greater({out}, 0)", (g, out), inplace,
                                     f"xp.multiply({g}, xp.greater({out}, 0), out={g})")]
        if op == "tanh" and not attrs:
            inplace = ip if same[0] else None
            return [self._emit_fresh(f"{g} * (1 - {out} * {out})", (g, out), inplace,
                                     f"xp.multiply({g}, 1 - {out} * {out}, out={g})")]
        if op in ("sum", "mean"):
            # rules_tensor: broadcast_to(_expand(g) [/ n], x.shape) + zeros_like(x); _expand's
            # reshape and the axes are resolved here, once
            axes, keep, n = self._reduction(node)
            c = self.prog.const
            kept = tuple(1 if i in axes else d for i, d in enumerate(shapes[0]))
            ge = g if keep else f"{g}.reshape({c(kept, 'S')})"
            if op == "mean":
                ge = f"{ge} / {c(n, 'N')}"
            # the addition broadcasts ``ge`` itself: each element is still ge + 0, computed once
            return [self._emit_fresh(f"{ge} + xp.zeros_like({ins[0]})", (g, ins[0]))]
        if op in ("reshape", "flatten"):
            t = self.tmp()
            self.prog.emit(f"{t} = {g}.reshape({self.prog.const(shapes[0], 'S')})", (g,), (t,))
            return [t]
        if op == "transpose":
            axes = attrs.get("axes")
            t = self.tmp()
            if axes is None:
                self.prog.emit(f"{t} = xp.transpose({g})", (g,), (t,))
            else:
                inverse = [0] * len(axes)
                for i, a in enumerate(axes):
                    inverse[a % len(shapes[0])] = i
                self.prog.emit(f"{t} = xp.transpose({g}, {self.prog.const(inverse, 'S')})", (g,), (t,))
            return [t]
        return self._generic_vjp(node, g, ins, out)

    def _generic_vjp(self, node: Node, g: str, ins: list[str], out: str) -> list[str]:
        k = self.prog.const(RULES[node.op].vjp, "V")
        targets = [self.tmp() for _ in ins]
        call = f"{k}(xp, {g}, {out}, {', '.join(ins)}"
        if node.attrs:
            call += f", **{self.prog.const(dict(node.attrs), 'A')}"
        lhs = ", ".join(targets) + ("," if len(targets) == 1 else "")
        self.prog.emit(f"{lhs} = {call})", (g, out, *ins), tuple(targets))
        return targets


def emit_inputs(prog: Program, graph: Graph, var: dict[str, str], args: dict[str, str],
                constants: dict[str, Any]) -> None:
    """Bind graph inputs to function arguments and constants to globals."""
    for v in graph.inputs:
        var[v.name] = args[v.name]
    for name, arr in constants.items():
        var[name] = prog.const(arr, "C")
