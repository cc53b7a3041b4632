"""α per (relu node, target node) on the root's intermediate bounds (untrusted heuristic), and the
node-wise float back-substitution that makes it affordable on convolutional networks.

``target_slopes`` chooses, for each relu node t after the first, the lower slopes of every
earlier relu node's unstable elements that tighten t's unstable argument rows (a certificate's
``[node, i, lower, upper, target]`` entries, ``graph_vnn.read_shared``; ``fast_engine.forward``'s
(target, node) keys). Its gradient comes from a float back-substitution of t's rows:

- on fully connected graphs, ``alpha.Backsub`` (dense multipliers over every variable of the
  graph: a layer's forms read the whole previous layer anyway);
- on other relu-only graphs, ``NodeBacksub``: the multipliers kept per node, (B, R, size_k), and
  moved to a node's parents through the fast engine's own float forms (``fast_engine.FastGraph``'s
  ``_Forms``: per parent a ``_Mat``, sparse for a convolution, with ``lmul``/``rmul`` as
  ``fast_backsub._through`` uses them), so a convolution costs its nonzeros, not R·n_vars (a
  ResNet's 878 rows over its 14,436 variables were 2x ``alpha.MAX_DENSE``). The same algorithm as
  ``Backsub.bound`` for relu nodes (the same closed-form intercepts and their derivatives,
  ``alpha._relu_intercepts``), laid out per node; the tests compare the two.

What is sound is not computed here: the engine recomputes every bound with the slopes chosen
(``fast_engine.forward``), and the checker replays them.
"""

from __future__ import annotations

import copy
import weakref
from typing import Any

import numpy as np

from . import alpha


class NodeBacksub:
    """The float back-substitution of a relu-only bound graph over the B boxes of a fast forward
    state ``st``, through the relu nodes before ``upto`` (all when None), with multipliers per
    node: ``lam0`` {node: (R, size) or (B, R, size)}. ``bound``'s interface is
    ``alpha.Backsub.bound``'s (without ``mult``)."""

    def __init__(self, fg: Any, st: Any, upto: int | None = None):
        from ..certificates.fast_functions import FAST
        from ..certificates.slopes import POLICIES

        bg = fg.bg
        self.fg, self.bg, self.B = fg, bg, st.B
        self.L, self.U = st.L, st.U
        self.ops: list[dict[str, Any]] = []  # latest node first
        for k in range(len(bg.nodes) - 1 if upto is None else upto - 1, 0, -1):
            node = bg.nodes[k]
            if node.kind in ("input", "const"):
                continue
            if node.kind != "fn" or node.fn != "relu":
                raise ValueError(f"NodeBacksub: node {k} is {node.kind} {getattr(node, 'fn', '')}")
            al, au = (np.asarray(v, float)[:, None, :] for v in st.arg[k])  # (B, 1, size)
            dl, du = FAST["relu"].policy_slopes(POLICIES[0], al, au)
            self.ops.append({"k": k, "kind": "fn", "F": fg.forms[k], "l": al, "u": au,
                             "dl": np.broadcast_to(dl, al.shape), "du": np.broadcast_to(du, al.shape)})

    def rows(self, t: int, idx: np.ndarray) -> tuple[dict[int, np.ndarray], np.ndarray]:
        """Node t's argument rows ``idx`` and their negations (lower then upper bounds): the
        multipliers per parent (2·len(idx), size_p) and the constants."""
        F = self.fg.forms[t]
        lam = {p: np.concatenate([A.take(idx), -A.take(idx)]) for p, A, _, _ in F.parents}
        return lam, np.concatenate([F.c[idx], -F.c[idx]])

    def take(self, idx: np.ndarray) -> NodeBacksub:
        """The same back-substitution over the boxes ``idx`` only (``alpha.Backsub.take``'s)."""
        out = copy.copy(self)
        out.B = len(idx)
        out.L, out.U = ([None if v is None else v[idx] for v in vs] for vs in (self.L, self.U))
        out.ops = [{key: v[idx] if key in ("l", "u", "dl", "du") else v for key, v in op.items()}
                   for op in self.ops]
        return out

    def default_slopes(self, R: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The relu rows' defaults, (B, R, size) each."""
        return {op["k"]: tuple(np.broadcast_to(v, (self.B, R, v.shape[-1])).copy()
                               for v in (op["dl"], op["du"])) for op in self.ops}

    def bound(self, lam0: Any, c0: np.ndarray, slopes: dict[int, tuple[np.ndarray, np.ndarray]],
              want_grad: bool = False, mult: dict[int, np.ndarray] | None = None
              ) -> tuple[np.ndarray, dict[Any, Any]]:
        """Lower bounds (B, R) of the rows Σ_p lam0[p]·v_p + c0 (``lam0`` per node, or dense rows
        (R, n_vars) as ``Backsub``'s) minus Σ_k mult[k]·z_k (z_k: relu node k's argument forms,
        mult[k] (B, R, size_k): signed split multipliers) in every box and, if asked, their
        gradients in the slopes (by node, (B, R, size) each) and in the multipliers (key
        ("mult", k)); ``self.lk`` then holds each relu node's multipliers met, ``self.coef`` the
        input node's."""
        c0 = np.asarray(c0, float)
        R = c0.shape[-1]
        B = self.B
        if isinstance(lam0, np.ndarray):  # (dense rows: their nonzero blocks per node)
            lam0 = {k: lam0[..., n.offset:n.offset + n.size] for k, n in enumerate(self.bg.nodes)
                    if lam0[..., n.offset:n.offset + n.size].any()}
        lam = {p: np.broadcast_to(v, (B, R, v.shape[-1])).copy() for p, v in lam0.items()}
        const = np.broadcast_to(c0, (B, R)).copy()
        forms = {op["k"]: op["F"] for op in self.ops}
        for k, s in (mult or {}).items():
            const -= s @ forms[k].c
            for p, A, _, _ in forms[k].parents:
                prod = A.lmul(s.reshape(B * R, -1)).reshape(B, R, -1)
                lam[p] = lam[p] - prod if p in lam else -prod
        tape = []
        for op in self.ops:
            k = op["k"]
            lk = lam.pop(k, None)
            if lk is None:  # (no row reads this node)
                continue
            aL, aU = slopes[k]
            cols = alpha._live(op["l"], op["u"], aL, aU)  # (once for the bound and its gradient)
            bL, bU = alpha._relu_intercepts(op["l"], op["u"], aL, aU, cols)
            pos = lk > 0
            coef = np.where(pos, aL, aU)
            m = lk * coef
            F = op["F"]
            const += (lk * np.where(pos, bL, bU)).sum(-1) + m @ F.c
            flat = m.reshape(B * R, -1)
            for p, A, _, _ in F.parents:  # (fast_backsub._through's products, sparse for a conv)
                prod = A.lmul(flat).reshape(B, R, -1)
                lam[p] = lam[p] + prod if p in lam else prod
            tape.append((op, lk, pos, coef, bL, bU, cols))
        g_lam = {}
        out = const
        for p, lp in lam.items():  # (what is left reads input and const nodes only)
            g_lam[p] = np.where(lp > 0, self.L[p][:, None], self.U[p][:, None])
            out = out + (lp * g_lam[p]).sum(-1)
        self.coef = lam.get(0)
        self.lk = {op["k"]: lk for op, lk, *_ in tape}
        if not want_grad:
            return out, {}
        grads: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # (earliest node first: its parents' are known)
        for op, lk, pos, coef, bL, bU, cols in reversed(tape):
            k, F = op["k"], op["F"]
            g_m = np.broadcast_to(F.c, lk.shape).copy()
            for p, A, _, _ in F.parents:
                g_m += _rmul(A, g_lam[p].reshape(B * R, -1)).reshape(lk.shape)
            g_lam[k] = g_m * coef + np.where(pos, bL, bU)
            g_coef = g_m * lk
            aL, aU = slopes[k]
            dbL, dbU = alpha._relu_intercept_grads(op["l"], op["u"], aL, aU, cols)
            grads[k] = (np.where(pos, g_coef + lk * dbL, 0.0), np.where(pos, 0.0, g_coef + lk * dbU))
        for k in mult or {}:  # (g_lam now holds d out / d lam at the start, per node)
            g = np.broadcast_to(forms[k].c, (B, R, forms[k].c.shape[0])).copy()
            for p, A, _, _ in forms[k].parents:
                g += _rmul(A, g_lam[p].reshape(B * R, -1)).reshape(g.shape)
            grads["mult", k] = -g
        return out, grads


#: multiply-adds one ``NodeBacksub.bound`` may cost over all its rows (``nodewise_size`` per row):
#: its own budget, in place of ``alpha.MAX_DENSE`` (which bounds the dense multipliers' entries,
#: which this one never builds). About 2 s a pass with its gradients on one core: a ResNet's (the
#: 9.1M of sri_resnet_a) 16 rows cost 0.17 s with the gradients (bench/README.md)
MAX_NODEWISE = 2_000_000_000


def nodewise_size(fg: Any) -> int:
    """Multiply-adds per row of ``NodeBacksub.bound`` on the compiled graph ``fg``: every relu
    node's argument forms through its parents (a sparse ``_Mat``'s nonzeros, a dense one's
    entries: ``lmul``'s work, and the gradient's transposed products the same again), plus the
    multipliers' own entries (one per variable)."""
    n = fg.bg.n_vars
    for k, node in enumerate(fg.bg.nodes):
        if node.kind == "fn":
            n += sum(len(A.vals) if A.sparse else A.shape[0] * A.shape[1]
                     for _, A, _, _ in fg.forms[k].parents)
    return n


#: per sparse ``_Mat`` (held weakly: an entry goes with its matrix): its transpose, as a ``_Mat``
#: whose ``lmul`` is the original's ``rmul``: ``_Mat.rmul`` gathers an (M, nnz) array and reduces
#: it, 85% of a ResNet target's gradient pass at 878 rows (bench/README.md)
_TRANSPOSED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _rmul(A: Any, X: np.ndarray) -> np.ndarray:
    """X @ A.T for X (M, n) (``_Mat.rmul``), by the cached transpose's ``lmul`` where A is sparse
    (and not a checked convolution, whose ``rmul`` is dense products: ``fast_forms._Conv``)."""
    if not A.sparse or A.conv is not None:
        return A.rmul(X)
    T = _TRANSPOSED.get(A)
    if T is None:
        from ..certificates.fast_forms import _Mat

        order = np.lexsort((A.rows, A.cols))
        T = _TRANSPOSED[A] = _Mat(A.shape[1], A.shape[0], A.cols[order], A.rows[order], A.vals[order])
    return T.lmul(X)


def _optimise(bs: Any, lam0: Any, c0: Any, w: Any, sl: Any, relus: list[int], t: int, arg: Any,
              base: dict[Any, Any], steps: int, lr: float, stop: Any) -> tuple[dict[Any, Any], Any] | None:
    """Adam on the lower slopes of every relu node before t (their unstable elements by ``arg``,
    starting from ``base``'s where it has one) to raise the w-weighted sum of the bounds ``bs``
    gives t's rows (``lam0``, ``c0``) with the slopes ``sl`` (written in place); ``stop()`` is
    checked after each step. Returns the best slopes as (t, j) entries (unstable elements only, in
    float32: short rationals) and the rows' bounds there, or None when no earlier relu node has an
    unstable element."""
    free = {}  # relu node before t -> (its unstable elements, starting slope vector)
    for j in relus:
        if j >= t:
            break
        unj = (arg[j][0][0] < 0) & (arg[j][1][0] > 0)
        if unj.any():
            s0 = sl[j][0][0, 0].copy()
            if j in base:
                s0 = np.where(np.isnan(base[j][0][0]), s0, base[j][0][0])
            free[j] = (unj, s0)
    if not free:
        return None
    cur = {j: s.copy() for j, (_, s) in free.items()}
    best_val, best, best_v = -np.inf, {j: s.copy() for j, s in cur.items()}, None
    moments: dict[Any, list[Any]] = {}
    for it in range(steps + 1):
        for j, s in cur.items():
            sl[j][0][:] = s
        v, g = bs.bound(lam0, c0, sl, want_grad=True)
        val = float((v[0] * w).sum())
        if val > best_val:
            best_val, best, best_v = val, {j: s.copy() for j, s in cur.items()}, v[0]
        if it == steps or stop():
            break
        for j, (unj, _) in free.items():
            a = alpha.adam_step(moments, j, cur[j], (g[j][0][0] * w[:, None]).sum(0), lr, it + 1)
            cur[j] = np.where(unj, np.clip(a, 0.0, 1.0), cur[j])
    mine = {}
    for j, s in best.items():
        s = np.where(free[j][0], s, np.nan).astype(np.float32).astype(float)
        if (~np.isnan(s)).any():
            mine[t, j] = (s[None], np.full((1, s.size), np.nan))
    return mine, best_v


#: the node-wise optimiser's defaults (``conv_target_slopes``): Adam steps per target node, and
#: the target's argument rows of most weight it back-substitutes (a step costs ~0.01 s per row on
#: a ResNet: bench/README.md)
CONV_STEPS, CONV_ROWS = 10, 96


def conv_target_slopes(bg: Any, fg: Any, box: Any, st: Any, base: dict[Any, Any], until: Any, stop: Any,
                       steps: int = CONV_STEPS, lr: float = 0.1, max_rows: int = CONV_ROWS
                       ) -> tuple[dict[Any, Any], Any]:
    """``target_slopes`` for graphs whose float back-substitution is too costly to repeat per
    target (convolutional ones): the same slopes and objective, by ``NodeBacksub`` over the
    ``max_rows`` rows of t of most weight, with the targets' float bounds (the optimiser's own, a
    guide) standing for the engine's in the later targets' back-substitutions, and ONE forward
    pass of the engine at the end with every target's slopes (a ResNet's costs ~8 s; ``until``
    runs it, None past the deadline; ``stop()`` is checked before each step). Returns the slopes
    (``base``'s included) and their state, or ``base`` and ``st`` when nothing was found."""
    from types import SimpleNamespace

    from ..certificates import fast_engine as fe

    relus = [k for k, n in enumerate(bg.nodes) if n.kind == "fn" and n.fn == "relu"]
    arg = [None if a is None else (a[0].copy(), a[1].copy()) for a in st.arg]  # (box 0: the root)
    view = SimpleNamespace(B=1, L=st.L, U=st.U, arg=arg)
    found: dict[Any, Any] = {}
    for t in relus[1:]:
        if stop():
            break
        l, u = arg[t][0][0], arg[t][1][0]
        un = np.nonzero((l < 0) & (u > 0))[0]
        if not un.size:
            continue
        d2 = (u[un] - l[un]) ** 2
        w = np.concatenate([u[un] ** 2 / d2, l[un] ** 2 / d2])
        keep = np.sort(np.argsort(-w, kind="stable")[:max_rows])  # (lower rows, then upper rows)
        bs = NodeBacksub(fg, view, t)  # (t's rows read no later node)
        lam0, c0 = bs.rows(t, un)
        lam0, c0, w = {p: v[keep] for p, v in lam0.items()}, c0[keep], w[keep]
        sl = bs.default_slopes(1)  # (one slope per element for every row: broadcast)
        got = _optimise(bs, lam0, c0, w, sl, relus, t, arg, base, steps, lr, stop)
        if got is None or got[1] is None:
            continue
        mine, best_v = got
        n = un.size  # the float bounds the slopes give t's rows, for the later targets
        lo_r, up_r = keep[keep < n], keep[keep >= n]
        lo_v, up_v = best_v[: lo_r.size], best_v[lo_r.size:]
        l, u = l.copy(), u.copy()
        l[un[lo_r]] = np.maximum(l[un[lo_r]], lo_v)
        u[un[up_r - n]] = np.minimum(u[un[up_r - n]], -up_v)
        arg[t] = (l[None], np.maximum(u, l)[None])
        found.update(mine)
    if not found:
        return dict(base), st
    got = until(lambda: fe.forward(fg, *box, "crown", slopes={**base, **found}))
    return (dict(base), st) if got is None else ({**base, **found}, got)


def target_slopes(bg: Any, fg: Any, box: Any, st: Any, base: dict[Any, Any], until: Any, stop: Any,
                  steps: int = 20, lr: float = 0.1, nodewise: bool = False) -> tuple[dict[Any, Any], Any]:
    """Per-target relu lower slopes (a certificate's ``[node, i, lower, upper, target]`` entries;
    ``fast_engine.forward``'s (target, node) keys) for the root box, layer by layer: for each relu
    node t after the first, the slopes of every earlier relu node's unstable elements that
    (heuristically) tighten t's unstable elements, by Adam on the float back-substitution of t's
    argument rows at the current bounds (``nodewise``: ``NodeBacksub``, else ``alpha.Backsub``),
    the objective the sum of those rows' bounds weighted by the derivatives of each element's
    triangle height -l·u/(u - l) (u²/(u - l)² for l, l²/(u - l)² for -u). The engine then
    recomputes the forward pass with them (``until``: a runner, None past the deadline;
    ``stop()``: whether to stop, checked before each target and, ``nodewise``, before each step),
    and they are kept only where t's total triangle height went down. ``base``: the shared slopes
    already chosen (the starting point; kept). Untrusted: the checker recomputes every bound.
    Returns the slopes (``base``'s included) and their state."""
    from ..certificates import fast_engine as fe
    from ..certificates.fast_functions import FAST

    relus = [k for k, n in enumerate(bg.nodes) if n.kind == "fn" and n.fn == "relu"]
    out = dict(base)

    def height(s: Any, t: int) -> float:  # t's total triangle height (its relaxation's looseness)
        l, u = s.arg[t][0][0], s.arg[t][1][0]
        return float((np.maximum(-l, 0) * np.maximum(u, 0) / np.maximum(u - l, 1e-30)).sum())

    for t in relus[1:]:
        if stop():
            break
        l, u = st.arg[t][0][0], st.arg[t][1][0]
        un = np.nonzero((l < 0) & (u > 0))[0]
        if not un.size:
            continue
        if nodewise:
            bs: Any = NodeBacksub(fg, st, t)  # (t's rows read no later node)
            lam0, c0 = bs.rows(t, un)
        else:
            A, c = alpha._node_mats(bg, t, "fn")
            Ar = A.take(un)
            lam0, c0 = np.concatenate([Ar, -Ar]), np.concatenate([c[un], -c[un]])
            bs = alpha.Backsub.from_fast(bg, fg, st, FAST)
            bs.ops = [op for op in bs.ops if op["k"] < t]  # (t's rows read no later node)
        d2 = (u[un] - l[un]) ** 2
        w = np.concatenate([u[un] ** 2 / d2, l[un] ** 2 / d2])
        sl = bs.default_slopes(len(c0))
        got = _optimise(bs, lam0, c0, w, sl, relus, t, st.arg, base, steps, lr,
                        stop if nodewise else (lambda: False))
        mine = got[0] if got else {}
        if not mine:
            continue
        got = until(lambda mine=mine: fe.forward(fg, *box, "crown", slopes={**out, **mine}))
        if got is None:
            break
        if height(got, t) < height(st, t):
            out.update(mine)
            st = got
    return out, st
