"""A physics-informed network (``python -m torchlean pinn``) and a certified bound on its PDE residual.

Problem: the 1-D Poisson equation u''(x) = f(x) on [0, 1] with u(0) = u(1) = 0 and
f(x) = -x (x + 3) e^x, whose solution is u*(x) = x (1 - x) e^x. Model: an MLP 1-32-32-1 with tanh,
trained with Adam on the physics-informed loss mean((u'' - f)^2) over 64 collocation points plus
10 (u(0)^2 + u(1)^2). u'' is computed by autograd with ``create_graph=True`` (the same proved VJP
rules, recorded; ``runtime/tape_ns.py``), and the loss's gradient differentiates through it.

``--certify``: the residual r(x) = u''(x) - f(x) is itself a graph of primitives (``tl.trace``
through the two ``grad`` calls), so the bound table bounds it. The domain is cut into ``pieces``
intervals; CROWN on each gives a bound B on |r| over the whole domain (not only at the collocation
points), which is then proved as the property "r(x) >= B or r(x) <= -B is impossible on [0, 1]"
by complete verification: a vnn-unsat certificate the trusted checker replays. Residuals at sampled
points, evaluated exactly (rational arithmetic, mpmath enclosures for tanh and exp), must lie within.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .. import _outward
from ..runtime.nn import Linear, Module, Sequential, Tanh

__all__ = ["Residual", "ResidualBound", "certify_residual", "exact_solution", "model", "residual_graph",
           "residual_line", "train"]

#: the collocation grid (interior points) and the boundary penalty's weight
COLLOCATION, BOUNDARY_WEIGHT = 64, 10.0


def exact_solution(x: np.ndarray) -> np.ndarray:
    """u*(x) = x (1 - x) e^x."""
    return x * (1 - x) * np.exp(x)


def model() -> Sequential:
    """The MLP 1-32-32-1 with tanh (initialised from ``torchlean.manual_seed``)."""
    return Sequential(Linear(1, 32), Tanh(), Linear(32, 32), Tanh(), Linear(32, 1))


def residual(net: Any, x: Any) -> Any:
    """r(x) = u''(x) - f(x) for inputs x of shape (N, 1), differentiable in the weights."""
    import torchlean as tl
    from torchlean.nn import functional as F

    from ..runtime.trace import constant

    with tl.enable_grad():
        x.requires_grad = True
        u = net(x)
        ones = constant(tl.ones_like(u))  # depends on the shape only: a compiled plan may keep it
        (du,) = tl.autograd.grad(u, x, grad_outputs=ones, create_graph=True)
        (d2u,) = tl.autograd.grad(du, x, grad_outputs=ones, create_graph=True)
        return d2u + x * (x + 3) * F.exp(x)


class PhysicsLoss(Module):
    """The physics-informed objective as a model, so the Trainer (and its compiled backend) trains
    it: for points x (N, 1) the output (N, 2) is [r(x), u(x)]; ``weighted_squares`` with the weights
    of ``collocation`` turns it into mean(r^2) over the interior plus BOUNDARY_WEIGHT (u(0)^2 + u(1)^2)."""

    def __init__(self, net: Any):
        super().__init__()
        self.net = net

    def forward(self, x: Any) -> Any:
        from torchlean.nn import functional as F

        return F.cat([residual(self.net, x), self.net(x)], -1)


def weighted_squares(out: Any, weights: Any) -> Any:
    """sum(weights * out^2): the loss of ``PhysicsLoss``'s output."""
    return (weights * out * out).sum()


def collocation() -> tuple[np.ndarray, np.ndarray]:
    """(points (66, 1), weights (66, 2)): the 64 interior collocation points (weight 1/64 on the
    residual) and the two ends 0 and 1 (weight BOUNDARY_WEIGHT on u)."""
    xs = (np.arange(COLLOCATION) + 0.5) / COLLOCATION
    points = np.concatenate([xs, [0.0, 1.0]]).reshape(-1, 1)
    weights = np.zeros((len(points), 2))
    weights[:COLLOCATION, 0] = 1.0 / COLLOCATION
    weights[COLLOCATION:, 1] = BOUNDARY_WEIGHT
    return points, weights


def train(steps: int = 2000, lr: float = 3e-3, seed: int = 0, progress: bool | None = None, **flags: Any
          ) -> tuple[Sequential, list[dict[str, float]], float]:
    """(trained net, history of {step, loss, lr, time}, seconds): Adam on the whole collocation set
    every step; ``flags``: backend, dtype, device (``zoo._fit``)."""
    import torchlean as tl

    from . import _fit

    tl.manual_seed(seed)
    net = model()
    points, weights = collocation()
    done = _fit.fit(PhysicsLoss(net), lambda step: (points, weights), steps, weighted_squares, lr, seed,
                    progress, **flags)
    return net, done.history, done.time_s


class Residual(Module):
    """x -> r(x) = u''(x) - f(x) as a module of ``net``'s weights: a graph of primitives (the two
    ``grad`` calls recorded by ``create_graph=True``), so ``@verified(input_shape=(1, 1))`` proves
    its own backward pass (a third derivative of ``net``) compositionally like any model's."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Any) -> Any:
        return residual(self.net, x)


def residual_graph(net: Any) -> Any:
    """The graph of x -> r(x) (inputs (1, 1)), traced through both derivatives."""
    import torchlean as tl

    return tl.trace(lambda x: residual(net, x), tl.tensor(np.array([[0.5]], dtype=np.float32)))


@dataclass
class ResidualBound:
    """``bound``: |r(x)| <= bound for every x in [0, 1], proved by ``certificate`` (a vnn-unsat
    certificate accepted by the checker) when ``verdict`` is "verified"; ``pieces``: the per-interval
    CROWN bounds (lo, hi, lower, upper) it was chosen from."""

    bound: float
    verdict: str
    reason: str
    certificate: dict[str, Any] | None
    pieces: list[tuple[float, float, float, float]]
    graph: Any
    spec: Any
    seconds: float


def certify_residual(net: Any, pieces: int = 64, timeout: float = 60.0, slack: float = 1.05) -> ResidualBound:
    """Bound |u'' - f| over all of [0, 1] (module docstring)."""
    import torchlean as tl

    from ..certificates.property import Atom, Region, Spec
    from ..verify import api, table

    t0 = time.perf_counter()
    g = residual_graph(net)
    found = []
    for k in range(pieces):
        lo, hi = k / pieces, (k + 1) / pieces
        b = tl.verify.bounds(g, np.array([[(lo + hi) / 2]]), (hi - lo) / 2, method="crown")
        found.append((lo, hi, float(b.lower.min()), float(b.upper.max())))
    worst = max(max(abs(lw), abs(up)) for _, _, lw, up in found)
    bound = float(np.nextafter(worst * slack, np.inf))
    B = Fraction(bound)
    unsafe = ((Atom((Fraction(-1),), -B, False),), (Atom((Fraction(1),), -B, False),))  # r >= B | r <= -B
    spec = Spec(1, 1, (Region((Fraction(0),), (Fraction(1),), unsafe),))
    res = api.decide(table.target(g), spec, timeout)
    return ResidualBound(bound, res.verdict, res.reason, res.certificate, found, g, spec,
                         time.perf_counter() - t0)


def exact_residuals(graph: Any, points: list[Fraction]) -> list[tuple[Fraction, Fraction]]:
    """Rational enclosures [lo, hi] of r at each point: the graph evaluated in exact arithmetic
    (rational operations exact, tanh and exp enclosed), by the bound table's exact engine on a
    point box."""
    from ..verify import engines, table

    bg = table.target(graph).bg
    out = []
    for p in points:
        low, up = engines.exact_ibp(bg, (Fraction(p),), (Fraction(p),))
        out.append((Fraction(low[0]), Fraction(up[0])))
    return out


def residual_line(rb: ResidualBound) -> str:
    """The residual claim as printed: the proved bound rounded up (``_outward``: a bound printed
    to nearest could read below the one proved, audit41)."""
    if rb.verdict == "verified":
        return (f"certified: |u''(x) - f(x)| <= {_outward.up(rb.bound, 4)} for every x in [0, 1] (vnn-unsat "
                f"certificate replayed by the trusted checker; {rb.reason}; {rb.seconds:.1f} s)")
    return (f"not certified: |residual| <= {_outward.up(rb.bound, 4)} was not proved "
            f"({rb.verdict}: {rb.reason})")


def run(args: Any) -> int:
    """``python -m torchlean pinn`` (flags in ``torchlean.__main__``)."""
    import torchlean as tl

    # (--plot without --certify: refused as usage, exit 2, by ``torchlean.__main__._check_outputs``)
    from . import _fit

    flags = {k: getattr(args, k) for k in _fit.DEVICE_DEFAULTS}
    net, history, seconds = train(args.steps, seed=args.seed, progress=args.progress, **flags)
    if args.device != "cpu" or args.dtype != "float32":  # report and certify the float32 CPU model
        net = net.to(dtype="float32", device="cpu")
    xs = np.linspace(0, 1, 1001).reshape(-1, 1).astype(np.float32)
    err = float(np.abs(net(tl.tensor(xs)).numpy() - exact_solution(xs)).max())
    r = residual(net, tl.tensor(xs)).numpy()
    print(f"PINN for u'' = -x(x+3)e^x on [0, 1], u(0) = u(1) = 0 (trained in {args.dtype} on {args.device}, "
          f"{args.backend} backend): {args.steps} Adam steps in {seconds:.1f} s; final loss "
          f"{history[-1]['loss']:.3g}; max |u - u*| on 1,001 points {err:.3g} "
          f"(u* = x(1-x)e^x, max 0.46); max |residual| there {float(np.abs(r).max()):.3g}")
    _fit.report_log(args, history)
    if not args.certify:
        return 0
    from .claims import announce, epsilon_line, gradient_proof, proof_budget

    announce(args, f"certifying the residual bound on [0, 1] (up to {args.certify_timeout:g} s)")
    rb = certify_residual(net, pieces=args.pieces, timeout=args.certify_timeout)
    print(residual_line(rb))
    announce(args, f"bounding the float32 rounding error (budget {proof_budget(args):g} s)")
    print(epsilon_line(net, np.array([[0.5]]), [(0, 1)], "u on the domain [0, 1]", 500, proof_budget(args)))
    announce(args, f"proving the @verified gradient of pinn_residual (budget {proof_budget(args):g} s)")
    print(gradient_proof("pinn_residual", lambda: Residual(model()), (1, 1),
                         budget=proof_budget(args)).summary())
    if args.plot:
        from ..plot import plot_residual

        path = plot_residual(rb.pieces, xs.ravel(), r.ravel(), rb.bound, args.plot,
                             certified=rb.verdict == "verified")
        print(f"wrote {path}")
    return 0 if rb.verdict == "verified" else 1
