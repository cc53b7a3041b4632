"""Exact (non-float32) counterexamples: two torchlean trees on audit52's properties, interleaved.

    OPENBLAS_NUM_THREADS=1 nice python bench/exact_cex_ab.py BASE_TREE NEW_TREE AUDIT52_DIR \
        --timeout 20 --out results.csv [--only REGEX] [--float32]
    python bench/exact_cex_ab.py --table results.csv

AUDIT52_DIR is what ``bench/audit52_vs_nnenum.py gen`` wrote (``meta.json``, ``props/``). Per
property, both trees run ``python -m torchlean.verify NET PROP --timeout T --cert C.json`` (order
alternating from property to property, so load drifts hit both alike); a sat's certificate point
is judged by audit52's own exact evaluation (``exact_check``: in the exact box, exact outputs
violate), and onnxruntime's float32 run at the point rounded to float32 is recorded too (``ort``:
whether that float32 point also violates: the honest-label column, it decides nothing). WRONG =
a sat whose point exact evaluation rejects, or an unsat where the property is known sat.

``--float32``: both trees run ``verify NET PROP --float32`` (the network run in binary32). A sat's
printed point (stdout's X_i, exact decimals) is judged by this file's own float32 runs of audit52's
reading of the weights: in the exact box, every X_i a binary32 number, and the outputs of a numpy
float32 run (W @ x, then + b, per layer) *and* of a left-to-right float32 run (each product and
sum rounded to float32, as the bit-exact emulation) meet the unsafe set exactly (``f32``); the
onnxruntime float32 run at the point is recorded (``ort``). ``known32`` is an independent search
for a float32 counterexample near audit52's witness (binary32 grid points a few steps around it,
both float32 runs): "sat" when one is found ("" when none: no truth then). WRONG = a sat whose
point fails ``f32``, or an unsat where ``known32`` or the other tree found a point ``f32`` passes.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np  # noqa: E402
from audit52_vs_nnenum import exact_check, layers_of, ort_check, violates  # noqa: E402


def f32_forward(layers: list, x32: np.ndarray, seq: bool = False) -> np.ndarray:
    """audit52's chain run in float32: numpy's W @ x then + b per layer, or (``seq``) every dot
    product summed left to right with each product and sum rounded to float32."""
    h = np.asarray(x32, dtype=np.float32)
    for lay in layers:
        if lay[0] == "relu":
            h = np.maximum(h, np.float32(0))
            continue
        _, w, b = lay
        if w is not None:
            W = np.array([[float(v) for v in r] for r in w], dtype=np.float32)
            if seq:
                out = []
                for r in W:
                    acc = np.float32(0)
                    for a, c in zip(r, h):
                        acc = np.float32(acc + np.float32(a * c))
                    out.append(acc)
                h = np.array(out, dtype=np.float32)
            else:
                h = W @ h
        h = (h + np.array([float(v) for v in b], dtype=np.float32)).astype(np.float32)
    return h


def f32_check(meta: dict, x: list[Fraction], layers: list) -> bool:
    """In the exact box, binary32 values, and both float32 runs' outputs meet the unsafe set."""
    if not all(Fraction(a) <= v <= Fraction(b) for v, a, b in zip(x, meta["lo"], meta["hi"])):
        return False
    if not all(Fraction(float(np.float32(float(v)))) == v for v in x):
        return False
    x32 = np.array([float(v) for v in x], dtype=np.float32)
    return all(violates(meta["disj"], [Fraction(float(v)) for v in f32_forward(layers, x32, seq)])
               for seq in (False, True))


def known32(meta: dict, layers: list, seed: int = 0) -> str:
    """"sat" when a binary32 point near audit52's witness passes ``f32_check`` (the grid of -2..2
    float32 steps per input up to 5 inputs, -1..1 up to 8, else 3,000 random -1..1 mixes; the
    numpy run first, the left-to-right one on its hits), else ""."""
    if not meta.get("witness") or len(meta["lo"]) > 64:
        return ""
    w = np.array([float(Fraction(v)) for v in meta["witness"]], dtype=np.float32)
    n = w.size
    k = 2 if n <= 5 else 1
    if n <= 8:
        grid = np.array(list(itertools.product(range(-k, k + 1), repeat=n)))
    else:
        grid = np.random.default_rng(seed).integers(-1, 2, (3000, n))
    lo = np.array([float(Fraction(v)) for v in meta["lo"]])
    hi = np.array([float(Fraction(v)) for v in meta["hi"]])
    for d in grid:
        x = w.copy()
        for i, s in enumerate(d):
            for _ in range(abs(int(s))):
                x[i] = np.nextafter(x[i], np.float32(np.inf if s > 0 else -np.inf))
        if not np.all((lo <= x) & (x <= hi)):
            continue
        if not violates(meta["disj"], [Fraction(float(v)) for v in f32_forward(layers, x)]):
            continue
        if f32_check(meta, [Fraction(float(v)) for v in x], layers):
            return "sat"
    return ""


def one(tree: str, meta: dict, prop: Path, timeout: float, lay: list, float32: bool = False) -> dict:
    env = {**os.environ, "PYTHONPATH": tree, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        cert = Path(tmp) / "c.json"
        t = time.perf_counter()
        extra = ["--float32"] if float32 else ["--cert", str(cert)]
        p = subprocess.run([sys.executable, "-m", "torchlean.verify", meta["onnx"], str(prop), "--timeout",
                            str(timeout), *extra], capture_output=True, text=True, env=env,
                           timeout=timeout + 60, cwd=tree)
        s = time.perf_counter() - t
        first = (p.stdout.strip().splitlines() or ["error"])[0].strip()
        if float32:
            first = first.split(" (")[0]
        v = first if first in ("sat", "unsat", "timeout") else first[:30]
        noted = int("exact rational point" in p.stderr)
        out = {"v": v, "s": round(s, 2), "exact": "", "ort": "", "note": noted}
        if v == "sat" and float32:
            x = [Fraction(q) for _, q in sorted((int(i), q) for i, q in re.findall(
                r"\(X_(\d+) ([-+0-9.eE]+)\)", p.stdout))]
            out["exact"] = "yes" if len(x) == len(meta["lo"]) and f32_check(meta, x, lay) else "NO"
            out["ort"] = "yes" if ort_check(meta, [float(q) for q in x]) else "no"
        elif v == "sat":
            x = [Fraction(q) for q in json.loads(cert.read_text())["x"]]
            inb, vio = exact_check(meta, x, lay)
            out["exact"] = "yes" if inb and vio else f"NO(inbox={inb},viol={vio})"
            out["ort"] = "yes" if ort_check(meta, [float(q) for q in x]) else "no"
        return out


def run(args: argparse.Namespace) -> None:
    d = Path(args.dir)
    metas = json.loads((d / "meta.json").read_text())
    rows, cache = [], {}
    for k, m in enumerate(metas):
        if args.only and not re.search(args.only, m["name"]):
            continue
        lay = cache.setdefault(m["onnx"], layers_of(m["onnx"]))
        prop = d / "props" / f"{m['name']}.vnnlib"
        order = [("base", args.base), ("new", args.new)]
        res = {}
        for name, tree in order if k % 2 == 0 else order[::-1]:
            res[name] = one(tree, m, prop, args.timeout, lay, args.float32)
        known = m["known"]
        if args.float32:  # (the real verdict is no float32 truth: ``known32`` and both trees' sats)
            known = known32(m, lay) or ("sat" if any(r["v"] == "sat" and r["exact"] == "yes"
                                                    for r in res.values()) else "")
        row = {"name": m["name"], "kind": m["kind"], "known": known}
        for name in ("base", "new"):
            r = res[name]
            wrong = (r["v"] == "sat" and r["exact"] != "yes") or (r["v"] == "unsat" and known == "sat")
            row.update({f"{name}": r["v"], f"{name}_s": r["s"], f"{name}_exact": r["exact"],
                        f"{name}_ort": r["ort"], f"{name}_note": r["note"], f"{name}_wrong": int(wrong)})
        rows.append(row)
        print(row, flush=True)
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


def table(path: str) -> None:
    rows = list(csv.DictReader(open(path)))
    print("| tree | sat | unsat | other | wrong | sum of wall s | sats whose point is no float32 (noted) "
          "| of those, onnxruntime's float32 rounding violates |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t in ("base", "new"):
        s = sum(r[t] == "sat" for r in rows)
        u = sum(r[t] == "unsat" for r in rows)
        noted = [r for r in rows if r[t] == "sat" and r[f"{t}_note"] == "1"]
        print(f"| {t} | {s} | {u} | {len(rows) - s - u} | {sum(int(r[f'{t}_wrong']) for r in rows)} | "
              f"{sum(float(r[f'{t}_s']) for r in rows):.1f} | {len(noted)} | "
              f"{sum(r[f'{t}_ort'] == 'yes' for r in noted)} |")
    print()
    print("| property | known | base | base s | new | new s |")
    print("| --- | --- | --- | ---: | --- | ---: |")
    for r in rows:
        if r["base"] != r["new"]:
            print(f"| {r['name']} | {r['known']} | {r['base']} | {r['base_s']} | {r['new']} | {r['new_s']} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("base", nargs="?")
    ap.add_argument("new", nargs="?")
    ap.add_argument("dir", nargs="?")
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default="exact_cex_ab.csv")
    ap.add_argument("--table", default=None)
    ap.add_argument("--float32", action="store_true", help="both trees with --float32 (docstring)")
    a = ap.parse_args()
    if a.table:
        table(a.table)
    else:
        run(a)


if __name__ == "__main__":
    main()
