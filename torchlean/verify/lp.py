"""HiGHS through ``highspy`` for the search's LPs (``star.py``: star-set boxes whose α and β come
from an LP's duals): a silent solver instance and whether the optional extra is installed.
Without ``highspy``, ``available()`` is False and the searches run without LPs.

The ReLU-chain LP leaves that lived here (``close_box``, ``fixed_leaf``: chain certificates whose
split multipliers were HiGHS's duals) went with the chain engine (issue 14); ``star.py`` is their
bound-table form.
"""

from __future__ import annotations

from typing import Any

_HS: list[Any] = []  # the highspy module once imported (None without it): 0.2 s, so on first use

LP_SECONDS = 10.0  # HiGHS's limit per solve


_BANNER = [True]


def _highs() -> Any:
    """A silent HiGHS instance. The first one prints HiGHS's banner on the process's stdout (C
    level), where the CLI prints its verdict, so fd 1 goes to /dev/null while it is made."""
    highspy = _highspy()
    if not _BANNER[0]:
        h = highspy.Highs()
    else:
        import os
        import sys

        sys.stdout.flush()
        saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        try:
            h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(null)
            _BANNER[0] = False
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", LP_SECONDS)  # (a stuck solve ends as "not optimal": no leaf)
    return h


def _highspy() -> Any:
    if not _HS:
        try:  # (an optional extra: ``pip install torchlean[lp]``)
            import highspy
        except ImportError:  # pragma: no cover - exercised only without the extra
            highspy = None
        _HS.append(highspy)
    return _HS[0]


def available() -> bool:
    """Whether the LP solver (highspy) is installed."""
    return _highspy() is not None
