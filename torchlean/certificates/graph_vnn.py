"""VNN certificates for general networks (bound graphs), checked by the bound-table engines.

``check_vnn`` (bounds.py) sends every network here: its ``BoundGraph`` (``lower``), ReLU chains
included (the ReLU-chain engine and its certificate format were removed, issue 14; a certificate
of that format names the chain's fingerprint, which no bound graph has, so it is refused with
"certificate is for a different network (or made in the removed ReLU-chain format ...)").
The format (bounds.py docstring) in short:

- split trees split the input (``["split", dim, v]``) or an element of a relu / leaky_relu / abs
  node (``["relu", node, i]``: the subtree where its argument is <= 0, then the one where it is
  >= 0), walked by the ONE walker ``bounds.walk``, so the leaves cover every region's box by
  construction; a leaf's bound holds on its region (box and split halfspaces), where the engines
  clamp each split element's argument bounds at 0, and a ReLU split's children start from their
  parent's bounds (the engines' ``prior``: valid on the parent's region, which contains theirs);
- a leaf proof's optional third element is ``{"slopes": [[node, i, lower, upper], ...],
  "mult": [[node, i, q], ...]}`` (either key may be left out): ``slopes`` is the relaxation choice
  for element i of bound-graph node ``node`` in this proof's final back-substitution (fn: slopes,
  any rationals; mul: McCormick weights in [0, 1]; max: a member index, or null), each ``null`` or
  a rational. Every such value gives a valid bound (the intercepts are recomputed from it), so they
  are validated, not trusted. ``mult`` gives a multiplier q >= 0 of the split constraint of an
  element split on this leaf's path (only those): on the leaf's region sgn·z >= 0, z the element's
  argument form and sgn = +1 on the active side, -1 on the inactive one, so f >= f - q·sgn·z; the
  final back-substitution of both engines bounds that form instead of f (β-CROWN's split
  multipliers; exactly composed here, ``engine.mult_form``; ``fast_vnn.extras_lower`` in fast mode);
- a ``per_disjunct`` region entry may carry ``"arg_slopes"``: shared fn slopes for every
  back-substitution of the region's replay, argument bounds included, and per-target ones
  (``[node, i, lower, upper, target]``: only for ``target``'s argument bounds, overriding the
  shared ones there; ``read_shared``);
- ``method``: "crown" (CROWN bounds for every nonlinear node's arguments) or "forward"/"ibp"
  (IBP argument bounds, then one CROWN back-substitution from the objective);
- ``vnn-sat``: the output *enclosure* at the point (exact interval evaluation: exact for rational
  operations, a rational enclosure for transcendental ones) must satisfy every atom of a disjunct
  for the whole enclosure (strict atoms strictly).

The fingerprint is ``lower.fingerprint`` of the graph, so a certificate for one network cannot pass
for another (a changed weight, node or wiring changes it).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from . import engine
from .bound_graph import _sum, as_aff
from .bounds import MAX_LEAVES, Combo, check_leaf_proofs, combos_used, region_parts, walk
from .core import Rejected, Verdict, is_index, rational, require
from .lower import Aff, BoundGraph, fingerprint
from .property import Region, Spec

Slopes = dict[Any, list[Any]]  # node (or (target, node): per-target slopes) -> per element


def objective_forms(
    bg: BoundGraph, region: Region, combos: list[list[Combo]]
) -> tuple[list[Aff], list[dict[Combo, int]]]:
    """One exact form per (disjunct j, combination c): sum_{k in c} (a_k·y - b_k), over the graph's
    variables (the outputs' forms composed with the atoms)."""
    forms: list[Aff] = []
    index: list[dict[Combo, int]] = []
    for disj, cs in zip(region.disjuncts, combos):
        index.append({})
        atoms = engine.objective(bg, [list(t.a) for t in disj])  # (a combination's form is their sum)
        for c in cs:
            index[-1][c] = len(forms)
            forms.append(as_aff(_sum([*(atoms[k] for k in c), *(-disj[k].b for k in c)])))
    return forms, index


Extras = tuple[Slopes, dict[tuple[int, int], Fraction]]  # (slopes, split multipliers)


def _slope_entries(bg: BoundGraph, entries: Any, where: str, kinds: tuple[str, ...]) -> Slopes:
    """[[node, i, lower, upper], ...] as {node: per element choice} (the module docstring's
    ``slopes``), each element at most once, nodes of the given kinds only."""
    require(isinstance(entries, list), f"{where}: malformed slopes")
    out: Slopes = {}
    for e in entries:
        require(isinstance(e, list) and len(e) == 4, f"{where}: malformed slope entry")
        k, i = e[0], e[1]
        require(
            is_index(k, len(bg.nodes)) and k > 0 and bg.nodes[k].kind in kinds
            and is_index(i, bg.nodes[k].size),
            f"{where}: no relaxed element {e[:2]!r}",
        )
        if bg.nodes[k].kind == "max":
            ok = e[2] is None or (type(e[2]) is int and 0 <= e[2] < len(bg.nodes[k].args[i]))
            require(e[3] is None and ok, f"{where}: bad max choice")
            val = (e[2], None)
        else:
            val = tuple(None if v is None else rational(v) for v in e[2:])
            if bg.nodes[k].kind == "mul":
                ok = all(v is None or 0 <= v <= 1 for v in val)
                require(ok, f"{where}: McCormick weight outside [0, 1]")
        row = out.setdefault(k, [None] * bg.nodes[k].size)
        require(row[i] is None, f"{where}: element {e[:2]!r} given twice")
        row[i] = val
    return out


def read_shared(bg: BoundGraph, entry: Any, where: str) -> Slopes:
    """A region entry's shared slopes ``"arg_slopes": [[node, i, lower, upper], ...]`` (none: {}):
    the slopes of fn elements that replace the default ones in every back-substitution of the
    region's replay, intermediate (argument bounds) and final (the engines' ``forward(slopes=)``;
    a proof's own ``slopes`` still override them in its final one). An entry with a fifth element
    ``target`` (a fn / mul / max node after ``node``), ``[node, i, lower, upper, target]``, is a
    per-target slope: used instead of the shared one (per element; kept under the key
    ``(target, node)``) only in the back-substitutions of ``target``'s argument bounds (α-CROWN's
    slopes per (relu, start node)). Any slope gives a valid line (the intercept is recomputed from
    it), so a per-target slope rests on the same row contract as a shared one; a relu's is its
    lower slope, required in [0, 1] with no upper one (used only where the element is unstable,
    where its intercept is 0)."""
    es = entry.get("arg_slopes", []) if isinstance(entry, dict) else []
    require(isinstance(es, list), f"{where}: malformed slopes")
    groups: dict[Any, list[Any]] = {}
    for e in es:
        t = e[4] if isinstance(e, list) and len(e) == 5 else None
        ok = t is None or (type(t) is int and 0 < t < len(bg.nodes)
                           and bg.nodes[t].kind in ("fn", "mul", "max"))
        require(ok, f"{where}: unknown target node {t!r}")
        groups.setdefault(t, []).append(e if t is None else e[:4])
    out: Slopes = {}
    for t, group in groups.items():
        for k, row in _slope_entries(bg, group, where, ("fn",)).items():
            require(t is None or k < t, f"{where}: slope at node {k} for target {t}, not before it")
            if bg.nodes[k].fn == "relu":
                ok = all(v is None or (v[1] is None and v[0] is not None and 0 <= v[0] <= 1) for v in row)
                require(ok, f"{where}: relu slope outside [0, 1] at node {k}")
            out[k if t is None else (t, k)] = row
    return out


def read_slopes(bg: BoundGraph) -> Any:
    """The reader of a proof's third element for this graph (see the module docstring):
    ``read(proof, where, phases)`` -> (slopes, mult), ``phases`` the leaf's split path."""
    widths = split_widths(bg)

    def read(p: list[Any], where: str, phases: dict[tuple[int, int], int] | None = None) -> Extras:
        ex = p[2]
        ok = isinstance(ex, dict) and ex and set(ex) <= {"slopes", "mult"}
        require(ok, f"{where}: malformed proof extras")
        out = _slope_entries(bg, ex.get("slopes", []), where, ("fn", "mul", "max"))
        mult: dict[tuple[int, int], Fraction] = {}
        for e in ex.get("mult", []):
            require(isinstance(e, list) and len(e) == 3, f"{where}: malformed mult entry")
            key, q = (e[0], e[1]), rational(e[2])
            # (type checks first: a bool is an int, and a list key is unhashable)
            ok = all(type(v) is int for v in key) and 0 <= key[0] < len(widths)
            require(ok and 0 <= key[1] < widths[key[0]] and key not in mult,
                    f"{where}: bad mult element {e[:2]!r}")
            require(q >= 0 and key in (phases or {}), f"{where}: multiplier {e!r} not >= 0 on a split")
            mult[key] = q
        return out, mult

    return read


SPLITTABLE = frozenset({"relu", "leaky_relu", "abs"})  # a kink at 0: a split makes the element linear


def split_widths(bg: BoundGraph) -> tuple[int, ...]:
    """Per node index, how many elements a ``["relu", node, i]`` split may name: the size of a
    relu / leaky_relu / abs node, 0 for every other node (so the walker refuses splits there)."""
    return tuple(n.size if n.kind == "fn" and n.fn in SPLITTABLE else 0 for n in bg.nodes)


def check_vnn_graph(cert: dict[str, Any], bg: BoundGraph, spec: Spec, mode: str | None = None,
                    keep: dict[str, Any] | None = None) -> Verdict:
    """``check_vnn`` for a bound graph (the caller catches malformed-input exceptions). ``keep``:
    receives the fast mode's memo of forward states under "states" (``check_vnn``'s)."""
    require(cert.get("network") == fingerprint(bg), "certificate is for a different network "
            "(or made in the removed ReLU-chain format: verify again)")
    require(cert.get("property") == spec.digest(), "certificate is for a different property")
    require(spec.n_in == bg.n_in and spec.n_out == bg.n_out, "property and network sizes differ")
    if cert.get("kind") == "vnn-sat":
        return _check_sat(cert, bg, spec)
    require(cert.get("kind") == "vnn-unsat", f"unknown certificate kind {cert.get('kind')!r}")
    mode = mode or "exact"  # (the caller's choice, never the certificate's: bounds.replay_mode)
    require(mode in ("exact", "fast"), f"unknown replay mode {mode!r}")
    method = cert.get("method", "crown")
    require(method in ("forward", "ibp", "crown"), f"unknown bound method {method!r}")
    method = "crown" if method == "crown" else "ibp"
    trees = cert["regions"]
    require(isinstance(trees, list) and len(trees) == len(spec.regions),
            "needs one split tree per input region of the property")
    n = 0
    read = read_slopes(bg)
    states: dict[Any, Any] = {}  # (fast mode: forward states and corners the disjuncts' trees share)
    if keep is not None:  # (out only: this replay's own memo, made here; nothing is read from keep)
        keep["states"] = states
    corners: dict[Any, Any] = {}
    for r, (whole, entry) in enumerate(zip(spec.regions, trees)):
        shared = read_shared(bg, entry, f"region {r}")
        for region, tree in region_parts(whole, entry):
            items = list(walk(tree, list(region.lo), list(region.hi), split_widths(bg)))
            proof_lists = [it[2][0] for it in items if it[2][0] is not None]
            n += len(proof_lists)
            require(n <= MAX_LEAVES, "too many leaves")
            forms, index = objective_forms(bg, region, combos_used(region, proof_lists))
            if mode == "fast":
                from .fast_vnn import check_leaves_fast  # numpy: only for the fast mode

                check_leaves_fast(bg, region, items, forms, index, method, read, f"region {r}", states,
                                  corners, shared)
                continue
            needed = {it[2][1] for it in items if it[2][3] is not None}  # parents of ReLU splits' children
            kept: dict[int, Any] = {}
            i = -1
            for t, (lo, hi, (proofs, parent, phases, key)) in enumerate(items):
                if proofs is None and t not in needed:
                    continue
                # a ReLU split's child starts from its parent's state (engine.forward's prior)
                st = engine.forward(bg, [Fraction(v) for v in lo], [Fraction(v) for v in hi], method, phases,
                                    prior=None if key is None else (kept[parent], key[0]), slopes=shared)
                if t in needed:
                    kept[t] = st
                if proofs is None:
                    continue
                i += 1

                def lower_bound(row: int, ex: Extras | None, st: Any = st, ph: Any = phases,
                                forms: list[Aff] = forms) -> Fraction:
                    slopes, mult = ex or ({}, {})
                    ibp = engine.form_bounds(forms[row], st.L, st.U)[0]
                    f = engine.mult_form(bg, forms[row], mult, ph) if mult else forms[row]
                    return max(ibp, engine.best_backsub(st, f, slopes or None))

                check_leaf_proofs(proofs, region, index, lower_bound, f"region {r} leaf {i}",
                                  lambda p, w, ph=phases: read(p, w, ph))
    how = "fast float64" if mode == "fast" else "exact rational"
    trusted = {"float64:ieee754-standard-model": 1} if mode == "fast" else {}
    if mode == "fast" and any(n.kind == "fn" and n.fn in LIBM_ROWS for n in bg.nodes):
        trusted[LIBM] = 1  # the fast rows' stated libm accuracy (fast_functions.py docstring)
    return Verdict(True, checked=n, trusted=trusted,
                   reason=f"unsat: {n} leaves replayed on the bound graph ({method}) in {how} mode")


#: function rows whose fast sibling calls np.exp / np.log / np.log1p / np.tanh, and the assumption
#: that makes those calls sound (stated in ``fast_functions.py``); exact mode needs neither
LIBM_ROWS = frozenset({"exp", "log", "tanh", "sigmoid", "softplus", "silu", "gelu", "pow", "erf"})
LIBM = "libm:exp,log,log1p,tanh,erf-within-4-ulp"


def _check_sat(cert: dict[str, Any], bg: BoundGraph, spec: Spec) -> Verdict:
    x = [rational(v) for v in cert["x"]]
    require(len(x) == bg.n_in, "counterexample has the wrong number of inputs")
    L, U = engine.point(bg, x)
    for region in spec.regions:
        if not region.contains(x):  # strict input bounds strictly (the closure is for unsat only)
            continue
        for disj in region.disjuncts:
            ok = True
            for t in disj:
                f = engine.objective(bg, [list(t.a)])[0]
                hi = engine.form_bounds(f, L, U)[1]  # the atom holds on the whole enclosure
                ok = ok and (hi < t.b if t.strict else hi <= t.b)
            if ok:
                why = "sat: counterexample checked on the exact outputs (or their enclosure)"
                return Verdict(True, checked=1, reason=why)
    raise Rejected("the point is not a counterexample (exact output enclosure)")


__all__ = ["check_vnn_graph", "objective_forms", "read_shared", "read_slopes"]
