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


#: inputs that the lowering requires to be constant (weights); other float inputs are data
_CONST_INPUTS = {"conv2d": {1}, "batch_norm": {1, 2, 3, 4}, "layer_norm": {1, 2}}


def lowered_parts(name: str) -> set[str] | None:
    """The parts of the bound table's IBP that the lowering row of primitive ``name`` runs, read
    off the bound graphs of one node of it per autograd case (shapes, attributes, integer inputs):
    "affine" (every linear form), "mul", "max" and the function rows called. None when the
    primitive has no case or the row refuses one."""
    import numpy as np

    from ..certificates.bound_graph import Unsupported
    from ..certificates.lower import lower
    from ..spec.graph import Graph, Node, Value
    from .autograd import CASES

    if name not in CASES:
        return None
    parts = {"affine"}
    for case in CASES[name]:
        inputs, consts, names = [], {}, []
        for i, shape in enumerate(case.shapes):
            n = f"i{i}"
            names.append(n)
            if i in case.ints:
                consts[n] = np.asarray(case.ints[i])
            elif i in _CONST_INPUTS.get(name, ()):
                consts[n] = np.full(shape, 0.5)
            else:
                inputs.append(Value(n, tuple(shape), "float64"))
        try:
            g = Graph(inputs, consts, [Node(name, names, "y", dict(case.attrs))], ["y"]).check()
            bg = lower(g.to_dict())
        except Unsupported:
            return None
        for node in bg.nodes:
            if node.kind == "fn":
                parts.add(node.fn)
            elif node.kind in ("mul", "max"):
                parts.add(node.kind)
    return parts


def part_status() -> dict[str, tuple[str, str]]:
    """Every part of the bound table's IBP (the function rows of ``functions.FUNCTIONS`` and the
    engine's affine forms, mul and max nodes) -> ("proved", obligation names) when every
    obligation ``ibp.PARTS`` names for it is one ``proofs/ibp.py`` yields, ("argued", reason) for a
    row in ``ibp.NOT_PROVED``, ("gap", "") otherwise."""
    from ..certificates.functions import FUNCTIONS
    from .ibp import NOT_PROVED, PARTS, interval_obligations

    yielded = {ob.name for ob in interval_obligations()}
    out = {}
    for part in sorted({"affine", "mul", "max", *FUNCTIONS}):
        names = PARTS.get(part, ())
        if names and all(n in yielded for n in names):
            out[part] = ("proved", ", ".join(names))
        elif part in NOT_PROVED:
            out[part] = ("argued", NOT_PROVED[part])
        else:
            out[part] = ("gap", "")
    return out


def coverage() -> dict[str, dict[str, Any]]:
    """primitive -> {column: True/False/None (no such table)}.

    ``verify`` is the bound table's lowering row (``certificates.lower.ROWS``: IBP, CROWN and the
    verdict certificates all go through it); ``ibp`` is True where every part of the table its
    lowering runs (``lowered_parts``) has an SMT-proved interval rule (``part_status``), "argued"
    where some part's rule has a stated reason instead (``ibp_why`` names them), False where the
    lowering does not run or a part has neither."""
    import torchlean  # noqa: F401

    from ..certificates.lower import NO_ROW, ROWS
    from ..runtime.rules import RULES
    from ..spec.primitives import PRIMITIVES
    from .autograd import CASES

    floats = _table("torchlean.floats", ("ROUNDING_RULES", "RULES", "ROUNDING"))
    status = part_status()
    out = {}
    for name in sorted(set(PRIMITIVES) | set(RULES)):
        parts = lowered_parts(name) if name in ROWS else None
        states = {status.get(p, ("gap", ""))[0] for p in parts or ()}
        ibp: Any = False if not parts or "gap" in states else ("argued" if "argued" in states else True)
        out[name] = {
            "spec": name in PRIMITIVES, "runtime": name in RULES, "autograd": name in CASES,
            "ibp": ibp, "floats": None if floats is None else name in floats,
            "verify": name in ROWS,
            "why": NO_ROW.get(name),
            "ibp_parts": sorted(parts or ()),
            "ibp_why": sorted(p for p in parts or () if status.get(p, ("gap",))[0] == "argued"),
        }
    return out


def gaps() -> list[str]:
    """What must not exist: a primitive missing from spec, RULES or the autograd obligations, or one
    with neither a bound-table row nor a stated reason (``certificates.lower.NO_ROW``)."""
    out = [f"{n}: no {c}" for n, row in coverage().items() for c in ("spec", "runtime", "autograd")
           if not row[c]]
    out += [f"{n}: no bound-table row and no reason" for n, row in coverage().items()
            if not row["verify"] and not row["why"]]
    out += [f"{p}: interval rule neither SMT-proved nor a stated reason"
            for p, (state, _) in part_status().items() if state == "gap"]
    out += [f"{n}: the interval rules its bound row runs are unknown" for n, row in coverage().items()
            if row["verify"] and row["ibp"] is False]
    return out


def coverage_table() -> str:
    rows = coverage()
    cols = ["spec", "runtime", "autograd", "ibp", "floats", "verify"]
    mark = {True: "yes", False: "-", None: "n/a", "argued": "argued"}
    w = max(len(n) for n in rows) + 2
    lines = ["primitive".ljust(w) + "".join(c.ljust(10) for c in cols)]
    for n, row in rows.items():
        lines.append(n.ljust(w) + "".join(mark[row[c]].ljust(10) for c in cols))
    for n, row in rows.items():
        if row["why"]:
            lines.append(f"  {n}: no bound-table row: {row['why']}")
    for n, row in rows.items():
        if row["ibp_why"]:
            lines.append(f"  {n}: ibp argued, not SMT-proved, for the row(s) {', '.join(row['ibp_why'])}")
    lines.append("bound-table parts (the interval rules IBP runs):")
    for p, (state, what) in part_status().items():
        tail = f" by {what}" if state == "proved" else (f": {what}" if what else "")
        lines.append(f"  {p}: {state}{tail}")
    n_rows = sum(bool(r["verify"]) for r in rows.values())
    n_proved = sum(r["ibp"] is True for r in rows.values())
    n_argued = sum(r["ibp"] == "argued" for r in rows.values())
    lines.append(f"{len(rows)} primitives; {n_rows} with a bound-table row, {n_proved} whose interval rules "
                 f"are all SMT-proved, {n_argued} resting on an argued row; gaps: {len(gaps())}")
    return "\n".join(lines)
