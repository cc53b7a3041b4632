"""The rounding-error column on any graph: every primitive's entry against observed errors of the
runtime in float32, bfloat16 and float16, traced torchlean models, and mutations of the certificate."""

from __future__ import annotations

import copy
import sys
from fractions import Fraction
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import torchlean as tl
from torchlean import nn
from torchlean.certificates import check
from torchlean.certificates.core import Rejected, digest
from torchlean.certificates.errorbound import COLUMN, NO_ENTRY, model_id
from torchlean.floats import bound_certificate, epsilons
from torchlean.runtime.execute import run_graph
from torchlean.runtime.rules import RULES
from torchlean.spec import Graph, Node, Value

sys.path.insert(0, str(Path(__file__).parent))
from test_bound_graph import WIDE_SCORES, builders  # noqa: E402

DTYPES = {"binary32": np.float32, "bfloat16": ml_dtypes.bfloat16, "binary16": np.float16}


def as32(nodes, consts, shape=(1, 4)):
    """A builder's graph with float32 input and weights (what the runtime runs)."""
    c = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in consts.items()}
    return Graph([Value("x", shape, "float32")], c, [Node(*n) for n in nodes], [nodes[-1][2]]).check()


def box_of(rng, shape, r=Fraction(1, 4)):
    """A box with dyadic corners (values of every format tested) around a random point."""
    x0 = np.round(rng.uniform(-1, 1, int(np.prod(shape))) * 16) / 16
    return [(Fraction(v) - r, Fraction(v) + r) for v in x0]


def observed(g, box, fmt, n=150, seed=0):
    """Per output, max |runtime(fmt) - real| over n points of the box (real: the float64 run,
    whose own error is bounded by a replayed binary64 certificate, added to the observation)."""
    dt = DTYPES[fmt]
    rng = np.random.default_rng(seed)
    lo = np.array([float(a) for a, _ in box])
    hi = np.array([float(b) for _, b in box])
    shape = g.inputs[0].shape
    worst = 0
    for i in range(n):
        p = lo + (hi - lo) * rng.uniform(0, 1, lo.shape) if i >= 2 else (lo if i == 0 else hi)
        p = np.clip(p.astype(dt).astype(np.float64), lo, hi)  # a value of the format in the box
        y = np.asarray(run_graph(g, {"x": p.astype(dt).reshape(shape)}, dtype=dt)[0], dtype=np.float64)
        r = np.asarray(run_graph(g, {"x": p.reshape(shape)}, dtype=np.float64)[0], dtype=np.float64)
        worst = np.maximum(worst, np.abs(y - r).ravel())
    c64 = bound_certificate(g, box, "binary64", ranges="ibp")
    assert check(c64).ok
    return worst + np.array([float(e) for e in epsilons(c64)])


def _sound(g, box, fmt, n=150):
    cert = bound_certificate(g, box, fmt)
    v = check(cert)
    assert v.ok, v.reason
    eps = np.array([float(e) for e in epsilons(cert)])
    obs = observed(g, box, fmt, n)
    assert np.all(obs <= eps), (obs, eps)
    return eps, obs


CASES = sorted(builders(np.random.default_rng(0)))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fmt", ["binary32", "bfloat16"])
def test_every_entry_covers_the_observed_error(case, fmt):
    spec = builders(np.random.default_rng(1))[case]
    g = as32(*spec)
    _sound(g, box_of(np.random.default_rng(2), g.inputs[0].shape), fmt)


def _random_graph(rng):
    """A random DAG: a linear map, then ops drawn from the builders' primitives (each a (1, 4) ->
    (1, 4) step), residual adds, products of two data values and softmax under a -inf mask, then a
    linear map out."""
    steps = ["relu", "abs", "exp", "tanh", "erf", "sigmoid", "softplus", "gelu", "silu", "neg", "leaky_relu",
             "softmax", "log_softmax", "square", "product", "residual", "max", "mean", "div", "sqrt", "log",
             "masked_softmax"]
    c = {"W": rng.normal(0, 0.6, (4, 4)), "V": rng.normal(0, 0.6, (4, 2)), "two": np.array(2.0),
         "M": np.array([[True, False, rng.random() < 0.5, False]]), "ninf": np.array(-np.inf)}
    nodes, cur, seen = [("matmul", ["x", "W"], "h0")], "h0", ["h0"]
    for i in range(4):
        op, out = steps[rng.integers(len(steps))], f"h{i + 1}"
        other = seen[rng.integers(len(seen))]
        if op in ("square", "product"):
            nodes.append(("mul", [cur, cur if op == "square" else other], out))
        elif op == "residual":
            nodes.append(("add", [cur, other], out))
        elif op in ("max", "mean"):
            nodes += [(op, [cur], f"r{i}", {"axes": (1,), "keepdims": True}), ("sub", [cur, f"r{i}"], out)]
        elif op == "masked_softmax":  # an attention mask: where(mask, -inf, x), then softmax
            nodes += [("where", ["M", "ninf", cur], f"w{i}"), ("softmax", [f"w{i}"], out, {"axis": -1})]
        elif op in ("div", "sqrt", "log"):  # keep the argument away from 0
            nodes += [("sigmoid", [other], f"s{i}"), ("add", [f"s{i}", "two"], f"p{i}")]
            nodes.append(("div", [cur, f"p{i}"], out) if op == "div" else (op, [f"p{i}"], out))
        else:
            nodes.append((op, [cur], out))
        cur = out
        seen.append(cur)
    nodes.append(("matmul", [cur, "V"], "y"))
    return nodes, c


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_in_every_format(seed):
    rng = np.random.default_rng(100 + seed)
    g = as32(*_random_graph(rng))
    fmt = ["binary32", "bfloat16", "binary16"][seed % 3]
    _sound(g, box_of(rng, (1, 4), Fraction(1, 8)), fmt)


def test_the_property_test_fails_without_rounding_terms(monkeypatch):
    """The comparison above can fail: with the standard model's rounding terms dropped (u = 0 in
    every correctly rounded step), the certified epsilon falls below the observed error."""
    from torchlean.certificates.errorbound import Ctx

    g = as32(*builders(np.random.default_rng(1))["add"])
    box = box_of(np.random.default_rng(2), g.inputs[0].shape)
    monkeypatch.setattr(Ctx, "rnd", lambda self, m, underflow=True: Fraction(0))
    monkeypatch.setattr(Ctx, "gamma", lambda self, n: Fraction(0))
    eps = np.array([float(e) for e in epsilons(bound_certificate(g, box))])
    assert np.any(observed(g, box, "binary32") > eps)


def test_every_runtime_primitive_has_an_entry_or_a_reason():
    assert set(RULES) <= set(COLUMN) | set(NO_ENTRY)
    covered = {n[0] for spec in builders(np.random.default_rng(0)).values() for n in spec[0]}
    assert set(COLUMN) <= covered  # and each entry is exercised above


# -- traced torchlean models ---------------------------------------------------------------------

def _traced(model, shape, seed=0):
    tl.manual_seed(seed)
    model.eval()
    x0 = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    g = tl.trace(model, tl.tensor(x0))
    name = g.inputs[0].name
    nodes = [Node(n.op, ["x" if i == name else i for i in n.inputs], n.output, n.attrs) for n in g.nodes]
    return Graph([Value("x", g.inputs[0].shape, "float32")], g.constants, nodes, g.outputs).check()


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.t, self.b = nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3)

    def forward(self, x):
        return self.b(x + self.t(self.a(x)))


MODELS = {
    "cnn-bn-avgpool": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                                             nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8, 3)), (1, 1, 4, 4)),
    "gelu-silu-mlp": (lambda: nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 6), nn.SiLU(),
                                            nn.Linear(6, 2)), (1, 4)),
    "layernorm-softmax": (lambda: nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 3),
                                                nn.Softmax(-1)), (1, 4)),
    "residual": (Residual, (1, 4)),
    "transformer-encoder": (lambda: nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, dropout=0.0),
                            (1, 3, 4)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_traced_models(name):
    make, shape = MODELS[name]
    g = _traced(make(), shape)
    eps, obs = _sound(g, box_of(np.random.default_rng(3), shape, Fraction(1, 16)), "binary32", n=200)
    if name not in ("layernorm-softmax", "transformer-encoder"):  # (a variance's interval reaches 0)
        assert np.all(eps < 1e-4), eps


# -- mutations -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cert():
    g = as32(*builders(np.random.default_rng(1))["gelu"])
    return g, bound_certificate(g, box_of(np.random.default_rng(2), (1, 4)))


def _resign(c):
    c["digest"] = digest(c["statement"])
    return c


def test_honest_certificate_is_accepted(cert):
    assert check(cert[1]).ok


def test_epsilon_below_the_recomputed_bound_is_rejected(cert):
    c = copy.deepcopy(cert[1])
    c["statement"]["epsilon"][0] = str(Fraction(c["statement"]["epsilon"][0]) * Fraction(9, 10))
    assert not check(c).ok
    v = check(_resign(c))
    assert not v.ok and "epsilon" in v.reason
    c = copy.deepcopy(cert[1])
    c["steps"][2][1] = str(Fraction(c["steps"][2][1]) / 2)
    v = check(c)
    assert not v.ok and "claimed error" in v.reason


@pytest.mark.parametrize("ranges", ["crown", "fast"])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_with_scores_past_binary64_exp(op, ranges):
    """Attention-like scores whose differences reach +-3,050 on the box (the bound table's exp past
    binary64 and the old EXP_MAX = 1,000, as the trained char GPT's +-1,321): the certificate (exact
    CROWN ranges, or exact IBP met with the fast engine's, vacuous there) is replayed, covers the
    observed float32 error, and a tightened epsilon or step claim is rejected."""
    g = as32([("matmul", ["x", "W"], "h"), (op, ["h"], "p", {"axis": -1}), ("matmul", ["p", "V"], "y")],
             {"W": WIDE_SCORES, "V": np.random.default_rng(4).normal(0, 1, (4, 3))})
    box = [(Fraction(-1), Fraction(1))] * 4
    c = bound_certificate(g, box, "binary32", ranges=ranges)
    assert check(c).ok
    eps = np.array([float(e) for e in epsilons(c)])
    assert np.all(observed(g, box, "binary32", 60) <= eps) and np.all(eps < 1e4)
    bad = copy.deepcopy(c)
    bad["statement"]["epsilon"][0] = str(Fraction(bad["statement"]["epsilon"][0]) * Fraction(9, 10))
    v = check(_resign(bad))
    assert not v.ok and "epsilon" in v.reason
    bad = copy.deepcopy(c)
    k = max(range(len(bad["steps"])), key=lambda i: Fraction(bad["steps"][i][1]))
    bad["steps"][k][1] = str(Fraction(bad["steps"][k][1]) / 2)
    v = check(bad)
    assert not v.ok and "claimed error" in v.reason


def test_exp_past_the_format_is_refused_not_bounded():
    """A plain exp whose real range passes binary32 (and binary64: e^2000) is refused with the
    column's overflow reason (a Rejected, one line), never bounded; past EXP_MAX = 2^16 by the row."""
    for s, why in ((2000.0, "may overflow binary32"), (70000.0, "outside the domain")):
        g = as32([("matmul", ["x", "W"], "h"), ("exp", ["h"], "y")], {"W": np.eye(4) * s})
        with pytest.raises(Rejected, match=why):
            bound_certificate(g, [(Fraction(-1), Fraction(1))] * 4, "binary32")


def test_wrong_format_is_rejected(cert):
    for field, value in (("mbits", 10), ("ebits", 5)):
        c = copy.deepcopy(cert[1])
        c["statement"]["format"][field] = value
        assert not check(_resign(c)).ok
    c = copy.deepcopy(cert[1])
    c["statement"]["kernel_ulps"] = "8"  # a less accurate library than the bounds were computed for
    assert not check(_resign(c)).ok


def test_dropped_node_is_rejected(cert):
    c = copy.deepcopy(cert[1])
    del c["steps"][1]
    assert not check(c).ok
    c = copy.deepcopy(cert[1])
    ir = c["statement"]["graph"]
    gelu = next(n for n in ir["nodes"] if n["op"] == "gelu")
    ir["nodes"].remove(gelu)
    for n in ir["nodes"]:
        n["inputs"] = [gelu["inputs"][0] if i == gelu["output"] else i for i in n["inputs"]]
    assert not check(_resign(c)).ok  # the fingerprint
    c["statement"]["model"] = model_id(ir)
    assert not check(_resign(c)).ok  # one step per node


def test_swapped_network_is_rejected(cert):
    g2 = as32(*builders(np.random.default_rng(5))["gelu"])
    c = copy.deepcopy(cert[1])
    c["statement"]["graph"] = g2.to_dict()
    assert not check(_resign(c)).ok
    c["statement"]["model"] = model_id(c["statement"]["graph"])
    v = check(_resign(c))
    assert not v.ok, "the other network's bounds are not these"


def test_box_not_covering_is_rejected(cert):
    c = copy.deepcopy(cert[1])
    lo, hi = c["statement"]["input_box"][0]
    c["statement"]["input_box"][0] = [str(Fraction(lo) - 4), str(Fraction(hi) + 4)]
    v = check(_resign(c))
    assert not v.ok


def test_unsupported_use_is_a_one_line_error():
    from torchlean.floats.network import LoweringError

    g = Graph([Value("x", (1, 1, 4, 4), "float32"), Value("k", (1, 1, 2, 2), "float32")], {},
              [Node("conv2d", ["x", "k"], "y")], ["y"]).check()
    with pytest.raises(LoweringError, match="conv2d"):
        bound_certificate(g, [(0, 1)] * 20)
