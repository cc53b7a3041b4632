"""The trusted checker. Standard library only: see core.py for the contract, and each module for
one certificate kind."""

from .core import CHECKERS, Rejected, Verdict, check, digest, rational

__all__ = ["CHECKERS", "Rejected", "Verdict", "check", "digest", "rational"]

from . import (  # noqa: E402,F401  (register the float checkers)
    adjoint,  # noqa: E402,F401  (linear primitives' VJPs at symbolic sizes, issue 17)
    errorbound,
    refute,  # noqa: E402,F401  (register the refutation checker: autograd, forward, ibp)
    rounding,
    tape,  # noqa: E402,F401  (register the composition checker: @verified models, issue 17)
    terms,  # noqa: E402,F401  (conv2d forward and batch_norm as term identities, issue 18)
    windows,  # noqa: E402,F401  (max pooling window by window, issue 18)
)
