"""audit28: the float-sound verdicts (``verify NET PROP --float32``, ``certificates/float_vnn.py``
and the error column) attacked with crafted ONNX + VNN-LIB pairs on networks, properties and
boxes that are odd for the float side.

References, independent of the checker: the runtime's own float32 run of the file at points of the
box (numpy float32 kernels, what a ``--float32`` verdict is about), a float64 run as the real value
(its error ~1e-16 relative, far below the float32 errors compared), exact Fractions, and numpy
float32 arithmetic written here.

No hole found in the checker: no checked ``unsat (float32-sound)`` whose box holds a binary32 point
the runtime's float32 run puts in the unsafe set (``test_a_point_the_runtime_violates_is_never_unsat``
and, for the epsilon every such verdict rests on, ``test_epsilon_covers_the_runtimes_error``).

Found and fixed (untrusted, ``floats/emulate.py``): a false ``sat (float32, emulated)``. y =
softplus(x) on [-88, -80], unsafe ``Y_0 <= 0``: printed sat at X_0 = -84 with Y_0 = 0.0, where every
binary32 output is positive (the runtime's, onnxruntime's and the correctly rounded one); the
emulator evaluated log(1 + e^x) at 3p + 40 bits, where 1 + e^-84 is 1
(``test_no_float32_sat_where_every_binary32_softplus_is_positive``,
``test_emulated_softplus_is_correctly_rounded_where_it_is_tiny``).

Found and fixed (untrusted, ``verify/``, ``floats/network.py``): three ways ``--float32`` lost a
binary32 counterexample that exists, or crashed, where the tie between the float output and the
bound is the whole point of a float-sound verdict (each test fails on the old code):
- a network with two output tensors: the candidate filter ran only the first output
  (``run_float``), multiplied mismatched shapes, and the CLI said "no float32 error bound for this
  network on this box" (exit 2) where the float32 run meets the unsafe set;
- a float32 output landing exactly on the bound (y = x·float32(1/3) at x = 3 is 1.0 in binary32,
  1.00000003 in the reals): the original property holds in the reals, so the input-split float
  search never falsified anything, bisected the box to float64 width and answered "timeout" at
  once; now an open box holding one binary32 point tries that point;
- two point regions far apart on a non-chain network: the bisection halved the box around each
  point without ever reaching it until Python's recursion limit ("input nested too deeply", exit
  2); it now halves the part's own hull and stops at a point.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction as Q
from pathlib import Path

import numpy as np
import pytest

from torchlean.floats.errorbound import bound_certificate, epsilons
from torchlean.runtime.execute import run_graph
from torchlean.verify.network import load_graph

onnx = pytest.importorskip("onnx")

F32 = np.float32
THIRD = F32(1 / 3)


def _dec(v) -> str:
    """The exact decimal of a binary32/binary64 value (never a shortest repr)."""
    return format(Decimal(float(v)), "f")


def _write(path: Path, nodes, shape, outs, inits, et=None, opset=13) -> Path:
    from onnx import TensorProto

    from tests.test_onnx_exact import _model

    m = _model(nodes, [("x", shape)], outs, inits, opset, TensorProto.FLOAT if et is None else et)
    path.write_bytes(m.SerializeToString())
    return path


def _prop(path: Path, n_in: int, n_out: int, boxes: list[list[tuple[str, str]]], out: str) -> Path:
    """One region per box (an ``or`` of them when several), all with the output constraint ``out``."""
    head = "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in)) + "".join(
        f"(declare-const Y_{i} Real)\n" for i in range(n_out))

    def box(b):
        return " ".join(f"(>= X_{i} {lo}) (<= X_{i} {hi})" for i, (lo, hi) in enumerate(b))

    if len(boxes) == 1:
        path.write_text(head + f"(assert (and {box(boxes[0])}))\n(assert {out})\n")
    else:
        path.write_text(head + "(assert (or " + " ".join(f"(and {box(b)} {out})" for b in boxes) + "))\n")
    return path


def _cli(capsys, *args) -> tuple[int, str]:
    from torchlean.verify.__main__ import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().out


def _printed_x(stdout: str) -> list[Q]:
    return [Q(Decimal(line.split()[1].rstrip(")"))) for line in stdout.splitlines() if "(X_" in line]


def _third(tmp_path: Path, outs=("y",)) -> Path:
    from onnx import helper

    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    inits = [("w", np.full((1, 1), THIRD))]
    if len(outs) == 2:  # a second output tensor listed first: Y_0 is z = x·2, Y_1 is y = x·float32(1/3)
        nodes.append(helper.make_node("MatMul", ["x", "two"], ["z"]))
        inits.append(("two", np.full((1, 1), 2, F32)))
    return _write(tmp_path / "third.onnx", nodes, [1, 1], outs, inits)


def test_the_tie_is_a_float32_counterexample_only():
    """The reference facts the tests below rest on: at x = 3 the binary32 product is exactly 1 (and
    -1 at -3), the real one above 1; at the next binary32 above 3 it is 1 + 2^-23, the real one
    below that."""
    assert F32(3) * THIRD == F32(1) and F32(-3) * THIRD == F32(-1)
    assert 3 * Q(float(THIRD)) > 1
    x1 = np.nextafter(F32(3), F32(4))
    assert x1 * THIRD == F32(1 + 2**-23) and Q(float(x1)) * Q(float(THIRD)) < Q(1) + Q(1, 2**23)


@pytest.mark.parametrize("lo, hi, out, x", [
    ("3", "3", "(<= Y_0 1)", Q(3)),
    ("-3", "-3", "(>= Y_0 -1)", Q(-3)),
    ("2.9999999", "3.0000001", "(<= Y_0 1)", Q(3)),  # (3 is the only binary32 of this box)
    ("3", "3.0000004", f"(>= Y_0 {_dec(1 + 2**-23)})", Q(float(np.nextafter(F32(3), F32(4))))),
    ("3", "3", "(or (and (<= Y_0 1)) (and (>= Y_0 7)))", Q(3)),
])
def test_a_float32_output_on_the_bound_is_found(tmp_path, capsys, lo, hi, out, x):
    """The float32 run meets the bound exactly where the real network misses it: the float verdict
    is sat at that binary32 point (was "timeout" after a fraction of a second: the real property
    holds, so nothing was falsified, and the box was bisected to float64 width)."""
    net = _third(tmp_path)
    prop = _prop(tmp_path / "p.vnnlib", 1, 1, [[(lo, hi)]], out)
    code, stdout = _cli(capsys, net, prop, "--float32", "--timeout", "30")
    assert code == 0 and stdout.startswith("sat (float32"), stdout
    (px,) = _printed_x(stdout)
    assert px == x and Q(lo) <= px <= Q(hi)
    y = F32(float(px)) * THIRD  # the runtime's product (one rounding: every executor agrees)
    b = Q(out.split()[-1].rstrip(")")) if "or" not in out else Q(1)
    assert (Q(float(y)) <= b) if "<=" in out else (Q(float(y)) >= b)
    if lo == hi:  # a point: the reals have no counterexample (wider boxes reach the bound in the reals)
        code, stdout = _cli(capsys, net, prop, "--timeout", "30")
        assert code == 0 and stdout.startswith("unsat"), stdout


def test_a_strict_bound_the_float_output_only_touches_is_not_sat(tmp_path, capsys):
    """``Y_0 < 1`` at x = 3: the binary32 output is 1, not below 1, and the real one is above it;
    no binary32 point of the box is a counterexample, so sat would be false."""
    net = _third(tmp_path)
    for lo, hi in (("3", "3"), ("2.9999999", "3")):
        prop = _prop(tmp_path / "p.vnnlib", 1, 1, [[(lo, hi)]], "(< Y_0 1)")
        code, stdout = _cli(capsys, net, prop, "--float32", "--timeout", "30")
        assert code == 0 and not stdout.startswith("sat"), stdout


def test_two_output_tensors_float32_counterexample(tmp_path, capsys):
    """Y_1 (the second output tensor) is x·float32(1/3): at x = 3 the binary32 run gives exactly 1,
    a counterexample to the unsafe ``Y_1 <= 1`` that the reals do not have (was exit 2: "no float32
    error bound for this network on this box: matmul: ... mismatch")."""
    net = _third(tmp_path, outs=("z", "y"))
    g = load_graph(net)
    ys = run_graph(g, {"x": np.full((1, 1), 3, F32)}, dtype=F32)
    assert [float(np.asarray(o).reshape(-1)[0]) for o in ys] == [6.0, 1.0]
    for lo, hi in (("3", "3"), ("2", "4")):
        prop = _prop(tmp_path / "p.vnnlib", 1, 2, [[(lo, hi)]], "(and (<= Y_1 1) (>= Y_0 5.5))")
        code, stdout = _cli(capsys, net, prop, "--float32", "--timeout", "30")
        assert code == 0 and stdout.startswith("sat (float32"), stdout
        (px,) = _printed_x(stdout)
        x = F32(float(px))
        assert Q(float(x)) == px and Q(lo) <= px <= Q(hi)
        assert Q(float(x * THIRD)) <= 1 and Q(float(x * F32(2))) >= Q("5.5")


def test_two_point_regions_on_a_non_chain_network(tmp_path, capsys):
    """Two point regions 2 apart on y = sigmoid(conv1x1(x)) (NCHW, 8 inputs, 12 outputs): the
    float loop answers (was exit 2, "input nested too deeply": the box was halved around each
    point forever, never reaching it). With the bound at the runtime's own float32 output at the
    first point (met with equality there) the answer is not unsat; with the bound 1e-3 beyond it
    on the other side (no binary32 point of either region meets it: the runtime's outputs at both,
    checked here) any answer but sat is right, and unsat is found (each point's own epsilon)."""
    from onnx import helper

    rng = np.random.default_rng(5)
    net = _write(tmp_path / "cv.onnx", [helper.make_node("Conv", ["x", "w", "b"], ["c"]),
                                         helper.make_node("Sigmoid", ["c"], ["y"])], [1, 2, 2, 2], ("y",),
                 [("w", rng.standard_normal((3, 2, 1, 1)).astype(F32)),
                  ("b", rng.standard_normal(3).astype(F32))])
    g = load_graph(net)
    x0 = rng.standard_normal((1, 2, 2, 2)).astype(F32)
    x1 = x0 + F32(2)
    y0, y1 = (np.asarray(run_graph(g, {"x": x}, dtype=F32)[0], np.float64).reshape(-1) for x in (x0, x1))
    boxes = [[(_dec(v), _dec(v)) for v in x.reshape(-1)] for x in (x0, x1)]
    j = int(np.argmax(np.minimum(np.minimum(y0, y1), 1 - np.maximum(y0, y1))))  # (neither saturated)
    assert 0.05 < y0[j] < 0.95 and 0.05 < y1[j] < 0.95
    for bound, ok in ((y0[j], ("sat", "unknown", "timeout")), (y0[j] - 1e-3, ("unsat",))):
        assert (bound < y0[j] and bound < y1[j]) or ok != ("unsat",)
        prop = _prop(tmp_path / "p.vnnlib", 8, 12, boxes, f"(<= Y_{j} {_dec(bound)})")
        code, stdout = _cli(capsys, net, prop, "--float32", "--timeout", "20")
        assert code == 0 and stdout.split()[0] in ok, stdout


def _nets(tmp_path: Path, rng) -> list[tuple[Path, list[int]]]:
    """Networks with odd shapes: a transposed (1, 2, 2) output, NCHW conv + sigmoid, a batch of 2
    with softmax across the batch axis, a binary64 model (weights that are not binary32 values)."""
    from onnx import TensorProto, helper

    W = lambda *s: rng.standard_normal(s).astype(F32)  # noqa: E731
    out = [(_write(tmp_path / "tr.onnx", [
        helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Tanh", ["a"], ["t"]), helper.make_node("Mul", ["t", "a"], ["u"]),
        helper.make_node("Reshape", ["u", "s"], ["r"]),
        helper.make_node("Transpose", ["r"], ["y"], perm=[0, 2, 1])], [1, 3], ("y",),
        [("w", W(3, 4) * np.array([[1, 1000, 1, 1000]], F32)), ("b", W(4)),
         ("s", np.array([1, 2, 2], np.int64))]), [1, 3])]
    out.append((_write(tmp_path / "cv.onnx", [helper.make_node("Conv", ["x", "w", "b"], ["c"]),
                                               helper.make_node("Sigmoid", ["c"], ["y"])],
                       [1, 2, 2, 2], ("y",), [("w", W(3, 2, 1, 1)), ("b", W(3))]), [1, 2, 2, 2]))
    out.append((_write(tmp_path / "bt.onnx", [helper.make_node("MatMul", ["x", "w"], ["a"]),
                                               helper.make_node("Softmax", ["a"], ["y"], axis=0)],
                       [2, 2], ("y",), [("w", W(2, 3) * F32(5))]), [2, 2]))
    out.append((_write(tmp_path / "db.onnx", [helper.make_node("MatMul", ["x", "w"], ["a"]),
                                               helper.make_node("Tanh", ["a"], ["y"])],
                       [1, 2], ("y",), [("w", rng.standard_normal((2, 2)))], et=TensorProto.DOUBLE), [1, 2]))
    return out


def test_a_point_the_runtime_violates_is_never_unsat(tmp_path, capsys):
    """At a binary32 point x, the output whose float32 value strays furthest from the real one
    (float64 run), and the bound at the float32 value on the side the real one misses: the float32
    run meets the unsafe set at x, so a float-sound unsat is false. Point box and a 1e-30 box around
    x (decimals, no other binary32 in it), with and without a disjunct that cannot hold."""
    rng = np.random.default_rng(0)
    for net, shape in _nets(tmp_path, rng):
        g = load_graph(net)
        x = rng.standard_normal(shape).astype(F32)
        y32, y64 = (np.concatenate([np.asarray(o, np.float64).reshape(-1) for o in
                                    run_graph(g, {"x": x.astype(t)}, dtype=t)]) for t in (F32, np.float64))
        d = y32 - y64
        j = int(np.argmax(np.abs(d) / (np.abs(y64) + 1e-30)))
        assert d[j] != 0
        rel = ">=" if d[j] > 0 else "<="
        xs = [Decimal(_dec(v)) for v in x.reshape(-1)]
        k = (j + 1) % y32.size
        atom = f"({rel} Y_{j} {_dec(y32[j])})"
        for width, out in ((0, atom), (Decimal("1e-30"), f"(or (and {atom}) (and (>= Y_{k} 1e30)))")):
            box = [(str(v - width), str(v + width)) for v in xs]
            prop = _prop(tmp_path / "p.vnnlib", x.size, y32.size, [box], out)
            code, stdout = _cli(capsys, net, prop, "--float32", "--timeout", "20")
            assert code == 0 and not stdout.startswith("unsat"), (net.name, stdout)


def _mlp(tmp_path: Path, rng, kind: str) -> Path:
    from onnx import helper

    W = lambda *s: rng.standard_normal(s).astype(F32)  # noqa: E731
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["h"])]
    inits = [("w", W(2, 3)), ("b", W(3))]
    if kind == "Softmax":
        nodes.append(helper.make_node("Softmax", ["h"], ["y"], axis=-1))
    elif kind == "LayerNormalization":
        nodes.append(helper.make_node(kind, ["h", "g", "be"], ["y"], axis=-1, epsilon=1e-5))
        inits += [("g", W(3)), ("be", W(3))]
    else:
        nodes += [helper.make_node(kind, ["h"], ["a"]), helper.make_node("MatMul", ["a", "v"], ["y"])]
        inits.append(("v", W(3, 2)))
    return _write(tmp_path / f"{kind}.onnx", nodes, [1, 2], ("y",), inits, opset=17)


@pytest.mark.parametrize("kind", ["Relu", "Tanh", "Sigmoid", "Softplus", "Exp", "Abs", "Softmax",
                                  "LayerNormalization"])
def test_epsilon_covers_the_runtimes_error(tmp_path, kind):
    """The epsilon (both columns) is at least the runtime's float32 error against the real value
    (float64 run) at the box's corners and 300 binary32 points, on boxes from a point to width 2."""
    rng = np.random.default_rng(hash(kind) % 2**32)
    g = load_graph(_mlp(tmp_path, rng, kind))
    for width in (0.0, 1e-3, 1.0):
        c = rng.standard_normal(2).astype(F32)
        lo, hi = c - F32(width), c + F32(width)
        box = [(Q(float(a)), Q(float(b))) for a, b in zip(lo, hi)]
        pts = [lo, hi, np.array([lo[0], hi[1]], F32)] + [
            np.clip((lo + rng.random(2) * (hi - lo)).astype(F32), lo, hi) for _ in range(300)]
        for column in ("fast", "exact"):
            eps = [Q(e) for e in epsilons(bound_certificate(g, box, "binary32", column=column,
                                                            ranges="fast" if column == "fast" else None))]
            for x in pts:
                x = x.reshape(1, 2)
                y32 = np.asarray(run_graph(g, {"x": x}, dtype=F32)[0], np.float64).reshape(-1)
                y64 = np.asarray(run_graph(g, {"x": x.astype(np.float64)}, dtype=np.float64)[0]).reshape(-1)
                for a, b, e in zip(y32, y64, eps):
                    slack = Q(1e-14) * (abs(Q(float(b))) + 1)  # (the float64 reference's own error)
                    assert math.isfinite(a) and abs(Q(float(a)) - Q(float(b))) <= e + slack


@pytest.mark.parametrize("op", ["Tanh", "Exp", "Sigmoid", "Log", "Erf", "Softplus"])
def test_one_kernel_epsilon_at_binary32_points(tmp_path, op):
    """y = op(x) on point boxes: nothing propagates, so epsilon is the kernel's own allowance (the
    runtime's 4 ulp) and must cover the runtime's float32 result against the float64 one at 40
    binary32 points, among them audit15's tanh witness (numpy's float32 tanh 1.34 ulp off)."""
    from onnx import helper

    g = load_graph(_write(tmp_path / f"{op}.onnx", [helper.make_node(op, ["x"], ["y"])], [1, 1], ("y",), []))
    rng = np.random.default_rng(1)
    low = 0.05 if op == "Log" else -6
    xs = np.concatenate([[F32(0.5189095735549927)], rng.uniform(low, 6, 39).astype(F32)])
    for column in ("fast", "exact"):
        for x in xs:
            x = F32(x)
            box = [(Q(float(x)), Q(float(x)))]
            (e,) = epsilons(bound_certificate(g, box, "binary32", column=column,
                                              ranges="fast" if column == "fast" else None))
            y32, y64 = (float(np.asarray(run_graph(g, {"x": np.full((1, 1), x, t)}, dtype=t)[0]).ravel()[0])
                        for t in (F32, np.float64))
            assert abs(Q(y32) - Q(y64)) <= Q(e) + Q(1e-15) * (abs(Q(y64)) + 1), (op, column, float(x))


def _cr32(r) -> float:
    """The binary32 value nearest to the mpmath number r (ties: the even significand)."""
    import mpmath

    c = F32(float(r))
    cands = sorted({c, np.nextafter(c, F32(-np.inf)), np.nextafter(c, F32(np.inf))}, key=float)
    best = min(abs(mpmath.mpf(float(v)) - r) for v in cands)
    near = [v for v in cands if abs(mpmath.mpf(float(v)) - r) == best]
    return float(near[0] if len(near) == 1 else [v for v in near if not v.view(np.int32) & 1][0])


def test_emulated_softplus_is_correctly_rounded_where_it_is_tiny():
    """The emulator's softplus at x in [-104, -60] against log1p(e^x) at 400 bits (mpmath's log1p:
    no cancellation), rounded to binary32 here: equal bit for bit. Its spec formula log(1 + e^x) at
    3p + 40 = 112 bits read 1 + e^-87.5 as 1, so the emulated binary32 softplus(-87.5) was 0 where
    the value is 9.98e-39 (numpy's and onnxruntime's float32 runs agree with the latter)."""
    import mpmath

    from torchlean.floats.emulate import Emulator

    em = Emulator("binary32")
    rng = np.random.default_rng(2)
    xs = [F32(-87.5), F32(-84), F32(-100), F32(-103.9)] + list(rng.uniform(-104, -60, 60).astype(F32))
    with mpmath.workprec(400):
        for x in xs:
            want = _cr32(mpmath.log1p(mpmath.exp(mpmath.mpf(float(x)))))
            assert em.transcendental("softplus", float(x), {}) == want, float(x)
    assert _cr32(mpmath.mpf("9.982350930569248e-39")) > 0


def test_no_float32_sat_where_every_binary32_softplus_is_positive(tmp_path, capsys):
    """y = softplus(x) on [-88, -80] with unsafe ``Y_0 <= 0``: every binary32 output there is
    positive (numpy's float32 run at every 1,000th binary32 of the box and its ends; the correctly
    rounded value is at least softplus(-88) > 2^-149), yet ``--float32`` printed
    ``sat (float32, emulated)`` at X_0 = -84 with Y_0 = 0.0 (the emulator's cancellation). With the
    bound at the float32 value of softplus(-87.5) itself, sat at that point."""
    from onnx import helper

    net = _write(tmp_path / "sp.onnx", [helper.make_node("Softplus", ["x"], ["y"])], [1, 1], ("y",), [])
    g = load_graph(net)
    lo, hi = np.array([-88, -80], F32).view(np.int32)
    xs = np.concatenate([np.arange(hi, lo, 1000, dtype=np.int32), [lo]]).view(F32)
    ys = np.array([run_graph(g, {"x": np.full((1, 1), x)}, dtype=F32)[0].ravel()[0] for x in xs])
    assert ys.min() > 0
    prop = _prop(tmp_path / "p.vnnlib", 1, 1, [[("-88", "-80")]], "(<= Y_0 0)")
    code, stdout = _cli(capsys, net, prop, "--float32", "--timeout", "20")
    assert code == 0 and not stdout.startswith("sat"), stdout
    y = float(run_graph(g, {"x": np.full((1, 1), F32(-87.5))}, dtype=F32)[0].ravel()[0])
    prop = _prop(tmp_path / "p.vnnlib", 1, 1, [[("-87.5", "-87.5")]], f"(<= Y_0 {_dec(y)})")
    code, stdout = _cli(capsys, net, prop, "--float32", "--timeout", "20")
    assert code == 0 and stdout.startswith("sat (float32"), stdout


def test_a_region_with_no_binary32_input_is_noted(tmp_path):
    """audit28 noticed: the float-sound claim was about binary32 inputs, so a point region such as
    ``X_0 = 0.1`` (no binary32 value) made a float32 ``unsat`` vacuous while the real network
    has a counterexample there. The CLI says so on stderr, naming the region and input (since
    claim35b the verdict covers the region's real points rounded, and the note says that)."""
    import subprocess
    import sys

    from torchlean.certificates.property import parse_property
    from torchlean.verify.float32 import binary32_empty

    net = _third(tmp_path)
    prop = _prop(tmp_path / "p.vnnlib", 1, 1, [[("0.1", "0.1")]], "(>= Y_0 0.01)")
    assert binary32_empty(parse_property(prop.read_text())) == [(0, 0)]
    wide = _prop(tmp_path / "w.vnnlib", 1, 1, [[("0.1", "0.2")]], "(>= Y_0 0.01)")
    assert binary32_empty(parse_property(wide.read_text())) == []
    # a float32 value as a point box holds itself; the interval strictly between two neighbours, none
    one = _prop(tmp_path / "o.vnnlib", 1, 1, [[(_dec(F32(0.1)), _dec(F32(0.1)))]], "(>= Y_0 0.01)")
    assert binary32_empty(parse_property(one.read_text())) == []
    real = subprocess.run([sys.executable, "-m", "torchlean.verify", str(net), str(prop), "--timeout", "20"],
                          capture_output=True, text=True)
    assert real.stdout.startswith("sat"), real.stdout  # the real network meets Y_0 >= 0.01 at 0.1
    # an unsat on that region (true in the reals too, y = 0.0333 there) carries the note; one on
    # a region with binary32 inputs does not
    for box, noted in ((("0.1", "0.1"), True), (("0.1", "0.2"), False)):
        safe = _prop(tmp_path / "s.vnnlib", 1, 1, [[box]], "(>= Y_0 1)")
        f32 = subprocess.run([sys.executable, "-m", "torchlean.verify", str(net), str(safe), "--float32",
                              "--timeout", "20"], capture_output=True, text=True)
        assert f32.stdout.startswith("unsat"), f32.stdout
        assert ("region 0's X_0 interval holds no binary32 value" in f32.stderr) == noted, f32.stderr
