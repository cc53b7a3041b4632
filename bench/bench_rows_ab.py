"""Two trees' function rows on the same random cases (issue 14 step 2: the rows' one algorithm over
two number domains): every row's exact and fast ``interval``, ``lower_intercept``,
``upper_intercept`` (random slopes in [-2, 2]) and default slopes on 1,040 intervals (widths 0 to
100, point intervals, silu/gelu across their inflection brackets, pow with seven exponents), and
fast/exact CROWN output bounds on 40 random graphs of ``tests/test_bound_tightness.py`` (12 exact);
with each part's seconds. Run once per tree, then compare:

    PYTHONPATH=/tmp/base OPENBLAS_NUM_THREADS=1 python bench/bench_rows_ab.py dump /tmp/a.pkl
    PYTHONPATH=. OPENBLAS_NUM_THREADS=1 python bench/bench_rows_ab.py dump /tmp/b.pkl
    python bench/bench_rows_ab.py cmp /tmp/a.pkl /tmp/b.pkl
"""

from __future__ import annotations

import pickle
import random
import sys
import time
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
POW = (2, 3, -1, -2, 0.5, 1.5, -0.5)


def cases() -> list[tuple]:
    from torchlean.certificates.functions import FUNCTIONS
    rnd, out = random.Random(7), []
    for name in sorted(FUNCTIONS):
        for attrs in ([{"exponent": e} for e in POW] if name == "pow" else [{}]):
            pos = name in ("log", "rsqrt", "sqrt", "reciprocal") or (name == "pow" and (
                attrs["exponent"] < 0 or not float(attrs["exponent"]).is_integer()))
            for _ in range(40):
                sc = rnd.choice([0.01, 1, 3, 10, 100])
                l = rnd.uniform(-sc, sc)
                u = l + rnd.uniform(0, sc) * rnd.choice([0, 1, 1, 1])
                l, u = (abs(l) + 1e-3, abs(l) + 1e-3 + (u - l)) if pos else (l, u)
                l, u = (l / 10, u / 10) if name == "exp" else (l, u)
                out.append((name, attrs, l, u, rnd.uniform(-2, 2)))
    for name in ("silu", "gelu"):  # across the inflection brackets
        for _ in range(40):
            c, w = rnd.choice([-2.4, 2.4, -1.42, 1.42]), rnd.choice([0.001, 0.1, 1, 5])
            out.append((name, {}, c - rnd.uniform(0, w), c + rnd.uniform(0, w), rnd.uniform(-1.5, 1.5)))
    return out


def _try(f, *args, **kw):
    try:
        return f(*args, **kw)
    except Exception as e:  # (a refusal is a result to compare too)
        return repr(e)


def _methods(row, l, u, a, attrs) -> list:
    return [_try(row.interval, l, u, **attrs), _try(row.lower_intercept, l, u, a, **attrs),
            _try(row.upper_intercept, l, u, a, **attrs), _try(row.policy_slopes, "s-curve", l, u, **attrs)]


def dump(path: str) -> None:
    from torchlean.certificates.fast_functions import FAST
    from torchlean.certificates.functions import FUNCTIONS
    from torchlean.certificates.lower import lower
    from torchlean.verify import engines
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_bound_tightness import random_graph
    cs, res, t = cases(), {}, {}
    t0 = time.perf_counter()
    for i, (name, attrs, l, u, a) in enumerate(cs):
        res["exact", i] = _methods(FUNCTIONS[name], l, u, a, attrs)
    t["exact rows"] = time.perf_counter() - t0
    groups: dict = {}
    for i, (name, attrs, *_) in enumerate(cs):
        groups.setdefault((name, tuple(attrs.items())), []).append(i)
    t0 = time.perf_counter()
    for _ in range(10):
        for (name, at), idx in groups.items():
            L, U, A = (np.array([cs[i][k] for i in idx]) for k in (2, 3, 4))
            res["fast", name, at] = _methods(FAST[name], L, U, A, dict(at))
    t["fast rows (x10)"] = time.perf_counter() - t0
    t["fast crown"] = t["exact crown"] = 0.0
    for seed in range(40):
        r = np.random.default_rng(1000 + seed)
        bg = lower(random_graph(r, int(r.integers(2, 4))).to_dict())
        eps, x0 = float(r.choice([0.02, 0.2, 0.8])), r.uniform(-1, 1, (3, bg.n_in))
        t0 = time.perf_counter()
        res["fast crown", seed] = _try(engines.fast_crown, bg, x0 - eps, x0 + eps)
        t["fast crown"] += time.perf_counter() - t0
        if seed < 12:
            t0 = time.perf_counter()
            box = [[Fraction(float(v)) for v in x0[0] + d] for d in (-eps, eps)]
            res["exact crown", seed] = _try(engines.exact_crown, bg, *box)
            t["exact crown"] += time.perf_counter() - t0
    pickle.dump(res, open(path, "wb"))
    print(", ".join(f"{k} {v:.2f}s" for k, v in t.items()))


def _flat(v) -> list:
    if isinstance(v, (tuple, list)):
        return [x for e in v for x in _flat(e)]
    vals = np.ravel(np.asarray(v, dtype=object))
    return [Fraction(x) if isinstance(x, (Fraction, int)) else float(x) for x in vals]


def cmp(pa: str, pb: str) -> None:
    """Per part and method: values that differ, the largest absolute and relative change."""
    a, b = pickle.load(open(pa, "rb")), pickle.load(open(pb, "rb"))
    for part in ("exact", "fast", "exact crown", "fast crown"):
        many = part in ("exact", "fast")
        methods = ["interval", "lower_intercept", "upper_intercept", "slopes"] if many else ["bounds"]
        for j, method in enumerate(methods):
            n = d = 0
            absw = relw = 0.0
            for k in (k for k in a if k[0] == part):
                x, y = (a[k][j], b[k][j]) if many else (a[k], b[k])
                if isinstance(x, str) or isinstance(y, str):
                    n, d = n + 1, d + (x != y)
                    continue
                for p, q in zip(_flat(x), _flat(y)):
                    n += 1
                    if p != q:
                        d, absw = d + 1, max(absw, abs(float(p - q)))
                        relw = max(relw, abs(float(p - q)) / max(abs(float(p)), 1e-300))
            print(f"{part} {method}: {d}/{n} differ, largest change {absw:.3g} (relative {relw:.3g})")


if __name__ == "__main__":
    dump(sys.argv[2]) if sys.argv[1] == "dump" else cmp(sys.argv[2], sys.argv[3])
