"""Time to the counterexample, /work/main's verifier against this tree's, on sat instances.

    OPENBLAS_NUM_THREADS=1 python bench/bench_falsify.py [--timeout 30]
        [--suites acasxu,rl,density,mnistfc,hard] [--limit 8] [--main /work/main]
        [--data /work/shared/data] [--out bench/results_falsify.csv]
        [--list bench/instances/gen_s0/mnistfc.csv]

Suites: the published sat instances of acasxu, rl_benchmarks, reach_prob_density and mnistfc
(``expected.csv``; ``--limit`` keeps N per suite, evenly spaced), and ``hard``: sat instances made
here on the shared networks (written to a temporary folder, regenerated identically from the seed).
A suite named ``acasxu_unsat`` (any shared suite + ``_unsat``) runs its published unsat instances
instead: the cost of the falsification on proofs (time to the unsat verdict).

- ``tight``: on a shared property's input box, the unsafe set Y_0 - Y_1 <= t and Y_1 - Y_2 <= t
  (Y_0 - Y_1 <= t for two outputs, Y_0 <= t for one) with t just above the minimum of the larger
  of the two that a long PGD run finds (t = m* + 0.0002·(median - m*) over
  random samples): the counterexamples form a tiny set around that minimum;
- ``shrunk``: the same threshold on a box 1-5 % of the original's width per side around the PGD
  minimiser, placed off-centre;
- ``basin``: the same unsafe set on the full box with the threshold between the minimum a short
  attack reaches (the verifier's own pre-search settings) and the lower one a long run (4096
  random starts, 256 corners, 60 steps) reaches: only the long run's basin is unsafe (made only
  where the two differ).

``--list`` adds the sat rows of generated instance lists (``bench/gen_instances.py``: an
instances.csv, or a subset of one, with its ``meta.csv`` beside it; comma-separated), suite
"list:<folder>".

Each instance is solved in its own process per version (PYTHONPATH=--main, then this tree), with
the same timeout: ``load_instance``, then ``bab.verify`` (ReLU chains) or ``general.verify_target``;
the time printed is the solver's (loading excluded). Every sat answer is checked twice: the checker
replays its vnn-sat certificate (exact rationals), and onnxruntime (float32, the ONNX file) must
find the property's unsafe set met at the point (column ``ort``; a tight instance's margin may be
below float32's resolution, then ``ort`` reads "near" with the float margin). Prints per instance the
two times and main/new (> 1: faster now), and totals; 'wrong' counts sat answers the checker
refused or published-unsat instances answered sat (must be 0).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SUITES = {"acasxu": "vnncomp2021/acasxu", "mnistfc": "vnncomp2021/mnistfc",
          "rl": "vnncomp2022/rl_benchmarks", "density": "vnncomp2022/reach_prob_density"}

#: the solver, run in a fresh process under either tree's PYTHONPATH (before and after issue 14
#: removed the chain engine: ``load_instance`` gives (net, target, spec) or (target, spec))
WORKER = r"""
import json, sys, time
from torchlean.verify.table import load_instance, check
from torchlean.verify.bab import verify
from torchlean.certificates.bounds import check_vnn
net_path, prop_path, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
got = load_instance(net_path, prop_path)
t = time.perf_counter()
if len(got) == 2:  # (a tree without the chain engine: one target for every network)
    from torchlean.verify.bab import solve
    tgt, spec = got
    res = solve(tgt, spec, timeout=timeout)
    net = None
else:
    net, tgt, spec = got
    if tgt is None:
        res = verify(net, spec, timeout=timeout)
    else:
        from torchlean.verify.general import verify_target
        res = verify_target(tgt, spec, timeout=timeout)
dt = time.perf_counter() - t
ok = None
if res.verdict == "sat":
    ok = (check_vnn(res.cert, net, spec) if tgt is None else check(res.cert, tgt, spec)).ok
print(json.dumps({"verdict": res.verdict, "time": dt, "checked": ok,
                  "x": None if res.x is None else [str(v) for v in res.x]}))
"""


def solve(tree: str, onnx: Path, prop: Path, timeout: float) -> dict:
    """One instance in a fresh process on ``tree``'s torchlean."""
    env = {**os.environ, "PYTHONPATH": tree, "OPENBLAS_NUM_THREADS": "1"}
    try:
        p = subprocess.run([sys.executable, "-c", WORKER, str(onnx), str(prop), str(timeout)], env=env,
                           capture_output=True, text=True, timeout=timeout + 120)
    except subprocess.TimeoutExpired:
        return {"verdict": "killed", "time": float("nan"), "checked": None, "x": None}
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  ({tree}: {tail})", file=sys.stderr)
        return {"verdict": "error", "time": float("nan"), "checked": None, "x": None, "why": tail}
    return json.loads(p.stdout.strip().splitlines()[-1])


def ort_margin(onnx: Path, prop: Path, x: list[str]) -> tuple[bool, float]:
    """(onnxruntime's float32 outputs at x meet the unsafe set, the smallest float margin)."""
    from fractions import Fraction

    from bench_vnncomp import ort_violates

    from torchlean.certificates.property import parse_property
    from torchlean.verify.attack import margins

    xs = [float(Fraction(v)) for v in x]
    ok = ort_violates(onnx, prop, xs)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    y = np.concatenate([np.asarray(o, np.float64).ravel()
                        for o in sess.run(None, {inp.name: np.array(xs, np.float32).reshape(shape)})])
    spec = parse_property(prop.read_text())
    return ok, float(min(margins(r, y[None]).min() for r in spec.regions))


def listed(paths: str) -> list[tuple[str, Path, Path, str]]:
    """The rows of generated instance lists whose ``meta.csv`` holds a witness (expected sat)."""
    out = []
    for p in filter(None, paths.split(",")):
        base = Path(p).parent
        meta = {(r["onnx"], r["vnnlib"]): r for r in csv.DictReader(open(base / "meta.csv"))}
        for row in csv.reader(open(p)):
            m = meta.get((row[0], row[1])) if len(row) > 1 else None
            if m is not None and m["expected"] == "sat":
                out.append((f"list:{base.name}", (base / row[0]).resolve(), base / row[1], "sat"))
    return out


def shared(data: Path, suites: list[str], limit: int) -> list[tuple[str, Path, Path, str]]:
    out = []
    for s in suites:
        name, _, want = s.partition("_")
        if name not in SUITES:
            continue
        want = want or "sat"
        base = data / SUITES[name]
        rows = [r for r in csv.DictReader(open(base / "expected.csv")) if r["expected"] == want]
        if limit == 1:
            rows = rows[:1]
        elif limit and len(rows) > limit:
            rows = [rows[round(i * (len(rows) - 1) / (limit - 1))] for i in range(limit)]
        out += [(s, base / r["onnx"], base / r["vnnlib"], want) for r in rows]
    return out


#: (suite folder, onnx, property whose first box the hard instances use)
HARD_BASES = [
    ("vnncomp2021/acasxu", "ACASXU_run2a_1_1_batch_2000.onnx", "prop_1.vnnlib"),
    ("vnncomp2021/acasxu", "ACASXU_run2a_2_1_batch_2000.onnx", "prop_3.vnnlib"),
    ("vnncomp2021/acasxu", "ACASXU_run2a_1_5_batch_2000.onnx", "prop_7.vnnlib"),
    ("vnncomp2021/acasxu", "ACASXU_run2a_2_5_batch_2000.onnx", "prop_1.vnnlib"),
    ("vnncomp2021/acasxu", "ACASXU_run2a_2_9_batch_2000.onnx", "prop_7.vnnlib"),
    ("vnncomp2021/acasxu", "ACASXU_run2a_1_9_batch_2000.onnx", "prop_2.vnnlib"),
    ("vnncomp2022/rl_benchmarks", "onnx/lunarlander.onnx", "vnnlib/lunarlander_case_safe_2.vnnlib"),
    ("vnncomp2022/rl_benchmarks", "onnx/cartpole.onnx", "vnnlib/cartpole_case_unsafe_0.vnnlib"),
    ("vnncomp2022/reach_prob_density", "onnx/vdp.onnx", "vnnlib/vdp_0.vnnlib"),
    ("vnncomp2022/reach_prob_density", "onnx/gcas.onnx", "vnnlib/gcas_1.vnnlib"),
]


def _num(v: float) -> str:
    """A decimal VNN-LIB reads (no exponent), exactly the float's value to 17 digits."""
    return np.format_float_positional(float(v), unique=True, trim="-")


def _vnnlib(lo: np.ndarray, hi: np.ndarray, n_out: int, exprs: list[str], t: float) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(lo.size)]
    lines += [f"(declare-const Y_{i} Real)" for i in range(n_out)]
    for i, (a, b) in enumerate(zip(lo, hi)):
        lines += [f"(assert (>= X_{i} {_num(a)}))", f"(assert (<= X_{i} {_num(b)}))"]
    lines += [f"(assert (<= {e} {_num(t)}))" for e in exprs]
    return "\n".join(lines) + "\n"


def _basin(ex, A, b, lo, hi, rng) -> float | None:
    """A threshold between the minimum a short attack (the verifier's own settings before its
    search: 2000 samples, PGD from the best 64) reaches and the lower one a long run (4096 random
    starts and 256 corners, 60 steps) reaches, or None when the short attack already reaches it:
    only the long run's basin is then unsafe."""
    from torchlean.verify import attack

    d = lo.size
    x = lo + rng.random((2000, d)) * (hi - lo)
    vs = (ex.forward(x) @ A.T - b).max(1)
    _, v_short = attack.pgd(ex, A, b, x[np.argsort(vs)[:64]], lo, hi, steps=40, decay=0.85)
    starts = np.concatenate([lo + rng.random((4096, d)) * (hi - lo),
                             np.where(rng.integers(0, 2, (256, d)).astype(bool), hi, lo)])
    _, v_long = attack.pgd(ex, A, b, starts, lo, hi, steps=60, decay=0.92)
    m_short, m_long = float(v_short.min()), float(v_long.min())
    spread = float(np.median(vs)) - m_long
    if not m_long < m_short - 1e-3 * spread:
        return None
    return m_long + 0.25 * (m_short - m_long)


def hard(data: Path, folder: Path, seed: int = 0) -> list[tuple[str, Path, Path, str]]:
    """The tight and shrunk instances (module docstring), written to ``folder``."""
    from torchlean.verify import attack
    from torchlean.verify.table import load_instance

    rng = np.random.default_rng(seed)
    out = []
    for sub, onnx, prop in HARD_BASES:
        net_path = data / sub / onnx
        if not net_path.is_file():
            continue
        tgt, spec = load_instance(net_path, data / sub / prop)
        ex = tgt.ex
        r = spec.regions[0]
        lo = np.array([float(v) for v in r.lo])
        hi = np.array([float(v) for v in r.hi])
        n_out = spec.n_out
        # one atom Y_0 (- Y_1), or with three outputs or more the conjunction of two differences
        A = np.zeros((1 if n_out < 3 else 2, n_out))
        A[0, 0], exprs = 1.0, ["Y_0"]
        if n_out > 1:
            A[0, 1], exprs = -1.0, ["(- Y_0 Y_1)"]
        if n_out > 2:
            A[1, 1], A[1, 2] = 1.0, -1.0
            exprs.append("(- Y_1 Y_2)")
        b = np.zeros(A.shape[0])
        x0 = lo + rng.random((4000, lo.size)) * (hi - lo)
        v0 = (ex.forward(x0) @ A.T).max(1)
        z, v = attack.pgd(ex, A, b, np.concatenate([x0[np.argsort(v0)[:256]], lo + rng.random((256, lo.size))
                                                   * (hi - lo)]), lo, hi, steps=150, decay=0.96)
        k = int(np.argmin(v))
        m, med = float(v[k]), float(np.median(v0))
        t = m + 2e-4 * (med - m)
        stem = Path(onnx).stem + "_" + Path(prop).stem
        basin = _basin(ex, A, b, lo, hi, rng)
        if basin is not None:
            p = folder / f"{stem}_basin.vnnlib"
            p.write_text(_vnnlib(lo, hi, n_out, exprs, basin))
            out.append(("hard", net_path, p, "sat"))
        p = folder / f"{stem}_tight.vnnlib"
        p.write_text(_vnnlib(lo, hi, n_out, exprs, t))
        out.append(("hard", net_path, p, "sat"))
        w = hi - lo
        slo = np.maximum(lo, z[k] - rng.uniform(0.01, 0.05, lo.size) * w)
        shi = np.minimum(hi, z[k] + rng.uniform(0.01, 0.05, lo.size) * w)
        p = folder / f"{stem}_shrunk.vnnlib"
        p.write_text(_vnnlib(slo, shi, n_out, exprs, t))
        out.append(("hard", net_path, p, "sat"))
    return out


def _cell(r: dict, t: float) -> str:
    return f"{t:8.2f}" if np.isfinite(t) else f"{r['verdict'][:8]:>8}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--suites", default="acasxu,rl,density,mnistfc,hard")
    ap.add_argument("--limit", type=int, default=8, help="sat instances kept per shared suite (0: all)")
    ap.add_argument("--main", default="/work/main")
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--out", default=None, help="csv of the per-instance results")
    ap.add_argument("--list", default="", help="generated instance lists (their sat rows), comma-separated")
    a = ap.parse_args()
    data, suites = Path(a.data), a.suites.split(",")
    rows = []
    wrong = 0
    with tempfile.TemporaryDirectory() as tmp:
        todo = shared(data, suites, a.limit) + (hard(data, Path(tmp)) if "hard" in suites else [])
        todo += listed(a.list)
        print(f"{'suite':8} {'instance':58} {'main_s':>8} {'new_s':>8} {'main/new':>8}  ort", flush=True)
        for suite, onnx, prop, exp in todo:
            r_main = solve(a.main, onnx, prop, a.timeout)
            r_new = solve(str(ROOT), onnx, prop, a.timeout)
            ort = ""
            for r in (r_main, r_new):
                if r["verdict"] == "sat":
                    if not r["checked"] or exp == "unsat":
                        wrong += 1
                    ok, marg = ort_margin(onnx, prop, r["x"])
                    ort += "yes " if ok else f"near({marg:.1e}) " if marg < 1e-4 else "NO "
            tm = r_main["time"] if r_main["verdict"] == exp else float("inf")
            tn = r_new["time"] if r_new["verdict"] == exp else float("inf")
            ratio = tm / tn if np.isfinite(tn) else (float("nan") if not np.isfinite(tm) else 0.0)
            name = f"{onnx.stem}/{prop.stem}"[-58:]
            print(f"{suite:8} {name:58} {_cell(r_main, tm)} {_cell(r_new, tn)} {ratio:8.2f}  {ort}",
                  flush=True)
            rows.append({"suite": suite, "instance": name, "expected": exp, "main": r_main["verdict"],
                         "main_s": r_main["time"], "new": r_new["verdict"], "new_s": r_new["time"],
                         "ort": ort.strip()})
    n = len(rows)
    sm = sum(r["main"] == r["expected"] for r in rows)
    sn = sum(r["new"] == r["expected"] for r in rows)
    both = [r for r in rows if r["main"] == r["expected"] == r["new"]]
    tm, tn = sum(r["main_s"] for r in both), sum(r["new_s"] for r in both)
    print(f"\n{n} instances: solved (the expected verdict) by main {sm}, by new {sn}; wrong {wrong}")
    if both:
        print(f"on the {len(both)} both found: total main {tm:.2f} s, new {tn:.2f} s, "
              f"main/new {tm / max(tn, 1e-9):.2f}")
    if a.out:
        with open(a.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
