"""``torchlean.nn.functional``: operations and losses (re-exported from ``torchlean.runtime.functional``)."""

from ..runtime.functional import *  # noqa: F403
from ..runtime.functional import __all__  # noqa: E402,F401  (only the public names, no internals)
