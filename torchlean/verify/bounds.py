"""IBP and CROWN bounds of a ReLU network over a batch of input boxes (untrusted, float64).

Written against an array namespace ``xp`` taken from the inputs: numpy here, cupy when the boxes
are cupy arrays (the same code runs on the GPU). Bounds computed here are *not* certified: they are
float computations used by the search and for users who want numbers; what a certificate claims is
recomputed by the checker (``torchlean.certificates``).

- ``ibp``: interval bound propagation.
- ``crown``: backward linear relaxation (Zhang et al. 2018) with the adaptive lower slope
  (1 if u >= -l else 0) for unstable ReLUs; intermediate bounds are CROWN bounds too.
- ``alpha-crown``: CROWN whose final back-substitution tries several lower-slope vectors (adaptive,
  0, 1, the chord slope u/(u-l) and blends) and keeps the best per output: a cheap stand-in for
  gradient-optimised α (each choice is a valid bound, so the maximum is valid).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..certificates.core import tick, time_limit
from .network import FloatNet, as_net, float_net

METHODS = ("ibp", "crown", "alpha-crown")


def get_xp(a: Any) -> Any:
    try:
        import cupy  # noqa: F401

        return cupy.get_array_module(a)
    except ImportError:
        return np


def _pos(xp, a):
    return xp.maximum(a, 0.0)


def _neg(xp, a):
    return xp.minimum(a, 0.0)


def ibp(net: FloatNet, lo, hi, C=None):
    """Interval bounds of the outputs (or of C @ outputs) for boxes (B, d): (lower, upper)."""
    xp = get_xp(lo)
    l, u = lo, hi
    layers = _with_spec(net, C)
    for i, (W, b) in enumerate(layers):
        tick()
        W, b = xp.asarray(W), xp.asarray(b)
        c, r = (l + u) / 2, (u - l) / 2
        mid = c @ W.T + b
        rad = r @ xp.abs(W).T
        l, u = mid - rad, mid + rad
        if i + 1 < len(layers):
            l, u = _pos(xp, l), _pos(xp, u)
    return l, u


def _ibp_layers(xp, layers, lo, hi) -> list[tuple[Any, Any]]:
    """IBP bounds of every pre-activation (and of the output)."""
    out, l, u = [], lo, hi
    for W, b in layers:
        W, b = xp.asarray(W), xp.asarray(b)
        c, r = (l + u) / 2 @ W.T + b, (u - l) / 2 @ xp.abs(W).T
        out.append((c - r, c + r))
        l, u = _pos(xp, c - r), _pos(xp, c + r)
    return out


def _with_spec(net: FloatNet, C) -> list[tuple[np.ndarray, np.ndarray]]:
    """Compose the last layer with the rows of C (k, n_out), as CROWN starts from c·y."""
    if C is None:
        return list(net.layers)
    W, b = net.layers[-1]
    C = np.asarray(C, dtype=np.float64)
    return [*net.layers[:-1], (C @ W, C @ b)]


def _backward(xp, layers, k, C, lo, hi, pre, alphas=None):
    """Lower bound of C·z_k (z_k the pre-activation of layer k, 0-based) over the boxes, using the
    bounds ``pre[j]`` = (l_j, u_j) of earlier pre-activations. C: (B, r, n_k). Returns (lb, Λ_x)."""
    W, b = layers[k]
    lam = C
    bias = lam @ xp.asarray(b)
    lam = lam @ xp.asarray(W)  # over h_{k-1}
    for j in range(k - 1, -1, -1):
        tick()
        l, u = pre[j]
        unst = (l < 0) & (u > 0)
        act = l >= 0
        den = xp.where(unst, u - l, 1.0)
        s = xp.where(unst, u / den, act * 1.0)
        t = xp.where(unst, -s * l, 0.0)
        if alphas is not None and alphas[j] is not None:
            a = xp.where(unst, alphas[j], act * 1.0)
        else:
            a = xp.where(unst, (u >= -l) * 1.0, act * 1.0)
        lp, ln = _pos(xp, lam), _neg(xp, lam)
        lam_z = lp * a[:, None, :] + ln * s[:, None, :]
        bias = bias + (ln * t[:, None, :]).sum(-1)
        Wj, bj = layers[j]
        bias = bias + lam_z @ xp.asarray(bj)
        lam = lam_z @ xp.asarray(Wj)
    lb = (_pos(xp, lam) * lo[:, None, :] + _neg(xp, lam) * hi[:, None, :]).sum(-1) + bias
    return lb, lam


def crown(net: FloatNet, lo, hi, C=None, alpha_steps: int = 0, lr: float = 0.0):
    """CROWN lower and upper bounds of the outputs (or of C @ outputs) over boxes (B, d)."""
    xp = get_xp(lo)
    layers = _with_spec(net, C)
    B = lo.shape[0]
    pre: list[tuple[Any, Any]] = []
    ibp_ref = _ibp_layers(xp, layers, lo, hi)
    for k in range(len(layers)):
        tick()
        n = layers[k][0].shape[0]
        eye = xp.broadcast_to(xp.eye(n), (B, n, n))
        if k == 0:
            W, b = xp.asarray(layers[0][0]), xp.asarray(layers[0][1])
            c, r = (lo + hi) / 2, (hi - lo) / 2
            l, u = c @ W.T + b - r @ xp.abs(W).T, c @ W.T + b + r @ xp.abs(W).T
        else:
            l = _backward(xp, layers, k, eye, lo, hi, pre)[0]
            u = -_backward(xp, layers, k, -eye, lo, hi, pre)[0]
            if alpha_steps and k == len(layers) - 1:
                l = xp.maximum(l, _alpha(xp, layers, k, eye, lo, hi, pre, alpha_steps, lr))
                u = xp.minimum(u, -_alpha(xp, layers, k, -eye, lo, hi, pre, alpha_steps, lr))
        if k > 0:  # one IBP step from the previous bounds: both are valid, keep the tighter
            W, b = xp.asarray(layers[k][0]), xp.asarray(layers[k][1])
            pl, pu = _pos(xp, pre[-1][0]), _pos(xp, pre[-1][1])
            c, r = (pl + pu) / 2 @ W.T + b, (pu - pl) / 2 @ xp.abs(W).T
            l, u = xp.maximum(l, c - r), xp.minimum(u, c + r)
            if ibp_ref is not None:  # so CROWN is never looser than IBP, by construction
                l, u = xp.maximum(l, ibp_ref[k][0]), xp.minimum(u, ibp_ref[k][1])
        if k + 1 < len(layers):
            pre.append((l, u))
        else:
            return l, u
    raise AssertionError("unreachable")


def _alpha(xp, layers, k, C, lo, hi, pre, steps, lr):
    """Best of several lower-slope choices per output: adaptive, all 0, all 1, u/(u-l), and
    ``steps`` interpolations between them. Each choice gives a valid CROWN bound, so their
    elementwise maximum is valid and never looser than CROWN's adaptive choice."""
    base = [xp.where(pre[j][1] >= -pre[j][0], 1.0, 0.0) for j in range(k)]
    chord = [
        xp.clip(pre[j][1] / xp.where(pre[j][1] - pre[j][0] > 0, pre[j][1] - pre[j][0], 1.0), 0, 1)
        for j in range(k)
    ]
    cands = [base, [a * 0 for a in base], [a * 0 + 1 for a in base], chord]
    cands += [[(1 - w) * a + w * c for a, c in zip(base, chord)] for w in np.linspace(0.1, 0.9, steps)]
    best = None
    for alphas in cands:
        lb = _backward(xp, layers, k, C, lo, hi, pre, alphas)[0]
        best = lb if best is None else xp.maximum(best, lb)
    return best


def bounds(
    model: Any, box: Any, method: str = "crown", C: Any = None, deadline: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of a ReLU network's outputs (or of ``C @ outputs``) over ``box``.

    ``model``: a spec Graph, a ``certificates.network.Net`` or a ``FloatNet``; ``box``: (lo, hi),
    each of shape (d,) or (B, d) for a batch of boxes. Returns arrays shaped like the batch.
    ``deadline`` (a ``time.monotonic()`` value): past it, ``OutOfTime`` is raised from inside the
    layer loops (CROWN is quadratic in depth).
    """
    with time_limit(deadline):
        return _bounds(model, box, method, C)


def _bounds(model: Any, box: Any, method: str, C: Any) -> tuple[np.ndarray, np.ndarray]:
    if method not in METHODS:
        raise ValueError(f"unknown bound method {method!r}; choose one of {', '.join(METHODS)}")
    fnet = model if isinstance(model, FloatNet) else float_net(as_net(model))
    lo, hi = box
    xp = get_xp(lo)
    lo, hi = xp.asarray(lo, dtype=xp.float64), xp.asarray(hi, dtype=xp.float64)
    single = lo.ndim == 1
    if single:
        lo, hi = lo[None], hi[None]
    if lo.shape != hi.shape or lo.shape[1] != fnet.n_in:
        raise ValueError(f"box shape {tuple(lo.shape)} does not match the network's {fnet.n_in} inputs")
    if bool((lo > hi).any()):
        raise ValueError("box has lo > hi")
    if method == "ibp":
        l, u = ibp(fnet, lo, hi, C)
    else:
        l, u = crown(fnet, lo, hi, C, alpha_steps=8 if method == "alpha-crown" else 0)
    return (l[0], u[0]) if single else (l, u)
