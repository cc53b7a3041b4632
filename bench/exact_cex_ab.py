"""Exact (non-float32) counterexamples: two torchlean trees on audit52's properties, interleaved.

    OPENBLAS_NUM_THREADS=1 nice python bench/exact_cex_ab.py BASE_TREE NEW_TREE AUDIT52_DIR \
        --timeout 20 --out results.csv [--only REGEX]
    python bench/exact_cex_ab.py --table results.csv

AUDIT52_DIR is what ``bench/audit52_vs_nnenum.py gen`` wrote (``meta.json``, ``props/``). Per
property, both trees run ``python -m torchlean.verify NET PROP --timeout T --cert C.json`` (order
alternating from property to property, so load drifts hit both alike); a sat's certificate point
is judged by audit52's own exact evaluation (``exact_check``: in the exact box, exact outputs
violate), and onnxruntime's float32 run at the point rounded to float32 is recorded too (``ort``:
whether that float32 point also violates: the honest-label column, it decides nothing). WRONG =
a sat whose point exact evaluation rejects, or an unsat where the property is known sat.
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

sys.path.insert(0, str(Path(__file__).parent))
from audit52_vs_nnenum import exact_check, layers_of, ort_check  # noqa: E402


def one(tree: str, meta: dict, prop: Path, timeout: float, lay: list) -> dict:
    env = {**os.environ, "PYTHONPATH": tree, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        cert = Path(tmp) / "c.json"
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "torchlean.verify", meta["onnx"], str(prop), "--timeout",
                            str(timeout), "--cert", str(cert)], capture_output=True, text=True, env=env,
                           timeout=timeout + 60, cwd=tree)
        s = time.perf_counter() - t
        first = (p.stdout.strip().splitlines() or ["error"])[0].strip()
        v = first if first in ("sat", "unsat", "timeout") else first[:30]
        noted = int("exact rational point" in p.stderr)
        out = {"v": v, "s": round(s, 2), "exact": "", "ort": "", "note": noted}
        if v == "sat":
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
            res[name] = one(tree, m, prop, args.timeout, lay)
        row = {"name": m["name"], "kind": m["kind"], "known": m["known"]}
        for name in ("base", "new"):
            r = res[name]
            wrong = (r["v"] == "sat" and r["exact"] != "yes") or (r["v"] == "unsat" and m["known"] == "sat")
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
    a = ap.parse_args()
    if a.table:
        table(a.table)
    else:
        run(a)


if __name__ == "__main__":
    main()
