"""The trusted checker. Standard library only: see core.py for the contract, and each module for
one certificate kind."""

from .core import CHECKERS, Rejected, Verdict, check, digest, rational

__all__ = ["CHECKERS", "Rejected", "Verdict", "check", "digest", "rational"]

# The modules that register the other kinds (float error bounds, refutations, compositions, conv
# and pooling identities) are imported by ``core.check`` when it meets a kind not yet registered,
# not here: ``check_vnn`` and the verifier never need them (~0.1 s of every verify command).
