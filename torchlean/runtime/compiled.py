"""The ``compiled`` backend: traced, planned execution that is bit-identical to eager.

``CompiledStep(model, loss_fn)`` is a training step: ``loss = step(x, y)`` returns the loss and
leaves in every parameter's ``.grad`` exactly the arrays that
``model.zero_grad(); loss_fn(model(x), y).backward()`` would (parameters the loss does not reach
get ``None``). ``compile(model)`` is the inference-only counterpart.

On the first call, and whenever the shapes or dtypes of the inputs or parameters change, the step
is traced once eagerly (``runtime.trace``); the trace and its tape become a straight-line Python
function (``runtime.plan`` + ``runtime.codegen``) taking the parameters as *arguments* (they change
every step). Later calls run that function on the raw arrays: no Tensor objects, no tape, no
name lookups. Works on numpy and cupy alike (``xp`` is taken from the arrays).

Dropout masks (drawn through ``random.random_mask``) are plan inputs drawn again on every run, in
the order eager execution draws them, so training with dropout stays bit-identical too. What
cannot be planned is refused, never frozen: buffers changed as a side effect of the forward pass
other than through ``trace.assign`` (which BatchNorm's running statistics use: the plan returns
the new values and the step stores them, as eager execution does), a tensor created from data
outside torchlean's primitives during the step (a mask computed with numpy, e.g. today's
``huber_loss``), a tensor that requires grad but is not a parameter. Like any tracer, Python
control flow on tensor values is recorded for the traced inputs only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .autograd import _propagate, tape_order
from .backends import namespace_of, to_numpy
from .codegen import Program
from .plan import Emitter, emit_inputs
from .tensor import Tensor, enable_grad, no_grad
from .trace import TraceError, Tracer, flatten_outputs, module_names, tracing

__all__ = ["CompiledModel", "CompiledStep", "TraceError", "compile"]


def _modes(modules: list[Any]) -> tuple[bool, ...]:
    """Every module's training flag: ``m[2].eval()`` alone changes what the forward does."""
    return tuple(m.training for m in modules)


def _all_modules(*objs: Any) -> list[Any]:
    return [m for o in objs if hasattr(o, "modules") for m in o.modules()]


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
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _signature(arrays: list[Any]) -> tuple[Any, ...]:
    return tuple((a.shape, a.dtype, type(a)) for a in arrays)


class _Traced:
    """One eager run under a strict tracer with parameters and buffers as inputs."""

    def __init__(self, model: Any, data: list[Any], fn: Callable[[list[Tensor]], Any], grad: bool):
        names = module_names(model)
        self.params = [p for _, p in model.named_parameters()] if hasattr(model, "named_parameters") else []
        self.buffers = [b for _, b in model.named_buffers()] if hasattr(model, "named_buffers") else []
        self.tracer = Tracer(names, params_as_inputs=True, strict=True)
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
                "compiled backend: the forward pass changed a parameter's or buffer's array other "
                "than through torchlean.runtime.trace.assign (e.g. an in-place update); the plan "
                "cannot repeat that side effect. Use the eager backend, or call model.eval()"
            )
        self.graph = self.tracer.graph([*self.outputs, *(v for _, v in self.updates)])

    def _state(self) -> list[Any]:
        # identity of every array, and the bytes of the buffers (an in-place update is a side
        # effect too); only at trace time, so the copy does not matter
        return [*(id(t.data) for t in (*self.params, *self.buffers)),
                *(to_numpy(b.data).tobytes() for b in self.buffers)]

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
        self._modules = _all_modules(model, loss_fn)
        self.source = ""  #: the generated plan, for inspection
        self.traces = 0  #: how many times the step was (re)traced

    def _key_of(self, x: Any, y: Any) -> tuple[Any, ...]:
        return (_signature([x, y, *(p.data for p in self._params), *(b.data for b in self._extra)]),
                _modes(self._modules))

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
        self._key = self._key_of(x, y)
        self.traces += 1

    def __call__(self, x: Any, y: Any) -> Tensor:
        xa, ya = _array(x), _array(y)
        if self._fn is None or self._key_of(xa, ya) != self._key:
            self._build(xa, ya)
        params = self._params
        if self._tr.tracer.random:  # type: ignore[union-attr]
            args = self._tr.input_arrays([xa, ya], self._draws)  # type: ignore[union-attr]
            self._draws = None
            res = self._fn(*args)  # type: ignore[misc]
        else:  # the common case, without the list building
            res = self._fn(*[p.data for p in params], *[b.data for b in self._extra], xa, ya)  # type: ignore[misc]
        for p, j in zip(params, self._grad_of, strict=True):
            p.grad = Tensor(res[j]) if j >= 0 else None
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
        self._n_out = 1
        self._draws: list[Any] | None = None
        self._modules = _all_modules(model)
        self.source = ""
        self.traces = 0

    def _build(self, data: list[Any]) -> None:
        tr = _Traced(self.model, data, lambda ins: self.model(*ins), grad=False)
        prog, em = tr.program()
        self._fn, self.source = prog.build([em.var[o] for o in tr.graph.outputs], "forward")
        self._tr = tr
        self._draws = tr.first_draws()
        self._single = len(tr.outputs) == 1
        self._n_out = len(tr.outputs)
        self.traces += 1

    def _key_of(self, data: list[Any]) -> Any:
        params = [] if self._tr is None else self._tr.state_arrays()
        return _signature([*data, *params]), _modes(self._modules)

    def __call__(self, *inputs: Any) -> Any:
        data = [_array(x) for x in inputs]
        if self._tr is None or self._key_of(data) != self._key:
            self._build(data)
            self._key = self._key_of(data)
        tr = self._tr
        assert tr is not None
        draws, self._draws = self._draws, None
        outs = self._fn(*tr.input_arrays(data, draws))  # type: ignore[misc]
        for (b, _), a in zip(tr.updates, outs[self._n_out:], strict=True):
            b.data = a  # the forward's assign()s (a model in training mode)
        tensors = [Tensor(o) for o in outs[:self._n_out]]
        return tensors[0] if self._single else tuple(tensors)


def compile(model: Any) -> CompiledModel:  # noqa: A001 - mirrors torch.compile
    """An inference-only compiled forward of ``model`` (a Module or a function of tensors)."""
    return CompiledModel(model)
