"""torchlean: write, run, inspect and verify neural-network programs.

The PyTorch-shaped surface lives here: tensors, ``nn``, ``optim``, ``autograd``, ``Trainer``.
See DESIGN.md for the layers behind it.
"""

from . import (  # noqa: F401
    autograd,
    nn,
    optim,
    runtime,  # noqa: F401  (registers the kernels and VJP rules)
    spec,  # noqa: F401  (registers the primitives)
)
from .runtime.backends import DeviceError, cuda_available
from .runtime.checkpoint import load_checkpoint, save_checkpoint
from .runtime.compiled import CompiledStep, compile
from .runtime.creation import arange, from_numpy, full, linspace, ones_like, rand, randn, zeros_like
from .runtime.data import DataLoader, TensorDataset, load_csv
from .runtime.functional import argmax, argmin, cat, stack
from .runtime.random import manual_seed
from .runtime.tensor import (
    Tensor,
    bool_,
    enable_grad,
    float16,
    float32,
    float64,
    get_default_dtype,
    int32,
    int64,
    is_grad_enabled,
    no_grad,
    ones,
    set_default_dtype,
    tensor,
    zeros,
)
from .runtime.trace import trace
from .runtime.trainer import TrainedModel, Trainer

# torch's dtype aliases (torch.float, torch.double, torch.long, torch.int, torch.bool)
float = float32  # noqa: A001
double = float64
half = float16
long = int64
int = int32  # noqa: A001
bool = bool_  # noqa: A001

__version__ = "0.1.0"

__all__ = [
    "DeviceError", "Tensor", "autograd", "cuda_available", "enable_grad", "float16", "float32", "float64",
    "get_default_dtype", "int64", "manual_seed", "nn", "no_grad", "ones", "set_default_dtype",
    "tensor", "zeros",
]
__all__ += ["DataLoader", "TensorDataset", "TrainedModel", "Trainer", "load_checkpoint", "load_csv",
            "optim", "save_checkpoint"]
__all__ += ["CompiledStep", "compile", "trace"]
__all__ += ["arange", "argmax", "argmin", "cat", "from_numpy", "full", "int32", "linspace", "ones_like",
            "rand", "randn", "stack", "zeros_like"]

from .proofs.verified import verified  # noqa: E402  (@torchlean.verified: register proof obligations)

__all__ += ["verified", "bool_", "is_grad_enabled", "float", "double", "long", "int", "bool"]


def __getattr__(name: str):  # ``tl.verify`` without importing the verifier on ``import torchlean``
    if name == "verify":
        import importlib

        return importlib.import_module(".verify", __name__)
    raise AttributeError(f"module 'torchlean' has no attribute {name!r}")
