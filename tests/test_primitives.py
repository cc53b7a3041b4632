"""The primitive test matrix: every primitive's kernel and VJP against PyTorch (float64), its
kernel against the mpmath spec, float32 against float64, and every rule on the symbolic backend.

Each case names a primitive, draws its inputs (away from kinks and ties, so the derivative is
unique and torch's tie-breaking never matters), gives the primitive's attributes and the PyTorch
expression computing the same function. ``test_every_primitive_has_a_rule_and_a_case`` fails on a
gap in the matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np
import pytest
import sympy

import torchlean as tl
from torchlean.runtime.rules import RULES
from torchlean.runtime.symbolic import SYMBOLIC, symbols
from torchlean.runtime.tensor import apply
from torchlean.spec import PRIMITIVES

F64_RTOL, F64_ATOL = 1e-12, 1e-12  # runtime float64 vs torch float64, and vs the mpmath spec
F32_RTOL, F32_ATOL = 2e-5, 2e-5  # runtime float32 vs runtime float64 (a few float32 ulps per op)


@dataclass
class Case:
    name: str
    make: Callable[[np.random.Generator], list[np.ndarray]]
    torch_fn: Callable[..., Any]  # (torch, *torch tensors) -> torch tensor
    attrs: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}-{self.label}" if self.label else self.name


def normal(*shape):
    return lambda rng: [rng.standard_normal(shape)]


def away_from_zero(rng, shape, lo=0.1, hi=2.0):
    """Random values with |v| in [lo, hi]: no kink of relu/abs/... is hit."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(lo, hi, size=shape)


def positive(rng, shape, lo=0.2, hi=3.0):
    return rng.uniform(lo, hi, size=shape)


def apart(rng, shape):
    """a and b with |a - b| >= 0.1, so maximum/minimum have no ties."""
    a = rng.standard_normal(shape)
    return [a, a + away_from_zero(rng, shape)]


def ints(rng, high, shape):
    return rng.integers(0, high, size=shape)


def _F(torch):
    return torch.nn.functional


CASES: list[Case] = [
    # -- elementwise arithmetic (with broadcasting) ---------------------------------------------
    Case("add", lambda r: [r.standard_normal((3, 1, 4)), r.standard_normal((2, 4))],
         lambda t, a, b: a + b, label="broadcast"),
    Case("add", lambda r: [r.standard_normal((2, 3)), r.standard_normal(())],
         lambda t, a, b: a + b, label="scalar"),
    Case("sub", lambda r: [r.standard_normal((4, 1)), r.standard_normal((1, 5))],
         lambda t, a, b: a - b, label="broadcast"),
    Case("mul", lambda r: [r.standard_normal((2, 3, 4)), r.standard_normal((3, 1))],
         lambda t, a, b: a * b, label="broadcast"),
    Case("div", lambda r: [r.standard_normal((3, 4)), away_from_zero(r, (4,), 0.5)],
         lambda t, a, b: a / b, label="broadcast"),
    Case("neg", normal(3, 4), lambda t, x: -x),
    Case("pow", lambda r: [r.standard_normal((3, 4))], lambda t, x: x**2, {"exponent": 2}, "square"),
    Case("pow", lambda r: [r.standard_normal((3, 4))], lambda t, x: x**3, {"exponent": 3}, "cube"),
    Case("pow", lambda r: [positive(r, (3, 4))], lambda t, x: x**0.5, {"exponent": 0.5}, "half"),
    Case("pow", lambda r: [positive(r, (5,))], lambda t, x: x**-1.5, {"exponent": -1.5}, "neg"),
    Case("maximum", lambda r: apart(r, (3, 4)), lambda t, a, b: t.maximum(a, b)),
    Case("maximum", lambda r: [r.standard_normal((3, 4)), np.array([0.05, -0.07, 3.1, -3.2])],
         lambda t, a, b: t.maximum(a, b), label="broadcast"),
    Case("minimum", lambda r: apart(r, (2, 5)), lambda t, a, b: t.minimum(a, b)),
    # -- activations ------------------------------------------------------------------------
    Case("relu", lambda r: [away_from_zero(r, (4, 5))], lambda t, x: t.relu(x)),
    Case("leaky_relu", lambda r: [away_from_zero(r, (4, 5))],
         lambda t, x: _F(t).leaky_relu(x, 0.2), {"slope": 0.2}),
    Case("abs", lambda r: [away_from_zero(r, (4, 5))], lambda t, x: t.abs(x)),
    Case("exp", normal(3, 4), lambda t, x: t.exp(x)),
    Case("log", lambda r: [positive(r, (3, 4))], lambda t, x: t.log(x)),
    Case("sqrt", lambda r: [positive(r, (3, 4))], lambda t, x: t.sqrt(x)),
    Case("tanh", lambda r: [2 * r.standard_normal((3, 4))], lambda t, x: t.tanh(x)),
    Case("erf", lambda r: [2 * r.standard_normal((3, 4))], lambda t, x: t.erf(x)),
    Case("sigmoid", lambda r: [3 * r.standard_normal((3, 4))], lambda t, x: t.sigmoid(x)),
    Case("softplus", lambda r: [3 * r.standard_normal((3, 4))], lambda t, x: _F(t).softplus(x)),
    Case("gelu", lambda r: [2 * r.standard_normal((3, 4))],
         lambda t, x: _F(t).gelu(x, approximate="tanh")),
    Case("silu", lambda r: [3 * r.standard_normal((3, 4))], lambda t, x: _F(t).silu(x)),
    Case("where", lambda r: [r.random((3, 1)) > 0.5, r.standard_normal((3, 4)), r.standard_normal((4,))],
         lambda t, c, a, b: t.where(c, a, b), label="broadcast"),
    # -- linear algebra and reductions ----------------------------------------------------------
    Case("matmul", lambda r: [r.standard_normal((3, 4)), r.standard_normal((4, 2))],
         lambda t, a, b: a @ b, label="2d"),
    Case("matmul", lambda r: [r.standard_normal((2, 1, 3, 4)), r.standard_normal((5, 4, 2))],
         lambda t, a, b: a @ b, label="batch-broadcast"),
    Case("sum", normal(2, 3, 4), lambda t, x: x.sum(), label="all"),
    Case("sum", normal(2, 3, 4), lambda t, x: x.sum(dim=(0, 2), keepdim=True),
         {"axes": (0, 2), "keepdims": True}, "keepdims"),
    Case("sum", normal(2, 3, 4), lambda t, x: x.sum(dim=-1), {"axes": -1}, "last"),
    Case("mean", normal(2, 3, 4), lambda t, x: x.mean(dim=1), {"axes": 1}, "axis"),
    Case("mean", normal(2, 3, 4), lambda t, x: x.mean(dim=(1, 2), keepdim=True),
         {"axes": (1, 2), "keepdims": True}, "keepdims"),
    Case("max", normal(3, 4, 5), lambda t, x: x.amax(), label="all"),
    Case("max", normal(3, 4, 5), lambda t, x: x.amax(dim=(0, 2), keepdim=True),
         {"axes": (0, 2), "keepdims": True}, "keepdims"),
    Case("max", normal(3, 4), lambda t, x: x.amax(dim=1), {"axes": 1}, "axis"),
    Case("max", normal(2, 3), lambda t, x: x.amax(dim=0), {"axes": 0}, "tiny"),
    # -- structure --------------------------------------------------------------------------------
    Case("cast", normal(3, 4), lambda t, x: x.to(t.float64), {"dtype": "float64"}),
    # (float64 runs here: narrowing casts, each pair of formats, are tests/test_cast.py's, against torch)
    Case("reshape", normal(3, 4), lambda t, x: x.reshape(2, 6), {"shape": (2, 6)}),
    Case("reshape", normal(2, 3, 2), lambda t, x: x.reshape(-1, 3), {"shape": (-1, 3)}, "infer"),
    Case("flatten", normal(2, 3, 4), lambda t, x: t.flatten(x, 1), {"start_dim": 1}),
    Case("transpose", normal(2, 3, 4), lambda t, x: x.permute(2, 0, 1), {"axes": (2, 0, 1)}),
    Case("transpose", normal(3, 4), lambda t, x: x.T, label="reverse"),
    Case("broadcast_to", normal(3, 1), lambda t, x: x.expand(2, 3, 4), {"shape": (2, 3, 4)}),
    Case("concat", lambda r: [r.standard_normal((2, 3)), r.standard_normal((2, 1)),
                              r.standard_normal((2, 2))],
         lambda t, a, b, c: t.cat([a, b, c], dim=1), {"axis": 1}),
    Case("slice", normal(5, 4), lambda t, x: x[0:5:2, 1:],
         {"index": ((0, 5, 2), (1, None, None))}),
    Case("gather", lambda r: [r.standard_normal((3, 5)), np.array([[0, 4, 4], [1, 1, 2], [3, 0, 3]])],
         lambda t, x, i: t.gather(x, 1, i), {"axis": 1}, "repeats"),
    Case("gather", lambda r: [r.standard_normal((4, 3)), ints(r, 4, (2, 3))],
         lambda t, x, i: t.gather(x, 0, i), {"axis": 0}, "axis0"),
    Case("softmax", lambda r: [2 * r.standard_normal((3, 5))], lambda t, x: t.softmax(x, dim=-1)),
    Case("softmax", lambda r: [2 * r.standard_normal((3, 5))], lambda t, x: t.softmax(x, dim=0),
         {"axis": 0}, "axis0"),
    Case("softmax", lambda r: [2 * r.standard_normal((2, 2))], lambda t, x: t.softmax(x, dim=-1),
         label="tiny"),
    Case("log_softmax", lambda r: [2 * r.standard_normal((3, 5))], lambda t, x: t.log_softmax(x, dim=-1)),
    Case("log_softmax", lambda r: [2 * r.standard_normal((2, 2))], lambda t, x: t.log_softmax(x, dim=0),
         {"axis": 0}, "tiny"),
    # -- nn ops -------------------------------------------------------------------------------------
    Case("conv2d", lambda r: [r.standard_normal((1, 2, 3, 3)), r.standard_normal((2, 1, 2, 2))],
         lambda t, x, w: _F(t).conv2d(x, w, padding=1, groups=2),
         {"padding": (1, 1), "groups": 2}, "tiny-groups"),
    Case("conv2d", lambda r: [r.standard_normal((2, 3, 7, 6)), r.standard_normal((4, 3, 3, 2))],
         lambda t, x, w: _F(t).conv2d(x, w, stride=(2, 1), padding=(1, 2), dilation=(2, 1)),
         {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1)}, "strided-dilated"),
    Case("conv2d", lambda r: [r.standard_normal((2, 4, 5, 5)), r.standard_normal((6, 2, 3, 3))],
         lambda t, x, w: _F(t).conv2d(x, w, padding=1, groups=2), {"padding": (1, 1), "groups": 2},
         "groups"),
    Case("max_pool2d", normal(1, 1, 2, 2), lambda t, x: _F(t).max_pool2d(x, 2),
         {"kernel_size": (2, 2), "stride": (2, 2)}, "tiny"),
    Case("max_pool2d", normal(2, 3, 7, 6), lambda t, x: _F(t).max_pool2d(x, (3, 2), (2, 1), (1, 1)),
         {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 1)}, "overlap-padded"),
    Case("avg_pool2d", normal(1, 1, 3, 3), lambda t, x: _F(t).avg_pool2d(x, 2, 1),
         {"kernel_size": (2, 2), "stride": (1, 1)}, "tiny"),
    Case("avg_pool2d", normal(2, 3, 7, 6), lambda t, x: _F(t).avg_pool2d(x, (3, 2), (2, 1), (1, 1)),
         {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 1)}, "padded"),
    Case("avg_pool2d", normal(2, 2, 5, 5),
         lambda t, x: _F(t).avg_pool2d(x, 3, 2, 1, count_include_pad=False),
         {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1), "count_include_pad": False},
         "exclude-pad"),
    Case("layer_norm", lambda r: [r.standard_normal((2, 3)), r.standard_normal(3), r.standard_normal(3)],
         lambda t, x, w, b: _F(t).layer_norm(x, (3,), w, b, 1e-5), {"normalized_ndim": 1}, "tiny"),
    Case("layer_norm", lambda r: [r.standard_normal((2, 3, 4, 5)), r.standard_normal((4, 5)),
                                  r.standard_normal((4, 5))],
         lambda t, x, w, b: _F(t).layer_norm(x, (4, 5), w, b, 1e-3),
         {"normalized_ndim": 2, "eps": 1e-3}, "2d"),
    Case("batch_norm", lambda r: [r.standard_normal((2, 2, 1, 2)), r.standard_normal(2),
                                  positive(r, (2,), 0.5, 2.0), r.standard_normal(2), r.standard_normal(2)],
         lambda t, x, m, v, w, b: (x - m.view(1, -1, 1, 1)) / t.sqrt(v.view(1, -1, 1, 1) + 1e-5)
         * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1), label="tiny"),
    Case("batch_norm", lambda r: [r.standard_normal((3, 4, 5)), r.standard_normal(4),
                                  positive(r, (4,), 0.5, 2.0), r.standard_normal(4), r.standard_normal(4)],
         lambda t, x, m, v, w, b: (x - m.view(1, -1, 1)) / t.sqrt(v.view(1, -1, 1) + 0.1)
         * w.view(1, -1, 1) + b.view(1, -1, 1), {"eps": 0.1}, "3d"),
    Case("embedding", lambda r: [r.standard_normal((5, 3)), np.array([[0, 4, 4], [2, 0, 1]])],
         lambda t, w, i: _F(t).embedding(i, w), label="repeats"),
]

IDS = [c.id for c in CASES]


def _inputs(case: Case, seed: int = 0) -> list[np.ndarray]:
    return [np.asarray(a) for a in case.make(np.random.default_rng(seed))]


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def _run(case: Case, arrays: list[np.ndarray], dtype: str, g: np.ndarray | None = None):
    """(output, grads) through the tensor API: apply + backward with cotangent ``g``."""
    ts = [tl.tensor(a, dtype=dtype, requires_grad=True) if _is_float(a) else tl.tensor(a) for a in arrays]
    out = apply(case.name, *ts, **case.attrs)
    if g is None:
        return out, None
    out.backward(g.astype(dtype))
    return out, [t.grad.numpy() if t.grad is not None else None for t in ts]


def _cotangent(case: Case, arrays: list[np.ndarray]) -> np.ndarray:
    shape = PRIMITIVES[case.name].shape(*(a.shape for a in arrays), **case.attrs)
    return np.random.default_rng(99).standard_normal(shape)


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_and_vjp_match_torch_float64(case: Case) -> None:
    torch = pytest.importorskip("torch")
    arrays = _inputs(case)
    g = _cotangent(case, arrays)
    out, grads = _run(case, arrays, "float64", g)

    tts = [torch.tensor(a, requires_grad=_is_float(a)) for a in arrays]
    ref = case.torch_fn(torch, *tts)
    ref.backward(torch.tensor(g))

    assert out.dtype == np.float64 and out.shape == tuple(ref.shape)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=F64_RTOL, atol=F64_ATOL)
    for i, (gr, tt) in enumerate(zip(grads, tts)):
        if not _is_float(arrays[i]):
            assert gr is None, f"{case.id}: integer input {i} got a gradient"
            continue
        assert gr.shape == arrays[i].shape, f"{case.id}: gradient {i} has shape {gr.shape}"
        np.testing.assert_allclose(gr, tt.grad.numpy(), rtol=F64_RTOL, atol=F64_ATOL,
                                   err_msg=f"{case.id}: gradient of input {i}")


def _mpf(a: np.ndarray) -> np.ndarray:
    if not _is_float(a):
        return a
    return np.asarray(np.frompyfunc(mpmath.mpf, 1, 1)(a), dtype=object).reshape(a.shape)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_mpmath_spec(case: Case) -> None:
    arrays = _inputs(case)
    out, _ = _run(case, arrays, "float64")
    with mpmath.workdps(30):
        spec = PRIMITIVES[case.name].mpmath(*(_mpf(a) for a in arrays), **case.attrs)
        exact = np.asarray(np.frompyfunc(float, 1, 1)(np.asarray(spec, dtype=object)), dtype=np.float64)
    assert exact.shape == out.shape
    np.testing.assert_allclose(out.numpy(), exact, rtol=F64_RTOL, atol=F64_ATOL)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float32_within_tolerance_of_float64(case: Case) -> None:
    arrays = _inputs(case)
    g = _cotangent(case, arrays)
    out64, grads64 = _run(case, arrays, "float64", g)
    out32, grads32 = _run(case, [a.astype(np.float32) if _is_float(a) else a for a in arrays], "float32", g)
    want = np.dtype(case.attrs["dtype"]) if case.name == "cast" else np.float32  # (a cast's: its format)
    assert out32.dtype == want, f"{case.id}: float32 inputs gave {out32.dtype}"
    np.testing.assert_allclose(out32.numpy(), out64.numpy(), rtol=F32_RTOL, atol=F32_ATOL)
    for g32, g64 in zip(grads32, grads64):
        if g64 is not None:
            assert g32.dtype == np.float32, f"{case.id}: float32 gradient came back as {g32.dtype}"
            np.testing.assert_allclose(g32, g64, rtol=F32_RTOL, atol=F32_ATOL)


def test_every_primitive_has_a_rule_and_a_case() -> None:
    covered = {c.name for c in CASES}
    assert sorted(set(PRIMITIVES) - set(RULES)) == [], "primitives without a kernel/VJP rule"
    assert sorted(set(PRIMITIVES) - covered) == [], "primitives without a test case"
    assert sorted(covered - set(PRIMITIVES)) == [], "cases for unknown primitives"


# -- the symbolic backend ---------------------------------------------------------------------------

SMALL = 30  # elements per input: symbolic runs stay quick


def _small_case(name: str) -> Case:
    """The case of ``name`` with the fewest input elements (at most SMALL per input)."""
    small = [c for c in CASES if c.name == name and all(a.size <= SMALL for a in _inputs(c))]
    if not small:
        raise AssertionError(f"no case of {name!r} is small enough for the symbolic backend")
    return min(small, key=lambda c: sum(a.size for a in _inputs(c)))


def _numeric(exprs: np.ndarray, env: dict) -> np.ndarray:
    def value(e):
        return float(sympy.sympify(e).xreplace(env).evalf(30))
    return np.asarray(np.frompyfunc(value, 1, 1)(exprs), dtype=np.float64).reshape(np.shape(exprs))


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_rule_runs_on_symbolic_backend_and_agrees_with_numpy(name: str) -> None:
    """Every kernel and VJP runs on sympy objects; substituting the numbers back into the formulas
    gives the numpy backend's values (so the formulas are the code that runs)."""
    case = _small_case(name)
    arrays = _inputs(case)
    env: dict = {}
    sym_inputs = []
    for i, a in enumerate(arrays):
        if not _is_float(a):
            sym_inputs.append(a)
            continue
        s = symbols(f"in{i}", a.shape)
        env.update({s[idx]: sympy.Float(a[idx], 30) for idx in np.ndindex(a.shape)})
        sym_inputs.append(s)
    rule_ = RULES[name]
    out = rule_.forward(SYMBOLIC, *sym_inputs, **case.attrs)
    g = symbols("g", np.shape(out))
    gnum = np.random.default_rng(5).standard_normal(np.shape(out))
    env.update({g[idx]: sympy.Float(gnum[idx], 30) for idx in np.ndindex(gnum.shape)})
    grads = rule_.vjp(SYMBOLIC, g, out, *sym_inputs, **case.attrs)

    ref_out = rule_.forward(np, *arrays, **case.attrs)
    ref_grads = rule_.vjp(np, gnum, ref_out, *arrays, **case.attrs)
    np.testing.assert_allclose(_numeric(out, env), ref_out, rtol=1e-12, atol=1e-12)
    for i, (gs, gr) in enumerate(zip(grads, ref_grads)):
        if gr is None:
            assert gs is None
            continue
        assert np.shape(gs) == arrays[i].shape
        np.testing.assert_allclose(_numeric(gs, env), gr, rtol=1e-12, atol=1e-12)


def _rational(e: sympy.Expr) -> sympy.Expr:
    """Floats (python constants such as eps in a kernel) as the exact rationals they denote."""
    return e.xreplace({f: sympy.Rational(f) for f in e.atoms(sympy.Float)})


def test_symbolic_conv2d_kernel_is_the_spec() -> None:
    x, w = symbols("x", (1, 1, 3, 3)), symbols("w", (1, 1, 2, 2))
    attrs = {"padding": (1, 0), "stride": (1, 1)}
    ours = RULES["conv2d"].forward(SYMBOLIC, x, w, **attrs)
    spec = PRIMITIVES["conv2d"].sympy(x, w, **attrs)
    assert ours.shape == spec.shape == (1, 1, 4, 2)
    assert all(sympy.expand(a - b) == 0 for a, b in zip(ours.ravel(), spec.ravel()))


def test_symbolic_max_pool_kernel_is_the_spec() -> None:
    x = symbols("x", (1, 1, 2, 2))
    attrs = {"kernel_size": (2, 2), "stride": (2, 2)}
    ours = RULES["max_pool2d"].forward(SYMBOLIC, x, **attrs)
    spec = PRIMITIVES["max_pool2d"].sympy(x, **attrs)
    assert sympy.simplify(ours[0, 0, 0, 0] - spec[0, 0, 0, 0]) == 0
    # and it is the maximum: check at a point where each entry wins in turn
    for k in range(4):
        vals = {s: (5 if i == k else i) for i, s in enumerate(x.ravel())}
        assert ours[0, 0, 0, 0].xreplace(vals) == 5


def test_symbolic_layer_norm_kernel_is_the_spec() -> None:
    x, w, b = symbols("x", (1, 3)), symbols("w", (3,)), symbols("b", (3,))
    ours = RULES["layer_norm"].forward(SYMBOLIC, x, w, b, eps=0.25)
    spec = PRIMITIVES["layer_norm"].sympy(x, w, b, eps=0.25)
    assert all(sympy.simplify(_rational(a) - b_) == 0 for a, b_ in zip(ours.ravel(), spec.ravel()))


def test_max_pool_gradient_goes_to_the_first_maximum_on_ties() -> None:
    x = np.array([[[[1.0, 3.0], [3.0, 2.0]]]])
    out = RULES["max_pool2d"].forward(np, x, kernel_size=(2, 2), stride=(2, 2))
    (gx,) = RULES["max_pool2d"].vjp(np, np.ones((1, 1, 1, 1)), out, x, kernel_size=(2, 2), stride=(2, 2))
    np.testing.assert_array_equal(gx, [[[[0.0, 1.0], [0.0, 0.0]]]])


def test_nn_shape_rules_name_the_op_and_shapes() -> None:
    from torchlean.spec import ShapeError

    with pytest.raises(ShapeError, match=r"conv2d.*\(1, 3, 5, 5\).*\(2, 2, 3, 3\)"):
        PRIMITIVES["conv2d"].shape((1, 3, 5, 5), (2, 2, 3, 3))
    with pytest.raises(ShapeError, match=r"max_pool2d.*too small"):
        PRIMITIVES["max_pool2d"].shape((1, 1, 1, 1), kernel_size=(2, 2), stride=(2, 2))
    with pytest.raises(ShapeError, match=r"layer_norm.*\(4,\).*\(2, 3\)"):
        PRIMITIVES["layer_norm"].shape((2, 3), (4,), (4,))
    with pytest.raises(ShapeError, match=r"batch_norm: running_var.*\(3,\)"):
        PRIMITIVES["batch_norm"].shape((2, 2, 4), (2,), (3,), (2,), (2,))
    with pytest.raises(ShapeError, match=r"embedding.*\(5,\)"):
        PRIMITIVES["embedding"].shape((5,), (2,))
    assert PRIMITIVES["embedding"].shape((5, 3), (2, 4)) == (2, 4, 3)


def test_nn_ops_differentiate_through_the_tensor_api_on_the_symbolic_device() -> None:
    import torchlean.nn.functional as F

    x = tl.tensor(symbols("x", (1, 1, 3, 3)), device="symbolic", requires_grad=True)
    w = tl.tensor(symbols("w", (1, 1, 2, 2)), device="symbolic", requires_grad=True)
    y = F.avg_pool2d(F.conv2d(x, w), 2, stride=1)  # (1, 1, 1, 1): the mean of the 4 conv outputs
    y.sum().backward()
    loss = y.numpy().ravel()[0]
    for t in (x, w):
        for idx in np.ndindex(t.shape):
            sym = t.numpy()[idx]
            assert sympy.expand(t.grad.numpy()[idx] - sympy.diff(loss, sym)) == 0


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cupy_kernels_match_numpy(case: Case) -> None:
    if not tl.cuda_available():
        pytest.skip("needs cupy and a CUDA GPU")
    import cupy

    arrays = _inputs(case)
    g = _cotangent(case, arrays)
    rule_ = RULES[case.name]
    out = rule_.forward(np, *arrays, **case.attrs)
    grads = rule_.vjp(np, g, out, *arrays, **case.attrs)
    dev = [cupy.asarray(a) for a in arrays]
    out_d = rule_.forward(cupy, *dev, **case.attrs)
    grads_d = rule_.vjp(cupy, cupy.asarray(g), out_d, *dev, **case.attrs)
    np.testing.assert_allclose(cupy.asnumpy(out_d), out, rtol=1e-12, atol=1e-12)
    for gd, gn in zip(grads_d, grads):
        if gn is not None:
            np.testing.assert_allclose(cupy.asnumpy(gd), gn, rtol=1e-12, atol=1e-12)
