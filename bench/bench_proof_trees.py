"""Reproducibility of the certificate search: regenerate every library tree, compare.

    python bench/bench_proof_trees.py [--timeout 42] [--out RUN.json] [--against OTHER.json]
                                      [--in-process] [--reverse] [NAME ...]
    python bench/bench_proof_trees.py --compare DIR [DIR2]

For each obligation of torchlean's own library whose committed artifact holds a refutation
tree, runs the certificate search (``proofs.prove.certificate_tree``, in a forked child killed
past the time limit, as ``discharge`` runs it) on the obligation derived from the code now, has
the trusted checker replay what it found, and compares the tree with the committed one (and,
with ``--against``, with the trees of an earlier run saved by ``--out``: two runs in separate
processes, so that a search depending on process state, hash seeds or solver history shows up).
``--in-process`` searches them one after another in this process instead (``--reverse``: in the
other order), so that a search whose answer depends on what ran before in the process shows up.
``--compare``: the trees of the artifacts in DIR (``proofs discharge --include-library --force
--dir DIR``, the whole regeneration with the solver runs) against DIR2's or the committed ones.
``--timeout`` defaults to the search's share of ``discharge``'s default 60 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torchlean.certificates import check as replay  # noqa: E402
from torchlean.proofs.artifacts import LIBRARY_DIR, path_for  # noqa: E402
from torchlean.proofs.cli import collect  # noqa: E402


def _child(conn: Any, smtlib: str, timeout: float) -> None:
    from torchlean.proofs.prove import NoProof, certificate_tree

    try:
        conn.send(("tree", certificate_tree(smtlib, timeout=timeout)))
    except NoProof as e:
        conn.send(("none", str(e)[:200]))
    except Exception as e:  # noqa: BLE001 - the search is untrusted: any failure is "no tree"
        conn.send(("none", f"{type(e).__name__}: {e}"[:200]))


def search(smtlib: str, timeout: float) -> tuple[Any, str, float]:
    """(tree or None, why not, seconds) from a forked child, killed at timeout + 5 s."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, smtlib, timeout), daemon=True)
    t0 = time.perf_counter()
    proc.start()
    child.close()
    got = parent.recv() if parent.poll(timeout + 5) else ("none", "killed")
    proc.kill()
    proc.join()
    tag, payload = got
    secs = time.perf_counter() - t0
    return (payload, "", secs) if tag == "tree" else (None, payload, secs)


def in_process(smtlib: str, timeout: float) -> tuple[Any, str, float]:
    """``search`` without the child: in this process, after whatever ran in it before."""
    from torchlean.proofs.prove import NoProof, certificate_tree

    t0 = time.perf_counter()
    try:
        return certificate_tree(smtlib, timeout=timeout), "", time.perf_counter() - t0
    except NoProof as e:
        return None, str(e)[:200], time.perf_counter() - t0


def canon(tree: Any) -> str:
    return json.dumps(tree, sort_keys=True, separators=(",", ":"))


def _trees(directory: Path) -> dict[str, str | None]:
    """Artifact name -> its refutation tree as canonical JSON (None: no tree), for the artifacts
    that can hold one (not the checker-decided kinds)."""
    from torchlean.proofs.obligation import DECIDED

    out = {}
    for f in sorted(directory.glob("*.json")):
        art = json.loads(f.read_text())
        if art.get("obligation", {}).get("kind") in DECIDED:
            continue
        tree = (art.get("certificate") or {}).get("tree")
        out[f.name[:-5]] = None if tree is None else canon(tree)
    return out


def compare(dirs: list[str]) -> int:
    a = _trees(Path(dirs[0]))
    b = _trees(Path(dirs[1]) if len(dirs) > 1 else LIBRARY_DIR)
    differ = sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))
    for n in differ:
        have = ["no tree" if t.get(n) is None else "tree" for t in (a, b)]
        print(f"  {n}: {have[0]} / {have[1]}")
    with_tree = [sum(v is not None for v in t.values()) for t in (a, b)]
    print(f"trees: {with_tree[0]} / {with_tree[1]}; differ: {len(differ)}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=42.0)
    ap.add_argument("--out", help="save this run's trees (name -> tree or null) as JSON")
    ap.add_argument("--against", help="an earlier run's --out file to compare with")
    ap.add_argument("--in-process", action="store_true",
                    help="search every obligation in this one process, one after another (a search that "
                         "depends on what ran before in the process shows up against a forked run)")
    ap.add_argument("--reverse", action="store_true", help="the obligations in reverse order")
    ap.add_argument("--compare", nargs="+", metavar="DIR", help="compare artifact directories' trees")
    ap.add_argument("names", nargs="*", help="only obligations whose name starts with one of these")
    args = ap.parse_args()
    if args.compare:
        return compare(args.compare)
    obs = collect(None, args.names or None, library=True)
    if args.reverse:
        obs = obs[::-1]
    earlier = json.loads(Path(args.against).read_text()) if args.against else None
    trees: dict[str, Any] = {}
    n = {"with tree": 0, "found": 0, "replayed": 0, "same as committed": 0, "same as earlier": 0}
    t_all = time.perf_counter()
    for ob in obs:
        try:
            art = json.loads(path_for(LIBRARY_DIR, ob).read_text())
        except OSError:
            continue
        committed = (art.get("certificate") or {}).get("tree")
        if committed is None:
            continue
        n["with tree"] += 1
        tree, why, secs = (in_process if args.in_process else search)(ob.smtlib, args.timeout)
        trees[ob.name] = tree
        ok = tree is not None and replay({"kind": "refutation", "statement": ob.smtlib, "tree": tree}).ok
        n["found"] += tree is not None
        n["replayed"] += ok
        same = tree is not None and canon(tree) == canon(committed)
        n["same as committed"] += same
        again = ""
        if earlier is not None:
            prev = earlier.get(ob.name)
            eq = canon(prev) == canon(tree)
            n["same as earlier"] += eq
            again = "" if eq else "  DIFFERS FROM EARLIER RUN"
        status = "no tree: " + why if tree is None else ("replays" if ok else "REJECTED")
        differs = "" if same or tree is None else "  (differs from committed)"
        print(f"{secs:7.2f}s {ob.name:40} {status}{differs}{again}", flush=True)
    if earlier is None:
        del n["same as earlier"]
    print(f"{', '.join(f'{k}: {v}' for k, v in n.items())}; {time.perf_counter() - t_all:.1f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(trees, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
