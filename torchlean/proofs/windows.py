"""max_pool2d at any plane size from one window (issue 18): the ``windows`` obligations.

A max_pool2d node on an H x W plane (no padding) is proved by
- the fixed-shape forward and autograd obligations of *one window*: the node's attributes at input
  (1, 1, kh, kw), solved and checked as every fixed-shape claim (their cost does not grow with H, W);
- a ``windows`` statement (``certificates/windows.py``), decided by the checker: the runtime's kernel
  and VJP and the spec meaning, run on terms that record each value exactly as the code builds it
  (``TXP``, the term namespace, and ``TM``, the spec's scalar namespace on terms), give at every
  window the one window's terms of that window's entries, and a VJP that is the sum over windows of
  the one window's VJP placed at the window's positions.

``forward.max_pool2d.w<key>`` and ``autograd.max_pool2d.w<key>`` (kind ``windows``) are the node's two
obligations; each is checked when its statement replays and the one-window obligation it names
(``data["requires"]``) is checked. The cost of the statement is linear in the plane size and needs
no solver.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from .obligation import Obligation


class Term:
    """A value as the code built it: interned (equal terms are the same object)."""

    __slots__ = ("key",)
    _table: dict[tuple[Any, ...], Term] = {}

    def __new__(cls, *key: Any) -> Term:
        t = cls._table.get(key)
        if t is None:
            t = object.__new__(cls)
            t.key = key
            cls._table[key] = t
        return t

    def _bin(self, op: str, o: Any, flip: bool = False) -> Term:
        # (inlined lookup: a transformer's matmul statements make ~10 million of these)
        key = (op, o if type(o) is Term else const(o), self) if flip else \
            (op, self, o if type(o) is Term else const(o))
        t = _TABLE.get(key)
        if t is None:
            t = object.__new__(Term)
            t.key = key
            _TABLE[key] = t
        return t

    def __add__(self, o: Any) -> Term:
        return self._bin("add", o)

    def __radd__(self, o: Any) -> Term:
        return self._bin("add", o, True)

    def __sub__(self, o: Any) -> Term:
        return self._bin("sub", o)

    def __rsub__(self, o: Any) -> Term:
        return self._bin("sub", o, True)

    def __mul__(self, o: Any) -> Term:
        return self._bin("mul", o)

    def __rmul__(self, o: Any) -> Term:
        return self._bin("mul", o, True)

    def __truediv__(self, o: Any) -> Term:
        return self._bin("div", o)

    def __rtruediv__(self, o: Any) -> Term:
        return self._bin("div", o, True)

    def __neg__(self) -> Term:
        return Term("neg", self)

    def __bool__(self) -> bool:
        # a branch on a value would make the recorded terms one path's only: refuse it
        raise TypeError("term backend: a value used as a condition (branch on data)")


_TABLE = Term._table  # (the one table: ``encoder`` clears it in place)


def const(v: Any) -> Term:
    from fractions import Fraction

    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not np.isfinite(v):
        raise TypeError(f"term backend: not a finite number {v!r}")
    return Term("c", str(Fraction(int(v)) if isinstance(v, (int, np.integer)) else Fraction(float(v))))


def _map(op: str, *xs: Any) -> np.ndarray:
    def one(*a: Any) -> Term:
        return Term(op, *(v if isinstance(v, Term) else const(v) for v in a))
    return np.asarray(np.frompyfunc(one, len(xs), 1)(*xs), dtype=object)


def _full(shape: Any, v: Any) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.fill(const(v))
    return out


class TXP:
    """The ``xp`` the pooling rules call, on object arrays of terms (slicing and in-place adds are
    numpy's own on object arrays; elementwise functions become terms)."""

    @staticmethod
    def zeros(shape: Any, dtype: Any = None) -> np.ndarray:
        return _full(shape, 0)

    @staticmethod
    def zeros_like(x: Any, dtype: Any = None) -> np.ndarray:
        return _full(np.shape(x), 0)

    @staticmethod
    def maximum(a: Any, b: Any) -> np.ndarray:
        return _map("maximum", a, b)

    @staticmethod
    def equal(a: Any, b: Any) -> np.ndarray:
        return _map("equal", a, b)

    @staticmethod
    def greater(a: Any, b: Any) -> np.ndarray:
        return _map("greater", a, b)

    @staticmethod
    def where(c: Any, a: Any, b: Any) -> np.ndarray:
        return _map("where", c, a, b)

    @staticmethod
    def sqrt(a: Any) -> np.ndarray:
        return _map("sqrt", a)

    # numpy's own on object arrays: moving entries, and sums / dot products as ``+`` and ``*`` of terms
    stack, transpose, concatenate, tensordot, sum, matmul = (staticmethod(f) for f in (
        np.stack, np.transpose, np.concatenate, np.tensordot, np.sum, np.matmul))


class TM:
    """The spec's scalar namespace (``spec/scalar.py``) on terms."""

    name = "terms"

    @staticmethod
    def select(c: Any, a: Any, b: Any) -> Term:
        return Term("select", c, a, b)

    @staticmethod
    def ge(a: Any, b: Any) -> Term:
        return Term("ge", a, b)

    @staticmethod
    def gt(a: Any, b: Any) -> Term:
        return Term("gt", a, b)

    @staticmethod
    def sqrt(a: Any) -> Term:
        return Term("sqrt", a)

    @staticmethod
    def exp(a: Any) -> Term:
        return Term("exp", a)

    @staticmethod
    def const(v: Any) -> Term:
        return const(v)


def encoder() -> tuple[list[list[Any]], Callable[[Term], int]]:
    """(nodes, put): ``put(t)`` appends term ``t`` and its arguments to ``nodes`` in post-order
    (every argument an earlier node, each term once) and returns its id. Starts a fresh term table
    (terms of an earlier statement are not reused)."""
    Term._table.clear()
    nodes: list[list[Any]] = []
    ids: dict[Term, int] = {}

    def put(t: Term) -> int:
        i = ids.get(t)
        if i is not None:
            return i
        stack = [t]
        while stack:
            u = stack[-1]
            if u in ids:  # (pushed twice: under two parents)
                stack.pop()
                continue
            key = u.key
            todo = [a for a in key[1:] if type(a) is Term and a not in ids]
            if todo:  # its arguments first
                stack.extend(todo)
                continue
            stack.pop()
            ids[u] = len(nodes)
            nodes.append([key[0], *[ids[a] if type(a) is Term else a for a in key[1:]]])
        return ids[t]
    return nodes, put


def _leaves(tag: str, shape: tuple[int, ...], last: int = 2) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for i in np.ndindex(shape):
        out[i] = Term(tag, *i[len(shape) - last:]) if last else Term(tag)
    return out


def _run(prim: str, x: np.ndarray, g_tag: str, attrs: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(kernel, spec, vjp) of ``prim`` on the terms ``x`` (N = C = 1), the cotangent's leaves ``g_tag``."""
    from ..runtime.rules import RULES
    from ..spec.primitives import PRIMITIVES

    rule = RULES[prim]
    out = np.asarray(rule.forward(TXP, x, **attrs), dtype=object)
    spec = np.asarray(PRIMITIVES[prim].meaning(TM, x, **PRIMITIVES[prim].check_attrs(attrs)), dtype=object)
    g = _leaves(g_tag, out.shape, 2 if g_tag == "g" else 0)
    (vjp,) = rule.vjp(TXP, g, out, x, **attrs)
    return out, spec, np.asarray(vjp, dtype=object)


def statement(prim: str, plane: tuple[int, int], attrs: dict[str, Any]) -> dict[str, Any]:
    """The ``windows`` statement of ``prim`` (max_pool2d, no padding) on an H x W plane."""
    from ..spec.nnops import pair

    k, s = pair(attrs.get("kernel_size", (2, 2))), pair(attrs.get("stride", attrs.get("kernel_size", (2, 2))))
    nodes, put = encoder()

    def grid(a: np.ndarray) -> list[Any]:
        return [[put(v) for v in row] for row in a[0, 0]]

    wf, ws, wv = _run(prim, _leaves("v", (1, 1, *k)), "gv", attrs)
    pf, ps, pv = _run(prim, _leaves("x", (1, 1, *plane)), "g", attrs)
    return {"kind": "windows", "size": list(plane), "kernel": list(k), "stride": list(s),
            "window": {"forward": put(wf[0, 0, 0, 0]), "spec": put(ws[0, 0, 0, 0]), "vjp": grid(wv)},
            "plane": {"forward": grid(pf), "spec": grid(ps), "vjp": grid(pv)}, "nodes": nodes}


def applies(prim: str, shapes: list[Any], attrs: dict[str, Any]) -> bool:
    """Whether a node case is proved window by window: max_pool2d without padding on a plane with
    more than one window."""
    from ..spec.nnops import pair

    if prim != "max_pool2d" or len(shapes) != 1 or shapes[0] is None or len(shapes[0]) != 4:
        return False
    k = pair(attrs.get("kernel_size", (2, 2)))
    return pair(attrs.get("padding", (0, 0))) == (0, 0) and tuple(shapes[0][2:]) != tuple(k)


def window_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The one-window node case of a plane case: the same attributes at input (1, 1, kh, kw)."""
    from ..spec.nnops import pair

    k = pair(fields["attrs"].get("kernel_size", (2, 2)))
    return {**fields, "shapes": [[1, 1, *k]]}


def obligations(prim: str, fields: dict[str, Any], window: list[Obligation]) -> list[Obligation]:
    """The node's ``windows`` obligations (forward and autograd), resting on ``window`` (the one
    window's forward and autograd obligations)."""
    plane = tuple(fields["shapes"][0][2:])
    st = statement(prim, plane, dict(fields["attrs"]))
    text = json.dumps(st, sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:10]
    by_kind = {ob.kind: ob.name for ob in window}
    out = []
    for kind, what in (("forward", "kernel equals its spec meaning"), ("autograd", "VJP rule equals the "
                                                                                 "derivative of its spec")):
        requires = [by_kind["forward"]] + ([by_kind["autograd"]] if kind == "autograd" else [])
        out.append(Obligation(
            "windows", f"node:{prim}", f"{kind}.{prim}.w{key}", text,
            f"the {what} on {plane[0]} x {plane[1]} planes (every batch and channel count): window by "
            f"window, from {', '.join(requires)}",
            {"statement": st, "requires": requires, "part": kind, "plane": list(plane),
             "attrs": {k: repr(v) for k, v in sorted(fields["attrs"].items())}},
            ("inputs of each pooling window pairwise distinct (no tied maxima)",)))
    return out
