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

from mlmodel_artifact import FeatureKind, InputSchema, infer_schema
from mlmodel_artifact.schema import MAX_CATEGORIES, column_kind, frame_rows, normalize_frame
from mlmodel_trainer.errors import TrainerError

# Bundled with scikit-learn, so loading them never touches the network.
BUILTIN_DATASETS: dict[str, Callable[..., Any]] = {
    "iris": skdatasets.load_iris,
    "wine": skdatasets.load_wine,
    "breast_cancer": skdatasets.load_breast_cancer,
    "digits": skdatasets.load_digits,
    "diabetes": skdatasets.load_diabetes,
}
# Real-world tabular data: missing values and categorical columns (shipped by palmerpenguins).
PENGUINS = "penguins"
DATASET_NAMES = [*BUILTIN_DATASETS, PENGUINS]


@dataclass(frozen=True)
class Dataset:
    """Features `X` and target `y` (numbers or string labels).

    `X` is a float64 matrix for plain numeric data (every feature a number, none missing), or a
    DataFrame typed as the server will hand it to the model (`normalize_frame`) when some
    feature is categorical, boolean or has missing values: that data is trained through a
    preprocessing Pipeline (`mlmodel_trainer.preprocess`).
    """

    name: str
    X: Any
    y: np.ndarray
    feature_names: list[str]
    target_name: str
    schema: InputSchema

    @property
    def n_rows(self) -> int:
        """Number of rows (examples)."""
        return int(self.X.shape[0])

    @property
    def tabular(self) -> bool:
        """Whether the features need the preprocessing pipeline (mixed types or missing values)."""
        return isinstance(self.X, pd.DataFrame)


def load_builtin(name: str) -> Dataset:
    """Load a bundled dataset by name: scikit-learn's five, or `penguins` (see BUILTIN_DATASETS)."""
    if name == PENGUINS:
        return load_penguins()
    try:
        loader = BUILTIN_DATASETS[name]
    except KeyError:
        known = ", ".join([*BUILTIN_DATASETS, PENGUINS])
        raise TrainerError(f"unknown dataset {name!r}; choose one of: {known}") from None
    bunch = loader()
    names = [str(f) for f in bunch.feature_names]
    return Dataset(
        name=name,
        X=np.asarray(bunch.data, dtype=np.float64),
        y=np.asarray(bunch.target),
        feature_names=names,
        target_name="target",
        schema=InputSchema.numeric(names),
    )


def load_penguins() -> Dataset:
    """The Palmer penguins (344 rows, shipped by the `palmerpenguins` package): predict
    `species` from measurements with missing values and the categorical `island` and `sex`."""
    import palmerpenguins

    frame = palmerpenguins.load_penguins()
    return _from_frame(PENGUINS, frame, "species", "the penguins data")


def load_csv(path: str | Path, target: str) -> Dataset:
    """Load a CSV with a header row; `target` names the label column, the others are features.

    Feature columns may hold numbers, true/false or text (categories), and may have empty
    cells; the target column may not.
    """
    frame = _read_csv(Path(path))
    if target not in frame.columns:
        columns = ", ".join(repr(str(c)) for c in frame.columns)
        raise TrainerError(
            f"CSV {path} has no target column {target!r}; its columns are: {columns}"
        )
    return _from_frame(f"csv:{path}", frame, target, f"CSV {path}")


def _from_frame(name: str, frame: pd.DataFrame, target: str, what: str) -> Dataset:
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise TrainerError(f"{what} has no feature columns besides the target {target!r}")
    _reject_missing_target(frame[target], what)
    _reject_empty_columns(features, what)
    _reject_identifiers(features, what)
    schema = infer_schema(features)
    names = [str(c) for c in features.columns]
    X: Any
    if schema.plain_numeric:
        X = features.to_numpy(dtype=np.float64)
    else:
        X = normalize_frame(features.set_axis(names, axis=1), schema)
    return Dataset(
        name=name,
        X=X,
        y=_target_values(frame[target]),
        feature_names=names,
        target_name=target,
        schema=schema,
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


def _reject_missing_target(column: pd.Series, what: str) -> None:
    n = int(column.isna().sum())
    if n:
        raise TrainerError(
            f"{what} has missing values in the target column {str(column.name)!r} "
            f"({n} row{'s' if n != 1 else ''}); drop those rows before training"
        )


def _reject_empty_columns(features: pd.DataFrame, what: str) -> None:
    empty = [str(c) for c in features.columns if features[c].isna().all()]
    if empty:
        raise TrainerError(
            f"{what} has feature column(s) with no values at all: "
            f"{', '.join(map(repr, empty))}; drop them before training"
        )


def _reject_identifiers(features: pd.DataFrame, what: str) -> None:
    for name in features.columns:
        column = features[name]
        if column_kind(column) is not FeatureKind.CATEGORICAL:
            continue
        distinct = int(column.nunique(dropna=True))
        if distinct > MAX_CATEGORIES:
            raise TrainerError(
                f"{what} column {str(name)!r} has {distinct} distinct text values (a categorical "
                f"feature may have at most {MAX_CATEGORIES}); it looks like an identifier, "
                "drop it before training"
            )


def _target_values(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(column):
        return np.asarray(column.astype(str), dtype=str)
    if pd.api.types.is_numeric_dtype(column):
        return np.asarray(column)
    return np.asarray(column.astype(str), dtype=str)


def fingerprint(
    X: Any, y: np.ndarray, feature_names: list[str], schema: InputSchema | None = None
) -> str:
    """sha256 (hex) of the data: feature names and shape, then X (a matrix as little-endian
    float64, a frame as its JSON rows), then y as JSON."""
    digest = hashlib.sha256()
    header = {"feature_names": feature_names, "shape": list(X.shape)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    if isinstance(X, pd.DataFrame):
        typed = schema or infer_schema(X)
        digest.update(json.dumps(frame_rows(X, typed)).encode())
    else:
        digest.update(np.ascontiguousarray(X, dtype="<f8").tobytes())
    digest.update(json.dumps(y.tolist()).encode())
    return digest.hexdigest()
