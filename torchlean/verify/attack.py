"""Counterexample search (untrusted), one implementation for chains and graphs, and the exact
confirmation every found point must pass (the same test the checker applies).

The search runs on an *executor*: anything with ``forward(x) -> y`` (B, n_out) and
``value_and_grad(x, g_y) -> (y, grad)``, the input gradient of Σ_j G[b, j]·y[b, j] with G = g_y(y)
(``network.FloatNet`` for ReLU chains, ``executor.GraphExec`` for any graph the runtime runs). It
is projected sign-gradient descent (PGD) with restarts, per disjunct of the unsafe set, of the
float margin max_k (a_k·y - b_k) (<= 0: every atom of the disjunct holds):

- ``search``: before the proof search, from the best of a random sample, random box corners, the
  centre and any extra starts; on many inputs also from output-diversified starts (``odi``), and
  one run a round along a homotopy of the backward pass (``leaky``: gradient let through inactive
  ReLUs, then the true one), which reaches counterexamples behind dead neurons;
- ``InSearch``: alongside branch and bound, every batch: the minimiser of each open box's linear
  lower bound (a box corner, by the sign of the bound's input coefficients) evaluated in float, and
  on an adaptive share of the search's work (counted, not timed: ``Counted``) PGD from those
  corners and from random and corner points of the most violated open boxes and of the whole region.

Candidates are rounded to float32 inside the box (``box_point``) and handed, most violating first,
to a ``confirm`` callback (``table.confirmer``: the checker's vnn-sat replay, after a sound float
filter). Only that callback makes a point a counterexample; the float margins here
decide nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from ..certificates.core import tick
from ..certificates.property import Atom, Region, Spec

Confirm = Callable[[list[Fraction]], bool]

#: more inputs than this: ``search`` samples at most 4 random points per PGD start, and adds
#: output-diversified starts (``odi``)
HIGH_DIM = 64
#: sign-gradient steps of ``odi`` (each one a forward and backward pass per start)
ODI_STEPS = 4
#: the steps over which ``pgd``'s ``stall`` test measures a run's progress
STALL_STEPS = 3


class Executor(Protocol):
    """What the search needs of a network: float outputs and input gradients on a batch."""

    def forward(self, x: np.ndarray) -> np.ndarray: ...

    def value_and_grad(self, x: np.ndarray, g_y: Callable[[np.ndarray], np.ndarray]
                       ) -> tuple[np.ndarray, np.ndarray]: ...


def closure(spec: Spec) -> Spec | None:
    """The property with every strict atom and strict input bound made non-strict, or None when it
    has none. A counterexample to the closure that the property itself excludes (a point on a
    strict bound) means no unsat certificate can exist: the replay bounds the closed box, and at
    that point no atom of the disjunct fails with a positive margin."""
    if not any(any(r.strictness()[0]) or any(r.strictness()[1])
               or any(t.strict for d in r.disjuncts for t in d) for r in spec.regions):
        return None
    return Spec(spec.n_in, spec.n_out, tuple(
        Region(r.lo, r.hi, tuple(tuple(Atom(t.a, t.b, False) for t in d) for d in r.disjuncts))
        for r in spec.regions))


def past(until: float | None) -> bool:
    """Whether the ``time.perf_counter`` time ``until`` (None: never) has passed."""
    return until is not None and time.perf_counter() > until


# ---------------------------------------------------------------- float margins and box points

def _atoms(disj: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    A = np.array([[float(a) for a in t.a] for t in disj], dtype=np.float64)
    b = np.array([float(t.b) for t in disj], dtype=np.float64)
    return A, b


@np.errstate(invalid="ignore", over="ignore")  # outside a row's domain the runtime gives nan: no candidate
def margins(region: Region, y: np.ndarray) -> np.ndarray:
    """(B, J): per point and disjunct, max_k (a_k·y - b_k); <= 0 means unsafe in float."""
    out = np.full((y.shape[0], len(region.disjuncts)), -np.inf)
    for j, disj in enumerate(region.disjuncts):
        if disj:
            A, b = _atoms(disj)
            out[:, j] = (y @ A.T - b).max(1)
    return out


def to_float32_in_box(x: np.ndarray, region: Region) -> list[Fraction] | None:
    """Round a point to float32 values in the region's input set (exact comparison): a value on
    or outside a bound moves inward by float32 steps, past a strict bound strictly (``X_0 > 0``
    never gives 0); None when no float32 value nearby is inside."""
    out = []
    for v, lo, hi, sl, sh in zip(x, region.lo, region.hi, *region.strictness()):
        f = np.float32(v)
        for _ in range(4):
            q = Fraction(float(f))
            if q < lo or (sl and q == lo):
                f = np.nextafter(f, np.float32(np.inf))
            elif q > hi or (sh and q == hi):
                f = np.nextafter(f, np.float32(-np.inf))
        q = Fraction(float(f))
        if not ((lo < q if sl else lo <= q) and (q < hi if sh else q <= hi)):
            return None
        out.append(q)
    return out


def box_point(x: np.ndarray, region: Region) -> list[Fraction]:
    """A point of the region's box near x, as exact rationals: float32 values where the box holds
    one (what an ONNX runtime can be fed), else float64, else the box's own (decimal) end; boxes
    whose sides are a single non-float32 decimal (a fixed input of a VNN-LIB property) need that."""
    q32 = to_float32_in_box(x, region)
    if q32 is not None:
        return q32
    out = []
    for v, lo, hi in zip(x, region.lo, region.hi):
        q = Fraction(float(np.float32(v)))
        if not lo <= q <= hi:
            q = Fraction(float(v))
        if not lo <= q <= hi:
            q = lo if q < lo else hi
        out.append(q)
    return out


def try_candidates(region: Region, z: np.ndarray, v: np.ndarray, confirm: Confirm,
                   tries: int = 4, tol: float = 1e-6) -> list[Fraction] | None:
    """Hand the most violating candidates (objective v <= tol, float) to ``confirm``; when none
    qualifies, the best one goes to ``confirm.observe`` if it has one (``exact_point.Probe``)."""
    observe = getattr(confirm, "observe", None)
    if observe is not None and v.size:
        j = int(np.argmin(np.where(np.isnan(v), np.inf, v)))
        if tol < v[j] < np.inf:
            observe(np.clip(z[j], [float(a) for a in region.lo], [float(b) for b in region.hi]), float(v[j]))
    for i in np.argsort(v)[:tries]:
        if not v[i] <= tol:  # (nan: outside a function's domain, never a candidate)
            break
        q = box_point(z[i], region)
        if confirm(q):
            return q
    return None


# ---------------------------------------------------------------- PGD

@np.errstate(invalid="ignore", over="ignore")  # outside a row's domain the runtime gives nan: no candidate
def pgd(ex: Executor, A: Any, b: Any, z: np.ndarray, lo: np.ndarray, hi: np.ndarray,
        steps: int = 40, decay: float = 0.88, leak: float = 0.0, until: float | None = None,
        stall: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sign-gradient descent of max_k (A_k·y - b_k) from each row of z, projected on [lo, hi]
    (per-point boxes allowed); returns the best point seen per start and its objective. With
    lists A, b (one (A_j, b_j) per disjunct), of min_j max_k (A_jk·y - b_jk): each step follows
    the disjunct most violated at the point, one run for the whole unsafe set.

    A run whose step left its point unchanged (every coordinate pushed against its bound, or a
    zero gradient there) is finished: the next evaluation would be the same point, so would its
    gradient and every later step (a smaller step is clipped the same way). Dropping such runs
    changes no result (up to the float rounding of a smaller batch's products) and saves the
    evaluations of runs that reached a corner of a small box, where a piecewise-linear
    network's gradient often keeps its sign.

    ``leak`` > 0: the steps follow the gradient with that share of the cotangent let through
    inactive ReLUs (``leaky``); the objective is still the exact one. ``until``: a
    ``time.perf_counter`` time after which no further gradient pass is made (``past``; the first
    always is): the points the last step reached are evaluated (a forward pass) and the best
    points seen are returned.

    ``stall``: the run also stops once it has stalled, where its best objective (> 0) is more
    than ``stall`` times what the rate of its last ``STALL_STEPS`` steps would still gain with
    the decaying step (that rate times 1 / (1 - decay)): ``search``'s quick look."""
    n = z.shape[0]
    seen: list[float] = []  # (the best objective after each step, for ``stall``)
    lo, hi = np.broadcast_to(lo, z.shape), np.broadcast_to(hi, z.shape)
    step = (hi - lo) / 4
    best_z, best_v = z.copy(), np.full(n, np.inf)
    run = np.arange(n)  # the runs still moving (z, lo, hi and step are theirs)

    if isinstance(A, list):  # (stacked; ``ends`` closes each disjunct's atoms)
        ends = np.cumsum([len(a) for a in A])
        A, b = np.concatenate(A), np.concatenate(b)
    else:
        ends = np.array([len(A)])

    def objective(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(value, active atom row) per point."""
        m = y @ A.T - b
        if len(ends) == 1:
            k = m.argmax(1)
            return m[np.arange(len(m)), k], k
        starts = np.concatenate([[0], ends[:-1]])
        ks = np.stack([s + m[:, s:e].argmax(1) for s, e in zip(starts, ends)], 1)  # (n, J)
        vs = np.take_along_axis(m, ks, 1)
        j = np.where(np.isnan(vs), np.inf, vs).argmin(1)
        return vs[np.arange(len(m)), j], ks[np.arange(len(m)), j]

    def active(y: np.ndarray) -> np.ndarray:
        return A[objective(y)[1]]

    for i in range(steps):
        tick()  # (the caller's deadline: a deep network makes each step slow)
        if i and past(until):
            break
        y, g = ex.value_and_grad(z, active, leak=leak) if leak else ex.value_and_grad(z, active)
        v = objective(y)[0]
        better = v < best_v[run]
        best_z[run[better]], best_v[run[better]] = z[better], v[better]
        if best_v.min() < 0:  # a float counterexample: hand it to ``confirm`` now (deep nets:
            return best_z, best_v  # each further step costs a forward and backward pass)
        seen.append(float(best_v.min()))
        if stall is not None and len(seen) > STALL_STEPS:
            rate = (seen[-1 - STALL_STEPS] - seen[-1]) / STALL_STEPS
            if not seen[-1] <= stall * rate / (1 - decay):  # (nan: stalled too)
                return best_z, best_v
        new = np.clip(z - step * np.sign(g), lo, hi)
        moved = (new != z).any(1) | np.isnan(new).any(1)
        if not moved.all():
            run, new, lo, hi, step = run[moved], new[moved], lo[moved], hi[moved], step[moved]
        z = new
        step = step * decay
        if not run.size:
            return best_z, best_v
    v = objective(ex.forward(z))[0]
    better = v < best_v[run]
    best_z[run[better]], best_v[run[better]] = z[better], v[better]
    return best_z, best_v


@np.errstate(invalid="ignore", over="ignore")
def odi(ex: Executor, z: np.ndarray, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator,
        steps: int = ODI_STEPS, until: float | None = None) -> np.ndarray:
    """Output-diversified starts (ODI, Tashiro et al., NeurIPS 2020): from each row of z, ``steps``
    sign-gradient ascent steps of w·f(x), of half the box's width (the paper's ε on an ε-ball),
    for a random direction w in [-1, 1]^n_out per row. On many inputs, uniform random points of a small box
    all give nearly the same output, and PGD from any of them falls into the same local minimum
    of the margin (mnistfc 256x6 prop_3_0.05: 0.73 from every uniform or corner start); starts
    spread out in *output* space reach other minima (there, a counterexample in the first round).
    ``until``: no step after that ``time.perf_counter`` time (the points as they are then)."""
    w = rng.uniform(-1.0, 1.0, (z.shape[0], ex.forward(z[:1]).shape[1]))
    for _ in range(steps):
        tick()
        if past(until):
            break
        _, g = ex.value_and_grad(z, lambda y: -w)  # (of -w·y: ascend w·y)
        z = np.clip(z - (hi - lo) / 2 * np.sign(g), lo, hi)
    return z


#: the most random or extra starts of ``leaky`` per round of ``search`` (more than ``HIGH_DIM`` inputs)
LEAKY_STARTS = 16
#: the leak schedule of ``leaky``: from the affine network's gradient (every ReLU passes it) down
#: to the true one
LEAKS = (1.0, 0.5, 0.2, 0.05, 0.0)


@np.errstate(invalid="ignore", over="ignore")
def leaky(ex: Executor, A: Any, b: Any, z: np.ndarray, lo: np.ndarray, hi: np.ndarray,
          steps: int = 30, decay: float = 0.9, leaks: Sequence[float] = LEAKS,
          until: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sign-gradient descent of ``pgd``'s objective (one (A, b) or lists of them per disjunct) along
    a homotopy of the backward pass: stage by stage the step size restarts and the gradient lets
    the share ``leak`` of the cotangent through the ReLUs inactive at the point, down to the
    true gradient. The points move on from where the last stage left them (the way there may
    pass through worse values); the best point per start by the exact objective is returned.
    A dead ReLU has no gradient, so plain PGD never turns on a neuron that is off along its
    path; on MNIST nets counterexamples sit behind such neurons (bench/README.md, "Leaky
    homotopy": mnistfc 256x2 prop_0_0.05, where PGD and ODI stop at a margin of 0.96 from any
    of thousands of starts). ``until``: as ``pgd``'s (the best points evaluated by then)."""
    if not isinstance(A, list):
        A, b = [A], [b]
    ends = np.cumsum([len(a) for a in A])
    starts = np.concatenate([[0], ends[:-1]])
    A, b = np.concatenate(A), np.concatenate(b)
    n = np.arange(z.shape[0])

    def objective(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = y @ A.T - b
        ks = np.stack([s + m[:, s:e].argmax(1) for s, e in zip(starts, ends)], 1)
        vs = np.take_along_axis(m, ks, 1)
        j = np.where(np.isnan(vs), np.inf, vs).argmin(1)
        return np.where(np.isnan(vs[n, j]), np.inf, vs[n, j]), ks[n, j]

    best_z, best_v = z.copy(), np.full(z.shape[0], np.inf)
    stop = False
    for leak in leaks:
        step = (hi - lo) / 4
        for i in range(steps):
            tick()
            stop = (i > 0 or leak != leaks[0]) and past(until)
            if stop:
                break
            y, g = ex.value_and_grad(z, lambda y: A[objective(y)[1]], leak=leak)
            v = objective(y)[0]
            better = v < best_v
            best_z[better], best_v[better] = z[better], v[better]
            if best_v.min() < 0:
                return best_z, best_v
            z = np.clip(z - step * np.sign(g), lo, hi)
            step = step * decay
        if stop:
            break
    v = objective(ex.forward(z))[0]
    better = v < best_v
    best_z[better], best_v[better] = z[better], v[better]
    return best_z, best_v


def _corners(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    """n random corners of the box [lo, hi] (lo, hi (d,))."""
    return np.where(rng.integers(0, 2, (n, lo.size)).astype(bool), hi, lo)


@np.errstate(invalid="ignore", over="ignore")  # outside a row's domain the runtime gives nan: no candidate
def search(
    ex: Executor,
    spec: Spec,
    confirm: Confirm,
    seed: int = 0,
    samples: int = 1000,
    starts: int = 32,
    corners: int = 16,
    steps: int = 40,
    extra_starts: np.ndarray | None = None,
    rounds: int = 2,
    deadline: float | None = None,
    decay: float = 0.88,
    leaky_starts: int | None = 16,
    record: dict[str, float] | None = None,
    stall: float | None = None,
) -> list[Fraction] | None:
    """Random sampling, then PGD with restarts per region and disjunct; returns the first candidate
    ``confirm`` accepts (float32 values in the region's box, as exact Fractions), else None.
    ``leaky_starts``: random starts of each round's ``leaky`` run (more than ``HIGH_DIM`` inputs;
    0: from the extra starts only; None: no ``leaky`` run). ``record``: where to keep the float
    margins seen (``note``: "centre", the box centre's, and "best", the smallest any point reached),
    across calls: how near the attack came, for a caller that shares its time with a proof search.
    ``deadline`` (a ``time.perf_counter`` time): every gradient run (``odi``, ``pgd``, ``leaky``)
    stops stepping there and its best points so far still go to ``confirm``; no new run starts
    after it. Checked per step, not per run: on the sri_resnet_a ResNet one run of the 80 starts'
    40 PGD steps takes ~10 s and the leaky one ~7 s, and a 1-s attack took 18 s when only the
    per-disjunct loop looked at the clock (bench/README.md, "h-sri").

    ``stall`` (a quick look: ``general``'s early attack before an expensive root pass): per region
    only the first round's first PGD run (all disjuncts at once where there are several), stopped
    once it stalls (``pgd``'s ``stall``); no ``leaky`` run. On sri_resnet_a the sat instances' runs
    fall below 0 within 7 steps, each step gaining 30-100% of the margin; the unsat ones' level off
    at 1.1-3.3 after 4-8 steps, and ran on to the time cap (bench/README.md, "h-fixed")."""
    rng = np.random.default_rng(seed)
    quick = stall is not None
    for region in spec.regions:
        lo = np.array([float(v) for v in region.lo])
        hi = np.array([float(v) for v in region.hi])
        # (many inputs: random points of a small ball hardly differ, and each costs a forward
        # pass of a possibly deep network; PGD from a few of them does the work)
        k = samples if lo.size <= HIGH_DIM else min(samples, 4 * starts)
        x = rng.uniform(lo, hi, (k, lo.size))
        x = np.concatenate([((lo + hi) / 2)[None], x])
        m = margins(region, ex.forward(x))
        note(record, m.min(1), centre=True)
        found = try_candidates(region, x, m.min(1), confirm)
        if found is not None:
            return found
        for r in range(rounds):
            if len(region.disjuncts) > 1 and all(region.disjuncts):
                # all disjuncts at once first: one PGD whose every start moves towards whichever
                # disjunct is nearest (a classifier's "some other class wins" has one per class,
                # and a loop over them can spend its time on the wrong ones); own generator, so the
                # per-disjunct starts below stay as they were
                urng = np.random.default_rng((seed, r))
                atoms = [_atoms(d) for d in region.disjuncts]
                A, b = [a for a, _ in atoms], [c for _, c in atoms]
                picks = [x[np.argsort(m.min(1))[:starts]] if r == 0 else
                         urng.uniform(lo, hi, (starts, lo.size)), _corners(urng, lo, hi, corners)]
                if r == 0 and extra_starts is not None:
                    picks.append(np.clip(extra_starts, lo, hi))
                if lo.size > HIGH_DIM and starts:
                    picks.append(odi(ex, urng.uniform(lo, hi, (starts, lo.size)), lo, hi, urng,
                                     until=deadline))
                z, v = pgd(ex, A, b, np.concatenate(picks), lo, hi, steps=steps, decay=decay,
                           until=deadline, stall=stall)
                note(record, v)
                found = try_candidates(region, z, v, confirm)
                if found is not None:
                    return found
                if quick:
                    break  # (the quick look: this run only, then the next region)
                found = None if leaky_starts is None or past(deadline) else _leaky_round(
                    ex, region, confirm, lo, hi, min(starts, leaky_starts), (seed, r, 2),
                    extra_starts if r == 0 else None, record, deadline)
                if found is not None:
                    return found
            for j, disj in enumerate(region.disjuncts):
                if deadline is not None and time.perf_counter() > deadline:
                    return None
                if not disj:  # an empty conjunction: every point is unsafe
                    return try_candidates(region, x[:1], np.zeros(1), confirm)
                A, b = _atoms(disj)
                if r == 0:
                    picks = [x[np.argsort(m[:, j])[:starts]], _corners(rng, lo, hi, corners)]
                    if extra_starts is not None:
                        picks.append(np.clip(extra_starts, lo, hi))
                else:
                    picks = [rng.uniform(lo, hi, (starts + corners, lo.size))]
                if lo.size > HIGH_DIM and starts and len(region.disjuncts) == 1:
                    # (several disjuncts: the run over all of them above had its diversified starts)
                    orng = np.random.default_rng((seed, r, 1))
                    picks.append(odi(ex, orng.uniform(lo, hi, (starts, lo.size)), lo, hi, orng,
                                     until=deadline))
                z, v = pgd(ex, A, b, np.concatenate(picks), lo, hi, steps=steps, decay=decay,
                           until=deadline, stall=stall)
                note(record, v)
                found = try_candidates(region, z, v, confirm)
                if found is not None:
                    return found
                if quick:
                    break
            if quick:
                break  # (no leaky run, no further round)
            if len(region.disjuncts) == 1 and leaky_starts is not None and not past(deadline):
                # (several disjuncts: ran above)
                found = _leaky_round(ex, region, confirm, lo, hi, min(starts, leaky_starts), (seed, r, 2),
                                     extra_starts if r == 0 else None, record, deadline)
                if found is not None:
                    return found
    return None


def _leaky_round(ex: Executor, region: Region, confirm: Confirm, lo: np.ndarray, hi: np.ndarray,
                 starts: int, seed: tuple[int, ...], extra: np.ndarray | None = None,
                 record: dict[str, float] | None = None, until: float | None = None
                 ) -> list[Fraction] | None:
    """On many inputs (``HIGH_DIM``), ``leaky`` on the whole unsafe set at once from
    min(``starts``, ``LEAKY_STARTS``) uniform random points and the first ``LEAKY_STARTS`` of
    ``extra`` (e.g. bound minimisers: box corners where every ReLU may be dead, which plain PGD
    cannot leave); a confirmed candidate or None. ``until``: ``leaky``'s."""
    if lo.size <= HIGH_DIM or not all(region.disjuncts):
        return None
    rng = np.random.default_rng(seed)
    picks = [rng.uniform(lo, hi, (min(starts, LEAKY_STARTS), lo.size))]
    if extra is not None:
        picks.append(np.clip(extra[:LEAKY_STARTS], lo, hi))
    z0 = np.concatenate(picks)
    if not z0.shape[0]:
        return None
    atoms = [_atoms(d) for d in region.disjuncts]
    z, v = leaky(ex, [a for a, _ in atoms], [c for _, c in atoms], z0, lo, hi, until=until)
    note(record, v)
    return try_candidates(region, z, v, confirm)


def note(record: dict[str, float] | None, v: np.ndarray, centre: bool = False) -> None:
    """Keep in ``record`` (if any) the smallest finite float margin of ``v`` as "best" and, with
    ``centre``, ``v[0]`` (the box centre's margin) as "centre" where none is kept yet."""
    if record is None:
        return
    fin = v[np.isfinite(v)]
    if fin.size:
        record["best"] = min(record.get("best", np.inf), float(fin.min()))
    if centre and np.isfinite(v[0]) and "centre" not in record:
        record["centre"] = float(v[0])


def inward(ex: Executor, spec: Spec, confirm: Confirm, x: list[Fraction]) -> list[Fraction]:
    """A counterexample of ``spec`` on the segment from ``x`` (a counterexample of its closure) to
    the centre of each region's box, at distances 2^-k (k = 1..60) from x; else ``x`` itself."""
    if confirm(x):
        return x
    xs = np.array([float(v) for v in x])
    t = 2.0 ** -np.arange(1, 61)[:, None]
    for region in spec.regions:
        centre = np.array([float(a + b) / 2 for a, b in zip(region.lo, region.hi)])
        z = xs + t * (centre - xs)
        found = try_candidates(region, z, margins(region, ex.forward(z)).min(1), confirm, tries=3, tol=1e-9)
        if found is not None:
            return found
    return x


# ---------------------------------------------------------------- alongside branch and bound

def leaf_minimisers(lo: np.ndarray, hi: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Per box (lo, hi (B, d)), the corner minimising a linear function with input coefficients
    ``coef`` (B, d): lo where the coefficient is positive, else hi; it minimises the box's linear
    lower bound, so where that bound is negative it is where a counterexample is most likely."""
    return np.where(coef > 0, lo, hi)


#: The in-search attack's work units (``Counted``, ``InSearch``): one input point's forward and
#: backward pass is 1. Measured on ACAS Xu (bench/README.md, "h-pgd"; CPU seconds, one thread): a
#: ``pgd`` step on n points ~220 us + 5.6 us * n (the executor's call ~120 us of it, the objective
#: and projection the rest), a forward pass ~50 us + 2.9 us * n; so a call costs ``CALL_WORK``
#: units on top of its points (a forward pass a quarter of that, and half a unit a point), and a
#: ``pgd`` run then costs 6.2-7.0 us per unit from 1 to 256 starts. One box of the input-split
#: search (its share of a batch's CROWN pass, objective bounds, branching scores and the rest of
#: the loop) cost 0.45 ms (1_1 prop_5) to 1.3 ms (1_9 prop_7), 69 to 190 units: ``BOX_WORK`` is
#: near the cheapest, so that PGD never takes much more than its nominal share of the CPU (1_1
#: prop_5, the longest unsat search: 12 % at the 10 % share). Only ratios matter, and only roughly:
#: constants in place of a clock keep the schedule (which batches get a PGD round, hence every later
#: round's random starts) the same from run to run, on any machine and under any load.
CALL_WORK = 40.0
BOX_WORK = 75.0


class Counted:
    """An executor that counts its work (``work``, in gradient points: ``CALL_WORK`` per call plus
    one per point of a gradient pass, half of that per point of a forward pass)."""

    def __init__(self, ex: Executor):
        self.ex, self.work = ex, 0.0

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.work += CALL_WORK / 4 + x.shape[0] / 2
        return self.ex.forward(x)

    def value_and_grad(self, x: np.ndarray, g_y: Callable[[np.ndarray], np.ndarray], **kw: Any
                       ) -> tuple[np.ndarray, np.ndarray]:
        self.work += CALL_WORK + x.shape[0]
        return self.ex.value_and_grad(x, g_y, **kw)


#: a best float margin at most this fraction of its unit (the margins' typical size) looks near a
#: counterexample: ``InSearch`` then gives PGD its ``HIGH`` share, and ``graph_relu`` never counts
#: such an attack as stalled
NEAR = 0.02


class InSearch:
    """Falsification alongside a branch-and-bound search over one region (untrusted; ``confirm``
    decides). ``step`` is called once per batch with the batch's open boxes; it returns a confirmed
    counterexample or None.

    Cost: the leaf minimisers cost one batched forward pass per batch (and ``confirm`` calls only
    for points whose float margin is <= ``tol``, at most ``tries`` per batch, never the same point
    twice); every ``local[0]``-th batch a short PGD runs from each open box's centre (what both
    searches did before, kept: as boxes shrink their centres cover the region). The longer PGD
    restarts run while their work stays under a share of the search's work so far (the adaptive
    schedule, ``share``): ``LOW`` while the best float margin seen is large, ``MID`` when it is
    smallish or the open boxes' bounds near 0, ``HIGH`` when it is near 0; proof-heavy instances,
    whose float margins stay large, pay little for them.

    The work is counted, never timed: the search's boxes bounded (``BOX_WORK`` each, the caller's
    count) and every executor call made here (``Counted``). So which batches get a round, and every
    round's random starts, depend only on the instance, the seed and the search's own steps: the
    same verdict and the same boxes from run to run, on any machine and under any load (with CPU
    seconds, ACAS Xu 1_9 prop_7 took 5,183 to 17,791 boxes from run to run on a shared machine)."""

    LOW, MID, HIGH = 0.02, 0.1, 0.25
    #: work of PGD allowed before any share applies (the first rounds are the most useful, before
    #: the boxes shrink): about 0.13 s on ACAS Xu, at most a round a batch; its cost on ACAS Xu's
    #: unsat searches, +2.6 % and +5.4 % of their solve time in two runs (bench/README.md, "h-pgd")
    GRACE = 20000.0

    def __init__(self, ex: Executor, region: Region, confirm: Confirm, seed: int = 0,
                 tries: int = 2, tol: float = 1e-6, boxes: int = 8, steps: int = 15,
                 local: tuple[int, int, float] = (1, 8, 0.7)):
        self.ex, self.region, self.confirm = Counted(ex), region, confirm
        # (a ``confirm`` with an ``observe`` (``exact_point.Probe``'s) is told the nearest misses
        # above ``tol``, which never reach it, from which exact candidates may still be built)
        self.observe, self.observed = getattr(confirm, "observe", None), np.inf
        self.rng = np.random.default_rng(seed + 7919)
        self.lo = np.array([float(v) for v in region.lo])
        self.hi = np.array([float(v) for v in region.hi])
        self.disjuncts = [_atoms(d) for d in region.disjuncts if d]  # (``root``: none is empty)
        self.tries, self.tol, self.picks, self.steps = tries, tol, boxes, steps
        self.local = local  # (every k-th batch, steps, decay) of the short PGD in every open box
        # the schedule counts work, not seconds (wall-clock ones, then CPU ones, both moved with
        # the machine's load which batches got a PGD round: ``Counted``)
        self.boxes = 0  # boxes the caller's search has bounded (``step``'s ``bounded``)
        self.spent = 0.0  # work of PGD rounds so far
        self.scale: float | None = None  # the first batch's median |float margin|: margins' unit
        self.lb0: float | None = None  # |the first batch's worst lower bound|: the bounds' unit
        self.best = np.inf  # the smallest float margin seen
        self.seen: set[tuple[float, ...]] = set()  # points confirm already refused
        self.anchors: np.ndarray | None = None  # ``root``'s corners
        self.stats = {"batches": 0, "pgd_rounds": 0, "confirms": 0}

    def elapsed(self) -> float:
        """The search's work so far: its bounded boxes and every executor call made here."""
        return BOX_WORK * self.boxes + self.ex.work

    def share(self, lb: np.ndarray) -> float:
        """The fraction of the search's work PGD may use: more when a counterexample looks near,
        i.e. the best float margin is small against the first batch's typical margin (``scale``),
        or, more mildly, the open boxes' lower bounds are near 0 against the root's (``lb0``)."""
        near = self.best / (self.scale or 1.0)
        if near <= NEAR:
            return self.HIGH
        close = lb.size and np.isfinite(lb).all() and self.lb0 and -float(lb.max()) <= 0.02 * self.lb0
        return self.MID if near <= 0.2 or (close and near <= 0.5) else self.LOW

    def _check(self, z: np.ndarray, v: np.ndarray) -> list[Fraction] | None:
        """``confirm`` the most violating new candidates (v <= tol), at most ``tries``; the best one
        above ``tol`` goes to ``observe`` when it is the nearest miss so far."""
        if self.observe is not None and v.size:
            i = int(np.argmin(v))
            if self.tol < v[i] < self.observed:
                self.observed = float(v[i])
                self.observe(np.clip(z[i], self.lo, self.hi), float(v[i]))
        n = 0
        for i in np.argsort(v):
            if not v[i] <= self.tol or n >= self.tries:
                break
            q = box_point(z[i], self.region)
            key = tuple(float(t) for t in q)
            if key in self.seen:
                continue
            n += 1
            self.stats["confirms"] += 1
            if self.confirm(q):
                return q
            self.seen.add(key)
        return None

    @np.errstate(invalid="ignore", over="ignore")
    def step(self, lo: np.ndarray, hi: np.ndarray, lb: np.ndarray, coef: np.ndarray | None,
             bounded: int | None = None) -> list[Fraction] | None:
        """One batch's open boxes lo, hi (B, d), each one's worst lower bound lb (B,) and that
        bound's input coefficients coef (B, d) (None: the box centres stand in for the corners);
        ``bounded``: the boxes the caller's search has bounded so far, all batches together (None:
        the open boxes handed over count instead)."""
        self.stats["batches"] += 1
        self.boxes = bounded if bounded is not None else self.boxes + lo.shape[0]
        if not lo.shape[0] or not self.disjuncts:
            return None
        # (a) the leaf minimisers, evaluated in float; the best few confirmed exactly
        if coef is not None:
            pts = leaf_minimisers(lo, hi, np.nan_to_num(coef))
        elif self.anchors is not None and lo.shape[0] == 1:  # the region itself: its root's corners
            pts = self.anchors
            lo, hi = np.broadcast_to(lo, pts.shape), np.broadcast_to(hi, pts.shape)
            lb = np.broadcast_to(lb, pts.shape[:1])
        else:
            pts = (lo + hi) / 2
        m = margins(self.region, self.ex.forward(pts)).min(1)
        m = np.where(np.isnan(m), np.inf, m)
        if self.scale is None:  # the first batch's typical float margin and worst bound: the units
            fin = np.abs(m[np.isfinite(m)])
            self.scale = max(float(np.median(fin)), 1e-9) if fin.size else 1.0
            self.lb0 = abs(float(lb.min())) if lb.size and np.isfinite(lb).all() else None
        self.best = min(self.best, float(m.min()))
        found = self._check(pts, m)
        if found is not None:
            return found
        # a short PGD from every open box's centre (the searches' attack of old: as
        # the boxes shrink their centres cover the region, which finds narrow unsafe sets)
        every, steps, decay = self.local
        if coef is not None and every and self.stats["batches"] % every == 1 % every:
            # (one run per box for the whole unsafe set, following its most violated disjunct:
            # a run per disjunct cost J times the gradient evaluations, ACAS Xu property 5's 4)
            A, b = [a for a, _ in self.disjuncts], [c for _, c in self.disjuncts]
            z, v = pgd(self.ex, A, b, (lo + hi) / 2, lo, hi, steps=steps, decay=decay)
            v = np.where(np.isnan(v), np.inf, v)
            self.best = min(self.best, float(v.min()))
            found = self._check(z, v)
            if found is not None:
                return found
        # (b) PGD on the adaptive share of the search's work
        if self.spent > self.GRACE + self.share(lb) * self.elapsed():
            return None
        w = self.ex.work
        try:
            return self._pgd(lo, hi, pts, m)
        finally:
            self.spent += self.ex.work - w

    @np.errstate(invalid="ignore", over="ignore")
    def root(self, lb: np.ndarray, coef: np.ndarray, owner: np.ndarray, steps: int = 20
             ) -> list[Fraction] | None:
        """The whole region as the first leaf, for searches that never hand boxes over (ReLU
        splitting): the minimiser of every row's linear lower bound (lb (R,), coef (R, d)) over the
        region's box, confirmed if violating, then a full PGD run per disjunct from the corners of
        its own rows (``owner`` (R,): each row's disjunct) and the two best others; the corners stay
        the anchors of later ``step`` calls without boxes."""
        lo = np.broadcast_to(self.lo, coef.shape)
        hi = np.broadcast_to(self.hi, coef.shape)
        pts = leaf_minimisers(lo, hi, np.nan_to_num(coef))
        m = margins(self.region, self.ex.forward(pts)).min(1)
        m = np.where(np.isnan(m), np.inf, m)
        fin = np.abs(m[np.isfinite(m)])
        self.scale = max(float(np.median(fin)), 1e-9) if fin.size else 1.0
        self.lb0 = abs(float(np.min(lb))) if np.isfinite(lb).all() else None
        self.best = min(self.best, float(m.min()))
        self.anchors = pts
        found = self._check(pts, m)
        w = self.ex.work
        try:
            best2 = np.argsort(m)[:2]
            for j, (A, b) in enumerate(self.disjuncts if found is None else ()):
                sel = np.union1d(np.nonzero(owner == j)[0], best2)
                z, v = pgd(self.ex, A, b, pts[sel], lo[sel], hi[sel], steps=steps, decay=0.8)
                v = np.where(np.isnan(v), np.inf, v)
                self.best = min(self.best, float(v.min()))
                found = self._check(z, v)
                if found is not None:
                    break
        finally:
            self.spent += self.ex.work - w
        return found

    def _pgd(self, lo: np.ndarray, hi: np.ndarray, pts: np.ndarray, m: np.ndarray) -> list[Fraction] | None:
        """PGD per disjunct in the most violated open boxes (by their minimiser's float margin):
        from the minimiser, the centre, a random point and a random corner of each, and from
        random points and corners of the whole region (fresh restarts of the first attack)."""
        self.stats["pgd_rounds"] += 1
        pick = np.argsort(m)[: self.picks]
        blo, bhi = lo[pick], hi[pick]
        n, d = blo.shape
        starts = np.concatenate([pts[pick], (blo + bhi) / 2, blo + self.rng.random((n, d)) * (bhi - blo),
                                 np.where(self.rng.integers(0, 2, (n, d)).astype(bool), bhi, blo)])
        slo, shi = np.tile(blo, (4, 1)), np.tile(bhi, (4, 1))
        k = max(4, n)
        glo, ghi = np.broadcast_to(self.lo, (2 * k, d)), np.broadcast_to(self.hi, (2 * k, d))
        starts = np.concatenate([starts, self.lo + self.rng.random((k, d)) * (self.hi - self.lo),
                                 _corners(self.rng, self.lo, self.hi, k)])
        slo, shi = np.concatenate([slo, glo]), np.concatenate([shi, ghi])
        for A, b in self.disjuncts:
            z, v = pgd(self.ex, A, b, starts, slo, shi, steps=self.steps, decay=0.8)
            v = np.where(np.isnan(v), np.inf, v)
            self.best = min(self.best, float(v.min()))
            found = self._check(z, v)
            if found is not None:
                return found
        return None
