"""Audit of the fast rounding-error column's h-fasttf rows (products of two data operands,
where/gather/embedding by a constant key, maximum/minimum, pow): the holes found, each test
failing before its fix.

Hole 1: a gather/embedding index, or a where condition, held in a FLOAT constant is cast to the
format by the float run before it is used (``floats.emulate``: every float constant enters
rounded), but the fast column read the key by its exact value. fp8 e4m3 rounds index 17 to 16,
e5m2 9 to 8, bfloat16 257 to 256, fp16 2049 to 2048: the float run reads another element, the
certificate claimed ~1e-301. A folded where (all constants) with a float condition 1e-30 is 0 in
fp16: the float run selects the other branch (error 1, ε 5e-4 certified). The exact column reads a
key with a cast error as data and refuses; the fast column now requires a float key's entries
to be values of the format (``fast_errors.propagate``).

Hole 2: ``test_empty_matmul_of_two_data_operands``.
"""

from __future__ import annotations

import copy
from fractions import Fraction

import numpy as np
import pytest
from fast_column import both_columns, rejected

from torchlean.certificates import check
from torchlean.certificates.core import Rejected, digest
from torchlean.certificates.errorbound import model_id, propagate
from torchlean.floats.emulate import emulate
from torchlean.floats.errorbound import bound_certificate, epsilons, statement
from torchlean.spec.graph import Graph, Node, Value

Q = Fraction
#: per format, a float index the cast moves to another integer (17 -> 16, 9 -> 8, ...)
MOVED = {"float8_e4m3fn": 17.0, "float8_e5m2": 9.0, "bfloat16": 257.0, "binary16": 2049.0}


def _gather(idx: np.ndarray) -> tuple[Graph, np.ndarray]:
    """y = x[0, idx] (gather on axis 1), x one-hot at the exact index's element."""
    k = int(idx.ravel()[0])
    x = np.zeros((1, k + 3))
    x[0, k] = 1.0
    g = Graph([Value("x", x.shape, "float32")], {"I": idx},
              [Node("gather", ["x", "I"], "y", {"axis": 1})], ["y"]).check()
    return g, x


@pytest.mark.parametrize("fmt", sorted(MOVED))
def test_float_index_moved_by_the_cast_refused(fmt):
    """The float run (emulated) reads another element: error 1; the fast column must not
    certify it (before the fix: accepted with ε ~1e-301)."""
    g, x = _gather(np.array([[MOVED[fmt]]], np.float32))
    assert emulate(g, {"x": x}, fmt, "rne")[0].ravel()[0] == 0.0  # (the real value is 1)
    st = statement(g, [(Q(v), Q(v)) for v in x.ravel()], fmt, ranges="fast", column="fast")
    with pytest.raises(Rejected, match="not exact"):
        propagate(st)


def test_float_index_swapped_into_a_certificate_rejected():
    """A certificate for an int64 index 17 (accepted in fp8: integers are not cast, and its ε
    covers the emulated run), its graph's index swapped to float32 17 and re-fingerprinted:
    the checker rejects it."""
    g, x = _gather(np.array([[17]], np.int64))
    box = [(Q(v), Q(v)) for v in x.ravel()]
    cert = bound_certificate(g, box, "float8_e4m3fn", column="fast")
    assert check(cert).ok
    err = abs(emulate(g, {"x": x}, "float8_e4m3fn", "rne")[0].ravel()[0] - 1.0)
    assert err <= float(epsilons(cert)[0])
    c = copy.deepcopy(cert)
    bad, _ = _gather(np.array([[17.0]], np.float32))
    c["statement"]["graph"] = bad.to_dict()
    c["statement"]["model"] = model_id(c["statement"]["graph"])
    c["digest"] = digest(c["statement"])
    rejected(c, "not exact")


def test_folded_where_float_condition_refused():
    """where(C, A, B) of constants only (folded), C = [1e-30, 1] float32: fp16 casts 1e-30 to 0,
    so the float run selects B there (error 1); before the fix ε 4.9e-4 was certified."""
    g = Graph([Value("x", (1, 2), "float32")],
              {"C": np.array([1e-30, 1.0], np.float32), "A": np.ones(2, np.float32),
               "B": np.zeros(2, np.float32)},
              [Node("where", ["C", "A", "B"], "w", {}), Node("add", ["x", "w"], "y", {})], ["y"]).check()
    assert list(emulate(g, {"x": np.zeros((1, 2))}, "binary16", "rne")[0].ravel()) == [0.0, 1.0]
    st = statement(g, [(Q(0), Q(0))] * 2, "binary16", ranges="fast", column="fast")
    with pytest.raises(Rejected, match="not exact"):
        propagate(st)
    # (binary32 keeps 1e-30: the same statement there is accepted, ε covering the run exactly)
    st32 = statement(g, [(Q(0), Q(0))] * 2, "binary32", ranges="fast", column="fast")
    out = propagate(st32)[-1]
    run = emulate(g, {"x": np.zeros((1, 2))}, "binary32", "rne")[0].ravel()
    assert all(abs(Q(float(r)) - 1) <= e for r, e in zip(run, out))


def test_empty_matmul_of_two_data_operands():
    """Hole 2 (a crash, not a refusal): a data x data matmul with inner size 0, (1, 0) @ (0, 1),
    has no products; ``_Walk.fits`` put np.max of its empty magnitudes in its message, and
    raised ValueError before the fix. Its output is 0 exactly in floats and reals: both columns
    accept, the fast steps >= the exact ones."""
    g = Graph([Value("x", (1, 4), "float32")], {},
              [Node("slice", ["x"], "a", {"index": [(0, 1, 1), (0, 0, 1)]}),
               Node("reshape", ["x"], "r", {"shape": (4, 1)}),
               Node("slice", ["r"], "b", {"index": [(0, 0, 1), (0, 1, 1)]}),
               Node("matmul", ["a", "b"], "m", {}), Node("add", ["m", "x"], "y", {})], ["y"]).check()
    both_columns(g, [(Q(-1), Q(1))] * 4, "binary16")


#: (format, mode) pairs the h-fasttf tests do not sample: fp8 both kinds, directed modes
EMULATED = [("float8_e5m2", "rtz"), ("float8_e4m3fn", "rne"), ("binary16", "rup"), ("bfloat16", "rdn")]


#: one product layer on the (exact) input, so its rounding is most of ε: x[:3] * x[3:], x[:3]
#: squared, and (2, 3) @ its transpose (a matmul reading one operand twice)
BARE = {
    "prod": Graph([Value("x", (1, 6), "float32")], {},
                  [Node("slice", ["x"], "a", {"index": [(0, 1, 1), (0, 3, 1)]}),
                   Node("slice", ["x"], "b", {"index": [(0, 1, 1), (3, 6, 1)]}),
                   Node("mul", ["a", "b"], "p", {}), Node("mul", ["a", "a"], "q", {}),
                   Node("concat", ["p", "q"], "y", {"axis": 1})], ["y"]).check(),
    "mm": Graph([Value("x", (1, 6), "float32")], {},
                [Node("reshape", ["x"], "r", {"shape": (2, 3)}),
                 Node("transpose", ["r"], "t", {"axes": (1, 0)}),
                 Node("matmul", ["r", "t"], "y", {})], ["y"]).check(),
}


@pytest.mark.parametrize("name", ["prod", "mm", "mul", "matmul", "batched", "where", "maximum"])
@pytest.mark.parametrize("fmt,mode", EMULATED)
def test_new_rows_cover_emulated_runs(name, fmt, mode):
    """No hole found in these rows (the audit's record): the fast ε (when the statement is not
    refused) is above the bit-exact emulated float run minus the real value (mpmath, 40 digits)
    at the box's corners and random points of the format, in fp8 and directed modes; the fast
    column does not accept where the exact one refuses, except maximum/minimum with a constant
    operand (the exact row takes data only)."""
    from test_fast_errors_tf import GRAPHS

    from torchlean.floats.emulate import Emulator
    from torchlean.spec.exact import evaluate

    g = BARE[name] if name in BARE else GRAPHS[name]
    box = [(Q(-1, 2), Q(1, 2))] * 6
    try:
        cert = bound_certificate(g, box, fmt, mode=mode, kernel_ulps=Q(1), column="fast")
    except Rejected:
        with pytest.raises(Rejected):
            propagate(statement(g, box, fmt, mode, kernel_ulps=Q(1), ranges="fast"))
        return
    assert check(cert).ok
    eps = [Q(e) for e in epsilons(cert)]
    rng = np.random.default_rng(4)
    for t in range(10):
        x = rng.uniform(-0.5, 0.5, (1, 6)) if t > 1 else np.full((1, 6), (-0.5, 0.5)[t])
        x = np.clip(np.vectorize(Emulator(fmt, mode).from_float)(x), -0.5, 0.5)  # (format values)
        y = emulate(g, {"x": x}, fmt, mode)[0].ravel()
        r = evaluate(g, {"x": x}, digits=40)[0].ravel()
        for a, b, e in zip(y, r, eps):
            b = Q(str(b))  # (40 digits: within |b| 1e-39 of the real value)
            assert abs(Q(float(a)) - b) <= e + abs(b) / 10**38, (a, float(b), float(e))
