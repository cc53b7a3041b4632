"""Neural-network layers (``torchlean.nn``)."""

from .. import functional
from .attention import MultiheadAttention, TransformerEncoderLayer
from .containers import ModuleDict, ModuleList
from .conv import AvgPool2d, Conv1d, Conv2d, MaxPool2d
from .embedding import Embedding
from .graph_module import GraphModule
from .layers import (
    GELU,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, MSELoss
from .module import Module, Parameter
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm
from .recurrent import GRU, LSTM, RNN

__all__ = [
    "GELU", "Dropout", "Flatten", "Identity", "LeakyReLU", "Linear", "LogSoftmax", "Module",
    "Parameter", "ReLU", "Residual", "Sequential", "SiLU", "Sigmoid", "Softmax", "Softplus", "Tanh",
    "functional",
]
__all__ += ["BCEWithLogitsLoss", "CrossEntropyLoss", "HuberLoss", "MSELoss"]
__all__ += [
    "AvgPool2d", "BatchNorm2d", "Conv2d", "Embedding", "LayerNorm", "MaxPool2d", "MultiheadAttention",
    "TransformerEncoderLayer",
]
__all__ += ["BatchNorm1d", "Conv1d", "ModuleDict", "ModuleList"]
__all__ += ["GRU", "LSTM", "RNN"]
__all__ += ["GraphModule"]
