"""The search's one doorway into the trusted engines: every bound, certificate check and exact
counterexample test that ``verify.general`` and ``verify.api`` use goes through the functions here.

Two back ends, chosen per network by ``target``:
- ReLU chains: the chain checker of today (``certificates.network``, ``fast_crown``, ``check_vnn``);
- any other graph the bound table lowers: ``certificates.lower`` (the table's lowering),
  ``certificates.fast_engine`` (its batched CROWN), ``certificates.engine`` (the exact one) and
  ``check_vnn`` on general graphs. A graph the table refuses raises ``Unsupported`` (one line).

Nothing here computes a bound itself: the search adds heuristics on top of these numbers only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ..certificates import engine, fast, lower
from ..certificates import fast_engine as fe
from ..certificates.bounds import check_vnn, objective_steps
from ..certificates.core import Verdict
from ..certificates.fast_crown import crown_bounds
from ..certificates.network import Net, Unsupported, fingerprint, network_from_ir
from ..certificates.property import Region, Spec
from ..spec.graph import Graph
from . import attack
from .bab import _combos, graph_fingerprint
from .executor import GraphExec


@dataclass
class Target:
    """A network as the checker sees it (``net``: a ReLU chain, or ``bg``: a lowered bound graph),
    with the runtime executor the search attacks."""

    graph: Graph
    ex: GraphExec
    net: Net | None = None
    bg: Any = None

    @property
    def kind(self) -> str:
        return "chain" if self.net is not None else "table"


def target(graph: Graph, prefer_chain: bool = False) -> Target:
    """Lower ``graph`` for the checker: the bound table's DAG (with ``prefer_chain``, the older
    ReLU-chain engine's network when it is one). Raises Unsupported (one line) when neither
    accepts it."""
    ir = graph.to_dict()
    ex = GraphExec(graph)
    if prefer_chain:
        try:
            return Target(graph, ex, net=network_from_ir(ir))
        except (Unsupported, ValueError):
            pass
    return Target(graph, ex, bg=lower.lower(ir))


def load_target(path: str, why: Exception) -> Target:
    """A network file that is not a ReLU chain (``why``: the chain reader's refusal), lowered by
    the bound table; InputError (one line, keeping both refusals) when the table refuses it too."""
    from .network import InputError, load_graph

    graph = load_graph(path)
    try:
        return target(graph, prefer_chain=False)
    except (Unsupported, ValueError) as e:
        raise InputError(f"{why}; bound table: {e}") from None


def chain_graph(net_path: Any, graph: Graph | None = None) -> Any:
    """The bound table's graph of a network file that is a ReLU chain (``lower.lower`` of its IR):
    what ``bab.verify(..., bg=)`` searches on and its certificates are checked against. The same
    object for the same unchanged file (path, size and modification time), so the properties of
    one network share its float conversion (``fast_engine.compiled``, cached per graph object).
    ``graph``: the file's spec graph when the caller already read it (it is not read again)."""
    import os

    path = os.path.realpath(str(net_path))
    try:
        st = os.stat(path)
    except OSError:  # (the reader's one-line error)
        return _lower_file(str(net_path), graph)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _LOWERED:
        while len(_LOWERED) >= 8:  # (a few networks per process: a benchmark list's)
            del _LOWERED[next(iter(_LOWERED))]
        _LOWERED[key] = _lower_file(path, graph)
    return _LOWERED[key]


def chain_target(net: Net, net_path: Any, engine: str = "table", method: str = "crown") -> Target | None:
    """The bound-table target a ReLU chain is searched on by the general search (``general``:
    ReLU splits with β multipliers, ``graph_relu``), or None when ``bab.verify`` takes it: the
    chain engine was asked for, the "forward" method, few enough inputs to split
    (``bab.INPUT_SPLIT_MAX``; those split on the table through ``bg``), or 17-64 inputs, where the
    general search splits inputs, not ReLUs (``general.INPUT_SPLIT_MAX``), and timed out on a
    20-input instance the chain's ``relu_bab`` with LP leaves proves (``tests/test_lp_leaves.py``)."""
    from .general import INPUT_SPLIT_MAX

    if engine != "table" or method != "crown" or net.n_in <= INPUT_SPLIT_MAX:
        return None
    return graph_target(net_path)


def graph_target(net_path: Any, graph: Graph | None = None) -> Target:
    """A ReLU chain's file as a bound-table target (its ``chain_graph`` and the runtime executor;
    ``graph``: the file's spec graph if already read)."""
    from .network import load_graph

    graph = graph if graph is not None else load_graph(str(net_path))
    return Target(graph, GraphExec(graph), bg=chain_graph(net_path, graph))


#: ``chain_graph``'s lowered graphs by (real path, size, mtime), oldest first
_LOWERED: dict[tuple[str, int, int], Any] = {}


def _lower_file(path: str, graph: Graph | None) -> Any:
    from .network import load_graph

    return lower.lower((graph if graph is not None else load_graph(path)).to_dict())


def load_instance(net_path: Any, prop_path: Any, wide_on_table: bool = False
                  ) -> tuple[Any, Target | None, Spec]:
    """(chain, None, spec) for a ReLU chain, (None, target, spec) for any other network the bound
    table lowers; InputError (one line) when neither reads it or the sizes of network and
    property disagree. ``wide_on_table``: a network with more inputs than the general search
    splits (``general.INPUT_SPLIT_MAX``) comes back as its bound-table target whether it is a
    chain or not, the target ``chain_target`` would give a chain (the caller searches it on the
    table with CROWN): the file is read once and the chain's exact decoding, which that search
    never uses, is skipped (about 2 s of a mnistfc instance's start-up)."""
    from .general import INPUT_SPLIT_MAX
    from .network import InputError, load_graph, load_net, load_spec

    spec = load_spec(prop_path)
    net, t = None, None
    if wide_on_table:
        graph = load_graph(str(net_path))
        ex = GraphExec(graph)
        if ex.n_in > INPUT_SPLIT_MAX:
            try:
                t = Target(graph, ex, bg=chain_graph(net_path, graph))
            except (Unsupported, ValueError):
                t = None  # (the reader below gives its one-line refusal)
    if t is not None:
        n_in, n_out = t.ex.n_in, t.ex.n_out
    else:
        try:
            net = load_net(net_path)
            n_in, n_out = net.n_in, net.n_out
        except InputError as e:  # not a ReLU chain
            net, t = None, load_target(str(net_path), e)
            n_in, n_out = t.ex.n_in, t.ex.n_out
    if spec.n_in != n_in or spec.n_out != n_out:
        raise InputError(f"{prop_path}: property has {spec.n_in} inputs/{spec.n_out} outputs, "
                         f"network {n_in}/{n_out}")
    return net, t, spec


def bounder(t: Target) -> Callable[[Region, np.ndarray, np.ndarray], Callable[..., np.ndarray]]:
    """``general.Bounder`` over the target's fast engine: sound lower bounds of C·y - d per box."""
    if t.net is not None:
        net = t.net

        def make(region: Region, C: np.ndarray, d: np.ndarray):
            combos = [_combos(len(dj)) for dj in region.disjuncts]
            steps, _ = objective_steps(net, region, combos)  # the same rows, in the same order
            layers = fast.prepare(steps)
            return lambda lo, hi: crown_bounds(layers, lo, hi)

        return make
    def make_table(region: Region, C: np.ndarray, d: np.ndarray):
        # C and d are sums of the property's decimals: the search may round them (its bounds are
        # only a guide); the checker recomputes each leaf from the exact property
        fg = fe.compiled(t.bg)
        return lambda lo, hi: fe.crown(fg, lo, hi, C=C)[0] - d

    return make_table


def output_bounds_box(t: Target, lo: tuple[Fraction, ...], hi: tuple[Fraction, ...],
                      method: str = "crown", exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Sound float bounds (n_out,) of every output over the exact box [lo, hi], computed by the
    checker's engine: the chain's ``fast_crown``, or the table's fast engine (``exact=False``, float64
    with outward charges) or exact engine (rationals, then rounded outward)."""
    n = t.ex.n_out
    if t.net is not None:
        C = np.concatenate([np.eye(n), -np.eye(n)])
        layers = fast.prepare(_with_rows(t.net, C))
        flo, fhi = fast.outward(list(lo), list(hi))
        lb = crown_bounds(layers, np.array([flo]), np.array([fhi]))[0]
        return lb[:n], -lb[n:]
    if exact:
        low, up = engine.ibp(t.bg, lo, hi) if method == "ibp" else engine.crown(t.bg, lo, hi)
        flow, fup = fast.outward(low, up)
        return np.array(flow), np.array(fup)
    flo, fhi = fe.boxes([lo], [hi])
    low, up = (fe.ibp if method == "ibp" else fe.crown)(fe.compiled(t.bg), flo, fhi)
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
    if t.net is not None:
        return low, up  # the chain engine takes no slopes here
    n = t.ex.n_out
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
        res = fe.crown(fg, np.repeat(flo, R, 0), np.repeat(fhi, R, 0), C=C,
                       slopes={k: (a[0], b[0]) for k, (a, b) in best.items()})[0]
        vals = np.diag(res)
    else:
        rows = [[Fraction(int(v)) for v in r] for r in C]
        exact_vals = [engine.crown(t.bg, lo, hi, C=[rows[r]], slopes=alpha.slopes_for_row(best, r))[0][0]
                      for r in range(C.shape[0])]
        vals = np.array(fast.outward(exact_vals, exact_vals)[0])
    return np.maximum(low, vals[:n]), np.minimum(up, -vals[n:])


def _with_rows(net: Net, C: np.ndarray) -> tuple:
    """The chain with its last affine step composed with the rows C (exactly)."""
    from ..certificates.network import Affine

    last = net.steps[-1]
    Cq = [[Fraction(float(v)) for v in r] for r in C]
    M = [[sum((a * m for a, m in zip(r, col) if a), Fraction(0)) for col in zip(*last.M)] for r in Cq]
    c = [sum((a * v for a, v in zip(r, last.c) if a), Fraction(0)) for r in Cq]
    return (*net.steps[:-1], Affine(M, c))


def alpha_leaf(t: Target, lo: np.ndarray, hi: np.ndarray, C: np.ndarray, d: np.ndarray,
               steps: int = 30) -> tuple[np.ndarray, Callable[[int, int], list[list[Any]]]] | None:
    """α-CROWN on B float boxes (B, n) for the objective rows C·y - d: per box and row the fast
    engine's bound with that row's optimised slopes (B, R), and a function (b, r) -> the slopes
    as leaf-proof entries; None when the graph is too large for the dense float back-substitution."""
    from ..certificates.fast_functions import FAST
    from . import alpha

    if t.net is not None or alpha.dense_size(t.bg) > alpha.MAX_DENSE:
        return None
    B, R = lo.shape[0], C.shape[0]
    if B * R * t.bg.n_vars > alpha.MAX_DENSE or any(n.kind == "fn" and n.fn not in FAST for n in t.bg.nodes):
        return None
    fg = fe.compiled(t.bg)
    bs = alpha.Backsub.from_fast(t.bg, fg, fe.forward(fg, lo, hi, "crown"), FAST)
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
    res = fe.crown(fg, np.repeat(lo, R, 0), np.repeat(hi, R, 0), C=C, slopes=q)[0].reshape(B, R, R)
    lb = np.einsum("brr->br", res) - d
    return lb, lambda b, r: alpha.slope_entries(bs, best, r, b)


def alpha_leaf_fn(t: Target) -> Callable[..., Any] | None:
    """``general.AlphaLeaf`` for this target (None for ReLU chains: their search has its own)."""
    if t.net is not None:
        return None
    return lambda lo, hi, C, d: alpha_leaf(t, lo, hi, C, d)


def engine_name(t: Target, exact: bool = False) -> str:
    if t.net is not None:
        return "certificates.fast_crown (ReLU chain, float64 rounded outward)"
    if exact:
        return "certificates.engine (bound table, exact rationals)"
    return "certificates.fast_engine (bound table, float64 rounded outward)"


def network_id(t: Target) -> str:
    return fingerprint(t.net) if t.net is not None else graph_fingerprint(t.bg)


def check(cert: dict[str, Any], t: Target, spec: Spec) -> Verdict:
    """The trusted checker's verdict on a certificate for this target and property."""
    return check_vnn(cert, t.net if t.net is not None else t.bg, spec)


def confirmer(t: Target, spec: Spec) -> Callable[[list[Fraction]], bool]:
    """Whether x is a counterexample: for chains the checker's exact evaluation; for graphs the
    fast engine's float64 enclosure of the outputs at x first (sound, milliseconds), and the
    checker's exact test (a vnn-sat certificate it accepts: seconds to minutes on a ResNet) only
    when that enclosure cannot decide. This is the search's filter, not the verdict: the caller
    checks the final certificate exactly (and a rejected one is reported as such)."""
    if t.net is not None:
        return lambda x: attack.confirm(t.net, spec, x)

    def confirm(x: list[Fraction]) -> bool:
        low, up = output_bounds_box(t, tuple(x), tuple(x), "ibp")
        decided = float_sat(spec, x, low, up)
        return check(sat_cert(t, spec, x), t, spec).ok if decided is None else decided

    return confirm


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
