"""The seeded random source behind initialisation, dropout and data shuffling."""

from __future__ import annotations

from typing import Any

import numpy as np

_GEN = [np.random.default_rng(0)]


def manual_seed(seed: int) -> None:
    """Reset torchlean's global generator (initialisation, dropout, shuffling)."""
    _GEN[0] = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The global generator; a faithful trace (``tl.verify``) refuses a draw (``randn``, ``rand``,
    an initialiser run in ``forward``), which the graph would keep as one constant."""
    from .tensor import note_random

    note_random("torchlean's random generator: randn, rand, an initialiser, ...")
    return _GEN[0]


def random_mask(x: Any, p: float) -> Any:
    """Dropout's scaled keep-mask for tensor ``x`` (1/(1-p) where kept, 0 elsewhere).

    The one place dropout draws from the generator, so that a tracer (``runtime.trace``) can
    record *how* the mask was made and the compiled plan can draw it again, in the same order,
    on every step instead of freezing one draw.
    """
    from .backends import namespace_of
    from .tensor import STATE, Tensor

    shape, dtype, xp = x.shape, x.dtype, namespace_of(x.data)

    def draw() -> Any:
        keep = generator().random(size=shape) >= p
        return xp.asarray((keep / (1 - p)).astype(dtype))

    mask = Tensor(draw())
    if STATE.tracer is not None and hasattr(STATE.tracer, "random_source"):
        STATE.tracer.random_source(mask, draw)
    return mask
