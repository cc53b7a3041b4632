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
    """primitive -> {column: True/False/None (no such table)}.

    ``verify`` is the bound table's lowering row (``certificates.lower.ROWS``: IBP, CROWN and the
    verdict certificates all go through it); ``ibp`` is "proved" where ``proofs/ibp.py`` proves the
    primitive's interval rule by SMT and True where the interval comes from the table's row without
    an SMT obligation of its own (its soundness argument is in TRUST_BOUNDARIES.md)."""
    import torchlean  # noqa: F401

    from ..certificates.lower import NO_ROW, ROWS
    from ..runtime.rules import RULES
    from ..spec.primitives import PRIMITIVES
    from .autograd import CASES
    from .ibp import IBP_RULES

    floats = _table("torchlean.floats", ("ROUNDING_RULES", "RULES", "ROUNDING"))
    out = {}
    for name in sorted(set(PRIMITIVES) | set(RULES)):
        out[name] = {
            "spec": name in PRIMITIVES, "runtime": name in RULES, "autograd": name in CASES,
            "ibp": "proved" if name in IBP_RULES else name in ROWS,
            "floats": None if floats is None else name in floats,
            "verify": name in ROWS,
            "why": NO_ROW.get(name),
        }
    return out


def gaps() -> list[str]:
    """What must not exist: a primitive missing from spec, RULES or the autograd obligations, or one
    with neither a bound-table row nor a stated reason (``certificates.lower.NO_ROW``)."""
    out = [f"{n}: no {c}" for n, row in coverage().items() for c in ("spec", "runtime", "autograd")
           if not row[c]]
    out += [f"{n}: no bound-table row and no reason" for n, row in coverage().items()
            if not row["verify"] and not row["why"]]
    return out


def coverage_table() -> str:
    rows = coverage()
    cols = ["spec", "runtime", "autograd", "ibp", "floats", "verify"]
    mark = {True: "yes", False: "-", None: "n/a", "proved": "proved"}
    w = max(len(n) for n in rows) + 2
    lines = ["primitive".ljust(w) + "".join(c.ljust(10) for c in cols)]
    for n, row in rows.items():
        lines.append(n.ljust(w) + "".join(mark[row[c]].ljust(10) for c in cols))
    for n, row in rows.items():
        if row["why"]:
            lines.append(f"  {n}: no bound-table row: {row['why']}")
    n_rows = sum(bool(r["verify"]) for r in rows.values())
    n_proved = sum(r["ibp"] == "proved" for r in rows.values())
    lines.append(f"{len(rows)} primitives; {n_rows} with a bound-table row, {n_proved} with an SMT-proved "
                 f"interval rule; gaps: {len(gaps())}")
    return "\n".join(lines)
