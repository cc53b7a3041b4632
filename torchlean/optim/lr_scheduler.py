"""``torchlean.optim.lr_scheduler``: learning-rate schedulers with PyTorch's semantics."""

from ..runtime.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    OneCycleLR,
    StepLR,
    linear_warmup,
)

__all__ = ["CosineAnnealingLR", "LRScheduler", "LinearLR", "OneCycleLR", "StepLR", "linear_warmup"]
