"""Issue 17: compositional model proofs. The chain-rule check (certificates/tape.py) against the
runtime's own backward, its mutations, node-case keys and deduplication, and a small CNN whose
claim is fully checked (no solver trust)."""

import copy
import json

import pytest

import torchlean  # noqa: F401
from torchlean import nn
from torchlean.certificates import check
from torchlean.proofs.artifacts import check_one
from torchlean.proofs.compose import model_obligations, trace
from torchlean.proofs.obligation import SOURCES


class Residual(nn.Module):
    """x feeds two uses (a residual): its cotangent is a sum of two atoms."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        return x + self.lin(x).relu()


def _cert(build=Residual, shape=(1, 2)):
    graph, tr, _ = trace(build, shape)
    return {"kind": "composition", "graph": graph, "trace": tr}


def test_runtime_backward_composes_by_the_chain_rule():
    cert = _cert()
    v = check(cert)
    assert v.ok, v.reason
    # the input is used twice (residual add and the linear layer): two atoms in its gradient
    assert len(cert["trace"]["grads"]["0"]) == 2
    assert check(json.loads(json.dumps(cert))).ok  # JSON round trip


@pytest.mark.parametrize("mutate", [
    lambda c: c["trace"]["calls"][0][1].pop(),                       # a use dropped from a cotangent
    lambda c: c["trace"]["calls"][-1][1].append([0, 0]),             # an extra term
    lambda c: c["trace"]["calls"].pop(),                             # a VJP never run
    lambda c: c["trace"]["calls"].append(copy.deepcopy(c["trace"]["calls"][0])),  # run twice
    lambda c: c["trace"]["grads"]["0"].pop(),                        # a leaf misses a use
    lambda c: c["trace"]["grads"].__setitem__("99", []),             # a gradient for a non-leaf
    lambda c: c["graph"]["nodes"][0]["inputs"].__setitem__(0, c["graph"]["root"]),  # used before defined
    lambda c: c["graph"]["nodes"].reverse(),                         # not in dependency order
    lambda c: c["graph"]["leaves"].append(c["graph"]["root"]),       # a leaf defined twice
])
def test_every_mutation_of_the_composition_is_rejected(mutate):
    cert = _cert()
    mutate(cert)
    v = check(cert)
    assert not v.ok and v.reason


def test_a_runtime_that_forgets_a_use_is_rejected(monkeypatch):
    """The accumulation of the runtime itself, broken: the second use of a value overwrites the
    first instead of adding to it. The trace records it and the checker refuses it."""
    from torchlean.runtime import autograd as ag

    monkeypatch.setattr(ag, "_accumulate", lambda table, key, g: table.__setitem__(key, g))
    v = check(_cert())
    assert not v.ok and "is not the sum over its uses" in v.reason


def test_node_cases_are_keyed_by_shape_class_and_deduplicated():
    from torchlean.proofs.cli import collect
    from torchlean.proofs.verified import verified

    def mlp(width):
        return lambda: nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, 1))

    try:
        verified(mlp(3), name="dedup_a", input_shape=(1, 2))
        verified(mlp(3), name="dedup_b", input_shape=(1, 2))
        verified(mlp(5), name="dedup_c", input_shape=(1, 2))
        obs = collect(None, ["model.dedup_", "autograd.tanh.n", "autograd.matmul.n"])
        names = [o.name for o in obs]
        assert {"model.dedup_a", "model.dedup_b", "model.dedup_c"} <= set(names)
        # tanh is elementwise: one scalar case for every width; matmul: one per shape class
        assert sum(n.startswith("autograd.tanh.n") for n in names) == 1
        a = next(o for o in obs if o.name == "model.dedup_a").data["requires"]
        b = next(o for o in obs if o.name == "model.dedup_b").data["requires"]
        c = next(o for o in obs if o.name == "model.dedup_c").data["requires"]
        assert a == b and a != c and set(a) & set(c)  # shared where the cases agree
    finally:
        for k in ("a", "b", "c"):
            SOURCES.pop(f"verified.model.dedup_{k}", None)


@pytest.mark.solver
def test_small_cnn_is_fully_checked(tmp_path):
    """Conv2d, ReLU, MaxPool2d, Linear: every node obligation checked, the chain rule checked."""
    from torchlean.proofs.discharge import discharge

    def cnn():
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2))

    obs = list(model_obligations("cnn", cnn, (1, 1, 4, 4)))
    reports = discharge(obs, tmp_path, solver="z3", timeout=30, progress=False)
    assert all(r.status == "proved" for r in reports), [(r.name, r.status, r.message) for r in reports]
    o = check_one(tmp_path, obs[0])
    assert o.status == "checked" and "chain rule over" in o.detail, o.detail
    # the claim names both obligations of every node: one dropped from it is refused
    model = obs[0]
    dropped = dict(model.data,
                   requires=[n for n in model.data["requires"] if not n.startswith("forward.relu")])
    from torchlean.proofs.obligation import Obligation

    o = check_one(tmp_path, Obligation(model.kind, model.subject, model.name, model.smtlib, model.statement,
                                       dropped))
    assert o.status in ("rejected", "stale")
    from torchlean.proofs.artifacts import check_composition

    o = check_composition(tmp_path, Obligation(model.kind, model.subject, model.name, model.smtlib,
                                               model.statement, dropped))
    assert o.status == "rejected" and "no forward obligation" in o.detail, o.detail
    # a node artifact gone: the model's claim is no longer checked (conv2d's VJP rests on its
    # class's generic obligation, issue 17; max_pool2d keeps a fixed-shape one)
    for prefix in ("autograd.conv2d.g", "autograd.max_pool2d.n"):
        path = next(tmp_path.glob(prefix + "*.json"))
        saved = path.read_bytes()
        path.unlink()
        o = check_one(tmp_path, obs[0])
        assert o.status == "rejected" and prefix in o.detail and "missing" in o.detail, o.detail
        path.write_bytes(saved)


def _vjp_matmul_wrong(xp, g, out, a, b):  # forgets the transpose of b
    return (g @ b, xp.swapaxes(a, -1, -2) @ g)


def _vjp_sum_wrong(xp, g, out, x, axes=None, keepdims=False):  # broadcasts without re-inserting the axis
    return (xp.broadcast_to(g, x.shape) * 2,)


def _vjp_softmax_wrong(xp, g, out, x, axis=-1):  # drops the <g, s> term
    return (out * g,)


@pytest.mark.solver
@pytest.mark.parametrize("prim, vjp, shapes, attrs", [
    ("matmul", _vjp_matmul_wrong, [[2, 2], [2, 2]], {}),
    ("sum", _vjp_sum_wrong, [[2, 2]], {"axes": 1, "keepdims": True}),
    ("softmax", _vjp_softmax_wrong, [[1, 2]], {"axis": -1}),
])
def test_broken_vjp_of_each_family_is_refuted_at_a_node_case(tmp_path, monkeypatch, prim, vjp, shapes, attrs):
    """A node case of a linear, a reduction and a normalisation primitive with a broken VJP:
    the solver refutes it with a counterexample, nothing is written."""
    import dataclasses

    from torchlean.proofs.compose import node_obligations
    from torchlean.proofs.discharge import discharge
    from torchlean.runtime.rules import RULES

    monkeypatch.setitem(RULES, prim, dataclasses.replace(RULES[prim], vjp=vjp))
    every = node_obligations(prim, f"{prim}.nbroken", {"shapes": shapes, "attrs": attrs, "ints": {},
                                                       "column_major": []})
    rows = [o for o in every if o.kind == "rows"]
    if rows:  # softmax's VJP is decided row by row (issue 18): the checker refuses the statement
        v = check(rows[0].data["statement"])
        assert not v.ok and "is not the element's VJP" in v.reason, v.reason
        return
    obs = [o for o in every if o.kind == "autograd"]
    (r,) = discharge(obs, tmp_path, solver="z3", timeout=10, progress=False)
    assert r.status == "refuted" and "counterexample" in r.message, (r.status, r.message)
    assert not list(tmp_path.glob("*.json"))


def _ln_vjp_no_mean(xp, g, out, x, w, b, normalized_ndim=1, eps=1e-5):  # drops the mean of g*w
    xc = x - x.mean(-1, keepdims=True)
    rstd = 1 / xp.sqrt((xc * xc).mean(-1, keepdims=True) + eps)
    xhat = xc * rstd
    gh = g * w
    return (rstd * (gh - xhat * (gh * xhat).mean(-1, keepdims=True)), (g * xhat).sum(0), g.sum(0))


def _ln_vjp_unbiased(xp, g, out, x, w, b, normalized_ndim=1, eps=1e-5):  # n - 1 in the variance
    n = x.shape[-1]
    xc = x - xp.sum(x, axis=-1, keepdims=True) / n
    rstd = 1 / xp.sqrt(xp.sum(xc * xc, axis=-1, keepdims=True) / (n - 1) + eps)
    xhat, gh = xc * rstd, g * w
    gx = rstd * (gh - xp.sum(gh, axis=-1, keepdims=True) / n
                 - xhat * xp.sum(gh * xhat, axis=-1, keepdims=True) / n)
    return gx, xp.sum(g * xhat, axis=0), xp.sum(g, axis=0)


@pytest.mark.parametrize("vjp", [_ln_vjp_no_mean, _ln_vjp_unbiased])
def test_wrong_layer_norm_vjp_fails_the_check(monkeypatch, vjp):
    """layer_norm at 4 features, its VJP decided row by row (``rows``, issue 18): the right VJP's
    statement is accepted; a wrong VJP's is refused by the checker (the element claim it rests on
    does not depend on the runtime's rule, so it is unchanged)."""
    import dataclasses

    from torchlean.proofs.autograd import exact_floats
    from torchlean.proofs.compose import node_obligations
    from torchlean.runtime.rules import RULES

    fields = {"shapes": [[1, 4], [4], [4]], "attrs": {"normalized_ndim": 1, "eps": 1e-5}, "ints": {},
              "column_major": []}

    def obligations():
        with exact_floats():
            return {o.kind: o for o in node_obligations("layer_norm", "layer_norm.nt", fields)}

    right = obligations()
    assert check(right["rows"].data["statement"]).ok
    monkeypatch.setitem(RULES, "layer_norm", dataclasses.replace(RULES["layer_norm"], vjp=vjp))
    wrong = obligations()
    assert wrong["autograd"].smtlib == right["autograd"].smtlib  # the element claim
    v = check(wrong["rows"].data["statement"])
    assert not v.ok and "is not the element's VJP" in v.reason, v.reason


@pytest.mark.solver
@pytest.mark.slow
def test_layer_norm_block_and_transformer_are_fully_checked(tmp_path):
    """The issue's targets: LayerNorm(4) + Linear(4, 2) + GELU, and TransformerEncoderLayer(8, 2,
    16) (its two LayerNorms over 8 features share one node case), fully checked (no solver trust)."""
    from torchlean.proofs.discharge import discharge

    def block():
        return nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 2), nn.GELU())

    obs = list(model_obligations("ln_block", block, (1, 4)))
    def encoder():
        return nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)

    obs += [o for o in model_obligations("encoder", encoder, (1, 2, 8))
            if o.name not in {p.name for p in obs}]
    reports = discharge(obs, tmp_path, solver="z3", timeout=60, progress=False)
    assert all(r.status == "proved" for r in reports), [(r.name, r.status, r.message) for r in reports]
    for name in ("model.ln_block", "model.encoder"):
        o = check_one(tmp_path, next(ob for ob in obs if ob.name == name))
        assert o.status == "checked", (name, o.detail)


def test_exact_gelu_model_is_fully_checked(tmp_path):
    """Linear + GELU('none') (torch's default, composed around the erf primitive) + Linear: every
    node obligation, erf's with the shared 1/sqrt(pi) constant included, is checked."""
    from torchlean.proofs.discharge import discharge

    def net():
        return nn.Sequential(nn.Linear(2, 2), nn.GELU("none"), nn.Linear(2, 1))

    obs = list(model_obligations("gelu_exact", net, (1, 2)))
    assert any(o.name.startswith("autograd.erf") for o in obs)
    reports = discharge(obs, tmp_path, solver="z3", timeout=60, progress=False)
    assert all(r.status == "proved" for r in reports), [(r.name, r.status, r.message) for r in reports]
    o = check_one(tmp_path, obs[0])
    assert o.status == "checked" and "chain rule over" in o.detail, o.detail
