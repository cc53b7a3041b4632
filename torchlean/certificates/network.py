"""The network a bound certificate talks about, re-derived from the graph IR (standard library only).

A feed-forward ReLU network is read from the IR's JSON document (``Graph.to_dict()``: constants are
little-endian bytes, decoded here with ``struct``, so every weight is the exact rational its float
denotes) into a chain of steps over the flattened data vector:

- ``Affine(M, c)``: v ↦ M·v + c, with M and c exact ``Fraction``s;
- ``Relu``: v ↦ max(v, 0) elementwise.

Consecutive linear IR nodes (sub/add/mul by a constant, matmul with a constant, reshape, flatten)
are composed exactly into one Affine step, so a bound replay sees one affine map between ReLUs, as
the verifier does. Anything else (two data operands, non-ReLU nonlinearities, a data transpose
that moves elements) is refused with a one-line ``Unsupported``.

The statement a certificate proves names the network by ``fingerprint(net)``: the SHA-256 of a
canonical encoding of its exact steps, so two IR documents that denote the same function-by-steps
give the same fingerprint, and any changed weight bit changes it.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import sys
from array import array
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

Matrix = list[list[Fraction]]


class Unsupported(ValueError):
    """The IR holds something the bound checker does not model."""


@dataclass(frozen=True)
class Affine:
    M: Matrix  # rows: outputs, columns: inputs
    c: list[Fraction]


@dataclass(frozen=True)
class Relu:
    pass


@dataclass(frozen=True)
class Net:
    n_in: int
    n_out: int
    steps: tuple[Affine | Relu, ...]


_FMT = {"float32": ("f", 4), "float64": ("d", 8), "float16": ("e", 2), "int64": ("q", 8)}


def _decode(a: dict[str, Any]) -> tuple[tuple[int, ...], list[Fraction]]:
    """An IR constant as (shape, row-major exact values)."""
    if a["dtype"] not in _FMT:
        raise Unsupported(f"constant dtype {a['dtype']!r}")
    code, width = _FMT[a["dtype"]]
    raw = base64.b64decode(a["data"])
    shape = tuple(int(d) for d in a["shape"])
    n = _size(shape)
    if len(raw) != n * width:
        raise ValueError("constant byte length does not match its shape")
    vals = struct.unpack(f"<{n}{code}", raw)
    for v in vals:
        if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            raise Unsupported("non-finite weight")
    return shape, [Fraction(v) for v in vals]


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _strides(shape: tuple[int, ...]) -> list[int]:
    s, out = 1, []
    for d in reversed(shape):
        out.append(s)
        s *= d
    return out[::-1]


def _broadcast_index(shape: tuple[int, ...], cshape: tuple[int, ...]) -> list[int]:
    """For each row-major position of ``shape``, the position of a constant of ``cshape`` that
    numpy broadcasting reads there; refuses a constant that would enlarge the data's shape."""
    if len(cshape) > len(shape):
        raise Unsupported(f"constant of shape {cshape} broadcasts the data {shape} to a larger rank")
    cs = (1,) * (len(shape) - len(cshape)) + tuple(cshape)
    for d, e in zip(shape, cs):
        if e not in (1, d):
            raise Unsupported(f"constant of shape {cshape} does not broadcast to the data {shape}")
    cst = _strides(cs)
    out = []
    for flat in range(_size(shape)):
        rem, pos = flat, 0
        for ax, st in enumerate(_strides(shape)):
            i, rem = divmod(rem, st)
            if cs[ax] != 1:
                pos += i * cst[ax]
        out.append(pos)
    return out


class _Chain:
    """The affine map from the last ReLU's output (or the input) to the current data value."""

    def __init__(self, n: int) -> None:
        self.n = n  # width of the vector the map reads
        self.M: Matrix | None = None  # None: identity
        self.c: list[Fraction] = [Fraction(0)] * n

    def rows(self) -> Matrix:
        if self.M is None:
            return [[Fraction(int(i == j)) for j in range(self.n)] for i in range(len(self.c))]
        return self.M

    def scale(self, s: list[Fraction]) -> None:
        self.M = [[s[i] * v for v in row] for i, row in enumerate(self.rows())]
        self.c = [s[i] * v for i, v in enumerate(self.c)]

    def left(self, L: Matrix) -> None:
        """Compose with v ↦ L·v."""
        if self.M is None:
            self.M = [list(r) for r in L] if len(self.c) == self.n else _mul(L, self.rows())
        else:
            self.M = _mul(L, self.M)
        self.c = [sum((a * b for a, b in zip(row, self.c) if a and b), Fraction(0)) for row in L]


def _mul(A: Matrix, B: Matrix) -> Matrix:
    cols = list(zip(*B)) if B else []
    return [[sum((a * b for a, b in zip(row, col) if a and b), Fraction(0)) for col in cols] for row in A]


_CHAIN_OPS = frozenset({"relu", "reshape", "flatten", "transpose", "neg", "add", "sub", "mul", "matmul"})


def network_from_ir(ir: dict[str, Any]) -> Net:
    """Read a ReLU network (one data path through linear nodes and ReLUs) from the IR document."""
    if not isinstance(ir, dict) or ir.get("format") != "torchlean-ir":
        raise ValueError("not a torchlean-ir document")
    if len(ir["inputs"]) != 1 or len(ir["outputs"]) != 1:
        raise Unsupported("exactly one graph input and one output are supported")
    folded = set(ir["constants"])  # refuse a non-chain graph before decoding its weights
    for node in ir["nodes"]:
        if all(i in folded for i in node["inputs"]):
            folded.add(node["output"])
        elif node["op"] not in _CHAIN_OPS:
            op, out = node["op"], node["output"]
            raise Unsupported(f"node {op} -> {out!r} is not supported by the bound checker")
    consts: dict[str, tuple[tuple[int, ...], list[Fraction]]] = {
        k: _decode(a) for k, a in ir["constants"].items()
    }
    inp = ir["inputs"][0]
    data, shape = inp["name"], tuple(int(d) for d in inp["shape"])
    n_in = _size(shape)
    chain, steps = _Chain(n_in), []
    for node in ir["nodes"]:
        op, ins, out, attrs = node["op"], node["inputs"], node["output"], node.get("attrs", {})
        if all(i in consts for i in ins):
            consts[out] = _fold(op, [consts[i] for i in ins], attrs)
            continue
        if [i for i in ins if i not in consts] != [data] or ins.count(data) != 1:
            raise Unsupported(f"node {op} -> {out!r}: only one data operand is supported")
        k = ins.index(data)
        other = consts[ins[1 - k]] if len(ins) == 2 else None
        if op == "relu":
            steps.append(Affine(chain.rows(), list(chain.c)))
            steps.append(Relu())
            chain = _Chain(len(chain.c))
        elif op in ("reshape", "flatten"):
            shape = _reshape(shape, op, attrs)
        elif op == "transpose":
            axes = attrs.get("axes") or tuple(reversed(range(len(shape))))
            if [a for a in axes if shape[a] != 1] != sorted(a for a in axes if shape[a] != 1):
                raise Unsupported("transpose that moves data elements")
            shape = tuple(shape[a] for a in axes)
        elif op == "neg":
            chain.scale([Fraction(-1)] * len(chain.c))
        elif op in ("add", "sub", "mul") and other is not None:
            idx = _broadcast_index(shape, other[0])
            cv = [other[1][i] for i in idx]
            if op == "mul":
                chain.scale(cv)
            elif op == "add":
                chain.c = [a + b for a, b in zip(chain.c, cv)]
            elif k == 0:  # data - const
                chain.c = [a - b for a, b in zip(chain.c, cv)]
            else:  # const - data
                chain.scale([Fraction(-1)] * len(chain.c))
                chain.c = [a + b for a, b in zip(chain.c, cv)]
        elif op == "matmul" and other is not None:
            L, shape = _matmul_matrix(shape, other, data_left=(k == 0))
            chain.left(L)
        else:
            raise Unsupported(f"node {op} -> {out!r} is not supported by the bound checker")
        data = out
    if ir["outputs"][0] != data:
        raise Unsupported("the graph output is not the end of the data path")
    steps.append(Affine(chain.rows(), list(chain.c)))
    return Net(n_in, _size(shape), tuple(steps))


def _reshape(shape: tuple[int, ...], op: str, attrs: dict[str, Any]) -> tuple[int, ...]:
    n = _size(shape)
    if op == "flatten":
        s = int(attrs.get("start_dim", 1))
        s = s + len(shape) if s < 0 else s
        return (*shape[:s], _size(shape[s:]))
    target = [int(d) for d in attrs.get("shape", ())]
    if -1 in target:
        known = _size(tuple(d for d in target if d != -1))
        target = [n // known if d == -1 else d for d in target]
    if _size(tuple(target)) != n:
        raise ValueError(f"reshape {shape} -> {target} changes the size")
    return tuple(target)


def _matmul_matrix(
    shape: tuple[int, ...], w: tuple[tuple[int, ...], list[Fraction]], data_left: bool
) -> tuple[Matrix, tuple[int, ...]]:
    """The matrix of x ↦ x @ W (data_left) or x ↦ W @ x on the row-major flattened data."""
    wshape, wv = w
    if len(wshape) != 2 or len(shape) < 2:
        raise Unsupported("matmul with a constant must be 2-D against a rank >= 2 value")
    lead = _size(shape[:-2])
    if data_left:  # x (..., p, k) @ W (k, m)
        p, k = shape[-2:]
        k2, m = wshape
        out_shape = (*shape[:-2], p, m)
        rows = []
        for b in range(lead):
            for i in range(p):
                for j in range(m):
                    r = [Fraction(0)] * (lead * p * k)
                    for t in range(k):
                        r[(b * p + i) * k + t] = wv[t * m + j]
                    rows.append(r)
    else:  # W (m, k) @ x (..., k, q)
        k, q = shape[-2:]
        m, k2 = wshape
        out_shape = (*shape[:-2], m, q)
        rows = []
        for b in range(lead):
            for i in range(m):
                for j in range(q):
                    r = [Fraction(0)] * (lead * k * q)
                    for t in range(k):
                        r[(b * k + t) * q + j] = wv[i * k2 + t]
                    rows.append(r)
    if k2 != k:
        raise ValueError(f"matmul inner dimensions differ: {shape} and {wshape}")
    return rows, out_shape


def _fold(op: str, args: list[tuple[tuple[int, ...], list[Fraction]]], attrs: dict[str, Any]):
    """Constant-only nodes the importer may leave: rearrangements and negation."""
    (shape, vals), *rest = args
    if op in ("reshape", "flatten") and not rest:
        return _reshape(shape, op, attrs), vals
    if op == "neg" and not rest:
        return shape, [-v for v in vals]
    if op == "transpose" and not rest and len(shape) == 2 and tuple(attrs.get("axes") or (1, 0)) == (1, 0):
        r, c = shape
        return (c, r), [vals[i * c + j] for j in range(c) for i in range(r)]
    raise Unsupported(f"constant node {op} is not supported by the bound checker")


def fingerprint(net: Net, memo: PartsMemo | None = None) -> str:
    """SHA-256 of the exact steps. The encoding is injective: a header with the sizes, then per
    step ``relu`` or ``affine <rows> <cols>`` followed by M's entries row-major and then c's, each
    block either ``i64`` and the numerators then the denominators as little-endian int64 (when all
    fit, as for any network read from float32/float64 weights) or ``txt`` and the 'p/q' strings
    joined by ','. (Packing integers is ~3x faster than formatting 13,000 fractions, and the
    fingerprint is recomputed by every check.) ``memo`` shares the packed parts with the float
    conversion of the same check (``affine_parts``)."""
    h = hashlib.sha256(f"torchlean-net/2 {net.n_in} {net.n_out}\n".encode())
    for s in net.steps:
        if isinstance(s, Relu):
            h.update(b"relu\n")
            continue
        h.update(f"affine {len(s.M)} {len(s.M[0]) if s.M else 0}\n".encode())
        for block, parts in zip((s.M, [s.c]), affine_parts(s, memo)):
            if parts is None:
                h.update(b"txt" + ",".join(str(q) for row in block for q in row).encode() + b"\n")
            else:
                h.update(b"i64" + b"".join(_le_bytes(a) for a in parts))
    return h.hexdigest()


Parts = tuple[array, array] | None
PartsMemo = dict[int, tuple["Affine", tuple[Parts, Parts]]]


def affine_parts(s: Affine, memo: PartsMemo | None = None) -> tuple[Parts, Parts]:
    """``int_parts`` of an affine step's M and of its c, kept in ``memo`` by the step's identity for
    the rest of one check (the step is stored with them, so its id is not reused)."""
    if memo is not None and id(s) in memo:
        return memo[id(s)][1]
    out = (int_parts(s.M), int_parts([s.c]))
    if memo is not None:
        memo[id(s)] = (s, out)
    return out


def int_parts(rows: list[list[Fraction]]) -> Parts:
    """Numerators and denominators of a matrix, row-major, as int64 arrays (None if any does not
    fit in int64); ``fast.py`` converts weights to floats from them."""
    flat = [q for row in rows for q in row]
    try:
        return array("q", [q.numerator for q in flat]), array("q", [q.denominator for q in flat])
    except OverflowError:
        return None


def _le_bytes(a: array) -> bytes:
    if sys.byteorder == "big":
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def evaluate(net: Net, x: list[Fraction]) -> list[Fraction]:
    """The network's exact real-number output at the rational point ``x``."""
    if len(x) != net.n_in:
        raise ValueError(f"point has {len(x)} coordinates, the network {net.n_in} inputs")
    v = list(x)
    for s in net.steps:
        if isinstance(s, Relu):
            v = [a if a > 0 else Fraction(0) for a in v]
        else:
            v = [sum((a * b for a, b in zip(row, v) if a and b), Fraction(0)) + c for row, c in zip(s.M, s.c)]
    return v
