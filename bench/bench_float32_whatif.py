"""What-if epsilons for float-sound verdicts on wide-input nets: how far would the fast error
column's epsilon fall with ranges the checker does NOT accept today? (issue 16, h-f32eran)

    OPENBLAS_NUM_THREADS=1 python bench/bench_float32_whatif.py --data DATA \
        mnist_relu_9_200.onnx:mnist_spec_idx_6453_eps_0.01500.vnnlib [--dead-rule] [--need 30]

A measurement, never a verdict: nothing here is checked, and the ranges are obtained by wrapping
the fast engine's ``forward`` inside this process (the walk ``certificates.fast_errors.propagate``
takes its ranges from it). Per instance, the largest epsilon of a fast-column walk on the
property's whole box with the ranges of

- (a) the box (what ``verify --float32`` certifies today);
- (b) the box with the real proof's shared α slopes (its region's ``"arg_slopes"``: α-CROWN on the
  intermediate bounds, relu nets only);
- (c) the real proof's deepest ReLU-split leaves: the box and the leaf's split phases (the region
  whose epsilon a per-leaf errorbound of a ReLU-split tree would certify), and (c') with (b)'s slopes;
- (d) every relu element fixed to its phase at the box centre (one polytope around the centre:
  the least a ReLU-split leaf can reach, not a partition of the box);
- (e) the last L relu layers fixed so;
- (g) the sampled hull (``--sampled N``): every node's ranges met with the min / max of its values at
  N random points of the box and its centre, an *unsound* stand-in for exact ranges (narrower than
  them): the least any tightening of the ranges alone can bring, the error rules unchanged;
- (f) per atom instead of per output: the error of a·y~ bounded as one form, sum_s |a·C_s| L_s +
  |a|·rem over the output's sources (C its coefficients, L their bounds, rem what is kept outside
  the form), against the growth sum_j |a_j| eps_j the certificate charges the atom today (the
  outputs share their sources: y_t - y_j's cancel where they have the same sign).

``--dead-rule``: the fast relu row charges an element that is off in the reals (hi <= 0) its float
hull's top max(0, hi + E) as a fresh absolute source, even where that hull crosses 0 (a split-off
element has hi = 0 exactly); with this flag the dead rule applies only where the float hull is
<= 0 (hi + E <= 0) and every other element takes the slope rule s in [0, 1] (relu is monotone and
1-Lipschitz, so relu(z~) - relu(z) = s (z~ - z) for every z, z~: the unstable elements' rule).
``--need T``: the factor epsilon must fall by: real searches (``bab.solve``, ``T`` s each) of the
property grown by epsilon / 2^k, k searched by doubling then bisection.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "vnncomp2021" / "eran"


def leaf_paths(cert: dict[str, Any]) -> list[tuple[int, dict[tuple[int, int], int], str]]:
    """(disjunct, split path {(node, i): phase}, claimed bound) of every leaf of a ``vnn-unsat``
    certificate's first region (``per_disjunct`` trees of ReLU splits; other trees are skipped)."""
    out: list[tuple[int, dict[tuple[int, int], int], str]] = []

    def walk(seq: list[Any], pos: int, path: dict[tuple[int, int], int], j: int) -> int:
        e = seq[pos]
        if e[0] == "leaf":
            out.append((j, dict(path), str(e[1][0][1]) if e[1] else ""))
            return pos + 1
        if e[0] != "relu":
            raise ValueError(e[0])
        pos = walk(seq, pos + 1, {**path, (e[1], e[2]): 0}, j)
        return walk(seq, pos, {**path, (e[1], e[2]): 1}, j)

    entry = cert["regions"][0]
    for j, tree in enumerate(entry.get("per_disjunct", []) if isinstance(entry, dict) else []):
        try:
            walk(tree, 0, {}, j)
        except (ValueError, IndexError, TypeError):
            pass
    return out


def dead_rule_on_float_hull() -> None:
    """The ``--dead-rule`` variant of ``fast_fns._Fns.fn`` (module docstring), in this process."""
    from torchlean.certificates import fast_fns

    src = textwrap.dedent(inspect.getsource(fast_fns._Fns.fn))
    assert "dead = v.hi <= 0" in src
    ns = dict(vars(fast_fns))
    src = src.replace("dead = v.hi <= 0", "dead = v.hi + v.E <= 0")
    exec("from __future__ import annotations\n" + src, ns)
    fast_fns._Fns.fn = ns["fn"]


def atom_error(walk: Any, v: Any, a: np.ndarray) -> float:
    """sum_s |a·C_s| L_s + |a|·rem: the error bound of a·y~ from the output's form (float64, not
    rounded outward: a what-if)."""
    out = float(np.abs(a) @ v.rem)
    for s, X in v.C.items():
        w = X.shape[1]
        row = a @ X if isinstance(X, np.ndarray) else np.bincount(X.c, a[X.r] * X.v, minlength=w)
        out += float(np.abs(row) @ walk.L[s:s + w])
    return out


def run(net: Path, prop: Path, need: float, sampled: int = 0) -> None:
    """Print the instance's what-if epsilons (module docstring)."""
    from torchlean.certificates import fast_engine, fast_errors
    from torchlean.certificates.fast_vnn import _float_slopes, phase_arrays
    from torchlean.certificates.float_vnn import grow
    from torchlean.certificates.graph_vnn import read_shared
    from torchlean.floats.errorbound import bound_certificate, epsilons
    from torchlean.verify.bab import solve
    from torchlean.verify.float32 import hull
    from torchlean.verify.table import load_instance

    t, spec = load_instance(net, prop)
    box = hull(spec)
    t0 = time.monotonic()
    res = solve(t, spec, timeout=120)
    print(f"{prop.name}: real {res.verdict} in {time.monotonic() - t0:.1f} s", flush=True)
    cert = res.cert if res.verdict == "unsat" else {"regions": [{}]}
    leaves = leaf_paths(cert)
    entry = cert["regions"][0]
    shared = read_shared(t.bg, entry, "whatif") if isinstance(entry, dict) else {}
    orig = fast_engine.forward

    def eps_with(path: dict[tuple[int, int], int] | None = None, slopes: bool = False,
                 phases: dict[int, np.ndarray] | None = None, sampled: int = 0
                 ) -> tuple[list[Fraction], float]:
        def forward(fg: Any, lo: Any, hi: Any, method: str = "ibp", **kw: Any) -> Any:
            if sampled:
                st = orig(fg, lo, hi, method, **kw)
                r = np.random.default_rng(0).random((sampled, lo.shape[1]))
                X = np.concatenate([(lo + hi) / 2, lo + r * (hi - lo)])
                pt = orig(fg, X, X, "ibp")
                for k in range(1, len(st.L)):
                    st.L[k] = np.maximum(st.L[k], pt.L[k].min(0, keepdims=True))
                    st.U[k] = np.maximum(st.L[k], np.minimum(st.U[k], pt.U[k].max(0, keepdims=True)))
                    st.vmax[k] = np.maximum(np.abs(st.L[k]), np.abs(st.U[k]))
                    if st.arg[k] is not None:
                        a = np.maximum(st.arg[k][0], pt.arg[k][0].min(0, keepdims=True))
                        b = np.minimum(st.arg[k][1], pt.arg[k][1].max(0, keepdims=True))
                        st.arg[k] = (a, np.maximum(a, b))
                return st
            assert len(fg.bg.nodes) == len(t.bg.nodes)  # (the same lowering: node numbers agree)
            if path:
                kw["phases"] = phase_arrays(fg.bg, [path])
            if phases is not None:
                kw["phases"] = phases
            if slopes and shared:
                kw["slopes"] = {k: _float_slopes(fg.bg, [{k if type(k) is int else k[1]: row}])[
                    k if type(k) is int else k[1]] for k, row in shared.items()}
            return orig(fg, lo, hi, method, **kw)

        fast_engine.forward = forward
        try:
            tw = time.monotonic()
            eb = bound_certificate(t.graph, box, "binary32", ranges="fast", column="fast")
            return epsilons(eb), time.monotonic() - tw
        finally:
            fast_engine.forward = orig

    def show(what: str, got: tuple[list[Fraction], float]) -> None:
        print(f"  {what}: max eps {float(max(got[0])):.4g} ({got[1]:.1f} s)", flush=True)

    made: list[Any] = []  # (the walk, the value it made last: the output's, on these graphs)
    make = fast_errors._Walk.make

    def keep(self: Any, *a: Any, **kw: Any) -> Any:
        v = make(self, *a, **kw)
        made[:] = [self, v]
        return v

    fast_errors._Walk.make = keep
    try:
        eps, w = eps_with()
    finally:
        fast_errors._Walk.make = make
    show("(a) whole box", (eps, w))
    walk, out = made
    if len(out.E) == len(eps) and np.allclose(out.E, [float(e) for e in eps], rtol=1e-9):
        for r in spec.regions:
            for j, d in enumerate(r.disjuncts):
                for t_ in d:
                    a = np.array([float(c) for c in t_.a])
                    print(f"  (f) disjunct {j}: atom growth {float(np.abs(a) @ out.E):.4g}"
                          f" -> as one form {atom_error(walk, out, a):.4g}", flush=True)
    if sampled:
        show(f"(g) ranges met with the sampled hull of {sampled} points", eps_with(sampled=sampled))
    if shared:
        show(f"(b) + the proof's {len(entry.get('arg_slopes', []))} shared slopes", eps_with(slopes=True))
    for j, path, bound in sorted(leaves, key=lambda x: -len(x[1]))[:2]:
        show(f"(c) leaf of disjunct {j}, {len(path)} splits, claimed bound {float(Fraction(bound)):.3g}",
             eps_with(path))
        if shared:
            show("(c') + shared slopes", eps_with(path, True))
    relus = [k for k, n in enumerate(t.bg.nodes) if n.kind == "fn" and n.fn == "relu"]
    if relus:
        c = np.array([[float(a + b) / 2 for a, b in box]])
        st = orig(fast_engine.compiled(t.bg), c, c, "ibp")
        ph = {k: (st.arg[k][0] >= 0).astype(np.int8) for k in relus}
        show("(d) every relu at the centre's phase", eps_with(phases=ph))
        for L in (2, 4):
            show(f"(e) the last {L} relu layers at the centre's phase",
                 eps_with(phases={k: ph[k] for k in relus[-L:]}))
    if need:
        seen: dict[int, bool] = {}

        def proves(k: int) -> bool:
            if k not in seen:
                ts = time.monotonic()
                r = solve(t, grow(spec, [e / 2 ** k for e in eps]), timeout=need)
                seen[k] = r.verdict == "unsat"
                print(f"  grown by eps/2^{k}: {r.verdict} ({time.monotonic() - ts:.1f} s)", flush=True)
            return seen[k]

        lo, hi = 0, 1  # (eps itself is refuted or open: the float loop's own first try)
        while hi <= 20 and not proves(hi):
            lo, hi = hi, 2 * hi
        while hi - lo > 1 and hi <= 20:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if proves(mid) else (mid, hi)
        print(f"  needed: eps / 2^{hi}" if hi <= 20 else "  needed: more than eps / 2^20", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("instances", nargs="+", help="network.onnx:property.vnnlib (eran's file names)")
    ap.add_argument("--data", default=None, help="the eran folder (default ../shared/data/vnncomp2021/eran)")
    ap.add_argument("--dead-rule", action="store_true", help="the dead rule only on float-dead elements")
    ap.add_argument("--sampled", type=int, default=0, help="(g): points of the sampled hull")
    ap.add_argument("--need", type=float, default=0.0, help="seconds per real search of the need search")
    a = ap.parse_args()
    d = Path(a.data) if a.data else ROOT
    if a.dead_rule:
        dead_rule_on_float_hull()
    for item in a.instances:
        n, p = item.split(":")
        run(d / "nets" / n, d / "specs" / "mnist" / p, a.need, a.sampled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
