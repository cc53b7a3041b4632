"""Autograd and forward obligations, extracted from the runtime's own rules on the symbolic backend.

For a primitive with spec meaning ``f`` and runtime rule (forward ``F``, vjp ``V``), at small
symbolic shapes:

- ``forward.<name>``: F(x) = f(x) elementwise (so numerically stable rewrites, like softmax's max
  subtraction, are proved equal to the textbook meaning);
- ``autograd.<name>``: V(g, f(x), x) = d/dx <g, f(x)> for every differentiable input, where the
  right side is ``sympy.diff`` of the spec meaning contracted with a symbolic cotangent ``g``.

Both are closed SMT-LIB scripts (``smt.script``); kinks and domains are explicit ``dom_*``
assumptions, transcendentals uninterpreted with ground axiom instances.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import sympy

from ..runtime.rules import RULES
from ..runtime.symbolic import SYMBOLIC, symbols
from ..spec.primitives import PRIMITIVES
from . import smt
from .obligation import NoProofCase, Obligation, source

Domain = Callable[[list[Any]], list[Any]]


def _exact_float(x: float) -> sympy.Expr:
    if x != x or x in (float("inf"), float("-inf")):
        return sympy.Float(x)  # sympy compares against inf internally
    q = Fraction(float(x))
    return sympy.Rational(q.numerator, q.denominator)


@contextmanager
def exact_floats() -> Iterator[None]:
    """While extracting formulas, a Python float met by sympy (``0.5 * x`` in a kernel) means its
    exact binary64 value, not a 15-digit sympy Float: otherwise sympy would round products of
    constants (gelu's c * a) and the formula would no longer be what the code says over the reals."""
    conv = sys.modules["sympy.core.sympify"]._sympy_converter
    old = conv.get(float)
    conv[float] = _exact_float
    try:
        yield
    finally:
        conv[float] = old


@dataclass(frozen=True)
class Case:
    """One instantiation of a primitive: input shapes (None for integer inputs given in ``ints``),
    attributes, concrete integer inputs, and the domain (sympy relations over the input symbols)."""

    shapes: tuple[tuple[int, ...] | None, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    ints: dict[int, Any] = field(default_factory=dict)
    domain: Domain | None = None
    words: tuple[str, ...] = ()
    #: extra ground axiom instances for the forward claim: xs -> [(schema, SMT text)]
    hints: Callable[[list[Any]], list[tuple[str, str]]] | None = None
    #: inputs laid out column-major, so that a rule's layout-dependent branch is proved too
    column_major: tuple[int, ...] = ()
    #: the forward claim is proved with every ``xp.max`` the kernel calls returning fresh symbols
    #: (any value, not only the maximum; see ``OpaqueMax``)
    opaque_max: bool = False
    #: the autograd claim's own domain where the derivative is defined on more than the spec is
    #: (log: 1/x needs x != 0 only); None: the case's ``domain``. The trusted ``claim`` kind
    #: accepts only atoms drawn from the claim's spec side (``certificates/domains.py``)
    grad_domain: tuple[Domain, tuple[str, ...]] | None = None


class OpaqueMax:
    """The symbolic namespace, except that ``max`` returns fresh symbols ``mx<k>_...``: a kernel
    that subtracts a row's maximum only for range (softmax) is proved equal to its meaning for every
    value subtracted, hence for the maximum (an instance). Without it the maximum of n entries is a
    nested Piecewise of size 2^n (softmax over 8 entries: no forward claim within 100 s)."""

    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(SYMBOLIC, name)

    def max(self, x: Any, axis: Any = None, keepdims: bool = False) -> np.ndarray:
        shape = np.sum(np.zeros(np.shape(x)), axis=axis, keepdims=keepdims).shape
        self.calls += 1
        return symbols(f"mx{self.calls}", shape)


def _away_from(pairs: Callable[[list[Any]], list[tuple[Any, Any]]],
               words: str) -> tuple[Domain, tuple[str, ...]]:
    def dom(xs: list[Any]) -> list[Any]:
        return [sympy.Or(a > b, a < b) for a, b in pairs(xs)]

    return dom, (words,)


def _flat(x: Any) -> list[Any]:
    return list(np.asarray(x, dtype=object).reshape(-1))


_kink = _away_from(lambda xs: [(v, 0) for v in _flat(xs[0])], "away from the kink x = 0")
_ties2 = _away_from(lambda xs: [(a, b) for a in _flat(xs[0]) for b in _flat(xs[1])],
                    "away from ties a = b")
_distinct = _away_from(
    lambda xs: [(a, b) for i, a in enumerate(_flat(xs[0])) for b in _flat(xs[0])[i + 1:]],
    "inputs pairwise distinct (no tied maxima)")


def _window_pairs(xs: list[Any], attrs: dict[str, Any]) -> list[Any]:
    """max_pool2d's domain: the inputs of each pooling window pairwise distinct (no tied maximum in
    a window). Only pairs sharing a window, in the order ``_distinct`` lists them (so a single
    window states exactly ``_distinct``'s domain); entries of different windows may tie, which
    keeps a large plane's domain at (windows x taps^2) pairs instead of (plane size)^2."""
    from ..spec.nnops import out_size, pair

    x = np.asarray(xs[0], dtype=object)
    k = pair(attrs.get("kernel_size", (2, 2)))
    s, p = pair(attrs.get("stride", k)), pair(attrs.get("padding", (0, 0)))
    h, w = x.shape[-2:]
    ho, wo = out_size(h, k[0], s[0], p[0], 1), out_size(w, k[1], s[1], p[1], 1)
    pairs: set[tuple[int, int]] = set()
    for i in range(ho):
        for j in range(wo):
            rows = [r for r in range(i * s[0] - p[0], i * s[0] - p[0] + k[0]) if 0 <= r < h]
            cols = [c for c in range(j * s[1] - p[1], j * s[1] - p[1] + k[1]) if 0 <= c < w]
            cells = sorted(r * w + c for r in rows for c in cols)
            pairs.update((a, b) for n, a in enumerate(cells) for b in cells[n + 1:])
    out = []
    for plane in np.ndindex(x.shape[:-2]):
        flat = _flat(x[plane])
        out += [sympy.Or(flat[a] > flat[b], flat[a] < flat[b]) for a, b in sorted(pairs)]
    return out


_window_pairs.with_attrs = True  # type: ignore[attr-defined]  # called with the case's attributes
_window_distinct = (_window_pairs, ("inputs of each pooling window pairwise distinct (no tied maxima)",))


def _positive(words: str, which: int = 0) -> tuple[Domain, tuple[str, ...]]:
    return (lambda xs: [v > 0 for v in _flat(xs[which])]), (words,)


def _nonzero(which: int) -> tuple[Domain, tuple[str, ...]]:
    return (lambda xs: [sympy.Ne(v, 0) for v in _flat(xs[which])]), ("divisor nonzero",)


def _case(shapes, attrs=None, ints=None, dom=None, hints=None, column_major=(), grad_dom=None) -> Case:
    d, w = dom if dom else (None, ())
    return Case(tuple(shapes), dict(attrs or {}), dict(ints or {}), d, w, hints, tuple(column_major),
                grad_domain=grad_dom)


def _var_eps(xs: list[Any], attrs: dict[str, Any]) -> list[Any]:
    """batch_norm's domain: running_var + eps > 0, the argument of the spec's sqrt (eps the case's
    attribute or the primitive's default, exact as the spec reads it)."""
    from ..spec.primitives import PRIMITIVES

    eps = _exact_float(float(attrs.get("eps", PRIMITIVES["batch_norm"].attrs["eps"])))
    return [v + eps > 0 for v in _flat(xs[2])]


_var_eps.with_attrs = True  # type: ignore[attr-defined]


U, B = [(1,)], [(2,), (1,)]
#: the shapes each primitive is proved at (small, but exercising broadcasting and every axis kind)
CASES: dict[str, list[Case]] = {
    **{n: [_case(B)] for n in ("add", "sub", "mul")},
    "div": [_case(B, dom=_nonzero(1))],
    "maximum": [_case(B, grad_dom=_ties2)], "minimum": [_case(B, grad_dom=_ties2)],
    **{n: [_case(U)] for n in ("neg", "exp", "tanh", "erf", "sigmoid", "gelu", "silu")},
    "softplus": [_case(U, hints=lambda xs: _softplus_hints(xs))],
    # log's derivative 1/x is defined at every x != 0: the autograd claim is made there
    "log": [_case(U, dom=_positive("x > 0"), grad_dom=(_nonzero(0)[0], ("x != 0",)))],
    "sqrt": [_case(U, dom=((lambda xs: [v >= 0 for v in _flat(xs[0])]), ("x >= 0",)),
                   grad_dom=_positive("x > 0"))],
    # a kink is excluded from the autograd claim only: kernel and spec agree there (forward claim)
    "relu": [_case(U, grad_dom=_kink)], "abs": [_case(U, grad_dom=_kink)],
    "leaky_relu": [_case(U, {"slope": 0.01}, grad_dom=_kink)],
    "pow": [_case(U, {"exponent": 2}), _case(U, {"exponent": 3})],
    "where": [_case([None, (2,), (1,)], ints={0: np.array([True, False])})],
    # the second case is nn.Linear's layout: b = Wᵀ, a column-major view (a branch of the rule)
    "matmul": [_case([(2, 1, 2), (2, 2)]), _case([(2, 2), (2, 3)], column_major=(1,))],
    "sum": [_case([(2, 2)], {"axes": 1}), _case([(2,)], {"axes": None, "keepdims": True})],
    "mean": [_case([(2, 2)], {"axes": 0})],
    "max": [_case([(3,)], grad_dom=_distinct)],
    "reshape": [_case([(2, 3)], {"shape": (3, 2)})],
    # over the reals a cast is the identity and its VJP the identity (the cotangent cast back):
    # one case per format, so a model's cast node (keyed by its attributes) finds its claim
    "cast": [_case(U, {"dtype": d}) for d in ("float16", "bfloat16", "float32", "float64")],
    "flatten": [_case([(1, 2, 2)])],
    "transpose": [_case([(2, 3)]), _case([(1, 2, 2)], {"axes": (1, 0, 2)})],
    "broadcast_to": [_case([(1, 2)], {"shape": (2, 2)})],
    "concat": [_case([(2,), (1,)], {"axis": 0})],
    "slice": [_case([(4,)], {"index": ((1, 4, 2),)})],
    "gather": [_case([(2, 3), None], {"axis": 1}, ints={1: np.array([[2, 0], [1, 1]])})],
    "embedding": [_case([(3, 2), None], ints={1: np.array([2, 0, 2])})],
    # softmax's forward claim with the row maximum opaque (``OpaqueMax``): any value subtracted
    "softmax": [dataclasses.replace(_case([(3,)], hints=lambda xs: _softmax_hints(xs)), opaque_max=True)],
    "log_softmax": [_case([(3,)], hints=lambda xs: _log_softmax_hints(xs))],
    "conv2d": [_case([(1, 1, 3, 3), (1, 1, 2, 2)])],
    "avg_pool2d": [_case([(1, 1, 2, 2)])],
    "max_pool2d": [_case([(1, 1, 2, 2)], grad_dom=_window_distinct)],
    "batch_norm": [_case([(1, 2), (2,), (2,), (2,), (2,)], dom=(_var_eps, ("running var + eps > 0",)))],
    "layer_norm": [_case([(1, 2), (2,), (2,)])],
}


def _log_of_product(c: Any, v: Any) -> list[tuple[str, str]]:
    """log(exp(c) * v) = c + log(v): the fact behind every log-sum-exp style rewrite."""
    ec, sv = f"(tl_exp {smt.smt(c)})", smt.smt(v)
    return [("exp_pos", f"(> {ec} 0)"), ("log_exp", f"(= (tl_log {ec}) {smt.smt(c)})"),
            ("log_mul", f"(=> (and (> {ec} 0) (> {sv} 0)) (= (tl_log (* {ec} {sv})) "
                        f"(+ (tl_log {ec}) (tl_log {sv}))))")]


def _softplus_hints(xs: list[Any]) -> list[tuple[str, str]]:
    x = xs[0]
    m, a = SYMBOLIC.maximum(x, 0).flat[0], SYMBOLIC.abs(x).flat[0]
    return [*_log_of_product(m, 1 + sympy.exp(-a)), ("exp_zero", "(= (tl_exp 0) 1)"),
            ("exp_add", f"(= (tl_exp {smt.smt(m - a)}) (* (tl_exp {smt.smt(m)}) (tl_exp {smt.smt(-a)})))")]


def _softmax_hints(xs: list[Any]) -> list[tuple[str, str]]:
    """exp(x - m) = exp(x)·exp(-m) and exp(-m) > 0 for each entry, m the row's opaque maximum
    (``OpaqueMax``'s first call, keepdims over the last axis)."""
    x = xs[0]
    out = []
    for row in np.ndindex(x.shape[:-1]):
        m = sympy.Symbol("_".join(["mx1", *map(str, row), "0"]), real=True)
        out.append(("exp_pos", f"(> (tl_exp {smt.smt(-m)}) 0)"))
        for v in x[row]:
            em = f"(tl_exp {smt.smt(-m)})"
            out += [("exp_pos", f"(> (tl_exp {smt.smt(v)}) 0)"),
                    ("exp_add", f"(= (tl_exp {smt.smt(v - m)}) (* (tl_exp {smt.smt(v)}) {em}))")]
    return out


def _log_softmax_hints(xs: list[Any]) -> list[tuple[str, str]]:
    x = xs[0]
    m = SYMBOLIC.max(x, axis=-1, keepdims=True)
    out = []
    for row in np.ndindex(x.shape[:-1]):
        mr = m[row][0]
        out += _log_of_product(mr, sum(sympy.exp(v - mr) for v in x[row]))
    return out


def _inputs(case: Case) -> list[Any]:
    xs: list[Any] = []
    for i, shape in enumerate(case.shapes):
        if i in case.ints:
            xs.append(np.asarray(case.ints[i]))
        else:
            x = symbols(f"x{i}", shape)
            xs.append(np.asfortranarray(x) if i in case.column_major else x)
    return xs


def _names(exprs: Sequence[Any]) -> list[str]:
    syms: set[sympy.Symbol] = set()
    for e in exprs:
        syms |= sympy.sympify(e).free_symbols
    return sorted(s.name for s in syms)


def _obligation(kind: str, subject: str, name: str, pairs: list[tuple[Any, Any]], domain: list[Any],
                statement: str, words: tuple[str, ...], data: dict[str, Any],
                hints: Sequence[tuple[str, str]] = ()) -> Obligation:
    claim = smt.conj([f"(= {smt.smt(a)} {smt.smt(b)})" for a, b in pairs])
    exprs = [e for p in pairs for e in p] + list(domain)
    axioms = smt.axiom_instances(exprs)
    axioms += [h for h in hints if h not in axioms]
    text = smt.script(
        _names(exprs), claim, domain=[smt.smt(d) for d in domain],
        axioms=axioms, comment=f"{name}: {statement}",
    )
    return Obligation(kind, subject, name, text, statement, data, words)


def rule_obligations(
    name: str, forward: Callable[..., Any], vjp: Callable[..., Any], meaning: Callable[..., Any],
    case: Case, *, subject: str, tag: str = "", autograd: bool = True,
) -> Iterator[Obligation]:
    """The forward and autograd obligations of one (forward, vjp) pair against ``meaning``
    (a function of sympy object arrays), at one case (only the forward one without ``autograd``)."""
    with exact_floats():
        gen = _rule_obligations(name, forward, vjp, meaning, case, subject, tag)
        obligations = list(gen) if autograd else [next(gen)]  # the forward one comes first
    yield from obligations


def _numpy_constants(name: str, vjp: Callable[..., Any]) -> None:
    """The constants a rule reads on numpy only, checked (audit42): erf's VJP takes 2/sqrt(pi) from
    the namespace (``xp.m_2_sqrtpi``, exact on the symbolic backend, so the claim compares the exact
    derivative) and falls back to a module constant on numpy and cupy, which the symbolic run never
    reads. The runtime's derivative factor is what that VJP returns on numpy at x = 0, g = 1; the
    rule is what the claim says only if it is 2/sqrt(pi) rounded to binary64 (one rounding, as
    stated in TRUST_BOUNDARIES). A NoProofCase otherwise (bad input: never a pass)."""
    if name != "erf":  # (the only rule reading ``getattr(xp, ..., default)`` for a value)
        return
    import mpmath

    with mpmath.workprec(200):
        want = float(2 / mpmath.sqrt(mpmath.pi))  # (mpmath's float() rounds to nearest)
    with np.errstate(all="ignore"):
        got = np.asarray(vjp(np, np.ones(1), np.zeros(1), np.zeros(1))[0], dtype=np.float64)
    if got.shape != (1,) or got[0] != want:
        raise NoProofCase(f"{name}: its VJP on numpy scales by {got.ravel()[:1]} at x = 0, not 2/sqrt(pi) "
                          f"rounded to binary64 ({want!r}); the proof, run on the symbolic backend, "
                          "reads the exact constant and would not see it")


def _rule_obligations(name, forward, vjp, meaning, case, subject, tag) -> Iterator[Obligation]:
    _numpy_constants(name, vjp)
    xs = _inputs(case)
    spec_out = np.asarray(meaning(*xs, **case.attrs), dtype=object)
    domain = _domain(case.domain, xs, case.attrs)
    data = {"shapes": [list(s) if s else None for s in case.shapes],
            "attrs": {k: repr(v) for k, v in sorted(case.attrs.items())}}
    if case.column_major:
        data["column_major"] = list(case.column_major)
    fwd = np.asarray(forward(OpaqueMax() if case.opaque_max else SYMBOLIC, *xs, **case.attrs), dtype=object)
    if fwd.shape != spec_out.shape:
        raise ValueError(f"{name}: kernel shape {fwd.shape} differs from spec shape {spec_out.shape}")
    yield _obligation(
        "forward", subject, f"forward.{name}{tag}", list(zip(fwd.flat, spec_out.flat)), domain,
        f"the runtime kernel of {name} equals its spec meaning at shapes {data['shapes']}",
        case.words, data, case.hints(xs) if case.hints else ())
    g = symbols("g", spec_out.shape)
    grads = vjp(SYMBOLIC, g, spec_out, *xs, **case.attrs)
    loss = sympy.Add(*(g[i] * spec_out[i] for i in np.ndindex(spec_out.shape)))
    # d loss / dv as sympy.diff computes it (the sum of its terms' derivatives, canonically ordered),
    # over only the terms that read v: one pass over every term per input symbol was quadratic
    # (a where over 16,384 scores: no derivation within minutes)
    reads: dict[Any, list[Any]] = {}
    for t in loss.args if isinstance(loss, sympy.Add) else [loss]:
        for v in t.free_symbols:
            reads.setdefault(v, []).append(t)
    pairs = []
    for k, x in enumerate(xs):
        if k in case.ints:
            continue
        gk = np.asarray(grads[k], dtype=object)
        if gk.shape != x.shape:
            raise ValueError(f"{name}: VJP for input {k} has shape {gk.shape}, input is {x.shape}")
        for idx in np.ndindex(x.shape):
            pairs.append((gk[idx], sympy.Add(*(t.diff(x[idx]) for t in reads.get(x[idx], ())))))
    words = case.words
    if case.grad_domain is not None:
        domain, words = _domain(case.grad_domain[0], xs, case.attrs), case.grad_domain[1]
    yield _obligation(
        "autograd", subject, f"autograd.{name}{tag}", pairs, domain,
        f"the VJP rule of {name} equals the derivative of its spec at shapes {data['shapes']}",
        words, data)


def _domain(dom: Domain | None, xs: list[Any], attrs: dict[str, Any]) -> list[Any]:
    return [] if not dom else dom(xs, attrs) if getattr(dom, "with_attrs", False) else dom(xs)


def primitive_obligations(name: str) -> Iterator[Obligation]:
    prim, rule = PRIMITIVES[name], RULES[name]
    cases = CASES.get(name)
    if not cases:
        raise KeyError(f"no proof shapes for primitive {name!r}: add it to proofs.autograd.CASES")
    for n, case in enumerate(cases):
        yield from rule_obligations(
            name, rule.forward, rule.vjp, prim.sympy, case, subject=f"primitive:{name}",
            tag="" if len(cases) == 1 else f".{n}")


def _project_primitive(name: str) -> bool:
    """Whether ``name``'s rule is a project's own primitive with its proof case given by
    ``@verified(meaning=..., vjp=...)`` on the registered kernel (its claims are that source's,
    checked against the project's artifacts); a NoProofCase when it has none. A name in ``CASES``
    or one torchlean registers is torchlean's (a replaced rule stays here: its shipped artifact
    goes stale)."""
    from ..runtime.rules import SHIPPED
    from .verified import VERIFIED_PRIMITIVES

    if name in CASES or name in SHIPPED:
        return False
    how = ("mark its kernel @tl.verified(meaning=..., vjp=..., shapes=[...]) (the function registered "
           "with runtime.rules.rule; meaning takes sympy object arrays) so that proofs has a case to "
           "prove it at")
    kernel = VERIFIED_PRIMITIVES.get(name)
    if kernel is None:
        other = [n for n, k in VERIFIED_PRIMITIVES.items() if k is RULES[name].forward]
        if other:  # marked, under its function's name: the claim must name the primitive
            raise NoProofCase(f"custom primitive {name!r}: its kernel is @verified as {other[0]!r}; "
                              f"pass name={name!r} to @tl.verified")
        raise NoProofCase(f"custom primitive {name!r} has no proof case: {how}")
    if kernel is not RULES[name].forward:  # a claim about another function proves nothing of the rule
        raise NoProofCase(f"custom primitive {name!r}: the @verified kernel is not the forward "
                          f"registered with runtime.rules.rule({name!r}): {how}")
    return True


@source("primitives.autograd", library=True)
def primitives() -> Iterator[Obligation]:
    for name in sorted(RULES):
        if not _project_primitive(name):
            yield from primitive_obligations(name)
