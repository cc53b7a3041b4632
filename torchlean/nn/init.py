"""``torchlean.nn.init``: torch.nn.init's in-place initialisers, drawing from the generator that
``torchlean.manual_seed`` seeds (so runs repeat; the numbers differ from torch's, the
distributions and their parameters do not)."""

from ..runtime.nn.init import (
    calculate_gain,
    constant_,
    kaiming_normal_,
    kaiming_uniform_,
    normal_,
    ones_,
    uniform_,
    xavier_normal_,
    xavier_uniform_,
    zeros_,
)

__all__ = ["calculate_gain", "constant_", "kaiming_normal_", "kaiming_uniform_", "normal_", "ones_",
           "uniform_", "xavier_normal_", "xavier_uniform_", "zeros_"]
