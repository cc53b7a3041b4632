"""``torchlean.nn``: layers and containers (re-exported from ``torchlean.runtime.nn``), and the
``functional``, ``init`` and ``utils`` modules under torch's names."""

from ..runtime.nn import *  # noqa: F403
from ..runtime.nn import __all__ as _layers
from . import (
    functional,  # noqa: F401
    init,  # noqa: F401  (torchlean.nn.init: torch.nn.init's initialisers)
    utils,  # noqa: F401  (torchlean.nn.utils.clip_grad_norm_)
)

__all__ = [*_layers, "init", "utils"]
