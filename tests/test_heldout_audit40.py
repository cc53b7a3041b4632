"""audit40: the ONNX importer on opset versions and version-dependent meanings, against onnxruntime.

Found (1), a false checked unsat: before BatchNormalization-14 the number of outputs chooses the
mode (BatchNormalization-7/9: "Output case #1: Y, mean, var, saved_mean, saved_var (training
mode)"). A node with five outputs normalises by the batch's own statistics (onnxruntime does; onnx's
reference evaluator blends them with the stored ones by momentum), while the import read the stored
mean and var. With only Y consumed, ``python -m torchlean.verify`` printed ``checked: unsat`` and no
note; onnxruntime runs the file and gives a point of the property. Now refused in one line
(``bridge.onnx._check_signature``). With unnamed extra outputs onnxruntime crashes (a segfault) on
the file; the refusal comes before the cross-check's session.

Found (2), files onnxruntime refuses, read by the import (the audit22 class: the cross-check then has
no session, and the verdict carries only audit30's note): an attribute given twice (the import read
the last; onnx's checker and onnxruntime refuse the file) or holding another type's data field (now
``onnx.checker.check_node`` on every node), Max/Min before opset 8 on inputs of
different shapes (Max-6 does not broadcast; onnxruntime stops at run time), a 0-D or 2-D shape,
axes, starts or pads tensor (ONNX says 1-D; the import flattened it, onnxruntime stops at run time).
Each now refused in one line.

Hardening (3): the newest opset read was the installed onnx package's; a later onnx could bring an
operator version with the same signature and a new meaning (as Softmax-13 did). Now capped at
``MAX_OPSET`` = 28, the newest whose versions were compared (``test_operator_signatures_after_21``).

Held (``test_versioned_forms_match_onnxruntime``, opsets 7..28): Softmax/LogSoftmax default axis
and 2-D coercion before 13, Pad's attribute/input/axes forms, Clip's attribute/input forms, Slice's
attribute/input forms, ReduceSum/Mean/Max axes as attribute or input with ``noop_with_empty_axes``,
Squeeze/Unsqueeze axes as attribute or input, Reshape ``allowzero``, Gemm's C broadcast, pools and
convolutions, BatchNormalization in inference mode, Dropout's forms, Shape's start/end.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import torchlean.bridge.onnx as tlo
from torchlean.bridge import OnnxImportError, load_onnx, supported_operators
from torchlean.runtime.execute import run_graph

ort = pytest.importorskip("onnxruntime")
N = helper.make_node
F = TensorProto.FLOAT
ROOT = Path(__file__).resolve().parents[1]


def _i64(*v):
    return np.array(v, np.int64)


def _w(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _model(nodes, inputs, inits=(), opset=13, outputs=("y",), out_shapes=None):
    g = helper.make_graph(
        nodes,
        "a40",
        [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
        [helper.make_tensor_value_info(o, F, (out_shapes or {}).get(o)) for o in outputs],
        [numpy_helper.from_array(np.asarray(a), k) for k, a in inits],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset <= 18 else 10
    return m


def _session(m, optimise=True):
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    if not optimise:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _need(opset):
    """Skip where the installed onnx or onnxruntime do not reach ``opset`` (the reference is missing)."""
    if opset > min(onnx.defs.onnx_opset_version(), getattr(tlo, "MAX_OPSET", 28)):
        pytest.skip(f"onnx knows opsets up to {onnx.defs.onnx_opset_version()}")
    try:
        _session(_model([N("Relu", ["x"], ["y"])], [("x", [1])], opset=opset))
    except Exception:
        pytest.skip(f"this onnxruntime does not run opset {opset}")


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torchlean.verify", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )


# -- (1) BatchNormalization before 14: five outputs is training mode --------------------------------


def _bn_train(opset=9, outputs=("y", "rm", "rv", "sm", "sv")):
    """Y = (clip(bn(z)[0], -0.5, 1.5), x) for z = (x, -x) on one channel (1, 1, 2), g=1, b=0.5, mean 0,
    var 1e-6, eps 1e-4. Inference (stored stats): 0.5 + x/sqrt(1.01e-4), so 1.5 for x >= 0.02.
    Training (batch stats: mean 0, var x^2): 0.5 + x/sqrt(x^2 + 1e-4), 1.4487 at x = 0.03."""
    inits = [
        ("g", np.array([1.0], np.float32)),
        ("b", np.array([0.5], np.float32)),
        ("m", np.array([0.0], np.float32)),
        ("v", np.array([1e-6], np.float32)),
        ("s3", _i64(1, 1, 2)),
        ("s2", _i64(1, 2)),
    ]
    slice_ = (
        N("Slice", ["yf"], ["ya"], starts=[0], ends=[1], axes=[1])
        if opset < 10
        else N("Slice", ["yf", "st", "en", "ax"], ["ya"])
    )
    if opset >= 10:
        inits += [("st", _i64(0)), ("en", _i64(1)), ("ax", _i64(1))]
    clip = (
        N("Clip", ["ya"], ["yc"], min=-0.5, max=1.5) if opset < 11 else N("Clip", ["ya", "lo", "hi"], ["yc"])
    )
    if opset >= 11:
        inits += [("lo", np.float32(-0.5)), ("hi", np.float32(1.5))]
    nodes = [
        N("Neg", ["x"], ["nx"]),
        N("Concat", ["x", "nx"], ["z"], axis=1),
        N("Reshape", ["z", "s3"], ["z3"]),
        N("BatchNormalization", ["z3", "g", "b", "m", "v"], list(outputs), epsilon=1e-4),
        N("Reshape", ["y", "s2"], ["yf"]),
        slice_,
        clip,
        N("Concat", ["yc", "x"], ["out"], axis=1),
    ]
    return _model(nodes, [("x", [1, 1])], inits, opset, outputs=("out",), out_shapes={"out": [1, 2]})


BN_PROP = """(declare-const X_0 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 -10.0))
(assert (<= X_0 10.0))
(assert (>= Y_1 0.02))
(assert (<= Y_0 1.45))
"""


def test_bn_training_mode_file_is_not_verified(tmp_path):
    m = _bn_train()
    onnx.checker.check_model(m, full_check=True)  # a valid file
    net, prop = tmp_path / "bn.onnx", tmp_path / "bn.vnnlib"
    onnx.save(m, str(net))
    prop.write_text(BN_PROP)
    # onnxruntime (optimised, as the cross-check runs it, and not) normalises by the batch: a point
    # of the property at X_0 = 0.03, so the property is sat
    x = np.array([[0.03]], np.float32)
    for opt in (True, False):
        y = _session(m, opt).run(None, {"x": x})[0].ravel()
        assert y[1] >= 0.02 and y[0] <= 1.45, y
        assert abs(float(y[0]) - (0.5 + 0.03 / np.sqrt(0.03**2 + 1e-4))) < 1e-5
    r = _cli(str(net), str(prop), "--timeout", "60")
    assert "unsat" not in r.stdout, r.stdout + r.stderr  # main printed "unsat" / "checked: unsat"
    assert "training mode" in r.stderr


@pytest.mark.parametrize("opset", [7, 9, 13])
@pytest.mark.parametrize("named", [True, False])
def test_bn_with_more_than_one_output_before_14_is_refused(opset, named):
    outs = ("y", "rm", "rv", "sm", "sv") if named else ("y", "", "", "", "")
    with pytest.raises(OnnxImportError, match="training mode"):
        load_onnx(_bn_train(opset, outs))


@pytest.mark.parametrize("opset", [7, 9, 13, 14, 15, 22])
def test_bn_with_one_output_matches_onnxruntime(opset):
    _need(opset)
    m = _bn_train(opset, ("y",))
    g, sess = load_onnx(m), _session(m)
    for v in (-10.0, -0.3, -0.005, 0.0, 0.004, 0.03, 7.0):
        x = np.array([[v]], np.float32)
        np.testing.assert_allclose(
            run_graph(g, {"x": x}, dtype=np.float64)[0], sess.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5
        )


# -- (2) files onnxruntime refuses ---------------------------------------------------------------------


def test_an_attribute_given_twice_is_refused(tmp_path):
    node = N("LeakyRelu", ["x"], ["y"], alpha=0.1)
    node.attribute.append(helper.make_attribute("alpha", 0.5))
    m = _model([node], [("x", [1, 2])], out_shapes={"y": [1, 2]})
    with pytest.raises(onnx.checker.ValidationError, match="multiple times"):
        onnx.checker.check_model(m)
    with pytest.raises(Exception, match="multiple times"):
        _session(m)
    with pytest.raises(OnnxImportError, match="multiple times"):
        load_onnx(m)
    # end to end: read with the last alpha (0.5), Y_0 >= -0.3 was a checked unsat on X_0 in [-2, -1]
    # (with the first, 0.1, it is sat); now refused
    net, prop = tmp_path / "d.onnx", tmp_path / "d.vnnlib"
    onnx.save(m, str(net))
    prop.write_text(
        "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
        "(declare-const Y_1 Real)\n(assert (<= X_0 -1.0))\n(assert (>= X_0 -2.0))\n"
        "(assert (<= X_1 1.0))\n(assert (>= X_1 0.0))\n(assert (>= Y_0 -0.3))\n"
    )
    r = _cli(str(net), str(prop), "--timeout", "30")
    assert "unsat" not in r.stdout and "multiple times" in r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("field", ["i", "floats"])
def test_an_attribute_with_another_types_data_is_refused(field):
    """alpha typed FLOAT holding 0.5 and also i = 3, or only floats = [0.3]: onnx's checker and
    onnxruntime refuse ("type field and data field mismatch"); the import read f (0.5, or 0)."""
    node = N("LeakyRelu", ["x"], ["y"])
    a = node.attribute.add()
    a.name, a.type = "alpha", onnx.AttributeProto.FLOAT
    if field == "i":
        a.f, a.i = 0.5, 3
    else:
        a.floats.extend([0.3])
    m = _model([node], [("x", [1, 2])], out_shapes={"y": [1, 2]})
    with pytest.raises(onnx.checker.ValidationError, match="mismatch"):
        onnx.checker.check_model(m)
    with pytest.raises(Exception, match="mismatch"):
        _session(m)
    with pytest.raises(OnnxImportError, match="mismatch"):
        load_onnx(m)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max6_does_not_broadcast(op):
    m = _model([N(op, ["x", "c"], ["y"])], [("x", [2, 3])], [("c", _w(0, 2, 1))], opset=7)
    with pytest.raises(Exception, match="same shape"):  # onnxruntime's Max_6 at run time
        _session(m).run(None, {"x": np.zeros((2, 3), np.float32)})
    with pytest.raises(OnnxImportError, match="opset 8"):
        load_onnx(m)
    same = _model([N(op, ["x", "c", "x"], ["y"])], [("x", [2, 3])], [("c", _w(0, 2, 3))], opset=7)
    x = _w(1, 2, 3)
    np.testing.assert_allclose(
        run_graph(load_onnx(same), {"x": x}, dtype=np.float64)[0],
        _session(same).run(None, {"x": x})[0],
        rtol=0,
        atol=0,
    )
    at8 = _model([N(op, ["x", "c"], ["y"])], [("x", [2, 3])], [("c", _w(0, 2, 1))], opset=8)
    np.testing.assert_allclose(
        run_graph(load_onnx(at8), {"x": x}, dtype=np.float64)[0],
        _session(at8).run(None, {"x": x})[0],
        rtol=0,
        atol=0,
    )


X3 = [("x", [2, 3, 4])]
NOT_1D = {
    "slice_starts_2d": (
        [N("Slice", ["x", "s", "e"], ["y"])],
        [("s", np.array([[1]], np.int64)), ("e", np.array([[3]], np.int64))],
    ),
    "reshape_shape_2d": ([N("Reshape", ["x", "s"], ["y"])], [("s", np.array([[6, 4]], np.int64))]),
    "reducesum_axes_0d": ([N("ReduceSum", ["x", "a"], ["y"])], [("a", np.array(1, np.int64))]),
}


@pytest.mark.parametrize("name", sorted(NOT_1D))
def test_shape_tensors_must_be_1d(name):
    nodes, inits = NOT_1D[name]
    m = _model(nodes, X3, inits, opset=13)
    with pytest.raises(Exception, match="1-D|vector"):  # onnxruntime stops at run time
        _session(m).run(None, {"x": _w(0, 2, 3, 4)})
    with pytest.raises(OnnxImportError, match="1-D"):
        load_onnx(m)
    flat = _model(nodes, X3, [(k, np.asarray(v).reshape(-1)) for k, v in inits], opset=13)
    x = _w(1, 2, 3, 4)
    np.testing.assert_allclose(
        run_graph(load_onnx(flat), {"x": x}, dtype=np.float64)[0],
        _session(flat).run(None, {"x": x})[0],
        rtol=1e-6,
        atol=1e-6,
    )


# -- (3) the opset range and domains -------------------------------------------------------------------


def test_operator_signatures_after_21():
    """The MAX_OPSET claim: from opset 21 to MAX_OPSET (as far as the installed onnx goes) no
    supported operator gained or lost an attribute or input (Cast's ``round_mode``, for float8
    targets the import refuses, apart); the per-version meanings the converters read stop at 21."""
    top = min(onnx.defs.onnx_opset_version(), tlo.MAX_OPSET)

    def sig(op, v):
        s = onnx.defs.get_schema(op, v, "")
        return sorted(set(s.attributes) - {"round_mode"}), [(i.name, str(i.option)) for i in s.inputs]

    changed = [
        (op, v) for op in supported_operators() for v in range(22, top + 1) if sig(op, v) != sig(op, 21)
    ]
    assert changed == []


def test_opsets_beyond_max_are_refused(monkeypatch):
    MAX_OPSET = tlo.MAX_OPSET
    top = min(onnx.defs.onnx_opset_version(), MAX_OPSET)
    m = _model([N("Relu", ["x"], ["y"])], [("x", [1, 2])], opset=top)
    load_onnx(m)
    m.opset_import[0].version = MAX_OPSET + 1
    with pytest.raises(OnnxImportError, match="outside the supported range"):
        load_onnx(m)
    # a newer onnx package does not widen the range (its new operator versions are unread)
    monkeypatch.setattr(onnx.defs, "onnx_opset_version", lambda: MAX_OPSET + 5)
    with pytest.raises(OnnxImportError, match=f"7..{MAX_OPSET}"):
        load_onnx(m)


def test_domains():
    x = np.arange(12, dtype=np.float32).reshape(2, 3, 2) / 3

    def soft(imports, domain=""):
        g = helper.make_graph(
            [N("Softmax", ["x"], ["y"], domain=domain)],
            "g",
            [helper.make_tensor_value_info("x", F, [2, 3, 2])],
            [helper.make_tensor_value_info("y", F, None)],
        )
        m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in imports])
        m.ir_version = 8
        return m

    # "" and "ai.onnx" at two versions: onnxruntime takes the last listed; refused here
    for imports in ([("", 11), ("ai.onnx", 13)], [("ai.onnx", 13), ("", 11)]):
        with pytest.raises(OnnxImportError, match="imported twice"):
            load_onnx(soft(imports))
    # "ai.onnx" alone, or an ai.onnx.ml import with no ml node: read at that version, as onnxruntime
    for imports, domain in (
        ([("ai.onnx", 11)], ""),
        ([("ai.onnx", 11)], "ai.onnx"),
        ([("", 11), ("ai.onnx.ml", 3)], ""),
    ):
        m = soft(imports, domain)
        np.testing.assert_allclose(
            run_graph(load_onnx(m), {"x": x}, dtype=np.float64)[0],
            _session(m).run(None, {"x": x})[0],
            rtol=1e-6,
        )
    with pytest.raises(OnnxImportError, match="com.microsoft"):
        load_onnx(soft([("", 11), ("com.microsoft", 1)]))
    with pytest.raises(OnnxImportError, match="domain"):
        load_onnx(soft([("", 11), ("ai.onnx.ml", 3)], domain="ai.onnx.ml"))
    for op in ("Gelu", "Resize", "Upsample", "Split", "DeformConv", "ReduceMin"):
        assert op not in supported_operators()


# -- held: versioned forms against onnxruntime ----------------------------------------------------------


def _versioned(op):
    """(name, model, inputs) for the forms whose reading depends on the opset, at opset ``op``."""
    X4, X2 = [("x", [1, 2, 4, 5])], [("x", [2, 3])]
    out = []
    for sm in ("Softmax", "LogSoftmax"):
        for ax in (None, 0, 1, -2):
            if not (ax is not None and ax < 0 and op < 11):
                out.append(
                    (
                        f"{sm}_ax{ax}",
                        _model([N(sm, ["x"], ["y"], **({} if ax is None else {"axis": ax}))], X3, [], op),
                        X3,
                    )
                )
    if op < 11:
        out += [
            ("pad", _model([N("Pad", ["x"], ["y"], pads=[0, 1, -1, 0, 2, 0], value=0.5)], X3, [], op), X3),
            ("clip", _model([N("Clip", ["x"], ["y"], min=-0.5)], X3, [], op), X3),
        ]
    else:
        out += [
            (
                "pad",
                _model(
                    [N("Pad", ["x", "p", "v"], ["y"])],
                    X3,
                    [("p", _i64(0, 1, -1, 0, 2, 0)), ("v", np.float32(0.5))],
                    op,
                ),
                X3,
            ),
            ("clip", _model([N("Clip", ["x", "", "hi"], ["y"])], X3, [("hi", np.float32(0.5))], op), X3),
        ]
    if op < 10:
        out.append(
            (
                "slice",
                _model([N("Slice", ["x"], ["y"], starts=[1, -3], ends=[100, -1], axes=[2, 1])], X3, [], op),
                X3,
            )
        )
    else:
        out.append(
            (
                "slice",
                _model(
                    [N("Slice", ["x", "s", "e", "a", "t"], ["y"])],
                    X3,
                    [("s", _i64(1, -3)), ("e", _i64(100, -1)), ("a", _i64(2, 1)), ("t", _i64(2, 1))],
                    op,
                ),
                X3,
            )
        )
    if op >= 18:
        out.append(
            (
                "pad_axes",
                _model(
                    [N("Pad", ["x", "p", "", "a"], ["y"])],
                    X3,
                    [("p", _i64(1, -1, 0, 2)), ("a", _i64(-1, 1))],
                    op,
                ),
                X3,
            )
        )
    for red in ("ReduceMean", "ReduceMax", "ReduceSum"):
        new = op >= (13 if red == "ReduceSum" else 18)
        for axes in (None, (1,), (-1, 0), ()):
            for noop in (0, 1) if new else (None,):
                kw = {"keepdims": 0} if axes == (1,) else {}
                if noop is not None:
                    kw["noop_with_empty_axes"] = noop
                ins, inits = ["x"], []
                if axes is not None:
                    if new:
                        ins.append("a")
                        inits.append(("a", np.array(axes, np.int64)))
                    elif axes:
                        kw["axes"] = list(axes)
                    else:
                        continue
                out.append((f"{red}_{axes}_{noop}", _model([N(red, ins, ["y"], **kw)], X3, inits, op), X3))
    if op < 13:
        out.append(
            (
                "squeeze",
                _model(
                    [
                        N("Unsqueeze", ["x"], ["u"], axes=[0, 3] if op < 11 else [0, -1]),
                        N("Squeeze", ["u"], ["y"], axes=[3]),
                    ],
                    X2,
                    [],
                    op,
                ),
                X2,
            )
        )
    else:
        out.append(
            (
                "squeeze",
                _model(
                    [N("Unsqueeze", ["x", "a"], ["u"]), N("Squeeze", ["u", "b"], ["y"])],
                    X2,
                    [("a", _i64(0, -1)), ("b", _i64(3))],
                    op,
                ),
                X2,
            )
        )
    if op >= 14:
        out.append(
            (
                "reshape_allowzero",
                _model([N("Reshape", ["x", "s"], ["y"], allowzero=1)], X3, [("s", _i64(4, 3, 2))], op),
                X3,
            )
        )
    if op >= 15:
        out.append(
            (
                "shape_start_end",
                _model(
                    [N("Shape", ["x"], ["s"], start=-2, end=10), N("Reshape", ["x", "s2"], ["y"])],
                    X3,
                    [("s2", _i64(6, 4))],
                    op,
                ),
                X3,
            )
        )
    out += [
        ("flatten", _model([N("Flatten", ["x"], ["y"], axis=2)], X3, [], op), X3),
        (
            "gemm",
            _model(
                [N("Gemm", ["x", "w", "c"], ["y"], alpha=-0.5, beta=2.0, transB=1)],
                X2,
                [("w", _w(0, 4, 3)), ("c", _w(1, 4))],
                op,
            ),
            X2,
        ),
        (
            "gemm_col_c",
            _model(
                [N("Gemm", ["x", "w", "c"], ["y"], transA=1)],
                [("x", [3, 2])],
                [("w", _w(0, 3, 4)), ("c", _w(1, 2, 1))],
                op,
            ),
            [("x", [3, 2])],
        ),
        (
            "bn",
            _model(
                [N("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], epsilon=0.3)],
                X4,
                [("g", _w(0, 2)), ("b", _w(1, 2)), ("m", _w(2, 2)), ("v", np.abs(_w(3, 2)) + 0.1)],
                op,
            ),
            X4,
        ),
        (
            "avgpool",
            _model(
                [N("AveragePool", ["x"], ["y"], kernel_shape=[2, 3], pads=[1, 1, 1, 1], strides=[2, 1])],
                X4,
                [],
                op,
            ),
            X4,
        ),
        (
            "maxpool",
            _model(
                [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 3], pads=[1, 1, 1, 1], strides=[2, 1])],
                X4,
                [],
                op,
            ),
            X4,
        ),
        (
            "conv_same",
            _model(
                [N("Conv", ["x", "w"], ["y"], auto_pad="SAME_LOWER", strides=[2, 2])],
                X4,
                [("w", _w(0, 3, 2, 2, 3))],
                op,
            ),
            X4,
        ),
        ("leaky", _model([N("LeakyRelu", ["x"], ["y"])], X3, [], op), X3),
        ("dropout", _model([N("Dropout", ["x"], ["y", "mask"])], X3, [], op), X3),
    ]
    if op >= 8:
        out.append(("max_broadcast", _model([N("Max", ["x", "c"], ["y"])], X3, [("c", _w(0, 3, 1))], op), X3))
    if op >= 17:
        out.append(
            (
                "layernorm",
                _model(
                    [N("LayerNormalization", ["x", "g", "b"], ["y"], axis=1, epsilon=0.2)],
                    X3,
                    [("g", _w(0, 4)), ("b", _w(1, 3, 1))],
                    op,
                ),
                X3,
            )
        )
    return out


@pytest.mark.parametrize("opset", [7, 9, 10, 11, 12, 13, 14, 17, 18, 19, 21, 22, 23, 25, 28])
def test_versioned_forms_match_onnxruntime(opset):
    _need(opset)
    rng = np.random.default_rng(opset)
    for name, m, inputs in _versioned(opset):
        g, sess = load_onnx(m), _session(m)
        for k in range(12):
            # corners and zeros, uniform draws, and negatives only (a misread on one sign)
            feeds = {
                n: (
                    rng.choice([-3.0, 3.0, 0.0], s)
                    if k % 3 == 0
                    else rng.uniform(-3, 3 if k % 3 == 1 else 0, s)
                ).astype(np.float32)
                for n, s in inputs
            }
            ref = sess.run(None, feeds)
            got = run_graph(g, feeds, dtype=np.float64)
            for r, o in zip(ref, got):
                assert np.shape(r) == np.shape(o), (name, opset)
                np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-5, err_msg=f"{name} at opset {opset}")
