"""Float-sound VNN verdicts: the ``vnn-unsat-float`` certificate (standard library only).

Claim: for no real point x of the property's input region does the network *run in that format*
on fl(x), x rounded to nearest (the runtime's kernels on the IR the statement carries, rounding to
nearest), return an output in the unsafe set. Every errorbound statement must have ``input_exact``
false (its epsilon charges |fl(x) - x| from the real x: claim35b; a statement with it true covers
only the format's values of the box, and is refused). Certificate::

    {"kind": "vnn-unsat-float", "version": 1, "format": "binary32",
     "errorbound": <an ``errorbound`` or ``errorbound-split`` certificate>,
     "real": <a ``vnn-unsat`` certificate for the real network and the GROWN property>}

Argument. The errorbound part, replayed here, gives |y~_j(fl(x)) - y_j(x)| <= eps_j for every real
x in its box (y~ the float run, y the real network). Every output atom a·y <= b (or <) of the unsafe
set is grown to a·y <= b + sum_j |a_j| eps_j (strictness kept): if y~(fl(x)) satisfies the atom, the
real y(x) satisfies the grown one (a·y <= a·y~ + sum |a_j||y_j - y~_j|). So a real counterexample to the
grown property exists whenever a float one to the original does, and the ``real`` part, replayed
by ``check_vnn`` against the grown property rebuilt here from the replayed epsilons (exact
rationals), proves there is none. The errorbound statement must be about this network (its IR read
by the same reader gives the same fingerprint as the network checked; with ``model``, the very IR of
the network file), its box must contain every region's box, and its format and mode must be the
certificate's format with round-to-nearest-even. The format is the caller's (``fmt``), and each
statement assumes kernels within at least ``KERNEL_ULPS`` ulp, the runtime's assumption (audit15).

Partitioned form: {"kind", "version", "format", "box": [[lo, hi], ...], "parts": T}, T =
{"split": [d, "v"], "lo": T, "hi": T} | {"errorbound": ..., "real": ...}. The root box must contain
every region's box; a split (lo_d < v < hi_d) gives the halves [lo_d, v] and [v, hi_d], so the
leaves cover the root box; each leaf is checked as above against the property restricted to its
box (every region intersected with it, closed: a superset, so unsat of it is unsat of the part), so
each part of the region gets its own, smaller, epsilon. A float counterexample's real x lies in some leaf
box and in that leaf's restricted region, where its leaf excludes it. Leaves may carry the same
errorbound certificate (an ancestor's, whose box covers them): each distinct one (by its whole
canonical JSON, not a claimed digest) is replayed once per check; the per-leaf requirements
(format, model, its box covering the leaf's regions) are checked for every leaf.

Shared IR: a certificate (either form) may carry the IR once, as a top-level "graph"; then no
errorbound statement may carry its own, and each is completed with it ({**statement, "graph": IR})
before anything reads it, so the errorbound checker runs unchanged on the completed statement:
its digest (computed by the generator on the completed statement) and its "model" fingerprint are
checked against the shared IR, which is checked once to be the network checked. A leaf therefore
cannot be replayed against any graph but the one the verdict names. Without "graph", each
statement carries its own IR, checked as above (the older form, still accepted).
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

from . import errorbound
from .bounds import check_vnn
from .core import Verdict, box_leaves, needs_statement, rational, replay, require
from .lower import BoundGraph, fingerprint, lower
from .property import Atom, Region, Spec
from .rounding import get_format

KIND = "vnn-unsat-float"
#: the errorbound kinds a float-sound certificate may carry (their checkers, by kind)
EPS_KINDS = {"errorbound": errorbound.check_errorbound, "errorbound-split": errorbound.check_errorbound_split}
#: the kernel accuracy the runtime's float program is assumed to have (TRUST_BOUNDARIES.md, "Runtime":
#: library kernels within 4 ulp); a statement assuming a more accurate library claims another program
KERNEL_ULPS = Fraction(4)


def grow(spec: Spec, eps: list[Fraction]) -> Spec:
    """The property with every output atom a·y <= b widened to a·y <= b + sum_j |a_j| eps_j."""
    require(len(eps) == spec.n_out, f"{len(eps)} epsilons for {spec.n_out} outputs")
    require(all(e >= 0 for e in eps), "negative epsilon")

    def atom(t: Atom) -> Atom:
        return Atom(t.a, t.b + sum((abs(a) * e for a, e in zip(t.a, eps) if a), Fraction(0)), t.strict)

    return Spec(spec.n_in, spec.n_out, tuple(
        Region(r.lo, r.hi, tuple(tuple(atom(t) for t in d) for d in r.disjuncts), r.lo_strict, r.hi_strict)
        for r in spec.regions))


def epsilons(eb: dict[str, Any]) -> list[Fraction]:
    return [rational(x) for x in eb["statement"]["epsilon"]]


def _same_network(ir: dict[str, Any], net: BoundGraph) -> None:
    """The errorbound's IR, read as the checker reads networks, is the network checked."""
    require(fingerprint(lower(ir)) == fingerprint(net), "errorbound certificate is for a different network")


def check_vnn_float(cert: Any, net: BoundGraph, spec: Spec, model: str | None = None,
                    mode: str | None = None, deadline: float | None = None,
                    fmt: str = "binary32") -> Verdict:
    """Check a ``vnn-unsat-float`` certificate (module docstring) for ``net`` (its bound graph,
    as ``check_vnn`` takes) and ``spec``. ``model``: when given, the errorbound's IR
    must have this ``errorbound.model_id`` (the IR the importer reads from the network file, so the
    float program is that file's). ``mode``/``deadline``: as ``check_vnn``, for both parts.
    ``fmt``: the format the caller asks about (the certificate's must be it, never its own pick)."""
    return replay(_check, cert, net, spec, model, mode, deadline, fmt, deadline=deadline)


def restrict(spec: Spec, box: list[tuple[Fraction, Fraction]]) -> Spec:
    """The property on the closed box ∩ each region (regions it misses are dropped)."""
    out = []
    for r in spec.regions:
        lo = tuple(max(a, x) for (a, _), x in zip(box, r.lo))
        hi = tuple(min(b, x) for (_, b), x in zip(box, r.hi))
        if all(a <= b for a, b in zip(lo, hi)):
            out.append(Region(lo, hi, r.disjuncts))
    return Spec(spec.n_in, spec.n_out, tuple(out))


def _covering(box: Any, spec: Spec, what: str) -> list[tuple[Fraction, Fraction]]:
    """``box`` read exactly; rejected unless it contains every input region of ``spec``."""
    box = [(rational(a), rational(b)) for a, b in box]
    require(len(box) == spec.n_in, f"{what} and property have different input counts")
    for k, r in enumerate(spec.regions):
        require(all(a <= lo and hi <= b for (a, b), lo, hi in zip(box, r.lo, r.hi)),
                f"{what} does not cover input region {k}")
    return box


def _check(cert: Any, net: BoundGraph, spec: Spec, model: str | None, mode: str | None,
           deadline: float | None, asked: str) -> Verdict:
    require(isinstance(cert, dict) and cert.get("kind") == KIND, f"not a {KIND} certificate")
    fmt = get_format(str(cert["format"]))
    require(fmt.to_dict() == get_format(asked).to_dict(), f"certificate is about {fmt.name}, not {asked}")
    ir = cert.get("graph")  # the shared IR (then every errorbound statement omits its own)
    if ir is not None:
        _same_network(ir, net)
    if "parts" not in cert:
        return _leaf(cert, fmt, net, spec, model, mode, deadline, {}, ir)
    box = _covering(cert["box"], spec, "box")
    checked, trusted, leaves, seen = 0, {}, 0, {}
    for node, b in box_leaves(cert["parts"], box):  # the parts' boxes cover the root box
        v = _leaf({**node, "kind": KIND}, fmt, net, restrict(spec, b), model, mode, deadline, seen, ir)
        checked, leaves = checked + v.checked, leaves + 1
        trusted.update(v.trusted)
    # (no epsilon in the reason: a number printed rounded to nearest can claim less error than
    # checked, audit41; the commands print the certificate's epsilons rounded up)
    return Verdict(True, checked=checked, trusted=trusted,
                   reason=f"unsat ({fmt.name}-sound): {leaves} parts, each an errorbound and a real "
                          "proof replayed")


def _leaf(cert: dict[str, Any], fmt: Any, net: BoundGraph, spec: Spec, model: str | None,
          mode: str | None, deadline: float | None, seen: dict[str, Verdict],
          ir: dict[str, Any] | None) -> Verdict:
    """One errorbound certificate and one real proof of ``spec`` grown by its epsilon; ``seen``:
    the errorbound replays of this check, by the certificate's canonical JSON as stored; ``ir``:
    the shared IR (already checked to be ``net``), put into the statement before anything reads it."""
    eb, real = cert["errorbound"], cert["real"]
    require(isinstance(eb, dict) and eb.get("kind") in EPS_KINDS, "the errorbound part has an unknown kind")
    key = json.dumps(eb, sort_keys=True, separators=(",", ":"))  # (the content itself; ``ir`` is fixed)
    if ir is not None:
        require("graph" not in eb["statement"], "an errorbound carries a graph beside the shared one")
        eb = {**eb, "statement": {**eb["statement"], "graph": ir}}
    stmt = eb["statement"]
    require(stmt["format"] == fmt.to_dict(), f"errorbound certificate is not about {fmt.name}")
    require(stmt["mode"] == "rne", "errorbound certificate is not about round-to-nearest-even")
    require(stmt.get("input_exact") is False, "errorbound certificate's input_exact is not false: its "
            "epsilon omits the rounding of real inputs to the format, which a float-sound verdict covers")
    _native(stmt["graph"], fmt)
    require(rational(stmt["kernel_ulps"]) >= KERNEL_ULPS,
            f"errorbound certificate assumes kernels within {stmt['kernel_ulps']} ulp, not {KERNEL_ULPS}")
    if model is not None:
        require(stmt["model"] == model, "errorbound certificate is for a different model (IR)")
    _covering(stmt["input_box"], spec, "errorbound box")
    if key not in seen:
        if ir is None:
            _same_network(stmt["graph"], net)
        seen[key] = EPS_KINDS[eb["kind"]](eb)  # replays the bounds (and the completed statement's digest)
    v_eb = seen[key]
    require(v_eb.ok, f"errorbound part rejected: {v_eb.reason}")
    eps = epsilons(eb)
    require(isinstance(real, dict) and real.get("kind") == "vnn-unsat", "the real part must be vnn-unsat")
    v = check_vnn(real, net, grow(spec, eps), mode=mode, deadline=deadline)
    require(v.ok, f"real part rejected (against the property grown by epsilon): {v.reason}")
    trusted = {**v_eb.trusted, **v.trusted}
    trusted[f"kernels:{fmt.name}-rne,kernel_ulps={stmt['kernel_ulps']}"] = 1
    return Verdict(True, checked=v.checked + v_eb.checked, trusted=trusted,
                   reason=f"unsat ({fmt.name}-sound): errorbound replayed; {v.reason}")


def _native(ir: dict[str, Any], fmt: Any) -> None:
    """The network's own run is in formats holding ``fmt`` (audit64): every float graph input, and
    every float weight read by a node other than a cast, is of such a format. A float16 network's
    kernels compute float16 weights with float16 weights in float16 (batch norm's scale) and its
    inputs are float16, which ``fmt``'s charges do not bound."""
    reads = {n for nd in ir["nodes"] if nd["op"] != "cast" for n in nd["inputs"]}
    dts = [i["dtype"] for i in ir["inputs"]] + [a["dtype"] for k, a in ir["constants"].items() if k in reads]
    for dt in dts:
        require(not str(dt).startswith("float") or errorbound.holds(get_format(str(dt)), fmt),
                f"the network computes in {dt}, which does not hold {fmt.name}")


needs_statement((KIND,), "check_vnn_float(cert, net, spec)")
