"""Sound vectorised float64 replay of the forward linear relaxation (``bounds.py``), for certificates
with many leaves. This is the one checker module that imports numpy.

Assumption (stated in TRUST_BOUNDARIES.md): numpy's float64 operations are IEEE-754 binary64 with
round-to-nearest, so every elementary result obeys the standard model fl(a∘b) = (a∘b)(1+δ), |δ| <= u
= 2^-53, plus an absolute error below 2^-1074 per operation on underflow; a sum of n products, in
any order (BLAS may reorder and block it), is then within γ_n·Σ|a_i||b_i| of the exact sum, where
γ_n = n·u/(1 - n·u). Fused multiply-add only makes errors smaller.

How rounding is kept sound: linear forms are stored as float arrays whose *stored values* are the
certified forms. After each step the float coefficients differ from the ideal ones by at most
γ·(the same computation on absolute values); over the box, a coefficient error e_j on x_j changes the
form by at most e_j·max(|lo_j|, |hi_j|), so the whole error is moved into the constant term (down for
lower forms, up for upper forms). Every such slack is inflated by a factor 4 (covering the rounding
of the slack computation itself and second-order terms, all below 1 + 10^-10 for the sizes here)
plus an absolute ``TINY`` per entry for underflow. The exact matrices of the network (Fractions) are
rounded to float once; their rounding error E is charged as E·max|v| with max|v| from the previous
step's certified concrete bounds. Concrete bounds are computed the same way and rounded outward.
Any non-finite value makes the leaf fail (never pass).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from .bounds import (
    check_leaf_proofs,
    combos_used,
    hidden_widths,
    leaves,
    objective_steps,
    proof_combo,
    proof_extras,
    region_parts,
)
from .core import require, tick
from .fast_forms import TINY, Corner, U, gamma, outward  # noqa: F401
from .fast_forms import corners as _corners
from .network import Affine, Net, Parts, PartsMemo, affine_parts
from .property import Spec

CHUNK = {"forward": 1024, "crown": 96}  # leaves per batch (measured: 48 -> 96 is 3-4% faster; bench/README)


def prepare(
    steps: tuple[Any, ...], cache: dict[int, tuple] | None = None, memo: PartsMemo | None = None
) -> list[tuple]:
    """Float version of exact steps: ("affine", M, |M - exact|, c, |c - exact|) or ("relu",).
    ``cache`` (by step identity) shares the conversion between the trees of one check, ``memo``
    the packed numerators and denominators with the network's fingerprint."""
    out: list[tuple] = []
    for s in steps:
        if not isinstance(s, Affine):
            out.append(("relu",))
            continue
        if cache is not None and id(s) in cache:
            out.append(cache[id(s)][1])
            continue
        pm, pc = affine_parts(s, memo)
        M, EM = _to_float(s.M, pm)
        c, Ec = (a[0] for a in _to_float([s.c], pc))
        out.append(("affine", M, EM, c, Ec))
        if cache is not None:
            cache[id(s)] = (s, out[-1])  # (keeps s alive, so its id is not reused)
    return out


def _to_float(exact: list[list[Fraction]], parts: Parts) -> tuple[np.ndarray, np.ndarray]:
    """The float matrix nearest to an exact one (``parts``: its ``int_parts``), and an entrywise
    bound on their difference."""
    if parts is not None:
        num, den = (np.frombuffer(a, dtype=np.int64) for a in parts)
        if ((num > -(2**53)) & (num < 2**53) & (den & (den - 1) == 0)).all():
            # the common case (weights read from float32/64): n and d are exact floats and d <= 2^62
            # a power of two, so n / d is exact
            F = (num / den).reshape(len(exact), -1)
            return F, np.zeros_like(F)
    flat = [q for row in exact for q in row]
    F = np.array([q.numerator / q.denominator for q in flat], dtype=np.float64).reshape(len(exact), -1)
    return F, _err(exact, F)  # int / int: correctly rounded


def _err(exact: list[list[Fraction]], f: np.ndarray) -> np.ndarray:
    """An upper bound on |exact - f| entrywise (zero where the exact value is a float)."""
    E = np.zeros(f.shape)
    for i, (row, frow) in enumerate(zip(exact, f.tolist())):
        for j, (q, fv) in enumerate(zip(row, frow)):
            # (both ratios are in lowest terms: equal iff fv == q exactly)
            if fv.as_integer_ratio() != q.as_integer_ratio():
                e = abs(q - Fraction(fv))
                E[i, j] = math.nextafter(float(e), math.inf)
    return E


@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def forward_bounds(layers: list[tuple], lo: np.ndarray, hi: np.ndarray, want_forms: bool = False):
    """Certified lower bounds (B, K) of the final values over each box [lo_b, hi_b] (float arrays
    (B, d)): the better of the forward forms and one backward pass from the final rows over the
    forward pass's ReLU relaxations (``fast_crown``'s back-substitution, with its error accounting).
    With ``want_forms`` also the backward pass's input coefficients (B, K, d), which the verifier
    uses to choose splits."""
    from .fast_crown import _back, relax_layer

    B, d = lo.shape
    D = d + 1
    lo_e = np.concatenate([lo, np.ones((B, 1))], axis=1)  # the constant as an input fixed at 1
    hi_e = np.concatenate([hi, np.ones((B, 1))], axis=1)
    xm = np.maximum(np.abs(lo_e), np.abs(hi_e))  # (B, D)
    eye = np.zeros((d, B, D))
    eye[np.arange(d), :, np.arange(d)] = 1.0
    AL, AU = eye, eye.copy()  # forms: (values, B, D)
    same = True  # AL is AU (no ReLU relaxed yet): one product suffices
    vmax = xm[:, :d].T  # (values, B): bound on |input of the next affine step|
    low = upp = None
    bad = np.zeros(B, dtype=bool)
    affs = [a for a in layers if a[0] == "affine"]
    vmaxs, relus, off = [], [], 0
    for layer in layers:
        if layer[0] == "relu":
            r, vmax = relax_layer(affs[len(relus)], vmaxs[-1], relus[-1] if relus else None, low, upp, off)
            AL, AU = _relu(AL, AU, r, xm)
            relus.append(r)
            off += low.shape[0]
            same = False
            continue
        _, M, EM, c, Ec = layer
        vmaxs.append(vmax)
        m = M.shape[1]
        n = M.shape[0]
        if same:
            NL = (M @ AL.reshape(m, -1)).reshape(n, B, D)
            NU = NL.copy()
            fmax = np.abs(AL).max(0)  # (B, D)
        else:
            Mp, Mn = np.maximum(M, 0.0), np.minimum(M, 0.0)
            fl, fu = AL.reshape(m, -1), AU.reshape(m, -1)
            NL = (Mp @ fl + Mn @ fu).reshape(n, B, D)
            NU = (Mp @ fu + Mn @ fl).reshape(n, B, D)
            fmax = np.maximum(np.abs(AL).max(0), np.abs(AU).max(0))
        NL[:, :, -1] += c[:, None]
        NU[:, :, -1] += c[:, None]
        # Σ_k |M_ik| |f_kbd| <= rowsum|M|_i · max_k |f_kbd|: crude, but it is multiplied by γ
        base = np.abs(M).sum(1)[:, None] * (fmax * xm).sum(1)[None, :] + np.abs(c)[:, None]
        slack = 4 * gamma(2 * m + D + 4) * base + 4 * (EM @ vmax + Ec[:, None]) + TINY
        NL[:, :, -1] -= slack
        NU[:, :, -1] += slack
        AL, AU = NL, NU
        same = False  # the slack made them differ
        low, upp = _concrete(AL, AU, lo_e, hi_e, xm)
        vmax = np.maximum(np.abs(low), np.abs(upp))
        bad |= ~(np.isfinite(low).all(0) & np.isfinite(upp).all(0))
    with np.errstate(invalid="ignore", over="ignore"):
        back, lam = _back(affs, relus, vmaxs, len(affs) - 1, lo, hi, xm[:, :d])
        lb = np.maximum(low.T, back)  # (B, K): both are certified lower bounds
    bad |= ~np.isfinite(lb).all(1)
    lb = np.where(bad[:, None], -np.inf, lb)  # a non-finite leaf never passes
    if want_forms:
        return lb, lam, np.transpose(AL[:, :, :d], (1, 0, 2))
    return lb


def _concrete(AL, AU, lo_e, hi_e, xm):
    """Outward bounds (n, B) of the lower forms' minimum and the upper forms' maximum over each
    box: each term is one product, the coefficient times the corner coordinate that minimises
    (maximises) it, and the sum of the D terms, in any order, is within γ_D·Σ|a|·max|x|."""
    D = AL.shape[2]
    low = np.einsum("nbd,nbd->nb", AL, np.where(AL > 0, lo_e, hi_e))
    upp = np.einsum("nbd,nbd->nb", AU, np.where(AU > 0, hi_e, lo_e))
    g = 4 * gamma(2 * D + 2)
    low = low - g * np.einsum("nbd,bd->nb", np.abs(AL), xm) - TINY
    upp = upp + g * np.einsum("nbd,bd->nb", np.abs(AU), xm) + TINY
    return low, upp


def relax(low: np.ndarray, upp: np.ndarray) -> tuple[np.ndarray, ...]:
    """ReLU relaxation from certified pre-activation bounds: upper slope s (1 active, 0 dead) and
    shift t with s·z + t >= relu(z) at z = l and z = u (t rounded up), the adaptive lower slope
    (0/1, as a mask), the unstable mask, a bound on the post-activation and on |z|."""
    act = low >= 0
    dead = upp <= 0
    unst = ~act & ~dead
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = np.where(unst, np.clip(upp / (upp - low), 0.0, 1.0), 0.0)
        t1 = np.nextafter(-s * low, np.inf)
        q = np.nextafter(1.0 - s, np.inf)
        t2 = np.nextafter(upp * q, np.inf)
    t = np.where(unst, np.maximum(t1, t2), 0.0)
    keep_u = np.where(act, 1.0, s)  # dead: s = 0
    keep_l = act | (unst & (upp >= -low))
    post = np.where(dead, 0.0, np.maximum(upp, 0.0))
    return keep_u, t, keep_l, unst, post, np.maximum(np.abs(low), np.abs(upp))


def _relu(AL, AU, r, xm):
    """The forms of the ReLU's output: upper s·U + t (t and the rounding error in the constant,
    on the relaxed neurons), lower α·L (α is 0/1: exact)."""
    NU = AU * r.s[:, :, None]
    NU[:, :, -1] += r.t
    err = 4 * gamma(AU.shape[2] + 4) * (np.einsum("nbd,bd->nb", np.abs(NU), xm) + r.t) + TINY
    NU[:, :, -1] += np.where(r.unst, err, 0.0)
    return AL * r.a[:, :, None], NU


def check_regions_fast(
    net: Net, spec: Spec, trees: list[Any], method: str = "forward", memo: PartsMemo | None = None
) -> int:
    """Replay every leaf of every region's tree in the fast mode; returns the number of leaves.
    ``memo``: the packed weights the fingerprint of ``net`` computed, if any (``prepare``)."""
    total = 0
    widths = hidden_widths(net)
    cache: dict[int, tuple] = {}
    for r, (whole, entry) in enumerate(zip(spec.regions, trees)):
        for region, tree in region_parts(whole, entry):
            total += _check_tree_fast(net, region, tree, method, widths, f"region {r}", cache, memo)
    return total


def _check_tree_fast(
    net: Net,
    region: Any,
    tree: Any,
    method: str,
    widths: tuple[int, ...],
    where: str,
    steps_cache: dict,
    memo: PartsMemo | None,
) -> int:
    from .fast_crown import crown_bounds

    cache: dict[int, Corner] = {}
    groups: dict[str, list[tuple[int, list[Fraction], list[Fraction], Any, Any]]] = {
        "forward": [],
        "crown": [],
    }
    for i, (lo, hi, (p, how, phases)) in enumerate(leaves(tree, list(region.lo), list(region.hi), widths)):
        groups[how or method].append((i, lo, hi, p, phases))
    require(any(groups.values()), f"{where}: no leaves")
    used = combos_used(region, [item[3] for g in groups.values() for item in g])
    steps, index = objective_steps(net, region, used)
    layers = prepare(steps, steps_cache, memo)
    n_rows = sum(len(ix) for ix in index)
    for how, items in groups.items():
        for start in range(0, len(items), CHUNK[how]):
            tick()
            part = items[start : start + CHUNK[how]]
            lo, hi = (_corners([b[side + 1] for b in part], cache, side) for side in (0, 1))
            if how == "forward":  # (ignores ReLU splits and extras: still a bound over the box)
                lb = forward_bounds(layers, lo, hi)
            else:
                lb = crown_bounds(layers, lo, hi, **_split_arrays(part, region, index, widths, n_rows, where))
            # (a float bound is exact as it stands; check_leaf_proofs fails it if not finite)
            for (i, _, _, proofs, phases), row in zip(part, lb.tolist()):
                lower = lambda k, extras, row=row: row[k]  # noqa: E731
                check_leaf_proofs(proofs, region, index, lower, f"{where} leaf {i}", phases, widths)
    return sum(len(g) for g in groups.values())


def _split_arrays(part, region, index, widths, n_rows, where) -> dict[str, np.ndarray | None]:
    """Per-leaf phases (B, H) and, per final row, the lower slopes and multipliers its proof gives
    (B, K, H); None where no leaf of the batch has any. The values are validated by
    ``proof_extras`` here and again (identically) when the proofs are checked."""
    offs = np.cumsum((0, *widths))
    B, H = len(part), int(offs[-1])
    if not any(item[4] for item in part) and not any(len(p) == 3 for item in part for p in item[3]):
        return {}
    phases = np.full((B, H), -1, dtype=np.int8)
    alpha = np.full((B, n_rows, H), np.nan)
    mult = np.zeros((B, n_rows, H))
    for b, (i, _, _, proofs, ph) in enumerate(part):
        for (layer, n), v in ph.items():
            phases[b, offs[layer] + n] = v
        require(
            isinstance(proofs, list) and len(proofs) == len(region.disjuncts), f"{where} leaf {i}: bad proofs"
        )
        for j, p in enumerate(proofs):
            require(isinstance(p, list) and len(p) in (2, 3), f"{where} leaf {i}: proof {j} malformed")
            a, m = proof_extras(p, ph, widths, f"{where} leaf {i}")
            row = index[j][proof_combo(p[0], region.disjuncts[j], f"{where} leaf {i}")]
            for (layer, n), q in a.items():
                alpha[b, row, offs[layer] + n] = float(q)
            for (layer, n), q in m.items():
                mult[b, row, offs[layer] + n] = float(q)
    return {"phases": phases, "alpha": alpha, "mult": mult}
