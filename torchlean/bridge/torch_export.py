"""Any ``torch.nn.Module`` to the graph IR through ``torch.export``, with one converter per aten op.

``export_graph(module, example)`` runs ``torch.export.export(module, (example,))``, decomposes the
program to core ATen (``run_decompositions()``) and lowers each aten op with the converter registered
for it in ``CONVERTERS`` (keyed by the op's name, e.g. ``aten.addmm.default``), emitting IR nodes
through the ONNX importer's ``Builder`` (one emitter: shapes, dtypes and constants tracked the same
way). Every aten op without a converter is named in one error before anything is lowered.

Meaning: weights and buffers enter as graph constants with their exact bits; a Python number
combined with a tensor becomes a constant of the tensor's dtype, the value torch's kernel computes
with (float16/bfloat16 kernels compute in float32 with the number's float32 value: one the format
does not hold is refused, audit66); an aten op becomes the primitives that compute its value over
the reals, in torch's order (exact GELU: x·0.5·(1 + erf(x·M_SQRT1_2)), M_SQRT1_2 cast to the dtype
as torch's kernel does). A float64 constant's ``.half()`` is folded by torch's own conversion.
Shapes are static: the example input fixes every dimension, the batch included.

``GraphModule`` holds such a graph as a torchlean ``nn.Module``: float weights are ``Parameter``s
and buffers are buffers under torch's ``state_dict`` names, and ``forward`` applies the graph's
primitives through ``runtime.tensor.apply``, so it runs, trains, traces (``tl.trace``) and bounds
(``tl.verify.bounds``) like any torchlean model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec.constants import SQRT1_2
from ..spec.graph import Graph
from ..spec.shapes import ShapeError
from ..spec.tensorops import CAST_DTYPES
from .onnx import Builder, OnnxImportError
from .torch_io import TorchInteropError, _to_numpy, _torch

#: converter(builder, args, kwargs, node) -> IR value name, or a tuple of them (multi-output ops)
Converter = Callable[..., Any]
CONVERTERS: dict[str, Converter] = {}


class Ref(str):
    """An argument that is a graph value (its IR name), as opposed to a Python constant."""


def converter(*names: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for n in names:
            CONVERTERS[n] = fn
        return fn
    return register


def op_name(target: Any) -> str:
    """The table key of an FX node's target: ``aten.add.Tensor``; ``getitem`` for tuple indexing."""
    import operator

    if target is operator.getitem:
        return "getitem"
    return str(target)


def _shape(node: Any) -> tuple[int, ...]:
    val = node.meta.get("val")
    return tuple(int(d) for d in val.shape)


def _const_like(b: Builder, value: Any, like: str, node: Any = None) -> str:
    """A Python number as a scalar constant of ``like``'s dtype: what torch's kernel computes with.
    An integer tensor that torch promotes to float by a float number (i * 0.5) is refused: the IR's
    cast is float to float only, and casting 0.5 to int64 would make it 0."""
    dtype = b.dtypes[like]
    out = str(node.meta["val"].dtype).replace("torch.", "") if node is not None else dtype
    if np.dtype(dtype).kind != "f" and (np.dtype(out).kind == "f" or not float(value).is_integer()):
        raise ShapeError(f"an integer tensor promoted to {out} by the number {value!r} is not supported "
                         "(the IR's cast is float to float only)")
    return b.const(_kernel_number(value, dtype, "the number"), "scalar")


def _kernel_number(value: Any, dtype: str, what: str) -> np.ndarray:
    """``value`` in ``dtype``, refused where torch's kernel computes with another number: its
    float16/bfloat16 kernels compute in float32 with the number rounded to float32 (opmath), so
    a number whose float32 rounding ``dtype`` does not hold (3.3, 0.1, M_SQRT1_2) denotes another
    real there than its ``dtype`` rounding (audit66: x * 3.3 - x * fl16(3.3) is 0 here and
    -7.8e-4 x for torch)."""
    c = np.asarray(value, dtype=dtype)
    if dtype in ("float16", "bfloat16") and float(c) != float(np.float32(value)):
        raise ShapeError(f"{what} {value!r} with a {dtype} tensor: torch computes with its float32 "
                         f"value {float(np.float32(value))!r}, which {dtype} does not hold "
                         "(not supported)")
    return c


def _operand(b: Builder, v: Any, like: str, node: Any = None) -> str:
    return v if isinstance(v, Ref) else _const_like(b, v, like, node)


def _axis(d: int, rank: int) -> int:
    if not -rank <= d < max(rank, 1):
        raise ShapeError(f"dimension {d} is out of range for rank {rank}")
    return d % max(rank, 1)


# -- elementwise ---------------------------------------------------------------------------------

def _binary(prim: str, reverse: bool = False) -> Converter:
    def convert(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
        x, y = args[0], args[1]
        alpha = kw.get("alpha", args[2] if len(args) > 2 else 1)
        if reverse:
            x, y = y, x
        like = x if isinstance(x, Ref) else y
        x, y = _operand(b, x, like, node), _operand(b, y, like, node)
        if alpha != 1:  # add/sub's alpha scales the second operand first, as torch does
            y = b.emit("mul", [y, _const_like(b, alpha, y)], hint=node.name)
        if kw.get("rounding_mode") is not None:
            raise ShapeError(f"div with rounding_mode={kw['rounding_mode']!r} is not supported")
        return b.emit(prim, [x, y], hint=node.name)
    return convert


for _n, _p in (("add", "add"), ("sub", "sub"), ("mul", "mul"), ("div", "div"),
               ("maximum", "maximum"), ("minimum", "minimum")):
    converter(f"aten.{_n}.Tensor", f"aten.{_n}.Scalar", f"aten.{_n}.default")(_binary(_p))
converter("aten.rsub.Scalar", "aten.rsub.Tensor")(_binary("sub", reverse=True))


def _unary(prim: str, **attrs: Any) -> Converter:
    def convert(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
        return b.emit(prim, [args[0]], dict(attrs), hint=node.name)
    return convert


for _n in ("relu", "tanh", "sigmoid", "exp", "log", "sqrt", "neg", "abs", "erf", "silu"):
    converter(f"aten.{_n}.default")(_unary(_n))
converter("aten.rsqrt.default")(_unary("pow", exponent=-0.5))


@converter("aten.leaky_relu.default")
def _leaky_relu(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    slope = kw.get("negative_slope", args[1] if len(args) > 1 else 0.01)
    # torch computes with the slope in the tensor's dtype (float32 for float16/bfloat16 tensors)
    slope = float(_kernel_number(slope, b.dtypes[args[0]], "leaky_relu's slope"))
    return b.emit("leaky_relu", [args[0]], {"slope": slope}, hint=node.name)


@converter("aten.softplus.default")
def _softplus(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    beta = kw.get("beta", args[1] if len(args) > 1 else 1)
    if beta != 1:
        raise ShapeError(f"softplus with beta={beta} is not supported (only beta=1)")
    # torch returns x itself above ``threshold`` (20): |log(1 + e^x) - x| < e^-20 there, the one
    # place the imported meaning and torch's kernel differ (documented in TRUST_BOUNDARIES.md)
    return b.emit("softplus", [args[0]], hint=node.name)


@converter("aten.pow.Tensor_Scalar")
def _pow(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    e = args[1]
    if not isinstance(e, (int, float)) or not math.isfinite(e):
        raise ShapeError(f"pow: exponent {e!r} must be a finite number")
    return b.emit("pow", [args[0]], {"exponent": int(e) if float(e).is_integer() else float(e)},
                  hint=node.name)


@converter("aten.gelu.default")
def _gelu(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    approximate = kw.get("approximate", args[1] if len(args) > 1 else "none")
    x = args[0]
    if approximate == "tanh":
        return b.emit("gelu", [x], hint=node.name)
    if approximate != "none":
        raise ShapeError(f"gelu: approximate={approximate!r} is not supported")
    # torch's kernel: x * 0.5 * (1 + erf(x * M_SQRT1_2)), constants in x's dtype
    h = node.name
    half = b.emit("mul", [x, _const_like(b, 0.5, x)], hint=h)
    e = b.emit("erf", [b.emit("mul", [x, _const_like(b, SQRT1_2, x)], hint=h)], hint=h)
    return b.emit("mul", [half, b.emit("add", [_const_like(b, 1, x), e], hint=h)], hint=h)


def _clamp_to(b: Builder, x: str, lo: Any, hi: Any, hint: str, bound_first: bool = False) -> str:
    """maximum/minimum with the bounds: the same values either way, but the runtime's VJP sends a
    tie's cotangent to the first operand, so the operand order is torch's convention at a bound:
    clamp passes the gradient there (x first), hardtanh does not (``bound_first``: torch's
    hardtanh_backward masks x <= min_val and x >= max_val; audit57)."""
    def order(v: str, bound: Any) -> list[str]:
        c = _operand(b, bound, v)
        return [c, v] if bound_first else [v, c]

    if lo is not None:
        x = b.emit("maximum", order(x, lo), hint=hint)
    if hi is not None:
        x = b.emit("minimum", order(x, hi), hint=hint)
    return x


@converter("aten.clamp.default", "aten.clamp.Tensor")
def _clamp(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    lo = kw.get("min", args[1] if len(args) > 1 else None)
    hi = kw.get("max", args[2] if len(args) > 2 else None)
    return _clamp_to(b, args[0], lo, hi, node.name)


@converter("aten.clamp_min.default")
def _clamp_min(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    return _clamp_to(b, args[0], args[1], None, node.name)


@converter("aten.clamp_max.default")
def _clamp_max(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    return _clamp_to(b, args[0], None, args[1], node.name)


@converter("aten.hardtanh.default")
def _hardtanh(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    lo = args[1] if len(args) > 1 else -1.0
    hi = args[2] if len(args) > 2 else 1.0
    return _clamp_to(b, args[0], lo, hi, node.name, bound_first=True)


@converter("aten.where.self")
def _where(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    """A mask known at import time that selects one side everywhere is that side (broadcast to
    the result's shape); otherwise the ``where`` primitive."""
    c, x, y = args
    like = x if isinstance(x, Ref) else y
    x, y = _operand(b, x, like), _operand(b, y, like)
    mask = b.constant_of(c)
    if mask is not None and (mask.all() or not mask.any()):
        side = x if mask.all() else y
        return side if b.shape(side) == _shape(node) else b.emit(
            "broadcast_to", [side], {"shape": _shape(node)}, hint=node.name)
    return b.emit("where", [c, x, y], hint=node.name)


# -- linear algebra ------------------------------------------------------------------------------

@converter("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def _mm(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    return b.emit("matmul", [args[0], args[1]], hint=node.name)


@converter("aten.addmm.default")
def _addmm(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    """beta * bias + alpha * (x @ w): nn.Linear's form (bias + x @ w.T)."""
    bias, x, w = args[:3]
    if kw.get("beta", 1) != 1 or kw.get("alpha", 1) != 1:
        raise ShapeError("addmm with alpha or beta other than 1 is not supported")
    return b.emit("add", [b.emit("matmul", [x, w], hint=node.name), bias], hint=node.name)


# -- structural ----------------------------------------------------------------------------------

def _reshape(b: Builder, x: str, shape: tuple[int, ...], hint: str) -> str:
    """A reshape node (never folded, unlike ``Builder.reshape``: a reshaped weight must stay the
    weight, so that ``GraphModule`` trains the parameter itself)."""
    if b.shape(x) == tuple(shape):
        return x
    return b.emit("reshape", [x], {"shape": tuple(int(d) for d in shape)}, hint=hint)


def _to_shape(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    return _reshape(b, args[0], _shape(node), node.name)


converter("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default",
          "aten.unsqueeze.default", "aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default",
          "aten.flatten.using_ints", "aten.view_copy.default")(_to_shape)


@converter("aten.clone.default", "aten.alias.default", "aten.detach.default", "aten.contiguous.default",
           "aten.lift_fresh_copy.default", "aten.dropout.default")
def _identity(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    return args[0]


@converter("aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
           "aten.sym_constrain_range_for_size.default")
def _assertion(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> None:
    """A check torch.export records about static metadata (dtype, shape): no value, nothing to do."""
    return None


@converter("aten._to_copy.default")
def _to_copy(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    want = str(node.meta["val"].dtype).replace("torch.", "")
    have = b.dtypes[args[0]]
    if want == have:
        return args[0]
    c = b.constant_of(args[0])
    if want in CAST_DTYPES and have in CAST_DTYPES and c is None:
        return b.emit("cast", [args[0]], {"dtype": want}, hint=node.name)  # float to float
    if c is not None and want in ("float16", "float32", "float64") and have in CAST_DTYPES:
        if have == "float64" and want == "float16":
            # torch converts a double to half through float (c10::Half(float)): two roundings,
            # not numpy's one, next to a float16 tie (audit66); the same two roundings here
            return b.const(c.astype(np.float32).astype(np.float16), node.name)
        with np.errstate(over="ignore"):  # (numpy's astype rounds to nearest even, as torch)
            return b.const(c.astype(want), node.name)
    raise ShapeError(f"a dtype conversion ({have} to {want}) is not supported")


@converter("aten.expand.default")
def _expand(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    shape = _shape(node)
    if b.shape(args[0]) == shape:
        return args[0]
    return b.emit("broadcast_to", [args[0]], {"shape": shape}, hint=node.name)


@converter("aten.permute.default")
def _permute(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    rank = len(b.shape(args[0]))
    axes = tuple(_axis(int(d), rank) for d in args[1])
    return b.emit("transpose", [args[0]], {"axes": axes}, hint=node.name)


@converter("aten.t.default", "aten.transpose.int")
def _transpose(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    rank = len(b.shape(args[0]))
    if rank < 2:
        return args[0]
    d0, d1 = (int(args[1]), int(args[2])) if len(args) > 2 else (0, 1)
    axes = list(range(rank))
    i, j = _axis(d0, rank), _axis(d1, rank)
    axes[i], axes[j] = axes[j], axes[i]
    return b.emit("transpose", [args[0]], {"axes": tuple(axes)}, hint=node.name)


@converter("aten.cat.default")
def _cat(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    parts = list(args[0])
    dim = int(kw.get("dim", args[1] if len(args) > 1 else 0))
    return b.emit("concat", parts, {"axis": _axis(dim, len(b.shape(parts[0])))}, hint=node.name)


def _slice_index(shape: tuple[int, ...], dim: int, start: Any, end: Any, step: int) -> tuple:
    index = [(0, d, 1) for d in shape]
    index[dim] = slice(start, end, step).indices(shape[dim])
    return tuple(index)


@converter("aten.slice.Tensor")
def _slice(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    shape = b.shape(args[0])
    dim = _axis(int(args[1]) if len(args) > 1 else 0, len(shape))
    start = args[2] if len(args) > 2 else None
    end = args[3] if len(args) > 3 else None
    step = int(args[4]) if len(args) > 4 else 1
    if step < 1:
        raise ShapeError(f"slice with step {step} is not supported")
    index = _slice_index(shape, dim, start, end, step)
    if index == tuple((0, d, 1) for d in shape):
        return args[0]
    return b.emit("slice", [args[0]], {"index": index}, hint=node.name)


@converter("aten.select.int")
def _select(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    shape = b.shape(args[0])
    dim = _axis(int(args[1]), len(shape))
    i = int(args[2]) % shape[dim]
    s = b.emit("slice", [args[0]], {"index": _slice_index(shape, dim, i, i + 1, 1)}, hint=node.name)
    return _reshape(b, s, _shape(node), node.name)


@converter("aten.embedding.default")
def _embedding(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
    """aten.embedding(weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False).
    padding_idx and scale_grad_by_freq change only torch's backward (no gradient to the padding
    row; gradients divided by index counts), which is then not the derivative of the forward: the
    primitive's VJP, and every gradient claim about it, is that derivative, so they are refused
    (audit57: the imported model's weight gradient differed from torch's on those rows)."""
    pad = kw.get("padding_idx", args[2] if len(args) > 2 else -1)
    freq = kw.get("scale_grad_by_freq", args[3] if len(args) > 3 else False)
    if (pad is not None and pad != -1) or freq:
        raise ShapeError(f"embedding with padding_idx={pad} or scale_grad_by_freq={freq} is not "
                         "supported (torch's gradient there is not the forward's derivative)")
    return b.emit("embedding", [args[0], args[1]], hint=node.name)


# -- reductions and softmax ----------------------------------------------------------------------

def _reduce(prim: str) -> Converter:
    def convert(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
        rank = len(b.shape(args[0]))
        dims = args[1] if len(args) > 1 and args[1] is not None else list(range(rank))
        dims = [dims] if isinstance(dims, int) else list(dims)
        keep = bool(kw.get("keepdim", args[2] if len(args) > 2 else False))
        if kw.get("dtype") is not None:
            raise ShapeError(f"{prim} with a dtype argument is not supported")
        axes = tuple(sorted({_axis(int(d), rank) for d in (dims or range(rank))}))
        return b.emit(prim, [args[0]], {"axes": axes, "keepdims": keep}, hint=node.name)
    return convert


converter("aten.mean.dim", "aten.mean.default")(_reduce("mean"))
converter("aten.sum.dim_IntList", "aten.sum.default")(_reduce("sum"))
converter("aten.amax.default")(_reduce("max"))


def _softmax(prim: str) -> Converter:
    def convert(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> str:
        axis = _axis(int(args[1]), len(b.shape(args[0])))
        return b.emit(prim, [args[0]], {"axis": axis}, hint=node.name)
    return convert


converter("aten._softmax.default")(_softmax("softmax"))
converter("aten._log_softmax.default")(_softmax("log_softmax"))


@converter("getitem")
def _getitem(b: Builder, args: list[Any], kw: dict[str, Any], node: Any) -> Any:
    value = args[0][args[1]]
    if value is None:
        raise ShapeError(f"{node.name}: output {args[1]} of {node.args[0].name} is not supported")
    return value


from . import _torch_nn  # noqa: E402,F401  (registers the mask, convolution, pooling, norm converters)

# -- the walk ------------------------------------------------------------------------------------

def _examples(example: Any) -> tuple[Any, ...]:
    """The example as a tuple of torch tensors (a tuple or list means several inputs)."""
    torch = _torch()
    xs = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    return tuple(x if isinstance(x, torch.Tensor) else torch.as_tensor(_to_numpy(x)) for x in xs)


def _export(module: Any, example: Any) -> Any:
    torch = _torch()
    try:
        ep = torch.export.export(module, _examples(example))
        return ep.run_decompositions()
    except Exception as e:  # torch raises many kinds (Unsupported, UserError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise TorchInteropError(f"torch.export could not capture {type(module).__name__}: "
                                f"{type(e).__name__}: {first}") from None


def unsupported_ops(ep: Any) -> list[str]:
    """The aten ops (table keys) of an ExportedProgram that have no converter, sorted."""
    return sorted({op_name(n.target) for n in ep.graph.nodes
                   if n.op == "call_function" and op_name(n.target) not in CONVERTERS})


def export_graph(module: Any, example: Any) -> tuple[Graph, set[str], set[str]]:
    """(checked IR graph, parameter names, buffer names) of ``module`` run on ``example`` (one
    input, or a tuple of them: graph inputs ``input0``, ``input1``, ...).

    The module is exported as it is (put it in ``eval()`` first: batch norm in training mode
    exports to ops this table does not take). Errors: ``TorchInteropError`` in one line (every
    unsupported aten op named at once)."""
    torch = _torch()
    ep = _export(module, example)
    bad = unsupported_ops(ep)
    if bad:
        hint = " (the module is in training mode: call .eval() first)" if getattr(
            module, "training", False) and any("norm" in op or "dropout" in op for op in bad) else ""
        raise TorchInteropError("unsupported aten op(s): " + ", ".join(bad) + hint)
    sig = ep.graph_signature
    kinds = {s.arg.name: s for s in sig.input_specs}
    mutated = sorted(str(s.target) for s in sig.output_specs if s.kind.name != "USER_OUTPUT")
    if mutated:  # e.g. running statistics updated in forward: the graph would drop the update
        raise TorchInteropError(f"{type(module).__name__} updates state in forward ({', '.join(mutated)}); "
                                "only functions of the input are supported")
    user = [s.arg.name for s in sig.output_specs]
    state = ep.state_dict
    params, buffers = set(), set()
    val = _example_dtype(example)
    b = Builder(0, val)
    env: dict[str, Any] = {}
    n_inputs = 0
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            spec = kinds[node.name]
            kind = spec.kind.name
            if kind == "USER_INPUT":
                name = f"input{n_inputs}"
                n_inputs += 1
                t = node.meta["val"]
                b.add_input(name, tuple(int(d) for d in t.shape), str(t.dtype).replace("torch.", ""))
                env[node.name] = Ref(name)
                continue
            target = spec.target
            tensor = state[target] if target in state else ep.constants[target]
            b.add_initializer(target, _to_numpy(tensor))
            (params if kind == "PARAMETER" else buffers).add(target)
            env[node.name] = Ref(target)
        elif node.op == "call_function":
            args = _map(node.args, env)
            kw = {k: _map(v, env) for k, v in node.kwargs.items()}
            b.made = set()
            try:
                out = CONVERTERS[op_name(node.target)](b, list(args), kw, node)
            except (ShapeError, ValueError, OnnxImportError) as e:
                raise TorchInteropError(f"{op_name(node.target)} ({node.name}): "
                                        f"{str(e).splitlines()[0]}") from None
            env[node.name] = tuple(_ref(o) for o in out) if isinstance(out, tuple) else _ref(out)
        elif node.op == "output":
            outs = []
            for o in _flat_outputs(node.args[0]):
                if isinstance(o, torch.fx.Node) and o.name not in user:
                    continue
                ir = env[o.name] if isinstance(o, torch.fx.Node) else None
                if not isinstance(ir, str):
                    raise TorchInteropError(f"output {o} is not a tensor computed by the module")
                if ir in b.consts or ir in {v.name for v in b.graph.inputs} or ir in outs:
                    ir = b.emit("reshape", [ir], {"shape": b.shape(ir)}, hint="output")
                outs.append(ir)
            b.graph.outputs = outs
    graph = b.graph
    used = set(graph.constants)
    return graph.check(), params & used, buffers & used


def _example_dtype(example: Any) -> str:
    floats = [str(_to_numpy(x).dtype) for x in _examples(example) if _to_numpy(x).dtype.kind == "f"]
    return floats[0] if floats else "float32"


def _ref(o: Any) -> Any:
    return Ref(o) if isinstance(o, str) else o


def _map(a: Any, env: dict[str, Any]) -> Any:
    import torch

    if isinstance(a, torch.fx.Node):
        return env[a.name]
    if isinstance(a, (list, tuple)):
        return type(a)(_map(v, env) for v in a) if isinstance(a, tuple) else [_map(v, env) for v in a]
    return a


def _flat_outputs(a: Any) -> list[Any]:
    if isinstance(a, (list, tuple)):
        return [o for v in a for o in _flat_outputs(v)]
    return [a]
