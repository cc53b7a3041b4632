"""Float-sound verification: decide a property for the network *run in binary32*.

unsat: an ``errorbound`` certificate over the hull of the property's input boxes gives eps_j per
output; the real search then proves the property grown by eps (``certificates.float_vnn.grow``) and
the two parts are packed as a ``vnn-unsat-float`` certificate, replayed by ``check_vnn_float``
before anything is reported.

sat: a point x of binary32 values in the region whose binary32 run, emulated bit-exactly
(``floats.emulate``: correctly rounded elementwise operations, dot products summed left to right,
every product and sum rounded), satisfies a disjunct of the unsafe set, checked exactly on the
emulated outputs. The candidates are the real counterexamples the search finds (of the grown
property, then of the original one), rounded to binary32. Otherwise: unknown / timeout.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates.core import OutOfTime, time_limit
from ..certificates.errorbound import model_id
from ..certificates.float_vnn import KIND, check_vnn_float, grow
from ..certificates.float_vnn import epsilons as cert_epsilons
from ..certificates.property import Spec
from ..floats.emulate import emulate
from ..floats.errorbound import bound_certificate
from .bab import Result

FORMAT = "binary32"


def hull(spec: Spec) -> list[tuple[Fraction, Fraction]]:
    """The smallest box containing every input region of the property."""
    return [(min(r.lo[i] for r in spec.regions), max(r.hi[i] for r in spec.regions))
            for i in range(spec.n_in)]


def float_counterexample(graph: Any, spec: Spec, x: Any) -> tuple[list[Fraction], list[float]] | None:
    """(x32, y~) when x rounded to binary32 lies in a region and its emulated binary32 run satisfies
    one of that region's disjuncts exactly (strict atoms strictly); else None."""
    if len(graph.inputs) != 1:
        return None
    x32 = np.asarray([float(v) for v in x], dtype=np.float64).astype(np.float32)
    xq = [Fraction(float(v)) for v in x32]
    inp = graph.inputs[0]
    outs = emulate(graph, {inp.name: x32.reshape(inp.shape)}, FORMAT)
    y = np.concatenate([np.asarray(o, dtype=np.float64).reshape(-1) for o in outs])
    if not np.all(np.isfinite(y)):
        return None
    yq = [Fraction(float(v)) for v in y]
    for r in spec.regions:
        if r.contains(xq) and any(all(t.holds(yq) for t in d) for d in r.disjuncts):
            return xq, [float(v) for v in y]
    return None


def verify_float32(graph: Any, net: Any, target: Any, spec: Spec, timeout: float,
                   progress: bool = False, method: str = "crown", splits: int = 0) -> Result:
    """The float-sound verdict (module docstring) within ``timeout`` seconds. ``net``: the ReLU
    chain, or None and ``target`` the bound-table target (``table.load_instance``). ``splits`` > 0:
    the epsilon from an ``errorbound-split`` certificate with at most that many bisections
    (tighter on large boxes, ~2 leaf bounds per split). An unsat result's certificate has been
    accepted by ``check_vnn_float``; its reason is in stats["why"]."""
    from .bab import verify
    from .general import verify_target

    t0 = time.monotonic()
    stats: dict[str, Any] = {}
    checked = net if net is not None else target.bg
    try:
        with time_limit(t0 + timeout):
            eb = bound_certificate(graph, hull(spec), FORMAT, splits=splits)
    except OutOfTime:
        return Result("timeout", stats={"time": time.monotonic() - t0, "why": "epsilon not computed in time"})
    eps = cert_epsilons(eb)
    stats["epsilon"] = [float(e) for e in eps]
    stats["epsilon_s"] = time.monotonic() - t0

    def real(s: Spec) -> Result:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            return Result("timeout")
        if net is not None:
            return verify(net, s, timeout=left, progress=progress, method=method)
        return verify_target(target, s, timeout=left)

    grown = grow(spec, eps)
    res = real(grown)
    stats.update({k: v for k, v in res.stats.items() if k in ("boxes", "leaves")})
    if res.verdict == "unsat":
        cert = {"kind": KIND, "version": 1, "format": FORMAT, "errorbound": eb, "real": res.cert}
        # the replay gets its own ``timeout`` (as the CLI's real verdicts: one it cannot confirm
        # in time is not reported)
        tc = time.monotonic()
        v = check_vnn_float(cert, checked, spec, model=model_id(graph.to_dict()), deadline=tc + timeout)
        stats["check_s"] = time.monotonic() - tc
        stats["time"] = time.monotonic() - t0
        if not v.ok:  # never report what the checker does not accept
            stats["why"] = f"own float-sound certificate rejected: {v.reason}"
            return Result("timeout" if "deadline" in v.reason else "unknown", stats=stats)
        stats["why"] = v.reason
        stats["trusted"] = v.trusted
        return Result("unsat", cert=cert, stats=stats)
    found = float_counterexample(graph, spec, res.x) if res.verdict == "sat" and res.x else None
    if res.verdict == "sat" and found is None:  # a counterexample of the grown property may not
        r2 = real(spec)  # be one in floats: try the original property's own counterexample
        found = float_counterexample(graph, spec, r2.x) if r2.verdict == "sat" and r2.x else None
    if found is not None:
        stats["time"] = time.monotonic() - t0
        stats["why"] = "counterexample checked on the emulated binary32 run (exact atoms)"
        return Result("sat", x=found[0], y=found[1], stats=stats)
    stats["time"] = time.monotonic() - t0
    late = time.monotonic() - t0 >= timeout
    stats["why"] = ("the property grown by epsilon is not provable and no binary32 counterexample was found"
                    if res.verdict != "timeout" else "real search on the grown property timed out")
    return Result("timeout" if late or res.verdict == "timeout" else "unknown", stats=stats)
