"""The interval rules and function rows as torchlean defines them, recorded when ``import torchlean``
runs (``proofs/__init__`` imports this module): before any project code can replace one.

``cli.patched_rules`` compares the table now with this record. It was taken when ``proofs.cli`` was
first imported, which under ``pytest --torchlean-check`` is after the test modules (and the project
modules they import) ran: a replacement made there was recorded as torchlean's own, so the shipped
``ibp.*`` artifacts were not checked while ``proofs check`` failed on them (audit56).
"""

from __future__ import annotations

from typing import Any


def interval_rules() -> dict[str, Any]:
    """The bound table's interval rules (``intervals.py``'s functions) and function rows, by name:
    what the shipped ``ibp.*`` artifacts are about."""
    from ..certificates import intervals
    from ..certificates.functions import FUNCTIONS

    out = {f"intervals.{n}": getattr(intervals, n) for n in dir(intervals)
           if n.startswith("interval_") or n == "mccormick"}
    return out | {f"functions.{n}": r for n, r in FUNCTIONS.items()}


#: as torchlean defines them (taken once, at ``import torchlean``)
SHIPPED_INTERVALS: dict[str, Any] = interval_rules()
