"""``rules.WANTS_VJP``: a VJP asked for some inputs' cotangents only returns exactly the cotangents
the full (proved) VJP returns for those inputs and None for the others; the counterexample
search's executor (constant weights) gets the same input gradients as with the full VJP."""

import numpy as np
import pytest
import torch

from torchlean.runtime.rules import RULES, WANTS_VJP
from torchlean.spec import Graph, Node, Value
from torchlean.verify.executor import GraphExec


def _same(a, b):
    assert a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("shapes", [((5, 7), (7, 3)), ((2, 5, 7), (7, 3)), ((4, 6), (6, 6))])
def test_matmul_want(shapes):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])
    for bt in (b, np.asfortranarray(b)):  # (the column-major branch too)
        out = np.matmul(a, bt)
        g = rng.normal(size=out.shape)
        ga, gb = RULES["matmul"].vjp(np, g, out, a, bt)
        only_a = RULES["matmul"].vjp(np, g, out, a, bt, want=(True, False))
        only_b = RULES["matmul"].vjp(np, g, out, a, bt, want=(False, True))
        _same(only_a[0], ga)
        _same(only_b[1], gb)
        assert only_a[1] is None and only_b[0] is None


@pytest.mark.parametrize("cfg", [dict(), dict(stride=(2, 1), padding=(1, 2)),
                                 dict(dilation=(2, 2), padding=(2, 2)), dict(groups=2, stride=(2, 2))])
def test_conv2d_want_matches_full_and_torch(cfg):
    rng = np.random.default_rng(1)
    groups = cfg.get("groups", 1)
    x, w = rng.normal(size=(2, 4, 9, 8)), rng.normal(size=(6, 4 // groups, 3, 2))
    out = RULES["conv2d"].forward(np, x, w, **cfg)
    g = rng.normal(size=out.shape)
    gx, gw = RULES["conv2d"].vjp(np, g, out, x, w, **cfg)
    gx_only, none = RULES["conv2d"].vjp(np, g, out, x, w, want=(True, False), **cfg)
    assert none is None
    _same(gx_only, gx)
    tx = torch.tensor(x, requires_grad=True)
    y = torch.nn.functional.conv2d(tx, torch.tensor(w), stride=cfg.get("stride", 1), groups=groups,
                                   padding=cfg.get("padding", 0), dilation=cfg.get("dilation", 1))
    y.backward(torch.tensor(g))
    np.testing.assert_allclose(gx_only, tx.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_executor_gradient_unchanged():
    """The executor's input gradient with the partial VJPs equals the one through the full VJPs
    (every rule called without ``want``) and torch's, on a conv + matmul graph."""
    rng = np.random.default_rng(2)
    consts = {"w": rng.normal(size=(3, 1, 3, 3)), "W": rng.normal(size=(3 * 4 * 4, 5))}
    nodes = [Node("conv2d", ["x", "w"], "c", {"padding": (1, 1), "stride": (2, 2)}), Node("relu", ["c"], "r"),
             Node("flatten", ["r"], "f", {"start_dim": 1}), Node("matmul", ["f", "W"], "y")]
    g = Graph([Value("x", (1, 1, 8, 8), "float64")], consts, nodes, ["y"]).check()
    ex = GraphExec(g)
    x = rng.normal(size=(7, 64))
    G = rng.normal(size=(7, 5))
    y, gr = ex.value_and_grad(x, lambda _: G)
    saved = {k: RULES[k] for k in WANTS_VJP}
    try:  # the full VJPs: drop the keyword
        import dataclasses

        for k, r in saved.items():
            RULES[k] = dataclasses.replace(r, vjp=lambda *a, _f=r.vjp, want=None, **kw: _f(*a, **kw))
        y2, gr2 = ex.value_and_grad(x, lambda _: G)
    finally:
        RULES.update(saved)
    _same(y, y2)
    _same(gr, gr2)
    tx = torch.tensor(x.reshape(7, 1, 8, 8), requires_grad=True)
    c = torch.relu(torch.nn.functional.conv2d(tx, torch.tensor(consts["w"]), stride=2, padding=1))
    (c.flatten(1) @ torch.tensor(consts["W"]) * torch.tensor(G)).sum().backward()
    np.testing.assert_allclose(gr, tx.grad.numpy().reshape(7, 64), rtol=1e-10, atol=1e-10)
