"""Training without writing an artifact: tasks, metrics, determinism and the card's facts."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score
from sklearn.model_selection import train_test_split

from mlmodel_artifact import Task
from mlmodel_trainer.errors import TrainerError
from mlmodel_trainer.estimators import ESTIMATORS
from mlmodel_trainer.train import TrainConfig, json_safe_params, train

FAST = {"n_estimators": 10}


@pytest.mark.parametrize(
    ("dataset", "task", "metrics"),
    [
        ("iris", Task.CLASSIFICATION, {"accuracy", "f1_macro"}),
        ("wine", Task.CLASSIFICATION, {"accuracy", "f1_macro"}),
        ("breast_cancer", Task.CLASSIFICATION, {"accuracy", "f1_macro"}),
        ("digits", Task.CLASSIFICATION, {"accuracy", "f1_macro"}),
        ("diabetes", Task.REGRESSION, {"r2", "mae"}),
    ],
)
def test_every_bundled_dataset_trains_as_its_task(
    dataset: str, task: Task, metrics: set[str]
) -> None:
    result = train(TrainConfig(dataset=dataset, params=FAST))
    d = result.description
    assert d.task is task
    assert set(d.metrics) == metrics
    assert d.training.n_train + d.training.n_test == len(result.split.y_train) + len(
        result.split.y_test
    )
    assert len(d.sample.inputs) == 5
    assert len(d.sample.outputs) == 5
    assert all(len(row) == len(d.feature_names) for row in d.sample.inputs)
    if task is Task.CLASSIFICATION:
        assert d.metrics["accuracy"] > 0.8
        assert d.class_labels is not None and d.sample.probabilities is not None
    else:
        assert d.metrics["r2"] > 0.2
        assert d.class_labels is None and d.sample.probabilities is None


def test_default_run_is_the_seed_guide_iris_forest_and_matches_scikit_learn() -> None:
    result = train(TrainConfig())
    d = result.description
    assert (d.name, d.estimator, d.training.dataset) == ("iris", "RandomForestClassifier", "iris")
    assert d.params["n_estimators"] == 100 and d.params["random_state"] == 42
    assert (d.training.seed, d.training.test_size) == (42, 0.2)
    assert (d.training.n_train, d.training.n_test) == (120, 30)

    X, y = load_iris(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
    direct = RandomForestClassifier(n_estimators=100, random_state=42).fit(X_tr, y_tr)
    predicted = direct.predict(X_te)
    assert d.metrics == {
        "accuracy": accuracy_score(y_te, predicted),
        "f1_macro": f1_score(y_te, predicted, average="macro"),
    }
    assert d.class_labels == [0, 1, 2]
    assert d.sample.inputs == X_te[:5].tolist()
    assert d.sample.outputs == predicted[:5].tolist()
    assert d.sample.probabilities == direct.predict_proba(X_te[:5]).tolist()


def test_regression_metrics_match_scikit_learn_with_the_same_split_and_seed() -> None:
    result = train(TrainConfig(dataset="diabetes", seed=3, test_size=0.25, params=FAST))
    X, y = load_diabetes(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=3)
    predicted = RandomForestRegressor(n_estimators=10, random_state=3).fit(X_tr, y_tr).predict(X_te)
    assert result.description.metrics == {
        "r2": r2_score(y_te, predicted),
        "mae": mean_absolute_error(y_te, predicted),
    }


def test_same_seed_gives_same_metrics_predictions_and_fingerprint() -> None:
    config = TrainConfig(dataset="wine", params=FAST, seed=11)
    first, second = train(config), train(config)
    assert first.description.metrics == second.description.metrics
    assert first.description.sample == second.description.sample
    assert first.description.training == second.description.training
    X_test = first.split.X_test
    assert np.array_equal(first.model.predict(X_test), second.model.predict(X_test))
    assert np.array_equal(first.model.predict_proba(X_test), second.model.predict_proba(X_test))


def test_another_seed_gives_another_split_and_fingerprint() -> None:
    a = train(TrainConfig(params=FAST, seed=1)).description.training
    b = train(TrainConfig(params=FAST, seed=2)).description.training
    assert a.data_fingerprint != b.data_fingerprint


@pytest.mark.parametrize("name", [n for n, s in ESTIMATORS.items() if s.classifier is not None])
def test_every_classifier_trains_on_iris(name: str) -> None:
    d = train(TrainConfig(estimator=name)).description
    assert d.metrics["accuracy"] > 0.7, d.metrics
    assert d.estimator == ESTIMATORS[name].classifier.__name__  # type: ignore[union-attr]


@pytest.mark.parametrize("name", [n for n, s in ESTIMATORS.items() if s.regressor is not None])
def test_every_regressor_trains_on_diabetes(name: str) -> None:
    d = train(TrainConfig(dataset="diabetes", estimator=name)).description
    assert d.task is Task.REGRESSION
    assert d.estimator == ESTIMATORS[name].regressor.__name__  # type: ignore[union-attr]
    assert np.isfinite(d.metrics["mae"])


def test_task_override_trains_whole_number_target_as_regression(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=60)
    path = tmp_path / "scores.csv"
    path.write_text("x,noise,score\n" + "".join(f"{v},{rng.random()},{v * 2}\n" for v in x))
    inferred = train(TrainConfig(csv=path, target="score", params=FAST)).description
    assert inferred.task is Task.CLASSIFICATION
    forced = train(
        TrainConfig(csv=path, target="score", task=Task.REGRESSION, params=FAST)
    ).description
    assert forced.task is Task.REGRESSION
    assert forced.estimator == "RandomForestRegressor"
    assert forced.name == "scores"


def test_csv_with_text_labels_trains_a_classifier_with_those_labels(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    path = tmp_path / "Iris Flowers.csv"
    rows = "".join(",".join(map(str, r)) + f",{n}\n" for r, n in zip(X, names, strict=True))
    path.write_text("a,b,c,d,species\n" + rows)
    d = train(TrainConfig(csv=path, target="species", params=FAST)).description
    assert d.name == "iris-flowers"
    assert d.class_labels == ["setosa", "versicolor", "virginica"]
    assert set(d.sample.outputs) <= {"setosa", "versicolor", "virginica"}
    assert d.training.dataset == f"csv:{path}"


def test_whole_number_float_labels_become_integer_classes(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("x,y\n" + "".join(f"{i},{float(i % 2)}\n" for i in range(20)))
    d = train(TrainConfig(csv=path, target="y", params=FAST)).description
    assert d.class_labels == [0, 1]
    assert all(type(o) is int for o in d.sample.outputs)


def test_invalid_param_value_is_reported_naming_the_estimator() -> None:
    with pytest.raises(TrainerError, match=r"RandomForestClassifier failed: .*n_estimators"):
        train(TrainConfig(params={"n_estimators": -1}))


@pytest.mark.parametrize("size", [0.0, 1.0, 1.5, -0.1])
def test_test_size_outside_zero_one_is_rejected(size: float) -> None:
    with pytest.raises(TrainerError, match="--test-size must be between 0 and 1"):
        train(TrainConfig(test_size=size))


def test_held_out_set_smaller_than_the_classes_is_a_clear_error() -> None:
    with pytest.raises(TrainerError, match=r"holds out 2 of 150 rows, fewer than the 3 classes"):
        train(TrainConfig(test_size=0.01))


def test_class_with_a_single_row_is_named() -> None:
    with pytest.raises(TrainerError, match=r"classes have a single row: 25 \(1 row\)"):
        train(TrainConfig(dataset="diabetes", task=Task.CLASSIFICATION))


def test_csv_needs_target_and_target_needs_csv(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="--csv needs --target"):
        train(TrainConfig(csv=tmp_path / "x.csv"))
    with pytest.raises(TrainerError, match="--target only applies to --csv"):
        train(TrainConfig(target="y"))


@pytest.mark.parametrize("bad", ["", "-x", "has space", "a/b", "x" * 64])
def test_invalid_model_name_is_rejected(bad: str) -> None:
    with pytest.raises(TrainerError, match="is not a valid model name"):
        train(TrainConfig(name=bad, params=FAST))


def test_non_json_params_are_kept_as_their_repr() -> None:
    assert json_safe_params({"a": np.int64(3), "b": object, "c": [1, 2], "d": None}) == {
        "a": 3,
        "b": repr(object),
        "c": [1, 2],
        "d": None,
    }


def test_convergence_warnings_are_collected_not_printed() -> None:
    result = train(
        TrainConfig(dataset="digits", estimator="logistic_regression", params={"max_iter": 2})
    )
    assert any(w.startswith("ConvergenceWarning:") for w in result.warnings)
    assert all("\n" not in w for w in result.warnings)


@pytest.mark.parametrize("dataset", ["iris", "diabetes", "penguins"])
def test_the_card_carries_the_training_rows_and_held_out_outputs_as_the_drift_reference(
    dataset: str,
) -> None:
    result = train(TrainConfig(dataset=dataset, params=FAST))
    d = result.description
    reference = d.drift_reference
    assert reference is not None
    assert [f.name for f in reference.features] == d.feature_names
    for feature, schema_feature in zip(reference.features, d.feature_schema.features, strict=True):
        assert feature.kind is schema_feature.kind
        assert feature.rows == d.training.n_train  # the training rows, not the held-out ones
        assert sum(feature.shares) == pytest.approx(1.0)
    outputs = reference.outputs
    assert outputs is not None and outputs.rows == d.training.n_test
    if d.task is Task.CLASSIFICATION:
        assert outputs.classes == d.class_labels
    else:
        assert outputs.edges is not None and len(outputs.edges) == 9
    assert sum(outputs.shares) == pytest.approx(1.0)
