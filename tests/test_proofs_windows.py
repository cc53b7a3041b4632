"""max_pool2d proved window by window (issue 18): the ``windows`` checker and its obligations.

A plane's claim is one window's fixed-shape claims plus the checker's statement that the runtime's
kernel, the spec and the VJP are that window at every position. Checked here: the statement holds
for the runtime's rule at many geometries and its terms mean what numpy computes; broken rules
(a wrong tap, a window read at an offset, a dropped window) are refused, each shown wrong against
torch's max_pool2d backward too; tampered statements are refused; a CNN's proof uses it and is
checked (``solver``).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from torchlean.certificates import check
from torchlean.proofs import windows
from torchlean.runtime.rules import RULES, Rule

GEOMETRIES = [
    ((8, 8), (2, 2), (2, 2)), ((7, 7), (2, 2), (2, 2)), ((5, 6), (3, 3), (1, 1)),
    ((6, 5), (3, 2), (2, 1)), ((4, 9), (2, 3), (1, 3)), ((3, 3), (2, 2), (1, 1)),
]


def _attrs(k, s):
    return {"kernel_size": k, "stride": s, "padding": (0, 0)}


@pytest.mark.parametrize("plane, k, s", GEOMETRIES)
def test_the_runtime_rule_is_its_window_at_every_position(plane, k, s):
    v = check(windows.statement("max_pool2d", plane, _attrs(k, s)))
    assert v.ok, v.reason
    ho, wo = (plane[0] - k[0]) // s[0] + 1, (plane[1] - k[1]) // s[1] + 1
    assert v.checked == 2 * ho * wo + plane[0] * plane[1]


def _evaluate(st, x, g, gv=None):
    """The value of every node for the plane's leaves x, g (numbers): the terms' meaning."""
    ops = {"maximum": max, "equal": lambda a, b: float(a == b), "where": lambda c, a, b: a if c else b,
           "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "select": lambda c, a, b: a if c else b, "ge": lambda a, b: a >= b}
    val = []
    for n in st["nodes"]:
        op, args = n[0], n[1:]
        if op == "x":
            val.append(x[args[0], args[1]])
        elif op == "g":
            val.append(g[args[0], args[1]])
        elif op == "c":
            val.append(float(Fraction(args[0])))
        elif op in ("v", "gv"):
            val.append(None)
        else:
            val.append(ops[op](*(val[a] for a in args)) if all(val[a] is not None for a in args) else None)
    return val


@pytest.mark.torch
@pytest.mark.parametrize("plane, k, s", GEOMETRIES)
def test_the_terms_mean_what_torch_computes(plane, k, s):
    """The recorded terms, evaluated, are torch's max_pool2d forward and backward (distinct inputs)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    st = windows.statement("max_pool2d", plane, _attrs(k, s))
    x = rng.permutation(plane[0] * plane[1]).reshape(plane).astype(float)
    ho, wo = len(st["plane"]["forward"]), len(st["plane"]["forward"][0])
    g = rng.standard_normal((ho, wo))
    val = _evaluate(st, x, g)
    tx = torch.tensor(x[None, None], requires_grad=True)
    out = torch.nn.functional.max_pool2d(tx, k, s)
    out.backward(torch.tensor(g[None, None]))
    for part in ("forward", "spec"):
        got = np.array([[val[i] for i in row] for row in st["plane"][part]])
        np.testing.assert_array_equal(got, out.detach().numpy()[0, 0])
    got = np.array([[val[i] for i in row] for row in st["plane"]["vjp"]])
    np.testing.assert_allclose(got, tx.grad.numpy()[0, 0], rtol=0, atol=1e-12)


# -- broken rules: each refused by the checker, and wrong against torch ---------------------------

FWD, VJP = RULES["max_pool2d"].forward, RULES["max_pool2d"].vjp


def _wrong_tap(xp, g, out, x, **a):
    """The last window's cotangent goes to the tap right of its maximum's (columns swapped)."""
    (gx,) = VJP(xp, g, out, x, **a)
    gx = gx.copy()
    gx[:, :, -2:, -2], gx[:, :, -2:, -1] = gx[:, :, -2:, -1].copy(), gx[:, :, -2:, -2].copy()
    return (gx,)


def _offset_vjp(xp, g, out, x, **a):
    """Windows after the first row scatter one row too low (an off-by-one window offset)."""
    (gx,) = VJP(xp, g, out, x, **a)
    moved = xp.zeros(gx.shape)
    moved[:, :, :2] = gx[:, :, :2]
    moved[:, :, 3:] = gx[:, :, 2:-1]
    return (moved,)


def _dropped_window(xp, g, out, x, **a):
    """The last window's cotangent is dropped."""
    (gx,) = VJP(xp, g, out, x, **a)
    gx = gx.copy()
    gx[:, :, -2:, -2:] = xp.zeros(gx[:, :, -2:, -2:].shape)
    return (gx,)


def _offset_forward(xp, x, **a):
    """Windows after the first row read the rows one above theirs."""
    out = FWD(xp, x, **a).copy()
    if x.shape[2] > 2:  # one window (the one-window claim's own run): nothing to move
        out[:, :, 1:] = FWD(xp, x[:, :, 1:-1], **a)
    return out


MUTANTS = [("wrong tap", FWD, _wrong_tap, "vjp at"), ("window offset", FWD, _offset_vjp, "vjp at"),
           ("dropped window", FWD, _dropped_window, "vjp at"),
           ("forward window offset", _offset_forward, VJP, "forward at window")]


@pytest.mark.parametrize("what, fwd, vjp, message", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_a_broken_rule_is_refused(monkeypatch, what, fwd, vjp, message):
    monkeypatch.setitem(RULES, "max_pool2d", Rule("max_pool2d", fwd, vjp))
    v = check(windows.statement("max_pool2d", (8, 8), _attrs((2, 2), (2, 2))))
    assert not v.ok and message in v.reason, v.reason


@pytest.mark.torch
@pytest.mark.parametrize("what, fwd, vjp, message", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_each_broken_rule_is_wrong_in_numpy(what, fwd, vjp, message):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 8, 8))
    g = rng.standard_normal((1, 2, 4, 4))
    tx = torch.tensor(x, requires_grad=True)
    out = torch.nn.functional.max_pool2d(tx, 2, 2)
    out.backward(torch.tensor(g))
    a = _attrs((2, 2), (2, 2))
    mine = fwd(np, x, **a)
    (gx,) = vjp(np, g, mine, x, **a)
    assert not (np.allclose(mine, out.detach().numpy()) and np.allclose(gx, tx.grad.numpy()))
    (right,) = VJP(np, g, FWD(np, x, **a), x, **a)
    np.testing.assert_allclose(right, tx.grad.numpy(), atol=1e-12)


# -- tampered statements -------------------------------------------------------------------------

def _tampered(edit):
    st = windows.statement("max_pool2d", (6, 6), _attrs((2, 2), (2, 2)))
    edit(st)
    return check(st)


@pytest.mark.parametrize("edit", [
    lambda st: st["plane"]["vjp"][0].__setitem__(0, st["plane"]["vjp"][0][1]),  # wrong position
    lambda st: st["plane"]["forward"][1].__setitem__(1, st["plane"]["forward"][0][0]),
    lambda st: st["plane"]["spec"][2].__setitem__(0, st["plane"]["spec"][2][1]),
    lambda st: st.__setitem__("stride", [1, 2]),  # the windows said to be elsewhere
    lambda st: st.__setitem__("size", [6, 7]),
    lambda st: st["plane"]["vjp"].pop(),  # a row of positions dropped
    lambda st: st["window"].__setitem__("vjp", [[st["window"]["vjp"][0][1]] * 2] * 2),  # one tap for all
    lambda st: st["window"].__setitem__("forward", st["plane"]["forward"][0][0]),  # plane leaves
    lambda st: st["nodes"].append(["add", len(st["nodes"]), 0]),  # a cycle
], ids=["vjp-entry", "forward-entry", "spec-entry", "stride", "size", "row", "one-tap", "leaves", "cycle"])
def test_a_tampered_statement_is_refused(edit):
    assert not _tampered(edit).ok


def test_which_node_cases_go_window_by_window():
    a = _attrs((2, 2), (2, 2))
    assert windows.applies("max_pool2d", [[1, 1, 8, 8]], a)
    assert not windows.applies("max_pool2d", [[1, 1, 2, 2]], a)  # one window: its own claim
    assert not windows.applies("max_pool2d", [[1, 1, 8, 8]], {**a, "padding": (1, 1)})
    assert not windows.applies("avg_pool2d", [[1, 1, 8, 8]], a)


@pytest.mark.solver
def test_a_cnn_proof_rests_on_one_window(tmp_path):
    """A CNN with an 8x8 pooling plane: the max_pool2d node's obligations are the windows ones,
    naming the one-window claims at (1, 1, 2, 2); all checked; a missing one-window artifact
    makes the plane's claim rejected."""
    import torchlean.nn as nn
    from torchlean.proofs.artifacts import check_one
    from torchlean.proofs.compose import model_obligations
    from torchlean.proofs.discharge import discharge

    def cnn():
        return nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 2))

    obs = list(model_obligations("cnn_windows", cnn, (1, 1, 8, 8)))
    names = {ob.name: ob for ob in obs}
    plane = [ob for ob in obs if ob.kind == "windows"]
    assert {ob.data["part"] for ob in plane} == {"forward", "autograd"}
    for ob in plane:
        assert all(names[r].data["shapes"] == [[1, 1, 2, 2]] for r in ob.data["requires"])
    reports = discharge(obs, tmp_path, solver="cvc5", timeout=120, progress=False)
    assert all(r.status == "proved" for r in reports), [(r.name, r.status, r.message) for r in reports]
    assert check_one(tmp_path, obs[0]).status == "checked"
    assert all(check_one(tmp_path, ob).status == "checked" for ob in plane)
    one = next(tmp_path.glob(plane[1].data["requires"][-1] + ".json"))
    one.unlink()
    o = check_one(tmp_path, plane[1])
    assert o.status == "rejected" and "missing" in o.detail, o.detail


def _wrong_tap_everywhere(xp, g, out, x, **a):
    """Every window's cotangent goes to the column beside its maximum (the same in every window:
    the plane is still its window everywhere, so the one-window claim must fail)."""
    (gx,) = VJP(xp, g, out, x, **a)
    gx = gx.copy()
    gx[:, :, :, 0::2], gx[:, :, :, 1::2] = gx[:, :, :, 1::2].copy(), gx[:, :, :, 0::2].copy()
    return (gx,)


@pytest.mark.solver
def test_a_rule_wrong_in_every_window_is_refuted_by_the_one_window_claim(monkeypatch, tmp_path):
    from torchlean.proofs.compose import node_obligations
    from torchlean.proofs.discharge import discharge

    monkeypatch.setitem(RULES, "max_pool2d", Rule("max_pool2d", FWD, _wrong_tap_everywhere))
    obs = node_obligations("max_pool2d", "max_pool2d.nmut", {
        "shapes": [[1, 1, 8, 8]], "attrs": _attrs((2, 2), (2, 2)), "ints": {}, "column_major": []})
    plane = [ob for ob in obs if ob.kind == "windows"]
    assert len(plane) == 2 and all(check(ob.data["statement"]).ok for ob in plane)
    one = next(ob for ob in obs if ob.kind == "autograd")
    (report,) = discharge([one], tmp_path, solver="cvc5", timeout=60, progress=False)
    assert report.status == "refuted", (report.status, report.message)
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.solver
def test_the_cnn_zoo_proof_is_checked_within_the_default_budget(tmp_path):
    """issue 18: ``cnn --certify``'s gradient proof at (1, 1, 8, 8), from an empty cache, every
    obligation checked (none solver-trusted) within the default 300 s budget (was 23/24 in 271 s,
    its 8x8 max_pool2d VJP not proved)."""
    from torchlean.zoo.claims import gradient_proof
    from torchlean.zoo.cnn import model

    st = gradient_proof("cnn", lambda: model("cnn"), (1, 1, 8, 8), tmp_path, budget=300)
    assert st.ok and st.trusted == 0 and not st.not_proved and st.checked == st.obligations, st.summary()
    assert any(p.name.startswith("autograd.max_pool2d.w") for p in tmp_path.glob("*.json"))
