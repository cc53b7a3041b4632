"""Shape-generic autograd obligations for linear primitives (issue 17): adjointness at symbolic sizes.

The runtime's own kernel and VJP rule run on an *index backend* (``XP``): an array is a symbolic
shape (sizes are ``Size`` symbols, or 1) and a function from an index tuple to an index form (sums
over symbolic ranges of products of array entries, ``certificates/adjoint.py``). From the kernel L
and the VJP V_k this derives the statement <g, L(x)> = <V_k(g), x_k> for every differentiable
input, checked by the trusted ``adjoint`` kind at every size of the class.

A *class* is the case's shapes with every size other than 1 replaced by a symbol (axes that the
shape rule ties, like matmul's inner ones, share one), and the attributes. The rules compare sizes
(``sum_to``: ``g.shape == shape``, ``d == 1``): every comparison the derivation made is recorded
as a *decision* (a symbol is never 1; two symbols are equal only when they are the same symbol),
and a concrete case is in the class only when its sizes give every decision the same answer
(``instance``). Otherwise the case keeps its fixed-shape obligation.

Trusted (statement reading, like the symbolic backend): the index semantics below of ``matmul``,
``swapaxes``, ``transpose``, ``sum``, ``broadcast_to``, ``reshape`` (inserting or removing axes of
size 1), ``zeros_like`` and ``+``; ``tests/test_proofs_adjoint.py`` evaluates them at concrete
sizes against numpy.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

from .obligation import Obligation, source

#: the primitives proved here, by adjointness (linear in every differentiable input)
FAMILY = ("matmul", "transpose", "sum", "mean", "broadcast_to", "add", "sub", "mul", "reshape", "flatten")

_DECISIONS: list[tuple[str, str, bool]] = []
_FRESH = itertools.count()


class Size:
    """A symbolic size (>= 2 in the class: a comparison with 1 answers False and is recorded)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __eq__(self, other: Any) -> bool:
        same = isinstance(other, Size) and other.name == self.name
        _DECISIONS.append((self.name, other.name if isinstance(other, Size) else str(other), same))
        return same

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return self.name

    def __mul__(self, other: Any) -> Count:
        return Count((self.name,)) * other

    __rmul__ = __mul__


class Count:
    """A product of symbolic sizes times an integer (mean's n); only ever divided by."""

    def __init__(self, names: tuple[str, ...], k: int = 1):
        self.names, self.k = tuple(sorted(names)), k

    def __mul__(self, other: Any) -> Count:
        if isinstance(other, Size):
            return Count((*self.names, other.name), self.k)
        if isinstance(other, Count):
            return Count(self.names + other.names, self.k * other.k)
        if type(other) is int:
            return Count(self.names, self.k * other)
        return NotImplemented

    __rmul__ = __mul__


Mono = tuple[Fraction, tuple[tuple[str, Any], ...], tuple[tuple[str, tuple[Any, ...]], ...]]


def _mul(p: list[Mono], q: list[Mono]) -> list[Mono]:
    return [(c1 * c2, s1 + s2, a1 + a2) for c1, s1, a1 in p for c2, s2, a2 in q]


class IArr:
    """An array of index forms: ``shape`` and ``at(index) -> list of monomials``."""

    def __init__(self, shape: tuple[Any, ...], at: Callable[[tuple[Any, ...]], list[Mono]],
                 flags: Any = None):
        self.shape, self.at = tuple(shape), at
        if flags is not None:  # an input's memory layout, which a rule may branch on
            self.flags = flags

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __add__(self, other: IArr) -> IArr:
        return _elementwise(self, other, lambda p, q: p + q)

    def __sub__(self, other: IArr) -> IArr:
        return _elementwise(self, other, lambda p, q: p + [(-c, s, a) for c, s, a in q])

    def __mul__(self, other: IArr) -> IArr:
        return _elementwise(self, other, _mul)

    def __neg__(self) -> IArr:
        return IArr(self.shape, lambda i: [(-c, s, a) for c, s, a in self.at(i)])

    def __truediv__(self, n: Any) -> IArr:
        """Division by a count: an integer, or 1/(product of symbols) as the scalar atom inv_<names>
        (an opaque real: an identity holding for every value of it holds for 1/n)."""
        n = Count((), n) if type(n) is int else n
        require_shape(isinstance(n, Count) and n.k != 0, f"division by {n!r}")
        inv = ((f"inv_{'_'.join(n.names)}", ()),) if n.names else ()
        return IArr(self.shape, lambda i: [(c / n.k, s, a + inv) for c, s, a in self.at(i)])

    def reshape(self, *shape: Any) -> IArr:
        """Only inserting or removing axes of size 1 (row-major order is then untouched); a -1
        stands for the one size other than 1 that the others leave over (or 1)."""
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)
        keep = [d for d in self.shape if not (type(d) is int and d == 1)]
        if any(type(d) is int and d == -1 for d in shape):
            given = [d for d in shape if not (type(d) is int and d in (1, -1))]
            require_shape(sum(type(d) is int and d == -1 for d in shape) == 1 and given == keep[:len(given)]
                          and len(keep) - len(given) <= 1, f"reshape {self.shape} -> {shape}")
            rest = keep[len(given):] or [1]
            shape = tuple(rest[0] if type(d) is int and d == -1 else d for d in shape)
        require_shape([d for d in shape if not (type(d) is int and d == 1)] == keep,
                      f"reshape {self.shape} -> {shape} is not a size-1 axis change")
        pos = [k for k, d in enumerate(self.shape) if not (type(d) is int and d == 1)]
        new = [k for k, d in enumerate(shape) if not (type(d) is int and d == 1)]

        def at(i: tuple[Any, ...]) -> list[Mono]:
            src = [0] * self.ndim
            for p, n in zip(pos, new):
                src[p] = i[n]
            return self.at(tuple(src))
        return IArr(shape, at)


def _elementwise(x: IArr, y: IArr, op: Callable[[list[Mono], list[Mono]], list[Mono]]) -> IArr:
    """numpy broadcasting (aligned from the right; a size-1 axis repeats)."""
    require_shape(isinstance(y, IArr), f"elementwise with {type(y).__name__}")
    n = max(x.ndim, y.ndim)
    px, py = (1,) * (n - x.ndim) + x.shape, (1,) * (n - y.ndim) + y.shape
    shape = []
    for d, e in zip(px, py):
        require_shape(_is1(d) or _is1(e) or d == e, f"broadcast {x.shape} with {y.shape}")
        shape.append(e if _is1(d) else d)

    def pick(z: IArr, i: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(0 if _is1(d) else v for d, v in zip(z.shape, i[n - z.ndim:]))
    return IArr(tuple(shape), lambda i: op(x.at(pick(x, i)), y.at(pick(y, i))))


def require_shape(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(f"index backend: {what}")


def _is1(d: Any) -> bool:
    return type(d) is int and d == 1


def _var(size: Any) -> tuple[Any, tuple[tuple[str, Any], ...]]:
    """An index over an axis of ``size``: 0 when the size is 1, else a fresh bound variable."""
    if _is1(size):
        return 0, ()
    v = f"i{next(_FRESH)}"
    return v, ((v, size),)


def _summed(x: IArr, axes: tuple[int, ...], i_out: list[Any]) -> list[Mono]:
    """sum over ``axes`` of x, the other axes at ``i_out`` (in order)."""
    it = iter(i_out)
    idx, sums = [], ()
    for k, d in enumerate(x.shape):
        if k in axes:
            v, s = _var(d)
            idx.append(v)
            sums += s
        else:
            idx.append(next(it))
    return [(c, sums + s, a) for c, s, a in x.at(tuple(idx))]


class XP:
    """The index backend's array namespace (what the rules call as ``xp``)."""

    @staticmethod
    def matmul(a: IArr, b: IArr) -> IArr:
        """Over the last two axes; batch axes broadcast (numpy's rule, aligned from the right)."""
        require_shape(a.ndim >= 2 and b.ndim >= 2 and a.shape[-1] == b.shape[-2],
                      f"matmul {a.shape} @ {b.shape}")
        nb = max(a.ndim, b.ndim) - 2
        ba, bb = (1,) * (nb - a.ndim + 2) + a.shape[:-2], (1,) * (nb - b.ndim + 2) + b.shape[:-2]
        batch = []
        for d, e in zip(ba, bb):
            require_shape(_is1(d) or _is1(e) or d == e, f"matmul batch {a.shape} @ {b.shape}")
            batch.append(e if _is1(d) else d)

        def pick(x: IArr, i: tuple[Any, ...]) -> tuple[Any, ...]:
            """x's batch index for output index i (0 on x's size-1 batch axes)."""
            r = x.ndim - 2
            return tuple(0 if _is1(d) else v for d, v in zip(x.shape[:-2], i[nb - r:nb]))

        def at(i: tuple[Any, ...]) -> list[Mono]:
            k, s = _var(a.shape[-1])
            pa, pb = pick(a, i), pick(b, i)
            return [(c, s + s2, at_) for c, s2, at_ in
                    _mul(a.at((*pa, i[-2], k)), b.at((*pb, k, i[-1])))]
        return IArr((*batch, a.shape[-2], b.shape[-1]), at)

    @staticmethod
    def transpose(x: IArr, axes: Any = None) -> IArr:
        perm = tuple(range(x.ndim))[::-1] if axes is None else tuple(int(a) % x.ndim for a in axes)
        require_shape(sorted(perm) == list(range(x.ndim)), f"transpose axes {axes}")

        def at(i: tuple[Any, ...]) -> list[Mono]:
            src = [0] * x.ndim
            for k, p in enumerate(perm):
                src[p] = i[k]
            return x.at(tuple(src))
        return IArr(tuple(x.shape[p] for p in perm), at)

    @staticmethod
    def swapaxes(x: IArr, a: int, b: int) -> IArr:
        perm = list(range(x.ndim))
        perm[a], perm[b] = perm[b], perm[a]
        return XP.transpose(x, perm)

    @staticmethod
    def sum(x: IArr, axis: Any = None, keepdims: bool = False) -> IArr:
        axes = tuple(range(x.ndim)) if axis is None else (
            (axis,) if isinstance(axis, int) else tuple(axis))
        axes = tuple(sorted(a % x.ndim for a in axes))
        kept = [k for k in range(x.ndim) if k not in axes]
        shape = tuple(1 if k in axes else d for k, d in enumerate(x.shape)) if keepdims else \
            tuple(x.shape[k] for k in kept)

        def at(i: tuple[Any, ...]) -> list[Mono]:
            outer = [i[k] for k in kept] if keepdims else list(i)
            return _summed(x, axes, outer)
        return IArr(shape, at)

    @staticmethod
    def broadcast_to(x: IArr, shape: tuple[Any, ...]) -> IArr:
        shape = tuple(shape)
        lead = len(shape) - x.ndim
        require_shape(lead >= 0 and all(_is1(d) or d == e for d, e in zip(x.shape, shape[lead:])),
                      f"broadcast {x.shape} -> {shape}")

        def at(i: tuple[Any, ...]) -> list[Mono]:
            return x.at(tuple(0 if _is1(d) else i[lead + k] for k, d in enumerate(x.shape)))
        return IArr(shape, at)

    @staticmethod
    def zeros_like(x: IArr) -> IArr:
        return IArr(x.shape, lambda i: [])


class _ColumnMajor:
    f_contiguous, c_contiguous = True, False


def _leaf(name: str, shape: tuple[Any, ...], column_major: bool = False) -> IArr:
    return IArr(shape, lambda i: [(Fraction(1), (), ((name, tuple(i)),))],
                _ColumnMajor() if column_major else None)


def _pair(name: str, x: IArr, g: IArr) -> list[Mono]:
    """<g, x> as monomials: a sum over every axis of size > 1."""
    idx, sums = [], ()
    for d in x.shape:
        v, s = _var(d)
        idx.append(v)
        sums += s
    return [(c, sums + s, a) for c, s, a in _mul(g.at(tuple(idx)), x.at(tuple(idx)))]


def _json(monos: list[Mono]) -> list[dict[str, Any]]:
    return [{"c": str(c), "sum": [[v, str(d) if isinstance(d, Size) else d] for v, d in s],
             "atoms": [[n, [str(i) if isinstance(i, Size) else i for i in idx]] for n, idx in a]}
            for c, s, a in monos]


def _sizes(shape: tuple[Any, ...]) -> list[Any]:
    return [d.name if isinstance(d, Size) else d for d in shape]


def statement(prim: str, shapes: list[tuple[Any, ...]], attrs: dict[str, Any],
              column_major: tuple[int, ...] = ()) -> tuple[dict[str, Any], list[tuple[str, str, bool]]]:
    """(the ``adjoint`` statement, the size decisions it rests on) for ``prim`` at a class."""
    from ..runtime.rules import RULES

    global _FRESH
    rule = RULES[prim]
    del _DECISIONS[:]
    _FRESH = itertools.count()  # bound variables named alike at every derivation (a stable hash)
    xs = [_leaf(f"x{k}", s, k in column_major) for k, s in enumerate(shapes)]
    out = rule.forward(XP, *xs, **attrs)
    g = _leaf("g", out.shape)
    grads = rule.vjp(XP, g, out, *xs, **attrs)
    arrays = {"g": _sizes(out.shape), **{f"x{k}": _sizes(s) for k, s in enumerate(shapes)}}
    rhs = {}
    for k, (x, v) in enumerate(zip(xs, grads)):
        require_shape(v.shape == x.shape, f"VJP {k} has shape {v.shape}, input {x.shape}")
        rhs[f"x{k}"] = _json(_pair(f"x{k}", x, v))
    lhs = _json(_pair("g", out, g))
    for m in lhs + [m for side in rhs.values() for m in side]:
        for name, _ in m["atoms"]:
            if name.startswith("inv_"):
                arrays[name] = []  # a scalar: the reciprocal of a count
    st = {"kind": "adjoint", "arrays": arrays, "lhs": lhs, "rhs": rhs}
    return st, sorted(set(_DECISIONS))


def symbolic_class(prim: str, shapes: list[list[int] | None], attrs: dict[str, Any],
                   ) -> tuple[list[tuple[Any, ...]], dict[str, Any]] | None:
    """The class of a concrete case: sizes other than 1 become symbols (tied where the shape
    rule ties them); None when the family has no generic proof of that form (e.g. batched
    matmul, a column-major operand)."""
    if prim not in FAMILY or any(s is None for s in shapes):
        return None
    names = iter(f"n{k}" for k in itertools.count())

    def sym(d: int) -> Any:
        return 1 if d == 1 else Size(next(names))
    def broadcast(a: list[int], b: list[int]) -> tuple[list[Any], list[Any]] | None:
        """Symbols for two shapes broadcast together: an axis of both is one symbol."""
        n = max(len(a), len(b))
        pa, pb = [1] * (n - len(a)) + list(a), [1] * (n - len(b)) + list(b)
        sa, sb = [], []
        for d, e in zip(pa, pb):
            if d != e and d != 1 and e != 1:
                return None
            s = sym(d if d != 1 else e)
            sa.append(s if d != 1 else 1)
            sb.append(s if e != 1 else 1)
        return sa[n - len(a):], sb[n - len(b):]
    if prim in ("add", "sub", "mul"):
        found = broadcast(*shapes)
        return None if found is None else ([tuple(found[0]), tuple(found[1])], dict(attrs))
    if prim == "matmul":
        a, b = shapes
        if len(a) < 2 or len(b) < 2 or a[-1] != b[-2]:
            return None
        batch = broadcast(list(a[:-2]), list(b[:-2]))
        if batch is None:
            return None
        sm, kk = sym(a[-2]), sym(a[-1])
        return [(*batch[0], sm, kk), (*batch[1], kk, sym(b[-1]))], {}
    (x,) = shapes
    sx = tuple(sym(d) for d in x)
    attrs = dict(attrs)
    if prim == "reshape":  # only a change of size-1 axes: the target's other sizes are x's, in order
        big = iter(s for s in sx if not _is1(s))
        target = []
        for d in attrs["shape"]:
            target.append(d if d in (1, -1) else next(big, None))
        if None in target or [d for d in attrs["shape"] if d not in (1, -1)] != [d for d in x if d != 1]:
            return None
        attrs["shape"] = tuple(target)
    if prim == "broadcast_to":
        target = tuple(attrs["shape"])
        lead = len(target) - len(x)
        attrs["shape"] = tuple(sym(d) for d in target[:lead]) + tuple(
            s if not _is1(s) else sym(e) for s, e in zip(sx, target[lead:]))
    return [sx], attrs


def instance(decisions: list[tuple[str, str, bool]], cls: list[tuple[Any, ...]],
             shapes: list[list[int]], attrs_cls: dict[str, Any], attrs: dict[str, Any]) -> bool:
    """Whether the concrete sizes give every recorded decision the answer the derivation took."""
    value: dict[str, int] = {}
    pairs = [(c, s) for cs, ss in zip(cls, shapes) for c, s in zip(cs, ss)]
    if "shape" in attrs_cls:
        if len(attrs_cls["shape"]) != len(attrs["shape"]):
            return False
        pairs += list(zip(attrs_cls["shape"], attrs["shape"]))
    for c, s in pairs:
        if isinstance(c, Size):
            if value.setdefault(c.name, s) != s:
                return False
        elif c != s:
            return False
    for a, b, answer in decisions:
        va = value.get(a)
        vb = value.get(b, int(b) if b.lstrip("-").isdigit() else None)
        if va is None or vb is None or (va == vb) != answer:
            return False
    return True


def class_text(prim: str, cls: list[tuple[Any, ...]], attrs: dict[str, Any],
               column_major: tuple[int, ...] = ()) -> str:
    shown = {k: (tuple(_sizes(v)) if k == "shape" else v) for k, v in sorted(attrs.items())}
    layout = f" column-major {list(column_major)}" if column_major else ""
    return f"{prim} {' x '.join(str(list(_sizes(s))) for s in cls)} {shown}{layout}"


def adjoint_obligation(prim: str, cls: list[tuple[Any, ...]], attrs: dict[str, Any],
                       column_major: tuple[int, ...] = ()) -> Obligation:
    """``autograd.<prim>.g<hash>``: the VJP is the kernel's adjoint at every size of the class."""
    st, decisions = statement(prim, cls, attrs, column_major)
    text = json.dumps(st, sort_keys=True)
    what = class_text(prim, cls, attrs, column_major)
    key = hashlib.sha256(what.encode()).hexdigest()[:10]
    ds = [f"{a} {'=' if ans else '!='} {b}" for a, b, ans in decisions if a != b]
    return Obligation("adjoint", f"primitive:{prim}", f"autograd.{prim}.g{key}", text,
                      f"the VJP rule of {prim} is the adjoint of its kernel at every size of the class "
                      f"{what}" + (f" with {', '.join(ds)}" if ds else ""),
                      {"statement": st, "decisions": [list(d) for d in decisions], "class": what})


def node_obligation(prim: str, shapes: list[Any], attrs: dict[str, Any],
                    column_major: list[int]) -> Obligation | None:
    """The generic autograd obligation whose class holds this concrete node case, or None."""
    found = symbolic_class(prim, shapes, attrs)
    if found is None:
        return None
    cls, a = found
    try:
        ob = adjoint_obligation(prim, cls, a, tuple(column_major))
    except (ValueError, TypeError, AttributeError):  # a rule the index backend cannot run
        return None
    decisions = [tuple(d) for d in ob.data["decisions"]]
    return ob if instance(decisions, cls, shapes, a, attrs) else None  # type: ignore[arg-type]


#: the classes torchlean ships proofs for (a node case in another class derives its own)
LIBRARY: list[tuple[str, list[list[int]], dict[str, Any]]] = [
    ("matmul", [[2, 3], [3, 4]], {}), ("matmul", [[1, 3], [3, 4]], {}),
    ("matmul", [[2, 3, 4], [4, 5]], {}), ("matmul", [[2, 3, 4, 5], [2, 3, 5, 6]], {}),
    ("matmul", [[2, 3, 4], [1, 4, 5]], {}),
    ("transpose", [[2, 3]], {"axes": None}), ("transpose", [[2, 3, 4]], {"axes": (1, 0, 2)}),
    ("transpose", [[2, 3, 4, 5]], {"axes": (0, 2, 1, 3)}),
    ("sum", [[2, 3]], {"axes": 1, "keepdims": False}), ("sum", [[2, 3]], {"axes": None, "keepdims": True}),
    ("sum", [[2, 3, 4]], {"axes": (0, 2), "keepdims": False}),
    ("mean", [[2, 3]], {"axes": 1, "keepdims": False}), ("mean", [[2, 3]], {"axes": None, "keepdims": False}),
    ("mean", [[2, 3, 4]], {"axes": -1, "keepdims": True}),
    ("broadcast_to", [[1, 3]], {"shape": (2, 3)}), ("broadcast_to", [[3]], {"shape": (2, 3)}),
    ("reshape", [[2, 3]], {"shape": (2, 1, 3)}), ("reshape", [[2, 1, 3]], {"shape": (2, 3)}),
    ("flatten", [[2, 3, 1, 1]], {"start_dim": 1}),
    ("add", [[2, 3], [2, 3]], {}), ("add", [[2, 3], [3]], {}), ("sub", [[2, 3], [2, 1]], {}),
    ("mul", [[2, 3], [2, 3]], {}), ("mul", [[2, 3], [3]], {}),
]


@source("primitives.adjoint", library=True)
def library() -> Iterator[Obligation]:
    for prim, shapes, attrs in LIBRARY:
        cls, a = symbolic_class(prim, shapes, attrs)  # type: ignore[misc]
        yield adjoint_obligation(prim, cls, a)
    cls, a = symbolic_class("matmul", [[2, 3], [3, 4]], {})  # type: ignore[misc]
    yield adjoint_obligation("matmul", cls, a, (1,))  # nn.Linear's layout: b = Wᵀ
