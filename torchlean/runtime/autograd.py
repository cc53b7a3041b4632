"""Reverse-mode differentiation over the tape that ``tensor.apply`` records.

``tape_order`` fixes the one order in which VJPs run and cotangents are summed; the compiled
executor replays the same order, which is what makes eager and compiled bit-identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .backends import namespace_of
from .tensor import Tensor, enable_grad, is_grad_enabled, no_grad

__all__ = ["backward", "enable_grad", "grad", "is_grad_enabled", "no_grad", "tape_order", "vjp"]


def tape_order(roots: Sequence[Tensor]) -> list[Tensor]:
    """Tensors reachable from ``roots`` through gradient-carrying edges, outputs first."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        if t._node is not None:
            for inp in reversed(t._node.inputs):
                if inp.requires_grad and id(inp) not in seen:
                    stack.append((inp, False))
    order.reverse()
    return order


def _accumulate(table: dict[int, Any], key: int, g: Any) -> None:
    prev = table.get(key)
    table[key] = g if prev is None else prev + g


def _propagate(roots: Sequence[Tensor], seeds: Sequence[Any], create_graph: bool = False) -> dict[int, Any]:
    """Cotangents of every tensor on the tape, keyed by id, from seeds at ``roots``: arrays, or,
    with ``create_graph``, Tensors whose own tape records how they were computed (the same rules
    run on ``tape_ns.TAPE``, so they can be differentiated again)."""
    cot: dict[int, Any] = {}
    for r, s in zip(roots, seeds, strict=True):
        _accumulate(cot, id(r), (s if isinstance(s, Tensor) else Tensor(s)) if create_graph else s)
    if create_graph:
        from .tape_ns import TAPE, note_recorded
        from .tensor import STATE

        order = tape_order(roots)
        # under a trace (a gradient claim's), the integer inputs of the nodes each VJP records are
        # marked as the point's: a claim must cover every value there (audit44)
        seen = {id(t) for t in order} if STATE.tracer is not None else None
        with enable_grad():
            for t in order:
                node = t._node
                g = cot.get(id(t))
                if node is None or g is None:
                    continue
                grads = node.rule.vjp(TAPE, g, t, *node.inputs, **node.attrs)
                if seen is not None:
                    note_recorded(grads, seen)
                for inp, gi in zip(node.inputs, grads, strict=True):
                    if gi is not None and inp.requires_grad:
                        _accumulate(cot, id(inp), gi if isinstance(gi, Tensor) else Tensor(np.asarray(gi)))
        return cot
    for t in tape_order(roots):
        node = t._node
        g = cot.get(id(t))
        if node is None or g is None:
            continue
        xp = namespace_of(t.data)
        grads = node.rule.vjp(xp, g, t.data, *(i.data for i in node.inputs), **node.attrs)
        for inp, gi in zip(node.inputs, grads, strict=True):
            if gi is not None and inp.requires_grad:
                if type(gi) is not np.ndarray and xp is np:
                    gi = np.asarray(gi)
                _accumulate(cot, id(inp), gi)
    return cot


def _seed(t: Tensor, g: Any) -> Any:
    xp = namespace_of(t.data)
    if g is None:
        if t.numel() != 1:
            raise RuntimeError(
                f"backward: grad can be implicitly created only for a single-element tensor, "
                f"got shape {t.shape}"
            )
        return xp.ones_like(t.data)
    g = g.data if isinstance(g, Tensor) else xp.asarray(g, dtype=t.data.dtype)
    if tuple(g.shape) != t.shape:
        raise RuntimeError(f"backward: gradient shape {tuple(g.shape)} differs from output {t.shape}")
    return g


def _owner(a: Any) -> Any:
    """The array that owns ``a``'s memory (numpy and cupy point a view's ``base`` at it)."""
    base = getattr(a, "base", None)
    return a if base is None else base


def own_grad(g: Any, dtype: Any, taken: set[int]) -> Any:
    """``g`` as an array a leaf may keep as its ``.grad``: of the leaf's ``dtype`` (torch casts a
    gradient to its tensor's dtype), and sharing memory with nothing else, so an in-place edit of
    one ``.grad`` changes no other (audit47: add's VJP passes its cotangent through to both inputs,
    reshape/transpose VJPs return views of it, and a ``backward(gradient)`` seed is the caller's
    array). ``taken`` holds the ids of the arrays that own memory someone else may hold (the seeds,
    the tensors on the tape, the grads already handed out); ``g`` is kept, view or not, when the
    array owning its memory is a writable array not in ``taken`` (it came out of a VJP and nothing
    else reaches it once the cotangent table is dropped), and copied otherwise; ``taken`` then
    records its owner, so a second view of the same cotangent is copied. Arrays of other backends
    (the symbolic one) are kept as they are."""
    flags = getattr(g, "flags", None)
    if flags is None:
        return g
    if dtype.kind not in "fc":  # an integer leaf (which torch refuses to differentiate): as it is
        dtype = g.dtype
    owner = _owner(g)
    keep = (g.dtype == dtype and getattr(flags, "writeable", True) and type(owner) is type(g)
            and owner.base is None and owner.flags.owndata and id(owner) not in taken)
    if not keep:
        g = owner = g.astype(dtype, copy=True)
    taken.add(id(owner))
    return g


def backward(t: Tensor, grad: Any = None) -> None:
    """Accumulate d(t)/d(leaf) (times ``grad``) into ``leaf.grad`` for every leaf."""
    if not t.requires_grad:
        raise RuntimeError("backward: tensor does not require grad and has no tape")
    seed = _seed(t, grad)
    cot = _propagate([t], [seed])
    order = tape_order([t])
    datas = [s.data for s in order] + [i.data for s in order if s._node is not None for i in s._node.inputs]
    taken = {id(_owner(seed))} | {id(_owner(d)) for d in datas}
    with no_grad():
        for s in order:
            if s._node is None and id(s) in cot:
                g = own_grad(cot[id(s)], s.data.dtype, taken)
                s.grad = Tensor(g) if s.grad is None else Tensor(s.grad.data + g)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    allow_unused: bool = False,
    create_graph: bool = False,
) -> tuple[Tensor | None, ...]:
    """Gradients of ``outputs`` with respect to ``inputs``, returned (not accumulated).

    ``create_graph=True`` (torch's flag) records the backward pass itself, so the gradients can be
    differentiated again (second derivatives, Hessian-vector products, physics-informed losses);
    see ``runtime/tape_ns.py``."""
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        gos = [None] * len(outs)
    elif isinstance(grad_outputs, Tensor):
        gos = [grad_outputs]
    else:
        gos = list(grad_outputs)
    for o in outs:
        if not o.requires_grad:
            raise RuntimeError("grad: an output does not require grad")
    seeds = [_seed(o, g) for o, g in zip(outs, gos, strict=True)]
    if create_graph:  # the recorded backward starts from the caller's own Tensor (so a trace sees
        # where it came from), or from ones that depend on the output's shape only
        from .trace import constant

        seeds = [g if isinstance(g, Tensor) else constant(Tensor(s)) if g is None else s
                 for g, s in zip(gos, seeds, strict=True)]
    cot = _propagate(outs, seeds, create_graph)
    result: list[Tensor | None] = []
    for i in ins:
        if id(i) in cot:
            g = cot[id(i)]
            if not create_graph and getattr(g, "dtype", None) != i.data.dtype and i.dtype.kind in "fc":
                g = g.astype(i.data.dtype)  # of the input's dtype, as torch's (audit47)
            result.append(g if create_graph else Tensor(g))
        elif allow_unused:
            result.append(None)
        else:
            raise RuntimeError("grad: an input was not used to compute the outputs (allow_unused=True)")
    return tuple(result)


def vjp(fn: Any, *primals: Tensor, v: Any = None) -> tuple[Any, tuple[Tensor | None, ...]]:
    """``(fn(*primals), vᵀ·J)``: run ``fn`` and pull ``v`` back to the primals."""
    ins = [Tensor(p.data, requires_grad=True) for p in primals]
    with enable_grad():
        out = fn(*ins)
    return out, grad(out, ins, grad_outputs=v, allow_unused=True)
