"""Certified rounding-error bounds for a graph over an input box, and float-sound verdicts.

``bound_certificate(graph, box, fmt)`` puts the graph's IR in the statement, computes the error
bound of every element of every node with the checker's own walk
(``certificates.errorbound.propagate``: the error column of the per-primitive table over real
ranges from the bound table) and returns a self-contained ``errorbound`` certificate that
``torchlean.certificates.check`` replays. ``observed_error`` measures what the runtime really does
on sampled points, for the soundness tests and the CLI's ratio; ``searched_error`` adds a cheap
error-maximising search from those points (both are lower bounds on the worst case, reported
side by side in bench/README.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates import check
from ..certificates.core import OutOfTime, Rejected, digest
from ..certificates.errorbound import _up as up
from ..certificates.errorbound import model_id, propagate
from ..certificates.fast_errors import supported
from ..certificates.rounding import Format, get_format
from ..spec.graph import Graph
from .network import run_float

#: the most nonlinear elements (activations, products, maxima) for which the ranges default to
#: the exact engine's CROWN ("crown": every step of the replay in exact rationals, nothing assumed;
#: ~1-7 s per ACAS Xu box); above it "fast": exact IBP met per element with the fast engine's CROWN
#: (float64 with outward rounding, recomputed by the checker, whose verdict then names the IEEE
#: binary64 model and libm it rests on). Callers that want speed over the assumption-free replay
#: (``verify --float32``, which already replays large VNN certificates in fast mode) pass "fast".
CROWN_LIMIT = 1_000
_AFFINE = {"add", "sub", "neg", "matmul", "conv2d", "sum", "mean", "avg_pool2d", "reshape", "flatten", "cast",
           "transpose", "concat", "slice", "gather", "embedding", "where", "broadcast_to"}


def default_column(ir: dict[str, Any], ranges: str) -> str:
    """"fast" (the float64 sibling of the error column, ``certificates.fast_errors``: milliseconds
    per walk instead of seconds, no tighter) where the ranges are the fast engine's (the statement
    already rests on the float64 model) and every node of the IR has a fast row; else "exact".
    (``bound_certificate`` falls back to "exact" where the default fast column refuses a box.)"""
    return "fast" if ranges == "fast" and supported(ir) is None else "exact"


def default_ranges(graph: Graph) -> str:
    """"crown" up to ``CROWN_LIMIT`` nonlinear elements (fully checked replay), else "fast"."""
    n = sum(int(np.prod(graph.values[v.output].shape)) for v in graph.nodes if v.op not in _AFFINE)
    return "crown" if n <= CROWN_LIMIT else "fast"

#: Documented ulp bounds of the library kernels (numpy tanh/exp in binary32 and binary64), used
#: as the certificate's ``kernel_ulps`` assumption. Measured max on this machine: see bench/README.
DEFAULT_KERNEL_ULPS = Fraction(4)

Box = Sequence[tuple[Any, Any]]


def _q(x: Any) -> Fraction:
    return x if isinstance(x, Fraction) else Fraction(str(x)) if isinstance(x, str) else Fraction(x)


def native_format(graph: Graph, fmt: Format | str = "binary32") -> None:
    """Raise ``Unsupported`` (one line) unless the runtime's own run of ``graph`` on inputs of
    ``fmt`` computes every node in a format that holds ``fmt``: a float graph input, or a float
    constant read by a node other than a cast, of a narrower dtype is refused (audit64). numpy keeps
    float16 + float16 in float16, so a float16 model's batch norm scale ``1 / sqrt(var + eps) * w``
    or a sum of two weights is rounded to float16 even on float32 inputs, and a float16 input is
    rounded to float16 first; the error column charges ``fmt``'s roundings, which bound only a run
    whose every value is of a format holding ``fmt`` (TRUST_BOUNDARIES.md, audit61's rule (1)).
    For the callers that promise the model's own run (``tl.verify.bounds(float32=True)``,
    ``zoo.claims.float32_epsilon``, ``verify --float32``); ``floats bound --format`` emulates."""
    from ..certificates.bound_graph import Unsupported
    from ..certificates.errorbound import holds

    f = get_format(fmt) if isinstance(fmt, str) else fmt
    readers: dict[str, set[str]] = {}
    for node in graph.nodes:
        for n in node.inputs:
            readers.setdefault(n, set()).add(node.op)
    named = [("input", v.name, str(v.dtype)) for v in graph.inputs]
    named += [("weight", k, str(a.dtype)) for k, a in graph.constants.items()
              if readers.get(k, set()) - {"cast"}]
    for what, name, dt in named:
        if dt.startswith(("float", "bfloat")) and not holds(get_format(dt), f):
            raise Unsupported(f"{what} {name!r} is {dt}, which does not hold {f.name}: the model's own run "
                              f"computes in {dt} where {dt} values meet, so a {f.name} bound is not about it "
                              f"(move the model to float32, or bound its graph with floats bound --format "
                              f"{get_format(dt).name})")


def statement(graph: Graph, box: Box, fmt: Format | str = "binary32", mode: str = "rne",
              kernel_ulps: Fraction = DEFAULT_KERNEL_ULPS, input_exact: bool = True,
              ranges: str | None = None, column: str | None = None) -> dict[str, Any]:
    """The claim before its epsilons. ``ranges``: "crown" (the exact engine's CROWN argument
    bounds), "fast" (exact IBP met with the fast engine's CROWN argument bounds) or "ibp"; by
    default ``default_ranges(graph)`` ("fast" when ``column`` is "fast"). ``column``: "exact" or
    "fast" (``certificates.fast_errors``, which takes "fast" ranges); by default
    ``default_column``. An exact statement carries no "column" field (as before it existed)."""
    from ..certificates.bound_graph import Unsupported
    from ..runtime.rules import foreign

    # (audit55) the claim is about a run of the runtime's kernels, bounded by the checker's own rows:
    # a project's primitive has no row of its own there, a project's kernel need not be the row's
    bad = foreign({n.op for n in graph.nodes})
    if bad:
        raise Unsupported(f"{', '.join(bad)}: not torchlean's own primitive or runtime kernel (a "
                          "project's), so no rounding-error bound of the run is certified; refused")
    f = get_format(fmt)
    ir = graph.to_dict()
    ranges = ranges or ("fast" if column == "fast" else default_ranges(graph))
    column = column or default_column(ir, ranges)
    if column not in ("exact", "fast"):
        raise ValueError(f"unknown column {column!r}")
    if column == "fast":
        why = supported(ir)
        if why is not None or ranges != "fast":
            raise ValueError(f"the fast column needs fast ranges and a fast row per node: {why or ranges}")
    return {**({"column": "fast"} if column == "fast" else {}),
        "format": f.to_dict(), "mode": mode, "kernel_ulps": str(kernel_ulps),
        "input_box": [[str(_q(lo)), str(_q(hi))] for lo, hi in box],
        "input_exact": bool(input_exact),
        "ranges": ranges,
        "graph": ir,
        "model": model_id(ir),
        "epsilon": [],
    }


#: significant digits of a per-node step claim (the checker only requires claim >= its recomputed
#: bound; the outputs' epsilon keeps a float's precision, since the verdicts are grown by it)
STEP_DIGITS = 4


def short_up(q: Fraction, digits: int = STEP_DIGITS) -> str:
    """A decimal >= q >= 0 with ``digits`` (or one more) significant digits, "m" or "me-k": a step of
    a fast walk is a float's exact value, ~35 characters as p/q; hundreds of leaves each carry a
    thousand of them (a 227-leaf ACAS Xu certificate: 22 MB)."""
    if q <= 0:
        return "0"
    # (integers only, no Fraction arithmetic: a walk formats ~1,000 of these, and Fraction's
    # normalising operators were a third of a fast-column ACAS Xu walk)
    n, d = q.numerator, q.denominator
    e = len(str(n // d)) - 1 if n >= d else -len(str(d // n))  # ~log10 q
    k = digits - 1 - e
    n, d = (n * 10**k, d) if k >= 0 else (n, d * 10**-k)
    m = -(-n // d)  # (ceiling)
    return f"{m}e{-k}" if k else str(m)


def claims(steps: list[list[Fraction]]) -> tuple[list[list[str]], list[str]]:
    """(per-node steps, epsilon) as short strings, each rounded up from the computed bound (steps
    to ``STEP_DIGITS`` significant digits, epsilon to a float)."""
    return [[short_up(e) for e in s] for s in steps[:-1]], [str(up(e)) for e in steps[-1]]


def bound_certificate(graph: Graph, box: Box, fmt: Format | str = "binary32", mode: str = "rne",
                      kernel_ulps: Fraction = DEFAULT_KERNEL_ULPS, input_exact: bool = True,
                      ranges: str | None = None, splits: int = 0,
                      progress: Callable[[int, list[Fraction]], None] | None = None,
                      column: str | None = None) -> dict[str, Any]:
    """An ``errorbound`` certificate: epsilon per output with |f_fmt(x) - f_real(x)| <= epsilon on
    the box. ``input_exact``: the points are already values of ``fmt`` (else they are rounded).
    ``splits`` > 0: an ``errorbound-split`` certificate instead, the box bisected adaptively at
    most ``splits`` times (``splitbound.py``; tighter on large boxes, cost ~ 2 * splits + 1 leaf
    bounds to generate and the leaves to replay); ``progress(leaves, epsilon)`` after each split.
    ``ranges``/``column``: as ``statement``.

    ``box``: one (lo, hi) pair per input element, flattened in row-major order (finite, lo <= hi).

    Example::

        model = tl.nn.Sequential(tl.nn.Linear(2, 8), tl.nn.Tanh(), tl.nn.Linear(8, 1))
        graph = tl.trace(model, tl.zeros(1, 2))             # or bridge.load_onnx("net.onnx")
        cert = bound_certificate(graph, [(-1, 1), (0, 0.5)], "bfloat16")
        check(cert).ok, epsilons(cert)                       # True, [Fraction(...)]: one per output
    """
    if splits < 0:
        raise ValueError("splits must be >= 0")
    _check_box(graph, box)
    stmt = statement(graph, box, fmt, mode, kernel_ulps, input_exact, ranges, column)
    n_in = sum(int(np.prod(v.shape)) for v in graph.inputs)
    if len(stmt["input_box"]) != n_in:
        raise ValueError(f"box has {len(stmt['input_box'])} intervals for {n_in} inputs")
    if splits:
        from .splitbound import split_certificate

        return split_certificate(stmt, splits, progress)
    try:
        steps, stmt["epsilon"] = claims(propagate(stmt))
    except Rejected as e:
        # (a deadline is no refusal: OutOfTime is a Rejected, and the exact column's walk after
        # it ran its whole engine pass before its first tick: ~30 s past a
        # verify --float32 deadline on eran's 784-input nets: bench/README.md, "h-f32eran")
        if column is not None or stmt.get("column") != "fast" or isinstance(e, OutOfTime):
            raise
        # the default fast column refused this box where the exact one may not: the fast engine's
        # ranges can be unbounded where exact IBP's are not (softmax scores past binary64's exp)
        stmt = statement(graph, box, fmt, mode, kernel_ulps, input_exact, stmt["ranges"], "exact")
        steps, stmt["epsilon"] = claims(propagate(stmt))
    return {"kind": "errorbound", "statement": stmt, "digest": digest(stmt), "steps": steps}


def _check_box(graph: Any, box: Any) -> None:
    """TypeError / ValueError, in one line, for a model where a Graph is wanted or a box that is not
    finite (lo, hi) pairs with lo <= hi."""
    if not isinstance(graph, Graph):
        raise TypeError(f"expected a Graph (tl.trace(model, x) or bridge.load_onnx(path)), got "
                        f"{type(graph).__name__}")
    for i, item in enumerate(box):
        try:
            lo, hi = (_q(v) for v in item)  # (a NaN or an infinity has no Fraction)
        except (TypeError, ValueError, OverflowError, ZeroDivisionError):
            raise ValueError(f"box[{i}] is not a (lo, hi) pair of finite numbers: {item!r}") from None
        if lo > hi:
            raise ValueError(f"box[{i}] = ({float(lo)}, {float(hi)}): lo > hi")


def epsilons(cert: dict[str, Any]) -> list[Fraction]:
    """The per-output bounds ε of an ``errorbound`` certificate, as exact fractions."""
    return [Fraction(e) for e in cert["statement"]["epsilon"]]


@dataclass
class Observed:
    points: int
    max_error: np.ndarray  # per output, |f32 - reference|
    reference_error: np.ndarray  # per output: certified bound on |reference - exact|


def sample_box(box: Box, n: int, dtype: Any = np.float32, seed: int = 0) -> np.ndarray:
    """``n`` points of the box in ``dtype`` (uniform, plus the corners first when few inputs)."""
    rng = np.random.default_rng(seed)
    lo = np.array([float(_q(a)) for a, _ in box])
    hi = np.array([float(_q(b)) for _, b in box])
    pts = rng.uniform(lo, hi, size=(n, len(box)))
    if len(box) <= 10:
        corners = np.array(np.meshgrid(*[[a, b] for a, b in zip(lo, hi)])).reshape(len(box), -1).T
        pts[: min(n, len(corners))] = corners[: min(n, len(corners))]
    pts = pts.astype(dtype)
    # keep the points inside the box after rounding to dtype
    return np.clip(pts, *_ends(box, dtype))


def _ends(box: Box, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """The least and the largest value of ``dtype`` inside each interval of the box (a bound
    rounded to nearest may fall outside it)."""
    lo = np.array([_q(a) for a, _ in box], dtype=object)
    hi = np.array([_q(b) for _, b in box], dtype=object)
    fl, fh = lo.astype(np.float64).astype(dtype), hi.astype(np.float64).astype(dtype)
    up, down = np.array(np.inf, dtype), np.array(-np.inf, dtype)
    fl = np.array([f if Fraction(float(f)) >= q else np.nextafter(f, up) for f, q in zip(fl, lo)], dtype)
    fh = np.array([f if Fraction(float(f)) <= q else np.nextafter(f, down) for f, q in zip(fh, hi)], dtype)
    return fl, fh


def observed_error(graph: Graph, box: Box, n: int = 10_000, seed: int = 0,
                   dtype: Any = np.float32, reference: bool = True) -> Observed:
    """Max |runtime(dtype) - real| over ``n`` sampled points of the box (points in ``dtype``).

    The real value is taken from the runtime in binary64 on the same points, whose own distance
    to the real value is certified by a binary64 ``errorbound`` certificate (replayed here); the
    tests also compare a subset against mpmath (``spec.exact.evaluate``). ``reference=False``
    skips that certificate (``reference_error`` is then NaN): for a figure printed next to a
    certified bound, where the reference's own error (binary64, ~1e-16 relative) is not used and
    its certificate costs as much as the binary32 one (the zoo's ``--certify`` lines).
    """
    x = sample_box(box, n, dtype, seed)
    inside = [(Fraction(float(v.min())), Fraction(float(v.max()))) for v in x.T]
    y = run_float(graph, x, dtype)
    ref = run_float(graph, x.astype(np.float64), np.float64)
    err = np.max(np.abs(y.astype(np.float64) - ref), axis=0)
    if not reference:
        return Observed(n, err, np.full(err.shape, np.nan))
    cert64 = bound_certificate(graph, inside, "binary64", ranges="ibp")
    verdict = check(cert64)
    if not verdict.ok:
        raise RuntimeError(f"binary64 reference bound did not replay: {verdict.reason}")
    return Observed(n, err, np.array([float(e) for e in epsilons(cert64)]))


def searched_error(graph: Graph, box: Box, n: int = 2_000, seed: int = 0, starts: int = 4,
                   rounds: int = 10, per_round: int = 12, dtype: Any = np.float32,
                   ulp_rounds: int = 0, ulp_starts: int = 8, ulp_per_round: int = 64) -> np.ndarray:
    """Max |runtime(dtype) - runtime(binary64)| per output found by a cheap error-maximising
    search (a lower bound on the true worst case, like sampling, never a certificate): the ``n``
    uniform points and corners of ``sample_box`` (same seed, so it includes ``observed_error``'s
    points), then per output a hill climb from the ``starts`` worst points: each round perturbs
    every current point by a Gaussian step (width/4 halved each round, kept in the box, rounded
    to ``dtype``) ``per_round`` times and keeps the worst. Rounding errors are not smooth in x, so
    this is a random local search, not gradient ascent. ``ulp_rounds`` > 0 then searches the
    float neighbourhoods of the ``ulp_starts`` worst points: each round moves every coordinate of
    each point by a random whole number of its ulps in [-K, K] (``ulp_per_round`` candidates per
    point; K from 2^20 down to 1 by factors of 4, then 1-4 ulps for the remaining rounds) and
    keeps the worst; near a point where the terms are largest the error varies like noise from
    one float to the next, so this samples its tail (the demo: 2.7e-7 -> 3.6e-7). The binary64
    side's own distance to the real value is the ``reference_error`` of ``observed_error``."""
    rng, rng_ulp = np.random.default_rng(seed + 1), np.random.default_rng(seed + 2)
    lo, hi = _ends(box, dtype)

    def err(x: np.ndarray) -> np.ndarray:
        y64 = run_float(graph, x.astype(np.float64), np.float64)
        return np.abs(run_float(graph, x, dtype).astype(np.float64) - y64)

    x = sample_box(box, n, dtype, seed)
    e = err(x)
    best = e.max(axis=0)
    width = (hi.astype(np.float64) - lo.astype(np.float64)) / 4
    for j in range(e.shape[1]):
        cur = x[np.argsort(-e[:, j])[:starts]]
        cur_e = np.sort(e[:, j])[::-1][:starts]
        for r in range(rounds):
            cand = np.repeat(cur, per_round, axis=0).astype(np.float64)
            cand += rng.standard_normal(cand.shape) * width * 0.5 ** r
            cand = np.clip(cand.astype(dtype), lo, hi)
            ce = err(cand)[:, j].reshape(len(cur), per_round)
            k = ce.argmax(axis=1)
            better = ce[np.arange(len(cur)), k] > cur_e
            cur[better] = cand.reshape(len(cur), per_round, -1)[np.arange(len(cur)), k][better]
            cur_e = np.maximum(cur_e, ce.max(axis=1))
        if ulp_rounds:
            pool, pool_e = np.concatenate([cur, x]), np.concatenate([cur_e, e[:, j]])
            top = np.argsort(-pool_e)[:ulp_starts]
            cur, cur_e = _ulp_climb(pool[top], pool_e[top], lambda c, j=j: err(c)[:, j], lo, hi, rng_ulp,
                                    ulp_rounds, ulp_per_round)
        best[j] = max(best[j], cur_e.max())
    return best


def _ulp_climb(cur: np.ndarray, cur_e: np.ndarray, f: Callable[[np.ndarray], np.ndarray], lo: np.ndarray,
               hi: np.ndarray, rng: Any, rounds: int, per: int) -> tuple[np.ndarray, np.ndarray]:
    """``searched_error``'s float-neighbourhood phase: the ``len(cur)`` worst points so far."""
    scales = [4 ** k for k in range(10, -1, -1)]
    for r in range(rounds):
        K = scales[r] if r < len(scales) else 1 + r % 4
        cand = np.repeat(cur, per, axis=0)
        step = np.spacing(cand).astype(np.float64) * rng.integers(-K, K + 1, size=cand.shape)
        cand = np.clip((cand.astype(np.float64) + step).astype(cur.dtype), lo, hi)
        pts, es = np.concatenate([cur, cand]), np.concatenate([cur_e, f(cand)])
        top = np.argsort(-es, kind="stable")[:len(cur)]
        cur, cur_e = pts[top], es[top]
    return cur, cur_e


def widen(lower: Any, upper: Any, eps: Any) -> tuple[np.ndarray, np.ndarray]:
    """Float-sound output bounds: real bounds [lower, upper] widened by eps, rounded outward to
    binary64 so the returned floats still enclose the float network's outputs."""
    lo = np.atleast_1d(np.asarray(lower, dtype=np.float64))
    hi = np.atleast_1d(np.asarray(upper, dtype=np.float64))
    e = np.broadcast_to(np.asarray([float(_up(Fraction(x))) for x in np.atleast_1d(eps)]), lo.shape)
    return (np.nextafter(lo - e, -np.inf), np.nextafter(hi + e, np.inf))


def _up(q: Fraction) -> float:
    f = float(q)
    return f if Fraction(f) >= q else float(np.nextafter(f, np.inf))


def float_sound_bounds(graph: Graph, box: Box, real_lower: Any, real_upper: Any,
                       fmt: Format | str = "binary32", mode: str = "rne", splits: int = 0
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Bounds on the *float* network's outputs over the box: the verifier's real bounds widened by
    the certified epsilon (over ``splits`` bisections of the box, see ``bound_certificate``).
    Returns (lower, upper, certificate); replay the certificate with
    ``torchlean.certificates.check`` to rely on the widening. ``real_lower`` / ``real_upper``: one
    value per output (e.g. ``tl.verify.bounds``' ``lower`` / ``upper`` over the same box), lower <= upper.

    Example::

        model, x = tl.nn.Sequential(tl.nn.Linear(2, 3), tl.nn.Tanh()), np.array([[0.5, -1.0]])
        b = tl.verify.bounds(model, x, eps=0.1)               # real bounds over the box around x
        box = [(v - 0.1, v + 0.1) for v in np.ravel(x)]
        lo, hi, cert = float_sound_bounds(tl.trace(model, tl.tensor(x)), box, b.lower, b.upper)
    """
    rl, ru = np.asarray(real_lower, dtype=np.float64), np.asarray(real_upper, dtype=np.float64)
    n_out = sum(int(np.prod(graph.values[o].shape)) for o in graph.outputs) if isinstance(graph, Graph) \
        and graph.values else None
    if rl.shape != ru.shape or (n_out is not None and rl.size != n_out):
        raise ValueError(f"real_lower {rl.shape} and real_upper {ru.shape} must have one value per "
                         f"output ({n_out})")
    if not (rl <= ru).all():
        raise ValueError("real_lower must be <= real_upper (are the two swapped?)")
    cert = bound_certificate(graph, box, fmt, mode, splits=splits)
    lo, hi = widen(real_lower, real_upper, epsilons(cert))
    return lo, hi, cert
