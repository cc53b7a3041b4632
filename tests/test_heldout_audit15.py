"""audit15: the float-sound verdict path (``verify --float32``, ``verify check ... --float32``,
``certificates/float_vnn.py``) attacked.

References, independent of the checker: numpy's float32 kernels (the runtime's: TRUST_BOUNDARIES.md,
"Runtime") and onnxruntime run on the same points, mpmath's tanh at 200 bits, exact Fractions,
brute force over every binary32 value of a small region.

Found and fixed (trusted, ``certificates/float_vnn.py``), each a checked ``unsat (...-sound)``
printed by ``verify check C.json NET PROP --float32`` where numpy's and onnxruntime's float32
runs of the network give a counterexample (``test_cli_refuses_*``):
- the certificate picked its own kernel assumption: an errorbound statement with
  ``kernel_ulps`` 1/2 (a correctly rounded tanh) was accepted, the verdict naming "kernel_ulps=1/2"
  among its assumptions; numpy's float32 tanh is 1.34 ulp off at x0 = 0.51890957 (onnxruntime's 1.7),
  so y = tanh(x), x = x0, unsafe Y_0 >= numpy's y was "binary32-sound" unsat. Now a statement must
  assume at least the runtime's 4 ulp (``KERNEL_ULPS``), as the runtime documents;
- the certificate picked its own format: a ``"format": "binary64"`` certificate (a binary64
  errorbound) was accepted by ``check --float32`` ("unsat (binary64-sound)"). Now the caller names
  the format (``check_vnn_float(..., fmt="binary32")``) and the certificate's must be it.

Fixed (untrusted, ``verify/float32.py``): a point box was bisected into itself until the recursion
limit. Measured (scope, not a hole): onnxruntime's Sigmoid/Tanh break the runtime's 4-ulp kernel
assumption, so a float-sound unsat can be false for onnxruntime's run (pinned below).

Tried, no hole: the grown property against brute force over every sign pattern of the error
(strict and non-strict atoms, disjunctions, conjunctions); two output tensors' epsilons in order;
a partitioned certificate whose split leaves a gap or lies outside its interval, or whose
dimension is out of range; an errorbound box short of the region; a property whose
input constraint is not a box (refused by the reader); box bounds that are not binary32 values
(the verdict agrees with brute force over every binary32 input of the region, numpy and
onnxruntime alike); a real-mode certificate under ``--float32`` and a float one without it.

Planted bugs this file catches (each made in a scratch copy, the file run; tests failing): ``grow``
with a_j eps_j for |a_j| eps_j (3), every grown atom strict (1), the statement's format check
removed (1), the covering test on lower bounds only (1), ``KERNEL_ULPS`` 1/2 (2), the caller's
format ignored (1), the epsilons in reverse output order (2), ``box_leaves``' upper half starting
past v (the fixture: 11 errors), the point-box guard in ``verify/float32.py`` removed (1).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
from decimal import Decimal
from fractions import Fraction as Q
from pathlib import Path

import numpy as np
import pytest

from torchlean.certificates.errorbound import model_id
from torchlean.certificates.float_vnn import KIND, check_vnn_float, grow, restrict
from torchlean.certificates.property import Atom, Region, Spec
from torchlean.floats.errorbound import bound_certificate, epsilons
from torchlean.verify import table
from torchlean.verify.bab import solve

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
mpmath = pytest.importorskip("mpmath")

X0 = np.float32(0.5189095735549927)  # numpy's float32 tanh is 1.34 ulp above tanh(X0) here


def _tanh_onnx(path: Path) -> Path:
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    m = _model([helper.make_node("Tanh", ["x"], ["y"])], [("x", [1, 1])], ("y",), [], 13, TensorProto.FLOAT)
    path.write_bytes(m.SerializeToString())
    return path


def _linear_onnx(path: Path, w: float) -> Path:
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", [1, 1])], ("y",),
               [("w", np.full((1, 1), w, np.float32))], 13, TensorProto.FLOAT)
    path.write_bytes(m.SerializeToString())
    return path


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.array([s.run(None, {"x": np.array([[v]], np.float32)})[0][0, 0] for v in x], np.float32)


def _dec(v) -> str:
    """The exact decimal of a binary32/binary64 value or a dyadic Fraction (never a shortest repr,
    whose value is another number: 0.5189095735549927 is not the binary32 value it prints)."""
    q = Q(v) if isinstance(v, (int, Q)) else Q(float(v))
    assert Q(float(q)) == q
    return format(Decimal(float(q)), "f")


def _prop(path: Path, lo: str, hi: str, out: str) -> Path:
    path.write_text(f"(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 {lo}))\n"
                    f"(assert (<= X_0 {hi}))\n(assert {out})\n")
    return path


def _forged(target, spec: Spec, fmt: str = "binary32", kernel_ulps: Q = Q(4)) -> dict:
    """A float certificate built by the project's own generators for an assumption of the caller's
    choice: the errorbound of ``target.graph`` on the region's box, a real proof of the grown property."""
    (r,) = spec.regions
    box = list(zip(r.lo, r.hi))
    eb = bound_certificate(target.graph, box, fmt, kernel_ulps=kernel_ulps, input_exact=False)
    res = solve(target, grow(spec, epsilons(eb)), timeout=30)
    assert res.verdict == "unsat", res.verdict  # (else there is nothing to forge)
    return {"kind": KIND, "version": 1, "format": fmt, "errorbound": eb, "real": res.cert}


def _cli(capsys, *args) -> tuple[int, str]:
    from torchlean.verify.__main__ import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().out


def test_the_witnesses_are_float32_counterexamples():
    """The references: at X0, tanh (mpmath, 200 bits) lies more than an ulp below numpy's float32
    tanh and above onnxruntime's, so 'Y_0 >= numpy's' and 'Y_0 <= onnxruntime's' each have a float32
    counterexample (by that executor) and none in the real network."""
    with mpmath.workprec(200):
        m = mpmath.tanh(mpmath.mpf(float(X0)))
        t = Q(int(m.man)) * Q(2) ** int(m.exp)
    y_np = np.tanh(np.array([X0], np.float32))[0]
    ulp = Q(float(np.spacing(y_np)))
    assert Q(float(y_np)) - t > ulp  # numpy above the true value by more than an ulp
    y_ort = _ort(_tanh_onnx(Path(__import__("tempfile").mkdtemp()) / "t.onnx"), np.array([X0]))[0]
    assert t - Q(float(y_ort)) > ulp  # onnxruntime below it by more than an ulp


@pytest.mark.parametrize("witness", ["numpy", "onnxruntime"])
def test_cli_refuses_a_kernel_assumption_below_the_runtimes(tmp_path, capsys, witness):
    """The hole: a certificate assuming kernels within 1/2 ulp (correct rounding) proves, for
    y = tanh(x) at X0, that no float32 run reaches the executor's own output, which it does. Refused
    now (main accepted both); the same property with the runtime's 4 ulp is not provable at all."""
    net = _tanh_onnx(tmp_path / "tanh.onnx")
    x = np.array([X0], np.float32)
    if witness == "numpy":
        y = np.tanh(x)[0]
        out = f"(>= Y_0 {_dec(y)})"
        unsafe = lambda v: Q(float(v)) >= Q(float(y))  # noqa: E731
    else:
        y = _ort(net, x)[0]
        out = f"(<= Y_0 {_dec(y)})"
        unsafe = lambda v: Q(float(v)) <= Q(float(y))  # noqa: E731
    # the executor's float32 run at X0 is a counterexample
    assert unsafe(np.tanh(x)[0] if witness == "numpy" else _ort(net, x)[0])
    prop = _prop(tmp_path / "p.vnnlib", _dec(X0), _dec(X0), out)
    target, spec = table.load_instance(str(net), str(prop))
    assert spec.regions[0].lo == spec.regions[0].hi == (Q(float(X0)),)  # the one binary32 input X0
    cert = _forged(target, spec, kernel_ulps=Q(1, 2))
    v = check_vnn_float(cert, target.bg, spec, model=model_id(target.graph.to_dict()))
    assert not v.ok and "ulp" in v.reason, v.reason
    c = tmp_path / "c.json"
    c.write_text(json.dumps(cert))
    for extra in (("--float32",), ()):
        code, stdout = _cli(capsys, "check", c, net, prop, *extra)
        assert code == 1 and stdout.startswith("rejected"), stdout
    # with the runtime's assumption the grown property has a real counterexample: no proof exists
    eb = bound_certificate(target.graph, [(spec.regions[0].lo[0], spec.regions[0].hi[0])], "binary32",
                           input_exact=False)
    assert solve(target, grow(spec, epsilons(eb)), timeout=30).verdict == "sat"


def test_cli_refuses_another_format_under_float32(tmp_path, capsys):
    """The hole: a binary64 certificate (binary64 errorbound, proof of the binary64-grown property)
    for y = tanh(x) at X0, unsafe Y_0 >= numpy's float32 output, was 'accepted: unsat
    (binary64-sound)' by ``check --float32``; the float32 run is a counterexample. Refused now."""
    net = _tanh_onnx(tmp_path / "tanh.onnx")
    y = np.tanh(np.array([X0], np.float32))[0]
    prop = _prop(tmp_path / "p.vnnlib", _dec(X0), _dec(X0), f"(>= Y_0 {_dec(y)})")
    target, spec = table.load_instance(str(net), str(prop))
    cert = _forged(target, spec, fmt="binary64")
    c = tmp_path / "c.json"
    c.write_text(json.dumps(cert))
    code, stdout = _cli(capsys, "check", c, net, prop, "--float32")
    assert code == 1 and "binary64" in stdout and stdout.startswith("rejected"), stdout
    # a certificate naming binary32 over a binary64 errorbound: the statement's format is checked too
    v = check_vnn_float({**cert, "format": "binary32"}, target.bg, spec,
                        model=model_id(target.graph.to_dict()))
    assert not v.ok and "binary32" in v.reason, v.reason
    # and the caller asking about binary64 is refused too: the network's own run is binary32 (its
    # input is float32), so no binary64 verdict is about it (audit64: a float-sound verdict is
    # about a network whose inputs and weights are of formats holding the verdict's)
    v = check_vnn_float(cert, target.bg, spec, fmt="binary64")
    assert not v.ok and "float32" in v.reason, v.reason


def test_mixing_real_and_float_certificates(tmp_path, capsys):
    """A real-mode certificate under ``--float32`` is refused; a float one without the flag is
    checked as float-sound (which implies the real claim: the grown unsafe set contains the
    original); y = 3x on [0, 1], unsafe Y_0 >= 3.001."""
    net = _linear_onnx(tmp_path / "l.onnx", 3.0)
    prop = _prop(tmp_path / "p.vnnlib", "0", "1", "(>= Y_0 3.001)")
    target, spec = table.load_instance(str(net), str(prop))
    real = solve(target, spec, timeout=30)
    assert real.verdict == "unsat"
    c = tmp_path / "r.json"
    c.write_text(json.dumps(real.cert))
    assert _cli(capsys, "check", c, net, prop, "--float32")[0] == 1
    assert _cli(capsys, "check", c, net, prop)[0] == 0
    f = tmp_path / "f.json"
    f.write_text(json.dumps(_forged(target, spec)))
    for extra in (("--float32",), ()):
        code, stdout = _cli(capsys, "check", f, net, prop, *extra)
        assert code == 0 and "binary32-sound" in stdout, stdout


def _holds(t: Atom, y: list[Q]) -> bool:
    v = sum(a * x for a, x in zip(t.a, y))
    return v < t.b if t.strict else v <= t.b


def test_grow_against_every_error_sign_pattern():
    """For random disjunctions of conjunctions of strict and non-strict atoms, a float output y~
    on the boundary of (or inside) the unsafe set and every real y with |y_j - y~_j| = eps_j (each
    sign pattern: the extremes): if y~ is unsafe, y satisfies the grown property; and at the worst
    pattern the grown atom is tight (b + sum |a_j| eps_j exactly: not grown more than needed)."""
    rng = random.Random(15)
    for _ in range(200):
        n = rng.randint(1, 3)
        eps = [Q(rng.randint(0, 5), rng.randint(1, 7)) for _ in range(n)]
        dis = tuple(tuple(Atom(tuple(Q(rng.randint(-3, 3)) for _ in range(n)), Q(rng.randint(-4, 4)),
                               rng.random() < 0.5) for _ in range(rng.randint(1, 3)))
                    for _ in range(rng.randint(1, 3)))
        spec = Spec(1, n, (Region((Q(0),), (Q(1),), dis),))
        grown = grow(spec, eps).regions[0].disjuncts
        for d, gd in zip(dis, grown):
            for t, gt in zip(d, gd):
                assert gt.a == t.a and gt.strict == t.strict
                assert gt.b == t.b + sum(abs(a) * e for a, e in zip(t.a, eps))
        for _ in range(5):
            yt = [Q(rng.randint(-8, 8), rng.randint(1, 4)) for _ in range(n)]
            unsafe = any(all(_holds(t, yt) for t in d) for d in dis)
            for signs in itertools.product((-1, 1), repeat=n):
                y = [v + s * e for v, s, e in zip(yt, signs, eps)]
                if unsafe:
                    assert any(all(_holds(t, y) for t in d) for d in grown)
    # tightness: y~ exactly on a non-strict atom, the adversarial pattern lands exactly on its growth
    t = Atom((Q(2), Q(-1)), Q(1), False)
    (gt,) = grow(Spec(1, 2, (Region((Q(0),), (Q(1),), ((t,),)),)), [Q(1, 3), Q(1, 5)]).regions[0].disjuncts[0]
    y = [Q(1) + Q(1, 3), Q(1) - Q(1, 5)]  # y~ = (1, 1): 2 - 1 = 1 = b; pattern (+, -)
    assert 2 * y[0] - y[1] == gt.b and _holds(gt, y)


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory):
    """A partitioned certificate (two halves, each its own parts) for y = 3x on [0, 1], unsafe
    Y_0 >= 3.001."""
    d = tmp_path_factory.mktemp("part")
    net = _linear_onnx(d / "l.onnx", 3.0)
    prop = _prop(d / "p.vnnlib", "0", "1", "(>= Y_0 3.001)")
    target, spec = table.load_instance(str(net), str(prop))
    half = Q(1, 2)
    leaves = [_forged(target, restrict(spec, b)) for b in ([(Q(0), half)], [(half, Q(1))])]
    cert = {"kind": KIND, "version": 1, "format": "binary32", "box": [["0", "1"]],
            "parts": {"split": [0, "1/2"], "lo": leaves[0], "hi": leaves[1]}}
    assert check_vnn_float(cert, target.bg, spec, model=model_id(target.graph.to_dict())).ok
    return target, spec, cert


@pytest.mark.parametrize("how", ["gap_root", "split_at_end", "split_outside", "dim_out", "dim_neg",
                                 "dim_bool", "leaf_missing", "root_shifted"])
def test_partitions_that_do_not_cover_are_refused(partitioned, how):
    target, spec, cert = partitioned
    c = copy.deepcopy(cert)
    root = c["parts"]
    if how == "gap_root":
        c["box"] = [["1/10", "1"]]  # misses [0, 1/10) of the region
    elif how == "root_shifted":
        c["box"] = [["-1", "9/10"]]
    elif how == "split_at_end":
        root["split"] = [0, c["box"][0][1]]
    elif how == "split_outside":
        root["split"] = [0, "2"]
    elif how == "dim_out":
        root["split"] = [1, root["split"][1]]
    elif how == "dim_neg":
        root["split"] = [-1, root["split"][1]]
    elif how == "dim_bool":
        root["split"] = [False, root["split"][1]]
    elif how == "leaf_missing":
        del root["hi"]
    v = check_vnn_float(c, target.bg, spec, model=model_id(target.graph.to_dict()))
    print("REASON", how, v.reason)
    assert not v.ok


def test_input_constraints_that_are_not_a_box_are_refused(tmp_path, capsys):
    """y = x_0 + x_1 on [0, 1]^2 with X_0 + X_1 <= 1 (not a box), unsafe Y_0 >= 3/2: SMT-LIB's
    answer is unsat (y <= 1), the box's alone sat (y = 2 at (1, 1)); the file is refused (exit 2),
    never read as its box, and the box-only file answers sat with a point in the box."""
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", [1, 2])], ("y",),
               [("w", np.ones((2, 1), np.float32))], 13, TensorProto.FLOAT)
    net = tmp_path / "two.onnx"
    net.write_bytes(m.SerializeToString())
    head = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n" + "".join(
        f"(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n" for i in range(2))
    prop = tmp_path / "p.vnnlib"
    prop.write_text(head + "(assert (<= (+ X_0 X_1) 1))\n(assert (>= Y_0 1.5))\n")
    assert _cli(capsys, net, prop, "--float32", "--timeout", "20") == (2, "")
    prop.write_text(head + "(assert (>= Y_0 1.5))\n")
    code, stdout = _cli(capsys, net, prop, "--float32", "--timeout", "20")
    assert code == 0 and stdout.startswith("sat"), stdout


@pytest.mark.parametrize("slack", [0, 1])
def test_non_binary32_bounds_against_brute_force(tmp_path, capsys, slack):
    """y = x * float32(1/3) on [lo, hi] with lo, hi not binary32 values (a region holding 9 of
    them); unsafe Y_0 >= T, T the largest float32 output (numpy, onnxruntime: every binary32 input
    of the region, by brute force) plus slack ulps. slack 0: a float32 counterexample exists, so the
    verdict is never unsat; slack 1: none exists (brute force), and an unsat, when given, agrees."""
    w = np.float32(1 / 3)
    net = _linear_onnx(tmp_path / "l.onnx", float(w))
    a = np.float32(0.7)
    lo = (Q(float(a)) + Q(float(np.nextafter(a, np.float32(0))))) / 2  # between two floats
    hi = Q(float(a)) + 9 * Q(float(np.spacing(a))) - Q(float(np.spacing(a))) / 4
    xs = [a]
    while Q(float(np.nextafter(xs[-1], np.float32(1)))) <= hi:
        xs.append(np.nextafter(xs[-1], np.float32(1)))
    xs = np.array(xs, np.float32)
    assert len(xs) == 9 and Q(float(xs[0])) >= lo and Q(float(xs[-1])) <= hi
    y_np, y_ort = (xs.reshape(-1, 1) @ np.array([[w]], np.float32)).reshape(-1), _ort(net, xs)
    assert np.array_equal(y_np, y_ort)
    top = y_np.max()
    T = Q(float(top)) + slack * Q(float(np.spacing(top)))
    prop = _prop(tmp_path / "p.vnnlib", _dec(lo), _dec(hi), f"(>= Y_0 {_dec(T)})")
    code, stdout = _cli(capsys, net, prop, "--float32", "--timeout", "30")
    verdict = stdout.strip().splitlines()[0] if stdout.strip() else ""
    exists = any(Q(float(v)) >= T for v in y_np)
    print("VERDICT", slack, stdout)
    assert exists == (slack == 0)
    if exists:
        assert verdict != "unsat", stdout
    else:
        assert verdict != "sat", stdout
    # the API's verdict (default splits), its sat point a binary32 input of the region whose numpy
    # and onnxruntime runs are unsafe
    from torchlean.verify.float32 import verify_float32

    target, spec = table.load_instance(str(net), str(prop))
    res = verify_float32(target.graph, target, spec, timeout=30)
    assert res.verdict in (("sat", "unknown", "timeout") if exists else ("unsat", "unknown", "timeout"))
    if exists:
        assert res.verdict == "sat", res.stats  # (found: the region's top float is its corner)
    if res.verdict == "sat":
        (x,) = res.x
        assert x in {Q(float(v)) for v in xs}
        xv = np.array([float(x)], np.float32)
        assert Q(float((xv.reshape(1, 1) @ np.array([[w]], np.float32))[0, 0])) >= T
        assert Q(float(_ort(net, xv)[0])) >= T


@pytest.mark.parametrize("exact", [True, False])
def test_a_point_region_is_answered_not_recursed(tmp_path, capsys, exact):
    """y = tanh(x), unsafe Y_0 <= the correctly rounded tanh(X0) (mpmath). exact: the region is the
    one binary32 input X0, where the emulated binary32 run and onnxruntime's are counterexamples
    (numpy's is not: an ulp above), so never unsat, and a sat is X0 with the correctly rounded Y.
    not exact: the region is the point 0.5189095735549927 (X0's shortest repr, not a binary32
    value): no binary32 input at all, so never sat; main bisected the point box into itself until
    Python's recursion limit ("error: input nested too deeply", exit 2)."""
    net = _tanh_onnx(tmp_path / "tanh.onnx")
    with mpmath.workprec(200):
        m = mpmath.tanh(mpmath.mpf(float(X0)))
        t = Q(int(m.man)) * Q(2) ** int(m.exp)
    cr = np.float32(float(t))  # (t to binary64, then binary32: 0.34 ulp from t, far from a tie)
    assert abs(Q(float(cr)) - t) < Q(float(np.spacing(cr))) / 2
    assert Q(float(_ort(net, np.array([X0]))[0])) <= Q(float(cr))  # onnxruntime: a counterexample
    assert Q(float(np.tanh(np.array([X0]))[0])) > Q(float(cr))  # numpy: not one
    x = _dec(X0) if exact else repr(float(X0))
    assert (Q(x) == Q(float(X0))) == exact
    prop = _prop(tmp_path / "p.vnnlib", x, x, f"(<= Y_0 {_dec(cr)})")
    code, stdout = _cli(capsys, net, prop, "--float32", "--timeout", "20")
    lines = stdout.strip().splitlines()
    assert code == 0 and lines, (code, stdout)
    if exact:
        assert lines[0].split()[0] in ("sat", "unknown", "timeout"), stdout
        if lines[0].startswith("sat"):
            assert np.float32(lines[1].split()[1].rstrip(")")) == X0  # (printed as a shortest repr)
            assert np.float32(lines[2].split()[1].rstrip(")")) == cr
    else:
        assert lines[0].split()[0] in ("unsat", "unknown", "timeout"), stdout


@pytest.mark.parametrize("sub", [("0", "9/10"), ("1/10", "1")])
def test_an_errorbound_box_short_of_the_region_is_refused(partitioned, sub):
    """y = 3x on [0, 1], unsafe Y_0 >= 3.001: an errorbound on a box short of the region at one end,
    with a real proof of the property grown by its (smaller) epsilon over the whole region, leaves
    that end without an error bound: refused (each end's test alone)."""
    target, spec, _ = partitioned
    eb = bound_certificate(target.graph, [(Q(sub[0]), Q(sub[1]))], "binary32", input_exact=False)
    res = solve(target, grow(spec, epsilons(eb)), timeout=30)
    assert res.verdict == "unsat"  # (the real part alone would pass)
    cert = {"kind": KIND, "version": 1, "format": "binary32", "errorbound": eb, "real": res.cert}
    v = check_vnn_float(cert, target.bg, spec, model=model_id(target.graph.to_dict()))
    assert not v.ok and "does not cover" in v.reason, v.reason


def test_a_leaf_proving_less_than_its_half_is_refused(partitioned):
    """The hi leaf replaced by a complete proof (errorbound and real part) of [11/20, 1] only: the
    gap [1/2, 11/20) would be unproved; the checker derives the leaf's box [1/2, 1], never reads it."""
    target, spec, cert = partitioned
    c = copy.deepcopy(cert)
    c["parts"]["hi"] = _forged(target, restrict(spec, [(Q(11, 20), Q(1))]))
    v = check_vnn_float(c, target.bg, spec, model=model_id(target.graph.to_dict()))
    assert not v.ok, v.reason


def test_float_sound_is_about_the_runtimes_kernels_not_onnxruntimes(tmp_path, capsys):
    """Scope, measured: y = sigmoid(x) at the binary32 x0 = -9.750331, unsafe Y_0 >= onnxruntime's
    float32 output there. ``--float32`` answers unsat (float32-sound, checked), right for the
    runtime's kernels (numpy: 1/(1 + exp(-x)) in binary32, the statement's 4-ulp exp) and for the
    real network (exact reference: mpmath), but onnxruntime's Sigmoid (an approximation, ~1e-7
    absolute: 30,448 ulp here) reaches the unsafe set: the verdict is not about onnxruntime's run."""
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    net = tmp_path / "s.onnx"
    m = _model([helper.make_node("Sigmoid", ["x"], ["y"])], [("x", [1, 1])], ("y",), [], 13,
               TensorProto.FLOAT)
    net.write_bytes(m.SerializeToString())
    x0 = np.array([-9.750331], np.float32)
    y_ort = _ort(net, x0)[0]
    y_np = (np.float32(1) / (np.float32(1) + np.exp(-x0)))[0]
    with mpmath.workprec(200):
        s = 1 / (1 + mpmath.exp(-mpmath.mpf(float(x0[0]))))
        t = Q(int(s.man)) * Q(2) ** int(s.exp)
    assert Q(float(y_np)) < Q(float(y_ort)) and t < Q(float(y_ort))  # numpy, real: safe
    assert abs(Q(float(y_np)) - t) < 4 * Q(float(np.spacing(y_np)))
    prop = _prop(tmp_path / "p.vnnlib", _dec(x0[0]), _dec(x0[0]), f"(>= Y_0 {_dec(y_ort)})")
    code, stdout = _cli(capsys, net, prop, "--float32", "--timeout", "30")
    assert code == 0 and stdout.splitlines()[0] == "unsat (float32-sound, checked)", stdout


def test_two_output_tensors_each_get_their_own_epsilon(tmp_path, capsys):
    """An ONNX file with two outputs, b = x·Wb (small weights) listed before a = x·Wa (large): the
    property's Y_0 is b (onnxruntime's order). Each output's epsilon covers numpy's and
    onnxruntime's float32 error against the exact real value (Fractions) at every corner and 200
    points, and a margin of 10 of b's own epsilon (far below a's) is a float-sound unsat: b's
    epsilon, not a's, grew Y_0's atom."""
    from onnx import TensorProto, helper

    from tests.test_onnx_exact import _model

    rng = np.random.default_rng(3)
    Wa = (rng.standard_normal((3, 2)) * 1000).astype(np.float32)
    Wb = (rng.standard_normal((3, 1)) * 0.01).astype(np.float32)
    m = _model([helper.make_node("MatMul", ["x", "wa"], ["a"]),
                helper.make_node("MatMul", ["x", "wb"], ["b"])], [("x", [1, 3])], ("b", "a"),
               [("wa", Wa), ("wb", Wb)], 13, TensorProto.FLOAT)
    net = tmp_path / "mo.onnx"
    net.write_bytes(m.SerializeToString())
    top = sum(abs(Q(float(w))) for w in Wb[:, 0])  # max of b over [-1, 1]^3, exactly
    head = "".join(f"(declare-const X_{i} Real)\n" for i in range(3)) + "".join(
        f"(declare-const Y_{i} Real)\n" for i in range(3)) + "".join(
        f"(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))\n" for i in range(3))
    prop = tmp_path / "p.vnnlib"
    prop.write_text(head + "(assert (>= Y_0 0))\n")
    target, spec = table.load_instance(str(net), str(prop))
    eps = epsilons(bound_certificate(target.graph, [(Q(-1), Q(1))] * 3, "binary32"))
    assert eps[0] * 1000 < min(eps[1:])
    pts = np.concatenate([np.array(list(itertools.product((-1, 1), repeat=3)), np.float32),
                          rng.uniform(-1, 1, (200, 3)).astype(np.float32)])
    s = ort.InferenceSession(str(net), providers=["CPUExecutionProvider"])
    for x in pts:
        real = [sum(Q(float(v)) * Q(float(w)) for v, w in zip(x, col))
                for col in (Wb[:, 0], Wa[:, 0], Wa[:, 1])]
        xb = x.reshape(1, 3)
        for run in ((xb @ Wb).reshape(-1).tolist() + (xb @ Wa).reshape(-1).tolist(),
                    [v for o in s.run(None, {"x": xb}) for v in o.reshape(-1).tolist()]):
            assert all(abs(Q(y) - r) <= e for y, r, e in zip(run, real, eps))
    bound = math.nextafter(float(top + 10 * eps[0]), math.inf)  # (a binary64 above it: its decimal exactly)
    prop.write_text(head + f"(assert (>= Y_0 {_dec(bound)}))\n")
    code, stdout = _cli(capsys, net, prop, "--float32", "--timeout", "30")
    assert code == 0 and stdout.startswith("unsat"), stdout
