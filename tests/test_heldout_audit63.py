"""Audit audit63: hostile artifacts sized to exhaust time or memory (TRUST_BOUNDARIES.md, "Audit
audit63").

Each hostile input is small (a few KB) and, before the fixes, made the trusted checker or a CLI
run past its deadline with gigabytes of memory: a float format with a 34-bit exponent field in an
errorbound certificate (2^(2^33) built, 3.4 GB), a 10^7-bit significand (past every deadline), a
certificate graph broadcasting its input to 2^28 elements (11 GB, > 100 s past a 20 s deadline), a
178-byte ONNX model expanding its input to 2^28 elements (10.6 GB under `verify`), and a proof
artifact whose refutation squares a 10,000-atom sum, replayed without any deadline by `pytest
--torchlean-check` (and `proofs show`). Whatever would run away on the old code runs in a child
process with its address space capped (2 GB) and a wall-clock timeout, so the suite never hangs:
the old behaviour fails the test as a MemoryError, a timeout or a missing refusal.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import time
from fractions import Fraction as Q
from pathlib import Path

import pytest

from torchlean.certificates import check
from torchlean.certificates.core import digest
from torchlean.certificates.rounding import FORMATS, Format, get_format

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "torchlean" / "proofs" / "library"


def _limited() -> None:  # (child processes: 2 GB of address space; numpy/onnx need ~1 GB)
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def _run(args: list[str], timeout: float, cwd: Path | None = None) -> tuple[int, str, float]:
    """(exit status, stdout + stderr, seconds) of a capped child; a timeout is status -9."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    t0 = time.monotonic()
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env,
                           preexec_fn=_limited, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        return -9, f"TIMEOUT after {timeout} s: {e.stdout or ''}{e.stderr or ''}", time.monotonic() - t0
    return p.returncode, p.stdout + p.stderr, time.monotonic() - t0


def _py(code: str, timeout: float = 20) -> tuple[int, str, float]:
    return _run([sys.executable, "-c", textwrap.dedent(code)], timeout)


# -- 1. float formats: exponent and significand fields ----------------------------------------

def test_format_fields_are_bounded_and_every_used_format_still_reads():
    for ebits, mbits in ((21, 23), (34, 23), (8, 1025), (8, 10 ** 7)):
        with pytest.raises(ValueError, match="ebits <= 20"):
            Format("x", ebits, mbits)
        with pytest.raises(ValueError):
            get_format(f"e{ebits}m{mbits}")
    # what the project uses: the named formats, binary128/256, the lemmas' wide sorts (13, 110)
    for f in FORMATS.values():
        assert Format.from_dict(f.to_dict()) == f
    for ebits, mbits in ((15, 112), (19, 236), (13, 110), (20, 1024), (11, 60), (12, 3)):
        assert Format("w", ebits, mbits).max_finite > 1


@pytest.fixture(scope="module")
def eb_cert():
    """A small, genuine errorbound certificate (the shared test network on [0, 1], binary32)."""
    from torchlean.bridge.onnx import load_onnx
    from torchlean.floats.errorbound import bound_certificate

    g = load_onnx(ROOT / "tests/data/vnncomp2021/test/test_small.onnx")
    cert = bound_certificate(g, [(Q(0), Q(1))], "binary32")
    assert check(cert).ok
    return cert


def _forged(cert, tmp_path, name, change):
    c = json.loads(json.dumps(cert))
    change(c["statement"])
    c["statement"]["model"] = digest(c["statement"]["graph"])
    c["digest"] = digest(c["statement"])
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(c))
    return path


@pytest.mark.parametrize("ebits,mbits", [(34, 23), (8, 10 ** 7)])
def test_errorbound_certificate_with_a_huge_format_is_refused_at_once(eb_cert, tmp_path, ebits, mbits):
    """Old: ebits 34 built 2^(2^33) (3.4 GB; here the capped child's MemoryError, exit 2); mbits
    10^7 ran past every deadline (here the child's timeout)."""
    fmt = {"name": "x", "ebits": ebits, "mbits": mbits, "subnormals": True, "style": "ieee"}
    path = _forged(eb_cert, tmp_path, "fmt", lambda s: s.update(format=fmt))
    rc, out, secs = _run([sys.executable, "-m", "torchlean.floats", "check", str(path), "--timeout", "5"], 20)
    assert rc == 1 and out.startswith("REJECTED") and "bad format" in out, out[-500:]
    assert "accepted" not in out and "Traceback" not in out and secs < 15


# -- 2. the checker's lowering of a certificate's graph ------------------------------------------

def test_errorbound_certificate_graph_cannot_demand_a_huge_value(eb_cert, tmp_path):
    """Old: 11 GB and > 100 s past a 20 s deadline (here: the capped child's MemoryError or timeout)."""
    def bcast(s):
        x = s["graph"]["inputs"][0]["name"]
        s["graph"]["nodes"] = [{"op": "broadcast_to", "inputs": [x], "output": "b",
                                "attrs": {"shape": [1 << 28]}},
                               {"op": "sum", "inputs": ["b"], "output": "r", "attrs": {}}]
        s["graph"]["outputs"] = ["r"]
        s["graph"]["constants"] = {}
        s["epsilon"] = ["1"]
    path = _forged(eb_cert, tmp_path, "bcast", bcast)
    rc, out, secs = _run([sys.executable, "-m", "torchlean.floats", "check", str(path), "--timeout", "5"], 20)
    assert rc == 1 and out.startswith("REJECTED") and "over the lowering's limit" in out, out[-500:]
    assert "Traceback" not in out and secs < 15


def test_every_growing_row_of_the_lowering_is_capped_before_it_builds():
    """Each row that can make a value larger than its inputs, and the lowering's total, refused
    (``Unsupported`` naming the limit) before the elements exist; a legitimate graph lowers."""
    rc, out, _ = _py("""
        import base64, struct, sys, time
        from torchlean.certificates.lower import lower
        from torchlean.certificates import bound_graph
        MAX_ELEMENTS = bound_graph.MAX_ELEMENTS = 1 << 16  # (read at each check: small cases suffice)
        def ir(inputs, nodes, outputs, constants=None):
            return {"format": "torchlean-ir", "inputs": [{"name": n, "shape": s, "dtype": "float32"}
                    for n, s in inputs], "constants": constants or {}, "nodes": nodes, "outputs": outputs}
        def node(op, ins, out, **attrs):
            return {"op": op, "inputs": ins, "output": out, "attrs": attrs}
        def w(shape, n):
            data = base64.b64encode(struct.pack(f"<{n}f", *[1.0] * n)).decode()
            return {"dtype": "float32", "shape": shape, "data": data}
        N, P = 1 << 16, 1 << 14  # (N * N and P * P: far past any cap)
        cases = {
            "input": ir([("x", [1 << 30])], [node("relu", ["x"], "r")], ["r"]),
            "broadcast_to": ir([("x", [1])], [node("broadcast_to", ["x"], "b", shape=[1 << 28]),
                                              node("sum", ["b"], "r")], ["r"]),
            "add": ir([("x", [N, 1]), ("y", [1, N])], [node("add", ["x", "y"], "r")], ["r"]),
            "matmul": ir([("x", [N, 1]), ("y", [1, N])], [node("matmul", ["x", "y"], "r")], ["r"]),
            "conv2d": ir([("x", [1, 1, 1, 1])], [node("conv2d", ["x", "k"], "r", padding=[P, P])], ["r"],
                         {"k": w([1, 1, 1, 1], 1)}),
            "max_pool2d": ir([("x", [1, 1, 1, 1])], [node("max_pool2d", ["x"], "r", kernel_size=1, stride=1,
                             padding=[P, P])], ["r"]),
            "concat": ir([("x", [1 << 12])], [node("concat", ["x"] * 200, "r", axis=0)], ["r"]),
            "total": ir([("x", [1])], [node("broadcast_to", ["x"], f"b{i}", shape=[1 << 15])
                                       for i in range(5)],
                        ["b4"]),
            "constant": ir([("x", [1])], [node("add", ["x", "k"], "r")], ["r"],
                           {"k": {**w([1], 1), "shape": [1 << 30]}}),
        }
        for name, doc in cases.items():
            t0 = time.monotonic()
            try:
                lower(doc)
                print(name, "LOWERED")
            except Exception as e:
                print(name, type(e).__name__, "limit" in str(e) and str(MAX_ELEMENTS) in str(e))
            print("time", name, round(time.monotonic() - t0, 2), file=sys.stderr)
        ok = lower(ir([("x", [4, 8])], [node("matmul", ["x", "k"], "y"), node("relu", ["y"], "r")], ["r"],
                      {"k": w([8, 3], 24)}))
        print("legit", len(ok.outputs))
    """, timeout=20)
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines() if " " in line)
    for name in ("input", "broadcast_to", "add", "matmul", "conv2d", "max_pool2d", "concat", "total",
                 "constant"):
        assert lines.get(name) == "Unsupported True", (name, out[-800:])
    assert lines.get("legit") == "12" and rc == 0, out[-800:]


# -- 3. the ONNX importer under `verify` ------------------------------------------------------------

def _onnx_models(tmp_path: Path) -> dict[str, Path]:
    import numpy as np
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    def save(name, nodes, inits, shape=(1, 1)):
        g = h.make_graph(nodes, name, [h.make_tensor_value_info("X", T.FLOAT, list(shape))],
                         [h.make_tensor_value_info("Y", T.FLOAT, [1, 1])], inits)
        m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
        m.ir_version = 8
        onnx.save(m, str(tmp_path / f"{name}.onnx"))
        return tmp_path / f"{name}.onnx"

    ax = nh.from_array(np.array([1], np.int64), "ax")
    big = nh.from_array(np.array([1, 1 << 28], np.int64), "s")
    out = {
        "expand_input": save("expand_input", [h.make_node("Expand", ["X", "s"], ["e"]),
                                              h.make_node("ReduceSum", ["e", "ax"], ["Y"])], [big, ax]),
        "expand_const": save("expand_const", [h.make_node("Expand", ["c", "s"], ["e"]),
                                              h.make_node("ReduceSum", ["e", "ax"], ["r"]),
                                              h.make_node("Add", ["X", "r"], ["Y"])],
                             [nh.from_array(np.ones((1, 1), np.float32), "c"), big, ax]),
        "input": save("input", [h.make_node("ReduceSum", ["X", "ax"], ["Y"])], [ax], shape=(1, 1 << 30)),
    }
    nodes, prev = [], "X"  # 24 doublings (2^24 elements), then full-size values past 2^26 in all
    for i in range(24):
        nodes.append(h.make_node("Concat", [prev, prev], [f"c{i}"], axis=1))
        prev = f"c{i}"
    for j in range(6):
        nodes.append(h.make_node("Relu", [prev], [f"r{j}"]))
        prev = f"r{j}"
    nodes.append(h.make_node("ReduceSum", [prev, "ax"], ["Y"]))
    out["chain"] = save("chain", nodes, [ax])
    return out


PROP = """(declare-const X_0 Real)
(declare-const Y_0 Real)
(assert (>= X_0 0.0))
(assert (<= X_0 1.0))
(assert (<= Y_0 -100.0))
"""


def test_onnx_import_bounds_every_value_and_their_total(tmp_path):
    """Old: the Expand of the input imported (a node, nothing allocated) and `verify` then took
    10.6 GB; the chain imported and ran. Now each is a one-line import error, exit 2."""
    models = _onnx_models(tmp_path)
    code = f"""
        from torchlean.bridge.onnx import load_onnx
        for name, path in {json.dumps({k: str(v) for k, v in models.items()})}.items():
            try:
                load_onnx(path)
                print(name, "IMPORTED")
            except Exception as e:
                print(name, type(e).__name__, "2**26" in str(e))
        print("legit", load_onnx({str(ROOT / "tests/data/vnncomp2021/test/test_small.onnx")!r}).outputs != [])
    """
    rc, out, _ = _py(code, timeout=30)
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines() if " " in line)
    for name in models:
        assert lines.get(name) == "OnnxImportError True", (name, out[-800:])
    assert lines.get("legit") == "True", out[-800:]


def test_verify_on_a_tiny_model_expanding_its_input_is_a_one_line_error(tmp_path):
    """The 178-byte model end to end: `verify` took 10.6 GB and 75 s for --timeout 20 (2^28
    elements; here the capped child's MemoryError); now a one-line import error, exit 2."""
    models = _onnx_models(tmp_path)
    prop = tmp_path / "p.vnnlib"
    prop.write_text(PROP)
    rc, out, secs = _run([sys.executable, "-m", "torchlean.verify", str(models["expand_input"]), str(prop),
                          "--timeout", "10"], 30)
    assert rc == 2 and out.startswith("error:") and "2**26" in out, out[-500:]
    assert len(out.strip().splitlines()) == 1, out[-500:]
    assert "unsat" not in out and secs < 15


# -- 4. proof artifacts replayed without a deadline ------------------------------------------------

def test_pytest_plugin_replay_has_a_deadline(tmp_path):
    """A project's artifact whose farkas leaf squares a sum of 10,000 distinct atoms (50 million
    monomials): `pytest --torchlean-check` replayed it with no deadline (2.5 GB after 150 s and
    growing). Now the item fails past its deadline, not accepted."""
    art = json.loads((LIBRARY / "forward.layer_norm.json").read_text())
    leaf = art["certificate"]["tree"]["else"]
    assert leaf["leaf"] == "farkas" and leaf["coeffs"][1][0][0] == "sq"
    leaf["coeffs"][1][0][1] = "(+ " + " ".join(f"(tl_sqrt {i})" for i in range(1, 10001)) + ")"
    (tmp_path / "forward.layer_norm.json").write_text(json.dumps(art))
    ob = art["obligation"]
    code = f"""
        import time, types, json
        from pathlib import Path
        from torchlean.proofs import pytest_plugin
        from torchlean.proofs.obligation import Obligation
        ob = Obligation(kind="forward", subject="primitive:layer_norm", name="forward.layer_norm",
                        smtlib=json.loads({json.dumps(json.dumps(ob["smtlib"]))}),
                        data={{"shapes": [[1, 2], [2], [2]], "attrs": {{}}}})
        assert ob.hash == {ob["hash"]!r}, "obligation rebuilt differently"
        pytest_plugin.CHECK_TIMEOUT = 2.0
        item = types.SimpleNamespace(directory=Path({str(tmp_path)!r}), obligation=ob, strict=False)
        t0 = time.monotonic()
        try:
            pytest_plugin.ProofItem.runtest(item)
            print("PASSED")
        except AssertionError as e:
            print("FAILED", round(time.monotonic() - t0, 1), str(e)[:120])
    """
    rc, out, secs = _py(code, timeout=25)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    assert last.startswith("FAILED") and "deadline" in last, out[-800:]
    assert float(last.split()[1]) < 8


# -- 5. a split tree's structure pass -------------------------------------------------------------

def test_split_tree_walk_reads_the_deadline():
    """A preorder tree of 200,000 valid leaves (a chain of input splits): the checker listed every
    node (``walk``) and every leaf's atom choice (``combos_used``) before its first deadline read
    (a 58 MB tree of 10^6 leaves: 43 s and 1.5 GB for `verify check --timeout 5`). Now a deadline
    0.2 s away ends it at once; with time to spare a 300-leaf chain of the same leaves is
    accepted (the test network's output stays far below the property's 100 on the whole box)."""
    from torchlean.certificates.bounds import check_vnn
    from torchlean.verify.table import load_instance, unsat_cert

    net = ROOT / "tests/data/vnncomp2021/test/test_small.onnx"
    target, spec = load_instance(str(net), str(net.with_suffix(".vnnlib")))
    leaf = ["leaf", [[0, "1"]]]

    def chain(k):  # split the upper part at -1 + i/k each time; every lower part is a leaf
        tree = []
        for i in range(1, k):
            tree += [["split", 0, f"{-k + i}/{k}"], leaf]
        return tree + [leaf]
    t0 = time.monotonic()
    v = check_vnn(unsat_cert(target, spec, [chain(200_000)]), target.bg, spec, mode="exact",
                  deadline=time.monotonic() + 0.2)
    took = time.monotonic() - t0
    assert not v.ok and "deadline" in v.reason and took < 1.5, (v.reason, took)
    v = check_vnn(unsat_cert(target, spec, [chain(300)]), target.bg, spec, mode="exact",
                  deadline=time.monotonic() + 60)
    assert v.ok and v.fully_checked and v.checked == 300, v.reason
