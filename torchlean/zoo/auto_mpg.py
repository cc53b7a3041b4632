"""Auto MPG (UCI, Quinlan 1993): fuel consumption from 7 car attributes, and the MLP 7→32→1.

The data file ships with the package (``zoo/data/auto-mpg.data``, attribution in
``zoo/data/AUTO-MPG-SOURCE.md``). Missing values: six cars have ``?`` for horsepower; those rows
are **dropped** (392 of 398 remain), the usual treatment of this dataset, so that no imputed value
enters training or the test score. Split: 80/20 with a fixed seed. Features and the mpg target are
standardised with the training split's mean and std.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from ..runtime.data import TabularData, split_and_normalise
from ..runtime.nn import Linear, ReLU, Sequential

FEATURES = ["cylinders", "displacement", "horsepower", "weight", "acceleration", "model_year", "origin"]
TARGET = "mpg"
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def data_path() -> Path:
    return Path(str(resources.files("torchlean.zoo") / "data" / "auto-mpg.data"))


def read_raw(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """``(x, y, car_names, dropped)``: the 7 features and mpg of every complete row.

    Format: whitespace-separated numbers, a tab, the car name in double quotes; first line a header.
    """
    path = Path(path) if path is not None else data_path()
    xs, ys, names = [], [], []
    dropped = 0
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("mpg"):
            continue
        numbers, _, name = line.partition("\t")
        fields = numbers.split()
        if len(fields) != 8:
            raise ValueError(f"{path}:{line_no}: expected 8 numeric fields, got {len(fields)}")
        if "?" in fields:
            dropped += 1
            continue
        values = [float(f) for f in fields]
        ys.append(values[0])
        xs.append(values[1:])
        names.append(name.strip().strip('"'))
    return np.asarray(xs), np.asarray(ys).reshape(-1, 1), names, dropped


def load(seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION) -> TabularData:
    """The split, standardised dataset (float64; targets of shape (N, 1))."""
    x, y, _, dropped = read_raw()
    data = split_and_normalise(x, y, FEATURES, TARGET, test_fraction=test_fraction, seed=seed)
    data.dropped_rows = dropped
    data.notes.append(f"dropped {dropped} rows with a missing horsepower")
    return data


def mlp(hidden: int = 32) -> Sequential:
    """The regression MLP 7 → hidden → 1 with a ReLU (initialised from ``torchlean.manual_seed``)."""
    return Sequential(Linear(len(FEATURES), hidden), ReLU(), Linear(hidden, 1))
