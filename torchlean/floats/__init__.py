"""Finite precision: formats, exact rounding, emulated execution, certified rounding-error bounds.

The exact rounding of a rational to a format lives in the trusted checker
(``torchlean.certificates.rounding``) because the checker replays float claims with it; this
package re-exports it and builds everything else on that one implementation.
"""

from ..certificates.rounding import (
    FORMATS,
    MODES,
    FloatValue,
    Format,
    decode,
    finite_values,
    get_format,
    round_fraction,
    round_sqrt,
)
from .bits import encode
from .emulate import emulate
from .errorbound import (
    bound_certificate,
    default_ranges,
    epsilons,
    float_sound_bounds,
    observed_error,
    searched_error,
    widen,
)
from .network import ROUNDING_RULES
from .splitbound import leaves as split_leaves

__all__ = [
    "FORMATS", "MODES", "ROUNDING_RULES", "FloatValue", "Format", "bound_certificate", "decode",
    "default_ranges", "emulate", "encode",
    "epsilons", "finite_values", "float_sound_bounds", "get_format", "observed_error",
    "round_fraction", "round_sqrt", "searched_error", "split_leaves", "widen",
]
