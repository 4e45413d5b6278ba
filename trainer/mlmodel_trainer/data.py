"""Training data: a dataset bundled with scikit-learn or a CSV file, as features and a target."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import datasets as skdatasets

from mlmodel_trainer.errors import TrainerError

# Bundled with scikit-learn, so loading them never touches the network.
BUILTIN_DATASETS: dict[str, Callable[..., Any]] = {
    "iris": skdatasets.load_iris,
    "wine": skdatasets.load_wine,
    "breast_cancer": skdatasets.load_breast_cancer,
    "digits": skdatasets.load_digits,
    "diabetes": skdatasets.load_diabetes,
}


@dataclass(frozen=True)
class Dataset:
    """Features `X` (float64, rows x features) and target `y` (numbers or string labels)."""

    name: str
    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target_name: str

    @property
    def n_rows(self) -> int:
        """Number of rows (examples)."""
        return int(self.X.shape[0])


def load_builtin(name: str) -> Dataset:
    """Load one of scikit-learn's bundled datasets by name (see BUILTIN_DATASETS)."""
    try:
        loader = BUILTIN_DATASETS[name]
    except KeyError:
        known = ", ".join(BUILTIN_DATASETS)
        raise TrainerError(f"unknown dataset {name!r}; choose one of: {known}") from None
    bunch = loader()
    return Dataset(
        name=name,
        X=np.asarray(bunch.data, dtype=np.float64),
        y=np.asarray(bunch.target),
        feature_names=[str(f) for f in bunch.feature_names],
        target_name="target",
    )


def load_csv(path: str | Path, target: str) -> Dataset:
    """Load a CSV with a header row; `target` names the label column, the others are features.

    Feature columns must be numeric (or true/false); no cell may be empty.
    """
    frame = _read_csv(Path(path))
    if target not in frame.columns:
        columns = ", ".join(repr(str(c)) for c in frame.columns)
        raise TrainerError(
            f"CSV {path} has no target column {target!r}; its columns are: {columns}"
        )
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise TrainerError(f"CSV {path} has no feature columns besides the target {target!r}")
    _reject_missing_values(frame, path)
    _reject_non_numeric(features, path)
    return Dataset(
        name=f"csv:{path}",
        X=features.to_numpy(dtype=np.float64),
        y=_target_values(frame[target]),
        feature_names=[str(c) for c in features.columns],
        target_name=target,
    )


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise TrainerError(f"CSV file {path} does not exist or is not a file")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise TrainerError(f"CSV {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainerError(f"CSV {path} could not be parsed: {first_line}") from None
    if frame.shape[0] == 0:
        raise TrainerError(f"CSV {path} has a header but no data rows")
    return frame


def _reject_missing_values(frame: pd.DataFrame, path: str | Path) -> None:
    counts = frame.isna().sum()
    missing = counts[counts > 0]
    if missing.empty:
        return
    parts = ", ".join(
        f"{str(col)!r} ({n} row{'s' if n != 1 else ''})" for col, n in missing.items()
    )
    raise TrainerError(
        f"CSV {path} has missing values in column(s): {parts}; fill or drop them before training"
    )


def _reject_non_numeric(features: pd.DataFrame, path: str | Path) -> None:
    bad = [
        col
        for col in features.columns
        if not (
            pd.api.types.is_numeric_dtype(features[col])
            or pd.api.types.is_bool_dtype(features[col])
        )
    ]
    if not bad:
        return
    parts = ", ".join(f"{str(col)!r} (e.g. {str(features[col].iloc[0])!r})" for col in bad)
    raise TrainerError(
        f"CSV {path} has non-numeric feature column(s): {parts}; "
        "encode them as numbers or drop them before training"
    )


def _target_values(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(column):
        return np.asarray(column.astype(str), dtype=str)
    if pd.api.types.is_numeric_dtype(column):
        return np.asarray(column)
    return np.asarray(column.astype(str), dtype=str)


def fingerprint(X: np.ndarray, y: np.ndarray, feature_names: list[str]) -> str:
    """sha256 (hex) of the data: feature names and shape, X as little-endian float64, y as JSON."""
    digest = hashlib.sha256()
    header = {"feature_names": feature_names, "shape": list(X.shape)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(X, dtype="<f8").tobytes())
    digest.update(json.dumps(y.tolist()).encode())
    return digest.hexdigest()
