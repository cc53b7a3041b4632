"""The rounding-error column's two walks on the statements the tests and the zoo make (issue 14,
step 4): which statements the fast walk refuses, and fast ε / exact ε where both accept.

    python bench/bench_columns.py collect OUT.pkl tests/test_x.py [...]   # run pytest, record statements
    python bench/bench_columns.py zoo OUT.pkl                             # the zoo's statements
    [STRIDE=k] python bench/bench_columns.py walk OUT.tsv exact,fast IN.pkl [...]   # both columns
    python bench/bench_columns.py table BRANCH.tsv MAIN.tsv               # the tables

``collect`` records every statement any ``errorctx.Ctx`` is built from while the tests run (both
columns build one from the statement they walk), deduplicated; ``walk`` walks each as the exact
column (its own ranges) and/or as the fast one (ranges "fast"), one line per statement; ``table``
prints the refusals by reason and fast ε / exact ε (largest output) per statement, with the fast
column of another tree (``walk OUT fast`` there) as the "before".
"""

from __future__ import annotations

import collections
import hashlib
import json
import pickle
import sys
import time


def _key(stmt: dict) -> str:
    d = {k: v for k, v in stmt.items() if k not in ("column", "ranges")}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def collect(out: str, args: list[str]) -> None:
    import pytest

    from torchlean.certificates import errorctx

    seen: dict[str, dict] = {}
    init = errorctx.Ctx.__init__

    def rec(self, stmt):  # (every walk builds its Ctx from the statement: record it)
        try:
            k = _key(stmt)
            if k not in seen and isinstance(stmt.get("graph"), dict):
                seen[k] = json.loads(json.dumps(stmt, default=str))
                seen[k]["_test"] = __import__("os").environ.get("PYTEST_CURRENT_TEST", "?")
        except Exception:  # (a forged statement that is no JSON: not one to compare)
            pass
        init(self, stmt)

    errorctx.Ctx.__init__ = rec
    try:
        pytest.main(["-q", "-p", "no:cacheprovider", "-x" if False else "-q", *args])
    finally:
        errorctx.Ctx.__init__ = init
        with open(out, "wb") as f:
            pickle.dump(list(seen.values()), f)
        print(f"{len(seen)} statements -> {out}")


ZOO = [["demo"], ["mlp", "--act=GELU"], ["mlp", "--act=SiLU"], ["mlp", "--act=Tanh"], ["pinn"], ["ppo"],
       ["autoencoder"], ["fno"], ["transformer"], ["resnet"], ["cnn"], ["lstm", "0"], ["gru", "0"]]


def zoo(out: str) -> None:
    """The zoo's statements (``bench_zoo_epsilon.build``'s model and box), exact column."""
    sys.path.insert(0, "bench")
    import bench_zoo_epsilon as bz

    from torchlean.runtime.tensor import tensor
    from torchlean.runtime.trace import trace

    got = []
    for spec in ZOO:
        try:
            argv = sys.argv
            sys.argv = ["x", *spec]
            kind = spec[0]
            model, x, box = bz.build(kind, int(spec[1]) if len(spec) > 1 and spec[1].isdigit() else None)
            g = trace(model, tensor(x))
            from torchlean.floats.errorbound import statement
            st = statement(g, box, "binary32", ranges="fast", column="exact")
            st["_test"] = "zoo:" + " ".join(spec)
            got.append(st)
            print("zoo", spec, "ok", flush=True)
        except Exception as e:  # (a model the bench cannot build here: listed, not compared)
            print("zoo", spec, "skipped:", type(e).__name__, str(e)[:120], flush=True)
        finally:
            sys.argv = argv
    with open(out, "wb") as f:
        pickle.dump(got, f)


def _alarm(*_: object) -> None:
    raise TimeoutError("over the bench's time limit per walk")


def _load(paths: list[str]) -> list[dict]:
    stmts, seen = [], set()
    for p in paths:
        for st in pickle.load(open(p, "rb")):
            if (k := _key(st)) not in seen:
                seen.add(k)
                stmts.append(st)
    return stmts


def walk(out: str, cols: str, paths: list[str], limit: int = 60) -> None:
    """One line per statement to ``out`` (appended as it goes): index, test, then per column in
    ``cols`` ("exact,fast" or "fast") the largest output ε (a float, rounded up) and seconds, or
    the refusal's reason."""
    import signal

    from torchlean.certificates.errorbound import propagate

    signal.signal(signal.SIGALRM, _alarm)
    with open(out, "a") as f:
        stride = int(__import__("os").environ.get("STRIDE", "1"))  # (a sample; the zoo then left out)
        for i, st in enumerate(_load(paths)):
            if i % stride or (stride > 1 and st.get("_test", "").startswith("zoo:")):
                continue
            where = st.pop("_test", "?").split(" (")[0]
            cells = [str(i), where]
            for col in cols.split(","):
                s = {**st, "column": col} if col == "exact" else {**st, "column": "fast", "ranges": "fast"}
                t = time.perf_counter()
                signal.alarm(limit)
                try:
                    e = propagate(s)[-1]
                    cells += [repr(float(max(e, default=0))), f"{time.perf_counter() - t:.2f}"]
                except Exception as err:
                    cells += ["!" + str(err)[:90].replace("\t", " ").replace("\n", " "), ""]
                finally:
                    signal.alarm(0)
            f.write("\t".join(cells) + "\n")
            f.flush()


def table(exact_fast: str, fast_only: str) -> None:
    """The refusals and the ratio table from ``walk``'s lines: the branch's exact and fast
    columns (``exact_fast``), and main's fast column (``fast_only``) for the "before" figures."""
    rows = [ln.rstrip("\n").split("\t") for ln in open(exact_fast)]
    before = {ln.split("\t")[0]: ln.rstrip("\n").split("\t")[2] for ln in open(fast_only)}
    ref: dict[str, collections.Counter] = {"main": collections.Counter(), "branch": collections.Counter()}
    ratios: dict[str, list[float]] = {"main": [], "branch": []}
    worst = []
    for r in rows:
        i, where, ex, _, fa, _ = r[:6]
        if ex.startswith("!"):
            ref["branch"]["exact: " + ex[1:70]] += 1
            continue
        for name, v in (("main", before.get(i, "!missing")), ("branch", fa)):
            if v.startswith("!"):
                ref[name]["fast: " + v[1:70]] += 1
            elif float(ex) > 0:
                ratios[name].append(float(v) / float(ex))
                if name == "branch":
                    worst.append((float(v) / float(ex), where, float(ex), float(v)))
    n_ex = sum(n for k, n in ref["branch"].items() if k.startswith("exact"))
    print(f"{len(rows)} statements; the exact column refuses {n_ex}")
    for name in ("main", "branch"):
        rs = ratios[name]
        cuts = ((0, 1), (1, 1.01), (1.01, 1.1), (1.1, 2), (2, 1e300))
        b = [sum(1 for x in rs if lo < x <= hi) for lo, hi in cuts]
        print(f"\n{name}: fast accepts {len(rs)} of those with exact ε > 0; fast/exact <=1: {b[0]}, "
              f"(1, 1.01]: {b[1]}, (1.01, 1.1]: {b[2]}, (1.1, 2]: {b[3]}, >2: {b[4]}")
        print("\n| refused by | reason | count |\n|---|---|---:|")
        for why, n in ref[name].most_common():
            col, _, reason = why.partition(": ")
            print(f"| {col} | {reason} | {n} |")
    print("\n| fast/exact | test | exact ε | fast ε |\n|---:|---|---:|---:|")
    for w in sorted(worst, reverse=True)[:25]:
        print(f"| {w[0]:.4g} | {w[1][:80]} | {w[2]:.4g} | {w[3]:.4g} |")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "collect":
        collect(sys.argv[2], sys.argv[3:])
    elif cmd == "zoo":
        zoo(sys.argv[2])
    elif cmd == "walk":
        walk(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        table(sys.argv[2], sys.argv[3])
