"""Proof artifacts: one JSON file per obligation, written atomically, keyed by content hash.

An artifact records what was discharged (the obligation's hash and SMT-LIB text), how (solver,
version, options, result, time, the solver's own proof compressed) and the certificate the
trusted checker replays. ``check_one`` never believes the stored text: it replays the certificate
against the obligation re-derived from the code *now*, after comparing hashes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import atomic_write_json, read_input
from ..certificates import check as replay
from ..certificates.core import parse_json
from .obligation import Obligation

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

FORMAT = 1


def find_pyproject(start: Path | None = None) -> Path | None:
    p = (start or Path.cwd()).resolve()
    for d in (p, *p.parents):
        if (d / "pyproject.toml").is_file():
            return d / "pyproject.toml"
    return None


def config(start: Path | None = None) -> dict[str, Any]:
    """``[tool.torchlean]`` of the nearest pyproject.toml, plus its directory as ``root``."""
    pp = find_pyproject(start)
    if pp is None:
        return {"root": str(Path.cwd()), "proofs": "proofs", "modules": []}
    try:
        with open(pp, "rb") as f:
            tool = tomllib.load(f).get("tool", {})
    except (OSError, ValueError) as e:  # (TOMLDecodeError is a ValueError)
        raise ConfigError(f"{pp}: {e}") from None
    data = tool.get("torchlean", {}) if isinstance(tool, dict) else None
    if not isinstance(data, dict):
        raise ConfigError(f"{pp}: [tool.torchlean] is not a table")
    proofs, modules = data.get("proofs", "proofs"), data.get("modules", [])
    if not isinstance(proofs, str) or not (
        isinstance(modules, list) and all(isinstance(m, str) for m in modules)
    ):
        raise ConfigError(f"{pp}: [tool.torchlean] wants proofs = \"DIR\" and modules = [\"name\", ...]")
    return {"root": str(pp.parent), "proofs": proofs, "modules": list(modules)}


class ConfigError(ValueError):
    """A pyproject.toml that cannot be read, or a [tool.torchlean] table of the wrong shape."""


def proofs_dir(cfg: dict[str, Any] | None = None) -> Path:
    cfg = cfg or config()
    return Path(cfg["root"]) / cfg["proofs"]


def path_for(directory: Path, ob: Obligation) -> Path:
    return directory / f"{ob.name}.json"


write_atomic = atomic_write_json  # the name the proofs layer uses


@dataclass
class Outcome:
    name: str
    status: str  # checked | trusted | missing | stale | malformed | rejected
    detail: str = ""
    trusted: dict[str, int] | None = None


def _what_changed(old: str, new: str) -> str:
    diff = [ln for ln in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    return "; ".join(d[:120] for d in diff[:2]) or "metadata changed"


def check_one(directory: Path, ob: Obligation) -> Outcome:
    """Replay the artifact of ``ob`` (re-derived from the code) through the trusted checker."""
    path = path_for(directory, ob)
    if not path.exists():
        return Outcome(ob.name, "missing", f"no artifact {path.name}; run discharge")
    try:  # a regular file only (a FIFO is refused, never waited on); JSON within the checker's limits
        art = parse_json(read_input(path, what="artifact"))
        stored_hash, cert = art["obligation"]["hash"], art["certificate"]
        if not isinstance(cert, dict) or not isinstance(stored_hash, str):
            raise TypeError("certificate/hash of the wrong type")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return Outcome(ob.name, "malformed", f"{path.name}: {type(e).__name__}: {e}")
    if stored_hash != ob.hash:
        what = _what_changed(str(art["obligation"].get("smtlib", "")), ob.smtlib)
        return Outcome(ob.name, "stale", f"{ob.subject} changed since it was proved: {what}")
    if art.get("result") != "unsat":
        return Outcome(ob.name, "rejected", f"recorded result is {art.get('result')!r}, not unsat")
    # the statement replayed is the one derived from the code now, never the stored copy
    verdict = replay({**cert, "statement": ob.smtlib})
    if not verdict.ok:
        return Outcome(ob.name, "rejected", verdict.reason)
    if verdict.trusted:
        return Outcome(ob.name, "trusted", ", ".join(sorted(verdict.trusted)), dict(verdict.trusted))
    return Outcome(ob.name, "checked", f"{verdict.checked} steps replayed")
