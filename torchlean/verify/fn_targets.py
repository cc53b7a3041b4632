"""α on the intermediate bounds of graphs whose nonlinear nodes are smooth functions (sigmoid,
tanh, ...: no relu to split), for the root box of a wide-input region (untrusted heuristic).

Input splitting is hopeless on hundreds of inputs, and ``general.bab_region`` then bounds the
root box only: CROWN, then α on the final back-substitution's slopes (``table.alpha_leaf``). Its
intermediate bounds stay CROWN's with the default lines, and on deep sigmoid nets those are what
leaves a disjunct open (eran's 6x200 sigmoid net: 30 to 300 final α steps move the open row from
-1.954 to -1.941 only; bench/README.md, "eran30").

``target_slopes`` chooses, for each fn node t after the first, one lower and one upper slope per
element of every earlier fn node, used only in the back-substitutions of t's argument bounds (a
certificate's per-target ``arg_slopes`` entries ``[node, i, lower, upper, t]``,
``graph_vnn.read_shared``): Adam on the float back-substitution ``alpha.Backsub`` of t's argument
rows, the objective the sum of their lower bounds minus their upper ones (the total width). The
engine then recomputes the forward pass with them, and t's slopes are kept only where its total
width went down. ``root_entry`` then runs the final α (``table.alpha_leaf``) on that state and
returns the region's ``{"per_disjunct": ..., "arg_slopes": ...}`` entry when every disjunct is
refuted. Any slope gives a valid line (the intercept is recomputed from it): the checker replays
every bound with the slopes written in the certificate.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates import fast_engine as fe
from ..certificates.fast_functions import FAST
from . import alpha

#: Adam steps per target node and their step (relative to each element's slope scale)
STEPS, LR = 20, 0.1


def applies(bg: Any) -> bool:
    """Graphs this search is for: two or more fn nodes, none a relu (those have ReLU splits and
    their own per-target slopes, ``graph_relu``), every one with a fast row (for the float
    back-substitution), within ``alpha.MAX_DENSE``."""
    fns = [n for n in bg.nodes if n.kind == "fn"]
    return (len(fns) > 1 and all(n.fn != "relu" and n.fn in FAST for n in fns)
            and all(n.kind in ("input", "const", "lin", "fn") for n in bg.nodes)
            and alpha.dense_size(bg) <= alpha.MAX_DENSE)


def _width(st: Any, t: int) -> float:
    l, u = st.arg[t][0][0], st.arg[t][1][0]
    return float(np.sum(u - l))


def target_slopes(bg: Any, box: Any, deadline: float, steps: int = STEPS, lr: float = LR
                  ) -> tuple[dict[Any, Any], Any] | None:
    """Per-target slopes {(t, j): ((1, size) lower, (1, size) upper)} and the engine's forward
    state with them over the float box, or None past ``deadline`` (``time.perf_counter``)."""
    fg = fe.compiled(bg)
    st = fe.forward(fg, *box, "crown")
    fns = [k for k, n in enumerate(bg.nodes) if n.kind == "fn"]
    out: dict[Any, Any] = {}
    for t in fns[1:]:
        if time.perf_counter() > deadline:
            return None
        A, c = alpha._node_mats(bg, t, "fn")
        Ar = A.take()
        lam0, c0 = np.concatenate([Ar, -Ar]), np.concatenate([c, -c])
        bs = alpha.Backsub.from_fast(bg, fg, st, FAST)
        bs.ops = [op for op in bs.ops if op["k"] < t]  # (t's rows read no later node)
        ops = [op for op in bs.ops if op["kind"] == "fn"]
        cur = {op["k"]: [op["dl"][0, 0].copy(), op["du"][0, 0].copy()] for op in ops}
        scale = {op["k"]: np.maximum(np.abs(op["dl"][0, 0]), np.abs(op["du"][0, 0])) + 1e-3 for op in ops}
        best_v, best = -np.inf, {j: [a.copy() for a in s] for j, s in cur.items()}
        moments: dict[Any, list[Any]] = {}
        for it in range(steps + 1):
            # (one slope per element for every row: shaped (1, 1, size), so each node's intercepts
            # and their derivatives are computed once, not once per row)
            sl = {j: (aL[None, None], aU[None, None]) for j, (aL, aU) in cur.items()}
            v, g = bs.bound(lam0, c0, sl, want_grad=True)
            val = float(np.sum(v))
            if val > best_v:
                best_v, best = val, {j: [a.copy() for a in s] for j, s in cur.items()}
            if it == steps or time.perf_counter() > deadline:
                break
            for j in cur:  # (Adam on slope / scale: one step size for steep and flat elements)
                for side in (0, 1):
                    z = alpha.adam_step(moments, (j, side), cur[j][side] / scale[j],
                                        g[j][side][0].sum(0) * scale[j], lr, it + 1)
                    cur[j][side] = np.clip(z, -4.0, 4.0) * scale[j]
        mine = {(t, j): tuple(a.astype(np.float32).astype(float)[None] for a in s) for j, s in best.items()}
        try:
            from ..certificates.core import OutOfTime, time_limit

            with time_limit(time.monotonic() + (deadline - time.perf_counter())):
                got = fe.forward(fg, *box, "crown", slopes={**out, **mine})
        except OutOfTime:
            return None
        if _width(got, t) < _width(st, t):
            out.update(mine)
            st = got
    return out, st


def entries(slopes: dict[Any, Any]) -> list[list[Any]]:
    """The slopes as a region's per-target ``"arg_slopes"`` entries (exact float32 values)."""
    return [[j, int(i), str(Fraction(float(a[0, i]))), str(Fraction(float(b[0, i]))), t]
            for (t, j), (a, b) in sorted(slopes.items()) for i in range(a.shape[1])]


#: share of the time left that ``root_entry`` may take (the rest goes to the attack, as before)
SHARE = 0.5


def root_entry(t: Any, region: Any, deadline: float) -> dict[str, Any] | None:
    """The region's certificate entry from per-target slopes and the final α at the root box of
    the ``table.Target`` t, or None (a disjunct still open, or past ``deadline``)."""
    from . import table
    from .general import EPS, objective
    from .tree import choice, threshold

    box = fe.boxes([region.lo], [region.hi])
    got = target_slopes(t.bg, box, deadline)
    if got is None or not got[0] or time.perf_counter() > deadline:
        return None
    slopes, _ = got
    C, d, groups, names = objective(region)
    out = table.alpha_leaf(t, *box, C, d, shared=slopes)
    if out is None:
        return None
    lb, ent = out
    trees = []
    for j, (a, e) in enumerate(groups):
        r = a + int(np.argmax(lb[0, a:e]))
        if not lb[0, r] > EPS:
            return None
        proof = [choice(names[j][r - a]), threshold(lb[0, r])]
        ex = ent(0, r)
        trees.append([["leaf", [proof + [{"slopes": ex}] if ex else proof]]])
    return {"per_disjunct": trees, "arg_slopes": entries(slopes)}
