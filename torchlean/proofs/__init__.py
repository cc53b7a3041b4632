"""Obligations, SMT-LIB emission, cvc5/z3 discharge, artifacts and the CLI.

See DESIGN.md ("Proofs are about the code that runs", "Artifacts and the trusted checker").
"""

from . import shipped  # noqa: F401  (records the interval rules before any project code runs)
from .obligation import SOURCES, Obligation, source
from .verified import verified

__all__ = ["SOURCES", "Obligation", "source", "verified"]
