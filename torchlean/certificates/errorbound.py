"""Certified floating-point error bounds for layered networks: the ``errorbound`` certificate.

Claim: for every real input x in the box, the network run in ``format`` (each operation rounded,
dot products in any order) returns y~ with |y~_j - y_j(x)| <= epsilon_j, where y(x) is the
real-number network on the same weights. The checker re-derives everything in exact rationals:

- weights come from their bit patterns (``decode`` of the stated format), the box is rational;
  ``input_exact``: the inputs are values of the format (else they are rounded first: u|x| + eta);
- real ranges [l, u] of every neuron by interval propagation (exact, no rounding);
- error bounds E per neuron, layer by layer, from the standard model
  fl(a op b) = (a op b)(1 + d) + e, |d| <= u, |e| <= eta:
  * linear, y = W x + b over n inputs, any summation order, with or without FMA:
    E'_j = sum_i |W_ji| E_i + gamma_k (sum_i |W_ji| M_i + |b_j|) + 4 k eta,
    gamma_k = k u / (1 - k u), k = the number of nonzero terms W_ji, b_j (zeros add exactly),
    M_i = max(|l_i|, |u_i|) + E_i bounds the float input |x~_i|;
  * add_const, y = x + c: E' = E + u (M + |c|) (one rounding; a sum only underflow-errs in a
    format without subnormals, which adds eta);
  * max_groups (max pooling; exact in floats, 1-Lipschitz in the max norm): E' = max of the E_i;
  * relu (exact in floats, 1-Lipschitz): E' = E, or max(0, u + E) when the neuron is off (u <= 0);
  * tanh (library kernel within ``kernel_ulps`` ulp): E' = L E + 2k u T + k eta_min, where L
    bounds tanh' on [l - E, u + E] and T bounds |tanh| there;
  * sigmoid as the runtime computes it, 1 / (1 + exp(-x)) with a k-ulp exp: E' = L E + rho S + eta,
    rho = (1 + u) / ((1 - a)(1 - u)) - 1, a = 2k u + k eta_min, L and S bound sigma' and sigma.
- ranges: intervals, intersected with symbolic intervals (symrange.py) and, when the statement
  says ``"ranges": "backsub"``, with back-substituted bounds (deeppoly.py); errors: the minimum of
  the per-layer rule above and error back-substitution through signed weights (backsub.py);
- every claimed step must be >= the recomputed one (replay from the previous *claimed* step), and
  each epsilon_j >= the last step; overflow anywhere is excluded (rejected, not assumed away).

Assumptions (stated in the certificate, listed in TRUST_BOUNDARIES.md): the runtime's arithmetic is
IEEE-754 in the stated format and mode (correctly rounded + - * /), its BLAS sums the n products of
a dot product in some order with each operation rounded (fused or not), and its tanh/exp kernels are
within ``kernel_ulps`` ulp of the real functions.

Input splitting, kind ``errorbound-split``: the rounding terms scale with the real ranges of the
neurons over the box, so on a large box the bound is far above what any point reaches; bounds over
sub-boxes are much smaller. The certificate is {"kind": "errorbound-split", "statement": S,
"digest": sha256(S), "tree": node} with S an ``errorbound`` statement over the whole box and

    node = {"split": [d, "v"], "lo": node, "hi": node}   children: box with x_d in [lo_d, v], [v, hi_d]
         | {"box": [[lo, hi], ...], "steps": [[...], ...]}   a leaf: ``errorbound`` steps

The checker walks the tree from S's box; at a split it requires 0 <= d < n and lo_d < v < hi_d
(exact rationals), so the two children's boxes are sub-boxes whose union is exactly the parent's
(both closed: v is in both). By induction the leaves' boxes cover S's box. Each leaf must state
the box its path gives (a readable copy, compared exactly), and its steps are replayed as an
``errorbound`` certificate of S with that box, with the same epsilon: so every x of the box lies in
a leaf whose replay proves |y~_j - y_j(x)| <= epsilon_j.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from .backsub import Chain
from .core import Verdict, checker, digest, rational, require, tick
from .deeppoly import DeepPoly
from .functions import FUNCTIONS
from .rounding import MODES, Format, decode
from .symrange import SymRanges

Interval = tuple[Fraction, Fraction]
ACTIVATIONS = ("relu", "tanh", "sigmoid")
#: the smallest kernel error the checker lets a certificate assume (correct rounding is 1/2 ulp)
MIN_KERNEL_ULPS = Fraction(1, 2)


def decode_tensor(t: dict[str, Any]) -> list[Fraction]:
    """A flat list of exact values from {"format": name-or-dict, "shape", "hex"} (big-endian words)."""
    fmt = Format.from_dict(t["format"])
    width = (fmt.bits + 3) // 4
    text = t["hex"]
    count = 1
    for d in t["shape"]:
        count *= int(d)
    require(len(text) == width * count, f"tensor data has {len(text)} hex digits, expected {width * count}")
    out = []
    for k in range(count):
        v = decode(int(text[k * width : (k + 1) * width], 16), fmt)
        require(v.finite, "weights must be finite")
        out.append(v.value)
    return out


def gamma(k: int, u: Fraction) -> Fraction:
    require(k * u < 1, f"gamma_{k} undefined: k*u >= 1")
    return k * u / (1 - k * u)


def tanh_range(lo: Fraction, hi: Fraction) -> Interval:
    """Rational enclosure of tanh over [lo, hi] (the bound table's tanh row)."""
    return FUNCTIONS["tanh"].interval(lo, hi)


def tanh_slope(lo: Fraction, hi: Fraction) -> Fraction:
    """max of tanh' = sech^2 over [lo, hi]: attained at the point nearest 0 (sech^2 is even and
    decreasing in |x|); an upper enclosure of it from the tanh row."""
    m = Fraction(0) if lo <= 0 <= hi else min(abs(lo), abs(hi))
    return FUNCTIONS["tanh"].df(m)[1]


def _mag(iv: Interval) -> Fraction:
    return max(abs(iv[0]), abs(iv[1]))


class Replay:
    """Shared state of one replay: format constants and the assumptions."""

    def __init__(self, stmt: dict[str, Any]):
        self.fmt = Format.from_dict(stmt["format"])
        self.mode = stmt["mode"]
        require(self.mode in MODES, f"unknown rounding mode {self.mode!r}")  # (not silently directed)
        self.u = self.fmt.unit_roundoff(self.mode)
        self.eta = self.fmt.underflow_eta(self.mode)
        self.u_near = self.fmt.unit_roundoff("rne")  # half an ulp, relative, for "k ulp" claims
        self.minpos = self.fmt.min_positive
        self.k = rational(stmt["kernel_ulps"])
        require(self.k >= MIN_KERNEL_ULPS, f"kernel_ulps below {MIN_KERNEL_ULPS}")
        self.limit = self.fmt.max_finite

    def no_overflow(self, bound: Fraction, where: str) -> None:
        require(bound < self.limit, f"{where}: values up to {float(bound):.3g} may overflow {self.fmt.name}")

    def linear(
        self,
        W: list[Fraction],
        b: list[Fraction] | None,
        n: int,
        m: int,
        rng: list[Interval],
        err: list[Fraction],
    ):
        """(output ranges, errors, local errors) of y = W x + b."""
        require(len(W) == n * m and len(rng) == n, f"linear {n}->{m}: shape mismatch")
        require(b is None or len(b) == m, "bias length mismatch")
        M = [_mag(r) + e for r, e in zip(rng, err)]
        out_r, out_e, loc = [], [], []
        for j in range(m):
            row = W[j * n : (j + 1) * n]
            bj = b[j] if b is not None else Fraction(0)
            lo = hi = bj
            prop = absum = Fraction(0)
            for w, (rl, rh), e, mi in zip(row, rng, err, M):
                if w > 0:
                    lo += w * rl
                    hi += w * rh
                elif w < 0:
                    lo += w * rh
                    hi += w * rl
                aw = abs(w)
                prop += aw * e
                absum += aw * mi
            absum += abs(bj)
            # zero weights give exact zero products and exact additions: only nonzeros count
            terms = sum(1 for w in row if w) + (bj != 0)
            g = gamma(max(terms, 1), self.u)
            tiny = 4 * terms * self.eta
            self.no_overflow((1 + g) * absum, f"linear output {j}")
            out_r.append((lo, hi))
            loc.append(g * absum + tiny)
            out_e.append(prop + loc[-1])
        return out_r, out_e, loc

    def add_const(self, c: list[Fraction], rng: list[Interval], err: list[Fraction]):
        require(len(c) == len(rng), "add_const length mismatch")
        out_r = [(lo + ci, hi + ci) for ci, (lo, hi) in zip(c, rng)]
        out_e, loc = [], []
        for ci, r, e in zip(c, rng, err):
            s = _mag(r) + e + abs(ci)
            self.no_overflow(s, "add_const")
            # with subnormals a sum never underflow-errs; flushed formats can lose up to eta
            loc.append(self.u * s + (0 if self.fmt.subnormals else self.eta))
            out_e.append(e + loc[-1])
        return out_r, out_e, loc

    def activation(self, op: str, rng: list[Interval], err: list[Fraction]):
        """(ranges, errors, slope intervals, local errors) of an elementwise activation."""
        out_r, out_e, slopes, loc = [], [], [], []
        one, zero = Fraction(1), Fraction(0)
        for (lo, hi), e in zip(rng, err):
            if op == "relu":
                out_r.append((max(lo, zero), max(hi, zero)))
                out_e.append(e if hi > 0 else max(zero, hi + e))
                # secant slope of relu between the real and the float pre-activation
                slopes.append((one, one) if lo - e >= 0 else (zero, zero) if hi + e <= 0 else (zero, one))
                loc.append(zero)
            elif op == "tanh":
                out_r.append(tanh_range(lo, hi))
                xl, xh = lo - e, hi + e
                slope = tanh_slope(xl, xh)
                T = min(Fraction(1), max(abs(xl), abs(xh)))
                loc.append(2 * self.k * self.u_near * T + self.k * self.minpos)
                slopes.append((zero, slope))
                out_e.append(slope * e + loc[-1])
            elif op == "sigmoid":
                # sigma(y) = (1 + tanh(y/2)) / 2
                tl, th = tanh_range(lo / 2, hi / 2)
                out_r.append(((1 + tl) / 2, (1 + th) / 2))
                xl, xh = lo - e, hi + e
                # exp(-x) must not overflow: e^t < 2^(3t/2) < max_finite for t = -xl
                require(-xl * 3 / 2 < self.fmt.emax, "sigmoid: exp(-x) may overflow")
                slope = tanh_slope(xl / 2, xh / 2) / 4
                S = (1 + tanh_range(xl / 2, xh / 2)[1]) / 2
                a = 2 * self.k * self.u_near + self.k * self.minpos
                require(a < 1, "sigmoid: kernel error too large")
                rho = (1 + self.u) / ((1 - a) * (1 - self.u)) - 1
                loc.append(rho * S + self.eta)
                slopes.append((zero, slope))
                out_e.append(slope * e + loc[-1])
            else:
                raise ValueError(f"unknown activation {op!r}")
        return out_r, out_e, slopes, loc


def propagate(
    stmt: dict[str, Any], claimed: list[list[Fraction]] | None = None
) -> tuple[list[list[Interval]], list[list[Fraction]]]:
    """Ranges and error bounds per layer. With ``claimed``, each layer starts from the previous
    layer's *claimed* errors (what the checker does); without, from its own results (what the
    generator does)."""
    R = Replay(stmt)
    rng = [(rational(lo), rational(hi)) for lo, hi in stmt["input_box"]]
    require(all(lo <= hi for lo, hi in rng), "empty input box")
    if stmt["input_exact"]:
        err = [Fraction(0)] * len(rng)
    else:  # real inputs rounded to the format first
        err = [R.u * _mag(r) + R.eta for r in rng]
    ranges, errors = [], []
    sym = SymRanges(rng)
    dp = DeepPoly(rng) if stmt.get("ranges") == "backsub" else None
    chain = Chain(err)
    for i, layer in enumerate(stmt["layers"]):
        op = layer["op"]
        if dp is not None:
            dp.cur = rng
        if op == "linear":
            n, m = int(layer["in"]), int(layer["out"])
            W = decode_tensor(layer["weight"])
            b = decode_tensor(layer["bias"]) if layer.get("bias") is not None else None
            out, new, loc = R.linear(W, b, n, m, rng, err)
            if dp is not None:  # back-substituted ranges: often much tighter in deep layers
                out = [(max(a, c), min(b_, d)) for (a, b_), (c, d) in zip(out, dp.linear(W, b, n, m))]
            rng = out
            sym.linear(W, b, n, m)
            chain.push_linear(W, n, m, loc)
        elif op == "add_const":
            c = decode_tensor(layer["c"])
            rng, new, loc = R.add_const(c, rng, err)
            sym.add_const(c)
            if dp is not None:
                dp.add_const(c)
            chain.push_identity(loc)
        elif op in ACTIVATIONS:
            if dp is not None:
                if op == "relu":
                    dp.relu(rng)
            rng, new, slopes, loc = R.activation(op, rng, err)
            if op == "relu":
                sym.relu()
            elif dp is not None:
                dp.restart(rng)
            chain.push_diag(slopes, loc if op != "relu" else None)
        elif op == "max_groups":
            groups = [[int(k) for k in g] for g in layer["groups"]]
            require(all(g and all(0 <= k < len(rng) for k in g) for g in groups), "bad max group")
            new = [max(err[k] for k in g) for g in groups]
            rng = [(max(rng[k][0] for k in g), max(rng[k][1] for k in g)) for g in groups]
            chain.restart(new)
            if dp is not None:
                dp.restart(rng)
        else:
            raise ValueError(f"layer {i}: unknown op {op!r}")
        if op != "max_groups" and op != "relu":  # relu: the plain rule is already exact per neuron
            new = [min(e, chain.bound(k, len(new))) for k, e in enumerate(new)]
        if op in ("linear", "add_const", "relu"):  # both enclosures are sound: intersect them
            rng = [(max(a, c), min(b, d)) for (a, b), (c, d) in zip(rng, sym.concrete())]
        else:
            sym.reset(rng)
        ranges.append(rng)
        errors.append(new)
        if claimed is not None:
            require(i < len(claimed), f"no claimed errors for layer {i}")
            require(
                len(claimed[i]) == len(new),
                f"layer {i}: {len(claimed[i])} claimed terms for {len(new)} neurons",
            )
            for j, (c, r) in enumerate(zip(claimed[i], new)):
                require(
                    c >= r, f"layer {i} neuron {j}: claimed error {float(c):.4g} < replayed {float(r):.4g}"
                )
            err = claimed[i]
        else:
            err = new
    return ranges, errors


def replay_leaf(stmt: dict[str, Any], steps: Any, eps: list[Fraction]) -> int:
    """Replay claimed ``steps`` on ``stmt`` (its layers and input box) and require each
    ``eps[j]`` >= the last claimed step of output j. Returns the number of checked terms."""
    tick()  # (the caller's deadline: one check per leaf)
    claimed = [[rational(x) for x in layer] for layer in steps]
    require(len(claimed) == len(stmt["layers"]), "one step per layer required")
    propagate(stmt, claimed)
    require(len(eps) == len(claimed[-1]), "one epsilon per output required")
    for j, (e, c) in enumerate(zip(eps, claimed[-1])):
        require(e >= c, f"output {j}: epsilon {float(e):.4g} < bound {float(c):.4g}")
    return sum(len(s) for s in claimed) + len(eps)


@checker("errorbound")
def check_errorbound(cert: dict[str, Any]) -> Verdict:
    stmt = cert["statement"]
    require(digest(stmt) == cert["digest"], "statement digest mismatch")
    return Verdict(True, checked=replay_leaf(stmt, cert["steps"], [rational(x) for x in stmt["epsilon"]]))


@checker("errorbound-split")
def check_errorbound_split(cert: dict[str, Any]) -> Verdict:
    """The ``errorbound`` claim of ``statement`` over its whole box, from a split tree whose
    leaves each carry ``errorbound`` steps for their own sub-box (see the module docstring)."""
    stmt = cert["statement"]
    require(digest(stmt) == cert["digest"], "statement digest mismatch")
    eps = [rational(x) for x in stmt["epsilon"]]
    box = [(rational(lo), rational(hi)) for lo, hi in stmt["input_box"]]
    checked = 0
    todo = [(cert["tree"], box)]
    while todo:  # invariant: the boxes in ``todo`` and the replayed leaves cover the whole box
        node, box = todo.pop()
        if "split" in node:
            d, v = node["split"]
            require(type(d) is int and 0 <= d < len(box), f"bad split dimension {d!r}")
            lo, hi, v = box[d][0], box[d][1], rational(v)
            require(lo < v < hi, f"split value {v} outside the open interval ({lo}, {hi})")
            todo.append((node["lo"], box[:d] + [(lo, v)] + box[d + 1 :]))
            todo.append((node["hi"], box[:d] + [(v, hi)] + box[d + 1 :]))
        else:
            require(
                [(rational(a), rational(b)) for a, b in node["box"]] == box,
                "leaf box differs from the box its split path gives",
            )
            leaf = dict(stmt, input_box=[[str(a), str(b)] for a, b in box])
            checked += replay_leaf(leaf, node["steps"], eps)
    return Verdict(True, checked=checked)
