"""Bit-exact emulated execution of a graph in any format and rounding mode.

Every value is a format value held exactly in a float64 array (a format of <= 53-bit precision
whose exponents stay within binary64's embeds in binary64, infinities, NaN and signed zeros
included; ``Emulator`` refuses any other format: audit54, e8m60 and e12m3 were run and printed
wrong values). Each primitive's result
is computed exactly and rounded once with ``round_fraction``:

- + - * / and sqrt: exact rationals, one rounding (IEEE-754 correct rounding);
- exp, log, tanh, erf, sigmoid, softplus, gelu, silu: the spec's meaning in mpmath at 3p + 40 and
  3p + 104 bits, kept when both round to the same value and neither is exactly 0, else at 3p + 40
  bits plus the format's subnormal and exponent range (``Emulator.prec``: the formulas cancel where
  the result is tiny), then one rounding (correctly rounded unless the real value lies within
  2^-(3p+40) relative of a rounding boundary, which we do not detect);
- matmul, sum, mean: a fixed order, sequential left to right over the reduced axis, every product
  and every addition rounded (mean: the rounded sum, then one rounded division by n);
- relu, maximum, minimum, abs, neg and the structural primitives are exact;
- cast to a format T: one rounding to T, then one to the run's format (each exact where the
  format holds the value: a cast to a wider format changes nothing).

The result is reproducible on any machine. With binary32 and nearest-even, + - * / sqrt and the
exact operations agree bit for bit with numpy float32 (tested); the transcendentals do not always
(numpy's float32 kernels are not correctly rounded: its tanh at 4.0785785 is one ulp above), nor do
sums (BLAS adds in another order: 2^25 + 1 + 1 + 1 is 2^25 + 4 there, 2^25 here). So this is one
binary32 program, not the runtime's: ``verify --float32`` asks both for a sat (audit59).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np

from ..certificates.rounding import FloatValue, Format, get_format, round_fraction, round_sqrt
from ..spec.graph import Graph
from ..spec.primitives import PRIMITIVES
from ..spec.scalar import MPMATH, obj

EXACT_OPS = {"neg", "relu", "maximum", "minimum", "abs", "reshape", "flatten", "transpose",
             "broadcast_to", "concat", "slice", "gather", "where", "max"}
TRANSCENDENTAL = {"exp", "log", "tanh", "erf", "sigmoid", "softplus", "gelu", "silu"}


def _float(v: FloatValue) -> float:
    if v.kind == "nan":
        return float("nan")
    if v.kind == "inf":
        return float("-inf") if v.sign else float("inf")
    f = float(v.mag)
    return -f if v.sign else f


class Emulator:
    def __init__(self, fmt: Format | str, mode: str = "rne"):
        self.fmt = get_format(fmt)
        self.mode = mode
        f = self.fmt
        # every value is held in a float64: a format with more precision or a wider exponent range
        # than binary64 was emulated wrongly and silently (audit54: e11m60's 1 + 2^-60 printed as
        # 1.0, a double rounding; e12m3's 2^-2000 as 0.0, its 2^2000 an OverflowError)
        if not (f.precision <= 53 and f.emax <= 1023 and f.emin - f.mbits >= -1074):
            raise ValueError(f"{f.name}: emulation holds values in binary64; this format's values "
                             "do not all fit (precision <= 53 bits, exponents within binary64's)")
        tiny = self.fmt.min_positive  # (2^-k: k bits below 1)
        self.base = 3 * self.fmt.precision + 40
        self.prec = self.base + tiny.denominator.bit_length() + self.fmt.emax

    # -- scalars ------------------------------------------------------------------------------
    def round(self, q: Fraction, zero_sign: int = 0) -> float:
        return _float(round_fraction(q, self.fmt, self.mode, zero_sign))

    def from_float(self, x: float) -> float:
        """Round a float input to the format (inputs and weights enter rounded)."""
        if not np.isfinite(x):
            return x if self.fmt.has_inf or np.isnan(x) else float("nan")
        return self.round(Fraction(x), int(np.signbit(x)))

    def binary(self, op: str, a: float, b: float) -> float:
        if not (np.isfinite(a) and np.isfinite(b)):
            with np.errstate(all="ignore"):
                r = {"add": a + b, "sub": a - b, "mul": a * b,
                     "div": np.divide(a, b)}[op]
            return self.from_float(float(r))
        x, y = Fraction(a), Fraction(b)
        if op == "div" and y == 0:
            with np.errstate(all="ignore"):
                return self.from_float(float(np.divide(a, b)))
        z = {"add": lambda: x + y, "sub": lambda: x - y, "mul": lambda: x * y,
             "div": lambda: x / y}[op]()
        if z == 0:
            sa, sb = int(np.signbit(a)), int(np.signbit(b))
            if op in ("mul", "div"):
                zs = sa ^ sb
            else:
                sb = sb ^ (op == "sub")
                zs = sa if sa == sb else int(self.mode == "rdn")
            return self.round(z, zs)
        return self.round(z)

    def sqrt(self, a: float) -> float:
        if not np.isfinite(a) or a < 0 or a == 0:
            with np.errstate(all="ignore"):
                return self.from_float(float(np.sqrt(a)))
        return _float(round_sqrt(Fraction(a), self.fmt, self.mode))

    def transcendental(self, op: str, a: float, attrs: dict[str, Any]) -> float:
        if not np.isfinite(a):
            return self.from_float(float(_float_semantics(op, a)))
        # the working precision is absolute as well as relative: the spec's formulas cancel where
        # the result is tiny (softplus log(1 + e^x) and gelu's 1 + tanh(...) for x << 0), and
        # 3p + 40 bits alone resolved 1 + e^-87.5 to 1, so softplus(-87.5) "rounded" to 0 where
        # the binary32 value is 9.98e-39 (audit28: a false `--float32` sat, "Y_0 <= 0" on
        # [-88, -80]); 2^-(bits) far below the format's least subnormal (and its largest
        # exponent, a factor x up to max_finite) keeps every result's 3p + 40 relative bits
        # That precision is slow (2,296 bits for binary64: minutes on a wide box), so it is taken
        # only where needed (Ziv's strategy): the result at 3p + 40 and at 3p + 104 bits, each
        # rounded to the format; when neither is exactly 0 and they agree, the second is kept (a
        # cancellation that ate the first's bits leaves noise of ~2^-(3p+40), which rounds to
        # another value than the second's ~2^-(3p+104) noise: no format's least subnormal is that
        # small relative to 1); an exact 0 (1 + e^x resolved to 1) or a disagreement is computed
        # again at ``self.prec``.
        def at(bits: int) -> Any:
            with mpmath.workprec(bits):
                x = obj(np.array([mpmath.mpf(a)], dtype=object))
                return PRIMITIVES[op].meaning(MPMATH, x, **attrs)[0]

        def rounded(r: Any) -> float:
            if not mpmath.isfinite(r):
                return self.from_float(float(r))
            neg = r < 0
            man, exp = abs(mpmath.mpf(r)).man_exp if r != 0 else (0, 0)
            q = Fraction(int(man)) * (Fraction(2) ** int(exp)) if r != 0 else Fraction(0)
            return self.round(-q if neg else q, int(neg))

        r0 = at(self.base)
        if mpmath.isfinite(r0) and r0 != 0:
            r1 = at(self.base + 64)
            y = rounded(r1)
            if r1 != 0 and rounded(r0) == y:
                return y
        return rounded(at(self.prec))

    # -- tensors ------------------------------------------------------------------------------
    def dot(self, xs: np.ndarray, ys: np.ndarray) -> float:
        acc: float | None = None
        for a, b in zip(xs, ys):
            p = self.binary("mul", float(a), float(b))
            acc = p if acc is None else self.binary("add", acc, p)
        return 0.0 if acc is None else acc

    def node(self, op: str, ins: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
        vec = np.vectorize
        if op in ("add", "sub", "mul", "div"):
            return vec(lambda a, b: self.binary(op, a, b), otypes=[np.float64])(*ins)
        if op == "sqrt":
            return vec(self.sqrt, otypes=[np.float64])(ins[0])
        if op in TRANSCENDENTAL:
            return vec(lambda a: self.transcendental(op, a, attrs), otypes=[np.float64])(ins[0])
        if op == "pow" and float(attrs["exponent"]) == 2:
            return vec(lambda a: self.binary("mul", a, a), otypes=[np.float64])(ins[0])
        if op == "matmul":
            a, b = ins
            batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
            a = np.broadcast_to(a, (*batch, *a.shape[-2:]))
            b = np.broadcast_to(b, (*batch, *b.shape[-2:]))
            out = np.empty((*batch, a.shape[-2], b.shape[-1]))
            for idx in np.ndindex(*batch, a.shape[-2], b.shape[-1]):
                *bi, i, j = idx
                out[idx] = self.dot(a[(*bi, i)], b[(*bi, slice(None), j)])
            return out
        if op in ("sum", "mean"):
            x = ins[0]
            axes = attrs["axes"]
            ax = tuple(range(x.ndim)) if axes is None else tuple(a % x.ndim for a in np.atleast_1d(axes))
            moved = np.moveaxis(x, ax, tuple(range(x.ndim - len(ax), x.ndim)))
            flat = moved.reshape(*moved.shape[: x.ndim - len(ax)], -1)
            res = np.empty(flat.shape[:-1])
            n = flat.shape[-1]
            for idx in np.ndindex(*flat.shape[:-1]):
                s = self.dot(flat[idx], np.ones(n))  # products by 1 are exact
                res[idx] = self.binary("div", s, float(n)) if op == "mean" else s
            if attrs["keepdims"]:
                res = res.reshape([1 if i in ax else d for i, d in enumerate(x.shape)])
            return res
        if op == "cast":  # fl(fl_T(x)): rounded to the target format, then held in the run's
            # (both in the run's mode; exact where the format holds the value, e.g. T wider)
            to = Emulator(attrs["dtype"], self.mode)
            return np.vectorize(lambda v: self.from_float(to.from_float(v)), otypes=[np.float64])(ins[0])
        if op in _NUMPY_EXACT:  # exact in any format; numpy's signed-zero conventions
            return np.asarray(_NUMPY_EXACT[op](*ins), dtype=np.float64)
        if op in EXACT_OPS:
            out = PRIMITIVES[op].meaning(MPMATH, *(obj(a) for a in ins), **attrs)
            return np.asarray(out, dtype=np.float64)
        raise NotImplementedError(f"emulation of {op!r} is not implemented")


_NUMPY_EXACT = {"neg": np.negative, "relu": lambda x: np.maximum(x, 0.0), "maximum": np.maximum,
                "minimum": np.minimum, "abs": np.abs}


def _float_semantics(op: str, a: float) -> float:
    with np.errstate(all="ignore"):
        return {"exp": np.exp, "log": np.log, "tanh": np.tanh, "erf": math.erf,
                "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
                "softplus": lambda v: np.logaddexp(0, v), "gelu": lambda v: v if v > 0 else 0.0 * v,
                "silu": lambda v: v / (1 + np.exp(-v))}[op](a)


def emulate(graph: Graph, inputs: dict[str, Any], fmt: Format | str = "binary32",
            mode: str = "rne") -> list[np.ndarray]:
    """Run ``graph`` with every operation rounded to ``fmt`` in ``mode`` (inputs and weights are
    rounded to the format first). Returns float64 arrays holding the format's values exactly."""
    em = Emulator(fmt, mode)
    conv = np.vectorize(em.from_float, otypes=[np.float64])
    env: dict[str, np.ndarray] = {}
    for v in graph.inputs:
        a = np.asarray(inputs[v.name])
        env[v.name] = conv(a.astype(np.float64)) if a.dtype.kind == "f" else a
    for k, a in graph.constants.items():
        env[k] = conv(a.astype(np.float64)) if a.dtype.kind == "f" else a
    for node in graph.nodes:
        attrs = PRIMITIVES[node.op].check_attrs(node.attrs)
        env[node.output] = np.asarray(em.node(node.op, [env[n] for n in node.inputs], attrs))
    return [env[o] for o in graph.outputs]
