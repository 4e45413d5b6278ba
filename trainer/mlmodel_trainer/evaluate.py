"""Held-out split, metrics and the card's sample of held-out rows with the model's outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score
from sklearn.model_selection import train_test_split

from mlmodel_artifact import InputSchema, Sample, Task
from mlmodel_artifact.schema import frame_rows
from mlmodel_trainer.errors import TrainerError

CLASSIFICATION_METRICS = ("accuracy", "f1_macro")
REGRESSION_METRICS = ("r2", "mae")


@dataclass(frozen=True)
class Split:
    """A train/held-out split of one dataset."""

    X_train: Any  # a float64 matrix, or a DataFrame for tabular data
    X_test: Any
    y_train: np.ndarray
    y_test: np.ndarray


def split_data(X: Any, y: np.ndarray, task: Task, test_size: float, seed: int) -> Split:
    """Shuffle with `seed`, hold out `test_size` of the rows; stratified for classification."""
    if not 0.0 < test_size < 1.0:
        raise TrainerError(f"--test-size must be between 0 and 1 (exclusive), got {test_size}")
    stratify = None
    if task is Task.CLASSIFICATION:
        _check_stratifiable(y, test_size)
        stratify = y
    try:
        parts = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=stratify)
    except ValueError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise TrainerError(
            f"cannot split {len(y)} rows with --test-size {test_size}: {first_line}"
        ) from None
    X_train, X_test, y_train, y_test = parts
    return Split(X_train=X_train, X_test=X_test, y_train=y_train, y_test=y_test)


def _check_stratifiable(y: np.ndarray, test_size: float) -> None:
    """A stratified split needs two rows of every class and a held-out row per class."""
    labels, counts = np.unique(y, return_counts=True)
    rare = [(label, n) for label, n in zip(labels.tolist(), counts.tolist(), strict=True) if n < 2]
    if rare:
        shown = ", ".join(f"{label!r} ({n} row)" for label, n in rare[:5])
        more = f" and {len(rare) - 5} more" if len(rare) > 5 else ""
        raise TrainerError(
            f"cannot make a stratified split: {len(rare)} of {len(labels)} classes have a single "
            f"row: {shown}{more}; drop those rows, or use --task regression for a numeric target"
        )
    n_test = int(np.ceil(test_size * len(y)))
    if n_test < len(labels):
        raise TrainerError(
            f"cannot make a stratified split: --test-size {test_size} holds out {n_test} of "
            f"{len(y)} rows, fewer than the {len(labels)} classes; raise --test-size"
        )


def compute_metrics(task: Task, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 for classification; R² and mean absolute error for regression."""
    if task is Task.CLASSIFICATION:
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "f1_macro": float(f1_score(y_true, y_pred, average="macro")),
        }
    return {
        "r2": float(r2_score(y_true, y_pred)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
    }


def held_out_sample(model: Any, X_test: Any, rows: int, schema: InputSchema) -> Sample:
    """`rows` held-out rows with the model's predictions (and probabilities, if any).

    The first rows, except that when the held-out data has a row with a missing value and
    none of the first rows has, the last is swapped for the first such row: a reader then
    checks that the loaded model takes missing values too.
    """
    picked = list(range(min(rows, len(X_test))))
    if isinstance(X_test, pd.DataFrame):
        gaps = np.flatnonzero(X_test.isna().any(axis=1).to_numpy())
        if len(gaps) and picked and not set(picked) & set(gaps.tolist()):
            picked[-1] = int(gaps[0])
        inputs: Any = X_test.iloc[picked]
        rows_json = frame_rows(inputs, schema)
    else:
        inputs = X_test[picked]
        rows_json = np.asarray(inputs, dtype=np.float64).tolist()
    probabilities = None
    if hasattr(model, "predict_proba"):
        probabilities = np.asarray(model.predict_proba(inputs), dtype=np.float64).tolist()
    return Sample(
        inputs=rows_json,
        outputs=np.asarray(model.predict(inputs)).tolist(),
        probabilities=probabilities,
    )
