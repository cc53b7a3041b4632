"""Checker for verification certificates of ReLU networks against VNN-LIB properties.

Two kinds, both checked against a network (``network.py``) and a property (``property.py``) that the
caller re-derives from the ONNX and VNN-LIB files; the certificate only names them by fingerprint.

``vnn-sat``: a counterexample ``x`` (exact rationals). Accepted iff x lies in some region's box and
the network's exact output satisfies every atom of some disjunct of that region (strict atoms
strictly, strict input bounds too: ``Region.contains``; an unsat replay uses the closed box,
which only enlarges the unsafe set).

``vnn-unsat``: per region, a split tree in preorder: ``["split", dim, "p/q"]`` is followed by the
subtree of the lower half (x_dim <= v) and then the upper half (x_dim >= v); ``["leaf", proofs]``
has one ``[k, "beta"]`` per disjunct of the region, k an atom index or a list of them whose rows
are summed (and optionally the bound method of this leaf, ``"forward"`` or ``"crown"``,
overriding the certificate's ``method``): the leaf proves Σ_{k} (a_k·y - b_k) >= beta > 0 on its
box, so some atom of that disjunct fails at every point of the leaf. The
checker rebuilds every leaf box from the region's box (so the leaves cover it by construction),
and recomputes each leaf's lower bounds itself with the forward linear relaxation below; the
certificate supplies no number the soundness depends on: the splits, the choice ``k`` and the
claimed ``beta`` are all re-checked (the recomputed bound must reach beta).

ReLU splits (for networks with many inputs): ``["relu", layer, i]`` is followed by the subtree
where hidden neuron i of ReLU layer ``layer`` is inactive (z <= 0) and then the one where it is
active (z >= 0). A leaf below such splits claims its bound on its *region*, the box intersected
with those halfspaces; since each split's two halfspaces cover everything, the leaves still cover
the box. The CROWN replay clamps a split neuron's bounds at 0 (valid on the region) and a proof
may carry a third element ``{"alpha": [[layer, i, q], ...], "mult": [[layer, i, q], ...]}``:
lower slopes q in [0, 1] for unstable neurons in the final back-substitution, and multipliers
q >= 0 of the leaf's split constraints (on the region sgn·z >= 0, so f >= f - q·sgn·z). Every
such value yields a valid bound; the checker range-checks them and recomputes the bound. A
region's entry may also be ``{"per_disjunct": [tree, ...]}``: one tree per disjunct, each
refuting that disjunct over the whole box (the unsafe set is their union).

Forward linear relaxation (symbolic intervals with CROWN's ReLU relaxations): every value v carries
linear forms L(x) <= v(x) <= U(x) over the leaf box. An affine step maps them with the positive and
negative parts of its matrix; a ReLU with concrete bounds l < 0 < u keeps U scaled by s and shifted
by t where s·v + t >= relu(v) at v = l and v = u (so on [l, u], relu being convex), and keeps L
(slope 1) when u >= -l, else 0. Stable ReLUs are the identity or zero. Then one backward pass
(CROWN's back-substitution) from each final row through the same relaxations: a positive
coefficient takes the lower line, a negative one the upper line. Each final row's bound is the
larger of the two (both are valid). In exact mode every number
is a Fraction; concrete bounds are rounded outward to floats (sound: wider) so that slopes and
shifts stay short dyadics. ``fast.py`` replays the same algorithm in float64 with outward error
bounds, for trees with many leaves. Method ``crown`` (``"method": "crown"``) computes every
pre-activation bound by back-substitution as well (tighter, costlier); ``forward`` uses the
forward forms for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

from .core import CHECKERS, Rejected, Verdict, at_least, ratio, rational, replay, require, tick
from .core import float_down as _down
from .core import float_up as _up
from .network import Affine, Net, PartsMemo, Relu, evaluate, fingerprint
from .property import Region, Spec

Form = list[Fraction]  # coefficients over the leaf's inputs, then the constant
MAX_LEAVES = 5_000_000


Combo = tuple[int, ...]


def objective_steps(
    net: Net, region: Region, combos: list[list[Combo]] | None = None
) -> tuple[tuple[Affine | Relu, ...], list[dict[Combo, int]]]:
    """The network with its last affine step composed (exactly) with one row per (disjunct j,
    combination c of its atoms): Σ_{k in c} (a_k·y - b_k). If that sum is > 0 on a box, some atom
    of c is violated there, so the disjunct is. ``combos`` defaults to the single atoms. Returns
    the steps and, per disjunct, the row of each combination."""
    if combos is None:
        combos = [[(k,) for k in range(len(d))] for d in region.disjuncts]
    rows: list[tuple[list[Fraction], Fraction]] = []
    index: list[dict[Combo, int]] = []
    for disj, cs in zip(region.disjuncts, combos):
        index.append({})
        for c in cs:
            index[-1][c] = len(rows)
            a = [sum((disj[k].a[i] for k in c), Fraction(0)) for i in range(len(disj[0].a))]
            rows.append((a, sum((disj[k].b for k in c), Fraction(0))))
    last = net.steps[-1]
    assert isinstance(last, Affine)
    M = [[sum((a * m for a, m in zip(r, col) if a), Fraction(0)) for col in zip(*last.M)] for r, _ in rows]
    c = [sum((a * v for a, v in zip(r, last.c) if a), Fraction(0)) - b for r, b in rows]
    return (*net.steps[:-1], Affine(M, c)), index


def proof_combo(p: Any, disj: tuple[Any, ...], where: str) -> Combo:
    """A leaf proof's atom choice: an index, or a list of indices (their rows are summed)."""
    if type(p) is int and 0 <= p < len(disj):  # (the common case, decided without the general path)
        return (p,)
    ks = [p] if isinstance(p, int) else p
    require(
        isinstance(ks, list)
        and ks
        and all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k < len(disj) for k in ks),
        f"{where}: bad atom choice {p!r}",
    )
    combo = tuple(sorted(set(ks)))
    require(len(combo) == len(ks), f"{where}: repeated atom in {p!r}")
    return combo


def combos_used(region: Region, proof_lists: list[Any]) -> list[list[Combo]]:
    """Every combination the leaves use, per disjunct (validated), in a fixed order."""
    used: list[set[Combo]] = [set() for _ in region.disjuncts]
    for i, proofs in enumerate(proof_lists):  # (once per leaf: conditions raise directly)
        if not (isinstance(proofs, list) and len(proofs) == len(region.disjuncts)):
            raise Rejected(f"leaf {i}: needs one proof per disjunct ({len(region.disjuncts)})")
        where = f"leaf {i}"
        for j, p in enumerate(proofs):
            if not (isinstance(p, list) and len(p) in (2, 3)):
                raise Rejected(f"{where}: proof {j} malformed")
            used[j].add(proof_combo(p[0], region.disjuncts[j], where))
    return [sorted(u) for u in used]


def _concrete(L: Form, U: Form, lo: list[Fraction], hi: list[Fraction]) -> tuple[Fraction, Fraction]:
    low = L[-1] + sum((a * (lo[j] if a > 0 else hi[j]) for j, a in enumerate(L[:-1]) if a), Fraction(0))
    up = U[-1] + sum((a * (hi[j] if a > 0 else lo[j]) for j, a in enumerate(U[:-1]) if a), Fraction(0))
    return low, up


def relu_relaxation(l: Fraction, u: Fraction) -> tuple[Fraction, Fraction, int]:
    """For l < 0 < u: an upper line s·v + t >= relu(v) on [l, u] with s a short float, and the
    lower slope (0 or 1). Valid for any s in [0, 1] because t covers both endpoints."""
    s = Fraction(min(max(float(u) / (float(u) - float(l)), 0.0), 1.0))
    t = max(-s * l, u * (1 - s))
    return s, t, int(u >= -l)


def leaf_bounds_exact(
    steps: tuple[Affine | Relu, ...], lo: list[Fraction], hi: list[Fraction]
) -> list[Fraction]:
    """Lower bounds of the final values over the box [lo, hi], in exact rational arithmetic: the
    better of the forward forms and one backward pass (CROWN back-substitution) from the final
    rows through the same ReLU relaxations."""
    d = len(lo)
    zero = Fraction(0)
    L: list[Form] = [[Fraction(int(i == j)) for j in range(d)] + [zero] for i in range(d)]
    U = [list(f) for f in L]
    relax: list[list[tuple[Fraction, Fraction, Fraction]]] = []  # per ReLU: (upper slope, shift, lower slope)
    for step in steps:
        if isinstance(step, Relu):
            layer = []
            for i in range(len(L)):
                low, up = _concrete(L[i], U[i], lo, hi)
                if low >= 0:
                    layer.append((Fraction(1), zero, Fraction(1)))
                    continue
                if up <= 0:
                    L[i] = [zero] * (d + 1)
                    U[i] = [zero] * (d + 1)
                    layer.append((zero, zero, zero))
                    continue
                s, t, alpha = relu_relaxation(_down(low), _up(up))
                U[i] = [s * a for a in U[i]]
                U[i][-1] += t
                if not alpha:
                    L[i] = [zero] * (d + 1)
                layer.append((s, t, Fraction(alpha)))
            relax.append(layer)
            continue
        nL, nU = [], []
        for row, c in zip(step.M, step.c):
            fl = [zero] * d + [c]
            fu = [zero] * d + [c]
            for w, lf, uf in zip(row, L, U):
                if not w:
                    continue
                a, b = (lf, uf) if w > 0 else (uf, lf)
                for j in range(d + 1):
                    fl[j] += w * a[j]
                    fu[j] += w * b[j]
            nL.append(fl)
            nU.append(fu)
        L, U = nL, nU
    forward = [_concrete(lf, uf, lo, hi)[0] for lf, uf in zip(L, U)]
    affs = [s for s in steps if isinstance(s, Affine)]
    k = len(affs) - 1
    backward = [
        _back_exact(affs, relax, k, _unit(len(affs[k].c), i, 1), lo, hi) for i in range(len(affs[k].c))
    ]
    return [max(f, b) for f, b in zip(forward, backward)]


def _unit(n: int, i: int, sign: int) -> list[Fraction]:
    return [Fraction(sign if j == i else 0) for j in range(n)]


def _back_exact(
    affs: list[Affine],
    relax: list[list[tuple[Fraction, Fraction, Fraction]]],
    k: int,
    row: list[Fraction],
    lo: list[Fraction],
    hi: list[Fraction],
    extras: Extras | None = None,
    phases: dict[tuple[int, int], int] | None = None,
) -> Fraction:
    """Lower bound of row·(output of affine step k) over the box: CROWN back-substitution through
    the relaxations of the ReLUs before it (a positive coefficient takes the lower line, a
    negative one the upper line), then the exact minimum of the resulting linear form. ``extras``
    (see ``proof_extras``) replace the lower slope of unstable neurons and subtract mult·sgn·z for
    split neurons (sgn = +1 active, -1 inactive: on the leaf's region sgn·z >= 0)."""
    zero = Fraction(0)
    alpha, mult = extras or ({}, {})
    aff = affs[k]
    const = sum((r * c for r, c in zip(row, aff.c) if r), zero)
    lam = [sum((r * w for r, w in zip(row, col) if r and w), zero) for col in zip(*aff.M)]
    for j in range(k - 1, -1, -1):
        tick()  # (a deep network: back-substitution is quadratic in depth)
        mu = []
        for i, (v, (s, t, a)) in enumerate(zip(lam, relax[j])):
            if v >= 0:
                unstable = t > 0  # stable neurons have the exact relaxation (t = 0)
                mu.append(v * (alpha.get((j, i), a) if unstable else a))
            else:
                mu.append(v * s)
                const += v * t  # v·relu(z) >= v·(s z + t) for v < 0
            if (j, i) in mult:
                mu[-1] -= mult[j, i] * (1 if (phases or {})[j, i] else -1)
        aff = affs[j]
        const += sum((m * c for m, c in zip(mu, aff.c) if m), zero)
        lam = [sum((m * w for m, w in zip(mu, col) if m and w), zero) for col in zip(*aff.M)]
    return const + sum((v * (lo[j] if v > 0 else hi[j]) for j, v in enumerate(lam) if v), zero)


def leaf_bounds_exact_crown(
    steps: tuple[Affine | Relu, ...], lo: list[Fraction], hi: list[Fraction]
) -> list[Fraction]:
    """Lower bounds of every final value over the box by exact CROWN (see ``crown_lower_exact``)."""
    lower = crown_lower_exact(steps, lo, hi)
    return [lower(i) for i in range(len(steps[-1].c))]


def crown_lower_exact(
    steps: tuple[Affine | Relu, ...],
    lo: list[Fraction],
    hi: list[Fraction],
    phases: dict[tuple[int, int], int] | None = None,
) -> Callable[..., Fraction]:
    """Lower bounds of the final values over the box (on its region, with ReLU splits) by CROWN in
    exact rationals, as a function of the final row and its proof extras: every pre-activation
    bound is a back-substitution bound, except for neurons that one interval step over the
    previous layer's bounds already proves stable (exact relaxation either way), as in
    ``fast_crown``; a split neuron's bounds are clamped at 0 (valid on the region). Slow: for
    small networks."""
    phases = phases or {}
    affs = [s for s in steps if isinstance(s, Affine)]
    relax: list[list[tuple[Fraction, Fraction, Fraction]]] = []
    zero = Fraction(0)
    post: list[tuple[Fraction, Fraction]] = []  # the previous layer's post-activation bounds
    for k in range(len(affs) - 1):
        layer, nxt = [], []
        for i in range(len(affs[k].c)):
            tick()
            low = up = None
            if k > 0:
                row, c = affs[k].M[i], affs[k].c[i]
                low = c + sum((w * (a if w > 0 else b) for w, (a, b) in zip(row, post) if w), zero)
                up = c + sum((w * (b if w > 0 else a) for w, (a, b) in zip(row, post) if w), zero)
            if low is None or (low < 0 < up and (k, i) not in phases):
                low = _back_exact(affs, relax, k, _unit(len(affs[k].c), i, 1), lo, hi)
                up = -_back_exact(affs, relax, k, _unit(len(affs[k].c), i, -1), lo, hi)
            if (k, i) in phases:  # valid on the leaf's region only, which is all a leaf claims
                low, up = (max(low, zero), up) if phases[k, i] else (low, min(up, zero))
            nxt.append((max(low, zero), max(up, zero)))
            if low >= 0:
                layer.append((Fraction(1), zero, Fraction(1)))
            elif up <= 0:
                layer.append((zero, zero, zero))
            else:
                s, t, alpha = relu_relaxation(_down(low), _up(up))
                layer.append((s, t, Fraction(alpha)))
        relax.append(layer)
        post = nxt
    k = len(affs) - 1
    n = len(affs[k].c)
    return lambda i, extras=None: _back_exact(affs, relax, k, _unit(n, i, 1), lo, hi, extras, phases)


Corners = list[Fraction | float]  # exact values (floats stand for themselves)


def leaves(
    tree: Any, lo: list[Fraction], hi: list[Fraction], widths: tuple[int, ...] = ()
) -> Iterator[tuple[Corners, Corners, Any]]:
    """Walk a preorder split tree, yielding (leaf lo, leaf hi, (proofs, method, phases)); rejects
    malformed trees. ``["relu", layer, i]`` splits on hidden neuron i of ReLU layer ``layer``
    (sizes ``widths``): its inactive subtree (z <= 0) comes first, then the active one (z >= 0).
    The two halfspaces cover everything, so leaves cover the box whatever the splits are;
    ``phases`` maps (layer, i) to 0/1 along the path. (Runs once per node, so its conditions raise
    directly: a ``require`` message would be formatted for every node that passes.)

    A leaf's corners are exact: the region's Fractions, and split values as ``split_value`` reads
    them (a float where one equals the value, which every comparison here treats exactly). Boxes
    share their unchanged lists, so callers must not modify them."""
    require(isinstance(tree, list) and tree, "split tree must be a non-empty list")
    stack: list[tuple[Corners, Corners, dict[tuple[int, int], int]]] = [(list(lo), list(hi), {})]
    pos = 0
    while stack:
        require(pos < len(tree), "split tree ends early: a split is missing a subtree")
        llo, lhi, phases = stack.pop()
        node = tree[pos]
        pos += 1
        if not (isinstance(node, list) and node):
            raise Rejected(f"tree entry {pos - 1} is malformed")
        if node[0] == "split":
            if len(node) != 3:
                raise Rejected(f"tree entry {pos - 1}: split needs a dimension and a value")
            dim, v = node[1], split_value(node[2])
            if not _index(dim, len(lo)):
                raise Rejected(f"tree entry {pos - 1}: bad split dimension {dim!r}")
            if not llo[dim] <= v <= lhi[dim]:
                raise Rejected(f"tree entry {pos - 1}: split value outside its box")
            upper = (llo[:dim] + [v] + llo[dim + 1 :], lhi, phases)
            lower = (llo, lhi[:dim] + [v] + lhi[dim + 1 :], phases)
            stack.append(upper)  # popped after the whole lower subtree
            stack.append(lower)
        elif node[0] == "relu":
            require(len(node) == 3, f"tree entry {pos - 1}: relu split needs a layer and a neuron")
            key = (node[1], node[2])
            require(
                _index(key[0], len(widths)) and _index(key[1], widths[key[0]]),
                f"tree entry {pos - 1}: no hidden neuron {list(key)}",
            )
            require(key not in phases, f"tree entry {pos - 1}: neuron {list(key)} split twice on a path")
            stack.append((llo, lhi, {**phases, key: 1}))  # active, after the inactive subtree
            stack.append((llo, lhi, {**phases, key: 0}))
        elif node[0] == "leaf":
            if not (len(node) in (2, 3) and isinstance(node[1], list)):
                raise Rejected(f"tree entry {pos - 1}: malformed leaf")
            if not (len(node) == 2 or node[2] in ("forward", "crown")):
                raise Rejected(f"tree entry {pos - 1}: unknown method")
            yield llo, lhi, (node[1], node[2] if len(node) == 3 else None, phases)
        else:
            raise Rejected(f"tree entry {pos - 1}: unknown node {node[0]!r}")
    require(pos == len(tree), f"split tree has {len(tree) - pos} entries after its last leaf")


def split_value(x: Any) -> float | Fraction:
    """A split value, exactly: a float when p/q (the form the search writes) is one, which it
    certainly is when q = 2^k with k <= 969 and |p| <= 2^53 (p converts exactly, and scaling by
    2^-k stays in the normal range, so ldexp is exact); otherwise the Fraction. The fast replay
    then uses such a corner as it is, without rounding it outward."""
    p, q = ratio(x)
    if q & (q - 1) == 0 and q.bit_length() <= 970 and -(2**53) <= p <= 2**53:
        return math.ldexp(float(p), 1 - q.bit_length())
    return Fraction(p, q)


def _index(i: Any, n: int) -> bool:
    return isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n


Extras = tuple[dict[tuple[int, int], Fraction], dict[tuple[int, int], Fraction]]
NO_EXTRAS: Extras = ({}, {})


def proof_extras(
    p: list[Any], phases: dict[tuple[int, int], int], widths: tuple[int, ...], where: str
) -> Extras:
    """A proof's optional third element ``{"alpha": [[layer, i, q], ...], "mult": [...]}``: lower
    slopes q in [0, 1] of unstable neurons, and multipliers q >= 0 of split constraints on this
    leaf's path. Any such values give a valid bound; they are validated, not trusted."""
    if len(p) == 2:
        return {}, {}
    ex = p[2]
    require(isinstance(ex, dict) and set(ex) <= {"alpha", "mult"}, f"{where}: malformed proof extras")
    out: list[dict[tuple[int, int], Fraction]] = []
    for name in ("alpha", "mult"):
        got: dict[tuple[int, int], Fraction] = {}
        for e in ex.get(name, []):
            require(isinstance(e, list) and len(e) == 3, f"{where}: malformed {name} entry")
            key, q = (e[0], e[1]), rational(e[2])
            require(
                _index(key[0], len(widths)) and _index(key[1], widths[key[0]]) and key not in got,
                f"{where}: bad {name} neuron {e[:2]!r}",
            )
            if name == "alpha":
                require(0 <= q <= 1, f"{where}: lower slope {q} outside [0, 1]")
            else:
                require(q >= 0 and key in phases, f"{where}: multiplier {e!r} not >= 0 on a split neuron")
            got[key] = q
        out.append(got)
    return out[0], out[1]


def check_leaf_proofs(
    proofs: Any,
    region: Region,
    index: list[dict[Combo, int]],
    lower: Callable[[int, Extras], Fraction | float],
    where: str,
    phases: dict[tuple[int, int], int] | None = None,
    widths: tuple[int, ...] = (),
    read_extras: Callable[[list[Any], str], Any] | None = None,
) -> None:
    """Each disjunct j: proofs[j] = [k or [k, ...], beta(, extras)] with lower(row of that
    combination, extras) >= beta > 0 (``lower`` gives an exact value, or a float that is one).
    ``read_extras(proof, where)`` reads a proof's third element instead of ``proof_extras`` (the
    bound-graph certificates' slopes; then a proof without one passes None).

    Runs once per leaf, so its conditions raise directly: a ``require`` message would be
    formatted for every leaf that passes."""
    disjuncts = region.disjuncts
    if not (isinstance(proofs, list) and len(proofs) == len(disjuncts)):
        raise Rejected(f"{where}: needs one proof per disjunct ({len(disjuncts)})")
    for j, p in enumerate(proofs):
        if not (isinstance(p, list) and len(p) in (2, 3)):
            raise Rejected(f"{where}: proof {j} malformed")
        combo, beta = proof_combo(p[0], disjuncts[j], where), ratio(p[1])
        if read_extras is not None:
            extras = read_extras(p, f"{where}: disjunct {j}") if len(p) == 3 else None
        else:
            at = f"{where}: disjunct {j}"
            extras = proof_extras(p, phases or {}, widths, at) if len(p) == 3 else NO_EXTRAS
        if beta[0] <= 0:
            raise Rejected(f"{where}: disjunct {j}: claimed bound {Fraction(*beta)} is not positive")
        row = index[j].get(combo)
        if row is None:
            raise Rejected(f"{where}: disjunct {j}: combination {combo} has no row")
        got = lower(row, extras)
        if not at_least(got, beta):
            got_s, beta_s = f"{float(got):.6g}", f"{float(Fraction(*beta)):.6g}"
            raise Rejected(f"{where}: disjunct {j}: recomputed bound {got_s} < claimed {beta_s}")


def hidden_widths(net: Net) -> tuple[int, ...]:
    """Sizes of the hidden ReLU layers (the affine steps before the last)."""
    affs = [s for s in net.steps if isinstance(s, Affine)]
    return tuple(len(a.c) for a in affs[:-1])


def region_parts(region: Region, entry: Any) -> list[tuple[Region, Any]]:
    """A region's certificate entry: one tree whose leaves refute every disjunct, or
    ``{"per_disjunct": [tree, ...]}``, one tree per disjunct refuting it over the whole box (the
    unsafe set is the union of the disjuncts, so refuting each one separately suffices)."""
    if not isinstance(entry, dict):
        return [(region, entry)]
    require(set(entry) == {"per_disjunct"}, "malformed region entry")
    trees = entry["per_disjunct"]
    require(isinstance(trees, list) and len(trees) == len(region.disjuncts), "needs one tree per disjunct")
    ls, hs = region.lo_strict, region.hi_strict
    return [(Region(region.lo, region.hi, (d,), ls, hs), t) for d, t in zip(region.disjuncts, trees)]


def _statement(cert: dict[str, Any], net: Net, spec: Spec, memo: PartsMemo | None = None) -> None:
    require(cert.get("network") == fingerprint(net, memo), "certificate is for a different network")
    require(cert.get("property") == spec.digest(), "certificate is for a different property")
    require(spec.n_in == net.n_in and spec.n_out == net.n_out, "property and network sizes differ")


#: ``replay_mode``: exact replay only when leaves x weights is at most this. Exact CROWN costs
#: Fractions per weight per leaf and more (quadratic in depth): one leaf on an ACAS Xu network
#: (13,000 weights) takes 1.5-3.7 s exact against 0.01 s fast, so only the small test networks
#: replay exactly by default (measured 2026-12-03: 20,000 made the ACAS Xu replay 8x slower)
EXACT_WORK = 2_000


def replay_mode(cert: Any, net: Net | Any = None) -> str:
    """The caller's choice of replay mode for an unsat certificate, by size alone: "exact" for
    small trees on small networks, else "fast". Never read from the certificate: a certificate
    saying "exact" could otherwise make its own replay take hours."""
    if not isinstance(cert, dict) or not isinstance(cert.get("regions"), list):
        return "exact"  # (malformed: rejected before any replay)
    count = 0
    for entry in cert["regions"]:
        trees = entry.get("per_disjunct") if isinstance(entry, dict) else [entry]
        for tree in trees if isinstance(trees, list) else []:
            if isinstance(tree, list):
                count += sum(1 for n in tree if isinstance(n, list) and n and n[0] == "leaf")
    weights = 1
    if isinstance(net, Net):
        weights = sum(len(s.M) * (len(s.M[0]) if s.M else 0) for s in net.steps if isinstance(s, Affine))
    elif net is not None:  # a bound graph: the entries of its affine forms
        weights = _form_entries(net)
    elif count:
        return "fast" if count > 8 else "exact"
    return "exact" if count * weights <= EXACT_WORK else "fast"


def _form_entries(bg: Any) -> int:
    """How many coefficients the affine forms of a bound graph hold (its replay cost per leaf)."""
    n, stack = 0, [bg.outputs] + [node.args for node in bg.nodes]
    while stack:
        x = stack.pop()
        if isinstance(x, (list, tuple)):
            stack.extend(x)
        elif hasattr(x, "t"):
            n += len(x.t)
    return n


def check_vnn(
    cert: Any, net: Net | Any, spec: Spec, mode: str | None = None, deadline: float | None = None
) -> Verdict:
    """Check a ``vnn-sat`` / ``vnn-unsat`` certificate against the re-derived network and property.
    ``net`` is a ReLU chain (``network_from_ir``: this module's engines) or a ``lower.BoundGraph``
    (any other network: ``graph_vnn``, the bound-table engines); ``graph_vnn.read_network`` picks
    the right one. ``mode`` ("exact" or "fast") is the caller's; None chooses by size (``replay_mode``). A
    certificate's own "mode" field is ignored. ``deadline`` (a ``time.monotonic()`` value): past
    it the replay stops and the certificate is not accepted ("deadline exceeded")."""
    return replay(_check_vnn, cert, net, spec, mode, deadline=deadline)


def _check_vnn(cert: Any, net: Net | Any, spec: Spec, mode: str | None) -> Verdict:
    require(isinstance(cert, dict), "certificate must be a JSON object")
    if not isinstance(net, Net):
        from .graph_vnn import check_vnn_graph

        return check_vnn_graph(cert, net, spec, mode or replay_mode(cert, net))
    memo: PartsMemo = {}  # (the weights packed for the fingerprint, reused by the fast mode)
    _statement(cert, net, spec, memo)
    if cert.get("kind") == "vnn-sat":
        return _check_sat(cert, net, spec)
    require(cert.get("kind") == "vnn-unsat", f"unknown certificate kind {cert.get('kind')!r}")
    mode = mode or replay_mode(cert, net)
    require(mode in ("exact", "fast"), f"unknown replay mode {mode!r}")
    method = cert.get("method", "forward")
    require(method in ("forward", "crown"), f"unknown bound method {method!r}")
    trees = cert["regions"]
    require(
        isinstance(trees, list) and len(trees) == len(spec.regions),
        "needs one split tree per input region of the property",
    )
    if mode == "fast":
        from .fast import check_regions_fast  # numpy: only for the fast mode

        n = check_regions_fast(net, spec, trees, method, memo)
        return Verdict(
            True,
            checked=n,
            trusted={"float64:ieee754-standard-model": 1},
            reason=f"unsat: {n} leaves replayed ({method}) in fast float64 mode",
        )
    n = 0
    widths = hidden_widths(net)
    for r, (whole, entry) in enumerate(zip(spec.regions, trees)):
        for region, tree in region_parts(whole, entry):
            items = list(leaves(tree, list(region.lo), list(region.hi), widths))
            n += len(items)
            require(n <= MAX_LEAVES, "too many leaves")
            steps, index = objective_steps(net, region, combos_used(region, [it[2][0] for it in items]))
            for i, (lo, hi, (proofs, how, phases)) in enumerate(items):
                tick()
                lo, hi = [Fraction(v) for v in lo], [Fraction(v) for v in hi]  # (floats: exactly)
                if (how or method) == "crown":
                    lower = crown_lower_exact(steps, lo, hi, phases)
                else:  # (ignores ReLU splits and extras: a bound over the whole box is still one)
                    lb = leaf_bounds_exact(steps, lo, hi)
                    lower = lambda i, extras, lb=lb: lb[i]  # noqa: E731
                where = f"region {r} leaf {i}"
                check_leaf_proofs(proofs, region, index, lower, where, phases, widths)
    return Verdict(
        True, checked=n, reason=f"unsat: {n} leaves replayed ({method}) in exact rational mode"
    )


def _check_sat(cert: dict[str, Any], net: Net, spec: Spec) -> Verdict:
    x = [rational(v) for v in cert["x"]]
    require(len(x) == net.n_in, "counterexample has the wrong number of inputs")
    y = evaluate(net, x)
    for region in spec.regions:
        if not region.contains(x):  # strict input bounds strictly (the closure is for unsat only)
            continue
        for disj in region.disjuncts:
            if all(t.holds(y) for t in disj):  # strict output atoms strictly
                return Verdict(True, checked=1, reason="sat: counterexample checked by exact evaluation")
    raise Rejected("the point is not a counterexample (exact evaluation)")


def _needs_statement(cert: dict[str, Any]) -> Verdict:
    raise Rejected(
        "a vnn certificate is checked against its network and property: "
        "use check_vnn(cert, net, spec) or `python -m torchlean.verify check`"
    )


for _kind in ("vnn-sat", "vnn-unsat"):
    if _kind not in CHECKERS:
        CHECKERS[_kind] = _needs_statement
