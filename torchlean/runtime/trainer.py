"""``Trainer``: the training loop behind ``torchlean.Trainer`` and ``python -m torchlean mlp``.

One step is: gradients of the loss on a batch (eager: tape + ``backward``; compiled: the traced
graph run by ``runtime.compiled.CompiledStep``, which must leave bit-identical ``.grad``s), optional
gradient clipping, ``optimizer.step()``, ``scheduler.step()``. Batches come from a DataLoader with
its own seed, so a run is reproducible. The loop shows a tqdm bar (only on a terminal unless asked),
stops cleanly on Ctrl-C, and can write a JSON log of loss, learning rate and time.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .._files import atomic_write
from .backends import namespace, to_numpy
from .checkpoint import save_checkpoint
from .clip import clip_grad_norm_
from .data import DataLoader, TensorDataset
from .lr_scheduler import LRScheduler
from .nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, MSELoss
from .nn.module import Module
from .optim import Optimizer, make_optimizer
from .tensor import Tensor, as_dtype, no_grad

LossFn = Callable[[Tensor, Tensor], Tensor]
TASK_LOSSES: dict[str, type[Module]] = {
    "regression": MSELoss, "classification": CrossEntropyLoss, "binary": BCEWithLogitsLoss,
}
LOSSES: dict[str, type[Module]] = {
    "mse": MSELoss, "huber": HuberLoss, "cross_entropy": CrossEntropyLoss,
    "bce_with_logits": BCEWithLogitsLoss,
}
BACKENDS = ("eager", "compiled")
FLOAT_DTYPES = ("float32", "float64")
LOG_FORMAT = "torchlean-train-log/1"


def _choice(what: str, value: str, allowed: Any) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    return value


def _class_indices(y: np.ndarray) -> np.ndarray:
    """Classification targets as int64 class indices: whole numbers >= 0 (float ones too, as a CSV
    gives them); 1.5 or -1 is an error, never truncated or wrapped to another class."""
    if y.dtype.kind not in "iub":
        if y.dtype.kind != "f" or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("Trainer: classification targets must be whole class indices, got "
                             f"{y.dtype} values such as {y.ravel()[:3].tolist()}")
    if y.size and y.min() < 0:
        raise ValueError(f"Trainer: classification targets must be class indices >= 0, got {y.min()}")
    return y.astype(np.int64)


class Trainer:
    """Train and evaluate ``model`` on a task.

    ``optimizer``: an Optimizer over the model's parameters, or a name (``"adam"``, ``"sgd"``,
    ...) built with ``lr``. ``loss``: a loss module / callable / name; by default the task's
    (MSE for regression, cross-entropy for classification, BCE-with-logits for binary).
    ``scheduler``: an LRScheduler, or a function ``optimizer -> LRScheduler``; stepped once per
    training step. ``clip``: a maximum gradient norm. ``device="cuda"`` without cupy or a GPU
    raises ``DeviceError``; it never falls back to the CPU.

    Example::

        model = tl.nn.Sequential(tl.nn.Linear(2, 8), tl.nn.ReLU(), tl.nn.Linear(8, 3))
        x, y = np.random.default_rng(0).normal(size=(64, 2)), np.arange(64) % 3   # class indices
        trained = tl.Trainer(model, task="classification", lr=0.01).train((x, y), steps=20, progress=False)
        trained.eval((x, y))["accuracy"]
    """

    def __init__(self, model: Module, task: str = "regression", optimizer: Optimizer | str = "adam",
                 loss: LossFn | str | None = None, lr: float = 1e-3, backend: str = "eager",
                 dtype: str = "float32", device: str = "cpu",
                 scheduler: LRScheduler | Callable[[Optimizer], LRScheduler] | None = None,
                 clip: float | None = None, seed: int = 0):
        self.task = _choice("task", task, TASK_LOSSES)
        self.backend = _choice("backend", backend, BACKENDS)
        self.dtype = as_dtype(_choice("dtype", str(dtype), FLOAT_DTYPES))
        if device == "symbolic":
            raise ValueError("Trainer: device 'symbolic' cannot train; use 'cpu' or 'cuda'")
        namespace(device)  # raises DeviceError for 'cuda' without cupy or a GPU
        self.device = device
        if not isinstance(model, Module):
            from .trace import require_traceable

            require_traceable(model, "Trainer")  # a PyTorch module: the message names from_torch
            raise TypeError(f"Trainer: model must be a torchlean nn.Module, got {type(model).__name__}")
        self.model = model.to(dtype=self.dtype, device=device)
        if isinstance(optimizer, str):
            optimizer = make_optimizer(optimizer, self.model.parameters(), lr=lr)
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"Trainer: optimizer must be an Optimizer or a name, got {type(optimizer).__name__}"
            )
        # state made before the model moved (e.g. Adagrad's accumulators) follows it: the
        # round trip re-creates every state array in its parameter's dtype and device
        optimizer.load_state_dict(optimizer.state_dict())
        self.optimizer = optimizer
        if loss is None:
            loss = TASK_LOSSES[task]()
        elif isinstance(loss, str):
            loss = LOSSES[_choice("loss", loss, LOSSES)]()
        self.loss_fn: LossFn = loss
        if scheduler is not None and not isinstance(scheduler, LRScheduler):
            scheduler = scheduler(self.optimizer)
        self.scheduler = scheduler
        if clip is not None and not clip > 0:
            raise ValueError(f"Trainer: clip must be a positive gradient norm, got {clip}")
        self.clip = clip
        self.seed = seed
        self.steps_done = 0
        self._compiled: Any = None
        if backend == "compiled":
            try:
                from .compiled import CompiledStep
            except ImportError as e:
                raise RuntimeError(f"backend 'compiled' is not available in this build ({e})") from None
            self._compiled = CompiledStep(self.model, self.loss_fn)

    # -- data ------------------------------------------------------------------------------
    def dataset(self, data: Any) -> TensorDataset:
        """``data`` (a TensorDataset or an ``(x, y)`` pair) as tensors of the trainer's dtype and
        device; regression targets of shape (N,) become (N, 1)."""
        tensors = data.tensors if isinstance(data, TensorDataset) else tuple(data)
        if len(tensors) != 2:
            raise ValueError(f"Trainer: data must be (inputs, targets), got {len(tensors)} arrays")
        x, y = (to_numpy(t.data) if isinstance(t, Tensor) else np.asarray(t) for t in tensors)
        x = self._inputs(x)
        if self.task == "classification":
            y = _class_indices(y)
        else:
            y = y.astype(self.dtype)
            if y.ndim == 1:
                y = y.reshape(-1, 1)
        xp = namespace(self.device)
        return TensorDataset(Tensor(xp.asarray(x)), Tensor(xp.asarray(y)))

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        """Float inputs in the trainer's dtype; integer inputs (token ids) stay integers."""
        return x.astype(np.int64) if x.dtype.kind in "iu" else x.astype(self.dtype)

    # -- one step --------------------------------------------------------------------------
    def _gradients(self, x: Tensor, y: Tensor) -> Tensor:
        if self._compiled is not None:
            return self._compiled(x, y)
        self.model.zero_grad()
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        return loss

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One optimisation step on a batch; returns the batch loss (before the update)."""
        loss = self._gradients(x, y)
        if self.clip is not None:
            clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.steps_done += 1
        return loss

    # -- loops -----------------------------------------------------------------------------
    def train(self, data: Any, steps: int = 100, batch_size: int = 32, log_every: int = 10,
              log_path: str | Path | None = None, progress: bool | None = None) -> TrainedModel:
        """Run ``steps`` optimisation steps over shuffled batches (epochs repeat as needed).

        ``data``: a dataset (a TensorDataset or an ``(x, y)`` pair), or a batch sampler: a function
        ``step -> (x, y)`` (numpy arrays or tensors; ``step`` counts from 0 over the trainer's life)
        for loops whose batches are drawn, not shuffled from a fixed set (random windows of a text,
        fresh noise, rollouts); each batch goes to the trainer's dtype and device like a dataset.

        ``progress``: a bar on a terminal (default: only there); ``True`` also off a terminal
        (plain lines every 10 s, ``torchlean.progress``). Every
        ``log_every`` steps a record ``{step, loss, lr, time}`` is added to the history (``loss``:
        the mean batch loss since the previous record; ``time``: seconds since the start);
        ``log_path`` gets the whole log as JSON, written atomically. Ctrl-C stops after the
        current step (a second Ctrl-C at once) and returns what was trained so far
        (``interrupted=True``). Batches are shuffled with the trainer's seed; a later call to
        ``train`` continues with a new order rather than repeating the first.
        """
        if steps < 0 or batch_size < 1 or log_every < 1:
            raise ValueError("train: steps must be >= 0, batch_size and log_every >= 1")
        loader: Any
        if callable(data) and not isinstance(data, TensorDataset):
            loader = _Sampled(self, data)
        else:
            ds = self.dataset(data)
            order_seed = self.seed if self.steps_done == 0 else [self.seed, self.steps_done]
            loader = DataLoader(ds, batch_size=batch_size, shuffle=True, seed=order_seed)
        result = TrainedModel(self, config=self.config(steps=steps, batch_size=batch_size))
        from ..progress import bar as progress_bar

        bar = progress_bar(total=steps, desc="train", unit="step", enabled=progress)
        self.model.train()
        start = time.perf_counter()
        acc: Any = 0.0  # running loss since the last record, kept on the device (no sync per step)
        since = 0
        done = 0
        stop = _StopOnInterrupt()
        try:
            stop.install()
            while done < steps and not stop.requested:
                for x, y in loader:
                    acc = self.step(x, y).data + acc
                    done += 1
                    since += 1
                    bar.update(1)
                    if done % log_every == 0 or done == steps:
                        rec = {"step": done, "loss": float(acc) / since,
                               "lr": float(self.optimizer.param_groups[0]["lr"]),
                               "time": round(time.perf_counter() - start, 6)}
                        result.history.append(rec)
                        bar.set_postfix(loss=f"{rec['loss']:.4g}")
                        acc, since = 0.0, 0
                    if done == steps or stop.requested:
                        break
        except KeyboardInterrupt:
            stop.requested = True
        finally:
            stop.restore()
            bar.close()
        result.interrupted = stop.requested
        result.steps = done
        result.time_s = time.perf_counter() - start
        if log_path is not None:
            result.write_log(log_path)
        return result

    def eval(self, data: Any, batch_size: int = 4096) -> dict[str, float]:
        """Loss (and accuracy for classification tasks) over all of ``data``, in eval mode."""
        ds = self.dataset(data)
        x, y = ds.tensors
        was_training = self.model.training  # restored after: a model the user put in eval() stays there
        self.model.eval()
        try:
            with no_grad():
                outs = [self.model(Tensor(x.data[i:i + batch_size])).data
                        for i in range(0, len(ds), batch_size)]
                xp = namespace(self.device)
                out = Tensor(xp.concatenate(outs, axis=0))
                metrics = {"loss": float(self.loss_fn(out, y).item())}
        finally:
            self.model.train(was_training)
        if self.task == "classification":
            metrics["accuracy"] = float((to_numpy(out.data).argmax(axis=1) == to_numpy(y.data)).mean())
        elif self.task == "binary":
            metrics["accuracy"] = float(((to_numpy(out.data) > 0) == (to_numpy(y.data) > 0.5)).mean())
        return metrics

    def predict(self, x: Any) -> np.ndarray:
        """The model's outputs on ``x`` as a numpy array (eval mode, no tape)."""
        arr = to_numpy(x.data) if isinstance(x, Tensor) else np.asarray(x)
        was_training = self.model.training
        self.model.eval()
        try:
            with no_grad():
                out = self.model(Tensor(namespace(self.device).asarray(self._inputs(arr))))
        finally:
            self.model.train(was_training)
        return to_numpy(out.data)

    def config(self, **more: Any) -> dict[str, Any]:
        """The run's settings (task, backend, dtype, device, optimizer, lr, loss, ...) and ``more``."""
        return {
            "task": self.task, "backend": self.backend, "dtype": str(self.dtype), "device": self.device,
            "optimizer": type(self.optimizer).__name__,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "loss": type(self.loss_fn).__name__,
            "scheduler": type(self.scheduler).__name__ if self.scheduler is not None else None,
            "clip": self.clip, "seed": self.seed, **more,
        }


class _Sampled:
    """One "epoch" of a batch sampler: an endless stream of ``sample(steps_done)`` batches as
    tensors of the trainer's dtype and device (the loop stops it after its steps)."""

    def __init__(self, trainer: Trainer, sample: Callable[[int], Any]):
        self.trainer, self.sample = trainer, sample

    def __iter__(self) -> Any:
        while True:
            yield self.trainer.dataset(self.sample(self.trainer.steps_done)).tensors


class _StopOnInterrupt:
    """While installed, the first SIGINT (Ctrl-C) only asks the loop to stop after its current
    step, so parameters and optimizer state are never left half-updated; a second one interrupts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def install(self) -> None:
        # signal handlers can only be set from the main thread; elsewhere Ctrl-C stays immediate
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def write_log(path: str | Path, log: dict[str, Any] | list[dict[str, Any]]) -> Path:
    """Write a training log atomically as JSON: a whole log dict, or just its ``records`` (a list of
    ``{"step", "loss", ...}``, e.g. from a hand-written loop), which get the format tag that
    ``python -m torchlean plot`` reads. Returns the path."""
    if isinstance(log, list):
        log = {"format": LOG_FORMAT, "records": log}
    text = json.dumps(log, indent=1).encode()
    return atomic_write(path, lambda fh: fh.write(text))


@dataclass
class TrainedModel:
    """What ``Trainer.train`` returns: the (trained, in place) model, its history and helpers."""

    trainer: Trainer
    config: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    time_s: float = 0.0
    interrupted: bool = False

    @property
    def model(self) -> Module:
        return self.trainer.model

    def predict(self, x: Any) -> np.ndarray:
        """The trained model's outputs on ``x`` as a numpy array (eval mode, no gradient)."""
        return self.trainer.predict(x)

    def eval(self, data: Any) -> dict[str, float]:
        """Loss (and accuracy for classification) over ``data`` (see ``Trainer.eval``)."""
        return self.trainer.eval(data)

    def save(self, path: str | Path) -> Path:
        """A checkpoint of the model, optimizer and scheduler state (exact bits, no pickle)."""
        return save_checkpoint(path, self.model, self.trainer.optimizer, extra={"config": self.config},
                               scheduler=self.trainer.scheduler)

    def log(self) -> dict[str, Any]:
        """The training log as a JSON-ready dict: config, per-step records, steps, time."""
        return {"format": LOG_FORMAT, "config": self.config, "records": self.history,
                "steps": self.steps, "time_s": self.time_s, "interrupted": self.interrupted}

    def write_log(self, path: str | Path) -> Path:
        """Write ``log()`` as JSON to ``path`` atomically; returns the path."""
        return write_log(path, self.log())

    def print_summary(self, file: TextIO | None = None) -> None:
        """Print the model, its configuration and the first and last logged losses."""
        out = file or sys.stdout
        c = self.config
        print(self.model, file=out)
        print(f"parameters: {self.model.num_parameters()}  dtype: {c['dtype']}  device: {c['device']}  "
              f"backend: {c['backend']}", file=out)
        print(f"optimizer: {c['optimizer']} (lr {c['lr']:g})  loss: {c['loss']}  "
              f"scheduler: {c['scheduler']}  clip: {c['clip']}", file=out)
        per_step = self.time_s / self.steps * 1e3 if self.steps else 0.0
        status = " (interrupted)" if self.interrupted else ""
        print(f"steps: {self.steps}{status}  time: {self.time_s:.2f} s ({per_step:.3f} ms/step)", file=out)
        if self.history:
            first, last = self.history[0], self.history[-1]
            print(f"train loss: {first['loss']:.6g} (step {first['step']}) -> {last['loss']:.6g} "
                  f"(step {last['step']})", file=out)
