"""``torchlean.nn.functional``: operations and losses (re-exported from ``torchlean.runtime.functional``)."""

from ..runtime.functional import *  # noqa: F403
