"""The index backend (issue 17): the runtime's kernels and VJP rules run on arrays of index forms.

An ``IArr`` is a shape (integers, or ``Aff`` polynomials in size symbols) and a function from an
index tuple (``Aff`` expressions in bound variables and symbols) to an index form: a list of
monomials (coefficient, sums over bound variables, ``ge``/``eq`` guards, array entries), the
fragment ``certificates/adjoint.py`` decides. ``XP`` is the ``xp`` namespace the rules call.

Semantics (trusted as statement reading; ``tests/test_proofs_adjoint.py`` evaluates every class's
forms against numpy at concrete sizes): a sum over an axis of integer size is unrolled (one term
per value, so kernel taps and stacked slices are read at constant indices), over a symbolic size
it is a bound variable; reading ``a[start:stop:step]`` is ``a.at(start + step*i)``; writing
``a[key] = v`` makes ``a.at(i)`` = old - [i in key's region] old + [i in region] v(j) with
``i = start + step*j`` (a ``ge`` pair for step 1, an ``eq`` guard otherwise), and ``a[key] += v``
adds [i in region] v(j) alone; concatenation reads piece k under the guard
off_k <= i <= off_k + len_k - 1; a row-major reshape that splits an axis reads the source at the
row-major combination of the parts, one that merges axes keeps the parts' sizes so that a sum over
the merged axis is a sum over its parts (the same terms: the row-major map is a bijection).
Arrays have copy semantics: a result captures its operands as they are when it is made, and a
slice read is not a view one can write through (writing into it raises).

Sizes are compared while the rules run (``sum_to``'s ``d == 1``, slice clamping, window counts):
an equality of different polynomials answers "different", an order comparison that does not
hold or fail for every symbol >= 1 is answered by the case being classified (``WITNESS``), and
both are recorded in ``DECISIONS``: a concrete case uses the class only when its sizes answer
every one alike.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from ..certificates.adjoint import _add, _mul, _nonneg

DECISIONS: list[tuple[str, str, str, bool]] = []
OPAQUE: dict[str, tuple[Any, ...]] = {}  # opaque arrays made while deriving: name -> shape
WITNESS: dict[str, int] = {}
FRESH = [itertools.count()]

Poly = dict


def require_shape(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(f"index backend: {what}")


class Aff:
    """A polynomial with integer coefficients in size symbols and bound variables (a size or an
    index); constant results of arithmetic come back as ``int``."""

    __slots__ = ("p", "parts")

    def __init__(self, p: Poly, parts: Any = None):
        self.p = {m: c for m, c in p.items() if c}
        self.parts = parts  # a merged-axis index: [(part index, part size)...], row-major

    @staticmethod
    def of(x: Any) -> Aff:
        if isinstance(x, Aff):
            return x
        require_shape(type(x) is int or hasattr(x, "__index__") and not isinstance(x, float),
                      f"not an integer size or index: {x!r}")
        return Aff({(): int(x)})

    def __add__(self, o: Any) -> Any:
        return _norm(_add(self.p, Aff.of(o).p))

    __radd__ = __add__

    def __sub__(self, o: Any) -> Any:
        return _norm(_add(self.p, Aff.of(o).p, -1))

    def __rsub__(self, o: Any) -> Any:
        return _norm(_add(Aff.of(o).p, self.p, -1))

    def __neg__(self) -> Any:
        return _norm(_add({}, self.p, -1))

    def __mul__(self, o: Any) -> Any:
        return _norm(_mul(self.p, Aff.of(o).p))

    __rmul__ = __mul__

    def __floordiv__(self, k: Any) -> Any:
        """Exact on the symbolic part only: every non-constant coefficient divisible by k."""
        require_shape(type(k) is int and k > 0 and all(c % k == 0 for m, c in self.p.items() if m),
                      f"({self}) // {k}")
        return _norm({m: (c // k if m else c // k) for m, c in self.p.items()})

    def __eq__(self, o: Any) -> bool:  # type: ignore[override]
        if not isinstance(o, (Aff, int)):
            return False
        d = _add(self.p, Aff.of(o).p, -1)
        same = not d
        if any(m for m in d) or isinstance(o, Aff):  # recorded: a concrete case must agree
            DECISIONS.append((str(self), str(o), same))
        return same

    def __ne__(self, o: Any) -> bool:  # type: ignore[override]
        return not self.__eq__(o)

    def __ge__(self, o: Any) -> bool:
        d = _add(self.p, Aff.of(o).p, -1)
        if _nonneg(d):
            return True
        if _nonneg(_add({(): -1}, d, -1)):
            return False
        value = _value(d, WITNESS)
        require_shape(value is not None, f"{self} >= {o} depends on the sizes")
        DECISIONS.append((str(self), ">=", str(o), value >= 0))
        return value >= 0

    def __le__(self, o: Any) -> bool:
        return Aff.of(o) >= self if isinstance(o, int) else o >= self

    def __lt__(self, o: Any) -> bool:
        return not self >= o

    def __gt__(self, o: Any) -> bool:
        return not self <= o

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.p.items())))

    def __index__(self) -> int:
        raise TypeError(f"symbolic size {self} used as a Python integer")

    def __repr__(self) -> str:
        return text(self.p)

    @property
    def name(self) -> str:
        (m,) = self.p
        return m[0]


def Size(name: str) -> Aff:  # noqa: N802  (a symbolic size, as the classes name them)
    return Aff({(name,): 1})


def text(p: Poly) -> str:
    terms = []
    for m, c in sorted(p.items(), key=lambda t: (-len(t[0]), t[0])):
        body = "*".join(m)
        terms.append(f"{c}" if not m else body if c == 1 else f"-{body}" if c == -1 else f"{c}*{body}")
    return " + ".join(terms).replace("+ -", "- ") or "0"


def parse(s: str) -> Poly:
    """The polynomial ``text`` wrote (decisions are stored as text)."""
    out: Poly = {}
    for t in s.replace("- ", "+ -").split(" + "):
        t = t.strip()
        sign = -1 if t.startswith("-") else 1
        parts = t.lstrip("-").split("*")
        c = int(parts[0]) if parts[0].isdigit() else 1
        names = tuple(sorted(p for p in parts if not p.isdigit()))
        out = _add(out, {names: sign * c})
    return out


def _value(p: Poly, env: dict[str, int]) -> int | None:
    total = 0
    for m, c in p.items():
        for n in m:
            if n not in env:
                return None
            c *= env[n]
        total += c
    return total


def _norm(p: Poly) -> Any:
    p = {m: c for m, c in p.items() if c}
    return p.get((), 0) if not any(m for m in p) else Aff(p)


def _is1(d: Any) -> bool:
    return type(d) is int and d == 1


def _json(e: Any) -> Any:
    if isinstance(e, tuple):  # a lookup [value = name[index]]
        return [_json(e[1]), e[2], [_json(i) for i in e[3]]]
    if type(e) is int:
        return e
    p = Aff.of(e).p
    if len(p) == 1 and next(iter(p.items()))[1] == 1 and len(next(iter(p))) == 1:
        return next(iter(p))[0]
    return {("*".join(m) or "1"): c for m, c in sorted(p.items())}


Mono = tuple[Fraction, tuple[tuple[str, Any], ...], tuple[Any, ...], tuple[Any, ...],
             tuple[tuple[str, tuple[Any, ...]], ...]]  # c, sums, ge, eq, atoms


def mul(p: list[Mono], q: list[Mono]) -> list[Mono]:
    return [(c1 * c2, s1 + s2, g1 + g2, e1 + e2, a1 + a2)
            for c1, s1, g1, e1, a1 in p for c2, s2, g2, e2, a2 in q]


def scale(p: list[Mono], c: Fraction | int, sums: tuple = (), ge: tuple = (), eq: tuple = ()) -> list[Mono]:
    return [(c * c0, sums + s, ge + g, eq + e, a) for c0, s, g, e, a in p]


def indices(shape: tuple[Any, ...], parts: dict[int, Any] | None = None
            ) -> list[tuple[tuple[Any, ...], tuple[tuple[str, Any], ...]]]:
    """Every index of ``shape`` as (index tuple, its sums): integer axes unrolled, symbolic ones a
    fresh bound variable each (a merged axis: one per part, combined row-major)."""
    per_axis = []
    for k, d in enumerate(shape):
        if parts and k in parts:
            combos = [((), ())]
            for size in parts[k]:
                combos = [(ix + (i,), s + s2) for ix, s in combos for i, s2 in _axis(size)]
            per_axis.append([(_combine(ix, parts[k]), s) for ix, s in combos])
        else:
            per_axis.append(_axis(d))
    out = []
    for combo in itertools.product(*per_axis):
        out.append((tuple(i for i, _ in combo), tuple(v for _, s in combo for v in s)))
    return out


def _axis(d: Any) -> list[tuple[Any, tuple[tuple[str, Any], ...]]]:
    if type(d) is int:
        return [(i, ()) for i in range(d)]
    v = f"i{next(FRESH[0])}"
    return [(Aff({(v,): 1}), ((v, d),))]


def _combine(ix: tuple[Any, ...], sizes: tuple[Any, ...]) -> Any:
    total: Any = 0
    for i, d in zip(ix, sizes):
        total = total * d + i
    total = Aff.of(total)
    return Aff(total.p, list(zip(ix, sizes)))


def sum_over(shape: tuple[Any, ...], f: Callable[[tuple[Any, ...]], list[Mono]],
             parts: dict[int, Any] | None = None) -> list[Mono]:
    out: list[Mono] = []
    for ix, sums in indices(shape, parts):
        out += scale(f(ix), 1, sums)
    return out


class IArr:
    """An array of index forms: ``shape`` and ``at(index) -> list of monomials``."""

    dtype = "index form"

    def __init__(self, shape: tuple[Any, ...], at: Callable[[tuple[Any, ...]], list[Mono]],
                 flags: Any = None, parts: dict[int, Any] | None = None):
        self.shape, self.at, self.parts, self.view = tuple(shape), at, parts or {}, None
        if flags is not None:  # an input's memory layout, which a rule may branch on
            self.flags = flags

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __add__(self, other: Any) -> IArr:
        return _elementwise(self, other, lambda p, q: p + q)

    __radd__ = __add__

    def __sub__(self, other: Any) -> IArr:
        return _elementwise(self, other, lambda p, q: p + scale(q, -1))

    def __mul__(self, other: Any) -> IArr:
        if isinstance(other, (int, float, Fraction)) and not isinstance(other, bool):
            at, c = self.at, Fraction(other)
            return IArr(self.shape, lambda i: scale(at(i), c), parts=self.parts)
        return _elementwise(self, other, mul)

    def __rsub__(self, other: Any) -> IArr:
        return _elementwise(lift(other), self, lambda p, q: p + scale(q, -1))

    def __matmul__(self, other: Any) -> IArr:
        return _xp().matmul(self, other)

    def __rmatmul__(self, other: Any) -> IArr:
        return _xp().matmul(other, self)

    __rmul__ = __mul__

    def __neg__(self) -> IArr:
        return self * -1

    def __iadd__(self, other: Any) -> IArr:
        out = self + other
        if self.view is not None:  # ``a[key] += v``: the write adds v alone
            out.view = ("iadd", self.view, other)
        return out

    def __truediv__(self, n: Any) -> IArr:
        """Division by a count: an integer, or 1/(c * product of symbols) as the scalar atom
        inv_<names> (an opaque real: an identity holding for every value of it holds for 1/n), or
        an array of counts free of the inputs (avg_pool2d's window sizes) as the opaque array
        inv_<hash of its index form>: the same form, the same array (``OPAQUE`` keeps the shape)."""
        if isinstance(n, IArr):
            saved, FRESH[0] = FRESH[0], itertools.count(10 ** 6)  # the form's own variable names
            probe = tuple(0 if _is1(d) else _fresh(d)[0] for d in n.shape)
            form = n.at(probe)
            FRESH[0] = saved
            require_shape(all(not a for *_, a in form), "division by an array of the inputs")
            key = repr((n.shape, probe, form)).encode()
            name = f"inv_{hashlib.sha256(key).hexdigest()[:12]}"
            OPAQUE[name] = n.shape
            return self * IArr(n.shape, lambda i: [(Fraction(1), (), (), (), ((name, tuple(i)),))])
        p = Aff.of(n).p
        require_shape(len(p) == 1 and next(iter(p.values())) != 0, f"division by {n!r}")
        (names, k), = p.items()
        inv = ((f"inv_{'_'.join(names)}", ()),) if names else ()
        at = self.at
        return IArr(self.shape, lambda i: [(c / k, s, g, e, a + inv) for c, s, g, e, a in at(i)])

    def reshape(self, *shape: Any) -> IArr:
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)
        return _reshape(self, shape)

    def __getitem__(self, key: Any) -> IArr:
        if isinstance(key, ILeaf):  # w[idx] (embedding): row idx[i] of w
            return take(self, key, None)
        axes, out_shape = _key(self, key)
        at = self.at

        def read(i: tuple[Any, ...]) -> list[Mono]:
            it = iter(i)
            return at(tuple(start if step is None else start + step * next(it) for start, step, _ in axes))
        out = IArr(tuple(out_shape), read)
        out.view = (self, key)
        return out

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, IArr) and value.view and value.view[0] == "iadd" \
                and value.view[1][0] is self and value.view[1][1] is key:
            self.write(key, value.view[2], False)  # a[key] += delta: only delta is added
        else:
            self.write(key, value, True)

    def write(self, key: Any, value: Any, overwrite: bool) -> None:
        """a[key] = value (``overwrite``) or a[key] += value: a.at(i) becomes old(i) (- [i in the
        region] old(i)) + [i in the region] value(j) with i = start + step*j per axis."""
        require_shape(self.view is None or self.view[0] == "iadd", "writing into a slice of an array")
        axes, region = _key(self, key)
        delta = lift(value)
        require_shape(delta.ndim <= len(region), f"assigning {delta.shape} into {tuple(region)}")
        old, vat = self.at, _xp().broadcast_to(delta, tuple(region)).at

        def at(i: tuple[Any, ...]) -> list[Mono]:
            out = list(old(i))
            j, sums, ge, eq = [], (), [], []
            for (start, step, n), ik in zip(axes, i):
                d = ik - start
                if step is None:  # an integer index: the axis is not in the region's shape
                    eq.append(d)
                elif step in (1, -1) or (type(d) is int and d % step == 0):
                    j.append(d // step if type(d) is int else d * step)
                    ge += [j[-1], n - 1 - j[-1]]
                elif type(d) is int:  # between two strided positions
                    return out
                elif _is1(n):
                    j.append(0)
                    eq.append(d)
                else:
                    v = f"i{next(FRESH[0])}"
                    j.append(Aff({(v,): 1}))
                    sums += ((v, n),)
                    eq.append(d - step * j[-1])
            if any(type(e) is int and e < 0 for e in ge) or any(type(e) is int and e for e in eq):
                return out  # outside the region at these constant indices
            ge = tuple(Aff.of(e) for e in ge if type(e) is not int)
            eq = tuple(Aff.of(e) for e in eq if type(e) is not int)
            if overwrite:
                out += scale(old(i), -1, sums, ge, eq)
            return out + scale(vat(tuple(j)), 1, sums, ge, eq)
        self.at = at

    def sum(self, axis: Any = None, keepdims: bool = False) -> IArr:
        return _xp().sum(self, axis, keepdims)

    def transpose(self, *axes: Any) -> IArr:
        perm = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return _xp().transpose(self, perm or None)

    @property
    def T(self) -> IArr:  # noqa: N802
        return _xp().transpose(self)


def lift(x: Any) -> IArr:
    """An operand as an array: an ``IArr``, a number, or a numpy array of constants (a selection
    matrix): its entries are read at constant indices only (its sizes are integers: unrolled)."""
    if isinstance(x, IArr):
        return x
    if isinstance(x, (int, float, Fraction)) and not isinstance(x, bool):
        c = Fraction(x)
        return IArr((), (lambda i: [(c, (), (), (), ())]) if c else (lambda i: []))
    require_shape(hasattr(x, "shape") and hasattr(x, "dtype") and x.dtype.kind in "iuf",
                  f"an operand of type {type(x).__name__}")

    def at(i: tuple[Any, ...]) -> list[Mono]:
        require_shape(all(type(k) is int for k in i), "a constant array read at a symbolic index")
        c = Fraction(x[i].item())
        return [(c, (), (), (), ())] if c else []
    return IArr(tuple(int(d) for d in x.shape), at)


def _key(x: IArr, key: Any) -> tuple[list[tuple[Any, Any, Any]], list[Any]]:
    """Per axis (start, step, length) for a slice, (index, None, None) for an integer, and the
    shape of the selected region (basic indexing; numpy's bounds and clamping for either sign of
    the step)."""
    key = key if isinstance(key, tuple) else (key,)
    require_shape(all(isinstance(k, slice) or isinstance(k, (int, Aff)) for k in key)
                  and len(key) <= x.ndim, f"index {key!r}")
    key = key + (slice(None),) * (x.ndim - len(key))
    axes, shape = [], []
    for k, n in zip(key, x.shape):
        if not isinstance(k, slice):
            k = k + n if isinstance(k, int) and k < 0 else k
            axes.append((k, None, None))
            continue
        step = 1 if k.step is None else k.step
        require_shape(type(step) is int and step != 0, f"slice step {step!r}")
        lo, hi = (0, n) if step > 0 else (-1, n - 1)  # numpy's clamping range per direction

        def clamp(b: Any, default: Any, n: Any = n, lo: Any = lo, hi: Any = hi) -> Any:
            if b is None:
                return default
            b = b + n if isinstance(b, int) and b < 0 else b
            return lo if b <= lo else hi if b >= hi else b
        start, stop = clamp(k.start, lo if step > 0 else hi), clamp(k.stop, hi if step > 0 else lo)
        first, last = (start, stop) if step > 0 else (stop, start)
        length = 0 if last <= first else (last - first + abs(step) - 1) // abs(step)
        axes.append((start, step, length))
        shape.append(length)
    return axes, shape


def _elementwise(x: IArr, y: Any, op: Callable[[list[Mono], list[Mono]], list[Mono]]) -> IArr:
    """numpy broadcasting (aligned from the right; a size-1 axis repeats)."""
    x, y = lift(x), lift(y)
    n = max(x.ndim, y.ndim)
    px, py = (1,) * (n - x.ndim) + x.shape, (1,) * (n - y.ndim) + y.shape
    shape = []
    for d, e in zip(px, py):
        require_shape(_is1(d) or _is1(e) or d == e, f"broadcast {x.shape} with {y.shape}")
        shape.append(e if _is1(d) else d)
    xat, yat = x.at, y.at

    def pick(z: IArr, i: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(0 if _is1(d) else v for d, v in zip(z.shape, i[n - z.ndim:]))
    return IArr(tuple(shape), lambda i: op(xat(pick(x, i)), yat(pick(y, i))))


def _prod(ds: Any) -> Any:
    out: Any = 1
    for d in ds:
        out = out * d
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as polynomials (no decision recorded: a fact about the class, not about sizes)."""
    return Aff.of(a).p == Aff.of(b).p


def _divides(a: Any, b: Any) -> bool:
    """a divides b as single terms (c * product of symbols)."""
    pa, pb = Aff.of(a).p, Aff.of(b).p
    if len(pa) != 1 or len(pb) != 1:
        return False
    (ma, ca), = pa.items()
    (mb, cb), = pb.items()
    rest = list(mb)
    for n in ma:
        if n not in rest:
            return False
        rest.remove(n)
    return cb % ca == 0


def _reshape(x: IArr, shape: tuple[Any, ...]) -> IArr:
    """Row-major reshape whose axes group into splits (one source axis -> several) and merges
    (several -> one); a -1 is the total over the product of the other sizes (exact)."""
    total = _prod(x.shape)
    if any(type(d) is int and d == -1 for d in shape):
        rest = [d for d in shape if not (type(d) is int and d == -1)]
        left = Aff.of(total).p
        for d in rest:  # cancel the other sizes' factors from the total
            (m, c), = Aff.of(d).p.items()
            (tm, tc), = left.items()
            names = list(tm)
            for nm in m:
                require_shape(nm in names, f"reshape {x.shape} -> {shape}")
                names.remove(nm)
            require_shape(tc % c == 0, f"reshape {x.shape} -> {shape}")
            left = {tuple(names): tc // c}
        shape = tuple(_norm(left) if type(d) is int and d == -1 else d for d in shape)
    require_shape(_same(_prod(shape), total), f"reshape {x.shape} -> {shape}")
    src = [k for k, d in enumerate(x.shape) if not _is1(d)]
    dst = [k for k, d in enumerate(shape) if not _is1(d)]
    groups, a, b = [], 0, 0  # (source axes, target axes) with equal products
    while a < len(src) and b < len(dst):
        ga, gb = [src[a]], [dst[b]]
        a, b = a + 1, b + 1
        while not _same(pa := _prod(x.shape[k] for k in ga), pb := _prod(shape[k] for k in gb)):
            if len(ga) == 1 and b < len(dst) and _divides(pb, pa):  # a split
                gb.append(dst[b])
                b += 1
            elif len(gb) == 1 and a < len(src) and _divides(pa, pb):  # a merge
                ga.append(src[a])
                a += 1
            else:
                require_shape(False, f"reshape {x.shape} -> {shape}: not splits and merges")
        groups.append((ga, gb))
    require_shape(a == len(src) and b == len(dst), f"reshape {x.shape} -> {shape}")
    parts = {gb[0]: tuple(x.shape[k] for k in ga) for ga, gb in groups if len(ga) > 1}
    at = x.at

    def read(i: tuple[Any, ...]) -> list[Mono]:
        out: list[Any] = [0] * x.ndim
        for ga, gb in groups:
            if len(ga) == 1:  # a split: the row-major combination of the target indices
                out[ga[0]] = Aff.of(_combine(tuple(i[k] for k in gb), tuple(shape[k] for k in gb)))
                out[ga[0]] = _norm(out[ga[0]].p)
            else:  # a merge: the index was made from the parts (``indices``)
                ix = i[gb[0]]
                require_shape(isinstance(ix, Aff) and ix.parts is not None
                              and [s for _, s in ix.parts] == [x.shape[k] for k in ga],
                              "reading a merged axis at an index not made from its parts")
                for k, (p, _) in zip(ga, ix.parts):
                    out[k] = p
        return at(tuple(out))
    return IArr(shape, read, parts=parts)


def _xp() -> Any:
    from .index_xp import XP  # the namespace's module builds on this one
    return XP


class _Kind:
    kind = "i"


class ILeaf:
    """An integer input (indices): its entries are opaque integers, read through lookups
    [u = name[index]] (the ``in`` factors of ``certificates/adjoint.py``)."""

    dtype = _Kind()

    def __init__(self, name: str, shape: tuple[Any, ...]):
        self.name, self.shape = name, tuple(shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def astype(self, _: Any) -> ILeaf:
        return self

    def lookup(self, value: Any, i: tuple[Any, ...]) -> tuple[Any, ...]:
        """The factor [value = self[i]], at i broadcast to this shape (size-1 axes read at 0)."""
        i = i[len(i) - self.ndim:]
        return ("in", Aff.of(value), self.name, tuple(0 if _is1(d) else k for d, k in zip(self.shape, i)))


class Grid:
    """Coordinate ``axis`` of an index grid (``xp.indices(shape, sparse=True)[axis]``)."""

    def __init__(self, axis: int, shape: tuple[Any, ...]):
        self.axis = axis
        self.shape = tuple(d if k == axis else 1 for k, d in enumerate(shape))


def _fresh(size: Any) -> tuple[Any, tuple[tuple[str, Any], ...]]:
    v = f"i{next(FRESH[0])}"
    return Aff({(v,): 1}), ((v, size),)


def take(x: IArr, idx: ILeaf, axis: int | None) -> IArr:
    """x[idx] along axis 0 (``axis`` None: idx's axes replace it) or take_along_axis(x, idx, axis)
    (idx's axes aligned with x's): at i, the sum over u < size of [u = idx[i]] x[.., u, ..]."""
    xat, ax = x.at, 0 if axis is None else axis % x.ndim
    if axis is None:
        shape = idx.shape + x.shape[1:]
    else:
        require_shape(idx.ndim == x.ndim and all(k == ax or d == e for k, (d, e) in enumerate(
            zip(idx.shape, x.shape))), f"take_along_axis {x.shape} with {idx.shape}")
        shape = idx.shape

    def at(i: tuple[Any, ...]) -> list[Mono]:
        u, sums = _fresh(x.shape[ax])
        src = (u, *i[idx.ndim:]) if axis is None else (*i[:ax], u, *i[ax + 1:])
        return scale(xat(src), 1, sums, (), (idx.lookup(u, i[:idx.ndim]),))
    return IArr(shape, at)


def scatter_add(a: IArr, key: tuple[Any, ...], v: Any) -> None:
    """add.at(a, key, v) for a key of index arrays (ILeaf, Grid) on a's leading axes, broadcast
    together to shape S: a[j] += the sum over i in S of [j_k matches key_k at i, each k] v[i, rest]."""
    require_shape(all(isinstance(k, (ILeaf, Grid)) for k in key) and len(key) <= a.ndim, f"add.at key {key}")
    n = max(len(k.shape) for k in key)
    S = []
    for ds in zip(*[(1,) * (n - len(k.shape)) + k.shape for k in key]):
        big = [d for d in ds if not _is1(d)]
        require_shape(all(d == big[0] for d in big), f"add.at key shapes {[k.shape for k in key]}")
        S.append(big[0] if big else 1)
    val = _xp().broadcast_to(lift(v), tuple(S) + a.shape[len(key):])
    old, vat = a.at, val.at

    def at(j: tuple[Any, ...]) -> list[Mono]:
        def term(i: tuple[Any, ...]) -> list[Mono]:
            eq = tuple(k.lookup(jk, i) if isinstance(k, ILeaf) else Aff.of(jk - i[n - len(k.shape) + k.axis])
                       for k, jk in zip(key, j))
            return scale(vat(i + j[len(key):]), 1, (), (), eq)
        return old(j) + sum_over(tuple(S), term)
    a.at = at
