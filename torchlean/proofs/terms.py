"""conv2d's forward claim and batch_norm's claims at any size without a solver on the plane (issue 18):
the ``terms`` and ``channels`` obligations.

The runtime kernel (and VJP) and the spec meaning run on terms (``windows.Term``: each value recorded
exactly as the code builds it; ``windows.TXP`` / ``windows.TM``) and the checker decides the claim
(``certificates/terms.py``):
- ``forward.<prim>.t<key>`` (kind ``terms``, the primitives of ``FORWARD``): kernel = spec at every output
  entry, as polynomial identities over the inputs' entries (padding taps are the constant 0; ``sqrt``
  and ``div`` opaque). This is the node's forward claim itself: no solver, no other obligation.
- ``autograd.batch_norm.e<key>`` (kind ``channels``): the plane's spec and VJP are one element's
  (batch_norm at (1, 1, 1...)) at every position, its parameter VJPs the sums over each channel's
  positions; it rests on the element's fixed-shape autograd claim (``data["requires"]``), solved
  and checked as every fixed-shape claim, whose cost does not grow with the plane.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from .obligation import Obligation
from .windows import TM, TXP, Term, encoder

#: primitives whose forward claim is a ``terms`` statement (their kernels use only + - * / sqrt and
#: numpy's moves and sums on the terms). The data-movement and linear ones (reshape ... mean) were
#: fixed-shape solver claims: hundreds of kB of SMT-LIB at a transformer's shapes, each a solver run,
#: a certificate search and a refutation replay, where the kernel builds exactly the spec's terms
FORWARD = frozenset({"conv2d", "batch_norm", "matmul", "layer_norm", "add", "sub", "mul", "reshape",
                     "transpose", "slice", "concat", "flatten", "sum", "mean"})


def _leaves(name: str, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for i in np.ndindex(shape):
        out[i] = Term("leaf", name, *i)
    return out


def applies_forward(prim: str, fields: dict[str, Any]) -> bool:
    """Whether the node case's forward claim is a ``terms`` statement (real inputs, known shapes)."""
    return prim in FORWARD and not fields["ints"] and all(s is not None for s in fields["shapes"])


def applies_channels(prim: str, fields: dict[str, Any]) -> bool:
    """Whether the node case's autograd claim is a ``channels`` statement: batch_norm on more than
    one element."""
    s = fields["shapes"]
    return prim == "batch_norm" and applies_forward(prim, fields) and len(s[0]) >= 2 \
        and any(n != 1 for n in s[0])


def element_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The one-element node case: the same attributes at input (1, 1, 1...), parameters (1,)."""
    s = fields["shapes"]
    return {**fields, "shapes": [[1] * len(s[0])] + [[1]] * (len(s) - 1)}


def _run(prim: str, shapes: list[Any], attrs: dict[str, Any], vjp: bool, column_major: Any = ()
         ) -> tuple[Any, Any, Any]:
    from ..runtime.rules import RULES
    from ..spec.primitives import PRIMITIVES

    # operands stored column-major at run time are so here too (a rule may branch on the layout)
    xs = [_leaves(f"in{k}", tuple(s)) for k, s in enumerate(shapes)]
    xs = [np.asfortranarray(x) if k in column_major else x for k, x in enumerate(xs)]
    rule, spec = RULES[prim], PRIMITIVES[prim]
    out = np.asarray(rule.forward(TXP, *xs, **attrs), dtype=object)
    mean = np.asarray(spec.meaning(TM, *xs, **spec.check_attrs(attrs)), dtype=object)
    if out.shape != mean.shape:
        raise ValueError(f"{prim}: kernel shape {out.shape} differs from spec shape {mean.shape}")
    grads = rule.vjp(TXP, _leaves("g", out.shape), out, *xs, **attrs) if vjp else None
    return out, mean, grads


def forward_statement(prim: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The ``terms`` statement: the kernel's entries equal the spec's at the node's shapes."""
    out, mean, _ = _run(prim, fields["shapes"], dict(fields["attrs"]), False, tuple(fields["column_major"]))
    nodes, put = encoder()
    pairs = [[put(a), put(b)] for a, b in zip(out.flat, mean.flat)]
    return {"kind": "terms", "nodes": nodes, "equal": pairs}


def channels_statement(prim: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The ``channels`` statement of a per-channel pointwise primitive (batch_norm) at the node's shapes."""
    attrs = dict(fields["attrs"])
    nodes, put = encoder()
    _, ws, wg = _run(prim, element_fields(fields)["shapes"], attrs, vjp=True)
    window = {"spec": put(ws.flat[0]), "vjp": [put(np.asarray(v, dtype=object).flat[0]) for v in wg]}
    _, ps, pg = _run(prim, fields["shapes"], attrs, vjp=True)  # the same table: shared subterms once
    plane = {"spec": [put(t) for t in ps.flat], "vjp": [[put(t) for t in np.asarray(v, dtype=object).flat]
                                                         for v in pg]}
    return {"kind": "channels", "shape": list(fields["shapes"][0]), "params": len(fields["shapes"]) - 1,
            "nodes": nodes, "window": window, "plane": plane}


def element_claim(st: dict[str, Any]) -> str:
    """The claim a ``channels`` statement's element terms make, as the element's fixed-shape autograd
    claim states it: ``(and (= V_k d(g*S)/d in_k) ...)``, V_k and S the statement's ``window`` terms
    read as sympy (leaves named as ``autograd._inputs`` names them). ``artifacts.check_windows``
    requires it to be the required claim's own, so the element terms the checker replays are those
    the solver proved (audit20; a rule computing differently on terms and on sympy was accepted)."""
    import sympy

    from . import smt

    ops = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "neg": lambda a: -a, "div": lambda a, b: a / b, "sqrt": sympy.sqrt}
    vals: list[Any] = []
    for n in st["nodes"]:
        if n[0] == "leaf":
            name = "x" + n[1][2:] if n[1].startswith("in") else n[1]
            vals.append(sympy.Symbol("_".join([name, *map(str, n[2:])]), real=True))
        elif n[0] == "c":
            vals.append(sympy.Rational(n[1]))
        else:
            vals.append(ops[n[0]](*(vals[i] for i in n[1:])))
    one = "_".join(["0"] * len(st["shape"]))
    g = sympy.Symbol(f"g_{one}", real=True)
    ins = [sympy.Symbol(f"x0_{one}", real=True)] + [sympy.Symbol(f"x{k}_0", real=True)
                                                    for k in range(1, st["params"] + 1)]
    loss = g * vals[st["window"]["spec"]]
    return smt.conj([f"(= {smt.smt(vals[v])} {smt.smt(loss.diff(x))})"
                     for v, x in zip(st["window"]["vjp"], ins, strict=True)])


def _obligation(kind: str, prim: str, part: str, st: dict[str, Any], fields: dict[str, Any],
                requires: list[str], what: str, domain: tuple[str, ...]) -> Obligation:
    digest = hashlib.sha256(json.dumps(st, sort_keys=True).encode()).hexdigest()
    letter = "t" if kind == "terms" else "e"
    # the text names the statement by its digest (the statement itself is in ``data``, which the
    # obligation's hash covers): the matmul statements of a transformer are 12-26 MB of JSON each,
    # and as the text they were written into and read back from every artifact
    text = f"; {kind} statement sha256 {digest}: {len(st['nodes'])} term nodes, decided by the checker\n"
    return Obligation(kind, f"node:{prim}", f"{part}.{prim}.{letter}{digest[:10]}", text, what,
                      {"statement": st, "requires": requires, "part": part, "shapes": fields["shapes"],
                       "attrs": {k: repr(v) for k, v in sorted(fields["attrs"].items())}}, domain)


def forward_obligation(prim: str, fields: dict[str, Any]) -> Obligation:
    """The node's forward claim as a ``terms`` obligation."""
    return _obligation("terms", prim, "forward", forward_statement(prim, fields), fields, [],
                       f"the kernel of {prim} equals its spec meaning at shapes {fields['shapes']} "
                       "(polynomial identities, decided by the checker)", ())


def channels_obligation(prim: str, fields: dict[str, Any], element: Obligation) -> Obligation:
    """The node's autograd claim as a ``channels`` obligation resting on the element's ``element``."""
    return _obligation("channels", prim, "autograd", channels_statement(prim, fields), fields, [element.name],
                       f"the VJP rule of {prim} equals the derivative of its spec at shapes "
                       f"{fields['shapes']}: element by element, from {element.name}", element.assumptions)
