"""Small test models for the floats tests (graphs built directly in the IR)."""

from __future__ import annotations

import numpy as np

from torchlean.spec.graph import Graph, Node, Value


def mlp(sizes: list[int], act: str, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    consts, nodes, cur = {}, [], "x"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        consts[f"W{i}"] = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        consts[f"b{i}"] = (rng.standard_normal(b) * 0.1).astype(np.float32)
        nodes += [Node("matmul", [cur, f"W{i}"], f"h{i}"), Node("add", [f"h{i}", f"b{i}"], f"z{i}")]
        cur = f"z{i}"
        if i < len(sizes) - 2:
            nodes.append(Node(act, [cur], f"a{i}"))
            cur = f"a{i}"
    return Graph([Value("x", (1, sizes[0]), "float32")], consts, nodes, [cur]).check()


def cnn(seed: int = 0) -> Graph:
    """conv2d(1->4, 3x3) + bias, relu, max_pool 2x2, flatten, linear 36 -> 3 on a 1x8x8 input."""
    rng = np.random.default_rng(seed)
    consts = {
        "k": (rng.standard_normal((4, 1, 3, 3)) / 3).astype(np.float32),
        "kb": (rng.standard_normal((1, 4, 1, 1)) * 0.1).astype(np.float32),
        "W": (rng.standard_normal((36, 3)) / 6).astype(np.float32),
        "b": (rng.standard_normal(3) * 0.1).astype(np.float32),
    }
    nodes = [
        Node("conv2d", ["x", "k"], "c"), Node("add", ["c", "kb"], "cb"), Node("relu", ["cb"], "r"),
        Node("max_pool2d", ["r"], "p", {"kernel_size": (2, 2), "stride": (2, 2)}),
        Node("flatten", ["p"], "f"), Node("matmul", ["f", "W"], "m"), Node("add", ["m", "b"], "y"),
    ]
    return Graph([Value("x", (1, 1, 8, 8), "float32")], consts, nodes, ["y"]).check()
