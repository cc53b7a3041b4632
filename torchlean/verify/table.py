"""The search's one doorway into the trusted engines: every bound, certificate check and exact
counterexample test that ``verify.bab``, ``verify.general`` and ``verify.api`` use goes through
the functions here, on the bound table: ``certificates.lower`` (the table's lowering),
``certificates.fast_engine`` (its batched CROWN), ``certificates.engine`` (the exact one) and
``check_vnn``. A graph the table refuses raises ``Unsupported`` (one line). ReLU chains are bound
graphs like any other (the chain engine was removed, issue 14); ``Target.fnet`` is their float64
copy for the attack and the branching scores (``network.float_chain``), nothing the checker reads.

Nothing here computes a bound itself: the search adds heuristics on top of these numbers only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates import engine, lower
from ..certificates import fast_engine as fe
from ..certificates.bounds import check_vnn, replay_mode
from ..certificates.core import Verdict
from ..certificates.fast_forms import outward
from ..certificates.property import Atom, Region, Spec
from . import engines
from .network import FloatNet, float_chain


@dataclass
class Target:
    """A network as the checker sees it (``bg``: the lowered bound graph), with the executor the
    search attacks (``ex``: the runtime's ``GraphExec``, or a chain's ``FloatNet``) and, for a
    ReLU chain, its float64 layers (``fnet``)."""

    graph: Any
    ex: Any
    bg: Any
    fnet: FloatNet | None = None
    path: Any = None  # the ONNX file it was read from (``runtime_mismatch`` runs it there)
    runtime_checked: bool = False  # whether ``load_instance`` compared it with onnxruntime
    #: why the last ``load_instance`` compared nothing with onnxruntime (``RUNTIME_UNCHECKED``
    #: names the consequence), or None when it did: the CLI reports it next to the verdict
    runtime_note: str | None = None
    #: the sha256 of the file's bytes it was imported from (``network.network_bytes``): the key of
    #: ``load_target``'s cache, and what onnxruntime's session must be made from (audit43)
    sha256: str | None = None

    @property
    def chain(self) -> bool:
        return self.fnet is not None


def target(graph: Any) -> Target:
    """Lower ``graph`` for the checker (the bound table's DAG). Raises Unsupported (one line) when
    the table does not accept it."""
    from .executor import GraphExec

    bg = lower.lower(graph.to_dict())
    return Target(graph, GraphExec(graph), bg, float_chain(bg))


def graph_target(bg: Any) -> Target:
    """A target for a bound graph alone (no runtime graph): a ReLU chain, attacked on its float
    layers (``float_chain``). ValueError for any other graph (the attack needs an executor)."""
    fnet = float_chain(bg)
    if fnet is None:
        raise ValueError("not a ReLU chain: build the target from the runtime graph (table.target)")
    return Target(None, fnet, bg, fnet)


#: networks up to this many bound-graph variables are kept lowered between calls (the properties
#: of one network then share its float conversion, ``fast_engine.compiled``, cached per graph)
CACHE_VARS = 100_000
_CACHE: dict[tuple[str, str], Target] = {}


def load_target(path: Any) -> Target:
    """A network file as a target; InputError (one line) when the runtime or the bound table
    refuses it. The same object for the same file and bytes (its real path and the sha256 of its
    contents, read once: audit43, a key of path, size and modification time gave the import of a
    file replaced by another of the same size and time) when the network is small
    (``CACHE_VARS``)."""
    from ..certificates.bound_graph import Unsupported
    from .network import InputError, load_graph, network_bytes

    data, digest = network_bytes(path)
    key = (os.path.realpath(str(path)), digest)
    if key in _CACHE:
        return _CACHE[key]
    graph = load_graph(path, data)
    del data
    try:
        t = target(graph)
    except (Unsupported, ValueError) as e:
        raise InputError(f"{path}: not supported by the bound table: {e}") from None
    t.path, t.sha256 = path, digest
    if t.bg.n_vars <= CACHE_VARS:
        if len(_CACHE) >= 8:
            _CACHE.clear()
        _CACHE[key] = t
    return t


#: the onnxruntime cross-check runs only with at least this many seconds left: importing
#: onnxruntime holds the interpreter for up to a second, when the watchdog that answers "timeout"
#: at the deadline cannot run (measured: ``--timeout 1`` answered at 3 s instead of 1.9 s)
RUNTIME_CHECK_S = 5.0
#: at most this many regions' centres are run by the cross-check (each costs an onnxruntime run and
#: two of the import's)
RUNTIME_CENTRES = 32


#: the words the CLI, ``verify run`` and ``--cert`` put before ``Target.runtime_note`` (audit30)
RUNTIME_UNCHECKED = "the import was not cross-checked against onnxruntime"


def runtime_unchecked(t: Target) -> str | None:
    """One line saying that (and why) the target's import was not compared with onnxruntime by
    the last ``load_instance``, or None when it was."""
    return None if t.runtime_note is None else f"{RUNTIME_UNCHECKED} ({t.runtime_note})"


def load_instance(net_path: Any, prop_path: Any, runtime_check: bool = True) -> tuple[Target, Spec]:
    """The network's target and the property; InputError (one line) when either is refused, the
    sizes of network and property disagree, or (``runtime_check``) onnxruntime runs the network
    file differently from its import (``network.runtime_compare``). ``Target.runtime_note`` says
    why nothing was compared, if so (no onnxruntime, a file it cannot run, no finite point, or
    ``runtime_check`` False)."""
    from .network import InputError, load_spec, runtime_compare

    spec = load_spec(prop_path)
    t = load_target(net_path)
    if spec.n_in != t.bg.n_in or spec.n_out != t.bg.n_out:
        raise InputError(f"{prop_path}: property has {spec.n_in} inputs/{spec.n_out} outputs, "
                         f"network {t.bg.n_in}/{t.bg.n_out}")
    if not runtime_check:
        t.runtime_note = f"skipped: less than {RUNTIME_CHECK_S:g} s of the time limit left"
        return t, spec
    # the importer is trusted: a network it reads differently from onnxruntime is refused, not
    # verified (two random points and the lowest and highest corners of each of the first regions'
    # boxes, and the centre of every region up to RUNTIME_CENTRES, spread: audit22 planted a
    # misread seen only in a third region)
    rng = np.random.default_rng(0)
    points = []
    regions = spec.regions
    if len(regions) > RUNTIME_CENTRES:
        regions = [regions[int(i)] for i in np.linspace(0, len(regions) - 1, RUNTIME_CENTRES)]
    for k, r in enumerate(regions):
        lo, hi = np.array([float(v) for v in r.lo]), np.array([float(v) for v in r.hi])
        points.append((lo + hi) / 2)
        if k < 2:  # (the two extreme corners too: a misread saturation or threshold shows at an end)
            points += [lo + rng.uniform(size=lo.size) * (hi - lo) for _ in range(2)] + [lo, hi]
    why, skipped = runtime_compare(net_path, t.graph, points, t.sha256)
    if why is not None:
        raise InputError(f"{net_path}: torchlean's import disagrees with onnxruntime ({why}); refusing it")
    t.runtime_note = skipped
    t.runtime_checked = True  # (the session is made: a sat's point is run there too)
    return t, spec


def runtime_refutes(t: Target, x: Any) -> str | None:
    """Why onnxruntime's run of the target's file at the counterexample ``x`` refutes the import's
    (``network.runtime_mismatch``), or None: a sat is reported only when the two agree there.
    Only for a target ``load_instance`` checked (its session is made: this costs the run only)."""
    from .network import runtime_mismatch

    if t.path is None or t.graph is None or not t.runtime_checked:
        return None
    return runtime_mismatch(t.path, t.graph, [x], t.sha256)


def bounder(t: Target) -> Callable[[Region, np.ndarray, np.ndarray], Callable[..., np.ndarray]]:
    """``general.Bounder`` over the target's fast engine: sound lower bounds of C·y - d per box."""
    def make_table(region: Region, C: np.ndarray, d: np.ndarray):
        # C and d are sums of the property's decimals: the search may round them (its bounds are
        # only a guide); the checker recomputes each leaf from the exact property
        fg = fe.compiled(t.bg)
        return lambda lo, hi: engines.fast_crown(fg, lo, hi, C=C)[0] - d

    return make_table


def output_bounds_box(t: Target, lo: tuple[Fraction, ...], hi: tuple[Fraction, ...],
                      method: str = "crown", exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Sound float bounds (n_out,) of every output over the exact box [lo, hi], computed by the
    checker's engine: the table's fast engine (``exact=False``, float64 with outward charges) or
    exact engine (rationals, then rounded outward)."""
    if exact:
        low, up = engines.exact_ibp(t.bg, lo, hi) if method == "ibp" else engines.exact_crown(t.bg, lo, hi)
        flow, fup = outward(low, up)
        return np.array(flow), np.array(fup)
    flo, fhi = fe.boxes([lo], [hi])
    low, up = (engines.fast_ibp if method == "ibp" else engines.fast_crown)(fe.compiled(t.bg), flo, fhi,
                                                                            refuse=True)
    return low[0], up[0]


def alpha_bounds_box(t: Target, lo: tuple[Fraction, ...], hi: tuple[Fraction, ...], steps: int = 30,
                     exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """α-CROWN bounds of every output over the exact box: slopes chosen by ``alpha.optimise``, each
    row's bound recomputed by the table's engine with its own slopes (the fast one: the box repeated
    once per row, each copy with that row's slopes; or the exact one), and per output the better of
    that and the default CROWN bound kept (both are the engine's, so both are sound)."""
    from ..certificates.fast_functions import FAST
    from . import alpha

    low, up = output_bounds_box(t, lo, hi, "crown", exact)
    n = t.bg.n_out
    C = np.concatenate([np.eye(n), -np.eye(n)])
    if alpha.dense_size(t.bg) > alpha.MAX_DENSE:
        return low, up
    if any(nd.kind == "fn" and nd.fn not in FAST for nd in t.bg.nodes):
        return low, up  # a row without a fast sibling: no gradient to follow
    if not exact:
        fg = fe.compiled(t.bg)
        flo, fhi = fe.boxes([lo], [hi])
        bs = alpha.Backsub.from_fast(t.bg, fg, fe.forward(fg, flo, fhi, "crown"), FAST)
    else:
        bs = alpha.Backsub.from_exact(t.bg, engine.forward(t.bg, lo, hi, "crown"), FAST)
    lam0, c0 = alpha.objective_rows(t.bg, C)
    best = alpha.optimise(bs, lam0, c0, steps=steps)
    if not exact:
        R = C.shape[0]
        res = engines.fast_crown(fg, np.repeat(flo, R, 0), np.repeat(fhi, R, 0), C=C,
                       slopes={k: (a[0], b[0]) for k, (a, b) in best.items()})[0]
        vals = np.diag(res)
    else:
        rows = [[Fraction(int(v)) for v in r] for r in C]
        exact_vals = [engines.exact_crown(t.bg, lo, hi, C=[rows[r]],
                                          slopes=alpha.slopes_for_row(best, r))[0][0]
                      for r in range(C.shape[0])]
        vals = np.array(outward(exact_vals, exact_vals)[0])
    return np.maximum(low, vals[:n]), np.minimum(up, -vals[n:])


def alpha_leaf(t: Target, lo: np.ndarray, hi: np.ndarray, C: np.ndarray, d: np.ndarray,
               steps: int = 30, shared: dict[Any, Any] | None = None
               ) -> tuple[np.ndarray, Callable[[int, int], list[list[Any]]]] | None:
    """α-CROWN on B float boxes (B, n) for the objective rows C·y - d: per box and row the fast
    engine's bound with that row's optimised slopes (B, R), and a function (b, r) -> the slopes
    as leaf-proof entries; None when the graph is too large for the dense float back-substitution.
    ``shared``: the region's shared / per-target slopes for every forward pass (``arg_slopes``,
    ``fast_engine.forward``'s ``slopes``)."""
    from ..certificates.fast_functions import FAST
    from . import alpha

    if alpha.dense_size(t.bg) > alpha.MAX_DENSE:
        return None
    B, R = lo.shape[0], C.shape[0]
    if B * R * t.bg.n_vars > alpha.MAX_DENSE or any(n.kind == "fn" and n.fn not in FAST for n in t.bg.nodes):
        return None
    fg = fe.compiled(t.bg)
    bs = alpha.Backsub.from_fast(t.bg, fg, fe.forward(fg, lo, hi, "crown", slopes=shared), FAST)
    lam0, c0 = alpha.objective_rows(t.bg, C)
    best = alpha.optimise(bs, lam0, c0 - d, steps=steps)
    # the slopes as the checker will read them (float32 values; NaN where the default is kept),
    # evaluated by the engine: box b repeated once per row r, with row r's slopes
    q = {}
    for op in bs.ops:
        if op["kind"] == "fn":
            k = op["k"]
            a, b = best[k]
            q[k] = tuple(np.where(v == dv, np.nan, np.float32(v).astype(float)).reshape(B * R, -1)
                         for v, dv in ((a, op["dl"]), (b, op["du"])))
    res = engines.fast_crown(fg, np.repeat(lo, R, 0), np.repeat(hi, R, 0), C=C, slopes=q,
                             shared=shared)[0].reshape(B, R, R)
    lb = np.einsum("brr->br", res) - d
    return lb, lambda b, r: alpha.slope_entries(bs, best, r, b)


def alpha_leaf_fn(t: Target) -> Callable[..., Any] | None:
    """``general.AlphaLeaf`` for this target."""
    return lambda lo, hi, C, d: alpha_leaf(t, lo, hi, C, d)


def engine_name(t: Target, exact: bool = False) -> str:
    if exact:
        return "certificates.engine (bound table, exact rationals)"
    return "certificates.fast_engine (bound table, float64 rounded outward)"


def network_id(t: Target) -> str:
    return lower.fingerprint(t.bg)  # (hashed once per graph: ``BoundGraph.fp``)


def check(cert: dict[str, Any], t: Target, spec: Spec) -> Verdict:
    """The trusted checker's verdict on a certificate for this target and property."""
    return check_vnn(cert, t.bg, spec)


def confirmer(t: Target, spec: Spec) -> Callable[[list[Fraction]], bool]:
    """Whether x is a counterexample: the fast engine's float64 enclosure of the outputs at x first
    (sound, milliseconds), and the checker's exact test (a vnn-sat certificate it accepts: exact
    rationals on a ReLU chain, seconds to minutes on a ResNet) only when that enclosure cannot
    decide. This is the search's filter, not the verdict: the caller checks the final certificate
    exactly (and a rejected one is reported as such)."""

    def confirm(x: list[Fraction]) -> bool:
        low, up = output_bounds_box(t, tuple(x), tuple(x), "ibp")
        decided = float_sat(spec, x, low, up)
        return check(sat_cert(t, spec, x), t, spec).ok if decided is None else decided

    return confirm


def confirm(bg: Any, spec: Spec, x: list[Fraction]) -> bool:
    """The checker's exact test of x as a counterexample of ``spec`` on the bound graph ``bg`` (a
    vnn-sat certificate it accepts: strict atoms and strict input bounds strictly)."""
    return check(sat_cert(Target(None, None, bg), spec, x), Target(None, None, bg), spec).ok


def atom_holds(atom: Atom, y: list[Fraction]) -> bool:
    """Exactly, a strict atom strictly: does the output ``y`` satisfy the atom? (The search's own
    test, e.g. of an emulated float32 run; the checker's sat replay decides a vnn-sat verdict.)"""
    val = sum((a * v for a, v in zip(atom.a, y) if a), Fraction(0))
    return val < atom.b if atom.strict else val <= atom.b


def float_sat(spec: Spec, x: list[Fraction], low: np.ndarray, up: np.ndarray) -> bool | None:
    """True when some disjunct of a region containing x holds on the whole enclosure [low, up] of
    the outputs with a margin float rounding cannot erase, False when every such disjunct fails
    on all of it with such a margin, None otherwise (the exact test decides)."""
    mag = np.maximum(np.abs(low), np.abs(up))
    undecided = False
    for region in spec.regions:
        if not region.contains(x):
            continue
        for disj in region.disjuncts:
            holds = True
            for atom in disj:
                a, b = np.array([float(v) for v in atom.a]), float(atom.b)
                tol = 1e-9 * (1.0 + abs(b) + float(np.abs(a) @ mag))
                top = float(np.where(a > 0, a * up, a * low).sum())  # max of a·y over the enclosure
                bot = float(np.where(a > 0, a * low, a * up).sum())
                if bot > b + tol:  # fails everywhere: the disjunct does too
                    holds = False
                    break
                if not top < b - tol:
                    holds = None
            if holds:
                return True
            undecided = undecided or holds is None
    return None if undecided else False


def sat_cert(t: Target, spec: Spec, x: list[Fraction]) -> dict[str, Any]:
    return {"kind": "vnn-sat", "version": 1, "network": network_id(t), "property": spec.digest(),
            "x": [str(v) for v in x]}


def unsat_cert(t: Target, spec: Spec, trees: list[Any]) -> dict[str, Any]:
    """(No "mode": the replay mode is the checker's caller's choice, ``bounds.replay_mode``.)"""
    return {"kind": "vnn-unsat", "version": 1, "network": network_id(t), "property": spec.digest(),
            "method": "crown", "regions": trees}


#: the claim of each root leaf in ``root_check``'s certificate: any root bound the search counts as
#: a proof (> ``general.EPS`` = 1e-300) is at least this, so the checker accepts the certificate
#: exactly when the search would have closed every disjunct at the root (the search's own root
#: leaves claim half the bound instead: ``tree.threshold``)
ROOT_CLAIM = "1/" + "1" + "0" * 301


def cert_text(cert: dict[str, Any]) -> str:
    """A certificate as the CLI writes it (``--cert``): the text a checked replay is keyed by."""
    return json.dumps(cert, separators=(",", ":"))


def root_check(t: Target, spec: Spec, deadline: float) -> tuple[list[Any], Any, list[Any]] | None:
    """The root-only certificate of ``spec`` (one region; every disjunct one atom): per disjunct
    a tree of one leaf claiming ``ROOT_CLAIM``, no splits, default slopes, replayed by the
    checker as the CLI would (mode by ``bounds.replay_mode``, stopped at ``deadline``, a
    ``time.perf_counter`` time). Returns (the region entries, (``cert_text``, Verdict), the forward
    states the replay computed: its own memo, which the search may read afterwards as hints),
    or None for another property. The checker reads nothing the search computed: it gets only
    the certificate, and its memo is created inside the replay (``check_vnn``'s ``keep``)."""
    if len(spec.regions) != 1 or any(len(d) != 1 for d in spec.regions[0].disjuncts):
        return None
    entries = [{"per_disjunct": [[["leaf", [[0, ROOT_CLAIM]]]] for _ in spec.regions[0].disjuncts]}]
    cert = unsat_cert(t, spec, entries)
    text = cert_text(cert)  # (what the checker is handed, taken before it runs)
    keep: dict[str, Any] = {}
    v = check_vnn(cert, t.bg, spec, mode=replay_mode(cert, t.bg),
                  deadline=time.monotonic() + (deadline - time.perf_counter()), keep=keep)
    return entries, (text, v), list(keep.get("states", {}).values())


def root_state(states: list[Any], lo: np.ndarray, hi: np.ndarray) -> Any:
    """Of a replay's forward states (``root_check``'s), the one of the box (lo, hi) (1, n) alone,
    without phases or slopes (a root-only certificate has neither), or None."""
    for st in states:
        if st.B == 1 and not st.shared and np.array_equal(st.L[0], lo) and np.array_equal(st.U[0], hi):
            return st
    return None


def replay_result(res: Any, t: Target, spec: Spec, mode: str, deadline: float) -> tuple[Verdict, float]:
    """The checker's Verdict on ``res.cert`` and the seconds it took: the search's own accepted
    replay of that very certificate (``checked_by_search``: its root check's time), else a replay
    now in ``mode``, stopped at ``deadline`` (``time.monotonic``), as the CLI and ``verify run``
    report it. (The search's replay is taken only for a certificate naming ``t``'s network and
    ``spec``'s property, asked for in the mode the root check replayed it in, ``replay_mode``:
    a caller handing in another target's result or another mode gets a replay of its own.)"""
    v = checked_by_search(res)
    if v is not None and res.cert.get("network") == network_id(t) and \
            res.cert.get("property") == spec.digest() and mode == replay_mode(res.cert, t.bg):
        return v, res.stats.get("root_check_s", 0.0)
    t0 = time.perf_counter()
    return check_vnn(res.cert, t.bg, spec, mode=mode, deadline=deadline), time.perf_counter() - t0


def checked_by_search(res: Any) -> Any:
    """The checker's Verdict on ``res.cert`` if the search already replayed exactly that
    certificate and the checker accepted it (``tree.Result.checked``), else None: the caller
    then replays it itself."""
    if res.cert is None or res.checked is None:
        return None
    text, v = res.checked
    return v if v.ok and text == cert_text(res.cert) else None
