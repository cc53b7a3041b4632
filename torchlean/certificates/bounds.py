"""Checker for verification certificates of ReLU networks against VNN-LIB properties.

Two kinds, both checked against a network (``network.py``) and a property (``property.py``) that the
caller re-derives from the ONNX and VNN-LIB files; the certificate only names them by fingerprint.

``vnn-sat``: a counterexample ``x`` (exact rationals). Accepted iff x lies in some region's box and
the network's exact output satisfies every atom of some disjunct of that region (strict atoms
strictly).

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

from .core import CHECKERS, Rejected, Verdict, rational, require
from .network import Affine, Net, Relu, evaluate, fingerprint
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
    for i, proofs in enumerate(proof_lists):
        require(
            isinstance(proofs, list) and len(proofs) == len(region.disjuncts),
            f"leaf {i}: needs one proof per disjunct ({len(region.disjuncts)})",
        )
        for j, p in enumerate(proofs):
            require(isinstance(p, list) and len(p) == 2, f"leaf {i}: proof {j} malformed")
            used[j].add(proof_combo(p[0], region.disjuncts[j], f"leaf {i}"))
    return [sorted(u) for u in used]


def _down(q: Fraction) -> Fraction:
    f = float(q)  # OverflowError for huge values: a malformed certificate
    if Fraction(f) > q:
        f = math.nextafter(f, -math.inf)
    return Fraction(f)


def _up(q: Fraction) -> Fraction:
    return -_down(-q)


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
) -> Fraction:
    """Lower bound of row·(output of affine step k) over the box: CROWN back-substitution through
    the relaxations of the ReLUs before it (a positive coefficient takes the lower line, a
    negative one the upper line), then the exact minimum of the resulting linear form."""
    zero = Fraction(0)
    aff = affs[k]
    const = sum((r * c for r, c in zip(row, aff.c) if r), zero)
    lam = [sum((r * w for r, w in zip(row, col) if r and w), zero) for col in zip(*aff.M)]
    for j in range(k - 1, -1, -1):
        mu = []
        for v, (s, t, alpha) in zip(lam, relax[j]):
            if v >= 0:
                mu.append(v * alpha)
            else:
                mu.append(v * s)
                const += v * t  # v·relu(z) >= v·(s z + t) for v < 0
        aff = affs[j]
        const += sum((m * c for m, c in zip(mu, aff.c) if m), zero)
        lam = [sum((m * w for m, w in zip(mu, col) if m and w), zero) for col in zip(*aff.M)]
    return const + sum((v * (lo[j] if v > 0 else hi[j]) for j, v in enumerate(lam) if v), zero)


def leaf_bounds_exact_crown(
    steps: tuple[Affine | Relu, ...], lo: list[Fraction], hi: list[Fraction]
) -> list[Fraction]:
    """Lower bounds of the final values over the box by CROWN in exact rationals: every
    pre-activation bound is a back-substitution bound, except for neurons that one interval
    step over the previous layer's bounds already proves stable (exact relaxation either way),
    as in ``fast_crown`` (slow: for small networks)."""
    affs = [s for s in steps if isinstance(s, Affine)]
    relax: list[list[tuple[Fraction, Fraction, Fraction]]] = []
    zero = Fraction(0)
    post: list[tuple[Fraction, Fraction]] = []  # the previous layer's post-activation bounds
    for k in range(len(affs) - 1):
        layer, nxt = [], []
        for i in range(len(affs[k].c)):
            low = up = None
            if k > 0:
                row, c = affs[k].M[i], affs[k].c[i]
                low = c + sum((w * (a if w > 0 else b) for w, (a, b) in zip(row, post) if w), zero)
                up = c + sum((w * (b if w > 0 else a) for w, (a, b) in zip(row, post) if w), zero)
            if low is None or (low < 0 < up):
                low = _back_exact(affs, relax, k, _unit(len(affs[k].c), i, 1), lo, hi)
                up = -_back_exact(affs, relax, k, _unit(len(affs[k].c), i, -1), lo, hi)
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
    return [_back_exact(affs, relax, k, _unit(len(affs[k].c), i, 1), lo, hi) for i in range(len(affs[k].c))]


def leaves(
    tree: Any, lo: list[Fraction], hi: list[Fraction]
) -> Iterator[tuple[list[Fraction], list[Fraction], Any]]:
    """Walk a preorder split tree, yielding (leaf lo, leaf hi, leaf proofs); rejects malformed trees."""
    require(isinstance(tree, list) and tree, "split tree must be a non-empty list")
    stack = [(list(lo), list(hi))]
    pos = 0
    while stack:
        require(pos < len(tree), "split tree ends early: a split is missing a subtree")
        llo, lhi = stack.pop()
        node = tree[pos]
        pos += 1
        require(isinstance(node, list) and node, f"tree entry {pos - 1} is malformed")
        if node[0] == "split":
            require(len(node) == 3, f"tree entry {pos - 1}: split needs a dimension and a value")
            dim, v = node[1], rational(node[2])
            require(
                isinstance(dim, int) and not isinstance(dim, bool) and 0 <= dim < len(lo),
                f"tree entry {pos - 1}: bad split dimension {dim!r}",
            )
            require(llo[dim] <= v <= lhi[dim], f"tree entry {pos - 1}: split value outside its box")
            upper = (llo[:dim] + [v] + llo[dim + 1 :], list(lhi))
            lower = (list(llo), lhi[:dim] + [v] + lhi[dim + 1 :])
            stack.append(upper)  # popped after the whole lower subtree
            stack.append(lower)
        elif node[0] == "leaf":
            require(
                len(node) in (2, 3) and isinstance(node[1], list), f"tree entry {pos - 1}: malformed leaf"
            )
            require(
                len(node) == 2 or node[2] in ("forward", "crown"), f"tree entry {pos - 1}: unknown method"
            )
            yield llo, lhi, (node[1], node[2] if len(node) == 3 else None)
        else:
            raise Rejected(f"tree entry {pos - 1}: unknown node {node[0]!r}")
    require(pos == len(tree), f"split tree has {len(tree) - pos} entries after its last leaf")


def check_leaf_proofs(
    proofs: Any, region: Region, index: list[dict[Combo, int]], lower: Callable[[int], Fraction], where: str
) -> None:
    """Each disjunct j: proofs[j] = [k or [k, ...], beta] with lower(row of that combination) >=
    beta > 0."""
    require(
        isinstance(proofs, list) and len(proofs) == len(region.disjuncts),
        f"{where}: needs one proof per disjunct ({len(region.disjuncts)})",
    )
    for j, p in enumerate(proofs):
        require(isinstance(p, list) and len(p) == 2, f"{where}: proof {j} malformed")
        combo, beta = proof_combo(p[0], region.disjuncts[j], where), rational(p[1])
        require(beta > 0, f"{where}: disjunct {j}: claimed bound {beta} is not positive")
        require(combo in index[j], f"{where}: disjunct {j}: combination {combo} has no row")
        got = lower(index[j][combo])
        require(
            got >= beta,
            f"{where}: disjunct {j}: recomputed bound {float(got):.6g} < claimed {float(beta):.6g}",
        )


def _statement(cert: dict[str, Any], net: Net, spec: Spec) -> None:
    require(cert.get("network") == fingerprint(net), "certificate is for a different network")
    require(cert.get("property") == spec.digest(), "certificate is for a different property")
    require(spec.n_in == net.n_in and spec.n_out == net.n_out, "property and network sizes differ")


def check_vnn(cert: Any, net: Net, spec: Spec, mode: str | None = None) -> Verdict:
    """Check a ``vnn-sat`` / ``vnn-unsat`` certificate against the re-derived network and property.
    ``mode`` overrides the certificate's replay mode ("exact" or "fast")."""
    try:
        require(isinstance(cert, dict), "certificate must be a JSON object")
        _statement(cert, net, spec)
        if cert.get("kind") == "vnn-sat":
            return _check_sat(cert, net, spec)
        require(cert.get("kind") == "vnn-unsat", f"unknown certificate kind {cert.get('kind')!r}")
        mode = mode or cert.get("mode", "exact")
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

            n = check_regions_fast(net, spec, trees, method)
            return Verdict(
                True,
                checked=n,
                trusted={"float64:ieee754-standard-model": 1},
                reason=f"unsat: {n} leaves replayed ({method}) in fast float64 mode",
            )
        n = 0
        for r, (region, tree) in enumerate(zip(spec.regions, trees)):
            items = list(leaves(tree, list(region.lo), list(region.hi)))
            n += len(items)
            require(n <= MAX_LEAVES, "too many leaves")
            steps, index = objective_steps(net, region, combos_used(region, [p for _, _, (p, _) in items]))
            for i, (lo, hi, (proofs, how)) in enumerate(items):
                how = how or method
                lb = (leaf_bounds_exact_crown if how == "crown" else leaf_bounds_exact)(steps, lo, hi)
                check_leaf_proofs(proofs, region, index, lb.__getitem__, f"region {r} leaf {i}")
        return Verdict(
            True, checked=n, reason=f"unsat: {n} leaves replayed ({method}) in exact rational mode"
        )
    except Rejected as e:
        return Verdict(False, reason=str(e))
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError) as e:
        return Verdict(False, reason=f"malformed certificate: {type(e).__name__}: {e}")


def _check_sat(cert: dict[str, Any], net: Net, spec: Spec) -> Verdict:
    x = [rational(v) for v in cert["x"]]
    require(len(x) == net.n_in, "counterexample has the wrong number of inputs")
    y = evaluate(net, x)
    for region in spec.regions:
        if not all(a <= v <= b for a, v, b in zip(region.lo, x, region.hi)):
            continue
        for disj in region.disjuncts:
            ok = True
            for t in disj:
                val = sum((a * v for a, v in zip(t.a, y) if a), Fraction(0))
                ok = ok and (val < t.b if t.strict else val <= t.b)
            if ok:
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
