"""Audit audit58: complete verification on general graphs: split trees over non-ReLU kinks
(leaky_relu, abs), supplied slopes of sigmoid / tanh / leaky_relu / abs / max elements, split
multipliers, shared and per-target slopes, on a residual DAG where a split element feeds several
paths, replayed by the trusted checker in both modes.

No hole was found (TRUST_BOUNDARIES.md, "Audit audit58"). These tests hold the replay to
independent references:
- the test network (torch, exported with ``torch.onnx``) is evaluated here in float64 from its
  bound graph, and that evaluation is checked against onnxruntime and torch first;
- every leaf bound the replay recomputes (the real ``check_vnn`` path: walker, priors, clamps,
  slopes, multipliers, shared slopes, fast chunks) must lie below the sampled minimum of the
  objective over the leaf's region (its box and the halfspaces of its split path, evaluated at
  each sample), exact and fast;
- a false property (a sampled point, confirmed by the checker's exact ``vnn-sat`` test, meets the
  unsafe set) is never accepted as unsat, whatever tree and extras a certificate supplies; a true
  one is (control);
- malformed trees and extras are refused in both modes.
"""

from __future__ import annotations

import copy
import random
from fractions import Fraction as Q

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from torchlean.certificates import bounds, fast_vnn, graph_vnn  # noqa: E402
from torchlean.certificates.bounds import check_vnn, walk  # noqa: E402
from torchlean.certificates.lower import fingerprint, lower  # noqa: E402
from torchlean.certificates.property import Atom, Region, Spec  # noqa: E402
from torchlean.verify.network import load_graph  # noqa: E402

MODES = ("exact", "fast")


class _Net(torch.nn.Module):
    """leaky_relu -> (abs, sigmoid, tanh branches) + residual -> relu -> 2x1 max pool -> linear:
    the leaky element h_i feeds four paths (abs, sigmoid, tanh and the residual sum)."""

    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1, self.l2 = torch.nn.Linear(3, 6), torch.nn.Linear(6, 6)
        self.l3, self.l4 = torch.nn.Linear(6, 6), torch.nn.Linear(6, 2)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.8

    def forward(self, x):
        h = torch.nn.functional.leaky_relu(self.l1(x), 0.1)
        a = torch.abs(self.l2(h))
        b = torch.sigmoid(self.l3(h)) * 2 + torch.tanh(self.l3(h))
        z = a + b + h
        m = torch.nn.functional.max_pool2d(torch.relu(z).reshape(1, 1, 2, 3), (2, 1)).reshape(1, 3)
        return self.l4(torch.cat([m, z[:, :3]], 1))


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    path = tmp_path_factory.mktemp("a58") / "net.onnx"
    model = _Net(0).eval()
    torch.onnx.export(model, torch.zeros(1, 3), str(path), input_names=["x"], output_names=["y"],
                      dynamo=False)
    bg = lower(load_graph(path).to_dict())
    return path, model, bg


def feval(bg, X: np.ndarray) -> np.ndarray:
    """float64 values of every variable of the bound graph at the points X (N, n_in)."""
    V = np.zeros((X.shape[0], bg.n_vars))
    V[:, : bg.n_in] = X
    fns = {"relu": lambda z: np.maximum(z, 0), "abs": np.abs, "tanh": np.tanh,
           "sigmoid": lambda z: 1 / (1 + np.exp(-z))}
    for n in bg.nodes[1:]:
        for i in range(n.size):
            if n.kind == "fn" and n.fn == "leaky_relu":
                z = _form(n.args[i], V)
                y = np.where(z > 0, z, float(n.attrs["slope"]) * z)
            elif n.kind == "fn":
                y = fns[n.fn](_form(n.args[i], V))
            elif n.kind == "max":
                y = np.max([_form(a, V) for a in n.args[i]], 0)
            else:
                assert n.kind == "lin", n.kind
                y = _form(n.args[i], V)
            V[:, n.offset + i] = y
    return V


def _form(a, V: np.ndarray) -> np.ndarray:
    out = np.full(V.shape[0], float(a.c))
    for v, q in a.t.items():
        out += float(q) * V[:, v]
    return out


def test_reference_evaluation_matches_onnxruntime_and_torch(net):
    """The float64 evaluation of the bound graph used below is the network: onnxruntime's and
    torch's outputs agree with it (float32 runs: to 1e-5), and the graph has the node kinds this
    audit is about (leaky_relu, abs, sigmoid, tanh, relu, max)."""
    path, model, bg = net
    kinds = {n.fn if n.kind == "fn" else n.kind for n in bg.nodes}
    assert {"leaky_relu", "abs", "sigmoid", "tanh", "relu", "max"} <= kinds
    X = np.random.default_rng(0).uniform(-3, 3, (50, 3))
    V = feval(bg, X)
    ours = np.stack([_form(f, V) for f in bg.outputs], 1)
    sess = ort.InferenceSession(str(path))
    theirs = np.concatenate([sess.run(None, {"x": x[None].astype(np.float32)})[0] for x in X])
    with torch.no_grad():
        tt = np.concatenate([model(torch.tensor(x[None], dtype=torch.float32)).numpy() for x in X])
    assert np.allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    assert np.allclose(ours, tt, atol=1e-5, rtol=1e-5)


# -- random split trees with extras ---------------------------------------------------------------

def _splittable(bg):
    return [(k, i) for k, n in enumerate(bg.nodes) if n.kind == "fn" and n.fn in graph_vnn.SPLITTABLE
            for i in range(n.size)]


def _rq(rng: random.Random) -> str | None:
    c = rng.random()
    if c < 0.15:
        return None
    if c < 0.3:
        return str(rng.choice([0, 1, -1, 10**6, -(10**6), 2]))
    return str(Q(rng.gauss(0, 2)).limit_denominator(1000))


def _extras(bg, rng: random.Random, path) -> dict | None:
    """Random slopes (fn: any rationals; max: a member or null) and multipliers (>= 0, on the
    path's split elements)."""
    sl, share = [], rng.choice([0.0, 0.1, 0.4])  # (no slopes: the tightest bounds, most telling)
    for k, n in enumerate(bg.nodes):
        if n.kind in ("fn", "max"):
            for i in range(n.size):
                if rng.random() < share:
                    sl.append([k, i, rng.choice([None, 0, 1]), None] if n.kind == "max"
                              else [k, i, _rq(rng), _rq(rng)])
    ex: dict = {"slopes": sl} if sl else {}
    mult = [[k, i, str(Q(rng.random() * rng.choice([0.01, 1, 10])).limit_denominator(100))]
            for (k, i) in path if rng.random() < 0.6]
    if mult:
        ex["mult"] = mult
    return ex or None


def _tree(bg, rng: random.Random, lo, hi, depth: int, path: frozenset, out: list) -> None:
    """Preorder: input splits (at the box's ends too) and splits of leaky_relu / abs / relu
    elements, whatever their interval (infeasible phases included)."""
    c = rng.random()
    if depth == 0 or c < 0.2:
        out.append(["leaf", []])
        return
    if c < 0.5:
        d = rng.randrange(len(lo))
        t = Q(rng.choice([0, 1, round(rng.random(), 3)])).limit_denominator(1000)
        v = min(max(Q(float(lo[d] + (hi[d] - lo[d]) * t)), lo[d]), hi[d])
        out.append(["split", d, f"{v.numerator}/{v.denominator}"])
        _tree(bg, rng, lo, hi[:d] + [v] + hi[d + 1:], depth - 1, path, out)
        _tree(bg, rng, lo[:d] + [v] + lo[d + 1:], hi, depth - 1, path, out)
    else:
        k, i = rng.choice([e for e in _splittable(bg) if e not in path])
        out.append(["relu", k, i])
        for _ in range(2):
            _tree(bg, rng, lo, hi, depth - 1, path | {(k, i)}, out)


def _shared(bg, rng: random.Random) -> list:
    """Random region slopes of non-relu fn elements, some per target (a later fn or max node)."""
    es = []
    for k, n in enumerate(bg.nodes):
        if n.kind == "fn" and n.fn != "relu":
            for i in range(n.size):
                if rng.random() < 0.3:
                    e = [k, i, _rq(rng), _rq(rng)]
                    later = [j for j in range(k + 1, len(bg.nodes)) if bg.nodes[j].kind in ("fn", "max")]
                    if later and rng.random() < 0.3:
                        e.append(rng.choice(later))
                    es.append(e)
    return es


def _instance(bg, seed: int, n: int = 6000):
    """A random box, objective a·y, split tree with extras, and per leaf the sampled minimum of
    a·y over the leaf's region (None: no sample fell in it) and a minimising sample."""
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    w = rng.choice([0.05, 0.2, 0.5, 1])
    c = [rng.gauss(0, 1) for _ in range(bg.n_in)]
    lo = [Q(round(x - w, 3)).limit_denominator(1000) for x in c]
    hi = [Q(round(x + w, 3)).limit_denominator(1000) for x in c]
    a = [Q(rng.choice([-1, 1])), Q(rng.choice([-1, 0, 1]))]
    tree: list = []
    _tree(bg, rng, lo, hi, rng.choice([1, 2, 3]), frozenset(), tree)
    items = [it for it in walk(tree, lo, hi, graph_vnn.split_widths(bg)) if it[2][0] is not None]
    X = nrng.uniform([float(v) for v in lo], [float(v) for v in hi], (n, bg.n_in))
    V = feval(bg, X)
    obj = sum(float(q) * _form(bg.outputs[j], V) for j, q in enumerate(a) if q)
    mins = []
    for llo, lhi, (_, _, phases, _) in items:
        m = np.all((X >= [float(v) for v in llo]) & (X <= [float(v) for v in lhi]), 1)
        for (k, i), p in phases.items():
            z = _form(bg.nodes[k].args[i], V)
            m &= (z >= 0) if p else (z <= 0)
        mins.append((float(obj[m].min()), X[m][np.argmin(obj[m])]) if m.any() else None)
    leaves = [n for n in tree if n[0] == "leaf"]
    for node, (_, _, (_, _, phases, _)) in zip(leaves, items):
        ex = _extras(bg, rng, phases)
        node[1] = [[0, "1/1000000000000", *([ex] if ex else [])]]
    entry: object = tree
    if rng.random() < 0.5 and (sh := _shared(bg, rng)):
        entry = {"per_disjunct": [tree], "arg_slopes": sh}
    method = rng.choice(["crown", "crown", "ibp"])
    return lo, hi, a, tree, entry, method, mins


def _cert(bg, spec: Spec, entry, method: str) -> dict:
    return {"kind": "vnn-unsat", "network": fingerprint(bg), "property": spec.digest(),
            "method": method, "regions": [entry]}


def _spec(bg, lo, hi, a, b: Q) -> Spec:
    """The unsafe set a·y <= b over the box (a proof bounds a·y - b below)."""
    return Spec(bg.n_in, bg.n_out, (Region(tuple(lo), tuple(hi), ((Atom(tuple(a), b, False),),)),))


def _recorded_bounds(monkeypatch, bg, spec: Spec, cert: dict, mode: str) -> dict[int, float]:
    """Every leaf's recomputed lower bound of its proof's row, through the real replay (walker,
    priors, clamps, slopes, multipliers, fast chunks); only the final comparison with the claim
    is replaced by a recorder."""
    got: dict[int, float] = {}

    def record(proofs, region, index, lower_f, where, read):
        for j, p, combo in bounds.leaf_proofs(proofs, region, where):
            ex = read(p, where) if len(p) == 3 else None
            got[int(where.split("leaf ")[1].split(":")[0])] = float(lower_f(index[j][combo], ex))

    with monkeypatch.context() as m:
        m.setattr(graph_vnn, "check_leaf_proofs", record)
        m.setattr(fast_vnn, "check_leaf_proofs", record)
        v = check_vnn(cert, bg, spec, mode=mode)
    assert v.ok, v.reason
    return got


@pytest.mark.parametrize("mode", MODES)
def test_leaf_bounds_are_below_the_sampled_minimum(net, monkeypatch, mode):
    """Each leaf's recomputed bound of a·y - b is at most the sampled minimum over its region
    (box and split halfspaces): a bound above it would certify a false claim. Trees split leaky
    and abs elements (feeding four paths) and inputs; proofs supply slopes of every fn and max
    element (huge and negative ones too) and multipliers; regions supply shared / per-target
    slopes. The bounds are not vacuous: many are finite and some within 10% of the minimum."""
    _, _, bg = net
    seen = finite = close = 0
    for seed in range(32):
        lo, hi, a, tree, entry, method, mins = _instance(bg, 100 + seed)
        spec = _spec(bg, lo, hi, a, Q(0))
        got = _recorded_bounds(monkeypatch, bg, spec, _cert(bg, spec, entry, method), mode)
        assert sorted(got) == list(range(len(mins)))
        for i, lb in got.items():
            if mins[i] is None:
                continue
            true = mins[i][0]
            seen += 1
            finite += np.isfinite(lb)
            close += lb >= true - 0.1 * (1 + abs(true))
            assert lb <= true + 1e-9 * (1 + abs(true)), (seed, i, lb, true, entry)
    assert seen >= 25 and finite >= 20 and close >= 3, (seen, finite, close)


@pytest.mark.parametrize("mode", MODES)
def test_a_false_property_is_never_unsat(net, mode):
    """b just above a sampled value of a·y: the property is false (the sample is a counterexample,
    accepted by the checker's exact vnn-sat test), so no certificate may pass as unsat, whatever
    its tree and extras. Control: the same certificates on b = min - 20 (true) pass at least once
    with default extras, so the refusals are not the replay refusing everything."""
    _, _, bg = net
    passed = 0
    for seed in range(10):
        lo, hi, a, tree, entry, method, mins = _instance(bg, 300 + seed)
        best = min((m for m in mins if m is not None), key=lambda m: m[0])
        b = Q(best[0]) + Q(1, 10**6)
        spec = _spec(bg, lo, hi, a, b)
        sat = {"kind": "vnn-sat", "network": fingerprint(bg), "property": spec.digest(),
               "x": [str(Q(float(v))) for v in best[1]]}
        assert check_vnn(sat, bg, spec).ok  # (exact: the point is a counterexample)
        v = check_vnn(_cert(bg, spec, entry, method), bg, spec, mode=mode)
        assert not v.ok, (seed, v.reason)
        plain = copy.deepcopy(tree)
        for node in plain:
            if node[0] == "leaf":
                node[1] = [[0, "1/1000000000000"]]
        spec = _spec(bg, lo, hi, a, Q(best[0]) - 20)
        passed += check_vnn(_cert(bg, spec, plain, "crown"), bg, spec, mode=mode).ok
    assert passed >= 3


# -- malformed trees and extras ---------------------------------------------------------------------

def _base(bg):
    """An accepted certificate (true property): a leaky split, under it an abs split, with
    multipliers and slopes; returns (spec, cert)."""
    k_leaky = next(k for k, n in enumerate(bg.nodes) if n.fn == "leaky_relu")
    k_abs = next(k for k, n in enumerate(bg.nodes) if n.fn == "abs")
    lo, hi = [Q(-1, 10)] * 3, [Q(1, 10)] * 3
    X = np.random.default_rng(1).uniform(-0.1, 0.1, (4000, 3))
    V = feval(bg, X)
    b = Q(float(_form(bg.outputs[0], V).min())) - 5
    spec = _spec(bg, lo, hi, [Q(1), Q(0)], b)
    leaf = lambda ex=None: ["leaf", [[0, "1/1000000", *([ex] if ex else [])]]]  # noqa: E731
    tree = ["relu", k_leaky, 0], leaf({"mult": [[k_leaky, 0, "1/2"]]}), ["relu", k_abs, 1], \
        leaf({"slopes": [[k_abs, 1, "1/3", "-1/2"]], "mult": [[k_abs, 1, "1/4"], [k_leaky, 0, "1"]]}), \
        leaf()
    return spec, _cert(bg, spec, list(tree), "crown"), k_leaky, k_abs


@pytest.mark.parametrize("mode", MODES)
def test_malformed_trees_and_extras_are_refused(net, mode):
    _, _, bg = net
    spec, cert, k_leaky, k_abs = _base(bg)
    assert check_vnn(cert, bg, spec, mode=mode).ok
    k_sig = next(k for k, n in enumerate(bg.nodes) if n.fn == "sigmoid")
    k_max = next(k for k, n in enumerate(bg.nodes) if n.kind == "max")
    k_relu = next(k for k, n in enumerate(bg.nodes) if n.fn == "relu")

    def tree_of(f):
        c = copy.deepcopy(cert)
        f(c["regions"][0])
        return c

    def proof(c, leaf_no):
        return [n for n in c["regions"][0] if n[0] == "leaf"][leaf_no][1][0]

    bad = {
        "a child dropped": tree_of(lambda t: t.pop()),
        "an extra subtree": tree_of(lambda t: t.append(["leaf", [[0, "1/1000000"]]])),
        "an element split twice on a path": tree_of(lambda t: t.__setitem__(2, ["relu", k_leaky, 0])),
        "a sigmoid element split": tree_of(lambda t: t.__setitem__(2, ["relu", k_sig, 0])),
        "a max element split": tree_of(lambda t: t.__setitem__(2, ["relu", k_max, 0])),
        "an element past the node's size": tree_of(lambda t: t.__setitem__(2, ["relu", k_abs, 6])),
        "an input split outside the box": tree_of(lambda t: t.__setitem__(2, ["split", 0, "1/5"])),
    }
    for name, edit in {
        "a multiplier off the path": lambda p: p[2]["mult"].append([k_abs, 2, "1"]),
        "a negative multiplier": lambda p: p[2]["mult"].__setitem__(0, [k_abs, 1, "-1/4"]),
        "an element given twice": lambda p: p[2]["slopes"].append([k_abs, 1, "0", "0"]),
        "a max member past the group": lambda p: p[2]["slopes"].append([k_max, 0, 2, None]),
        "a max upper choice": lambda p: p[2]["slopes"].append([k_max, 0, 0, 0]),
        "a slope of an input element": lambda p: p[2]["slopes"].append([0, 0, "1", "1"]),
    }.items():
        c = copy.deepcopy(cert)
        edit(proof(c, 1))
        bad[name] = c
    for name, sh in {
        "a relu slope outside [0, 1]": [[k_relu, 0, "3/2", None]],
        "a relu upper slope": [[k_relu, 0, "1/2", "1"]],
        "a per-target slope after its target": [[k_abs, 0, "1", "1", k_leaky]],
        "a target that is not fn / mul / max": [[k_leaky, 0, "1", "1", 0]],
    }.items():
        c = copy.deepcopy(cert)
        c["regions"][0] = {"per_disjunct": [c["regions"][0]], "arg_slopes": sh}
        bad[name] = c
    for name, c in bad.items():
        v = check_vnn(c, bg, spec, mode=mode)
        assert not v.ok, (name, v.reason)
