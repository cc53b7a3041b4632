"""Every VNN-COMP 2021 network in tests/data imports and evaluates like onnxruntime.

Inputs are drawn from the boxes of the properties the network is paired with (expected.csv), so
the comparison covers the region the verifier works on.
"""

import copy
import csv
from pathlib import Path

import numpy as np
import pytest

from torchlean.bridge import load_onnx, parse_vnnlib
from torchlean.runtime.execute import run_graph

ort = pytest.importorskip("onnxruntime")

DATA = Path(__file__).parent / "data" / "vnncomp2021"
NETS = sorted(DATA.glob("*/*.onnx"))


def _properties(net: Path) -> list[Path]:
    """The .vnnlib files paired with ``net`` in its folder's instance lists."""
    props = set()
    for table in net.parent.glob("*.csv"):
        with open(table) as f:
            for row in csv.reader(f):
                if row and row[0] == net.name and len(row) > 1:
                    props.add(net.parent / row[1])
    return sorted(props)


def _session(net: Path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(net), opts, providers=["CPUExecutionProvider"])


def test_every_network_is_covered():
    assert len(NETS) == 28  # 18 ACAS Xu, 2 MNIST, 5 test networks, 2 VeriVital conv nets, 1 oval21 CIFAR net
    assert all(_properties(n) for n in NETS)


@pytest.mark.parametrize("net", NETS, ids=lambda p: p.stem)
def test_matches_onnxruntime_on_property_boxes(net):
    graph = load_onnx(net)
    (inp,) = graph.inputs
    sess = _session(net)
    assert [i.name for i in sess.get_inputs()] == [inp.name]
    assert [o.name for o in sess.get_outputs()] == graph.outputs
    every = copy.deepcopy(graph)
    every.outputs = [n.output for n in graph.nodes]
    rng = np.random.default_rng(0)
    boxes = [b for p in _properties(net) for b in parse_vnnlib(p).boxes]
    same = 0
    for k in range(12):
        lo, hi = boxes[k % len(boxes)]
        x = rng.uniform(lo, hi).astype(np.float32).reshape(inp.shape)
        (ref,) = sess.run(None, {inp.name: x})
        (out,) = run_graph(graph, {inp.name: x})
        assert out.dtype == ref.dtype == np.float32 and out.shape == ref.shape
        # float32 sums in another order: within 1e-6 of the largest value the network computes
        scale = max(float(np.abs(v).max()) for v in run_graph(every, {inp.name: x}))
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6 * scale)
        same += np.array_equal(out, ref)
    if "test_" in net.name and "sat" not in net.name:  # 1-wide MatMul nets: one product per sum
        assert same == 12


@pytest.mark.parametrize("net", [DATA / "acasxu/ACASXU_run2a_1_1_batch_2000.onnx",
                                 DATA / "mnistfc/mnist-net_256x2.onnx"], ids=lambda p: p.stem)
def test_weights_are_the_exact_initializer_bits(net):
    import onnx
    from onnx import numpy_helper

    graph = load_onnx(net)
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(net)).graph.initializer}
    for name, arr in graph.constants.items():
        src = inits.get(name)
        if src is None:  # a Gemm weight folded with its transpose
            src = inits[name.rsplit(".T", 1)[0]].T
        assert arr.dtype == src.dtype and np.array_equal(arr.view(np.uint32), src.view(np.uint32))


def test_acas_graph_shape():
    g = load_onnx(DATA / "acasxu/ACASXU_run2a_1_1_batch_2000.onnx")
    assert [n.op for n in g.nodes][:2] == ["sub", "flatten"]
    assert [n.op for n in g.nodes].count("relu") == 6
    assert g.values[g.outputs[0]].shape == (1, 5)
    assert g.inputs[0].shape == (1, 1, 1, 5)
