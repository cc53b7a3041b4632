"""Where a zoo model's @verified gradient proof spends its time, obligation by obligation (issue 18).

    OPENBLAS_NUM_THREADS=1 python bench/zoo_proof_profile.py cnn [--only max_pool2d ...] [--gen-only]

For each distinct node case of the model (as ``zoo.claims.gradient_proof`` traces it): the seconds
to derive its obligations and their SMT text size, then for each obligation the seconds to
discharge it (certificate search and solver, into a fresh folder, one at a time) and to check it
(``check_one``, which replays the statement and, for ``windows``, the one-window claims it names).
Models: cnn, resnet (digits, input (1, 1, 8, 8)), transformer / transformer_sums (``AfterLookup``
at (1, context, 64)).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def build_for(kind: str):
    if kind in ("cnn", "resnet"):
        from torchlean.zoo.cnn import model
        return (lambda: model(kind)), (1, 1, 8, 8)
    if kind in ("transformer", "transformer_sums"):
        from torchlean.zoo.transformer import AfterLookup, model
        corpus = "sums" if kind.endswith("sums") else "text"
        net = model(corpus)
        return (lambda: AfterLookup(model(corpus))), (1, net.block, net.tok.weight.shape[1])
    raise SystemExit(f"unknown model {kind!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--only", nargs="*", help="node cases whose key starts with one of these")
    ap.add_argument("--gen-only", action="store_true", help="derive only, discharge nothing")
    ap.add_argument("--timeout", type=float, default=180.0, help="per obligation (default 180 s)")
    ap.add_argument("--solver", default="cvc5")
    args = ap.parse_args()
    from torchlean.proofs import compose
    from torchlean.proofs.artifacts import check_one
    from torchlean.proofs.autograd import exact_floats
    from torchlean.proofs.discharge import discharge

    build, shape = build_for(args.model)
    t0 = time.perf_counter()
    graph, _, cases = compose.trace(build, shape)
    print(f"{args.model} at {list(shape)}: traced in {time.perf_counter() - t0:.2f} s, {len(graph['nodes'])} "
          f"nodes, {len({k for k, _, _ in cases})} distinct node cases", flush=True)
    seen: dict[str, list] = {}
    for key, fields, _ in cases:
        if key in seen or (args.only and not any(key.startswith(o) for o in args.only)):
            continue
        t = time.perf_counter()
        with exact_floats():
            seen[key] = compose.node_obligations(key.split(".n")[0], key, fields)
        for ob in seen[key]:
            compose.NODES[ob.name] = ob
        made = ", ".join(f"{ob.name} ({ob.kind}, {len(ob.smtlib) / 1e3:.0f} kB)" for ob in seen[key])
        print(f"derive {key} {fields['shapes']}: {time.perf_counter() - t:.2f} s -> {made}", flush=True)
    if args.gen_only:
        return 0
    d = Path(tempfile.mkdtemp(prefix="zoo_proof_profile"))
    done: set[str] = set()
    for obs in seen.values():
        for ob in obs:
            if ob.name in done:
                continue
            done.add(ob.name)
            t = time.perf_counter()
            (rep,) = discharge([ob], d, solver=args.solver, timeout=args.timeout, progress=False)
            td = time.perf_counter() - t
            t = time.perf_counter()
            o = check_one(d, ob)
            tc = time.perf_counter() - t
            why = "" if rep.status == "proved" else f" ({rep.message[:80]})"
            print(f"  {ob.name:42s} {rep.status:8s} discharge {td:6.1f} s (search {rep.search_seconds:.1f}, "
                  f"solver {rep.solver_seconds:.1f}), check {tc:5.2f} s -> {o.status}{why}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
