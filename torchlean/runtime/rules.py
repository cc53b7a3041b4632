"""The runtime's table of kernels and VJP rules, one row per primitive.

``forward(xp, *inputs, **attrs)`` computes the output; ``vjp(xp, g, out, *inputs, **attrs)``
returns one cotangent per input (``None`` for integer inputs), at the input's own shape. Both are
written against an array namespace ``xp`` (numpy, cupy or the symbolic backend) so the proofs layer
can run them symbolically: proofs talk about this code, not a copy of it.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec.primitives import PRIMITIVES


@dataclass(frozen=True)
class Rule:
    name: str
    forward: Callable[..., Any]
    vjp: Callable[..., tuple[Any, ...]]


RULES: dict[str, Rule] = {}

#: name -> (forward, vjp) of the rules torchlean itself registers, recorded once ``runtime`` has
#: imported its rule modules (before any project module can replace one). The proofs layer proves
#: some claims of these functions in a reduced form it knows their code admits (an entrywise rule
#: at one entry, pooling on one plane, a row-wise rule on one row); a replacement has no such
#: guarantee (audit29: a tanh VJP reading ``(1 - out**2).T`` is right at shape (1,) only).
SHIPPED: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {}


#: name -> what torchlean's own forward and VJP of ``name`` read when they were recorded: (holder,
#: key, object) triples, each read again by ``shipped`` (audit42: a project rebinding a helper such
#: rules call, ``rules_nn._ln_stats = ...``, or a constant, ``rules_elementwise.M_2_SQRTPI = ...``,
#: or a function's ``__code__`` left the function objects, hence ``shipped``, unchanged)
READS: dict[str, tuple[tuple[Any, Any, Any], ...]] = {}
#: the same for torchlean's own forward kernel alone (``shipped_forward``: the bounds and error
#: bounds are about what the kernels compute; a project's VJP, a straight-through estimator, is not)
FORWARD_READS: dict[str, tuple[tuple[Any, Any, Any], ...]] = {}
_MISSING = object()
#: what a rule's globals may hold and still be recorded: values rebinding would change (a global
#: that is None when recorded, a lazily loaded backend, is read where it is used, not recorded)
_RECORDED = (int, float, complex, str, bytes, bool, tuple, frozenset, type, types.FunctionType,
             types.BuiltinFunctionType, types.ModuleType, np.ufunc)


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _codes(c)


def _torchlean_function(v: Any) -> bool:
    return isinstance(v, types.FunctionType) and (
        v.__module__ == "torchlean" or str(v.__module__).startswith("torchlean."))


def reads(*fns: Callable[..., Any], skip: tuple[Any, ...] = ()) -> tuple[tuple[Any, Any, Any], ...]:
    """Every (holder, key, object) that ``fns`` read by name: each function's code, defaults and
    closure cells, the globals their code (nested code too) names, a global module's attributes
    of those names, and the same for every torchlean function reached that way; the objects in
    ``skip`` are neither recorded nor followed."""
    out: list[tuple[Any, Any, Any]] = []
    skipped = {id(v) for v in skip}
    seen: set[int] = set(skipped)
    todo = list(fns)
    while todo:
        f = todo.pop()
        if id(f) in seen or not isinstance(f, types.FunctionType):
            continue
        seen.add(id(f))
        out += [(f, "__code__", f.__code__), (f, "__defaults__", f.__defaults__),
                (f, "__kwdefaults__", f.__kwdefaults__)]
        for cell in f.__closure__ or ():
            try:
                v = cell.cell_contents
            except ValueError:  # (an empty cell)
                continue
            out.append((cell, "cell_contents", v))
            if _torchlean_function(v):
                todo.append(v)
        names = sorted({n for c in _codes(f.__code__) for n in c.co_names})
        glob = f.__globals__
        for n in names:
            v = glob.get(n, _MISSING)
            if v is _MISSING or v is None or not isinstance(v, _RECORDED) or id(v) in skipped:
                continue
            out.append((glob, n, v))
            if _torchlean_function(v):
                todo.append(v)
            elif isinstance(v, types.ModuleType):
                out += [(v, a, getattr(v, a)) for a in names if a in vars(v)]
    return tuple(out)


def record_shipped() -> None:
    """Record the table's rules as torchlean's own (``SHIPPED``) and what they read (``READS``);
    ``runtime`` calls it once its rule modules are loaded, before any project module."""
    SHIPPED.update({n: (r.forward, r.vjp) for n, r in RULES.items()})
    READS.update({n: reads(r.forward, r.vjp) for n, r in RULES.items()})
    FORWARD_READS.update({n: reads(r.forward) for n, r in RULES.items()})


#: (holder, key, object) that the backward engine reads, recorded like ``READS`` (audit42): a
#: composition claim reads ``autograd._propagate``'s cotangents (run on formal VJPs), while a training
#: step's gradients are what ``Tensor.backward`` / ``autograd.backward`` / ``autograd.grad`` write;
#: those are torchlean's reviewed code only as long as nothing they read was rebound
ENGINE: list[tuple[Any, Any, Any]] = []


def record_engine(autograd: Any, tensor: type) -> None:
    """Record the backward engine as torchlean ships it (``runtime`` calls it at import)."""
    fns = (autograd.backward, autograd.grad, tensor.backward)
    # ``_propagate`` (and what only it reads) is left out: the composition trace runs it as it is now
    ENGINE[:] = [(autograd, "backward", fns[0]), (autograd, "grad", fns[1]), (tensor, "backward", fns[2]),
                 *reads(*fns, skip=(autograd._propagate,))]


def engine_shipped() -> bool:
    """Whether the backward engine and everything it reads by name are the objects recorded."""
    return bool(ENGINE) and _unchanged(tuple(ENGINE))


def _unchanged(triples: tuple[tuple[Any, Any, Any], ...]) -> bool:
    for holder, key, obj in triples:
        now = holder.get(key, _MISSING) if isinstance(holder, dict) else getattr(holder, key, _MISSING)
        if now is not obj:
            return False
    return True


def shipped(name: str, rule: Rule | None = None) -> bool:
    """Whether ``rule`` (default: the table's rule for ``name``) is torchlean's own for ``name``:
    the very forward and VJP functions its rule modules registered, not a replacement, and every
    code object, default, helper, constant and module attribute they read by name still the one
    they read when recorded (``READS``)."""
    r = RULES.get(name) if rule is None else rule
    own = SHIPPED.get(name)
    return r is not None and own is not None and r.forward is own[0] and r.vjp is own[1] \
        and _unchanged(READS.get(name, ()))


def shipped_forward(name: str) -> bool:
    """Whether the table's forward kernel of ``name`` is torchlean's own (``shipped`` for the
    kernel alone: the VJP may be the project's)."""
    r = RULES.get(name)
    own = SHIPPED.get(name)
    return r is not None and own is not None and r.forward is own[0] \
        and _unchanged(FORWARD_READS.get(name, ()))


def foreign(ops: Any, kernels: bool = True) -> list[str]:
    """The names among ``ops`` that are not torchlean's own primitives (a project's ``primitive``:
    the trusted checker has no row of its own for it, audit55), or, with ``kernels``, whose runtime
    kernel is not torchlean's own (``shipped_forward``: a replaced kernel need not compute the
    spec meaning the checker's rows bound, audit55)."""
    return sorted({op for op in ops if op not in SHIPPED or (kernels and not shipped_forward(op))})


#: rules whose VJP also takes ``want`` (one bool per input; default all True) and returns None for
#: the inputs not wanted without computing them: a caller that differentiates with respect to the
#: data only (the counterexample search's ``verify.executor``: constant weights) skips the weight
#: gradient, about half of a matmul's or conv2d's backward. The default is the proved code path.
WANTS_VJP = frozenset({"matmul", "conv2d"})


def rule(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the forward kernel of ``name``; its VJP via ``.vjp``."""
    if name not in PRIMITIVES:
        raise ValueError(f"rule for unknown primitive {name!r}")

    def deco(forward: Callable[..., Any]) -> Any:
        class _Pending:
            def vjp(self, fn: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
                if name in RULES:
                    raise ValueError(f"rule {name!r} registered twice")
                RULES[name] = Rule(name, forward, fn)
                return fn

        return _Pending()

    return deco


def sum_to(xp: Any, g: Any, shape: tuple[int, ...]) -> Any:
    """Sum a broadcast cotangent back to ``shape`` (the VJP of numpy broadcasting)."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1
    )
    g = xp.sum(g, axis=axes, keepdims=True) if axes else g
    return g.reshape(shape)


def scatter(xp: Any, base: Any, parts: list[tuple[Any, Any]], add: bool = True) -> Any:
    """``base`` (a fresh buffer: zeros, or a constant fill) with each ``(index, value)`` of
    ``parts`` written in order: ``base[index] += value``, or ``base[index] = value`` with
    ``add=False`` (basic indices: tuples of slices).

    The VJPs of slicing, convolution and pooling scatter their cotangent back through this one
    function. On numpy, cupy and the symbolic backend it is exactly that item assignment (the
    numbers and the proved formulas are the assignments'); a namespace that records operations
    (``tape_ns``, for ``create_graph=True``) supplies ``recorded_scatter`` instead, which writes
    the same sums as differentiable primitives."""
    recorded = getattr(xp, "recorded_scatter", None)
    if recorded is not None:
        return recorded(base, parts, add)
    for index, v in parts:
        if add:
            base[index] += v
        else:
            base[index] = v
    return base


def open_grid(xp: Any, shape: tuple[int, ...]) -> list[Any]:
    """``xp.indices(shape, sparse=True)``: one index array per axis, broadcastable together. cupy's
    ``indices`` takes no ``sparse`` keyword (found on a real GPU), so there the grid is built from
    ``arange``; every other namespace (numpy, symbolic, tape, the proofs' index backend, whose
    ``indices`` returns symbolic grids) keeps its own ``indices``."""
    if getattr(xp, "__name__", None) == "cupy":
        return [xp.arange(n).reshape([n if i == k else 1 for i in range(len(shape))])
                for k, n in enumerate(shape)]
    return list(xp.indices(shape, sparse=True))


def index_add(xp: Any, base: Any, index: Any, v: Any) -> Any:
    """``base`` with ``v`` added at the integer ``index`` (``xp.add.at``: a position hit twice
    collects both), the scatter-add of the gather and embedding VJPs; recorded namespaces supply
    ``recorded_index_add`` (see ``scatter``)."""
    recorded = getattr(xp, "recorded_index_add", None)
    if recorded is not None:
        return recorded(base, index, v)
    xp.add.at(base, index, v)
    return base
