"""``torchlean.optim``: optimizers and (in ``torchlean.optim.lr_scheduler``) schedulers."""

from ..runtime.optim import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop, make_optimizer
from . import lr_scheduler

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler", "make_optimizer"]
