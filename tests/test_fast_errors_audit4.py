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
