"""The ONNX importer keeps the exact real-number meaning of every attribute (issue 20, S2).

Each case builds a model with onnx.helper, imports it, evaluates the imported graph exactly
(``spec.exact``, mpmath at 60 digits) and compares with an independent exact computation written
here from the ONNX weights and attributes as stored (read back from the ModelProto with
numpy_helper, each float read as the exact rational it denotes). The cases are chosen so that a
float32 fold of the attribute (alpha * W, beta * C, 1 / sqrt(var + eps), ...) would differ from
the exact value by far more than the comparison's tolerance.
"""

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from torchlean.bridge import OnnxImportError, load_onnx
from torchlean.spec.exact import evaluate

F = TensorProto.FLOAT
RNG = np.random.default_rng(20)
THIRD = np.float32(1 / 3)
ROOT = Path(__file__).resolve().parents[1]


def _model(nodes, inputs, outputs, inits=(), opset=13, et=F):
    """A one-graph ONNX model (IR 8) of ``nodes``, inputs and outputs of element type ``et``."""
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info(n, et, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, et, None) for n in outputs],
                          [numpy_helper.from_array(np.asarray(a), k) for k, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


@pytest.fixture(autouse=True)
def _precision():
    """References are computed with 80 digits (the importer's output is compared to 1e-45)."""
    with mpmath.workdps(80):
        yield


def _mpf(v) -> mpmath.mpf:
    q = Fraction(float(v))  # floats are binary fractions: this is exact
    return mpmath.mpf(q.numerator) / q.denominator


def mp(a):
    """A float array (or number) as an object array of mpf holding its exact values."""
    a = np.asarray(a)
    if a.ndim == 0:
        return _mpf(a)
    return np.frompyfunc(_mpf, 1, 1)(a).astype(object)


def _weights(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _attr(model, name, default=None):
    for a in model.graph.node[0].attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _assert_exact(model, feeds, ref):
    """The imported graph's exact output equals ``ref`` (object arrays of mpf) to 1e-45."""
    graph = load_onnx(model)
    (out,) = evaluate(graph, feeds, digits=60)
    r = np.asarray(ref, dtype=object)
    assert out.shape == r.shape
    for a, b in zip(out.flat, r.flat):
        assert abs(a - b) <= mpmath.mpf(10) ** -45 * max(1, abs(b)), (a, b)
    return graph


def _feed(name, shape, lo=-2.0, hi=2.0):
    return {name: RNG.uniform(lo, hi, shape).astype(np.float32)}


# -- S2, the reported instance ---------------------------------------------------------------------

def _s2(tmp_path):
    node = helper.make_node("Gemm", ["X", "W", "C"], ["Y"], beta=3.0)
    m = _model([node], [("X", (1, 1))], ["Y"], [("W", np.zeros((1, 1), np.float32)),
                                               ("C", np.array([THIRD]))])
    net, prop = tmp_path / "s2.onnx", tmp_path / "s2.vnnlib"
    net.write_bytes(m.SerializeToString())
    prop.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n"
                    "(assert (<= X_0 1))\n(assert (>= Y_0 1.0000000298023223876953125))\n")
    return m, net, prop


def test_s2_instance_is_not_certified_unsat(tmp_path):
    """Y = 3 * float32(1/3) = 1.0000000298023223876953125 exactly, so Y_0 >= that is sat; the old
    importer folded 3 * C in float32 (= 1.0) and the verifier certified unsat."""
    m, net, prop = _s2(tmp_path)
    exact = 3 * Fraction(float(THIRD))
    assert exact == Fraction("1.0000000298023223876953125")
    assert Fraction(float(np.float32(3) * THIRD)) != exact  # the float32 fold is wrong
    _assert_exact(m, {"X": np.zeros((1, 1), np.float32)}, [[mpmath.mpf(exact.numerator) / exact.denominator]])
    cmd = [sys.executable, "-m", "torchlean.verify", str(net), str(prop), "--timeout", "20", "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    # the imported graph has a mul(C, beta) node on constants: the bound table folds it exactly, the
    # search finds a point and the checker accepts it on the exact output enclosure
    assert r.returncode == 0 and r.stdout.split()[0] == "sat", (r.stdout, r.stderr)


# -- every attribute against an independent exact computation --------------------------------------

def _gemm_ref(m, feeds):
    w = _weights(m)
    a = mp(feeds["a"])
    b, c = mp(w["b"]), mp(w["c"])
    if _attr(m, "transA", 0):
        a = a.T
    if _attr(m, "transB", 0):
        b = b.T
    return mp(_attr(m, "alpha", 1.0)) * a.dot(b) + mp(_attr(m, "beta", 1.0)) * c


@pytest.mark.parametrize("ta,tb,alpha,beta,cshape", [
    (0, 0, 0.1, 3.0, (4,)),     # neither fold is exact: both stay explicit mul nodes
    (1, 1, 2.0, 0.5, (2, 4)),   # powers of two: folded into W and C, exactly
    (0, 1, 1.0, 1 / 3, (1, 4)),  # beta not a power of two
    (1, 0, 3.0, 0.0, (4,)),     # beta = 0: C does not contribute
    (0, 0, 2.0 ** -120, 2.0 ** 100, (2, 1)),  # scalings that underflow/overflow float32 products
])
def test_gemm_alpha_beta_trans(ta, tb, alpha, beta, cshape):
    a_shape = (3, 2) if ta else (2, 3)
    b = (RNG.standard_normal((4, 3) if tb else (3, 4)) * 1e-20 if alpha < 1e-30 else
         RNG.standard_normal((4, 3) if tb else (3, 4))).astype(np.float32)
    c = np.full(cshape, THIRD, np.float32) * np.float32(1e20 if beta > 1e20 else 1)
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=ta, transB=tb, alpha=alpha, beta=beta)
    m = _model([node], [("a", a_shape)], ["y"], [("b", b), ("c", c)])
    feeds = _feed("a", a_shape)
    _assert_exact(m, feeds, _gemm_ref(m, feeds))


def test_gemm_with_runtime_c():
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], alpha=0.1, beta=0.7)
    b = RNG.standard_normal((3, 4)).astype(np.float32)
    m = _model([node], [("a", (2, 3)), ("c", (2, 4))], ["y"], [("b", b)])
    feeds = {**_feed("a", (2, 3)), **_feed("c", (2, 4))}
    ref = mp(np.float32(0.1)) * mp(feeds["a"]).dot(mp(b)) + mp(np.float32(0.7)) * mp(feeds["c"])
    _assert_exact(m, feeds, ref)


@pytest.mark.parametrize("eps", [None, 1e-3, 0.1])
def test_batch_norm_epsilon_and_statistics(eps):
    c = 3
    w = {"s": RNG.uniform(0.5, 2, c), "bias": RNG.standard_normal(c), "mean": RNG.standard_normal(c),
         "var": RNG.uniform(0.01, 3, c)}
    w = {k: v.astype(np.float32) for k, v in w.items()}
    kw = {} if eps is None else {"epsilon": eps}
    node = helper.make_node("BatchNormalization", ["x", "s", "bias", "mean", "var"], ["y"], **kw)
    m = _model([node], [("x", (2, c, 2, 2))], ["y"], list(w.items()))
    feeds = _feed("x", (2, c, 2, 2))
    e = mp(np.float32(1e-5 if eps is None else eps))  # ONNX stores epsilon as float32
    with mpmath.workdps(80):
        x = mp(feeds["x"])
        sh = (1, c, 1, 1)
        inv = np.frompyfunc(lambda v: 1 / mpmath.sqrt(v + e), 1, 1)(mp(w["var"])).reshape(sh)
        ref = (x - mp(w["mean"]).reshape(sh)) * inv * mp(w["s"]).reshape(sh) + mp(w["bias"]).reshape(sh)
        _assert_exact(m, feeds, ref)


@pytest.mark.parametrize("alpha", [None, 0.3])
def test_leaky_relu_alpha_is_the_stored_float32(alpha):
    kw = {} if alpha is None else {"alpha": alpha}
    m = _model([helper.make_node("LeakyRelu", ["x"], ["y"], **kw)], [("x", (2, 5))], ["y"])
    feeds = _feed("x", (2, 5))
    s = mp(np.float32(0.01 if alpha is None else alpha))  # default 0.01 is float32(0.01) too
    ref = np.frompyfunc(lambda v: v if v > 0 else s * v, 1, 1)(mp(feeds["x"]))
    _assert_exact(m, feeds, ref)


def test_sub_div_normalisation_constants():
    """The eran nets' input normalisation: Constant mean, Constant std, (x - mean) / std."""
    mean, std = np.array([[THIRD]], np.float32), np.array([[np.float32(0.3081)]], np.float32)
    nodes = [helper.make_node("Constant", [], ["mu"], value=numpy_helper.from_array(mean, "mu")),
             helper.make_node("Constant", [], ["sd"], value_float=float(std[0, 0])),
             helper.make_node("Sub", ["x", "mu"], ["a"]), helper.make_node("Div", ["a", "sd"], ["y"])]
    m = _model(nodes, [("x", (1, 4))], ["y"], opset=12)  # value_float exists since Constant-12
    feeds = _feed("x", (1, 4))
    _assert_exact(m, feeds, (mp(feeds["x"]) - mp(mean)) / mp(std[0, 0]))


@pytest.mark.parametrize("opset", [9, 11, 18])
def test_pad_value_and_negative_pads(opset):
    pads = [0, 0, 1, -1, 0, 0, 2, 1]  # (N, C, H, W): H +1 before/+2 after, W cropped 1 before/+1 after
    if opset < 11:
        node = helper.make_node("Pad", ["x"], ["y"], pads=pads, value=float(THIRD))
        inits = []
    elif opset < 18:
        node = helper.make_node("Pad", ["x", "p", "v"], ["y"])
        inits = [("p", np.array(pads, np.int64)), ("v", np.array(THIRD))]
    else:  # only the spatial axes, through the axes input
        node = helper.make_node("Pad", ["x", "p", "v", "ax"], ["y"])
        inits = [("p", np.array([1, -1, 2, 1], np.int64)), ("v", np.array(THIRD)),
                 ("ax", np.array([-2, 3], np.int64))]
    m = _model([node], [("x", (1, 2, 3, 3))], ["y"], inits, opset=opset)
    feeds = _feed("x", (1, 2, 3, 3))
    ref = np.full((1, 2, 6, 3), mp(THIRD), dtype=object)
    ref[:, :, 1:4, 0:2] = mp(feeds["x"])[:, :, :, 1:]
    g = _assert_exact(m, feeds, ref)
    assert {n.op for n in g.nodes} <= {"slice", "concat"}


@pytest.mark.parametrize("opset", [10, 13])
def test_clip_bounds(opset):
    lo, hi = float(-THIRD), float(np.float32(0.7))
    if opset < 11:
        m = _model([helper.make_node("Clip", ["x"], ["y"], min=lo, max=hi)], [("x", (3, 4))], ["y"],
                   opset=opset)
    else:
        m = _model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [("x", (3, 4))], ["y"],
                   [("lo", np.float32(lo)), ("hi", np.float32(hi))], opset=opset)
    feeds = _feed("x", (3, 4))
    ref = np.frompyfunc(lambda v: min(max(v, mp(lo)), mp(hi)), 1, 1)(mp(feeds["x"]))
    _assert_exact(m, feeds, ref)


@pytest.mark.parametrize("exponent", [np.float32(3), np.float32(0.5), np.int64(2)])
def test_pow_exponent(exponent):
    m = _model([helper.make_node("Pow", ["x", "e"], ["y"])], [("x", (2, 3))], ["y"],
               [("e", np.asarray(exponent))])
    feeds = _feed("x", (2, 3), 0.1, 2.0)
    with mpmath.workdps(80):
        ref = np.frompyfunc(lambda v: v ** mp(exponent), 1, 1)(mp(feeds["x"]))
        _assert_exact(m, feeds, ref)


@pytest.mark.parametrize("axis,bias", [(-1, True), (1, False)])
def test_layer_normalization(axis, bias):
    shape = (2, 3, 4)
    norm = shape[axis:]
    w = RNG.uniform(0.5, 2, norm).astype(np.float32)
    b = RNG.standard_normal(norm).astype(np.float32)
    node = helper.make_node("LayerNormalization", ["x", "w"] + (["b"] if bias else []), ["y"], axis=axis,
                            epsilon=0.01)
    m = _model([node], [("x", shape)], ["y"], [("w", w)] + ([("b", b)] if bias else []), opset=17)
    feeds = _feed("x", shape)
    with mpmath.workdps(80):
        x = mp(feeds["x"]).reshape(shape[0], -1) if axis == 1 else mp(feeds["x"]).reshape(-1, shape[-1])
        n = x.shape[1]
        mu = x.sum(axis=1, keepdims=True) / n
        var = ((x - mu) * (x - mu)).sum(axis=1, keepdims=True) / n
        inv = np.frompyfunc(lambda v: 1 / mpmath.sqrt(v + mp(np.float32(0.01))), 1, 1)(var)
        ref = ((x - mu) * inv).reshape(shape) * mp(w) + (mp(b) if bias else 0)
        _assert_exact(m, feeds, ref)


@pytest.mark.parametrize("include,pads", [(0, [1, 1, 1, 1]), (1, [1, 1, 1, 1]), (1, [0, 1, 1, 0])])
def test_average_pool_count_include_pad(include, pads):
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=pads,
                            count_include_pad=include)
    m = _model([node], [("x", (1, 2, 5, 5))], ["y"])
    feeds = _feed("x", (1, 2, 5, 5))
    x = mp(feeds["x"])
    ph, pw = pads[0] + pads[2], pads[1] + pads[3]
    ho, wo = (5 + ph - 3) // 2 + 1, (5 + pw - 3) // 2 + 1
    ref = np.empty((1, 2, ho, wo), dtype=object)
    for i in range(ho):
        for j in range(wo):
            rows = [r for r in range(2 * i - pads[0], 2 * i - pads[0] + 3) if 0 <= r < 5]
            cols = [c for c in range(2 * j - pads[1], 2 * j - pads[1] + 3) if 0 <= c < 5]
            total = sum((x[:, :, r, c] for r in rows for c in cols), np.zeros((1, 2), dtype=object))
            ref[:, :, i, j] = total / (9 if include else len(rows) * len(cols))
    _assert_exact(m, feeds, ref)


def _conv_ref(x, w, bias, stride, pads, dil, group):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.empty((n, o, ho, wo), dtype=object)
    for oc in range(o):
        g = oc // (o // group)
        for i in range(ho):
            for j in range(wo):
                acc = np.full(n, mp(bias[oc]), dtype=object)
                for ic in range(cg):
                    for a in range(kh):
                        for b in range(kw):
                            r, q = i * stride[0] - pads[0] + a * dil[0], j * stride[1] - pads[1] + b * dil[1]
                            if 0 <= r < h and 0 <= q < wd:
                                acc = acc + x[:, g * cg + ic, r, q] * mp(w[oc, ic, a, b])
                out[:, oc, i, j] = acc
    return out


@pytest.mark.parametrize("attrs,pads", [
    ({"strides": [2, 2], "pads": [1, 1, 1, 1]}, [1, 1, 1, 1]),                  # oval21, sri_resnet
    ({"pads": [0, 1, 2, 0], "dilations": [2, 1], "group": 2}, [0, 1, 2, 0]),  # asymmetric
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, [0, 0, 1, 1]),
    ({"auto_pad": "SAME_LOWER", "strides": [2, 2]}, [1, 1, 0, 0]),
])
def test_conv_pads_strides_dilations_groups(attrs, pads):
    w = RNG.standard_normal((4, 1 if attrs.get("group") else 2, 2, 2)).astype(np.float32)
    bias = RNG.standard_normal(4).astype(np.float32)
    m = _model([helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)], [("x", (1, 2, 5, 5))], ["y"],
               [("w", w), ("b", bias)])
    feeds = _feed("x", (1, 2, 5, 5))
    ref = _conv_ref(mp(feeds["x"]), w, bias, attrs.get("strides", [1, 1]), pads,
                    attrs.get("dilations", [1, 1]), attrs.get("group", 1))
    _assert_exact(m, feeds, ref)


# -- the fold helper itself ------------------------------------------------------------------------

def test_exact_product_folds_only_exact_products():
    from torchlean.bridge._onnx_exact import exact_product

    a = np.array([THIRD, 1.5, -2.0], np.float32)
    assert np.array_equal(exact_product(a, 0.5), a / 2)  # power of two, in range: exact
    assert exact_product(a, 3.0) is None  # 3 * float32(1/3) needs 25 bits
    assert exact_product(np.array([2.0 ** -149], np.float32), 0.5) is None  # underflows to 0
    assert exact_product(np.array([2.0 ** 127], np.float32), 2.0) is None  # overflows to inf
    assert exact_product(np.array([3 * 2.0 ** -149], np.float32), 0.5) is None  # subnormal, inexact
    assert exact_product(np.array([np.nan], np.float32), 1.0) is None
    d = np.array([1 / 3, 0.75])
    assert exact_product(d, 3.0) is None and np.array_equal(exact_product(d, 0.25), d / 4)  # float64 path
    h = np.array([0.1, 2.0], np.float16)
    assert exact_product(h, 0.5).dtype == np.float16 and exact_product(h, 0.1) is None


def test_gemm_folds_exact_scalings_and_keeps_the_rest_explicit():
    b = np.array([[1.5, -2.0]], np.float32)
    c = np.array([THIRD, 1.0], np.float32)
    exact = _model([helper.make_node("Gemm", ["a", "b", "c"], ["y"], alpha=0.5, beta=4.0)], [("a", (1, 1))],
                   ["y"], [("b", b), ("c", c)])
    assert [n.op for n in load_onnx(exact).nodes] == ["matmul", "add"]  # both folded (exact)
    inexact = _model([helper.make_node("Gemm", ["a", "b", "c"], ["y"], alpha=0.1, beta=3.0)], [("a", (1, 1))],
                     ["y"], [("b", b), ("c", c)])
    assert sorted(n.op for n in load_onnx(inexact).nodes) == ["add", "matmul", "mul", "mul"]


# -- bad models: one-line errors naming the problem ------------------------------------------------

def _relu(shape=(1, 3), dims=None, opset=13):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "t",
                          [helper.make_tensor_value_info("x", F, dims if dims is not None else shape)],
                          [helper.make_tensor_value_info("y", F, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("dims,message", [
    ([1, -5], "dimension -5 at axis 1"),
    ([1, 0], "dimension 0 at axis 1"),
    ([1, "H"], "symbolic dimension 'H' at axis 1"),
    ([-1, 3], "dimension -1 at axis 0"),
])
def test_bad_input_dimensions_are_refused(dims, message):
    with pytest.raises(OnnxImportError, match=message):
        load_onnx(_relu(dims=dims))


def test_symbolic_dimensions_resolved_only_when_given():
    assert load_onnx(_relu(dims=["N", 3]), batch_size=4).inputs[0].shape == (4, 3)
    assert load_onnx(_relu(dims=[1, "H"]), dims={"H": 7}).inputs[0].shape == (1, 7)
    with pytest.raises(OnnxImportError, match="batch_size must be a positive integer"):
        load_onnx(_relu(), batch_size=0)


def test_non_ssa_graphs_are_refused():
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])]
    m = _model(nodes, [("x", (1, 3))], ["y"])
    with pytest.raises(OnnxImportError, match="Neg node 'y' writes 'y', which is already defined"):
        load_onnx(m)
    m = _model([helper.make_node("Relu", ["x"], ["x"])], [("x", (1, 3))], ["x"])
    with pytest.raises(OnnxImportError, match="not SSA"):
        load_onnx(m)
    m = _model([helper.make_node("Relu", ["x"], ["w"])], [("x", (1, 3))], ["w"],
               [("w", np.ones(3, np.float32))])
    with pytest.raises(OnnxImportError, match="not SSA"):
        load_onnx(m)


@pytest.mark.parametrize("opset,message", [(999, "opset 999 is outside the supported range"),
                                           (6, "opset 6 is outside the supported range")])
def test_opsets_outside_the_range_are_refused(opset, message):
    with pytest.raises(OnnxImportError, match=message):
        load_onnx(_relu(opset=opset))


def test_foreign_domains_and_missing_operators_are_refused():
    m = _relu()
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(OnnxImportError, match="operator domain 'com.microsoft'"):
        load_onnx(m)
    m = _relu()
    m.graph.node[0].domain = "com.example"
    m.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    with pytest.raises(OnnxImportError, match="from operator domain 'com.example'"):
        load_onnx(m)
    m = _model([helper.make_node("LayerNormalization", ["x", "w"], ["y"])], [("x", (2, 3))], ["y"],
               [("w", np.ones(3, np.float32))], opset=13)
    with pytest.raises(OnnxImportError, match="LayerNormalization does not exist in opset 13"):
        load_onnx(m)
    m = _relu()
    del m.opset_import[:]
    with pytest.raises(OnnxImportError, match="no default-domain"):
        load_onnx(m)


def test_signatures_are_checked_against_the_schema():
    m = _model([helper.make_node("Gemm", ["a", "b"], ["y"], transb=1)], [("a", (2, 3)), ("b", (2, 3))], ["y"])
    with pytest.raises(OnnxImportError, match="attribute\\(s\\) transb not defined by Gemm-13"):
        load_onnx(m)  # a misspelt transB must not be ignored
    m = _model([helper.make_node("Concat", ["a", "a"], ["y"])], [("a", (2, 3))], ["y"])
    with pytest.raises(OnnxImportError, match="required attribute\\(s\\) axis missing"):
        load_onnx(m)
    m = _model([helper.make_node("Relu", ["a", "a"], ["y"])], [("a", (2, 3))], ["y"])
    with pytest.raises(OnnxImportError, match="has 2 inputs; Relu-.* takes 1..1"):
        load_onnx(m)
    m = _model([helper.make_node("LayerNormalization", ["x", "", "b"], ["y"])], [("x", (2, 3))], ["y"],
               [("b", np.ones(3, np.float32))], opset=17)
    with pytest.raises(OnnxImportError, match="input 1 \\(Scale\\) is required but empty"):
        load_onnx(m)  # it was read as a zero scale
    nodes = [helper.make_node("Constant", [], ["c"], value_float=1.0),
             helper.make_node("Add", ["a", "c"], ["y"])]
    m = _model(nodes, [("a", (2, 3))], ["y"], opset=11)
    with pytest.raises(OnnxImportError, match="value_float not defined by Constant-11"):
        load_onnx(m)


def test_operand_types_are_checked_by_strict_inference():
    m = _model([helper.make_node("Add", ["x", "c"], ["y"])], [("x", (2, 3))], ["y"],
               [("c", np.ones(3, np.float64))])
    with pytest.raises(OnnxImportError, match="invalid ONNX model: .*Add"):
        load_onnx(m)  # float32 + float64 is not an ONNX Add; it was imported as a float64 add


def test_unsupported_uses_are_refused():
    m = _model([helper.make_node("Dropout", ["x", "r", "t"], ["y"])], [("x", (2, 3))], ["y"],
               [("r", np.float32(0.5)), ("t", np.array(True))])
    with pytest.raises(OnnxImportError, match="training mode"):
        load_onnx(m)
    nodes = [helper.make_node("Dropout", ["x"], ["y", "mask"]),
             helper.make_node("Cast", ["mask"], ["z"], to=F)]
    m = _model(nodes, [("x", (2, 3))], ["z"])
    with pytest.raises(OnnxImportError, match="output 1 \\('mask'\\) is not supported"):
        load_onnx(m)
    m = _model([helper.make_node("Squeeze", ["x", "ax"], ["y"])], [("x", (1, 3))], ["y"],
               [("ax", np.array([2], np.int64))])
    with pytest.raises(OnnxImportError, match="axis 2 is out of range"):
        load_onnx(m)
    m = _model([helper.make_node("Div", ["x", "d"], ["y"])], [("x", (1, 3))], ["y"],
               [("d", np.array([1, 0, 2], np.float32))])
    with pytest.raises(OnnxImportError, match="Div by a constant holding 0"):
        load_onnx(m)
    m = _model([helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")], [("x", (1, 3))], ["y"],
               [("p", np.array([0, 1, 0, 1], np.int64))])
    with pytest.raises(OnnxImportError, match="mode 'reflect' is not supported"):
        load_onnx(m)


def test_integer_shape_arithmetic_is_exact_and_checked():
    """Div of int64 constants truncates toward zero (as onnxruntime does); overflow is refused."""
    def target(op, a, b):
        nodes = [helper.make_node(op, ["a", "b"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["y"])]
        inits = [("a", np.array(a, np.int64)), ("b", np.array(b, np.int64))]
        return _model(nodes, [("x", (6, 1))], ["y"], inits)

    # -3 / 2 truncates to -1 (infer this dimension); floor division would give -2, an invalid target
    assert load_onnx(target("Div", [-3, 4], [2, 2])).values["y"].shape == (3, 2)
    assert load_onnx(target("Sub", [5, 3], [2, 1])).values["y"].shape == (3, 2)
    with pytest.raises(OnnxImportError, match="overflows int64"):
        load_onnx(target("Mul", [2**62, 1], [4, 1]))


def test_cli_reports_bad_models_in_one_line(tmp_path, capsys):
    from torchlean.verify.__main__ import main

    net = tmp_path / "bad.onnx"
    net.write_bytes(_relu(dims=[1, -5]).SerializeToString())
    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n"
                    "(assert (<= X_0 1))\n(assert (>= Y_0 1))\n")
    assert main([str(net), str(prop), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dimension -5 at axis 1" in err[0]
