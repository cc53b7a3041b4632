"""The ``compiled`` backend: traced, planned execution that is bit-identical to eager.

``CompiledStep(model, loss_fn)`` is a training step: ``loss = step(x, y)`` returns the loss and
leaves in every parameter's ``.grad`` exactly the arrays that
``model.zero_grad(); loss_fn(model(x), y).backward()`` would (parameters the loss does not reach
get ``None``). ``compile(model)`` is the inference-only counterpart.

On the first call, and whenever what the plan was made for changes, the step is traced once
eagerly (``runtime.trace``); the trace and its tape become a straight-line Python function
(``runtime.plan`` + ``runtime.codegen``) taking the parameters as *arguments* (they change every
step). Later calls run that function on the raw arrays: no Tensor objects, no tape, no name
lookups. Works on numpy and cupy alike (``xp`` is taken from the arrays). "What the plan was made
for" is checked on every call (``_guards``, audit37): the inputs' and parameters' shapes, dtypes
and array types, and the Python state read afresh from the model and the loss: every module and
its attributes (training flags, dropout rates, momentum, ...), which Parameter, buffer and layer
objects sit where and their ``requires_grad``, and a loss function's closure cells.

Dropout masks (drawn through ``random.random_mask``) are plan inputs drawn again on every run, in
the order eager execution draws them, so training with dropout stays bit-identical too. What
cannot be planned is refused (``TraceError``), never frozen: Python control flow on, or any Python
read of, a value that depends on the step's inputs (data, parameters, buffers, masks: ``if
x.sum() > 0``, ``float(t)``, ``.item()``, a 0-d comparison used as a factor: the tracer is
faithful, as ``tl.verify``'s), any other random draw (``tl.randn``, a coin flip), a forward pass
that changes a module's Python state on every call (a first-call cache is traced again once),
an input's or parameter's array written by the forward pass (``x.data *= 2``), buffers changed as
a side effect of the forward pass other than through ``trace.assign`` (which
BatchNorm's running statistics use: the plan returns the new values and the step stores them, as
eager execution does), a tensor created from data outside torchlean's primitives during the step
(a mask computed with numpy, e.g. today's ``huber_loss``), a tensor that requires grad but is not
a parameter, an input that requires grad. Checks that only raise on bad values (an embedding or
class index out of range) go through ``trace.validate`` and the plan runs them too. Not seen:
Python reads of raw arrays (``x.data``, numpy), module-level globals, and objects changed inside
beyond two levels or 16 entries (see TRUST_BOUNDARIES "Audit audit37").
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import random
from .autograd import _owner, _propagate, own_grad, tape_order
from .backends import namespace_of, to_numpy
from .codegen import Program
from .plan import Emitter, emit_inputs
from .tensor import Tensor, enable_grad, no_grad, tensor
from .trace import TraceError, Tracer, flatten_outputs, module_names, tracing

__all__ = ["CompiledModel", "CompiledStep", "TraceError", "compile"]


_PLAIN = (bool, int, str, bytes, type(None))
_TABLES = ("_parameters", "_modules", "_buffers")


def _value_key(v: Any, depth: int = 0) -> Any:
    """What of a Python attribute the plan may have frozen, as a comparable key: plain values by
    value (a float by its bits: ``-0.0`` and ``0.0`` compare equal but multiply differently),
    small tuples/lists/dicts and small objects' attributes element-wise (two levels deep), a
    tensor by identity, its array's identity and ``requires_grad`` (and a small one's bytes: a 0-d
    tensor attribute becomes a plan constant), anything else by identity (replaced is seen,
    mutated inside is not)."""
    if isinstance(v, _PLAIN):
        return type(v), v
    if isinstance(v, float):
        return float, v.hex()
    if isinstance(v, Tensor):
        d = v.data
        small = to_numpy(d).tobytes() if getattr(d, "size", 0) <= 16 else None
        return Tensor, id(v), id(d), v.requires_grad, small
    if isinstance(v, (np.generic, np.ndarray)) and v.size <= 16:
        return np.ndarray, v.dtype.str, v.shape, v.tobytes()
    if isinstance(v, (tuple, list)) and depth < 2 and len(v) <= 16:
        return type(v), tuple(_value_key(e, depth + 1) for e in v)
    if isinstance(v, dict) and depth < 2 and len(v) <= 16:
        return dict, id(v), tuple((_value_key(k, 2), _value_key(e, depth + 1)) for k, e in v.items())
    d = getattr(v, "__dict__", None)
    if isinstance(d, dict) and depth < 2 and len(d) <= 16 and not hasattr(v, "_parameters"):
        # a small config object (``self.cfg.temperature``); a Module kept outside the registry is
        # not looked into (its tensors are refused by the strict trace anyway)
        return object, id(v), tuple((k, _value_key(e, depth + 1)) for k, e in d.items())
    return object, id(v)


def _walk(o: Any) -> list[Any]:
    """``o`` and every module below it (``Module.modules()`` without its generators: this runs on
    every step)."""
    out, todo = [], [o]
    while todo:
        m = todo.pop()
        out.append(m)
        sub = getattr(m, "__dict__", {}).get("_modules")
        if sub:
            todo.extend(reversed(sub.values()))
    return out


def _guards(*objs: Any) -> tuple[Any, ...]:
    """The Python state a traced plan depends on besides the arrays' shapes and dtypes, read
    afresh on every call (not cached: layers, parameters and attributes can be replaced between
    steps): every module reached from ``objs`` with each of its attributes (training flags,
    dropout rates, momentum, which Parameter, buffer and layer objects sit where, the parameters'
    and buffers' ``requires_grad``; their values are plan inputs), a plain function's closure
    cells (a ``loss_fn`` lambda's captured weight), a bound method's object and a
    ``functools.partial``'s bound arguments."""
    out: list[Any] = []
    add = out.append
    for o in objs:
        for m in _walk(o):
            d = getattr(m, "__dict__", None) or {}
            add(id(m))
            params, mods, bufs = d.get("_parameters") or {}, d.get("_modules") or {}, d.get("_buffers") or {}
            for t in (params, mods, bufs):  # (registration order decides the plan's argument order)
                add(len(t))  # (flat, so each entry's place is fixed by the counts before it)
                for n, v in t.items():
                    add(n)
                    add(id(v))
                    add(getattr(v, "requires_grad", None))
            for k, v in d.items():
                if not (k in params or k in mods or k in bufs or k in _TABLES):
                    add((k, _value_key(v)))
            kind = type(m).__name__
            if kind == "method":  # a bound method: its object's state (a loss with settings)
                add(_value_key(m.__self__))
                m = m.__func__
            elif kind == "partial":  # functools.partial: the arguments it binds
                add((_value_key(m.args), _value_key(m.keywords)))
                m = m.func
            if type(m).__name__ == "function":
                for cell in m.__closure__ or ():
                    try:
                        add(_value_key(cell.cell_contents))
                    except ValueError:  # an empty cell
                        add(None)
    return tuple(out)


def _build_stable(build: Callable[[], None], guards: Callable[[], Any]) -> None:
    """Run ``build`` (a trace: one eager forward) until the guards it leaves are those it found. A
    trace that changes them (a cache or a layer made on the first call) is done once more from the
    new state, with the generator rewound so that the kept trace's draws are eager's; a forward
    that changes them on every call (a counter, an attribute it sets from the data) is refused,
    since the plan would not repeat that side effect."""
    gen = random._GEN[0]
    state = gen.bit_generator.state
    for _ in range(2):
        before = guards()
        try:
            build()
        except BaseException:  # a refused step leaves the generator as eager would find it
            gen.bit_generator.state = state
            raise
        if guards() == before:
            return
        gen.bit_generator.state = state
    raise TraceError("compiled backend: the forward pass changes a module's Python state on every "
                     "call (an attribute, a layer, a parameter, requires_grad); the plan cannot "
                     "repeat that side effect. Use the eager backend")


def _note_retrace(obj: Any) -> None:
    """A warning when a step keeps being traced again: correct (each plan is checked against the
    state it was made for) but as slow as eager or slower; the guards name what is compared."""
    if obj.traces == _RETRACE_WARN:
        warnings.warn(f"{type(obj).__name__}: traced {obj.traces} times; something the plan depends "
                      "on (an input's shape or dtype, a module attribute, a parameter object, "
                      "requires_grad, a loss closure's value) changes between calls", stacklevel=3)


_RETRACE_WARN = 8


def _check_inputs(*xs: Any) -> None:
    """A data input with a tape of its own (``requires_grad``): eager backward would fill its
    ``.grad`` (or a teacher's parameters' grads through it); the plan takes raw arrays and would not."""
    for x in xs:
        if isinstance(x, Tensor) and x.requires_grad:
            raise TraceError("compiled step: an input requires grad (or was computed with grad enabled); "
                             "eager backward would reach it and the plan does not: pass x.detach() "
                             "or use the eager backend")


def _cotangents_match(loss: Tensor, tensors: dict[str, Tensor]) -> bool:
    """Run the eager backward once (at build time) and check that every cotangent has its
    value's shape and dtype: then writing a sum into an operand's buffer cannot cast."""
    cot = _propagate([loss], [namespace_of(loss.data).ones_like(loss.data)])
    for t in tensors.values():
        g = cot.get(id(t))
        if g is not None and (tuple(g.shape) != t.shape or g.dtype != t.dtype):
            return False
    return True


def _array(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.data
    if hasattr(x, "shape") and hasattr(x, "dtype"):  # an array (numpy or cupy): kept as it is
        return x
    return tensor(x).data  # lists, numbers: torchlean's own conversion (floats in the default dtype)


def _signature(arrays: list[Any]) -> tuple[Any, ...]:
    return tuple((a.shape, a.dtype, type(a)) for a in arrays)


class _Traced:
    """One eager run under a strict tracer with parameters and buffers as inputs."""

    def __init__(self, model: Any, data: list[Any], fn: Callable[[list[Tensor]], Any], grad: bool):
        names = module_names(model)
        self.params = [p for _, p in model.named_parameters()] if hasattr(model, "named_parameters") else []
        self.buffers = [b for _, b in model.named_buffers()] if hasattr(model, "named_buffers") else []
        # faithful: a Python read of a value that depends on the step's inputs (data, parameters,
        # buffers, masks: all change between runs) is refused, not frozen into the plan
        self.tracer = Tracer(names, params_as_inputs=True, strict=True, faithful=True)
        for t in (*self.params, *self.buffers):
            self.tracer.add_input(t, names[id(t)])
        taken = set(self.tracer.tensors)
        self.data_names = []
        for i, a in enumerate(data):
            name = f"input{i}"
            while name in taken:
                name = "_" + name
            self.data_names.append(self.tracer.add_input(Tensor(a), name))
        before, arrays = self._state(), {id(b): b.data for b in self.buffers}
        try:
            with tracing(self.tracer), (enable_grad() if grad else no_grad()):
                self.outputs = flatten_outputs(fn([self.tracer.tensors[n] for n in self.data_names]))
        except BaseException:  # a refused trace leaves the model's buffers as they were
            for b, _ in self.tracer.updates:
                if id(b) in arrays:
                    b.data = arrays[id(b)]
            raise
        # buffers the forward assigned through ``trace.assign`` (BatchNorm's running statistics)
        # become plan outputs the caller stores; the traced run's own update of those is undone,
        # since the plan runs this step again; any other change is refused below
        self.updates = [(b, v) for b, v in self.tracer.updates if id(b) in arrays]
        for b, _ in self.updates:
            b.data = arrays[id(b)]
        if self._state() != before or len(self.updates) != len(self.tracer.updates):
            raise TraceError(
                "compiled backend: the forward pass changed an input's, a parameter's or a buffer's "
                "array other than through torchlean.runtime.trace.assign (x.data = ..., an in-place "
                "update); the plan cannot repeat that side effect. Use the eager backend, or call "
                "model.eval()"
            )
        self.graph = self.tracer.graph([*self.outputs, *(v for _, v in self.updates)])

    def _state(self) -> list[Any]:
        # identity and bytes of every array the plan takes (an in-place update is a side effect
        # too, and a data input rebound or written in forward would be read unchanged by the
        # plan: audit37); only at trace time, so the copies do not matter
        data = [self.tracer.tensors[n] for n in self.data_names]
        arrays = [t.data for t in (*self.params, *self.buffers, *data)]
        return [*(id(a) for a in arrays), *(to_numpy(a).tobytes() for a in arrays)]

    def program(self, inplace_backward: bool = False) -> tuple[Program, Emitter]:
        args = {name: f"p{i}" for i, name in enumerate(v.name for v in self.graph.inputs)}
        prog = Program(list(args.values()))
        sample = self.outputs[0].data
        prog.env["xp"] = namespace_of(sample)
        var: dict[str, str] = {}
        xp = prog.env["xp"]
        # the graph keeps its constants (scalars such as the 0.5 of ``x * 0.5``, masks) on the host;
        # a plan on the device needs them there (cupy refuses host arrays in device operations)
        constants = self.graph.constants if xp is np else {
            k: xp.asarray(v) for k, v in self.graph.constants.items()}
        emit_inputs(prog, self.graph, var, args, constants)
        observed = {n: (tuple(t.shape), str(t.dtype)) for n, t in self.tracer.tensors.items()}
        em = Emitter(prog, self.graph, var, numpy=prog.env["xp"] is np, observed=observed,
                     inplace_backward=inplace_backward)
        em.forward()
        for name, check in self.tracer.checks:  # (trace.validate: after the forward, in eager's
            v = em.var[name]                     # order; nothing is stored before the plan returns)
            prog.emit(f"{prog.const(check, 'Q')}({v})", (v,))
        return prog, em

    def state_arrays(self) -> list[Any]:
        return [*(t.data for t in self.params), *(t.data for t in self.buffers)]

    def first_draws(self) -> list[Any]:
        """The random masks the traced run drew: the first plan run must reuse them, or the
        generator would advance twice for that step."""
        return [self.tracer.tensors[name].data for name, _ in self.tracer.random]

    def input_arrays(self, data: list[Any], draws: list[Any] | None = None) -> list[Any]:
        """Arguments of the plan in graph-input order: parameters, buffers, the data, then the
        random masks (drawn now, in the order eager execution draws them)."""
        if draws is None:
            draws = [draw() for _, draw in self.tracer.random]
        return [*(t.data for t in self.params), *(t.data for t in self.buffers), *data, *draws]


class CompiledStep:
    """A planned forward + loss + backward; see the module docstring for the contract."""

    def __init__(self, model: Any, loss_fn: Callable[[Tensor, Tensor], Tensor]):
        self.model = model
        self.loss_fn = loss_fn
        self._key: Any = None
        self._fn: Callable[..., tuple[Any, ...]] | None = None
        self._params: list[Tensor] = []
        self._grad_of: list[int] = []  # per parameter: index in the plan's results, or -1
        self._updated: tuple[int, list[Tensor]] = (0, [])  # (first result, buffers) of assign()s
        self._extra: list[Tensor] = []  # buffers, passed after the parameters
        self._tr: _Traced | None = None
        self._draws: list[Any] | None = None  # masks of the traced run, for the first plan run
        self.source = ""  #: the generated plan, for inspection
        self.traces = 0  #: how many times the step was (re)traced

    def _state_key(self) -> tuple[Any, ...]:
        return _guards(self.model, self.loss_fn)

    def _key_of(self, x: Any, y: Any) -> tuple[Any, ...]:
        return (_signature([x, y, *(p.data for p in self._params), *(b.data for b in self._extra)]),
                self._state_key())

    def _build(self, x: Any, y: Any) -> None:

        def run(ins: list[Tensor]) -> Tensor:
            return self.loss_fn(self.model(ins[0]), ins[1])

        tr = _Traced(self.model, [x, y], run, grad=True)
        loss = tr.outputs[0]
        if len(tr.outputs) != 1 or loss.numel() != 1:
            raise TraceError(f"compiled step: loss_fn must return a single-element tensor, got {loss.shape}")
        if not loss.requires_grad:
            raise TraceError("compiled step: the loss does not depend on any parameter")
        names = tr.tracer.names
        tape = [names[id(t)] for t in tape_order([loss])]
        requires = {n for n, t in tr.tracer.tensors.items() if t.requires_grad}
        prog, em = tr.program(inplace_backward=_cotangents_match(loss, tr.tracer.tensors))
        cot = em.backward(tr.graph.outputs[0], tape, requires)
        result = [em.var[tr.graph.outputs[0]]]
        self._grad_of = []
        for p in tr.params:
            name = names[id(p)]
            if name in cot:  # reached by the backward pass, as in autograd.backward
                self._grad_of.append(len(result))
                result.append(cot[name])
            else:
                self._grad_of.append(-1)
        self._updated = len(result), [b for b, _ in tr.updates]
        result += [em.var[o] for o in tr.graph.outputs[1:]]
        self._fn, self.source = prog.build(result, "train_step")
        self._params, self._extra, self._tr = tr.params, tr.buffers, tr
        self._draws = tr.first_draws() or None
        self.traces += 1
        _note_retrace(self)

    def __call__(self, x: Any, y: Any) -> Tensor:
        _check_inputs(x, y)
        xa, ya = _array(x), _array(y)
        if self._fn is None or self._key_of(xa, ya) != self._key:
            _build_stable(lambda: self._build(xa, ya), self._state_key)
            self._key = self._key_of(xa, ya)
        params = self._params
        if self._tr.tracer.random:  # type: ignore[union-attr]
            args = self._tr.input_arrays([xa, ya], self._draws)  # type: ignore[union-attr]
            self._draws = None
            res = self._fn(*args)  # type: ignore[misc]
        else:  # the common case, without the list building
            res = self._fn(*[p.data for p in params], *[b.data for b in self._extra], xa, ya)  # type: ignore[misc]
        # the plan may hand one array (or views of it) to several parameters, as eager's tape does:
        # each .grad gets memory of its own, as in eager backward (audit47)
        held = (xa, ya, res[0], *(p.data for p in params), *(b.data for b in self._extra))
        taken = {id(_owner(a)) for a in held}
        for p, j in zip(params, self._grad_of, strict=True):
            p.grad = Tensor(own_grad(res[j], p.data.dtype, taken)) if j >= 0 else None
        start, bufs = self._updated
        for k, b in enumerate(bufs):  # the forward's side effects, as eager execution leaves them
            b.data = res[start + k]
        return Tensor(res[0])


class CompiledModel:
    """An inference-only forward plan of ``model``; call it like the model."""

    def __init__(self, model: Any):
        self.model = model
        self._key: Any = None
        self._fn: Callable[..., tuple[Any, ...]] | None = None
        self._tr: _Traced | None = None
        self._single = True
        self._container: Any = tuple
        self._n_out = 1
        self._draws: list[Any] | None = None
        self.source = ""
        self.traces = 0

    def _build(self, data: list[Any]) -> None:
        kind: list[Any] = [None]

        def run(ins: list[Tensor]) -> Any:
            out = self.model(*ins)
            kind[0] = type(out) if isinstance(out, (tuple, list)) else None
            return out

        tr = _Traced(self.model, data, run, grad=False)
        prog, em = tr.program()
        self._fn, self.source = prog.build([em.var[o] for o in tr.graph.outputs], "forward")
        self._tr = tr
        self._draws = tr.first_draws()
        # the model's own container: a one-element tuple stays a tuple (unpacking a bare tensor
        # would iterate its rows), a list stays a list
        self._single = kind[0] is None
        self._container = kind[0] or tuple
        self._n_out = len(tr.outputs)
        self.traces += 1
        _note_retrace(self)

    def _key_of(self, data: list[Any]) -> Any:
        params = [] if self._tr is None else self._tr.state_arrays()
        return _signature([*data, *params]), _guards(self.model)

    def __call__(self, *inputs: Any) -> Any:
        data = [_array(x) for x in inputs]
        if self._tr is None or self._key_of(data) != self._key:
            _build_stable(lambda: self._build(data), lambda: _guards(self.model))
            self._key = self._key_of(data)
        tr = self._tr
        assert tr is not None
        draws, self._draws = self._draws, None
        outs = self._fn(*tr.input_arrays(data, draws))  # type: ignore[misc]
        for (b, _), a in zip(tr.updates, outs[self._n_out:], strict=True):
            b.data = a  # the forward's assign()s (a model in training mode)
        tensors = [Tensor(o) for o in outs[:self._n_out]]
        return tensors[0] if self._single else self._container(tensors)


def compile(model: Any) -> CompiledModel:  # noqa: A001 - mirrors torch.compile
    """An inference-only compiled forward of ``model`` (a Module or a function of tensors)."""
    return CompiledModel(model)
