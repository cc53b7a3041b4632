"""Float-sound verification: decide a property for the network *run in binary32*.

unsat: an ``errorbound`` certificate over the hull of the property's input boxes gives eps_j per
output (``input_exact`` false: between the run on fl(x) and the real network at x, for every real x
of the box, so the verdict is about every real input of the region rounded to nearest binary32, as
``check_vnn_float`` requires: docs/design.md, "The input's rounding in float-sound verdicts"); the
real search then proves the property grown by eps
(``certificates.float_vnn.grow``) and the two parts are packed as a ``vnn-unsat-float`` certificate,
replayed by ``check_vnn_float`` before anything is reported. On input-split chains (``bab``'s own
search: ACAS Xu and the like) the parts are the boxes of one search, ``float_bab``: each box is
proved with the epsilon of its nearest walked ancestor and walks only where epsilon, not the
relaxation, keeps it open (several input regions apart along an input are first cut between them,
``_separating``). On every other network, where the grown property is not provable, the box is
bisected (``split_dim``, up to ``splits`` times) and each half gets its own proof (the partitioned
form of the certificate): first against its nearest ancestor's epsilon, which holds on the half too
(its box covers it), so a half away from the trouble costs one real search and no error-bound walk;
only where that fails does the half get its own, smaller, epsilon, and only when the real search
says a smaller one could help (``_worth_walking``). Policies of this loop, none of which a verdict
rests on: its real searches skip the chain search's up-front PGD (``_quick_search``), one that runs
out of its share of the time bisects instead of ending the proof (``ATTEMPT_SHARE``), and the
bisected input is the widest weighted by how strongly the outputs depend on it (``split_dim``).

sat: a point x of binary32 values in the region where two binary32 runs each satisfy a disjunct
of the unsafe set, checked exactly on their outputs: torchlean's runtime (numpy's float32 kernels and
BLAS, the point alone, on this machine: the program an unsat is about) and the bit-exact emulation
(``floats.emulate``: correctly rounded elementwise operations, dot products summed left to right,
every product and sum rounded; reproducible anywhere). Not onnxruntime's run (the CLI notes when
that misses the unsafe set); a point only one of the two runs meets is no sat (audit59). The
candidates are the real counterexamples the search finds (of the grown property, then of the
original one), rounded to binary32. Otherwise: unknown / timeout.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction
from typing import Any

import numpy as np

from .. import _outward
from ..certificates.core import OutOfTime, box_leaves, time_limit
from ..certificates.errorbound import model_id
from ..certificates.float_vnn import KIND, check_vnn_float, grow, restrict
from ..certificates.float_vnn import epsilons as cert_epsilons
from ..certificates.property import Spec
from ..certificates.rounding import round_fraction
from ..floats.emulate import emulate
from ..floats.errorbound import bound_certificate, native_format
from ..floats.network import run_float
from .bab import INPUT_SPLIT_MAX
from .float_bab import float_bab
from .table import atom_holds
from .tree import Result

FORMAT = "binary32"

#: what a ``--float32`` sat was checked on (``float_counterexample``)
SAT_WHY = ("counterexample checked (exact atoms) on two binary32 runs: torchlean's runtime (numpy "
           "float32 kernels and BLAS, this machine) and the bit-exact emulation (correctly rounded "
           "elementwise operations, sums left to right); the outputs printed are the emulation's")


def hull(spec: Spec) -> list[tuple[Fraction, Fraction]]:
    """The smallest box containing every input region of the property."""
    return [(min(r.lo[i] for r in spec.regions), max(r.hi[i] for r in spec.regions))
            for i in range(spec.n_in)]


def _binary32_in(lo: Fraction, hi: Fraction, strict_lo: bool, strict_hi: bool) -> bool:
    """Whether the interval (its ends open where strict) holds a finite binary32 value: the
    least binary32 at or above lo (``round_fraction`` toward +inf; one float32 step further when
    lo is open and itself a binary32) against hi."""
    up = round_fraction(lo, FORMAT, "rup")
    if not up.finite:
        return False
    q = up.value
    if strict_lo and q == lo:
        f = np.nextafter(np.float32(q), np.float32(np.inf))
        if not np.isfinite(f):
            return False
        q = Fraction(float(f))
    return q < hi if strict_hi else q <= hi


def binary32_empty(spec: Spec) -> list[tuple[int, int]]:
    """(region, input) pairs whose interval holds no binary32 value (e.g. ``X_0 = 0.1``): a
    float-sound verdict covers such a region only through its real points rounded to binary32
    (the run on fl(x), outside the region: claim35b), not vacuously as before."""
    out = []
    for k, r in enumerate(spec.regions):
        for i, (lo, hi, sl, sh) in enumerate(zip(r.lo, r.hi, *r.strictness())):
            if not _binary32_in(lo, hi, sl, sh):
                out.append((k, i))
                break
    return out



#: at most this many regions' points are run by ``runtime_meets`` (three each: the centre and the
#: two extreme corners, rounded into the region), for at most ``MEETS_S`` seconds (after the answer
#: is printed: a large network's onnxruntime run takes ~1 s)
MEETS_REGIONS = 32
MEETS_S = 5.0


def _binary32_points(r: Any) -> list[np.ndarray]:
    """Up to three binary32 points of the region, those inside it (exactly, strict ends strictly):
    its low and high corners rounded inward (toward +inf / -inf) and its centre rounded to nearest,
    then into [low corner, high corner]."""
    def inward(q: Fraction, mode: str) -> float:
        f = round_fraction(q, FORMAT, mode)
        return float(f.value) if f.finite else math.nan

    low = np.array([inward(q, "rup") for q in r.lo], dtype=np.float32)
    high = np.array([inward(q, "rdn") for q in r.hi], dtype=np.float32)
    centre = np.array([inward((a + b) / 2, "rne") for a, b in zip(r.lo, r.hi)], dtype=np.float32)
    out = []
    for x in (np.minimum(np.maximum(centre, low), high), low, high):
        if np.all(np.isfinite(x)) and r.contains([Fraction(float(v)) for v in x]):
            out.append(x)
    return out


def runtime_meets(target: Any, spec: Spec) -> tuple[int, list[float]] | None:
    """(region, x): a binary32 point of a region (``_binary32_points``; the first ``MEETS_REGIONS``
    regions, ``MEETS_S`` seconds at most) where onnxruntime's float32 run of the target's file
    puts the outputs in that region's unsafe set (atoms checked exactly on its outputs), or None
    (none found, or no onnxruntime session: a target ``table.load_instance`` did not cross-check,
    a file whose input is not one float32 tensor). Untrusted and never a verdict: a ``--float32``
    unsat is about torchlean's runtime (numpy kernels, batch norm unfolded, a bias added after its
    dot product), and onnxruntime's program differs (audit39: its folded batch norm and its Gemm
    bias accumulated per K-block are 600x and 8x a point's epsilon off, within the import
    cross-check's tolerance), so the CLI says so when the two part ways on the very property."""
    from .network import _session

    if getattr(target, "path", None) is None or not getattr(target, "runtime_checked", False):
        return None
    try:
        import onnxruntime  # noqa: F401  (``_session`` imports it: not installed, no note)
    except ImportError:
        return None
    sess = _session(target.path, getattr(target, "sha256", None))  # (of the imported bytes: audit43)
    if sess is None or len(target.graph.inputs) != 1:
        return None
    (v,) = target.graph.inputs  # (onnxruntime lists initializers an IR-3 file names as inputs too)
    if [i.type for i in sess.get_inputs() if i.name == v.name] != ["tensor(float)"]:
        return None
    name, shape = v.name, tuple(v.shape)
    stop = time.monotonic() + MEETS_S
    for k, r in enumerate(spec.regions[:MEETS_REGIONS]):
        for x in _binary32_points(r):
            if time.monotonic() > stop:
                return None
            try:
                ys = sess.run(None, {name: x.reshape(shape)})
            except Exception:
                return None
            y = np.concatenate([np.ravel(o).astype(np.float64) for o in ys])
            if y.size != spec.n_out or not np.all(np.isfinite(y)):
                continue
            yq = [Fraction(float(v)) for v in y]
            if any(all(atom_holds(t, yq) for t in d) for d in r.disjuncts):
                return k, [float(v) for v in x]
    return None


def _meets(spec: Spec, xq: list[Fraction], y: np.ndarray) -> list[tuple[int, int]]:
    """The (region, disjunct) pairs met exactly (strict atoms strictly) by outputs y at xq: the
    regions containing xq, their disjuncts whose every atom y satisfies."""
    yq = [Fraction(float(v)) for v in y]
    return [(k, i) for k, r in enumerate(spec.regions) if r.contains(xq)
            for i, d in enumerate(r.disjuncts) if all(atom_holds(t, yq) for t in d)]


def float_counterexample(graph: Any, spec: Spec, x: Any) -> tuple[list[Fraction], list[float]] | None:
    """(x32, y~) when x rounded to binary32 lies in a region and *two* binary32 runs there each meet
    a disjunct of a region containing it exactly (strict atoms strictly): torchlean's runtime (``run_float``:
    numpy's float32 kernels and BLAS, the point alone, on this machine; what a ``--float32`` unsat
    is about) and the bit-exact emulation (``floats.emulate``: correctly rounded elementwise
    operations, dot products and sums left to right, every operation rounded; reproducible
    anywhere). y~ is the emulated outputs. Else None. Either run alone is not enough (audit59): the
    two differ in their transcendental kernels (numpy's float32 tanh is 1 ulp above the correctly
    rounded one at x = 4.0785785, onnxruntime's too) and in summation order (BLAS sums
    2^25 + 1 + 1 + 1 to 2^25 + 4, left to right it is 2^25), so an emulated-only "sat" was a
    counterexample that neither the runtime nor onnxruntime executes."""
    if len(graph.inputs) != 1:
        return None
    x32 = np.asarray([float(v) for v in x], dtype=np.float64).astype(np.float32)
    xq = [Fraction(float(v)) for v in x32]
    # the runs are of the point as reported (its rationals): a -0.0 candidate is run as +0 (1/x
    # tells them apart: exp(1/x) is 0 at -0, +inf at the +0 that "(X_0 0.0)" reads back as)
    x32 = np.array([float(q) for q in xq], dtype=np.float32)
    inp = graph.inputs[0]
    y32 = run_float(graph, x32[None], np.float32)[0].astype(np.float64)
    if not np.all(np.isfinite(y32)):
        return None
    if not _meets(spec, xq, y32):  # (the runtime's run is no counterexample: nothing to emulate)
        return None
    try:
        outs = emulate(graph, {inp.name: x32.reshape(inp.shape)}, FORMAT)
    except NotImplementedError:  # (conv2d, pools, batch_norm, softmax: no bit-exact run, no sat)
        return None
    y = np.concatenate([np.asarray(o, dtype=np.float64).reshape(-1) for o in outs])
    if not np.all(np.isfinite(y)) or not _meets(spec, xq, y):
        return None
    return xq, [float(v) for v in y]


def near_counterexample(graph: Any, target: Any, spec: Spec, x: Any
                        ) -> tuple[list[Fraction], list[float]] | None:
    """``float_counterexample`` at x rounded to binary32, else at a binary32 point near x or near
    the exact points ``exact_point`` builds from it (its box ends, ``snap``; on a ReLU chain the
    vertex of its activation piece where the violation is largest, ``vertex``), searched by
    ``float_point.search``; None when no point passes both binary32 runs. Every point returned
    passed ``float_counterexample`` (audit59's two runs), so this only widens the candidates."""
    found = float_counterexample(graph, spec, x)
    if found is not None or len(graph.inputs) != 1:
        return found
    from . import exact_point, float_point

    layers = None  # (a chain's: the batch ranking at any width, vertices up to VERTEX_MAX_IN inputs)
    if getattr(target, "chain", False):
        layers = getattr(getattr(target, "fnet", None), "layers", None)
    vertices = layers is not None and spec.n_in <= exact_point.VERTEX_MAX_IN
    xq = [Fraction(v) if isinstance(v, (Fraction, int)) else Fraction(float(v)) for v in x]
    xf = np.array([float(v) for v in xq])
    cands = [xq]
    for region in spec.regions:
        if not exact_point._near(xf, region):
            continue
        s = exact_point.snap(xf, region)
        if s is not None:
            cands.append(s)
        if vertices:
            try:
                v = exact_point.vertex(layers, region, xf)
            except (ArithmeticError, ValueError, OverflowError):
                v = None
            if v is not None:
                cands.append(v)
    rank = float_point.Ranker(graph, layers)
    seen: set[tuple[Fraction, ...]] = set()
    for c in cands:
        if tuple(c) in seen:
            continue
        seen.add(tuple(c))
        found = float_point.search(spec, c, rank, lambda q: float_counterexample(graph, spec, q))
        if found is not None:
            return found
    return None


def onnxruntime_meets_at(target: Any, spec: Spec, x: list[Fraction]) -> bool | None:
    """Whether onnxruntime's float32 run of the target's file at the binary32 point x meets the
    unsafe set of a region containing x (atoms exactly), or None (no onnxruntime session, as in
    ``runtime_meets``). Untrusted, for a note after a ``--float32`` sat: onnxruntime's program is
    neither the runtime's nor the emulation's (its kernels, its summation order, a Gemm bias in the
    accumulation, batch norm folded: audit39)."""
    from .network import _session

    if getattr(target, "path", None) is None or not getattr(target, "runtime_checked", False):
        return None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    sess = _session(target.path, getattr(target, "sha256", None))
    if sess is None or len(target.graph.inputs) != 1:
        return None
    (v,) = target.graph.inputs
    if [i.type for i in sess.get_inputs() if i.name == v.name] != ["tensor(float)"]:
        return None
    try:
        x32 = np.array([float(q) for q in x], dtype=np.float32).reshape(tuple(v.shape))
        ys = sess.run(None, {v.name: x32})
    except Exception:
        return None
    y = np.concatenate([np.ravel(o).astype(np.float64) for o in ys])
    if y.size != spec.n_out or not np.all(np.isfinite(y)):
        return False
    return bool(_meets(spec, list(x), y))


def _input_weights(target: Any, n_in: int) -> list[float]:
    """Per input, how strongly the first layer reads it (the L1 norm of its column of weights) on a
    chain (``target.fnet``'s first layer), else 1 each: ``split_weights`` at or below
    ``SCORED_INPUTS`` inputs. (The rounding-error bound falls where the ReLUs turn stable, which the
    inputs the first layer weighs most decide: on ACAS Xu the plain widest, X_3 and X_4 of width 1,
    are the least read; ACAS 1_1's column norms 25.7, 21.3, 14.4, 9.1, 11.0.)"""
    layers = getattr(getattr(target, "fnet", None), "layers", None)
    if getattr(target, "chain", False) and layers:
        W = np.asarray(layers[0][0], dtype=np.float64)
        if W.ndim == 2 and W.shape[1] == n_in:
            w = np.abs(W).sum(axis=0)
            if np.all(np.isfinite(w)) and np.all(w > 0):
                return [float(v) for v in w]
    return [1.0] * n_in


def _quick_search(target: Any, s: Spec, timeout: float, progress: bool, method: str) -> Result:
    """``bab.solve``'s verdict on ``s``, input-split chains with the cheaper up-front attack of
    ``QUICK_ATTACK`` (their own falsification still runs alongside)."""
    from .bab import solve

    return solve(target, s, timeout=timeout, progress=progress, method=method, first_attack=QUICK_ATTACK)


class _Found(Exception):
    """A binary32 counterexample, found while partitioning."""

    def __init__(self, found: tuple[list[Fraction], list[float]]):
        self.found = found


#: the CLI's default ``--float32-splits``: most bisections are cheap (a half proved with its
#: ancestor's epsilon costs one real search, its own walk ~20 ms with the fast error column on
#: ACAS Xu), so the timeout, not this, is what usually ends it (64 before the fast column: ACAS
#: Xu 1_1 prop 2 then ended "unknown" after 64 splits in 14 s; with 1,024 it is unsat in ~42 s).
#: 4,096 since ACAS Xu 1_1 prop 6 (h-f32miss): its proof needs ~1,750-1,850 walks (a broad region
#: whose real margin is ~2-3e-3 everywhere, epsilon below that only on boxes 9-12 bisections deep;
#: measured under three walk policies), so 1,024 left it unprovable at any timeout (unsat at a long
#: one now); below the budget nothing changes (it only stops walks and bisections once spent)
SPLITS = 4096

#: the float loop's real searches on input-split chains sample the box before their branch and
#: bound (``_quick_search``) but skip the chain search's up-front PGD (``bab.CHAIN_ATTACK``): most of
#: them are leaves that end unsat, where that PGD was ~2/3 of the search (ACAS Xu 1_1 prop 6:
#: 18.9 of 32 s); a counterexample the samples miss is still met by the search's own falsification
#: (``attack.InSearch``). A policy: only a confirmed point is "sat", only a certificate "unsat".
QUICK_ATTACK: dict[str, Any] = {**{"samples": 2000, "starts": 64, "corners": 0, "decay": 0.85}, "rounds": 0}

#: a real search of the float loop that may be bisected instead (budget left, at most
#: ``SCORED_INPUTS`` inputs) gets at most this share
#: of the time left: near the real margin the grown property is hard (ACAS Xu 1_1 prop 5: one leaf's
#: search timed out after 46 s), and the halves' own, smaller, epsilons make theirs easier
ATTEMPT_SHARE = 0.125

#: the walk gate (``worth_walking``: a real search of the property grown by a guessed epsilon) gets
#: at most the time of this many walks (their mean so far) besides its quarter of the time left: a
#: fast-column walk on ACAS Xu takes ~0.1 s, and a gate search that cannot decide near the margin
#: took up to a quarter of what was left (1_1 prop 5: 50 of its 120 s); out of time, it says walk
GATE_WALKS = 4

#: a box k bisections below its nearest walked ancestor gets its own walk only if the property
#: grown by r^k times that ancestor's epsilon is not refuted, r a guess at what one bisection
#: does to epsilon: SHRINK until this run has walked a box below another, then the geometric mean
#: of what the bisections did (on ACAS Xu anything from ~0.6 per bisection, prop 1, to 1/100 over
#: two, prop 2, where ReLUs turn stable); a policy, any value is sound
SHRINK = 1 / 8


#: bisections on one path of the float loop's partition at most (a policy: deeper parts are not
#: proved); each is a frame of ``prove``'s recursion, so it stays well under Python's limit (1,000)
MAX_DEPTH = 400


#: above this many inputs a bisection halves the input that matters most (``split_dim``); at or
#: below it the widest (ACAS Xu's 5 inputs: unchanged). On eran's 784-input boxes widest-first is
#: the pixels in index order (every interior pixel equally wide), most of them ones the outputs
#: barely read: halving the 10 inputs of largest width x sensitivity takes mnist_relu_9_200 idx
#: 6453's whole-box epsilon 24.4 -> 11.1, the first 10 widest -> 19.9 (bench/README, h-eranf32)
SCORED_INPUTS = 64


def input_sensitivity(graph: Any, box: list[tuple[Fraction, Fraction]], points: int = 0,
                      seed: int = 0) -> np.ndarray | None:
    """Per input i, sum_j |dy_j/dx_i| at the box's centre (``points`` > 0: the mean over that many
    random points of the box instead), by forward differences on the float64 run, step 1e-3 of
    the input's width (the runtime runs one point per call: ~1 s at the centre of a 784-input
    6x200 net); None at or below ``SCORED_INPUTS`` inputs or for a graph with several inputs.
    A policy for ``split_dim``, never part of a claim."""
    if len(box) <= SCORED_INPUTS or len(graph.inputs) != 1:
        return None
    lo = np.array([float(a) for a, _ in box])
    w = np.array([float(b) for _, b in box]) - lo
    t = np.random.default_rng(seed).random((points, len(box))) if points else np.full((1, len(box)), 0.5)
    X = lo + t * w
    h = np.where(w > 0, w * 1e-3, 1.0)
    points = len(X)
    Xs = np.repeat(X[None], len(box), axis=0)  # (inputs, points, inputs)
    Xs[np.arange(len(box)), :, np.arange(len(box))] += h[:, None]
    with np.errstate(over="ignore", invalid="ignore"):  # (a saturated sigmoid: its exp overflows)
        y0 = run_float(graph, X, np.float64)
        ys = run_float(graph, Xs.reshape(-1, len(box)), np.float64).reshape(len(box), points, -1)
    d = np.abs(ys - y0[None]).sum(axis=2).mean(axis=1) / h
    return np.where(np.isfinite(d), d, 0.0)


def split_weights(graph: Any, target: Any, box: list[tuple[Fraction, Fraction]]) -> Any:
    """Per input, how much the outputs depend on it, for ``split_dim``: above ``SCORED_INPUTS``
    inputs the sampled Jacobian (``input_sensitivity``: eran's 784 pixels are all equally wide, so
    plain widest would halve them in index order), else the first layer's column norms
    (``_input_weights``: one matrix read, where a few inputs each matter)."""
    sens = input_sensitivity(graph, box)
    return sens if sens is not None else _input_weights(target, len(box))


def split_dim(box: list[tuple[Fraction, Fraction]], weight: Any = None) -> int:
    """The input a bisection halves: the largest width x ``weight`` (``split_weights``; None: the
    widest), ties to the lowest index. A policy: any choice is sound (the halves cover the box)."""
    w = [1.0] * len(box) if weight is None else weight
    return int(np.argmax([float(b - a) * float(s) for (a, b), s in zip(box, w)]))


def _separating(part: Spec) -> tuple[int, Fraction] | None:
    """(d, v): an input d along which the part's regions fall on both sides of v (apart, v the
    middle of the widest gap between them), or None (one region, or regions that no single input
    separates)."""
    if len(part.regions) < 2:
        return None
    best: tuple[Fraction, int, Fraction] | None = None
    for d in range(part.n_in):
        iv = sorted((r.lo[d], r.hi[d]) for r in part.regions)
        reach = iv[0][1]
        for lo, hi in iv[1:]:
            if lo > reach and (best is None or lo - reach > best[0]):
                best = (lo - reach, d, (lo + reach) / 2)
            reach = max(reach, hi)
    return None if best is None else (best[1], best[2])


def max_epsilons(cert: dict[str, Any]) -> list[Fraction]:
    """Per output, the largest epsilon of a ``vnn-unsat-float`` certificate's errorbound parts (one
    part, or the leaves of its ``parts`` tree): what ``|float32 run - real| <=`` it proves, each
    exact. For printing a certificate the checker accepted (read without checking here)."""
    if "parts" not in cert:
        return cert_epsilons(cert["errorbound"])
    box = [(Fraction(a), Fraction(b)) for a, b in cert["box"]]
    eps = [cert_epsilons(node["errorbound"]) for node, _ in box_leaves(cert["parts"], box)]
    return [max(col) for col in zip(*eps)]


def verify_float32(graph: Any, target: Any, spec: Spec, timeout: float, progress: bool = False,
                   method: str = "crown", splits: int = 0, column: str | None = None) -> Result:
    """The float-sound verdict (module docstring) within ``timeout`` seconds of the call, the
    checker's replay included (past that: "timeout", whatever phase it is in); ``target``: the
    bound-table target (``table.load_instance``), whose real parts ``bab.solve`` searches and
    certifies. ``splits`` > 0: on input-split chains ``float_bab`` (module docstring; ``splits``
    bounds its walks below the region's own), else
    where the grown property is not provable, bisect the box (``split_dim``, at most
    ``splits`` times in all); each half is tried with its nearest ancestor's epsilon first, then
    with its own (the partitioned certificate form; a leaf carries the errorbound certificate it
    was proved with, less its IR: the certificate carries that once). An unsat
    result's certificate has been accepted by ``check_vnn_float``; its reason is in stats["why"].
    stats: "parts" error-bound walks, "leaves" the certificate's parts, "inherited" those proved
    with an ancestor's epsilon, "searches" real searches, "boxes" the boxes ``float_bab`` bounded,
    "weights_s" the seconds of ``split_weights`` (at the first bisection; absent when none),
    "epsilon" per output a float >= the largest epsilon: of the accepted certificate's parts on
    unsat ("epsilon_checked" True), else of the error bounds the search made (not checked).
    ``column``: the error column of every part (``floats.errorbound.statement``; by default the
    fast one where every node has a fast row)."""

    native_format(graph, FORMAT)  # (a float16 network's own run is not a binary32 run: audit64)
    t0 = time.monotonic()
    # one deadline for the whole call, the checker's replay included (an in-process caller has no
    # watchdog: the bench's 1_1 prop 6 ran 93-108 s under a 60 s timeout when the replay got a
    # timeout of its own after the search; bench/README.md "dl35")
    end = t0 + timeout
    stats: dict[str, Any] = {"parts": 0, "leaves": 0, "inherited": 0, "searches": 0}
    checked = target.bg
    budget = [splits]
    worst: list[float] = [0.0] * spec.n_out

    def real(s: Spec, share: float = 1.0) -> Result:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            return Result("timeout")
        stats["searches"] += 1
        try:  # (``bab.solve`` stops at its timeout between batches; this also within one)
            with time_limit(end):
                return _quick_search(target, s, left * share, progress, method)
        except OutOfTime:
            stats["timed_out"] = True
            return Result("timeout")

    def walk(box: list[tuple[Fraction, Fraction]]) -> dict[str, Any] | None:
        """The box's own errorbound certificate, or None out of time."""
        te = time.monotonic()
        try:
            with time_limit(end):
                eb = bound_certificate(graph, box, FORMAT, ranges="fast", column=column, input_exact=False)
        except OutOfTime:
            stats["timed_out"] = True
            return None
        stats["epsilon_s"] = stats.get("epsilon_s", 0.0) + time.monotonic() - te
        stats["parts"] += 1
        for j, e in enumerate(cert_epsilons(eb)):
            worst[j] = max(worst[j], _outward.float_out(e, "up"))  # (never below e: audit41)
        return eb

    def attempt(part: Spec, eb: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        """A leaf proving ``part`` grown by eb's epsilon (or None) and the real search's verdict;
        a real counterexample that is a binary32 one ends the search (``_Found``). While the box
        may still be bisected, a search that runs out of its share (``ATTEMPT_SHARE``) answers
        "split" (the halves are tried instead)."""
        splittable = budget[0] > 0
        # (above SCORED_INPUTS inputs a bisection barely moves epsilon, h-eranf32: the search gets
        # all the time left; mnistfc 256x4's 23 s search timed out at an eighth of it)
        short = splittable and spec.n_in <= SCORED_INPUTS
        res = real(grow(part, cert_epsilons(eb)), ATTEMPT_SHARE if short else 1.0)
        if res.verdict == "timeout":
            if splittable and time.monotonic() - t0 < timeout:
                return None, "split"
            stats["timed_out"] = True
        if res.verdict == "unsat":
            stats["leaves"] += 1
            return {"errorbound": eb, "real": res.cert}, "unsat"
        if res.verdict == "sat" and res.x:
            found = near_counterexample(graph, target, spec, res.x)
            if found is not None:
                raise _Found(found)
        return None, res.verdict

    shrunk = [0.0, 0]  # sum of log(eps / ancestor's eps) and of the bisections between them

    def worth_walking(part: Spec, eb: dict[str, Any], k: int) -> bool:
        """False when even r^k times the ancestor's epsilon (``SHRINK``) is refuted on this part
        (a quarter of the time left at most; a timeout or unknown says walk)."""
        r = Fraction(math.exp(shrunk[0] / shrunk[1]) if shrunk[1] else SHRINK)
        left = timeout - (time.monotonic() - t0)
        cap = GATE_WALKS * stats.get("epsilon_s", 0.0) / max(1, stats["parts"])
        share = 0.25 if left <= 0 else min(0.25, cap / left)
        return real(grow(part, [r ** k * e for e in cert_epsilons(eb)]), share).verdict != "sat"

    def prove(box: list[tuple[Fraction, Fraction]], above: dict[str, Any] | None,
              k: int = 0, depth: int = 0) -> dict[str, Any] | None:
        """A part (leaf or split tree) proving the box's share of the property, or None;
        ``above``: the nearest walked ancestor's errorbound certificate (its box covers this one),
        ``k`` bisections up."""
        part, eb = restrict(spec, box), above
        # the part's own hull: the box itself where one region fills it (every box of a
        # single-region property); where the regions are smaller (several regions, e.g. two points
        # far apart) the walk and the bisection are about the hull (audit28: the box was halved
        # around a point region forever, never reaching it, until Python's recursion limit; the
        # checker asks only that an errorbound box cover the leaf's regions)
        ph = hull(part) if part.regions else box
        if by_boxes and budget[0] > 0 and len(part.regions) == 1:  # (one search, its boxes' own epsilons)
            return by_bab(box, part, above)
        cut = _separating(part) if by_boxes and budget[0] > 0 else None
        if cut is not None:  # (several regions, apart along some input: cut between, no search)
            budget[0] -= 1
            d, v = cut
            left = prove(box[:d] + [(box[d][0], v)] + box[d + 1:], above, k, depth + 1)
            right = (prove(box[:d] + [(v, box[d][1])] + box[d + 1:], above, k, depth + 1)
                     if left is not None else None)
            return None if right is None else {"split": [d, str(v)], "lo": left, "hi": right}
        if above is not None:
            leaf, verdict = attempt(part, above)
            if leaf is not None:
                stats["inherited"] += 1
                return leaf
            if verdict not in ("sat", "split"):
                return None
        if above is None or worth_walking(part, above, k):
            eb, up = walk(ph), k
            if eb is None:
                return None
            k, top, own = 0, max(cert_epsilons(above or eb)), max(cert_epsilons(eb))
            if above is not None and top > 0 and own > 0:
                shrunk[0], shrunk[1] = shrunk[0] + math.log(own / top), shrunk[1] + up
            # (no tighter anywhere than the ancestor's, already refuted here: split on)
            if above is None or any(e < a for a, e in zip(cert_epsilons(above), cert_epsilons(eb))):
                leaf, verdict = attempt(part, eb)
                if leaf is not None:
                    return leaf
                if verdict not in ("sat", "split"):
                    return None
        if budget[0] <= 0:
            return None
        budget[0] -= 1
        if not weights:  # (the first bisection: the root's scores, then reused by every box)
            tw = time.monotonic()
            weights.append(split_weights(graph, target, root))
            stats["weights_s"] = time.monotonic() - tw
        # the bisection halves the part's hull (a point: its halves would be itself; audit15)
        if depth >= MAX_DEPTH or all(a == b for a, b in ph):  # (a point: halves are itself)
            return None
        d = split_dim(box, weights[0])
        if not ph[d][0] < ph[d][1]:  # (the weights are 0 on every side of positive width)
            d = split_dim(ph)
        lo, hi = ph[d]
        v = (lo + hi) / 2  # (box[d][0] <= lo < v < hi <= box[d][1]: strictly inside the box's side)
        lo, hi = box[d]
        left = prove(box[:d] + [(lo, v)] + box[d + 1:], eb, k + 1, depth + 1)
        right = prove(box[:d] + [(v, hi)] + box[d + 1:], eb, k + 1, depth + 1) if left is not None else None
        return None if right is None else {"split": [d, str(v)], "lo": left, "hi": right}

    def by_bab(box: list[tuple[Fraction, Fraction]], part: Spec, above: dict[str, Any] | None
               ) -> dict[str, Any] | None:
        """``float_bab`` on the box (one region of the property meets it), from the nearest walked
        ancestor's errorbound, else the region's own; its walks count against ``splits``."""
        r = part.regions[0]
        eb = above if above is not None else walk(list(zip(r.lo, r.hi)))  # (the region's own)
        if eb is None:
            return None

        def sub(b: list[tuple[Fraction, Fraction]]) -> dict[str, Any] | None:
            if budget[0] <= 0:
                return None
            budget[0] -= 1
            return walk(b)

        out = float_bab(target, spec, box, eb, sub, end, method, made_here=above is None,
                        try_point=lambda x: float_counterexample(graph, spec, x),
                        try_near=lambda x: near_counterexample(graph, target, spec, x))
        for key in ("boxes", "leaves", "inherited"):
            stats[key] = stats.get(key, 0) + out.stats.get(key, 0)
        if out.verdict == "sat" and out.x:
            found = near_counterexample(graph, target, spec, out.x)
            if found is not None:
                raise _Found(found)
        if out.verdict == "timeout":
            stats["timed_out"] = True
        return out.part

    # input-split chains (``bab.solve``'s own input splitting): the float search is ``float_bab``
    by_boxes = bool(getattr(target, "chain", False)) and target.bg.n_in <= INPUT_SPLIT_MAX
    root = hull(spec)
    # ``split_weights`` only once a box is bisected: above ``SCORED_INPUTS`` inputs it runs the
    # network once per input (sri_resnet_a's 3,072: 36 s, oval21's: 6-10 s at load ~4), which a
    # proof of the whole box in one part never reads (oval21 img4549: 6 of its 23 s)
    weights: list[Any] = []
    try:
        with time_limit(end):  # (a step that reads no deadline of its own stops at its next tick)
            part = prove(root, None)
    except OutOfTime:
        part, stats["timed_out"] = None, True
    except _Found as f:
        stats.update(time=time.monotonic() - t0, epsilon=worst,
                     why=SAT_WHY)
        return Result("sat", x=f.found[0], y=f.found[1], stats=stats)
    stats["epsilon"] = worst
    if part is not None:
        cert = {"kind": KIND, "version": 1, "format": FORMAT}
        if "split" in part:  # the IR once, not once per leaf (``float_vnn``'s shared IR); the
            for leaf, _ in box_leaves(part, root):  # statements keep the completed ones' digests
                leaf["errorbound"]["statement"].pop("graph", None)
            cert.update(box=[[str(a), str(b)] for a, b in root], graph=graph.to_dict(), parts=part)
        else:
            cert.update(part)
        # the replay gets what the search left, as the CLI's real verdicts (one it cannot confirm
        # by ``end`` is "timeout", never reported; before dl35 it got a whole ``timeout`` of its
        # own: 36 s past a 60 s deadline on ACAS Xu 1_1 prop 6)
        tc = time.monotonic()
        v = check_vnn_float(cert, checked, spec, model=model_id(graph.to_dict()), deadline=end)
        stats["check_s"] = time.monotonic() - tc
        stats["time"] = time.monotonic() - t0
        if not v.ok:  # never report what the checker does not accept
            stats["why"] = f"own float-sound certificate rejected: {v.reason}"
            return Result("timeout" if "deadline" in v.reason else "unknown", stats=stats)
        stats["why"] = v.reason
        stats["trusted"] = v.trusted
        stats["epsilon"] = [_outward.float_out(e, "up") for e in max_epsilons(cert)]  # (the checked ones)
        stats["epsilon_checked"] = True
        return Result("unsat", cert=cert, stats=stats)
    late = time.monotonic() - t0 >= timeout
    # no proof and no binary32 counterexample among the grown property's: try the original's own
    r2 = real(spec) if not late else Result("timeout")
    found = near_counterexample(graph, target, spec, r2.x) if r2.verdict == "sat" and r2.x else None
    if found is not None:
        stats["time"] = time.monotonic() - t0
        stats["why"] = SAT_WHY
        return Result("sat", x=found[0], y=found[1], stats=stats)
    stats["time"] = time.monotonic() - t0
    late = late or stats.get("timed_out") or time.monotonic() - t0 >= timeout
    stats["why"] = ("no verdict in time" if late else "the property grown by epsilon is not provable "
                    f"(after {splits - budget[0]} splits) and no binary32 counterexample was found")
    return Result("timeout" if late else "unknown", stats=stats)
