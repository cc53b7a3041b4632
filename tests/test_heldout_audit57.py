"""Audit audit57: every primitive's spec, kernel and VJP against PyTorch's op (float64).

Every gradient claim proves that a primitive's VJP equals the derivative of its spec, and every
bound / ε claim is about the spec's function; users read them as claims about the torch layers
they ported. This file compares, for each primitive in ``spec.PRIMITIVES`` and the attributes the
runtime accepts, at random and adversarial points (kinks, ties, zeros, large magnitudes, -inf in
softmax rows):

(a) the spec's meaning evaluated with mpmath at 60 digits, rounded once to binary64;
(b) the runtime's kernel (``RULES[name].forward``) on numpy float64;
(c) torch's float64 op, forward and ``torch.autograd`` backward against the runtime's VJP.

``CASES`` is keyed by primitive name: a primitive registered without a row here fails
``test_every_primitive_has_a_torch_comparison`` (or must be listed in ``NO_TORCH`` with a reason).
Where torchlean deliberately differs from torch the difference is in ``DEVIATIONS`` and is asserted
as it is (so a change in either direction is noticed), each with the place it is documented.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np
import pytest

import torchlean  # noqa: F401  (registers the rules)
from torchlean.runtime.rules import RULES
from torchlean.spec.primitives import PRIMITIVES

torch = pytest.importorskip("torch")
F = torch.nn.functional

#: primitives with no torch op to compare with, and why (none today)
NO_TORCH: dict[str, str] = {
    # this file's harness holds every value in float64, where a cast is the identity
    "cast": "compared with torch in tests/test_cast.py (values bit for bit in four formats, "
            "first and second-order gradients)",
}


@dataclass
class Case:
    """One comparison: inputs (float64 arrays; integer inputs as int64), attributes, torch's op."""

    name: str
    inputs: list[np.ndarray]
    attrs: dict[str, Any]
    torch_fn: Callable[..., Any]
    label: str = ""
    #: ulps of the largest |term| the spec value may be off torch's (compositions accumulate)
    ulps: float = 8.0
    #: skip the spec-vs-torch value comparison (values outside the spec's stated domain)
    spec: bool = True
    #: a known, documented difference (key into DEVIATIONS) this case exhibits instead of parity
    deviation: str | None = None
    #: the magnitude rounding is relative to where it is not the value's (cancellation: gelu's
    #: 1 + tanh(z) for x < 0 loses bits in torch's and the runtime's same formula alike)
    scale: Callable[..., Any] | None = field(default=None, repr=False)


RNG = np.random.default_rng(57)


def r(*shape: int, lo: float = -3.0, hi: float = 3.0) -> np.ndarray:
    return RNG.uniform(lo, hi, size=shape)


def ints(hi: int, *shape: int) -> np.ndarray:
    return RNG.integers(0, hi, size=shape).astype(np.int64)


ADV = np.array([0.0, -0.0, 1e-300, -1e-300, 1e-8, -1e-8, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 19.5,
                20.0, 20.5, 25.0, 35.0, -20.5, -35.0, 700.0, -700.0])
MILD = np.array([0.0, 1e-8, -1e-8, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 15.0, -15.0])


def _unary(name: str, fn: Callable[..., Any], xs: np.ndarray, **kw: Any) -> list[Case]:
    return [Case(name, [r(3, 4)], {}, fn, "random", **kw),
            Case(name, [xs.copy()], {}, fn, "adversarial", **kw)]


def _batch_norm(eps: float) -> Callable[..., Any]:
    """torch's eval-mode F.batch_norm (its value); torch refuses gradients to the running
    statistics, so the gradient is autograd's of torch's documented formula
    (x - mean) / sqrt(var + eps) * weight + bias, whose value must equal F.batch_norm's."""

    def fn(x, m, v, w, b):
        out = F.batch_norm(x, m.detach(), v.detach(), w.detach(), b.detach(), False, 0.1, eps)
        cs = (1, -1) + (1,) * (x.ndim - 2)
        ref = (x - m.reshape(cs)) / torch.sqrt(v.reshape(cs) + eps) * w.reshape(cs) + b.reshape(cs)
        assert torch.allclose(out, ref, rtol=1e-13, atol=1e-13)
        return ref + (out - ref).detach()

    return fn


def _cases() -> dict[str, list[Case]]:
    c: dict[str, list[Case]] = {}
    for n, fn in (("add", torch.add), ("sub", torch.sub), ("mul", torch.mul)):
        c[n] = [Case(n, [r(2, 3, 4), r(3, 1)], {}, fn, "broadcast"),
                Case(n, [ADV.copy(), ADV[::-1].copy()], {}, fn, "adversarial")]
    c["div"] = [Case("div", [r(2, 3, 4), r(3, 1, lo=0.5, hi=3)], {}, torch.div, "broadcast"),
                Case("div", [ADV.copy(), ADV[::-1] + 0.25], {}, torch.div, "adversarial")]
    c["neg"] = _unary("neg", torch.neg, ADV)
    c["pow"] = []
    for e in (2, 3, 0, 1, -1, -2, 0.5, -0.5, 1.5, 2.5, 1 / 3):
        fn = (lambda e: lambda x: torch.pow(x, e))(e)
        pos = np.array([1e-8, 0.25, 0.5, 1.0, 2.0, 3.0, 7.5, 1e3])
        c["pow"].append(Case("pow", [pos], {"exponent": e}, fn, f"x>0 e={e}"))
        if float(e).is_integer():
            c["pow"].append(Case("pow", [np.array([-3.0, -1.5, -1.0, -0.25, 0.25, 2.0])],
                                 {"exponent": e}, fn, f"x<0 e={e}"))
        # x = 0 and negative x for every exponent: the runtime against torch only (the spec's
        # domain excludes them), inf/nan patterns included
        c["pow"].append(Case("pow", [np.array([0.0, -0.0, -2.0, -0.5])], {"exponent": e}, fn,
                             f"x<=0 e={e}", spec=False))
    c["maximum"] = [Case("maximum", [r(3, 4), r(4)], {}, torch.maximum, "broadcast"),
                    Case("maximum", [np.array([1.0, 0.0, -2.0, 5.0]), np.array([1.0, 0.0, 3.0, -5.0])],
                         {}, torch.maximum, "ties", deviation="maximum-ties")]
    c["minimum"] = [Case("minimum", [r(3, 4), r(4)], {}, torch.minimum, "broadcast"),
                    Case("minimum", [np.array([1.0, 0.0, -2.0, 5.0]), np.array([1.0, 0.0, 3.0, -5.0])],
                         {}, torch.minimum, "ties", deviation="maximum-ties")]
    c["relu"] = _unary("relu", torch.relu, ADV)
    c["leaky_relu"] = [Case("leaky_relu", [x], {"slope": s}, (lambda s: lambda t: F.leaky_relu(t, s))(s),
                            f"slope={s}")
                       for s in (0.01, 0.2, 0.0, -0.5, 1.5) for x in (r(3, 4), ADV.copy())]
    c["abs"] = _unary("abs", torch.abs, ADV)
    c["exp"] = _unary("exp", torch.exp, ADV)
    c["log"] = [Case("log", [r(3, 4, lo=1e-6, hi=5)], {}, torch.log, "random"),
                Case("log", [np.array([1e-300, 1e-8, 0.5, 1.0, 2.0, 1e300])], {}, torch.log, "adversarial"),
                Case("log", [np.array([0.0, -1.0])], {}, torch.log, "x<=0", spec=False)]
    c["sqrt"] = [Case("sqrt", [r(3, 4, lo=0, hi=5)], {}, torch.sqrt, "random"),
                 Case("sqrt", [np.array([0.0, 1e-300, 1e-8, 0.25, 2.0, 1e300])], {}, torch.sqrt,
                      "adversarial"),
                 Case("sqrt", [np.array([-1.0])], {}, torch.sqrt, "x<0", spec=False)]
    c["tanh"] = _unary("tanh", torch.tanh, ADV)
    c["erf"] = _unary("erf", torch.erf, ADV)
    c["sigmoid"] = _unary("sigmoid", torch.sigmoid, ADV)
    c["softplus"] = [Case("softplus", [r(3, 4)], {}, F.softplus, "random"),
                     Case("softplus", [MILD.copy()], {}, F.softplus, "|x|<=20"),
                     Case("softplus", [np.array([20.5, 25.0, 35.0])], {}, F.softplus, "x>20",
                          deviation="softplus-threshold")]
    # 1 + tanh(z) cancels for x < 0: torch's kernel and the runtime's (the same formula) are off
    # the real value by up to ~|x|·e^(2z)/ulp(value) ulps there; the value is still the spec's
    c["gelu"] = _unary("gelu", lambda t: F.gelu(t, approximate="tanh"), ADV,
                       scale=lambda x, grad: (x * x if grad else np.abs(x)) * (x < 0))
    c["silu"] = _unary("silu", F.silu, ADV)
    mask = np.array([[1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 1, 0]], dtype=np.int64)
    c["where"] = [Case("where", [mask, r(3, 4), r(4)], {},
                       lambda m, a, b: torch.where(m.bool(), a, b), "broadcast")]
    c["matmul"] = [Case("matmul", [r(2, 3, 4), r(4, 5)], {}, torch.matmul, "batched", ulps=32),
                   Case("matmul", [r(2, 1, 3, 4), r(3, 4, 2)], {}, torch.matmul, "broadcast batch", ulps=32)]
    ties = np.array([[1.0, 3.0, 3.0, -1.0], [2.0, 2.0, 2.0, 2.0], [0.0, -0.0, -5.0, -5.0]])
    for n, fn in (("sum", torch.sum), ("mean", torch.mean), ("max", torch.amax)):
        c[n] = []
        for axes, keep in ((None, False), ((1,), False), ((0, 2), True), ((-1,), True), ((0, 1, 2), False)):
            dim = tuple(range(3)) if axes is None else axes
            c[n].append(Case(n, [r(2, 3, 4)], {"axes": axes, "keepdims": keep},
                             (lambda fn, d, k: lambda t: fn(t, dim=d, keepdim=k))(fn, dim, keep),
                             f"axes={axes} keepdims={keep}", ulps=32))
        c[n].append(Case(n, [ties.copy()], {"axes": (1,), "keepdims": False},
                         (lambda fn: lambda t: fn(t, dim=1))(fn), "ties", ulps=32))
    c["reshape"] = [Case("reshape", [r(2, 3, 4)], {"shape": (4, -1)}, lambda t: t.reshape(4, -1))]
    c["flatten"] = [Case("flatten", [r(2, 3, 4)], {"start_dim": s},
                         (lambda s: lambda t: torch.flatten(t, s))(s), f"start_dim={s}")
                    for s in (0, 1, 2, -1)]
    c["transpose"] = [Case("transpose", [r(2, 3, 4)], {"axes": a},
                           (lambda a: lambda t: t.permute(*(a or (2, 1, 0))))(a), f"axes={a}")
                      for a in (None, (1, 0, 2), (2, 0, 1))]
    c["broadcast_to"] = [Case("broadcast_to", [r(3, 1)], {"shape": (2, 3, 4)},
                              lambda t: t.expand(2, 3, 4))]
    c["concat"] = [Case("concat", [r(2, 3), r(2, 1), r(2, 4)], {"axis": -1},
                        lambda *ts: torch.cat(ts, dim=-1)),
                   Case("concat", [r(1, 3), r(2, 3)], {"axis": 0}, lambda *ts: torch.cat(ts, dim=0))]
    c["slice"] = [Case("slice", [r(5, 6)], {"index": ((1, None, 2), (None, -1, 3))},
                       lambda t: t[1::2, :-1:3]),
                  Case("slice", [r(5, 6)], {"index": ((-3, 4, None),)}, lambda t: t[-3:4])]
    gidx = np.array([[0, 2, 2], [1, 1, 0]], dtype=np.int64)
    c["gather"] = [Case("gather", [r(2, 3), gidx], {"axis": 1}, lambda t, i: torch.gather(t, 1, i)),
                   Case("gather", [r(3, 4), np.array([[2, 0, 1]], dtype=np.int64)], {"axis": 0},
                        lambda t, i: torch.gather(t, 0, i), "smaller index"),
                   Case("gather", [r(2, 3), gidx[:, :2]], {"axis": -1}, lambda t, i: torch.gather(t, -1, i))]
    sm_adv = np.array([[0.0, -np.inf, 1.0, 2.0], [700.0, 700.0, -700.0, 0.0], [1e-300, 0.0, -0.0, 5.0]])
    for n, fn in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
        c[n] = [Case(n, [r(2, 3, 4)], {"axis": a}, (lambda fn, a: lambda t: fn(t, dim=a))(fn, a),
                     f"axis={a}", ulps=32) for a in (-1, 0, 1)]
        c[n].append(Case(n, [sm_adv.copy()], {"axis": -1}, (lambda fn: lambda t: fn(t, dim=-1))(fn),
                         "-inf and large", ulps=32))
    conv = []
    for stride, pad, dil, groups in (((1, 1), (0, 0), (1, 1), 1), ((2, 1), (1, 2), (1, 1), 1),
                                     ((1, 2), (2, 1), (2, 1), 2), ((3, 3), (1, 1), (2, 2), 4)):
        cin, cout = 4, 4 if groups == 4 else 6
        conv.append(Case("conv2d", [r(2, cin, 7, 8), r(cout, cin // groups, 3, 2)],
                         {"stride": stride, "padding": pad, "dilation": dil, "groups": groups},
                         (lambda s, p, d, g: lambda x, w: F.conv2d(x, w, None, s, p, d, g))(
                             stride, pad, dil, groups),
                         f"s={stride} p={pad} d={dil} g={groups}", ulps=64))
    c["conv2d"] = conv
    pools = (((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 2), (1, 2), (1, 0)),
             ((2, 3), (3, 1), (1, 1)))
    plain = np.array([[[[1.0, 1.0, 0.0, 2.0, 2.0], [1.0, 0.0, 2.0, 2.0, -1.0], [3.0, 3.0, 3.0, 3.0, 3.0],
                        [-1.0, -1.0, -2.0, -1.0, -1.0]]]])
    c["max_pool2d"] = []
    c["avg_pool2d"] = []
    for k, s, p in pools:
        for x, lab in ((r(2, 3, 7, 6), "random"), (plain.copy(), "ties, negative rows at the padding")):
            at = {"kernel_size": k, "stride": s, "padding": p}
            c["max_pool2d"].append(Case("max_pool2d", [x], at,
                                        (lambda k, s, p: lambda t: F.max_pool2d(t, k, s, p))(k, s, p),
                                        f"{lab} k={k} s={s} p={p}"))
            for cip in (True, False):
                c["avg_pool2d"].append(Case(
                    "avg_pool2d", [x], {**at, "count_include_pad": cip},
                    (lambda k, s, p, cip: lambda t: F.avg_pool2d(t, k, s, p, count_include_pad=cip))(
                        k, s, p, cip),
                    f"{lab} k={k} s={s} p={p} cip={cip}", ulps=32))
    c["layer_norm"] = []
    for nd, eps in ((1, 1e-5), (2, 1e-5), (3, 0.1), (1, 0.0)):
        x = r(2, 3, 4) * 100 + 7
        shape = x.shape[3 - nd:]
        c["layer_norm"].append(Case(
            "layer_norm", [x, r(*shape), r(*shape)], {"normalized_ndim": nd, "eps": eps},
            (lambda shape, eps: lambda x, w, b: F.layer_norm(x, shape, w, b, eps))(shape, eps),
            f"ndim={nd} eps={eps}", ulps=256))
    c["layer_norm"].append(Case(
        "layer_norm", [np.array([[1.0, 1.0, 1.0], [1e8, 1e8 + 1, 1e8 - 1]]), np.ones(3), np.zeros(3)],
        {"normalized_ndim": 1, "eps": 1e-5}, lambda x, w, b: F.layer_norm(x, (3,), w, b, 1e-5),
        "constant row, large offset", ulps=8,
        scale=lambda x, w, b, grad: 1e8 / 0.8 * np.ones_like(x)))
    c["batch_norm"] = [Case("batch_norm", [r(2, 3, 4, 5), r(3), r(3, lo=0, hi=2), r(3), r(3)], {"eps": eps},
                            _batch_norm(eps), f"eps={eps}", ulps=32) for eps in (1e-5, 1e-3)]
    c["batch_norm"].append(Case("batch_norm", [r(4, 3), r(3), np.array([0.0, 1.0, 4.0]), r(3), r(3)],
                                {"eps": 1e-5}, _batch_norm(1e-5), "2-D, zero var", ulps=32))
    c["embedding"] = [Case("embedding", [r(5, 3), np.array([[0, 4, 4], [2, 0, 1]], dtype=np.int64)], {},
                           lambda w, i: F.embedding(i, w), "repeated indices")]
    # every attribute left out: the spec's and the kernel's defaults against torch's (a changed
    # default in either is caught here even when every explicit case still agrees)
    x4 = r(2, 3, 6, 5)
    c["leaky_relu"].append(Case("leaky_relu", [ADV.copy()], {}, F.leaky_relu, "defaults"))
    c["layer_norm"].append(Case("layer_norm", [r(2, 4) * 1e-3, r(4), r(4)], {},
                                lambda x, w, b: F.layer_norm(x, (4,), w, b), "defaults", ulps=256))
    c["batch_norm"].append(Case("batch_norm", [r(2, 3), r(3), r(3, lo=0, hi=1e-4), r(3), r(3)], {},
                                _batch_norm(1e-5), "defaults", ulps=256))
    c["max_pool2d"].append(Case("max_pool2d", [x4], {}, lambda t: F.max_pool2d(t, 2), "defaults"))
    c["avg_pool2d"].append(Case("avg_pool2d", [x4], {}, lambda t: F.avg_pool2d(t, 2), "defaults", ulps=32))
    pad1 = {"kernel_size": (3, 3), "stride": (1, 1), "padding": (1, 1)}
    c["avg_pool2d"].append(Case("avg_pool2d", [x4], pad1,
                                lambda t: F.avg_pool2d(t, 3, 1, 1), "count_include_pad left out", ulps=32))
    c["conv2d"].append(Case("conv2d", [x4, r(2, 3, 2, 2)], {}, F.conv2d, "defaults", ulps=64))
    c["gather"].append(Case("gather", [r(2, 3), gidx], {}, lambda t, i: torch.gather(t, -1, i), "defaults"))
    c["softmax"].append(Case("softmax", [r(2, 3)], {}, lambda t: F.softmax(t, -1), "defaults", ulps=32))
    c["log_softmax"].append(Case("log_softmax", [r(2, 3)], {}, lambda t: F.log_softmax(t, -1), "defaults",
                                 ulps=32))
    c["flatten"].append(Case("flatten", [r(2, 3, 4)], {}, torch.nn.Flatten(), "defaults (nn.Flatten's)"))
    c["concat"].append(Case("concat", [r(1, 3), r(2, 3)], {}, lambda *ts: torch.cat(ts), "defaults"))
    c["sum"].append(Case("sum", [r(2, 3)], {}, torch.sum, "defaults", ulps=32))
    c["mean"].append(Case("mean", [r(2, 3)], {}, torch.mean, "defaults", ulps=32))
    c["max"].append(Case("max", [r(2, 3)], {}, torch.amax, "defaults"))
    c["transpose"].append(Case("transpose", [r(2, 3, 4)], {}, lambda t: t.permute(2, 1, 0), "defaults"))
    c["pow"].append(Case("pow", [ADV.copy()], {}, torch.square, "defaults"))
    return c


CASES = _cases()
#: documented differences from torch: key -> (what, where it is documented)
DEVIATIONS = {
    "maximum-ties": "at a tie the runtime's VJP sends the whole cotangent to the first argument, "
                    "torch.maximum/minimum split it in halves (TRUST_BOUNDARIES audit44; outside every "
                    "claim: the autograd claims assume a != b)",
    "softplus-threshold": "torch returns x itself above threshold 20 (gradient exactly 1); the spec "
                          "is log(1 + e^x) (TRUST_BOUNDARIES, PyTorch modules; audit57)",
}
ALL = [(c, i) for name in sorted(CASES) for i, c in enumerate(CASES[name])]


def _ids(item: tuple[Case, int]) -> str:
    c, i = item
    return f"{c.name}-{i}-{c.label}".replace(" ", "_")


def test_every_primitive_has_a_torch_comparison() -> None:
    missing = sorted(set(PRIMITIVES) - set(CASES) - set(NO_TORCH))
    assert not missing, f"primitives without a torch comparison (add a Case or a NO_TORCH reason): {missing}"
    assert not set(CASES) - set(PRIMITIVES), "a Case names no registered primitive"
    assert all(CASES[n] for n in CASES)


def test_every_attribute_is_exercised() -> None:
    """Each attribute a primitive accepts is given a non-default value by some case."""
    for name, p in PRIMITIVES.items():
        if name in NO_TORCH:
            continue  # compared elsewhere, with its attributes (the reason says where)
        for a, default in p.attrs.items():
            vals = [c.attrs.get(a, default) for c in CASES.get(name, [])]
            assert any(v != default for v in vals) or a in ("shape", "index"), (name, a)


def _torch_run(c: Case, g: np.ndarray | None = None):
    ts = [torch.from_numpy(x.copy()) if x.dtype.kind in "iu" else torch.tensor(x, requires_grad=True)
          for x in c.inputs]
    out = c.torch_fn(*ts)
    grads = None
    if g is not None:
        diff = [t for t in ts if t.requires_grad]
        grads = torch.autograd.grad(out, diff, torch.from_numpy(g), allow_unused=True)
        grads = [None if q is None else q.numpy() for q in grads]
    return out.detach().numpy(), grads


def _tol(c: Case, ref: np.ndarray, factor: float = 1.0, grad: bool = False) -> np.ndarray:
    """``c.ulps`` ulps of each reference value; for compositions (sums of terms: ulps > 8) of the
    array's largest finite magnitude too, since a sum's rounding is relative to its terms."""
    mag = np.abs(np.asarray(ref, np.float64))
    scale = np.maximum(mag, 1e-300)
    if c.ulps > 8:
        fin = mag[np.isfinite(mag)]
        scale = scale + (fin.max() if fin.size else 0.0)
    if c.scale is not None:
        scale = scale + np.abs(c.scale(*c.inputs, grad=grad))
    return factor * c.ulps * np.finfo(float).eps * scale


def _close(a: np.ndarray, b: np.ndarray, tol: np.ndarray | float) -> np.ndarray:
    """Elementwise: equal (inf/nan patterns included) or within ``tol``."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):
        return same | (np.abs(a - b) <= tol)


@pytest.mark.parametrize("item", ALL, ids=_ids)
def test_runtime_forward_matches_torch(item: tuple[Case, int]) -> None:
    c, _ = item
    with np.errstate(all="ignore"):
        got = np.asarray(RULES[c.name].forward(np, *c.inputs, **c.attrs), np.float64)
    want, _ = _torch_run(c)
    assert got.shape == want.shape
    ok = _close(got, want, _tol(c, want))
    if c.deviation == "softplus-threshold":
        assert not ok.all(), "softplus above 20 now equals torch's: update DEVIATIONS and the docs"
        return
    assert ok.all(), (c.label, got[~ok], want[~ok])


def _spec(c: Case) -> np.ndarray:
    with mpmath.workdps(60):
        out = PRIMITIVES[c.name].mpmath(*c.inputs, **c.attrs)
        return np.vectorize(lambda v: float(v) if not isinstance(v, mpmath.mpc) else math.nan,
                            otypes=[np.float64])(np.asarray(out, dtype=object))


@pytest.mark.parametrize("item", [it for it in ALL if it[0].spec], ids=_ids)
def test_spec_matches_torch(item: tuple[Case, int]) -> None:
    """The spec's real function, rounded once, against torch's float64 result: a bound or ε claim
    about the spec is a claim about torch's op only if these agree to torch's own rounding."""
    c, _ = item
    spec = _spec(c)
    want, _ = _torch_run(c)
    assert spec.shape == want.shape
    ok = _close(spec, want, _tol(c, spec))
    if c.deviation == "softplus-threshold":
        assert not ok.all()
        return
    assert ok.all(), (c.label, spec[~ok], want[~ok])


@pytest.mark.parametrize("item", ALL, ids=_ids)
def test_runtime_vjp_matches_torch_autograd(item: tuple[Case, int]) -> None:
    c, _ = item
    rule = RULES[c.name]
    with np.errstate(all="ignore"):
        out = rule.forward(np, *c.inputs, **c.attrs)
        g = np.random.default_rng(5).uniform(0.5, 2.0, size=np.shape(out))
        got = rule.vjp(np, g, out, *c.inputs, **c.attrs)
    _, want = _torch_run(c, g)
    integer = PRIMITIVES[c.name].integer_inputs
    got = [q for i, q in enumerate(got) if i not in integer]
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        b = np.zeros_like(c.inputs[k]) if b is None else b
        ok = _close(np.asarray(a, np.float64), b, _tol(c, b, 4.0, grad=True))
        if c.deviation is not None:
            assert not ok.all(), f"{c.deviation} no longer differs from torch: update DEVIATIONS"
            ok = _close(np.asarray(a, np.float64), _documented(c, k, b, g), _tol(c, b, 4.0, grad=True))
        assert ok.all(), (c.label, k, np.asarray(a)[~ok], b[~ok])


def _documented(c: Case, k: int, torch_grad: np.ndarray, g: np.ndarray) -> np.ndarray:
    """torch's gradient with the documented deviation applied (DEVIATIONS): at a tie of
    maximum/minimum the whole cotangent to the first argument; softplus above 20: sigmoid(x)."""
    if c.deviation == "maximum-ties":
        a, b = np.broadcast_arrays(*c.inputs)
        tie = a == b
        return np.where(tie, g if k == 0 else 0.0, torch_grad)
    x = c.inputs[0]
    return g / (1 + np.exp(-x))


# -- torch layers that import or compose into these primitives -------------------------------------


def _tl_grad(fn: Callable[[Any], Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torchlean as tl

    t = tl.tensor(x, dtype="float64", requires_grad=True)
    y = fn(t)
    y.sum().backward()
    return np.asarray(y.data), np.asarray(t.grad.data)


def _torch_grad(fn: Callable[[Any], Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.tensor(x, requires_grad=True)
    y = fn(t)
    y.sum().backward()
    return y.detach().numpy(), t.grad.numpy()


KINKS = np.array([[-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 6.0, 7.0]])


@pytest.mark.parametrize("layer", [lambda: torch.nn.Hardtanh(), lambda: torch.nn.Hardtanh(-2.0, 3.0),
                                   lambda: torch.nn.ReLU6()], ids=["hardtanh", "hardtanh(-2,3)", "relu6"])
def test_hardtanh_gradient_at_the_bounds_is_torchs(layer: Callable[[], Any]) -> None:
    """torch's hardtanh_backward passes no gradient at x = min_val or max_val (ReLU6 is hardtanh(0,
    6)); the importer built it as clamp's maximum(x, lo) / minimum(x, hi), whose VJP sends a tie to
    x: gradient 1 there (old code). Imported with the bound first it is 0, as torch."""
    from torchlean.bridge import from_torch

    tm = torch.nn.Sequential(layer()).double()
    model = from_torch(tm, example=torch.from_numpy(KINKS))  # (the table path refuses Hardtanh)
    y, g = _tl_grad(model, KINKS)
    ty, tg = _torch_grad(tm, KINKS)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(g, tg)


@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (0.0, None), (None, 3.0), (-2.0, 6.0)])
def test_clamp_gradient_at_the_bounds_is_torchs(lo: float | None, hi: float | None) -> None:
    """torch.clamp passes the gradient at a bound (its mask is min <= x <= max): tl.clamp and the
    imported aten.clamp keep x as maximum's/minimum's first operand, so a tie goes to x."""
    import torchlean.runtime.functional as TF
    from torchlean.bridge import from_torch

    class Clamp(torch.nn.Module):
        def forward(self, x):
            return torch.clamp(x, lo, hi)

    ty, tg = _torch_grad(lambda t: torch.clamp(t, lo, hi), KINKS)
    y, g = _tl_grad(lambda t: TF.clamp(t, lo, hi), KINKS)
    np.testing.assert_array_equal((y, g), (ty, tg))
    model = from_torch(Clamp().double(), example=torch.from_numpy(KINKS))
    y, g = _tl_grad(model, KINKS)
    np.testing.assert_array_equal((y, g), (ty, tg))


@pytest.mark.parametrize("layer", [torch.nn.Hardswish, torch.nn.Hardsigmoid])
def test_decomposed_hard_activations_follow_the_exported_program(layer: type) -> None:
    """torch.export decomposes Hardswish/Hardsigmoid into clamps, whose gradient at x = +-3 is not
    eager torch's (hardsigmoid_backward gives 0 there, the clamps 1/6): the imported model follows
    the exported program that from_torch documents it trusts (checked against that program's own
    torch autograd), and differs from eager only at those two kinks (a documented deviation)."""
    from torchlean.bridge import from_torch

    tm = torch.nn.Sequential(layer()).double()
    _, eg = _torch_grad(tm, KINKS)  # (eager first: after export the module's own call differs)
    ex = torch.from_numpy(KINKS)
    program = torch.export.export(tm, (ex,)).run_decompositions().module()
    model = from_torch(tm, example=ex)
    y, g = _tl_grad(model, KINKS)
    py, pg = _torch_grad(program, KINKS)
    np.testing.assert_allclose(y, py, rtol=1e-15, atol=0)
    np.testing.assert_allclose(g, pg, rtol=1e-15, atol=0)
    # (eager hardsigmoid_backward multiplies by a float32 1/6: 3e-8 off in the middle, not a kink)
    off = ~np.isclose(g, eg, rtol=1e-6, atol=0)
    assert set(KINKS[off].tolist()) == {-3.0, 3.0}


def test_composites_are_torchs() -> None:
    """gelu(approximate='none'), var/std with unbiased/correction, amin: values and gradients of
    torchlean's compositions against torch's ops in float64 (random and tie points)."""
    import torchlean.runtime.functional as TF

    x = np.concatenate([r(1, 9), [[2.0, 2.0, -1.0, 0.0, 0.0, -3.0, 1e-8, 5.0, 5.0]]])
    pairs = [
        (lambda t: TF.gelu(t, "none"), lambda t: F.gelu(t)),
        (lambda t: TF.var(t, 1), lambda t: torch.var(t, 1)),
        (lambda t: TF.var(t, 1, unbiased=False), lambda t: torch.var(t, 1, unbiased=False)),
        (lambda t: TF.var(t, None, correction=2), lambda t: torch.var(t, None, correction=2)),
        (lambda t: TF.std(t, 1, keepdim=True), lambda t: torch.std(t, 1, keepdim=True)),
        (lambda t: TF.amin(t, 1), lambda t: torch.amin(t, 1)),
        (lambda t: TF.amax(t), lambda t: torch.amax(t)),
    ]
    for ours, theirs in pairs:
        y, g = _tl_grad(ours, x)
        ty, tg = _torch_grad(theirs, x)
        np.testing.assert_allclose(y, ty, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(g, tg, rtol=1e-12, atol=1e-15)


def test_softplus_above_threshold_is_the_documented_deviation() -> None:
    """torch's Softplus returns x itself where x > 20; the spec (and every claim) is log(1 + e^x).
    End to end: ``tl.verify.bounds`` of ``from_torch(Sequential(Softplus()))`` on x in [21, 22]
    (checked by the bound table) has a lower bound above torch's own output at x = 21, by less than
    e^-20, the documented size of the difference (TRUST_BOUNDARIES, audit57)."""
    import torchlean as tl
    from torchlean.bridge import from_torch

    tm = torch.nn.Sequential(torch.nn.Softplus()).double()
    b = tl.verify.bounds(from_torch(tm).eval(), np.array([[21.5]]), 0.5)
    with torch.no_grad():
        at21 = tm(torch.tensor([[21.0]], dtype=torch.float64)).item()
    assert at21 == 21.0
    gap = float(b.lower.min()) - at21
    assert 0 < gap < math.exp(-20)
    assert "x > 20" in PRIMITIVES["softplus"].doc


@pytest.mark.parametrize("name,args,x", [
    ("LeakyReLU", (), ADV[None].copy()),
    ("LayerNorm", (4,), r(3, 4) * 1e-3),
    ("BatchNorm1d", (4,), r(3, 4) * 1e-3),
    ("MaxPool2d", (3,), r(1, 2, 7, 7)),
    ("AvgPool2d", (3, None, 1), r(1, 2, 7, 7)),
    ("Softmax", (1,), r(2, 5)),
    ("LogSoftmax", (1,), r(2, 5)),
    ("Flatten", (), r(2, 3, 4)),
    ("Softplus", (), r(2, 5)),
    ("GELU", ("none",), ADV[None].copy()),
])
def test_tl_nn_defaults_are_torchs(name: str, args: tuple, x: np.ndarray) -> None:
    """A layer written with ``tl.nn`` names and torch's positional arguments (every default left out)
    computes torch's layer: slopes, eps, pooling stride and count_include_pad, flatten's start."""
    import torchlean as tl

    cls = getattr(tl.nn, name)
    # (parameters and buffers in float64, as torch's .double(): a float32 running_var rounds eps)
    ours = cls(*args, dtype="float64") if name in ("LayerNorm", "BatchNorm1d") else cls(*args)
    theirs = getattr(torch.nn, name)(*args).double()
    if hasattr(ours, "eval"):
        ours.eval()
    theirs.eval()
    y = np.asarray(ours(tl.tensor(x, dtype="float64")).data)
    with torch.no_grad():
        ty = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, ty, rtol=1e-13, atol=1e-300)


def test_tl_nn_gelu_default_is_the_documented_deviation() -> None:
    """tl.nn.GELU() is the tanh form (one primitive), torch.nn.GELU() the exact erf form: a
    deliberate default, documented in the class and TRUST_BOUNDARIES; they differ by up to ~5e-4."""
    import torchlean as tl

    x = np.linspace(-6, 6, 241)[None]
    y = np.asarray(tl.nn.GELU()(tl.tensor(x, dtype="float64")).data)
    with torch.no_grad():
        exact = torch.nn.GELU()(torch.from_numpy(x)).numpy()
        tanh = torch.nn.GELU("tanh")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, tanh, rtol=1e-14, atol=1e-14)  # (1 + tanh cancels for x < 0)
    assert 1e-4 < np.abs(y - exact).max() < 1e-3
    assert "tanh" in (tl.nn.GELU.__doc__ or "")


def test_negative_indices_embedding_refused_gather_wraps() -> None:
    """torch's F.embedding raises on an index outside [0, n); the primitive wraps -1 round (numpy's
    take), and ``F.embedding`` passed it on (old code: the last row), while ``nn.Embedding`` and
    cross_entropy already refused. Now F.embedding refuses too. ``tl.gather`` keeps audit33's
    reading of a negative index, from the end (ONNX GatherElements', numpy's), where torch.gather
    raises: a documented difference (TRUST_BOUNDARIES audit57), asserted as it is."""
    import torchlean as tl
    import torchlean.runtime.functional as TF

    w = tl.tensor(np.arange(6.0).reshape(3, 2), dtype="float64")
    tw = torch.arange(6.0, dtype=torch.float64).reshape(3, 2)
    for i in ([-1, 0], [3]):
        with pytest.raises(IndexError):
            F.embedding(torch.tensor(i), tw)
        with pytest.raises(IndexError):
            TF.embedding(tl.tensor(np.array(i)), w)
    with pytest.raises(RuntimeError):
        torch.gather(tw, 1, torch.tensor([[-1, 0]]))
    got = np.asarray(TF.gather(w, 1, tl.tensor(np.array([[-1, 0]]))).data)
    np.testing.assert_array_equal(got, torch.gather(tw[:1], 1, torch.tensor([[1, 0]])).numpy())


@pytest.mark.parametrize("kw", [{"padding_idx": 0}, {"padding_idx": 4}, {"scale_grad_by_freq": True}])
def test_embedding_whose_torch_gradient_is_no_derivative_is_refused(kw: dict[str, Any]) -> None:
    """torch's Embedding(padding_idx=p) sends no gradient to row p and scale_grad_by_freq divides
    by index counts: not the derivative of the forward, which the primitive's VJP (and every
    gradient claim) is. Old code imported both silently: the weight gradient of the imported model
    differed from torch's on those rows. Now refused; a plain Embedding's gradient is torch's."""
    import torchlean as tl
    from torchlean.bridge import from_torch
    from torchlean.bridge.torch_io import TorchInteropError

    idx = torch.tensor([[0, 1, 1, 4]])
    with pytest.raises(TorchInteropError, match="padding_idx|scale_grad_by_freq"):
        from_torch(torch.nn.Sequential(torch.nn.Embedding(5, 3, **kw)).double(), example=idx)
    tm = torch.nn.Sequential(torch.nn.Embedding(5, 3)).double()
    model = from_torch(tm, example=idx)
    model(tl.tensor(idx.numpy())).sum().backward()
    tm(idx).sum().backward()
    (w,) = list(model.parameters())
    np.testing.assert_allclose(np.asarray(w.grad.data), tm[0].weight.grad.numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("op", ["sum", "mean", "amax", "amin", "var", "std"])
@pytest.mark.parametrize("dim", [(), []])
@pytest.mark.parametrize("keepdim", [False, True])
def test_an_empty_dim_reduces_every_axis_as_torch(op: str, dim: Any, keepdim: bool) -> None:
    """torch reads ``dim=()`` / ``dim=[]`` as every axis; torchlean passed it to the primitives as
    ``axes=()`` (no axis): sum/mean/amax returned x itself and var/std zeros (old code)."""
    import torchlean as tl
    import torchlean.runtime.functional as TF

    x = r(2, 3)
    ours = getattr(TF, op)(tl.tensor(x, dtype="float64", requires_grad=True), dim, keepdim=keepdim)
    theirs = getattr(torch, op)(torch.from_numpy(x), dim, keepdim=keepdim)
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(np.asarray(ours.data), theirs.numpy(), rtol=1e-13, atol=0)
