"""Branch-and-bound over ReLU phases (untrusted search, checked output), for networks with many inputs.

Input splitting is hopeless at 784 inputs; there we split hidden neurons instead. A subproblem is
the region's box with some neurons' phases fixed (z <= 0 or z >= 0). It is bounded by the same
sound float64 CROWN the checker replays (``certificates.fast_crown``), with split neurons clamped,
and with two sets of free parameters found here by projected gradient ascent on the bound:

- lower slopes α in [0, 1] of the unstable neurons for the final rows (α-CROWN), and
- multipliers β >= 0 of the split constraints (β-CROWN's Lagrangian: f >= f - β·sgn·z on the
  subproblem's region).

Any α, β give a valid bound, so the checker only has to recompute the bound with the values the
leaf records; with every phase fixed and optimal β the bound is the exact linear-programming
minimum over the region (LP duality), which is what makes the search complete in the limit.
Gradient ascent only approaches that optimum, so a subproblem with every phase fixed skips it:
``lp`` solves the region's LP with HiGHS and records its duals as β (or its minimiser as a
counterexample candidate); without highspy such a subproblem ends the search as before.
Branching: the unstable neuron with the largest intercept score |λ⁻|·t of the best row (BaBSR).
Each disjunct of the region gets its own tree (``{"per_disjunct": [...]}``).
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates.fast_crown import crown_bounds
from . import lp
from .tree import SplitTree, choice, threshold

EPS = 1e-8
STEPS = 24  # gradient steps per batch
DIGITS = 5  # significant digits of the recorded α and β (any values are sound)


def _affines(layers: list[tuple]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(a[1], a[3]) for a in layers if a[0] == "affine"]


def bound_and_grad(
    affs: list[tuple[np.ndarray, np.ndarray]],
    relax: list[tuple],
    lo: np.ndarray,
    hi: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    sgn: np.ndarray,
    offs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Plain float64 CROWN bound of every final row (B, K) for the given α, β (no rounding
    control: a search heuristic), its gradient in α and β, and the back-substituted coefficients
    on each hidden layer's output (for branching)."""
    B, K, _ = alpha.shape
    M, c = affs[-1]
    A = np.broadcast_to(M, (B, *M.shape)).copy()
    const = np.broadcast_to(c, (B, K)).copy()
    saved = []
    for j in range(len(affs) - 2, -1, -1):
        s, t, keep_l, _, unst = relax[j]
        sl = slice(offs[j], offs[j + 1])
        a = np.where(unst.T[:, None, :], alpha[:, :, sl], keep_l.T[:, None, :])
        pos = A >= 0
        az = np.where(pos, A * a, A * s.T[:, None, :]) - beta[:, :, sl] * sgn[:, None, sl]
        const += np.einsum("bkn,nb->bk", np.minimum(A, 0.0), t)
        Mj, cj = affs[j]
        const += az @ cj
        saved.append((A, pos, a))
        A = az @ Mj
    val = np.where(A >= 0, A * lo[:, None, :], A * hi[:, None, :]).sum(-1) + const
    G = np.where(A >= 0, lo[:, None, :], hi[:, None, :])  # d val / d A (at the inputs)
    ga, gb = np.zeros_like(alpha), np.zeros_like(beta)
    coeffs = []
    for j in range(len(affs) - 1):
        Ah, pos, a = saved.pop()
        s, t, _, _, unst = relax[j]
        sl = slice(offs[j], offs[j + 1])
        Mj, cj = affs[j]
        Gz = G @ Mj.T + cj  # d val / d (coefficient on z_j)
        ga[:, :, sl] = np.where(pos & unst.T[:, None, :], Gz * Ah, 0.0)
        gb[:, :, sl] = -Gz * sgn[:, None, sl]
        G = Gz * np.where(pos, a, s.T[:, None, :]) + np.where(pos, 0.0, t.T[:, None, :])
        coeffs.append(Ah)
    return val, ga, gb, coeffs


def optimise(
    layers: list[tuple],
    lo: np.ndarray,
    hi: np.ndarray,
    phases: np.ndarray,
    widths: tuple[int, ...],
    steps: int = STEPS,
    relax: list[tuple] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray], list[tuple]]:
    """α, β for each box and final row by projected gradient ascent (Adam) on the bound, starting
    from CROWN's adaptive slopes and β = 0. Returns (α, β, float bound, coefficients, relaxations)
    of the best iterate per row. ``relax``: the boxes' relaxations, if the caller has them."""
    offs = np.cumsum((0, *widths))
    if relax is None:
        _, _, relax = crown_bounds(layers, lo, hi, phases=phases, want_relax=True)
    affs = _affines(layers)
    B, K = lo.shape[0], affs[-1][0].shape[0]
    sgn = np.where(phases == 1, 1.0, np.where(phases == 0, -1.0, 0.0))
    alpha = np.concatenate(
        [np.broadcast_to(r[2].T[:, None, :], (B, K, r[2].shape[0])) for r in relax], 2
    ).copy()
    beta = np.zeros_like(alpha)
    best_val = np.full((B, K), -np.inf)
    best_a, best_b = alpha.copy(), beta.copy()
    coeffs: list[np.ndarray] = []
    m_a = v_a = m_b = v_b = 0.0
    lr_a, lr_b = 0.1, 0.05
    for it in range(steps + 1):
        val, ga, gb, co = bound_and_grad(affs, relax, lo, hi, alpha, beta, sgn, offs)
        better = val > best_val
        best_val = np.where(better, val, best_val)
        best_a = np.where(better[:, :, None], alpha, best_a)
        best_b = np.where(better[:, :, None], beta, best_b)
        if it == 0:
            coeffs = co
        if it == steps or (best_val > EPS).any(1).all():
            break
        m_a, v_a = 0.9 * m_a + 0.1 * ga, 0.999 * v_a + 0.001 * ga * ga
        m_b, v_b = 0.9 * m_b + 0.1 * gb, 0.999 * v_b + 0.001 * gb * gb
        k = it + 1
        alpha = np.clip(alpha + lr_a * (m_a / (1 - 0.9**k)) / (np.sqrt(v_a / (1 - 0.999**k)) + 1e-12), 0, 1)
        beta = np.maximum(beta + lr_b * (m_b / (1 - 0.9**k)) / (np.sqrt(v_b / (1 - 0.999**k)) + 1e-12), 0)
        beta = np.where(sgn[:, None, :] != 0, beta, 0.0)
    return best_a, best_b, best_val, coeffs, relax


def _short(v: float) -> str:
    return str(Fraction(f"{v:.{DIGITS}g}"))


def _round(x: np.ndarray) -> np.ndarray:
    """The values a certificate records (and the checker reads back): DIGITS significant digits."""
    return np.array([float(Fraction(_short(v))) for v in x.ravel()]).reshape(x.shape)


def _extras(a: np.ndarray, b: np.ndarray, unst: np.ndarray, ph: np.ndarray, offs: np.ndarray) -> dict:
    """The proof extras of one row: α of its unstable neurons, β of its split neurons (non-zero)."""
    out: dict[str, list] = {}
    layer_of = np.searchsorted(offs, np.arange(offs[-1]), side="right") - 1
    al = [[int(layer_of[h]), int(h - offs[layer_of[h]]), _short(a[h])] for h in np.nonzero(unst)[0]]
    mu = [
        [int(layer_of[h]), int(h - offs[layer_of[h]]), _short(b[h])]
        for h in np.nonzero((ph >= 0) & (b > 0))[0]
    ]
    if al:
        out["alpha"] = al
    if mu:
        out["mult"] = mu
    return out


def relu_bab(
    layers: list[tuple],
    widths: tuple[int, ...],
    lo: np.ndarray,
    hi: np.ndarray,
    names: list[tuple[int, ...]],
    deadline: float,
    stats: dict[str, Any],
    batch: int = 32,
    on_batch: Any = None,
    confirm: Any = None,
) -> list[Any] | None:
    """A preorder ReLU-split tree whose leaves prove some row (a combination of the disjunct's
    atoms, ``names``) > 0 on their region, or None at the deadline or when a subproblem with no
    unstable neuron left cannot be bounded. Such a subproblem is decided by its LP (``lp``): a
    minimiser that ``confirm(x)`` confirms is left in ``stats["counterexample"]``."""
    offs = np.cumsum((0, *widths))
    H = int(offs[-1])
    tree = SplitTree()
    queue: list[tuple[int, np.ndarray]] = [(0, np.full(H, -1, dtype=np.int8))]
    last_dt = 0.0
    while queue:
        start = time.perf_counter()
        if start + last_dt > deadline:
            return None
        part, queue = queue[:batch], queue[batch:]
        ids = [p[0] for p in part]
        phases = np.stack([p[1] for p in part])
        B = len(part)
        blo, bhi = np.broadcast_to(lo, (B, lo.size)), np.broadcast_to(hi, (B, hi.size))
        plain, _, relax = crown_bounds(layers, blo, bhi, phases=phases, want_relax=True)
        alpha = beta = None
        lb = plain
        unst_all = np.concatenate([r[4] for r in relax], 0).T  # (B, H)
        todo = ~(plain > EPS).any(1)
        fixed = ~(unst_all & (phases < 0)).any(1)
        if fixed.any() and lp.available():  # every phase fixed: the LP's duals are the best β
            todo &= ~fixed
        score = np.zeros((B, H))
        if todo.any():
            sub = [tuple(x[:, todo] for x in r) for r in relax]  # (the relaxations are (n, B))
            alpha, beta, val, coeffs, _ = optimise(
                layers, blo[todo], bhi[todo], phases[todo], widths, relax=sub
            )
            # BaBSR's intercept score: how much the best row pays for neuron h's upper relaxation
            kb = val.argmax(1)
            rows = np.concatenate([c[np.arange(len(kb)), kb] for c in coeffs], 1)  # (b, H)
            t_sub = np.concatenate([r[1] for r in relax], 0).T[todo]
            score[todo] = np.abs(np.minimum(rows, 0.0)) * t_sub
            alpha, beta = _round(alpha), _round(beta)
            full_a = np.full((B, *alpha.shape[1:]), np.nan)
            full_b = np.zeros((B, *beta.shape[1:]))
            full_a[todo], full_b[todo] = alpha, beta
            alpha, beta = full_a, full_b
            lb = np.where(
                todo[:, None], crown_bounds(layers, blo, bhi, phases=phases, alpha=alpha, mult=beta), plain
            )
        stats["boxes"] = stats.get("boxes", 0) + B
        for b in range(B):
            k = int(lb[b].argmax())
            if lb[b, k] > EPS:
                proof: list[Any] = [choice(names[k]), threshold(lb[b, k])]
                if todo[b]:
                    ex = _extras(alpha[b, k], beta[b, k], unst_all[b], phases[b], offs)
                    if ex:
                        proof.append(ex)
                tree.nodes[ids[b]] = ("leaf", [proof])
                stats["leaves"] = stats.get("leaves", 0) + 1
                continue
            cand = np.nonzero(unst_all[b] & (phases[b] < 0))[0]
            if cand.size == 0:  # every phase fixed: the region's LP decides it (its duals are β)
                one = [tuple(x[:, b : b + 1] for x in r) for r in relax]
                out = lp.fixed_leaf(layers, widths, blo[b], bhi[b], phases[b], one, plain[b], names, stats,
                                    confirm)
                if isinstance(out, list):
                    stats["counterexample"] = out
                    return None
                if out is None:
                    return None  # still unproved: a counterexample, an LP failure or a float limit
                tree.nodes[ids[b]] = out
                stats["leaves"] = stats.get("leaves", 0) + 1
                continue
            h = int(cand[np.argmax(score[b, cand])])
            layer = int(np.searchsorted(offs, h, side="right") - 1)
            a, c = tree.split_relu(ids[b], layer, h - int(offs[layer]))
            for child, v in ((a, 0), (c, 1)):
                ph = phases[b].copy()
                ph[h] = v
                queue.append((child, ph))
        last_dt = time.perf_counter() - start
        if on_batch is not None:
            on_batch(len(queue))
    return tree.preorder()
