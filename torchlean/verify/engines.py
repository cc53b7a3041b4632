"""Whole-output bounds of a bound graph over boxes, for the search, the zoo and the tests: the
exact engine's IBP / CROWN of C·y (``exact_ibp``, ``exact_crown``) and the fast engine's batched
ones (``fast_ibp``, ``fast_crown``), with ``select`` (box b of a fast forward state alone).

Moved out of ``certificates/engine.py`` and ``certificates/fast_engine.py`` (session 25): the
checker never calls these (its replays bound a certificate's own forms: ``engine.best_backsub``,
``fast_engine.bound_forms``); they only compose the trusted engines' ``forward`` and
back-substitution, so every number is still the trusted engines' and as sound as theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates import engine as exact
from ..certificates import fast_engine as fe
from ..certificates.bound_graph import neg
from ..certificates.enclosures import DomainError
from ..certificates.fast_backsub import _best_backsub, _through, _weights
from ..certificates.fast_forms import _charge, _safe
from ..certificates.lower import BoundGraph

Q = Fraction


def exact_ibp(bg: BoundGraph, lo: Sequence[Any], hi: Sequence[Any],
              C: Sequence[Sequence[Any]] | None = None) -> tuple[list[Fraction], list[Fraction]]:
    """Exact IBP bounds of C·y (y the outputs; C = identity when None) over the box [lo, hi]."""
    st = exact.forward(bg, [Q(v) for v in lo], [Q(v) for v in hi], "ibp")
    bs = [st.bounds(f) for f in exact.objective(bg, C)]
    return [b[0] for b in bs], [b[1] for b in bs]


def exact_crown(
    bg: BoundGraph, lo: Sequence[Any], hi: Sequence[Any], C: Sequence[Sequence[Any]] | None = None,
    slopes: dict[int, Any] | None = None, method: str = "crown",
) -> tuple[list[Fraction], list[Fraction]]:
    """Exact CROWN bounds (lower, upper) of C·y over the box: intermediate bounds by ``method``
    ("crown" or "ibp"), optional ``slopes`` for the final back-substitution (any value gives a
    valid bound; see ``engine.backsub``), and per row the tightest of IBP and the final
    back-substitution under each slope policy (``engine.best_backsub``)."""
    st = exact.forward(bg, [Q(v) for v in lo], [Q(v) for v in hi], method)
    lows, ups = [], []
    for f in exact.objective(bg, C):
        a, b = st.bounds(f)
        lows.append(max(a, exact.best_backsub(st, f, slopes)))
        # the upper bound is -lower(-f): the same supplied lines, roles unchanged (a positive
        # coefficient of -f still takes the lower line), so the slopes are passed as they are
        ups.append(min(b, -exact.best_backsub(st, neg(f), slopes)))
    return lows, ups


def select(st: Any, b: int) -> Any:
    """Box b of a fast forward state alone (its certified bounds; relaxations are rebuilt from them)."""
    return fe.gather([(st, b)])


@np.errstate(invalid="ignore", over="ignore")  # non-finite entries are handled (vacuous bounds)
def fast_ibp(bg: BoundGraph | fe.FastGraph, lo: np.ndarray, hi: np.ndarray, C: Any = None,
             refuse: bool = False):
    """Certified IBP bounds (B, K) of C·y over each box [lo_b, hi_b] ((B, n_in) floats); on a box
    where some node's argument bounds leave its domain (``fast_engine.undefined``: the exact engine
    refuses it) the vacuous ones, or ``DomainError`` when ``refuse`` (a caller that states the
    bounds as a claim about the run, which may be NaN there)."""
    fg = fe.compiled(bg)
    return _ibp_out(fg, _defined(fe.forward(fg, lo, hi, "ibp"), refuse), C)


def _defined(st: Any, refuse: bool) -> Any:
    """``st``, with ``st.bad`` (B,) the boxes ``fast_engine.undefined`` finds (raises on one when
    ``refuse``)."""
    st.bad, why = fe.undefined(st)
    if refuse and why is not None:
        raise DomainError(f"the network is not defined everywhere on the box: {why}")
    return st


def _ibp_out(fg: fe.FastGraph, st: Any, C: Any):
    yl, yu = fg.out.bounds(st.L, st.U, st.vmax)
    yl, yu = np.where(st.bad[:, None], -np.inf, yl), np.where(st.bad[:, None], np.inf, yu)
    if C is None:
        return yl, yu
    Cm = np.asarray(C, dtype=float)
    Cp, Cn = np.maximum(Cm, 0), np.minimum(Cm, 0)
    lo, hi = yl @ Cp.T + yu @ Cn.T, yu @ Cp.T + yl @ Cn.T
    ch = _charge(np.maximum(np.abs(yl), np.abs(yu)) @ np.abs(Cm).T, Cm.shape[1])
    return _safe(lo - ch, hi + ch)


@np.errstate(invalid="ignore", over="ignore")  # non-finite entries are handled (vacuous bounds)
def fast_crown(bg: BoundGraph | fe.FastGraph, lo: np.ndarray, hi: np.ndarray, C: Any = None,
               slopes: dict[int, Any] | None = None, method: str = "crown",
               shared: dict[Any, Any] | None = None, refuse: bool = False):
    """Certified CROWN bounds (B, K) of C·y over each box, as ``exact_crown`` (slopes per node:
    arrays (B, size), NaN = default; max: member index arrays), the tighter of CROWN and IBP.
    ``shared``: ``fast_engine.forward``'s shared / per-target slopes (a region's ``arg_slopes``);
    an undefined box and ``refuse``: as ``fast_ibp``."""
    fg = fe.compiled(bg)
    st = _defined(fe.forward(fg, lo, hi, method, slopes=shared), refuse)
    il, iu = _ibp_out(fg, st, C)
    Cm = np.eye(fg.bg.n_out) if C is None else np.asarray(C, dtype=float)  # (floats taken as exact)
    K = Cm.shape[0]
    lin = np.repeat(np.concatenate([Cm, -Cm])[None], st.B, axis=0)
    const, err = np.zeros((st.B, 2 * K)), np.zeros((st.B, 2 * K))
    lam: dict[int, np.ndarray] = {}
    const, err = _through(st, lam, lin, const, err, fg.out, W=_weights(st, fg.out, None))
    low = _best_backsub(st, lam, const, err, slopes)
    low = np.where(st.bad[:, None], -np.inf, low)  # (the vacuous bounds: as ``_ibp_out``'s)
    return np.maximum(il, low[:, :K]), np.minimum(iu, -low[:, K:])
