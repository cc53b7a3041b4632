"""Train a small CNN with torchlean, then bound it and check its robustness with ``tl.verify``,
with no ONNX file and no VNN-LIB (docs/verify-api.md)."""

import numpy as np

import torchlean as tl
from torchlean import nn


def main() -> None:
    tl.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (128, 1, 8, 8))
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).astype(np.int64)  # top or bottom brighter
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64, 2),
    )
    trained = tl.Trainer(model, task="classification", optimizer="adam", lr=0.02).train(
        (x, y), steps=60, batch_size=32, progress=False)
    model.eval()
    print("accuracy:", trained.eval((x, y)).get("accuracy"))

    x0 = x[:1]
    label = int(model(tl.tensor(x0)).numpy().argmax())
    for method in ("ibp", "crown", "alpha-crown"):
        b = tl.verify.bounds(model, x0, eps=0.01, method=method)
        print(b)  # each output's [lower, upper], printed rounded outward
    print("computed by:", b.checked_by)

    for eps in (0.001, 0.5):
        r = tl.verify.robustness(model, x0, eps, label, timeout=10)
        print(f"eps={eps}: {r.verdict} ({r.reason})")
        if r.verdict == "falsified":
            y_cx = model(tl.tensor(r.counterexample)).numpy().ravel()
            print("  counterexample outputs:", y_cx.round(4), "label", label)


if __name__ == "__main__":
    main()
