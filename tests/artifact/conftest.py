"""A small real model and its description, for artifact round trips."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from mlmodel_artifact import ModelDescription, Sample, Task, TrainingInfo


@pytest.fixture(scope="session")
def iris_model() -> tuple[Any, ModelDescription, np.ndarray]:
    """A fitted iris forest, its description and some rows to predict: (model, description, X)."""
    data = load_iris()
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(data.data, data.target)
    rows = data.data[::15]
    description = ModelDescription(
        name="iris",
        task=Task.CLASSIFICATION,
        estimator="RandomForestClassifier",
        params={"n_estimators": 10, "random_state": 0},
        feature_names=list(data.feature_names),
        class_labels=[0, 1, 2],
        metrics={"accuracy": 1.0},
        training=TrainingInfo(
            dataset="iris", test_size=0.0, seed=0, n_train=150, n_test=0, data_fingerprint="0" * 64
        ),
        sample=Sample(
            inputs=rows[:5].tolist(),
            outputs=model.predict(rows[:5]).tolist(),
            probabilities=model.predict_proba(rows[:5]).tolist(),
        ),
    )
    return model, description, rows
