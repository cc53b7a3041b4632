"""The primitive x table matrix printed by ``show --coverage`` (and tested for gaps)."""

from __future__ import annotations

import importlib
from typing import Any


def _table(module: str, names: tuple[str, ...]) -> set[str] | None:
    """Keys of the first table found among ``names`` in ``module``; None if there is none."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    for n in names:
        t = getattr(mod, n, None)
        if isinstance(t, dict):
            return set(t)
    return None


def coverage() -> dict[str, dict[str, Any]]:
    """primitive -> {column: True/False/None (no such table)}"""
    import torchlean  # noqa: F401

    from ..runtime.rules import RULES
    from ..spec.primitives import PRIMITIVES
    from .autograd import CASES
    from .ibp import IBP_RULES

    floats = _table("torchlean.floats", ("ROUNDING_RULES", "RULES", "ROUNDING"))
    verify = _table("torchlean.verify", ("TRANSFORMERS", "INTERVAL_RULES", "RULES"))
    out = {}
    for name in sorted(set(PRIMITIVES) | set(RULES)):
        out[name] = {
            "spec": name in PRIMITIVES, "runtime": name in RULES, "autograd": name in CASES,
            "ibp": name in IBP_RULES,
            "floats": None if floats is None else name in floats,
            "verify": None if verify is None else name in verify,
        }
    return out


def gaps() -> list[str]:
    """Primitives missing from spec, RULES or the autograd obligations (these must not exist)."""
    return [f"{n}: no {c}" for n, row in coverage().items() for c in ("spec", "runtime", "autograd")
            if not row[c]]


def coverage_table() -> str:
    rows = coverage()
    cols = ["spec", "runtime", "autograd", "ibp", "floats", "verify"]
    mark = {True: "yes", False: "-", None: "n/a"}
    w = max(len(n) for n in rows) + 2
    lines = ["primitive".ljust(w) + "".join(c.ljust(10) for c in cols)]
    for n, row in rows.items():
        lines.append(n.ljust(w) + "".join(mark[row[c]].ljust(10) for c in cols))
    lines.append(f"{len(rows)} primitives; gaps in spec/runtime/autograd: {len(gaps())}")
    return "\n".join(lines)
