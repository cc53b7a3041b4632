"""The rounding-error column's two walks on the statements the tests and the zoo make (issue 14,
step 4): which statements the fast walk refuses, and fast ε / exact ε where both accept.

    python bench/bench_columns.py collect OUT.pkl tests/test_x.py [...]   # run pytest, record statements
    python bench/bench_columns.py zoo OUT.pkl                             # the zoo's statements
    python bench/bench_columns.py compare OUT.pkl [...]                   # both columns on each

``collect`` records every statement any ``errorctx.Ctx`` is built from while the tests run (both
columns build one from the statement they walk), deduplicated; ``compare`` walks each as the exact
column (its own ranges) and as the fast one (ranges "fast"), and prints the refusals by reason and
the ratio of the largest output ε (fast / exact) per statement.
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


def compare(paths: list[str], limit: int = 60) -> None:
    import signal

    from torchlean.certificates.errorbound import propagate

    signal.signal(signal.SIGALRM, _alarm)

    stmts, seen = [], set()
    for p in paths:
        for st in pickle.load(open(p, "rb")):
            if (k := _key(st)) not in seen:
                seen.add(k)
                stmts.append(st)
    refused: dict[str, list[str]] = collections.defaultdict(list)
    rows = []
    for st in stmts:
        where = st.pop("_test", "?")
        ex = {**st, "column": "exact"}
        try:
            t = time.perf_counter()
            signal.alarm(limit)
            e = propagate(ex)[-1]
            te = time.perf_counter() - t
        except Exception as err:
            signal.alarm(0)
            refused["exact: " + str(err)[:90]].append(where)
            continue
        try:
            t = time.perf_counter()
            signal.alarm(limit)
            f = propagate({**st, "column": "fast", "ranges": "fast"})[-1]
            tf = time.perf_counter() - t
        except Exception as err:
            signal.alarm(0)
            refused["fast: " + str(err)[:90]].append(where)
            continue
        signal.alarm(0)
        me, mf = max(e), max(f)
        r = [float(a / b) for a, b in zip(f, e) if b]
        rows.append((float(mf / me) if me else float("nan"), min(r, default=float("nan")),
                     max(r, default=float("nan")), where, st["format"].get("name", "?"),
                     st.get("ranges"), len(st["graph"]["nodes"]), te, tf, float(me), float(mf)))
    rows.sort(key=lambda r: -r[0] if r[0] == r[0] else 0)
    print(f"{len(stmts)} statements; both accept {len(rows)}; refused {sum(map(len, refused.values()))}")
    print("\n| refused by | reason | count | e.g. |\n|---|---|---:|---|")
    for why, ws in sorted(refused.items(), key=lambda kv: -len(kv[1])):
        col, _, reason = why.partition(": ")
        print(f"| {col} | {reason} | {len(ws)} | {ws[0].split(' (')[0][:70]} |")
    rs = [r[0] for r in rows if r[0] == r[0]]
    if rs:
        b = [sum(1 for x in rs if x <= 1.0), sum(1 for x in rs if 1 < x <= 1.01),
             sum(1 for x in rs if 1.01 < x <= 1.1), sum(1 for x in rs if 1.1 < x <= 2),
             sum(1 for x in rs if x > 2)]
        print("\nmax fast ε / max exact ε, statements per bucket: " + ", ".join(
            f"{k}: {n}" for k, n in zip(("<=1", "(1, 1.01]", "(1.01, 1.1]", "(1.1, 2]", ">2"), b)))
    print("\n| fast/exact (max ε) | per output min-max | test | format | exact ranges | nodes | exact s | "
          "fast s |\n|---:|---|---|---|---|---:|---:|---:|")
    for r in rows:
        at = r[3].split(" (")[0][:70]
        print(f"| {r[0]:.4g} | {r[1]:.3g}-{r[2]:.3g} | {at} | {r[4]} | {r[5]} | {r[6]} | {r[7]:.2f} | "
              f"{r[8]:.2f} |")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "collect":
        collect(sys.argv[2], sys.argv[3:])
    elif cmd == "zoo":
        zoo(sys.argv[2])
    else:
        compare(sys.argv[2:])
