"""Which VNN-LIB properties have no binary32 input (vac32): an independent judge of a vacuous
float32 unsat. Reads only `(assert (<= X_i c))` / `(assert (>= X_i c))` lines (one box; a file with
X_i anywhere else is reported "other"), and decides with numpy's float32 steps
(``np.nextafter``) compared to the decimal bounds as exact Fractions.

    python bench/binary32_empty_props.py DIR_OR_FILES... [--csv RESULTS.csv]

With ``--csv`` (``bench/exact_cex_ab.py``'s output) each property's two verdicts are printed next
to the judgement: a float32 unsat of a property with a binary32 input is not judged here.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

MAXF = Fraction(float(np.finfo(np.float32).max))
BOUND = re.compile(r"^\(assert \((<=|>=) X_(\d+) ([-+0-9.eE]+)\)\)$")


def least_at_or_above(q: Fraction) -> Fraction | None:
    """The least binary32 >= q (None: none)."""
    if q > MAXF:
        return None
    top = float(np.finfo(np.float32).max)
    f = np.float32(min(max(float(q), -top), top))
    while Fraction(float(f)) < q:
        f = np.nextafter(f, np.float32(np.inf))
    while f != -np.float32(top):
        g = np.nextafter(f, np.float32(-np.inf))
        if Fraction(float(g)) < q:
            break
        f = g
    return Fraction(float(f))


def empty_inputs(path: Path) -> list[int] | None:
    """The inputs whose interval holds no binary32 value (None: not a plain box)."""
    lo: dict[int, Fraction] = {}
    hi: dict[int, Fraction] = {}
    for line in path.read_text().splitlines():
        s = line.strip()
        if "X_" not in s or s.startswith("(declare-const"):
            continue
        m = BOUND.match(s)
        if m is None:
            return None
        i, c = int(m.group(2)), Fraction(m.group(3))
        if m.group(1) == ">=":
            lo[i] = max(lo.get(i, c), c)
        else:
            hi[i] = min(hi.get(i, c), c)
    out = []
    for i in sorted(set(lo) | set(hi)):
        a = least_at_or_above(lo[i]) if i in lo else -MAXF
        b = -least_at_or_above(-hi[i]) if i in hi and least_at_or_above(-hi[i]) is not None else None
        if i not in hi:
            b = MAXF
        if a is None or b is None or a > b:
            out.append(i)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    files = [f for p in map(Path, args.paths) for f in (sorted(p.glob("*.vnnlib")) if p.is_dir() else [p])]
    rows = {}
    if args.csv:
        rows = {r["name"]: r for r in csv.DictReader(open(args.csv))}
    n_empty = 0
    for f in files:
        e = empty_inputs(f)
        judged = "other" if e is None else ("empty" if e else "holds")
        n_empty += judged == "empty"
        r = rows.get(f.stem, {})
        print(f"{f.stem}\t{judged}\t{','.join(map(str, e or []))}\t{r.get('base', '')}\t{r.get('new', '')}")
    print(f"# {n_empty} of {len(files)} properties have no binary32 input", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
