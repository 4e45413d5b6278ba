"""Classification or regression: inferred from the target, or chosen and then checked."""

from __future__ import annotations

import numpy as np

from mlmodel_artifact import Task
from mlmodel_trainer.errors import TrainerError

# A numeric target with whole-number values and at most this many distinct ones is taken as labels.
MAX_INFERRED_CLASSES = 20


def infer_task(y: np.ndarray) -> Task:
    """Classification for text/boolean targets or few whole-number values; regression otherwise."""
    if not _is_numeric(y):
        return Task.CLASSIFICATION
    if _is_whole(y) and len(np.unique(y)) <= MAX_INFERRED_CLASSES:
        return Task.CLASSIFICATION
    return Task.REGRESSION


def check_task(y: np.ndarray, task: Task, target_name: str) -> None:
    """Raise TrainerError if the target cannot be learned as `task`."""
    if task is Task.REGRESSION and not _is_numeric(y):
        raise TrainerError(
            f"target {target_name!r} has non-numeric values (e.g. {y[0].item()!r}); "
            "regression needs numbers; use --task classification"
        )
    if task is Task.CLASSIFICATION:
        if _is_numeric(y) and not _is_whole(y):
            example = y[np.mod(y, 1) != 0][0].item()
            raise TrainerError(
                f"target {target_name!r} has continuous values (e.g. {example!r}); "
                "classification needs discrete labels; use --task regression"
            )
        if len(np.unique(y)) < 2:
            raise TrainerError(
                f"target {target_name!r} has a single class; classification needs two or more"
            )


def target_for(y: np.ndarray, task: Task) -> np.ndarray:
    """The target as the estimator should see it: whole-number float labels become integers."""
    if task is Task.CLASSIFICATION and y.dtype.kind == "f":
        return y.astype(np.int64)
    return y


def _is_numeric(y: np.ndarray) -> bool:
    return y.dtype.kind in "iuf"


def _is_whole(y: np.ndarray) -> bool:
    return y.dtype.kind in "iu" or bool(np.all(np.mod(y, 1) == 0))
