"""The fast error column's rows for the normalising primitives, layer_norm, softmax and log_softmax
(``fast_errors.py``, read it first): each node is the exact column's own entry
(``errorbound.apply``: ``_layer_norm`` with ``errornorm.normalise``, ``_softmax`` with
``errornorm.softmax_ratio`` / ``softmax_relational``), run in exact rationals on the node's inputs
with each input element's error collapsed into ONE source of bound E_j (as ``Ctx.alias``), and its
output forms read back into the fast layout. One implementation of each rule: the fast column makes
the same claim, with the same proof, as the exact one.

Why the read-back is sound. Source j of the exact run is d_j = e_j, the input element's true error,
and |e_j| <= E_j (the fast column's bound of that element), so every exact step holds with it. An
output's exact error form is e_y = sum_j k_j d_j + sum_t k_t d_t + r (|d_t| <= loc_t: the entry's
own new sources, shared where the rule shares them, e.g. layer norm's row factor F - 1; |r| <= the
V's rem). Substituting the fast forms d_j = e_j = C_j . delta + r_j gives e_y = (K C) . delta +
sum_j k_j r_j + sum_t k_t d_t + r: the form K C (computed in float64: gamma_n |K| E charged, plus
U |K| E for the coefficients k_j = c_j / 2^F rounded to floats), rem sum |k_j| rem_j, the entry's
sources appended with their bounds rounded up (their float coefficients' rounding charged, U |k_t|
loc_t), and r into rem. Everything charged joins one new source per element (``_Walk.make``).
Per node the cost is the exact entry's on ONE source per input element (n + a few per row), not on
the forms: layer norm's rows of n, softmax's groups.

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
from .fast_blocks import _apply, _blk, _rows, _terms
from .fast_forms import U, _charge, _hi, _Mat, _up
from .lower import NEG_INF

if TYPE_CHECKING:
    from .fast_errors import _V, _Walk

Q = Fraction
#: the primitives whose fast row is the exact column's entry, read back (``exact_row``)
NORMS = ("layer_norm", "softmax", "log_softmax")


def _exact_inputs(ctx: Ctx, v: _V, mask: np.ndarray | None) -> tuple[list[V], list[int]]:
    """The exact elements of one fast input: range [lo, hi] (floats, read exactly), error ONE new
    source of bound >= E (``Ctx._store`` rounds up), none where E is 0 (the error is 0 then: E
    bounds it); a masked element is the exact column's -inf constant. Also each element's source
    (-1: none)."""
    out, src = [], []
    for j, (lo, hi, E) in enumerate(zip(v.lo.tolist(), v.hi.tolist(), v.E.tolist())):
        if mask is not None and mask[j]:
            out.append(ctx.const(NEG_INF))  # (error 0: the float run's -inf is exact, ``lower``)
            src.append(-1)
        elif E == 0:
            out.append(ctx.point(Q(lo), Q(hi)))
            src.append(-1)
        else:
            L = ctx._store([Q(E)])  # (a constant: an int at scale 2^G, >= E)
            ctx.loc.append(L)
            ctx.locmax.append(L)
            s = len(ctx.loc) - 1
            out.append(V(Q(lo), Q(hi), {s: 1 << F}, ZERO, ctx.bound({s: 1 << F}, ZERO)))
            src.append(s)
    return out, src


def exact_row(w: _Walk, op: str, ins: list[_V], shapes: list[tuple[int, ...]], at: dict[str, Any],
              lo: np.ndarray, hi: np.ndarray, consts: list[np.ndarray | None],
              masks: list[np.ndarray | None]) -> _V:
    """The node ``op`` (one of ``NORMS``) by the exact column's entry (module docstring): ``ins``
    the fast inputs, ``consts`` their constants' floats where constant (cast to the format as the
    exact column's constants: value exact, cast error as rem), ``masks`` their -inf elements,
    [lo, hi] the node's fast ranges (the entry's ``rng``), ``at`` the node's attributes (layer_norm:
    "var+eps", lower bounds of each row's variance plus eps from the fast ranges)."""
    ctx = copy.copy(w.q)  # (the statement's format constants; its own sources, from 0)
    ctx.loc, ctx.locmax, ctx.nf = [], [], 0
    ctx.budget(len(lo))
    xs, srcs, data = [], [], []
    for v, c, m in zip(ins, consts, masks):
        if c is not None and not v.C:  # a constant: as ``errorbound.propagate`` reads it
            c = c.ravel()
            require(m is None or not m.any() or op == "softmax", f"{op}: a -inf constant")
            xs.append([ctx.const(NEG_INF) if m is not None and m[j] else ctx.const(Q(q), ctx.cast_err(Q(q)))
                       for j, q in enumerate(c.tolist())])
            srcs.append([-1] * len(c))
        else:
            e, s = _exact_inputs(ctx, v, m)
            xs.append(e)
            srcs.append(s)
            data.append((v, s))
    n_in = len(ctx.loc)
    rng = [(Q(a), Q(b)) for a, b in zip(lo.tolist(), hi.tolist())]
    ys = apply(ctx, op, xs, shapes, at, rng, [False] * len(xs))
    require(len(ys) == len(lo), f"{op}: {len(ys)} elements for {len(lo)}")
    m = len(ys)
    # the exact forms: K over the input sources (s < n_in), N over the entry's own (s >= n_in)
    kr, kc, kv, nr, nc, nv = [], [], [], [], [], []
    rem = np.zeros(m)
    for i, y in enumerate(ys):
        for s, c in sorted(y.c.items()):
            k = float(Q(c, 1 << F))  # (rounded to nearest: within U |k|, charged below)
            r_, c_, v_ = (kr, kc, kv) if s < n_in else (nr, nc, nv)
            r_.append(i)
            c_.append(s if s < n_in else s - n_in)
            v_.append(k)
        rem[i] = _hi(y.rem) if y.rem else 0.0
    # each input source's fast form: its element's rows, stacked in the exact sources' order
    # (sources are made input by input, element by element: ``_exact_inputs``), with E and rem
    Cin: dict = {}
    Ein, remin = np.zeros(n_in), np.zeros(n_in)
    at0 = 0
    for v, s in data:
        idx = np.array([j for j, t in enumerate(s) if t >= 0], dtype=np.int64)
        require(bool((np.array(s)[idx] == np.arange(at0, at0 + len(idx))).all()),
                f"{op}: sources out of order")
        sh = np.arange(at0, at0 + len(idx))
        for key, X in _rows(v.C, idx).items():  # (rows sh of an n_in-row block: exact copies)
            r_, c_, v_ = _coo(X, sh)
            if key in Cin:
                r0, c0, v0 = _coo(Cin[key], np.arange(n_in))
                r_, c_, v_ = np.concatenate([r0, r_]), np.concatenate([c0, c_]), np.concatenate([v0, v_])
            Cin[key] = _blk(n_in, X.shape[1], r_, c_, v_)
        Ein[sh], remin[sh] = v.E[idx], v.rem[idx]
        at0 += len(idx)
    M = _Mat(m, n_in, np.array(kr, dtype=np.int64), np.array(kc, dtype=np.int64), np.array(kv))
    n = int(_terms(M).max(initial=1))
    aM = M.map(np.abs)
    # K C in float64: within gamma_n |K||C| of the exact product (its sources' share gamma_n |K| E,
    # ``_dot``'s charge); each float k_j within U |k_j| of c_j / 2^F: U |K| E, one charge more
    KE = aM.rmul(Ein[None])[0]
    C = _apply(M, Cin) if kv else {}
    local = _charge(KE, n) + _charge(KE, 1)
    # (sum |k_j| rem_j <= (1 + U) sum |k_f| rem_j: the sum's n roundings and U, within n + 3)
    rem = _up(rem + aM.rmul(remin[None])[0], n + 3)
    if nv:  # the entry's own sources: bounds rounded up, float coefficients within U |k_t|
        Ls = np.array([_hi(Q(L, 1 << G)) for L in ctx.loc[n_in:]])
        r_, c_, v_ = np.array(nr, dtype=np.int64), np.array(nc, dtype=np.int64), np.array(nv)
        local = local + _up(np.bincount(r_, 2 * U * np.abs(v_) * Ls[c_], minlength=m), 3)
        S0 = len(w.L)
        w.L = np.concatenate([w.L, Ls])
        C[S0] = _blk(m, len(Ls), r_, c_, v_)
    # the entry's ranges lie within [lo, hi] (its ``rng``): read outward, the tighter kept
    ylo = np.maximum(lo, np.array([float_below(y.lo) for y in ys]))
    yhi = np.minimum(hi, np.array([_hi(y.hi) for y in ys]))
    return w.make(ylo, np.maximum(ylo, yhi), C, _up(local, 2), rem)


def _coo(X: Any, sh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A block's entries (rows moved to ``sh``), as coordinates."""
    if isinstance(X, np.ndarray):
        r, c = np.nonzero(X)
        return sh[r], c, X[r, c]
    return sh[X.r], X.c, X.v

