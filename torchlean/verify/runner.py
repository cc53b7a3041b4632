"""Run a benchmark CSV (VNN-COMP ``instances.csv``: onnx,vnnlib,timeout; or an ``expected.csv`` with
a header naming onnx, vnnlib, expected and any comparison columns) and write a results CSV: the
verdict, solve and checker replay times, the tree size, and whether it agrees with the expected
verdict. Paths are relative to the CSV's folder. The results file is rewritten atomically after
every instance, so an interrupted run keeps what it finished."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

from .._files import atomic_write_text
from ..certificates.bounds import check_vnn
from .network import InputError, load_net, load_spec

FIELDS = [
    "onnx",
    "vnnlib",
    "expected",
    "result",
    "solve_s",
    "check_s",
    "check",
    "mode",
    "boxes",
    "leaves",
    "agree",
]


def read_instances(path: str | Path) -> list[dict[str, str]]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such file")
    rows = [r for r in csv.reader(io.StringIO(p.read_text())) if r and not r[0].startswith("#")]
    if rows and rows[0][:2] == ["onnx", "vnnlib"]:
        head = rows.pop(0)
        return [dict(zip(head, r)) for r in rows]
    return [{"onnx": r[0], "vnnlib": r[1], "timeout": r[2] if len(r) > 2 else ""} for r in rows]


def run_instance(
    net_path: Path, prop_path: Path, timeout: float, method: str = "crown", progress: bool = False
) -> dict[str, Any]:
    from .bab import verify

    spec = load_spec(prop_path)
    try:
        net, target = load_net(net_path), None
    except InputError as e:  # not a ReLU chain: the general search on the bound table (as the CLI)
        from .general import verify_target
        from .table import load_target

        net, target = None, load_target(str(net_path), e)
    if target is None:
        res = verify(net, spec, timeout=timeout, method=method, progress=progress)
    else:
        res = verify_target(target, spec, timeout=timeout)
    out: dict[str, Any] = {
        "result": res.verdict,
        "solve_s": f"{res.stats.get('time', 0):.3f}",
        "boxes": res.stats.get("boxes", 0),
        "leaves": res.stats.get("leaves", 0),
        "check_s": "",
        "check": "",
        "mode": "",
    }
    if res.cert is not None:
        t = time.perf_counter()
        v = check_vnn(res.cert, net if net is not None else target.bg, spec)
        out["check_s"] = f"{time.perf_counter() - t:.3f}"
        out["check"] = "accepted" if v.ok else f"REJECTED: {v.reason}"
        out["mode"] = res.cert.get("mode", "exact") if res.verdict == "unsat" else "exact"
        if not v.ok:
            out["result"] = "unknown"
    return out


def run_csv(
    path: str | Path,
    out: str | None = None,
    timeout: float | None = None,
    method: str = "crown",
    progress: bool = True,
) -> list[dict[str, Any]]:
    base = Path(path).parent
    rows = read_instances(path)
    extra = [k for k in (rows[0] if rows else {}) if k not in FIELDS and k != "timeout"]
    results = []
    for i, row in enumerate(rows):
        limit = timeout or float(row.get("timeout") or 116)
        r = run_instance(base / row["onnx"], base / row["vnnlib"], limit, method)
        exp = row.get("expected", "")
        r.update({"onnx": row["onnx"], "vnnlib": row["vnnlib"], "expected": exp})
        r["agree"] = (
            ""
            if exp not in ("sat", "unsat") or r["result"] not in ("sat", "unsat")
            else ("yes" if r["result"] == exp else "WRONG")
        )
        r.update({k: row.get(k, "") for k in extra})
        results.append(r)
        if progress:
            print(
                f"[{i + 1}/{len(rows)}] {row['onnx']} {row['vnnlib']}: {r['result']} "
                f"({r['solve_s']} s, check {r['check_s'] or '-'} s){' expected ' + exp if exp else ''}",
                flush=True,
            )
        if out:
            _write(out, results, FIELDS + extra)
    return results


def _write(path: str, rows: list[dict[str, Any]], fields: list[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
