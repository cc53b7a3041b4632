"""Shape-generic autograd obligations for linear primitives (issue 17): adjointness at symbolic sizes.

The runtime's own kernel and VJP rule run on an *index backend* (``index_backend.IArr`` arrays,
``index_xp.XP`` as ``xp``): an array has a symbolic shape (integers, or polynomials in size
symbols) and maps an index tuple to an index form (sums over symbolic ranges of guarded products
of array entries, ``certificates/adjoint.py``). From the kernel L and the VJP V_k this derives the
statement <g, L(x)> = <V_k(g), x_k> for every differentiable input, checked by the trusted
``adjoint`` kind at every size of the class.

A *class* is the case's shapes with every size other than 1 replaced by a symbol (tied where the
shape rule ties them: matmul's inner sizes, concat's other axes, conv2d's channels), a window's
spatial size written through its output size, a reshape's merged or split size the product of its
parts, a slice bound before an axis's end "its value plus a symbol", and the attributes. The rules
compare sizes (``sum_to``: ``g.shape == shape``, ``d == 1``; slice clamping): every comparison not
decided for all symbols >= 1 is recorded as a *decision*, and a concrete case is in the class only
when its sizes give every decision the same answer (``instance``). Otherwise, or when the checker
rejects the class's statement, the case keeps its fixed-shape obligation.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from . import index_backend as B
from .index_backend import Aff, IArr, Size, require_shape  # noqa: F401  (the tests' names)
from .index_xp import XP
from .obligation import Obligation, source

#: the primitives proved here, by adjointness (linear in every differentiable input)
FAMILY = ("matmul", "transpose", "sum", "mean", "broadcast_to", "add", "sub", "mul", "reshape", "flatten",
          "slice", "concat", "conv2d", "avg_pool2d", "gather", "embedding")


def _is1(d: Any) -> bool:
    return type(d) is int and d == 1


class _ColumnMajor:
    f_contiguous, c_contiguous = True, False


def _leaf(name: str, shape: tuple[Any, ...], column_major: bool = False) -> IArr:
    return IArr(shape, lambda i: [(Fraction(1), (), (), (), ((name, tuple(i)),))],
                _ColumnMajor() if column_major else None)


def _pair(x: IArr, g: IArr) -> list[B.Mono]:
    """<g, x> as monomials: a sum over every axis (unrolled where the size is an integer; over a
    merged axis of either, a sum over its parts)."""
    return B.sum_over(x.shape, lambda i: B.mul(g.at(i), x.at(i)), {**g.parts, **x.parts})


def _json(monos: list[B.Mono]) -> list[dict[str, Any]]:
    out = []
    for c, s, ge, eq, a in monos:
        m = {"c": str(c), "sum": [[v, B._json(d)] for v, d in s],
             "atoms": [[n, [B._json(i) for i in idx]] for n, idx in a]}
        if ge:
            m["ge"] = [B._json(e) for e in ge]
        if [e for e in eq if not isinstance(e, tuple)]:
            m["eq"] = [B._json(e) for e in eq if not isinstance(e, tuple)]
        if [e for e in eq if isinstance(e, tuple)]:  # lookups of integer inputs
            m["in"] = [B._json(e) for e in eq if isinstance(e, tuple)]
        out.append(m)
    return out


def _sizes(shape: tuple[Any, ...]) -> list[Any]:
    return [B._json(d) for d in shape]


def statement(prim: str, shapes: list[tuple[Any, ...]], attrs: dict[str, Any],
              column_major: tuple[int, ...] = (), witness: dict[str, int] | None = None,
              ) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """(the ``adjoint`` statement, the size decisions it rests on) for ``prim`` at a class;
    ``witness``: the sizes of the case being classified, answering order comparisons."""
    from ..runtime.rules import RULES

    rule = RULES[prim]
    del B.DECISIONS[:]
    B.OPAQUE.clear()
    B.WITNESS.clear()
    B.WITNESS.update(witness or {})
    B.FRESH[0] = itertools.count()  # bound variables named alike at every derivation (a stable hash)
    from ..spec.primitives import PRIMITIVES
    ints = PRIMITIVES[prim].integer_inputs
    xs = [B.ILeaf(f"x{k}", s) if k in ints else _leaf(f"x{k}", s, k in column_major)
          for k, s in enumerate(shapes)]
    out = rule.forward(XP, *xs, **attrs)
    g = _leaf("g", out.shape)
    grads = rule.vjp(XP, g, out, *xs, **attrs)
    arrays = {"g": _sizes(out.shape), **{f"x{k}": _sizes(s) for k, s in enumerate(shapes)}}
    rhs = {}
    for k, (x, v) in enumerate(zip(xs, grads)):
        if v is None:
            if k in ints:
                continue
            # a differentiable input the VJP gives no cotangent: the claim is V_k = 0, which the
            # checker rejects unless the kernel does not read x_k. Skipping it left the input out
            # of the claim while the tape still pulled a gradient back through it (audit29)
            rhs[f"x{k}"] = []
            continue
        require_shape(tuple(map(str, v.shape)) == tuple(map(str, x.shape)),
                      f"VJP {k} has shape {v.shape}, input {x.shape}")
        rhs[f"x{k}"] = _json(_pair(x, v))
    lhs = _json(_pair(out, g))
    for m in lhs + [m for side in rhs.values() for m in side]:
        for name, _ in m["atoms"]:
            if name.startswith("inv_"):  # the reciprocal of a count, or an array of them
                arrays[name] = _sizes(B.OPAQUE.get(name, ()))
    st = {"kind": "adjoint", "arrays": arrays, "lhs": lhs, "rhs": rhs}
    return st, sorted(set(B.DECISIONS), key=str)


def _window_axis(n: int, k: int, s: int, p: int, d: int, names: Iterator[str]) -> Any:
    """A spatial size as a polynomial in its output size Ho (a symbol when Ho > 1): every input
    size with the same Ho, remainder and attributes is in the class. H + 2p - d(k-1) - 1 =
    s(Ho - 1) + r with 0 <= r < s."""
    q = n + 2 * p - d * (k - 1) - 1
    if q < 0 or q // s + 1 == 1:
        return n
    return Size(next(names)) * s + (q % s - s - 2 * p + d * (k - 1) + 1)


def symbolic_class(prim: str, shapes: list[list[int] | None], attrs: dict[str, Any], from_start: bool = False,
                   ) -> tuple[list[tuple[Any, ...]], dict[str, Any]] | None:
    """The class of a concrete case: sizes other than 1 become symbols (tied where the shape
    rule ties them; a window's spatial sizes polynomials in its output size; a reshape's merged
    or split sizes products of symbols); None when the family has no generic proof of that form.
    ``from_start``: a unit-step slice to an axis's end keeps its start (size = start + a symbol)."""
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
    attrs = dict(attrs)
    if prim in ("add", "sub", "mul"):
        found = broadcast(*shapes)
        return None if found is None else ([tuple(found[0]), tuple(found[1])], attrs)
    if prim == "matmul":
        a, b = shapes
        if len(a) < 2 or len(b) < 2 or a[-1] != b[-2]:
            return None
        batch = broadcast(list(a[:-2]), list(b[:-2]))
        if batch is None:
            return None
        sm, kk = sym(a[-2]), sym(a[-1])
        return [(*batch[0], sm, kk), (*batch[1], kk, sym(b[-1]))], {}
    if prim == "concat":  # the axes other than the joined one are tied across the inputs
        ax = attrs.get("axis", 0) % len(shapes[0])
        tied = [sym(d) for d in shapes[0]]
        return [tuple(sym(d) if k == ax else tied[k] for k, d in enumerate(s)) for s in shapes], attrs
    if prim == "embedding":  # the table and the indices' shape: independent symbols
        return [tuple(sym(d) for d in s) for s in shapes], attrs
    if prim == "gather":  # the indices' axes other than the gathered one are the input's
        x, idx = shapes
        ax = attrs.get("axis", -1) % len(x)
        if len(idx) != len(x) or any(d != e for k, (d, e) in enumerate(zip(x, idx)) if k != ax):
            return None
        sx = [sym(d) for d in x]
        return [tuple(sx), tuple(sym(d) if k == ax else sx[k] for k, d in enumerate(idx))], attrs
    if prim in ("conv2d", "avg_pool2d"):
        from ..spec.nnops import pair
        x = shapes[0]
        if len(x) != 4 or (prim == "conv2d" and len(shapes[1]) != 4):
            return None
        kk = pair(shapes[1][2:] if prim == "conv2d" else attrs.get("kernel_size", (2, 2)))
        st = pair(attrs.get("stride", (1, 1) if prim == "conv2d" else (2, 2)))
        pd = pair(attrs.get("padding", 0))
        dl = pair(attrs.get("dilation", 1)) if prim == "conv2d" else (1, 1)
        hw = [_window_axis(x[2 + j], kk[j], st[j], pd[j], dl[j], names) for j in (0, 1)]
        if prim == "avg_pool2d":
            return [(sym(x[0]), sym(x[1]), *hw)], attrs
        w = shapes[1]
        groups = attrs.get("groups", 1)
        cg, og = sym(w[1]), (w[0] // groups if w[0] % groups == 0 else 0)
        return [(sym(x[0]), cg * groups, *hw), (sym(og) * groups, cg, *w[2:])], attrs
    (x,) = shapes
    if prim == "slice":  # a bound at the axis's end stays at the end (x[1:], x[-1]): the rest fixed
        cls, index = [], []
        for d, (a, b, c) in zip(x, attrs["index"]):
            if d == 1 or (b < d and a <= d - b):  # both bounds from the start: d = b + (a symbol)
                cls.append(d if d == 1 else Size(next(names)) + b)
                index.append((a, b, c))
                continue
            if from_start and c == 1 and b == d and 0 < a < d:  # x[a:] with the size a + m, m >= 1
                cls.append(Size(next(names)) + a)
                index.append((a, cls[-1], c))
                continue
            if c > d:  # one element whatever the size below the step: that size only
                cls.append(d)
                index.append((a, b, c))
                continue
            n = Size(next(names)) * c + d % c if c > 1 else sym(d)
            cls.append(n)
            index.append((a if a <= d - a else n - (d - a), n if b == d else b, c))
        return [tuple(cls) + tuple(sym(d) for d in x[len(attrs["index"]):])], {**attrs, "index": tuple(index)}
    if prim == "reshape":  # splits (the target sizes symbols) and merges (the source sizes symbols)
        target = list(attrs["shape"])
        src = [k for k, d in enumerate(x) if d != 1]
        dst = [k for k, d in enumerate(target) if d not in (1, -1)]
        if -1 in target:
            return None
        sx: list[Any] = [1] * len(x)
        st_: list[Any] = [1] * len(target)
        a = b = 0
        while a < len(src) and b < len(dst):
            ga, gb = [src[a]], [dst[b]]
            a, b = a + 1, b + 1
            while int(np_prod(x[k] for k in ga)) != int(np_prod(target[k] for k in gb)):
                if len(ga) == 1 and b < len(dst) and x[ga[0]] > int(np_prod(target[k] for k in gb)):
                    gb.append(dst[b])
                    b += 1
                elif len(gb) == 1 and a < len(src) and target[gb[0]] > int(np_prod(x[k] for k in ga)):
                    ga.append(src[a])
                    a += 1
                else:
                    return None
            if len(ga) == 1:
                for k in gb:
                    st_[k] = sym(target[k])
                sx[ga[0]] = np_prod(st_[k] for k in gb)
            else:
                for k in ga:
                    sx[k] = sym(x[k])
                st_[gb[0]] = np_prod(sx[k] for k in ga)
        if a < len(src) or b < len(dst):
            return None
        return [tuple(sx)], {**attrs, "shape": tuple(st_)}
    sx = tuple(sym(d) for d in x)
    if prim == "broadcast_to":
        target = tuple(attrs["shape"])
        lead = len(target) - len(x)
        attrs["shape"] = tuple(sym(d) for d in target[:lead]) + tuple(
            s if not _is1(s) else sym(e) for s, e in zip(sx, target[lead:]))
    return [sx], attrs


def np_prod(ds: Any) -> Any:
    out: Any = 1
    for d in ds:
        out = out * d
    return out


def _bind(cls: list[tuple[Any, ...]], shapes: list[list[int]], attrs_cls: dict[str, Any],
          attrs: dict[str, Any]) -> dict[str, int] | None:
    """The symbols' values for a concrete case of the class (None: not of the class): single
    symbols read off, then a size c*n + b solved for n, then every size must evaluate alike."""
    pairs = [(c, s) for cs, ss in zip(cls, shapes) for c, s in zip(cs, ss)]
    if any(len(c) != len(s) for c, s in zip(cls, shapes)):
        return None
    for key in ("shape", "index"):
        if key in attrs_cls:
            if len(attrs_cls[key]) != len(attrs[key]):
                return None
            for c, s in zip(attrs_cls[key], attrs[key]):
                pairs += list(zip(c, s)) if key == "index" else [(c, s)]
    value: dict[str, int] = {}
    for _ in range(2):
        for c, s in pairs:
            p = Aff.of(c).p if isinstance(c, (Aff, int)) else {}
            free = {n for m in p for n in m if n not in value}
            if len(free) == 1 and all(len(m) <= 1 for m in p):
                (n,) = free
                a, rest = p.get((n,), 0), s - p.get((), 0) - sum(
                    cf * value[m[0]] for m, cf in p.items() if m and m[0] != n)
                if a == 0 or rest % a or rest // a < 1:
                    return None
                value[n] = rest // a
    for c, s in pairs:
        v = B._value(Aff.of(c).p, value) if isinstance(c, (Aff, int)) else None
        if (v if v is not None else c) != s:
            return None
    return value


def instance(decisions: list[tuple[Any, ...]], cls: list[tuple[Any, ...]],
             shapes: list[list[int]], attrs_cls: dict[str, Any], attrs: dict[str, Any]) -> bool:
    """Whether the concrete sizes give every recorded decision the answer the derivation took."""
    value = _bind(cls, shapes, attrs_cls, attrs)
    if value is None:
        return False
    for d in decisions:
        a, b, answer = (d[0], d[2], d[3]) if len(d) == 4 else d
        va, vb = B._value(B.parse(str(a)), value), B._value(B.parse(str(b)), value)
        if va is None or vb is None or ((va >= vb) if len(d) == 4 else (va == vb)) != answer:
            return False
    return True


def _witness(cls: list[tuple[Any, ...]], shapes: list[list[int]], attrs_cls: dict[str, Any],
             attrs: dict[str, Any]) -> dict[str, int]:
    return _bind(cls, shapes, attrs_cls, attrs) or {}


def class_text(prim: str, cls: list[tuple[Any, ...]], attrs: dict[str, Any],
               column_major: tuple[int, ...] = ()) -> str:
    def show(v: Any) -> Any:  # a polynomial size as its text ('2*n0 + 1')
        return tuple(show(e) for e in v) if isinstance(v, (tuple, list)) else str(v) if isinstance(
            v, Aff) else v
    shown = {k: (show(v) if k in ("shape", "index") else v) for k, v in sorted(attrs.items())}
    layout = f" column-major {list(column_major)}" if column_major else ""
    return f"{prim} {' x '.join(str(list(show(s))) for s in cls)} {shown}{layout}"


def decision_text(d: Any) -> str:
    return f"{d[0]} {'>=' if d[3] else '<'} {d[2]}" if len(d) == 4 else \
        f"{d[0]} {'=' if d[2] else '!='} {d[1]}"


def adjoint_obligation(prim: str, cls: list[tuple[Any, ...]], attrs: dict[str, Any],
                       column_major: tuple[int, ...] = (), witness: dict[str, int] | None = None,
                       ) -> Obligation:
    """``autograd.<prim>.g<hash>``: the VJP is the kernel's adjoint at every size of the class."""
    st, decisions = statement(prim, cls, attrs, column_major, witness)
    text = json.dumps(st, sort_keys=True)
    what = class_text(prim, cls, attrs, column_major)
    ordered = [d for d in decisions if len(d) == 4]  # answered by the witness: part of the name
    key = hashlib.sha256((what + (repr(ordered) if ordered else "")).encode()).hexdigest()[:10]
    ds = [decision_text(d) for d in decisions if len(d) == 4 or d[0] != d[1]]
    return Obligation("adjoint", f"primitive:{prim}", f"autograd.{prim}.g{key}", text,
                      f"the VJP rule of {prim} is the adjoint of its kernel at every size of the class "
                      f"{what}" + (f" with {', '.join(ds)}" if ds else ""),
                      {"statement": st, "decisions": [list(d) for d in decisions], "class": what})


def node_obligation(prim: str, shapes: list[Any], attrs: dict[str, Any],
                    column_major: list[int]) -> Obligation | None:
    """The generic autograd obligation whose class holds this concrete node case, or None (a slice
    to an axis's end is tried in a second class, its start kept, when the first is refused:
    x[128:192] of 192 rows, as x[n - 64:n], has a start the checker cannot place in the axis)."""
    from ..certificates import check

    for from_start in (False, True) if prim == "slice" else (False,):
        try:
            found = symbolic_class(prim, shapes, attrs, from_start)
            if found is None:
                return None
            cls, a = found
            ob = adjoint_obligation(prim, cls, a, tuple(column_major), _witness(cls, shapes, a, attrs))
        except (ValueError, TypeError, AttributeError, KeyError, IndexError):  # a rule the backend cannot run
            return None
        decisions = [tuple(d) for d in ob.data["decisions"]]
        # a class statement the checker rejects (a wrong VJP, or the normal form's incompleteness)
        # is not used: the node keeps its fixed-shape obligation, whose solver proves it or gives a
        # counterexample. The checker decides the class again when the artifacts are checked.
        if instance(decisions, cls, shapes, a, attrs) and check(ob.data["statement"]).ok:
            return ob
    return None


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
    # index arithmetic (guards, offsets, strides, row-major splits and merges)
    ("slice", [[4, 5]], {"index": ((0, 4, 1), (1, 3, 1))}),
    ("slice", [[4, 5]], {"index": ((1, 4, 1), (0, 5, 2))}),
    ("slice", [[3, 6]], {"index": ((0, 3, 1), (5, 6, 1))}),
    ("concat", [[2, 3], [2, 4]], {"axis": 1}), ("concat", [[2, 3], [4, 3], [1, 3]], {"axis": 0}),
    ("conv2d", [[2, 3, 5, 5], [4, 3, 3, 3]], {}),
    ("conv2d", [[2, 3, 5, 5], [4, 3, 3, 3]], {"padding": (1, 1)}),
    ("conv2d", [[2, 3, 7, 8], [4, 3, 3, 2]], {"stride": (2, 2), "padding": (1, 0)}),
    ("conv2d", [[2, 3, 7, 7], [4, 3, 2, 2]], {"dilation": (2, 2)}),
    ("conv2d", [[2, 4, 5, 5], [6, 2, 3, 3]], {"groups": 2, "padding": (1, 1)}),
    ("avg_pool2d", [[2, 3, 6, 6]], {"kernel_size": (2, 2), "stride": (2, 2)}),
    ("avg_pool2d", [[2, 3, 5, 5]], {"kernel_size": (3, 3), "stride": (1, 1), "padding": (1, 1)}),
    ("avg_pool2d", [[2, 3, 5, 5]], {"kernel_size": (3, 3), "stride": (1, 1), "padding": (1, 1),
                                    "count_include_pad": False}),
    ("reshape", [[2, 6]], {"shape": (2, 2, 3)}), ("reshape", [[2, 3, 4]], {"shape": (6, 4)}),
    ("flatten", [[2, 3, 4, 5]], {"start_dim": 1}),
    # data-dependent subscripts: the indices' entries as opaque lookups
    ("gather", [[2, 5], [2, 3]], {"axis": 1}), ("gather", [[4, 3], [2, 3]], {"axis": 0}),
    ("embedding", [[10, 4], [2, 3]], {}), ("embedding", [[10, 4], [3]], {}),
]


@source("primitives.adjoint", library=True)
def library() -> Iterator[Obligation]:
    for prim, shapes, attrs in LIBRARY:
        cls, a = symbolic_class(prim, shapes, attrs)  # type: ignore[misc]
        yield adjoint_obligation(prim, cls, a, witness=_witness(cls, shapes, a, attrs))
    cls, a = symbolic_class("matmul", [[2, 3], [3, 4]], {})  # type: ignore[misc]
    yield adjoint_obligation("matmul", cls, a, (1,))  # nn.Linear's layout: b = Wᵀ
