"""Tracing: run a model or function once and record every primitive it applies as a graph IR.

``tensor.apply`` is the single dispatch point and reports each call to ``STATE.tracer``; the
``Tracer`` here maps tensors to IR values: example inputs become graph inputs, a model's
parameters and buffers become named constants (their ``state_dict`` names), any other tensor met on
the way (a Python number lifted by ``_scalar``, a tensor built outside ``apply``) becomes an
auto-named constant. Like every tracer (``torch.jit.trace``, ``jax.make_jaxpr`` on concrete
values) it records one path: Python control flow on tensor *values* is frozen into the graph.

``CompiledStep`` (``runtime.compiled``) uses the same tracer with ``params_as_inputs=True``,
``strict=True`` and ``faithful=True``: parameters are then plan inputs (they change every step), a
tensor the tracer cannot place (a mask computed from data outside ``apply``, a tensor with its own
tape) is refused instead of silently frozen, and so is a Python read of a value that depends on
the step's inputs or a random draw other than dropout's masks (which the plan draws again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..spec.graph import Graph, Node, Value
from .backends import to_numpy
from .tensor import DETACH, STATE, Tensor, no_grad, note_derived, note_random, note_read  # noqa: F401


class TraceError(RuntimeError):
    """The traced function did something a graph cannot faithfully record."""


class Tracer:
    """Receives ``record`` calls from ``tensor.apply`` and builds the graph's pieces."""

    def __init__(self, named: dict[int, str] | None = None, *, params_as_inputs: bool = False,
                 strict: bool = False, faithful: bool = False, gradient: bool = False):
        #: id(tensor) -> value name; the tensors are kept alive in ``tensors`` so ids stay unique
        self.names: dict[int, str] = {}
        self.tensors: dict[str, Tensor] = {}
        self.inputs: list[Value] = []
        self.constants: dict[str, np.ndarray] = {}
        self.nodes: list[Node] = []
        self._named = dict(named or {})  # id -> state_dict name, for parameters and buffers
        self._declared: dict[int, Tensor] = {}  # tensors declared input-independent (constant())
        self._params_as_inputs = params_as_inputs
        self._strict = strict
        self._count = 0
        #: (input name, draw) per random tensor made during the trace, in draw order
        self.random: list[tuple[str, Callable[[], Any]]] = []
        #: (buffer, its new value) per ``assign`` during the trace, in order (a plan returns the
        #: values and its caller stores them: BatchNorm's running statistics)
        self.updates: list[tuple[Tensor, Tensor]] = []
        #: faithful: the graph must be the function's meaning at *every* input of the example's
        #: shape (tl.verify's claims are about the model, not about one traced path), so whatever
        #: would freeze a value that depends on an input is refused (TraceError) instead of kept
        self._faithful = faithful
        self._dependent: set[str] = set()  # names of the values that depend on an input
        #: input-dependent tensors made outside ``apply`` (a comparison's mask, ``detach``, ``to``)
        self._opaque: dict[int, tuple[Tensor, str]] = {}
        #: gradient (with faithful): the trace behind a gradient claim (``proofs.compose``), which
        #: is made for symbolic weights, so the parameters and buffers are values nothing may
        #: branch on too; ``detach()`` is a stop-gradient there (the tape holds it as a constant
        #: leaf whatever its value), so it may be used, but its value stays one nothing may read
        self._gradient = gradient
        self._stopped: dict[int, Tensor] = {}  # input-dependent detach() results (kept alive)
        #: a plan (params_as_inputs) redraws dropout's masks (``random_source``) but no other
        #: draw: draws told by the generator and not yet claimed by ``random_source``
        self._unclaimed_draws = 0
        #: (value name, check) per ``validate`` during a plan's trace, in eager's order: the plan
        #: calls each check on that value on every run (an index range check raises there too)
        self.checks: list[tuple[str, Callable[[Any], None]]] = []

    # -- naming --------------------------------------------------------------------------
    def add_input(self, t: Tensor, name: str) -> str:
        if id(t) in self.names:  # the same tensor passed twice: one input
            return self.names[id(t)]
        self._bind(t, name)
        self.inputs.append(Value(name, t.shape, str(t.dtype)))
        self._dependent.add(name)
        return name

    def _bind(self, t: Tensor, name: str) -> None:
        self.names[id(t)] = name
        self.tensors[name] = t

    def name_of(self, t: Tensor) -> str:
        name = self.names.get(id(t))
        if name is not None:
            return name
        if id(t) in self._opaque:
            raise TraceError(f"an {self._depends}-dependent tensor of shape {t.shape} made outside "
                             f"torchlean's primitives ({self._opaque[id(t)][1]}) is used: the graph would "
                             "keep its value at the traced point as a constant")
        if id(t) in self._stopped:  # a detach() of a dependent value: a constant, still dependent
            name = self._constant(t)
            self._dependent.add(name)
            return name
        named = self._named.get(id(t))
        if named is not None:
            if self._params_as_inputs:
                return self.add_input(t, named)
            self._bind(t, named)
            self.constants[named] = _snapshot(t)
            if self._gradient:  # symbolic weights: a parameter's value is not one value
                self._dependent.add(named)
            return named
        if self._strict and id(t) not in self._declared:
            self._refuse(t)
        return self._constant(t)

    def _constant(self, t: Tensor) -> str:
        name = f"c{len(self.constants)}"
        while name in self.tensors:
            name = "_" + name
        self._bind(t, name)
        self.constants[name] = _snapshot(t)
        return name

    def _refuse(self, t: Tensor) -> None:
        if t.requires_grad:
            raise TraceError(
                f"a tensor of shape {t.shape} that requires grad but is not a parameter of the model "
                "was used; its gradient would be lost by the compiled step (register it as a Parameter)"
            )
        if t.data.ndim > 0:
            raise TraceError(
                f"a tensor of shape {t.shape} was created outside torchlean's primitives during the "
                "step (e.g. a mask computed from data); the compiled plan would freeze its value. "
                "Register constant tensors as buffers, wrap one that depends on shapes only in "
                "torchlean.runtime.trace.constant(), or use the eager backend"
            )

    def declare_constant(self, t: Tensor) -> None:
        self._declared[id(t)] = t  # kept alive, so the id stays this tensor's

    # -- faithful tracing: values read or copied outside the primitives --------------------
    @property
    def _depends(self) -> str:
        return "input- or weight" if self._gradient else "input"

    def depends_on_input(self, t: Any) -> bool:
        """Whether tensor ``t`` (met during this trace) depends on an input's values."""
        name = self.names.get(id(t))
        return ((name is not None and name in self._dependent) or id(t) in self._opaque
                or id(t) in self._stopped or (self._gradient and id(t) in self._named))

    def derived(self, out: Tensor, sources: Sequence[Any], what: str) -> None:
        """Told by a method that makes ``out`` from ``sources``' values outside ``apply``
        (comparisons, ``detach``, ``to``, ``argmax``): faithfully, an input-dependent one may not
        be used later (``name_of`` refuses it), since the graph would freeze its traced value."""
        if self._faithful and any(self.depends_on_input(s) for s in sources):
            stop = (self._gradient and what == DETACH and out.data.dtype.kind not in "iub"
                    and not any(id(s) in self._opaque for s in sources))
            if stop:  # a stop-gradient: usable as a constant leaf, never read
                self._stopped[id(out)] = out
            else:
                self._opaque[id(out)] = (out, what)  # (kept alive, so the id stays this tensor's)

    def read_value(self, t: Any, what: str) -> None:
        """Told when Python reads ``t``'s values (``bool``, ``item``, ``float``, ``numpy``, ...):
        faithfully, refused for an input-dependent tensor (control flow on it is one path)."""
        if self._faithful and self.depends_on_input(t):
            raise TraceError(f"the model reads the value of an {self._depends}-dependent tensor ({what}), "
                             "e.g. for Python control flow: the trace would record one path, not the "
                             "model's function; write it with tensor operations")

    def random_draw(self, what: str) -> None:
        """Told when the traced function draws random numbers; faithfully refused (the graph
        would keep one draw as a constant)."""
        if self._params_as_inputs:  # a plan: allowed only if random_source claims it (below)
            self._unclaimed_draws += 1
            return
        if self._faithful:
            raise TraceError(f"the model draws random numbers ({what}): the trace would keep one draw "
                             "as a constant (call model.eval(), or remove the random op)")

    def random_source(self, t: Tensor, draw: Callable[[], Any]) -> None:
        """Called by ``random.random_mask``: ``t`` holds one draw of ``draw()``. A plan makes it
        an input and draws again on every run; ``trace()`` keeps the one draw as a constant."""
        if not self._params_as_inputs:
            self.random_draw("a dropout mask")
        else:  # the generator told random_draw of this mask's draw just before: the plan repeats it
            self._unclaimed_draws = max(0, self._unclaimed_draws - 1)
            name = f"random{len(self.random)}"
            while name in self.tensors:
                name = "_" + name
            self.random.append((self.add_input(t, name), draw))

    def add_check(self, t: Tensor, check: Callable[[Any], None]) -> None:
        """Told by ``validate``: a plan repeats ``check`` on ``t``'s value on every run; a graph
        (``trace()``) has no checks, so faithfully one on an input-dependent value is a read."""
        if self._params_as_inputs:
            self.checks.append((self.name_of(t), check))
        else:
            self.read_value(t, "a check of its values")

    # -- the hook ``tensor.apply`` calls -------------------------------------------------
    def record(self, name: str, args: Sequence[Tensor], attrs: dict[str, Any], out: Tensor) -> None:
        ins = [self.name_of(a) for a in args]
        out_name = f"v{self._count}"
        self._count += 1
        self._bind(out, out_name)
        if any(i in self._dependent for i in ins):
            self._dependent.add(out_name)
        self.nodes.append(Node(name, ins, out_name, dict(attrs)))

    def graph(self, outputs: Sequence[Tensor]) -> Graph:
        if self._unclaimed_draws:  # (a plan: a draw it would not repeat, so later masks shift too)
            raise TraceError(
                f"compiled backend: the step drew random numbers {self._unclaimed_draws} time(s) outside "
                "dropout's masks (randn, rand, an initialiser, a Python-level coin flip): the plan would "
                "keep one draw and no longer advance the generator; use the eager backend")
        outs = [self.name_of(o) for o in outputs]
        return Graph(list(self.inputs), dict(self.constants), list(self.nodes), outs).check()


def assign(buffer: Tensor, value: Tensor) -> None:
    """``buffer.data = value.data``, a side effect of a forward pass (running statistics), told to
    the active tracer so that a compiled plan computes ``value`` from its inputs and its caller
    stores it after every run, as eager execution does. ``value`` must come from torchlean's
    primitives (under ``no_grad``), not from raw arrays, or the plan could not recompute it."""
    tracer = STATE.tracer
    if tracer is not None and hasattr(tracer, "updates"):
        tracer.name_of(value)  # (a value from outside the primitives is refused here, strictly)
        tracer.updates.append((buffer, value))
    buffer.data = value.data


def validate(t: Tensor, check: Callable[[Any], None]) -> None:
    """Run ``check(t.data)``, which raises on values the operation refuses (an embedding index or
    a class index out of range: numpy would wrap ``-1`` round, torch raises) and returns nothing
    otherwise; an active compiled-plan tracer records it so that the plan runs it on every call
    (a Python check reading the values would be traced once and then skipped)."""
    check(t.data)
    tracer = STATE.tracer
    if tracer is not None and hasattr(tracer, "add_check"):
        tracer.add_check(t, check)


def refuse_in_plan(what: str) -> None:
    """Raise TraceError while a compiled plan is being traced: ``what`` reads a value the plan
    would freeze (Python control flow on a buffer's value)."""
    tracer = STATE.tracer
    if tracer is not None and getattr(tracer, "_params_as_inputs", False):
        raise TraceError(f"compiled backend: {what} cannot be planned (the plan would freeze a value "
                         "it reads); use the eager backend")


def constant(t: Tensor) -> Tensor:
    """Declare that ``t`` depends on shapes only, never on the values of any input (a causal
    mask, a positional table built in ``forward``), so a compiled plan may keep its traced value.
    Returns ``t``; outside tracing it does nothing. A wrong declaration is a silent wrong result:
    plans are re-traced when shapes change, not when values do."""
    tracer = STATE.tracer
    if tracer is not None and hasattr(tracer, "declare_constant"):
        tracer.declare_constant(t)
    return t


@contextmanager
def tracing(tracer: Tracer) -> Iterator[Tracer]:
    """Make ``tracer`` the active one (thread-local); nested tracing is refused."""
    if STATE.tracer is not None:
        raise TraceError("already tracing: nested trace() calls are not supported")
    STATE.tracer = tracer
    try:
        yield tracer
    finally:
        STATE.tracer = None


def module_names(model: Any) -> dict[int, str]:
    """id -> state_dict name for a Module's parameters and buffers ({} for a plain function)."""
    names: dict[int, str] = {}
    if hasattr(model, "named_parameters"):
        for name, p in model.named_parameters():
            names.setdefault(id(p), name)
        for name, b in model.named_buffers():
            names.setdefault(id(b), name)
    return names


def flatten_outputs(out: Any) -> list[Tensor]:
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    for o in outs:
        if not isinstance(o, Tensor):
            raise TraceError(f"traced function must return Tensors, got {type(o).__name__}")
    return outs


def is_torch_module(obj: Any) -> bool:
    """Whether ``obj`` is a PyTorch ``torch.nn.Module`` (told by its classes, without importing torch)."""
    return any(c.__name__ == "Module" and c.__module__.startswith("torch.nn")
               for c in type(obj).__mro__)


def require_traceable(obj: Any, where: str) -> None:
    """TypeError, in one line, for what ``trace`` cannot run: a PyTorch module (whose layers would
    fail deep inside on torchlean tensors) or something that is not callable at all."""
    if is_torch_module(obj):
        raise TypeError(f"{where}: got a PyTorch module ({type(obj).__name__}); convert it first with "
                        "torchlean.bridge.from_torch(model) (from_torch(model, example=x) for one "
                        "with its own forward)")
    if not callable(obj):
        raise TypeError(f"{where}: expected a torchlean model (tl.nn.Module) or a function of tensors, "
                        f"got {type(obj).__name__}")


def _train_dependent(m: Any) -> bool:
    """Whether a layer computes something else in training mode: dropout with p > 0 (Dropout, or a
    layer's ``dropout`` rate: attention, recurrent, transformer layers) and batch norm."""
    name = type(m).__name__
    rate = getattr(m, "p", 0) if "Dropout" in name else getattr(m, "dropout", 0)
    return name.startswith("BatchNorm") or (isinstance(rate, (int, float)) and rate > 0)


def require_eval(model: Any, where: str) -> None:
    """ValueError for a model in training mode whose layers behave differently there, where its
    graph is meant as the model's function (bounds, verdicts, export): traced in training mode, a
    dropout mask drawn once becomes a constant and batch norm uses the batch's own statistics."""
    if hasattr(model, "modules"):  # (each layer's own flag: model.eval() then model[1].train())
        moving = sorted({type(m).__name__ for m in model.modules()
                         if getattr(m, "training", False) and _train_dependent(m)})
        if moving:
            raise ValueError(f"{where}: the model is in training mode and {', '.join(moving)} "
                             "behave(s) differently there: call model.eval() first")


def gradient_tracer(model: Any) -> Tracer:
    """The faithful tracer behind a gradient claim (``proofs.compose.trace``): Python reads of the
    input's *or the weights'* values, input- or weight-dependent copies made outside the primitives
    (comparison masks, ``.to()``, ``tl.tensor(t)``, ``argmax``) and random draws raise
    ``TraceError``, since the claim is about the model's tape at every input and weight value, not
    about the path taken at one; ``detach()`` (a stop-gradient) is allowed. Add the input with
    ``add_input`` and run the model under ``tracing``."""
    return Tracer(module_names(model), faithful=True, gradient=True)


def trace(model_or_fn: Callable[..., Any], *example_inputs: Any, faithful: bool = False) -> Graph:
    """Run ``model_or_fn(*example_inputs)`` once and return its checked graph IR.

    Inputs are named ``input0``, ``input1``, ...; a Module's parameters and buffers become
    constants under their ``state_dict`` names. Evaluating the graph with
    ``runtime.execute.run_graph`` reproduces the eager outputs bit for bit. Trace
    models in eval mode: a dropout mask drawn during the trace is kept as a constant here (the
    compiled backend, by contrast, draws it again on every run). A PyTorch module is refused
    with a TypeError: convert it with ``torchlean.bridge.from_torch`` first.

    ``faithful=True`` (``tl.verify``) asks for the function itself, not one traced path: reading an
    input-dependent value in Python (``if x.sum() > 0``, ``.item()``, ``float()``, ``.numpy()``),
    using an input-dependent tensor made outside the primitives (``x * (x > 0)``, ``x.detach()``,
    ``x.to(...)``, ``argmax``) and drawing random numbers raise ``TraceError`` instead.

    Example::

        model = tl.nn.Sequential(tl.nn.Linear(2, 3), tl.nn.ReLU()).eval()
        graph = tl.trace(model, tl.zeros(1, 2))
        print(graph.summary())               # typed SSA nodes: transpose, matmul, add, relu
        graph.values[graph.outputs[0]].shape  # (1, 3)
    """
    require_traceable(model_or_fn, "trace")
    xs = [x if isinstance(x, Tensor) else Tensor(np.asarray(x)) for x in example_inputs]
    tracer = Tracer(module_names(model_or_fn), faithful=faithful)
    for i, x in enumerate(xs):
        tracer.add_input(x, f"input{i}")
    with tracing(tracer), no_grad():
        out = model_or_fn(*xs)
    return tracer.graph(flatten_outputs(out))


def _snapshot(t: Tensor) -> np.ndarray:
    # keep the memory layout: BLAS may round differently for a transposed operand, and graph
    # evaluation must see the same layout as eager did (JSON stores row-major bytes, so a
    # column-major parameter is the one case where a round trip can change matmul's bits)
    return np.array(to_numpy(t.data), copy=True, order="K")
