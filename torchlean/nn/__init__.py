"""``torchlean.nn``: layers and containers (re-exported from ``torchlean.runtime.nn``)."""

from ..runtime.nn import *  # noqa: F403
from ..runtime.nn import __all__  # noqa: F401
from . import (
    functional,  # noqa: F401
    utils,  # noqa: F401  (torchlean.nn.utils.clip_grad_norm_)
)
