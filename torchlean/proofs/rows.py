"""layer_norm's and softmax's VJP at any row width from one element's claim (issue 18): the ``rows``
obligations.

A row primitive at width n is, per position j, an element function of the position's entries and
of the row's statistics, each a sum over the row of a per-element summand:

    spec_j = F(x_j, theta_j, s),  s_k = sum_j phi_k(x_j, theta_j)

(layer_norm: s = (mean, mean of squares, mean), F = (x - s0) / sqrt(s1 - 2 s0 s2 + s0^2 + eps) * w + b;
softmax:
s = (sum of exp), F = exp(x) / s0). The decomposition (``ELEMENT``) is this module's, untrusted:
everything about it is checked.

- ``autograd.<prim>.el<key>`` (kind ``autograd``, solved and checked as every fixed-shape claim; its
  size does not grow with n): the element VJP terms E are the VJP of (F, phi) with the statistics as
  free symbols s_k and their cotangents T_k: E_in = g dF/din + sum_k T_k dphi_k/din and
  E_s_k = g dF/ds_k (``sympy.diff`` of the element terms read as real functions), on the domain
  that the terms listed as ``positive`` are > 0.
- ``autograd.<prim>.r<key>`` (kind ``rows``, decided by the checker, ``certificates/terms.py``): the
  row's spec and the runtime's VJP, run on terms at width n, are F and E at every position with the
  statistics and the adjoint sums T_k = sum_j E_s_k(j) substituted; it names the element claim.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import sympy

from .obligation import Obligation
from .windows import TM, TXP, Term, encoder

#: the prims decided row by row, and the words of their element claim's domain
WORDS = {"layer_norm": "each row's variance + eps > 0 (the element's s1 - s0^2 + eps)",
         "softmax": "each row's sum of exp > 0 (always)"}


def _layer_norm(x, p, g, s, t, n, attrs):
    # s0 and s2 are both the mean (s0: the code's own mean node, an atom everywhere; s2 expanded in
    # the variance), s1 the mean of squares: the variance is s1 - 2 s0 s2 + s0^2 as the code's is
    w, b = p
    u = s[1] - 2 * s[0] * s[2] + s[0] * s[0] + float(attrs.get("eps", 1e-5))
    r = 1 / Term("sqrt", u)
    r3, xc = r * r * r, x - s[0]
    f = xc * r * w + b
    phi = [x / n, x * x / n, x / n]
    vjp = [g * w * r + t[0] / n + t[1] * (2 * x) / n + t[2] / n, g * xc * r, g]
    vjp_s = [g * w * (xc * r3 * (s[2] - s[0]) - r), g * w * xc * r3 * -0.5, g * w * xc * r3 * s[0]]
    return f, phi, vjp, vjp_s, [u]


def _softmax(x, p, g, s, t, n, attrs):
    e = Term("exp", x)
    return e / s[0], [e], [g * e / s[0] + t[0] * e], [-(g * e / s[0]) / s[0]], [s[0]]


#: prim -> (x, params, g, stats, adjoints, n, attrs) -> (F, phis, VJPs per input, VJPs per stat, positive)
ELEMENT = {"layer_norm": _layer_norm, "softmax": _softmax}
STATS = {"layer_norm": 3, "softmax": 1}


def applies(prim: str, fields: dict[str, Any]) -> bool:
    """Whether a node case's autograd claim is a ``rows`` statement: layer_norm over one trailing
    axis, softmax over the last, on rows of more than one entry (leading sizes 1: the row case)."""
    s = fields["shapes"]
    if prim not in ELEMENT or fields["ints"] or any(v is None for v in s) or len(s[0]) < 1 or s[0][-1] < 2 \
            or any(v != 1 for v in s[0][:-1]):
        return False
    if prim == "layer_norm":
        return int(fields["attrs"].get("normalized_ndim", 1)) == 1
    return fields["attrs"].get("axis", -1) in (-1, len(s[0]) - 1)


def _leaves(name: str, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for i in np.ndindex(shape):
        out[i] = Term("leaf", name, *i)
    return out


def statement(prim: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The ``rows`` statement of ``prim`` at the node's row shapes."""
    from ..runtime.rules import RULES
    from ..spec.primitives import PRIMITIVES

    shapes, attrs = [tuple(s) for s in fields["shapes"]], dict(fields["attrs"])
    n, m, params = shapes[0][-1], STATS[prim], len(shapes) - 1
    nodes, put = encoder()
    one = [Term("leaf", f"in{k}", *([0] * len(s))) for k, s in enumerate(shapes)]
    f, phi, vjp, vjp_s, pos = ELEMENT[prim](one[0], one[1:], Term("leaf", "g", *([0] * len(shapes[0]))),
                                            [Term("leaf", "s", k) for k in range(m)],
                                            [Term("leaf", "T", k) for k in range(m)], n, attrs)
    element = {"spec": put(f), "stats": [put(v) for v in phi], "vjp": [put(v) for v in vjp],
               "vjp_stats": [put(v) for v in vjp_s], "positive": [put(v) for v in pos]}
    xs = [_leaves(f"in{k}", s) for k, s in enumerate(shapes)]
    spec = np.asarray(PRIMITIVES[prim].meaning(TM, *xs, **PRIMITIVES[prim].check_attrs(attrs)), dtype=object)
    grads = RULES[prim].vjp(TXP, _leaves("g", spec.shape), spec, *xs, **attrs)
    # the statistics' terms as the code builds them (the checker tests each against its sum)
    cut = [[put(np.asarray(TXP.sum(xs[0], axis=(len(shapes[0]) - 1,), keepdims=True) / n).flat[0])], [], []] \
        if prim == "layer_norm" else [[]]
    row = {"spec": [put(v) for v in spec.flat], "cut": cut,
           "vjp": [[put(v) for v in np.asarray(gk, dtype=object).flat] for gk in grads]}
    return {"kind": "rows", "n": n, "params": params, "stats": m, "nodes": nodes, "element": element,
            "row": row}


def _sympy(st: dict[str, Any]) -> list[Any]:
    """The statement's nodes as sympy expressions (leaves: the element's symbols ``in<k>``, ``g``,
    ``s<k>``, ``T<k>``; a row leaf gets its family and indices in its name)."""
    ops = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "neg": lambda a: -a, "div": lambda a, b: a / b, "sqrt": sympy.sqrt, "exp": sympy.exp}
    out: list[Any] = []
    for node in st["nodes"]:
        op, args = node[0], node[1:]
        if op == "leaf":
            name = args[0] + ("".join(map(str, args[1:])) if args[0] in ("s", "T") or any(args[1:]) else "")
            out.append(sympy.Symbol(name, real=True))
        elif op == "c":
            out.append(sympy.Rational(args[0]))
        elif op in ops:
            out.append(ops[op](*(out[a] for a in args)))
        else:
            out.append(None)  # not used by the element's terms (checked where read)
    return out


def element_obligation(prim: str, st: dict[str, Any]) -> Obligation:
    """The element claim a ``rows`` statement rests on, derived from the statement's element terms."""
    from .autograd import _obligation

    ex, el = _sympy(st), st["element"]
    if any(ex[t] is None for t in [el["spec"], *el["stats"], *el["vjp"], *el["vjp_stats"], *el["positive"]]):
        raise ValueError(f"{prim}: an element term uses an op the element claim cannot read")
    f, phi = ex[el["spec"]], [ex[t] for t in el["stats"]]
    g = sympy.Symbol("g", real=True)
    ins = [sympy.Symbol(f"in{k}", real=True) for k in range(st["params"] + 1)]
    s = [sympy.Symbol(f"s{k}", real=True) for k in range(st["stats"])]
    t = [sympy.Symbol(f"T{k}", real=True) for k in range(st["stats"])]
    pairs = [(ex[e], g * sympy.diff(f, v) + sum((tk * sympy.diff(p, v) for tk, p in zip(t, phi)),
                                                 sympy.Integer(0))) for e, v in zip(el["vjp"], ins)]
    pairs += [(ex[e], g * sympy.diff(f, v)) for e, v in zip(el["vjp_stats"], s)]
    # a positive term the element's derivative takes the square root of is assumed > 0, one it only
    # divides by != 0: each the definedness of a spec-side subterm, as the trusted ``claim`` kind
    # requires (``certificates/domains.py``); check_rows' argument needs only that the domain holds
    # where the row's sqrt arguments and divisors are > 0, which both do
    roots = {a.base for _, b in pairs for a in sympy.sympify(b).atoms(sympy.Pow) if a.exp.q == 2}
    domain = [ex[p] > 0 if any(sympy.expand(ex[p] - r) == 0 for r in roots) else sympy.Ne(ex[p], 0)
              for p in el["positive"]]
    domain = [d for d in domain if d is not sympy.true]  # (a term sympy shows is never 0: no assumption)
    key = hashlib.sha256(repr((prim, pairs, domain)).encode()).hexdigest()[:10]
    return _obligation("autograd", f"node:{prim}", f"autograd.{prim}.el{key}", pairs, domain,
                       f"the element VJP of {prim}'s row decomposition equals the derivative of its element "
                       "function and statistics' summands (statistics as free symbols)",
                       (WORDS[prim],), {"shapes": "element", "part": "element"})


def obligations(prim: str, fields: dict[str, Any]) -> list[Obligation]:
    """The node's autograd claim: the element claim and the ``rows`` statement resting on it."""
    st = statement(prim, fields)
    el = element_obligation(prim, st)
    text = json.dumps(st, sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:10]
    ob = Obligation("rows", f"node:{prim}", f"autograd.{prim}.r{key}", text,
                    f"the VJP rule of {prim} equals the derivative of its spec at shapes {fields['shapes']}: "
                    f"position by position with the row's statistics and adjoint sums, from {el.name}",
                    {"statement": st, "requires": [el.name], "part": "autograd", "shapes": fields["shapes"],
                     "attrs": {k: repr(v) for k, v in sorted(fields["attrs"].items())}}, el.assumptions)
    return [el, ob]
