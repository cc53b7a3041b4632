"""Forged counterexamples for sat instances (test_sat.onnx with ACAS Xu property 3, and with a
property whose boundary crosses the box): every forgery must be rejected by the trusted checker;
any acceptance is a bug. The reference that decides what is a
true counterexample is independent of the checker: an exact rational evaluation of the ONNX graph
written here from the onnx protobuf, and the bridge's lark VNN-LIB reader for the box."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest
from fuzz_util import TEST, tally, time_limit

from torchlean.certificates.bounds import check_vnn
from torchlean.verify.network import load_spec
from torchlean.verify.table import load_target

NET, PROP = TEST / "test_sat.onnx", TEST / "test_prop.vnnlib"


def exact_outputs(x: list[Fraction]) -> list[Fraction]:
    """The ONNX graph evaluated in exact rationals (weights read as their float32 values)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(NET)
    env: dict[str, np.ndarray] = {}
    for t in m.graph.initializer:
        env[t.name] = np.vectorize(Fraction, otypes=[object])(numpy_helper.to_array(t).astype(np.float64))
    (name,) = [i.name for i in m.graph.input if i.name not in env]  # (old files list weights too)
    env[name] = np.array(x, dtype=object).reshape(1, -1)
    for n in m.graph.node:
        a = [env[i] for i in n.input]
        if n.op_type == "Sub":
            v = a[0] - a[1]
        elif n.op_type == "Add":
            v = a[0] + a[1]
        elif n.op_type == "Mul":
            v = a[0] * a[1]
        elif n.op_type == "Div":
            v = a[0] / a[1]
        elif n.op_type == "MatMul":
            v = a[0].dot(a[1]) if a[0].ndim > 1 else np.array(a[0]).dot(a[1])
        elif n.op_type == "Relu":
            v = np.vectorize(lambda q: q if q > 0 else Fraction(0), otypes=[object])(a[0])
        elif n.op_type in ("Flatten", "Reshape"):
            v = a[0].reshape(1, -1)
        elif n.op_type == "Constant":
            v = np.vectorize(Fraction, otypes=[object])(
                numpy_helper.to_array(n.attribute[0].t).astype(np.float64))
        else:
            raise NotImplementedError(n.op_type)
        env[n.output[0]] = v
    return list(np.ravel(env[m.graph.output[0].name]))


def truly_sat(x: list[Fraction], prop_path=PROP) -> bool:
    from torchlean.bridge.vnnlib import parse_vnnlib

    prop = parse_vnnlib(prop_path)
    y = exact_outputs(x)
    return any(r.contains(x) and r.unsafe_output(y) for r in prop.regions)


def _sat(prop_path):
    from torchlean.verify.bab import verify

    net, spec = load_target(NET).bg, load_spec(prop_path)
    res = verify(net, spec, timeout=60)
    assert res.verdict == "sat"
    x = [Fraction(v) for v in res.cert["x"]]
    assert truly_sat(x, prop_path), "the reference disagrees with the verifier's own counterexample"
    assert check_vnn(res.cert, net, spec).ok
    return res.cert, net, spec


@pytest.fixture(scope="module")
def sat_case():
    return _sat(PROP)


@pytest.fixture(scope="module")
def boundary_case(tmp_path_factory):
    """test_prop's box with the unsafe set Y_0 <= c, c the median of Y_0 over sampled points: the
    boundary of the unsafe set crosses the box."""
    from torchlean.verify.network import float_chain

    text = PROP.read_text()
    head = text[: text.index("; output constraints")] if "; output constraints" in text else None
    assert head is not None
    spec = load_spec(PROP)
    (region,) = spec.regions
    rng = np.random.default_rng(0)
    lo, hi = (np.array([float(v) for v in b]) for b in (region.lo, region.hi))
    ys = float_chain(load_target(NET).bg).forward(lo + (hi - lo) * rng.random((64, len(lo))))[:, 0]
    c = float(np.median(ys))
    p = tmp_path_factory.mktemp("prop") / "boundary.vnnlib"
    p.write_text(head + f"(assert (<= Y_0 {c!r}))\n")
    return (*_sat(p), p)


def _must_reject(cert, net, spec, what: str) -> None:
    with time_limit():
        v = check_vnn(cert, net, spec)
    tally("forged sat certificates", "accepted" if v.ok else "rejected")
    assert not v.ok, f"forgery accepted: {what}"


def _with_x(cert, xs) -> dict:
    return {**cert, "x": xs}


def test_outside_the_box(sat_case):
    cert, net, spec = sat_case
    (region,) = spec.regions
    x = list(cert["x"])
    for i in range(len(x)):
        for edge, sign in ((region.lo[i], -1), (region.hi[i], 1)):
            for delta in (Fraction(1, 2**80), Fraction(1, 2**30), Fraction(1)):
                bad = x[:i] + [str(edge + sign * delta)] + x[i + 1:]
                _must_reject(_with_x(cert, bad), net, spec, f"X_{i} outside by {delta}")
            f = float(edge)  # the nearest float outside the box
            out = math.nextafter(f, sign * math.inf)
            while (Fraction(out) - edge) * sign <= 0:
                out = math.nextafter(out, sign * math.inf)
            bad = x[:i] + [str(Fraction(out))] + x[i + 1:]
            _must_reject(_with_x(cert, bad), net, spec, f"X_{i} one float outside")


def test_wrong_length_and_non_numbers(sat_case):
    cert, net, spec = sat_case
    x = list(cert["x"])
    for bad in (x[:-1], x + ["0"], [], x * 2, [x], x[:1]):
        _must_reject(_with_x(cert, bad), net, spec, f"length {len(bad)}")
    junk = [None, True, False, 1.5, float("nan"), "nan", "inf", "-inf", "1e999999999", "١", "0x1",
            "", "1/0", [], {}, "1" * 5000, 2**80, -(2**80), "p/q", "--1"]
    for i in range(len(x)):
        for j in junk:
            _must_reject(_with_x(cert, x[:i] + [j] + x[i + 1:]), net, spec, f"X_{i} = {j!r}")
    for bad in ({"x": x}, None, "x", {**cert, "x": None}, {**cert, "kind": "vnn-unsat"},
                {**cert, "network": "0" * 64}, {**cert, "property": "0" * 64}):
        _must_reject(bad, net, spec, repr(bad)[:40])


def _bisect_to_boundary(x_sat: list[Fraction], x_safe: list[Fraction], path) -> tuple[list, list]:
    """Two points of the segment, float64 coordinates, one truly sat and one not, adjacent to
    within one ulp per coordinate (bisection on the float coordinates)."""
    a = [float(v) for v in x_sat]
    b = [float(v) for v in x_safe]
    assert truly_sat([Fraction(v) for v in a], path) and not truly_sat([Fraction(v) for v in b], path)
    for _ in range(200):
        mid = [(p + q) / 2 for p, q in zip(a, b)]
        if mid == a or mid == b:
            break
        if truly_sat([Fraction(v) for v in mid], path):
            a = mid
        else:
            b = mid
    assert all(abs(p - q) <= 2 * math.ulp(max(abs(p), abs(q))) for p, q in zip(a, b))
    return a, b


def test_one_ulp_across_the_output_constraint(boundary_case):
    """Points within an ulp of the boundary of the unsafe set: the one on the safe side is rejected,
    the one on the unsafe side accepted (the checker decides exactly, not in floats)."""
    cert, net, spec, path = boundary_case
    (region,) = spec.regions
    rng = random.Random(0)
    x_sat = [Fraction(v) for v in cert["x"]]
    found = 0
    for _ in range(20):
        p = [lo + (hi - lo) * Fraction(rng.randint(0, 1000), 1000) for lo, hi in zip(region.lo, region.hi)]
        if truly_sat(p, path):
            continue
        a, b = _bisect_to_boundary(x_sat, p, path)
        good = _with_x(cert, [str(Fraction(v)) for v in a])
        with time_limit():
            assert check_vnn(good, net, spec).ok, "a true counterexample refused"
        _must_reject(_with_x(cert, [str(Fraction(v)) for v in b]), net, spec, "one ulp on the safe side")
        found += 1
        break
    assert found >= 1, "no safe point in the box to bisect towards"


def test_random_points_agree_with_the_reference(boundary_case):
    """Random points of the box (and just outside): accepted exactly when truly a counterexample."""
    cert, net, spec, path = boundary_case
    (region,) = spec.regions
    rng = random.Random(1)
    seen = set()
    for _ in range(16):
        p = [lo + (hi - lo) * Fraction(rng.randint(-20, 1020), 1000) for lo, hi in zip(region.lo, region.hi)]
        with time_limit():
            ok = check_vnn(_with_x(cert, [str(v) for v in p]), net, spec).ok
        truth = truly_sat(p, path)
        tally("random sat certificates", "true and accepted" if ok and truth else
              "false and rejected" if not ok and not truth else "WRONG")
        seen.add(truth)
        assert ok == truth, p
    assert seen == {True, False}
