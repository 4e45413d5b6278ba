"""Train and evaluate one estimator; describe it for the artifact's model card."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from mlmodel_artifact import InputSchema, ModelDescription, Task, TrainingInfo, infer_schema
from mlmodel_artifact.drift import reference_from_frame
from mlmodel_trainer.data import Dataset, fingerprint, load_builtin, load_csv
from mlmodel_trainer.errors import TrainerError
from mlmodel_trainer.estimators import (
    DEFAULT_ESTIMATOR,
    FIT_ERRORS,
    ParamValue,
    build_estimator,
    encode_labels,
    unwrap_labels,
)
from mlmodel_trainer.evaluate import Split, compute_metrics, held_out_sample, split_data
from mlmodel_trainer.params import json_safe_params
from mlmodel_trainer.preprocess import build_pipeline, describe_pipeline, final_estimator
from mlmodel_trainer.task import check_task, infer_task, target_for

DEFAULT_DATASET = "iris"
DEFAULT_SEED = 42
DEFAULT_TEST_SIZE = 0.2
SAMPLE_ROWS = 5
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
T = TypeVar("T")


@dataclass(frozen=True)
class TrainConfig:
    """What to train: data (a bundled dataset or a CSV + target), estimator, split and seed."""

    dataset: str | None = DEFAULT_DATASET
    csv: Path | None = None
    target: str | None = None
    task: Task | None = None
    estimator: str = DEFAULT_ESTIMATOR
    params: dict[str, ParamValue] = field(default_factory=dict)
    seed: int = DEFAULT_SEED
    test_size: float = DEFAULT_TEST_SIZE
    name: str | None = None
    sample_rows: int = SAMPLE_ROWS


@dataclass(frozen=True)
class TrainResult:
    """The fitted model, its card description, the split it was evaluated on and any warnings."""

    model: BaseEstimator
    description: ModelDescription
    split: Split
    warnings: list[str]
    # What was built, e.g. "Pipeline: impute median (4 numeric: …) -> RandomForestClassifier".
    built: str = ""


def load_data(config: TrainConfig) -> Dataset:
    """The dataset `config` names: a CSV if `csv` is set, else the bundled `dataset`."""
    if config.csv is not None:
        if config.target is None:
            raise TrainerError("--csv needs --target COLUMN naming the column to predict")
        return load_csv(config.csv, config.target)
    if config.target is not None:
        raise TrainerError("--target only applies to --csv data")
    return load_builtin(config.dataset or DEFAULT_DATASET)


def train(config: TrainConfig) -> TrainResult:
    """Load data, split, fit, evaluate on the held-out rows and describe the model."""
    data = load_data(config)
    task = config.task or infer_task(data.y)
    check_task(data.y, task, data.target_name)
    name = model_name(config, data)
    estimator = build_estimator(config.estimator, task, config.params, config.seed)
    y = target_for(data.y, task)
    # XGBoost classifies only 0..n-1: other labels are encoded (and decoded) around it.
    fitted = encode_labels(estimator, y) if task is Task.CLASSIFICATION else estimator
    model = build_pipeline(data.schema, fitted) if data.tabular else fitted
    split = split_data(data.X, y, task, config.test_size, config.seed)
    caught: list[str] = []
    _collect_warnings(caught, lambda: _fit(model, split))
    predictions = _collect_warnings(caught, lambda: model.predict(split.X_test))
    sample = _collect_warnings(
        caught, lambda: held_out_sample(model, split.X_test, config.sample_rows, data.schema)
    )
    train_frame = _frame(split.X_train, data.feature_names)
    train_schema = infer_schema(train_frame, [f.kind for f in data.schema.features])
    input_schema = _with_kinds(train_schema, data.schema)
    class_labels = _class_labels(final_estimator(model), task)
    description = ModelDescription(
        name=name,
        task=task,
        estimator=type(estimator).__name__,
        params=json_safe_params(estimator.get_params(deep=False)),
        feature_names=data.feature_names,
        class_labels=class_labels,
        metrics=compute_metrics(task, split.y_test, predictions),
        training=TrainingInfo(
            dataset=data.name,
            test_size=config.test_size,
            seed=config.seed,
            n_train=len(split.y_train),
            n_test=len(split.y_test),
            data_fingerprint=fingerprint(
                split.X_train, split.y_train, data.feature_names, data.schema
            ),
        ),
        sample=sample,
        input_schema=input_schema,
        # the training rows' bins, and the held-out predictions': what drift is measured against
        drift_reference=reference_from_frame(input_schema, train_frame, predictions, class_labels),
    )
    return TrainResult(
        model=model,
        description=description,
        split=split,
        warnings=caught,
        built=_describe(model, fitted is not estimator),
    )


def _describe(model: Any, encoded: bool) -> str:
    built = describe_pipeline(model)
    if encoded:
        name = type(unwrap_labels(final_estimator(model))).__name__
        built += f" ({name} on encoded labels, in a one-member VotingClassifier that decodes them)"
    return built


def _frame(X: Any, names: list[str]) -> pd.DataFrame:
    return X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=names)


def _with_kinds(train: InputSchema, data: InputSchema) -> InputSchema:
    """Statistics from the training rows; nullability from the whole dataset (a column with
    missing values only in held-out rows is still nullable: the pipeline imputes it)."""
    return InputSchema(
        features=[
            t.model_copy(update={"nullable": d.nullable})
            for t, d in zip(train.features, data.features, strict=True)
        ]
    )


def model_name(config: TrainConfig, data: Dataset) -> str:
    """`config.name` if valid; else derived from the dataset name or the CSV file name."""
    if config.name is not None:
        if not _NAME.match(config.name):
            raise TrainerError(
                f"--name {config.name!r} is not a valid model name: use 1-63 letters, digits, "
                "'.', '_' or '-', starting with a letter or digit"
            )
        return config.name
    base = config.csv.stem if config.csv is not None else data.name
    derived = re.sub(r"[^a-z0-9.-]+", "-", base.lower()).strip("-._")[:63]
    return derived or "model"


def _fit(model: BaseEstimator, split: Split) -> None:
    try:
        model.fit(split.X_train, split.y_train)
    except FIT_ERRORS as exc:
        # scikit-learn's parameter validation (e.g. n_estimators=-1) raises these at fit time.
        first_line = str(exc).strip().splitlines()[0]
        name = type(unwrap_labels(final_estimator(model))).__name__
        raise TrainerError(f"training {name} failed: {first_line}") from None


def _class_labels(estimator: BaseEstimator, task: Task) -> list[Any] | None:
    if task is not Task.CLASSIFICATION:
        return None
    labels: list[Any] = np.asarray(estimator.classes_).tolist()
    return labels


def _collect_warnings(into: list[str], action: Callable[[], T]) -> T:
    """Run `action`, adding each distinct warning it raises to `into` as one line."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        result = action()
    for record in records:
        line = f"{record.category.__name__}: {str(record.message).strip().splitlines()[0]}"
        if line not in into:
            into.append(line)
    return result
