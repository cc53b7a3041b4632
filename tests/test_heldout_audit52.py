"""audit52: complete verification on properties built to sit exactly on a tie, against exact truth.

Properties no one published, on two shared ACAS Xu networks (copies already in tests/data, from
VNN-COMP 2021, github.com/stanleybak/vnncomp2021), built by ``bench/audit52_vs_nnenum.py``'s
methods (see bench/README.md "audit52"):

- segment boxes (every input fixed but one): the exact maximum M of ``±Y_i`` over the segment is
  computed HERE by cutting the segment at every ReLU kink in exact rationals (this file's own reading
  of the ONNX weights, independent of torchlean); ``±Y_i >= M`` is sat (at the arg-max only: a tie)
  and ``±Y_i >= M + 1e-12`` is unsat;
- one-point boxes with the threshold exactly at the exact output (sat) or 1e-12 past it (unsat);
- the sat points nnenum (stanleybak/nnenum b18238f) found on three generated random-box instances,
  clamped into the box (nnenum rounds its box to float32) and confirmed here by exact evaluation
  and onnxruntime: torchlean must not answer unsat there.

Each torchlean unsat is a certificate the checker accepted (the CLI prints nothing else); it is
replayed with ``check`` and must be rejected against the tie property (where it is false).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.verify.__main__ import main

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

DATA = Path(__file__).parent / "data" / "vnncomp2021" / "acasxu"
NET_27 = DATA / "ACASXU_run2a_2_7_batch_2000.onnx"
NET_11 = DATA / "ACASXU_run2a_1_1_batch_2000.onnx"
DELTA = Fraction(1, 10**12)


# ---------------------------------------------------------------- the exact reference


def layers(path: Path) -> list:
    """ACAS Xu's ONNX chain (Sub, Flatten, (MatMul, Add, Relu)*, MatMul, Add) as exact affine maps."""
    m = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    fr = np.vectorize(lambda v: Fraction(float(v)), otypes=[object])
    out: list = []
    for n in m.graph.node:
        c = [init[i] for i in n.input if i in init]
        if n.op_type == "Relu":
            out.append(None)
        elif n.op_type == "MatMul":
            out.append([fr(c[0].T), np.array([Fraction(0)] * c[0].shape[1], dtype=object)])
        elif n.op_type in ("Add", "Sub"):
            v = fr(c[0].reshape(-1)) * (-1 if n.op_type == "Sub" else 1)
            if out and out[-1] is not None:
                out[-1][1] = out[-1][1] + v
            else:
                out.append([None, v])
        else:
            assert n.op_type == "Flatten", n.op_type
    return out


def forward(lay: list, x: list) -> list:
    v = np.array([Fraction(t) for t in x], dtype=object)
    for a in lay:
        if a is None:
            v = np.array([t if t > 0 else Fraction(0) for t in v], dtype=object)
        else:
            v = (v if a[0] is None else a[0].dot(v)) + a[1]
    return list(v)


def segment_max(lay: list, p: list, k: int, lo: Fraction, hi: Fraction, i: int, sgn: int) -> tuple:
    """max of sgn*Y_i over x = p with x_k in [lo, hi], exactly, and its arg-max x_k."""
    a = np.array([Fraction(t) for t in p], dtype=object)
    a[k] = Fraction(0)
    b = np.array([Fraction(int(j == k)) for j in range(len(p))], dtype=object)
    pieces = [(lo, hi, a, b)]  # values a + t b on [tl, th]
    for L in lay:
        new = []
        for tl_, th, a, b in pieces:
            if L is not None:
                new.append(
                    (tl_, th, (a if L[0] is None else L[0].dot(a)) + L[1], b if L[0] is None else L[0].dot(b))
                )
                continue
            cuts = sorted({-a[j] / b[j] for j in range(len(a)) if b[j] and tl_ < -a[j] / b[j] < th})
            ends = [tl_, *cuts, th]
            for s, e in zip(ends, ends[1:]):
                on = np.array([a[j] + (s + e) / 2 * b[j] > 0 for j in range(len(a))])
                new.append((s, e, np.where(on, a, Fraction(0)), np.where(on, b, Fraction(0))))
        pieces = new
    return max(
        ((sgn * (a[i] + t * b[i]), t) for tl_, th, a, b in pieces for t in (tl_, th)), key=lambda u: u[0]
    )


def dec(v: Fraction) -> str:
    """v (denominator 2^a 5^b) as an exact decimal."""
    d, k = v.denominator, 0
    while d % 2 == 0 or d % 5 == 0:
        d //= 2 if d % 2 == 0 else 5
    assert d == 1, v
    while (v * 10**k).denominator != 1:
        k += 1
    n = v.numerator * 10**k // v.denominator
    s = str(abs(n)).rjust(k + 1, "0")
    return ("-" if n < 0 else "") + ((s[:-k] + "." + s[-k:]) if k else s + ".0")


def is_dec(v: Fraction) -> bool:
    d = v.denominator
    while d % 2 == 0 or d % 5 == 0:
        d //= 2 if d % 2 == 0 else 5
    return d == 1


def floor40(v: Fraction) -> Fraction:
    return Fraction(v.numerator * 10**40 // v.denominator, 10**40)


def prop(lo: list, hi: list, disj: list) -> str:
    """A VNN-LIB property; disj: an OR of ANDs of (op, i, rhs) with rhs an int j (Y_j) or a Fraction."""
    t = [f"(declare-const X_{i} Real)" for i in range(5)] + [f"(declare-const Y_{j} Real)" for j in range(5)]
    for i, (a, b) in enumerate(zip(lo, hi)):
        t += [f"(assert (<= X_{i} {dec(Fraction(b))}))", f"(assert (>= X_{i} {dec(Fraction(a))}))"]
    at = lambda o, i, r: f"({o} Y_{i} {'Y_' + str(r) if isinstance(r, int) else dec(r)})"  # noqa: E731
    if len(disj) == 1:
        t += [f"(assert {at(*a)})" for a in disj[0]]
    else:
        t += ["(assert (or"] + ["(and " + " ".join(at(*a) for a in d) + ")" for d in disj] + ["))"]
    return "\n".join(t) + "\n"


def violates(disj: list, y: list) -> bool:
    def h(o, i, r):
        rv = y[r] if isinstance(r, int) else r
        return y[i] <= rv if o == "<=" else y[i] >= rv

    return any(all(h(*a) for a in d) for d in disj)


def verify(tmp: Path, net: Path, text: str, name: str, capsys, timeout: int = 60) -> tuple[str, Path, Path]:
    """torchlean's CLI verdict on (net, text), its certificate file and the property file."""
    p, c = tmp / f"{name}.vnnlib", tmp / f"{name}.json"
    p.write_text(text)
    capsys.readouterr()
    main([str(net), str(p), "--timeout", str(timeout), "--cert", str(c), "-q"])
    return capsys.readouterr().out.strip().split()[0], c, p


def refused_when_retargeted(tmp: Path, cert: Path, net: Path, prop_file: Path, capsys) -> bool:
    """Whether ``check`` refuses an unsat certificate whose property digest was rewritten to that of
    ``prop_file`` (a property where it is false): the proof itself must fail, not the digest."""
    from torchlean.certificates.property import parse_property

    c = json.loads(cert.read_text())
    c["property"] = parse_property(prop_file.read_text()).digest()
    forged = tmp / "forged.json"
    forged.write_text(json.dumps(c))
    capsys.readouterr()
    return main(["check", str(forged), str(net), str(prop_file)]) != 0


def assert_sound_sat(verdict: str, cert: Path, lay: list, lo: list, hi: list, disj: list) -> None:
    """A sat must carry a point of the box whose exact outputs violate the property."""
    assert verdict != "unsat"
    if verdict == "sat":
        x = [Fraction(v) for v in json.loads(cert.read_text())["x"]]
        assert all(Fraction(a) <= v <= Fraction(b) for v, a, b in zip(x, lo, hi))
        assert violates(disj, forward(lay, x))


# ---------------------------------------------------------------- segment ties

# (net, centre, free axis k, its range, output i, sign): the audit's seg instances on these nets
SEGMENTS = [
    (
        NET_27,
        ["-0.301408", "0.00565", "0.499464", "0.433955", "0.392664"],
        1,
        ("0.0043507032", "0.0069590322"),
        2,
        1,
    ),
    (NET_27, ["0.2", "-0.1", "0.05", "0.4", "0.3"], 0, ("-0.25", "0.45"), 0, -1),
    (
        NET_11,
        ["-0.305544", "0.1", "-0.342512", "0.471873", "-0.488242"],
        0,
        ("0.6473365824", "0.6594993638"),
        1,
        1,
    ),
    (NET_11, ["0.5", "0.2", "-0.2", "0.45", "0.45"], 2, ("-0.4", "0.4"), 4, -1),
]


# (cases 1-3 search the tie property to the end of its timeout, ~60 s each: marked slow, the
# default run keeps case 0)
@pytest.mark.parametrize(
    "case", [0, *(pytest.param(c, marks=pytest.mark.slow) for c in range(1, len(SEGMENTS)))])
def test_segment_tie(case, tmp_path, capsys):
    net, p, k, (a, b), i, sgn = SEGMENTS[case]
    lay = layers(net)
    p = [Fraction(v) for v in p]
    lo, hi = list(p), list(p)
    lo[k], hi[k] = Fraction(a), Fraction(b)
    m, t = segment_max(lay, p, k, lo[k], hi[k], i, sgn)
    w = list(p)
    w[k] = t
    op = ">=" if sgn > 0 else "<="
    # M is a decimal when the arg-max is an end; at a kink it need not be: then the tie is 1e-40 off
    m_lo, m_hi = (m, m) if is_dec(m) else (floor40(m), floor40(m) + Fraction(1, 10**40))
    at_m, above = [[(op, i, sgn * m_lo)]], [[(op, i, sgn * (m_hi + DELTA))]]
    # the reference itself: the arg-max attains M; the ends and a grid of the segment never pass it
    assert violates(at_m, forward(lay, w))
    for s in [lo[k] + (hi[k] - lo[k]) * j / 64 for j in range(65)]:
        x = list(p)
        x[k] = s
        assert not violates(above, forward(lay, x))
    v_above, c_above, p_above = verify(tmp_path, net, prop(lo, hi, above), "above", capsys)
    assert v_above == "unsat"  # true (M is the exact maximum) and easy: a segment
    v_at, c_at, p_at = verify(tmp_path, net, prop(lo, hi, at_m), "at", capsys)
    assert_sound_sat(v_at, c_at, lay, lo, hi, at_m)
    # the unsat certificate replays, and is refused for the tie property, where it is false
    capsys.readouterr()
    assert main(["check", str(c_above), str(net), str(p_above)]) == 0
    assert main(["check", str(c_above), str(net), str(p_at)]) != 0
    assert refused_when_retargeted(tmp_path, c_above, net, p_at, capsys)


# ---------------------------------------------------------------- one-point boxes


@pytest.mark.parametrize("net,i", [(NET_27, 0), (NET_11, 3)])
def test_point_tie(net, i, tmp_path, capsys):
    lay = layers(net)
    p = [Fraction(v) for v in ("0.123456", "-0.254321", "0.031415", "0.271828", "-0.141421")]
    y = forward(lay, p)
    eq, above = [[(">=", i, y[i])]], [[(">=", i, y[i] + DELTA)]]
    v, c, _ = verify(tmp_path, net, prop(p, p, eq), "eq", capsys)
    assert v == "sat"  # the only input is a witness: the exact output equals the bound
    assert_sound_sat(v, c, lay, p, p, eq)
    v, c_above, _ = verify(tmp_path, net, prop(p, p, above), "above", capsys)
    assert v == "unsat"
    # its proof, made to claim the tie property (true bound 0 there, claimed one 1e-12), is refused
    assert refused_when_retargeted(tmp_path, c_above, net, tmp_path / "eq.vnnlib", capsys)
    # an OR whose one disjunct is the tie, the other false at the point: still sat
    mixed = [[("<=", i, y[i] - DELTA)], [("<=", i, y[i]), (">=", (i + 1) % 5, y[(i + 1) % 5])]]
    v, c, _ = verify(tmp_path, net, prop(p, p, mixed), "mixed", capsys)
    assert v == "sat"
    assert_sound_sat(v, c, lay, p, p, mixed)


# ---------------------------------------------------------------- nnenum's sat points

# generated instances (bench/audit52_vs_nnenum.py gen --seed 52) where nnenum answered sat: its
# point (float64, as it wrote it), the box and the unsafe set (from the run's results.csv)
NNENUM_SATS: list = [
    # 000_acas_1_1_rand: nnenum's point clamped clamped(8.4e-09)
    (
        DATA / "ACASXU_run2a_1_1_batch_2000.onnx",
        [
            "1610051347/2500000000",
            "-689189/200000000",
            "-5165999827/10000000000",
            "2381825717/5000000000",
            "-2263662773/5000000000",
        ],
        [
            "647692323/1000000000",
            "212665517/5000000000",
            "-4706209343/10000000000",
            "2393320479/5000000000",
            "-2252168011/5000000000",
        ],
        [
            [["<=", 0, "-21721/1000000"], [">=", 1, "-9141/500000"]],
            [[">=", 1, "-18247/1000000"], ["<=", 3, "-18717/1000000"]],
        ],
        [
            0.6476923227310181,
            0.025630757212638855,
            -0.5165999531745911,
            0.4763651490211487,
            -0.45273256301879883,
        ],
    ),
    # 003_acas_2_3_rand: nnenum's point clamped clamped(6.6e-09)
    (
        DATA / "ACASXU_run2a_2_3_batch_2000.onnx",
        [
            "-379367007/1250000000",
            "37240351/10000000000",
            "4960366661/10000000000",
            "3045900661/10000000000",
            "4309270493/10000000000",
        ],
        [
            "-379358271/1250000000",
            "37508467/10000000000",
            "620057449/1250000000",
            "3048708373/10000000000",
            "862415641/2000000000",
        ],
        [[["<=", 1, "3949/250000"], [">=", 1, "7909/500000"]], [["<=", 1, "15799/1000000"]]],
        [
            -0.3034866154193878,
            0.0037508467212319374,
            0.49603667855262756,
            0.3048708438873291,
            0.4311705231666565,
        ],
    ),
    # 005_acas_2_7_rand: nnenum's point in the box
    (
        DATA / "ACASXU_run2a_2_7_batch_2000.onnx",
        [
            "3017872463/5000000000",
            "-565898717/2000000000",
            "-5840192373/10000000000",
            "237423463/500000000",
            "-1181851207/2500000000",
        ],
        [
            "3129384277/5000000000",
            "-1836651/500000000",
            "-3047431809/10000000000",
            "611013411/1250000000",
            "-11469417/25000000",
        ],
        [
            [[">=", 1, "-4799/250000"], [">=", 4, "20699/1000000"]],
            [[">=", 1, "-99/5000"]],
            [[">=", 0, "-19117/1000000"], ["<=", 2, 0]],
        ],
        [
            0.6147257089614868,
            -0.14331133663654327,
            -0.4443812072277069,
            0.48182880878448486,
            -0.4657585620880127,
        ],
    ),
    # 017_acas_1_1_tiny: nnenum's point clamped clamped(1.4e-08)
    (
        DATA / "ACASXU_run2a_1_1_batch_2000.onnx",
        [
            "3152928421/5000000000",
            "913418027/2500000000",
            "928625507/5000000000",
            "4686825991/10000000000",
            "-4827367747/10000000000",
        ],
        [
            "6305856849/10000000000",
            "1826836101/5000000000",
            "1857251109/10000000000",
            "1171706499/2500000000",
            "-2413683871/5000000000",
        ],
        [
            [["<=", 1, "-18873/1000000"], ["<=", 2, "-9479/500000"], [">=", 1, "-18873/1000000"]],
            [["<=", 1, "-18873/1000000"]],
            [[">=", 3, "-9481/500000"], ["<=", 3, 2]],
        ],
        [
            0.6305856704711914,
            0.36536720395088196,
            0.1857251077890396,
            0.46868258714675903,
            -0.4827367663383484,
        ],
    ),
    # 022_acas_2_7_huge: nnenum's point clamped clamped(2.2e-08)
    (
        DATA / "ACASXU_run2a_2_7_batch_2000.onnx",
        [
            "-1979072663/10000000000",
            "-25368468483/2500000000",
            "-53325330747/5000000000",
            "-12181579/156250000",
            "-9791844789/10000000000",
        ],
        [
            "14909573573/10000000000",
            "55005099457/5000000000",
            "13104176419/1250000000",
            "4897291293/5000000000",
            "391179427/5000000000",
        ],
        [[[">=", 1, "6120309/1000000"], ["<=", 4, "-19037/125000"]], [["<=", 4, "-91883/1000000"]]],
        [1.4909573793411255, 11.001019477844238, 2.5549261569976807, 0.9794582724571228, 0.07823588699102402],
    ),
]


@pytest.mark.parametrize("case", range(len(NNENUM_SATS)))
def test_nnenum_sat_points(case, tmp_path, capsys):
    import onnxruntime as ort

    net, lo, hi, disj, x = NNENUM_SATS[case]
    lay = layers(net)
    lo, hi = [Fraction(v) for v in lo], [Fraction(v) for v in hi]
    disj = [[(o, i, r if isinstance(r, int) else Fraction(r)) for o, i, r in d] for d in disj]
    xc = [min(max(Fraction(v), a), b) for v, a, b in zip(x, lo, hi)]  # nnenum's box is float32-rounded
    assert violates(disj, forward(lay, xc))  # nnenum's sat is real
    s = ort.InferenceSession(str(net), providers=["CPUExecutionProvider"])
    y = s.run(None, {s.get_inputs()[0].name: np.array(x, np.float32).reshape(1, 1, 1, 5)})[0].reshape(-1)
    assert violates(disj, [Fraction(float(v)) for v in y])
    v, c, _ = verify(tmp_path, net, prop(lo, hi, disj), "nn", capsys)
    assert_sound_sat(v, c, lay, lo, hi, disj)
    assert v == "sat"
