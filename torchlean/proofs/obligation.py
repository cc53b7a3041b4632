"""Obligations: closed formulas with a kind, a subject and a content hash.

Every part of torchlean that makes a claim (the runtime's VJP rules, interval transformers, float
lemmas, @verified models) contributes obligations through a *source*: a function registered with
``@source`` that yields ``Obligation`` objects. ``python -m torchlean.proofs emit`` collects them
all; ``discharge`` sends ``smtlib`` to a solver; ``check`` re-collects them and compares hashes with
the stored artifacts, so an edited rule shows up as a stale artifact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

#: kinds the trusted checker decides from a statement derived from the code (no solver, no tree)
DECIDED = ("composition", "adjoint", "windows", "terms", "channels", "rows")
#: kinds whose claim is ``(= RUNTIME SPEC)`` equations: replayed by the trusted ``claim`` checker,
#: which also requires every ``dom_*`` atom to be drawn from the spec side (``certificates/domains``);
#: the others (``ibp``, ``relax``: a rule's hypotheses l <= x <= u) by plain ``refutation``
CLAIMS = ("forward", "autograd")


def refutation_kind(kind: str) -> str:
    """The checker kind that replays a refutation tree for an obligation of ``kind``."""
    return "claim" if kind in CLAIMS else "refutation"


@dataclass(frozen=True)
class Obligation:
    #: "autograd", "forward", "ibp", "rounding", "crown", "robustness", ...
    kind: str
    #: what it is about: "primitive:tanh", "model:<fingerprint>", "format:binary16:add", ...
    subject: str
    #: unique, filesystem-safe id, e.g. "autograd.tanh"; names the artifact file
    name: str
    #: a closed SMT-LIB 2.6 script: set-logic, declarations, axioms, (assert (not CLAIM)), (check-sat)
    smtlib: str
    #: human-readable statement, for `show` and error messages
    statement: str = ""
    #: extra data the trusted checker needs to re-derive the claim (JSON-able)
    data: dict[str, Any] = field(default_factory=dict)
    #: where the claim is restricted (kinks, domains), stated in words for `show`
    assumptions: tuple[str, ...] = ()

    @cached_property
    def hash(self) -> str:
        # computed once per obligation (obligations are not mutated): a terms statement of 25 MB
        # took seconds to serialise at each of discharge, up_to_date and check_one
        body = {"kind": self.kind, "subject": self.subject, "name": self.name,
                "smtlib": self.smtlib, "data": self.data}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


Source = Callable[[], Iterable[Obligation]]
class NoProofCase(ValueError):
    """A runtime rule (``runtime.rules.rule``) of a project's own primitive with no proof case:
    nothing states what its kernel and VJP are proved against (``proofs`` reports it as bad input,
    exit 2, never as a pass)."""


SOURCES: dict[str, Source] = {}
#: names of the sources that are torchlean's own claims: their artifacts ship inside the package
#: (``torchlean/proofs/library/``) and a user's project checks them only when asked
LIBRARY: set[str] = set()


def source(name: str, *, library: bool = False) -> Callable[[Source], Source]:
    """Register a function yielding obligations under ``name`` (e.g. "primitives.autograd");
    ``library=True`` for torchlean's own claims (artifacts shipped in the package)."""
    def register(fn: Source) -> Source:
        SOURCES[name] = fn
        if library:
            LIBRARY.add(name)
        else:
            LIBRARY.discard(name)
        return fn
    return register
