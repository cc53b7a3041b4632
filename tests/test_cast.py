"""The ``cast`` primitive (session 33) and torch's ``dim=()`` for reductions.

References: PyTorch (values, gradients, gradient dtypes, ``is`` identity), onnxruntime (the
exported Cast and ReduceSum), mpmath and the bit-exact emulator (the error column), the library's
proof artifacts replayed by the checker.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest

import torchlean as tl
from torchlean.certificates import check
from torchlean.floats import bound_certificate, emulate
from torchlean.runtime.compiled import CompiledStep
from torchlean.runtime.execute import run_graph
from torchlean.spec import Graph, Node, Value

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")
F = tl.nn.functional
RNG = np.random.default_rng(33)

#: torchlean dtype name -> torch dtype
TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
         "float64": torch.float64}


def _np(t):
    """A torch tensor's values as numpy (bfloat16 through ml_dtypes, bit for bit)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _bits(a):
    a = np.asarray(a)
    return a.dtype.name, a.view(np.uint8).tobytes()


def _pair(src, values):
    """The same leaf in torchlean and torch, of dtype ``src``."""
    x = tl.tensor(np.asarray(values, dtype=np.float64), dtype="float64").to(src)
    x.requires_grad_()
    xt = torch.tensor(np.asarray(values, dtype=np.float64)).to(TORCH[src]).requires_grad_()
    assert _bits(x.numpy()) == _bits(_np(xt))
    return x, xt


METHODS = {"float": "float32", "double": "float64", "half": "float16"}


@pytest.mark.parametrize("dst", list(TORCH) + list(METHODS))
@pytest.mark.parametrize("src", list(TORCH))
def test_cast_values_and_gradient_match_torch(src, dst):
    """Forward bits, and the cotangent cast back to the source dtype (torch's ToCopyBackward),
    for every pair of float formats and for .float()/.double()/.half()."""
    vals = [0.1, -2.7, 1e-3, 3.3e4, -7.0e-6, 1.0 / 3.0]
    x, xt = _pair(src, vals)
    if dst in METHODS:
        y, yt = getattr(x, dst)(), getattr(xt, dst)()
    else:
        y, yt = x.to(dst), xt.to(TORCH[dst])
    assert _bits(y.numpy()) == _bits(_np(yt))
    if y.dtype == x.dtype:
        assert y is x and yt is xt  # torch returns the tensor itself when nothing changes
    w = RNG.standard_normal(len(vals))
    (y * tl.tensor(w, dtype="float64").to(y.dtype)).sum().backward()
    (yt * torch.tensor(w).to(yt.dtype)).sum().backward()
    assert x.grad is not None, "the cast cut the gradient path"
    assert _bits(x.grad.numpy()) == _bits(_np(xt.grad))


@pytest.mark.parametrize("src,mid", [("float32", "float64"), ("float64", "float32"),
                                     ("float32", "float16"), ("float64", "bfloat16")])
def test_gradient_through_a_cast_inside_a_chain(src, mid):
    """x -> tanh -> cast -> * w -> cast back -> exp -> sum: a non-leaf cast in the middle."""
    vals = RNG.uniform(-1, 1, 7)
    w = RNG.uniform(-1, 1, 7)
    x, xt = _pair(src, vals)
    y = ((x.tanh().to(mid) * tl.tensor(w, dtype="float64").to(mid)).to(src)).exp().sum()
    yt = ((xt.tanh().to(TORCH[mid]) * torch.tensor(w).to(TORCH[mid])).to(TORCH[src])).exp().sum()
    y.backward()
    yt.backward()
    tols = {"float64": 1e-12, "float32": 1e-6, "float16": 2e-3, "bfloat16": 2e-2}
    tol = max(tols[mid], tols[src])
    np.testing.assert_allclose(float(y.item()), float(yt.item()), rtol=tol)
    assert x.grad.dtype == np.dtype(src) and str(xt.grad.dtype) == f"torch.{src}"
    np.testing.assert_allclose(x.grad.numpy().astype(np.float64), _np(xt.grad).astype(np.float64),
                               rtol=2 * tol, atol=2 * tol)


def test_the_lead_case_of_audit47():
    """(a.double() * 2).sum().backward() left a.grad None (torch: 2, float32)."""
    a = tl.tensor([1.0, -3.0, 0.5], requires_grad=True)
    (a.double() * 2).sum().backward()
    at = torch.tensor([1.0, -3.0, 0.5], requires_grad=True)
    (at.double() * 2).sum().backward()
    assert _bits(a.grad.numpy()) == _bits(_np(at.grad))


def test_integer_conversions_still_carry_no_gradient():
    x = tl.tensor([1.5, -2.5], requires_grad=True)
    xt = torch.tensor([1.5, -2.5], requires_grad=True)
    for name in ("long", "int", "bool"):
        y, yt = getattr(x, name)(), getattr(xt, name)()
        assert not y.requires_grad and not yt.requires_grad
        assert y.tolist() == yt.tolist()
    i = tl.tensor([1, 2]).to("float64")  # an integer tensor to a float one: a copy, no tape
    assert i.dtype == np.float64 and not i.requires_grad and i.is_leaf


def test_second_order_gradient_through_a_cast():
    """create_graph=True records cast's VJP (a recorded cast) so it differentiates again."""
    v = [0.3, -1.2, 2.0]
    x, xt = tl.tensor(v, requires_grad=True), torch.tensor(v, requires_grad=True)
    (g,) = tl.autograd.grad((x.double() ** 3).sum(), [x], create_graph=True)
    (gt,) = torch.autograd.grad((xt.double() ** 3).sum(), [xt], create_graph=True)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g.numpy(), _np(gt), rtol=1e-6)
    (h,) = tl.autograd.grad(g.sum(), [x])
    (ht,) = torch.autograd.grad(gt.sum(), [xt])
    np.testing.assert_allclose(h.numpy(), _np(ht), rtol=1e-6)


class _Mixed(tl.nn.Module):
    """A float32 layer, a float64 head: the mixed-precision habit the cast makes trainable."""

    def __init__(self):
        super().__init__()
        self.fc = tl.nn.Linear(3, 4)
        self.head = tl.nn.Linear(4, 1, dtype="float64")

    def forward(self, x):
        return self.head(self.fc(x).tanh().double()).float()


def test_training_step_eager_compiled_and_torch_agree():
    tl.manual_seed(0)
    eager, comp = _Mixed(), _Mixed()
    comp.load_state_dict(eager.state_dict())
    x = tl.tensor(RNG.standard_normal((5, 3)).astype(np.float32))
    y = tl.tensor(RNG.standard_normal((5, 1)).astype(np.float32))
    F.mse_loss(eager(x), y).backward()
    step = CompiledStep(comp, F.mse_loss)
    step(x, y)
    for (n, pe), pc in zip(eager.named_parameters(), comp.parameters(), strict=True):
        assert pe.grad is not None and _bits(pe.grad.numpy()) == _bits(pc.grad.numpy()), n
    sd = {k: torch.tensor(np.asarray(v)) for k, v in eager.state_dict().items()}
    fc = torch.nn.Linear(3, 4)
    head = torch.nn.Linear(4, 1).double()
    fc.load_state_dict({"weight": sd["fc.weight"], "bias": sd["fc.bias"]})
    head.load_state_dict({"weight": sd["head.weight"], "bias": sd["head.bias"]})
    out = head(fc(torch.tensor(x.numpy())).tanh().double()).float()
    torch.nn.functional.mse_loss(out, torch.tensor(y.numpy())).backward()
    for name, p, pt in (("fc.weight", eager.fc.weight, fc.weight),
                        ("head.weight", eager.head.weight, head.weight)):
        assert p.grad.dtype == np.dtype(str(pt.dtype).replace("torch.", "")), name
        np.testing.assert_allclose(p.grad.numpy(), _np(pt.grad), rtol=1e-5, atol=1e-7)


# -- tracing, exports, imports ---------------------------------------------------------------------

def _traced():
    m = _Mixed().eval()
    x = tl.tensor(RNG.standard_normal((1, 3)).astype(np.float32))
    return m, x, tl.trace(m, x)


def test_trace_records_the_casts_and_runs_like_eager():
    m, x, g = _traced()
    casts = [n.attrs["dtype"] for n in g.nodes if n.op == "cast"]
    assert casts == ["float64", "float32"]
    assert g.values[g.outputs[0]].dtype == "float32"
    (got,) = run_graph(g, {g.inputs[0].name: x.numpy()})
    assert _bits(got) == _bits(m(x).numpy())


def test_onnx_export_is_a_cast_that_onnxruntime_and_the_import_agree_with():
    ort = pytest.importorskip("onnxruntime")
    from torchlean.bridge import export_onnx, load_onnx

    m, x, g = _traced()
    model = export_onnx(g)
    assert [n.op_type for n in model.graph.node].count("Cast") == 2
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {g.inputs[0].name: x.numpy()}
    want = m(x).numpy()
    np.testing.assert_allclose(sess.run(None, feeds)[0], want, rtol=1e-6)
    back = load_onnx(model)
    assert [n.attrs["dtype"] for n in back.nodes if n.op == "cast"] == ["float64", "float32"]
    assert _bits(run_graph(back, feeds)[0]) == _bits(want)


@pytest.mark.parametrize("to", ["float16", "float64", "bfloat16"])
def test_onnx_cast_of_a_runtime_value_imports_as_the_primitive(to):
    """A Cast of the network's own value (not a constant) was refused before; onnxruntime's
    rounding (to nearest even) is the kernel's."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from torchlean.bridge import load_onnx

    code = {"float16": TensorProto.FLOAT16, "float64": TensorProto.DOUBLE,
            "bfloat16": TensorProto.BFLOAT16}[to]
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=code), helper.make_node("Cast", ["c"], ["y"],
                                                                              to=TensorProto.FLOAT)]
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])]),
        opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    x = (RNG.standard_normal((2, 5)) * 300).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    g = load_onnx(model)
    assert [n.op for n in g.nodes] == ["cast", "cast"]
    assert _bits(run_graph(g, {"x": x})[0]) == _bits(want)


def test_to_torch_keeps_the_cast_and_its_gradient():
    from torchlean.bridge.torch_out import to_torch

    m, x, g = _traced()
    tm = to_torch(g)
    xt = torch.tensor(x.numpy(), requires_grad=True)
    out = tm(xt)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(_np(out), m(x).numpy(), rtol=1e-6)
    out.sum().backward()
    xl = tl.tensor(x.numpy(), requires_grad=True)
    m(xl).sum().backward()
    np.testing.assert_allclose(_np(xt.grad), xl.grad.numpy(), rtol=1e-5)


def test_torch_export_of_dtype_conversions():
    from torchlean.bridge.torch_export import export_graph

    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            return (self.lin(x).double() * 3).tanh().half().float()

    t = T().eval()
    x = torch.randn(1, 3)
    g, _, _ = export_graph(t, x)
    assert [n.attrs["dtype"] for n in g.nodes if n.op == "cast"] == ["float64", "float16", "float32"]
    with torch.no_grad():
        want = t(x).numpy()
    assert _bits(run_graph(g, {g.inputs[0].name: x.numpy()})[0]) == _bits(want)


# -- the tables: coverage, proofs, bounds, the error column --------------------------------------

def test_coverage_has_every_row_for_cast():
    from torchlean.proofs.coverage import coverage, gaps

    row = coverage()["cast"]
    assert all(row[c] is True for c in ("spec", "runtime", "autograd", "ibp", "floats", "verify")), row
    assert gaps() == []


def test_library_artifacts_for_cast_are_checked():
    from torchlean.proofs.artifacts import LIBRARY_DIR, check_one
    from torchlean.proofs.cli import collect

    obs = [ob for ob in collect(library=True) if ob.name.split(".")[1:2] == ["cast"]]
    assert len(obs) == 8  # forward and autograd, one per format
    assert all(check_one(LIBRARY_DIR, ob).status == "checked" for ob in obs)


@pytest.mark.solver
def test_gradient_proof_of_a_mixed_precision_model(tmp_path):
    """A model with .double()/.float() in its forward: the compositional gradient claim traces the
    casts as nodes (a .to() copy was refused) and every node obligation and the chain rule check."""
    pytest.importorskip("cvc5")
    from torchlean.zoo.claims import gradient_proof

    st = gradient_proof("castmodel", _Mixed, (1, 3), tmp_path, budget=300)
    assert st.claim == "checked", st.detail
    assert st.obligations == st.checked > 0 and st.trusted == 0


def test_faithful_bounds_through_a_cast_hold_at_sampled_points():
    """x + x.double() was refused (a copy outside the tape); now the cast is a node and the
    bounds of tl.verify hold for the model run eagerly."""

    class W(tl.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = tl.nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x + x.double().tanh().float())

    m = W().eval()
    x0 = np.array([[0.05, 0.0]])
    b = tl.verify.bounds(m, x0, 0.1)
    lo, hi = np.asarray(b.lower), np.asarray(b.upper)
    for _ in range(200):
        p = x0 + RNG.uniform(-0.1, 0.1, x0.shape)
        with tl.no_grad():
            y = m(tl.tensor(p.astype(np.float32))).numpy()
        assert np.all(y >= lo - 1e-5) and np.all(y <= hi + 1e-5)


def _cast_graph(dt):
    W = np.array([[0.7, -1.3, 0.2], [0.4, 0.9, -0.8], [-1.1, 0.25, 0.6]])
    return Graph([Value("x", (1, 3), "float32")], {"W": W},
                 [Node("matmul", ["x", "W"], "h"), Node("cast", ["h"], "c0", {"dtype": dt}),
                  # (cast back before computing: the runtime computes on a float16 value in float16,
                  # and the checker refuses a tanh read of it in a binary32 run; audit61)
                  Node("cast", ["c0"], "c", {"dtype": "float32"}),
                  Node("tanh", ["c"], "t"), Node("sum", ["t"], "y", {"axes": None})], ["y"]).check()


@pytest.mark.parametrize("fmt,dt", [("binary32", "float16"), ("binary32", "float64"),
                                    ("binary16", "bfloat16"), ("bfloat16", "float16"),
                                    ("binary32", "bfloat16")])
def test_error_column_bounds_the_emulated_run(fmt, dt):
    """The certified epsilon is at least |emulated run - real value| at sampled points (the
    emulator rounds the cast to T, then to the run's format); the checker replays it."""
    g = _cast_graph(dt)
    cert = bound_certificate(g, [(-1, 1)] * 3, fmt)
    assert check(cert).ok
    eps = float(Fraction(cert["statement"]["epsilon"][0]))
    W = g.constants["W"]
    for _ in range(60):
        x = emulate(Graph([Value("x", (1, 3), "float32")], {}, [], ["x"]).check(),
                    {"x": RNG.uniform(-1, 1, (1, 3))}, fmt)[0]  # a point of the format
        got = float(emulate(g, {"x": x}, fmt)[0].flat[0])
        h = [mpmath.fsum(mpmath.mpf(float(x[0, k])) * mpmath.mpf(float(W[k, j])) for k in range(3))
             for j in range(3)]
        assert abs(got - float(mpmath.fsum(mpmath.tanh(v) for v in h))) <= eps


def test_error_column_a_wider_cast_is_exact_a_narrower_one_is_charged():
    plain = Graph([Value("x", (1, 3), "float32")], {"W": _cast_graph("float64").constants["W"]},
                  [Node("matmul", ["x", "W"], "h"), Node("tanh", ["h"], "t"),
                   Node("sum", ["t"], "y", {"axes": None})], ["y"]).check()
    box = [(-1, 1)] * 3
    eps = {k: Fraction(bound_certificate(g, box, "binary32")["statement"]["epsilon"][0])
           for k, g in (("plain", plain), ("wide", _cast_graph("float64")),
                        ("narrow", _cast_graph("float16")))}
    assert eps["wide"] == eps["plain"] < eps["narrow"]
    assert eps["narrow"] > 3 * 2 ** -11 * 0.5  # at least a float16 rounding of tanh's argument's size


def test_error_column_refuses_a_cast_that_may_overflow():
    from torchlean.certificates.core import Rejected

    g = Graph([Value("x", (1, 2), "float32")], {},
              [Node("cast", ["x"], "y", {"dtype": "float16"})], ["y"]).check()
    with pytest.raises((Rejected, ValueError), match="overflow"):
        bound_certificate(g, [(0, 7e4), (0, 1)], "binary32")


def test_runtime_in_a_format_is_the_emulator_bit_for_bit():
    """run_graph(dtype=float32) of a cast to float16 and back is emulate's fl32(fl16(x))."""
    g = Graph([Value("x", (64,), "float32")], {},
              [Node("cast", ["x"], "c", {"dtype": "float16"}), Node("mul", ["c", "c"], "y")], ["y"]).check()
    x = (RNG.standard_normal(64) * 10.0 ** RNG.integers(-6, 4, 64)).astype(np.float32)
    got = run_graph(g, {"x": x}, dtype=np.float32)[0]
    assert _bits(got) == _bits(emulate(g, {"x": x}, "binary32")[0].astype(np.float32))


# -- dim=() --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [(), []])
@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "var", "std"])
def test_empty_dim_reduces_every_axis_like_torch(name, keep, dim):
    v = RNG.standard_normal((2, 3, 4))
    v[1, 2, 3] = v.max() + 1  # a unique maximum and minimum: torch's tie split is not at issue
    x, xt = tl.tensor(v, dtype="float64", requires_grad=True), torch.tensor(v, requires_grad=True)
    y, yt = getattr(x, name)(dim=dim, keepdim=keep), getattr(xt, name)(dim=dim, keepdim=keep)
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y.numpy(), _np(yt), rtol=1e-12)
    (y * 3).sum().backward()
    if name in ("var", "std"):  # torch 2.13's var/std backward reads dim=() as no reduction (n - 1
        yt = getattr(xt, name)(keepdim=keep)  # = 0: every entry inf), against its own forward: the
    (yt * 3).sum().backward()  # reference is then the derivative of what both forwards compute
    np.testing.assert_allclose(x.grad.numpy(), _np(xt.grad), rtol=1e-12, atol=1e-15)


def test_empty_dim_in_an_exported_model_is_the_total_for_onnxruntime_and_torch():
    """h + h.sum(dim=()) is torch's h + sum(h): traced, exported and converted back alike."""
    ort = pytest.importorskip("onnxruntime")
    from torchlean.bridge import export_onnx, load_onnx
    from torchlean.bridge.torch_out import to_torch

    class M(tl.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tl.nn.Linear(2, 2)

        def forward(self, x):
            h = self.fc(x).relu()
            return h + h.sum(dim=()) + h.mean(dim=[])

    m = M().eval()
    x = np.array([[1.0, 0.5]], np.float32)
    y = m(tl.tensor(x)).numpy()
    sd = {k: torch.tensor(np.asarray(v)) for k, v in m.state_dict().items()}
    fc = torch.nn.Linear(2, 2)
    fc.load_state_dict({"weight": sd["fc.weight"], "bias": sd["fc.bias"]})
    h = fc(torch.tensor(x)).relu()
    np.testing.assert_allclose(y, _np(h + h.sum(dim=()) + h.mean(dim=[])), rtol=1e-6)
    g = tl.trace(m, tl.tensor(x))
    model = export_onnx(g)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {g.inputs[0].name: x})[0]
    np.testing.assert_allclose(got, y, rtol=1e-6)
    np.testing.assert_allclose(run_graph(load_onnx(model), {g.inputs[0].name: x})[0], y, rtol=1e-6)
    np.testing.assert_allclose(_np(to_torch(g)(torch.tensor(x))), y, rtol=1e-6)


def test_ir_json_round_trip_and_malformed_casts_refused(tmp_path):
    from torchlean.bridge.ir_json import load_graph, save_graph
    from torchlean.spec.graph import GraphError

    m, x, g = _traced()
    save_graph(g, tmp_path / "g.json")
    back = load_graph(tmp_path / "g.json")
    assert back.fingerprint() == g.fingerprint()
    assert _bits(run_graph(back, {g.inputs[0].name: x.numpy()})[0]) == _bits(m(x).numpy())
    with pytest.raises(GraphError, match="float inputs only"):  # a cast is float to float
        Graph([Value("i", (2,), "int64")], {}, [Node("cast", ["i"], "y", {"dtype": "float32"})],
              ["y"]).check()
    with pytest.raises(GraphError, match="not one of"):
        Graph([Value("x", (2,), "float32")], {}, [Node("cast", ["x"], "y", {"dtype": "int8"})], ["y"]).check()
