"""Exact counterexample candidates that are no float32 point (untrusted search; the checker's exact
replay decides).

The float search (``attack``) proposes float32 points of the box. Some properties are violated only
at points no float can name: a tie (``Y_i >= M`` with M the exact maximum) reached at an exact box
end that is a decimal such as 0.1, or at a ReLU kink, a rational such as 1/3. There the search's
candidates come within a float32 step of the witness, their float margin is ~0, and the exact
replay refuses every one of them. The checker's sat replay evaluates the network exactly at any
rational point, so this module proposes exact ones near such refused candidates:

- ``snap``: each coordinate within two float32 steps of an exact end of the region's box becomes
  that end (a Fraction read from the VNN-LIB text): the box's exact ends and corners;
- ``vertex`` (ReLU chains, with ``highspy``): the candidate's activation pattern fixes an affine
  piece of the network; the LP ``min t`` s.t. every atom of the disjunct ``a·y - b <= t``, the
  pattern's sign conditions and the box, solved in float, ends at a vertex whose active constraints
  (HiGHS's nonbasic rows and columns, n_in + 1 of them) are solved again in exact rationals: the
  network's weights are dyadic (float64), so every pre-activation is an exact affine form of the
  input, composed in integers. The exact vertex is where the violation is largest on that piece.

``Probe`` wraps the search's ``confirm``: it keeps the points ``confirm`` refused and, when the
caller asks (``propose``, on a doubling schedule of the search's batches and where a box shrank to a
point), hands exact candidates built from the best of them to ``confirm``. Only ``confirm`` (the
checker's exact vnn-sat replay) makes a point a counterexample.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates.property import Region, Spec
from . import lp as _lp

Confirm = Callable[[list[Fraction]], bool]

#: refused points kept (the best by float margin are tried first), and tried per ``propose``
KEEP, TRIES = 32, 3
#: more inputs than this: ``snap`` candidates only (the exact composition of a wide chain's pieces,
#: n_in columns of big integers per neuron, would cost seconds)
VERTEX_MAX_IN = 64
#: ``observe`` keeps a near miss only below this float margin, and only a new nearest one (a
#: search whose misses stay far, a proof, pays for none)
OBSERVE_MAX = 1e-3
#: the exact basis repair (``_repair``) at most this many inputs, this many violated rows swapped in
REPAIR_MAX, REPAIR_ROWS = 17, 3


def snap(x: np.ndarray, region: Region) -> list[Fraction] | None:
    """x with every coordinate within two float32 steps of an exact end of the region's box moved
    onto that end (exactly), the others as their float64 values; None when none moves."""
    out, moved = [], False
    for v, lo, hi in zip(x, region.lo, region.hi):
        q = Fraction(float(v))
        step = 2 * abs(float(np.spacing(np.float32(v))))
        for end in (lo, hi):
            if q != end and abs(float(v) - float(end)) <= step:
                q, moved = end, True
                break
        out.append(min(max(q, lo), hi))
    return out if moved else None


def _near(x: np.ndarray, region: Region) -> bool:
    """Whether x lies in the region's box widened by two float32 steps per side (a float box's
    outward-rounded end, a candidate moved inward: ``snap``'s reach)."""
    for v, lo, hi in zip(x, region.lo, region.hi):
        step = 2 * abs(float(np.spacing(np.float32(v))))
        if not float(lo) - step <= v <= float(hi) + step:
            return False
    return True


def _dyadic(a: np.ndarray) -> tuple[np.ndarray, int]:
    """(integers N, k) with a = N / 2^k exactly (a float64 array)."""
    fin = a[a != 0]
    if not fin.size:
        return np.zeros(a.shape, dtype=object), 0
    k = max(0, int(np.max(53 - np.frexp(fin)[1])))
    n = np.array([int(v) for v in np.ldexp(a, k).ravel()], dtype=object).reshape(a.shape)
    return n, k


class _Piece:
    """The chain's affine pieces along an activation pattern: per hidden ReLU layer the exact
    pre-activation P x + q (integers, scale 2^-S) and its float copy; the output likewise."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray):
        n = x.size
        P = np.array([[int(i == j) for j in range(n)] for i in range(n)], dtype=object)
        q = np.zeros(n, dtype=object)
        S = 0
        Pf, qf, h = np.eye(n), np.zeros(n), x.astype(np.float64)
        self.hidden: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for i, (W, b) in enumerate(layers):
            Wn, kw = _dyadic(W)
            bn, kb = _dyadic(b)
            k = max(kw, kb)
            Wn, bn = Wn * (1 << (k - kw)), bn * (1 << (k - kb))
            P, q, S = Wn.dot(P), Wn.dot(q) + bn * (1 << S), S + k
            Pf, qf = W @ Pf, W @ qf + b
            pre = W @ h + b
            if i + 1 == len(layers):
                break
            on = pre > 0
            self.hidden.append((P, q, Pf, qf, on))
            P, q = P * on[:, None], q * on
            Pf, qf, h = Pf * on[:, None], qf * on, np.maximum(pre, 0)
        self.P, self.q, self.S, self.Pf, self.qf = P, q, S, Pf, qf


def vertex(layers: list[tuple[np.ndarray, np.ndarray]], region: Region, x: np.ndarray
           ) -> list[Fraction] | None:
    """The exact vertex of x's activation piece (within the region's box) where the most violated
    disjunct at x is violated most: the float LP's optimal basis, solved in rationals; None without
    highspy, a disjunct, or a nonsingular basis."""
    if not _lp.available() or not region.disjuncts:
        return None
    hs = _lp._highspy()
    piece = _Piece(layers, x)
    yf = piece.Pf @ x + piece.qf
    dis = [d for d in region.disjuncts if d]
    if not dis:
        return None
    marg = [max(float(np.dot([float(c) for c in t.a], yf) - float(t.b)) for t in d) for d in dis]
    atoms = dis[int(np.argmin(marg))]
    n = x.size
    rows, rlo, rhi = [], [], []  # over (x, t)
    for _, _, Pf, qf, on in piece.hidden:
        for i in range(Pf.shape[0]):
            rows.append(np.append(Pf[i], 0.0))
            rlo.append(-qf[i] if on[i] else -np.inf)
            rhi.append(np.inf if on[i] else -qf[i])
    for t in atoms:
        a = np.array([float(c) for c in t.a])
        rows.append(np.append(a @ piece.Pf, -1.0))
        rlo.append(-np.inf)
        rhi.append(float(t.b) - float(a @ piece.qf))
    M = np.array(rows)
    lp = hs.HighsLp()
    lp.num_col_, lp.num_row_ = n + 1, M.shape[0]
    lp.col_cost_ = np.append(np.zeros(n), 1.0)
    lo = np.array([float(v) for v in region.lo])
    hi = np.array([float(v) for v in region.hi])
    lp.col_lower_, lp.col_upper_ = np.append(lo, -hs.kHighsInf), np.append(hi, hs.kHighsInf)
    inf = hs.kHighsInf
    lp.row_lower_ = np.where(np.isfinite(rlo), rlo, -inf)
    lp.row_upper_ = np.where(np.isfinite(rhi), rhi, inf)
    lp.a_matrix_.format_ = hs.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = (np.arange(M.shape[0] + 1) * (n + 1)).astype(np.int32)
    lp.a_matrix_.index_ = np.tile(np.arange(n + 1), M.shape[0]).astype(np.int32)
    lp.a_matrix_.value_ = M.ravel()
    h = _lp._highs()
    h.setOptionValue("solver", "simplex")  # (a basic solution: its nonbasic set is the vertex)
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != hs.HighsModelStatus.kOptimal:
        return None
    basis = h.getBasis()
    B = hs.HighsBasisStatus
    eqs: list[tuple[list[Fraction], Fraction]] = []  # exact rows over (x, t) = rhs
    for j, s in enumerate(basis.col_status):
        if s == B.kBasic:
            continue
        e = [Fraction(0)] * (n + 1)
        e[j] = Fraction(1)
        if j == n:
            rhs = Fraction(0)
        else:
            rhs = region.lo[j] if s == B.kLower or region.lo[j] == region.hi[j] else region.hi[j]
        eqs.append((e, rhs))
    scale = Fraction(1, 1 << piece.S)
    r = 0
    for P, q, _, _, _ in piece.hidden:
        for i in range(P.shape[0]):
            if basis.row_status[r] != B.kBasic:
                eqs.append(([Fraction(v) for v in P[i]] + [Fraction(0)], Fraction(-q[i])))
            r += 1
    for t in atoms:
        if basis.row_status[r] != B.kBasic:
            coef = [scale * sum((c * int(piece.P[k, j]) for k, c in enumerate(t.a) if c), Fraction(0))
                    for j in range(n)]
            off = scale * sum((c * int(piece.q[k]) for k, c in enumerate(t.a) if c), Fraction(0))
            eqs.append((coef + [Fraction(-1)], t.b - off))
        r += 1
    sol = _solve(eqs, n + 1)
    if sol is None:
        return None
    if n + 1 <= REPAIR_MAX:
        sol = _repair(eqs, sol, _exact_rows(piece, region, atoms, n, scale)) or sol
    pt = sol[:n]
    return pt if region.contains(pt) else [min(max(v, a), b) for v, a, b in zip(pt, region.lo, region.hi)]


def _exact_rows(piece: _Piece, region: Region, atoms: list[Any], n: int, scale: Fraction
                ) -> list[tuple[list[Fraction], Fraction, int]]:
    """Every constraint of the vertex LP exactly, as (row over (x, t), rhs, sense): sense +1 for
    row >= rhs, -1 for row <= rhs (the box, each hidden ReLU's sign condition, each atom)."""
    out: list[tuple[list[Fraction], Fraction, int]] = []
    for j in range(n):
        e = [Fraction(0)] * (n + 1)
        e[j] = Fraction(1)
        out += [(e, region.lo[j], 1), (e, region.hi[j], -1)]
    for P, q, _, _, on in piece.hidden:
        for i in range(P.shape[0]):
            out.append(([Fraction(int(v)) for v in P[i]] + [Fraction(0)], Fraction(-int(q[i])),
                        1 if on[i] else -1))
    for t in atoms:
        coef = [scale * sum((c * int(piece.P[k, j]) for k, c in enumerate(t.a) if c), Fraction(0))
                for j in range(n)]
        off = scale * sum((c * int(piece.q[k]) for k, c in enumerate(t.a) if c), Fraction(0))
        out.append((coef + [Fraction(-1)], t.b - off, -1))
    return out


def _feasible(rows: list[tuple[list[Fraction], Fraction, int]], sol: list[Fraction]) -> list[int]:
    """The rows the point violates exactly (indices)."""
    bad = []
    for k, (e, rhs, sense) in enumerate(rows):
        v = sum((a * b for a, b in zip(e, sol) if a), Fraction(0))
        if (v - rhs) * sense < 0:
            bad.append(k)
    return bad


def _repair(eqs: list[tuple[list[Fraction], Fraction]], sol: list[Fraction],
            rows: list[tuple[list[Fraction], Fraction, int]]) -> list[Fraction] | None:
    """A feasible exact vertex when the float basis's is not (None when it is, or none is found):
    at a degenerate float optimum several constraints meet at one float point (a box end such as
    0.333333333333333333333 and a ReLU kink at 1/3 round to the same float64), and HiGHS may name
    the one that is not tight in exact arithmetic; each violated constraint (``REPAIR_ROWS`` at
    most) is swapped in for each equation of the basis, and the feasible solution with the least
    t is kept."""
    bad = _feasible(rows, sol)
    if not bad:
        return None
    best: list[Fraction] | None = None
    for k in bad[:REPAIR_ROWS]:
        e, rhs, _ = rows[k]
        for i in range(len(eqs)):
            s2 = _solve(eqs[:i] + [(e, rhs)] + eqs[i + 1:], len(sol))
            if s2 is not None and not _feasible(rows, s2) and (best is None or s2[-1] < best[-1]):
                best = s2
    return best


def _solve(eqs: list[tuple[list[Fraction], Fraction]], n: int) -> list[Fraction] | None:
    """The unique solution of the square system (Gaussian elimination in rationals), or None."""
    if len(eqs) != n:
        return None
    A = [row[:] + [rhs] for row, rhs in eqs]
    for c in range(n):
        p = next((r for r in range(c, n) if A[r][c] != 0), None)
        if p is None:
            return None
        A[c], A[p] = A[p], A[c]
        for r in range(n):
            if r != c and A[r][c] != 0:
                f = A[r][c] / A[c][c]
                A[r] = [u - f * v for u, v in zip(A[r], A[c])]
    return [A[i][n] / A[i][i] for i in range(n)]


class _Confirm:
    """``Probe.confirm``: a callable (the probe's ``_confirm``) carrying ``observe``."""

    def __init__(self, probe: Probe):
        self.probe, self.observe = probe, probe.observe

    def __call__(self, q: list[Fraction]) -> bool:
        return self.probe._confirm(q)


class Probe:
    """The search's ``confirm`` with a memory: ``confirm`` keeps the points it refused, ``propose``
    tries exact candidates (``snap``, then ``vertex`` on a chain) built from the best of them.
    ``layers``: the chain's float64 (W, b), or a function giving them on first use (None: no vertex
    candidates; none either above ``VERTEX_MAX_IN`` inputs)."""

    def __init__(self, spec: Spec, confirm: Confirm, forward: Callable[[np.ndarray], np.ndarray],
                 layers: Any = None, also: Callable[[list[Fraction]], Any] | None = None):
        self.spec, self.inner, self.forward, self.also = spec, confirm, forward, also
        self._layers = layers if spec.n_in <= VERTEX_MAX_IN else None
        self.refused: dict[tuple[float, ...], np.ndarray] = {}
        self.tried: set[tuple[float, ...]] = set()
        self.stats = {"exact_tries": 0, "exact_found": 0, "observed": 0, "also_found": 0}
        self.calls = 0
        self.nearest = np.inf  # (the smallest margin ``observe`` kept)

    @property
    def layers(self) -> list[tuple[np.ndarray, np.ndarray]] | None:
        if callable(self._layers):
            self._layers = self._layers()
        return self._layers

    def scheduled(self) -> list[Fraction] | None:
        """``propose`` on the 1st, 2nd, 4th, 8th, ... call (a caller's loop pays log2 of its rounds)."""
        self.calls += 1
        return self.propose() if self.calls & (self.calls - 1) == 0 else None

    @property
    def confirm(self) -> _Confirm:
        """The search's ``confirm`` with this probe's memory, and an ``observe`` attribute that
        ``attack``'s candidate loops call with their nearest miss above their tolerance."""
        return _Confirm(self)

    def _confirm(self, q: list[Fraction]) -> bool:
        if self.inner(q):
            return True
        key = tuple(float(v) for v in q)
        if key not in self.tried and len(self.refused) < 4 * KEEP:
            self.refused[key] = np.array(key)
        return False

    def observe(self, x: np.ndarray, margin: float) -> None:
        """A near miss whose float margin stayed above the search's ``confirm`` tolerance (no exact
        replay refused it): kept like a refused point, so that ``propose`` builds exact candidates
        from it too (a tie the float search approaches only to ~1e-4, e.g. a kink whose
        neighbouring piece is steep)."""
        if not margin < min(self.nearest, OBSERVE_MAX):  # (only a new nearest miss: a few a search)
            return
        self.nearest = margin
        key = tuple(float(v) for v in x)
        if key not in self.tried and len(self.refused) < 4 * KEEP:
            self.stats["observed"] += 1
            self.refused[key] = np.array(key)

    def propose(self, tries: int = TRIES) -> list[Fraction] | None:
        """A confirmed exact counterexample from the best refused points not tried yet, or None."""
        if not self.refused:
            return None
        from .attack import margins

        keys = list(self.refused)
        xs = np.array([self.refused[k] for k in keys])
        y = self.forward(xs)
        order: list[tuple[float, int, Region]] = []
        for region in self.spec.regions:
            m = margins(region, y).min(1)
            order += [(float(m[i]), i, region) for i in range(len(keys))
                      if np.isfinite(m[i]) and _near(xs[i], region)]
        order.sort(key=lambda u: u[0])
        done = 0
        for _, i, region in order:
            if done >= tries:
                break
            if keys[i] in self.tried:
                continue
            self.tried.add(keys[i])
            self.refused.pop(keys[i], None)
            done += 1
            found = self._exact(xs[i], region)
            if found is not None:
                return found
        if len(self.refused) > KEEP:  # (the worst ones are dropped)
            for _, i, _ in order[KEEP:]:
                self.refused.pop(keys[i], None)
        return None

    def _exact(self, x: np.ndarray, region: Region) -> list[Fraction] | None:
        cands = []
        s = snap(x, region)
        if s is not None:
            cands.append(s)
        if self.layers is not None:
            for z in (x, None if s is None else np.array([float(v) for v in s])):
                if z is None:
                    continue
                try:
                    v = vertex(self.layers, region, z)
                except (ArithmeticError, ValueError, OverflowError):
                    v = None
                if v is not None:
                    cands.append(v)
        for c in cands:
            self.stats["exact_tries"] += 1
            if self.inner(c):
                self.stats["exact_found"] += 1
                return c
        if self.also is not None:  # (``--float32``: a binary32 point near x or its exact points)
            got = self.also([Fraction(float(v)) for v in x])
            if got is not None:
                self.stats["also_found"] += 1
                return list(got[0])
        return None
