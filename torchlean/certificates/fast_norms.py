"""The fast error column's rows for the normalising primitives, layer_norm, softmax and log_softmax
(``fast_errors.py``, read it first): each node is the exact column's own entry
(``errorbound.apply``: ``_layer_norm`` with ``errornorm.normalise``, ``_softmax`` with
``errornorm.softmax_ratio`` / ``softmax_relational``), run in exact rationals on the fast inputs'
own error forms, and its output forms read back into the fast layout. One implementation of each
rule: the fast column makes the same claim, with the same proof, as the exact one.

Why it is sound. The fast inputs' errors are e_j = sum_s C_js d_s + r_j, |d_s| <= L_s, |r_j| <=
rem_j. The exact run gets one source per fast source read, bound >= L_s (``Ctx._store`` rounds
up), and element j's form with each coefficient rounded to W / 2^F (|C_js - W / 2^F| <= 2^-(F+1)),
that rounding's share sum_s 2^-(F+1) L_s added to its rem with rem_j (rounded up): so e_j is one of
the values the exact element admits, and every exact step holds. Its outputs are e_y = sum_s k_s d_s
+ sum_t k_t d'_t + r, over the same fast sources and the entry's new ones (its roundings, a row's
shared factor F - 1, aliases: each a value bounded by its loc), |r| <= the V's rem. Read back: the
k as floats (int / 2^F, one rounding: 2U |k| L charged per term), the new sources appended with
their bounds rounded up, r in rem; everything charged joins one new source per element
(``_Walk.make``). The cost is the exact column's on these nodes (its aliases and budgets included).

-inf (an attention mask, ``lower_index.NEG_INF``): ``lower`` lets it reach only ``where`` (a copy)
and softmax. The fast column carries such an element as a placeholder 0 with error 0 (``mask``),
and here hands softmax the exact column's own NEG_INF constant, so the entry drops it as there
(exp(-inf - m~) = +0 exactly: its output is 0 and it adds 0 to the sum). A format without
infinities is refused (``fast_errors.propagate``), as in the exact column.
"""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from .core import float_below, require
from .errorbound import apply
from .errorctx import ZERO, Ctx, F, G, V
from .fast_blocks import _blk
from .fast_forms import U, _hi, _up
from .lower import NEG_INF

if TYPE_CHECKING:
    from .fast_errors import _V, _Walk

Q = Fraction
#: the primitives whose fast row is the exact column's entry, read back (``exact_row``)
NORMS = ("layer_norm", "softmax", "log_softmax")


def _forms(w: _Walk, ctx: Ctx, ins: list[_V], consts: list[np.ndarray | None],
           masks: list[np.ndarray | None]) -> tuple[list[list[V]], np.ndarray, dict[int, int]]:
    """The exact elements of the node's inputs, on the fast forms themselves: one exact source per
    fast source the data inputs read (bound L_s rounded up, ``Ctx._store``), each element's
    coefficients c rounded to integers at scale 2^F (|c - W/2^F| <= 2^-(F+1): that times L_s joins
    the element's rem, with its fast rem), its real range [lo, hi] read exactly; a constant is the
    exact column's (value, cast error as rem); a masked element the exact column's -inf constant.
    Also the fast sources read (ascending: exact source i is fast source ref[i]) and each form
    block's width by its first source (``fast_errors``' layout)."""
    width: dict[int, int] = {}
    coo: list[Any] = []
    for v, c in zip(ins, consts):
        if c is not None and not v.C:
            coo.append(None)
            continue
        parts = []
        for key, X in v.C.items():
            width[key] = X.shape[1]
            r, cc, k = _coo(X)
            parts.append((r, cc + key, k))
        coo.append(tuple(np.concatenate(a) for a in zip(*parts)) if parts else
                   (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)))
    ref = np.unique(np.concatenate([x[1] for x in coo if x is not None] + [np.zeros(0, np.int64)]))
    for L in w.L[ref].tolist():
        ctx.loc.append(ctx._store([Q(L)]))  # (an int at scale 2^G, >= L_s)
        ctx.locmax.append(ctx.loc[-1])
    xs = []
    for v, c, m, part in zip(ins, consts, masks, coo):
        if part is None:  # a constant: as ``errorbound.propagate`` reads it
            xs.append([ctx.const(NEG_INF) if m is not None and m[j] else ctx.const(Q(q), ctx.cast_err(Q(q)))
                       for j, q in enumerate(c.ravel().tolist())])
            continue
        r, g, k = part
        o = np.argsort(r, kind="stable")
        r, g, k = r[o], np.searchsorted(ref, g[o]), k[o]
        W = np.rint(k * 2.0 ** F)  # (k 2^F exact, a power-of-two scaling; rint to the nearest integer)
        require(bool(np.isfinite(W).all()), "a form coefficient past 2^960")
        cut = np.searchsorted(r, np.arange(len(v.E) + 1))
        nmax = int(np.diff(cut).max(initial=0))
        # (the rounding of c to W / 2^F: <= 2^-(F+1) L_s per term, summed rounded up, plus rem)
        extra = _up(np.bincount(r, w.L[ref[g]], minlength=len(v.E)) * 2.0 ** -(F + 1) + v.rem, nmax + 2)
        row = []
        for j, (lo, hi) in enumerate(zip(v.lo.tolist(), v.hi.tolist())):
            if m is not None and m[j]:
                row.append(ctx.const(NEG_INF))  # (error 0: the float run's -inf is exact, ``lower``)
                continue
            a, b = cut[j], cut[j + 1]
            cj = {int(s): int(x) for s, x in zip(g[a:b].tolist(), W[a:b].tolist()) if x}
            rem = Q(float(extra[j])) if a < b or v.rem[j] else ZERO
            row.append(V(Q(lo), Q(hi), cj, rem, ctx.bound(cj, rem)))
        xs.append(row)
    return xs, ref, width


def exact_row(w: _Walk, op: str, ins: list[_V], shapes: list[tuple[int, ...]], at: dict[str, Any],
              lo: np.ndarray, hi: np.ndarray, consts: list[np.ndarray | None],
              masks: list[np.ndarray | None]) -> _V:
    """The node ``op`` (one of ``NORMS``) by the exact column's entry (module docstring): ``ins``
    the fast inputs, ``consts`` their constants' floats where constant (cast to the format as the
    exact column's constants: value exact, cast error as rem), ``masks`` their -inf elements,
    [lo, hi] the node's fast ranges (the entry's ``rng``), ``at`` the node's attributes (layer_norm:
    "var+eps", lower bounds of each row's variance plus eps from the fast ranges)."""
    ctx = copy.copy(w.q)  # (the statement's format constants; its own sources)
    ctx.loc, ctx.locmax, ctx.nf = [], [], 0
    ctx.budget(len(lo))
    xs, ref, width = _forms(w, ctx, ins, consts, masks)
    N = len(ref)
    rng = [(Q(a), Q(b)) for a, b in zip(lo.tolist(), hi.tolist())]
    ys = apply(ctx, op, xs, shapes, at, rng, [False] * len(xs))
    require(len(ys) == len(lo), f"{op}: {len(ys)} elements for {len(lo)}")
    m = len(ys)
    # the output forms: over the fast sources read (s < N: fast source ref[s]) and the entry's own
    # new ones (s >= N: its rounding, a row's shared factor, aliases), each coefficient W / 2^F
    # read as a float (one rounding: within U |k|, charged below as 2U |k| L)
    ri, si, ki = [], [], []
    rem = np.zeros(m)
    for i, y in enumerate(ys):
        ri += [i] * len(y.c)
        si += list(y.c)
        ki += [float(c) for c in y.c.values()]
        rem[i] = _hi(y.rem) if y.rem else 0.0
    ri, si, ki = np.array(ri, dtype=np.int64), np.array(si, dtype=np.int64), np.array(ki) * 2.0 ** -F
    Ls = np.array([_hi(Q(L, 1 << G)) for L in ctx.loc[N:]])  # (the new sources' bounds, rounded up)
    old = si < N
    gl = ref[si[old]]
    Lk = np.concatenate([w.L[gl], Ls[si[~old] - N]])
    rk = np.concatenate([ri[old], ri[~old]])
    local = _up(np.bincount(rk, 2 * U * np.abs(np.concatenate([ki[old], ki[~old]])) * Lk, minlength=m), 3)
    C: dict = {}
    keys = np.array(sorted(width), dtype=np.int64)
    kk = keys[np.searchsorted(keys, gl, side="right") - 1] if len(gl) else gl
    for key in np.unique(kk).tolist():  # (the fast layout: one block per make, at its width)
        on = kk == key
        C[key] = _blk(m, width[key], ri[old][on], gl[on] - key, ki[old][on])
    if len(Ls):
        S0 = len(w.L)
        w.L = np.concatenate([w.L, Ls])
        C[S0] = _blk(m, len(Ls), ri[~old], si[~old] - N, ki[~old])
    # the entry's ranges lie within [lo, hi] (its ``rng``): read outward, the tighter kept
    ylo = np.maximum(lo, np.array([float_below(y.lo) for y in ys]))
    yhi = np.minimum(hi, np.array([_hi(y.hi) for y in ys]))
    return w.make(ylo, np.maximum(ylo, yhi), C, local, rem)


def _coo(X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A block's entries as coordinates (rows, columns, values)."""
    if isinstance(X, np.ndarray):
        r, c = np.nonzero(X)
        return r, c, X[r, c]
    return X.r, X.c, X.v
