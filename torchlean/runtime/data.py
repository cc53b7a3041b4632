"""Data: TensorDataset, a seeded DataLoader, train/test splitting, standardisation and a CSV loader.

Everything random takes a seed or draws from ``torchlean.manual_seed``'s generator, so a run is
reproducible. Normalisation statistics are fitted on the training split only and then applied to
the test split, so no test information leaks into training.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends import namespace, namespace_of
from .random import generator
from .tensor import Tensor, tensor

#: cell texts read as a missing value by ``load_csv``
MISSING_MARKERS = frozenset({"", "?", "na", "n/a", "nan", "null", "none", "-"})


class TensorDataset:
    """Tensors sharing their first dimension; item ``i`` is the tuple of their ``i``-th rows."""

    def __init__(self, *tensors: Any):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        # numpy arrays keep their dtype (like torch.from_numpy); lists go through tensor()
        self.tensors = tuple(
            t if isinstance(t, Tensor) else Tensor(t) if isinstance(t, np.ndarray) else tensor(t)
            for t in tensors
        )
        n = self.tensors[0].shape[0]
        for t in self.tensors[1:]:
            if t.shape[0] != n:
                raise ValueError(
                    f"TensorDataset: tensors differ in their first dimension ({n} vs {t.shape[0]})"
                )

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, i: Any) -> tuple[Tensor, ...]:
        return tuple(Tensor(t.data[i]) for t in self.tensors)


class DataLoader:
    """Batches of a TensorDataset, optionally shuffled each epoch.

    ``seed`` gives the loader its own generator (same seed, same batches); without it shuffling
    draws from the global generator that ``torchlean.manual_seed`` resets.
    """

    def __init__(self, dataset: TensorDataset, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, seed: int | Sequence[int] | None = None):
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be at least 1, got {batch_size}")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last = shuffle, drop_last
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def batch_indices(self) -> Iterator[np.ndarray]:
        """The index arrays of one epoch (draws a fresh permutation when shuffling)."""
        n = len(self.dataset)
        if self.shuffle:
            order = (self._rng or generator()).permutation(n)
        else:
            order = np.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            yield order[start:start + self.batch_size]

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        for idx in self.batch_indices():
            yield tuple(_take(t, idx) for t in self.dataset.tensors)


def _take(t: Tensor, idx: np.ndarray) -> Tensor:
    xp = namespace_of(t.data)
    return Tensor(t.data[xp.asarray(idx)] if xp is not np else t.data[idx])


def train_test_split(*arrays: np.ndarray, test_fraction: float = 0.2,
                     seed: int = 0) -> list[np.ndarray]:
    """``[a_train, a_test, b_train, b_test, ...]`` from one seeded permutation of the rows."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("train_test_split: arrays differ in length")
    n_test = int(round(n * test_fraction))
    if n_test == 0 or n_test == n:
        raise ValueError(f"train_test_split: {n} rows are too few for a test fraction of {test_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    out: list[np.ndarray] = []
    for a in arrays:
        out += [a[train], a[test]]
    return out


@dataclass
class Standardizer:
    """Per-column ``(x − mean) / std``, fitted on one array and applied to others."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        x = np.asarray(x, dtype=np.float64)
        std = x.std(axis=0)
        # a constant column would divide by zero; leave it centred but unscaled
        return cls(x.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.std + self.mean


@dataclass
class SplitData:
    """Train and test arrays, and each split as a dataset (for ``Trainer.train`` / ``eval``)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def train(self) -> TensorDataset:
        """The training split as a dataset."""
        return TensorDataset(self.x_train, self.y_train)

    def test(self) -> TensorDataset:
        """The test split as a dataset."""
        return TensorDataset(self.x_test, self.y_test)


@dataclass
class TabularData(SplitData):
    """A split, normalised table: float64 arrays plus what it takes to undo the normalisation."""

    features: list[str]
    target: str
    x_scaler: Standardizer | None = None
    y_scaler: Standardizer | None = None
    dropped_rows: int = 0
    notes: list[str] = field(default_factory=list)

    def target_to_original(self, y: np.ndarray) -> np.ndarray:
        """Predictions on the normalised target scale back in the target's own units."""
        return self.y_scaler.inverse(y) if self.y_scaler is not None else np.asarray(y)


def split_and_normalise(x: np.ndarray, y: np.ndarray, features: list[str], target: str, *,
                        test_fraction: float = 0.2, seed: int = 0, normalise: bool = True,
                        normalise_target: bool = True, impute_mean: bool = False) -> TabularData:
    """Split with a seed; then impute (NaN → train mean) and standardise with train statistics."""
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_fraction=test_fraction, seed=seed)
    if impute_mean:
        fill = np.nanmean(x_tr, axis=0)
        if np.isnan(fill).any():
            bad = [features[i] for i in np.flatnonzero(np.isnan(fill))]
            raise ValueError(f"cannot impute: no training value at all in column(s) {', '.join(bad)}")
        x_tr = np.where(np.isnan(x_tr), fill, x_tr)
        x_te = np.where(np.isnan(x_te), fill, x_te)
    data = TabularData(x_tr, y_tr, x_te, y_te, features, target)
    if normalise:
        data.x_scaler = Standardizer.fit(x_tr)
        data.x_train, data.x_test = data.x_scaler.transform(x_tr), data.x_scaler.transform(x_te)
    if normalise_target:
        data.y_scaler = Standardizer.fit(y_tr)
        data.y_train, data.y_test = data.y_scaler.transform(y_tr), data.y_scaler.transform(y_te)
    return data


def _cell(text: str, path: Path, line: int, column: str) -> float:
    s = text.strip()
    if s.lower() in MISSING_MARKERS:
        return math.nan
    try:
        return float(s)
    except ValueError:
        raise ValueError(f"{path}:{line}: column {column!r}: {s!r} is not a number") from None


def load_csv(path: str | Path, target: str, columns: Sequence[str] | None = None,
             missing: str = "drop", test_fraction: float = 0.2, seed: int = 0,
             normalise: bool = True, normalise_target: bool = True,
             delimiter: str = ",") -> TabularData:
    """Read a numeric CSV with a header row into a split, normalised :class:`TabularData`.

    ``columns``: the feature columns (default: every column but ``target``). ``missing``: what to
    do with empty / ``?`` / ``NA`` cells: ``"drop"`` the row, ``"mean"`` impute the training
    split's column mean (rows missing the target are always dropped), or ``"error"``.
    """
    if missing not in ("drop", "mean", "error"):
        raise ValueError(f"missing must be 'drop', 'mean' or 'error', got {missing!r}")
    path = Path(path)
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh, delimiter=delimiter))
    if not rows:
        raise ValueError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    features = [c for c in header if c != target] if columns is None else list(columns)
    for name in [*features, target]:
        if name not in header:
            raise ValueError(f"{path}: no column {name!r} (columns: {', '.join(header)})")
    cols = [header.index(c) for c in features]
    t_col = header.index(target)
    xs, ys = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"{path}:{line}: {len(row)} fields, header has {len(header)}")
        xs.append([_cell(row[i], path, line, header[i]) for i in cols])
        ys.append(_cell(row[t_col], path, line, target))
    x = np.asarray(xs, dtype=np.float64).reshape(len(xs), len(features))
    y = np.asarray(ys, dtype=np.float64).reshape(-1, 1)
    bad_x, bad_y = np.isnan(x).any(axis=1), np.isnan(y[:, 0])
    if missing == "error" and (bad_x.any() or bad_y.any()):
        row = int(np.flatnonzero(bad_x | bad_y)[0]) + 1
        raise ValueError(f"{path}: missing value in data row {row} (use missing='drop' or 'mean')")
    drop = bad_y | bad_x if missing == "drop" else bad_y
    data = split_and_normalise(x[~drop], y[~drop], features, target, test_fraction=test_fraction,
                               seed=seed, normalise=normalise, normalise_target=normalise_target,
                               impute_mean=missing == "mean")
    data.dropped_rows = int(drop.sum())
    return data


def as_tensor(a: Any, dtype: Any, device: str) -> Tensor:
    """A (copied) tensor of ``dtype`` on ``device`` from an array or Tensor."""
    if isinstance(a, Tensor):
        a = a.numpy()
    return Tensor(namespace(device).asarray(np.asarray(a).astype(dtype)))
