"""audit52: torchlean against nnenum on NEW properties, every verdict judged by exact evaluation.

    OPENBLAS_NUM_THREADS=1 python bench/audit52_vs_nnenum.py gen --out DIR [--seed 52] [--data ../shared/data]
    OPENBLAS_NUM_THREADS=1 nice -n 10 python bench/audit52_vs_nnenum.py run DIR --timeout 20 \
        --nnenum-python VENV/bin/python --nnenum-src NNENUM/src --nnenum-run bench/audit52_nnenum_run.py
    python bench/audit52_vs_nnenum.py table DIR/results.csv

``gen`` writes ``DIR/props/*.vnnlib`` and ``DIR/meta.json`` (net, box, disjuncts, what is known).
The networks are the shared ReLU chains (ACAS Xu, rl_benchmarks, reach_prob_density, mnistfc, the
2021 ``test`` nets). Kinds:

- ``rand``: a random box (centre uniform in a shared property's box, width 10^U(-3,-0.3) of it),
  1-3 disjuncts of 1-3 atoms ``Y_i <= c``, ``Y_i >= c``, ``Y_i <= Y_j``, c at a random quantile
  of sampled outputs (so near the boundary).
- ``tiny`` (width 1e-9..1e-6) and ``huge`` (10x-1000x the shared box): as ``rand``.
- ``seg-eq`` / ``seg-above``: the box is a segment (every input fixed but one); the exact maximum M
  of ``±Y_i`` over it is computed by splitting the segment at every ReLU kink in exact rationals;
  ``±Y_i >= M`` is sat (the arg-max, often a kink or an end) and ``±Y_i >= M + 1e-12`` is unsat.
- ``point-eq`` / ``point-above``: a one-point box (lo = hi) with the threshold exactly at the exact
  output (sat) or 1e-12 past it (unsat).
- ``vertex``: the full box, threshold exactly at the output of the vertex with the highest sampled
  value (sat, witness the vertex; a tie if that vertex is the maximum).
- ``kink``: a 1-input ``test`` net on a segment that ends exactly (nano: 0) or within 1e-30 of a kink.

Exact evaluation here is independent of torchlean: this file's own reading of the ONNX weights
(float32 as exact rationals) and its own property representation. ``run`` runs torchlean
(``python -m torchlean.verify NET PROP --timeout T --cert C.json``) and nnenum (a wrapper of its
VNN-COMP main that also writes its counterexample) one after the other; a torchlean sat has its
certificate's point judged exactly, an nnenum sat its counterexample judged exactly and in
onnxruntime. HOLE = torchlean unsat against an exactly confirmed sat (a known witness or nnenum's),
or a torchlean sat whose point exact evaluation rejects.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

NETS = {  # family: (onnx under --data, a shared property whose box is the domain)
    "acas_1_1": ("vnncomp2021/acasxu/ACASXU_run2a_1_1_batch_2000.onnx", "vnncomp2021/acasxu/prop_1.vnnlib"),
    "acas_2_3": ("vnncomp2021/acasxu/ACASXU_run2a_2_3_batch_2000.onnx", "vnncomp2021/acasxu/prop_3.vnnlib"),
    "acas_2_7": ("vnncomp2021/acasxu/ACASXU_run2a_2_7_batch_2000.onnx", "vnncomp2021/acasxu/prop_2.vnnlib"),
    "cartpole": (
        "vnncomp2022/rl_benchmarks/onnx/cartpole.onnx",
        "vnncomp2022/rl_benchmarks/vnnlib/cartpole_case_safe_27.vnnlib",
    ),
    "lunarlander": ("vnncomp2022/rl_benchmarks/onnx/lunarlander.onnx", None),
    "vdp": (
        "vnncomp2022/reach_prob_density/onnx/vdp.onnx",
        "vnncomp2022/reach_prob_density/vnnlib/vdp_0.vnnlib",
    ),
    "gcas": (
        "vnncomp2022/reach_prob_density/onnx/gcas.onnx",
        "vnncomp2022/reach_prob_density/vnnlib/gcas_0.vnnlib",
    ),
    "mnist_256x2": ("vnncomp2021/mnistfc/mnist-net_256x2.onnx", "vnncomp2021/mnistfc/prop_0_0.03.vnnlib"),
    "test_small": ("vnncomp2021/test/test_small.onnx", "vnncomp2021/test/test_small.vnnlib"),
    "test_tiny": ("vnncomp2021/test/test_tiny.onnx", "vnncomp2021/test/test_tiny.vnnlib"),
    "test_nano": ("vnncomp2021/test/test_nano.onnx", "vnncomp2021/test/test_nano.vnnlib"),
    "test_sat": ("vnncomp2021/test/test_sat.onnx", "vnncomp2021/test/test_prop.vnnlib"),
}
DELTA = Fraction(1, 10**12)


# ---------------------------------------------------------------- the network, exactly


def layers_of(path: str) -> list:
    """The ONNX ReLU chain as [("aff", W, b) | ("relu",)], W and b exact rationals (out x in)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant":
            init[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    fr = np.vectorize(lambda v: Fraction(float(v)), otypes=[object])
    out: list = []
    for n in m.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        const = [init[i] for i in n.input if i in init]
        if n.op_type in ("Flatten", "Reshape", "Constant", "Identity"):
            continue
        if n.op_type == "Relu":
            out.append(("relu",))
        elif n.op_type in ("Sub", "Add"):
            c = fr(const[0].reshape(-1))
            assert n.input[1] in init, "constant on the right only"
            sign = -1 if n.op_type == "Sub" else 1
            if out and out[-1][0] == "aff":
                _, w, b = out.pop()
                out.append(("aff", w, b + sign * c))
            else:
                out.append(("aff", None, sign * c))
        elif n.op_type == "MatMul":
            w = const[0] if n.input[0] in init else const[0].T  # W @ x or x @ W
            out.append(("aff", fr(w), np.array([Fraction(0)] * w.shape[0], dtype=object)))
        elif n.op_type == "Gemm":
            a_, b_ = Fraction(attrs.get("alpha", 1.0)), Fraction(attrs.get("beta", 1.0))
            w = const[0] if attrs.get("transB", 0) else const[0].T
            assert not attrs.get("transA", 0)
            bias = const[1].reshape(-1) if len(const) > 1 else np.zeros(w.shape[0])
            out.append(("aff", fr(w) * a_, fr(bias) * b_))
        else:
            raise ValueError(n.op_type)
    return out


def run_layers(layers: list, x: np.ndarray) -> np.ndarray:
    """The chain at x (object array of Fractions: exact; float array: float64)."""
    for lay in layers:
        if lay[0] == "relu":
            x = np.array([v if v > 0 else 0 * v for v in x], dtype=x.dtype)
        else:
            _, w, b = lay
            if x.dtype != object:
                w = None if w is None else w.astype(float)
                b = b.astype(float)
            x = (x if w is None else w.dot(x)) + b
    return x


def float_batch(layers: list, xs: np.ndarray) -> np.ndarray:
    """The chain at each row of xs in float64 (sampling only)."""
    for lay in layers:
        if lay[0] == "relu":
            xs = np.maximum(xs, 0)
        else:
            _, w, b = lay
            xs = (xs if w is None else xs @ w.astype(float).T) + b.astype(float)
    return xs


def segment_extreme(
    layers: list, p: list, k: int, lo: Fraction, hi: Fraction, c: list
) -> tuple[Fraction, Fraction]:
    """max over t in [lo, hi] of c·f(p with x_k = t), exactly, and an arg-max t: the segment is cut
    at every ReLU kink (a piece is affine in t), so the max is at a piece end."""
    n = len(p)
    a0 = np.array([Fraction(v) for v in p], dtype=object)
    a0[k] = Fraction(0)
    b0 = np.array([Fraction(0)] * n, dtype=object)
    b0[k] = Fraction(1)
    pieces = [(lo, hi, a0, b0)]  # value = A + t B on [tl, th]
    for lay in layers:
        new = []
        for tl, th, a, b in pieces:
            if lay[0] == "aff":
                _, w, bias = lay
                new.append((tl, th, (a if w is None else w.dot(a)) + bias, b if w is None else w.dot(b)))
                continue
            cuts = sorted({-a[j] / b[j] for j in range(len(a)) if b[j] != 0 and tl < -a[j] / b[j] < th})
            ends = [tl, *cuts, th]
            for s, e in zip(ends, ends[1:]):
                mid = (s + e) / 2
                on = np.array([a[j] + mid * b[j] > 0 for j in range(len(a))])
                z = Fraction(0)
                new.append((s, e, np.where(on, a, z), np.where(on, b, z)))
        pieces = new
    best = None
    for tl, th, a, b in pieces:
        for t in (tl, th):
            v = sum(ci * (a[j] + t * b[j]) for j, ci in enumerate(c) if ci)
            if best is None or v > best[0]:
                best = (v, t)
    return best


# ---------------------------------------------------------------- properties


def is_dec(v: Fraction) -> bool:
    """Whether v's denominator is 2^a 5^b (a terminating decimal)."""
    d = v.denominator
    while d % 2 == 0 or d % 5 == 0:
        d //= 2 if d % 2 == 0 else 5
    return d == 1


def dec(v: Fraction) -> str:
    """v as an exact VNN-LIB decimal (its denominator must be 2^a 5^b)."""
    d, k = v.denominator, 0
    while d % 10 and d != 1:
        break
    t = v.denominator
    tw = fv = 0
    while t % 2 == 0:
        t, tw = t // 2, tw + 1
    while t % 5 == 0:
        t, fv = t // 5, fv + 1
    assert t == 1, v
    k = max(tw, fv)
    num = v.numerator * 10**k // v.denominator
    s = str(abs(num)).rjust(k + 1, "0")
    s = (s[:-k] + "." + s[-k:]) if k else s + ".0"
    return ("-" if num < 0 else "") + s


def holds(atom: list, y: list) -> bool:
    """Atom [op, i, rhs]: rhs an int (Y_j) or a Fraction string."""
    op, i, rhs = atom
    r = y[rhs] if isinstance(rhs, int) else Fraction(rhs)
    return y[i] <= r if op == "<=" else y[i] >= r


def violates(disj: list, y: list) -> bool:
    """The unsafe set (an OR of ANDs) contains y."""
    return any(all(holds(a, y) for a in d) for d in disj)


def vnnlib(lo: list, hi: list, disj: list, n_out: int) -> str:
    out = [f"(declare-const X_{i} Real)" for i in range(len(lo))]
    out += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i, (a, b) in enumerate(zip(lo, hi)):
        out += [f"(assert (<= X_{i} {dec(Fraction(b))}))", f"(assert (>= X_{i} {dec(Fraction(a))}))"]
    fa = lambda t: f"({t[0]} Y_{t[1]} {('Y_' + str(t[2])) if isinstance(t[2], int) else dec(Fraction(t[2]))})"  # noqa: E731
    if len(disj) == 1:
        out += [f"(assert {fa(t)})" for t in disj[0]]
    else:
        out += ["(assert (or"] + ["    (and " + " ".join(fa(t) for t in d) + ")" for d in disj] + ["))"]
    return "\n".join(out) + "\n"


def domain(data: Path, fam: str, n_in: int) -> tuple[list, list]:
    prop = NETS[fam][1]
    if prop is None:
        return [Fraction(-1)] * n_in, [Fraction(1)] * n_in
    text = (data / prop).read_text()
    lo, hi = [None] * n_in, [None] * n_in
    for op, i, v in re.findall(r"\(assert \((<=|>=) X_(\d+) (\S+?)\)\)", text):
        (hi if op == "<=" else lo)[int(i)] = Fraction(v)
    return [Fraction(-1) if v is None else v for v in lo], [Fraction(1) if v is None else v for v in hi]


def q(v: float, digits: int = 8) -> Fraction:
    return Fraction(round(v * 10**digits), 10**digits)


def rand_disj(rng, ys: np.ndarray) -> list:
    """1-3 disjuncts of 1-3 atoms, thresholds at random quantiles of the sampled outputs."""
    n_out = ys.shape[1]
    disj = []
    for _ in range(rng.integers(1, 4)):
        d = []
        for _ in range(rng.integers(1, 4)):
            i = int(rng.integers(n_out))
            if n_out > 1 and rng.random() < 0.35:
                j = int(rng.choice([t for t in range(n_out) if t != i]))
                d.append(["<=", i, j])
            else:
                op = "<=" if rng.random() < 0.5 else ">="
                qq = rng.uniform(0.0, 0.2) if op == "<=" else rng.uniform(0.8, 1.0)
                d.append([op, i, str(q(float(np.quantile(ys[:, i], qq)), 6))])
        disj.append(d)
    return disj


def gen(args) -> None:
    rng = np.random.default_rng(args.seed)
    data, out = Path(args.data), Path(args.out)
    (out / "props").mkdir(parents=True, exist_ok=True)
    metas = []

    def emit(fam, kind, lo, hi, disj, known, witness=None, note=""):
        name = f"{len(metas):03d}_{fam}_{kind}"
        n_out = nets[fam][1]
        (out / "props" / f"{name}.vnnlib").write_text(vnnlib(lo, hi, disj, n_out))
        metas.append(
            {
                "name": name,
                "family": fam,
                "kind": kind,
                "onnx": str(data / NETS[fam][0]),
                "lo": [str(v) for v in lo],
                "hi": [str(v) for v in hi],
                "disj": disj,
                "known": known,
                "witness": None if witness is None else [str(v) for v in witness],
                "note": note,
            }
        )

    nets = {}
    for fam in NETS:
        lay = layers_of(str(data / NETS[fam][0]))
        n_in = next(
            len(w[0]) if w is not None else len(b) for _, w, b in [t for t in lay if t[0] == "aff"][:1]
        )
        n_out = len([t for t in lay if t[0] == "aff"][-1][2])
        nets[fam] = (lay, n_out, n_in)

    def sample(fam, lo, hi, n=2000):
        lay, _, n_in = nets[fam]
        lf, hf = np.array([float(v) for v in lo]), np.array([float(v) for v in hi])
        xs = lf + rng.random((n, n_in)) * (hf - lf)
        return float_batch(lay, xs)

    def rand_box(fam, scale):
        lay, _, n_in = nets[fam]
        dlo, dhi = domain(data, fam, n_in)
        lo, hi = [], []
        for a, b in zip(dlo, dhi):
            w = float(b - a) if b > a else 1.0
            c = float(a) + rng.random() * float(b - a)
            e = scale * w / 2
            lo.append(q(c - e, 10)), hi.append(q(c + e, 10))
        return lo, hi

    big = ["acas_1_1", "acas_2_3", "acas_2_7", "cartpole", "lunarlander", "vdp", "gcas", "test_sat"]
    for fam in big + ["mnist_256x2"]:  # rand: one per net, two on the small ones
        for _ in range(1 if fam.startswith("mnist") else 2):
            lo, hi = rand_box(fam, 10 ** rng.uniform(-3, -0.3) if not fam.startswith("mnist") else 0.02)
            emit(fam, "rand", lo, hi, rand_disj(rng, sample(fam, lo, hi)), "")
    for fam in ["acas_1_1", "cartpole", "vdp", "gcas", "mnist_256x2"]:
        lo, hi = rand_box(fam, 10 ** rng.uniform(-9, -6))
        emit(fam, "tiny", lo, hi, rand_disj(rng, sample(fam, lo, hi)), "")
    for fam in ["acas_2_7", "lunarlander", "vdp", "test_sat"]:
        lo, hi = rand_box(fam, 10 ** rng.uniform(1, 3))
        emit(fam, "huge", lo, hi, rand_disj(rng, sample(fam, lo, hi)), "")
    for fam in ["acas_1_1", "acas_2_3", "cartpole", "lunarlander", "vdp", "gcas", "test_sat", "test_small"]:
        lay, n_out, n_in = nets[fam]
        lo, hi = rand_box(fam, 10 ** rng.uniform(-1.5, -0.3))
        k = int(rng.integers(n_in))
        p = [(a + b) / 2 for a, b in zip(lo, hi)]
        p = [q(float(v), 6) for v in p]
        slo, shi = list(p), list(p)
        slo[k], shi[k] = lo[k], hi[k]
        i, sgn = int(rng.integers(n_out)), (1 if rng.random() < 0.5 else -1)
        c = [0] * n_out
        c[i] = sgn
        m, t = segment_extreme(lay, p, k, lo[k], hi[k], c)
        m_lo = m_hi = m
        if not is_dec(m):  # the arg-max is a kink whose value is no decimal: M within 1e-40 (below for
            m_lo = Fraction(m.numerator * 10**40 // m.denominator, 10**40)  # the sat one, above for unsat)
            m_hi = m_lo + Fraction(1, 10**40)
        wit = list(p)
        wit[k] = t
        op = ">=" if sgn > 0 else "<="
        extra = [["<=", j, i] if sgn > 0 else [">=", j, i] for j in range(n_out) if j != i][:0]
        emit(fam, "seg-eq", slo, shi, [[[op, i, str(sgn * m_lo)], *extra]], "sat", wit, f"argmax t={t}")
        emit(fam, "seg-above", slo, shi, [[[op, i, str(sgn * (m_hi + DELTA))]]], "unsat", None, "M + 1e-12")
    for fam in ["acas_2_7", "cartpole", "gcas", "mnist_256x2"]:
        lay, n_out, n_in = nets[fam]
        lo, hi = rand_box(fam, 0.1)
        p = [q(float(a + b) / 2, 6) for a, b in zip(lo, hi)]
        y = run_layers(lay, np.array(p, dtype=object))
        i = int(rng.integers(n_out))
        emit(
            fam,
            "point-eq",
            p,
            p,
            [[["<=", i, str(y[i])]], [[">=", (i + 1) % n_out, str(y[(i + 1) % n_out] + 1)]]],
            "sat",
            p,
        )
        emit(fam, "point-above", p, p, [[[">=", i, str(y[i] + DELTA)]]], "unsat")
    for fam in ["acas_1_1", "acas_2_3", "cartpole", "vdp", "test_sat"]:
        lay, n_out, n_in = nets[fam]
        lo, hi = rand_box(fam, 10 ** rng.uniform(-2, -0.5))
        verts = [[lo[j] if (v >> j) & 1 else hi[j] for j in range(n_in)] for v in range(min(2**n_in, 64))]
        i = int(rng.integers(n_out))
        ys = float_batch(lay, np.array([[float(t) for t in v] for v in verts]))
        best = verts[int(np.argmax(ys[:, i]))]
        y = run_layers(lay, np.array(best, dtype=object))
        emit(fam, "vertex", lo, hi, [[[">=", i, str(y[i])]]], "sat", best)
    # 1-input test nets: a box that ends at a kink (exactly where it is a decimal, else within 1e-30)
    for fam in ["test_nano", "test_tiny", "test_small"]:
        lay, n_out, n_in = nets[fam]
        w, b = lay[0][1], lay[0][2]
        kinks = sorted({-b[j] / w[j][0] for j in range(len(b)) if w[j][0] != 0})
        kk = kinks[int(rng.integers(len(kinks)))]
        kd = kk if kk.denominator == 1 else q(float(kk), 30)
        for side, (lo, hi) in (("left", (kd - 1, kd)), ("right", (kd, kd + 1))):
            m, t = segment_extreme(lay, [kd], 0, lo, hi, [1] + [0] * (n_out - 1))
            emit(fam, f"kink-{side}", [lo], [hi], [[[">=", 0, str(m)]]], "sat", [t], f"kink {kk}")
            emit(fam, f"kink-{side}-above", [lo], [hi], [[[">=", 0, str(m + DELTA)]]], "unsat")
    (out / "meta.json").write_text(json.dumps(metas, indent=1))
    print(f"{len(metas)} instances in {out}")


# ---------------------------------------------------------------- running both tools


def exact_check(meta: dict, x: list[Fraction], layers: list) -> tuple[bool, bool]:
    """(x in the box, the exact outputs at x violate the property)."""
    inbox = all(Fraction(a) <= v <= Fraction(b) for v, a, b in zip(x, meta["lo"], meta["hi"]))
    y = list(run_layers(layers, np.array(x, dtype=object)))
    return inbox, violates(meta["disj"], y)


def ort_check(meta: dict, x: list[float]) -> bool:
    import onnxruntime as ort

    s = ort.InferenceSession(meta["onnx"], providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    y = s.run(None, {inp.name: np.array(x, dtype=np.float32).reshape(shape)})[0].reshape(-1)
    return violates(meta["disj"], [Fraction(float(v)) for v in y])


def run(args) -> None:
    d = Path(args.dir)
    metas = json.loads((d / "meta.json").read_text())
    rows, cache = [], {}
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    for idx, m in enumerate(metas):
        if args.only and not re.search(args.only, m["name"]):
            continue
        prop = d / "props" / f"{m['name']}.vnnlib"
        lay = cache.setdefault(m["onnx"], layers_of(m["onnx"]))
        row = {"name": m["name"], "family": m["family"], "kind": m["kind"], "known": m["known"]}
        if m["witness"]:  # the generator's witness, judged exactly here
            inb, vio = exact_check(m, [Fraction(v) for v in m["witness"]], lay)
            assert inb and vio, m["name"]
        with tempfile.TemporaryDirectory() as tmp:
            cert = Path(tmp) / "c.json"
            t = time.perf_counter()
            p = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "torchlean.verify",
                    m["onnx"],
                    str(prop),
                    "--timeout",
                    str(args.timeout),
                    "--cert",
                    str(cert),
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=args.timeout + 60,
            )
            row["tl_s"] = f"{time.perf_counter() - t:.2f}"
            first = (p.stdout.strip().splitlines() or ["error"])[0].strip()
            row["tl"] = (
                first if first in ("sat", "unsat") else ("timeout" if "timeout" in first else first[:30])
            )
            row["tl_x_exact"] = ""
            if row["tl"] == "sat":
                x = [Fraction(v) for v in json.loads(cert.read_text())["x"]]
                inb, vio = exact_check(m, x, lay)
                row["tl_x_exact"] = "yes" if inb and vio else f"NO(inbox={inb},viol={vio})"
            out = Path(tmp) / "nn.json"
            t = time.perf_counter()
            try:
                subprocess.run(
                    [args.nnenum_python, args.nnenum_run, m["onnx"], str(prop), str(args.timeout), str(out)],
                    capture_output=True,
                    text=True,
                    env={**env, "PYTHONPATH": args.nnenum_src},
                    timeout=args.timeout + 30,
                    start_new_session=True,
                )
            except subprocess.TimeoutExpired:
                pass
            row["nn_s"] = f"{time.perf_counter() - t:.2f}"
            res = json.loads(out.read_text()) if out.is_file() else {"result": "error", "cinput": None}
            r = res["result"]
            row["nn"] = (
                "unsat" if r == "safe" else "sat" if "unsafe" in r else ("timeout" if "timeout" in r else r)
            )
            row["nn_x_exact"] = row["nn_x_ort"] = row["nn_x"] = ""
            if row["nn"] == "sat" and res["cinput"]:
                x = [Fraction(v) for v in res["cinput"]]
                inb, vio = exact_check(m, x, lay)
                row["nn_x_exact"] = "yes" if inb and vio else f"no(inbox={inb},viol={vio})"
                if not inb:  # nnenum rounds its box to the net's input dtype (float32): clamp, judge again
                    xc = [min(max(v, Fraction(a)), Fraction(b)) for v, a, b in zip(x, m["lo"], m["hi"])]
                    gap = max(abs(float(u - v)) for u, v in zip(x, xc))
                    row["nn_x_exact"] += f";clamped({gap:.1e}):" + (
                        "yes" if exact_check(m, xc, lay)[1] else "no"
                    )
                row["nn_x"] = json.dumps(res["cinput"]) if len(res["cinput"]) <= 16 else ""
                row["nn_x_ort"] = "yes" if ort_check(m, res["cinput"]) else "no"
        truth_sat = m["known"] == "sat" or row["nn_x_exact"] == "yes" or row["nn_x_exact"].endswith(":yes")
        flags = []
        if row["tl"] == "unsat" and truth_sat:
            flags.append("HOLE:tl-unsat-vs-exact-sat")
        if row["tl"] == "sat" and row["tl_x_exact"] != "yes":
            flags.append("HOLE:tl-sat-rejected")
        if row["tl"] == "sat" and m["known"] == "unsat":
            flags.append("HOLE:tl-sat-vs-known-unsat")
        if row["nn"] == "unsat" and (m["known"] == "sat" or row["tl"] == "sat"):
            flags.append("nnenum-unsat-vs-sat")
        if row["nn"] == "sat" and (m["known"] == "unsat" or not row["nn_x_exact"].endswith("yes")):
            flags.append("nnenum-sat-unconfirmed")
        elif row["nn"] == "sat" and row["nn_x_exact"] != "yes":
            flags.append("nnenum-x-off-box")
        row["flags"] = ";".join(flags)
        rows.append(row)
        print(idx, row, flush=True)
        with open(d / "results.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


def table(path: str) -> None:
    """The agreement table of a results.csv, by kind (left/right kink boxes merged)."""
    rows = list(csv.DictReader(open(path)))
    kind = lambda r: r["kind"].replace("-left", "").replace("-right", "")  # noqa: E731
    head = ["kind", "n", "known sat/unsat", "torchlean sat/unsat/other", "nnenum sat/unsat/other",
            "sat-vs-unsat clashes", "nnenum sat, point rejected", "nnenum point off box", "HOLES"]
    print("| " + " | ".join(head) + " |")
    print("| --- |" + " ---: |" * (len(head) - 1))

    def line(name: str, rs: list) -> None:
        def svo(tool: str) -> str:
            s, u = sum(r[tool] == "sat" for r in rs), sum(r[tool] == "unsat" for r in rs)
            return f"{s}/{u}/{len(rs) - s - u}"

        known = f"{sum(r['known'] == 'sat' for r in rs)}/{sum(r['known'] == 'unsat' for r in rs)}"
        clash = sum({r["tl"], r["nn"]} == {"sat", "unsat"} for r in rs)
        bad = sum("nnenum-sat-unconfirmed" in r["flags"] for r in rs)
        off = sum("nnenum-x-off-box" in r["flags"] for r in rs)
        holes = sum("HOLE" in r["flags"] for r in rs)
        cells = [name, len(rs), known, svo("tl"), svo("nn"), clash, bad, off, holes]
        print("| " + " | ".join(str(c) for c in cells) + " |")

    for k in sorted({kind(r) for r in rows}):
        line(k, [r for r in rows if kind(r) == k])
    line("all", rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=52)
    g.add_argument("--data", default="../shared/data")
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("--timeout", type=float, default=20)
    r.add_argument("--only", default="")
    r.add_argument("--nnenum-python", required=True)
    r.add_argument("--nnenum-src", required=True)
    r.add_argument("--nnenum-run", required=True)
    t = sub.add_parser("table")
    t.add_argument("results")
    a = ap.parse_args()
    {"gen": gen, "run": run, "table": lambda a: table(a.results)}[a.cmd](a)


if __name__ == "__main__":
    main()
