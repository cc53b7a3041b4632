"""A small CNN and a small ResNet on the 8x8 digits (``python -m torchlean cnn`` / ``resnet``), and
their certified accuracy.

Models, trained with Adam on ``zoo.digits``:
- ``cnn``: Conv2d(1, 8, 3, padding=1) - ReLU - MaxPool2d(2) - Conv2d(8, 16, 3, padding=1) - ReLU -
  MaxPool2d(2) - Flatten - Linear(64, 10);
- ``resnet``: Conv2d(1, 16, 3, padding=1) - BatchNorm2d - ReLU, two residual blocks x + body(x) with
  body Conv2d(16, 16, 3, padding=1) - BatchNorm2d - ReLU - Conv2d(16, 16, 3, padding=1) -
  BatchNorm2d, each followed by a ReLU, then AvgPool2d(2) - Flatten - Linear(256, 10) (verified in
  eval mode: batch norm with its running statistics).

``certify(model, x, y, eps)``: for each image, is the prediction the label at every point of the
L-inf ball of radius ``eps`` (clipped to the pixel range [0, 1])? Each image is a complete
verification (``tl.verify.robustness``: PGD, then branch and bound on the bound table) whose verdict
counts only once the trusted checker accepted it: "verified" carries a vnn-unsat certificate that
``certificates`` replayed, "falsified" a counterexample evaluated exactly. Certified accuracy is the
fraction verified; the fraction not falsified is an upper bound on the true robust accuracy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _outward
from ..runtime.nn import (
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Residual,
    Sequential,
)

__all__ = ["CertifyReport", "certify", "float32_epsilon", "model"]

from .claims import float32_epsilon  # noqa: E402 - re-exported: the one float32 ε helper of the zoo

#: the pixel range, which every ball is clipped to
PIXELS = (0.0, 1.0)


def model(kind: str = "cnn") -> Sequential:
    """The ``cnn`` or ``resnet`` model of the module docstring (initialised from
    ``torchlean.manual_seed``)."""
    if kind == "cnn":
        return Sequential(Conv2d(1, 8, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(8, 16, 3, padding=1),
                          ReLU(), MaxPool2d(2), Flatten(), Linear(64, 10))
    if kind != "resnet":
        raise ValueError(f"model: kind must be 'cnn' or 'resnet', got {kind!r}")

    def block() -> list:
        body = Sequential(Conv2d(16, 16, 3, padding=1), BatchNorm2d(16), ReLU(), Conv2d(16, 16, 3, padding=1),
                          BatchNorm2d(16))
        return [Residual(body), ReLU()]

    return Sequential(Conv2d(1, 16, 3, padding=1), BatchNorm2d(16), ReLU(), *block(), *block(), AvgPool2d(2),
                      Flatten(), Linear(256, 10))


@dataclass
class CertifyReport:
    """Per image: "verified", "falsified", "unknown" or "misclassified" (at the centre already);
    ``results`` holds the ``RobustnessResult`` of every image that was searched."""

    eps: float
    verdicts: list[str]
    results: list[Any] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def certified(self) -> float:
        """Fraction of images whose robustness certificate the checker accepted."""
        return self.verdicts.count("verified") / max(1, len(self.verdicts))

    @property
    def not_falsified(self) -> float:
        """Fraction of images with no checked counterexample (and correct at the centre)."""
        bad = self.verdicts.count("falsified") + self.verdicts.count("misclassified")
        return 1 - bad / max(1, len(self.verdicts))

    def summary(self) -> str:
        """``certified accuracy at eps 0.03: 17/20 (85.0%); falsified 1, unknown 1, misclassified 1``."""
        n, c = len(self.verdicts), Counter(self.verdicts)
        # the radius rounded down: a larger printed radius would claim boxes never checked (audit41)
        return (f"certified accuracy at eps {_outward.down(self.eps)}: {c['verified']}/{n} "
                f"({self.certified:.1%}); "
                f"falsified {c['falsified']}, unknown {c['unknown']}, misclassified {c['misclassified']} "
                f"({self.seconds:.1f} s)")


def certify(net: Any, x: np.ndarray, y: np.ndarray, eps: float, timeout: float = 10.0,
            progress: bool | None = None) -> CertifyReport:
    """Certify each image of ``x`` (N, 1, 8, 8) with label ``y`` at radius ``eps`` (see the module
    docstring); ``timeout`` seconds per image. ``net`` should be in ``eval()`` mode."""
    import time

    from ..progress import bar
    from ..runtime.tensor import tensor
    from ..verify.api import robustness

    t0 = time.perf_counter()
    report = CertifyReport(float(eps), [])
    with bar(total=len(x), desc=f"certify eps {eps:g}", unit="image", enabled=progress) as p:
        for xi, yi in zip(x, y):
            xi = xi[None]
            if int(np.argmax(net(tensor(xi)).numpy())) != int(yi):
                report.verdicts.append("misclassified")
            else:
                r = robustness(net, xi, eps, int(yi), timeout=timeout, clip=PIXELS)
                report.results.append(r)
                report.verdicts.append(r.verdict)
            p.update(1)
            p.set_postfix(verified=report.verdicts.count("verified"), refresh=False)
    report.seconds = time.perf_counter() - t0
    return report


def run(args: Any) -> int:
    """``python -m torchlean cnn`` (flags in ``torchlean.__main__``): train, report, certify."""
    import torchlean as tl

    from . import digits

    data = digits.load()
    # (--plot without --certify: refused as usage, exit 2, by ``torchlean.__main__._check_outputs``)
    tl.manual_seed(args.seed)
    net = model(args.command)
    trainer = tl.Trainer(net, task="classification", optimizer=args.optimizer, lr=args.lr,
                         backend=args.backend, dtype=args.dtype, device=args.device, seed=args.seed)
    print(f"digits 8x8: {len(data.x_train)} train / {len(data.x_test)} test images; {args.command} "
          f"{net.num_parameters()} parameters; {args.dtype} on {args.device}, {args.backend} backend")
    before = trainer.eval(data.test())
    print(f"test accuracy before: {before['accuracy']:.1%} (loss {before['loss']:.4f})")
    trained = trainer.train(data.train(), steps=args.steps, batch_size=args.batch_size,
                            log_every=args.log_every, log_path=args.log, progress=args.progress)
    after = trained.eval(data.test())
    note = " (interrupted)" if trained.interrupted else ""
    print(f"test accuracy after {trained.steps} steps{note}: {after['accuracy']:.1%} "
          f"(loss {after['loss']:.4f}, {trained.time_s:.1f} s)")
    if not np.isfinite(after["loss"]):
        raise ValueError("training diverged (non-finite loss); try a smaller --lr")
    if args.log:
        print(f"training log: {args.log}")
    if args.save:
        print(f"checkpoint: {trained.save(args.save)}")
    if not args.certify:
        return 0
    net = trained.model
    if args.device != "cpu" or args.dtype != "float32":  # the verifier traces a float32 CPU model
        net = net.to(dtype="float32", device="cpu")
    net.eval()
    x, y = data.x_test[:args.certify_n], data.y_test[:args.certify_n]
    radii = [args.certify * k / 4 for k in (1, 2, 3, 4)] if args.plot else [args.certify]
    from .claims import announce, epsilon_line, gradient_proof, proof_budget

    reports = []
    for r in radii:
        each = f"up to {args.certify_timeout:g} s each"
        announce(args, f"certifying {len(y)} test image{'s' * (len(y) != 1)} at eps {r:g} ({each})")
        reports.append(certify(net, x, y, r, timeout=args.certify_timeout, progress=args.progress))
    for rep in reports:
        print(rep.summary())
    print("every 'verified' is a vnn-unsat certificate and every 'falsified' a counterexample, "
          "each accepted by the trusted checker (torchlean.certificates) before it was counted")
    kind = args.command
    announce(args, f"bounding the float32 rounding error (budget {proof_budget(args):g} s)")
    # (under the same budget as the proof: the ResNet's ε alone took 6 minutes unbudgeted)
    print(epsilon_line(net, data.x_test[:1], None, f"the {kind} on the whole data box [0, 1]^64",
                       budget=proof_budget(args)))
    announce(args, f"proving the @verified gradient of {kind} (budget {proof_budget(args):g} s)")
    print(gradient_proof(kind, lambda: model(kind), (1, 1, 8, 8),
                         budget=proof_budget(args)).summary())
    if args.plot:
        from ..plot import plot_certified

        clean = sum(v != "misclassified" for v in reports[0].verdicts) / len(y)
        path = plot_certified(radii, [r.certified for r in reports], [r.not_falsified for r in reports],
                              clean, args.plot, title=f"digits {args.command}: {len(y)} test images")
        print(f"wrote {path}")
    return 0
