"""The ``windows`` kind: a pooling kernel and its VJP act window by window (issue 18).

A max_pool2d plane (H x W, kernel (kh, kw), stride (sh, sw), no padding) has windows
(i, j), 0 <= i < Ho = (H - kh) // sh + 1 (likewise j), reading x[sh*i + a, sw*j + b] at tap (a, b).
The runtime's kernel, the spec meaning and the VJP were run once on one window (leaves ``v`` a b,
the cotangent ``gv``) and once on the plane (leaves ``x`` r c, ``g`` i j), recording each value as a
term exactly as the code built it. Statement: ``{"size": [H, W], "kernel": [kh, kw], "stride":
[sh, sw], "nodes": [NODE...], "window": {"forward": id, "spec": id, "vjp": [[id] * kw] * kh},
"plane": {"forward": [[id] * Wo] * Ho, "spec": (alike), "vjp": [[id] * W] * H}}``; a NODE is
``["x", r, c]``, ``["g", i, j]``, ``["v", a, b]``, ``["gv"]``, ``["c", "p/q"]`` or ``[op, id...]``
with ids of earlier nodes (ops are opaque function symbols: nothing is assumed about them).

Accepted when the window's terms use only window leaves, the plane's only plane leaves (each within its
window, plane or output grid), and with sigma_ij (v a b -> x[sh*i + a, sw*j + b], gv -> g[i, j]): plane
forward[i][j] = sigma_ij(window forward), the same for spec, and for every (r, c) the summands of plane
vjp[r][c] (``add`` nodes flattened, the constant 0 dropped) are, as a multiset, those of sigma_ij(window
vjp[a][b]) over the windows and taps with (sh*i + a, sw*j + b) = (r, c). So the plane's values are the
one window's functions applied to each window's entries and its VJP the sum over windows of the one
window's VJP scattered to the window's positions: with the window claims (forward = spec, VJP =
derivative, proved separately), the chain rule gives the plane's claim (TRUST_BOUNDARIES.md, "windows").
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .core import Verdict, checker, rational, require, tick

LEAVES = {"x": 2, "g": 2, "v": 2, "gv": 0}


@checker("windows")
def check_windows(cert: dict[str, Any]) -> Verdict:
    """Replay a ``windows`` statement (see the module)."""
    (h, w), (kh, kw), (sh, sw) = cert["size"], cert["kernel"], cert["stride"]
    require(all(type(n) is int and n >= 1 for n in (h, w, kh, kw, sh, sw)) and kh <= h and kw <= w,
            "sizes, kernel and stride: integers >= 1, the kernel within the plane")
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    # a leaf's subscripts within its array: a window leaf outside the window would map to entries of
    # other windows (or none) that the one window's VJP claim does not differentiate in
    axes = {"x": (h, w), "g": (ho, wo), "v": (kh, kw), "gv": ()}
    nodes = cert["nodes"]
    require(isinstance(nodes, list), "nodes: a list")
    table: dict[tuple[Any, ...], int] = {}  # interned terms: equal terms get equal ids
    ops: list[Any] = []

    def intern(key: tuple[Any, ...]) -> int:
        if key not in table:
            table[key] = len(ops)
            ops.append(key)
        return table[key]

    kind: list[set[str]] = []  # per node: the leaf families it contains
    for k, n in enumerate(nodes):
        tick()
        require(isinstance(n, list) and n and isinstance(n[0], str), f"node {k}: [op, args...]")
        op, args = n[0], n[1:]
        if op in LEAVES:
            require(len(args) == LEAVES[op]
                    and all(type(a) is int and 0 <= a < m for a, m in zip(args, axes[op])),
                    f"node {k}: bad leaf, or one outside its plane or window")
            kind.append({op})
        elif op == "c":
            require(len(args) == 1, f"node {k}: bad constant")
            kind.append(set())
        else:
            require(all(type(a) is int and 0 <= a < k for a in args), f"node {k}: an argument is not an "
                                                                      "earlier node")
            kind.append(set().union(*(kind[a] for a in args)))

    def ref(i: Any, leaves: set[str]) -> int:
        require(type(i) is int and 0 <= i < len(nodes) and kind[i] <= leaves, f"term {i!r}: bad id or "
                                                                              "leaves of the other side")
        return i

    memo: dict[tuple[int, int, int], int] = {}

    def inst(t: int, i: int, j: int) -> int:
        """The interned id of sigma_ij(node t); (i, j) = (-1, -1): the node itself."""
        if (t, i, j) not in memo:
            op, args = nodes[t][0], nodes[t][1:]
            if op == "v":
                key: tuple[Any, ...] = ("x", sh * i + args[0], sw * j + args[1])
            elif op == "gv":
                key = ("g", i, j)
            elif op in LEAVES:
                key = (op, *args)
            elif op == "c":
                key = ("c", rational(args[0]))
            else:
                key = (op, *(inst(a, i, j) for a in args))
            memo[(t, i, j)] = intern(key)
        return memo[(t, i, j)]

    def summands(t: int) -> list[int]:
        key = ops[t]
        if key[0] == "add" and len(key) == 3:
            return summands(key[1]) + summands(key[2])
        return [] if key == ("c", 0) else [t]

    win, plane = cert["window"], cert["plane"]
    grid = plane["forward"], plane["spec"], plane["vjp"], win["vjp"]
    require(all(isinstance(m, list) and len(m) == n and all(isinstance(r, list) and len(r) == c for r in m)
                for m, n, c in zip(grid, (ho, ho, h, kh), (wo, wo, w, kw))), "term grids of the wrong shape")
    window_leaves, plane_leaves = {"v", "gv"}, {"x", "g"}
    for part in ("forward", "spec"):
        t = ref(win[part], window_leaves)
        for i in range(ho):
            for j in range(wo):
                tick()
                require(inst(ref(plane[part][i][j], plane_leaves), -1, -1) == inst(t, i, j),
                        f"{part} at window ({i}, {j}) is not the window's {part} of its entries")
    want: dict[tuple[int, int], Counter[int]] = {}
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for b in range(kw):
                    tick()
                    got = want.setdefault((sh * i + a, sw * j + b), Counter())
                    got.update(summands(inst(ref(win["vjp"][a][b], window_leaves), i, j)))
    for r in range(h):
        for c in range(w):
            tick()
            have = Counter(summands(inst(ref(plane["vjp"][r][c], plane_leaves), -1, -1)))
            require(have == want.get((r, c), Counter()), f"vjp at ({r}, {c}) is not the sum of its windows' "
                                                          "VJPs")
    return Verdict(True, checked=2 * ho * wo + h * w)
