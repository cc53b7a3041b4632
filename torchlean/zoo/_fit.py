"""The one training path of the zoo's commands with drawn batches (transformer, autoencoder, vae, pinn,
fno, ppo): a ``Trainer`` (so ``--backend compiled`` runs ``runtime.compiled.CompiledStep``,
``--dtype`` and ``--device`` move the model, ``cuda`` without cupy or a GPU is a ``DeviceError``)
fed by a batch sampler, and ``predict`` to evaluate a trained model on its own device and dtype.

A command's objective that is not ``loss(model(x), y)`` of a stock model is written as a small
module whose output the loss reads (the VAE's negative ELBO with its noise as part of the input,
the PINN's residual, PPO's policy and value heads), so the compiled backend traces it like any model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..runtime.backends import namespace, to_numpy
from ..runtime.tensor import Tensor, no_grad
from ..runtime.trainer import TrainedModel, Trainer

__all__ = ["DEVICE_DEFAULTS", "fit", "mean_of", "predict", "trainer"]

#: the defaults of ``--backend``, ``--dtype`` and ``--device`` (as ``mlp``)
DEVICE_DEFAULTS = {"backend": "eager", "dtype": "float32", "device": "cpu"}


def mean_of(out: Tensor, y: Tensor) -> Tensor:
    """The loss of a model whose output already is the per-example objective: its mean."""
    return out.mean()


def trainer(net: Any, loss: Any, lr: float, seed: int, *, task: str = "regression", backend: str = "eager",
            dtype: str = "float32", device: str = "cpu", scheduler: Any = None) -> Trainer:
    """An Adam ``Trainer`` for ``net`` with ``loss`` (a callable ``(output, target) -> loss``) and an
    optional ``scheduler`` (``optimizer -> LRScheduler``)."""
    return Trainer(net, task=task, optimizer="adam", loss=loss, lr=lr, seed=seed, backend=backend,
                   dtype=dtype, device=device, scheduler=scheduler)


def fit(net: Any, sample: Callable[[int], tuple[Any, Any]], steps: int, loss: Any, lr: float, seed: int,
        progress: bool | None = None, log_every: int = 50, **flags: Any) -> TrainedModel:
    """Train ``net`` for ``steps`` Adam steps on batches ``sample(step)`` (``flags``: task, backend,
    dtype, device as ``trainer``); the model is left in eval mode on its device."""
    tr = trainer(net, loss, lr, seed, **flags)
    done = tr.train(sample, steps=steps, log_every=min(log_every, max(steps, 1)), progress=progress)
    done.model.eval()
    return done


def predict(net: Any, x: Any, batch: int = 4096) -> np.ndarray:
    """``net(x)`` as a float64 numpy array, ``x`` moved to the device and (floating) dtype of the
    net's first parameter, without a tape; integer inputs (token ids) stay integers."""
    first = next(iter(net.parameters()))
    xp = namespace(first.device)
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        arr = arr.astype(first.dtype)
    with no_grad():
        outs = [to_numpy(net(Tensor(xp.asarray(arr[i:i + batch]))).data) for i in range(0, len(arr), batch)]
    return np.concatenate(outs, axis=0).astype(np.float64)


def report_log(args: Any, history: list[dict[str, Any]]) -> None:
    """Write the training log where ``--log`` asks (``trainer.write_log``) and say where."""
    if args.log:
        from ..runtime.trainer import write_log

        write_log(args.log, history)
        print(f"training log: {args.log}")


def versus(error: float, baseline: float, what: str) -> str:
    """``error`` against a baseline's, in words that stay true either way: "3.2x better than the
    baseline" or, for a model still worse (a short run), "2.4x worse than the baseline"."""
    if not (np.isfinite(error) and error > 0):
        return f"baseline {what} {baseline:.4g}"
    if error <= baseline:
        return f"{baseline / error:.1f}x better than {what}"
    return f"{error / baseline:.1f}x worse than {what}"
