"""audit60: held-out-like instances of the shared VNN-COMP benchmarks, generated here, through the CLI.

    nice python bench/heldout_like.py [--timeout 40] [--only SUBSTR] [--keep DIR] [--seed 0]

Builds (deterministically, in a temp dir) networks that vary what the held-out instances plausibly
vary -- other depths, widths, activations, channel counts, strides, pads, window lengths, block
counts -- written in the ONNX styles the shared files use (opsets 8-14, Gemm transB=1 / transB=0,
MatMul+Add with the bias on either side, Sub/Div normalisation from Constant nodes or initializers,
Flatten or Reshape, weights as Constant nodes, a symbolic batch dimension, NCHW or flat or
[1, n, 1] inputs, Dropout, a zero Pad before AveragePool) and VNN-LIB properties in the shared
styles (top-level conjunctions, OR of ANDs over outputs, several input boxes in one OR, a
two-sided output band).  Each case runs ``python -m torchlean.verify`` and is classified:

- ``expected = sat``: a sampled point, rounded to float32, violates the property with a margin in
  onnxruntime (float32) and in a float64 torch evaluation of the same layers (the reference);
- ``expected = unsat``: interval bounds in float64 (plus a margin far above float64 error) prove it;
- ``expected = ?``: a threshold between the sampled maximum and the interval bound; only a sat's
  counterexample is checked.

A sat answer is always re-checked: its X must lie in a box and violate the property in the float64
reference and in onnxruntime, else the row is WRONG.  An unsat on an ``expected = sat`` case is WRONG.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Layer = tuple  # (kind, *params): see forward()


# ---------------------------------------------------------------- reference semantics (float64)

def forward(layers: list[Layer], x: torch.Tensor) -> torch.Tensor:
    """The layers on a batch x (float64): the reference the ONNX file must agree with."""
    for L in layers:
        k = L[0]
        if k == "sub":
            x = x - torch.as_tensor(L[1])
        elif k == "div":
            x = x / torch.as_tensor(L[1])
        elif k in ("flatten", "reshape"):
            x = x.reshape(x.shape[0], -1)
        elif k == "linear":
            x = x @ torch.as_tensor(L[1]).T + torch.as_tensor(L[2])
        elif k == "conv":
            x = F.conv2d(x, torch.as_tensor(L[1]), torch.as_tensor(L[2]), stride=L[3], padding=L[4])
        elif k == "act":
            x = {"Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh}[L[1]](x)
        elif k == "maxpool":
            x = F.max_pool2d(x, L[1], L[2])
        elif k == "avgpool":
            x = F.avg_pool2d(x, L[1], L[2])
        elif k == "pad":
            x = F.pad(x, L[1])  # (left, right, top, bottom)
        elif k == "dropout":
            pass
        elif k == "res":
            x = forward(L[1], x) + forward(L[2], x)
        else:
            raise ValueError(k)
    return x


def ibp(layers: list[Layer], lo: torch.Tensor, hi: torch.Tensor, last: np.ndarray | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval bounds of the layers over [lo, hi] (float64); with ``last`` (rows c), the final
    linear layer's c·y rows are bounded directly (tighter than combining output intervals)."""
    for i, L in enumerate(layers):
        k = L[0]
        if k in ("linear", "conv"):
            W, b = torch.as_tensor(L[1]), torch.as_tensor(L[2])
            if last is not None and i == len(layers) - 1 and k == "linear":
                W, b = torch.as_tensor(last) @ W, torch.as_tensor(last) @ b
            c, r = (lo + hi) / 2, (hi - lo) / 2
            if k == "linear":
                c, r = c @ W.T + b, r @ W.abs().T
            else:
                c = F.conv2d(c, W, b, stride=L[3], padding=L[4])
                r = F.conv2d(r, W.abs(), None, stride=L[3], padding=L[4])
            lo, hi = c - r, c + r
        elif k == "div":
            d = torch.as_tensor(L[1])
            assert (d > 0).all()
            lo, hi = lo / d, hi / d
        elif k == "res":
            a = ibp(L[1], lo, hi)
            s = ibp(L[2], lo, hi)
            lo, hi = a[0] + s[0], a[1] + s[1]
        else:  # monotone non-decreasing maps
            lo, hi = forward([L], lo), forward([L], hi)
    return lo, hi


# ---------------------------------------------------------------- ONNX emission in the shared styles

@dataclass
class Style:
    opset: int = 9
    linear: str = "gemm_t"  # gemm_t (transB=1), gemm (transB=0), matmul (x@W + b), matmul_b (b + x@W)
    norm_const: str = "constant"  # constant: Constant nodes; init: initializers
    weights_as_constants: bool = False
    batch: Any = 1  # 1 or a symbolic name
    in_shape: tuple = ()  # the ONNX input shape less the batch dimension
    reshape_const: str = "init"


def to_onnx(layers: list[Layer], st: Style, n_out: int, path: Path) -> None:
    """Write the layers as an ONNX file in the given style."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, cnt = [], [], [0]

    def name(p: str) -> str:
        cnt[0] += 1
        return f"{p}{cnt[0]}"

    def const(arr: np.ndarray, dtype: Any = np.float32, as_node: bool = False) -> str:
        n = name("c")
        t = numpy_helper.from_array(np.asarray(arr, dtype=dtype), n)
        if as_node:
            nodes.append(helper.make_node("Constant", [], [n], value=t))
        else:
            inits.append(t)
        return n

    def emit(layers: list[Layer], x: str) -> str:
        for L in layers:
            k, y = L[0], name("t")
            wc = st.weights_as_constants
            if k in ("sub", "div"):
                c = const(L[1], as_node=st.norm_const == "constant")
                nodes.append(helper.make_node("Sub" if k == "sub" else "Div", [x, c], [y]))
            elif k == "flatten":
                nodes.append(helper.make_node("Flatten", [x], [y], axis=1))
            elif k == "reshape":
                s = const(np.array([1, -1]), np.int64, as_node=st.reshape_const == "constant")
                nodes.append(helper.make_node("Reshape", [x, s], [y]))
            elif k == "linear":
                W, b = L[1], L[2]
                if st.linear == "gemm_t":
                    w, c = const(W, as_node=wc), const(b, as_node=wc)
                    nodes.append(helper.make_node("Gemm", [x, w, c], [y], alpha=1.0, beta=1.0, transB=1))
                elif st.linear == "gemm":
                    w, c = const(W.T, as_node=wc), const(b, as_node=wc)
                    nodes.append(helper.make_node("Gemm", [x, w, c], [y]))
                else:
                    m = name("m")
                    nodes.append(helper.make_node("MatMul", [x, const(W.T, as_node=wc)], [m]))
                    ins = [m, const(b, as_node=wc)]
                    nodes.append(helper.make_node("Add", ins[::-1] if st.linear == "matmul_b" else ins, [y]))
            elif k == "conv":
                W = L[1]
                nodes.append(helper.make_node(
                    "Conv", [x, const(W, as_node=wc), const(L[2], as_node=wc)], [y], dilations=[1, 1],
                    group=1,
                    kernel_shape=list(W.shape[2:]), pads=[L[4][0], L[4][1], L[4][0], L[4][1]],
                    strides=list(L[3])))
            elif k == "act":
                nodes.append(helper.make_node(L[1], [x], [y]))
            elif k in ("maxpool", "avgpool"):
                nodes.append(helper.make_node("MaxPool" if k == "maxpool" else "AveragePool", [x], [y],
                                              kernel_shape=list(L[1]), strides=list(L[2]), pads=[0, 0, 0, 0]))
            elif k == "pad":
                lft, rgt, top, bot = L[1]
                nodes.append(helper.make_node("Pad", [x], [y], mode="constant", value=0.0,
                                              pads=[0, 0, top, lft, 0, 0, bot, rgt]))
            elif k == "dropout":
                nodes.append(helper.make_node("Dropout", [x], [y], ratio=0.5))
            elif k == "res":
                a, s = emit(L[1], x), emit(L[2], x)
                nodes.append(helper.make_node("Add", [s, a], [y]))
            x = y
        return x

    emit(layers, "input")
    nodes[-1].output[0] = "output"  # (the last node written is the graph's output)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [st.batch, *st.in_shape])
    outv = helper.make_tensor_value_info("output", TensorProto.FLOAT, [st.batch, n_out])
    g = helper.make_graph(nodes, "g", [inp], [outv], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", st.opset)], producer_name="audit60")
    m.ir_version = 6 if st.opset <= 12 else 7
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


class Ort:
    """onnxruntime on the written file (float32), the batch dimension set to 1."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort
        o = ort.SessionOptions()
        o.log_severity_level = 3
        o.intra_op_num_threads = 1
        self.s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
        i = self.s.get_inputs()[0]
        self.name, self.shape = i.name, [d if isinstance(d, int) else 1 for d in i.shape]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.s.run(None, {self.name: x.astype(np.float32).reshape(self.shape)})[0],
                          np.float64).ravel()


# ---------------------------------------------------------------- properties

Atom = tuple[str, int, Any]  # (op "<=" | ">=", i, j as ("Y", j) or a float c): Y_i op rhs


@dataclass
class Prop:
    boxes: list[tuple[np.ndarray, np.ndarray]]
    disj: list[list[Atom]]
    style: str = "top"  # top: atoms of a single disjunct as top-level asserts; or: (assert (or (and ..)))

    def holds(self, y: np.ndarray) -> bool:
        """Whether y is in the unsafe set (some disjunct's atoms all hold)."""
        def atom(a: Atom) -> bool:
            op, i, r = a
            v = y[r[1]] if isinstance(r, tuple) else r
            return y[i] <= v if op == "<=" else y[i] >= v
        return any(all(atom(a) for a in d) for d in self.disj)

    def text(self) -> str:
        n_in = self.boxes[0][0].size
        n_out = 1 + max(max(a[1], a[2][1] if isinstance(a[2], tuple) else 0) for d in self.disj for a in d)
        out = [f"(declare-const X_{i} Real)" for i in range(n_in)]
        out += [f"(declare-const Y_{j} Real)" for j in range(self.n_out or n_out)]
        if len(self.boxes) == 1:
            lo, hi = self.boxes[0]
            for i in range(n_in):
                out += [f"(assert (<= X_{i} {float(hi[i])!r}))", f"(assert (>= X_{i} {float(lo[i])!r}))", ""]
        else:
            out.append("(assert (or")
            for lo, hi in self.boxes:
                out.append("    (and " + " ".join(f"(>= X_{i} {float(lo[i])!r}) (<= X_{i} {float(hi[i])!r})"
                                                 for i in range(n_in)) + ")")
            out.append("))")

        def at(a: Atom) -> str:
            r = f"Y_{a[2][1]}" if isinstance(a[2], tuple) else repr(float(a[2]))
            return f"({a[0]} Y_{a[1]} {r})"
        if len(self.disj) == 1 and self.style == "top":
            out += [f"(assert {at(a)})" for a in self.disj[0]]
        else:
            out.append("(assert (or")
            out += ["\t(and " + " ".join(at(a) for a in d) + ")" for d in self.disj]
            out.append("))")
        return "\n".join(out) + "\n"

    n_out: int = 0


# ---------------------------------------------------------------- networks like the shared ones

def rnd(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    fan = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * scale / np.sqrt(fan)).astype(np.float32).astype(np.float64)


def mlp(rng: np.random.Generator, sizes: list[int], act: str, scale: float = 1.5) -> list[Layer]:
    L: list[Layer] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        L.append(("linear", rnd(rng, b, a, scale=scale), rnd(rng, b, 1, scale=0.3).ravel()))
        L.append(("act", act))
    return L[:-1]


def conv(rng: np.random.Generator, co: int, ci: int, kh: int, kw: int, s: tuple, p: tuple) -> Layer:
    return ("conv", rnd(rng, co, ci, kh, kw, scale=1.4), rnd(rng, co, 1, scale=0.2).ravel(), s, p)


@dataclass
class Net:
    name: str
    layers: list[Layer]
    style: Style
    n_out: int
    x_lo: float = 0.0  # the input domain the properties draw from
    x_hi: float = 1.0
    cls: bool = True  # a classifier (robustness properties) or a regressor/policy (thresholds)
    eps: list[float] = field(default_factory=lambda: [0.01, 0.2])


def out_shape(layers: list[Layer], in_shape: tuple) -> int:
    return int(forward(layers, torch.zeros(1, *in_shape, dtype=torch.float64)).numel())


def nets(seed: int) -> list[Net]:
    """The networks: each a variation of a shared benchmark's network."""
    rng = np.random.default_rng(seed)
    N: list[Net] = []
    norm = [("sub", np.full((1, 1, 1, 1), 0.1307)), ("div", np.full((1, 1, 1, 1), 0.3081)), ("flatten",)]
    # eran: normalised MNIST-like input, Sigmoid / Tanh chains 6-9 deep, ReLU chains of other widths
    for act, depth, w in [("Sigmoid", 7, 24), ("Tanh", 9, 16), ("Relu", 6, 40)]:
        N.append(Net(f"eran_{act.lower()}_{depth}x{w}", norm + mlp(rng, [64] + [w] * depth + [10], act),
                     Style(opset=9, in_shape=(1, 8, 8)), 10, eps=[0.002, 0.4]))
    # mnistfc: [1, n, 1] input, Flatten, Gemm
    N.append(Net("mnistfc_relu_5x32", [("flatten",)] + mlp(rng, [49] + [32] * 5 + [10], "Relu"),
                 Style(opset=9, in_shape=(49, 1)), 10, eps=[0.002, 0.4]))
    # acasxu: [1,1,1,5] input, Sub initializer, Flatten, MatMul + Add (bias first), opset 8
    ac = [("sub", np.full((1, 1, 1, 5), 0.25)), ("flatten",)] + mlp(rng, [5] + [20] * 4 + [5], "Relu", 2.0)
    N.append(Net("acasxu_like_4x20", ac,
                 Style(opset=8, linear="matmul_b", norm_const="init", in_shape=(1, 1, 5)),
                 5, x_lo=-0.5, x_hi=0.5, cls=False))
    # verivital: one conv, relu, max / (padded) average pool, Gemm; other channel counts and kernels
    N.append(Net("verivital_maxpool_c6k3", [conv(rng, 6, 1, 3, 3, (1, 1), (0, 0)), ("act", "Relu"),
                                            ("maxpool", (3, 3), (3, 3)), ("flatten",),
                                            ("linear", rnd(rng, 10, 54), rnd(rng, 10))],
                 Style(opset=9, in_shape=(1, 11, 11)), 10, eps=[0.004, 0.4]))
    N.append(Net("verivital_avgpool_c5pad", [conv(rng, 5, 1, 2, 2, (1, 1), (0, 0)), ("act", "Relu"),
                                             ("pad", (1, 1, 1, 1)), ("avgpool", (4, 4), (4, 4)), ("flatten",),
                                             ("linear", rnd(rng, 10, 20), rnd(rng, 10))],
                 Style(opset=9, in_shape=(1, 10, 10)), 10, eps=[0.002, 0.4]))
    # oval21: two convs (k4 s2 p1, and k3 s1 p0 variants), Flatten, two Gemms
    N.append(Net("oval21_deep_k3s1", [conv(rng, 4, 3, 3, 3, (1, 1), (0, 0)), ("act", "Relu"),
                                      conv(rng, 6, 4, 3, 3, (2, 2), (1, 1)), ("act", "Relu"),
                                      conv(rng, 6, 6, 3, 3, (1, 1), (1, 1)), ("act", "Relu"), ("flatten",)]
                 + mlp(rng, [6 * 3 * 3, 20, 10], "Relu"), Style(opset=9, in_shape=(3, 8, 8)), 10,
                 eps=[0.001, 0.4]))
    N.append(Net("oval21_wide_k4s2", [conv(rng, 10, 3, 4, 4, (2, 2), (1, 1)), ("act", "Relu"),
                                      conv(rng, 12, 10, 4, 4, (2, 2), (1, 1)), ("act", "Relu"), ("flatten",)]
                 + mlp(rng, [12 * 2 * 2, 30, 10], "Relu"), Style(opset=11, linear="gemm", in_shape=(3, 8, 8)),
                 10, eps=[0.001, 0.4]))
    # collins RUL: [B, 1, W, F] (symbolic batch), [k, 1] convs, a conv as FC over the rest, Dropout
    for W, Fe in [(30, 6), (40, 5)]:
        L = [conv(rng, 4, 1, 5, 1, (1, 1), (0, 0)), ("act", "Relu"), conv(rng, 5, 4, 5, 1, (1, 1), (0, 0)),
             ("act", "Relu"), conv(rng, 4, 5, 3, 1, (1, 1), (0, 0)), ("act", "Relu")]
        h = W - 10
        L += [conv(rng, 16, 4, h, Fe, (1, 1), (0, 0)), ("act", "Relu"), ("dropout",),
              conv(rng, 1, 16, 1, 1, (1, 1), (0, 0)), ("flatten",)]
        N.append(Net(f"collins_rul_w{W}", L, Style(opset=8, batch="BatchSize", in_shape=(1, W, Fe)), 1,
                     cls=False, eps=[0.02, 0.3]))
    # sri resnet: stride-2 3x3 / 1x1 shortcut blocks, Add, Reshape, two Gemms; 1 and 3 blocks
    for nb in (1, 3):
        L = [conv(rng, 4, 3, 3, 3, (2, 2), (1, 1)), ("act", "Relu")]
        c = 4
        for b in range(nb):
            co, s = (c * 2, (2, 2)) if b < 2 else (c, (1, 1))
            main = [conv(rng, co, c, 3, 3, s, (1, 1)), ("act", "Relu"),
                    conv(rng, co, co, 3, 3, (1, 1), (1, 1))]
            L += [("res", main, [conv(rng, co, c, 1, 1, s, (0, 0))] if (s != (1, 1) or co != c) else []),
                  ("act", "Relu")]
            c = co
        n = out_shape(L, (3, 16, 16))
        L += [("reshape",)] + mlp(rng, [n, 20, 10], "Relu")
        N.append(Net(f"sri_resnet_{nb}b", L, Style(opset=9, in_shape=(3, 16, 16),
                                                   reshape_const="constant" if nb == 3 else "init"), 10,
                     eps=[0.001, 0.4]))
    # rl_benchmarks / reach_prob_density: small MLPs, [1, n] input, other activations, Flatten or not
    N.append(Net("rl_tanh_3x32", [("flatten",)] + mlp(rng, [6, 32, 32, 32, 3], "Tanh", 2.0),
                 Style(opset=10, in_shape=(6,)), 3, x_lo=-1, x_hi=1, cls=False, eps=[0.05, 0.5]))
    N.append(Net("rl_relu_dubins_8x64", mlp(rng, [8, 64, 64, 8], "Relu", 2.0),
                 Style(opset=10, in_shape=(8,), weights_as_constants=True), 8, x_lo=-1, x_hi=1,
                 cls=False, eps=[0.05, 0.5]))
    N.append(Net("reach_prob_sigmoid_3x40", mlp(rng, [5, 40, 40, 40, 5], "Sigmoid", 3.0),
                 Style(opset=9, linear="matmul", in_shape=(5,)), 5, x_lo=-2, x_hi=2, cls=False,
                 eps=[0.1, 1.0]))
    N.append(Net("reach_prob_relu_gcas_14", mlp(rng, [14, 48, 48, 14], "Relu", 2.0),
                 Style(opset=14, batch="N", in_shape=(14,)), 14, x_lo=-2, x_hi=2, cls=False, eps=[0.1, 1.0]))
    return N


# ---------------------------------------------------------------- cases

@dataclass
class Case:
    net: Net
    kind: str
    prop: Prop
    expected: str  # sat / unsat / ?


def float32_in(lo: np.ndarray, hi: np.ndarray, x: np.ndarray) -> np.ndarray:
    """x rounded to float32 and kept inside [lo, hi] (whose ends are float32)."""
    return np.clip(x.astype(np.float32), lo.astype(np.float32), hi.astype(np.float32)).astype(np.float64)


def cases_for(net: Net, rng: np.random.Generator, ort: Ort) -> list[Case]:
    """Properties on the net with known truth where the sampling / interval argument gives it."""
    in_shape = net.style.in_shape
    n_in = int(np.prod(in_shape))
    f = lambda X: forward(net.layers, torch.as_tensor(X).reshape(-1, *in_shape)).numpy()  # noqa: E731
    out: list[Case] = []
    centre = rng.uniform(net.x_lo, net.x_hi, n_in).astype(np.float32).astype(np.float64)

    def box(eps: float, c: np.ndarray = centre) -> tuple[np.ndarray, np.ndarray]:
        lo = np.maximum(c - eps, net.x_lo).astype(np.float32).astype(np.float64)
        hi = np.minimum(c + eps, net.x_hi).astype(np.float32).astype(np.float64)
        return lo, hi

    def samples(lo: np.ndarray, hi: np.ndarray, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
        corners = np.where(rng.random((n // 4, n_in)) < .5, lo, hi)
        X = np.concatenate([rng.uniform(lo, hi, (n, n_in)), corners])
        X = X.astype(np.float32).astype(np.float64)
        return X, f(X)

    def tbox(lo: np.ndarray, hi: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.as_tensor(lo).reshape(1, *in_shape), torch.as_tensor(hi).reshape(1, *in_shape)

    if net.cls:
        c = int(np.argmax(f(centre[None])[0]))
        others = [j for j in range(net.n_out) if j != c]
        disj = [[("<=", c, ("Y", j))] for j in others]  # oval21 / eran style: the label is not the winner
        small, large = net.eps
        lo, hi = box(small)
        rows = np.zeros((len(others), net.n_out))
        for r, j in enumerate(others):
            rows[r, c], rows[r, j] = 1, -1
        lb, _ = ibp(net.layers, *tbox(lo, hi), last=rows)
        if float(lb.min()) > 1e-6:
            out.append(Case(net, "robust-unsat", Prop([(lo, hi)], disj, "or", net.n_out), "unsat"))
        mid = float(np.sqrt(small * large))  # between: a proof or a search's real work, truth unknown
        out.append(Case(net, "robust-mid?", Prop([box(mid)], disj, "or", net.n_out), "?"))
        lo, hi = box(large)
        X, Y = samples(lo, hi)
        bad = [k for k in range(len(X)) if int(np.argmax(Y[k])) != c
               and np.sort(Y[k])[-1] - Y[k][c] > 1e-3 and int(np.argmax(ort(X[k]))) != c]
        out.append(Case(net, "robust-sat" if bad else "robust-?", Prop([(lo, hi)], disj, "or", net.n_out),
                        "sat" if bad else "?"))
        # several input boxes in one OR (the violating one second), one disjunct written top-level
        if bad:
            lo2, hi2 = box(small, c=X[bad[0]])
            j = int(np.argmax(Y[bad[0]]))
            p = Prop([box(small, c=centre + 0.0), (lo2, hi2)], [[("<=", c, ("Y", j))]], "top", net.n_out)
            out.append(Case(net, "2box-sat", p, "sat"))
        return out
    # regressors / policies: thresholds on an output, an OR of ANDs, a two-sided band
    i = int(rng.integers(net.n_out))
    small, large = net.eps
    lo, hi = box(large)
    X, Y = samples(lo, hi)
    k = int(np.argmax(Y[:, i]))
    _, ub = ibp(net.layers, *tbox(lo, hi))
    top, bound = float(Y[k, i]), float(ub.ravel()[i])
    spread = float(Y[:, i].max() - Y[:, i].min()) + 1e-3
    t_sat = top - 0.02 * spread
    if ort(X[k])[i] >= t_sat + 1e-4 * spread:
        out.append(Case(net, "thresh-sat", Prop([(lo, hi)], [[(">=", i, t_sat)]], "top", net.n_out), "sat"))
    beyond = bound + 1e-3 * (1 + abs(bound))  # above the interval bound: certainly unsat
    out.append(Case(net, "thresh-unsat", Prop([(lo, hi)], [[(">=", i, beyond)]], "top",
                                            net.n_out), "unsat"))
    out.append(Case(net, "thresh-?", Prop([(lo, hi)], [[(">=", i, top + 0.02 * spread)]], "top", net.n_out),
                    "?"))
    out.append(Case(net, "thresh-hi?", Prop([(lo, hi)], [[(">=", i, top + 0.3 * (bound - top))]], "top",
                                          net.n_out), "?"))
    # collins-style band "(or (and (>= Y_i a) (<= Y_i b)))" around a sampled value; acas-style OR of ANDs
    m = int(rng.integers(len(X)))
    v = float(Y[m, i])
    band = [[(">=", i, v - 0.01 * spread), ("<=", i, v + 0.01 * spread)]]
    if abs(ort(X[m])[i] - v) < 0.005 * spread:
        out.append(Case(net, "band-sat", Prop([(lo, hi)], band, "or", net.n_out), "sat"))
    if net.n_out >= 3:
        a, b = rng.choice(net.n_out, 2, replace=False)
        disj = [[("<=", int(a), ("Y", j)) for j in range(net.n_out) if j != a],
                [("<=", int(b), ("Y", j)) for j in range(net.n_out) if j != b]]
        p = Prop([box(small)], disj, "or", net.n_out)
        X2, Y2 = samples(*box(small), 2000)
        # a witness: in the unsafe set in float64 and in onnxruntime, with a margin against ties
        wit = [q for q in range(len(X2)) if p.holds(Y2[q] + np.where(np.arange(net.n_out) == a, 1e-6, 0))
               and p.holds(ort(X2[q]))]
        out.append(Case(net, "minOR-" + ("sat" if wit else "?"), p, "sat" if wit else "?"))
    return out


# ---------------------------------------------------------------- running

def run_case(i: int, cs: Case, d: Path, timeout: float) -> dict[str, Any]:
    onnx_path = d / f"{cs.net.name}.onnx"
    prop = d / f"{i:02d}_{cs.net.name}_{cs.kind}.vnnlib"
    prop.write_text(cs.prop.text())
    t0 = time.time()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    try:
        r = subprocess.run([sys.executable, "-m", "torchlean.verify", str(onnx_path), str(prop), "--timeout",
                            str(timeout)], capture_output=True, text=True, timeout=timeout + 60, env=env)
        rc, so, se = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired:
        rc, so, se = -9, "", "runner timeout"
    wall = time.time() - t0
    lines = [s.strip() for s in so.splitlines()]
    verdict = next((s for s in lines if s in ("sat", "unsat", "timeout", "unknown")), None)
    note = ""
    if rc == 2 or (verdict is None and rc == 0):
        cls = "refused"
        note = (se.strip().splitlines() or ["?"])[-1][:110]
    elif verdict is None or "Traceback" in se:
        cls, note = "crash", (se.strip().splitlines() or ["?"])[-1][:110]
    elif verdict in ("timeout", "unknown"):
        cls = verdict
        note = next((s for s in se.splitlines() if s.startswith("error")), "")[:110]
    elif verdict == "unsat":
        cls = "WRONG" if cs.expected == "sat" else ("correct" if cs.expected == "unsat" else "unsat(?)")
    else:
        xs = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"\(X_(\d+) ([-0-9.eE+]+)\)", so)}
        x = np.array([xs.get(k, np.nan) for k in range(cs.prop.boxes[0][0].size)])
        inbox = any(bool(np.all((x >= lo) & (x <= hi))) for lo, hi in cs.prop.boxes)
        y = forward(cs.net.layers, torch.as_tensor(x).reshape(1, *cs.net.style.in_shape)).numpy().ravel()
        ok = inbox and cs.prop.holds(y) and cs.prop.holds(Ort(onnx_path)(x))
        cls = ("correct" if cs.expected != "unsat" else "WRONG?(gen)") if ok else "WRONG"
        if not ok:
            note = f"counterexample refuted (in box: {inbox})"
        elif cs.expected == "?":
            cls = "sat(checked)"
    return {"case": f"{cs.net.name}/{cs.kind}", "expected": cs.expected, "verdict": verdict or "-",
            "class": cls, "wall": wall, "note": note, "prop": prop.name}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="")
    ap.add_argument("--keep", default="")
    ap.add_argument("--list", action="store_true", help="generate and list the cases, run nothing")
    a = ap.parse_args(argv)
    d = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="heldout_like_"))
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed + 1)
    cases: list[Case] = []
    for net in nets(a.seed):
        if a.only and a.only not in net.name:
            continue
        p = d / f"{net.name}.onnx"
        n_out = out_shape(net.layers, net.style.in_shape)
        assert n_out == net.n_out, (net.name, n_out)
        to_onnx(net.layers, net.style, net.n_out, p)
        o = Ort(p)
        X = rng.uniform(net.x_lo, net.x_hi, (8, int(np.prod(net.style.in_shape))))
        ref = forward(net.layers, torch.as_tensor(X).reshape(-1, *net.style.in_shape)).numpy()
        got = np.stack([o(x) for x in X])
        err = float(np.abs(ref - got).max() / (1 + np.abs(ref).max()))
        assert err < 1e-4, (net.name, err)  # the file means what the reference computes
        cases += cases_for(net, rng, o)
    print(f"{len(cases)} cases in {d}", flush=True)
    if a.list:
        for c in cases:
            print(c.net.name, c.kind, c.expected)
        return 0
    rows = []
    print(f"{'case':44s} {'exp':5s} {'verdict':8s} {'class':12s} {'wall':>6s}  note", flush=True)
    for i, c in enumerate(cases):
        r = run_case(i, c, d, a.timeout)
        rows.append(r)
        print(f"{r['case']:44s} {r['expected']:5s} {r['verdict']:8s} {r['class']:12s} {r['wall']:6.1f}  "
              f"{r['note']}",
              flush=True)
    tally: dict[str, int] = {}
    for r in rows:
        tally[r["class"]] = tally.get(r["class"], 0) + 1
    print("summary:", ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    return 1 if any(r["class"].startswith("WRONG") or r["class"] == "crash" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
