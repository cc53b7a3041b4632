"""Harder VNN-COMP instances made by widening a property's input box (issue 15: heuristics measured
on instances not tuned on). Each input interval [l, u] becomes [c - f·r, c + f·r] (c, r its centre
and radius); the output constraints are kept. Writes the new .vnnlib files and a CSV listing
(onnx, vnnlib, expected="", source, factor) that ``bench/bench_lp.py`` reads.

    python bench/gen_wide.py --out bench/wide --factors 2,4 \\
        /work/shared/data/vnncomp2021/acasxu/prop_3.vnnlib /work/shared/data/vnncomp2021/acasxu/prop_4.vnnlib
"""

from __future__ import annotations

import argparse
import re
from fractions import Fraction
from pathlib import Path

BOUND = re.compile(r"\(assert \((<=|>=) X_(\d+) ([-+0-9.eE]+)\)\)")


def widen(text: str, factor: Fraction) -> str:
    """The property with every input variable's interval scaled by ``factor`` about its centre."""
    lo: dict[int, Fraction] = {}
    hi: dict[int, Fraction] = {}
    for op, i, v in BOUND.findall(text):
        (hi if op == "<=" else lo)[int(i)] = Fraction(v)

    def repl(m: re.Match) -> str:
        op, i = m.group(1), int(m.group(2))
        c, r = (lo[i] + hi[i]) / 2, (hi[i] - lo[i]) / 2
        v = c + factor * r if op == "<=" else c - factor * r
        return f"(assert ({op} X_{i} {float(v)!r}))"

    return BOUND.sub(repl, text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("props", nargs="+")
    ap.add_argument("--out", default="bench/wide")
    ap.add_argument("--factors", default="2,4")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for p in a.props:
        text = Path(p).read_text()
        for f in a.factors.split(","):
            name = f"{Path(p).stem}_x{f}.vnnlib"
            (out / name).write_text(widen(text, Fraction(f)))
            print(out / name)


if __name__ == "__main__":
    main()
