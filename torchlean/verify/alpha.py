"""α-CROWN on the bound table: optimise the free slopes of every function row (not only ReLU) of the
final back-substitution by projected gradient ascent on the bound (untrusted heuristic).

What is sound is not computed here. This module only *chooses* slopes: per objective row r and
per element i of every ``fn`` node, a lower slope aL and an upper slope aU. Any slope gives a valid
line once the table's row supplies its intercept (``row.lower_intercept(l, u, a)``: valid for every
a by the row's contract), so the bound is then recomputed by the checker's own engine
(``engine.crown(bg, lo, hi, C=[row], slopes=...)``, through ``verify.table``) and the better of
that and the default CROWN bound is kept.

To get a gradient, the back-substitution is run here in float64 on dense matrices, with the
intercepts from the table's fast rows (``fast_functions.FAST``) and the argument bounds the
engine's forward pass computed; McCormick products and max nodes take their default lines (their
weights are not optimised yet). The gradient of the bound in the slopes is taken in reverse mode
through that computation (the intercept's derivative in its slope by a central difference of the
fast row). Its numbers are a guide only: an error there costs tightness, never soundness.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

#: dense (relaxed elements x variables) matrices above this many entries are not built (default
#: slopes kept): the float back-substitution here is dense
MAX_DENSE = 6_000_000


def dense_size(bg: Any) -> int:
    """Entries of the dense matrices ``Backsub`` would build for this graph."""
    per = sum(n.size * (2 if n.kind == "mul" else 1) for n in bg.nodes if n.kind not in ("input", "const"))
    return (per + len(bg.outputs)) * bg.n_vars


def _dense(forms: list[Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    A = np.zeros((len(forms), n))
    c = np.zeros(len(forms))
    for i, f in enumerate(forms):
        for v, q in f.t.items():
            A[i, v] = float(q)
        c[i] = float(f.c)
    return A, c


class Backsub:
    """The float back-substitution of a bound graph at fixed argument bounds (engine state ``st``)."""

    def __init__(self, bg: Any, st: Any, fast_rows: dict[str, Any]):
        self.bg, self.n = bg, bg.n_vars
        self.L = np.array([float(v) for v in st.L])
        self.U = np.array([float(v) for v in st.U])
        self.terminal = np.zeros(self.n, bool)
        self.ops: list[dict[str, Any]] = []  # in back-substitution order (latest node first)
        for k in range(len(bg.nodes) - 1, -1, -1):
            node = bg.nodes[k]
            blk = slice(node.offset, node.offset + node.size)
            if node.kind in ("input", "const"):
                self.terminal[blk] = True
                continue
            op: dict[str, Any] = {"k": k, "kind": node.kind, "blk": blk}
            if node.kind == "fn":
                op["A"], op["c"] = _dense(node.args, self.n)
                lu = np.array([[float(a), float(b)] for a, b in st.arg[k]])
                op["l"], op["u"] = lu[:, 0], lu[:, 1]
                op["row"], op["attrs"] = fast_rows[node.fn], dict(node.attrs)
                dl, du = op["row"].default_slopes(op["l"], op["u"], **op["attrs"])
                op["dl"], op["du"] = np.asarray(dl, float), np.asarray(du, float)
            elif node.kind == "mul":
                op["Ax"], op["cx"] = _dense([x for x, _ in node.args], self.n)
                op["Aw"], op["cw"] = _dense([w for _, w in node.args], self.n)
                b = np.array([[float(v) for v in (*bx, *bw)] for bx, bw in st.arg[k]])
                op["lx"], op["ux"], op["lw"], op["uw"] = b.T
            else:  # max: lower = the member with the largest lower bound; upper = constant max
                lo_f, up_f, up_c = [], [], []
                for g, bs in zip(node.args, st.arg[k]):
                    j = max(range(len(bs)), key=lambda m, bs=bs: bs[m][0])
                    dom = all(bs[j][0] >= b[1] for m, b in enumerate(bs) if m != j)
                    lo_f.append(g[j])
                    up_f.append(g[j] if dom else None)
                    up_c.append(0.0 if dom else float(max(b[1] for b in bs)))
                op["Alo"], op["clo"] = _dense(lo_f, self.n)
                zero = type(lo_f[0])({}, Fraction(0))
                op["Aup"], op["cup"] = _dense([f if f is not None else zero for f in up_f], self.n)
                op["cup"] = op["cup"] + np.array(up_c)
            self.ops.append(op)

    def default_slopes(self, R: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        return {op["k"]: (np.tile(op["dl"], (R, 1)), np.tile(op["du"], (R, 1)))
                for op in self.ops if op["kind"] == "fn"}

    def bound(self, lam0: np.ndarray, c0: np.ndarray, slopes: dict[int, tuple[np.ndarray, np.ndarray]],
              want_grad: bool = False) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
        """Lower bounds (R,) of the rows lam0·v + c0 and, if asked, their gradients in the slopes."""
        lam, const = lam0.copy(), c0.astype(float).copy()
        tape = []
        for op in self.ops:
            blk = op["blk"]
            lk = lam[:, blk].copy()
            lam[:, blk] = 0.0
            pos = lk > 0
            if op["kind"] == "fn":
                aL, aU = slopes[op["k"]]
                row, at = op["row"], op["attrs"]
                bL = row.lower_intercept(op["l"], op["u"], aL, **at)
                bU = row.upper_intercept(op["l"], op["u"], aU, **at)
                coef = np.where(pos, aL, aU)
                m = lk * coef
                const += (lk * np.where(pos, bL, bU)).sum(1) + m @ op["c"]
                lam += m @ op["A"]
                tape.append((op, lk, pos, coef, np.where(pos, bL, bU)))
            elif op["kind"] == "mul":  # default McCormick planes (t = 0)
                cx = np.where(pos, op["lw"], op["uw"])
                cw = np.broadcast_to(op["lx"], lk.shape)
                cc = np.where(pos, -op["lx"] * op["lw"], -op["lx"] * op["uw"])
                mx, mw = lk * cx, lk * cw
                lam += mx @ op["Ax"] + mw @ op["Aw"]
                const += mx @ op["cx"] + mw @ op["cw"] + (lk * cc).sum(1)
                tape.append((op, lk, pos, (cx, cw), cc))
            else:
                mlo, mup = np.where(pos, lk, 0.0), np.where(pos, 0.0, lk)
                lam += mlo @ op["Alo"] + mup @ op["Aup"]
                const += mlo @ op["clo"] + mup @ op["cup"]
                tape.append((op, lk, pos, None, None))
        t = self.terminal
        corner = np.where(lam[:, t] > 0, self.L[t], self.U[t])
        out = const + (lam[:, t] * corner).sum(1)
        if not want_grad:
            return out, {}
        g_lam = np.zeros_like(lam)
        g_lam[:, t] = corner
        grads: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for op, lk, pos, coef, bsel in reversed(tape):
            if op["kind"] == "fn":
                g_m = g_lam @ op["A"].T + op["c"]
                g_lk = g_m * coef + bsel
                g_coef = g_m * lk
                aL, aU = slopes[op["k"]]
                dbL = _slope_diff(op, "lower_intercept", aL)
                dbU = _slope_diff(op, "upper_intercept", aU)
                grads[op["k"]] = (np.where(pos, g_coef + lk * dbL, 0.0),
                                  np.where(pos, 0.0, g_coef + lk * dbU))
            elif op["kind"] == "mul":
                cx, cw = coef
                g_lk = (g_lam @ op["Ax"].T + op["cx"]) * cx + (g_lam @ op["Aw"].T + op["cw"]) * cw + bsel
            else:
                g_lo = g_lam @ op["Alo"].T + op["clo"]
                g_up = g_lam @ op["Aup"].T + op["cup"]
                g_lk = np.where(pos, g_lo, g_up)
            g_lam[:, op["blk"]] = g_lk
        return out, grads


def _slope_diff(op: dict[str, Any], which: str, a: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d intercept / d slope by a central difference of the fast row (minus the touching point)."""
    fn = getattr(op["row"], which)
    return (fn(op["l"], op["u"], a + h, **op["attrs"]) - fn(op["l"], op["u"], a - h, **op["attrs"])) / (2 * h)


def optimise(bs: Backsub, lam0: np.ndarray, c0: np.ndarray, steps: int = 30, lr: float = 0.5
             ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per-row slopes that (heuristically) maximise the float bound: projected sign-gradient ascent
    from the defaults, the step relative to each slope's natural range |f'| over [l, u]."""
    R = lam0.shape[0]
    slopes = bs.default_slopes(R)
    best_v, _ = bs.bound(lam0, c0, slopes)
    best = {k: (a.copy(), b.copy()) for k, (a, b) in slopes.items()}
    scale = {op["k"]: np.maximum(np.abs(op["dl"]), np.abs(op["du"])) + 1e-3
             for op in bs.ops if op["kind"] == "fn"}
    for it in range(steps):
        v, g = bs.bound(lam0, c0, slopes, want_grad=True)
        better = v > best_v
        for k in slopes:
            best[k][0][better], best[k][1][better] = slopes[k][0][better], slopes[k][1][better]
        best_v = np.maximum(best_v, v)
        step = lr * (0.9 ** it)
        for k, (gl, gu) in g.items():
            aL, aU = slopes[k]
            s = scale[k] * step
            slopes[k] = (np.clip(aL + s * np.sign(gl), -4 * scale[k], 4 * scale[k]),
                         np.clip(aU + s * np.sign(gu), -4 * scale[k], 4 * scale[k]))
    v, _ = bs.bound(lam0, c0, slopes)
    better = v > best_v
    for k in slopes:
        best[k][0][better], best[k][1][better] = slopes[k][0][better], slopes[k][1][better]
    return best


def objective_rows(bg: Any, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense rows over the graph's variables of C·y (y = the graph's output forms)."""
    A, c = _dense(bg.outputs, bg.n_vars)
    return C @ A, C @ c


def slope_entries(bs: Backsub, best: dict[int, tuple[np.ndarray, np.ndarray]], r: int) -> list[list[Any]]:
    """Row r's slopes as a leaf proof's ``{"slopes": [[node, i, lower, upper], ...]}`` entries
    (rationals as "p/q" strings of float32 values; an element whose slope is the default is left
    out, so the checker uses its own default there)."""
    out = []
    for op in bs.ops:
        if op["kind"] != "fn":
            continue
        k = op["k"]
        aL, aU = best[k][0][r], best[k][1][r]
        for i in range(aL.size):
            lo = None if aL[i] == op["dl"][i] else str(Fraction(float(np.float32(aL[i]))))
            up = None if aU[i] == op["du"][i] else str(Fraction(float(np.float32(aU[i]))))
            if lo is not None or up is not None:
                out.append([k, i, lo, up])
    return out


def slopes_for_row(best: dict[int, tuple[np.ndarray, np.ndarray]], r: int) -> dict[int, list[Any]]:
    """The engine's ``slopes`` argument for row r: exact short rationals (any value is valid)."""
    def q(v: float) -> Fraction:
        return Fraction(float(np.float32(v)))  # 24-bit slopes keep the exact engine's numbers short

    return {k: [(q(a), q(b)) for a, b in zip(aL[r], aU[r])] for k, (aL, aU) in best.items()}
