"""The lowering's rows that read many elements per output (standard library only): matmul, conv2d
and pooling, and ``wide_operand`` (an operand read too often, lowered as variables first); part of
``lower.ROWS``."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from .bound_graph import Aff, Lowerer, Tensor, Unsupported, _lin, _size, _sum, cap, plain_vars, scale
from .lower_index import Row, bcast_shape, broadcast

Q = Fraction


#: ``wide_operand``: composing costs at least WIDE_WORK term operations and WIDE_GAIN times more
#: than lowering the operand's elements as variables first
WIDE_WORK, WIDE_GAIN = 1 << 18, 4


def wide_operand(L: Lowerer, x: Tensor, reads: int, outputs: int, k: int) -> Tensor:
    """The data operand of a linear row by constants (each element read by ``reads`` outputs,
    ``outputs`` outputs of ``k`` terms each), its non-variable elements as ``lin`` variables when
    ``L.wide`` and composing them would cost too much: a spectral layer's inverse DFT reads
    channel mixes that are each a form over every grid point's channels, and composed, every
    output is a form over all of them (the FNO: 1,536 terms per element, hours of lowering). The
    forms stay exact either way; IBP of a variable is looser than of the composed form (CROWN
    back-substitutes through ``lin`` nodes exactly)."""
    if not L.wide or plain_vars(x.v) is not None:
        return x
    width = sum(len(e.t) for e in x.v if isinstance(e, Aff))
    cost = width * reads
    if cost < WIDE_WORK or cost < WIDE_GAIN * (width + outputs * k):
        return x
    return Tensor(x.shape, L.lin(x.v))


def _matmul(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    a, b = ins
    p, k = a.shape[-2:]
    m = b.shape[-1]
    batch = bcast_shape(a.shape[:-2], b.shape[:-2])
    nout = cap(_size(batch) * p * m)
    if b.const() and not a.const():
        a = wide_operand(L, a, m * _size(batch) // max(_size(a.shape[:-2]), 1), nout, k)
    elif a.const() and not b.const():
        b = wide_operand(L, b, p * _size(batch) // max(_size(b.shape[:-2]), 1), nout, k)
    A = broadcast(Tensor(a.shape, a.v), (*batch, p, k))
    B = broadcast(Tensor(b.shape, b.v), (*batch, k, m))
    out = []
    nb = _size(batch)
    for bi in range(nb):
        for i in range(p):
            r0 = (bi * p + i) * k
            xs = A[r0:r0 + k]  # A[(bi·p + i)·k + t] for t < k
            for j in range(m):
                b0 = bi * k * m + j
                out.append((xs, B[b0:b0 + k * m:m]))  # B[(bi·k + t)·m + j] for t < k
    if all(isinstance(w, Fraction) for _, ws in out for w in ws):  # (data by constant: the layers)
        vals, row, pv = [], None, None
        for xs, ws in out:
            if xs is not row:  # (one row of A per i: its output columns share the list)
                row, pv = xs, plain_vars(xs)
            if pv is None:
                vals.append(_lin(list(zip(ws, xs))))
            else:  # distinct variables read directly (conv2d's case): the nonzero weights
                t = {v: q for v, q in zip(pv, ws) if q}
                vals.append(Aff(t) if t else Q(0))
    elif all(isinstance(x, Fraction) for xs, _ in out for x in xs):
        vals = [_lin([(w, x) if isinstance(w, Fraction) else (x, w) for x, w in zip(xs, ws)])
                for xs, ws in out]
    else:  # data by data: one product per term
        prods = L.mul([x for xs, _ in out for x in xs], [w for _, ws in out for w in ws])
        vals = [_sum(prods[r * k:(r + 1) * k]) for r in range(len(out))]
    return Tensor((*batch, p, m), vals)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def out_size(h: int, k: int, s: int, p: int, d: int) -> int:
    """A convolution's (or pooling's) output length along an axis of length h."""
    return (h + 2 * p - d * (k - 1) - 1) // s + 1


def _window(i: int, s: int, p: int, k: int, d: int, size: int) -> list[tuple[int, int]]:
    """(kernel offset, input position) of output position i's window that exist (spec's _window)."""
    start = i * s - p
    return [(t, start + t * d) for t in range(k) if 0 <= start + t * d < size]


def _conv2d(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
    x, w = ins
    if not w.const():
        raise Unsupported("conv2d with a data-dependent kernel")
    s, p, d = _pair(at.get("stride", 1)), _pair(at.get("padding", 0)), _pair(at.get("dilation", 1))
    g = int(at.get("groups", 1))
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // g
    ho, wo = out_size(h, kh, s[0], p[0], d[0]), out_size(wd, kw, s[1], p[1], d[1])
    cap(n * o * ho * wo)
    out = []
    rows = [_window(i, s[0], p[0], kh, d[0], h) for i in range(ho)]
    cols = [_window(j, s[1], p[1], kw, d[1], wd) for j in range(wo)]
    pv = plain_vars(x.v)
    wz = [q if q else None for q in w.v]  # (the zero test once per weight)
    if n == 1:  # (a hint for the fast engine's products, checked there: ``fast_forms.conv_kernel``)
        L.conv_hints.add((c, h, wd, o, kh, kw, *s, *p, *d, g))
    for b in range(n):
        for oc in range(o):
            gi = oc // og
            for i in range(ho):
                for j in range(wo):
                    t, terms = {}, []  # the form's terms (plain variables), else (weight, element)
                    for ci in range(cg):
                        xc = ((b * c + gi * cg + ci) * h) * wd
                        wc = ((oc * cg + ci) * kh) * kw
                        for ta, r in rows[i]:
                            for tb, q in cols[j]:
                                a = wz[wc + ta * kw + tb]
                                if a is None:
                                    continue
                                if pv is not None:  # distinct variables read directly: the weights
                                    t[pv[xc + r * wd + q]] = a
                                else:
                                    terms.append((a, x.v[xc + r * wd + q]))
                    out.append((Aff(t) if t else Q(0)) if pv is not None else _lin(terms))
    return Tensor((n, o, ho, wo), out)


def _pool(kind: str) -> Row:
    def row(L: Lowerer, ins: list[Tensor], at: dict[str, Any]) -> Tensor:
        x = ins[0]
        k, s, p = _pair(at.get("kernel_size", 2)), _pair(at.get("stride", 2)), _pair(at.get("padding", 0))
        n, c, h, wd = x.shape
        ho, wo = (h + 2 * p[0] - k[0]) // s[0] + 1, (wd + 2 * p[1] - k[1]) // s[1] + 1
        cap(n * c * ho * wo)
        groups = []
        for nc in range(n * c):
            for i in range(ho):
                for j in range(wo):
                    groups.append([x.v[(nc * h + r) * wd + q] for _, r in _window(i, s[0], p[0], k[0], 1, h)
                                   for _, q in _window(j, s[1], p[1], k[1], 1, wd)])
        if kind == "max":
            vals = L.max(groups)
        else:
            full = at.get("count_include_pad", True)
            vals = [scale(_sum(g), Q(1, k[0] * k[1] if full else len(g))) for g in groups]
        return Tensor((n, c, ho, wo), vals)
    return row
