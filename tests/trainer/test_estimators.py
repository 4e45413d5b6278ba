"""The estimator registry and typed, validated --param values."""

import pytest
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlmodel_artifact import Task
from mlmodel_trainer.errors import TrainerError
from mlmodel_trainer.estimators import (
    ESTIMATORS,
    build_estimator,
    estimator_class,
    parse_params,
    parse_value,
)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("100", 100),
        ("-3", -3),
        ("0.5", 0.5),
        ("1e-3", 0.001),
        ("true", True),
        ("False", False),
        ("None", None),
        ("null", None),
        ("sqrt", "sqrt"),
        ("", ""),
    ],
)
def test_param_values_are_typed(raw: str, value: object) -> None:
    parsed = parse_value(raw)
    assert parsed == value
    assert type(parsed) is type(value)


def test_params_split_on_the_first_equals_sign() -> None:
    assert parse_params(["n_estimators=10", "criterion = entropy", "x=a=b"]) == {
        "n_estimators": 10,
        "criterion": "entropy",
        "x": "a=b",
    }


@pytest.mark.parametrize("bad", ["n_estimators", "=5"])
def test_param_without_key_or_equals_is_rejected(bad: str) -> None:
    with pytest.raises(TrainerError, match="not of the form key=value"):
        parse_params([bad])


def test_same_name_maps_to_the_class_for_each_task() -> None:
    assert estimator_class("random_forest", Task.CLASSIFICATION) is RandomForestClassifier
    assert estimator_class("random_forest", Task.REGRESSION) is RandomForestRegressor
    assert estimator_class("logistic_regression", Task.CLASSIFICATION) is LogisticRegression
    assert estimator_class("linear_regression", Task.REGRESSION) is LinearRegression


def test_estimator_without_a_class_for_the_task_says_what_to_use() -> None:
    with pytest.raises(TrainerError, match=r"'linear_regression' does not do classification.*"):
        estimator_class("linear_regression", Task.CLASSIFICATION)
    with pytest.raises(TrainerError, match=r"for regression use: .*random_forest"):
        estimator_class("logistic_regression", Task.REGRESSION)


def test_unknown_estimator_lists_the_choices() -> None:
    with pytest.raises(
        TrainerError, match=r"unknown estimator 'catboost'; choose one of: random_f"
    ):
        estimator_class("catboost", Task.CLASSIFICATION)


def test_seed_and_defaults_are_applied_and_params_override_them() -> None:
    default = build_estimator("random_forest", Task.CLASSIFICATION, {}, seed=7)
    assert default.get_params()["random_state"] == 7
    assert default.get_params()["n_estimators"] == 100
    custom = build_estimator(
        "random_forest", Task.CLASSIFICATION, {"n_estimators": 5, "max_depth": None}, seed=7
    )
    assert custom.get_params()["n_estimators"] == 5


def test_estimator_without_random_state_still_builds() -> None:
    model = build_estimator("linear_regression", Task.REGRESSION, {}, seed=1)
    assert "random_state" not in model.get_params()


def test_unknown_param_is_rejected_listing_the_valid_ones() -> None:
    with pytest.raises(TrainerError) as err:
        build_estimator("random_forest", Task.CLASSIFICATION, {"n_estimator": 5}, seed=1)
    message = str(err.value)
    assert "unknown parameter(s) 'n_estimator' for RandomForestClassifier" in message
    assert "n_estimators" in message.split("valid parameters:")[1]


def test_every_registered_estimator_has_at_least_one_task() -> None:
    for name, spec in ESTIMATORS.items():
        assert spec.classifier is not None or spec.regressor is not None, name
