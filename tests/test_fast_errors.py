"""The fast rounding-error column (``certificates.fast_errors``): its bounds hold on sampled float
runs in several formats, are no tighter than the exact column's on the same statements, and the
checker rejects every mutated fast certificate; a float-sound verdict built on it replays."""

from __future__ import annotations

import copy
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from fast_column import covers_float_runs

from torchlean.certificates import check, errorctx
from torchlean.certificates.core import digest
from torchlean.certificates.errorbound import FAST_TRUST, model_id, propagate
from torchlean.certificates.fast_errors import LIN, ROWS
from torchlean.floats.errorbound import bound_certificate, epsilons, statement
from torchlean.spec.graph import Graph, Node, Value

sys.path.insert(0, str(Path(__file__).parent))
from floats_models import cnn, mlp  # noqa: E402
from test_fast_errors_conv import POOLS, conv_chain  # noqa: E402
from test_fast_errors_fns import CASES, _graph  # noqa: E402

DATA = Path(__file__).parent / "data" / "vnncomp2021"


def layers(rng: np.random.Generator, c: dict[str, np.ndarray], nodes: list[Node], cur: str, n: int,
           depth: int, width: int, seed: int, alt: int) -> str:
    """Append ``depth`` layers to ``nodes`` (weights to ``c``): matmul, + bias, an activation
    (relu/sigmoid/tanh by seed + i), neg, * constant, then that +- the pre-activation (sub where
    alt + i is even); returns the last value's name."""
    f32 = np.float32
    for i in range(depth):
        act = ["relu", "sigmoid", "tanh"][(seed + i) % 3]
        c[f"W{i}"] = (rng.standard_normal((n, width)) / np.sqrt(n)).astype(f32)
        c[f"b{i}"] = (rng.standard_normal(width) * 0.2).astype(f32)
        c[f"k{i}"] = rng.uniform(-1.5, 1.5, width).astype(f32)
        nodes += [Node("matmul", [cur, f"W{i}"], f"m{i}"), Node("add", [f"m{i}", f"b{i}"], f"z{i}"),
                  Node(act, [f"z{i}"], f"a{i}"), Node("neg", [f"a{i}"], f"n{i}"),
                  Node("mul", [f"n{i}", f"k{i}"], f"p{i}"),
                  Node("add" if (alt + i) % 2 else "sub", [f"p{i}", f"z{i}"], f"h{i + 1}")]
        cur, n = f"h{i + 1}", width
    return cur


def chain(seed: int, width: int = 6, depth: int = 3) -> Graph:
    """A random graph over every row of the fast table: sub/div of the input by constants,
    flatten/reshape, then layers of matmul (either side), + bias, an activation, neg, * constant
    and a data + data or data - data sum with the layer's pre-activation."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    c: dict[str, np.ndarray] = {
        "mean": rng.uniform(-0.5, 0.5, (1, 4)).astype(f32),
        "std": np.array([rng.choice([0.5, 3.0, 0.3])], f32),
    }
    nodes = [Node("sub", ["x", "mean"], "s"), Node("div", ["s", "std"], "d"),
             Node("reshape", ["d"], "r", {"shape": (1, 1, 4)}), Node("flatten", ["r"], "h0")]
    cur = layers(rng, c, nodes, "h0", 4, depth, width, seed, 0)
    c["V"] = (rng.standard_normal((2, width)) / np.sqrt(width)).astype(f32)  # (constant on the left)
    nodes += [Node("reshape", [cur], "col", {"shape": (width, 1)}), Node("matmul", ["V", "col"], "y")]
    return Graph([Value("x", (1, 4), "float32")], c, nodes, ["y"]).check()


BOX = [(Fraction(-1), Fraction(1)), (Fraction(0), Fraction(1, 2)), (Fraction(-1, 4), Fraction(1)),
       (Fraction(1, 8), Fraction(3, 8))]


def _ratio_ok(fast, exact):
    """Every fast step >= the exact one (up to float noise); returns the largest fast/exact."""
    worst = 1.0
    for sf, se in zip(fast, exact):
        for a, b in zip(sf, se):
            assert a >= b * (1 - Fraction(1, 10**9)), (float(a), float(b))
            if b > 0:
                worst = max(worst, float(a / b))
    return worst


def test_every_row_is_exercised():
    ops = {n.op for s in range(3) for n in chain(s).nodes}
    ops |= {n.op for fn in CASES for n in _graph(fn)[0].nodes}  # (the function rows, h-fastfns)
    # (the generic linear path's nodes, ``fast_errors.LIN``, and batch_norm: test_fast_errors_lin.py)
    # (and h-fasttf's maximum/minimum/pow and keyed selections: test_fast_errors_tf.py; h-fastln's
    # layer_norm/softmax/log_softmax: test_fast_errors_norm.py; session 35's reduce max:
    # test_fast_errors_step4.py)
    new = set(LIN) | {"batch_norm", "maximum", "minimum", "pow", "layer_norm", "softmax", "log_softmax",
                      "max"}
    assert ops | {n.op for s in range(len(POOLS)) for n in conv_chain(s).nodes} == set(ROWS) - new


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("fmt,dtype", [("binary32", np.float32), ("binary16", np.float16)])
def test_fast_epsilon_holds_on_sampled_float_runs(seed, fmt, dtype):
    covers_float_runs(chain(seed), BOX, fmt, dtype, n=2000, seed=seed)


def test_slope_range_is_the_stated_rule():
    """``errorctx.slope_range`` holds 0 only where f' does (or on an "unknown" bracket): a stable
    active ReLU has slope exactly 1 (it once appended -0 and +0 to every range: sound, up to 60x
    looser on mnist_relu_9_200), so the two columns compare on the same rule."""
    F = errorctx.FUNCTIONS
    assert errorctx.slope_range(F["relu"], Fraction(1), Fraction(2), {}) == (1, 1)
    assert errorctx.slope_range(F["relu"], Fraction(-1), Fraction(2), {}) == (0, 1)
    lo, hi = errorctx.slope_range(F["sigmoid"], Fraction(0), Fraction(1), {})
    assert 0 < lo < hi <= Fraction(1, 4)
    lo, hi = errorctx.slope_range(F["silu"], Fraction(-3), Fraction(-2), {})  # (an unknown bracket)
    assert lo <= -F["silu"].lip and hi >= F["silu"].lip


@pytest.mark.parametrize("fmt", ["binary32", "binary16", "bfloat16"])
def test_fast_is_no_tighter_than_exact(fmt):
    worst = []
    for seed in range(3):
        st = statement(chain(seed), BOX, fmt, ranges="fast", column="exact")
        assert "column" not in st
        exact = propagate(st)
        fast = propagate({**st, "column": "fast"})
        worst.append(_ratio_ok(fast, exact))
    print(fmt, "largest fast/exact step ratio", max(worst))
    assert max(worst) < 100  # (the same rules: looser only where the exact column has forms)


def test_acasxu_fast_matches_exact():
    from torchlean.bridge.onnx import load_onnx
    from torchlean.certificates.property import parse_property
    from torchlean.verify.float32 import hull

    g = load_onnx(DATA / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx")
    box = hull(parse_property((DATA / "acasxu" / "prop_3.vnnlib").read_text()))
    st = statement(g, box, "binary32", ranges="fast", column="exact")
    exact = propagate(st)
    fast = propagate({**st, "column": "fast"})
    assert _ratio_ok(fast, exact) < 1.2


@pytest.fixture(scope="module")
def cert():
    return bound_certificate(chain(1), BOX, "binary32", column="fast")


def _rejected(c, word):
    v = check(c)
    assert not v.ok and word in v.reason, v.reason


def test_default_column_and_untampered(cert):
    assert check(cert).ok
    g = chain(1)
    assert statement(g, BOX, ranges="fast")["column"] == "fast"  # (the default with fast ranges)
    assert "column" not in statement(g, BOX)  # (exact CROWN ranges: the exact column, as before)
    assert statement(cnn(), [(0, 1)] * 64, ranges="fast")["column"] == "fast"  # (conv2d, max_pool2d)
    assert statement(mlp([4, 3, 2], "softmax"), BOX, ranges="fast")["column"] == "fast"  # (h-fastln)
    assert statement(mlp([4, 3, 2], "exp"), BOX, ranges="fast")["column"] == "fast"  # (h-fastfns)
    with pytest.raises(ValueError):
        statement(g, BOX, ranges="crown", column="fast")


def _forge(cert, edit):
    c = copy.deepcopy(cert)
    edit(c)
    c["digest"] = digest(c["statement"])
    return c


def test_shrunk_step_or_epsilon_rejected(cert):
    c = copy.deepcopy(cert)
    c["steps"][4][2] = str(Fraction(c["steps"][4][2]) * Fraction(9, 10))
    _rejected(c, "claimed error")
    c = _forge(cert, lambda c: c["statement"].update(epsilon=[str(Fraction(e) * Fraction(99, 100))
                                                              for e in c["statement"]["epsilon"]]))
    _rejected(c, "epsilon")
    c = copy.deepcopy(cert)
    c["statement"]["epsilon"][0] = "0"
    _rejected(c, "digest")


def test_other_model_rejected(cert):
    other = chain(2).to_dict()
    c = _forge(cert, lambda c: c["statement"].update(graph=other))
    _rejected(c, "fingerprint")
    c = _forge(cert, lambda c: c["statement"].update(graph=other, model=model_id(other)))
    _rejected(c, "")  # (its own steps do not fit the other graph)


def test_column_flipped_or_removed_rejected(cert):
    c = copy.deepcopy(cert)
    del c["statement"]["column"]
    _rejected(c, "digest")
    c = _forge(cert, lambda c: c["statement"].update(column="fastest"))
    _rejected(c, "unknown column")
    c = _forge(cert, lambda c: c["statement"].update(ranges="crown"))
    _rejected(c, "ranges")
    # an exact statement turned fast keeps its digest only if re-signed; then it replays as fast
    c = _forge(cert, lambda c: c["statement"].pop("column"))
    assert check(c).ok or "claimed error" in check(c).reason


def test_unsupported_node_and_wrong_format_rejected(cert):
    # (a cast: the exact column's row, no fast one; a quotient of two data values has one since
    # session 35, softmax since h-fastln)
    g = Graph([Value("x", (1, 4), "float32")], {"W": np.eye(4, dtype=np.float32)},
              [Node("matmul", ["x", "W"], "h"), Node("exp", ["h"], "e"), Node("div", ["h", "e"], "d"),
               Node("cast", ["d"], "y", {"dtype": "float64"})], ["y"]).check()
    st = statement(g, BOX, ranges="fast", column="exact")
    st["column"] = "fast"
    c = {"kind": "errorbound", "statement": st, "digest": digest(st), "steps": []}
    _rejected(c, "fast column: primitive 'cast'")
    c = _forge(cert, lambda c: c["statement"].update(
        format={**c["statement"]["format"], "mbits": 52, "ebits": 11, "name": "binary64"}))
    assert check(c).ok  # (binary64: smaller errors, the claims still hold) ...
    c = _forge(cert, lambda c: c["statement"].update(
        format={**c["statement"]["format"], "mbits": 7, "ebits": 8, "name": "bfloat16"}))
    _rejected(c, "claimed error")  # ... bfloat16: larger ones, rejected


def test_split_certificate_with_fast_leaves():
    g = mlp([4, 8, 2], "tanh", seed=3)
    box = [(-1, 1)] * 4
    one = bound_certificate(g, box, column="fast")
    split = bound_certificate(g, box, column="fast", splits=2)
    assert split["kind"] == "errorbound-split" and split["statement"]["column"] == "fast"
    v = check(split)
    assert v.ok, v.reason
    assert max(epsilons(split)) <= max(epsilons(one))


def test_float_sound_verdict_with_fast_column_and_mutation():
    from torchlean.certificates.float_vnn import check_vnn_float
    from torchlean.certificates.lower import lower
    from torchlean.certificates.property import Atom, Region, Spec
    from torchlean.verify import table
    from torchlean.verify.float32 import verify_float32

    g = mlp([4, 8, 1], "relu", seed=4)
    box = [(Fraction(-1), Fraction(1))] * 4
    hi = max(epsilons(bound_certificate(g, box, column="fast")))
    top = np.max(np.abs(g.constants["W1"])) * 8 * 4 + 1  # (far above any output on the box)
    atom = Atom((Fraction(-1),), -Fraction(float(top)) - 4 * hi, False)
    spec = Spec(4, 1, (Region(tuple(a for a, _ in box), tuple(b for _, b in box), ((atom,),)),))
    net = lower(g.to_dict())
    res = verify_float32(g, table.target(g), spec, timeout=60)
    assert res.verdict == "unsat", res.stats
    leaf = res.cert["errorbound"] if "errorbound" in res.cert else None
    assert leaf is not None and leaf["statement"]["column"] == "fast"
    v = check_vnn_float(res.cert, net, spec, model=model_id(g.to_dict()))
    assert v.ok and FAST_TRUST in v.trusted, v.reason
    bad = copy.deepcopy(res.cert)
    st = bad["errorbound"]["statement"]
    st["epsilon"] = [str(Fraction(e) / 10**6) for e in st["epsilon"]]
    bad["errorbound"]["digest"] = digest(st)
    v = check_vnn_float(bad, net, spec, model=model_id(g.to_dict()))
    assert not v.ok and "epsilon" in v.reason


def test_cli_float32_column_flag(tmp_path, capsys):
    import json

    from torchlean.verify.__main__ import main

    test = DATA / "test"
    net, prop = test / "test_small.onnx", test / "test_small.vnnlib"
    for col in ("exact", "fast"):
        out = tmp_path / f"{col}.json"
        args = [str(net), str(prop), "--float32", "-q", "--float32-column", col, "--cert", str(out)]
        assert main(args) == 0
        assert capsys.readouterr().out.strip() == "unsat (float32-sound, checked)"
        st = json.loads(out.read_text())["errorbound"]["statement"]
        assert st.get("column", "exact") == col
        assert main(["check", str(out), str(net), str(prop)]) == 0
        assert "binary32-sound" in capsys.readouterr().out


def test_cli_floats_bound_column(tmp_path, capsys):
    import json

    from torchlean.floats.__main__ import main

    net, prop = DATA / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx", DATA / "acasxu" / "prop_3.vnnlib"
    out = tmp_path / "c.json"
    assert main(["bound", str(net), "--vnnlib", str(prop), "--column", "fast", "--samples", "200",
                 "--cert", str(out)]) == 0
    assert "replayed by the checker" in capsys.readouterr().out
    st = json.loads(out.read_text())["statement"]
    assert st["column"] == "fast" and st["ranges"] == "fast"
