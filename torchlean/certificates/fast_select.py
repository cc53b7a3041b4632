"""The fast error column's rows that move elements without rounding them (``fast_errors.py``,
read it first): the "exact" linear kind (transpose, slice, concat, broadcast_to, where, gather,
embedding: each output a copy of one input element, ``_select`` its map), max_pool2d's windows
and maximum/minimum (``Ctx.maxlike``: max is exact in floats, so no new source). Moved unchanged
out of ``fast_errors.py`` (session 25) to keep that file readable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .bound_graph import ONE, Aff, Lowerer, Tensor, as_aff
from .core import require
from .fast_blocks import _V, _plus, _rows, _scale, _Sp
from .fast_forms import _charge
from .lower import ROWS as LOWER

#: the selections whose input at this position is read by value: a constant condition or indices
KEY = {"where": 0, "gather": 1, "embedding": 1}


def _select(op: str, xs: list[Tensor], attrs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """An "exact" node's map (``errorbound.LINEAR``: transpose, slice, concat, broadcast_to, where,
    gather, embedding): the bound table's row run on index variables over all its inputs' elements
    (constants too: their cast error is carried as data's; a where's condition and the indices,
    ``KEY``, by their constant values, as the exact column's row reads them), each output required
    to be one variable with coefficient 1, so the float kernel copies that element: per output,
    (which input, which element)."""
    base = np.cumsum([0] + [len(x.v) for x in xs])
    L = Lowerer(int(base[-1]))
    res = LOWER[op](L, [x if KEY.get(op) == i else Tensor(x.shape, [Aff({int(b) + j: ONE})
                                                                     for j in range(len(x.v))])
                        for i, (x, b) in enumerate(zip(xs, base))], attrs)
    require(len(L.nodes) == 1, f"{op}: a row with nonlinear nodes")
    src = []
    for e in res.v:
        e = as_aff(e)
        require(not e.c and len(e.t) == 1 and next(iter(e.t.values())) == 1, f"{op}: not a selection")
        src.append(next(iter(e.t)))
    src = np.array(src, dtype=np.int64)
    inp = np.searchsorted(base, src, side="right") - 1
    return inp, src - base[inp]


def copy(ins: list[_V], mp: Any, lo, hi) -> _V:
    """The "exact" kind of ``fast_errors._lin`` (``Ctx.lin``): each output's one element, ``mp``
    = ``_select``'s (which input, which element) per output, copied (its form's rows,
    rem and E, moved: no rounding, no new source)."""
    inp, elt = mp
    m = len(inp)
    C: dict = {}
    rem, E = np.zeros(m), np.zeros(m)
    for i, v in enumerate(ins):
        sel = np.flatnonzero(inp == i)
        if not len(sel):
            continue
        rem[sel], E[sel] = v.rem[elt[sel]], v.E[elt[sel]]
        part = {}
        for s, X in _rows(v.C, elt[sel]).items():  # (its rows placed at the outputs sel: exact)
            if isinstance(X, np.ndarray):
                Z = np.zeros((m, X.shape[1]))
                Z[sel] = X
                part[s] = Z
            else:  # (sel ascending: the rows stay sorted)
                part[s] = _Sp(sel[X.r], X.c, X.v, (m, X.shape[1]))
        C = _plus(C, part, 1.0) if C else part  # (disjoint rows: each sum is x + 0, exact)
    return _V(lo, hi, C, rem, E)


def maxima(x: _V, idx: np.ndarray, lo, hi) -> _V:
    """``Ctx.maxlike`` per window (members idx, -1 past its end): max is exact in floats and
    |max(x~) - max(x)| <= max |e_j| (no new source: kept as rem); where one member a stays the
    largest whatever the errors (lo_a - E_a >= hi_b + E_b for every other b: then it is the largest
    of x~ and of x), the error is exactly e_a: a's form."""
    on = idx >= 0
    j = np.where(on, idx, 0)
    dn = np.where(on, x.lo[j] - x.E[j] - _charge(np.abs(x.lo[j]) + x.E[j], 1), -np.inf)
    up = np.where(on, x.hi[j] + x.E[j] + _charge(np.abs(x.hi[j]) + x.E[j], 1), -np.inf)
    a = np.argmax(dn, axis=1)
    r = np.arange(len(a))
    up[r, a] = -np.inf
    dom = dn[r, a] >= up.max(axis=1)
    sel, top = j[r, a], np.where(on, x.E[j], 0.0).max(axis=1)
    return _V(lo, hi, _scale(_rows(x.C, sel), dom * 1.0), np.where(dom, x.rem[sel], top),
              np.where(dom, x.E[sel], top))


def maxlike(op: str, a: _V, b: _V, ia: np.ndarray, ib: np.ndarray, lo, hi) -> _V:
    """maximum / minimum of two operands, ``Ctx.maxlike`` per pair (``ia``, ``ib``: the element of
    each that an output reads, after broadcasting; minimum: -max(-a, -b), exact): the pairs as one
    value's elements, then ``maxima`` over each pair."""
    sg = 1.0 if op == "maximum" else -1.0
    pair = [_V(*((v.lo, v.hi) if sg > 0 else (-v.hi, -v.lo)), _scale(v.C, np.full(len(v.E), sg)),
               v.rem, v.E) for v in (a, b)]
    m = len(lo)
    both = copy(pair, (np.repeat([0, 1], m), np.concatenate([ia, ib])),
                np.concatenate([pair[0].lo[ia], pair[1].lo[ib]]),
                np.concatenate([pair[0].hi[ia], pair[1].hi[ib]]))
    y = maxima(both, np.stack([np.arange(m), m + np.arange(m)], axis=1),
               *((lo, hi) if sg > 0 else (-hi, -lo)))
    return _V(lo, hi, _scale(y.C, np.full(m, sg)), y.rem, y.E)
