"""layer_norm's and softmax's VJP at any row width from one element's claim (issue 18): the ``rows``
checker and its obligations.

Checked here: the statements hold for the runtime's rules at several widths and their terms,
evaluated, are what torch computes; broken rules (a wrong VJP term, a dropped element, a wrong
normaliser, a wrong eps) are refused, each also shown wrong against torch; tampered statements are
refused; a VJP wrong in every element with a decomposition to match passes the statement and its
element claim is refuted by the solver; a rows claim is rejected without its element claim.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from torchlean.certificates import check
from torchlean.proofs import rows, terms
from torchlean.runtime.rules import RULES, Rule


def _fields(prim, n, eps=1e-5):
    if prim == "layer_norm":
        return {"shapes": [[1, 1, n], [n], [n]], "attrs": {"eps": eps, "normalized_ndim": 1}, "ints": {},
                "column_major": []}
    return {"shapes": [[1, 1, 1, n]], "attrs": {"axis": -1}, "ints": {}, "column_major": []}


def _evaluate(st, values):
    """Every node's value, leaves from ``values`` (family -> numpy array): the terms' meaning."""
    ops = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "neg": lambda a: -a, "div": lambda a, b: a / b, "sqrt": math.sqrt, "exp": math.exp}
    val = []
    for n in st["nodes"]:
        op, args = n[0], n[1:]
        if op == "leaf":
            v = values.get(args[0])
            val.append(v[tuple(args[1:])] if v is not None and all(i < d for i, d in zip(args[1:], v.shape))
                       else None)
        elif op == "c":
            val.append(float(Fraction(args[0])))
        else:
            val.append(ops[op](*(val[a] for a in args)) if all(val[a] is not None for a in args) else None)
    return val


@pytest.mark.parametrize("prim, n", [("layer_norm", 2), ("layer_norm", 7), ("layer_norm", 64),
                                     ("softmax", 2), ("softmax", 9), ("softmax", 64)])
def test_the_rows_statement_holds(prim, n):
    st = rows.statement(prim, _fields(prim, n))
    v = check(st)
    assert v.ok, v.reason
    assert v.checked == n * (st["params"] + 2) + st["stats"]


def _torch_grads(torch, prim, x, g, w=None, b=None, eps=1e-5):
    ts = [torch.tensor(t, requires_grad=True) for t in ([x] if prim == "softmax" else [x, w, b])]
    out = torch.softmax(ts[0], -1) if prim == "softmax" else \
        torch.nn.functional.layer_norm(ts[0], (x.shape[-1],), ts[1], ts[2], eps)
    out.backward(torch.tensor(g))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


def _data(prim, n, seed=0):
    rng = np.random.default_rng(seed)
    shape = (1, 1, n) if prim == "layer_norm" else (1, 1, 1, n)
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    params = [rng.standard_normal(n), rng.standard_normal(n)] if prim == "layer_norm" else []
    return x, g, params


@pytest.mark.torch
@pytest.mark.parametrize("prim", ["layer_norm", "softmax"])
def test_the_rows_terms_mean_what_torch_computes(prim):
    torch = pytest.importorskip("torch")
    n = 6
    x, g, params = _data(prim, n)
    out, grads = _torch_grads(torch, prim, x, g, *params)
    st = rows.statement(prim, _fields(prim, n))
    val = _evaluate(st, {"in0": x, "g": g, **{f"in{k + 1}": p for k, p in enumerate(params)}})
    spec = np.array([val[t] for t in st["row"]["spec"]]).reshape(out.shape)
    np.testing.assert_allclose(spec, out, atol=1e-12)
    for k, want in enumerate(grads):
        got = np.array([val[t] for t in st["row"]["vjp"][k]]).reshape(want.shape)
        np.testing.assert_allclose(got, want, atol=1e-12)
    # the element decomposition at the row's statistics is the spec too (the stats' sums evaluated)
    el = st["element"]

    def at(j, **more):  # the element's leaves read position j
        ps = {f"in{k + 1}": p[j:j + 1] for k, p in enumerate(params)}
        return _evaluate(st, {"in0": x[..., j:j + 1], **ps, **more})

    s = [sum(at(j)[phi] for j in range(n)) for phi in el["stats"]]
    j = 3
    one = at(j, s=np.array(s))
    assert one[el["spec"]] == pytest.approx(out.reshape(-1)[j], abs=1e-12)


# -- broken rules: each refused by the checker, and wrong against torch ---------------------------

LF, LV = RULES["layer_norm"].forward, RULES["layer_norm"].vjp
SF, SV = RULES["softmax"].forward, RULES["softmax"].vjp


def _ln_no_centering_term(xp, g, out, x, w, b, **a):
    """The input gradient without the xhat * mean(gh * xhat) term (a wrong VJP term)."""
    from torchlean.runtime.rules_nn import _ln_stats

    axes, n, xc, rstd = _ln_stats(xp, x, a.get("normalized_ndim", 1), a.get("eps", 1e-5))
    gx, gw, gb = LV(xp, g, out, x, w, b, **a)
    gh = g * w
    return rstd * (gh - xp.sum(gh, axis=axes, keepdims=True) / n), gw, gb


def _ln_dropped_element(xp, g, out, x, w, b, **a):
    """mean(gh) sums over every position but the last (a dropped element)."""
    from torchlean.runtime.rules_nn import _ln_stats

    axes, n, xc, rstd = _ln_stats(xp, x, a.get("normalized_ndim", 1), a.get("eps", 1e-5))
    gx, gw, gb = LV(xp, g, out, x, w, b, **a)
    gh = g * w
    short = xp.sum(gh[..., :-1], axis=axes, keepdims=True) / n
    full = xp.sum(gh, axis=axes, keepdims=True) / n
    return gx + rstd * (full - short), gw, gb


def _ln_wrong_normaliser(xp, g, out, x, w, b, **a):
    """The VJP's statistics with the unbiased variance (n - 1)."""
    n = x.shape[-1]
    return _ln_vjp_var(xp, g, out, x, w, b, n / (n - 1), **a)


def _ln_vjp_var(xp, g, out, x, w, b, scale, **a):
    from torchlean.runtime.rules_nn import _ln_stats

    eps = a.get("eps", 1e-5)
    axes, n, xc, _ = _ln_stats(xp, x, 1, eps)
    rstd = 1 / xp.sqrt(xp.sum(xc * xc, axis=axes, keepdims=True) / n * scale + eps)
    xhat = xc * rstd
    gh = g * w
    gx = rstd * (gh - xp.sum(gh, axis=axes, keepdims=True) / n
                 - xhat * (xp.sum(gh * xhat, axis=axes, keepdims=True) / n))
    return gx, xp.sum(g * xhat, axis=(0, 1)), xp.sum(g, axis=(0, 1))


def _ln_wrong_eps_vjp(xp, g, out, x, w, b, **a):
    """The VJP computed with eps = 1e-3 instead of the node's."""
    return LV(xp, g, out, x, w, b, **{**a, "eps": 1e-3})


def _ln_wrong_eps_forward(xp, x, w, b, **a):
    """The kernel computed with eps = 1e-3 instead of the node's."""
    return LF(xp, x, w, b, **{**a, "eps": 1e-3})


def _ln_wrong_normaliser_forward(xp, x, w, b, **a):
    """The kernel normalises with the unbiased variance (divides by n - 1)."""
    n = x.shape[-1]
    xc = x - xp.sum(x, axis=(x.ndim - 1,), keepdims=True) / n
    var = xp.sum(xc * xc, axis=(x.ndim - 1,), keepdims=True) / (n - 1)
    return xc / xp.sqrt(var + a.get("eps", 1e-5)) * w + b


def _sm_wrong_term(xp, g, out, x, axis=-1):
    """dx = y * (g - sum g) (the sum without the y weights: a wrong VJP term)."""
    return (out * (g - xp.sum(g, axis=axis, keepdims=True)),)


def _sm_dropped_element(xp, g, out, x, axis=-1):
    """The sum of g * y over every entry but the last."""
    return (out * (g - xp.sum((g * out)[..., :-1], axis=axis, keepdims=True)),)


def _sm_wrong_normaliser(xp, g, out, x, axis=-1):
    """The mean of g * y instead of its sum."""
    return (out * (g - xp.sum(g * out, axis=axis, keepdims=True) / x.shape[-1]),)


MUTANTS = [  # (what, prim, forward, vjp, kind of statement that refuses it)
    ("ln wrong VJP term", "layer_norm", LF, _ln_no_centering_term, "rows"),
    ("ln dropped element", "layer_norm", LF, _ln_dropped_element, "rows"),
    ("ln wrong normaliser (VJP)", "layer_norm", LF, _ln_wrong_normaliser, "rows"),
    ("ln wrong eps (VJP)", "layer_norm", LF, _ln_wrong_eps_vjp, "rows"),
    ("ln wrong eps (forward)", "layer_norm", _ln_wrong_eps_forward, LV, "terms"),
    ("ln wrong normaliser (forward)", "layer_norm", _ln_wrong_normaliser_forward, LV, "terms"),
    ("softmax wrong VJP term", "softmax", SF, _sm_wrong_term, "rows"),
    ("softmax dropped element", "softmax", SF, _sm_dropped_element, "rows"),
    ("softmax wrong normaliser", "softmax", SF, _sm_wrong_normaliser, "rows"),
]


@pytest.mark.parametrize("what, prim, fwd, vjp, kind", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_a_broken_row_rule_is_refused(monkeypatch, what, prim, fwd, vjp, kind):
    monkeypatch.setitem(RULES, prim, Rule(prim, fwd, vjp))
    f = _fields(prim, 6)
    st = rows.statement(prim, f) if kind == "rows" else terms.forward_statement(prim, f)
    v = check(st)
    assert not v.ok, what
    assert "is not the element's" in v.reason or "differ as polynomials" in v.reason, v.reason


@pytest.mark.torch
@pytest.mark.parametrize("what, prim, fwd, vjp, kind", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_each_broken_row_rule_is_wrong_in_numpy(what, prim, fwd, vjp, kind):
    torch = pytest.importorskip("torch")
    x, g, params = _data(prim, 6, seed=1)
    out, grads = _torch_grads(torch, prim, x, g, *params)
    a = _fields(prim, 6)["attrs"]
    rf, rv = RULES[prim].forward, RULES[prim].vjp
    np.testing.assert_allclose(rf(np, x, *params, **a), out, atol=1e-10)  # the real rule is right
    assert all(np.allclose(u, v) for u, v in zip(rv(np, g, out, x, *params, **a), grads))
    mine = fwd(np, x, *params, **a)
    got = vjp(np, g, out, x, *params, **a)
    assert not (np.allclose(mine, out) and all(np.allclose(u, v) for u, v in zip(got, grads))), what


# -- tampered statements ---------------------------------------------------------------------------

def _tampered(edit, prim="layer_norm"):
    st = rows.statement(prim, _fields(prim, 4))
    edit(st)
    return check(st)


@pytest.mark.parametrize("edit", [
    lambda st: st["row"]["spec"].__setitem__(0, st["row"]["spec"][1]),
    lambda st: st["row"]["vjp"][0].__setitem__(2, st["row"]["vjp"][0][3]),
    lambda st: st["row"]["vjp"][1].__setitem__(0, st["row"]["vjp"][2][0]),  # weight grad <- bias grad
    lambda st: st.__setitem__("n", 3),
    lambda st: st.__setitem__("n", 5),
    lambda st: st["row"]["cut"][1].append(st["row"]["cut"][0][0]),  # the mean cut as the mean of squares
    lambda st: st["row"]["cut"][0].__setitem__(0, st["row"]["spec"][0]),
    lambda st: st["element"].__setitem__("spec", st["row"]["spec"][0]),  # row leaves in the element
    lambda st: st["element"]["stats"].__setitem__(1, st["element"]["stats"][0]),
    lambda st: st["element"]["vjp_stats"].__setitem__(0, st["element"]["vjp"][0]),  # an adjoint in a stat VJP
    lambda st: st["nodes"].append(["add", len(st["nodes"]), 0]),  # a cycle
], ids=["spec-entry", "vjp-entry", "param-grad", "n-short", "n-long", "cut-wrong-stat", "cut-not-a-stat",
        "element-leaves", "stat-summand", "adjoint-in-stat-vjp", "cycle"])
def test_a_tampered_rows_statement_is_refused(edit):
    assert not _tampered(edit).ok


def test_division_is_read_as_multiplication_by_an_inverse():
    x, y = ["leaf", "x", 0], ["leaf", "y", 0]
    same = [x, y, ["div", 0, 1], ["c", "1"], ["div", 3, 1], ["mul", 0, 4]]  # x / y and x * (1 / y)
    assert check({"kind": "terms", "nodes": same, "equal": [[2, 5]]}).ok
    by3 = [x, ["c", "3"], ["div", 0, 1], ["c", "1/3"], ["mul", 0, 3]]  # x / 3 and x * 1/3
    assert check({"kind": "terms", "nodes": by3, "equal": [[2, 4]]}).ok
    other = [x, y, ["div", 0, 1], ["div", 1, 0]]
    assert not check({"kind": "terms", "nodes": other, "equal": [[2, 3]]}).ok
    inv_op = [x, y, ["div", 0, 1], ["inv", 1], ["mul", 0, 3]]  # an op named "inv" is not 1/y
    assert not check({"kind": "terms", "nodes": inv_op, "equal": [[2, 4]]}).ok


# -- the obligations -------------------------------------------------------------------------------

def test_which_node_cases_are_decided_row_by_row():
    assert rows.applies("layer_norm", _fields("layer_norm", 64))
    assert rows.applies("softmax", _fields("softmax", 10))
    assert not rows.applies("softmax", _fields("softmax", 1))
    assert not rows.applies("layer_norm", {**_fields("layer_norm", 4), "shapes": [[1, 2, 4], [2, 4], [2, 4]],
                                           "attrs": {"eps": 1e-5, "normalized_ndim": 2}})
    assert not rows.applies("softmax", {**_fields("softmax", 4), "attrs": {"axis": 2}})


def _wrong_everywhere(xp, g, out, x, axis=-1):
    """dx = y * (g - 2 sum g y): wrong in every element, with an element decomposition to match."""
    return (out * (g - 2 * xp.sum(g * out, axis=axis, keepdims=True)),)


def _wrong_decomposition(x, p, g, s, t, n, attrs):
    from torchlean.proofs.windows import Term

    e = Term("exp", x)
    return e / s[0], [e], [g * e / s[0] + t[0] * e], [-2 * (g * e / s[0]) / s[0]], [s[0]]


@pytest.mark.solver
def test_a_vjp_wrong_in_every_element_is_refuted_by_the_element_claim(monkeypatch, tmp_path):
    from torchlean.proofs.discharge import discharge

    monkeypatch.setitem(RULES, "softmax", Rule("softmax", SF, _wrong_everywhere))
    monkeypatch.setitem(rows.ELEMENT, "softmax", _wrong_decomposition)
    el, ob = rows.obligations("softmax", _fields("softmax", 5))
    assert check(ob.data["statement"]).ok  # the row is the (wrong) element at every position
    (report,) = discharge([el], tmp_path, solver="cvc5", timeout=60, progress=False)
    assert report.status == "refuted", (report.status, report.message)


@pytest.mark.solver
@pytest.mark.parametrize("prim", ["layer_norm", "softmax"])
def test_a_rows_claim_is_checked_with_its_element_claim_and_rejected_without(prim, tmp_path):
    from torchlean.proofs.artifacts import check_one
    from torchlean.proofs.autograd import exact_floats
    from torchlean.proofs.compose import NODES, node_obligations
    from torchlean.proofs.discharge import discharge

    with exact_floats():
        obs = node_obligations(prim, f"{prim}.ntest", _fields(prim, 8))
    first = "terms" if prim == "layer_norm" else "forward"
    assert [ob.kind for ob in obs] == [first, "autograd", "rows"]
    for ob in obs:
        NODES[ob.name] = ob
    reports = discharge(obs, tmp_path, solver="cvc5", timeout=120, progress=False)
    assert all(r.status == "proved" for r in reports), [(r.name, r.status, r.message) for r in reports]
    assert [check_one(tmp_path, ob).status for ob in obs] == ["checked"] * 3
    next(tmp_path.glob(obs[1].name + ".json")).unlink()
    o = check_one(tmp_path, obs[2])
    assert o.status == "rejected" and "missing" in o.detail, o.detail


@pytest.mark.solver
def test_the_transformer_sums_zoo_proof_is_checked_within_the_default_budget(tmp_path):
    """issue 18: ``transformer --corpus sums --certify``'s gradient proof at (1, 10, 64), from an
    empty cache, every obligation checked (none solver-trusted) within the default 300 s budget
    (was: past it, layer_norm over 64 features fixed-shape)."""
    from torchlean.zoo.claims import gradient_proof
    from torchlean.zoo.transformer import AfterLookup, model

    st = gradient_proof("chargpt_after_lookup", lambda: AfterLookup(model("sums")), (1, 10, 64), tmp_path,
                        budget=300)
    assert st.ok and st.trusted == 0 and not st.not_proved and st.checked == st.obligations, st.summary()
    assert any(p.name.startswith("autograd.layer_norm.r") for p in tmp_path.glob("*.json"))
    assert any(p.name.startswith("autograd.softmax.r") for p in tmp_path.glob("*.json"))
