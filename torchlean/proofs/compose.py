"""Compositional model obligations (issue 17): per-node VJP claims plus a chain-rule check.

A model's backward pass equals the derivative of its spec forward when (a) every node's VJP rule
is correct for that node's shapes and attributes, and its kernel equals the spec meaning there
(``forward.<prim>.n<key>`` and ``autograd.<prim>.n<key>``: ``autograd.rule_obligations`` at the
node's case), and (b) the tape composes the nodes' VJPs by the chain rule. (b) is the
``composition`` certificate (``certificates/tape.py``): the model is traced once on numpy (for its
graph: shapes, attributes, integer inputs, memory layouts), then the runtime's own backward
(``runtime.autograd._propagate``) is run with every node's VJP replaced by a formal one that
returns opaque atoms, so the trace records which atoms the runtime summed into each cotangent.

Node obligations are keyed by (primitive, shapes, attributes, integer inputs, layout), so models
sharing a layer shape share its proof (deduplicated across models by name and hash). Unary
elementwise primitives are keyed at one entry, shape (1,): their kernel and VJP apply one scalar
function entrywise (``ELEMENTWISE``), so the scalar identity covers every shape; ``where`` with a
mask of its branches' shape at two entries holding both mask values (``SELECT``), so its claim
covers every mask, as a recorded backward's masks need (audit44). Any other integer input is held
by value and must be the same at every point (the second point compares every node's key).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .adjoint import FAMILY as ADJOINT_FAMILY
from .adjoint import decision_text, node_obligation
from .obligation import Obligation

#: unary primitives whose kernel and VJP act entry by entry with one scalar function (and only
#: scalar attributes): the claim at a single entry is the claim at every shape
ELEMENTWISE = frozenset({"neg", "exp", "log", "sqrt", "tanh", "erf", "sigmoid", "gelu", "silu", "softplus",
                         "relu", "abs", "leaky_relu", "pow", "cast"})

#: primitives whose kernel and VJP select entry by entry by a boolean mask (``where``: out_i = a_i if
#: c_i else b_i, the cotangent g_i sent to a or b by c_i, ``sum_to`` the identity at equal shapes):
#: where the mask and both branches have one shape, the claim at two entries holding both mask
#: values is the claim at every shape and every mask. A mask a recorded backward makes (relu's
#: ``x > 0`` under ``create_graph=True``) differs from point to point, so its node must have such a
#: claim (audit44)
SELECT = frozenset({"where"})

#: pooling acts on each (batch, channel) plane alone with the same window arithmetic: the claim
#: on one plane (N = C = 1) is the claim for every N and C
PER_CHANNEL = frozenset({"max_pool2d", "avg_pool2d"})

def _row_wise(prim: str, attrs: dict[str, Any], shapes: list[Any]) -> bool:
    """layer_norm (over its trailing ``normalized_ndim`` axes) and softmax / log_softmax over the
    last axis act on each row alone with the same formula: the leading axes are batch axes, and
    the claim on one row (leading sizes 1) is the claim for every leading shape."""
    if not shapes or shapes[0] is None:
        return False
    if prim == "layer_norm":
        return True
    return prim in ("softmax", "log_softmax") and attrs.get("axis", -1) in (-1, len(shapes[0]) - 1)


#: node obligation name -> obligation, filled as models are traced (``check_one`` resolves a
#: composition's node obligations here)
NODES: dict[str, Obligation] = {}


class _Formal:
    """A formal cotangent: the multiset of atoms (node, input) summed into it."""

    __slots__ = ("atoms",)

    def __init__(self, atoms: tuple[tuple[int, int], ...]):
        self.atoms = atoms

    def __add__(self, other: Any) -> _Formal:
        return _Formal(self.atoms + _unwrap(other).atoms)

    __radd__ = __add__


def _unwrap(g: Any) -> _Formal:
    if isinstance(g, np.ndarray):  # the runtime wraps non-arrays in 0-d object arrays
        g = g.item()
    if not isinstance(g, _Formal):
        raise TypeError(f"formal backward: got {type(g).__name__}, not a formal cotangent")
    return g


def _case_of(node: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(key, case fields, description) for one tape node."""
    prim = node.name
    shapes: list[list[int] | None] = []
    ints: dict[int, Any] = {}
    column_major: list[int] = []
    for i, t in enumerate(node.inputs):
        d = np.asarray(t.data)
        if d.dtype.kind in "iub":  # indices, masks: part of the case, as values
            shapes.append(None)
            ints[i] = d.tolist()
        else:
            shapes.append(list(d.shape))
            if d.ndim >= 2 and d.flags.f_contiguous and not d.flags.c_contiguous:
                column_major.append(i)
    from ..runtime.rules import shipped

    # the reductions below rest on what torchlean's own rules are (entrywise, per plane, per row);
    # a replaced rule is keyed, and proved, at the node's real shapes (audit29)
    own = shipped(prim, node.rule)
    if own and prim in ELEMENTWISE:
        shapes, column_major = [[1]], []
    elif own and _select_entrywise(prim, node.inputs, shapes):
        shapes, ints, column_major = [None, [2], [2]], {0: [True, False]}, []
    elif own and prim in PER_CHANNEL and shapes[0] is not None and len(shapes[0]) == 4:
        shapes = [[1, 1, *shapes[0][2:]]]
    elif own and _row_wise(prim, node.attrs, shapes):
        k = int(node.attrs.get("normalized_ndim", 1))
        shapes = [[*([1] * (len(shapes[0]) - k)), *shapes[0][-k:]], *shapes[1:]]
    attrs = {k: node.attrs[k] for k in sorted(node.attrs)}
    fields = {"shapes": shapes, "attrs": attrs, "ints": ints, "column_major": column_major}
    return (*_key(prim, fields),)


def _select_entrywise(prim: str, inputs: Any, shapes: list[Any]) -> bool:
    """A ``SELECT`` node whose mask and two float branches have one shape. (An integer mask too:
    the kernel, its VJP and the spec's meaning read each entry by its truth value only.)"""
    if prim not in SELECT or len(inputs) != 3 or shapes[0] is not None or None in shapes[1:]:
        return False
    return list(np.shape(inputs[0].data)) == shapes[1] == shapes[2]


def _key(prim: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(key, fields, description) of a node case given by its fields."""
    desc = {"prim": prim, "shapes": fields["shapes"],
            "attrs": {k: repr(v) for k, v in sorted(fields["attrs"].items())},
            "ints": {str(k): v for k, v in fields["ints"].items()}, "column_major": fields["column_major"]}
    key = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:10]
    return f"{prim}.n{key}", fields, desc


def shapes_covered(ob: Obligation) -> tuple[bool, str]:
    """(shape-generic?, for which shapes the claim of a primitive or node obligation holds)."""
    from ..runtime.rules import shipped

    prim = ob.subject.split(":", 1)[1] if ob.subject.startswith(("primitive:", "node:")) else ""
    shapes = ob.data.get("shapes")
    if prim and ob.kind in ("forward", "autograd", "windows", "channels", "rows") and not shipped(prim):
        # a replaced rule: what its claim says for other shapes is not known (audit29)
        return False, f"shapes {shapes} only" if shapes is not None else ""
    if ob.kind == "adjoint" and prim:
        conds = [decision_text(d) for d in ob.data["decisions"] if len(d) == 4 or d[0] != d[1]]
        return True, f"every size of the class {ob.data['class']}" + (
            f" with {', '.join(conds)}" if conds else "") + " (each symbol any integer >= 1)"
    if ob.kind in ("terms", "channels", "rows"):
        return False, f"shapes {ob.data['shapes']} only (decided on terms" + (
            ", from one element's claim)" if ob.kind in ("channels", "rows") else ")")
    if ob.kind == "windows":
        return False, f"every batch and channel count at {ob.data['plane']} planes, these attributes, " \
            "from one window's claim"
    if not prim or shapes is None or ob.kind not in ("forward", "autograd"):
        return False, ""
    if prim in ELEMENTWISE and shapes == [[1]]:
        return True, "every shape (entrywise: one scalar identity)"
    if ob.subject.startswith("node:") and prim in SELECT and shapes == [None, [2], [2]]:
        return True, "every shape and every mask (entrywise selection: both mask values)"
    if prim in PER_CHANNEL:
        return False, f"every batch and channel count at {shapes[0][2:]} planes, these attributes"
    if ob.subject.startswith("node:") and _row_wise(prim, {}, shapes) and shapes[0][0] == 1:
        return False, f"every leading shape, rows as in {shapes}"
    return False, f"shapes {shapes} only"


def node_obligations(prim: str, key: str, fields: dict[str, Any]) -> list[Obligation]:
    """The forward and autograd obligations of one node case (domain and hints as the library's)."""
    from ..runtime.rules import RULES, shipped
    from ..spec.primitives import PRIMITIVES
    from . import rows, terms, windows
    from .autograd import CASES, Case, rule_obligations

    # a ``windows`` statement is about one (1, 1, H, W) plane: it stands for every batch and channel
    # count only for torchlean's own rule (per plane by its code); a replaced rule, at N = C = 1 only
    # (``channels`` and ``rows`` statements are derived at the node's own shapes)
    plane = shipped(prim) or (bool(fields["shapes"]) and fields["shapes"][0] is not None
                              and list(fields["shapes"][0][:2]) == [1, 1])
    if plane and windows.applies(prim, fields["shapes"], fields["attrs"]):
        # a pooling plane: one window's fixed-shape claims, and the checker's window-by-window
        # statement that the plane is that window at every position (cost independent of H, W
        # for the solver; linear for the checker)
        wkey, wfields, _ = _key(prim, windows.window_fields(fields))
        one = node_obligations(prim, wkey, wfields)
        return one + windows.obligations(prim, fields, one)
    if terms.applies_channels(prim, fields):
        # batch_norm: the forward claim decided on terms, the autograd claim from one element's
        ekey, efields, _ = _key(prim, terms.element_fields(fields))
        (element,) = [ob for ob in node_obligations(prim, ekey, efields) if ob.kind == "autograd"]
        return [element, terms.forward_obligation(prim, fields),
                terms.channels_obligation(prim, fields, element)]
    by_rows = rows.applies(prim, fields)
    if by_rows and terms.applies_forward(prim, fields):
        # layer_norm: the forward claim decided on terms, the VJP row by row from one element's claim
        return [terms.forward_obligation(prim, fields), *rows.obligations(prim, fields)]
    base = (CASES.get(prim) or [Case(())])[0]
    case = Case(tuple(tuple(s) if s is not None else None for s in fields["shapes"]), dict(fields["attrs"]),
                {i: np.asarray(v) for i, v in fields["ints"].items()}, base.domain, base.words, base.hints,
                tuple(fields["column_major"]), base.opaque_max, base.grad_domain)
    rule = RULES[prim]
    # the VJP proved at every size of the node's class, where the node's case is in one
    # (integer inputs by their shape: the class's claim holds for all their values)
    shapes = [s if s is not None else list(np.shape(fields["ints"][i]))
              for i, s in enumerate(fields["shapes"])]
    generic = node_obligation(prim, shapes, fields["attrs"], fields["column_major"]) \
        if prim in ADJOINT_FAMILY else None
    if generic is not None and terms.applies_forward(prim, fields):
        # a linear kernel (conv2d): its forward claim is polynomial identities the checker decides
        return [terms.forward_obligation(prim, fields), generic]
    obs = list(rule_obligations(prim, rule.forward, rule.vjp, PRIMITIVES[prim].sympy, case,
                                subject=f"node:{prim}", tag=key[len(prim):],
                                autograd=generic is None and not by_rows))
    # softmax: the forward claim fixed-shape (the row maximum opaque), the VJP row by row
    return obs + ([generic] if generic is not None else []) + (
        rows.obligations(prim, fields) if by_rows else [])


def trace(build: Callable[[], Any], input_shape: tuple[int, ...],
          ) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, dict[str, Any], dict[str, Any]]]]:
    """(graph, formal trace, node cases) of the model ``build()`` at ``input_shape``."""
    from ..runtime import autograd as ag
    from ..runtime.rules import Rule, engine_shipped
    from ..runtime.tensor import Tensor
    from .obligation import NoProofCase

    if not engine_shipped():  # (audit42) the claim reads _propagate; the leaf write is reviewed code
        raise NoProofCase("the runtime's backward engine (autograd.backward / grad, Tensor.backward, or "
                          "something they read) is not torchlean's: a gradient claim covers the shipped one")
    model = build()
    if hasattr(model, "eval"):
        model.eval()  # dropout off: the claim is about the deterministic forward
    params = list(model.parameters()) if hasattr(model, "parameters") else []
    for p in params:
        p.requires_grad, p.grad = True, None
    dtype = params[0].data.dtype if params else np.float64
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal(input_shape).astype(dtype), requires_grad=True)
    # the claim is about the model's tape at every input and weight value, so it is traced
    # faithfully with both as values nothing may branch on: Python control flow on them (``if
    # x.sum() > 0``, ``float(w)``), a dependent mask or copy made outside the primitives, or a
    # random draw would make the tape one path's, whose nodes alone get proved (audit35)
    out, path = _faithful_forward(model, x)
    _same_path_elsewhere(model, params, x, path)
    if out._node is None:
        raise ValueError("@verified model: the output does not depend on the input or the weights")
    # the graph, by our own walk over the tape (post-order: inputs before the nodes using them)
    vid: dict[int, int] = {}
    leaves: list[int] = []
    nodes: list[dict[str, Any]] = []
    tensors: list[Any] = []
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for leaf in [x, *params]:
        vid[id(leaf)] = len(vid)
        leaves.append(vid[id(leaf)])
    stack: list[tuple[Any, bool]] = [(out, False)]
    while stack:
        t, expanded = stack.pop()
        if id(t) in vid:
            continue
        if t._node is None:  # a tensor carrying a gradient but no node: a leaf we were not given
            vid[id(t)] = len(vid)
            leaves.append(vid[id(t)])
            continue
        if not expanded:
            stack.append((t, True))
            stack.extend((i, False) for i in reversed(t._node.inputs) if i.requires_grad and id(i) not in vid)
            continue
        # (every node here ran the table's rule now: ``_case_keys`` checked this tape's nodes)
        if _mask_by_value(t._node):
            from .obligation import NoProofCase

            raise NoProofCase(
                f"@verified model {type(model).__name__}: its gradient claim holds for every input and "
                f"weight value, but a recorded backward's mask (made from the traced point's values) "
                f"reaches a {t._node.name} node whose claim is about that mask's values only (a "
                f"replaced rule, or operands of different shapes)")
        key, fields, _ = _case_of(t._node)
        vid[id(t)] = len(vid)
        nodes.append({"prim": t._node.name, "key": key, "output": vid[id(t)],
                      "inputs": [vid[id(i)] if i.requires_grad else None for i in t._node.inputs]})
        tensors.append(t)
        cases.append((key, fields, {}))
    graph = {"values": len(vid), "leaves": leaves, "root": vid[id(out)], "nodes": nodes}
    # the runtime's backward with formal VJPs: which atoms it sums into each cotangent
    calls: list[list[Any]] = []
    saved = [t._node.rule for t in tensors]

    def formal(k: int, node: Any) -> Callable[..., Any]:
        def vjp(xp: Any, g: Any, out: Any, *inputs: Any, **attrs: Any) -> tuple[Any, ...]:
            calls.append([k, [list(a) for a in _unwrap(g).atoms]])
            return tuple(_Formal(((k, j),)) if i.requires_grad else None for j, i in enumerate(node.inputs))
        return vjp

    try:
        for k, t in enumerate(tensors):
            t._node.rule = Rule(t._node.name, saved[k].forward, formal(k, t._node))
        cot = ag._propagate([out], [_Formal(((-1, 0),))])
    finally:
        for k, t in enumerate(tensors):
            t._node.rule = saved[k]
    by_vid = {vid[id(t)]: t for t in [x, *params]}
    grads = {str(v): [list(a) for a in _unwrap(cot[id(by_vid[v])]).atoms]
             for v in leaves if v in by_vid and id(by_vid[v]) in cot}
    return graph, {"calls": calls, "grads": grads}, cases


def _mask_by_value(node: Any) -> bool:
    """Whether ``node`` reads a mask that a recorded backward computed from the point's values
    (``tape_ns.recorded_mask``) while its case holds integer inputs by value: its claim would be
    the traced point's mask only (audit44). torchlean's ``where`` at one shape is keyed for every
    mask (``SELECT``)."""
    from ..runtime.rules import shipped
    from ..runtime.tape_ns import recorded_mask

    if not any(recorded_mask(i) for i in node.inputs):
        return False
    shapes = [None if np.asarray(i.data).dtype.kind in "iub" else list(np.shape(i.data)) for i in node.inputs]
    return not (shipped(node.name, node.rule) and _select_entrywise(node.name, node.inputs, shapes))


def _case_keys(out: Any) -> list[str]:
    """The node case keys of ``out``'s tape, in tape order. A node that ran another rule than the
    table's now is refused here, before a key built on that rule is compared: the node obligations
    are derived from the table's rule, so it must be the one that ran (``trace`` relies on it)."""
    from ..runtime.autograd import tape_order
    from ..runtime.rules import RULES

    nodes = [t._node for t in tape_order([out]) if t._node is not None]
    for node in nodes:
        if node.rule is not RULES.get(node.name):
            raise ValueError(f"@verified model: node {node.name} ran a rule that is not "
                             f"RULES[{node.name!r}] now (the table changed after the forward)")
    return [_case_of(node)[0] for node in nodes]


def _faithful_forward(model: Any, x: Any) -> tuple[Any, list[Any]]:
    """(output, the path's structure: nodes and integer constants' shapes) of ``model(x)`` under the
    gradient claim's faithful tracer; a NoProofCase (bad input) where the model reads or copies an
    input- or weight-dependent value outside the primitives, or draws random numbers."""
    from ..runtime.trace import TraceError, gradient_tracer, tracing
    from .obligation import NoProofCase

    tracer = gradient_tracer(model)
    tracer.add_input(x, "input0")
    try:
        with tracing(tracer):
            out = model(x)
    except TraceError as e:  # bad input (exit 2, pytest's usage error), never one path's pass
        raise NoProofCase(f"@verified model {type(model).__name__}: its gradient claim holds for "
                          f"every input and weight value, but {e}") from None
    path = [(n.op, n.inputs, n.output, repr(n.attrs)) for n in tracer.nodes]
    # integer constants by shape, not value: a recorded VJP's selection mask (max_pool2d's, relu's,
    # in a model holding a gradient: tl.autograd.grad(create_graph=True)) is made by the
    # runtime's own rules from the point's values, and differs from point to point
    path += [(k, v.shape, v.dtype.str) for k, v in sorted(tracer.constants.items()) if v.dtype.kind in "iub"]
    # and each node's case by key: an index or mask Python made from raw ``.data`` values (no hook
    # sees the read) is held by value in its node's case, which then differs at the second point;
    # a recorded backward's masks are keyed for every value where their claim covers it (audit44)
    path += _case_keys(out)
    return out, path


def _same_path_elsewhere(model: Any, params: list[Any], x: Any, path: list[Any]) -> None:
    """The model run again at a second seeded input and second weights must record the same nodes:
    Python reading an input's or a weight's raw ``.data`` (which no tracer sees) to choose its
    primitives is caught where the two points take different branches. The weights are restored."""
    from ..runtime.tensor import Tensor
    from .obligation import NoProofCase

    rng = np.random.default_rng(1)
    x2 = Tensor(rng.standard_normal(x.shape).astype(x.data.dtype), requires_grad=True)
    saved = [p.data for p in params]
    try:
        for p in params:  # each weight scaled and moved by its own draw (zeros moved too)
            noise = rng.uniform(0.5, 1.5, p.shape) * p.data + 0.1 * rng.standard_normal(p.shape)
            p.data = np.asarray(noise, dtype=p.data.dtype)
        with np.errstate(all="ignore"):
            _, other = _faithful_forward(model, x2)
    finally:
        for p, d in zip(params, saved):
            p.data, p.grad = d, None
    def shapes_only(p: list[Any]) -> list[Any]:
        return [e for e in p if not isinstance(e, str)]

    if other != path and shapes_only(other) == shapes_only(path):
        raise NoProofCase(f"@verified model {type(model).__name__}: its gradient claim holds for every "
                          "input and weight value, but a node's integer input (an index or a mask) has other "
                          "values at a second input and weights (made in Python from raw .data values?), "
                          "and its claim is about the traced values: make it a constant of the model")
    if other != path:
        raise NoProofCase(f"@verified model {type(model).__name__}: its gradient claim holds for every "
                          "input and weight value, but the model takes another path at a second input "
                          "and weights (Python control flow on raw .data values?): write it with "
                          "tensor operations")


def model_obligations(name: str, build: Callable[[], Any], input_shape: tuple[int, ...], *,
                      traced: Any = None, derived: dict[str, list[Obligation]] | None = None
                      ) -> Iterator[Obligation]:
    """``model.<name>`` (kind ``composition``) and the node obligations it rests on. ``traced``:
    ``trace(build, input_shape)`` already made; ``derived``: node case key -> its obligations, for
    the cases already derived (the others are derived here and added to it)."""
    from .autograd import exact_floats

    graph, tr, cases = traced if traced is not None else trace(build, input_shape)
    seen: dict[str, list[Obligation]] = derived if derived is not None else {}
    for key, fields, _ in cases:
        if key not in seen:
            with exact_floats():
                seen[key] = node_obligations(key.split(".n")[0], key, fields)
    lines = [f"model {name}, input {list(input_shape)}, leaves {graph['leaves']}, root v{graph['root']}"]
    for node in graph["nodes"]:
        # the node's two obligations, by name (the autograd one may be its class's generic one)
        obs = seen[node["key"]]
        grad_kind = "adjoint" if any(ob.kind == "adjoint" for ob in obs) else "autograd"
        # a pooling plane's claims are its ``windows`` obligations (they name the one window's)
        planes = {ob.data["part"]: ob.name for ob in obs
                  if ob.kind in ("windows", "terms", "channels", "rows")}
        node["forward"], node["autograd"] = (planes.get(part) or next(ob.name for ob in obs if ob.kind == k)
                                             for part, k in (("forward", "forward"), ("autograd", grad_kind)))
        args = ", ".join("const" if v is None else f"v{v}" for v in node["inputs"])
        lines.append(f"v{node['output']} = {node['prim']}({args})  by {node['forward']}, {node['autograd']}")
    unique = {ob.name: ob for obs in seen.values() for ob in obs}  # node cases of one class share one
    requires = sorted(unique)
    yield Obligation(
        "composition", f"model:{name}", f"model.{name}", "\n".join(lines) + "\n",
        f"the tape's backward pass of {name} at input {list(input_shape)} composes its {len(graph['nodes'])} "
        f"nodes' VJPs by the chain rule; each node's VJP and kernel proved at its shapes "
        f"({len(seen)} distinct node cases)", {"graph": graph, "trace": tr, "requires": requires})
    for ob in unique.values():
        NODES[ob.name] = ob
        yield ob
