"""Stalled input boxes decided by ReLU splits with LP-optimal multipliers (untrusted search, checked
output): nnenum's star sets as a certificate the bound-table checker already replays.

When input splitting stalls on a box (many splits deep near an output's extreme, where the open
boxes keep tens of unstable ReLUs), ``close_box`` decides the box by branch and bound over ReLU
phases inside it. A subproblem is the box with some relu elements split (``["relu", node, i]``);
it is bounded in batches by the checker's fast engine with those phases (the intermediate bounds
the replay will recompute), and where that CROWN bound does not prove the disjunct, by the LP
relaxation of the subproblem over those same intermediate bounds (HiGHS through ``highspy``):

    min f(v)  over  x in the box, and per relu element y = relu(z), z its argument form:
        stable or split active: y = z (and z >= 0 if split), stable or split inactive: y = 0
        (and z <= 0 if split), unstable on [l, u]: y >= 0, y >= z, y <= u (z - l) / (u - l).

For fixed intermediate bounds, the maximum over α (lower ReLU slopes in [0, 1]) and β >= 0 (split
multipliers) of the back-substitution bound of f - Σ β sgn z *is* this LP's minimum (LP duality,
per element the lower hull max(0, z) = max_α α z), and the LP's duals are such an optimum: α =
π₁ / (π₀ + π₁) (the duals of y >= z and y >= 0) and β the split rows' duals. So a leaf records
``{"slopes": [[node, i, α, null], ...], "mult": [[node, i, β], ...]}`` (``graph_vnn``'s extras,
replayed exactly or fast like any β-CROWN leaf) and is re-bounded here by the fast engine on
``engine.mult_form``'s exact form, the replay's own computation, before it is kept. An empty
subproblem (contradictory splits) is closed by the duals of max t s.t. sgn z >= t (a Farkas
combination: scaled, it outweighs any finite bound of f). An LP minimiser with f < 0 is handed to
``confirm`` (exact evaluation): a sat found this way is a checked point.

Only graphs whose nonlinear nodes are all relu are handled (``supported``); without ``highspy``
``close_box`` returns None at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates import engine
from ..certificates import fast_engine as fe
from ..certificates.fast_vnn import phase_arrays
from . import engines
from . import lp as _lp
from .graph_relu import prior_of, slim
from .tree import SplitTree, choice, proof_extras, threshold

EPS = 1e-300  # any positive bound proves a leaf (general.EPS)
DIGITS = 7  # significant digits of a recorded α or β (any α in [0, 1], β >= 0 is sound)
#: ReLU-split nodes one box may open before ``close_box`` gives up (the box goes back to input
#: splitting)
MAX_NODES = 600
BATCH = 16

Phases = dict[tuple[int, int], int]


def supported(bg: Any) -> bool:
    """Whether every nonlinear node is a relu (the LP below models exactly those)."""
    return all(n.kind in ("input", "const") or (n.kind == "fn" and n.fn == "relu") for n in bg.nodes)


class _Graph:
    """The graph's relu argument forms as float triplets (built once per graph)."""

    def __init__(self, bg: Any):
        self.bg = bg
        self.relus = [k for k, n in enumerate(bg.nodes) if n.kind == "fn"]
        self.consts = [k for k, n in enumerate(bg.nodes) if n.kind == "const"]
        self.trip: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        for k in self.relus:
            args = bg.nodes[k].args
            rows = np.array([i for i, f in enumerate(args) for _ in f.t], dtype=np.int64)
            cols = np.array([v for f in args for v in f.t], dtype=np.int64)
            vals = np.array([float(q) for f in args for q in f.t.values()])
            self.trip[k] = (rows, cols, vals, np.array([float(f.c) for f in args]))


_GRAPHS: dict[int, tuple[Any, _Graph]] = {}


def _graph(bg: Any) -> _Graph:
    if id(bg) not in _GRAPHS:
        _GRAPHS[id(bg)] = (bg, _Graph(bg))
    return _GRAPHS[id(bg)][1]


class SubLP:
    """The LP relaxation of one subproblem: box ``lo``/``hi``, the forward state's argument bounds
    of box ``b`` (``st``) and split ``path``; objectives are set in turn (``solve``)."""

    def __init__(self, g: _Graph, st: Any, b: int, path: Phases):
        hs = _lp._highspy()
        inf = hs.kHighsInf
        bg = g.bg
        n = bg.n_vars
        clo, chi = np.full(n, -inf), np.full(n, inf)
        clo[: bg.n_in], chi[: bg.n_in] = st.L[0][b], st.U[0][b]
        for k in g.consts:
            o = bg.nodes[k].offset
            clo[o:o + bg.nodes[k].size], chi[o:o + bg.nodes[k].size] = st.L[k][b], st.U[k][b]
        R, C, V, rlo, rhi = [], [], [], [], []
        self.kind: list[tuple[str, int, int, int]] = []  # per row: (what, node, i, sgn)
        nrow = 0
        self.unst: dict[int, np.ndarray] = {}
        self.slope: dict[int, np.ndarray] = {}
        self.default: dict[int, np.ndarray] = {}
        self.inter: dict[int, np.ndarray] = {}
        self.rows_lo: dict[int, np.ndarray] = {}  # per node: row index of y >= z (or y = z), -1: none
        self.rows_up: dict[int, np.ndarray] = {}  # per node: row index of the chord, -1: none
        self.rows_split: dict[int, np.ndarray] = {}
        for k in g.relus:
            rows, cols, vals, c = g.trip[k]
            o, m = bg.nodes[k].offset, bg.nodes[k].size
            al, au = st.arg[k][0][b], st.arg[k][1][b]
            ph = np.full(m, -1, dtype=np.int8)
            for (kk, i), v in path.items():
                if kk == k:
                    ph[i] = v
            active = (al >= 0) | (ph == 1)
            inactive = ~active & ((au <= 0) | (ph == 0))
            unst = ~active & ~inactive
            self.unst[k] = unst
            s = np.where(unst, au / np.where(unst, au - al, 1.0), 0.0)
            self.slope[k] = s
            self.default[k] = np.where(au >= -al, 1.0, 0.0)  # CROWN's adaptive lower slope
            self.inter[k] = np.where(unst, -s * al, 0.0)
            clo[o:o + m] = np.where(inactive, 0.0, np.where(unst, 0.0, -inf))
            chi[o:o + m] = np.where(inactive, 0.0, inf)
            rl, ru, rs = np.full(m, -1), np.full(m, -1), np.full(m, -1)
            # y - a.v (= c if active, >= c if unstable)
            need = active | unst
            idx = np.nonzero(need)[0]
            rl[idx] = nrow + np.arange(idx.size)
            sel = need[rows]
            R.append(rl[rows[sel]])
            C.append(cols[sel])
            V.append(-vals[sel])
            R.append(rl[idx])
            C.append(o + idx)
            V.append(np.ones(idx.size))
            rlo.append(c[idx])
            rhi.append(np.where(active[idx], c[idx], inf))
            nrow += idx.size
            # chord: y - s a.v <= s (c - l)
            idx = np.nonzero(unst)[0]
            ru[idx] = nrow + np.arange(idx.size)
            sel = unst[rows]
            R.append(ru[rows[sel]])
            C.append(cols[sel])
            V.append(-s[rows[sel]] * vals[sel])
            R.append(ru[idx])
            C.append(o + idx)
            V.append(np.ones(idx.size))
            rlo.append(np.full(idx.size, -inf))
            rhi.append(s[idx] * (c[idx] - al[idx]))
            nrow += idx.size
            # split rows: a.v >= -c (active) or a.v <= -c (inactive)
            idx = np.nonzero(ph >= 0)[0]
            rs[idx] = nrow + np.arange(idx.size)
            sel = (ph >= 0)[rows]
            R.append(rs[rows[sel]])
            C.append(cols[sel])
            V.append(vals[sel])
            rlo.append(np.where(ph[idx] == 1, -c[idx], -inf))
            rhi.append(np.where(ph[idx] == 1, inf, -c[idx]))
            nrow += idx.size
            self.rows_lo[k], self.rows_up[k], self.rows_split[k] = rl, ru, rs
        R_, C_, V_ = np.concatenate(R), np.concatenate(C), np.concatenate(V)
        order = np.lexsort((C_, R_))
        R_, C_, V_ = R_[order], C_[order], V_[order]
        lp = hs.HighsLp()
        lp.num_col_, lp.num_row_ = n, nrow
        lp.col_cost_ = np.zeros(n)
        lp.col_lower_, lp.col_upper_ = clo, chi
        lp.row_lower_, lp.row_upper_ = np.concatenate(rlo), np.concatenate(rhi)
        lp.a_matrix_.format_ = hs.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = np.searchsorted(R_, np.arange(nrow + 1)).astype(np.int32)
        lp.a_matrix_.index_ = C_.astype(np.int32)
        lp.a_matrix_.value_ = V_
        self.lp, self.n, self.nrow = lp, n, nrow
        self.h = _lp._highs()
        self.h.passModel(lp)
        self.g, self.path = g, path

    def solve(self, cost: np.ndarray, c0: float) -> tuple[str, float, Any]:
        """("optimal", min of cost·v + c0, (x, α per node, β per (node, i), LP duals)), or
        ("infeasible" | HiGHS's status, nan, None)."""
        hs = _lp._highspy()
        self.h.changeColsCost(self.n, np.arange(self.n, dtype=np.int32), cost)
        self.h.run()
        st = self.h.getModelStatus()
        if st in (hs.HighsModelStatus.kInfeasible, hs.HighsModelStatus.kUnboundedOrInfeasible):
            return "infeasible", float("nan"), None
        if st != hs.HighsModelStatus.kOptimal:
            return str(st), float("nan"), None
        sol = self.h.getSolution()
        value = self.h.getInfo().objective_function_value + c0
        x = np.array(sol.col_value)[: self.g.bg.n_in]
        return "optimal", value, self._duals(np.array(sol.row_dual), np.array(sol.col_dual), x)

    def _duals(self, rd: np.ndarray, cd: np.ndarray, x: np.ndarray) -> Any:
        """(x, α {node: (size,) NaN = default}, β {(node, i): q > 0}, chord duals {node: (size,)})."""
        bg = self.g.bg
        alpha, beta, chord, upper = {}, {}, {}, {}
        for k in self.g.relus:
            o, m = bg.nodes[k].offset, bg.nodes[k].size
            unst = self.unst[k]
            p1 = np.where(unst, np.maximum(rd[np.maximum(self.rows_lo[k], 0)], 0.0), 0.0)
            p0 = np.where(unst, np.maximum(cd[o:o + m], 0.0), 0.0)
            tot = p0 + p1
            # every unstable element gets its slope written out (the lower one; the upper one is
            # the chord): the exact and fast engines' default lines need not agree
            a = np.where(tot > 1e-12, p1 / np.where(tot > 0, tot, 1.0), self.default[k])
            alpha[k] = np.where(unst, a, np.nan)
            upper[k] = np.where(unst, self.slope[k], np.nan)
            chord[k] = np.where(unst, np.maximum(-rd[np.maximum(self.rows_up[k], 0)], 0.0), 0.0)
            for i in np.nonzero(self.rows_split[k] >= 0)[0]:
                q = rd[self.rows_split[k][i]]
                q = q if self.path[k, int(i)] == 1 else -q
                if q > 0:
                    beta[k, int(i)] = float(q)
        return x, (alpha, upper), beta, chord

    def farkas(self) -> tuple[float, Any] | None:
        """For an empty subproblem: (t* < 0, duals) of max t s.t. sgn z >= t on every split element
        (the rest of the relaxation kept), whose β (Σ = 1) and α certify Σ β sgn z <= t* < 0 on
        the relaxation; None if the LP does not say so."""
        hs = _lp._highspy()
        lp = self.lp
        h = _lp._highs()
        inf = hs.kHighsInf
        n, nrow = self.n, self.nrow
        split_rows = np.concatenate([r[r >= 0] for r in self.rows_split.values()])
        if not split_rows.size:
            return None
        sg = np.zeros(nrow)
        for k in self.g.relus:
            for i in np.nonzero(self.rows_split[k] >= 0)[0]:
                sg[self.rows_split[k][i]] = 1.0 if self.path[k, int(i)] == 1 else -1.0
        # column t (index n): split row r becomes a.v - sgn t >= -c (active) / a.v + t <= -c
        lp2 = hs.HighsLp()
        lp2.num_col_, lp2.num_row_ = n + 1, nrow
        lp2.col_cost_ = np.concatenate([np.zeros(n), [-1.0]])
        lp2.col_lower_ = np.concatenate([lp.col_lower_, [-inf]])
        lp2.col_upper_ = np.concatenate([lp.col_upper_, [inf]])
        lp2.row_lower_, lp2.row_upper_ = lp.row_lower_, lp.row_upper_
        start = np.array(lp.a_matrix_.start_, dtype=np.int64)
        index = np.array(lp.a_matrix_.index_, dtype=np.int64)
        value = np.array(lp.a_matrix_.value_)
        counts = np.diff(start) + (sg != 0)
        R_ = np.concatenate([np.repeat(np.arange(nrow), np.diff(start)), split_rows])
        C_ = np.concatenate([index, np.full(split_rows.size, n)])
        V_ = np.concatenate([value, -sg[split_rows]])
        order = np.lexsort((C_, R_))
        lp2.a_matrix_.format_ = hs.MatrixFormat.kRowwise
        lp2.a_matrix_.start_ = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        lp2.a_matrix_.index_ = C_[order].astype(np.int32)
        lp2.a_matrix_.value_ = V_[order]
        h.passModel(lp2)
        h.run()
        if h.getModelStatus() != hs.HighsModelStatus.kOptimal:
            return None
        t = -h.getInfo().objective_function_value
        if not t < 0:
            return None
        sol = h.getSolution()
        return t, self._duals(np.array(sol.row_dual), np.array(sol.col_dual), None)


def _short(v: float) -> Fraction:
    return Fraction(f"{v:.{DIGITS}g}")


def _extras(g: _Graph, alpha: Any, beta: dict[tuple[int, int], float], scale: float = 1.0
            ) -> tuple[dict[str, list], dict[int, Any], dict[tuple[int, int], Fraction]]:
    """Leaf-proof extras from LP duals (``alpha``: (lower, upper) slopes per node, NaN where
    stable): (entries, fast-engine slopes {node: ((1, size), (1, size))}, exact multipliers)."""
    slopes, fsl = [], {}
    alpha, upper = alpha
    for k in g.relus:
        a, u = alpha[k], upper[k]
        idx = np.nonzero(~np.isnan(a))[0]
        if not idx.size:
            continue
        row, rowu = np.full((1, a.size), np.nan), np.full((1, a.size), np.nan)
        for i in idx:
            q = min(max(_short(float(a[i])), Fraction(0)), Fraction(1))
            qu = _short(float(u[i]))
            row[0, i], rowu[0, i] = float(q), float(qu)
            slopes.append([k, int(i), str(q), str(qu)])
        fsl[k] = (row, rowu)
    mult = {}
    for key, q in beta.items():
        v = _short(q * scale)
        if v > 0:
            mult[key] = v
    return proof_extras(slopes, mult), fsl, mult


def _replay(bg: Any, st: Any, b: int, form: Any, fsl: dict[int, Any], mult: dict, path: Phases) -> float:
    """The smaller of the bound the checker's fast replay computes for this proof of box b
    (``fast_vnn``) and the plain float back-substitution with the same lines (``alpha.Backsub``,
    what the exact replay computes): the fast engine can be the tighter of the two (measured: by
    1.04 on a leaf of tests/test_star.py), and a claim must hold in both replay modes."""
    from ..certificates.fast_functions import FAST
    from .alpha import Backsub, _dense

    one = engines.select(st, b)
    f = engine.mult_form(bg, form, mult, path) if mult else form
    fast = float(fe.bound_forms(one, fe.forms_of(bg, [f]), fsl or None)[0, 0])
    bs = Backsub.from_fast(bg, fe.compiled(bg), one, FAST)
    slopes = bs.default_slopes(1)
    for k, (lo_row, up_row) in fsl.items():
        for side, row in ((0, lo_row), (1, up_row)):
            if row is not None:
                slopes[k][side][0, 0] = np.where(np.isnan(row[0]), slopes[k][side][0, 0], row[0])
    lam0, c0 = _dense([form], bg.n_vars)
    signed: dict[int, np.ndarray] = {}
    for (k, i), q in mult.items():
        sgn = 1 if path[k, i] else -1
        signed.setdefault(k, np.zeros((1, 1, bg.nodes[k].size)))[0, 0, i] = float(q) * sgn
    plain = float(bs.bound(lam0, c0, slopes, mult=signed or None)[0][0, 0])
    return min(fast, plain - 1e-9 * (1 + abs(plain)))


class Objective:
    """A region's disjuncts as the checker builds them: per disjunct, its rows' exact forms (every
    combination of atoms) and names, and all rows as fast-engine forms and dense floats."""

    def __init__(self, bg: Any, forms: list[Any], groups: list[tuple[int, int]], names: list[list[Any]]):
        from .alpha import _dense

        self.forms, self.groups, self.names = forms, groups, names
        self.F = fe.forms_of(bg, forms)
        self.A, self.c = _dense(forms, bg.n_vars)

    @classmethod
    def of(cls, bg: Any, region: Any, combos: list[list[Any]]) -> Objective:
        """The region's rows (every combination ``combos[j]`` of disjunct j's atoms)."""
        from ..certificates.graph_vnn import objective_forms

        forms, index = objective_forms(bg, region, combos)
        groups = [(min(ix.values()), max(ix.values()) + 1) for ix in index]
        return cls(bg, forms, groups, [list(cs) for cs in combos])


def close_box(bg: Any, obj: Objective, lo: np.ndarray, hi: np.ndarray, deadline: float,
              stats: dict[str, Any], confirm: Callable[[np.ndarray], Any] | None = None,
              max_nodes: int = MAX_NODES, branching: str = "lp") -> SplitTree | list[Fraction] | None:
    """Decide the float box [lo, hi] by ReLU splits: a tree rooted at the box whose leaves prove,
    for every disjunct, some row > 0 on their region; a counterexample (``confirm(x)``: an exactly
    confirmed point, or None); or None (more than ``max_nodes`` nodes, the deadline, no highspy)."""
    if not _lp.available() or not supported(bg):
        return None
    g = _graph(bg)
    fg = fe.compiled(bg)
    tree = SplitTree()
    queue: list[tuple[int, Phases, Any]] = [(0, {}, None)]  # (node, path, parent: graph_relu.prior_of)
    nodes = 0
    while queue:
        part, queue = queue[-BATCH:], queue[:-BATCH]
        nodes += len(part)
        if nodes > max_nodes or time.perf_counter() > deadline:
            stats["star_giveup"] = stats.get("star_giveup", 0) + 1
            return None
        B = len(part)
        paths = [p for _, p, _ in part]
        st = fe.forward(fg, np.repeat(lo[None], B, 0), np.repeat(hi[None], B, 0), "crown",
                        phase_arrays(bg, paths), prior=prior_of([p for *_, p in part]))
        lb = fe.bound_forms(st, obj.F)
        stats["star_nodes"] = stats.get("star_nodes", 0) + B
        for b, (node, path, _) in enumerate(part):
            out = _decide(g, obj, st, b, path, lb[b], stats, confirm)
            if isinstance(out, list):
                return out
            if out[0] == "leaf":
                tree.nodes[node] = out
                continue
            pick = _branch(g, st, b, path, out[1], branching)
            if pick is None:
                stats["star_stuck"] = stats.get("star_stuck", 0) + 1
                return None
            ia, ib = tree.split_relu(node, *pick)
            queue += [(ia, {**path, pick: 0}, (st, b, pick[0])), (ib, {**path, pick: 1}, (st, b, pick[0]))]
        slim(st)
    return tree


def _decide(g: _Graph, obj: Objective, st: Any, b: int, path: Phases, lb: np.ndarray,
            stats: dict[str, Any], confirm: Any) -> Any:
    """("leaf", proofs), a confirmed counterexample, or ("open", chord duals of the LP or None)."""
    proofs, lp, chord = [], None, None
    for j, (a, e) in enumerate(obj.groups):
        r = a + int(np.argmax(lb[a:e]))
        if lb[r] > EPS:
            proofs.append([choice(obj.names[j][r - a]), threshold(lb[r])])
            continue
        if lp is None:
            lp = SubLP(g, st, b, path)
            stats["star_lps"] = stats.get("star_lps", 0) + 1
        got = None
        for r in a + np.argsort(-lb[a:e])[:2]:
            status, value, info = lp.solve(obj.A[r], float(obj.c[r]))
            if status == "infeasible":
                far = lp.farkas()
                if far is None:
                    return ("open", None)
                t, (_, alpha, beta, _) = far
                scale = (max(0.0, -float(lb[r])) + 1.0) / -t * 2.0
                got = (r, alpha, beta, scale)
                stats["star_farkas"] = stats.get("star_farkas", 0) + 1
                break
            if status != "optimal":
                return ("open", None)
            x, alpha, beta, ch = info
            if chord is None:
                chord = ch
            if value < 0 and confirm is not None and not any(u.any() for u in lp.unst.values()):
                # (every phase fixed: the LP is exact and its minimiser a candidate; a relaxed
                # LP's minimiser almost never is, and the exact test costs a tenth of a second)
                found = confirm(x)
                if found is not None:
                    return found
            if value > EPS:
                got = (r, alpha, beta, 1.0)
                break
        if got is None:
            return ("open", chord)
        r, alpha, beta, scale = got
        ex, fsl, mult = _extras(g, alpha, beta, scale)
        v = _replay(g.bg, st, b, obj.forms[r], fsl, mult, path)
        if not v > EPS:
            stats["star_short"] = stats.get("star_short", 0) + 1
            return ("open", chord)
        proofs.append([choice(obj.names[j][r - a]), threshold(v), ex] if ex else
                      [choice(obj.names[j][r - a]), threshold(v)])
    stats["star_leaves"] = stats.get("star_leaves", 0) + 1
    return ("leaf", proofs)


def _branch(g: _Graph, st: Any, b: int, path: Phases, chord: Any, how: str) -> tuple[int, int] | None:
    """The relu element to split next: unstable (by the box's intermediate bounds) and unsplit.
    "layer": the earliest node with one, in it the largest LP chord dual x triangle height
    (nnenum's layer order); "lp": that score over all nodes (BaBSR with the LP's duals)."""
    best, pick = -1.0, None
    for k in g.relus:
        al, au = st.arg[k][0][b], st.arg[k][1][b]
        unst = (al < 0) & (au > 0)
        for (kk, i) in path:
            if kk == k:
                unst[i] = False
        if not unst.any():
            continue
        height = np.where(unst, -al * au / np.where(unst, au - al, 1.0), -1.0)
        score = height * (1e-6 + (chord[k] if chord is not None else 0.0))
        score = np.where(unst, score, -1.0)
        i = int(score.argmax())
        if how == "layer":
            return (k, i)
        if score[i] > best:
            best, pick = float(score[i]), (k, i)
    return pick


#: an open box of the input-split search this many input splits deep is handed to ``close_box``,
#: and again every ``RETRY`` splits deeper; None: never (the default: on the instances measured,
#: halving boxes closed them sooner; bench/README.md, "Flat outputs and stalled boxes")
STALL_DEPTH: int | None = None
RETRY = 4


class Stall:
    """The input-split search's stall trigger for one region: ``close`` decides a deep open box by
    ``close_box`` (a tree to graft under the box's node), returns a confirmed counterexample, or
    None (not deep enough, not supported, or not decided: input splitting goes on)."""

    def __init__(self, bg: Any, region: Any, combos: list[list[Any]],
                 confirm: Callable[[list[Fraction]], bool], stats: dict[str, Any]):
        self.bg, self.region, self.combos, self.confirm, self.stats = bg, region, combos, confirm, stats
        self.ok = STALL_DEPTH is not None and supported(bg) and _lp.available()
        self.obj: Objective | None = None

    def close(self, depth: int, lo: np.ndarray, hi: np.ndarray, deadline: float) -> Any:
        st = self.stats
        if not self.ok or depth < STALL_DEPTH or (depth - STALL_DEPTH) % RETRY:
            return None
        if self.obj is None:  # (built on first use)
            self.obj = Objective.of(self.bg, self.region, self.combos)
        st["star_boxes"] = st.get("star_boxes", 0) + 1
        out = close_box(self.bg, self.obj, lo, hi, deadline, st, _point(self.region, lo, hi, self.confirm))
        if isinstance(out, SplitTree):
            st["star_closed"] = st.get("star_closed", 0) + 1
        return out


def _point(region: Any, lo: np.ndarray, hi: np.ndarray, confirm: Callable[[list[Fraction]], bool]
           ) -> Callable[[np.ndarray], list[Fraction] | None]:
    """``close_box``'s ``confirm``: an LP minimiser in [lo, hi] as a confirmed counterexample (its
    float32 rounding into the region first, then its own float value), or None."""

    def point(x: np.ndarray) -> list[Fraction] | None:
        from .attack import box_point

        x = np.clip(x, lo, hi)
        q32 = box_point(x, region)
        if region.contains(q32) and confirm(q32):
            return q32
        q = [Fraction(float(v)) for v in x]
        return q if region.contains(q) and confirm(q) else None

    return point


def close_region(bg: Any, region: Any, combos: list[list[Any]], confirm: Callable[[list[Fraction]], bool],
                 deadline: float, stats: dict[str, Any]) -> list[Any] | list[Fraction] | None:
    """``close_box`` on a whole region's box, nodes bounded by the deadline only: the region's split
    tree in preorder (one tree for every disjunct), a confirmed counterexample, or None (the
    deadline, no highspy, or a node with nothing left to split). The ReLU-split search of ReLU
    chains of 17-64 inputs (``general.verify_target``): it closes the subproblems with every phase
    fixed where ``graph_relu``'s gradient β stops, and was faster than ``graph_relu`` on every such
    instance measured (bench/README.md, "ReLU chains of 17-64 inputs")."""
    if not (_lp.available() and supported(bg)) or any(not d for d in region.disjuncts):
        return None
    lo, hi = (a[0] for a in fe.boxes([region.lo], [region.hi]))
    obj = Objective.of(bg, region, combos)
    out = close_box(bg, obj, lo, hi, deadline, stats, _point(region, lo, hi, confirm), max_nodes=10**9)
    return out.preorder() if isinstance(out, SplitTree) else out
