"""audit39: float-sound verdicts (``verify NET PROP --float32``, ``verify check ... --float32``) on
convolutional graphs and split trees: Conv with asymmetric pads, strides, groups and dilations,
MaxPool with padding, AveragePool 3x3/7x7 (1/9, 1/49 not binary32) with and without the padding in
the count, BatchNormalization with means and biases of 2^15..2^20 scale, residual Add, Sub/Div
normalisation, Flatten, Gemm, channels with cancelling weights, subnormal-scale weights.

References, independent of the checker: an executor of the ONNX file written here in numpy float32
(every product and sum rounded, dot products and window sums in five orders: forward, reverse,
ascending and descending magnitude, pairwise), the runtime's own float32 run (``run_graph``), a
float64 run of the file written here as the real value (~1e-16 relative, far below the float32
errors compared), onnxruntime, exact Fractions.

No hole found in the checker: no epsilon below any of those executors' error
(``test_epsilon_covers_every_summation_order``), no checked ``unsat`` at a binary32 point the
runtime's float32 run puts in the unsafe set (``test_a_point_the_runtime_violates_is_never_unsat``),
and a partitioned certificate's leaves stay bound to their boxes, their network and their format
(``test_partitioned_conv_certificate_mutations``). Two sharp points (``test_epsilon_at_sharp_points``:
a tie chain in a conv's sum, 0.984 of epsilon; a batch norm's worst binary32 scale) catch a column
that drops a term.

Scope, measured (documented in TRUST_BOUNDARIES.md, "Audit audit39": not a checker hole, the
claim is about torchlean's runtime): onnxruntime's float32 program differs from the runtime's in
two ways the import cross-check lets through (its tolerance is 1e-3 (1 + max|y|)), each giving a
checked ``unsat (float32-sound)`` whose unsafe set onnxruntime's run of the same file meets
(``test_scope_*``): BatchNormalization folded into x*s + (B - mean*s) (error ~u |mean s| instead of
~u |(x - mean) s|), and Gemm with a bias C and more than 256 inner terms, whose bias is the
accumulator the K-blocks are added to (each block's sum rounded against the bias).
Changed (untrusted, ``verify/float32.py``: ``runtime_meets``): after such an unsat the CLI runs
onnxruntime at binary32 points of each region and prints a ``note:`` when its outputs meet the
unsafe set; the ``test_scope_*`` tests fail on the old code (no note).
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from fractions import Fraction as Q
from pathlib import Path

import numpy as np
import pytest

from torchlean.floats.errorbound import bound_certificate, epsilons
from torchlean.runtime.execute import run_graph
from torchlean.verify.network import load_graph

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

F32 = np.float32
N = helper.make_node
ORDERS = ("fwd", "rev", "asc", "desc", "pair")


def _dec(v) -> str:
    """The exact decimal of a binary32/binary64 value."""
    return format(Decimal(float(v)), "f")


def _save(path: Path, nodes, shape, inits, et=TensorProto.FLOAT) -> Path:
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", et, shape)],
                          [helper.make_tensor_value_info("y", et, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


# -- an independent float32 executor with a chosen summation order ----------------------------------

def _sum(t: np.ndarray, order: str, dt) -> np.ndarray:
    """The last axis of ``t`` summed in ``dt``, every partial sum rounded, in ``order``."""
    t = np.asarray(t, dt)
    if order == "pair":
        while t.shape[-1] > 1:
            if t.shape[-1] % 2:
                t = np.concatenate([t, np.zeros(t.shape[:-1] + (1,), dt)], -1)
            t = (t[..., 0::2] + t[..., 1::2]).astype(dt)
        return t[..., 0]
    if order == "rev":
        t = t[..., ::-1]
    elif order in ("asc", "desc"):
        idx = np.argsort(np.abs(t), axis=-1)
        t = np.take_along_axis(t, idx[..., ::-1] if order == "desc" else idx, -1)
    acc = np.zeros(t.shape[:-1], dt)
    for k in range(t.shape[-1]):
        acc = (acc + t[..., k]).astype(dt)
    return acc


def _windows(x, k, s, d, pads, fill):
    """(N, C, H, W) -> (N, C, Ho, Wo, kh*kw): the windows, row-major taps, ONNX pads (t, l, b, r)."""
    n, c, h, w = x.shape
    xp = np.full((n, c, h + pads[0] + pads[2], w + pads[1] + pads[3]), fill, x.dtype)
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w] = x
    ho = (xp.shape[2] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (xp.shape[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    out = np.empty((n, c, ho, wo, k[0] * k[1]), x.dtype)
    for a in range(k[0]):
        for b in range(k[1]):
            out[..., a * k[1] + b] = xp[:, :, a * d[0]:a * d[0] + s[0] * (ho - 1) + 1:s[0],
                                        b * d[1]:b * d[1] + s[1] * (wo - 1) + 1:s[1]]
    return out


def execute(path: Path, x: np.ndarray, dt=F32, order: str = "fwd") -> np.ndarray:
    """The file's only output, flattened: each node evaluated in ``dt`` from the ONNX spec."""
    m = onnx.load(path)
    env = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    env = {k: v.astype(dt) if v.dtype.kind == "f" else v for k, v in env.items()}
    env["x"] = np.asarray(x, dt)
    for n in m.graph.node:
        a = {t.name: helper.get_attribute_value(t) for t in n.attribute}
        ins = [env[i] for i in n.input]
        op = n.op_type
        if op == "Conv":
            X, W = ins[0], ins[1]
            win = _windows(X, W.shape[2:], a.get("strides", [1, 1]), a.get("dilations", [1, 1]),
                           a.get("pads", [0] * 4), 0)
            g = a.get("group", 1)
            cg, og = X.shape[1] // g, W.shape[0] // g
            y = np.empty((X.shape[0], W.shape[0]) + win.shape[2:4], dt)
            for o in range(W.shape[0]):
                xs = win[:, o // og * cg:(o // og + 1) * cg]
                prods = (xs * W[o].reshape(cg, 1, 1, -1)).astype(dt)
                y[:, o] = _sum(np.moveaxis(prods, 1, -2).reshape(*y.shape[:1], *y.shape[2:], -1), order, dt)
                if len(ins) > 2:
                    y[:, o] = (y[:, o] + ins[2][o]).astype(dt)
            r = y
        elif op == "MaxPool":
            r = _windows(ins[0], a["kernel_shape"], a.get("strides", [1, 1]), [1, 1],
                         a.get("pads", [0] * 4), -np.inf).max(-1)
        elif op == "AveragePool":
            k, s, p = a["kernel_shape"], a.get("strides", [1, 1]), a.get("pads", [0] * 4)
            tot = _sum(_windows(ins[0], k, s, [1, 1], p, 0), order, dt)
            cnt = (k[0] * k[1] if a.get("count_include_pad", 0)
                   else _windows(np.ones_like(ins[0]), k, s, [1, 1], p, 0).sum(-1))
            r = (tot / np.asarray(cnt, dt)).astype(dt)
        elif op == "BatchNormalization":
            X, sc, B, mu, var = ins
            cs = (1, -1, 1, 1)
            scale = (F32(1) / np.sqrt((var + dt(a.get("epsilon", 1e-5))).astype(dt))).astype(dt) * sc
            r = (((X - mu.reshape(cs)).astype(dt) * scale.astype(dt).reshape(cs)).astype(dt)
                 + B.reshape(cs)).astype(dt)
        elif op == "Relu":
            r = np.maximum(ins[0], 0)
        elif op in ("Add", "Sub", "Div"):
            f = {"Add": np.add, "Sub": np.subtract, "Div": np.divide}[op]
            r = f(ins[0], ins[1]).astype(dt)
        elif op == "Flatten":
            r = ins[0].reshape(ins[0].shape[0], -1)
        elif op == "Gemm":
            A, B = ins[0], ins[1].T if a.get("transB", 0) else ins[1]
            r = _sum(np.moveaxis((A[:, :, None] * B[None]).astype(dt), 1, -1), order, dt)
            if len(ins) > 2:
                r = (r + ins[2]).astype(dt)
        else:
            raise NotImplementedError(op)
        env[n.output[0]] = r
    return np.asarray(env[m.graph.output[0].name], np.float64).reshape(-1)


# -- the networks -----------------------------------------------------------------------------------

def _nets(tmp_path: Path, rng) -> dict[str, tuple[Path, list[int], float]]:
    """name -> (file, input shape, input scale)."""
    W = lambda *s: rng.standard_normal(s).astype(F32)  # noqa: E731
    out = {}
    out["pads_groups_bn"] = (_save(tmp_path / "a.onnx", [
        N("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 0, 2, 1], strides=[2, 1], dilations=[2, 2], group=2),
        N("Relu", ["c1"], ["r1"]),
        N("AveragePool", ["r1"], ["p1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),  # (padding not counted)
        N("BatchNormalization", ["p1", "g", "be", "mu", "var"], ["bn"], epsilon=1e-3),
        N("Flatten", ["bn"], ["f"]), N("Gemm", ["f", "w2", "b2"], ["y"], transB=1)], [1, 4, 7, 7],
        [("w1", W(6, 2, 3, 3)), ("b1", W(6)), ("g", W(6)), ("be", W(6)), ("mu", W(6)),
         ("var", np.abs(W(6)) + F32(0.1)), ("w2", W(3, 72)), ("b2", W(3))]), [1, 4, 7, 7], 1.0)
    out["norm_pool7_residual"] = (_save(tmp_path / "b.onnx", [
        N("Sub", ["x", "m"], ["s"]), N("Div", ["s", "sd"], ["n"]),
        N("Conv", ["n", "w1", "b1"], ["c1"], pads=[3, 3, 3, 3]), N("Relu", ["c1"], ["r1"]),
        N("AveragePool", ["r1"], ["p1"], kernel_shape=[7, 7], pads=[3, 3, 3, 3], count_include_pad=1),
        N("Add", ["p1", "n"], ["res"]), N("Flatten", ["res"], ["f"]), N("Gemm", ["f", "w2"], ["y"])],
        [1, 2, 7, 7], [("m", F32(0.3)), ("sd", F32(0.7)), ("w1", W(2, 2, 7, 7)), ("b1", W(2)),
                       ("w2", W(98, 2))]), [1, 2, 7, 7], 1.0)
    w = W(16, 1, 3, 3)
    out["cancelling_2p24"] = (_save(tmp_path / "c.onnx", [
        N("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        N("Conv", ["c1", "w2", "b2"], ["c2"], strides=[2, 2]), N("Relu", ["c2"], ["r2"]),
        N("Flatten", ["r2"], ["f"]), N("Gemm", ["f", "w3", "b3"], ["y"], transB=1)], [1, 1, 5, 5],
        [("w1", np.concatenate([w, -w + W(16, 1, 3, 3) * F32(1e-3)]) * F32(1000)),
         ("b1", np.concatenate([np.full(16, 2**24, F32), np.full(16, -2**24, F32)])),
         ("w2", np.sign(W(4, 32, 3, 3))), ("b2", W(4)), ("w3", W(2, 16)), ("b3", W(2))]), [1, 1, 5, 5], 1.0)
    out["maxpool_bn_2p20"] = (_save(tmp_path / "d.onnx", [
        N("MaxPool", ["x"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        N("Conv", ["mp", "w1"], ["c1"], group=3),
        N("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["bn"], epsilon=1e-5),
        N("Relu", ["bn"], ["r"]), N("AveragePool", ["r"], ["p"], kernel_shape=[2, 2]),
        N("Flatten", ["p"], ["y"])], [1, 3, 6, 6],
        [("w1", W(6, 1, 1, 1)), ("g", W(6)), ("be", np.full(6, 2**20, F32) + W(6)),
         ("mu", np.full(6, 3e4, F32)), ("var", np.full(6, 7.0, F32))]), [1, 3, 6, 6], 1e3)
    out["subnormal"] = (_save(tmp_path / "e.onnx", [
        N("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), N("Relu", ["c1"], ["r"]),
        N("AveragePool", ["r"], ["p"], kernel_shape=[3, 3], strides=[3, 3]),
        N("Flatten", ["p"], ["f"]), N("Gemm", ["f", "w2"], ["y"], transB=1)], [1, 2, 6, 6],
        [("w1", W(3, 2, 3, 3) * F32(1e-20)), ("b1", W(3) * F32(1e-21)), ("w2", W(2, 12) * F32(1e-19))]),
        [1, 2, 6, 6], 1.0)
    return out


NAMES = ["pads_groups_bn", "norm_pool7_residual", "cancelling_2p24", "maxpool_bn_2p20", "subnormal"]


def test_the_executor_here_is_the_file():
    """The executor here reads the files as onnxruntime does (graph optimisations off): each of its
    float32 orders within 1e-4 of onnxruntime's float32 run, so they are runs of the file."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(7)
        for name, (path, shape, scale) in _nets(Path(d), rng).items():
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            x = (rng.standard_normal(shape) * scale).astype(F32)
            want = s.run(None, {"x": x})[0].astype(np.float64).reshape(-1)
            for order in ORDERS:
                got = execute(path, x, F32, order)
                assert np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max()), (name, order)


@pytest.mark.parametrize("name", NAMES)
def test_epsilon_covers_every_summation_order(tmp_path, name):
    """Both error columns' epsilon against the float32 error (vs. the float64 run) of the runtime
    and of the executor here in five summation orders, at the corners and 12 binary32 points of a
    point box and a 1e-3-wide box."""
    rng = np.random.default_rng(NAMES.index(name))
    path, shape, scale = _nets(tmp_path, rng)[name]
    g = load_graph(path)
    for width in (0.0, 1e-3):
        c = (rng.standard_normal(shape) * scale).astype(F32)
        lo, hi = (c - F32(width * scale)).astype(F32), (c + F32(width * scale)).astype(F32)
        box = [(Q(float(a)), Q(float(b))) for a, b in zip(lo.ravel(), hi.ravel())]
        pts = [lo, hi] + [np.clip((lo + rng.random(shape) * (hi - lo)).astype(F32), lo, hi)
                          for _ in range(12)]
        for column in ("fast", "exact"):
            if column == "exact" and name == "cancelling_2p24":
                continue  # (the exact column's forms on 32x25 sources: minutes; the fast one covers it)
            eps = np.array([float(e) for e in epsilons(bound_certificate(g, box, "binary32", column=column,
                                                                          ranges="fast"))])
            for x in pts:
                y64 = execute(path, x.astype(np.float64), np.float64)
                runs = [np.asarray(run_graph(g, {"x": x}, dtype=F32)[0], np.float64).reshape(-1)]
                runs += [execute(path, x, F32, o) for o in ORDERS]
                slack = 1e-13 * (np.abs(y64) + 1e-30)  # (the float64 reference's own error)
                for y in runs:
                    assert np.all(np.isfinite(y)), (name, column, width)
                    assert np.all(np.abs(y - y64) <= eps + slack), (name, column, width)


def _point_prop(path: Path, x: np.ndarray, n_out: int, atom: str) -> Path:
    head = "".join(f"(declare-const X_{i} Real)\n" for i in range(x.size)) + "".join(
        f"(declare-const Y_{j} Real)\n" for j in range(n_out))
    box = "".join(f"(assert (>= X_{i} {_dec(v)}))\n(assert (<= X_{i} {_dec(v)}))\n"
                  for i, v in enumerate(x.ravel()))
    path.write_text(head + box + f"(assert {atom})\n")
    return path


def _cli(capsys, *args) -> tuple[int, str, str]:
    from torchlean.verify.__main__ import main

    code = main([str(a) for a in args])
    got = capsys.readouterr()
    return code, got.out, got.err


@pytest.mark.parametrize("name", NAMES)
def test_a_point_the_runtime_violates_is_never_unsat(tmp_path, capsys, name):
    """At a binary32 point x, the output j whose runtime float32 value strays furthest (relative)
    from the real one, the bound at the float32 value on the side the real one misses: the float32
    run meets the unsafe set at x, so ``unsat`` would be false. Control (the pipeline can say
    unsat): the bound moved past the real value by twice the point's epsilon is a checked unsat."""
    rng = np.random.default_rng(10 + NAMES.index(name))
    path, shape, scale = _nets(tmp_path, rng)[name]
    g = load_graph(path)
    x = (rng.standard_normal(shape) * scale).astype(F32)
    y32 = np.asarray(run_graph(g, {"x": x}, dtype=F32)[0], np.float64).reshape(-1)
    y64 = execute(path, x.astype(np.float64), np.float64)
    d = y32 - y64
    j = int(np.argmax(np.abs(d) / (np.abs(y64) + 1e-300)))
    assert d[j] != 0
    rel = ">=" if d[j] > 0 else "<="
    prop = _point_prop(tmp_path / "p.vnnlib", x, y32.size, f"({rel} Y_{j} {_dec(y32[j])})")
    code, out, err = _cli(capsys, path, prop, "--float32", "--timeout", "30")
    assert code == 0 and not out.startswith("unsat"), (name, out)
    box = [(Q(float(v)), Q(float(v))) for v in x.ravel()]
    e = float(epsilons(bound_certificate(g, box, "binary32", ranges="fast", input_exact=False))[j])
    b = y64[j] + (2 * e if d[j] > 0 else -2 * e) + np.sign(d[j]) * 1e-12 * abs(y64[j])
    prop = _point_prop(tmp_path / "p.vnnlib", x, y32.size, f"({rel} Y_{j} {_dec(b)})")
    code, out, err = _cli(capsys, path, prop, "--float32", "--timeout", "30")
    assert code == 0 and out.startswith("unsat (float32-sound, checked)"), (name, out)
    assert "onnxruntime's float32 run" not in err  # (onnxruntime's run agrees: no note)
    for o in ORDERS:  # (and no float32 run here meets that unsafe set: the verdict is true for each)
        y = execute(path, x, F32, o)[j]
        assert (y < b) if rel == ">=" else (y > b)


def _conv_partitioned(tmp_path: Path):
    """A conv -> relu -> avgpool 3x3 -> gemm network on [-4, 4]^4 and the unsafe Y_0 >= top + eps/2
    (top: the sampled real maximum, eps: the whole box's): provable only in parts."""
    from torchlean.certificates.property import Atom, Region, Spec

    rng = np.random.default_rng(0)
    W = lambda *s: rng.standard_normal(s).astype(F32)  # noqa: E731
    path = _save(tmp_path / "part.onnx", [
        N("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]), N("Relu", ["c"], ["r"]),
        N("AveragePool", ["r"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        N("Flatten", ["p"], ["f"]), N("Gemm", ["f", "w2", "b2"], ["y"], transB=1)], [1, 1, 2, 2],
        [("w1", W(8, 1, 2, 2)), ("b1", W(8)), ("w2", W(1, 72)), ("b2", W(1))])
    g = load_graph(path)
    box = [(Q(-4), Q(4))] * 4
    eps = epsilons(bound_certificate(g, box, "binary32", ranges="fast", input_exact=False))[0]
    f = lambda X: execute(path, X.reshape(-1, 1, 2, 2), np.float64)  # noqa: E731
    corners = np.array(np.meshgrid(*[[-4.0, 4.0]] * 4)).reshape(4, -1).T
    c, r = np.zeros(4), 4.0
    for _ in range(5):
        X = np.concatenate([corners, np.clip(c + rng.uniform(-r, r, (4000, 4)), -4, 4)])
        c, r = X[np.argmax(f(X))], r / 6
    top = Q(float(f(c[None])[0]))
    bd = Decimal(float(top + eps / 2)).quantize(Decimal("1e-12"), rounding="ROUND_CEILING")
    bound = Q(str(bd))
    spec = Spec(4, 1, (Region((Q(-4),) * 4, (Q(4),) * 4, ((Atom((Q(-1),), -bound, False),),)),))
    head = "".join(f"(declare-const X_{i} Real)\n" for i in range(4)) + "(declare-const Y_0 Real)\n"
    prop = tmp_path / "part.vnnlib"
    region = "".join(f"(assert (>= X_{i} -4))\n(assert (<= X_{i} 4))\n" for i in range(4))
    prop.write_text(head + region + f"(assert (>= Y_0 {bd}))\n")
    return path, prop, g, spec, eps


def test_partitioned_conv_certificate_mutations(tmp_path, capsys):
    """The CLI's partitioned certificate on a conv net (``float_bab``: input splits, leaves sharing
    the root's errorbound and a walked one), replayed by ``verify check``; then: a leaf given the
    errorbound of a box that misses it, leaves given the root's larger epsilon (their real proofs
    were for the smaller one), one leaf's epsilon zeroed, the certificate checked against the
    network with one weight an ulp off, the shared IR swapped for that network's, and against the
    same network stored as float64: each refused."""
    from torchlean.certificates.core import box_leaves
    from torchlean.certificates.errorbound import model_id
    from torchlean.certificates.float_vnn import check_vnn_float, grow, restrict
    from torchlean.certificates.lower import lower
    from torchlean.verify.bab import verify

    path, prop, g, spec, eps = _conv_partitioned(tmp_path)
    cert_path = tmp_path / "c.json"
    code, out, err = _cli(capsys, path, prop, "--float32", "--timeout", "60", "--cert", cert_path)
    assert out.startswith("unsat (float32-sound, checked)"), out
    cert = json.loads(cert_path.read_text())
    assert "parts" in cert and "graph" in cert
    code, out, err = _cli(capsys, "check", cert_path, path, prop, "--float32")
    assert code == 0 and out.startswith("accepted: unsat (binary32-sound)"), out
    net, mid = lower(g.to_dict()), model_id(g.to_dict())

    def ok(c, n=net, m=mid):
        return check_vnn_float(c, n, spec, model=m).ok

    assert ok(cert)
    root = [(Q(a), Q(b)) for a, b in cert["box"]]
    ebs = {json.dumps(leaf["errorbound"], sort_keys=True): leaf["errorbound"]
           for leaf, _ in box_leaves(cert["parts"], root)}
    assert len(ebs) >= 2  # (the root's and at least one walked box's)
    ebox = lambda eb: [(Q(a), Q(b)) for a, b in eb["statement"]["input_box"]]  # noqa: E731
    small = min(ebs.values(), key=lambda eb: sum(b - a for a, b in ebox(eb)))
    big = max(ebs.values(), key=lambda eb: sum(b - a for a, b in ebox(eb)))
    assert max(epsilons(small)) < max(epsilons(big)) == eps
    # a leaf given the errorbound of a box that misses it, with a real proof redone for the
    # leaf's property grown by that (smaller) epsilon: only the box test stands in the way
    bad = copy.deepcopy(cert)
    leaf, lbox = next((lf, b) for lf, b in box_leaves(bad["parts"], root)
                      if not all(A <= a and c <= C for (a, c), (A, C) in zip(b, ebox(small))))
    leaf["errorbound"] = copy.deepcopy(small)
    res = verify(net, grow(restrict(spec, lbox), epsilons(small)), timeout=30)
    assert res.verdict == "unsat"
    leaf["real"] = res.cert
    v = check_vnn_float(bad, net, spec, model=mid)
    assert not v.ok and "does not cover" in v.reason, v.reason
    bad = copy.deepcopy(cert)
    for leaf, _ in box_leaves(bad["parts"], root):
        if leaf["errorbound"] == small:
            leaf["errorbound"] = copy.deepcopy(big)
    assert not ok(bad)
    bad = copy.deepcopy(cert)
    next(box_leaves(bad["parts"], root))[0]["errorbound"]["statement"]["epsilon"] = ["0"]
    assert not ok(bad)
    m = onnx.load(path)
    for i in m.graph.initializer:
        if i.name == "w1":
            a = numpy_helper.to_array(i).copy()
            a.flat[0] = np.nextafter(a.flat[0], F32(np.inf))
            i.CopyFrom(numpy_helper.from_array(a, "w1"))
    onnx.save(m, tmp_path / "ulp.onnx")
    g2 = load_graph(tmp_path / "ulp.onnx")
    assert not ok(cert, lower(g2.to_dict()), model_id(g2.to_dict()))
    bad = copy.deepcopy(cert)
    bad["graph"] = g2.to_dict()
    assert not ok(bad)
    m = onnx.load(path)  # the same network as a binary64 file (every weight the same value)
    for i in m.graph.initializer:
        i.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(i).astype(np.float64), i.name))
    for v in list(m.graph.input) + list(m.graph.output):
        v.type.tensor_type.elem_type = TensorProto.DOUBLE
    onnx.save(m, tmp_path / "f64.onnx")
    for other in ("ulp.onnx", "f64.onnx"):
        code, out, err = _cli(capsys, "check", cert_path, tmp_path / other, prop, "--float32")
        assert code == 1 and out.startswith("rejected"), (other, out)


# -- scope: onnxruntime's float32 program is not the runtime's (documented) ------------------------

def _ort(path: Path, x: np.ndarray) -> float:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float(s.run(None, {"x": x})[0].reshape(-1)[0])


def _scope(tmp_path, capsys, path: Path, x: np.ndarray, atom: str, bound: float, above: bool):
    """The CLI's checked unsat at the point x, right for the runtime's float32 run and the reals,
    while onnxruntime's run of the same file meets the unsafe set (``above``: Y_0 >= bound)."""
    prop = _point_prop(tmp_path / "s.vnnlib", x, 1, atom)
    code, out, err = _cli(capsys, path, prop, "--float32", "--timeout", "30")
    assert code == 0 and out.startswith("unsat (float32-sound, checked)"), out
    # the CLI says so (``float32.runtime_meets``: onnxruntime run at the region's binary32 points)
    assert "note: onnxruntime's float32 run of the file meets the unsafe set" in err, err
    g = load_graph(path)
    y32 = float(np.asarray(run_graph(g, {"x": x}, dtype=F32)[0]).reshape(-1)[0])
    y64 = float(execute(path, x.astype(np.float64), np.float64)[0])
    yo = _ort(path, x)
    if above:
        assert y32 < bound and y64 < bound and yo >= bound, (y32, y64, yo)
    else:
        assert y32 > bound and y64 > bound and yo <= bound, (y32, y64, yo)
    return y64, yo


def test_scope_onnxruntime_folds_batch_norm(tmp_path, capsys):
    """y = BatchNormalization(x), mean 8192.5, var 3, scale 1.7, B 0.25, at x = 8193.015625:
    the runtime computes (x - mean) * s + B (x - mean exact), onnxruntime x * s + (B - mean * s),
    2.6e-4 off (epsilon 4.2e-7; the import cross-check allows 1e-3)."""
    path = _save(tmp_path / "bn.onnx", [N("BatchNormalization", ["x", "g", "be", "mu", "var"], ["y"])],
                 [1, 1, 1, 1], [("g", np.array([1.7], F32)), ("be", np.array([0.25], F32)),
                                ("mu", np.array([8192.5], F32)), ("var", np.array([3.0], F32))])
    x = np.full((1, 1, 1, 1), 8193.015625, F32)
    yo = _ort(path, x)
    y64, _ = _scope(tmp_path, capsys, path, x, f"(>= Y_0 {_dec(yo)})", yo, above=True)
    assert 1e-4 < yo - y64 < 1e-3


def test_scope_onnxruntime_accumulates_gemm_blocks_into_the_bias(tmp_path, capsys):
    """y = Gemm(x, w, C), 2048 inputs all 1, w 1 at every 256th entry, C = 2^24: the real and the
    runtime's float32 value are 2^24 + 8 (the dot product 8, then one exact add); onnxruntime adds
    each block's 1 to the bias (2^24 + 1 rounds to 2^24, eight times): 2^24. Unsafe Y_0 <= 2^24 + 4."""
    w = np.zeros((2048, 1), F32)
    w[::256] = 1
    path = _save(tmp_path / "gemm.onnx", [N("Gemm", ["x", "w", "b"], ["y"])], [1, 2048],
                 [("w", w), ("b", np.array([2**24], F32))])
    x = np.ones((1, 2048), F32)
    y64, yo = _scope(tmp_path, capsys, path, x, f"(<= Y_0 {2**24 + 4})", 2**24 + 4, above=False)
    assert y64 == 2**24 + 8 and yo == 2**24


def test_runtime_meets_points_are_binary32_points_of_the_region():
    """``runtime_meets`` runs onnxruntime only at binary32 points inside the region (exactly, strict
    ends strictly): none for X_0 = 0.1 (no binary32 value), the centre and both ends of a region
    whose ends are binary32, the ends rounded inward where they are not; no session, no note."""
    from torchlean.certificates.property import Region
    from torchlean.verify.float32 import _binary32_points, runtime_meets

    tenth = Q("0.1")
    assert _binary32_points(Region((tenth,), (tenth,), ())) == []
    pts = _binary32_points(Region((Q(1),), (Q(3),), ()))
    assert [float(p[0]) for p in pts] == [2.0, 1.0, 3.0]
    r = Region((tenth,), (Q("0.3"),), ())
    for p in _binary32_points(r):
        assert p.dtype == F32 and tenth <= Q(float(p[0])) <= Q("0.3")
    assert len(_binary32_points(r)) == 3
    open_r = Region((Q(1),), (Q(3),), (), (True,), (True,))
    assert [float(p[0]) for p in _binary32_points(open_r)] == [2.0]

    class Unchecked:  # (a target no ``load_instance`` cross-checked: no session, nothing run)
        path, runtime_checked = "x.onnx", False

    assert runtime_meets(Unchecked(), None) is None


def _point_eps(g, x: np.ndarray, column: str) -> np.ndarray:
    box = [(Q(float(v)), Q(float(v))) for v in x.ravel()]
    return np.array([float(e) for e in epsilons(bound_certificate(g, box, "binary32", column=column,
                                                                  ranges="fast"))])


def test_epsilon_at_sharp_points(tmp_path):
    """Points where the float32 error nears its worst case, so a column that dropped a term would
    be caught: (1) a 1x1 conv summing 1 and 63 terms 2^-24 (each partial sum a tie that rounds back
    to 1 in the forward order: 63 u off, gamma_64 S allows ~64 u); (2) a one-channel batch norm at
    the (var, scale) among 20,000 whose binary32 scale 1/sqrt(var + eps) * w strays furthest (2.4 u)
    and the x in [1, 2) whose product's rounding adds to it (3.3 u in all)."""
    n = 64
    conv = _save(tmp_path / "tie.onnx", [N("Conv", ["x", "w"], ["y"])], [1, n, 1, 1],
                 [("w", np.ones((1, n, 1, 1), F32))])
    xt = np.full((1, n, 1, 1), 2.0**-24, F32)
    xt[0, 0] = 1
    rng = np.random.default_rng(0)
    var, w = rng.uniform(0.5, 4, 20000).astype(F32), rng.uniform(0.5, 2, 20000).astype(F32)
    s32 = (F32(1) / np.sqrt((var + F32(1e-5)).astype(F32))).astype(F32) * w
    s64 = w.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(F32(1e-5)))
    i = int(np.argmax(np.abs(s32 - s64) / s64))
    xs = (F32(1) + np.arange(1, 2**20).astype(F32) * F32(2**-23)).astype(F32)
    rel = ((xs * s32[i]).astype(np.float64) - xs * s64[i]) / (xs * s64[i])
    xb = np.full((1, 1, 1, 1), xs[int(np.argmax(rel * np.sign(s32[i] - s64[i])))], F32)
    bn = _save(tmp_path / "bn1.onnx", [N("BatchNormalization", ["x", "g", "be", "mu", "var"], ["y"])],
               [1, 1, 1, 1], [("g", w[i:i + 1]), ("be", np.zeros(1, F32)), ("mu", np.zeros(1, F32)),
                              ("var", var[i:i + 1])])
    for path, x, least in ((conv, xt, 60 * 2.0**-24), (bn, xb, 3.2 * 2.0**-24)):
        g = load_graph(path)
        y64 = execute(path, x.astype(np.float64), np.float64)
        runs = [execute(path, x, F32, o) for o in ORDERS]
        runs.append(np.asarray(run_graph(g, {"x": x}, dtype=F32)[0], np.float64).reshape(-1))
        err = max(float(np.max(np.abs(y - y64))) for y in runs)
        assert err >= least * float(np.abs(y64).max())  # (the point is as sharp as claimed)
        for column in ("fast", "exact"):
            assert np.all(err <= _point_eps(g, x, column)), (path.name, column)


def test_two_point_regions_on_a_conv_chain_are_never_unsat(tmp_path, capsys):
    """The partitioned test's conv net (4 inputs: the input-split chain path, ``float_bab``, the
    regions first cut apart by ``_separating``): two point regions 3 apart, the bound at the
    runtime's float32 output at the first on the side the real one misses (met there, with
    equality): never unsat, at the points and on 1e-30 boxes around them."""
    path, _, g, _, _ = _conv_partitioned(tmp_path)
    rng = np.random.default_rng(3)
    head = "".join(f"(declare-const X_{i} Real)\n" for i in range(4)) + "(declare-const Y_0 Real)\n"
    done = 0
    while done < 2:
        x = rng.uniform(-4, 1, (1, 1, 2, 2)).astype(F32)
        y32 = float(np.asarray(run_graph(g, {"x": x}, dtype=F32)[0]).ravel()[0])
        y64 = float(execute(path, x.astype(np.float64), np.float64)[0])
        if y32 == y64:
            continue
        done += 1
        rel = ">=" if y32 > y64 else "<="
        for w in (Decimal(0), Decimal("1e-30")):
            def box(z):
                return " ".join(f"(>= X_{i} {Decimal(_dec(v)) - w}) (<= X_{i} {Decimal(_dec(v)) + w})"
                                for i, v in enumerate(z.ravel()))
            out = f"({rel} Y_0 {_dec(y32)})"
            prop = tmp_path / "two.vnnlib"
            prop.write_text(head + f"(assert (or (and {box(x)} {out}) (and {box(x + F32(3))} {out})))\n")
            code, stdout, _ = _cli(capsys, path, prop, "--float32", "--timeout", "20")
            assert code == 0 and not stdout.startswith("unsat"), stdout
