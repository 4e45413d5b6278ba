"""Classification vs regression: inferred from the target, and checked when chosen."""

import numpy as np
import pytest

from mlmodel_artifact import Task
from mlmodel_trainer.errors import TrainerError
from mlmodel_trainer.task import MAX_INFERRED_CLASSES, check_task, infer_task


@pytest.mark.parametrize(
    ("y", "task"),
    [
        (np.array(["cat", "dog", "cat"]), Task.CLASSIFICATION),
        (np.array([0, 1, 2, 1]), Task.CLASSIFICATION),
        (np.array([0.0, 1.0, 1.0]), Task.CLASSIFICATION),
        (np.arange(MAX_INFERRED_CLASSES + 1), Task.REGRESSION),
        (np.array([0.5, 1.25, 3.0]), Task.REGRESSION),
    ],
)
def test_task_is_inferred_from_the_target_values(y: np.ndarray, task: Task) -> None:
    assert infer_task(y) is task


def test_regression_on_text_labels_is_rejected_naming_the_target() -> None:
    with pytest.raises(TrainerError, match=r"target 'species' has non-numeric values"):
        check_task(np.array(["a", "b"]), Task.REGRESSION, "species")


def test_classification_on_continuous_values_is_rejected_naming_the_target() -> None:
    with pytest.raises(TrainerError, match=r"target 'price' has continuous values \(e.g. 1.5\)"):
        check_task(np.array([1.0, 1.5, 2.0]), Task.CLASSIFICATION, "price")


def test_classification_needs_two_classes() -> None:
    with pytest.raises(TrainerError, match="single class"):
        check_task(np.array([1, 1, 1]), Task.CLASSIFICATION, "y")


def test_whole_numbers_may_be_trained_either_way() -> None:
    y = np.array([1, 2, 3, 4])
    check_task(y, Task.CLASSIFICATION, "y")
    check_task(y, Task.REGRESSION, "y")
