"""conv2d's forward claim and batch_norm's claims decided on terms (issue 18): the ``terms`` and
``channels`` checkers and their obligations.

Checked here: the statements hold for the runtime's rules at several geometries and their terms,
evaluated, are what torch computes; broken rules (a wrong channel constant, a shifted window, a
dropped tap, padding read as 1, a parameter gradient summed over the wrong positions) are refused,
each also shown wrong against torch; tampered statements are refused; a rule wrong identically in
every element passes the statement and its one-element claim is refuted by the solver; the resnet
zoo proof is checked within the default budget (``solver``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from torchlean.certificates import check
from torchlean.proofs import terms
from torchlean.runtime.rules import RULES, Rule

CONV = [  # (x shape, w shape, attrs)
    ((1, 2, 5, 5), (3, 2, 3, 3), {"padding": (1, 1)}),
    ((2, 1, 6, 5), (2, 1, 3, 2), {"stride": (2, 1), "padding": (1, 0)}),
    ((1, 4, 5, 6), (4, 2, 2, 3), {"groups": 2, "dilation": (2, 1), "padding": (1, 1)}),
    ((1, 3, 4, 4), (2, 3, 1, 1), {}),
]
CONV_ATTRS = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}


def _conv_fields(xs, ws, a):
    return {"shapes": [list(xs), list(ws)], "attrs": {**CONV_ATTRS, **a}, "ints": {}, "column_major": []}


def _bn_fields(shape, eps=1e-5):
    c = [shape[1]]
    return {"shapes": [list(shape), c, c, c, c], "attrs": {"eps": eps}, "ints": {}, "column_major": []}


def _evaluate(st, values):
    """Every node's value, leaves from ``values`` (family -> numpy array): the terms' meaning."""
    ops = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "neg": lambda a: -a, "div": lambda a, b: a / b, "sqrt": math.sqrt}
    val = []
    for n in st["nodes"]:
        op, args = n[0], n[1:]
        if op == "leaf":
            val.append(values[args[0]][tuple(args[1:])] if args[0] in values else None)
        elif op == "c":
            val.append(float(Fraction(args[0])))
        else:
            val.append(ops[op](*(val[a] for a in args)) if all(val[a] is not None for a in args) else None)
    return val


@pytest.mark.parametrize("xs, ws, a", CONV)
def test_conv2d_forward_is_its_spec_as_terms(xs, ws, a):
    st = terms.forward_statement("conv2d", _conv_fields(xs, ws, a))
    v = check(st)
    assert v.ok, v.reason
    assert v.checked == len(st["equal"])


@pytest.mark.torch
@pytest.mark.parametrize("xs, ws, a", CONV)
def test_conv2d_terms_mean_what_torch_computes(xs, ws, a):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    st = terms.forward_statement("conv2d", _conv_fields(xs, ws, a))
    val = _evaluate(st, {"in0": x, "in1": w})
    a = {**CONV_ATTRS, **a}
    want = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), None, a["stride"], a["padding"],
                                      a["dilation"], a["groups"]).numpy()
    for side in (0, 1):  # the kernel's terms and the spec's
        got = np.array([val[p[side]] for p in st["equal"]]).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 3, 2, 2), (2, 2, 3), (2, 4)])
def test_batch_norm_claims_as_terms(shape):
    f = _bn_fields(shape)
    assert check(terms.forward_statement("batch_norm", f)).ok
    v = check(terms.channels_statement("batch_norm", f))
    assert v.ok, v.reason
    assert v.checked == 2 * int(np.prod(shape)) + 4 * shape[1]


def _bn_torch(torch, x, mean, var, w, b, g, eps=1e-5):
    ts = [torch.tensor(t, requires_grad=True) for t in (x, mean, var, w, b)]
    out = torch.nn.functional.batch_norm(ts[0], ts[1].detach(), ts[2].detach(), ts[3], ts[4], False, 0.0, eps)
    cs = (1, -1) + (1,) * (x.ndim - 2)  # the same function written out: gradients for the statistics
    ref = (ts[0] - ts[1].reshape(cs)) / torch.sqrt(ts[2].reshape(cs) + eps) * ts[3].reshape(cs) \
        + ts[4].reshape(cs)
    torch.testing.assert_close(out, ref)
    ref.backward(torch.tensor(g))
    return ref.detach().numpy(), [t.grad.numpy() for t in ts]


@pytest.mark.torch
def test_batch_norm_terms_mean_what_torch_computes():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    shape = (2, 3, 2, 2)
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    mean, w, b = rng.standard_normal((3, 3))
    var = rng.uniform(0.5, 2.0, 3)
    out, grads = _bn_torch(torch, x, mean, var, w, b, g)
    st = terms.channels_statement("batch_norm", _bn_fields(shape))
    val = _evaluate(st, {"in0": x, "in1": mean, "in2": var, "in3": w, "in4": b, "g": g})
    spec = np.array([val[t] for t in st["plane"]["spec"]]).reshape(shape)
    np.testing.assert_allclose(spec, out, atol=1e-12)
    for k, want in enumerate(grads):
        got = np.array([val[t] for t in st["plane"]["vjp"][k]]).reshape(want.shape)
        np.testing.assert_allclose(got, want, atol=1e-12)


# -- broken rules: each refused by the checker, and wrong against torch ---------------------------

CF, CV = RULES["conv2d"].forward, RULES["conv2d"].vjp
BF, BV = RULES["batch_norm"].forward, RULES["batch_norm"].vjp


def _shifted_window(xp, x, w, **a):
    """Output rows after the first read the window one row lower (an off-by-one window offset)."""
    out = CF(xp, x, w, **a).copy()
    out[:, :, 1:-1] = out[:, :, 2:].copy()
    return out


def _dropped_tap(xp, x, w, **a):
    """The first output row drops the kernel's last row of taps (an in-bounds tap taken as padding)."""
    out = CF(xp, x, w, **a).copy()
    w2 = w.copy()
    w2[:, :, -1] = 0
    out[:, :, 0] = CF(xp, x, w2, **a)[:, :, 0]
    return out


def _padding_read_as_one(xp, x, w, **a):
    """Padding taps read 1 instead of 0."""
    p = a.get("padding", (0, 0))
    ones = xp.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * p[0], x.shape[3] + 2 * p[1])) + 1
    ones[:, :, p[0]:p[0] + x.shape[2], p[1]:p[1] + x.shape[3]] = x
    return CF(xp, ones, w, **{**a, "padding": (0, 0)})


def _wrong_channel_mean(xp, x, mean, var, w, b, **a):
    """Channel 0 is centred with channel 1's running mean."""
    m = mean.copy()
    m[0] = mean[1]
    return BF(xp, x, m, var, w, b, **a)


def _gw_one_position_short(xp, g, out, x, mean, var, w, b, **a):
    """The weight's gradient sums over every position but the last."""
    gx, gm, gv, gw, gb = BV(xp, g, out, x, mean, var, w, b, **a)
    g2 = g.copy()
    g2.reshape(-1)[-1] = 0 * g2.reshape(-1)[-1]
    return gx, gm, gv, BV(xp, g2, out, x, mean, var, w, b, **a)[3], gb


def _gb_wrong_channel(xp, g, out, x, mean, var, w, b, **a):
    """The bias gradient of channel 0 is channel 1's."""
    gx, gm, gv, gw, gb = BV(xp, g, out, x, mean, var, w, b, **a)
    gb = gb.copy()
    if gb.shape[0] > 1:  # the one-element run has one channel
        gb[0] = gb[1]
    return gx, gm, gv, gw, gb


CONV_MUTANTS = [("shifted window", _shifted_window), ("dropped tap", _dropped_tap),
                ("padding read as 1", _padding_read_as_one)]
BN_MUTANTS = [("wrong channel constant", _wrong_channel_mean, BV, "forward"),
              ("gw one position short", BF, _gw_one_position_short, "channels"),
              ("gb wrong channel", BF, _gb_wrong_channel, "channels")]


@pytest.mark.parametrize("what, fwd", CONV_MUTANTS, ids=[m[0] for m in CONV_MUTANTS])
def test_a_broken_conv2d_kernel_is_refused(monkeypatch, what, fwd):
    monkeypatch.setitem(RULES, "conv2d", Rule("conv2d", fwd, CV))
    f = _conv_fields((1, 2, 5, 5), (3, 2, 3, 3), {"padding": (1, 1)})
    v = check(terms.forward_statement("conv2d", f))
    assert not v.ok and "differ as polynomials" in v.reason, v.reason


@pytest.mark.torch
@pytest.mark.parametrize("what, fwd", CONV_MUTANTS, ids=[m[0] for m in CONV_MUTANTS])
def test_each_broken_conv2d_kernel_is_wrong_in_numpy(what, fwd):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    a = {**CONV_ATTRS, "padding": (1, 1)}
    want = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding=1).numpy()
    np.testing.assert_allclose(CF(np, x, w, **a), want, atol=1e-12)
    assert not np.allclose(fwd(np, x, w, **a), want)


@pytest.mark.parametrize("what, fwd, vjp, kind", BN_MUTANTS, ids=[m[0] for m in BN_MUTANTS])
def test_a_broken_batch_norm_rule_is_refused(monkeypatch, what, fwd, vjp, kind):
    monkeypatch.setitem(RULES, "batch_norm", Rule("batch_norm", fwd, vjp))
    f = _bn_fields((2, 3, 2, 2))
    st = terms.forward_statement("batch_norm", f) if kind == "forward" else \
        terms.channels_statement("batch_norm", f)
    v = check(st)
    assert not v.ok, what


@pytest.mark.torch
@pytest.mark.parametrize("what, fwd, vjp, kind", BN_MUTANTS, ids=[m[0] for m in BN_MUTANTS])
def test_each_broken_batch_norm_rule_is_wrong_in_numpy(what, fwd, vjp, kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    shape = (2, 3, 2, 2)
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    mean, w, b = rng.standard_normal((3, 3))
    var = rng.uniform(0.5, 2.0, 3)
    out, grads = _bn_torch(torch, x, mean, var, w, b, g)
    a = {"eps": 1e-5}
    mine = fwd(np, x, mean, var, w, b, **a)
    got = vjp(np, g, mine, x, mean, var, w, b, **a)
    right = all(np.allclose(u, v) for u, v in zip(got, grads))
    assert not (np.allclose(mine, out) and right)
    assert all(np.allclose(u, v) for u, v in zip(BV(np, g, out, x, mean, var, w, b, **a), grads))


# -- tampered statements and the normal form --------------------------------------------------------

def _tampered(edit, kind="channels"):
    f = _bn_fields((2, 2, 2))
    st = terms.channels_statement("batch_norm", f) if kind == "channels" else \
        terms.forward_statement("conv2d", _conv_fields((1, 1, 3, 3), (1, 1, 2, 2), {"padding": (1, 1)}))
    edit(st)
    return check(st)


@pytest.mark.parametrize("edit", [
    lambda st: st["plane"]["spec"].__setitem__(0, st["plane"]["spec"][1]),
    lambda st: st["plane"]["vjp"][0].__setitem__(2, st["plane"]["vjp"][0][3]),
    lambda st: st["plane"]["vjp"][3].__setitem__(0, st["plane"]["vjp"][3][1]),  # weight grad, other channel
    lambda st: st.__setitem__("shape", [2, 2, 3]),
    lambda st: st.__setitem__("params", 3),
    lambda st: st["window"].__setitem__("spec", st["plane"]["spec"][-1]),  # plane leaves in the element
    lambda st: st["nodes"].append(["add", len(st["nodes"]), 0]),  # a cycle
], ids=["spec-entry", "vjp-entry", "param-channel", "shape", "params", "leaves", "cycle"])
def test_a_tampered_channels_statement_is_refused(edit):
    assert not _tampered(edit).ok


@pytest.mark.parametrize("edit", [
    lambda st: st["equal"][0].__setitem__(1, st["equal"][1][1]),  # another entry's spec
    lambda st: st["nodes"].__setitem__(st["equal"][0][0], ["c", "1"]),
    lambda st: st.__setitem__("equal", []),
], ids=["entry", "constant", "empty"])
def test_a_tampered_terms_statement_is_refused(edit):
    assert not _tampered(edit, "terms").ok


X, Y = ["leaf", "x", 0], ["leaf", "y", 0]


@pytest.mark.parametrize("nodes, a, b, same", [
    ([X, Y, ["mul", 0, 1], ["mul", 1, 0]], 2, 3, True),  # commutativity
    ([X, Y, ["add", 0, 1], ["mul", 2, 2], ["mul", 0, 0], ["mul", 1, 1], ["mul", 0, 1], ["add", 4, 5],
      ["add", 6, 6], ["add", 7, 8]], 3, 9, True),  # (x + y)^2 expanded
    ([X, Y, ["add", 0, 1], ["mul", 0, 1]], 2, 3, False),
    ([X, Y, ["sqrt", 0], ["sqrt", 1]], 2, 3, False),  # opaque: different arguments
    ([X, Y, ["add", 0, 1], ["add", 1, 0], ["sqrt", 2], ["sqrt", 3]], 4, 5, True),  # congruence
    ([X, Y, ["div", 0, 1], ["div", 1, 0]], 2, 3, False),
    ([X, ["c", "0"], ["mul", 0, 1], ["sub", 0, 0]], 2, 3, True),
    ([X, ["c", "1/2"], ["mul", 0, 1], ["add", 2, 2]], 3, 0, True),
    ([X, ["c", "1/3"], ["mul", 0, 1], ["add", 2, 2]], 3, 0, False),
])
def test_the_normal_form(nodes, a, b, same):
    assert check({"kind": "terms", "nodes": nodes, "equal": [[a, b]]}).ok is same


# -- the obligations -------------------------------------------------------------------------------

def test_which_node_cases_are_decided_on_terms():
    assert terms.applies_channels("batch_norm", _bn_fields((1, 16, 8, 8)))
    assert not terms.applies_channels("batch_norm", _bn_fields((1, 1, 1, 1)))  # the element itself
    assert terms.applies_forward("conv2d", _conv_fields((1, 1, 8, 8), (2, 1, 3, 3), {}))
    assert terms.applies_forward("matmul", {"shapes": [[2, 2], [2, 2]], "attrs": {}, "ints": {},
                                            "column_major": [1]})
    assert terms.applies_forward("layer_norm", {"shapes": [[2, 4], [4], [4]], "attrs": {}, "ints": {},
                                                "column_major": []})
    assert not terms.applies_forward("softmax", {"shapes": [[2, 4]], "attrs": {}, "ints": {},
                                                 "column_major": []})


def _wrong_var_grad_everywhere(xp, g, out, x, mean, var, w, b, **a):
    """The running variance's gradient halved in every element: the plane is still its element
    everywhere, so the one-element claim must fail."""
    gx, gm, gv, gw, gb = BV(xp, g, out, x, mean, var, w, b, **a)
    return gx, gm, gv * 0.5, gw, gb


@pytest.mark.solver
def test_a_rule_wrong_in_every_element_is_refuted_by_the_element_claim(monkeypatch, tmp_path):
    from torchlean.proofs.compose import node_obligations
    from torchlean.proofs.discharge import discharge

    monkeypatch.setitem(RULES, "batch_norm", Rule("batch_norm", BF, _wrong_var_grad_everywhere))
    obs = node_obligations("batch_norm", "batch_norm.nmut", _bn_fields((1, 3, 2, 2)))
    assert [ob.kind for ob in obs] == ["autograd", "terms", "channels"]
    assert all(check(ob.data["statement"]).ok for ob in obs[1:])
    assert obs[0].data["shapes"] == [[1, 1, 1, 1], [1], [1], [1], [1]]
    (report,) = discharge([obs[0]], tmp_path, solver="cvc5", timeout=60, progress=False)
    assert report.status == "refuted", (report.status, report.message)


@pytest.mark.solver
def test_a_channels_claim_needs_its_element_claim(tmp_path):
    from torchlean.proofs.artifacts import check_one
    from torchlean.proofs.compose import NODES, node_obligations
    from torchlean.proofs.discharge import discharge

    obs = node_obligations("batch_norm", "batch_norm.ntest", _bn_fields((1, 3, 2, 2)))
    for ob in obs:
        NODES[ob.name] = ob
    reports = discharge(obs, tmp_path, solver="cvc5", timeout=60, progress=False)
    assert all(r.status == "proved" for r in reports), [(r.name, r.status, r.message) for r in reports]
    assert all(check_one(tmp_path, ob).status == "checked" for ob in obs)
    next(tmp_path.glob(obs[0].name + ".json")).unlink()
    o = check_one(tmp_path, obs[2])
    assert o.status == "rejected" and "missing" in o.detail, o.detail


@pytest.mark.solver
def test_the_resnet_zoo_proof_is_checked_within_the_default_budget(tmp_path):
    """issue 18: ``resnet --certify``'s gradient proof at (1, 1, 8, 8), from an empty cache, every
    obligation checked (none solver-trusted) within the default 300 s budget (was: derivation alone
    over 9 minutes: batch_norm 126 s, the 16-to-16 conv2d forward over 7 minutes)."""
    from torchlean.zoo.claims import gradient_proof
    from torchlean.zoo.cnn import model

    st = gradient_proof("resnet", lambda: model("resnet"), (1, 1, 8, 8), tmp_path, budget=300)
    assert st.ok and st.trusted == 0 and not st.not_proved and st.checked == st.obligations, st.summary()
    assert any(p.name.startswith("autograd.batch_norm.e") for p in tmp_path.glob("*.json"))
    assert any(p.name.startswith("forward.conv2d.t") for p in tmp_path.glob("*.json"))


@pytest.mark.torch
@pytest.mark.parametrize("shapes, cm", [([[1, 7], [7, 3]], [1]), ([[2, 3, 4], [4, 5]], [])])
def test_matmul_forward_as_terms(shapes, cm):
    torch = pytest.importorskip("torch")
    st = terms.forward_statement("matmul", {"shapes": shapes, "attrs": {}, "ints": {}, "column_major": cm})
    assert check(st).ok
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    val = _evaluate(st, {"in0": a, "in1": b})
    want = torch.matmul(torch.tensor(a), torch.tensor(b)).numpy()
    got = np.array([val[p[0]] for p in st["equal"]]).reshape(want.shape)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_a_broken_matmul_is_refused(monkeypatch):
    """A kernel that drops the last term of each dot product."""
    monkeypatch.setitem(RULES, "matmul", Rule("matmul", lambda xp, a, b: xp.matmul(a[..., :-1], b[:-1]),
                                              RULES["matmul"].vjp))
    st = terms.forward_statement("matmul", {"shapes": [[2, 3], [3, 2]], "attrs": {}, "ints": {},
                                            "column_major": []})
    assert not check(st).ok


def test_a_kernel_branching_on_a_value_is_not_derived(monkeypatch):
    """The terms record one path: a kernel that branches on its data must fail to derive."""
    def branching(xp, x, mean, var, w, b, **a):
        out = BF(xp, x, mean, var, w, b, **a)
        return out if out.flat[0] else -out

    monkeypatch.setitem(RULES, "batch_norm", Rule("batch_norm", branching, BV))
    with pytest.raises(TypeError, match="condition"):
        terms.forward_statement("batch_norm", _bn_fields((1, 2, 2)))


# -- reflexive pairs, and the data-movement primitives' forward claims (h-tfproof) ----------------

def test_a_pair_of_one_node_is_accepted_and_every_node_still_validated():
    x, y = ["leaf", "x", 0], ["leaf", "y", 0]
    assert check({"kind": "terms", "nodes": [x, y, ["sqrt", 0, 1]], "equal": [[2, 2]]}).ok
    # nodes no pair reaches are validated all the same: a div or add of three, a neg of two, a
    # forward reference, a bad constant
    for bad in (["div", 0, 1, 1], ["add", 0], ["neg", 0, 1], ["mul", 0, 3], ["c", "1/0"]):
        v = check({"kind": "terms", "nodes": [x, y, ["mul", 0, 1], bad], "equal": [[2, 2]]})
        assert not v.ok, bad
    # a reflexive pair does not excuse another pair
    assert not check({"kind": "terms", "nodes": [x, y], "equal": [[0, 0], [0, 1]]}).ok


MOVES = [  # (prim, shapes, attrs, a broken kernel)
    ("add", [[2, 3], [3]], {}, lambda xp, a, b: a - b),
    ("sub", [[2, 3], [2, 3]], {}, lambda xp, a, b: b - a),
    ("mul", [[2, 3], []], {}, lambda xp, a, b: a * b * b),
    ("transpose", [[2, 3, 2]], {"axes": (0, 2, 1)}, lambda xp, x, axes=None: xp.transpose(x, (2, 0, 1))),
    ("slice", [[5, 2]], {"index": ((1, 4, 1), (0, 2, 1))}, lambda xp, x, index=(): x[0:3]),
    ("reshape", [[2, 3]], {"shape": (3, 2)}, lambda xp, x, shape=(): x.T.reshape(shape)),
    ("sum", [[2, 3]], {"axes": 1}, lambda xp, x, axes=None, keepdims=False: xp.sum(x[:, 1:], axis=1)),
]


@pytest.mark.torch
@pytest.mark.parametrize("prim, shapes, attrs, broken", MOVES, ids=[m[0] for m in MOVES])
def test_data_movement_forward_claims_are_terms_statements(monkeypatch, prim, shapes, attrs, broken):
    """The node forward claims of the data-movement and linear primitives are decided on terms:
    their terms, evaluated, are what torch computes; a broken kernel (also wrong in numpy) is refused."""
    torch = pytest.importorskip("torch")
    fields = {"shapes": shapes, "attrs": attrs, "ints": {}, "column_major": []}
    assert terms.applies_forward(prim, fields)
    st = terms.forward_statement(prim, fields)
    assert check(st).ok
    rng = np.random.default_rng(11)
    xs = [rng.standard_normal(s) for s in shapes]
    ts = [torch.tensor(x) for x in xs]
    want = {"add": lambda: ts[0] + ts[1], "sub": lambda: ts[0] - ts[1], "mul": lambda: ts[0] * ts[1],
            "transpose": lambda: ts[0].permute(*attrs.get("axes", ())),
            "slice": lambda: ts[0][1:4, 0:2], "reshape": lambda: ts[0].reshape(attrs.get("shape", ())),
            "sum": lambda: ts[0].sum(1)}[prim]().numpy()
    val = _evaluate(st, {f"in{k}": x for k, x in enumerate(xs)})
    got = np.array([val[p[0]] for p in st["equal"]]).reshape(want.shape)
    np.testing.assert_allclose(got, want, atol=1e-12)
    rule = RULES[prim]
    assert not np.allclose(np.asarray(broken(np, *xs, **attrs), dtype=float).reshape(-1)[:want.size],
                           want.reshape(-1)) or np.shape(broken(np, *xs, **attrs)) != want.shape
    monkeypatch.setitem(RULES, prim, Rule(prim, broken, rule.vjp))
    try:
        v = check(terms.forward_statement(prim, fields))
    except ValueError as e:  # a kernel of the wrong shape is refused at derivation
        assert "shape" in str(e)
    else:
        assert not v.ok
