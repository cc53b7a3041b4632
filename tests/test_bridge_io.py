"""IR JSON files (exact round trip, atomic writes, clear errors) and PyTorch state-dict interop."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import torchlean
from torchlean import nn
from torchlean.bridge import from_torch, from_torch_state_dict, load_graph, load_onnx, save_graph
from torchlean.bridge.torch_io import TorchInteropError, to_torch_state_dict
from torchlean.runtime.execute import run_graph
from torchlean.spec import Graph, GraphError, Node, Value

DATA = Path(__file__).parent / "data" / "vnncomp2021"


def _odd_constants_graph():
    """Constants whose bits a careless encoder would lose: NaN payloads, -0.0, subnormals."""
    odd = np.array([np.nan, -0.0, 1e-45, np.inf, -np.inf, 3.14159274], dtype=np.float32)
    odd.view(np.uint32)[0] = 0x7FC00123  # a NaN with a payload
    return Graph(
        inputs=[Value("x", (2, 6), "float32")],
        constants={"odd": odd, "f64": np.array([[0.1, -2.5e-310, 1, 2, 3, 4]], dtype=np.float64),
                   "idx": np.array([[0, 5, 2, 1, 1, 3]] * 2, dtype=np.int64)},
        nodes=[Node("mul", ["x", "odd"], "a"), Node("gather", ["a", "idx"], "b", {"axis": 1}),
               Node("add", ["b", "f64"], "c"), Node("reshape", ["c"], "y", {"shape": (3, 4)})],
        outputs=["y"],
    ).check()


def test_ir_json_round_trip_is_exact(tmp_path):
    g = _odd_constants_graph()
    save_graph(g, tmp_path / "g.json")
    again = load_graph(tmp_path / "g.json")
    assert again.fingerprint() == g.fingerprint()
    assert (again.inputs, again.nodes, again.outputs) == (g.inputs, g.nodes, g.outputs)
    for k, a in g.constants.items():
        b = again.constants[k]
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert again.nodes[3].attrs == {"shape": (3, 4)}
    save_graph(again, tmp_path / "h.json")
    assert (tmp_path / "g.json").read_bytes() == (tmp_path / "h.json").read_bytes()


def test_ir_json_of_an_imported_network(tmp_path):
    g = load_onnx(DATA / "acasxu/ACASXU_run2a_1_1_batch_2000.onnx")
    save_graph(g, tmp_path / "acas.json")
    again = load_graph(tmp_path / "acas.json")
    assert again.fingerprint() == g.fingerprint()
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 1, 1, 5)).astype(np.float32)
    assert np.array_equal(run_graph(again, {"input": x})[0], run_graph(g, {"input": x})[0])
    doc = json.loads((tmp_path / "acas.json").read_text())
    assert sorted(doc) == ["constants", "format", "inputs", "nodes", "outputs", "version"]
    assert doc["constants"]["linear_7_Add_B"]["dtype"] == "float32"


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "g.json"
    save_graph(_odd_constants_graph(), path)
    before = path.read_bytes()

    def boom(*_):
        raise OSError("disk full")

    monkeypatch.setattr("torchlean.bridge.ir_json.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_graph(_odd_constants_graph(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.json"]  # no temporary left behind


@pytest.mark.parametrize("text,msg", [
    ("{", "not JSON"),
    ('{"format": "onnx"}', "not a torchlean-ir document"),
    ('{"format": "torchlean-ir", "version": 7}', "unsupported torchlean-ir version 7"),
    ('{"format": "torchlean-ir", "version": 1, "inputs": []}', "malformed torchlean-ir document"),
])
def test_bad_ir_files_name_the_path(tmp_path, text, msg):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(GraphError, match=f"bad.json: {msg}"):
        load_graph(tmp_path / "bad.json")
    with pytest.raises(GraphError, match="cannot read"):
        load_graph(tmp_path / "missing.json")


def test_a_graph_that_does_not_check_is_refused(tmp_path):
    doc = json.loads(_odd_constants_graph().to_json())
    doc["nodes"][0]["inputs"] = ["x", "nope"]
    (tmp_path / "g.json").write_text(json.dumps(doc))
    with pytest.raises(GraphError, match="'nope' is not defined"):
        load_graph(tmp_path / "g.json")


def test_saving_a_model_instead_of_its_graph_is_a_clear_error(tmp_path):
    """It was AttributeError: 'Sequential' object has no attribute 'check'."""
    model = nn.Sequential(nn.Linear(2, 3))
    with pytest.raises(TypeError, match=r"tl.trace\(model, x\)"):
        save_graph(model, tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()
    graph = torchlean.trace(model, torchlean.zeros(1, 2))
    save_graph(graph, tmp_path / "m.json")
    assert load_graph(tmp_path / "m.json").fingerprint() == graph.fingerprint()


# -- torch -------------------------------------------------------------------------------------

def test_missing_torch_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(TorchInteropError, match="optional dependency"):
        to_torch_state_dict(nn.Linear(2, 3))
    # numpy state dicts need no torch at all
    m = nn.Linear(2, 3)
    sd = {"weight": np.ones((3, 2), np.float32), "bias": np.zeros(3, np.float32)}
    assert np.array_equal(from_torch_state_dict(m, sd).weight.data, sd["weight"])


@pytest.mark.torch
def test_state_dict_round_trip_is_exact():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    m = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    from_torch_state_dict(m, tm.state_dict())
    back = to_torch_state_dict(m)
    assert back.keys() == tm.state_dict().keys()
    for k, v in tm.state_dict().items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v)
    tm2 = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    tm2.load_state_dict(back)
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    ref = tm2(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(m(torchlean.tensor(x)).data, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.torch
def test_state_dict_shape_and_name_mismatches_are_refused():
    torch = pytest.importorskip("torch")
    m = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    with pytest.raises(Exception, match="2.weight has shape"):
        from_torch_state_dict(m, torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(),
                                                     torch.nn.Linear(5, 4)).state_dict())
    good = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).state_dict()
    with pytest.raises(KeyError, match="unexpected \\['x'\\]"):
        from_torch_state_dict(m, {**good, "x": torch.ones(1)})


@pytest.mark.torch
def test_from_torch_module():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layers = [torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Dropout(0.1),
              torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LeakyReLU(0.2)), torch.nn.Linear(8, 3),
              torch.nn.Softmax(dim=1)]
    if hasattr(nn, "Conv2d") and hasattr(nn, "BatchNorm2d"):
        layers = [torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.BatchNorm2d(2), torch.nn.ReLU(),
                  torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4, 12), *layers[1:]]
    tm = torch.nn.Sequential(*layers).eval()
    m = from_torch(tm)
    assert not m.training
    x = np.random.default_rng(2).standard_normal((2, 1, 3, 4)).astype(np.float32)
    ref = tm(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(m(torchlean.tensor(x)).data, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.torch
def test_from_torch_names_every_unsupported_module():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LSTM(2, 2), torch.nn.Hardswish())
    with pytest.raises(TorchInteropError, match="unsupported torch module\\(s\\): Hardswish, LSTM"):
        from_torch(tm)


@pytest.mark.torch
def test_from_torch_conv1d_and_batchnorm1d():
    """Conv1d (stride, padding, dilation, groups) and BatchNorm1d (running statistics, eval and
    train) import with torch's meaning; outputs match torch in float32."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.Sequential(
        torch.nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2), torch.nn.BatchNorm1d(6),
        torch.nn.ReLU(), torch.nn.Conv1d(6, 3, 2, dilation=2), torch.nn.Flatten(), torch.nn.Linear(3 * 4, 5),
        torch.nn.BatchNorm1d(5))
    x = np.random.default_rng(3).standard_normal((4, 4, 11)).astype(np.float32)
    tm.train()
    tm(torch.from_numpy(x))  # move the running statistics off their initial values
    tm.eval()
    m = from_torch(tm)
    assert not m.training
    ref = tm(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(m(torchlean.tensor(x)).data, ref, rtol=1e-5, atol=1e-5)
    tm.train()
    m = from_torch(tm)
    ref = tm(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(m(torchlean.tensor(x)).data, ref, rtol=1e-4, atol=1e-5)
