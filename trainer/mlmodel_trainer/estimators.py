"""Estimator names -> scikit-learn classes per task, and typed, validated `--param key=value`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
    # Whether skl2onnx can convert it (checked before training, so nobody waits for a failure).
    onnx: bool = True


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
        onnx=False,
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
}

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


def check_formats(name: str, formats: Iterable[str]) -> None:
    """Raise TrainerError if estimator `name` cannot be written in one of `formats`."""
    spec = ESTIMATORS.get(name)
    if spec is not None and not spec.onnx and "onnx" in formats:
        usable = ", ".join(n for n, s in ESTIMATORS.items() if s.onnx)
        raise TrainerError(
            f"estimator {name!r} cannot be exported to ONNX; use --format skops or joblib, "
            f"or an estimator that converts: {usable}"
        )


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
