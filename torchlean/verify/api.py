"""Bounds and robustness verdicts straight from a torchlean model or traced graph: no VNN-LIB.

    import torchlean as tl
    b = tl.verify.bounds(model, x, eps=0.01)               # sound output bounds, by the checker's engine
    r = tl.verify.robustness(model, x, eps=0.01, label=3)  # "verified" | "falsified" | "unknown"

A model (a ``tl.nn.Module`` or any function of one tensor) is traced with ``tl.trace`` at an input of
x's shape (put it in ``eval()`` mode first: batch norm and dropout are traced as they run); a
``Graph`` is used as it is. The input region is the box {x' : |x' - x|_inf <= eps}, intersected with
``clip = (lo, hi)`` when given, with its ends computed exactly from the float values of x and eps.

Soundness: ``bounds`` returns numbers computed by the trusted checker's own engine (the bound
table's ``certificates.fast_engine`` / ``certificates.engine``), rounded outward,
so they are checked by construction (``BoundsResult.checked_by`` names the engine). ``robustness``
searches (``verify.general``: PGD on the runtime, input-split branch and bound on the table's
bounds) and reports "verified" only when the checker accepted the split-tree certificate, and
"falsified" only when the checker's exact evaluation accepted the counterexample; anything else is
"unknown", with the reason. With ``float32=True`` "falsified" has no certificate: the point is a
binary32 input where the runtime's own float32 run and the bit-exact emulation both fail the
property, each checked exactly (``verify.float32.float_counterexample``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from numbers import Real
from typing import Any

import numpy as np

from ..certificates.bounds import _form_entries
from ..certificates.enclosures import DomainError
from ..certificates.property import Atom, Region, Spec
from ..spec.graph import Graph
from . import general, table


def _graph(model_or_graph: Any, x: np.ndarray, other: np.ndarray | None = None) -> Graph:
    """The graph of a model traced faithfully at ``x`` (or a Graph as it is). ``other``: a second
    point of the box, traced again and compared (nodes, attributes, constants): a model that reads
    its input's raw ``.data`` or draws from numpy's generator can escape the faithful tracer's
    hooks, and its two traces then differ, so it is refused instead of answered."""
    if isinstance(model_or_graph, Graph):
        g = model_or_graph if model_or_graph.values else model_or_graph.check()
        shapes = [tuple(v.shape) for v in g.inputs]
        if len(shapes) != 1 or int(np.prod(shapes[0])) != x.size:
            raise ValueError(f"x has shape {x.shape}, the graph's input(s) {', '.join(map(str, shapes))}: "
                             "give one point of the graph's one input")
        return _torchlean_primitives(g, kernels=False)
    from ..runtime.tensor import tensor
    from ..runtime.trace import TraceError, require_eval, require_traceable, trace

    require_traceable(model_or_graph, "tl.verify")  # a PyTorch module: the message names from_torch
    require_eval(model_or_graph, "tl.verify")  # (a dropout mask traced in training mode is a constant)
    try:
        g = trace(model_or_graph, tensor(x), faithful=True)
        # (the same computation: ``Graph.fingerprint`` covers nodes, attributes, constants' bits)
        again = None if other is None else trace(model_or_graph, tensor(other), faithful=True)
        if again is not None and not (g.fingerprint() == again.fingerprint()
                                      and _graph_runs_model(g, model_or_graph, other)):
            raise TraceError("the model's trace at another point of the box differs from the trace at x, "
                             "or from the model run there (a value read from or written to the input's "
                             "raw .data, numpy randomness, or state changed by forward): the graph would "
                             "not be the model's function")
    except TraceError as e:
        raise TraceError(f"tl.verify: {e}; refused") from None
    return _torchlean_primitives(g, kernels=True)


def _torchlean_primitives(g: Graph, kernels: bool) -> Graph:
    """``g``, once every node is a primitive torchlean ships and, for a traced model
    (``kernels``), was run by torchlean's own kernel; ``Unsupported`` (one line) otherwise.
    The trusted checker bounds torchlean's meaning of each primitive with its own row: a project's
    primitive has none but what the project wrote into the checker's tables, and a project's kernel
    for a shipped primitive (``RULES["relu"] = ...``) need not compute that meaning (audit55: a
    leaky kernel under ``relu`` was "verified" while the model as run misclassified at x)."""
    from ..certificates.bound_graph import Unsupported
    from ..runtime.rules import SHIPPED, foreign

    bad = foreign({n.op for n in g.nodes}, kernels)
    if bad:
        own = [op for op in bad if op in SHIPPED]
        raise Unsupported(
            f"tl.verify: {', '.join(own)}: the model ran a kernel other than torchlean's own, and the "
            "checker bounds torchlean's meaning; refused (restore torchlean's rule)" if own else
            f"tl.verify: {', '.join(bad)}: not torchlean's primitive(s) (a project's), so the trusted "
            "checker has no row of its own to bound them; refused")
    return g


def _graph_runs_model(g: Graph, model: Any, x: np.ndarray) -> bool:
    """Whether the graph traced at another point, evaluated at ``x``, gives what the model run
    eagerly at ``x`` gives (the tracer promises bit-equal results; a small tolerance keeps a BLAS
    that rounds differently from refusing a faithful model). Each side gets its own copy of x (a
    model may write its input's .data)."""
    from ..runtime.execute import run_graph
    from ..runtime.tensor import no_grad, tensor
    from ..runtime.trace import flatten_outputs

    with no_grad():
        want = [np.asarray(o.numpy(), dtype=np.float64) for o in flatten_outputs(model(tensor(x)))]
    got = [np.asarray(v, dtype=np.float64) for v in run_graph(g, {g.inputs[0].name: tensor(x).data})]
    return len(got) == len(want) and all(
        a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=1e-9) for a, b in zip(got, want))


def _other_point(x: np.ndarray, lo: tuple[Fraction, ...], hi: tuple[Fraction, ...]) -> np.ndarray:
    """A second point of the box, away from x (seeded, so a run repeats): each coordinate drawn in
    [lo, hi] as float64."""
    rng = np.random.default_rng(12345)
    lo_f = np.array([float(v) for v in lo])
    hi_f = np.array([float(v) for v in hi])
    return np.clip(lo_f + rng.uniform(0.0, 1.0, lo_f.size) * (hi_f - lo_f), lo_f, hi_f).reshape(x.shape)


def _array(x: Any) -> np.ndarray:
    data = getattr(x, "numpy", None)
    return np.asarray(data() if callable(data) else x, dtype=np.float64)


def input_box(x: Any, eps: Any, clip: tuple[float, float] | None = None
              ) -> tuple[tuple[Fraction, ...], tuple[Fraction, ...]]:
    """The exact box [x - eps, x + eps] (∩ clip), flattened, from the floats of x and eps."""
    xs = _array(x).ravel()
    ea = _array(eps)
    try:
        es = np.broadcast_to(ea, _array(x).shape).ravel()
    except ValueError:
        raise ValueError(f"eps has shape {ea.shape}, which does not broadcast to x's {_array(x).shape}: "
                         "give one number or an array of x's shape") from None
    if (es < 0).any() or not np.isfinite(es).all() or not np.isfinite(xs).all():
        raise ValueError("x and eps must be finite and eps >= 0")
    lo = [Fraction(float(v)) - Fraction(float(e)) for v, e in zip(xs, es)]
    hi = [Fraction(float(v)) + Fraction(float(e)) for v, e in zip(xs, es)]
    if clip is not None:
        if len(clip) != 2 or not all(np.isfinite(float(c)) for c in clip) or clip[0] > clip[1]:
            raise ValueError(f"clip must be (lo, hi) with finite lo <= hi, got {clip!r}")
        c0, c1 = Fraction(float(clip[0])), Fraction(float(clip[1]))
        lo, hi = [max(v, c0) for v in lo], [min(v, c1) for v in hi]
        if any(a > b for a, b in zip(lo, hi)):
            raise ValueError("the clip range does not meet the box")
    return tuple(lo), tuple(hi)


@dataclass
class BoundsResult:
    """Sound bounds lower <= f(x') <= upper for every x' in the box (output's shape, float64).

    ``checked_by`` names the trusted engine that computed them: the numbers *are* the checker's,
    rounded outward, not a search's claim awaiting a check."""

    lower: np.ndarray
    upper: np.ndarray
    method: str
    checked_by: str
    network: str  # the checker's fingerprint of the lowered network

    def __str__(self) -> str:
        """Each output's interval with 6 significant digits, rounded outward (lower ends down, upper
        ends up: ``_outward``), so that what is printed still holds; ``repr`` and numpy's printing of
        the arrays round to nearest and may not (audit41)."""
        from .. import _outward

        rows = ", ".join(f"[{_outward.down(a)}, {_outward.up(b)}]"
                         for a, b in zip(self.lower.ravel(), self.upper.ravel()))
        return f"{self.method} bounds per output (outward): {rows}"

    def contains(self, y: Any) -> bool:
        """Whether outputs y (the output's shape, or a batch of them) lie within the bounds."""
        y = _array(y).reshape(-1, self.lower.size)
        return bool(((y >= self.lower.ravel()) & (y <= self.upper.ravel())).all())


def bounds(model_or_graph: Any, x: Any, eps: Any, method: str = "crown",
           clip: tuple[float, float] | None = None, exact: bool = False,
           float32: bool = False) -> BoundsResult:
    """Sound bounds of every output of ``model_or_graph`` over the box |x' - x|_inf <= eps.

    method: "crown" (back-substitution; per output the tighter of CROWN and IBP), "alpha-crown"
    (CROWN with slopes optimised by ``verify.alpha``, the bound still computed by the engine) or "ibp".
    exact: use the table's exact rational engine instead of its float64 one (both sound; the exact
    one is slightly tighter and much slower on large models).
    float32: bound the model *run in binary32* on ``tl.tensor(x')`` (x' rounded to binary32, as the
    runtime does) instead of its real-number meaning: each output's bounds are widened by the
    rounding-error bound of a checked ``errorbound`` certificate (``floats.errorbound``; any
    summation order, FMA allowed). Without it, a float32 run can leave the bounds by its rounding
    error (visible when eps is 0 or tiny). A model whose float inputs or weights are of a format
    that does not hold binary32 (``model.to(dtype="float16")``) is refused (``Unsupported``): its own
    run computes in float16 where float16 values meet (batch norm's scale, a sum of two weights), which
    no binary32 bound covers (audit64); move it to float32 first.
    Raises ``certificates.bound_graph.Unsupported`` (one line) for a network the checker cannot bound.

    Example::

        model = tl.nn.Sequential(tl.nn.Linear(2, 8), tl.nn.Tanh(), tl.nn.Linear(8, 3)).eval()
        x = np.array([[0.5, -1.0]])
        b = tl.verify.bounds(model, x, eps=0.01)        # b.lower, b.upper: arrays of shape (1, 3)
        b32 = tl.verify.bounds(model, x, eps=0.01, float32=True)
        b32.contains(model(tl.tensor(x)).numpy())      # True: the float32 run lies within
    """
    if method not in ("crown", "alpha-crown", "ibp"):
        raise ValueError(f"unknown method {method!r}: 'crown', 'alpha-crown' or 'ibp'")
    xa = _array(x)
    lo, hi = input_box(xa, eps, clip)
    g = _graph(model_or_graph, xa, _other_point(xa, lo, hi))
    t = table.target(g)
    try:
        low, up = _bounds_box(t, lo, hi, method, exact)
    except DomainError as e:
        # The fast engine's outward charges can leave a function's domain by a hair where the real
        # bound stays inside it (a variance's lower end -7e-301 under sqrt, for a real 0): the exact
        # engine decides a small graph; a large one keeps the refusal, which names exact=True.
        if exact:
            raise
        if _form_entries(t.bg) > EXACT_FALLBACK:
            raise DomainError(f"{e} (by the float64 engine; exact=True bounds it in rationals, "
                              "slowly on a graph this size)") from None
        exact = True
        low, up = _bounds_box(t, lo, hi, method, exact)
    shape = g.values[g.outputs[0]].shape if len(g.outputs) == 1 else (t.bg.n_out,)
    engine = table.engine_name(t, exact)
    if float32:
        low, up = _widen_by_float32_error(g, lo, hi, np.asarray(low, float).ravel(),
                                          np.asarray(up, float).ravel())
        engine += " + certificates.errorbound (binary32 run, inputs rounded to binary32)"
    return BoundsResult(low.reshape(shape), up.reshape(shape), method, engine, table.network_id(t))


#: the largest bound graph (coefficients of its affine forms, ``bounds._form_entries``) whose fast
#: domain refusal ``bounds`` retries with the exact engine: a few seconds at most (measured
#: 2026-12-07 at load ~10 on x -> Linear(8, w) -> std * itself -> Linear(w, 4): 704 entries 0.56 s,
#: 1,408 entries 1.95 s, growing faster than linearly)
EXACT_FALLBACK = 2_000


def _bounds_box(t: Any, lo: tuple[Fraction, ...], hi: tuple[Fraction, ...], method: str,
                exact: bool) -> tuple[np.ndarray, np.ndarray]:
    if method == "alpha-crown":
        return table.alpha_bounds_box(t, lo, hi, exact=exact)
    return table.output_bounds_box(t, lo, hi, method, exact)


def _widen_by_float32_error(g: Graph, lo: tuple[Fraction, ...], hi: tuple[Fraction, ...],
                            low: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """low - e_j and up + e_j, rounded outward, where e_j bounds |f_binary32(rd(x')) - f(x')|_j over
    the box: from an ``errorbound`` certificate the trusted checker accepted (``input_exact=False``:
    the run starts from x' rounded to binary32, as ``tl.tensor`` does)."""
    from .. import _outward
    from ..certificates import check
    from ..certificates.float_vnn import epsilons
    from ..floats.errorbound import bound_certificate, native_format

    cert = bound_certificate(g, list(zip(lo, hi)), "binary32", input_exact=False)
    v = check(cert)
    if not v.ok:
        raise ValueError(f"the checker refused the binary32 error bound: {v.reason}")
    # the bound is of the graph run in binary32; a float16 model's own run is not that (audit64;
    # after the checker, whose refusal of a narrowing cast names the cast: audit61)
    native_format(g, "binary32")
    errs = epsilons(cert)
    if len(errs) != low.size:
        raise ValueError(f"the error bound has {len(errs)} outputs, the bounds {low.size}")
    return (np.array([_outward.float_out(Fraction(float(a)) - e, "down") for a, e in zip(low, errs)]),
            np.array([_outward.float_out(Fraction(float(b)) + e, "up") for b, e in zip(up, errs)]))


@dataclass
class RobustnessResult:
    """verdict: "verified" (the checker accepted ``certificate``, a vnn-unsat split tree),
    "falsified" (the checker's exact evaluation accepted ``counterexample``, also in
    ``certificate`` as a vnn-sat one; with ``float32=True`` no certificate: see ``robustness``)
    or "unknown" (``reason`` says why). ``counterexample`` is that checked point exactly: float64
    (a float32 value where the box holds one), or an object array of Fractions when no float64
    point of the box next to it is a counterexample."""

    verdict: str
    reason: str
    certificate: dict[str, Any] | None = None
    counterexample: np.ndarray | None = None
    spec: Spec | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.verdict == "verified"


def robustness_spec(lo: tuple[Fraction, ...], hi: tuple[Fraction, ...], n_out: int, label: int) -> Spec:
    """The unsafe set of "argmax is ``label``" over the box: OR over j != label of y_label <= y_j."""
    if not 0 <= label < n_out:
        raise ValueError(f"label {label} out of range for {n_out} outputs")
    disj = []
    for j in range(n_out):
        if j != label:
            a = [Fraction(0)] * n_out
            a[label], a[j] = Fraction(1), Fraction(-1)
            disj.append((Atom(tuple(a), Fraction(0), False),))
    return Spec(len(lo), n_out, (Region(lo, hi, tuple(disj)),))


def robustness(model: Any, x: Any, eps: Any, label: int, timeout: float = 30.0,
               clip: tuple[float, float] | None = None, seed: int = 0,
               float32: bool = False) -> RobustnessResult:
    """Is ``label`` the strict argmax of the outputs at every x' with |x' - x|_inf <= eps (∩ clip)?

    Returns a checked verdict (see ``RobustnessResult``); a tie counts as not robust.
    ``float32``: about the model *run in binary32* on ``tl.tensor(x')`` instead, for every real x'
    of the box rounded to nearest binary32 (``verify.float32``; the epsilon charges the input's
    rounding, as ``bounds(float32=True)``'s does, tests/test_float_sound_input_rounding.py):
    "verified" carries a ``vnn-unsat-float`` certificate, "falsified" a binary32 input where the
    runtime's own float32 run of the traced graph (numpy kernels and BLAS, a batch of one, this
    machine) and the bit-exact emulation (correctly rounded, sums left to right) are both not
    robust (no certificate: their word; audit59: the emulation alone could disagree with the
    runtime). ``x`` is one input (a
    batch of one): the output must be one vector of scores, ``label`` a whole number indexing it;
    ``timeout`` in seconds, > 0.

    Example::

        model = tl.nn.Sequential(tl.nn.Linear(2, 8), tl.nn.ReLU(), tl.nn.Linear(8, 3)).eval()
        x = np.array([[0.5, -1.0]])
        label = int(model(tl.tensor(x)).argmax())
        r = tl.verify.robustness(model, x, eps=0.001, label=label, timeout=10)
        r.verdict, r.reason                            # ("verified", "unsat: ... replayed ...")
    """
    label = _label(label)
    if not (isinstance(timeout, Real) and 0 < timeout < float("inf")):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    xa = _array(x)
    lo, hi = input_box(xa, eps, clip)
    g = _graph(model, xa, _other_point(xa, lo, hi))
    t = table.target(g)
    _one_score_vector(g, t.bg.n_out, xa.shape)
    spec = robustness_spec(lo, hi, t.bg.n_out, label)
    if float32:
        return _decide_float32(t, spec, timeout, xa.shape)
    return decide(t, spec, timeout, seed, shape=xa.shape)


def _label(label: Any) -> int:
    """``label`` as an int: a Python or numpy integer, or a one-element integer tensor/array; a
    float such as 1.5 is refused (int() would truncate it to another class)."""
    data = getattr(label, "numpy", None)
    arr = np.asarray(data() if callable(data) else label)
    whole_float = arr.dtype.kind == "f" and arr.size == 1 and bool(np.isfinite(arr).all()) \
        and float(arr.reshape(())) == int(arr.reshape(()))
    if arr.size != 1 or (arr.dtype.kind not in "iu" and not whole_float):
        raise TypeError(f"label must be a whole class index, got {label!r}")
    return int(arr.reshape(()))


def _one_score_vector(g: Graph, n_out: int, x_shape: tuple[int, ...] = ()) -> None:
    """ValueError unless the graph's output is one vector of class scores (at most one axis longer
    than 1) with two classes or more: for a batch of several inputs, ``label`` would index all their
    scores together and the verdict would be about the wrong question. That includes n inputs
    giving one score each, shape (n, 1), which the axis count alone lets through (audit46): an
    output whose first axis is x's first axis, longer than 1, is a batch."""
    shapes = [g.values[o].shape for o in g.outputs]
    batch = len(x_shape) >= 2 and x_shape[0] > 1 and len(shapes) == 1 and len(shapes[0]) >= 2 \
        and shapes[0][0] == x_shape[0]
    if len(shapes) != 1 or sum(d > 1 for d in shapes[0]) > 1 or batch:
        raise ValueError(f"robustness needs one vector of class scores, the model's output has shape(s) "
                         f"{', '.join(str(tuple(s)) for s in shapes)}: give x as a batch of one input")
    if n_out < 2:
        raise ValueError(f"robustness needs at least 2 class scores, the model has {n_out} output")


def _decide_float32(t: table.Target, spec: Spec, timeout: float, shape: tuple[int, ...]) -> RobustnessResult:
    from .float32 import SPLITS, verify_float32

    res = verify_float32(t.graph, t, spec, timeout, splits=SPLITS)
    why = str(res.stats.get("why", f"no verdict within {timeout} s"))
    if res.verdict == "unsat":  # (verify_float32 reports unsat only after check_vnn_float accepted it)
        return RobustnessResult("verified", why, res.cert, spec=spec, stats=res.stats)
    if res.verdict == "sat":
        xs = np.array([float(q) for q in res.x], dtype=np.float32)
        return RobustnessResult("falsified", why, None, xs.reshape(shape), spec, res.stats)
    return RobustnessResult("unknown", why, spec=spec, stats=res.stats)


def _float64_point(t: table.Target, spec: Spec, x: list[Fraction], cert: dict[str, Any]
                   ) -> tuple[list[Fraction], dict[str, Any]]:
    """The checked counterexample x, or a float64 point of the box next to it that the checker also
    accepts (with its certificate): when no float32 point lies in a box narrower than float32's
    spacing, the search's point may be an exact box end that is no float64 number, and rounding it
    to nearest can leave the box and stop being a counterexample (audit46)."""
    if len(spec.regions) != 1 or all(Fraction(float(q)) == q for q in x):
        return x, cert
    lo, hi = spec.regions[0].lo, spec.regions[0].hi
    near = []
    for q, a, b in zip(x, lo, hi):
        f = float(q)  # nearest; one step inward when that leaves the box (a float64 x lies inside it)
        f = float(np.nextafter(f, np.inf)) if Fraction(f) < a else float(np.nextafter(f, -np.inf)) \
            if Fraction(f) > b else f
        near.append(Fraction(f))
    other = table.sat_cert(t, spec, near)
    return (near, other) if table.check(other, t, spec).ok else (x, cert)


def decide(t: table.Target, spec: Spec, timeout: float, seed: int = 0,
           shape: tuple[int, ...] | None = None) -> RobustnessResult:
    """Search, build the certificate, and report only what the checker accepts. The search's
    refused near misses yield exact candidates (``exact_point.Probe``, as the CLI's searches: a
    tie at a ReLU kink such as 1/41 is no float point); the checker's replay decides them."""
    from . import exact_point

    probe = exact_point.Probe(spec, table.confirmer(t, spec), t.ex.forward,
                              (lambda: t.fnet.layers) if t.chain else None)
    verdict, out, stats = general.solve(table.bounder(t), t.ex, spec, probe.confirm, timeout, seed,
                                        alpha_leaf=table.alpha_leaf_fn(t), exact=probe)
    if verdict == "timeout":
        return RobustnessResult("unknown", f"no verdict within {timeout} s", spec=spec, stats=stats)
    if verdict == "sat":
        cert = table.sat_cert(t, spec, out)
    else:
        cert = table.unsat_cert(t, spec, out)
    v = table.check(cert, t, spec)
    if not v.ok:  # never report what the checker does not accept
        return RobustnessResult("unknown", f"the checker rejected the search's certificate: {v.reason}",
                                spec=spec, stats=stats)
    if verdict == "sat":
        out, cert = _float64_point(t, spec, out, cert)
        exact = all(Fraction(float(q)) == q for q in out)
        xs = np.array([float(q) if exact else q for q in out], dtype=np.float64 if exact else object)
        return RobustnessResult("falsified", v.reason, cert, xs.reshape(shape) if shape else xs, spec, stats)
    return RobustnessResult("verified", v.reason, cert, spec=spec, stats=stats)
