"""Checkpoints: a model's state_dict (and optionally an optimizer's state) in one ``.npz`` file.

- Exact bits: arrays are stored raw by ``numpy.savez`` (dtype and bytes as they are).
- No pickle: only numeric arrays are written, and loading passes ``allow_pickle=False``, so a
  crafted file cannot run code. Non-array optimizer settings (learning rates, betas, step counts)
  go into a JSON document stored as a uint8 array.
- Atomic: written to a temporary file in the target directory, then ``os.replace``d over it, so
  a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._files import atomic_write
from .lr_scheduler import LRScheduler
from .nn.module import Module
from .optim import Optimizer

FORMAT = "torchlean-checkpoint/1"
_MODEL, _OPTIM, _META = "model/", "optim/", "__meta__"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, malformed or does not fit the model."""


def _json_safe(value: Any) -> Any:
    if isinstance(value, tuple):
        return {"__tuple__": [_json_safe(v) for v in value]}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_from_json(v) for v in value["__tuple__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


class Checkpoint(NamedTuple):
    """What a checkpoint file holds (``optimizer`` and ``scheduler`` empty when not saved)."""

    model: dict[str, np.ndarray]
    optimizer: dict[str, Any]
    extra: dict[str, Any]
    scheduler: dict[str, Any]


def save_checkpoint(path: str | Path, model: Module, optimizer: Optimizer | None = None,
                    extra: dict[str, Any] | None = None, scheduler: LRScheduler | None = None) -> Path:
    """Write ``model``'s state_dict (+ ``optimizer``'s and ``scheduler``'s state, + JSON-able
    ``extra``) atomically."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for name, arr in model.state_dict().items():
        arrays[_MODEL + name] = arr
    meta: dict[str, Any] = {"format": FORMAT, "extra": _json_safe(extra or {})}
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, st in sd["state"].items():
            for key, value in st.items():
                if isinstance(value, np.ndarray):
                    arrays[f"{_OPTIM}{idx}/{key}"] = value
                else:
                    scalars.setdefault(str(idx), {})[key] = value
        meta["optimizer"] = {"type": type(optimizer).__name__, "param_groups": _json_safe(sd["param_groups"]),
                             "scalars": _json_safe(scalars)}
    if scheduler is not None:
        meta["scheduler"] = {"type": type(scheduler).__name__, "state": _json_safe(scheduler.state_dict())}
    try:
        arrays[_META] = np.frombuffer(json.dumps(meta, allow_nan=True).encode(), dtype=np.uint8)
    except TypeError as e:
        raise CheckpointError(f"checkpoint: metadata is not JSON-serialisable ({e})") from None
    for key, arr in arrays.items():
        if arr.dtype == object:
            raise CheckpointError(f"checkpoint: {key} is an object array; only numeric arrays are saved")
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The model state, optimizer state dict, extra and scheduler state of a file, without pickle."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except (ValueError, OSError) as e:  # not a zip / an object array / truncated
        raise CheckpointError(f"{path}: not a torchlean checkpoint ({e})") from None
    try:
        meta = json.loads(files.pop(_META).tobytes().decode())
    except (KeyError, ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: not a torchlean checkpoint (no readable metadata)") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    model = {k[len(_MODEL):]: v for k, v in files.items() if k.startswith(_MODEL)}
    optim: dict[str, Any] = {}
    if "optimizer" in meta:
        om = meta["optimizer"]
        state: dict[int, dict[str, Any]] = {}
        for idx, scal in om["scalars"].items():
            state.setdefault(int(idx), {}).update(scal)
        for k, v in files.items():
            if k.startswith(_OPTIM):
                idx, key = k[len(_OPTIM):].split("/", 1)
                state.setdefault(int(idx), {})[key] = v
        optim = {"type": om["type"], "state": state, "param_groups": _from_json(om["param_groups"])}
    sched = _from_json(meta["scheduler"]) if "scheduler" in meta else {}
    return Checkpoint(model, optim, _from_json(meta["extra"]), sched)


def load_checkpoint(path: str | Path, model: Module, optimizer: Optimizer | None = None,
                    scheduler: LRScheduler | None = None) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``, ``scheduler``); returns ``extra``."""
    model_state, optim_state, extra, sched_state = read_checkpoint(path)
    try:
        model.load_state_dict(model_state)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: does not fit the model: {e}") from None
    if optimizer is not None:
        if not optim_state:
            raise CheckpointError(f"{path}: holds no optimizer state")
        if optim_state["type"] != type(optimizer).__name__:
            raise CheckpointError(
                f"{path}: holds {optim_state['type']} state, not {type(optimizer).__name__}"
            )
        optimizer.load_state_dict(optim_state)
    if scheduler is not None:
        if not sched_state:
            raise CheckpointError(f"{path}: holds no scheduler state")
        if sched_state["type"] != type(scheduler).__name__:
            raise CheckpointError(
                f"{path}: holds {sched_state['type']} state, not {type(scheduler).__name__}"
            )
        scheduler.load_state_dict(sched_state["state"])
    return extra
