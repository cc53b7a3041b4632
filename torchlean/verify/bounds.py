"""IBP and CROWN bounds of a network's outputs over a batch of input boxes, by the bound table's
fast engine (``certificates.fast_engine``: float64 with outward rounding charges, so the numbers
are sound, not just estimates).

- ``ibp``: interval bound propagation.
- ``crown``: back-substitution through the table's linear relaxations (CROWN argument bounds).
- ``alpha-crown``: CROWN whose relaxation slopes are optimised per output (``verify.alpha``), the
  bound recomputed by the engine with those slopes (one box at a time); the tighter of that and
  CROWN per output.

This module used to carry its own float CROWN for ReLU chains (a second back-substitution next to
the checker's; issue 14 removed it). Boxes given as device (cupy) arrays are copied to the host,
bounded there (the checker's engine is numpy), and the bounds returned on the boxes' device.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates import fast_engine as fe
from ..certificates import lower
from ..certificates.core import time_limit
from ..spec.graph import Graph
from . import engines

METHODS = ("ibp", "crown", "alpha-crown")


def _device(a: Any) -> Any:
    """The cupy module when ``a`` is a cupy array, else None."""
    mod = type(a).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        return cupy
    return None


def _bound_graph(model: Any) -> Any:
    """The bound graph of a spec Graph, an IR document (dict) or a bound graph. A document or graph
    is checked first (``Graph.check``: the shape rules and attributes the runtime runs it by): the
    lowering reads a checked graph only, and an unchecked one could mean something else to it
    (audit33: a ``max_pool2d`` with ``ceil_mode``, an attribute the runtime refuses, was bounded
    as floor mode)."""
    if hasattr(model, "nodes") and hasattr(model, "outputs") and hasattr(model, "in_shape"):
        return model
    g = Graph.from_dict(model) if isinstance(model, dict) else model if model.values else model.check()
    return lower.lower(g.to_dict())


def ibp(model: Any, lo: Any, hi: Any, C: Any = None) -> tuple[Any, Any]:
    """Interval bounds of the outputs (or of C @ outputs) for boxes (B, d): (lower, upper)."""
    return bounds(model, (lo, hi), "ibp", C)


def crown(model: Any, lo: Any, hi: Any, C: Any = None) -> tuple[Any, Any]:
    """CROWN lower and upper bounds of the outputs (or of C @ outputs) over boxes (B, d)."""
    return bounds(model, (lo, hi), "crown", C)


def bounds(
    model: Any, box: Any, method: str = "crown", C: Any = None, deadline: float | None = None
) -> tuple[Any, Any]:
    """Lower and upper bounds of a network's outputs (or of ``C @ outputs``) over ``box``.

    ``model``: a spec Graph, an IR document or a bound graph (``certificates.lower``); ``box``:
    (lo, hi), each of shape (d,) or (B, d) for a batch of boxes. Returns arrays shaped like the
    batch. ``deadline`` (a ``time.monotonic()`` value): past it, ``OutOfTime`` is raised from inside
    the engine's loops."""
    if method not in METHODS:
        raise ValueError(f"unknown bound method {method!r}; choose one of {', '.join(METHODS)}")
    with time_limit(deadline):
        return _bounds(_bound_graph(model), box, method, C)


def _bounds(bg: Any, box: Any, method: str, C: Any) -> tuple[Any, Any]:
    lo, hi = box
    dev = _device(lo)
    if dev is not None:
        lo, hi = dev.asnumpy(lo), dev.asnumpy(hi)
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    single = lo.ndim == 1
    if single:
        lo, hi = lo[None], hi[None]
    if lo.shape != hi.shape or lo.shape[1] != bg.n_in:
        raise ValueError(f"box shape {tuple(lo.shape)} does not match the network's {bg.n_in} inputs")
    if bool((lo > hi).any()):
        raise ValueError("box has lo > hi")
    fg = fe.compiled(bg)
    Cm = None if C is None else np.asarray(C, dtype=np.float64)
    if method == "ibp":
        low, up = engines.fast_ibp(fg, lo, hi, C=Cm, refuse=True)  # (a claim: undefined boxes refused)
    else:
        low, up = engines.fast_crown(fg, lo, hi, C=Cm, refuse=True)  # (a claim: undefined boxes refused)
        if method == "alpha-crown":
            low, up = _alpha(bg, lo, hi, Cm, low, up)
    if single:
        low, up = low[0], up[0]
    if dev is not None:
        low, up = dev.asarray(low), dev.asarray(up)
    return low, up


def _alpha(bg: Any, lo: np.ndarray, hi: np.ndarray, C: Any, low: np.ndarray, up: np.ndarray):
    """Per box, α-CROWN on the output rows (``table.alpha_bounds_box``) where there are no rows C."""
    if C is not None:
        return low, up
    from .table import alpha_bounds_box, graph_target

    try:
        t = graph_target(bg)
    except ValueError:
        from .table import Target

        t = Target(None, None, bg)
    for b in range(lo.shape[0]):
        box_lo = tuple(Fraction(float(v)) for v in lo[b])
        box_hi = tuple(Fraction(float(v)) for v in hi[b])
        al, au = alpha_bounds_box(t, box_lo, box_hi)
        low[b], up[b] = np.maximum(low[b], al), np.minimum(up[b], au)
    return low, up
