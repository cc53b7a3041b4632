"""``@verified``: register obligations for a model or a user-defined primitive.

- On a *primitive* (a kernel ``kernel(xp, *inputs, **attrs)`` and its VJP
  ``vjp(xp, g, out, *inputs, **attrs)``, both written against the array namespace like runtime
  rules): ``@verified(meaning=..., vjp=..., shapes=[...])`` adds its forward and autograd
  obligations, exactly as for the built-in primitives (``proofs.autograd``). ``meaning`` takes
  numpy object arrays of sympy expressions.
- On a *model* (an ``nn.Module`` instance, or a zero-argument factory returning one):
  ``@verified(input_shape=(1, 2))`` adds ``model.<name>``: the tape composes the nodes' VJPs by
  the chain rule (checked structurally), resting on one forward and one autograd obligation per
  distinct node case (``proofs.compose``). With ``proof="monolithic"``: the whole backward pass,
  traced through the tape on the symbolic backend at the real shapes with symbolic weights,
  equals the derivative of the model's forward formula (the spec meanings of the same graph).

Obligations are registered as a source when the defining module is imported; name such modules
with ``--module`` or in ``[tool.torchlean] modules``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from .obligation import Obligation, source

if TYPE_CHECKING:  # (sympy and the autograd obligations are imported where used: ``import
    # torchlean`` and the verifier do not need them, and sympy's import is ~0.15 s)
    from .autograd import Case


#: source name -> what was decorated under it (defining module, qualified name, input shape,
#: proof; a module instance's repr): a second, different decoration under the same name replaced
#: the first's source, so one claim silently went unchecked (audit29)
_DECORATED: dict[str, tuple[Any, ...]] = {}


class NameClash(ValueError):
    """Two different ``@verified`` decorations under one name (``proofs`` reports it as a usage error)."""


def _claim(key: str, target: Any, *what: Any) -> None:
    """Record ``target`` as the decoration behind source ``key``; a ValueError when another target
    (or the same one at another input shape) holds the name. The same decoration again (a module
    imported twice, ``importlib.reload``) replaces its own entry."""
    kind = target if callable(target) and hasattr(target, "__qualname__") else type(target)
    ident = (getattr(kind, "__module__", None), getattr(kind, "__qualname__", None),
             None if kind is target else repr(target), *map(repr, what))
    from .obligation import SOURCES

    old = _DECORATED.get(key) if key in SOURCES else None  # (a registry reset forgets the name)
    if old is not None and old != ident:
        def describe(d: tuple[Any, ...]) -> str:
            at = f" at {', '.join(d[3:])}" if d[3:] else ""
            return f"{d[0]}.{d[1]}" + (f" {d[2]}" if d[2] else "") + at

        raise NameClash(f"@verified: two claims named {key.split('.', 2)[2]!r} ({describe(old)}; "
                         f"{describe(ident)}): the second would replace the first, which would go "
                         "unchecked; give each its own name=...")
    _DECORATED[key] = ident


#: primitive name -> its ``@verified`` kernel: a runtime rule of that name is the project's own,
#: proved by this source (``autograd.primitives`` requires the kernel to be the rule's forward)
VERIFIED_PRIMITIVES: dict[str, Any] = {}


def _primitive(fn: Any, name: str, meaning: Callable[..., Any], cases: list[Case],
               vjp: Callable[..., Any] | None) -> None:
    _claim(f"verified.primitive.{name}", fn)
    VERIFIED_PRIMITIVES[name] = fn

    @source(f"verified.primitive.{name}")
    def _obs() -> Iterator[Obligation]:
        from .autograd import rule_obligations

        rule = vjp or getattr(fn, "vjp_rule", None) or getattr(fn, "vjp", None)
        if not callable(rule):
            raise TypeError(f"@verified primitive {name!r}: pass vjp=... (vjp(xp, g, out, *inputs))")
        spec = _registered(name, fn, rule)
        for n, case in enumerate(cases):
            claimed = meaning
            if spec is not None:  # the claim is about the spec the runtime and the verifier use
                claimed = spec.sympy
                _same_meaning(name, meaning, spec, case)
            yield from rule_obligations(name, fn, rule, claimed, case,
                                        subject=f"primitive:{name}", tag="" if len(cases) == 1 else f".{n}")


def _registered(name: str, fn: Any, vjp: Any) -> Any:
    """The registered spec of primitive ``name`` (None if there is none), once its runtime rule, if
    registered, is checked to be the decorated kernel and the VJP given (audit42: a rule registered
    with another VJP, ``rule(name)(kernel).vjp(other)``, ran while the claim was about ``vjp=``)."""
    from ..runtime.rules import RULES
    from ..spec.primitives import PRIMITIVES
    from .obligation import NoProofCase

    r = RULES.get(name)
    if r is not None and (r.forward is not fn or r.vjp is not vjp):
        which = "kernel" if r.forward is not fn else "VJP"
        raise NoProofCase(f"custom primitive {name!r}: the runtime rule's {which} is not the one given to "
                          f"@tl.verified (the claim would be about another function than the one that runs); "
                          f"register rule({name!r})(kernel).vjp(vjp) with the functions @verified names")
    return PRIMITIVES.get(name)


def _same_meaning(name: str, meaning: Callable[..., Any], spec: Any, case: Case) -> None:
    """``meaning`` (given to @verified) and the registered spec equal at the case's inputs (sympy
    expands their difference to 0, or simplifies it to 0); a NoProofCase otherwise (audit42: the
    claim was about ``meaning`` while the verifier and every model used the registered spec)."""
    import sympy

    from .autograd import _inputs, exact_floats
    from .obligation import NoProofCase

    with exact_floats():
        xs = _inputs(case)
        a = np.asarray(meaning(*xs, **case.attrs), dtype=object)
        b = np.asarray(spec.sympy(*xs, **case.attrs), dtype=object)
        same = a.shape == b.shape and all(
            sympy.expand(u - v) == 0 or sympy.simplify(u - v) == 0 for u, v in zip(a.flat, b.flat))
    if not same:
        raise NoProofCase(f"custom primitive {name!r}: the meaning given to @tl.verified differs from its "
                          f"registered spec (spec.primitives.primitive({name!r}, ...)) at shapes "
                          f"{list(case.shapes)}: make them the same function")


def _model_obligations(name: str, build: Callable[[], Any],
                       input_shape: tuple[int, ...]) -> Iterator[Obligation]:
    import sympy

    from ..runtime.symbolic import symbols
    from ..runtime.tensor import Tensor
    from . import smt
    from .autograd import exact_floats

    with exact_floats():
        model = build()
        params = list(model.parameters()) if hasattr(model, "parameters") else []
        weights = []
        for k, p in enumerate(params):  # symbolic weights, shapes from the real model
            w = symbols(f"w{k}", tuple(p.shape))
            p.data, p.requires_grad, p.grad = w, True, None  # no gradient left over from training
            weights.append(w)
        x = Tensor(symbols("x", input_shape), requires_grad=True)
        # the runtime's forward (records the tape) and the spec's forward (same primitives, meanings)
        # pairs: each (a, b) the claim states equal: the kernels' entries against the spec's first
        pairs: list[tuple[Any, Any]] = []
        with spec_rules(pairs):
            out = model(x)
        g = symbols("g", tuple(out.shape))
        out.backward(Tensor(g))
        loss = sum((g[i] * out.data[i] for i in np.ndindex(out.shape)), sympy.Integer(0))
        leaves = [x] + params
        for t in leaves:
            grad = np.asarray(t.grad.data, dtype=object)
            for idx in np.ndindex(tuple(t.shape)):
                pairs.append((grad[idx], sympy.diff(loss, t.data[idx])))
    exprs = [e for p in pairs for e in p]
    claim = smt.conj([f"(= {smt.smt(a)} {smt.smt(b)})" for a, b in pairs])
    names = sorted({s.name for e in exprs for s in sympy.sympify(e).free_symbols})
    text = smt.script(names, claim, axioms=smt.axiom_instances(exprs),
                      comment=f"model.{name}: backward pass equals the derivative of the forward")
    yield Obligation("autograd", f"model:{name}", f"model.{name}", text,
                     f"the tape's backward pass of {name} at input {input_shape} equals the derivative "
                     "of its spec forward (symbolic weights)", {"input_shape": list(input_shape)})


@contextmanager
def spec_rules(pairs: list[tuple[Any, Any]]) -> Iterator[None]:
    """Inside the block every runtime rule's forward computes its spec meaning (so a model's output
    formula is the spec's) and also runs the rule's own kernel on the symbolic backend at the same
    inputs, appending to ``pairs`` each (kernel entry, spec entry) that is not the same expression,
    for the monolithic claim to state equal: the tape's VJPs read the forward's values, and the
    runtime computes them with its kernels (audit53: a kernel right at its @verified shapes, wrong
    at the model's, was proved consistent). A NoProofCase when a kernel's shape is not the spec's."""
    from ..runtime import rules as _rules
    from ..spec.primitives import PRIMITIVES

    saved = dict(_rules.RULES)
    try:
        for n, r in saved.items():
            _rules.RULES[n] = _rules.Rule(n, _spec_forward(PRIMITIVES[n], r.forward, pairs), r.vjp)
        yield
    finally:
        _rules.RULES.clear()
        _rules.RULES.update(saved)


def _spec_forward(prim: Any, kernel: Callable[..., Any], pairs: list[tuple[Any, Any]]) -> Callable[..., Any]:
    """``spec_rules``' forward for primitive ``prim`` whose runtime kernel is ``kernel``."""
    def fwd(xp: Any, *inputs: Any, **attrs: Any) -> Any:
        from ..runtime.symbolic import SYMBOLIC
        from .obligation import NoProofCase

        spec = np.asarray(prim.sympy(*inputs, **attrs), dtype=object)
        # (copies: a kernel that wrote into its inputs would change what the spec and VJPs read)
        ran = SYMBOLIC.asarray(kernel(SYMBOLIC, *(i.copy() if isinstance(i, np.ndarray) else i
                                                  for i in inputs), **attrs))
        if ran.shape != spec.shape:
            raise NoProofCase(f"{prim.name}: the runtime kernel's output shape {ran.shape} is not the "
                              f"spec's {spec.shape}")
        pairs.extend((a, b) for a, b in zip(ran.flat, SYMBOLIC.asarray(spec).flat) if a != b)
        return spec
    return fwd


def verified(obj: Any = None, *, name: str | None = None, meaning: Callable[..., Any] | None = None,
             shapes: list[tuple[int, ...]] | None = None, input_shape: tuple[int, ...] | None = None,
             cases: list[Case] | None = None, vjp: Callable[..., Any] | None = None,
             proof: str = "compositional") -> Any:
    """Register proof obligations for a model or a primitive; returns the object unchanged.

    For a model, ``proof="compositional"`` (default) proves each distinct node case once and
    checks the chain-rule composition (``proofs.compose``); ``proof="monolithic"`` states the
    whole backward pass as one obligation (symbolic weights), within reach for small models only.

    Example (in a module named in ``[tool.torchlean] modules`` or given with ``--module``)::

        @tl.verified(input_shape=(1, 2))     # a factory, or a Module class or instance
        def small_mlp():
            return tl.nn.Sequential(tl.nn.Linear(2, 4), tl.nn.Tanh(), tl.nn.Linear(4, 1))

        # then: python -m torchlean.proofs discharge --module mypkg.models   (writes proofs/)
        #       python -m torchlean.proofs check --module mypkg.models       (replays them)
    """
    if proof not in ("compositional", "monolithic"):
        raise ValueError(f"@verified: proof must be 'compositional' or 'monolithic', got {proof!r}")
    def register(target: Any) -> Any:
        label = name or getattr(target, "__name__", None) or type(target).__name__
        if meaning is not None:
            from .autograd import Case

            cs = cases or [Case(tuple(tuple(s) for s in (shapes or [(1,)])))]
            _primitive(target, label, meaning, cs, vjp)
            return target
        if input_shape is None:
            raise TypeError("@verified model: give input_shape=(...)")
        from ..runtime.trace import is_torch_module

        if is_torch_module(target):  # (it would fail only at discharge time, deep in the tracer)
            raise TypeError(f"@verified: {type(target).__name__} is a PyTorch module; convert it with "
                            "torchlean.bridge.from_torch first")
        sizes_ok = isinstance(input_shape, (tuple, list)) and all(
            isinstance(d, (int, np.integer)) and d > 0 for d in input_shape)
        if not sizes_ok:
            raise TypeError(f"@verified model: input_shape must be a tuple of positive sizes, "
                            f"got {input_shape!r}")
        # work on a copy: the obligation swaps in symbolic weights, the user's model stays as it is
        # (a Module class is a factory too: its instances have parameters, the class is called)
        factory = isinstance(target, type) or (callable(target) and not hasattr(target, "parameters"))
        build = target if factory else (lambda: copy.deepcopy(target))

        _claim(f"verified.model.{label}", target, tuple(input_shape), proof)

        @source(f"verified.model.{label}")
        def _obs() -> Iterator[Obligation]:
            if proof == "monolithic":
                yield from _model_obligations(label, build, tuple(input_shape))
            else:
                from .compose import model_obligations

                yield from model_obligations(label, build, tuple(input_shape))
        return target

    return register(obj) if obj is not None else register
