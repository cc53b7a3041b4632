"""Binary32 counterexamples near an exact point (``verify.float_point``, ``float32.near_counterexample``)
and the exact-point search's two misses of session 33 (``verify.exact_point``: a tie whose nearest
float64 lies outside the box, a near miss above the float search's 1e-6 tolerance).

``--float32`` sats are judged by references independent of torchlean: this file's own float32 runs of
the ONNX weights (numpy's W @ x then + b per layer, and every product and sum rounded to float32 left
to right, the emulation's order), onnxruntime's float32 run of the file, and exact membership of the
printed binary32 point in the box. Real-mode sats by exact evaluation by hand (Fractions) and the
checker's ``check --expect sat``. The vertex-tie property is audit52's generator's kind ``vertex``
(bench/audit52_vs_nnenum.py: the box and the corner of ``054_test_sat_vertex``, seed 52), rebuilt
here: the threshold is the exact output at that corner, computed by this file's exact reading of the
weights (``test_heldout_audit52.layers``).
"""

from __future__ import annotations

import json
import re
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchlean.verify.__main__ import main

sys.path.insert(0, str(Path(__file__).parent))
onnx = pytest.importorskip("onnx")
from test_exact_counterexample import chain, exact_forward, prop  # noqa: E402
from test_heldout_audit52 import dec, forward, layers  # noqa: E402

TEST_SAT = Path(__file__).parent / "data" / "vnncomp2021" / "test" / "test_sat.onnx"

# audit52 054_test_sat_vertex: the box, and its corner with the highest sampled Y_4
LO = ["-2999256821/10000000000", "-9601229/1000000000", "992457279/2000000000", "3647864103/10000000000",
      "930504527/2500000000"]
HI = ["-1496395993/5000000000", "-71211021/10000000000", "99417653/200000000", "195379119/500000000",
      "1990868193/5000000000"]
CORNER = [HI[0], LO[1], LO[2], LO[3], HI[4]]


def f32_run(lay: list, x: list[Fraction], seq: bool) -> list[Fraction]:
    """The chain in float32: numpy's W @ x then + b per layer, or (``seq``) each dot product summed
    left to right with every product and sum rounded to float32; outputs as exact rationals."""
    h = np.array([float(v) for v in x], dtype=np.float32)
    for a in lay:
        if a is None:
            h = np.maximum(h, np.float32(0))
            continue
        W, b = a
        if W is not None:
            W32 = np.array([[float(v) for v in r] for r in W], dtype=np.float32)
            if seq:
                acc = []
                for r in W32:
                    s = np.float32(0)
                    for u, v in zip(r, h):
                        s = np.float32(s + np.float32(u * v))
                    acc.append(s)
                h = np.array(acc, dtype=np.float32)
            else:
                h = W32 @ h
        h = (h + np.array([float(v) for v in b], dtype=np.float32)).astype(np.float32)
    return [Fraction(float(v)) for v in h]


def ort_run(net: Path, x: list[Fraction]) -> list[Fraction]:
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(str(net), providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in i.shape]
    y = s.run(None, {i.name: np.array([float(v) for v in x], dtype=np.float32).reshape(shape)})[0]
    return [Fraction(float(v)) for v in y.reshape(-1)]


def is_b32(q: Fraction) -> bool:
    return Fraction(float(np.float32(float(q)))) == q


def printed_point(out: str, n: int) -> list[Fraction]:
    got = dict((int(i), Fraction(v)) for i, v in re.findall(r"\(X_(\d+) ([-+0-9.eE]+)\)", out))
    assert sorted(got) == list(range(n)), out
    return [got[i] for i in range(n)]


def run_cli(tmp: Path, net: Path, text: str, name: str, capsys, *extra: str) -> tuple[str, str]:
    p = tmp / f"{name}.vnnlib"
    p.write_text(text)
    capsys.readouterr()
    main([str(net), str(p), "--timeout", "60", *extra])
    got = capsys.readouterr()
    return got.out, got.err


def vertex_tie() -> tuple[list, list[Fraction], list[Fraction], Fraction]:
    lay = layers(TEST_SAT)
    lo, hi = [Fraction(v) for v in LO], [Fraction(v) for v in HI]
    thr = forward(lay, [Fraction(v) for v in CORNER])[4]
    return lay, lo, hi, thr


def test_vertex_tie_float32_sat_is_real(tmp_path, capsys):
    """``--float32`` on Y_4 >= (the exact output at a box corner that is no binary32 point, the
    largest sampled): the real search never meets the tie (only the exact corner does), so the old
    code had no candidate and searched to its timeout; now a binary32 point near the corner's exact
    vertex, whose float32 outputs reach the threshold: every reference meets it."""
    lay, lo, hi, thr = vertex_tie()
    text = prop([dec(v) for v in lo], [dec(v) for v in hi], 5, [f"(>= Y_4 {dec(thr)})"])
    out, err = run_cli(tmp_path, TEST_SAT, text, "vtx", capsys, "--float32")
    assert out.startswith("sat (float32, runtime and emulated)"), out + err
    x = printed_point(out, 5)
    assert all(a <= v <= b for v, a, b in zip(x, lo, hi)) and all(map(is_b32, x))
    for y in (f32_run(lay, x, False), f32_run(lay, x, True), ort_run(TEST_SAT, x)):
        assert y[4] >= thr


def test_kink_tie_whose_float64_is_outside_the_box(tmp_path, capsys):
    """|3x - 1| <= 0 on [0.333333333333333333333, 0.5]: the only witness is the kink 1/3, inside the
    box, while float64(1/3) lies below the box end (audit62's "not fixed" timeout): sat at exactly
    1/3, its certificate accepted by ``check``; 1e-12 below the tie, no sat."""
    w1, b1, w2, b2 = [[3.0], [-3.0]], [-1.0, 1.0], [[1.0, 1.0]], [0.0]
    net = chain(tmp_path / "k.onnx", w1, b1, w2, b2)
    lo = "0.333333333333333333333"
    assert Fraction(float(Fraction(1, 3))) < Fraction(lo) < Fraction(1, 3)
    p, c = tmp_path / "k.vnnlib", tmp_path / "k.json"
    p.write_text(prop([lo], ["0.5"], 1, ["(<= Y_0 0.0)"]))
    capsys.readouterr()
    main([str(net), str(p), "--timeout", "60", "--cert", str(c)])
    assert capsys.readouterr().out.split()[0] == "sat"
    x = [Fraction(q) for q in json.loads(c.read_text())["x"]]
    assert x == [Fraction(1, 3)] and exact_forward(w1, b1, w2, b2, x) == [0]
    assert main(["check", str(c), str(net), str(p), "--expect", "sat"]) == 0
    p.write_text(prop([lo], ["0.5"], 1, ["(<= Y_0 -0.000000000001)"]))
    capsys.readouterr()
    main([str(net), str(p), "--timeout", "20"])
    assert capsys.readouterr().out.split()[0] != "sat"


def test_near_miss_above_the_float_tolerance(tmp_path, capsys):
    """|3 x_0 - 1| + relu(x_1) + ... + relu(x_19) <= 0 on [0, 1]^20 (design.md's "not covered"
    case: PGD stalls ~1.5e-6 above the tie, past the 1e-6 tolerance, so nothing reached the probe):
    sat at exactly (1/3, 0, ..., 0), accepted by ``check``."""
    n = 20
    w1 = [[3.0] + [0.0] * (n - 1), [-3.0] + [0.0] * (n - 1)]
    w1 += [[1.0 if j == i else 0.0 for j in range(n)] for i in range(1, n)]
    b1, w2, b2 = [-1.0, 1.0] + [0.0] * (n - 1), [[1.0] * (n + 1)], [0.0]
    net = chain(tmp_path / "w.onnx", w1, b1, w2, b2)
    p, c = tmp_path / "w.vnnlib", tmp_path / "w.json"
    p.write_text(prop(["0.0"] * n, ["1.0"] * n, 1, ["(<= Y_0 0.0)"]))
    capsys.readouterr()
    main([str(net), str(p), "--timeout", "60", "--cert", str(c)])
    assert capsys.readouterr().out.split()[0] == "sat"
    x = [Fraction(q) for q in json.loads(c.read_text())["x"]]
    assert exact_forward(w1, b1, w2, b2, x) == [0] and x[0] == Fraction(1, 3)
    assert main(["check", str(c), str(net), str(p), "--expect", "sat"]) == 0


@pytest.mark.parametrize("v", [0.0, -0.0, 1e-45, -1e-45, 1.0, -1.0, 0.1, -3.4e38, 3.4e38, 2.0 ** -126])
@pytest.mark.parametrize("k", [1, -1, 3, -7, 64])
def test_ulp_move_is_nextafter(v, k):
    """``float_point._ulp_move`` against numpy's nextafter applied |k| times (through 0 and the
    sign change included)."""
    from torchlean.verify.float_point import _ulp_move

    f = np.float32(v)
    for _ in range(abs(k)):
        f = np.nextafter(f, np.float32(np.inf if k > 0 else -np.inf))
    got = _ulp_move(np.array([v], dtype=np.float32), k)[0]
    if f == 0 and got == 0:
        return  # (+0 and -0: one point, both reached through the integer order)
    assert got == f and np.isfinite(got)


def _kink41():
    """|41 x - 1| against 0: label 0 is the strict argmax except at x = 1/41 (a tie: not robust).
    float32(1/41) lies below 1/41 and 41 times it rounds to 0.99999994 in float32, so the nearest
    binary32 point is robust in float32; its upper neighbour gives exactly 1 (a float32 tie)."""
    import torchlean as tl

    m = tl.nn.Sequential(tl.nn.Linear(1, 2), tl.nn.ReLU(), tl.nn.Linear(2, 2)).eval()
    m.load_state_dict({"0.weight": np.array([[41.0], [-41.0]]), "0.bias": np.array([-1.0, 1.0]),
                       "2.weight": np.array([[1.0, 1.0], [0.0, 0.0]]), "2.bias": np.array([0.0, 0.0])})
    return tl, m


def test_robustness_api_real_tie_at_a_kink():
    """``robustness`` (real): the only non-robust point of the box is the kink 1/41 (no float);
    the API's search now builds it exactly (it answered unknown: no probe in ``api.decide``)."""
    tl, m = _kink41()
    r = tl.verify.robustness(m, np.array([[1 / 41]]), eps=1e-4, label=0, timeout=30)
    assert r.verdict == "falsified", r.reason
    x = Fraction(r.counterexample.ravel()[0])
    assert x == Fraction(1, 41)
    h = [max(Fraction(0), 41 * x - 1), max(Fraction(0), 1 - 41 * x)]
    assert h[0] + h[1] == 0  # (score 0 = score 1 = 0 exactly: a tie)


def test_robustness_api_float32_falsified_point_is_real():
    """``robustness(float32=True)``: "falsified" at a binary32 point where torch's float32 run and
    this file's numpy float32 run both leave label 0 not strictly highest."""
    torch = pytest.importorskip("torch")
    tl, m = _kink41()
    r = tl.verify.robustness(m, np.array([[1 / 41]]), eps=1e-4, label=0, timeout=30, float32=True)
    assert r.verdict == "falsified", r.reason
    x = np.asarray(r.counterexample, dtype=np.float64).reshape(1, 1)
    assert np.float32(x[0, 0]) == x[0, 0] and abs(x[0, 0] - 1 / 41) <= 1e-4
    tn = torch.nn.Sequential(torch.nn.Linear(1, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    tn.load_state_dict({k: torch.tensor(np.asarray(v), dtype=torch.float32)
                        for k, v in m.state_dict().items()})
    with torch.no_grad():
        yt = tn(torch.tensor(x, dtype=torch.float32)).numpy().ravel()
    x32 = np.float32(x[0, 0])
    h = np.maximum(np.array([np.float32(41) * x32 - np.float32(1), np.float32(-41) * x32 + np.float32(1)],
                            dtype=np.float32), np.float32(0))
    yn = np.float32(h[0] + h[1])
    assert yt[1] >= yt[0] and np.float32(0) >= yn


def test_real_unsat_float32_sat_where_epsilon_blocks(tmp_path, capsys):
    """25 x0 + 29 x1 - 2 >= 0 on [0, 0.0399999999] x [0, 0.0344827586] x [0, 1]: false in the reals
    (the largest value, at the upper corner, is below 0 exactly), but float32(25 x0) and
    float32(29 x1) round to 1 at the binary32 points just below 1/25 and 1/29. The real bounds
    prove every box there, only epsilon keeps them open, so no real falsification ran on them and
    the old search answered unknown; now sat at a binary32 point all three float32 runs confirm."""
    w1, b1, w2, b2 = [[25.0, 0.0, 0.0], [0.0, 29.0, 0.0]], [0.0, 0.0], [[1.0, 1.0]], [-2.0]
    net = chain(tmp_path / "e.onnx", w1, b1, w2, b2)
    lo, hi = ["0.0"] * 3, ["0.0399999999", "0.0344827586", "1.0"]
    assert exact_forward(w1, b1, w2, b2, [Fraction(v) for v in hi])[0] < 0
    out, err = run_cli(tmp_path, net, prop(lo, hi, 1, ["(>= Y_0 0.0)"]), "e", capsys, "--float32")
    assert out.startswith("sat (float32, runtime and emulated)"), out + err
    x = printed_point(out, 3)
    assert all(Fraction(a) <= v <= Fraction(b) for v, a, b in zip(x, lo, hi)) and all(map(is_b32, x))
    lay = [[np.array([[Fraction(v) for v in r] for r in w1], dtype=object), [Fraction(v) for v in b1]], None,
           [np.array([[Fraction(v) for v in r] for r in w2], dtype=object), [Fraction(v) for v in b2]]]
    for y in (f32_run(lay, x, False), f32_run(lay, x, True), ort_run(net, x)):
        assert y[0] >= 0
