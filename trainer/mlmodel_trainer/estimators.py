"""Estimator names -> scikit-learn(-API) classes per task, and typed, validated `--param key=value`.

XGBoost and LightGBM come through their scikit-learn APIs (XGBClassifier/XGBRegressor,
LGBMClassifier/LGBMRegressor). XGBoost's classifier only takes the labels 0..n-1, so a classifier
trained on other labels (strings such as 'Adelie', or 1..n) is wrapped by `encode_labels` in
scikit-learn's VotingClassifier with soft voting and that one member: VotingClassifier encodes
the labels with a LabelEncoder, fits the member on 0..n-1 and decodes its answers, and a soft vote
of one member is that member's probabilities, unchanged. So the model predicts the original labels,
the card's `class_labels` are those labels and its sample reproduces in every reader.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import lightgbm
import numpy as np
import xgboost
from sklearn import ensemble, linear_model, naive_bayes, neighbors, svm, tree
from sklearn.base import BaseEstimator

from mlmodel_artifact import Task
from mlmodel_trainer.errors import TrainerError

ParamValue = int | float | bool | str | None


@dataclass(frozen=True)
class EstimatorSpec:
    """The classes behind one estimator name (None where the task has no such estimator)."""

    classifier: type[BaseEstimator] | None
    regressor: type[BaseEstimator] | None
    # Defaults that differ from scikit-learn's, applied before the user's --param values.
    defaults: tuple[tuple[str, ParamValue], ...] = ()


ESTIMATORS: dict[str, EstimatorSpec] = {
    "random_forest": EstimatorSpec(
        ensemble.RandomForestClassifier, ensemble.RandomForestRegressor, (("n_estimators", 100),)
    ),
    "extra_trees": EstimatorSpec(ensemble.ExtraTreesClassifier, ensemble.ExtraTreesRegressor),
    "gradient_boosting": EstimatorSpec(
        ensemble.GradientBoostingClassifier, ensemble.GradientBoostingRegressor
    ),
    # skl2onnx 1.20 fails on scikit-learn 1.9's histogram trees (uint32 node ids in attributes).
    "hist_gradient_boosting": EstimatorSpec(
        ensemble.HistGradientBoostingClassifier,
        ensemble.HistGradientBoostingRegressor,
    ),
    "decision_tree": EstimatorSpec(tree.DecisionTreeClassifier, tree.DecisionTreeRegressor),
    # Unscaled features converge slowly; 100 iterations (the library default) warns on most data.
    "logistic_regression": EstimatorSpec(
        linear_model.LogisticRegression, None, (("max_iter", 5000),)
    ),
    "linear_regression": EstimatorSpec(None, linear_model.LinearRegression),
    "ridge": EstimatorSpec(linear_model.RidgeClassifier, linear_model.Ridge),
    "lasso": EstimatorSpec(None, linear_model.Lasso),
    "knn": EstimatorSpec(neighbors.KNeighborsClassifier, neighbors.KNeighborsRegressor),
    "svm": EstimatorSpec(svm.SVC, svm.SVR),
    "naive_bayes": EstimatorSpec(naive_bayes.GaussianNB, None),
    # One thread (a model server runs one process per core) and quiet; random_state is the seed.
    # ONNX through onnxmltools, for plain numeric input (not behind a ColumnTransformer).
    "xgboost": EstimatorSpec(
        xgboost.XGBClassifier,
        xgboost.XGBRegressor,
        (("n_estimators", 100), ("n_jobs", 1), ("verbosity", 0)),
    ),
    "lightgbm": EstimatorSpec(
        lightgbm.LGBMClassifier,
        lightgbm.LGBMRegressor,
        (("n_estimators", 100), ("n_jobs", 1), ("verbose", -1)),
    ),
}

#: What a fit raises for parameters the library refuses (scikit-learn's validation raises
#: ValueError/TypeError, XGBoostError is a ValueError; LightGBMError is neither).
FIT_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, lightgbm.basic.LightGBMError)

#: The member's name inside the label-encoding VotingClassifier (`encode_labels`).
LABEL_ENCODED_MEMBER = "model"

DEFAULT_ESTIMATOR = "random_forest"


def estimator_class(name: str, task: Task) -> type[BaseEstimator]:
    """The scikit-learn class for estimator `name` on `task`; TrainerError if there is none."""
    try:
        spec = ESTIMATORS[name]
    except KeyError:
        known = ", ".join(ESTIMATORS)
        raise TrainerError(f"unknown estimator {name!r}; choose one of: {known}") from None
    cls = spec.classifier if task is Task.CLASSIFICATION else spec.regressor
    if cls is None:
        usable = ", ".join(n for n in ESTIMATORS if _has(n, task))
        raise TrainerError(
            f"estimator {name!r} does not do {task.value}; for {task.value} use: {usable}"
        )
    return cls


def build_estimator(
    name: str, task: Task, params: dict[str, ParamValue], seed: int
) -> BaseEstimator:
    """Estimator `name` for `task`: its defaults, `random_state=seed`, then `params`."""
    cls = estimator_class(name, task)
    estimator = cls()
    valid = estimator.get_params(deep=False)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise TrainerError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for {cls.__name__}; "
            f"valid parameters: {', '.join(sorted(valid))}"
        )
    settings: dict[str, Any] = dict(ESTIMATORS[name].defaults)
    if "random_state" in valid:
        settings["random_state"] = seed
    settings.update(params)
    estimator.set_params(**settings)
    return estimator


def encode_labels(estimator: BaseEstimator, y: Any) -> BaseEstimator:
    """`estimator`, or for an XGBoost classifier whose labels `y` are not 0..n-1, a soft
    VotingClassifier of that one estimator: it encodes the labels for XGBoost and answers the
    original ones (probabilities unchanged). Other estimators take any labels themselves."""
    if not isinstance(estimator, xgboost.XGBClassifier):
        return estimator
    labels = np.unique(np.asarray(y))
    if labels.dtype.kind in "iu" and np.array_equal(labels, np.arange(len(labels))):
        return estimator
    # flatten_transform only shapes transform(); False is what skl2onnx converts.
    return ensemble.VotingClassifier(
        [(LABEL_ENCODED_MEMBER, estimator)], voting="soft", flatten_transform=False
    )


def unwrap_labels(model: Any) -> Any:
    """The estimator inside `encode_labels`' VotingClassifier (or `model` itself)."""
    if isinstance(model, ensemble.VotingClassifier) and len(model.estimators) == 1:
        name, member = model.estimators[0]
        if name == LABEL_ENCODED_MEMBER:
            return member
    return model


def parse_params(pairs: Iterable[str]) -> dict[str, ParamValue]:
    """Parse `key=value` strings; values become int, float, bool, None or else stay str."""
    params: dict[str, ParamValue] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TrainerError(f"--param {pair!r} is not of the form key=value")
        params[key] = parse_value(raw.strip())
    return params


def parse_value(raw: str) -> ParamValue:
    """'100' -> 100, '0.5' -> 0.5, 'true'/'false' -> bool, 'none'/'null' -> None, else str."""
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return raw


def _has(name: str, task: Task) -> bool:
    spec = ESTIMATORS[name]
    return (spec.classifier if task is Task.CLASSIFICATION else spec.regressor) is not None
