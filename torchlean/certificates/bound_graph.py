"""The bound graph (standard library only): exact affine forms, nodes, and the node allocator that
the lowering rows (``lower.py``) call. See ``lower.py`` for what a bound graph is.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

Q = Fraction
ONE = Q(1)  # the coefficient of a variable read directly (compared by identity in ``_lin``)


class Unsupported(ValueError):
    """The IR holds something the bound checker does not model."""


def _probe_slots() -> bool:
    """Whether a Fraction built from its two stored fields equals the one the constructor makes
    (``Fraction`` keeps numerator and denominator in the slots ``_numerator``/``_denominator``)."""
    try:
        for v in (0.0, -0.0, 1.5, -3.25e-300, 2.0**900, 0.1):
            f = object.__new__(Fraction)
            f._numerator, f._denominator = v.as_integer_ratio()
            g = Fraction(v)
            if not (f == g and hash(f) == hash(g) and f.numerator == g.numerator
                    and f.denominator == g.denominator and str(f) == str(g)):
                return False
        return True
    except (AttributeError, TypeError):
        return False


_SLOTS = _probe_slots()


def exact_floats(vals: Any) -> list[Fraction]:
    """``Fraction(v)`` for each finite float v: the exact rational it denotes. ``v.as_integer_ratio()``
    is that rational in lowest terms with a positive denominator, which is Fraction's own normal
    form, so the pair is stored as is (a third of the constructor's time on the 266k weights of an
    mnistfc net, which re-checks types and reduces); the constructor where the slots differ."""
    if not _SLOTS:
        return [Fraction(v) for v in vals]
    new, F, out = object.__new__, Fraction, []
    push = out.append
    for v in vals:
        f = new(F)
        f._numerator, f._denominator = v.as_integer_ratio()
        push(f)
    return out


_size = math.prod  # the number of elements of a shape

#: (audit63) the elements a lowering may build, one value's and all values' together: a 2 KB
#: certificate graph broadcasting its input to 2^28 elements took 11 GB past its deadline. The
#: largest lowering of the 68 ONNX models of tests, bench and the shared data holds 538,686; one
#: node of 2^22 relu elements takes ~20 s and ~1 GB, within which no deadline is read
MAX_ELEMENTS = 1 << 22


def cap(n: int) -> int:
    """``n``, the element count of a value about to be built; Unsupported past MAX_ELEMENTS."""
    if n > MAX_ELEMENTS:
        raise Unsupported(f"a value of {n} elements, over the lowering's limit of {MAX_ELEMENTS}")
    return n


def _strides(shape: tuple[int, ...]) -> list[int]:
    """Row-major strides, in elements."""
    return [math.prod(shape[i + 1:]) for i in range(len(shape))]


class Aff:
    """sum_v t[v] * var_v + c, exact; ``t`` is shared read-only between values."""

    __slots__ = ("t", "c")

    def __init__(self, t: dict[int, Fraction], c: Fraction | int = 0):
        # (a Fraction is immutable: kept as is, not rebuilt by Fraction's slow constructor)
        self.t, self.c = t, c if type(c) is Fraction else Q(c)

    def __repr__(self) -> str:
        return f"Aff({self.t}, {self.c})"


Elem = Any  # Fraction | Aff


def add(x: Elem, y: Elem) -> Elem:
    if isinstance(x, Fraction):
        return x + y if isinstance(y, Fraction) else Aff(y.t, y.c + x)
    if isinstance(y, Fraction):
        return Aff(x.t, x.c + y)
    if x.t.keys().isdisjoint(y.t):  # a residual add of two branches over different variables
        return Aff({**x.t, **y.t}, x.c + y.c)
    t = dict(x.t)
    for v, q in y.t.items():
        p = t.get(v)  # not ``t.get(v, 0) + q``: int + Fraction builds a Fraction the slow way
        if p is None:
            t[v] = q
        elif p + q:
            t[v] = p + q
        else:
            del t[v]
    return Aff(t, x.c + y.c)


def scale(x: Elem, q: Fraction) -> Elem:
    if isinstance(x, Fraction):
        return x * q
    if not q:
        return Q(0)
    return Aff({v: a * q for v, a in x.t.items()}, x.c * q)


def neg(x: Elem) -> Elem:
    return scale(x, Q(-1))


def as_aff(x: Elem) -> Aff:
    return x if isinstance(x, Aff) else Aff({}, x)


@dataclass
class Node:
    kind: str  # "input" | "const" | "fn" | "mul" | "max" | "lin"
    offset: int
    size: int
    fn: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    #: fn, lin: [Aff]; mul: [(Aff, Aff)]; max: [[Aff, ...]]; const: [(lo, hi)]
    args: list[Any] = field(default_factory=list)


@dataclass
class BoundGraph:
    nodes: list[Node]
    outputs: list[Aff]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    #: ``fingerprint``'s value, kept by it on first use (a graph is never changed once lowered):
    #: the search's certificate and the checker's replay of it then hash the weights once
    fp: str | None = field(default=None, init=False, repr=False, compare=False)
    #: ``engine.objective``'s form per exact coefficient row, kept by it on first use (like ``fp``:
    #: a pure function of ``outputs``, which never change): a property's atoms are composed once
    #: for the search's bounds, the root check and the replay
    objectives: dict[tuple[Fraction, ...], Aff] = field(default_factory=dict, init=False,
                                                        repr=False, compare=False)
    #: convolution geometries met while lowering (``lower_linear._conv2d``): hints only, never
    #: trusted; ``fast_forms.conv_kernel`` checks a matrix against one before using it
    conv_hints: tuple[tuple[int, ...], ...] = field(default=(), compare=False)

    @property
    def n_in(self) -> int:
        return self.nodes[0].size

    @property
    def n_out(self) -> int:
        return len(self.outputs)

    @property
    def n_vars(self) -> int:
        last = self.nodes[-1]
        return last.offset + last.size


@dataclass
class Tensor:
    shape: tuple[int, ...]
    v: list[Elem]
    #: layer_norm's output: each row's var + eps form (the error column's variance floor reads it)
    var: list[Elem] | None = field(default=None, compare=False)

    def const(self) -> bool:
        return all(isinstance(e, Fraction) for e in self.v)


class Lowerer:
    """Allocates nodes while the rows run. ``wide``: linear rows may lower a data operand's
    elements as ``lin`` variables where composing them would be too costly (``lower.wide_operand``)."""

    def __init__(self, n_in: int, wide: bool = False):
        self.nodes = [Node("input", 0, n_in)]
        self.n = n_in
        self.wide = wide
        self._lin: dict[int, tuple[Aff, Aff]] = {}
        self.conv_hints: set[tuple[int, ...]] = set()  # (``BoundGraph.conv_hints``)

    def _node(self, out: list[Elem], kind: str, args: list[Any], fn: str = "",
              attrs: dict[str, Any] | None = None) -> list[Elem]:
        """``out`` with its ``None`` entries, in order, replaced by the variables of one new node
        whose element arguments are ``args`` (no node when there are none)."""
        if args:
            node = Node(kind, self.n, len(args), fn, dict(attrs or {}), args)
            self.nodes.append(node)
            self.n += len(args)
            holes = iter(range(node.offset, self.n))
            out = [Aff({next(holes): ONE}) if e is None else e for e in out]
        return out

    def const(self, ivs: list[tuple[Fraction, Fraction]]) -> list[Elem]:
        """Elements for exact values or rational intervals (an interval becomes a const node)."""
        return self._node([lo if lo == hi else None for lo, hi in ivs], "const",
                          [(lo, hi) for lo, hi in ivs if lo != hi])

    def lin(self, xs: list[Elem]) -> list[Elem]:
        """Each element that is not a constant or a variable read directly becomes a variable of
        one ``lin`` node (y_i = its form, exactly: a linear intermediate value)."""
        memo = self._lin  # an element already lowered (a value read by two rows): its variable
        out: list[Elem] = [memo[id(e)][1] if id(e) in memo else e for e in xs]
        idx = [i for i, e in enumerate(out) if type(e) is Aff and (
            e.c or len(e.t) != 1 or next(iter(e.t.values())) is not ONE)]
        uniq = list({id(out[i]): out[i] for i in idx}.values())
        made = dict(zip(map(id, uniq), self._node([None] * len(uniq), "lin", uniq)))
        for e in uniq:
            memo[id(e)] = (e, made[id(e)])  # (e kept alive: its id is not reused)
        return [made.get(id(e), e) for e in out]

    def fn(self, name: str, xs: list[Elem], **attrs: Any) -> list[Elem]:
        """f(x) per element: a constant folds to its exact value or a tight rational enclosure
        (integer square roots to 2^-80 relative), data elements are one ``fn`` node."""
        from .functions import FUNCTIONS

        if name not in FUNCTIONS:
            raise Unsupported(f"no function row {name!r}")
        row = FUNCTIONS[name]
        folds = iter(self.const([sqrt_bounds(x, 80) if name == "sqrt" and x >= 0 else row.value(x, **attrs)
                                 for x in xs if isinstance(x, Fraction)]))
        out = [next(folds) if isinstance(x, Fraction) else None for x in xs]
        return self._node(out, "fn", [x for x in xs if isinstance(x, Aff)], name, attrs)

    def mul(self, xs: list[Elem], ws: list[Elem], attrs: dict[str, Any] | None = None) -> list[Elem]:
        """Products x_i·w_i (a scaling where one side is constant, else one ``mul`` node).
        ``attrs``: facts about the products for every real input, known to the caller (layer
        norm's normalised entries): {"within": c}: |x_i·w_i| <= c, the engines intersect the
        node's bounds with [-c, c]; {"ball": (n, R)}: each run of n consecutive products has
        Euclidean norm <= R, ``engine`` bounds a form's terms over one run by R·||a||_2."""
        out: list[Elem] = []
        pairs = []
        for x, w in zip(xs, ws):
            if isinstance(w, Fraction):
                out.append(scale(x, w))
            elif isinstance(x, Fraction):
                out.append(scale(w, x))
            else:
                out.append(None)
                pairs.append((x, w))
        if pairs and attrs and "ball" in attrs and len(pairs) != len(xs):
            raise ValueError("a ball fact needs every product to be data (runs are node elements)")
        return self._node(out, "mul", pairs, attrs=attrs)

    def max(self, groups: list[list[Elem]]) -> list[Elem]:
        out: list[Elem] = []
        todo = []
        for g in groups:
            if all(isinstance(e, Fraction) for e in g):
                out.append(max(g))
            elif len(g) == 1:
                out.append(g[0])
            else:
                out.append(None)
                todo.append([as_aff(e) for e in g])
        return self._node(out, "max", todo)


def sqrt_bounds(q: Fraction | int, k: int = 52) -> tuple[Fraction, Fraction]:
    """Rationals lo <= sqrt(q) <= hi (q >= 0), equal when sqrt(q) is rational, else 1/(d·2^k)
    apart: sqrt(p/d) = sqrt(p·d)/d, and floor(sqrt(p·d·4^k)) / (d·2^k) <= it, with equality
    exactly when p·d is a square (p/d in lowest terms: sqrt(q) rational)."""
    pd = q.numerator * q.denominator << (2 * k)
    r, den = math.isqrt(pd), q.denominator << k
    return Q(r, den), Q(r if r * r == pd else r + 1, den)


def sqrt_up(q: Fraction | int, k: int = 52) -> Fraction:
    """A rational >= sqrt(q), q >= 0 (``sqrt_bounds``'s upper end)."""
    return sqrt_bounds(q, k)[1]


def within(lo: Any, hi: Any, c: Any) -> tuple[Any, Any]:
    """[lo, hi] intersected with [-c, c], kept non-empty (an empty intersection only arises on an
    empty region, where any bound is valid)."""
    lo2 = min(max(lo, -c), c)
    return lo2, max(min(hi, c), lo2)


def _sum(vals: list[Elem]) -> Elem:
    """Sum of elements; data terms merged once (a running pairwise ``add`` would copy dicts)."""
    c, t = Q(0), {}
    for e in vals:
        if isinstance(e, Fraction):
            c += e
            continue
        c += e.c
        for v, q in e.t.items():
            t[v] = t[v] + q if v in t else q
    t = {v: q for v, q in t.items() if q}
    return Aff(t, c) if t else c


def _dyadic_lin(terms: list[tuple[Fraction, Elem]]) -> Elem | None:
    """``_lin`` when every coefficient is dyadic (float weights, float forms: the common case),
    in integers at one scale 2^S (exact: each product n/2^k is (n << (S - k)) / 2^S), one
    Fraction per distinct variable at the end; None when some denominator is not a power of 2."""
    k = 0
    for q, e in terms:
        d = q.denominator
        if d & (d - 1):
            return None
        for a in (*e.t.values(), e.c) if type(e) is Aff else (e,):
            da = a.denominator
            if da & (da - 1):
                return None
            k = max(k, da.bit_length())
    S = k + max(q.denominator.bit_length() for q, _ in terms) if terms else 0
    c, t = 0, {}
    for q, e in terms:
        qn = q.numerator
        if not qn:
            continue
        qs = S - q.denominator.bit_length()  # q * a = qn * an / 2^(bits(dq) - 1 + bits(da) - 1)
        if type(e) is not Aff:
            c += (qn * e.numerator) << (qs - e.denominator.bit_length() + 2)
            continue
        if e.c:
            c += (qn * e.c.numerator) << (qs - e.c.denominator.bit_length() + 2)
        for v, a in e.t.items():
            m = (qn * a.numerator) << (qs - a.denominator.bit_length() + 2)
            t[v] = t[v] + m if v in t else m
    den = 1 << S
    t = {v: Fraction(x, den) for v, x in t.items() if x}
    return Aff(t, Fraction(c, den)) if t else Fraction(c, den)


def plain_vars(elems: list[Elem]) -> list[int] | None:
    """The variable of each element when every element is a distinct variable read directly
    (an ``Aff`` with one term of coefficient ``ONE`` and no constant: the input's or a node's
    outputs), else None. A linear map over such elements has its weights as its coefficients."""
    out = []
    for e in elems:
        if type(e) is not Aff or len(e.t) != 1 or e.c:
            return None
        ((v, a),) = e.t.items()
        if a is not ONE:
            return None
        out.append(v)
    return out if len(set(out)) == len(out) else None


def _plain_lin(terms: list[tuple[Fraction, Elem]]) -> Elem | None:
    """``_lin`` when every element is one variable read directly (coefficient ``ONE``, no
    constant) or a constant: the weights are the coefficients themselves (no product, no new
    Fraction unless a variable repeats), the conv2d / matmul rows over a ReLU's or the input's
    outputs. None when some element is any other form."""
    c, t, filt = Q(0), {}, False
    for q, e in terms:
        if type(e) is not Aff:
            if q and e:
                c += q * e
            continue
        et = e.t
        if e.c or len(et) != 1:
            return None
        for v, a in et.items():
            if a is not ONE:
                return None
            if v in t:
                t[v], filt = t[v] + q, True
            elif q:
                t[v] = q
    if filt:
        t = {v: r for v, r in t.items() if r}
    return Aff(t, c) if t else c


def _lin(terms: list[tuple[Fraction, Elem]]) -> Elem:
    """sum q·e, merged once (the hot loop of conv2d and matmul lowering: a unit coefficient,
    the common case of a variable read directly, skips the multiplication, and zero terms are
    filtered only when a merge or a product could have made one)."""
    if len(terms) > 4:
        got = _plain_lin(terms)
        if got is not None:
            return got
        got = _dyadic_lin(terms)
        if got is not None:
            return got
    c, t, filt = Q(0), {}, False
    for q, e in terms:
        if not q:
            continue
        if type(e) is not Aff:  # a constant (``type``: isinstance on Fraction goes through the ABC)
            c += q * e
            continue
        if e.c:
            c += q * e.c
        for v, a in e.t.items():
            if a is ONE:
                m = q
            else:
                m, filt = q * a, True
            if v in t:
                t[v], filt = t[v] + m, True
            else:
                t[v] = m
    if filt:
        t = {v: r for v, r in t.items() if r}
    return Aff(t, c) if t else c


def _q(x: Fraction) -> str:
    return f"{x.numerator}/{x.denominator}"


def _aff_text(a: Aff, memo: dict[Any, Any]) -> str:
    """"v:n/d,...;n/d". ``memo``: each coefficient's ":n/d" by object id, for one ``fingerprint``
    call (a conv weight is one Fraction object shared by every output position: its text is
    built once; ``memo["keep"]`` keeps the object alive so its id is not reused meanwhile)."""
    get, keep = memo.get, memo.setdefault("keep", [])
    parts = []
    for v, q in sorted(a.t.items()):
        s = get(id(q))
        if s is None:
            n, d = q.as_integer_ratio()  # (one call, not two properties; lowest terms, d > 0)
            s = memo[id(q)] = f":{n}/{d}"
            keep.append(q)
        parts.append(f"{v}{s}")
    return ",".join(parts) + ";" + _q(a.c)


def fingerprint(bg: BoundGraph) -> str:
    """SHA-256 of an injective text encoding of the bound graph: per node its kind, size,
    function name and attrs (repr of sorted items), and every form / interval exactly; then the
    outputs. Any changed weight, node or wiring changes it. Computed once per graph object (kept
    in ``bg.fp``): only ``lower`` makes bound graphs and nothing changes one afterwards."""
    if bg.fp is not None:
        return bg.fp
    h = hashlib.sha256(f"torchlean-boundgraph/1 {bg.in_shape} {bg.out_shape}\n".encode())
    memo: dict[Any, Any] = {}
    for n in bg.nodes:
        h.update(f"{n.kind} {n.offset} {n.size} {n.fn} {sorted(n.attrs.items())!r}\n".encode())
        for a in n.args:
            if n.kind in ("fn", "lin"):
                h.update(_aff_text(a, memo).encode() + b"\n")
            elif n.kind == "mul":
                h.update((_aff_text(a[0], memo) + "*" + _aff_text(a[1], memo) + "\n").encode())
            elif n.kind == "max":
                h.update(("max " + "|".join(_aff_text(e, memo) for e in a) + "\n").encode())
            else:
                h.update(f"[{_q(a[0])},{_q(a[1])}]\n".encode())
    h.update(b"out\n")
    for a in bg.outputs:
        h.update(_aff_text(a, memo).encode() + b"\n")
    bg.fp = h.hexdigest()
    return bg.fp


def arg_rows(node: Node, args: list[Any]) -> list[Any]:
    """A node's argument rows as one list, from ``node.args`` (the forms) or a list laid out like
    it (their bounds): fn and lin one per element; mul the x rows, then the w rows; max the
    members in order."""
    if node.kind == "mul":
        return [x for x, _ in args] + [w for _, w in args]
    return [b for g in args for b in g] if node.kind == "max" else list(args)


#: functions whose rows' interval rule gives the exact range of f over [l, u] (monotone, or exact)
EXACT_RANGE = frozenset({"relu", "leaky_relu", "abs", "exp", "log", "sqrt", "tanh", "erf", "sigmoid",
                         "softplus", "reciprocal", "square"})


def refine_skips(bg: BoundGraph) -> list[list[bool]]:
    """Per node, per argument row (fn: its args; mul: the x rows then the w rows; max: the members
    in order): True where the engines skip refining the row's IBP bound by CROWN (a choice of
    precision only: every relaxation is valid for any valid bounds). Skipped:

    - rows where CROWN cannot beat IBP. In the engines' model (inputs free in the box, const
      variables free in their intervals) IBP of a form is its exact range when the form reads only
      input and const variables (a linear form over a box), or is a·v + c with v a variable whose
      bounds are its exact range: an input or const variable, or one of a node all of whose
      argument rows are such and whose rule is exact on ranges (an ``EXACT_RANGE`` function; a
      product of a const-only operand and such an operand, which are independent). No valid bound
      beats an exact range;
    - the data operand of a product by a const-only operand (a scaling such as batch norm's): its
      McCormick planes are within (uw - lw)·(ux - lx) of the product whatever the bounds, and the
      rows that read the product are refined themselves.
    """
    owner = [k for k, n in enumerate(bg.nodes) for _ in range(n.size)]  # variable -> its node
    leaf = [n.kind in ("input", "const") for n in bg.nodes]
    exact = list(leaf)
    out: list[list[bool]] = []
    for k, n in enumerate(bg.nodes):
        if leaf[k]:
            out.append([])
            continue
        rows = arg_rows(n, n.args)
        # a form over leaf variables only, or a·v + c with v of a node exact on ranges
        best = [all(leaf[owner[v]] for v in f.t) or (len(f.t) == 1 and exact[owner[next(iter(f.t))]])
                for f in rows]
        skip = list(best)
        if n.kind == "lin":  # y = f exactly: IBP of y is f's range
            exact[k] = all(best)
        elif n.kind == "fn":
            exact[k] = n.fn in EXACT_RANGE and all(best)
        elif n.kind == "mul":
            m = n.size
            const_only = [all(bg.nodes[owner[v]].kind == "const" for v in f.t) for f in rows]
            exact[k] = all((const_only[i] and best[m + i]) or (const_only[m + i] and best[i])
                           for i in range(m))
            # (each operand's row also skipped where the other operand is const-only)
            skip = [s or c for s, c in zip(best, const_only[m:] + const_only[:m])]
        out.append(skip)
    return out
